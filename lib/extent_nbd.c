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

bool tool_on_path(const char *tool) {
  const char *path = getenv("PATH");
  if (!path || !*path)
    path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *p = path; *p;) {
    size_t n = strcspn(p, ":");
    char full[PATH_MAX];
    if (n > 0 && snprintf(full, sizeof full, "%.*s/%s", (int)n, p, tool) <
                     (int)sizeof full &&
        access(full, X_OK) == 0)
      return true;
    p += n;
    if (*p == ':')
      p++;
  }
  return false;
}

int qemu_find_tool(const char *tool, const char *image) {
  if (tool_on_path(tool))
    return 0;
  return set_error(ENOENT, "%s: %s is not installed (not found on PATH); it "
                           "comes with the Debian package qemu-utils",
                   image, tool);
}

ssize_t child_stderr_tail(int fd, char *buf, size_t cap) {
  struct stat st;
  if (fd < 0 || cap < 2 || fstat(fd, &st) != 0 || st.st_size <= 0)
    return -1;
  size_t want = (uint64_t)st.st_size < cap - 1 ? (size_t)st.st_size : cap - 1;
  ssize_t got = pread(fd, buf, want, st.st_size - (off_t)want);
  if (got <= 0)
    return -1;
  buf[got] = '\0';
  return got;
}

