/* SPDX-License-Identifier: BSD-3-Clause */
/* ESXi seSparse extents (SESPARSE, NAME-sesparse.vmdk; ESXi 6.5+ snapshots).
 * Read-only.
 *
 * On disk (all fields 64-bit little-endian, offsets and sizes in sectors):
 *  - sector 0: the constant header, magic 0xCAFEBABE, version
 *    0x0000000200000001, capacity, grain size (8 sectors), grain table size
 *    (64 sectors), flags (0), four reserved words (0), then (offset, size)
 *    pairs for the volatile header, journal header, journal, grain
 *    directory (GD), grain tables (GT), free bitmap, backmap and grains;
 *  - the volatile header, magic 0xCAFECAFE, free GT number, next
 *    transaction number and a replay-journal flag (a set flag means the
 *    journal holds changes not yet applied: refused);
 *  - GD entries: 0 = no table, else 0x10000000 in the top 32 bits and the
 *    table's index in the GT region in the low 32 bits (each GT is 64
 *    sectors: 4096 entries, covering 16 MiB of the disk);
 *  - GT entries, by their top nibble: 0 unallocated (the whole entry is 0;
 *    read the backing), 1 unmapped and 2 zero (read as zeros, as QEMU
 *    does; open-vmdk's header calls type 1 "fallthrough", which may mean
 *    "read the parent" once chains exist), 3 allocated: a grain index
 *    whose low 12 bits are in bits 48..59 and the rest in bits 0..47; the
 *    grain is at grains offset + index * 8 sectors.
 *
 * Writing would mean keeping the journal, the free bitmap and the backmap
 * consistent with the tables, which are not documented: every write is
 * refused with EROFS before anything is changed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SE_CONST_MAGIC 0x00000000cafebabeull
#define SE_VOLATILE_MAGIC 0x00000000cafecafeull
#define SE_VERSION 0x0000000200000001ull
#define SE_GRAIN_SECTORS 8u
#define SE_GT_SECTORS 64u
#define SE_GTES (SE_GT_SECTORS * SECTOR / 8u)               /* 4096 */
#define SE_GT_BYTES (SE_GT_SECTORS * SECTOR)                /* 32 KiB */
#define SE_GRAIN_BYTES (SE_GRAIN_SECTORS * SECTOR)          /* 4 KiB */
#define SE_TABLE_BYTES ((uint64_t)SE_GTES * SE_GRAIN_BYTES) /* 16 MiB */
#define SE_MAX_CAPACITY (1ull << 37) /* sectors: 64 TiB */
#define SE_GDE_ALLOCATED 0x10000000u /* top 32 bits of a GDE */
#define GT_CACHE_BUDGET (16u << 20)  /* bytes of cached GTs */

enum gte_type {
  GTE_UNALLOCATED = 0,
  GTE_UNMAPPED = 1,
  GTE_ZERO = 2,
  GTE_ALLOCATED = 3
};

/* An (offset, size) pair of the constant header, in sectors. */
struct se_area {
  uint64_t offset, size;
};

/* The decoded constant header; validated by decode_const_header(). */
struct se_header {
  uint64_t capacity; /* sectors */
  struct se_area volatile_hdr, journal_hdr, journal, gd, gts, free_bitmap,
      backmap, grains;
};

struct gt_slot {
  uint64_t *gt;   /* SE_GTES entries, or NULL when the slot is free */
  uint32_t gdi;   /* which GD entry it belongs to */
  uint64_t stamp; /* last use, for LRU eviction */
};

struct sesparse {
  struct vfile *f;
  struct se_header h;
  uint64_t file_sectors;
  uint32_t n_gdes; /* GD entries used: ceil(capacity / 32768) */
  uint64_t *gd;    /* n_gdes raw entries, host order (checked on use) */
  struct gt_slot *slots;
  uint32_t n_slots;
  uint32_t *slot_of; /* per GD entry: slot index + 1, 0 = not cached */
  uint64_t clock;
};

/* ---- headers --------------------------------------------------------------
 */

static bool all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

/* AREA (named WHAT) must start after the constant header and lie inside
 * the FILE_SECTORS-sector file. */
static int check_area(const char *path, const char *what,
                      const struct se_area *a, uint64_t file_sectors,
                      bool may_be_empty) {
  if ((!may_be_empty && a->size == 0) || a->offset == 0 ||
      a->offset > file_sectors || a->size > file_sectors - a->offset)
    return set_error(EINVAL,
                     "%s: seSparse %s (sector %" PRIu64 ", %" PRIu64
                     " sectors) does not fit in the file (%" PRIu64
                     " sectors) after the constant header",
                     path, what, a->offset, a->size, file_sectors);
  return 0;
}

