/* SPDX-License-Identifier: BSD-3-Clause */
/* Limits on every size read from a file (issue 6): each case is the
 * smallest file that shows one problem, refused (or checked) with the exact
 * error text, and every file involved is byte-for-byte and mtime-for-mtime
 * as it was afterwards.  Regressions (each was a real problem, fixed):
 *
 *  fifo-extent          an extent that is a FIFO blocked the open forever
 *  too-many-extents     "too many extents" named neither file nor line
 *  flat-offset-wraps    a FLAT extent's offset + size past 2^64 wrapped:
 *                       disk offset 1024 read file byte 512
 *  disk-over-2p63       a disk of 2^63 bytes (past off_t) was accepted
 *  many-keys            a descriptor of many "key=value" lines grew its
 *                       arrays one entry at a time (quadratic: minutes
 *                       under ASan); now grown geometrically, at most 65536
 *  check-shared-table   every directory entry pointing at one table made
 *  (sparse, cowd,        vmdk_check read the table once per entry and track
 *   sesparse)           entries x table grains (16 GiB of reads, OOM for
 *                       a 500 KiB file); each table is now read once
 *  stream-wide-tables   a stream of 65536-entry tables with one grain in
 *                       each took 512 times its size in memory
 *  stream-marker-size   a last grain marker of size 0xffffffff made the
 *                       next write land 4 GiB past the end of the file
 *  stream-overhead      overHead 2^55+1 wrapped (overHead 1 did directly)
 *                       and new grains overwrote the embedded descriptor
 *
 * Plus the limits the issue lists, which held already: a 50 MiB descriptor,
 * an extent of 2^60 sectors, a GD whose offset + size overflows, grain
 * 2^22, numGTEsPerGT 2^20, COWD numGDEntries 2^32-1, a chain of 200.
 */
#include "testlib.h"

#include <signal.h>

#include "internal.h"

/* ---- files before and after -------------------------------------------- */

#define MAX_FILES 4
struct snap {
  size_t n;
  const char *path[MAX_FILES];
  uint8_t *data[MAX_FILES];
  size_t len[MAX_FILES];
  struct timespec mtime[MAX_FILES];
};

static void snap_take(struct snap *s, const char *const *paths) {
  memset(s, 0, sizeof *s);
  for (; *paths && s->n < MAX_FILES; paths++, s->n++) {
    struct stat st;
    s->path[s->n] = *paths;
    s->data[s->n] = t_read_file(*paths, &s->len[s->n]);
    if (stat(*paths, &st) == 0)
      s->mtime[s->n] = st.st_mtim;
  }
}

/* Every file of S is as it was; frees S. */
static void snap_same(struct snap *s, const char *what) {
  for (size_t i = 0; i < s->n; i++) {
    size_t len = 0;
    uint8_t *now = t_read_file(s->path[i], &len);
    struct stat st = {0};
    stat(s->path[i], &st);
    CHECK(now && s->data[i] && len == s->len[i] &&
              memcmp(now, s->data[i], len) == 0,
          "%s: %s changed (%zu -> %zu bytes)", what, s->path[i], s->len[i],
          len);
    CHECK(st.st_mtim.tv_sec == s->mtime[i].tv_sec &&
              st.st_mtim.tv_nsec == s->mtime[i].tv_nsec,
          "%s: %s was written to (mtime changed)", what, s->path[i]);
    free(now);
    free(s->data[i]);
  }
  s->n = 0;
}

/* Opening IMAGE (read-only, then read-write) fails with exactly WANT and
 * changes none of FILES (NULL-terminated; IMAGE is always included). */
static void expect_open_error(const char *what, const char *image,
                              const char *want, const char *const *files) {
  const char *all[MAX_FILES + 1] = {image};
  for (size_t i = 0; files && files[i] && i + 1 < MAX_FILES; i++)
    all[i + 1] = files[i];
  static const unsigned modes[] = {0, VMDK_OPEN_RDWR};
  for (size_t m = 0; m < 2; m++) {
    struct snap s;
    snap_take(&s, all);
    struct vmdk_disk *d = vmdk_open(image, modes[m]);
    if (CHECK(d == NULL, "%s: opened (%s)", what, m ? "rw" : "ro"))
      CHECK(strcmp(vmdk_get_error(), want) == 0,
            "%s (%s): error\n  got:  %s\n  want: %s", what, m ? "rw" : "ro",
            vmdk_get_error(), want);
    vmdk_close(d);
    snap_same(&s, what);
  }
  printf("  %-22s %s\n", what, want);
}

