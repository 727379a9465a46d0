/*
** ur.h: internal interfaces of uvrequire's C core.
**
** The core has two sides that share nothing but 'ur_job' records:
**
**   Lua thread                          executor threads
**   ----------                          ----------------
**   drive.c    builds a job  ---------> executor.c queues it
**                                       search.c runs it: path search,
**                                         compile.c (read + compile +
**                                         dump), clib.c (dlopen/dlsym)
**   loop.c     is told it is done <---- executor.c marks it done
**   drive.c    loads bytecode / calls luaopen_*, runs the loader
**
** A job holds only C data: names and paths going in, bytes, a library
** handle and messages coming out.  No Lua value ever crosses.
*/

#ifndef ur_h
#define ur_h

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "lua.h"
#include "lauxlib.h"

/* everything below is internal to the shared object: not exported */
#pragma GCC visibility push(hidden)


/* {======================================================
** Growable byte buffer (buf.c; malloc-based; usable on any thread)
** ======================================================= */

typedef struct ur_buf {
  char *p;
  size_t n, cap;
  int oom;  /* an allocation failed: contents are incomplete */
} ur_buf;

void ur_buf_add (ur_buf *b, const char *s, size_t len);
void ur_buf_adds (ur_buf *b, const char *s);
void ur_buf_addf (ur_buf *b, const char *fmt, ...);
void ur_buf_free (ur_buf *b);
/* make 'b' hold just "not enough memory" (empty, 'oom' set, if even
   that fails) */
void ur_buf_nomem (ur_buf *b);

/* }====================================================== */


/* {======================================================
** Arena of a compile's scratch lua_State (arena.c; one thread's)
** ======================================================= */

typedef struct ur_chunk ur_chunk;

typedef struct ur_arena {  /* all zero: an empty arena */
  ur_chunk *cur;       /* chunk blocks are cut from (newest first) */
  struct ur_big *bigs; /* big blocks, each a malloc of its own */
  size_t bytes;        /* held: chunks and big blocks */
} ur_arena;

lua_State *ur_arena_newstate (ur_arena *a);
int ur_arena_reset (ur_arena *a);
void ur_arena_free (ur_arena *a);

/* }====================================================== */


/* {======================================================
** Jobs
** ======================================================= */

/* kinds of search steps: the three standard file searchers */
enum { UR_STEP_LUA, UR_STEP_C, UR_STEP_CROOT };

#define UR_MAXSTEPS 8

typedef struct ur_step {
  int kind;
  char *path;  /* template list; NULL: 'package.(c)path' was no string */
  void *lib;   /* out: library this step opened (C, Croot), or NULL */
  char *libfile;  /* out: its file, when not the job's 'file' */
} ur_step;

/* job outcome */
enum {
  UR_NOTFOUND,  /* every step missed: 'msg' holds their messages */
  UR_FOUND,     /* step 'found' found a loader: see 'file', 'code', 'open' */
  UR_RAISE      /* a step failed for real: 'msg' is the error to raise
                   ("not enough memory" when memory ran out, or, should
                   even that fail, empty with 'msg.oom' set) */
};

/* job life cycle, guarded by the executor's lock once submitted
   (UR_NEW: never submitted, such as a job run on the Lua thread) */
enum { UR_NEW, UR_QUEUED, UR_RUNNING, UR_DONE };

typedef struct ur_job ur_job;

#define UR_PKEYLEN  24  /* deepest order key of a prefetch */
typedef struct ur_cachewrite ur_cachewrite;  /* cache.c */

