/* SPDX-License-Identifier: BSD-3-Clause */
/* Failing I/O, in process: this test defines pwrite, ftruncate, fallocate
 * and fdatasync (the library is linked statically into it, so its calls
 * come here) and makes the N-th of them fail, for every N, while the
 * library writes into a copy-on-write child over a patterned base.
 *
 * For each layout, each errno (ENOSPC, EIO) and each N from 1 until the
 * operation no longer reaches the N-th call:
 *  - a transient fault (only call N fails): the failed operation returns
 *    -1 and the handle goes on: either a second try of the same write
 *    succeeds, or (as the CLI does) the handle is closed right away; the
 *    close succeeds (unless the fault hit a sync: then the close must
 *    fail too, point 2 below); after a retry the image reads exactly the
 *    written bytes;
 *  - a lasting fault (call N and every later one fails, a full disk): the
 *    write fails (and the close, when it has anything to write);
 * and after either, reopened: vmdk_check finds nothing or only leaks, and
 * every 512-byte sector reads what it read before or what the write put
 * there -- never zeros or stale bytes where the base's pattern was.
 *
 * Also: after an fdatasync fails, every later vmdk_flush and vmdk_close of
 * that handle fails, saying data may be lost, even when the later syncs
 * succeed (the kernel may have dropped the pages it could not write).
 *
 * tests/fault/ does the same from outside (an LD_PRELOAD shim under the
 * CLI, the plugin and QEMU); this one is quick, exact about which call
 * failed, and runs in the sanitizer build too.
 */
#include "testlib.h"

#include <sys/syscall.h>

#include "internal.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ---- the calls that change files ---------------------------------------- */

static uint64_t fi_count;   /* counted calls since armed */
static uint64_t fi_at;      /* the call to fail (0: none) */
static bool fi_sticky;      /* every call from fi_at on fails */
static bool fi_syncs_only;  /* count (and so fail) only fdatasync calls */
static int fi_errno;
static bool fi_armed;
static bool fi_hit_sync;    /* a failed call was an fdatasync */
static char fi_sync_path[4096]; /* of the file whose fdatasync failed */

/* Count a call; true when it must fail (errno set). */
static bool fail_now(bool is_sync) {
  if (!fi_armed || (fi_syncs_only && !is_sync))
    return false;
  uint64_t n = ++fi_count;
  if (fi_at && (n == fi_at || (fi_sticky && n > fi_at))) {
    errno = fi_errno;
    return true;
  }
  return false;
}

int fdatasync(int fd) {
  if (fail_now(true)) {
    int err = errno;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, fi_sync_path, sizeof fi_sync_path - 1);
    fi_sync_path[n > 0 ? n : 0] = 0;
    fi_hit_sync = true;
    errno = err;
    return -1;
  }
  return (int)syscall(SYS_fdatasync, fd);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  if (fail_now(false))
    return -1;
  return syscall(SYS_pwrite64, fd, buf, n, off);
}
int ftruncate(int fd, off_t len) {
  if (fail_now(false))
    return -1;
  return (int)syscall(SYS_ftruncate, fd, len);
}
int fallocate(int fd, int mode, off_t off, off_t len) {
  if (fail_now(false))
    return -1;
  return (int)syscall(SYS_fallocate, fd, mode, off, len);
}

static void arm(uint64_t at, int err, bool sticky, bool syncs_only) {
  fi_count = 0;
  fi_at = at;
  fi_errno = err;
  fi_sticky = sticky;
  fi_syncs_only = syncs_only;
  fi_hit_sync = false;
  fi_armed = true;
}

static void disarm(void) {
  fi_armed = false;
}

/* ---- fixtures ------------------------------------------------------------- */

#define DISK (8 * MiB)
#define BASE_BYTE 0x5a

struct layout {
  const char *name;
  enum vmdk_subformat sub;
  uint32_t grain;
  int zeroed_grain;
};
static const struct layout layouts[] = {
    {"child-sparse", VMDK_SUBFORMAT_MONOLITHIC_SPARSE, 16, 0},
    {"child-sparse-zeroed-grain", VMDK_SUBFORMAT_MONOLITHIC_SPARSE, 128, 1},
    {"child-twogb-sparse", VMDK_SUBFORMAT_TWOGB_SPARSE, 8, 0},
};

/* The writes: one within a table, one across a table edge (a new table is
 * allocated), one zeroing. */
struct op {
  bool zero;
  uint64_t off, len;
};
static const struct op ops[] = {
    {false, 1000000, 200000},
    {false, 4 * MiB - 70000, 150001}, /* a table edge at grain 8 and 16 */
    {true, 2 * MiB + 4096, 3 * 65536},
};

static uint8_t *base_img, *before, *after, *got, *data;

