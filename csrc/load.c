/*
** load.c: guarded 'package.loaded'.  A module being loaded has a load
** record in LOADING[name], outside 'package.loaded'; the record, not
** any coroutine, owns the load:
**
**   - its executor job, its search state (next searcher, messages),
**   - its 'driver', the thread that runs the search and the body,
**   - its provisional value (what the body stored in package.loaded),
**     seen only by the driver, through LOADED's metatable,
**   - its waiters, threads that asked for it meanwhile, woken on the
**     loop when it ends with the very same value and loader data, or
**     the very same error,
**   - 'waits_on', the load its body is requiring now: the edges along
**     which cycles are found, within one thread or across several.
**
** Each slow-path 'require' frame holds a guard, a to-be-closed value:
** whether the frame returns, raises or its coroutine is closed, the
** guard's __close settles the load (failure, or handing the driver's
** role to a waiter) and restores the thread's chain.
*/

#include <string.h>

#include "ur.h"


/* user values of a load record */
#define UV_NAME     1
#define UV_DRIVER   2  /* the driver thread, anchored */
#define UV_WAITERS  3  /* list of waiting threads */
#define UV_VALUE    4  /* provisional, then final value */
#define UV_DATA     5  /* loader data, or the error of a failed load */
#define UV_MSGS     6  /* searchers' messages so far */
#define UV_WAITSON  7  /* the load this one's body waits on */
#define UV_SERVED   8  /* waiters to be handed the provisional value */
#define NUV         8

#define LOADREC     "uvrequire.load"
#define GUARD       "uvrequire.guard"

/* registry keys (by address) */
static const char LOADING = 'l';   /* name -> load record */
static const char INFLIGHT = 'i';  /* job (light ud) -> load record */
static const char DRIVING = 'd';   /* thread -> innermost load record */
static const char WAKE = 'w';      /* list of ended loads to announce */
static const char SOON = 's';      /* list of loads whose body is due */
static const char SERVE = 'v';     /* list of threads served a value */
static const char ERRORS = 'e';    /* errors of resumed coroutines */


/* {======================================================
** Records and small helpers
** ======================================================= */

ur_load *ur_load_check (lua_State *L, int idx) {
  return (ur_load *)luaL_checkudata(L, idx, LOADREC);
}


/* push LOADING, INFLIGHT, ... (one of the registry tables) */
static void pushtable (lua_State *L, const char *key) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
}


/* release the job of load 'ld' (at 'idx'), if any.  Stack: net zero */
void ur_load_dropjob (lua_State *L, ur_load *ld) {
  if (ld->job != NULL) {
    pushtable(L, &INFLIGHT);
    lua_pushnil(L);
    lua_rawsetp(L, -2, ld->job);  /* INFLIGHT[job] = nil */
    lua_pop(L, 1);
    ur_runtime_drop(ld->rt, ld->job);
    ld->job = NULL;
  }
}


static int load_gc (lua_State *L) {
  ur_load_dropjob(L, (ur_load *)lua_touserdata(L, 1));
  return 0;
}


/* register the job of 'ld' (at 'idx') as in flight.  Stack: net zero */
void ur_load_injob (lua_State *L, int idx, ur_load *ld) {
  idx = lua_absindex(L, idx);
  pushtable(L, &INFLIGHT);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, ld->job);  /* INFLIGHT[job] = load */
  lua_pop(L, 1);
}


/* load record of 'name', pushed, or nothing and NULL */
ur_load *ur_load_find (lua_State *L, const char *name) {
  pushtable(L, &LOADING);
  if (lua_getfield(L, -1, name) != LUA_TUSERDATA) {
    lua_pop(L, 2);
    return NULL;
  }
  lua_remove(L, -2);  /* remove LOADING */
  return (ur_load *)lua_touserdata(L, -1);
}


/* make the running thread the driver of the load at 'idx' */
static void setdriver (lua_State *L, int idx, ur_load *ld) {
  idx = lua_absindex(L, idx);
  ld->driver = L;
  lua_pushthread(L);
  lua_setiuservalue(L, idx, UV_DRIVER);
  pushtable(L, &DRIVING);
  lua_pushthread(L);
  lua_pushvalue(L, idx);
  lua_rawset(L, -3);  /* DRIVING[L] = load */
  lua_pop(L, 1);
}