struct ur_job {
  /* --- input, written by the Lua thread before submission --- */
  char *name;                 /* module name */
  int inplace;                /* run on the Lua thread (W NULL): a Lua
                                 module found is compiled by the Lua
                                 thread itself ('ur_job_load'): unless
                                 the bytecode cache has it ('code' then
                                 holds it), the job leaves the file
                                 open in 'fp' */
  int nsteps;
  ur_step steps[UR_MAXSTEPS];
  /* --- output, written by the worker, read after UR_DONE --- */
  int outcome;
  int found;                  /* index of the step that found it */
  ur_buf msg;                 /* messages ("\n\t..." each) or error */
  char *file;                 /* file where the loader was found */
  char *code;                 /* Lua: bytecode (with debug info and
                                 its chunk name "@file"); NULL for an
                                 'inplace' job's file to compile */
  size_t codelen;
  FILE *fp;                   /* 'inplace': the source, open, for
                                 'ur_job_load' (NULL once taken) */
  struct ur_cachekey *ck;     /* 'inplace': the cache miss whose entry
                                 'ur_job_load' may write, or NULL */
  ur_cachewrite *cw;          /* a cache write job (cache.c): this is
                                 all it does; it is nobody's */
  void *lib;                  /* C: handle from dlopen, or NULL */
  lua_CFunction open;         /* C: the luaopen_* function */
  int cached;                 /* Lua: 'code' came from the bytecode
                                 cache (cache.c), not from compiling */
  char **prefetch;            /* Lua: names its source passes to
                                 'require' as a literal (malloc'ed, at
                                 most UR_MAXPREFETCH); only when its
                                 source was read: not from the cache */
  int nprefetch;
  int scan;                   /* input: collect 'prefetch' (executor
                                 jobs only: a job run in place never
                                 reads its file for it) */
  int isprefetch;             /* submitted by prefetch.c, no waiter */
  int nowait;                 /* input: open files without waiting, and
                                 end at one not regular (a prefetch's;
                                 cleared when one adopts it before it
                                 runs: search.c) */
  int nonreg;                 /* output: it ended so (UR_NOTFOUND) */
  const void *owner;          /* the state's runtime: only its own Lua
                                 thread runs its prefetches in place
                                 ('ur_exec_help'); NULL: none */
  int sparecore;              /* a prefetch that leaves a core to the
                                 Lua thread (executor.c) */
  unsigned char pkey[UR_PKEYLEN];  /* a prefetch's place in the order
                                 the Lua thread will want it: the
                                 parent's, then its index there */
  int pkeylen;
  /* --- executor bookkeeping (executor.c, under its lock) --- */
  int state;
  int orphan;                 /* owner let go while running */
  int q;                      /* the queue it is in, when UR_QUEUED */
  ur_job *next;               /* queue link, or running-list link */
  uv_async_t *async;          /* completion signal, or NULL (sync) */
  ur_job *pfnext, *pfprev;    /* the list of done prefetches to sweep */
  int pflisted;               /* it is in that list */
  int pfheld;                 /* its bytecode counts in 'ur_exec_pfheld' */
  /* --- owner bookkeeping (Lua thread only) --- */
  ur_job *lnext, *lprev;      /* the runtime's list of live jobs */
  int delivered;              /* its completion reached the scheduler */
  /* --- timing, for uvrequire.stats (uv_hrtime ns; 0: not set) --- */
  uint64_t t_start, t_found, t_end;  /* run began, file found, ended */
  uint64_t read_ns;           /* of which reading the source */
  size_t srcbytes;            /* bytes of source read */
  struct {                    /* a Lua file found: what 'fstat' said of
                                 it as it was read ('ur_src_same') */
    uint64_t dev, ino, size;
    int64_t sec, nsec;
    int set;  /* 'fstat' told, of a regular file (a FIFO read once is
                 not read again) */
  } src;
  int worker;                 /* executor thread (1..n), 0: Lua thread */
  lua_Integer token;          /* token of the thread waiting for it */
};

/* search.c: run a job to completion (executor thread) */
void ur_job_run (ur_job *job, ur_arena *a);
/* search.c: free a job and all it holds (any thread) */
void ur_job_free (ur_job *job);
/* search.c: is the Lua file 'job' found still the one it read?  (a
   'stat' of it) */
int ur_src_same (const ur_job *job);
/* search.c: would a search of 'name' in 'path' now find a file before
   'file' (the one a finished prefetch found)?  (opens of the
   templates before it) */
int ur_src_earlier (const char *name, const char *path, const char *file);

