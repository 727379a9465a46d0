/*
** compile.c: read a Lua file and compile it to bytecode, off the Lua
** thread.  Runs on an executor thread, in that thread's own lua_State.
**
** The rules are those of 'luaL_loadfilex' (lauxlib.c): a UTF-8 BOM is
** skipped; a first line starting with '#' is skipped but its newline
** kept, so line numbers do not move; a file whose first significant
** byte is LUA_SIGNATURE[0] is a binary chunk; the chunk name is
** "@" .. path; read errors say "cannot read <path>: <strerror>".
** The result is dumped *with* debug information.
*/

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ur.h"


/* thread-safe strerror (GNU strerror_r returns the message) */
static const char *errtext (int e, char *buf, size_t n) {
  return strerror_r(e, buf, n);
}


/* "cannot <what> <file>: <reason>", as lauxlib's 'errfile' says it */
static int errfile (ur_buf *err, const char *what, const char *file,
                    int e) {
  char buf[128];
  ur_buf_addf(err, "cannot %s %s: %s", what, file,
              errtext(e, buf, sizeof(buf)));
  return 0;
}


/* read all of 'f' (named 'file') into 'b' and close it; 0 on failure */
static int readall (const char *file, FILE *f, ur_buf *b, ur_buf *err) {
  char chunk[BUFSIZ];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
    ur_buf_add(b, chunk, n);
  if (ferror(f)) {
    int e = errno;
    fclose(f);
    return errfile(err, "read", file, e);
  }
  fclose(f);
  return 1;
}


/*
** Compute the text the parser sees, exactly as 'luaL_loadfilex' feeds
** it: 'keep' leading bytes (a partial BOM), then a newline if a '#'
** line was skipped (text chunks only), then the bytes from 'rest' on.
** Fills 'out' only when the result is not a plain suffix of 'src'.
*/
static const char *loadtext (const char *src, size_t len, ur_buf *out,
                             size_t *outlen) {
  static const char bom[] = "\xEF\xBB\xBF";
  size_t keep = 0, rest;
  int comment = 0;
  while (keep < 3 && keep < len && src[keep] == bom[keep])
    keep++;
  rest = keep;
  if (keep == 3) keep = 0;  /* whole BOM: discarded */
  if (rest < len && src[rest] == '#') {  /* skip first line */
    const char *nl = memchr(src + rest, '\n', len - rest);
    rest = (nl != NULL) ? (size_t)(nl - src) + 1 : len;
    comment = 1;
  }
  if (rest < len && src[rest] == LUA_SIGNATURE[0])
    comment = 0;  /* binary chunk: no newline is added */
  if (keep == 0 && !comment) {
    *outlen = len - rest;
    return src + rest;
  }
  if (keep == 0 && rest > 0 && src[rest - 1] == '\n') {
    *outlen = len - rest + 1;  /* reuse the skipped line's newline */
    return src + rest - 1;
  }
  ur_buf_add(out, src, keep);
  if (comment) ur_buf_add(out, "\n", 1);
  ur_buf_add(out, src + rest, len - rest);
  *outlen = out->n;
  return out->p;
}


/* lua_Writer for 'lua_dump': append to a ur_buf */
static int writer (lua_State *W, const void *p, size_t sz, void *ud) {
  ur_buf *b = (ur_buf *)ud;
  (void)W;
  ur_buf_add(b, (const char *)p, sz);
  return b->oom;
}


/*
** Read 'file', open as 'f' (closed here), and compile it in 'W'.  On
** success returns 1 with the bytecode in 'code'; on failure returns 0
** with the loader's message in 'err'.  Leaves the stack of 'W' empty.
** With 'W' NULL (a job run on the Lua thread, which compiles there)
** only reads: 'code' gets the text as the parser would see it.
*/
int ur_compile (lua_State *W, const char *file, FILE *f, ur_buf *code,
                ur_buf *err) {
  ur_buf src = {NULL, 0, 0, 0}, tmp = {NULL, 0, 0, 0};
  ur_buf name = {NULL, 0, 0, 0};
  const char *text;
  size_t len;
  int ok = 0;
  if (!readall(file, f, &src, err))
    goto done;
  text = loadtext(src.p ? src.p : "", src.n, &tmp, &len);
  ur_buf_addf(&name, "@%s", file);
  if (src.oom || tmp.oom || name.oom) {
    ur_buf_adds(err, "not enough memory");
    goto done;
  }
  if (W == NULL) {  /* read only: hand over the text */
    ur_buf_add(code, text, len);
    ok = !code->oom;
    if (!ok) ur_buf_adds(err, "not enough memory");
    goto done;
  }
  if (luaL_loadbufferx(W, text, len, name.p, NULL) != LUA_OK) {
    const char *msg = lua_tostring(W, -1);  /* pushed by the loader */
    ur_buf_adds(err, msg ? msg : "(error object is not a string)");
  }
  else if (lua_dump(W, writer, code, 0) != 0 || code->oom)
    ur_buf_adds(err, "not enough memory");
  else
    ok = 1;
  lua_settop(W, 0);  /* pop the chunk or the message */
 done:
  ur_buf_free(&src);
  ur_buf_free(&tmp);
  ur_buf_free(&name);
  return ok;
}
