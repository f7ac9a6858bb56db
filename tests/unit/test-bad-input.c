/* SPDX-License-Identifier: BSD-3-Clause */
/* Hostile hosted-sparse headers and tables, crafted byte by byte (no
 * vmdk_create): every broken header is refused at open with a message that
 * names the field, without allocating absurd amounts of memory and without
 * changing a byte of the file (read-only and read-write opens alike).
 * Broken grain tables open, but the affected grains fail to read and
 * vmdk_check reports them; a leaked grain is reported as a leak only.
 *
 * The well-formed base image (checked first, so the negative cases fail
 * for the reason they claim):
 *   sector 0      header (version 1, flags NL-detect|RGD)
 *   1..20         embedded descriptor
 *   21            redundant grain directory (1 entry)
 *   22..25        redundant grain table
 *   26            grain directory
 *   27..30        grain table
 *   128..255      grain 0 (pattern A)      overHead = 128
 *   256..383      grain 5 (pattern B)
 * capacity 2048 sectors (1 MiB), grain 128 sectors, 512 GTEs per GT.
 */
#include "testlib.h"

#include "internal.h"

#define CAP_SECTORS 2048u
#define GRAIN_SECTORS 128u
#define GRAIN_BYTES (GRAIN_SECTORS * 512u)
#define FILE_SECTORS 384u
#define RGD_SECTOR 21u
#define RGT_SECTOR 22u
#define GD_SECTOR 26u
#define GT_SECTOR 27u

/* Header field offsets (bytes). */
enum {
  H_MAGIC = 0,
  H_VERSION = 4,
  H_FLAGS = 8,
  H_CAPACITY = 12,
  H_GRAIN = 20,
  H_DESC_OFF = 28,
  H_DESC_SIZE = 36,
  H_GTES = 44,
  H_RGD = 48,
  H_GD = 56,
  H_OVERHEAD = 64
};

static uint8_t base[FILE_SECTORS * 512];

static const char base_desc[] = "# Disk DescriptorFile\n"
                                "version=1\n"
                                "CID=12345678\n"
                                "parentCID=ffffffff\n"
                                "createType=\"monolithicSparse\"\n"
                                "\n"
                                "# Extent description\n"
                                "RW 2048 SPARSE \"base.img\"\n"
                                "\n"
                                "# The Disk Data Base\n"
                                "#DDB\n"
                                "\n"
                                "ddb.virtualHWVersion = \"4\"\n"
                                "ddb.adapterType = \"ide\"\n";

static void build_base(void) {
  uint8_t *h = base;
  memset(base, 0, sizeof base);
  memcpy(h + H_MAGIC, "KDMV", 4);
  put_le32(h + H_VERSION, 1);
  put_le32(h + H_FLAGS, 3);
  put_le64(h + H_CAPACITY, CAP_SECTORS);
  put_le64(h + H_GRAIN, GRAIN_SECTORS);
  put_le64(h + H_DESC_OFF, 1);
  put_le64(h + H_DESC_SIZE, 20);
  put_le32(h + H_GTES, 512);
  put_le64(h + H_RGD, RGD_SECTOR);
  put_le64(h + H_GD, GD_SECTOR);
  put_le64(h + H_OVERHEAD, 128);
  h[73] = '\n';
  h[74] = ' ';
  h[75] = '\r';
  h[76] = '\n';
  memcpy(base + 512, base_desc, sizeof base_desc - 1);
  put_le32(base + RGD_SECTOR * 512, RGT_SECTOR);
  put_le32(base + GD_SECTOR * 512, GT_SECTOR);
  /* grain 0 at sector 128, grain 5 at sector 256, in both tables */
  put_le32(base + RGT_SECTOR * 512 + 0 * 4, 128);
  put_le32(base + GT_SECTOR * 512 + 0 * 4, 128);
  put_le32(base + RGT_SECTOR * 512 + 5 * 4, 256);
  put_le32(base + GT_SECTOR * 512 + 5 * 4, 256);
  t_fill(base + 128 * 512, GRAIN_BYTES, 0xA);
  t_fill(base + 256 * 512, GRAIN_BYTES, 0xB);
}

/* What the base disk reads as. */
static uint8_t expected[CAP_SECTORS * 512];

static void build_expected(void) {
  memset(expected, 0, sizeof expected);
  memcpy(expected, base + 128 * 512, GRAIN_BYTES);
  memcpy(expected + 5 * GRAIN_BYTES, base + 256 * 512, GRAIN_BYTES);
}