/* hash.c: the content hash, fed bytes in slices of any size */
typedef struct ur_hasher {
  uint64_t h, n, tail;  /* state, bytes fed, the last n % 8 of them */
} ur_hasher;

void ur_hash_init (ur_hasher *s);
void ur_hash_add (ur_hasher *s, const void *p, size_t n);
uint64_t ur_hash_end (const ur_hasher *s);
/* hash.c: the content hash of 'n' bytes at 'p' */
uint64_t ur_hash (const void *p, size_t n);

/* what 'ur_compile' read of a source file */
typedef struct ur_srcsum {
  int dohash;      /* in: hash the bytes (a cache entry may be written) */
  ur_hasher hash;  /* of every byte read, in order (if 'dohash') */
  uint64_t n;     /* number of bytes read */
  int binary;     /* the file was a binary chunk */
  int whole;      /* compiled, a text chunk read up to its end */
} ur_srcsum;

/* most names a job collects for prefetch, and the longest one */
#define UR_MAXPREFETCH  64
#define UR_MAXPFNAME    255

/* scan.c: a scanner for `require "literal"` in source text, fed
   bytes in any slices; the names go to 'job->prefetch' */
typedef struct ur_scan {
  ur_job *job;     /* where names go; NULL: scan nothing */
  int st;          /* state */
  int quote;       /* the opening quote of the name */
  int paren;       /* the name is in parentheses: ')' or ',' next */
  size_t nname;    /* length of the name being read */
  char name[UR_MAXPFNAME + 1];
  char tail[7];    /* the last bytes fed (a word cut by a boundary) */
  int ntail;
  int dash;        /* the last byte fed was '-' */
  int dashes;      /* the line being read holds "--" so far */
  uint64_t seen;   /* bytes fed so far */
} ur_scan;

void ur_scan_init (ur_scan *sc, ur_job *job);
void ur_scan_feed (ur_scan *sc, const char *p, size_t n);

/* compile.c: time (ns) the calling thread's last compile spent reading
   its file */
uint64_t ur_compile_readns (void);
/* compile.c: compile file 'file', open as 'f' (closed), in 'W',
   streaming it: 1 and bytecode in 'code', or 0 and the message of
   'luaL_loadfilex' in 'err'; what was read goes to 'sum', and through
   'sc' (if not NULL) when it is a text chunk */
int ur_compile (lua_State *W, const char *file, FILE *f, ur_buf *code,
                ur_buf *err, ur_srcsum *sum, ur_scan *sc);
/* compile.c: push the Lua chunk that 'job' found: its bytecode (a
   worker's, or the cache's), else (an 'inplace' job that ran) its
   open file compiled here as
   luaL_loadfilex(L, file, NULL) would, collecting names for prefetch
   and handing the bytecode to the cache after a miss.  Returns the
   status of 'lua_load', the chunk or its message pushed */
int ur_job_load (lua_State *L, ur_job *job);


/* cache.c: a look-up in the bytecode cache, and what writing the
   entry after a miss needs ('ur_cache_get' fills it in) */
typedef struct ur_cachekey {
  int write;            /* after a miss, may an entry be written? */
  int dirfd;            /* the cache directory, or -1 (none yet) */
  const char *dir;      /* its path (kept for the life of the process) */
  const char *name;     /* the source as found (chunk name minus '@') */
  char *abspath;        /* its absolute path (malloc'ed), or NULL */
  char entry[24];       /* the entry's file name in 'dir' */
  uint64_t size;        /* the source's size and mtime (fstat) */
  int64_t msec, mnsec;
} ur_cachekey;

/* cache.c: look file 'file', open as 'f' and not read yet, up in the
   cache (executor thread).  A hit returns 1 with the bytecode, in a
   malloc'ed block, in '*code' and '*len'; a miss returns 0, 'f'
   untouched.  Either way 'ur_cache_done' must follow.  The source,
   when read (to check it), goes through 'sc' too. */
int ur_cache_get (ur_cachekey *k, const char *file, FILE *f, char **code,
                  size_t *len, ur_scan *sc);
