/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit internals: shared by the lib/ sources and the unit tests, never by tools/.
 *
 * Layers (dependencies point down):
 *   disk.c        the handle: descriptor, extents, virtual offset mapping,
 *                 backing reads, CID update, info
 *   descriptor.c  the text descriptor: parse, validate, print
 *   extent_*.c    one file per extent kind behind struct extent_ops
 *   io.c          positioned file I/O (full reads/writes, sync, size)
 *   error.c       the per-thread error message
 */
#ifndef VMDKIT_INTERNAL_H
#define VMDKIT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include "vmdkit.h"

#define SECTOR 512u
#define NO_CID 0xffffffffu

/* ---- error.c ----------------------------------------------------------- */

/* Record ERRNUM and a printf-style message for the calling thread.  Always
 * returns -1 so callers can `return set_error(...)`. */
int set_error(int errnum, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Human size for messages: "64 KiB", "2 TiB", "12345 bytes".  Uses one of
 * four rotating thread-local buffers, so up to four may be in one message. */
const char *human_size(uint64_t bytes);

/* ---- endian.h-like helpers: decode on-disk little-endian fields --------- */

static inline uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const uint8_t *p) {
  return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}
static inline void put_le16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* Checked arithmetic: return true on overflow. */
static inline bool add_overflow_u64(uint64_t a, uint64_t b, uint64_t *r) {
  return __builtin_add_overflow(a, b, r);
}
static inline bool mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *r) {
  return __builtin_mul_overflow(a, b, r);
}
static inline uint64_t div_round_up(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}
static inline bool is_power_of_2(uint64_t v) {
  return v && !(v & (v - 1));
}

/* ---- io.c: one open host file ------------------------------------------ */

struct vfile {
  int fd;
  char *path;          /* as opened (for messages) */
  bool writable;
  bool unsafe;         /* VMDK_OPEN_UNSAFE: vf_sync does nothing */
  uint64_t size;       /* current length of the host file in bytes, kept
                          up to date by vf_pwrite/vf_truncate */
  bool unsynced;       /* written since the last vf_sync */
  bool direct;         /* opened O_DIRECT (VMDK_OPEN_NOCACHE): transfers
                          that are not DIRECT_ALIGN-aligned in offset,
                          length and memory go through a bounce buffer */
  uint64_t kick_lo, kick_hi; /* bytes: the range written since write-out
                                was last started (vf_pwrite), */
  uint64_t kick_bytes;        /* and how many bytes were written there */
  bool remote;         /* on a network or user-space file system (vf_wrap):
                          large writes go whole, in concurrent parts */
  bool sync_failed;    /* an fdatasync failed: the kernel may have dropped
                          the pages it could not write, so every later
                          vf_sync fails too (a later success would prove
                          nothing) */
  /* Called once, before the first change to the file (vf_pwrite,
   * vf_zero_range, vf_truncate), with HOOK_OPAQUE: the owner writes what
   * must precede the first change (the disk's new CID, the sparse
   * header's unclean flag).  So a write that is refused, or fails before
   * any byte of it is issued, changes nothing.  When the hook fails, the
   * change is not made and the hook stays armed.  NULL: none. */
  int (*before_write)(void *hook_opaque);
  void *hook_opaque;
  uint64_t base;       /* bytes: a window onto a bigger file (a member of
                          an archive) starts here; every offset vf_* take
                          is relative to it, and so is SIZE.  0: the whole
                          file.  (vf_append_window, vf_window) */
  struct remote *rem;  /* a remote file (lib/remote.c; FD is -1): read
                          only, shared by its windows */
};
#define DIRECT_ALIGN 4096u

/* A buffer of N bytes for large reads and writes, page-aligned (free()
 * it): the kernel copies between the page cache and a page-aligned buffer
 * about twice as fast as into malloc's (16 bytes past a page boundary),
 * measured with 1 MiB reads of a cached file.  NULL when out of memory
 * (no error set). */
static inline void *io_alloc(size_t n) {
  void *b;
  return posix_memalign(&b, DIRECT_ALIGN, n ? n : 1) == 0 ? b : NULL;
}

/* Open PATH read-only or read-write.  With OPEN_REMOTE in OPEN_FLAGS,
 * PATH is a URL (lib/remote.c), read-only.  Returns NULL (error set) on
 * failure. */
struct vfile *vf_open(const char *path, bool writable, unsigned open_flags);
/* A writable window onto the open file FD from byte BASE to its end, for
 * writing a member of an archive in place (lib/ova_create.c): offsets are
 * relative to BASE (f->base), size is the file's length past BASE, writes
 * past it grow the file and vf_truncate sets the file's length to BASE +
 * len.  It never syncs (vf_sync does nothing, as VMDK_OPEN_UNSAFE): the
 * owner of FD syncs the whole file once it is complete.  Never O_DIRECT.
 * Holds its own descriptor (a dup of FD); NAME is used in messages.  NULL
 * (error set) on failure. */
struct vfile *vf_append_window(int fd, const char *name, uint64_t base);
/* A read-only window onto F (a local or remote file) from byte BASE of F
 * for LEN bytes (a member of an archive being read): reads past LEN read
 * as zeros.  Independent of F's handle (it may be closed first).  NAME is
 * used in messages.  NULL (error set) on failure. */
struct vfile *vf_window(struct vfile *f, const char *name, uint64_t base,
                        uint64_t len);