/* ---- problem collection for vmdk_check ------------------------------- */

struct problems {
  unsigned corrupt, leak;
  char first[512];
};
static void problem_cb(void *opaque, enum vmdk_problem_kind kind,
                       const char *message) {
  struct problems *p = opaque;
  if (kind == VMDK_PROBLEM_CORRUPT)
    p->corrupt++;
  else if (kind == VMDK_PROBLEM_LEAK)
    p->leak++;
  if (!p->first[0])
    snprintf(p->first, sizeof p->first, "%s", message ? message : "(null)");
  CHECK(message && *message, "vmdk_check problem callback without a message");
}

/* Run vmdk_check on PATH (read-only) and return the counts. */
static int run_check(const char *path, struct vmdk_check_result *res,
                     struct problems *p, const char *what) {
  memset(p, 0, sizeof *p);
  memset(res, 0, sizeof *res);
  struct vmdk_disk *d = vmdk_open(path, 0);
  if (!CHECK(d != NULL, "%s: open for check failed: %s", what,
             vmdk_get_error()))
    return -1;
  int r = vmdk_check(d, res, problem_cb, p);
  CHECK(r == 0, "%s: vmdk_check could not run: %s", what, vmdk_get_error());
  CHECK(res->corruptions == p->corrupt && res->leaks == p->leak,
        "%s: result says %" PRIu64 " corruptions / %" PRIu64
        " leaks, callback saw %u / %u",
        what, res->corruptions, res->leaks, p->corrupt, p->leak);
  vmdk_close(d);
  return r;
}

/* ---- the base image ------------------------------------------------- */

static void test_base(void) {
  const char *path = t_path("base.img");
  t_write_file(path, base, sizeof base);
  struct vmdk_disk *d = vmdk_open_format(path, VMDK_FORMAT_VMDK, 0);
  if (!CHECK(d != NULL, "base image: open failed: %s", vmdk_get_error()))
    return;
  CHECK_U64(vmdk_get_size(d), CAP_SECTORS * 512);
  static uint8_t buf[CAP_SECTORS * 512];
  if (CHECK(vmdk_pread(d, buf, sizeof buf, 0) == 0, "base: pread: %s",
            vmdk_get_error())) {
    int64_t diff = t_first_diff(buf, expected, sizeof buf);
    CHECK(diff < 0, "base: disk byte %" PRId64 " is 0x%02x, expected 0x%02x",
          diff, diff < 0 ? 0 : buf[diff], diff < 0 ? 0 : expected[diff]);
  }
  struct vmdk_info info;
  if (CHECK(vmdk_get_info(d, &info) == 0, "base: info: %s", vmdk_get_error())) {
    CHECK_STR(info.format, "vmdk");
    CHECK_STR(info.create_type, "monolithicSparse");
    CHECK_U64(info.cluster_bytes, GRAIN_BYTES);
    CHECK_U64(info.cid, 0x12345678);
    CHECK_U64(info.parent_cid, 0xffffffffu);
    if (CHECK(info.n_extents == 1, "base: %zu extents", info.n_extents)) {
      CHECK_U64(info.extents[0].version, 1);
      CHECK_U64(info.extents[0].grain_bytes, GRAIN_BYTES);
    }
  }
  vmdk_close(d);
  struct vmdk_check_result res;
  struct problems p;
  if (run_check(path, &res, &p, "base") == 0) {
    CHECK(res.corruptions == 0 && res.leaks == 0,
          "base: check found %" PRIu64 " corruptions, %" PRIu64
          " leaks (first: %s)",
          res.corruptions, res.leaks, p.first);
    CHECK_U64(res.allocated_grains, 2);
    CHECK_U64(res.total_grains, CAP_SECTORS / GRAIN_SECTORS);
  }
  size_t len;
  uint8_t *now = t_read_file(path, &len);
  CHECK(now && len == sizeof base && memcmp(now, base, len) == 0,
        "base: opening read-only and checking changed the file");
  free(now);

  /* Renamed file: the embedded descriptor's extent name is ignored. */
  const char *renamed = t_path("renamed-copy.img");
  t_write_file(renamed, base, sizeof base);
  d = vmdk_open(renamed, 0);
  if (CHECK(d != NULL, "renamed base image: open failed: %s",
            vmdk_get_error())) {
    CHECK(vmdk_pread(d, buf, GRAIN_BYTES, 5 * GRAIN_BYTES) == 0 &&
              memcmp(buf, expected + 5 * GRAIN_BYTES, GRAIN_BYTES) == 0,
          "renamed base image: grain 5 reads wrong: %s", vmdk_get_error());
    vmdk_close(d);
  }
}