/* cache.c: after a miss, store 'len' bytes of 'code', compiled from
   the source read as 'sum' says (when it may: else nothing happens) */
void ur_cache_put (ur_cachekey *k, const char *code, size_t len,
                   const ur_srcsum *sum);
/* cache.c: free what 'k' holds */
void ur_cache_done (ur_cachekey *k);
/* cache.c: 'ur_cache_put' on an executor thread, later (any thread;
   'worker': the caller is an executor thread): takes over 'code'
   (malloc'ed) and what 'k' holds, and frees both whatever happens, as
   'ur_cache_done' would */
void ur_cache_putlater (ur_cachekey *k, char *code, size_t len,
                        const ur_srcsum *sum, int worker);
/* cache.c: a write job's work (executor thread), and its freeing */
void ur_cache_runwrite (ur_cachewrite *w);
void ur_cache_freewrite (ur_cachewrite *w);
/* cache.c: the counts so far: look-ups that hit, that missed, and
   entries written (any thread) */
void ur_cache_counts (unsigned long *hits, unsigned long *misses,
                      unsigned long *writes);
/* cache.c: set the header of this Lua's dumps, which every entry's
   bytecode must start with, from a dump by 'L' (once; under
   cachedir.c's lock) */
void ur_cache_setrefhdr (lua_State *L);
/* cachedir.c: make directory 'dir' and its missing parents, 0700, never
   inside another user's directory (any thread) */
void ur_cache_makedirs (const char *dir);
/* cachedir.c: the cache directory in use, or NULL: off (any thread) */
const char *ur_cache_dir (void);
/* cachedir.c: 'path' made absolute against the working directory
   (malloc'ed), or NULL */
char *ur_cache_absolute (const char *path);
/* cachedir.c: add 'setcache' and 'cachestats' to the table at the top
   and set the process's cache directory from the environment, once */
void ur_cache_register (lua_State *L);

/* clib.c: dlopen 'file' and find the open function of 'name' */
int ur_clib_load (const char *file, const char *name, void **lib,
                  lua_CFunction *open, ur_buf *err);
/* clib.c: error codes of 'ur_clib_load' (as in loadlib.c) */
#define UR_ERRLIB   1
#define UR_ERRFUNC  2
#define UR_ERRMEM   3   /* out of memory: no library is left open */
/* clib.c: close a library handle that nobody kept */
void ur_clib_close (void *lib);
/* clib.c: hand a library handle to registry._CLIBS (Lua thread);
   0 and an error pushed if _CLIBS is no table */
int ur_clib_keep (lua_State *L, const char *file, void *lib);

/* }====================================================== */


/* {======================================================
** Executor (executor.c, execlife.c, execpf.c)
**
** It survives 'fork': in the child, jobs that were queued or running
** in the parent are run (again, from the start) by new workers, and
** complete for their owners.  The loop that their completion signals
** wake is the owner's business: libuv wants 'uv_loop_fork' called on
** it in the child.
** ======================================================= */

/* queue 'job'; its 'async' (if any) is signalled when it is done */
int ur_exec_submit (ur_job *job);
/* block the calling thread until 'job' is done */
void ur_exec_wait (ur_job *job);
/* the owner lets go: cancel if queued, orphan if running, else free */
void ur_exec_release (ur_job *job);
/* is 'job' done?  (no blocking) */
int ur_exec_isdone (ur_job *job);
/* detach the completion signal of 'job' (before closing it) */
void ur_exec_detach (ur_job *job);
/* give 'job' a new completion signal; 1 if it is done already */
int ur_exec_attach (ur_job *job, uv_async_t *async);
/* number of executor threads (starts them on first call) */
int ur_exec_threads (void);
/* take a queued 'job' back (1: it is the owner's again, UR_NEW) */
int ur_exec_takeback (ur_job *job);
/* run a job taken back on the calling thread; it is then done */
void ur_exec_runhere (ur_job *job);
/* queue 'job' that nobody owns: the worker frees it when done */
int ur_exec_submitdetached (ur_job *job);
/* take back the first queued prefetch job of 'owner' (see
   'ur_exec_takeback'), or NULL if none */
