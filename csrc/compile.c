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


/* {======================================================
** Prefetch scanner: finds `require "m"`, `require 'm'`, `require("m")`
** and `require('m')`, m made of [%w_.-], in source text fed in slices
** (in the last two, the literal must be the whole first argument: not
** so in `require("m." .. x)`, a common way to pick a module at run time)
** of any size.  It knows short comments and no more: a "require" after
** "--" on its line is skipped; a hit in a string or a long comment is a
** false positive, which costs a prefetch that nobody adopts, never a
** wrong result (prefetch only searches for and compiles a Lua file).
** Out of memory, names are lost, nothing else.
**
** Plain code is skipped by 'memmem' for the word "require"; only a hit
** is looked at closely: its line for "--", and the call that follows it,
** byte by byte ('callbyte', which may go on into the next slice).  The
** scanner keeps the last bytes fed ('tail'), for a word cut by a slice
** boundary, and whether the line being read holds "--" so far.
** ======================================================= */

enum { SC_CODE, SC_AFTER, SC_PAREN, SC_NAME, SC_CLOSE };

#define WORD     "require"
#define WORDLEN  7


void ur_scan_init (ur_scan *sc, ur_job *job) {
  memset(sc, 0, sizeof(*sc));
  sc->job = job;
  sc->st = SC_CODE;
}


/* byte classes: 1 identifier ([%w_]), 2 name only ('.', '-') */
static const unsigned char cls[256] = {
  ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['_'] = 1,
  ['.'] = 2, ['-'] = 2
};

#define isidchar(c)    (cls[(unsigned char)(c)] == 1)
#define isnamechar(c)  (cls[(unsigned char)(c)] != 0)


/* add the name just read to the job's list, unless there already */
static void scanadd (ur_scan *sc) {
  ur_job *job = sc->job;
  char *name;
  int i;
  if (job->nprefetch >= UR_MAXPREFETCH) return;
  for (i = 0; i < job->nprefetch; i++)
    if (strcmp(job->prefetch[i], sc->name) == 0) return;
  if (job->prefetch == NULL) {
    job->prefetch = (char **)malloc(UR_MAXPREFETCH * sizeof(char *));
    if (job->prefetch == NULL) return;
  }
  if ((name = strdup(sc->name)) != NULL)
    job->prefetch[job->nprefetch++] = name;
}


/*
** One byte of the call after a "require" (state not SC_CODE).  Returns
** 0 if the byte ends it without belonging to it (it is code: look at it
** again), else 1.
*/
static int callbyte (ur_scan *sc, int c) {
  if (sc->st == SC_NAME) {
    if (c == sc->quote && sc->nname > 0) {
      sc->name[sc->nname] = '\0';
      if (sc->paren) {  /* a ')' or ',' must come next */
        sc->st = SC_CLOSE;
        return 1;
      }
      scanadd(sc);
    }
    else if (isnamechar(c) && sc->nname < UR_MAXPFNAME) {
      sc->name[sc->nname++] = (char)c;
      return 1;
    }
    sc->st = SC_CODE;  /* the call ends (a name, or no plain literal) */
    return c == sc->quote;
  }
  if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return 1;
  if (sc->st == SC_CLOSE) {  /* the literal is the first argument? */
    if (c == ')' || c == ',') scanadd(sc);
    sc->st = SC_CODE;
    return c == ')' || c == ',';
  }
  if (c == '(' && sc->st == SC_AFTER) {
    sc->st = SC_PAREN;
    return 1;
  }
  if (c == '"' || c == '\'') {
    sc->quote = c;
    sc->nname = 0;
    sc->paren = (sc->st == SC_PAREN);
    sc->st = SC_NAME;
    return 1;
  }
  sc->st = SC_CODE;
  return 0;
}


/* does [p, p + n) hold "--"? */
static int hasdashes (const unsigned char *p, size_t n) {
  return n >= 2 && memmem(p, n, "--", 2) != NULL;
}


/*
** Is the "require" at 'w' in [s, e) (the slice fed now) a call to look
** at: no identifier byte before it ('before': the byte before it, or
** -1 at the start of the source), no "--" before it on its line?
*/
static int iscall (ur_scan *sc, const unsigned char *s,
                   const unsigned char *w, int before) {
  const unsigned char *nl;
  if (before >= 0 && isidchar(before)) return 0;
  if ((nl = memrchr(s, '\n', (size_t)(w - s))) != NULL)  /* line here */
    return !hasdashes(nl + 1, (size_t)(w - nl - 1));
  return !(sc->dashes || (sc->dash && w > s && s[0] == '-') ||
           hasdashes(s, (size_t)(w - s)));
}


