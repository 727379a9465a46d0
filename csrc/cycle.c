/*
** cycle.c: cycles between loads.  Each load's 'waits_on' names the
** load its body is requiring now (nested in its own thread, or awaited
** from another); a wait that would reach back to the waiter's own
** innermost load closes a cycle.  Rule 11 of stock 'require' (a module
** that stored a value for itself is served to its cycle) is kept
** across threads; anything else is an error naming the chain.
*/

#include "load.h"


/*
** Would the running thread waiting on the load at 'idx' close a cycle?
** Follows 'waits_on' from that load; if it reaches the thread's own
** innermost load, pushes "circular require: m -> ... -> m" and the load
** whose body waits on the thread's own (the cycle's last edge), and
** returns 1.  Else pushes nothing and returns 0.
*/
int ur_load_cycle (lua_State *L, int idx) {
  int top, n = 0, i;
  luaL_Buffer b;
  idx = lua_absindex(L, idx);
  top = lua_gettop(L);
  luaL_checkstack(L, 8, NULL);
  ur_pushtable(L, &ur_key_driving);
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
  luaL_buffinit(L, &b);  /* "circular require: a -> ... -> a" */
  luaL_addstring(&b, "circular require: ");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, top + 3, i);
    luaL_addvalue(&b);
    luaL_addstring(&b, " -> ");
  }
  lua_getiuservalue(L, idx, UV_NAME);
  luaL_addvalue(&b);
  luaL_pushresult(&b);
  lua_replace(L, top + 1);  /* message */
  lua_copy(L, top + 4, top + 2);  /* last edge's load */
  lua_settop(L, top + 2);
  return 1;
}


/* append the name of the load at 'x' to the list at 'list' */
static void addname (lua_State *L, int list, int x) {
  lua_getiuservalue(L, x, UV_NAME);
  lua_rawseti(L, list, luaL_len(L, list) + 1);
}


/*
** The running thread runs in the body of the load at 'idx' without
** driving it (a coroutine the body resumed: 'ur_load_inbody'), and
** requires that module, which stored no value.  Raises, with the
** caller's position, "circular require: m -> ... -> m": from m, the
** loads its driver runs (each waits on the next), down to the one
** whose body resumed this thread; then the loads this thread drives,
** outermost first.
*/
int ur_load_nestedcycle (lua_State *L, int idx) {
  lua_State *d = ur_load_driver(L, idx);
  int top, list, mine, i, n;
  luaL_Buffer b;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 8, NULL);
  luaL_where(L, 1);  /* top: the caller's position, as 'luaL_error' */
  top = lua_gettop(L);
  lua_newtable(L);  /* top+1: the names, in order */
  lua_newtable(L);  /* top+2: this thread's, innermost first */
  list = top + 1;
  mine = top + 2;
  lua_pushvalue(L, idx);  /* cursor: the driver's side, from m */
  for (n = 0; n < 100000; n++) {
    addname(L, list, -1);
    if (lua_getiuservalue(L, -1, UV_WAITSON) != LUA_TUSERDATA ||
        ur_load_driver(L, -1) != d) {
      lua_pop(L, 1);
      break;
    }
    lua_replace(L, -2);
  }
  lua_pop(L, 1);  /* pop cursor */
  ur_pushtable(L, &ur_key_driving);  /* this thread's side */
  lua_pushthread(L);
  lua_rawget(L, -2);  /* cursor: its innermost load, or nil */
  for (n = 0; n < 100000 && lua_type(L, -1) == LUA_TUSERDATA &&
              ur_load_driver(L, -1) == L && !lua_rawequal(L, -1, idx);
       n++) {
    addname(L, mine, -1);
    lua_getiuservalue(L, -1, UV_PARENT);  /* its parent, if this
                                              thread's too */
    lua_replace(L, -2);
  }
  lua_pop(L, 2);  /* pop cursor, DRIVING */
  for (i = n; i >= 1; i--) {  /* outermost first */
    lua_rawgeti(L, mine, i);
    lua_rawseti(L, list, luaL_len(L, list) + 1);
  }
  addname(L, list, idx);
  luaL_buffinit(L, &b);  /* (values below the buffer stay in place) */
  lua_pushvalue(L, top);
  luaL_addvalue(&b);
  luaL_addstring(&b, "circular require: ");
  n = (int)luaL_len(L, list);
  for (i = 1; i <= n; i++) {
    if (i > 1) luaL_addstring(&b, " -> ");
    lua_rawgeti(L, list, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return lua_error(L);
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
  lua_Integer tok, i, n;
  x = lua_absindex(L, x);
  if (xl == NULL || (co = ur_load_driver(L, x)) == NULL || co == L ||
      lua_status(co) != LUA_YIELD || (tok = ur_sched_tokenof(L, co)) == 0)
    return 0;
  ur_pushtable(L, &ur_key_driving);
  lua_pushthread(L);
  lua_rawget(L, -2);  /* mine */
  lua_getiuservalue(L, -1, UV_VALUE);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 3);
    return 0;
  }
  lua_pop(L, 1);  /* pop value */
  lua_getiuservalue(L, -1, UV_WAITERS);  /* off the waiters' list */
  n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_tointeger(L, -1) == tok) {
      lua_pushinteger(L, 0);
      lua_rawseti(L, -3, i);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* pop list */
  lua_getiuservalue(L, -1, UV_SERVED);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);  /* served[co] = true */
  lua_pop(L, 3);  /* pop served, mine, DRIVING */
  ur_sched_ready(L, tok);
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