/* Create (truncate) PATH for writing. */
struct vfile *vf_create(const char *path, unsigned open_flags);
/* Close; returns -1 if close(2) failed.  Accepts NULL. */
int vf_close(struct vfile *f);
/* Read exactly LEN bytes at OFF; bytes past the end of the file read as
 * zeros (a grain whose tail was never written is a hole).  0 or -1. */
int vf_pread(struct vfile *f, void *buf, size_t len, uint64_t off);
/* Write exactly LEN bytes at OFF, retrying short writes.  0 or -1. */
int vf_pwrite(struct vfile *f, const void *buf, size_t len, uint64_t off);
/* Write LEN zero bytes at OFF (chunked). */
int vf_write_zeros(struct vfile *f, uint64_t len, uint64_t off);
/* Make LEN bytes at OFF read as zeros, freeing host space where the file
 * system can punch holes (the length is kept), else writing zeros. */
int vf_zero_range(struct vfile *f, uint64_t len, uint64_t off);
/* Set the file length. */
int vf_truncate(struct vfile *f, uint64_t len);
/* fdatasync if anything was written since the last sync (and not unsafe). */
int vf_sync(struct vfile *f);
/* Bytes allocated on the host (st_blocks * 512). */
uint64_t vf_allocated(struct vfile *f);
/* Next data / hole at or after OFF (SEEK_DATA/SEEK_HOLE); when the file
 * system cannot tell, *DATA is true and *LEN runs to the end of file.
 * Fills whether OFF is in data and how long that run is (to EOF at most). */
int vf_seek_status(struct vfile *f, uint64_t off, bool *data, uint64_t *len);

/* ---- url.c, remote.c: remote files ------------------------------------- */

/* An internal open flag (never a caller's: vmdk_open_format sets it from
 * the path): the image and every file it names are URLs. */
#define OPEN_REMOTE 0x80000000u
#define REMOTE_MAX_CONNS 16
#define REMOTE_MAX_SECRETS 16

enum url_kind { URL_HTTP, URL_SSH, URL_NBD };
struct url {
  enum url_kind kind;
  char scheme[16];  /* lower-case: http, https, ssh, nbd, nbds+unix, ... */
  char *user;       /* decoded, or NULL */
  char *password;   /* decoded, or NULL (a secret) */
  char *host;       /* as written ([...] for IPv6); "" for nbd+unix */
  char *port;       /* or NULL */
  char *path;       /* percent-encoded, normalised, starts with '/' */
  char *query;      /* without '?', or NULL */
};
/* Whether S is a URL of a remote file (http, https, ssh, file+nbd...). */
bool url_is_remote(const char *s);
int url_parse(const char *s, struct url *u);
void url_free(struct url *u);
/* U as a string, without user or password (NULL: out of memory). */
char *url_format(const struct url *u);
char *url_decode(const char *s, size_t n);
/* The file NAME (a descriptor's) relative to the URL BASE; NULL (error
 * set) on failure.  See url.c. */
char *url_resolve(const char *base, const char *name);
/* The folder of URL ("scheme://host:port/dir/", no query). */
char *url_folder(const char *url);
/* Whether URL lies under the folder FOLDER (same scheme, host, port). */
bool url_inside(const char *folder, const char *url);
/* Register U's password and the values of credential-like query keys as
 * secrets (no message shows them). */
void url_register_secrets(const struct url *u);
/* error.c: S never appears in a message; blank the known secrets in MSG. */
void secret_register(const char *s);
void secret_scrub(char *msg, size_t cap);
/* A copy of S (malloc'ed) with the known secrets blanked, or NULL. */
char *secret_scrubbed(const char *s);
/* Refuse PATH as a file to write when it is a URL (EROFS): 0 or -1. */
int remote_refuse_write(const char *path);

/* A URL the caller gave: its secrets registered, its USER:PASSWORD moved
 * into options for its host; *CLEAN (malloc'ed) is the URL without them. */
int remote_prepare(const char *url, char **clean);
/* Whether files named by URL's descriptor are held to its folder (the
 * remote option confine, default yes). */
bool remote_confined(const char *url);
struct remote;
struct remote *remote_open(const char *url, uint64_t *size);
struct remote *remote_ref(struct remote *r);
void remote_close(struct remote *r);  /* drops one reference */
int remote_pread(struct remote *r, void *buf, size_t len, uint64_t off);

/* ---- descriptor.c ------------------------------------------------------ */

enum ext_access { ACC_RW, ACC_RDONLY, ACC_NOACCESS };
enum ext_type {
  EXT_FLAT, EXT_SPARSE, EXT_ZERO, EXT_VMFS, EXT_VMFSSPARSE, EXT_VMFSRDM,
  EXT_VMFSRAW, EXT_SESPARSE
};

struct desc_extent {
  enum ext_access access;
  uint64_t sectors;       /* size in 512-byte sectors */
  enum ext_type type;
  char *filename;         /* NULL for ZERO */
  uint64_t offset;        /* FLAT/VMFS: offset in sectors; else 0 */
  bool has_offset;        /* the line had an offset field */
};

struct desc_kv {
  char *key;              /* as written, e.g. "ddb.adapterType" */
  char *value;            /* unquoted */
};

struct descriptor {
  unsigned version;          /* "version", default 1 */
  uint32_t cid, parent_cid;  /* NO_CID when absent */
  char *create_type;         /* never NULL after a successful parse */
  char *parent_hint;         /* parentFileNameHint, or NULL */
  struct desc_kv *header;    /* other header keys in order (encoding...) */
  size_t n_header;
  struct desc_extent *extents;
  size_t n_extents;
  size_t extents_cap;        /* allocated entries (grows geometrically) */
  struct desc_kv *ddb;       /* ddb.* keys in order, unknown ones kept */
  size_t n_ddb;
};

