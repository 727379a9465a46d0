/*
** drive.c: the require frame of a load's driver (require.c): the
** searchers loop ('findloader' from the load's next searcher on), the
** job and the wait for it, its results, and the loader's call.
**
** Every require frame that loads (the driver's) catches the errors of
** searchers and loader itself ('lua_pcall'/'lua_pcallk', no extra C
** level over stock's 'lua_call'), so a load always ends, even in a
** coroutine that dies of the error.  A module body may yield (its own
** nested requires) only in a task; the luaopen_ of a C library never.
**
** The stack frame it works on, kept across yields: see ur.h ("The
** require frame").
*/

#include "ur.h"


#define SPLIT_BYTES  (64 * 1024)  /* bytecode size from which to split */


static int k_wait (lua_State *L, int status, lua_KContext ctx);
static int k_loaded (lua_State *L, int status, lua_KContext ctx);
static int afterjob (lua_State *L);
static int k_searched (lua_State *L, int status, lua_KContext ctx);
static int searched (lua_State *L, int status);
static int step (lua_State *L);


/* {======================================================
** Searching
** ======================================================= */

/*
** Run the load's job here, in place, as stock would (timed): search,
** and the Lua thread then loads the file itself ('ur_job_load'), from
** the bytecode cache if it has it.  The source is read once, and the
** names it requires are collected for prefetch on the way.
*/
static void runhere (lua_State *L, ur_load *ld) {
  ur_job *job = ld->job;
  job->inplace = 1;
  job->scan = ur_prefetch_on(L);
  job->t_start = uv_hrtime();
  ur_job_run(job, NULL);
  job->t_end = uv_hrtime();
  ld->st.insync_ns += job->t_end - job->t_start;
}


/*
** The driver's load failed with the error at the top: end it (waiters
** get this very error), restore the chain, report it if it blocked the
** loop (here: a coroutine that dies of this error is not closed, so
** its guard may close late), and raise the error.
*/
static int failraise (lua_State *L) {
  ur_load_fail(L, LOADIDX);
  ur_load_restorechain(L, FRAME, LOADIDX);
  ur_stats_unwatch(L, FRAME);
  return lua_error(L);
}


/*
** Wait by yielding under 'tok'; 'k_wait' looks again when resumed.  The
** frame's timeout, if any, starts with its first wait.
*/
static int yieldwait (lua_State *L, lua_Integer tok) {
  ur_guard *g = (ur_guard *)lua_touserdata(L, FRAME);
  if (g->ms >= 0 && g->timer == 0) {
    if (g->ms == (double)(lua_Integer)g->ms)
      lua_pushfstring(L, "import of '%s' timed out after %I ms",
                      lua_tostring(L, 1), (LUAI_UACINT)g->ms);
    else
      lua_pushfstring(L, "import of '%s' timed out after %f ms",
                      lua_tostring(L, 1), (LUAI_UACNUMBER)g->ms);
    g->timer = ur_sched_timeout(L, g->ms);  /* pops the message */
  }
  ur_sched_pushpending(L);
  return lua_yieldk(L, 1, (lua_KContext)tok, k_wait);
}


/* the driver waits for its job, or for its body's turn */
static int waitdriver (lua_State *L) {
  ur_load *ld = frameload(L);
  lua_Integer tok = ur_sched_token(L);
  ur_sched_wait(L, tok, LOADIDX);
  ur_load_settoken(ld, tok);
  if (ld->state == UR_LREADY || (ld->job && ur_exec_isdone(ld->job)))
    ur_sched_ready(L, tok);  /* due already: at the next turn */
  return yieldwait(L, tok);
}


/* a waiter waits for the load to end */
int ur_require_waitwaiter (lua_State *L) {
  lua_Integer tok = ur_sched_token(L);
  ur_load_addwaiter(L, LOADIDX, tok);
  ur_sched_wait(L, tok, LOADIDX);
  return yieldwait(L, tok);
}


