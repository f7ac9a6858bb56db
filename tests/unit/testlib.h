/* SPDX-License-Identifier: BSD-3-Clause */
/* Small helpers shared by the unit tests (header only: every test-*.c is its
 * own program, so each gets its own copy of these static functions).
 *
 * Conventions: a failed check prints "FAIL file:line: what (values)" to
 * stderr and counts the failure; a test's main() returns t_exit_code():
 * 0 when nothing failed, 1 otherwise.  Exit 77 means skipped.
 */
#ifndef VMDKIT_TESTLIB_H
#define VMDKIT_TESTLIB_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmdkit.h"

static unsigned t_failures;

static inline void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void t_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "FAIL %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  t_failures++;
}

/* FAIL(fmt, ...) records a failure with a message. */
#define FAIL(...) t_fail(__FILE__, __LINE__, __VA_ARGS__)
/* CHECK(cond, fmt, ...) records a failure when COND is false.  Evaluates to
 * COND so callers can bail out: `if (!CHECK(p != NULL, ...)) goto out;` */
#define CHECK(cond, ...)                                                       \
  ((cond) ? true : (t_fail(__FILE__, __LINE__, __VA_ARGS__), false))
#define CHECK_U64(a, b)                                                        \
  CHECK((uint64_t)(a) == (uint64_t)(b),                                        \
        "%s == %s: got %" PRIu64 " (0x%" PRIx64 "), expected %" PRIu64         \
        " (0x%" PRIx64 ")",                                                    \
        #a, #b, (uint64_t)(a), (uint64_t)(a), (uint64_t)(b), (uint64_t)(b))
#define CHECK_STR(a, b)                                                        \
  CHECK((a) != NULL && (b) != NULL && strcmp((a), (b)) == 0,                   \
        "%s == %s: got \"%s\", expected \"%s\"", #a, #b, (a) ? (a) : "(null)", \
        (b) ? (b) : "(null)")

static inline int t_exit_code(void) {
  if (t_failures) {
    fprintf(stderr, "%u check(s) failed\n", t_failures);
    return 1;
  }
  return 0;
}

/* Case-insensitive substring search. */
static inline bool t_contains_ci(const char *hay, const char *needle) {
  if (!hay || !needle)
    return false;
  size_t n = strlen(needle);
  for (const char *p = hay; *p; p++)
    if (strncasecmp(p, needle, n) == 0)
      return true;
  return n == 0;
}

/* Whether MSG contains (case-insensitively) at least one of the NULL
 * terminated list of needles. */
__attribute__((sentinel)) static inline bool t_mentions_any(const char *msg,
                                                            ...) {
  va_list ap;
  bool found = false;
  va_start(ap, msg);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
    if (t_contains_ci(msg, s))
      found = true;
  va_end(ap);
  return found;
}

/* ---- deterministic PRNG (splitmix64): same seed, same test ---------- */

struct t_rng {
  uint64_t s;
};
static inline uint64_t t_rand64(struct t_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
/* Uniform in [0, n) (n > 0; the tiny modulo bias does not matter here). */
static inline uint64_t t_below(struct t_rng *r, uint64_t n) {
  return t_rand64(r) % n;
}
/* Fill BUF with bytes derived from SEED: never all-zero in practice. */
static inline void t_fill(void *buf, size_t len, uint64_t seed) {
  struct t_rng r = {seed * 0x2545f4914f6cdd1dull + 1};
  uint8_t *p = buf;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v = t_rand64(&r);
    memcpy(p + i, &v, 8);
  }
  if (i < len) {
    uint64_t v = t_rand64(&r);
    memcpy(p + i, &v, len - i);
  }
}

/* ---- temporary directory -------------------------------------------- */

static char t_dir[4096];

static inline int t_rm_cb(const char *path, const struct stat *sb, int type,
                          struct FTW *ftw) {
  (void)sb;
  (void)type;
  (void)ftw;
  return remove(path);
}

static inline void t_rmdir(void) {
  if (t_dir[0])
    nftw(t_dir, t_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  t_dir[0] = 0;
}

/* Make a fresh directory under $TMPDIR (removed at exit).  Exits 1 when it
 * cannot. */
static inline const char *t_tmpdir(const char *tag) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base)
    base = "/tmp";
  snprintf(t_dir, sizeof t_dir, "%s/vmdkit-%s.XXXXXX", base, tag);
  if (!mkdtemp(t_dir)) {
    fprintf(stderr, "FAIL: mkdtemp %s: %s\n", t_dir, strerror(errno));
    exit(1);
  }
  atexit(t_rmdir);
  return t_dir;
}

/* "$t_dir/NAME" in a static rotating buffer (8 slots). */
static inline const char *t_path(const char *name) {
  static char bufs[8][4200];
  static unsigned next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", t_dir, name);
  return b;
}

/* ---- whole files ------------------------------------------------------ */

/* Read the whole file into a malloc'ed buffer; NULL on error. */
static inline uint8_t *t_read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    close(fd);
    return NULL;
  }
  size_t n = (size_t)st.st_size;
  uint8_t *buf = malloc(n ? n : 1);
  size_t got = 0;
  while (buf && got < n) {
    ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
    if (r <= 0) {
      free(buf);
      buf = NULL;
      break;
    }
    got += (size_t)r;
  }
  close(fd);
  if (buf)
    *len = n;
  return buf;
}

/* Create/overwrite PATH with LEN bytes of BUF.  Returns 0 or -1. */
static inline int t_write_file(const char *path, const void *buf, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return -1;
  const uint8_t *p = buf;
  size_t done = 0;
  while (done < len) {
    ssize_t r = write(fd, p + done, len - done);
    if (r <= 0) {
      close(fd);
      return -1;
    }
    done += (size_t)r;
  }
  return close(fd);
}

/* Length of the file, or -1. */
static inline int64_t t_file_size(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0)
    return -1;
  return (int64_t)st.st_size;
}

/* Offset of the first byte where A and B differ, or -1 when equal. */
static inline int64_t t_first_diff(const void *a, const void *b, size_t len) {
  const uint8_t *x = a, *y = b;
  if (memcmp(x, y, len) == 0)
    return -1;
  for (size_t i = 0; i < len; i++)
    if (x[i] != y[i])
      return (int64_t)i;
  return -1;
}

#endif /* VMDKIT_TESTLIB_H */