/* Parse LEN bytes of descriptor text (may contain NULs: parsing stops at the
 * first).  NAME is used in messages.  Returns NULL (error set) when the text
 * is not a descriptor or is invalid. */
struct descriptor *desc_parse(const char *text, size_t len, const char *name);
/* Print as the strictest readers want it: "# Disk DescriptorFile", header
 * keys, extents, then the DDB.  Returns a malloc'ed NUL-terminated string
 * and its length in *LEN, or NULL. */
char *desc_print(const struct descriptor *d, size_t *len);
void desc_free(struct descriptor *d);
/* Get/set a ddb key (case-insensitive match).  desc_set_ddb appends when
 * the key is new.  Returns NULL / -1 on failure. */
const char *desc_get_ddb(const struct descriptor *d, const char *key);
int desc_set_ddb(struct descriptor *d, const char *key, const char *value);
/* Remove a ddb key (case-insensitive match), if there. */
void desc_del_ddb(struct descriptor *d, const char *key);
/* A child being committed into its parent: the CID the parent is getting
 * (8 hex digits).  While it is there, the child also accepts a parent with
 * that CID: the parent's new CID and the child's parentCID cannot be
 * written at once, and a crash between them must not cut the chain (the
 * child reads the same either way).  vmdk_set_backing removes it. */
#define DDB_COMMIT_CID "ddb.vmdkit.commitParentCID"
int desc_add_extent(struct descriptor *d, enum ext_access acc,
                    uint64_t sectors, enum ext_type type,
                    const char *filename, uint64_t offset, bool has_offset);
/* Whether the first bytes of a file look like descriptor text. */
bool desc_looks_like(const uint8_t *buf, size_t len);
const char *ext_type_name(enum ext_type t);
const char *ext_access_name(enum ext_access a);

/* ---- extents ------------------------------------------------------------ */

struct extent;
struct check_ctx;

/* One kind of extent.  All offsets and lengths are bytes relative to the
 * start of the extent; the disk layer guarantees [off, off+len) lies inside
 * the extent and len > 0. */
struct extent_ops {
  const char *name;
  /* Read; unallocated parts are filled by disk_read_backing(). */
  int (*pread)(struct extent *e, void *buf, size_t len, uint64_t off);
  /* Write; may allocate.  Only called on RW extents of a writable disk. */
  int (*pwrite)(struct extent *e, const void *buf, size_t len, uint64_t off);
  /* Make the range read as zeros. */
  int (*zero)(struct extent *e, uint64_t len, uint64_t off);
  /* Describe the run starting at OFF (at most LEN bytes): run->length,
   * flags (0 = unallocated here: the disk layer decides what it reads as),
   * file_offset, file. */
  int (*status)(struct extent *e, uint64_t off, uint64_t len,
                struct vmdk_run *run);
  /* Write back cached metadata in the safe order; sync when SYNC. */
  int (*flush)(struct extent *e);
  /* Release (after a flush by the caller).  Returns -1 if close failed. */
  int (*close)(struct extent *e);
  /* Check metadata (may be NULL: nothing to check). */
  int (*check)(struct extent *e, struct check_ctx *c);
  /* Repair what WHAT (VMDK_REPAIR_*) covers, reporting each repair done
   * through C with the kind of problem fixed (may be NULL: nothing the
   * kind can repair).  Only called on a writable disk. */
  int (*repair)(struct extent *e, unsigned what, struct check_ctx *c);
  /* Fill the kind-specific fields of *INFO (may be NULL). */
  void (*info)(struct extent *e, struct vmdk_extent_info *info);
  /* Allocated host bytes. */
  uint64_t (*allocated)(struct extent *e);
  /* Change the extent's size to SIZE bytes (a multiple of 512), keeping
   * its data; the caller has checked that a shrink cuts off nothing the
   * user wrote.  NULL: the kind cannot be resized. */
  int (*resize)(struct extent *e, uint64_t size);
  /* Whether a write of LEN bytes at OFF would be refused, checked before
   * anything is written (NULL: always allowed). */
  int (*check_write)(struct extent *e, uint64_t len, uint64_t off);
  /* The same for making LEN bytes at OFF read as zeros (NULL: always
   * allowed). */
  int (*check_zero)(struct extent *e, uint64_t len, uint64_t off);
  /* Replace the descriptor embedded in this extent's file (NULL: the kind
   * has no embedded descriptor). */
  int (*write_descriptor)(struct extent *e, const char *text, size_t len);
};

/* For extent status ops: extend RUN by N bytes of kind FLAGS at file
 * offset FO (-1: none), the first piece when RUN is empty.  False when the
 * piece does not continue RUN (another kind, or data elsewhere in the
 * file): RUN is complete and unchanged. */
static inline bool run_extend(struct vmdk_run *run, unsigned flags,
                              int64_t fo, uint64_t n) {
  if (run->length == 0) {
    run->flags = flags;
    run->file_offset = fo;
  } else if (flags != run->flags ||
             (fo >= 0 && fo != run->file_offset + (int64_t)run->length)) {
    return false;
  }
  run->length += n;
  return true;
}

