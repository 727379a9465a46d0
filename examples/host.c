/*
** host.c: a C program that owns its libuv loop, embeds Lua 5.4, and has
** uvrequire deliver imports on that loop (see csrc/uvrequire.h).
**
** Usage: host [ROOT]
**   ROOT is the uvrequire checkout (default: $UVREQUIRE_ROOT, else ".");
**   Lua finds ROOT/lua/?.lua and ROOT/build/?.so, i.e. lua/uvrequire.lua
**   and build/uvrequire/core.so ('make all build/host' builds both).
**
** In order:
**   1. uv_loop_init on a loop of its own (not uv_default_loop), a new
**      Lua state with the standard libraries, uvrequire_set_loop
**      before anything uses uvrequire, and uvrequire_on_error;
**   2. ROOT/examples/host_script.lua runs: it spawns import tasks (it
**      never runs the loop) and returns hooks { poll, finish };
**   3. a 1 ms timer of the host's own ticks while uv_run drives the
**      imports: each tick is counted, calls poll() (done? imports in
**      flight?), and, once the tasks are done, closes the timer, so
**      that the loop runs dry and uv_run returns; with imports in
**      flight, uvrequire_set_loop must answer UV_EBUSY;
**   4. finish() gives the script's verdict and report;
**   5. lua_close (the script's one unclaimed task error reaches the
**      host's handler by then), one more uv_run (closing handles
**      finish), and uv_loop_close, which must return 0.
** Exit status 0 only if every step held: the tasks succeeded, the timer
** ticked while imports were in flight, and the loop closed cleanly.
**
** No callback exits or lets a Lua error escape: every call into Lua
** is a lua_pcall with a traceback message handler.
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "uvrequire.h"


#define TICK_MS   1              /* period of the host's timer */
#define MAXTICKS  60000          /* give up after this many ticks */
#define HOOKS     "host.hooks"   /* registry field: the script's hooks */


typedef struct host {
  uv_loop_t loop;            /* the host's loop, handed to uvrequire */
  uv_timer_t timer;          /* the host's own 1 ms timer */
  lua_State *L;              /* NULL once closed */
  const char *root;          /* the checkout */
  int timer_open;            /* timer initialized and not closed yet */
  int done;                  /* poll() said every task is done */
  int failed;                /* poll() failed, or time ran out */
  unsigned long ticks;       /* timer callbacks */
  unsigned long busy;        /* ... that saw imports in flight */
  long maxinflight;          /* most imports in flight at one tick */
  int busyset;               /* uvrequire_set_loop said UV_EBUSY */
} host;

/* errors uvrequire reported to the host (uvrequire_on_error) */
static int reported;
static char lastreport[256];


/* {======================================================
** Calling into Lua, protected
** ======================================================= */

/*
** Message handler (as lua.c's): the error message with a traceback.
** Stack: the error object -> the message.
*/
static int msghandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") &&
        lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}


/*
** Call the function below the 'nargs' arguments on top of 'L' with
** 'nres' results, protected, with a traceback on error.  On error, print
** "host: <what>: <message>" to stderr; the stack is then as it was
** without the function and arguments.  Returns the lua_pcall status.
** Never raises.
*/
static int docall (lua_State *L, int nargs, int nres, const char *what) {
  int base = lua_gettop(L) - nargs;  /* function index */
  int status;
  if (!lua_checkstack(L, 1)) {
    fprintf(stderr, "host: %s: Lua stack overflow\n", what);
    lua_settop(L, base - 1);
    return LUA_ERRMEM;
  }
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);  /* put it under the function */
  status = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);  /* remove the message handler */
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "host: %s: %s\n", what,
            msg != NULL ? msg : "(no message)");
    lua_pop(L, 1);
  }
  return status;
}


/*
** Call C function 'f' with one light userdata argument 'p' and 'nres'
** results, as 'docall'.  Never raises.
*/
static int pcallp (lua_State *L, lua_CFunction f, void *p, int nres,
                   const char *what) {
  if (!lua_checkstack(L, 2)) {
    fprintf(stderr, "host: %s: Lua stack overflow\n", what);
    return LUA_ERRMEM;
  }
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, p);
  return docall(L, 1, nres, what);
}


/*
** uvrequire_on_error's handler: (msg, task).  Count and keep the first
** line of each error nobody claimed.  May be called from lua_close.
*/
static int onerror (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  size_t n = 0;
  reported++;
  if (msg != NULL)
    while (msg[n] != '\0' && msg[n] != '\n' && n < sizeof(lastreport) - 1)
      n++;
  memcpy(lastreport, msg != NULL ? msg : "", n);
  lastreport[n] = '\0';
  return 0;
}


