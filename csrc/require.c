/*
** require.c: the replacement 'require', Lua 5.4's 'll_require' and
** 'findloader' (loadlib.c) with the file searchers moved to the
** executor.
**
** Searchers run in the order of 'package.searchers'.  A user's searcher
** (and the standard preload searcher, a mere table lookup) is called on
** the Lua thread as stock Lua calls it.  A run of consecutive standard
** file searchers (Lua, C, Croot) becomes one job.  A caller that may
** wait by yielding (a task: sched.c) hands it to the executor and
** yields 'PENDING'; the scheduler resumes it when the job is done; it
** loads the chunk, and runs the body at a later turn.  Any other caller
** runs the job itself, on the Lua thread, exactly as stock would: no
** thread hop, the file loaded with 'luaL_loadfilex'.
**
** The require frame that loads (the driver's: drive.c) catches every
** error of searchers and loader, so a load always ends.
**
** This file: the 'require' function itself, and a require that finds
** its module loading already (it waits for the load, or takes it over,
** or moves it along).  The stack frame of the slow path: see ur.h.
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"


/* create the registry tables and metatables */
void ur_require_init (lua_State *L) {
  ur_std_init();
  ur_sched_open(L);
  ur_load_init(L);
}


/*
** The name check of 'luaL_checkstring', worded as stock 'require'
** words it even though this function is also 'uvrequire.require'
** (luaL_argerror would name whichever field it finds first).
*/
static const char *checkname (lua_State *L, const char *fname) {
  const char *name = lua_tostring(L, 1);
  if (name == NULL) {
    lua_Debug ar;
    const char *tname;
    if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING)
      tname = lua_tostring(L, -1);
    else if (lua_type(L, 1) == LUA_TLIGHTUSERDATA)
      tname = "light userdata";
    else
      tname = luaL_typename(L, 1);
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) &&
        ar.name != NULL) {
      fname = ar.name;
      if (strcmp(ar.namewhat, "method") == 0)  /* as 'luaL_argerror' */
        luaL_error(L, "calling '%s' on bad self (string expected, got %s)",
                   fname, tname);
    }
    luaL_error(L, "bad argument #1 to '%s' (string expected, got %s)",
               fname, tname);
  }
  return name;
}


/* {======================================================
** Waiting for another thread's load
** ======================================================= */

/*
** A require that cannot yield cannot wait for the load at LOADIDX: the
** thread 't' that would have to move on is suspended on something else
** than imports, or is active below the running thread (it resumed it,
** through a task or the scheduler: 'ur_load_inbody' says it is not in
** the body).
*/
static int cannotwait (lua_State *L, lua_State *t) {
  ur_stats_unwatch(L, FRAME);
  if (t != NULL && t != L && lua_status(t) == LUA_OK)
    return luaL_error(L, "module '%s' is loading in a thread that this one "
                         "runs within; a require that cannot yield cannot "
                         "wait for it", lua_tostring(L, 1));
  return luaL_error(L, "module '%s' is loading in a suspended coroutine; "
                       "a require that cannot yield cannot wait for it",
                    lua_tostring(L, 1));
}


/*
** The body of the load at LOADIDX runs in a suspended thread: find the
** thread to resume so that it moves on.  That is the thread at the end
** of the chain of waits from the driver, if it waits only on an import
** whose next step can be done now (the job is taken back and run here
** if still queued, or waited for if running).  Raises if some thread
** on the way waits on anything else.
*/
static lua_State *tomove (lua_State *L) {
  lua_State *t = ur_load_driver(L, LOADIDX);
  int hops;
  for (hops = 0; hops < 10000; hops++) {
    ur_load *x;
    lua_State *xd;
    if (t == NULL || t == L || lua_status(t) != LUA_YIELD ||
        ur_sched_waitson(L, t) != LUA_TUSERDATA)
      break;
    x = (ur_load *)lua_touserdata(L, -1);
    xd = ur_load_driver(L, -1);
    lua_pop(L, 1);  /* the record stays anchored by LOADING or 't' */
    if (x->state >= UR_LDONE) return t;  /* 't' takes the outcome */
    if (xd != t) {  /* 't' waits on another thread's load */
      t = xd;
      continue;
    }
    if (x->state == UR_LREADY) return t;  /* 't' runs the body */
    if (x->state != UR_LSEARCH || x->job == NULL) break;
    if (ur_exec_takeback(x->job)) ur_exec_runhere(x->job);
    else ur_exec_help(x->job);
    return t;
  }
  cannotwait(L, t);
  return NULL;
}


