/* SPDX-License-Identifier: BSD-3-Clause */
/* Crash consistency: a writer process is killed (SIGKILL) at a random
 * moment, and then the image must hold no corruption and every write
 * acknowledged before the writer's last completed vmdk_flush must read
 * back.
 *
 * What this tests: write ORDER.  kill -9 loses no page cache (every
 * pwrite the writer issued is in the file afterwards, whether or not it
 * was synced), so this shows that at no point do the on-file tables point
 * at data that was not written yet, that the redundant copies never point
 * where the primary does not, and that a flush leaves the file consistent.
 * It does not test power loss (unsynced writes lost or reordered).
 *
 * Layouts: monolithicSparse with grain tables allocated on first write
 * (4 KiB grains, so writes span many grains and tables), a zeroed-grain
 * child over a parent (vmdk_zero makes zeroed-grain entries), a child
 * over a parent with lazy tables (copy-on-write of partial grains), a
 * COWD (vmfsSparse) delta, a twoGbMaxExtentSparse image (writes around
 * the extent boundary), and a streamOptimized image being written front
 * to back as convert does.
 *
 * Each run: a fresh image; the parent computes the operation list from
 * the seed (random writes of random lengths at random offsets, biased to
 * grain and table edges, zeroes, flushes); a forked child performs them
 * and, after each vmdk_flush returns, appends a record "operations 0..i
 * are flushed" to a side file and fsyncs it.  The parent kills the child
 *  - "timed" runs: after a random delay within the time an unkilled run
 *    takes;
 *  - "point" runs: just before its N-th file-changing system call (pwrite,
 *    ftruncate, fallocate, fdatasync: this test defines those functions,
 *    so the library's calls come here), N random below the count an
 *    unkilled run makes: every step of a flush gets hit, deterministically.
 *    For odd N, a pwrite that spans a page boundary is first done in part
 *    (cut at a page boundary), as a SIGKILL in the middle of a long write
 *    does.
 * Then:
 *  1. the image opens; vmdk_check (and the vmdkit CLI's check when it is
 *     built next to this test) finds no corruption (leaks allowed);
 *     qemu-img check (when installed) finds no error;
 *  2. every byte reads as the mirror of the flushed state, or, for bytes
 *     that an operation issued after that flush covered, as the flushed
 *     value or the value of one of those operations;
 *  3. vmdk_repair(ALL) leaves a check with nothing at all, and changes no
 *     byte the disk reads;
 *  4. the image reopens read-write, takes a write and a clean close, and
 *     is still clean.
 * streamOptimized files are only valid once finished (a footer at the
 * end): a killed writer's stream has none, so a plain open must either
 * succeed (the kill came after a whole flush) or refuse it as truncated
 * (ENODATA); 1 then only requires that it opens with VMDK_OPEN_SALVAGE
 * and check runs, 2 reads it salvaged (every flushed grain is in the
 * file, whole), and 3 and 4 are skipped (a stream cannot be repaired or
 * rewritten).
 *
 * What it found (each now a rule in the extent's header comment):
 *  - hosted sparse wrote the GD before the RGD: a kill between them left a
 *    GD entry whose RGD entry is 0 (QEMU then writes the redundant entry
 *    into the header); the RGD now goes first;
 *  - a kill between a GT and its RGT leaves them different: in an image
 *    whose uncleanShutdown byte is set this is an interrupted update, which
 *    check now reports as harmless (kind LEAK) and -r leaks brings in line;
 *    the byte is kept at close until a repair clears it;
 *  - COWD wrote freeSector after the tables: a kill left tables and grains
 *    past freeSector, where ESXi allocates; the header now goes first;
 *  - a stream killed while appending a batch of grains ended with a grain
 *    cut short; scanning the markers now stops before it.
 *
 * Seed: argv[1], else $VMDKIT_SEED, else a fixed default; printed, with
 * the seed of the kill times.  Everything but the kill times of "timed"
 * runs is determined by the seed.  Runs per layout: $VMDKIT_CRASH_RUNS
 * (default 4 timed + 4 point).
 */
#include "testlib.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "internal.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)
#define MAX_OP_LEN (320 * KiB)
#define MAX_WINDOWS 4

/* ---- crash points: the library's file-changing calls come here ------ */

static volatile uint64_t cp_count; /* calls since armed */
static volatile uint64_t cp_kill_at; /* die before call N (0: never) */
static volatile int cp_armed;

