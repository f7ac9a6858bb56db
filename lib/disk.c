/* SPDX-License-Identifier: BSD-3-Clause */
/* The disk: a descriptor and its extents laid end to end.
 *
 * Maps virtual byte ranges onto (extent, offset) pieces and calls the
 * extent's ops; refuses writes before touching any file when any piece of
 * the range cannot be written; writes a new CID before the first change
 * after an open, as VMware does. */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "ova.h"

#define MAX_DESCRIPTOR_FILE (1u << 20)


/* ---- helpers ---------------------------------------------------------- */

static uint32_t random_cid(uint32_t avoid) {
  uint32_t v = 0;
  do {
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
      v ^= (uint32_t)getpid() * 2654435761u + (uint32_t)rand();
  } while (v == NO_CID || v == 0xfffffffeu || v == avoid);
  return v;
}

static char *path_join(const char *dir, const char *name) {
  if (name[0] == '/' || strcmp(dir, ".") == 0)
    return strdup(name);
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static char *dir_of(const char *path) {
  char *copy = strdup(path);
  if (!copy)
    return NULL;
  char *d = strdup(dirname(copy));
  free(copy);
  return d;
}

/* Path confinement (VMDK_OPEN_CONFINE), for images from untrusted hands:
 * every extent and backing file must resolve -- after "..", symbolic links
 * and absolute names -- inside the real folder of the image the caller
 * opened.  For a chain every layer is held to the TOP image's folder (a
 * parent in a subfolder is fine; "../base.vmdk" is refused), so the one
 * folder a server was pointed at holds everything it may read.  The check
 * comes before the open, so a refused file is never opened (opening a FIFO
 * or a device can have effects of its own).  A symlinked image folder is
 * fine: the root is the folder's real path.  What is guarded against is
 * what the image's files say; someone swapping files in the folder
 * between the check and the open is not. */

/* Whether the real path REAL lies in the real folder ROOT (or is ROOT). */
static bool path_inside(const char *root, const char *real) {
  size_t n = strlen(root);
  if (strcmp(root, "/") == 0)
    return real[0] == '/';
  return strncmp(real, root, n) == 0 && (real[n] == '/' || real[n] == '\0');
}

int disk_confine(const char *root, const char *image, const char *what,
                 const char *path) {
  if (!root)
    return 0;
  char real[PATH_MAX];
  if (!realpath(path, real)) {
    if (errno != ENOENT)
      return set_error(errno, "%s: cannot resolve %s %s: %s", image, what,
                       path, strerror(errno));
    /* Missing: where would it be?  Its folder must resolve inside too
     * (when the folder is missing as well, the open fails: nothing to
     * follow).  A dangling symbolic link is refused as missing here: the
     * open would follow it wherever it points once the target appears. */
    struct stat st;
    if (lstat(path, &st) == 0)
      return set_error(ENOENT, "%s: %s %s is a symbolic link to a file that "
                               "does not exist",
                       image, what, path);
    char *copy = strdup(path);
    if (!copy)
      return set_error(ENOMEM, "out of memory");
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    bool ok = realpath(dirname(copy), dir) != NULL;
    free(copy);
    if (!ok)
      return 0;
    if (snprintf(real, sizeof real, "%s/%s", strcmp(dir, "/") ? dir : "",
                 base) >= (int)sizeof real)
      return set_error(ENAMETOOLONG, "%s: %s %s: %s", image, what, path,
                       strerror(ENAMETOOLONG));
  }
  if (!path_inside(root, real))
    return set_error(EPERM, "%s: %s %s resolves to %s, outside the image's "
                            "folder %s (refused: the image is opened "
                            "confined to its folder)",
                     image, what, path, real, root);
  return 0;
}

static int confine(struct vmdk_disk *d, const char *what, const char *path) {
  if (!(d->flags & OPEN_REMOTE))
    return disk_confine(d->confine_root, d->path, what, path);
  if (!d->confine_root || url_inside(d->confine_root, path))
    return 0;
  return set_error(EPERM, "%s: %s %s is outside the image's folder %s "
                          "(refused: a remote image's files are held to "
                          "its folder; --remote-option confine=no lifts "
                          "this)",
                   d->path, what, path, d->confine_root);
}

/* The file NAME that D's descriptor names: relative to D's folder, or to
 * its URL (the query string kept).  NULL (error set) on failure. */
static char *disk_file(const struct vmdk_disk *d, const char *name) {
  char *p = d->flags & OPEN_REMOTE ? url_resolve(d->path, name)
                                   : path_join(d->dir, name);
  if (!p && !(d->flags & OPEN_REMOTE))
    set_error(ENOMEM, "out of memory");
  return p;
}

static void free_extents(struct vmdk_disk *d) {
  for (size_t i = 0; i < d->n_extents; i++) {
    struct extent *e = &d->extents[i];
    if (e->ops)
      e->ops->close(e);
    free(e->path);
    free(e->display);
  }
  free(d->extents);
  d->extents = NULL;
  d->n_extents = 0;
}

static void disk_free(struct vmdk_disk *d) {
  if (!d)
    return;
  vmdk_close(d->parent);
  d->parent = NULL;
  free_extents(d);
  desc_free(d->desc);
  free(d->info_extents);
  free(d->path);
  free(d->display);
  free(d->dir);
  free(d->confine_root);
  tar_close(d->archive);
  free(d->qemu_format);
  free(d);
}

/* NOACCESS extents, of any type: the file is never opened (it may be a
 * device the user cannot read, or absent); reads, writes and block status
 * of the range are refused with EACCES. */
static int noaccess_refuse(struct extent *e, uint64_t off) {
  struct vmdk_disk *d = e->disk;
  return set_error(EACCES, "%s: cannot access offset %" PRIu64 ": extent %zu "
                           "(%s) is NOACCESS",
                   d->path, e->virt_start + off, (size_t)(e - d->extents),
                   e->path ? e->path : "ZERO");
}
static int noaccess_pread(struct extent *e, void *buf, size_t len,
                          uint64_t off) {
  (void)buf;
  (void)len;
  return noaccess_refuse(e, off);
}
static int noaccess_pwrite(struct extent *e, const void *buf, size_t len,
                           uint64_t off) {
  (void)buf;
  (void)len;
  return noaccess_refuse(e, off);
}
static int noaccess_zero(struct extent *e, uint64_t len, uint64_t off) {
  (void)len;
  return noaccess_refuse(e, off);
}
static int noaccess_status(struct extent *e, uint64_t off, uint64_t len,
                           struct vmdk_run *run) {
  (void)len;
  (void)run;
  return noaccess_refuse(e, off);
}
static int noaccess_nothing(struct extent *e) {
  (void)e;
  return 0;
}
static const struct extent_ops noaccess_ops = {
    .name = "noaccess",
    .pread = noaccess_pread,
    .pwrite = noaccess_pwrite,
    .zero = noaccess_zero,
    .status = noaccess_status,
    .flush = noaccess_nothing,
    .close = noaccess_nothing,
};

/* Open extent I of the descriptor.  F0 is the already-open KDMV file for
 * an embedded descriptor's first extent (its name is ignored: the file may
 * have been renamed), or NULL. */
static int open_extent(struct vmdk_disk *d, size_t i, struct vfile **f0,
                       uint64_t start) {
  const struct desc_extent *x = &d->desc->extents[i];
  struct extent *e = &d->extents[i];
  e->disk = d;
  e->virt_start = start;
  e->size = x->sectors * SECTOR;
  e->access = x->access;
  e->type = x->type;
  if (x->access == ACC_NOACCESS && !(i == 0 && *f0)) {
    if (x->filename && !(e->path = disk_file(d, x->filename)))
      return -1;
    e->ops = &noaccess_ops;
    return 0;
  }
  if (x->type == EXT_ZERO)
    return zero_extent_open(e);
  /* FLAT/VMFS: the extent's last byte must be a file offset (off_t), or
   * offsets would wrap onto other bytes of the file. */
  if ((x->type == EXT_FLAT || x->type == EXT_VMFS) &&
      (x->offset > (uint64_t)INT64_MAX / SECTOR ||
       e->size > (uint64_t)INT64_MAX - x->offset * SECTOR))
    return set_error(EFBIG, "%s: extent %zu (%s): offset %" PRIu64
                            " sectors plus size %" PRIu64
                            " sectors ends past the largest file offset "
                            "(2^63 bytes)",
                     d->path, i, x->filename, x->offset, x->sectors);

  /* VMware marks the extent of an exported stream RDONLY; appending to a
   * stream is still what the user asks for when opening it for writing. */
  if (i == 0 && d->desc_embedded && x->type == EXT_SPARSE &&
      x->access == ACC_RDONLY &&
      strcasecmp(d->desc->create_type, "streamOptimized") == 0)
    e->access = ACC_RW;
  bool writable = (d->flags & VMDK_OPEN_RDWR) && e->access == ACC_RW;
  struct vfile *f;
  if (i == 0 && *f0) {
    f = *f0;
    *f0 = NULL;
    e->path = strdup(f->path);
  } else {
    e->path = disk_file(d, x->filename);
    if (!e->path)
      return -1;
    if (confine(d, "extent file", e->path) != 0)
      return -1;
    f = d->archive ? disk_archive_file(d, e->path, writable)
                   : vf_open(e->path, writable, d->flags);
    if (!f) {
      /* vf_open's reason, without its "PATH: " prefix */
      char why[512];
      size_t n = strlen(e->path);
      const char *msg = vmdk_get_error();
      snprintf(why, sizeof why, "%s",
               strncmp(msg, e->path, n) == 0 && strncmp(msg + n, ": ", 2) == 0
                   ? msg + n + 2
                   : strerror(vmdk_get_errno()));
      return set_error(vmdk_get_errno(), "%s: extent %zu: cannot open %s: %s",
                       d->path, i, e->path, why);
    }
  }
  if (!e->path) {
    vf_close(f);
    return set_error(ENOMEM, "out of memory");
  }
  if (writable) { /* the new CID goes before the first change (a kind
                     may take the hook over to add its own) */
    f->before_write = extent_first_write;
    f->hook_opaque = e;
  }
  switch (x->type) {
  case EXT_FLAT:
  case EXT_VMFS:
    return flat_open(e, f, x->offset * SECTOR);
  case EXT_SPARSE:
    return sparse_open(e, f);
  case EXT_VMFSSPARSE:
    return cowd_open(e, f);
  case EXT_SESPARSE:
    return sesparse_open(e, f);
  default:
    vf_close(f);
    return set_error(ENOTSUP, "%s: extent %zu (%s) has type %s, which is not "
                              "supported yet",
                     d->path, i, x->filename, ext_type_name(x->type));
  }
}

static int open_extents(struct vmdk_disk *d, struct vfile **f0) {
  d->extents = calloc(d->desc->n_extents, sizeof *d->extents);
  if (!d->extents)
    return set_error(ENOMEM, "out of memory");
  d->n_extents = d->desc->n_extents;
  uint64_t start = 0;
  for (size_t i = 0; i < d->n_extents; i++) {
    if (open_extent(d, i, f0, start) != 0)
      return -1;
    /* At most 2^63 - 1 bytes: what off_t, NBD and QEMU can address. */
    if (add_overflow_u64(start, d->extents[i].size, &start) ||
        start > (uint64_t)INT64_MAX)
      return set_error(EFBIG, "%s: the extents add up to more than 2^63 - 1 "
                              "bytes (at extent %zu), the largest disk size",
                       d->path, i);
  }
  d->size = start;
  return 0;
}

static struct vmdk_disk *disk_new(const char *path, unsigned flags) {
  struct vmdk_disk *d = calloc(1, sizeof *d);
  if (!d || !(d->path = strdup(path)) || !(d->dir = dir_of(path))) {
    disk_free(d);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  d->flags = flags;
  if ((flags & OPEN_REMOTE) && !(d->display = secret_scrubbed(path))) {
    disk_free(d);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  return d;
}

static int open_raw(struct vmdk_disk *d, struct vfile *f) {
  d->raw = true;
  d->extents = calloc(1, sizeof *d->extents);
  if (!d->extents) {
    vf_close(f);
    return set_error(ENOMEM, "out of memory");
  }
  d->n_extents = 1;
  struct extent *e = d->extents;
  e->disk = d;
  e->size = f->size;
  e->access = ACC_RW;
  e->type = EXT_FLAT;
  e->path = strdup(f->path);
  if (!e->path) {
    vf_close(f);
    return set_error(ENOMEM, "out of memory");
  }
  d->size = f->size;
  return flat_open(e, f, 0);
}

static int read_descriptor_file(struct vfile *f, char **text, size_t *len) {
  if (f->size > MAX_DESCRIPTOR_FILE)
    return set_error(EFBIG, "%s: descriptor file of %s is too large (at most "
                            "%s)",
                     f->path, human_size(f->size),
                     human_size(MAX_DESCRIPTOR_FILE));
  char *t = malloc(f->size + 1);
  if (!t)
    return set_error(ENOMEM, "out of memory");
  if (vf_pread(f, t, f->size, 0) != 0) {
    free(t);
    return -1;
  }
  t[f->size] = '\0';
  *text = t;
  *len = f->size;
  return 0;
}

/* A COWD (vmfsSparse) file opened directly: a one-extent disk whose
 * descriptor is made up from the header (numSectors).  An old-style child
 * (no root flag) names its parent in the header: that becomes the parent
 * hint.  Takes *F. */
static int open_bare_cowd(struct vmdk_disk *d, struct vfile **f) {
  uint8_t hdr[32 + 1024] = {0}; /* up to the end of parentFileName */
  size_t n = (*f)->size < sizeof hdr ? (size_t)(*f)->size : sizeof hdr;
  if (vf_pread(*f, hdr, n, 0) != 0)
    return -1;
  const char *base = strrchr(d->path, '/');
  base = base ? base + 1 : d->path;
  struct descriptor *desc = calloc(1, sizeof *desc);
  if (!desc || !(desc->create_type = strdup("vmfsSparse"))) {
    desc_free(desc);
    return set_error(ENOMEM, "out of memory");
  }
  d->desc = desc;
  desc->version = 1;
  desc->cid = NO_CID;
  desc->parent_cid = NO_CID;
  if (desc_add_extent(desc, ACC_RW, le32(hdr + 12), EXT_VMFSSPARSE, base, 0,
                      false) != 0)
    return -1;
  if (!(le32(hdr + 8) & 0x1u) && hdr[32] != '\0' &&
      !(desc->parent_hint = strndup((const char *)hdr + 32, 1024)))
    return set_error(ENOMEM, "out of memory");
  d->desc_embedded = true;
  d->desc_none = true;
  return open_extents(d, f);
}

/* Make the new handle D (path and flags set, nothing opened) a raw disk of
 * one NBD extent: the NBD URI D->path (QEMU_FORMAT NULL: read-only,
 * libnbd connects), or the image D->path in the QEMU format QEMU_FORMAT
 * (a qemu-nbd libnbd starts; writable with VMDK_OPEN_RDWR).  A QEMU image
 * is refused confined: qemu-nbd follows the backing and data file names
 * in it unchecked. */
static int open_nbd_into(struct vmdk_disk *d, const char *qemu_format) {
  if (qemu_format && (d->flags & VMDK_OPEN_CONFINE))
    return set_error(EPERM, "%s: a %s image is not opened confined to its "
                            "folder (qemu-nbd would follow the backing and "
                            "data file names in it unchecked)",
                     d->path, qemu_format);
  if (!(d->extents = calloc(1, sizeof *d->extents)) ||
      !(d->extents[0].path = strdup(d->path)) ||
      (qemu_format && !(d->qemu_format = strdup(qemu_format))))
    return set_error(ENOMEM, "out of memory");
  d->raw = true;
  d->n_extents = 1;
  struct extent *e = d->extents;
  e->disk = d;
  bool rw = (d->flags & VMDK_OPEN_RDWR) != 0;
  e->access = qemu_format && rw ? ACC_RW : ACC_RDONLY;
  e->type = EXT_FLAT;
  if ((qemu_format ? qemu_extent_open(e, d->path, qemu_format, d->flags,
                                      &e->size)
                   : nbd_extent_open(e, d->path, rw, &e->size)) != 0)
    return -1;
  d->size = e->size;
  return 0;
}

/* ---- open / close ----------------------------------------------------- */

static int open_on(struct vmdk_disk *d, struct vfile *f, int format);

/* One image of a chain; the caller opens its parent. */
static struct vmdk_disk *open_one(const char *path, int format,
                                  unsigned flags, const char *root) {
  struct vmdk_disk *d = disk_new(path, flags);
  if (!d)
    return NULL;
  if (root && !(d->confine_root = strdup(root))) {
    disk_free(d);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  bool rw = (flags & VMDK_OPEN_RDWR) != 0;
  struct vfile *f = vf_open(path, rw, flags);
  if (!f || open_on(d, f, format) != 0) {
    disk_free(d);
    return NULL;
  }
  return d;
}

/* Open the image in F (PATH's file, opened as D's flags say) into the new
 * handle D.  Takes F; on failure D is left for the caller to free. */
static int open_on(struct vmdk_disk *d, struct vfile *f, int format) {
  const char *path = d->path;
  uint8_t magic[64] = {0};
  if (vf_pread(f, magic, f->size < sizeof magic ? f->size : sizeof magic, 0))
    goto fail_f;

  if (format == VMDK_FORMAT_AUTO && le32(magic) != 0x564d444bu &&
      le32(magic) != 0x44574f43u && !desc_looks_like(magic, sizeof magic)) {
    /* Not a VMDK: a format QEMU reads (through qemu-nbd), else raw. */
    const char *qemu = qemu_probe(f);
    if (qemu && (d->flags & OPEN_REMOTE)) {
      set_error(ENOTSUP, "%s: a %s image: only VMDK and raw files are read "
                         "remotely (qemu-img reads %s over http and ssh "
                         "itself)",
                path, qemu, qemu);
      goto fail_f;
    }
    if (qemu) {
      vf_close(f);
      return open_nbd_into(d, qemu);
    }
  }
  if (format == VMDK_FORMAT_RAW ||
      (format == VMDK_FORMAT_AUTO && le32(magic) != 0x564d444bu &&
       le32(magic) != 0x44574f43u && !desc_looks_like(magic, sizeof magic)))
    return open_raw(d, f);

  char *text = NULL;
  size_t len = 0;
  if (le32(magic) == 0x564d444bu) { /* "KDMV": sparse, embedded descriptor */
    if (sparse_read_embedded_descriptor(f, &text, &len) != 0) {
      stream_explain_cut(f, magic, sizeof magic); /* a stream cut short */
      goto fail_f;
    }
    if (text && len == 0) { /* all NULs: QEMU's split extents reserve one */
      free(text);
      text = NULL;
    }
    d->desc_embedded = true;
  } else if (le32(magic) == 0x44574f43u) { /* "COWD": a bare vmfsSparse */
    if (open_bare_cowd(d, &f) != 0)
      goto fail_f;
    return 0;
  } else if (desc_looks_like(magic, sizeof magic)) {
    if (read_descriptor_file(f, &text, &len) != 0)
      goto fail_f;
    vf_close(f);
    f = NULL;
  } else {
    set_error(EINVAL, "%s: not a VMDK: no KDMV or COWD magic and no "
                      "\"# Disk DescriptorFile\" line",
              path);
    goto fail_f;
  }

  if (text) {
    d->desc = desc_parse(text, len, path);
    free(text);
    if (!d->desc)
      goto fail_f;
  } else {
    set_error(ENOTSUP, "%s: sparse file without an embedded descriptor: open "
                       "the descriptor file that names it",
              path);
    goto fail_f;
  }
  if (d->desc_embedded && d->desc->extents[0].type != EXT_SPARSE) {
    set_error(EINVAL, "%s: embedded descriptor's first extent is %s, not "
                      "SPARSE",
              path, ext_type_name(d->desc->extents[0].type));
    goto fail_f;
  }
  if (open_extents(d, &f) != 0)
    goto fail_f;
  return 0;

fail_f:
  vf_close(f);
  return -1;
}



/* The images of a chain opened so far: loops are refused by file identity
 * (a renamed or linked file is the same file), depth is bounded. */
#define MAX_CHAIN 64
struct chain {
  const char *top; /* the image the caller opened, for messages */
  const char *root; /* VMDK_OPEN_CONFINE: the top image's real folder */
  unsigned n;
  dev_t dev[MAX_CHAIN + 1];
  ino_t ino[MAX_CHAIN + 1];
  const char *url[MAX_CHAIN + 1]; /* remote: the layers' (normalised) URLs,
                                     alive while the chain is opened */
};

static struct vmdk_disk *open_layer(const char *path, int format,
                                    unsigned flags, struct chain *ch,
                                    const char *child);

/* Open D's parent, named by parentFileNameHint relative to D's folder, and
 * check that it is the image D was made on (its CID). */
static int open_parent(struct vmdk_disk *d, struct chain *ch) {
  struct descriptor *desc = d->desc;
  if (d->flags & VMDK_OPEN_NO_BACKING)
    return 0; /* the caller asked for this image alone */
  if (!desc || !desc->parent_hint || !*desc->parent_hint) {
    if (desc && desc->parent_cid != NO_CID && !d->raw)
      return set_error(EINVAL, "%s: has parentCID %08" PRIx32
                               " but names no parent (no "
                               "parentFileNameHint)",
                       d->path, desc->parent_cid);
    return 0;
  }
  if (ch->n >= MAX_CHAIN)
    return set_error(ELOOP, "%s: the backing chain has more than %d images "
                            "(%s is number %u)",
                     ch->top, MAX_CHAIN, d->path, ch->n);
  char *ppath = disk_file(d, desc->parent_hint);
  if (!ppath)
    return -1;
  if (confine(d, "backing file", ppath) != 0) {
    free(ppath);
    return -1;
  }
  unsigned pflags = d->flags & ~VMDK_OPEN_RDWR; /* parents are read-only */
  struct vmdk_disk *p =
      open_layer(ppath, VMDK_FORMAT_AUTO, pflags, ch, d->path);
  free(ppath);
  if (!p)
    return -1;
  p->depth = d->depth + 1;
  d->parent = p;
  const char *commit = desc_get_ddb(desc, DDB_COMMIT_CID);
  if (!p->raw && p->desc->cid != desc->parent_cid &&
      !(commit && strtoul(commit, NULL, 16) == p->desc->cid))
    return set_error(EINVAL, "%s: its parent %s was changed after it was made: "
                             "the parent's CID is %08" PRIx32
                             " but the child expects parentCID %08" PRIx32
                             " (reading through it would mix old and new "
                             "data)",
                     d->path, p->path, p->desc->cid, desc->parent_cid);
  return 0;
}

static struct vmdk_disk *open_layer(const char *path, int format,
                                    unsigned flags, struct chain *ch,
                                    const char *child) {
  struct stat st = {0};
  bool remote = (flags & OPEN_REMOTE) != 0;
  if (!remote && stat(path, &st) != 0) {
    if (child)
      set_error(errno, "%s: cannot open its parent %s: %s", child, path,
                strerror(errno));
    else
      set_error(errno, "%s: %s", path, strerror(errno));
    return NULL;
  }
  for (unsigned i = 0; i < ch->n; i++) /* the same file: by URL, else by
                                          identity (a renamed or linked file) */
    if (remote ? ch->url[i] && strcmp(ch->url[i], path) == 0
               : ch->dev[i] == st.st_dev && ch->ino[i] == st.st_ino) {
      set_error(ELOOP, "%s: the backing chain loops: %s names %s as its "
                       "parent, which is already image %u of the chain",
                ch->top, child ? child : path, path, i + 1);
      return NULL;
    }
  ch->url[ch->n] = remote ? path : NULL;
  ch->dev[ch->n] = st.st_dev;
  ch->ino[ch->n] = st.st_ino;
  ch->n++;
  struct vmdk_disk *d = open_one(path, format, flags, ch->root);
  if (!d && child) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", vmdk_get_error());
    set_error(vmdk_get_errno(), "%s: cannot open its parent: %s", child, msg);
  }
  if (d && open_parent(d, ch) != 0) {
    vmdk_close(d);
    return NULL;
  }
  return d;
}

struct vmdk_disk *disk_open_confined(const char *path, int format,
                                     unsigned flags, const char *root) {
  char real[PATH_MAX];
  char *folder = NULL;
  if (flags & OPEN_REMOTE) { /* held to the URL's folder by default */
    if (!root && ((flags & VMDK_OPEN_CONFINE) || remote_confined(path))) {
      if (!(folder = url_folder(path)))
        return NULL;
      root = folder;
    }
  } else if (!root && (flags & VMDK_OPEN_CONFINE)) {
    char *dir = dir_of(path);
    if (!dir) {
      set_error(ENOMEM, "out of memory");
      return NULL;
    }
    bool ok = realpath(dir, real) != NULL;
    if (!ok)
      set_error(errno, "%s: %s", path, strerror(errno));
    free(dir);
    if (!ok)
      return NULL;
    root = real;
  }
  if (root)
    flags |= VMDK_OPEN_CONFINE;
  struct chain ch = {.top = path, .root = root};
  struct vmdk_disk *d = open_layer(path, format, flags, &ch, NULL);
  free(folder);
  return d;
}

/* An NBD URI: a raw disk of one read-only extent served by libnbd. */
static struct vmdk_disk *open_nbd(const char *uri, unsigned flags) {
  struct vmdk_disk *d = calloc(1, sizeof *d);
  if (!d || !(d->path = strdup(uri)) || !(d->dir = strdup("."))) {
    disk_free(d);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  d->flags = flags;
  if (open_nbd_into(d, NULL) != 0) {
    disk_free(d);
    return NULL;
  }
  return d;
}

struct vmdk_disk *disk_open_qemu(const char *path, const char *format,
                                 unsigned flags) {
  struct vmdk_disk *d = disk_new(path, flags);
  if (d && open_nbd_into(d, format) != 0) {
    disk_free(d);
    return NULL;
  }
  return d;
}

struct vmdk_disk *disk_open_archived(struct tar *t, const char *member,
                                     int format, unsigned flags) {
  struct vmdk_disk *d = disk_new(member, flags);
  if (!d) {
    tar_close(t);
    return NULL;
  }
  d->archive = t;
  free(d->path);
  struct vfile *f = NULL;
  if (asprintf(&d->path, "%s:%s", t->path, member) < 0) {
    d->path = NULL;
    set_error(ENOMEM, "out of memory");
  } else if ((f = disk_archive_file(d, member, false)) &&
             open_on(d, f, format) == 0) {
    if (!d->desc || !d->desc->parent_hint || !*d->desc->parent_hint ||
        (flags & VMDK_OPEN_NO_BACKING))
      return d;
    set_error(ENOTSUP, "%s: names a backing file (%s): backing chains inside "
                       "an archive are not supported",
              d->path, d->desc->parent_hint);
  }
  disk_free(d);
  return NULL;
}

struct vfile *disk_archive_file(struct vmdk_disk *d, const char *name,
                                bool writable) {
  if (writable) {
    set_error(EROFS, "%s: %s is a member of an archive: it is read-only",
              d->path, name);
    return NULL;
  }
  const struct tar_member *m = tar_find(d->archive, name);
  if (!m) {
    set_error(ENOENT, "%s: no member %s in the archive", d->archive->path,
              name);
    return NULL;
  }
  return tar_open_member(d->archive, m);
}

struct vmdk_disk *vmdk_open_format(const char *path, int format,
                                   unsigned flags) {
  flags &= ~OPEN_REMOTE;
  if (nbd_uri_like(path) && format != VMDK_FORMAT_VMDK)
    return open_nbd(path, flags);
  char *url = NULL;
  if (url_is_remote(path)) { /* lib/remote.c: read-only, no credentials */
    if (remote_prepare(path, &url) != 0)
      return NULL;
    if (flags & VMDK_OPEN_RDWR) {
      set_error(EROFS, "%s: a remote image is opened read-only", url);
      free(url);
      return NULL;
    }
    path = url;
    flags |= OPEN_REMOTE;
  }
  struct vmdk_disk *d;
  if (!ova_route(path, format, flags, &d)) /* an OVA or OVF (lib/ova.c) */
    d = disk_open_confined(path, format, flags, NULL);
  free(url);
  return d;
}

const char *vmdk_get_path(const struct vmdk_disk *d) {
  return d->display ? d->display : d->path;
}

struct vmdk_disk *vmdk_get_backing(struct vmdk_disk *d) {
  return d->parent;
}

int vmdk_set_backing(struct vmdk_disk *d, const char *backing, int format) {
  if (!(d->flags & VMDK_OPEN_RDWR))
    return set_error(EROFS, "%s: opened read-only", d->path);
  if (d->raw || d->desc_none)
    return set_error(EINVAL, "%s: a %s image cannot name a backing file",
                     d->path, d->raw ? "raw" : "bare COWD");
  for (size_t i = 0; i < d->n_extents; i++) {
    enum ext_type t = d->extents[i].type;
    if (t != EXT_SPARSE && t != EXT_VMFSSPARSE && t != EXT_SESPARSE &&
        t != EXT_ZERO)
      return set_error(EINVAL, "%s: extent %zu is %s: every byte of it is "
                               "stored, so nothing would be read from a "
                               "backing file",
                       d->path, i, ext_type_name(t));
  }
  struct vmdk_disk *p = NULL;
  uint32_t cid = NO_CID;
  if (backing) {
    char *ppath = path_join(d->dir, backing);
    if (!ppath)
      return set_error(ENOMEM, "out of memory");
    struct stat self;
    struct chain ch = {.top = d->path, .root = d->confine_root};
    if (stat(d->path, &self) == 0) { /* the new chain must not reach D */
      ch.dev[0] = self.st_dev;
      ch.ino[0] = self.st_ino;
      ch.n = 1;
    }
    if (confine(d, "backing file", ppath) == 0)
      p = open_layer(ppath, format,
                     d->flags & ~(VMDK_OPEN_RDWR | VMDK_OPEN_NO_BACKING), &ch,
                     d->path);
    free(ppath);
    if (!p)
      return -1;
    p->depth = d->depth + 1;
    cid = p->raw ? NO_CID : p->desc->cid;
  }
  char *hint = backing ? strdup(backing) : NULL;
  if (backing && !hint) {
    vmdk_close(p);
    return set_error(ENOMEM, "out of memory");
  }
  char *old_hint = d->desc->parent_hint;
  uint32_t old_cid = d->desc->parent_cid;
  /* A new link supersedes an interrupted commit's announcement. */
  const char *c = desc_get_ddb(d->desc, DDB_COMMIT_CID);
  char *commit = c ? strdup(c) : NULL;
  if (c && !commit) {
    free(hint);
    vmdk_close(p);
    return set_error(ENOMEM, "out of memory");
  }
  desc_del_ddb(d->desc, DDB_COMMIT_CID);
  d->desc->parent_hint = hint;
  d->desc->parent_cid = cid;
  if (disk_write_descriptor(d) != 0) {
    d->desc->parent_hint = old_hint;
    d->desc->parent_cid = old_cid;
    if (commit)
      desc_set_ddb(d->desc, DDB_COMMIT_CID, commit);
    free(commit);
    free(hint);
    vmdk_close(p);
    return -1;
  }
  free(commit);
  free(old_hint);
  vmdk_close(d->parent);
  d->parent = p;
  return 0;
}

struct vmdk_disk *vmdk_open(const char *path, unsigned flags) {
  return vmdk_open_format(path, VMDK_FORMAT_AUTO, flags);
}

/* Release D; with FLUSH, after writing everything pending. */
static int close_handle(struct vmdk_disk *d, bool flush) {
  if (!d)
    return 0;
  int r = flush ? vmdk_flush(d) : 0;
  for (size_t i = 0; i < d->n_extents; i++) {
    struct extent *e = &d->extents[i];
    if (e->ops && e->ops->close(e) != 0)
      r = -1;
    e->ops = NULL;
  }
  disk_free(d);
  return r;
}

int vmdk_close(struct vmdk_disk *d) { return close_handle(d, true); }

int vmdk_close_discard(struct vmdk_disk *d) { return close_handle(d, false); }

/* ---- CID ------------------------------------------------------------------ */

int disk_write_descriptor(struct vmdk_disk *d) {
  size_t len;
  char *text = desc_print(d->desc, &len);
  if (!text)
    return -1;
  int r;
  if (d->desc_embedded) {
    struct extent *e0 = &d->extents[0];
    r = e0->ops->write_descriptor ? e0->ops->write_descriptor(e0, text, len)
                                  : set_error(ENOTSUP, "%s: cannot rewrite "
                                                       "the descriptor",
                                              d->path);
  } else {
    struct vfile *f = vf_open(d->path, true, d->flags & ~VMDK_OPEN_NOCACHE);
    r = f ? 0 : -1;
    if (r == 0)
      r = vf_pwrite(f, text, len, 0);
    if (r == 0 && f->size > len)
      r = vf_truncate(f, len);
    if (r == 0)
      r = vf_sync(f);
    if (vf_close(f) != 0)
      r = -1;
  }
  free(text);
  return r;
}

int disk_before_write(struct vmdk_disk *d) {
  if (d->raw || d->desc_none || d->cid_written)
    return 0;
  return disk_set_cid(d, random_cid(d->desc->cid));
}

uint32_t disk_new_cid(uint32_t avoid) {
  return random_cid(avoid);
}

int disk_set_cid(struct vmdk_disk *d, uint32_t cid) {
  if (d->raw || d->desc_none)
    return 0;
  uint32_t old = d->desc->cid;
  bool written = d->cid_written;
  d->desc->cid = cid;
  d->cid_written = true; /* the descriptor write below is a change too */
  if (disk_write_descriptor(d) != 0) {
    d->desc->cid = old;
    d->cid_written = written;
    return -1;
  }
  return 0;
}

int extent_first_write(void *extent) {
  return disk_before_write(((struct extent *)extent)->disk);
}

/* ---- data ------------------------------------------------------------------ */

bool disk_has_backing(const struct vmdk_disk *d) {
  return d->parent != NULL;
}

int disk_read_backing(struct vmdk_disk *d, void *buf, size_t len,
                      uint64_t virt_off) {
  /* A child may be larger than its parent: past the parent, zeros. */
  uint64_t psize = d->parent ? d->parent->size : 0;
  size_t n = virt_off >= psize ? 0
             : psize - virt_off < len ? (size_t)(psize - virt_off)
                                      : len;
  if (n && vmdk_pread(d->parent, buf, n, virt_off) != 0)
    return -1;
  memset((uint8_t *)buf + n, 0, len - n);
  return 0;
}

uint64_t vmdk_get_size(const struct vmdk_disk *d) {
  return d->size;
}

/* The extent holding virtual byte OFF (< d->size). */
struct extent *disk_find_extent(struct vmdk_disk *d, uint64_t off) {
  size_t lo = 0, hi = d->n_extents;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (d->extents[mid].virt_start <= off)
      lo = mid;
    else
      hi = mid;
  }
  /* Skip empty extents (size 0) that share a start. */
  while (lo + 1 < d->n_extents && d->extents[lo].size == 0)
    lo++;
  /* Callers use the piece [off, end of extent): never an empty one. */
  struct extent *e = &d->extents[lo];
  if (off < e->virt_start || off - e->virt_start >= e->size)
    return NULL;
  return e;
}

static int check_range(struct vmdk_disk *d, uint64_t count, uint64_t off,
                       const char *what) {
  uint64_t end;
  if (add_overflow_u64(off, count, &end) || end > d->size)
    return set_error(EINVAL, "%s: %s of %" PRIu64 " bytes at offset %" PRIu64
                             " is past the end of the disk (%" PRIu64 " bytes)",
                     d->path, what, count, off, d->size);
  return 0;
}

/* Every extent a write of COUNT bytes at OFF touches must be writable:
 * checked before anything is written, so a refused write changes nothing. */
static int check_writable(struct vmdk_disk *d, uint64_t count, uint64_t off,
                          bool zeroing) {
  if (!(d->flags & VMDK_OPEN_RDWR))
    return set_error(EROFS, "%s: opened read-only", d->path);
  uint64_t end = off + count;
  while (off < end) {
    struct extent *e = disk_find_extent(d, off);
    if (!e)
      return set_error(EIO, "%s: internal error: no extent holds offset %" PRIu64,
                       d->path, off);
    size_t i = (size_t)(e - d->extents);
    if (e->access != ACC_RW)
      return set_error(e->access == ACC_NOACCESS ? EACCES : EROFS,
                       "%s: cannot write at offset %" PRIu64 ": extent %zu "
                       "(%s) is %s",
                       d->path, off, i, e->path ? e->path : "ZERO",
                       ext_access_name(e->access));
    if (e->type == EXT_SESPARSE) /* read-only kind: its pwrite says why */
      return e->ops->pwrite(e, NULL, 0, off - e->virt_start);
    if (e->type == EXT_ZERO && !zeroing)
      return set_error(EROFS, "%s: cannot write at offset %" PRIu64
                              ": extent %zu (disk bytes %" PRIu64 "..%" PRIu64
                              ") is a ZERO extent, which has no storage (it "
                              "can only be zeroed)",
                       d->path, off, i, e->virt_start,
                       e->virt_start + e->size - 1);
    uint64_t piece = e->virt_start + e->size - off;
    if (piece > end - off)
      piece = end - off;
    if (!zeroing && e->ops->check_write &&
        e->ops->check_write(e, piece, off - e->virt_start) != 0)
      return -1;
    if (zeroing && e->ops->check_zero &&
        e->ops->check_zero(e, piece, off - e->virt_start) != 0)
      return -1;
    off = e->virt_start + e->size;
  }
  return 0;
}

int vmdk_pread(struct vmdk_disk *d, void *buf, size_t count, uint64_t off) {
  if (check_range(d, count, off, "read") != 0)
    return -1;
  uint8_t *p = buf;
  while (count > 0) {
    struct extent *e = disk_find_extent(d, off);
    if (!e)
      return set_error(EIO, "%s: internal error: no extent holds offset %" PRIu64,
                       d->path, off);
    uint64_t in = off - e->virt_start;
    size_t n = e->size - in < count ? (size_t)(e->size - in) : count;
    if (e->access == ACC_NOACCESS)
      return set_error(EACCES, "%s: cannot read at offset %" PRIu64
                               ": extent %zu (%s) is NOACCESS",
                       d->path, off, (size_t)(e - d->extents),
                       e->path ? e->path : "ZERO");
    if (e->ops->pread(e, p, n, in) != 0)
      return -1;
    p += n;
    off += n;
    count -= n;
  }
  return 0;
}

int vmdk_pwrite(struct vmdk_disk *d, const void *buf, size_t count,
                uint64_t off) {
  if (check_range(d, count, off, "write") != 0 ||
      check_writable(d, count, off, false) != 0)
    return -1;
  const uint8_t *p = buf;
  while (count > 0) {
    struct extent *e = disk_find_extent(d, off);
    if (!e)
      return set_error(EIO, "%s: internal error: no extent holds offset %" PRIu64,
                       d->path, off);
    uint64_t in = off - e->virt_start;
    size_t n = e->size - in < count ? (size_t)(e->size - in) : count;
    if (e->ops->pwrite(e, p, n, in) != 0)
      return -1;
    p += n;
    off += n;
    count -= n;
  }
  return 0;
}

int vmdk_zero(struct vmdk_disk *d, uint64_t count, uint64_t off) {
  if (check_range(d, count, off, "zero") != 0 ||
      check_writable(d, count, off, true) != 0)
    return -1;
  while (count > 0) {
    struct extent *e = disk_find_extent(d, off);
    if (!e)
      return set_error(EIO, "%s: internal error: no extent holds offset %" PRIu64,
                       d->path, off);
    uint64_t in = off - e->virt_start;
    uint64_t n = e->size - in < count ? e->size - in : count;
    if (e->ops->zero(e, n, in) != 0)
      return -1;
    off += n;
    count -= n;
  }
  return 0;
}

int vmdk_flush(struct vmdk_disk *d) {
  if (!(d->flags & VMDK_OPEN_RDWR))
    return 0;
  int r = 0;
  for (size_t i = 0; i < d->n_extents; i++)
    if (d->extents[i].ops && d->extents[i].ops->flush(&d->extents[i]) != 0)
      r = -1;
  return r;
}

/* Runs are merged here before they reach the caller's callback. */
struct merger {
  vmdk_run_cb cb;
  void *opaque;
  struct vmdk_run cur;
  bool have, stopped;
};

static void merge_run(struct merger *m, const struct vmdk_run *r) {
  struct vmdk_run *c = &m->cur;
  if (m->stopped)
    return;
  if (m->have && r->flags == c->flags && r->depth == c->depth &&
      r->file == c->file &&
      (r->file_offset < 0 ? c->file_offset < 0
                          : r->file_offset == c->file_offset + (int64_t)c->length)) {
    c->length += r->length;
    return;
  }
  if (m->have && m->cb(m->opaque, c) != 0)
    m->stopped = true;
  *c = *r;
  m->have = true;
}

/* Runs of D over [OFF, OFF+COUNT); unallocated runs come from the parent
 * (DEPTH + 1), or read as zeros when there is none. */
static int status_layer(struct vmdk_disk *d, uint64_t off, uint64_t count,
                        int depth, struct merger *m) {
  while (count > 0 && !m->stopped) {
    struct extent *e = disk_find_extent(d, off);
    if (!e)
      return set_error(EIO, "%s: internal error: no extent holds offset %" PRIu64,
                       d->path, off);
    uint64_t in = off - e->virt_start;
    uint64_t n = e->size - in < count ? e->size - in : count;
    struct vmdk_run r = {0};
    if (e->ops->status(e, in, n, &r) != 0)
      return -1;
    if (r.length == 0 || r.length > n)
      return set_error(EIO, "%s: internal error: extent %zu reported a run "
                            "of %" PRIu64 " bytes",
                       d->path, (size_t)(e - d->extents), r.length);
    uint64_t len = r.length;
    r.offset = off;
    r.depth = depth;
    if (r.flags == 0 && d->parent && off < d->parent->size) {
      uint64_t pn = d->parent->size - off < len ? d->parent->size - off : len;
      if (status_layer(d->parent, off, pn, depth + 1, m) != 0)
        return -1;
      r.offset += pn;
      r.length -= pn;
    }
    if (r.length) {
      if (r.flags == 0) /* unallocated with nothing below: zeros */
        r.flags = VMDK_RUN_ZERO;
      merge_run(m, &r);
    }
    off += len;
    count -= len;
  }
  return 0;
}

int vmdk_block_status(struct vmdk_disk *d, uint64_t off, uint64_t count,
                      vmdk_run_cb cb, void *opaque) {
  if (check_range(d, count, off, "block status") != 0)
    return -1;
  struct merger m = {.cb = cb, .opaque = opaque};
  if (status_layer(d, off, count, 0, &m) != 0)
    return -1;
  if (m.have && !m.stopped)
    cb(opaque, &m.cur);
  return 0;
}

/* ---- info ------------------------------------------------------------------ */

int vmdk_get_info(struct vmdk_disk *d, struct vmdk_info *info) {
  memset(info, 0, sizeof *info);
  struct vmdk_extent_info *xi = calloc(d->n_extents, sizeof *xi);
  if (!xi)
    return set_error(ENOMEM, "out of memory");
  free(d->info_extents);
  d->info_extents = xi;
  info->format = d->qemu_format ? d->qemu_format : d->raw ? "raw" : "vmdk";
  struct stat st;
  if (d->qemu_format && stat(d->path, &st) == 0)
    info->actual_bytes = (uint64_t)st.st_blocks * 512;
  info->size_bytes = d->size;
  info->cid = d->desc ? d->desc->cid : NO_CID;
  info->parent_cid = d->desc ? d->desc->parent_cid : NO_CID;
  if (d->desc) {
    info->create_type = d->desc->create_type;
    info->adapter_type = desc_get_ddb(d->desc, "ddb.adapterType");
    info->hw_version = desc_get_ddb(d->desc, "ddb.virtualHWVersion");
    info->parent_hint = d->desc->parent_hint;
    if (!d->desc_embedded)
      info->actual_bytes += 4096; /* the descriptor file itself, roughly */
  }
  for (size_t i = 0; i < d->n_extents; i++) {
    struct extent *e = &d->extents[i];
    if ((d->flags & OPEN_REMOTE) && e->path && !e->display)
      e->display = secret_scrubbed(e->path); /* (NULL: the path itself) */
    xi[i].filename = e->display ? e->display : e->path;
    xi[i].type = ext_type_name(e->type);
    xi[i].access = ext_access_name(e->access);
    xi[i].size_bytes = e->size;
    if (e->ops->info)
      e->ops->info(e, &xi[i]);
    if (e->ops->allocated)
      info->actual_bytes += e->ops->allocated(e);
    info->dirty |= xi[i].unclean;
    if (!info->cluster_bytes && xi[i].grain_bytes)
      info->cluster_bytes = xi[i].grain_bytes;
  }
  if (!d->desc_embedded && d->desc && !d->archive && /* (a member: no file) */
      !(d->flags & OPEN_REMOTE)) {
    struct vfile *f = vf_open(d->path, false, 0);
    if (f) {
      info->actual_bytes += vf_allocated(f) - 4096;
      vf_close(f);
    }
  }
  info->n_extents = d->n_extents;
  info->extents = xi;
  return 0;
}

/* ---- check ------------------------------------------------------------------ */

void check_report(struct check_ctx *c, enum vmdk_problem_kind kind,
                  uint64_t leaked_bytes, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (kind == VMDK_PROBLEM_CORRUPT) {
    c->res->corruptions++;
  } else {
    c->res->leaks++;
    c->res->leaked_bytes += leaked_bytes;
  }
  if (c->cb)
    c->cb(c->opaque, kind, msg);
}

int vmdk_check(struct vmdk_disk *d, struct vmdk_check_result *res,
               vmdk_problem_cb cb, void *opaque) {
  memset(res, 0, sizeof *res);
  struct check_ctx c = {res, cb, opaque};
  for (size_t i = 0; i < d->n_extents; i++) {
    struct extent *e = &d->extents[i];
    if (e->ops->check && e->ops->check(e, &c) != 0)
      return -1;
  }
  return 0;
}

/* ---- subformat names ------------------------------------------------------------- */

static const struct {
  enum vmdk_subformat sf;
  const char *name;
} subformats[] = {
    {VMDK_SUBFORMAT_MONOLITHIC_SPARSE, "monolithicSparse"},
    {VMDK_SUBFORMAT_MONOLITHIC_FLAT, "monolithicFlat"},
    {VMDK_SUBFORMAT_TWOGB_SPARSE, "twoGbMaxExtentSparse"},
    {VMDK_SUBFORMAT_TWOGB_FLAT, "twoGbMaxExtentFlat"},
    {VMDK_SUBFORMAT_STREAM_OPTIMIZED, "streamOptimized"},
    {VMDK_SUBFORMAT_VMFS, "vmfs"},
    {VMDK_SUBFORMAT_RAW, "raw"},
    /* other spellings, looked up but never printed */
    {VMDK_SUBFORMAT_TWOGB_SPARSE, "2GbMaxExtentSparse"},
    {VMDK_SUBFORMAT_TWOGB_FLAT, "2GbMaxExtentFlat"},
};

const char *vmdk_subformat_name(enum vmdk_subformat s) {
  for (size_t i = 0; i < sizeof subformats / sizeof *subformats; i++)
    if (subformats[i].sf == s)
      return subformats[i].name;
  return NULL;
}

int vmdk_subformat_from_name(const char *name, enum vmdk_subformat *s) {
  for (size_t i = 0; i < sizeof subformats / sizeof *subformats; i++)
    if (strcasecmp(subformats[i].name, name) == 0) {
      *s = subformats[i].sf;
      return 0;
    }
  return set_error(EINVAL, "unknown subformat \"%s\" (monolithicSparse, "
                           "monolithicFlat, twoGbMaxExtentSparse, "
                           "twoGbMaxExtentFlat, streamOptimized or vmfs)",
                   name);
}

/* ---- create ------------------------------------------------------------------ */

static const char *const adapters[] = {"ide", "buslogic", "lsilogic",
                                       "legacyESX", "pvscsi"};

/* The descriptor of a new standalone image. */
static struct descriptor *new_descriptor(const char *create_type,
                                         const struct vmdk_create_options *o,
                                         uint64_t sectors) {
  struct descriptor *d = calloc(1, sizeof *d);
  if (!d || !(d->create_type = strdup(create_type))) {
    desc_free(d);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  d->version = 1;
  d->cid = random_cid(NO_CID);
  d->parent_cid = NO_CID;
  const char *adapter = o->adapter_type ? o->adapter_type : "lsilogic";
  bool ide = strcasecmp(adapter, "ide") == 0;
  uint64_t heads = ide ? 16 : 255, secs = 63;
  uint64_t cyl = sectors / (heads * secs);
  uint64_t max_cyl = ide ? 16383 : 65535;
  if (cyl > max_cyl)
    cyl = max_cyl;
  char buf[128];
  uint8_t uuid[16];
  if (getrandom(uuid, sizeof uuid, 0) != (ssize_t)sizeof uuid)
    memset(uuid, 0x5a, sizeof uuid);
  int r = 0;
  /* Streams are made for import into current vSphere: a modern hardware
   * version and the tools install type that open-vmdk and VMware write;
   * hosted images keep 4, which every VMware product opens. */
  bool stream = strcmp(create_type, "streamOptimized") == 0;
  snprintf(buf, sizeof buf, "%u",
           o->hw_version ? o->hw_version : stream ? 14 : 4);
  r |= desc_set_ddb(d, "ddb.virtualHWVersion", buf);
  snprintf(buf, sizeof buf, "%" PRIu64, cyl);
  r |= desc_set_ddb(d, "ddb.geometry.cylinders", buf);
  snprintf(buf, sizeof buf, "%" PRIu64, heads);
  r |= desc_set_ddb(d, "ddb.geometry.heads", buf);
  snprintf(buf, sizeof buf, "%" PRIu64, secs);
  r |= desc_set_ddb(d, "ddb.geometry.sectors", buf);
  r |= desc_set_ddb(d, "ddb.adapterType", adapter);
  r |= desc_set_ddb(d, "ddb.toolsVersion", "2147483647");
  if (stream)
    r |= desc_set_ddb(d, "ddb.toolsInstallType", "4");
  int n = 0;
  for (int i = 0; i < 16; i++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, i ? " %02x" : "%02x",
                  uuid[i]);
  r |= desc_set_ddb(d, "ddb.uuid", buf);
  n = 0;
  for (int i = 0; i < 12; i++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "%02x", uuid[i]);
  snprintf(buf + n, sizeof buf - (size_t)n, "%08" PRIx32, d->cid);
  r |= desc_set_ddb(d, "ddb.longContentID", buf);
  if (r) {
    desc_free(d);
    return NULL;
  }
  return d;
}

/* NAME.vmdk -> NAME-SUFFIX.vmdk (basename only). */
static char *extent_name(const char *path, const char *suffix) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 5 && strcasecmp(base + n - 5, ".vmdk") == 0)
    n -= 5;
  size_t len = n + strlen(suffix) + 7;
  char *s = malloc(len);
  if (s)
    snprintf(s, len, "%.*s-%s.vmdk", (int)n, base, suffix);
  return s;
}

static int write_text_file(const char *path, const char *text, size_t len) {
  struct vfile *f = vf_create(path, 0);
  if (!f)
    return -1;
  int r = vf_pwrite(f, text, len, 0);
  if (vf_close(f) != 0)
    r = -1;
  return r;
}

/* Files vmdk_create made besides PATH, removed again when it fails. */
struct made_files {
  char **paths;
  size_t n;
};

static int made_add(struct made_files *m, const char *path) {
  char **p = realloc(m->paths, (m->n + 1) * sizeof *p);
  if (!p)
    return set_error(ENOMEM, "out of memory");
  m->paths = p;
  if (!(p[m->n] = strdup(path)))
    return set_error(ENOMEM, "out of memory");
  m->n++;
  return 0;
}

static void made_free(struct made_files *m, bool remove) {
  for (size_t i = 0; i < m->n; i++) {
    if (remove)
      unlink(m->paths[i]);
    free(m->paths[i]);
  }
  free(m->paths);
  m->paths = NULL;
  m->n = 0;
}

/* The subformats made of a descriptor file and separate extent files. */
struct file_set {
  const char *create_type;
  enum ext_type type;     /* of every extent */
  uint64_t split_sectors; /* size of each extent but the last; 0: one
                             extent for the whole disk */
  char letter;            /* split names NAME-<letter>001.vmdk, from 1;
                             0: the single extent is NAME-flat.vmdk */
  bool has_offset;        /* extent lines end with the offset (0) */
};

/* VMware's and VirtualBox's split size, 2047 MiB: a whole number of grains
 * of every power-of-two size up to 1 MiB, and a full sparse extent file,
 * metadata included, stays below 2 GiB. */
#define SPLIT_SECTORS 4192256u

static const struct file_set *file_set_of(enum vmdk_subformat s) {
  /* VMFS lines carry no offset: ESXi writes none and VirtualBox reads an
   * offset for FLAT only. */
  static const struct file_set flat = {"monolithicFlat", EXT_FLAT, 0, 0, true},
                               vmfs = {"vmfs", EXT_VMFS, 0, 0, false},
                               split_sparse = {"twoGbMaxExtentSparse",
                                               EXT_SPARSE, SPLIT_SECTORS, 's',
                                               false},
                               split_flat = {"twoGbMaxExtentFlat", EXT_FLAT,
                                             SPLIT_SECTORS, 'f', true};
  switch (s) {
  case VMDK_SUBFORMAT_MONOLITHIC_FLAT:
    return &flat;
  case VMDK_SUBFORMAT_VMFS:
    return &vmfs;
  case VMDK_SUBFORMAT_TWOGB_SPARSE:
    return &split_sparse;
  case VMDK_SUBFORMAT_TWOGB_FLAT:
    return &split_flat;
  default:
    return NULL;
  }
}

/* Prefix the current error message with PATH (for messages of helpers
 * that do not know it). */
static int error_at(const char *path) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", vmdk_get_error());
  return set_error(vmdk_get_errno(), "%s: %s", path, msg);
}

/* Make one extent file of a file set: a hosted sparse extent without an
 * embedded descriptor, or a flat file of SECTORS (a hole on the host). */
static int create_extent_file(const char *file, const struct file_set *fs,
                              const struct vmdk_create_options *o,
                              uint64_t sectors, unsigned flags,
                              struct made_files *made) {
  struct vfile *f = vf_create(file, flags);
  if (!f)
    return -1;
  int r = made_add(made, file);
  if (r == 0 && fs->type == EXT_SPARSE) {
    struct sparse_create_params p = {
        .capacity_sectors = sectors,
        .grain_sectors = o->grain_sectors ? o->grain_sectors : 128,
        .zeroed_grain = o->zeroed_grain != 0,
        .descriptor = NULL,
    };
    r = sparse_create(f, &p);
  } else if (r == 0) {
    r = vf_truncate(f, sectors * SECTOR);
  }
  if (vf_close(f) != 0)
    r = -1;
  return r;
}

/* Create the descriptor file PATH (in DIR) and the extent files of layout
 * FS for a disk of SECTORS, each file added to MADE once it exists.  The
 * extents are made first, so the descriptor never names a missing file. */
static int create_file_set(const char *path, const char *dir,
                           const struct file_set *fs,
                           const struct vmdk_create_options *o,
                           uint64_t sectors, unsigned flags,
                           struct made_files *made) {
  uint64_t n = fs->split_sectors ? div_round_up(sectors, fs->split_sectors)
                                 : 1;
  if (n == 0)
    n = 1; /* an empty disk still has one (empty) extent */
  struct descriptor *desc = new_descriptor(fs->create_type, o, sectors);
  char *text = NULL;
  size_t len = 0;
  int r = desc ? 0 : -1;
  for (uint64_t i = 0; r == 0 && i < n; i++) {
    char suffix[32];
    if (fs->letter)
      snprintf(suffix, sizeof suffix, "%c%03" PRIu64, fs->letter, i + 1);
    else
      snprintf(suffix, sizeof suffix, "flat");
    uint64_t ext = sectors;
    if (fs->split_sectors) {
      ext = sectors - i * fs->split_sectors;
      if (ext > fs->split_sectors)
        ext = fs->split_sectors;
    }
    char *name = extent_name(path, suffix);
    if (!name)
      r = set_error(ENOMEM, "out of memory");
    else if (desc_add_extent(desc, ACC_RW, ext, fs->type, name, 0,
                             fs->has_offset) != 0)
      r = error_at(path);
    free(name);
  }
  if (r == 0 && !(text = desc_print(desc, &len)))
    r = -1;
  if (r == 0 && len > MAX_DESCRIPTOR_FILE)
    r = set_error(EFBIG, "%s: a %s image of %s needs %" PRIu64
                         " extents, whose descriptor (%s) would be larger "
                         "than the %s a descriptor file may be",
                  path, fs->create_type, human_size(sectors * SECTOR), n,
                  human_size(len), human_size(MAX_DESCRIPTOR_FILE));
  for (size_t i = 0; r == 0 && i < desc->n_extents; i++) {
    char *file = path_join(dir, desc->extents[i].filename);
    r = file ? create_extent_file(file, fs, o, desc->extents[i].sectors, flags,
                                  made)
             : set_error(ENOMEM, "out of memory");
    free(file);
  }
  if (r == 0)
    r = write_text_file(path, text, len);
  free(text);
  desc_free(desc);
  return r;
}

struct vmdk_disk *vmdk_create(const char *path,
                              const struct vmdk_create_options *o,
                              unsigned flags) {
  if (remote_refuse_write(path) != 0)
    return NULL;
  uint64_t size = o->size_bytes;
  if (size > UINT64_MAX - SECTOR) {
    set_error(EFBIG, "%s: size %" PRIu64 " is too large", path, size);
    return NULL;
  }
  uint64_t sectors = div_round_up(size, SECTOR);
  if (o->adapter_type) {
    bool ok = false;
    for (size_t i = 0; i < sizeof adapters / sizeof *adapters; i++)
      ok |= strcasecmp(o->adapter_type, adapters[i]) == 0;
    if (!ok) {
      set_error(EINVAL, "%s: unknown adapter type \"%s\" (ide, buslogic, "
                        "lsilogic, legacyESX or pvscsi)",
                path, o->adapter_type);
      return NULL;
    }
  }
  if (o->compression_level < 0 || o->compression_level > 12) {
    set_error(EINVAL, "%s: compression level %d is out of range (1 to 12)",
              path, o->compression_level);
    return NULL;
  }
  if (o->zeroed_grain && o->subformat != VMDK_SUBFORMAT_MONOLITHIC_SPARSE &&
      o->subformat != VMDK_SUBFORMAT_TWOGB_SPARSE) {
    set_error(EINVAL, "%s: zeroed_grain applies to sparse subformats only",
              path);
    return NULL;
  }
  if (o->backing_file) {
    /* Open the backing as the child will: for its size, and to refuse a
     * backing that does not open before making any file. */
    if (o->subformat != VMDK_SUBFORMAT_MONOLITHIC_SPARSE &&
        o->subformat != VMDK_SUBFORMAT_TWOGB_SPARSE) {
      set_error(EINVAL, "%s: only sparse subformats (monolithicSparse, "
                        "twoGbMaxExtentSparse) can have a backing file",
                path);
      return NULL;
    }
    char *cdir = dir_of(path);
    char *bpath = cdir ? path_join(cdir, o->backing_file) : NULL;
    /* Confined: the backing chain must resolve into the child's folder,
     * as it will when the child is opened. */
    char root[PATH_MAX];
    bool confined = (flags & VMDK_OPEN_CONFINE) && cdir && bpath;
    if (confined && !realpath(cdir, root)) {
      set_error(errno, "%s: %s", path, strerror(errno));
      free(cdir);
      free(bpath);
      return NULL;
    }
    free(cdir);
    if (!bpath) {
      set_error(ENOMEM, "out of memory");
      return NULL;
    }
    if (confined && disk_confine(root, path, "backing file", bpath) != 0) {
      free(bpath);
      return NULL;
    }
    struct vmdk_disk *b =
        disk_open_confined(bpath, o->backing_format, flags & ~VMDK_OPEN_RDWR,
                           confined ? root : NULL);
    free(bpath);
    if (!b) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", vmdk_get_error());
      set_error(vmdk_get_errno(), "%s: cannot open its backing file: %s",
                path, msg);
      return NULL;
    }
    /* Creating PATH truncates it: it must not be a file of the chain. */
    struct stat st;
    if (stat(path, &st) == 0)
      for (struct vmdk_disk *l = b; l; l = l->parent)
        for (size_t i = 0; i <= l->n_extents; i++) {
          const char *f = i == 0 ? l->path : l->extents[i - 1].path;
          struct stat fs;
          if (f && stat(f, &fs) == 0 && fs.st_dev == st.st_dev &&
              fs.st_ino == st.st_ino) {
            if (l == b && i == 0)
              set_error(EINVAL, "%s: is the backing file %s itself, a file "
                                "of its own backing chain; refusing to "
                                "overwrite it",
                        path, o->backing_file);
            else
              set_error(EINVAL, "%s: is a file of its own backing chain "
                                "(%s); refusing to overwrite it: creating "
                                "it would destroy the backing",
                        path, l->path);
            vmdk_close(b);
            return NULL;
          }
        }
    if (size == 0)
      size = b->size;
    sectors = div_round_up(size, SECTOR);
    vmdk_close(b);
  }
  char *dir = dir_of(path);
  struct made_files made = {NULL, 0}; /* besides PATH, removed on failure */
  struct descriptor *desc = NULL;
  char *text = NULL;
  size_t len = 0;
  int r = -1;
  if (!dir) {
    set_error(ENOMEM, "out of memory");
    return NULL;
  }

  switch (o->subformat) {
  case VMDK_SUBFORMAT_RAW: {
    struct vfile *f = vf_create(path, flags);
    r = f ? vf_truncate(f, sectors * SECTOR) : -1;
    if (vf_close(f) != 0)
      r = -1;
    break;
  }
  case VMDK_SUBFORMAT_MONOLITHIC_SPARSE:
  case VMDK_SUBFORMAT_STREAM_OPTIMIZED: {
    bool stream = o->subformat == VMDK_SUBFORMAT_STREAM_OPTIMIZED;
    uint32_t grain = o->grain_sectors ? o->grain_sectors : 128;
    const char *base = strrchr(path, '/');
    desc = new_descriptor(stream ? "streamOptimized" : "monolithicSparse", o,
                          sectors);
    if (!desc || desc_add_extent(desc, ACC_RW, sectors, EXT_SPARSE,
                                 base ? base + 1 : path, 0, false) != 0 ||
        !(text = desc_print(desc, &len)))
      break;
    struct sparse_create_params p = {
        .capacity_sectors = sectors,
        .grain_sectors = grain,
        .zeroed_grain = o->zeroed_grain != 0,
        .descriptor = text,
        .descriptor_sectors = (uint32_t)div_round_up(len + 1024, SECTOR),
    };
    if (p.descriptor_sectors < 20)
      p.descriptor_sectors = 20;
    struct vfile *f = vf_create(path, flags);
    r = !f       ? -1
        : stream ? stream_create(f, sectors, grain, text)
                 : sparse_create(f, &p);
    if (vf_close(f) != 0)
      r = -1;
    break;
  }
  case VMDK_SUBFORMAT_MONOLITHIC_FLAT:
  case VMDK_SUBFORMAT_VMFS:
  case VMDK_SUBFORMAT_TWOGB_SPARSE:
  case VMDK_SUBFORMAT_TWOGB_FLAT:
    r = create_file_set(path, dir, file_set_of(o->subformat), o, sectors,
                        flags, &made);
    break;
  default:
    set_error(EINVAL, "%s: unknown subformat %d", path, (int)o->subformat);
  }
  free(text);
  desc_free(desc);
  struct vmdk_disk *d = NULL;
  if (r == 0)
    d = vmdk_open_format(path,
                         o->subformat == VMDK_SUBFORMAT_RAW ? VMDK_FORMAT_RAW
                                                            : VMDK_FORMAT_VMDK,
                         flags | VMDK_OPEN_RDWR);
  if (d && o->backing_file &&
      vmdk_set_backing(d, o->backing_file, o->backing_format) != 0) {
    char msg[1024];
    int err = vmdk_get_errno();
    snprintf(msg, sizeof msg, "%s", vmdk_get_error());
    vmdk_close(d);
    d = NULL;
    set_error(err, "%s", msg);
  }
  if (!d) {
    /* Keep the first error; remove what we made. */
    unlink(path);
  } else {
    d->cid_written = true; /* the fresh CID is already on disk */
    d->threads = o->threads;
    d->compression_level = o->compression_level;
  }
  made_free(&made, d == NULL);
  free(dir);
  return d;
}

