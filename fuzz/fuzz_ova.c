/* SPDX-License-Identifier: BSD-3-Clause */
/* Fuzz target: an untrusted OVA (tar) or OVF (XML), through the internal
 * parsers of lib/tar.c, lib/ovf.c, lib/ova.c and the public API.
 *
 * Any input is written to the private folder as a.ova, then:
 *   - tar_open; when it opens, every member is looked at: its name, its
 *     data inside the archive (offset + size <= the file's length), the
 *     members in archive order (each header after the data before it);
 *     tar_find of each name finds that member or a later one of the same
 *     name; ".ovf" and ".mf" members are read whole (tar_read_member), the
 *     first few regular members are opened as windows
 *     (tar_open_member) whose bytes must be the input's;
 *   - ova_find_ovf: the first regular ".ovf" member; its text parsed with
 *     ovf_parse and the whole struct vmdk_ovf walked (every string, every
 *     array to its count, the invariants include/vmdkit.h promises);
 *   - vmdk_ovf_read("a.ova") must succeed exactly when that parse did and
 *     every disk file is a member of the size the OVF gives, stored as it
 *     is, and must give the same model;
 *   - vmdk_open_format of "a.ova" and "a.ova:MEMBER" (a few members, as a
 *     VMDK, AUTO and RAW), read-only and confined: info, block status
 *     (bounded), a few bounded reads; a member opened RAW must read as the
 *     input's bytes;
 *   - a read-write open of each of those paths must fail with EROFS, and
 *     no open may change a.ova.
 * An input that starts with '<' is OVF text too: ovf_parse on it, and
 * written as a.ovf, vmdk_ovf_read and vmdk_open_format of it (which must
 * agree with the parse, and never change the folder).
 *
 * Errors are expected and fine: hostile archives must be refused, cleanly
 * and with a message.
 */
#include <strings.h>

#include "fuzz_common.h"
#include "ova.h"

#define MAX_RUNS 256        /* runs looked at per block status call */
#define MAX_MEMBER_OPENS 4  /* "a.ova:MEMBER" paths tried */
#define MAX_WINDOWS 8       /* members opened as windows */
#define READ_MAX ((size_t)1 << 20) /* tar_read_member's limit (.mf) */
#define OVF_MAX ((size_t)16 << 20) /* the library's limit for an OVF */
#define CHUNK 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf_a[CHUNK], buf_b[CHUNK];

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strncasecmp(s + n - k, suffix, k) == 0;
}

static size_t use_str(const char *s) {
  return s ? strlen(s) : 0;
}

/* ---- the OVF model ------------------------------------------------------ */

static void walk_ovf(const struct vmdk_ovf *o) {
  size_t sum = 0;
  FZ_ASSERT(o->ovf_version == 1 || o->ovf_version == 2, "ovf_version %d",
            o->ovf_version);
  sum += use_str(o->name) + use_str(o->firmware) + use_str(o->os_type);
  FZ_ASSERT(o->os_id >= -1 && o->os_id < 65536, "os_id %d", o->os_id);
  FZ_ASSERT(o->cpus <= 1u << 20, "cpus %u", o->cpus);
  FZ_ASSERT(o->memory_mib <= (uint64_t)INT64_MAX >> 20, "memory_mib %llu",
            (unsigned long long)o->memory_mib);
  FZ_ASSERT(o->n_networks == 0 || o->networks != NULL,
            "%zu networks, no array", o->n_networks);
  for (size_t i = 0; i < o->n_networks; i++) {
    const struct vmdk_ovf_network *w = &o->networks[i];
    FZ_ASSERT(w->name != NULL, "network %zu has no name", i);
    sum += use_str(w->name) + use_str(w->description);
  }
  FZ_ASSERT(o->n_disks == 0 || o->disks != NULL, "%zu disks, no array",
            o->n_disks);
  for (size_t i = 0; i < o->n_disks; i++) {
    const struct vmdk_ovf_disk *d = &o->disks[i];
    FZ_ASSERT(d->id != NULL, "disk %zu has no id", i);
    sum += use_str(d->id) + use_str(d->file) + use_str(d->compression) +
           use_str(d->format) + use_str(d->controller) +
           use_str(d->controller_model);
    if (!d->file)
      FZ_ASSERT(d->file_bytes == 0 && !d->compression && !d->chunked,
                "disk %s: file details without a file", d->id);
    if (d->compression)
      FZ_ASSERT(*d->compression && strcmp(d->compression, "identity") != 0,
                "disk %s: compression \"%s\"", d->id, d->compression);
    FZ_ASSERT(d->chunked == 0 || d->chunked == 1, "disk %s: chunked %d",
              d->id, d->chunked);
    FZ_ASSERT(d->capacity_bytes <= (uint64_t)INT64_MAX,
              "disk %s: capacity %llu", d->id,
              (unsigned long long)d->capacity_bytes);
    FZ_ASSERT(d->populated_bytes >= -1, "disk %s: populated %lld", d->id,
              (long long)d->populated_bytes);
    FZ_ASSERT(d->controller || !d->controller_model,
              "disk %s: a controller model without a controller", d->id);
    FZ_ASSERT(d->unit >= -1 && d->unit < 65536, "disk %s: unit %d", d->id,
              d->unit);
  }
  (void)sum;
}

