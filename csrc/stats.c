/*
** stats.c: what uvrequire shows of its work.  Each load carries its
** timings (ur_load_stats, filled by drive.c at each phase, and from
** its job's timings, filled by the worker); when it succeeds, a record
** goes to the list 'uvrequire.stats' returns, and with
** UVREQUIRE_IMPORTTIME=1 a line of Python's '-X importtime' table goes
** to stderr.  Also the detector's helpers: is the loop running, where
** is the caller, and the report of a blocking require.
**
** All of it is the Lua thread's; a record costs one table per load.
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"
#include "uvrequire.h"


static const char STATS = 's';     /* registry: list of records */
static const char REPORTED = 'b';  /* registry: "name@site" -> true */

#define ms(ns)  ((lua_Number)(ns) / 1e6)


/* {======================================================
** Records
** ======================================================= */

/*
** The load at 'idx' begins (its guard holds it): note the time, and
** its parent, the load whose body asked for it (the thread's innermost
** load before this one, at 'prev', or none).
*/
void ur_stats_begin (lua_State *L, int idx, int prev) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  ur_load *p = (ur_load *)lua_touserdata(L, prev);
  idx = lua_absindex(L, idx);
  ld->st.t0 = uv_hrtime();
  ld->st.depth = (p != NULL) ? p->st.depth + 1 : 1;
  if (p != NULL) {
    lua_pushvalue(L, prev);
    lua_setiuservalue(L, idx, UV_PARENT);
  }
}


/* a job of the load is done: take its timings (Lua thread) */
void ur_stats_job (ur_load *ld, ur_job *job) {
  ur_load_stats *st = &ld->st;
  uint64_t found = job->t_found ? job->t_found : job->t_end;
  if (job->t_start == 0) return;
  st->search_ns += found - job->t_start;
  if (job->outcome == UR_FOUND) {
    uint64_t rest = job->t_end - found;
    st->cached = job->cached;
    st->read_ns += job->read_ns;
    st->compile_ns += rest > job->read_ns ? rest - job->read_ns : 0;
    st->bytes = job->srcbytes ? job->srcbytes : job->codelen;
    st->worker = job->worker;
    st->wstart = job->t_start;
    st->wfound = found;
    st->wend = job->t_end;
  }
}


static void setnum (lua_State *L, const char *k, lua_Number v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}


/* print the importtime line of the load at 'idx' ('name') */
static void importtime (lua_State *L, ur_load *ld, const char *name) {
  static int header = 0;
  uint64_t cum = ld->st.t1 - ld->st.t0;
  uint64_t self = cum > ld->st.childns ? cum - ld->st.childns : 0;
  if (!header) {
    header = 1;
    fputs("import time: self [us] | cumulative | imported package\n",
          stderr);
  }
  (void)L;
  fprintf(stderr, "import time: %9lu | %10lu | %*s%s\n",
          (unsigned long)(self / 1000), (unsigned long)(cum / 1000),
          2 * ld->st.depth, "", name);
}


