/* SPDX-License-Identifier: BSD-3-Clause */
/* OVA and OVF reading, inside the library (never included by tools/).
 *
 *   tar.c   a bounded, validating reader of tar archives (ustar, pax, GNU):
 *           lists the members (name, data offset, size) and opens one as a
 *           read-only window of the archive (a vfile with a base): no
 * extraction, no temporary file ovf.c   the OVF envelope (libxml2,
 * namespace-aware, OVF 1.x and 2.x, any element order) into struct vmdk_ovf
 * (include/vmdkit.h) ova.c   the paths: "FILE.ova" (its first disk),
 * "FILE.ova:MEMBER", "FILE.ovf" (its first disk, a file next to it), and
 *           vmdk_ovf_read
 *
 * Every number in a tar header or an OVF is hostile: sizes are checked
 * against the archive's length before anything is allocated or read. */
#ifndef VMDKIT_OVA_H
#define VMDKIT_OVA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* ---- tar.c ----------------------------------------------------------------
 */

/* One member of an archive.  Only regular files (typeflag '0', '\0', '7')
 * can be opened; the others are listed with their type. */
struct tar_member {
  char *name;             /* as stored (a pax "path" or GNU long name wins),
                             a leading "./" and trailing "/" removed */
  uint64_t header_offset; /* bytes: where its (first) header starts */
  uint64_t offset;        /* bytes: where its data starts in the archive */
  uint64_t size;          /* bytes of data; offset + size <= archive size */
  char type;              /* the typeflag ('0' for '\0' and '7') */
};

struct tar {
  char *path;                 /* the archive, as given (for messages) */
  struct vfile *f;            /* the archive, open read-only */
  struct tar_member *members; /* in archive order */
  size_t n_members;
};

/* The most members an archive may list (an OVA has a handful); more is
 * refused rather than allocated. */
#define TAR_MAX_MEMBERS 65536u

/* Read and validate every header of the archive at PATH: checksums
 * (unsigned or signed sums), octal or base-256 sizes, sizes that end past
 * the end of the file, pax ("x": path, size) and GNU long-name ("L")
 * headers (at most 64 KiB each), GNU sparse members (listed with type
 * 'S', never opened).  The archive ends at two zero blocks, one, or the
 * end of the file after a whole member.  Returns NULL (error set: "PATH:
 * tar header at offset N: ..." with the numbers) on any damage. */
struct tar *tar_open(const char *path);
/* Accepts NULL. */
void tar_close(struct tar *t);
/* The last member named NAME (later members replace earlier ones, as tar
 * extracts them), compared after the same normalization as the names; or
 * NULL (no error set). */
const struct tar_member *tar_find(const struct tar *t, const char *name);
/* Whether PATH starts with a tar header (ustar or GNU magic, valid
 * checksum). */
bool tar_probe(const uint8_t block[512]);
/* Open M's data as a read-only window of the archive, named
 * "ARCHIVE:NAME" in messages.  Refuses members that are not regular files
 * (EINVAL).  Returns NULL (error set) on failure. */
struct vfile *tar_open_member(const struct tar *t, const struct tar_member *m);
/* Read all of M's data (at most MAX bytes, else EFBIG) into a malloc'ed,
 * NUL-terminated buffer; *LEN gets its length.  0 or -1. */
int tar_read_member(const struct tar *t, const struct tar_member *m, size_t max,
                    char **text, size_t *len);

/* ---- ovf.c ----------------------------------------------------------------
 */

/* Parse LEN bytes of OVF XML (NAME in messages) into a model: the first
 * VirtualSystem (also inside a VirtualSystemCollection), its hardware
 * (CPUs, memory, controllers and disks), OS type, firmware, networks, and
 * the DiskSection's disks with the References' files.  Namespace-aware
 * (OVF 1.x and 2.x envelopes, rasd/vssd/sasd/epasd, vmw), element order
 * free.  No network access, no external entities.  Returns NULL (error
 * set: "NAME: line N: ..." for XML errors, the element and value for
 * model errors) on failure.  Free with vmdk_ovf_free. */
struct vmdk_ovf *ovf_parse(const char *xml, size_t len, const char *name);

/* ---- ova.c ----------------------------------------------------------------
 */

/* The OVF of an open archive: the first member whose name ends in ".ovf"
 * (the OVF standard puts it first), or NULL (no error set) when there is
 * none. */
const struct tar_member *ova_find_ovf(const struct tar *t);

/* How vmdk_open_format takes PATH: returns 0 when PATH is no archive path
 * (an existing file is always itself, whatever its name), else 1 with *D
 * set to the opened disk or NULL (error set).  Archive paths:
 *   FILE.ova           the first disk the OVF lists (no OVF: the first
 *                      member whose name ends in ".vmdk")
 *   FILE.ova:MEMBER    that member
 *   FILE.ovf           the first disk the OVF lists, a file in its folder
 *   FILE.ovf:NAME      the disk file NAME the OVF lists
 * (".ova"/".ovf" in any case).  Members open read-only: FLAGS with
 * VMDK_OPEN_RDWR are refused (EROFS).  A member is a VMDK unless FORMAT is
 * VMDK_FORMAT_RAW. */
int ova_route(const char *path, int format, unsigned flags,
              struct vmdk_disk **d);

/* disk.c: open MEMBER of T as an image, read-only: the files its
 * descriptor names are members of T too (relative to MEMBER's folder in
 * the archive), a backing file is refused.  The disk's path is
 * "ARCHIVE:MEMBER".  Takes T: it is closed with the disk, or at once when
 * the open fails. */
struct vmdk_disk *disk_open_archived(struct tar *t, const char *member,
                                     int format, unsigned flags);
/* disk.c: a file of disk D, which lies in D's archive: the member NAME
 * (as the descriptor resolves it) opened as a window, read-only; EROFS
 * when WRITABLE, ENOENT when there is no such member. */
struct vfile *disk_archive_file(struct vmdk_disk *d, const char *name,
                                bool writable);

#endif /* VMDKIT_OVA_H */
