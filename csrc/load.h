/*
** load.h: what the parts of the guarded 'package.loaded' share
** (load.c, guard.c, cycle.c, loaded.c).  See load.c for the design.
*/

#ifndef load_h
#define load_h

#include "ur.h"

#pragma GCC visibility push(hidden)

/* user values of a load record */
#define UV_NAME     1
#define UV_PARENT   2  /* the load whose body asked for this one */
#define UV_WAITERS  3  /* tokens of the waiting threads, in order */
#define UV_VALUE    4  /* provisional, then final value */
#define UV_DATA     5  /* loader data, or the error of a failed load */
#define UV_MSGS     6  /* searchers' messages so far (a list) */
#define UV_WAITSON  7  /* the load this one's body waits on */
#define UV_SERVED   8  /* threads to be handed the provisional value */
#define UV_LOADER   9  /* the loader, while its body is due */
#define NUV         9
#define LOADREC     "uvrequire.load"
#define GUARD       "uvrequire.guard"

/* registry keys (by address), defined in load.c */
extern const char ur_key_loading;  /* name -> load record */
extern const char ur_key_driving;  /* thread -> innermost load record */
extern const char ur_key_drivers;  /* load record -> driver (weak) */

/* push one of the registry tables above */
static inline void ur_pushtable (lua_State *L, const char *key) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
}

/* load.c: make the running thread the driver of the load at 'idx' */
void ur_load_setdriver (lua_State *L, int idx, ur_load *ld);
/* guard.c: hand the load at 'idx' (its driver gone) to the first
   waiter still waiting, or fail it */
void ur_load_handover (lua_State *L, int idx, ur_load *ld);
/* guard.c: __close of a require frame's guard */
int ur_load_guardclose (lua_State *L);

/* loaded.c */

#pragma GCC visibility pop

#endif
