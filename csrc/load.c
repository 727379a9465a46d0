/*
** load.c: guarded 'package.loaded'.  A module being loaded has a load
** record in LOADING[name], outside 'package.loaded'; the record, not
** any coroutine, owns the load:
**
**   - its executor job, its search state (next searcher, messages),
**   - its 'driver', the thread that runs the search and the body (held
**     weakly: a coroutine dropped mid-load is collected, and its load
**     then ends), and the token under which the driver waits, if any,
**   - its provisional value (what the body stored in package.loaded),
**     seen only by the driver, through LOADED's metatable,
**   - its loader while the body is due (so another thread can run it),
**   - its waiters' tokens, queued when it ends: each waiter then reads
**     the very same value and loader data, or the very same error,
**   - 'waits_on', the load its body is requiring now: the edges along
**     which cycles are found, within one thread or across several.
**
** A load ends in the driver's require frame (drive.c), which catches
** every error of searchers and loader; the frame's to-be-closed guard
** only acts when the driver's coroutine is closed while it waits: the
** load then goes to a waiter, or fails.
**
** This file: the records, how a load ends.  guard.c: the guard,
** handing over, taking over; cycle.c finds and breaks cycles; loaded.c
** is LOADED's metatable.
*/

#include <string.h>

#include "load.h"


/* registry keys: only their addresses matter */
const char ur_key_loading = 'l';   /* name -> load record */
const char ur_key_driving = 'd';   /* thread -> innermost load record */
const char ur_key_drivers = 'v';   /* load record -> driver (weak) */


/* {======================================================
** Records and small helpers
** ======================================================= */

/* release the job of load 'ld', if any */
void ur_load_dropjob (lua_State *L, ur_load *ld) {
  (void)L;
  if (ld->job != NULL) {
    ur_runtime_drop(ld->rt, ld->job);
    ld->job = NULL;
  }
}


static int load_gc (lua_State *L) {
  ur_load_dropjob(L, (ur_load *)lua_touserdata(L, 1));
  return 0;
}


/*
** The driver of 'ld' waits under 'tok' (0: does not wait): the job's
** completion, when the loop sees it, queues that token.
*/
void ur_load_settoken (ur_load *ld, lua_Integer tok) {
  ld->dtoken = tok;
  if (ld->job != NULL) ld->job->token = tok;
}


/*
** The driver of the load at 'idx', or NULL if it has none or it was
** collected (dropped mid-load, never resumed nor closed): then the
** load forgets it.  Only what this returns may be dereferenced.
*/
lua_State *ur_load_driver (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  int alive;
  if (ld->driver == NULL) return NULL;
  idx = lua_absindex(L, idx);
  ur_pushtable(L, &ur_key_drivers);
  lua_pushvalue(L, idx);
  alive = (lua_rawget(L, -2) == LUA_TTHREAD &&
           lua_tothread(L, -1) == ld->driver);
  lua_pop(L, 2);
  if (!alive) {
    ld->driver = NULL;
    ld->gone = 1;  /* (whoever found it, 'ur_load_find' deals with it) */
    ur_load_settoken(ld, 0);
  }
  return ld->driver;
}


/*
** Does the running thread run the body of the load at 'idx'?  It does
** if it drives the load, or if the driver is active below it: a
** coroutine the body resumed (directly or not), or a callback the body
** ran (a nested loop).  An active thread that is not running resumed
** or called the running one, as 'coroutine.status' calls it "normal".
** Such a thread sees what the body stored, as in stock Lua.  A thread
** the scheduler resumed since the driver took the load runs on its own
** (a loop the body runs resumed it), and so does whatever that thread
** resumes: they wait for the module.  A task never is within a body.
*/
int ur_load_inbody (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  lua_State *d = ur_load_driver(L, idx);
  ur_runtime *rt;
  lua_Debug ar;
  if (d == L) return 1;
  if (d == NULL || lua_status(d) != LUA_OK || !lua_getstack(d, 0, &ar) ||
      ur_sched_istask(L))
    return 0;  /* not active below the running thread; or a task */
  rt = ur_runtime_get(L);
  return rt->rsco == NULL || rt->rsco == d || rt->rsseq < ld->dseq;
}