static int decode_const_header(const uint8_t b[SECTOR], const char *path,
                               uint64_t file_sectors, struct se_header *h) {
  uint64_t magic = le64(b), version = le64(b + 8);
  uint64_t grain = le64(b + 24), gt_size = le64(b + 32), flags = le64(b + 40);
  if (magic != SE_CONST_MAGIC)
    return set_error(EINVAL,
                     "%s: not a seSparse extent (constant header "
                     "magic 0x%016" PRIx64 ", expected 0x%016llx)",
                     path, magic, SE_CONST_MAGIC);
  if (version != SE_VERSION)
    return set_error(ENOTSUP,
                     "%s: seSparse version 0x%016" PRIx64
                     " is not supported (only 0x%016llx)",
                     path, version, SE_VERSION);
  if (grain != SE_GRAIN_SECTORS)
    return set_error(ENOTSUP,
                     "%s: seSparse grain size %" PRIu64
                     " sectors is not supported (only 8)",
                     path, grain);
  if (gt_size != SE_GT_SECTORS)
    return set_error(ENOTSUP,
                     "%s: seSparse grain table size %" PRIu64
                     " sectors is not supported (only 64)",
                     path, gt_size);
  if (flags != 0)
    return set_error(ENOTSUP,
                     "%s: seSparse flags 0x%016" PRIx64
                     " are not supported (only 0)",
                     path, flags);
  for (int i = 0; i < 4; i++)
    if (le64(b + 48 + 8 * i) != 0)
      return set_error(
          ENOTSUP, "%s: seSparse reserved field %d is 0x%016" PRIx64 ", not 0",
          path, i + 1, le64(b + 48 + 8 * i));
  if (!all_zero(b + 208, SECTOR - 208))
    return set_error(ENOTSUP,
                     "%s: seSparse constant header padding is not "
                     "zero",
                     path);
  h->capacity = le64(b + 16);
  struct se_area *areas[] = {&h->volatile_hdr, &h->journal_hdr, &h->journal,
                             &h->gd,           &h->gts,         &h->free_bitmap,
                             &h->backmap,      &h->grains};
  for (size_t i = 0; i < sizeof areas / sizeof *areas; i++) {
    areas[i]->offset = le64(b + 80 + 16 * i);
    areas[i]->size = le64(b + 88 + 16 * i);
  }
  if (h->capacity == 0 || h->capacity > SE_MAX_CAPACITY)
    return set_error(EFBIG,
                     "%s: seSparse capacity of %" PRIu64
                     " sectors is not from 1 sector to 64 TiB",
                     path, h->capacity);
  if (check_area(path, "volatile header", &h->volatile_hdr, file_sectors,
                 false) ||
      check_area(path, "grain directory", &h->gd, file_sectors, false) ||
      check_area(path, "grain tables", &h->gts, file_sectors, true))
    return -1;
  uint64_t need =
      div_round_up(h->capacity, (uint64_t)SE_GTES * SE_GRAIN_SECTORS);
  if (h->gd.size * (SECTOR / 8) < need)
    return set_error(EINVAL,
                     "%s: seSparse grain directory of %" PRIu64
                     " sectors cannot cover the capacity of %" PRIu64
                     " sectors (%" PRIu64 " entries needed)",
                     path, h->gd.size, h->capacity, need);
  if (h->grains.offset == 0 || h->grains.offset > file_sectors)
    return set_error(EINVAL,
                     "%s: seSparse grains offset %" PRIu64
                     " lies outside the file (%" PRIu64 " sectors)",
                     path, h->grains.offset, file_sectors);
  return 0;
}

static int decode_volatile_header(const uint8_t b[SECTOR], const char *path) {
  uint64_t magic = le64(b), replay = le64(b + 24);
  if (magic != SE_VOLATILE_MAGIC)
    return set_error(EINVAL,
                     "%s: seSparse volatile header magic 0x%016" PRIx64
                     " is wrong (expected 0x%016llx)",
                     path, magic, SE_VOLATILE_MAGIC);
  if (replay != 0)
    return set_error(ENOTSUP,
                     "%s: the seSparse journal must be replayed "
                     "(the image was not closed cleanly): open it "
                     "once in ESXi first",
                     path);
  if (!all_zero(b + 32, SECTOR - 32))
    return set_error(ENOTSUP,
                     "%s: seSparse volatile header padding is not "
                     "zero",
                     path);
  return 0;
}

