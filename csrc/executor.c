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
** The executor is three files: this one (the queue, the workers, and
** the calls of a job's owner), execlife.c (start, thread count, fork,
** the flush at close and exit) and execpf.c (done prefetches), sharing
** 'ur_ex' through exec.h.
*/

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"


/* a worker whose jobs grew its memory trims the heap after this long
   without a job: not between the imports of a burst, since the trim
   takes back the Lua thread's free memory too (its next allocations
   fault the pages in again) and holds each malloc arena's lock */
#define TRIM_NS   UINT64_C(50000000)

ur_executor ur_ex;


/* take 'job' off the list of running jobs (lock held) */
static void unrun (ur_job *job) {
  ur_job **p = &ur_ex.running;
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
ur_job *ur_ex_first (void) {
  ur_job *pf = ur_ex.queue[Q_PREFETCH].head;
  if (ur_ex.queue[Q_WAITED].head != NULL)
    return ur_ex.queue[Q_WAITED].head;
  if (pf != NULL && (!pf->sparecore || ur_ex.nthreads == 1 ||
                     ur_ex.nsparing < ur_ex.nthreads - 1))
    return pf;
  return ur_ex.queue[Q_WRITE].head;
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
void ur_ex_enqueue (ur_job *job, int front) {
  ur_queue *q = &ur_ex.queue[job->q];
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
void ur_ex_unqueue (ur_job *job) {
  ur_queue *q = &ur_ex.queue[job->q];
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
** A prefetch that ended at a FIFO or a device ('nonreg') was adopted:
** make it an import to run again, searching as stock does (lock held;
** nobody runs it).
*/
static void asimport (ur_job *job) {
  job->nonreg = job->nowait = 0;
  ur_buf_free(&job->msg);
  job->msg.oom = 0;
}


/*
** Worker thread: take jobs off the queue and run them forever.  A job
** that compiles does so in a lua_State of its own, made in the
** worker's arena (see 'luastep' in search.c).
*/
void ur_ex_worker (void *arg) {
  ur_arena arena = {NULL, NULL, 0};
  int big = 0;  /* a job grew the arena large since the last trim */
  for (;;) {
    ur_job *job;
    uv_mutex_lock(&ur_ex.lock);
    while ((job = ur_ex_first()) == NULL) {
      if (big) {  /* give the memory of big compiles back, once idle */
        if (uv_cond_timedwait(&ur_ex.work_cond, &ur_ex.lock, TRIM_NS) == 0)
          continue;  /* woken: maybe a job */
        big = 0;
        uv_mutex_unlock(&ur_ex.lock);
#if defined(__GLIBC__)
        malloc_trim(0);  /* (every arena: the Lua thread's too) */
#endif
        uv_mutex_lock(&ur_ex.lock);
        continue;
      }
      uv_cond_wait(&ur_ex.work_cond, &ur_ex.lock);
    }
    ur_ex_unqueue(job);
    if (job->q == Q_PREFETCH && job->sparecore) ur_ex.nsparing++;
    job->state = UR_RUNNING;
    job->next = ur_ex.running;
    ur_ex.running = job;
    uv_mutex_unlock(&ur_ex.lock);
    job->worker = (int)(intptr_t)arg;
    job->t_start = uv_hrtime();
    ur_job_run(job, &arena);
    job->t_end = uv_hrtime();
    big |= ur_arena_reset(&arena);  /* (the compile's state is gone) */
    uv_mutex_lock(&ur_ex.lock);
    if (job->nonreg && !job->isprefetch && !job->orphan) {
      /* a task adopted the prefetch as it ended at a FIFO or a device:
         search again as an import, here and now (the task would only
         before its next loop turn, and its program may be the FIFO's
         writer, waiting for a reader) */
      asimport(job);
      uv_mutex_unlock(&ur_ex.lock);
      ur_job_run(job, &arena);
      job->t_end = uv_hrtime();
      big |= ur_arena_reset(&arena);
      uv_mutex_lock(&ur_ex.lock);
    }
    unrun(job);
    if (job->q == Q_PREFETCH && job->sparecore &&
        --ur_ex.nsparing == ur_ex.nthreads - 2)
      uv_cond_signal(&ur_ex.work_cond);  /* room for the next one */
    if (job->orphan) {  /* owner is gone: results go nowhere */
      if (job->cw != NULL && --ur_ex.nwrites == 0)
        uv_cond_broadcast(&ur_ex.done_cond);
      uv_mutex_unlock(&ur_ex.lock);
      ur_job_free(job);
      continue;
    }
    job->state = UR_DONE;
    ur_ex_pfdone(job);
    if (job->async != NULL)
      uv_async_send(job->async);
    else if (job->isprefetch && job->nprefetch > 0 && ur_ex.pfwake != NULL)
      uv_async_send(ur_ex.pfwake);  /* their names: to prefetch in turn */
    uv_cond_broadcast(&ur_ex.done_cond);
    uv_mutex_unlock(&ur_ex.lock);
  }
}


/*
** Queue 'job', an orphan from the start if 'orphan'.  Returns 0, or a
** libuv error code when no executor thread could be started (the job
** is then untouched and still the caller's).
*/
static int submit (ur_job *job, int orphan) {
  if (ur_exec_threads() == 0)
    return UV_EAGAIN;
  uv_mutex_lock(&ur_ex.lock);
  job->orphan = orphan;
  job->q = job->cw != NULL ? Q_WRITE : job->isprefetch ? Q_PREFETCH
                                                       : Q_WAITED;
  if (job->cw != NULL) ur_ex.nwrites++;
  ur_ex_enqueue(job, 0);
  uv_cond_signal(&ur_ex.work_cond);
  uv_mutex_unlock(&ur_ex.lock);
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
  uv_mutex_lock(&ur_ex.lock);
  while (job->state != UR_DONE)
    uv_cond_wait(&ur_ex.done_cond, &ur_ex.lock);
  uv_mutex_unlock(&ur_ex.lock);
}


int ur_exec_isdone (ur_job *job) {
  int done;
  uv_mutex_lock(&ur_ex.lock);
  done = (job->state == UR_DONE);
  uv_mutex_unlock(&ur_ex.lock);
  return done;
}


void ur_exec_detach (ur_job *job) {
  uv_mutex_lock(&ur_ex.lock);
  job->async = NULL;
  uv_mutex_unlock(&ur_ex.lock);
}


/*
** Give 'job' a new completion signal 'async'.  Returns 1 if the job is
** done already (its signal, if any, went elsewhere): the caller sends.
*/
int ur_exec_attach (ur_job *job, uv_async_t *async) {
  int done;
  uv_mutex_lock(&ur_ex.lock);
  job->async = async;
  job->isprefetch = 0;  /* (a prefetch adopted: an import now) */
  if (job->state != UR_RUNNING && job->state != UR_DONE)
    job->nowait = 0;  /* it opens as stock's search would */
  ur_ex_pfforget(job);  /* (its sweep never comes: 'ur_exec_takeswept') */
  if (job->state == UR_DONE && job->nonreg) {
    /* it ended at a FIFO or a device just before: run it again, as an
       import, first in the queue (its task would search again only at
       its next loop turn: see the worker) */
    asimport(job);
    job->q = Q_WAITED;
    ur_ex_enqueue(job, 1);
    uv_cond_signal(&ur_ex.work_cond);
  }
  done = (job->state == UR_DONE);
  uv_mutex_unlock(&ur_ex.lock);
  return done;
}


/*
** The owner lets go of 'job' (its completion signal must already be
** detached).  A queued job is cancelled, a running one is left to its
** worker to free, a finished (or never submitted) one is freed now.
*/
void ur_exec_release (ur_job *job) {
  int freeit = 1;
  uv_mutex_lock(&ur_ex.lock);
  job->async = NULL;
  ur_ex_pfforget(job);
  if (job->state == UR_QUEUED)
    ur_ex_unqueue(job);
  else if (job->state == UR_RUNNING) {
    job->orphan = 1;
    freeit = 0;
  }
  uv_mutex_unlock(&ur_ex.lock);
  if (freeit) ur_job_free(job);
}


/*
** Take 'job' back if it is still queued: it leaves the queue and is the
** owner's again (UR_NEW), to run on the owner's thread.  Returns 1 if
** so, 0 if a worker has it or it is done.
*/
int ur_exec_takeback (ur_job *job) {
  int taken = 0;
  uv_mutex_lock(&ur_ex.lock);
  if (job->state == UR_QUEUED) {
    ur_ex_unqueue(job);
    job->state = UR_NEW;
    job->nowait = 0;  /* (an adopted prefetch's: an import now) */
    taken = 1;
  }
  uv_mutex_unlock(&ur_ex.lock);
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
  if (!ur_ex.ready || owner == NULL) return NULL;
  uv_mutex_lock(&ur_ex.lock);
  for (job = ur_ex.queue[Q_PREFETCH].head; job != NULL && job->owner != owner;
       job = job->next) ;
  if (job != NULL) {
    ur_ex_unqueue(job);
    job->state = UR_NEW;
  }
  uv_mutex_unlock(&ur_ex.lock);
  return job;
}


/*
** Somebody waits for 'job' now (a prefetch adopted): if it is still
** queued, it goes to the tail of the queue of waited imports.
*/
void ur_exec_promote (ur_job *job) {
  uv_mutex_lock(&ur_ex.lock);
  if (job->state == UR_QUEUED && job->q != Q_WAITED) {
    ur_ex_unqueue(job);
    job->q = Q_WAITED;
    ur_ex_enqueue(job, 0);
  }
  uv_mutex_unlock(&ur_ex.lock);
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
  uv_mutex_lock(&ur_ex.lock);
  job->state = UR_DONE;
  ur_ex_pfdone(job);
  uv_cond_broadcast(&ur_ex.done_cond);  /* as a worker does */
  uv_mutex_unlock(&ur_ex.lock);
}