struct extent {
  const struct extent_ops *ops;
  struct vmdk_disk *disk;     /* owning disk (for backing reads) */
  uint64_t virt_start;        /* bytes: where the extent starts on the disk */
  uint64_t size;              /* bytes of the virtual disk it covers */
  enum ext_access access;
  enum ext_type type;
  char *path;                 /* resolved host path, or NULL for ZERO */
  char *display;              /* remote: PATH with its secrets blanked (what
                                 vmdk_get_info shows), else NULL */
  void *priv;                 /* kind-specific state */
};

/* extent_flat.c: FLAT/VMFS extents (and raw images).  OFFSET_BYTES is the
 * extent's start within FILE.  Takes ownership of F. */
int flat_open(struct extent *e, struct vfile *f, uint64_t offset_bytes);
/* extent_zero.c: ZERO extents. */
int zero_extent_open(struct extent *e);
/* extent_sparse.c: hosted sparse ("KDMV").  Takes ownership of F.  HDR is
 * the first sector of the file. */
int sparse_open(struct extent *e, struct vfile *f);
/* Read the embedded descriptor of the KDMV file F: malloc'ed text, NUL
 * terminated, or NULL with *LEN 0 when there is none.  -1 on error. */
int sparse_read_embedded_descriptor(struct vfile *f, char **text, size_t *len);
struct sparse_create_params {
  uint64_t capacity_sectors;
  uint32_t grain_sectors;
  bool zeroed_grain;
  bool lazy_tables;          /* grain tables allocated on first write */
  const char *descriptor;    /* embedded descriptor text, or NULL */
  uint32_t descriptor_sectors; /* space reserved for it (>= 20) */
};
/* Lay out a new hosted sparse extent in the empty writable file F. */
int sparse_create(struct vfile *f, const struct sparse_create_params *p);
/* Largest capacity (sectors) a hosted sparse extent of this grain size can
 * hold with every grain allocated and offsets fitting 32 bits. */
uint64_t sparse_max_capacity(uint32_t grain_sectors);

/* compress.c: zlib-wrapped deflate for grains.  A codec is used by one
 * thread at a time. */
struct codec;
struct codec *codec_new(int level);
void codec_free(struct codec *z);
/* Worst-case compressed size of N bytes. */
size_t codec_bound(size_t n);
/* Compress N bytes into OUT (CAP bytes); returns the size, 0 on failure. */
size_t codec_compress(struct codec *z, const void *in, size_t n, void *out,
                      size_t cap);
/* Inflate zlib (or raw deflate) data into OUT; *ACTUAL gets the size.
 * 0 ok, -1 corrupt data, -2 more than CAP bytes. */
int codec_decompress(struct codec *z, const void *in, size_t n, void *out,
                     size_t cap, size_t *actual);

/* The hosted sparse ("KDMV") header, shared by extent_sparse.c and
 * extent_stream.c.  All offsets and sizes in sectors. */
#define KDMV_MAGIC 0x564d444bu
#define KDMV_FLAG_NL_DETECT 0x1u
#define KDMV_FLAG_RGD 0x2u
#define KDMV_FLAG_ZEROED_GRAIN 0x4u
#define KDMV_FLAG_COMPRESSED 0x10000u
#define KDMV_FLAG_MARKERS 0x20000u
#define KDMV_GD_AT_END 0xffffffffffffffffull
struct kdmv_header {
  uint32_t version, flags;
  uint64_t capacity;
  uint64_t grain;
  uint64_t desc_offset;
  uint64_t desc_size;
  uint32_t gtes_per_gt;
  uint64_t rgd_offset;
  uint64_t gd_offset;     /* KDMV_GD_AT_END: read the footer */
  uint64_t overhead;
  uint8_t unclean;
  uint16_t compress;      /* 0 none, 1 deflate */
};
void kdmv_encode_header(const struct kdmv_header *h, uint8_t b[SECTOR]);
/* Decode and validate: every field checked against FILE_SIZE; the grain
 * directory's fit is checked unless gd_offset is KDMV_GD_AT_END. */
int kdmv_decode_header(const uint8_t b[SECTOR], const char *path,
                       uint64_t file_size, struct kdmv_header *h);
/* Replace the descriptor embedded in F (at h->desc_offset, NUL-padded to
 * h->desc_size sectors); refused when it does not fit. */
int kdmv_write_descriptor(struct vfile *f, const struct kdmv_header *h,
                          const char *text, size_t len);

/* extent_nbd.c: an NBD export (URI) as a read-only extent; *SIZE gets the
 * export's size. */
bool nbd_uri_like(const char *path);
int nbd_extent_open(struct extent *e, const char *uri, bool writable,
                    uint64_t *size);
/* An image in the QEMU format FORMAT at PATH, served by a qemu-nbd that
 * libnbd starts (socket activation): read-only unless FLAGS has
 * VMDK_OPEN_RDWR; VMDK_OPEN_UNSAFE / VMDK_OPEN_NOCACHE pick qemu-nbd's
 * cache mode.  Errors carry qemu-nbd's own message; a missing qemu-nbd is
 * ENOENT naming the package. */
int qemu_extent_open(struct extent *e, const char *path, const char *format,
                     unsigned flags, uint64_t *size);
/* 0 when TOOL is an executable on PATH, else -1 (ENOENT, message naming
 * IMAGE, TOOL and the Debian package qemu-utils). */
int qemu_find_tool(const char *tool, const char *image);
/* Whether TOOL is an executable in a folder of PATH. */
bool tool_on_path(const char *tool);
/* The last bytes (at most CAP - 1) of a child's stderr kept in the memfd
 * FD, NUL-terminated in BUF: their count, or -1 when there are none. */
