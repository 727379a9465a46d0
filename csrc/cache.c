/*
** cache.c: the bytecode cache.  An executor thread that compiles a Lua
** module looks it up here first, and stores the bytecode here after
** compiling it.
**
** An entry: file "<hash of the absolute path>.luac" holding a header
** (below), the absolute path and the name the source was found as (the
** chunk name minus '@'), and the bytecode dumped with debug
** information.  It is used only if all of these match: the format
** number, the Lua release, sizeof(lua_Integer) and sizeof(lua_Number);
** the path and name; the source's size and mtime (ns); the hash of the
** source's content (the source is still read and hashed on a hit: only
** the compilation is saved); the entry's length; the hash of the
** bytecode; and the bytecode's own header (LUAC_VERSION, format, sizes)
** against a dump made by this Lua.  Anything else is a miss: the source
** is compiled, and the entry rewritten (unless it is another user's).
** Since the content hash covers exactly the bytes compiled, an entry
** gives the bytecode of the source text (and chunk name) at hand,
** whatever happened to the file meanwhile, short of a deliberate
** collision: the hash (hash.c) guards against accidents, not against
** whoever can write the source and set its mtime.  Entries are
** written to a temporary file in the directory, then renamed into
** place: a reader never sees half an entry.  The bytecode of a hit is
** handed over as it is, not loaded on the executor thread: the hashes
** stand for that.
**
** This file: the entries, read and written on executor threads, and
** the jobs that write them.  cachedir.c: where the cache is, and the
** Lua functions; hash.c: the content hash.
*/

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "ur.h"


#if LUA_VERSION_NUM != 504
#error "the bytecode cache knows the header of Lua 5.4 dumps only"
#endif

/* uvrequire's entry format: change it whenever an entry's meaning does */
#define CACHE_FORMAT 2

#define MAGIC  "uvrqbc\n"  /* 8 bytes with its '\0' */

/* length of the header of a Lua 5.4 dump: signature, version, format,
   LUAC_DATA, 3 sizes, LUAC_INT, LUAC_NUM */
#define LUACHDR  (4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + \
                  sizeof(lua_Number))

#define MAXPATH  65536  /* longest path an entry may hold */


/* header of an entry (native byte order: a cache is per machine) */
typedef struct Header {
  char magic[8];        /* MAGIC */
  uint32_t format;      /* CACHE_FORMAT */
  uint32_t release;     /* LUA_VERSION_RELEASE_NUM */
  uint32_t intsize;     /* sizeof(lua_Integer) */
  uint32_t numsize;     /* sizeof(lua_Number) */
  uint32_t pathlen;     /* length of the absolute path that follows */
  uint32_t namelen;     /* length of the name that follows it */
  uint64_t size;        /* the source's size */
  int64_t msec;         /* its mtime: seconds */
  int64_t mnsec;        /* and nanoseconds */
  uint64_t srchash;     /* 'ur_hash' of its content */
  uint64_t codelen;     /* length of the bytecode, last in the entry */
  uint64_t codehash;    /* 'ur_hash' of the bytecode */
} Header;


/* {======================================================
** Counters, and the header of this Lua's dumps
** ======================================================= */

static char refhdr[LUACHDR];   /* header of this Lua's dumps */
static int refok;              /* atomic: 'refhdr' is set */
static unsigned long nhits, nmisses, nwrites;  /* atomic counters */
static unsigned int ntemp;     /* atomic: names temporary files */


/* add one to counter 'c' (any thread) */
static void count (unsigned long *c) {
  __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}


/* the value of counter 'c' (any thread) */
static unsigned long counted (unsigned long *c) {
  return __atomic_load_n(c, __ATOMIC_RELAXED);
}


/* the counts so far: look-ups that hit, that missed, and entries
   written (any thread) */
void ur_cache_counts (unsigned long *hits, unsigned long *misses,
                      unsigned long *writes) {
  *hits = counted(&nhits);
  *misses = counted(&nmisses);
  *writes = counted(&nwrites);
}


/* lua_Writer keeping the first LUACHDR bytes of a dump in 'refhdr' */
static int refwriter (lua_State *L, const void *p, size_t sz, void *ud) {
  size_t *n = (size_t *)ud;
  (void)L;
  if (*n < LUACHDR) {
    size_t k = LUACHDR - *n < sz ? LUACHDR - *n : sz;
    memcpy(refhdr + *n, p, k);
    *n += k;
  }
  return 0;
}


