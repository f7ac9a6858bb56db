/* SPDX-License-Identifier: BSD-3-Clause */
/* Writes and zeroes at grain and grain-table edges of images made by
 * vmdk_create (monolithicSparse with grains of 8, 16, 128 and 1024 sectors,
 * with and without the zeroed-grain flag, and monolithicFlat), checked
 * against an in-memory mirror of the disk:
 *  - every byte reads back as the mirror says, before and after a close and
 *    a read-only reopen;
 *  - vmdk_block_status reports DATA on exactly the grains that were written
 *    and ZERO (not DATA) everywhere else, with consecutive runs, and the
 *    bytes at a DATA run's file_offset in its file are the data;
 *  - vmdk_check finds nothing wrong;
 *  - a read-only open changes no byte of the file and refuses writes.
 */
#include "testlib.h"

#include <sys/mman.h>

#define KiB 1024ull
#define MiB (1024ull * 1024)

enum gstate {
  G_NONE = 0, /* never written: must be unallocated, reads as zeros */
  G_DATA,     /* written by vmdk_pwrite (or partly zeroed after) */
  G_ZEROED,   /* whole grain zeroed after being written */
};

struct ctx {
  const char *what; /* label for messages */
  const char *path;
  uint64_t size;  /* virtual bytes */
  uint64_t grain; /* bytes; for flat: 4 KiB, the host file
                     system's allocation unit, for block status */
  bool sparse;
  bool zeroed_grain;
  uint8_t *mirror; /* size bytes (anonymous mapping) */
  uint8_t *gstate; /* per grain */
  uint64_t ngrains;
  struct vmdk_disk *disk;
  uint64_t seed;
  uint64_t zeroed_allocated; /* grains that went from G_DATA to G_ZEROED:
                                with the zeroed-grain flag their space may
                                be left behind as a leak */
};

static int do_write(struct ctx *c, uint64_t off, uint64_t len) {
  uint8_t *buf = malloc(len);
  t_fill(buf, len, ++c->seed);
  int r = vmdk_pwrite(c->disk, buf, len, off);
  if (!CHECK(r == 0,
             "%s: vmdk_pwrite(%" PRIu64 " bytes at %" PRIu64 ") failed: %s",
             c->what, len, off, vmdk_get_error())) {
    free(buf);
    return -1;
  }
  memcpy(c->mirror + off, buf, len);
  for (uint64_t g = off / c->grain; g <= (off + len - 1) / c->grain; g++)
    c->gstate[g] = G_DATA;
  free(buf);
  return 0;
}

static int do_zero(struct ctx *c, uint64_t off, uint64_t len) {
  int r = vmdk_zero(c->disk, len, off);
  if (!CHECK(r == 0,
             "%s: vmdk_zero(%" PRIu64 " bytes at %" PRIu64 ") failed: %s",
             c->what, len, off, vmdk_get_error()))
    return -1;
  memset(c->mirror + off, 0, len);
  for (uint64_t g = off / c->grain; g <= (off + len - 1) / c->grain; g++) {
    uint64_t gs = g * c->grain, ge = gs + c->grain;
    if (ge > c->size)
      ge = c->size;
    bool whole = off <= gs && off + len >= ge;
    if (whole && c->gstate[g] == G_DATA) {
      c->gstate[g] = G_ZEROED;
      c->zeroed_allocated++;
    }
  }
  return 0;
}

/* Read [off, off+len) and compare with the mirror. */
static int check_range(struct ctx *c, uint64_t off, uint64_t len,
                       const char *when) {
  uint8_t *buf = malloc(len);
  memset(buf, 0xa5, len);
  int ret = 0;
  if (!CHECK(vmdk_pread(c->disk, buf, len, off) == 0,
             "%s (%s): vmdk_pread(%" PRIu64 " at %" PRIu64 ") failed: %s",
             c->what, when, len, off, vmdk_get_error()))
    ret = -1;
  else {
    int64_t d = t_first_diff(buf, c->mirror + off, len);
    if (!CHECK(d < 0,
               "%s (%s): read of %" PRIu64 " bytes at %" PRIu64
               " differs at disk offset %" PRIu64 " (grain %" PRIu64
               "): got 0x%02x, expected 0x%02x",
               c->what, when, len, off, off + (uint64_t)d,
               (off + (uint64_t)d) / c->grain, buf[d], c->mirror[off + d]))
      ret = -1;
  }
  free(buf);
  return ret;
}

