/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-vmdkit-plugin: serve any VMDK (or raw) image over NBD.
 *
 *   nbdkit vmdkit file=disk.vmdk [format=vmdk|raw] [confine=true|false]
 *                                [salvage=true|false] [remote-option=K=V]
 *
 * A thin adapter over include/vmdkit.h.  Contracts:
 *  - Paths of extents and backing files are confined to the image's folder
 *    unless confine=false (the server hands images to others).
 *  - Read-only connections each get their own handle, so many clients read
 *    in parallel.  Writable connections share one handle (two writers on one
 *    file through separate caches would corrupt it), serialised by a mutex.
 *  - Every flush bumps a generation; a read-only handle that sees a newer
 *    generation reopens itself before its next request, so after a flush on
 *    any connection every connection reads what was written: multi-conn is
 *    safe.
 *  - Images that cannot be written (stream, seSparse, RDONLY extents)
 *    advertise no write, zero or trim.
 *  - Library errors reach the client as their errno and nbdkit's log as the
 *    library's one-line message.
 *  - A truncated streamOptimized image (no footer, grains cut off) is
 *    refused at startup with the library's message, unless salvage=true:
 *    then what its markers give is served, the rest as zeros, every
 *    connection read-only, and what is missing is printed as a warning. */
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#include <nbdkit-plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmdkit.h"

static char *file;
static int format = VMDK_FORMAT_AUTO;
static bool confine = true;
static bool salvage = false;      /* VMDK_OPEN_SALVAGE, read-only */
static bool read_only_image;      /* a writable open failed with EROFS (a
                                    disk in an OVA): every handle reads */

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vmdk_disk *shared;  /* the writable handle, or NULL */
static unsigned shared_users;     /* connections using it */
static unsigned long generation;  /* bumped by every flush (shared_lock) */

struct handle {
  bool writable;                  /* uses `shared` under shared_lock */
  pthread_mutex_t lock;           /* read-only: guards disk */
  struct vmdk_disk *disk;         /* read-only: this connection's own */
  unsigned long seen;             /* generation DISK was opened at */
};

static unsigned open_flags(bool writable) {
  return (writable ? VMDK_OPEN_RDWR : 0) | (confine ? VMDK_OPEN_CONFINE : 0) |
         (salvage ? VMDK_OPEN_SALVAGE : 0);
}

static int fail(void) {
  nbdkit_error("%s", vmdk_get_error());
  errno = vmdk_get_errno() ? vmdk_get_errno() : EIO;
  return -1;
}

static void vmdkit_unload(void) {
  free(file);
}

static int vmdkit_config(const char *key, const char *value) {
  if (strcmp(key, "file") == 0) {
    free(file);
    /* a URL (http, https, ssh, file+nbd) is the library's to read */
    file = strstr(value, "://") ? strdup(value) : nbdkit_absolute_path(value);
    return file ? 0 : -1;
  }
  if (strcmp(key, "remote-option") == 0) { /* KEY=VALUE, as the CLI's */
    const char *eq = strchr(value, '=');
    char k[80];
    if (!eq || eq == value || (size_t)(eq - value) >= sizeof k) {
      nbdkit_error("remote-option=%s: expected remote-option=KEY=VALUE",
                   eq ? "..." : value);
      return -1;
    }
    snprintf(k, sizeof k, "%.*s", (int)(eq - value), value);
    if (vmdk_remote_option(k, eq + 1) != 0) {
      nbdkit_error("remote-option: %s", vmdk_get_error());
      return -1;
    }
    return 0;
  }
  if (strcmp(key, "format") == 0) {
    if (strcmp(value, "vmdk") == 0)
      format = VMDK_FORMAT_VMDK;
    else if (strcmp(value, "raw") == 0)
      format = VMDK_FORMAT_RAW;
    else {
      nbdkit_error("format=%s: expected vmdk or raw", value);
      return -1;
    }
    return 0;
  }
  if (strcmp(key, "confine") == 0) {
    int b = nbdkit_parse_bool(value);
    if (b < 0)
      return -1;
    confine = b;
    return 0;
  }
  if (strcmp(key, "salvage") == 0) {
    int b = nbdkit_parse_bool(value);
    if (b < 0)
      return -1;
    salvage = b;
    return 0;
  }
  nbdkit_error("unknown parameter '%s' (file, format, confine, salvage, "
               "remote-option)",
               key);
  return -1;
}

static int vmdkit_config_complete(void) {
  if (!file) {
    nbdkit_error("the file=DISK.vmdk parameter is required");
    return -1;
  }
  return 0;
}

/* Refuse to start on an image that does not open (a truncated stream
 * without salvage=true); say what a stream that is not whole misses. */
