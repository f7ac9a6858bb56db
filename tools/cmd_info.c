/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit info: describe an image, laid out like `qemu-img info`. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_OUTPUT = CLI_OPT_FIRST, OPT_BACKING_CHAIN };

static int info_run(int argc, char **argv);

const struct cli_command cmd_info = {
    .name = "info",
    .summary = "show information about an image",
    .description =
        "Show the format, sizes and VMDK details (CIDs, create type, "
        "adapter, extents, backing file) of the image FILE.  The layout and "
        "the JSON keys follow 'qemu-img info'.  A streamOptimized extent also "
        "shows whether the stream is whole (JSON keys of the extent: "
        "\"stream\": \"complete\", \"no-end-of-stream\" or \"truncated\"; "
        "\"stream-grains\": the grains in it, or recovered from a truncated "
        "one; \"stream-damage\": what is missing, with the numbers).  A "
        "truncated stream is shown, not refused.",
    .options =
        (const struct cli_option[]){
            CLI_OPTION_FORMAT,
            {OPT_BACKING_CHAIN, "backing-chain", NULL, CLI_NONE, 0,
             "show every image of FILE's backing chain, FILE first (human: a "
             "blank line between images; json: an array)"},
            CLI_OPTION_OUTPUT(OPT_OUTPUT),
            CLI_OPTIONS_END,
        },
    .operands =
        (const struct cli_operand[]){{"FILE", CLI_FILE}, {NULL, CLI_NONE}},
    .run = info_run,
};

static bool is_vmdk(const struct vmdk_info *info) {
  return info->format && strcmp(info->format, "vmdk") == 0;
}

/* The backing file of one image, as qemu-img shows it. */
struct backing_desc {
  const char *hint;   /* parentFileNameHint, or NULL: no backing file */
  const char *full;   /* the path it resolves to from the image's name */
  const char *format; /* the backing's format, or NULL when unknown */
};

static void human_info(struct strbuf *sb, const char *file,
                       const struct vmdk_info *info,
                       const struct backing_desc *b) {
  char vs[32], ds[32];
  sb_printf(sb, "image: %s\n", file);
  sb_printf(sb, "file format: %s\n", info->format ? info->format : "");
  sb_printf(sb, "virtual size: %s (%" PRIu64 " bytes)\n",
            cli_human_size(vs, info->size_bytes), info->size_bytes);
  sb_printf(sb, "disk size: %s\n", cli_human_size(ds, info->actual_bytes));
  if (info->cluster_bytes)
    sb_printf(sb, "cluster_size: %" PRIu64 "\n", info->cluster_bytes);
  if (info->dirty)
    sb_puts(sb, "cleanly shut down: no\n");
  if (b->hint) {
    sb_printf(sb, "backing file: %s", b->hint);
    if (b->full && strcmp(b->full, b->hint) != 0)
      sb_printf(sb, " (actual path: %s)", b->full);
    sb_puts(sb, "\n");
    if (b->format)
      sb_printf(sb, "backing file format: %s\n", b->format);
  }
  if (!is_vmdk(info))
    return;

  sb_puts(sb, "Format specific information:\n");
  sb_printf(sb, "    cid: %" PRIu32 "\n", info->cid);
  sb_printf(sb, "    parent cid: %" PRIu32 "\n", info->parent_cid);
  sb_printf(sb, "    create type: %s\n",
            info->create_type ? info->create_type : "");
  if (info->adapter_type)
    sb_printf(sb, "    adapter type: %s\n", info->adapter_type);
  if (info->hw_version)
    sb_printf(sb, "    hw version: %s\n", info->hw_version);
  if (info->parent_hint)
    sb_printf(sb, "    parent filename hint: %s\n", info->parent_hint);
  sb_puts(sb, "    extents:\n");
  for (size_t i = 0; i < info->n_extents; i++) {
    const struct vmdk_extent_info *e = &info->extents[i];
    sb_printf(sb, "        [%zu]:\n", i);
    sb_printf(sb, "            virtual size: %" PRIu64 "\n", e->size_bytes);
    sb_printf(sb, "            filename: %s\n", e->filename ? e->filename : "");
    if (e->grain_bytes)
      sb_printf(sb, "            cluster size: %" PRIu64 "\n", e->grain_bytes);
    sb_printf(sb, "            format: %s\n", e->type ? e->type : "");
    sb_printf(sb, "            compressed: %s\n",
              e->compressed ? "true" : "false");
    sb_printf(sb, "            type: %s\n", e->type ? e->type : "");
    sb_printf(sb, "            access: %s\n", e->access ? e->access : "");
    if (e->grain_bytes) {
      sb_printf(sb, "            version: %u\n", e->version);
      sb_printf(sb, "            zeroed grain: %s\n",
                e->zeroed_grain ? "true" : "false");
    }
    if (e->stream) {
      sb_printf(sb, "            stream: %s, %" PRIu64 " grain%s%s\n",
                e->stream, e->stream_grains, e->stream_grains == 1 ? "" : "s",
                strcmp(e->stream, "truncated") == 0 ? " recovered" : "");
      if (e->stream_damage)
        sb_printf(sb, "            stream damage: %s\n", e->stream_damage);
    }
  }
}

/* One image as a JSON object: the top-level value, or an array element
 * with --backing-chain (qemu-img's key order). */
