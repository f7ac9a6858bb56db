/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit check: check an image's metadata, reporting like `qemu-img check`;
 * with -r, repair it (vmdk_repair) and check it again.
 *
 * Exit status: 0 no problems, 2 corruption found, 3 only leaks found, 1 the
 * check could not run (open failed, I/O error).  After -r: the same for
 * what the second check finds. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { OPT_OUTPUT = CLI_OPT_FIRST };

static int check_run(int argc, char **argv);

const struct cli_command cmd_check = {
    .name = "check",
    .summary = "check an image's metadata for corruption and leaks",
    .description =
        "Check the metadata of the image FILE: grain directories against "
        "their redundant copies, grain table entries past the end of the "
        "file, grains overlapping each other or the metadata, and leaked "
        "space.  Every problem is printed on stderr.  Without -r the image "
        "is opened read-only (nothing is repaired).  A streamOptimized image "
        "that was truncated (no footer, grains cut off) is checked as far as "
        "its markers go and reported as corrupt, with what is missing.",
    .epilog = "Exit status: 0 no problems, 2 corruption, 3 leaked space only, "
              "1 the check could not be done; with -r, of what remains after "
              "the repair.",
    .options =
        (const struct cli_option[]){
            CLI_OPTION_FORMAT,
            CLI_OPTION_OUTPUT(OPT_OUTPUT),
            {'q', NULL, NULL, CLI_NONE, 0,
             "quiet: no summary (problems are still printed)"},
            {'r', NULL, "MODE", CLI_REPAIR, 0,
             "open the image read-write and repair (MODE leaks or all): "
             "leaks reclaims leaked space (and brings redundant tables an interrupted update left "
             "behind in line); all also repairs corruption (directory and "
             "redundant copies that disagree, grain table entries past the "
             "end of the file or into the metadata are cleared, grains shared "
             "by two entries each get a copy).  Each repair is printed on "
             "stderr, then the image is checked again."},
            CLI_OPTIONS_END,
        },
    .operands =
        (const struct cli_operand[]){{"FILE", CLI_FILE}, {NULL, CLI_NONE}},
    .run = check_run,
};

/* Each problem goes to stderr at once, so it is seen even if a later step
 * fails; the message names the file. */
static void print_problem(void *opaque, enum vmdk_problem_kind kind,
                          const char *message) {
  (void)opaque;
  if (kind == VMDK_PROBLEM_LEAK)
    fprintf(stderr, "Leaked cluster: %s\n", message);
  else
    fprintf(stderr, "ERROR %s\n", message);
}

/* Counts of the repairs done, by the kind of problem each fixed. */
struct repairs {
  uint64_t corruptions, leaks;
};

static void print_repair(void *opaque, enum vmdk_problem_kind kind,
                         const char *message) {
  struct repairs *r = opaque;
  if (kind == VMDK_PROBLEM_LEAK)
    r->leaks++;
  else
    r->corruptions++;
  fprintf(stderr, "Repaired: %s\n", message);
}

static void human_summary(struct strbuf *sb,
                          const struct vmdk_check_result *r) {
  if (r->corruptions == 0 && r->leaks == 0) {
    sb_puts(sb, "No errors were found on the image.\n");
  } else {
    if (r->corruptions)
      sb_printf(sb,
                "\n%" PRIu64 " errors were found on the image.\n"
                "Data may be corrupted, or further writes to the image may "
                "corrupt it.\n",
                r->corruptions);
    if (r->leaks)
      sb_printf(sb,
                "\n%" PRIu64 " leaked clusters were found on the image.\n"
                "This means waste of disk space, but no harm to data.\n",
                r->leaks);
  }
  if (r->total_grains)
    sb_printf(sb, "%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated\n",
              r->allocated_grains, r->total_grains,
              (double)r->allocated_grains * 100.0 / (double)r->total_grains);
}

static void json_summary(struct strbuf *sb, const char *file,
                         const char *format,
                         const struct vmdk_check_result *r,
                         const struct repairs *fixed) {
  struct json j;
  json_init(&j, sb);
  json_open_object(&j, NULL);
  json_uint(&j, "check-errors", 0);
  if (fixed) {
    json_uint(&j, "leaks-fixed", fixed->leaks);
    json_uint(&j, "corruptions-fixed", fixed->corruptions);
  }
  json_uint(&j, "corruptions", r->corruptions);
  json_uint(&j, "leaks", r->leaks);
  json_uint(&j, "leaked-bytes", r->leaked_bytes);
  json_uint(&j, "total-clusters", r->total_grains);
  json_uint(&j, "allocated-clusters", r->allocated_grains);
  json_string(&j, "filename", file);
  json_string(&j, "format", format);
  json_close_object(&j);
  sb_puts(sb, "\n");
}