/* ---- tables ----------------------------------------------------------------
 */

/* The first sector of the GT GD entry GDI points at, or 0 for none. */
static int table_sector(struct sesparse *s, uint32_t gdi, uint64_t *sector) {
  uint64_t v = s->gd[gdi];
  *sector = 0;
  if (v == 0)
    return 0;
  uint64_t idx = v & 0xffffffffu;
  if ((v >> 32) != SE_GDE_ALLOCATED)
    return set_error(EINVAL,
                     "%s: grain directory entry %" PRIu32 " is 0x%016" PRIx64
                     " (not 0 and not a table)",
                     s->f->path, gdi, v);
  if ((idx + 1) * SE_GT_SECTORS > s->h.gts.size)
    return set_error(EINVAL,
                     "%s: grain directory entry %" PRIu32
                     " names grain table %" PRIu64
                     ", past the grain tables area (%" PRIu64 " tables)",
                     s->f->path, gdi, idx, s->h.gts.size / SE_GT_SECTORS);
  *sector = s->h.gts.offset + idx * SE_GT_SECTORS;
  return 0;
}

/* Get the table of GD entry GDI (NULL when there is none). */
static int get_table(struct sesparse *s, uint32_t gdi, uint64_t **gt) {
  uint32_t idx = s->slot_of[gdi];
  if (idx) {
    s->slots[idx - 1].stamp = ++s->clock;
    *gt = s->slots[idx - 1].gt;
    return 0;
  }
  uint64_t sector;
  if (table_sector(s, gdi, &sector) != 0)
    return -1;
  if (sector == 0) {
    *gt = NULL;
    return 0;
  }
  struct gt_slot *slot = NULL;
  for (uint32_t i = 0; i < s->n_slots; i++) {
    if (!s->slots[i].gt) {
      slot = &s->slots[i];
      break;
    }
    if (!slot || s->slots[i].stamp < slot->stamp)
      slot = &s->slots[i];
  }
  if (slot->gt)
    s->slot_of[slot->gdi] = 0;
  else if (!(slot->gt = malloc(SE_GT_BYTES)))
    return set_error(ENOMEM, "%s: out of memory for a grain table", s->f->path);
  uint8_t *raw = malloc(SE_GT_BYTES);
  if (!raw || vf_pread(s->f, raw, SE_GT_BYTES, sector * SECTOR) != 0) {
    if (!raw)
      set_error(ENOMEM, "%s: out of memory", s->f->path);
    free(raw);
    free(slot->gt);
    slot->gt = NULL;
    return -1;
  }
  for (uint32_t i = 0; i < SE_GTES; i++)
    slot->gt[i] = le64(raw + 8 * i);
  free(raw);
  slot->gdi = gdi;
  slot->stamp = ++s->clock;
  s->slot_of[gdi] = (uint32_t)(slot - s->slots) + 1;
  *gt = slot->gt;
  return 0;
}

/* Decode entry I of table GDI (value V): its type, and for allocated
 * grains the byte offset of the grain in the file. */
static int decode_gte(struct sesparse *s, uint32_t gdi, uint32_t i, uint64_t v,
                      enum gte_type *type, uint64_t *file_off) {
  unsigned nibble = (unsigned)(v >> 60);
  *file_off = 0;
  switch (nibble) {
  case GTE_UNALLOCATED:
    if (v != 0)
      break;
    *type = GTE_UNALLOCATED;
    return 0;
  case GTE_UNMAPPED:
  case GTE_ZERO:
    *type = (enum gte_type)nibble;
    return 0;
  case GTE_ALLOCATED: {
    uint64_t idx = ((v >> 48) & 0xfffu) | ((v & 0x0000ffffffffffffull) << 12);
    /* idx < 2^60: idx * 8 cannot overflow; the sum is checked */
    uint64_t sector = s->h.grains.offset + idx * SE_GRAIN_SECTORS;
    if (sector < s->h.grains.offset ||
        sector + SE_GRAIN_SECTORS > s->file_sectors)
      return set_error(EINVAL,
                       "%s: grain table entry %" PRIu32 " of table %" PRIu32
                       " (grain %" PRIu64
                       ") points past the end of the file (file %" PRIu64
                       " sectors)",
                       s->f->path, i, gdi, idx, s->file_sectors);
    *type = GTE_ALLOCATED;
    *file_off = sector * SECTOR;
    return 0;
  }
  default:
    break;
  }
  return set_error(EINVAL,
                   "%s: grain table entry %" PRIu32 " of table %" PRIu32
                   " is 0x%016" PRIx64 ", not a known grain type",
                   s->f->path, i, gdi, v);
}