/* set 'refhdr' from a dump of an empty chunk, once (cachedir.c's
   lock held) */
void ur_cache_setrefhdr (lua_State *L) {
  size_t n = 0;
  if (__atomic_load_n(&refok, __ATOMIC_ACQUIRE)) return;
  if (luaL_loadstring(L, "") == LUA_OK) {
    lua_dump(L, refwriter, &n, 0);
    if (n == LUACHDR)
      __atomic_store_n(&refok, 1, __ATOMIC_RELEASE);
  }
  lua_pop(L, 1);  /* the chunk or the message */
}

/* }====================================================== */


/* {======================================================
** Entries (executor threads)
** ======================================================= */

/* does this process's user alone own, and may write, the file? */
static int trusted (const struct stat *st) {
  return st->st_uid == geteuid() && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}


/* open directory 'dir' if it is trusted: its fd, or -1 (errno ENOENT:
   it does not exist) */
static int opentrusted (const char *dir) {
  struct stat st;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || !trusted(&st)) {
    close(fd);
    errno = EPERM;
    return -1;
  }
  return fd;
}


/* may this process write a file of 'n' bytes?  (RLIMIT_FSIZE: beyond
   it, the write would raise SIGXFSZ, which kills the process) */
static int fits (size_t n) {
  struct rlimit rl;
  return getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
         (rlim_t)n <= rl.rlim_cur;
}