static int check_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  enum cli_output output = CLI_OUTPUT_HUMAN;
  bool quiet = false;
  unsigned repair = 0; /* VMDK_REPAIR_*, 0: check only */
  int c;

  cli_parser_init(&parser, &cmd_check, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'f':
      if (cli_parse_format(optarg, &format) < 0)
        return 1;
      break;
    case OPT_OUTPUT:
      if (cli_parse_output(optarg, &output) < 0)
        return 1;
      break;
    case 'q':
      quiet = true;
      break;
    case 'r':
      /* MODE is one of cli_value_words(CLI_REPAIR): leaks, all. */
      switch (cli_word_index(cli_value_words(CLI_REPAIR), optarg)) {
      case 0:
        repair = VMDK_REPAIR_LEAKS;
        break;
      case 1:
        repair = VMDK_REPAIR_ALL;
        break;
      default:
        cli_usage_error(argv[0], "unknown repair mode '%s' (leaks or all)",
                        optarg);
        return 1;
      }
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

  /* A truncated stream opens salvaging, so that the check reports what is
   * missing (read-only: with -r it is refused at open). */
  struct vmdk_disk *disk = cli_open(
      file, format,
      cli_open_flags | (repair ? VMDK_OPEN_RDWR : VMDK_OPEN_SALVAGE));
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  /* vmdkit checks VMDK metadata; a QEMU format's is qemu-img's to check
   * (an empty report would read as a clean image). */
  struct vmdk_info qinfo;
  if (vmdk_get_info(disk, &qinfo) == 0 && strcmp(qinfo.format, "vmdk") != 0 &&
      strcmp(qinfo.format, "raw") != 0) {
    cli_error(file, "vmdkit checks VMDK images; use qemu-img check for a %s "
                    "image",
              qinfo.format);
    vmdk_close(disk);
    return 1;
  }
  struct vmdk_check_result result = {0};
  if (vmdk_check(disk, &result, print_problem, NULL) < 0) {
    cli_lib_error(file);
    vmdk_close(disk);
    return 1;
  }

  /* -r: repair what was found, then check again (qemu-img's order).  Also
   * when nothing was found: the repair clears an uncleanShutdown byte a
   * crash left (it changes nothing else then). */
  struct repairs fixed = {0, 0};
  bool repaired = false;
  if (repair) {
    struct vmdk_check_result after;
    if (vmdk_repair(disk, repair, &after, print_repair, &fixed) < 0) {
      cli_lib_error(file);
      vmdk_close(disk);
      return 1;
    }
    repaired = fixed.corruptions || fixed.leaks;
    /* What is left is listed like the first time. */
    if ((after.corruptions || after.leaks) &&
        vmdk_check(disk, &after, print_problem, NULL) < 0) {
      cli_lib_error(file);
      vmdk_close(disk);
      return 1;
    }
    result = after;
  }

  struct strbuf sb = STRBUF_INIT;
  int ret = 1;
  if (output == CLI_OUTPUT_JSON) {
    struct vmdk_info info;
    if (vmdk_get_info(disk, &info) < 0) {
      cli_lib_error(file);
      goto out;
    }
    json_summary(&sb, file, info.format, &result, repair ? &fixed : NULL);
  } else if (!quiet) {
    if (repaired)
      sb_printf(&sb,
                "The following inconsistencies were found and repaired:\n\n"
                "    %" PRIu64 " leaked clusters\n"
                "    %" PRIu64 " corruptions\n\n"
                "Double checking the fixed image now...\n",
                fixed.leaks, fixed.corruptions);
    human_summary(&sb, &result);
  }
  if (vmdk_close(disk) < 0) {
    disk = NULL;
    cli_lib_error(file);
    goto out;
  }
  disk = NULL;
  if (sb_write_stdout(&sb) < 0)
    goto out;
  ret = result.corruptions ? 2 : result.leaks ? 3 : 0;
out:
  vmdk_close(disk);
  sb_free(&sb);
  return ret;
}
