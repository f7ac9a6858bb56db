/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers shared by the fuzz targets (header only: each target is its own
 * program, built twice: as a libFuzzer binary and with fuzz/replay.c).
 *
 * Images are files: the targets write each input into a private folder on
 * a tmpfs (/dev/shm when it is there, else $TMPDIR or /tmp), made once per
 * process and emptied between inputs, and open them by path.  The folder is
 * removed at exit.  Images are always opened with VMDK_OPEN_CONFINE, so a
 * fuzzed descriptor can only name files inside that folder (never
 * /dev/stdin or a FIFO that would block the run).
 *
 * Multi-file inputs (descriptor + extents, child + parent): an input that
 * starts with FZ_MULTI_MAGIC is a list of files,
 *   "FZMF" { u8 name_len, name[name_len], u32le data_len, data[data_len] }...
 * the first of which is the image to open.  A name must be 1..32 bytes of
 * [A-Za-z0-9._-], not "." or ".."; a record with a bad name is skipped; a
 * short record ends the list (its data is cut to what is there).  At most
 * FZ_MAX_FILES files.  Any other input is one file, FZ_MAIN_NAME.
 */
#ifndef VMDKIT_FUZZ_COMMON_H
#define VMDKIT_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmdkit.h"

#define FZ_MULTI_MAGIC "FZMF"
#define FZ_MAX_FILES 8
#define FZ_MAIN_NAME "disk.vmdk"

/* Stop the run: a fuzz target found a wrong result (not a refusal). */
#define FZ_ASSERT(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz: %s:%d: assertion failed: %s: ", __FILE__,         \
              __LINE__, #cond);                                                \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static char fz_dir[256];

/* Whether to tell on stderr what each input did ($VMDKIT_FUZZ_VERBOSE set):
 * for looking at a corpus with the replay driver, never while fuzzing. */
static inline bool fz_verbose(void) {
  static int v = -1;
  if (v < 0)
    v = getenv("VMDKIT_FUZZ_VERBOSE") != NULL;
  return v;
}

/* Remove every entry of the private folder (the targets make only plain
 * files in it). */
static inline void fz_clear(void) {
  if (!fz_dir[0])
    return;
  DIR *dir = opendir(fz_dir);
  if (!dir)
    return;
  struct dirent *de;
  char p[sizeof fz_dir + 300];
  while ((de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    snprintf(p, sizeof p, "%s/%s", fz_dir, de->d_name);
    unlink(p);
  }
  closedir(dir);
}

static inline void fz_remove_dir(void) {
  fz_clear();
  if (fz_dir[0])
    rmdir(fz_dir);
}

/* The private folder (made on first use); aborts when it cannot be made. */
static inline const char *fz_tmpdir(void) {
  if (fz_dir[0])
    return fz_dir;
  const char *base = NULL;
  struct stat st;
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
      access("/dev/shm", W_OK) == 0)
    base = "/dev/shm";
  else if (!(base = getenv("TMPDIR")) || !*base)
    base = "/tmp";
  snprintf(fz_dir, sizeof fz_dir, "%s/vmdkit-fuzz-%ld-XXXXXX", base,
           (long)getpid());
  if (!mkdtemp(fz_dir)) {
    fprintf(stderr, "fuzz: cannot make a folder %s: %s\n", fz_dir,
            strerror(errno));
    abort();
  }
  atexit(fz_remove_dir);
  return fz_dir;
}

/* PATH (of size CAP) = the private folder / NAME. */
static inline void fz_path(char *path, size_t cap, const char *name) {
  snprintf(path, cap, "%s/%s", fz_tmpdir(), name);
}

/* Write LEN bytes to NAME in the private folder; aborts on failure. */
static inline void fz_write_file(const char *name, const uint8_t *data, size_t len) {
  char path[512];
  fz_path(path, sizeof path, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FZ_ASSERT(fd >= 0, "open %s: %s", path, strerror(errno));
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, data + done, len - done);
    FZ_ASSERT(n > 0, "write %s: %s", path, strerror(errno));
    done += (size_t)n;
  }
  close(fd);
}

