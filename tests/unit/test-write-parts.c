/* SPDX-License-Identifier: BSD-3-Clause */
/* Large writes on network and user-space file systems (lib/io.c): a
 * vf_pwrite of 1 MiB or more on a file marked remote goes as up to 8
 * concurrent pwrites of disjoint parts.  Lengths that are and are not
 * multiples of the parts' 64 KiB unit, at aligned and odd offsets, some
 * overlapping earlier ones, must leave the file byte-equal to a mirror
 * and f->size equal to the file's length; a write that fails (a read-only
 * descriptor) reports one error naming the file and leaves f->size
 * alone.  The remote mark is set by hand, so this runs on any file system
 * (the interop test remote-fs covers the detection on a FUSE mount).
 * Under ASan, a part past the part array would be caught. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testlib.h"

#define SIZE (40u << 20)
#define MiB (1u << 20)

int main(void) {
  t_tmpdir("write-parts");
  const char *path = t_path("remote.raw");
  uint8_t *mirror = calloc(1, SIZE), *back = malloc(SIZE),
          *chunk = malloc(18 * MiB);
  struct vfile *f = vf_create(path, 0);
  if (!CHECK(f && mirror && back && chunk, "create: %s", vmdk_get_error()))
    return t_exit_code();
  f->remote = true;
  static const size_t lens[] = {MiB,
                                MiB + 1,
                                MiB + 65535,
                                MiB + 65536,
                                3 * 8 * 65536 + 1,
                                3 * MiB + 12345,
                                8 * 65536 * 7 + 7,
                                16 * MiB - 1,
                                17 * MiB + 4097,
                                2 * MiB - 65536 * 8 + 1};
  static const uint64_t offs[] = {0, 777, 3 * 4096 + 1, 5 * MiB};
  uint64_t end = 0;
  int k = 0;
  for (size_t i = 0; i < sizeof lens / sizeof *lens; i++)
    for (size_t j = 0; j < sizeof offs / sizeof *offs; j++, k++) {
      uint64_t off = offs[j] + (uint64_t)i * 1234567u;
      size_t len = lens[i];
      if (!CHECK(off + len <= SIZE, "test bug: %zu at %" PRIu64, len, off))
        continue;
      t_fill(chunk, len, (uint64_t)k + 1);
      if (!CHECK(vf_pwrite(f, chunk, len, off) == 0,
                 "write %zu at %" PRIu64 ": %s", len, off, vmdk_get_error()))
        continue;
      memcpy(mirror + off, chunk, len);
      if (off + len > end)
        end = off + len;
      CHECK_U64(f->size, end);
    }
  CHECK(vf_sync(f) == 0, "sync: %s", vmdk_get_error());
  CHECK(vf_close(f) == 0, "close: %s", vmdk_get_error());
  CHECK(t_file_size(path) == (int64_t)end,
        "file is %" PRId64 " bytes, want %" PRIu64, t_file_size(path), end);
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0 && pread(fd, back, end, 0) == (ssize_t)end, "read back");
  int64_t at = t_first_diff(back, mirror, end);
  CHECK(at < 0, "differs from the mirror at %" PRId64, at);
  if (fd >= 0)
    close(fd);

  /* A failing write: every part fails (EBADF on a read-only descriptor);
   * the error names the file and the call reports failure. */
  f = vf_open(path, false, 0);
  if (CHECK(f != NULL, "reopen: %s", vmdk_get_error())) {
    f->remote = true;
    uint64_t size = f->size;
    CHECK(vf_pwrite(f, chunk, 3 * MiB + 5, end - 100) != 0,
          "a write on a read-only descriptor succeeded");
    CHECK_U64(f->size, size); /* nothing landed: the length stays */
    CHECK(strstr(vmdk_get_error(), path) != NULL,
          "the error does not name the file: %s", vmdk_get_error());
    vf_close(f);
  }
  free(mirror);
  free(back);
  free(chunk);
  return t_exit_code();
}
