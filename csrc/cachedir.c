/*
** cachedir.c: where the bytecode cache (cache.c) is, and its Lua
** functions 'setcache' and 'cachestats'.
**
** Where: one directory per process, set on the Lua thread (set before
** use: workers only load its pointer, atomically; every setting made is
** kept for the life of the process, so a worker may hold an old one).
** By default $UVREQUIRE_CACHE (a directory, or "off"), else
** $XDG_CACHE_HOME/uvrequire, else $HOME/.cache/uvrequire.  It is made
** on the first write, with its missing parents, each 0700, never inside
** a directory that another user (but root) owns.  A directory
** or an entry that another user owns, or that its group or others may
** write, is neither read nor written; entries are opened O_NOFOLLOW.
*/

#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ur.h"


/*
** Make directory 's' (0700) if it is missing, and only inside a parent
** owned by this user or by root: never in another user's directory (a
** root process run with another user's $HOME must not make that user's
** ~/.cache its own).  0: 's' is not there and was not made.
*/
static int makedir (char *s) {
  struct stat st;
  char *slash = strrchr(s, '/');
  int ok;
  if (stat(s, &st) == 0) return 1;  /* (the open that follows checks) */
  if (slash == NULL) return 0;  /* (paths are absolute) */
  if (slash == s) ok = stat("/", &st) == 0;
  else {
    *slash = '\0';
    ok = stat(s, &st) == 0;
    *slash = '/';
  }
  if (!ok || (st.st_uid != geteuid() && st.st_uid != 0)) return 0;
  return mkdir(s, 0700) == 0 || errno == EEXIST;
}


/* see ur.h: 'mkdir -p dir', as 'makedir' makes each (errors are
   ignored: the open that follows tells) */
void ur_cache_makedirs (const char *dir) {
  char *p, *s = strdup(dir);
  int made = 1;
  if (s == NULL) return;
  for (p = s + 1; *p != '\0' && made; p++) {
    if (*p == '/' && p[-1] != '/') {
      *p = '\0';
      made = makedir(s);
      *p = '/';
    }
  }
  if (made) (void)makedir(s);
  free(s);
}



/* {======================================================
** Settings
** ======================================================= */

typedef struct Dir {
  struct Dir *prev;     /* every setting ever made */
  char path[1];         /* (allocated to its length) */
} Dir;

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t setlock;     /* guards setters (Lua threads) */
static int configured;         /* (setlock) the default is set */
static const char *dflt;       /* (setlock) the default's Dir path, or
                                  NULL: off by default */
static Dir *dirs;              /* (setlock) settings kept */
static const char *current;    /* atomic: directory in use, or NULL */


/* make 'setlock' (once per process) */
static void initlock (void) {
  if (uv_mutex_init(&setlock) != 0) abort();  /* cannot fail on Linux */
}


/* the directory in use, or NULL: off (any thread) */
const char *ur_cache_dir (void) {
  return __atomic_load_n(&current, __ATOMIC_ACQUIRE);
}


/*
** 'a' .. "/" .. 'b' as a malloc'ed string ('b' alone if 'a' is NULL),
** or NULL (no memory).
*/
static char *joinpath (const char *a, const char *b) {
  size_t la = a ? strlen(a) : 0, lb = strlen(b);
  char *p = (char *)malloc(la + lb + 2);
  if (p == NULL) return NULL;
  if (a != NULL) {
    memcpy(p, a, la);
    p[la++] = '/';
  }
  memcpy(p + la, b, lb + 1);
  return p;
}


/* 'path' made absolute against the working directory (malloc'ed), or
   NULL */
char *ur_cache_absolute (const char *path) {
  char *cwd, *p;
  if (path[0] == '/') return strdup(path);
  if ((cwd = getcwd(NULL, 0)) == NULL) return NULL;
  p = joinpath(cwd, path);
  free(cwd);
  return p;
}


/*
** The default directory (malloc'ed), from the environment: NULL if the
** cache is off, or if no directory can be named (or no memory).  Read
** once, when the first state registers: a relative $UVREQUIRE_CACHE
** is made absolute then.
*/
static char *defaultdir (void) {
  const char *env = getenv("UVREQUIRE_CACHE");
  if (env != NULL && *env != '\0')
    return strcmp(env, "off") == 0 ? NULL : ur_cache_absolute(env);
  env = getenv("XDG_CACHE_HOME");
  if (env != NULL && env[0] == '/')  /* relative ones are invalid */
    return joinpath(env, "uvrequire");
  env = getenv("HOME");
  if (env != NULL && env[0] == '/')  /* (a relative one would follow
                                         the working directory) */
    return joinpath(env, ".cache/uvrequire");
  return NULL;
}


/* was the cache turned off in the environment (UVREQUIRE_CACHE=off),
   as read at start?  (setlock) */
static int off;