/* The type (and file offset) of the grain holding extent offset OFF. */
static int lookup(struct sesparse *s, uint64_t off, enum gte_type *type,
                  uint64_t *file_off) {
  uint64_t gno = off / SE_GRAIN_BYTES;
  uint32_t gdi = (uint32_t)(gno / SE_GTES), i = (uint32_t)(gno % SE_GTES);
  uint64_t *gt;
  if (get_table(s, gdi, &gt) != 0)
    return -1;
  if (!gt) {
    *type = GTE_UNALLOCATED;
    *file_off = 0;
    return 0;
  }
  return decode_gte(s, gdi, i, gt[i], type, file_off);
}

/* ---- ops
 * --------------------------------------------------------------------- */

static int sesparse_pread(struct extent *e, void *buf, size_t len,
                          uint64_t off) {
  struct sesparse *s = e->priv;
  uint8_t *p = buf;
  uint64_t r_off = 0; /* contiguous grains are read with one pread */
  uint8_t *r_buf = NULL;
  size_t r_len = 0;
  while (len > 0) {
    uint64_t in = off % SE_GRAIN_BYTES;
    size_t n = SE_GRAIN_BYTES - in < len ? (size_t)(SE_GRAIN_BYTES - in) : len;
    enum gte_type type = GTE_UNALLOCATED;
    uint64_t fo = 0;
    if (lookup(s, off, &type, &fo) != 0)
      return -1;
    if (type == GTE_ALLOCATED) {
      fo += in;
      if (r_len && (fo != r_off + r_len || p != r_buf + r_len)) {
        if (vf_pread(s->f, r_buf, r_len, r_off) != 0)
          return -1;
        r_len = 0;
      }
      if (!r_len) {
        r_off = fo;
        r_buf = p;
      }
      r_len += n;
    } else if (type != GTE_UNALLOCATED) {
      memset(p, 0, n);
    } else if (disk_read_backing(e->disk, p, n, e->virt_start + off) != 0) {
      return -1;
    }
    p += n;
    off += n;
    len -= n;
  }
  if (r_len && vf_pread(s->f, r_buf, r_len, r_off) != 0)
    return -1;
  return 0;
}

static int refuse_write(struct extent *e) {
  struct sesparse *s = e->priv;
  return set_error(EROFS,
                   "%s: seSparse extents are read-only (writing one "
                   "safely needs its journal, free bitmap and backmap, "
                   "which are not documented)",
                   s->f->path);
}

static int sesparse_pwrite(struct extent *e, const void *buf, size_t len,
                           uint64_t off) {
  (void)buf;
  (void)len;
  (void)off;
  return refuse_write(e);
}

static int sesparse_zero(struct extent *e, uint64_t len, uint64_t off) {
  (void)len;
  (void)off;
  return refuse_write(e);
}

