/* SPDX-License-Identifier: BSD-3-Clause */
/* streamOptimized extents: a KDMV header whose grains are compressed, each
 * behind a grain marker {u64 LBA, u32 size}, with grain tables, the grain
 * directory and a footer (a copy of the header with the real GD offset)
 * behind metadata markers {u64 numSectors, u32 0, u32 type}, ending with an
 * end-of-stream (EOS) marker.  VMware's layout puts the GD at the end
 * (header gdOffset = GD_AT_END, footer at file end - 1024); QEMU's puts the
 * GD and all tables at the front.  Both are read.
 *
 * Truncated streams (cut in transfer, or their writer killed) are never
 * read silently.  At open (one mechanism; info and check show the same
 * state and message):
 *  - VMware's layout is complete with its footer and EOS at the end.
 *    Without them the markers are walked: a footer found whole (only the
 *    EOS missing or cut) still gives the index -- nothing is lost, the
 *    state is "no-end-of-stream"; otherwise the stream is "truncated" and
 *    the index is what the walk found whole (the grain the end of the
 *    file cuts is left out).
 *  - QEMU's layout has no EOS (QEMU writes none): its tables are the
 *    claim.  Entries past the end of the file, a last grain cut short, or
 *    grains after the last one listed (an append that never reached its
 *    flush) make it "truncated"; grains found whole are kept.
 *  - A truncated stream is refused (ENODATA, the message says what is
 *    missing and what the markers give) unless the open is read-only with
 *    VMDK_OPEN_SALVAGE; a read-write open refuses it always (EROFS).  A
 *    file cut inside its header or descriptor is refused by the probe,
 *    which stream_explain_cut() words.
 *
 * Index: per grain-table, the table (host order) of marker sectors; tables
 * without a present grain are not kept, so memory follows the data, not
 * the capacity.
 *
 * Writing (append only, the rules in one place):
 *  1. A grain is written once, whole: compressed behind its marker at
 *     `data_end`, which starts at the end of the last grain already in the
 *     file (the old trailing metadata is overwritten: the file is first
 *     cut at `data_end`, so that no old footer outlives the tables the new
 *     grains overwrite -- a batch shorter than the old metadata left it in
 *     place, and after a crash it pointed at grain data as its tables;
 *     tests/unit/test-crash-kill.c found it).  A grain already in the
 *     file is never rewritten (refused).
 *  2. Writes land in pending grains in memory (prefilled from the backing,
 *     zeros without one), so a grain may be written many times, in any
 *     pieces, until it goes out.  Pending grains go out together, in
 *     ascending grain order, when PENDING_BYTES are pending and at flush.
 *     All-zero grains are not written.
 *  3. Flush: pending grains are written, the data synced, then every grain
 *     table (GT marker + GT), the GD (GD marker + GD), the footer marker, the
 *     footer and the EOS marker are written after the last grain, the file
 *     cut there, the header made VMware's (version 3, GD_AT_END, markers),
 *     and synced.  When an append or that metadata fails part-way, the
 *     metadata of the grains that landed is put back after them
 *     (keep_whole), so a failed write leaves the stream whole.  Between the first new grain and that flush the file has
 *     no footer: another open (and any open after a crash there) finds it
 *     truncated -- refused, or read with VMDK_OPEN_SALVAGE by scanning the
 *     markers.  A stream whose open found it truncated is never appended
 *     to.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/types.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MARKER_EOS 0u
#define MARKER_GT 1u
#define MARKER_GD 2u
#define MARKER_FOOTER 3u
#define MAX_STREAM_GRAIN_SECTORS (1u << 14) /* 8 MiB */
#define PENDING_BYTES (16u << 20) /* grains held before they go out */
#define STREAM_LEVEL 6                        /* zlib's default level */
#define MAX_THREADS 64
#define META_CHUNK (1u << 20)

/* Whether the stream is whole: see the header comment's "Truncated
 * streams". */
enum stream_state {
  ST_COMPLETE,  /* footer (or the header's tables) and end-of-stream */
  ST_NO_EOS,    /* VMware's layout: only the end-of-stream marker after
                   the footer is missing, nothing is lost */
  ST_TRUNCATED, /* data may be lost: opened only with VMDK_OPEN_SALVAGE */
};
static const char *const state_names[] = {"complete", "no-end-of-stream",
                                          "truncated"};

struct pending {
  uint64_t grain;   /* grain number */
  uint8_t *buf;     /* grain_bytes, prefilled from the backing */
};

struct stream {
  struct vfile *f;
  struct kdmv_header h;   /* effective header (the footer when at the end) */
  uint64_t grain_bytes;
  uint64_t n_grains;      /* grains the capacity spans */
  uint32_t gtes;          /* entries per grain table */
  uint32_t n_gdes;
  uint64_t gt_sectors, gd_sectors;
  uint32_t **gts;         /* per GD entry: marker sectors, or NULL */
  uint64_t gts_bytes;     /* memory of the tables in gts */
  uint64_t meta_end;      /* sectors: the end of the header, descriptor,
                             and the GD and GTs the index was read from:
                             new grains never go below it */
  /* What the open found (one mechanism: the open refuses a truncated
   * stream without VMDK_OPEN_SALVAGE, info shows it, check reports it). */
  enum stream_state state;
  char *damage;           /* not complete: what is missing, with the
                             numbers, starting "stream ..." (no file name) */
  uint64_t n_present;     /* grains in the index */
  struct codec *codec;
  uint8_t *cbuf;          /* a marker with its compressed grain */
  size_t cbuf_cap;
  uint8_t *gbuf;          /* the last inflated grain */
  uint64_t gbuf_grain;    /* which one, UINT64_MAX for none */

  uint64_t data_end;      /* bytes; 0 until the first write computes it */
  bool changed;           /* grains written since the metadata was */
  struct pending *pend;   /* grains not yet written (rule 2) */
  unsigned threads;       /* compression threads, 1..MAX_THREADS */
  struct codec *codecs[MAX_THREADS]; /* one per thread */
  uint8_t *batch;         /* max_pend output slots of cbuf_cap bytes */
  uint32_t n_pend, max_pend;
};

static uint64_t grain_len(const struct stream *s, uint64_t g) {
  uint64_t start = g * s->grain_bytes, cap = s->h.capacity * SECTOR;
  return cap - start < s->grain_bytes ? cap - start : s->grain_bytes;
}

