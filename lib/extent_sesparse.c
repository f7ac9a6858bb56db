/* ESXi seSparse extents.  (Being written: refused until then.) */
#include <errno.h>

#include "internal.h"

int sesparse_open(struct extent *e, struct vfile *f) {
  (void)e;
  int r = set_error(ENOTSUP, "%s: seSparse extents are not supported yet", f->path);
  vf_close(f);
  return r;
}
