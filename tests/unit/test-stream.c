/* SPDX-License-Identifier: BSD-3-Clause */
/* streamOptimized through the API: within one open, random unaligned writes
 * (in any order) and zeroing over grains not yet written accumulate in
 * memory and read back before and after the flush; a grain already in the
 * stream is refused without changing anything; after close and reopen the
 * disk equals the mirror; appends in a second session keep it so. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vmdkit.h"

#define SIZE (8u << 20)
#define GRAIN 65536u

static void compare(struct vmdk_disk *d, const uint8_t *mirror,
                    const char *when) {
  uint8_t *buf = malloc(SIZE);
  if (!CHECK(vmdk_pread(d, buf, SIZE, 0) == 0, "%s: read: %s", when,
             vmdk_get_error())) {
    free(buf);
    return;
  }
  int64_t at = t_first_diff(buf, mirror, SIZE);
  CHECK(at < 0, "%s: disk differs from the mirror at byte %" PRId64, when, at);
  free(buf);
}

int main(void) {
  t_tmpdir("stream");
  const char *path = t_path("s.vmdk");
  uint8_t *mirror = calloc(1, SIZE);
  uint8_t *chunk = malloc(3 * GRAIN);
  struct t_rng rng = {20261125};
  struct vmdk_create_options o = {
      .size_bytes = SIZE, .subformat = VMDK_SUBFORMAT_STREAM_OPTIMIZED};
  struct vmdk_disk *d = vmdk_create(path, &o, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "create: %s", vmdk_get_error()))
    return t_exit_code();

  /* Session 1: grains 0..63 only, any order, unaligned, some zeroing. */
  for (int i = 0; i < 300; i++) {
    uint64_t off = t_below(&rng, 64 * GRAIN - 1);
    size_t len = 1 + (size_t)t_below(&rng, 2 * GRAIN);
    if (off + len > 64 * GRAIN)
      len = (size_t)(64 * GRAIN - off);
    if (i % 7 == 3) {
      CHECK(vmdk_zero(d, len, off) == 0, "zero %zu at %" PRIu64 ": %s", len,
            off, vmdk_get_error());
      memset(mirror + off, 0, len);
    } else {
      t_fill(chunk, len, (uint64_t)i);
      CHECK(vmdk_pwrite(d, chunk, len, off) == 0, "write %zu at %" PRIu64 ": %s",
            len, off, vmdk_get_error());
      memcpy(mirror + off, chunk, len);
    }
  }
  compare(d, mirror, "session 1 before flush");
  CHECK(vmdk_flush(d) == 0, "flush: %s", vmdk_get_error());
  compare(d, mirror, "session 1 after flush");
  CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());

  /* Reopen: the same bytes; a written grain is refused, file unchanged. */
  d = vmdk_open(path, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "reopen: %s", vmdk_get_error()))
    return t_exit_code();
  compare(d, mirror, "reopened");
  size_t before_len, after_len;
  uint8_t *before = t_read_file(path, &before_len);
  CHECK(vmdk_pwrite(d, chunk, 100, 5 * GRAIN + 10) != 0,
        "rewriting grain 5 of a stream was accepted");
  CHECK(t_contains_ci(vmdk_get_error(), "cannot be rewritten"),
        "unexpected error: %s", vmdk_get_error());
  uint8_t *after = t_read_file(path, &after_len);
  CHECK(before_len == after_len && !memcmp(before, after, before_len),
        "a refused stream write changed the file");
  free(before);
  free(after);

  /* Session 2: append grains 100.. in descending order, unaligned. */
  for (int i = 0; i < 20; i++) {
    uint64_t off = (uint64_t)(120 - i) * GRAIN + 1000;
    t_fill(chunk, 5000, 1000u + (uint64_t)i);
    CHECK(vmdk_pwrite(d, chunk, 5000, off) == 0, "append at %" PRIu64 ": %s",
          off, vmdk_get_error());
    memcpy(mirror + off, chunk, 5000);
  }
  t_fill(chunk, GRAIN, 77);
  CHECK(vmdk_pwrite(d, chunk, GRAIN, SIZE - GRAIN) == 0, "last grain: %s",
        vmdk_get_error());
  memcpy(mirror + SIZE - GRAIN, chunk, GRAIN);
  CHECK(vmdk_close(d) == 0, "close 2: %s", vmdk_get_error());

  d = vmdk_open(path, 0);
  if (!CHECK(d != NULL, "reopen 2: %s", vmdk_get_error()))
    return t_exit_code();
  compare(d, mirror, "after appending");
  struct vmdk_check_result res;
  CHECK(vmdk_check(d, &res, NULL, NULL) == 0 && res.corruptions == 0,
        "check: %" PRIu64 " corruptions", res.corruptions);
  vmdk_close(d);
  free(mirror);
  free(chunk);
  return t_exit_code();
}