static int sesparse_status(struct extent *e, uint64_t off, uint64_t len,
                           struct vmdk_run *run) {
  struct sesparse *s = e->priv;
  run->length = 0;
  run->flags = 0;
  run->file_offset = -1;
  run->file = NULL;
  while (len > 0) {
    uint64_t in = off % SE_GRAIN_BYTES;
    uint64_t n = SE_GRAIN_BYTES - in < len ? SE_GRAIN_BYTES - in : len;
    uint32_t gdi = (uint32_t)(off / SE_TABLE_BYTES);
    uint64_t *gt;
    if (get_table(s, gdi, &gt) != 0)
      return -1;
    unsigned flags = 0;
    int64_t fo = -1;
    if (!gt) { /* the whole table's range is unallocated */
      uint64_t table_end = ((uint64_t)gdi + 1) * SE_TABLE_BYTES;
      n = table_end - off < len ? table_end - off : len;
    } else {
      enum gte_type type = GTE_UNALLOCATED;
      uint64_t grain_off = 0;
      uint32_t i = (uint32_t)(off / SE_GRAIN_BYTES % SE_GTES);
      if (decode_gte(s, gdi, i, gt[i], &type, &grain_off) != 0)
        return -1;
      if (type == GTE_ALLOCATED) {
        flags = VMDK_RUN_PRESENT | VMDK_RUN_DATA;
        fo = (int64_t)(grain_off + in);
      } else if (type != GTE_UNALLOCATED) {
        flags = VMDK_RUN_PRESENT | VMDK_RUN_ZERO;
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

static int sesparse_flush(struct extent *e) {
  (void)e; /* nothing is ever written */
  return 0;
}

static void sesparse_free(struct sesparse *s) {
  if (!s)
    return;
  for (uint32_t i = 0; s->slots && i < s->n_slots; i++)
    free(s->slots[i].gt);
  free(s->slots);
  free(s->slot_of);
  free(s->gd);
  free(s);
}

static int sesparse_close(struct extent *e) {
  struct sesparse *s = e->priv;
  int r = vf_close(s->f);
  sesparse_free(s);
  return r;
}

static void sesparse_info(struct extent *e, struct vmdk_extent_info *info) {
  (void)e;
  info->grain_bytes = SE_GRAIN_BYTES;
  info->version = 2; /* the major half of version 0x0000000200000001 */
}

static uint64_t sesparse_allocated(struct extent *e) {
  struct sesparse *s = e->priv;
  return vf_allocated(s->f);
}

/* ---- check
 * ------------------------------------------------------------------- */

/* Something that points at a grain or a table, for finding two that share
 * one. */
struct ref {
  uint64_t target;       /* grain index, or table index */
  uint32_t table, entry; /* who points at it (entry UINT32_MAX: a GD entry) */
};

static int cmp_ref(const void *a, const void *b) {
  const struct ref *x = a, *y = b;
  return x->target < y->target ? -1 : x->target > y->target;
}

struct refs {
  struct ref *r;
  size_t n, cap;
};

static int add_ref(struct refs *rs, uint64_t target, uint32_t table,
                   uint32_t entry) {
  if (rs->n == rs->cap) {
    size_t cap = rs->cap ? rs->cap * 2 : 1024;
    struct ref *r = realloc(rs->r, cap * sizeof *r);
    if (!r)
      return set_error(ENOMEM, "out of memory while checking");
    rs->r = r;
    rs->cap = cap;
  }
  rs->r[rs->n++] = (struct ref){target, table, entry};
  return 0;
}

/* Report every target that two references share. */
static void report_shared(struct check_ctx *c, const char *path,
                          struct refs *rs, bool tables) {
  if (rs->n < 2) /* also: qsort must not get a NULL array */
    return;
  qsort(rs->r, rs->n, sizeof *rs->r, cmp_ref);
  for (size_t k = 1; k < rs->n; k++) {
    const struct ref *a = &rs->r[k - 1], *b = &rs->r[k];
    if (a->target != b->target)
      continue;
    if (tables)
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain directory entries %" PRIu32 " and %" PRIu32
                   " share grain table %" PRIu64,
                   path, a->table, b->table, a->target);
    else
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: grain table entries %" PRIu32 " of table %" PRIu32
                   " and %" PRIu32 " of table %" PRIu32 " share grain %" PRIu64,
                   path, a->entry, a->table, b->entry, b->table, a->target);
  }
}

static int sesparse_check(struct extent *e, struct check_ctx *c) {
  struct sesparse *s = e->priv;
  const char *path = s->f->path;
  struct refs tables = {0}, grains = {0};
  uint8_t *raw = malloc(SE_GT_BYTES);
  /* Tables read so far: one shared by several GD entries (reported below)
   * is read once, so the work is bounded by the file however many entries
   * of a hostile directory point at one table. */
  uint8_t *seen = calloc(s->h.gts.size / SE_GT_SECTORS / 8 + 1, 1);
  int ret = -1;
  if (!raw || !seen) {
    set_error(ENOMEM, "%s: out of memory", path);
    goto out;
  }
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++) {
    uint64_t sector;
    if (table_sector(s, gdi, &sector) != 0) {
      check_report(c, VMDK_PROBLEM_CORRUPT, 0, "%s", vmdk_get_error());
      continue;
    }
    if (sector == 0)
      continue;
    uint64_t t = (sector - s->h.gts.offset) / SE_GT_SECTORS;
    if (add_ref(&tables, t, gdi, UINT32_MAX) != 0)
      goto out;
    if (seen[t / 8] & (1u << (t % 8)))
      continue;
    seen[t / 8] |= (uint8_t)(1u << (t % 8));
    if (vf_pread(s->f, raw, SE_GT_BYTES, sector * SECTOR) != 0)
      goto out;
    for (uint32_t i = 0; i < SE_GTES; i++) {
      uint64_t v = le64(raw + 8 * i);
      uint64_t gno = (uint64_t)gdi * SE_GTES + i;
      enum gte_type type = GTE_UNALLOCATED;
      uint64_t fo = 0;
      if (v == 0)
        continue;
      if (gno * SE_GRAIN_SECTORS >= s->h.capacity) {
        check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                     "%s: grain table entry %" PRIu32 " of table %" PRIu32
                     " is set (0x%016" PRIx64 ") but lies past the capacity",
                     path, i, gdi, v);
        continue;
      }
      if (decode_gte(s, gdi, i, v, &type, &fo) != 0) {
        check_report(c, VMDK_PROBLEM_CORRUPT, 0, "%s", vmdk_get_error());
        continue;
      }
      if (type != GTE_ALLOCATED)
        continue;
      c->res->allocated_grains++;
      if (add_ref(&grains,
                  (fo / SECTOR - s->h.grains.offset) / SE_GRAIN_SECTORS, gdi,
                  i) != 0)
        goto out;
    }
  }
  report_shared(c, path, &tables, true);
  report_shared(c, path, &grains, false);
  c->res->total_grains += div_round_up(s->h.capacity, SE_GRAIN_SECTORS);
  ret = 0;
out:
  free(tables.r);
  free(grains.r);
  free(raw);
  free(seen);
  return ret;
}