ssize_t child_stderr_tail(int fd, char *buf, size_t cap);
/* The last non-blank line of what the file FD holds (a tool's stderr),
 * without "qemu-nbd: " prefixes, into BUF.  0, or -1 when there is none. */
int qemu_last_line(int fd, char *buf, size_t cap);

/* qemu.c: the QEMU format whose signature F carries (qemu-img's probes:
 * "qcow2", "qcow", "qed", "vhdx", "vpc", "vdi", "parallels", "bochs",
 * "cloop", "luks"; trailers: a fixed VHD's footer "vpc", "dmg"), or NULL
 * (also on a read error, which is then set).  Never called for VMDK. */
const char *qemu_probe(struct vfile *f);

/* extent_stream.c: streamOptimized (compressed grains with markers).
 * Called by sparse_open when the header says the grains are compressed;
 * takes ownership of F.  HDR is the raw first sector. */
int stream_open(struct extent *e, struct vfile *f, const uint8_t hdr[SECTOR]);
/* After the KDMV file F (HEAD: its first N bytes) failed to open: if it is
 * a stream cut short inside its header, descriptor or front grain
 * directory, replace the error with one saying so (EINVAL). */
void stream_explain_cut(const struct vfile *f, const uint8_t *head, size_t n);
/* Lay out an empty stream-optimized extent in the empty writable file F. */
int stream_create(struct vfile *f, uint64_t capacity_sectors,
                  uint32_t grain_sectors, const char *descriptor);
/* extent_cowd.c: ESXi vmfsSparse ("COWD") extents.  Takes ownership of F. */
int cowd_open(struct extent *e, struct vfile *f);
/* extent_sesparse.c: ESXi seSparse extents.  Takes ownership of F. */
int sesparse_open(struct extent *e, struct vfile *f);

/* ---- gtcache.c: the grain table cache of sparse and COWD extents -------- */

/* Read the grain table of N 32-bit little-endian entries at SECTOR of F
 * into T (N entries, host order).  0, or -1 (error set by the read). */
int gt_read(struct vfile *f, uint64_t sector, uint32_t *t, uint32_t n);

#define GTC_NONE UINT32_MAX /* "no slot" / "no GD entry" */

/* Where a grain stands: its table's cache slot and its entry.  An entry
 * of 0 is unallocated (the backing, or zeros), 1 a zeroed grain (hosted
 * sparse with the zeroed-grain flag; the owner's lookup refuses it
 * elsewhere), else the grain's first sector in the file. */
struct grain_ref {
  uint32_t slot; /* cache slot of the table, GTC_NONE when there is none */
  uint32_t gdi, idx;
  uint32_t gte; /* 0 when there is no table */
};

struct gtc_slot {
  uint32_t *gt;          /* n_entries entries, host order; NULL until the
                            slot is first taken */
  uint32_t gdi;          /* GD entry held, GTC_NONE when none */
  uint32_t newer, older; /* recency list links (slot indexes, GTC_NONE at
                            the ends); only slots taken since init/drop */
};

/* At most n_slots tables (n_slots * n_entries * 4 bytes of tables: the
 * owner sizes n_slots from its memory budget), exact LRU eviction in O(1)
 * (see gtcache.c).  Single-threaded, as the extent that owns it.  The
 * owner's flush writes the dirty tables in its own order: gtc_next_dirty
 * yields them in slot order, gtc_clean marks each written. */
struct gtcache {
  uint32_t n_entries;     /* entries per table */
  uint32_t n_slots;       /* tables it may hold */
  uint32_t n_gdes;        /* GD entries slot_of covers */
  struct gtc_slot *slots; /* n_slots */
  uint32_t *slot_of;      /* per GD entry: slot index + 1, 0 = not cached */
  uint64_t *dirty;        /* bitmap: slot changed since written */
  uint32_t n_dirty;       /* bits set in dirty */
  uint32_t newest, oldest; /* ends of the recency list */
  uint32_t n_fresh;       /* slots [n_fresh, n_slots) not taken yet */
  int (*flush)(void *opaque); /* the owner's metadata flush */
  void *opaque;
  const char *path;       /* the extent file, for messages */
  /* Grain data and the entries waiting on it (gtc_write_data,
   * gtc_set_entry, gtc_issue): an entry reaches its table only after the
   * data write it waits on completed, so no table, cached or on file,
   * ever points at a grain whose data did not land. */
  struct vfile *f;        /* the extent file the data goes to */
  struct {                /* the data write held back, so that the next
                             one, when it continues it on file and in
                             memory, goes out with it as one call */
    uint64_t off;
    const uint8_t *buf;   /* the caller's bytes */
    size_t len;           /* 0: none held */
  } pend;
  struct gtc_defer {      /* an entry waiting on the held write */
    uint32_t slot, idx, value;
  } *defer;
  uint32_t n_defer, cap_defer;
  /* The owner's side of the data path (gtc_pread, gtc_pwrite,
   * gtc_allocate), set by the owner after gtc_init with f: */
  uint64_t grain_bytes;
  /* Find grain GNO: its table's slot (GTC_NONE when the table does not
   * exist and ALLOCATE is false; with ALLOCATE a missing table is made)
   * and entry, validated.  0 or -1. */
  int (*lookup)(void *opaque, uint64_t gno, bool allocate,
                struct grain_ref *g);
  /* Reserve one grain at the end of the file: its first sector. */
  int (*alloc)(void *opaque, uint32_t *sector);
};

