/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit rebase: point a child image at another backing file, like
 * `qemu-img rebase`. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

static int rebase_run(int argc, char **argv);

const struct cli_command cmd_rebase = {
    .name = "rebase",
    .summary = "change the backing file of an image",
    .description =
        "Make BACKING the backing file of the child image FILE.  -b \"\" "
        "means no backing file: FILE then stands alone."
        "\n\n"
        "Safe mode (the default) first copies into FILE every range that "
        "reads differently through BACKING than through FILE's current "
        "backing chain, so what FILE reads does not change; the current "
        "chain must open.  With -u (unsafe) only the link is rewritten "
        "(parentFileNameHint and parentCID): use it when BACKING holds the "
        "same data as the old backing file, e.g. a renamed or moved copy of "
        "it."
        "\n\n"
        "A relative BACKING is relative to FILE's folder, as in qemu-img; an "
        "absolute one inside FILE's folder (or below) is stored relative to "
        "it.",
    .options =
        (const struct cli_option[]){
            {'f', NULL, "FMT", CLI_FORMAT_VMDK, 0,
             "format of FILE: vmdk or raw (default: probe)"},
            {'b', NULL, "BACKING", CLI_FILE, CLI_REQUIRED,
             "the new backing file (\"\": none)"},
            {'F', NULL, "FMT", CLI_FORMAT_VMDK, 0,
             "format of BACKING: vmdk or raw (default: probe)"},
            {'u', NULL, NULL, CLI_NONE, 0,
             "unsafe: rewrite the link only, copy nothing"},
            {'p', NULL, NULL, CLI_NONE, 0,
             "show progress on stderr (safe mode)"},
            {'q', NULL, NULL, CLI_NONE, 0, "quiet: no progress"},
            CLI_OPTIONS_END,
        },
    .operands =
        (const struct cli_operand[]){{"FILE", CLI_FILE}, {NULL, CLI_NONE}},
    .run = rebase_run,
};

static int rebase_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO, backing_format = VMDK_FORMAT_AUTO;
  const char *backing = NULL;
  bool unsafe = false, progress = false, quiet = false,
       have_backing_format = false;
  int c;

  cli_parser_init(&parser, &cmd_rebase, argc, argv);
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
    case 'u':
      unsafe = true;
      break;
    case 'p':
      progress = true;
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
  if (argc - optind != 1) {
    cli_usage_error(argv[0], "expected one FILE");
    return 1;
  }
  if (!backing) {
    cli_usage_error(argv[0], "-b BACKING is required (-b \"\" for no backing "
                             "file)");
    return 1;
  }
  if (have_backing_format && !*backing) {
    cli_usage_error(argv[0], "-F needs a backing file (-b \"\" means none)");
    return 1;
  }
  const char *file = argv[optind];

  char *hint = NULL;
  if (*backing && !(hint = cli_backing_hint(file, backing)))
    return 1;
  /* -u never opens the old backing (it may be gone or changed: that is
   * what -u repairs). */
  struct vmdk_disk *disk = cli_open(
      file, format, VMDK_OPEN_RDWR | (unsafe ? VMDK_OPEN_NO_BACKING : 0) | cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    free(hint);
    return 1;
  }
  int ret = 1, r;
  if (unsafe) {
    r = vmdk_set_backing(disk, hint, backing_format);
  } else {
    cli_catch_interrupts();
    struct cli_progress p;
    progress_start(&p, progress && !quiet);
    r = vmdk_rebase(disk, hint, backing_format, cli_progress_cb, &p);
    progress_end(&p, r == 0);
  }
  if (r < 0)
    cli_lib_error(file);
  else
    ret = 0;
  if (vmdk_close(disk) < 0 && ret == 0) {
    cli_lib_error(file);
    ret = 1;
  }
  free(hint);
  return ret;
}