/* return the outcome of the ended load (raises its error) */
int ur_require_outcome (lua_State *L) {
  int n;
  ur_stats_unwatch(L, FRAME);
  n = ur_load_outcome(L, LOADIDX);
  if (lua_toboolean(L, lua_upvalueindex(2))) {  /* import_module */
    lua_pop(L, n - 1);
    return 1;
  }
  return n;
}


/*
** The load's job is on the executor and the running thread cannot
** wait by yielding: take it back and run it here if it is still
** queued, else wait for its worker (then it holds bytecode); then take
** its results.
*/
int ur_require_finishhere (lua_State *L, ur_load *ld) {
  if (ur_exec_takeback(ld->job))
    runhere(L, ld);
  else
    ur_exec_help(ld->job);
  return afterjob(L);
}


/*
** The load's job is a prefetch's, adopted (prefetch.c): wait for it as
** for a job submitted now.  A task yields (at once ready if the job is
** done), unless the job is done and the loop's turn that runs the task
** still has time: then it goes on at once; anyone else finishes it
** here.
*/
static int waitprefetched (lua_State *L, ur_load *ld) {
  if (ur_sched_cansuspend(L)) {
    lua_Integer tok;
    if (ur_exec_isdone(ld->job) && ur_sched_intime(ld->rt))
      return ur_require_finishhere(L, ld);  /* done, and the turn has
                                               time: no need to yield */
    tok = ur_sched_token(L);
    ur_sched_wait(L, tok, LOADIDX);  /* sets up the loop */
    if (ld->rt->wake != NULL) {
      ur_exec_promote(ld->job);  /* waited for now: before prefetches */
      ur_load_settoken(ld, tok);
      if (ur_runtime_adopt(ld->rt, ld->job))
        ur_sched_ready(L, tok);  /* done already: at the next turn */
      return yieldwait(L, tok);
    }
    ur_sched_consume(L, tok);
  }
  return ur_require_finishhere(L, ld);
}


/*
** 'findloader' from the load's next searcher on.  Ends by calling the
** loader it finds, or by raising "module not found".  May yield.
*/
int ur_require_findloader (lua_State *L) {
  ur_load *ld = frameload(L);
  const char *name = lua_tostring(L, 1);
  int susp = ur_sched_cansuspend(L);  /* may it wait by yielding? */
  ur_job *pj;
  int first;
  for (;; ld->next++) {
    if (lua_rawgeti(L, 3, ld->next) == LUA_TNIL) {  /* no more */
      lua_pop(L, 1);
      luaL_where(L, 1);  /* as 'luaL_error': the caller's position */
      ur_load_pushmsgs(L, LOADIDX);
      lua_pushfstring(L, "%smodule '%s' not found:%s", lua_tostring(L, -2),
                      name, lua_tostring(L, -1));
      ld->nfwhere = lua_rawlen(L, -3) + 1;  /* (waiters: their own) */
      return failraise(L);
    }
    if (ur_std_kind(L, -1) < 0) {  /* a searcher for the Lua thread */
      int n;
      ld->st.searcher = ur_std_ispreload(L, -1) ? "preload" : "other";
      ld->st.l0 = uv_hrtime();  /* (a loader it finds is loaded now) */
      lua_pushstring(L, name);
      if (!susp)  /* call it, as stock (protected) */
        n = searched(L, lua_pcall(L, 1, 2, 0));
      else
        n = searched(L, lua_pcallk(L, 1, 2, 0, 0, k_searched));
      if (n >= 0) return n;
      continue;  /* (a loop, not a call: 100,000 searchers are fine) */
    }
    lua_pop(L, 1);  /* pop searcher */
    first = ld->next;
    ld->next = ur_std_buildjob(L, 3, ld->next, ld);
    ur_prefetch_sweep(L, 3);  /* the executor goes on ahead */
    if ((pj = ur_prefetch_take(L, 3, first, ld->job)) != NULL) {
      ur_job_free(ld->job);  /* (never submitted) */
      ld->job = pj;  /* a prefetch's: only the Lua step */
      ld->next = first + 1;  /* C steps, if needed, in a job of their own */
      ld->pfcheck = !ur_exec_isdone(pj);  /* (a done one was checked) */
      return waitprefetched(L, ld);
    }
    ld->job->scan = susp && ur_prefetch_on(L);
    if (susp) {
      lua_Integer tok = ur_sched_token(L);
      ur_sched_wait(L, tok, LOADIDX);  /* sets up the loop */
      if (ur_runtime_submit(L, ld->rt, ld->job) == 0) {
        ur_load_settoken(ld, tok);
        return yieldwait(L, tok);
      }
      ur_sched_consume(L, tok);  /* no executor: run it here */
    }
    runhere(L, ld);
    return afterjob(L);
  }
}


