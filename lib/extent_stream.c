/* streamOptimized extents.  (Being written: refused until then.) */
#include <errno.h>
#include <inttypes.h>

#include "internal.h"

int stream_open(struct extent *e, struct vfile *f, const uint8_t hdr[SECTOR]) {
  (void)e;
  int r = set_error(ENOTSUP, "%s: compressed (streamOptimized) sparse extents "
                             "are not supported yet (flags 0x%" PRIx32 ")",
                    f->path, le32(hdr + 8));
  vf_close(f);
  return r;
}

int stream_create(struct vfile *f, uint64_t capacity_sectors,
                  uint32_t grain_sectors, const char *descriptor) {
  (void)capacity_sectors;
  (void)grain_sectors;
  (void)descriptor;
  return set_error(ENOTSUP, "%s: streamOptimized images cannot be created yet",
                   f->path);
}
