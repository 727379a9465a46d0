/*
** sched.c: the one scheduler of the Lua thread.  Exactly one place
** resumes a coroutine that waits: the loop's turn ('turn', called by
** loop.c), in FIFO order, never nested inside another resume; and only
** a coroutine that still waits under the same token.
**
** A coroutine that waits (on an import, or on a task) gets a token,
** a fresh integer: TOKENS[token] = thread, WAITING[thread] = token,
** WAITON[thread] = what it waits on.  Whatever it waits for queues the
** token when it happens ('ur_sched_ready'); the turn looks the token up
** and resumes its thread if the token is still live.  Any resume (ours
** or anyone else's) spends the token first thing, in the continuation
** ('ur_sched_consume'): a coroutine that someone else resumed and that
** moved on is never resumed by us for its old wait.
**
** The ready queue is a ring of tokens in C memory.  Room for two
** entries per live token is reserved when the token is handed out (in
** the waiter's own frame, where a memory error belongs), so queueing
** never allocates: a completion can always be delivered.
**
** This file: tokens, the ready queue, the turn, cancelling a wait and
** timeouts.  tasks.c: who may wait by yielding, where errors go, and
** the functions of the Lua layer.
*/

#include <stdlib.h>

#include "ur.h"


/* registry keys (by address) */
static const char TOKENS = 't';   /* token -> waiting thread */
static const char WAITING = 'w';  /* thread -> its token (weak keys) */
static const char WAITON = 'o';   /* thread -> what it waits on (weak) */
static const char CANCEL = 'c';   /* thread -> error ending its wait */
static const char TIMED = 'm';    /* timeout id -> thread (weak values) */
static const char TIMEMSG = 'g';  /* timeout id -> its error */

/* at most this many ns of resumes in one loop turn */
#define TURN_BUDGET 1000000


/* {======================================================
** Tables
** ======================================================= */

/* create registry table 'key' (weak 'mode', if any) unless it exists */
void ur_regtable (lua_State *L, const char *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TNIL) {
    lua_newtable(L);
    if (mode != NULL) {
      lua_createtable(L, 0, 1);
      lua_pushstring(L, mode);
      lua_setfield(L, -2, "__mode");
      lua_setmetatable(L, -2);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  lua_pop(L, 1);
}


/* push registry table 'key' */
static void pushtable (lua_State *L, const char *key) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
}


static int turn (lua_State *L);
static int ontimer (lua_State *L);


/*
** Create the scheduler's registry tables (idempotent) and give the
** runtime its turn function.  Stack: net zero.
*/
void ur_sched_open (lua_State *L) {
  ur_runtime *rt = ur_runtime_get(L);
  rt->turn = turn;
  rt->ontimer = ontimer;
  ur_regtable(L, &TOKENS, NULL);
  ur_regtable(L, &WAITING, "k");
  ur_regtable(L, &WAITON, "k");
  ur_sched_opentasks(L);  /* tasks.c's */
  ur_regtable(L, &CANCEL, "k");
  ur_regtable(L, &TIMED, "v");
  ur_regtable(L, &TIMEMSG, NULL);
}

/* }====================================================== */


/* {======================================================
** Tokens and the ready queue
** ======================================================= */

lua_Integer ur_sched_token (lua_State *L) {
  return ++ur_runtime_get(L)->seq;
}


/* make room in the ring for 'n' entries more; raises on failure */
static void reserve (lua_State *L, ur_runtime *rt, size_t n) {
  size_t cap, i;
  lua_Integer *ring;
  if (rt->rcap - rt->rlen >= n) return;
  cap = rt->rcap ? rt->rcap : 16;
  while (cap - rt->rlen < n) cap *= 2;
  ring = (lua_Integer *)malloc(cap * sizeof(*ring));
  if (ring == NULL) luaL_error(L, "not enough memory");
  for (i = 0; i < rt->rlen; i++)  /* unroll the old ring */
    ring[i] = rt->ring[(rt->rhead + i) % rt->rcap];
  free(rt->ring);
  rt->ring = ring;
  rt->rhead = 0;
  rt->rcap = cap;
}