ur_job *ur_exec_takeprefetch (const void *owner);
/* take up to 'max' of the done prefetches of 'owner' that found names
   and were not taken yet (a sweep expands them); returns how many */
int ur_exec_takeswept (const void *owner, ur_job **out, int max);
/* has 'owner' such prefetches to take? */
int ur_exec_hasswept (const void *owner);
/* bytes of bytecode that done prefetch jobs, not adopted or released
   yet, hold: all owners' (a bound for each's) */
size_t ur_exec_pfheld (void);
/* somebody waits for 'job' now: it goes before every prefetch */
void ur_exec_promote (ur_job *job);
/* wait for 'job', running queued prefetch jobs of its owner meanwhile */
void ur_exec_help (ur_job *job);
/* wait until every cache write job queued so far is done: writes the
   queued ones itself, waits at most 2 s for those running */
void ur_exec_flush (void);
/* signal 'a' when a prefetch that found names is done; stop that */
void ur_exec_setpfwake (uv_async_t *a);
void ur_exec_droppfwake (uv_async_t *a);

/* }====================================================== */


/* {======================================================
** Runtime: the per-state side (runtime.c owns the record, its jobs and
** timers; loop.c the loop half, sched.c the scheduler half; one
** 'ur_runtime' per lua_State, in the registry)
** ======================================================= */

enum { UR_WAIT_TASKS, UR_WAIT_ANY };  /* who may wait by yielding */

typedef struct ur_wakeh ur_wakeh;  /* the runtime's wake-up handle */
typedef struct ur_timer ur_timer;  /* a timeout (runtime.c) */

typedef struct ur_runtime {
  lua_State *cb;        /* thread on which loop callbacks call Lua */
  uv_loop_t *loop;      /* loop in use; NULL until first needed */
  const char *kind;     /* "host", "luv" or "own" */
  uv_loop_t own;        /* our own loop, when kind is "own" */
  ur_wakeh *wake;       /* the one async handle on 'loop', or NULL */
  int running;          /* inside 'uvrequire.run' */
  int inturn;           /* inside the wake-up callback */
  uint64_t turnstart;   /* when the scheduler's current turn began */
  int delivering;       /* the turn delivers completions: a token
                           readied now needs no signal */
  int closed;           /* state is closing: nothing new starts */
  ur_job *jobs;         /* jobs in flight (lnext/lprev) */
  int njobs;
  /* scheduler (sched.c, tasks.c) */
  int mode;             /* UR_WAIT_* */
  lua_Integer seq;      /* last token handed out */
  lua_Integer *ring;    /* ready queue of tokens (FIFO) */
  size_t rhead, rlen, rcap;
  size_t ntokens;       /* live tokens: each may be queued twice */
  lua_CFunction turn;   /* the scheduler's turn, called on the loop */
  lua_CFunction ontimer;  /* called on the loop as ontimer(id) */
  ur_timer *timers;     /* timers running (next/prev) */
  long pid;             /* the fork generation that set the loop up
                           (another: renew it; loop.c) */
  /* observability (stats.c) */
  int detect;           /* blocking requires: 0 off, 1 warn, 2 strict */
  int importtime;       /* print the importtime table */
  int blocking;         /* inside a reported blocking require */
  /* the innermost coroutine the scheduler is resuming (sched.c), and
     when: a value of 'tick', which also stamps a load's driver taking it
     (ur_load.dseq): see 'ur_load_inbody' */
  lua_State *rsco;
  uint64_t rsseq, tick;
} ur_runtime;

/* the wake-up handle; 'h' first so that a handle is a 'ur_wakeh' */
/*
** What 'data' of a handle of ours on luv's loop points to: a record
** laid out as luv's 'luv_handle_t' (luv/lhandle.h, stable since luv
** 1.9), which luv's 'uv.walk' and its loop's __gc read from every
** handle on the loop.  'ref' names a registry slot (a negative key,
** which 'luaL_unref' leaves alone) that holds what 'uv.walk' shows for
** it; no callback ('LUA_NOREF'); 'ctx' is luv's context (loop.c).
*/
typedef struct ur_luvdata {
  int ref;
  int callbacks[2];
  void *ctx;
  void *extra;
  void *extra_gc;
} ur_luvdata;

