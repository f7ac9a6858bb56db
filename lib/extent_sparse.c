/* SPDX-License-Identifier: BSD-3-Clause */
/* Hosted sparse extents ("KDMV": monolithicSparse, twoGbMaxExtentSparse).
 *
 * On disk: a 512-byte header, an optional embedded descriptor, a grain
 * directory (GD) of 32-bit sector numbers of grain tables (GT), each GT an
 * array of numGTEsPerGT 32-bit sector numbers of grains, and optionally a
 * redundant copy of both (RGD/RGT).  GTE 0 = not allocated (read the
 * backing or zeros), GTE 1 = zeroed grain (only with the zeroed-grain
 * flag), else the grain's first sector.
 *
 * Allocation and write ordering (the one place these rules live):
 *  1. `end` is the file's length (rounded up to a sector) when it is
 *     opened.  New grains and new grain tables go at `end`, which then
 *     moves on.  No ftruncate per allocation: the host file grows as data
 *     is written; the part of a new grain that is not written stays a hole
 *     (zeros), so for a standalone image nothing but the user's bytes is
 *     written.  Only with a backing file are the uncovered head and tail of
 *     a new grain filled, from the backing (copy-on-write).
 *  2. Data before the entries that point at it, in memory too: a data
 *     write is held (gtcache.c, gtc_write_data) so that contiguous ones go
 *     out as one call, and the entry of a new grain waits with it
 *     (gtc_set_entry) until that write completed; when it fails, the
 *     waiting entries are dropped and the grains leak.  Entries are changed
 *     in cached tables, marked dirty, and written back by sparse_flush (or
 *     when a dirty table is evicted): sparse_flush issues the held write,
 *     syncs the file (data barrier), sets the file's final length once,
 *     writes every dirty GT then its redundant copy, then, when new tables
 *     were added, the RGD, a sync, and the GD, then syncs again.  A failed
 *     sync is remembered by the file (io.c): every later flush fails, and
 *     the unclean byte stays set.  The RGD goes first so that the GD never
 *     points at a
 *     table whose RGD entry is still 0: QEMU, updating a grain, writes the
 *     redundant entry at RGD[i] * 512 + 4 * index without looking, which
 *     for an entry of 0 is the header.  (A crash between the two leaves
 *     an RGD entry the GD does not have: the table's allocation did not
 *     complete, so it is unused; vmdkit's next allocation there overwrites
 *     the entry.)
 *  0. Before the first change after an open, the header's uncleanShutdown
 *     byte is set (as VMware does), with the disk's new CID: both from the
 *     file's before_write hook (io.c), so a write that is refused or fails
 *     before its first byte goes out changes neither.  A clean close clears
 *     the byte after the last flush, so a set byte means "writes may have
 *     been lost".
 *  3. So a crash loses at most what was written since the last flush, and
 *     leaves at most leaked (unreferenced) grains, never an entry that
 *     points at unwritten data.  It may also leave a redundant table that
 *     differs from its primary (the crash fell between the two writes) or
 *     an RGD entry without its GD entry: in an image whose uncleanShutdown
 *     byte is set, check reports these as harmless (kind LEAK: the primary
 *     is what is read), and `check -r leaks` brings the copies in line.  A
 *     byte found set at open is therefore not cleared at close, only by a
 *     repair (sparse_repair), so that these traces stay explained.
 *     tests/unit/test-crash-kill.c kills writers at every step of a flush.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FLAG_NL_DETECT KDMV_FLAG_NL_DETECT
#define FLAG_RGD KDMV_FLAG_RGD
#define FLAG_ZEROED_GRAIN KDMV_FLAG_ZEROED_GRAIN
#define FLAG_COMPRESSED KDMV_FLAG_COMPRESSED
#define FLAG_MARKERS KDMV_FLAG_MARKERS
#define GD_AT_END KDMV_GD_AT_END

#define MAX_GRAIN_SECTORS (1u << 21)  /* 1 GiB grains */
#define MAX_GTES_PER_GT 65536u
#define MAX_DESC_SECTORS 20480u       /* 10 MiB, as VirtualBox */
#define MAX_FILE_SECTORS 0xffffffffull /* 32-bit sector numbers */
#define GT_CACHE_BUDGET (32u << 20)   /* bytes of cached grain tables */

struct sparse {
  struct vfile *f;
  struct kdmv_header h;
  uint64_t grain_bytes;
  uint64_t gt_bytes;         /* gtes_per_gt * 4 */
  uint64_t gt_sectors;       /* gt_bytes rounded up to sectors */
  uint64_t table_bytes;      /* virtual bytes one GT covers */
  uint32_t n_gdes;           /* entries in the GD */
  uint32_t *gd, *rgd;        /* host order; rgd NULL without redundancy */
  bool gd_dirty;             /* a GD/RGD entry changed since last written */
  uint64_t end;              /* bytes: where the next allocation goes */

  struct gtcache gtc;        /* the grain tables (lib/gtcache.c) */

  bool unclean_set;          /* we set the uncleanShutdown byte */

};

/* ---- header ------------------------------------------------------------- */

void kdmv_encode_header(const struct kdmv_header *h, uint8_t b[SECTOR]) {
  memset(b, 0, SECTOR);
  put_le32(b + 0, KDMV_MAGIC);
  put_le32(b + 4, h->version);
  put_le32(b + 8, h->flags);
  put_le64(b + 12, h->capacity);
  put_le64(b + 20, h->grain);
  put_le64(b + 28, h->desc_offset);
  put_le64(b + 36, h->desc_size);
  put_le32(b + 44, h->gtes_per_gt);
  put_le64(b + 48, h->rgd_offset);
  put_le64(b + 56, h->gd_offset);
  put_le64(b + 64, h->overhead);
  b[72] = h->unclean;
  b[73] = '\n';
  b[74] = ' ';
  b[75] = '\r';
  b[76] = '\n';
  put_le16(b + 77, h->compress);
}

/* Decode and validate the header of PATH (FILE_SIZE bytes long). */
int kdmv_decode_header(const uint8_t b[SECTOR], const char *path,
                       uint64_t file_size, struct kdmv_header *h) {
  if (le32(b) != KDMV_MAGIC)
    return set_error(EINVAL, "%s: not a hosted sparse extent (no KDMV magic)",
                     path);
  h->version = le32(b + 4);
  h->flags = le32(b + 8);
  h->capacity = le64(b + 12);
  h->grain = le64(b + 20);
  h->desc_offset = le64(b + 28);
  h->desc_size = le64(b + 36);
  h->gtes_per_gt = le32(b + 44);
  h->rgd_offset = le64(b + 48);
  h->gd_offset = le64(b + 56);
  h->overhead = le64(b + 64);
  h->unclean = b[72];
  h->compress = le16(b + 77);
  uint64_t file_sectors = div_round_up(file_size, SECTOR);

  if (h->version < 1 || h->version > 3)
    return set_error(ENOTSUP, "%s: sparse header version %" PRIu32
                              " is not supported (1, 2 or 3)",
                     path, h->version);
  if (h->compress > 1)
    return set_error(ENOTSUP, "%s: compression algorithm %u is not known "
                              "(0 none, 1 deflate)",
                     path, h->compress);
  if ((h->flags & FLAG_MARKERS) && !(h->flags & FLAG_COMPRESSED))
    return set_error(EINVAL, "%s: the header has the markers flag without "
                             "the compressed flag (flags 0x%" PRIx32 ")",
                     path, h->flags);
  if (!is_power_of_2(h->grain) || h->grain > MAX_GRAIN_SECTORS)
    return set_error(EINVAL, "%s: grain size %" PRIu64
                             " sectors is not a power of two from 1 to %u",
                     path, h->grain, MAX_GRAIN_SECTORS);
  if (h->gtes_per_gt == 0 || h->gtes_per_gt > MAX_GTES_PER_GT)
    return set_error(EINVAL, "%s: %" PRIu32
                             " grain table entries per table is out of range "
                             "(1 to %u)",
                     path, h->gtes_per_gt, MAX_GTES_PER_GT);
  uint64_t n_gdes = div_round_up(h->capacity, h->grain * h->gtes_per_gt);
  uint64_t gd_sectors = div_round_up(n_gdes * 4, SECTOR);
  bool at_end = h->gd_offset == GD_AT_END; /* the footer has the real one */
  if (n_gdes > UINT32_MAX || gd_sectors > file_sectors ||
      (!at_end && h->gd_offset > file_sectors - gd_sectors))
    return set_error(EFBIG, "%s: grain directory too large: %" PRIu64
                            " entries at sector %" PRIu64
                            " for a capacity of %" PRIu64 " sectors (%" PRIu32
                            " grains of %" PRIu64
                            " sectors per table) do not fit in the file (%s)",
                     path, n_gdes, h->gd_offset, h->capacity, h->gtes_per_gt,
                     h->grain, human_size(file_size));
  if (h->gd_offset == 0)
    return set_error(EINVAL, "%s: grain directory offset is 0", path);
  /* Grains are addressed with 32-bit sectors: data cannot start later. */
  if (h->overhead > MAX_FILE_SECTORS)
    return set_error(EINVAL, "%s: overHead of %" PRIu64 " sectors is past the "
                             "last sector a grain can be at (2^32 - 1)",
                     path, h->overhead);
  if (at_end && !(h->flags & FLAG_COMPRESSED))
    return set_error(EINVAL, "%s: the grain directory is at the end "
                             "(footer) but the grains are not compressed",
                     path);
  /* Grain offsets are 32-bit sectors: a capacity past 2 TiB cannot all
   * be stored (QEMU 7.2 makes such images and then writes over their
   * header). */
  if (h->capacity > (uint64_t)1 << 32)
    return set_error(EFBIG, "%s: capacity of %" PRIu64
                            " sectors (%s) is more than a hosted sparse "
                            "extent can address with 32-bit sector numbers "
                            "(2 TiB)",
                     path, h->capacity,
                     h->capacity > UINT64_MAX / SECTOR
                         ? "over 2^64 bytes"
                         : human_size(h->capacity * SECTOR));
  if ((h->flags & FLAG_RGD) &&
      (h->rgd_offset == 0 || h->rgd_offset > file_sectors - gd_sectors))
    return set_error(EINVAL, "%s: redundant grain directory at sector %" PRIu64
                             " does not fit in the file (%" PRIu64 " sectors)",
                     path, h->rgd_offset, file_sectors);
  if (h->desc_offset != 0) {
    if (h->desc_size == 0 || h->desc_size > MAX_DESC_SECTORS ||
        h->desc_offset > file_sectors ||
        h->desc_size > file_sectors - h->desc_offset)
      return set_error(EINVAL, "%s: embedded descriptor (sector %" PRIu64
                               ", %" PRIu64
                               " sectors) does not fit in the file (%" PRIu64
                               " sectors) or is over %u sectors",
                       path, h->desc_offset, h->desc_size, file_sectors,
                       MAX_DESC_SECTORS);
  }
  /* Last: a structurally valid header whose check bytes were mangled. */
  if ((h->flags & FLAG_NL_DETECT) &&
      (b[73] != '\n' || b[74] != ' ' || b[75] != '\r' || b[76] != '\n'))
    return set_error(EINVAL, "%s: the header's newline check bytes are "
                             "wrong: the file was corrupted by a CR/LF "
                             "translation (text-mode transfer)",
                     path);
  return 0;
}

