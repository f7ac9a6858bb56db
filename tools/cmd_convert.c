/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit convert: copy the virtual disk of one image into a new raw or VMDK
 * image, leaving holes and zero runs unallocated.
 *
 * The source is read as a whole: a child image is read through its backing
 * chain, so the copy is flattened.  The new image reads as zeros everywhere
 * after vmdk_create(), so only non-zero data is written: runs the source
 * reports as ZERO are skipped without reading, and within DATA runs every
 * target-cluster-sized block that is all zeros is skipped too.
 *
 * With -B BACKING the new image is a child of BACKING and reads BACKING's
 * data from the start; then every target cluster is compared with what the
 * source reads there, and only the clusters that differ are written.
 *
 * On any failure every file the new image consists of is removed. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { OPT_SALVAGE = CLI_OPT_FIRST };

static int convert_run(int argc, char **argv);

const struct cli_command cmd_convert = {
    .name = "convert",
    .summary = "copy an image to a new raw or VMDK image",
    .description =
        "Copy the virtual disk of the image SOURCE into the new image DEST "
        "(which is overwritten).  Zero runs and all-zero clusters are not "
        "written, so they stay unallocated in DEST.  A SOURCE with a backing "
        "chain is read through it: DEST is the flattened whole."
        "\n\n"
        "With -B, DEST is made a child of BACKING (-O vmdk, a sparse "
        "subformat) and holds only the clusters whose content differs from "
        "what BACKING reads there.  A relative BACKING is relative to DEST's "
        "folder, as in qemu-img.",
    .options =
        (const struct cli_option[]){
            {'f', NULL, "FMT", CLI_FORMAT, 0,
             "format of SOURCE (default: probe, as qemu-img does; VMDK and raw are read natively, the others through qemu-nbd)"},
            {'O', NULL, "FMT", CLI_FORMAT_OUT, 0,
             "format of DEST (default raw, like qemu-img); QEMU's formats "
             "are made with qemu-img create and written through qemu-nbd"},
            {'o', NULL, "OPTIONS", CLI_CREATE_OPTIONS, 0,
             "VMDK options for DEST, as for 'vmdkit create' ('-o help')"},
            {'B', NULL, "BACKING", CLI_FILE, 0,
             "make DEST a child of BACKING holding only the difference"},
            {'F', NULL, "FMT", CLI_FORMAT_VMDK, 0,
             "format of BACKING: vmdk or raw (default: probe)"},
            {'p', NULL, NULL, CLI_NONE, 0, "show progress on stderr"},
            {'q', NULL, NULL, CLI_NONE, 0, "quiet (no progress)"},
            {'t', NULL, "CACHE", CLI_CACHE, 0,
             "cache mode for DEST, as qemu-img: unsafe (the default for "
             "convert, as in qemu-img: nothing is synced), writeback (synced "
             "at the end), none (O_DIRECT where possible), writethrough and "
             "directsync (flush after every write)"},
            {'m', NULL, "N", CLI_NUMBER, 0,
             "worker threads, 1 to 16 (qemu-img's coroutines); they compress "
             "streamOptimized grains (default: one per CPU)"},
            {'W', NULL, NULL, CLI_NONE, 0,
             "allow out-of-order writes (accepted as in qemu-img; no effect: "
             "writes stay in order)"},
            {OPT_SALVAGE, "salvage", NULL, CLI_NONE, 0,
             "convert a truncated streamOptimized SOURCE (no footer, grains "
             "cut off; refused without it): the grains found whole by its "
             "markers are copied, everything else reads as zeros; what was "
             "missing is printed as a warning"},
            CLI_OPTIONS_END,
        },
    .operands = (const struct cli_operand[]){{"SOURCE", CLI_FILE},
                                             {"DEST", CLI_FILE},
                                             {NULL, CLI_NONE}},
    .run = convert_run,
};

/* Bytes read from the source per call; chunks are aligned to this size on
 * the virtual disk, so they are also aligned to every smaller power-of-two
 * cluster size. */
#define CONVERT_CHUNK (2 * MiB)
/* Zero-detection block when the target has no clusters (raw, flat). */
#define DEFAULT_ZERO_BLOCK ((uint64_t)64 * 1024)

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

