/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit CLI: helpers shared by the subcommands (tools/common.c).
 *
 * The CLI is a thin adapter over include/vmdkit.h: it parses and validates
 * the command line, calls the library and prints the result.  It never
 * includes lib/internal.h and does no format work of its own.
 *
 * Output rules every command follows:
 *  - errors are one line on stderr: "vmdkit: <library message>" (library
 *    messages already name the file) or "vmdkit: FILE: problem";
 *  - nothing is half-printed: a report is built in a struct strbuf and
 *    written only once everything it describes has succeeded;
 *  - stdout is flushed and checked before a command returns success.
 */
#ifndef VMDKIT_CLI_H
#define VMDKIT_CLI_H

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmdkit.h"

/* ---- commands: one description each (tools/cmdline.c) ------------------ */

/* Every command is described once, by a struct cli_command in its
 * tools/cmd_X.c: its options table drives the parsing (cli_getopt(), on
 * getopt_long), `vmdkit CMD --help`, the man page (`vmdkit help --pod`)
 * and the bash completion (`vmdkit help --bash-completion`, tools/gendoc.c).
 * Texts are not wrapped (they are wrapped where they are printed); "\n\n"
 * separates paragraphs.  In them, an upper-case word that names an option
 * argument or operand of the command ("FILE", "FMT") and an option of the
 * command ("-b", "--shrink") are marked up in the man page. */

/* What an option's argument or an operand is.  Drives the shell completion
 * only: each command still checks the values it is given. */
enum cli_values {
  CLI_NONE,           /* an option that takes no argument */
  CLI_TEXT,           /* free text: nothing to complete */
  CLI_FILE,           /* a file name */
  CLI_DIRECTORY,      /* a directory name */
  CLI_SIZE,           /* a size or offset (cli_parse_size) */
  CLI_NUMBER,         /* a plain integer (cli_parse_uint) */
  CLI_FORMAT,         /* an image format: cli_value_words(CLI_FORMAT) */
  CLI_OUTPUT,         /* --output: human, json */
  CLI_CACHE,          /* -t: a cache mode (cli_parse_cache) */
  CLI_REPAIR,         /* check -r: leaks, all */
  CLI_AIO,            /* bench -i: threads, native, io_uring */
  CLI_CREATE_OPTIONS, /* -o key=value,...: cli_create_option_values() */
  CLI_FORMAT_OUT,     /* an image format convert writes:
                         cli_value_words(CLI_FORMAT_OUT) */
  CLI_FORMAT_VMDK,    /* vmdk or raw: the formats vmdkit's own writers
                         (create, commit, rebase, resize, backings) take */
};

/* Keys of the common options --confine and --remote-option (no short
 * option); 'h' is -h/--help.
 * A command's own keys are other letters (short options; not '?' nor ':',
 * which getopt returns for errors) and values from CLI_OPT_FIRST up
 * (long-only options). */
#define CLI_OPT_CONFINE 0x1c0f
#define CLI_OPT_REMOTE 0x1c10 /* --remote-option KEY=VALUE, also common */
#define CLI_OPT_FIRST 0x100

struct cli_option {
  int key;                /* short option character, or >= CLI_OPT_FIRST
                             for an option that has only a long name */
  const char *long_name;  /* without "--"; NULL: short option only */
  const char *arg;        /* argument name ("FMT"); NULL: takes none */
  enum cli_values values; /* what the argument is; CLI_NONE iff !arg */
  unsigned flags;         /* CLI_REQUIRED */
  const char *help;       /* one paragraph */
};
#define CLI_REQUIRED 1u /* shown without [ ] in the synopsis */

/* Rows many tables share: -f FMT of the image a command works on,
 * --output=human|json (KEY: the command's own key for it), and the row that
 * ends every options table. */
#define CLI_OPTION_FORMAT                                                      \
  {'f', NULL, "FMT", CLI_FORMAT, 0,                                            \
   "image format (default: probe, as qemu-img does)"}
#define CLI_OPTION_OUTPUT(key)                                                 \
  {(key), "output", "FORMAT", CLI_OUTPUT, 0, "human (default) or json"}
#define CLI_OPTIONS_END {0, NULL, NULL, CLI_NONE, 0, NULL}

struct cli_operand {
  const char *name;       /* as the synopsis shows it: "FILE", "[SIZE]",
                             "[+|-]SIZE" */
  enum cli_values values; /* what it is */
};

