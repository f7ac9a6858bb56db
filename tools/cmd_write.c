/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit write: write stdin into the virtual disk at an offset. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_run(int argc, char **argv);

const struct cli_command cmd_write = {
    .name = "write",
    .summary = "write stdin into the virtual disk",
    .description =
        "Read stdin to its end and write it into the virtual disk of FILE at "
        "OFFSET (suffixes b, K, M, G, T, P, E: powers of 1024, or a 0x "
        "prefix).  The data must fit inside the disk, and every extent it "
        "covers must take writes (not RDONLY, NOACCESS or ZERO): a write that "
        "cannot be done whole is refused before any byte is written (input "
        "from a pipe that reaches a part that cannot be written is first "
        "read to its end, into a temporary file in $TMPDIR).",
    .options =
        (const struct cli_option[]){
            CLI_OPTION_FORMAT,
            CLI_OPTIONS_END,
        },
    .operands = (const struct cli_operand[]){{"FILE", CLI_FILE},
                                             {"OFFSET", CLI_SIZE},
                                             {NULL, CLI_NONE}},
    .run = write_run,
};

/* Fill up to N bytes of BUF from FD (stdin or the spool).  Returns the
 * bytes read (< N only at end of input), or -1 after printing an error. */
static ssize_t read_input(int fd, unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      cli_error(NULL, "read error on %s: %s",
                fd == STDIN_FILENO ? "stdin" : "the temporary copy of stdin",
                strerror(errno));
      return -1;
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/* Copy stdin to an unlinked temporary file, at most LIMIT bytes plus one
 * (so that input longer than LIMIT shows).  Returns its fd, positioned at
 * the start, with *LEN the bytes copied; -1 after printing an error. */
static int spool_stdin(unsigned char *buf, uint64_t limit, uint64_t *len) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir)
    dir = "/tmp";
  size_t n = strlen(dir) + sizeof "/vmdkit-write.XXXXXX";
  char *name = malloc(n);
  if (!name) {
    cli_error(NULL, "out of memory");
    return -1;
  }
  snprintf(name, n, "%s/vmdkit-write.XXXXXX", dir);
  int fd = mkstemp(name);
  if (fd < 0) {
    cli_error(NULL, "cannot create a temporary file in %s for stdin: %s", dir,
              strerror(errno));
    free(name);
    return -1;
  }
  unlink(name);
  free(name);
  *len = 0;
  for (;;) {
    ssize_t r = read_input(STDIN_FILENO, buf, CLI_IO_CHUNK);
    if (r < 0)
      goto fail;
    for (ssize_t done = 0; done < r;) {
      ssize_t w = write(fd, buf + done, (size_t)(r - done));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0) {
        cli_error(NULL, "cannot write the temporary copy of stdin: %s",
                  strerror(errno));
        goto fail;
      }
      done += w;
    }
    *len += (uint64_t)r;
    if ((size_t)r < CLI_IO_CHUNK || *len > limit)
      break;
  }
  if (lseek(fd, 0, SEEK_SET) == 0)
    return fd;
  cli_error(NULL, "cannot rewind the temporary copy of stdin: %s",
            strerror(errno));
fail:
  close(fd);
  return -1;
}

static int write_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  int c;

  cli_parser_init(&parser, &cmd_write, argc, argv);
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
  if (argc - optind != 2) {
    cli_usage_error(argv[0], "expected FILE OFFSET");
    return 1;
  }
  const char *file = argv[optind];
  uint64_t offset;
  if (cli_parse_size("offset", argv[optind + 1], &offset) < 0)
    return 1;

  struct vmdk_disk *disk = cli_open(file, format, VMDK_OPEN_RDWR | cli_open_flags);
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  int ret = 1;
  int in = STDIN_FILENO;
  unsigned char *buf = cli_io_alloc(CLI_IO_CHUNK + 512); /* see `want` below */
  if (!buf) {
    cli_error(NULL, "out of memory");
    goto out;
  }
  uint64_t size = vmdk_get_size(disk);
  if (offset > size) {
    cli_error(file,
              "offset %" PRIu64 " is past the end of the disk (size %" PRIu64
              " bytes)",
              offset, size);
    goto out;
  }
  /* The write goes in chunks; it is refused whole before the first one
   * when any part of it cannot be written.  That needs its length: known
   * for a regular file on stdin.  Otherwise, when every byte from OFFSET
   * to the end of the disk could be written, chunks go straight in (input
   * too long is caught at the end, as below); when not, stdin is first
   * copied to a temporary file to learn its length. */
  uint64_t input = 0;
  bool known = false;
  struct stat st;
  if (fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
    off_t pos = lseek(STDIN_FILENO, 0, SEEK_CUR);
    if (pos >= 0) {
      input = st.st_size > pos ? (uint64_t)(st.st_size - pos) : 0;
      known = true;
    }
  }
  if (!known && vmdk_check_write(disk, size - offset, offset) != 0) {
    if ((in = spool_stdin(buf, size - offset, &input)) < 0)
      goto out;
    known = true;
  }
  if (known) {
    if (input > size - offset && in == STDIN_FILENO) {
      cli_error(file,
                "cannot write %" PRIu64 " bytes at offset %" PRIu64
                ": past the end of the disk (size %" PRIu64 " bytes)",
                input, offset, size);
      goto out;
    }
    if (input > size - offset) {
      cli_error(file,
                "cannot write at offset %" PRIu64 ": the input is longer "
                "than the %" PRIu64 " bytes left before the end of the disk "
                "(size %" PRIu64 " bytes); nothing was written",
                offset, size - offset, size);
      goto out;
    }
    if (vmdk_check_write(disk, input, offset) != 0) {
      cli_lib_error(file);
      goto out;
    }
  }

  uint64_t pos = offset;
  for (;;) {
    /* Chunks end at sector boundaries of the disk (the first one runs to
     * the sector boundary after CLI_IO_CHUNK): a chunk that fails after
     * others landed leaves every sector old or new, never half of each. */
    size_t want = CLI_IO_CHUNK + (size_t)((512 - pos % 512) % 512);
    ssize_t n = read_input(in, buf, want);
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
    if ((size_t)n < want)
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
  if (in != STDIN_FILENO)
    close(in);
  free(buf);
  return ret;
}
