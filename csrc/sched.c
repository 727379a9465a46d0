/*
** sched.c: the one scheduler of the Lua thread, and the one error
** sink.  Exactly one place resumes a coroutine that waits: the loop's
** turn ('turn', called by loop.c), in FIFO order, never nested inside another
** resume; and only a coroutine that still waits under the same token.
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
** Errors of coroutines resumed here have no resumer to go to.  A task's
** go to its handle (the Lua layer's hook); others to the sink: kept for
** 'uvrequire.run' while it runs, else 'uvrequire.on_error', else stderr.
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ur.h"
#include "uvrequire.h"


/* registry keys (by address) */
static const char TOKENS = 't';   /* token -> waiting thread */
static const char WAITING = 'w';  /* thread -> its token (weak keys) */
static const char WAITON = 'o';   /* thread -> what it waits on (weak) */
static const char TASKS = 'k';    /* thread -> task handle (ephemeron) */
static const char NOYIELD = 'n';  /* thread -> true: never yield (weak) */
static const char ERRORS = 'e';   /* errors kept for 'uvrequire.run' */
static const char DIED = 'd';     /* Lua layer's hook for dead tasks */
static const char CANCEL = 'c';   /* thread -> error ending its wait */
static const char TIMED = 'm';    /* timeout id -> thread (weak values) */
static const char TIMEMSG = 'g';  /* timeout id -> its error */

/* the value a waiting coroutine yields (uvrequire.PENDING) */
static const char PENDING = 'p';

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
  ur_regtable(L, &TASKS, "k");
  ur_regtable(L, &NOYIELD, "k");
  ur_regtable(L, &ERRORS, NULL);
  ur_regtable(L, &CANCEL, "k");
  ur_regtable(L, &TIMED, "v");
  ur_regtable(L, &TIMEMSG, NULL);
}



/* }====================================================== */


/* {======================================================
** Who may wait by yielding
** ======================================================= */

/* is thread 'L' in registry table 'key'? */
static int inset (lua_State *L, const char *key) {
  int in;
  pushtable(L, key);
  lua_pushthread(L);
  in = (lua_rawget(L, -2) != LUA_TNIL);
  lua_pop(L, 2);
  return in;
}


/* is the running thread a task's? */
int ur_sched_istask (lua_State *L) {
  return inset(L, &TASKS);
}


/*
** May the running thread wait by yielding?  Only if it can yield at
** all, was not put in 'sync' mode, and is a task (mode "tasks") or any
** coroutine (mode "any").  Everyone else runs imports in place.
*/
int ur_sched_cansuspend (lua_State *L) {
  ur_runtime *rt;
  if (!lua_isyieldable(L)) return 0;
  rt = ur_runtime_get(L);
  if (inset(L, &NOYIELD)) return 0;
  return rt->mode == UR_WAIT_ANY || inset(L, &TASKS);
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
** record at 'idx' (0: on a task).  Sets up the loop and the room in
** the ready queue; may raise (memory, no loop).  Stack: net zero.
*/
void ur_sched_wait (lua_State *L, lua_Integer tok, int idx) {
  ur_runtime *rt = ur_runtime_get(L);
  ur_runtime_loop(L, rt);
  reserve(L, rt, 2 * (rt->ntokens + 1));
  pushtable(L, &WAITON);
  lua_pushthread(L);
  if (idx != 0) lua_pushvalue(L, idx);
  else lua_pushboolean(L, 0);
  lua_rawset(L, -3);  /* WAITON[L] = load, or false */
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
  ur_runtime_signal(rt);
}

/* }====================================================== */


/* {======================================================
** Resuming, and where errors go
** ======================================================= */

/*
** Report 'msg' (at 'm', a traceback) with the value at 'x' (a task
** handle, or nil): kept for 'uvrequire.run' while it runs; else given
** to 'uvrequire.on_error'; else written to stderr.  Never raises.
*/
static void report (lua_State *L, int m, int x, const char *what) {
  ur_runtime *rt = ur_runtime_get(L);
  m = lua_absindex(L, m);
  x = lua_absindex(L, x);
  if (rt->running && lua_isnil(L, x)) {
    pushtable(L, &ERRORS);
    lua_pushvalue(L, m);
    lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    lua_pop(L, 1);
    return;
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, UVREQUIRE_ONERROR_KEY)
      == LUA_TFUNCTION) {
    lua_pushvalue(L, m);
    lua_pushvalue(L, x);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) return;
    fprintf(stderr, "uvrequire: error in the error handler: %s\n",
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  }
  lua_pop(L, 1);
  fprintf(stderr, "uvrequire: error in %s: %s\n", what,
          lua_tostring(L, m) ? lua_tostring(L, m) : "?");
  fflush(stderr);
}


/* protected part of 'died': (co) -> the Lua hook, or the sink */
static int l_died (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  const char *msg;
  int tb;
  lua_pushvalue(co, -1);
  lua_xmove(co, L, 1);  /* 2: the error object */
  if ((msg = lua_tostring(L, 2)) == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 2));
  luaL_traceback(L, co, msg, 0);
  tb = lua_gettop(L);  /* the traceback */
  pushtable(L, &TASKS);
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TNIL &&  /* a task: to its handle */
      lua_rawgetp(L, LUA_REGISTRYINDEX, &DIED) == LUA_TFUNCTION) {
    lua_pushvalue(L, -2);  /* task */
    lua_pushvalue(L, 2);  /* error */
    lua_pushvalue(L, tb);
    lua_call(L, 3, 0);
    return 0;
  }
  lua_pushnil(L);
  report(L, tb, -1, "coroutine");
  return 0;
}


