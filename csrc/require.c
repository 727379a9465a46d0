/*
** require.c: the replacement 'require', Lua 5.4's 'll_require' and
** 'findloader' (loadlib.c) with the file searchers moved to the
** executor.
**
** Searchers run in the order of 'package.searchers'.  A user's searcher
** (and the standard preload searcher, a mere table lookup) is called on
** the Lua thread as stock Lua calls it.  A run of consecutive standard
** file searchers (Lua, C, Croot) becomes one job.  A caller that may
** wait by yielding (a task: sched.c) hands it to the executor and
** yields 'PENDING'; the scheduler resumes it when the job is done; it
** loads the chunk, and runs the body at a later turn.  Any other caller
** runs the job itself, on the Lua thread, exactly as stock would: no
** thread hop, the file loaded with 'luaL_loadfilex'.
**
** Every require frame that loads (the driver's) catches the errors of
** searchers and loader itself ('lua_pcall'/'lua_pcallk', no extra C
** level over stock's 'lua_call'), so a load always ends, even in a
** coroutine that dies of the error.  A module body may yield (its own
** nested requires) only in a task; the luaopen_ of a C library never.
**
** Slow-path stack frame, kept across yields:
**   1 name   2 LOADED   3 searchers   4 load record   5 guard
*/

#include <stdlib.h>
#include <string.h>

#include "ur.h"


#define LOADIDX   4
#define SPLIT_BYTES  (64 * 1024)  /* bytecode size from which to split */
#define FRAME     5  /* the guard, to-be-closed: nothing goes below */


static int k_wait (lua_State *L, int status, lua_KContext ctx);
static int k_loaded (lua_State *L, int status, lua_KContext ctx);
static int afterjob (lua_State *L);
static int callloader (lua_State *L);
static int k_searched (lua_State *L, int status, lua_KContext ctx);
static int searched (lua_State *L, int status);
static int step (lua_State *L);


/* create the registry tables and metatables */
void ur_require_init (lua_State *L) {
  ur_std_init();
  ur_sched_open(L);
  ur_load_init(L);
}


/* {======================================================
** Searching
** ======================================================= */

/*
** The name check of 'luaL_checkstring', worded as stock 'require'
** words it even though this function is also 'uvrequire.require'
** (luaL_argerror would name whichever field it finds first).
*/
static const char *checkname (lua_State *L, const char *fname) {
  const char *name = lua_tostring(L, 1);
  if (name == NULL) {
    lua_Debug ar;
    const char *tname;
    if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING)
      tname = lua_tostring(L, -1);
    else if (lua_type(L, 1) == LUA_TLIGHTUSERDATA)
      tname = "light userdata";
    else
      tname = luaL_typename(L, 1);
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) &&
        ar.name != NULL) {
      fname = ar.name;
      if (strcmp(ar.namewhat, "method") == 0)  /* as 'luaL_argerror' */
        luaL_error(L, "calling '%s' on bad self (string expected, got %s)",
                   fname, tname);
    }
    luaL_error(L, "bad argument #1 to '%s' (string expected, got %s)",
               fname, tname);
  }
  return name;
}


/* the record of this frame's load */
#define frameload(L)  ((ur_load *)lua_touserdata(L, LOADIDX))


/*
** Run the load's job here, in place, as stock would (timed): search,
** and the Lua thread then loads the file itself ('ur_job_load'), from
** the bytecode cache if it has it.  The source is read once, and the
** names it requires are collected for prefetch on the way.
*/
static void runhere (lua_State *L, ur_load *ld) {
  ur_job *job = ld->job;
  job->inplace = job->fileonly = 1;
  job->scan = ur_prefetch_on(L);
  job->t_start = uv_hrtime();
  ur_job_run(job, NULL);
  job->t_end = uv_hrtime();
  ld->st.insync_ns += job->t_end - job->t_start;
}


