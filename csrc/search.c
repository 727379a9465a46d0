/*
** search.c: the executor side of a 'require': the standard file
** searchers (Lua, C, Croot of loadlib.c) run as one job.
**
** A job carries the searchers the Lua thread found in a row in
** 'package.searchers', each with the template list it read.  They run
** in order until one finds a loader (UR_FOUND), one fails for real
** (UR_RAISE), or all miss (UR_NOTFOUND); misses append their messages,
** each after "\n\t", exactly as 'findloader' would.
*/

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ur.h"


/* replace every occurrence of 'pat' in 's' by 'rep', into 'b' */
static void addgsub (ur_buf *b, const char *s, const char *pat,
                     const char *rep) {
  const char *wild;
  size_t l = strlen(pat);
  while ((wild = strstr(s, pat)) != NULL) {
    ur_buf_add(b, s, (size_t)(wild - s));
    ur_buf_adds(b, rep);
    s = wild + l;
  }
  ur_buf_adds(b, s);
}


/* the file names of the templates in 'path', with '?' replaced by
   'name' (its dots made slashes), separated by ';', into 'files'
   (0: out of memory) */
static int expand (ur_buf *files, const char *name, const char *path) {
  ur_buf nm = {NULL, 0, 0, 0};
  int ok;
  addgsub(&nm, name, ".", LUA_DIRSEP);
  addgsub(files, path, LUA_PATH_MARK, nm.p ? nm.p : "");
  ok = !files->oom && !nm.oom;
  ur_buf_free(&nm);
  return ok;
}