/* Count a call; true when it is the one to die at. */
static bool at_crash_point(void) {
  if (!cp_armed)
    return false;
  uint64_t n = __atomic_add_fetch(&cp_count, 1, __ATOMIC_SEQ_CST);
  return cp_kill_at && n == cp_kill_at;
}

static void crash_point(void) {
  if (at_crash_point())
    raise(SIGKILL);
}

/* At an odd crash point a write that spans a page boundary is first done
 * in part, up to the first page boundary (N % 4 == 1) or one half way
 * (N % 4 == 3), as the kernel does when a fatal signal arrives in the
 * middle of a long write. */
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  if (at_crash_point()) {
    uint64_t from = (uint64_t)off, to = from + n;
    uint64_t cut = (cp_kill_at & 3) == 1 ? (from | 4095) + 1
                                         : (from + n / 2) & ~(uint64_t)4095;
    if ((cp_kill_at & 1) && cut > from && cut < to)
      syscall(SYS_pwrite64, fd, buf, (size_t)(cut - from), off);
    raise(SIGKILL);
  }
  return syscall(SYS_pwrite64, fd, buf, n, off);
}
int ftruncate(int fd, off_t len) {
  crash_point();
  return (int)syscall(SYS_ftruncate, fd, len);
}
int fdatasync(int fd) {
  crash_point();
  return (int)syscall(SYS_fdatasync, fd);
}
int fallocate(int fd, int mode, off_t off, off_t len) {
  crash_point();
  return (int)syscall(SYS_fallocate, fd, mode, off, len);
}

/* ---- layouts ---------------------------------------------------------- */

enum kind { K_SPARSE, K_ZEROED_CHILD, K_CHILD, K_COWD, K_SPLIT, K_STREAM };

struct layout {
  const char *name;
  enum kind kind;
  uint64_t size;       /* virtual bytes */
  uint32_t grain;      /* sectors */
  bool lazy;           /* clear the GD and RGD: tables made on first write */
};

static const struct layout layouts[] = {
    {"sparse-lazy", K_SPARSE, 24 * MiB, 8, true},
    {"zeroed-child", K_ZEROED_CHILD, 24 * MiB, 128, false},
    {"child-lazy", K_CHILD, 24 * MiB, 16, true},
    {"cowd", K_COWD, 24 * MiB, 4, false},
    {"twogb-sparse", K_SPLIT, 4 * GiB, 128, false},
    {"stream", K_STREAM, 16 * MiB, 128, false},
};

/* Parts of the disk the operations touch; the mirror is their
 * concatenation. */
struct window {
  uint64_t voff, len, moff;
};

static struct window win[MAX_WINDOWS];
static unsigned n_win;
static uint64_t mirror_len;

static void set_windows(const struct layout *l) {
  n_win = 0;
  mirror_len = 0;
  if (l->kind == K_SPLIT) {
    uint64_t ext = 2047 * MiB;
    uint64_t w[][2] = {{0, 4 * MiB},
                       {ext - 8 * MiB, 16 * MiB},
                       {2 * ext - 4 * MiB, l->size - (2 * ext - 4 * MiB)}};
    for (unsigned i = 0; i < 3; i++)
      win[n_win++] = (struct window){w[i][0], w[i][1], 0};
  } else {
    win[n_win++] = (struct window){0, l->size, 0};
  }
  for (unsigned i = 0; i < n_win; i++) {
    win[i].moff = mirror_len;
    mirror_len += win[i].len;
  }
}

/* ---- operations --------------------------------------------------------- */

enum op_type { OP_WRITE, OP_ZERO, OP_FLUSH };

struct op {
  enum op_type type;
  unsigned w;       /* window */
  uint64_t off, len; /* within the window */
  uint64_t data;    /* t_fill seed of a write */
};

static struct op *ops;
static size_t n_ops;

static uint64_t rand_len(struct t_rng *r, uint64_t max) {
  uint64_t n;
  switch (t_below(r, 8)) {
  case 0:
  case 1:
  case 2:
    n = 1 + t_below(r, 2 * KiB);
    break;
  case 3:
  case 4:
  case 5:
    n = 1 + t_below(r, 48 * KiB);
    break;
  default:
    n = 1 + t_below(r, MAX_OP_LEN);
  }
  return n > max ? max : n;
}

