/* SPDX-License-Identifier: BSD-3-Clause */
/* ESXi host sparse extents ("COWD": vmfsSparse, NAME-delta.vmdk; QEMU's
 * "VMDK3").
 *
 * On disk: a 2048-byte header of 32-bit little-endian fields, a grain
 * directory (GD) of numGDEntries 32-bit sector numbers of grain tables
 * (GT), each GT 4096 32-bit sector numbers of grains (16 KiB, 32 sectors).
 * GD entry 0 = no table (the whole 4096-grain range is unallocated); GT
 * entry 0 = grain not allocated (read from the backing, or zeros).  There
 * is no redundant GD and no zeroed-grain entry.  Grains are `grainSize`
 * sectors (ESXi's default is 1 sector) and need not be aligned.
 *
 * Allocation and write ordering (the one place these rules live for COWD;
 * they are the hosted sparse rules of extent_sparse.c without the
 * redundant copies):
 *  1. `end` starts at the larger of the file's length and the header's
 *     freeSector (ESXi grows the file in 16 MiB steps, so freeSector may be
 *     below the length; QEMU never updates freeSector, so the length may be
 *     above it: the larger of the two is the only safe place).  New grains
 *     and new grain tables go at `end`, which then moves on.  Never at
 *     offset 0: a GD entry of 0 means "no table", and a write into such a
 *     range allocates a new table at `end` first (QEMU 7.2 writes the grain
 *     at file offset 0 over the header instead).  No ftruncate per
 *     allocation: the unwritten part of a new grain stays a hole (zeros);
 *     only with a backing disk are the uncovered head and tail of a new
 *     grain copied from it (copy-on-write).
 *  2. Grain table entries are changed in cached tables, marked dirty, and
 *     written back by cowd_flush (or when a dirty table is evicted), never
 *     before the grain data they point at: the flush issues the held data
 *     write, sets the file's final length once, writes the header when
 *     freeSector moved (after the length, so that a crash does not leave
 *     freeSector past the end of the file), syncs (barrier), writes every
 *     dirty GT, then the GD when new tables were added, then syncs again.
 *     (A power cut may still keep the header but not the new length: the
 *     check reports such a freeSector as a leak, writes are refused until
 *     `check -r leaks` lowers it.)  freeSector goes
 *     first: ESXi allocates there, so it must never lie below a grain or
 *     table the GD reaches (a crash between the two writes then leaves
 *     only unused space below it).  tests/unit/test-crash-kill.c found the
 *     opposite order (header last) leaving freeSector behind after a
 *     kill.
 *  3. So a crash loses at most what was written since the last flush, and
 *     leaves at most leaked (unreferenced) grains or tables, never an entry
 *     that points at unwritten data.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define COWD_MAGIC 0x44574f43u
#define COWD_HEADER_BYTES 2048u
#define COWD_HEADER_SECTORS (COWD_HEADER_BYTES / SECTOR)
#define COWD_FLAG_ROOT 0x1u
#define COWD_GTES 4096u                /* entries per grain table */
#define COWD_GT_BYTES (COWD_GTES * 4u) /* 16 KiB */
#define COWD_GT_SECTORS (COWD_GT_BYTES / SECTOR)
#define MAX_GRAIN_SECTORS (1u << 21)   /* 1 GiB grains */
#define MAX_FILE_SECTORS 0xffffffffull /* 32-bit sector numbers */
#define GT_CACHE_BUDGET (16u << 20)    /* bytes of cached grain tables */

/* Header field offsets (bytes). */
enum {
  H_MAGIC = 0,
  H_VERSION = 4,
  H_FLAGS = 8,
  H_NUM_SECTORS = 12,
  H_GRAIN = 16,
  H_GD_OFFSET = 20,
  H_NUM_GDES = 24,
  H_FREE_SECTOR = 28,
  H_PARENT_NAME = 32,
  H_PARENT_NAME_LEN = 1024,
  H_UNCLEAN = 1648,
};

/* The decoded header; every field validated by decode_header(). */
struct cowd_header {
  uint32_t version, flags;
  uint64_t capacity;    /* sectors (numSectors) */
  uint64_t grain;       /* sectors */
  uint64_t gd_offset;   /* sectors */
  uint64_t file_gdes;   /* numGDEntries as stored (>= what is used) */
  uint64_t free_sector; /* sectors */
  uint32_t unclean;     /* uncleanShutdown */
};

struct cowd {
  struct vfile *f;
  struct cowd_header h;
  uint8_t raw_header[COWD_HEADER_BYTES]; /* as read; rewritten with only
                                            freeSector changed */
  uint64_t grain_bytes;
  uint64_t table_bytes; /* virtual bytes one GT covers */
  uint32_t n_gdes;      /* GD entries used: ceil(capacity / coverage) */
  uint64_t gd_sectors;  /* sectors the stored GD takes (file_gdes) */
  uint32_t *gd;         /* n_gdes entries, host order */
  bool gd_dirty;        /* a GD entry changed since last written */
  uint64_t open_bytes;  /* file length at open, rounded up to sectors */
  uint64_t alloc_base;  /* bytes: where the first allocation went */
  uint64_t end;         /* bytes: where the next allocation goes */
  bool header_dirty;    /* freeSector must be written */
  bool free_past_eof;   /* freeSector lay past the end of the file at open
                           (writes refused until check -r lowers it) */

