/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_convert: copy the virtual disk of one image into a new raw, VMDK or
 * QEMU-format image, leaving holes and zero runs unallocated.
 *
 * The source is read as a whole: a child image is read through its backing
 * chain, so the copy is flattened.  The new image reads as zeros everywhere
 * after vmdk_create(), so only non-zero data is written: runs the source
 * reports as ZERO are skipped without reading, and within DATA runs every
 * target-cluster-sized block that is all zeros is skipped too
 * (copy_nonzero, also used by lib/ova_create.c).
 *
 * With a backing file the new image is a child of it and reads the
 * backing's data from the start; then every target cluster is compared
 * with what the source reads there, and only the clusters that differ are
 * written (copy_difference).
 *
 * Before anything is created, a DST that is a file of the source's chain
 * is refused here, one in the backing file's chain by vmdk_create:
 * creating DST would destroy the data being read.  On any failure every file the new image consists
 * of (vmdk_get_info's extents) is removed. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Bytes read from the source per call; chunks are aligned to this size on
 * the virtual disk, so they are also aligned to every smaller power-of-two
 * cluster size. */
#define CONVERT_CHUNK ((size_t)2 << 20)
/* Zero-detection block when the target has no clusters (raw, flat). */
#define DEFAULT_ZERO_BLOCK ((uint64_t)64 << 10)

/* ---- refusing a DST that is a file being read --------------------------- */

/* Whether the file at PATH is the file DEST_ST describes. */
static bool same_inode(const char *path, const struct stat *dest_st) {
  struct stat st;
  return path && stat(path, &st) == 0 && st.st_dev == dest_st->st_dev &&
         st.st_ino == dest_st->st_ino;
}

/* Refuse (EINVAL) a DEST (described by DEST_ST) that is a file
 * (descriptor or extent) of TOP or of any image in its backing chain;
 * WHAT names TOP in the message ("the source image"). */
static int check_not_layer_file(const char *dest, const struct stat *dest_st,
                                struct vmdk_disk *top, const char *what) {
  for (struct vmdk_disk *d = top; d; d = vmdk_get_backing(d)) {
    struct vmdk_info info;
    if (vmdk_get_info(d, &info) < 0)
      return -1;
    bool hit = same_inode(d->path, dest_st);
    for (size_t i = 0; !hit && i < info.n_extents; i++)
      hit = same_inode(info.extents[i].filename, dest_st);
    if (hit) {
      if (d == top)
        return set_error(EINVAL, "%s: is a file of %s; refusing to overwrite "
                                 "it",
                         dest, what);
      return set_error(EINVAL,
                       "%s: is a file of %s, in the backing chain of %s; "
                       "refusing to overwrite it",
                       dest, d->path, what);
    }
  }
  return 0;
}

/* ---- the copy ------------------------------------------------------------ */

struct copy {
  struct vmdk_disk *src, *dst;
  const char *name;   /* DST, for messages */
  uint64_t size;      /* bytes to copy: the source's virtual size */
  uint64_t block;     /* zero-detection block, a power of two: the target
                         cluster size, at most CHUNK */
  size_t chunk;       /* read size: CONVERT_CHUNK, a multiple of BLOCK */
  bool writethrough;  /* flush after each write */
  vmdk_progress_cb cb;
  void *opaque;
};

/* DONE bytes of the copy are done: tell CB, and stop when it asks to. */
static int progress(const struct copy *cp, uint64_t done) {
  if (cp->cb && cp->cb(cp->opaque, done, cp->size) != 0)
    return set_error(ECANCELED, "%s: cancelled", cp->name);
  return 0;
}

/* Write N bytes of BUF into DST at virtual offset OFF, then flush it when
 * asked to after every write. */
static int put_data(struct copy *cp, const void *buf, size_t n, uint64_t off) {
  if (vmdk_pwrite(cp->dst, buf, n, off) < 0 ||
      (cp->writethrough && vmdk_flush(cp->dst) < 0))
    return -1;
  return 0;
}

/* Write the non-zero BLOCK-aligned pieces of the N bytes in BUF that
 * belong at virtual offset OFF. */
static int write_nonzero(struct copy *cp, const unsigned char *buf,
                         uint64_t off, size_t n) {
  size_t pos = 0, data_start = 0;
  bool in_data = false;
  while (pos < n) {
    uint64_t abs = off + pos;
    size_t piece = (size_t)((abs / cp->block + 1) * cp->block - abs);
    if (piece > n - pos)
      piece = n - pos;
    bool zero = buf_is_zero(buf + pos, piece);
    if (!zero && !in_data) {
      data_start = pos;
      in_data = true;
    } else if (zero && in_data) {
      if (put_data(cp, buf + data_start, pos - data_start, off + data_start) <
          0)
        return -1;
      in_data = false;
    }
    pos += piece;
  }
  if (in_data &&
      put_data(cp, buf + data_start, n - data_start, off + data_start) < 0)
    return -1;
  return 0;
}

/* copy_data's read-ahead: a reader thread walks the source's runs and reads
 * its data into a ring of RING chunk buffers while the calling thread
 * writes the chunks read before, so reading the source (inflating a
 * stream, copying out of the page cache) overlaps writing the target.
 * Items are written in the order they were read: the target is still
 * written front to back, each cluster once.  The two threads use
 * different handles (SRC only in the reader, DST only in the caller).
 * Errors are per thread: the reader's is copied into the struct and set
 * again in the calling thread. */
#define RING 4

struct item {
  uint64_t off, end; /* the virtual range [off, end) it covers */
  bool data;         /* BUF holds end - off bytes read at OFF; else the
                        range is a zero run the target already reads */
  unsigned char *buf;
};

struct reader {
  struct copy *cp;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct item items[RING];
  unsigned char *bufs[RING]; /* CHUNK bytes each */
  uint64_t produced, consumed; /* items; produced - consumed <= RING */
  bool done;                   /* the reader stopped (see FAILED) */
  bool failed;                 /* it stopped on an error: */
  int err;                     /* its errno */
  char msg[1024];              /* and message */
  bool stop;                   /* the writer asks it to stop */
};

/* The reader thread (see above): the copy plan of copy_data. */
static void *read_ahead(void *arg) {
  struct reader *rd = arg;
  struct copy *cp = rd->cp;
  struct run_cursor cur;
  run_cursor_init(&cur, cp->src);
  uint64_t off = 0; /* always a multiple of cp->block (or the size) */
  bool failed = false;
  while (off < cp->size) {
    pthread_mutex_lock(&rd->mu);
    while (rd->produced - rd->consumed == RING && !rd->stop)
      pthread_cond_wait(&rd->cv, &rd->mu);
    bool stop = rd->stop;
    pthread_mutex_unlock(&rd->mu);
    if (stop)
      break;
    struct item *it = &rd->items[rd->produced % RING];
    const struct vmdk_run *r;
    if (run_cursor_at(&cur, off, &r) < 0) {
      failed = true;
      break;
    }
    uint64_t run_end = r->offset + r->length;
    uint64_t zero_end = run_end == cp->size ? run_end
                                            : run_end / cp->block * cp->block;
    if ((r->flags & VMDK_RUN_ZERO) && zero_end > off) {
      /* whole clusters the target already reads as zeros */
      *it = (struct item){off, zero_end, false, NULL};
    } else {
      uint64_t stop_at = (off / cp->chunk + 1) * cp->chunk;
      uint64_t data_end = (run_end + cp->block - 1) / cp->block * cp->block;
      if (!(r->flags & VMDK_RUN_ZERO) && stop_at > data_end)
        stop_at = data_end;
      if (stop_at <= off)
        stop_at = off + cp->block;
      if (stop_at > cp->size)
        stop_at = cp->size;
      *it = (struct item){off, stop_at, true, rd->bufs[rd->produced % RING]};
      if (vmdk_pread(cp->src, it->buf, (size_t)(stop_at - off), off) < 0) {
        failed = true;
        break;
      }
    }
    off = it->end;
    pthread_mutex_lock(&rd->mu);
    rd->produced++;
    pthread_cond_signal(&rd->cv);
    pthread_mutex_unlock(&rd->mu);
  }
  pthread_mutex_lock(&rd->mu);
  rd->done = true;
  rd->failed = failed;
  if (failed) {
    rd->err = vmdk_get_errno();
    snprintf(rd->msg, sizeof rd->msg, "%s", vmdk_get_error());
  }
  pthread_cond_signal(&rd->cv);
  pthread_mutex_unlock(&rd->mu);
  return NULL;
}

/* Copy in windows aligned to the target's cluster (BLOCK), so every write
 * covers whole clusters: each target cluster is written once, in
 * ascending order (what a streamOptimized target needs), and a cluster
 * that the source's runs split is read and written whole.  The source is
 * read ahead by a second thread (struct reader). */
static int copy_data(struct copy *cp) {
  struct reader rd = {.cp = cp};
  int r = 0;
  for (unsigned i = 0; i < RING; i++)
    if (!(rd.bufs[i] = io_alloc(cp->chunk)))
      r = set_error(ENOMEM, "out of memory");
  pthread_t tid;
  bool started = false;
  pthread_mutex_init(&rd.mu, NULL);
  pthread_cond_init(&rd.cv, NULL);
  if (r == 0) {
    int e = pthread_create(&tid, NULL, read_ahead, &rd);
    if (e != 0)
      r = set_error(e, "cannot start the reader thread: %s", strerror(e));
    started = e == 0;
  }
  while (r == 0) {
    pthread_mutex_lock(&rd.mu);
    while (rd.produced == rd.consumed && !rd.done)
      pthread_cond_wait(&rd.cv, &rd.mu);
    bool have = rd.produced != rd.consumed, failed = rd.failed;
    pthread_mutex_unlock(&rd.mu);
    if (failed) { /* done: RD.ERR and RD.MSG stay as they are */
      r = set_error(rd.err, "%s", rd.msg);
      break;
    }
    if (!have)
      break; /* the reader is done and everything is written */
    const struct item *it = &rd.items[rd.consumed % RING];
    if (it->data &&
        write_nonzero(cp, it->buf, it->off, (size_t)(it->end - it->off)) < 0) {
      r = -1;
      break;
    }
    if (progress(cp, it->end) < 0) {
      r = -1;
      break;
    }
    pthread_mutex_lock(&rd.mu);
    rd.consumed++;
    pthread_cond_signal(&rd.cv);
    pthread_mutex_unlock(&rd.mu);
  }
  if (started) {
    pthread_mutex_lock(&rd.mu);
    rd.stop = true;
    pthread_cond_signal(&rd.cv);
    pthread_mutex_unlock(&rd.mu);
    pthread_join(tid, NULL);
  }
  pthread_cond_destroy(&rd.cv);
  pthread_mutex_destroy(&rd.mu);
  for (unsigned i = 0; i < RING; i++)
    free(rd.bufs[i]);
  return r;
}

int copy_nonzero(struct vmdk_disk *src, struct vmdk_disk *dst, uint64_t block,
                 bool writethrough, vmdk_progress_cb cb, void *opaque,
                 const char *name) {
  if (!is_power_of_2(block) || block > CONVERT_CHUNK)
    return set_error(EINVAL, "%s: copy block of %" PRIu64 " bytes (library "
                             "bug)",
                     name, block);
  struct copy cp = {.src = src,
                    .dst = dst,
                    .name = name,
                    .size = vmdk_get_size(src),
                    .block = block,
                    .chunk = CONVERT_CHUNK,
                    .writethrough = writethrough,
                    .cb = cb,
                    .opaque = opaque};
  return copy_data(&cp);
}

/* Write the N bytes at BUF + POS (virtual offset OFF + POS): zeros with
 * vmdk_zero() (a zeroed-grain entry where DST has the flag), else data. */
static int write_piece(struct copy *cp, const unsigned char *buf,
                       uint64_t off, size_t pos, size_t n, bool zero) {
  if (!zero)
    return put_data(cp, buf + pos, n, off + pos);
  if (vmdk_zero(cp->dst, n, off + pos) < 0 ||
      (cp->writethrough && vmdk_flush(cp->dst) < 0))
    return -1;
  return 0;
}

/* With a backing file DST reads it.  Compare, one target cluster (BLOCK)
 * at a time, what the source reads with what DST reads, and write only
 * the clusters that differ; neighbours of the same kind (data, zeros) go
 * in one call.  Ranges that read as zeros in both are skipped unread. */
static int copy_difference(struct copy *cp) {
  unsigned char *buf = io_alloc(cp->chunk), *old = io_alloc(cp->chunk);
  int r = 0;
  if (!buf || !old) {
    r = set_error(ENOMEM, "out of memory");
    goto out;
  }
  struct run_cursor src_cur, dst_cur;
  run_cursor_init(&src_cur, cp->src);
  run_cursor_init(&dst_cur, cp->dst);
  uint64_t off = 0; /* always a multiple of cp->block (or the size) */
  while (r == 0 && off < cp->size) {
    const struct vmdk_run *rs, *rd;
    if ((r = run_cursor_at(&src_cur, off, &rs)) < 0 ||
        (r = run_cursor_at(&dst_cur, off, &rd)) < 0)
      break;
    uint64_t both_end = rs->offset + rs->length;
    if (rd->offset + rd->length < both_end)
      both_end = rd->offset + rd->length;
    uint64_t zero_end = both_end >= cp->size ? cp->size
                                             : both_end / cp->block * cp->block;
    if ((rs->flags & VMDK_RUN_ZERO) && (rd->flags & VMDK_RUN_ZERO) &&
        zero_end > off) {
      off = zero_end;
      r = progress(cp, off);
      continue;
    }
    uint64_t stop = (off / cp->chunk + 1) * cp->chunk;
    if (stop > cp->size)
      stop = cp->size;
    size_t n = (size_t)(stop - off);
    if ((r = vmdk_pread(cp->src, buf, n, off)) < 0 ||
        (r = vmdk_pread(cp->dst, old, n, off)) < 0)
      break;
    size_t pos = 0, start = 0;
    bool pending = false, pending_zero = false;
    while (r == 0 && pos < n) {
      size_t piece = (size_t)(cp->block - (off + pos) % cp->block);
      if (piece > n - pos)
        piece = n - pos;
      bool differs = memcmp(buf + pos, old + pos, piece) != 0;
      bool zero = differs && buf_is_zero(buf + pos, piece);
      if (pending && (!differs || zero != pending_zero)) {
        r = write_piece(cp, buf, off, start, pos - start, pending_zero);
        pending = false;
      }
      if (differs && !pending) {
        start = pos;
        pending = true;
        pending_zero = zero;
      }
      pos += piece;
    }
    if (r == 0 && pending)
      r = write_piece(cp, buf, off, start, n - start, pending_zero);
    off = stop;
    if (r == 0)
      r = progress(cp, off);
  }
out:
  free(buf);
  free(old);
  return r;
}

/* ---- vmdk_convert --------------------------------------------------------- */

/* The files an image consists of, to remove them if the copy fails. */
struct file_list {
  char **paths;
  size_t n;
};

static int file_list_add(struct file_list *l, const char *path) {
  char **p = realloc(l->paths, (l->n + 1) * sizeof *p);
  if (!p)
    return set_error(ENOMEM, "out of memory");
  l->paths = p;
  if (!(l->paths[l->n] = strdup(path)))
    return set_error(ENOMEM, "out of memory");
  l->n++;
  return 0;
}

/* Close D (may be NULL) unfinished and remove the files of L, keeping the
 * error that made the copy fail; a file that cannot be removed is added
 * to its message. */
static void discard_output(struct vmdk_disk *d, const struct file_list *l) {
  char msg[1024];
  int err = vmdk_get_errno();
  snprintf(msg, sizeof msg, "%s", vmdk_get_error());
  /* The output is removed: its pending writes need not be finished. */
  vmdk_close_discard(d);
  for (size_t i = 0; i < l->n; i++) {
    if (unlink(l->paths[i]) < 0 && errno != ENOENT) {
      size_t len = strlen(msg);
      snprintf(msg + len, sizeof msg - len,
               "; %s: could not remove the partial output: %s", l->paths[i],
               strerror(errno));
    }
  }
  set_error(err, "%s", msg);
}

static void file_list_free(struct file_list *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->paths[i]);
  free(l->paths);
}

