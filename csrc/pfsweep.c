/*
** pfsweep.c: the sweep, which prefetches in turn what finished
** prefetches found ('ur_prefetch_sweep', as a 'require' starts, and
** 'ur_prefetch_poll', on the loop's turn), so that the executor goes
** ahead through the whole graph; and what a load found
** ('ur_prefetch_after').  The executor lists the prefetches that found
** names as they end ('ur_exec_takeswept'); a sweep with nothing listed
** and no names waiting for room costs one look at that list.
**
** CUT (the second uservalue of the prefetch record): entry -> true, the
** entries whose names did not all fit in a full PREFETCH, each to go on
** from its first name not seen to once CUTBATCH names have room (or a
** stale entry may go: prefetch.c).  A loaded module's own names that
** did not fit wait there too, in an entry of their own.  The entries a
** sweep expands are marked busy and kept on the stack: a collection
** step it causes may run a __gc that requires, and nobody may adopt or
** free their jobs meanwhile.
*/

#include <stdlib.h>
#include <string.h>

#include "prefetch.h"


extern const char ur_key_loading;  /* load.c: LOADING */


/* take this state's prefetches off the executor's list, unseen: their
   names are for a later sweep's look at every entry ('scanall') */
static void unlist (pfstate *pf) {
  ur_job *skip[MAXNAMES];
  if (pf->owner == NULL) return;
  while (ur_exec_takeswept(pf->owner, skip, MAXNAMES) > 0)
    pf->rescan = 1;
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
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ur_pf_key);
  lua_getiuservalue(L, -1, 2);
  lua_remove(L, -2);
}


/* the entry 'it' goes in CUT, or out, as 'in' says (may raise) */
static void setcut (lua_State *L, pfstate *pf, pfitem *it, int in) {
  pushcut(L);
  lua_pushvalue(L, it->at);
  if (in) lua_pushboolean(L, 1);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);  /* pop CUT */
  pf->ncut += in ? 1 : -1;
  it->e->incut = in;
}