/* An empty child of L over BASE (every byte BASE_BYTE, raw, made once). */
static int make_fixture(const struct layout *l, const char *base,
                        const char *child) {
  if (t_file_size(base) != (int64_t)DISK) {
    memset(base_img, BASE_BYTE, DISK);
    if (t_write_file(base, base_img, DISK) != 0)
      return -1;
  }
  struct vmdk_create_options o = {.subformat = l->sub,
                                  .grain_sectors = l->grain,
                                  .backing_file = base,
                                  .backing_format = VMDK_FORMAT_RAW,
                                  .zeroed_grain = l->zeroed_grain};
  struct vmdk_disk *d = vmdk_create(child, &o, VMDK_OPEN_RDWR);
  if (!d)
    return -1;
  return vmdk_close(d);
}

static int do_op(struct vmdk_disk *d, const struct op *o) {
  return o->zero ? vmdk_zero(d, o->len, o->off)
                 : vmdk_pwrite(d, data, o->len, o->off);
}

/* Reopen CHILD and check it: check clean or leaks, each sector old or
 * new.  Returns the number of problems. */
static unsigned verify(const char *child, const char *what) {
  unsigned bad = 0;
  struct vmdk_disk *d = vmdk_open(child, 0);
  if (!CHECK(d != NULL, "%s: reopen: %s", what, vmdk_get_error()))
    return 1;
  struct vmdk_check_result res;
  int rc = vmdk_check(d, &res, NULL, NULL);
  if (!CHECK(rc == 0 && res.corruptions == 0,
             "%s: check: rc %d, %" PRIu64 " corruptions (%s)", what, rc,
             res.corruptions, vmdk_get_error()))
    bad++;
  if (!CHECK(vmdk_pread(d, got, DISK, 0) == 0, "%s: read: %s", what,
             vmdk_get_error()))
    bad++;
  for (uint64_t s = 0; s < DISK / 512; s++) {
    const uint8_t *g = got + s * 512;
    if (memcmp(g, before + s * 512, 512) && memcmp(g, after + s * 512, 512)) {
      unsigned i = 0;
      while (i < 511 && (g[i] == before[s * 512 + i] ||
                         g[i] == after[s * 512 + i]))
        i++;
      FAIL("%s: sector %" PRIu64 " reads neither its old nor its new bytes "
           "(byte %u is %#x, old %#x, new %#x)",
           what, s, i, g[i], before[s * 512 + i], after[s * 512 + i]);
      bad++;
      break;
    }
  }
  vmdk_close(d);
  return bad;
}

/* ---- sticky sync failure --------------------------------------------------- */

static void test_sticky_sync(void) {
  const char *img = t_path("sticky.vmdk");
  struct vmdk_create_options o = {.size_bytes = 8 * MiB};
  struct vmdk_disk *d = vmdk_create(img, &o, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "create: %s", vmdk_get_error()))
    return;
  t_fill(data, 65536, 1);
  CHECK(vmdk_pwrite(d, data, 65536, 0) == 0, "write: %s", vmdk_get_error());
  CHECK(vmdk_flush(d) == 0, "first flush: %s", vmdk_get_error());
  CHECK(vmdk_pwrite(d, data, 65536, 65536) == 0, "write: %s",
        vmdk_get_error());
  arm(1, EIO, false, true); /* the next fdatasync fails, later ones work */
  int r = vmdk_flush(d);
  disarm();
  CHECK(fi_hit_sync, "the flush made no fdatasync");
  CHECK(r != 0, "a flush whose fdatasync failed succeeded");
  CHECK(t_contains_ci(vmdk_get_error(), "may be lost"),
        "the failed flush does not say data may be lost: %s",
        vmdk_get_error());
  /* The syncs work again, but the handle remembers. */
  CHECK(vmdk_flush(d) != 0, "a flush after a failed fdatasync succeeded");
  CHECK(t_contains_ci(vmdk_get_error(), "earlier fdatasync failed"),
        "the second flush does not name the earlier failure: %s",
        vmdk_get_error());
  CHECK(vmdk_close(d) != 0, "close after a failed fdatasync succeeded");
  CHECK(t_contains_ci(vmdk_get_error(), "may be lost"),
        "the failed close does not say data may be lost: %s",
        vmdk_get_error());
  /* Still an image: nothing worse than leaks, the first flush's data. */
  d = vmdk_open(img, 0);
  if (CHECK(d != NULL, "reopen: %s", vmdk_get_error())) {
    struct vmdk_check_result res;
    CHECK(vmdk_check(d, &res, NULL, NULL) == 0 && res.corruptions == 0,
          "check after the failed sync: %" PRIu64 " corruptions",
          res.corruptions);
    CHECK(vmdk_pread(d, got, 65536, 0) == 0 && memcmp(got, data, 65536) == 0,
          "the data flushed before the failure is gone");
    vmdk_close(d);
  }
}

/* ---- every call position ----------------------------------------------------- */

/* One fault at call AT of op O on layout L; returns false when the
 * operation made fewer than AT calls (the positions are exhausted). */