/* ---- the grain directory and table cache -------------------------------- */

static void encode_table(const uint32_t *src, uint8_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++)
    put_le32(dst + 4 * i, src[i]);
}

/* Write the RGD (first) and the GD whole, from memory. */
static int write_directories(struct sparse *s) {
  size_t bytes = (size_t)s->n_gdes * 4;
  if (bytes == 0)
    return 0;
  uint8_t *buf = malloc(bytes);
  if (!buf)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  int r = 0;
  if (s->rgd) { /* the redundant one first, durably (rule 2) */
    encode_table(s->rgd, buf, s->n_gdes);
    r = vf_pwrite(s->f, buf, bytes, s->h.rgd_offset * SECTOR);
    if (r == 0)
      r = vf_sync(s->f);
  }
  if (r == 0) {
    encode_table(s->gd, buf, s->n_gdes);
    r = vf_pwrite(s->f, buf, bytes, s->h.gd_offset * SECTOR);
  }
  free(buf);
  return r;
}

/* Write the table cached in SLOT to its GT and RGT. */
static int write_table(struct sparse *s, uint32_t slot) {
  uint8_t *buf = malloc(s->gt_bytes);
  if (!buf)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  uint32_t gdi = gtc_gdi(&s->gtc, slot);
  encode_table(gtc_table(&s->gtc, slot), buf, s->h.gtes_per_gt);
  int r = vf_pwrite(s->f, buf, s->gt_bytes, (uint64_t)s->gd[gdi] * SECTOR);
  if (r == 0 && s->rgd && s->rgd[gdi])
    r = vf_pwrite(s->f, buf, s->gt_bytes, (uint64_t)s->rgd[gdi] * SECTOR);
  free(buf);
  if (r == 0)
    gtc_clean(&s->gtc, slot);
  return r;
}

/* Rule 2: data, sync, length, tables, directories, sync. */
static int flush_metadata(struct sparse *s) {
  if (gtc_issue(&s->gtc) != 0)
    return -1;
  if (s->gtc.n_dirty == 0 && !s->gd_dirty)
    return vf_sync(s->f);
  if (vf_sync(s->f) != 0)
    return -1;
  if (s->f->size < s->end && vf_truncate(s->f, s->end) != 0)
    return -1;
  for (uint32_t i = gtc_next_dirty(&s->gtc, 0); i != GTC_NONE;
       i = gtc_next_dirty(&s->gtc, i + 1))
    if (write_table(s, i) != 0)
      return -1;
  if (s->gd_dirty) {
    if (write_directories(s) != 0)
      return -1;
    s->gd_dirty = false;
  }
  return vf_sync(s->f);
}

/* Reserve BYTES at the end of the file (rule 1). Returns the sector. */
static int alloc_at_end(struct sparse *s, uint64_t bytes, uint32_t *sector) {
  uint64_t start = s->end / SECTOR;
  /* Never below overHead, even in a file cut shorter than it: a grain
   * there would then read as "points into the metadata". */
  if (start < s->h.overhead)
    start = s->h.overhead;
  uint64_t sectors = div_round_up(bytes, SECTOR);
  if (start + sectors > MAX_FILE_SECTORS)
    return set_error(ENOSPC, "%s: the extent file is full: a hosted sparse "
                             "file cannot grow past 2 TiB (32-bit sector "
                             "numbers)",
                     s->f->path);
  *sector = (uint32_t)start;
  s->end = (start + sectors) * SECTOR;
  return 0;
}

/* The table cache evicts a dirty table only after this (rule 2). */
static int flush_for_cache(void *opaque) {
  return flush_metadata(opaque);
}

/* Check that GT GDI at SECTOR lies inside the file. */
static int check_table_pos(struct sparse *s, uint32_t gdi, uint64_t sector) {
  if (sector == 0 || sector * SECTOR + s->gt_bytes > s->end)
    return set_error(EINVAL, "%s: grain directory entry %" PRIu32
                             " points outside the file (sector %" PRIu64
                             ", file %s)",
                     s->f->path, gdi, sector, human_size(s->f->size));
  return 0;
}

/* Get the table for GD entry GDI: *SLOT is its cache slot, GTC_NONE when
 * it does not exist and ALLOCATE is false; with ALLOCATE a missing table
 * is created at the end of the file (and its redundant copy), dirty, with
 * the GD entries. */
static int get_table(struct sparse *s, uint32_t gdi, bool allocate,
                     uint32_t *slot) {
  *slot = gtc_lookup(&s->gtc, gdi);
  if (*slot != GTC_NONE)
    return 0;
  uint32_t sector = s->gd[gdi];
  if (sector == 0 && !allocate)
    return 0;
  if (sector != 0 && check_table_pos(s, gdi, sector) != 0)
    return -1;
  uint32_t t;
  if (gtc_take(&s->gtc, &t) != 0)
    return -1;
  if (sector == 0) {
    /* A new table (VMware leaves GD entries 0 until a table is needed). */
    uint32_t gt_sec = 0, rgt_sec = 0;
    if (alloc_at_end(s, s->gt_sectors * SECTOR, &gt_sec) != 0 ||
        (s->rgd && alloc_at_end(s, s->gt_sectors * SECTOR, &rgt_sec) != 0)) {
      gtc_abandon(&s->gtc, t);
      return -1;
    }
    s->gd[gdi] = gt_sec;
    if (s->rgd)
      s->rgd[gdi] = rgt_sec;
    s->gd_dirty = true;
    gtc_install_new(&s->gtc, t, gdi);
  } else if (gtc_load(&s->gtc, t, gdi, s->f, sector) != 0) {
    return -1;
  }
  *slot = t;
  return 0;
}

/* Sectors of grain GNO the disk reads (the last grain may stick out past
 * the capacity: that part need not be in the file). */
static uint64_t grain_sectors_read(const struct sparse *s, uint64_t gno) {
  uint64_t left = s->h.capacity - gno * s->h.grain;
  return left < s->h.grain ? left : s->h.grain;
}

/* Validate an allocated grain table entry before using it.  A grain must
 * lie in the file: space past its end is where new grains and tables go,
 * so a grain running past it would be overwritten by them. */
static int check_grain(struct sparse *s, uint32_t gdi, uint32_t i,
                       uint32_t gte) {
  if (gte == 1 && !(s->h.flags & FLAG_ZEROED_GRAIN))
    return set_error(EINVAL, "%s: grain table entry %" PRIu32 " of table %" PRIu32
                             " is 1 (a zeroed grain) but the header has no "
                             "zeroed-grain flag",
                     s->f->path, i, gdi);
  if (gte > 1 && (uint64_t)gte * SECTOR >= s->end)
    return set_error(EINVAL, "%s: grain table entry %" PRIu32 " of table %" PRIu32
                             " points past the end of the file (sector %" PRIu32
                             ", file %s)",
                     s->f->path, i, gdi, gte, human_size(s->f->size));
  uint64_t gno = (uint64_t)gdi * s->h.gtes_per_gt + i;
  if (gte > 1 && gno * s->h.grain < s->h.capacity &&
      (gte + grain_sectors_read(s, gno)) * SECTOR > s->end)
    return set_error(EINVAL, "%s: grain table entry %" PRIu32 " of table %" PRIu32
                             " points at a grain that runs past the end of "
                             "the file (sector %" PRIu32 ", %" PRIu64
                             " sectors, file %s)",
                     s->f->path, i, gdi, gte, grain_sectors_read(s, gno),
                     human_size(s->f->size));
  if (gte > 1 && gte < s->h.overhead)
    return set_error(EINVAL, "%s: grain table entry %" PRIu32 " of table %" PRIu32
                             " points into the metadata (sector %" PRIu32
                             ", data starts at sector %" PRIu64 ")",
                     s->f->path, i, gdi, gte, s->h.overhead);
  return 0;
}

/* Rule 0: mark the extent in use before its first change. */
static int mark_unclean(struct sparse *s) {
  if (s->unclean_set)
    return 0;
  uint8_t one = 1;
  if (vf_pwrite(s->f, &one, 1, 72) != 0)
    return -1;
  s->unclean_set = true;
  return 0;
}

/* The file's before_write hook (io.c): the disk's new CID, then the
 * unclean flag, right before the first change that really goes to the
 * file, so a refused or failed write leaves both alone. */
static int first_write(void *opaque) {
  struct extent *e = opaque;
  if (extent_first_write(e) != 0)
    return -1;
  return mark_unclean(e->priv);
}

/* ---- data path (lib/gtcache.c, over these two) ------------------------------ */

static int lookup(void *opaque, uint64_t grain_no, bool allocate,
                  struct grain_ref *g) {
  struct sparse *s = opaque;
  g->gdi = (uint32_t)(grain_no / s->h.gtes_per_gt);
  g->idx = (uint32_t)(grain_no % s->h.gtes_per_gt);
  if (get_table(s, g->gdi, allocate, &g->slot) != 0)
    return -1;
  g->gte = g->slot != GTC_NONE ? gtc_table(&s->gtc, g->slot)[g->idx] : 0;
  return check_grain(s, g->gdi, g->idx, g->gte);
}

static int alloc_grain(void *opaque, uint32_t *sector) {
  struct sparse *s = opaque;
  return alloc_at_end(s, s->grain_bytes, sector);
}