/* the byte before 's' in the source, or -1 at its start */
static int lastbyte (ur_scan *sc) {
  return sc->ntail > 0 ? (unsigned char)sc->tail[sc->ntail - 1] : -1;
}


/*
** A "require" cut by the boundary: it starts in 'tail' (the last bytes
** fed before 's') and ends in [s, e).  If there is one, and it is a
** call, returns the first byte after it in the slice; else NULL.
*/
static const unsigned char *cutword (ur_scan *sc, const unsigned char *s,
                                     const unsigned char *e) {
  unsigned char j[2 * WORDLEN];
  size_t k = (size_t)(e - s) < WORDLEN - 1 ? (size_t)(e - s) : WORDLEN - 1;
  int i, nt = sc->ntail;
  memcpy(j, sc->tail, (size_t)nt);
  memcpy(j + nt, s, k);
  for (i = nt > WORDLEN - 1 ? nt - (WORDLEN - 1) : 0; i < nt; i++) {
    if ((size_t)(i + WORDLEN) > nt + k || memcmp(j + i, WORD, WORDLEN) != 0)
      continue;
    /* the byte before: in 'tail' ('tail' has WORDLEN bytes once the
       source has that many: 'i' is then at least 1) */
    if ((i > 0 && isidchar(j[i - 1])) || sc->dashes) return NULL;
    return s + (i + WORDLEN - nt);
  }
  return NULL;
}


/* keep the last bytes of the slice [s, e) fed, and the line's dashes */
static void keeptail (ur_scan *sc, const unsigned char *s,
                      const unsigned char *e) {
  size_t n = (size_t)(e - s);
  const unsigned char *nl = memrchr(s, '\n', n);
  if (nl != NULL)
    sc->dashes = hasdashes(nl + 1, (size_t)(e - nl - 1));
  else if (n > 0)
    sc->dashes = sc->dashes || (sc->dash && s[0] == '-') ||
                 hasdashes(s, n);
  if (n > 0) sc->dash = (e[-1] == '-');
  if (n >= sizeof(sc->tail)) {
    memcpy(sc->tail, e - sizeof(sc->tail), sizeof(sc->tail));
    sc->ntail = (int)sizeof(sc->tail);
  }
  else {
    size_t keep = sizeof(sc->tail) - n;
    if (keep > (size_t)sc->ntail) keep = (size_t)sc->ntail;
    memmove(sc->tail, sc->tail + sc->ntail - keep, keep);
    memcpy(sc->tail + keep, s, n);
    sc->ntail = (int)(keep + n);
  }
  sc->seen += n;
}


/* Feed the 'n' bytes at 'p', the next slice of the source. */
void ur_scan_feed (ur_scan *sc, const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p, *e = s + n, *q = s;
  if (sc == NULL || sc->job == NULL || n == 0) return;
  if (sc->st == SC_CODE && (q = cutword(sc, s, e)) != NULL)
    sc->st = SC_AFTER;
  else
    q = s;
  while (q < e) {
    const unsigned char *w;
    if (sc->st != SC_CODE) {  /* in a call: byte by byte */
      if (callbyte(sc, *q)) q++;
      continue;
    }
    w = memmem(q, (size_t)(e - q), WORD, WORDLEN);
    if (w == NULL) break;
    q = w + WORDLEN;
    if (iscall(sc, s, w, w > s ? w[-1] : lastbyte(sc)))
      sc->st = SC_AFTER;
  }
  keeptail(sc, s, e);
}

/* }====================================================== */


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


/*
** lua_Writer for 'lua_dump': append to a ur_buf (non-zero: failed).
** A dump is millions of writes of a few bytes: those that fit take a
** plain copy, and the buffer grows (doubling) only now and then.  The
** buffer gets no terminating '\0'.
*/
static int writer (lua_State *W, const void *p, size_t sz, void *ud) {
  ur_buf *b = (ur_buf *)ud;
  (void)W;
  if (b->cap - b->n < sz) {
    size_t cap = b->cap ? b->cap : 4096;
    char *np;
    while (cap - b->n < sz) cap *= 2;
    if (b->oom || (np = (char *)realloc(b->p, cap)) == NULL) {
      b->oom = 1;
      return 1;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, sz);
  b->n += sz;
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
