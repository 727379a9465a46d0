/*
** searchers.c: stock's file searchers (searcher_Lua, searcher_C and
** searcher_Croot of loadlib.c) as functions that any code may call, and
** that use the executor when called in a task.  'install' puts them in
** package.searchers in place of stock's.
**
** 'require' itself never calls them: it recognises them, as stock's,
** and batches them into one job (drive.c).  They matter when Lua
** code calls them: luarocks.loader's searcher, for one, picks a rock
** and then calls the standard searchers itself.  Called where the
** caller may not wait by yielding, they run in place, exactly as stock;
** in a task (a user searcher is called yieldably there), the search and
** compile go to the executor while the task yields.
**
** Each call owns its job through a box, a to-be-closed userdata on its
** stack: however the call ends (return, error, coroutine closed), the
** box releases the job.
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"


#define BOX  "uvrequire.searchjob"


/* {======================================================
** The job box
** ======================================================= */

typedef struct box {
  ur_job *job;
  ur_runtime *rt;       /* runtime the job was submitted to, or NULL */
} box;


/* release the job of the box at 'idx' (any time; idempotent) */
static void release (box *b) {
  if (b->job == NULL) return;
  if (b->rt != NULL) ur_runtime_drop(b->rt, b->job);
  else ur_job_free(b->job);
  b->job = NULL;
}


static int box_close (lua_State *L) {
  release((box *)lua_touserdata(L, 1));
  return 0;
}


/* push a new, empty box, to-be-closed */
static box *newbox (lua_State *L) {
  box *b = (box *)lua_newuserdatauv(L, sizeof(box), 0);
  b->job = NULL;
  b->rt = NULL;
  if (luaL_newmetatable(L, BOX)) {
    lua_pushcfunction(L, box_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, box_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  return b;
}

/* }====================================================== */


/* {======================================================
** The searchers
** ======================================================= */

/*
** The job of the box at 2 is done: return what stock's searcher
** returns.  A loader and its data (the file), a message, nothing (Croot
** for a root name), or an error.
*/
static int finish (lua_State *L) {
  box *b = (box *)lua_touserdata(L, 2);
  ur_job *job = b->job;
  ur_step *s = &job->steps[0];
  if (job->msg.oom) {  /* even its message was lost */
    release(b);
    return luaL_error(L, "not enough memory");
  }
  if (job->outcome == UR_RAISE) {
    lua_pushlstring(L, job->msg.p, job->msg.n);
    release(b);
    return lua_error(L);
  }
  if (job->outcome == UR_NOTFOUND) {
    if (job->msg.n < 2) return 0;  /* Croot, root name: nothing */
    lua_pushlstring(L, job->msg.p + 2, job->msg.n - 2);  /* no "\n\t" */
    return 1;
  }
  if (s->lib != NULL) {  /* a library opened for it: to _CLIBS */
    void *lib = s->lib;
    s->lib = NULL;
    if (!ur_clib_keep(L, s->libfile ? s->libfile : job->file, lib)) {
      release(b);
      return lua_error(L);
    }
  }
  if (s->kind != UR_STEP_LUA)
    lua_pushcfunction(L, job->open);
  else if (ur_job_load(L, job) != LUA_OK) {
    lua_pushfstring(L, "error loading module '%s' from file '%s':\n\t%s",
                    lua_tostring(L, 1), job->file, lua_tostring(L, -1));
    release(b);
    return lua_error(L);
  }
  lua_pushstring(L, job->file);
  return 2;
}


static int k_search (lua_State *L, int status, lua_KContext ctx);


/* wait by yielding for the job of the box at 2 */
static int waitjob (lua_State *L) {
  box *b = (box *)lua_touserdata(L, 2);
  lua_Integer tok = ur_sched_token(L);
  ur_sched_wait(L, tok, 0);
  b->job->token = tok;
  if (ur_exec_isdone(b->job)) ur_sched_ready(L, tok);
  ur_sched_pushpending(L);
  return lua_yieldk(L, 1, (lua_KContext)tok, k_search);
}


/* resumed: a cancelled wait raises; a job done finishes; else wait on */
static int k_search (lua_State *L, int status, lua_KContext ctx) {
  box *b = (box *)lua_touserdata(L, 2);
  (void)status;
  lua_settop(L, 2);
  ur_sched_consume(L, (lua_Integer)ctx);
  if (ur_sched_takecancel(L)) {
    release(b);
    return lua_error(L);
  }
  if (ur_exec_isdone(b->job))
    return finish(L);
  return waitjob(L);
}


/*
** searcher(name): upvalue 1 is the 'package' table (as stock's), upvalue
** 2 the kind (UR_STEP_*).  Stack: 1 name, 2 box.
*/
static int searcher (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
  box *b;
  ur_job *job;
  ur_step *s;
  lua_settop(L, 1);
  b = newbox(L);  /* 2 */
  if ((job = (ur_job *)calloc(1, sizeof(ur_job))) == NULL)
    return luaL_error(L, "not enough memory");
  b->job = job;
  if ((job->name = strdup(name)) == NULL)
    return luaL_error(L, "not enough memory");
  job->nsteps = 1;
  s = &job->steps[0];
  s->kind = kind;
  if (kind != UR_STEP_CROOT || strchr(name, '.') != NULL) {
    const char *path;  /* as 'findfile': metamethods and all */
    lua_getfield(L, lua_upvalueindex(1),
                 kind == UR_STEP_LUA ? "path" : "cpath");
    if ((path = lua_tostring(L, -1)) != NULL &&
        (s->path = strdup(path)) == NULL)
      return luaL_error(L, "not enough memory");
    lua_pop(L, 1);
  }
  if (ur_sched_cansuspend(L)) {
    ur_runtime *rt = ur_runtime_get(L);
    ur_runtime_loop(L, rt);
    if (ur_runtime_submit(L, rt, job) == 0) {
      b->rt = rt;
      return waitjob(L);
    }
  }
  job->inplace = 1;  /* where it cannot wait: as stock */
  ur_job_run(job, NULL);
  return finish(L);
}


/*
** core.searchers(package): the three searchers, over 'package' as
** stock's are: a table { lua = f, c = f, croot = f }.
*/
static int l_searchers (lua_State *L) {
  static const char *const names[] = {"lua", "c", "croot"};
  static const int kinds[] = {UR_STEP_LUA, UR_STEP_C, UR_STEP_CROOT};
  int i;
  luaL_checkany(L, 1);
  lua_createtable(L, 0, 3);
  for (i = 0; i < 3; i++) {
    lua_pushvalue(L, 1);
    lua_pushinteger(L, kinds[i]);
    lua_pushcclosure(L, searcher, 2);
    lua_setfield(L, -2, names[i]);
  }
  return 1;
}


/* UR_STEP_* of the function at 'idx' if it is one of these, else -1 */
int ur_searchers_kind (lua_State *L, int idx) {
  int kind;
  if (lua_tocfunction(L, idx) != searcher) return -1;
  lua_getupvalue(L, idx, 2);
  kind = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return kind;
}


/* add 'searchers' to the table at the top */
void ur_searchers_register (lua_State *L) {
  lua_pushcfunction(L, l_searchers);
  lua_setfield(L, -2, "searchers");
}

/* }====================================================== */
