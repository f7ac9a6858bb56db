/* SPDX-License-Identifier: BSD-3-Clause */
/* Fuzz target: writes on a valid image never lose or invent data.
 *
 * Each input makes a fresh small image in the private folder and runs the
 * operations it encodes against it and against an in-memory mirror:
 *
 *   byte 0: bits 0-1 the layout: 0 monolithicSparse, 1 monolithicSparse
 *           with the zeroed-grain flag, 2 streamOptimized, 3 monolithicFlat;
 *           bit 2: 64 KiB grains (else 4 KiB);
 *           bit 3: a copy-on-write child of a sparse backing image that
 *           holds a pattern (sparse layouts only);
 *           bit 4: open with VMDK_OPEN_UNSAFE (flush does not sync).
 *   then up to MAX_OPS operations of OP_BYTES bytes each:
 *     op, offset (u24, taken modulo the disk size + 1), length (u16, times
 *     16 when bit 7 of op is set; cut at the end of the disk), fill byte.
 *     op & 7: 0-2 pwrite, 3 zero, 4 pread (compared with the mirror),
 *     5 flush, 6 close and reopen read-write, 7 pwrite of whole grains.
 *
 * Written bytes are a pattern of the fill byte and the position (fill 0:
 * zeros).  A write or zero that fails must be a refusal (streamOptimized
 * refuses to rewrite a grain already in the file) and must change nothing;
 * every other failure is a finding.  At the end the image is closed (which
 * must succeed), reopened read-only and read whole: it must read as the
 * mirror, and vmdk_check must report no corruption.
 */
#include "fuzz_common.h"

#define MAX_OPS 48
#define OP_BYTES 7
#define DISK_BYTES (1024u * 1024u + 7u * 512u) /* the last grain is partial */
#define BASE_NAME "base.vmdk"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t mirror[DISK_BYTES];
static uint8_t wbuf[DISK_BYTES], rbuf[DISK_BYTES];
static uint8_t noise[2 * DISK_BYTES]; /* fixed pseudo-random bytes */

/* Fill BUF with the LEN bytes written at OFF for FILL: zeros for fill 0,
 * else a window of the noise chosen by FILL (cheap: one memcpy). */
static void pattern(uint8_t *buf, uint8_t fill, uint64_t off, uint64_t len) {
  if (!noise[0]) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof noise; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      noise[i] = (uint8_t)(x >> 24) | 1; /* never 0: "not made yet" */
    }
  }
  if (!fill)
    memset(buf, 0, len);
  else
    memcpy(buf, noise + off + (uint64_t)fill * 4099 % DISK_BYTES, len);
}

/* What the backing image holds: a few patterned ranges. */
static const struct {
  uint64_t off, len;
  uint8_t fill;
} base_ranges[] = {
    {0, 5000, 0x11}, {300000, 70000, 0x22}, {DISK_BYTES - 9000, 9000, 0x33}};

static struct vmdk_disk *make_image(const char *path, uint8_t cfg,
                                    unsigned flags, uint64_t *grain) {
  struct vmdk_create_options o = {0};
  o.size_bytes = DISK_BYTES;
  o.grain_sectors = (cfg & 4) ? 128 : 8;
  *grain = o.grain_sectors * 512ull;
  o.threads = 1;
  o.compression_level = 1;
  switch (cfg & 3) {
  case 0:
    o.subformat = VMDK_SUBFORMAT_MONOLITHIC_SPARSE;
    break;
  case 1:
    o.subformat = VMDK_SUBFORMAT_MONOLITHIC_SPARSE;
    o.zeroed_grain = 1;
    break;
  case 2:
    o.subformat = VMDK_SUBFORMAT_STREAM_OPTIMIZED;
    break;
  default:
    o.subformat = VMDK_SUBFORMAT_MONOLITHIC_FLAT;
    *grain = 4096;
    break;
  }
  memset(mirror, 0, sizeof mirror);
  if ((cfg & 8) && (cfg & 3) < 2) {
    char base[512];
    fz_path(base, sizeof base, BASE_NAME);
    struct vmdk_create_options b = {0};
    b.size_bytes = DISK_BYTES;
    b.grain_sectors = 16;
    struct vmdk_disk *bd = vmdk_create(base, &b, flags);
    FZ_ASSERT(bd, "create %s: %s", base, vmdk_get_error());
    for (size_t i = 0; i < sizeof base_ranges / sizeof *base_ranges; i++) {
      uint64_t off = base_ranges[i].off, len = base_ranges[i].len;
      pattern(mirror + off, base_ranges[i].fill, off, len);
      FZ_ASSERT(vmdk_pwrite(bd, mirror + off, len, off) == 0, "base: %s",
                vmdk_get_error());
    }
    FZ_ASSERT(vmdk_close(bd) == 0, "close base: %s", vmdk_get_error());
    o.backing_file = BASE_NAME;
    o.backing_format = VMDK_FORMAT_VMDK;
  }
  struct vmdk_disk *d = vmdk_create(path, &o, flags);
  FZ_ASSERT(d, "create %s: %s", path, vmdk_get_error());
  return d;
}

