/*
** loop.c: the per-state runtime.  It chooses the loop on which
** finished imports are delivered (a host's, luv's or its own), gives
** each asynchronous job a completion notice (a uv_async_t), and on the
** loop turns a finished job into a call into Lua, protected, on a
** thread of its own.  Closing the state closes every notice; jobs still
** running are left to their workers ('ur_exec_release').
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"
#include "uvrequire.h"


struct ur_runtime {
  lua_State *cb;        /* thread on which loop callbacks call Lua */
  uv_loop_t *loop;      /* loop in use; NULL until first needed */
  const char *kind;     /* "host", "luv" or "own" */
  uv_loop_t own;        /* our own loop, when kind is "own" */
  int running;          /* inside 'uvrequire.run' */
  int closed;           /* state is closing: no more notices */
  ur_job *jobs;         /* jobs with a live notice (lnext/lprev) */
  uv_async_t *wake;     /* pending wake-up of waiters, or NULL */
};

/* a job's completion notice; 'h' first so a handle is a notice */
typedef struct notice {
  uv_async_t h;
  ur_job *job;          /* NULL once the job was dropped */
  ur_runtime *rt;
} notice;

/* the head of luv's 'luv_ctx_t' (luv.h), read without linking luv */
typedef struct luvctx {
  uv_loop_t *loop;
  lua_State *L;
  void *cb_pcall, *thrd_pcall, *thrd_cpcall;
  int mode;             /* loop run mode, -1 when not running */
} luvctx;

static const char RUNTIME = 'r';  /* registry key (by address) */


static void freenotice (uv_handle_t *h) {
  free(h);
}


