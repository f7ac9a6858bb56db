/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit ova SUBCOMMAND: OVA appliances.  This file owns the dispatch:
 *   ova create   vmdk_ova_create(): disks into a vSphere appliance
 *   ova verify   vmdk_ova_verify(): digests, order, OVF, disks
 *   ova info     cmd_ova_info (tools/cmd_ova_info.c), run as it is
 * One table (cmd_ova) describes create's and verify's options, so that
 * --help, the man page and the completion list them; the subcommand is the
 * first operand. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ova_run(int argc, char **argv);

/* Keys of the long-only options. */
enum {
  OPT_DISK = CLI_OPT_FIRST,
  OPT_NAME,
  OPT_CPUS,
  OPT_MEMORY,
  OPT_OS_TYPE,
  OPT_FIRMWARE,
  OPT_SECURE_BOOT,
  OPT_HW_VERSION,
  OPT_CONTROLLER,
  OPT_NETWORK,
  OPT_NIC,
  OPT_PROPERTY,
  OPT_PRODUCT,
  OPT_VENDOR,
  OPT_VERSION,
  OPT_ANNOTATION,
  OPT_OUTPUT,
};

static const struct cli_option ova_create_options[] = {
    {OPT_DISK, "disk", "DISK", CLI_FILE, CLI_REQUIRED,
     "a source image (any format vmdkit reads; repeat for more disks, the "
     "first is the boot disk)"},
    {OPT_NAME, "name", "NAME", CLI_TEXT, 0,
     "the VM's name (default: OUT's file name without .ova); the members are "
     "named after it"},
    {OPT_CPUS, "cpus", "N", CLI_NUMBER, 0, "virtual CPUs (default 2)"},
    {OPT_MEMORY, "memory", "MIB", CLI_SIZE, 0,
     "memory in MiB, or a size with a suffix (default 2048)"},
    {OPT_OS_TYPE, "os-type", "ID", CLI_TEXT, 0,
     "vSphere's guest OS id (default otherLinux64Guest)"},
    {OPT_FIRMWARE, "firmware", "FIRMWARE", CLI_TEXT, 0,
     "efi (default) or bios"},
    {OPT_SECURE_BOOT, "secure-boot", NULL, CLI_NONE, 0,
     "turn EFI secure boot on"},
    {OPT_HW_VERSION, "hw-version", "N", CLI_NUMBER, 0,
     "virtual hardware version, vmx-N (default 14)"},
    {OPT_CONTROLLER, "controller", "KIND", CLI_TEXT, 0,
     "the disks' controller: pvscsi (default), lsilogic, sata, nvme or ide"},
    {OPT_NETWORK, "network", "NAME", CLI_TEXT, 0,
     "the network of the NIC (default \"VM Network\")"},
    {OPT_NIC, "nic", "KIND", CLI_TEXT, 0,
     "the network adapter: vmxnet3 (default), e1000e or e1000"},
    {OPT_PROPERTY, "property", "PROPERTY", CLI_TEXT, 0,
     "KEY=VALUE: a user-configurable string property of the appliance "
     "(repeat for more)"},
    {OPT_PRODUCT, "product", "TEXT", CLI_TEXT, 0, "the product's name"},
    {OPT_VENDOR, "vendor", "TEXT", CLI_TEXT, 0, "the vendor's name"},
    {OPT_VERSION, "version", "TEXT", CLI_TEXT, 0, "the product's version"},
    {OPT_ANNOTATION, "annotation", "TEXT", CLI_TEXT, 0,
     "a description vSphere shows as the VM's notes"},
    {'p', NULL, NULL, CLI_NONE, 0, "show progress"},
    CLI_OPTION_OUTPUT(OPT_OUTPUT),
    CLI_OPTIONS_END,
};

