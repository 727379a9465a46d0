/*
** require.c: the replacement 'require', Lua 5.4's 'll_require' and
** 'findloader' (loadlib.c) with the file searchers moved to the
** executor.
**
** Searchers run in the order of 'package.searchers'.  A user's searcher
** (and the standard preload searcher, a mere table lookup) is called on
** the Lua thread as stock Lua calls it.  A run of consecutive standard
** file searchers (Lua, C, Croot) becomes one job.  A caller that can
** yield hands it to the executor and yields (the value 'PENDING'); it
** is resumed from the loop's run queue (wake.c) when the job is done,
** loads the chunk, and runs the body at a later turn.  A caller that
** cannot yield runs the job itself, on the Lua thread: it would block
** anyway, and so it needs no thread hop and no bytecode round trip.
** The loader is called with 'lua_callk', so a module body may itself
** yield.
**
** A module not yet loaded has a load record (load.c) that owns its
** search state and job; the 'require' frame that drives it, or waits
** for it, holds a to-be-closed guard.  Slow-path stack frame, kept
** across yields:
**   1 name   2 LOADED   3 searchers   4 load record   5 guard
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"
#include "lualib.h"


#define LOADIDX   4
#define FRAME     5  /* the guard, to-be-closed: nothing goes below */

/* the value a waiting 'require' yields; exported as uvrequire.PENDING */
static const char PENDING = 'p';
/* registry key (by address): thread -> true: never wait by yielding */
static const char NOYIELD = 'n';

/* the standard searchers, found once per process ('findstd') */
static lua_CFunction stdsearcher[4];
static uv_once_t stdonce = UV_ONCE_INIT;


static int k_wait (lua_State *L, int status, lua_KContext ctx);
static int k_loaded (lua_State *L, int status, lua_KContext ctx);


/* {======================================================
** Setup
** ======================================================= */

static int openpackage (lua_State *T) {
  luaL_requiref(T, "package", luaopen_package, 0);
  lua_getfield(T, -1, "searchers");
  return 1;
}


/*
** Learn the addresses of the four standard searchers from a scratch
** state: they are static functions of the Lua library, so a searcher
** in any state is standard exactly when its C function is one of them.
*/
static void findstd (void) {
  lua_State *T = luaL_newstate();
  int i;
  if (T == NULL) return;  /* none known: every searcher runs in Lua */
  lua_pushcfunction(T, openpackage);
  if (lua_pcall(T, 0, 1, 0) == LUA_OK) {
    for (i = 0; i < 4; i++) {
      lua_rawgeti(T, -1, i + 1);
      stdsearcher[i] = lua_tocfunction(T, -1);
      lua_pop(T, 1);
    }
  }
  lua_close(T);
}


/* UR_STEP_* of the standard file searcher at 'idx', or -1 */
static int stdkind (lua_State *L, int idx) {
  lua_CFunction f = lua_tocfunction(L, idx);
  if (f == NULL) return -1;
  if (f == stdsearcher[1]) return UR_STEP_LUA;
  if (f == stdsearcher[2]) return UR_STEP_C;
  if (f == stdsearcher[3]) return UR_STEP_CROOT;
  return -1;
}


/* create the registry tables and metatables; push PENDING */
void ur_require_init (lua_State *L) {
  uv_once(&stdonce, findstd);
  ur_load_init(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NOYIELD) == LUA_TNIL) {
    lua_newtable(L);  /* NOYIELD, weak keys */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NOYIELD);
  }
  lua_pop(L, 1);  /* pop NOYIELD or nil */
  lua_pushlightuserdata(L, (void *)&PENDING);
}

/* }====================================================== */


/* {======================================================
** Searching
** ======================================================= */

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


