/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_repair: the disk-level driver of the extents' repair ops.
 *
 * Each extent kind repairs its own metadata (extent_sparse.c, extent_cowd.c
 * say how, and in what order they write); this file only checks that the
 * disk may be written, runs the repairs extent by extent and then a fresh
 * check. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int vmdk_repair(struct vmdk_disk *d, unsigned what,
                struct vmdk_check_result *after, vmdk_problem_cb cb,
                void *opaque) {
  if (what != VMDK_REPAIR_LEAKS && what != VMDK_REPAIR_ALL)
    return set_error(EINVAL, "%s: unknown repair mode %u (%u: leaks, %u: all)",
                     d->path, what, VMDK_REPAIR_LEAKS, VMDK_REPAIR_ALL);
  if (!(d->flags & VMDK_OPEN_RDWR))
    return set_error(EROFS, "%s: the image is open read-only: it cannot be "
                            "repaired",
                     d->path);
  /* The repairs report into a scratch result: the caller gets the counts
   * of the check that follows. */
  struct vmdk_check_result done;
  memset(&done, 0, sizeof done);
  struct check_ctx c = {&done, cb, opaque};
  for (size_t i = 0; i < d->n_extents; i++) {
    struct extent *e = &d->extents[i];
    if (e->access != ACC_RW || !e->ops->repair)
      continue;
    if (e->ops->repair(e, what, &c) != 0)
      return -1;
  }
  return vmdk_check(d, after, NULL, NULL);
}

int range_is_zero(struct vfile *f, uint64_t off, uint64_t len, bool *zero) {
  uint64_t end = off + len < off || off + len > f->size ? f->size : off + len;
  uint8_t *buf = NULL;
  *zero = true;
  while (off < end) {
    bool data = true;
    uint64_t run = 0;
    if (vf_seek_status(f, off, &data, &run) != 0)
      goto fail;
    uint64_t n = run == 0 || run > end - off ? end - off : run;
    if (data) {
      const size_t chunk = 1u << 20;
      if (!buf && !(buf = malloc(chunk))) {
        set_error(ENOMEM, "%s: out of memory", f->path);
        goto fail;
      }
      for (uint64_t at = off; at < off + n;) {
        size_t k = off + n - at < chunk ? (size_t)(off + n - at) : chunk;
        if (vf_pread(f, buf, k, at) != 0)
          goto fail;
        for (size_t i = 0; i < k; i++)
          if (buf[i]) {
            *zero = false;
            free(buf);
            return 0;
          }
        at += k;
      }
    }
    off += n;
  }
  free(buf);
  return 0;
fail:
  free(buf);
  return -1;
}
