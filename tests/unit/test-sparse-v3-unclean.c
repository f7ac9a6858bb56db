/* SPDX-License-Identifier: BSD-3-Clause */
/* Hosted sparse header details: version 3 without compression opens
 * read-write (VMware writes such files; QEMU refuses to write them); the
 * uncleanShutdown byte is set while a writable open has changed the image
 * and cleared at a clean close; read-only opens never set it. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "testlib.h"
#include "vmdkit.h"

static int byte_at(const char *path, long off) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  int c = fseek(f, off, SEEK_SET) == 0 ? fgetc(f) : -1;
  fclose(f);
  return c;
}

static void set_byte(const char *path, long off, int v) {
  FILE *f = fopen(path, "r+b");
  if (f && fseek(f, off, SEEK_SET) == 0)
    fputc(v, f);
  if (f)
    fclose(f);
}

int main(void) {
  t_tmpdir("sparse-v3");
  const char *path = t_path("v3.vmdk");
  struct vmdk_create_options o = {.size_bytes = 4 << 20};
  struct vmdk_disk *d = vmdk_create(path, &o, 0);
  if (!CHECK(d != NULL, "create: %s", vmdk_get_error()))
    return t_exit_code();
  vmdk_close(d);
  set_byte(path, 4, 3); /* version 3, flags unchanged (no compression) */

  d = vmdk_open(path, 0);
  CHECK(d != NULL, "read-only open of version 3: %s", vmdk_get_error());
  vmdk_close(d);
  CHECK(byte_at(path, 72) == 0, "a read-only open set uncleanShutdown");

  d = vmdk_open(path, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "read-write open of version 3: %s", vmdk_get_error()))
    return t_exit_code();
  CHECK(byte_at(path, 72) == 0, "uncleanShutdown set before any change");
  CHECK(vmdk_pwrite(d, "version three", 13, 70000) == 0, "write: %s",
        vmdk_get_error());
  CHECK(byte_at(path, 72) == 1, "uncleanShutdown not set while the changed "
                                "image is open (byte %d)",
        byte_at(path, 72));
  struct vmdk_info info;
  CHECK(vmdk_flush(d) == 0 && byte_at(path, 72) == 1,
        "flush cleared uncleanShutdown while the image is still open");
  CHECK(vmdk_get_info(d, &info) == 0 && info.extents[0].version == 3,
        "info version %u", info.extents[0].version);
  CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
  CHECK(byte_at(path, 72) == 0, "uncleanShutdown still set after a clean close");
  CHECK(byte_at(path, 4) == 3, "the header version changed");

  d = vmdk_open(path, 0);
  char buf[13];
  CHECK(d && vmdk_pread(d, buf, 13, 70000) == 0 &&
            !memcmp(buf, "version three", 13),
        "data written to a version 3 image does not read back");
  CHECK(vmdk_get_info(d, &info) == 0 && !info.dirty, "reported dirty");
  vmdk_close(d);

  /* A file left dirty by a crash is reported dirty. */
  set_byte(path, 72, 1);
  d = vmdk_open(path, 0);
  CHECK(d && vmdk_get_info(d, &info) == 0 && info.dirty,
        "a set uncleanShutdown byte is not reported");
  vmdk_close(d);
  return t_exit_code();
}