static int vmdkit_get_ready(void) {
  struct vmdk_disk *d = vmdk_open_format(file, format, open_flags(false));
  if (!d)
    return fail();
  for (struct vmdk_disk *l = d; l; l = vmdk_get_backing(l)) {
    struct vmdk_info info;
    if (vmdk_get_info(l, &info) != 0) {
      fail();
      vmdk_close(d);
      return -1;
    }
    for (size_t i = 0; i < info.n_extents; i++)
      if (info.extents[i].stream_damage)
        fprintf(stderr, "nbdkit: vmdkit: warning: %s: %s%s\n",
                info.extents[i].filename, info.extents[i].stream_damage,
                strcmp(info.extents[i].stream, "truncated") == 0
                    ? "; the rest reads as zeros"
                    : "");
  }
  vmdk_close(d);
  return 0;
}

static void *vmdkit_open(int readonly) {
  struct handle *h = calloc(1, sizeof *h);
  if (!h) {
    nbdkit_error("out of memory");
    return NULL;
  }
  pthread_mutex_init(&h->lock, NULL);
  if (readonly || salvage || read_only_image) { /* salvage: never written */
  read_only:
    pthread_mutex_lock(&shared_lock);
    h->seen = generation;
    pthread_mutex_unlock(&shared_lock);
    h->disk = vmdk_open_format(file, format, open_flags(false));
    if (!h->disk) {
      fail();
      free(h);
      return NULL;
    }
    return h;
  }
  h->writable = true;
  pthread_mutex_lock(&shared_lock);
  if (!shared && !(shared = vmdk_open_format(file, format, open_flags(true)))) {
    pthread_mutex_unlock(&shared_lock);
    if (vmdk_get_errno() == EROFS) {
      /* A disk inside an OVA (or on a read-only file system): served
       * read-only, as nbdkit's file plugin does. */
      read_only_image = true;
      h->writable = false;
      goto read_only;
    }
    fail();
    free(h);
    return NULL;
  }
  shared_users++;
  pthread_mutex_unlock(&shared_lock);
  return h;
}

static void vmdkit_close(void *handle) {
  struct handle *h = handle;
  if (h->writable) {
    pthread_mutex_lock(&shared_lock);
    if (--shared_users == 0) {
      if (vmdk_close(shared) != 0)
        nbdkit_error("%s", vmdk_get_error());
      shared = NULL;
    }
    pthread_mutex_unlock(&shared_lock);
  } else {
    vmdk_close(h->disk);
  }
  pthread_mutex_destroy(&h->lock);
  free(h);
}

/* Take the handle's disk for one request; returns it locked. */
static struct vmdk_disk *take(struct handle *h) {
  if (h->writable) {
    pthread_mutex_lock(&shared_lock);
    return shared;
  }
  pthread_mutex_lock(&h->lock);
  pthread_mutex_lock(&shared_lock);
  unsigned long g = generation;
  pthread_mutex_unlock(&shared_lock);
  if (g != h->seen) { /* a flush happened: drop every cached table */
    struct vmdk_disk *d = vmdk_open_format(file, format, open_flags(false));
    if (d) {
      vmdk_close(h->disk);
      h->disk = d;
      h->seen = g;
    }
  }
  return h->disk;
}

static void give(struct handle *h) {
  pthread_mutex_unlock(h->writable ? &shared_lock : &h->lock);
}

static int64_t vmdkit_get_size(void *handle) {
  struct handle *h = handle;
  int64_t size = (int64_t)vmdk_get_size(take(h));
  give(h);
  return size;
}

/* Whether every extent of the image takes writes. */
static int vmdkit_can_write(void *handle) {
  struct handle *h = handle;
  if (!h->writable)
    return 0;
  struct vmdk_disk *d = take(h);
  struct vmdk_info info;
  int ok = vmdk_get_info(d, &info) == 0;
  for (size_t i = 0; ok && i < info.n_extents; i++) {
    const struct vmdk_extent_info *x = &info.extents[i];
    if (x->compressed || strcmp(x->type, "SESPARSE") == 0 ||
        strcmp(x->access, "RW") != 0)
      ok = 0;
  }
  give(h);
  return ok;
}

static int vmdkit_can_multi_conn(void *handle) {
  (void)handle;
  return 1; /* see the generation rule at the top */
}

static int vmdkit_can_flush(void *handle) {
  (void)handle;
  return 1;
}

static int vmdkit_can_extents(void *handle) {
  (void)handle;
  return 1;
}

static int vmdkit_can_fast_zero(void *handle) {
  (void)handle;
  return 1;
}

static int vmdkit_thread_model(void) {
  return NBDKIT_THREAD_MODEL_PARALLEL;
}

static int vmdkit_pread(void *handle, void *buf, uint32_t count,
                        uint64_t offset, uint32_t flags) {
  (void)flags;
  struct handle *h = handle;
  int r = vmdk_pread(take(h), buf, count, offset);
  give(h);
  return r ? fail() : 0;
}

