/*
** uvrequire.h: embedding uvrequire in a C program with its own libuv
** loop.
**
**   lua_State *L = luaL_newstate();
**   luaL_openlibs(L);
**   uvrequire_set_loop(L, my_loop);    -- imports complete on my_loop
**   uvrequire_on_error(L, my_report);  -- optional: unclaimed errors
**   ... require("uvrequire").install() from Lua ...
**   uv_run(my_loop, UV_RUN_DEFAULT);   -- drives imports and your work
**   lua_close(L);
**   uv_run(my_loop, UV_RUN_DEFAULT);   -- lets closing handles finish
**
** Everything here is inline: a host needs uvrequire's header, not a
** link against its shared object (which Lua loads with 'require').
*/

#ifndef uvrequire_h
#define uvrequire_h

#include <uv.h>

#include "lua.h"


/* registry field where a host leaves its loop (a light userdata) */
#define UVREQUIRE_LOOP_KEY  "uvrequire.loop"
/* registry field of the function that switches loops (set by uvrequire) */
#define UVREQUIRE_SETLOOP_KEY  "uvrequire.setloop"
/* registry field of the handler of unclaimed errors */
#define UVREQUIRE_ONERROR_KEY  "uvrequire.on_error"


/*
** Make 'loop' the loop on which uvrequire completes imports in state
** 'L'.  Before uvrequire's first use it is simply recorded.  After it,
** the switch happens at the next import, provided no import is in
** flight now; if one is, nothing changes and UV_EBUSY is returned.
** Returns 0 on success (or a Lua error status if the call failed).
** The loop must outlive the state.  Stack: net zero.
*/
static inline int uvrequire_set_loop (lua_State *L, uv_loop_t *loop) {
  int rc = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, UVREQUIRE_SETLOOP_KEY)
      == LUA_TFUNCTION) {
    lua_pushlightuserdata(L, loop);
    if ((rc = lua_pcall(L, 1, 1, 0)) == LUA_OK)
      rc = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);  /* pop result or error */
    return rc;
  }
  lua_pop(L, 1);  /* pop nil */
  lua_pushlightuserdata(L, loop);
  lua_setfield(L, LUA_REGISTRYINDEX, UVREQUIRE_LOOP_KEY);
  return 0;
}


/*
** Have 'handler' report errors that nobody claimed (a task's error
** whose handle was collected, an error of a coroutine uvrequire
** resumed) instead of stderr: it is called as handler(msg, task) with
** the traceback text and the task handle (or nil).  NULL restores
** stderr.  Same as 'uvrequire.on_error' from Lua.  Stack: net zero.
*/
static inline void uvrequire_on_error (lua_State *L, lua_CFunction handler) {
  if (handler != NULL) lua_pushcfunction(L, handler);
  else lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, UVREQUIRE_ONERROR_KEY);
}

#endif
