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
**
** This file: the records, how a load ends, the guard, taking over.
** wake.c wakes waiting threads; cycle.c finds and breaks cycles;
** loaded.c is LOADED's metatable.
*/

#include <string.h>

#include "load.h"


/* registry keys: only their addresses matter */
const char ur_key_loading = 'l';   /* name -> load record */
const char ur_key_inflight = 'i';  /* job (light ud) -> load record */
const char ur_key_driving = 'd';   /* thread -> innermost load record */
const char ur_key_wake = 'w';      /* list of ended loads to announce */
const char ur_key_soon = 's';      /* list of loads whose body is due */
const char ur_key_serve = 'v';     /* list of threads served a value */
const char ur_key_errors = 'e';    /* errors of resumed coroutines */


/* {======================================================
** Records and small helpers
** ======================================================= */

/* release the job of load 'ld' (at 'idx'), if any.  Stack: net zero */
void ur_load_dropjob (lua_State *L, ur_load *ld) {
  if (ld->job != NULL) {
    ur_pushtable(L, &ur_key_inflight);
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
  ur_pushtable(L, &ur_key_inflight);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, ld->job);  /* INFLIGHT[job] = load */
  lua_pop(L, 1);
}


/* load record of 'name', pushed, or nothing and NULL */
ur_load *ur_load_find (lua_State *L, const char *name) {
  ur_pushtable(L, &ur_key_loading);
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
  ur_pushtable(L, &ur_key_driving);
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
  ur_pushtable(L, &ur_key_loading);
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


/* the load at 'idx' leaves LOADING (name pushed and left) */
static const char *leave (lua_State *L, int idx) {
  const char *name;
  lua_getiuservalue(L, idx, UV_NAME);
  name = lua_tostring(L, -1);
  ur_pushtable(L, &ur_key_loading);
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
  ur_load_schedulewake(L, idx, ld);
}


/*
** The load at 'idx' failed with the error at the top (left there):
** whatever it stored in LOADED goes, raw entry included.
*/
void ur_load_fail (lua_State *L, int idx) {
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
  ur_load_schedulewake(L, idx, ld);
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
      ur_pushtable(L, &ur_key_driving);
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
  ur_load_fail(L, idx);
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
  ur_pushtable(L, &ur_key_driving);
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
  ur_pushtable(L, &ur_key_driving);
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
      ur_load_fail(L, 3);
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


/* }====================================================== */


/* {======================================================
** LOADED's metatable: provisional values stay in the record
** ======================================================= */


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
  newtable(L, &ur_key_loading, NULL);
  newtable(L, &ur_key_inflight, NULL);
  newtable(L, &ur_key_driving, "k");
  newtable(L, &ur_key_wake, NULL);
  newtable(L, &ur_key_soon, NULL);
  newtable(L, &ur_key_serve, NULL);
  newtable(L, &ur_key_errors, NULL);
  if (luaL_newmetatable(L, LOADREC)) {
    lua_pushcfunction(L, load_gc);
    lua_setfield(L, -2, "__gc");
  }
  if (luaL_newmetatable(L, GUARD)) {
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 2);
  ur_loaded_guard(L);
}

/* }====================================================== */