/*
** A new notice on the loop in use, calling 'cb' once sent; NULL and a
** libuv error code in '*err' on failure.  May raise (choosing the loop)
** before it allocates anything.
*/
static notice *newnotice (lua_State *L, ur_runtime *rt, uv_async_cb cb,
                          int *err) {
  uv_loop_t *loop = ur_runtime_loop(L, rt);
  notice *n = (notice *)malloc(sizeof(*n));
  if (n == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  if ((*err = uv_async_init(loop, &n->h, cb)) != 0) {
    free(n);
    return NULL;
  }
  n->h.data = NULL;  /* luv's loop __gc reads 'data' of every handle */
  n->job = NULL;
  n->rt = rt;
  return n;
}


static void unlink_job (ur_runtime *rt, ur_job *job) {
  if (job->lprev) job->lprev->lnext = job->lnext;
  else rt->jobs = job->lnext;
  if (job->lnext) job->lnext->lprev = job->lprev;
  job->lnext = job->lprev = NULL;
}


/*
** Detach and close the notice of 'job', if it still has one.  (At state
** close, luv's loop __gc may have closed it already, walking its loop;
** then it is left alone: a few bytes, rather than a double close.)
*/
static void closenotice (ur_runtime *rt, ur_job *job) {
  notice *n = (notice *)job->async;
  if (n == NULL) return;
  ur_exec_detach(job);
  unlink_job(rt, job);
  n->job = NULL;
  if (!uv_is_closing((uv_handle_t *)&n->h))
    uv_close((uv_handle_t *)&n->h, freenotice);
}


/* protected part of 'ondone': runs on the callback thread */
static int l_ondone (lua_State *L) {
  ur_require_done(L, (ur_job *)lua_touserdata(L, 1));
  return 0;
}


/*
** A job is done (loop thread).  The notice is spent: close it, then let
** require.c resume whoever waits.  Nothing here may raise: the call
** into Lua is protected and a failure of it (only memory) is dropped.
*/
static void ondone (uv_async_t *h) {
  notice *n = (notice *)h;
  ur_job *job = n->job;
  ur_runtime *rt = n->rt;
  if (job == NULL) return;
  closenotice(rt, job);
  lua_pushcfunction(rt->cb, l_ondone);
  lua_pushlightuserdata(rt->cb, job);
  if (lua_pcall(rt->cb, 1, 0, 0) != LUA_OK)
    lua_pop(rt->cb, 1);  /* pop the error */
}


/* protected part of 'onwake': runs on the callback thread */
static int l_onwake (lua_State *L) {
  ur_load_wakeall(L);
  return 0;
}


/* loads ended: resume the threads waiting on them (loop thread) */
static void onwake (uv_async_t *h) {
  notice *n = (notice *)h;
  ur_runtime *rt = n->rt;
  rt->wake = NULL;
  uv_close((uv_handle_t *)h, freenotice);
  lua_pushcfunction(rt->cb, l_onwake);
  if (lua_pcall(rt->cb, 0, 0, 0) != LUA_OK)
    lua_pop(rt->cb, 1);  /* pop the error */
}


/*
** Have the loop wake the waiters of ended loads at its next turn (not
** now: the caller is in the middle of a driver's 'require').
*/
void ur_runtime_wake (lua_State *L, ur_runtime *rt) {
  notice *n;
  int err;
  if (rt->wake != NULL || rt->closed) return;
  if ((n = newnotice(L, rt, onwake, &err)) == NULL)
    luaL_error(L, "uvrequire: cannot wake waiters: %s", uv_strerror(err));
  rt->wake = &n->h;
  uv_async_send(&n->h);
}


static void closewalk (uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}


/*
** __gc of the runtime (the state is closing): close every notice; on
** our own loop, run it until the closes are done, then close it.
*/
static int rt_gc (lua_State *L) {
  ur_runtime *rt = (ur_runtime *)lua_touserdata(L, 1);
  while (rt->jobs != NULL)
    closenotice(rt, rt->jobs);
  if (rt->wake != NULL && !uv_is_closing((uv_handle_t *)rt->wake))
    uv_close((uv_handle_t *)rt->wake, freenotice);
  rt->wake = NULL;
  rt->closed = 1;
  if (rt->loop == &rt->own) {
    uv_walk(&rt->own, closewalk, NULL);
    uv_run(&rt->own, UV_RUN_DEFAULT);
    uv_loop_close(&rt->own);
  }
  rt->loop = NULL;
  return 0;
}


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


/* luv's loop, if luv was loaded in this state and has one; else NULL */
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


/*
** The loop in use, chosen once: the host's (uvrequire_set_loop), else
** luv's (if luv is loaded), else a loop of our own.  Raises if our own
** loop cannot be created or the state is closing.
*/
uv_loop_t *ur_runtime_loop (lua_State *L, ur_runtime *rt) {
  luvctx *ctx;
  if (rt->loop != NULL)
    return rt->loop;
  if (rt->closed)
    luaL_error(L, "uvrequire: the state is closing");
  lua_getfield(L, LUA_REGISTRYINDEX, UVREQUIRE_LOOP_KEY);
  if (lua_islightuserdata(L, -1)) {
    rt->loop = (uv_loop_t *)lua_touserdata(L, -1);
    rt->kind = "host";
  }
  else if ((ctx = luvcontext(L)) != NULL) {
    rt->loop = ctx->loop;
    rt->kind = "luv";
  }
  else {
    int err = uv_loop_init(&rt->own);
    if (err != 0)
      luaL_error(L, "uvrequire: cannot create a loop: %s", uv_strerror(err));
    rt->loop = &rt->own;
    rt->kind = "own";
  }
  lua_pop(L, 1);  /* pop host loop field */
  return rt->loop;
}


/*
** Submit 'job' to the executor; its completion wakes the loop in use
** and calls 'ur_require_done'.  Returns 0 or a libuv error code (the
** job is then not submitted).
*/
int ur_runtime_submit (lua_State *L, ur_runtime *rt, ur_job *job) {
  int err;
  notice *n = newnotice(L, rt, ondone, &err);
  if (n == NULL) return err;
  n->job = job;
  job->async = &n->h;
  job->lprev = NULL;
  job->lnext = rt->jobs;
  if (rt->jobs) rt->jobs->lprev = job;
  rt->jobs = job;
  if ((err = ur_exec_submit(job)) != 0)
    closenotice(rt, job);
  return err;
}


void ur_runtime_drop (ur_runtime *rt, ur_job *job) {
  closenotice(rt, job);
  ur_exec_release(job);
}


/*
** core.run([mode]): run the loop in use ("default", "once" or
** "nowait", as uv_run).  Returns true if the loop is still alive; fail
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
  if (rt->running || (ctx != NULL && ctx->loop == loop && ctx->mode != -1)) {
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


static void countwalk (uv_handle_t *h, void *arg) {
  (void)h;
  (*(int *)arg)++;
}


/*
** uvrequire.loopinfo(): a table describing the loop in use: 'kind'
** ("host", "luv", "own", or nil before first use), 'jobs' (imports in
** flight on it) and 'handles' (every handle on the loop, any owner).
*/
int ur_l_loopinfo (lua_State *L) {
  ur_runtime *rt = ur_runtime_get(L);
  int jobs = 0, handles = 0;
  ur_job *j;
  for (j = rt->jobs; j != NULL; j = j->lnext) jobs++;
  if (rt->wake != NULL) jobs++;
  if (rt->loop != NULL) uv_walk(rt->loop, countwalk, &handles);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, rt->kind);
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, jobs);
  lua_setfield(L, -2, "jobs");
  lua_pushinteger(L, handles);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, ur_exec_threads());
  lua_setfield(L, -2, "threads");
  return 1;
}
