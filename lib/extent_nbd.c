/* SPDX-License-Identifier: BSD-3-Clause */
/* NBD extents: a disk of one extent served over NBD, through libnbd.
 *
 *  - An nbd:// or nbd+unix:// URI opens as a read-only disk (as qemu-img
 *    reads an NBD export: raw), so convert, compare and info take URIs.
 *  - An image in a format QEMU reads (qcow2, vhdx, vpc, vdi, qed, ...) is
 *    served by a private qemu-nbd that libnbd starts with systemd socket
 *    activation, as nbdcopy does: a Unix socket libnbd made, no TCP port,
 *    no temporary file.  qemu-nbd exits when the handle disconnects (close
 *    waits for it, so its writes are on the file when close returns).  Its
 *    stderr goes to an anonymous memory file (memfd), so its own message
 *    can be passed on in one line when a call fails.
 *
 * The server's base:allocation block status lets convert skip holes and
 * zeros.  Writes (qemu-nbd images opened read-write) go out as NBD writes,
 * zeroing as NBD write-zeroes requests, flush as NBD flush. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

bool nbd_uri_like(const char *path) {
  return strncmp(path, "nbd://", 6) == 0 || strncmp(path, "nbds://", 7) == 0 ||
         strncmp(path, "nbd+unix://", 11) == 0 ||
         strncmp(path, "nbds+unix://", 12) == 0;
}

/* ---- running QEMU's tools ---------------------------------------------- */

int qemu_find_tool(const char *tool, const char *image) {
  const char *path = getenv("PATH");
  if (!path || !*path)
    path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *p = path; *p;) {
    size_t n = strcspn(p, ":");
    char full[PATH_MAX];
    if (n > 0 && snprintf(full, sizeof full, "%.*s/%s", (int)n, p, tool) <
                     (int)sizeof full &&
        access(full, X_OK) == 0)
      return 0;
    p += n;
    if (*p == ':')
      p++;
  }
  return set_error(ENOENT, "%s: %s is not installed (not found on PATH); it "
                           "comes with the Debian package qemu-utils",
                   image, tool);
}

int qemu_last_line(int fd, char *buf, size_t cap) {
  buf[0] = '\0';
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0)
    return -1;
  size_t want = st.st_size < 4096 ? (size_t)st.st_size : 4096;
  char tail[4097];
  ssize_t got = pread(fd, tail, want, st.st_size - (off_t)want);
  if (got <= 0)
    return -1;
  tail[got] = '\0';
  /* The last line that is not blank, without a "qemu-nbd: " prefix. */
  char *end = tail + got;
  while (end > tail && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
    *--end = '\0';
  char *line = end;
  while (line > tail && line[-1] != '\n')
    line--;
  for (const char *pre = "qemu-nbd: "; strncmp(line, pre, strlen(pre)) == 0;)
    line += strlen(pre);
  if (!*line)
    return -1;
  snprintf(buf, cap, "%s", line);
  return 0;
}

#ifdef HAVE_LIBNBD
#include <libnbd.h>

#define NBD_CHUNK (16u << 20)        /* below every server's maximum request */
#define NBD_ZERO_CHUNK (1ull << 30)  /* write-zeroes: 32-bit lengths */

struct nbd {
  struct nbd_handle *h;
  char *uri;          /* URI or image path, for messages */
  bool status;        /* the server answers base:allocation */
  bool writable;      /* a qemu-nbd image opened read-write */
  bool unsafe;        /* VMDK_OPEN_UNSAFE: flush sends nothing */
  bool written;       /* written since the last flush */
  int errfd;          /* qemu-nbd's stderr (a memfd), or -1 */
};