/*
** Start loading 'name' (LOADED[name] was falsy): push a new load record,
** in LOADING[name].  A 'false' left in
** LOADED by an earlier loader is cleared, so that the body's own
** stores reach the record.
*/
ur_load *ur_load_new (lua_State *L, const char *name) {
  ur_load *ld = (ur_load *)lua_newuserdatauv(L, sizeof(ur_load), NUV);
  memset(ld, 0, sizeof(*ld));
  ld->state = UR_LSEARCH;
  ld->next = 1;
  luaL_setmetatable(L, LOADREC);
  lua_pushstring(L, name);
  lua_setiuservalue(L, -2, UV_NAME);
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_WAITERS);
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_SERVED);
  lua_pushliteral(L, "");
  lua_setiuservalue(L, -2, UV_MSGS);
  pushtable(L, &LOADING);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, name);  /* LOADING[name] = load */
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushstring(L, name);
  lua_pushnil(L);
  lua_rawset(L, -3);  /* the key, if any, holds false */
  lua_pop(L, 1);
  return ld;
}


/* the running thread drives the new load at 'idx' (after its guard) */
void ur_load_drive (lua_State *L, int idx, ur_load *ld) {
  setdriver(L, idx, ld);
}


/* messages of the load at 'idx' .. the string at the top (popped) */
void ur_load_addmsg (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_MSGS);
  lua_rotate(L, -2, 1);
  lua_concat(L, 2);
  lua_setiuservalue(L, idx, UV_MSGS);
}


void ur_load_pushmsgs (lua_State *L, int idx) {
  lua_getiuservalue(L, idx, UV_MSGS);
}

/* }====================================================== */


/* {======================================================
** Ending a load, and waking whoever waits
** ======================================================= */

static void schedulewake (lua_State *L, int idx, ur_load *ld) {
  int n;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_WAITERS);
  n = (int)luaL_len(L, -1);
  lua_pop(L, 1);
  if (n == 0) return;  /* nobody to tell */
  pushtable(L, &WAKE);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  ur_runtime_wake(L, ld->rt ? ld->rt : ur_runtime_get(L));
}


/* the load at 'idx' leaves LOADING (name pushed and left) */
static const char *leave (lua_State *L, int idx) {
  const char *name;
  lua_getiuservalue(L, idx, UV_NAME);
  name = lua_tostring(L, -1);
  pushtable(L, &LOADING);
  lua_pushnil(L);
  lua_setfield(L, -2, name);  /* LOADING[name] = nil */
  lua_pop(L, 1);
  return name;
}


/*
** The body of the load at 'idx' returned: the load leaves LOADING, and
** the value it stored for itself, if any, becomes a plain (raw) entry
** of LOADED, where stock Lua would have had it all along.
** Stack: net zero.
*/
void ur_load_unguard (lua_State *L, int idx) {
  const char *name;
  idx = lua_absindex(L, idx);
  name = leave(L, idx);
  if (lua_getiuservalue(L, idx, UV_VALUE) != LUA_TNIL) {
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_rotate(L, -2, 1);
    lua_pushstring(L, name);
    lua_rotate(L, -2, 1);
    lua_rawset(L, -3);  /* LOADED[name] = value, raw */
    lua_pop(L, 1);  /* pop LOADED */
  }
  else
    lua_pop(L, 1);  /* pop nil */
  lua_pop(L, 1);  /* pop name */
}


/*
** The load at 'idx' succeeded: stack top is its final value, below it
** the loader data.  Both stay on the stack for the driver to return.
*/
void ur_load_succeed (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, UV_VALUE);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, idx, UV_DATA);
  ld->state = UR_LDONE;
  ur_load_dropjob(L, ld);
  schedulewake(L, idx, ld);
}


