/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit commit: write a child image's own data into its backing file, like
 * `qemu-img commit`. */
#include "cli.h"

#include <stdio.h>

static int commit_run(int argc, char **argv);

const struct cli_command cmd_commit = {
    .name = "commit",
    .summary = "write a child image's data into its backing file",
    .description =
        "Write everything the child image FILE holds itself (its allocated "
        "and zeroed grains) into its backing file, so that the backing file "
        "then reads as FILE did (it is grown if FILE is larger).  FILE keeps "
        "its data and its link, and its parentCID is updated so that it "
        "still opens.  Images further down the chain are not changed.  Other "
        "children of the same backing file no longer open afterwards (their "
        "parentCID no longer matches).",
    .options =
        (const struct cli_option[]){
            {'f', NULL, "FMT", CLI_FORMAT_VMDK, 0,
             "format of FILE: vmdk or raw (default: probe)"},
            {'p', NULL, NULL, CLI_NONE, 0, "show progress on stderr"},
            {'q', NULL, NULL, CLI_NONE, 0,
             "quiet: no progress, no 'Image committed.' line"},
            CLI_OPTIONS_END,
        },
    .operands =
        (const struct cli_operand[]){{"FILE", CLI_FILE}, {NULL, CLI_NONE}},
    .run = commit_run,
};

static int commit_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  bool progress = false, quiet = false;
  int c;

  cli_parser_init(&parser, &cmd_commit, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'f':
      if (cli_parse_vmdk_format(optarg, &format) < 0)
        return 1;
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
  const char *file = argv[optind];

  struct vmdk_disk *disk = cli_open(file, format, VMDK_OPEN_RDWR | cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  int ret = 1;
  if (!vmdk_get_backing(disk)) {
    cli_error(file, "has no backing file to commit into");
    goto out;
  }
  cli_catch_interrupts();
  struct cli_progress p;
  progress_start(&p, progress && !quiet);
  int r = vmdk_commit(disk, cli_progress_cb, &p);
  progress_end(&p, r == 0);
  if (r < 0) {
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
    fputs("Image committed.\n", stdout);
    if (cli_flush_stdout() < 0)
      ret = 1;
  }
  return ret;
}
