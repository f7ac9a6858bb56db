/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_create for the descriptor-file layouts (twoGbMaxExtentSparse,
 * twoGbMaxExtentFlat, vmfs) and the disk layer's handling of mixed-extent
 * descriptors, through the public API:
 *  - subformat names, both spellings, case-insensitive; unknown refused;
 *  - the split arithmetic: 2047 MiB extents, the last one the remainder,
 *    no empty extent at exact multiples, one empty extent for size 0;
 *    files named NAME-s001.vmdk / NAME-f001.vmdk / NAME-flat.vmdk;
 *  - reads and writes across 2047 MiB boundaries at odd offsets;
 *  - a failed create leaves no file behind (and never removes a file it
 *    did not make); what the descriptor cannot hold is refused before any
 *    file is made;
 *  - in a mixed descriptor a single vmdk_pwrite of several MiB that starts
 *    in RW extents and reaches RDONLY / ZERO / NOACCESS is refused with no
 *    byte of any file changed; vmdk_zero over ZERO extents works, into
 *    RDONLY/NOACCESS it is refused; block status over ZERO and NOACCESS;
 *    a NOACCESS extent's file need not exist.
 */
#include "testlib.h"

#include <dirent.h>

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)
#define SPLIT (4192256ull * 512) /* 2047 MiB */