  struct gtcache gtc; /* the grain tables (lib/gtcache.c) */

};

/* ---- header ------------------------------------------------------------- */

/* Decode and validate the header of PATH (FILE_SIZE bytes long).  Each
 * refusal names the field and its value. */
static int decode_header(const uint8_t *b, const char *path, uint64_t file_size,
                         struct cowd_header *h) {
  if (le32(b + H_MAGIC) != COWD_MAGIC)
    return set_error(EINVAL,
                     "%s: not a vmfsSparse extent (no COWD magic: "
                     "0x%08" PRIx32 ")",
                     path, le32(b + H_MAGIC));
  h->version = le32(b + H_VERSION);
  h->flags = le32(b + H_FLAGS);
  h->capacity = le32(b + H_NUM_SECTORS);
  h->grain = le32(b + H_GRAIN);
  h->gd_offset = le32(b + H_GD_OFFSET);
  h->file_gdes = le32(b + H_NUM_GDES);
  h->free_sector = le32(b + H_FREE_SECTOR);
  h->unclean = le32(b + H_UNCLEAN);
  uint64_t file_sectors = div_round_up(file_size, SECTOR);

  if (h->version != 1)
    return set_error(ENOTSUP,
                     "%s: COWD header version %" PRIu32
                     " is not supported (only 1)",
                     path, h->version);
  if (h->capacity == 0)
    return set_error(EINVAL, "%s: COWD header numSectors is 0", path);
  if (!is_power_of_2(h->grain) || h->grain > MAX_GRAIN_SECTORS)
    return set_error(EINVAL,
                     "%s: COWD grain size %" PRIu64
                     " sectors is not a power of two from 1 to %u",
                     path, h->grain, MAX_GRAIN_SECTORS);
  uint64_t need = div_round_up(h->capacity, h->grain * COWD_GTES);
  if (h->file_gdes < need)
    return set_error(EINVAL,
                     "%s: COWD numGDEntries %" PRIu64
                     " cannot cover numSectors %" PRIu64 " (%" PRIu64
                     " tables of 4096 grains of %" PRIu64
                     " sectors are needed)",
                     path, h->file_gdes, h->capacity, need, h->grain);
  if (h->gd_offset < COWD_HEADER_SECTORS)
    return set_error(EINVAL,
                     "%s: COWD grain directory offset %" PRIu64
                     " lies inside the 4-sector header",
                     path, h->gd_offset);
  uint64_t gd_sectors = div_round_up(h->file_gdes * 4, SECTOR);
  if (h->gd_offset > file_sectors || gd_sectors > file_sectors - h->gd_offset)
    return set_error(EINVAL,
                     "%s: COWD grain directory (%" PRIu64
                     " entries at sector %" PRIu64
                     ") does not fit in the file (%s)",
                     path, h->file_gdes, h->gd_offset, human_size(file_size));
  if (h->free_sector < h->gd_offset + gd_sectors)
    return set_error(EINVAL,
                     "%s: COWD freeSector %" PRIu64
                     " lies before the end of the grain directory "
                     "(sector %" PRIu64 ")",
                     path, h->free_sector, h->gd_offset + gd_sectors);
  return 0;
}

/* ---- the grain directory and table cache -------------------------------- */

static void encode_table(const uint32_t *src, uint8_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++)
    put_le32(dst + 4 * i, src[i]);
}

/* Write the used part of the GD whole, from memory. */
static int write_directory(struct cowd *s) {
  size_t bytes = (size_t)s->n_gdes * 4;
  uint8_t *buf = malloc(bytes);
  if (!buf)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  encode_table(s->gd, buf, s->n_gdes);
  int r = vf_pwrite(s->f, buf, bytes, s->h.gd_offset * SECTOR);
  free(buf);
  return r;
}

/* Write the table cached in SLOT to its GT. */
static int write_table(struct cowd *s, uint32_t slot) {
  uint8_t *buf = malloc(COWD_GT_BYTES);
  if (!buf)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  encode_table(gtc_table(&s->gtc, slot), buf, COWD_GTES);
  int r = vf_pwrite(s->f, buf, COWD_GT_BYTES,
                    (uint64_t)s->gd[gtc_gdi(&s->gtc, slot)] * SECTOR);
  free(buf);
  if (r == 0)
    gtc_clean(&s->gtc, slot);
  return r;
}

/* freeSector = end, the rest of the header as it was read. */
static int write_header(struct cowd *s) {
  put_le32(s->raw_header + H_FREE_SECTOR, (uint32_t)(s->end / SECTOR));
  if (vf_pwrite(s->f, s->raw_header, COWD_HEADER_BYTES, 0) != 0)
    return -1;
  s->h.free_sector = s->end / SECTOR;
  s->header_dirty = false;
  return 0;
}

/* Rule 2: data, length, header, sync, tables, directory, sync. */
static int flush_metadata(struct cowd *s) {
  if (gtc_issue(&s->gtc) != 0)
    return -1;
  if (s->gtc.n_dirty == 0 && !s->gd_dirty && !s->header_dirty)
    return vf_sync(s->f);
  if (s->f->size < s->end && vf_truncate(s->f, s->end) != 0)
    return -1;
  if (s->header_dirty && write_header(s) != 0)
    return -1;
  if (vf_sync(s->f) != 0)
    return -1;
  for (uint32_t i = gtc_next_dirty(&s->gtc, 0); i != GTC_NONE;
       i = gtc_next_dirty(&s->gtc, i + 1))
    if (write_table(s, i) != 0)
      return -1;
  if (s->gd_dirty) {
    if (write_directory(s) != 0)
      return -1;
    s->gd_dirty = false;
  }
  return vf_sync(s->f);
}