static bool same_str(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* Two parses of the same text give the same model. */
static void same_ovf(const struct vmdk_ovf *a, const struct vmdk_ovf *b) {
  FZ_ASSERT(a->ovf_version == b->ovf_version && same_str(a->name, b->name) &&
                a->cpus == b->cpus && a->memory_mib == b->memory_mib &&
                same_str(a->firmware, b->firmware) &&
                same_str(a->os_type, b->os_type) && a->os_id == b->os_id &&
                a->n_networks == b->n_networks && a->n_disks == b->n_disks,
            "two parses of one OVF differ");
  for (size_t i = 0; i < a->n_networks; i++)
    FZ_ASSERT(same_str(a->networks[i].name, b->networks[i].name) &&
                  same_str(a->networks[i].description,
                           b->networks[i].description),
              "network %zu differs", i);
  for (size_t i = 0; i < a->n_disks; i++) {
    const struct vmdk_ovf_disk *x = &a->disks[i], *y = &b->disks[i];
    FZ_ASSERT(same_str(x->id, y->id) && same_str(x->file, y->file) &&
                  x->file_bytes == y->file_bytes &&
                  same_str(x->compression, y->compression) &&
                  x->chunked == y->chunked &&
                  x->capacity_bytes == y->capacity_bytes &&
                  x->populated_bytes == y->populated_bytes &&
                  same_str(x->format, y->format) &&
                  same_str(x->controller, y->controller) &&
                  same_str(x->controller_model, y->controller_model) &&
                  x->unit == y->unit,
              "disk %zu differs", i);
  }
}

/* ---- a disk opened through the public API ------------------------------- */

struct walk {
  struct vmdk_disk *d;
  uint64_t size, next;
  unsigned runs;
};

static int on_run(void *opaque, const struct vmdk_run *r) {
  struct walk *w = opaque;
  FZ_ASSERT(r->offset == w->next, "run at %llu, expected %llu",
            (unsigned long long)r->offset, (unsigned long long)w->next);
  FZ_ASSERT(r->length > 0 && r->length <= w->size - r->offset,
            "run of %llu bytes at %llu on a disk of %llu",
            (unsigned long long)r->length, (unsigned long long)r->offset,
            (unsigned long long)w->size);
  (void)use_str(r->file);
  w->next = r->offset + r->length;
  uint64_t ends[2] = {r->offset, r->offset + r->length - 1};
  for (int i = 0; i < 2; i++) {
    uint8_t b = 0x5a;
    if (vmdk_pread(w->d, &b, 1, ends[i]) == 0 && (r->flags & VMDK_RUN_ZERO))
      FZ_ASSERT(b == 0, "byte %llu of a ZERO run reads as 0x%02x",
                (unsigned long long)ends[i], b);
  }
  return ++w->runs >= MAX_RUNS;
}

/* Info, block status and a few reads.  RAW (may be NULL): the bytes the
 * disk must read as (RAW_LEN of them: a member opened raw). */
static void use_disk(struct vmdk_disk *d, const uint8_t *raw, size_t raw_len) {
  struct vmdk_info info;
  uint64_t size = vmdk_get_size(d);
  if (vmdk_get_info(d, &info) == 0) {
    FZ_ASSERT(info.size_bytes == size, "info size %llu != %llu",
              (unsigned long long)info.size_bytes, (unsigned long long)size);
    size_t sum = use_str(info.format) + use_str(info.create_type) +
                 use_str(info.adapter_type) + use_str(info.hw_version) +
                 use_str(info.parent_hint);
    uint64_t covered = 0;
    for (size_t i = 0; i < info.n_extents; i++) {
      sum += use_str(info.extents[i].filename) +
             use_str(info.extents[i].type) + use_str(info.extents[i].access);
      covered += info.extents[i].size_bytes;
    }
    FZ_ASSERT(covered == size, "extents cover %llu bytes, the disk is %llu",
              (unsigned long long)covered, (unsigned long long)size);
    (void)sum;
  }
  if (raw)
    FZ_ASSERT(size == raw_len, "member opened raw: %llu bytes, it holds %zu",
              (unsigned long long)size, raw_len);
  if (size == 0) {
    FZ_ASSERT(vmdk_pread(d, buf_a, 1, 0) != 0, "read past the end worked");
    return;
  }
  struct walk w = {d, size, 0, 0};
  if (vmdk_block_status(d, 0, size, on_run, &w) == 0 && w.runs < MAX_RUNS)
    FZ_ASSERT(w.next == size, "runs end at %llu, the disk at %llu",
              (unsigned long long)w.next, (unsigned long long)size);
  for (unsigned i = 0; i < 4; i++) {
    uint64_t off = size / 4 * i;
    if (i == 3)
      off = size > CHUNK ? size - CHUNK : 0;
    size_t len = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
    if (vmdk_pread(d, buf_a, len, off) != 0) {
      FZ_ASSERT(!raw, "a member opened raw does not read: %s",
                vmdk_get_error());
      continue;
    }
    if (raw)
      FZ_ASSERT(memcmp(buf_a, raw + off, len) == 0,
                "member opened raw: %zu bytes at %llu are not its bytes", len,
                (unsigned long long)off);
    size_t cut = len / 2 + i;
    if (cut > len)
      cut = len;
    memset(buf_b, 0xa5, len);
    if (vmdk_pread(d, buf_b, cut, off) == 0 &&
        vmdk_pread(d, buf_b + cut, len - cut, off + cut) == 0)
      FZ_ASSERT(memcmp(buf_a, buf_b, len) == 0,
                "%zu bytes at %llu read differently in two pieces", len,
                (unsigned long long)off);
  }
  FZ_ASSERT(vmdk_pread(d, buf_a, 1, size) != 0, "read past the end worked");
}

/* Open PATH read-only (each format) and use it.  ARCHIVE: PATH names a
 * disk in the archive, which has no backing and must refuse a read-write
 * open with EROFS.  RAW as for use_disk (format RAW). */
static void open_path(const char *path, bool archive, const uint8_t *raw,
                      size_t raw_len) {
  static const int formats[] = {VMDK_FORMAT_AUTO, VMDK_FORMAT_VMDK,
                                VMDK_FORMAT_RAW};
  for (unsigned i = 0; i < 3; i++) {
    struct vmdk_disk *d =
        vmdk_open_format(path, formats[i], VMDK_OPEN_CONFINE);
    if (!d) {
      FZ_ASSERT(*vmdk_get_error(), "open failed without a message");
      if (fz_verbose())
        fprintf(stderr, "  open %s (format %d): %s\n", path, formats[i],
                vmdk_get_error());
      continue;
    }
    if (fz_verbose())
      fprintf(stderr, "  open %s (format %d): %llu bytes\n", path, formats[i],
              (unsigned long long)vmdk_get_size(d));
    if (archive)
      FZ_ASSERT(vmdk_get_backing(d) == NULL,
                "a disk in an archive has a backing");
    use_disk(d, formats[i] == VMDK_FORMAT_RAW ? raw : NULL, raw_len);
    vmdk_close(d);
  }
  if (!archive)
    return;
  struct vmdk_disk *d = vmdk_open_format(
      path, VMDK_FORMAT_AUTO, VMDK_OPEN_RDWR | VMDK_OPEN_CONFINE);
  FZ_ASSERT(!d && vmdk_get_errno() == EROFS,
            "a read-write open of %s: %s (errno %d)", path,
            d ? "opened" : vmdk_get_error(), vmdk_get_errno());
}

/* ---- the archive -------------------------------------------------------- */

/* Whether vmdk_ovf_read must accept the parsed OVF O of archive T: every
 * disk file a member of the size the OVF gives, stored as it is. */
static bool disks_in_archive(const struct tar *t, const struct vmdk_ovf *o) {
  for (size_t i = 0; i < o->n_disks; i++) {
    const struct vmdk_ovf_disk *d = &o->disks[i];
    if (!d->file)
      continue;
    if (d->compression || d->chunked)
      return false;
    const struct tar_member *m = tar_find(t, d->file);
    if (!m || (d->file_bytes && m->size != d->file_bytes))
      return false;
  }
  return true;
}

static void walk_archive(const char *path, const uint8_t *data, size_t size) {
  struct tar *t = tar_open(path);
  if (!t) {
    FZ_ASSERT(*vmdk_get_error(), "tar_open failed without a message");
    FZ_ASSERT(!vmdk_ovf_read(path), "vmdk_ovf_read read what tar refused");
    return;
  }
  FZ_ASSERT(t->n_members <= TAR_MAX_MEMBERS, "%zu members", t->n_members);
  uint64_t end = 0; /* of the data of the member before */
  unsigned windows = 0;
  for (size_t i = 0; i < t->n_members; i++) {
    const struct tar_member *m = &t->members[i];
    FZ_ASSERT(m->name != NULL, "member %zu has no name", i);
    size_t nlen = strlen(m->name);
    FZ_ASSERT(m->offset <= size && m->size <= size - m->offset,
              "member %zu (%s): %llu bytes at %llu in an archive of %zu", i,
              m->name, (unsigned long long)m->size,
              (unsigned long long)m->offset, size);
    FZ_ASSERT(m->header_offset >= end && m->header_offset + 512 <= m->offset,
              "member %zu (%s): header at %llu, data at %llu, the member "
              "before ends at %llu",
              i, m->name, (unsigned long long)m->header_offset,
              (unsigned long long)m->offset, (unsigned long long)end);
    FZ_ASSERT(m->type != '\0' && m->type != '7', "member %zu: type '%c'", i,
              m->type);
    end = m->offset + m->size;
    const struct tar_member *f = tar_find(t, m->name);
    FZ_ASSERT(f && f >= m && strcmp(f->name, m->name) == 0,
              "tar_find(\"%s\") finds %s", m->name,
              f ? f->name : "nothing");
    if (m->type == '0' && windows < MAX_WINDOWS) {
      windows++;
      struct vfile *w = tar_open_member(t, m);
      FZ_ASSERT(w, "a regular member does not open: %s", vmdk_get_error());
      FZ_ASSERT(w->size == m->size, "window of %llu bytes for a member of %llu",
                (unsigned long long)w->size, (unsigned long long)m->size);
      size_t len = m->size < CHUNK ? (size_t)m->size : CHUNK;
      uint64_t tail = m->size - len;
      FZ_ASSERT(vf_pread(w, buf_a, len, 0) == 0 &&
                    memcmp(buf_a, data + m->offset, len) == 0 &&
                    vf_pread(w, buf_b, len, tail) == 0 &&
                    memcmp(buf_b, data + m->offset + tail, len) == 0,
                "member %s does not read as its bytes", m->name);
      FZ_ASSERT(vf_pread(w, buf_a, 1, m->size) == 0 && buf_a[0] == 0,
                "member %s reads past its end", m->name);
      vf_close(w);
    } else if (m->type != '0') {
      FZ_ASSERT(!tar_open_member(t, m), "member %s of type '%c' opened",
                m->name, m->type);
    }
    if (ends_with(m->name, ".ovf") || ends_with(m->name, ".mf")) {
      char *text = NULL;
      size_t len = 0;
      int r = tar_read_member(t, m, READ_MAX, &text, &len);
      if (m->type == '0' && m->size <= READ_MAX) {
        FZ_ASSERT(r == 0, "member %s does not read: %s", m->name,
                  vmdk_get_error());
        FZ_ASSERT(len == m->size && text[len] == '\0' &&
                      memcmp(text, data + m->offset, len) == 0,
                  "member %s read as other bytes", m->name);
        free(text);
      } else {
        FZ_ASSERT(r != 0 && *vmdk_get_error(), "member %s of type '%c' read",
                  m->name, m->type);
      }
    }
    (void)nlen;
  }

  /* The OVF: the first regular member ending in .ovf. */
  const struct tar_member *om = ova_find_ovf(t);
  for (size_t i = 0; i < t->n_members && &t->members[i] != om; i++)
    FZ_ASSERT(!(t->members[i].type == '0' &&
                ends_with(t->members[i].name, ".ovf")),
              "ova_find_ovf skipped %s", t->members[i].name);
  struct vmdk_ovf *parsed = NULL;
  bool expect = false;
  if (om) {
    FZ_ASSERT(om->type == '0' && ends_with(om->name, ".ovf"),
              "ova_find_ovf found %s", om->name);
    char *xml;
    size_t len;
    if (tar_read_member(t, om, OVF_MAX, &xml, &len) == 0) {
      parsed = ovf_parse(xml, len, "member.ovf");
      free(xml);
      if (parsed) {
        walk_ovf(parsed);
        expect = disks_in_archive(t, parsed);
      } else {
        FZ_ASSERT(*vmdk_get_error(), "ovf_parse failed without a message");
      }
    }
  }
  struct vmdk_ovf *o = vmdk_ovf_read(path);
  FZ_ASSERT(!o == !expect, "vmdk_ovf_read %s: %s",
            o ? "accepted an OVF it must refuse" : "refused",
            o ? "" : vmdk_get_error());
  if (o) {
    walk_ovf(o);
    same_ovf(o, parsed);
  }
  vmdk_ovf_free(o);
  vmdk_ovf_free(parsed);

  /* The archive's disk, and a few members by name. */
  open_path(path, true, NULL, 0);
  unsigned tried = 0;
  for (size_t i = 0; i < t->n_members && tried < MAX_MEMBER_OPENS; i++) {
    const struct tar_member *m = &t->members[i];
    if (tar_find(t, m->name) != m) /* a later member replaces it */
      continue;
    tried++;
    size_t n = strlen(path) + 1 + strlen(m->name) + 1;
    char *p = malloc(n);
    FZ_ASSERT(p, "out of memory");
    snprintf(p, n, "%s:%s", path, m->name);
    open_path(p, true, m->type == '0' ? data + m->offset : NULL,
              (size_t)m->size);
    free(p);
  }
  tar_close(t);
}

/* Whether vmdk_ovf_read of an .ovf file must accept the disk file NAME: a
 * plain relative name (no URL, no absolute path, no ".."). */
static bool relative(const char *name) {
  if (!*name || name[0] == '/' || strstr(name, "://"))
    return false;
  for (const char *s = name; s; s = strchr(s, '/') ? strchr(s, '/') + 1 : NULL)
    if (strncmp(s, "..", 2) == 0 && (s[2] == '/' || s[2] == '\0'))
      return false;
  return true;
}

static void walk_ovf_text(const uint8_t *data, size_t size) {
  struct vmdk_ovf *parsed = ovf_parse((const char *)data, size, "input.ovf");
  bool expect = parsed != NULL;
  if (parsed) {
    walk_ovf(parsed);
    for (size_t i = 0; i < parsed->n_disks; i++)
      if (parsed->disks[i].file && !relative(parsed->disks[i].file))
        expect = false;
  } else {
    FZ_ASSERT(*vmdk_get_error(), "ovf_parse failed without a message");
  }
  char path[512];
  fz_path(path, sizeof path, "a.ovf");
  struct vmdk_ovf *o = vmdk_ovf_read(path);
  FZ_ASSERT(!o == !expect, "vmdk_ovf_read %s: %s",
            o ? "accepted an OVF it must refuse" : "refused",
            o ? "" : vmdk_get_error());
  if (o) {
    walk_ovf(o);
    same_ovf(o, parsed);
  }
  vmdk_ovf_free(o);
  vmdk_ovf_free(parsed);
  /* Its disk: a file next to it (the folder holds a.ovf and a.ova). */
  open_path(path, false, NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_tmpdir();
  fz_clear();
  fz_write_file("a.ova", data, size);
  bool xml = size > 0 && data[0] == '<';
  if (xml)
    fz_write_file("a.ovf", data, size);
  struct snapshot s;
  snap_take(&s);
  if (xml)
    walk_ovf_text(data, size);
  char path[512];
  fz_path(path, sizeof path, "a.ova");
  walk_archive(path, data, size);
  snap_verify(&s, "reading and opening the archive");
  snap_free(&s);
  fz_clear();
  return 0;
}
