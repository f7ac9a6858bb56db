/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit ova info: what an appliance's OVF says (vmdk_ovf_read).  Reached
 * as `vmdkit ova info`, through the `ova` command (tools/cmd_ova.c). */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_OUTPUT = CLI_OPT_FIRST };

static int ova_info_run(int argc, char **argv);

const struct cli_command cmd_ova_info = {
    .name = "ova info",
    .summary = "show what an appliance's OVF describes",
    .description =
        "Show the virtual machine that the OVF of FILE (an OVA, or an OVF "
        "file) describes: its name, CPUs, memory, firmware, OS type, "
        "networks, and each disk with its file, capacity, populated size and "
        "the controller it is attached to.  For an OVA, every disk file the "
        "OVF names must be a member of the archive.  JSON keys: \"name\", "
        "\"ovf-version\", \"cpus\", \"memory-mib\", \"firmware\", "
        "\"os-type\", \"os-id\", \"networks\" (\"name\", \"description\"), "
        "\"disks\" (\"id\", \"file\", \"file-size\", \"capacity\", "
        "\"populated-size\", \"format\", \"controller\", "
        "\"controller-model\", \"unit\"); a key is left out when the OVF "
        "does not give it.  The disks themselves are read by the other "
        "commands: 'vmdkit info FILE.ova' (the first disk), 'vmdkit info "
        "FILE.ova:NAME.vmdk'.",
    .options =
        (const struct cli_option[]){
            CLI_OPTION_OUTPUT(OPT_OUTPUT),
            CLI_OPTIONS_END,
        },
    .operands =
        (const struct cli_operand[]){{"FILE", CLI_FILE}, {NULL, CLI_NONE}},
    .run = ova_info_run,
};

static const char *or_dash(const char *s) {
  return s ? s : "-";
}

static void human(struct strbuf *sb, const char *file,
                  const struct vmdk_ovf *o) {
  char a[32], b[32];
  sb_printf(sb, "appliance: %s\n", file);
  sb_printf(sb, "name: %s\n", or_dash(o->name));
  sb_printf(sb, "ovf version: %d.x\n", o->ovf_version);
  if (o->cpus)
    sb_printf(sb, "cpus: %u\n", o->cpus);
  else
    sb_puts(sb, "cpus: -\n");
  if (o->memory_mib)
    sb_printf(sb, "memory: %" PRIu64 " MiB\n", o->memory_mib);
  else
    sb_puts(sb, "memory: -\n");
  sb_printf(sb, "firmware: %s\n", or_dash(o->firmware));
  sb_printf(sb, "os type: %s", or_dash(o->os_type));
  if (o->os_id >= 0)
    sb_printf(sb, " (ovf:id %d)", o->os_id);
  sb_puts(sb, "\n");
  sb_printf(sb, "networks: %zu\n", o->n_networks);
  for (size_t i = 0; i < o->n_networks; i++) {
    sb_printf(sb, "    [%zu]: %s", i, o->networks[i].name);
    if (o->networks[i].description)
      sb_printf(sb, " (%s)", o->networks[i].description);
    sb_puts(sb, "\n");
  }
  sb_printf(sb, "disks: %zu\n", o->n_disks);
  for (size_t i = 0; i < o->n_disks; i++) {
    const struct vmdk_ovf_disk *d = &o->disks[i];
    sb_printf(sb, "    [%zu]:\n", i);
    sb_printf(sb, "        id: %s\n", d->id);
    sb_printf(sb, "        file: %s\n", or_dash(d->file));
    sb_printf(sb, "        capacity: %s (%" PRIu64 " bytes)\n",
              cli_human_size(a, d->capacity_bytes), d->capacity_bytes);
    if (d->populated_bytes >= 0)
      sb_printf(sb, "        populated size: %s (%" PRId64 " bytes)\n",
                cli_human_size(b, (uint64_t)d->populated_bytes),
                d->populated_bytes);
    else
      sb_puts(sb, "        populated size: -\n");
    sb_printf(sb, "        controller: %s", or_dash(d->controller));
    if (d->controller_model)
      sb_printf(sb, " (%s)", d->controller_model);
    if (d->unit >= 0)
      sb_printf(sb, ", unit %d", d->unit);
    sb_puts(sb, "\n");
  }
}

static void json(struct json *j, const struct vmdk_ovf *o) {
  json_open_object(j, NULL);
  if (o->name)
    json_string(j, "name", o->name);
  json_uint(j, "ovf-version", (uint64_t)o->ovf_version);
  if (o->cpus)
    json_uint(j, "cpus", o->cpus);
  if (o->memory_mib)
    json_uint(j, "memory-mib", o->memory_mib);
  if (o->firmware)
    json_string(j, "firmware", o->firmware);
  if (o->os_type)
    json_string(j, "os-type", o->os_type);
  if (o->os_id >= 0)
    json_uint(j, "os-id", (uint64_t)o->os_id);
  json_open_array(j, "networks");
  for (size_t i = 0; i < o->n_networks; i++) {
    json_open_object(j, NULL);
    json_string(j, "name", o->networks[i].name);
    if (o->networks[i].description)
      json_string(j, "description", o->networks[i].description);
    json_close_object(j);
  }
  json_close_array(j);
  json_open_array(j, "disks");
  for (size_t i = 0; i < o->n_disks; i++) {
    const struct vmdk_ovf_disk *d = &o->disks[i];
    json_open_object(j, NULL);
    json_string(j, "id", d->id);
    if (d->file)
      json_string(j, "file", d->file);
    if (d->file_bytes)
      json_uint(j, "file-size", d->file_bytes);
    json_uint(j, "capacity", d->capacity_bytes);
    if (d->populated_bytes >= 0)
      json_uint(j, "populated-size", (uint64_t)d->populated_bytes);
    if (d->format)
      json_string(j, "format", d->format);
    if (d->controller)
      json_string(j, "controller", d->controller);
    if (d->controller_model)
      json_string(j, "controller-model", d->controller_model);
    if (d->unit >= 0)
      json_uint(j, "unit", (uint64_t)d->unit);
    json_close_object(j);
  }
  json_close_array(j);
  json_close_object(j);
}

static int ova_info_run(int argc, char **argv) {
  struct cli_parser parser;
  enum cli_output output = CLI_OUTPUT_HUMAN;
  int c;
  cli_parser_init(&parser, &cmd_ova_info, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
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
  struct vmdk_ovf *o = vmdk_ovf_read(file);
  if (!o) {
    cli_lib_error(file);
    return 1;
  }
  struct strbuf sb = STRBUF_INIT;
  if (output == CLI_OUTPUT_JSON) {
    struct json j;
    json_init(&j, &sb);
    json(&j, o);
    sb_puts(&sb, "\n");
  } else {
    human(&sb, file, o);
  }
  vmdk_ovf_free(o);
  int ret = sb_write_stdout(&sb) < 0 ? 1 : 0;
  sb_free(&sb);
  return ret;
}