/* The whole disk, in chunks (and with odd chunking, to read across grain
 * boundaries at unaligned offsets too). */
static int check_all(struct ctx *c, const char *when) {
  uint64_t chunk = 1 * MiB + 4097;
  for (uint64_t off = 0; off < c->size; off += chunk) {
    uint64_t n = c->size - off < chunk ? c->size - off : chunk;
    if (check_range(c, off, n, when) < 0)
      return -1;
  }
  return 0;
}

/* ---- block status ----------------------------------------------------- */

struct bs_state {
  struct ctx *c;
  const char *when;
  uint64_t next; /* where the next run must start */
  unsigned bad;  /* failures recorded (stop after a few) */
  int fd_cache;
  char path_cache[4096];
};

static int bs_cb(void *opaque, const struct vmdk_run *run) {
  struct bs_state *s = opaque;
  struct ctx *c = s->c;
  if (!CHECK(run->offset == s->next && run->length > 0,
             "%s (%s): run at %" PRIu64 " length %" PRIu64
             ", expected a run starting at %" PRIu64,
             c->what, s->when, run->offset, run->length, s->next))
    return ++s->bad > 5;
  s->next = run->offset + run->length;
  if (!CHECK(s->next <= c->size,
             "%s (%s): run ends at %" PRIu64 " past the disk size %" PRIu64,
             c->what, s->when, s->next, c->size))
    return 1;
  bool data = run->flags & VMDK_RUN_DATA, zero = run->flags & VMDK_RUN_ZERO;
  for (uint64_t g = run->offset / c->grain; g <= (s->next - 1) / c->grain;
       g++) {
    enum gstate st = c->gstate[g];
    const char *err = NULL;
    if (!c->sparse) {
      /* Flat: written data must be DATA; holes may be either. */
      if (st == G_DATA && !data)
        err = "written bytes not reported as DATA";
    } else if (st == G_DATA) {
      if (!data || zero)
        err = "written grain not reported as DATA (without ZERO)";
    } else if (st == G_NONE) {
      if (data || !zero)
        err = "unwritten grain not reported as ZERO without DATA";
    }
    /* G_ZEROED: an allocated grain zeroed whole is zeroed in place (its
     * host space punched out), so it may stay DATA; its bytes are checked
     * to read as zeros below and by the mirror comparison. */
    if (err) {
      FAIL("%s (%s): grain %" PRIu64 " (bytes %" PRIu64 "..%" PRIu64
           "): %s; run %" PRIu64 "+%" PRIu64 " flags 0x%x",
           c->what, s->when, g, g * c->grain, (g + 1) * c->grain - 1, err,
           run->offset, run->length, run->flags);
      return ++s->bad > 5;
    }
  }
  if (zero && !data) {
    /* reads as zeros: the mirror must agree */
    static const uint8_t zeros[64 * 1024];
    for (uint64_t i = run->offset; i < s->next; i += sizeof zeros) {
      uint64_t n = s->next - i < sizeof zeros ? s->next - i : sizeof zeros;
      int64_t d = t_first_diff(c->mirror + i, zeros, n);
      if (d >= 0) {
        FAIL("%s (%s): run %" PRIu64 "+%" PRIu64 " is ZERO but byte %" PRIu64
             " is 0x%02x",
             c->what, s->when, run->offset, run->length, i + (uint64_t)d,
             c->mirror[i + (uint64_t)d]);
        return ++s->bad > 5;
      }
    }
  }
  if (data && run->file_offset >= 0) {
    if (!CHECK(run->file != NULL,
               "%s (%s): DATA run with file_offset %" PRId64 " but no file",
               c->what, s->when, run->file_offset))
      return ++s->bad > 5;
    if (strcmp(run->file, s->path_cache) != 0) {
      if (s->fd_cache >= 0)
        close(s->fd_cache);
      snprintf(s->path_cache, sizeof s->path_cache, "%s", run->file);
      s->fd_cache = open(run->file, O_RDONLY);
    }
    if (!CHECK(s->fd_cache >= 0, "%s (%s): cannot open run file %s: %s",
               c->what, s->when, run->file, strerror(errno)))
      return ++s->bad > 5;
    uint64_t len = run->length;
    uint8_t *buf = calloc(1, len);
    ssize_t r = pread(s->fd_cache, buf, len, (off_t)run->file_offset);
    /* Bytes past the end of the file read as zeros. */
    int64_t d = r < 0 ? 0 : t_first_diff(buf, c->mirror + run->offset, len);
    if (r < 0 || d >= 0) {
      FAIL("%s (%s): DATA run %" PRIu64 "+%" PRIu64 " at %s offset %" PRId64
           ": file byte %" PRId64 " is 0x%02x, disk byte is 0x%02x",
           c->what, s->when, run->offset, run->length, run->file,
           run->file_offset, run->file_offset + d, r < 0 ? 0 : buf[d],
           c->mirror[run->offset + (r < 0 ? 0 : d)]);
      free(buf);
      return ++s->bad > 5;
    }
    free(buf);
  }
  return 0;
}