/*
** The driver's load failed with the error at the top: end it (waiters
** get this very error), restore the chain, and raise the error.
*/
static int failraise (lua_State *L) {
  ur_load_fail(L, LOADIDX);
  ur_load_restorechain(L, FRAME, LOADIDX);
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
static int waitwaiter (lua_State *L) {
  lua_Integer tok = ur_sched_token(L);
  ur_load_addwaiter(L, LOADIDX, tok);
  ur_sched_wait(L, tok, LOADIDX);
  return yieldwait(L, tok);
}


/* return the outcome of the ended load (raises its error) */
static int outcome (lua_State *L) {
  int n = ur_load_outcome(L, LOADIDX);
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
static int finishhere (lua_State *L, ur_load *ld) {
  if (ur_exec_takeback(ld->job))
    runhere(L, ld);
  else
    ur_exec_help(ld->job);
  return afterjob(L);
}


/*
** The load's job is a prefetch's, adopted (prefetch.c): wait for it as
** for a job submitted now.  A task yields (at once ready if the job is
** done); anyone else finishes it here.
*/
static int waitprefetched (lua_State *L, ur_load *ld) {
  if (ur_sched_cansuspend(L)) {
    lua_Integer tok = ur_sched_token(L);
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
  return finishhere(L, ld);
}


/*
** 'findloader' from the load's next searcher on.  Ends by calling the
** loader it finds, or by raising "module not found".  May yield.
*/
static int findloader (lua_State *L) {
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
    return callloader(L);
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
  return findloader(L);
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
    return outcome(L);
  if (ld->driver == L) {
    if (ld->state == UR_LREADY) {  /* body is due */
      ur_load_pushloader(L, LOADIDX);
      return callloader(L);
    }
    if (ld->job != NULL && ur_exec_isdone(ld->job))
      return afterjob(L);
    if (ld->job == NULL)  /* handed a load between searchers */
      return findloader(L);
    return waitdriver(L);
  }
  if (ur_load_served(L, LOADIDX))
    return 1;  /* a cycle across threads was broken with its value */
  return waitwaiter(L);
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
      lua_pushlstring(L, job->msg.p, job->msg.n);  /* "\n\t"-led */
      ur_load_addmsg(L, LOADIDX);
      ur_load_dropjob(L, ld);
      return findloader(L);  /* 'next' is past the job's searchers */
    default:  /* UR_FOUND */
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
      return callloader(L);
  }
}

/* }====================================================== */


/* {======================================================
** Loading
** ======================================================= */

/*
** stack: ...; loader; loader data.  Run the loader as 'll_require'
** does, protected.  Only a task's Lua loader may yield; a C library's
** luaopen_, and any loader elsewhere, is called as stock calls it.
*/
static int callloader (lua_State *L) {
  ur_load *ld = frameload(L);
  ld->state = UR_LRUN;
  ld->st.b0 = uv_hrtime();
  if (ld->st.l1 < ld->st.l0 || ld->st.l1 == 0)
    ld->st.l1 = ld->st.b0 < ld->st.l0 ? ld->st.l0 : ld->st.b0;
  ld->st.stalled = ur_runtime_running(L, ur_runtime_get(L));
  lua_rotate(L, -2, 1);  /* function <-> loader data */
  lua_pushvalue(L, 1);  /* name is 1st argument to module loader */
  lua_pushvalue(L, -3);  /* loader data is 2nd argument */
  /* stack: ...; loader data; loader function; mod. name; loader data */
  if (ld->copen || !ur_sched_cansuspend(L))
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
  if (lua_toboolean(L, lua_upvalueindex(2)))  /* import_module */
    return 1;  /* module result */
  lua_rotate(L, -2, 1);  /* loader data <-> module result */
  return 2;  /* return module result and loader data */
}

/* }====================================================== */


/* {======================================================
** Waiting for another thread's load
** ======================================================= */

static int suspended (lua_State *L) {
  return luaL_error(L, "module '%s' is loading in a suspended coroutine; "
                       "a require that cannot yield cannot wait for it",
                    lua_tostring(L, 1));
}


/*
** The body of the load at LOADIDX runs in a suspended thread: find the
** thread to resume so that it moves on.  That is the thread at the end
** of the chain of waits from the driver, if it waits only on an import
** whose next step can be done now (the job is taken back and run here
** if still queued, or waited for if running).  Raises if some thread
** on the way waits on anything else.
*/
static lua_State *tomove (lua_State *L) {
  lua_State *t = ur_load_driver(L, LOADIDX);
  int hops;
  for (hops = 0; hops < 10000; hops++) {
    ur_load *x;
    lua_State *xd;
    if (t == NULL || t == L || lua_status(t) != LUA_YIELD ||
        ur_sched_waitson(L, t) != LUA_TUSERDATA)
      break;
    x = (ur_load *)lua_touserdata(L, -1);
    xd = ur_load_driver(L, -1);
    lua_pop(L, 1);  /* the record stays anchored by LOADING or 't' */
    if (x->state >= UR_LDONE) return t;  /* 't' takes the outcome */
    if (xd != t) {  /* 't' waits on another thread's load */
      t = xd;
      continue;
    }
    if (x->state == UR_LREADY) return t;  /* 't' runs the body */
    if (x->state != UR_LSEARCH || x->job == NULL) break;
    if (ur_exec_takeback(x->job)) ur_exec_runhere(x->job);
    else ur_exec_help(x->job);
    return t;
  }
  suspended(L);
  return NULL;
}


/*
** A thread that cannot yield asks for the load at LOADIDX, driven by
** another thread.  Still searching, or its body due: take it over (a
** queued job is taken back and run here).  Its body running (in a
** task that waits on imports): move that task along, from here, until
** the load ends.  Either way the body runs once.
*/
static int syncwait (lua_State *L, ur_load *ld) {
  for (;;) {
    if (ld->state == UR_LDONE || ld->state == UR_LFAIL)
      return outcome(L);
    if (ld->state == UR_LRUN) {
      ur_sched_resume(L, tomove(L));
      lua_settop(L, FRAME);
      continue;
    }
    if (ur_load_driver(L, LOADIDX) != NULL &&
        lua_status(ld->driver) != LUA_YIELD)
      return suspended(L);  /* its driver is busy below us */
    ur_load_takeover(L, LOADIDX, ld);
    if (ld->state == UR_LREADY) {
      ur_load_pushloader(L, LOADIDX);
      return callloader(L);
    }
    if (ld->job == NULL) return findloader(L);
    return finishhere(L, ld);
  }
}


/*
** Wait for the load at LOADIDX, driven by another thread or by this
** one (then it is a cycle within the chain: the module stored no value
** yet).  A cycle across threads returns the module's stored value if
** it has one; else it raises.
*/
static int await (lua_State *L, ur_load *ld, double ms) {
  if (ur_load_cycle(L, LOADIDX)) {  /* pushes message, last edge */
    if (ld->driver != L) {  /* rule 11, across threads */
      ur_load_pushvalue(L, LOADIDX);
      if (!lua_isnil(L, -1)) return 1;  /* it stored a value: take it */
      lua_pop(L, 1);
      if (ur_sched_cansuspend(L) && ur_load_serve(L, -1)) {
        lua_settop(L, LOADIDX);  /* the served waiter stops waiting */
        ur_load_guard(L, LOADIDX)->ms = ms;
        return waitwaiter(L);
      }
    }
    lua_pop(L, 1);  /* pop last edge */
    luaL_where(L, 1);  /* as 'luaL_error': the caller's position */
    lua_rotate(L, -2, 1);
    lua_concat(L, 2);
    return lua_error(L);
  }
  if (ld->driver == L)  /* not found as a cycle: cannot happen */
    return luaL_error(L, "circular require: %s -> %s",
                      lua_tostring(L, 1), lua_tostring(L, 1));
  ur_load_guard(L, LOADIDX)->ms = ms;  /* FRAME */
  if (ur_sched_cansuspend(L))
    return waitwaiter(L);
  return syncwait(L, ld);
}


/*
** The options of 'import_module' (argument 2: nil or a table):
** 'timeout', in ms (>= 0).  Returns the timeout, or -1 for none.
*/
static double options (lua_State *L, const char *fname) {
  double ms = -1;
  if (lua_isnoneornil(L, 2)) return ms;
  if (!lua_istable(L, 2))
    luaL_error(L, "bad argument #2 to '%s' (table expected, got %s)",
               fname, luaL_typename(L, 2));
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    lua_pop(L, 1);  /* keep the key */
    if (lua_type(L, -1) != LUA_TSTRING ||
        strcmp(lua_tostring(L, -1), "timeout") != 0)
      luaL_error(L, "bad argument #2 to '%s' (unknown option '%s')", fname,
                 luaL_tolstring(L, -1, NULL));
  }
  if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) < 0 ||
        lua_tonumber(L, -1) != lua_tonumber(L, -1))
      luaL_error(L, "bad argument #2 to '%s' (option 'timeout' must be a "
                    "non-negative number of ms)", fname);
    ms = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return ms;
}


