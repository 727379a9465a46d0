/*
** execpf.c: the import executor's record of done prefetches.  A
** prefetch that found names is listed when done, until its owner's
** sweep takes it ('ur_exec_takeswept'), and the bytecode of every done
** prefetch counts as held until its owner adopts or releases it (the
** byte budget: 'ur_exec_pfheld').  All under the executor's lock.
*/

#include "exec.h"


/* a prefetch is done: count its bytecode as held and, if it found
   names, list it for its sweep (lock held) */
void ur_ex_pfdone (ur_job *job) {
  if (!job->isprefetch) return;
  ur_ex.pfheld += job->codelen;
  job->pfheld = 1;
  if (job->nprefetch == 0) return;
  job->pfprev = NULL;
  job->pfnext = ur_ex.pfready;
  if (ur_ex.pfready != NULL) ur_ex.pfready->pfprev = job;
  ur_ex.pfready = job;
  job->pflisted = 1;
}


/* take 'job' off the list of 'ur_ex_pfdone' (lock held; its sweep took it:
   its bytecode still counts) */
static void pfunlist (ur_job *job) {
  if (!job->pflisted) return;
  if (job->pfprev != NULL) job->pfprev->pfnext = job->pfnext;
  else ur_ex.pfready = job->pfnext;
  if (job->pfnext != NULL) job->pfnext->pfprev = job->pfprev;
  job->pflisted = 0;
}


/* its owner adopted or released 'job': off that list, and its bytecode
   off the count (lock held) */
void ur_ex_pfforget (ur_job *job) {
  pfunlist(job);
  if (job->pfheld) {
    ur_ex.pfheld -= job->codelen;
    job->pfheld = 0;
  }
}


/*
** Have 'a' signalled whenever a prefetch that found names is done, so
** that the Lua thread prefetches those too even while it waits in the
** loop ('ur_prefetch_poll').  One handle per process: the last set.
*/
void ur_exec_setpfwake (uv_async_t *a) {
  uv_mutex_lock(&ur_ex.lock);
  ur_ex.pfwake = a;
  uv_mutex_unlock(&ur_ex.lock);
}


/* 'a' is closing: never signal it again */
void ur_exec_droppfwake (uv_async_t *a) {
  if (!ur_ex.ready) return;
  uv_mutex_lock(&ur_ex.lock);
  if (ur_ex.pfwake == a) ur_ex.pfwake = NULL;
  uv_mutex_unlock(&ur_ex.lock);
}


/* see ur.h */
size_t ur_exec_pfheld (void) {
  size_t n;
  if (!ur_ex.ready) return 0;
  uv_mutex_lock(&ur_ex.lock);
  n = ur_ex.pfheld;
  uv_mutex_unlock(&ur_ex.lock);
  return n;
}


/* see ur.h */
int ur_exec_hasswept (const void *owner) {
  ur_job *job;
  if (!ur_ex.ready) return 0;
  uv_mutex_lock(&ur_ex.lock);
  for (job = ur_ex.pfready; job != NULL && job->owner != owner;
       job = job->pfnext) ;
  uv_mutex_unlock(&ur_ex.lock);
  return job != NULL;
}


/* see ur.h: the sweep's work, without a look at every prefetch */
int ur_exec_takeswept (const void *owner, ur_job **out, int max) {
  ur_job *job, *next;
  int n = 0;
  if (!ur_ex.ready) return 0;
  uv_mutex_lock(&ur_ex.lock);
  for (job = ur_ex.pfready; job != NULL && n < max; job = next) {
    next = job->pfnext;
    if (job->owner == owner) {
      pfunlist(job);
      out[n++] = job;
    }
  }
  uv_mutex_unlock(&ur_ex.lock);
  return n;
}