static uint64_t rand_off(struct t_rng *r, uint64_t wlen, uint64_t len,
                         uint64_t grain, uint64_t table) {
  uint64_t max = wlen - len, off;
  switch (t_below(r, 4)) {
  case 0: /* near a grain edge */
    off = t_below(r, wlen / grain) * grain + t_below(r, 17);
    off = off >= 8 ? off - 8 : off;
    break;
  case 1: /* across a table edge */
    off = t_below(r, wlen / table + 1) * table;
    off = off > len / 2 ? off - len / 2 : 0;
    break;
  default:
    off = t_below(r, max + 1);
  }
  return off > max ? max : off;
}

static void make_ops(const struct layout *l, uint64_t seed) {
  struct t_rng r = {seed};
  uint64_t grain = l->grain * 512ull;
  uint64_t table = grain * (l->kind == K_COWD ? 4096 : 512);
  size_t cap = 400;
  n_ops = 0;
  free(ops);
  ops = calloc(cap, sizeof *ops);
  if (!ops)
    exit(1);
  if (l->kind == K_STREAM) {
    /* Front to back, as convert writes: runs with gaps, flushes.  A
     * grain goes out whole at a flush and cannot be written again: after
     * a flush, writing goes on at the next grain. */
    uint64_t at = 0;
    while (n_ops + 1 < cap) {
      struct op *o = &ops[n_ops];
      if (n_ops && t_below(&r, 6) == 0) {
        *o = (struct op){.type = OP_FLUSH};
        n_ops++;
        at = (at + grain - 1) / grain * grain;
        continue;
      }
      uint64_t gap = t_below(&r, 3) == 0 ? t_below(&r, 4 * grain) : 0;
      uint64_t len = 1 + t_below(&r, 3 * grain);
      if (at + gap + len > win[0].len)
        break;
      *o = (struct op){OP_WRITE, 0, at + gap, len, t_rand64(&r)};
      at += gap + len;
      n_ops++;
    }
    ops[n_ops++] = (struct op){.type = OP_FLUSH};
    return;
  }
  size_t want = 150 + t_below(&r, 100);
  while (n_ops < want) {
    struct op *o = &ops[n_ops++];
    uint64_t k = t_below(&r, 100);
    unsigned w = (unsigned)t_below(&r, n_win);
    if (k < 10) {
      *o = (struct op){.type = OP_FLUSH};
      continue;
    }
    uint64_t len = rand_len(&r, win[w].len);
    uint64_t off = rand_off(&r, win[w].len, len, grain, table);
    if (k < 20) {
      if (t_below(&r, 2)) { /* whole grains */
        off = off / grain * grain;
        len = (len + grain - 1) / grain * grain;
        if (off + len > win[w].len)
          len = win[w].len - off;
      }
      *o = (struct op){OP_ZERO, w, off, len, 0};
    } else {
      *o = (struct op){OP_WRITE, w, off, len, t_rand64(&r)};
    }
  }
  ops[n_ops - 1] = (struct op){.type = OP_FLUSH};
}

/* Apply op I to the mirror M. */
static void apply(uint8_t *m, size_t i) {
  const struct op *o = &ops[i];
  uint8_t *p = m + win[o->w].moff + o->off;
  if (o->type == OP_WRITE)
    t_fill(p, o->len, o->data);
  else if (o->type == OP_ZERO)
    memset(p, 0, o->len);
}

/* ---- the side file ------------------------------------------------------ */

#define REC_MAGIC 0x6b696c6c6f6b3921ull
enum { REC_FLUSHED = 1, REC_DONE = 2 };
struct record {
  uint64_t magic, type, value, count, sum;
};

static int record(int fd, uint64_t type, uint64_t value, uint64_t count) {
  struct record r = {REC_MAGIC, type, value, count, 0};
  r.sum = r.magic ^ (type * 3) ^ (value * 5) ^ (count * 7);
  if (write(fd, &r, sizeof r) != (ssize_t)sizeof r || fsync(fd) != 0)
    return -1;
  return 0;
}

/* The last complete record of PATH: 0, or -1 when there is none. */
static int last_record(const char *path, struct record *out) {
  size_t len = 0;
  uint8_t *b = t_read_file(path, &len);
  int found = -1;
  for (size_t at = 0; b && at + sizeof *out <= len; at += sizeof *out) {
    struct record r;
    memcpy(&r, b + at, sizeof r);
    if (r.magic == REC_MAGIC &&
        r.sum == (r.magic ^ (r.type * 3) ^ (r.value * 5) ^ (r.count * 7))) {
      *out = r;
      found = 0;
    }
  }
  free(b);
  return found;
}

