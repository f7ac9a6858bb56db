/* SPDX-License-Identifier: BSD-3-Clause */
/* The OVF envelope, with libxml2, into struct vmdk_ovf.
 *
 * Namespace-aware: envelope elements are matched in the OVF 1.x or 2.x
 * namespace (the one the root Envelope uses), hardware properties in any
 * DMTF CIM class namespace (rasd, vssd, sasd, epasd), VMware's extensions
 * in vmw, VirtualBox's in vbox; element order is free (VMware ovftool,
 * VirtualBox and open-vmdk's ova-compose each write their own).  Attributes
 * are taken in the envelope's namespace, the vmw one where VMware puts
 * them, or unqualified.
 *
 * The document is parsed without network access and without substituting
 * entities (no external entities; libxml2 bounds entity expansion). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "ova.h"

#define NS_OVF1 "http://schemas.dmtf.org/ovf/envelope/1"
#define NS_OVF2 "http://schemas.dmtf.org/ovf/envelope/2"
#define NS_CIM "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
#define NS_VMW "http://www.vmware.com/schema/ovf"
#define NS_VBOX "http://www.virtualbox.org/ovf/machine"

/* The model and the storage of its strings. */
struct ovf_model {
  struct vmdk_ovf pub; /* first: vmdk_ovf_free casts back */
  struct vmdk_ovf_disk *disks;
  struct vmdk_ovf_network *networks;
  char **strings; /* every string the model points at */
  size_t n_strings, cap_strings;
};

struct parse {
  const char *name;  /* the OVF, for messages */
  const xmlChar *ns; /* the envelope's namespace */
  struct ovf_model *m;
};

/* ---- helpers ------------------------------------------------------------ */

static bool ns_is(const xmlNode *n, const char *ns) {
  return n->ns && n->ns->href && strcmp((const char *)n->ns->href, ns) == 0;
}
static bool is_elem(const xmlNode *n, const char *local) {
  return n->type == XML_ELEMENT_NODE &&
         strcmp((const char *)n->name, local) == 0;
}
/* An envelope element named LOCAL. */
static bool is_ovf(const struct parse *p, const xmlNode *n, const char *local) {
  return is_elem(n, local) && ns_is(n, (const char *)p->ns);
}
/* A CIM property (rasd:, vssd:, sasd:, epasd:) named LOCAL. */
static bool is_cim(const xmlNode *n, const char *local) {
  return is_elem(n, local) && n->ns && n->ns->href &&
         strncmp((const char *)n->ns->href, NS_CIM, strlen(NS_CIM)) == 0;
}

/* Keep S (malloc'ed by libxml2 or us) in the model; returns it, or NULL
 * (error set) when S is NULL because memory ran out. */
static const char *keep(struct parse *p, char *s) {
  struct ovf_model *m = p->m;
  if (!s)
    return NULL;
  if (m->n_strings == m->cap_strings) {
    size_t c = m->cap_strings ? m->cap_strings * 2 : 16;
    char **v = realloc(m->strings, c * sizeof *v);
    if (!v) {
      free(s);
      set_error(ENOMEM, "out of memory");
      return NULL;
    }
    m->strings = v;
    m->cap_strings = c;
  }
  m->strings[m->n_strings++] = s;
  return s;
}

/* xmlChar * from libxml2 as a malloc'ed char * (libxml2 uses malloc unless
 * the application changes its allocator, which a library must not
 * assume): copied. */
static char *own(xmlChar *x) {
  if (!x)
    return NULL;
  char *s = strdup((const char *)x);
  xmlFree(x);
  return s;
}

/* Attribute LOCAL of N: in the envelope's namespace, then vmw's, then
 * unqualified.  Malloc'ed, or NULL. */
static char *attr(const struct parse *p, const xmlNode *n, const char *local) {
  xmlChar *v = xmlGetNsProp(n, (const xmlChar *)local, p->ns);
  if (!v)
    v = xmlGetNsProp(n, (const xmlChar *)local, (const xmlChar *)NS_VMW);
  if (!v)
    v = xmlGetNoNsProp(n, (const xmlChar *)local);
  return own(v);
}

/* The text of element N, trimmed, malloc'ed (NULL: out of memory). */
static char *text(const xmlNode *n) {
  char *s = own(xmlNodeGetContent(n));
  if (!s)
    return strdup("");
  size_t b = 0, e = strlen(s);
  while (b < e && strchr(" \t\r\n", s[b]))
    b++;
  while (e > b && strchr(" \t\r\n", s[e - 1]))
    e--;
  memmove(s, s + b, e - b);
  s[e - b] = '\0';
  return s;
}