struct cli_command {
  const char *name;
  const char *summary;     /* its line in `vmdkit --help` */
  const char *description; /* paragraphs separated by "\n\n" */
  const char *epilog;      /* paragraphs after the options, or NULL */
  /* The command's own options, in help order, ending with a zero key;
   * --confine and -h/--help are added to every command. */
  const struct cli_option *options;
  const struct cli_operand *operands; /* in order, ending with a NULL name */
  int error_status; /* exit status of a usage error; 0 means 1 */
  /* argv[0] is the command name; returns the process exit status. */
  int (*run)(int argc, char **argv);
};

extern const struct cli_command cmd_create, cmd_info, cmd_check, cmd_map,
    cmd_compare, cmd_convert, cmd_read, cmd_write, cmd_commit, cmd_rebase,
    cmd_resize, cmd_bench, cmd_mount, /* mount: a stub without libfuse3 */
    cmd_ova,                          /* ova create (tools/cmd_ova.c) */
    cmd_ova_info; /* "ova info" (tools/cmd_ova_info.c), run by cmd_ova */

/* Every command, in `vmdkit --help` order, ending with NULL. */
extern const struct cli_command *const cli_commands[];

/* The options every command takes (--confine, -h/--help), ending with a
 * zero key. */
extern const struct cli_option cli_common_options[];

/* ---- option parsing (tools/cmdline.c) ----------------------------------- */

/* Built from a command's table by cli_parser_init(). */
#define CLI_MAX_OPTIONS 32 /* own options per command */
struct cli_parser {
  const struct cli_command *cmd;
  int argc;
  char **argv;
  char optstring[2 + 3 * (CLI_MAX_OPTIONS + 2)];
  struct option longopts[CLI_MAX_OPTIONS + 3];
  int status; /* the exit status after cli_getopt() returned -1 */
};

/* Prepare to parse ARGV (argv[0] the command name) with CMD's options. */
void cli_parser_init(struct cli_parser *p, const struct cli_command *cmd,
                     int argc, char **argv);

/* The next option, like getopt_long(): its key (> 0; optarg holds its
 * argument) for an option of the command's own table; 0 when the options
 * are done (argv[optind] is the first operand); or -1 when the command must
 * return P->status now.  That is after -h/--help (the help is printed:
 * status 0, or the command's error status if stdout failed) and after a
 * bad option (unknown, missing or unexpected argument: one line
 * "vmdkit: CMD: ... (try 'vmdkit CMD --help')", the error status).
 * --confine is handled here: it sets VMDK_OPEN_CONFINE in cli_open_flags. */
int cli_getopt(struct cli_parser *p);

/* For the default: of a command's option switch: KEY is in the table but
 * not handled (a bug).  Prints so; returns the command's error status. */
int cli_unhandled(const struct cli_parser *p, int key);

/* `vmdkit CMD --help` on stdout: 0, or the error status when stdout
 * failed. */
int cli_print_command_help(const struct cli_command *cmd);

/* ---- generated documents (tools/gendoc.c) ------------------------------ */

/* `vmdkit help --pod`: a "=head2 vmdkit NAME" section per command, to go
 * under a =head1 of the vmdkit(1) page.  0, or 1 after an error. */
int cli_print_pod(void);
/* `vmdkit help --bash-completion`: the bash completion script. */
int cli_print_bash_completion(void);

/* ---- errors ------------------------------------------------------------- */

/* "vmdkit: <vmdk_get_error()>".  When the library left no message, falls
 * back to "vmdkit: FILE: <strerror(vmdk_get_errno())>" (FILE may be NULL). */
void cli_lib_error(const char *file);

