/*
** loop.c: the loop half of the per-state runtime.  It chooses the loop
** on which imports complete (a host's, luv's or its own) and keeps ONE
** wake-up handle (a uv_async_t) on it for the whole state: executor
** threads signal it when a job is done, the scheduler when a coroutine
** is ready.  On the loop, the handle's callback calls the scheduler's
** turn ('rt->turn'), protected, on a thread of its own.  The handle keeps the loop alive
** only while something is pending (jobs in flight, ready coroutines).
**
** The loop is chosen again whenever nothing is in flight: luv loaded
** after the first import, or a host's 'uvrequire_set_loop', moves the
** handle to the new loop.  Closing the state releases every job (a
** running one is left to its worker) and closes the handle.
**
** This file is a leaf: it calls into the Lua-thread side only through
** 'rt->turn', which the scheduler sets.
*/

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ur.h"
#include "uvrequire.h"


/* the wake-up handle; 'h' first so that a handle is a 'ur_wakeh' */
struct ur_wakeh {
  uv_async_t h;
  ur_runtime *rt;       /* NULL once the runtime let go of it */
};

/* the head of luv's 'luv_ctx_t' (luv.h), read without linking luv */
typedef struct luvctx {
  uv_loop_t *loop;
  lua_State *L;
  void *cb_pcall, *thrd_pcall, *thrd_cpcall;
  int mode;             /* loop run mode, -1 when not running */
} luvctx;

/* a timer; 'h' first so that a handle is a 'ur_timer' */
struct ur_timer {
  uv_timer_t h;
  ur_runtime *rt;       /* NULL once the runtime let go of it */
  lua_Integer id;       /* what 'rt->ontimer' is told */
  ur_timer *next, *prev;
};

static const char RUNTIME = 'r';  /* registry key (by address) */


/* {======================================================
** The wake-up handle
** ======================================================= */

static void freewake (uv_handle_t *h) {
  free(h);
}


/*
** On the loop: a job is done or a coroutine is ready.  The scheduler
** runs protected; if even that fails (memory), the turn is tried again
** at the next iteration, so that nothing is lost.
*/
static void onwake (uv_async_t *h) {
  ur_runtime *rt = ((ur_wakeh *)h)->rt;
  if (rt == NULL || rt->turn == NULL) return;
  rt->inturn++;
  lua_pushcfunction(rt->cb, rt->turn);
  if (lua_pcall(rt->cb, 0, 0, 0) != LUA_OK) {
    lua_pop(rt->cb, 1);  /* pop the error */
    uv_async_send(h);  /* try again at the next iteration */
  }
  lua_settop(rt->cb, 0);
  rt->inturn--;
  ur_runtime_refresh(rt);
}


/* close the wake-up handle, if any (its memory goes in its callback) */
static void closewake (ur_runtime *rt) {
  ur_wakeh *w = rt->wake;
  if (w == NULL) return;
  rt->wake = NULL;
  w->rt = NULL;
  ur_exec_droppfwake(&w->h);
  /* luv's loop __gc may have closed it already, walking its loop */
  if (!uv_is_closing((uv_handle_t *)&w->h))
    uv_close((uv_handle_t *)&w->h, freewake);
}


/* keep the loop alive exactly while something is pending */
void ur_runtime_refresh (ur_runtime *rt) {
  if (rt->wake == NULL) return;
  if (rt->njobs > 0 || rt->rlen > 0)
    uv_ref((uv_handle_t *)&rt->wake->h);
  else
    uv_unref((uv_handle_t *)&rt->wake->h);
}


/* have the loop call the scheduler at its next iteration */
void ur_runtime_signal (ur_runtime *rt) {
  if (rt->wake == NULL) return;
  uv_ref((uv_handle_t *)&rt->wake->h);
  uv_async_send(&rt->wake->h);
}

/* }====================================================== */


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
  t->h.data = NULL;  /* luv's loop __gc reads 'data' of every handle */
  t->rt = rt;
  t->id = id;
  t->prev = NULL;
  t->next = rt->timers;
  if (rt->timers) rt->timers->prev = t;
  rt->timers = t;
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
** Choosing the loop
** ======================================================= */

static void closewalk (uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}


/* leave the loop in use: close the handle; close our own loop */
static void leaveloop (ur_runtime *rt) {
  closewake(rt);
  if (rt->loop == &rt->own) {
    uv_walk(&rt->own, closewalk, NULL);
    uv_run(&rt->own, UV_RUN_DEFAULT);
    uv_loop_close(&rt->own);
  }
  rt->loop = NULL;
  rt->kind = NULL;
}


