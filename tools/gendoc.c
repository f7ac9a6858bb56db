/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit CLI: documents generated from the command descriptions (struct
 * cli_command, cli.h): the POD of the commands for the vmdkit(1) man page
 * and the bash completion script.  Both come from the same tables as the
 * parser and --help, so they list exactly the options the commands take. */
#include "cli.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* ---- POD ---------------------------------------------------------------- */

static bool is_word_char(char c) {
  return isalnum((unsigned char)c) || c == '_';
}

/* Whether the N bytes at S are an option of CMD ("-f", "--output"). */
static bool is_option(const struct cli_command *cmd, const char *s, size_t n) {
  const struct cli_option *lists[] = {cmd->options, cli_common_options};
  for (size_t l = 0; l < 2; l++)
    for (const struct cli_option *o = lists[l]; o && o->key; o++) {
      if (n == 2 && s[1] == o->key && o->key < CLI_OPT_FIRST)
        return true;
      if (o->long_name && n == 2 + strlen(o->long_name) && s[1] == '-' &&
          strncmp(s + 2, o->long_name, n - 2) == 0)
        return true;
    }
  return false;
}

/* Whether WORD (N bytes) is upper case (letters, digits, '_') and is
 * found among the words of NAME ("[+|-]SIZE"). */
static bool word_in(const char *name, const char *word, size_t n) {
  for (const char *p = name; p && *p;) {
    size_t m = 0;
    while (is_word_char(p[m]))
      m++;
    if (m == n && strncmp(p, word, n) == 0)
      return true;
    p += m ? m : 1;
  }
  return false;
}

/* Whether the N bytes at S are an option argument or operand name of CMD
 * ("FMT", "FILE"). */
static bool is_metavariable(const struct cli_command *cmd, const char *s,
                            size_t n) {
  bool upper = false;
  for (size_t i = 0; i < n; i++) {
    if (islower((unsigned char)s[i]))
      return false;
    upper |= isupper((unsigned char)s[i]) != 0;
  }
  if (!upper)
    return false;
  for (const struct cli_operand *a = cmd->operands; a && a->name; a++)
    if (word_in(a->name, s, n))
      return true;
  for (const struct cli_option *o = cmd->options; o && o->key; o++)
    if (o->arg && word_in(o->arg, s, n))
      return true;
  return false;
}

/* Append TEXT as POD: '<' and '>' escaped, CMD's options in bold, its
 * metavariables in italics.  Blank lines separate paragraphs as in TEXT;
 * no line starts with a blank (that would make a verbatim paragraph). */
static void pod_text(struct strbuf *sb, const char *text,
                     const struct cli_command *cmd) {
  char prev = ' ';
  for (const char *p = text; *p;) {
    size_t n = 0;
    if (*p == '<' || *p == '>') {
      sb_puts(sb, *p == '<' ? "E<lt>" : "E<gt>");
      prev = *p++;
      continue;
    }
    if (*p == '\n') { /* a paragraph break, or a line break inside one */
      n = strspn(p, "\n");
      sb_puts(sb, n > 1 ? "\n\n" : " ");
      prev = ' ';
      p += n;
      continue;
    }
    if (*p == '-' && !is_word_char(prev) && prev != '-') {
      /* "-x" or "--name" */
      if (p[1] == '-')
        for (n = 2; isalnum((unsigned char)p[n]) || p[n] == '-'; n++)
          ;
      else if (isalnum((unsigned char)p[1]) && !is_word_char(p[2]))
        n = 2;
      if (n > 2 || (n == 2 && p[1] != '-')) {
        if (is_option(cmd, p, n)) {
          sb_printf(sb, "B<%.*s>", (int)n, p);
          prev = p[n - 1];
          p += n;
          continue;
        }
      }
      n = 0;
    }
    if (is_word_char(*p) && !is_word_char(prev)) {
      while (is_word_char(p[n]))
        n++;
      if (is_metavariable(cmd, p, n))
        sb_printf(sb, "I<%.*s>", (int)n, p);
      else
        sb_append(sb, p, n);
      prev = p[n - 1];
      p += n;
      continue;
    }
    sb_append(sb, p, 1);
    prev = *p++;
  }
}