/*
** Build a job of the standard file searchers from 'i' on (at least the
** one at 'i'), reading each one's template list from the 'package'
** table it closes over, as 'findfile' does.  The job belongs to the
** load record from the start.  Returns the index after the run.
*/
static int buildjob (lua_State *L, int i, ur_load *ld) {
  ur_job *job = (ur_job *)calloc(1, sizeof(ur_job));
  int kind, oom;
  if (job == NULL) luaL_error(L, "not enough memory");
  ld->job = job;  /* from here on, the load record frees it */
  ld->rt = ur_runtime_get(L);
  job->name = strdup(lua_tostring(L, 1));
  oom = (job->name == NULL);
  while (job->nsteps < UR_MAXSTEPS) {
    ur_step *s = &job->steps[job->nsteps];
    const char *path;
    lua_rawgeti(L, 3, i);  /* push searcher */
    if ((kind = stdkind(L, -1)) < 0) {
      lua_pop(L, 1);
      break;
    }
    if (kind == UR_STEP_CROOT && strchr(job->name, '.') == NULL) {
      s->kind = kind;  /* a root name: Croot reads no path at all */
      job->nsteps++;
      lua_pop(L, 1);  /* pop searcher */
      i++;
      continue;
    }
    lua_getupvalue(L, -1, 1);  /* push its 'package' */
    lua_pushstring(L, kind == UR_STEP_LUA ? "path" : "cpath");
    if (job->nsteps > 0 && lua_rawget(L, -2) != LUA_TSTRING) {
      lua_pop(L, 3);  /* read it only if the search gets there: */
      break;          /* a later job, as 'findfile' would */
    }
    if (job->nsteps == 0) {  /* as 'findfile': metamethods and all */
      lua_pop(L, 1);
      lua_getfield(L, -1, kind == UR_STEP_LUA ? "path" : "cpath");
    }
    path = lua_tostring(L, -1);
    s->kind = kind;
    s->path = path ? strdup(path) : NULL;
    if (path != NULL && s->path == NULL) oom = 1;
    job->nsteps++;
    lua_pop(L, 3);  /* pop path, package, searcher */
    i++;
  }
  if (oom) luaL_error(L, "not enough memory");
  return i;
}


/* is the running thread allowed to wait by yielding? */
static int canyield (lua_State *L) {
  int no;
  if (!lua_isyieldable(L)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &NOYIELD);
  lua_pushthread(L);
  no = (lua_rawget(L, -2) != LUA_TNIL);
  lua_pop(L, 2);  /* pop flag and NOYIELD */
  return !no;
}


/* wait by yielding; 'k_wait' looks again when resumed */
static int wait (lua_State *L) {
  lua_pushlightuserdata(L, (void *)&PENDING);
  return lua_yieldk(L, 1, 0, k_wait);
}


static int afterjob (lua_State *L);
static int callloader (lua_State *L);


/*
** 'findloader' from the load's next searcher on.  Ends by calling the
** loader it finds, or by raising "module not found".  May yield.
*/
static int findloader (lua_State *L) {
  ur_load *ld = (ur_load *)lua_touserdata(L, LOADIDX);
  const char *name = lua_tostring(L, 1);
  for (;; ld->next++) {
    if (lua_rawgeti(L, 3, ld->next) == LUA_TNIL) {  /* no more */
      lua_pop(L, 1);
      ur_load_pushmsgs(L, LOADIDX);
      return luaL_error(L, "module '%s' not found:%s", name,
                        lua_tostring(L, -1));
    }
    if (stdkind(L, -1) < 0) {  /* a searcher for the Lua thread */
      lua_pushstring(L, name);
      lua_call(L, 1, 2);  /* call it */
      if (lua_isfunction(L, -2))  /* found a loader */
        return callloader(L);
      else if (lua_isstring(L, -2)) {  /* searcher returned a message */
        lua_pop(L, 1);
        lua_pushliteral(L, "\n\t");
        lua_rotate(L, -2, 1);
        lua_concat(L, 2);
        ur_load_addmsg(L, LOADIDX);  /* pops it */
      }
      else
        lua_pop(L, 2);  /* no message */
      continue;
    }
    lua_pop(L, 1);  /* pop searcher */
    ld->next = buildjob(L, ld->next, ld);
    if (canyield(L) && ur_runtime_submit(L, ld->rt, ld->job) == 0) {
      ur_load_injob(L, LOADIDX, ld);
      return wait(L);
    }
    /* blocking anyway (or no executor thread could start): run it here */
    ld->job->inplace = 1;
    ur_job_run(ld->job, NULL);
    return afterjob(L);
  }
}


