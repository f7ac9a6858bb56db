/* SPDX-License-Identifier: BSD-3-Clause */
/* FLAT and VMFS extents (and raw images): the virtual bytes of the extent
 * are the bytes of a host file starting at a fixed offset.  Nothing to
 * allocate, nothing to order: a write is one pwrite. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

struct flat {
  struct vfile *f;
  uint64_t base; /* byte offset of the extent's first byte in the file */
};

static int flat_pread(struct extent *e, void *buf, size_t len, uint64_t off) {
  struct flat *fl = e->priv;
  return vf_pread(fl->f, buf, len, fl->base + off);
}

static int flat_pwrite(struct extent *e, const void *buf, size_t len,
                       uint64_t off) {
  struct flat *fl = e->priv;
  return vf_pwrite(fl->f, buf, len, fl->base + off);
}

static int flat_zero(struct extent *e, uint64_t len, uint64_t off) {
  struct flat *fl = e->priv;
  return vf_zero_range(fl->f, len, fl->base + off);
}

static int flat_status(struct extent *e, uint64_t off, uint64_t len,
                       struct vmdk_run *run) {
  struct flat *fl = e->priv;
  bool data;
  uint64_t n;
  if (vf_seek_status(fl->f, fl->base + off, &data, &n) != 0)
    return -1;
  run->length = n < len ? n : len;
  run->flags = VMDK_RUN_PRESENT | (data ? VMDK_RUN_DATA : VMDK_RUN_ZERO);
  run->file_offset = data ? (int64_t)(fl->base + off) : -1;
  run->file = data ? fl->f->path : NULL;
  return 0;
}

static int flat_flush(struct extent *e) {
  struct flat *fl = e->priv;
  return vf_sync(fl->f);
}

static int flat_close(struct extent *e) {
  struct flat *fl = e->priv;
  int r = vf_close(fl->f);
  free(fl);
  return r;
}

static void flat_info(struct extent *e, struct vmdk_extent_info *info) {
  struct flat *fl = e->priv;
  info->file_offset = fl->base;
}

static uint64_t flat_allocated(struct extent *e) {
  struct flat *fl = e->priv;
  return vf_allocated(fl->f);
}

/* The file grows to hold the extent (a hole, reading zeros); it shrinks only
 * when the extent ends the file, so bytes of other extents sharing the
 * file are never cut. */
static int flat_resize(struct extent *e, uint64_t size) {
  struct flat *fl = e->priv;
  uint64_t end = fl->base + size;
  if (size > e->size && fl->f->size < end)
    return vf_truncate(fl->f, end);
  if (size < e->size && fl->f->size == fl->base + e->size)
    return vf_truncate(fl->f, end);
  return 0;
}

static const struct extent_ops flat_ops = {
    .name = "flat",
    .pread = flat_pread,
    .pwrite = flat_pwrite,
    .zero = flat_zero,
    .status = flat_status,
    .flush = flat_flush,
    .close = flat_close,
    .info = flat_info,
    .allocated = flat_allocated,
    .resize = flat_resize,
};

int flat_open(struct extent *e, struct vfile *f, uint64_t offset_bytes) {
  struct flat *fl = calloc(1, sizeof *fl);
  if (!fl) {
    vf_close(f);
    return set_error(ENOMEM, "out of memory");
  }
  fl->f = f;
  fl->base = offset_bytes;
  e->ops = &flat_ops;
  e->priv = fl;
  return 0;
}