/* "B<-f> I<FMT>", "B<--output>=I<FORMAT>", "B<-r>, B<--read-only>". */
static void pod_option_label(struct strbuf *sb, const struct cli_option *o) {
  if (o->key < CLI_OPT_FIRST) {
    sb_printf(sb, "B<-%c>", o->key);
    if (o->arg && !o->long_name)
      sb_printf(sb, " I<%s>", o->arg);
    if (o->long_name)
      sb_puts(sb, ", ");
  }
  if (o->long_name) {
    sb_printf(sb, "B<--%s>", o->long_name);
    if (o->arg)
      sb_printf(sb, "=I<%s>", o->arg);
  }
}

static void pod_command(struct strbuf *sb, const struct cli_command *cmd) {
  sb_printf(sb, "=head2 vmdkit %s\n\n", cmd->name);
  /* The synopsis, one paragraph; S<> keeps each item on one line. */
  sb_printf(sb, "B<vmdkit %s>", cmd->name);
  for (const struct cli_option *o = cmd->options; o && o->key; o++) {
    bool optional = !(o->flags & CLI_REQUIRED);
    sb_puts(sb, optional ? " S<[" : " S<");
    if (o->key < CLI_OPT_FIRST)
      sb_printf(sb, "B<-%c>%s%s%s", o->key, o->arg ? " I<" : "",
                o->arg ? o->arg : "", o->arg ? ">" : "");
    else
      sb_printf(sb, "B<--%s>%s%s%s", o->long_name, o->arg ? "=I<" : "",
                o->arg ? o->arg : "", o->arg ? ">" : "");
    sb_puts(sb, optional ? "]>" : ">");
  }
  for (const struct cli_operand *a = cmd->operands; a && a->name; a++) {
    sb_puts(sb, " ");
    pod_text(sb, a->name, cmd);
  }
  sb_puts(sb, "\n\n");
  pod_text(sb, cmd->description, cmd);
  sb_puts(sb, "\n\n=over 4\n\n");
  const struct cli_option *lists[] = {cmd->options, cli_common_options};
  for (size_t l = 0; l < 2; l++)
    for (const struct cli_option *o = lists[l]; o && o->key; o++) {
      sb_puts(sb, "=item ");
      pod_option_label(sb, o);
      sb_puts(sb, "\n\n");
      pod_text(sb, o->help, cmd);
      const char *note = o->arg ? cli_values_note(o->values) : NULL;
      if (note) {
        sb_printf(sb, "; ");
        pod_text(sb, o->arg, cmd);
        sb_printf(sb, ": %s", note);
      }
      sb_puts(sb, "\n\n");
    }
  sb_puts(sb, "=back\n\n");
  if (cmd->epilog) {
    pod_text(sb, cmd->epilog, cmd);
    sb_puts(sb, "\n\n");
  }
}

int cli_print_pod(void) {
  struct strbuf sb = STRBUF_INIT;
  for (size_t i = 0; cli_commands[i]; i++)
    pod_command(&sb, cli_commands[i]);
  int ret = sb_write_stdout(&sb) == 0 ? 0 : 1;
  sb_free(&sb);
  return ret;
}

/* ---- bash completion ---------------------------------------------------- */

/* The name of each kind of value in the script. */
static const char *const kind_names[] = {
    [CLI_NONE] = "none",
    [CLI_TEXT] = "text",
    [CLI_FILE] = "file",
    [CLI_DIRECTORY] = "directory",
    [CLI_SIZE] = "size",
    [CLI_NUMBER] = "number",
    [CLI_FORMAT] = "format",
    [CLI_OUTPUT] = "output",
    [CLI_CACHE] = "cache",
    [CLI_REPAIR] = "repair",
    [CLI_AIO] = "aio",
    [CLI_CREATE_OPTIONS] = "create-options",
    [CLI_FORMAT_OUT] = "output-format",
    [CLI_FORMAT_VMDK] = "vmdk-format",
};
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

