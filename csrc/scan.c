/*
** scan.c: the prefetch scanner.  It finds `require "m"`, `require 'm'`,
** `require("m")` and `require('m')`, m made of [%w_.-], in source text
** that compile.c feeds it in slices of any size (in the last two, the
** literal must be the whole first argument: not so in
** `require("m." .. x)`, a common way to pick a module at run time).
** It knows short comments and no more: a "require" after "--" on its
** line is skipped; a hit in a string or a long comment is a false
** positive, which costs a prefetch that nobody adopts, never a wrong
** result (prefetch only searches for and compiles a Lua file).  Out of
** memory, names are lost, nothing else.
**
** Plain code is skipped by 'memchr' for the "q" of "require"; only a hit
** is looked at closely: its line for "--", and the call that follows it,
** byte by byte ('callbyte', which may go on into the next slice).  The
** scanner keeps the last bytes fed ('tail'), for a word cut by a slice
** boundary, and whether the line being read holds "--" so far.
*/

#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "ur.h"


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


/*
** The first "require" in [p, e), or NULL.  Its 'q' is rare in code:
** 'memchr' finds each 'q' many bytes at a time, and only those are
** compared (a 'memmem' for the word costs some instructions a byte).
*/
static const unsigned char *findword (const unsigned char *p,
                                      const unsigned char *e) {
  const unsigned char *x;
  if (e - p < WORDLEN) return NULL;
  x = p + 2;  /* where the 'q' may be: from here ... */
  while (e - x >= WORDLEN - 2 &&  /* ... to e - 5 */
         (x = memchr(x, 'q', (size_t)(e - x) - (WORDLEN - 3))) != NULL) {
    if (memcmp(x - 2, WORD, WORDLEN) == 0) return x - 2;
    x++;
  }
  return NULL;
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
    w = findword(q, e);
    if (w == NULL) break;
    q = w + WORDLEN;
    if (iscall(sc, s, w, w > s ? w[-1] : lastbyte(sc)))
      sc->st = SC_AFTER;
  }
  keeptail(sc, s, e);
}