/*
** Load record of 'name', pushed, or nothing and NULL.  A load whose
** driver was collected goes to a waiter if it can; else it ends (its
** waiters get an error) and a new load may start.
*/
ur_load *ur_load_find (lua_State *L, const char *name) {
  ur_load *ld;
  ur_pushtable(L, &ur_key_loading);
  if (lua_getfield(L, -1, name) != LUA_TUSERDATA) {
    lua_pop(L, 2);
    return NULL;
  }
  lua_remove(L, -2);  /* remove LOADING */
  ld = (ur_load *)lua_touserdata(L, -1);
  if (ld->driver != NULL) (void)ur_load_driver(L, -1);  /* collected? */
  if (ld->gone) {
    ld->gone = 0;
    if (ld->state < UR_LRUN)
      ur_load_handover(L, -1, ld);
    else {
      lua_pushfstring(L, "module '%s' was loading in a coroutine that was "
                         "collected", name);
      ur_load_fail(L, -2);
      lua_pop(L, 1);
    }
    if (ld->state >= UR_LDONE) {
      lua_pop(L, 1);
      return NULL;
    }
  }
  return ld;
}


/* make the running thread the driver of the load at 'idx' */
void ur_load_setdriver (lua_State *L, int idx, ur_load *ld) {
  idx = lua_absindex(L, idx);
  ur_pushtable(L, &ur_key_drivers);
  lua_pushvalue(L, idx);
  lua_pushthread(L);
  lua_rawset(L, -3);  /* DRIVERS[load] = L */
  lua_pop(L, 1);
  ur_pushtable(L, &ur_key_driving);
  lua_pushthread(L);
  lua_pushvalue(L, idx);
  lua_rawset(L, -3);  /* DRIVING[L] = load */
  lua_pop(L, 1);
  ld->driver = L;
  ld->gone = 0;  /* (a driver found collected is replaced) */
  ld->dseq = ++ur_runtime_get(L)->tick;
  ur_load_settoken(ld, 0);
}


/*
** Start loading 'name' (LOADED[name] was falsy): push a new load record.
** It is not yet in LOADING: 'ur_load_drive' puts it there once the
** frame's guard holds it, so that a memory error in between leaves no
** record behind.
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
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_MSGS);
  return ld;
}


/*
** The running thread drives the new load at 'idx' (after its guard):
** the load enters LOADING.  A 'false' left in LOADED by an earlier
** loader is cleared (and remembered), so that the body's own stores
** reach the record.
*/
void ur_load_drive (lua_State *L, int idx, ur_load *ld) {
  const char *name;
  idx = lua_absindex(L, idx);
  ur_load_setdriver(L, idx, ld);
  lua_getiuservalue(L, idx, UV_NAME);
  name = lua_tostring(L, -1);
  ur_pushtable(L, &ur_key_loading);
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, name);  /* LOADING[name] = load */
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -3);
  ld->hadfalse = (lua_rawget(L, -2) == LUA_TBOOLEAN);
  lua_pop(L, 1);
  if (ld->hadfalse) {
    lua_pushvalue(L, -3);
    lua_pushnil(L);
    lua_rawset(L, -3);  /* LOADED[name] = nil, for now */
  }
  lua_pop(L, 3);  /* pop LOADED, LOADING, name */
}


/* append the string at the top (popped) to the messages at 'idx' */
void ur_load_addmsg (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_MSGS);
  lua_rotate(L, -2, 1);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
}


/* push the messages of the load at 'idx', joined (linear time) */
void ur_load_pushmsgs (lua_State *L, int idx) {
  luaL_Buffer b;
  lua_Integer i, n;
  int t;
  lua_getiuservalue(L, idx, UV_MSGS);
  t = lua_gettop(L);
  n = luaL_len(L, t);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_remove(L, t);  /* remove the list */
}


/* keep the loader and loader data at the top (popped) in 'idx' */
void ur_load_setloader (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_setiuservalue(L, idx, UV_DATA);
  lua_setiuservalue(L, idx, UV_LOADER);
  ((ur_load *)lua_touserdata(L, idx))->state = UR_LREADY;
}


/* push the loader and loader data kept in 'idx'; forget the loader */
void ur_load_pushloader (lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_LOADER);
  lua_getiuservalue(L, idx, UV_DATA);
  lua_pushnil(L);
  lua_setiuservalue(L, idx, UV_LOADER);
}

/* }====================================================== */


