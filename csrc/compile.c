/*
** compile.c: compile a Lua file: to bytecode, on an executor thread in
** that thread's own lua_State ('ur_compile'); or into the Lua state,
** on the Lua thread, for a job run in place ('ur_job_load').
**
** The file is streamed to 'lua_load' through a reader, as Lua 5.4.4's
** 'luaL_loadfilex' (lauxlib.c) feeds it, so that the source is never
** held whole and an endless file (/dev/zero) fails as soon as the
** parser does: a UTF-8 BOM is skipped (a partial one, as 5.4.4's
** 'skipBOM' does, leaves its first byte and loses the byte after the
** mismatch); a first line starting with '#' is skipped but its newline
** kept, so that line numbers do not move; a file whose first
** significant byte is LUA_SIGNATURE[0] is a binary chunk (stock
** reopens it in binary mode and skips the same prefix again: on POSIX
** the stream is the same, so it reads on); the chunk name is "@" ..
** path; a read error says "cannot read <path>: <strerror>", as
** lauxlib's 'errfile'.  The result is dumped *with* debug information
** into a buffer that grows geometrically.  Every byte read from the
** file is hashed on the way ('ur_srcsum'), for the bytecode cache.
*/

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ur.h"


/* state of a compilation: the reader over the file, and the outputs */
typedef struct Compile {
  const char *file;   /* file name, without '@' */
  FILE *f;
  int n;              /* number of pre-read bytes in 'buff' */
  int rerr;           /* errno of a failed read, or 0 */
  ur_buf *code;       /* out: bytecode */
  ur_srcsum *sum;     /* out: hash and count of the bytes read */
  ur_scan *sc;        /* out: names for prefetch, or NULL */
  char buff[BUFSIZ];  /* area for reading the file */
} Compile;


/* reading time of this thread's current compile (stats) */
static __thread uint64_t readns;


uint64_t ur_compile_readns (void) {
  return readns;
}


/* 'getc' on the file, hashing the byte read */
static int cgetc (Compile *c) {
  int ch = getc(c->f);
  if (ch != EOF) {
    unsigned char b = (unsigned char)ch;
    if (c->sum->dohash) ur_hash_add(&c->sum->hash, &b, 1);
    c->sum->n++;
  }
  return ch;
}


/* lua_Reader over the file: pre-read bytes first, then blocks */
static const char *getF (lua_State *W, void *ud, size_t *size) {
  Compile *c = (Compile *)ud;
  uint64_t t0;
  (void)W;
  if (c->n > 0) {  /* are there pre-read bytes to be read? */
    *size = (size_t)c->n;
    c->n = 0;
    if (!c->sum->binary) ur_scan_feed(c->sc, c->buff, *size);
    return c->buff;
  }
  if (feof(c->f) || ferror(c->f)) return NULL;
  t0 = uv_hrtime();
  *size = fread(c->buff, 1, sizeof(c->buff), c->f);
  readns += uv_hrtime() - t0;
  if (*size < sizeof(c->buff) && ferror(c->f)) c->rerr = errno;
  if (c->sum->dohash) ur_hash_add(&c->sum->hash, c->buff, *size);
  c->sum->n += *size;
  if (!c->sum->binary) ur_scan_feed(c->sc, c->buff, *size);
  return c->buff;
}


/* skip an optional BOM, as Lua 5.4.4 does; return the next byte */
static int skipBOM (Compile *cs) {
  int c = cgetc(cs);  /* read first character */
  if (c == 0xEF && cgetc(cs) == 0xBB && cgetc(cs) == 0xBF)  /* BOM? */
    return cgetc(cs);  /* ignore BOM and return next char */
  else  /* no (valid) BOM */
    return c;  /* return first character */
}


/*
** Skip a first line starting with '#' (after an optional BOM).  Puts
** in '*cp' the first byte of the rest; returns 1 if a line was skipped.
*/
static int skipcomment (Compile *cs, int *cp) {
  int c = *cp = skipBOM(cs);
  if (c == '#') {  /* first line is a comment (Unix exec. file)? */
    do {  /* skip first line */
      c = cgetc(cs);
    } while (c != EOF && c != '\n');
    *cp = cgetc(cs);  /* next character after comment, if present */
    return 1;  /* there was a comment */
  }
  else return 0;  /* no comment */
}


