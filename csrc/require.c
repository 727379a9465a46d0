/*
** require.c: the replacement 'require', Lua 5.4's 'll_require' and
** 'findloader' (loadlib.c) with the file searchers moved to the
** executor.
**
** Searchers run in the order of 'package.searchers'.  A user's searcher
** (and the standard preload searcher, a mere table lookup) is called on
** the Lua thread as stock Lua calls it.  A run of consecutive standard
** file searchers (Lua, C, Croot) becomes one executor job.  While the
** job runs, a yieldable caller yields (the value 'PENDING'), and is
** resumed on the loop when the job is done; any other caller blocks
** until it is done.  The loader is called with 'lua_callk', so a module
** body may itself yield.
**
** Slow-path stack frame, kept across yields:
**   1 name   2 LOADED   3 searchers   4 messages so far   5 job ref
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"
#include "lualib.h"


#define FRAME     5
#define JOBREF    "uvrequire.job"

/* the value a waiting 'require' yields; exported as uvrequire.PENDING */
static const char PENDING = 'p';
/* registry keys (by address) */
static const char INFLIGHT = 'i';  /* job (light ud) -> its job ref */
static const char NOYIELD = 'n';   /* thread -> true: never yield */
static const char ERRORS = 'e';    /* errors of resumed coroutines */

/* the standard searchers, found once per process ('findstd') */
static lua_CFunction stdsearcher[4];
static uv_once_t stdonce = UV_ONCE_INIT;

/* a full userdata owning one job; its user value: the waiting thread */
typedef struct jobref {
  ur_job *job;
  ur_runtime *rt;
} jobref;


static int k_job (lua_State *L, int status, lua_KContext ctx);
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


/*
** Release the job of a job ref, if any (Lua thread): it leaves
** INFLIGHT, so no completion can resume its waiter any more, and its
** notice is closed.  Stack: net zero.
*/
static void unref (lua_State *L, jobref *ref) {
  if (ref->job != NULL) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &INFLIGHT);
    lua_pushnil(L);
    lua_rawsetp(L, -2, ref->job);  /* INFLIGHT[job] = nil */
    lua_pop(L, 1);  /* pop INFLIGHT */
    ur_runtime_drop(ref->rt, ref->job);
    ref->job = NULL;
  }
}


static int jobref_gc (lua_State *L) {
  unref(L, (jobref *)lua_touserdata(L, 1));
  return 0;
}


/* create the registry tables and the job ref metatable; push PENDING */
void ur_require_init (lua_State *L) {
  uv_once(&stdonce, findstd);
  if (luaL_newmetatable(L, JOBREF)) {
    lua_pushcfunction(L, jobref_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);  /* pop metatable */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &INFLIGHT) == LUA_TNIL) {
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &INFLIGHT);
    lua_newtable(L);  /* NOYIELD, weak keys */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NOYIELD);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ERRORS);
  }
  lua_pop(L, 1);  /* pop INFLIGHT or nil */
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
        ar.name != NULL)
      fname = ar.name;
    luaL_error(L, "bad argument #1 to '%s' (string expected, got %s)",
               fname, tname);
  }
  return name;
}


/* append "\n\t" .. the string at the top to the messages; pops it */
static void addmessage (lua_State *L) {
  lua_pushliteral(L, "\n\t");
  lua_rotate(L, -2, 1);
  lua_pushvalue(L, 4);
  lua_rotate(L, -3, 1);
  lua_concat(L, 3);  /* messages .. "\n\t" .. s */
  lua_replace(L, 4);
}


