/*
** core.c: luaopen_uvrequire_core, the C core's only entry point.
** The public module is 'uvrequire' (lua/uvrequire.lua), which wraps
** this one; see README.md for the API.
**
** Calls go one way:  core -> require -> {cycle, loaded, searchers,
** stats, stdsearch, prefetch} -> load -> sched -> loop -> executor -> search ->
** {compile, clib, cache}.
*/

#include "ur.h"
#include "lualib.h"
#include "uvrequire.h"


/* registry key of the 'require' that install() puts in _G */
static const char GLOBALREQ = 0;

/*
** core.require(): the replacement 'require' (one closure per state).
** Returned by a call, not held in a field: luaL_traceback names a C
** function by the first field of LOADED's tables that holds it, and it
** must name this one 'require' (_G.require), as it names stock's.
*/
static int l_require (lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &GLOBALREQ);
  return 1;
}


static const luaL_Reg corefuncs[] = {
  {"require", l_require},
  {"run", ur_l_run},
  {"loopinfo", ur_l_loopinfo},
  {"status", ur_l_status},
  {"setloop", ur_l_setloop},
  {"stdkind", ur_l_stdkind},
  {NULL, NULL}
};


/* push a require-like closure over 'package' (at 'pkg') */
static void pushrequire (lua_State *L, int pkg, lua_CFunction f,
                         int oneresult) {
  lua_pushvalue(L, pkg);  /* upvalue 1: 'package', as in loadlib.c */
  lua_pushboolean(L, oneresult);  /* upvalue 2: one result only */
  lua_pushcclosure(L, f, 2);
}


int luaopen_uvrequire_core (lua_State *L) {
  luaL_newlib(L, corefuncs);
  ur_sched_register(L);  /* the scheduler's functions and PENDING */
  ur_searchers_register(L);
  ur_stats_register(L);
  ur_cache_register(L);  /* setcache, cachestats (cachedir.c) */
  ur_prefetch_register(L);  /* setprefetch, prefetchstats */
  ur_require_init(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_LOADLIBNAME) != LUA_TTABLE)
    return luaL_error(L, "uvrequire needs the package library");
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &GLOBALREQ) == LUA_TNIL) {
    lua_pop(L, 1);
    pushrequire(L, lua_gettop(L), ur_l_require, 0);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &GLOBALREQ);  /* one per state */
  }
  ur_loaded_guard(L, -1);  /* LOADED's metatable uses this 'require' */
  lua_pop(L, 1);
  pushrequire(L, lua_gettop(L), ur_l_import_module, 1);
  lua_setfield(L, -4, "import_module");
  lua_pushcfunction(L, ur_l_setloop);  /* for 'uvrequire_set_loop' */
  lua_setfield(L, LUA_REGISTRYINDEX, UVREQUIRE_SETLOOP_KEY);
  lua_pop(L, 2);  /* pop 'package' and LOADED */
  return 1;
}
