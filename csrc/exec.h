/*
** exec.h: what the parts of the import executor share: executor.c
** (the queue, the workers, the jobs' owners' calls), execlife.c (start,
** thread count, fork, the flush at close and exit) and execpf.c (done
** prefetches: their list and the bytes they hold).  See executor.c for
** the design and the locking rule.
*/

#ifndef exec_h
#define exec_h

#include "ur.h"

#pragma GCC visibility push(hidden)

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

typedef struct ur_queue {
  ur_job *head, *tail;
} ur_queue;

/* the executor: one per process; every field but 'ready' under 'lock' */
typedef struct ur_executor {
  uv_mutex_t lock;
  uv_cond_t work_cond;  /* signalled when a job is queued */
  uv_cond_t done_cond;  /* broadcast when a job is done */
  ur_queue queue[NQ];
  ur_job *running;      /* UR_RUNNING jobs, linked by 'next' */
  int nthreads;         /* threads running; 0 if none could start */
  int ready;            /* 'lock' and conditions are usable (set once,
                           before any other thread runs) */
  int restart;          /* a fork child: start workers anew */
  int nwrites;          /* cache write jobs queued or running */
  int nsparing;         /* 'sparecore' prefetches running */
  ur_job *pfready;      /* prefetches that found names, done, not swept
                           yet ('pfnext'; 'ur_exec_release' unlinks one
                           freed before that) */
  uv_async_t *pfwake;   /* signalled when a prefetch that found names
                           is done, or NULL */
  size_t pfheld;        /* bytes of bytecode that done prefetches, not
                           adopted or released yet, hold (all owners':
                           'ur_exec_pfheld') */
} ur_executor;

extern ur_executor ur_ex;

/* executor.c (lock held) */
ur_job *ur_ex_first (void);
void ur_ex_enqueue (ur_job *job, int front);
void ur_ex_unqueue (ur_job *job);
void ur_ex_worker (void *arg);  /* a worker thread's body */

/* execpf.c (lock held) */
void ur_ex_pfdone (ur_job *job);
void ur_ex_pfforget (ur_job *job);

#pragma GCC visibility pop

#endif
