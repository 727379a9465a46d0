/*
** loaded.c: the metatable of LOADED (registry._LOADED, which is
** package.loaded), and uvrequire.status.  What a loading module stores
** in package.loaded[name] goes to its load record; only the thread
** driving the load reads it back.  Keys present in the table never
** reach these metamethods, so the already-loaded path is untouched.
*/

#include "load.h"


static const char GUARDMT = 'm';  /* registry key: our metatable */


/*
** __index(LOADED, k): a module still loading is not there, but for the
** thread that runs its body ('ur_load_inbody'), who sees its
** provisional value (rule 11).  Stock 'require'
** (kept by a library, or after 'uninstall') gets the finished module:
** the load is completed synchronously first, by the replacement
** 'require' (upvalue 1), so that no body runs twice; its errors
** propagate.  Any other reader sees nothing until the module is done.
*/
static int loaded_index (lua_State *L) {
  ur_load *ld;
  if (lua_type(L, 2) != LUA_TSTRING ||
      (ld = ur_load_find(L, lua_tostring(L, 2))) == NULL)
    return 0;
  if (ur_load_inbody(L, -1)) {
    lua_getiuservalue(L, -1, UV_VALUE);
    return 1;
  }
  if (!ur_require_calledbystock(L, 1))
    return 0;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 2);
  lua_call(L, 1, 1);  /* require(k): not yieldable here, so in place */
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
** Install the metatable on LOADED ('req': the replacement require at
** that index), unless LOADED already has one of someone else's (then
** what a loading module stores is visible at once, as in stock Lua).
** Stack: net zero.
*/
void ur_loaded_guard (lua_State *L, int req) {
  req = lua_absindex(L, req);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (!lua_getmetatable(L, -1)) {
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, req);
    lua_pushcclosure(L, loaded_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, loaded_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &GUARDMT);
    lua_setmetatable(L, -2);
  }
  else
    lua_pop(L, 1);  /* pop the metatable found */
  lua_pop(L, 1);  /* pop LOADED */
}


/* has LOADED (at 'idx') a metatable other than ours? */
int ur_loaded_foreign (lua_State *L, int idx) {
  int foreign;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &GUARDMT);
  foreign = !lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return foreign;
}


/*
** uvrequire.status(name): "loaded", "loading" or nil.
*/
int ur_l_status (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (ur_load_find(L, name) != NULL)
    lua_pushliteral(L, "loading");
  else {
    int loaded = 0;
    if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
      lua_pushstring(L, name);
      lua_rawget(L, -2);  /* raw: a module still loading is not there */
      loaded = lua_toboolean(L, -1);
    }
    if (loaded)
      lua_pushliteral(L, "loaded");
    else
      lua_pushnil(L);
  }
  return 1;
}
