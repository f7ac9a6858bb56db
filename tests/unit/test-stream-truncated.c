/* SPDX-License-Identifier: BSD-3-Clause */
/* Truncated streams through the API (VMDK_OPEN_SALVAGE): an append that
 * never reached its flush (the handle dropped with vmdk_close_discard after
 * a batch of grains went out, as a killed writer leaves it) leaves a
 * stream without footer.  Then:
 *  - a plain open fails (ENODATA) saying what is missing; a read-write
 *    open fails (EROFS), with or without VMDK_OPEN_SALVAGE, and the file
 *    is unchanged;
 *  - a salvaging open reads every grain that went out and zeros for the
 *    rest; vmdk_get_info says "truncated" with the grains recovered and the
 *    same message; vmdk_check reports it once, as corruption;
 *  - a stream created and closed normally, and one appended to and closed
 *    normally, open without the flag and say "complete".
 * The same for a stream in QEMU's layout (tables at the front), when
 * qemu-img is installed: vmdkit's grains after the last one its tables
 * list are found by their markers. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "vmdkit.h"

#define MiB (1024u * 1024)
#define SIZE (40u * MiB)
#define GRAIN 65536u

static const struct vmdk_extent_info *stream_info(struct vmdk_disk *d) {
  static struct vmdk_info info;
  if (!CHECK(vmdk_get_info(d, &info) == 0, "info: %s", vmdk_get_error()) ||
      !CHECK(info.n_extents == 1 && info.extents[0].stream,
             "info: no stream extent"))
    return NULL;
  return &info.extents[0];
}

static void expect_state(const char *path, const char *state, uint64_t grains,
                         unsigned flags) {
  struct vmdk_disk *d = vmdk_open(path, flags);
  if (!CHECK(d != NULL, "%s: open: %s", path, vmdk_get_error()))
    return;
  const struct vmdk_extent_info *x = stream_info(d);
  if (x) {
    CHECK_STR(x->stream, state);
    CHECK_U64(x->stream_grains, grains);
    CHECK((x->stream_damage != NULL) == (strcmp(state, "complete") != 0),
          "%s: stream_damage %s for state %s", path,
          x->stream_damage ? x->stream_damage : "(null)", state);
  }
  vmdk_close(d);
}

struct problems {
  unsigned n;
  char first[1024];
};

static void note(void *opaque, enum vmdk_problem_kind kind, const char *msg) {
  struct problems *p = opaque;
  if (kind == VMDK_PROBLEM_CORRUPT && p->n++ == 0)
    snprintf(p->first, sizeof p->first, "%s", msg);
}

/* PATH holds a stream whose append was dropped: MIRROR is what went out
 * (GRAINS grains in all), everything else reads as zeros.  WANT: a piece
 * of the message. */
static void expect_truncated(const char *path, const uint8_t *mirror,
                             uint64_t grains, const char *want) {
  size_t len0;
  uint8_t *before = t_read_file(path, &len0);

  CHECK(vmdk_open(path, 0) == NULL && vmdk_get_errno() == ENODATA,
        "%s: a plain open of a truncated stream: errno %d (%s)", path,
        vmdk_get_errno(), vmdk_get_error());
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", vmdk_get_error());
  CHECK(strstr(msg, "stream is truncated after ") && strstr(msg, want) &&
            strncmp(msg, path, strlen(path)) == 0,
        "%s: the message: %s (expected \"%s\")", path, msg, want);
  CHECK(vmdk_open(path, VMDK_OPEN_RDWR) == NULL && vmdk_get_errno() == EROFS,
        "%s: read-write open: errno %d (%s)", path, vmdk_get_errno(),
        vmdk_get_error());
  CHECK(vmdk_open(path, VMDK_OPEN_RDWR | VMDK_OPEN_SALVAGE) == NULL &&
            vmdk_get_errno() == EROFS &&
            strstr(vmdk_get_error(), "cannot be opened for writing"),
        "%s: read-write salvaging open: errno %d (%s)", path,
        vmdk_get_errno(), vmdk_get_error());

  struct vmdk_disk *d = vmdk_open(path, VMDK_OPEN_SALVAGE);
  if (!CHECK(d != NULL, "%s: salvaging open: %s", path, vmdk_get_error())) {
    free(before);
    return;
  }
  const struct vmdk_extent_info *x = stream_info(d);
  if (x) {
    CHECK_STR(x->stream, "truncated");
    CHECK_U64(x->stream_grains, grains);
    CHECK(x->stream_damage &&
              strcmp(x->stream_damage, msg + strlen(path) + 2) == 0,
          "%s: info says \"%s\", the open said \"%s\"", path,
          x->stream_damage ? x->stream_damage : "(null)", msg);
  }
  uint8_t *buf = malloc(SIZE);
  if (CHECK(vmdk_pread(d, buf, SIZE, 0) == 0, "%s: read: %s", path,
            vmdk_get_error())) {
    int64_t at = t_first_diff(buf, mirror, SIZE);
    CHECK(at < 0, "%s: salvaged disk differs at byte %" PRId64, path, at);
  }
  free(buf);
  struct vmdk_check_result res;
  struct problems p = {0};
  if (CHECK(vmdk_check(d, &res, note, &p) == 0, "%s: check: %s", path,
            vmdk_get_error())) {
    CHECK_U64(res.corruptions, 1);
    CHECK_U64(res.allocated_grains, grains);
    CHECK(strcmp(p.first, msg) == 0, "%s: check says \"%s\", the open \"%s\"",
          path, p.first, msg);
  }
  CHECK(vmdk_close(d) == 0, "%s: close: %s", path, vmdk_get_error());
  size_t len1;
  uint8_t *after = t_read_file(path, &len1);
  CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0,
        "%s: the refused and salvaging opens changed the file", path);
  free(before);
  free(after);
}