/*
** A thread that cannot yield asks for the load at LOADIDX, driven by
** another thread.  Still searching, or its body due: take it over (a
** queued job is taken back and run here).  Its body running (in a
** task that waits on imports): move that task along, from here, until
** the load ends.  Either way the body runs once.
*/
static int syncwait (lua_State *L, ur_load *ld) {
  for (;;) {
    if (ld->state == UR_LDONE || ld->state == UR_LFAIL)
      return ur_require_outcome(L);
    if (ld->state == UR_LRUN) {
      ur_sched_resume(L, tomove(L));
      lua_settop(L, FRAME);
      continue;
    }
    if (ur_load_driver(L, LOADIDX) != NULL &&
        lua_status(ld->driver) != LUA_YIELD)
      return cannotwait(L, ld->driver);  /* its driver is busy below us */
    ur_load_takeover(L, LOADIDX, ld);
    if (ld->state == UR_LREADY) {
      ur_load_pushloader(L, LOADIDX);
      return ur_require_callloader(L);
    }
    if (ld->job == NULL) return ur_require_findloader(L);
    return ur_require_finishhere(L, ld);
  }
}


/*
** Wait for the load at LOADIDX, driven by another thread or by this
** one (then it is a cycle within the chain: the module stored no value
** yet).  A cycle across threads returns the module's stored value if
** it has one; else it raises.
*/
static int await (lua_State *L, ur_load *ld, double ms, int blocks) {
  if (ur_load_cycle(L, LOADIDX)) {  /* pushes message, last edge */
    if (ld->driver != L) {  /* rule 11, across threads */
      ur_load_pushvalue(L, LOADIDX);
      if (!lua_isnil(L, -1)) return 1;  /* it stored a value: take it */
      lua_pop(L, 1);
      if (ur_sched_cansuspend(L) && ur_load_serve(L, -1)) {
        lua_settop(L, LOADIDX);  /* the served waiter stops waiting */
        ur_load_guard(L, LOADIDX)->ms = ms;
        return ur_require_waitwaiter(L);
      }
    }
    lua_pop(L, 1);  /* pop last edge */
    luaL_where(L, 1);  /* as 'luaL_error': the caller's position */
    lua_rotate(L, -2, 1);
    lua_concat(L, 2);
    return lua_error(L);
  }
  if (ld->driver == L)  /* not found as a cycle: cannot happen */
    return luaL_error(L, "circular require: %s -> %s",
                      lua_tostring(L, 1), lua_tostring(L, 1));
  if (ur_sched_waitsonme(L, ur_load_driver(L, LOADIDX)))  /* through a
                                                           task's wait */
    return luaL_error(L, "module '%s' is loading in a coroutine that "
                         "waits for this one", lua_tostring(L, 1));
  ur_load_guard(L, LOADIDX)->ms = ms;  /* FRAME */
  if (ur_sched_cansuspend(L))
    return ur_require_waitwaiter(L);
  if (blocks) ur_stats_watch(L, FRAME);
  return syncwait(L, ld);
}


/* a timeout this long (ms, about 285,000 years) or longer is none */
#define FOREVER_MS  9007199254740992.0  /* 2^53 */

/*
** The options of 'import_module' (argument 2: nil or a table):
** 'timeout', in ms (>= 0; FOREVER_MS or more, 'math.huge' too: none).
** Returns the timeout, or -1 for none.
*/
static double options (lua_State *L, const char *fname) {
  double ms = -1;
  if (lua_isnoneornil(L, 2)) return ms;
  if (!lua_istable(L, 2))
    luaL_error(L, "bad argument #2 to '%s' (table expected, got %s)",
               fname, luaL_typename(L, 2));
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    lua_pop(L, 1);  /* keep the key */
    if (lua_type(L, -1) != LUA_TSTRING ||
        strcmp(lua_tostring(L, -1), "timeout") != 0)
      luaL_error(L, "bad argument #2 to '%s' (unknown option '%s')", fname,
                 luaL_tolstring(L, -1, NULL));
  }
  if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < 0 ||
        lua_tonumber(L, -1) != lua_tonumber(L, -1))
      luaL_error(L, "bad argument #2 to '%s' (option 'timeout' must be a "
                    "non-negative number of ms)", fname);
    ms = lua_tonumber(L, -1);
    if (ms >= FOREVER_MS) ms = -1;
  }
  lua_pop(L, 1);
  return ms;
}