static char msg[8192];
#define WANT(...) (snprintf(msg, sizeof msg, __VA_ARGS__), msg)

/* ---- descriptors -------------------------------------------------------- */

#define HDR                                                                    \
  "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"      \
  "createType=\"monolithicFlat\"\n"
#define HDR_LINES 5

static void write_text(const char *path, const char *text) {
  if (t_write_file(path, text, strlen(text)) != 0) {
    FAIL("cannot write %s", path);
    exit(1);
  }
}

/* A descriptor of HDR then N copies of LINE. */
static void write_repeated(const char *path, const char *line, size_t n) {
  size_t l = strlen(line), h = strlen(HDR);
  char *t = malloc(h + n * l + 1);
  memcpy(t, HDR, h);
  for (size_t i = 0; i < n; i++)
    memcpy(t + h + i * l, line, l);
  t[h + n * l] = '\0';
  write_text(path, t);
  free(t);
}

static void test_fifo(void) {
  const char *fifo = t_path("fifo-flat.vmdk"), *img = t_path("fifo.vmdk");
  if (!CHECK(mkfifo(fifo, 0644) == 0, "mkfifo: %s", strerror(errno)))
    return;
  write_text(img, HDR "RW 2048 FLAT \"fifo-flat.vmdk\" 0\n");
  alarm(60); /* the open used to block here for good */
  expect_open_error("fifo-extent", img,
                    WANT("%s: extent 0: cannot open %s: not a regular file or "
                         "block device",
                         img, fifo),
                    NULL);
  struct vmdk_disk *d = vmdk_open(fifo, 0);
  CHECK(d == NULL && strcmp(vmdk_get_error(),
                            WANT("%s: not a regular file or block device",
                                 fifo)) == 0,
        "fifo image: %s", vmdk_get_error());
  vmdk_close(d);
  alarm(0);
}

static void test_descriptors(void) {
  const char *img = t_path("d.vmdk");
  /* 65537 extents: the first too many is on line HDR_LINES + 65537 */
  write_repeated(img, "RW 1 ZERO\n", 65537);
  expect_open_error("too-many-extents", img,
                    WANT("%s: line %d: more than 65536 extents", img,
                         HDR_LINES + 65537),
                    NULL);

  const char *flat = t_path("f.bin");
  uint8_t one[1024];
  memset(one, 'X', sizeof one);
  t_write_file(flat, one, sizeof one);
  const char *files[] = {flat, NULL};
  /* offset 2^55 - 1 sectors, size 2^54 sectors: offsets wrapped past 2^64 */
  write_text(img, HDR "RW 18014398509481984 FLAT \"f.bin\" 36028797018963967\n");
  expect_open_error("flat-offset-wraps", img,
                    WANT("%s: extent 0 (f.bin): offset 36028797018963967 "
                         "sectors plus size 18014398509481984 sectors ends "
                         "past the largest file offset (2^63 bytes)",
                         img),
                    files);
  write_text(img, HDR "RW 1 ZERO\nRW 18014398509481984 ZERO\n");
  expect_open_error("disk-over-2p63", img,
                    WANT("%s: the extents add up to more than 2^63 - 1 bytes "
                         "(at extent 1), the largest disk size",
                         img),
                    NULL);
  /* the largest disk still opens */
  write_text(img, HDR "RW 18014398509481983 ZERO\n");
  struct vmdk_disk *d = vmdk_open(img, 0);
  if (CHECK(d != NULL, "a disk of 2^63 - 512 bytes: %s", vmdk_get_error()))
    CHECK_U64(vmdk_get_size(d), 18014398509481983ull * 512);
  vmdk_close(d);

  /* 65536 "key=value" lines open (fast: geometric growth), 65537 do not */
  write_repeated(img, "a=1\n", 65535);
  FILE *f = fopen(img, "a");
  fputs("ddb.x = \"1\"\nRW 1 ZERO\n", f);
  fclose(f);
  d = vmdk_open(img, 0);
  CHECK(d != NULL, "65536 key lines: %s", vmdk_get_error());
  vmdk_close(d);
  write_repeated(img, "ddb.a = \"1\"\n", 65537);
  expect_open_error("many-keys", img,
                    WANT("%s: line %d: more than 65536 key = value lines", img,
                         HDR_LINES + 65537),
                    NULL);

  /* examples of the issue that held already */
  write_text(img, HDR "RW 1152921504606846976 FLAT \"f.bin\" 0\n");
  expect_open_error("extent-2p60-sectors", img,
                    WANT("%s: line 6: extent of 1152921504606846976 sectors is "
                         "too large",
                         img),
                    files);
  write_text(img, HDR "RW 1 ZERO\n");
  if (CHECK(truncate(img, 50 << 20) == 0, "truncate: %s", strerror(errno)))
    expect_open_error("descriptor-50MiB", img,
                      WANT("%s: descriptor file of 50 MiB is too large (at "
                           "most 1 MiB)",
                           img),
                      NULL);
}