/* Append LEN bytes of pattern SEED at OFF and drop the handle: with LEN
 * over the 16 MiB a stream holds in memory, the first 16 MiB of grains go
 * out (no footer after them), the rest are lost.  MIRROR gets what went
 * out.  Returns the grains that went out. */
static uint64_t append_and_drop(const char *path, uint8_t *mirror,
                                uint64_t off, size_t len, uint64_t seed) {
  struct vmdk_disk *d = vmdk_open(path, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "%s: open to append: %s", path, vmdk_get_error()))
    return 0;
  uint8_t *buf = malloc(len);
  t_fill(buf, len, seed);
  CHECK(vmdk_pwrite(d, buf, len, off) == 0, "%s: append: %s", path,
        vmdk_get_error());
  vmdk_close_discard(d);
  size_t out = 16 * MiB; /* one batch of pending grains */
  memcpy(mirror + off, buf, out);
  free(buf);
  return out / GRAIN;
}

int main(void) {
  t_tmpdir("stream-truncated");
  uint8_t *mirror = calloc(1, SIZE);
  uint8_t *chunk = malloc(8 * MiB);

  /* vmdkit's layout: 8 MiB written and closed: complete. */
  const char *v = t_path("v.vmdk");
  struct vmdk_create_options o = {
      .size_bytes = SIZE, .subformat = VMDK_SUBFORMAT_STREAM_OPTIMIZED};
  struct vmdk_disk *d = vmdk_create(v, &o, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "create: %s", vmdk_get_error()))
    return t_exit_code();
  expect_state(v, "complete", 0, 0); /* (another handle: already whole) */
  t_fill(chunk, 8 * MiB, 1);
  CHECK(vmdk_pwrite(d, chunk, 8 * MiB, 0) == 0, "write: %s", vmdk_get_error());
  CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
  memcpy(mirror, chunk, 8 * MiB);
  expect_state(v, "complete", 128, 0);

  /* An append closed normally: complete again. */
  d = vmdk_open(v, VMDK_OPEN_RDWR);
  if (CHECK(d != NULL, "open: %s", vmdk_get_error())) {
    t_fill(chunk, GRAIN, 2);
    CHECK(vmdk_pwrite(d, chunk, GRAIN, 9 * MiB) == 0, "write: %s",
          vmdk_get_error());
    CHECK(vmdk_close(d) == 0, "close: %s", vmdk_get_error());
    memcpy(mirror + 9 * MiB, chunk, GRAIN);
  }
  expect_state(v, "complete", 129, 0);

  /* An append that never reached its flush. */
  uint64_t out = append_and_drop(v, mirror, 10 * MiB, 20 * MiB, 3);
  expect_truncated(v, mirror, 129 + out,
                   "no grain directory, footer or end-of-stream marker; "
                   "385 grains recovered (24.06 MiB of the 40 MiB disk)");

  /* QEMU's layout, appended to by vmdkit, dropped likewise. */
  if (system("command -v qemu-img >/dev/null") == 0) {
    const char *q = t_path("q.vmdk"), *raw = t_path("q.raw");
    memset(mirror, 0, SIZE);
    t_fill(mirror, 4 * MiB, 4);
    CHECK(t_write_file(raw, mirror, SIZE) == 0, "write %s", raw);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "
             "'%s' '%s'",
             raw, q);
    if (CHECK(system(cmd) == 0, "%s", cmd)) {
      expect_state(q, "complete", 64, 0);
      out = append_and_drop(q, mirror, 20 * MiB, 17 * MiB, 5);
      expect_truncated(q, mirror, 64 + out,
                       "256 grains follow the last one its tables list (no "
                       "table lists them); 320 grains recovered (20 MiB of "
                       "the 40 MiB disk)");
    }
  } else {
    printf("note: qemu-img is not installed: QEMU's layout is skipped\n");
  }
  free(mirror);
  free(chunk);
  return t_exit_code();
}
