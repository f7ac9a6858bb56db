/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit CLI: the option parser and `--help`, both driven by a command's
 * struct cli_command (see cli.h for the contracts). */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns of --help output. */
#define HELP_WIDTH 79
#define HELP_MAX_COLUMN 24 /* the option texts start at most here */

const struct cli_option cli_common_options[] = {
    {CLI_OPT_CONFINE, "confine", NULL, CLI_NONE, 0,
     "refuse extent and backing files that resolve (after .. and symlinks) "
     "outside the image's folder"},
    {CLI_OPT_REMOTE, "remote-option", "KEY=VALUE", CLI_TEXT, 0,
     "for images given as URLs (http://, https://, ssh://, file+nbd://): "
     "user, password=+FILE, cookie, header, sslverify=false, cainfo=FILE, "
     "identity=FILE, known-hosts=FILE, connections=N, readahead=SIZE, "
     "confine=no, filter=NAME (see vmdkit(1), REMOTE IMAGES); may be "
     "repeated"},
    {'h', "help", NULL, CLI_NONE, 0, "show this help"},
    CLI_OPTIONS_END,
};

static int error_status(const struct cli_command *cmd) {
  return cmd->error_status ? cmd->error_status : 1;
}

/* ---- parsing ----------------------------------------------------------- */

/* Add option O to P's optstring and long options. */
static void add_option(struct cli_parser *p, const struct cli_option *o,
                       size_t *n_short, size_t *n_long) {
  if (o->key < CLI_OPT_FIRST) {
    p->optstring[(*n_short)++] = (char)o->key;
    if (o->arg)
      p->optstring[(*n_short)++] = ':';
  }
  if (o->long_name)
    p->longopts[(*n_long)++] = (struct option){
        o->long_name, o->arg ? required_argument : no_argument, NULL, o->key};
}

void cli_parser_init(struct cli_parser *p, const struct cli_command *cmd,
                     int argc, char **argv) {
  size_t n_short = 0, n_long = 0, count = 0;
  p->cmd = cmd;
  p->argc = argc;
  p->argv = argv;
  p->status = 0;
  /* ':' first: a missing argument is reported as ':', not '?'. */
  p->optstring[n_short++] = ':';
  for (const struct cli_option *o = cmd->options; o && o->key; o++) {
    if (++count > CLI_MAX_OPTIONS) {
      cli_error(NULL, "%s: more than %d options (raise CLI_MAX_OPTIONS)",
                cmd->name, CLI_MAX_OPTIONS);
      abort();
    }
    add_option(p, o, &n_short, &n_long);
  }
  for (const struct cli_option *o = cli_common_options; o->key; o++)
    add_option(p, o, &n_short, &n_long);
  p->optstring[n_short] = '\0';
  p->longopts[n_long] = (struct option){NULL, 0, NULL, 0};
  optind = 1;
  opterr = 0;
}

/* One line for what getopt_long() returned for a bad option (C is '?' or
 * ':').  getopt_long has advanced optind past the offending word, except
 * for a short option that is not the last of a cluster ("-xq"). */
static void bad_option(const struct cli_parser *p, int c) {
  const char *cmd = p->cmd->name;
  const char *word = optind > 0 ? p->argv[optind - 1] : "";
  bool is_long = false;
  size_t n = strcspn(word, "=");
  if (strncmp(word, "--", 2) == 0) {
    if (optopt == 0) /* unknown or ambiguous long option */
      is_long = true;
    for (const struct option *o = p->longopts; o->name; o++)
      if (o->val == optopt && n > 2 && strncmp(o->name, word + 2, n - 2) == 0)
        is_long = true;
  }
  char name[64];
  if (is_long) {
    if (n >= sizeof name)
      n = sizeof name - 1;
    memcpy(name, word, n);
    name[n] = '\0';
  } else {
    snprintf(name, sizeof name, "-%c",
             optopt > 0 && optopt < CLI_OPT_FIRST ? optopt : '?');
  }
  if (c == ':')
    cli_usage_error(cmd, "option '%s' requires an argument", name);
  else if (!is_long && optopt >= '0' && optopt <= '9')
    cli_usage_error(cmd,
                    "unknown option '%s' (sizes and offsets cannot be "
                    "negative)",
                    name);
  else if (is_long && optopt)
    cli_usage_error(cmd, "option '%s' does not take an argument", name);
  else
    cli_usage_error(cmd, "unknown option '%s'", name);
}

