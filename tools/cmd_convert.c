/* vmdkit convert: copy the virtual disk of one image into a new raw or VMDK
 * image, leaving holes and zero runs unallocated.
 *
 * The new image reads as zeros everywhere after vmdk_create(), so only
 * non-zero data is written: runs the source reports as ZERO are skipped
 * without reading, and within DATA runs every target-cluster-sized block
 * that is all zeros is skipped too.  On any failure every file the new
 * image consists of is removed. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmdkit convert [-f FMT] [-O raw|vmdk] [-o OPTIONS] [-p] [-q] "
    "SOURCE DEST\n"
    "\n"
    "Copy the virtual disk of the image SOURCE into the new image DEST (which "
    "is\n"
    "overwritten).  Zero runs and all-zero clusters are not written, so they "
    "stay\n"
    "unallocated in DEST.\n"
    "\n"
    "  -f FMT       format of SOURCE: vmdk or raw (default: probe)\n"
    "  -O FMT       format of DEST: raw (default, like qemu-img) or vmdk\n"
    "  -o OPTIONS   VMDK options for DEST, as for 'vmdkit create' "
    "('-o help')\n"
    "  -p           show progress on stderr\n"
    "  -q           quiet (no progress)\n"
    "  -h, --help   show this help\n";

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

/* Refuse a DEST that is the source image or one of its extent files:
 * creating DEST would destroy the data being copied. */
static int check_not_source(const char *dest, const char *src_name,
                            struct vmdk_disk *src) {
  struct stat dst_st, st;
  if (stat(dest, &dst_st) < 0)
    return 0; /* does not exist yet (or cannot tell): create will say */
  struct vmdk_info info;
  if (vmdk_get_info(src, &info) < 0) {
    cli_lib_error(src_name);
    return -1;
  }
  for (size_t i = 0; i <= info.n_extents; i++) {
    const char *path = i == 0 ? src_name : info.extents[i - 1].filename;
    if (path && stat(path, &st) == 0 && st.st_dev == dst_st.st_dev &&
        st.st_ino == dst_st.st_ino) {
      cli_error(dest, "is %s of the source image; refusing to overwrite it",
                i == 0 ? "the descriptor" : "an extent file");
      return -1;
    }
  }
  return 0;
}

struct copy {
  struct vmdk_disk *src, *dst;
  const char *src_name, *dst_name;
  uint64_t size;      /* bytes to copy: the source's virtual size */
  uint64_t block;     /* zero-detection block, a power of two: the target
                         cluster size, at most CHUNK */
  size_t chunk;       /* read size: CONVERT_CHUNK, a multiple of BLOCK */
  unsigned char *buf; /* CHUNK bytes */
  struct cli_progress progress;
};

/* Write the non-zero BLOCK-aligned pieces of the N bytes in BUF that
 * belong at virtual offset OFF. */
static int write_nonzero(struct copy *cp, uint64_t off, size_t n) {
  size_t pos = 0, data_start = 0;
  bool in_data = false;
  while (pos < n) {
    uint64_t abs = off + pos;
    size_t piece = (size_t)((abs / cp->block + 1) * cp->block - abs);
    if (piece > n - pos)
      piece = n - pos;
    bool zero = buffer_is_zero(cp->buf + pos, piece);
    if (!zero && !in_data) {
      data_start = pos;
      in_data = true;
    } else if (zero && in_data) {
      if (vmdk_pwrite(cp->dst, cp->buf + data_start, pos - data_start,
                      off + data_start) < 0) {
        cli_lib_error(cp->dst_name);
        return -1;
      }
      in_data = false;
    }
    pos += piece;
  }
  if (in_data && vmdk_pwrite(cp->dst, cp->buf + data_start, n - data_start,
                             off + data_start) < 0) {
    cli_lib_error(cp->dst_name);
    return -1;
  }
  return 0;
}

/* Copy in windows aligned to the target's cluster (BLOCK), so every write
 * covers whole clusters: each target cluster is written once, in
 * ascending order (what a streamOptimized target needs), and a cluster
 * that the source's runs split is read and written whole. */