/* Reserve BYTES at the end of the file (rule 1).  Returns the sector. */
static int alloc_at_end(struct cowd *s, uint64_t bytes, uint32_t *sector) {
  uint64_t start = s->end / SECTOR;
  uint64_t sectors = div_round_up(bytes, SECTOR);
  if (start + sectors > MAX_FILE_SECTORS)
    return set_error(ENOSPC,
                     "%s: the COWD file is full: it cannot grow past "
                     "2 TiB (32-bit sector numbers)",
                     s->f->path);
  *sector = (uint32_t)start;
  s->end = (start + sectors) * SECTOR;
  s->header_dirty = true;
  return 0;
}

/* Why SECTORS sectors at SECTOR are not file space a table or grain may
 * use, or NULL when they are: after the header, clear of the GD, and either
 * inside the file as it was opened or in space allocated since. */
static const char *bad_place(const struct cowd *s, uint64_t sector,
                             uint64_t sectors) {
  uint64_t a = sector * SECTOR, z = (sector + sectors) * SECTOR;
  if (sector < COWD_HEADER_SECTORS)
    return "into the header";
  if (sector < s->h.gd_offset + s->gd_sectors &&
      sector + sectors > s->h.gd_offset)
    return "into the grain directory";
  if (z <= s->open_bytes || (a >= s->alloc_base && z <= s->end))
    return NULL;
  return "past the end of the file";
}

/* The table cache evicts a dirty table only after this (rule 2). */
static int flush_for_cache(void *opaque) {
  return flush_metadata(opaque);
}

/* Get the table for GD entry GDI: *SLOT is its cache slot, GTC_NONE when
 * it does not exist and ALLOCATE is false; with ALLOCATE a missing table
 * is created at the end of the file, dirty, and the GD entry set (in
 * memory, written at flush after the table). */
static int get_table(struct cowd *s, uint32_t gdi, bool allocate,
                     uint32_t *slot) {
  *slot = gtc_lookup(&s->gtc, gdi);
  if (*slot != GTC_NONE)
    return 0;
  uint32_t sector = s->gd[gdi];
  if (sector == 0 && !allocate)
    return 0;
  const char *bad = sector ? bad_place(s, sector, COWD_GT_SECTORS) : NULL;
  if (bad)
    return set_error(EINVAL,
                     "%s: grain directory entry %" PRIu32
                     " points %s (grain table of 32 sectors at "
                     "sector %" PRIu32 ", file %s)",
                     s->f->path, gdi, bad, sector, human_size(s->open_bytes));
  uint32_t t;
  if (gtc_take(&s->gtc, &t) != 0)
    return -1;
  if (sector == 0) {
    uint32_t gt_sec = 0;
    if (alloc_at_end(s, COWD_GT_BYTES, &gt_sec) != 0) {
      gtc_abandon(&s->gtc, t);
      return -1;
    }
    s->gd[gdi] = gt_sec;
    s->gd_dirty = true;
    gtc_install_new(&s->gtc, t, gdi);
  } else if (gtc_load(&s->gtc, t, gdi, s->f, sector) != 0) {
    return -1;
  }
  *slot = t;
  return 0;
}

/* Validate an allocated grain table entry before using it. */
static int check_grain(struct cowd *s, uint32_t gdi, uint32_t i, uint32_t gte) {
  const char *bad = gte ? bad_place(s, gte, s->h.grain) : NULL;
  if (bad)
    return set_error(EINVAL,
                     "%s: grain table entry %" PRIu32 " of table %" PRIu32
                     " points %s (grain of %" PRIu64
                     " sectors at sector %" PRIu32 ", file %s)",
                     s->f->path, i, gdi, bad, s->h.grain, gte,
                     human_size(s->open_bytes));
  return 0;
}

/* ---- data path ------------------------------------------------------------
 */

static int lookup(void *opaque, uint64_t grain_no, bool allocate,
                  struct grain_ref *g) {
  struct cowd *s = opaque;
  g->gdi = (uint32_t)(grain_no / COWD_GTES);
  g->idx = (uint32_t)(grain_no % COWD_GTES);
  if (get_table(s, g->gdi, allocate, &g->slot) != 0)
    return -1;
  g->gte = g->slot != GTC_NONE ? gtc_table(&s->gtc, g->slot)[g->idx] : 0;
  return check_grain(s, g->gdi, g->idx, g->gte);
}

static int alloc_grain(void *opaque, uint32_t *sector) {
  struct cowd *s = opaque;
  return alloc_at_end(s, s->grain_bytes, sector);
}

static int cowd_pread(struct extent *e, void *buf, size_t len, uint64_t off) {
  struct cowd *s = e->priv;
  return gtc_pread(e, &s->gtc, buf, len, off);
}

static int cowd_pwrite(struct extent *e, const void *buf, size_t len,
                       uint64_t off) {
  struct cowd *s = e->priv;
  return gtc_pwrite(e, &s->gtc, buf, len, off);
}