/*
** The load at 'idx' failed with the error at the top (left there):
** whatever it stored in LOADED goes, raw entry included.
*/
static void fail (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, UV_DATA);
  lua_pushnil(L);
  lua_setiuservalue(L, idx, UV_VALUE);  /* the half-built value goes */
  ld->state = UR_LFAIL;
  ur_load_dropjob(L, ld);
  leave(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_rotate(L, -2, 1);  /* name on top */
  lua_pushnil(L);
  lua_rawset(L, -3);  /* LOADED[name] = nil, raw */
  lua_pop(L, 1);  /* pop LOADED */
  schedulewake(L, idx, ld);
}


/* the load's final value (or provisional one), pushed */
void ur_load_pushvalue (lua_State *L, int idx) {
  lua_getiuservalue(L, idx, UV_VALUE);
}


/*
** Push the outcome of an ended load at 'idx' for a waiter: value and
** loader data (returns 2), or raise its error.
*/
int ur_load_outcome (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  if (ld->state == UR_LFAIL) {
    lua_getiuservalue(L, idx, UV_DATA);
    return lua_error(L);
  }
  lua_getiuservalue(L, idx, UV_VALUE);
  lua_getiuservalue(L, idx, UV_DATA);
  return 2;
}


/* add the running thread to the waiters of the load at 'idx' */
void ur_load_addwaiter (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_WAITERS);
  lua_pushthread(L);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
}


/* resume 'co' from the callback thread 'L'; keep an error it raises */
static void resume (lua_State *L, lua_State *co) {
  int nres, status = lua_resume(co, L, 0, &nres);
  if (status == LUA_OK || status == LUA_YIELD)
    lua_pop(co, nres);
  else {
    const char *msg = lua_tostring(co, -1);
    pushtable(L, &ERRORS);
    luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
    lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    lua_pop(L, 1);  /* pop ERRORS */
    lua_resetthread(co);  /* close its pending to-be-closed variables */
  }
}


/* resume each suspended thread in the list at the top; pops the list */
static void resumeall (lua_State *L) {
  int i, n = (int)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_State *co;
    lua_rawgeti(L, -1, i);
    co = lua_tothread(L, -1);  /* NULL for a waiter struck off (false) */
    if (co != NULL && lua_status(co) == LUA_YIELD)
      resume(L, co);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* pop the list */
}


/* resume every suspended waiter of the load at 'idx'; empties the list */
static void wakewaiters (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_WAITERS);
  lua_newtable(L);
  lua_setiuservalue(L, idx, UV_WAITERS);
  resumeall(L);
}


/*
** The load at 'idx' has its chunk loaded: resume its driver at the
** loop's next turn to run the body, so that loading and running never
** stall the loop in the same turn.
*/
void ur_load_resumesoon (lua_State *L, int idx, ur_load *ld) {
  idx = lua_absindex(L, idx);
  ld->state = UR_LREADY;
  pushtable(L, &SOON);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  ur_runtime_wake(L, ld->rt);
}


/* resume the threads in registry list 'key', emptied first */
static void resumelist (lua_State *L, const char *key) {
  pushtable(L, key);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  resumeall(L);
}


/* on the loop: run due bodies, announce ended loads (callback thread) */
void ur_load_wakeall (lua_State *L) {
  int i, n;
  resumelist(L, &SERVE);
  pushtable(L, &SOON);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SOON);
  n = (int)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    ur_load *ld;
    lua_rawgeti(L, -1, i);
    ld = (ur_load *)lua_touserdata(L, -1);
    if (ld->state == UR_LREADY && ld->driver != NULL &&
        lua_status(ld->driver) == LUA_YIELD)
      resume(L, ld->driver);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* pop the list */
  pushtable(L, &WAKE);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &WAKE);
  n = (int)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    wakewaiters(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}


