/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit — VMware virtual disk (VMDK) library.
 *
 * The one public header.  Everything a program (the vmdkit CLI, the nbdkit
 * plugin, the FUSE mount) needs goes through the opaque handle declared here.
 *
 * Conventions, for every function below unless it says otherwise:
 *  - Offsets and lengths are in bytes of the *virtual* disk.
 *  - Calls that can fail return -1 (or NULL) and record a message and an
 *    errno for the calling thread, retrieved with vmdk_get_error() and
 *    vmdk_get_errno().  The message names the file and the exact problem
 *    with its numbers, e.g. "disk.vmdk: grain table entry 17 of table 3
 *    points past the end of the file (sector 9000000, file 2 MiB)".
 *  - The library never prints and never exits.
 *  - A handle is not thread-safe: callers serialise calls on one handle
 *    (different handles may be used from different threads).
 *  - Every *_close / *_free function accepts NULL.
 */
#ifndef VMDKIT_H
#define VMDKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(VMDKIT_BUILDING_LIBRARY)
#define VMDK_API __attribute__((visibility("default")))
#else
#define VMDK_API
#endif

#define VMDKIT_VERSION_MAJOR 0
#define VMDKIT_VERSION_MINOR 4
#define VMDKIT_VERSION_MICRO 0
#define VMDKIT_VERSION_STRING "0.4.0"

/* The library's version at run time ("MAJOR.MINOR.MICRO"). */
VMDK_API const char *vmdk_version(void);

/* The last error of the calling thread: a message (never NULL; "" when
 * there was none) and an errno value (0 when there was none). */
VMDK_API const char *vmdk_get_error(void);
VMDK_API int vmdk_get_errno(void);

struct vmdk_disk;

/* ---- Opening ---------------------------------------------------------- */