/* The script after the generated tables: completes from them. */
static const char completion_functions[] =
    "# _vmdkit_option_kind CMD OPT: sets kind to the kind of the argument the\n"
    "# option OPT (one word: \"-f\", \"--output\") of CMD takes: \"none\" when it takes\n"
    "# none, empty when CMD has no such option.\n"
    "_vmdkit_option_kind()\n"
    "{\n"
    "    local o\n"
    "    kind=\n"
    "    for o in ${_vmdkit_options[$1]-}; do\n"
    "        case $o in\n"
    "            \"$2\") kind=none; return ;;\n"
    "            \"$2\"@*) kind=${o#*@}; return ;;\n"
    "        esac\n"
    "    done\n"
    "}\n"
    "\n"
    "# _vmdkit_files [-d]: file (directory) names starting with $cur.\n"
    "_vmdkit_files()\n"
    "{\n"
    "    if declare -F _filedir >/dev/null 2>&1; then\n"
    "        _filedir \"$@\"\n"
    "        return\n"
    "    fi\n"
    "    local IFS=$'\\n'\n"
    "    if [[ ${1-} == -d ]]; then\n"
    "        COMPREPLY=($(compgen -d -- \"$cur\"))\n"
    "    else\n"
    "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
    "    fi\n"
    "    compopt -o filenames 2>/dev/null\n"
    "}\n"
    "\n"
    "# _vmdkit_create_options: $cur is an -o argument \"key=value,key=val...\":\n"
    "# complete the key or value after its last comma.\n"
    "_vmdkit_create_options()\n"
    "{\n"
    "    local item=${cur##*,}\n"
    "    local before=${cur%\"$item\"}\n"
    "    if [[ $item == *=* ]]; then\n"
    "        local key=${item%%=*}\n"
    "        COMPREPLY=($(compgen -P \"$before$key=\" \\\n"
    "            -W \"${_vmdkit_values[o:$key]-}\" -- \"${item#*=}\"))\n"
    "    else\n"
    "        COMPREPLY=($(compgen -P \"$before\" -S = \\\n"
    "            -W \"${_vmdkit_values[create-options]}\" -- \"$item\"))\n"
    "        [[ -z $before && help == \"$item\"* ]] && COMPREPLY+=(help)\n"
    "        compopt -o nospace 2>/dev/null\n"
    "    fi\n"
    "}\n"
    "\n"
    "# _vmdkit_complete KIND: complete $cur as a value of KIND.\n"
    "_vmdkit_complete()\n"
    "{\n"
    "    case $1 in\n"
    "        file) _vmdkit_files ;;\n"
    "        directory) _vmdkit_files -d ;;\n"
    "        create-options) _vmdkit_create_options ;;\n"
    "        *)\n"
    "            [[ -n ${_vmdkit_values[$1]-} ]] &&\n"
    "                COMPREPLY=($(compgen -W \"${_vmdkit_values[$1]}\" -- \"$cur\"))\n"
    "            ;;\n"
    "    esac\n"
    "}\n"
    "\n"
    "_vmdkit()\n"
    "{\n"
    "    local cur prev words cword split=false\n"
    "    if declare -F _init_completion >/dev/null 2>&1; then\n"
    "        _init_completion -s || return\n"
    "    else\n"
    "        # Without bash-completion: the words before the cursor, split at\n"
    "        # blanks (no quoting), and --opt=value split as _init_completion -s\n"
    "        # does.\n"
    "        local line=${COMP_LINE:0:COMP_POINT}\n"
    "        read -ra words <<<\"$line\"\n"
    "        [[ ${#words[@]} -eq 0 || $line == *[[:blank:]] ]] && words+=(\"\")\n"
    "        cword=$((${#words[@]} - 1))\n"
    "        cur=${words[cword]}\n"
    "        prev=${words[cword - 1]-}\n"
    "        if [[ $cur == --?*=* ]]; then\n"
    "            prev=${cur%%=*}\n"
    "            cur=${cur#*=}\n"
    "            split=true\n"
    "        fi\n"
    "    fi\n"
    "\n"
    "    # The command: the first word that is not an option (vmdkit's own\n"
    "    # options, --help and --version, take no argument).\n"
    "    local cmd= ci i\n"
    "    for ((i = 1; i < cword; i++)); do\n"
    "        if [[ ${words[i]} != -* ]]; then\n"
    "            cmd=${words[i]}\n"
    "            ci=$i\n"
    "            break\n"
    "        fi\n"
    "    done\n"
    "    if [[ -z $cmd ]]; then\n"
    "        if [[ $cur == -* ]]; then\n"
    "            COMPREPLY=($(compgen -W '--help --version' -- \"$cur\"))\n"
    "        else\n"
    "            COMPREPLY=($(compgen -W \"$_vmdkit_commands help\" -- \"$cur\"))\n"
    "        fi\n"
    "        return\n"
    "    fi\n"
    "    if [[ $cmd == help ]]; then\n"
    "        if ((cword == ci + 1)); then\n"
    "            if [[ $cur == -* ]]; then\n"
    "                COMPREPLY=($(compgen -W '--pod --bash-completion' -- \"$cur\"))\n"
    "            else\n"
    "                COMPREPLY=($(compgen -W \"$_vmdkit_commands\" -- \"$cur\"))\n"
    "            fi\n"
    "        fi\n"
    "        return\n"
    "    fi\n"
    "    [[ -n ${_vmdkit_options[$cmd]-} ]] || return\n"
    "\n"
    "    # Walk the words between the command and the cursor: WANT is the kind\n"
    "    # of argument the last option still waits for, NOPS the operands seen.\n"
    "    # \"--\" ends the options; -5M (a negative size) is an operand.\n"
    "    local want= nops=0 ended=false w j kind\n"
    "    for ((i = ci + 1; i < cword; i++)); do\n"
    "        w=${words[i]}\n"
    "        if [[ -n $want ]]; then\n"
    "            want=\n"
    "        elif [[ $ended == false && $w == -- ]]; then\n"
    "            ended=true\n"
    "        elif [[ $ended == true || $w != -?* || $w == -[0-9]* ]]; then\n"
    "            nops=$((nops + 1))\n"
    "        elif [[ $w == --* ]]; then\n"
    "            if [[ $w != *=* ]]; then\n"
    "                _vmdkit_option_kind \"$cmd\" \"$w\"\n"
    "                [[ $kind == none ]] || want=$kind\n"
    "            fi\n"
    "        else\n"
    "            # a cluster of short options (-pq) or one with its argument\n"
    "            # attached (-Oraw)\n"
    "            for ((j = 1; j < ${#w}; j++)); do\n"
    "                _vmdkit_option_kind \"$cmd\" \"-${w:j:1}\"\n"
    "                if [[ -n $kind && $kind != none ]]; then\n"
    "                    ((j == ${#w} - 1)) && want=$kind\n"
    "                    break\n"
    "                fi\n"
    "            done\n"
    "        fi\n"
    "    done\n"
    "\n"
    "    if [[ -n $want ]]; then\n"
    "        _vmdkit_complete \"$want\"\n"
    "    elif [[ $split == true ]]; then\n"
    "        _vmdkit_option_kind \"$cmd\" \"$prev\"\n"
    "        [[ -z $kind || $kind == none ]] || _vmdkit_complete \"$kind\"\n"
    "        # bash replaces only what follows the '=' when '=' breaks words\n"
    "        [[ $COMP_WORDBREAKS == *=* ]] ||\n"
    "            COMPREPLY=(\"${COMPREPLY[@]/#/$prev=}\")\n"
    "        return\n"
    "    elif [[ $ended == false && $cur == -* && $cur != -[0-9]* ]]; then\n"
    "        local o list=\n"
    "        for o in ${_vmdkit_options[$cmd]}; do\n"
    "            case $o in\n"
    "                --*@*) list+=\" ${o%%@*}=\" ;;\n"
    "                *@*) list+=\" ${o%%@*}\" ;;\n"
    "                *) list+=\" $o\" ;;\n"
    "            esac\n"
    "        done\n"
    "        COMPREPLY=($(compgen -W \"$list\" -- \"$cur\"))\n"
    "        [[ ${COMPREPLY[*]-} == *= || ${COMPREPLY[*]-} == *=\\ * ]] &&\n"
    "            compopt -o nospace 2>/dev/null\n"
    "    else\n"
    "        local kinds=(${_vmdkit_operands[$cmd]-})\n"
    "        ((nops < ${#kinds[@]})) && _vmdkit_complete \"${kinds[nops]}\"\n"
    "    fi\n"
    "    # bash replaces only what follows the last '=' of the word when '='\n"
    "    # breaks words (the default): drop what comes before it.\n"
    "    if [[ $COMP_WORDBREAKS == *=* && $cur == *=* ]]; then\n"
    "        local keep=${cur%\"${cur##*=}\"}\n"
    "        COMPREPLY=(\"${COMPREPLY[@]#\"$keep\"}\")\n"
    "    fi\n"
    "    return 0\n"
    "}\n"
    "complete -F _vmdkit vmdkit\n";