/*
** A searcher called on the Lua thread returned (stack: ...; its two
** results) or raised.  In a task it may have yielded (calling the
** standard searchers, which then wait for the executor): a load taken
** over meanwhile is now a waiter's.  A loader found runs (a task's at
** the loop's next turn); a message is kept.  Returns the frame's
** results, or -1: go on with the next searcher.
*/
static int searched (lua_State *L, int status) {
  ur_load *ld = frameload(L);
  if (ld->driver != L) {  /* taken over while it searched: a waiter */
    lua_settop(L, FRAME);
    return step(L);
  }
  if (status != LUA_OK && status != LUA_YIELD)
    return failraise(L);
  ld->st.l1 = uv_hrtime();
  ld->st.search_ns += ld->st.l1 - ld->st.l0;  /* the searcher's time */
  if (lua_isfunction(L, -2)) {  /* found a loader */
    if (status == LUA_YIELD && ur_sched_cansuspend(L)) {
      ur_load_setloader(L, LOADIDX);  /* body at the next turn */
      return waitdriver(L);
    }
    return ur_require_callloader(L);
  }
  else if (lua_isstring(L, -2)) {  /* searcher returned a message */
    lua_pop(L, 1);
    lua_pushliteral(L, "\n\t");
    lua_rotate(L, -2, 1);
    lua_concat(L, 2);
    ur_load_addmsg(L, LOADIDX);  /* pops it */
  }
  else
    lua_pop(L, 2);  /* no message */
  return -1;
}


/* continuation of a searcher that yielded (its C stack is gone) */
static int k_searched (lua_State *L, int status, lua_KContext ctx) {
  int n = searched(L, status);
  (void)ctx;
  if (n >= 0) return n;
  frameload(L)->next++;
  return ur_require_findloader(L);
}


/*
** Where this frame's load stands, after a resume or a takeover: an
** ended load gives its outcome; its driver goes on (job done: take its
** results; body due: run it) or waits on; a waiter served a value in a
** cycle takes it; anyone else waits on.
*/
static int step (lua_State *L) {
  ur_load *ld = frameload(L);
  if (ld->state == UR_LDONE || ld->state == UR_LFAIL)
    return ur_require_outcome(L);
  if (ld->driver == L) {
    if (ld->state == UR_LREADY) {  /* body is due */
      ur_load_pushloader(L, LOADIDX);
      return ur_require_callloader(L);
    }
    if (ld->job != NULL && ur_exec_isdone(ld->job))
      return afterjob(L);
    if (ld->job == NULL)  /* handed a load between searchers */
      return ur_require_findloader(L);
    return waitdriver(L);
  }
  if (ur_load_served(L, LOADIDX))
    return 1;  /* a cycle across threads was broken with its value */
  return ur_require_waitwaiter(L);
}


/*
** Resumed: the token is spent.  A wait cancelled (task:cancel, or a
** timeout) raises its error; the load goes on for others.  Resumed by
** the scheduler (or a synchronous require moving this thread along):
** take the next step.  A task that anyone else resumed yields again,
** to be resumed by the scheduler at its next turn.  (Other coroutines,
** in mode "any", are driven by their resumers: they take the next step
** if they can.)
*/
static int k_wait (lua_State *L, int status, lua_KContext ctx) {
  int foreign;
  (void)status;
  lua_settop(L, FRAME);  /* drop whatever the resumer passed */
  foreign = ur_sched_consume(L, (lua_Integer)ctx);
  if (ur_sched_takecancel(L)) {  /* cancelled, or timed out */
    ur_load_abandon(L, LOADIDX);
    return lua_error(L);
  }
  if (foreign && ur_sched_istask(L)) {
    lua_Integer tok = ur_sched_token(L);
    ur_sched_wait(L, tok, LOADIDX);
    ur_sched_ready(L, tok);  /* 'step' looks at the next turn */
    return yieldwait(L, tok);
  }
  return step(L);
}


