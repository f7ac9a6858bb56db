/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_compare: what two disks read, compared as `qemu-img compare` does,
 * and the run cursor that walks a disk's block status front to back
 * (shared with lib/convert.c).
 *
 * Both disks are walked together in pieces that lie inside one run of
 * each and inside one CHUNK-aligned window: a piece both report as zeros
 * is not read, a piece one reports as zeros is read from the other only
 * and must be zeros there, anything else is read from both and compared.
 * Strict mode also stops where a piece is allocated (VMDK_RUN_PRESENT) in
 * one disk and not in the other.  Past the end of the smaller disk, the
 * larger must read as zeros. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Bytes read from each disk per call; pieces are aligned to it. */
#define CHUNK ((uint64_t)1 << 20)

/* ---- run cursor --------------------------------------------------------- */

void run_cursor_init(struct run_cursor *c, struct vmdk_disk *disk) {
  c->disk = disk;
  c->size = vmdk_get_size(disk);
  c->valid = false;
}

struct first_run {
  struct vmdk_run run;
  bool got;
};

static int first_run_cb(void *opaque, const struct vmdk_run *run) {
  struct first_run *f = opaque;
  f->run = *run;
  f->got = true;
  return 1; /* one is enough */
}

int run_cursor_at(struct run_cursor *c, uint64_t off,
                  const struct vmdk_run **run) {
  if (c->valid && off >= c->run.offset && off - c->run.offset < c->run.length) {
    *run = &c->run;
    return 0;
  }
  struct first_run f = {.got = false};
  if (vmdk_block_status(c->disk, off, c->size - off, first_run_cb, &f) < 0)
    return -1;
  if (!f.got || f.run.length == 0 || off < f.run.offset ||
      off - f.run.offset >= f.run.length)
    return set_error(EIO,
                     "%s: block status returned no run containing offset "
                     "%" PRIu64 " (library bug)",
                     c->disk->path, off);
  /* Never trust a run past the end of the disk. */
  if (f.run.offset + f.run.length > c->size ||
      f.run.offset + f.run.length < f.run.offset)
    f.run.length = c->size - f.run.offset;
  c->run = f.run;
  c->valid = true;
  *run = &c->run;
  return 0;
}

bool buf_is_zero(const void *p, size_t n) {
  const unsigned char *b = p;
  if (n == 0)
    return true;
  return b[0] == 0 && memcmp(b, b + 1, n - 1) == 0;
}

/* ---- vmdk_compare ------------------------------------------------------- */

/* Index of the first non-zero byte of the N bytes at P, or N. */
static size_t first_nonzero(const unsigned char *p, size_t n) {
  size_t i = 0;
  /* Skip whole zero blocks quickly, then look byte by byte. */
  while (n - i >= 4096 && buf_is_zero(p + i, 4096))
    i += 4096;
  while (i < n && p[i] == 0)
    i++;
  return i;
}

/* Index of the first byte where the N bytes at A and B differ, or N. */
static size_t first_difference(const unsigned char *a, const unsigned char *b,
                               size_t n) {
  size_t i = 0;
  while (n - i >= 4096 && memcmp(a + i, b + i, 4096) == 0)
    i += 4096;
  while (i < n && a[i] == b[i])
    i++;
  return i;
}

struct compare {
  struct run_cursor c1, c2;
  unsigned char *buf1, *buf2; /* CHUNK bytes each */
  bool strict;
  vmdk_progress_cb cb;
  void *opaque;
  uint64_t total;  /* bytes of the larger disk */
  struct vmdk_compare_result *res;
};