/* Compare LEN bytes at OFF of D with the mirror. */
static void compare(struct vmdk_disk *d, uint64_t off, size_t len,
                    const char *when, unsigned op) {
  memset(rbuf, 0x5a, len);
  FZ_ASSERT(vmdk_pread(d, rbuf, len, off) == 0, "read %zu at %llu (%s): %s",
            len, (unsigned long long)off, when, vmdk_get_error());
  if (memcmp(rbuf, mirror + off, len) == 0)
    return;
  for (size_t i = 0; i < len; i++)
    FZ_ASSERT(rbuf[i] == mirror[off + i],
              "%s, after op %u: byte %llu reads 0x%02x, expected 0x%02x", when,
              op, (unsigned long long)(off + i), rbuf[i], mirror[off + i]);
}

/* A failed write or zero: must be a refusal that changed nothing, neither
 * what the disk reads nor any byte of its files (S: taken before). */
static void refused(struct vmdk_disk *d, uint64_t off, size_t len, bool stream,
                    unsigned op, struct snapshot *s) {
  int err = vmdk_get_errno();
  FZ_ASSERT(stream && err == EROFS, "op %u at %llu, %zu bytes failed: %s", op,
            (unsigned long long)off, len, vmdk_get_error());
  compare(d, off, len, "after a refused write", op);
  snap_verify(s, "a refused write");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t cfg = data[0];
  bool stream = (cfg & 3) == 2;
  unsigned flags = VMDK_OPEN_CONFINE | ((cfg & 16) ? VMDK_OPEN_UNSAFE : 0);
  fz_tmpdir();
  fz_clear();
  char path[512];
  fz_path(path, sizeof path, FZ_MAIN_NAME);
  uint64_t grain;
  struct vmdk_disk *d = make_image(path, cfg, flags, &grain);

  const uint8_t *p = data + 1;
  size_t left = size - 1;
  for (unsigned op = 0; op < MAX_OPS && left >= OP_BYTES;
       op++, p += OP_BYTES, left -= OP_BYTES) {
    uint64_t off = ((uint64_t)p[1] | (uint64_t)p[2] << 8 |
                    (uint64_t)p[3] << 16) % (DISK_BYTES + 1);
    uint64_t len = (uint64_t)p[4] | (uint64_t)p[5] << 8;
    if (p[0] & 0x80)
      len *= 16;
    uint8_t fill = p[6];
    struct snapshot snap = {0};
    if (stream && ((p[0] & 7) <= 3 || (p[0] & 7) == 7)) /* may be refused */
      snap_take(&snap);
    switch (p[0] & 7) {
    case 7: /* whole grains */
      off -= off % grain;
      len = (len % 4 + 1) * grain;
      /* fall through */
    case 0:
    case 1:
    case 2:
      if (len > DISK_BYTES - off)
        len = DISK_BYTES - off;
      pattern(wbuf, fill, off, len);
      if (vmdk_pwrite(d, wbuf, len, off) == 0)
        memcpy(mirror + off, wbuf, len);
      else
        refused(d, off, len, stream, op, &snap);
      break;
    case 3:
      if (len > DISK_BYTES - off)
        len = DISK_BYTES - off;
      if (vmdk_zero(d, len, off) == 0)
        memset(mirror + off, 0, len);
      else
        refused(d, off, len, stream, op, &snap);
      break;
    case 4:
      if (len > DISK_BYTES - off)
        len = DISK_BYTES - off;
      compare(d, off, len, "read", op);
      break;
    case 5:
      FZ_ASSERT(vmdk_flush(d) == 0, "flush: %s", vmdk_get_error());
      break;
    case 6:
      FZ_ASSERT(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
      d = vmdk_open_format(path, VMDK_FORMAT_VMDK, VMDK_OPEN_RDWR | flags);
      FZ_ASSERT(d, "reopen: %s", vmdk_get_error());
      break;
    }
    snap_free(&snap);
  }
  FZ_ASSERT(vmdk_close(d) == 0, "close: %s", vmdk_get_error());

  d = vmdk_open_format(path, VMDK_FORMAT_VMDK, VMDK_OPEN_CONFINE);
  FZ_ASSERT(d, "final open: %s", vmdk_get_error());
  FZ_ASSERT(vmdk_get_size(d) == DISK_BYTES, "size %llu",
            (unsigned long long)vmdk_get_size(d));
  compare(d, 0, DISK_BYTES, "after reopening", MAX_OPS);
  struct vmdk_check_result res;
  FZ_ASSERT(vmdk_check(d, &res, NULL, NULL) == 0, "check: %s",
            vmdk_get_error());
  FZ_ASSERT(res.corruptions == 0, "check finds %llu corruptions",
            (unsigned long long)res.corruptions);
  vmdk_close(d);
  fz_clear();
  return 0;
}
