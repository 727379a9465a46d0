/*
** uvrequire.h: embedding uvrequire in a C program with its own libuv
** loop.
**
**   lua_State *L = luaL_newstate();
**   luaL_openlibs(L);
**   uvrequire_set_loop(L, my_loop);    -- before uvrequire's first use
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


/*
** Make 'loop' the loop on which uvrequire delivers finished imports in
** state 'L'.  Call it before uvrequire first needs a loop (its first
** import from a coroutine); later calls have no effect on that state.
** The loop must outlive the state.  Stack: net zero.
*/
static inline void uvrequire_set_loop (lua_State *L, uv_loop_t *loop) {
  lua_pushlightuserdata(L, loop);
  lua_setfield(L, LUA_REGISTRYINDEX, UVREQUIRE_LOOP_KEY);
}

#endif
