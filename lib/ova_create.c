/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_ova_create: an OVA (a tar of an OVF, its manifest and
 * streamOptimized disks) that vSphere, ovftool and Workstation import.
 *
 * Layout (ustar, 512-byte blocks; the order vSphere requires):
 *
 *   [hdr NAME.ovf][OVF, OVF_RESERVED bytes]      <- written last
 *   [hdr NAME.mf ][manifest, MF_BYTES]           <- written last
 *   [hdr NAME-disk1.vmdk][stream ...][pad]       <- disk 1, in place
 *   ...
 *   [two zero blocks][zeros to a 10240-byte record]
 *
 * Write ordering (the contract):
 *  1. Every source is opened (read-only) and every option checked before
 *     any file is made.
 *  2. The archive is written to a fresh temporary file in OUT's folder
 *     (".OUT.XXXXXXXX.tmp", O_EXCL, mode 0666 & ~umask).  Nothing is ever
 *     written to OUT itself.
 *  3. The OVF's and the manifest's places are reserved (left as a hole):
 *     the manifest's length is known in advance (fixed-width hex digests),
 *     the OVF's is the length of the same OVF with every number not known
 *     yet (file sizes, populated sizes) at its widest, 20 digits.  The
 *     real OVF is padded to that length with trailing white space (XML
 *     allows it after the root element; the digest covers the padding).
 *  4. Each disk is converted straight into its member: a streamOptimized
 *     disk (lib/extent_stream.c, compressed on every core) laid out in a
 *     writable window of the archive (vf_append_window) that starts after
 *     the member's header block.  The window never syncs.  Once the disk
 *     is closed, the member's length is the file's length past the window
 *     (the stream cuts the file at its end-of-stream marker), its SHA-256
 *     is computed by reading the member back (the stream writer rewrites
 *     its header and trailing metadata as it goes, so the bytes are final
 *     only at its close; they are still in the page cache), and then its
 *     header block is written.
 *  5. Then the end-of-archive blocks (the file's length is set: a hole
 *     reads as zeros), the OVF (now with the real numbers), the manifest
 *     (SHA256 of the OVF and of every disk) and their headers.
 *  6. One fdatasync of the archive, rename onto OUT, fsync of the folder.
 *     Any failure before the rename (or a cancel through the progress
 *     callback) removes the temporary file: OUT is either untouched or the
 *     whole new archive.
 *
 * Tar headers are POSIX ustar ("ustar\0" "00"); a member of 8 GiB or more
 * has its size in GNU's base-256 form, which GNU tar, bsdtar, Python's
 * tarfile and vSphere read. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libxml/xmlwriter.h>
#include <openssl/evp.h>

#include "internal.h"

#define BLOCK 512u
#define RECORD 10240u /* tar's default record: 20 blocks */
#define HASH_CHUNK ((size_t)1 << 20)
#define MAX_MEMBER_NAME 100 /* a ustar name field, without a prefix */
#define SHA256_HEX 64

/* The OVF 1.x namespaces, and VMware's. */
#define NS_OVF "http://schemas.dmtf.org/ovf/envelope/1"
#define NS_CIM "http://schemas.dmtf.org/wbem/wscim/1/common"
#define NS_RASD                                                                \
  "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"                         \
  "CIM_ResourceAllocationSettingData"
#define NS_VSSD                                                                \
  "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"                         \
  "CIM_VirtualSystemSettingData"
#define NS_VMW "http://www.vmware.com/schema/ovf"
#define NS_XSI "http://www.w3.org/2001/XMLSchema-instance"
#define STREAM_FORMAT_URL                                                      \
  "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

/* ---- choices and their vSphere names ------------------------------------ */

/* Disk controllers: the CIM resource type and VMware's sub-type (what
 * ovftool writes and vSphere reads), the adapter type the disks'
 * descriptors name, and how many disks one controller takes here. */
struct controller {
  const char *name;     /* --controller */
  unsigned resource_type;
  const char *subtype;  /* rasd:ResourceSubType, NULL: none (IDE) */
  const char *label;    /* rasd:ElementName */
  const char *adapter;  /* the VMDK descriptor's ddb.adapterType */
  unsigned max_disks;
};
static const struct controller controllers[] = {
    {"pvscsi", 6, "VirtualSCSI", "SCSI Controller 0", "lsilogic", 15},
    {"lsilogic", 6, "lsilogic", "SCSI Controller 0", "lsilogic", 15},
    {"sata", 20, "vmware.sata.ahci", "SATA Controller 0", "lsilogic", 30},
    {"nvme", 20, "vmware.nvme.controller", "NVMe Controller 0", "lsilogic",
     15},
    {"ide", 5, NULL, "IDE Controller 0", "ide", 2},
};

struct nic {
  const char *name;    /* --nic */
  const char *subtype; /* rasd:ResourceSubType */
};
static const struct nic nics[] = {
    {"vmxnet3", "VmxNet3"}, {"e1000e", "E1000e"}, {"e1000", "E1000"}};

/* The CIM_OperatingSystem.OsType value of a guest id, for OVF readers
 * other than vSphere (which reads vmw:osType): only the families whose
 * value is clear, else "Other" / "Other 64-Bit". */
static unsigned cim_os_type(const char *guest) {
  bool is64 = strstr(guest, "64") != NULL;
  if (strncmp(guest, "ubuntu", 6) == 0)
    return is64 ? 94 : 93; /* Ubuntu (64-Bit) */
  if (strncmp(guest, "debian", 6) == 0)
    return is64 ? 96 : 95; /* Debian (64-Bit) */
  if (strstr(guest, "Linux") || strstr(guest, "linux"))
    return is64 ? 101 : 36; /* Linux 64-Bit, LINUX */
  return is64 ? 102 : 1;   /* Other 64-Bit, Other */
}

/* ---- the plan: options checked, names chosen ---------------------------- */