static bool all_zero(const uint8_t *p, size_t n) {
  return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static uint32_t grain_sector(const struct stream *s, uint64_t g) {
  uint32_t *gt = s->gts[g / s->gtes];
  return gt ? gt[g % s->gtes] : 0;
}

/* Memory the index may take for a file of SIZE bytes: a table is made for
 * a grain present, and each grain takes at least a sector of the file, so
 * 4 bytes per entry of 512-entry tables stay within 4 times the file; a
 * hostile stream of 65536-entry tables with one grain in each would take
 * 512 times its size. */
#define GTS_LIMIT(size) (4 * (size) + (64u << 20))

static int set_grain_sector(struct stream *s, uint64_t g, uint32_t sector) {
  uint32_t **gt = &s->gts[g / s->gtes];
  uint64_t bytes = (uint64_t)s->gtes * sizeof **gt;
  if (!*gt && s->gts_bytes + bytes > GTS_LIMIT(s->f->size))
    return set_error(EFBIG, "%s: the grain tables (numGTEsPerGT %" PRIu32
                            ") of the grains present would take more than "
                            "%s of memory, more than a file of %s can need",
                     s->f->path, s->gtes, human_size(GTS_LIMIT(s->f->size)),
                     human_size(s->f->size));
  if (!*gt) {
    if (!(*gt = calloc(s->gtes, sizeof **gt)))
      return set_error(ENOMEM, "%s: out of memory for a grain table",
                       s->f->path);
    s->gts_bytes += bytes;
  }
  s->n_present += (*gt)[g % s->gtes] == 0 && sector != 0;
  (*gt)[g % s->gtes] = sector;
  return 0;
}

/* ---- index: from the GD and GTs, or by scanning the markers -------------- */

/* What a lenient load_tables() could not load: what the end of the file
 * cut off (a truncated stream in QEMU's layout, its tables at the front). */
struct lost {
  uint64_t entries;  /* grain table entries at or past the end of the file */
  uint32_t tables;   /* grain tables (GD entries) past the end of the file */
};

/* Load the index from the GD at s->h.gd_offset.  LOST NULL: strict, an
 * entry past the end of the file is an error; else such entries (and
 * tables) are counted in *LOST and left out. */
static int load_tables(struct stream *s, struct lost *lost) {
  uint64_t file_sectors = s->f->size / SECTOR;
  size_t gd_bytes = (size_t)s->n_gdes * 4;
  uint8_t *raw = malloc(gd_bytes + s->gtes * 4 + 4);
  if (!raw)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  uint8_t *gtraw = raw + gd_bytes;
  int r = vf_pread(s->f, raw, gd_bytes, s->h.gd_offset * SECTOR);
  if (s->h.gd_offset + s->gd_sectors > s->meta_end)
    s->meta_end = s->h.gd_offset + s->gd_sectors;
  for (uint32_t gdi = 0; r == 0 && gdi < s->n_gdes; gdi++) {
    uint32_t gde = le32(raw + 4 * gdi);
    if (gde == 0)
      continue;
    if (gde + s->gt_sectors > s->meta_end && gde + s->gt_sectors <= file_sectors)
      s->meta_end = gde + s->gt_sectors;
    if (gde + s->gt_sectors > file_sectors) {
      if (lost) {
        lost->tables++;
        continue;
      }
      r = set_error(EINVAL, "%s: grain directory entry %" PRIu32
                            " points past the end of the file (sector %" PRIu32
                            ", file %" PRIu64 " sectors)",
                    s->f->path, gdi, gde, file_sectors);
      break;
    }
    if ((r = vf_pread(s->f, gtraw, s->gtes * 4, (uint64_t)gde * SECTOR)))
      break;
    for (uint32_t i = 0; r == 0 && i < s->gtes; i++) {
      uint32_t v = le32(gtraw + 4 * i);
      uint64_t g = (uint64_t)gdi * s->gtes + i;
      if (v == 0)
        continue;
      if (lost && g < s->n_grains && v >= file_sectors)
        lost->entries++;
      else if (g >= s->n_grains || v >= file_sectors || v < 1)
        r = set_error(EINVAL, "%s: grain table entry %" PRIu32 " of table %" PRIu32
                              " is invalid (sector %" PRIu32 ", file %" PRIu64
                              " sectors, %" PRIu64 " grains)",
                      s->f->path, i, gdi, v, file_sectors, s->n_grains);
      else
        r = set_grain_sector(s, g, v);
    }
  }
  free(raw);
  return r;
}

/* Grains in the index and the bytes of the disk they hold. */
static uint64_t count_present(const struct stream *s, uint64_t *bytes) {
  uint64_t n = 0, b = 0;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    if (s->gts[gdi])
      for (uint32_t i = 0; i < s->gtes; i++)
        if (s->gts[gdi][i]) {
          n++;
          b += grain_len(s, (uint64_t)gdi * s->gtes + i);
        }
  if (bytes)
    *bytes = b;
  return n;
}

/* Forget the index (before it is loaded another way). */
static void clear_index(struct stream *s) {
  for (uint32_t i = 0; i < s->n_gdes; i++) {
    free(s->gts[i]);
    s->gts[i] = NULL;
  }
  s->gts_bytes = 0;
  s->n_present = 0;
}

/* What walking the markers found. */
struct scan {
  uint64_t end;         /* sector the walk stopped at */
  uint64_t grains;      /* grain markers found whole */
  uint32_t gts;         /* grain table markers found whole */
  bool gd;              /* a grain directory marker found whole */
  bool eos;             /* the walk ended at an end-of-stream marker */
  uint64_t footer;      /* the sector of the last footer found whole (after
                           its marker), 0: none */
  /* What the end of the file cuts: CUT_WHAT NULL when it falls between
   * two items (or the walk ended at EOS). */
  const char *cut_what; /* "grain", "grain table", ... */
  uint64_t cut_sector;  /* its marker's sector */
  uint64_t cut_lba;     /* a grain's LBA */
  uint64_t cut_have, cut_need; /* its bytes in the file, and in all */
};

/* An end-of-stream marker: a zero-size marker of type 0. */
static bool is_eos(const uint8_t m[16]) {
  return le32(m + 8) == 0 && le32(m + 12) == MARKER_EOS;
}

static const char *marker_name(uint32_t type) {
  switch (type) {
  case MARKER_GT:
    return "grain table";
  case MARKER_GD:
    return "grain directory";
  case MARKER_FOOTER:
    return "footer";
  default:
    return "metadata";
  }
}

/* Walk the markers from sector SEC to EOS or the end of the file, adding
 * every grain found whole to the index.  Only what the markers cannot
 * have come from (a grain marker for an LBA outside the disk) is an
 * error; where the file ends is recorded in *SC. */
static int scan_markers(struct stream *s, uint64_t sec, struct scan *sc) {
  uint64_t size = s->f->size;
  memset(sc, 0, sizeof *sc);
  while (sec * SECTOR < size) {
    uint64_t have = size - sec * SECTOR;
    uint8_t m[16] = {0};
    if (vf_pread(s->f, m, have < sizeof m ? (size_t)have : sizeof m,
                 sec * SECTOR) != 0)
      return -1;
    uint64_t val = le64(m);
    uint32_t gsize = le32(m + 8), type = le32(m + 12);
    if (gsize != 0 && have >= 12) { /* a grain marker: val is its LBA */
      uint64_t need = 12 + (uint64_t)gsize;
      if (need > have) { /* cut by the end of the file */
        sc->cut_what = "grain";
        sc->cut_sector = sec;
        sc->cut_lba = val;
        sc->cut_have = have;
        sc->cut_need = need;
        break;
      }
      if (val % s->h.grain || val / s->h.grain >= s->n_grains ||
          sec > UINT32_MAX)
        return set_error(EINVAL, "%s: grain marker at sector %" PRIu64
                                 " has LBA %" PRIu64
                                 ", not the start of a grain of the disk",
                         s->f->path, sec, val);
      if (set_grain_sector(s, val / s->h.grain, (uint32_t)sec) != 0)
        return -1;
      sc->grains++;
      sc->gd = false; /* a directory or footer before grains is stale */
      sc->footer = 0;
      sec += div_round_up(need, SECTOR);
    } else if (have < SECTOR) { /* a metadata marker cut short */
      bool eos = have >= 16 ? is_eos(m) : all_zero(m, (size_t)have);
      sc->cut_what = eos ? "end-of-stream marker"
                     : have >= 16 ? marker_name(type)
                                  : "marker";
      sc->cut_sector = sec;
      sc->cut_have = have;
      sc->cut_need = eos || have < 16 ? SECTOR
                     : val >= UINT64_MAX / SECTOR - 1 ? UINT64_MAX
                                                      : (1 + val) * SECTOR;
      break;
    } else if (is_eos(m)) {
      sc->eos = true;
      break;
    } else { /* GT, GD, footer or unknown (vSphere's type 4): skip */
      uint64_t left = have / SECTOR; /* whole sectors from the marker on */
      if (val >= left) { /* its metadata is cut by the end of the file */
        sc->cut_what = marker_name(type);
        sc->cut_sector = sec;
        sc->cut_have = have;
        sc->cut_need = val >= UINT64_MAX / SECTOR - 1 ? UINT64_MAX
                                                      : (1 + val) * SECTOR;
        break;
      }
      if (type == MARKER_GT)
        sc->gts++;
      else if (type == MARKER_GD)
        sc->gd = true;
      else if (type == MARKER_FOOTER && val >= 1)
        sc->footer = sec + 1;
      sec += 1 + val;
    }
  }
  sc->end = sec;
  return 0;
}

/* ---- grains -------------------------------------------------------------------- */

/* Read grain G's marker and inflate it into s->gbuf. */
static int inflate_grain(struct stream *s, uint64_t g, uint32_t sector) {
  if (s->gbuf_grain == g)
    return 0;
  uint64_t off = (uint64_t)sector * SECTOR;
  uint64_t avail = s->f->size > off ? s->f->size - off : 0;
  size_t want = s->cbuf_cap < avail ? s->cbuf_cap : (size_t)avail;
  if (want < 12)
    return set_error(EINVAL, "%s: grain %" PRIu64 " marker at sector %" PRIu32
                             " lies past the end of the file",
                     s->f->path, g, sector);
  if (vf_pread(s->f, s->cbuf, want, off) != 0)
    return -1;
  uint64_t lba = le64(s->cbuf);
  uint32_t size = le32(s->cbuf + 8);
  if (lba != g * s->h.grain)
    return set_error(EINVAL, "%s: grain marker at sector %" PRIu32
                             " is for LBA %" PRIu64 ", expected %" PRIu64,
                     s->f->path, sector, lba, g * s->h.grain);
  if (size == 0 || size > s->cbuf_cap - 12 || 12 + (uint64_t)size > avail)
    return set_error(EINVAL, "%s: grain %" PRIu64 " at sector %" PRIu32
                             " has a compressed size of %" PRIu32
                             " bytes (grain %" PRIu64 " bytes, %" PRIu64
                             " bytes left in the file)",
                     s->f->path, g, sector, size, s->grain_bytes, avail);
  size_t got;
  int r = codec_decompress(s->codec, s->cbuf + 12, size, s->gbuf,
                           s->grain_bytes, &got);
  s->gbuf_grain = UINT64_MAX;
  if (r == -2)
    return set_error(EINVAL, "%s: grain %" PRIu64 " at sector %" PRIu32
                             " inflates to more than a grain (%" PRIu64
                             " bytes)",
                     s->f->path, g, sector, s->grain_bytes);
  if (r != 0)
    return set_error(EINVAL, "%s: grain %" PRIu64 " at sector %" PRIu32
                             ": the compressed data is corrupt",
                     s->f->path, g, sector);
  if (got < grain_len(s, g))
    return set_error(EINVAL, "%s: grain %" PRIu64 " at sector %" PRIu32
                             " inflates to %zu bytes, expected %" PRIu64,
                     s->f->path, g, sector, got, grain_len(s, g));
  memset(s->gbuf + got, 0, s->grain_bytes - got);
  s->gbuf_grain = g;
  return 0;
}

static struct pending *find_pending(struct stream *s, uint64_t g) {
  for (uint32_t i = 0; i < s->n_pend; i++)
    if (s->pend[i].grain == g)
      return &s->pend[i];
  return NULL;
}

/* Find where appending starts: after the last grain in the file. */
static int find_data_end(struct stream *s) {
  uint64_t last = 0;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    if (s->gts[gdi])
      for (uint32_t i = 0; i < s->gtes; i++)
        if (s->gts[gdi][i] > last)
          last = s->gts[gdi][i];
  uint64_t end = s->h.overhead * SECTOR;
  if (end == 0)
    end = (s->h.desc_offset + s->h.desc_size + 1) * SECTOR;
  /* A corrupt overHead must not put grains over the descriptor or the
   * tables still in use. */
  if (end < s->meta_end * SECTOR)
    end = s->meta_end * SECTOR;
  if (last) {
    uint8_t m[12];
    if (vf_pread(s->f, m, sizeof m, last * SECTOR) != 0)
      return -1;
    /* A hostile size (0xffffffff) would put new grains gigabytes past the
     * end of the file. */
    uint32_t size = le32(m + 8);
    uint64_t left = s->f->size > last * SECTOR ? s->f->size - last * SECTOR
                                               : 0;
    if (size == 0 || size > s->cbuf_cap - 12 || 12 + (uint64_t)size > left)
      return set_error(EINVAL, "%s: the last grain marker (sector %" PRIu64
                               ") has a compressed size of %" PRIu32
                               " bytes (at most %zu, %" PRIu64
                               " bytes left in the file): no grain can be "
                               "appended after it",
                       s->f->path, last, size, s->cbuf_cap - 12, left);
    uint64_t e = last * SECTOR + div_round_up(12 + (uint64_t)size,
                                              SECTOR) * SECTOR;
    if (e > end)
      end = e;
  }
  s->data_end = end;
  return 0;
}

/* One grain's marker and compressed data, laid out in OUT (ROOM bytes);
 * returns the sector-padded size, 0 for a grain that is not written (all
 * zeros over nothing), or -1. */
static ssize_t compress_grain(const struct stream *s, struct codec *z,
                              uint64_t g, const uint8_t *data, bool keep_zero,
                              uint8_t *out, size_t room) {
  if (!keep_zero && all_zero(data, s->grain_bytes))
    return 0;
  size_t c = codec_compress(z, data, s->grain_bytes, out + 12,
                            room - 12 - SECTOR);
  if (c == 0)
    return -1;
  put_le64(out, g * s->h.grain);
  put_le32(out + 8, (uint32_t)c);
  size_t total = (size_t)div_round_up(12 + c, SECTOR) * SECTOR;
  memset(out + 12 + c, 0, total - 12 - c);
  return (ssize_t)total;
}

/* A batch of pending grains compressed by several threads. */
struct batch {
  struct stream *s;
  bool keep_zero; /* a backing exists: zero grains must be written */
  size_t slot;    /* bytes per grain's output slot in s->batch */
  ssize_t *sizes; /* per grain: compress_grain's result */
  unsigned next;  /* next grain to take (atomic) */
};

struct worker {
  struct batch *b;
  struct codec *z;
};

static void *compress_worker(void *arg) {
  struct worker *w = arg;
  struct batch *b = w->b;
  struct stream *s = b->s;
  for (;;) {
    unsigned i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
    if (i >= s->n_pend)
      break;
    b->sizes[i] = compress_grain(s, w->z, s->pend[i].grain, s->pend[i].buf,
                                 b->keep_zero, s->batch + (size_t)i * b->slot,
                                 b->slot);
  }
  return NULL;
}

/* Threads and codecs, made on first use, and the write batch buffer: the
 * disk's settings (vmdk_create_options threads / compression_level), by
 * default one thread per online CPU at zlib's default level. */
static int prepare_threads(struct extent *e, struct stream *s) {
  if (s->threads)
    return 0;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned n = e->disk->threads ? e->disk->threads
               : cpus > 0       ? (unsigned)cpus
                                : 1;
  s->threads = n > MAX_THREADS ? MAX_THREADS : n;
  int level = e->disk->compression_level ? e->disk->compression_level
                                         : STREAM_LEVEL;
  for (unsigned t = 0; t < s->threads; t++)
    if (!(s->codecs[t] = codec_new(level))) {
      s->threads = 0;
      return -1;
    }
  return 0;
}

static int prepare_writers(struct extent *e, struct stream *s) {
  if (s->batch)
    return 0;
  if (prepare_threads(e, s) != 0)
    return -1;
  s->batch = malloc((size_t)s->max_pend * s->cbuf_cap);
  if (!s->batch)
    return set_error(ENOMEM, "%s: out of memory for compression", s->f->path);
  return 0;
}

static int cmp_pending(const void *a, const void *b) {
  const struct pending *x = a, *y = b;
  return x->grain < y->grain ? -1 : x->grain > y->grain;
}

/* Write out every pending grain (rules 1 and 2): sorted, compressed on
 * s->threads threads, packed in order and written with one pwrite at the
 * end of the data; the index changes only after the write succeeded. */
static int emit_pending(struct extent *e, struct stream *s) {
  if (s->n_pend == 0)
    return 0;
  if (!s->data_end && find_data_end(s) != 0)
    return -1;
  qsort(s->pend, s->n_pend, sizeof *s->pend, cmp_pending);
  struct batch b = {s, disk_has_backing(e->disk), s->cbuf_cap, NULL, 0};
  b.sizes = calloc(s->n_pend, sizeof *b.sizes);
  if (!b.sizes)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  if (prepare_writers(e, s) != 0) {
    free(b.sizes);
    return -1;
  }
  unsigned nt = s->threads < s->n_pend ? s->threads : s->n_pend;
  pthread_t tid[MAX_THREADS];
  struct worker w[MAX_THREADS];
  unsigned started = 0;
  for (unsigned t = 0; t < nt; t++)
    w[t] = (struct worker){&b, s->codecs[t]};
  for (unsigned t = 1; t < nt; t++) {
    if (pthread_create(&tid[t], NULL, compress_worker, &w[t]) != 0)
      break; /* fewer threads: the others take its share */
    started = t;
  }
  compress_worker(&w[0]);
  for (unsigned t = 1; t <= started; t++)
    pthread_join(tid[t], NULL);

  int r = 0;
  size_t pos = 0;
  for (uint32_t i = 0; r == 0 && i < s->n_pend; i++) {
    if (b.sizes[i] < 0) {
      r = set_error(EIO, "%s: compressing grain %" PRIu64 " failed",
                    s->f->path, s->pend[i].grain);
    } else if (b.sizes[i] > 0) {
      memmove(s->batch + pos, s->batch + (size_t)i * b.slot,
              (size_t)b.sizes[i]);
      pos += (size_t)b.sizes[i];
    }
  }
  if (r == 0 && (s->data_end + pos) / SECTOR > UINT32_MAX)
    r = set_error(ENOSPC, "%s: the stream is full: grain markers past "
                          "2 TiB cannot be addressed (32-bit sectors)",
                  s->f->path);
  if (r == 0 && pos && s->f->size > s->data_end) /* rule 1 */
    r = vf_truncate(s->f, s->data_end);
  if (r == 0 && pos)
    r = vf_pwrite(s->f, s->batch, pos, s->data_end);
  if (r == 0) {
    uint64_t sec = s->data_end / SECTOR;
    for (uint32_t i = 0; r == 0 && i < s->n_pend; i++)
      if (b.sizes[i] > 0) {
        r = set_grain_sector(s, s->pend[i].grain, (uint32_t)sec);
        sec += (uint64_t)b.sizes[i] / SECTOR;
      }
    s->data_end += pos;
    s->changed |= pos > 0;
  }
  free(b.sizes);
  if (r == 0) {
    for (uint32_t i = 0; i < s->n_pend; i++)
      free(s->pend[i].buf);
    s->n_pend = 0;
  }
  return r;
}

static int write_metadata(struct stream *s);

/* After an append failed part-way (rule 1 had cut the old trailing
 * metadata): put the metadata of the grains the index holds -- the ones
 * that landed -- back after them, so that the stream stays whole and reads
 * as before the failed append (or with the grains that did land).  The
 * pending grains stay pending for a retry.  Best effort: on a disk that
 * stays full this fails too, and the stream is left truncated, which
 * opens refuse and VMDK_OPEN_SALVAGE reads.  Returns -1 with the first
 * error kept. */
static int keep_whole(struct stream *s) {
  char msg[1024];
  int err = vmdk_get_errno();
  snprintf(msg, sizeof msg, "%s", vmdk_get_error());
  if (s->data_end && write_metadata(s) == 0 && vf_sync(s->f) == 0)
    s->changed = false;
  return set_error(err ? err : EIO, "%s", msg);
}

static int already_written(struct stream *s, uint64_t g) {
  return set_error(EROFS, "%s: grain %" PRIu64 " (bytes %" PRIu64 "..%" PRIu64
                          ") is already in the stream; streamOptimized grains "
                          "cannot be rewritten (convert the image to "
                          "monolithicSparse to change it)",
                   s->f->path, g, g * s->grain_bytes,
                   g * s->grain_bytes + grain_len(s, g) - 1);
}

/* The pending buffer of grain G, made (from the backing) if new. */
static int pending_grain(struct extent *e, struct stream *s, uint64_t g,
                         struct pending **out) {
  struct pending *p = find_pending(s, g);
  if (!p) {
    if (s->n_pend == s->max_pend && emit_pending(e, s) != 0)
      return keep_whole(s);
    uint8_t *buf = malloc(s->grain_bytes);
    if (!buf)
      return set_error(ENOMEM, "%s: out of memory", s->f->path);
    size_t len = (size_t)grain_len(s, g);
    if (disk_read_backing(e->disk, buf, len,
                          e->virt_start + g * s->grain_bytes) != 0) {
      free(buf);
      return -1;
    }
    memset(buf + len, 0, s->grain_bytes - len); /* the last grain's pad */
    p = &s->pend[s->n_pend++];
    *p = (struct pending){g, buf};
  }
  *out = p;
  return 0;
}

/* ---- ops ------------------------------------------------------------------------ */

/* Reading many whole grains: their markers are usually contiguous in the
 * file (grains are written in order), so one pread fetches them all and
 * the threads inflate them straight into the caller's buffer. */
#define READ_BATCH 64u

struct read_batch {
  struct stream *s;
  const uint8_t *span;   /* file bytes from span_sector on */
  uint64_t span_sector;
  size_t span_len;
  uint64_t g0;           /* first grain */
  uint32_t n;            /* grains */
  uint8_t *out;          /* n * grain_bytes */
  int *ok;               /* per grain: 1 inflated, 0 not */
  unsigned next;
};

struct read_worker {
  struct read_batch *b;
  struct codec *z;
};

static void *inflate_worker(void *arg) {
  struct read_worker *w = arg;
  struct read_batch *b = w->b;
  struct stream *s = b->s;
  for (;;) {
    unsigned i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
    if (i >= b->n)
      break;
    uint64_t g = b->g0 + i;
    uint64_t rel = ((uint64_t)grain_sector(s, g) - b->span_sector) * SECTOR;
    const uint8_t *m = b->span + rel;
    uint64_t avail = b->span_len - rel;
    uint32_t size = le32(m + 8);
    size_t got = 0;
    b->ok[i] = le64(m) == g * s->h.grain && size && 12 + (uint64_t)size <= avail &&
               codec_decompress(w->z, m + 12, size, b->out + i * s->grain_bytes,
                                s->grain_bytes, &got) == 0 &&
               got == s->grain_bytes;
  }
  return NULL;
}

/* Inflate whole grains G0..G0+N-1 (present, not pending, not the last
 * partial grain) into OUT.  Returns 0, or -1 with the error of the first
 * grain that failed (found again by inflate_grain for its message). */
static int inflate_many(struct extent *e, struct stream *s, uint64_t g0,
                        uint32_t n, uint8_t *out) {
  uint64_t lo = UINT64_MAX, hi = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t sec = grain_sector(s, g0 + i);
    lo = sec < lo ? sec : lo;
    hi = sec > hi ? sec : hi;
  }
  uint64_t file_end = s->f->size;
  uint64_t span = (hi - lo) * SECTOR + s->cbuf_cap;
  if (lo * SECTOR >= file_end || span > (uint64_t)2 * n * s->cbuf_cap ||
      prepare_threads(e, s) != 0)
    return 1; /* scattered grains (or no threads): one at a time */
  if (span > file_end - lo * SECTOR)
    span = file_end - lo * SECTOR;
  uint8_t *buf = malloc(span);
  int ok[READ_BATCH];
  if (!buf)
    return 1;
  if (vf_pread(s->f, buf, span, lo * SECTOR) != 0) {
    free(buf);
    return -1;
  }
  struct read_batch b = {s, buf, lo, span, g0, n, out, ok, 0};
  unsigned nt = s->threads < n ? s->threads : n;
  pthread_t tid[MAX_THREADS];
  struct read_worker w[MAX_THREADS];
  unsigned started = 0;
  for (unsigned t = 0; t < nt; t++)
    w[t] = (struct read_worker){&b, s->codecs[t]};
  for (unsigned t = 1; t < nt; t++) {
    if (pthread_create(&tid[t], NULL, inflate_worker, &w[t]) != 0)
      break;
    started = t;
  }
  inflate_worker(&w[0]);
  for (unsigned t = 1; t <= started; t++)
    pthread_join(tid[t], NULL);
  free(buf);
  for (uint32_t i = 0; i < n; i++)
    if (!ok[i]) { /* the serial path says exactly what is wrong */
      uint64_t g = g0 + i;
      if (inflate_grain(s, g, grain_sector(s, g)) != 0)
        return -1;
      memcpy(out + i * s->grain_bytes, s->gbuf, s->grain_bytes);
    }
  return 0;
}