/*
** The load at 'idx' succeeded (stack top: loader data, then value):
** append its record to the list, tell its parent how long it took,
** print its importtime line if asked.  May raise (memory): the load
** then fails as any other error would make it.  Stack: net zero.
*/
void ur_stats_end (lua_State *L, int idx, int loaddata) {
  ur_load *ld = (ur_load *)lua_touserdata(L, idx);
  ur_load_stats *st = &ld->st;
  ur_load *p;
  uint64_t body;
  idx = lua_absindex(L, idx);
  loaddata = lua_absindex(L, loaddata);
  st->t1 = uv_hrtime();
  if (lua_getiuservalue(L, idx, UV_PARENT) == LUA_TUSERDATA) {
    p = (ur_load *)lua_touserdata(L, -1);
    p->st.childns += st->t1 - st->t0;
  }
  lua_pop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATS);
  lua_createtable(L, 0, 20);
  lua_getiuservalue(L, idx, UV_NAME);
  lua_setfield(L, -2, "name");
  if (lua_type(L, loaddata) == LUA_TSTRING) {
    lua_pushvalue(L, loaddata);
    lua_setfield(L, -2, "path");
  }
  lua_pushstring(L, st->searcher ? st->searcher : "other");
  lua_setfield(L, -2, "searcher");
  if (lua_getiuservalue(L, idx, UV_PARENT) == LUA_TUSERDATA)
    lua_getiuservalue(L, -1, UV_NAME);
  else
    lua_pushnil(L);
  lua_setfield(L, -3, "parent");
  lua_pop(L, 1);
  lua_pushboolean(L, st->cached);
  lua_setfield(L, -2, "cached");
  lua_pushinteger(L, (lua_Integer)st->bytes);
  lua_setfield(L, -2, "bytes");
  setnum(L, "search_ms", ms(st->search_ns));
  setnum(L, "read_ms", ms(st->read_ns));
  if (st->inplace) {  /* luaL_loadfilex read and compiled it: compile */
    setnum(L, "compile_ms", ms(st->compile_ns + st->l1 - st->l0));
    setnum(L, "load_ms", 0);
  }
  else {
    setnum(L, "compile_ms", ms(st->compile_ns));
    setnum(L, "load_ms", ms(st->l1 - st->l0));
  }
  /* the body's own time: without the nested imports it waited for */
  body = st->t1 - st->b0;
  body = body > st->childns ? body - st->childns : 0;
  setnum(L, "body_ms", ms(body));
  setnum(L, "wait_ms", ms(st->t1 - st->t0));
  setnum(L, "stall_ms", st->stalled ? ms(st->l1 - st->l0 + body
                                         + st->insync_ns) : 0);
  /* the phases on their tracks, for traces: { t0, ws, wf, we, l0, l1,
     b0, b1 } in us from uv_hrtime, and the worker (0: none) */
  lua_createtable(L, 9, 0);
  {
    uint64_t t[8];
    int i;
    t[0] = st->t0; t[1] = st->wstart; t[2] = st->wfound; t[3] = st->wend;
    t[4] = st->l0; t[5] = st->l1; t[6] = st->b0; t[7] = st->t1;
    for (i = 0; i < 8; i++) {
      lua_pushnumber(L, (lua_Number)t[i] / 1e3);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, st->worker);
    lua_rawseti(L, -2, 9);
  }
  lua_setfield(L, -2, "_phases");
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);  /* STATS[#STATS + 1] */
  lua_pop(L, 1);  /* pop STATS */
  if (ur_runtime_get(L)->importtime)
    importtime(L, ld, lua_tostring(L, 1));
}


/* core.stats([clear]): the records so far (the list itself) */
static int l_stats (lua_State *L) {
  int clear = lua_toboolean(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATS);
  if (clear) {
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATS);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &REPORTED);
  }
  return 1;
}

/* }====================================================== */


/* {======================================================
** The blocking-require detector
** ======================================================= */

static const char SKIPSRC = 's';  /* registry: chunk name -> true, the
                                      chunks of uvrequire's Lua layer
                                      (core.skipsource) */


/*
** The nearest Lua caller's "file:line", pushed ("?" if none).  Frames
** of uvrequire's Lua layer (uvrequire.lua, uvrequire/lazy.lua) are
** passed over: 'sync', a proxy's import, are the caller's.
*/
void ur_stats_pushsite (lua_State *L) {
  lua_Debug ar;
  int level, skip;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SKIPSRC);
  skip = lua_gettop(L);
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
      int ours = (lua_getfield(L, skip, ar.source) != LUA_TNIL);
      lua_pop(L, 1);
      if (!ours) {
        lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
        lua_remove(L, skip);
        return;
      }
    }
  }
  lua_pop(L, 1);  /* pop SKIPSRC */
  lua_pushliteral(L, "?");
}


/* core.skipsource(source): frames of that chunk are no site */
static int l_skipsource (lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SKIPSRC);
  lua_pushvalue(L, 1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  return 0;
}


/*
** A synchronous require of 'name' (site at 'site') blocked the running
** loop for 'ns': report it once per module and site, to
** 'uvrequire.on_block' if set, else to stderr.  Never raises.
*/
static int report (lua_State *L) {
  const char *name = lua_tostring(L, 1);
  const char *site = lua_tostring(L, 2);
  lua_Number t = lua_tonumber(L, 3);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &REPORTED);
  lua_pushfstring(L, "%s@%s", name, site);
  if (lua_rawget(L, -2) != LUA_TNIL) return 0;  /* said already */
  lua_pop(L, 1);
  lua_pushfstring(L, "%s@%s", name, site);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  {
    char buf[64];  /* (lua_pushfstring has no precision) */
    snprintf(buf, sizeof(buf), "%.1f", (double)t);
    lua_pushfstring(L, "blocking require of '%s' inside the event loop at "
                       "%s (blocked it for %s ms)", name, site, buf);
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, "uvrequire.on_block")
      == LUA_TFUNCTION) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_call(L, 4, 0);
    return 0;
  }
  fprintf(stderr, "uvrequire: %s\n", lua_tostring(L, -2));
  fflush(stderr);
  return 0;
}


