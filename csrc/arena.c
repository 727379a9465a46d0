/*
** arena.c: the allocator of a compile's scratch lua_State.
**
** A worker (or the Lua thread running a queued prefetch) compiles each
** module in a lua_State of its own, made for the job and dropped after
** it.  Nothing in that state outlives the job and no collection runs
** in it (the compile stops the collector), so its memory comes from an
** arena: small blocks are cut off the current chunk (a pointer bump),
** and freeing one gives its bytes back only if it is the chunk's last
** (the parser's growing buffers are mostly that).  A big block is a
** malloc of its own, freed and reallocated as usual.  Dropping the
** state is then one 'ur_arena_reset', not a walk over every object as
** 'lua_close' does: the state uses no memory but its allocator's, has
** no finalizers (no library is opened in it) and no open upvalues.
**
** An arena keeps one chunk between jobs (its pages stay mapped: no
** page faults for the next job); what a large compile needed beyond it
** goes back to malloc at once.
*/

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ur.h"


/* chunk size; a block of BIG bytes or more is a malloc of its own */
#define CHUNK  ((size_t)256 * 1024)
#define BIG    ((size_t)16 * 1024)

/* every block is aligned as malloc aligns on the platforms Lua runs on
   (C99 has no max_align_t: 'Align' is the most demanding type; 16, a
   power of two, covers it, as the check below makes sure) */
typedef union Align {
  long double d;
  void *p;
  long long l;
} Align;

#define ALIGN  ((size_t)16)
typedef char alignfits[sizeof(Align) <= ALIGN ? 1 : -1];
#define ROUND(n)  (((n) + ALIGN - 1) & ~(ALIGN - 1))

struct ur_chunk {
  struct ur_chunk *next;  /* older chunks */
  size_t size, used;      /* of 'data' */
  Align data[1];          /* (flexible: the chunk's bytes) */
};

/* a big block's header, in a list of the arena's big blocks */
typedef struct ur_big {
  struct ur_big *prev, *next;
  Align data[1];
} Big;

#define CHUNKHDR  offsetof(ur_chunk, data)
#define BIGHDR    offsetof(Big, data)
#define bigof(p)  ((Big *)(void *)((char *)(p) - BIGHDR))


/* is 'p' ('size' bytes) the last block of the current chunk? */
static int islast (ur_arena *a, void *p, size_t size) {
  ur_chunk *c = a->cur;
  return c != NULL &&
         (char *)p + ROUND(size) == (char *)c->data + c->used;
}


/* 'n' (rounded) bytes off the current chunk, or off a new one; NULL:
   no memory */
static void *bump (ur_arena *a, size_t n) {
  ur_chunk *c = a->cur;
  n = ROUND(n);
  if (c == NULL || c->size - c->used < n) {
    size_t size = n > CHUNK ? n : CHUNK;
    c = (ur_chunk *)malloc(CHUNKHDR + size);
    if (c == NULL) return NULL;
    c->next = a->cur;
    c->size = size;
    c->used = 0;
    a->cur = c;
    a->bytes += size;
  }
  c->used += n;
  return (char *)c->data + c->used - n;
}


/* a big block of 'n' bytes, linked in the arena's list; NULL: none */
static void *newbig (ur_arena *a, size_t n) {
  Big *b = (Big *)malloc(BIGHDR + n);
  if (b == NULL) return NULL;
  b->prev = NULL;
  b->next = a->bigs;
  if (a->bigs != NULL) a->bigs->prev = b;
  a->bigs = b;
  a->bytes += n;
  return b->data;
}


/* unlink and free the big block 'p' of 'n' bytes */
static void freebig (ur_arena *a, void *p, size_t n) {
  Big *b = bigof(p);
  if (b->prev != NULL) b->prev->next = b->next;
  else a->bigs = b->next;
  if (b->next != NULL) b->next->prev = b->prev;
  a->bytes -= n;
  free(b);
}


/* grow or shrink the big block 'p' from 'o' to 'n' (>= BIG) bytes; a
   shrink never fails: the block stays as it is */
