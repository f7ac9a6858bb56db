/* SPDX-License-Identifier: BSD-3-Clause */
/* tests/fault/scatter.c -- scattered writes in one process, for
 * tests/fault/powercut.sh (a workload that touches more grain tables than
 * the table cache holds, so dirty tables are evicted part of the way).
 *
 *   scatter write IMG N STRIDE BLOCK SEED FLUSH_AT
 *     opens IMG read-write and writes N blocks of BLOCK bytes, block I at
 *     I * STRIDE, in the "stamp" pattern of tests/fault/replay.py (every
 *     512-byte sector S of the disk holds 32 copies of le64(S) le64(SEED));
 *     after FLUSH_AT blocks (0: never) it calls vmdk_flush and, when it
 *     returned, prints "ack POS" with POS the size of $FAULT_LOG then (the
 *     flush is acknowledged at that point of the recording); then closes.
 *   scatter dump IMG N STRIDE BLOCK
 *     writes the N blocks as IMG reads them to stdout, concatenated.
 *
 * Exit 0, or 1 with a message on stderr.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vmdkit.h"

static int fail(const char *what) {
  fprintf(stderr, "scatter: %s: %s\n", what, vmdk_get_error());
  return 1;
}

static void stamp(unsigned char *b, uint64_t off, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) {
    uint64_t p = off + i, v = (p % 16) < 8 ? p / 512 : seed;
    b[i] = (unsigned char)(v >> (8 * (p % 8)));
  }
}

static long long log_size(void) {
  const char *log = getenv("FAULT_LOG");
  struct stat st;
  if (!log || stat(log, &st) != 0)
    return -1;
  return (long long)st.st_size;
}

int main(int argc, char **argv) {
  if (argc < 6 || (strcmp(argv[1], "write") == 0 && argc != 8) ||
      (strcmp(argv[1], "dump") == 0 && argc != 6)) {
    fprintf(stderr, "usage: scatter write IMG N STRIDE BLOCK SEED FLUSH_AT\n"
                    "       scatter dump IMG N STRIDE BLOCK\n");
    return 2;
  }
  bool writing = strcmp(argv[1], "write") == 0;
  uint64_t n = strtoull(argv[3], NULL, 0), stride = strtoull(argv[4], NULL, 0);
  size_t block = (size_t)strtoull(argv[5], NULL, 0);
  unsigned char *buf = malloc(block ? block : 1);
  if (!buf)
    return 1;
  struct vmdk_disk *d = vmdk_open(argv[2], writing ? VMDK_OPEN_RDWR : 0);
  if (!d)
    return fail(argv[2]);
  if (writing) {
    uint64_t seed = strtoull(argv[6], NULL, 0), flush_at = strtoull(argv[7], NULL, 0);
    for (uint64_t i = 0; i < n; i++) {
      stamp(buf, i * stride, block, seed);
      if (vmdk_pwrite(d, buf, block, i * stride) != 0)
        return fail("write");
      if (i + 1 == flush_at) {
        if (vmdk_flush(d) != 0)
          return fail("flush");
        printf("ack %lld\n", log_size());
        fflush(stdout);
      }
    }
    if (vmdk_close(d) != 0)
      return fail("close");
    return 0;
  }
  for (uint64_t i = 0; i < n; i++) {
    if (vmdk_pread(d, buf, block, i * stride) != 0)
      return fail("read");
    if (fwrite(buf, 1, block, stdout) != block)
      return 1;
  }
  vmdk_close(d);
  return fflush(stdout) == 0 ? 0 : 1;
}