struct disk_out {
  struct vmdk_disk *src;      /* the source, open read-only */
  const char *src_path;
  char member[MAX_MEMBER_NAME + 32]; /* BASE "-diskN.vmdk" */
  uint64_t capacity_bytes;    /* the source's size, rounded up to 512 */
  uint64_t header_offset;     /* bytes: its header block in the archive */
  uint64_t size_bytes;        /* its member's length (once written) */
  uint64_t populated_bytes;   /* grains stored * grain size, at most the
                                 capacity (ovf:populatedSize) */
  char sha256[SHA256_HEX + 1];
};

struct plan {
  const struct vmdk_ova_options *o;
  const char *out;
  char vm_name[256];
  char base[MAX_MEMBER_NAME + 1]; /* member name stem */
  /* BASE is cut to 64 bytes (stem_of): these always fit; the room is
   * there so that GCC can tell (-Wformat-truncation at -O0). */
  char ovf_name[MAX_MEMBER_NAME + 8], mf_name[MAX_MEMBER_NAME + 8];
  const struct controller *ctl;
  const struct nic *nic;
  const char *os_type, *network, *firmware;
  unsigned cpus, hw_version;
  uint64_t memory_mib;
  size_t n_disks;
  struct disk_out *disks;
  size_t ovf_reserved;        /* bytes of the OVF member */
  size_t mf_bytes;            /* bytes of the manifest */
  char ovf_sha256[SHA256_HEX + 1], mf_sha256[SHA256_HEX + 1];
  uint64_t total_bytes;       /* the archive's length */
};

/* A file name stem from the VM name: [A-Za-z0-9._-] kept, anything else
 * '_', at most LEN bytes. */
static void stem_of(const char *name, char *out, size_t len) {
  size_t n = 0;
  for (const char *p = name; *p && n < len; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    out[n++] = ok ? c : '_';
  }
  out[n] = '\0';
  if (n == 0 || out[0] == '.')
    out[0] = n == 0 ? (out[1] = '\0', 'v') : '_';
}

static int check_options(struct plan *p, const char *out,
                         const struct vmdk_ova_options *o) {
  p->o = o;
  p->out = out;
  if (!o->n_disks)
    return set_error(EINVAL, "%s: an OVA needs at least one disk", out);
  p->cpus = o->cpus ? o->cpus : 2;
  if (p->cpus > 768)
    return set_error(EINVAL, "%s: %u CPUs: vSphere takes 1 to 768", out,
                     p->cpus);
  p->memory_mib = o->memory_mib ? o->memory_mib : 2048;
  if (p->memory_mib < 4 || p->memory_mib > ((uint64_t)24 << 20) ||
      p->memory_mib % 4)
    return set_error(EINVAL, "%s: memory of %" PRIu64 " MiB: vSphere takes "
                             "a multiple of 4 MiB from 4 MiB to 24 TiB",
                     out, p->memory_mib);
  p->hw_version = o->hw_version ? o->hw_version : 14;
  if (p->hw_version < 4 || p->hw_version > 99)
    return set_error(EINVAL, "%s: hardware version %u: vmx-04 to vmx-99",
                     out, p->hw_version);
  p->firmware = o->firmware ? o->firmware : "efi";
  if (strcmp(p->firmware, "efi") != 0 && strcmp(p->firmware, "bios") != 0)
    return set_error(EINVAL, "%s: firmware \"%s\": efi or bios", out,
                     p->firmware);
  if (o->secure_boot && strcmp(p->firmware, "efi") != 0)
    return set_error(EINVAL, "%s: secure boot needs EFI firmware", out);
  const char *ctl = o->controller ? o->controller : "pvscsi";
  for (size_t i = 0; i < sizeof controllers / sizeof *controllers; i++)
    if (strcmp(ctl, controllers[i].name) == 0)
      p->ctl = &controllers[i];
  if (!p->ctl)
    return set_error(EINVAL, "%s: controller \"%s\": pvscsi, lsilogic, "
                             "sata, nvme or ide",
                     out, ctl);
  if (strcmp(p->ctl->name, "nvme") == 0 && p->hw_version < 13)
    return set_error(EINVAL, "%s: an NVMe controller needs hardware version "
                             "13 or later (got %u)",
                     out, p->hw_version);
  if (o->n_disks > p->ctl->max_disks)
    return set_error(EINVAL, "%s: %zu disks: one %s controller takes at "
                             "most %u",
                     out, o->n_disks, p->ctl->name, p->ctl->max_disks);
  const char *nic = o->nic ? o->nic : "vmxnet3";
  for (size_t i = 0; i < sizeof nics / sizeof *nics; i++)
    if (strcmp(nic, nics[i].name) == 0)
      p->nic = &nics[i];
  if (!p->nic)
    return set_error(EINVAL, "%s: network adapter \"%s\": vmxnet3, e1000e "
                             "or e1000",
                     out, nic);
  p->network = o->network ? o->network : "VM Network";
  if (!*p->network)
    return set_error(EINVAL, "%s: the network name is empty", out);
  p->os_type = o->os_type ? o->os_type : "otherLinux64Guest";
  for (const char *c = p->os_type; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
      return set_error(EINVAL, "%s: guest OS id \"%s\": letters, digits, "
                               "'_' and '-' only (e.g. otherLinux64Guest)",
                       out, p->os_type);
  if (!*p->os_type)
    return set_error(EINVAL, "%s: the guest OS id is empty", out);
  for (size_t i = 0; i < o->n_properties; i++) {
    const char *kv = o->properties[i], *eq = strchr(kv, '=');
    if (!eq || eq == kv)
      return set_error(EINVAL, "%s: property \"%s\": KEY=VALUE with a "
                               "non-empty KEY",
                       out, kv);
    for (const char *c = kv; c < eq; c++)
      if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
            (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' ||
            *c == '.'))
        return set_error(EINVAL, "%s: property key \"%.*s\": letters, "
                                 "digits, '.', '_' and '-' only",
                         out, (int)(eq - kv), kv);
  }
  if (o->compression_level < 0 || o->compression_level > 12)
    return set_error(EINVAL, "%s: compression level %d is out of range (1 "
                             "to 12)",
                     out, o->compression_level);

  /* The VM's name: as given, else OUT's file name without ".ova". */
  if (o->name) {
    if (!*o->name || strlen(o->name) >= sizeof p->vm_name)
      return set_error(EINVAL, "%s: the VM name must be 1 to %zu bytes", out,
                       sizeof p->vm_name - 1);
    snprintf(p->vm_name, sizeof p->vm_name, "%s", o->name);
  } else {
    const char *b = strrchr(out, '/');
    b = b ? b + 1 : out;
    size_t n = strlen(b);
    if (n > 4 && strcasecmp(b + n - 4, ".ova") == 0)
      n -= 4;
    if (n >= sizeof p->vm_name)
      n = sizeof p->vm_name - 1;
    memcpy(p->vm_name, b, n);
    p->vm_name[n] = '\0';
    if (!n)
      snprintf(p->vm_name, sizeof p->vm_name, "vm");
  }
  stem_of(p->vm_name, p->base, 64);
  snprintf(p->ovf_name, sizeof p->ovf_name, "%s.ovf", p->base);
  snprintf(p->mf_name, sizeof p->mf_name, "%s.mf", p->base);
  return 0;
}