static int sparse_pread(struct extent *e, void *buf, size_t len,
                        uint64_t off) {
  struct sparse *s = e->priv;
  return gtc_pread(e, &s->gtc, buf, len, off);
}

static int sparse_pwrite(struct extent *e, const void *buf, size_t len,
                         uint64_t off) {
  struct sparse *s = e->priv;
  return gtc_pwrite(e, &s->gtc, buf, len, off);
}

static int sparse_zero(struct extent *e, uint64_t len, uint64_t off) {
  struct sparse *s = e->priv;
  bool backing = disk_has_backing(e->disk);
  while (len > 0) {
    uint64_t in = off % s->grain_bytes;
    uint64_t n = s->grain_bytes - in < len ? s->grain_bytes - in : len;
    struct grain_ref g;
    uint64_t gno = off / s->grain_bytes;
    /* Without a backing, a missing table already reads as zeros. */
    if (lookup(s, gno, backing, &g) != 0)
      return -1;
    if (g.slot == GTC_NONE || g.gte == 1 || (g.gte == 0 && !backing)) {
      /* already zeros */
    } else if (g.gte > 1) {
      if (gtc_issue(&s->gtc) != 0 ||
          vf_zero_range(s->f, n, (uint64_t)g.gte * SECTOR + in) != 0)
        return -1;
    } else if (n == s->grain_bytes && (s->h.flags & FLAG_ZEROED_GRAIN)) {
      /* hides the backing without using space */
      if (gtc_set_gte(&s->gtc, &g, 1) != 0)
        return -1;
    } else if (gtc_allocate(e, &s->gtc, &g, off - in, in, NULL, (size_t)n)) {
      return -1;
    }
    off += n;
    len -= n;
  }
  return gtc_issue(&s->gtc);
}

static int sparse_status(struct extent *e, uint64_t off, uint64_t len,
                         struct vmdk_run *run) {
  struct sparse *s = e->priv;
  run->length = 0;
  run->flags = 0;
  run->file_offset = -1;
  run->file = NULL;
  bool more = true;
  while (more && len > 0) {
    uint32_t gdi = (uint32_t)(off / s->table_bytes);
    uint64_t table_end = ((uint64_t)gdi + 1) * s->table_bytes;
    uint32_t slot;
    if (get_table(s, gdi, false, &slot) != 0)
      return -1;
    if (slot == GTC_NONE) { /* the whole table's range is unallocated */
      uint64_t n = table_end - off < len ? table_end - off : len;
      more = run_extend(run, 0, -1, n);
      off += n;
      len -= n;
      continue;
    }
    /* Every grain of this table in the range, the table looked up once. */
    const uint32_t *gt = gtc_table(&s->gtc, slot);
    while (more && len > 0 && off < table_end) {
      uint64_t gno = off / s->grain_bytes, in = off % s->grain_bytes;
      uint64_t n = s->grain_bytes - in < len ? s->grain_bytes - in : len;
      uint32_t idx = (uint32_t)(gno % s->h.gtes_per_gt);
      uint32_t gte = gt[idx];
      if (gte == 0 && in == 0) { /* unallocated grains: one tight loop */
        uint32_t j = idx + 1;
        while (j < s->h.gtes_per_gt && gt[j] == 0)
          j++;
        uint64_t span = (uint64_t)(j - idx) * s->grain_bytes;
        n = span < len ? span : len;
      }
      if (check_grain(s, gdi, idx, gte) != 0)
        return -1;
      unsigned flags = gte == 0   ? 0
                       : gte == 1 ? VMDK_RUN_PRESENT | VMDK_RUN_ZERO
                                  : VMDK_RUN_PRESENT | VMDK_RUN_DATA;
      int64_t fo = gte > 1 ? (int64_t)((uint64_t)gte * SECTOR + in) : -1;
      if ((more = run_extend(run, flags, fo, n))) {
        off += n;
        len -= n;
      }
    }
  }
  if (run->flags & VMDK_RUN_DATA)
    run->file = s->f->path;
  return 0;
}

static int sparse_flush(struct extent *e) {
  return flush_metadata(e->priv);
}

static void sparse_free(struct sparse *s) {
  if (!s)
    return;
  gtc_free(&s->gtc);
  free(s->gd);
  free(s->rgd);
  free(s);
}

static int sparse_close(struct extent *e) {
  struct sparse *s = e->priv;
  int r = 0;
  /* Rule 0: clean only when everything reached the file (the caller's
   * flush succeeded), and the byte was not already set at open (rule 3:
   * then only a repair clears it). */
  if (s->unclean_set && !s->h.unclean && !s->f->sync_failed &&
      s->gtc.n_dirty == 0 &&
      !s->gd_dirty && !gtc_holding(&s->gtc)) {
    uint8_t zero = 0;
    r = vf_pwrite(s->f, &zero, 1, 72) == 0 && vf_sync(s->f) == 0 ? 0 : -1;
  }
  if (vf_close(s->f) != 0)
    r = -1;
  sparse_free(s);
  return r;
}

static void sparse_info(struct extent *e, struct vmdk_extent_info *info) {
  struct sparse *s = e->priv;
  info->grain_bytes = s->grain_bytes;
  info->version = s->h.version;
  info->compressed = (s->h.flags & FLAG_COMPRESSED) != 0;
  info->zeroed_grain = (s->h.flags & FLAG_ZEROED_GRAIN) != 0;
  info->unclean = s->h.unclean != 0;
}

static uint64_t sparse_allocated(struct extent *e) {
  struct sparse *s = e->priv;
  return vf_allocated(s->f);
}

/* ---- check ------------------------------------------------------------------ */

/* Why entry I of table GDI holding V (> 0) cannot be right, or NULL when it
 * may be: what check reports and repair clears (overlaps are found apart). */
static const char *entry_problem(const struct sparse *s, uint32_t gdi,
                                 uint32_t i, uint32_t v,
                                 uint64_t file_sectors) {
  uint64_t gno = (uint64_t)gdi * s->h.gtes_per_gt + i;
  if (v == 0)
    return NULL;
  if (gno * s->h.grain >= s->h.capacity)
    return "lies past the capacity";
  if (v == 1)
    return s->h.flags & FLAG_ZEROED_GRAIN
               ? NULL
               : "is 1 (zeroed grain) but the header has no zeroed-grain flag";
  if (v >= file_sectors)
    return "points past the end of the file";
  if (v + grain_sectors_read(s, gno) > file_sectors)
    return "runs past the end of the file";
  if (v < s->h.overhead)
    return "points into the metadata";
  return NULL;
}

/* Tables inside the file, for mark_shared_tables (lib/check_space.c). */
static int sparse_shared_tables(struct sparse *s, struct check_ctx *c,
                                uint64_t file_sectors, uint8_t *skip) {
  struct table_ref *t = malloc(((size_t)s->n_gdes * 2 + 1) * sizeof *t);
  size_t n = 0;
  if (!t)
    return set_error(ENOMEM, "%s: out of memory while checking", s->f->path);
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    for (int r = 0; r < 2; r++) {
      uint32_t v = r ? (s->rgd ? s->rgd[gdi] : 0) : s->gd[gdi];
      if (v && (uint64_t)v + s->gt_sectors <= file_sectors)
        t[n++] = (struct table_ref){v, gdi, r != 0};
    }
  mark_shared_tables(c, s->f->path, t, n, s->gt_sectors, skip);
  free(t);
  return 0;
}

