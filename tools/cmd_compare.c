/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit compare: compare the contents of two images like `qemu-img
 * compare`.
 *
 * Exit status: 0 identical, 1 different, 2 error (including usage errors,
 * so that 1 always means "different"). */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>

static int compare_run(int argc, char **argv);

const struct cli_command cmd_compare = {
    .name = "compare",
    .summary = "compare the contents of two images",
    .description =
        "Compare the virtual disks of IMAGE1 and IMAGE2.  When their sizes "
        "differ, the bytes past the end of the smaller one must be zeros in "
        "the larger.",
    .epilog = "Exit status: 0 identical, 1 different, 2 error.",
    .options =
        (const struct cli_option[]){
            {'f', NULL, "FMT", CLI_FORMAT, 0,
             "format of IMAGE1 (default: probe)"},
            {'F', NULL, "FMT", CLI_FORMAT, 0,
             "format of IMAGE2 (default: probe)"},
            {'p', NULL, NULL, CLI_NONE, 0, "show progress on stderr"},
            {'q', NULL, NULL, CLI_NONE, 0, "quiet: print nothing but errors"},
            {'s', NULL, NULL, CLI_NONE, 0,
             "strict: different sizes or a different allocation (allocated in "
             "one image, not in the other) count as a mismatch"},
            CLI_OPTIONS_END,
        },
    .operands = (const struct cli_operand[]){{"IMAGE1", CLI_FILE},
                                             {"IMAGE2", CLI_FILE},
                                             {NULL, CLI_NONE}},
    .error_status = 2, /* FAILED: 1 means "different" */
    .run = compare_run,
};

enum { SAME = 0, DIFFERENT = 1, FAILED = 2 };

static int compare_run(int argc, char **argv) {
  struct cli_parser parser;
  int format1 = VMDK_FORMAT_AUTO, format2 = VMDK_FORMAT_AUTO;
  bool quiet = false, strict = false, progress = false;
  int c;

  cli_parser_init(&parser, &cmd_compare, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'f':
      if (cli_parse_format(optarg, &format1) < 0)
        return FAILED;
      break;
    case 'F':
      if (cli_parse_format(optarg, &format2) < 0)
        return FAILED;
      break;
    case 'p':
      progress = true;
      break;
    case 'q':
      quiet = true;
      break;
    case 's':
      strict = true;
      break;
    default:
      return cli_unhandled(&parser, c);
    }
  }
  if (c < 0)
    return parser.status;
  if (argc - optind != 2) {
    cli_usage_error(argv[0], "expected IMAGE1 IMAGE2");
    return FAILED;
  }
  const char *name1 = argv[optind], *name2 = argv[optind + 1];

  int ret = FAILED;
  struct vmdk_disk *d1 = NULL, *d2 = NULL;
  struct vmdk_compare_result res = {VMDK_COMPARE_SAME, 0, 0};
  bool size_warning = false;

  d1 = cli_open(name1, format1, cli_open_flags);
  if (!d1) {
    cli_lib_error(name1);
    goto out;
  }
  d2 = cli_open(name2, format2, cli_open_flags);
  if (!d2) {
    cli_lib_error(name2);
    goto out;
  }
  uint64_t size1 = vmdk_get_size(d1), size2 = vmdk_get_size(d2);
  struct cli_progress pr;
  /* No progress bar when strict mode stops at the sizes.  Signals are not
   * caught: an interrupted compare has nothing to clean up. */
  progress_start(&pr, progress && !quiet && !(strict && size1 != size2));
  int r = vmdk_compare(d1, d2, strict ? VMDK_COMPARE_STRICT : 0, &res,
                       cli_progress_cb, &pr);
  progress_end(&pr, r == 0);
  if (r < 0) {
    cli_lib_error(NULL);
    goto out;
  }
  ret = res.kind == VMDK_COMPARE_SAME ? SAME : DIFFERENT;
  /* qemu-img warns when the common part was the same and the rest of the
   * larger image was compared with zeros. */
  uint64_t common = size1 < size2 ? size1 : size2;
  size_warning = res.size_differs && !strict &&
                 (res.kind == VMDK_COMPARE_SAME ||
                  (res.kind == VMDK_COMPARE_CONTENT && res.offset >= common));

out:
  /* Read-only closes; a failure still makes the result unreliable. */
  if (vmdk_close(d1) < 0) {
    cli_lib_error(name1);
    ret = FAILED;
  }
  if (vmdk_close(d2) < 0) {
    cli_lib_error(name2);
    ret = FAILED;
  }
  if (ret == FAILED || quiet)
    return ret;

  if (size_warning)
    printf("Warning: Image size mismatch!\n");
  switch (res.kind) {
  case VMDK_COMPARE_SAME:
    printf("Images are identical.\n");
    break;
  case VMDK_COMPARE_CONTENT:
    printf("Content mismatch at offset %" PRIu64 "!\n", res.offset);
    break;
  case VMDK_COMPARE_ALLOCATION:
    printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n",
           res.offset);
    break;
  case VMDK_COMPARE_SIZE:
    printf("Strict mode: Image size mismatch!\n");
    break;
  }
  if (cli_flush_stdout() < 0)
    return FAILED;
  return ret;
}