int cli_getopt(struct cli_parser *p) {
  for (;;) {
    int c = getopt_long(p->argc, p->argv, p->optstring, p->longopts, NULL);
    switch (c) {
    case -1:
      return 0;
    case CLI_OPT_CONFINE:
      cli_open_flags |= VMDK_OPEN_CONFINE;
      continue;
    case CLI_OPT_REMOTE: {
      const char *eq = strchr(optarg, '=');
      char key[80];
      if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof key) {
        cli_usage_error(p->cmd->name, "--remote-option takes KEY=VALUE");
        p->status = error_status(p->cmd);
        return -1;
      }
      snprintf(key, sizeof key, "%.*s", (int)(eq - optarg), optarg);
      if (vmdk_remote_option(key, eq + 1) != 0) {
        cli_usage_error(p->cmd->name, "--remote-option: %s", vmdk_get_error());
        p->status = error_status(p->cmd);
        return -1;
      }
      continue;
    }
    case 'h':
      p->status = cli_print_command_help(p->cmd);
      return -1;
    case '?':
    case ':':
      bad_option(p, c);
      p->status = error_status(p->cmd);
      return -1;
    default:
      return c;
    }
  }
}

int cli_unhandled(const struct cli_parser *p, int key) {
  cli_error(NULL, "%s: option %d is in the table but not handled (a bug)",
            p->cmd->name, key);
  return error_status(p->cmd);
}

/* ---- help ---------------------------------------------------------------- */

/* An option's name as help shows it: "-f FMT", "--output=FORMAT",
 * "-r, --read-only".  BUF holds 64 bytes; returns BUF. */
static char *option_label(char *buf, const struct cli_option *o) {
  const size_t size = 64;
  if (o->key < CLI_OPT_FIRST && o->long_name)
    snprintf(buf, size, "-%c, --%s%s%s", o->key, o->long_name,
             o->arg ? "=" : "", o->arg ? o->arg : "");
  else if (o->key < CLI_OPT_FIRST)
    snprintf(buf, size, "-%c%s%s", o->key, o->arg ? " " : "",
             o->arg ? o->arg : "");
  else
    snprintf(buf, size, "--%s%s%s", o->long_name, o->arg ? "=" : "",
             o->arg ? o->arg : "");
  return buf;
}

static void pad(struct strbuf *sb, size_t n) {
  for (size_t i = 0; i < n; i++)
    sb_append(sb, " ", 1);
}

/* Append TEXT wrapped at HELP_WIDTH.  The cursor is at column COL of the
 * current line; every further line is indented by INDENT.  Words are runs
 * of non-blanks (a longer one overflows); a blank line ("\n\n") separates
 * paragraphs; between two words on a line, two or more blanks (after a
 * full stop) are two spaces, other white space is one. */
static void wrap(struct strbuf *sb, const char *text, size_t col,
                 size_t indent) {
  bool line_empty = true;
  size_t gap = 1; /* spaces before the next word */
  const char *p = text;
  while (*p) {
    if (p[0] == '\n' && p[1] == '\n') {
      sb_puts(sb, "\n\n");
      pad(sb, indent);
      col = indent;
      line_empty = true;
      p += strspn(p, "\n");
      continue;
    }
    size_t blanks = strspn(p, " \n\t");
    if (blanks) {
      gap = blanks >= 2 ? 2 : 1;
      p += blanks;
      continue;
    }
    size_t n = strcspn(p, " \n\t");
    if (!line_empty && col + gap + n > HELP_WIDTH) {
      sb_puts(sb, "\n");
      pad(sb, indent);
      col = indent;
      line_empty = true;
    }
    if (!line_empty) {
      sb_append(sb, "  ", gap);
      col += gap;
    }
    sb_append(sb, p, n);
    col += n;
    line_empty = false;
    p += n;
  }
}