static int sparse_check(struct extent *e, struct check_ctx *c) {
  struct sparse *s = e->priv;
  const char *path = s->f->path;
  if (flush_metadata(s) != 0 && s->f->writable)
    return -1;
  uint64_t file_sectors = div_round_up(s->f->size, SECTOR);
  uint64_t gd_sectors = div_round_up((uint64_t)s->n_gdes * 4, SECTOR);
  struct regions rs = {0};
  uint8_t *raw = malloc(s->gt_bytes * 2);
  uint32_t *gt = malloc(s->gt_bytes);
  uint8_t *skip = calloc(s->n_gdes + 1, 1); /* see mark_shared_tables */
  int ret = -1;
  if (!raw || !gt || !skip) {
    set_error(ENOMEM, "%s: out of memory", path);
    goto out;
  }
  if (sparse_shared_tables(s, c, file_sectors, skip) != 0)
    goto out;
  if (e->size < s->h.capacity * SECTOR)
    check_report(c, VMDK_PROBLEM_LEAK, 0,
                 "%s: the header says %" PRIu64 " sectors but the descriptor "
                 "gives the extent %" PRIu64 " (an interrupted resize; the "
                 "disk is the descriptor's size)",
                 path, s->h.capacity, e->size / SECTOR);
  if (regions_add(&rs, 0, 1, UINT32_MAX, UINT32_MAX, "the header") ||
      (s->h.desc_offset &&
       regions_add(&rs, s->h.desc_offset, s->h.desc_size, UINT32_MAX,
                   UINT32_MAX, "the embedded descriptor")) ||
      regions_add(&rs, s->h.gd_offset, gd_sectors, UINT32_MAX, UINT32_MAX,
                  "the grain directory") ||
      (s->rgd && regions_add(&rs, s->h.rgd_offset, gd_sectors, UINT32_MAX,
                             UINT32_MAX, "the redundant grain directory")))
    goto out;

  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++) {
    uint32_t gde = s->gd[gdi], rgde = s->rgd ? s->rgd[gdi] : 0;
    if (s->rgd && (gde == 0) != (rgde == 0)) {
      /* Rule 3: an RGD entry alone, in an image left unclean, is a table
       * allocation a crash interrupted (the RGD is written first). */
      bool stale = gde == 0 && s->h.unclean;
      check_report(c, stale ? VMDK_PROBLEM_LEAK : VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain directory entry %" PRIu32 " is %" PRIu32
                   " but the redundant grain directory has %" PRIu32 "%s",
                   path, gdi, gde, rgde,
                   stale ? " (a table allocation a crash interrupted: the "
                           "table is not used)"
                         : "");
    }
    if (gde == 0 || (skip[gdi] & 1))
      continue;
    if ((uint64_t)gde + s->gt_sectors > file_sectors) {
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain table %" PRIu32 " lies past the end of the file "
                   "(sector %" PRIu32 ", file %" PRIu64 " sectors)",
                   path, gdi, gde, file_sectors);
      continue;
    }
    if (regions_add(&rs, gde, s->gt_sectors, gdi, UINT32_MAX, "grain table"))
      goto out;
    if (vf_pread(s->f, raw, s->gt_bytes, (uint64_t)gde * SECTOR) != 0)
      goto out;
    for (uint32_t i = 0; i < s->h.gtes_per_gt; i++)
      gt[i] = le32(raw + 4 * i);
    if (skip[gdi] & 2) {
      /* reported by mark_shared_tables */
    } else if (rgde && (uint64_t)rgde + s->gt_sectors <= file_sectors) {
      if (regions_add(&rs, rgde, s->gt_sectors, gdi, UINT32_MAX,
                      "redundant grain table"))
        goto out;
      if (vf_pread(s->f, raw + s->gt_bytes, s->gt_bytes,
                   (uint64_t)rgde * SECTOR) != 0)
        goto out;
      if (memcmp(raw, raw + s->gt_bytes, s->gt_bytes) != 0) {
        /* Rule 3: in an image left unclean, a redundant copy that lags
         * its primary is an update a crash interrupted (harmless: the
         * primary is read); where the primary entry itself is wrong, that
         * entry is reported below. */
        bool unclean = s->h.unclean != 0;
        uint32_t i = 0, diff = 0;
        for (uint32_t k = 0; k < s->h.gtes_per_gt; k++)
          if (memcmp(raw + 4 * k, raw + s->gt_bytes + 4 * k, 4) != 0 &&
              (!unclean ||
               !entry_problem(s, gdi, k, gt[k], file_sectors))) {
            if (!diff)
              i = k;
            diff++;
          }
        if (diff && unclean)
          check_report(c, VMDK_PROBLEM_LEAK, 0,
                       "%s: redundant grain table %" PRIu32 " is out of date "
                       "in %" PRIu32 " entries (first: entry %" PRIu32
                       ", %" PRIu32 " vs %" PRIu32 "): an update a crash "
                       "interrupted (the grain table is what is read)",
                       path, gdi, diff, i, le32(raw + 4 * i),
                       le32(raw + s->gt_bytes + 4 * i));
        else if (diff)
          check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                       "%s: grain table %" PRIu32 " and its redundant copy "
                       "differ in %" PRIu32 " entries (first: entry %" PRIu32
                       ", %" PRIu32 " vs %" PRIu32 ")",
                       path, gdi, diff, i, le32(raw + 4 * i),
                       le32(raw + s->gt_bytes + 4 * i));
      }
    } else if (rgde) {
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: redundant grain table %" PRIu32 " lies past the end of "
                   "the file (sector %" PRIu32 ", file %" PRIu64 " sectors)",
                   path, gdi, rgde, file_sectors);
    }
    for (uint32_t i = 0; i < s->h.gtes_per_gt; i++) {
      uint32_t v = gt[i];
      uint64_t gno = (uint64_t)gdi * s->h.gtes_per_gt + i;
      if (v == 0)
        continue;
      if (gno * s->h.grain >= s->h.capacity) {
        check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                     "%s: grain table entry %" PRIu32 " of table %" PRIu32
                     " is set (%" PRIu32 ") but lies past the capacity",
                     path, i, gdi, v);
        continue;
      }
      if (v == 1) {
        if (!(s->h.flags & FLAG_ZEROED_GRAIN))
          check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                       "%s: grain table entry %" PRIu32 " of table %" PRIu32
                       " is 1 (zeroed grain) but the header has no "
                       "zeroed-grain flag",
                       path, i, gdi);
        continue;
      }
      if (v >= file_sectors) {
        check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                     "%s: grain table entry %" PRIu32 " of table %" PRIu32
                     " points past the end of the file (sector %" PRIu32
                     ", file %" PRIu64 " sectors)",
                     path, i, gdi, v, file_sectors);
        continue;
      }
      if (v + grain_sectors_read(s, gno) > file_sectors) { /* see check_grain */
        check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                     "%s: grain table entry %" PRIu32 " of table %" PRIu32
                     " points at a grain that runs past the end of the file "
                     "(sector %" PRIu32 ", %" PRIu64 " sectors, file %" PRIu64
                     " sectors)",
                     path, i, gdi, v, grain_sectors_read(s, gno),
                     file_sectors); /* still counted: its space is used */
      }
      if (v < s->h.overhead) { /* unreadable: see check_grain */
        check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                     "%s: grain table entry %" PRIu32 " of table %" PRIu32
                     " points into the metadata (sector %" PRIu32
                     ", data starts at sector %" PRIu64 ")",
                     path, i, gdi, v, s->h.overhead);
        continue;
      }
      c->res->allocated_grains++;
      if (regions_add(&rs, v, s->h.grain, gdi, i, NULL))
        goto out;
    }
  }

  /* Overlaps, and space after the metadata that nothing points at. */
  if (regions_sweep(&rs, c, s->f, s->h.overhead, file_sectors, NULL) != 0)
    goto out;
  c->res->total_grains += div_round_up(s->h.capacity, s->h.grain);
  ret = 0;
out:
  free(rs.r);
  free(raw);
  free(gt);
  free(skip);
  return ret;
}

/* ---- repair ------------------------------------------------------------------
 *
 * sparse_repair (vmdk_repair) makes the metadata consistent, then reclaims
 * leaked space.  Grain data is never moved or changed.
 *
 * Tables.  A table on file is usable when it lies inside the file and
 * overlaps neither the header, the descriptor, a directory nor a table
 * kept before it (in file order; of a table and its redundant copy at the
 * same place, the redundant one is dropped).  Per GD entry:
 *  - primary usable: it is the truth.  An entry of it that cannot be right
 *    (entry_problem, or a grain on the metadata) takes the redundant
 *    table's entry when that one is right, else 0; the redundant table is
 *    rewritten from it (a new one at the end of the file when there was no
 *    usable one);
 *  - primary 0, redundant set: in an image left unclean, a table
 *    allocation a crash interrupted (rule 2 writes the RGD first): the RGD
 *    entry is cleared; in a cleanly closed image the GD entry was lost: a
 *    copy of the redundant table, if usable, becomes the grain table (else
 *    the RGD entry is cleared);
 *  - primary unusable: a copy of the redundant table, if usable, becomes
 *    the grain table; else both entries are cleared (those grains are lost).
 * Grains that share sectors: the first in file order keeps its place, each
 * other gets its own copy at the end of the file, so every entry reads what
 * it read before.
 * VMDK_REPAIR_LEAKS alone does only what check reports as kind LEAK: the
 * traces of an interrupted flush (rule 3) and leaked space.
 *
 * Order: grain copies, sync; tables (redundant first), sync; RGD, GD,
 * sync; then leaked space (what nothing on file points at, not even a bad
 * entry) that holds anything but zeros is cut off at the end of the file or
 * punched (vf_zero_range), sync; then the uncleanShutdown byte is cleared.
 */

/* A table or grain on file during a repair. */
struct rref {
  uint64_t start;    /* sector */
  uint32_t gdi, idx; /* grain: table and entry; a table: idx UINT32_MAX */
  bool redundant;    /* a table: the redundant copy */
};

static int cmp_rref(const void *a, const void *b) {
  const struct rref *x = a, *y = b;
  if (x->start != y->start)
    return x->start < y->start ? -1 : 1;
  if (x->redundant != y->redundant)
    return x->redundant ? 1 : -1;
  if (x->gdi != y->gdi)
    return x->gdi < y->gdi ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct rrefs {
  struct rref *r;
  size_t n, cap;
};

static int rrefs_add(struct rrefs *v, uint64_t start, uint32_t gdi,
                     uint32_t idx, bool redundant) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 256;
    struct rref *r = realloc(v->r, cap * sizeof *r);
    if (!r)
      return set_error(ENOMEM, "out of memory while repairing");
    v->r = r;
    v->cap = cap;
  }
  v->r[v->n++] = (struct rref){start, gdi, idx, redundant};
  return 0;
}

/* Per GD entry during a repair. */
struct rtab {
  uint32_t gt, rgt;     /* the directory entries to write */
  bool gt_ok, rgt_ok;   /* the table the entry had on file is usable */
  uint32_t *ent;        /* the grain table to write, or NULL */
  uint32_t *rent;       /* the redundant table to write, or NULL */
  bool write_gt, write_rgt;
};

struct repair {
  struct sparse *s;
  struct check_ctx *c;
  bool all;
  uint64_t file_sectors;
  uint64_t fixed[4][2]; /* header, descriptor, GD, RGD: start, length */
  unsigned n_fixed;
  struct rrefs tables;  /* usable tables, sorted */
  struct rtab *t;
  bool dirs_changed;
};

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

/* Whether LEN sectors at START overlap the header, descriptor or a
 * directory (WHY set), or (TABLES) a usable table. */
static bool on_metadata(const struct repair *r, uint64_t start, uint64_t len,
                        bool tables) {
  for (unsigned i = 0; i < r->n_fixed; i++)
    if (overlaps(start, len, r->fixed[i][0], r->fixed[i][1]))
      return true;
  if (!tables)
    return false;
  /* the last usable table starting before START + LEN */
  size_t lo = 0, hi = r->tables.n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (r->tables.r[mid].start < start + len)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo > 0 &&
         overlaps(start, len, r->tables.r[lo - 1].start, r->s->gt_sectors);
}

static const char *table_problem(const struct repair *r, uint32_t v) {
  if ((uint64_t)v + r->s->gt_sectors > r->file_sectors)
    return "lies past the end of the file";
  if (on_metadata(r, v, r->s->gt_sectors, false))
    return "overlaps the header, descriptor or a grain directory";
  return "overlaps another grain table";
}

/* Why entry I of table GDI (V) cannot be right, or NULL.  A grain that
 * starts in the file but runs past its end is kept (VMDK_REPAIR_ALL
 * extends the file over it: see extend_over_grains). */
static const char *repair_entry_problem(const struct repair *r, uint32_t gdi,
                                        uint32_t i, uint32_t v) {
  const char *why = entry_problem(r->s, gdi, i, v, r->file_sectors);
  if (why && r->all && v > 1 && v < r->file_sectors &&
      !entry_problem(r->s, gdi, i, v, UINT64_MAX))
    why = NULL;
  if (!why && v > 1 && on_metadata(r, v, r->s->h.grain, true))
    why = "points into the metadata";
  return why;
}