static int cowd_zero(struct extent *e, uint64_t len, uint64_t off) {
  struct cowd *s = e->priv;
  bool backing = disk_has_backing(e->disk);
  while (len > 0) {
    uint64_t in = off % s->grain_bytes;
    uint64_t n = s->grain_bytes - in < len ? s->grain_bytes - in : len;
    struct grain_ref g;
    /* Without a backing, a missing table or grain already reads as zeros;
     * with one, zeros must be stored to hide it (no zeroed-grain entry). */
    if (lookup(s, off / s->grain_bytes, backing, &g) != 0)
      return -1;
    if (g.gte != 0) {
      if (gtc_issue(&s->gtc) != 0 ||
          vf_zero_range(s->f, n, (uint64_t)g.gte * SECTOR + in) != 0)
        return -1;
    } else if (backing &&
               gtc_allocate(e, &s->gtc, &g, off - in, in, NULL, (size_t)n)) {
      return -1;
    }
    off += n;
    len -= n;
  }
  return gtc_issue(&s->gtc);
}

static int cowd_status(struct extent *e, uint64_t off, uint64_t len,
                       struct vmdk_run *run) {
  struct cowd *s = e->priv;
  run->length = 0;
  run->flags = 0;
  run->file_offset = -1;
  run->file = NULL;
  while (len > 0) {
    uint64_t gno = off / s->grain_bytes;
    uint32_t gdi = (uint32_t)(gno / COWD_GTES);
    uint64_t in = off % s->grain_bytes;
    uint64_t n = s->grain_bytes - in < len ? s->grain_bytes - in : len;
    uint32_t slot;
    if (get_table(s, gdi, false, &slot) != 0)
      return -1;
    unsigned flags = 0;
    int64_t fo = -1;
    if (slot == GTC_NONE) { /* the whole table's range is unallocated */
      uint64_t table_end = ((uint64_t)gdi + 1) * s->table_bytes;
      n = table_end - off < len ? table_end - off : len;
    } else {
      uint32_t idx = (uint32_t)(gno % COWD_GTES);
      uint32_t gte = gtc_table(&s->gtc, slot)[idx];
      if (check_grain(s, gdi, idx, gte) != 0)
        return -1;
      if (gte != 0) {
        flags = VMDK_RUN_PRESENT | VMDK_RUN_DATA;
        fo = (int64_t)((uint64_t)gte * SECTOR + in);
      }
    }
    if (!run_extend(run, flags, fo, n))
      break;
    off += n;
    len -= n;
  }
  if (run->flags & VMDK_RUN_DATA)
    run->file = s->f->path;
  return 0;
}

static int cowd_flush(struct extent *e) {
  return flush_metadata(e->priv);
}

static void cowd_free(struct cowd *s) {
  if (!s)
    return;
  gtc_free(&s->gtc);
  free(s->gd);
  free(s);
}

static int cowd_close(struct extent *e) {
  struct cowd *s = e->priv;
  int r = vf_close(s->f);
  cowd_free(s);
  return r;
}

static void cowd_info(struct extent *e, struct vmdk_extent_info *info) {
  struct cowd *s = e->priv;
  info->grain_bytes = s->grain_bytes;
  info->version = s->h.version;
  info->unclean = s->h.unclean != 0;
}

static uint64_t cowd_allocated(struct extent *e) {
  struct cowd *s = e->priv;
  return vf_allocated(s->f);
}

/* ---- check ------------------------------------------------------------------
 */

/* ---- repair ------------------------------------------------------------------
 *
 * cowd_repair (vmdk_repair), the hosted sparse repair (extent_sparse.c)
 * without redundant copies.  Grain data is never moved or changed.
 *  VMDK_REPAIR_ALL: a GD entry whose table lies past the end of the file,
 *   on the header or the GD, or on a table kept before it (file order) is
 *   cleared (its grains are lost); a grain table entry past the capacity,
 *   past the end of the file or on the header, the GD or a table is
 *   cleared (what it pointed at is lost); grains sharing sectors: the first
 *   in file order keeps its place, each other gets its own copy at the end
 *   of the file, so every entry reads what it read.
 *  Both: leaked space (nothing on file points at it, not even a bad entry)
 *   that holds anything but zeros is zeroed (punched where the file system
 *   can); such space at the end of the file is cut off and freeSector
 *   lowered to the end of what is used.
 * Order: grain copies and freeSector past them, sync; tables, sync; GD,
 * sync; leaks (a cut at the end lowers freeSector after it), sync.
 */

/* A table or grain on file during a repair: START, LEN sectors. */
struct cref {
  uint64_t start, len;
  uint32_t gdi, idx; /* a grain's table and entry; a table: idx UINT32_MAX */
};

static int cmp_cref(const void *a, const void *b) {
  const struct cref *x = a, *y = b;
  if (x->start != y->start)
    return x->start < y->start ? -1 : 1;
  if (x->gdi != y->gdi)
    return x->gdi < y->gdi ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct crefs {
  struct cref *r;
  size_t n, cap;
};

static int crefs_add(struct crefs *v, uint64_t start, uint64_t len,
                     uint32_t gdi, uint32_t idx) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 256;
    struct cref *r = realloc(v->r, cap * sizeof *r);
    if (!r)
      return set_error(ENOMEM, "out of memory while repairing");
    v->r = r;
    v->cap = cap;
  }
  v->r[v->n++] = (struct cref){start, len, gdi, idx};
  return 0;
}