/* Set up C for N_GDES GD entries and tables of N_ENTRIES entries, holding
 * at most N_SLOTS.  FLUSH(OPAQUE) is called by gtc_take before a dirty
 * table is evicted: it must issue the held data (gtc_issue) first, then
 * write EVERY dirty table (gtc_clean each) and return 0, or -1 with the
 * error set.  PATH (kept, not copied) names the file in messages.  The
 * owner then sets c->f, the file the data path writes to.  0, or -1
 * (ENOMEM, error set; C is then freed). */
int gtc_init(struct gtcache *c, uint32_t n_gdes, uint32_t n_entries,
             uint32_t n_slots, int (*flush)(void *opaque), void *opaque,
             const char *path);

/* The data path of sparse and COWD extents (one mechanism, gtcache.c).
 *
 * gtc_write_data queues N bytes of BUF (the caller's, valid until the
 * operation issues them) for file offset OFF, issuing the held write first
 * unless this one continues it.  gtc_set_entry sets entry IDX of the table
 * in SLOT to VALUE (marking it dirty) once every data write queued so far
 * has completed: at once when none is held, else when gtc_issue completes
 * the held write.  gtc_issue issues the held write; when it fails, the
 * entries waiting on it are dropped (they keep their old values: the
 * grains they would have pointed at are leaked space) and -1 returned
 * with the error set.  An operation ends with gtc_issue, and every
 * metadata flush starts with it (rule: data before the entries that point
 * at it).  0 or -1. */
int gtc_write_data(struct gtcache *c, uint64_t off, const void *buf,
                   size_t n);
int gtc_set_entry(struct gtcache *c, uint32_t slot, uint32_t idx,
                  uint32_t value);
int gtc_issue(struct gtcache *c);
/* The data path over the cache, for extent E (offsets relative to it):
 * read (unallocated grains from the backing, zeroed grains as zeros;
 * contiguous grains in one pread); write (into allocated grains in place,
 * else into new grains at the end of the file, the rest of a new grain
 * filled from the backing; ends by issuing everything it held).  0 or
 * -1. */
int gtc_pread(struct extent *e, struct gtcache *c, void *buf, size_t len,
              uint64_t off);
int gtc_pwrite(struct extent *e, struct gtcache *c, const void *buf,
               size_t len, uint64_t off);
/* Allocate a grain for G (entry 0 or 1) covering extent offset GRAIN_OFF,
 * write BUF (N bytes at IN within the grain; NULL: zeros) and fill the
 * rest (from the backing; zeros for a zeroed grain); the entry is set once
 * that data landed. */
int gtc_allocate(struct extent *e, struct gtcache *c, struct grain_ref *g,
                 uint64_t grain_off, uint64_t in, const uint8_t *buf,
                 size_t n);
/* Set G's entry to V, once the data held for it landed (gtc_set_entry). */
static inline int gtc_set_gte(struct gtcache *c, struct grain_ref *g,
                              uint32_t v) {
  g->gte = v;
  return gtc_set_entry(c, g->slot, g->idx, v);
}
/* Whether data or entries are still held (not yet issued). */
static inline bool gtc_holding(const struct gtcache *c) {
  return c->pend.len != 0 || c->n_defer != 0;
}
/* Release everything (dirty tables and held entries are dropped).
 * Accepts a zeroed C. */
void gtc_free(struct gtcache *c);
/* Cover N_GDES GD entries (a grown directory); new ones are not cached.
 * 0, or -1 (ENOMEM, error set; C unchanged). */
int gtc_grow(struct gtcache *c, uint32_t n_gdes);
/* The slot holding GD entry GDI (< n_gdes), made the most recently used,
 * or GTC_NONE when it is not cached. */
uint32_t gtc_lookup(struct gtcache *c, uint32_t gdi);
/* Whether GD entry GDI is cached, leaving the recency order alone. */
bool gtc_cached(const struct gtcache *c, uint32_t gdi);
/* Take a slot for a table about to be installed: a free one (an abandoned
 * one first, then the lowest never used), else the least recently used
 * table's, which is dropped -- after the owner's flush when it is dirty.
 * *SLOT then holds a buffer of n_entries entries (contents undefined) and
 * must be given to gtc_install, gtc_install_new, gtc_load or gtc_abandon
 * before the next take.  Before evicting, held data is issued
 * (gtc_issue), so no held entry refers to a slot that is reused.  0, or -1
 * (error set: the issue or flush failed, or ENOMEM); no table is dropped
 * then. */
int gtc_take(struct gtcache *c, uint32_t *slot);
/* Make the taken SLOT hold GD entry GDI's table (already in the buffer),
 * most recently used, dirty when DIRTY. */
void gtc_install(struct gtcache *c, uint32_t slot, uint32_t gdi, bool dirty);
/* The same for a new table: all entries 0, dirty. */
void gtc_install_new(struct gtcache *c, uint32_t slot, uint32_t gdi);
/* The same for the table at SECTOR of F (gt_read), clean.  On a read
 * error the slot is abandoned and -1 returned (error set). */
int gtc_load(struct gtcache *c, uint32_t slot, uint32_t gdi, struct vfile *f,
             uint64_t sector);
/* Give a taken SLOT back unused; it is the next one taken. */
void gtc_abandon(struct gtcache *c, uint32_t slot);
/* Dirty state of a slot holding a table; gtc_mark_dirty and gtc_clean
 * keep n_dirty. */
