/* SPDX-License-Identifier: BSD-3-Clause */
/* Random writes, zeroes, flushes and reads on a fresh 64 MiB monolithicSparse
 * image, checked against an in-memory mirror; halfway through the image is
 * closed and reopened read-write (new grains must then go past the old
 * ones); at the end it is reopened read-only and compared whole, and
 * vmdk_check must find nothing.
 *
 * Seed: argv[1], else $VMDKIT_SEED, else a fixed default.  It is printed,
 * so a failure can be replayed:  VMDKIT_SEED=N ./test-random-mirror
 * Operation count: argv[2] or $VMDKIT_OPS (default 3000 per image).
 */
#include "testlib.h"

#define MiB (1024ull * 1024)
#define DISK (64 * MiB)

static uint8_t *mirror;
static uint8_t *wbuf, *rbuf;

/* Random length 1 byte .. 300 KiB, most of them small. */
static uint64_t rand_len(struct t_rng *r) {
  switch (t_below(r, 10)) {
  case 0:
  case 1:
  case 2:
  case 3:
    return 1 + t_below(r, 4096);
  case 4:
  case 5:
  case 6:
    return 1 + t_below(r, 64 * 1024);
  default:
    return 1 + t_below(r, 300 * 1024);
  }
}

/* Random offset so that [off, off+len) fits; biased towards grain edges. */
static uint64_t rand_off(struct t_rng *r, uint64_t len, uint64_t grain) {
  uint64_t max = DISK - len;
  uint64_t off;
  switch (t_below(r, 4)) {
  case 0: /* near a grain edge */
    off = t_below(r, DISK / grain) * grain;
    off += t_below(r, 17);
    off = off >= 8 ? off - 8 : off;
    break;
  case 1: /* near a grain-table edge */
    off = t_below(r, DISK / (512 * grain) + 1) * 512 * grain;
    off = off > len / 2 ? off - len / 2 : 0;
    off += t_below(r, 3);
    break;
  default:
    off = t_below(r, max + 1);
  }
  return off > max ? max : off;
}

static int compare(struct vmdk_disk *d, uint64_t off, uint64_t len,
                   const char *what, uint64_t op) {
  memset(rbuf, 0x5a, len);
  if (!CHECK(vmdk_pread(d, rbuf, len, off) == 0,
             "%s: op %" PRIu64 ": vmdk_pread(%" PRIu64 " at %" PRIu64 "): %s",
             what, op, len, off, vmdk_get_error()))
    return -1;
  int64_t diff = t_first_diff(rbuf, mirror + off, len);
  if (!CHECK(diff < 0,
             "%s: op %" PRIu64 ": read of %" PRIu64 " at %" PRIu64
             " differs at disk offset %" PRIu64 ": 0x%02x, expected 0x%02x",
             what, op, len, off, off + (uint64_t)diff, rbuf[diff],
             mirror[off + (uint64_t)diff]))
    return -1;
  return 0;
}

static int full_compare(struct vmdk_disk *d, const char *what, uint64_t op) {
  for (uint64_t off = 0; off < DISK; off += 4 * MiB)
    if (compare(d, off, 4 * MiB, what, op) < 0)
      return -1;
  return 0;
}

/* No corruption, and no leak beyond LEAK_OK bytes (whole grains zeroed in
 * a zeroed-grain image may leave their old space behind). */
static void check_clean(struct vmdk_disk *d, const char *what,
                        uint64_t leak_ok) {
  struct vmdk_check_result res;
  memset(&res, 0xff, sizeof res);
  if (CHECK(vmdk_check(d, &res, NULL, NULL) == 0, "%s: vmdk_check: %s", what,
            vmdk_get_error()))
    CHECK(res.corruptions == 0 && res.leaked_bytes <= leak_ok,
          "%s: vmdk_check: %" PRIu64 " corruptions, %" PRIu64
          " leaks of %" PRIu64 " bytes (at most %" PRIu64 " allowed)",
          what, res.corruptions, res.leaks, res.leaked_bytes, leak_ok);
}