static void check_status(struct ctx *c, uint64_t off, uint64_t count,
                         const char *when) {
  struct bs_state s = {.c = c, .when = when, .next = off, .fd_cache = -1};
  int r = vmdk_block_status(c->disk, off, count, bs_cb, &s);
  if (s.fd_cache >= 0)
    close(s.fd_cache);
  if (!CHECK(r == 0, "%s (%s): vmdk_block_status failed: %s", c->what, when,
             vmdk_get_error()))
    return;
  if (!s.bad)
    CHECK(s.next == off + count,
          "%s (%s): runs end at %" PRIu64 ", expected %" PRIu64, c->what, when,
          s.next, off + count);
}

/* A callback that stops after the first run. */
static int stop_cb(void *opaque, const struct vmdk_run *run) {
  (void)run;
  ++*(unsigned *)opaque;
  return 1;
}

/* ---- the edge cases ------------------------------------------------- */

static void write_edges(struct ctx *c) {
  uint64_t g = c->grain, T = 512 * g, S = c->size;
  /* (offset, length) pairs; lengths clipped to the disk */
  struct {
    uint64_t off, len;
  } w[] = {
      {0, 1},
      {g - 1, 2},              /* last byte of grain 0, first of 1 */
      {g, 1},                  /* first byte of grain 1 */
      {g + 1, 100},            /* unaligned inside grain 1 */
      {3 * g + 7, 2 * g + 11}, /* crosses several grains */
      {T - 1, 2},              /* crosses the first grain-table edge */
      {T - g / 2, g},          /* half grains either side of it */
      {T, 512},                /* first sector of table 1 */
      {T + g, g},              /* one whole aligned grain */
      {2 * T - 3, 3 * g + 7},  /* crosses table 1 -> 2 edge */
      {T - 2 * g - 5, (T / 2 < 4 * MiB ? T / 2 : 4 * MiB) + 3 * g},
      /* long, crossing a table edge */
      {S - 1, 1},             /* the last byte of the disk */
      {S - 2 * g - 3, 2 * g}, /* ends before the last 3 bytes */
      {S - 513, 513},         /* the last partial grain's tail */
  };
  for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
    if (w[i].off >= S)
      continue;
    uint64_t len = w[i].len;
    if (len > S - w[i].off)
      len = S - w[i].off;
    if (do_write(c, w[i].off, len) < 0)
      return;
    /* read back around it right away (one grain either side) */
    uint64_t lo = w[i].off > g ? w[i].off - g : 0;
    uint64_t hi = w[i].off + len + g < S ? w[i].off + len + g : S;
    check_range(c, lo, hi - lo, "right after the write");
  }
  /* For small grains, one write crossing several tables. */
  if (3 * T + g <= S && T <= 4 * MiB)
    do_write(c, T / 2 + 3, 2 * T + 5);
}

static void zero_edges(struct ctx *c) {
  uint64_t g = c->grain, T = 512 * g, S = c->size;
  uint64_t b = T + 8 * g; /* grains b/g .. +7: our playground */
  if (b + 8 * g > S)
    b = 16 * g;
  do_write(c, b, 8 * g);
  do_zero(c, b + 100, 200);              /* inside one grain */
  do_zero(c, b + g - 10, 20);            /* across a grain edge, partial both */
  do_zero(c, b + 2 * g, g);              /* one whole grain */
  do_zero(c, b + 4 * g - 7, 2 * g + 14); /* partial + whole + whole + partial */
  /* zero of never-written grains must not allocate (size unchanged) */
  uint64_t u = b + 12 * g;
  if (u + 4 * g <= S && c->gstate[u / g] == G_NONE &&
      c->gstate[u / g + 3] == G_NONE) {
    CHECK(vmdk_flush(c->disk) == 0, "%s: flush: %s", c->what, vmdk_get_error());
    int64_t before = t_file_size(c->path);
    do_zero(c, u, 4 * g);
    do_zero(c, u + g + 3, 5);
    CHECK(vmdk_flush(c->disk) == 0, "%s: flush: %s", c->what, vmdk_get_error());
    int64_t after = t_file_size(c->path);
    if (c->sparse)
      CHECK(before == after,
            "%s: zeroing unallocated grains grew the file "
            "from %" PRId64 " to %" PRId64 " bytes",
            c->what, before, after);
  }
  /* zero the last byte of the disk and a range ending at the end */
  do_zero(c, S - 1, 1);
  do_zero(c, S - g - 1, g);
  /* write again over a zeroed grain */
  do_write(c, b + 2 * g + 5, 10);
}