/* The files an image consists of, to remove them if the copy fails. */
struct file_list {
  char **paths;
  size_t n;
};

static int file_list_add(struct file_list *l, const char *path) {
  char **p = realloc(l->paths, (l->n + 1) * sizeof *p);
  if (!p)
    return -1;
  l->paths = p;
  if (!(l->paths[l->n] = strdup(path)))
    return -1;
  l->n++;
  return 0;
}

static void file_list_remove_files(const struct file_list *l) {
  for (size_t i = 0; i < l->n; i++)
    if (unlink(l->paths[i]) < 0 && errno != ENOENT)
      cli_error(l->paths[i], "could not remove the partial output: %s",
                strerror(errno));
}

static void file_list_free(struct file_list *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->paths[i]);
  free(l->paths);
  l->paths = NULL;
  l->n = 0;
}

/* One warning line per streamOptimized extent of SRC (and its backing
 * chain) that is not whole: what is missing.  A truncated one opened only
 * with --salvage; one without its end-of-stream marker lost nothing. */
static int warn_stream_damage(struct vmdk_disk *src) {
  for (struct vmdk_disk *d = src; d; d = vmdk_get_backing(d)) {
    struct vmdk_info info;
    if (vmdk_get_info(d, &info) < 0) {
      cli_lib_error(NULL);
      return -1;
    }
    for (size_t i = 0; i < info.n_extents; i++) {
      const struct vmdk_extent_info *e = &info.extents[i];
      if (!e->stream_damage)
        continue;
      if (strcmp(e->stream, "truncated") == 0)
        cli_error(e->filename, "warning: %s; the rest reads as zeros",
                  e->stream_damage);
      else
        cli_error(e->filename, "warning: %s", e->stream_damage);
    }
  }
  return 0;
}

/* Refuse a DEST that is a file of the source image or of its backing
 * chain: creating DEST would destroy the data being copied. */
static int check_not_source(const char *dest, const char *src_name,
                            struct vmdk_disk *src) {
  return cli_check_not_layer_file(dest, src, src_name, "the source image");
}

struct copy {
  struct vmdk_disk *src, *dst;
  const char *src_name, *dst_name;
  uint64_t size;      /* bytes to copy: the source's virtual size */
  uint64_t block;     /* zero-detection block, a power of two: the target
                         cluster size, at most CHUNK */
  size_t chunk;       /* read size: CONVERT_CHUNK, a multiple of BLOCK */
  unsigned char *buf; /* -B: CHUNK bytes, what the source reads */
  unsigned char *old; /* -B: CHUNK bytes, what DST reads before the write */
  bool writethrough;  /* -t writethrough|directsync: flush after each write */
  struct cli_progress progress;
};

/* Write N bytes of BUF into DST at virtual offset OFF, then flush it when
 * the cache mode asks for that after every write. */
static int put_data(struct copy *cp, const void *buf, size_t n, uint64_t off) {
  if (vmdk_pwrite(cp->dst, buf, n, off) < 0 ||
      (cp->writethrough && vmdk_flush(cp->dst) < 0)) {
    cli_lib_error(cp->dst_name);
    return -1;
  }
  return 0;
}

/* Write the non-zero BLOCK-aligned pieces of the N bytes in BUF that
 * belong at virtual offset OFF. */
static int write_nonzero(struct copy *cp, const unsigned char *buf,
                         uint64_t off, size_t n) {
  size_t pos = 0, data_start = 0;
  bool in_data = false;
  while (pos < n) {
    uint64_t abs = off + pos;
    size_t piece = (size_t)((abs / cp->block + 1) * cp->block - abs);
    if (piece > n - pos)
      piece = n - pos;
    bool zero = buffer_is_zero(buf + pos, piece);
    if (!zero && !in_data) {
      data_start = pos;
      in_data = true;
    } else if (zero && in_data) {
      if (put_data(cp, buf + data_start, pos - data_start, off + data_start) <
          0)
        return -1;
      in_data = false;
    }
    pos += piece;
  }
  if (in_data &&
      put_data(cp, buf + data_start, n - data_start, off + data_start) < 0)
    return -1;
  return 0;
}

