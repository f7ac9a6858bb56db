/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit bench: a simple sequential I/O benchmark, with qemu-img bench's
 * flags, meaning and output, so that the two can be run side by side.
 *
 * COUNT requests of SIZE bytes are made, the first at OFFSET, each next one
 * STEP bytes further; an offset that reaches the virtual size wraps around
 * modulo the size (as in qemu-img).  A request that does not fit inside the
 * disk fails the run.  The reported time covers the requests only (and the
 * flushes -t writethrough/directsync and --flush-interval ask for), not
 * opening the image nor the final flush of the close: the same span
 * qemu-img measures.
 *
 * The handle is not thread-safe, so requests are made one at a time: a
 * DEPTH above 1 is accepted, printed and checked as qemu-img does, but runs
 * sequentially.
 *
 * Unlike qemu-img 7.2, which prints its report even with -q, -q prints
 * nothing; and the report is printed once the run has succeeded (nothing
 * half-printed). */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
  OPT_PATTERN = CLI_OPT_FIRST,
  OPT_FLUSH_INTERVAL,
  OPT_NO_DRAIN,
};

static int bench_run(int argc, char **argv);

const struct cli_command cmd_bench = {
    .name = "bench",
    .summary = "time sequential reads or writes (as qemu-img bench)",
    .description =
        "Run a simple sequential I/O benchmark on the image FILE, with the "
        "flags and the output of 'qemu-img bench': COUNT requests of SIZE "
        "bytes, the first at OFFSET, each next one STEP bytes further "
        "(wrapping around at the end of the disk).  Reads by default; writes "
        "with -w.  Prints the time the requests took (not counting opening "
        "the image and the final flush on close).",
    .options =
        (const struct cli_option[]){
            {'c', NULL, "COUNT", CLI_NUMBER, 0,
             "number of requests (default 75000)"},
            {'d', NULL, "DEPTH", CLI_NUMBER, 0,
             "requests in parallel (default 64).  vmdkit makes them one at a "
             "time (a disk handle is not thread-safe); DEPTH only counts for "
             "the --flush-interval check and the report"},
            CLI_OPTION_FORMAT,
            {'o', NULL, "OFFSET", CLI_SIZE, 0,
             "offset of the first request (default 0)"},
            {'s', NULL, "SIZE", CLI_SIZE, 0,
             "bytes per request (default 4096)"},
            {'S', NULL, "STEP", CLI_SIZE, 0,
             "distance between request offsets (default SIZE)"},
            {'t', NULL, "CACHE", CLI_CACHE, 0,
             "none, writeback (default), unsafe, writethrough, directsync: "
             "none = O_DIRECT where possible; unsafe = flushes do not sync; "
             "writethrough and directsync flush after every request"},
            {'w', NULL, NULL, CLI_NONE, 0,
             "write test (default: read test)"},
            {OPT_PATTERN, "pattern", "N", CLI_NUMBER, 0,
             "byte value written (0-255, default 0)"},
            {OPT_FLUSH_INTERVAL, "flush-interval", "N", CLI_NUMBER, 0,
             "write test: flush whenever the number of requests left is a "
             "multiple of N (N >= DEPTH unless --no-drain)"},
            {OPT_NO_DRAIN, "no-drain", NULL, CLI_NONE, 0,
             "accepted for qemu-img compatibility (nothing to drain)"},
            {'i', NULL, "AIO", CLI_AIO, 0,
             "threads, native or io_uring: accepted for qemu-img "
             "compatibility; no effect (native needs -t none or directsync, "
             "as in qemu-img)"},
            {'n', NULL, NULL, CLI_NONE, 0,
             "native AIO, as -i native: accepted for qemu-img compatibility; "
             "no effect"},
            {'U', NULL, NULL, CLI_NONE, 0,
             "accepted for qemu-img compatibility; no effect"},
            {'q', NULL, NULL, CLI_NONE, 0,
             "quiet: print nothing on success"},
            CLI_OPTIONS_END,
        },
    .operands =
        (const struct cli_operand[]){{"FILE", CLI_FILE}, {NULL, CLI_NONE}},
    .run = bench_run,
};