/* A decimal number below 2^63 (leading and trailing blanks allowed). */
static bool parse_u64(const char *s, uint64_t *v) {
  while (*s == ' ')
    s++;
  uint64_t x = 0;
  const char *d = s;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (x > ((uint64_t)INT64_MAX - 9) / 10)
      return false;
    x = x * 10 + (uint64_t)(*s - '0');
  }
  if (s == d)
    return false;
  while (*s == ' ')
    s++;
  if (*s)
    return false;
  *v = x;
  return true;
}

/* Bytes per unit of a DSP0004 programmatic unit ("byte", "byte * 2^30",
 * "byte*10^9", "byte * 1024") or the names VirtualBox and older producers
 * write ("MegaBytes", "KB", "GiB"...).  False when not understood. */
static bool parse_units(const char *u, uint64_t *mult) {
  char s[64];
  size_t n = 0;
  for (; *u && n + 1 < sizeof s; u++)
    if (*u != ' ' && *u != '\t')
      s[n++] = (char)(*u >= 'A' && *u <= 'Z' ? *u - 'A' + 'a' : *u);
  if (*u)
    return false;
  s[n] = '\0';
  static const struct {
    const char *name;
    unsigned shift;
  } names[] = {{"byte", 0},       {"bytes", 0}, {"b", 0},
               {"kilobytes", 10}, {"kb", 10},   {"kib", 10},
               {"megabytes", 20}, {"mb", 20},   {"mib", 20},
               {"gigabytes", 30}, {"gb", 30},   {"gib", 30},
               {"terabytes", 40}, {"tb", 40},   {"tib", 40}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(s, names[i].name) == 0) {
      *mult = (uint64_t)1 << names[i].shift;
      return true;
    }
  if (strncmp(s, "byte*", 5) != 0)
    return false;
  const char *x = s + 5;
  uint64_t base, exp = 1;
  const char *caret = strchr(x, '^');
  char num[32];
  size_t bl = caret ? (size_t)(caret - x) : strlen(x);
  if (bl == 0 || bl >= sizeof num)
    return false;
  memcpy(num, x, bl);
  num[bl] = '\0';
  if (!parse_u64(num, &base) || (caret && !parse_u64(caret + 1, &exp)) ||
      base == 0 || exp > 64)
    return false;
  uint64_t r = 1;
  for (uint64_t i = 0; i < exp; i++)
    if (mul_overflow_u64(r, base, &r))
      return false;
  *mult = r;
  return true;
}

/* VALUE (a decimal) times UNITS (NULL: DEFAULT_MULT) into *BYTES.  -1 with
 * the error set naming WHAT. */
static int scaled(const struct parse *p, const char *what, const char *value,
                  const char *units, uint64_t default_mult, uint64_t *bytes) {
  uint64_t v, mult = default_mult;
  if (!parse_u64(value, &v))
    return set_error(EINVAL, "%s: %s \"%.40s\" is not a number", p->name, what,
                     value);
  if (units && !parse_units(units, &mult))
    return set_error(EINVAL, "%s: %s: unknown allocation units \"%.40s\"",
                     p->name, what, units);
  if (mul_overflow_u64(v, mult, bytes) || *bytes > (uint64_t)INT64_MAX)
    return set_error(EOVERFLOW, "%s: %s %s \"%.40s\" is more than 2^63 bytes",
                     p->name, what, value, units ? units : "");
  return 0;
}

/* ---- sections ----------------------------------------------------------- */

struct file_ref {
  char *id, *href, *compression, *chunk;
  uint64_t size;
};

static void free_refs(struct file_ref *r, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(r[i].id);
    free(r[i].href);
    free(r[i].compression);
    free(r[i].chunk);
  }
  free(r);
}