/* "vmdkit: FILE: <message>" (or "vmdkit: <message>" when FILE is NULL). */
void cli_error(const char *file, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A command-line mistake: "vmdkit: CMD: <message> (try 'vmdkit CMD
 * --help')". */
void cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* fflush(stdout) and check it ever failed: 0, or -1 after printing
 * "vmdkit: write error on stdout: ...". */
int cli_flush_stdout(void);

/* ---- --confine: every command ------------------------------------------ */

/* Every command takes --confine (cli_common_options): each image it opens
 * -- sources, targets, backings -- is opened with VMDK_OPEN_CONFINE, so
 * extent and backing files that resolve (after .. and symbolic links)
 * outside the folder of the image named on the command line are refused
 * before they are opened.  cli_getopt() sets the flag; a command ORs
 * cli_open_flags into every open and create flags. */
extern unsigned cli_open_flags; /* VMDK_OPEN_CONFINE after --confine */

/* ---- argument parsing (each prints its own one-line error, returns -1) -- */

/* A size or offset in bytes: decimal digits (or 0x-prefixed hex) and an
 * optional suffix b/B (bytes) or k/K, m/M, g/G, t/T, p/P, e/E (powers of
 * 1024).  WHAT names the argument in messages ("size", "offset").  Junk,
 * signs, fractions and values above UINT64_MAX are refused. */
int cli_parse_size(const char *what, const char *s, uint64_t *out);

/* The words a value of kind V is one of, NULL-terminated: CLI_FORMAT,
 * CLI_OUTPUT, CLI_CACHE (the names cli_parse_cache() lists; it also takes
 * "off"), CLI_REPAIR, CLI_AIO; CLI_CREATE_OPTIONS: the -o keys.  NULL for
 * the other kinds. */
const char *const *cli_value_words(enum cli_values v);

/* The index of S in WORDS (NULL-terminated), or -1. */
int cli_word_index(const char *const *words, const char *s);

/* The values the -o key KEY takes, for completion: up to MAX of them into
 * WORDS (static strings; the subformats are the library's, without raw).
 * Returns how many; 0 for a key whose value is free (hwversion=N). */
size_t cli_create_option_values(const char *key, const char **words,
                                size_t max);

/* -f / -O format names: "vmdk" -> VMDK_FORMAT_VMDK, "raw" ->
 * VMDK_FORMAT_RAW, a format QEMU reads ("qcow2", "vhdx", ...:
 * cli_value_words(CLI_FORMAT)) -> a value above CLI_FORMAT_QEMU that
 * cli_qemu_format() names and cli_open() opens through qemu-nbd.
 * cli_parse_output_format() takes only the formats convert writes
 * (CLI_FORMAT_OUT). */
#define CLI_FORMAT_QEMU 0x100
int cli_parse_format(const char *s, int *format);
int cli_parse_output_format(const char *s, int *format);
/* Only vmdk and raw (CLI_FORMAT_VMDK). */
int cli_parse_vmdk_format(const char *s, int *format);
/* The QEMU format name of a cli_parse_format() value, or NULL for vmdk,
 * raw and AUTO. */
const char *cli_qemu_format(int format);
/* Open FILE as FORMAT (a cli_parse_format() value or VMDK_FORMAT_AUTO):
 * vmdk_open_qemu() for a QEMU format, else vmdk_open_format(). */
struct vmdk_disk *cli_open(const char *file, int format, unsigned flags);
/* For --help and the man page: the words an option's argument of kind V
 * is one of, joined by ", " (CLI_FORMAT, CLI_FORMAT_OUT), or NULL. */
const char *cli_values_note(enum cli_values v);

enum cli_output { CLI_OUTPUT_HUMAN, CLI_OUTPUT_JSON };
/* --output=human|json */
int cli_parse_output(const char *s, enum cli_output *out);

/* -t CACHE, with qemu-img's names and meaning: "writeback" (no flag),
 * "none" (VMDK_OPEN_NOCACHE), "unsafe" (VMDK_OPEN_UNSAFE), "writethrough"
 * (no flag; *WRITETHROUGH set: the caller flushes after every request),
 * "directsync" (VMDK_OPEN_NOCACHE and *WRITETHROUGH).  Sets *FLAGS to the
 * mode's VMDK_OPEN_* cache flags (other bits of *FLAGS are kept). */
int cli_parse_cache(const char *s, unsigned *flags, bool *writethrough);

/* A plain decimal integer in [MIN, MAX] (no suffix, no sign).  WHAT names
 * it in messages ("request count"). */
int cli_parse_uint(const char *what, const char *s, uint64_t min, uint64_t max,
                   uint64_t *out);

/* Apply one -o argument "key=val,key=val" to *OPTS (later keys win).
 * Keys: subformat=NAME (any VMDK layout vmdk_subformat_from_name()
 * knows, e.g. monolithicSparse, twoGbMaxExtentSparse, vmfs; not raw),
 * adapter_type=ide|buslogic|lsilogic|legacyESX|pvscsi, hwversion=N,
 * zeroed_grain=on|off, grain_size=BYTES (power of two, 4 KiB..1 GiB),
 * compression_level=1..12 (streamOptimized).
 * adapter_type points at a static string.  "help" prints the list and
 * sets *HELP (the caller then exits 0). */
int cli_parse_create_options(const char *s, struct vmdk_create_options *opts,
                             bool *help);

/* ---- growable text buffer ----------------------------------------------- */

struct strbuf {
  char *data;  /* NUL-terminated when len > 0 */
  size_t len;  /* bytes used, excluding the NUL */
  size_t cap;  /* bytes allocated */
  bool failed; /* an allocation failed: contents are incomplete */
};

#define STRBUF_INIT                                                            \
  { NULL, 0, 0, false }

void sb_append(struct strbuf *sb, const char *s, size_t n);
void sb_puts(struct strbuf *sb, const char *s);
void sb_printf(struct strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sb_free(struct strbuf *sb);
/* Write the whole buffer to stdout and flush.  0, or -1 after printing an
 * error (also when an earlier allocation failed). */
int sb_write_stdout(struct strbuf *sb);

/* ---- JSON --------------------------------------------------------------- */

/* Append S as a JSON string literal (with the quotes).  Control characters
 * are escaped; bytes that are not valid UTF-8 become U+FFFD. */
void json_escape(struct strbuf *sb, const char *s);

/* A pretty-printer laid out like qemu-img's --output=json (4-space
 * indent).  Members are added in order; KEY is NULL inside arrays and for
 * the top-level value. */
#define JSON_MAX_DEPTH 16
struct json {
  struct strbuf *sb;
  int depth;                        /* open containers */
  bool has_members[JSON_MAX_DEPTH]; /* per level: something was written */
};

void json_init(struct json *j, struct strbuf *sb);
void json_open_object(struct json *j, const char *key);
void json_close_object(struct json *j);
void json_open_array(struct json *j, const char *key);
void json_close_array(struct json *j);
void json_uint(struct json *j, const char *key, uint64_t v);
void json_string(struct json *j, const char *key, const char *v);
void json_bool(struct json *j, const char *key, bool v);

/* ---- formatting --------------------------------------------------------- */

/* qemu-img style human size: three significant digits and a binary unit,
 * switching unit at 1000: "0 B", "999 B", "0.977 KiB", "84 KiB",
 * "1.5 GiB".  BUF must hold 32 bytes; returns BUF. */
char *cli_human_size(char *buf, uint64_t bytes);

/* ---- progress bar (-p) -------------------------------------------------- */

/* qemu-img style "    (12.34/100%)" rewritten with \r on stderr; does
 * nothing unless ENABLED. */
struct cli_progress {
  bool enabled;
  double shown; /* last percentage printed, < 0 before the first */
};

void progress_start(struct cli_progress *p, bool enabled);
/* DONE of TOTAL bytes are processed (TOTAL 0 counts as complete). */
void progress_update(struct cli_progress *p, uint64_t done, uint64_t total);
/* Print 100% (when SUCCESS) and end the line. */
void progress_end(struct cli_progress *p, bool success);

/* ---- backing chains (tools/chain.c) ------------------------------------ */

/* The path of the image a parent link HINT names, for an image opened as
 * CHILD: HINT itself when absolute, else HINT in CHILD's folder (what
 * qemu-img shows as the full backing filename).  malloc'd; NULL when out
 * of memory. */
char *cli_layer_name(const char *child, const char *hint);

/* The parent link to write into the image CHILD for a -b BACKING given on
 * the command line (a relative BACKING is relative to CHILD's folder, as
 * in qemu-img): an absolute BACKING that lies in CHILD's folder or below
 * it becomes relative ("base.vmdk", "sub/base.vmdk"), so the pair can be
 * moved together; anything else is kept as given.  malloc'd; NULL after
 * printing an error. */
char *cli_backing_hint(const char *child, const char *backing);


/* ---- long operations (commit, rebase, convert, ova create) ----------- */

/* Catch SIGINT, SIGTERM and SIGHUP: cli_interrupted() then turns true and
 * cli_progress_cb() asks the library to stop at a consistent point. */
void cli_catch_interrupts(void);
bool cli_interrupted(void);
/* A vmdk_progress_cb; OPAQUE is a struct cli_progress. */
int cli_progress_cb(void *opaque, uint64_t done, uint64_t total);

/* ---- shared constants --------------------------------------------------- */

#define MiB ((uint64_t)1 << 20)
/* Bytes moved per read/write call by read and write. */
#define CLI_IO_CHUNK (1 * MiB)

/* A page-aligned buffer of N bytes (free() it), or NULL: the kernel copies
 * between the page cache and it about twice as fast as with malloc's. */
void *cli_io_alloc(size_t n);

#endif /* VMDKIT_CLI_H */
