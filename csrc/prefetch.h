/*
** prefetch.h: what the parts of prefetch share: prefetch.c (the table
** of prefetches, its bounds, adoption) and pfsweep.c (the sweep, and
** CUT).  See prefetch.c for the design.
*/

#ifndef prefetch_h
#define prefetch_h

#include "ur.h"

#pragma GCC visibility push(hidden)

#define MAXNAMES     256
#define CUTBATCH     16   /* room that makes a sweep look at CUT */
#define STALE        (2 * MAXNAMES)  /* loads after which a finished
                                        entry nobody adopted may go */


/* the state's prefetch record */
typedef struct pfstate {
  int on;
  int starting;  /* a 'startall' runs: a nested one returns at once */
  int rescan;    /* the next sweep looks at every entry: one raised, or
                    prefetches left the executor's list unseen
                    (prefetch was not allowed then) */
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
  int nextname;  /* the first name its job found not seen to yet */
  int incut;     /* it is in CUT */
  int busy;      /* a sweep holds it: nobody adopts or frees its job */
  int gone;      /* dropped while busy: the sweep releases its job */
} pfentry;

/* an entry a sweep holds: marked busy, kept on the stack at 'at' */
typedef struct pfitem {
  pfentry *e;
  int at;
} pfitem;

/* were all the names of entry 'e' (with a job) seen to? */
#define expanded(e)  ((e)->nextname == (e)->job->nprefetch)

/* may an entry of PREFETCH be stale: finished, and begun more than
   STALE loads ago? */
#define maybestale(pf)  ((pf)->loads - (pf)->low > STALE)


extern const char ur_pf_key;  /* registry: the prefetch record */

/* push PREFETCH; return the record (created on first use: may raise) */
pfstate *ur_pf_get (lua_State *L);
/* push a new entry, with no job yet (may raise: memory) */
pfentry *ur_pf_newentry (lua_State *L, pfstate *pf);
/* start prefetches for the names of 'job' from 'from' on: see
   prefetch.c; returns the first name not seen to */
int ur_pf_startnames (lua_State *L, pfstate *pf, ur_job *job, int from,
                      int base, int spare);
/* do the searchers at 'ss' allow prefetch?  If so, push 'package' */
int ur_pf_allowed (lua_State *L, int ss);
/* push LOADED.package.searchers, raw, and return 1 if it is a table;
   else push nil and return 0 (pfsweep.c) */
int ur_pf_searchers (lua_State *L);
/* empty CUT (pfsweep.c; may raise: memory) */
void ur_pf_clearcut (lua_State *L, pfstate *pf);

#pragma GCC visibility pop

#endif
