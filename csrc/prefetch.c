/*
** prefetch.c: search for and compile, ahead, the Lua modules that a
** module's source passes to 'require' as a literal (compile.c finds
** them), while its body runs; the later 'require' adopts the job.
** Every load starts prefetches, and any load adopts them.  What a
** finished prefetch found is prefetched in turn ('ur_prefetch_sweep',
** as a 'require' starts and on the loop's turn), so the executor goes
** ahead through the whole graph; its queue runs them depth first
** (executor.c).
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
** releases it), with the path searched as its uservalue.  CUT (the
** record's second uservalue): name -> entry, the entries whose names a
** full PREFETCH cut short, to expand from where they stopped once
** CUTBATCH names have room (a loaded module's own names that did not
** fit wait there too, in an entry of their own).  Bounds, checked
** whenever a prefetch starts: at most MAXNAMES entries (no more start
** beyond, but a finished one nobody adopted for STALE loads may go),
** and the bytecode of the finished ones under 'budget' bytes (the
** oldest go first).  A sweep marks the entries it holds busy: until it lets go,
** nobody adopts or frees their jobs.
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"


#define MAXNAMES     256
#define CUTBATCH     16   /* room that makes a sweep look at CUT */
#define STALE        (2 * MAXNAMES)  /* loads after which a finished
                                        entry nobody adopted may go */
#define BUDGET       (32 * 1024 * 1024)  /* bytes of bytecode held */


/* the state's prefetch record */
typedef struct pfstate {
  int on;
  int starting;  /* a 'startall' runs: a nested one returns at once */
  int rescan;    /* a sweep raised: the next looks at every entry */
  int n;  /* entries in PREFETCH */
  int ncut;  /* entries in CUT */
  const void *owner;  /* the state's runtime, once a prefetch started */
  size_t budget;
  lua_Integer seq;  /* last entry's number: lower is older */
  lua_Integer loads;  /* loads begun ('ur_prefetch_sweep'): a clock */
  lua_Integer low;  /* no finished entry began before this load */
  lua_Integer submitted, adopted, dropped;
} pfstate;

/* an entry of PREFETCH */
typedef struct pfentry {
  ur_job *job;  /* owned; NULL once adopted or dropped */
  lua_Integer seq;
  lua_Integer stamp;  /* 'loads' when it began */
  int expanded;  /* the names its job found were prefetched */
  int nextname;  /* the first of those names not seen to yet */
  int incut;     /* it is in CUT */
  int busy;      /* a sweep holds it: nobody adopts or frees its job */
} pfentry;

/* an entry a sweep holds: marked busy, kept on the stack at 'at' */
typedef struct pfitem {
  pfentry *e;
  int at;
} pfitem;


static const char PFKEY = 'p';  /* registry: the prefetch record */
static const char PFMETA = 'm';  /* registry: the entries' metatable */

extern const char ur_key_loading;  /* load.c: LOADING */


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
static pfentry *newentry (lua_State *L, pfstate *pf) {
  pfentry *e = (pfentry *)lua_newuserdatauv(L, sizeof(*e), 1);
  memset(e, 0, sizeof(*e));
  e->seq = ++pf->seq;
  e->stamp = pf->loads;
  pushentrymeta(L);
  lua_setmetatable(L, -2);
  return e;
}


/* push PREFETCH; return the record (created on first use: may raise) */
static pfstate *getpf (lua_State *L) {
  pfstate *pf;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &PFKEY) == LUA_TUSERDATA) {
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
  lua_rawsetp(L, LUA_REGISTRYINDEX, &PFKEY);  /* pops the record */
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
  if (e != NULL && e->job != NULL && !e->busy) {
    ur_exec_release(e->job);
    e->job = NULL;
    pf->dropped++;
  }
}


/*
** Count the entries of PREFETCH at 't' and the bytes of bytecode its
** finished jobs hold; push the name of the oldest entry (of a finished
** job, with 'doneonly'), or nil.
*/
static void survey (lua_State *L, int t, int doneonly, int *n,
                    size_t *bytes) {
  lua_Integer oldest = 0;
  t = lua_absindex(L, t);
  *n = 0;
  *bytes = 0;
  lua_pushnil(L);  /* the oldest's name */
  lua_pushnil(L);
  while (lua_next(L, t)) {
    pfentry *e = (pfentry *)lua_touserdata(L, -1);
    int done = e->job != NULL && !e->busy && ur_exec_isdone(e->job);
    lua_pop(L, 1);
    (*n)++;
    if (done) *bytes += e->job->codelen;
    if ((done || !doneonly) && (oldest == 0 || e->seq < oldest)) {
      oldest = e->seq;
      lua_pushvalue(L, -1);
      lua_replace(L, -3);
    }
  }
}


