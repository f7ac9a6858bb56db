/* vmdkit write: write stdin into the virtual disk at an offset. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmdkit write [-f vmdk|raw] FILE OFFSET\n"
    "\n"
    "Read stdin to its end and write it into the virtual disk of FILE at "
    "OFFSET\n"
    "(suffixes b, K, M, G, T, P, E: powers of 1024, or a 0x prefix).  The "
    "data\n"
    "must fit inside the disk: when stdin is a regular file this is checked "
    "before\n"
    "anything is written.\n"
    "\n"
    "  -f FMT       image format: vmdk or raw (default: probe)\n"
    CLI_CONFINE_HELP
    "  -h, --help   show this help\n";

/* Fill up to N bytes of BUF from fd 0.  Returns the bytes read (< N only
 * at end of input), or -1 after printing an error. */
static ssize_t read_stdin(unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(STDIN_FILENO, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      cli_error(NULL, "read error on stdin: %s", strerror(errno));
      return -1;
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

int cmd_write(int argc, char **argv) {
  static const struct option long_options[] = {
      CLI_CONFINE_OPTION,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int format = VMDK_FORMAT_AUTO;
  int c;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":f:h", long_options, NULL)) != -1) {
    switch (c) {
    case 'f':
      if (cli_parse_format(optarg, &format) < 0)
        return 1;
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
  if (argc - optind != 2) {
    cli_usage_error(argv[0], "expected FILE OFFSET");
    return 1;
  }
  const char *file = argv[optind];
  uint64_t offset;
  if (cli_parse_size("offset", argv[optind + 1], &offset) < 0)
    return 1;

  struct vmdk_disk *disk = vmdk_open_format(file, format, VMDK_OPEN_RDWR | cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  int ret = 1;
  unsigned char *buf = NULL;
  uint64_t size = vmdk_get_size(disk);
  if (offset > size) {
    cli_error(file,
              "offset %" PRIu64 " is past the end of the disk (size %" PRIu64
              " bytes)",
              offset, size);
    goto out;
  }
  /* With a regular file on stdin, refuse before writing anything. */
  struct stat st;
  if (fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
    off_t pos = lseek(STDIN_FILENO, 0, SEEK_CUR);
    if (pos >= 0 && st.st_size > pos) {
      uint64_t input = (uint64_t)(st.st_size - pos);
      if (input > size - offset) {
        cli_error(file,
                  "cannot write %" PRIu64 " bytes at offset %" PRIu64
                  ": past the end of the disk (size %" PRIu64 " bytes)",
                  input, offset, size);
        goto out;
      }
    }
  }

  buf = malloc(CLI_IO_CHUNK);
  if (!buf) {
    cli_error(NULL, "out of memory");
    goto out;
  }
  uint64_t pos = offset;
  for (;;) {
    ssize_t n = read_stdin(buf, CLI_IO_CHUNK);
    if (n < 0)
      goto out;
    if (n == 0)
      break;
    if ((uint64_t)n > size - pos) {
      if (pos == offset)
        cli_error(file,
                  "cannot write at offset %" PRIu64 ": the input is "
                  "longer than the %" PRIu64 " bytes left before the end of "
                  "the disk (size %" PRIu64 " bytes); nothing was written",
                  offset, size - offset, size);
      else
        cli_error(file,
                  "the input is longer than the %" PRIu64 " bytes from "
                  "offset %" PRIu64 " to the end of the disk (size %" PRIu64
                  " bytes); only its first %" PRIu64 " bytes were written",
                  size - offset, offset, size, pos - offset);
      goto out;
    }
    if (vmdk_pwrite(disk, buf, (size_t)n, pos) < 0) {
      cli_lib_error(file);
      goto out;
    }
    pos += (uint64_t)n;
    if ((size_t)n < CLI_IO_CHUNK)
      break; /* read_stdin only comes back short at end of input */
  }
  ret = 0;
out:
  /* Close (and so flush) even after an error: what was written stays
   * consistent. */
  if (vmdk_close(disk) < 0 && ret == 0) {
    cli_lib_error(file);
    ret = 1;
  }
  free(buf);
  return ret;
}