/* Seconds between two CLOCK_MONOTONIC readings. */
static double seconds_between(const struct timespec *a,
                              const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) +
         (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static int bench_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  uint64_t count = 75000, depth = 64, size = 4096, step = 0, offset = 0;
  uint64_t pattern = 0, flush_interval = 0;
  bool have_step = false, write = false, quiet = false, native = false;
  bool no_drain = false, writethrough = false;
  unsigned cache_flags = 0; /* writeback, qemu-img bench's default */
  uint64_t v;
  int c;

  cli_parser_init(&parser, &cmd_bench, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'c':
      if (cli_parse_uint("request count", optarg, 0, INT_MAX, &count) < 0)
        return 1;
      break;
    case 'd':
      if (cli_parse_uint("queue depth", optarg, 1, INT_MAX, &depth) < 0)
        return 1;
      break;
    case 'f':
      if (cli_parse_format(optarg, &format) < 0)
        return 1;
      break;
    case 'i':
      if (cli_word_index(cli_value_words(CLI_AIO), optarg) < 0) {
        cli_error(NULL, "invalid aio option '%s' (valid: threads, native, "
                        "io_uring)",
                  optarg);
        return 1;
      }
      native = strcmp(optarg, "native") == 0;
      break;
    case 'n':
      native = true;
      break;
    case 'o':
      if (cli_parse_size("offset", optarg, &offset) < 0)
        return 1;
      break;
    case 'q':
      quiet = true;
      break;
    case 's':
      if (cli_parse_size("buffer size", optarg, &size) < 0)
        return 1;
      if (size < 1 || size > INT_MAX) {
        cli_error(NULL, "invalid buffer size '%s': must be from 1 to %d bytes",
                  optarg, INT_MAX);
        return 1;
      }
      break;
    case 'S':
      if (cli_parse_size("step size", optarg, &step) < 0)
        return 1;
      if (step > INT_MAX) {
        cli_error(NULL, "invalid step size '%s': at most %d bytes", optarg,
                  INT_MAX);
        return 1;
      }
      have_step = true;
      break;
    case 't':
      if (cli_parse_cache(optarg, &cache_flags, &writethrough) < 0)
        return 1;
      break;
    case 'U':
      break; /* qemu-img's "force share": there are no image locks here */
    case 'w':
      write = true;
      break;
    case OPT_PATTERN:
      if (cli_parse_uint("pattern byte", optarg, 0, 255, &pattern) < 0)
        return 1;
      break;
    case OPT_FLUSH_INTERVAL:
      if (cli_parse_uint("flush interval", optarg, 0, INT_MAX, &v) < 0)
        return 1;
      flush_interval = v;
      break;
    case OPT_NO_DRAIN:
      no_drain = true;
      break;
    default:
      return cli_unhandled(&parser, c);
    }
  }
  if (c < 0)
    return parser.status;
  if (argc - optind != 1) {
    cli_usage_error(argv[0], "expected FILE");
    return 1;
  }
  const char *file = argv[optind];
  if (!have_step)
    step = size;
  /* The checks qemu-img bench makes, in its words where they help. */
  if (flush_interval && !write) {
    cli_usage_error(argv[0], "--flush-interval is only available in write "
                             "tests");
    return 1;
  }
  if (flush_interval && flush_interval < depth && !no_drain) {
    cli_usage_error(argv[0],
                    "flush interval (%" PRIu64 ") can't be smaller than "
                    "depth (%" PRIu64 ") unless --no-drain is given",
                    flush_interval, depth);
    return 1;
  }
  if (native && !(cache_flags & VMDK_OPEN_NOCACHE)) {
    cli_usage_error(argv[0], "native AIO (-n, -i native) requires -t none "
                             "or -t directsync, as in qemu-img");
    return 1;
  }

  unsigned flags = cache_flags | (write ? VMDK_OPEN_RDWR : 0);
  struct vmdk_disk *disk = cli_open(file, format, flags | cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  int ret = 1;
  uint64_t disk_size = vmdk_get_size(disk);
  unsigned char *buf = malloc((size_t)size);
  if (!buf) {
    cli_error(NULL, "out of memory (a %" PRIu64 "-byte buffer)", size);
    goto out;
  }
  memset(buf, write ? (int)pattern : 0, (size_t)size);

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t pos = offset;
  for (uint64_t i = 0; i < count; i++) {
    int r = write ? vmdk_pwrite(disk, buf, (size_t)size, pos)
                  : vmdk_pread(disk, buf, (size_t)size, pos);
    if (r < 0) {
      cli_lib_error(file);
      goto out;
    }
    uint64_t left = count - i - 1;
    if (write && (writethrough || (flush_interval && left > 0 &&
                                   left % flush_interval == 0))) {
      if (vmdk_flush(disk) < 0) {
        cli_lib_error(file);
        goto out;
      }
    }
    /* Wrap around at the end of the disk, as qemu-img does. */
    pos += step;
    if (disk_size > 0)
      pos %= disk_size;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);

  int closed = vmdk_close(disk);
  disk = NULL;
  if (closed < 0) {
    cli_lib_error(file);
    goto out;
  }
  if (!quiet) {
    struct strbuf sb = STRBUF_INIT;
    sb_printf(&sb,
              "Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, "
              "%" PRIu64 " in parallel (starting at offset %" PRIu64
              ", step size %" PRIu64 ")\n",
              count, write ? "write" : "read", size, depth, offset, step);
    if (flush_interval)
      sb_printf(&sb, "Sending flush every %" PRIu64 " requests\n",
                flush_interval);
    sb_printf(&sb, "Run completed in %3.3f seconds.\n",
              seconds_between(&t0, &t1));
    int w = sb_write_stdout(&sb);
    sb_free(&sb);
    if (w < 0)
      goto out;
  }
  ret = 0;
out:
  /* After a failed request, close anyway (the error is already printed):
   * what was written stays consistent, the close flushes it. */
  vmdk_close(disk);
  free(buf);
  return ret;
}
