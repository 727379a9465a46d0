/*
** compile.c: compile a Lua file to bytecode, off the Lua thread.  Runs
** on an executor thread, in that thread's own lua_State.
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
#include <ctype.h>
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
** of any size.  It knows short comments and no more: a hit in a string
** or a long comment is a false positive, which costs a prefetch that
** nobody adopts, never a wrong result (prefetch only searches for and
** compiles a Lua file).  Out of memory, names are lost, nothing else.
** ======================================================= */

enum { SC_CODE, SC_DASH, SC_COMMENT, SC_AFTER, SC_PAREN, SC_NAME };


void ur_scan_init (ur_scan *sc, ur_job *job) {
  memset(sc, 0, sizeof(*sc));
  sc->job = job;
  sc->st = SC_CODE;
}


static int isidchar (int c) {
  return isalnum((unsigned char)c) || c == '_';
}


static int isnamechar (int c) {
  return isidchar(c) || c == '.' || c == '-';
}


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


/* one byte of source */
static void scanbyte (ur_scan *sc, int c) {
  switch (sc->st) {
    case SC_AFTER: case SC_PAREN:  /* after 'require' (and a '(') */
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return;
      if (c == '(' && sc->st == SC_AFTER) {
        sc->st = SC_PAREN;
        return;
      }
      if (c == '"' || c == '\'') {
        sc->quote = c;
        sc->nname = 0;
        sc->st = SC_NAME;
        return;
      }
      sc->st = SC_CODE;
      break;  /* this byte is code */
    case SC_NAME:
      if (c == sc->quote && sc->nname > 0) {
        sc->name[sc->nname] = '\0';
        scanadd(sc);
        sc->st = SC_CODE;
        return;
      }
      if (isnamechar(c) && sc->nname < UR_MAXPFNAME) {
        sc->name[sc->nname++] = (char)c;
        return;
      }
      sc->st = SC_CODE;  /* no plain literal name */
      return;
    case SC_COMMENT:
      if (c == '\n') sc->st = SC_CODE;
      return;
    case SC_DASH:
      if (c == '-') {
        sc->st = SC_COMMENT;
        return;
      }
      sc->st = SC_CODE;
      break;
    default: break;
  }
  if (isidchar(c)) {  /* SC_CODE */
    if (sc->nid < sizeof(sc->id)) sc->id[sc->nid] = (char)c;
    sc->nid++;
    return;
  }
  if (sc->nid == 7 && memcmp(sc->id, "require", 7) == 0) {
    sc->nid = 0;
    sc->st = SC_AFTER;
    scanbyte(sc, c);  /* the byte after 'require' */
    return;
  }
  sc->nid = 0;
  if (c == '-') sc->st = SC_DASH;
}


void ur_scan_feed (ur_scan *sc, const char *p, size_t n) {
  size_t i;
  if (sc == NULL || sc->job == NULL) return;
  for (i = 0; i < n; i++)
    scanbyte(sc, (unsigned char)p[i]);
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
    c->sum->hash = ur_hash(c->sum->hash, &b, 1);
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
  c->sum->hash = ur_hash(c->sum->hash, c->buff, *size);
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


/* lua_Writer for 'lua_dump': append to a ur_buf (non-zero: failed) */
static int writer (lua_State *W, const void *p, size_t sz, void *ud) {
  ur_buf *b = (ur_buf *)ud;
  (void)W;
  ur_buf_add(b, (const char *)p, sz);
  return b->oom;
}


/*
** Protected part of 'ur_compile' (light userdata 1: the Compile):
** load the chunk and dump it.  Returns the chunk (or the loader's
** message) on the stack; a failed dump raises "not enough memory".
*/
static int pcompile (lua_State *W) {
  Compile *c = (Compile *)lua_touserdata(W, 1);
  int ch;
  lua_pushfstring(W, "@%s", c->file);  /* chunk name */
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
  if (lua_load(W, getF, c, lua_tostring(W, -1), NULL) != LUA_OK)
    return 1;  /* the message */
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
  readns = 0;
  c.file = file;
  c.f = f;
  c.n = 0;
  c.rerr = 0;
  c.code = code;
  c.sum = sum;
  c.sc = sc;
  sum->hash = UR_HASHINIT;
  sum->n = 0;
  sum->binary = sum->whole = 0;
  lua_pushcfunction(W, pcompile);
  lua_pushlightuserdata(W, &c);
  status = lua_pcall(W, 1, 1, 0);
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
