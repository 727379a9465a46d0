/*
** prefetch.c: search for and compile, ahead, the Lua modules that a
** module's source passes to 'require' as a literal (compile.c finds
** them), while its body runs; the later 'require' adopts the job.
** Every load starts prefetches, and any load adopts them.  What a
** finished prefetch found is prefetched in turn (pfsweep.c), so the
** executor goes ahead through the whole graph; its queue runs them depth
** first (executor.c).
**
** Only the standard Lua searcher's work is done ahead (search
** 'package.path', read, compile): no C searcher, so no dlopen; no
** body, ever.  Only when 'package.searchers' starts with stock's
** preload searcher and the standard Lua searcher: any other searcher
** could answer first, and differently.  A prefetch job has no waiter
** and no completion signal: it is no import in flight (it keeps no
** loop alive, and 'loopinfo' does not count it) until a 'require'
** adopts it, and then it is that require's job, exactly as if
** submitted then.  A 'require' adopts it only if 'package.path' is
** the very string the prefetch searched.
**
** PREFETCH (the uservalue of the state's prefetch record, in the
** registry): name -> entry, a userdata owning the job (its __gc
** releases it), with the path searched as its uservalue (CUT, the
** second: pfsweep.c).  Bounds, checked whenever a prefetch starts: at
** most MAXNAMES entries (no more start beyond, but a finished one nobody
** adopted for STALE loads may go), and the bytecode of the finished
** ones under 'budget' bytes (the oldest go first).  An entry that a
** sweep holds is busy: nobody adopts or frees its job until it lets go.
*/

#include <stdlib.h>
#include <string.h>

#include "prefetch.h"


#define BUDGET       (32 * 1024 * 1024)  /* bytes of bytecode held */


const char ur_pf_key = 'p';  /* registry: the prefetch record */
static const char PFMETA = 'm';  /* registry: the entries' metatable */


static int entry_gc (lua_State *L) {
  pfentry *e = (pfentry *)lua_touserdata(L, 1);
  if (e->job != NULL) {
    ur_exec_release(e->job);  /* (no completion signal to detach) */
    e->job = NULL;
  }
  return 0;
}


/* push the metatable of the entries (made on first use: may raise) */
static void pushentrymeta (lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &PFMETA) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, entry_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &PFMETA);  /* pops the copy */
}


/* push a new entry, with no job yet (may raise: memory) */
pfentry *ur_pf_newentry (lua_State *L, pfstate *pf) {
  pfentry *e = (pfentry *)lua_newuserdatauv(L, sizeof(*e), 1);
  memset(e, 0, sizeof(*e));
  e->seq = ++pf->seq;
  e->stamp = pf->loads;
  pushentrymeta(L);
  lua_setmetatable(L, -2);
  return e;
}


/* push PREFETCH; return the record (created on first use: may raise) */
pfstate *ur_pf_get (lua_State *L) {
  pfstate *pf;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ur_pf_key) == LUA_TUSERDATA) {
    pf = (pfstate *)lua_touserdata(L, -1);
    lua_getiuservalue(L, -1, 1);
    lua_remove(L, -2);
    return pf;
  }
  lua_pop(L, 1);
  pf = (pfstate *)lua_newuserdatauv(L, sizeof(*pf), 2);
  memset(pf, 0, sizeof(*pf));
  pf->on = 1;
  pf->budget = BUDGET;
  {
    const char *env = getenv("UVREQUIRE_PREFETCH");
    const char *b = getenv("UVREQUIRE_PREFETCH_BUDGET");
    if (env != NULL && strcmp(env, "off") == 0) pf->on = 0;
    if (b != NULL && *b != '\0') {
      char *end;
      unsigned long long v = strtoull(b, &end, 10);
      if (*end == '\0') pf->budget = (size_t)v;
    }
  }
  lua_newtable(L);  /* CUT */
  lua_setiuservalue(L, -2, 2);
  lua_newtable(L);  /* PREFETCH */
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, -3, 1);
  lua_rotate(L, -2, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ur_pf_key);  /* pops the record */
  return pf;
}


/* drop the entry of 'name' (key at the top, popped) from PREFETCH at
   't', releasing its job now (a busy one's: at its __gc, once the
   sweep that holds it lets go) */