void gtc_mark_dirty(struct gtcache *c, uint32_t slot);
void gtc_clean(struct gtcache *c, uint32_t slot);
static inline bool gtc_is_dirty(const struct gtcache *c, uint32_t slot) {
  return (c->dirty[slot / 64] >> (slot % 64)) & 1;
}
/* The first dirty slot at index FROM or above, or GTC_NONE. */
uint32_t gtc_next_dirty(const struct gtcache *c, uint32_t from);
/* The entries of SLOT's table, and its GD entry. */
static inline uint32_t *gtc_table(const struct gtcache *c, uint32_t slot) {
  return c->slots[slot].gt;
}
static inline uint32_t gtc_gdi(const struct gtcache *c, uint32_t slot) {
  return c->slots[slot].gdi;
}
/* Empty the cache and free the table buffers (after the owner's flush:
 * dirty tables are dropped unwritten). */
void gtc_drop_all(struct gtcache *c);

/* ---- disk.c ------------------------------------------------------------- */

/* The handle.  Owned by disk.c; lifecycle.c (commit, rebase, resize) works
 * on it too. */
struct vmdk_disk {
  char *path;                /* as given ("ARCHIVE:MEMBER" in an archive) */
  char *display;             /* remote: PATH with its secrets blanked
                                (vmdk_get_path), else NULL */
  char *dir;                 /* folder of PATH: extent names are relative to
                                it (in an archive: MEMBER's folder there) */
  struct tar *archive;       /* the OVA the image is a member of (lib/ova.h:
                                its files are members too, read-only), owned;
                                NULL for files */
  unsigned flags;            /* VMDK_OPEN_* */
  char *confine_root;        /* VMDK_OPEN_CONFINE: the real path of the
                                folder every extent and backing file must
                                resolve into (the top image's folder, for
                                every layer of a chain); else NULL */
  bool raw;                  /* a raw image: one flat extent, no descriptor */
  char *qemu_format;         /* an image QEMU reads ("qcow2", ...) through
                                qemu-nbd (raw is set too), else NULL */
  struct descriptor *desc;   /* NULL for raw */
  bool desc_embedded;        /* in extent 0 (a KDMV file), else in PATH */
  bool desc_none;            /* a bare COWD file: the descriptor was made up
                                from its header, none is on disk (so no CID
                                is written); desc_embedded is set too, as
                                there is no separate descriptor file */
  bool cid_written;          /* the CID was renewed since the open */
  struct vmdk_disk *parent;  /* the backing image (read-only), or NULL */
  unsigned depth;            /* 0 for the image opened, 1 its parent... */
  unsigned threads;          /* compression threads (0: one per CPU) */
  int compression_level;     /* 1..12 (0: the default, 6) */
  struct extent *extents;
  size_t n_extents;
  uint64_t size;             /* bytes */
  /* vmdk_get_info storage */
  struct vmdk_extent_info *info_extents;
};

/* VMDK_OPEN_CONFINE: refuse (EPERM, message naming IMAGE, WHAT -- "extent
 * file", "backing file" -- PATH and where it resolves) a PATH that
 * resolves, after "..", symbolic links and absolute names, outside ROOT (a
 * real path).  Called before PATH is opened.  A PATH that does not exist
 * passes when its folder resolves inside ROOT (or does not exist either),
 * so that the open then reports it missing as usual; a dangling symbolic
 * link is refused (ENOENT).  ROOT NULL: no confinement, returns 0. */
int disk_confine(const char *root, const char *image, const char *what,
                 const char *path);
/* vmdk_open_format, confined to ROOT (as disk_confine; NULL: the folder of
 * PATH when FLAGS has VMDK_OPEN_CONFINE).  For files a confined image
 * opens on its behalf (the backing to commit into, a new backing). */
struct vmdk_disk *disk_open_confined(const char *path, int format,
                                     unsigned flags, const char *root);
/* PATH, an image in the QEMU format FORMAT, as a disk of one NBD extent
 * (qemu_extent_open).  Refused (EPERM) with VMDK_OPEN_CONFINE: qemu-nbd
 * follows the backing and data file names in the image unchecked. */
struct vmdk_disk *disk_open_qemu(const char *path, const char *format,
                                 unsigned flags);

/* A new streamOptimized disk (as vmdk_create makes with
 * VMDK_SUBFORMAT_STREAM_OPTIMIZED: O's size, adapter, hardware version,
 * grain size, threads and level) laid out in the empty writable file F
 * (a vf_append_window: a member of an archive being written), its
 * descriptor's extent named NAME; left open read-write.  Takes F (closed
 * on failure too).  NULL (error set) on failure; what was written to F
 * is then the caller's to discard. */
struct vmdk_disk *disk_create_stream_on(struct vfile *f, const char *name,
                                        const struct vmdk_create_options *o,
                                        unsigned flags);
/* Rewrite D's descriptor (embedded or its own file) from D->desc. */
int disk_write_descriptor(struct vmdk_disk *d);
/* Grow a split (twoGbMaxExtent*) image to SIZE bytes. */
int disk_grow_split(struct vmdk_disk *d, uint64_t size);
/* The extent holding virtual byte OFF (< d->size); NULL if none does
 * (never, for a consistent extent table). */
struct extent *disk_find_extent(struct vmdk_disk *d, uint64_t off);

/* ---- disk.c (backing) ----------------------------------------------------------- */

/* Fill BUF with what the disk's backing (parent) reads at virtual OFF, or
 * zeros when there is none. */
int disk_read_backing(struct vmdk_disk *d, void *buf, size_t len,
                      uint64_t virt_off);