#define OVA_DESCRIPTION                                                        \
  "Build and check OVA appliances (a tar of an OVF descriptor, its "           \
  "manifest and streamOptimized disks) for vSphere, ovftool and "              \
  "Workstation."                                                               \
  "\n\n"                                                                       \
  "ova create OUT.ova --disk DISK... converts every DISK (any image vmdkit "   \
  "reads: VMDK, raw, the QEMU formats, NBD) to streamOptimized, compressed "   \
  "on every core, straight into the archive: NAME.ovf first, then NAME.mf "   \
  "(the SHA-256 of the OVF and of every disk), then NAME-disk1.vmdk..., the " \
  "order vSphere requires.  The OVF is OVF 1.1 (DMTF DSP8023) with "          \
  "VMware's conventions (vmx-NN, vmw:osType, ovf:populatedSize, firmware "    \
  "as vmw:Config).  The defaults import as they are into vSphere 7 and 8 "    \
  "and Workstation: 2 CPUs, 2048 MiB, EFI, hardware version 14, a "           \
  "paravirtual SCSI controller and one vmxnet3 NIC on \"VM Network\".  The "  \
  "archive is written under a temporary name next to OUT.ova and renamed "   \
  "when it is complete and synced: after an error or Ctrl-C nothing is "      \
  "left and an existing OUT.ova is untouched.  --output=json prints the "     \
  "members with their offsets, sizes and SHA-256."                             \
  "\n\n"                                                                       \
  "ova verify FILE.ova checks an OVA: every tar header and member whole, the " \
  "OVF first and the manifest second, every digest of the manifest "          \
  "(SHA1, SHA256, SHA512) against the member's bytes, every member listed, "  \
  "the OVF well-formed with every file it names a member of the size it "    \
  "gives, and every disk whole (as vmdkit check) with the OVF's capacity.  "  \
  "Each problem is one line on stderr, \"vmdkit: FILE: what is wrong\", with " \
  "the numbers.  Exit status 0: the OVA is whole; 2: problems were found; "   \
  "1: it could not be checked."                                               \
  "\n\n"                                                                       \
  "ova info FILE.ova (or .ovf) shows what the OVF describes: run 'vmdkit ova " \
  "info --help' for its options."

const struct cli_command cmd_ova = {
    .name = "ova",
    .summary = "OVA appliances for vSphere: ova create, verify, info",
    .description = OVA_DESCRIPTION,
    .options = ova_create_options,
    .operands = (const struct cli_operand[]){{"create|verify", CLI_TEXT},
                                             {"FILE.ova", CLI_FILE},
                                             {NULL, CLI_NONE}},
    .run = ova_run,
};

/* A growing array of strings (--disk, --property). */
struct strv {
  const char **v;
  size_t n;
};

static int strv_add(struct strv *s, const char *x) {
  const char **v = realloc(s->v, (s->n + 1) * sizeof *v);
  if (!v) {
    cli_error(NULL, "out of memory");
    return -1;
  }
  v[s->n++] = x;
  s->v = v;
  return 0;
}

static void print_json(const char *out, const struct vmdk_ova_options *o,
                       const struct vmdk_ova_summary *s, struct strbuf *sb) {
  struct json j;
  json_init(&j, sb);
  json_open_object(&j, NULL);
  json_string(&j, "filename", out);
  json_uint(&j, "size", s->size_bytes);
  json_string(&j, "vm-name", s->vm_name);
  json_uint(&j, "cpus", s->cpus);
  json_uint(&j, "memory-mib", s->memory_mib);
  json_uint(&j, "hw-version", s->hw_version);
  json_string(&j, "os-type", s->os_type);
  json_string(&j, "firmware", o->firmware ? o->firmware : "efi");
  json_bool(&j, "secure-boot", o->secure_boot != 0);
  json_string(&j, "controller", o->controller ? o->controller : "pvscsi");
  json_string(&j, "network", o->network ? o->network : "VM Network");
  json_string(&j, "nic", o->nic ? o->nic : "vmxnet3");
  json_open_array(&j, "members");
  for (size_t i = 0; i < s->n_members; i++) {
    const struct vmdk_ova_member *m = &s->members[i];
    json_open_object(&j, NULL);
    json_string(&j, "name", m->name);
    json_uint(&j, "offset", m->offset_bytes);
    json_uint(&j, "size", m->size_bytes);
    json_string(&j, "sha256", m->sha256);
    if (m->source) {
      json_string(&j, "source", m->source);
      json_uint(&j, "capacity", m->capacity_bytes);
      json_uint(&j, "populated-size", m->populated_bytes);
    }
    json_close_object(&j);
  }
  json_close_array(&j);
  json_close_object(&j);
  sb_puts(sb, "\n");
}