void ur_stats_reportblock (lua_State *L, const char *name, int site,
                           uint64_t ns) {
  site = lua_absindex(L, site);
  lua_pushcfunction(L, report);
  lua_pushstring(L, name);
  lua_pushvalue(L, site);
  lua_pushnumber(L, ms(ns));
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    fprintf(stderr, "uvrequire: error in on_block: %s\n",
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
  }
}


/*
** The detector: a require that cannot wait by yielding, of a module not
** loaded yet, while a loop uvrequire serves is running, blocks that
** loop.  "strict": raise here, instead of loading.  "warn": returns 1,
** and the require frame then watches its guard ('ur_stats_watch'); the
** report is made as the frame ends (each of its exits unwatches; the
** guard's __close is the fallback), however the load ended.  The
** load runs in the caller's own 'require' frame, so that its errors and
** tracebacks are stock's.  0: not a blocking require (or one inside a
** watched one: the outermost is reported).  Stack: unchanged.
*/
int ur_stats_blocks (lua_State *L, const char *name) {
  ur_runtime *rt = ur_runtime_get(L);
  if (rt->detect == 0 || rt->blocking > 0 || ur_sched_cansuspend(L) ||
      !ur_runtime_running(L, rt))
    return 0;
  if (rt->detect == 2) {
    ur_stats_pushsite(L);
    return luaL_error(L, "blocking require of '%s' inside the event loop "
                         "at %s", name, lua_tostring(L, -1));
  }
  return 1;
}


/*
** Watch the blocking require whose frame guard is at 'g': note the
** caller's site (guard's uservalue 3) and the time.  Nested requires
** are not reported until 'ur_stats_unwatch'.  Stack: net zero.
*/
void ur_stats_watch (lua_State *L, int g) {
  ur_guard *gd = (ur_guard *)lua_touserdata(L, g);
  g = lua_absindex(L, g);
  ur_stats_pushsite(L);
  lua_setiuservalue(L, g, 3);
  ur_runtime_get(L)->blocking++;
  gd->blockt0 = uv_hrtime();
}


/*
** The guard at 'g' closes: if it was watched, report how long its
** require blocked (its load's name, and the site noted).  Never raises
** but for memory.  Stack: net zero.
*/
void ur_stats_unwatch (lua_State *L, int g) {
  ur_guard *gd = (ur_guard *)luaL_testudata(L, g, GUARD);
  uint64_t t0;
  const char *name = "?";
  int top = lua_gettop(L);
  if (gd == NULL || (t0 = gd->blockt0) == 0) return;
  gd->blockt0 = 0;
  ur_runtime_get(L)->blocking--;
  g = lua_absindex(L, g);
  if (lua_getiuservalue(L, g, 1) == LUA_TUSERDATA &&
      lua_getiuservalue(L, -1, UV_NAME) == LUA_TSTRING)
    name = lua_tostring(L, -1);  /* (anchored by the load below) */
  lua_getiuservalue(L, g, 3);  /* the site */
  ur_stats_reportblock(L, name, -1, uv_hrtime() - t0);
  lua_settop(L, top);  /* pop the load, its name, the site */
}


/* core.setobserve(detect, importtime): "off"|"warn"|"strict", bool */
static int l_setobserve (lua_State *L) {
  static const char *const modes[] = {"off", "warn", "strict", NULL};
  ur_runtime *rt = ur_runtime_get(L);
  rt->detect = luaL_checkoption(L, 1, NULL, modes);
  rt->importtime = lua_toboolean(L, 2);
  return 0;
}

/* }====================================================== */


/* add 'stats', 'setobserve' and 'skipsource' to the table at the top;
   make tables */
void ur_stats_register (lua_State *L) {
  ur_regtable(L, &STATS, NULL);
  ur_regtable(L, &REPORTED, NULL);
  ur_regtable(L, &SKIPSRC, NULL);
  lua_pushcfunction(L, l_stats);
  lua_setfield(L, -2, "stats");
  lua_pushcfunction(L, l_setobserve);
  lua_setfield(L, -2, "setobserve");
  lua_pushcfunction(L, l_skipsource);
  lua_setfield(L, -2, "skipsource");
}