/* Reads and writes outside the disk fail with EINVAL and change nothing. */
static void out_of_range(struct ctx *c) {
  uint8_t buf[1024] = {0};
  CHECK(vmdk_pread(c->disk, buf, 2, c->size - 1) < 0,
        "%s: pread across the end succeeded", c->what);
  CHECK(vmdk_get_errno() == EINVAL, "%s: pread across the end: errno %d",
        c->what, vmdk_get_errno());
  CHECK(vmdk_pread(c->disk, buf, 1, c->size) < 0,
        "%s: pread at the end succeeded", c->what);
  CHECK(vmdk_pread(c->disk, buf, 512, UINT64_MAX - 100) < 0,
        "%s: pread at 2^64-100 succeeded", c->what);
  CHECK(vmdk_pwrite(c->disk, buf, sizeof buf, c->size - 512) < 0,
        "%s: pwrite across the end succeeded", c->what);
  CHECK(vmdk_zero(c->disk, UINT64_MAX, 512) < 0,
        "%s: zero of 2^64-1 bytes succeeded", c->what);
}

/* vmdk_check on the open disk: no corruption; no leak, except that whole
 * allocated grains zeroed in a zeroed-grain image may leave their space
 * behind (the contract makes them zeroed-grain entries). */
static void check_clean(struct ctx *c, const char *when) {
  struct vmdk_check_result res;
  memset(&res, 0xff, sizeof res);
  if (!CHECK(vmdk_check(c->disk, &res, NULL, NULL) == 0, "%s (%s): check: %s",
             c->what, when, vmdk_get_error()))
    return;
  uint64_t leak_ok = 0; /* zeroing never leaks: grains are zeroed in place */
  CHECK(res.corruptions == 0 && res.leaked_bytes <= leak_ok,
        "%s (%s): check: %" PRIu64 " corruptions, %" PRIu64 " leaks of %" PRIu64
        " bytes (at most %" PRIu64 " allowed)",
        c->what, when, res.corruptions, res.leaks, res.leaked_bytes, leak_ok);
  if (c->sparse)
    CHECK(res.total_grains == c->ngrains,
          "%s (%s): check: %" PRIu64 " total grains, expected %" PRIu64,
          c->what, when, res.total_grains, c->ngrains);
}