static void print_human(const char *out, const struct vmdk_ova_options *o,
                        const struct vmdk_ova_summary *s, struct strbuf *sb) {
  char a[32], b[32], c[32];
  sb_printf(sb, "%s: %s, VM \"%s\": %u CPUs, %" PRIu64 " MiB, vmx-%02u, %s%s, "
                "%s, %s on \"%s\", guest %s\n",
            out, cli_human_size(a, s->size_bytes), s->vm_name, s->cpus,
            s->memory_mib, s->hw_version, o->firmware ? o->firmware : "efi",
            o->secure_boot ? " (secure boot)" : "",
            o->controller ? o->controller : "pvscsi", o->nic ? o->nic : "vmxnet3",
            o->network ? o->network : "VM Network", s->os_type);
  for (size_t i = 0; i < s->n_members; i++) {
    const struct vmdk_ova_member *m = &s->members[i];
    sb_printf(sb, "  %-24s %10s", m->name, cli_human_size(a, m->size_bytes));
    if (m->source)
      sb_printf(sb, "  from %s (%s, %s populated)", m->source,
                cli_human_size(b, m->capacity_bytes),
                cli_human_size(c, m->populated_bytes));
    sb_printf(sb, "\n");
  }
}

static void print_problem(void *opaque, enum vmdk_problem_kind kind,
                          const char *message) {
  (void)opaque;
  if (kind == VMDK_PROBLEM_CORRUPT)
    cli_error(NULL, "%s", message);
  else
    cli_error(NULL, "warning: %s", message);
}

/* `ova verify FILE`: 0 whole, 2 problems (one line each), 1 not checked. */
static int ova_verify(const char *file, enum cli_output output) {
  int n = vmdk_ova_verify(file, print_problem, NULL);
  if (n < 0) {
    cli_lib_error(file);
    return 1;
  }
  struct strbuf sb = STRBUF_INIT;
  if (output == CLI_OUTPUT_JSON) {
    struct json j;
    json_init(&j, &sb);
    json_open_object(&j, NULL);
    json_string(&j, "filename", file);
    json_uint(&j, "problems", (uint64_t)n);
    json_bool(&j, "ok", n == 0);
    json_close_object(&j);
    sb_puts(&sb, "\n");
  } else if (n == 0) {
    sb_printf(&sb, "%s: OK: archive, manifest digests, OVF and disks\n",
              file);
  }
  int ret = sb.len && sb_write_stdout(&sb) != 0 ? 1 : n ? 2 : 0;
  sb_free(&sb);
  return ret;
}

/* `vmdkit ova [OPTIONS] create|verify [OPTIONS] FILE` (getopt moves the
 * operands after the options, so they may come in any order); `vmdkit ova
 * info ...` is cmd_ova_info's own. */
