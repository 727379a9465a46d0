/*
** stdsearch.c: what uvrequire knows of stock's searchers.  Their C
** functions are static in the Lua library, so they are learnt from a
** scratch state once per process; a searcher in any state is standard
** exactly when its C function is one of them (or one of uvrequire's own,
** searchers.c).  A run of standard file searchers becomes one job.
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"
#include "lualib.h"


/* the standard searchers, found once per process ('findstd') */
static lua_CFunction stdsearcher[4];
static lua_CFunction stdrequire;  /* loadlib.c's 'll_require' */
static uv_once_t stdonce = UV_ONCE_INIT;


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
    lua_getglobal(T, "require");
    stdrequire = lua_tocfunction(T, -1);
  }
  lua_close(T);
}


/* is the function at level 'level' of 'L' stock Lua's 'require'? */
int ur_require_calledbystock (lua_State *L, int level) {
  lua_Debug ar;
  lua_CFunction f;
  if (stdrequire == NULL || !lua_getstack(L, level, &ar) ||
      !lua_getinfo(L, "f", &ar))
    return 0;
  f = lua_tocfunction(L, -1);
  lua_pop(L, 1);
  return f == stdrequire;
}


/* core.stdkind(f): "lua", "c" or "croot" if 'f' is stock's searcher */
int ur_l_stdkind (lua_State *L) {
  static const char *const kinds[] = {"lua", "c", "croot"};
  lua_CFunction f = lua_tocfunction(L, 1);
  int i;
  for (i = 1; i < 4; i++)
    if (f != NULL && f == stdsearcher[i]) {
      lua_pushstring(L, kinds[i - 1]);
      return 1;
    }
  return 0;
}


/* UR_STEP_* of the standard file searcher at 'idx' (stock's or
   uvrequire's own), or -1 */
int ur_std_kind (lua_State *L, int idx) {
  lua_CFunction f = lua_tocfunction(L, idx);
  if (f == NULL) return -1;
  if (f != stdsearcher[1] && f != stdsearcher[2] && f != stdsearcher[3])
    return ur_searchers_kind(L, idx);  /* uvrequire's own, or -1 */
  if (f == stdsearcher[1]) return UR_STEP_LUA;
  if (f == stdsearcher[2]) return UR_STEP_C;
  if (f == stdsearcher[3]) return UR_STEP_CROOT;
  return -1;
}


/* learn the standard searchers, once per process */
void ur_std_init (void) {
  uv_once(&stdonce, findstd);
}


/* is the function at 'idx' stock's preload searcher? */
int ur_std_ispreload (lua_State *L, int idx) {
  return stdsearcher[0] != NULL && lua_tocfunction(L, idx) == stdsearcher[0];
}


/*
** Build a job of the standard file searchers of the table at 'ss' from
** 'i' on (at least the one at 'i'), for the module named at index 1,
** reading each one's template list from the 'package' table it closes
** over, as 'findfile' does.  The job belongs to the load record from the
** start.  Returns the index after the run.
*/
int ur_std_buildjob (lua_State *L, int ss, int i, ur_load *ld) {
  ur_job *job = (ur_job *)calloc(1, sizeof(ur_job));
  int kind, oom;
  ss = lua_absindex(L, ss);
  if (job == NULL) luaL_error(L, "not enough memory");
  ld->job = job;  /* from here on, the load record frees it */
  ld->rt = ur_runtime_get(L);
  job->owner = ld->rt;
  job->name = strdup(lua_tostring(L, 1));
  oom = (job->name == NULL);
  while (job->nsteps < UR_MAXSTEPS) {
    ur_step *s = &job->steps[job->nsteps];
    const char *path;
    lua_rawgeti(L, ss, i);  /* push searcher */
    if ((kind = ur_std_kind(L, -1)) < 0) {
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
    if (lua_getupvalue(L, -1, 1) == NULL)  /* push its 'package' */
      lua_pushnil(L);
    lua_pushstring(L, kind == UR_STEP_LUA ? "path" : "cpath");
    if (job->nsteps > 0 &&
        (!lua_istable(L, -2) || lua_rawget(L, -2) != LUA_TSTRING)) {
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