static void json_info(struct json *j, const char *file,
                      const struct vmdk_info *info,
                      const struct backing_desc *b) {
  json_open_object(j, NULL);
  if (b->hint && b->format)
    json_string(j, "backing-filename-format", b->format);
  json_uint(j, "virtual-size", info->size_bytes);
  json_string(j, "filename", file);
  if (info->cluster_bytes)
    json_uint(j, "cluster-size", info->cluster_bytes);
  json_string(j, "format", info->format);
  json_uint(j, "actual-size", info->actual_bytes);
  if (is_vmdk(info)) {
    json_open_object(j, "format-specific");
    json_string(j, "type", "vmdk");
    json_open_object(j, "data");
    json_uint(j, "cid", info->cid);
    json_uint(j, "parent-cid", info->parent_cid);
    json_string(j, "create-type", info->create_type);
    if (info->adapter_type)
      json_string(j, "adapter-type", info->adapter_type);
    if (info->hw_version)
      json_string(j, "hw-version", info->hw_version);
    if (info->parent_hint)
      json_string(j, "parent-filename-hint", info->parent_hint);
    json_open_array(j, "extents");
    for (size_t i = 0; i < info->n_extents; i++) {
      const struct vmdk_extent_info *e = &info->extents[i];
      json_open_object(j, NULL);
      json_uint(j, "virtual-size", e->size_bytes);
      json_string(j, "filename", e->filename);
      if (e->grain_bytes)
        json_uint(j, "cluster-size", e->grain_bytes);
      json_string(j, "format", e->type);
      json_bool(j, "compressed", e->compressed != 0);
      json_string(j, "type", e->type);
      json_string(j, "access", e->access);
      if (e->grain_bytes) {
        json_uint(j, "version", e->version);
        json_bool(j, "zeroed-grain", e->zeroed_grain != 0);
      }
      if (e->stream) {
        json_string(j, "stream", e->stream);
        json_uint(j, "stream-grains", e->stream_grains);
        if (e->stream_damage)
          json_string(j, "stream-damage", e->stream_damage);
      }
      json_close_object(j);
    }
    json_close_array(j);
    json_close_object(j); /* data */
    json_close_object(j); /* format-specific */
  }
  if (b->hint) {
    if (b->full)
      json_string(j, "full-backing-filename", b->full);
    json_string(j, "backing-filename", b->hint);
  }
  json_bool(j, "dirty-flag", info->dirty != 0);
  json_close_object(j);
}

static int info_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  bool chain = false;
  enum cli_output output = CLI_OUTPUT_HUMAN;
  int c;

  cli_parser_init(&parser, &cmd_info, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'f':
      if (cli_parse_format(optarg, &format) < 0)
        return 1;
      break;
    case OPT_OUTPUT:
      if (cli_parse_output(optarg, &output) < 0)
        return 1;
      break;
    case OPT_BACKING_CHAIN:
      chain = true;
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

  /* Salvaging: a truncated stream is described (what is missing), not
   * refused; the open is read-only. */
  struct vmdk_disk *disk =
      cli_open(file, format, cli_open_flags | VMDK_OPEN_SALVAGE);
  if (!disk) {
    cli_lib_error(file);
    return 1;
  }
  struct strbuf sb = STRBUF_INIT;
  struct json j;
  json_init(&j, &sb);
  if (output == CLI_OUTPUT_JSON && chain)
    json_open_array(&j, NULL);
  /* One image, or with --backing-chain each layer from the top down; NAME
   * is the layer's path as qemu-img shows it (owned). */
  /* A URL: the library's names (without credentials; parents resolved
   * against the URL). */
  bool url = strstr(vmdk_get_path(disk), "://") != NULL;
  char *name = strdup(url ? vmdk_get_path(disk) : file);
  bool failed = !name;
  if (!name)
    cli_error(NULL, "out of memory");
  for (struct vmdk_disk *d = disk; d && !failed;
       d = chain ? vmdk_get_backing(d) : NULL) {
    struct vmdk_info info, binfo;
    if (vmdk_get_info(d, &info) < 0) {
      cli_lib_error(name);
      failed = true;
      break;
    }
    /* BINFO is another handle's: INFO stays valid. */
    struct vmdk_disk *bd = vmdk_get_backing(d);
    struct backing_desc b = {.hint = info.parent_hint};
    if (b.hint && bd && vmdk_get_info(bd, &binfo) == 0)
      b.format = binfo.format;
    char *full = !b.hint       ? NULL
                 : url && bd ? strdup(vmdk_get_path(bd))
                             : cli_layer_name(name, b.hint);
    if (b.hint && !full) {
      cli_error(NULL, "out of memory");
      failed = true;
      break;
    }
    b.full = full;
    if (output == CLI_OUTPUT_JSON) {
      json_info(&j, name, &info, &b);
    } else {
      if (d != disk)
        sb_puts(&sb, "\n"); /* qemu-img: a blank line between images */
      human_info(&sb, name, &info, &b);
    }
    free(name);
    name = full;
  }
  free(name);
  if (output == CLI_OUTPUT_JSON) {
    if (chain)
      json_close_array(&j);
    sb_puts(&sb, "\n");
  }
  if (failed) {
    vmdk_close(disk);
    sb_free(&sb);
    return 1;
  }

  /* The strings of every layer's info belong to DISK: all is formatted
   * before closing. */
  int ret = 0;
  if (vmdk_close(disk) < 0) {
    cli_lib_error(file);
    ret = 1;
  } else if (sb_write_stdout(&sb) < 0) {
    ret = 1;
  }
  sb_free(&sb);
  return ret;
}