/* may an entry of PREFETCH be stale: finished, and begun more than
   STALE loads ago? */
#define maybestale(pf)  ((pf)->loads - (pf)->low > STALE)


/*
** PREFETCH (at 3) is full: drop its oldest stale entry, if any (a name
** in a function never called, or in a string, a module never found:
** nobody adopts them, and only adoptions made room).  Returns 1 if one
** went.  A look at every entry, only when 'maybestale'.
*/
static int dropstale (lua_State *L, pfstate *pf) {
  lua_Integer oldest = pf->loads;
  if (!maybestale(pf)) return 0;
  lua_pushnil(L);  /* the oldest's name */
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    pfentry *e = (pfentry *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (e->job != NULL && !e->busy && e->stamp < oldest &&
        ur_exec_isdone(e->job)) {
      oldest = e->stamp;
      lua_pushvalue(L, -1);
      lua_replace(L, -3);
    }
  }
  pf->low = oldest;  /* (none older: no look until the clock is on) */
  if (pf->loads - oldest <= STALE) {
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
  int n;
  size_t bytes;
  if (ur_exec_pfheld() <= pf->budget) return;
  for (;;) {
    survey(L, t, 1, &n, &bytes);
    if (bytes <= pf->budget || lua_isnil(L, -1)) break;
    dropentry(L, t, pf);
  }
  lua_pop(L, 1);
}


/*
** Do the searchers at 'ss' allow prefetch: stock's preload searcher,
** then the standard Lua searcher?  If so push the latter's 'package'
** table and return 1; else push nothing and return 0.
*/
static int allowed (lua_State *L, int ss) {
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
** Stack as 'startall' sets it up: 5 the path; LOADED, LOADING, preload
** (or nil), PREFETCH at 'base'.  Returns the first name not seen to:
** 'job->nprefetch' if none is left, less if PREFETCH filled up.
*/
static int startnames (lua_State *L, pfstate *pf, ur_job *job, int from,
                       int base, int spare) {
  const char *path = lua_tostring(L, 5);
  const void *owner = ur_runtime_get(L);
  int i;
  pf->owner = owner;  /* (for 'ur_prefetch_sweep': it cannot allocate) */
  for (i = from; i < job->nprefetch; i++) {
    const char *name = job->prefetch[i];
    ur_job *pj;
    pfentry *e;
    if (taken(L, base, name)) continue;
    if (pf->n >= MAXNAMES && !dropstale(L, pf))
      return i;  /* full: the adopted make room */
    trimbytes(L, 3, pf);  /* room for one more: the oldest go first */
    e = newentry(L, pf);
    lua_pushvalue(L, 5);
    lua_setiuservalue(L, -2, 1);  /* the path searched */
    if ((pj = (ur_job *)calloc(1, sizeof(ur_job))) == NULL)
      luaL_error(L, "not enough memory");
    pj->name = strdup(name);
    pj->steps[0].path = strdup(path);
    pj->nsteps = 1;  /* (steps[0].kind: UR_STEP_LUA) */
    pj->scan = pj->isprefetch = 1;
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
  }
  return i;
}


/* does entry 'a' come before 'b' in the order of their keys (the order
   the Lua thread needs them: see executor.c)?  For qsort */
static int bykey (const void *pa, const void *pb) {
  const ur_job *a = ((const pfitem *)pa)->e->job;
  const ur_job *b = ((const pfitem *)pb)->e->job;
  int n = a->pkeylen < b->pkeylen ? a->pkeylen : b->pkeylen;
  int c = memcmp(a->pkey, b->pkey, (size_t)n);
  return c != 0 ? c : a->pkeylen - b->pkeylen;
}


/* push CUT */
static void pushcut (lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PFKEY);
  lua_getiuservalue(L, -1, 2);
  lua_remove(L, -2);
}


/* CUT[name] = the entry 'it' (busy: its job is its own), or nil, as
   'in' says */
static void setcut (lua_State *L, pfstate *pf, pfitem *it, int in) {
  pushcut(L);
  lua_pushstring(L, it->e->job->name);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) == LUA_TUSERDATA) {  /* the one there leaves */
    ((pfentry *)lua_touserdata(L, -1))->incut = 0;
    pf->ncut--;
  }
  lua_pop(L, 1);
  if (in) lua_pushvalue(L, it->at);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);  /* pop CUT */
  pf->ncut += in;
  it->e->incut = in;
}


