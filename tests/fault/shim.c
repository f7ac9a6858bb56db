/* SPDX-License-Identifier: BSD-3-Clause */
/* tests/fault/shim.c -- an LD_PRELOAD fault-injection and recording shim.
 *
 * It is independent of the code under test (it is not linked to vmdkit and
 * knows nothing about VMDK): it wraps the libc calls that change a file and
 * makes the N-th of them fail, or records them all.
 *
 * Which files: only file descriptors opened (open, open64, openat,
 * openat64, creat, creat64, __open_2 and friends) on a regular file or
 * block device whose resolved path (readlink of /proc/self/fd/FD, else the
 * path joined to getcwd or to the openat directory) lies under one of the
 * FAULT_MATCH prefixes are tracked.  dup, dup2, dup3 and fcntl(F_DUPFD*)
 * copy the tracking; close ends it.  Without FAULT_MATCH the shim does
 * nothing at all.
 *
 * Counted calls (on tracked fds only): write, pwrite, pwrite64, pwritev,
 * pwritev64, pwritev2, pwritev64v2, ftruncate, ftruncate64, fallocate,
 * fallocate64, fdatasync, fsync, sync_file_range.  Opens are tracked and
 * logged but never counted or failed.  The counter is atomic (the code
 * under test writes from worker threads).
 *
 * Environment:
 *   FAULT_MATCH=DIR[:DIR...]  absolute path prefixes (resolved with
 *                             realpath when they exist)
 *   FAULT_AT=N                the N-th counted call (1-based) fails
 *   FAULT_ERRNO=E             ENOSPC (default), EIO, EDQUOT or SHORT
 *   FAULT_STICKY=1            every counted call from the N-th on fails
 *   FAULT_COUNT=FILE          the number of counted calls so far, written
 *                             (decimal + newline) after every counted call
 *                             and at exit; written only by a process that
 *                             made at least one counted call
 *   FAULT_LOG=FILE            recording mode: one binary record per
 *                             completed tracked call (format below)
 *
 * SHORT: a write that is hit writes only part of its bytes -- up to the
 * 4096-byte boundary (in file offsets) at or below offset + len/2 -- and
 * returns that short count; the next counted write-like call (write,
 * truncate, fallocate, sync_file_range) then fails with ENOSPC, as on a
 * disk that just filled up.  When the short part would be empty the write
 * fails with ENOSPC.  For truncate and fallocate SHORT means ENOSPC, for
 * fdatasync/fsync EIO, for sync_file_range ENOSPC.  A failed call is not
 * passed on to libc: it changes nothing.
 *
 * FAULT_LOG record format (all integers little-endian), one write() per
 * record to the log fd (O_APPEND), under a mutex, made after the real call
 * returned successfully (a failed call is not recorded):
 *
 *   offset size field
 *        0    4 magic      0x52434456 ("VDCR" as bytes 'V','D','C','R')
 *        4    4 kind       1 write, 2 truncate, 3 fallocate (punch/zero/
 *                          allocate), 4 sync (fdatasync or fsync: a
 *                          durability point), 5 open, 6 sync_file_range
 *                          (not a durability point)
 *        8    4 file_id    small integer per distinct resolved path,
 *                          0, 1, 2... in order of first open
 *       12    4 pad        0
 *       16    8 offset     write: file offset; truncate: the new length;
 *                          fallocate and sync_file_range: offset; else 0
 *       24    8 length     write: bytes that landed (the call's return
 *                          value); fallocate, sync_file_range: length;
 *                          else 0
 *       32    4 mode       fallocate: mode; open: the open flags (O_TRUNC
 *                          means the file was emptied); sync_file_range:
 *                          flags; else 0
 *       36    4 path_len   open: length of the path that follows; else 0
 *       40      payload    write: `length` data bytes; open: `path_len`
 *                          bytes of the resolved absolute path (no NUL)
 *
 * An open record is written for every successful open of a tracked file
 * (re-opens of the same path repeat its file_id).  The log fd is opened
 * with the real open and is never tracked, counted or faulted.  Child
 * processes inherit the environment: they append to the same log and count
 * their own calls.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define MAX_FDS 65536
#define MAX_FILES 1024
#define MAX_PREFIXES 16
#define LOG_MAGIC 0x52434456u

enum { K_WRITE = 1, K_TRUNC = 2, K_FALLOC = 3, K_SYNC = 4, K_OPEN = 5, K_SFR = 6 };

/* ---- the real functions -------------------------------------------------- */
typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*creat_fn)(const char *, mode_t);
typedef int (*open2_fn)(const char *, int);
typedef int (*openat2_fn)(int, const char *, int);
typedef int (*close_fn)(int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*pwritev2_fn)(int, const struct iovec *, int, off_t, int);
typedef int (*ftruncate_fn)(int, off_t);
typedef int (*fallocate_fn)(int, int, off_t, off_t);
typedef int (*sync_fn)(int);
typedef int (*sfr_fn)(int, off_t, off_t, unsigned int);
typedef int (*dup_fn)(int);
typedef int (*dup2_fn)(int, int);
typedef int (*dup3_fn)(int, int, int);
typedef int (*fcntl_fn)(int, int, ...);