/* ---- broken headers: refused at open -------------------------------- */

/* Write LEN bytes of IMG as NAME; open it read-only (auto and VMDK) and
 * read-write: all must fail with a message containing the file name and
 * one of NEEDLES (NULL-terminated), and leave the file as it was. */
static void expect_refused_how(const char *name, const uint8_t *img, size_t len,
                               const char *const *needles, bool vmdk_only) {
  const char *path = t_path(name);
  t_write_file(path, img, len);
  static const struct {
    int format;
    unsigned flags;
    const char *how;
  } modes[] = {{VMDK_FORMAT_AUTO, 0, "auto, read-only"},
               {VMDK_FORMAT_VMDK, 0, "vmdk, read-only"},
               {VMDK_FORMAT_AUTO, VMDK_OPEN_RDWR, "auto, read-write"},
               {VMDK_FORMAT_VMDK, VMDK_OPEN_RDWR, "vmdk, read-write"}};
  for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
    if (vmdk_only && modes[m].format != VMDK_FORMAT_VMDK)
      continue;
    struct vmdk_disk *d =
        vmdk_open_format(path, modes[m].format, modes[m].flags);
    const char *msg = vmdk_get_error();
    if (!CHECK(d == NULL, "%s (%s): open succeeded (size %" PRIu64 ")", name,
               modes[m].how, vmdk_get_size(d))) {
      vmdk_close(d);
      continue;
    }
    CHECK(t_contains_ci(msg, name),
          "%s (%s): error does not name the file: "
          "\"%s\"",
          name, modes[m].how, msg);
    bool found = false;
    for (const char *const *n = needles; *n; n++)
      found |= t_contains_ci(msg, *n);
    CHECK(found, "%s (%s): error \"%s\" does not mention \"%s\"%s", name,
          modes[m].how, msg, needles[0], needles[1] ? " (or similar)" : "");
    CHECK(vmdk_get_errno() != 0, "%s (%s): errno not set", name, modes[m].how);
    if (m == 1)
      printf("  %-28s %s\n", name, msg);
  }
  size_t now_len;
  uint8_t *now = t_read_file(path, &now_len);
  CHECK(now && now_len == len && memcmp(now, img, len) == 0,
        "%s: refused open changed the file (%zu -> %zu bytes)", name, len,
        now_len);
  free(now);
}

/* Refused whatever the format asked for (the magic is right). */
static void expect_refused(const char *name, const uint8_t *img, size_t len,
                           const char *const *needles) {
  expect_refused_how(name, img, len, needles, false);
}

static uint8_t img[sizeof base];

static void reset(void) {
  memcpy(img, base, sizeof base);
}