/* copy_data's read-ahead: a reader thread walks the source's runs and reads
 * its data into a ring of RING chunk buffers while the main thread writes
 * the chunks read before, so reading the source (inflating a stream,
 * copying out of the page cache) overlaps writing the target.  Items are
 * written in the order they were read: the target is still written front
 * to back, each cluster once.  The two threads use different handles
 * (SRC only in the reader, DST only in the main thread); errors are
 * per-thread in the library, so each thread prints its own. */
#define RING 4

struct item {
  uint64_t off, end; /* the virtual range [off, end) it covers */
  bool data;         /* BUF holds end - off bytes read at OFF; else the
                        range is a zero run the target already reads */
  unsigned char *buf;
};

struct reader {
  struct copy *cp;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct item items[RING];
  unsigned char *bufs[RING]; /* CHUNK bytes each */
  uint64_t produced, consumed; /* items; produced - consumed <= RING */
  bool done;                   /* the reader stopped (see FAILED) */
  bool failed;                 /* it stopped on an error it printed */
  bool stop;                   /* the writer asks it to stop */
};

/* The reader thread (see above): the copy plan of copy_data. */
static void *read_ahead(void *arg) {
  struct reader *rd = arg;
  struct copy *cp = rd->cp;
  struct run_cursor cur;
  run_cursor_init(&cur, cp->src, cp->src_name);
  uint64_t off = 0; /* always a multiple of cp->block (or the size) */
  bool failed = false;
  while (off < cp->size && !interrupted) {
    pthread_mutex_lock(&rd->mu);
    while (rd->produced - rd->consumed == RING && !rd->stop)
      pthread_cond_wait(&rd->cv, &rd->mu);
    bool stop = rd->stop;
    pthread_mutex_unlock(&rd->mu);
    if (stop)
      break;
    struct item *it = &rd->items[rd->produced % RING];
    const struct vmdk_run *r;
    if (run_cursor_at(&cur, off, &r) < 0) {
      failed = true;
      break;
    }
    uint64_t run_end = r->offset + r->length;
    uint64_t zero_end = run_end == cp->size ? run_end
                                            : run_end / cp->block * cp->block;
    if ((r->flags & VMDK_RUN_ZERO) && zero_end > off) {
      /* whole clusters the target already reads as zeros */
      *it = (struct item){off, zero_end, false, NULL};
    } else {
      uint64_t stop_at = (off / cp->chunk + 1) * cp->chunk;
      uint64_t data_end = (run_end + cp->block - 1) / cp->block * cp->block;
      if (!(r->flags & VMDK_RUN_ZERO) && stop_at > data_end)
        stop_at = data_end;
      if (stop_at <= off)
        stop_at = off + cp->block;
      if (stop_at > cp->size)
        stop_at = cp->size;
      *it = (struct item){off, stop_at, true, rd->bufs[rd->produced % RING]};
      if (vmdk_pread(cp->src, it->buf, (size_t)(stop_at - off), off) < 0) {
        cli_lib_error(cp->src_name);
        failed = true;
        break;
      }
    }
    off = it->end;
    pthread_mutex_lock(&rd->mu);
    rd->produced++;
    pthread_cond_signal(&rd->cv);
    pthread_mutex_unlock(&rd->mu);
  }
  pthread_mutex_lock(&rd->mu);
  rd->done = true;
  rd->failed = failed;
  pthread_cond_signal(&rd->cv);
  pthread_mutex_unlock(&rd->mu);
  return NULL;
}

/* Copy in windows aligned to the target's cluster (BLOCK), so every write
 * covers whole clusters: each target cluster is written once, in
 * ascending order (what a streamOptimized target needs), and a cluster
 * that the source's runs split is read and written whole.  The source is
 * read ahead by a second thread (struct reader). */