static uint64_t chunk_end(uint64_t off) {
  return (off / CHUNK + 1) * CHUNK;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

static int progress(struct compare *cmp, uint64_t done) {
  if (cmp->cb && cmp->cb(cmp->opaque, done, cmp->total) != 0)
    return set_error(ECANCELED,
                     "%s: compare cancelled at %" PRIu64 " of %" PRIu64
                     " bytes",
                     cmp->c1.disk->path, done, cmp->total);
  return 0;
}

/* The difference found at OFF: 1. */
static int differs(struct compare *cmp, enum vmdk_compare_kind kind,
                   uint64_t off) {
  cmp->res->kind = kind;
  cmp->res->offset = off;
  return 1;
}

/* Compare [0, END) of both disks: 0 the same, 1 a difference (in
 * cmp->res), -1 error. */
static int compare_common(struct compare *cmp, uint64_t end) {
  uint64_t off = 0;
  while (off < end) {
    const struct vmdk_run *r1, *r2;
    if (run_cursor_at(&cmp->c1, off, &r1) < 0 ||
        run_cursor_at(&cmp->c2, off, &r2) < 0)
      return -1;
    uint64_t stop =
        min_u64(min_u64(r1->offset + r1->length, r2->offset + r2->length),
                min_u64(end, chunk_end(off)));
    size_t n = (size_t)(stop - off);
    bool zero1 = r1->flags & VMDK_RUN_ZERO, zero2 = r2->flags & VMDK_RUN_ZERO;

    if (cmp->strict && ((r1->flags ^ r2->flags) & VMDK_RUN_PRESENT))
      return differs(cmp, VMDK_COMPARE_ALLOCATION, off);
    size_t i = n;
    if (zero1 && zero2) {
      /* Zero in both: nothing to read. */
    } else if (zero1 || zero2) {
      struct vmdk_disk *d = zero1 ? cmp->c2.disk : cmp->c1.disk;
      if (vmdk_pread(d, cmp->buf1, n, off) < 0)
        return -1;
      i = first_nonzero(cmp->buf1, n);
    } else {
      if (vmdk_pread(cmp->c1.disk, cmp->buf1, n, off) < 0 ||
          vmdk_pread(cmp->c2.disk, cmp->buf2, n, off) < 0)
        return -1;
      i = first_difference(cmp->buf1, cmp->buf2, n);
    }
    if (i < n)
      return differs(cmp, VMDK_COMPARE_CONTENT, off + i);
    off = stop;
    if (progress(cmp, off) < 0)
      return -1;
  }
  return 0;
}

/* The part of the larger disk (C) from START on must read as zeros. */
static int compare_tail(struct compare *cmp, struct run_cursor *c,
                        uint64_t start) {
  uint64_t off = start;
  while (off < c->size) {
    const struct vmdk_run *r;
    if (run_cursor_at(c, off, &r) < 0)
      return -1;
    uint64_t stop =
        min_u64(r->offset + r->length, min_u64(c->size, chunk_end(off)));
    size_t n = (size_t)(stop - off);
    if (!(r->flags & VMDK_RUN_ZERO)) {
      if (vmdk_pread(c->disk, cmp->buf1, n, off) < 0)
        return -1;
      size_t i = first_nonzero(cmp->buf1, n);
      if (i < n)
        return differs(cmp, VMDK_COMPARE_CONTENT, off + i);
    }
    off = stop;
    if (progress(cmp, off) < 0)
      return -1;
  }
  return 0;
}

int vmdk_compare(struct vmdk_disk *a, struct vmdk_disk *b, unsigned flags,
                 struct vmdk_compare_result *result, vmdk_progress_cb cb,
                 void *opaque) {
  if (!a || !b || !result)
    return set_error(EINVAL, "vmdk_compare: a disk or the result is NULL");
  if (flags & ~VMDK_COMPARE_STRICT)
    return set_error(EINVAL, "vmdk_compare: unknown flags 0x%x",
                     flags & ~VMDK_COMPARE_STRICT);
  struct vmdk_compare_result res = {VMDK_COMPARE_SAME, 0, 0};
  struct compare cmp = {.strict = flags & VMDK_COMPARE_STRICT,
                        .cb = cb,
                        .opaque = opaque,
                        .res = &res};
  run_cursor_init(&cmp.c1, a);
  run_cursor_init(&cmp.c2, b);
  uint64_t size1 = cmp.c1.size, size2 = cmp.c2.size;
  cmp.total = size1 > size2 ? size1 : size2;
  res.size_differs = size1 != size2;
  if (cmp.strict && size1 != size2) {
    res.kind = VMDK_COMPARE_SIZE;
    *result = res;
    return 0;
  }
  cmp.buf1 = io_alloc(CHUNK);
  cmp.buf2 = io_alloc(CHUNK);
  int r;
  if (!cmp.buf1 || !cmp.buf2) {
    r = set_error(ENOMEM, "out of memory");
  } else {
    r = compare_common(&cmp, min_u64(size1, size2));
    if (r == 0 && size1 != size2)
      r = size1 > size2 ? compare_tail(&cmp, &cmp.c1, size2)
                        : compare_tail(&cmp, &cmp.c2, size1);
    /* Every byte compared: the last report says so (also for empty
     * disks, which report nothing else). */
    if (r == 0 && progress(&cmp, cmp.total) < 0)
      r = -1;
  }
  free(cmp.buf1);
  free(cmp.buf2);
  if (r < 0)
    return -1;
  *result = res;
  return 0;
}
