/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit: command-line front end.  `vmdkit COMMAND [options] args...`
 * dispatches to cmd_COMMAND() (one file per command in tools/). */
#include "cli.h"

#include <stdio.h>
#include <sys/resource.h>
#include <string.h>

struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary; /* one line for `vmdkit --help` */
};

static const struct command commands[] = {
    {"create", cmd_create, "create a new image"},
    {"info", cmd_info, "show information about an image"},
    {"check", cmd_check, "check an image's metadata for corruption and leaks"},
    {"map", cmd_map, "show which parts of the disk are allocated, and where"},
    {"compare", cmd_compare, "compare the contents of two images"},
    {"convert", cmd_convert, "copy an image to a new raw or VMDK image"},
    {"read", cmd_read, "copy bytes of the virtual disk to stdout"},
    {"write", cmd_write, "write stdin into the virtual disk"},
    {"commit", cmd_commit, "write a child image's data into its backing file"},
    {"rebase", cmd_rebase, "change the backing file of an image"},
    {"resize", cmd_resize, "grow or shrink the virtual disk"},
    {"bench", cmd_bench, "time sequential reads or writes (as qemu-img bench)"},
    {"mount", cmd_mount, "show the virtual disk as a raw file (FUSE)"},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static int print_main_help(void) {
  struct strbuf sb = STRBUF_INIT;
  sb_puts(&sb, "Usage: vmdkit COMMAND [OPTIONS] ARGS...\n"
               "       vmdkit --version | --help\n"
               "\n"
               "Work with VMware virtual disks (VMDK) and raw images.\n"
               "\n"
               "Commands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++)
    sb_printf(&sb, "  %-9s %s\n", commands[i].name, commands[i].summary);
  sb_puts(&sb, "\n"
               "Run 'vmdkit COMMAND --help' for the options of a command.\n"
               "Sizes and offsets take the suffixes b, K, M, G, T, P, E "
               "(powers of 1024).\n");
  int ret = sb_write_stdout(&sb) == 0 ? 0 : 1;
  sb_free(&sb);
  return ret;
}

static const struct command *find_command(const char *name) {
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
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
    /* `vmdkit help COMMAND` is `vmdkit COMMAND --help`. */
    if (argc < 3)
      return print_main_help();
    const struct command *cmd = find_command(argv[2]);
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

  const struct command *cmd = find_command(name);
  if (!cmd) {
    cli_error(NULL, "unknown command '%s' (try 'vmdkit --help')", name);
    return 1;
  }
  return cmd->run(argc - 1, argv + 1);
}
