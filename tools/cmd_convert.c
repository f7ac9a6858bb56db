/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit convert: copy the virtual disk of one image into a new raw, VMDK
 * or QEMU-format image, leaving holes and zero runs unallocated.
 *
 * The copy is the library's (vmdk_convert, lib/convert.c: zero runs
 * skipped, all-zero clusters not written, -B's difference only, the new
 * image removed on failure, a DEST that is a file being read refused).
 * This file parses the command line, opens the source, turns -B into the
 * link written into DEST (cli_backing_hint), prints the warnings about a
 * damaged source stream and the progress bar, and stops the copy at
 * SIGINT/SIGTERM/SIGHUP through the progress callback. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* The progress bar starts with the library's first report, once DEST
 * exists (so a DEST refused or not created shows none). */
struct convert_progress {
  struct cli_progress bar;
  bool enabled, started;
};

static int convert_progress_cb(void *opaque, uint64_t done, uint64_t total) {
  struct convert_progress *p = opaque;
  if (!p->started) {
    progress_start(&p->bar, p->enabled);
    p->started = true;
  }
  return cli_progress_cb(&p->bar, done, total);
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
    opts.backing_file = hint;
    opts.backing_format = backing_format;
  }

  struct vmdk_disk *src =
      cli_open(src_name, src_format,
               cli_open_flags | (salvage ? VMDK_OPEN_SALVAGE : 0));
  if (!src) {
    if (vmdk_get_errno() == ENODATA) /* a truncated stream */
      cli_error(NULL, "%s; --salvage converts what is there",
                vmdk_get_error());
    else
      cli_lib_error(src_name);
    free(hint);
    return 1;
  }
  int ret = 1;
  if (warn_stream_damage(src) < 0)
    goto out;

  if (dst_format == VMDK_FORMAT_RAW)
    opts.subformat = VMDK_SUBFORMAT_RAW;
  /* -m: the library's worker threads (compression of streamOptimized
   * grains).  -W changes nothing: grains are written in ascending order
   * whatever the number of threads. */
  opts.threads = (unsigned)threads;
  (void)out_of_order;
  struct convert_progress pr = {.enabled = progress && !quiet};
  struct vmdk_convert_options co = {
      .create = opts,
      .qemu_format = dst_qemu,
      .flags = cache_flags | cli_open_flags,
      .writethrough = writethrough,
      .progress = convert_progress_cb,
      .opaque = &pr,
  };
  cli_catch_interrupts();
  int r = vmdk_convert(src, dst_name, &co);
  if (pr.started)
    progress_end(&pr.bar, r == 0);
  if (r < 0) {
    if (cli_interrupted())
      cli_error(dst_name, "interrupted");
    else
      cli_lib_error(dst_name);
    goto out;
  }
  ret = 0;

out:
  /* The source was only read: a failing close changes nothing on disk. */
  vmdk_close(src);
  free(hint);
  return ret;
}