static struct {
  open_fn open, open64;
  openat_fn openat, openat64;
  creat_fn creat, creat64;
  open2_fn open_2, open64_2;
  openat2_fn openat_2, openat64_2;
  close_fn close;
  write_fn write;
  pwrite_fn pwrite, pwrite64;
  pwritev_fn pwritev, pwritev64;
  pwritev2_fn pwritev2, pwritev64v2;
  ftruncate_fn ftruncate, ftruncate64;
  fallocate_fn fallocate, fallocate64;
  sync_fn fdatasync, fsync;
  sfr_fn sync_file_range;
  dup_fn dup;
  dup2_fn dup2;
  dup3_fn dup3;
  fcntl_fn fcntl, fcntl64;
} real;

/* ---- state --------------------------------------------------------------- */
static int enabled;                /* FAULT_MATCH is set */
static char *prefixes[MAX_PREFIXES];
static int n_prefixes;
static unsigned long fault_at;     /* 0: no fault */
static int fault_errno = ENOSPC;
static int fault_short;
static int fault_sticky;
static const char *count_path;
static const char *log_path;

static int fd_file[MAX_FDS];       /* file_id + 1 of a tracked fd, 0 = not tracked */
static char *file_paths[MAX_FILES];
static int n_files;

static unsigned long counter;      /* atomic */
static int fail_next_write;        /* atomic: after a SHORT write */
static int count_fd = -1, log_fd = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#define LOAD(name, sym) real.name = (__typeof__(real.name))dlsym(RTLD_NEXT, sym)

static void load_symbols(void) {
  LOAD(open, "open");
  LOAD(open64, "open64");
  LOAD(openat, "openat");
  LOAD(openat64, "openat64");
  LOAD(creat, "creat");
  LOAD(creat64, "creat64");
  LOAD(open_2, "__open_2");
  LOAD(open64_2, "__open64_2");
  LOAD(openat_2, "__openat_2");
  LOAD(openat64_2, "__openat64_2");
  LOAD(close, "close");
  LOAD(write, "write");
  LOAD(pwrite, "pwrite");
  LOAD(pwrite64, "pwrite64");
  LOAD(pwritev, "pwritev");
  LOAD(pwritev64, "pwritev64");
  LOAD(pwritev2, "pwritev2");
  LOAD(pwritev64v2, "pwritev64v2");
  LOAD(ftruncate, "ftruncate");
  LOAD(ftruncate64, "ftruncate64");
  LOAD(fallocate, "fallocate");
  LOAD(fallocate64, "fallocate64");
  LOAD(fdatasync, "fdatasync");
  LOAD(fsync, "fsync");
  LOAD(sync_file_range, "sync_file_range");
  LOAD(dup, "dup");
  LOAD(dup2, "dup2");
  LOAD(dup3, "dup3");
  LOAD(fcntl, "fcntl");
  LOAD(fcntl64, "fcntl64");
}

