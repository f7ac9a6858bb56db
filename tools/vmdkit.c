/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit: command-line front end.  `vmdkit COMMAND [options] args...`
 * dispatches to the run function of cmd_COMMAND, the struct cli_command
 * that describes the command (one file per command in tools/). */
#include "cli.h"

#include <stdio.h>
#include <sys/resource.h>
#include <string.h>

const struct cli_command *const cli_commands[] = {
    &cmd_create,  &cmd_info,  &cmd_check, &cmd_map,    &cmd_compare,
    &cmd_convert, &cmd_read,  &cmd_write, &cmd_commit, &cmd_rebase,
    &cmd_resize,  &cmd_bench, &cmd_mount, &cmd_ova,    NULL,
};

static int print_main_help(void) {
  struct strbuf sb = STRBUF_INIT;
  sb_puts(&sb, "Usage: vmdkit COMMAND [OPTIONS] ARGS...\n"
               "       vmdkit help [COMMAND | --pod | --bash-completion]\n"
               "       vmdkit --version | --help\n"
               "\n"
               "Work with VMware virtual disks (VMDK) and raw images.\n"
               "\n"
               "Commands:\n");
  for (size_t i = 0; cli_commands[i]; i++)
    sb_printf(&sb, "  %-9s %s\n", cli_commands[i]->name,
              cli_commands[i]->summary);
  sb_puts(&sb, "\n"
               "Run 'vmdkit COMMAND --help' for the options of a command.\n"
               "Sizes and offsets take the suffixes b, K, M, G, T, P, E "
               "(powers of 1024).\n");
  int ret = sb_write_stdout(&sb) == 0 ? 0 : 1;
  sb_free(&sb);
  return ret;
}

static const struct cli_command *find_command(const char *name) {
  for (size_t i = 0; cli_commands[i]; i++)
    if (strcmp(cli_commands[i]->name, name) == 0)
      return cli_commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  /* Every extent of an image keeps its file open: a split image of a few
   * TiB has more than the usual 1024 soft limit. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
      nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  if (argc < 2) {
    cli_error(NULL, "no command given (try 'vmdkit --help')");
    return 1;
  }
  const char *name = argv[1];

  if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
    printf("vmdkit version %s (library %s)\n", VMDKIT_VERSION_STRING,
           vmdk_version());
    return cli_flush_stdout() == 0 ? 0 : 1;
  }
  if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0)
    return print_main_help();
  if (strcmp(name, "help") == 0) {
    /* `vmdkit help COMMAND` is `vmdkit COMMAND --help`; --pod and
     * --bash-completion print documents generated from every command's
     * description (tools/gendoc.c). */
    if (argc < 3)
      return print_main_help();
    if (strcmp(argv[2], "--pod") == 0)
      return cli_print_pod();
    if (strcmp(argv[2], "--bash-completion") == 0)
      return cli_print_bash_completion();
    const struct cli_command *cmd = find_command(argv[2]);
    if (!cmd) {
      cli_error(NULL, "unknown command '%s' (try 'vmdkit --help')", argv[2]);
      return 1;
    }
    char help_flag[] = "--help";
    char *help_argv[] = {argv[2], help_flag, NULL};
    return cmd->run(2, help_argv);
  }
  if (name[0] == '-') {
    cli_error(NULL, "unknown option '%s' (try 'vmdkit --help')", name);
    return 1;
  }

  const struct cli_command *cmd = find_command(name);
  if (!cmd) {
    cli_error(NULL, "unknown command '%s' (try 'vmdkit --help')", name);
    return 1;
  }
  return cmd->run(argc - 1, argv + 1);
}
