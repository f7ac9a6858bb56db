/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit-example: write the virtual disk of IMAGE to stdout as raw
 * bytes, and describe the image and its runs on stderr.
 *
 *   cc vmdkit-example.c -o vmdkit-example \
 *       $(pkg-config --cflags --libs vmdkit)
 *   ./vmdkit-example disk.vmdk > disk.raw
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdkit.h>

#define CHUNK (1024 * 1024) /* bytes per vmdk_pread() */

/* vmdk_block_status() callback: keep the first run, then stop. */
static int first_run(void *opaque, const struct vmdk_run *run) {
  *(struct vmdk_run *)opaque = *run;
  return 1;
}

static int copy_out(struct vmdk_disk *disk, unsigned char *buf) {
  uint64_t size = vmdk_get_size(disk), offset = 0;

  while (offset < size) {
    struct vmdk_run run;
    if (vmdk_block_status(disk, offset, size - offset, first_run,
                          &run) == -1)
      return -1;
    fprintf(stderr, "%12" PRIu64 " %12" PRIu64 " %-4s %-4s depth %d\n",
            run.offset, run.length,
            run.flags & VMDK_RUN_DATA ? "data" : "hole",
            run.flags & VMDK_RUN_ZERO ? "zero" : "", run.depth);

    uint64_t end = run.offset + run.length;
    while (offset < end) {
      size_t n = end - offset < CHUNK ? (size_t)(end - offset) : CHUNK;
      if (run.flags & VMDK_RUN_ZERO)
        memset(buf, 0, n); /* nothing to read */
      else if (vmdk_pread(disk, buf, n, offset) == -1)
        return -1;
      if (fwrite(buf, 1, n, stdout) != n) {
        perror("stdout");
        return -2;
      }
      offset += n;
    }
  }
  return 0;
}

int main(int argc, char *argv[]) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s IMAGE > RAW\n", argv[0]);
    return 2;
  }

  /* Read-only: nothing is ever written to any file of the image. */
  struct vmdk_disk *disk = vmdk_open(argv[1], VMDK_OPEN_CONFINE);
  if (disk == NULL) {
    fprintf(stderr, "%s (errno %d)\n", vmdk_get_error(),
            vmdk_get_errno());
    return 1;
  }

  struct vmdk_info info;
  if (vmdk_get_info(disk, &info) == -1) {
    fprintf(stderr, "%s\n", vmdk_get_error());
    vmdk_close(disk);
    return 1;
  }
  fprintf(stderr, "%s: %s %s, %" PRIu64 " bytes (library %s)\n",
          argv[1], info.format,
          info.create_type ? info.create_type : "", info.size_bytes,
          vmdk_version());
  for (size_t i = 0; i < info.n_extents; i++)
    fprintf(stderr, "  extent %zu: %s %s, %" PRIu64 " bytes, %s\n", i,
            info.extents[i].access, info.extents[i].type,
            info.extents[i].size_bytes,
            info.extents[i].filename ? info.extents[i].filename : "-");
  for (struct vmdk_disk *b = vmdk_get_backing(disk); b;
       b = vmdk_get_backing(b))
    fprintf(stderr, "  backing: %" PRIu64 " bytes\n", vmdk_get_size(b));

  unsigned char *buf = malloc(CHUNK);
  if (buf == NULL) {
    perror("malloc");
    vmdk_close(disk);
    return 1;
  }
  int r = copy_out(disk, buf);
  free(buf);
  if (r == -1)
    fprintf(stderr, "%s\n", vmdk_get_error());
  if (fflush(stdout) == EOF) {
    perror("stdout");
    r = -2;
  }

  /* Read-only, so this flushes nothing; it can still fail. */
  if (vmdk_close(disk) == -1) {
    fprintf(stderr, "%s\n", vmdk_get_error());
    r = -1;
  }
  return r == 0 ? 0 : 1;
}