/* References/File: id -> href, size, compression. */
static int read_references(struct parse *p, const xmlNode *refs,
                           struct file_ref **out, size_t *n_out) {
  size_t n = 0;
  for (const xmlNode *c = refs->children; c; c = c->next)
    n += is_ovf(p, c, "File");
  struct file_ref *r = calloc(n ? n : 1, sizeof *r);
  if (!r)
    return set_error(ENOMEM, "out of memory");
  size_t i = 0;
  for (const xmlNode *c = refs->children; c; c = c->next) {
    if (!is_ovf(p, c, "File"))
      continue;
    struct file_ref *f = &r[i++];
    f->id = attr(p, c, "id");
    f->href = attr(p, c, "href");
    f->compression = attr(p, c, "compression");
    f->chunk = attr(p, c, "chunkSize");
    char *size = attr(p, c, "size");
    if (!f->id || !f->href) {
      /* the message first: F is freed with R */
      set_error(EINVAL, "%s: line %ld: a File without ovf:%s", p->name,
                xmlGetLineNo(c), f->id ? "href" : "id");
      free(size);
      free_refs(r, i);
      return -1;
    }
    if (size && !parse_u64(size, &f->size)) {
      set_error(EINVAL, "%s: File %s: ovf:size \"%.40s\" is not a number",
                p->name, f->id, size);
      free(size);
      free_refs(r, i);
      return -1;
    }
    free(size);
  }
  *out = r;
  *n_out = i;
  return 0;
}

/* DiskSection/Disk, in order, with their files. */
static int read_disks(struct parse *p, const xmlNode *sec,
                      const struct file_ref *refs, size_t n_refs) {
  struct ovf_model *m = p->m;
  size_t n = 0;
  for (const xmlNode *c = sec->children; c; c = c->next)
    n += is_ovf(p, c, "Disk");
  if (n == 0)
    return 0;
  m->disks = calloc(n, sizeof *m->disks);
  if (!m->disks)
    return set_error(ENOMEM, "out of memory");
  for (const xmlNode *c = sec->children; c; c = c->next) {
    if (!is_ovf(p, c, "Disk"))
      continue;
    struct vmdk_ovf_disk *d = &m->disks[m->pub.n_disks++];
    d->populated_bytes = -1;
    d->unit = -1;
    char *id = attr(p, c, "diskId"), *fref = attr(p, c, "fileRef");
    char *cap = attr(p, c, "capacity"),
         *units = attr(p, c, "capacityAllocationUnits");
    char *pop = attr(p, c, "populatedSize"), *fmt = attr(p, c, "format");
    int r = 0;
    if (!id)
      r = set_error(EINVAL, "%s: line %ld: a Disk without ovf:diskId", p->name,
                    xmlGetLineNo(c));
    else if (!cap)
      r = set_error(EINVAL, "%s: Disk %s has no ovf:capacity", p->name, id);
    char what[128];
    snprintf(what, sizeof what, "Disk %s: ovf:capacity", id ? id : "?");
    if (r == 0 && cap[0] != '$') /* "${prop}": set at deployment */
      r = scaled(p, what, cap, units, 1, &d->capacity_bytes);
    uint64_t v;
    if (r == 0 && pop) {
      if (!parse_u64(pop, &v))
        r = set_error(EINVAL,
                      "%s: Disk %s: ovf:populatedSize \"%.40s\" is "
                      "not a number",
                      p->name, id, pop);
      else
        d->populated_bytes = (int64_t)v;
    }
    const struct file_ref *f = NULL;
    if (r == 0 && fref) {
      for (size_t i = 0; i < n_refs && !f; i++)
        if (strcmp(refs[i].id, fref) == 0)
          f = &refs[i];
      if (!f)
        r = set_error(EINVAL,
                      "%s: Disk %s names ovf:fileRef \"%s\", which "
                      "References does not list",
                      p->name, id, fref);
    }
    free(cap);
    free(units);
    free(pop);
    free(fref);
    if (r != 0) {
      free(id);
      free(fmt);
      return -1;
    }
    if (!(d->id = keep(p, id)) || (fmt && !(d->format = keep(p, fmt))))
      return -1;
    if (f) {
      if (!(d->file = keep(p, strdup(f->href))))
        return -1;
      d->file_bytes = f->size;
      if (f->compression && *f->compression &&
          strcmp(f->compression, "identity") != 0 &&
          !(d->compression = keep(p, strdup(f->compression))))
        return -1;
      d->chunked = f->chunk != NULL;
    }
  }
  return 0;
}

static int read_networks(struct parse *p, const xmlNode *sec) {
  struct ovf_model *m = p->m;
  size_t n = 0;
  for (const xmlNode *c = sec->children; c; c = c->next)
    n += is_ovf(p, c, "Network");
  if (n == 0)
    return 0;
  m->networks = calloc(n, sizeof *m->networks);
  if (!m->networks)
    return set_error(ENOMEM, "out of memory");
  for (const xmlNode *c = sec->children; c; c = c->next) {
    if (!is_ovf(p, c, "Network"))
      continue;
    struct vmdk_ovf_network *w = &m->networks[m->pub.n_networks++];
    char *name = attr(p, c, "name");
    if (!name)
      return set_error(EINVAL, "%s: line %ld: a Network without ovf:name",
                       p->name, xmlGetLineNo(c));
    if (!(w->name = keep(p, name)))
      return -1;
    for (const xmlNode *k = c->children; k; k = k->next)
      if (is_ovf(p, k, "Description") && !(w->description = keep(p, text(k))))
        return -1;
  }
  return 0;
}

