/*
** buf.c: 'ur_buf', the growable byte buffer of ur.h (a job's messages,
** the bytecode a compile writes, paths being built).  malloc-based,
** usable on any thread; an allocation that fails sets 'oom', and the
** contents are then incomplete.
*/

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ur.h"


void ur_buf_add (ur_buf *b, const char *s, size_t len) {
  if (b->oom || len == 0) return;
  if (b->cap - b->n <= len) {  /* keep room for a terminating '\0' */
    size_t cap = b->cap ? b->cap : 64;
    char *p;
    while (cap - b->n <= len) cap *= 2;
    p = (char *)realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
  b->p[b->n] = '\0';
}


void ur_buf_adds (ur_buf *b, const char *s) {
  ur_buf_add(b, s, strlen(s));
}


void ur_buf_addf (ur_buf *b, const char *fmt, ...) {
  char small[256];
  int n;
  va_list ap;
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof(small))
    ur_buf_add(b, small, (size_t)n);
  else {
    char *big = (char *)malloc((size_t)n + 1);
    if (big == NULL) {
      b->oom = 1;
      return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ur_buf_add(b, big, (size_t)n);
    free(big);
  }
}


void ur_buf_free (ur_buf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}


/*
** Make 'b' say "not enough memory", in place when it has the room (no
** allocation then), else anew after dropping what it held.  Should even
** that fail, 'b' is left empty with 'oom' set.
*/
void ur_buf_nomem (ur_buf *b) {
  static const char nomem[] = "not enough memory";
  if (b->p != NULL && b->cap > sizeof(nomem)) {
    memcpy(b->p, nomem, sizeof(nomem));
    b->n = sizeof(nomem) - 1;
    b->oom = 0;
    return;
  }
  ur_buf_free(b);
  b->oom = 0;
  ur_buf_add(b, nomem, sizeof(nomem) - 1);
}