static int flush_locked(struct vmdk_disk *d) {
  /* Called with shared_lock held (writable handles only). */
  if (vmdk_flush(d) != 0)
    return -1;
  generation++;
  return 0;
}

static int vmdkit_pwrite(void *handle, const void *buf, uint32_t count,
                         uint64_t offset, uint32_t flags) {
  struct handle *h = handle;
  struct vmdk_disk *d = take(h);
  int r = vmdk_pwrite(d, buf, count, offset);
  if (r == 0 && (flags & NBDKIT_FLAG_FUA))
    r = flush_locked(d);
  give(h);
  return r ? fail() : 0;
}

static int vmdkit_zero(void *handle, uint32_t count, uint64_t offset,
                       uint32_t flags) {
  struct handle *h = handle;
  struct vmdk_disk *d = take(h);
  int r;
  if ((flags & NBDKIT_FLAG_FAST_ZERO) && vmdk_get_backing(d)) {
    /* Over a backing file zeroing may copy grains: not fast. */
    give(h);
    errno = ENOTSUP;
    return -1;
  }
  r = vmdk_zero(d, count, offset);
  if (r == 0 && (flags & NBDKIT_FLAG_FUA))
    r = flush_locked(d);
  give(h);
  return r ? fail() : 0;
}

/* Trim: vmdk_zero deallocates (or punches) what the format allows. */
static int vmdkit_trim(void *handle, uint32_t count, uint64_t offset,
                       uint32_t flags) {
  return vmdkit_zero(handle, count, offset, flags & ~NBDKIT_FLAG_FAST_ZERO);
}

static int vmdkit_flush(void *handle, uint32_t flags) {
  (void)flags;
  struct handle *h = handle;
  struct vmdk_disk *d = take(h);
  int r = h->writable ? flush_locked(d) : 0;
  give(h);
  return r ? fail() : 0;
}

struct extents_ctx {
  struct nbdkit_extents *extents;
  bool one;
  int err;
};

static int add_run(void *opaque, const struct vmdk_run *run) {
  struct extents_ctx *c = opaque;
  uint32_t type = (run->flags & VMDK_RUN_DATA ? 0 : NBDKIT_EXTENT_HOLE) |
                  (run->flags & VMDK_RUN_ZERO ? NBDKIT_EXTENT_ZERO : 0);
  if (nbdkit_add_extent(c->extents, run->offset, run->length, type) != 0) {
    c->err = 1;
    return 1;
  }
  return c->one;
}

static int vmdkit_extents(void *handle, uint32_t count, uint64_t offset,
                          uint32_t flags, struct nbdkit_extents *extents) {
  struct handle *h = handle;
  struct extents_ctx c = {extents, (flags & NBDKIT_FLAG_REQ_ONE) != 0, 0};
  int r = vmdk_block_status(take(h), offset, count, add_run, &c);
  give(h);
  if (r)
    return fail();
  return c.err ? -1 : 0;
}

static struct nbdkit_plugin plugin = {
    .name = "vmdkit",
    .version = VMDKIT_VERSION_STRING,
    .longname = "vmdkit VMDK plugin",
    .description = "Serve VMware VMDK images (every subformat, backing "
                   "chains) and raw files",
    .unload = vmdkit_unload,
    .config = vmdkit_config,
    .config_complete = vmdkit_config_complete,
    .config_help = "file=<DISK>     (required) the image: a .vmdk descriptor "
                   "or monolithic file, or raw\n"
                   "format=vmdk|raw  skip probing\n"
                   "confine=true|false  refuse extent/backing paths outside "
                   "the image's folder (default true)\n"
                   "salvage=true|false  serve a truncated streamOptimized "
                   "image (refused\n"
                   "                    by default): the grains its markers "
                   "give, the rest as\n"
                   "                    zeros, read-only (default false)\n"
                   "remote-option=KEY=VALUE  for a URL in file= (http, https, "
                   "ssh, file+nbd):\n"
                   "                    user, password=+FILE, cookie, header, "
                   "sslverify, ... (repeatable)",
    .magic_config_key = "file",
    .get_ready = vmdkit_get_ready,
    .thread_model = vmdkit_thread_model,
    .open = vmdkit_open,
    .close = vmdkit_close,
    .get_size = vmdkit_get_size,
    .can_write = vmdkit_can_write,
    .can_flush = vmdkit_can_flush,
    .can_trim = vmdkit_can_write,
    .can_zero = vmdkit_can_write,
    .can_fast_zero = vmdkit_can_fast_zero,
    .can_extents = vmdkit_can_extents,
    .can_multi_conn = vmdkit_can_multi_conn,
    .pread = vmdkit_pread,
    .pwrite = vmdkit_pwrite,
    .flush = vmdkit_flush,
    .trim = vmdkit_trim,
    .zero = vmdkit_zero,
    .extents = vmdkit_extents,
    .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN(plugin)
