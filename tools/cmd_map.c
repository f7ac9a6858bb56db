/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit map: list the allocation of the virtual disk, laid out like
 * `qemu-img map`. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { OPT_OUTPUT = CLI_OPT_FIRST };

static int map_run(int argc, char **argv);

const struct cli_command cmd_map = {
    .name = "map",
    .summary = "show which parts of the disk are allocated, and where",
    .description =
        "Show how the virtual disk of FILE maps onto its files.  The human "
        "table lists the runs that hold data, with their offset in the "
        "extent file and that file (for a child image, runs read from a "
        "backing file show the backing's file); the JSON list (like 'qemu-img "
        "map --output=json') describes every run: start, length, depth (0: "
        "FILE itself, 1: its backing file, ...), present, zero, data and, for "
        "data stored uncompressed, offset.",
    .options =
        (const struct cli_option[]){
            CLI_OPTION_FORMAT,
            CLI_OPTION_OUTPUT(OPT_OUTPUT),
            CLI_OPTIONS_END,
        },
    .operands =
        (const struct cli_operand[]){{"FILE", CLI_FILE}, {NULL, CLI_NONE}},
    .run = map_run,
};

struct map_state {
  const char *image; /* for messages */
  enum cli_output output;
  struct strbuf *sb;
  uint64_t next;     /* where the next run must start */
  bool have_pending; /* PENDING holds a run not yet printed */
  struct vmdk_run pending;
  size_t n_printed; /* JSON entries printed so far */
  bool failed;      /* an error was printed; stop */
};

static bool same_file(const char *a, const char *b) {
  if (!a || !b)
    return a == b;
  return strcmp(a, b) == 0;
}

/* Whether NEXT continues PENDING: same flags and file, contiguous both on
 * the virtual disk and (when stored) in the file. */
static bool mergeable(const struct vmdk_run *pending,
                      const struct vmdk_run *next) {
  if (pending->flags != next->flags || pending->depth != next->depth ||
      !same_file(pending->file, next->file))
    return false;
  if (pending->offset + pending->length != next->offset)
    return false;
  if (pending->file_offset < 0 || next->file_offset < 0)
    return pending->file_offset < 0 && next->file_offset < 0;
  return (uint64_t)pending->file_offset + pending->length ==
         (uint64_t)next->file_offset;
}

static void print_run(struct map_state *s, const struct vmdk_run *r) {
  bool data = r->flags & VMDK_RUN_DATA, zero = r->flags & VMDK_RUN_ZERO;
  if (s->output == CLI_OUTPUT_HUMAN) {
    if (data && !zero)
      sb_printf(s->sb, "%#-15" PRIx64 " %#-15" PRIx64 " %#-15" PRIx64 " %s\n",
                r->offset, r->length, (uint64_t)r->file_offset,
                r->file ? r->file : "");
    return;
  }
  sb_printf(s->sb,
            "%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
            ", \"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
            s->n_printed ? ",\n" : "", r->offset, r->length, r->depth,
            r->flags & VMDK_RUN_PRESENT ? "true" : "false",
            zero ? "true" : "false", data ? "true" : "false");
  if (r->file_offset >= 0)
    sb_printf(s->sb, ", \"offset\": %" PRId64, r->file_offset);
  sb_puts(s->sb, "}");
  s->n_printed++;
}

static int map_cb(void *opaque, const struct vmdk_run *run) {
  struct map_state *s = opaque;
  struct vmdk_run r = *run;

  if (r.offset != s->next || r.length == 0) {
    cli_error(s->image,
              "block status returned a run at offset %" PRIu64
              " length %" PRIu64 ", expected one at offset %" PRIu64
              " (library bug)",
              r.offset, r.length, s->next);
    s->failed = true;
    return 1;
  }
  s->next = r.offset + r.length;

  if (s->output == CLI_OUTPUT_HUMAN) {
    bool shown = (r.flags & VMDK_RUN_DATA) && !(r.flags & VMDK_RUN_ZERO);
    if (shown && r.file_offset < 0) {
      cli_error(s->image,
                "the data at offset %" PRIu64 " is not stored "
                "uncompressed in one place, so it has no file offset for "
                "this table; use --output=json",
                r.offset);
      s->failed = true;
      return 1;
    }
    /* The table ignores the difference between the runs it does not show;
     * make them equal so they merge. */
    if (!shown) {
      r.flags = VMDK_RUN_ZERO;
      r.file_offset = -1;
      r.file = NULL;
      r.depth = 0;
    }
  }

  if (s->have_pending && mergeable(&s->pending, &r)) {
    s->pending.length += r.length;
    return 0;
  }
  if (s->have_pending)
    print_run(s, &s->pending);
  s->pending = r;
  s->have_pending = true;
  return 0;
}

static int map_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  enum cli_output output = CLI_OUTPUT_HUMAN;
  int c;

  cli_parser_init(&parser, &cmd_map, argc, argv);
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

  struct vmdk_disk *disk = cli_open(file, format, cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  uint64_t size = vmdk_get_size(disk);

  struct strbuf sb = STRBUF_INIT;
  struct map_state s = {.image = file, .output = output, .sb = &sb};
  int ret = 1;
  if (output == CLI_OUTPUT_HUMAN)
    sb_printf(&sb, "%-15s %-15s %-15s %s\n", "Offset", "Length", "Mapped to",
              "File");
  else
    sb_puts(&sb, "[");
  if (size > 0 && vmdk_block_status(disk, 0, size, map_cb, &s) < 0) {
    cli_lib_error(file);
    goto out;
  }
  if (s.failed)
    goto out;
  if (s.next != size) {
    cli_error(file,
              "block status stopped at offset %" PRIu64 " of %" PRIu64
              " (library bug)",
              s.next, size);
    goto out;
  }
  if (s.have_pending)
    print_run(&s, &s.pending);
  if (output == CLI_OUTPUT_JSON)
    sb_puts(&sb, "]\n");
  /* Run file names belong to DISK: everything is formatted before closing. */
  if (vmdk_close(disk) < 0) {
    disk = NULL;
    cli_lib_error(file);
    goto out;
  }
  disk = NULL;
  if (sb_write_stdout(&sb) < 0)
    goto out;
  ret = 0;
out:
  vmdk_close(disk);
  sb_free(&sb);
  return ret;
}
