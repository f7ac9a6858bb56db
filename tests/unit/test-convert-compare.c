/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_convert and vmdk_compare (lib/convert.c, lib/compare.c).
 *
 * A monolithicSparse source (64 KiB grains) with data, a partly written
 * grain, an allocated all-zero grain and holes is converted to raw,
 * monolithicSparse, twoGbMaxExtentSparse and streamOptimized and read back
 * byte for byte against vmdk_pread of the source; the all-zero grain and
 * the holes stay unallocated.  With a backing file the child holds exactly
 * the grains that read differently from the backing.  Cancelling through
 * the progress callback (at the first report and at the last, after the
 * new image was closed) leaves no file; a DST in a missing folder leaves
 * none either; a DST that is a file of the source, of its chain or of the
 * backing file's chain is refused with the source unchanged byte for
 * byte.  vmdk_compare: SAME, CONTENT (the exact offset), ALLOCATION and
 * SIZE, with and without strict mode, a larger disk with a zero and with
 * a non-zero tail, and cancellation. */
#include <dirent.h>

#include "testlib.h"
#include "vmdkit.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define GRAIN (64 * KiB)
#define SIZE (8 * MiB)

/* Entries in the test folder. */
static int count_files(void) {
  DIR *dir = opendir(t_dir);
  int n = 0;
  if (!dir)
    return -1;
  for (struct dirent *e; (e = readdir(dir));)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(dir);
  return n;
}

/* The whole virtual disk of D (malloc'd), or NULL. */
static uint8_t *read_all(struct vmdk_disk *d) {
  uint64_t size = vmdk_get_size(d);
  uint8_t *buf = malloc(size ? size : 1);
  if (buf && vmdk_pread(d, buf, size, 0) != 0) {
    FAIL("pread: %s", vmdk_get_error());
    free(buf);
    return NULL;
  }
  return buf;
}

/* Whether PATH reads exactly as the SIZE bytes at EXPECT. */
static bool reads_as(const char *path, const uint8_t *expect, uint64_t size) {
  struct vmdk_disk *d = vmdk_open(path, 0);
  if (!CHECK(d != NULL, "open %s: %s", path, vmdk_get_error()))
    return false;
  bool ok = CHECK(vmdk_get_size(d) >= size, "%s: %" PRIu64 " bytes", path,
                  vmdk_get_size(d));
  uint8_t *got = ok ? read_all(d) : NULL;
  if (got) {
    int64_t diff = t_first_diff(got, expect, size);
    ok = CHECK(diff < 0, "%s differs from the source at %" PRId64, path, diff);
    for (uint64_t o = size; ok && o < vmdk_get_size(d); o++)
      ok = CHECK(got[o] == 0, "%s: byte %" PRIu64 " past the source's end",
                 path, o);
  } else {
    ok = false;
  }
  free(got);
  vmdk_close(d);
  return ok;
}

struct presence {
  uint8_t own[SIZE / GRAIN]; /* 1: the grain is allocated in the image */
};

static int presence_cb(void *opaque, const struct vmdk_run *r) {
  struct presence *p = opaque;
  if (r->depth == 0 && (r->flags & VMDK_RUN_PRESENT))
    for (uint64_t o = r->offset; o < r->offset + r->length; o += GRAIN)
      p->own[o / GRAIN] = 1;
  return 0;
}

/* Which grains PATH allocates itself, as a string of '0'/'1' of the
 * first N grains. */
static void own_grains(const char *path, char *out, size_t n) {
  struct presence p = {{0}};
  struct vmdk_disk *d = vmdk_open(path, 0);
  if (CHECK(d != NULL, "open %s: %s", path, vmdk_get_error()))
    CHECK(vmdk_block_status(d, 0, vmdk_get_size(d), presence_cb, &p) == 0,
          "block status: %s", vmdk_get_error());
  vmdk_close(d);
  for (size_t i = 0; i < n; i++)
    out[i] = p.own[i] ? '1' : '0';
  out[n] = 0;
}

/* The source: grains 0-2 data, grain 4 100 bytes of data at 1000, grain 8
 * written with zeros (allocated), grain 16 data, the last grain 4 KiB of
 * data at its end; the rest holes. */