/* A chain of 200 descriptor-only layers: refused at 64. */
static void test_chain(void) {
  char name[64], text[512];
  for (int i = 0; i < 200; i++) {
    char parent[128] = "parentCID=ffffffff\n";
    if (i)
      snprintf(parent, sizeof parent,
               "parentCID=%08x\nparentFileNameHint=\"l%d.vmdk\"\n", i, i - 1);
    snprintf(text, sizeof text,
             "# Disk DescriptorFile\nCID=%08x\n%screateType=\"vmfsSparse\"\n"
             "RW 2048 ZERO\n",
             i + 1, parent);
    snprintf(name, sizeof name, "l%d.vmdk", i);
    write_text(t_path(name), text);
  }
  const char *top = t_path("l199.vmdk");
  expect_open_error("chain-of-200", top,
                    WANT("%s: the backing chain has more than 64 images (%s is "
                         "number 64)",
                         top, t_path("l136.vmdk")),
                    NULL);
  for (int i = 0; i < 200; i++) {
    snprintf(name, sizeof name, "l%d.vmdk", i);
    remove(t_path(name));
  }
}

/* ---- hosted sparse and stream headers ----------------------------------- */

struct kdmv {
  uint32_t version, flags;
  uint64_t capacity, grain, desc_offset, desc_size;
  uint32_t gtes;
  uint64_t rgd, gd, overhead;
  uint16_t compress;
};

/* Header K at B, and (with K->desc_offset) a descriptor naming NAME. */
static void put_kdmv(uint8_t *b, const struct kdmv *k, const char *type,
                     const char *name) {
  struct kdmv_header h = {
      .version = k->version,
      .flags = k->flags,
      .capacity = k->capacity,
      .grain = k->grain,
      .desc_offset = k->desc_offset,
      .desc_size = k->desc_size,
      .gtes_per_gt = k->gtes,
      .rgd_offset = k->rgd,
      .gd_offset = k->gd,
      .overhead = k->overhead,
      .compress = k->compress,
  };
  kdmv_encode_header(&h, b);
  if (k->desc_offset)
    snprintf((char *)b + k->desc_offset * 512, k->desc_size * 512,
             "# Disk DescriptorFile\nCID=12345678\nparentCID=ffffffff\n"
             "createType=\"%s\"\nRW %" PRIu64 " SPARSE \"%s\"\n",
             type, k->capacity, name);
}

/* A monolithicSparse file of K (FILE_SECTORS long, no tables) at IMG:
 * opening it must fail with "IMG: " WANT. */
static void kdmv_case(const char *what, const struct kdmv *k,
                      uint64_t file_sectors, const char *want) {
  const char *img = t_path("k.vmdk");
  uint8_t *b = calloc(file_sectors, 512);
  put_kdmv(b, k, "monolithicSparse", "k.vmdk");
  t_write_file(img, b, file_sectors * 512);
  free(b);
  expect_open_error(what, img, WANT("%s: %s", img, want), NULL);
}

static void test_kdmv_headers(void) {
  const struct kdmv base = {1, 3, 2048, 128, 1, 20, 512, 21, 26, 128, 0};
  struct kdmv k = base;
  /* the base opens */
  uint8_t *b = calloc(64, 512);
  put_kdmv(b, &base, "monolithicSparse", "k.vmdk");
  t_write_file(t_path("k.vmdk"), b, 64 * 512);
  free(b);
  struct vmdk_disk *d = vmdk_open(t_path("k.vmdk"), 0);
  CHECK(d != NULL, "the base sparse file: %s", vmdk_get_error());
  vmdk_close(d);

  k.gd = UINT64_MAX - 1;
  kdmv_case("gd-offset-overflows", &k, 64,
            "grain directory too large: 1 entries at sector "
            "18446744073709551614 for a capacity of 2048 sectors (512 grains "
            "of 128 sectors per table) do not fit in the file (32 KiB)");
  k = base;
  k.grain = 1u << 22;
  k.capacity = 1u << 22;
  kdmv_case("grain-2p22", &k, 64,
            "grain size 4194304 sectors is not a power of two from 1 to "
            "2097152");
  k = base;
  k.gtes = 1u << 20;
  kdmv_case("gtes-2p20", &k, 64,
            "1048576 grain table entries per table is out of range (1 to "
            "65536)");
  k = base;
  k.overhead = (1ull << 55) + 1;
  kdmv_case("sparse-overhead-2p55", &k, 64,
            "overHead of 36028797018963969 sectors is past the last sector a "
            "grain can be at (2^32 - 1)");
}

