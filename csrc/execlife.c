/*
** execlife.c: the import executor's life: its start (once per process),
** its thread count, a fork, and the flush of cache writes when a state
** closes or the process exits.  See executor.c for the design.
**
** Fork: the child of a 'fork' has none of the workers, and a copy of
** the lock as the fork found it.  A 'pthread_atfork' handler holds the
** lock across the fork (so the queue is consistent), and in the child
** makes a fresh lock and conditions, puts the jobs that were running
** back at the head of their queue, their partial outputs dropped (leaked:
** a worker may have been writing them), and starts new workers: at
** once if jobs are queued (their owners wait for them), else on the
** next use.  Orphans that were running are dropped (leaked) too.
*/

#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "exec.h"


#define DEFAULT_MINTHREADS 1
#define DEFAULT_MAXTHREADS 8

/* longest wait for the cache writes running, at close or exit */
#define FLUSH_NS  UINT64_C(2000000000)

static uv_once_t once = UV_ONCE_INIT;

static void flushatexit (void);


/*
** Thread count: UVREQUIRE_THREADS if set to a number in 1..64, else
** the available parallelism (no more threads than cores: compiling
** is CPU work, and the Lua thread needs its core), at most 8.  Set
** UVREQUIRE_THREADS higher where reads may block for long (a FIFO, a
** slow network mount): each such read holds a thread.
*/
static int wanted_threads (void) {
  const char *env = getenv("UVREQUIRE_THREADS");
  int n;
  if (env != NULL && (n = atoi(env)) >= 1 && n <= 64)
    return n;
  n = (int)uv_available_parallelism();
  if (n < DEFAULT_MINTHREADS) n = DEFAULT_MINTHREADS;
  if (n > DEFAULT_MAXTHREADS) n = DEFAULT_MAXTHREADS;
  return n;
}


/*
** Keep this shared object loaded for the life of the process: workers
** run its code even after the Lua state that loaded it is closed.
*/
static void pin_self (void) {
  Dl_info info;
  if (dladdr((void *)&ur_ex_worker, &info) && info.dli_fname != NULL)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}


/* start the workers (lock held, or no other thread yet) */
static void startthreads (void) {
  int i, n = wanted_threads();
  for (i = 0; i < n; i++) {
    uv_thread_t t;
    if (uv_thread_create(&t, ur_ex_worker, (void *)(intptr_t)(i + 1)) != 0)
      break;
    ur_ex.nthreads++;
  }
}


/* drop the outputs of a job interrupted by a fork (leaking them) */
static void resetjob (ur_job *job) {
  int i;
  for (i = 0; i < job->nsteps; i++) {
    job->steps[i].lib = NULL;
    job->steps[i].libfile = NULL;
  }
  job->outcome = UR_NOTFOUND;
  job->found = 0;
  job->msg.p = NULL;
  job->msg.n = job->msg.cap = 0;
  job->msg.oom = 0;
  job->file = NULL;
  job->code = NULL;
  job->codelen = 0;
  job->lib = NULL;
  job->open = NULL;
}


/* before a fork: hold the lock, so that the child's queue is whole */
static void beforefork (void) {
  uv_mutex_lock(&ur_ex.lock);
}


/* after a fork, in the parent: go on */
static void afterfork_parent (void) {
  uv_mutex_unlock(&ur_ex.lock);
}


/*
** In the child of a fork, the only thread.  The lock is held (by the
** parent's forking thread, which is this one) and the conditions may
** count waiters that do not exist here: all are made anew.  Jobs that
** were running go back to the queue, to be run again from the start.
*/
static void afterfork_child (void) {
  ur_job *job, *next;
  if (uv_mutex_init(&ur_ex.lock) != 0 || uv_cond_init(&ur_ex.work_cond) != 0 ||
      uv_cond_init(&ur_ex.done_cond) != 0)
    abort();  /* cannot happen with glibc; nothing sane to do */
  for (job = ur_ex.running; job != NULL; job = next) {
    next = job->next;
    if (job->orphan) {  /* nobody wants it: leaked */
      if (job->cw != NULL) ur_ex.nwrites--;
      continue;
    }
    resetjob(job);
    ur_ex_enqueue(job, 1);
  }
  ur_ex.running = NULL;
  ur_ex.nsparing = 0;
  ur_ex.nthreads = 0;
  ur_ex.restart = 1;
  if (ur_ex_first() != NULL) {  /* owners wait for these */
    ur_ex.restart = 0;
    startthreads();
  }
}


/*
** Start the executor (once per process): lock, conditions, fork
** handlers, workers.  On failure 'ready' or 'nthreads' stays 0.
*/
static void start (void) {
  if (uv_mutex_init(&ur_ex.lock) != 0 || uv_cond_init(&ur_ex.work_cond) != 0 ||
      uv_cond_init(&ur_ex.done_cond) != 0)
    return;  /* 'ready' stays 0: every submission fails */
  pin_self();
  if (pthread_atfork(beforefork, afterfork_parent, afterfork_child) != 0)
    return;  /* a fork child would hang: better have no executor */
  (void)atexit(flushatexit);  /* (this code stays mapped: see pin_self) */
  ur_ex.ready = 1;
  startthreads();
}


/*
** Number of executor threads; starts them on first call, and again on
** the first call in the child of a fork.  0: no executor.
*/
int ur_exec_threads (void) {
  int n;
  uv_once(&once, start);
  if (!ur_ex.ready)  /* could not start at all */
    return 0;
  uv_mutex_lock(&ur_ex.lock);
  if (ur_ex.restart) {  /* first use in a fork child */
    ur_ex.restart = 0;
    startthreads();
  }
  n = ur_ex.nthreads;
  uv_mutex_unlock(&ur_ex.lock);
  return n;
}


/*
** Wait until no cache write job is queued or running: the state is
** closing, or the process exiting.  The calling thread writes the
** queued ones itself (every worker may be stuck on a read that never
** ends), and waits for those running, a bounded time.
*/
void ur_exec_flush (void) {
  uint64_t start = uv_hrtime();
  ur_job *job;
  if (!ur_ex.ready) return;
  uv_mutex_lock(&ur_ex.lock);
  while ((job = ur_ex.queue[Q_WRITE].head) != NULL) {  /* queued: write here */
    ur_ex_unqueue(job);
    if (--ur_ex.nwrites == 0) uv_cond_broadcast(&ur_ex.done_cond);
    uv_mutex_unlock(&ur_ex.lock);
    ur_job_run(job, NULL);  /* (a write job needs no state) */
    ur_job_free(job);
    uv_mutex_lock(&ur_ex.lock);
  }
  while (ur_ex.nwrites > 0 && ur_ex.nthreads > 0) {  /* running: a worker's */
    uint64_t spent = uv_hrtime() - start;
    if (spent >= FLUSH_NS) break;  /* it is stuck (a full disk...) */
    (void)uv_cond_timedwait(&ur_ex.done_cond, &ur_ex.lock, FLUSH_NS - spent);
  }
  uv_mutex_unlock(&ur_ex.lock);
}


/* at the process's exit: the entries still queued (os.exit) */
static void flushatexit (void) {
  ur_exec_flush();
}