static bool one_position(const struct layout *l, const struct op *o,
                         uint64_t at, int err, bool sticky, bool retry,
                         unsigned *wrong) {
  char what[160];
  snprintf(what, sizeof what, "%s: %s of %" PRIu64 " at %" PRIu64
           ": %s at call %" PRIu64 "%s",
           l->name, o->zero ? "zero" : "write", o->len, o->off,
           strerror(err), at,
           sticky ? " and after" : retry ? ", retried" : ", then closed");
  const char *base = t_path("base.raw"), *child = t_path("child.vmdk");
  if (make_fixture(l, base, child) != 0) {
    FAIL("%s: fixture: %s", what, vmdk_get_error());
    (*wrong)++;
    return false;
  }
  struct vmdk_disk *d = vmdk_open(child, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "%s: open: %s", what, vmdk_get_error())) {
    (*wrong)++;
    return false;
  }
  arm(at, err, sticky, false);
  int r1 = do_op(d, o);
  int rf = r1 == 0 ? vmdk_flush(d) : -1;
  bool reached = fi_count >= at;
  unsigned bad = 0;
  if (!reached) { /* fewer calls than AT: the last position was AT - 1 */
    disarm();
    CHECK(r1 == 0 && rf == 0, "%s: failed without a fault: %s", what,
          vmdk_get_error());
    vmdk_close(d);
    return false;
  }
  if (r1 == 0 && rf == 0) {
    FAIL("%s: the operation and its flush succeeded although a call failed",
         what);
    bad++;
  } else if (!t_contains_ci(vmdk_get_error(), "child")) {
    FAIL("%s: the error does not name the file: %s", what, vmdk_get_error());
    bad++;
  }
  if (sticky) {
    /* A full disk: nothing more gets through.  The close fails when it has
     * anything to write; when it succeeds (the fault came before anything
     * was changed), verify() still holds it to old-or-new. */
    vmdk_close(d);
    disarm();
  } else {
    /* The handle goes on: the same operation again succeeds (or, as the
     * CLI does after a failed write, the handle is closed at once), and
     * the close succeeds, unless the fdatasync of a file the handle keeps
     * failed (then the close must fail too; a separate descriptor file is
     * rewritten and synced whole by a later write). */
    disarm();
    bool hit_sync = fi_hit_sync;
    const char *slash = strrchr(fi_sync_path, '/');
    bool kept = hit_sync && !(l->sub == VMDK_SUBFORMAT_TWOGB_SPARSE &&
                              slash && strcmp(slash, "/child.vmdk") == 0);
    if (retry &&
        !CHECK(do_op(d, o) == 0, "%s: retry: %s", what, vmdk_get_error()))
      bad++;
    int rc = vmdk_close(d);
    if (kept ? rc == 0 : rc != 0) {
      FAIL("%s: close %s after %s (%s)", what, rc ? "failed" : "succeeded",
           kept ? "a failed sync" : "a transient fault", vmdk_get_error());
      bad++;
    }
    if (retry && !kept) { /* the retry landed: exactly the new bytes */
      struct vmdk_disk *v = vmdk_open(child, 0);
      if (v && vmdk_pread(v, got, DISK, 0) == 0 &&
          t_first_diff(got, after, DISK) >= 0) {
        FAIL("%s: after the retry the image differs from the model at byte "
             "%" PRId64, what, t_first_diff(got, after, DISK));
        bad++;
      }
      vmdk_close(v);
    }
  }
  bad += verify(child, what);
  if (bad)
    (*wrong)++;
  return true;
}

int main(void) {
  t_tmpdir("io-failure");
  base_img = malloc(DISK);
  before = malloc(DISK);
  after = malloc(DISK);
  got = malloc(DISK);
  data = malloc(1 * MiB);
  if (!base_img || !before || !after || !got || !data)
    return 1;

  test_sticky_sync();

  unsigned injected = 0, wrong = 0;
  const int errs[] = {ENOSPC, EIO};
  for (size_t li = 0; li < sizeof layouts / sizeof *layouts; li++) {
    for (size_t oi = 0; oi < sizeof ops / sizeof *ops; oi++) {
      const struct op *o = &ops[oi];
      memset(before, BASE_BYTE, DISK);
      memcpy(after, before, DISK);
      t_fill(data, o->len, 100 + oi);
      if (o->zero)
        memset(after + o->off, 0, o->len);
      else
        memcpy(after + o->off, data, o->len);
      for (size_t ei = 0; ei < 2; ei++)
        for (int mode = 0; mode < 3; mode++) { /* sticky, retry, close */
          unsigned n = 0;
          for (uint64_t at = 1; at < 10000; at++, n++)
            if (!one_position(&layouts[li], o, at, errs[ei], mode == 0,
                              mode == 1, &wrong))
              break;
          injected += n;
          CHECK(n > 0, "%s: op %zu made no file-changing call",
                layouts[li].name, oi);
        }
    }
  }
  printf("%u faults injected, %u went wrong\n", injected, wrong);
  CHECK(wrong == 0, "%u of %u fault positions went wrong", wrong, injected);
  free(base_img);
  free(before);
  free(after);
  free(got);
  free(data);
  t_rmdir();
  return t_exit_code();
}
