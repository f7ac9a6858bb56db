/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit read: copy a byte range of the virtual disk to stdout. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_run(int argc, char **argv);

const struct cli_command cmd_read = {
    .name = "read",
    .summary = "copy bytes of the virtual disk to stdout",
    .description =
        "Write LENGTH bytes of the virtual disk of FILE, starting at OFFSET, "
        "to stdout.  OFFSET and LENGTH take the suffixes b, K, M, G, T, P, E "
        "(powers of 1024) or a 0x prefix for hex.",
    .options =
        (const struct cli_option[]){
            CLI_OPTION_FORMAT,
            CLI_OPTIONS_END,
        },
    .operands = (const struct cli_operand[]){{"FILE", CLI_FILE},
                                             {"OFFSET", CLI_SIZE},
                                             {"LENGTH", CLI_SIZE},
                                             {NULL, CLI_NONE}},
    .run = read_run,
};

/* Write all N bytes of BUF to fd 1.  0, 1 when the reader went away
 * (EPIPE), or -1 after printing an error. */
static int write_stdout(const unsigned char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDOUT_FILENO, buf, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EPIPE)
        return 1;
      cli_error(NULL, "write error on stdout: %s", strerror(errno));
      return -1;
    }
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  int c;

  cli_parser_init(&parser, &cmd_read, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'f':
      if (cli_parse_format(optarg, &format) < 0)
        return 1;
      break;
    default:
      return cli_unhandled(&parser, c);
    }
  }
  if (c < 0)
    return parser.status;
  if (argc - optind != 3) {
    cli_usage_error(argv[0], "expected FILE OFFSET LENGTH");
    return 1;
  }
  const char *file = argv[optind];
  uint64_t offset, length;
  if (cli_parse_size("offset", argv[optind + 1], &offset) < 0 ||
      cli_parse_size("length", argv[optind + 2], &length) < 0)
    return 1;

  struct vmdk_disk *disk = cli_open(file, format, cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  uint64_t size = vmdk_get_size(disk);
  if (offset > size || length > size - offset) {
    cli_error(file,
              "cannot read %" PRIu64 " bytes at offset %" PRIu64
              ": past the end of the disk (size %" PRIu64 " bytes)",
              length, offset, size);
    vmdk_close(disk);
    return 1;
  }

  int ret = 1;
  unsigned char *buf = cli_io_alloc(CLI_IO_CHUNK);
  if (!buf) {
    cli_error(NULL, "out of memory");
    goto out;
  }
  /* A reader that stops early (`| head`) ends the copy quietly: report
   * EPIPE instead of dying of SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  for (uint64_t done = 0; done < length;) {
    size_t n = length - done < CLI_IO_CHUNK ? (size_t)(length - done)
                                            : (size_t)CLI_IO_CHUNK;
    if (vmdk_pread(disk, buf, n, offset + done) < 0) {
      cli_lib_error(file);
      goto out;
    }
    int w = write_stdout(buf, n);
    if (w != 0)
      goto out; /* EPIPE: exit 1 without a message; the reader knows */
    done += n;
  }
  ret = 0;
out:
  if (vmdk_close(disk) < 0 && ret == 0) {
    cli_lib_error(file);
    ret = 1;
  }
  free(buf);
  return ret;
}
