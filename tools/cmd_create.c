/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit create: make a new VMDK or raw image. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int create_run(int argc, char **argv);

const struct cli_command cmd_create = {
    .name = "create",
    .summary = "create a new image",
    .description =
        "Create the image FILE with a virtual size of SIZE bytes (suffixes b, "
        "K, M, G, T, P, E: powers of 1024; rounded up to 512 bytes).  SIZE "
        "is needed unless -b is given.  Existing files are overwritten."
        "\n\n"
        "With -b, FILE is a copy-on-write child of the image BACKING: it "
        "starts empty and reads every grain it does not hold from BACKING "
        "(and BACKING's own backing files, to any depth).  A relative BACKING "
        "is relative to FILE's folder, as in qemu-img; an absolute one inside "
        "FILE's folder (or below) is stored relative to it, so the two can be "
        "moved together.  SIZE defaults to BACKING's size.  The child records "
        "BACKING's CID (parentCID): writing to BACKING afterwards makes the "
        "child refuse to open.",
    .options =
        (const struct cli_option[]){
            {'f', NULL, "FMT", CLI_FORMAT_VMDK, 0,
             "image format: vmdk (default) or raw"},
            {'b', NULL, "BACKING", CLI_FILE, 0,
             "make a child of BACKING (subformat monolithicSparse or "
             "twoGbMaxExtentSparse)"},
            {'F', NULL, "FMT", CLI_FORMAT_VMDK, 0,
             "format of BACKING: vmdk or raw (default: probe)"},
            {'o', NULL, "OPTIONS", CLI_CREATE_OPTIONS, 0,
             "VMDK options key=value[,key=value...]; '-o help' lists them: "
             "subformat=NAME (monolithicSparse, monolithicFlat, "
             "twoGbMaxExtentSparse, twoGbMaxExtentFlat, streamOptimized or "
             "vmfs), adapter_type=ide|buslogic|lsilogic|legacyESX|pvscsi, "
             "hwversion=N, zeroed_grain=on|off, grain_size=BYTES, "
             "compression_level=N (streamOptimized)"},
            {'q', NULL, NULL, CLI_NONE, 0,
             "quiet: do not print the 'Formatting ...' line"},
            CLI_OPTIONS_END,
        },
    .operands = (const struct cli_operand[]){{"FILE", CLI_FILE},
                                             {"[SIZE]", CLI_SIZE},
                                             {NULL, CLI_NONE}},
    .run = create_run,
};

static const char *subformat_name(enum vmdk_subformat s) {
  const char *n = vmdk_subformat_name(s);
  return n ? n : "?";
}

static int create_run(int argc, char **argv) {
  struct cli_parser parser;
  struct vmdk_create_options opts = {0};
  int format = VMDK_FORMAT_VMDK, backing_format = VMDK_FORMAT_AUTO;
  const char *backing = NULL;
  bool have_backing_format = false;
  bool have_opts = false, quiet = false, help = false;
  int c;

  cli_parser_init(&parser, &cmd_create, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'f':
      if (cli_parse_vmdk_format(optarg, &format) < 0)
        return 1;
      break;
    case 'b':
      backing = optarg;
      break;
    case 'F':
      if (cli_parse_vmdk_format(optarg, &backing_format) < 0)
        return 1;
      have_backing_format = true;
      break;
    case 'o':
      if (cli_parse_create_options(optarg, &opts, &help) < 0)
        return 1;
      have_opts = true;
      break;
    case 'q':
      quiet = true;
      break;
    default:
      return cli_unhandled(&parser, c);
    }
  }
  if (c < 0)
    return parser.status;
  if (help) /* -o help: the option list is printed */
    return cli_flush_stdout() == 0 ? 0 : 1;
  int nargs = argc - optind;
  if (backing ? nargs < 1 || nargs > 2 : nargs != 2) {
    cli_usage_error(argv[0], backing ? "expected FILE [SIZE]"
                                     : "expected FILE SIZE");
    return 1;
  }
  if (have_backing_format && !backing) {
    cli_usage_error(argv[0], "-F gives the format of a backing file: use it "
                             "with -b");
    return 1;
  }
  if (backing && !*backing) {
    cli_usage_error(argv[0], "-b needs a file name");
    return 1;
  }
  const char *file = argv[optind];
  uint64_t size = 0;
  if (nargs == 2 && cli_parse_size("size", argv[optind + 1], &size) < 0)
    return 1;
  if (format == VMDK_FORMAT_RAW) {
    if (have_opts) {
      cli_usage_error(argv[0], "-o options apply to vmdk images only");
      return 1;
    }
    if (backing) {
      cli_usage_error(argv[0], "a raw image cannot have a backing file "
                               "(use -f vmdk)");
      return 1;
    }
    opts.subformat = VMDK_SUBFORMAT_RAW;
  }
  opts.size_bytes = size;

  char *hint = NULL;
  if (backing) {
    if (!(hint = cli_backing_hint(file, backing)))
      return 1;
    opts.backing_file = hint;
    opts.backing_format = backing_format;
  }

  struct vmdk_disk *disk = vmdk_create(file, &opts, cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    free(hint);
    return 1;
  }
  size = vmdk_get_size(disk); /* with -b and no SIZE: the backing's */
  const char *bfmt = NULL;
  struct vmdk_info binfo;
  struct vmdk_disk *bdisk = vmdk_get_backing(disk);
  if (bdisk && vmdk_get_info(bdisk, &binfo) == 0 && binfo.format)
    bfmt = strcmp(binfo.format, "raw") == 0 ? "raw" : "vmdk"; /* static */
  if (vmdk_close(disk) < 0) {
    cli_lib_error(file);
    free(hint);
    return 1;
  }

  if (quiet) {
    free(hint);
    return 0;
  }
  /* Like qemu-img: the size as given, then the options that were set. */
  struct strbuf sb = STRBUF_INIT;
  sb_printf(&sb, "Formatting '%s', fmt=%s size=%" PRIu64, file,
            format == VMDK_FORMAT_RAW ? "raw" : "vmdk", size);
  if (hint) {
    sb_printf(&sb, " backing_file=%s", hint);
    if (bfmt)
      sb_printf(&sb, " backing_fmt=%s", bfmt);
  }
  if (format == VMDK_FORMAT_VMDK) {
    if (opts.subformat != VMDK_SUBFORMAT_MONOLITHIC_SPARSE)
      sb_printf(&sb, " subformat=%s", subformat_name(opts.subformat));
    if (opts.adapter_type)
      sb_printf(&sb, " adapter_type=%s", opts.adapter_type);
    if (opts.hw_version)
      sb_printf(&sb, " hwversion=%u", opts.hw_version);
    if (opts.zeroed_grain)
      sb_puts(&sb, " zeroed_grain=on");
    if (opts.grain_sectors)
      sb_printf(&sb, " grain_size=%" PRIu64,
                (uint64_t)opts.grain_sectors * 512);
  }
  sb_puts(&sb, "\n");
  int ret = sb_write_stdout(&sb) == 0 ? 0 : 1;
  sb_free(&sb);
  free(hint);
  return ret;
}