/*
** Protected.  Arg 1: the loop (light userdata).  Open the standard
** libraries and hand the loop to uvrequire, before its first use.
*/
static int l_init (lua_State *L) {
  uv_loop_t *loop = (uv_loop_t *)lua_touserdata(L, 1);
  luaL_openlibs(L);
  uvrequire_set_loop(L, loop);
  uvrequire_on_error(L, onerror);
  return 0;
}


/* Prepend "<root>/<tail>;" to string field 'field' of the table at 1. */
static void prepend (lua_State *L, const char *field, const char *root,
                     const char *tail) {
  const char *old;
  lua_getfield(L, 1, field);
  old = lua_tostring(L, -1);
  lua_pushfstring(L, "%s/%s;%s", root, tail, old != NULL ? old : "");
  lua_setfield(L, 1, field);
  lua_pop(L, 1);  /* pop old value */
}


/*
** Protected.  Arg 1: the root (light userdata, a C string).  Point
** package.path and package.cpath at the checkout first, run
** <root>/examples/host_script.lua and keep the hooks table it returns
** in the registry (HOOKS).  Returns nothing.
*/
static int l_start (lua_State *L) {
  const char *root = (const char *)lua_touserdata(L, 1);
  const char *script;
  lua_settop(L, 0);
  if (lua_getglobal(L, "package") != LUA_TTABLE)  /* 1: package */
    return luaL_error(L, "no package library");
  prepend(L, "path", root, "lua/?/init.lua");
  prepend(L, "path", root, "lua/?.lua");
  prepend(L, "cpath", root, "build/?.so");
  script = lua_pushfstring(L, "%s/examples/host_script.lua", root);
  if (luaL_loadfile(L, script) != LUA_OK)
    return lua_error(L);
  lua_call(L, 0, 1);
  if (!lua_istable(L, -1))
    return luaL_error(L, "%s returned no table of hooks", script);
  lua_setfield(L, LUA_REGISTRYINDEX, HOOKS);
  return 0;
}


/*
** Protected.  Arg 1: a hook name (light userdata, a C string).  Call
** that function of the script's hooks with no arguments; return its
** first two results.
*/
static int l_hook (lua_State *L) {
  const char *name = (const char *)lua_touserdata(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOOKS) != LUA_TTABLE)
    return luaL_error(L, "the script's hooks are gone");
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION)
    return luaL_error(L, "hook '%s' is not a function", name);
  lua_call(L, 0, 2);
  return 2;
}


/*
** Call hook 'name' of the script; on success its two results are on
** the stack.  Returns the lua_pcall status.  Never raises.
*/
static int callhook (host *h, const char *name) {
  return pcallp(h->L, l_hook, (void *)name, 2, name);
}

/* }====================================================== */


/* {======================================================
** The host's timer
** ======================================================= */

/* Close the timer if it is open.  Its memory is the host's. */
static void closetimer (host *h) {
  if (h->timer_open) {
    uv_close((uv_handle_t *)&h->timer, NULL);
    h->timer_open = 0;
  }
}


/*
** Every tick (loop thread): count it and ask the script whether its
** tasks are done and how many imports are in flight.  Once they are
** done, close the timer: the loop then runs dry.  If poll() fails or
** MAXTICKS pass, also stop the loop, which unfinished imports keep
** alive.
*/
static void ontick (uv_timer_t *t) {
  host *h = (host *)t->data;
  lua_State *L = h->L;
  h->ticks++;
  if (callhook(h, "poll") != LUA_OK)
    h->failed = 1;
  else {
    int done = lua_toboolean(L, -2);
    long inflight = (long)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (inflight > 0) {
      if (h->busy == 0)  /* a loop switch must wait for the imports */
        h->busyset = (uvrequire_set_loop(L, &h->loop) == UV_EBUSY);
      h->busy++;
      if (inflight > h->maxinflight) h->maxinflight = inflight;
    }
    if (done) {
      h->done = 1;
      closetimer(h);
      return;
    }
    if (h->ticks >= MAXTICKS) {
      fprintf(stderr, "host: tasks not done after %lu ticks\n", h->ticks);
      h->failed = 1;
    }
  }
  if (h->failed) {
    closetimer(h);
    uv_stop(&h->loop);
  }
}


/* Start the timer.  Returns 0 or a libuv error (printed). */
static int starttimer (host *h) {
  int err = uv_timer_init(&h->loop, &h->timer);
  if (err != 0) {
    fprintf(stderr, "host: uv_timer_init: %s\n", uv_strerror(err));
    return err;
  }
  h->timer_open = 1;
  h->timer.data = h;
  err = uv_timer_start(&h->timer, ontick, TICK_MS, TICK_MS);
  if (err != 0) {
    fprintf(stderr, "host: uv_timer_start: %s\n", uv_strerror(err));
    closetimer(h);
  }
  return err;
}

/* }====================================================== */