/*
** Build a job of the standard file searchers from 'i' on (at least the
** one at 'i'), reading each one's template list from the 'package'
** table it closes over, as 'findfile' does.  The job belongs to the
** job ref at FRAME from the start.  Returns the index after the run.
*/
static int buildjob (lua_State *L, int i, jobref *ref) {
  ur_job *job = (ur_job *)calloc(1, sizeof(ur_job));
  int kind, oom;
  if (job == NULL) luaL_error(L, "not enough memory");
  ref->job = job;  /* from here on, 'unref' frees it */
  ref->rt = ur_runtime_get(L);
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
    lua_getupvalue(L, -1, 1);  /* push its 'package' */
    lua_getfield(L, -1, kind == UR_STEP_LUA ? "path" : "cpath");
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


static int afterjob (lua_State *L, int next);
static int callloader (lua_State *L);


/*
** 'findloader' from searcher 'i' on.  Ends by calling the loader it
** finds, or by raising "module not found".  May yield.
*/
static int findloader (lua_State *L, int i) {
  const char *name = lua_tostring(L, 1);
  for (;; i++) {
    int next;
    jobref *ref;
    if (lua_rawgeti(L, 3, i) == LUA_TNIL) {  /* no more searchers */
      lua_pop(L, 1);
      return luaL_error(L, "module '%s' not found:%s", name,
                        lua_tostring(L, 4));
    }
    if (stdkind(L, -1) < 0) {  /* a searcher for the Lua thread */
      lua_pushstring(L, name);
      lua_call(L, 1, 2);  /* call it */
      if (lua_isfunction(L, -2))  /* found a loader */
        return callloader(L);
      else if (lua_isstring(L, -2)) {  /* searcher returned a message */
        lua_pop(L, 1);
        addmessage(L);
      }
      else
        lua_pop(L, 2);  /* no message */
      continue;
    }
    lua_pop(L, 1);  /* pop searcher */
    ref = (jobref *)lua_touserdata(L, FRAME);
    next = buildjob(L, i, ref);
    if (canyield(L)) {
      int err = ur_runtime_submit(L, ref->rt, ref->job, 1);
      if (err != 0)
        return luaL_error(L, "uvrequire: cannot submit import: %s",
                          uv_strerror(err));
      lua_rawgetp(L, LUA_REGISTRYINDEX, &INFLIGHT);
      lua_pushvalue(L, FRAME);
      lua_pushthread(L);
      lua_setiuservalue(L, -2, 1);  /* job ref remembers its waiter */
      lua_rawsetp(L, -2, ref->job);  /* INFLIGHT[job] = job ref */
      lua_pop(L, 1);  /* pop INFLIGHT */
      lua_pushlightuserdata(L, (void *)&PENDING);
      return lua_yieldk(L, 1, next, k_job);
    }
    else {
      int err = ur_runtime_submit(L, ref->rt, ref->job, 0);
      if (err != 0)
        return luaL_error(L, "uvrequire: cannot submit import: %s",
                          uv_strerror(err));
      ur_exec_wait(ref->job);
      return afterjob(L, next);
    }
  }
}


/* resumed after yielding for a job: go on if it is done */
static int k_job (lua_State *L, int status, lua_KContext ctx) {
  jobref *ref = (jobref *)lua_touserdata(L, FRAME);
  (void)status;
  lua_settop(L, FRAME);  /* drop whatever the resumer passed */
  if (!ur_exec_isdone(ref->job)) {  /* resumed by someone else: wait on */
    lua_pushlightuserdata(L, (void *)&PENDING);
    return lua_yieldk(L, 1, ctx, k_job);
  }
  return afterjob(L, (int)ctx);
}


/*
** The job at FRAME is done: take its results.  Libraries it opened go
** to _CLIBS; a loader found is pushed and called; a miss adds its
** messages and the search goes on at searcher 'next'.
*/
static int afterjob (lua_State *L, int next) {
  jobref *ref = (jobref *)lua_touserdata(L, FRAME);
  ur_job *job = ref->job;
  int i;
  for (i = 0; i < job->nsteps; i++) {
    if (job->steps[i].lib != NULL) {
      void *lib = job->steps[i].lib;
      job->steps[i].lib = NULL;  /* from here on, _CLIBS owns it */
      ur_clib_keep(L, job->file, lib);
    }
  }
  switch (job->outcome) {
    case UR_RAISE:
      lua_pushlstring(L, job->msg.p, job->msg.n);
      unref(L, ref);
      return lua_error(L);
    case UR_NOTFOUND:
      lua_pushvalue(L, 4);
      lua_pushlstring(L, job->msg.p, job->msg.n);  /* "\n\t"-led */
      lua_concat(L, 2);
      lua_replace(L, 4);  /* messages .= the job's */
      unref(L, ref);
      return findloader(L, next);
    default:  /* UR_FOUND */
      if (job->code == NULL)
        lua_pushcfunction(L, job->open);
      else if (luaL_loadbufferx(L, job->code, job->codelen, job->file, "b")
               != LUA_OK) {
        lua_pushfstring(L, "error loading module '%s' from file '%s':\n\t%s",
                        lua_tostring(L, 1), job->file, lua_tostring(L, -1));
        unref(L, ref);
        return lua_error(L);
      }
      lua_pushstring(L, job->file);  /* loader data */
      unref(L, ref);
      return callloader(L);
  }
}

/* }====================================================== */


/* {======================================================
** Loading
** ======================================================= */

/* stack: ...; loader; loader data.  Run the loader as 'll_require'. */
static int callloader (lua_State *L) {
  lua_rotate(L, -2, 1);  /* function <-> loader data */
  lua_pushvalue(L, 1);  /* name is 1st argument to module loader */
  lua_pushvalue(L, -3);  /* loader data is 2nd argument */
  /* stack: ...; loader data; loader function; mod. name; loader data */
  lua_callk(L, 2, 1, 0, k_loaded);
  return k_loaded(L, LUA_OK, 0);
}


/* stack: ...; loader data; result from loader.  Store and return. */
static int k_loaded (lua_State *L, int status, lua_KContext ctx) {
  const char *name = lua_tostring(L, 1);
  (void)status; (void)ctx;
  if (!lua_isnil(L, -1))  /* non-nil return? */
    lua_setfield(L, 2, name);  /* LOADED[name] = returned value */
  else
    lua_pop(L, 1);  /* pop nil */
  if (lua_getfield(L, 2, name) == LUA_TNIL) {  /* module set no value? */
    lua_pushboolean(L, 1);  /* use true as result */
    lua_copy(L, -1, -2);  /* replace loader result */
    lua_setfield(L, 2, name);  /* LOADED[name] = true */
  }
  if (lua_toboolean(L, lua_upvalueindex(2)))  /* import_module */
    return 1;  /* module result */
  lua_rotate(L, -2, 1);  /* loader data <-> module result */
  return 2;  /* return module result and loader data */
}


/*
** require(name), and uvrequire.import_module(name) (upvalue 2 true:
** one result).  Upvalue 1: the 'package' table, as in loadlib.c.
** The already-loaded path does what stock 'require' does and no more.
*/
static int dorequire (lua_State *L, const char *fname) {
  const char *name = checkname(L, fname);
  lua_settop(L, 1);  /* LOADED table will be at index 2 */
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, 2, name);  /* LOADED[name] */
  if (lua_toboolean(L, -1))  /* is it there? */
    return 1;  /* package is already loaded */
  lua_pop(L, 1);  /* remove 'getfield' result */
  if (lua_getfield(L, lua_upvalueindex(1), "searchers") != LUA_TTABLE)
    return luaL_error(L, "'package.searchers' must be a table");
  lua_pushliteral(L, "");  /* 4: messages */
  lua_newuserdatauv(L, sizeof(jobref), 1);  /* 5: job ref, empty */
  memset(lua_touserdata(L, FRAME), 0, sizeof(jobref));
  luaL_setmetatable(L, JOBREF);
  return findloader(L, 1);
}