/* ---- vmdk_check on directories whose entries share one table ------------ */

struct count {
  uint64_t corrupt, leak;
  char first[512];
};

static void count_cb(void *opaque, enum vmdk_problem_kind kind,
                     const char *message) {
  struct count *c = opaque;
  if (kind == VMDK_PROBLEM_CORRUPT)
    c->corrupt++;
  else
    c->leak++;
  if (!c->first[0])
    snprintf(c->first, sizeof c->first, "%s", message);
}

/* Check IMAGE (read-only): CORRUPT problems, FIRST message (NULL: not
 * compared), no leaks; the file is unchanged. */
static void expect_check(const char *what, const char *image,
                         const char *data_file, uint64_t corrupt,
                         const char *first) {
  const char *files[] = {image, data_file, NULL};
  struct snap s;
  snap_take(&s, files);
  struct vmdk_disk *d = vmdk_open(image, 0);
  if (CHECK(d != NULL, "%s: open: %s", what, vmdk_get_error())) {
    struct vmdk_check_result r;
    struct count c = {0};
    if (CHECK(vmdk_check(d, &r, count_cb, &c) == 0, "%s: check: %s", what,
              vmdk_get_error())) {
      CHECK(r.corruptions == corrupt && c.corrupt == corrupt,
            "%s: %" PRIu64 " corruptions reported, expected %" PRIu64, what,
            r.corruptions, corrupt);
      CHECK(r.leaks == 0, "%s: %" PRIu64 " leaks", what, r.leaks);
      if (first)
        CHECK(strcmp(c.first, first) == 0,
              "%s: first problem\n  got:  %s\n  want: %s", what, c.first,
              first);
    }
    printf("  %-22s %" PRIu64 " problems, first: %s\n", what, r.corruptions,
           c.first);
  }
  vmdk_close(d);
  snap_same(&s, what);
}

/* Hosted sparse: 1024 GD entries all at the table at sector 29, whose 512
 * entries all point at the grain at sector 40.  Reported: 1023 tables
 * overlapping table 0, 511 grains overlapping grain 0 (the old check read
 * the table 1024 times and reported 524287 grain overlaps). */
static void test_sparse_shared_table(void) {
  const struct kdmv k = {1, 1, 1024 * 512 * 8, 8, 1, 20, 512, 0, 21, 40, 0};
  uint8_t *b = calloc(48, 512);
  put_kdmv(b, &k, "monolithicSparse", "shared.vmdk");
  for (uint32_t i = 0; i < 1024; i++)
    put_le32(b + 21 * 512 + 4 * i, 29);
  for (uint32_t i = 0; i < 512; i++)
    put_le32(b + 29 * 512 + 4 * i, 40);
  const char *img = t_path("shared.vmdk");
  t_write_file(img, b, 48 * 512);
  free(b);
  expect_check("check-shared-table", img, NULL, 1023 + 511,
               WANT("%s: grain table 1 at sector 29 overlaps grain table 0 "
                    "at sector 29 (not checked further)",
                    img));
}

/* COWD: 256 GD entries at the table at sector 6 (32 sectors), whose 4096
 * entries all point at the 1-sector grain at sector 38. */
static void test_cowd_shared_table(void) {
  uint8_t *b = calloc(39, 512);
  uint32_t h[8] = {0x44574f43u, 1, 3, 256 * 4096, 1, 4, 256, 39};
  for (int i = 0; i < 8; i++)
    put_le32(b + 4 * i, h[i]);
  for (uint32_t i = 0; i < 256; i++)
    put_le32(b + 4 * 512 + 4 * i, 6);
  for (uint32_t i = 0; i < 4096; i++)
    put_le32(b + 6 * 512 + 4 * i, 38);
  const char *img = t_path("shared-delta.vmdk");
  t_write_file(img, b, 39 * 512);
  free(b);
  expect_check("cowd-shared-table", img, NULL, 255 + 4095,
               WANT("%s: grain table 1 at sector 6 overlaps grain table 0 at "
                    "sector 6 (not checked further)",
                    img));
}

