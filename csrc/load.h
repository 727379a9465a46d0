/*
** load.h: what the parts of the guarded 'package.loaded' share
** (load.c, wake.c, cycle.c, loaded.c).  See load.c for the design.
*/

#ifndef load_h
#define load_h

#include "ur.h"

#pragma GCC visibility push(hidden)

#define UV_NAME     1
#define UV_DRIVER   2  /* the driver thread, anchored */
#define UV_WAITERS  3  /* list of waiting threads */
#define UV_VALUE    4  /* provisional, then final value */
#define UV_DATA     5  /* loader data, or the error of a failed load */
#define UV_MSGS     6  /* searchers' messages so far */
#define UV_WAITSON  7  /* the load this one's body waits on */
#define UV_SERVED   8  /* waiters to be handed the provisional value */
#define NUV         8
#define LOADREC     "uvrequire.load"
#define GUARD       "uvrequire.guard"

/* registry keys (by address), defined in load.c */
extern const char ur_key_loading;  /* name -> load record */
extern const char ur_key_inflight;  /* job (light ud) -> load record */
extern const char ur_key_driving;  /* thread -> innermost load record */
extern const char ur_key_wake;  /* list of ended loads to announce */
extern const char ur_key_soon;  /* list of loads whose body is due */
extern const char ur_key_serve;  /* list of threads served a value */
extern const char ur_key_errors;  /* errors of resumed coroutines */

/* push one of the registry tables above */
static inline void ur_pushtable (lua_State *L, const char *key) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
}

/* load.c */
void ur_load_fail (lua_State *L, int idx);
/* wake.c */
void ur_load_schedulewake (lua_State *L, int idx, ur_load *ld);
void ur_load_resume (lua_State *L, lua_State *co);
/* loaded.c */
void ur_loaded_guard (lua_State *L);

#pragma GCC visibility pop

#endif