/* empty CUT, each entry told so (may raise: memory) */
static void clearcut (lua_State *L, pfstate *pf) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PFKEY);
  lua_getiuservalue(L, -1, 2);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    ((pfentry *)lua_touserdata(L, -1))->incut = 0;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* pop CUT */
  lua_newtable(L);
  lua_setiuservalue(L, -2, 2);
  lua_pop(L, 1);  /* pop the record */
  pf->ncut = 0;
}


/*
** The names of 'job', a load's (which drops it next), from its name
** 'from' on, did not fit in PREFETCH: they move to an entry of their
** own, in CUT only, whose job is never submitted and holds just them,
** to start when there is room.  May raise: memory.
*/
static void keeprest (lua_State *L, pfstate *pf, ur_job *job, int from) {
  pfitem it;
  ur_job *kj;
  it.e = newentry(L, pf);
  it.at = lua_gettop(L);
  if ((kj = (ur_job *)calloc(1, sizeof(ur_job))) == NULL ||
      (kj->name = strdup(job->name)) == NULL) {
    free(kj);
    luaL_error(L, "not enough memory");
  }
  kj->prefetch = job->prefetch;  /* (the names move) */
  kj->nprefetch = job->nprefetch;
  job->prefetch = NULL;
  job->nprefetch = 0;
  kj->pkeylen = job->pkeylen;
  memcpy(kj->pkey, job->pkey, (size_t)job->pkeylen);
  it.e->job = kj;  /* (UR_NEW: its release frees it) */
  it.e->nextname = from;
  setcut(L, pf, &it, 1);
  lua_pop(L, 1);  /* pop the entry: CUT holds it */
}


/* has PREFETCH room enough that the entries in CUT are worth a look,
   or may it make some ('dropstale')? */
static int cutroom (pfstate *pf) {
  return pf->ncut > 0 && (MAXNAMES - pf->n >= CUTBATCH || maybestale(pf));
}


/*
** The entries of PREFETCH (at 3) to expand: finished, with names, not
** expanded yet; each pushed (kept from collection) and marked busy (no
** trimming drops it).  Every entry is looked at, after a sweep that
** raised (the jobs it took off the executor's list, and CUT, may not
** all have been seen to).  Returns how many, in 'todo'.
*/
static int scanall (lua_State *L, pfstate *pf, pfitem *todo) {
  int n = 0;
  ur_job *skip[MAXNAMES];
  while (ur_exec_takeswept(ur_runtime_get(L), skip, MAXNAMES) > 0)
    ;  /* (all of them are seen below) */
  clearcut(L, pf);  /* (all of them are seen below) */
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    pfentry *e = (pfentry *)lua_touserdata(L, -1);
    e->busy = 0;  /* (left over if an earlier sweep raised) */
    if (!e->expanded && e->job != NULL && e->job->nprefetch > 0 &&
        n < MAXNAMES && ur_exec_isdone(e->job)) {
      e->busy = 1;
      lua_insert(L, -2);  /* entry stays, below the key */
      todo[n].e = e;
      todo[n++].at = lua_gettop(L) - 1;
    }
    else
      lua_pop(L, 1);
  }
  return n;
}


/*
** As 'scanall', for the entries in CUT, at most 'max' (PREFETCH has room
** for some of their names now).  They stay in CUT until their last name
** is seen to; an entry adopted or dropped meanwhile leaves it now.
*/
static int cutshort (lua_State *L, pfstate *pf, pfitem *todo, int max) {
  int n = 0;
  pushcut(L);
  lua_pushnil(L);
  while (n < max && lua_next(L, -2)) {
    pfentry *e = (pfentry *)lua_touserdata(L, -1);
    if (e->job != NULL && !e->expanded) {
      e->busy = 1;
      lua_rotate(L, -3, 1);  /* entry below CUT and the key */
      todo[n].e = e;
      todo[n++].at = lua_gettop(L) - 2;
    }
    else {  /* (clearing a field while traversing is fine) */
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, -4);
      e->incut = 0;
      pf->ncut--;
    }
  }
  lua_settop(L, lua_gettop(L) - (n < max ? 1 : 2));  /* CUT (and key) */
  return n;
}