static const struct extent_ops sesparse_ops = {
    .name = "sesparse",
    .pread = sesparse_pread,
    .pwrite = sesparse_pwrite,
    .zero = sesparse_zero,
    .status = sesparse_status,
    .flush = sesparse_flush,
    .close = sesparse_close,
    .check = sesparse_check,
    .info = sesparse_info,
    .allocated = sesparse_allocated,
};

/* ---- open
 * --------------------------------------------------------------------- */

int sesparse_open(struct extent *e, struct vfile *f) {
  uint8_t hdr[SECTOR];
  if (f->size < SECTOR) {
    set_error(EINVAL,
              "%s: file is too short for a seSparse header (%" PRIu64 " bytes)",
              f->path, f->size);
    vf_close(f);
    return -1;
  }
  struct sesparse *s = calloc(1, sizeof *s);
  if (!s) {
    vf_close(f);
    return set_error(ENOMEM, "out of memory");
  }
  s->f = f;
  s->file_sectors = f->size / SECTOR;
  if (vf_pread(f, hdr, SECTOR, 0) != 0 ||
      decode_const_header(hdr, f->path, s->file_sectors, &s->h) != 0 ||
      vf_pread(f, hdr, SECTOR, s->h.volatile_hdr.offset * SECTOR) != 0 ||
      decode_volatile_header(hdr, f->path) != 0)
    goto fail;
  if (e->size != s->h.capacity * SECTOR) {
    set_error(EINVAL,
              "%s: the descriptor gives the extent %" PRIu64
              " sectors but its seSparse header says %" PRIu64,
              f->path, e->size / SECTOR, s->h.capacity);
    goto fail;
  }
  /* The used part of the GD: at most 2^22 entries (32 MiB) at 64 TiB. */
  s->n_gdes = (uint32_t)div_round_up(s->h.capacity,
                                     (uint64_t)SE_GTES * SE_GRAIN_SECTORS);
  size_t bytes = (size_t)s->n_gdes * 8;
  uint8_t *raw = malloc(bytes);
  s->gd = malloc(bytes);
  if (!raw || !s->gd) {
    free(raw);
    set_error(ENOMEM, "%s: out of memory for the grain directory", f->path);
    goto fail;
  }
  if (vf_pread(f, raw, bytes, s->h.gd.offset * SECTOR) != 0) {
    free(raw);
    goto fail;
  }
  for (uint32_t i = 0; i < s->n_gdes; i++)
    s->gd[i] = le64(raw + 8 * i);
  free(raw);

  uint32_t slots = GT_CACHE_BUDGET / SE_GT_BYTES;
  s->n_slots = slots < s->n_gdes ? slots : s->n_gdes;
  s->slots = calloc(s->n_slots, sizeof *s->slots);
  s->slot_of = calloc(s->n_gdes, sizeof *s->slot_of);
  if (!s->slots || !s->slot_of) {
    set_error(ENOMEM, "%s: out of memory for the grain table cache", f->path);
    goto fail;
  }
  e->ops = &sesparse_ops;
  e->priv = s;
  return 0;
fail:
  vf_close(s->f);
  sesparse_free(s);
  return -1;
}