/* push the chunk of a found Lua module: its bytecode, or its file */


/*
** The load's job was a prefetch, adopted before it ended, whose result
** may not be what a search finds now (it met a file not regular, or a
** file appeared before the one it found, or that one changed): drop it
** and search again, for real, from the Lua searcher (searcher 2: the
** only one whose prefetches are adopted).
*/
static int searchagain (lua_State *L, ur_load *ld) {
  ur_load_dropjob(L, ld);
  ld->pfcheck = 0;
  ld->next = 2;
  return ur_require_findloader(L);
}


/*
** The load's job is done: take its results.  Libraries it opened go to
** _CLIBS; a loader found is called (a task's Lua body at the loop's
** next turn, not in this one); a miss adds its messages and the search
** goes on.
*/
static int afterjob (lua_State *L) {
  ur_load *ld = frameload(L);
  ur_job *job = ld->job;
  int i, split;
  for (i = 0; i < job->nsteps; i++) {
    if (job->steps[i].lib != NULL) {
      void *lib = job->steps[i].lib;
      job->steps[i].lib = NULL;  /* from here on, _CLIBS owns it */
      if (!ur_clib_keep(L, job->steps[i].libfile ? job->steps[i].libfile
                                                 : job->file, lib)) {
        ur_load_dropjob(L, ld);  /* closes the libraries not kept */
        return failraise(L);
      }
    }
  }
  ur_stats_job(ld, job);
  if (job->msg.oom) {  /* even its message was lost */
    ur_load_dropjob(L, ld);
    lua_pushliteral(L, "not enough memory");
    return failraise(L);
  }
  switch (job->outcome) {
    case UR_RAISE:
      lua_pushlstring(L, job->msg.p, job->msg.n);
      ur_load_dropjob(L, ld);
      return failraise(L);
    case UR_NOTFOUND:
      if (job->nonreg)  /* a prefetch, adopted as it ran, that met a
                           FIFO or a device: search again, for real */
        return searchagain(L, ld);
      lua_pushlstring(L, job->msg.p, job->msg.n);  /* "\n\t"-led */
      ur_load_addmsg(L, LOADIDX);
      ur_load_dropjob(L, ld);
      return ur_require_findloader(L);  /* 'next' is past the job's searchers */
    default:  /* UR_FOUND */
      if (ld->pfcheck && job->steps[job->found].kind == UR_STEP_LUA &&
          (ur_src_earlier(job->name, job->steps[job->found].path,
                          job->file) ||
           (job->src.set && !ur_src_same(job))))
        return searchagain(L, ld);  /* its search may be stale */
      /* a big chunk's body runs a turn after it is loaded, so that the
         two never stall the loop in the same turn; a small one's at
         once (a turn more would cost more than it spreads) */
      split = !job->inplace && job->codelen >= SPLIT_BYTES;
      ld->st.searcher = job->steps[job->found].kind == UR_STEP_LUA ? "lua"
                      : job->steps[job->found].kind == UR_STEP_C ? "c"
                      : "croot";
      ld->st.l0 = uv_hrtime();
      if (job->inplace && job->steps[job->found].kind == UR_STEP_LUA &&
          job->code == NULL)
        ld->st.inplace = 1;  /* read and compiled here */
      if (job->steps[job->found].kind != UR_STEP_LUA) {
        lua_pushcfunction(L, job->open);
        ld->copen = 1;
        split = 0;
      }
      else if (ur_job_load(L, job) != LUA_OK) {
        lua_pushfstring(L, "error loading module '%s' from file '%s':\n\t%s",
                        lua_tostring(L, 1), job->file, lua_tostring(L, -1));
        ur_load_dropjob(L, ld);
        return failraise(L);
      }
      if (job->steps[job->found].kind == UR_STEP_LUA)
        ur_prefetch_after(L, 3, job);  /* what it requires, ahead */
      lua_pushstring(L, job->file);  /* loader data */
      ld->st.l1 = uv_hrtime();
      ur_load_dropjob(L, ld);
      if (split && ur_sched_cansuspend(L)) {
        ur_load_setloader(L, LOADIDX);  /* pops both */
        return waitdriver(L);
      }
      return ur_require_callloader(L);
  }
}