static void init(void) {
  load_symbols();
  const char *m = getenv("FAULT_MATCH");
  if (!m || !*m)
    return;
  char *copy = strdup(m);
  if (!copy)
    return;
  for (char *save = NULL, *p = strtok_r(copy, ":", &save); p && n_prefixes < MAX_PREFIXES;
       p = strtok_r(NULL, ":", &save)) {
    if (p[0] != '/')
      continue;
    char buf[PATH_MAX];
    const char *use = realpath(p, buf) ? buf : p;
    char *s = strdup(use);
    if (!s)
      continue;
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/')
      s[--n] = '\0';
    prefixes[n_prefixes++] = s;
  }
  free(copy);
  if (n_prefixes == 0)
    return;
  const char *a = getenv("FAULT_AT");
  if (a && *a)
    fault_at = strtoul(a, NULL, 10);
  const char *e = getenv("FAULT_ERRNO");
  if (e && *e) {
    if (strcmp(e, "EIO") == 0)
      fault_errno = EIO;
    else if (strcmp(e, "EDQUOT") == 0)
      fault_errno = EDQUOT;
    else if (strcmp(e, "SHORT") == 0)
      fault_short = 1;
    else
      fault_errno = ENOSPC;
  }
  const char *s = getenv("FAULT_STICKY");
  fault_sticky = s && *s && strcmp(s, "0") != 0;
  count_path = getenv("FAULT_COUNT");
  if (count_path && !*count_path)
    count_path = NULL;
  log_path = getenv("FAULT_LOG");
  if (log_path && !*log_path)
    log_path = NULL;
  enabled = 1;
}

static void ensure_init(void) { pthread_once(&once, init); }

__attribute__((constructor)) static void shim_ctor(void) { ensure_init(); }