int vmdk_convert(struct vmdk_disk *src, const char *dst,
                 const struct vmdk_convert_options *opts) {
  struct vmdk_convert_options o = {0};
  if (opts)
    o = *opts;
  else
    o.create.subformat = VMDK_SUBFORMAT_RAW;
  if (!src || !dst || !*dst)
    return set_error(EINVAL, "vmdk_convert: no source or no destination");
  if (o.create.backing_file && !*o.create.backing_file)
    return set_error(EINVAL, "%s: the backing file name is empty", dst);
  uint64_t size = vmdk_get_size(src);

  /* Refused before anything is made: a DST whose creation would destroy
   * data being read (a DST that does not exist yet destroys nothing). */
  struct stat dst_st;
  if (stat(dst, &dst_st) == 0 &&
      check_not_layer_file(dst, &dst_st, src, "the source image") < 0)
    return -1;
  /* (A DST in the chain of create.backing_file: vmdk_create refuses it,
   * before it makes any file.) */

  struct vmdk_create_options co = o.create;
  co.size_bytes = size;
  unsigned flags = o.flags & ~VMDK_OPEN_RDWR;
  struct vmdk_disk *d = o.qemu_format
                            ? vmdk_create_qemu(dst, o.qemu_format, &co, flags)
                            : vmdk_create(dst, &co, flags);
  if (!d)
    return -1;

  /* From here on, failure removes every file of the new image. */
  struct file_list created = {NULL, 0};
  struct vmdk_info info = {0};
  int r = file_list_add(&created, dst);
  if (r == 0)
    r = vmdk_get_info(d, &info);
  for (size_t i = 0; r == 0 && i < info.n_extents; i++)
    if (info.extents[i].filename)
      r = file_list_add(&created, info.extents[i].filename);
  if (r == 0 && vmdk_get_size(d) < size)
    r = set_error(EIO,
                  "%s: the new image has %" PRIu64 " bytes, less than the "
                  "%" PRIu64 " bytes of %s (library bug)",
                  dst, vmdk_get_size(d), size, src->path);
  if (r == 0) {
    /* Skipping zero pieces finer than a cluster allocates the same
     * clusters (any non-zero byte allocates its cluster anyway) and writes
     * less, so clusters larger than a chunk are checked a chunk at a
     * time. */
    uint64_t block = info.cluster_bytes ? info.cluster_bytes
                                        : DEFAULT_ZERO_BLOCK;
    if (block > CONVERT_CHUNK || !is_power_of_2(block))
      block = CONVERT_CHUNK;
    struct copy cp = {.src = src,
                      .dst = d,
                      .name = dst,
                      .size = size,
                      .block = block,
                      .chunk = CONVERT_CHUNK,
                      .writethrough = o.writethrough != 0,
                      .cb = o.progress,
                      .opaque = o.opaque};
    /* A first report once DST exists, before any copying. */
    r = progress(&cp, 0);
    if (r == 0)
      r = co.backing_file ? copy_difference(&cp) : copy_data(&cp);
    if (r == 0) {
      r = vmdk_close(d);
      d = NULL;
      /* A last report once DST is complete: cancelling it still removes
       * the new image. */
      if (r == 0)
        r = progress(&cp, size);
    }
  }
  if (r != 0)
    discard_output(d, &created);
  file_list_free(&created);
  return r == 0 ? 0 : -1;
}