#if defined(__GNUC__)
#define UR_NOINLINE  __attribute__((noinline))
#else
#define UR_NOINLINE
#endif


/* 'writer' when 'b' is full: grow it (doubling), then append 'sz'
   bytes at 'p' (non-zero: failed).  Kept out of line, so that the
   writer's common case saves no registers */
static UR_NOINLINE int growwrite (ur_buf *b, const void *p, size_t sz) {
  size_t cap = b->cap ? b->cap : 4096;
  char *np;
  while (cap - b->n < sz) cap *= 2;
  if (b->oom || (np = (char *)realloc(b->p, cap)) == NULL) {
    b->oom = 1;
    return 1;
  }
  b->p = np;
  b->cap = cap;
  memcpy(b->p + b->n, p, sz);
  b->n += sz;
  return 0;
}


/*
** lua_Writer for 'lua_dump': append to a ur_buf (non-zero: failed).
** A dump is millions of writes, three in four of one byte (a tag, a
** small size): that takes a store, not a call to 'memcpy', and the
** buffer grows (doubling) only now and then.  (With a call each, the
** writer was 60% of a dump's cost.)  The buffer gets no terminating
** '\0'.
*/
static int writer (lua_State *W, const void *p, size_t sz, void *ud) {
  ur_buf *b = (ur_buf *)ud;
  char *d;
  (void)W;
  if (b->cap - b->n < sz) return growwrite(b, p, sz);
  d = b->p + b->n;
  b->n += sz;
  if (sz == 1) *d = *(const char *)p;
  else memcpy(d, p, sz);
  return 0;
}


/* start 'b' with room for the dump of a 'srcsize'-byte source (its
   bytecode, debug information included, is about as large) */
static void reserve (ur_buf *b, size_t srcsize) {
  size_t cap = srcsize + srcsize / 4 + 4096;
  if (b->p == NULL && (b->p = (char *)malloc(cap)) != NULL)
    b->cap = cap;
}


/*
** Read the start of the file as 'luaL_loadfilex' does: an optional BOM,
** a first line starting with '#' (its newline kept), and whether it is
** a binary chunk; leaves in 'c->buff' the bytes the reader gives first.
*/
static void readstart (Compile *c) {
  int ch;
  c->n = 0;
  if (skipcomment(c, &ch))  /* read initial portion */
    c->buff[c->n++] = '\n';  /* add newline to correct line numbers */
  if (ch == LUA_SIGNATURE[0]) {  /* binary file? */
    c->n = 0;  /* remove possible newline */
    c->sum->binary = 1;
  }
  if (ch != EOF)
    c->buff[c->n++] = (char)ch;  /* first byte of the stream */
  if (ferror(c->f)) c->rerr = errno;
}


/* set up 'c' to read 'f' ('file': its name), counting (and hashing,
   if 'sum->dohash') into 'sum' */
static void startcompile (Compile *c, const char *file, FILE *f,
                          ur_buf *code, ur_srcsum *sum, ur_scan *sc) {
  readns = 0;
  c->file = file;
  c->f = f;
  c->n = 0;
  c->rerr = 0;
  c->code = code;
  c->sum = sum;
  c->sc = sc;
  ur_hash_init(&sum->hash);
  sum->n = 0;
  sum->binary = sum->whole = 0;
}


/*
** Protected part of 'ur_compile' (light userdata 1: the Compile):
** load the chunk and dump it.  Returns the chunk (or the loader's
** message) on the stack; a failed dump raises "not enough memory".
*/
static int pcompile (lua_State *W) {
  Compile *c = (Compile *)lua_touserdata(W, 1);
  lua_pushfstring(W, "@%s", c->file);  /* chunk name */
  readstart(c);
  if (lua_load(W, getF, c, lua_tostring(W, -1), NULL) != LUA_OK)
    return 1;  /* the message */
  reserve(c->code, (size_t)c->sum->n);
  if (lua_dump(W, writer, c->code, 0) != 0)
    luaL_error(W, "not enough memory");
  return 1;
}


