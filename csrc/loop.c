/*
** loop.c: the loop half of the per-state runtime.  It chooses the loop
** on which imports complete (a host's, luv's or its own) and keeps ONE
** wake-up handle (a uv_async_t) on it for the whole state: executor
** threads signal it when a job is done, the scheduler when a coroutine
** is ready.  On the loop, the handle's callback calls the scheduler's
** turn ('rt->turn'), protected, on a thread of its own.  The handle
** keeps the loop alive only while something is pending (jobs in
** flight, ready coroutines).
**
** The loop is chosen again whenever nothing is in flight: luv loaded
** after the first import, or a host's 'uvrequire_set_loop', moves the
** handle to the new loop.
**
** This file is a leaf: it calls into the Lua-thread side only through
** 'rt->turn', which the scheduler sets.  runtime.c: the runtime record,
** its jobs in flight, its timers, its end.
*/

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ur.h"
#include "uvrequire.h"


/* the head of luv's 'luv_ctx_t' (luv.h), read without linking luv */
typedef struct luvctx {
  uv_loop_t *loop;
  lua_State *L;
  void *cb_pcall, *thrd_pcall, *thrd_cpcall;
  int mode;             /* loop run mode, -1 when not running */
} luvctx;


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
** Choosing the loop
** ======================================================= */

static void closewalk (uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}


/* leave the loop in use: close the handle; close our own loop */
void ur_runtime_leaveloop (ur_runtime *rt) {
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
** Which side of which fork this is: a number that changes in a fork's
** child (a 'pthread_atfork' handler), so that a runtime tells it set
** its loop up in another process without a 'getpid' system call per
** import.  Should the handler fail to register, the pid serves.
*/
static uv_once_t forkonce = UV_ONCE_INIT;
static long forks;     /* forks this process is the child of, in turn */
static int forkwatch;  /* the handler is registered */

static void onfork (void) {
  forks++;
}

static void watchforks (void) {
  forkwatch = (pthread_atfork(NULL, NULL, onfork) == 0);
}

static long generation (void) {
  uv_once(&forkonce, watchforks);
  return forkwatch ? forks : (long)getpid();
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
  rt->pid = generation();
  for (j = rt->jobs; j != NULL; j = j->lnext)
    ur_exec_detach(j);
  uv_loop_fork(rt->loop);
  closewake(rt);
  if ((w = (ur_wakeh *)malloc(sizeof(*w))) == NULL ||
      (err = uv_async_init(rt->loop, &w->h, onwake)) != 0) {
    free(w);
    luaL_error(L, "uvrequire: cannot set up the loop after fork");
  }
  ur_runtime_handledata(L, rt, (uv_handle_t *)&w->h, &w->luv);
  w->rt = rt;
  rt->wake = w;
  for (j = rt->jobs; j != NULL; j = j->lnext)
    done |= ur_exec_attach(j, &w->h);
  ur_runtime_refresh(rt);
  if (done || rt->rlen > 0) uv_async_send(&w->h);
}


/*
** luv's context, if luv was loaded in this state and has a loop.
** LOADED is read raw: no metamethod of anyone's runs, nothing raises.
*/
static luvctx *luvcontext (lua_State *L) {
  luvctx *ctx = NULL;
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) != LUA_TTABLE)
    lua_pushnil(L);  /* not a table: no luv */
  else {
    lua_pushliteral(L, "luv");
    lua_rawget(L, -2);
  }
  if (!lua_isnil(L, -1)) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, "luv_context") == LUA_TUSERDATA)
      ctx = (luvctx *)lua_touserdata(L, -1);
    lua_pop(L, 1);  /* pop context */
  }
  lua_pop(L, 2);  /* pop LOADED.luv and LOADED */
  return (ctx != NULL && ctx->loop != NULL) ? ctx : NULL;
}


/* {======================================================
** What luv's uv.walk shows of our handles
** ======================================================= */

#define WALKREF  (-0x7572)  /* registry slot: the object it shows */

/* methods of that object: our handles are no luv handles, and only
   uvrequire closes them (a 'close' of every handle at exit is fine) */
static int h_nop (lua_State *L) { (void)L; return 0; }
static int h_false (lua_State *L) { lua_pushboolean(L, 0); return 1; }
static int h_true (lua_State *L) { lua_pushboolean(L, 1); return 1; }
static int h_type (lua_State *L) {
  lua_pushliteral(L, "uvrequire");
  lua_pushinteger(L, 0);
  return 2;
}
static int h_tostring (lua_State *L) {
  lua_pushliteral(L, "uvrequire: a handle of its own");
  return 1;
}


/* make the object 'uv.walk' shows for our handles, once per state */
static void walkobject (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", h_nop}, {"ref", h_nop}, {"unref", h_nop},
    {"is_closing", h_false}, {"has_ref", h_false}, {"is_active", h_true},
    {"get_type", h_type}, {NULL, NULL}
  };
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, WALKREF) == LUA_TNIL) {
    /* a NULL handle pointer, where luv's function-style calls
       (uv.close(h)) read one: they raise "Expected uv_handle" */
    void **p = (void **)lua_newuserdatauv(L, sizeof(void *), 0);
    *p = NULL;
    lua_createtable(L, 0, 3);  /* its metatable */
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, h_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "uvrequire.handle");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    lua_rawseti(L, LUA_REGISTRYINDEX, WALKREF);  /* pops it */
  }
  lua_pop(L, 1);  /* pop what rawgeti pushed */
}


/*
** See ur.h.  luv's 'uv.walk' asserts that every handle's 'data' is its
** own kind of record, and shows the registry value it names; its loop's
** __gc closes every handle with a callback that reads it.  So a handle
** of ours on luv's loop points to such a record, naming an object of
** our own ('ur_runtime_loop' made it, before any handle: this raises
** nothing).
*/
void ur_runtime_handledata (lua_State *L, ur_runtime *rt, uv_handle_t *h,
                            ur_luvdata *d) {
  luvctx *ctx;
  int made;
  h->data = NULL;  /* (first: nothing below may leave it unset) */
  ctx = luvcontext(L);
  made = (lua_rawgeti(L, LUA_REGISTRYINDEX, WALKREF) != LUA_TNIL);
  lua_pop(L, 1);
  if (strcmp(rt->kind, "luv") != 0 || ctx == NULL || ctx->loop != h->loop ||
      !made)
    return;
  d->ref = WALKREF;
  d->callbacks[0] = d->callbacks[1] = LUA_NOREF;
  d->ctx = ctx;
  d->extra = d->extra_gc = NULL;
  h->data = d;
}

/* }====================================================== */


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
  if (rt->loop != NULL && rt->pid != generation() &&
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
  if (loop != NULL && strcmp(kind, "luv") == 0)
    walkobject(L);  /* (may raise: memory; nothing is made yet) */
  ur_runtime_leaveloop(rt);
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
  w->rt = rt;
  uv_unref((uv_handle_t *)&w->h);
  rt->wake = w;
  rt->loop = loop;
  rt->kind = kind;
  ur_runtime_handledata(L, rt, (uv_handle_t *)&w->h, &w->luv);
  rt->pid = generation();  /* (a fork child renews it: see above) */
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