static void run_case(const char *what, enum vmdk_subformat sub,
                     uint32_t grain_sectors, bool zeroed_grain, uint64_t size) {
  struct ctx c = {.what = what,
                  .size = size,
                  .sparse = sub == VMDK_SUBFORMAT_MONOLITHIC_SPARSE,
                  .zeroed_grain = zeroed_grain,
                  .seed = grain_sectors * 1000u};
  char name[64];
  snprintf(name, sizeof name, "edges-%u-%d-%d.vmdk", grain_sectors, (int)sub,
           zeroed_grain);
  c.path = t_path(name);
  c.grain = c.sparse ? (uint64_t)grain_sectors * 512 : 4 * KiB;
  c.ngrains = (size + c.grain - 1) / c.grain;
  c.mirror = mmap(NULL, size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  c.gstate = calloc(c.ngrains, 1);
  if (c.mirror == MAP_FAILED || !c.gstate) {
    FAIL("%s: out of memory for a %" PRIu64 "-byte mirror", what, size);
    return;
  }
  printf("%s: %" PRIu64 " bytes, grain %" PRIu64 " bytes\n", what, size,
         c.grain);
  fflush(stdout);

  struct vmdk_create_options o = {.size_bytes = size,
                                  .subformat = sub,
                                  .grain_sectors = grain_sectors,
                                  .zeroed_grain = zeroed_grain};
  c.disk = vmdk_create(c.path, &o, VMDK_OPEN_RDWR);
  if (!CHECK(c.disk != NULL, "%s: vmdk_create failed: %s", what,
             vmdk_get_error()))
    goto out;
  CHECK_U64(vmdk_get_size(c.disk), size);
  struct vmdk_info info;
  if (CHECK(vmdk_get_info(c.disk, &info) == 0, "%s: info: %s", what,
            vmdk_get_error())) {
    CHECK_STR(info.format, "vmdk");
    CHECK_STR(info.create_type,
              c.sparse ? "monolithicSparse" : "monolithicFlat");
    CHECK_U64(info.size_bytes, size);
    if (c.sparse) {
      CHECK_U64(info.cluster_bytes, c.grain);
      if (CHECK(info.n_extents == 1, "%s: %zu extents", what, info.n_extents)) {
        CHECK_U64(info.extents[0].grain_bytes, c.grain);
        CHECK(!info.extents[0].zeroed_grain == !zeroed_grain,
              "%s: extent zeroed_grain %d", what, info.extents[0].zeroed_grain);
      }
    }
  }
  check_status(&c, 0, size, "fresh image");
  check_range(&c, 0, size < 4 * MiB ? size : 4 * MiB, "fresh image");

  write_edges(&c);
  zero_edges(&c);
  out_of_range(&c);
  check_all(&c, "before close");
  check_status(&c, 0, size, "before close");
  /* Unaligned block_status windows. */
  check_status(&c, c.grain - 1, 3 * c.grain + 2, "window at grain-1");
  check_status(&c, size - 1, 1, "last byte window");
  unsigned calls = 0;
  CHECK(vmdk_block_status(c.disk, 0, size, stop_cb, &calls) == 0 && calls == 1,
        "%s: a callback returning non-zero did not stop block_status "
        "(%u calls)",
        what, calls);

  check_clean(&c, "before close");
  int r = vmdk_close(c.disk);
  c.disk = NULL;
  CHECK(r == 0, "%s: close: %s", what, vmdk_get_error());

  /* Read-only reopen: same bytes, same status, no byte of the file
   * changes, writes refused. */
  size_t len0 = 0, len1 = 0;
  uint8_t *before = t_read_file(c.path, &len0);
  c.disk = vmdk_open(c.path, 0);
  if (!CHECK(c.disk != NULL, "%s: read-only reopen: %s", what,
             vmdk_get_error()))
    goto out;
  CHECK_U64(vmdk_get_size(c.disk), size);
  check_all(&c, "after read-only reopen");
  check_status(&c, 0, size, "after read-only reopen");
  uint8_t one = 1;
  CHECK(vmdk_pwrite(c.disk, &one, 1, 0) < 0,
        "%s: pwrite on a read-only handle succeeded", what);
  CHECK(vmdk_zero(c.disk, 512, 0) < 0,
        "%s: zero on a read-only handle succeeded", what);
  check_clean(&c, "after read-only reopen");
  CHECK(vmdk_close(c.disk) == 0, "%s: close: %s", what, vmdk_get_error());
  c.disk = NULL;
  uint8_t *after = t_read_file(c.path, &len1);
  CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0,
        "%s: a read-only open changed the file (%zu -> %zu bytes)", what, len0,
        len1);
  free(before);
  free(after);

  /* Read-write reopen: write over the tables again, then the last grain,
   * and reread everything (new grains must go past the old ones). */
  c.disk = vmdk_open(c.path, VMDK_OPEN_RDWR);
  if (!CHECK(c.disk != NULL, "%s: read-write reopen: %s", what,
             vmdk_get_error()))
    goto out;
  for (uint64_t off = c.grain * 5 + 3; off < size; off += 512 * c.grain + 7)
    do_write(&c, off, size - off < c.grain + 1 ? size - off : c.grain + 1);
  do_write(&c, size - c.grain - 9, c.grain + 9);
  check_all(&c, "after read-write reopen");
  check_status(&c, 0, size, "after read-write reopen");
  CHECK(vmdk_close(c.disk) == 0, "%s: close: %s", what, vmdk_get_error());
  c.disk = vmdk_open(c.path, 0);
  if (CHECK(c.disk != NULL, "%s: third open: %s", what, vmdk_get_error())) {
    check_all(&c, "third open");
    check_clean(&c, "third open");
    vmdk_close(c.disk);
  }
  c.disk = NULL;

out:
  vmdk_close(c.disk);
  munmap(c.mirror, size);
  free(c.gstate);
}