/*
** require(name), and uvrequire.import_module(name) (upvalue 2 true:
** one result).  Upvalue 1: the 'package' table, as in loadlib.c.
** The already-loaded path does what stock 'require' does and no more.
*/
static int dorequire (lua_State *L, const char *fname) {
  const char *name = checkname(L, fname);
  double ms = -1;  /* timeout: none */
  int blocks;  /* it blocks a running loop: the detector watches it */
  ur_load *ld;
  if (lua_toboolean(L, lua_upvalueindex(2)))  /* import_module */
    ms = options(L, fname);
  lua_settop(L, 1);  /* LOADED table will be at index 2 */
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) != LUA_TTABLE) {
    lua_getfield(L, 2, name);  /* stock's error ("attempt to index...") */
    return luaL_error(L, "registry._LOADED must be a table");  /* (it is
                                            indexable: still no table) */
  }
  lua_pushstring(L, name);  /* (as stock: the C string, up to a '\0') */
  if (lua_rawget(L, 2) != LUA_TNIL && lua_toboolean(L, -1))
    return 1;  /* package is already loaded */
  lua_pop(L, 1);  /* remove 'rawget' result */
  if (ur_loaded_foreign(L, 2)) {  /* someone else's metamethods: */
    if (lua_getfield(L, 2, name) != LUA_TNIL && lua_toboolean(L, -1))
      return 1;  /* as stock, they may find it */
    lua_pop(L, 1);
  }
  blocks = ur_runtime_get(L)->detect != 0 && ur_stats_blocks(L, name);
  if (lua_getfield(L, lua_upvalueindex(1), "searchers") != LUA_TTABLE)
    return luaL_error(L, "'package.searchers' must be a table");
  if ((ld = ur_load_find(L, name)) != NULL) {  /* LOADIDX */
    if (ur_load_inbody(L, LOADIDX)) {  /* rule 11: its provisional value */
      ur_load_pushvalue(L, LOADIDX);
      if (lua_toboolean(L, -1)) return 1;
      lua_pop(L, 1);
      if (ld->driver != L)  /* a coroutine its body resumed */
        return ur_load_nestedcycle(L, LOADIDX);
    }
    return await(L, ld, ms, blocks);
  }
  ld = ur_load_new(L, name);  /* LOADIDX */
  ur_load_guard(L, LOADIDX)->ms = ms;  /* FRAME */
  if (blocks) ur_stats_watch(L, FRAME);
  ur_load_drive(L, LOADIDX, ld);
  lua_getiuservalue(L, FRAME, 2);  /* the thread's load before this */
  ur_stats_begin(L, LOADIDX, -1);
  lua_pop(L, 1);
  return ur_require_findloader(L);
}


/*
** 'require': the already-loaded path first (a string name whose LOADED
** entry is true); everything else in 'dorequire'.  Stock looks LOADED
** up by the name as a C string, up to a '\0' in it: this looks the
** whole string up, which is the same key unless the name holds a '\0'.
** Such a name misses here (LOADED's keys are stored as C strings),
** unless code put that very string in LOADED itself; then this returns
** that entry, where stock would look the name up to its '\0' (see
** README, "Compatibility").  A scan for a '\0' here cost 12-15% of the
** already-loaded require.
*/
int ur_l_require (lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    lua_settop(L, 1);
    if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
      lua_pushvalue(L, 1);
      if (lua_rawget(L, 2) != LUA_TNIL && lua_toboolean(L, -1))
        return 1;  /* package is already loaded */
    }
  }
  return dorequire(L, "require");
}


int ur_l_import_module (lua_State *L) {
  return dorequire(L, "import_module");
}

/* }====================================================== */