/* " -f@format" (takes a format), " --shrink" (takes nothing). */
static void bash_option(struct strbuf *sb, const struct cli_option *o) {
  const char *kind = o->arg ? kind_names[o->values] : NULL;
  if (o->key < CLI_OPT_FIRST)
    sb_printf(sb, " -%c%s%s", o->key, kind ? "@" : "", kind ? kind : "");
  if (o->long_name)
    sb_printf(sb, " --%s%s%s", o->long_name, kind ? "@" : "",
              kind ? kind : "");
}

/* A bash single-quoted word list: WORDS, N of them, separated by blanks. */
static void bash_words(struct strbuf *sb, const char *const *words,
                       size_t n) {
  sb_puts(sb, "'");
  for (size_t i = 0; i < n; i++)
    sb_printf(sb, "%s%s", i ? " " : "", words[i]);
  sb_puts(sb, "'");
}

int cli_print_bash_completion(void) {
  struct strbuf sb = STRBUF_INIT;
  sb_puts(&sb,
          "# bash completion for vmdkit(1)                     -*- shell-script -*-\n"
          "# SPDX-License-Identifier: BSD-3-Clause\n"
          "# Generated by 'vmdkit help --bash-completion' from the option "
          "tables of the\n"
          "# vmdkit CLI (tools/cmd_*.c): change those, not this file.\n"
          "\n");

  sb_puts(&sb, "_vmdkit_commands='");
  for (size_t i = 0; cli_commands[i]; i++)
    sb_printf(&sb, "%s%s", i ? " " : "", cli_commands[i]->name);
  sb_puts(&sb, "'\n\n");

  sb_puts(&sb, "# The options of each command: OPT@KIND takes an argument of "
               "that KIND.\n"
               "declare -gA _vmdkit_options=(\n");
  for (size_t i = 0; cli_commands[i]; i++) {
    const struct cli_command *cmd = cli_commands[i];
    sb_printf(&sb, "    [%s]='", cmd->name);
    struct strbuf list = STRBUF_INIT;
    for (const struct cli_option *o = cmd->options; o && o->key; o++)
      bash_option(&list, o);
    for (const struct cli_option *o = cli_common_options; o->key; o++)
      bash_option(&list, o);
    if (list.failed)
      sb.failed = true;
    else if (list.len)
      sb_puts(&sb, list.data + 1); /* without the first blank */
    sb_free(&list);
    sb_puts(&sb, "'\n");
  }
  sb_puts(&sb, ")\n\n");

  sb_puts(&sb, "# The KIND of each operand of each command, in order.\n"
               "declare -gA _vmdkit_operands=(\n");
  for (size_t i = 0; cli_commands[i]; i++) {
    const struct cli_command *cmd = cli_commands[i];
    sb_printf(&sb, "    [%s]='", cmd->name);
    for (const struct cli_operand *a = cmd->operands; a && a->name; a++)
      sb_printf(&sb, "%s%s", a == cmd->operands ? "" : " ",
                kind_names[a->values]);
    sb_puts(&sb, "'\n");
  }
  sb_puts(&sb, ")\n\n");

  sb_puts(&sb, "# The values of each KIND that is a list of words, and of "
               "each -o key\n"
               "# (o:KEY; none for a key that takes any value).\n"
               "declare -gA _vmdkit_values=(\n");
  for (size_t k = 0; k < N_KINDS; k++) {
    const char *const *words = cli_value_words((enum cli_values)k);
    if (!words)
      continue;
    size_t n = 0;
    while (words[n])
      n++;
    sb_printf(&sb, "    [%s]=", kind_names[k]);
    bash_words(&sb, words, n);
    sb_puts(&sb, "\n");
  }
  const char *const *keys = cli_value_words(CLI_CREATE_OPTIONS);
  for (size_t k = 0; keys[k]; k++) {
    const char *values[64];
    size_t n = cli_create_option_values(keys[k], values, 64);
    if (n == 0)
      continue;
    sb_printf(&sb, "    [o:%s]=", keys[k]);
    bash_words(&sb, values, n);
    sb_puts(&sb, "\n");
  }
  sb_puts(&sb, ")\n\n");

  sb_puts(&sb, completion_functions);
  int ret = sb_write_stdout(&sb) == 0 ? 0 : 1;
  sb_free(&sb);
  return ret;
}