static int copy_data(struct copy *cp) {
  struct reader rd = {.cp = cp};
  int r = 0;
  for (unsigned i = 0; i < RING; i++)
    if (!(rd.bufs[i] = malloc(cp->chunk))) {
      cli_error(NULL, "out of memory");
      r = -1;
    }
  pthread_t tid;
  bool started = false;
  pthread_mutex_init(&rd.mu, NULL);
  pthread_cond_init(&rd.cv, NULL);
  if (r == 0) {
    int e = pthread_create(&tid, NULL, read_ahead, &rd);
    if (e != 0) {
      cli_error(NULL, "cannot start the reader thread: %s", strerror(e));
      r = -1;
    }
    started = e == 0;
  }
  while (r == 0) {
    pthread_mutex_lock(&rd.mu);
    while (rd.produced == rd.consumed && !rd.done)
      pthread_cond_wait(&rd.cv, &rd.mu);
    bool have = rd.produced != rd.consumed, failed = rd.failed;
    pthread_mutex_unlock(&rd.mu);
    if (failed) { /* the reader printed why */
      r = -1;
      break;
    }
    if (interrupted) {
      cli_error(cp->dst_name, "interrupted");
      r = -1;
      break;
    }
    if (!have)
      break; /* the reader is done and everything is written */
    const struct item *it = &rd.items[rd.consumed % RING];
    if (it->data &&
        write_nonzero(cp, it->buf, it->off, (size_t)(it->end - it->off)) < 0) {
      r = -1;
      break;
    }
    progress_update(&cp->progress, it->end, cp->size);
    pthread_mutex_lock(&rd.mu);
    rd.consumed++;
    pthread_cond_signal(&rd.cv);
    pthread_mutex_unlock(&rd.mu);
  }
  if (started) {
    pthread_mutex_lock(&rd.mu);
    rd.stop = true;
    pthread_cond_signal(&rd.cv);
    pthread_mutex_unlock(&rd.mu);
    pthread_join(tid, NULL);
  }
  pthread_cond_destroy(&rd.cv);
  pthread_mutex_destroy(&rd.mu);
  for (unsigned i = 0; i < RING; i++)
    free(rd.bufs[i]);
  return r;
}

/* Write the N bytes at BUF + POS (virtual offset OFF + POS): zeros with
 * vmdk_zero() (a zeroed-grain entry where DST has the flag), else data. */
static int write_piece(struct copy *cp, uint64_t off, size_t pos, size_t n,
                       bool zero) {
  if (!zero)
    return put_data(cp, cp->buf + pos, n, off + pos);
  if (vmdk_zero(cp->dst, n, off + pos) < 0 ||
      (cp->writethrough && vmdk_flush(cp->dst) < 0)) {
    cli_lib_error(cp->dst_name);
    return -1;
  }
  return 0;
}

/* -B: DST reads its backing file.  Compare, one target cluster (BLOCK) at
 * a time, what the source reads with what DST reads, and write only the
 * clusters that differ; neighbours of the same kind (data, zeros) go in
 * one call.  Ranges that read as zeros in both are skipped unread. */
static int copy_difference(struct copy *cp) {
  struct run_cursor src_cur, dst_cur;
  run_cursor_init(&src_cur, cp->src, cp->src_name);
  run_cursor_init(&dst_cur, cp->dst, cp->dst_name);
  uint64_t off = 0; /* always a multiple of cp->block (or the size) */
  while (off < cp->size) {
    if (interrupted) {
      cli_error(cp->dst_name, "interrupted");
      return -1;
    }
    const struct vmdk_run *rs, *rd;
    if (run_cursor_at(&src_cur, off, &rs) < 0 ||
        run_cursor_at(&dst_cur, off, &rd) < 0)
      return -1;
    uint64_t both_end = rs->offset + rs->length;
    if (rd->offset + rd->length < both_end)
      both_end = rd->offset + rd->length;
    uint64_t zero_end = both_end >= cp->size ? cp->size
                                             : both_end / cp->block * cp->block;
    if ((rs->flags & VMDK_RUN_ZERO) && (rd->flags & VMDK_RUN_ZERO) &&
        zero_end > off) {
      off = zero_end;
      progress_update(&cp->progress, off, cp->size);
      continue;
    }
    uint64_t stop = (off / cp->chunk + 1) * cp->chunk;
    if (stop > cp->size)
      stop = cp->size;
    size_t n = (size_t)(stop - off);
    if (vmdk_pread(cp->src, cp->buf, n, off) < 0) {
      cli_lib_error(cp->src_name);
      return -1;
    }
    if (vmdk_pread(cp->dst, cp->old, n, off) < 0) {
      cli_lib_error(cp->dst_name);
      return -1;
    }
    size_t pos = 0, start = 0;
    bool pending = false, pending_zero = false;
    while (pos < n) {
      size_t piece = (size_t)(cp->block - (off + pos) % cp->block);
      if (piece > n - pos)
        piece = n - pos;
      bool differs = memcmp(cp->buf + pos, cp->old + pos, piece) != 0;
      bool zero = differs && buffer_is_zero(cp->buf + pos, piece);
      if (pending && (!differs || zero != pending_zero)) {
        if (write_piece(cp, off, start, pos - start, pending_zero) < 0)
          return -1;
        pending = false;
      }
      if (differs && !pending) {
        start = pos;
        pending = true;
        pending_zero = zero;
      }
      pos += piece;
    }
    if (pending && write_piece(cp, off, start, n - start, pending_zero) < 0)
      return -1;
    off = stop;
    progress_update(&cp->progress, off, cp->size);
  }
  return 0;
}

