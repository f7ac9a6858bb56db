/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk-cat IMAGE: write the virtual disk of IMAGE (any VMDK subformat, a
 * chain, or a raw file) to stdout, byte for byte, as
 * `qemu-img convert -O raw IMAGE /dev/stdout` would.
 *
 * An example of libvmdkit: build it against the installed library with
 *   cc -o vmdk-cat vmdk-cat.c $(pkg-config --cflags --libs vmdkit)
 * Runs that read as zeros (vmdk_block_status) are written without reading
 * them. */
#include <vmdkit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1024 * 1024)

struct copy {
  struct vmdk_disk *disk;
  char *buf;
  int failed;
};

/* Called for each run of the disk in order: copy it to stdout. */
static int copy_run(void *opaque, const struct vmdk_run *run) {
  struct copy *c = opaque;
  for (uint64_t done = 0; done < run->length;) {
    size_t n = run->length - done < CHUNK ? (size_t)(run->length - done) : CHUNK;
    if (run->flags & VMDK_RUN_ZERO)
      memset(c->buf, 0, n);
    else if (vmdk_pread(c->disk, c->buf, n, run->offset + done) == -1) {
      fprintf(stderr, "vmdk-cat: %s\n", vmdk_get_error());
      c->failed = 1;
      return -1; /* stop the walk */
    }
    if (fwrite(c->buf, 1, n, stdout) != n) {
      perror("vmdk-cat: stdout");
      c->failed = 1;
      return -1;
    }
    done += n;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "Usage: vmdk-cat IMAGE > RAW\n");
    return 2;
  }
  struct copy c = {vmdk_open(argv[1], 0), malloc(CHUNK), 0};
  if (!c.disk || !c.buf) {
    fprintf(stderr, "vmdk-cat: %s\n", c.disk ? "out of memory" : vmdk_get_error());
    return 1;
  }
  if (vmdk_block_status(c.disk, 0, vmdk_get_size(c.disk), copy_run, &c) == -1 &&
      !c.failed)
    fprintf(stderr, "vmdk-cat: %s\n", vmdk_get_error()), c.failed = 1;
  if (fflush(stdout) != 0)
    perror("vmdk-cat: stdout"), c.failed = 1;
  vmdk_close(c.disk); /* read-only: nothing to flush */
  free(c.buf);
  return c.failed;
}
