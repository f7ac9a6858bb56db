/* SPDX-License-Identifier: BSD-3-Clause */
/* NBD sources: an nbd:// or nbd+unix:// URI opens, through libnbd, as a
 * read-only disk of one extent (as qemu-img reads an NBD export: raw), so
 * convert, compare and info take URIs; the server's base:allocation block
 * status lets convert skip holes and zeros. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool nbd_uri_like(const char *path) {
  return strncmp(path, "nbd://", 6) == 0 || strncmp(path, "nbds://", 7) == 0 ||
         strncmp(path, "nbd+unix://", 11) == 0 ||
         strncmp(path, "nbds+unix://", 12) == 0;
}

#ifdef HAVE_LIBNBD
#include <libnbd.h>

#define NBD_CHUNK (16u << 20) /* below every server's maximum request */

struct nbd {
  struct nbd_handle *h;
  char *uri;
  bool status;        /* the server answers base:allocation */
};

static int nbd_fail(struct nbd *n, const char *what) {
  int err = nbd_get_errno();
  return set_error(err ? err : EIO, "%s: %s: %s", n->uri, what,
                   nbd_get_error() ? nbd_get_error() : "failed");
}

static int nbdx_pread(struct extent *e, void *buf, size_t len, uint64_t off) {
  struct nbd *n = e->priv;
  uint8_t *p = buf;
  while (len > 0) {
    size_t k = len < NBD_CHUNK ? len : NBD_CHUNK;
    if (nbd_pread(n->h, p, k, off, 0) == -1)
      return nbd_fail(n, "read");
    p += k;
    off += k;
    len -= k;
  }
  return 0;
}

static int nbdx_pwrite(struct extent *e, const void *buf, size_t len,
                       uint64_t off) {
  struct nbd *n = e->priv;
  (void)buf;
  (void)len;
  (void)off;
  return set_error(EROFS, "%s: NBD exports are opened read-only", n->uri);
}

static int nbdx_zero(struct extent *e, uint64_t len, uint64_t off) {
  return nbdx_pwrite(e, NULL, (size_t)len, off);
}

struct status_ctx {
  uint64_t off;
  uint64_t len;      /* of the first run */
  uint32_t flags;
  bool got;
};

static int status_cb(void *opaque, const char *ctx, uint64_t off,
                     uint32_t *entries, size_t n, int *error) {
  struct status_ctx *c = opaque;
  (void)error;
  if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 || c->got || n < 2 ||
      off != c->off)
    return 0;
  c->len = entries[0];
  c->flags = entries[1];
  /* Merge following entries of the same kind. */
  for (size_t i = 2; i + 1 < n && entries[i + 1] == c->flags; i += 2)
    c->len += entries[i];
  c->got = true;
  return 0;
}

static int nbdx_status(struct extent *e, uint64_t off, uint64_t len,
                       struct vmdk_run *run) {
  struct nbd *n = e->priv;
  run->file_offset = -1;
  run->file = NULL;
  run->length = len;
  run->flags = VMDK_RUN_PRESENT | VMDK_RUN_DATA;
  if (!n->status)
    return 0; /* the server cannot tell: all data */
  uint64_t ask = len < ((uint64_t)1 << 31) ? len : ((uint64_t)1 << 31);
  struct status_ctx c = {.off = off};
  nbd_extent_callback cb = {.callback = status_cb, .user_data = &c};
  if (nbd_block_status(n->h, ask, off, cb, 0) == -1)
    return nbd_fail(n, "block status");
  if (c.got && c.len > 0) {
    run->length = c.len < len ? c.len : len;
    if (c.flags & LIBNBD_STATE_ZERO)
      run->flags = VMDK_RUN_PRESENT | VMDK_RUN_ZERO;
  }
  return 0;
}

static int nbdx_flush(struct extent *e) {
  (void)e;
  return 0;
}

static int nbdx_close(struct extent *e) {
  struct nbd *n = e->priv;
  if (n) {
    nbd_shutdown(n->h, 0);
    nbd_close(n->h);
    free(n->uri);
    free(n);
  }
  return 0;
}

static const struct extent_ops nbd_ops = {
    .name = "nbd",
    .pread = nbdx_pread,
    .pwrite = nbdx_pwrite,
    .zero = nbdx_zero,
    .status = nbdx_status,
    .flush = nbdx_flush,
    .close = nbdx_close,
};

int nbd_extent_open(struct extent *e, const char *uri, bool writable,
                    uint64_t *size) {
  if (writable)
    return set_error(EROFS, "%s: NBD exports are opened read-only", uri);
  struct nbd *n = calloc(1, sizeof *n);
  if (!n || !(n->uri = strdup(uri))) {
    free(n);
    return set_error(ENOMEM, "out of memory");
  }
  n->h = nbd_create();
  if (!n->h) {
    int r = set_error(ENOMEM, "%s: %s", uri, nbd_get_error());
    free(n->uri);
    free(n);
    return r;
  }
  int64_t sz;
  if (nbd_add_meta_context(n->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      nbd_connect_uri(n->h, uri) == -1 || (sz = nbd_get_size(n->h)) < 0) {
    int r = nbd_fail(n, "cannot connect");
    nbd_close(n->h);
    free(n->uri);
    free(n);
    return r;
  }
  n->status = nbd_can_meta_context(n->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  *size = (uint64_t)sz;
  e->ops = &nbd_ops;
  e->priv = n;
  return 0;
}

#else

int nbd_extent_open(struct extent *e, const char *uri, bool writable,
                    uint64_t *size) {
  (void)e;
  (void)writable;
  (void)size;
  return set_error(ENOTSUP, "%s: vmdkit was built without libnbd", uri);
}

#endif
