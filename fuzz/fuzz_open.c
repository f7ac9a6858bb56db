/* SPDX-License-Identifier: BSD-3-Clause */
/* Fuzz target: open an untrusted image and use everything a reader does.
 *
 * The input is one image file, or several (descriptor + extents, child +
 * parent) in the FZMF container of fuzz_common.h.  For each of
 * VMDK_FORMAT_VMDK and VMDK_FORMAT_AUTO it is opened read-only (confined to
 * its folder), then: vmdk_get_info on it and every backing layer,
 * vmdk_block_status over the whole disk (at most MAX_RUNS runs) reading
 * each run's first and last byte, FAR_READS reads of up to 64 KiB spread
 * over the disk (each also read in two pieces, which must agree), and
 * vmdk_check.  An image that opened read-only is then opened read-write,
 * repaired (vmdk_repair, VMDK_REPAIR_ALL), written and zeroed at a few
 * places, flushed, closed and read and checked again.  With
 * $VMDKIT_FUZZ_VERBOSE set it tells what each step did, what check and
 * repair reported, and whether a failed write changed a file.
 *
 * Aborts (a finding) on a crash, on a run list that does not tile the disk,
 * on a run said to read as zeros that does not, on reads that disagree, on
 * any file changed by a read-only open or by a refused read-write open, and
 * -- for disks up to MIRROR_MAX whose files each hold one extent -- when
 * what the disk read after the repair, with the writes applied, is not
 * what it reads after the reopen (or it no longer opens or reads).
 * Errors are expected and fine: hostile images must be refused, cleanly.
 */
#include "fuzz_common.h"

#define MAX_RUNS 2048     /* runs looked at per block status call */
#define FAR_READS 8       /* 64 KiB reads spread over the disk */
#define CHUNK 65536u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf_a[CHUNK], buf_b[CHUNK];

/* Touch every string of the info, so a dangling one is found. */
static void use_info(struct vmdk_disk *d) {
  for (int depth = 0; d && depth < 100; depth++, d = vmdk_get_backing(d)) {
    struct vmdk_info info;
    if (vmdk_get_info(d, &info) != 0)
      continue;
    size_t sum = strlen(info.format);
    FZ_ASSERT(info.size_bytes == vmdk_get_size(d), "info size %llu != %llu",
              (unsigned long long)info.size_bytes,
              (unsigned long long)vmdk_get_size(d));
    if (info.create_type)
      sum += strlen(info.create_type);
    if (info.adapter_type)
      sum += strlen(info.adapter_type);
    if (info.hw_version)
      sum += strlen(info.hw_version);
    if (info.parent_hint)
      sum += strlen(info.parent_hint);
    uint64_t covered = 0;
    for (size_t i = 0; i < info.n_extents; i++) {
      const struct vmdk_extent_info *x = &info.extents[i];
      if (x->filename)
        sum += strlen(x->filename);
      sum += strlen(x->type) + strlen(x->access);
      covered += x->size_bytes;
    }
    FZ_ASSERT(covered == info.size_bytes,
              "extents cover %llu bytes, the disk is %llu",
              (unsigned long long)covered,
              (unsigned long long)info.size_bytes);
    (void)sum;
  }
}

struct walk {
  struct vmdk_disk *d;
  uint64_t size;
  uint64_t next; /* where the next run must start */
  unsigned runs;
};

static int on_run(void *opaque, const struct vmdk_run *r) {
  struct walk *w = opaque;
  FZ_ASSERT(r->offset == w->next, "run at %llu, expected %llu",
            (unsigned long long)r->offset, (unsigned long long)w->next);
  FZ_ASSERT(r->length > 0 && r->length <= w->size - r->offset,
            "run of %llu bytes at %llu on a disk of %llu",
            (unsigned long long)r->length, (unsigned long long)r->offset,
            (unsigned long long)w->size);
  FZ_ASSERT(r->depth >= 0, "run depth %d", r->depth);
  if (r->file)
    (void)strlen(r->file);
  w->next = r->offset + r->length;
  uint64_t ends[2] = {r->offset, r->offset + r->length - 1};
  for (int i = 0; i < 2; i++) {
    uint8_t b = 0x5a;
    if (vmdk_pread(w->d, &b, 1, ends[i]) == 0 && (r->flags & VMDK_RUN_ZERO))
      FZ_ASSERT(b == 0, "byte %llu of a ZERO run reads as 0x%02x",
                (unsigned long long)ends[i], b);
  }
  return ++w->runs >= MAX_RUNS;
}