/*
** Compile 'file', open as 'f' (closed here), in 'W'.  On success
** returns 1 with the bytecode in 'code'; on failure returns 0 with the
** loader's message in 'err' (a syntax error, "cannot read <file>:
** <reason>", or "not enough memory": what 'luaL_loadfilex' would have
** pushed).  Leaves the stack of 'W' as it found it.  In 'sum' goes
** what was read: the hash and count of every byte read, and whether
** the file was a text chunk read to its very end ('whole').
*/
int ur_compile (lua_State *W, const char *file, FILE *f, ur_buf *code,
                ur_buf *err, ur_srcsum *sum, ur_scan *sc) {
  Compile c;
  int top = lua_gettop(W), status, ok = 0;
  startcompile(&c, file, f, code, sum, sc);
  lua_pushcfunction(W, pcompile);
  lua_pushlightuserdata(W, &c);
  lua_gc(W, LUA_GCSTOP);  /* a compile makes little garbage: no GC work
                            (the state is dropped whole after the job) */
  status = lua_pcall(W, 1, 1, 0);
  lua_gc(W, LUA_GCRESTART);
  if (ferror(f)) {  /* ignore results from 'lua_load' */
    char buf[128];
    ur_buf_addf(err, "cannot read %s: %s", file,
                strerror_r(c.rerr, buf, sizeof(buf)));
  }
  else if (status != LUA_OK || !lua_isfunction(W, -1)) {
    const char *msg = lua_tostring(W, -1);
    ur_buf_adds(err, msg ? msg : "(error object is not a string)");
  }
  else if (code->oom)
    ur_buf_adds(err, "not enough memory");
  else {
    ok = 1;
    sum->whole = !sum->binary && feof(f);
  }
  fclose(f);
  lua_settop(W, top);  /* pop the chunk or the message */
  if (!ok) {  /* no partial bytecode */
    ur_buf_free(code);
    code->oom = 0;
  }
  return ok;
}


/*
** See ur.h.  On the Lua thread: the file is streamed to 'lua_load' in
** 'L' itself, so a module compiled here costs what stock's load costs,
** plus the scan for prefetch; after a cache miss that may write, the
** chunk is dumped and the entry written later, by an executor thread.
*/
int ur_job_load (lua_State *L, ur_job *job) {
  Compile c;
  ur_srcsum sum;
  ur_scan sc;
  int status, rerr;
  if (job->code != NULL)  /* a worker's, or the cache's */
    return luaL_loadbufferx(L, job->code, job->codelen, job->file, "b");
  lua_pushfstring(L, "@%s", job->file);  /* chunk name (the job still
                                             owns the file if it raises) */
  ur_scan_init(&sc, job->scan ? job : NULL);
  sum.dohash = job->ck != NULL;  /* (the entry's) */
  startcompile(&c, job->file, job->fp, NULL, &sum, &sc);
  job->fp = NULL;  /* closed below */
  readstart(&c);
  status = lua_load(L, getF, &c, lua_tostring(L, -1), NULL);
  lua_remove(L, -2);  /* chunk name */
  rerr = ferror(c.f);
  sum.whole = !sum.binary && feof(c.f);
  fclose(c.f);
  if (rerr) {  /* ignore results from 'lua_load' */
    char buf[128];
    lua_pop(L, 1);
    lua_pushfstring(L, "cannot read %s: %s", job->file,
                    strerror_r(c.rerr, buf, sizeof(buf)));
    status = LUA_ERRFILE;
  }
  if (job->ck != NULL) {  /* a miss: the entry, if it may be written */
    ur_cachekey *k = job->ck;
    ur_buf code = {NULL, 0, 0, 0};
    job->ck = NULL;
    if (status == LUA_OK) {
      reserve(&code, (size_t)sum.n);
      if (lua_dump(L, writer, &code, 0) == 0 && !code.oom) {
        ur_cache_putlater(k, code.p, code.n, &sum, 0);  /* takes it */
        code.p = NULL;
      }
    }
    ur_buf_free(&code);
    ur_cache_done(k);
    free(k);
  }
  return status;
}
