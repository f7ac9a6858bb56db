/* SPDX-License-Identifier: BSD-3-Clause */
/* The image lifecycle: commit a child into its backing, rebase it onto
 * another backing, resize it.  Built on the public data calls (pread,
 * pwrite, zero, block_status) plus the descriptor and extent resize op, so
 * the ordering rules of each extent kind apply unchanged. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define COPY_CHUNK (1u << 20)

/* The first run of D at OFF (to the end of the disk). */
static int first_run_cb(void *opaque, const struct vmdk_run *r) {
  *(struct vmdk_run *)opaque = *r;
  return 1;
}

static int run_at(struct vmdk_disk *d, uint64_t off, struct vmdk_run *r) {
  memset(r, 0, sizeof *r);
  if (vmdk_block_status(d, off, d->size - off, first_run_cb, r) != 0)
    return -1;
  if (r->length == 0)
    return set_error(EIO, "%s: no block status at offset %" PRIu64, d->path,
                     off);
  return 0;
}

static bool own(const struct vmdk_run *r) {
  return r->depth == 0 && (r->flags & VMDK_RUN_PRESENT);
}

static int progress(vmdk_progress_cb cb, void *opaque, uint64_t done,
                    uint64_t total, const char *path) {
  if (cb && cb(opaque, done, total) != 0)
    return set_error(ECANCELED, "%s: cancelled at %" PRIu64 " of %" PRIu64
                                " bytes",
                     path, done, total);
  return 0;
}

static int keep_error(struct vmdk_disk *also_close) {
  char msg[1024];
  int err = vmdk_get_errno();
  snprintf(msg, sizeof msg, "%s", vmdk_get_error());
  vmdk_close(also_close);
  return set_error(err, "%s", msg);
}

int vmdk_commit(struct vmdk_disk *d, vmdk_progress_cb cb, void *opaque) {
  if (!(d->flags & VMDK_OPEN_RDWR))
    return set_error(EROFS, "%s: opened read-only", d->path);
  if (!d->parent)
    return set_error(EINVAL, "%s: has no backing file to commit into",
                     d->path);
  if (vmdk_flush(d) != 0)
    return -1;
  struct vmdk_disk *p = d->parent;
  int pformat = p->raw ? VMDK_FORMAT_RAW : VMDK_FORMAT_VMDK;
  /* The parent's new CID is announced in the child first (durably), then
   * given to the parent before its first change: at any crash the child
   * accepts the parent's CID, old or new, until the re-link at the end
   * replaces the announcement with parentCID (DDB_COMMIT_CID). */
  uint32_t new_cid = p->raw ? NO_CID : disk_new_cid(p->desc->cid);
  if (!p->raw) {
    char hex[16];
    snprintf(hex, sizeof hex, "%08" PRIx32, new_cid);
    if (desc_set_ddb(d->desc, DDB_COMMIT_CID, hex) != 0 ||
        disk_write_descriptor(d) != 0 || vmdk_flush(d) != 0)
      return -1;
  }
  unsigned pflags = (d->flags & ~VMDK_OPEN_RDWR) | VMDK_OPEN_RDWR;
  struct vmdk_disk *w =
      disk_open_confined(p->path, pformat, pflags, d->confine_root);
  if (!w)
    return -1;
  if (!p->raw && disk_set_cid(w, new_cid) != 0)
    return keep_error(w);
  if (w->size < d->size && vmdk_resize(w, d->size, 0) != 0)
    return keep_error(w);
  uint8_t *buf = malloc(COPY_CHUNK);
  if (!buf) {
    vmdk_close(w);
    return set_error(ENOMEM, "out of memory");
  }
  uint64_t off = 0;
  int r = 0;
  while (r == 0 && off < d->size) {
    struct vmdk_run run;
    if ((r = run_at(d, off, &run)) != 0)
      break;
    uint64_t end = run.offset + run.length;
    if (own(&run) && (run.flags & VMDK_RUN_DATA)) {
      for (uint64_t o = off; r == 0 && o < end; o += COPY_CHUNK) {
        size_t n = end - o < COPY_CHUNK ? (size_t)(end - o) : COPY_CHUNK;
        r = vmdk_pread(d, buf, n, o) || vmdk_pwrite(w, buf, n, o) ||
            progress(cb, opaque, o + n, d->size, d->path);
      }
    } else if (own(&run)) { /* a zeroed grain: hides the parent's data */
      r = vmdk_zero(w, run.length, off);
    }
    if (r == 0)
      r = progress(cb, opaque, end, d->size, d->path);
    off = end;
  }
  free(buf);
  /* The parent's CID changed with its first write: the child follows it,
   * also after a cancel or an error part of the way -- what was copied is
   * data the child itself holds, so the chain still reads the same, and a
   * child left with the old parentCID would no longer open. */
  char msg[1024];
  int err = r != 0 ? vmdk_get_errno() : 0;
  if (r != 0)
    snprintf(msg, sizeof msg, "%s", vmdk_get_error());
  if (vmdk_close(w) != 0)
    return err ? set_error(err, "%s", msg) : -1;
  char *hint = strdup(d->desc->parent_hint);
  int linked = hint ? vmdk_set_backing(d, hint, pformat)
                    : set_error(ENOMEM, "out of memory");
  free(hint);
  return err ? set_error(err, "%s", msg) : linked;
}