/*
** In a forked child, on our own loop or luv's (a host forks its own):
** renew the loop's kernel state (epoll, the eventfd behind async
** handles) and give the jobs in flight a new wake-up handle.  Without
** it the child would change the epoll set it shares with its parent
** (and could leave the parent's loop deaf to its own wake-ups).  The
** old handle may hold a signal sent to the old eventfd, marked pending,
** which would swallow every later one; the workers (the executor
** restarts them in the child) are off it first.
*/
static void renewafterfork (lua_State *L, ur_runtime *rt) {
  ur_wakeh *w;
  ur_job *j;
  int err, done = 0;
  rt->pid = (long)getpid();
  for (j = rt->jobs; j != NULL; j = j->lnext)
    ur_exec_detach(j);
  uv_loop_fork(rt->loop);
  closewake(rt);
  if ((w = (ur_wakeh *)malloc(sizeof(*w))) == NULL ||
      (err = uv_async_init(rt->loop, &w->h, onwake)) != 0) {
    free(w);
    luaL_error(L, "uvrequire: cannot set up the loop after fork");
  }
  w->h.data = NULL;
  w->rt = rt;
  rt->wake = w;
  for (j = rt->jobs; j != NULL; j = j->lnext)
    done |= ur_exec_attach(j, &w->h);
  ur_runtime_refresh(rt);
  if (done || rt->rlen > 0) uv_async_send(&w->h);
}


/* luv's context, if luv was loaded in this state and has a loop */
static luvctx *luvcontext (lua_State *L) {
  luvctx *ctx = NULL;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "luv") != LUA_TNIL) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, "luv_context") == LUA_TUSERDATA)
      ctx = (luvctx *)lua_touserdata(L, -1);
    lua_pop(L, 1);  /* pop context */
  }
  lua_pop(L, 2);  /* pop LOADED.luv and LOADED */
  return (ctx != NULL && ctx->loop != NULL) ? ctx : NULL;
}


/* the loop we should use now: the host's, else luv's, else none */
static uv_loop_t *wanted (lua_State *L, const char **kind) {
  uv_loop_t *loop = NULL;
  luvctx *ctx;
  lua_getfield(L, LUA_REGISTRYINDEX, UVREQUIRE_LOOP_KEY);
  if (lua_islightuserdata(L, -1)) {
    loop = (uv_loop_t *)lua_touserdata(L, -1);
    *kind = "host";
  }
  else if ((ctx = luvcontext(L)) != NULL) {
    loop = ctx->loop;
    *kind = "luv";
  }
  lua_pop(L, 1);  /* pop host loop field */
  return loop;
}


/*
** The loop in use, with its wake-up handle.  While nothing is in flight
** it follows the host's or luv's loop as they appear; else the loop
** stays.  Raises if the state is closing or no loop can be set up.
*/
uv_loop_t *ur_runtime_loop (lua_State *L, ur_runtime *rt) {
  const char *kind = "own";
  uv_loop_t *loop;
  ur_wakeh *w;
  int err;
  if (rt->closed)
    luaL_error(L, "uvrequire: the state is closing");
  if (rt->loop != NULL && rt->pid != (long)getpid() &&
      strcmp(rt->kind, "host") != 0)
    renewafterfork(L, rt);
  if (rt->loop != NULL && (rt->njobs > 0 || rt->rlen > 0 || rt->inturn ||
                           rt->timers != NULL))
    return rt->loop;  /* busy: stay */
  loop = wanted(L, &kind);
  if (loop == NULL && rt->loop == &rt->own)
    return rt->loop;  /* our own loop, still wanted */
  if (rt->loop != NULL && rt->loop == loop)
    return rt->loop;
  leaveloop(rt);
  if (loop == NULL) {
    if ((err = uv_loop_init(&rt->own)) != 0)
      luaL_error(L, "uvrequire: cannot create a loop: %s", uv_strerror(err));
    loop = &rt->own;
  }
  if ((w = (ur_wakeh *)malloc(sizeof(*w))) == NULL ||
      (err = uv_async_init(loop, &w->h, onwake)) != 0) {
    free(w);
    if (loop == &rt->own) uv_loop_close(&rt->own);
    luaL_error(L, "uvrequire: cannot set up the loop: %s",
               w == NULL ? "not enough memory" : uv_strerror(err));
  }
  w->h.data = NULL;  /* luv's loop __gc reads 'data' of every handle */
  w->rt = rt;
  uv_unref((uv_handle_t *)&w->h);
  rt->wake = w;
  rt->loop = loop;
  rt->kind = kind;
  rt->pid = (long)getpid();  /* (a fork child renews it: see above) */
  return loop;
}