static int stream_pread(struct extent *e, void *buf, size_t len,
                        uint64_t off) {
  struct stream *s = e->priv;
  uint8_t *p = buf;
  while (len > 0) {
    /* A run of at least two whole grains in the file: in parallel. */
    uint64_t g0 = off / s->grain_bytes;
    uint32_t run = 0;
    if (off % s->grain_bytes == 0)
      while (run < READ_BATCH && (uint64_t)(run + 1) * s->grain_bytes <= len &&
             grain_len(s, g0 + run) == s->grain_bytes &&
             grain_sector(s, g0 + run) && !find_pending(s, g0 + run))
        run++;
    if (run >= 2) {
      int r = inflate_many(e, s, g0, run, p);
      if (r < 0)
        return -1;
      if (r == 0) {
        size_t n = (size_t)run * s->grain_bytes;
        p += n;
        off += n;
        len -= n;
        continue;
      }
    }
    uint64_t g = off / s->grain_bytes, in = off % s->grain_bytes;
    size_t n = s->grain_bytes - in < len ? (size_t)(s->grain_bytes - in) : len;
    struct pending *pg = find_pending(s, g);
    uint32_t sector = grain_sector(s, g);
    if (pg) {
      memcpy(p, pg->buf + in, n);
    } else if (sector) {
      if (inflate_grain(s, g, sector) != 0)
        return -1;
      memcpy(p, s->gbuf + in, n);
    } else if (disk_read_backing(e->disk, p, n, e->virt_start + off) != 0) {
      return -1;
    }
    p += n;
    off += n;
    len -= n;
  }
  return 0;
}