/* {======================================================
** Closing the loop
** ======================================================= */

typedef struct census {
  int handles;     /* handles on the loop */
  int active;      /* ... active and not closing: they keep it alive */
  int print;       /* describe each one on stderr */
} census;


static void countone (uv_handle_t *hd, void *arg) {
  census *c = (census *)arg;
  int active = uv_is_active(hd) && !uv_is_closing(hd);
  c->handles++;
  if (active) c->active++;
  if (c->print)
    fprintf(stderr, "host:   left on the loop: a %s handle (%s%s%s)\n",
            uv_handle_type_name(uv_handle_get_type(hd)),
            active ? "active" : "inactive",
            uv_is_closing(hd) ? ", closing" : "",
            uv_has_ref(hd) ? ", referenced" : "");
}


/* Count (and with 'print', describe) the handles on 'loop'. */
static census takecensus (uv_loop_t *loop, int print) {
  census c;
  c.handles = c.active = 0;
  c.print = print;
  uv_walk(loop, countone, &c);
  return c;
}


/*
** After lua_close: run the loop once more so that closing handles
** finish (without blocking if something still keeps it alive: that
** would hang), then close it.  Returns uv_loop_close's result.
*/
static int closeloop (uv_loop_t *loop) {
  census c = takecensus(loop, 0);
  int alive, rc;
  if (c.active > 0) {
    fprintf(stderr, "host: %d active handle(s) after lua_close\n",
            c.active);
    alive = uv_run(loop, UV_RUN_NOWAIT);
  }
  else
    alive = uv_run(loop, UV_RUN_DEFAULT);
  c = takecensus(loop, 1);
  printf("host: after lua_close: uv_run -> %d, %d handle(s) left\n",
         alive, c.handles);
  rc = uv_loop_close(loop);
  printf("host: uv_loop_close -> %d%s%s\n", rc, rc != 0 ? " " : "",
         rc != 0 ? uv_err_name(rc) : "");
  return rc;
}

/* }====================================================== */


int main (int argc, char **argv) {
  host h;
  int ok = 1, err;
  memset(&h, 0, sizeof(h));
  h.root = (argc > 1) ? argv[1] : getenv("UVREQUIRE_ROOT");
  if (h.root == NULL) h.root = ".";
  if ((err = uv_loop_init(&h.loop)) != 0) {
    fprintf(stderr, "host: uv_loop_init: %s\n", uv_strerror(err));
    return EXIT_FAILURE;
  }
  if ((h.L = luaL_newstate()) == NULL) {
    fprintf(stderr, "host: cannot create a Lua state\n");
    (void)uv_loop_close(&h.loop);
    return EXIT_FAILURE;
  }
  printf("host: root %s, %s, libuv %s\n", h.root, LUA_RELEASE,
         uv_version_string());
  if (pcallp(h.L, l_init, &h.loop, 0, "init") != LUA_OK ||
      pcallp(h.L, l_start, (void *)h.root, 0, "host_script.lua")
        != LUA_OK ||
      starttimer(&h) != 0)
    ok = 0;
  else {
    int alive = uv_run(&h.loop, UV_RUN_DEFAULT);
    closetimer(&h);  /* in case the loop stopped another way */
    printf("host: uv_run -> %d after %lu tick(s) of the host's %d ms "
           "timer, %lu with imports in flight (at most %ld at once)\n",
           alive, h.ticks, TICK_MS, h.busy, h.maxinflight);
    if (callhook(&h, "finish") != LUA_OK)
      ok = 0;
    else {
      const char *report = lua_tostring(h.L, -1);
      int scriptok = lua_toboolean(h.L, -2);
      printf("host: the script's report:\n%s\n",
             report != NULL ? report : "(none)");
      lua_pop(h.L, 2);
      if (!scriptok) {
        fprintf(stderr, "host: the script's checks failed\n");
        ok = 0;
      }
    }
    if (h.failed || !h.done) {
      fprintf(stderr, "host: the tasks did not all finish\n");
      ok = 0;
    }
    if (h.busy == 0) {
      fprintf(stderr, "host: no tick saw an import in flight\n");
      ok = 0;
    }
  }
  closetimer(&h);
  if (!h.busyset) {
    fprintf(stderr, "host: uvrequire_set_loop did not say UV_EBUSY\n");
    ok = 0;
  }
  lua_close(h.L);
  h.L = NULL;
  printf("host: errors reported to the host: %d (%s)\n", reported,
         lastreport);
  if (reported != 1 || strstr(lastreport, "deliberate") == NULL) {
    fprintf(stderr, "host: expected one report of the deliberate error\n");
    ok = 0;
  }
  if (closeloop(&h.loop) != 0)
    ok = 0;
  printf("host: %s\n", ok ? "PASS" : "FAIL");
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