static void test_headers(void) {
  static const char *const magic[] = {"magic", "not a vmdk", "not a VMDK",
                                      NULL};
  static const char *const grain[] = {"grain size", "grainSize", "grain", NULL};
  static const char *const gtes[] = {"numGTEsPerGT", "GTEs", "grain table",
                                     NULL};
  static const char *const gd[] = {"grain directory", "gdOffset", NULL};
  static const char *const gdcap[] = {"grain directory", "capacity", NULL};
  static const char *const desc[] = {"descriptor", NULL};
  static const char *const trunc[] = {"truncated", "header",      "too small",
                                      "short",     "end of file", NULL};

  /* Wrong magic: raw with FORMAT_AUTO, refused with FORMAT_VMDK. */
  reset();
  memcpy(img, "KDMX", 4);
  const char *path = t_path("bad-magic.img");
  t_write_file(path, img, sizeof img);
  struct vmdk_disk *d = vmdk_open_format(path, VMDK_FORMAT_AUTO, 0);
  if (CHECK(d != NULL, "bad magic, auto: not opened as raw: %s",
            vmdk_get_error())) {
    struct vmdk_info info;
    if (CHECK(vmdk_get_info(d, &info) == 0, "bad magic: info: %s",
              vmdk_get_error()))
      CHECK_STR(info.format, "raw");
    CHECK_U64(vmdk_get_size(d), sizeof img);
    uint8_t b[600];
    CHECK(vmdk_pread(d, b, sizeof b, 0) == 0 && memcmp(b, img, sizeof b) == 0,
          "bad magic as raw: the first bytes are not the file's");
    vmdk_close(d);
  }
  expect_refused_how("bad-magic.img", img, sizeof img, magic, true);
  /* and a plain zero-filled file is not a VMDK either */
  static const uint8_t zeros[4096];
  expect_refused_how("all-zero.img", zeros, sizeof zeros, magic, true);

  reset();
  put_le64(img + H_GRAIN, 100);
  expect_refused("grain-not-pow2.img", img, sizeof img, grain);
  reset();
  put_le64(img + H_GRAIN, 0);
  expect_refused("grain-zero.img", img, sizeof img, grain);
  reset();
  put_le64(img + H_GRAIN, 1ull << 40);
  expect_refused("grain-2pow40.img", img, sizeof img, grain);
  reset();
  put_le32(img + H_GTES, 0);
  expect_refused("gtes-zero.img", img, sizeof img, gtes);
  reset();
  put_le64(img + H_GD, 1000000); /* 488 MiB into a 192 KiB file */
  expect_refused("gd-past-eof.img", img, sizeof img, gd);
  reset();
  put_le64(img + H_GD, 1ull << 58); /* byte offset overflows 64 bits */
  expect_refused("gd-offset-overflow.img", img, sizeof img, gd);
  reset();
  /* 3e13 grain-directory entries of 512 * 128 sectors each */
  put_le64(img + H_CAPACITY, 30000000000000ull * 512 * GRAIN_SECTORS);
  expect_refused("gd-3e13-entries.img", img, sizeof img, gdcap);
  reset();
  put_le64(img + H_CAPACITY, UINT64_MAX);
  expect_refused("capacity-max.img", img, sizeof img, gdcap);
  reset();
  put_le64(img + H_DESC_OFF, 1000000);
  expect_refused("desc-past-eof.img", img, sizeof img, desc);
  reset();
  put_le64(img + H_DESC_SIZE, 1ull << 40);
  expect_refused("desc-size-huge.img", img, sizeof img, desc);
  reset();
  expect_refused("truncated-100.img", img, 100, trunc);
  /* the header alone: descriptor and tables are past the end */
  static const char *const any[] = {"descriptor", "grain", "truncated",
                                    "end of file", NULL};
  expect_refused("header-only.img", img, 512, any);
}

/* ---- broken tables: open, fail the read, check reports ------------ */

static void test_gte_past_eof(void) {
  reset();
  put_le32(img + GT_SECTOR * 512 + 3 * 4, 0x100000); /* 512 MiB */
  put_le32(img + RGT_SECTOR * 512 + 3 * 4, 0x100000);
  const char *path = t_path("gte-past-eof.img");
  t_write_file(path, img, sizeof img);
  struct vmdk_disk *d = vmdk_open(path, 0);
  if (!CHECK(d != NULL,
             "gte-past-eof: open failed (it should open and fail "
             "only reads of that grain): %s",
             vmdk_get_error()))
    return;
  static uint8_t buf[GRAIN_BYTES];
  CHECK(vmdk_pread(d, buf, GRAIN_BYTES, 0) == 0 &&
            memcmp(buf, expected, GRAIN_BYTES) == 0,
        "gte-past-eof: grain 0 does not read right: %s", vmdk_get_error());
  int r = vmdk_pread(d, buf, 512, 3 * GRAIN_BYTES + 512);
  const char *msg = vmdk_get_error();
  if (CHECK(r < 0, "gte-past-eof: reading grain 3 succeeded"))
    CHECK(t_contains_ci(msg, "gte-past-eof.img") &&
              t_mentions_any(msg, "grain", "end of", (char *)NULL),
          "gte-past-eof: read error does not name the file and the grain: "
          "\"%s\"",
          msg);
  CHECK(vmdk_pread(d, buf, GRAIN_BYTES, 5 * GRAIN_BYTES) == 0 &&
            memcmp(buf, expected + 5 * GRAIN_BYTES, GRAIN_BYTES) == 0,
        "gte-past-eof: grain 5 does not read right after the failed read: %s",
        vmdk_get_error());
  vmdk_close(d);
  struct vmdk_check_result res;
  struct problems p;
  if (run_check(path, &res, &p, "gte-past-eof") == 0) {
    CHECK(res.corruptions >= 1, "gte-past-eof: check found no corruption");
    CHECK(t_contains_ci(p.first, "gte-past-eof.img"),
          "gte-past-eof: problem message does not name the file: \"%s\"",
          p.first);
    printf("  %-28s %s\n", "gte-past-eof.img", p.first);
  }
  size_t len;
  uint8_t *now = t_read_file(path, &len);
  CHECK(now && len == sizeof img && memcmp(now, img, len) == 0,
        "gte-past-eof: read-only open or check changed the file");
  free(now);
}

