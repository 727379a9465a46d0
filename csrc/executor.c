/*
** executor.c: uvrequire's import executor.
**
** A process-wide pool of libuv threads, separate from libuv's own
** threadpool, so that an application's filesystem work can never delay
** an import, nor an import delay it.  Threads start on first use and
** live as long as the process; the shared object is pinned in memory
** (RTLD_NODELETE) so that closing a Lua state, which unloads its C
** libraries, can never pull code from under a running worker.
**
** Locking rule: 'lock' guards the queues and the 'state', 'orphan',
** 'q', 'isprefetch' and 'async' fields of every job.  A worker owns a
** job's input and output fields while the job is UR_RUNNING; the Lua
** thread owns them otherwise.  Whoever sees a job last frees it: the
** owner through 'ur_exec_release', or the worker when the owner let go
** (orphan).  A cache write job is an orphan from the start: nobody
** owns it, its worker frees it, and 'nwrites' counts those queued or
** running, so that 'ur_exec_flush' (the state closing, the process
** exiting) can see them written.
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
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ur.h"


#define DEFAULT_MINTHREADS 1
#define DEFAULT_MAXTHREADS 8

/* a worker whose jobs grew its memory trims the heap after this long
   without a job: not between the imports of a burst, since the trim
   takes back the Lua thread's free memory too (its next allocations
   fault the pages in again) and holds each malloc arena's lock */
#define TRIM_NS   UINT64_C(50000000)

/* longest wait for the cache writes running, at close or exit */
#define FLUSH_NS  UINT64_C(2000000000)

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t lock;
static uv_cond_t work_cond;   /* signalled when a job is queued */
static uv_cond_t done_cond;   /* broadcast when a job is done */
/*
** The queue of UR_QUEUED jobs is three, taken in this order: imports
** that somebody waits for (first come, first served); prefetches, in
** the order of their keys ('pkey'); cache writes, when nothing else is
** left.  A prefetch's key is its parent's followed by its index among
** the names the parent requires: in that order, a module comes right
** after the module that requires it, before its parent's next one,
** which is the order in which the Lua thread, running each body as it
** loads it, comes to them (depth first).
*/
enum { Q_WAITED, Q_PREFETCH, Q_WRITE, NQ };

typedef struct Queue {
  ur_job *head, *tail;
} Queue;

static Queue queue[NQ];
static ur_job *running;       /* UR_RUNNING jobs, linked by 'next' */
static int nthreads;          /* threads running; 0 if none could start */
static int ready;             /* 'lock' and conditions are usable */
static int restart;           /* a fork child: start workers anew */
static int nwrites;           /* cache write jobs queued or running */
static int nsparing;          /* 'sparecore' prefetches running */
static ur_job *pfready;       /* prefetches that found names, done, not
                                 swept yet ('pfnext'; 'ur_exec_release'
                                 unlinks one freed before that) */
static uv_async_t *pfwake;    /* signalled when a prefetch that found
                                 names is done, or NULL */
static size_t pfheld;         /* bytes of bytecode that done prefetches,
                                 not adopted or released yet, hold (all
                                 owners': 'ur_exec_pfheld') */

static void flushatexit (void);


/* a prefetch is done: count its bytecode as held and, if it found
   names, list it for its sweep (lock held) */
static void pfdone (ur_job *job) {
  if (!job->isprefetch) return;
  pfheld += job->codelen;
  job->pfheld = 1;
  if (job->nprefetch == 0) return;
  job->pfprev = NULL;
  job->pfnext = pfready;
  if (pfready != NULL) pfready->pfprev = job;
  pfready = job;
  job->pflisted = 1;
}


/* take 'job' off the list of 'pfdone' (lock held; its sweep took it:
   its bytecode still counts) */
static void pfunlist (ur_job *job) {
  if (!job->pflisted) return;
  if (job->pfprev != NULL) job->pfprev->pfnext = job->pfnext;
  else pfready = job->pfnext;
  if (job->pfnext != NULL) job->pfnext->pfprev = job->pfprev;
  job->pflisted = 0;
}


