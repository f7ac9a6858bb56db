/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit commit: write a child image's own data into its backing file, like
 * `qemu-img commit`. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

static const char usage[] =
    "Usage: vmdkit commit [-f vmdk|raw] [-p] [-q] FILE\n"
    "\n"
    "Write everything the child image FILE holds itself (its allocated and\n"
    "zeroed grains) into its backing file, so that the backing file then "
    "reads\n"
    "as FILE did (it is grown if FILE is larger).  FILE keeps its data and "
    "its\n"
    "link, and its parentCID is updated so that it still opens.  Images "
    "further\n"
    "down the chain are not changed.  Other children of the same backing "
    "file\n"
    "no longer open afterwards (their parentCID no longer matches).\n"
    "\n"
    "  -f FMT       format of FILE: vmdk or raw (default: probe)\n"
    "  -p           show progress on stderr\n"
    "  -q           quiet: no progress, no 'Image committed.' line\n"
    CLI_CONFINE_HELP
    "  -h, --help   show this help\n";

int cmd_commit(int argc, char **argv) {
  static const struct option long_options[] = {
      CLI_CONFINE_OPTION,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int format = VMDK_FORMAT_AUTO;
  bool progress = false, quiet = false;
  int c;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":f:pqh", long_options, NULL)) != -1) {
    switch (c) {
    case 'f':
      if (cli_parse_format(optarg, &format) < 0)
        return 1;
      break;
    case 'p':
      progress = true;
      break;
    case 'q':
      quiet = true;
      break;
    case CLI_OPT_CONFINE:
      cli_open_flags |= VMDK_OPEN_CONFINE;
      break;
    case 'h':
      return cli_print_help(usage);
    default:
      cli_bad_option(argv[0], argv, c, long_options);
      return 1;
    }
  }
  if (argc - optind != 1) {
    cli_usage_error(argv[0], "expected one FILE");
    return 1;
  }
  const char *file = argv[optind];

  struct vmdk_disk *disk = vmdk_open_format(file, format, VMDK_OPEN_RDWR | cli_open_flags);
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