/* Table damage that vmdk_check must report as corruption (the open may
 * succeed or refuse, but not crash or change the file). */
static void expect_corrupt(const char *name, const char *why) {
  const char *path = t_path(name);
  t_write_file(path, img, sizeof img);
  struct vmdk_disk *d = vmdk_open(path, 0);
  if (!d) {
    const char *msg = vmdk_get_error();
    CHECK(t_contains_ci(msg, name),
          "%s: open refused with a message not "
          "naming the file: \"%s\"",
          name, msg);
    printf("  %-28s refused at open: %s\n", name, msg);
  } else {
    vmdk_close(d);
    struct vmdk_check_result res;
    struct problems p;
    if (run_check(path, &res, &p, name) == 0) {
      CHECK(res.corruptions >= 1,
            "%s (%s): check found no corruption "
            "(%" PRIu64 " leaks)",
            name, why, res.leaks);
      printf("  %-28s %s\n", name, p.first);
    }
  }
  size_t len;
  uint8_t *now = t_read_file(path, &len);
  CHECK(now && len == sizeof img && memcmp(now, img, len) == 0,
        "%s: read-only open or check changed the file", name);
  free(now);
}

static void test_tables(void) {
  reset();
  put_le32(img + GT_SECTOR * 512 + 7 * 4, 0x100000);
  expect_corrupt("gt-rgt-differ.img", "GTE 7 set only in the GT");
  reset();
  put_le32(img + GD_SECTOR * 512, 0);
  expect_corrupt("gd-zero-rgd-not.img", "GD entry 0 but RGD entry set");
  reset();
  put_le32(img + GT_SECTOR * 512 + 9 * 4, GD_SECTOR); /* on the metadata */
  put_le32(img + RGT_SECTOR * 512 + 9 * 4, GD_SECTOR);
  expect_corrupt("grain-on-metadata.img", "GTE 9 points at the GD");
  reset();
  put_le32(img + GT_SECTOR * 512 + 10 * 4, 128); /* same grain as GTE 0 */
  put_le32(img + RGT_SECTOR * 512 + 10 * 4, 128);
  expect_corrupt("grains-overlap.img", "GTE 10 and GTE 0 share a grain");
  reset();
  put_le32(img + GT_SECTOR * 512 + 11 * 4, 200); /* half into grain 0.. */
  put_le32(img + RGT_SECTOR * 512 + 11 * 4, 200);
  expect_corrupt("grains-overlap-part.img", "GTE 11 overlaps grains 0 and 5");
}

/* A grain-sized block at the end no table points at: a leak, not a
 * corruption. */
static void test_leak(void) {
  static uint8_t leaky[sizeof base + GRAIN_BYTES];
  memcpy(leaky, base, sizeof base);
  t_fill(leaky + sizeof base, GRAIN_BYTES, 0xC);
  const char *path = t_path("leaked-grain.img");
  t_write_file(path, leaky, sizeof leaky);
  struct vmdk_check_result res;
  struct problems p;
  if (run_check(path, &res, &p, "leaked-grain") == 0) {
    CHECK(res.corruptions == 0, "leaked-grain: %" PRIu64 " corruptions (%s)",
          res.corruptions, p.first);
    CHECK(res.leaks >= 1, "leaked-grain: no leak found");
    CHECK_U64(res.leaked_bytes, GRAIN_BYTES);
    printf("  %-28s %s\n", "leaked-grain.img", p.first);
  }
  size_t len;
  uint8_t *now = t_read_file(path, &len);
  CHECK(now && len == sizeof leaky && memcmp(now, leaky, len) == 0,
        "leaked-grain: check changed the file");
  free(now);
}

int main(void) {
  t_tmpdir("bad-input");
  build_base();
  build_expected();
  test_base();
  test_headers();
  test_gte_past_eof();
  test_tables();
  test_leak();
  if (!t_failures)
    printf("bad input tests passed\n");
  return t_exit_code();
}