int vmdk_rebase(struct vmdk_disk *d, const char *backing, int format,
                vmdk_progress_cb cb, void *opaque) {
  if (!(d->flags & VMDK_OPEN_RDWR))
    return set_error(EROFS, "%s: opened read-only", d->path);
  struct vmdk_disk *nb = NULL;
  if (backing) {
    char *path = NULL;
    if (backing[0] == '/' || strcmp(d->dir, ".") == 0)
      path = strdup(backing);
    else if (asprintf(&path, "%s/%s", d->dir, backing) < 0)
      path = NULL;
    if (!path)
      return set_error(ENOMEM, "out of memory");
    if (disk_confine(d->confine_root, d->path, "backing file", path) == 0)
      nb = disk_open_confined(path, format, d->flags & ~VMDK_OPEN_RDWR,
                              d->confine_root);
    free(path);
    if (!nb)
      return -1;
  }
  uint8_t *a = malloc(COPY_CHUNK), *b = malloc(COPY_CHUNK);
  int r = a && b ? 0 : set_error(ENOMEM, "out of memory");
  /* Compare in grain-sized blocks: a differing block is written whole, so
   * no grain is allocated for an unchanged one. */
  uint64_t block = 65536;
  struct vmdk_info info;
  if (r == 0 && vmdk_get_info(d, &info) == 0 && info.cluster_bytes &&
      info.cluster_bytes <= COPY_CHUNK)
    block = info.cluster_bytes;
  uint64_t off = 0;
  while (r == 0 && off < d->size) {
    struct vmdk_run run;
    if ((r = run_at(d, off, &run)) != 0)
      break;
    uint64_t end = run.offset + run.length;
    for (uint64_t o = off; !own(&run) && r == 0 && o < end;) {
      /* Chunks aligned to blocks, so every write covers whole grains. */
      uint64_t stop = (o / COPY_CHUNK + 1) * COPY_CHUNK;
      if (stop > end)
        stop = end;
      size_t n = (size_t)(stop - o);
      uint64_t nsize = nb ? nb->size : 0;
      size_t have = o >= nsize ? 0 : nsize - o < n ? (size_t)(nsize - o) : n;
      if ((r = vmdk_pread(d, a, n, o)) != 0 ||
          (have && (r = vmdk_pread(nb, b, have, o)) != 0))
        break;
      memset(b + have, 0, n - have);
      for (size_t k = 0; r == 0 && k < n;) {
        size_t m = (size_t)(block - (o + k) % block);
        if (m > n - k)
          m = n - k;
        if (memcmp(a + k, b + k, m) != 0)
          r = vmdk_pwrite(d, a + k, m, o + k);
        k += m;
      }
      if (r == 0)
        r = progress(cb, opaque, stop, d->size, d->path);
      o = stop;
    }
    off = end;
  }
  free(a);
  free(b);
  vmdk_close(nb);
  if (r == 0)
    r = vmdk_flush(d);
  if (r == 0)
    r = vmdk_set_backing(d, backing, format);
  return r;
}