/* Files in the test folder, for "nothing was left behind". */
static unsigned count_files(void) {
  DIR *dir = opendir(t_dir);
  unsigned n = 0;
  if (!dir)
    return 9999;
  for (struct dirent *e; (e = readdir(dir));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      n++;
  closedir(dir);
  return n;
}

static void remove_all(void) {
  DIR *dir = opendir(t_dir);
  if (!dir)
    return;
  for (struct dirent *e; (e = readdir(dir));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      char p[4400];
      snprintf(p, sizeof p, "%s/%s", t_dir, e->d_name);
      remove(p);
    }
  closedir(dir);
}

static void names(void) {
  static const struct {
    const char *name;
    enum vmdk_subformat sf;
  } ok[] = {
      {"monolithicSparse", VMDK_SUBFORMAT_MONOLITHIC_SPARSE},
      {"MONOLITHICFLAT", VMDK_SUBFORMAT_MONOLITHIC_FLAT},
      {"twoGbMaxExtentSparse", VMDK_SUBFORMAT_TWOGB_SPARSE},
      {"2GbMaxExtentSparse", VMDK_SUBFORMAT_TWOGB_SPARSE},
      {"twogbmaxextentflat", VMDK_SUBFORMAT_TWOGB_FLAT},
      {"2GBMAXEXTENTFLAT", VMDK_SUBFORMAT_TWOGB_FLAT},
      {"streamOptimized", VMDK_SUBFORMAT_STREAM_OPTIMIZED},
      {"vmfs", VMDK_SUBFORMAT_VMFS},
      {"VMFS", VMDK_SUBFORMAT_VMFS},
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    enum vmdk_subformat sf = VMDK_SUBFORMAT_RAW;
    if (CHECK(vmdk_subformat_from_name(ok[i].name, &sf) == 0, "%s: %s",
              ok[i].name, vmdk_get_error()))
      CHECK(sf == ok[i].sf, "%s: got %d", ok[i].name, (int)sf);
  }
  /* the names printed are the twoGb spellings */
  CHECK_STR(vmdk_subformat_name(VMDK_SUBFORMAT_TWOGB_SPARSE),
            "twoGbMaxExtentSparse");
  CHECK_STR(vmdk_subformat_name(VMDK_SUBFORMAT_TWOGB_FLAT),
            "twoGbMaxExtentFlat");
  CHECK_STR(vmdk_subformat_name(VMDK_SUBFORMAT_VMFS), "vmfs");
  enum vmdk_subformat sf;
  CHECK(vmdk_subformat_from_name("3GbMaxExtentSparse", &sf) == -1 &&
            vmdk_get_errno() == EINVAL,
        "an unknown name is accepted");
  CHECK(vmdk_subformat_from_name("vmfsSparse", &sf) == -1,
        "vmfsSparse (not creatable) is accepted");
}

/* Create PATH as SF of SIZE bytes; check the extents' names, types and
 * sizes; returns the open disk or NULL. */
static struct vmdk_disk *create_checked(const char *what, const char *name,
                                        enum vmdk_subformat sf, uint64_t size,
                                        size_t want_extents) {
  struct vmdk_create_options o = {.size_bytes = size, .subformat = sf};
  struct vmdk_disk *d = vmdk_create(t_path(name), &o, 0);
  if (!CHECK(d != NULL, "%s: create: %s", what, vmdk_get_error()))
    return NULL;
  size = (size + 511) / 512 * 512; /* what the disk has */
  CHECK_U64(vmdk_get_size(d), size);
  struct vmdk_info info;
  if (!CHECK(vmdk_get_info(d, &info) == 0, "%s: info", what))
    return d;
  CHECK_STR(info.create_type, vmdk_subformat_name(sf));
  CHECK(info.n_extents == want_extents, "%s: %zu extents, expected %zu", what,
        info.n_extents, want_extents);
  uint64_t total = 0;
  for (size_t i = 0; i < info.n_extents; i++) {
    const struct vmdk_extent_info *x = &info.extents[i];
    char want[4400], base[200];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - 5), name);
    const char *type = "FLAT";
    if (sf == VMDK_SUBFORMAT_TWOGB_SPARSE) {
      snprintf(want, sizeof want, "%s/%s-s%03zu.vmdk", t_dir, base, i + 1);
      type = "SPARSE";
    } else if (sf == VMDK_SUBFORMAT_TWOGB_FLAT) {
      snprintf(want, sizeof want, "%s/%s-f%03zu.vmdk", t_dir, base, i + 1);
    } else {
      snprintf(want, sizeof want, "%s/%s-flat.vmdk", t_dir, base);
      type = sf == VMDK_SUBFORMAT_VMFS ? "VMFS" : "FLAT";
    }
    const char *want_name = want;
    CHECK_STR(x->filename, want_name);
    CHECK_STR(x->type, type);
    CHECK_STR(x->access, "RW");
    uint64_t want_size = size - total < SPLIT ? size - total : SPLIT;
    if (sf == VMDK_SUBFORMAT_VMFS || sf == VMDK_SUBFORMAT_MONOLITHIC_FLAT)
      want_size = size;
    CHECK(x->size_bytes == want_size, "%s: extent %zu has %" PRIu64
          " bytes, expected %" PRIu64, what, i, x->size_bytes, want_size);
    if (sf != VMDK_SUBFORMAT_TWOGB_SPARSE)
      CHECK(t_file_size(x->filename) == (int64_t)want_size,
            "%s: %s is %" PRId64 " bytes", what, x->filename,
            t_file_size(x->filename));
    total += x->size_bytes;
  }
  CHECK_U64(total, size);
  return d;
}

/* Writes at odd offsets across the 2047 MiB edges, read back before and
 * after a reopen, checked against the bytes written. */