static char *make_source(void) {
  char *path = strdup(t_path("src.vmdk")); /* t_path's buffers rotate */
  struct vmdk_create_options o = {.size_bytes = SIZE};
  struct vmdk_disk *d = vmdk_create(path, &o, 0);
  if (!CHECK(d != NULL, "create source: %s", vmdk_get_error())) {
    free(path);
    return NULL;
  }
  uint8_t *buf = malloc(3 * GRAIN);
  t_fill(buf, 3 * GRAIN, 1);
  int r = vmdk_pwrite(d, buf, 3 * GRAIN, 0);
  r = r ?: vmdk_pwrite(d, buf, 100, 4 * GRAIN + 1000);
  memset(buf, 0, GRAIN);
  r = r ?: vmdk_pwrite(d, buf, GRAIN, 8 * GRAIN);
  t_fill(buf, GRAIN, 2);
  r = r ?: vmdk_pwrite(d, buf, GRAIN, 16 * GRAIN);
  r = r ?: vmdk_pwrite(d, buf, 4096, SIZE - 4096);
  CHECK(r == 0, "write source: %s", vmdk_get_error());
  CHECK(vmdk_close(d) == 0, "close source: %s", vmdk_get_error());
  free(buf);
  return path;
}

static int cancel_first(void *opaque, uint64_t done, uint64_t total) {
  (void)done;
  (void)total;
  ++*(int *)opaque;
  return 1;
}

static int cancel_at_end(void *opaque, uint64_t done, uint64_t total) {
  ++*(int *)opaque;
  return done == total;
}

struct calls {
  int n;
  uint64_t first_done, last_done, total;
  bool monotonic;
};

static int count_progress(void *opaque, uint64_t done, uint64_t total) {
  struct calls *c = opaque;
  if (c->n && done < c->last_done)
    c->monotonic = false;
  if (!c->n)
    c->first_done = done;
  c->n++;
  c->last_done = done;
  c->total = total;
  return 0;
}