struct ur_wakeh {
  uv_async_t h;
  ur_runtime *rt;       /* NULL once the runtime let go of it */
  ur_luvdata luv;       /* its 'data' on luv's loop */
};

/* runtime.c */
ur_runtime *ur_runtime_get (lua_State *L);
int ur_runtime_submit (lua_State *L, ur_runtime *rt, ur_job *job);
void ur_runtime_drop (ur_runtime *rt, ur_job *job);
int ur_runtime_adopt (ur_runtime *rt, ur_job *job);
ur_job *ur_runtime_nextdone (ur_runtime *rt);
/* start a timer calling 'rt->ontimer(id)' after 'ms'; may raise */
void ur_runtime_timer (lua_State *L, ur_runtime *rt, uint64_t ms,
                       lua_Integer id);
/* stop timer 'id' if it is still running */
void ur_runtime_untimer (ur_runtime *rt, lua_Integer id);
/* loop.c */
uv_loop_t *ur_runtime_loop (lua_State *L, ur_runtime *rt);
/* loop.c: set 'data' of handle 'h' of ours, just made on the loop in
   use: 'd' made what luv expects if that loop is luv's, else NULL */
void ur_runtime_handledata (lua_State *L, ur_runtime *rt, uv_handle_t *h,
                            ur_luvdata *d);
void ur_runtime_signal (ur_runtime *rt);
void ur_runtime_refresh (ur_runtime *rt);
/* is a loop that uvrequire serves running now (luv's, ours, or ours
   calling back)? */
int ur_runtime_running (lua_State *L, ur_runtime *rt);
/* leave the loop in use: close the handle; close our own loop */
void ur_runtime_leaveloop (ur_runtime *rt);


/* }====================================================== */


/* {======================================================
** Scheduler (sched.c; tasks.c: who may yield, the error sink, the
** Lua layer's functions)
** ======================================================= */

/* create registry table 'key' (weak 'mode', if any) unless it exists */
void ur_regtable (lua_State *L, const char *key, const char *mode);
/* is the running thread a task's? */
int ur_sched_istask (lua_State *L);
/* may the running thread wait by yielding? */
int ur_sched_cansuspend (lua_State *L);
/* is the running thread in a turn of 'rt' that still has time? */
int ur_sched_intime (ur_runtime *rt);
/* a new token (no allocation) */
lua_Integer ur_sched_token (lua_State *L);
/* the running thread waits under 'tok' on the load at 'idx' (or on a
   task if 'idx' is 0); may raise (memory, no loop) */
void ur_sched_wait (lua_State *L, lua_Integer tok, int idx);
/* a waiting thread was resumed (by anyone): its token is spent */
int ur_sched_consume (lua_State *L, lua_Integer tok);
/* queue 'tok' to be resumed from the loop (never allocates) */
void ur_sched_ready (lua_State *L, lua_Integer tok);
/* the thread waiting under 'tok', pushed, or nothing and NULL */
lua_State *ur_sched_waiter (lua_State *L, lua_Integer tok);
/* the token 'co' waits under, or 0 */
lua_Integer ur_sched_tokenof (lua_State *L, lua_State *co);
/* push what 'co' waits on (a load record, false for a task), or nil */
int ur_sched_waitson (lua_State *L, lua_State *co);
/* resume 'co' now (synchronous drive); report an error it raises */
void ur_sched_resume (lua_State *L, lua_State *co);
int ur_sched_resumetask (lua_State *L, lua_State *co, int narg,
                         int *nres);
int ur_sched_waitsonme (lua_State *L, lua_State *co);
/* have the running thread's wait end, at the loop's next turn, with
   the error at the top (popped) if it is still waiting then; returns
   0 if it does not wait under a token now */