static int nbd_fail(struct nbd *n, const char *what) {
  int err = nbd_get_errno();
  char qmsg[1024];
  if (n->errfd >= 0 && qemu_last_line(n->errfd, qmsg, sizeof qmsg) == 0)
    return set_error(err ? err : EIO, "%s: %s: qemu-nbd: %s", n->uri, what,
                     qmsg);
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

static int refuse_write(struct nbd *n) {
  return set_error(EROFS, "%s: %s", n->uri,
                   n->errfd >= 0 ? "opened read-only"
                                 : "NBD exports are opened read-only");
}

static int nbdx_pwrite(struct extent *e, const void *buf, size_t len,
                       uint64_t off) {
  struct nbd *n = e->priv;
  if (!n->writable)
    return refuse_write(n);
  const uint8_t *p = buf;
  while (len > 0) {
    size_t k = len < NBD_CHUNK ? len : NBD_CHUNK;
    if (nbd_pwrite(n->h, p, k, off, 0) == -1)
      return nbd_fail(n, "write");
    n->written = true;
    p += k;
    off += k;
    len -= k;
  }
  return 0;
}

/* NBD write-zeroes without NO_HOLE: the server may punch (qcow2: zero or
 * unallocated clusters), nothing is sent but the request. */
static int nbdx_zero(struct extent *e, uint64_t len, uint64_t off) {
  struct nbd *n = e->priv;
  if (!n->writable)
    return refuse_write(n);
  while (len > 0) {
    uint64_t k = len < NBD_ZERO_CHUNK ? len : NBD_ZERO_CHUNK;
    if (nbd_zero(n->h, k, off, 0) == -1)
      return nbd_fail(n, "write zeroes");
    n->written = true;
    off += k;
    len -= k;
  }
  return 0;
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
      run->flags = (c.flags & LIBNBD_STATE_HOLE)
                       ? VMDK_RUN_ZERO
                       : VMDK_RUN_PRESENT | VMDK_RUN_ZERO;
  }
  return 0;
}

static int nbdx_flush(struct extent *e) {
  struct nbd *n = e->priv;
  if (!n->writable || !n->written || n->unsafe)
    return 0;
  if (nbd_flush(n->h, 0) == -1)
    return nbd_fail(n, "flush");
  n->written = false;
  return 0;
}

static void nbd_free(struct nbd *n) {
  if (!n)
    return;
  if (n->h)
    nbd_close(n->h); /* waits for a qemu-nbd it started */
  if (n->errfd >= 0)
    close(n->errfd);
  free(n->uri);
  free(n);
}