static void read_around(struct vmdk_disk *d) {
  uint64_t size = vmdk_get_size(d);
  if (size == 0) {
    FZ_ASSERT(vmdk_pread(d, buf_a, 1, 0) != 0, "read past the end worked");
    return;
  }
  struct walk w = {d, size, 0, 0};
  if (vmdk_block_status(d, 0, size, on_run, &w) == 0 && w.runs < MAX_RUNS)
    FZ_ASSERT(w.next == size, "runs end at %llu, the disk at %llu",
              (unsigned long long)w.next, (unsigned long long)size);

  for (unsigned i = 0; i < FAR_READS; i++) {
    uint64_t off = size / FAR_READS * i;
    if (i == FAR_READS - 1) /* the very end */
      off = size > CHUNK ? size - CHUNK : 0;
    size_t len = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
    if (vmdk_pread(d, buf_a, len, off) != 0)
      continue;
    /* the same bytes in two unaligned pieces */
    size_t cut = len / 2 + (i % 3);
    if (cut > len)
      cut = len;
    memset(buf_b, 0xa5, len);
    if (vmdk_pread(d, buf_b, cut, off) == 0 &&
        vmdk_pread(d, buf_b + cut, len - cut, off + cut) == 0)
      FZ_ASSERT(memcmp(buf_a, buf_b, len) == 0,
                "%zu bytes at %llu read differently in two pieces", len,
                (unsigned long long)off);
  }
  FZ_ASSERT(vmdk_pread(d, buf_a, 1, size) != 0, "read past the end worked");
}

static void on_problem(void *opaque, enum vmdk_problem_kind kind,
                       const char *message) {
  (void)opaque;
  FZ_ASSERT(kind == VMDK_PROBLEM_CORRUPT || kind == VMDK_PROBLEM_LEAK,
            "problem kind %d", (int)kind);
  FZ_ASSERT(message && *message, "empty problem message");
  if (fz_verbose())
    fprintf(stderr, "    %s%s\n", opaque ? (const char *)opaque : "",
            message);
}

static void check(struct vmdk_disk *d) {
  struct vmdk_check_result res;
  if (vmdk_check(d, &res, on_problem, NULL) == 0)
    FZ_ASSERT(res.allocated_grains <= res.total_grains,
              "%llu grains allocated of %llu",
              (unsigned long long)res.allocated_grains,
              (unsigned long long)res.total_grains);
}

/* Open read-write, change a few places, close, and look again. */
/* A write or zero that failed: tell (verbose) whether it changed a file. */
static void failed_write(const char *what, struct snapshot *s) {
  if (!fz_verbose())
    return;
  struct snapshot now;
  snap_take(&now);
  fprintf(stderr, "  %s failed (%s): %s\n", what,
          snap_same(s, &now) ? "files unchanged" : "FILES CHANGED",
          vmdk_get_error());
  snap_free(&now);
}

#define MIRROR_MAX (4u << 20) /* disks up to this size are compared whole */
static uint8_t mirror[MIRROR_MAX], whole[MIRROR_MAX];

struct file_id {
  dev_t dev;
  ino_t ino;
};

/* Add PATH's identity to IDS (N of them, at most CAP); false when it is
 * there already.  A path that does not exist is ignored. */
static bool add_id(struct file_id *ids, unsigned *n, unsigned cap,
                   const char *path) {
  struct stat st;
  if (!path || stat(path, &st) != 0)
    return true;
  for (unsigned i = 0; i < *n; i++)
    if (ids[i].dev == st.st_dev && ids[i].ino == st.st_ino)
      return false;
  if (*n < cap)
    ids[(*n)++] = (struct file_id){st.st_dev, st.st_ino};
  return true;
}

/* Whether a write to D can change only what it writes: no file holds two
 * extents of D's chain (a descriptor may map one region twice, or map its
 * own text as a FLAT extent, and a write through one then rightly changes
 * the other).  PATH is D's own file. */
static bool files_distinct(struct vmdk_disk *d, const char *path) {
  struct file_id ext[64], desc[64];
  unsigned n_ext = 0, n_desc = 0;
  (void)add_id(desc, &n_desc, 64, path);
  for (int depth = 0; d && depth < 64; depth++, d = vmdk_get_backing(d)) {
    struct vmdk_info info;
    if (vmdk_get_info(d, &info) != 0)
      return false;
    if (info.parent_hint) {
      char p[1024];
      snprintf(p, sizeof p, "%s/%s", fz_tmpdir(), info.parent_hint);
      (void)add_id(desc, &n_desc, 64, p);
    }
    for (size_t i = 0; i < info.n_extents; i++) {
      const struct vmdk_extent_info *x = &info.extents[i];
      if (!add_id(ext, &n_ext, 64, x->filename))
        return false;
      if (strcmp(x->type, "SPARSE") != 0 &&
          strcmp(x->type, "VMFSSPARSE") != 0 &&
          strcmp(x->type, "SESPARSE") != 0) {
        unsigned k = n_desc;
        if (!add_id(desc, &k, 64, x->filename))
          return false; /* a FLAT extent over a descriptor's text */
      }
    }
  }
  return true;
}