static int stream_check_write(struct extent *e, uint64_t len, uint64_t off) {
  struct stream *s = e->priv;
  /* Where new grains go, found (and checked) before anything is written. */
  if (!s->data_end && find_data_end(s) != 0)
    return -1;
  for (uint64_t g = off / s->grain_bytes; len && g * s->grain_bytes < off + len;
       g++)
    if (grain_sector(s, g))
      return already_written(s, g);
  return 0;
}

static int stream_pwrite(struct extent *e, const void *buf, size_t len,
                         uint64_t off) {
  struct stream *s = e->priv;
  const uint8_t *p = buf;
  while (len > 0) {
    uint64_t g = off / s->grain_bytes, in = off % s->grain_bytes;
    uint64_t glen = grain_len(s, g);
    size_t n = glen - in < len ? (size_t)(glen - in) : len;
    if (grain_sector(s, g))
      return already_written(s, g);
    struct pending *pg = NULL;
    if (pending_grain(e, s, g, &pg) != 0)
      return -1;
    memcpy(pg->buf + in, p, n);
    p += n;
    off += n;
    len -= n;
  }
  return 0;
}

/* Zeros over a grain already in the file are fine only where it already
 * is zeros: checked for the whole range before anything changes. */
static int stream_check_zero(struct extent *e, uint64_t len, uint64_t off) {
  struct stream *s = e->priv;
  while (len > 0) {
    uint64_t g = off / s->grain_bytes, in = off % s->grain_bytes;
    uint64_t glen = grain_len(s, g);
    uint64_t n = glen - in < len ? glen - in : len;
    uint32_t sector = grain_sector(s, g);
    if (sector) {
      if (inflate_grain(s, g, sector) != 0)
        return -1;
      if (!all_zero(s->gbuf + in, (size_t)n))
        return already_written(s, g);
    }
    off += n;
    len -= n;
  }
  return 0;
}