/* The usage line: own options in table order, then the operands. */
static void help_synopsis(struct strbuf *sb, const struct cli_command *cmd) {
  struct strbuf words = STRBUF_INIT;
  for (const struct cli_option *o = cmd->options; o && o->key; o++) {
    bool optional = !(o->flags & CLI_REQUIRED);
    /* An item ("[-f FMT]") is not split across lines: its space is a '\1'
     * for wrap(), turned back into a space below. */
    sb_puts(&words, optional ? " [" : " ");
    if (o->key < CLI_OPT_FIRST)
      sb_printf(&words, "-%c%s%s", o->key, o->arg ? "\1" : "",
                o->arg ? o->arg : "");
    else
      sb_printf(&words, "--%s%s%s", o->long_name, o->arg ? "=" : "",
                o->arg ? o->arg : "");
    if (optional)
      sb_puts(&words, "]");
  }
  for (const struct cli_operand *a = cmd->operands; a && a->name; a++)
    sb_printf(&words, " %s", a->name);

  struct strbuf line = STRBUF_INIT;
  sb_printf(&line, "Usage: vmdkit %s ", cmd->name);
  size_t indent = line.len;
  wrap(&line, words.data ? words.data : "", indent, indent);
  for (size_t i = 0; i < line.len; i++)
    if (line.data[i] == '\1')
      line.data[i] = ' ';
  if (line.failed || words.failed)
    sb->failed = true;
  else
    sb_append(sb, line.data, line.len);
  sb_puts(sb, "\n");
  sb_free(&words);
  sb_free(&line);
}

/* The option list: label, then the help text from a common column. */
static void help_options(struct strbuf *sb, const struct cli_command *cmd) {
  const struct cli_option *lists[] = {cmd->options, cli_common_options};
  char label[64];
  size_t column = 0;
  for (size_t l = 0; l < 2; l++)
    for (const struct cli_option *o = lists[l]; o && o->key; o++) {
      size_t w = 2 + strlen(option_label(label, o)) + 3;
      if (w > column)
        column = w;
    }
  if (column > HELP_MAX_COLUMN)
    column = HELP_MAX_COLUMN;
  for (size_t l = 0; l < 2; l++)
    for (const struct cli_option *o = lists[l]; o && o->key; o++) {
      size_t w = 2 + strlen(option_label(label, o));
      sb_printf(sb, "  %s", label);
      if (w + 2 > column) { /* too long: the text starts on the next line */
        sb_puts(sb, "\n");
        w = 0;
      }
      pad(sb, column - w);
      const char *note = o->arg ? cli_values_note(o->values) : NULL;
      struct strbuf text = STRBUF_INIT;
      sb_puts(&text, o->help);
      if (note)
        sb_printf(&text, "; %s: %s", o->arg, note);
      if (text.failed)
        sb->failed = true;
      else
        wrap(sb, text.data, column, column);
      sb_free(&text);
      sb_puts(sb, "\n");
    }
}

int cli_print_command_help(const struct cli_command *cmd) {
  struct strbuf sb = STRBUF_INIT;
  help_synopsis(&sb, cmd);
  sb_puts(&sb, "\n");
  wrap(&sb, cmd->description, 0, 0);
  sb_puts(&sb, "\n\n");
  help_options(&sb, cmd);
  if (cmd->epilog) {
    sb_puts(&sb, "\n");
    wrap(&sb, cmd->epilog, 0, 0);
    sb_puts(&sb, "\n");
  }
  int ret = sb_write_stdout(&sb) == 0 ? 0 : error_status(cmd);
  sb_free(&sb);
  return ret;
}