static bool c_overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

/* Whether LEN sectors at START overlap the header, the GD or one of the
 * N sorted TABLES. */
static bool c_on_metadata(const struct cowd *s, uint64_t start, uint64_t len,
                          const struct cref *tables, size_t n) {
  if (c_overlaps(start, len, 0, COWD_HEADER_SECTORS) ||
      c_overlaps(start, len, s->h.gd_offset, s->gd_sectors))
    return true;
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (tables[mid].start < start + len)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo > 0 && c_overlaps(start, len, tables[lo - 1].start, COWD_GT_SECTORS);
}

static int c_read_table(struct cowd *s, uint32_t sector, uint32_t *t) {
  return gt_read(s->f, sector, t, COWD_GTES);
}

/* VMDK_REPAIR_ALL: tables, entries, shared grains. */
static int cowd_repair_tables(struct cowd *s, struct check_ctx *c) {
  const char *path = s->f->path;
  uint64_t fs = div_round_up(s->f->size, SECTOR);
  struct crefs tabs = {0}, grains = {0};
  uint32_t **ent = calloc((size_t)s->n_gdes + 1, sizeof *ent);
  bool *dirty = calloc((size_t)s->n_gdes + 1, 1);
  uint8_t *buf = NULL;
  bool gd_changed = false, tables_changed = false;
  int ret = -1;
  if (!ent || !dirty) {
    set_error(ENOMEM, "%s: out of memory", path);
    goto out;
  }
  /* Usable tables: inside the file, off the header and GD, and off the
   * tables before them. */
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++) {
    uint32_t v = s->gd[gdi];
    if (!v)
      continue;
    const char *why = NULL;
    if ((uint64_t)v + COWD_GT_SECTORS > fs)
      why = "lies past the end of the file";
    else if (c_on_metadata(s, v, COWD_GT_SECTORS, NULL, 0))
      why = "overlaps the header or the grain directory";
    if (why) {
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain table %" PRIu32 " at sector %" PRIu32
                   " %s: cleared its directory entry (its grains are lost)",
                   path, gdi, v, why);
      s->gd[gdi] = 0;
      gd_changed = true;
    } else if (crefs_add(&tabs, v, COWD_GT_SECTORS, gdi, UINT32_MAX) != 0) {
      goto out;
    }
  }
  if (tabs.n) /* qsort(NULL, 0) is undefined */
    qsort(tabs.r, tabs.n, sizeof *tabs.r, cmp_cref);
  size_t kept = 0;
  uint64_t covered = 0;
  for (size_t k = 0; k < tabs.n; k++) {
    struct cref x = tabs.r[k];
    if (kept && x.start < covered) {
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain table %" PRIu32 " at sector %" PRIu64
                   " overlaps grain table %" PRIu32 ": cleared its directory "
                   "entry (its grains are lost)",
                   path, x.gdi, x.start, tabs.r[kept - 1].gdi);
      s->gd[x.gdi] = 0;
      gd_changed = true;
      continue;
    }
    tabs.r[kept++] = x;
    covered = x.start + COWD_GT_SECTORS;
  }
  tabs.n = kept;

  /* Entries. */
  for (size_t k = 0; k < tabs.n; k++) {
    uint32_t gdi = tabs.r[k].gdi;
    if (!(ent[gdi] = malloc(COWD_GT_BYTES))) {
      set_error(ENOMEM, "%s: out of memory", path);
      goto out;
    }
    if (c_read_table(s, s->gd[gdi], ent[gdi]) != 0)
      goto out;
    for (uint32_t i = 0; i < COWD_GTES; i++) {
      uint32_t v = ent[gdi][i];
      uint64_t gno = (uint64_t)gdi * COWD_GTES + i;
      const char *why = NULL;
      if (!v)
        continue;
      if (gno * s->h.grain >= s->h.capacity)
        why = "lies past the capacity";
      else if (v >= fs)
        why = "points past the end of the file";
      else if (c_on_metadata(s, v, s->h.grain, tabs.r, tabs.n))
        why = "points into the metadata";
      if (why) {
        check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                     "%s: entry %" PRIu32 " of grain table %" PRIu32
                     " was %" PRIu32 " (it %s): cleared it (what it pointed "
                     "at is lost)",
                     path, i, gdi, v, why);
        ent[gdi][i] = 0;
        dirty[gdi] = true;
      } else if (crefs_add(&grains, v, s->h.grain, gdi, i) != 0) {
        goto out;
      }
    }
  }

  /* Shared grains: each but the first gets its own copy. */
  if (grains.n)
    qsort(grains.r, grains.n, sizeof *grains.r, cmp_cref);
  const struct cref *owner = NULL;
  covered = 0;
  for (size_t k = 0; k < grains.n; k++) {
    const struct cref *x = &grains.r[k];
    if (!owner || x->start >= covered) {
      owner = x;
      covered = x->start + x->len;
      continue;
    }
    uint32_t sec = 0;
    if ((!buf && !(buf = malloc(s->grain_bytes))) ||
        alloc_at_end(s, s->grain_bytes, &sec) != 0) {
      if (!buf)
        set_error(ENOMEM, "%s: out of memory", path);
      goto out;
    }
    if (vf_pread(s->f, buf, s->grain_bytes, x->start * SECTOR) != 0 ||
        vf_pwrite(s->f, buf, s->grain_bytes, (uint64_t)sec * SECTOR) != 0)
      goto out;
    check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                 "%s: the grain of entry %" PRIu32 " of table %" PRIu32
                 " (sector %" PRIu64 ") overlapped the grain of entry %" PRIu32
                 " of table %" PRIu32 " (sector %" PRIu64 "): gave it its own "
                 "copy at sector %" PRIu32,
                 path, x->idx, x->gdi, x->start, owner->idx, owner->gdi,
                 owner->start, sec);
    ent[x->gdi][x->idx] = sec;
    dirty[x->gdi] = true;
  }
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    tables_changed |= dirty[gdi];

  /* Copies, sync, tables, sync, GD, sync. */
  if (tables_changed || gd_changed) {
    /* freeSector past the copies first (rule 2), with them in one sync. */
    if (s->header_dirty && write_header(s) != 0)
      goto out;
    if (s->f->size < s->end && vf_truncate(s->f, s->end) != 0)
      goto out;
    if (vf_sync(s->f) != 0)
      goto out;
    for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
      if (dirty[gdi]) {
        uint8_t *raw = malloc(COWD_GT_BYTES);
        if (!raw) {
          set_error(ENOMEM, "%s: out of memory", path);
          goto out;
        }
        encode_table(ent[gdi], raw, COWD_GTES);
        int r = vf_pwrite(s->f, raw, COWD_GT_BYTES,
                          (uint64_t)s->gd[gdi] * SECTOR);
        free(raw);
        if (r != 0)
          goto out;
      }
    if (vf_sync(s->f) != 0 || (gd_changed && write_directory(s) != 0) ||
        vf_sync(s->f) != 0)
      goto out;
  }
  ret = 0;