/* is a loop that uvrequire serves (or luv's) running now? */
int ur_runtime_running (lua_State *L, ur_runtime *rt) {
  luvctx *ctx;
  if (rt->running || rt->inturn) return 1;
  ctx = luvcontext(L);
  return ctx != NULL && ctx->mode != -1;
}


/*
** core.setloop(loop): what 'uvrequire_set_loop' calls.  With nothing in
** flight, records the host's loop (a light userdata) for the next
** import and returns 0; else returns UV_EBUSY and changes nothing.
*/
int ur_l_setloop (lua_State *L) {
  ur_runtime *rt = ur_runtime_get(L);
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  if (rt->njobs > 0 || rt->rlen > 0 || rt->inturn) {
    lua_pushinteger(L, UV_EBUSY);
    return 1;
  }
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, UVREQUIRE_LOOP_KEY);
  lua_pushinteger(L, 0);
  return 1;
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
  leaveloop(rt);
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
  job->lprev = NULL;
  job->lnext = rt->jobs;
  if (rt->jobs) rt->jobs->lprev = job;
  rt->jobs = job;
  rt->njobs++;
  ur_exec_setpfwake(&rt->wake->h);
  ur_runtime_refresh(rt);
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
  int done;
  job->isprefetch = 0;
  job->lprev = NULL;
  job->lnext = rt->jobs;
  if (rt->jobs) rt->jobs->lprev = job;
  rt->jobs = job;
  rt->njobs++;
  done = ur_exec_attach(job, &rt->wake->h);
  job->delivered = done;
  ur_exec_setpfwake(&rt->wake->h);
  ur_runtime_refresh(rt);
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


/* {======================================================
** uvrequire.run and uvrequire.loopinfo
** ======================================================= */

/*
** core.run([mode]): run the loop in use ("default", "once" or
** "nowait", as uv_run).  Returns true if the loop still has work; fail
** and a message if the loop is running already (uv_run is not
** reentrant).
*/
int ur_l_run (lua_State *L) {
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode uvmodes[] =
      {UV_RUN_DEFAULT, UV_RUN_ONCE, UV_RUN_NOWAIT};
  int m = luaL_checkoption(L, 1, "default", modes);
  ur_runtime *rt = ur_runtime_get(L);
  uv_loop_t *loop = ur_runtime_loop(L, rt);
  luvctx *ctx = luvcontext(L);
  int alive;
  if (rt->running || rt->inturn ||
      (ctx != NULL && ctx->loop == loop && ctx->mode != -1)) {
    luaL_pushfail(L);
    lua_pushliteral(L, "the loop is already running");
    return 2;  /* the Lua layer raises it at its caller */
  }
  rt->running = 1;
  alive = uv_run(loop, uvmodes[m]);
  rt->running = 0;
  lua_pushboolean(L, alive);
  return 1;
}


typedef struct walkcount {
  uv_handle_t *mine;
  int n;
} walkcount;

static void countwalk (uv_handle_t *h, void *arg) {
  walkcount *c = (walkcount *)arg;
  if (h != c->mine) c->n++;
}


/*
** uvrequire.loopinfo(): a table describing the loop in use: 'kind'
** ("host", "luv", "own", or nil before first use), 'jobs' (imports in
** flight and coroutines ready to resume), 'handles' (handles on the
** loop other than uvrequire's own wake-up handle) and 'threads'.
*/
int ur_l_loopinfo (lua_State *L) {
  ur_runtime *rt = ur_runtime_get(L);
  walkcount c;
  c.mine = rt->wake ? (uv_handle_t *)&rt->wake->h : NULL;
  c.n = 0;
  if (rt->loop != NULL) uv_walk(rt->loop, countwalk, &c);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, rt->kind);
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, rt->njobs + (lua_Integer)rt->rlen);
  lua_setfield(L, -2, "jobs");
  lua_pushinteger(L, c.n);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, ur_exec_threads());
  lua_setfield(L, -2, "threads");
  return 1;
}

/* }====================================================== */
