/*
** wake.c: waking the threads that wait on loads, always from the loop,
** on uvrequire's callback thread: the driver of a load whose job is
** done, the driver of a load whose body is due (a turn after its chunk
** was loaded), the waiters of an ended load, and waiters served a value
** to break a cycle.  An error a resumed coroutine raises has no
** resumer to go to: it is kept for 'uvrequire.run'.
*/

#include "load.h"


/* resume 'co' from the callback thread 'L'; keep an error it raises */
void ur_load_resume (lua_State *L, lua_State *co) {
  int nres, status = lua_resume(co, L, 0, &nres);
  if (status == LUA_OK || status == LUA_YIELD)
    lua_pop(co, nres);
  else {
    const char *msg = lua_tostring(co, -1);
    ur_pushtable(L, &ur_key_errors);
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
      ur_load_resume(L, co);
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


/* queue the load at 'idx' to announce its end, if anybody waits */
void ur_load_schedulewake (lua_State *L, int idx, ur_load *ld) {
  int n;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_WAITERS);
  n = (int)luaL_len(L, -1);
  lua_pop(L, 1);
  if (n == 0) return;  /* nobody to tell */
  ur_pushtable(L, &ur_key_wake);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  ur_runtime_wake(L, ld->rt ? ld->rt : ur_runtime_get(L));
}


/*
** The load at 'idx' has its chunk loaded: resume its driver at the
** loop's next turn to run the body, so that loading and running never
** stall the loop in the same turn.
*/
void ur_load_resumesoon (lua_State *L, int idx, ur_load *ld) {
  idx = lua_absindex(L, idx);
  ld->state = UR_LREADY;
  ur_pushtable(L, &ur_key_soon);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  ur_runtime_wake(L, ld->rt);
}


/* resume the threads in registry list 'key', emptied first */
static void resumelist (lua_State *L, const char *key) {
  ur_pushtable(L, key);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  resumeall(L);
}


/* on the loop: run due bodies, announce ended loads (callback thread) */
void ur_load_wakeall (lua_State *L) {
  int i, n;
  resumelist(L, &ur_key_serve);
  ur_pushtable(L, &ur_key_soon);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ur_key_soon);
  n = (int)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    ur_load *ld;
    lua_rawgeti(L, -1, i);
    ld = (ur_load *)lua_touserdata(L, -1);
    if (ld->state == UR_LREADY && ld->driver != NULL &&
        lua_status(ld->driver) == LUA_YIELD)
      ur_load_resume(L, ld->driver);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* pop the list */
  ur_pushtable(L, &ur_key_wake);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ur_key_wake);
  n = (int)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    wakewaiters(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}


/*
** A job is done (loop, callback thread): resume the driver of its
** load, whose 'k_wait' goes on with the search.
*/
void ur_require_done (lua_State *L, ur_job *job) {
  ur_load *ld;
  ur_pushtable(L, &ur_key_inflight);
  if (lua_rawgetp(L, -1, job) != LUA_TUSERDATA)
    return;  /* consumed already, by a synchronous takeover */
  ld = (ur_load *)lua_touserdata(L, -1);
  if (ld->driver != NULL && lua_status(ld->driver) == LUA_YIELD)
    ur_load_resume(L, ld->driver);
}


/* core.takeerrors(): the errors kept so far, oldest first, as a list */
int ur_l_takeerrors (lua_State *L) {
  ur_pushtable(L, &ur_key_errors);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ur_key_errors);
  return 1;
}