int ur_l_require (lua_State *L) {
  return dorequire(L, "require");
}


int ur_l_import_module (lua_State *L) {
  return dorequire(L, "import_module");
}

/* }====================================================== */


/* {======================================================
** Completion and the waiting threads
** ======================================================= */

/* keep the error of a resumed coroutine, with its traceback */
static void keeperror (lua_State *L, lua_State *co) {
  const char *msg = lua_tostring(co, -1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ERRORS);
  luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 1);  /* pop ERRORS */
  lua_resetthread(co);  /* close its pending to-be-closed variables */
}


/*
** Job 'job' is done; on the loop, on the callback thread 'L'.  Resume
** the thread waiting for it, if it still waits: its 'k_job' takes the
** results.  Whatever it yields next is not ours to look at; an error
** it raises has no resumer to go to, so it is kept for 'run'.
*/
void ur_require_done (lua_State *L, ur_job *job) {
  lua_State *co = NULL;
  int nres, status;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &INFLIGHT);
  if (lua_rawgetp(L, -1, job) != LUA_TUSERDATA)
    return;  /* nobody waits */
  if (lua_getiuservalue(L, -1, 1) == LUA_TTHREAD)  /* push waiter */
    co = lua_tothread(L, -1);
  lua_pushnil(L);
  lua_rawsetp(L, -4, job);  /* INFLIGHT[job] = nil */
  if (co == NULL || lua_status(co) != LUA_YIELD)
    return;  /* closed, or running for someone else: 'k_job' copes */
  status = lua_resume(co, L, 0, &nres);
  if (status == LUA_OK || status == LUA_YIELD)
    lua_pop(co, nres);
  else
    keeperror(L, co);
}


/* core.takeerrors(): the errors kept so far, oldest first, as a list */
int ur_l_takeerrors (lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ERRORS);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ERRORS);
  return 1;
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