int ur_sched_cancel (lua_State *L, lua_State *co);
/* if the running thread's wait was cancelled, push the error: 1 */
int ur_sched_takecancel (lua_State *L);
/* a timeout for the running thread: cancel its wait with the error at
   the top (popped) after 'ms'; returns the timer's id (may raise) */
lua_Integer ur_sched_timeout (lua_State *L, double ms);
/* stop timeout 'id' (0: none) */
void ur_sched_untimeout (lua_State *L, lua_Integer id);
/* add the scheduler's functions and PENDING to the table at the top */
void ur_sched_register (lua_State *L);
/* push uvrequire.PENDING */
void ur_sched_pushpending (lua_State *L);
/* tasks.c: create its registry tables (for 'ur_sched_open') */
void ur_sched_opentasks (lua_State *L);
/* tasks.c: 'co' died of the error at its top while resumed: hand it to
   its task or the error sink, close its to-be-closed variables */
void ur_sched_died (lua_State *L, lua_State *co);

/* }====================================================== */


/* {======================================================
** Load records (load.c, guard.c, cycle.c, loaded.c)
** ======================================================= */

/* load states: searching (job in flight), chunk loaded and its body
   due, body running, ended */
enum { UR_LSEARCH, UR_LREADY, UR_LRUN, UR_LDONE, UR_LFAIL };

/* a load's timings for uvrequire.stats (uv_hrtime ns) */
typedef struct ur_load_stats {
  uint64_t t0, t1;      /* require began, load ended */
  uint64_t l0, l1;      /* chunk loading on the Lua thread */
  uint64_t b0;          /* body began */
  uint64_t wstart, wfound, wend;  /* the job on its worker */
  uint64_t search_ns, read_ns, compile_ns, insync_ns, childns;
  size_t bytes;
  const char *searcher; /* "preload", "lua", "c", "croot", "other" */
  int worker, depth, cached, stalled;
  int inplace;          /* loaded by luaL_loadfilex: load is compile */
} ur_load_stats;

typedef struct ur_load {
  ur_job *job;          /* job in flight or done, owned; or NULL */
  ur_runtime *rt;       /* runtime the job was submitted to */
  int state;            /* UR_L* */
  int next;             /* next searcher to try */
  int copen;            /* the loader is a C library's luaopen_ */
  int unprot;           /* its body runs unprotected (main thread) */
  int hadfalse;         /* LOADED[name] was false when it started */
  int pfcheck;          /* its job is a prefetch adopted before it ended:
                           is what it found still what a search finds? */
  size_t nfwhere;       /* it failed with "module not found", its first
                           nfwhere - 1 bytes the driver's position; or 0 */
  lua_State *driver;    /* thread driving the load, or NULL */
  int gone;             /* the driver was found collected: the next
                           'ur_load_find' hands the load over or ends it */
  lua_Integer dtoken;   /* token under which the driver waits, or 0 */
  uint64_t dseq;        /* when the driver took it (ur_runtime.tick) */
  ur_load_stats st;
} ur_load;

void ur_load_init (lua_State *L);
ur_load *ur_load_find (lua_State *L, const char *name);
lua_State *ur_load_driver (lua_State *L, int idx);
int ur_load_inbody (lua_State *L, int idx);
ur_load *ur_load_new (lua_State *L, const char *name);
/* a require frame's guard: its optional timeout */
typedef struct ur_guard {
  double ms;            /* timeout in ms, or < 0 for none */
  lua_Integer timer;    /* its timer's id once armed, or 0 */
  uint64_t blockt0;     /* a blocking require's start (detector), or 0 */
} ur_guard;