/* Whether D's own data in [OFF, end) has any non-zero byte. */
static int own_data_in(struct vmdk_disk *d, uint64_t off, bool *found) {
  uint8_t *buf = malloc(COPY_CHUNK);
  if (!buf)
    return set_error(ENOMEM, "out of memory");
  *found = false;
  int r = 0;
  while (r == 0 && !*found && off < d->size) {
    struct vmdk_run run;
    if ((r = run_at(d, off, &run)) != 0)
      break;
    uint64_t end = run.offset + run.length;
    if (own(&run) && (run.flags & VMDK_RUN_DATA))
      for (uint64_t o = off; r == 0 && !*found && o < end; o += COPY_CHUNK) {
        size_t n = end - o < COPY_CHUNK ? (size_t)(end - o) : COPY_CHUNK;
        if ((r = vmdk_pread(d, buf, n, o)) == 0)
          *found = buf[0] || memcmp(buf, buf + 1, n - 1) != 0;
      }
    off = end;
  }
  free(buf);
  return r;
}

/* After growing D from OLD to NEW bytes: hide what its backing has there. */
static int expose_zeros(struct vmdk_disk *d, uint64_t old, uint64_t new) {
  if (!d->parent || new <= old || old >= d->parent->size)
    return 0;
  uint64_t end = new < d->parent->size ? new : d->parent->size;
  return vmdk_zero(d, end - old, old);
}

int vmdk_resize(struct vmdk_disk *d, uint64_t size, int allow_shrink) {
  if (!(d->flags & VMDK_OPEN_RDWR))
    return set_error(EROFS, "%s: opened read-only", d->path);
  if (size > UINT64_MAX - SECTOR)
    return set_error(EFBIG, "%s: size %" PRIu64 " is too large", d->path,
                     size);
  size = div_round_up(size, SECTOR) * SECTOR;
  uint64_t old_size = d->size;
  if (size == d->size)
    return 0;
  if (size < d->size) {
    bool data;
    if (!allow_shrink)
      return set_error(EINVAL, "%s: shrinking from %" PRIu64 " to %" PRIu64
                               " bytes cuts off the end of the disk: allow "
                               "it explicitly (--shrink)",
                       d->path, d->size, size);
    if (own_data_in(d, size, &data) != 0)
      return -1;
    if (data)
      return set_error(EINVAL, "%s: cannot shrink to %" PRIu64
                               " bytes: the part cut off holds data",
                       d->path, size);
  }
  if (vmdk_flush(d) != 0)
    return -1;
  struct extent *last = &d->extents[d->n_extents - 1];
  if (d->desc && size > d->size &&
      (strncasecmp(d->desc->create_type, "twoGbMaxExtent", 14) == 0 ||
       strncasecmp(d->desc->create_type, "2GbMaxExtent", 12) == 0))
    return disk_before_write(d) || disk_grow_split(d, size)
               ? -1
               : expose_zeros(d, old_size, size);
  /* Only the last extent changes size. */
  if (size <= last->virt_start)
    return set_error(ENOTSUP, "%s: cannot shrink to %" PRIu64
                              " bytes: that would remove whole extents",
                     d->path, size);
  if (!last->ops->resize || last->access != ACC_RW)
    return set_error(ENOTSUP, "%s: its last extent (%s, %s) cannot be "
                              "resized",
                     d->path, last->path ? last->path : "ZERO",
                     ext_type_name(last->type));
  if (disk_before_write(d) != 0)
    return -1;
  /* The descriptor never gives the extent more than its header holds (an
   * extent whose descriptor gives less opens as the descriptor says: an
   * interrupted resize): when growing, the extent first, then the
   * descriptor; when shrinking, the descriptor first. */
  uint64_t ext_size = size - last->virt_start;
  bool grow = size > d->size;
  if (grow && last->ops->resize(last, ext_size) != 0)
    return -1;
  if (d->desc) {
    uint64_t was = d->desc->extents[d->n_extents - 1].sectors;
    d->desc->extents[d->n_extents - 1].sectors = ext_size / SECTOR;
    if (disk_write_descriptor(d) != 0) {
      d->desc->extents[d->n_extents - 1].sectors = was;
      return -1;
    }
  }
  last->size = ext_size;
  d->size = size;
  if (!grow && last->ops->resize(last, ext_size) != 0)
    return -1;
  /* The part that is new to the disk reads as zeros, also where a larger
   * backing holds data there (or data this disk once hid past a shrink). */
  return expose_zeros(d, old_size, size);
}
