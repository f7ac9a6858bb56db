/* SPDX-License-Identifier: BSD-3-Clause */
/* COWD (vmfsSparse) through the public API, on files this test lays out
 * itself (an empty ESXi-style delta: header, grain directory, no tables):
 *
 *  1. random writes and zeroes (grain size 8 sectors) against an in-memory
 *     mirror, with flushes, a close/reopen halfway, then a read-only
 *     reopen: the disk reads as the mirror, vmdk_check finds nothing, the
 *     header still says COWD and freeSector is the file's end;
 *  2. zeroing a never-written range of a standalone delta allocates
 *     nothing (the file does not grow);
 *  3. grain size 1 over 4 GiB: one sector written in each of 1200 grain
 *     tables, more than the table cache holds, so dirty tables are evicted
 *     (a full metadata flush) while writing; everything reads back.
 *
 * Seed: argv[1], else $VMDKIT_SEED, else a fixed default (printed).
 */
#include "testlib.h"

#define MiB (1024ull * 1024)

/* Lay out an empty COWD extent of CAPACITY sectors at PATH. */
static int make_cowd(const char *path, uint32_t capacity, uint32_t grain) {
  uint32_t gdes =
      (uint32_t)((capacity + 4096ull * grain - 1) / (4096ull * grain));
  uint32_t gd_sectors = (gdes * 4 + 511) / 512;
  uint32_t free_sector = 4 + gd_sectors;
  size_t len = (size_t)free_sector * 512;
  uint8_t *b = calloc(1, len);
  if (!b)
    return -1;
  uint32_t h[8] = {0x44574f43u, 1, 3, capacity, grain, 4, gdes, free_sector};
  for (int i = 0; i < 8; i++)
    for (int k = 0; k < 4; k++)
      b[4 * i + k] = (uint8_t)(h[i] >> (8 * k));
  int r = t_write_file(path, b, len);
  free(b);
  return r;
}

static uint32_t file_u32(const char *path, size_t off) {
  size_t n = 0;
  uint8_t *b = t_read_file(path, &n);
  uint32_t v = 0;
  if (b && off + 4 <= n)
    v = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 |
        (uint32_t)b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
  free(b);
  return v;
}

static uint64_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void check_clean(const char *path, const char *what) {
  struct vmdk_disk *d = vmdk_open(path, 0);
  if (!CHECK(d != NULL, "%s: reopen: %s", what, vmdk_get_error()))
    return;
  struct vmdk_check_result res;
  if (CHECK(vmdk_check(d, &res, NULL, NULL) == 0, "%s: check: %s", what,
            vmdk_get_error())) {
    CHECK_U64(res.corruptions, 0);
    CHECK_U64(res.leaks, 0);
  }
  vmdk_close(d);
  CHECK(file_u32(path, 0) == 0x44574f43u, "%s: the COWD magic is gone", what);
  CHECK_U64((uint64_t)file_u32(path, 28) * 512, file_size(path));
}