static int nbdx_close(struct extent *e) {
  struct nbd *n = e->priv;
  int r = 0;
  if (n) {
    /* qemu-nbd writes back its caches when the client leaves; a failure
     * then is in its stderr. */
    if (nbd_shutdown(n->h, 0) == -1 && n->writable)
      r = nbd_fail(n, "disconnect");
    nbd_free(n);
    e->priv = NULL;
  }
  return r;
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

static struct nbd *nbd_new(const char *name) {
  struct nbd *n = calloc(1, sizeof *n);
  if (!n || !(n->uri = strdup(name))) {
    free(n);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  n->errfd = -1;
  n->h = nbd_create();
  if (!n->h) {
    set_error(ENOMEM, "%s: %s", name, nbd_get_error());
    nbd_free(n);
    return NULL;
  }
  if (nbd_add_meta_context(n->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1) {
    nbd_fail(n, "cannot connect");
    nbd_free(n);
    return NULL;
  }
  return n;
}

/* After the connection is made: the size, block status, the ops. */
static int nbd_connected(struct extent *e, struct nbd *n, uint64_t *size) {
  int64_t sz = nbd_get_size(n->h);
  if (sz < 0) {
    int r = nbd_fail(n, "cannot connect");
    nbd_free(n);
    return r;
  }
  n->status = nbd_can_meta_context(n->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  *size = (uint64_t)sz;
  e->ops = &nbd_ops;
  e->priv = n;
  return 0;
}

int nbd_extent_open(struct extent *e, const char *uri, bool writable,
                    uint64_t *size) {
  if (writable)
    return set_error(EROFS, "%s: NBD exports are opened read-only", uri);
  struct nbd *n = nbd_new(uri);
  if (!n)
    return -1;
  if (nbd_connect_uri(n->h, uri) == -1) {
    int r = nbd_fail(n, "cannot connect");
    nbd_free(n);
    return r;
  }
  return nbd_connected(e, n, size);
}

int qemu_extent_open(struct extent *e, const char *path, const char *format,
                     unsigned flags, uint64_t *size) {
  bool writable = (flags & VMDK_OPEN_RDWR) != 0;
  if (qemu_find_tool("qemu-nbd", path) != 0)
    return -1;
  /* An absolute name: qemu would read "proto:..." and "json:{...}" names
   * as options. */
  char abs[PATH_MAX];
  if (!realpath(path, abs))
    return set_error(errno, "%s: %s", path, strerror(errno));
  struct nbd *n = nbd_new(path);
  if (!n)
    return -1;
  n->writable = writable;
  n->unsafe = (flags & VMDK_OPEN_UNSAFE) != 0;
  /* qemu-nbd's stderr: a memfd it inherits (through sh, which puts it on
   * fd 2 and execs qemu-nbd: the pid socket activation names stays). */
  int mfd = memfd_create("qemu-nbd-stderr", 0);
  int fd = mfd >= 0 ? fcntl(mfd, F_DUPFD, 10) : -1;
  if (mfd >= 0)
    close(mfd);
  if (fd < 0) {
    int r = set_error(errno, "%s: cannot make a buffer for qemu-nbd's "
                             "messages: %s",
                      path, strerror(errno));
    nbd_free(n);
    return r;
  }
  n->errfd = fd;
  char script[80];
  snprintf(script, sizeof script, "exec qemu-nbd \"$@\" 2>>/proc/self/fd/%d", fd);
  const char *cache = (flags & VMDK_OPEN_NOCACHE)  ? "--cache=none"
                      : (flags & VMDK_OPEN_UNSAFE) ? "--cache=unsafe"
                                                   : "--cache=writeback";
  char *argv[12];
  size_t i = 0;
  argv[i++] = (char *)"sh";
  argv[i++] = (char *)"-c";
  argv[i++] = script;
  argv[i++] = (char *)"qemu-nbd";
  argv[i++] = (char *)"-f";
  argv[i++] = (char *)format;
  argv[i++] = (char *)cache;
  if (!writable)
    argv[i++] = (char *)"--read-only";
  else
    argv[i++] = (char *)"--discard=unmap";
  argv[i++] = (char *)"--";
  argv[i++] = abs;
  argv[i] = NULL;
  int r = nbd_connect_systemd_socket_activation(n->h, argv);
  fcntl(fd, F_SETFD, FD_CLOEXEC); /* no later child inherits it */
  if (r == -1) {
    int err = nbd_get_errno();
    char qmsg[1024];
    if (qemu_last_line(fd, qmsg, sizeof qmsg) == 0)
      r = set_error(err ? err : EIO, "%s: qemu-nbd -f %s: %s", path, format,
                    qmsg);
    else
      r = nbd_fail(n, "cannot start qemu-nbd");
    nbd_free(n);
    return r;
  }
  return nbd_connected(e, n, size);
}

#else

int nbd_extent_open(struct extent *e, const char *uri, bool writable,
                    uint64_t *size) {
  (void)e;
  (void)writable;
  (void)size;
  return set_error(ENOTSUP, "%s: vmdkit was built without libnbd", uri);
}

int qemu_extent_open(struct extent *e, const char *path, const char *format,
                     unsigned flags, uint64_t *size) {
  (void)e;
  (void)format;
  (void)flags;
  (void)size;
  return set_error(ENOTSUP, "%s: vmdkit was built without libnbd (needed to "
                            "read QEMU formats through qemu-nbd)",
                   path);
}

#endif