/*
** Hand the load at 'idx' (searching; its driver is gone) to a waiter
** still suspended, or give it up if there is none.  The new driver is
** resumed when the job is done, as the old one would have been.
*/
static void handover (lua_State *L, int idx, ur_load *ld) {
  int i, n;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_WAITERS);
  n = (int)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_State *co;
    lua_rawgeti(L, -1, i);
    co = lua_tothread(L, -1);
    if (co != NULL && lua_status(co) == LUA_YIELD) {
      ld->driver = co;
      pushtable(L, &DRIVING);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, idx);
      lua_rawset(L, -3);  /* DRIVING[co] = load */
      lua_pop(L, 1);
      lua_setiuservalue(L, idx, UV_DRIVER);  /* pops co */
      lua_pushboolean(L, 0);
      lua_rawseti(L, -2, i);  /* no longer a waiter */
      lua_pop(L, 1);  /* pop list */
      return;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* pop list */
  lua_getiuservalue(L, idx, UV_NAME);  /* nobody wants it any more */
  lua_pushfstring(L, "module '%s': every coroutine that asked for it was "
                     "closed", lua_tostring(L, -1));
  lua_remove(L, -2);
  fail(L, idx);
  lua_pop(L, 1);
}

/* }====================================================== */


/* {======================================================
** The frame guard
** ======================================================= */

/*
** Push the guard of a require frame for the load at 'idx' and mark it
** to-be-closed.  The thread's innermost load ('prev') now waits on this
** one.  (A driver then calls 'ur_load_drive'.)
*/
void ur_load_guard (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_newuserdatauv(L, 1, 2);
  luaL_setmetatable(L, GUARD);
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);  /* guard -> load */
  pushtable(L, &DRIVING);
  lua_pushthread(L);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {  /* prev */
    lua_pushvalue(L, idx);
    lua_setiuservalue(L, -2, UV_WAITSON);  /* prev waits on this load */
  }
  lua_setiuservalue(L, -3, 2);  /* guard -> prev */
  lua_pop(L, 1);  /* pop DRIVING */
  lua_toclose(L, -1);
}


/* set the thread's innermost load to 'prev' of a guard (at 'g') */
static void restorechain (lua_State *L, int g, int idx) {
  pushtable(L, &DRIVING);
  lua_pushthread(L);
  if (lua_getiuservalue(L, g, 2) == LUA_TUSERDATA) {  /* prev */
    lua_getiuservalue(L, -1, UV_WAITSON);
    if (lua_rawequal(L, -1, idx)) {
      lua_pushnil(L);
      lua_setiuservalue(L, -3, UV_WAITSON);  /* prev waits no more */
    }
    lua_pop(L, 1);
  }
  else {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  lua_rawset(L, -3);  /* DRIVING[L] = prev */
  lua_pop(L, 1);
}


/*
** __close of a guard: (guard, error).  If the frame's thread drove a
** load that has not ended, the load either fails with 'error' (a raise,
** or a closed coroutine whose body had started) or, while still
** searching, goes to another waiter.  Then the chain is restored.
*/
static int guard_close (lua_State *L) {
  ur_load *ld;
  lua_settop(L, 2);
  lua_getiuservalue(L, 1, 1);  /* 3: load */
  ld = (ur_load *)lua_touserdata(L, 3);
  if (ld != NULL && ld->driver == L && ld->state < UR_LDONE) {
    ld->driver = NULL;
    if (ld->state == UR_LSEARCH && lua_isnil(L, 2))
      handover(L, 3, ld);  /* coroutine closed while waiting */
    else {
      lua_pushvalue(L, 2);
      if (lua_isnil(L, -1)) {
        lua_getiuservalue(L, 3, UV_NAME);
        lua_pushfstring(L, "module '%s' was loading in a coroutine that "
                           "was closed", lua_tostring(L, -1));
        lua_remove(L, -2);
        lua_remove(L, -2);
      }
      fail(L, 3);
      lua_pop(L, 1);
    }
  }
  if (ld != NULL) restorechain(L, 1, 3);
  return 0;
}

/* }====================================================== */


/* {======================================================
** Cycles, waiting, and taking over
** ======================================================= */

/*
** Would the running thread waiting on the load at 'idx' close a cycle?
** Follows 'waits_on' from that load; if it reaches the thread's own
** innermost load, pushes "circular require: m -> ... -> m" and the load
** whose body waits on the thread's own (the cycle's last edge), and
** returns 1.  Else pushes nothing and returns 0.
*/
int ur_load_cycle (lua_State *L, int idx) {
  int top, n = 0, i;
  idx = lua_absindex(L, idx);
  top = lua_gettop(L);
  pushtable(L, &DRIVING);
  lua_pushthread(L);
  if (lua_rawget(L, -2) != LUA_TUSERDATA) {  /* top+2: mine */
    lua_settop(L, top);
    return 0;
  }
  lua_newtable(L);  /* top+3: names along the way */
  lua_pushnil(L);  /* top+4: previous cursor */
  lua_pushvalue(L, idx);  /* top+5: cursor */
  for (;;) {
    lua_getiuservalue(L, top + 5, UV_NAME);
    lua_rawseti(L, top + 3, ++n);
    if (lua_rawequal(L, top + 5, top + 2)) break;  /* a cycle */
    if (n > 100000 ||
        lua_getiuservalue(L, top + 5, UV_WAITSON) != LUA_TUSERDATA) {
      lua_settop(L, top);  /* the chain ends: no cycle */
      return 0;
    }
    lua_copy(L, top + 5, top + 4);
    lua_replace(L, top + 5);
  }
  lua_pushliteral(L, "circular require: ");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, top + 3, i);
    lua_pushliteral(L, " -> ");
  }
  lua_getiuservalue(L, idx, UV_NAME);
  lua_concat(L, 2 * n + 2);
  lua_replace(L, top + 1);  /* message */
  lua_copy(L, top + 4, top + 2);  /* last edge's load */
  lua_settop(L, top + 2);
  return 1;
}


