/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_check_write: the checks vmdk_pwrite makes before it writes, without
 * the write.  On a descriptor with a 2 MiB RW flat extent, a 1 MiB RDONLY
 * flat extent, a 1 MiB ZERO extent and a 1 MiB NOACCESS extent:
 *  - ranges inside the RW extent (and empty ranges) are accepted;
 *  - a range that reaches into each other extent, even by one byte, is
 *    refused with the errno and message vmdk_pwrite gives for it, and
 *    vmdk_pwrite of the same range is refused the same way;
 *  - a range past the end of the disk (or whose end overflows) is EINVAL;
 *  - a read-only handle refuses everything with EROFS;
 *  - no check changes a byte of any file (the flat files and the
 *    descriptor, whose CID a real write would change). */
#include "testlib.h"

#define MiB (1024ull * 1024)

static uint8_t *rw0, *ro0, *desc0;
static size_t rw0_len, ro0_len, desc0_len;

static void files_unchanged(const char *when) {
  size_t n;
  uint8_t *b = t_read_file(t_path("rw.bin"), &n);
  CHECK(b && n == rw0_len && memcmp(b, rw0, n) == 0, "%s: rw.bin changed", when);
  free(b);
  b = t_read_file(t_path("ro.bin"), &n);
  CHECK(b && n == ro0_len && memcmp(b, ro0, n) == 0, "%s: ro.bin changed", when);
  free(b);
  b = t_read_file(t_path("d.vmdk"), &n);
  CHECK(b && n == desc0_len && memcmp(b, desc0, n) == 0, "%s: d.vmdk changed", when);
  free(b);
}

/* vmdk_check_write and vmdk_pwrite of [OFF, OFF+LEN) both fail with ERR
 * and a message containing WHAT; no file changes. */
static void refused(struct vmdk_disk *d, uint64_t off, uint64_t len, int err,
                    const char *what) {
  char msg[512];
  if (vmdk_check_write(d, len, off) == 0) {
    FAIL("check_write %llu+%llu: accepted", (unsigned long long)off,
         (unsigned long long)len);
    return;
  }
  CHECK(vmdk_get_errno() == err, "check_write %llu+%llu: errno %d, expected %d (%s)",
        (unsigned long long)off, (unsigned long long)len, vmdk_get_errno(), err,
        vmdk_get_error());
  CHECK(t_contains_ci(vmdk_get_error(), what), "check_write %llu+%llu: '%s' lacks '%s'",
        (unsigned long long)off, (unsigned long long)len, vmdk_get_error(), what);
  snprintf(msg, sizeof msg, "%s", vmdk_get_error());
  files_unchanged("after check_write");
  if (len <= 8 * MiB) {
    uint8_t *buf = malloc(len ? len : 1);
    memset(buf, 0xa5, len);
    CHECK(vmdk_pwrite(d, buf, len, off) != 0, "pwrite %llu+%llu accepted",
          (unsigned long long)off, (unsigned long long)len);
    CHECK(vmdk_get_errno() == err, "pwrite: errno %d, expected %d", vmdk_get_errno(), err);
    CHECK(strcmp(vmdk_get_error(), msg) == 0, "pwrite says '%s', check_write said '%s'",
          vmdk_get_error(), msg);
    free(buf);
    files_unchanged("after a refused pwrite");
  }
}

int main(void) {
  t_tmpdir("check-write");
  uint8_t *buf = malloc(2 * MiB);
  t_fill(buf, 2 * MiB, 7);
  if (t_write_file(t_path("rw.bin"), buf, 2 * MiB) != 0 ||
      t_write_file(t_path("ro.bin"), buf + MiB, MiB) != 0) {
    FAIL("cannot write the fixtures");
    return t_exit_code();
  }
  static const char desc[] =
      "# Disk DescriptorFile\nversion=1\nCID=abcdef01\nparentCID=ffffffff\n"
      "createType=\"monolithicFlat\"\n\n"
      "RW 4096 FLAT \"rw.bin\" 0\n"
      "RDONLY 2048 FLAT \"ro.bin\" 0\n"
      "RW 2048 ZERO\n"
      "NOACCESS 2048 FLAT \"none.bin\" 0\n\n"
      "ddb.adapterType = \"ide\"\n";
  if (t_write_file(t_path("d.vmdk"), desc, sizeof desc - 1) != 0) {
    FAIL("cannot write the descriptor");
    return t_exit_code();
  }
  rw0 = t_read_file(t_path("rw.bin"), &rw0_len);
  ro0 = t_read_file(t_path("ro.bin"), &ro0_len);
  desc0 = t_read_file(t_path("d.vmdk"), &desc0_len);

  struct vmdk_disk *d = vmdk_open(t_path("d.vmdk"), VMDK_OPEN_RDWR);
  if (!d) {
    FAIL("open: %s", vmdk_get_error());
    return t_exit_code();
  }
  CHECK_U64(vmdk_get_size(d), 5 * MiB);

  /* accepted: inside the RW extent, empty ranges anywhere inside */
  CHECK(vmdk_check_write(d, 2 * MiB, 0) == 0, "0+2M: %s", vmdk_get_error());
  CHECK(vmdk_check_write(d, 1, 2 * MiB - 1) == 0, "last RW byte: %s", vmdk_get_error());
  CHECK(vmdk_check_write(d, 0, 3 * MiB) == 0, "empty range: %s", vmdk_get_error());
  CHECK(vmdk_check_write(d, 0, 5 * MiB) == 0, "empty range at the end: %s", vmdk_get_error());
  files_unchanged("after accepted checks");

  /* refused: each kind of extent, by a whole range and by one byte */
  refused(d, 0, 3 * MiB, EROFS, "is RDONLY");
  refused(d, MiB, MiB + 1, EROFS, "is RDONLY");
  refused(d, 2 * MiB, 1, EROFS, "is RDONLY");
  refused(d, 3 * MiB, 512, EROFS, "ZERO extent");
  refused(d, 4 * MiB - 1, 2, EROFS, "ZERO extent");
  refused(d, 4 * MiB, MiB, EACCES, "is NOACCESS");
  /* the first refused extent is the one named */
  refused(d, 0, 5 * MiB, EROFS, "is RDONLY");
  /* past the end */
  refused(d, 5 * MiB, 1, EINVAL, "past the end");
  refused(d, 4 * MiB, 2 * MiB, EINVAL, "past the end");
  refused(d, 1, UINT64_MAX, EINVAL, "past the end");

  /* the RW part still takes writes after all that */
  CHECK(vmdk_pwrite(d, buf, 4096, 4096) == 0, "pwrite: %s", vmdk_get_error());
  CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());

  /* read-only handle */
  free(desc0);
  free(rw0);
  desc0 = t_read_file(t_path("d.vmdk"), &desc0_len);
  rw0 = t_read_file(t_path("rw.bin"), &rw0_len);
  d = vmdk_open(t_path("d.vmdk"), 0);
  if (!d) {
    FAIL("read-only open: %s", vmdk_get_error());
    return t_exit_code();
  }
  refused(d, 0, 4096, EROFS, "read-only");
  vmdk_close(d);
  files_unchanged("after the read-only checks");

  free(buf);
  free(rw0);
  free(ro0);
  free(desc0);
  return t_exit_code();
}