static void across_edges(const char *what, enum vmdk_subformat sf) {
  uint64_t size = 2 * SPLIT + 5 * 512;
  struct vmdk_disk *d = create_checked(what, "edge.vmdk", sf, size, 3);
  if (!d)
    return;
  /* disjoint, so each reads back as written after all of them */
  static const struct {
    uint64_t off, len;
  } w[] = {
      {SPLIT - 1, 2},          {SPLIT + 511, 1},     {2 * SPLIT - 70001, 70004},
      {2 * SPLIT + 7, 2553},   {0, 513},             {SPLIT - 140010, 140003},
  };
  uint8_t *buf = malloc(140003), *got = malloc(140003);
  for (int pass = 0; pass < 2 && d; pass++) {
    for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
      t_fill(buf, w[i].len, 1000 + i);
      if (pass == 0)
        CHECK(vmdk_pwrite(d, buf, w[i].len, w[i].off) == 0,
              "%s: pwrite at %" PRIu64 ": %s", what, w[i].off,
              vmdk_get_error());
      memset(got, 0xee, w[i].len);
      CHECK(vmdk_pread(d, got, w[i].len, w[i].off) == 0,
            "%s: pread at %" PRIu64 ": %s", what, w[i].off, vmdk_get_error());
      int64_t diff = t_first_diff(buf, got, w[i].len);
      CHECK(diff < 0, "%s: pass %d: byte %" PRId64 " of the write at %" PRIu64
            " reads wrong", what, pass, diff, w[i].off);
    }
    /* the bytes around the writes are still zero */
    uint8_t z[64];
    CHECK(vmdk_pread(d, z, sizeof z, SPLIT + 2048) == 0 && z[0] == 0 &&
              t_first_diff(z, (uint8_t[64]){0}, 64) < 0,
          "%s: untouched bytes are not zero", what);
    CHECK(vmdk_close(d) == 0, "%s: close: %s", what, vmdk_get_error());
    d = pass == 0 ? vmdk_open(t_path("edge.vmdk"), 0) : NULL;
    if (pass == 0)
      CHECK(d != NULL, "%s: reopen: %s", what, vmdk_get_error());
  }
  /* the CLI-independent check of the sparse extents */
  d = vmdk_open(t_path("edge.vmdk"), 0);
  struct vmdk_check_result res;
  if (CHECK(d != NULL, "%s: reopen", what) &&
      CHECK(vmdk_check(d, &res, NULL, NULL) == 0, "%s: check", what))
    CHECK(res.corruptions == 0 && res.leaks == 0,
          "%s: check found %" PRIu64 " corruptions, %" PRIu64 " leaks", what,
          res.corruptions, res.leaks);
  vmdk_close(d);
  free(buf);
  free(got);
  remove_all();
}