out:
  for (uint32_t gdi = 0; ent && gdi < s->n_gdes; gdi++)
    free(ent[gdi]);
  free(ent);
  free(dirty);
  free(buf);
  free(tabs.r);
  free(grains.r);
  return ret;
}

/* Leaked space: what nothing on file points at and holds data.  *USED
 * gets the end of the space in use (sectors). */
static int cowd_reclaim_leaks(struct cowd *s, struct check_ctx *c,
                              uint64_t *used) {
  const char *path = s->f->path;
  uint64_t fs = div_round_up(s->f->size, SECTOR);
  struct crefs u = {0};
  uint32_t *t = malloc(COWD_GT_BYTES);
  int ret = -1;
  if (!t) {
    set_error(ENOMEM, "%s: out of memory", path);
    goto out;
  }
  if (crefs_add(&u, 0, COWD_HEADER_SECTORS, 0, 0) ||
      crefs_add(&u, s->h.gd_offset, s->gd_sectors, 0, 0))
    goto out;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++) {
    uint32_t v = s->gd[gdi];
    if (!v || v >= fs)
      continue;
    if (crefs_add(&u, v, COWD_GT_SECTORS, 0, 0) || c_read_table(s, v, t))
      goto out;
    for (uint32_t i = 0; i < COWD_GTES; i++)
      if (t[i] && t[i] < fs && crefs_add(&u, t[i], s->h.grain, 0, 0))
        goto out;
  }
  if (u.n)
    qsort(u.r, u.n, sizeof *u.r, cmp_cref);
  uint64_t covered = 0;
  for (size_t k = 0; k <= u.n; k++) {
    bool last = k == u.n;
    uint64_t start = last ? fs : u.r[k].start;
    uint64_t to = start < fs ? start : fs;
    if (to > covered) {
      bool zero = true;
      if (range_is_zero(s->f, covered * SECTOR, (to - covered) * SECTOR,
                        &zero) != 0)
        goto out;
      if (!zero && last) {
        /* At the end: lower freeSector, cut the file there. */
        if (s->f->size > covered * SECTOR &&
            vf_truncate(s->f, covered * SECTOR) != 0)
          goto out;
        s->end = s->open_bytes = s->alloc_base = covered * SECTOR;
        if (vf_sync(s->f) != 0 || write_header(s) != 0)
          goto out;
        check_report(c, VMDK_PROBLEM_LEAK, (to - covered) * SECTOR,
                     "%s: %" PRIu64 " sectors at sector %" PRIu64
                     " (the end of the file) were allocated but not used: "
                     "cut them off (freeSector is now %" PRIu64 ")",
                     path, to - covered, covered, covered);
      } else if (!zero) {
        if (vf_zero_range(s->f, (to - covered) * SECTOR, covered * SECTOR))
          goto out;
        check_report(c, VMDK_PROBLEM_LEAK, (to - covered) * SECTOR,
                     "%s: %" PRIu64 " sectors at sector %" PRIu64
                     " were allocated but not used: zeroed them (a hole "
                     "where the file system can punch one: they take no "
                     "space then); the format cannot reuse them",
                     path, to - covered, covered);
      }
    }
    if (!last && u.r[k].start + u.r[k].len > covered)
      covered = u.r[k].start + u.r[k].len;
  }
  *used = covered;
  ret = vf_sync(s->f);
out:
  free(t);
  free(u.r);
  return ret;
}