bool disk_has_backing(const struct vmdk_disk *d);
/* Writes a new CID into the descriptor, once per open (later calls do
 * nothing).  Runs before the first change to any extent file: from each
 * writable extent file's before_write hook (io.c), so a refused or failed
 * write that changed nothing does not change the CID either; lifecycle.c
 * calls it before rewriting links and sizes. */
int disk_before_write(struct vmdk_disk *d);
/* A fresh random CID, never AVOID. */
uint32_t disk_new_cid(uint32_t avoid);
/* Write CID as D's new CID now (instead of a random one at the first
 * change): for commit, whose child has announced it (DDB_COMMIT_CID). */
int disk_set_cid(struct vmdk_disk *d, uint32_t cid);
/* The before_write hook disk.c arms on a writable extent's file: EXTENT
 * is its struct extent; calls disk_before_write.  Kinds that take the
 * hook over (extent_sparse.c) call it first. */
int extent_first_write(void *extent);

/* ---- check ---------------------------------------------------------------- */

struct check_ctx {
  struct vmdk_check_result *res;
  vmdk_problem_cb cb;
  void *opaque;
};
/* Report one problem (formats the message, counts it). */
void check_report(struct check_ctx *c, enum vmdk_problem_kind kind,
                  uint64_t leaked_bytes, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Whether the LEN bytes at OFF of F read as zeros (holes are skipped
 * without reading; bytes past the end of the file are zeros): leaked space
 * that holds nothing but zeros costs nothing and is not reported.  Sets
 * *ZERO; returns 0 or -1.  (lib/repair.c) */
int range_is_zero(struct vfile *f, uint64_t off, uint64_t len, bool *zero);

/* The checks of hosted sparse and COWD extents (lib/check_space.c).  All
 * positions and lengths in sectors. */
/* A region of the file that something points at: a grain (TABLE and ENTRY:
 * its GD and GT index), a table (TABLE: its GD index; ENTRY UINT32_MAX) or
 * other metadata (both UINT32_MAX).  WHAT names a table or metadata. */
struct region {
  uint64_t start, len;
  uint32_t table, entry;
  const char *what;
};
struct regions {
  struct region *r; /* owned: free(r) when done */
  size_t n, cap;
};
int regions_add(struct regions *rs, uint64_t start, uint64_t len,
                uint32_t table, uint32_t entry, const char *what);
/* Sort RS and report, for F: every region that overlaps one before it on
 * file (corrupt), and every stretch at or past DATA_START that no region
 * covers, up to FILE_SECTORS, holding anything but zeros (leaked).  Sets
 * *COVERED_OUT (when not NULL) to the end of the furthest region.  0 or -1
 * (an I/O error reading a stretch). */
int regions_sweep(struct regions *rs, struct check_ctx *c, struct vfile *f,
                  uint64_t data_start, uint64_t file_sectors,
                  uint64_t *covered_out);
/* A grain table (or redundant one) inside the file, for mark_shared_tables. */
struct table_ref {
  uint64_t sector;
  uint32_t gdi;
  bool redundant;
};
/* Sort T (N tables of TABLE_SECTORS each) and, for every table that
 * overlaps one before it on file, report it and set SKIP[gdi] bit 1 (a
 * table) or 2 (a redundant table): the check then reads every sector of
 * tables once, so its time and memory are bounded by the file, however
 * many directory entries of a hostile file point at the same table (2^16
 * entries at one 256 KiB table would otherwise mean 16 GiB of reads and
 * 2^32 grains to track). */
void mark_shared_tables(struct check_ctx *c, const char *path,
                        struct table_ref *t, size_t n, uint64_t table_sectors,
                        uint8_t *skip);

/* ---- compare.c, convert.c: walking runs, copying ----------------------- */

/* Caches the run of a disk that contains a given offset, so walking a disk
 * front to back costs one vmdk_block_status() call per run. */
struct run_cursor {
  struct vmdk_disk *disk;
  uint64_t size;       /* virtual size of DISK */
  bool valid;          /* RUN holds a run */
  struct vmdk_run run; /* run.file is owned by DISK */
};
void run_cursor_init(struct run_cursor *c, struct vmdk_disk *disk);
/* Point *RUN at the run containing OFF (< size), never reaching past the
 * end of the disk.  0, or -1 (error set). */
int run_cursor_at(struct run_cursor *c, uint64_t off,
                  const struct vmdk_run **run);
/* Whether the N bytes at P are all zero (N may be 0). */
bool buf_is_zero(const void *p, size_t n);

/* The copy engine of vmdk_convert (lib/convert.c): write every BLOCK-sized
 * piece (BLOCK a power of two: DST's cluster, at most 2 MiB) of SRC's
 * virtual disk that is not all zeros into DST, which reads as zeros, at
 * the same offset; runs SRC reports as zeros are skipped unread.  Each
 * cluster of DST is written once, in ascending order (a stream needs
 * that), while a second thread reads SRC ahead (SRC is used only from it
 * during the call).  WRITETHROUGH: flush DST after every write.  CB (may
 * be NULL) gets the bytes done of SRC's size; non-zero stops the copy
 * (ECANCELED, "NAME: cancelled").  Errors of the reading thread are set
 * again in the caller's.  0 or -1; DST is left open either way. */
int copy_nonzero(struct vmdk_disk *src, struct vmdk_disk *dst, uint64_t block,
                 bool writethrough, vmdk_progress_cb cb, void *opaque,
                 const char *name);

#endif /* VMDKIT_INTERNAL_H */