static void dropentry (lua_State *L, int t, pfstate *pf) {
  pfentry *e;
  t = lua_absindex(L, t);
  lua_pushvalue(L, -1);
  lua_rawget(L, t);
  e = (pfentry *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_rawset(L, t);  /* pops the key */
  if (e != NULL) pf->n--;
  if (e != NULL && e->busy)
    e->gone = 1;  /* (the sweep releases its job: pfsweep.c) */
  else if (e != NULL && e->job != NULL) {
    ur_exec_release(e->job);
    e->job = NULL;
    pf->dropped++;
  }
}


/*
** Push the name of the oldest finished entry of PREFETCH at 't' that no
** sweep holds, or nil; return that entry (NULL if none), and set
** '*bytes' to the bytecode that such entries hold.
*/
static pfentry *oldestdone (lua_State *L, int t, size_t *bytes) {
  pfentry *oldest = NULL;
  t = lua_absindex(L, t);
  *bytes = 0;
  lua_pushnil(L);  /* the oldest's name */
  lua_pushnil(L);
  while (lua_next(L, t)) {
    pfentry *e = (pfentry *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (e->job == NULL || e->busy || !ur_exec_isdone(e->job)) continue;
    *bytes += e->job->codelen;
    if (oldest == NULL || e->seq < oldest->seq) {
      oldest = e;
      lua_pushvalue(L, -1);
      lua_replace(L, -3);
    }
  }
  return oldest;
}


/*
** PREFETCH (at 3) is full: drop its oldest finished entry if it is
** stale (a name in a function never called, or in a string, a module
** never found: nobody adopts them, and only adoptions made room).
** Returns 1 if one went.  A look at every entry, only when 'maybestale'.
*/
static int dropstale (lua_State *L, pfstate *pf) {
  size_t bytes;
  pfentry *e;
  if (!maybestale(pf)) return 0;
  e = oldestdone(L, 3, &bytes);
  pf->low = e != NULL ? e->stamp : pf->loads;  /* (none older: no look
                                                  until the clock is on) */
  if (e == NULL || pf->loads - e->stamp <= STALE) {
    lua_pop(L, 1);
    return 0;
  }
  dropentry(L, 3, pf);  /* pops the name */
  return 1;
}


/* keep the bytecode that PREFETCH at 't' holds within the budget:
   the oldest finished entries go first.  The executor's count of every
   state's held bytes bounds this state's: under the budget, no entry
   needs a look */
static void trimbytes (lua_State *L, int t, pfstate *pf) {
  size_t bytes;
  if (ur_exec_pfheld() <= pf->budget) return;
  while (oldestdone(L, t, &bytes) != NULL && bytes > pf->budget)
    dropentry(L, t, pf);  /* pops the name */
  lua_pop(L, 1);
}


/*
** Do the searchers at 'ss' allow prefetch: stock's preload searcher,
** then the standard Lua searcher?  If so push the latter's 'package'
** table and return 1; else push nothing and return 0.
*/
int ur_pf_allowed (lua_State *L, int ss) {
  int ok;
  lua_rawgeti(L, ss, 1);
  ok = ur_std_ispreload(L, -1);
  lua_pop(L, 1);
  if (!ok) return 0;
  lua_rawgeti(L, ss, 2);
  if (ur_std_kind(L, -1) != UR_STEP_LUA ||
      lua_getupvalue(L, -1, 1) == NULL) {
    lua_pop(L, 1);
    return 0;
  }
  lua_remove(L, -2);  /* remove the searcher */
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}


/* is 'name' taken (loaded, loading, preloaded, prefetched)?  Stack:
   LOADED, LOADING, preload (or nil), PREFETCH at 'base'..'base'+3 */
static int taken (lua_State *L, int base, const char *name) {
  int i, t = LUA_TNIL;
  lua_pushstring(L, name);  /* made once, for the four looks */
  for (i = 0; i < 4 && t == LUA_TNIL; i++) {
    if (!lua_istable(L, base + i)) continue;
    lua_pushvalue(L, -1);
    t = lua_rawget(L, base + i);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* pop the name */
  return t != LUA_TNIL;
}


/*
** Start a prefetch for each name that 'job' found, from its name
** 'from' on, that nobody has yet, while PREFETCH (at 3) has room.
** Stack as 'startall' (pfsweep.c) sets it up: 5 the path; LOADED,
** LOADING, preload (or nil), PREFETCH at 'base'.  Returns the first
** name not seen to: 'job->nprefetch' if none is left, less if PREFETCH
** filled up.
*/
int ur_pf_startnames (lua_State *L, pfstate *pf, ur_job *job, int from,
                      int base, int spare) {
  const char *path = lua_tostring(L, 5);
  const void *owner = ur_runtime_get(L);
  int i;
  pf->owner = owner;  /* (for 'ur_prefetch_sweep': it cannot allocate) */
  for (i = from; i < job->nprefetch; i++) {
    const char *name = job->prefetch[i];
    ur_job *pj;
    pfentry *e;
    if (!pf->on) return i;  /* (a __gc turned it off) */
    if (taken(L, base, name)) continue;
    if (pf->n >= MAXNAMES && !dropstale(L, pf))
      return i;  /* full: the adopted make room */
    trimbytes(L, 3, pf);  /* room for one more: the oldest go first */
    e = ur_pf_newentry(L, pf);
    lua_pushvalue(L, 5);
    lua_setiuservalue(L, -2, 1);  /* the path searched */
    if (!pf->on) {  /* (a __gc turned it off: what came before allocates) */
      lua_pop(L, 1);
      return i;
    }
    if ((pj = (ur_job *)calloc(1, sizeof(ur_job))) == NULL)
      luaL_error(L, "not enough memory");
    pj->name = strdup(name);
    pj->steps[0].path = strdup(path);
    pj->nsteps = 1;  /* (steps[0].kind: UR_STEP_LUA) */
    pj->scan = pj->isprefetch = pj->nowait = 1;
    pj->owner = owner;  /* (only its own Lua thread helps) */
    pj->sparecore = spare;
    pj->pkeylen = job->pkeylen;  /* its key: the parent's, then i */
    memcpy(pj->pkey, job->pkey, (size_t)job->pkeylen);
    if (pj->pkeylen < UR_PKEYLEN)
      pj->pkey[pj->pkeylen++] = (unsigned char)(i < 255 ? i + 1 : 255);
    if (pj->name == NULL || pj->steps[0].path == NULL ||
        ur_exec_submit(pj) != 0) {
      ur_job_free(pj);
      luaL_error(L, "not enough memory");
    }
    e->job = pj;  /* from here on, the entry releases it */
    pf->submitted++;
    lua_setfield(L, 3, name);  /* PREFETCH[name] = entry */
    pf->n++;
    if (!pf->on) {  /* (turned off by a __gc as it went in) */
      lua_pushstring(L, name);
      dropentry(L, 3, pf);
    }
  }
  return i;
}


/* is prefetch on in this state?  (may raise: memory) */
int ur_prefetch_on (lua_State *L) {
  int on = ur_pf_get(L)->on;
  lua_pop(L, 1);
  return on;
}


/*
** May the prefetched 'job' stand for what a search would find now?  One
** not done yet reads now.  A done one only if it found a file that is
** still the one it read: the file may have been edited or replaced
** since, or the working directory changed (one 'stat' on the Lua
** thread, far less than the search it saves; a FIFO or any file not
** regular is taken as read, which it cannot be twice).  One that found
** nothing, or failed, is never taken: the module may be there by now.
*/
static int current (ur_job *job, const char *path) {
  if (!ur_exec_isdone(job)) return 1;
  return job->outcome == UR_FOUND && (!job->src.set || ur_src_same(job)) &&
         !ur_src_earlier(job->name, path, job->file);
}


/*
** 'findloader' built 'job' from searcher 'i' of the table at 'ss' on:
** if a prefetch of its module searched the same path with the standard
** Lua searcher at 2 (after stock's preload searcher), return that job
** (the caller's now, with only the Lua step) and forget the entry; else
** NULL.  An entry for a path no longer current, or whose job is not
** ('current'), is dropped, and so is one
** that a sweep holds (a __gc's 'require' during the sweep: the sweep
** reads its job, and releases it once done) or any while prefetch is
** off (a __gc turned it off during a sweep).
*/
ur_job *ur_prefetch_take (lua_State *L, int ss, int i, ur_job *job) {
  pfstate *pf;
  pfentry *e;
  ur_job *pj = NULL;
  if (i != 2 || job->nsteps == 0 || job->steps[0].kind != UR_STEP_LUA ||
      job->steps[0].path == NULL)
    return NULL;
  ss = lua_absindex(L, ss);
  pf = ur_pf_get(L);  /* PREFETCH */
  if (lua_getfield(L, -1, job->name) != LUA_TUSERDATA) {
    lua_pop(L, 2);
    return NULL;
  }
  e = (pfentry *)lua_touserdata(L, -1);
  lua_getiuservalue(L, -1, 1);  /* the path it searched */
  if (e->job != NULL && !e->busy && pf->on && ur_pf_allowed(L, ss)) {
    lua_pop(L, 1);  /* (its 'package') */
    if (strcmp(lua_tostring(L, -1), job->steps[0].path) == 0 &&
        current(e->job, job->steps[0].path)) {
      pj = e->job;
      e->job = NULL;
      pf->adopted++;
    }
  }
  lua_pop(L, 2);  /* pop path, entry */
  lua_pushstring(L, job->name);
  dropentry(L, -2, pf);  /* a stale one is dropped */
  lua_pop(L, 1);  /* pop PREFETCH */
  return pj;
}


/* core.setprefetch(on) */
static int l_setprefetch (lua_State *L) {
  pfstate *pf = ur_pf_get(L);
  pf->on = lua_toboolean(L, 1);
  if (!pf->on) {  /* drop every prefetch */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      dropentry(L, -3, pf);
    }
    ur_pf_clearcut(L, pf);
  }
  return 0;
}


/*
** core.prefetch(name): start a prefetch of module 'name' now, as if a
** module loading now named it (what 'lazy' does: the search, the read
** and the compile run ahead, the body at first use), if prefetch is on
** and allowed and nobody has the name yet.  Returns nothing; out of
** memory it does nothing.
*/
static int l_prefetch (lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  ur_job job;  /* a pseudo parent that names only 'name' */
  char **names;
  if (len == 0 || len > UR_MAXPFNAME || strlen(name) != len)
    return 0;  /* (what no scanner finds: the require will search) */
  if (!ur_pf_searchers(L))  /* (may raise: nothing to free yet) */
    return 0;
  if ((names = (char **)malloc(sizeof(*names))) == NULL) return 0;
  if ((names[0] = strdup(name)) == NULL) {
    free(names);
    return 0;
  }
  memset(&job, 0, sizeof(job));
  job.prefetch = names;
  job.nprefetch = 1;
  ur_prefetch_after(L, -1, &job);  /* (never raises) */
  if (job.prefetch != NULL) {  /* (else an entry of CUT took them) */
    free(names[0]);
    free(names);
  }
  return 0;
}


/*
** core.prefetchstats(): {on, submitted, adopted, dropped, entries,
** done (of them, finished), held (bytes of their bytecode)}
*/
static int l_prefetchstats (lua_State *L) {
  pfstate *pf = ur_pf_get(L);
  lua_Integer n = 0, done = 0, held = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    pfentry *e = (pfentry *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    n++;
    if (e->job != NULL && ur_exec_isdone(e->job)) {
      done++;
      held += (lua_Integer)e->job->codelen;
    }
  }
  lua_createtable(L, 0, 7);
  lua_pushboolean(L, pf->on);
  lua_setfield(L, -2, "on");
  lua_pushinteger(L, pf->submitted);
  lua_setfield(L, -2, "submitted");
  lua_pushinteger(L, pf->adopted);
  lua_setfield(L, -2, "adopted");
  lua_pushinteger(L, pf->dropped);
  lua_setfield(L, -2, "dropped");
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "entries");
  lua_pushinteger(L, done);
  lua_setfield(L, -2, "done");
  lua_pushinteger(L, held);
  lua_setfield(L, -2, "held");
  return 1;
}


/* add 'prefetch', 'setprefetch' and 'prefetchstats' to the table at the
   top */
void ur_prefetch_register (lua_State *L) {
  lua_pushcfunction(L, l_prefetch);
  lua_setfield(L, -2, "prefetch");
  lua_pushcfunction(L, l_setprefetch);
  lua_setfield(L, -2, "setprefetch");
  lua_pushcfunction(L, l_prefetchstats);
  lua_setfield(L, -2, "prefetchstats");
}