struct vmdk_disk *disk_create_stream_on(struct vfile *f, const char *name,
                                        const struct vmdk_create_options *o,
                                        unsigned flags) {
  uint64_t size = o->size_bytes;
  if (size > UINT64_MAX - SECTOR) {
    set_error(EFBIG, "%s: size %" PRIu64 " is too large", f->path, size);
    vf_close(f);
    return NULL;
  }
  uint64_t sectors = div_round_up(size, SECTOR);
  uint32_t grain = o->grain_sectors ? o->grain_sectors : 128;
  size_t len = 0;
  char *text = NULL;
  struct descriptor *desc = new_descriptor("streamOptimized", o, sectors);
  struct vmdk_disk *d = disk_new(f->path, flags | VMDK_OPEN_RDWR);
  int r = !desc || !d ||
                  desc_add_extent(desc, ACC_RW, sectors, EXT_SPARSE, name, 0,
                                  false) != 0 ||
                  !(text = desc_print(desc, &len))
              ? -1
              : stream_create(f, sectors, grain, text);
  free(text);
  desc_free(desc);
  if (r == 0) {
    r = open_on(d, f, VMDK_FORMAT_VMDK); /* takes F */
    f = NULL;
  }
  vf_close(f);
  if (r != 0) {
    disk_free(d);
    return NULL;
  }
  d->cid_written = true; /* the fresh CID is already in the file */
  d->threads = o->threads;
  d->compression_level = o->compression_level;
  return d;
}