/* is the cache turned off in the environment? */
static int envoff (void) {
  int o;
  uv_mutex_lock(&setlock);
  o = off;
  uv_mutex_unlock(&setlock);
  return o;
}


/*
** Make 'path' (malloc'ed, or NULL: off) the directory in use, keeping
** it for good (setlock held): a directory set before is taken again
** from the settings kept, so that switching between a few costs no
** memory.  Returns 0 if out of memory (the setting is then unchanged).
*/
static int setdir (char *path) {
  Dir *d;
  if (path == NULL) {
    __atomic_store_n(&current, NULL, __ATOMIC_RELEASE);
    return 1;
  }
  for (d = dirs; d != NULL && strcmp(d->path, path) != 0; d = d->prev) ;
  if (d == NULL) {  /* a new one */
    if ((d = (Dir *)malloc(sizeof(Dir) + strlen(path))) == NULL) {
      free(path);
      return 0;
    }
    strcpy(d->path, path);
    d->prev = dirs;
    dirs = d;
  }
  free(path);
  __atomic_store_n(&current, d->path, __ATOMIC_RELEASE);
  return 1;
}


/*
** core.setcache(false | true | dir): turn the cache off, back to its
** default (the environment's choice, as read when the first state
** registered), or to directory 'dir' (relative to the working
** directory now) unless UVREQUIRE_CACHE=off.  Returns the directory now
** in use, or false.
*/
static int l_setcache (lua_State *L) {
  char *path = NULL;
  int ok, dodefault = 0;
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *dir = lua_tolstring(L, 1, &len);
    luaL_argcheck(L, len > 0, 1, "empty directory name");
    luaL_argcheck(L, strlen(dir) == len, 1,
                  "directory name contains a '\\0'");
    path = envoff() ? NULL : ur_cache_absolute(dir);
    if (path == NULL && !envoff())
      return luaL_error(L, "cannot make '%s' an absolute path", dir);
  }
  else {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    dodefault = lua_toboolean(L, 1);
  }
  uv_mutex_lock(&setlock);
  if (dodefault && dflt != NULL && (path = strdup(dflt)) == NULL)
    ok = 0;
  else
    ok = setdir(path);
  uv_mutex_unlock(&setlock);
  if (!ok) return luaL_error(L, "not enough memory");
  if (ur_cache_dir() != NULL) lua_pushstring(L, ur_cache_dir());
  else lua_pushboolean(L, 0);
  return 1;
}


/* core.cachestats(): { hits, misses, writes, dir = dir or false,
   kept = the directories set so far, each kept once } */
static int l_cachestats (lua_State *L) {
  unsigned long hits, misses, writes;
  lua_Integer kept = 0;
  Dir *d;
  ur_exec_flush();  /* entries on their way count as written */
  ur_cache_counts(&hits, &misses, &writes);
  uv_mutex_lock(&setlock);
  for (d = dirs; d != NULL; d = d->prev) kept++;
  uv_mutex_unlock(&setlock);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, kept);
  lua_setfield(L, -2, "kept");
  lua_pushinteger(L, (lua_Integer)hits);
  lua_setfield(L, -2, "hits");
  lua_pushinteger(L, (lua_Integer)misses);
  lua_setfield(L, -2, "misses");
  lua_pushinteger(L, (lua_Integer)writes);
  lua_setfield(L, -2, "writes");
  if (ur_cache_dir() != NULL) lua_pushstring(L, ur_cache_dir());
  else lua_pushboolean(L, 0);
  lua_setfield(L, -2, "dir");
  return 1;
}


/* __gc of the state's flush sentinel: entries are written before the
   state is gone (a program that ends by closing its state leaves its
   cache whole, and no temporary file behind) */
static int flush_gc (lua_State *L) {
  (void)L;
  ur_exec_flush();
  return 0;
}


static const char FLUSHKEY = 'f';  /* registry: the flush sentinel */


/*
** Add 'setcache' and 'cachestats' to the table at the top; the first
** time, set the directory from the environment and 'refhdr' (cache.c)
** from a dump by 'L'.
*/
void ur_cache_register (lua_State *L) {
  uv_once(&once, initlock);
  uv_mutex_lock(&setlock);
  ur_cache_setrefhdr(L);
  if (!configured) {  /* out of memory: off, and tried again next time */
    const char *env = getenv("UVREQUIRE_CACHE");
    off = env != NULL && strcmp(env, "off") == 0;
    configured = setdir(defaultdir());
    dflt = configured ? ur_cache_dir() : NULL;
  }
  uv_mutex_unlock(&setlock);
  lua_pushcfunction(L, l_setcache);
  lua_setfield(L, -2, "setcache");
  lua_pushcfunction(L, l_cachestats);
  lua_setfield(L, -2, "cachestats");
  lua_newuserdatauv(L, 0, 0);  /* the flush sentinel */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, flush_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &FLUSHKEY);  /* pops it */
}

/* }====================================================== */