/*
** Thread 'co' died with an error (at its top) while we resumed it:
** hand it to its task or the sink, then close its pending to-be-closed
** variables (so that loads it drove end).  Never raises.
*/
static void died (lua_State *L, lua_State *co) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, l_died);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "uvrequire: error in coroutine: %s\n",
            lua_tostring(co, -1) ? lua_tostring(co, -1) : "?");
  }
  lua_settop(L, top);
  lua_resetthread(co);
}


/* resume 'co' (suspended), from 'L'; route an error it raises */
static void resume (lua_State *L, lua_State *co) {
  int nres, status = lua_resume(co, L, 0, &nres);
  if (status == LUA_OK || status == LUA_YIELD)
    lua_pop(co, nres);
  else
    died(L, co);
}


/* resume 'co' now, for a synchronous require that drives its load */
void ur_sched_resume (lua_State *L, lua_State *co) {
  lua_Integer tok = ur_sched_tokenof(L, co);
  if (tok != 0) ur_sched_consume(L, tok);
  resume(L, co);
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
  ur_job *job;
  ur_prefetch_poll(L);  /* what finished prefetches found, ahead */
  while ((job = ur_runtime_nextdone(rt)) != NULL) {
    job->delivered = 1;
    if (job->token != 0) ur_sched_ready(L, job->token);  /* no raise */
  }
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
** the error) if 'co' does not wait under a token.
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
  lua_rotate(L, -3, -1);  /* CANCEL, co, error */
  lua_rawset(L, -3);  /* CANCEL[co] = error */
  lua_pop(L, 1);
  ur_sched_ready(L, tok);
  return 1;
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


/* {======================================================
** Entry points for the Lua layer
** ======================================================= */

/* core.setmode("tasks" | "any") */
static int l_setmode (lua_State *L) {
  static const char *const modes[] = {"tasks", "any", NULL};
  ur_runtime_get(L)->mode = luaL_checkoption(L, 1, NULL, modes);
  return 0;
}


/* core.settask(co, task): 'co' is a task's coroutine */
static int l_settask (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  lua_settop(L, 2);
  pushtable(L, &TASKS);
  lua_insert(L, 1);
  lua_rawset(L, 1);
  return 0;
}


/* core.ondied(fn): fn(task, err, traceback) when a task's thread dies */
static int l_ondied (lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &DIED);
  return 0;
}


/*
** core.setyield(thread, allowed): whether 'thread' may wait for an
** import by yielding.  Returns the previous setting.
*/
static int l_setyield (lua_State *L) {
  int before;
  luaL_checktype(L, 1, LUA_TTHREAD);
  pushtable(L, &NOYIELD);
  lua_pushvalue(L, 1);
  before = (lua_rawget(L, -2) == LUA_TNIL);
  lua_pop(L, 1);  /* pop old flag */
  lua_pushvalue(L, 1);
  if (lua_toboolean(L, 2)) lua_pushnil(L);
  else lua_pushboolean(L, 1);
  lua_rawset(L, -3);  /* NOYIELD[thread] = flag */
  lua_pushboolean(L, before);
  return 1;
}


/* core.cansuspend(): may the running thread wait by yielding? */
static int l_cansuspend (lua_State *L) {
  lua_pushboolean(L, ur_sched_cansuspend(L));
  return 1;
}


static int k_park (lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  ur_sched_consume(L, (lua_Integer)ctx);
  if (ur_sched_takecancel(L))
    return lua_error(L);
  return 0;
}


/*
** core.cancel(co, err): end the wait of 'co' (an import or a task) with
** error 'err' at the loop's next turn.  Returns false if it waits on
** nothing of uvrequire's.
*/
static int l_cancel (lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TTHREAD);
  co = lua_tothread(L, 1);
  lua_settop(L, 2);
  lua_pushboolean(L, ur_sched_cancel(L, co));
  return 1;
}


/*
** core.park(list): wait, by yielding, until woken through 'list' (a
** table to which the new token is appended) or resumed by anyone.
*/
static int l_park (lua_State *L) {
  lua_Integer tok;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isyieldable(L))
    return luaL_error(L, "attempt to yield from outside a coroutine");
  tok = ur_sched_token(L);
  lua_pushinteger(L, tok);
  lua_rawseti(L, 1, luaL_len(L, 1) + 1);
  ur_sched_wait(L, tok, 0);
  lua_pushlightuserdata(L, (void *)&PENDING);
  return lua_yieldk(L, 1, (lua_KContext)tok, k_park);
}


/* core.wakeall(list): queue every token in 'list' */
static int l_wakeall (lua_State *L) {
  lua_Integer i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    ur_sched_ready(L, lua_tointeger(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}


/* core.report(msg, task): hand 'msg' to the sink (see 'report') */
static int l_report (lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 2);
  report(L, 1, 2, lua_isnil(L, 2) ? "coroutine" : "task");
  return 0;
}


/* core.takeerrors(): the errors kept for 'run', oldest first */
static int l_takeerrors (lua_State *L) {
  pushtable(L, &ERRORS);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ERRORS);
  return 1;
}


static const luaL_Reg funcs[] = {
  {"setmode", l_setmode},
  {"settask", l_settask},
  {"ondied", l_ondied},
  {"setyield", l_setyield},
  {"cansuspend", l_cansuspend},
  {"park", l_park},
  {"wakeall", l_wakeall},
  {"report", l_report},
  {"cancel", l_cancel},
  {"takeerrors", l_takeerrors},
  {NULL, NULL}
};


/* add the scheduler's functions and PENDING to the table at the top */
void ur_sched_register (lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  lua_pushlightuserdata(L, (void *)&PENDING);
  lua_setfield(L, -2, "PENDING");
}


/* push PENDING */
void ur_sched_pushpending (lua_State *L) {
  lua_pushlightuserdata(L, (void *)&PENDING);
}

/* }====================================================== */