static int cowd_repair(struct extent *e, unsigned what, struct check_ctx *c) {
  struct cowd *s = e->priv;
  if (flush_metadata(s) != 0)
    return -1;
  /* Drop the table cache (clean after the flush): tables are rewritten. */
  gtc_drop_all(&s->gtc);
  bool all = (what & VMDK_REPAIR_ALL) == VMDK_REPAIR_ALL;
  uint64_t used = 0;
  if (all && cowd_repair_tables(s, c) != 0)
    return -1;
  if (cowd_reclaim_leaks(s, c, &used) != 0)
    return -1;
  if (all && s->h.free_sector < used) {
    if (s->end < used * SECTOR)
      s->end = used * SECTOR;
    check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                 "%s: freeSector %" PRIu64 " lay before the end of the space "
                 "in use (sector %" PRIu64 "): set it to %" PRIu64,
                 s->f->path, s->h.free_sector, used, s->end / SECTOR);
    s->header_dirty = true;
  } else if (s->free_past_eof) {
    /* Allocation restarts right after the space in use (the file's own
     * length when the repair allocated nothing past it). */
    uint64_t file_end = div_round_up(s->f->size, SECTOR) * SECTOR;
    s->end = used * SECTOR > file_end ? used * SECTOR : file_end;
    s->open_bytes = s->alloc_base = s->end;
    s->free_past_eof = false;
    check_report(c, VMDK_PROBLEM_LEAK, 0,
                 "%s: freeSector %" PRIu64 " lay past the end of the file "
                 "(%" PRIu64 " sectors): set it to %" PRIu64,
                 s->f->path, s->h.free_sector, file_end / SECTOR,
                 s->end / SECTOR);
    s->header_dirty = true;
  }
  /* Allocations made by the repair moved `end`: freeSector follows. */
  if (s->header_dirty && (write_header(s) != 0 || vf_sync(s->f) != 0))
    return -1;
  return 0;
}

/* Report [FROM, TO) (sectors), space nothing points at, as leaked when it
 * holds anything but zeros (holes and zeros cost nothing; they are what
 * `check -r leaks` leaves). */
/* Tables inside the file, for mark_shared_tables (lib/check_space.c). */
static int cowd_shared_tables(struct cowd *s, struct check_ctx *c,
                              uint64_t file_sectors, uint8_t *skip) {
  struct table_ref *t = malloc(((size_t)s->n_gdes + 1) * sizeof *t);
  size_t n = 0;
  if (!t)
    return set_error(ENOMEM, "%s: out of memory while checking", s->f->path);
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    if (s->gd[gdi] && (uint64_t)s->gd[gdi] + COWD_GT_SECTORS <= file_sectors)
      t[n++] = (struct table_ref){s->gd[gdi], gdi, false};
  mark_shared_tables(c, s->f->path, t, n, COWD_GT_SECTORS, skip);
  free(t);
  return 0;
}

static int cowd_check(struct extent *e, struct check_ctx *c) {
  struct cowd *s = e->priv;
  const char *path = s->f->path;
  if (flush_metadata(s) != 0 && s->f->writable)
    return -1;
  uint64_t file_sectors = div_round_up(s->f->size, SECTOR);
  struct regions rs = {0};
  uint8_t *raw = malloc(COWD_GT_BYTES);
  uint8_t *skip = calloc(s->n_gdes + 1, 1); /* see mark_shared_tables */
  int ret = -1;
  if (!raw || !skip) {
    set_error(ENOMEM, "%s: out of memory", path);
    goto out;
  }
  if (cowd_shared_tables(s, c, file_sectors, skip) != 0)
    goto out;
  if (regions_add(&rs, 0, COWD_HEADER_SECTORS, UINT32_MAX, UINT32_MAX,
                  "the header") ||
      regions_add(&rs, s->h.gd_offset, s->gd_sectors, UINT32_MAX, UINT32_MAX,
                  "the grain directory"))
    goto out;

  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++) {
    uint32_t gde = s->gd[gdi];
    if (gde == 0 || skip[gdi])
      continue;
    if ((uint64_t)gde + COWD_GT_SECTORS > file_sectors) {
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain table %" PRIu32 " lies past the end of the file "
                   "(sector %" PRIu32 ", file %" PRIu64 " sectors)",
                   path, gdi, gde, file_sectors);
      continue;
    }
    if (regions_add(&rs, gde, COWD_GT_SECTORS, gdi, UINT32_MAX, "grain table"))
      goto out;
    if (vf_pread(s->f, raw, COWD_GT_BYTES, (uint64_t)gde * SECTOR) != 0)
      goto out;
    for (uint32_t i = 0; i < COWD_GTES; i++) {
      uint32_t v = le32(raw + 4 * i);
      uint64_t gno = (uint64_t)gdi * COWD_GTES + i;
      if (v == 0)
        continue;
      if (gno * s->h.grain >= s->h.capacity) {
        check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                     "%s: grain table entry %" PRIu32 " of table %" PRIu32
                     " is set (%" PRIu32 ") but lies past the capacity",
                     path, i, gdi, v);
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
      c->res->allocated_grains++;
      if (regions_add(&rs, v, s->h.grain, gdi, i, NULL))
        goto out;
    }
  }

  /* Overlaps, and space nothing points at.  Space from freeSector to the
   * end of the file is free space (ESXi grows the file in 16 MiB steps),
   * zeros, not a leak; data there was written by a writer that did not
   * get to update freeSector (a crash: rule 3): a leak, which the next
   * allocation would put below freeSector. */
  uint64_t covered;
  if (regions_sweep(&rs, c, s->f, 0, file_sectors, &covered) != 0)
    goto out;
  /* ESXi allocates at freeSector: below the end of what is used, it would
   * put new grains over live ones. */
  if (s->h.free_sector < covered)
    check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                 "%s: freeSector %" PRIu64 " lies before the end of the "
                 "space in use (sector %" PRIu64 "): a writer that allocates "
                 "at freeSector would overwrite data",
                 path, s->h.free_sector, covered);
  else if (s->h.free_sector > file_sectors)
    check_report(c, VMDK_PROBLEM_LEAK, 0,
                 "%s: freeSector %" PRIu64 " lies past the end of the file "
                 "(%" PRIu64 " sectors): a crash before the file grew, or a "
                 "file cut short; writes are refused until check -r",
                 path, s->h.free_sector, file_sectors);
  c->res->total_grains += div_round_up(s->h.capacity, s->h.grain);
  ret = 0;
