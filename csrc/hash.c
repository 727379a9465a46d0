/*
** hash.c: the content hash of the bytecode cache (cache.c), fed bytes
** in slices of any size (compile.c hashes a source as it reads it).
** Any thread: the state is the caller's.
*/

#include <string.h>

#include "ur.h"


/*
** The content hash: 64 bits, 8 bytes a step (a multiply and a rotate),
** the same whatever slices the bytes come in.  It guards against
** accidents (an edit that kept size and mtime, a corrupt entry), not
** against an attacker: entries are trusted by their owner and mode.
*/
#define K1  UINT64_C(0x9e3779b97f4a7c15)
#define K2  UINT64_C(0xc2b2ae3d27d4eb4f)

static uint64_t mix (uint64_t h, uint64_t w) {
  h ^= w * K1;
  h = (h << 27) | (h >> 37);
  return h * K2 + UINT64_C(0x165667b19e3779f9);
}


/* the little-endian 64-bit word at 'p' */
static uint64_t word (const unsigned char *p) {
  uint64_t w;
  memcpy(&w, p, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64(w);
#endif
  return w;
}


void ur_hash_init (ur_hasher *s) {
  s->h = UINT64_C(0x27d4eb2f165667c5);
  s->n = s->tail = 0;
}


void ur_hash_add (ur_hasher *s, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  unsigned k = (unsigned)(s->n & 7);  /* bytes pending in 'tail' */
  s->n += n;
  if (k != 0) {  /* complete the pending word first */
    for (; k < 8 && n > 0; k++, n--)
      s->tail |= (uint64_t)*b++ << (8 * k);
    if (k < 8) return;
    s->h = mix(s->h, s->tail);
    s->tail = 0;
  }
  for (; n >= 8; n -= 8, b += 8)
    s->h = mix(s->h, word(b));
  for (k = 0; n > 0; k++, n--)
    s->tail |= (uint64_t)*b++ << (8 * k);
}


uint64_t ur_hash_end (const ur_hasher *s) {
  uint64_t h = s->h;
  if (s->n & 7) h = mix(h, s->tail);
  h ^= s->n;
  h ^= h >> 33;  /* final avalanche (MurmurHash3's fmix64) */
  h *= UINT64_C(0xff51afd7ed558ccd);
  h ^= h >> 33;
  h *= UINT64_C(0xc4ceb9fe1a85ec53);
  return h ^ (h >> 33);
}


uint64_t ur_hash (const void *p, size_t n) {
  ur_hasher s;
  ur_hash_init(&s);
  ur_hash_add(&s, p, n);
  return ur_hash_end(&s);
}