/* The file must hold every grain the tables keep (check_grain): extend it
 * over the ones that run past its end (what was never written there reads
 * as zeros, as it did in the session that allocated them). */
static int extend_over_grains(struct repair *r) {
  struct sparse *s = r->s;
  uint64_t need = 0;
  uint32_t gdi_at = 0, idx_at = 0;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    for (uint32_t i = 0; r->t[gdi].ent && i < s->h.gtes_per_gt; i++) {
      uint32_t v = r->t[gdi].ent[i];
      uint64_t gno = (uint64_t)gdi * s->h.gtes_per_gt + i;
      if (v > 1 && gno * s->h.grain < s->h.capacity &&
          v + grain_sectors_read(s, gno) > need) {
        need = v + grain_sectors_read(s, gno);
        gdi_at = gdi;
        idx_at = i;
      }
    }
  if (need * SECTOR <= s->f->size)
    return 0;
  check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
               "%s: the grain of entry %" PRIu32 " of table %" PRIu32
               " (and maybe others) ran past the end of the file: extended "
               "the file by %" PRIu64 " bytes (they read as zeros)",
               s->f->path, idx_at, gdi_at, need * SECTOR - s->f->size);
  if (mark_unclean(s) != 0 || vf_truncate(s->f, need * SECTOR) != 0)
    return -1;
  if (s->end < need * SECTOR)
    s->end = need * SECTOR;
  return 0;
}

static int read_table(struct sparse *s, uint32_t sector, uint32_t **out) {
  uint32_t *t = malloc(s->gt_bytes);
  if (!t)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  if (gt_read(s->f, sector, t, s->h.gtes_per_gt) != 0) {
    free(t);
    return -1;
  }
  *out = t;
  return 0;
}

static int write_table_at(struct sparse *s, const uint32_t *t, uint32_t sector) {
  uint8_t *raw = malloc(s->gt_bytes);
  if (!raw)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  encode_table(t, raw, s->h.gtes_per_gt);
  int ret = vf_pwrite(s->f, raw, s->gt_bytes, (uint64_t)sector * SECTOR);
  free(raw);
  return ret;
}

/* Which tables on file are usable: fills t[].gt_ok/rgt_ok, r->tables. */
static int find_usable_tables(struct repair *r) {
  struct sparse *s = r->s;
  struct rrefs cand = {0};
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    for (int red = 0; red < (s->rgd ? 2 : 1); red++) {
      uint32_t v = red ? s->rgd[gdi] : s->gd[gdi];
      if (v && (uint64_t)v + s->gt_sectors <= r->file_sectors &&
          !on_metadata(r, v, s->gt_sectors, false) &&
          rrefs_add(&cand, v, gdi, UINT32_MAX, red) != 0) {
        free(cand.r);
        return -1;
      }
    }
  if (cand.n) /* qsort(NULL, 0) is undefined */
    qsort(cand.r, cand.n, sizeof *cand.r, cmp_rref);
  uint64_t covered = 0;
  for (size_t k = 0; k < cand.n; k++) {
    const struct rref *x = &cand.r[k];
    if (x->start < covered)
      continue; /* overlaps a table kept before it */
    covered = x->start + s->gt_sectors;
    if (x->redundant)
      r->t[x->gdi].rgt_ok = true;
    else
      r->t[x->gdi].gt_ok = true;
    cand.r[r->tables.n++] = *x; /* compacted in place, still sorted */
  }
  r->tables.r = cand.r;
  r->tables.cap = cand.cap;
  return 0;
}

/* New tables and grain copies go at s->end.  Before any is placed, move it
 * past the end of every grain a usable table points at that starts in the
 * file but runs past its end (VMDK_REPAIR_ALL keeps those and extends the
 * file over them: see extend_over_grains), so nothing new lands on one. */
static int reserve_past_grains(struct repair *r) {
  struct sparse *s = r->s;
  for (size_t k = 0; k < r->tables.n; k++) {
    const struct rref *x = &r->tables.r[k];
    uint32_t *t = NULL;
    if (read_table(s, (uint32_t)x->start, &t) != 0)
      return -1;
    for (uint32_t i = 0; i < s->h.gtes_per_gt; i++) {
      uint64_t gno = (uint64_t)x->gdi * s->h.gtes_per_gt + i;
      if (t[i] > 1 && t[i] < r->file_sectors &&
          gno * s->h.grain < s->h.capacity &&
          (t[i] + grain_sectors_read(s, gno)) * SECTOR > s->end)
        s->end = (t[i] + grain_sectors_read(s, gno)) * SECTOR;
    }
    free(t);
  }
  return 0;
}

/* Fix the entries of ENT (table GDI), taking the entry of ALT (may be
 * NULL) where ENT's cannot be right.  Reports each; returns how many
 * changed. */
static uint32_t fix_entries(struct repair *r, uint32_t gdi, uint32_t *ent,
                            const uint32_t *alt, const char *what) {
  uint32_t changed = 0;
  for (uint32_t i = 0; i < r->s->h.gtes_per_gt; i++) {
    const char *why = repair_entry_problem(r, gdi, i, ent[i]);
    if (!why)
      continue;
    uint32_t v = alt && !repair_entry_problem(r, gdi, i, alt[i]) ? alt[i] : 0;
    if (v)
      check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: entry %" PRIu32 " of %s %" PRIu32 " was %" PRIu32
                   " (it %s): set it to %" PRIu32 " from the other copy",
                   r->s->f->path, i, what, gdi, ent[i], why, v);
    else
      check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: entry %" PRIu32 " of %s %" PRIu32 " was %" PRIu32
                   " (it %s): cleared it (what it pointed at is lost)",
                   r->s->f->path, i, what, gdi, ent[i], why);
    ent[i] = v;
    changed++;
  }
  return changed;
}

/* A new table at the end of the file for the copy of GDI (REDUNDANT). */
static int new_table(struct repair *r, uint32_t gdi, bool redundant) {
  uint32_t sec = 0;
  if (alloc_at_end(r->s, r->s->gt_sectors * SECTOR, &sec) != 0)
    return -1;
  if (redundant) {
    r->t[gdi].rgt = sec;
    r->t[gdi].write_rgt = true;
  } else {
    r->t[gdi].gt = sec;
    r->t[gdi].write_gt = true;
  }
  r->dirs_changed = true;
  return 0;
}

/* Decide what GD entry GDI gets (VMDK_REPAIR_ALL, or the LEAK-kind part). */
static int plan_table(struct repair *r, uint32_t gdi) {
  struct sparse *s = r->s;
  struct rtab *t = &r->t[gdi];
  const char *path = s->f->path;
  bool unclean = s->h.unclean != 0;
  uint32_t g = s->gd[gdi], rg = s->rgd ? s->rgd[gdi] : 0;
  uint32_t *p = NULL, *q = NULL;
  t->gt = g;
  t->rgt = rg;
  if (t->gt_ok && read_table(s, g, &p) != 0)
    return -1;
  if (t->rgt_ok && read_table(s, rg, &q) != 0) {
    free(p);
    return -1;
  }

  if (t->gt_ok) {
    /* The grain table is the truth. */
    uint32_t *orig = malloc(s->gt_bytes);
    if (!orig) {
      free(p);
      free(q);
      return set_error(ENOMEM, "%s: out of memory", path);
    }
    memcpy(orig, p, s->gt_bytes);
    t->ent = p;
    if (r->all && fix_entries(r, gdi, p, q, "grain table"))
      t->write_gt = true;
    if (s->rgd && t->rgt_ok) {
      /* Where the primary entry is right, the redundant one must equal it
       * (LEAK kind when the image was left unclean: rule 3). */
      uint32_t stale = 0, first = 0;
      for (uint32_t i = 0; i < s->h.gtes_per_gt; i++) {
        /* (what check counts as stale, for the LEAK-kind repair) */
        bool right = r->all ? !repair_entry_problem(r, gdi, i, orig[i])
                            : !entry_problem(s, gdi, i, orig[i],
                                             r->file_sectors);
        uint32_t want = r->all ? p[i] : right ? orig[i] : q[i];
        if (q[i] != want) {
          if (right && orig[i] == p[i] && !stale++)
            first = i;
          t->write_rgt = true;
        }
        q[i] = want;
      }
      if (!r->all && !unclean)
        t->write_rgt = false; /* not a LEAK-kind repair: leave it */
      if (stale && t->write_rgt)
        check_report(r->c, unclean ? VMDK_PROBLEM_LEAK : VMDK_PROBLEM_CORRUPT,
                     0,
                     "%s: redundant grain table %" PRIu32 " differed from the "
                     "grain table in %" PRIu32 " entries (first: entry %"
                     PRIu32 ")%s: rewrote it from the grain table",
                     path, gdi, stale, first,
                     unclean ? " (an update a crash interrupted)" : "");
      t->rent = q;
      q = NULL;
    } else if (s->rgd && r->all) {
      check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: redundant grain directory entry %" PRIu32 " was %"
                   PRIu32 "%s%s: wrote a new redundant table (a copy of the "
                   "grain table) at the end of the file",
                   path, gdi, rg, rg ? ", a table that " : " (none)",
                   rg ? table_problem(r, rg) : "");
      if (new_table(r, gdi, true) != 0) {
        free(orig);
        goto fail;
      }
    }
    free(orig);
    free(q);
    return 0;
  }

  if (g == 0 && rg) {
    if (unclean) { /* what check reports as kind LEAK (rule 3) */
      check_report(r->c, VMDK_PROBLEM_LEAK, 0,
                   "%s: redundant grain directory entry %" PRIu32 " was %"
                   PRIu32 " without a grain directory entry (a table "
                   "allocation a crash interrupted): cleared it",
                   path, gdi, rg);
      t->rgt = 0;
      r->dirs_changed = true;
    } else if (t->rgt_ok && r->all) {
      fix_entries(r, gdi, q, NULL, "redundant grain table");
      check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain directory entry %" PRIu32 " was 0 but the "
                   "redundant one has a table (sector %" PRIu32 "): made a "
                   "copy of it the grain table, at the end of the file",
                   path, gdi, rg);
      t->ent = q;
      t->write_rgt = true;
      t->rent = malloc(s->gt_bytes);
      if (!t->rent) {
        q = NULL;
        goto fail;
      }
      memcpy(t->rent, q, s->gt_bytes);
      q = NULL;
      if (new_table(r, gdi, false) != 0)
        goto fail;
    } else if (r->all) {
      check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: redundant grain directory entry %" PRIu32 " was %"
                   PRIu32 ", a table that %s, and the grain directory entry "
                   "0: cleared it",
                   path, gdi, rg, table_problem(r, rg));
      t->rgt = 0;
      r->dirs_changed = true;
    }
  } else if (g && r->all) {
    if (t->rgt_ok) {
      fix_entries(r, gdi, q, NULL, "redundant grain table");
      check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain table %" PRIu32 " at sector %" PRIu32
                   " %s: made a copy of its redundant table the grain "
                   "table, at the end of the file",
                   path, gdi, g, table_problem(r, g));
      t->ent = q;
      t->rent = malloc(s->gt_bytes);
      if (!t->rent) {
        q = NULL;
        goto fail;
      }
      memcpy(t->rent, q, s->gt_bytes);
      t->write_rgt = true;
      q = NULL;
      if (new_table(r, gdi, false) != 0)
        goto fail;
    } else {
      check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain table %" PRIu32 " at sector %" PRIu32
                   " %s and there is no usable redundant copy: cleared its "
                   "directory entries (its grains are lost)",
                   path, gdi, g, table_problem(r, g));
      t->gt = t->rgt = 0;
      r->dirs_changed = true;
    }
  }
  free(p);
  free(q);
  return 0;
