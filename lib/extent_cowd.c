/* ESXi COWD extents.  (Being written: refused until then.) */
#include <errno.h>

#include "internal.h"

int cowd_open(struct extent *e, struct vfile *f) {
  (void)e;
  int r = set_error(ENOTSUP, "%s: COWD extents are not supported yet", f->path);
  vf_close(f);
  return r;
}