/*
** Resumed while waiting: on an ended load, its outcome; if we drive it
** and its job is done, go on; else (resumed by someone else) wait on.
*/
static int k_wait (lua_State *L, int status, lua_KContext ctx) {
  ur_load *ld = (ur_load *)lua_touserdata(L, LOADIDX);
  (void)status; (void)ctx;
  if (ld->driver == L && ld->state == UR_LREADY) {  /* body is due */
    lua_settop(L, FRAME + 2);  /* loader; loader data */
    return callloader(L);
  }
  lua_settop(L, FRAME);  /* drop whatever the resumer passed */
  if (ld->state == UR_LDONE || ld->state == UR_LFAIL) {
    int n = ur_load_outcome(L, LOADIDX);  /* raises a failure */
    return lua_toboolean(L, lua_upvalueindex(2)) ? (lua_pop(L, 1), 1) : n;
  }
  if (ld->driver == L && ld->state == UR_LSEARCH && ld->job != NULL &&
      ur_exec_isdone(ld->job))
    return afterjob(L);
  if (ld->driver != L && ur_load_served(L, LOADIDX))
    return 1;  /* a cycle across threads was broken with its value */
  return wait(L);
}


/* push the chunk of a found Lua module: its bytecode, or its text */
static int loadcode (lua_State *L, ur_job *job) {
  int status;
  if (!job->inplace)  /* chunk name and all are in the bytecode */
    return luaL_loadbufferx(L, job->code, job->codelen, job->file, "b");
  lua_pushfstring(L, "@%s", job->file);
  status = luaL_loadbufferx(L, job->code, job->codelen,
                            lua_tostring(L, -1), NULL);
  lua_remove(L, -2);  /* remove chunk name */
  return status;
}


/*
** The load's job is done: take its results.  Libraries it opened go to
** _CLIBS; a loader found is pushed and called; a miss adds its
** messages and the search goes on.
*/
static int afterjob (lua_State *L) {
  ur_load *ld = (ur_load *)lua_touserdata(L, LOADIDX);
  ur_job *job = ld->job;
  int i;
  for (i = 0; i < job->nsteps; i++) {
    if (job->steps[i].lib != NULL) {
      void *lib = job->steps[i].lib;
      job->steps[i].lib = NULL;  /* from here on, _CLIBS owns it */
      ur_clib_keep(L, job->steps[i].libfile ? job->steps[i].libfile
                                            : job->file, lib);
    }
  }
  /* Lua bytecode from the executor, for a thread that can yield: its
     body runs at the loop's next turn, not in this one */
  int split = !job->inplace && job->steps[job->found].kind == UR_STEP_LUA;
  switch (job->outcome) {
    case UR_RAISE:
      lua_pushlstring(L, job->msg.p, job->msg.n);
      ur_load_dropjob(L, ld);
      return lua_error(L);
    case UR_NOTFOUND:
      lua_pushlstring(L, job->msg.p, job->msg.n);  /* "\n\t"-led */
      ur_load_addmsg(L, LOADIDX);
      ur_load_dropjob(L, ld);
      return findloader(L);
    default:  /* UR_FOUND */
      if (job->steps[job->found].kind != UR_STEP_LUA)
        lua_pushcfunction(L, job->open);
      else if (loadcode(L, job) != LUA_OK) {
        lua_pushfstring(L, "error loading module '%s' from file '%s':\n\t%s",
                        lua_tostring(L, 1), job->file, lua_tostring(L, -1));
        ur_load_dropjob(L, ld);
        return lua_error(L);
      }
      lua_pushstring(L, job->file);  /* loader data */
      ur_load_dropjob(L, ld);
      if (split && canyield(L)) {
        ur_load_resumesoon(L, LOADIDX, ld);
        return wait(L);
      }
      return callloader(L);
  }
}

/* }====================================================== */


/* {======================================================
** Loading
** ======================================================= */

/* stack: ...; loader; loader data.  Run the loader as 'll_require'. */
static int callloader (lua_State *L) {
  ((ur_load *)lua_touserdata(L, LOADIDX))->state = UR_LRUN;
  lua_rotate(L, -2, 1);  /* function <-> loader data */
  lua_pushvalue(L, 1);  /* name is 1st argument to module loader */
  lua_pushvalue(L, -3);  /* loader data is 2nd argument */
  /* stack: ...; loader data; loader function; mod. name; loader data */
  lua_callk(L, 2, 1, 0, k_loaded);
  return k_loaded(L, LUA_OK, 0);
}