static void test_convert_formats(struct vmdk_disk *src, const uint8_t *expect) {
  static const struct {
    const char *name;
    enum vmdk_subformat sf;
    bool vmdk;
  } cases[] = {
      {"out.raw", VMDK_SUBFORMAT_RAW, false},
      {"sparse.vmdk", VMDK_SUBFORMAT_MONOLITHIC_SPARSE, true},
      {"split.vmdk", VMDK_SUBFORMAT_TWOGB_SPARSE, true},
      {"stream.vmdk", VMDK_SUBFORMAT_STREAM_OPTIMIZED, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *dst = t_path(cases[i].name);
    struct calls calls = {.monotonic = true};
    struct vmdk_convert_options o = {.create.subformat = cases[i].sf,
                                     .flags = VMDK_OPEN_UNSAFE,
                                     .writethrough = i == 1,
                                     .progress = count_progress,
                                     .opaque = &calls};
    /* The raw one with OPTS NULL: a raw copy. */
    int r = cases[i].sf == VMDK_SUBFORMAT_RAW ? vmdk_convert(src, dst, NULL)
                                              : vmdk_convert(src, dst, &o);
    if (!CHECK(r == 0, "convert to %s: %s", cases[i].name, vmdk_get_error()))
      continue;
    reads_as(dst, expect, SIZE);
    if (cases[i].sf != VMDK_SUBFORMAT_RAW) {
      CHECK(calls.n > 1 && calls.monotonic && calls.first_done == 0 &&
                calls.last_done == SIZE && calls.total == SIZE,
            "%s: progress: %d calls, last %" PRIu64 " of %" PRIu64,
            cases[i].name, calls.n, calls.last_done, calls.total);
    }
    if (cases[i].vmdk && cases[i].sf != VMDK_SUBFORMAT_STREAM_OPTIMIZED) {
      /* grains 0-2, 4, 16 and the last allocated; 8 (zeros) and the
       * holes not */
      char own[SIZE / GRAIN + 1];
      own_grains(dst, own, SIZE / GRAIN);
      char want[SIZE / GRAIN + 1];
      memset(want, '0', SIZE / GRAIN);
      want[SIZE / GRAIN] = 0;
      want[0] = want[1] = want[2] = want[4] = want[16] = '1';
      want[SIZE / GRAIN - 1] = '1';
      CHECK(strcmp(own, want) == 0, "%s allocates %s, not %s", cases[i].name,
            own, want);
    }
    struct vmdk_disk *d = vmdk_open(dst, 0);
    struct vmdk_compare_result res = {VMDK_COMPARE_CONTENT, 1, 1};
    CHECK(d && vmdk_compare(src, d, 0, &res, NULL, NULL) == 0 &&
              res.kind == VMDK_COMPARE_SAME && res.offset == 0 &&
              !res.size_differs,
          "compare with %s: kind %d: %s", cases[i].name, (int)res.kind,
          vmdk_get_error());
    vmdk_close(d);
  }
}

/* -B: the child holds the grains that read differently from the base. */
static void test_convert_backing(void) {
  const char *base = t_path("base.vmdk");
  struct vmdk_create_options bo = {.size_bytes = SIZE};
  struct vmdk_disk *b = vmdk_create(base, &bo, 0);
  if (!CHECK(b != NULL, "create base: %s", vmdk_get_error()))
    return;
  uint8_t *data = malloc(4 * GRAIN);
  t_fill(data, 4 * GRAIN, 7);
  CHECK(vmdk_pwrite(b, data, 4 * GRAIN, 0) == 0, "write base: %s",
        vmdk_get_error());
  CHECK(vmdk_close(b) == 0, "close base: %s", vmdk_get_error());
  /* The source: the base's bytes, grain 1 changed in one byte, grain 2
   * zeros, grain 5 new data, as a raw file. */
  uint8_t *img = calloc(1, SIZE);
  memcpy(img, data, 4 * GRAIN);
  img[GRAIN + 123] ^= 0x5a;
  memset(img + 2 * GRAIN, 0, GRAIN);
  t_fill(img + 5 * GRAIN, GRAIN, 8);
  const char *rawsrc = t_path("diff-src.raw");
  CHECK(t_write_file(rawsrc, img, SIZE) == 0, "write %s", rawsrc);
  struct vmdk_disk *src = vmdk_open_format(rawsrc, VMDK_FORMAT_RAW, 0);
  if (!CHECK(src != NULL, "open %s: %s", rawsrc, vmdk_get_error()))
    goto out;
  /* A relative backing file is relative to DST's folder (the test's
   * folder, not the working directory). */
  const char *child = t_path("child.vmdk");
  struct vmdk_convert_options o = {.create.backing_file = "base.vmdk"};
  if (CHECK(vmdk_convert(src, child, &o) == 0, "convert -B: %s",
            vmdk_get_error())) {
    reads_as(child, img, SIZE);
    char own[9];
    own_grains(child, own, 8);
    CHECK(strcmp(own, "01100100") == 0, "the child allocates %s", own);
    struct vmdk_disk *c = vmdk_open(child, 0);
    CHECK(c && vmdk_get_backing(c) != NULL, "the child has no backing: %s",
          vmdk_get_error());
    vmdk_close(c);
  }
  /* DST a file of the backing file's chain: the child (whose parent is the
   * base) as the new backing, the base as DST. */
  size_t before_len = 0, after_len = 0;
  uint8_t *before = t_read_file(base, &before_len);
  struct vmdk_convert_options bad = {.create.backing_file = "child.vmdk"};
  errno = 0;
  CHECK(vmdk_convert(src, base, &bad) == -1 && vmdk_get_errno() == EINVAL &&
            t_contains_ci(vmdk_get_error(), "refusing to overwrite") &&
            t_contains_ci(vmdk_get_error(), "backing chain"),
        "DST in the backing file's chain: %s", vmdk_get_error());
  /* DST the backing file itself. */
  bad.create.backing_file = "base.vmdk";
  CHECK(vmdk_convert(src, base, &bad) == -1 && vmdk_get_errno() == EINVAL &&
            t_contains_ci(vmdk_get_error(), "is the backing file"),
        "DST the backing file: %s", vmdk_get_error());
  uint8_t *after = t_read_file(base, &after_len);
  CHECK(before && after && before_len == after_len &&
            memcmp(before, after, before_len) == 0,
        "the base changed");
  free(before);
  free(after);
  vmdk_close(src);
out:
  free(img);
  free(data);
}

static void test_convert_cancel_and_fail(struct vmdk_disk *src,
                                         const char *src_path) {
  int files = count_files();
  static const enum vmdk_subformat sfs[] = {
      VMDK_SUBFORMAT_MONOLITHIC_SPARSE, VMDK_SUBFORMAT_TWOGB_SPARSE,
      VMDK_SUBFORMAT_STREAM_OPTIMIZED, VMDK_SUBFORMAT_RAW};
  for (size_t i = 0; i < sizeof sfs / sizeof sfs[0]; i++) {
    for (int at_end = 0; at_end < 2; at_end++) {
      int calls = 0;
      struct vmdk_convert_options o = {
          .create.subformat = sfs[i],
          .progress = at_end ? cancel_at_end : cancel_first,
          .opaque = &calls};
      CHECK(vmdk_convert(src, t_path("cancel.vmdk"), &o) == -1 &&
                vmdk_get_errno() == ECANCELED && calls > 0,
            "cancel %s (%s): errno %d, %d calls: %s",
            vmdk_subformat_name(sfs[i]), at_end ? "end" : "first",
            vmdk_get_errno(), calls, vmdk_get_error());
      CHECK(count_files() == files, "cancel %s (%s): %d files, not %d",
            vmdk_subformat_name(sfs[i]), at_end ? "end" : "first",
            count_files(), files);
    }
  }
  /* A folder that does not exist. */
  struct vmdk_convert_options o = {0};
  CHECK(vmdk_convert(src, t_path("no/such/dir/out.vmdk"), &o) == -1 &&
            vmdk_get_errno() == ENOENT,
        "convert into a missing folder: errno %d: %s", vmdk_get_errno(),
        vmdk_get_error());
  CHECK(count_files() == files, "a missing folder: %d files, not %d",
        count_files(), files);

  /* DST a file of the source: the image itself, a flat extent, a layer of
   * the backing chain. */
  const char *flat = t_path("flat.vmdk");
  struct vmdk_convert_options fo = {.create.subformat =
                                        VMDK_SUBFORMAT_MONOLITHIC_FLAT};
  CHECK(vmdk_convert(src, flat, &fo) == 0, "convert to flat: %s",
        vmdk_get_error());
  const char *top = t_path("top.vmdk");
  struct vmdk_create_options co = {.backing_file = "flat.vmdk"};
  struct vmdk_disk *t = vmdk_create(top, &co, 0);
  CHECK(t != NULL, "create top: %s", vmdk_get_error());
  vmdk_close(t);
  struct vmdk_disk *chain = vmdk_open(top, 0);
  if (!CHECK(chain != NULL, "open top: %s", vmdk_get_error()))
    return;
  char victims[4][4096];
  snprintf(victims[0], sizeof victims[0], "%s", src_path);
  snprintf(victims[1], sizeof victims[1], "%s", top);
  snprintf(victims[2], sizeof victims[2], "%s", flat);
  snprintf(victims[3], sizeof victims[3], "%s", t_path("flat-flat.vmdk"));
  struct vmdk_disk *owners[] = {src, chain, chain, chain};
  for (size_t i = 0; i < 4; i++) {
    size_t before_len = 0, after_len = 0;
    uint8_t *before = t_read_file(victims[i], &before_len);
    struct vmdk_convert_options so = {0};
    CHECK(before != NULL, "read %s", victims[i]);
    CHECK(vmdk_convert(owners[i], victims[i], &so) == -1 &&
              vmdk_get_errno() == EINVAL &&
              t_contains_ci(vmdk_get_error(), "refusing to overwrite"),
          "DST %s, a file of the source: errno %d: %s", victims[i],
          vmdk_get_errno(), vmdk_get_error());
    CHECK(i < 2 || t_contains_ci(vmdk_get_error(), "in the backing chain"),
          "%s: %s", victims[i], vmdk_get_error());
    uint8_t *after = t_read_file(victims[i], &after_len);
    CHECK(before && after && before_len == after_len &&
              memcmp(before, after, before_len) == 0,
          "%s changed", victims[i]);
    free(before);
    free(after);
  }
  vmdk_close(chain);
}

/* A monolithicSparse image of SIZE bytes: DATA_GRAINS grains of data from
 * 0, and, when ZERO_GRAIN, grain 3 written with zeros (allocated). */
static struct vmdk_disk *make_img(const char *name, uint64_t size,
                                  bool zero_grain, uint64_t tail_byte_at) {
  struct vmdk_create_options o = {.size_bytes = size};
  struct vmdk_disk *d = vmdk_create(t_path(name), &o, 0);
  if (!CHECK(d != NULL, "create %s: %s", name, vmdk_get_error()))
    return NULL;
  uint8_t *buf = calloc(1, GRAIN);
  t_fill(buf, GRAIN, 11);
  int r = vmdk_pwrite(d, buf, GRAIN, 0);
  memset(buf, 0, GRAIN);
  if (zero_grain)
    r = r ?: vmdk_pwrite(d, buf, GRAIN, 3 * GRAIN);
  if (tail_byte_at)
    r = r ?: vmdk_pwrite(d, "x", 1, tail_byte_at);
  CHECK(r == 0, "write %s: %s", name, vmdk_get_error());
  free(buf);
  return d;
}

static void expect_compare(struct vmdk_disk *a, struct vmdk_disk *b,
                           unsigned flags, enum vmdk_compare_kind kind,
                           uint64_t offset, int size_differs,
                           const char *what) {
  struct vmdk_compare_result res = {(enum vmdk_compare_kind)9, 99, 99};
  int r = vmdk_compare(a, b, flags, &res, NULL, NULL);
  CHECK(r == 0 && res.kind == kind && res.offset == offset &&
            res.size_differs == size_differs,
        "%s: returned %d, kind %d offset %" PRIu64 " size_differs %d, "
        "expected kind %d offset %" PRIu64 " size_differs %d: %s",
        what, r, (int)res.kind, res.offset, res.size_differs, (int)kind,
        offset, size_differs, vmdk_get_error());
}

static void test_compare(void) {
  struct vmdk_disk *a = make_img("a.vmdk", SIZE, true, 0);
  struct vmdk_disk *b = make_img("b.vmdk", SIZE, false, 0);
  struct vmdk_disk *big = make_img("big.vmdk", SIZE + MiB, false, 0);
  struct vmdk_disk *bigx = make_img("bigx.vmdk", SIZE + MiB, false,
                                    SIZE + 4321);
  struct vmdk_disk *c = make_img("c.vmdk", SIZE, false, 5 * MiB + 77);
  if (!a || !b || !big || !bigx || !c)
    goto out;
  expect_compare(a, a, VMDK_COMPARE_STRICT, VMDK_COMPARE_SAME, 0, 0, "a a");
  expect_compare(a, b, 0, VMDK_COMPARE_SAME, 0, 0, "a b");
  expect_compare(a, b, VMDK_COMPARE_STRICT, VMDK_COMPARE_ALLOCATION,
                 3 * GRAIN, 0, "a b strict");
  expect_compare(b, c, 0, VMDK_COMPARE_CONTENT, 5 * MiB + 77, 0, "b c");
  expect_compare(c, b, VMDK_COMPARE_STRICT, VMDK_COMPARE_ALLOCATION, 5 * MiB,
                 0, "c b strict");
  expect_compare(b, big, 0, VMDK_COMPARE_SAME, 0, 1, "b big");
  expect_compare(big, b, 0, VMDK_COMPARE_SAME, 0, 1, "big b");
  expect_compare(b, big, VMDK_COMPARE_STRICT, VMDK_COMPARE_SIZE, 0, 1,
                 "b big strict");
  expect_compare(b, bigx, 0, VMDK_COMPARE_CONTENT, SIZE + 4321, 1, "b bigx");
  expect_compare(bigx, b, 0, VMDK_COMPARE_CONTENT, SIZE + 4321, 1, "bigx b");
  expect_compare(c, bigx, 0, VMDK_COMPARE_CONTENT, 5 * MiB + 77, 1,
                 "c bigx");

  /* Progress: up to the larger size; cancelling gives ECANCELED. */
  struct calls calls = {.monotonic = true};
  struct vmdk_compare_result res;
  CHECK(vmdk_compare(b, big, 0, &res, count_progress, &calls) == 0 &&
            calls.monotonic && calls.last_done == SIZE + MiB &&
            calls.total == SIZE + MiB,
        "compare progress: %d calls, last %" PRIu64 " of %" PRIu64, calls.n,
        calls.last_done, calls.total);
  int n = 0;
  CHECK(vmdk_compare(a, b, 0, &res, cancel_first, &n) == -1 &&
            vmdk_get_errno() == ECANCELED && n == 1,
        "compare cancelled: errno %d, %d calls", vmdk_get_errno(), n);
  CHECK(vmdk_compare(a, b, 0x80, &res, NULL, NULL) == -1 &&
            vmdk_get_errno() == EINVAL,
        "compare with an unknown flag: errno %d", vmdk_get_errno());
out:
  vmdk_close(a);
  vmdk_close(b);
  vmdk_close(big);
  vmdk_close(bigx);
  vmdk_close(c);
}

int main(void) {
  t_tmpdir("convert-compare");
  char *src_path = make_source();
  if (!src_path)
    return t_exit_code();
  struct vmdk_disk *src = vmdk_open(src_path, 0);
  if (!CHECK(src != NULL, "open source: %s", vmdk_get_error())) {
    free(src_path);
    return t_exit_code();
  }
  uint8_t *expect = read_all(src);
  if (expect) {
    test_convert_formats(src, expect);
    test_convert_cancel_and_fail(src, src_path);
  }
  free(expect);
  vmdk_close(src);
  free(src_path);
  test_convert_backing();
  test_compare();
  return t_exit_code();
}
