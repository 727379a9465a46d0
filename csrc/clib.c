/*
** clib.c: C modules.  The executor opens the library and finds its
** open function ('ur_clib_load'); the Lua thread keeps the handle in
** registry._CLIBS ('ur_clib_keep'), the very table loadlib.c uses, so
** 'package.loadlib' sees the same libraries and Lua closes them, newest
** first, when the state closes.
*/

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "ur.h"


#define CLIBS     "_CLIBS"      /* registry key, as in loadlib.c */
#define POF       "luaopen_"    /* prefix of open functions */
#define IGMARK    '-'           /* ignore mark (hyphen rule) */


/* function pointer from 'dlsym' (POSIX guarantees the cast works) */
static lua_CFunction tofunc (void *p) {
  lua_CFunction f;
  memcpy(&f, &p, sizeof(f));
  return f;
}


/* look up "luaopen_" .. the first 'len' bytes of 'modname' */
static lua_CFunction lookfor (void *lib, const char *modname, size_t len,
                              ur_buf *err) {
  ur_buf sym = {NULL, 0, 0, 0};
  void *p = NULL;
  ur_buf_adds(&sym, POF);
  ur_buf_add(&sym, modname, len);
  if (sym.oom)
    ur_buf_adds(err, "not enough memory");
  else {
    p = dlsym(lib, sym.p);
    if (p == NULL) {
      err->n = 0;
      ur_buf_adds(err, dlerror());
    }
  }
  ur_buf_free(&sym);
  return p ? tofunc(p) : NULL;
}


/*
** Open library 'file' (RTLD_NOW | RTLD_LOCAL) and find the open
** function of module 'name', as loadlib.c's 'loadfunc' does: dots
** become underscores; for "a.b-v2" try luaopen_a_b, and only if that
** symbol is missing, luaopen_v2.  Returns 0, UR_ERRLIB (dlopen failed)
** or UR_ERRFUNC (no symbol: '*lib' stays open); 'err' gets the
** dynamic linker's message.  Runs on an executor thread ('dlerror' is
** per thread).
*/
int ur_clib_load (const char *file, const char *name, void **lib,
                  lua_CFunction *open, ur_buf *err) {
  char *modname = strdup(name), *p, *mark;
  int stat = 0;
  *lib = dlopen(file, RTLD_NOW | RTLD_LOCAL);
  if (*lib == NULL) {
    ur_buf_adds(err, dlerror());
    free(modname);
    return UR_ERRLIB;
  }
  if (modname == NULL) {
    ur_buf_adds(err, "not enough memory");
    return UR_ERRFUNC;
  }
  for (p = modname; *p; p++)
    if (*p == '.') *p = '_';
  mark = strchr(modname, IGMARK);
  *open = NULL;
  if (mark != NULL) {
    *open = lookfor(*lib, modname, (size_t)(mark - modname), err);
    p = mark + 1;  /* if missing, the old-style name */
  }
  else
    p = modname;
  if (*open == NULL)
    *open = lookfor(*lib, p, strlen(p), err);
  if (*open == NULL) stat = UR_ERRFUNC;
  free(modname);
  return stat;
}


void ur_clib_close (void *lib) {
  dlclose(lib);
}


/*
** Keep 'lib' opened from 'file' for the life of the state:
** _CLIBS[file] = lib and _CLIBS[#_CLIBS + 1] = lib, as 'addtoclib'.
** If _CLIBS already holds that file, drop the extra reference.
** Returns 1 (stack: net zero); or, if _CLIBS is no table, closes 'lib'
** and returns 0 with the error stock's 'checkclib' raises pushed.
*/
int ur_clib_keep (lua_State *L, const char *file, void *lib) {
  lua_getfield(L, LUA_REGISTRYINDEX, CLIBS);  /* push _CLIBS */
  if (!lua_istable(L, -1)) {  /* stock's 'checkclib' would index it: */
    dlclose(lib);
    lua_pushfstring(L, "attempt to index a %s value", luaL_typename(L, -1));
    lua_remove(L, -2);
    return 0;  /* its error, pushed */
  }
  if (lua_getfield(L, -1, file) != LUA_TNIL) {  /* push _CLIBS[file] */
    lua_pop(L, 2);  /* pop it and _CLIBS */
    dlclose(lib);  /* dlopen counted one more reference */
    return 1;
  }
  lua_pop(L, 1);  /* pop nil */
  lua_pushlightuserdata(L, lib);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, file);  /* _CLIBS[file] = lib; pops a copy */
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);  /* pops lib */
  lua_pop(L, 1);  /* pop _CLIBS */
  return 1;
}
