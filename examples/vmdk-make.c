/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk-make IMAGE SUBFORMAT SIZE OFFSET < DATA: create IMAGE (SUBFORMAT is
 * a createType such as monolithicSparse, streamOptimized or
 * twoGbMaxExtentSparse; SIZE in bytes) and write stdin into its virtual
 * disk at byte OFFSET.
 *
 * An example of libvmdkit: build it against the installed library with
 *   cc -o vmdk-make vmdk-make.c $(pkg-config --cflags --libs vmdkit)
 * Every error is the library's one-line message; a failed run leaves no
 * image claiming data it does not hold (vmdk_close reports a failed final
 * flush). */
#include <vmdkit.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "Usage: vmdk-make IMAGE SUBFORMAT SIZE OFFSET < DATA\n");
    return 2;
  }
  struct vmdk_create_options opts = {0}; /* zero: every default */
  opts.size_bytes = strtoull(argv[3], NULL, 0);
  if (vmdk_subformat_from_name(argv[2], &opts.subformat) == -1) {
    fprintf(stderr, "vmdk-make: %s\n", vmdk_get_error());
    return 1;
  }
  struct vmdk_disk *disk = vmdk_create(argv[1], &opts, 0);
  if (!disk) {
    fprintf(stderr, "vmdk-make: %s\n", vmdk_get_error());
    return 1;
  }

  static char buf[1 << 16];
  uint64_t offset = strtoull(argv[4], NULL, 0);
  size_t n;
  int failed = 0;
  while (!failed && (n = fread(buf, 1, sizeof buf, stdin)) > 0) {
    if (vmdk_pwrite(disk, buf, n, offset) == -1)
      failed = 1;
    offset += n;
  }
  if (!failed && ferror(stdin)) {
    perror("vmdk-make: stdin");
    vmdk_close(disk);
    return 1;
  }
  if (failed)
    fprintf(stderr, "vmdk-make: %s\n", vmdk_get_error());
  /* The last flush happens here: only its success means the data is on
   * disk. */
  if (vmdk_close(disk) == -1 && !failed) {
    fprintf(stderr, "vmdk-make: %s\n", vmdk_get_error());
    failed = 1;
  }
  return failed;
}