/* One hardware Item's properties. */
struct item {
  const xmlNode *node;
  char *instance, *parent, *subtype, *host, *address, *quantity, *units;
  long type; /* ResourceType; -1 none */
};

static void free_item(struct item *it) {
  free(it->instance);
  free(it->parent);
  free(it->subtype);
  free(it->host);
  free(it->address);
  free(it->quantity);
  free(it->units);
}

static int read_item(const xmlNode *n, struct item *it) {
  *it = (struct item){.node = n, .type = -1};
  for (const xmlNode *c = n->children; c; c = c->next) {
    char **slot = NULL;
    if (is_cim(c, "InstanceID"))
      slot = &it->instance;
    else if (is_cim(c, "Parent"))
      slot = &it->parent;
    else if (is_cim(c, "ResourceSubType"))
      slot = &it->subtype;
    else if (is_cim(c, "HostResource"))
      slot = &it->host;
    else if (is_cim(c, "AddressOnParent"))
      slot = &it->address;
    else if (is_cim(c, "VirtualQuantity"))
      slot = &it->quantity;
    else if (is_cim(c, "AllocationUnits"))
      slot = &it->units;
    else if (is_cim(c, "ResourceType")) {
      char *t = text(c);
      uint64_t v;
      if (!t)
        return set_error(ENOMEM, "out of memory");
      it->type = parse_u64(t, &v) && v < 65536 ? (long)v : -1;
      free(t);
      continue;
    }
    if (!slot)
      continue;
    free(*slot);
    if (!(*slot = text(c)))
      return set_error(ENOMEM, "out of memory");
  }
  return 0;
}

/* The controller's name for ResourceType TYPE and subtype SUB. */
static const char *controller_name(long type, const char *sub) {
  switch (type) {
  case 5:
    return "IDE";
  case 6:
    return "SCSI";
  case 7:
    return "FC";
  case 8:
    return "iSCSI";
  case 9:
    return "IB";
  case 20:
    if (sub && (strcasestr(sub, "ahci") || strcasestr(sub, "sata")))
      return "SATA";
    if (sub && strcasestr(sub, "nvme"))
      return "NVMe";
    return "storage";
  default:
    return NULL;
  }
}

/* VirtualHardwareSection: CPUs, memory, firmware, and for each disk of the
 * model its controller and unit. */
static int read_hardware(struct parse *p, const xmlNode *hw) {
  struct ovf_model *m = p->m;
  size_t n = 0;
  for (const xmlNode *c = hw->children; c; c = c->next)
    n += c->type == XML_ELEMENT_NODE;
  struct item *items = calloc(n ? n : 1, sizeof *items);
  if (!items)
    return set_error(ENOMEM, "out of memory");
  size_t k = 0;
  int r = 0;
  for (const xmlNode *c = hw->children; c && r == 0; c = c->next) {
    if (is_ovf(p, c, "Item") || is_ovf(p, c, "StorageItem") ||
        is_ovf(p, c, "EthernetPortItem")) {
      r = read_item(c, &items[k++]);
    } else if (is_elem(c, "Config") && ns_is(c, NS_VMW)) {
      char *key = attr(p, c, "key"), *value = attr(p, c, "value");
      if (key && value && strcmp(key, "firmware") == 0 && !m->pub.firmware) {
        m->pub.firmware = keep(p, value);
        value = NULL;
        if (!m->pub.firmware)
          r = -1;
      }
      free(key);
      free(value);
    }
  }
  for (size_t i = 0; i < k && r == 0; i++) {
    struct item *it = &items[i];
    char what[64];
    uint64_t v;
    if (it->type == 3 && it->quantity && !m->pub.cpus) {
      if (!parse_u64(it->quantity, &v) || v > 1u << 20)
        r = set_error(EINVAL,
                      "%s: the CPU Item's VirtualQuantity \"%.40s\" "
                      "is not a number of CPUs",
                      p->name, it->quantity);
      else
        m->pub.cpus = (unsigned)v;
    } else if (it->type == 4 && it->quantity && !m->pub.memory_mib) {
      snprintf(what, sizeof what, "the memory Item's VirtualQuantity");
      r = scaled(p, what, it->quantity, it->units, 1u << 20, &v);
      if (r == 0)
        m->pub.memory_mib = v >> 20;
    } else if (it->type == 17 && it->host) {
      /* "ovf:/disk/ID" (OVF 1.x, 2.x) or "/disk/ID" (0.9) */
      const char *h = it->host;
      if (strncmp(h, "ovf:", 4) == 0)
        h += 4;
      if (strncmp(h, "/disk/", 6) != 0)
        continue;
      h += 6;
      for (size_t d = 0; d < m->pub.n_disks; d++) {
        struct vmdk_ovf_disk *disk = &m->disks[d];
        if (strcmp(disk->id, h) != 0 || disk->controller)
          continue;
        if (it->address && parse_u64(it->address, &v) && v < 65536)
          disk->unit = (int)v;
        for (size_t j = 0; j < k && it->parent; j++) {
          const struct item *c = &items[j];
          if (!c->instance || strcmp(c->instance, it->parent) != 0)
            continue;
          const char *name = controller_name(c->type, c->subtype);
          char buf[32];
          if (!name) {
            snprintf(buf, sizeof buf, "type %ld", c->type);
            name = buf;
          }
          if (!(disk->controller = keep(p, strdup(name))) ||
              (c->subtype &&
               !(disk->controller_model = keep(p, strdup(c->subtype)))))
            r = -1;
          break;
        }
      }
    }
  }
  for (size_t i = 0; i < k; i++)
    free_item(&items[i]);
  free(items);
  return r;
}