/* empty CUT, each entry told so (may raise: memory) */
void ur_pf_clearcut (lua_State *L, pfstate *pf) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ur_pf_key);
  lua_getiuservalue(L, -1, 2);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    ((pfentry *)lua_touserdata(L, -1))->incut = 0;
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
** own, in CUT only, whose job is never submitted and holds just them
** (and their key), to start when there is room.  May raise: memory.
*/
static void keeprest (lua_State *L, pfstate *pf, ur_job *job, int from) {
  pfitem it;
  ur_job *kj;
  it.e = ur_pf_newentry(L, pf);
  it.at = lua_gettop(L);
  if ((kj = (ur_job *)calloc(1, sizeof(ur_job))) == NULL)
    luaL_error(L, "not enough memory");
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
** expanded yet; each pushed (kept from collection) and marked busy.
** Every entry is looked at, after a sweep that raised (the jobs it took
** off the executor's list may not all have been seen to) or that could
** not prefetch ('unlist').  Returns how many, in 'todo'.
*/
static int scanall (lua_State *L, pfstate *pf, pfitem *todo) {
  int n = 0;
  unlist(pf);  /* (all of them are seen below) */
  pushcut(L);  /* CUT's stay, for 'cutshort' (some are in CUT only) */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    ((pfentry *)lua_touserdata(L, -1))->busy = 0;  /* (left over) */
  }
  lua_pop(L, 1);  /* pop CUT */
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    pfentry *e = (pfentry *)lua_touserdata(L, -1);
    e->busy = 0;  /* (left over if an earlier sweep raised) */
    if (e->job != NULL && !expanded(e) &&
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
    pfentry *e = (pfentry *)lua_touserdata(L, -2);
    lua_pop(L, 1);  /* pop the value: the key is the entry */
    if (e->busy)  /* (taken already: a sweep that raised left it so, or
                     its job was listed too) */
      continue;
    if (e->job != NULL && !expanded(e)) {
      e->busy = 1;
      lua_pushvalue(L, -1);
      lua_rotate(L, -3, 1);  /* the entry below CUT and the key */
      todo[n].e = e;
      todo[n++].at = lua_gettop(L) - 2;
    }
    else {  /* (clearing a field while traversing is fine) */
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
    if (e->job == job && !expanded(e) && !e->busy && ur_exec_isdone(job)) {
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
** Start the names of the entry 'it' holds (busy), from where it stopped;
** then it leaves CUT (all seen to), or goes there (cut short).  An entry
** dropped meanwhile (a __gc's 'require' adopted its module, or prefetch
** went off) starts none: its job is released now, as 'dropentry' would
** have.  It is no longer busy after.
*/
static void expand (lua_State *L, pfstate *pf, pfitem *it, int base,
                    int spare) {
  pfentry *e = it->e;
  if (!e->gone && pf->on)
    e->nextname = ur_pf_startnames(L, pf, e->job, e->nextname, base, spare);
  if ((e->gone || !pf->on) && e->incut)
    setcut(L, pf, it, 0);
  else if (!e->gone && pf->on && expanded(e) == e->incut)
    setcut(L, pf, it, !expanded(e));  /* cut short: in CUT; else out */
  e->busy = 0;
  if (e->gone && e->job != NULL) {
    ur_exec_release(e->job);
    e->job = NULL;
    pf->dropped++;
  }
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
  pf = ur_pf_get(L);  /* 4: PREFETCH */
  lua_replace(L, 3);  /* 3: PREFETCH */
  if (pf->starting || !pf->on)
    return 0;  /* (a __gc's require while this state starts some: no) */
  if (!ur_pf_allowed(L, 1)) {  /* 4: its 'package' */
    unlist(pf);  /* (no sweep is due again for them) */
    return 0;
  }
  lua_pushliteral(L, "path");  /* raw: no user code runs ahead */
  if (lua_rawget(L, 4) != LUA_TSTRING) {  /* 5: the path */
    unlist(pf);
    return 0;
  }
  base = lua_gettop(L) + 1;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ur_key_loading);
  lua_pushliteral(L, "preload");
  lua_rawget(L, 4);
  lua_pushvalue(L, 3);
  pf->starting = 1;  /* ('callstart' clears it, even after an error) */
  if (job != NULL) {
    i = ur_pf_startnames(L, pf, job, 0, base, spare);
    if (i < job->nprefetch && pf->on)
      keeprest(L, pf, job, i);  /* no room */
  }
  if (job == NULL || pf->rescan) {  /* the finished ones */
    luaL_checkstack(L, MAXNAMES + 8, "prefetch");
    if (pf->rescan)  /* (see 'scanall') */
      n = scanall(L, pf, todo);
    else {
      n = listed(L, todo);  /* those done since the last sweep */
      if (cutroom(pf))  /* room for names cut short */
        n += cutshort(L, pf, todo + n, MAXNAMES - n);
    }
    qsort(todo, (size_t)n, sizeof(todo[0]), bykey);  /* needed first */
    pf->rescan = 0;
    for (i = 0; i < n; i++)  /* (busy: each job stays its entry's) */
      expand(L, pf, &todo[i], base, spare);
  }
  pf->starting = 0;
  return 0;
}


/* the state's prefetch record, or NULL (allocates nothing) */
static pfstate *peekpf (lua_State *L) {
  pfstate *pf = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ur_pf_key) == LUA_TUSERDATA)
    pf = (pfstate *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return pf;
}


/*
** Has a sweep of 'pf' (or NULL) anything to do: prefetches done since
** the last, names cut short and room for them, a sweep that raised, or
** prefetches taken off the list unseen ('unlist')?
*/
static int sweepdue (pfstate *pf) {
  return pf != NULL && pf->on && !pf->starting && pf->owner != NULL &&
         (pf->rescan || cutroom(pf) ||
          ur_exec_hasswept(pf->owner));
}


/* do the searchers at 'ss', and 'package.path', allow prefetch now?
   (Allocates nothing: "path" is a key of 'package' already) */
static int allowednow (lua_State *L, int ss) {
  int ok;
  if (!ur_pf_allowed(L, ss)) return 0;
  lua_pushliteral(L, "path");
  ok = (lua_rawget(L, -2) == LUA_TSTRING);
  lua_pop(L, 2);  /* pop the path and 'package' */
  return ok;
}


/* call 'startall' with the searchers at 'ss' and 'job' (or NULL),
   protected: prefetch is an optimization, and out of memory it just
   does less.  'spare': see 'startall' */
static void callstart (lua_State *L, int ss, ur_job *job, int spare) {
  pfstate *pf = peekpf(L);
  if (pf != NULL && pf->starting)
    return;  /* (a __gc's require in a sweep: a failed call of its own
                would clear 'starting' under the sweep) */
  ss = lua_absindex(L, ss);
  lua_pushcfunction(L, startall);  /* (allocates nothing: never raises,
                                       even out of memory) */
  lua_pushvalue(L, ss);
  lua_pushlightuserdata(L, job);
  lua_pushboolean(L, spare);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    lua_pop(L, 1);  /* pop the error */
    if ((pf = peekpf(L)) != NULL) {  /* (made by the call, maybe) */
      pf->starting = 0;
      pf->rescan = 1;  /* (the jobs it took may not be expanded yet) */
    }
  }
}


/*
** A sweep, if one is due, with the searchers at 'ss'.  While prefetch is
** not allowed, none runs: the prefetches done meanwhile leave the list
** unseen, for the first sweep allowed again (so each 'require' and turn
** costs a look at the searchers, no more).
*/
static void sweepif (lua_State *L, pfstate *pf, int ss, int spare) {
  if (!sweepdue(pf)) return;
  if (allowednow(L, ss)) callstart(L, ss, NULL, spare);
  else unlist(pf);
}


/*
** Prefetch what the finished prefetches found (each once), so that the
** executor works ahead of the Lua thread through the whole graph, not
** one level below the module loading now.  Called as a 'require'
** starts; never raises.
*/
void ur_prefetch_sweep (lua_State *L, int ss) {
  pfstate *pf = peekpf(L);
  if (pf != NULL) pf->loads++;  /* (the clock of 'dropstale') */
  sweepif(L, pf, lua_absindex(L, ss), !ur_sched_cansuspend(L));
}


/* see prefetch.h */
int ur_pf_searchers (lua_State *L) {
  int ok = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
    lua_pushliteral(L, "package");  /* (raw: no user code runs) */
    if (lua_rawget(L, -2) == LUA_TTABLE) {
      lua_pushliteral(L, "searchers");
      ok = (lua_rawget(L, -2) == LUA_TTABLE);
      lua_remove(L, -2);  /* remove 'package' */
    }
    lua_remove(L, -2);  /* remove LOADED */
  }
  if (!ok) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  return ok;
}


/* 'ur_prefetch_sweep' with 'package.searchers' (the loop's turn) */
void ur_prefetch_poll (lua_State *L) {
  pfstate *pf = peekpf(L);
  if (!sweepdue(pf)) return;
  if (ur_pf_searchers(L))  /* (the Lua thread is in the loop: no core
                              spared) */
    sweepif(L, pf, lua_gettop(L), 0);
  lua_pop(L, 1);
}


/*
** A Lua module's job, 'job', is done and found it: prefetch the modules
** its source names, if the searchers at 'ss' allow.  Never raises.
*/
void ur_prefetch_after (lua_State *L, int ss, ur_job *job) {
  if (job->nprefetch > 0) callstart(L, ss, job, !ur_sched_cansuspend(L));
}