/* seSparse: 64 GD entries name grain table 0, whose 4096 entries all name
 * grain 0.  Reported: 63 shared tables, 4095 shared grains (each table is
 * read once: the old check tracked 64 * 4096 grain references). */
static void test_sesparse_shared_table(void) {
  enum { GD = 11, GTS = 12, GRAINS = 80, SECTORS = 88 };
  uint64_t cap = 64 * 32768;
  uint8_t *b = calloc(SECTORS, 512);
  put_le64(b, 0xcafebabeull);
  put_le64(b + 8, 0x0000000200000001ull);
  put_le64(b + 16, cap);
  put_le64(b + 24, 8);
  put_le64(b + 32, 64);
  const uint64_t areas[8][2] = {{1, 1},  {2, 1},   {3, 8},  {GD, 1},
                                {GTS, 64}, {76, 1}, {77, 1}, {GRAINS, 8}};
  for (int i = 0; i < 8; i++) {
    put_le64(b + 80 + 16 * i, areas[i][0]);
    put_le64(b + 88 + 16 * i, areas[i][1]);
  }
  put_le64(b + 512, 0xcafecafeull);
  for (int i = 0; i < 64; i++)
    put_le64(b + GD * 512 + 8 * i, 0x10000000ull << 32);
  for (int i = 0; i < 4096; i++)
    put_le64(b + GTS * 512 + 8 * i, 3ull << 60);
  const char *ext = t_path("se-sesparse.vmdk"), *img = t_path("se.vmdk");
  t_write_file(ext, b, SECTORS * 512);
  free(b);
  snprintf(msg, sizeof msg,
           "# Disk DescriptorFile\nCID=12345678\nparentCID=ffffffff\n"
           "createType=\"seSparse\"\nRW %" PRIu64 " SESPARSE "
           "\"se-sesparse.vmdk\"\n",
           cap);
  write_text(img, msg);
  expect_check("sesparse-shared-table", img, ext, 63 + 4095, NULL);
}

/* ---- streams --------------------------------------------------------------- */

/* A stream whose header has the GD at the end and no footer (so it is read
 * by scanning its markers): 65536-entry tables, grain 1 sector, a grain
 * marker in every sector from 100 on, each in a table of its own. */
static void test_stream_wide_tables(void) {
  enum { SECTORS = 8192 };
  const struct kdmv k = {3, 0x30001, 1ull << 32, 1, 1, 20, 65536, 0,
                         KDMV_GD_AT_END, 100, 1};
  uint8_t *b = calloc(SECTORS, 512);
  put_kdmv(b, &k, "streamOptimized", "wide.vmdk");
  for (uint64_t s = 100; s < SECTORS; s++) {
    put_le64(b + s * 512, (s - 100) * 65536);
    put_le32(b + s * 512 + 8, 1);
    b[s * 512 + 12] = 0x78;
  }
  const char *img = t_path("wide.vmdk");
  t_write_file(img, b, SECTORS * 512);
  free(b);
  expect_open_error("stream-wide-tables", img,
                    WANT("%s: the grain tables (numGTEsPerGT 65536) of the "
                         "grains present would take more than 80 MiB of "
                         "memory, more than a file of 4 MiB can need",
                         img),
                    NULL);
}

/* A 1 MiB stream made by vmdk_create (64 KiB grains), grain 0 written
 * when MARKER is not NULL (the sector of its marker goes there); returns
 * the file's bytes. */
static uint8_t *make_stream(const char *img, size_t *len, uint64_t *marker) {
  struct vmdk_create_options o = {
      .size_bytes = 1 << 20,
      .subformat = VMDK_SUBFORMAT_STREAM_OPTIMIZED,
  };
  struct vmdk_disk *d = vmdk_create(img, &o, 0);
  static uint8_t grain[65536];
  t_fill(grain, sizeof grain, 6);
  if (!d || (marker && vmdk_pwrite(d, grain, sizeof grain, 0) != 0) ||
      vmdk_close(d)) {
    FAIL("make_stream: %s", vmdk_get_error());
    exit(1);
  }
  uint8_t *b = t_read_file(img, len);
  if (!marker)
    return b;
  /* the first marker with a size from overHead on: grain 0's */
  *marker = 0;
  for (uint64_t s = le64(b + 64); !*marker && (s + 1) * 512 <= *len; s++)
    if (le32(b + s * 512 + 8) != 0)
      *marker = s;
  if (!*marker || le64(b + *marker * 512) != 0) {
    FAIL("make_stream: no marker of grain 0");
    exit(1);
  }
  return b;
}