/* {======================================================
** Ending a load, and waking whoever waits
** ======================================================= */


/* queue every waiter of the load at 'idx' (never allocates) */
static void wakewaiters (lua_State *L, int idx) {
  lua_Integer i, n;
  lua_getiuservalue(L, idx, UV_WAITERS);
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    ur_sched_ready(L, lua_tointeger(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}


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
** of LOADED, where stock Lua would have had it all along (a 'false'
** there before the load comes back, as stock would have kept it).
** Stack: net zero.
*/
void ur_load_unguard (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  const char *name;
  idx = lua_absindex(L, idx);
  name = leave(L, idx);
  if (lua_getiuservalue(L, idx, UV_VALUE) == LUA_TNIL && ld->hadfalse) {
    lua_pop(L, 1);
    lua_pushboolean(L, 0);
  }
  if (lua_isnil(L, -1))
    lua_pop(L, 1);  /* pop nil */
  else if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) !=
           LUA_TTABLE)
    lua_pop(L, 2);  /* pop it and the value (the body replaced LOADED) */
  else {
    lua_rotate(L, -2, 1);
    lua_pushstring(L, name);
    lua_rotate(L, -2, 1);
    lua_rawset(L, -3);  /* LOADED[name] = value, raw */
    lua_pop(L, 1);  /* pop LOADED */
  }
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
  wakewaiters(L, idx);
}


/*
** The load at 'idx' failed with the error at the top (left there):
** whatever it stored in LOADED goes, raw entry included ('false' from
** before the load stays).  Idempotent.
*/
void ur_load_fail (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  if (ld->state >= UR_LDONE) return;
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, UV_DATA);
  lua_pushnil(L);
  lua_setiuservalue(L, idx, UV_VALUE);  /* the half-built value goes */
  lua_pushnil(L);
  lua_setiuservalue(L, idx, UV_LOADER);
  ld->state = UR_LFAIL;
  ur_load_dropjob(L, ld);
  leave(L, idx);
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) != LUA_TTABLE)
    lua_pop(L, 2);  /* pop it and the name (the body replaced LOADED) */
  else {
    lua_rotate(L, -2, 1);  /* name on top */
    if (ld->hadfalse) lua_pushboolean(L, 0);
    else lua_pushnil(L);
    lua_rawset(L, -3);  /* LOADED[name] = nil (or false), raw */
    lua_pop(L, 1);  /* pop LOADED */
  }
  wakewaiters(L, idx);
}


/* the load's final value (or provisional one), pushed */
void ur_load_pushvalue (lua_State *L, int idx) {
  lua_getiuservalue(L, idx, UV_VALUE);
}


/*
** Push the outcome of an ended load at 'idx' for a waiter: value and
** loader data (returns 2), or raise its error (the very same value).
*/
int ur_load_outcome (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  if (ld->state == UR_LFAIL) {
    lua_getiuservalue(L, idx, UV_DATA);
    if (ld->nfwhere > 0 && lua_type(L, -1) == LUA_TSTRING &&
        lua_rawlen(L, -1) >= ld->nfwhere - 1) {
      /* "module not found", built by the driver's require: with the
         position of this require, as stock would raise it here */
      luaL_where(L, 1);
      lua_pushstring(L, lua_tostring(L, -2) + (ld->nfwhere - 1));
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  lua_getiuservalue(L, idx, UV_VALUE);
  lua_getiuservalue(L, idx, UV_DATA);
  return 2;
}


/* the thread waiting under 'tok' is a waiter of the load at 'idx' */
void ur_load_addwaiter (lua_State *L, int idx, lua_Integer tok) {
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_WAITERS);
  lua_pushinteger(L, tok);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
}

/* }====================================================== */


/* {======================================================
** Setup
** ======================================================= */

/*
** Create the registry tables and metatables (idempotent).
*/
void ur_load_init (lua_State *L) {
  ur_regtable(L, &ur_key_loading, NULL);
  ur_regtable(L, &ur_key_driving, "k");
  ur_regtable(L, &ur_key_drivers, "v");
  if (luaL_newmetatable(L, LOADREC)) {
    lua_pushcfunction(L, load_gc);
    lua_setfield(L, -2, "__gc");
  }
  if (luaL_newmetatable(L, GUARD)) {
    lua_pushcfunction(L, ur_load_guardclose);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 2);
}

/* }====================================================== */