static int read_os(struct parse *p, const xmlNode *sec) {
  struct ovf_model *m = p->m;
  char *id = attr(p, sec, "id"), *vmw = NULL;
  xmlChar *t =
      xmlGetNsProp(sec, (const xmlChar *)"osType", (const xmlChar *)NS_VMW);
  vmw = own(t);
  uint64_t v;
  if (id && parse_u64(id, &v) && v < 65536)
    m->pub.os_id = (int)v;
  free(id);
  if (vmw) {
    m->pub.os_type = keep(p, vmw);
    return m->pub.os_type ? 0 : -1;
  }
  for (const xmlNode *c = sec->children; c; c = c->next) {
    if ((is_ovf(p, c, "Description") && !m->pub.os_type) ||
        (is_elem(c, "OSType") && ns_is(c, NS_VBOX))) {
      /* VirtualBox's own name wins over the Description */
      if (!(m->pub.os_type = keep(p, text(c))))
        return -1;
    }
  }
  return 0;
}

/* VirtualBox keeps its machine in vbox:Machine, whose children are in the
 * document's default namespace: <Hardware><Firmware type="EFI"/>. */
static int find_firmware(struct parse *p, const xmlNode *n) {
  for (const xmlNode *c = n; c && !p->m->pub.firmware; c = c->next) {
    if (c->type != XML_ELEMENT_NODE)
      continue;
    if (is_elem(c, "Firmware")) {
      char *t = own(xmlGetNoNsProp(c, (const xmlChar *)"type"));
      if (t) {
        for (char *q = t; *q; q++)
          *q = (char)(*q >= 'A' && *q <= 'Z' ? *q - 'A' + 'a' : *q);
        if (!(p->m->pub.firmware = keep(p, t)))
          return -1;
      }
    }
    if (c->children && find_firmware(p, c->children) != 0)
      return -1;
  }
  return 0;
}

static int read_vbox_firmware(struct parse *p, const xmlNode *n) {
  for (const xmlNode *c = n; c && !p->m->pub.firmware; c = c->next)
    if (is_elem(c, "Machine") && ns_is(c, NS_VBOX) && c->children &&
        find_firmware(p, c->children) != 0)
      return -1;
  return 0;
}

/* The first VirtualSystem under N (depth first: inside a
 * VirtualSystemCollection too). */
static const xmlNode *find_system(const struct parse *p, const xmlNode *n) {
  for (const xmlNode *c = n->children; c; c = c->next) {
    if (is_ovf(p, c, "VirtualSystem"))
      return c;
    if (is_ovf(p, c, "VirtualSystemCollection")) {
      const xmlNode *s = find_system(p, c);
      if (s)
        return s;
    }
  }
  return NULL;
}