/* ---- the count file and the log ------------------------------------------ */
/* Called with lock held. */
static void write_count_locked(void) {
  if (!count_path)
    return;
  if (count_fd < 0) {
    count_fd = real.open(count_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (count_fd < 0)
      return;
  }
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%lu\n", __atomic_load_n(&counter, __ATOMIC_SEQ_CST));
  if (real.pwrite(count_fd, buf, (size_t)n, 0) == n)
    (void)real.ftruncate(count_fd, n);
}

static void update_count(void) {
  if (!count_path)
    return;
  int saved = errno;
  pthread_mutex_lock(&lock);
  write_count_locked();
  pthread_mutex_unlock(&lock);
  errno = saved;
}

__attribute__((destructor)) static void shim_dtor(void) {
  if (!enabled || !count_path)
    return;
  pthread_mutex_lock(&lock);
  if (count_fd >= 0)
    write_count_locked();
  pthread_mutex_unlock(&lock);
}

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

/* Append one record; the payload is the concatenation of iov (for writes,
 * only the first `length` bytes) or `extra` (open). */
static void log_record(uint32_t kind, int file_id, uint64_t off, uint64_t len, uint32_t mode,
                       const struct iovec *iov, int iovcnt, const char *extra) {
  if (!log_path || file_id < 0)
    return;
  int saved = errno;
  size_t payload = kind == K_WRITE ? (size_t)len : extra ? strlen(extra) : 0;
  unsigned char *rec = malloc(40 + payload);
  if (!rec) {
    errno = saved;
    return;
  }
  put32(rec, LOG_MAGIC);
  put32(rec + 4, kind);
  put32(rec + 8, (uint32_t)file_id);
  put32(rec + 12, 0);
  put64(rec + 16, off);
  put64(rec + 24, len);
  put32(rec + 32, mode);
  put32(rec + 36, kind == K_OPEN ? (uint32_t)payload : 0);
  if (kind == K_WRITE) {
    size_t done = 0;
    for (int i = 0; i < iovcnt && done < payload; i++) {
      size_t n = iov[i].iov_len < payload - done ? iov[i].iov_len : payload - done;
      memcpy(rec + 40 + done, iov[i].iov_base, n);
      done += n;
    }
  } else if (payload) {
    memcpy(rec + 40, extra, payload);
  }
  pthread_mutex_lock(&lock);
  if (log_fd < 0)
    log_fd = real.open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (log_fd >= 0) {
    size_t total = 40 + payload, done = 0;
    while (done < total) {
      ssize_t w = real.write(log_fd, rec + done, total - done);
      if (w <= 0)
        break;
      done += (size_t)w;
    }
  }
  pthread_mutex_unlock(&lock);
  free(rec);
  errno = saved;
}

/* ---- tracking ------------------------------------------------------------ */
static int tracked(int fd) {
  if (!enabled || fd < 0 || fd >= MAX_FDS)
    return -1;
  int v = __atomic_load_n(&fd_file[fd], __ATOMIC_SEQ_CST);
  return v - 1;
}

static int matches(const char *path) {
  for (int i = 0; i < n_prefixes; i++) {
    size_t n = strlen(prefixes[i]);
    if (strncmp(path, prefixes[i], n) == 0 &&
        (path[n] == '\0' || path[n] == '/' || (n == 1 && prefixes[i][0] == '/')))
      return 1;
  }
  return 0;
}

/* Lexical resolution of PATH (relative to DIRFD or the cwd) into out. */
static int resolve_lexical(int dirfd, const char *path, char *out, size_t size) {
  char base[PATH_MAX];
  if (path[0] == '/') {
    base[0] = '\0';
  } else if (dirfd == AT_FDCWD) {
    if (!getcwd(base, sizeof base))
      return -1;
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof base - 1);
    if (n < 0)
      return -1;
    base[n] = '\0';
  }
  if (snprintf(out, size, "%s/%s", base, path) >= (int)size)
    return -1;
  /* normalize: collapse //, ., .. */
  char tmp[PATH_MAX];
  size_t o = 0;
  const char *p = out;
  while (*p) {
    while (*p == '/')
      p++;
    if (!*p)
      break;
    const char *q = strchr(p, '/');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 1 && p[0] == '.') {
    } else if (n == 2 && p[0] == '.' && p[1] == '.') {
      while (o > 0 && tmp[o - 1] != '/')
        o--;
      if (o > 0)
        o--;
    } else {
      if (o + n + 2 >= sizeof tmp)
        return -1;
      tmp[o++] = '/';
      memcpy(tmp + o, p, n);
      o += n;
    }
    p += n;
  }
  if (o == 0)
    tmp[o++] = '/';
  tmp[o] = '\0';
  memcpy(out, tmp, o + 1);
  return 0;
}

static int file_id_for(const char *path) {
  pthread_mutex_lock(&lock);
  int id = -1;
  for (int i = 0; i < n_files; i++)
    if (strcmp(file_paths[i], path) == 0) {
      id = i;
      break;
    }
  if (id < 0 && n_files < MAX_FILES) {
    file_paths[n_files] = strdup(path);
    if (file_paths[n_files])
      id = n_files++;
  }
  pthread_mutex_unlock(&lock);
  return id;
}

/* After a successful open of PATH (relative to DIRFD) as FD. */
static void after_open(int fd, int dirfd, const char *path, int flags) {
  if (!enabled || fd < 0 || fd >= MAX_FDS)
    return;
  int saved = errno;
  __atomic_store_n(&fd_file[fd], 0, __ATOMIC_SEQ_CST);
  struct stat st;
  char resolved[PATH_MAX];
  char link[64];
  if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
    goto out;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, resolved, sizeof resolved - 1);
  if (n > 0 && resolved[0] == '/') {
    resolved[n] = '\0';
  } else if (resolve_lexical(dirfd, path, resolved, sizeof resolved) != 0) {
    goto out;
  }
  if (!matches(resolved))
    goto out;
  int id = file_id_for(resolved);
  if (id < 0)
    goto out;
  __atomic_store_n(&fd_file[fd], id + 1, __ATOMIC_SEQ_CST);
  log_record(K_OPEN, id, 0, 0, (uint32_t)flags, NULL, 0, resolved);
out:
  errno = saved;
}