fail:
  free(q);
  return -1;
}

/* Grains on the same sectors as others: each but the first gets its own
 * copy at the end of the file. */
static int unshare_grains(struct repair *r) {
  struct sparse *s = r->s;
  struct rrefs g = {0};
  uint8_t *buf = NULL;
  int ret = -1;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    for (uint32_t i = 0; r->t[gdi].ent && i < s->h.gtes_per_gt; i++)
      if (r->t[gdi].ent[i] > 1 &&
          rrefs_add(&g, r->t[gdi].ent[i], gdi, i, false) != 0)
        goto out;
  if (g.n)
    qsort(g.r, g.n, sizeof *g.r, cmp_rref);
  uint64_t covered = 0;
  const struct rref *owner = NULL;
  for (size_t k = 0; k < g.n; k++) {
    const struct rref *x = &g.r[k];
    if (!owner || x->start >= covered) {
      owner = x;
      covered = x->start + s->h.grain;
      continue;
    }
    uint32_t sec = 0;
    if ((!buf && !(buf = malloc(s->grain_bytes))) ||
        alloc_at_end(s, s->grain_bytes, &sec) != 0) {
      if (!buf)
        set_error(ENOMEM, "%s: out of memory", s->f->path);
      goto out;
    }
    if (mark_unclean(s) != 0 ||
        vf_pread(s->f, buf, s->grain_bytes, x->start * SECTOR) != 0 ||
        vf_pwrite(s->f, buf, s->grain_bytes, (uint64_t)sec * SECTOR) != 0)
      goto out;
    check_report(r->c, VMDK_PROBLEM_CORRUPT, 0,
                 "%s: the grain of entry %" PRIu32 " of table %" PRIu32
                 " (sector %" PRIu64 ") overlapped the grain of entry %" PRIu32
                 " of table %" PRIu32 " (sector %" PRIu64 "): gave it its own "
                 "copy at sector %" PRIu32,
                 s->f->path, x->idx, x->gdi, x->start, owner->idx, owner->gdi,
                 owner->start, sec);
    struct rtab *t = &r->t[x->gdi];
    t->ent[x->idx] = sec;
    t->write_gt = true;
    if (t->rent) {
      t->rent[x->idx] = sec;
      t->write_rgt = true;
    }
  }
  ret = 0;
out:
  free(buf);
  free(g.r);
  return ret;
}

/* Leaked space: what nothing on file points at (not even an entry that is
 * wrong) and that holds anything but zeros. */
static int reclaim_leaks(struct repair *r) {
  struct sparse *s = r->s;
  struct rrefs u = {0};
  uint32_t *t = NULL;
  int ret = -1;
  uint64_t fs = div_round_up(s->f->size, SECTOR);
  for (unsigned i = 0; i < r->n_fixed; i++)
    if (rrefs_add(&u, r->fixed[i][0], UINT32_MAX, (uint32_t)r->fixed[i][1],
                  false))
      goto out;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    for (int red = 0; red < (s->rgd ? 2 : 1); red++) {
      uint32_t v = red ? s->rgd[gdi] : s->gd[gdi];
      if (!v || v >= fs)
        continue;
      if (rrefs_add(&u, v, UINT32_MAX, (uint32_t)s->gt_sectors, false) ||
          read_table(s, v, &t) != 0)
        goto out;
      for (uint32_t i = 0; i < s->h.gtes_per_gt; i++)
        if (t[i] > 1 && t[i] < fs &&
            rrefs_add(&u, t[i], UINT32_MAX, (uint32_t)s->h.grain, false))
          goto out;
      free(t);
      t = NULL;
    }
  /* For these refs, idx holds the length in sectors. */
  if (u.n)
    qsort(u.r, u.n, sizeof *u.r, cmp_rref);
  uint64_t covered = s->h.overhead;
  for (size_t k = 0; k <= u.n; k++) {
    uint64_t start = k < u.n ? u.r[k].start : fs;
    if (start > covered && covered < fs) {
      uint64_t to = start < fs ? start : fs;
      bool zero = true;
      if (range_is_zero(s->f, covered * SECTOR, (to - covered) * SECTOR,
                        &zero) != 0)
        goto out;
      if (!zero) {
        if (mark_unclean(s) != 0)
          goto out;
        if (k == u.n) {
          if (vf_truncate(s->f, covered * SECTOR) != 0)
            goto out;
          s->end = covered * SECTOR;
          check_report(r->c, VMDK_PROBLEM_LEAK, (to - covered) * SECTOR,
                       "%s: %" PRIu64 " sectors at sector %" PRIu64
                       " (the end of the file) were allocated but not used: "
                       "cut them off",
                       s->f->path, to - covered, covered);
        } else {
          if (vf_zero_range(s->f, (to - covered) * SECTOR,
                            covered * SECTOR) != 0)
            goto out;
          check_report(r->c, VMDK_PROBLEM_LEAK, (to - covered) * SECTOR,
                       "%s: %" PRIu64 " sectors at sector %" PRIu64
                       " were allocated but not used: zeroed them (a hole "
                       "where the file system can punch one: they take no "
                       "space then); the format cannot reuse them",
                       s->f->path, to - covered, covered);
        }
      }
    }
    if (k < u.n && u.r[k].start + u.r[k].idx > covered)
      covered = u.r[k].start + u.r[k].idx;
  }
  ret = 0;
out:
  free(t);
  free(u.r);
  return ret;
}

static int sparse_resize(struct extent *e, uint64_t size);

static int sparse_repair(struct extent *e, unsigned what, struct check_ctx *c) {
  struct sparse *s = e->priv;
  if (flush_metadata(s) != 0)
    return -1;
  if (e->size < s->h.capacity * SECTOR) { /* an interrupted resize */
    uint64_t was = s->h.capacity;
    if (sparse_resize(e, e->size) != 0)
      return -1;
    check_report(c, VMDK_PROBLEM_LEAK, 0,
                 "%s: the header said %" PRIu64 " sectors, the descriptor "
                 "%" PRIu64 ": the header now agrees",
                 s->f->path, was, e->size / SECTOR);
  }
  gtc_drop_all(&s->gtc); /* after a flush: nothing in it is dirty */
  struct repair r = {.s = s, .c = c,
                     .all = (what & VMDK_REPAIR_ALL) == VMDK_REPAIR_ALL};
  int ret = -1;
  r.file_sectors = div_round_up(s->f->size, SECTOR);
  uint64_t gd_sectors = div_round_up((uint64_t)s->n_gdes * 4, SECTOR);
  r.fixed[r.n_fixed][0] = 0;
  r.fixed[r.n_fixed++][1] = 1;
  if (s->h.desc_offset) {
    r.fixed[r.n_fixed][0] = s->h.desc_offset;
    r.fixed[r.n_fixed++][1] = s->h.desc_size;
  }
  r.fixed[r.n_fixed][0] = s->h.gd_offset;
  r.fixed[r.n_fixed++][1] = gd_sectors;
  if (s->rgd) {
    r.fixed[r.n_fixed][0] = s->h.rgd_offset;
    r.fixed[r.n_fixed++][1] = gd_sectors;
  }
  r.t = calloc((size_t)s->n_gdes + 1, sizeof *r.t);
  if (!r.t) {
    set_error(ENOMEM, "%s: out of memory", s->f->path);
    goto out;
  }
  if (find_usable_tables(&r) != 0 || reserve_past_grains(&r) != 0)
    goto out;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    if (plan_table(&r, gdi) != 0)
      goto out;
  if (r.all && (unshare_grains(&r) != 0 || extend_over_grains(&r) != 0))
    goto out;

  /* Grain copies are written: sync before tables point at them. */
  bool tables = false;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    tables |= r.t[gdi].write_gt || r.t[gdi].write_rgt;
  if (tables || r.dirs_changed) {
    if (mark_unclean(s) != 0)
      goto out;
    if (s->f->size < s->end && vf_truncate(s->f, s->end) != 0)
      goto out;
    if (vf_sync(s->f) != 0)
      goto out;
    for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++) {
      struct rtab *t = &r.t[gdi];
      if (t->write_rgt && t->rgt &&
          write_table_at(s, t->rent ? t->rent : t->ent, t->rgt) != 0)
        goto out;
      if (t->write_gt && t->gt && write_table_at(s, t->ent, t->gt) != 0)
        goto out;
    }
    if (vf_sync(s->f) != 0)
      goto out;
    if (r.dirs_changed) {
      for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++) {
        s->gd[gdi] = r.t[gdi].gt;
        if (s->rgd)
          s->rgd[gdi] = r.t[gdi].rgt;
      }
      if (write_directories(s) != 0 || vf_sync(s->f) != 0)
        goto out;
    }
  }
  if (reclaim_leaks(&r) != 0 || vf_sync(s->f) != 0)
    goto out;
  /* Consistent again: the traces rule 3 explains are gone. */
  if (s->h.unclean || s->unclean_set) {
    uint8_t zero = 0;
    if (vf_pwrite(s->f, &zero, 1, 72) != 0 || vf_sync(s->f) != 0)
      goto out;
    s->h.unclean = 0;
    s->unclean_set = false;
  }
  ret = 0;