static void *reallocbig (ur_arena *a, void *p, size_t o, size_t n) {
  Big *b = bigof(p);
  Big *nb = (Big *)realloc(b, BIGHDR + n);
  if (nb == NULL)  /* (the block is unchanged) */
    return n <= o ? p : NULL;
  if (nb->prev != NULL) nb->prev->next = nb;
  else a->bigs = nb;
  if (nb->next != NULL) nb->next->prev = nb;
  a->bytes = a->bytes - o + n;
  return nb->data;
}


/*
** The lua_Alloc ('ud' is the arena).  A block is big if its size is BIG
** or more, so that 'osize' tells where a block lives; a block smaller
** than that is cut from a chunk, or a big one that kept its place when
** shrunk.  A shrink never fails (the block may stay where it is).
*/
static void *arenaalloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  ur_arena *a = (ur_arena *)ud;
  void *np;
  if (ptr == NULL) {  /* a new block ('osize' is its kind, not a size) */
    if (nsize == 0) return NULL;
    return nsize >= BIG ? newbig(a, nsize) : bump(a, nsize);
  }
  if (osize >= BIG) {  /* a big block */
    if (nsize >= BIG) return reallocbig(a, ptr, osize, nsize);
    np = NULL;
    if (nsize > 0 && (np = bump(a, nsize)) == NULL)
      return ptr;  /* a shrink never fails: it stays, small from now on
                      (a block of no chunk: freeing it is a no-op, and
                      the reset frees it with the big ones) */
    if (np != NULL) memcpy(np, ptr, nsize);
    freebig(a, ptr, osize);
    return np;
  }
  if (nsize == 0) {  /* free a small block: its bytes back if last */
    if (islast(a, ptr, osize)) a->cur->used -= ROUND(osize);
    return NULL;
  }
  if (nsize < BIG && islast(a, ptr, osize) &&  /* resize in place? */
      a->cur->size - (a->cur->used - ROUND(osize)) >= ROUND(nsize)) {
    a->cur->used = a->cur->used - ROUND(osize) + ROUND(nsize);
    return ptr;
  }
  if (nsize <= osize) return ptr;  /* shrink: stays */
  np = nsize >= BIG ? newbig(a, nsize) : bump(a, nsize);
  if (np != NULL) memcpy(np, ptr, osize);
  return np;
}


/* a panic in a scratch state (never seen: everything runs protected),
   said as 'luaL_newstate' says it */
static int panic (lua_State *W) {
  const char *msg = lua_tostring(W, -1);
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n",
          msg ? msg : "error object is not a string");
  return 0;  /* then Lua aborts */
}


/*
** A new lua_State living in 'a' (an arena that holds no state now), or
** NULL if there is no memory for it.
*/
lua_State *ur_arena_newstate (ur_arena *a) {
  lua_State *W = lua_newstate(arenaalloc, a);
  if (W != NULL) lua_atpanic(W, panic);
  return W;
}


/*
** Drop the state living in 'a' (if any) with all its memory; the arena
** keeps its first chunk for the next state.  Returns whether the state
** had grown beyond that chunk (memory worth giving back to the system
** once idle: see 'malloc_trim' in executor.c).
*/
int ur_arena_reset (ur_arena *a) {
  int grew = a->bytes > CHUNK;
  ur_chunk *keep = NULL;
  while (a->bigs != NULL) {
    Big *b = a->bigs;
    a->bigs = b->next;
    free(b);
  }
  while (a->cur != NULL) {  /* keep the oldest chunk, if a plain one */
    ur_chunk *c = a->cur;
    a->cur = c->next;
    if (a->cur == NULL && c->size == CHUNK) keep = c;
    else free(c);
  }
  a->cur = keep;
  a->bytes = 0;
  if (keep != NULL) {
    keep->used = 0;
    a->bytes = CHUNK;
  }
  return grew;
}


/* free all of 'a' (its state dropped first) */
void ur_arena_free (ur_arena *a) {
  (void)ur_arena_reset(a);
  free(a->cur);
  a->cur = NULL;
  a->bytes = 0;
}