static void copy_tracking(int from, int to) {
  if (!enabled || to < 0 || to >= MAX_FDS)
    return;
  int v = (from >= 0 && from < MAX_FDS) ? __atomic_load_n(&fd_file[from], __ATOMIC_SEQ_CST) : 0;
  __atomic_store_n(&fd_file[to], v, __ATOMIC_SEQ_CST);
}

/* ---- the fault decision -------------------------------------------------- */
enum { GO = 0, FAIL = 1, SHORTEN = 2 };

/* Count one call on a tracked fd; decide.  *err gets the errno to fail with. */
static int decide(int kind, int *err) {
  unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);
  update_count();
  int write_like = kind == K_WRITE || kind == K_TRUNC || kind == K_FALLOC || kind == K_SFR;
  if (write_like && __atomic_exchange_n(&fail_next_write, 0, __ATOMIC_SEQ_CST)) {
    *err = ENOSPC;
    return FAIL;
  }
  if (fault_at == 0 || n < fault_at || (n > fault_at && !fault_sticky))
    return GO;
  if (fault_short) {
    if (kind == K_WRITE)
      return SHORTEN;
    *err = kind == K_SYNC ? EIO : ENOSPC;
    return FAIL;
  }
  *err = fault_errno;
  return FAIL;
}

/* The short length of a LEN-byte write at OFF; 0 = fail instead. */
static size_t short_len(uint64_t off, size_t len) {
  uint64_t end = (off + len / 2) & ~(uint64_t)4095;
  return end > off ? (size_t)(end - off) : 0;
}

/* ---- writes -------------------------------------------------------------- */
/* One implementation for all write flavours: iov/iovcnt, at OFF (or the
 * current position when positioned == 0). */
static ssize_t do_writev(int fd, const struct iovec *iov, int iovcnt, off_t off, int positioned,
                         ssize_t (*call)(int, const struct iovec *, int, off_t, void *),
                         void *ctx) {
  int id = tracked(fd);
  if (id < 0)
    return call(fd, iov, iovcnt, off, ctx);
  int err = 0;
  int d = decide(K_WRITE, &err);
  uint64_t pos = (uint64_t)off;
  if (!positioned) {
    int saved = errno;
    off_t cur = lseek(fd, 0, SEEK_CUR);
    pos = cur < 0 ? 0 : (uint64_t)cur;
    errno = saved;
  }
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (d == SHORTEN) {
    size_t want = short_len(pos, total);
    if (want == 0) {
      errno = ENOSPC;
      return -1;
    }
    /* a cut copy of the vector */
    struct iovec cut[64];
    struct iovec *v = iovcnt <= 64 ? cut : malloc(sizeof *v * (size_t)iovcnt);
    if (!v) {
      errno = ENOSPC;
      return -1;
    }
    int n = 0;
    size_t left = want;
    for (int i = 0; i < iovcnt && left > 0; i++) {
      v[n] = iov[i];
      if (v[n].iov_len > left)
        v[n].iov_len = left;
      left -= v[n].iov_len;
      n++;
    }
    ssize_t r = call(fd, v, n, off, ctx);
    if (v != cut)
      free(v);
    if (r >= 0) {
      log_record(K_WRITE, id, pos, (uint64_t)r, 0, iov, iovcnt, NULL);
      __atomic_store_n(&fail_next_write, 1, __ATOMIC_SEQ_CST);
    }
    return r;
  }
  if (d == FAIL) {
    errno = err;
    return -1;
  }
  ssize_t r = call(fd, iov, iovcnt, off, ctx);
  if (r >= 0) {
    int saved = errno;
    log_record(K_WRITE, id, pos, (uint64_t)r, 0, iov, iovcnt, NULL);
    errno = saved;
  }
  return r;
}

