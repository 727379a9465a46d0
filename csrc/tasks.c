/*
** tasks.c: the scheduler's side that the Lua layer sees (sched.c is
** the machinery): who may wait by yielding (tasks, and the "tasks" /
** "any" rule), where the errors of resumed coroutines go, and the
** functions of 'uvrequire.core' that tasks, 'park' and 'cancel' use.
**
** Errors of coroutines resumed here have no resumer to go to.  A task's
** go to its handle (the Lua layer's hook); others to the sink: kept for
** 'uvrequire.run' while it runs, else 'uvrequire.on_error', else stderr.
*/

#include <stdio.h>

#include "ur.h"
#include "uvrequire.h"


/* registry keys (by address) */
static const char TASKS = 'k';    /* thread -> task handle (ephemeron) */
static const char NOYIELD = 'n';  /* thread -> true: never yield (weak) */
static const char ERRORS = 'e';   /* errors kept for 'uvrequire.run' */
static const char DIED = 'd';     /* Lua layer's hook for dead tasks */

/* the value a waiting coroutine yields (uvrequire.PENDING) */
static const char PENDING = 'p';


/* push registry table 'key' */
static void pushtable (lua_State *L, const char *key) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
}


/* create the registry tables of this file (idempotent; sched.c's
   'ur_sched_open' calls it).  Stack: net zero. */
void ur_sched_opentasks (lua_State *L) {
  ur_regtable(L, &TASKS, "k");
  ur_regtable(L, &NOYIELD, "k");
  ur_regtable(L, &ERRORS, NULL);
}


/* {======================================================
** Who may wait by yielding
** ======================================================= */

/* is thread 'L' in registry table 'key'? */
static int inset (lua_State *L, const char *key) {
  int in;
  pushtable(L, key);
  lua_pushthread(L);
  in = (lua_rawget(L, -2) != LUA_TNIL);
  lua_pop(L, 2);
  return in;
}


/* is the running thread a task's? */
int ur_sched_istask (lua_State *L) {
  return inset(L, &TASKS);
}


/*
** May the running thread wait by yielding?  Only if it can yield at
** all, was not put in 'sync' mode, and is a task (mode "tasks") or any
** coroutine (mode "any").  Everyone else runs imports in place.
*/
int ur_sched_cansuspend (lua_State *L) {
  ur_runtime *rt;
  if (!lua_isyieldable(L)) return 0;
  rt = ur_runtime_get(L);
  if (inset(L, &NOYIELD)) return 0;
  return rt->mode == UR_WAIT_ANY || inset(L, &TASKS);
}

/* }====================================================== */


/* {======================================================
** Where errors go
** ======================================================= */

/*
** Report 'msg' (at 'm', a traceback) with the value at 'x' (a task
** handle, or nil): kept for 'uvrequire.run' while it runs; else given
** to 'uvrequire.on_error'; else written to stderr.  Never raises.
*/
static void report (lua_State *L, int m, int x, const char *what) {
  ur_runtime *rt = ur_runtime_get(L);
  m = lua_absindex(L, m);
  x = lua_absindex(L, x);
  if (rt->running && lua_isnil(L, x)) {
    pushtable(L, &ERRORS);
    lua_pushvalue(L, m);
    lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    lua_pop(L, 1);
    return;
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, UVREQUIRE_ONERROR_KEY)
      == LUA_TFUNCTION) {
    lua_pushvalue(L, m);
    lua_pushvalue(L, x);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) return;
    fprintf(stderr, "uvrequire: error in the error handler: %s\n",
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  }
  lua_pop(L, 1);
  fprintf(stderr, "uvrequire: error in %s: %s\n", what,
          lua_tostring(L, m) ? lua_tostring(L, m) : "?");
  fflush(stderr);
}


/* (e) -> what e's __tostring returns, or e itself if it has none */
static int metatostring (lua_State *L) {
  luaL_callmeta(L, 1, "__tostring");
  return 1;
}


/* protected part of 'died': (co) -> the Lua hook, or the sink */
static int l_died (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  const char *msg;
  int tb;
  lua_pushvalue(co, -1);
  lua_xmove(co, L, 1);  /* 2: the error object */
  if ((msg = lua_tostring(L, 2)) == NULL) {  /* as lua.c's 'msghandler' */
    lua_pushcfunction(L, metatostring);  /* (a __tostring may raise) */
    lua_pushvalue(L, 2);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 2));
  }
  luaL_traceback(L, co, msg, 0);
  tb = lua_gettop(L);  /* the traceback */
  pushtable(L, &TASKS);
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TNIL &&  /* a task: to its handle */
      lua_rawgetp(L, LUA_REGISTRYINDEX, &DIED) == LUA_TFUNCTION) {
    lua_pushvalue(L, -2);  /* task */
    lua_pushvalue(L, 2);  /* error */
    lua_pushvalue(L, tb);
    lua_call(L, 3, 0);
    return 0;
  }
  lua_pushnil(L);
  report(L, tb, -1, "coroutine");
  return 0;
}


/*
** Thread 'co' died with an error (at its top) while we resumed it:
** hand it to its task or the sink, then close its pending to-be-closed
** variables (so that loads it drove end).  Never raises.
*/
void ur_sched_died (lua_State *L, lua_State *co) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, l_died);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "uvrequire: error in coroutine: %s\n",
            lua_tostring(co, -1) ? lua_tostring(co, -1) : "?");
  }
  lua_settop(L, top);
  lua_resetthread(co);
}

/* }====================================================== */