static inline bool fz_name_ok(const uint8_t *name, size_t n) {
  if (n == 0 || n > 32 || (n == 1 && name[0] == '.') ||
      (n == 2 && name[0] == '.' && name[1] == '.'))
    return false;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

/* Empty the folder and lay out the input's files in it (see the top of
 * this file).  Fills MAIN (CAP bytes) with the path of the image to open;
 * returns false when the input holds no usable file. */
static inline bool fz_unpack(const uint8_t *data, size_t size, char *main_path,
                      size_t cap) {
  fz_tmpdir();
  fz_clear();
  size_t m = sizeof FZ_MULTI_MAGIC - 1;
  if (size < m || memcmp(data, FZ_MULTI_MAGIC, m) != 0) {
    fz_write_file(FZ_MAIN_NAME, data, size);
    fz_path(main_path, cap, FZ_MAIN_NAME);
    return true;
  }
  size_t pos = m;
  unsigned files = 0;
  while (pos < size && files < FZ_MAX_FILES) {
    size_t nlen = data[pos++];
    if (nlen > size - pos)
      break;
    const uint8_t *name = data + pos;
    pos += nlen;
    size_t dlen = 0;
    if (size - pos >= 4) {
      dlen = (size_t)data[pos] | (size_t)data[pos + 1] << 8 |
             (size_t)data[pos + 2] << 16 | (size_t)data[pos + 3] << 24;
      pos += 4;
    } else {
      pos = size;
    }
    if (dlen > size - pos)
      dlen = size - pos;
    if (fz_name_ok(name, nlen)) {
      char cname[33];
      memcpy(cname, name, nlen);
      cname[nlen] = '\0';
      fz_write_file(cname, data + pos, dlen);
      if (files++ == 0)
        fz_path(main_path, cap, cname);
    }
    pos += dlen;
  }
  return files > 0;
}

/* The bytes of every file in the private folder, to prove that something
 * (a read-only open, a refused open or write) did not change them. */
#define SNAP_MAX (16u << 20) /* bytes of a file a snapshot keeps */

struct snapshot {
  unsigned n;
  char name[FZ_MAX_FILES][256];
  uint8_t *bytes[FZ_MAX_FILES]; /* the first kept[i] bytes */
  uint64_t len[FZ_MAX_FILES];   /* the file's length */
  size_t kept[FZ_MAX_FILES];    /* min(len, SNAP_MAX): a write far out in a
                                   sparse file must not need its length in
                                   memory */
};

static inline void snap_take(struct snapshot *s) {
  s->n = 0;
  DIR *dir = opendir(fz_tmpdir());
  FZ_ASSERT(dir != NULL, "opendir: %s", strerror(errno));
  struct dirent *de;
  while ((de = readdir(dir)) != NULL && s->n < FZ_MAX_FILES) {
    if (de->d_name[0] == '.' &&
        (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
      continue;
    char path[512];
    fz_path(path, sizeof path, de->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    FZ_ASSERT(fd >= 0 && fstat(fd, &st) == 0, "%s: %s", path,
              strerror(errno));
    size_t kept = (uint64_t)st.st_size < SNAP_MAX ? (size_t)st.st_size
                                                   : SNAP_MAX;
    uint8_t *b = malloc(kept ? kept : 1);
    FZ_ASSERT(b != NULL, "out of memory");
    FZ_ASSERT(pread(fd, b, kept, 0) == (ssize_t)kept, "%s: short read", path);
    close(fd);
    snprintf(s->name[s->n], sizeof s->name[s->n], "%s", de->d_name);
    s->bytes[s->n] = b;
    s->len[s->n] = (uint64_t)st.st_size;
    s->kept[s->n] = kept;
    s->n++;
  }
  closedir(dir);
}

static inline void snap_free(struct snapshot *s) {
  for (unsigned i = 0; i < s->n; i++)
    free(s->bytes[i]);
  s->n = 0;
}

/* Whether A and B hold the same files with the same bytes. */
static inline bool snap_same(const struct snapshot *a,
                             const struct snapshot *b) {
  if (a->n != b->n)
    return false;
  for (unsigned i = 0; i < a->n; i++)
    if (strcmp(a->name[i], b->name[i]) != 0 || a->len[i] != b->len[i] ||
        a->kept[i] != b->kept[i] ||
        memcmp(a->bytes[i], b->bytes[i], a->kept[i]) != 0)
      return false;
  return true;
}

/* Every file of S still holds exactly its bytes (and no file was made). */
static inline void snap_verify(const struct snapshot *s, const char *after) {
  struct snapshot now;
  snap_take(&now);
  bool same = snap_same(s, &now);
  if (!same)
    for (unsigned i = 0; i < s->n && i < now.n; i++)
      if (s->len[i] != now.len[i] ||
          memcmp(s->bytes[i], now.bytes[i], s->kept[i]) != 0)
        fprintf(stderr, "fuzz: %s: %llu bytes, was %llu\n", s->name[i],
                (unsigned long long)now.len[i], (unsigned long long)s->len[i]);
  snap_free(&now);
  FZ_ASSERT(same, "the files changed by %s", after);
}

#endif /* VMDKIT_FUZZ_COMMON_H */
