/*
** runtime.c: the per-state runtime record (ur.h), made on first use:
** the list of its jobs in flight, its timers (the scheduler's
** timeouts), and its end.  Closing the state releases every job (a
** running one is left to its worker) and closes the handle.  The loop
** and its wake-up handle: loop.c.
**
** Like loop.c, a leaf: it calls into the Lua-thread side only through
** 'rt->ontimer', which the scheduler sets.
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"


/* a timer; 'h' first so that a handle is a 'ur_timer' */
struct ur_timer {
  uv_timer_t h;
  ur_runtime *rt;       /* NULL once the runtime let go of it */
  ur_luvdata luv;       /* its 'data' on luv's loop */
  lua_Integer id;       /* what 'rt->ontimer' is told */
  ur_timer *next, *prev;
};

static const char RUNTIME = 'r';  /* registry key (by address) */


/* {======================================================
** Timers
** ======================================================= */

static void freetimer (uv_handle_t *h) {
  free(h);
}


/* unlink, close and (in the close callback) free timer 't' */
static void droptimer (ur_runtime *rt, ur_timer *t) {
  if (t->prev) t->prev->next = t->next;
  else rt->timers = t->next;
  if (t->next) t->next->prev = t->prev;
  t->next = t->prev = NULL;
  t->rt = NULL;
  if (!uv_is_closing((uv_handle_t *)&t->h))
    uv_close((uv_handle_t *)&t->h, freetimer);
}


/* a timer fired (loop thread): tell the scheduler, protected */
static void ontimer (uv_timer_t *h) {
  ur_timer *t = (ur_timer *)h;
  ur_runtime *rt = t->rt;
  lua_Integer id = t->id;
  if (rt == NULL) return;
  droptimer(rt, t);  /* one shot: it is spent */
  if (rt->ontimer == NULL) return;
  rt->inturn++;
  lua_pushcfunction(rt->cb, rt->ontimer);
  lua_pushinteger(rt->cb, id);
  if (lua_pcall(rt->cb, 1, 0, 0) != LUA_OK)
    lua_pop(rt->cb, 1);  /* (memory) the wait goes on, untimed */
  lua_settop(rt->cb, 0);
  rt->inturn--;
  ur_runtime_refresh(rt);
}


/*
** Start a one-shot timer of 'ms' on the loop in use, which calls
** 'rt->ontimer(id)' on the loop.  Raises on failure.
*/
void ur_runtime_timer (lua_State *L, ur_runtime *rt, uint64_t ms,
                       lua_Integer id) {
  uv_loop_t *loop = ur_runtime_loop(L, rt);
  ur_timer *t = (ur_timer *)malloc(sizeof(*t));
  int err;
  if (t == NULL) luaL_error(L, "not enough memory");
  if ((err = uv_timer_init(loop, &t->h)) != 0) {
    free(t);
    luaL_error(L, "uvrequire: cannot start a timer: %s", uv_strerror(err));
  }
  ur_runtime_handledata(L, rt, (uv_handle_t *)&t->h, &t->luv);
  t->rt = rt;
  t->id = id;
  t->prev = NULL;
  t->next = rt->timers;
  if (rt->timers) rt->timers->prev = t;
  rt->timers = t;
  uv_update_time(loop);  /* from now: the loop's time is that of its
                           last turn, which may be long past */
  uv_timer_start(&t->h, ontimer, ms, 0);
}


/* stop timer 'id' if it is still running (a fired one is gone) */
void ur_runtime_untimer (ur_runtime *rt, lua_Integer id) {
  ur_timer *t;
  for (t = rt->timers; t != NULL; t = t->next)
    if (t->id == id) {
      droptimer(rt, t);
      return;
    }
}

/* }====================================================== */


/* {======================================================
** The runtime
** ======================================================= */

static void unlink_job (ur_runtime *rt, ur_job *job) {
  if (job->lprev) job->lprev->lnext = job->lnext;
  else rt->jobs = job->lnext;
  if (job->lnext) job->lnext->lprev = job->lprev;
  job->lnext = job->lprev = NULL;
  rt->njobs--;
}