/* ---- the OVF (libxml2's xmlTextWriter: escaping is its job) ------------- */

/* The numbers not known before the disks are written: a plan whose disks
 * have no sizes yet gets the widest value, so that the OVF written then is
 * the longest the real one can be. */
static uint64_t or_widest(uint64_t v, bool known) {
  return known ? v : UINT64_MAX;
}

static int w_elem(xmlTextWriterPtr w, const char *name, const char *text) {
  return xmlTextWriterWriteElement(w, BAD_CAST name, BAD_CAST text);
}

static int w_attr(xmlTextWriterPtr w, const char *name, const char *value) {
  return xmlTextWriterWriteAttribute(w, BAD_CAST name, BAD_CAST value);
}

static int w_attr_u64(xmlTextWriterPtr w, const char *name, uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "%" PRIu64, v);
  return w_attr(w, name, buf);
}

static int w_elem_u64(xmlTextWriterPtr w, const char *name, uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "%" PRIu64, v);
  return w_elem(w, name, buf);
}

/* One rasd:Item; the rasd elements must come in the schema's (alphabetical)
 * order, which the fields here follow.  NULL/0: left out. */
struct item {
  const char *address, *address_on_parent, *allocation_units;
  bool automatic_allocation;
  const char *connection, *description, *element_name, *host_resource;
  unsigned instance_id, parent;
  const char *resource_subtype;
  unsigned resource_type;
  uint64_t virtual_quantity;
};

static int w_item(xmlTextWriterPtr w, const struct item *it) {
  int r = xmlTextWriterStartElement(w, BAD_CAST "Item");
  if (r >= 0 && it->address)
    r = w_elem(w, "rasd:Address", it->address);
  if (r >= 0 && it->address_on_parent)
    r = w_elem(w, "rasd:AddressOnParent", it->address_on_parent);
  if (r >= 0 && it->allocation_units)
    r = w_elem(w, "rasd:AllocationUnits", it->allocation_units);
  if (r >= 0 && it->automatic_allocation)
    r = w_elem(w, "rasd:AutomaticAllocation", "true");
  if (r >= 0 && it->connection)
    r = w_elem(w, "rasd:Connection", it->connection);
  if (r >= 0 && it->description)
    r = w_elem(w, "rasd:Description", it->description);
  if (r >= 0)
    r = w_elem(w, "rasd:ElementName", it->element_name);
  if (r >= 0 && it->host_resource)
    r = w_elem(w, "rasd:HostResource", it->host_resource);
  if (r >= 0)
    r = w_elem_u64(w, "rasd:InstanceID", it->instance_id);
  if (r >= 0 && it->parent)
    r = w_elem_u64(w, "rasd:Parent", it->parent);
  if (r >= 0 && it->resource_subtype)
    r = w_elem(w, "rasd:ResourceSubType", it->resource_subtype);
  if (r >= 0)
    r = w_elem_u64(w, "rasd:ResourceType", it->resource_type);
  if (r >= 0 && it->virtual_quantity)
    r = w_elem_u64(w, "rasd:VirtualQuantity", it->virtual_quantity);
  if (r >= 0)
    r = xmlTextWriterEndElement(w);
  return r;
}

static int w_config(xmlTextWriterPtr w, const char *key, const char *value) {
  int r = xmlTextWriterStartElement(w, BAD_CAST "vmw:Config");
  if (r >= 0)
    r = w_attr(w, "ovf:required", "false");
  if (r >= 0)
    r = w_attr(w, "vmw:key", key);
  if (r >= 0)
    r = w_attr(w, "vmw:value", value);
  if (r >= 0)
    r = xmlTextWriterEndElement(w);
  return r;
}

static int w_section(xmlTextWriterPtr w, const char *name, const char *info) {
  int r = xmlTextWriterStartElement(w, BAD_CAST name);
  return r >= 0 ? w_elem(w, "Info", info) : r;
}

/* The body of the OVF; KNOWN: the disks' sizes are known.  libxml2's
 * writer calls return < 0 on failure. */