static int ova_run(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "info") == 0)
    return cmd_ova_info.run(argc - 1, argv + 1);
  struct cli_parser parser;
  struct vmdk_ova_options o = {0};
  struct strv disks = {0}, props = {0};
  enum cli_output output = CLI_OUTPUT_HUMAN;
  bool progress = false;
  uint64_t v;
  int c, ret = 1;
  int create_only = 0; /* the key of an option verify does not take */

  cli_parser_init(&parser, &cmd_ova, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    if (c != OPT_OUTPUT)
      create_only = c;
    switch (c) {
    case OPT_DISK:
      if (strv_add(&disks, optarg) < 0)
        goto out;
      break;
    case OPT_NAME:
      o.name = optarg;
      break;
    case OPT_CPUS:
      if (cli_parse_uint("CPU count", optarg, 1, 768, &v) < 0)
        goto out;
      o.cpus = (unsigned)v;
      break;
    case OPT_MEMORY:
      if (strspn(optarg, "0123456789") == strlen(optarg) && *optarg) {
        if (cli_parse_uint("memory (MiB)", optarg, 4, (uint64_t)24 << 20,
                           &v) < 0)
          goto out;
        o.memory_mib = v;
      } else {
        if (cli_parse_size("memory", optarg, &v) < 0)
          goto out;
        if (v % MiB || v < 4 * MiB) {
          cli_usage_error(cmd_ova.name, "memory %s is not a whole number of MiB "
                                   "(at least 4)",
                          optarg);
          goto out;
        }
        o.memory_mib = v / MiB;
      }
      break;
    case OPT_OS_TYPE:
      o.os_type = optarg;
      break;
    case OPT_FIRMWARE:
      o.firmware = optarg;
      break;
    case OPT_SECURE_BOOT:
      o.secure_boot = 1;
      break;
    case OPT_HW_VERSION:
      if (cli_parse_uint("hardware version", optarg, 4, 99, &v) < 0)
        goto out;
      o.hw_version = (unsigned)v;
      break;
    case OPT_CONTROLLER:
      o.controller = optarg;
      break;
    case OPT_NETWORK:
      o.network = optarg;
      break;
    case OPT_NIC:
      o.nic = optarg;
      break;
    case OPT_PROPERTY:
      if (strv_add(&props, optarg) < 0)
        goto out;
      break;
    case OPT_PRODUCT:
      o.product = optarg;
      break;
    case OPT_VENDOR:
      o.vendor = optarg;
      break;
    case OPT_VERSION:
      o.version = optarg;
      break;
    case OPT_ANNOTATION:
      o.annotation = optarg;
      break;
    case 'p':
      progress = true;
      break;
    case OPT_OUTPUT:
      if (cli_parse_output(optarg, &output) < 0)
        goto out;
      break;
    default:
      ret = cli_unhandled(&parser, c);
      goto out;
    }
  }
  if (c < 0) {
    ret = parser.status;
    goto out;
  }
  if (optind >= argc) {
    cli_usage_error(cmd_ova.name, "expected a subcommand: create, verify or "
                                  "info");
    goto out;
  }
  bool verify = strcmp(argv[optind], "verify") == 0;
  if (!verify && strcmp(argv[optind], "create") != 0) {
    cli_usage_error(cmd_ova.name, "unknown subcommand '%s' (create, verify "
                                  "or info)",
                    argv[optind]);
    goto out;
  }
  if (argc - optind != 2) {
    cli_usage_error(cmd_ova.name, "%s: expected one %s", argv[optind],
                    verify ? "FILE.ova" : "OUT.ova");
    goto out;
  }
  if (verify) {
    const struct cli_option *opt = ova_create_options;
    while (opt->key && opt->key != create_only)
      opt++;
    if (create_only && opt->long_name)
      cli_usage_error(cmd_ova.name, "verify: --%s is an option of ova "
                                    "create",
                      opt->long_name);
    else if (create_only)
      cli_usage_error(cmd_ova.name, "verify: -%c is an option of ova create",
                      create_only);
    else
      ret = ova_verify(argv[optind + 1], output);
    goto out;
  }
  if (!disks.n) {
    cli_usage_error(cmd_ova.name, "no --disk given");
    goto out;
  }
  const char *file = argv[optind + 1];
  o.disks = disks.v;
  o.n_disks = disks.n;
  o.properties = props.v;
  o.n_properties = props.n;
  o.open_flags = cli_open_flags;

  struct cli_progress pr;
  progress_start(&pr, progress);
  cli_catch_interrupts();
  struct vmdk_ova_summary *s = NULL;
  int r = vmdk_ova_create(file, &o, cli_progress_cb, &pr, &s);
  progress_end(&pr, r == 0);
  if (r != 0) {
    if (cli_interrupted())
      cli_error(file, "interrupted");
    else
      cli_lib_error(file);
    goto out;
  }
  struct strbuf sb = STRBUF_INIT;
  if (output == CLI_OUTPUT_JSON)
    print_json(file, &o, s, &sb);
  else
    print_human(file, &o, s, &sb);
  ret = sb_write_stdout(&sb) == 0 ? 0 : 1;
  sb_free(&sb);
  vmdk_ova_summary_free(s);
out:
  free(disks.v);
  free(props.v);
  return ret;
}
