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


/* append the load at 'idx' to the run queue and have the loop see it */
static void enqueue (lua_State *L, int idx, ur_load *ld) {
  idx = lua_absindex(L, idx);
  ur_pushtable(L, &ur_key_soon);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  ur_runtime_wake(L, ld->rt ? ld->rt : ur_runtime_get(L));
}


/*
** The load at 'idx' has its chunk loaded: its driver runs the body
** from the run queue, at a later turn of the loop, so that loading and
** running never stall the loop in the same turn.
*/
void ur_load_resumesoon (lua_State *L, int idx, ur_load *ld) {
  ld->state = UR_LREADY;
  enqueue(L, idx, ld);
}


/*
** A job is done (loop, callback thread): its load goes to the run
** queue, where its driver's 'k_wait' will go on with the search.
*/
void ur_require_done (lua_State *L, ur_job *job) {
  ur_pushtable(L, &ur_key_inflight);
  if (lua_rawgetp(L, -1, job) != LUA_TUSERDATA)
    return;  /* consumed already, by a synchronous takeover */
  enqueue(L, -1, (ur_load *)lua_touserdata(L, -1));
}


/* resume the threads in registry list 'key', emptied first */
static void resumelist (lua_State *L, const char *key) {
  ur_pushtable(L, key);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  resumeall(L);
}


/*
** Work through the run queue: resume the driver of each load whose job
** is done (it loads the chunk) or whose body is due.  Stop once
** RUN_BUDGET ns of the loop's time are spent; the rest waits for the
** next turn, so that one turn holds one big chunk, or many small ones.
*/
#define RUN_BUDGET 1000000

static void runqueue (lua_State *L) {
  uint64_t start = uv_hrtime();
  int i, j, n, m;
  ur_pushtable(L, &ur_key_soon);  /* the queue to work through */
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ur_key_soon);  /* for new items */
  n = (int)luaL_len(L, -1);
  for (i = 1; i <= n && uv_hrtime() - start <= RUN_BUDGET; i++) {
    ur_load *ld;
    lua_rawgeti(L, -1, i);
    ld = (ur_load *)lua_touserdata(L, -1);
    if (ld->driver != NULL && lua_status(ld->driver) == LUA_YIELD &&
        (ld->state == UR_LREADY || ld->state == UR_LSEARCH))
      ur_load_resume(L, ld->driver);
    lua_pop(L, 1);
  }
  if (i <= n) {  /* over budget: the rest first, then the new items */
    ur_pushtable(L, &ur_key_soon);
    m = (int)luaL_len(L, -1);
    lua_createtable(L, n - i + 1 + m, 0);
    for (j = i; j <= n; j++) {
      lua_rawgeti(L, -3, j);
      lua_rawseti(L, -2, j - i + 1);
    }
    for (j = 1; j <= m; j++) {
      lua_rawgeti(L, -2, j);
      lua_rawseti(L, -2, n - i + 1 + j);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ur_key_soon);  /* pops it */
    lua_pop(L, 1);  /* pop the new items' queue */
    ur_runtime_wake(L, ur_runtime_get(L));
  }
  lua_pop(L, 1);  /* pop the queue worked through */
}


/* on the loop: serve, run the queue, announce ended loads */
void ur_load_wakeall (lua_State *L) {
  int i, n;
  resumelist(L, &ur_key_serve);
  runqueue(L);
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


/* core.takeerrors(): the errors kept so far, oldest first, as a list */
int ur_l_takeerrors (lua_State *L) {
  ur_pushtable(L, &ur_key_errors);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ur_key_errors);
  return 1;
}