static int write_envelope(xmlTextWriterPtr w, const struct plan *p,
                          bool known) {
  const struct vmdk_ova_options *o = p->o;
  char buf[512];
  int r = xmlTextWriterStartDocument(w, "1.0", "UTF-8", NULL);
  if (r >= 0)
    r = xmlTextWriterStartElement(w, BAD_CAST "Envelope");
  const char *ns[][2] = {{"xmlns", NS_OVF},        {"xmlns:cim", NS_CIM},
                         {"xmlns:ovf", NS_OVF},    {"xmlns:rasd", NS_RASD},
                         {"xmlns:vmw", NS_VMW},    {"xmlns:vssd", NS_VSSD},
                         {"xmlns:xsi", NS_XSI}};
  for (size_t i = 0; r >= 0 && i < sizeof ns / sizeof *ns; i++)
    r = w_attr(w, ns[i][0], ns[i][1]);

  /* References: one File per disk. */
  if (r >= 0)
    r = xmlTextWriterStartElement(w, BAD_CAST "References");
  for (size_t i = 0; r >= 0 && i < p->n_disks; i++) {
    r = xmlTextWriterStartElement(w, BAD_CAST "File");
    snprintf(buf, sizeof buf, "file%zu", i + 1);
    if (r >= 0)
      r = w_attr(w, "ovf:href", p->disks[i].member);
    if (r >= 0)
      r = w_attr(w, "ovf:id", buf);
    if (r >= 0)
      r = w_attr_u64(w, "ovf:size", or_widest(p->disks[i].size_bytes, known));
    if (r >= 0)
      r = xmlTextWriterEndElement(w);
  }
  if (r >= 0)
    r = xmlTextWriterEndElement(w);

  /* DiskSection: capacities in bytes, streamOptimized. */
  if (r >= 0)
    r = w_section(w, "DiskSection", "Virtual disk information");
  for (size_t i = 0; r >= 0 && i < p->n_disks; i++) {
    r = xmlTextWriterStartElement(w, BAD_CAST "Disk");
    if (r >= 0)
      r = w_attr_u64(w, "ovf:capacity", p->disks[i].capacity_bytes);
    if (r >= 0)
      r = w_attr(w, "ovf:capacityAllocationUnits", "byte");
    snprintf(buf, sizeof buf, "vmdisk%zu", i + 1);
    if (r >= 0)
      r = w_attr(w, "ovf:diskId", buf);
    snprintf(buf, sizeof buf, "file%zu", i + 1);
    if (r >= 0)
      r = w_attr(w, "ovf:fileRef", buf);
    if (r >= 0)
      r = w_attr(w, "ovf:format", STREAM_FORMAT_URL);
    if (r >= 0)
      r = w_attr_u64(w, "ovf:populatedSize",
                     or_widest(p->disks[i].populated_bytes, known));
    if (r >= 0)
      r = xmlTextWriterEndElement(w);
  }
  if (r >= 0)
    r = xmlTextWriterEndElement(w);

  /* NetworkSection: the one network the NIC connects to. */
  if (r >= 0)
    r = w_section(w, "NetworkSection", "The list of logical networks");
  if (r >= 0)
    r = xmlTextWriterStartElement(w, BAD_CAST "Network");
  if (r >= 0)
    r = w_attr(w, "ovf:name", p->network);
  snprintf(buf, sizeof buf, "The %s network", p->network);
  if (r >= 0)
    r = w_elem(w, "Description", buf);
  if (r >= 0)
    r = xmlTextWriterEndElement(w);
  if (r >= 0)
    r = xmlTextWriterEndElement(w);

  /* The VirtualSystem. */
  if (r >= 0)
    r = xmlTextWriterStartElement(w, BAD_CAST "VirtualSystem");
  if (r >= 0)
    r = w_attr(w, "ovf:id", p->vm_name);
  if (r >= 0)
    r = w_elem(w, "Info", "A virtual machine");
  if (r >= 0)
    r = w_elem(w, "Name", p->vm_name);

  if (r >= 0 && (o->product || o->vendor || o->version ||
                 o->n_properties)) {
    r = w_section(w, "ProductSection", "Information about the installed "
                                       "software");
    if (r >= 0 && o->product)
      r = w_elem(w, "Product", o->product);
    if (r >= 0 && o->vendor)
      r = w_elem(w, "Vendor", o->vendor);
    if (r >= 0 && o->version)
      r = w_elem(w, "Version", o->version);
    if (r >= 0 && o->version)
      r = w_elem(w, "FullVersion", o->version);
    for (size_t i = 0; r >= 0 && i < o->n_properties; i++) {
      const char *kv = o->properties[i], *eq = strchr(kv, '=');
      snprintf(buf, sizeof buf, "%.*s", (int)(eq - kv), kv);
      r = xmlTextWriterStartElement(w, BAD_CAST "Property");
      if (r >= 0)
        r = w_attr(w, "ovf:key", buf);
      if (r >= 0)
        r = w_attr(w, "ovf:type", "string");
      if (r >= 0)
        r = w_attr(w, "ovf:userConfigurable", "true");
      if (r >= 0)
        r = w_attr(w, "ovf:value", eq + 1);
      if (r >= 0)
        r = xmlTextWriterEndElement(w);
    }
    if (r >= 0)
      r = xmlTextWriterEndElement(w);
  }
  if (r >= 0 && o->annotation) {
    r = w_section(w, "AnnotationSection", "A human-readable annotation");
    if (r >= 0)
      r = w_elem(w, "Annotation", o->annotation);
    if (r >= 0)
      r = xmlTextWriterEndElement(w);
  }

  if (r >= 0)
    r = xmlTextWriterStartElement(w, BAD_CAST "OperatingSystemSection");
  if (r >= 0)
    r = w_attr_u64(w, "ovf:id", cim_os_type(p->os_type));
  if (r >= 0)
    r = w_attr(w, "vmw:osType", p->os_type);
  if (r >= 0)
    r = w_elem(w, "Info", "The kind of installed guest operating system");
  if (r >= 0)
    r = xmlTextWriterEndElement(w);

  if (r >= 0)
    r = w_section(w, "VirtualHardwareSection",
                  "Virtual hardware requirements");
  if (r >= 0)
    r = xmlTextWriterStartElement(w, BAD_CAST "System");
  if (r >= 0)
    r = w_elem(w, "vssd:ElementName", "Virtual Hardware Family");
  if (r >= 0)
    r = w_elem(w, "vssd:InstanceID", "0");
  if (r >= 0)
    r = w_elem(w, "vssd:VirtualSystemIdentifier", p->vm_name);
  snprintf(buf, sizeof buf, "vmx-%02u", p->hw_version);
  if (r >= 0)
    r = w_elem(w, "vssd:VirtualSystemType", buf);
  if (r >= 0)
    r = xmlTextWriterEndElement(w);

  unsigned id = 1;
  char name[64], desc[512];
  snprintf(name, sizeof name, "%u virtual CPU(s)", p->cpus);
  if (r >= 0)
    r = w_item(w, &(struct item){.allocation_units = "hertz * 10^6",
                                 .description = "Number of Virtual CPUs",
                                 .element_name = name,
                                 .instance_id = id++,
                                 .resource_type = 3,
                                 .virtual_quantity = p->cpus});
  snprintf(name, sizeof name, "%" PRIu64 "MB of memory", p->memory_mib);
  if (r >= 0)
    r = w_item(w, &(struct item){.allocation_units = "byte * 2^20",
                                 .description = "Memory Size",
                                 .element_name = name,
                                 .instance_id = id++,
                                 .resource_type = 4,
                                 .virtual_quantity = p->memory_mib});
  unsigned ctl_id = id++;
  if (r >= 0)
    r = w_item(w, &(struct item){.address = "0",
                                 .description = p->ctl->label,
                                 .element_name = p->ctl->label,
                                 .instance_id = ctl_id,
                                 .resource_subtype = p->ctl->subtype,
                                 .resource_type = p->ctl->resource_type});
  for (size_t i = 0; r >= 0 && i < p->n_disks; i++) {
    /* SCSI unit 7 is the controller's own. */
    size_t unit = p->ctl->resource_type == 6 && i >= 7 ? i + 1 : i;
    char unit_s[24], res[64];
    snprintf(unit_s, sizeof unit_s, "%zu", unit);
    snprintf(name, sizeof name, "Hard disk %zu", i + 1);
    snprintf(res, sizeof res, "ovf:/disk/vmdisk%zu", i + 1);
    r = w_item(w, &(struct item){.address_on_parent = unit_s,
                                 .element_name = name,
                                 .host_resource = res,
                                 .instance_id = id++,
                                 .parent = ctl_id,
                                 .resource_type = 17});
  }
  snprintf(desc, sizeof desc, "%s ethernet adapter on \"%s\"",
           p->nic->subtype, p->network);
  if (r >= 0)
    r = w_item(w, &(struct item){.automatic_allocation = true,
                                 .connection = p->network,
                                 .description = desc,
                                 .element_name = "Network adapter 1",
                                 .instance_id = id++,
                                 .resource_subtype = p->nic->subtype,
                                 .resource_type = 10});
  if (r >= 0)
    r = w_config(w, "firmware", p->firmware);
  if (r >= 0 && o->secure_boot)
    r = w_config(w, "bootOptions.efiSecureBootEnabled", "true");
  if (r >= 0)
    r = xmlTextWriterEndDocument(w); /* closes every open element */
  return r;
}