/* }====================================================== */


/* {======================================================
** Loading
** ======================================================= */

/* is the running thread the main one? */
static int ismain (lua_State *L) {
  int ismain = lua_pushthread(L);
  lua_pop(L, 1);
  return ismain;
}


/*
** stack: ...; loader; loader data.  Run the loader as 'll_require'
** does.  On the main thread it is called as stock calls it; elsewhere
** protected, and only a task's Lua loader may yield.
*/
int ur_require_callloader (lua_State *L) {
  ur_load *ld = frameload(L);
  ur_guard *g = (ur_guard *)lua_touserdata(L, FRAME);
  ld->state = UR_LRUN;
  /* the frame's timeout bounds the wait for the module, not its body:
     this thread runs the body now, and a timeout in a wait of the body's
     own would fail the load for every waiter */
  ur_sched_untimeout(L, g->timer);
  g->timer = 0;
  g->ms = -1;
  ld->st.b0 = uv_hrtime();
  if (ld->st.l1 < ld->st.l0 || ld->st.l1 == 0)
    ld->st.l1 = ld->st.b0 < ld->st.l0 ? ld->st.l0 : ld->st.b0;
  ld->st.stalled = ur_runtime_running(L, ur_runtime_get(L));
  lua_rotate(L, -2, 1);  /* function <-> loader data */
  lua_pushvalue(L, 1);  /* name is 1st argument to module loader */
  lua_pushvalue(L, -3);  /* loader data is 2nd argument */
  /* stack: ...; loader data; loader function; mod. name; loader data */
  if (ismain(L)) {  /* as stock: a message handler sees the body's
    frames.  An error goes on up to a protected call, which closes the
    guard (FRAME): that ends the load ('ur_load_guardclose') */
    ld->unprot = 1;
    lua_call(L, 2, 1);
    ld->unprot = 0;
    return k_loaded(L, LUA_OK, 0);
  }
  if (ld->copen || !ur_sched_cansuspend(L))  /* a coroutine may die of
    an error and never be closed: its body runs protected */
    return k_loaded(L, lua_pcall(L, 2, 1, 0), 0);
  return k_loaded(L, lua_pcallk(L, 2, 1, 0, 0, k_loaded), 0);
}


/*
** stack: ...; loader data; result from loader (or its error).  The load
** leaves LOADING (what the body stored for itself becomes a plain entry
** of LOADED); then LOADED is written and read exactly as 'll_require'
** does; waiters get the outcome.
*/
static int k_loaded (lua_State *L, int status, lua_KContext ctx) {
  const char *name = lua_tostring(L, 1);
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD)
    return failraise(L);
  ur_stats_end(L, LOADIDX, -2);  /* (loader data below the result) */
  ur_load_unguard(L, LOADIDX);
  if (!lua_isnil(L, -1))  /* non-nil return? */
    lua_setfield(L, 2, name);  /* LOADED[name] = returned value */
  else
    lua_pop(L, 1);  /* pop nil */
  if (lua_getfield(L, 2, name) == LUA_TNIL) {  /* module set no value? */
    lua_pushboolean(L, 1);  /* use true as result */
    lua_copy(L, -1, -2);  /* replace loader result */
    lua_setfield(L, 2, name);  /* LOADED[name] = true */
  }
  ur_load_succeed(L, LOADIDX);
  ur_load_restorechain(L, FRAME, LOADIDX);
  ur_stats_unwatch(L, FRAME);
  if (lua_toboolean(L, lua_upvalueindex(2)))  /* import_module */
    return 1;  /* module result */
  lua_rotate(L, -2, 1);  /* loader data <-> module result */
  return 2;  /* return module result and loader data */
}

/* }====================================================== */