/* {======================================================
** Entry points for the Lua layer
** ======================================================= */

/* core.setmode("tasks" | "any") */
static int l_setmode (lua_State *L) {
  static const char *const modes[] = {"tasks", "any", NULL};
  ur_runtime_get(L)->mode = luaL_checkoption(L, 1, NULL, modes);
  return 0;
}


/* core.settask(co, task): 'co' is a task's coroutine */
static int l_settask (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  lua_settop(L, 2);
  pushtable(L, &TASKS);
  lua_insert(L, 1);
  lua_rawset(L, 1);
  return 0;
}


/*
** core.start(co, ...): start a task's coroutine, as 'coroutine.resume'
** would (true, or false and its error), but as a coroutine that runs
** on its own ('ur_sched_resumetask').
*/
static int l_start (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  int narg = lua_gettop(L) - 1, nres, status;
  luaL_argexpected(L, co != NULL, 1, "thread");
  if (lua_status(co) != LUA_OK || lua_gettop(co) != 1)
    return luaL_error(L, "cannot start a coroutine twice");
  if (!lua_checkstack(co, narg))
    return luaL_error(L, "too many arguments to resume");
  lua_xmove(L, co, narg);  /* stack: co; its args are on its own */
  status = ur_sched_resumetask(L, co, narg, &nres);
  if (status == LUA_OK || status == LUA_YIELD) {
    lua_pop(co, nres);  /* (what a task yields or returns goes nowhere) */
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);  /* the error */
  return 2;
}


/* core.ondied(fn): fn(task, err, traceback) when a task's thread dies */
static int l_ondied (lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &DIED);
  return 0;
}


/*
** core.setyield(thread, allowed): whether 'thread' may wait for an
** import by yielding.  Returns the previous setting.
*/
static int l_setyield (lua_State *L) {
  int before;
  luaL_checktype(L, 1, LUA_TTHREAD);
  pushtable(L, &NOYIELD);
  lua_pushvalue(L, 1);
  before = (lua_rawget(L, -2) == LUA_TNIL);
  lua_pop(L, 1);  /* pop old flag */
  lua_pushvalue(L, 1);
  if (lua_toboolean(L, 2)) lua_pushnil(L);
  else lua_pushboolean(L, 1);
  lua_rawset(L, -3);  /* NOYIELD[thread] = flag */
  lua_pushboolean(L, before);
  return 1;
}


/* core.cansuspend(): may the running thread wait by yielding? */
static int l_cansuspend (lua_State *L) {
  lua_pushboolean(L, ur_sched_cansuspend(L));
  return 1;
}


static int k_park (lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  ur_sched_consume(L, (lua_Integer)ctx);
  if (ur_sched_takecancel(L))
    return lua_error(L);
  return 0;
}


/*
** core.cancel(co, err): end the wait of 'co' (an import or a task) with
** error 'err' at the loop's next turn.  Returns false if it waits on
** nothing of uvrequire's.
*/
static int l_cancel (lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TTHREAD);
  co = lua_tothread(L, 1);
  lua_settop(L, 2);
  lua_pushboolean(L, ur_sched_cancel(L, co));
  return 1;
}


/*
** core.park(list): wait, by yielding, until woken through 'list' (a
** table to which the new token is appended) or resumed by anyone.
*/
static int l_park (lua_State *L) {
  lua_Integer tok;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isyieldable(L))
    return luaL_error(L, "attempt to yield from outside a coroutine");
  tok = ur_sched_token(L);
  lua_pushinteger(L, tok);
  lua_rawseti(L, 1, luaL_len(L, 1) + 1);
  ur_sched_wait(L, tok, lua_isthread(L, 2) ? 2 : 0);
  lua_pushlightuserdata(L, (void *)&PENDING);
  return lua_yieldk(L, 1, (lua_KContext)tok, k_park);
}


/* core.waitsonme(co): would the running thread wait on itself? */
static int l_waitsonme (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  lua_pushboolean(L, ur_sched_waitsonme(L, lua_tothread(L, 1)));
  return 1;
}


/* core.wakeall(list): queue every token in 'list' */
static int l_wakeall (lua_State *L) {
  lua_Integer i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    ur_sched_ready(L, lua_tointeger(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}


/* core.report(msg, task): hand 'msg' to the sink (see 'report') */
static int l_report (lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 2);
  report(L, 1, 2, lua_isnil(L, 2) ? "coroutine" : "task");
  return 0;
}


/* core.takeerrors(): the errors kept for 'run', oldest first */
static int l_takeerrors (lua_State *L) {
  pushtable(L, &ERRORS);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ERRORS);
  return 1;
}


static const luaL_Reg funcs[] = {
  {"setmode", l_setmode},
  {"settask", l_settask},
  {"start", l_start},
  {"waitsonme", l_waitsonme},
  {"ondied", l_ondied},
  {"setyield", l_setyield},
  {"cansuspend", l_cansuspend},
  {"park", l_park},
  {"wakeall", l_wakeall},
  {"report", l_report},
  {"cancel", l_cancel},
  {"takeerrors", l_takeerrors},
  {NULL, NULL}
};


/* add the scheduler's functions and PENDING to the table at the top */
void ur_sched_register (lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  lua_pushlightuserdata(L, (void *)&PENDING);
  lua_setfield(L, -2, "PENDING");
}


/* push PENDING */
void ur_sched_pushpending (lua_State *L) {
  lua_pushlightuserdata(L, (void *)&PENDING);
}

/* }====================================================== */