static int stream_zero(struct extent *e, uint64_t len, uint64_t off) {
  struct stream *s = e->priv;
  bool backing = disk_has_backing(e->disk);
  while (len > 0) {
    uint64_t g = off / s->grain_bytes, in = off % s->grain_bytes;
    uint64_t glen = grain_len(s, g);
    uint64_t n = glen - in < len ? glen - in : len;
    struct pending *pg = find_pending(s, g);
    if (grain_sector(s, g)) {
      /* Zeros over a written grain are fine only if it already is zeros. */
      if (inflate_grain(s, g, grain_sector(s, g)) != 0)
        return -1;
      if (!all_zero(s->gbuf + in, (size_t)n))
        return already_written(s, g);
    } else if (pg || backing) {
      if (!pg && pending_grain(e, s, g, &pg) != 0)
        return -1;
      memset(pg->buf + in, 0, (size_t)n);
    }
    off += n;
    len -= n;
  }
  return 0;
}

static int stream_status(struct extent *e, uint64_t off, uint64_t len,
                         struct vmdk_run *run) {
  struct stream *s = e->priv;
  run->length = 0;
  run->file_offset = -1;
  run->file = NULL;
  bool first = true;
  while (len > 0) {
    uint64_t g = off / s->grain_bytes, in = off % s->grain_bytes;
    uint64_t n = s->grain_bytes - in < len ? s->grain_bytes - in : len;
    unsigned flags;
    if (!s->gts[g / s->gtes] && !s->n_pend) { /* a whole empty table */
      uint64_t end = (g / s->gtes + 1) * s->gtes * s->grain_bytes;
      n = end - off < len ? end - off : len;
      flags = 0;
    } else {
      flags = grain_sector(s, g) || find_pending(s, g)
                  ? VMDK_RUN_PRESENT | VMDK_RUN_DATA
                  : 0;
    }
    if (first)
      run->flags = flags;
    else if (flags != run->flags)
      break;
    first = false;
    run->length += n;
    off += n;
    len -= n;
  }
  if (run->flags)
    run->file = s->f->path;
  return 0;
}

/* Buffered metadata writer: appends at *POS through a chunk buffer. */
struct meta_writer {
  struct vfile *f;
  uint8_t *buf;
  size_t used;
  uint64_t start; /* file offset of buf[0] */
};

static int mw_flush(struct meta_writer *w) {
  if (w->used && vf_pwrite(w->f, w->buf, w->used, w->start) != 0)
    return -1;
  w->start += w->used;
  w->used = 0;
  return 0;
}

/* Append a marker and then N bytes of payload padded to sectors; returns
 * the sector the payload starts at in *SECTOR. */
static int mw_marker(struct meta_writer *w, uint64_t val, uint32_t type,
                     const uint8_t *payload, size_t n, uint64_t *sector) {
  size_t padded = (size_t)div_round_up(n, SECTOR) * SECTOR;
  if (w->used && w->used + SECTOR + padded > META_CHUNK && mw_flush(w) != 0)
    return -1;
  uint8_t *m = w->buf + w->used;
  memset(m, 0, SECTOR + padded);
  put_le64(m, val);
  put_le32(m + 12, type);
  if (n)
    memcpy(m + SECTOR, payload, n);
  if (sector)
    *sector = (w->start + w->used) / SECTOR + 1;
  w->used += SECTOR + padded;
  return 0;
}