static int convert_run(int argc, char **argv) {
  struct cli_parser parser;
  struct vmdk_create_options opts = {0};
  bool salvage = false;
  int src_format = VMDK_FORMAT_AUTO, dst_format = VMDK_FORMAT_RAW;
  int backing_format = VMDK_FORMAT_AUTO;
  const char *backing = NULL;
  bool have_backing_format = false;
  bool have_opts = false, help = false, progress = false, quiet = false;
  /* -t: qemu-img convert's default cache mode is "unsafe". */
  unsigned cache_flags = VMDK_OPEN_UNSAFE;
  bool writethrough = false, out_of_order = false;
  uint64_t threads = 0; /* -m; 0: the library's default */
  int c;

  cli_parser_init(&parser, &cmd_convert, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'f':
      if (cli_parse_format(optarg, &src_format) < 0)
        return 1;
      break;
    case 'O':
      if (cli_parse_output_format(optarg, &dst_format) < 0)
        return 1;
      break;
    case 'o':
      if (cli_parse_create_options(optarg, &opts, &help) < 0)
        return 1;
      have_opts = true;
      break;
    case 'B':
      backing = optarg;
      break;
    case 'F':
      if (cli_parse_vmdk_format(optarg, &backing_format) < 0)
        return 1;
      have_backing_format = true;
      break;
    case 'p':
      progress = true;
      break;
    case 'q':
      quiet = true;
      break;
    case 't':
      if (cli_parse_cache(optarg, &cache_flags, &writethrough) < 0)
        return 1;
      break;
    case 'm':
      if (cli_parse_uint("number of workers (-m)", optarg, 1, 16, &threads) <
          0)
        return 1;
      break;
    case 'W':
      out_of_order = true;
      break;
    case OPT_SALVAGE:
      salvage = true;
      break;
    default:
      return cli_unhandled(&parser, c);
    }
  }
  if (c < 0)
    return parser.status;
  if (help)
    return cli_flush_stdout() == 0 ? 0 : 1;
  if (argc - optind != 2) {
    cli_usage_error(argv[0], "expected SOURCE DEST");
    return 1;
  }
  const char *dst_qemu = cli_qemu_format(dst_format);
  if ((dst_format == VMDK_FORMAT_RAW || dst_qemu) && have_opts) {
    cli_usage_error(argv[0], "-o options apply to -O vmdk only");
    return 1;
  }
  if (have_backing_format && !backing) {
    cli_usage_error(argv[0], "-F gives the format of a backing file: use it "
                             "with -B");
    return 1;
  }
  if (backing && !*backing) {
    cli_usage_error(argv[0], "-B needs a file name");
    return 1;
  }
  if (backing && (dst_format == VMDK_FORMAT_RAW || dst_qemu)) {
    cli_usage_error(argv[0], "a %s image cannot have a backing file here "
                             "(use -O vmdk with -B)",
                    dst_qemu ? dst_qemu : "raw");
    return 1;
  }
  const char *src_name = argv[optind], *dst_name = argv[optind + 1];

  char *hint = NULL;
  if (backing) {
    if (!(hint = cli_backing_hint(dst_name, backing)))
      return 1;
    if (cli_check_not_in_chain(dst_name, hint, backing_format) < 0) {
      free(hint);
      return 1;
    }
    opts.backing_file = hint;
    opts.backing_format = backing_format;
  }

  int ret = 1;
  struct copy cp = {.src_name = src_name, .dst_name = dst_name};
  struct file_list created = {NULL, 0};
  bool remove_output = false;

  cp.src = cli_open(src_name, src_format,
                            cli_open_flags | (salvage ? VMDK_OPEN_SALVAGE : 0));
  if (!cp.src) {
    if (vmdk_get_errno() == ENODATA) /* a truncated stream */
      cli_error(NULL, "%s; --salvage converts what is there",
                vmdk_get_error());
    else
      cli_lib_error(src_name);
    free(hint);
    return 1;
  }
  if (warn_stream_damage(cp.src) < 0)
    goto out;
  cp.size = vmdk_get_size(cp.src);
  if (check_not_source(dst_name, src_name, cp.src) < 0)
    goto out;

  opts.size_bytes = cp.size;
  if (dst_format == VMDK_FORMAT_RAW)
    opts.subformat = VMDK_SUBFORMAT_RAW;
  /* -m: the library's worker threads (compression of streamOptimized
   * grains).  -W changes nothing: grains are written in ascending order
   * whatever the number of threads. */
  opts.threads = (unsigned)threads;
  (void)out_of_order;
  cp.writethrough = writethrough;
  cp.dst = dst_qemu ? vmdk_create_qemu(dst_name, dst_qemu, &opts,
                                        cache_flags | cli_open_flags)
                   : vmdk_create(dst_name, &opts, cache_flags | cli_open_flags);
  if (!cp.dst) {
    cli_lib_error(dst_name);
    goto out;
  }
  /* From here on, failure removes every file of the new image. */
  remove_output = true;
  struct vmdk_info info;
  if (file_list_add(&created, dst_name) < 0) {
    cli_error(NULL, "out of memory");
    goto out;
  }
  if (vmdk_get_info(cp.dst, &info) < 0) {
    cli_lib_error(dst_name);
    goto out;
  }
  for (size_t i = 0; i < info.n_extents; i++) {
    if (info.extents[i].filename &&
        file_list_add(&created, info.extents[i].filename) < 0) {
      cli_error(NULL, "out of memory");
      goto out;
    }
  }
  if (vmdk_get_size(cp.dst) < cp.size) {
    cli_error(dst_name,
              "the new image has %" PRIu64 " bytes, less than the "
              "%" PRIu64 " bytes of %s (library bug)",
              vmdk_get_size(cp.dst), cp.size, src_name);
    goto out;
  }
  /* Skipping zero pieces finer than a cluster allocates the same clusters
   * (any non-zero byte allocates its cluster anyway) and writes less, so
   * clusters larger than a chunk are checked a chunk at a time. */
  cp.block = info.cluster_bytes ? info.cluster_bytes : DEFAULT_ZERO_BLOCK;
  if (cp.block > CONVERT_CHUNK)
    cp.block = CONVERT_CHUNK;
  cp.chunk = CONVERT_CHUNK;
  if (backing) { /* copy_data has buffers of its own */
    cp.buf = malloc(cp.chunk);
    cp.old = malloc(cp.chunk);
  }
  if (backing && (!cp.buf || !cp.old)) {
    cli_error(NULL, "out of memory");
    goto out;
  }

  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  progress_start(&cp.progress, progress && !quiet);
  int copied = backing ? copy_difference(&cp) : copy_data(&cp);
  progress_end(&cp.progress, copied == 0);
  if (copied < 0)
    goto out;

  int closed = vmdk_close(cp.dst);
  cp.dst = NULL;
  if (closed < 0) {
    cli_lib_error(dst_name);
    goto out;
  }
  if (interrupted) {
    cli_error(dst_name, "interrupted");
    goto out;
  }
  ret = 0;
  remove_output = false;

out:
  /* The output is removed: its pending writes need not be finished. */
  if (remove_output)
    vmdk_close_discard(cp.dst);
  else
    vmdk_close(cp.dst);
  if (remove_output)
    file_list_remove_files(&created);
  file_list_free(&created);
  /* The source was only read: a failing close changes nothing on disk. */
  vmdk_close(cp.src);
  free(cp.buf);
  free(cp.old);
  free(hint);
  return ret;
}