/* ---- growing a split image ------------------------------------------------ */

/* Grow a twoGbMaxExtent* image to SIZE bytes as VMware and VirtualBox do:
 * fill the last extent up to 2047 MiB, then add NAME-s/fNNN.vmdk extents,
 * made like those of a new image; the descriptor is written last, so a
 * crash before it leaves the image as it was (plus unused files). */
int disk_grow_split(struct vmdk_disk *d, uint64_t size) {
  bool sparse = d->extents[d->n_extents - 1].type == EXT_SPARSE;
  const struct file_set *fs = file_set_of(sparse ? VMDK_SUBFORMAT_TWOGB_SPARSE
                                                 : VMDK_SUBFORMAT_TWOGB_FLAT);
  struct vmdk_create_options o = {0};
  struct vmdk_info info;
  if (vmdk_get_info(d, &info) != 0)
    return -1;
  o.grain_sectors = (uint32_t)(info.cluster_bytes / SECTOR);
  o.zeroed_grain = info.n_extents && info.extents[0].zeroed_grain;
  uint64_t target = size / SECTOR;
  struct extent *last = &d->extents[d->n_extents - 1];
  uint64_t last_sectors = last->size / SECTOR;
  if (last_sectors < fs->split_sectors) {
    uint64_t grow = fs->split_sectors - last_sectors;
    if (grow > target - d->size / SECTOR)
      grow = target - d->size / SECTOR;
    if (!last->ops->resize ||
        last->ops->resize(last, (last_sectors + grow) * SECTOR) != 0)
      return -1;
    last->size = (last_sectors + grow) * SECTOR;
    d->desc->extents[d->n_extents - 1].sectors = last_sectors + grow;
    d->size += grow * SECTOR;
  }
  struct made_files made = {NULL, 0};
  int r = 0;
  while (r == 0 && d->size / SECTOR < target) {
    uint64_t n = target - d->size / SECTOR;
    if (n > fs->split_sectors)
      n = fs->split_sectors;
    char suffix[32];
    snprintf(suffix, sizeof suffix, "%c%03zu", fs->letter, d->n_extents + 1);
    char *name = extent_name(d->path, suffix);
    char *file = name ? path_join(d->dir, name) : NULL;
    struct extent *ex = realloc(d->extents, (d->n_extents + 1) * sizeof *ex);
    if (ex)
      d->extents = ex;
    if (!name || !file || !ex) {
      r = set_error(ENOMEM, "out of memory");
    } else if ((r = create_extent_file(file, fs, &o, n, d->flags, &made)) ==
                   0 &&
               (r = desc_add_extent(d->desc, ACC_RW, n, fs->type, name, 0,
                                    fs->has_offset)) == 0) {
      struct vfile *none = NULL;
      memset(&d->extents[d->n_extents], 0, sizeof *d->extents);
      d->n_extents++;
      r = open_extent(d, d->n_extents - 1, &none, d->size);
      if (r == 0)
        d->size += n * SECTOR;
    }
    free(name);
    free(file);
  }
  if (r == 0)
    r = disk_write_descriptor(d);
  made_free(&made, r != 0);
  return r;
}

/* ---- vmdk_check_write: the write checks without the write ---------------- */

/* What vmdk_pwrite checks before it writes anything (the range lies in the
 * disk, the handle is writable, every extent the range touches takes
 * writes), for a caller that writes one range in several calls and must
 * refuse the whole of it before the first. */
int vmdk_check_write(struct vmdk_disk *d, uint64_t count, uint64_t off) {
  if (check_range(d, count, off, "write") != 0 ||
      check_writable(d, count, off, false) != 0)
    return -1;
  return 0;
}