out:
  for (uint32_t gdi = 0; r.t && gdi < s->n_gdes; gdi++) {
    free(r.t[gdi].ent);
    free(r.t[gdi].rent);
  }
  free(r.t);
  free(r.tables.r);
  return ret;
}

static int sparse_write_descriptor(struct extent *e, const char *text,
                                   size_t len);

/* After a grown directory is durable: release the sectors of the old one
 * (SECTORS at sector AT), when they lie in the data area -- where a
 * previous growth put it; the original directories, before overHead, are
 * metadata space and stay.  Punched (or zeroed), so that check finds no
 * leak there; nothing points at them any more.  Left alone when a grain
 * table of the new directory lies on them (a corrupt image: not ours to
 * fix here).  Best effort: the resize is already complete, so a failure
 * leaves only leaked space (check exit 3, `check -r leaks`), and a failed
 * sync is remembered by the file (every later flush fails). */
static void release_old_directory(struct sparse *s, uint64_t at,
                                  uint64_t sectors) {
  if (at < s->h.overhead) {
    uint64_t meta = s->h.overhead - at;
    if (sectors <= meta)
      return;
    at += meta;
    sectors -= meta;
  }
  uint64_t gd_sectors = div_round_up((uint64_t)s->n_gdes * 4, SECTOR);
  for (uint32_t i = 0; i < s->n_gdes; i++)
    for (int r = 0; r < 2; r++) {
      uint64_t t = r ? (s->rgd ? s->rgd[i] : 0) : s->gd[i];
      if (t && t < at + sectors && at < t + s->gt_sectors)
        return;
    }
  if (s->h.gd_offset < at + sectors && at < s->h.gd_offset + gd_sectors)
    return;
  if (s->rgd && s->h.rgd_offset < at + sectors &&
      at < s->h.rgd_offset + gd_sectors)
    return;
  (void)vf_zero_range(s->f, sectors * SECTOR, at * SECTOR);
}

/* After a shrink is durable (the header's capacity no longer covers them):
 * release the grain tables of directory entries N and up, and the sectors
 * of the directories only those entries used, so that check finds no leak
 * where a growth had put them; then forget them (the cache too, so a later
 * growth of this handle starts from empty tables).  Tables in the metadata
 * area before overHead stay (release_old_directory).  Best effort, as
 * there: a failure leaves only leaked space. */
static void release_cut_tables(struct sparse *s, uint32_t n) {
  uint32_t old_n = s->n_gdes;
  if (n >= old_n)
    return;
  uint64_t old_dir = div_round_up((uint64_t)old_n * 4, SECTOR);
  uint64_t new_dir = div_round_up((uint64_t)n * 4, SECTOR);
  uint32_t *cut = malloc((size_t)(old_n - n) * 2 * sizeof *cut);
  for (uint32_t i = n; i < old_n; i++) {
    if (cut) {
      cut[(i - n) * 2] = s->gd[i];
      cut[(i - n) * 2 + 1] = s->rgd ? s->rgd[i] : 0;
    }
    s->gd[i] = 0;
    if (s->rgd)
      s->rgd[i] = 0;
  }
  s->n_gdes = n; /* from here on, only entries below N are live */
  gtc_drop_all(&s->gtc);
  for (uint32_t k = 0; cut && k < (old_n - n) * 2; k++)
    if (cut[k])
      release_old_directory(s, cut[k], s->gt_sectors);
  free(cut);
  if (old_dir > new_dir) {
    release_old_directory(s, s->h.gd_offset + new_dir, old_dir - new_dir);
    if (s->rgd)
      release_old_directory(s, s->h.rgd_offset + new_dir, old_dir - new_dir);
  }
  (void)vf_sync(s->f);
}

/* Grow or shrink the capacity.  When the grain directory must grow, a new
 * GD and RGD are written at the end of the file (with new, preallocated
 * tables when the image had every table preallocated), synced, and only
 * then does the header point at them: a crash before that leaves the old
 * image intact.  After the header is synced, the old GD and RGD are
 * released when an earlier growth had put them in the data area
 * (release_old_directory), then synced: a crash before that leaves only
 * leaked space.  On shrink, entries past the new capacity are cleared
 * (their grains are leaked; the disk layer checked they hold no data), and
 * once the header is synced the tables of the directory entries cut off
 * are released (release_cut_tables). */
static int sparse_resize(struct extent *e, uint64_t size) {
  struct sparse *s = e->priv;
  uint64_t cap = size / SECTOR;
  uint64_t data = div_round_up(cap, s->h.grain) * s->h.grain;
  if (cap > (uint64_t)1 << 32 || data > MAX_FILE_SECTORS)
    return set_error(EFBIG, "%s: a hosted sparse extent cannot hold %" PRIu64
                            " bytes (32-bit sector numbers: 2 TiB)",
                     s->f->path, size);
  if (flush_metadata(s) != 0)
    return -1;
  uint64_t n64 = div_round_up(cap, s->h.grain * s->h.gtes_per_gt);
  uint32_t n = (uint32_t)n64;
  struct kdmv_header h = s->h;
  uint64_t old_gd = s->h.gd_offset, old_rgd = s->rgd ? s->h.rgd_offset : 0;
  uint64_t old_dir_sectors = div_round_up((uint64_t)s->n_gdes * 4, SECTOR);
  bool moved = false;
  if (n > s->n_gdes) {
    bool prealloc = true;
    for (uint32_t i = 0; i < s->n_gdes; i++)
      prealloc &= s->gd[i] != 0;
    uint32_t *gd = realloc(s->gd, (size_t)n * 4);
    if (gd)
      s->gd = gd;
    uint32_t *rgd = s->rgd ? realloc(s->rgd, (size_t)n * 4) : NULL;
    if (rgd)
      s->rgd = rgd;
    bool so = gtc_grow(&s->gtc, n) == 0;
    if (!gd || (s->rgd && !rgd) || !so)
      return set_error(ENOMEM, "%s: out of memory", s->f->path);
    uint64_t dir_bytes = (uint64_t)n * 4;
    uint32_t gd_sec = 0, rgd_sec = 0;
    if ((s->rgd && alloc_at_end(s, dir_bytes, &rgd_sec) != 0) ||
        alloc_at_end(s, dir_bytes, &gd_sec) != 0)
      return -1;
    for (uint32_t i = s->n_gdes; i < n; i++) {
      uint32_t t = 0, rt = 0;
      if (prealloc && ((s->rgd && alloc_at_end(s, s->gt_bytes, &rt) != 0) ||
                       alloc_at_end(s, s->gt_bytes, &t) != 0))
        return -1;
      s->gd[i] = t;
      if (s->rgd)
        s->rgd[i] = rt;
    }
    uint32_t old_n = s->n_gdes;
    s->n_gdes = n;
    s->h.gd_offset = gd_sec;
    s->h.rgd_offset = s->rgd ? rgd_sec : 0;
    /* New tables are zeros: the length covers them as a hole. */
    if (vf_truncate(s->f, s->end) != 0 || write_directories(s) != 0 ||
        vf_sync(s->f) != 0) {
      s->n_gdes = old_n;
      s->h.gd_offset = h.gd_offset;
      s->h.rgd_offset = h.rgd_offset;
      return -1;
    }
    h.gd_offset = s->h.gd_offset;
    h.rgd_offset = s->h.rgd_offset;
    moved = true;
  } else if (cap < s->h.capacity) {
    uint64_t first = div_round_up(cap, s->h.grain); /* first grain cut off */
    uint64_t last = div_round_up(s->h.capacity, s->h.grain);
    for (uint64_t g = first; g < last; g++) {
      struct grain_ref ref;
      uint32_t gdi = (uint32_t)(g / s->h.gtes_per_gt);
      if (s->gd[gdi] == 0 && !gtc_cached(&s->gtc, gdi)) {
        g = ((uint64_t)gdi + 1) * s->h.gtes_per_gt - 1;
        continue;
      }
      if (lookup(s, g, false, &ref) != 0)
        return -1;
      if (ref.gte && gtc_set_gte(&s->gtc, &ref, 0) != 0)
        return -1;
    }
    if (flush_metadata(s) != 0)
      return -1;
  }
  h.capacity = cap;
  h.unclean = s->unclean_set ? 1 : s->h.unclean;
  uint8_t b[SECTOR];
  kdmv_encode_header(&h, b);
  if (vf_pwrite(s->f, b, SECTOR, 0) != 0 || vf_sync(s->f) != 0)
    return -1;
  s->h.capacity = cap;
  e->size = cap * SECTOR;
  if (moved) { /* the header no longer points at them (synced above) */
    release_old_directory(s, old_gd, old_dir_sectors);
    if (old_rgd)
      release_old_directory(s, old_rgd, old_dir_sectors);
    (void)vf_sync(s->f);
  } else if (n < s->n_gdes) { /* shrunk: the header no longer covers them */
    release_cut_tables(s, n);
  }
  return 0;
}

static const struct extent_ops sparse_ops = {
    .name = "sparse",
    .pread = sparse_pread,
    .pwrite = sparse_pwrite,
    .zero = sparse_zero,
    .status = sparse_status,
    .flush = sparse_flush,
    .close = sparse_close,
    .check = sparse_check,
    .repair = sparse_repair,
    .info = sparse_info,
    .allocated = sparse_allocated,
    .write_descriptor = sparse_write_descriptor,
    .resize = sparse_resize,
};

/* ---- open and create ---------------------------------------------------- */

static int read_directory(struct sparse *s, uint64_t sector, uint32_t **out) {
  size_t bytes = (size_t)s->n_gdes * 4 + 4; /* + 4: never malloc(0) */
  uint8_t *raw = malloc(bytes);
  uint32_t *gd = malloc(bytes);
  if (!raw || !gd) {
    free(raw);
    free(gd);
    return set_error(ENOMEM, "%s: out of memory for the grain directory",
                     s->f->path);
  }
  if (vf_pread(s->f, raw, bytes - 4, sector * SECTOR) != 0) {
    free(raw);
    free(gd);
    return -1;
  }
  for (uint32_t i = 0; i < s->n_gdes; i++)
    gd[i] = le32(raw + 4 * i);
  free(raw);
  *out = gd;
  return 0;
}

