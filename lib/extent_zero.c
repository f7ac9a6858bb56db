/* SPDX-License-Identifier: BSD-3-Clause */
/* ZERO extents: no file; every byte reads as zero.  Writes are refused by
 * the disk layer unless they write zeros (vmdk_zero), which are no-ops. */
#include <errno.h>
#include <string.h>

#include "internal.h"

static int zero_pread(struct extent *e, void *buf, size_t len, uint64_t off) {
  (void)e;
  (void)off;
  memset(buf, 0, len);
  return 0;
}

static int zero_pwrite(struct extent *e, const void *buf, size_t len,
                       uint64_t off) {
  (void)buf;
  (void)len;
  return set_error(EROFS,
                   "cannot write at offset %llu: it lies in a ZERO extent "
                   "(disk bytes %llu..%llu), which has no storage",
                   (unsigned long long)(e->virt_start + off),
                   (unsigned long long)e->virt_start,
                   (unsigned long long)(e->virt_start + e->size - 1));
}

static int zero_zero(struct extent *e, uint64_t len, uint64_t off) {
  (void)e;
  (void)len;
  (void)off;
  return 0;
}

static int zero_status(struct extent *e, uint64_t off, uint64_t len,
                       struct vmdk_run *run) {
  (void)e;
  (void)off;
  run->length = len;
  run->flags = VMDK_RUN_PRESENT | VMDK_RUN_ZERO;
  run->file_offset = -1;
  run->file = NULL;
  return 0;
}

static int zero_flush(struct extent *e) {
  (void)e;
  return 0;
}

static int zero_close(struct extent *e) {
  (void)e;
  return 0;
}

static const struct extent_ops zero_ops = {
    .name = "zero",
    .pread = zero_pread,
    .pwrite = zero_pwrite,
    .zero = zero_zero,
    .status = zero_status,
    .flush = zero_flush,
    .close = zero_close,
};

int zero_extent_open(struct extent *e) {
  e->ops = &zero_ops;
  e->priv = NULL;
  return 0;
}