/*
** Break a cycle across threads with rule 11: the running thread's own
** innermost load has stored a value for itself, and the load at 'x'
** (another thread's) waits on it: that waiter is handed the value, at
** the loop's next turn, as within one chain.  Returns 0 if it cannot.
*/
int ur_load_serve (lua_State *L, int x) {
  ur_load *xl = (ur_load *)lua_touserdata(L, x);
  lua_State *co;
  int i, n;
  x = lua_absindex(L, x);
  if (xl == NULL || (co = xl->driver) == NULL || co == L ||
      lua_status(co) != LUA_YIELD)
    return 0;
  pushtable(L, &DRIVING);
  lua_pushthread(L);
  lua_rawget(L, -2);  /* mine */
  lua_getiuservalue(L, -1, UV_VALUE);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 3);
    return 0;
  }
  lua_pop(L, 1);  /* pop value */
  lua_getiuservalue(L, -1, UV_WAITERS);  /* off the waiters' list */
  n = (int)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, -1, i) == LUA_TTHREAD && lua_tothread(L, -1) == co) {
      lua_pushboolean(L, 0);
      lua_rawseti(L, -3, i);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* pop list */
  lua_getiuservalue(L, -1, UV_SERVED);
  lua_getiuservalue(L, x, UV_DRIVER);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);  /* served[co] = true */
  lua_pop(L, 3);  /* pop served, mine, DRIVING */
  pushtable(L, &SERVE);
  lua_getiuservalue(L, x, UV_DRIVER);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  ur_runtime_wake(L, ur_runtime_get(L));
  return 1;
}


/*
** Was the running thread, waiting on the load at 'idx', served that
** load's stored value ('ur_load_serve')?  Then push it and return 1.
*/
int ur_load_served (lua_State *L, int idx) {
  lua_getiuservalue(L, idx, UV_SERVED);
  lua_pushthread(L);
  if (lua_rawget(L, -2) == LUA_TNIL) {
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 1);
  lua_pushthread(L);
  lua_pushnil(L);
  lua_rawset(L, -3);  /* served[L] = nil */
  lua_pop(L, 1);
  lua_getiuservalue(L, idx, UV_VALUE);
  return 1;
}


