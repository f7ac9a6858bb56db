/* SPDX-License-Identifier: BSD-3-Clause */
/* VMDK_OPEN_NOCACHE (-t none): files are opened O_DIRECT where the file
 * system allows it, and unaligned transfers go through an aligned bounce
 * buffer.  Random unaligned writes on every writable layout, then a
 * reopen (also O_DIRECT) must read exactly the mirror; the files keep the
 * lengths a buffered writer would leave. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vmdkit.h"

#define SIZE (24u << 20)
#define BIG_MAX (3584u << 10) /* the largest of the big transfers */

int main(void) {
  t_tmpdir("direct-io");
  static const enum vmdk_subformat kinds[] = {
      VMDK_SUBFORMAT_MONOLITHIC_SPARSE, VMDK_SUBFORMAT_MONOLITHIC_FLAT,
      VMDK_SUBFORMAT_TWOGB_SPARSE, VMDK_SUBFORMAT_RAW};
  uint8_t *mirror = malloc(SIZE), *back = malloc(SIZE + 1),
          *chunk = malloc(BIG_MAX + 1);
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    char name[64];
    snprintf(name, sizeof name, "d%zu.vmdk", k);
    const char *path = t_path(name);
    struct vmdk_create_options o = {.size_bytes = SIZE, .subformat = kinds[k]};
    struct vmdk_disk *d = vmdk_create(path, &o, VMDK_OPEN_NOCACHE);
    if (!CHECK(d != NULL, "%s: create: %s", vmdk_subformat_name(kinds[k]),
               vmdk_get_error()))
      continue;
    memset(mirror, 0, SIZE);
    struct t_rng rng = {k + 1};
    for (int i = 0; i < 400; i++) {
      uint64_t off = t_below(&rng, SIZE);
      size_t len = 1 + (size_t)t_below(&rng, 300000);
      if (off + len > SIZE)
        len = (size_t)(SIZE - off);
      t_fill(chunk, len, (uint64_t)i * 7 + k);
      if (!CHECK(vmdk_pwrite(d, chunk, len, off) == 0,
                 "%s: write %zu at %" PRIu64 ": %s",
                 vmdk_subformat_name(kinds[k]), len, off, vmdk_get_error()))
        break;
      memcpy(mirror + off, chunk, len);
    }
    /* Transfers larger than the 1 MiB bounce window (lib/io.c), from
     * memory that is not aligned either: they go window by window. */
    for (int i = 0; i < 12; i++) {
      uint64_t off = t_below(&rng, SIZE);
      size_t len = (1u << 20) + (size_t)t_below(&rng, BIG_MAX - (1u << 20));
      if (off + len > SIZE)
        len = (size_t)(SIZE - off);
      t_fill(chunk + 1, len, (uint64_t)i * 11 + k + 1000);
      if (!CHECK(vmdk_pwrite(d, chunk + 1, len, off) == 0,
                 "%s: big write %zu at %" PRIu64 ": %s",
                 vmdk_subformat_name(kinds[k]), len, off, vmdk_get_error()))
        break;
      memcpy(mirror + off, chunk + 1, len);
    }
    CHECK(vmdk_pread(d, back + 1, SIZE - 7, 3) == 0, "big read: %s",
          vmdk_get_error());
    int64_t at0 = t_first_diff(back + 1, mirror + 3, SIZE - 7);
    CHECK(at0 < 0, "%s: an unaligned 24 MiB read differs at %" PRId64,
          vmdk_subformat_name(kinds[k]), at0);
    CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
    d = vmdk_open(path, VMDK_OPEN_NOCACHE);
    if (!CHECK(d != NULL, "reopen: %s", vmdk_get_error()))
      continue;
    CHECK(vmdk_pread(d, back, SIZE, 0) == 0, "read: %s", vmdk_get_error());
    int64_t at = t_first_diff(back, mirror, SIZE);
    CHECK(at < 0, "%s: differs from the mirror at %" PRId64,
          vmdk_subformat_name(kinds[k]), at);
    struct vmdk_check_result res;
    CHECK(vmdk_check(d, &res, NULL, NULL) == 0 && res.corruptions == 0 &&
              res.leaks == 0,
          "%s: check: %" PRIu64 " corruptions, %" PRIu64 " leaks",
          vmdk_subformat_name(kinds[k]), res.corruptions, res.leaks);
    vmdk_close(d);
    if (kinds[k] == VMDK_SUBFORMAT_RAW)
      CHECK(t_file_size(path) == SIZE, "raw file is %" PRId64 " bytes",
            t_file_size(path));
  }
  free(mirror);
  free(back);
  free(chunk);
  return t_exit_code();
}
