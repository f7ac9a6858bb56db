/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_create refuses a path that is a file of its own backing chain
 * before making any file: creating it would truncate the backing (found by
 * a helper's reproducer: the base was destroyed). */
#include <string.h>

#include "testlib.h"
#include "vmdkit.h"

int main(void) {
  t_tmpdir("create-over-backing");
  const char *base = t_path("base.vmdk");
  struct vmdk_create_options o = {.size_bytes = 1 << 20};
  struct vmdk_disk *d = vmdk_create(base, &o, 0);
  if (!CHECK(d != NULL, "create base: %s", vmdk_get_error()))
    return t_exit_code();
  CHECK(vmdk_pwrite(d, "precious", 8, 4096) == 0, "write: %s",
        vmdk_get_error());
  CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
  const char *mid = t_path("mid.vmdk");
  struct vmdk_create_options c = {.backing_file = "base.vmdk"};
  d = vmdk_create(mid, &c, 0);
  CHECK(d != NULL, "create mid: %s", vmdk_get_error());
  vmdk_close(d);

  size_t before_len, after_len;
  uint8_t *before = t_read_file(base, &before_len);
  const char *targets[] = {"base.vmdk", "mid.vmdk"};
  for (size_t i = 0; i < 2; i++) {
    struct vmdk_create_options bad = {.backing_file = "mid.vmdk"};
    d = vmdk_create(t_path(targets[i]), &bad, 0);
    CHECK(d == NULL, "creating %s over its own backing chain was accepted",
          targets[i]);
    CHECK(t_contains_ci(vmdk_get_error(), "own backing chain"),
          "%s: unexpected error: %s", targets[i], vmdk_get_error());
    vmdk_close(d);
  }
  uint8_t *after = t_read_file(base, &after_len);
  CHECK(before && after && before_len == after_len &&
            !memcmp(before, after, before_len),
        "the backing changed");
  free(before);
  free(after);
  d = vmdk_open(mid, 0);
  char buf[8];
  CHECK(d && vmdk_pread(d, buf, 8, 4096) == 0 && !memcmp(buf, "precious", 8),
        "the chain no longer reads the base's data");
  vmdk_close(d);
  return t_exit_code();
}
