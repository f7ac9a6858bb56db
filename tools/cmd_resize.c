/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit resize: change the virtual size of an image, like `qemu-img
 * resize` (which cannot resize VMDK at all). */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { OPT_SHRINK = CLI_OPT_FIRST };

static int resize_run(int argc, char **argv);

const struct cli_command cmd_resize = {
    .name = "resize",
    .summary = "grow or shrink the virtual disk",
    .description =
        "Set the virtual size of FILE to SIZE bytes, or grow it by +SIZE or "
        "shrink it by -SIZE (suffixes b, K, M, G, T, P, E: powers of 1024; "
        "the result is rounded up to 512 bytes).  Growing works for raw, "
        "monolithicSparse, monolithicFlat and split (twoGbMaxExtent*) "
        "images; the new part reads as zeros.  Shrinking needs --shrink and "
        "is refused when the part cut off holds data of FILE's own.",
    .options =
        (const struct cli_option[]){
            {'f', NULL, "FMT", CLI_FORMAT_VMDK, 0,
             "format of FILE: vmdk or raw (default: probe)"},
            {OPT_SHRINK, "shrink", NULL, CLI_NONE, 0,
             "allow the size to go down"},
            {'q', NULL, NULL, CLI_NONE, 0,
             "quiet: no 'Image resized.' line"},
            CLI_OPTIONS_END,
        },
    .operands = (const struct cli_operand[]){{"FILE", CLI_FILE},
                                             {"[+|-]SIZE", CLI_SIZE},
                                             {NULL, CLI_NONE}},
    .run = resize_run,
};

/* Whether S looks like a negative size ("-1G"), which getopt would take
 * for an option. */
static bool is_negative_size(const char *s) {
  return s[0] == '-' && s[1] >= '0' && s[1] <= '9';
}

static int resize_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  bool shrink = false, quiet = false;
  const char *size_arg = NULL;
  int c;

  /* Take a "-SIZE" last argument out before getopt sees it. */
  if (argc >= 3 && is_negative_size(argv[argc - 1])) {
    size_arg = argv[argc - 1];
    argc--;
  }
  cli_parser_init(&parser, &cmd_resize, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'f':
      if (cli_parse_vmdk_format(optarg, &format) < 0)
        return 1;
      break;
    case OPT_SHRINK:
      shrink = true;
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
  if (argc - optind != (size_arg ? 1 : 2)) {
    cli_usage_error(argv[0], "expected FILE [+|-]SIZE");
    return 1;
  }
  const char *file = argv[optind];
  if (!size_arg)
    size_arg = argv[optind + 1];
  char sign = size_arg[0] == '+' || size_arg[0] == '-' ? size_arg[0] : 0;
  uint64_t amount;
  if (cli_parse_size("size", size_arg + (sign ? 1 : 0), &amount) < 0)
    return 1;

  struct vmdk_disk *disk = cli_open(file, format, VMDK_OPEN_RDWR | cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  int ret = 1;
  uint64_t old_size = vmdk_get_size(disk), new_size = amount;
  if (sign == '+' && __builtin_add_overflow(old_size, amount, &new_size)) {
    cli_error(file, "cannot grow by %" PRIu64 " bytes: the size would pass "
                    "%" PRIu64 " bytes", amount, UINT64_MAX);
    goto out;
  }
  if (sign == '-') {
    if (amount > old_size) {
      cli_error(file,
                "cannot shrink by %" PRIu64 " bytes: the disk has only "
                "%" PRIu64 " bytes",
                amount, old_size);
      goto out;
    }
    new_size = old_size - amount;
  }
  /* The library rounds up to whole sectors; judge the size it will set. */
  if (new_size > UINT64_MAX - 511) {
    cli_error(file, "size %" PRIu64 " is too large", new_size);
    goto out;
  }
  uint64_t rounded = (new_size + 511) / 512 * 512;
  if (rounded < old_size && !shrink) {
    cli_error(file,
              "shrinking from %" PRIu64 " to %" PRIu64 " bytes needs "
              "--shrink (and the part cut off must hold no data)",
              old_size, rounded);
    goto out;
  }
  if (vmdk_resize(disk, new_size, shrink) < 0) {
    cli_lib_error(file);
    goto out;
  }
  ret = 0;
out:
  if (vmdk_close(disk) < 0 && ret == 0) {
    cli_lib_error(file);
    ret = 1;
  }
  if (ret == 0 && !quiet) {
    fputs("Image resized.\n", stdout);
    if (cli_flush_stdout() < 0)
      ret = 1;
  }
  return ret;
}
