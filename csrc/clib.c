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


/* append the dynamic linker's message to 'err' */
static void adddlerror (ur_buf *err) {
  const char *msg = dlerror();
  ur_buf_adds(err, msg ? msg : "unknown dynamic linker error");
}


/*
** Look up "luaopen_" .. the first 'len' bytes of 'modname' in 'lib'.
** Returns 0 with the function in '*open', UR_ERRFUNC with the linker's
** message in 'err' (replacing what it held), or UR_ERRMEM.
*/
static int lookfor (void *lib, const char *modname, size_t len,
                    lua_CFunction *open, ur_buf *err) {
  ur_buf sym = {NULL, 0, 0, 0};
  void *p = NULL;
  ur_buf_adds(&sym, POF);
  ur_buf_add(&sym, modname, len);
  if (sym.oom) {
    ur_buf_free(&sym);
    return UR_ERRMEM;
  }
  p = dlsym(lib, sym.p);
  ur_buf_free(&sym);
  if (p == NULL) {
    err->n = 0;
    adddlerror(err);
    return UR_ERRFUNC;
  }
  *open = tofunc(p);
  return 0;
}


/*
** Open library 'file' (RTLD_NOW | RTLD_LOCAL) and find the open
** function of module 'name', as loadlib.c's 'loadfunc' does: dots
** become underscores; for "a.b-v2" try luaopen_a_b, and only if that
** symbol is missing, luaopen_v2.  Returns 0, UR_ERRLIB (dlopen failed),
** UR_ERRFUNC (no symbol: '*lib' stays open) or UR_ERRMEM (out of
** memory: '*lib' is NULL); 'err' gets the dynamic linker's message.
** Runs on an executor thread ('dlerror' is per thread).
*/
int ur_clib_load (const char *file, const char *name, void **lib,
                  lua_CFunction *open, ur_buf *err) {
  char *modname, *p, *mark;
  int stat;
  *open = NULL;
  *lib = dlopen(file, RTLD_NOW | RTLD_LOCAL);
  if (*lib == NULL) {
    adddlerror(err);
    return UR_ERRLIB;
  }
  if ((modname = strdup(name)) == NULL)
    stat = UR_ERRMEM;
  else {
    for (p = modname; *p; p++)
      if (*p == '.') *p = '_';
    mark = strchr(modname, IGMARK);
    if (mark != NULL) {
      stat = lookfor(*lib, modname, (size_t)(mark - modname), open, err);
      p = mark + 1;  /* if missing, the old-style name */
    }
    else {
      stat = UR_ERRFUNC;
      p = modname;
    }
    if (stat == UR_ERRFUNC)
      stat = lookfor(*lib, p, strlen(p), open, err);
    free(modname);
  }
  if (stat == UR_ERRMEM || (stat != 0 && err->oom)) {  /* message lost */
    dlclose(*lib);
    *lib = NULL;
    *open = NULL;
    stat = UR_ERRMEM;
  }
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
