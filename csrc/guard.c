/*
** guard.c: a load and the coroutines that drive it (see load.c).  The
** frame guard: a to-be-closed value in the driver's require frame that
** ends or hands over the load when the driver's coroutine is closed
** while it waits.  Handing a load over to a waiter when its driver is
** gone or gives up, and a synchronous require taking a load over.
*/

#include "load.h"


/* {======================================================
** The frame guard
** ======================================================= */

/*
** Push the guard of a require frame for the load at 'idx' and mark it
** to-be-closed.  The thread's innermost load ('prev') now waits on this
** one.  (A driver then calls 'ur_load_drive'.)
*/
ur_guard *ur_load_guard (lua_State *L, int idx) {
  ur_guard *g;
  idx = lua_absindex(L, idx);
  g = (ur_guard *)lua_newuserdatauv(L, sizeof(ur_guard), 3);
  g->ms = -1;  /* no timeout */
  g->timer = 0;
  g->blockt0 = 0;  /* not watched (uservalue 3: the detector's site) */
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
  return g;
}


/*
** Set the thread's innermost load back to 'prev' of the guard at 'g'
** (the frame of the load at 'idx' is ending).  Idempotent; sets
** existing keys only.  Stack: net zero.
*/
void ur_load_restorechain (lua_State *L, int g, int idx) {
  g = lua_absindex(L, g);
  idx = lua_absindex(L, idx);
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
** __close of a guard: (guard, error).  If the frame's thread still
** drives a load that has not ended (its coroutine was closed while it
** waited, or an error escaped before the frame could end the load), the
** load goes to a waiter (still searching or body due) or fails.  Then
** the chain is restored, and a blocking require is reported (stats.c).
*/
int ur_load_guardclose (lua_State *L) {
  ur_load *ld;
  ur_sched_untimeout(L, ((ur_guard *)lua_touserdata(L, 1))->timer);
  lua_settop(L, 2);
  lua_getiuservalue(L, 1, 1);  /* 3: load */
  ld = (ur_load *)lua_touserdata(L, 3);
  if (ld == NULL) return 0;
  if (ld->driver == L && ld->state < UR_LDONE) {
    ld->driver = NULL;
    ur_load_settoken(ld, 0);
    if (ld->state != UR_LRUN && lua_isnil(L, 2))
      ur_load_handover(L, 3, ld);  /* coroutine closed while waiting */
    else {
      lua_pushvalue(L, 2);
      if (lua_isnil(L, -1) && !ld->unprot) {  /* (an unprotected body's
        error unwinds to here: nil is its error value) */
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
  ur_load_restorechain(L, 1, 3);
  ur_stats_unwatch(L, 1);  /* (if no exit of the frame did already) */
  return 0;
}

/* }====================================================== */


/* {======================================================
** Taking over, and giving up
** ======================================================= */

/*
** Hand the load at 'idx' (searching, or its body due; its driver is
** gone) to the first waiter still waiting, or fail it if there is
** none.  The new driver goes on from where the old one was.
*/
void ur_load_handover (lua_State *L, int idx, ur_load *ld) {
  lua_Integer i, n;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_WAITERS);
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_State *co;
    lua_Integer tok;
    lua_rawgeti(L, -1, i);
    tok = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if ((co = ur_sched_waiter(L, tok)) == NULL) continue;
    if (lua_status(co) != LUA_YIELD) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushinteger(L, 0);
    lua_rawseti(L, -3, i);  /* no longer a waiter */
    ur_pushtable(L, &ur_key_driving);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, idx);
    lua_rawset(L, -3);  /* DRIVING[co] = load */
    lua_pop(L, 1);
    ur_pushtable(L, &ur_key_drivers);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);  /* DRIVERS[load] = co */
    lua_pop(L, 3);  /* pop DRIVERS, co, list */
    ld->driver = co;
    ld->dseq = ++ur_runtime_get(L)->tick;
    ur_load_settoken(ld, tok);
    if (ld->state == UR_LREADY ||
        (ld->job != NULL && ur_exec_isdone(ld->job)))
      ur_sched_ready(L, tok);  /* its next step is due now */
    return;
  }
  lua_pop(L, 1);  /* pop list */
  lua_getiuservalue(L, idx, UV_NAME);  /* nobody wants it any more */
  lua_pushfstring(L, "module '%s': every coroutine that asked for it was "
                     "closed", lua_tostring(L, -1));
  lua_remove(L, -2);
  ur_load_fail(L, idx);
  lua_pop(L, 1);
}


/*
** The running thread stops waiting for the load at 'idx' (its wait was
** cancelled).  If it drove the load, the load goes on for a waiter, or
** is dropped if none is left.  Stack: net zero.
*/
void ur_load_abandon (lua_State *L, int idx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  if (ld->driver != L || ld->state >= UR_LRUN) return;
  idx = lua_absindex(L, idx);
  ld->driver = NULL;
  ur_load_settoken(ld, 0);
  ur_load_handover(L, idx, ld);
}

/*
** A thread that cannot yield asks for the load at 'idx', driven by a
** suspended thread, before its body started: the running thread takes
** the load over (it drives; the old driver waits like anyone else).
*/
void ur_load_takeover (lua_State *L, int idx, ur_load *ld) {
  lua_State *old = ur_load_driver(L, idx);
  idx = lua_absindex(L, idx);
  if (old != NULL && ld->dtoken != 0)  /* the old driver now waits */
    ur_load_addwaiter(L, idx, ld->dtoken);
  ur_load_setdriver(L, idx, ld);
}

/* }====================================================== */