/* ---- making the images ----------------------------------------------- */

static const struct layout *cur;
static uint64_t run_seed;
static uint8_t *base;     /* what the disk reads before any operation */
static uint8_t *mirror;   /* the flushed state */
static uint8_t *rbuf, *tmp;
static char image[4200], sidefile[4200], cli[4200];
static bool have_qemu;

static void u32_to_le(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* An empty COWD extent of CAPACITY sectors (the layout of test-cowd.c). */
static int make_cowd(const char *path, uint32_t capacity, uint32_t grain) {
  uint32_t gdes =
      (uint32_t)((capacity + 4096ull * grain - 1) / (4096ull * grain));
  uint32_t gd_sectors = (gdes * 4 + 511) / 512;
  uint32_t free_sector = 4 + gd_sectors;
  size_t len = (size_t)free_sector * 512;
  uint8_t *b = calloc(1, len);
  if (!b)
    return -1;
  uint32_t h[8] = {0x44574f43u, 1, 3, capacity, grain, 4, gdes, free_sector};
  for (int i = 0; i < 8; i++)
    u32_to_le(b + 4 * i, h[i]);
  int r = t_write_file(path, b, len);
  free(b);
  return r;
}

/* Clear the GD and RGD of the monolithicSparse file PATH, so grain tables
 * are allocated on first write (as VMware's images do); the tables that
 * were preallocated become unused zeros inside the metadata area. */
static int make_lazy(const char *path) {
  size_t len = 0;
  uint8_t *b = t_read_file(path, &len);
  if (!b || len < 512)
    return -1;
  uint64_t cap = le64(b + 12), grain = le64(b + 20), rgd = le64(b + 48),
           gd = le64(b + 56);
  uint32_t gtes = le32(b + 44);
  uint64_t n = (cap + grain * gtes - 1) / (grain * gtes);
  int r = 0;
  if ((rgd + 1) * 512 + n * 4 > len || (gd + 1) * 512 + n * 4 > len)
    r = -1;
  else {
    memset(b + rgd * 512, 0, n * 4);
    memset(b + gd * 512, 0, n * 4);
    r = t_write_file(path, b, len);
  }
  free(b);
  return r;
}

static int read_windows(struct vmdk_disk *d, uint8_t *out) {
  for (unsigned i = 0; i < n_win; i++)
    for (uint64_t at = 0; at < win[i].len; at += 4 * MiB) {
      uint64_t n = win[i].len - at < 4 * MiB ? win[i].len - at : 4 * MiB;
      if (vmdk_pread(d, out + win[i].moff + at, n, win[i].voff + at) != 0)
        return -1;
    }
  return 0;
}

/* A fresh image for the current layout at IMAGE; BASE gets what it reads. */
static int make_image(const struct layout *l) {
  struct vmdk_create_options o = {.size_bytes = l->size,
                                  .grain_sectors = l->grain};
  const char *dir = t_dir;
  char parent[4200];
  snprintf(parent, sizeof parent, "%s/parent.vmdk", dir);
  unlink(parent);
  struct vmdk_disk *d;
  switch (l->kind) {
  case K_SPARSE:
    snprintf(image, sizeof image, "%s/%s.vmdk", dir, l->name);
    d = vmdk_create(image, &o, VMDK_OPEN_RDWR);
    if (!d || vmdk_close(d) != 0)
      return -1;
    break;
  case K_ZEROED_CHILD:
  case K_CHILD: {
    /* A parent with data in about half of it. */
    d = vmdk_create(parent, &o, VMDK_OPEN_RDWR);
    if (!d)
      return -1;
    struct t_rng r = {run_seed ^ 0x5a5a};
    for (int i = 0; i < 40; i++) {
      uint64_t len = 1 + t_below(&r, 512 * KiB);
      uint64_t off = t_below(&r, l->size - len);
      t_fill(tmp, len, t_rand64(&r));
      if (vmdk_pwrite(d, tmp, len, off) != 0) {
        vmdk_close(d);
        return -1;
      }
    }
    if (vmdk_close(d) != 0)
      return -1;
    snprintf(image, sizeof image, "%s/%s.vmdk", dir, l->name);
    struct vmdk_create_options c = {.grain_sectors = l->grain,
                                    .backing_file = "parent.vmdk",
                                    .zeroed_grain = l->kind == K_ZEROED_CHILD};
    d = vmdk_create(image, &c, VMDK_OPEN_RDWR);
    if (!d || vmdk_close(d) != 0)
      return -1;
    break;
  }
  case K_COWD: {
    /* qemu-img opens COWD files only through a descriptor. */
    char extent[4200], desc[512];
    snprintf(extent, sizeof extent, "%s/%s-delta.vmdk", dir, l->name);
    if (make_cowd(extent, (uint32_t)(l->size / 512), l->grain) != 0)
      return -1;
    int len = snprintf(desc, sizeof desc,
                       "# Disk DescriptorFile\nversion=1\nCID=5a3c1e01\n"
                       "parentCID=ffffffff\ncreateType=\"vmfsSparse\"\n\n"
                       "RW %" PRIu64 " VMFSSPARSE \"%s-delta.vmdk\"\n\n"
                       "ddb.adapterType = \"lsilogic\"\n",
                       l->size / 512, l->name);
    snprintf(image, sizeof image, "%s/%s.vmdk", dir, l->name);
    if (t_write_file(image, desc, (size_t)len) != 0)
      return -1;
    break;
  }
  case K_SPLIT:
    snprintf(image, sizeof image, "%s/%s.vmdk", dir, l->name);
    o.subformat = VMDK_SUBFORMAT_TWOGB_SPARSE;
    d = vmdk_create(image, &o, VMDK_OPEN_RDWR);
    if (!d || vmdk_close(d) != 0)
      return -1;
    break;
  case K_STREAM:
    snprintf(image, sizeof image, "%s/%s.vmdk", dir, l->name);
    o.subformat = VMDK_SUBFORMAT_STREAM_OPTIMIZED;
    d = vmdk_create(image, &o, VMDK_OPEN_RDWR);
    if (!d || vmdk_close(d) != 0)
      return -1;
    break;
  }
  if (l->lazy && make_lazy(image) != 0)
    return -1;
  d = vmdk_open(image, 0);
  if (!d)
    return -1;
  int r = read_windows(d, base);
  vmdk_close(d);
  return r;
}

/* ---- the writer --------------------------------------------------------- */

static void child_fail(const char *what, size_t i) {
  fprintf(stderr, "writer: op %zu: %s: %s\n", i, what, vmdk_get_error());
  _exit(2);
}

/* Runs in the child; never returns (and never runs atexit handlers, which
 * would remove the parent's directory). */
static void writer(uint64_t kill_at) {
  int fd = open(sidefile, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (fd < 0)
    _exit(3);
  struct vmdk_disk *d = vmdk_open(image, VMDK_OPEN_RDWR);
  if (!d)
    child_fail("open", 0);
  uint8_t *buf = malloc(MAX_OP_LEN + 1);
  if (!buf)
    _exit(3);
  cp_count = 0;
  cp_kill_at = kill_at;
  cp_armed = 1;
  for (size_t i = 0; i < n_ops; i++) {
    const struct op *o = &ops[i];
    uint64_t at = win[o->w].voff + o->off;
    switch (o->type) {
    case OP_WRITE:
      t_fill(buf, o->len, o->data);
      if (vmdk_pwrite(d, buf, o->len, at) != 0)
        child_fail("pwrite", i);
      break;
    case OP_ZERO:
      if (vmdk_zero(d, o->len, at) != 0)
        child_fail("zero", i);
      break;
    case OP_FLUSH:
      if (vmdk_flush(d) != 0)
        child_fail("flush", i);
      if (record(fd, REC_FLUSHED, i, 0) != 0)
        _exit(3);
      break;
    }
  }
  if (vmdk_close(d) != 0)
    child_fail("close", n_ops);
  cp_armed = 0;
  if (record(fd, REC_DONE, n_ops, cp_count) != 0)
    _exit(3);
  _exit(0);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the writer; kill it after DELAY seconds (< 0: never) or at crash
 * point KILL_AT.  Returns whether it was killed, or -1 when it failed. */
static int run_writer(double delay, uint64_t kill_at) {
  fflush(stdout);
  fflush(stderr);
  /* No records of an earlier run (the writer may die before it opens the
   * file). */
  if (unlink(sidefile) != 0 && errno != ENOENT)
    return -1;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0)
    writer(kill_at);
  if (delay >= 0) {
    struct timespec ts = {(time_t)delay,
                          (long)((delay - (double)(time_t)delay) * 1e9)};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -1;
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
    return 1;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    return 0;
  FAIL("%s: the writer failed (status 0x%x)", cur->name, st);
  return -1;
}

/* ---- checking ------------------------------------------------------------ */

struct problems {
  unsigned n;
  char first[512];
};

static void note_problem(void *opaque, enum vmdk_problem_kind kind,
                         const char *msg) {
  struct problems *p = opaque;
  if (kind == VMDK_PROBLEM_CORRUPT && p->n++ == 0)
    snprintf(p->first, sizeof p->first, "%s", msg);
}

/* Run CMD (a shell command line); its exit status, -1 if it did not run.
 * Output goes to $t_dir/cmd.out. */
static int shell(const char *cmd) {
  char line[13400];
  snprintf(line, sizeof line, "%s >'%s/cmd.out' 2>&1", cmd, t_dir);
  fflush(stdout);
  int st = system(line);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void show_cmd_output(void) {
  size_t n = 0;
  char path[4200];
  snprintf(path, sizeof path, "%s/cmd.out", t_dir);
  uint8_t *b = t_read_file(path, &n);
  if (b) {
    fprintf(stderr, "%.*s\n", (int)(n > 3000 ? 3000 : n), (const char *)b);
    free(b);
  }
}

/* Every byte is the flushed value, or that of an operation in (K, F]. */
static void compare(const char *what, long k, size_t f) {
  /* The data of the operations that may or may not have landed. */
  size_t first_later = (size_t)(k + 1);
  size_t n_later = f >= first_later ? f - first_later + 1 : 0;
  uint8_t **later = calloc(n_later + 1, sizeof *later);
  if (!later)
    exit(1);
  for (size_t i = first_later; i <= f && i < n_ops; i++)
    if (ops[i].type == OP_WRITE && (later[i - first_later] = malloc(ops[i].len)))
      t_fill(later[i - first_later], ops[i].len, ops[i].data);
  uint64_t bad = 0, first = 0;
  for (uint64_t m = 0; m < mirror_len; m++) {
    if (rbuf[m] == mirror[m])
      continue;
    bool ok = false;
    for (size_t i = first_later; i <= f && i < n_ops && !ok; i++) {
      const struct op *o = &ops[i];
      uint64_t s = win[o->w].moff + o->off;
      if (o->type == OP_FLUSH || m < s || m >= s + o->len)
        continue;
      if (o->type == OP_ZERO)
        ok = rbuf[m] == 0;
      else if (later[i - first_later])
        ok = rbuf[m] == later[i - first_later][m - s];
    }
    if (!ok && bad++ == 0)
      first = m;
  }
  for (size_t i = 0; i < n_later; i++)
    free(later[i]);
  free(later);
  if (bad) {
    unsigned w = 0;
    while (w + 1 < n_win && first >= win[w + 1].moff)
      w++;
    FAIL("%s: %" PRIu64 " bytes read neither as flushed nor as a later "
         "write; first at disk offset %" PRIu64 ": 0x%02x, flushed 0x%02x",
         what, bad, win[w].voff + (first - win[w].moff), rbuf[first],
         mirror[first]);
  }
}

static bool is_stream(void) { return cur->kind == K_STREAM; }

/* After a run: the checks 1-4 of the header comment.  K: the last flushed
 * operation (-1: none); F: the last operation that may have been issued. */
static void verify(const char *what, long k, size_t f) {
  memcpy(mirror, base, mirror_len);
  for (long i = 0; i <= k; i++)
    apply(mirror, (size_t)i);

  if (is_stream()) { /* whole, or refused as truncated: never half-read */
    struct vmdk_disk *plain = vmdk_open(image, 0);
    CHECK(plain || vmdk_get_errno() == ENODATA,
          "%s: a killed writer's stream neither opens nor is refused as "
          "truncated: %s", what, vmdk_get_error());
    vmdk_close(plain);
  }
  struct vmdk_disk *d = vmdk_open(image, is_stream() ? VMDK_OPEN_SALVAGE : 0);
  if (!CHECK(d != NULL, "%s: open after the kill: %s", what, vmdk_get_error()))
    return;
  struct vmdk_check_result res;
  struct problems p = {0};
  if (CHECK(vmdk_check(d, &res, note_problem, &p) == 0, "%s: vmdk_check: %s",
            what, vmdk_get_error()) &&
      !is_stream())
    CHECK(res.corruptions == 0,
          "%s: vmdk_check: %" PRIu64 " corruptions (first: %s)", what,
          res.corruptions, p.first);
  if (CHECK(read_windows(d, rbuf) == 0, "%s: read: %s", what,
            vmdk_get_error()))
    compare(what, k, f);
  vmdk_close(d);

  char cmd[9000];
  if (cli[0] && !is_stream()) {
    snprintf(cmd, sizeof cmd, "'%s' check '%s'", cli, image);
    int rc = shell(cmd);
    if (!CHECK(rc == 0 || rc == 3, "%s: vmdkit check exited %d", what, rc))
      show_cmd_output();
  }
  if (have_qemu && !is_stream()) {
    snprintf(cmd, sizeof cmd, "qemu-img check -f vmdk '%s'", image);
    int rc = shell(cmd);
    if (!CHECK(rc == 0 || rc == 3, "%s: qemu-img check exited %d", what, rc))
      show_cmd_output();
  }
  if (is_stream())
    return;

  /* 3: repair everything; then nothing is left and nothing reads
   * differently (rbuf holds what the disk read).  Check found no
   * corruption, so the repair must not fix any either. */
  d = vmdk_open(image, VMDK_OPEN_RDWR);
  if (!CHECK(d != NULL, "%s: read-write open: %s", what, vmdk_get_error()))
    return;
  struct vmdk_check_result after;
  memset(&after, 0xff, sizeof after);
  memset(&p, 0, sizeof p);
  if (CHECK(vmdk_repair(d, VMDK_REPAIR_ALL, &after, note_problem, &p) == 0,
            "%s: vmdk_repair: %s", what, vmdk_get_error()))
    CHECK(after.corruptions == 0 && after.leaks == 0 && p.n == 0,
          "%s: after vmdk_repair: %" PRIu64 " corruptions, %" PRIu64
          " leaks; %u corruptions repaired (first: %s)",
          what, after.corruptions, after.leaks, p.n, p.first);
  CHECK(read_windows(d, tmp) == 0 && t_first_diff(tmp, rbuf, mirror_len) < 0,
        "%s: vmdk_repair changed what the disk reads", what);

  /* 4: a write and a clean close leave a clean image. */
  static const char note[] = "written after the crash";
  CHECK(vmdk_pwrite(d, note, sizeof note, win[0].voff + 4096) == 0,
        "%s: write after the crash: %s", what, vmdk_get_error());
  CHECK(vmdk_close(d) == 0, "%s: close: %s", what, vmdk_get_error());
  d = vmdk_open(image, 0);
  if (!CHECK(d != NULL, "%s: reopen: %s", what, vmdk_get_error()))
    return;
  memset(&p, 0, sizeof p);
  if (CHECK(vmdk_check(d, &res, note_problem, &p) == 0, "%s: vmdk_check: %s",
            what, vmdk_get_error()))
    CHECK(res.corruptions == 0 && res.leaks == 0,
          "%s: after a clean close: %" PRIu64 " corruptions (%s), %" PRIu64
          " leaks",
          what, res.corruptions, p.first, res.leaks);
  char back[sizeof note];
  CHECK(vmdk_pread(d, back, sizeof back, win[0].voff + 4096) == 0 &&
            memcmp(back, note, sizeof note) == 0,
        "%s: the write after the crash does not read back", what);
  vmdk_close(d);
}

/* The last flushed operation from the side file, and the last one the
 * writer may have issued. */
static void outcome(long *k, size_t *f, bool *done) {
  struct record r;
  *k = -1;
  *done = false;
  if (last_record(sidefile, &r) == 0) {
    if (r.type == REC_DONE) {
      *done = true;
      *k = (long)n_ops - 1;
    } else {
      *k = (long)r.value;
    }
  }
  /* Nothing after the next flush was issued: the writer records a flush
   * before it goes on. */
  size_t i = (size_t)(*k + 1);
  while (i < n_ops && ops[i].type != OP_FLUSH)
    i++;
  *f = i;
}

int main(int argc, char **argv) {
  uint64_t seed = 20240907;
  const char *s = argc > 1 ? argv[1] : getenv("VMDKIT_SEED");
  if (s && *s)
    seed = strtoull(s, NULL, 0);
  unsigned runs = 4;
  const char *rs = getenv("VMDKIT_CRASH_RUNS");
  if (rs && *rs)
    runs = (unsigned)strtoul(rs, NULL, 0);
  uint64_t kill_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  const char *ks = getenv("VMDKIT_KILL_SEED");
  if (ks && *ks)
    kill_seed = strtoull(ks, NULL, 0);
  printf("seed %" PRIu64 " (replay: VMDKIT_SEED=%" PRIu64
         "), kill-time seed %" PRIu64 " (VMDKIT_KILL_SEED), %u timed + %u "
         "point runs per layout\n",
         seed, seed, kill_seed, runs, runs);

  t_tmpdir("crash-kill");
  snprintf(sidefile, sizeof sidefile, "%s/flushed.log", t_dir);
  have_qemu = shell("command -v qemu-img") == 0;
  /* The CLI is built next to the tests directory. */
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) {
      *slash = 0;
      snprintf(cli, sizeof cli, "%s/../vmdkit", self);
      if (access(cli, X_OK) != 0)
        cli[0] = 0;
    }
  }
  if (!have_qemu)
    printf("note: qemu-img is not installed: its check is skipped\n");
  if (!cli[0])
    printf("note: the vmdkit CLI is not built next to this test: only the "
           "library's check runs\n");

  size_t max_mirror = 32 * MiB;
  base = malloc(max_mirror);
  mirror = malloc(max_mirror);
  rbuf = malloc(max_mirror);
  tmp = malloc(max_mirror > MAX_OP_LEN ? max_mirror : MAX_OP_LEN);
  if (!base || !mirror || !rbuf || !tmp)
    return 1;
  struct t_rng kr = {kill_seed};

  for (size_t li = 0; li < sizeof layouts / sizeof *layouts; li++) {
    cur = &layouts[li];
    set_windows(cur);
    if (!CHECK(mirror_len <= max_mirror, "%s: windows too large (test bug)",
               cur->name))
      break;
    unsigned killed = 0, finished = 0;
    double duration = 0;
    uint64_t points = 0;
    for (unsigned run = 0; run <= 2 * runs; run++) {
      run_seed = seed * 1000 + li * 100 + run;
      make_ops(cur, run_seed);
      if (!CHECK(make_image(cur) == 0, "%s: making the image: %s", cur->name,
                 vmdk_get_error()))
        break;
      /* Run 0 is not killed: it gives the duration and the number of
       * crash points of the runs (each run has its own operations, so
       * these are estimates for the others; a run that finishes before
       * the kill is checked all the same). */
      char what[128];
      double delay = -1;
      uint64_t kill_at = 0;
      if (run == 0) {
        snprintf(what, sizeof what, "%s run 0 (not killed)", cur->name);
      } else if (run <= runs) {
        delay = duration * (double)t_below(&kr, 1000) / 1000.0;
        snprintf(what, sizeof what, "%s run %u (seed %" PRIu64
                                    ", killed after %.1f ms)",
                 cur->name, run, run_seed, delay * 1e3);
      } else {
        kill_at = 1 + t_below(&(struct t_rng){run_seed}, points ? points : 1);
        snprintf(what, sizeof what, "%s run %u (seed %" PRIu64
                                    ", killed at file call %" PRIu64 ")",
                 cur->name, run, run_seed, kill_at);
      }
      double t0 = now();
      int w = run_writer(delay, kill_at);
      if (w < 0)
        break;
      long k;
      size_t f;
      bool done;
      outcome(&k, &f, &done);
      if (run == 0) {
        struct record r;
        duration = now() - t0;
        points = last_record(sidefile, &r) == 0 ? r.count : 0;
        if (!CHECK(done && points > 0,
                   "%s: the unkilled run did not finish or counted no file "
                   "calls (%" PRIu64 "): are pwrite & co. not this test's?",
                   cur->name, points))
          break;
      }
      killed += w == 1;
      finished += done;
      verify(what, done ? (long)n_ops - 1 : k, done ? n_ops : f);
      if (t_failures) {
        fprintf(stderr, "FAILED: %s; %zu ops, flushed through op %ld\n",
                what, n_ops, k);
        return t_exit_code();
      }
    }
    printf("%-14s %u runs killed, %u finished; unkilled run: %.0f ms, %"
           PRIu64 " file calls\n",
           cur->name, killed, finished, duration * 1e3, points);
  }
  return t_exit_code();
}