/*
** stack: ...; loader data; result from loader.  The load leaves
** LOADING (what the body stored for itself becomes a plain entry of
** LOADED); then LOADED is written and read exactly as 'll_require'
** does; waiters get the outcome.
*/
static int k_loaded (lua_State *L, int status, lua_KContext ctx) {
  const char *name = lua_tostring(L, 1);
  (void)status; (void)ctx;
  ur_load_unguard(L, LOADIDX);
  if (!lua_isnil(L, -1))  /* non-nil return? */
    lua_setfield(L, 2, name);  /* LOADED[name] = returned value */
  else
    lua_pop(L, 1);  /* pop nil */
  if (lua_getfield(L, 2, name) == LUA_TNIL) {  /* module set no value? */
    lua_pushboolean(L, 1);  /* use true as result */
    lua_copy(L, -1, -2);  /* replace loader result */
    lua_setfield(L, 2, name);  /* LOADED[name] = true */
  }
  ur_load_succeed(L, LOADIDX);
  if (lua_toboolean(L, lua_upvalueindex(2)))  /* import_module */
    return 1;  /* module result */
  lua_rotate(L, -2, 1);  /* loader data <-> module result */
  return 2;  /* return module result and loader data */
}


/*
** Wait for the load at LOADIDX, driven by another thread or by this
** one (then it is a cycle within the chain: the module stored no value
** yet).  A cycle across threads returns the module's stored value if
** it has one; else it raises.  A thread that cannot yield takes the
** load over while it is still searching.
*/
static int await (lua_State *L, ur_load *ld) {
  if (ur_load_cycle(L, LOADIDX)) {  /* pushes message, last edge */
    if (ld->driver != L) {  /* rule 11, across threads */
      ur_load_pushvalue(L, LOADIDX);
      if (!lua_isnil(L, -1)) return 1;  /* it stored a value: take it */
      lua_pop(L, 1);
      if (canyield(L) && ur_load_serve(L, -1)) {  /* we stored one */
        lua_settop(L, LOADIDX);  /* the served waiter stops waiting */
        ur_load_guard(L, LOADIDX);
        ur_load_addwaiter(L, LOADIDX);
        return wait(L);
      }
    }
    return luaL_error(L, "%s", lua_tostring(L, -2));
  }
  if (ld->driver == L)  /* not found as a cycle: cannot happen */
    return luaL_error(L, "circular require: %s -> %s",
                      lua_tostring(L, 1), lua_tostring(L, 1));
  ur_load_guard(L, LOADIDX);  /* FRAME */
  if (canyield(L)) {
    ur_load_addwaiter(L, LOADIDX);
    return wait(L);
  }
  ur_load_takeover(L, LOADIDX, ld);  /* raises if its body runs */
  if (ld->job != NULL) ur_exec_wait(ld->job);
  return afterjob(L);
}


/*
** require(name), and uvrequire.import_module(name) (upvalue 2 true:
** one result).  Upvalue 1: the 'package' table, as in loadlib.c.
** The already-loaded path does what stock 'require' does and no more.
*/
static int dorequire (lua_State *L, const char *fname) {
  const char *name = checkname(L, fname);
  ur_load *ld;
  lua_settop(L, 1);  /* LOADED table will be at index 2 */
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, 2, name);  /* LOADED[name]; a driver sees its own */
  if (lua_toboolean(L, -1))  /* is it there? */
    return 1;  /* package is already loaded */
  lua_pop(L, 1);  /* remove 'getfield' result */
  if (lua_getfield(L, lua_upvalueindex(1), "searchers") != LUA_TTABLE)
    return luaL_error(L, "'package.searchers' must be a table");
  if ((ld = ur_load_find(L, name)) != NULL)  /* LOADIDX */
    return await(L, ld);
  ld = ur_load_new(L, name);  /* LOADIDX */
  ur_load_guard(L, LOADIDX);  /* FRAME */
  ur_load_drive(L, LOADIDX, ld);
  return findloader(L);
}


int ur_l_require (lua_State *L) {
  return dorequire(L, "require");
}


int ur_l_import_module (lua_State *L) {
  return dorequire(L, "import_module");
}


/*
** core.setyield(thread, allowed): whether 'thread' may wait for an
** import by yielding.  Returns the previous setting.
*/
int ur_l_setyield (lua_State *L) {
  int before;
  luaL_checktype(L, 1, LUA_TTHREAD);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &NOYIELD);
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

/* }====================================================== */