/*
** Open 'f' for reading without waiting: a FIFO with no writer, which
** stock's 'fopen' would wait on for good, opens at once here.  Returns
** the descriptor (close-on-exec), or -1.
*/
static int opennow (const char *f) {
  return open(f, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
}


/*
** A prefetch's open of file 'f' (see 'searchpath'): it must not wait,
** for a FIFO or a device named in code that may never run (stock would
** never open it), nor open one at all: opening a FIFO wakes its writer,
** whose data would then go to nobody.  So it looks first ('stat', which
** touches nothing), and opens only a regular file.  Returns the FILE;
** or NULL, with errno set if nothing is there or it does not open (as
** 'fopen' fails), or with '*other' set if something not regular is
** there (the prefetch ends: the 'require' will search).
*/
static FILE *prefetchopen (const char *f, int *other) {
  struct stat st;
  FILE *file;
  int fd;
  if (stat(f, &st) != 0) return NULL;
  if (!S_ISREG(st.st_mode) || (fd = opennow(f)) < 0) {
    *other = !S_ISREG(st.st_mode);
    return NULL;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||  /* (replaced) */
      fcntl(fd, F_SETFL, 0) != 0 || (file = fdopen(fd, "r")) == NULL) {
    close(fd);
    *other = 1;
    return NULL;
  }
  return file;
}


/*
** 'package.searchpath' for the executor.  Returns the first file (a
** malloc'ed name) of the templates in 'path', with '?' replaced by
** 'name' (its dots made slashes), that 'fopen(f, "r")' opens, as
** loadlib.c's 'readable' decides (opened close-on-exec, so that no
** child process started meanwhile inherits it); the open FILE goes to
** '*fp' if 'fp' is not NULL (so that the file is read from the very
** open that found it), else it is closed.  On a miss returns NULL,
** appending to 'msg' the "no file '...'" lines of every template.  Out
** of memory, returns NULL with '*nomem' set.  With 'other' not NULL
** (a prefetch), files are opened as 'prefetchopen' does: one not
** regular ends the search, NULL returned and '*other' set.
*/
static char *searchpath (const char *name, const char *path,
                         ur_buf *msg, FILE **fp, int *nomem, int *other) {
  ur_buf files = {NULL, 0, 0, 0};
  char *found = NULL;
  if (!expand(&files, name, path)) {
    *nomem = 1;
    goto done;
  }
  if (files.n > 0) {  /* an empty list names no file at all */
    char *f = files.p, *end = files.p + files.n;
    for (;;) {
      char *sep = strchr(f, *LUA_PATH_SEP);
      FILE *file;
      if (sep != NULL) *sep = '\0';
      file = other != NULL ? prefetchopen(f, other) : fopen(f, "re");
      if (other != NULL && *other) goto done;
      if (file != NULL) {
        found = strdup(f);
        if (found == NULL) *nomem = 1;
        if (fp != NULL && found != NULL) *fp = file;
        else fclose(file);
        goto done;
      }
      if (sep == NULL) break;
      *sep = *LUA_PATH_SEP;  /* restore for the message */
      f = sep + 1;
      if (f > end) break;
    }
  }
  ur_buf_adds(msg, "no file '");
  addgsub(msg, files.p ? files.p : "", LUA_PATH_SEP, "'\n\tno file '");
  ur_buf_adds(msg, "'");
 done:
  ur_buf_free(&files);
  return found;
}


/*
** See ur.h.  On the Lua thread, when a finished prefetch that found
** 'file' is adopted: would a search now find a file before it?  Each
** template before 'file' is looked at ('stat'); a regular file there is
** opened, as the search's 'fopen' would open it (but without waiting),
** anything else counts as found, as 'fopen' would open it or wait on
** it (never opened here: opening a FIFO wakes its writer).  Out of
** memory, yes (the prefetch is dropped and the search is done again).
*/
int ur_src_earlier (const char *name, const char *path, const char *file) {
  ur_buf files = {NULL, 0, 0, 0};
  struct stat st;
  int earlier = 1;
  if (expand(&files, name, path)) {
    char *f = files.p;
    earlier = 0;
    while (f != NULL && !earlier) {
      char *sep = strchr(f, *LUA_PATH_SEP);
      int fd;
      if (sep != NULL) *sep = '\0';
      if (strcmp(f, file) == 0) break;  /* 'file' itself: none before */
      if (stat(f, &st) == 0) {  /* something there: would fopen open it? */
        if (!S_ISREG(st.st_mode))
          earlier = 1;  /* a directory opens; a FIFO, stock waits on */
        else if ((fd = opennow(f)) >= 0) {  /* readable */
          close(fd);
          earlier = 1;
        }
      }
      f = sep != NULL ? sep + 1 : NULL;
    }
  }
  ur_buf_free(&files);
  return earlier;
}


/* the error of a searcher that found a file it could not load */
static void loaderror (ur_job *job, const char *file, ur_buf *why) {
  job->outcome = UR_RAISE;
  ur_buf_free(&job->msg);
  job->msg.oom = 0;
  ur_buf_addf(&job->msg, "error loading module '%s' from file '%s':\n\t",
              job->name, file);
  if (why->oom)
    ur_buf_adds(&job->msg, "not enough memory");
  else
    ur_buf_add(&job->msg, why->p ? why->p : "", why->n);
}


/*
** Lua searcher: found 'file', open as 'f' (taken over).  The bytecode
** cache is asked first.  After a miss, an in-place job ('inplace')
** leaves the file open for the Lua thread, which compiles it itself
** ('ur_job_load'), with the cache key; any other job compiles it here,
** in a state made in arena 'a' for the compile (never NULL: see
** 'ur_job_run'; the caller drops the state with the arena's reset), and
** has the cache store the bytecode.
*/
static void luastep (ur_job *job, ur_arena *a, char *file, FILE *f) {
  ur_buf code = {NULL, 0, 0, 0}, err = {NULL, 0, 0, 0};
  ur_cachekey k;
  ur_srcsum sum;
  ur_scan sc;
  struct stat sb;
  int statok = (fstat(fileno(f), &sb) == 0);
  lua_State *W = NULL;
  ur_scan_init(&sc, job->scan ? job : NULL);
  job->file = file;
  if ((job->src.set = (statok && S_ISREG(sb.st_mode)))) {
    job->src.dev = (uint64_t)sb.st_dev;
    job->src.ino = (uint64_t)sb.st_ino;
    job->src.size = (uint64_t)sb.st_size;
    job->src.sec = (int64_t)sb.st_mtim.tv_sec;
    job->src.nsec = (int64_t)sb.st_mtim.tv_nsec;
  }
  if (ur_cache_get(&k, file, f, &job->code, &job->codelen, &sc)) {
    job->srcbytes = (size_t)k.size;  /* (read, to check it) */
    fclose(f);
    ur_cache_done(&k);
    job->outcome = UR_FOUND;
    job->cached = 1;
    return;
  }
  if (job->inplace) {
    if (statok) job->srcbytes = (size_t)sb.st_size;  /* (stats) */
    if (k.write && (job->ck = (ur_cachekey *)malloc(sizeof(k))) != NULL)
      *job->ck = k;  /* 'ur_job_load' writes the entry */
    else
      ur_cache_done(&k);
    job->fp = f;
    job->outcome = UR_FOUND;
    return;
  }
  ur_scan_init(&sc, job->scan ? job : NULL);  /* (a miss: anew) */
  sum.dohash = k.write;  /* (the entry's) */
  sum.n = 0;  /* (read: none yet) */
  if ((W = ur_arena_newstate(a)) == NULL) {  /* the compile's state */
    fclose(f);
    ur_buf_adds(&err, "not enough memory");
  }
  else if (ur_compile(W, file, f, &code, &err, &sum, &sc)) {
    char *copy;  /* the cache's, freed there */
    job->outcome = UR_FOUND;
    if (k.write && (copy = (char *)malloc(code.n)) != NULL) {
      memcpy(copy, code.p, code.n);
      ur_cache_putlater(&k, copy, code.n, &sum, job->worker != 0);
    }
    job->code = code.p;  /* ownership moves to the job */
    job->codelen = code.n;
  }
  job->read_ns = W != NULL ? ur_compile_readns() : 0;  /* (stats) */
  job->srcbytes = (size_t)sum.n;
  ur_cache_done(&k);  /* (done already after 'ur_cache_putlater') */
  if (job->outcome != UR_FOUND)
    loaderror(job, file, &err);
  ur_buf_free(&err);
}


/*
** C and Croot searchers: found 'file'; open it.  Returns 1 when the
** search must go on (Croot: the library lacks the symbol).
*/
static int cstep (ur_job *job, ur_step *s, char *file) {
  ur_buf err = {NULL, 0, 0, 0};
  int stat = ur_clib_load(file, job->name, &s->lib, &job->open, &err);
  int goon = 0;
  if (stat == 0) {
    job->outcome = UR_FOUND;
    job->file = file;
  }
  else if (stat == UR_ERRMEM) {
    job->outcome = UR_RAISE;
    ur_buf_nomem(&job->msg);
    free(file);
  }
  else if (s->kind == UR_STEP_CROOT && stat == UR_ERRFUNC) {
    ur_buf_addf(&job->msg, "\n\tno module '%s' in file '%s'", job->name,
                file);
    s->libfile = file;  /* the library stays open, as in loadlib.c */
    goon = 1;
  }
  else {
    loaderror(job, file, &err);
    job->file = file;
  }
  ur_buf_free(&err);
  return goon;
}


/* run the steps of 'job' (see 'ur_job_run'); 1 if out of memory */
static int runsteps (ur_job *job, ur_arena *a) {
  int i;
  for (i = 0; i < job->nsteps; i++) {
    ur_step *s = &job->steps[i];
    const char *dot = strchr(job->name, '.');
    char *file;
    FILE *f = NULL;
    int nomem = 0, other = 0;
    if (s->kind == UR_STEP_CROOT && dot == NULL)
      continue;  /* a root name has no Croot: no message either */
    if (s->path == NULL) {  /* as 'findfile' raises */
      job->outcome = UR_RAISE;
      ur_buf_free(&job->msg);
      job->msg.oom = 0;
      ur_buf_addf(&job->msg, "'package.%s' must be a string",
                  s->kind == UR_STEP_LUA ? "path" : "cpath");
      return job->msg.oom;
    }
    ur_buf_adds(&job->msg, "\n\t");
    if (s->kind == UR_STEP_CROOT) {  /* search for the root library */
      char *root = strndup(job->name, (size_t)(dot - job->name));
      if (root == NULL) return 1;
      file = searchpath(root, s->path, &job->msg, NULL, &nomem, NULL);
      free(root);
    }
    else
      file = searchpath(job->name, s->path, &job->msg,
                        s->kind == UR_STEP_LUA ? &f : NULL, &nomem,
                        job->nowait ? &other : NULL);
    if (nomem) return 1;
    if (other) {  /* a prefetch met a file not regular: it ends here
                     (adopted meanwhile, its worker runs it again) */
      job->outcome = UR_NOTFOUND;
      job->nonreg = 1;
      return 0;
    }
    if (file == NULL)
      continue;
    if (job->msg.oom) {  /* the messages are lost anyway */
      free(file);
      if (f != NULL) fclose(f);
      return 1;
    }
    job->msg.n -= 2;  /* found: drop the "\n\t" prefix */
    job->msg.p[job->msg.n] = '\0';
    job->found = i;
    job->t_found = uv_hrtime();
    if (s->kind == UR_STEP_LUA) {
      luastep(job, a, file, f);
      return job->outcome == UR_RAISE && job->msg.oom;
    }
    if (!cstep(job, s, file))
      return job->outcome == UR_RAISE && job->msg.oom;
  }
  return job->msg.oom;
}


/*
** Run 'job': on an executor thread, compiling (if it must) in a state
** made for the compile in that thread's arena 'a'; or, with 'inplace',
** on the Lua thread ('a' NULL: the Lua thread compiles the file
** itself).  Out of memory anywhere, the job raises "not enough memory".
*/
void ur_job_run (ur_job *job, ur_arena *a) {
  if (job->cw != NULL) {  /* a cache write job */
    ur_cache_runwrite(job->cw);
    return;
  }
  job->outcome = UR_NOTFOUND;
  job->cached = 0;
  if ((a == NULL && !job->inplace) || runsteps(job, a)) {
    job->outcome = UR_RAISE;
    ur_buf_nomem(&job->msg);
  }
}


/*
** Is the file 'job' found still the one it read, at that path (same
** device, inode, size and mtime)?  A path relative to the working
** directory is looked up anew: a change of directory tells too.
*/
int ur_src_same (const ur_job *job) {
  struct stat st;
  return job->src.set && job->file != NULL && stat(job->file, &st) == 0 &&
         (uint64_t)st.st_dev == job->src.dev &&
         (uint64_t)st.st_ino == job->src.ino &&
         (uint64_t)st.st_size == job->src.size &&
         (int64_t)st.st_mtim.tv_sec == job->src.sec &&
         (int64_t)st.st_mtim.tv_nsec == job->src.nsec;
}


void ur_job_free (ur_job *job) {
  int i;
  for (i = 0; i < job->nsteps; i++) {
    free(job->steps[i].path);
    free(job->steps[i].libfile);
    if (job->steps[i].lib != NULL)  /* never handed to _CLIBS */
      ur_clib_close(job->steps[i].lib);
  }
  if (job->cw != NULL) ur_cache_freewrite(job->cw);
  if (job->fp != NULL) fclose(job->fp);
  if (job->ck != NULL) {
    ur_cache_done(job->ck);
    free(job->ck);
  }
  free(job->name);
  free(job->file);
  free(job->code);
  for (i = 0; i < job->nprefetch; i++)
    free(job->prefetch[i]);
  free(job->prefetch);
  ur_buf_free(&job->msg);
  free(job);
}