static int copy_data(struct copy *cp) {
  struct run_cursor cur;
  run_cursor_init(&cur, cp->src, cp->src_name);
  uint64_t off = 0; /* always a multiple of cp->block (or the size) */
  while (off < cp->size) {
    if (interrupted) {
      cli_error(cp->dst_name, "interrupted");
      return -1;
    }
    const struct vmdk_run *r;
    if (run_cursor_at(&cur, off, &r) < 0)
      return -1;
    uint64_t run_end = r->offset + r->length;
    uint64_t zero_end = run_end == cp->size ? run_end
                                            : run_end / cp->block * cp->block;
    if ((r->flags & VMDK_RUN_ZERO) && zero_end > off) {
      off = zero_end; /* whole clusters the target already reads as zeros */
    } else {
      uint64_t stop = (off / cp->chunk + 1) * cp->chunk;
      uint64_t data_end = (run_end + cp->block - 1) / cp->block * cp->block;
      if (!(r->flags & VMDK_RUN_ZERO) && stop > data_end)
        stop = data_end;
      if (stop <= off)
        stop = off + cp->block;
      if (stop > cp->size)
        stop = cp->size;
      size_t n = (size_t)(stop - off);
      if (vmdk_pread(cp->src, cp->buf, n, off) < 0) {
        cli_lib_error(cp->src_name);
        return -1;
      }
      if (write_nonzero(cp, off, n) < 0)
        return -1;
      off = stop;
    }
    progress_update(&cp->progress, off, cp->size);
  }
  return 0;
}

int cmd_convert(int argc, char **argv) {
  static const struct option long_options[] = {
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct vmdk_create_options opts = {0};
  int src_format = VMDK_FORMAT_AUTO, dst_format = VMDK_FORMAT_RAW;
  bool have_opts = false, help = false, progress = false, quiet = false;
  int c;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":f:O:o:pqh", long_options, NULL)) !=
         -1) {
    switch (c) {
    case 'f':
      if (cli_parse_format(optarg, &src_format) < 0)
        return 1;
      break;
    case 'O':
      if (cli_parse_format(optarg, &dst_format) < 0)
        return 1;
      break;
    case 'o':
      if (cli_parse_create_options(optarg, &opts, &help) < 0)
        return 1;
      have_opts = true;
      break;
    case 'p':
      progress = true;
      break;
    case 'q':
      quiet = true;
      break;
    case 'h':
      return cli_print_help(usage);
    default:
      cli_bad_option(argv[0], argv, c, long_options);
      return 1;
    }
  }
  if (help)
    return cli_flush_stdout() == 0 ? 0 : 1;
  if (argc - optind != 2) {
    cli_usage_error(argv[0], "expected SOURCE DEST");
    return 1;
  }
  if (dst_format == VMDK_FORMAT_RAW && have_opts) {
    cli_usage_error(argv[0], "-o options apply to -O vmdk only");
    return 1;
  }
  const char *src_name = argv[optind], *dst_name = argv[optind + 1];

  int ret = 1;
  struct copy cp = {.src_name = src_name, .dst_name = dst_name};
  struct file_list created = {NULL, 0};
  bool remove_output = false;

  cp.src = vmdk_open_format(src_name, src_format, 0);
  if (!cp.src) {
    cli_lib_error(src_name);
    return 1;
  }
  cp.size = vmdk_get_size(cp.src);
  if (check_not_source(dst_name, src_name, cp.src) < 0)
    goto out;

  opts.size_bytes = cp.size;
  if (dst_format == VMDK_FORMAT_RAW)
    opts.subformat = VMDK_SUBFORMAT_RAW;
  cp.dst = vmdk_create(dst_name, &opts, 0);
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
  cp.buf = malloc(cp.chunk);
  if (!cp.buf) {
    cli_error(NULL, "out of memory");
    goto out;
  }

  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  progress_start(&cp.progress, progress && !quiet);
  int copied = copy_data(&cp);
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
  vmdk_close(cp.dst);
  if (remove_output)
    file_list_remove_files(&created);
  file_list_free(&created);
  /* The source was only read: a failing close changes nothing on disk. */
  vmdk_close(cp.src);
  free(cp.buf);
  return ret;
}