static void run(const char *what, uint32_t grain_sectors, bool zeroed_grain,
                uint64_t seed, uint64_t nops) {
  struct t_rng r = {seed};
  uint64_t grain = grain_sectors * 512ull;
  char name[64];
  snprintf(name, sizeof name, "random-%u-%d.vmdk", grain_sectors, zeroed_grain);
  const char *path = t_path(name);
  memset(mirror, 0, DISK);
  struct vmdk_create_options o = {.size_bytes = DISK,
                                  .grain_sectors = grain_sectors,
                                  .zeroed_grain = zeroed_grain};
  struct vmdk_disk *d = vmdk_create(path, &o, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "%s: vmdk_create: %s", what, vmdk_get_error()))
    return;
  uint64_t nwrites = 0, nzeros = 0, nreads = 0, nflushes = 0;
  uint64_t whole_zeroed = 0; /* grains wholly covered by vmdk_zero calls */
  for (uint64_t op = 0; op < nops; op++) {
    if (op == nops / 2) {
      /* close and reopen read-write mid-way */
      if (!CHECK(vmdk_close(d) == 0, "%s: op %" PRIu64 ": close: %s", what, op,
                 vmdk_get_error()))
        return;
      d = vmdk_open(path, VMDK_OPEN_RDWR);
      if (!CHECK(d != NULL, "%s: op %" PRIu64 ": reopen: %s", what, op,
                 vmdk_get_error()))
        return;
      if (full_compare(d, what, op) < 0)
        goto out;
    }
    uint64_t kind = t_below(&r, 100);
    uint64_t len = rand_len(&r);
    uint64_t off = rand_off(&r, len, grain);
    if (kind < 60) {
      t_fill(wbuf, len, t_rand64(&r));
      if (!CHECK(vmdk_pwrite(d, wbuf, len, off) == 0,
                 "%s: op %" PRIu64 ": vmdk_pwrite(%" PRIu64 " at %" PRIu64
                 "): %s",
                 what, op, len, off, vmdk_get_error()))
        goto out;
      memcpy(mirror + off, wbuf, len);
      nwrites++;
    } else if (kind < 72) {
      if (t_below(&r, 2)) { /* whole grains sometimes */
        off = off / grain * grain;
        len = (len + grain - 1) / grain * grain;
        if (off + len > DISK)
          len = DISK - off;
      }
      if (!CHECK(vmdk_zero(d, len, off) == 0,
                 "%s: op %" PRIu64 ": vmdk_zero(%" PRIu64 " at %" PRIu64
                 "): %s",
                 what, op, len, off, vmdk_get_error()))
        goto out;
      memset(mirror + off, 0, len);
      nzeros++;
      uint64_t first = (off + grain - 1) / grain, end = (off + len) / grain;
      whole_zeroed += end > first ? end - first : 0;
    } else if (kind < 74) {
      if (!CHECK(vmdk_flush(d) == 0, "%s: op %" PRIu64 ": flush: %s", what, op,
                 vmdk_get_error()))
        goto out;
      nflushes++;
    } else {
      if (compare(d, off, len, what, op) < 0)
        goto out;
      nreads++;
    }
  }
  if (!CHECK(vmdk_close(d) == 0, "%s: close: %s", what, vmdk_get_error())) {
    d = NULL;
    goto out;
  }
  d = vmdk_open(path, 0);
  if (!CHECK(d != NULL, "%s: read-only reopen: %s", what, vmdk_get_error()))
    goto out;
  CHECK_U64(vmdk_get_size(d), DISK);
  full_compare(d, what, nops);
  check_clean(d, what, zeroed_grain ? whole_zeroed * grain : 0);
  printf("%s: %" PRIu64 " writes, %" PRIu64 " zeroes, %" PRIu64
         " flushes, %" PRIu64 " reads, file %" PRId64 " bytes\n",
         what, nwrites, nzeros, nflushes, nreads, t_file_size(path));
out:
  vmdk_close(d);
}

int main(int argc, char **argv) {
  uint64_t seed = 20240611;
  const char *s = argc > 1 ? argv[1] : getenv("VMDKIT_SEED");
  if (s && *s)
    seed = strtoull(s, NULL, 0);
  uint64_t nops = 3000;
  const char *n = argc > 2 ? argv[2] : getenv("VMDKIT_OPS");
  if (n && *n)
    nops = strtoull(n, NULL, 0);
  printf("seed %" PRIu64 " (replay: VMDKIT_SEED=%" PRIu64 "), %" PRIu64
         " operations per image\n",
         seed, seed, nops);
  fflush(stdout);

  t_tmpdir("random-mirror");
  mirror = malloc(DISK);
  wbuf = malloc(300 * 1024);
  rbuf = malloc(4 * MiB);
  if (!mirror || !wbuf || !rbuf) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  run("grain 128", 128, false, seed, nops);
  run("grain 8", 8, false, seed + 1, nops);
  run("grain 16, zeroed_grain", 16, true, seed + 2, nops);
  free(mirror);
  free(wbuf);
  free(rbuf);
  if (!t_failures)
    printf("random mirror tests passed (seed %" PRIu64 ")\n", seed);
  else
    fprintf(stderr, "failed with seed %" PRIu64 "\n", seed);
  return t_exit_code();
}