/* its owner adopted or released 'job': off that list, and its bytecode
   off the count (lock held) */
static void pfforget (ur_job *job) {
  pfunlist(job);
  if (job->pfheld) {
    pfheld -= job->codelen;
    job->pfheld = 0;
  }
}


/* take 'job' off the list of running jobs (lock held) */
static void unrun (ur_job *job) {
  ur_job **p = &running;
  while (*p != job)
    p = &(*p)->next;
  *p = job->next;
}


/*
** The job a worker takes next, or NULL (lock held).  Prefetches started
** by a synchronous load ('sparecore') leave one core to the Lua thread,
** which is busy loading and running what they compile (and compiles
** itself while it waits): at most 'nthreads' - 1 of them run at once.
** A task's leave none: its Lua thread mostly waits in the loop.
*/
static ur_job *first (void) {
  ur_job *pf = queue[Q_PREFETCH].head;
  if (queue[Q_WAITED].head != NULL)
    return queue[Q_WAITED].head;
  if (pf != NULL && (!pf->sparecore || nthreads == 1 ||
                     nsparing < nthreads - 1))
    return pf;
  return queue[Q_WRITE].head;
}


/* does prefetch 'a' come before 'b'? */
static int before (const ur_job *a, const ur_job *b) {
  int n = a->pkeylen < b->pkeylen ? a->pkeylen : b->pkeylen;
  int c = memcmp(a->pkey, b->pkey, (size_t)n);
  return c < 0 || (c == 0 && a->pkeylen < b->pkeylen);
}


/*
** Put 'job' in its queue: a prefetch in key order (after those of the
** same key), anything else at the tail, or the head if 'front' (lock
** held).
*/
static void enqueue (ur_job *job, int front) {
  Queue *q = &queue[job->q];
  job->state = UR_QUEUED;
  if (job->q == Q_PREFETCH) {
    ur_job **p = &q->head;
    while (*p != NULL && !before(job, *p))
      p = &(*p)->next;
    job->next = *p;
    *p = job;
    if (job->next == NULL) q->tail = job;
  }
  else if (front) {
    job->next = q->head;
    q->head = job;
    if (q->tail == NULL) q->tail = job;
  }
  else {
    job->next = NULL;
    if (q->tail != NULL) q->tail->next = job;
    else q->head = job;
    q->tail = job;
  }
}


/* remove a queued 'job' from its queue (lock held) */
static void unqueue (ur_job *job) {
  Queue *q = &queue[job->q];
  ur_job **p = &q->head;
  ur_job *prev = NULL;
  while (*p != job) {
    prev = *p;
    p = &(*p)->next;
  }
  *p = job->next;
  if (q->tail == job) q->tail = prev;
}


/*
** Worker thread: take jobs off the queue and run them forever.  A job
** that compiles does so in a lua_State of its own, made in the
** worker's arena (see 'luastep' in search.c).
*/
static void worker (void *arg) {
  ur_arena arena = {NULL, NULL, 0};
  int big = 0;  /* a job grew the arena large since the last trim */
  for (;;) {
    ur_job *job;
    uv_mutex_lock(&lock);
    while ((job = first()) == NULL) {
      if (big) {  /* give the memory of big compiles back, once idle */
        if (uv_cond_timedwait(&work_cond, &lock, TRIM_NS) == 0)
          continue;  /* woken: maybe a job */
        big = 0;
        uv_mutex_unlock(&lock);
#if defined(__GLIBC__)
        malloc_trim(0);  /* (every arena: the Lua thread's too) */
#endif
        uv_mutex_lock(&lock);
        continue;
      }
      uv_cond_wait(&work_cond, &lock);
    }
    unqueue(job);
    if (job->q == Q_PREFETCH && job->sparecore) nsparing++;
    job->state = UR_RUNNING;
    job->next = running;
    running = job;
    uv_mutex_unlock(&lock);
    job->worker = (int)(intptr_t)arg;
    job->t_start = uv_hrtime();
    ur_job_run(job, &arena);
    job->t_end = uv_hrtime();
    big |= ur_arena_reset(&arena);  /* (the compile's state is gone) */
    uv_mutex_lock(&lock);
    unrun(job);
    if (job->q == Q_PREFETCH && job->sparecore &&
        --nsparing == nthreads - 2)
      uv_cond_signal(&work_cond);  /* room for the next one */
    if (job->orphan) {  /* owner is gone: results go nowhere */
      if (job->cw != NULL && --nwrites == 0)
        uv_cond_broadcast(&done_cond);
      uv_mutex_unlock(&lock);
      ur_job_free(job);
      continue;
    }
    job->state = UR_DONE;
    pfdone(job);
    if (job->async != NULL)
      uv_async_send(job->async);
    else if (job->isprefetch && job->nprefetch > 0 && pfwake != NULL)
      uv_async_send(pfwake);  /* their names: to prefetch in turn */
    uv_cond_broadcast(&done_cond);
    uv_mutex_unlock(&lock);
  }
}


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
  if (dladdr((void *)&worker, &info) && info.dli_fname != NULL)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}