int sparse_open(struct extent *e, struct vfile *f) {
  uint8_t hdr[SECTOR];
  if (f->size < SECTOR) {
    set_error(EINVAL, "%s: file is too short for a sparse header (%" PRIu64
                      " bytes)",
              f->path, f->size);
    vf_close(f);
    return -1;
  }
  struct sparse *s = calloc(1, sizeof *s);
  if (!s) {
    vf_close(f);
    return set_error(ENOMEM, "out of memory");
  }
  s->f = f;
  if (vf_pread(f, hdr, SECTOR, 0) != 0 ||
      kdmv_decode_header(hdr, f->path, f->size, &s->h) != 0)
    goto fail;
  if (s->h.flags & FLAG_COMPRESSED) { /* streamOptimized: its own file */
    free(s);
    return stream_open(e, f, hdr);
  }

  const struct kdmv_header *h = &s->h;
  s->grain_bytes = h->grain * SECTOR;
  s->gt_bytes = (uint64_t)h->gtes_per_gt * 4;
  s->gt_sectors = div_round_up(s->gt_bytes, SECTOR);
  s->table_bytes = s->grain_bytes * h->gtes_per_gt;
  uint64_t file_sectors = div_round_up(f->size, SECTOR);
  s->n_gdes = (uint32_t)div_round_up(h->capacity, h->grain * h->gtes_per_gt);
  /* A descriptor that gives the extent fewer sectors than the header is
   * what an interrupted resize leaves (the header goes first when growing,
   * last when shrinking): the disk is the descriptor's size, and check
   * reports it (check -r leaks brings the header in line).  More than the
   * header holds is refused. */
  if (e->size > h->capacity * SECTOR) {
    set_error(EINVAL, "%s: the descriptor gives the extent %" PRIu64
                      " sectors but its header says %" PRIu64,
              f->path, e->size / SECTOR, h->capacity);
    goto fail;
  }
  if (read_directory(s, h->gd_offset, &s->gd) != 0)
    goto fail;
  if ((h->flags & FLAG_RGD) && read_directory(s, h->rgd_offset, &s->rgd) != 0)
    goto fail;
  s->end = file_sectors * SECTOR;

  uint64_t slots = GT_CACHE_BUDGET / s->gt_bytes;
  if (slots < 4)
    slots = 4;
  if (slots > s->n_gdes)
    slots = s->n_gdes;
  if (gtc_init(&s->gtc, s->n_gdes, h->gtes_per_gt, (uint32_t)slots,
               flush_for_cache, s, f->path) != 0)
    goto fail;
  s->gtc.f = f;
  s->gtc.grain_bytes = s->grain_bytes;
  s->gtc.lookup = lookup;
  s->gtc.alloc = alloc_grain;
  if (f->before_write) /* writable: the unclean flag goes with the CID */
    f->before_write = first_write;
  e->ops = &sparse_ops;
  e->priv = s;
  return 0;
fail:
  vf_close(s->f);
  sparse_free(s);
  return -1;
}

int sparse_read_embedded_descriptor(struct vfile *f, char **text,
                                    size_t *len) {
  uint8_t hdr[SECTOR];
  struct kdmv_header h;
  *text = NULL;
  *len = 0;
  if (f->size < SECTOR)
    return set_error(EINVAL, "%s: file is too short for a sparse header "
                             "(%" PRIu64 " bytes)",
                     f->path, f->size);
  if (vf_pread(f, hdr, SECTOR, 0) != 0 ||
      kdmv_decode_header(hdr, f->path, f->size, &h) != 0)
    return -1;
  if (h.desc_offset == 0)
    return 0;
  size_t n = (size_t)(h.desc_size * SECTOR);
  char *t = malloc(n + 1);
  if (!t)
    return set_error(ENOMEM, "%s: out of memory", f->path);
  if (vf_pread(f, t, n, h.desc_offset * SECTOR) != 0) {
    free(t);
    return -1;
  }
  t[n] = '\0';
  *text = t;
  *len = strlen(t);
  return 0;
}

int kdmv_write_descriptor(struct vfile *f, const struct kdmv_header *h,
                          const char *text, size_t len) {
  uint64_t room = h->desc_size * SECTOR;
  if (h->desc_offset == 0 || len > room)
    return set_error(ENOSPC, "%s: the descriptor (%zu bytes) does not fit "
                             "in the space embedded for it (%" PRIu64 " bytes)",
                     f->path, len, room);
  uint8_t *buf = calloc(1, room);
  if (!buf)
    return set_error(ENOMEM, "out of memory");
  memcpy(buf, text, len);
  int r = vf_pwrite(f, buf, room, h->desc_offset * SECTOR);
  free(buf);
  return r;
}

static int sparse_write_descriptor(struct extent *e, const char *text,
                                   size_t len) {
  struct sparse *s = e->priv;
  return kdmv_write_descriptor(s->f, &s->h, text, len);
}

/* Layout of a new extent: header, descriptor, RGD, RGTs, GD, GTs, then
 * grains from the next grain boundary (as VMware and QEMU lay it out). */
struct layout {
  uint64_t n_gdes, gd_sectors, gt_sectors;
  uint64_t desc_offset, desc_sectors;
  uint64_t rgd, rgt, gd, gt; /* first sectors; rgt/gt unused when lazy */
  uint64_t overhead;
};

static void plan(const struct sparse_create_params *p, struct layout *l) {
  uint64_t gtes = 512;
  l->n_gdes = div_round_up(p->capacity_sectors, gtes * p->grain_sectors);
  l->gd_sectors = div_round_up(l->n_gdes * 4, SECTOR);
  l->gt_sectors = div_round_up(gtes * 4, SECTOR);
  /* No descriptor (a twoGbMaxExtentSparse extent): descriptorOffset and
   * descriptorSize 0, as VMware and VirtualBox write split extents. */
  l->desc_offset = p->descriptor ? 1 : 0;
  l->desc_sectors = !p->descriptor               ? 0
                    : p->descriptor_sectors < 20 ? 20
                                                 : p->descriptor_sectors;
  uint64_t tables = p->lazy_tables ? 0 : l->n_gdes * l->gt_sectors;
  l->rgd = 1 + l->desc_sectors;
  l->rgt = l->rgd + l->gd_sectors;
  l->gd = l->rgt + tables;
  l->gt = l->gd + l->gd_sectors;
  uint64_t end = l->gt + tables;
  l->overhead = div_round_up(end, p->grain_sectors) * p->grain_sectors;
}

uint64_t sparse_max_capacity(uint32_t grain_sectors) {
  struct sparse_create_params p = {.capacity_sectors = MAX_FILE_SECTORS,
                                   .grain_sectors = grain_sectors};
  struct layout l;
  plan(&p, &l);
  uint64_t room = MAX_FILE_SECTORS - l.overhead;
  return room / grain_sectors * grain_sectors;
}

int sparse_create(struct vfile *f, const struct sparse_create_params *p) {
  if (!is_power_of_2(p->grain_sectors) || p->grain_sectors < 8 ||
      p->grain_sectors > MAX_GRAIN_SECTORS)
    return set_error(EINVAL, "%s: grain size of %" PRIu32
                             " sectors is not a power of two from 8 to %u",
                     f->path, p->grain_sectors, MAX_GRAIN_SECTORS);
  struct layout l;
  plan(p, &l);
  uint64_t data = div_round_up(p->capacity_sectors, p->grain_sectors) *
                  p->grain_sectors;
  if (p->capacity_sectors > MAX_FILE_SECTORS ||
      l.overhead + data > MAX_FILE_SECTORS)
    return set_error(EFBIG, "%s: a hosted sparse extent of %" PRIu64
                            " bytes cannot be addressed with 32-bit sector "
                            "numbers once full: at most %" PRIu64
                            " bytes (2 TiB less the metadata) with this grain "
                            "size; split it (twoGbMaxExtentSparse)",
                     f->path, p->capacity_sectors * SECTOR,
                     sparse_max_capacity(p->grain_sectors) * SECTOR);
  size_t desc_len = p->descriptor ? strlen(p->descriptor) : 0;
  if (desc_len > l.desc_sectors * SECTOR)
    return set_error(ENOSPC, "%s: descriptor of %zu bytes does not fit in %"
                             PRIu64 " sectors",
                     f->path, desc_len, l.desc_sectors);

  struct kdmv_header h = {
      .version = p->zeroed_grain ? 2 : 1,
      .flags = FLAG_NL_DETECT | FLAG_RGD |
               (p->zeroed_grain ? FLAG_ZEROED_GRAIN : 0),
      .capacity = p->capacity_sectors,
      .grain = p->grain_sectors,
      .desc_offset = l.desc_offset,
      .desc_size = l.desc_sectors,
      .gtes_per_gt = 512,
      .rgd_offset = l.rgd,
      .gd_offset = l.gd,
      .overhead = l.overhead,
  };
  /* Header + descriptor in one write; then the directories; the grain
   * tables are zeros, which the final length leaves as a hole. */
  size_t head = (size_t)(1 + l.desc_sectors) * SECTOR;
  size_t dir = (size_t)l.gd_sectors * SECTOR;
  uint8_t *buf = calloc(1, head > dir ? head : dir);
  if (!buf)
    return set_error(ENOMEM, "out of memory");
  kdmv_encode_header(&h, buf);
  if (desc_len)
    memcpy(buf + SECTOR, p->descriptor, desc_len);
  int r = vf_pwrite(f, buf, head, 0);
  for (int copy = 0; r == 0 && copy < 2; copy++) {
    uint64_t tables = copy == 0 ? l.rgt : l.gt;
    memset(buf, 0, dir);
    if (!p->lazy_tables)
      for (uint64_t i = 0; i < l.n_gdes; i++)
        put_le32(buf + 4 * i, (uint32_t)(tables + i * l.gt_sectors));
    r = vf_pwrite(f, buf, dir, (copy == 0 ? l.rgd : l.gd) * SECTOR);
  }
  free(buf);
  if (r == 0)
    r = vf_truncate(f, l.overhead * SECTOR);
  return r;
}