/*
** The running thread is about to wait under token 'tok' on the load
** record at 'idx', or the task coroutine at 'idx' (0: on a task not
** named).  Sets up the loop and the room in the ready queue; may raise
** (memory, no loop).  Stack: net zero.
*/
void ur_sched_wait (lua_State *L, lua_Integer tok, int idx) {
  ur_runtime *rt = ur_runtime_get(L);
  ur_runtime_loop(L, rt);
  reserve(L, rt, 2 * (rt->ntokens + 1));
  pushtable(L, &WAITON);
  lua_pushthread(L);
  if (idx != 0) lua_pushvalue(L, idx);
  else lua_pushboolean(L, 0);
  lua_rawset(L, -3);  /* WAITON[L] = load, coroutine, or false */
  pushtable(L, &WAITING);
  lua_pushthread(L);
  lua_pushinteger(L, tok);
  lua_rawset(L, -3);  /* WAITING[L] = tok */
  pushtable(L, &TOKENS);
  lua_pushthread(L);
  lua_rawseti(L, -2, tok);  /* TOKENS[tok] = L: live from here on */
  lua_pop(L, 3);
  rt->ntokens++;
}


/*
** Token 'tok' is spent (its thread was resumed, or is being resumed):
** forget it.  Returns 1 if it was still live: then whoever resumed the
** thread was not the scheduler (which spends it first).  Sets only
** nils: never allocates.  Stack: net zero.
*/
int ur_sched_consume (lua_State *L, lua_Integer tok) {
  ur_runtime *rt = ur_runtime_get(L);
  int live = 0;
  pushtable(L, &TOKENS);
  if (lua_rawgeti(L, -1, tok) == LUA_TTHREAD) {  /* live */
    lua_pushnil(L);
    lua_rawseti(L, -3, tok);  /* TOKENS[tok] = nil */
    pushtable(L, &WAITING);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) == LUA_TNUMBER && lua_tointeger(L, -1) == tok) {
      lua_pushvalue(L, -3);
      lua_pushnil(L);
      lua_rawset(L, -4);  /* WAITING[co] = nil */
      pushtable(L, &WAITON);
      lua_pushvalue(L, -4);
      lua_pushnil(L);
      lua_rawset(L, -3);  /* WAITON[co] = nil */
      lua_pop(L, 1);
    }
    lua_pop(L, 2);  /* pop WAITING[co], WAITING */
    rt->ntokens--;
    live = 1;
  }
  lua_pop(L, 2);  /* pop thread (or nil), TOKENS */
  return live;
}


/* the thread waiting under 'tok', pushed; or nothing and NULL */
lua_State *ur_sched_waiter (lua_State *L, lua_Integer tok) {
  pushtable(L, &TOKENS);
  if (lua_rawgeti(L, -1, tok) != LUA_TTHREAD) {
    lua_pop(L, 2);
    return NULL;
  }
  lua_remove(L, -2);
  return lua_tothread(L, -1);
}


/* the token under which 'co' waits, or 0 */
lua_Integer ur_sched_tokenof (lua_State *L, lua_State *co) {
  lua_Integer tok = 0;
  pushtable(L, &WAITING);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (lua_rawget(L, -2) == LUA_TNUMBER) tok = lua_tointeger(L, -1);
  lua_pop(L, 2);
  return tok;
}


/* push what 'co' waits on: a load record, false (a task), or nil */
int ur_sched_waitson (lua_State *L, lua_State *co) {
  int t;
  pushtable(L, &WAITON);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  t = lua_rawget(L, -2);
  lua_remove(L, -2);
  return t;
}


/*
** Queue token 'tok' to be resumed at the loop's next turn, if it is
** still live.  Never allocates (see 'reserve'); never raises.
*/
void ur_sched_ready (lua_State *L, lua_Integer tok) {
  ur_runtime *rt = ur_runtime_get(L);
  int live;
  pushtable(L, &TOKENS);
  live = (lua_rawgeti(L, -1, tok) == LUA_TTHREAD);
  lua_pop(L, 2);
  if (!live || rt->rcap == rt->rlen) return;  /* rcap: see 'reserve' */
  rt->ring[(rt->rhead + rt->rlen) % rt->rcap] = tok;
  rt->rlen++;
  if (!rt->delivering)  /* (the turn delivering runs it, or signals) */
    ur_runtime_signal(rt);
}

/* }====================================================== */