/* read exactly 'n' bytes at 'off': 1 if all were read */
static int readall (int fd, void *p, size_t n, off_t off) {
  char *s = (char *)p;
  while (n > 0) {
    ssize_t r = pread(fd, s, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    s += r;
    n -= (size_t)r;
    off += r;
  }
  return 1;
}


/* write all 'n' bytes: 1 if all were written */
static int writeall (int fd, const void *p, size_t n) {
  const char *s = (const char *)p;
  while (n > 0) {
    ssize_t r = write(fd, s, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    s += r;
    n -= (size_t)r;
  }
  return 1;
}


/* hash the whole file 'fd' (from its start, its offset untouched),
   feeding it to 'sc': 1 if it holds exactly 'size' bytes, of hash
   '*h' */
static int hashfile (int fd, uint64_t size, uint64_t *h, ur_scan *sc) {
  char buff[BUFSIZ];
  uint64_t n = 0;
  ur_hasher hs;
  ur_hash_init(&hs);
  for (;;) {
    ssize_t r = pread(fd, buff, sizeof(buff), (off_t)n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return 0;
    if (r == 0) break;
    ur_hash_add(&hs, buff, (size_t)r);
    ur_scan_feed(sc, buff, (size_t)r);
    n += (uint64_t)r;
    if (n > size) return 0;
  }
  *h = ur_hash_end(&hs);
  return n == size;
}


/* the header 'k' wants, all but the source's and bytecode's hashes
   and the bytecode's length */
static void makeheader (const ur_cachekey *k, Header *h) {
  memset(h, 0, sizeof(*h));
  memcpy(h->magic, MAGIC, sizeof(h->magic));
  h->format = CACHE_FORMAT;
  h->release = LUA_VERSION_RELEASE_NUM;
  h->intsize = sizeof(lua_Integer);
  h->numsize = sizeof(lua_Number);
  h->pathlen = (uint32_t)strlen(k->abspath);
  h->namelen = (uint32_t)strlen(k->name);
  h->size = k->size;
  h->msec = k->msec;
  h->mnsec = k->mnsec;
}


enum { MISS, HIT, FOREIGN };


/*
** The entry of 'k' could not be opened, though it is there: is it a
** regular file of this user's that only it may write (one it cannot
** read, say)?  Then a write may replace it.  Not so a symlink (the
** open's ELOOP) or anything else.
*/
static int ownentry (ur_cachekey *k) {
  struct stat st;
  return fstatat(k->dirfd, k->entry, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         S_ISREG(st.st_mode) && trusted(&st);
}

/*
** Read the entry of 'k' (its directory open) for the source open as
** 'fd'.  HIT: the bytecode is in '*code' (malloc'ed), '*len'.  MISS:
** none, or not valid.  FOREIGN: one that must be left alone.  The
** source, if read, goes through the prefetch scanner 'sc'.
*/
static int readentry (ur_cachekey *k, int fd, char **code, size_t *len,
                      ur_scan *sc) {
  Header want, h;
  struct stat st;
  char *names = NULL, *bc = NULL;
  uint64_t srchash;
  int res = MISS;
  int efd = openat(k->dirfd, k->entry,
                   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (efd < 0)
    return errno == ENOENT || ownentry(k) ? MISS : FOREIGN;
  if (fstat(efd, &st) != 0 || !S_ISREG(st.st_mode) || !trusted(&st)) {
    close(efd);
    return FOREIGN;
  }
  makeheader(k, &want);
  if ((uint64_t)st.st_size < sizeof(h) || !readall(efd, &h, sizeof(h), 0))
    goto done;
  if (memcmp(h.magic, want.magic, sizeof(h.magic)) != 0 ||
      h.format != want.format || h.release != want.release ||
      h.intsize != want.intsize || h.numsize != want.numsize ||
      h.pathlen != want.pathlen || h.namelen != want.namelen ||
      h.size != want.size || h.msec != want.msec || h.mnsec != want.mnsec ||
      h.codelen < LUACHDR || h.codelen > (uint64_t)st.st_size ||
      (uint64_t)st.st_size != sizeof(h) + (uint64_t)h.pathlen +
                              h.namelen + h.codelen)
    goto done;
  names = (char *)malloc((size_t)h.pathlen + h.namelen + 1);
  if (names == NULL ||
      !readall(efd, names, (size_t)h.pathlen + h.namelen, sizeof(h)) ||
      memcmp(names, k->abspath, h.pathlen) != 0 ||
      memcmp(names + h.pathlen, k->name, h.namelen) != 0)
    goto done;
  if (!hashfile(fd, h.size, &srchash, sc) || srchash != h.srchash)
    goto done;  /* the content changed */
  bc = (char *)malloc((size_t)h.codelen);
  if (bc == NULL ||
      !readall(efd, bc, (size_t)h.codelen,
               (off_t)(sizeof(h) + h.pathlen + h.namelen)) ||
      ur_hash(bc, (size_t)h.codelen) != h.codehash ||
      !__atomic_load_n(&refok, __ATOMIC_ACQUIRE) ||
      memcmp(bc, refhdr, LUACHDR) != 0)
    goto done;
  *code = bc;
  *len = (size_t)h.codelen;
  bc = NULL;
  res = HIT;
 done:
  free(names);
  free(bc);
  close(efd);
  return res;
}


/*
** Look 'file', open as 'f', up: see ur.h.  Every look-up of a source
** the cache could hold counts, as a hit or a miss; a source that is no
** regular file, or a cache that is off, counts nothing.
*/
int ur_cache_get (ur_cachekey *k, const char *file, FILE *f, char **code,
                  size_t *len, ur_scan *sc) {
  struct stat st;
  const char *dir = ur_cache_dir();
  int res;
  k->write = 0;
  k->dirfd = -1;
  k->dir = dir;
  k->name = file;
  k->abspath = NULL;
  if (dir == NULL || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
    return 0;
  k->size = (uint64_t)st.st_size;
  k->msec = (int64_t)st.st_mtim.tv_sec;
  k->mnsec = (int64_t)st.st_mtim.tv_nsec;
  if (strlen(file) >= MAXPATH ||
      (k->abspath = ur_cache_absolute(file)) == NULL ||
      strlen(k->abspath) >= MAXPATH)
    return 0;  /* no memory, or no working directory: no cache */
  snprintf(k->entry, sizeof(k->entry), "%016llx.luac",
           (unsigned long long)ur_hash(k->abspath, strlen(k->abspath)));
  count(&nmisses);  /* taken back on a hit */
  k->dirfd = opentrusted(dir);
  if (k->dirfd < 0) {
    k->write = (errno == ENOENT);  /* made on the first write */
    return 0;
  }
  res = readentry(k, fileno(f), code, len, sc);
  if (res == HIT) {
    __atomic_fetch_sub(&nmisses, 1, __ATOMIC_RELAXED);
    count(&nhits);
    return 1;
  }
  k->write = (res == MISS);
  return 0;
}


/*
** After a miss of 'k', store 'len' bytes of bytecode 'code' compiled
** from the source read as 'sum' says: only if 'k' may write, and the
** source was a text chunk read whole, of the size that 'fstat' gave.
** The directory is made if it does not exist.  Any failure (disk
** full, no memory) just leaves no entry, and no temporary file.
*/
void ur_cache_put (ur_cachekey *k, const char *code, size_t len,
                   const ur_srcsum *sum) {
  Header h;
  char tmp[sizeof(k->entry) + 48];
  int fd, ok;
  if (!k->write || !sum->whole || sum->n != k->size || len < LUACHDR)
    return;
  makeheader(k, &h);
  h.srchash = ur_hash_end(&sum->hash);
  h.codelen = len;
  h.codehash = ur_hash(code, len);
  if (!fits(sizeof(h) + h.pathlen + h.namelen + len))
    return;  /* (a write job's directory is closed already) */
  if (k->dirfd < 0 &&  /* a write job's, or none yet: open or make it */
      (k->dirfd = opentrusted(k->dir)) < 0) {
    if (errno != ENOENT) return;
    ur_cache_makedirs(k->dir);
    if ((k->dirfd = opentrusted(k->dir)) < 0) return;
  }
  snprintf(tmp, sizeof(tmp), "%s.%ld.%u.tmp", k->entry, (long)getpid(),
           __atomic_fetch_add(&ntemp, 1, __ATOMIC_RELAXED));
  fd = openat(k->dirfd, tmp,
              O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return;
  ok = writeall(fd, &h, sizeof(h)) &&
       writeall(fd, k->abspath, h.pathlen) &&
       writeall(fd, k->name, h.namelen) &&
       writeall(fd, code, len);
  if (close(fd) != 0) ok = 0;
  if (ok && renameat(k->dirfd, tmp, k->dirfd, k->entry) == 0)
    count(&nwrites);
  else
    (void)unlinkat(k->dirfd, tmp, 0);
}


/* an entry to write later, on an executor thread */
struct ur_cachewrite {
  ur_cachekey k;        /* its 'name' points into 'name' below */
  ur_srcsum sum;
  char *code;
  size_t len;
  char name[1];         /* (allocated to its length) */
};


/* bytes of bytecode held by write jobs queued or running */
static size_t pending;

/* most bytes of bytecode that write jobs may hold: beyond, a worker
   writes its entry itself (memory over speed: entries wait behind
   every import and prefetch, and a cold start queues all of them) */
#define MAXPENDING  (4 * 1024 * 1024)


void ur_cache_runwrite (ur_cachewrite *w) {
  ur_cache_put(&w->k, w->code, w->len, &w->sum);
  __atomic_fetch_sub(&pending, w->len, __ATOMIC_RELAXED);
  w->len = 0;
}


void ur_cache_freewrite (ur_cachewrite *w) {
  __atomic_fetch_sub(&pending, w->len, __ATOMIC_RELAXED);  /* unwritten */
  ur_cache_done(&w->k);
  free(w->code);
  free(w);
}


/*
** See ur.h.  Writing an entry costs a file creation and a rename: on a
** disk file system, a good part of a millisecond.  A job's owner waits
** for none of it: the entry is written by a job of its own, queued
** behind the imports.  Without memory or an executor it is written at
** once, or not at all; on a worker, at once too while write jobs
** already hold MAXPENDING bytes.
*/
void ur_cache_putlater (ur_cachekey *k, char *code, size_t len,
                        const ur_srcsum *sum, int worker) {
  size_t nl = strlen(k->name);
  ur_cachewrite *w;
  ur_job *job;
  if (!k->write || !sum->whole || sum->n != k->size || len < LUACHDR ||
      (w = (ur_cachewrite *)malloc(sizeof(*w) + nl)) == NULL) {
    free(code);
    ur_cache_done(k);
    return;
  }
  w->k = *k;  /* takes over 'abspath' */
  if (w->k.dirfd >= 0) close(w->k.dirfd);  /* the write opens it anew: a
                                               queue of writes holds no
                                               descriptor each */
  w->k.dirfd = -1;
  memcpy(w->name, k->name, nl + 1);
  w->k.name = w->name;
  w->sum = *sum;
  w->code = code;
  w->len = len;
  k->dirfd = -1;
  k->abspath = NULL;
  __atomic_fetch_add(&pending, len, __ATOMIC_RELAXED);
  if ((!worker || __atomic_load_n(&pending, __ATOMIC_RELAXED) <= MAXPENDING)
      && (job = (ur_job *)calloc(1, sizeof(ur_job))) != NULL) {
    job->cw = w;
    if (ur_exec_submitdetached(job) == 0) return;
    free(job);
  }
  ur_cache_runwrite(w);  /* now */
  ur_cache_freewrite(w);
}


/* free what 'k' holds (after 'ur_cache_get', hit or miss) */
void ur_cache_done (ur_cachekey *k) {
  if (k->dirfd >= 0) close(k->dirfd);
  k->dirfd = -1;
  free(k->abspath);
  k->abspath = NULL;
}

/* }====================================================== */