/* The OVF text, padded with trailing white space to RESERVED bytes (0:
 * unpadded).  malloc'ed; *LEN its length.  NULL (error set). */
static char *make_ovf(const struct plan *p, bool known, size_t reserved,
                      size_t *len) {
  xmlBufferPtr b = xmlBufferCreate();
  xmlTextWriterPtr w = b ? xmlNewTextWriterMemory(b, 0) : NULL;
  char *text = NULL;
  int r = w ? xmlTextWriterSetIndent(w, 1) : -1;
  if (r >= 0)
    r = xmlTextWriterSetIndentString(w, BAD_CAST "  ");
  if (r >= 0)
    r = write_envelope(w, p, known);
  xmlFreeTextWriter(w); /* flushes into B */
  if (r < 0 || !b) {
    xmlBufferFree(b);
    set_error(ENOMEM, "%s: cannot write the OVF (libxml2)", p->out);
    return NULL;
  }
  size_t n = (size_t)xmlBufferLength(b);
  size_t total = reserved > n ? reserved : n;
  if (reserved && n > reserved) {
    xmlBufferFree(b);
    set_error(EOVERFLOW, "%s: the OVF is %zu bytes, more than the %zu "
                         "reserved for it",
              p->out, n, reserved);
    return NULL;
  }
  text = malloc(total + 1);
  if (text) {
    memcpy(text, xmlBufferContent(b), n);
    memset(text + n, ' ', total - n);
    if (total > n)
      text[total - 1] = '\n';
    text[total] = '\0';
    *len = total;
  } else {
    set_error(ENOMEM, "%s: out of memory", p->out);
  }
  xmlBufferFree(b);
  return text;
}

/* ---- tar headers ---------------------------------------------------------- */

static void put_octal(uint8_t *f, size_t width, uint64_t v) {
  /* WIDTH - 1 digits and a NUL */
  for (size_t i = width - 1; i-- > 0; v >>= 3)
    f[i] = (uint8_t)('0' + (v & 7));
  f[width - 1] = '\0';
}