/* Rule 3: tables, directory, footer, EOS after the last grain. */
static int write_metadata(struct stream *s) {
  /* Room for a chunk plus the largest single item, the GD. */
  struct meta_writer w = {
      s->f, malloc(META_CHUNK + (s->gd_sectors + 2) * SECTOR), 0, s->data_end};
  size_t gd_bytes = (size_t)s->n_gdes * 4;
  uint8_t *gd = calloc(1, gd_bytes + 4);
  uint8_t *gt = malloc(s->gtes * 4);
  int r = -1;
  if (!w.buf || !gd || !gt) {
    set_error(ENOMEM, "%s: out of memory", s->f->path);
    goto out;
  }
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++) {
    if (!s->gts[gdi])
      continue;
    for (uint32_t i = 0; i < s->gtes; i++)
      put_le32(gt + 4 * i, s->gts[gdi][i]);
    uint64_t sec;
    if (mw_marker(&w, s->gt_sectors, MARKER_GT, gt, s->gtes * 4, &sec) != 0)
      goto out;
    put_le32(gd + 4 * gdi, (uint32_t)sec);
  }
  uint64_t gd_sec;
  if (mw_marker(&w, s->gd_sectors, MARKER_GD, gd, gd_bytes, &gd_sec) != 0)
    goto out;
  struct kdmv_header h = s->h;
  h.version = 3;
  h.flags = KDMV_FLAG_NL_DETECT | KDMV_FLAG_COMPRESSED | KDMV_FLAG_MARKERS;
  h.compress = 1;
  h.rgd_offset = 0;
  h.gd_offset = gd_sec;
  uint8_t sector[SECTOR];
  kdmv_encode_header(&h, sector);
  if (mw_marker(&w, 1, MARKER_FOOTER, sector, SECTOR, NULL) != 0 ||
      mw_marker(&w, 0, MARKER_EOS, NULL, 0, NULL) != 0)
    goto out;
  /* The EOS marker is a single zero sector: drop the payload sector the
   * marker writer does not add for n == 0 (nothing to drop). */
  if (mw_flush(&w) != 0)
    goto out;
  if (s->f->size > w.start && vf_truncate(s->f, w.start) != 0)
    goto out;
  /* The header: VMware's layout from now on. */
  h.gd_offset = KDMV_GD_AT_END;
  kdmv_encode_header(&h, sector);
  if (vf_pwrite(s->f, sector, SECTOR, 0) != 0)
    goto out;
  h.gd_offset = gd_sec;
  s->h = h;
  r = 0;
out:
  free(w.buf);
  free(gd);
  free(gt);
  return r;
}

static int stream_flush(struct extent *e) {
  struct stream *s = e->priv;
  if (emit_pending(e, s) != 0)
    return keep_whole(s);
  if (!s->changed)
    return vf_sync(s->f);
  if (vf_sync(s->f) != 0 || write_metadata(s) != 0 || vf_sync(s->f) != 0)
    return keep_whole(s);
  s->changed = false;
  s->state = ST_COMPLETE; /* the metadata was written whole */
  free(s->damage);
  s->damage = NULL;
  return 0;
}

static void stream_free(struct stream *s) {
  if (!s)
    return;
  if (s->gts)
    for (uint32_t i = 0; i < s->n_gdes; i++)
      free(s->gts[i]);
  free(s->gts);
  for (uint32_t i = 0; i < s->n_pend; i++)
    free(s->pend[i].buf);
  free(s->pend);
  codec_free(s->codec);
  for (unsigned t = 0; t < MAX_THREADS; t++)
    codec_free(s->codecs[t]);
  free(s->batch);
  free(s->cbuf);
  free(s->gbuf);
  free(s->damage);
  free(s);
}

static int stream_close(struct extent *e) {
  struct stream *s = e->priv;
  int r = vf_close(s->f);
  stream_free(s);
  return r;
}

static void stream_info(struct extent *e, struct vmdk_extent_info *info) {
  struct stream *s = e->priv;
  info->grain_bytes = s->grain_bytes;
  info->version = s->h.version;
  info->compressed = 1;
  info->stream = state_names[s->state];
  info->stream_damage = s->state == ST_COMPLETE ? NULL : s->damage;
  info->stream_grains = s->n_present;
}

static uint64_t stream_allocated(struct extent *e) {
  struct stream *s = e->priv;
  return vf_allocated(s->f);
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static int stream_check(struct extent *e, struct check_ctx *c) {
  struct stream *s = e->priv;
  const char *path = s->f->path;
  if (s->f->writable && stream_flush(e) != 0)
    return -1;
  if (s->state != ST_COMPLETE)
    check_report(c, VMDK_PROBLEM_CORRUPT, 0, "%s: %s", path, s->damage);
  /* Every grain: its marker, its size, and that it inflates. */
  uint64_t n = 0;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    if (s->gts[gdi])
      for (uint32_t i = 0; i < s->gtes; i++)
        n += s->gts[gdi][i] != 0;
  uint32_t *secs = malloc((n + 1) * sizeof *secs);
  if (!secs)
    return set_error(ENOMEM, "%s: out of memory", path);
  size_t k = 0;
  for (uint64_t g = 0; g < s->n_grains; g++) {
    if (!s->gts[g / s->gtes]) {
      g = (g / s->gtes + 1) * s->gtes - 1;
      continue;
    }
    uint32_t sec = grain_sector(s, g);
    if (!sec)
      continue;
    c->res->allocated_grains++;
    secs[k++] = sec;
    if (inflate_grain(s, g, sec) != 0)
      check_report(c, VMDK_PROBLEM_CORRUPT, 0, "%s", vmdk_get_error());
  }
  qsort(secs, k, sizeof *secs, cmp_u32);
  for (size_t i = 1; i < k; i++)
    if (secs[i] == secs[i - 1])
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: two grain table entries point at the grain marker at "
                   "sector %" PRIu32,
                   path, secs[i]);
  free(secs);
  c->res->total_grains += s->n_grains;
  return 0;
}

static int stream_write_descriptor(struct extent *e, const char *text,
                                   size_t len) {
  struct stream *s = e->priv;
  return kdmv_write_descriptor(s->f, &s->h, text, len);
}

static const struct extent_ops stream_ops = {
    .name = "stream",
    .pread = stream_pread,
    .pwrite = stream_pwrite,
    .zero = stream_zero,
    .status = stream_status,
    .flush = stream_flush,
    .close = stream_close,
    .check = stream_check,
    .info = stream_info,
    .allocated = stream_allocated,
    .check_write = stream_check_write,
    .check_zero = stream_check_zero,
    .write_descriptor = stream_write_descriptor,
};

/* ---- open and create ------------------------------------------------------ */

/* The footer at SECTOR (the sector after its marker), when it is valid: a
 * copy of the header with the real GD offset.  Leaves the error as it was. */
static bool decode_footer(struct stream *s, uint64_t sector,
                          struct kdmv_header *footer) {
  uint8_t b[SECTOR];
  char saved[1024];
  int saved_errno = vmdk_get_errno();
  snprintf(saved, sizeof saved, "%s", vmdk_get_error());
  bool ok = vf_pread(s->f, b, SECTOR, sector * SECTOR) == 0 &&
            kdmv_decode_header(b, s->f->path, s->f->size, footer) == 0 &&
            footer->gd_offset != KDMV_GD_AT_END &&
            (footer->flags & KDMV_FLAG_COMPRESSED) &&
            footer->capacity == s->h.capacity && footer->grain == s->h.grain &&
            footer->gtes_per_gt == s->h.gtes_per_gt;
  if (!ok)
    set_error(saved_errno, "%s", saved);
  return ok;
}

/* The footer of a VMware-layout stream where it belongs: its marker and
 * the footer in the two sectors before the last, an EOS marker. */
static bool read_footer(struct stream *s, struct kdmv_header *footer) {
  uint64_t end = s->f->size / SECTOR;
  uint8_t m[16], eos[16];
  if (s->f->size % SECTOR || end < 3 ||
      vf_pread(s->f, m, sizeof m, (end - 3) * SECTOR) != 0 ||
      vf_pread(s->f, eos, sizeof eos, (end - 1) * SECTOR) != 0)
    return false;
  if (le32(m + 8) != 0 || le32(m + 12) != MARKER_FOOTER || !is_eos(eos))
    return false;
  return decode_footer(s, end - 2, footer);
}