static void split_sizes(void) {
  struct {
    enum vmdk_subformat sf;
    uint64_t size;
    size_t n;
  } cases[] = {
      {VMDK_SUBFORMAT_TWOGB_SPARSE, 2 * SPLIT, 2},
      {VMDK_SUBFORMAT_TWOGB_SPARSE, 2 * SPLIT + 512, 3},
      {VMDK_SUBFORMAT_TWOGB_SPARSE, 5 * GiB, 3},
      {VMDK_SUBFORMAT_TWOGB_SPARSE, 0, 1},
      {VMDK_SUBFORMAT_TWOGB_SPARSE, 1, 1}, /* rounded up to one sector */
      {VMDK_SUBFORMAT_TWOGB_FLAT, SPLIT, 1},
      {VMDK_SUBFORMAT_TWOGB_FLAT, SPLIT + 512, 2},
      {VMDK_SUBFORMAT_TWOGB_FLAT, 0, 1},
      {VMDK_SUBFORMAT_VMFS, 5 * GiB + 512, 1},
      {VMDK_SUBFORMAT_VMFS, 0, 1},
      /* a VMFS disk far past what a hosted sparse file can hold (ext4
       * allows 16 TiB files) */
      {VMDK_SUBFORMAT_VMFS, 8ull * 1024 * GiB, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char what[96];
    snprintf(what, sizeof what, "%s of %" PRIu64 " bytes",
             vmdk_subformat_name(cases[i].sf), cases[i].size);
    uint64_t size = (cases[i].size + 511) / 512 * 512;
    struct vmdk_disk *d =
        create_checked(what, "sz.vmdk", cases[i].sf, cases[i].size, cases[i].n);
    CHECK(vmdk_close(d) == 0, "%s: close", what);
    d = vmdk_open(t_path("sz.vmdk"), VMDK_OPEN_RDWR);
    if (CHECK(d != NULL, "%s: reopen: %s", what, vmdk_get_error())) {
      CHECK_U64(vmdk_get_size(d), size);
      if (size) { /* the last byte */
        uint8_t b = 0x5a, r = 0;
        CHECK(vmdk_pwrite(d, &b, 1, size - 1) == 0 &&
                  vmdk_pread(d, &r, 1, size - 1) == 0 && r == 0x5a,
              "%s: last byte: %s", what, vmdk_get_error());
      }
      CHECK(vmdk_close(d) == 0, "%s: close", what);
    }
    CHECK(count_files() == cases[i].n + 1, "%s: %u files, expected %zu", what,
          count_files(), cases[i].n + 1);
    remove_all();
  }
}

/* A create that fails part way removes what it made, and only that. */
static void failed_creates(void) {
  static const struct {
    enum vmdk_subformat sf;
    const char *blocker; /* a directory where an extent file goes */
    uint64_t size;
  } cases[] = {
      {VMDK_SUBFORMAT_TWOGB_SPARSE, "f-s003.vmdk", 5 * GiB},
      {VMDK_SUBFORMAT_TWOGB_FLAT, "f-f002.vmdk", 3 * GiB},
      {VMDK_SUBFORMAT_VMFS, "f-flat.vmdk", 1 * MiB},
      {VMDK_SUBFORMAT_MONOLITHIC_FLAT, "f-flat.vmdk", 1 * MiB},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *what = vmdk_subformat_name(cases[i].sf);
    mkdir(t_path(cases[i].blocker), 0755);
    struct vmdk_create_options o = {.size_bytes = cases[i].size,
                                    .subformat = cases[i].sf};
    struct vmdk_disk *d = vmdk_create(t_path("f.vmdk"), &o, 0);
    CHECK(d == NULL, "%s: create over a directory succeeded", what);
    vmdk_close(d);
    CHECK(t_mentions_any(vmdk_get_error(), cases[i].blocker, NULL),
          "%s: the error does not name %s: %s", what, cases[i].blocker,
          vmdk_get_error());
    struct stat st;
    CHECK(stat(t_path(cases[i].blocker), &st) == 0 && S_ISDIR(st.st_mode),
          "%s: the directory in the way was removed", what);
    CHECK(count_files() == 1, "%s: %u files left behind", what,
          count_files() - 1);
    rmdir(t_path(cases[i].blocker));
    remove_all();
  }

  /* more extents than a descriptor file can list: refused before any
   * file is made */
  enum vmdk_subformat big[] = {VMDK_SUBFORMAT_TWOGB_SPARSE,
                               VMDK_SUBFORMAT_TWOGB_FLAT};
  for (size_t i = 0; i < 2; i++) {
    struct vmdk_create_options o = {.size_bytes = 100ull * 1024 * GiB,
                                    .subformat = big[i]};
    struct vmdk_disk *d = vmdk_create(t_path("huge.vmdk"), &o, 0);
    CHECK(d == NULL && vmdk_get_errno() == EFBIG,
          "%s: 100 TiB in 2047 MiB extents: %s", vmdk_subformat_name(big[i]),
          d ? "created" : vmdk_get_error());
    vmdk_close(d);
    CHECK(t_mentions_any(vmdk_get_error(), "descriptor", NULL) &&
              t_mentions_any(vmdk_get_error(), "huge.vmdk", NULL),
          "%s: message: %s", vmdk_subformat_name(big[i]), vmdk_get_error());
    CHECK(count_files() == 0, "%s: %u files made", vmdk_subformat_name(big[i]),
          count_files());
    remove_all();
  }

  /* zeroed_grain: split sparse extents get version-2 headers with it; flat
   * layouts refuse it */
  struct vmdk_create_options o = {.size_bytes = SPLIT + MiB,
                                  .subformat = VMDK_SUBFORMAT_TWOGB_SPARSE,
                                  .zeroed_grain = 1};
  struct vmdk_disk *d = vmdk_create(t_path("zg.vmdk"), &o, 0);
  struct vmdk_info info;
  if (CHECK(d != NULL, "zeroed_grain split: %s", vmdk_get_error()) &&
      CHECK(vmdk_get_info(d, &info) == 0 && info.n_extents == 2,
            "zeroed_grain split: info"))
    for (size_t i = 0; i < 2; i++)
      CHECK(info.extents[i].zeroed_grain && info.extents[i].version == 2,
            "zeroed_grain split: extent %zu: flag %d version %u", i,
            info.extents[i].zeroed_grain, info.extents[i].version);
  vmdk_close(d);
  remove_all();
  o.subformat = VMDK_SUBFORMAT_TWOGB_FLAT;
  d = vmdk_create(t_path("zg.vmdk"), &o, 0);
  CHECK(d == NULL && vmdk_get_errno() == EINVAL,
        "zeroed_grain with twoGbMaxExtentFlat accepted");
  vmdk_close(d);
  CHECK(count_files() == 0, "zeroed_grain flat: files made");
}

/* ---- mixed descriptors ---------------------------------------------------- */

#define FLAT_SECTORS 4096u /* 2 MiB */
#define SP_SECTORS 8192u   /* 4 MiB */
#define RO_SECTORS 64u
#define ZERO_SECTORS 100u
#define NA_SECTORS 16u

struct snap {
  uint8_t *data[8];
  size_t len[8];
};
static const char *const mixed_files[] = {"mx.vmdk", "mx-flat.bin",
                                          "mx-s001.vmdk", "mx-ro.bin"};
#define N_MIXED_FILES 4

static void snap_take(struct snap *s) {
  for (size_t i = 0; i < N_MIXED_FILES; i++)
    s->data[i] = t_read_file(t_path(mixed_files[i]), &s->len[i]);
}
static void snap_same(const struct snap *a, const char *what) {
  struct snap b;
  snap_take(&b);
  for (size_t i = 0; i < N_MIXED_FILES; i++) {
    CHECK(a->data[i] && b.data[i] && a->len[i] == b.len[i] &&
              memcmp(a->data[i], b.data[i], a->len[i]) == 0,
          "%s: %s changed", what, mixed_files[i]);
    free(b.data[i]);
  }
}
static void snap_free(struct snap *s) {
  for (size_t i = 0; i < N_MIXED_FILES; i++)
    free(s->data[i]);
}

/* RW FLAT (offset 3) | RW SPARSE | RDONLY FLAT | RW ZERO | RW FLAT again
 * (the same file, further on) | NOACCESS FLAT of a file that does not
 * exist.  Returns the expected readable bytes (all but the NOACCESS tail). */
static uint8_t *make_mixed(uint64_t *readable, uint64_t *starts) {
  uint64_t flat_bytes = (3 + 2 * FLAT_SECTORS) * 512ull;
  uint8_t *flat = malloc(flat_bytes);
  t_fill(flat, flat_bytes, 7);
  t_write_file(t_path("mx-flat.bin"), flat, flat_bytes);
  uint8_t ro[RO_SECTORS * 512];
  t_fill(ro, sizeof ro, 8);
  t_write_file(t_path("mx-ro.bin"), ro, sizeof ro);
  /* the sparse extent: the -s001 file of a one-extent split image */
  struct vmdk_create_options o = {.size_bytes = SP_SECTORS * 512ull,
                                  .subformat = VMDK_SUBFORMAT_TWOGB_SPARSE};
  struct vmdk_disk *d = vmdk_create(t_path("mx.vmdk"), &o, 0);
  uint8_t *sp = calloc(1, SP_SECTORS * 512ull);
  t_fill(sp + 100000, 300001, 9);
  CHECK(d && vmdk_pwrite(d, sp + 100000, 300001, 100000) == 0 &&
            vmdk_close(d) == 0,
        "mixed: sparse extent: %s", vmdk_get_error());
  char text[1024];
  snprintf(text, sizeof text,
           "# Disk DescriptorFile\r\nversion=1\r\nCID=0000abcd\r\n"
           "parentCID=ffffffff\r\ncreateType=\"custom\"\r\n"
           "RW %u FLAT \"mx-flat.bin\" 3\r\nRW %u SPARSE \"mx-s001.vmdk\"\r\n"
           "RDONLY %u FLAT \"mx-ro.bin\" 0\r\nRW %u ZERO\r\n"
           "RW %u FLAT \"mx-flat.bin\" %u\r\nNOACCESS %u FLAT \"mx-gone.bin\" 0"
           "\r\n",
           FLAT_SECTORS, SP_SECTORS, RO_SECTORS, ZERO_SECTORS, FLAT_SECTORS,
           3 + FLAT_SECTORS, NA_SECTORS);
  t_write_file(t_path("mx.vmdk"), text, strlen(text));

  const uint64_t sizes[] = {FLAT_SECTORS, SP_SECTORS,   RO_SECTORS,
                            ZERO_SECTORS, FLAT_SECTORS, NA_SECTORS};
  uint64_t s = 0;
  for (int i = 0; i < 6; i++) {
    starts[i] = s;
    s += sizes[i] * 512;
  }
  starts[6] = s;
  *readable = starts[5];
  uint8_t *want = calloc(1, *readable);
  memcpy(want, flat + 3 * 512, FLAT_SECTORS * 512);
  memcpy(want + starts[1], sp, SP_SECTORS * 512);
  memcpy(want + starts[2], ro, sizeof ro);
  memcpy(want + starts[4], flat + (3 + FLAT_SECTORS) * 512, FLAT_SECTORS * 512);
  free(flat);
  free(sp);
  return want;
}

struct runs {
  struct vmdk_run r[64];
  size_t n;
};
static int collect(void *opaque, const struct vmdk_run *run) {
  struct runs *rs = opaque;
  if (rs->n < 64)
    rs->r[rs->n++] = *run;
  return 0;
}

static void mixed(void) {
  uint64_t readable, st[7];
  uint8_t *want = make_mixed(&readable, st);
  struct vmdk_disk *d = vmdk_open(t_path("mx.vmdk"), VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "mixed: open: %s", vmdk_get_error())) {
    free(want);
    return;
  }
  CHECK_U64(vmdk_get_size(d), st[6]);
  uint8_t *got = malloc(st[6]);
  CHECK(vmdk_pread(d, got, readable, 0) == 0 &&
            t_first_diff(want, got, readable) < 0,
        "mixed: the disk reads wrong (%s)", vmdk_get_error());
  CHECK(vmdk_pread(d, got, st[6], 0) == -1 && vmdk_get_errno() == EACCES &&
            t_mentions_any(vmdk_get_error(), "NOACCESS", NULL),
        "mixed: a read of the NOACCESS extent: %s", vmdk_get_error());

  /* refused writes: one call each, MiBs long, starting in RW extents */
  struct snap before;
  snap_take(&before);
  uint8_t *buf = malloc(st[6]);
  t_fill(buf, st[6], 77);
  static const struct {
    int from, to; /* extents the write starts and ends in */
    int err;
    const char *word;
  } bad[] = {
      {0, 2, EROFS, "RDONLY"},   /* FLAT, SPARSE, then RDONLY */
      {1, 3, EROFS, "RDONLY"},   /* SPARSE, RDONLY, ZERO */
      {3, 3, EROFS, "ZERO"},     /* inside ZERO */
      {3, 4, EROFS, "ZERO"},     /* ZERO, then RW FLAT */
      {4, 5, EACCES, "NOACCESS"}, /* RW FLAT, then NOACCESS */
      {0, 5, EROFS, "RDONLY"},   /* the whole disk */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    uint64_t off = st[bad[i].from] + 1001;
    uint64_t end = bad[i].to == bad[i].from ? off + 999 : st[bad[i].to] + 333;
    int r = vmdk_pwrite(d, buf, end - off, off);
    CHECK(r == -1 && vmdk_get_errno() == bad[i].err &&
              t_mentions_any(vmdk_get_error(), bad[i].word, NULL) &&
              t_mentions_any(vmdk_get_error(), "mx.vmdk", NULL),
          "mixed: write %zu (extents %d..%d, %" PRIu64 " bytes): r=%d errno=%d"
          " %s",
          i, bad[i].from, bad[i].to, end - off, r, vmdk_get_errno(),
          vmdk_get_error());
  }
  CHECK(vmdk_zero(d, 10, st[2] + 5) == -1 && vmdk_get_errno() == EROFS,
        "mixed: zero into RDONLY: %s", vmdk_get_error());
  CHECK(vmdk_zero(d, 10, st[5] + 5) == -1 && vmdk_get_errno() == EACCES,
        "mixed: zero into NOACCESS: %s", vmdk_get_error());
  CHECK(vmdk_flush(d) == 0, "mixed: flush");
  snap_same(&before, "refused writes");
  snap_free(&before);

  /* block status: the ZERO extent is present zeros; NOACCESS is refused */
  struct runs rs = {.n = 0};
  CHECK(vmdk_block_status(d, st[3] - 512, ZERO_SECTORS * 512 + 1024, collect,
                          &rs) == 0,
        "mixed: block status: %s", vmdk_get_error());
  bool saw_zero = false;
  for (size_t i = 0; i < rs.n; i++)
    if (rs.r[i].offset == st[3] && rs.r[i].length == ZERO_SECTORS * 512 &&
        rs.r[i].flags == (VMDK_RUN_PRESENT | VMDK_RUN_ZERO))
      saw_zero = true;
  CHECK(saw_zero, "mixed: no PRESENT|ZERO run for the ZERO extent");
  CHECK(vmdk_block_status(d, st[5], 512, collect, &rs) == -1 &&
            vmdk_get_errno() == EACCES,
        "mixed: block status of NOACCESS: %s", vmdk_get_error());

  /* allowed: zeroing across ZERO + RW FLAT and RW FLAT + SPARSE; writes
   * across the RW FLAT / SPARSE boundary */
  CHECK(vmdk_zero(d, st[4] + 4000 - (st[3] + 5), st[3] + 5) == 0,
        "mixed: zero across ZERO: %s", vmdk_get_error());
  memset(want + st[3] + 5, 0, st[4] + 4000 - (st[3] + 5));
  CHECK(vmdk_zero(d, 200000, st[1] - 3000) == 0,
        "mixed: zero across FLAT/SPARSE: %s", vmdk_get_error());
  memset(want + st[1] - 3000, 0, 200000);
  t_fill(buf, 3 * MiB, 78);
  CHECK(vmdk_pwrite(d, buf, 3 * MiB, st[1] - MiB - 7) == 0,
        "mixed: write FLAT->SPARSE: %s", vmdk_get_error());
  memcpy(want + st[1] - MiB - 7, buf, 3 * MiB);
  CHECK(vmdk_pread(d, got, readable, 0) == 0 &&
            t_first_diff(want, got, readable) < 0,
        "mixed: the disk reads wrong after writes (%s)", vmdk_get_error());
  CHECK(vmdk_close(d) == 0, "mixed: close: %s", vmdk_get_error());
  /* the FLAT file's bytes before the offset are untouched */
  size_t n;
  uint8_t *flat = t_read_file(t_path("mx-flat.bin"), &n);
  uint8_t head[3 * 512];
  t_fill(head, sizeof head, 7); /* t_fill is a prefix-stable stream */
  CHECK(flat && n == (3 + 2 * FLAT_SECTORS) * 512 &&
            memcmp(flat, head, sizeof head) == 0,
        "mixed: bytes before the FLAT offset changed");
  free(flat);

  /* read-only: same bytes after a reopen */
  d = vmdk_open(t_path("mx.vmdk"), 0);
  CHECK(d && vmdk_pread(d, got, readable, 0) == 0 &&
            t_first_diff(want, got, readable) < 0,
        "mixed: reopened disk reads wrong (%s)", vmdk_get_error());
  vmdk_close(d);
  free(buf);
  free(got);
  free(want);
  remove_all();
}

int main(void) {
  t_tmpdir("split-create");
  names();
  split_sizes();
  across_edges("twoGbMaxExtentSparse", VMDK_SUBFORMAT_TWOGB_SPARSE);
  across_edges("twoGbMaxExtentFlat", VMDK_SUBFORMAT_TWOGB_FLAT);
  failed_creates();
  mixed();
  if (!t_failures)
    printf("split create and mixed extent tests passed\n");
  return t_exit_code();
}