/* vmdk_create refuses bad options and leaves no file behind. */
static void create_errors(void) {
  static const struct {
    const char *what;
    uint64_t size;
    enum vmdk_subformat sub;
    uint32_t grain;
  } bad[] = {
      {"grain 3 sectors", 1 * MiB, VMDK_SUBFORMAT_MONOLITHIC_SPARSE, 3},
      {"grain 4 sectors", 1 * MiB, VMDK_SUBFORMAT_MONOLITHIC_SPARSE, 4},
      {"grain 2^22 sectors", 1 * MiB, VMDK_SUBFORMAT_MONOLITHIC_SPARSE,
       1u << 22},
      {"grain 100 sectors", 1 * MiB, VMDK_SUBFORMAT_MONOLITHIC_SPARSE, 100},
      {"300 TiB sparse", 300ull << 40, VMDK_SUBFORMAT_MONOLITHIC_SPARSE, 0},
      {"2^64-1 bytes sparse", UINT64_MAX, VMDK_SUBFORMAT_MONOLITHIC_SPARSE, 0},
      {"2^64-1 bytes flat", UINT64_MAX, VMDK_SUBFORMAT_MONOLITHIC_FLAT, 0},
      {"bad subformat", 1 * MiB, (enum vmdk_subformat)77, 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    const char *path = t_path("refused.vmdk");
    struct vmdk_create_options o = {.size_bytes = bad[i].size,
                                    .subformat = bad[i].sub,
                                    .grain_sectors = bad[i].grain};
    struct vmdk_disk *d = vmdk_create(path, &o, VMDK_OPEN_RDWR);
    const char *msg = vmdk_get_error();
    if (CHECK(d == NULL, "vmdk_create with %s succeeded", bad[i].what))
      CHECK(*msg && vmdk_get_errno() != 0,
            "vmdk_create with %s: no error message or errno", bad[i].what);
    vmdk_close(d);
    CHECK(t_file_size(path) < 0 && t_file_size(t_path("refused-flat.vmdk")) < 0,
          "vmdk_create with %s left a file behind", bad[i].what);
    remove(path);
    remove(t_path("refused-flat.vmdk"));
  }
  struct vmdk_create_options o = {.size_bytes = 1 * MiB};
  o.adapter_type = "scsi";
  CHECK(vmdk_create(t_path("refused.vmdk"), &o, VMDK_OPEN_RDWR) == NULL,
        "vmdk_create with adapter type \"scsi\" succeeded");
  CHECK(t_file_size(t_path("refused.vmdk")) < 0,
        "vmdk_create with a bad adapter type left a file behind");
  /* a missing folder */
  o.adapter_type = NULL;
  struct vmdk_disk *d = vmdk_create(t_path("no/such/dir/x.vmdk"), &o, 0);
  CHECK(d == NULL && t_contains_ci(vmdk_get_error(), "x.vmdk"),
        "vmdk_create in a missing folder: %s", vmdk_get_error());
  vmdk_close(d);
}

int main(void) {
  t_tmpdir("sparse-edges");
  create_errors();
  static const uint32_t grains[] = {8, 16, 128, 1024};
  for (size_t i = 0; i < sizeof grains / sizeof *grains; i++) {
    uint64_t g = grains[i] * 512ull, T = 512 * g;
    /* several tables for small grains, just past one table for big ones;
     * the last grain is partial (3 sectors) */
    uint64_t ntables = grains[i] <= 16 ? 3 : 1;
    uint64_t size = ntables * T + 2 * g + 3 * 512;
    char what[64];
    snprintf(what, sizeof what, "monolithicSparse grain %u", grains[i]);
    run_case(what, VMDK_SUBFORMAT_MONOLITHIC_SPARSE, grains[i], false, size);
    if (grains[i] == 16 || grains[i] == 128) {
      snprintf(what, sizeof what, "monolithicSparse zeroed_grain grain %u",
               grains[i]);
      run_case(what, VMDK_SUBFORMAT_MONOLITHIC_SPARSE, grains[i], true, size);
    }
  }
  run_case("monolithicFlat", VMDK_SUBFORMAT_MONOLITHIC_FLAT, 0, false,
           40 * MiB + 3 * 512);
  if (!t_failures)
    printf("sparse edge tests passed\n");
  return t_exit_code();
}