/*
** As 'scanall', for the entries whose jobs the executor listed as done
** since the last sweep: the usual case, without a look at every entry.
** A job is taken off the list one at a time and its name copied before
** anything allocates: a collection step may run a __gc that requires,
** adopts that very entry and frees its job.
*/
static int listed (lua_State *L, pfitem *todo) {
  const void *owner = ur_runtime_get(L);
  char name[UR_MAXPFNAME + 1];
  ur_job *job;
  int n = 0;
  while (n < MAXNAMES && ur_exec_takeswept(owner, &job, 1) == 1) {
    pfentry *e;
    size_t len = strlen(job->name);
    if (len > UR_MAXPFNAME) continue;  /* (never: the scanner's bound) */
    memcpy(name, job->name, len + 1);
    if (lua_getfield(L, 3, name) != LUA_TUSERDATA) {
      lua_pop(L, 1);  /* adopted, or dropped: nothing to expand */
      continue;
    }
    e = (pfentry *)lua_touserdata(L, -1);
    if (e->job == job && !e->expanded && ur_exec_isdone(job)) {
      e->busy = 1;
      todo[n].e = e;  /* (the entry stays on the stack) */
      todo[n++].at = lua_gettop(L);
    }
    else
      lua_pop(L, 1);
  }
  return n;
}


/*
** Protected part of 'ur_prefetch_after' and 'ur_prefetch_sweep' (1:
** the searchers; 2: the job, light userdata, or NULL: every finished
** prefetch not expanded yet; 3: true if the caller is a synchronous
** load, whose prefetches leave a core to the Lua thread, which is
** busy): start prefetches for the names found.
*/
static int startall (lua_State *L) {
  ur_job *job = (ur_job *)lua_touserdata(L, 2);
  int spare = lua_toboolean(L, 3);
  pfstate *pf;
  int base, i, n = 0;
  pfitem todo[MAXNAMES];  /* entries to expand */
  lua_settop(L, 3);
  pf = getpf(L);  /* 4: PREFETCH */
  lua_replace(L, 3);  /* 3: PREFETCH */
  if (pf->starting || !pf->on || !allowed(L, 1))  /* 4: its 'package' */
    return 0;  /* (a __gc's require while this state starts some: no) */
  lua_pushliteral(L, "path");  /* raw: no user code runs ahead */
  if (lua_rawget(L, 4) != LUA_TSTRING)  /* 5: the path */
    return 0;
  base = lua_gettop(L) + 1;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ur_key_loading);
  lua_pushliteral(L, "preload");
  lua_rawget(L, 4);
  lua_pushvalue(L, 3);
  pf->starting = 1;  /* ('callstart' clears it, even after an error) */
  if (job != NULL) {
    i = startnames(L, pf, job, 0, base, spare);
    if (i < job->nprefetch) keeprest(L, pf, job, i);  /* no room */
  }
  else {  /* the finished ones, each kept on the stack meanwhile */
    luaL_checkstack(L, MAXNAMES + 8, "prefetch");
    if (pf->rescan)  /* (an earlier sweep raised) */
      n = scanall(L, pf, todo);
    else {
      n = listed(L, todo);  /* those done since the last sweep */
      if (cutroom(pf))  /* room for names cut short */
        n += cutshort(L, pf, todo + n, MAXNAMES - n);
    }
    qsort(todo, (size_t)n, sizeof(todo[0]), bykey);  /* needed first */
    for (i = 0; i < n; i++) {  /* (busy: each job stays its entry's) */
      pfentry *e = todo[i].e;
      e->nextname = startnames(L, pf, e->job, e->nextname, base, spare);
      e->expanded = (e->nextname == e->job->nprefetch);
      if (e->expanded == e->incut)  /* cut short: in CUT; else out */
        setcut(L, pf, &todo[i], !e->expanded);
      e->busy = 0;
    }
    pf->rescan = 0;
  }
  pf->starting = 0;
  return 0;
}


/* has a sweep anything to do: prefetches done since the last, names
   cut short and room for them, or a sweep that raised?  (Allocates
   nothing: the loop's turn and every 'require' ask) */
static int sweepdue (lua_State *L) {
  pfstate *pf = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &PFKEY) == LUA_TUSERDATA)
    pf = (pfstate *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return pf != NULL && pf->on && !pf->starting && pf->owner != NULL &&
         (pf->rescan || cutroom(pf) || ur_exec_hasswept(pf->owner));
}


/* call 'startall' with the searchers at 'ss' and 'job' (or NULL),
   protected: prefetch is an optimization, and out of memory it just
   does less.  'spare': see 'startall' */