int qemu_last_line(int fd, char *buf, size_t cap) {
  buf[0] = '\0';
  char tail[4097];
  ssize_t got = child_stderr_tail(fd, tail, sizeof tail);
  if (got <= 0)
    return -1;
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
#define READ_PIECE (512u << 10)      /* a large read goes out in pieces of */
#define READ_PIECES 8                /* this size, up to this many at once */
#define WRITE_DEPTH 4                /* writes and zeroes in flight at most */

/* A write or write-zeroes request in flight, in slot SLOT of N (its range,
 * so that a later request that overlaps it waits for it: NBD does not
 * order requests in flight; the copy of the caller's bytes it sends). */
struct nbd;
struct wreq {
  struct nbd *n;
  unsigned slot;
};

struct nbd {
  struct nbd_handle *h;
  char *uri;          /* URI or image path, for messages */
  bool status;        /* the server answers base:allocation */
  bool writable;      /* a qemu-nbd image opened read-write */
  bool unsafe;        /* VMDK_OPEN_UNSAFE: flush sends nothing */
  bool written;       /* written since the last flush */
  int errfd;          /* qemu-nbd's stderr (a memfd), or -1 */
  /* Writes go out asynchronously, WRITE_DEPTH at most in flight, so
   * sending one overlaps the server writing the one before.  A failure is
   * kept (sticky): every later write, zero, flush and close fails with it,
   * and a read or block status reports it, since what was written may be
   * lost. */
  struct {
    uint64_t off, len;
    bool busy;
    void *buf;        /* the copy of the bytes it sends; kept for reuse */
    size_t cap;       /* bytes allocated at BUF */
  } slots[WRITE_DEPTH];
  int werr;           /* errno of the first failed write, or 0 */
  uint64_t werr_off, werr_len;
  /* The extents of the last block status reply, covering [st_start,
   * st_end): later queries inside it need no round trip.  Emptied by every
   * write. */
  uint64_t st_start, st_end;
  uint64_t *st_len;
  uint32_t *st_flags;
  size_t st_n, st_cap;
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

/* The kept write failure, if any, as the error. */
static int write_error(struct nbd *n) {
  if (!n->werr)
    return 0;
  char qmsg[1024];
  if (n->errfd >= 0 && qemu_last_line(n->errfd, qmsg, sizeof qmsg) == 0)
    return set_error(n->werr, "%s: write of %" PRIu64 " bytes at offset %" PRIu64
                              " failed: qemu-nbd: %s",
                     n->uri, n->werr_len, n->werr_off, qmsg);
  return set_error(n->werr, "%s: write of %" PRIu64 " bytes at offset %" PRIu64
                            " failed: %s",
                   n->uri, n->werr_len, n->werr_off, strerror(n->werr));
}

/* Wait until at most MAX commands are in flight. */
static int wait_in_flight(struct nbd *n, int max) {
  while (nbd_aio_in_flight(n->h) > max)
    if (nbd_poll(n->h, -1) == -1)
      return nbd_fail(n, "wait for the server");
  return 0;
}

/* Every write sent was answered, and none failed. */
static int drain(struct nbd *n) {
  if (n->writable && wait_in_flight(n, 0) != 0)
    return -1;
  return write_error(n);
}

static int nbdx_pread(struct extent *e, void *buf, size_t len, uint64_t off) {
  struct nbd *n = e->priv;
  if (drain(n) != 0)
    return -1;
  uint8_t *p = buf;
  int r = 0;
  while (len > 0 && r == 0) {
    /* Up to READ_PIECES pieces in flight: the server reads them in
     * parallel.  Every piece sent is waited for, also after a failure
     * (they write into BUF). */
    int64_t cookie[READ_PIECES];
    size_t k = 0;
    while (len > 0 && k < READ_PIECES) {
      size_t piece = len < READ_PIECE ? len : READ_PIECE;
      int64_t c = nbd_aio_pread(n->h, p, piece, off, NBD_NULL_COMPLETION, 0);
      if (c == -1) {
        r = nbd_fail(n, "read");
        break;
      }
      cookie[k++] = c;
      p += piece;
      off += piece;
      len -= piece;
    }
    for (size_t i = 0; i < k; i++) {
      int done;
      while ((done = nbd_aio_command_completed(n->h, (uint64_t)cookie[i])) ==
             0)
        if (nbd_poll(n->h, -1) == -1) {
          done = -1;
          break;
        }
      if (done == -1 && r == 0)
        r = nbd_fail(n, "read");
    }
  }
  return r;
}

static int refuse_write(struct nbd *n) {
  return set_error(EROFS, "%s: %s", n->uri,
                   n->errfd >= 0 ? "opened read-only"
                                 : "NBD exports are opened read-only");
}

static int write_done(void *opaque, int *error) {
  struct wreq *w = opaque;
  struct nbd *n = w->n;
  if (*error && !n->werr) {
    n->werr = *error;
    n->werr_off = n->slots[w->slot].off;
    n->werr_len = n->slots[w->slot].len;
  }
  n->slots[w->slot].busy = false;
  return 1; /* retire the command */
}

static void write_free(void *opaque) {
  free(opaque);
}

/* Send a write of LEN bytes of BUF (NULL: write-zeroes) at OFF, not
 * waiting for the answer: in a free slot, after the requests in flight that
 * overlap it.  BUF is copied. */
static int send_write(struct nbd *n, const void *buf, uint64_t len,
                      uint64_t off) {
  if (write_error(n) != 0)
    return -1;
  n->st_n = 0; /* the cached block status may be stale now */
  n->st_start = n->st_end = 0;
  for (unsigned i = 0; i < WRITE_DEPTH; i++)
    if (n->slots[i].busy && off < n->slots[i].off + n->slots[i].len &&
        n->slots[i].off < off + len) {
      if (wait_in_flight(n, 0) != 0 || write_error(n) != 0)
        return -1;
      break;
    }
  unsigned slot = WRITE_DEPTH;
  for (;;) {
    for (unsigned i = 0; i < WRITE_DEPTH && slot == WRITE_DEPTH; i++)
      if (!n->slots[i].busy)
        slot = i;
    if (slot < WRITE_DEPTH)
      break;
    if (nbd_poll(n->h, -1) == -1)
      return nbd_fail(n, "wait for the server");
  }
  if (write_error(n) != 0)
    return -1;
  if (buf && n->slots[slot].cap < len) {
    /* Buffers are kept: fresh pages for every request cost a fault each. */
    void *b = realloc(n->slots[slot].buf, len);
    if (!b)
      return set_error(ENOMEM, "out of memory");
    n->slots[slot].buf = b;
    n->slots[slot].cap = len;
  }
  struct wreq *w = calloc(1, sizeof *w);
  if (!w)
    return set_error(ENOMEM, "out of memory");
  if (buf)
    memcpy(n->slots[slot].buf, buf, len);
  w->n = n;
  w->slot = slot;
  n->slots[slot].off = off;
  n->slots[slot].len = len;
  n->slots[slot].busy = true;
  nbd_completion_callback cb = {
      .callback = write_done, .user_data = w, .free = write_free};
  /* libnbd calls .free also when the request cannot be sent */
  int64_t c = buf ? nbd_aio_pwrite(n->h, n->slots[slot].buf, len, off, cb, 0)
                  : nbd_aio_zero(n->h, len, off, cb, 0);
  if (c == -1) {
    n->slots[slot].busy = false;
    return nbd_fail(n, buf ? "write" : "write zeroes");
  }
  n->written = true;
  return 0;
}

static int nbdx_pwrite(struct extent *e, const void *buf, size_t len,
                       uint64_t off) {
  struct nbd *n = e->priv;
  if (!n->writable)
    return refuse_write(n);
  const uint8_t *p = buf;
  while (len > 0) {
    size_t k = len < NBD_CHUNK ? len : NBD_CHUNK;
    if (send_write(n, p, k, off) != 0)
      return -1;
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
    if (send_write(n, NULL, k, off) != 0)
      return -1;
    off += k;
    len -= k;
  }
  return 0;
}

struct status_ctx {
  struct nbd *n;
  uint64_t off, end; /* the range asked */
  bool got;
};

/* Keep the extents of the reply (clipped to the range asked). */
static int status_cb(void *opaque, const char *ctx, uint64_t off,
                     uint32_t *entries, size_t count, int *error) {
  struct status_ctx *c = opaque;
  struct nbd *n = c->n;
  (void)error;
  if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 || c->got ||
      count < 2 || off != c->off)
    return 0;
  size_t want = count / 2;
  if (want > n->st_cap) {
    uint64_t *l = realloc(n->st_len, want * sizeof *l);
    if (l)
      n->st_len = l;
    uint32_t *f = l ? realloc(n->st_flags, want * sizeof *f) : NULL;
    if (f)
      n->st_flags = f;
    if (!l || !f)
      want = n->st_cap; /* keep what fits; at least one is needed */
    else
      n->st_cap = want;
  }
  if (want == 0)
    return 0;
  uint64_t pos = off;
  size_t m = 0;
  for (size_t i = 0; i < want && pos < c->end; i++) {
    uint64_t l = entries[2 * i];
    if (l == 0)
      break;
    if (l > c->end - pos)
      l = c->end - pos;
    n->st_len[m] = l;
    n->st_flags[m] = entries[2 * i + 1];
    m++;
    pos += l;
  }
  if (m == 0)
    return 0;
  n->st_n = m;
  n->st_start = off;
  n->st_end = pos;
  c->got = true;
  return 0;
}

/* The run at OFF from the cached reply: its length (merging the following
 * extents of the same kind, at most LEN) and flags.  False when OFF is not
 * in the cache. */
static bool status_cached(struct nbd *n, uint64_t off, uint64_t len,
                          uint64_t *run_len, uint32_t *flags) {
  if (n->st_n == 0 || off < n->st_start || off >= n->st_end)
    return false;
  uint64_t pos = n->st_start;
  size_t i = 0;
  while (pos + n->st_len[i] <= off) /* terminates: off < st_end */
    pos += n->st_len[i++];
  *flags = n->st_flags[i];
  uint64_t l = pos + n->st_len[i] - off;
  for (i++; i < n->st_n && n->st_flags[i] == *flags && l < len; i++)
    l += n->st_len[i];
  *run_len = l < len ? l : len;
  return true;
}

static int nbdx_status(struct extent *e, uint64_t off, uint64_t len,
                       struct vmdk_run *run) {
  struct nbd *n = e->priv;
  run->file_offset = -1;
  run->file = NULL;
  run->length = len;
  run->flags = VMDK_RUN_PRESENT | VMDK_RUN_DATA;
  if (drain(n) != 0)
    return -1;
  if (!n->status)
    return 0; /* the server cannot tell: all data */
  uint64_t run_len;
  uint32_t flags;
  if (!status_cached(n, off, len, &run_len, &flags)) {
    uint64_t ask = len < ((uint64_t)1 << 31) ? len : ((uint64_t)1 << 31);
    struct status_ctx c = {.n = n, .off = off, .end = off + ask};
    nbd_extent_callback cb = {.callback = status_cb, .user_data = &c};
    if (nbd_block_status(n->h, ask, off, cb, 0) == -1)
      return nbd_fail(n, "block status");
    if (!c.got || !status_cached(n, off, len, &run_len, &flags))
      return 0; /* no usable answer: data */
  }
  run->length = run_len;
  if (flags & LIBNBD_STATE_ZERO)
    run->flags = (flags & LIBNBD_STATE_HOLE)
                     ? VMDK_RUN_ZERO
                     : VMDK_RUN_PRESENT | VMDK_RUN_ZERO;
  return 0;
}

static int nbdx_flush(struct extent *e) {
  struct nbd *n = e->priv;
  if (!n->writable)
    return 0;
  if (drain(n) != 0)
    return -1;
  if (!n->written || n->unsafe)
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
  free(n->st_len);
  free(n->st_flags);
  for (unsigned i = 0; i < WRITE_DEPTH; i++)
    free(n->slots[i].buf);
  free(n->uri);
  free(n);
}

static int nbdx_close(struct extent *e) {
  struct nbd *n = e->priv;
  int r = 0;
  if (n) {
    /* Every write answered (a failure is the close's); qemu-nbd writes
     * back its caches when the client leaves, a failure then is in its
     * stderr. */
    if (n->writable && drain(n) != 0)
      r = -1;
    if (nbd_shutdown(n->h, 0) == -1 && n->writable && r == 0)
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
  /* glibc serves a request buffer of 128 KiB or more with a fresh mmap
   * and unmaps it when freed: qemu-nbd then faults in every page of every
   * request (1.2 GiB of faults to write a 1.2 GiB image; qemu-img reuses
   * its buffers).  A higher threshold keeps them on its heap, reused:
   * -30 to -50% of the time of VMDK -> qcow2 (bench case 8c). */
  char script[192];
  snprintf(script, sizeof script,
           "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864 "
           "exec qemu-nbd \"$@\" 2>>/proc/self/fd/%d",
           fd);
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
