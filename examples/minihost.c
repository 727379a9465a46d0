/*
** minihost.c: the smallest complete C host of uvrequire (README,
** "Embedding").  It owns its libuv loop, hands it to uvrequire, runs a
** script whose task imports a module while the host's timer ticks, and
** closes everything cleanly.
**
**   cc -o minihost minihost.c $(pkg-config --cflags --libs uvrequire) -Wl,-E
**   ./minihost        (with uvrequire on LUA_PATH/LUA_CPATH)
*/

#include <stdio.h>

#include <uv.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include "uvrequire.h"

static const char *script =
  "local uvrequire = require('uvrequire').install()\n"
  "local dir = os.tmpname()  -- a module to import: <dir>.lua\n"
  "assert(io.open(dir .. '.lua', 'w')):write('return 6 * 7'):close()\n"
  "package.path = dir:match('^(.*/)') .. '?.lua;' .. package.path\n"
  "local task = uvrequire.spawn(function()\n"
  "  local v = require(dir:match('[^/]+$'))  -- waits; the loop runs on\n"
  "  os.remove(dir); os.remove(dir .. '.lua')\n"
  "  return v\n"
  "end)\n"
  "return function() return task:done() and select(2, task:result()) end\n";

static int ticks = 0;

static int report (lua_State *L) {  /* errors nobody claimed */
  fprintf(stderr, "minihost: %s\n", lua_tostring(L, 1));
  return 0;
}

static void tick (uv_timer_t *t) {  /* the host's own work */
  lua_State *L = (lua_State *)t->data;
  ticks++;
  lua_pushvalue(L, -1);  /* the script's poll function */
  if (lua_pcall(L, 0, 1, 0) != LUA_OK || lua_toboolean(L, -1)) {
    printf("minihost: %s after %d tick(s)\n", lua_tostring(L, -1), ticks);
    uv_close((uv_handle_t *)t, NULL);
  }
  lua_pop(L, 1);
}

int main (void) {
  uv_loop_t loop;
  uv_timer_t timer;
  lua_State *L;
  if (uv_loop_init(&loop) != 0 || (L = luaL_newstate()) == NULL)
    return 1;
  luaL_openlibs(L);
  uvrequire_set_loop(L, &loop);  /* imports complete on the host's loop */
  uvrequire_on_error(L, report);
  if (luaL_loadstring(L, script) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {  /* leaves the poll function */
    fprintf(stderr, "minihost: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  uv_timer_init(&loop, &timer);
  timer.data = L;
  uv_timer_start(&timer, tick, 0, 1);
  uv_run(&loop, UV_RUN_DEFAULT);  /* drives imports and the timer */
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT);  /* lets closing handles finish */
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