/* 1. random writes and zeroes against a mirror */
static void random_mirror(uint64_t seed) {
  const uint64_t disk = 40 * MiB; /* 2.5 tables of 4096 4-KiB grains */
  const char *path = t_path("r-delta.vmdk");
  if (!CHECK(make_cowd(path, (uint32_t)(disk / 512), 8) == 0, "make_cowd"))
    return;
  uint8_t *mirror = calloc(1, disk), *buf = malloc(2 * MiB),
          *rbuf = malloc(disk);
  struct t_rng r = {seed};
  struct vmdk_disk *d = vmdk_open(path, VMDK_OPEN_RDWR);
  if (!CHECK(mirror && buf && rbuf, "out of memory") ||
      !CHECK(d != NULL, "open: %s", vmdk_get_error()))
    goto out;
  for (int op = 0; op < 600 && d; op++) {
    uint64_t len = 1 + t_below(&r, t_below(&r, 4) ? 9000 : 2 * MiB);
    uint64_t off = t_below(&r, disk - len + 1);
    if (t_below(&r, 2) == 0) /* near a table edge */
      off = t_below(&r, 3) * 16 * MiB + t_below(&r, 64);
    if (off + len > disk)
      off = disk - len;
    switch (t_below(&r, 8)) {
    case 0:
      CHECK(vmdk_zero(d, len, off) == 0,
            "op %d: zero %" PRIu64 " at %" PRIu64 ": %s", op, len, off,
            vmdk_get_error());
      memset(mirror + off, 0, len);
      break;
    case 1:
      CHECK(vmdk_flush(d) == 0, "op %d: flush: %s", op, vmdk_get_error());
      break;
    default:
      t_fill(buf, len, seed + (uint64_t)op);
      CHECK(vmdk_pwrite(d, buf, len, off) == 0,
            "op %d: write %" PRIu64 " at %" PRIu64 ": %s", op, len, off,
            vmdk_get_error());
      memcpy(mirror + off, buf, len);
    }
    if (op == 300) {
      CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
      d = vmdk_open(path, VMDK_OPEN_RDWR);
      CHECK(d != NULL, "reopen: %s", vmdk_get_error());
    }
  }
  if (d) {
    CHECK(vmdk_pread(d, rbuf, disk, 0) == 0, "read: %s", vmdk_get_error());
    CHECK(memcmp(rbuf, mirror, disk) == 0, "the disk differs from the mirror");
    CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
  }
  d = vmdk_open(path, 0);
  if (CHECK(d != NULL, "read-only reopen: %s", vmdk_get_error())) {
    memset(rbuf, 0x5a, disk);
    CHECK(vmdk_pread(d, rbuf, disk, 0) == 0, "read: %s", vmdk_get_error());
    CHECK(memcmp(rbuf, mirror, disk) == 0,
          "after reopening, the disk differs from the mirror");
    vmdk_close(d);
  }
  check_clean(path, "random");
out:
  free(mirror);
  free(buf);
  free(rbuf);
}

/* 2. zeroing unallocated space of a standalone delta writes nothing */
static void zero_unallocated(void) {
  const char *path = t_path("z-delta.vmdk");
  if (!CHECK(make_cowd(path, 32768, 1) == 0, "make_cowd"))
    return;
  uint64_t before = file_size(path);
  struct vmdk_disk *d = vmdk_open(path, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "open: %s", vmdk_get_error()))
    return;
  CHECK(vmdk_zero(d, 8 * MiB, 4097) == 0, "zero: %s", vmdk_get_error());
  CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
  CHECK_U64(file_size(path), before);
  check_clean(path, "zero");
}

/* 3. more grain tables than the cache holds */
static void many_tables(void) {
  const char *path = t_path("m-delta.vmdk");
  const uint32_t capacity = 8u * 1024 * 1024; /* 4 GiB, 2048 tables */
  const unsigned n = 1200;
  if (!CHECK(make_cowd(path, capacity, 1) == 0, "make_cowd"))
    return;
  struct vmdk_disk *d = vmdk_open(path, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "open: %s", vmdk_get_error()))
    return;
  uint8_t s[512], g[512];
  for (unsigned i = 0; i < n; i++) {
    t_fill(s, sizeof s, i);
    uint64_t off = (uint64_t)(i * 7 % 2048) * 2 * MiB + (i % 4096) * 512;
    if (!CHECK(vmdk_pwrite(d, s, sizeof s, off) == 0, "write %u: %s", i,
               vmdk_get_error()))
      break;
  }
  CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
  d = vmdk_open(path, 0);
  if (!CHECK(d != NULL, "reopen: %s", vmdk_get_error()))
    return;
  for (unsigned i = 0; i < n; i++) {
    t_fill(s, sizeof s, i);
    uint64_t off = (uint64_t)(i * 7 % 2048) * 2 * MiB + (i % 4096) * 512;
    if (!CHECK(vmdk_pread(d, g, sizeof g, off) == 0 && memcmp(g, s, 512) == 0,
               "sector %u at %" PRIu64 " reads wrong", i, off))
      break;
  }
  vmdk_close(d);
  check_clean(path, "many tables");
}

int main(int argc, char **argv) {
  const char *env = getenv("VMDKIT_SEED");
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0)
                  : env    ? strtoull(env, NULL, 0)
                           : 20261125;
  printf("seed %" PRIu64 "\n", seed);
  t_tmpdir("cowd");
  random_mirror(seed);
  zero_unallocated();
  many_tables();
  return t_exit_code();
}