/* Adapters from the vector form to each real call. */
static ssize_t call_write(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx) {
  (void)off;
  (void)ctx;
  return iovcnt ? real.write(fd, iov[0].iov_base, iov[0].iov_len) : real.write(fd, "", 0);
}
static ssize_t call_pwrite(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx) {
  pwrite_fn f = *(pwrite_fn *)ctx;
  return iovcnt ? f(fd, iov[0].iov_base, iov[0].iov_len, off) : f(fd, "", 0, off);
}
static ssize_t call_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx) {
  pwritev_fn f = *(pwritev_fn *)ctx;
  return f(fd, iov, iovcnt, off);
}
struct v2ctx {
  pwritev2_fn f;
  int flags;
};
static ssize_t call_pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx) {
  struct v2ctx *c = ctx;
  return c->f(fd, iov, iovcnt, off, c->flags);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len) {
  ensure_init();
  struct iovec v = {(void *)buf, len};
  return do_writev(fd, &v, 1, 0, 0, call_write, NULL);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
  ensure_init();
  struct iovec v = {(void *)buf, len};
  return do_writev(fd, &v, 1, off, 1, call_pwrite, &real.pwrite);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) {
  ensure_init();
  struct iovec v = {(void *)buf, len};
  return do_writev(fd, &v, 1, off, 1, call_pwrite, &real.pwrite64);
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
  ensure_init();
  return do_writev(fd, iov, iovcnt, off, 1, call_pwritev, &real.pwritev);
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off) {
  ensure_init();
  return do_writev(fd, iov, iovcnt, off, 1, call_pwritev, &real.pwritev64);
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
  ensure_init();
  struct v2ctx c = {real.pwritev2, flags};
  /* off == -1 means the current position */
  return do_writev(fd, iov, iovcnt, off, off != -1, call_pwritev2, &c);
}

EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
  ensure_init();
  struct v2ctx c = {real.pwritev64v2, flags};
  return do_writev(fd, iov, iovcnt, off, off != -1, call_pwritev2, &c);
}

/* ---- truncate, fallocate, sync ------------------------------------------- */
static int do_simple(int fd, int kind, uint64_t off, uint64_t len, uint32_t mode,
                     int (*call)(int, off_t, off_t, int, void *), void *ctx) {
  int id = tracked(fd);
  if (id < 0)
    return call(fd, (off_t)off, (off_t)len, (int)mode, ctx);
  int err = 0;
  if (decide(kind, &err) != GO) {
    errno = err ? err : ENOSPC;
    return -1;
  }
  int r = call(fd, (off_t)off, (off_t)len, (int)mode, ctx);
  if (r == 0)
    log_record((uint32_t)kind, id, kind == K_SYNC ? 0 : off, kind == K_TRUNC ? 0 : len,
               kind == K_SYNC || kind == K_TRUNC ? 0 : mode, NULL, 0, NULL);
  return r;
}

static int call_trunc(int fd, off_t off, off_t len, int mode, void *ctx) {
  (void)len;
  (void)mode;
  return (*(ftruncate_fn *)ctx)(fd, off);
}
static int call_falloc(int fd, off_t off, off_t len, int mode, void *ctx) {
  return (*(fallocate_fn *)ctx)(fd, mode, off, len);
}
static int call_sync(int fd, off_t off, off_t len, int mode, void *ctx) {
  (void)off;
  (void)len;
  (void)mode;
  return (*(sync_fn *)ctx)(fd);
}
static int call_sfr(int fd, off_t off, off_t len, int mode, void *ctx) {
  (void)ctx;
  return real.sync_file_range(fd, off, len, (unsigned int)mode);
}

EXPORT int ftruncate(int fd, off_t len) {
  ensure_init();
  return do_simple(fd, K_TRUNC, (uint64_t)len, 0, 0, call_trunc, &real.ftruncate);
}
EXPORT int ftruncate64(int fd, off_t len) {
  ensure_init();
  return do_simple(fd, K_TRUNC, (uint64_t)len, 0, 0, call_trunc, &real.ftruncate64);
}
EXPORT int fallocate(int fd, int mode, off_t off, off_t len) {
  ensure_init();
  return do_simple(fd, K_FALLOC, (uint64_t)off, (uint64_t)len, (uint32_t)mode, call_falloc,
                   &real.fallocate);
}
EXPORT int fallocate64(int fd, int mode, off_t off, off_t len) {
  ensure_init();
  return do_simple(fd, K_FALLOC, (uint64_t)off, (uint64_t)len, (uint32_t)mode, call_falloc,
                   &real.fallocate64);
}
EXPORT int fdatasync(int fd) {
  ensure_init();
  return do_simple(fd, K_SYNC, 0, 0, 0, call_sync, &real.fdatasync);
}
EXPORT int fsync(int fd) {
  ensure_init();
  return do_simple(fd, K_SYNC, 0, 0, 0, call_sync, &real.fsync);
}
EXPORT int sync_file_range(int fd, off_t off, off_t len, unsigned int flags) {
  ensure_init();
  return do_simple(fd, K_SFR, (uint64_t)off, (uint64_t)len, flags, call_sfr, NULL);
}