out:
  free(rs.r);
  free(raw);
  free(skip);
  return ret;
}

/* Writes are refused while freeSector lies past the end of the file:
 * the file was cut short or the header is damaged, and allocating there
 * would leave a hole the header calls used (check -r lowers it). */
static int cowd_check_write(struct extent *e, uint64_t len, uint64_t off) {
  (void)len;
  (void)off;
  struct cowd *s = e->priv;
  if (s->free_past_eof)
    return set_error(EINVAL,
                     "%s: COWD freeSector %" PRIu64 " lies past the end of "
                     "the file (%" PRIu64 " sectors): the file is cut short "
                     "or its header is damaged; `vmdkit check -r` repairs it",
                     s->f->path, s->h.free_sector, s->open_bytes / SECTOR);
  return 0;
}

static const struct extent_ops cowd_ops = {
    .name = "cowd",
    .pread = cowd_pread,
    .pwrite = cowd_pwrite,
    .zero = cowd_zero,
    .status = cowd_status,
    .flush = cowd_flush,
    .close = cowd_close,
    .check = cowd_check,
    .repair = cowd_repair,
    .info = cowd_info,
    .allocated = cowd_allocated,
    .check_write = cowd_check_write,
    .check_zero = cowd_check_write,
};

/* ---- open --------------------------------------------------------------- */

int cowd_open(struct extent *e, struct vfile *f) {
  if (f->size < COWD_HEADER_BYTES) {
    set_error(EINVAL,
              "%s: file is too short for a COWD header (%" PRIu64
              " bytes, 2048 needed)",
              f->path, f->size);
    vf_close(f);
    return -1;
  }
  struct cowd *s = calloc(1, sizeof *s);
  if (!s) {
    vf_close(f);
    return set_error(ENOMEM, "out of memory");
  }
  s->f = f;
  if (vf_pread(f, s->raw_header, COWD_HEADER_BYTES, 0) != 0 ||
      decode_header(s->raw_header, f->path, f->size, &s->h) != 0)
    goto fail;
  const struct cowd_header *h = &s->h;
  if (e->size != h->capacity * SECTOR) {
    set_error(EINVAL,
              "%s: the descriptor gives the extent %" PRIu64
              " sectors but its COWD header says numSectors %" PRIu64,
              f->path, e->size / SECTOR, h->capacity);
    goto fail;
  }
  s->grain_bytes = h->grain * SECTOR;
  s->table_bytes = s->grain_bytes * COWD_GTES;
  s->n_gdes = (uint32_t)div_round_up(h->capacity, h->grain * COWD_GTES);
  s->gd_sectors = div_round_up(h->file_gdes * 4, SECTOR);
  s->open_bytes = div_round_up(f->size, SECTOR) * SECTOR;
  s->alloc_base = s->open_bytes;
  s->free_past_eof = h->free_sector * SECTOR > s->open_bytes;
  if (s->free_past_eof)
    s->alloc_base = h->free_sector * SECTOR;
  s->end = s->alloc_base;

  /* The used part of the GD: at most 2^20 entries (4 MiB). */
  size_t bytes = (size_t)s->n_gdes * 4;
  uint8_t *raw = malloc(bytes);
  s->gd = malloc(bytes);
  if (!raw || !s->gd) {
    free(raw);
    set_error(ENOMEM, "%s: out of memory for the grain directory", f->path);
    goto fail;
  }
  if (vf_pread(f, raw, bytes, h->gd_offset * SECTOR) != 0) {
    free(raw);
    goto fail;
  }
  for (uint32_t i = 0; i < s->n_gdes; i++)
    s->gd[i] = le32(raw + 4 * i);
  free(raw);

  uint64_t slots = GT_CACHE_BUDGET / COWD_GT_BYTES;
  if (slots > s->n_gdes)
    slots = s->n_gdes;
  if (gtc_init(&s->gtc, s->n_gdes, COWD_GTES, (uint32_t)slots,
               flush_for_cache, s, f->path) != 0)
    goto fail;
  s->gtc.f = f;
  s->gtc.grain_bytes = s->grain_bytes;
  s->gtc.lookup = lookup;
  s->gtc.alloc = alloc_grain;
  e->ops = &cowd_ops;
  e->priv = s;
  return 0;
fail:
  vf_close(s->f);
  cowd_free(s);
  return -1;
}