/* {======================================================
** Resuming
** ======================================================= */

/* resume 'co' (suspended), from 'L'; route an error it raises */
static void resume (lua_State *L, lua_State *co) {
  int nres, status = ur_sched_resumetask(L, co, 0, &nres);
  if (status == LUA_OK || status == LUA_YIELD)
    lua_pop(co, nres);
  else
    ur_sched_died(L, co);
}


/*
** lua_resume of a coroutine that runs on its own, not within the
** thread that resumes it: a task, or a waiter the scheduler resumes.
** While it runs, it is the innermost such ('rsco'), so that a body
** that resumed it does not count it in ('ur_load_inbody').
*/
int ur_sched_resumetask (lua_State *L, lua_State *co, int narg,
                         int *nres) {
  ur_runtime *rt = ur_runtime_get(L);
  lua_State *pco = rt->rsco;  /* (lua_resume returns, never jumps) */
  uint64_t pseq = rt->rsseq;
  int status;
  rt->rsco = co;
  rt->rsseq = ++rt->tick;
  status = lua_resume(co, L, narg, nres);
  rt->rsco = pco;
  rt->rsseq = pseq;
  return status;
}


/* resume 'co' now, for a synchronous require that drives its load */
void ur_sched_resume (lua_State *L, lua_State *co) {
  lua_Integer tok = ur_sched_tokenof(L, co);
  if (tok != 0) ur_sched_consume(L, tok);
  resume(L, co);
}


/*
** Is the running thread resumed by a turn of 'rt' that still has time
** (within TURN_BUDGET)?  Then a wait that is over already may go on at
** once instead of yielding for the next turn.
*/
int ur_sched_intime (ur_runtime *rt) {
  return rt->inturn > 0 && uv_hrtime() - rt->turnstart < TURN_BUDGET;
}


/*
** The loop's turn (on the callback thread, protected): deliver the
** completions of finished jobs, then resume the coroutines that were
** ready when the turn began, oldest first, within TURN_BUDGET; the rest
** (and those made ready meanwhile) wait for the next turn.
*/
static int turn (lua_State *L) {
  ur_runtime *rt = ur_runtime_get(L);
  uint64_t start = uv_hrtime();
  size_t n;
  rt->turnstart = start;
  ur_job *job;
  ur_prefetch_poll(L);  /* what finished prefetches found, ahead */
  rt->delivering = 1;  /* (the tokens readied now are run below) */
  while ((job = ur_runtime_nextdone(rt)) != NULL) {
    job->delivered = 1;
    if (job->token != 0) ur_sched_ready(L, job->token);  /* no raise */
  }
  rt->delivering = 0;
  for (n = rt->rlen; n > 0 && rt->rlen > 0; n--) {
    lua_Integer tok = rt->ring[rt->rhead];
    lua_State *co;
    rt->rhead = (rt->rhead + 1) % rt->rcap;
    rt->rlen--;
    if ((co = ur_sched_waiter(L, tok)) == NULL) continue;  /* spent */
    lua_pop(L, 1);  /* still anchored by whatever it waits on */
    ur_sched_consume(L, tok);
    if (lua_status(co) != LUA_YIELD) continue;  /* closed, or running */
    resume(L, co);
    if (uv_hrtime() - start > TURN_BUDGET) break;
  }
  if (rt->rlen > 0) ur_runtime_signal(rt);
  return 0;
}

/* }====================================================== */


/* {======================================================
** Cancelling a wait, and timeouts
** ======================================================= */

/*
** End the wait of 'co' with the error at the top (popped): at the
** loop's next turn it is resumed and raises it.  Returns 0 (and pops
** the error) if 'co' does not wait under a token.  A wait ends once:
** if it was cancelled already (CANCEL[co] is set only during the wait:
** every continuation takes it), its token is queued and its first
** error stays, so that a token is queued at most twice (its end, and
** this) and the room 'reserve' made always holds.
*/
int ur_sched_cancel (lua_State *L, lua_State *co) {
  lua_Integer tok = ur_sched_tokenof(L, co);
  if (tok == 0) {
    lua_pop(L, 1);
    return 0;
  }
  pushtable(L, &CANCEL);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (lua_rawget(L, -2) != LUA_TNIL) {  /* cancelled already */
    lua_pop(L, 3);  /* pop CANCEL[co], CANCEL, the error */
    return 1;
  }
  lua_pop(L, 1);  /* pop the nil */
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_rotate(L, -3, -1);  /* CANCEL, co, error */
  lua_rawset(L, -3);  /* CANCEL[co] = error */
  lua_pop(L, 1);
  ur_sched_ready(L, tok);
  return 1;
}