/* ---- open, close, dup ------------------------------------------------------ */
static int needs_mode(int flags) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

EXPORT int open(const char *path, int flags, ...) {
  ensure_init();
  mode_t mode = 0;
  if (needs_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  int fd = real.open(path, flags, mode);
  after_open(fd, AT_FDCWD, path, flags);
  return fd;
}

EXPORT int open64(const char *path, int flags, ...) {
  ensure_init();
  mode_t mode = 0;
  if (needs_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  int fd = real.open64(path, flags, mode);
  after_open(fd, AT_FDCWD, path, flags);
  return fd;
}

EXPORT int openat(int dirfd, const char *path, int flags, ...) {
  ensure_init();
  mode_t mode = 0;
  if (needs_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  int fd = real.openat(dirfd, path, flags, mode);
  after_open(fd, dirfd, path, flags);
  return fd;
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...) {
  ensure_init();
  mode_t mode = 0;
  if (needs_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  int fd = real.openat64(dirfd, path, flags, mode);
  after_open(fd, dirfd, path, flags);
  return fd;
}

EXPORT int creat(const char *path, mode_t mode) {
  ensure_init();
  int fd = real.creat(path, mode);
  after_open(fd, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC);
  return fd;
}

EXPORT int creat64(const char *path, mode_t mode) {
  ensure_init();
  int fd = real.creat64(path, mode);
  after_open(fd, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC);
  return fd;
}

EXPORT int __open_2(const char *path, int flags) {
  ensure_init();
  int fd = real.open_2(path, flags);
  after_open(fd, AT_FDCWD, path, flags);
  return fd;
}

EXPORT int __open64_2(const char *path, int flags) {
  ensure_init();
  int fd = real.open64_2(path, flags);
  after_open(fd, AT_FDCWD, path, flags);
  return fd;
}

EXPORT int __openat_2(int dirfd, const char *path, int flags) {
  ensure_init();
  int fd = real.openat_2(dirfd, path, flags);
  after_open(fd, dirfd, path, flags);
  return fd;
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags) {
  ensure_init();
  int fd = real.openat64_2(dirfd, path, flags);
  after_open(fd, dirfd, path, flags);
  return fd;
}

EXPORT int close(int fd) {
  ensure_init();
  if (enabled && fd >= 0 && fd < MAX_FDS)
    __atomic_store_n(&fd_file[fd], 0, __ATOMIC_SEQ_CST);
  return real.close(fd);
}

EXPORT int dup(int fd) {
  ensure_init();
  int r = real.dup(fd);
  if (r >= 0)
    copy_tracking(fd, r);
  return r;
}

EXPORT int dup2(int fd, int fd2) {
  ensure_init();
  int r = real.dup2(fd, fd2);
  if (r >= 0 && r != fd)
    copy_tracking(fd, r);
  return r;
}

EXPORT int dup3(int fd, int fd2, int flags) {
  ensure_init();
  int r = real.dup3(fd, fd2, flags);
  if (r >= 0)
    copy_tracking(fd, r);
  return r;
}

static int do_fcntl(fcntl_fn f, int fd, int cmd, void *arg) {
  int r = f(fd, cmd, arg);
  if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
    copy_tracking(fd, r);
  return r;
}

EXPORT int fcntl(int fd, int cmd, ...) {
  ensure_init();
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return do_fcntl(real.fcntl, fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...) {
  ensure_init();
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return do_fcntl(real.fcntl64 ? real.fcntl64 : real.fcntl, fd, cmd, arg);
}