static void test_stream_marker_size(void) {
  const char *img = t_path("st.vmdk");
  size_t len;
  uint64_t m;
  uint8_t *b = make_stream(img, &len, &m);
  put_le32(b + m * 512 + 8, 0xffffffffu);
  t_write_file(img, b, len);
  free(b);
  const char *files[] = {img, NULL};
  struct snap s;
  snap_take(&s, files);
  struct vmdk_disk *d = vmdk_open(img, VMDK_OPEN_RDWR);
  if (CHECK(d != NULL, "stream-marker-size: open: %s", vmdk_get_error())) {
    static uint8_t g[65536];
    CHECK(vmdk_pwrite(d, g, sizeof g, 65536) != 0,
          "stream-marker-size: the write was not refused");
    CHECK(strcmp(vmdk_get_error(),
                 WANT("%s: the last grain marker (sector %" PRIu64
                      ") has a compressed size of 4294967295 bytes (at most "
                      "131072, %zu bytes left in the file): no grain can be "
                      "appended after it",
                      img, m, len - m * 512)) == 0,
          "stream-marker-size: error\n  got:  %s\n  want: %s",
          vmdk_get_error(), msg);
    printf("  %-22s %s\n", "stream-marker-size", vmdk_get_error());
  }
  vmdk_close(d);
  snap_same(&s, "stream-marker-size");
}

static void test_stream_overhead(void) {
  const char *img = t_path("so.vmdk");
  size_t len;
  uint8_t *orig = make_stream(img, &len, NULL);
  uint8_t *b = malloc(len);
  /* header and footer (1024 bytes before the end) alike */
  memcpy(b, orig, len);
  put_le64(b + 64, (1ull << 55) + 1);
  put_le64(b + len - 1024 + 64, (1ull << 55) + 1);
  t_write_file(img, b, len);
  expect_open_error("stream-overhead-2p55", img,
                    WANT("%s: overHead of 36028797018963969 sectors is past "
                         "the last sector a grain can be at (2^32 - 1)",
                         img),
                    NULL);
  /* overHead 1 in an empty stream: the first grain still goes after the
   * descriptor (it used to go to sector 1, over it) */
  memcpy(b, orig, len);
  put_le64(b + 64, 1);
  put_le64(b + len - 1024 + 64, 1);
  t_write_file(img, b, len);
  struct vmdk_disk *d = vmdk_open(img, VMDK_OPEN_RDWR);
  static uint8_t g[65536], r[65536];
  t_fill(g, sizeof g, 7);
  CHECK(d && vmdk_pwrite(d, g, sizeof g, 65536) == 0 && vmdk_close(d) == 0,
        "stream-overhead-1: write: %s", vmdk_get_error());
  d = vmdk_open(img, 0);
  CHECK(d && vmdk_pread(d, r, sizeof r, 65536) == 0 &&
            memcmp(r, g, sizeof g) == 0,
        "stream-overhead-1: the descriptor was overwritten: %s",
        vmdk_get_error());
  vmdk_close(d);
  printf("  %-22s a grain written and read back\n", "stream-overhead-1");
  free(b);
  free(orig);
}

/* ---- COWD -------------------------------------------------------------------- */

static void test_cowd_gdes(void) {
  uint8_t b[2048 + 512] = {0};
  uint32_t h[8] = {0x44574f43u, 1, 3, 2048, 1, 4, 0xffffffffu, 5};
  for (int i = 0; i < 8; i++)
    put_le32(b + 4 * i, h[i]);
  const char *img = t_path("gdes-delta.vmdk");
  t_write_file(img, b, sizeof b);
  expect_open_error("cowd-gdes-2p32", img,
                    WANT("%s: COWD grain directory (4294967295 entries at "
                         "sector 4) does not fit in the file (2.50 KiB)",
                         img),
                    NULL);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  t_tmpdir("limits");
  printf("limits:\n");
  test_fifo();
  test_descriptors();
  test_chain();
  test_kdmv_headers();
  test_sparse_shared_table();
  test_cowd_shared_table();
  test_sesparse_shared_table();
  test_stream_wide_tables();
  test_stream_marker_size();
  test_stream_overhead();
  test_cowd_gdes();
  return t_exit_code();
}