/*
** require(name), and uvrequire.import_module(name) (upvalue 2 true:
** one result).  Upvalue 1: the 'package' table, as in loadlib.c.
** The already-loaded path does what stock 'require' does and no more.
*/
static int dorequire (lua_State *L, const char *fname) {
  const char *name = checkname(L, fname);
  double ms = -1;  /* timeout: none */
  ur_load *ld;
  if (lua_toboolean(L, lua_upvalueindex(2)))  /* import_module */
    ms = options(L, fname);
  lua_settop(L, 1);  /* LOADED table will be at index 2 */
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, 1);
  if (lua_rawget(L, 2) != LUA_TNIL && lua_toboolean(L, -1))
    return 1;  /* package is already loaded */
  lua_pop(L, 1);  /* remove 'rawget' result */
  if (ur_loaded_foreign(L, 2)) {  /* someone else's metamethods: */
    if (lua_getfield(L, 2, name) != LUA_TNIL && lua_toboolean(L, -1))
      return 1;  /* as stock, they may find it */
    lua_pop(L, 1);
  }
  if (ur_runtime_get(L)->detect != 0) {  /* a blocking require? */
    int n = ur_stats_detect(L, name);
    if (n >= 0) return n;
  }
  if (lua_getfield(L, lua_upvalueindex(1), "searchers") != LUA_TTABLE)
    return luaL_error(L, "'package.searchers' must be a table");
  if ((ld = ur_load_find(L, name)) != NULL) {  /* LOADIDX */
    if (ld->driver == L) {  /* rule 11: its own provisional value */
      ur_load_pushvalue(L, LOADIDX);
      if (lua_toboolean(L, -1)) return 1;
      lua_pop(L, 1);
    }
    return await(L, ld, ms);
  }
  ld = ur_load_new(L, name);  /* LOADIDX */
  ur_load_guard(L, LOADIDX)->ms = ms;  /* FRAME */
  ur_load_drive(L, LOADIDX, ld);
  lua_getiuservalue(L, FRAME, 2);  /* the thread's load before this */
  ur_stats_begin(L, LOADIDX, -1);
  lua_pop(L, 1);
  return findloader(L);
}


int ur_l_require (lua_State *L) {
  return dorequire(L, "require");
}


int ur_l_import_module (lua_State *L) {
  return dorequire(L, "import_module");
}

/* }====================================================== */