ur_guard *ur_load_guard (lua_State *L, int idx);
void ur_load_drive (lua_State *L, int idx, ur_load *ld);
void ur_load_takeover (lua_State *L, int idx, ur_load *ld);
int ur_load_cycle (lua_State *L, int idx);
int ur_load_nestedcycle (lua_State *L, int idx);
int ur_load_serve (lua_State *L, int x);
int ur_load_served (lua_State *L, int idx);
void ur_load_addwaiter (lua_State *L, int idx, lua_Integer tok);
void ur_load_dropjob (lua_State *L, ur_load *ld);
void ur_load_addmsg (lua_State *L, int idx);
void ur_load_pushmsgs (lua_State *L, int idx);
void ur_load_pushvalue (lua_State *L, int idx);
void ur_load_setloader (lua_State *L, int idx);
void ur_load_pushloader (lua_State *L, int idx);
void ur_load_unguard (lua_State *L, int idx);
void ur_load_succeed (lua_State *L, int idx);
void ur_load_fail (lua_State *L, int idx);
void ur_load_restorechain (lua_State *L, int g, int idx);
int ur_load_outcome (lua_State *L, int idx);
void ur_load_settoken (ur_load *ld, lua_Integer tok);
void ur_load_abandon (lua_State *L, int idx);

/* require.c / loop.c / sched.c / loaded.c: entry points of luaopen */
int ur_l_run (lua_State *L);
int ur_l_require (lua_State *L);
int ur_l_import_module (lua_State *L);
int ur_l_loopinfo (lua_State *L);
int ur_l_status (lua_State *L);
int ur_l_setloop (lua_State *L);
int ur_l_stdkind (lua_State *L);
void ur_require_init (lua_State *L);
/* stdsearch.c */
void ur_std_init (void);
int ur_std_kind (lua_State *L, int idx);
int ur_std_ispreload (lua_State *L, int idx);
int ur_std_buildjob (lua_State *L, int ss, int i, ur_load *ld);
int ur_searchers_kind (lua_State *L, int idx);
void ur_searchers_register (lua_State *L);
/* prefetch.c */
void ur_prefetch_after (lua_State *L, int ss, ur_job *job);
void ur_prefetch_sweep (lua_State *L, int ss);
void ur_prefetch_poll (lua_State *L);
int ur_prefetch_on (lua_State *L);
ur_job *ur_prefetch_take (lua_State *L, int ss, int i, ur_job *job);
void ur_prefetch_register (lua_State *L);
/* stats.c */
void ur_stats_begin (lua_State *L, int idx, int prev);
void ur_stats_job (ur_load *ld, ur_job *job);
void ur_stats_end (lua_State *L, int idx, int loaddata);
void ur_stats_pushsite (lua_State *L);
void ur_stats_reportblock (lua_State *L, const char *name, int site,
                           uint64_t ns);
void ur_stats_register (lua_State *L);
int ur_stats_blocks (lua_State *L, const char *name);
void ur_stats_watch (lua_State *L, int g);
void ur_stats_unwatch (lua_State *L, int g);
int ur_require_calledbystock (lua_State *L, int level);
void ur_loaded_guard (lua_State *L, int req);
int ur_loaded_foreign (lua_State *L, int idx);
void ur_sched_open (lua_State *L);

/* }====================================================== */


/* {======================================================
** The require frame (require.c, drive.c)
**
** The slow path of 'require' keeps this stack frame across yields:
**   1 name   2 LOADED   3 searchers   4 load record   5 guard
** ======================================================= */

#define LOADIDX   4
#define FRAME     5  /* the guard, to-be-closed: nothing goes below */

/* the record of this frame's load */
#define frameload(L)  ((ur_load *)lua_touserdata(L, LOADIDX))

/* drive.c: 'findloader' from the load's next searcher on; ends by
   calling the loader it finds, or by raising "module not found" */
int ur_require_findloader (lua_State *L);
/* drive.c: stack: ...; loader; loader data.  Run the loader */
int ur_require_callloader (lua_State *L);
/* drive.c: return the outcome of the ended load (raises its error) */
int ur_require_outcome (lua_State *L);
/* drive.c: a waiter waits (yields) for the load to end */
int ur_require_waitwaiter (lua_State *L);
/* drive.c: the load's job is on the executor, and the running thread
   cannot yield: finish it here, then take its results */
int ur_require_finishhere (lua_State *L, ur_load *ld);

/* }====================================================== */

#pragma GCC visibility pop

#endif