/* A ustar header block for a regular file NAME of SIZE bytes. */
static void tar_header(uint8_t h[BLOCK], const char *name, uint64_t size,
                       time_t mtime) {
  memset(h, 0, BLOCK);
  memcpy(h, name, strlen(name)); /* <= 100 bytes, checked */
  put_octal(h + 100, 8, 0644);
  put_octal(h + 108, 8, 0);
  put_octal(h + 116, 8, 0);
  if (size < ((uint64_t)1 << 33)) {
    put_octal(h + 124, 12, size);
  } else { /* GNU base-256: 0x80, then the size big-endian */
    h[124] = 0x80;
    for (int i = 11; i >= 4; i--, size >>= 8)
      h[124 + i] = (uint8_t)size;
  }
  put_octal(h + 136, 12, mtime > 0 ? (uint64_t)mtime : 0);
  h[156] = '0';
  memcpy(h + 257, "ustar", 6); /* with its NUL */
  memcpy(h + 263, "00", 2);
  memcpy(h + 265, "root", 4);
  memcpy(h + 297, "root", 4);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned i = 0; i < BLOCK; i++)
    sum += h[i];
  put_octal(h + 148, 7, sum); /* six digits, NUL, and the space stays */
  h[155] = ' ';
}

static uint64_t round_block(uint64_t n) {
  return div_round_up(n, BLOCK) * BLOCK;
}

/* ---- the archive file ----------------------------------------------------- */