/* s->damage from a format; the state is set by the caller. */
static int set_damage(struct stream *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int set_damage(struct stream *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  free(s->damage);
  s->damage = NULL;
  int n = vasprintf(&s->damage, fmt, ap);
  va_end(ap);
  if (n < 0) {
    s->damage = NULL;
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  }
  return 0;
}

/* "the grain at sector S (LBA L) is cut after A of its B bytes; " for
 * what the end of the file cuts, else "". */
static void cut_clause(char *buf, size_t cap, const struct scan *sc) {
  buf[0] = '\0';
  if (!sc->cut_what)
    return;
  if (strcmp(sc->cut_what, "grain") == 0)
    snprintf(buf, cap,
             "the grain at sector %" PRIu64 " (LBA %" PRIu64
             ") is cut after %" PRIu64 " of its %" PRIu64 " bytes; ",
             sc->cut_sector, sc->cut_lba, sc->cut_have, sc->cut_need);
  else
    snprintf(buf, cap,
             "the %s (marker at sector %" PRIu64 ") is cut after %" PRIu64
             " of its %" PRIu64 " bytes; ",
             sc->cut_what, sc->cut_sector, sc->cut_have, sc->cut_need);
}

/* "; 13 grains recovered (832 KiB of the 30 MiB disk)" */
static void recovered_clause(char *buf, size_t cap, const struct stream *s) {
  uint64_t bytes;
  uint64_t n = count_present(s, &bytes);
  char b[32];
  snprintf(b, sizeof b, "%s", human_size(bytes));
  snprintf(buf, cap, "; %" PRIu64 " grain%s recovered (%s of the %s disk)", n,
           n == 1 ? "" : "s", b, human_size(s->h.capacity * SECTOR));
}

/* VMware's layout without a footer at the end: the index from the
 * markers.  A footer found whole on the way (an EOS marker missing or cut
 * after it) still gives the index. */
static int index_by_scan(struct stream *s) {
  uint64_t start = s->h.overhead;
  if (start == 0)
    start = s->h.desc_offset + s->h.desc_size + 1;
  struct scan sc;
  if (scan_markers(s, start, &sc) != 0)
    return -1;
  uint64_t size = s->f->size;
  struct kdmv_header footer;
  if (sc.footer && decode_footer(s, sc.footer, &footer)) {
    clear_index(s);
    s->h = footer;
    if (load_tables(s, NULL) != 0)
      return -1;
    if (sc.eos) {
      s->state = ST_COMPLETE; /* (followed by other bytes: not ours) */
      return 0;
    }
    s->state = ST_NO_EOS;
    char tail[64] = "with its footer";
    if (size > (sc.footer + 1) * SECTOR)
      snprintf(tail, sizeof tail, "%" PRIu64 " bytes after its footer",
               size - (sc.footer + 1) * SECTOR);
    return set_damage(s, "stream has no end-of-stream marker: the file (%" PRIu64
                         " bytes) ends %s; the footer and grain directory "
                         "are intact: all %" PRIu64 " grains are there",
                      size, tail, count_present(s, NULL));
  }
  char cut[256], rec[128];
  cut_clause(cut, sizeof cut, &sc);
  if (!sc.cut_what && start * SECTOR >= size)
    snprintf(cut, sizeof cut,
             "the file ends before the first grain (sector %" PRIu64 "); ",
             start);
  recovered_clause(rec, sizeof rec, s);
  s->state = ST_TRUNCATED;
  if (sc.eos)
    return set_damage(s, "stream is damaged: no footer before its "
                         "end-of-stream marker (sector %" PRIu64 ")%s",
                      sc.end, rec);
  return set_damage(s, "stream is truncated after %" PRIu64 " bytes: %s%s%s",
                    size, cut,
                    sc.footer ? "no valid footer and no end-of-stream marker"
                    : sc.cut_what && strcmp(sc.cut_what, "footer") == 0
                        ? "no end-of-stream marker"
                    : sc.gd ? "no footer or end-of-stream marker"
                              : "no grain directory, footer or end-of-stream "
                                "marker",
                    rec);
}

/* QEMU's layout (the GD and tables at the front, in the header): the index
 * from the tables.  Nothing marks the end (QEMU writes no EOS marker), so
 * what the tables list is the whole stream: a truncated one has entries
 * past the end of the file, its last grain cut, or grains after the last
 * one listed (a writer that did not finish: an append by vmdkit, QEMU
 * killed before it updated a table); those found whole are added from the
 * markers.  A writer killed between two grains cannot be told from one
 * that finished. */
static int index_from_front(struct stream *s) {
  struct lost lost = {0};
  if (load_tables(s, &lost) != 0)
    return -1;
  uint64_t size = s->f->size, listed = count_present(s, NULL);
  uint64_t last = 0, last_g = 0;
  for (uint32_t gdi = 0; gdi < s->n_gdes; gdi++)
    if (s->gts[gdi])
      for (uint32_t i = 0; i < s->gtes; i++)
        if (s->gts[gdi][i] > last) {
          last = s->gts[gdi][i];
          last_g = (uint64_t)gdi * s->gtes + i;
        }
  struct scan cutg = {0}, sc = {0};
  uint64_t after; /* the sector after the last grain listed */
  if (last) {
    uint8_t m[12];
    uint64_t have = size - last * SECTOR; /* > 12: last < file sectors */
    if (vf_pread(s->f, m, sizeof m, last * SECTOR) != 0)
      return -1;
    uint64_t need = 12 + (uint64_t)le32(m + 8);
    if (need > have) { /* cut by the end of the file: left out */
      cutg = (struct scan){.cut_what = "grain", .cut_sector = last,
                           .cut_lba = le64(m), .cut_have = have,
                           .cut_need = need};
      s->gts[last_g / s->gtes][last_g % s->gtes] = 0;
      s->n_present--;
    }
    after = last + div_round_up(need, SECTOR);
  } else {
    after = s->h.overhead > s->meta_end ? s->h.overhead : s->meta_end;
  }
  if (!cutg.cut_what && after * SECTOR < size &&
      scan_markers(s, after, &sc) != 0)
    return -1;
  bool unlisted = sc.grains || sc.cut_what;
  if ((lost.entries || lost.tables) && sc.eos && !unlisted) {
    /* Not cut off: entries that point outside the file are corrupt. */
    clear_index(s);
    return load_tables(s, NULL);
  }
  if (lost.entries || lost.tables || cutg.cut_what || unlisted) {
    char past[160] = "", tables[96] = "", cut1[256], cut2[256], more[128] = "",
         rec[128];
    if (lost.entries)
      snprintf(past, sizeof past,
               "%" PRIu64 " of the %" PRIu64 " grains its grain tables list "
               "lie past the end of the file; ",
               lost.entries, listed + lost.entries);
    if (lost.tables)
      snprintf(tables, sizeof tables,
               "%" PRIu32 " of its grain tables lie%s past the end of the "
               "file; ",
               lost.tables, lost.tables == 1 ? "s" : "");
    if (sc.grains)
      snprintf(more, sizeof more,
               "%" PRIu64 " grains follow the last one its tables list "
               "(no table lists them); ",
               sc.grains);
    cut_clause(cut1, sizeof cut1, &cutg);
    cut_clause(cut2, sizeof cut2, &sc);
    recovered_clause(rec, sizeof rec, s);
    char what[1024];
    snprintf(what, sizeof what, "%s%s%s%s%s", past, tables, cut1, more, cut2);
    what[strlen(what) - 2] = '\0'; /* the last clause's "; " */
    s->state = ST_TRUNCATED;
    return set_damage(s, "stream is truncated after %" PRIu64 " bytes: %s%s",
                      size, what, rec);
  }
  /* (QEMU writes no end-of-stream marker: none is required here.) */
  s->state = ST_COMPLETE;
  return 0;
}

static int stream_setup(struct stream *s) {
  const struct kdmv_header *h = &s->h;
  if (h->grain > MAX_STREAM_GRAIN_SECTORS)
    return set_error(EINVAL, "%s: stream grain size of %" PRIu64
                             " sectors is larger than %u",
                     s->f->path, h->grain, MAX_STREAM_GRAIN_SECTORS);
  s->grain_bytes = h->grain * SECTOR;
  s->gtes = h->gtes_per_gt;
  s->n_grains = div_round_up(h->capacity, h->grain);
  s->n_gdes = (uint32_t)div_round_up(s->n_grains, s->gtes);
  s->gt_sectors = div_round_up((uint64_t)s->gtes * 4, SECTOR);
  s->gd_sectors = div_round_up((uint64_t)s->n_gdes * 4, SECTOR);
  s->gts = calloc(s->n_gdes + 1, sizeof *s->gts);
  s->codec = codec_new(STREAM_LEVEL);
  s->cbuf_cap = codec_bound(s->grain_bytes) + 2 * SECTOR;
  if (s->cbuf_cap < 2 * s->grain_bytes + 12)
    s->cbuf_cap = 2 * s->grain_bytes + 12;
  s->cbuf = malloc(s->cbuf_cap);
  s->gbuf = malloc(s->grain_bytes);
  s->gbuf_grain = UINT64_MAX;
  s->max_pend = (uint32_t)(PENDING_BYTES / s->grain_bytes);
  if (s->max_pend < 4)
    s->max_pend = 4;
  s->pend = calloc(s->max_pend, sizeof *s->pend);
  if (!s->gts || !s->codec || !s->cbuf || !s->gbuf || !s->pend)
    return set_error(ENOMEM, "%s: out of memory", s->f->path);
  return 0;
}

int stream_open(struct extent *e, struct vfile *f, const uint8_t hdr[SECTOR]) {
  struct stream *s = calloc(1, sizeof *s);
  if (!s) {
    vf_close(f);
    return set_error(ENOMEM, "out of memory");
  }
  s->f = f;
  if (kdmv_decode_header(hdr, f->path, f->size, &s->h) != 0)
    goto fail;
  if (e->size != s->h.capacity * SECTOR) {
    set_error(EINVAL, "%s: the descriptor gives the extent %" PRIu64
                      " sectors but its header says %" PRIu64,
              f->path, e->size / SECTOR, s->h.capacity);
    goto fail;
  }
  struct kdmv_header footer;
  bool at_end = s->h.gd_offset == KDMV_GD_AT_END;
  bool have_footer = at_end && read_footer(s, &footer);
  s->meta_end = s->h.desc_offset + s->h.desc_size + 1; /* header: sector 0 */
  if (have_footer)
    s->h = footer;
  if (s->h.desc_offset + s->h.desc_size + 1 > s->meta_end)
    s->meta_end = s->h.desc_offset + s->h.desc_size + 1;
  if (stream_setup(s) != 0)
    goto fail;
  if ((have_footer ? load_tables(s, NULL)
       : at_end    ? index_by_scan(s)
                   : index_from_front(s)) != 0)
    goto fail;
  /* A truncated stream: refused, unless a salvaging read-only open asked
   * for what is left.  Appending to it would bury what is missing. */
  if (s->state == ST_TRUNCATED && f->writable) {
    set_error(EROFS, "%s: %s; a damaged stream cannot be opened for writing",
              f->path, s->damage);
    goto fail;
  }
  if (s->state == ST_TRUNCATED && !(e->disk->flags & VMDK_OPEN_SALVAGE)) {
    set_error(ENODATA, "%s: %s", f->path, s->damage);
    goto fail;
  }
  e->ops = &stream_ops;
  e->priv = s;
  return 0;
fail:
  vf_close(s->f);
  stream_free(s);
  return -1;
}

int stream_create(struct vfile *f, uint64_t capacity_sectors,
                  uint32_t grain_sectors, const char *descriptor) {
  if (!is_power_of_2(grain_sectors) || grain_sectors < 8 ||
      grain_sectors > MAX_STREAM_GRAIN_SECTORS)
    return set_error(EINVAL, "%s: stream grain size of %" PRIu32
                             " sectors is not a power of two from 8 to %u",
                     f->path, grain_sectors, MAX_STREAM_GRAIN_SECTORS);
  size_t desc_len = descriptor ? strlen(descriptor) : 0;
  uint64_t desc_sectors = div_round_up(desc_len + 1024, SECTOR);
  if (desc_sectors < 20)
    desc_sectors = 20;
  uint64_t grains = div_round_up(capacity_sectors, grain_sectors);
  uint64_t gds = div_round_up(div_round_up(grains, 512) * 4, SECTOR);
  /* Data and metadata must stay below 2^32 sectors even if nothing
   * compresses. */
  if (capacity_sectors > UINT32_MAX ||
      grains * (grain_sectors + 1) + gds + 1024 > UINT32_MAX)
    return set_error(EFBIG, "%s: a stream of %s cannot be addressed with "
                            "32-bit sector numbers once full",
                     f->path, human_size(capacity_sectors * SECTOR));
  struct stream *s = calloc(1, sizeof *s);
  if (!s)
    return set_error(ENOMEM, "out of memory");
  s->f = f;
  s->h = (struct kdmv_header){
      .version = 3,
      .flags = KDMV_FLAG_NL_DETECT | KDMV_FLAG_COMPRESSED | KDMV_FLAG_MARKERS,
      .capacity = capacity_sectors,
      .grain = grain_sectors,
      .desc_offset = 1,
      .desc_size = desc_sectors,
      .gtes_per_gt = 512,
      .gd_offset = KDMV_GD_AT_END,
      .overhead = div_round_up(1 + desc_sectors, grain_sectors) * grain_sectors,
      .compress = 1,
  };
  int r = stream_setup(s);
  size_t head = (size_t)(1 + desc_sectors) * SECTOR;
  uint8_t *buf = r == 0 ? calloc(1, head) : NULL;
  if (r == 0 && !buf)
    r = set_error(ENOMEM, "out of memory");
  if (r == 0) {
    kdmv_encode_header(&s->h, buf);
    if (desc_len)
      memcpy(buf + SECTOR, descriptor, desc_len);
    r = vf_pwrite(f, buf, head, 0);
  }
  free(buf);
  if (r == 0) {
    s->data_end = s->h.overhead * SECTOR;
    r = write_metadata(s);
  }
  s->f = NULL; /* the caller owns F */
  stream_free(s);
  return r;
}

void stream_explain_cut(const struct vfile *f, const uint8_t *head, size_t n) {
  if (n < 64 || f->size < 12 || le32(head) != KDMV_MAGIC ||
      !(le32(head + 8) & KDMV_FLAG_COMPRESSED))
    return;
  /* What must be there before the first grain, as far as the header's
   * fields are sane: the header, the descriptor, QEMU's directory. */
  uint64_t need = SECTOR, desc_offset = le64(head + 28),
           desc_size = le64(head + 36), grain = le64(head + 20),
           capacity = le64(head + 12), gd = le64(head + 56);
  uint32_t gtes = le32(head + 44);
  const char *what = "header";
  if (desc_offset && desc_offset < (1u << 20) && desc_size &&
      desc_size < (1u << 20) && (desc_offset + desc_size) * SECTOR > need) {
    need = (desc_offset + desc_size) * SECTOR;
    what = "header and descriptor";
  }
  if (gd != KDMV_GD_AT_END && gd && gd < (1u << 20) && is_power_of_2(grain) &&
      grain <= MAX_STREAM_GRAIN_SECTORS && gtes && gtes <= 65536 &&
      capacity <= (uint64_t)1 << 32) {
    uint64_t gd_end =
        (gd + div_round_up(div_round_up(capacity, grain * gtes) * 4, SECTOR)) *
        SECTOR;
    if (gd_end > need) {
      need = gd_end;
      what = desc_offset ? "header, descriptor and grain directory"
                         : "header and grain directory";
    }
  }
  if (f->size >= need)
    return; /* not cut there: the error stands */
  set_error(EINVAL, "%s: stream is truncated after %" PRIu64
                     " bytes, inside its %s (%" PRIu64
                     " bytes): no grain is left to recover",
            f->path, f->size, what, need);
}