/*
** A thread that cannot yield asks for the load at 'idx', driven by
** another thread.  While it is still searching, take the load over:
** the running thread is its driver and the old driver a waiter.  Once
** its chunk is loaded in the driver, raises.
*/
void ur_load_takeover (lua_State *L, int idx, ur_load *ld) {
  lua_State *old = ld->driver;
  idx = lua_absindex(L, idx);
  if (ld->state != UR_LSEARCH) {
    lua_getiuservalue(L, idx, UV_NAME);
    luaL_error(L, "module '%s' is loading in a suspended coroutine; a "
                  "require that cannot yield cannot wait for it",
               lua_tostring(L, -1));
  }
  if (old != NULL) {  /* the old driver waits like anyone else */
    lua_getiuservalue(L, idx, UV_WAITERS);
    lua_getiuservalue(L, idx, UV_DRIVER);
    lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    lua_pop(L, 1);
  }
  setdriver(L, idx, ld);
}


/*
** A job is done (loop, callback thread): resume the driver of its
** load, whose 'k_wait' goes on with the search.
*/
void ur_require_done (lua_State *L, ur_job *job) {
  ur_load *ld;
  pushtable(L, &INFLIGHT);
  if (lua_rawgetp(L, -1, job) != LUA_TUSERDATA)
    return;  /* consumed already, by a synchronous takeover */
  ld = (ur_load *)lua_touserdata(L, -1);
  if (ld->driver != NULL && lua_status(ld->driver) == LUA_YIELD)
    resume(L, ld->driver);
}

/* }====================================================== */


/* {======================================================
** LOADED's metatable: provisional values stay in the record
** ======================================================= */

/* __index(LOADED, k): the provisional value, for the driver only */
static int loaded_index (lua_State *L) {
  ur_load *ld;
  if (lua_type(L, 2) != LUA_TSTRING ||
      (ld = ur_load_find(L, lua_tostring(L, 2))) == NULL)
    return 0;
  if (ld->driver != L) return 0;
  lua_getiuservalue(L, -1, UV_VALUE);
  return 1;
}


/* __newindex(LOADED, k, v): a loading module's store goes to its record */
static int loaded_newindex (lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING &&
      ur_load_find(L, lua_tostring(L, 2)) != NULL) {
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, UV_VALUE);
    return 0;
  }
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}


/*
** uvrequire.status(name): "loaded", "loading" or nil.
*/
int ur_l_status (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (ur_load_find(L, name) != NULL)
    lua_pushliteral(L, "loading");
  else {
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushstring(L, name);
    lua_rawget(L, -2);  /* raw: a module still loading is not there */
    if (lua_toboolean(L, -1))
      lua_pushliteral(L, "loaded");
    else
      lua_pushnil(L);
  }
  return 1;
}


/* core.takeerrors(): the errors kept so far, oldest first, as a list */
int ur_l_takeerrors (lua_State *L) {
  pushtable(L, &ERRORS);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ERRORS);
  return 1;
}


static void newtable (lua_State *L, const char *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TNIL) {
    lua_newtable(L);
    if (mode != NULL) {
      lua_createtable(L, 0, 1);
      lua_pushstring(L, mode);
      lua_setfield(L, -2, "__mode");
      lua_setmetatable(L, -2);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  lua_pop(L, 1);
}


/*
** Create the registry tables and metatables (idempotent), and guard
** LOADED unless it already has a metatable of someone else's.
*/
void ur_load_init (lua_State *L) {
  newtable(L, &LOADING, NULL);
  newtable(L, &INFLIGHT, NULL);
  newtable(L, &DRIVING, "k");
  newtable(L, &WAKE, NULL);
  newtable(L, &SOON, NULL);
  newtable(L, &SERVE, NULL);
  newtable(L, &ERRORS, NULL);
  if (luaL_newmetatable(L, LOADREC)) {
    lua_pushcfunction(L, load_gc);
    lua_setfield(L, -2, "__gc");
  }
  if (luaL_newmetatable(L, GUARD)) {
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (!lua_getmetatable(L, -1)) {
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, loaded_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, loaded_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
  }
  else
    lua_pop(L, 1);  /* pop the metatable found */
  lua_pop(L, 1);  /* pop LOADED */
}

/* }====================================================== */