/*
** Would the running thread wait on itself by waiting on 'co' (a load's
** driver, or a task's coroutine)?  Follows what each thread waits on: a
** load, to its driver; a task (core.park), to its coroutine.  A thread
** whose wait is over (cancelled, or on a load that ended or a task
** whose coroutine is dead: it is about to move on), or that waits on
** nothing, ends the chain.  Never raises.
*/
int ur_sched_waitsonme (lua_State *L, lua_State *co) {
  int hops, t;
  lua_State *prev = NULL;
  for (hops = 0; co != NULL && co != prev && hops < 100000; hops++) {
    prev = co;  /* (a driver waits on its own job: the chain ends) */
    if (co == L) return 1;
    pushtable(L, &CANCEL);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    t = lua_rawget(L, -2);
    lua_pop(L, 2);
    if (t != LUA_TNIL) return 0;  /* cancelled */
    t = ur_sched_waitson(L, co);  /* (kept: WAITON, DRIVERS hold them) */
    if (t == LUA_TUSERDATA &&
        ((ur_load *)lua_touserdata(L, -1))->state < UR_LDONE)
      co = ur_load_driver(L, -1);
    else if (t == LUA_TTHREAD && (lua_tothread(L, -1) == L ||
                                  lua_status(lua_tothread(L, -1)) ==
                                  LUA_YIELD))
      co = lua_tothread(L, -1);  /* (a task that waits in turn, or L) */
    else
      co = NULL;
    lua_pop(L, 1);
  }
  return 0;
}


/* was the running thread's wait cancelled?  Then push the error, 1 */
int ur_sched_takecancel (lua_State *L) {
  pushtable(L, &CANCEL);
  lua_pushthread(L);
  if (lua_rawget(L, -2) == LUA_TNIL) {
    lua_pop(L, 2);
    return 0;
  }
  lua_pushthread(L);
  lua_pushnil(L);
  lua_rawset(L, -4);  /* CANCEL[L] = nil */
  lua_remove(L, -2);  /* remove CANCEL */
  return 1;
}


/*
** A timeout for the running thread: after 'ms', its wait (if it is
** waiting) ends with the error at the top (popped).  Returns the id for
** 'ur_sched_untimeout'.  May raise.
*/
lua_Integer ur_sched_timeout (lua_State *L, double ms) {
  ur_runtime *rt = ur_runtime_get(L);
  lua_Integer id = ++rt->seq;
  pushtable(L, &TIMEMSG);
  lua_rotate(L, -2, 1);
  lua_rawseti(L, -2, id);  /* TIMEMSG[id] = error */
  pushtable(L, &TIMED);
  lua_pushthread(L);
  lua_rawseti(L, -2, id);  /* TIMED[id] = L */
  lua_pop(L, 2);
  ur_runtime_timer(L, rt, (uint64_t)(ms < 0 ? 0 : ms), id);
  return id;
}


/* forget timeout 'id': stop its timer.  Sets nils only. */
void ur_sched_untimeout (lua_State *L, lua_Integer id) {
  if (id == 0) return;
  ur_runtime_untimer(ur_runtime_get(L), id);
  pushtable(L, &TIMEMSG);
  lua_pushnil(L);
  lua_rawseti(L, -2, id);
  pushtable(L, &TIMED);
  lua_pushnil(L);
  lua_rawseti(L, -2, id);
  lua_pop(L, 2);
}


/* a timeout fired (loop, protected): (id) */
static int ontimer (lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  lua_State *co;
  pushtable(L, &TIMED);
  lua_rawgeti(L, -1, id);
  co = lua_tothread(L, -1);
  pushtable(L, &TIMEMSG);
  lua_rawgeti(L, -1, id);  /* the error */
  if (co != NULL) ur_sched_cancel(L, co);  /* pops it */
  ur_sched_untimeout(L, id);
  return 0;
}

/* }====================================================== */