/* Open flags. */
#define VMDK_OPEN_RDWR     0x1u /* open for writing; default is read-only */
#define VMDK_OPEN_CONFINE  0x2u /* refuse extent/backing paths that resolve
                                   (after "..", symlinks and absolute
                                   names) outside the folder of the image
                                   opened, before opening them; every
                                   layer of a chain is held to that (the
                                   top image's) folder */
#define VMDK_OPEN_NOCACHE  0x4u /* -t none: O_DIRECT where possible */
#define VMDK_OPEN_UNSAFE   0x8u /* -t unsafe: flush never syncs */
#define VMDK_OPEN_NO_BACKING 0x10u /* do not open the backing chain: what
                                      unallocated grains would read from it
                                      reads as zeros.  For repairing a link
                                      (vmdk_set_backing) whose parent moved
                                      or changed. */
#define VMDK_OPEN_SALVAGE  0x20u /* read a damaged streamOptimized extent
                                    (truncated in transfer, or its writer
                                    killed: no footer, grains cut off) as
                                    far as its markers go: the grains found
                                    whole read as they were, everything
                                    else as zeros.  Without it such a
                                    stream is refused at open (ENODATA,
                                    "FILE: stream is truncated after N
                                    bytes: what is missing; K grains
                                    recovered ...").  Read-only opens only:
                                    with VMDK_OPEN_RDWR a damaged stream is
                                    refused all the same (EROFS).  What was
                                    missing: vmdk_get_info(), the extent's
                                    stream_damage. */

/* Image formats for vmdk_open_format(). */
#define VMDK_FORMAT_AUTO 0 /* probe: VMDK magic or descriptor text; a
                              format QEMU reads (as vmdk_open_qemu with
                              no format); else raw */
#define VMDK_FORMAT_VMDK 1 /* must be a VMDK, else an error */
#define VMDK_FORMAT_RAW  2 /* a plain file of bytes */

/* Open the image at PATH.  For a VMDK, PATH is the descriptor file or a
 * monolithic sparse file with an embedded descriptor.  A raw image is a
 * disk of one flat extent covering the whole file.  Returns NULL on error.
 * Read-only opens never write to any file. */
VMDK_API struct vmdk_disk *vmdk_open(const char *path, unsigned flags);
VMDK_API struct vmdk_disk *vmdk_open_format(const char *path, int format,
                                            unsigned flags);

/* Remote image files.  PATH (of vmdk_open, vmdk_ova_verify,
 * vmdk_ovf_read) may be the URL of an image *file*:
 *   http://HOST[:PORT]/PATH[?QUERY], https://...   (nbdkit's curl plugin)
 *   ssh://[USER@]HOST[:PORT]/PATH                   (nbdkit's ssh plugin)
 *   file+nbd://HOST[:PORT]/EXPORT, file+nbds://..., file+nbd+unix:///EXPORT
 *   ?socket=SOCKET, file+nbds+unix://...  (an NBD export holding the file's
 *   bytes; a bare nbd:// URI is a whole virtual disk, see above)
 * Each file is read through a private nbdkit that libnbd starts (socket
 * activation; nbdkit must be installed), read-only.  Files a descriptor
 * names (extents, the backing file, an OVF's disks) resolve relative to
 * its URL, its query string kept (ESXi's ?dcPath=...&dsName=...), and must
 * lie under its folder unless the option confine=no is given.  A
 * USER:PASSWORD in the URL is taken out of it (messages never show it)
 * and used for that host only.
 *
 * vmdk_remote_option sets KEY=VALUE for every remote file opened after it
 * (process-wide, thread-safe; a later value of a key replaces the earlier
 * one, except filter and header, which add up).  vmdkit's own keys:
 *   connections=N   parallel connections (nbdkit processes) per file while
 *                   reading ahead, 1-16 (default 4)
 *   readahead=BYTES read-ahead window (default 32M; 0: none)
 *   confine=no      let a descriptor name files outside its URL's folder
 *   filter=NAME     add an nbdkit filter (e.g. delay, retry), in order
 * Every other key is passed to the nbdkit plugin: user, password, cookie,
 * header, sslverify=false, cainfo, proxy, timeout (curl); identity,
 * known-hosts, verify-remote-host (ssh); and the filters' own keys.  The
 * values of password, proxy-password, cookie and header are secrets: they
 * reach nbdkit through an inherited memory file, never its command line,
 * and no error message shows them (nor a query value of a presigned URL's
 * signature, token or credential).  password=+FILE reads a file.
 * Returns 0, or -1 (EINVAL) for an unknown form of a vmdkit key. */
VMDK_API int vmdk_remote_option(const char *key, const char *value);
/* The name the library gives DISK in its messages: the path it was opened
 * with, or the file a descriptor named (a parent: relative to its child),
 * a URL without its user and password, "ARCHIVE.ova:MEMBER".  Valid until
 * DISK is closed. */
VMDK_API const char *vmdk_get_path(const struct vmdk_disk *disk);
/* Forget every option set so far (and the URLs' credentials). */
VMDK_API void vmdk_remote_options_clear(void);

/* Open PATH, an image in a format QEMU reads -- QEMU_FORMAT as qemu-img
 * names it: "qcow2", "vhdx", "vpc" (VHD), "vdi", "qed", "parallels",
 * "dmg", "qcow", "bochs", "cloop", ... -- through QEMU's own NBD server:
 * `qemu-nbd -f QEMU_FORMAT [--read-only] PATH`, started by libnbd with
 * systemd socket activation (a private Unix socket, no TCP port, no
 * temporary file) and stopped by vmdk_close, which waits for it.  The
 * handle is a raw disk of one extent: vmdk_pread, vmdk_block_status
 * (qemu-nbd's allocation map: holes are runs without VMDK_RUN_PRESENT),
 * and with VMDK_OPEN_RDWR vmdk_pwrite, vmdk_zero (NBD write-zeroes: the
 * format may free the range) and vmdk_flush; vmdk_get_info's format is
 * QEMU_FORMAT.  VMDK_OPEN_UNSAFE and VMDK_OPEN_NOCACHE become qemu-nbd's
 * --cache=unsafe and --cache=none.  QEMU_FORMAT NULL: probed from PATH's
 * signature as qemu-img probes (qcow2 "QFI\xfb", "QED", "vhdxfile", VPC's
 * "conectix" -- also a fixed VHD's footer, which qemu-img reads as raw --,
 * the VDI signature, parallels, dmg's "koly" trailer, ...); vmdk_open
 * probes the same after VMDK.  Needs qemu-nbd on PATH (Debian: qemu-utils).
 * Returns NULL on error: ENOENT "PATH: qemu-nbd is not installed ... the
 * Debian package qemu-utils"; qemu-nbd's own message in one line when it
 * refuses the image ("PATH: qemu-nbd -f qcow2: Failed to ...: Image is not
 * in qcow2 format"); EPERM with VMDK_OPEN_CONFINE (qemu-nbd follows the
 * backing and data file names the image holds unchecked); EINVAL when
 * probing finds no QEMU signature.  Later I/O errors carry qemu-nbd's last
 * message too.  Writes and zeroing are sent without waiting for the answer
 * (at most 4 requests in flight, each with its own copy of the bytes;
 * overlapping requests wait for each other): a write the server fails is
 * reported by the next call on the handle, at the latest by vmdk_flush or
 * vmdk_close, and every later write, flush and close fails too. */
VMDK_API struct vmdk_disk *vmdk_open_qemu(const char *path,
                                          const char *qemu_format,
                                          unsigned flags);

/* Point DISK (opened read-write, sparse) at a new backing image, or at
 * none when BACKING is NULL, rewriting only the link: parentFileNameHint
 * (BACKING as given; a relative path is relative to DISK's folder) and
 * parentCID (the backing's CID).  What DISK reads through the link may
 * change: this is `rebase -u`.  Refuses a backing whose chain contains
 * DISK.  Returns 0 or -1. */
VMDK_API int vmdk_set_backing(struct vmdk_disk *disk, const char *backing,
                              int format);

/* The backing (parent) image DISK reads its unallocated grains from, or
 * NULL.  Opened read-only with DISK and owned by it: valid until DISK is
 * closed or its link changes (vmdk_set_backing, vmdk_rebase, vmdk_commit:
 * call this again after them); do not close it. */
VMDK_API struct vmdk_disk *vmdk_get_backing(struct vmdk_disk *disk);

/* Write everything pending (vmdk_flush), release the handle.  Returns -1
 * if the final flush or closing a file failed; the handle is released
 * either way. */
VMDK_API int vmdk_close(struct vmdk_disk *disk);

/* Release the handle WITHOUT writing what is pending: writes not yet
 * flushed are lost, or partly in the files, which may then not be valid
 * images.  Only for a handle whose files are about to be removed (a failed
 * or interrupted convert: no time is spent finishing them); anything else
 * wants vmdk_close().  Returns -1 if a close(2) failed. */
VMDK_API int vmdk_close_discard(struct vmdk_disk *disk);

/* ---- Creating --------------------------------------------------------- */

/* Subformats vmdk_create() makes. */
enum vmdk_subformat {
  VMDK_SUBFORMAT_MONOLITHIC_SPARSE = 0, /* one KDMV file, embedded descriptor */
  VMDK_SUBFORMAT_MONOLITHIC_FLAT,       /* NAME.vmdk + NAME-flat.vmdk */
  VMDK_SUBFORMAT_RAW,                   /* a plain file (not a VMDK) */
  VMDK_SUBFORMAT_TWOGB_SPARSE,   /* NAME.vmdk + NAME-s001.vmdk...: 2047 MiB
                                    hosted sparse extents */
  VMDK_SUBFORMAT_TWOGB_FLAT,     /* NAME.vmdk + NAME-f001.vmdk...: 2047 MiB
                                    flat extents */
  VMDK_SUBFORMAT_STREAM_OPTIMIZED, /* one file of compressed grains with
                                      markers, footer and end-of-stream, as
                                      VMware exports (OVA) */
  VMDK_SUBFORMAT_VMFS,           /* ESXi thick/thin: NAME.vmdk +
                                    NAME-flat.vmdk, createType "vmfs" */
};

/* The createType name of a subformat ("monolithicSparse", ...; "raw"), or
 * NULL for an unknown value. */
VMDK_API const char *vmdk_subformat_name(enum vmdk_subformat s);
/* Look up a subformat by name, case-insensitively; accepts the spellings
 * real files use ("2GbMaxExtentSparse" as well as "twoGbMaxExtentSparse").
 * Returns 0, or -1 (EINVAL) for an unknown name. */
VMDK_API int vmdk_subformat_from_name(const char *name,
                                      enum vmdk_subformat *s);

/* Options for vmdk_create().  Zero-initialise, then set what you need;
 * a zero field means "the default". */
struct vmdk_create_options {
  uint64_t size_bytes;           /* virtual size; rounded up to 512 bytes */
  enum vmdk_subformat subformat; /* default monolithicSparse */
  const char *adapter_type;      /* ide|buslogic|lsilogic|legacyESX|pvscsi;
                                    default "lsilogic" */
  unsigned hw_version;           /* ddb.virtualHWVersion; default 4 (14
                                    for streamOptimized, for vSphere) */
  uint32_t grain_sectors;        /* grain size in sectors, power of two,
                                    8..2^21 (hosted sparse limit); default 128 */
  const char *backing_file;      /* make a copy-on-write child of this
                                    image (sparse subformats): a relative
                                    path is relative to the child's folder,
                                    as the child's parentFileNameHint will
                                    be; SIZE 0 means the backing's size */
  int backing_format;            /* VMDK_FORMAT_* of backing_file (AUTO) */
  unsigned threads;              /* streamOptimized: compression threads
                                    (0: one per online CPU) */
  int compression_level;         /* streamOptimized: 1 (fast) .. 12
                                    (small); 0: 6, zlib's default */
  int zeroed_grain;              /* non-zero: version-2 header with the
                                    zeroed-grain flag (GTE 1 reads as zeros) */
};

/* Create a new image at PATH (and its extent files); it is left open
 * read-write.  Existing files are overwritten.  Returns NULL on error (no
 * partially created files are left behind). */
VMDK_API struct vmdk_disk *vmdk_create(const char *path,
                                       const struct vmdk_create_options *opts,
                                       unsigned flags);

/* Create PATH in the QEMU format QEMU_FORMAT ("qcow2", "vhdx", "vdi",
 * "vpc", "qed", "parallels", "qcow": what `qemu-img create -f` makes) with
 * `qemu-img create -f QEMU_FORMAT PATH SIZE` (vpc with force_size=on: the
 * size asked, not rounded to a CHS geometry) and open it read-write as
 * vmdk_open_qemu does.  Of OPTS only size_bytes is used (rounded up to
 * 512); a backing_file is refused (EINVAL).  The new image reads as zeros.
 * Existing files are overwritten.  Returns NULL on error (qemu-img's own
 * message; nothing is left behind). */
VMDK_API struct vmdk_disk *vmdk_create_qemu(
    const char *path, const char *qemu_format,
    const struct vmdk_create_options *opts, unsigned flags);

/* ---- Data (shaped like NBD: get_size, pread, pwrite, zero, flush, extents) */

/* Virtual size in bytes. */
VMDK_API uint64_t vmdk_get_size(const struct vmdk_disk *disk);

/* Read/write COUNT bytes at OFFSET.  Any alignment; the range must lie
 * within the disk (else EINVAL).  A write may allocate grains: the data is
 * on the file before the grain table entry that points at it.  Returns 0
 * or -1. */
VMDK_API int vmdk_pread(struct vmdk_disk *disk, void *buf, size_t count,
                        uint64_t offset);
VMDK_API int vmdk_pwrite(struct vmdk_disk *disk, const void *buf,
                         size_t count, uint64_t offset);
/* (A write that is refused -- read-only handle or extent, damaged
 * metadata, past the end -- changes no file: the new CID and the
 * uncleanShutdown flag are written only with the first byte that really
 * goes to an extent file.) */

/* Whether vmdk_pwrite of COUNT bytes at OFFSET would be accepted: the range
 * lies within the disk, the handle is writable and every extent the range
 * touches takes writes (not RDONLY/NOACCESS/ZERO, not a stream grain that
 * is already written).  Writes nothing.  For a caller that writes one range
 * in several calls and must refuse all of it before the first.  Returns 0,
 * or -1 with the error vmdk_pwrite would give. */
VMDK_API int vmdk_check_write(struct vmdk_disk *disk, uint64_t count,
                              uint64_t offset);

/* Make COUNT bytes at OFFSET read as zeros, without allocating where the
 * format allows it: unallocated grains of a standalone image stay
 * unallocated; over a backing file, whole unallocated grains become
 * zeroed-grain entries where the image has the zeroed-grain flag;
 * allocated grains are zeroed in place (never leaked), their host space
 * freed where the file system can punch holes.  Returns 0 or -1. */
VMDK_API int vmdk_zero(struct vmdk_disk *disk, uint64_t count,
                       uint64_t offset);

/* Make every write acknowledged so far durable: grain data is synced before
 * the grain tables that point at it are written, then those are synced.
 * With VMDK_OPEN_UNSAFE nothing is synced, but metadata is still written.
 * Returns 0 or -1.
 *
 * A failed sync is never forgotten.  When an fdatasync fails, the kernel
 * may already have dropped the pages it could not write, so a later sync
 * that succeeds proves nothing: from then on every vmdk_flush and
 * vmdk_close of this handle fails, with a message saying that data written
 * since the last successful flush may be lost.  (What a successful flush
 * acknowledged before that stays on disk.)  Reopen the image and check it;
 * the metadata never points at data that did not land.
 *
 * When any write, truncate or sync fails part-way through vmdk_pwrite,
 * vmdk_zero or vmdk_flush, the call returns -1 and the image keeps, for
 * every sector, either its old or its new bytes: a grain-table entry is
 * set (in memory and on disk) only after the data it points at was
 * written, and entries waiting on a write that failed are dropped.  The
 * handle stays usable: the write may be retried. */
VMDK_API int vmdk_flush(struct vmdk_disk *disk);

/* Block status of one run of the virtual disk. */
#define VMDK_RUN_PRESENT 0x1u /* allocated in the image (data or zeroed grain) */
#define VMDK_RUN_ZERO    0x2u /* reads as zeros */
#define VMDK_RUN_DATA    0x4u /* stored data (may still happen to be zeros) */

struct vmdk_run {
  uint64_t offset;      /* virtual byte offset */
  uint64_t length;      /* bytes */
  unsigned flags;       /* VMDK_RUN_* */
  int64_t file_offset;  /* byte offset in FILE for DATA runs stored
                           uncompressed and contiguously, else -1 */
  const char *file;     /* the extent file holding the run, or NULL;
                           valid until the handle is closed */
  int depth;            /* the layer the run comes from: 0 = this image,
                           1 = its backing image, ... (for runs that read
                           as zeros because no layer has them: the depth
                           of the last layer that covers the offset) */
};

/* Call CB for consecutive runs covering [OFFSET, OFFSET+COUNT), in order,
 * merging neighbours with equal flags that are contiguous on file.  CB
 * returns 0 to go on, non-zero to stop (vmdk_block_status then returns 0).
 * Returns 0 or -1. */
typedef int (*vmdk_run_cb)(void *opaque, const struct vmdk_run *run);
VMDK_API int vmdk_block_status(struct vmdk_disk *disk, uint64_t offset,
                               uint64_t count, vmdk_run_cb cb, void *opaque);

/* ---- Image lifecycle: commit, rebase, resize --------------------------- */

/* Progress of a long call: DONE of TOTAL bytes.  Return non-zero to cancel:
 * the call then stops at a consistent point and fails with ECANCELED. */
typedef int (*vmdk_progress_cb)(void *opaque, uint64_t done, uint64_t total);

/* Write everything DISK itself holds (its allocated and zeroed grains) into
 * its backing image, which is opened read-write for the call (and grown if
 * DISK is larger), so that the backing then reads as DISK did.  DISK's
 * parentCID is updated to the backing's new CID, so DISK still opens.
 * DISK must be opened read-write.  CB may be NULL.  Returns 0 or -1. */
VMDK_API int vmdk_commit(struct vmdk_disk *disk, vmdk_progress_cb cb,
                         void *opaque);

/* Safe rebase: copy into DISK every range that reads differently through
 * NEW (a path as for vmdk_set_backing; NULL: no backing) than through its
 * current backing chain, then link DISK to NEW.  What DISK reads does not
 * change.  Returns 0 or -1. */
VMDK_API int vmdk_rebase(struct vmdk_disk *disk, const char *backing,
                         int format, vmdk_progress_cb cb, void *opaque);

/* Change the virtual size to SIZE bytes (rounded up to 512).  Growing works
 * for raw, flat, monolithicSparse and split images; shrinking only with
 * ALLOW_SHRINK and only when the part cut off holds no data of DISK's own.
 * Returns 0 or -1. */
VMDK_API int vmdk_resize(struct vmdk_disk *disk, uint64_t size,
                         int allow_shrink);

/* ---- Copying and comparing (vmdkit convert, vmdkit compare) ------------ */

/* What vmdk_convert() makes.  Zero-initialise, then set what you need. */
struct vmdk_convert_options {
  struct vmdk_create_options create; /* the new image, as for vmdk_create():
                                        subformat (VMDK_SUBFORMAT_RAW: a raw
                                        file), adapter, grain size, threads,
                                        compression level...; size_bytes is
                                        ignored (the source's size).  With
                                        backing_file (a sparse subformat) the
                                        new image is a child of it holding
                                        only the clusters that read
                                        differently from it */
  const char *qemu_format;  /* non-NULL: make DST in this QEMU format
                               ("qcow2", "vhdx", ... as vmdk_create_qemu;
                               CREATE then gives only the size) */
  unsigned flags;           /* open flags of the new image: VMDK_OPEN_UNSAFE
                               (nothing synced: what qemu-img convert does by
                               default), VMDK_OPEN_NOCACHE,
                               VMDK_OPEN_CONFINE (for the backing file's
                               chain); 0: synced at the end */
  int writethrough;         /* non-zero: flush after every write */
  vmdk_progress_cb progress; /* may be NULL: the bytes of SRC done of its
                                size, first 0 once DST was created, last
                                the size once DST is complete and closed;
                                non-zero cancels (ECANCELED) */
  void *opaque;             /* passed to PROGRESS */
};

/* Copy the virtual disk of SRC (read through its backing chain: the copy
 * is flattened) into a new image at DST, which is created (an existing
 * file is overwritten) and closed.  Runs SRC reports as zeros are skipped
 * unread and all-zero clusters are not written, so they stay unallocated
 * in DST; clusters are written once each, in ascending order (what a
 * streamOptimized DST needs), while a second thread reads SRC ahead.
 * Refused before anything is created (EINVAL): a DST that is a file of
 * SRC or of its backing chain, or of the chain of OPTS->create.backing_file.
 * On any failure or cancellation every file of the new image is removed
 * and the error names the step ("DST: ..." or SRC's own message).  SRC is
 * only read; the call uses it from one other thread, so SRC must not be
 * used elsewhere during the call.  OPTS may be NULL (a raw copy).
 * Returns 0 or -1. */
VMDK_API int vmdk_convert(struct vmdk_disk *src, const char *dst,
                          const struct vmdk_convert_options *opts);

/* How two disks differ (vmdk_compare). */
enum vmdk_compare_kind {
  VMDK_COMPARE_SAME = 0,       /* they read the same */
  VMDK_COMPARE_CONTENT = 1,    /* a byte differs, at OFFSET */
  VMDK_COMPARE_ALLOCATION = 2, /* strict: allocated in one, not in the
                                  other, from OFFSET */
  VMDK_COMPARE_SIZE = 3,       /* strict: the virtual sizes differ */
};

struct vmdk_compare_result {
  enum vmdk_compare_kind kind;
  uint64_t offset;  /* CONTENT: the first byte that differs; ALLOCATION:
                       where the allocation first differs; else 0 */
  int size_differs; /* the virtual sizes differ (set whatever KIND is; not
                       strict, the bytes past the end of the smaller disk
                       are compared with zeros once the common part is
                       the same) */
};

#define VMDK_COMPARE_STRICT 0x1u /* as qemu-img compare -s: different
                                    sizes, or a range allocated in one disk
                                    and not in the other, are a difference */

/* Compare what A and B read, as qemu-img compare does: stops at the first
 * difference.  When the sizes differ (and not strict), the bytes past the
 * end of the smaller disk must read as zeros in the larger.  Ranges both
 * report as zeros are not read.  PROGRESS (may be NULL) gets the bytes
 * compared of the larger size; non-zero cancels (ECANCELED).  Returns 0
 * when the comparison ran (look at *RESULT), -1 on error. */
VMDK_API int vmdk_compare(struct vmdk_disk *a, struct vmdk_disk *b,
                          unsigned flags, struct vmdk_compare_result *result,
                          vmdk_progress_cb progress, void *opaque);

/* ---- Information ------------------------------------------------------ */

struct vmdk_extent_info {
  const char *filename;   /* as resolved on disk */
  const char *type;       /* "SPARSE", "FLAT", "ZERO", ... */
  const char *access;     /* "RW", "RDONLY", "NOACCESS" */
  uint64_t size_bytes;    /* virtual bytes this extent covers */
  uint64_t file_offset;   /* FLAT: byte offset in the file */
  uint64_t grain_bytes;   /* SPARSE: grain size, else 0 */
  unsigned version;       /* SPARSE: header version, else 0 */
  int compressed;         /* non-zero for compressed grains */
  int zeroed_grain;       /* SPARSE: zeroed-grain flag */
  int unclean;            /* SPARSE: the uncleanShutdown byte is set */
  /* streamOptimized extents only (else NULL, NULL, 0): */
  const char *stream;        /* "complete"; "no-end-of-stream" (footer and
                                grain directory intact, only the
                                end-of-stream marker after them missing:
                                nothing is lost, the extent opens);
                                "truncated" (data may be lost: opens only
                                with VMDK_OPEN_SALVAGE) */
  const char *stream_damage; /* when not complete: what is missing, with
                                the numbers, as the open error says it
                                without the file name ("truncated after
                                1048576 bytes: no grain directory, footer
                                or end-of-stream marker; 13 grains
                                recovered (832 KiB of the 30 MiB disk)") */
  uint64_t stream_grains;    /* grains stored in the file (truncated: the
                                ones recovered whole) */
};

struct vmdk_info {
  const char *format;        /* "vmdk" or "raw", or the QEMU format of a
                                vmdk_open_qemu image ("qcow2", ...) */
  const char *create_type;   /* descriptor createType, or NULL for raw */
  uint64_t size_bytes;       /* virtual size */
  uint64_t cluster_bytes;    /* grain size of the first sparse extent, or 0 */
  uint64_t actual_bytes;     /* space allocated on the host, all files */
  uint32_t cid, parent_cid;  /* descriptor CIDs (0xffffffff: none) */
  const char *adapter_type;  /* ddb.adapterType or NULL */
  const char *hw_version;    /* ddb.virtualHWVersion or NULL */
  const char *parent_hint;   /* parentFileNameHint or NULL */
  int dirty;                 /* an uncleanShutdown byte is set */
  size_t n_extents;
  const struct vmdk_extent_info *extents;
};

/* Fill *INFO.  The strings and the extent array belong to the handle and
 * stay valid until the next call on it.  Returns 0 or -1. */
VMDK_API int vmdk_get_info(struct vmdk_disk *disk, struct vmdk_info *info);

/* ---- Checking --------------------------------------------------------- */

enum vmdk_problem_kind {
  VMDK_PROBLEM_CORRUPT = 1, /* metadata is wrong; data may read wrongly */
  VMDK_PROBLEM_LEAK = 2,    /* file space no table points at (harmless) */
};

/* Called once per problem found, with a full message naming the file. */
typedef void (*vmdk_problem_cb)(void *opaque, enum vmdk_problem_kind kind,
                                const char *message);

struct vmdk_check_result {
  uint64_t corruptions;     /* problems of kind CORRUPT */
  uint64_t leaks;           /* leaked regions */
  uint64_t leaked_bytes;    /* their total size */
  uint64_t allocated_grains;
  uint64_t total_grains;    /* grains the sparse extents can address */
};

/* Check every extent's metadata (grain directories against their redundant
 * copies, grain table entries past the end of file, grains overlapping
 * each other or the metadata, leaked space).  Reports every problem, not
 * just the first, through CB (may be NULL).  Leaked space that holds only
 * zeros (a hole) is not reported.  In an image whose uncleanShutdown byte
 * is set, what a flush cut short leaves -- a redundant grain table behind
 * its grain table, a redundant directory entry without its grain
 * directory entry -- is reported as kind LEAK (harmless: the primary is
 * what is read; VMDK_REPAIR_LEAKS brings the copies in line).  Returns 0
 * when the check ran (look at *RESULT), -1 when it could not. */
VMDK_API int vmdk_check(struct vmdk_disk *disk, struct vmdk_check_result *result,
                        vmdk_problem_cb cb, void *opaque);

/* What vmdk_repair() repairs (qemu-img check -r leaks|all). */
#define VMDK_REPAIR_LEAKS 1u /* leaked space: cut off at the end of the
                                file, holes punched where it lies inside;
                                stale redundant copies left by an
                                interrupted update */
#define VMDK_REPAIR_ALL 3u   /* and corruption: directory/redundant
                                disagreement (the primary wins when its
                                table is usable), bad grain table entries
                                (past the end of file or the capacity, into
                                the metadata: the other copy's entry, else
                                cleared), grains shared by two entries
                                (each gets its own copy), a file cut inside
                                a grain (extended over it) */

/* Repair DISK (opened read-write) in every extent that can be repaired
 * (hosted sparse and COWD): WHAT is VMDK_REPAIR_LEAKS or VMDK_REPAIR_ALL.
 * Grain data is never moved or changed, and what the disk reads changes
 * only where an entry could not be read before (it is cleared: what it
 * pointed at is lost anyway, or taken from the redundant copy) or where a
 * grain directory entry lost in a cleanly closed image is taken back from
 * the redundant directory; new tables and copies are synced before
 * anything points at them.  A consistent image is left as it was but for
 * its uncleanShutdown byte, which is cleared.  Each repair done is reported
 * through CB (may be NULL) with the kind of problem it fixed and a message
 * saying what was done.  Then a fresh vmdk_check() fills *AFTER (its
 * problems are not passed to CB: call vmdk_check() to list them).  Returns
 * 0 when the repair and the check ran (look at *AFTER), -1 on error. */
VMDK_API int vmdk_repair(struct vmdk_disk *disk, unsigned what,
                         struct vmdk_check_result *after, vmdk_problem_cb cb,
                         void *opaque);

/* ---- OVA: an appliance for vSphere ------------------------------------ */

/* What vmdk_ova_create() puts into the appliance.  Zero-initialise, then
 * set what you need; a zero field means the default, chosen so that the
 * OVA imports as it is into vSphere 7 and 8 and Workstation 16 and 17. */
struct vmdk_ova_options {
  const char *const *disks;  /* the source images, N_DISKS of them, any
                                format vmdk_open_format() opens; disk 1 is
                                the boot disk */
  size_t n_disks;            /* 1 or more (at most what one controller of
                                the kind takes: 15, SATA 30, IDE 2) */
  int disk_format;           /* VMDK_FORMAT_* of every source (AUTO) */
  unsigned open_flags;       /* VMDK_OPEN_CONFINE for the sources, or 0 */
  const char *name;          /* the VM's name; default: OUT's file name
                                without ".ova".  The members are named
                                after it ([A-Za-z0-9._-], others '_') */
  unsigned cpus;             /* virtual CPUs, 1..768; default 2 */
  uint64_t memory_mib;       /* MiB, a multiple of 4; default 2048 */
  const char *os_type;       /* vSphere's guest id (vmw:osType), e.g.
                                "ubuntu64Guest"; default
                                "otherLinux64Guest" */
  const char *firmware;      /* "efi" (default) or "bios" */
  int secure_boot;           /* non-zero: EFI secure boot on */
  unsigned hw_version;       /* virtual hardware version (vmx-NN), 4..99;
                                default 14 (ESXi 6.7 and later) */
  const char *controller;    /* the disks' controller: "pvscsi" (default,
                                VMware paravirtual SCSI), "lsilogic",
                                "sata", "nvme" (hw_version 13 or later),
                                "ide" */
  const char *network;       /* the network the NIC connects to; default
                                "VM Network" */
  const char *nic;           /* "vmxnet3" (default), "e1000e", "e1000" */
  const char *const *properties; /* "KEY=VALUE" strings, N_PROPERTIES of
                                    them: user-configurable string
                                    properties of the ProductSection */
  size_t n_properties;
  const char *product, *vendor, *version; /* the ProductSection's, or NULL */
  const char *annotation;    /* an AnnotationSection, or NULL */
  unsigned threads;          /* compression threads (0: one per CPU) */
  int compression_level;     /* 1..12; 0: 6 */
};

/* One member of the archive vmdk_ova_create() wrote, in archive order. */
struct vmdk_ova_member {
  const char *name;          /* the member's name ("app-disk1.vmdk") */
  uint64_t offset_bytes;     /* where its data starts in the OVA */
  uint64_t size_bytes;       /* its length */
  char sha256[65];           /* its SHA-256, lower-case hex */
  const char *source;        /* a disk: its source image; else NULL */
  uint64_t capacity_bytes;   /* a disk: its virtual size; else 0 */
  uint64_t populated_bytes;  /* a disk: bytes of the grains it stores
                                (ovf:populatedSize); else 0 */
};

struct vmdk_ova_summary {
  const char *vm_name, *os_type;
  unsigned cpus, hw_version;
  uint64_t memory_mib;
  uint64_t size_bytes;       /* the OVA's length */
  size_t n_members;          /* the OVF, the manifest, then the disks */
  const struct vmdk_ova_member *members;
};

/* Write the OVA OUT: a ustar archive of NAME.ovf (OVF 1.1: DSP8023, with
 * VMware's conventions: vmx-NN, vmw:osType, ovf:populatedSize, EFI as
 * vmw:Config firmware), NAME.mf (the SHA-256 of the OVF and of every
 * disk, as "SHA256(FILE)= HEX" lines) and NAME-diskN.vmdk, each source
 * converted to streamOptimized (compressed on every core) straight into
 * the archive, in that order, as vSphere requires.  Ranges of a source
 * that read as zeros are not stored.  The archive is written under a
 * temporary name in OUT's folder, synced and renamed onto OUT: on any
 * error (or when CB asks to stop: ECANCELED) nothing is left and an
 * existing OUT is untouched.  Every option and source is checked before
 * any file is made (EINVAL with the value and what is allowed).  CB (may
 * be NULL) gets the bytes of the sources done of their total.  SUMMARY
 * (may be NULL) gets what was written, to free with
 * vmdk_ova_summary_free().  Returns 0 or -1. */
VMDK_API int vmdk_ova_create(const char *out,
                             const struct vmdk_ova_options *opts,
                             vmdk_progress_cb cb, void *opaque,
                             struct vmdk_ova_summary **summary);
/* Accepts NULL. */
VMDK_API void vmdk_ova_summary_free(struct vmdk_ova_summary *summary);

/* Check the OVA at PATH: every tar header and member whole; the OVF the
 * first member and the manifest the second; each line of the manifest
 * ("SHA1/SHA256/SHA512(FILE)= HEX") names a member whose bytes have that
 * digest, and every member but the manifest and a certificate is listed
 * (an OVA without a manifest is a problem too); the OVF well-formed, each
 * file it names a member of the size it gives (vmdk_ovf_read); each disk
 * opens, has the OVF's capacity and vmdk_check() finds no corruption.
 * Every problem is reported through CB (may be NULL) as
 * VMDK_PROBLEM_CORRUPT with a message naming PATH and the member, with
 * the numbers; the disks' vmdk_check() reports go to CB too (leaks as
 * VMDK_PROBLEM_LEAK, not counted).  A damaged archive is one problem and
 * ends the check.  Returns the number of problems (0: the OVA is whole),
 * or -1 when PATH cannot be read at all (ENOENT, EACCES, ...) or a member
 * cannot be read (error set). */
VMDK_API int vmdk_ova_verify(const char *path, vmdk_problem_cb cb,
                             void *opaque);

/* ---- OVA and OVF: reading an appliance ---------------------------------- */

/* Every function that opens an image (vmdk_open, vmdk_open_format) also
 * takes, read-only, a path that names a disk of an appliance -- unless a
 * file of that exact name exists, which is always opened as itself:
 *   "FILE.ova"        the first disk the OVF lists (an archive without an
 *                     OVF: its first member whose name ends in ".vmdk")
 *   "FILE.ova:NAME"   the member NAME of the archive
 *   "FILE.ovf"        the first disk the OVF lists: a file in its folder
 *   "FILE.ovf:NAME"   the disk file NAME the OVF lists
 * (".ova", ".ovf" in any case).  A disk inside an OVA is read where it is
 * in the tar, not extracted; the files a descriptor member names are
 * members of the same archive.  VMDK_OPEN_RDWR is refused (EROFS), so are
 * backing files and disks stored compressed or in chunks (ENOTSUP).  A
 * member is a VMDK (EINVAL otherwise) unless the format is
 * VMDK_FORMAT_RAW.  A damaged archive (bad header checksum, a member or
 * header cut short by the end of the file, an OVF naming a file the
 * archive does not hold) is refused with a message naming the offsets. */

/* A disk of the appliance (DiskSection, with its File and the hardware
 * Item that attaches it). */
struct vmdk_ovf_disk {
  const char *id;             /* ovf:diskId */
  const char *file;           /* its file's ovf:href: a member of the OVA or
                                 a file next to the OVF; NULL for a disk
                                 with no file (made empty at import) */
  uint64_t file_bytes;        /* the File's ovf:size; 0 when not given */
  const char *compression;    /* the File's ovf:compression ("gzip"), or
                                 NULL when stored as it is */
  int chunked;                /* the File has an ovf:chunkSize */
  uint64_t capacity_bytes;    /* ovf:capacity times its
                                 ovf:capacityAllocationUnits ("byte * 2^30");
                                 0 when given as a ${property} */
  int64_t populated_bytes;    /* ovf:populatedSize; -1 when not given */
  const char *format;         /* ovf:format (a URI), or NULL */
  const char *controller;     /* what the disk's Item hangs on (its
                                 rasd:Parent): "SCSI", "IDE", "SATA",
                                 "NVMe", "storage", or "type N" for another
                                 ResourceType; NULL when no Item names the
                                 disk */
  const char *controller_model; /* the controller's ResourceSubType
                                   ("lsilogic", "VirtualSCSI",
                                   "vmware.sata.ahci", "AHCI"), or NULL */
  int unit;                   /* the disk Item's AddressOnParent; -1 */
};

struct vmdk_ovf_network {
  const char *name;           /* ovf:name */
  const char *description;    /* its Description, or NULL */
};

/* What the OVF says about the appliance: its first VirtualSystem (also
 * inside a VirtualSystemCollection).  Strings are NULL and numbers 0 (or
 * -1 where said) when the OVF does not give them. */
struct vmdk_ovf {
  int ovf_version;            /* 1 (envelope namespace .../ovf/envelope/1)
                                 or 2 */
  const char *name;           /* the VirtualSystem's Name, else its ovf:id */
  unsigned cpus;              /* the CPU Item's VirtualQuantity */
  uint64_t memory_mib;        /* the memory Item, in MiB */
  const char *firmware;       /* vmw:Config firmware ("efi", "bios"), or
                                 VirtualBox's Firmware type, lower case */
  const char *os_type;        /* vmw:osType ("ubuntu64Guest"), VirtualBox's
                                 OSType, else the OperatingSystemSection's
                                 Description */
  int os_id;                  /* the OperatingSystemSection's ovf:id (a CIM
                                 operating system number); -1 */
  size_t n_networks;
  const struct vmdk_ovf_network *networks; /* NetworkSection, in order */
  size_t n_disks;
  const struct vmdk_ovf_disk *disks;       /* DiskSection, in order */
};

/* Read the OVF of PATH: an OVA (the archive's first member ending in
 * ".ovf"; every disk file it names must be a member, of the size the OVF
 * gives) or an OVF file (whose disk files must be plain names in its
 * folder).  Namespace-aware; any element order; no network access, no
 * external entities.  Returns a model to free with vmdk_ovf_free, or NULL:
 * EINVAL for XML that is not well-formed ("PATH: line N: ..."), not an OVF
 * envelope, or numbers that are not numbers; a damaged archive as for
 * vmdk_open; ENOENT when the archive has no OVF or lacks a disk file;
 * EPERM for an OVF file naming a URL, an absolute path or "..".
 * Thread-safe. */
VMDK_API struct vmdk_ovf *vmdk_ovf_read(const char *path);
/* Accepts NULL. */
VMDK_API void vmdk_ovf_free(struct vmdk_ovf *ovf);

#ifdef __cplusplus
}
#endif

#endif /* VMDKIT_H */