static int write_at(int fd, const struct plan *p, const void *buf, size_t n,
                    uint64_t off) {
  const uint8_t *q = buf;
  while (n) {
    ssize_t w = pwrite(fd, q, n, (off_t)off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return set_error(errno, "%s: write of %zu bytes at offset %" PRIu64
                              ": %s",
                       p->out, n, off, strerror(errno));
    q += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return 0;
}

static void hex_of(const unsigned char *md, char out[SHA256_HEX + 1]) {
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int sha256_mem(const void *buf, size_t n, char out[SHA256_HEX + 1]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (EVP_Digest(buf, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
    return set_error(EIO, "SHA-256 failed (libcrypto)");
  hex_of(md, out);
  return 0;
}

/* SHA-256 of the N bytes at OFF of FD (read back in HASH_CHUNK reads). */
static int sha256_range(int fd, const struct plan *p, uint64_t off,
                        uint64_t n, char out[SHA256_HEX + 1]) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  uint8_t *buf = io_alloc(HASH_CHUNK);
  int r = 0;
  if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
    r = set_error(ENOMEM, "%s: out of memory for SHA-256", p->out);
  while (r == 0 && n) {
    size_t want = n < HASH_CHUNK ? (size_t)n : HASH_CHUNK;
    ssize_t got = pread(fd, buf, want, (off_t)off);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      r = set_error(got < 0 ? errno : EIO, "%s: reading back %zu bytes at "
                                           "offset %" PRIu64 ": %s",
                    p->out, want, off, got < 0 ? strerror(errno)
                                               : "unexpected end of file");
      break;
    }
    if (EVP_DigestUpdate(ctx, buf, (size_t)got) != 1)
      r = set_error(EIO, "%s: SHA-256 failed (libcrypto)", p->out);
    off += (uint64_t)got;
    n -= (uint64_t)got;
  }
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (r == 0 && (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32))
    r = set_error(EIO, "%s: SHA-256 failed (libcrypto)", p->out);
  if (r == 0)
    hex_of(md, out);
  EVP_MD_CTX_free(ctx);
  free(buf);
  return r;
}

/* ---- converting one disk into its member ---------------------------------- */

struct progress {
  vmdk_progress_cb cb;
  void *opaque;
  uint64_t done, total;
};

/* PROGRESS of one disk's copy: the bytes of the disks before it added. */
struct disk_progress {
  struct progress *pr;
  uint64_t base; /* bytes of the sources done before this disk */
};

static int disk_progress(void *opaque, uint64_t done, uint64_t total) {
  (void)total;
  struct disk_progress *dp = opaque;
  dp->pr->done = dp->base + done;
  return dp->pr->cb(dp->pr->opaque, dp->pr->done, dp->pr->total);
}

/* Copy every range of SRC that does not read as zeros into DST with the
 * copy engine of vmdk_convert (lib/convert.c: zero runs are skipped
 * unread, all-zero grains not written, the source read ahead by a second
 * thread), one grain of DST at a time. */
static int copy_disk(struct disk_out *d, struct vmdk_disk *dst,
                     struct progress *pr, const struct plan *p) {
  struct vmdk_info info;
  if (vmdk_get_info(dst, &info) != 0)
    return -1;
  struct disk_progress dp = {pr, pr->done};
  int r = copy_nonzero(d->src, dst, info.cluster_bytes, false,
                       pr->cb ? disk_progress : NULL, &dp, p->out);
  pr->done = dp.base + vmdk_get_size(d->src);
  return r;
}

/* Write disk D as the member whose header is at D->header_offset; fills
 * its size, populated size and digest.  The archive ends after it. */
static int write_disk(int fd, struct disk_out *d, const struct plan *p,
                      struct progress *pr, unsigned flags) {
  char name[PATH_MAX + MAX_MEMBER_NAME + 4];
  snprintf(name, sizeof name, "%s: %s", p->out, d->member);
  uint64_t base = d->header_offset + BLOCK;
  struct vfile *f = vf_append_window(fd, name, base);
  if (!f)
    return -1;
  if (ftruncate(fd, (off_t)base) != 0) { /* empty from BASE on */
    vf_close(f);
    return set_error(errno, "%s: cannot set length: %s", p->out,
                     strerror(errno));
  }
  f->size = 0;
  struct vmdk_create_options co = {
      .size_bytes = d->capacity_bytes,
      .subformat = VMDK_SUBFORMAT_STREAM_OPTIMIZED,
      .adapter_type = p->ctl->adapter,
      .hw_version = p->hw_version,
      .threads = p->o->threads,
      .compression_level = p->o->compression_level,
  };
  struct vmdk_disk *dst = disk_create_stream_on(f, d->member, &co, flags);
  if (!dst)
    return -1;
  int r = copy_disk(d, dst, pr, p);
  if (r == 0)
    r = vmdk_flush(dst);
  struct vmdk_info info;
  if (r == 0 && (r = vmdk_get_info(dst, &info)) == 0) {
    uint64_t grains = info.n_extents ? info.extents[0].stream_grains : 0;
    uint64_t pop = grains * info.cluster_bytes;
    d->populated_bytes = pop < d->capacity_bytes ? pop : d->capacity_bytes;
  }
  if (r == 0)
    r = vmdk_close(dst);
  else
    vmdk_close_discard(dst);
  if (r != 0)
    return -1;
  struct stat st;
  if (fstat(fd, &st) != 0)
    return set_error(errno, "%s: stat: %s", p->out, strerror(errno));
  d->size_bytes = (uint64_t)st.st_size - base;
  if (sha256_range(fd, p, base, d->size_bytes, d->sha256) != 0)
    return -1;
  uint8_t h[BLOCK];
  tar_header(h, d->member, d->size_bytes, time(NULL));
  return write_at(fd, p, h, BLOCK, d->header_offset);
}

/* ---- the summary ---------------------------------------------------------- */

/* One allocation: the summary, its members, then their strings (so that
 * vmdk_ova_summary_free is one free). */
static struct vmdk_ova_summary *make_summary(const struct plan *p) {
  size_t n = p->n_disks + 2, strings = strlen(p->vm_name) + 1 +
                                       strlen(p->os_type) + 1;
  for (size_t i = 0; i < p->n_disks; i++)
    strings += strlen(p->disks[i].src_path) + 1;
  strings += n * (MAX_MEMBER_NAME + 1);
  size_t head = sizeof(struct vmdk_ova_summary) +
                n * sizeof(struct vmdk_ova_member);
  struct vmdk_ova_summary *s = calloc(1, head + strings);
  if (!s) {
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  struct vmdk_ova_member *m = (struct vmdk_ova_member *)(s + 1);
  char *str = (char *)s + head;
#define KEEP(dst, src)                                                         \
  do {                                                                         \
    size_t len_ = strlen(src) + 1;                                             \
    memcpy(str, (src), len_);                                                  \
    (dst) = str;                                                               \
    str += len_;                                                               \
  } while (0)
  KEEP(s->vm_name, p->vm_name);
  KEEP(s->os_type, p->os_type);
  s->size_bytes = p->total_bytes;
  s->n_members = n;
  s->members = m;
  s->cpus = p->cpus;
  s->memory_mib = p->memory_mib;
  s->hw_version = p->hw_version;
  uint64_t off = BLOCK;
  for (size_t i = 0; i < n; i++) {
    const char *sha;
    if (i == 0) {
      KEEP(m[i].name, p->ovf_name);
      m[i].size_bytes = p->ovf_reserved;
      sha = p->ovf_sha256;
    } else if (i == 1) {
      KEEP(m[i].name, p->mf_name);
      m[i].size_bytes = p->mf_bytes;
      sha = p->mf_sha256;
    } else {
      const struct disk_out *d = &p->disks[i - 2];
      KEEP(m[i].name, d->member);
      KEEP(m[i].source, d->src_path);
      m[i].size_bytes = d->size_bytes;
      m[i].capacity_bytes = d->capacity_bytes;
      m[i].populated_bytes = d->populated_bytes;
      sha = d->sha256;
      off = d->header_offset + BLOCK;
    }
    memcpy(m[i].sha256, sha, sizeof m[i].sha256);
    m[i].offset_bytes = off;
    off += round_block(m[i].size_bytes) + BLOCK;
  }
#undef KEEP
  return s;
}

void vmdk_ova_summary_free(struct vmdk_ova_summary *s) {
  free(s);
}

/* ---- vmdk_ova_create ------------------------------------------------------ */

/* A temporary name in OUT's folder: ".BASE.XXXXXXXX.tmp". */
static int open_temp(const char *out, char **tmp) {
  const char *slash = strrchr(out, '/');
  size_t dir_len = slash ? (size_t)(slash - out + 1) : 0;
  const char *base = slash ? slash + 1 : out;
  size_t cap = strlen(out) + 32;
  char *t = malloc(cap);
  if (!t)
    return set_error(ENOMEM, "out of memory");
  for (int tries = 0; tries < 100; tries++) {
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
      rnd = (uint32_t)getpid() * 2654435761u + (uint32_t)tries;
    snprintf(t, cap, "%.*s.%s.%08" PRIx32 ".tmp", (int)dir_len, out, base,
             rnd);
    int fd = open(t, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0666);
    if (fd >= 0) {
      *tmp = t;
      return fd;
    }
    if (errno != EEXIST) {
      int err = errno;
      free(t);
      return set_error(err, "%s: cannot create: %s", out, strerror(err));
    }
  }
  free(t);
  return set_error(EEXIST, "%s: cannot find a free temporary name", out);
}

static int sync_folder(const char *out) {
  const char *slash = strrchr(out, '/');
  char *dir = slash ? strndup(out, slash == out ? 1 : (size_t)(slash - out))
                    : strdup(".");
  if (!dir)
    return set_error(ENOMEM, "out of memory");
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int r = 0;
  if (fd < 0 || fsync(fd) != 0)
    r = set_error(errno, "%s: cannot sync the folder %s: %s", out, dir,
                  strerror(errno));
  if (fd >= 0)
    close(fd);
  free(dir);
  return r;
}

int vmdk_ova_create(const char *out, const struct vmdk_ova_options *o,
                    vmdk_progress_cb cb, void *opaque,
                    struct vmdk_ova_summary **summary) {
  struct plan p = {0};
  if (summary)
    *summary = NULL;
  if (remote_refuse_write(out) != 0)
    return -1;
  if (check_options(&p, out, o) != 0)
    return -1;
  p.n_disks = o->n_disks;
  p.disks = calloc(p.n_disks, sizeof *p.disks);
  if (!p.disks)
    return set_error(ENOMEM, "out of memory");
  unsigned flags = VMDK_OPEN_UNSAFE | (o->open_flags & VMDK_OPEN_CONFINE);
  struct progress pr = {cb, opaque, 0, 0};
  int r = 0, fd = -1;
  char *tmp = NULL, *ovf = NULL, *mf = NULL;

  /* 1. Sources open, names chosen, before any file is made. */
  for (size_t i = 0; r == 0 && i < p.n_disks; i++) {
    struct disk_out *d = &p.disks[i];
    d->src_path = o->disks[i];
    d->src = vmdk_open_format(d->src_path, o->disk_format,
                              o->open_flags & VMDK_OPEN_CONFINE);
    if (!d->src) {
      r = -1;
      break;
    }
    uint64_t size = vmdk_get_size(d->src);
    d->capacity_bytes = div_round_up(size, SECTOR) * SECTOR;
    if (d->capacity_bytes == 0)
      r = set_error(EINVAL, "%s: a disk of 0 bytes cannot go into an OVA",
                    d->src_path);
    else if (d->capacity_bytes > ((uint64_t)2 << 40) - ((uint64_t)1 << 20))
      r = set_error(EFBIG, "%s: %s is larger than a streamOptimized disk "
                           "can be (2 TiB - 1 MiB)",
                    d->src_path, human_size(d->capacity_bytes));
    snprintf(d->member, sizeof d->member, "%s-disk%zu.vmdk", p.base, i + 1);
    pr.total += size;
  }

  /* 3. The reserved lengths. */
  size_t ovf_len = 0;
  if (r == 0 && !(ovf = make_ovf(&p, false, 0, &ovf_len)))
    r = -1;
  p.ovf_reserved = ovf_len;
  free(ovf);
  ovf = NULL;
  p.mf_bytes = 0;
  if (r == 0) {
    p.mf_bytes += strlen("SHA256()= \n") + strlen(p.ovf_name) + SHA256_HEX;
    for (size_t i = 0; i < p.n_disks; i++)
      p.mf_bytes += strlen("SHA256()= \n") + strlen(p.disks[i].member) +
                    SHA256_HEX;
  }
  uint64_t mf_header = BLOCK + round_block(p.ovf_reserved);
  uint64_t next = mf_header + BLOCK + round_block(p.mf_bytes);

  /* 2. The temporary archive. */
  if (r == 0 && (fd = open_temp(out, &tmp)) < 0)
    r = -1;

  /* 4. The disks, in place. */
  for (size_t i = 0; r == 0 && i < p.n_disks; i++) {
    struct disk_out *d = &p.disks[i];
    d->header_offset = next;
    r = write_disk(fd, d, &p, &pr, flags);
    next = d->header_offset + BLOCK + round_block(d->size_bytes);
  }

  /* 5. End of archive, OVF, manifest, their headers. */
  if (r == 0) {
    p.total_bytes = div_round_up(next + 2 * BLOCK, RECORD) * RECORD;
    if (ftruncate(fd, (off_t)p.total_bytes) != 0)
      r = set_error(errno, "%s: cannot set length: %s", out, strerror(errno));
  }
  uint8_t h[BLOCK];
  if (r == 0 && !(ovf = make_ovf(&p, true, p.ovf_reserved, &ovf_len)))
    r = -1;
  if (r == 0)
    r = sha256_mem(ovf, ovf_len, p.ovf_sha256);
  if (r == 0 && !(mf = malloc(p.mf_bytes + 1)))
    r = set_error(ENOMEM, "out of memory");
  if (r == 0) {
    size_t n = (size_t)snprintf(mf, p.mf_bytes + 1, "SHA256(%s)= %s\n",
                                p.ovf_name, p.ovf_sha256);
    for (size_t i = 0; i < p.n_disks; i++)
      n += (size_t)snprintf(mf + n, p.mf_bytes + 1 - n, "SHA256(%s)= %s\n",
                            p.disks[i].member, p.disks[i].sha256);
    if (n != p.mf_bytes)
      r = set_error(EINVAL, "%s: manifest of %zu bytes, %zu expected", out,
                    n, p.mf_bytes);
  }
  if (r == 0)
    r = sha256_mem(mf, p.mf_bytes, p.mf_sha256);
  if (r == 0)
    r = write_at(fd, &p, ovf, ovf_len, BLOCK);
  if (r == 0)
    r = write_at(fd, &p, mf, p.mf_bytes, mf_header + BLOCK);
  if (r == 0) {
    time_t now = time(NULL);
    tar_header(h, p.ovf_name, p.ovf_reserved, now);
    r = write_at(fd, &p, h, BLOCK, 0);
    tar_header(h, p.mf_name, p.mf_bytes, now);
    if (r == 0)
      r = write_at(fd, &p, h, BLOCK, mf_header);
  }

  /* 6. Durable, then visible. */
  if (r == 0 && fdatasync(fd) != 0)
    r = set_error(errno, "%s: fdatasync: %s", out, strerror(errno));
  if (fd >= 0 && close(fd) != 0 && r == 0)
    r = set_error(errno, "%s: close: %s", out, strerror(errno));
  if (r == 0 && rename(tmp, out) != 0)
    r = set_error(errno, "%s: cannot rename %s onto it: %s", out, tmp,
                  strerror(errno));
  if (r != 0 && tmp) {
    char msg[1024];
    int err = vmdk_get_errno();
    snprintf(msg, sizeof msg, "%s", vmdk_get_error());
    unlink(tmp);
    set_error(err, "%s", msg);
  }
  if (r == 0)
    r = sync_folder(out);
  if (r == 0 && summary && !(*summary = make_summary(&p)))
    r = -1;
  for (size_t i = 0; i < p.n_disks; i++)
    vmdk_close(p.disks[i].src);
  free(p.disks);
  free(tmp);
  free(ovf);
  free(mf);
  return r;
}