static void callstart (lua_State *L, int ss, ur_job *job, int spare) {
  ss = lua_absindex(L, ss);
  lua_pushcfunction(L, startall);  /* (allocates nothing: never raises,
                                       even out of memory) */
  lua_pushvalue(L, ss);
  lua_pushlightuserdata(L, job);
  lua_pushboolean(L, spare);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    lua_pop(L, 1);  /* pop the error */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &PFKEY) == LUA_TUSERDATA) {
      pfstate *pf = (pfstate *)lua_touserdata(L, -1);
      pf->starting = 0;
      pf->rescan = 1;  /* (the jobs it took may not be expanded yet) */
    }
    lua_pop(L, 1);
  }
}


/*
** Prefetch what the finished prefetches found (each once), so that the
** executor works ahead of the Lua thread through the whole graph, not
** one level below the module loading now.  Called as a 'require'
** starts; never raises.
*/
void ur_prefetch_sweep (lua_State *L, int ss) {
  pfstate *pf = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &PFKEY) == LUA_TUSERDATA)
    pf = (pfstate *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (pf != NULL) pf->loads++;  /* (the clock of 'dropstale') */
  if (sweepdue(L)) callstart(L, ss, NULL, !ur_sched_cansuspend(L));
}


/* 'ur_prefetch_sweep' with 'package.searchers' (the loop's turn) */
void ur_prefetch_poll (lua_State *L) {
  if (!sweepdue(L)) return;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushliteral(L, "package");
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_pushliteral(L, "searchers");
    if (lua_rawget(L, -2) == LUA_TTABLE)
      callstart(L, -1, NULL, 0);  /* (the Lua thread is in the loop) */
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}


/*
** A Lua module's job, 'job', is done and found it: prefetch the modules
** its source names, if the searchers at 'ss' allow.  Never raises.
*/
void ur_prefetch_after (lua_State *L, int ss, ur_job *job) {
  if (job->nprefetch > 0) callstart(L, ss, job, !ur_sched_cansuspend(L));
}


/* is prefetch on in this state?  (may raise: memory) */
int ur_prefetch_on (lua_State *L) {
  int on = getpf(L)->on;
  lua_pop(L, 1);
  return on;
}


/*
** 'findloader' built 'job' from searcher 'i' of the table at 'ss' on:
** if a prefetch of its module searched the same path with the standard
** Lua searcher at 2 (after stock's preload searcher), return that job
** (the caller's now, with only the Lua step) and forget the entry; else
** NULL.  An entry for a path no longer current is dropped, and so is one
** that a sweep holds (a __gc's 'require' during the sweep): the sweep
** reads its job, which stays the entry's until then.
*/
ur_job *ur_prefetch_take (lua_State *L, int ss, int i, ur_job *job) {
  pfstate *pf;
  pfentry *e;
  ur_job *pj = NULL;
  if (i != 2 || job->nsteps == 0 || job->steps[0].kind != UR_STEP_LUA ||
      job->steps[0].path == NULL)
    return NULL;
  ss = lua_absindex(L, ss);
  pf = getpf(L);  /* PREFETCH */
  if (lua_getfield(L, -1, job->name) != LUA_TUSERDATA) {
    lua_pop(L, 2);
    return NULL;
  }
  e = (pfentry *)lua_touserdata(L, -1);
  lua_getiuservalue(L, -1, 1);  /* the path it searched */
  if (e->job != NULL && !e->busy && allowed(L, ss)) {
    lua_pop(L, 1);  /* (its 'package') */
    if (strcmp(lua_tostring(L, -1), job->steps[0].path) == 0) {
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
  pfstate *pf = getpf(L);
  pf->on = lua_toboolean(L, 1);
  if (!pf->on) {  /* drop every prefetch */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      dropentry(L, -3, pf);
    }
    clearcut(L, pf);
  }
  return 0;
}


/*
** core.prefetchstats(): {on, submitted, adopted, dropped, entries,
** done (of them, finished), held (bytes of their bytecode)}
*/
static int l_prefetchstats (lua_State *L) {
  pfstate *pf = getpf(L);
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


/* add 'setprefetch' and 'prefetchstats' to the table at the top */
void ur_prefetch_register (lua_State *L) {
  lua_pushcfunction(L, l_setprefetch);
  lua_setfield(L, -2, "setprefetch");
  lua_pushcfunction(L, l_prefetchstats);
  lua_setfield(L, -2, "prefetchstats");
}