static int read_envelope(struct parse *p, const xmlNode *root) {
  struct ovf_model *m = p->m;
  m->pub.ovf_version = ns_is(root, NS_OVF2) ? 2 : 1;
  m->pub.os_id = -1;
  struct file_ref *refs = NULL;
  size_t n_refs = 0;
  int r = 0;
  /* Only the first References is read: REFS is set (never NULL) once it
   * is, even when it lists no File, so a second one cannot replace (and
   * leak) it. */
  for (const xmlNode *c = root->children; c && r == 0; c = c->next)
    if (is_ovf(p, c, "References"))
      r = refs ? 0 : read_references(p, c, &refs, &n_refs);
  for (const xmlNode *c = root->children; c && r == 0; c = c->next) {
    if (is_ovf(p, c, "DiskSection") && !m->disks)
      r = read_disks(p, c, refs, n_refs);
    else if (is_ovf(p, c, "NetworkSection") && !m->networks)
      r = read_networks(p, c);
  }
  free_refs(refs, n_refs);
  if (r != 0)
    return -1;
  const xmlNode *vs = find_system(p, root);
  if (!vs)
    return 0; /* disks only: no hardware to describe */
  char *id = attr(p, vs, "id");
  for (const xmlNode *c = vs->children; c && r == 0; c = c->next) {
    if (is_ovf(p, c, "Name") && !m->pub.name) {
      if (!(m->pub.name = keep(p, text(c))))
        r = -1;
    } else if (is_ovf(p, c, "VirtualHardwareSection")) {
      if (!m->pub.cpus && !m->pub.memory_mib)
        r = read_hardware(p, c);
    } else if (is_ovf(p, c, "OperatingSystemSection")) {
      r = read_os(p, c);
    }
  }
  if (r == 0)
    r = read_vbox_firmware(p, vs->children);
  if (r == 0 && !m->pub.name && id) {
    m->pub.name = keep(p, id);
    id = NULL;
    if (!m->pub.name)
      r = -1;
  }
  free(id);
  return r;
}

/* ---- parse --------------------------------------------------------------- */

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init(void) {
  xmlInitParser();
}

struct vmdk_ovf *ovf_parse(const char *xml, size_t len, const char *name) {
  pthread_once(&xml_once, xml_init);
  if (len > INT32_MAX) {
    set_error(EFBIG, "%s: OVF of %zu bytes is too large", name, len);
    return NULL;
  }
  xmlParserCtxtPtr ctx = xmlNewParserCtxt();
  if (!ctx) {
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  xmlDocPtr doc = xmlCtxtReadMemory(ctx, xml, (int)len, name, NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR |
                                        XML_PARSE_NOWARNING);
  if (!doc) {
    const xmlError *e = xmlCtxtGetLastError(ctx);
    char msg[256] = "not well-formed";
    if (e && e->message) {
      snprintf(msg, sizeof msg, "%s", e->message);
      size_t n = strlen(msg);
      while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    }
    set_error(EINVAL, "%s: line %d: not a valid XML document: %s", name,
              e ? e->line : 0, msg);
    xmlFreeParserCtxt(ctx);
    return NULL;
  }
  xmlFreeParserCtxt(ctx);
  struct ovf_model *m = calloc(1, sizeof *m);
  if (!m) {
    xmlFreeDoc(doc);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  struct parse p = {.name = name, .m = m};
  const xmlNode *root = xmlDocGetRootElement(doc);
  int r;
  if (!root || !is_elem(root, "Envelope") ||
      !(ns_is(root, NS_OVF1) || ns_is(root, NS_OVF2))) {
    r = set_error(
        EINVAL,
        "%s: not an OVF descriptor: the root element is "
        "%s%s%s, not an Envelope in the OVF 1.x or 2.x "
        "namespace",
        name,
        root && root->ns && root->ns->href ? (const char *)root->ns->href : "",
        root && root->ns && root->ns->href ? ":" : "",
        root ? (const char *)root->name : "(none)");
  } else {
    p.ns = root->ns->href;
    r = read_envelope(&p, root);
  }
  xmlFreeDoc(doc);
  if (r != 0) {
    vmdk_ovf_free(&m->pub);
    return NULL;
  }
  m->pub.disks = m->disks;
  m->pub.networks = m->networks;
  return &m->pub;
}

void vmdk_ovf_free(struct vmdk_ovf *ovf) {
  if (!ovf)
    return;
  struct ovf_model *m = (struct ovf_model *)ovf;
  for (size_t i = 0; i < m->n_strings; i++)
    free(m->strings[i]);
  free(m->strings);
  free(m->disks);
  free(m->networks);
  free(m);
}