/* start the workers (lock held, or no other thread yet) */
static void startthreads (void) {
  int i, n = wanted_threads();
  for (i = 0; i < n; i++) {
    uv_thread_t t;
    if (uv_thread_create(&t, worker, (void *)(intptr_t)(i + 1)) != 0)
      break;
    nthreads++;
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
  uv_mutex_lock(&lock);
}


/* after a fork, in the parent: go on */
static void afterfork_parent (void) {
  uv_mutex_unlock(&lock);
}


/*
** In the child of a fork, the only thread.  The lock is held (by the
** parent's forking thread, which is this one) and the conditions may
** count waiters that do not exist here: all are made anew.  Jobs that
** were running go back to the queue, to be run again from the start.
*/
static void afterfork_child (void) {
  ur_job *job, *next;
  if (uv_mutex_init(&lock) != 0 || uv_cond_init(&work_cond) != 0 ||
      uv_cond_init(&done_cond) != 0)
    abort();  /* cannot happen with glibc; nothing sane to do */
  for (job = running; job != NULL; job = next) {
    next = job->next;
    if (job->orphan) {  /* nobody wants it: leaked */
      if (job->cw != NULL) nwrites--;
      continue;
    }
    resetjob(job);
    enqueue(job, 1);
  }
  running = NULL;
  nsparing = 0;
  nthreads = 0;
  restart = 1;
  if (first() != NULL) {  /* owners wait for these */
    restart = 0;
    startthreads();
  }
}


/*
** Start the executor (once per process): lock, conditions, fork
** handlers, workers.  On failure 'ready' or 'nthreads' stays 0.
*/
static void start (void) {
  if (uv_mutex_init(&lock) != 0 || uv_cond_init(&work_cond) != 0 ||
      uv_cond_init(&done_cond) != 0)
    return;  /* 'ready' stays 0: every submission fails */
  pin_self();
  if (pthread_atfork(beforefork, afterfork_parent, afterfork_child) != 0)
    return;  /* a fork child would hang: better have no executor */
  (void)atexit(flushatexit);  /* (this code stays mapped: see pin_self) */
  ready = 1;
  startthreads();
}


/*
** Number of executor threads; starts them on first call, and again on
** the first call in the child of a fork.  0: no executor.
*/
int ur_exec_threads (void) {
  int n;
  uv_once(&once, start);
  if (!ready)  /* could not start at all */
    return 0;
  uv_mutex_lock(&lock);
  if (restart) {  /* first use in a fork child */
    restart = 0;
    startthreads();
  }
  n = nthreads;
  uv_mutex_unlock(&lock);
  return n;
}


/*
** Queue 'job', an orphan from the start if 'orphan'.  Returns 0, or a
** libuv error code when no executor thread could be started (the job
** is then untouched and still the caller's).
*/
static int submit (ur_job *job, int orphan) {
  if (ur_exec_threads() == 0)
    return UV_EAGAIN;
  uv_mutex_lock(&lock);
  job->orphan = orphan;
  job->q = job->cw != NULL ? Q_WRITE : job->isprefetch ? Q_PREFETCH
                                                       : Q_WAITED;
  if (job->cw != NULL) nwrites++;
  enqueue(job, 0);
  uv_cond_signal(&work_cond);
  uv_mutex_unlock(&lock);
  return 0;
}


int ur_exec_submit (ur_job *job) {
  return submit(job, 0);
}


/*
** Queue 'job', owned by nobody from here on (an orphan from the start:
** its worker frees it).  Returns as 'ur_exec_submit'.
*/
int ur_exec_submitdetached (ur_job *job) {
  return submit(job, 1);
}


void ur_exec_wait (ur_job *job) {
  uv_mutex_lock(&lock);
  while (job->state != UR_DONE)
    uv_cond_wait(&done_cond, &lock);
  uv_mutex_unlock(&lock);
}


int ur_exec_isdone (ur_job *job) {
  int done;
  uv_mutex_lock(&lock);
  done = (job->state == UR_DONE);
  uv_mutex_unlock(&lock);
  return done;
}


void ur_exec_detach (ur_job *job) {
  uv_mutex_lock(&lock);
  job->async = NULL;
  uv_mutex_unlock(&lock);
}


/*
** Give 'job' a new completion signal 'async'.  Returns 1 if the job is
** done already (its signal, if any, went elsewhere): the caller sends.
*/
int ur_exec_attach (ur_job *job, uv_async_t *async) {
  int done;
  uv_mutex_lock(&lock);
  job->async = async;
  job->isprefetch = 0;  /* (a prefetch adopted: an import now) */
  pfforget(job);  /* (its sweep never comes: 'ur_exec_takeswept') */
  done = (job->state == UR_DONE);
  uv_mutex_unlock(&lock);
  return done;
}


/*
** The owner lets go of 'job' (its completion signal must already be
** detached).  A queued job is cancelled, a running one is left to its
** worker to free, a finished (or never submitted) one is freed now.
*/
void ur_exec_release (ur_job *job) {
  int freeit = 1;
  uv_mutex_lock(&lock);
  job->async = NULL;
  pfforget(job);
  if (job->state == UR_QUEUED)
    unqueue(job);
  else if (job->state == UR_RUNNING) {
    job->orphan = 1;
    freeit = 0;
  }
  uv_mutex_unlock(&lock);
  if (freeit) ur_job_free(job);
}


/*
** Take 'job' back if it is still queued: it leaves the queue and is the
** owner's again (UR_NEW), to run on the owner's thread.  Returns 1 if
** so, 0 if a worker has it or it is done.
*/
int ur_exec_takeback (ur_job *job) {
  int taken = 0;
  uv_mutex_lock(&lock);
  if (job->state == UR_QUEUED) {
    unqueue(job);
    job->state = UR_NEW;
    taken = 1;
  }
  uv_mutex_unlock(&lock);
  return taken;
}


/*
** Take back the first queued prefetch job of 'owner' (a state's
** runtime): its Lua thread runs it while it waits for a worker, instead
** of idling.  Never another state's: that state could be waiting for
** it, or releasing it.  NULL if none.
*/
ur_job *ur_exec_takeprefetch (const void *owner) {
  ur_job *job;
  if (!ready || owner == NULL) return NULL;
  uv_mutex_lock(&lock);
  for (job = queue[Q_PREFETCH].head; job != NULL && job->owner != owner;
       job = job->next) ;
  if (job != NULL) {
    unqueue(job);
    job->state = UR_NEW;
  }
  uv_mutex_unlock(&lock);
  return job;
}


/*
** Have 'a' signalled whenever a prefetch that found names is done, so
** that the Lua thread prefetches those too even while it waits in the
** loop ('ur_prefetch_poll').  One handle per process: the last set.
*/
void ur_exec_setpfwake (uv_async_t *a) {
  uv_mutex_lock(&lock);
  pfwake = a;
  uv_mutex_unlock(&lock);
}


/* 'a' is closing: never signal it again */
void ur_exec_droppfwake (uv_async_t *a) {
  if (!ready) return;
  uv_mutex_lock(&lock);
  if (pfwake == a) pfwake = NULL;
  uv_mutex_unlock(&lock);
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
  if (!ready) return;
  uv_mutex_lock(&lock);
  while ((job = queue[Q_WRITE].head) != NULL) {  /* queued: write here */
    unqueue(job);
    if (--nwrites == 0) uv_cond_broadcast(&done_cond);
    uv_mutex_unlock(&lock);
    ur_job_run(job, NULL);  /* (a write job needs no state) */
    ur_job_free(job);
    uv_mutex_lock(&lock);
  }
  while (nwrites > 0 && nthreads > 0) {  /* running: a worker's */
    uint64_t spent = uv_hrtime() - start;
    if (spent >= FLUSH_NS) break;  /* it is stuck (a full disk...) */
    (void)uv_cond_timedwait(&done_cond, &lock, FLUSH_NS - spent);
  }
  uv_mutex_unlock(&lock);
}


/* at the process's exit: the entries still queued (os.exit) */
static void flushatexit (void) {
  ur_exec_flush();
}


/*
** Somebody waits for 'job' now (a prefetch adopted): if it is still
** queued, it goes to the tail of the queue of waited imports.
*/
void ur_exec_promote (ur_job *job) {
  uv_mutex_lock(&lock);
  if (job->state == UR_QUEUED && job->q != Q_WAITED) {
    unqueue(job);
    job->q = Q_WAITED;
    enqueue(job, 0);
  }
  uv_mutex_unlock(&lock);
}


/*
** Wait for 'job', on the Lua thread: meanwhile run queued prefetch jobs
** here rather than idle (each is then done, for the 'require' that
** adopts it).
*/
void ur_exec_help (ur_job *job) {
  ur_job *pj;
  while (!ur_exec_isdone(job) &&
         (pj = ur_exec_takeprefetch(job->owner)) != NULL)
    ur_exec_runhere(pj);
  ur_exec_wait(job);
}


/*
** Run a job taken back ('ur_exec_takeback') on the calling thread, in a
** scratch lua_State, and mark it done as a worker would.
*/
void ur_exec_runhere (ur_job *job) {
  ur_arena arena = {NULL, NULL, 0};
  job->worker = 0;  /* (stats: the Lua thread's) */
  job->t_start = uv_hrtime();
  ur_job_run(job, &arena);
  job->t_end = uv_hrtime();
  ur_arena_free(&arena);
  uv_mutex_lock(&lock);
  job->state = UR_DONE;
  pfdone(job);
  uv_cond_broadcast(&done_cond);  /* as a worker does */
  uv_mutex_unlock(&lock);
}


/* see ur.h */
size_t ur_exec_pfheld (void) {
  size_t n;
  if (!ready) return 0;
  uv_mutex_lock(&lock);
  n = pfheld;
  uv_mutex_unlock(&lock);
  return n;
}


/* see ur.h */
int ur_exec_hasswept (const void *owner) {
  ur_job *job;
  if (!ready) return 0;
  uv_mutex_lock(&lock);
  for (job = pfready; job != NULL && job->owner != owner; job = job->pfnext)
    ;
  uv_mutex_unlock(&lock);
  return job != NULL;
}


/* see ur.h: the sweep's work, without a look at every prefetch */
int ur_exec_takeswept (const void *owner, ur_job **out, int max) {
  ur_job *job, *next;
  int n = 0;
  if (!ready) return 0;
  uv_mutex_lock(&lock);
  for (job = pfready; job != NULL && n < max; job = next) {
    next = job->pfnext;
    if (job->owner == owner) {
      pfunlist(job);
      out[n++] = job;
    }
  }
  uv_mutex_unlock(&lock);
  return n;
}