/* Open read-write, repair, change a few places, close, and look again.
 * When the disk is small and no file is mapped twice, what it reads after
 * the repair, plus what was written, must be what it reads when reopened. */
static void write_some(const char *path, int format) {
  struct snapshot s;
  snap_take(&s);
  struct vmdk_disk *d =
      vmdk_open_format(path, format, VMDK_OPEN_RDWR | VMDK_OPEN_CONFINE);
  if (!d) {
    FZ_ASSERT(*vmdk_get_error(), "open failed without a message");
    snap_verify(&s, "a refused read-write open");
    snap_free(&s);
    return;
  }
  snap_free(&s);
  struct vmdk_check_result after;
  if (vmdk_repair(d, VMDK_REPAIR_ALL, &after, on_problem, "repaired: ") == 0 &&
      fz_verbose()) {
    fprintf(stderr, "  repair: %llu corruptions, %llu leaks left\n",
            (unsigned long long)after.corruptions,
            (unsigned long long)after.leaks);
    if (after.corruptions)
      (void)vmdk_check(d, &after, on_problem, "left: ");
  }
  uint64_t size = vmdk_get_size(d);
  bool compare = size > 0 && size <= MIRROR_MAX && files_distinct(d, path) &&
                 vmdk_pread(d, mirror, size, 0) == 0;
  if (size > 0) {
    memset(buf_a, 0xc3, CHUNK);
    size_t len = size < 4096 ? (size_t)size : 4096;
    uint64_t mid = size / 2 - size / 2 % 512;
    if (mid > size - len)
      mid = size - len;
    for (int op = 0; op < 5; op++) {
      if (op == 3) {
        compare &= vmdk_flush(d) == 0;
        continue;
      }
      if (fz_verbose())
        snap_take(&s);
      uint64_t off = op == 0 ? mid : op == 1 ? size - 1 : 0;
      size_t n = op == 1 ? 1 : op == 2 ? (size < 1000 ? (size_t)size : 1000)
                                       : len;
      int r = op == 2 ? vmdk_zero(d, n, off) : vmdk_pwrite(d, buf_a, n, off);
      if (r == 0 && compare) {
        if (op == 2)
          memset(mirror + off, 0, n);
        else
          memcpy(mirror + off, buf_a, n);
      } else if (r != 0) {
        failed_write(op == 2 ? "zero" : "write", &s);
        /* a refusal changed nothing; after any other failure what the
         * range holds is not known */
        if (vmdk_get_errno() != EROFS && vmdk_get_errno() != EACCES)
          compare = false;
      }
      if (fz_verbose())
        snap_free(&s);
    }
  }
  compare &= vmdk_close(d) == 0;
  d = vmdk_open_format(path, format, VMDK_OPEN_CONFINE);
  FZ_ASSERT(d || !compare, "the image no longer opens after clean writes: %s",
            vmdk_get_error());
  if (d) {
    if (compare) {
      FZ_ASSERT(vmdk_pread(d, whole, size, 0) == 0,
                "the image no longer reads after clean writes: %s",
                vmdk_get_error());
      for (size_t i = 0; i < size; i++)
        FZ_ASSERT(whole[i] == mirror[i],
                  "after writing and reopening, byte %zu reads 0x%02x, "
                  "expected 0x%02x",
                  i, whole[i], mirror[i]);
    }
    read_around(d);
    check(d);
    vmdk_close(d);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[512];
  if (!fz_unpack(data, size, path, sizeof path))
    return 0;
  static const int formats[] = {VMDK_FORMAT_VMDK, VMDK_FORMAT_AUTO};
  struct snapshot s;
  snap_take(&s);
  int opened = -1;
  for (unsigned i = 0; i < 2; i++) {
    struct vmdk_disk *d =
        vmdk_open_format(path, formats[i], VMDK_OPEN_CONFINE);
    if (!d) {
      FZ_ASSERT(*vmdk_get_error(), "open failed without a message");
      if (fz_verbose())
        fprintf(stderr, "  open (format %d): %s\n", formats[i],
                vmdk_get_error());
      continue;
    }
    if (fz_verbose())
      fprintf(stderr, "  open (format %d): %llu bytes\n", formats[i],
              (unsigned long long)vmdk_get_size(d));
    use_info(d);
    read_around(d);
    check(d);
    vmdk_close(d);
    if (opened < 0)
      opened = formats[i];
  }
  snap_verify(&s, "read-only opens");
  snap_free(&s);
  if (opened >= 0)
    write_some(path, opened);
  fz_clear();
  return 0;
}
