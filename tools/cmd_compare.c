/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit compare: compare the contents of two images like `qemu-img
 * compare`.
 *
 * Exit status: 0 identical, 1 different, 2 error (including usage errors,
 * so that 1 always means "different"). */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Index of the first non-zero byte of the N bytes at P, or N. */
static size_t first_nonzero(const unsigned char *p, size_t n) {
  size_t i = 0;
  /* Skip whole zero blocks quickly, then look byte by byte. */
  while (n - i >= 4096 && buffer_is_zero(p + i, 4096))
    i += 4096;
  while (i < n && p[i] == 0)
    i++;
  return i;
}

/* Index of the first byte where the N bytes at A and B differ, or N. */
static size_t first_difference(const unsigned char *a, const unsigned char *b,
                               size_t n) {
  size_t i = 0;
  while (n - i >= 4096 && memcmp(a + i, b + i, 4096) == 0)
    i += 4096;
  while (i < n && a[i] == b[i])
    i++;
  return i;
}

struct compare {
  struct run_cursor c1, c2;
  unsigned char *buf1, *buf2; /* CLI_IO_CHUNK bytes each */
  bool strict;
  struct cli_progress progress;
  uint64_t progress_total; /* bytes of the larger disk */
  uint64_t mismatch;       /* first differing byte, when DIFFERENT */
  char message[128];       /* what to print for DIFFERENT */
};

/* End of the chunk that starts at OFF, aligned to CLI_IO_CHUNK. */
static uint64_t chunk_end(uint64_t off) {
  return (off / CLI_IO_CHUNK + 1) * CLI_IO_CHUNK;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

/* Compare [0, END) of both disks. */
static int compare_common(struct compare *cmp, uint64_t end) {
  uint64_t off = 0;
  while (off < end) {
    const struct vmdk_run *r1, *r2;
    if (run_cursor_at(&cmp->c1, off, &r1) < 0 ||
        run_cursor_at(&cmp->c2, off, &r2) < 0)
      return FAILED;
    uint64_t stop =
        min_u64(min_u64(r1->offset + r1->length, r2->offset + r2->length),
                min_u64(end, chunk_end(off)));
    size_t n = (size_t)(stop - off);
    bool zero1 = r1->flags & VMDK_RUN_ZERO, zero2 = r2->flags & VMDK_RUN_ZERO;

    if (cmp->strict && ((r1->flags ^ r2->flags) & VMDK_RUN_PRESENT)) {
      snprintf(cmp->message, sizeof cmp->message,
               "Strict mode: Offset %" PRIu64 " block status mismatch!", off);
      return DIFFERENT;
    }
    size_t i = n;
    if (zero1 && zero2) {
      /* Zero in both: nothing to read. */
    } else if (zero1 || zero2) {
      struct run_cursor *c = zero1 ? &cmp->c2 : &cmp->c1;
      if (vmdk_pread(c->disk, cmp->buf1, n, off) < 0) {
        cli_lib_error(c->name);
        return FAILED;
      }
      i = first_nonzero(cmp->buf1, n);
    } else {
      if (vmdk_pread(cmp->c1.disk, cmp->buf1, n, off) < 0) {
        cli_lib_error(cmp->c1.name);
        return FAILED;
      }
      if (vmdk_pread(cmp->c2.disk, cmp->buf2, n, off) < 0) {
        cli_lib_error(cmp->c2.name);
        return FAILED;
      }
      i = first_difference(cmp->buf1, cmp->buf2, n);
    }
    if (i < n) {
      cmp->mismatch = off + i;
      snprintf(cmp->message, sizeof cmp->message,
               "Content mismatch at offset %" PRIu64 "!", cmp->mismatch);
      return DIFFERENT;
    }
    off = stop;
    progress_update(&cmp->progress, off, cmp->progress_total);
  }
  return SAME;
}

/* The part of the larger disk past the end of the smaller must be zeros. */
static int compare_tail(struct compare *cmp, struct run_cursor *c,
                        uint64_t start) {
  uint64_t off = start;
  while (off < c->size) {
    const struct vmdk_run *r;
    if (run_cursor_at(c, off, &r) < 0)
      return FAILED;
    uint64_t stop =
        min_u64(r->offset + r->length, min_u64(c->size, chunk_end(off)));
    size_t n = (size_t)(stop - off);
    if (!(r->flags & VMDK_RUN_ZERO)) {
      if (vmdk_pread(c->disk, cmp->buf1, n, off) < 0) {
        cli_lib_error(c->name);
        return FAILED;
      }
      size_t i = first_nonzero(cmp->buf1, n);
      if (i < n) {
        cmp->mismatch = off + i;
        snprintf(cmp->message, sizeof cmp->message,
                 "Content mismatch at offset %" PRIu64 "!", cmp->mismatch);
        return DIFFERENT;
      }
    }
    off = stop;
    progress_update(&cmp->progress, off, cmp->progress_total);
  }
  return SAME;
}

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
  struct compare cmp = {.strict = strict};
  struct vmdk_disk *d1 = NULL, *d2 = NULL;
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
  cmp.buf1 = malloc(CLI_IO_CHUNK);
  cmp.buf2 = malloc(CLI_IO_CHUNK);
  if (!cmp.buf1 || !cmp.buf2) {
    cli_error(NULL, "out of memory");
    goto out;
  }
  run_cursor_init(&cmp.c1, d1, name1);
  run_cursor_init(&cmp.c2, d2, name2);
  uint64_t size1 = cmp.c1.size, size2 = cmp.c2.size;
  cmp.progress_total = size1 > size2 ? size1 : size2;

  if (strict && size1 != size2) {
    snprintf(cmp.message, sizeof cmp.message,
             "Strict mode: Image size mismatch!");
    ret = DIFFERENT;
  } else {
    progress_start(&cmp.progress, progress && !quiet);
    ret = compare_common(&cmp, min_u64(size1, size2));
    if (ret == SAME && size1 != size2) {
      size_warning = true;
      if (size1 > size2)
        ret = compare_tail(&cmp, &cmp.c1, size2);
      else
        ret = compare_tail(&cmp, &cmp.c2, size1);
    }
    progress_end(&cmp.progress, ret != FAILED);
  }

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
  free(cmp.buf1);
  free(cmp.buf2);
  if (ret == FAILED || quiet)
    return ret;

  if (size_warning)
    printf("Warning: Image size mismatch!\n");
  if (ret == SAME)
    printf("Images are identical.\n");
  else
    printf("%s\n", cmp.message);
  if (cli_flush_stdout() < 0)
    return FAILED;
  return ret;
}