/*
** __gc of the runtime (the state is closing): detach every job from the
** handle (their load records release them, in their own __gc), then
** leave the loop.  No worker touches the handle after the detach.
*/
static int rt_gc (lua_State *L) {
  ur_runtime *rt = (ur_runtime *)lua_touserdata(L, 1);
  rt->closed = 1;
  if (rt->wake != NULL) ur_exec_droppfwake(&rt->wake->h);
  while (rt->jobs != NULL) {
    ur_exec_detach(rt->jobs);
    unlink_job(rt, rt->jobs);
  }
  while (rt->timers != NULL)
    droptimer(rt, rt->timers);
  ur_runtime_leaveloop(rt);
  free(rt->ring);  /* the scheduler's ready queue */
  rt->ring = NULL;
  rt->rhead = rt->rlen = rt->rcap = 0;
  return 0;
}


/* the runtime of state 'L', created on first use (may raise: memory) */
ur_runtime *ur_runtime_get (lua_State *L) {
  ur_runtime *rt;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &RUNTIME) == LUA_TUSERDATA) {
    rt = (ur_runtime *)lua_touserdata(L, -1);
    lua_pop(L, 1);  /* pop runtime */
    return rt;
  }
  lua_pop(L, 1);  /* pop nil */
  rt = (ur_runtime *)lua_newuserdatauv(L, sizeof(*rt), 1);
  memset(rt, 0, sizeof(*rt));  /* closed state: no loop, no jobs */
  lua_createtable(L, 0, 1);  /* metatable */
  lua_pushcfunction(L, rt_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  rt->cb = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);  /* runtime anchors its thread */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &RUNTIME);  /* pops runtime */
  return rt;
}


/* 'job' is in flight for 'rt': on its list, and the loop kept alive */
static void inflight (ur_runtime *rt, ur_job *job) {
  job->lprev = NULL;
  job->lnext = rt->jobs;
  if (rt->jobs) rt->jobs->lprev = job;
  rt->jobs = job;
  rt->njobs++;
  ur_exec_setpfwake(&rt->wake->h);
  ur_runtime_refresh(rt);
}


/*
** Submit 'job' to the executor; when it is done, the wake-up handle
** fires.  Returns 0 or a libuv error code (then the job is not
** submitted and still the caller's).  The loop must be set up.
*/
int ur_runtime_submit (lua_State *L, ur_runtime *rt, ur_job *job) {
  int err;
  (void)L;
  if (rt->wake == NULL) return UV_EINVAL;
  job->async = &rt->wake->h;
  job->delivered = 0;
  if ((err = ur_exec_submit(job)) != 0) {
    job->async = NULL;
    return err;
  }
  inflight(rt, job);
  return 0;
}


/*
** 'job' was submitted with no completion signal (a prefetch): it is in
** flight for 'rt' from now on, as if 'ur_runtime_submit' had submitted
** it.  Returns 1 if it is done already: its completion was then
** delivered, and the caller readies its waiter itself.  The loop must
** be set up.
*/
int ur_runtime_adopt (ur_runtime *rt, ur_job *job) {
  int done = ur_exec_attach(job, &rt->wake->h);
  job->delivered = done;
  inflight(rt, job);
  return done;
}


/* the runtime gives up 'job' (results consumed, or owner gone) */
void ur_runtime_drop (ur_runtime *rt, ur_job *job) {
  if (job->async != NULL) {
    ur_exec_detach(job);
    unlink_job(rt, job);
    ur_runtime_refresh(rt);
  }
  ur_exec_release(job);
}


/* a job in flight that is done and not yet delivered, or NULL */
ur_job *ur_runtime_nextdone (ur_runtime *rt) {
  ur_job *j;
  for (j = rt->jobs; j != NULL; j = j->lnext)
    if (!j->delivered && ur_exec_isdone(j)) return j;
  return NULL;
}

/* }====================================================== */
