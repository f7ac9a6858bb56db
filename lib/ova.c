/* SPDX-License-Identifier: BSD-3-Clause */
/* OVA and OVF paths: which file, which member, which disk.
 *
 * An existing file is always opened as itself, whatever its name (a file
 * named "a.ova:b" stays that file).  Otherwise a path ending in ".ova" or
 * ".ovf" (any case), or such a path followed by ":NAME", is an archive
 * path (see ova_route in ova.h).  A disk inside an OVA is read in place: a
 * member of the tar is a read-only window of the archive; the files a
 * descriptor member names are members of the same archive (disk.c asks
 * disk_archive_file).  Nothing is extracted and no temporary file is
 * made. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "ova.h"

#define MAX_OVF_BYTES ((size_t)16 << 20) /* an OVF is a few KiB */

static bool ends_with(const char *s, size_t n, const char *suffix) {
  size_t k = strlen(suffix);
  return n >= k && strncasecmp(s + n - k, suffix, k) == 0;
}

const struct tar_member *ova_find_ovf(const struct tar *t) {
  for (size_t i = 0; i < t->n_members; i++) {
    const struct tar_member *m = &t->members[i];
    if (m->type == '0' && ends_with(m->name, strlen(m->name), ".ovf"))
      return m;
  }
  return NULL;
}

/* Split PATH into the archive or OVF file (malloc'ed *FILE) and the
 * member or disk file name after ':' (*NAME, malloc'ed, or NULL).  0: not
 * an archive path. */
static int split_url(const char *url, char **file, char **name) {
  size_t q = strcspn(url, "?#"); /* the path ends at the query */
  if (ends_with(url, q, ".ova") || ends_with(url, q, ".ovf")) {
    if (!(*file = strdup(url)))
      return set_error(ENOMEM, "out of memory");
    return 1;
  }
  /* "URL.ova:NAME[?QUERY]": the query belongs to the archive's URL */
  const char *c = strchr(url + strcspn(url, ":") + 3, ':');
  for (; c && (size_t)(c - url) < q; c = strchr(c + 1, ':')) {
    size_t n = (size_t)(c - url);
    if (!(ends_with(url, n, ".ova") || ends_with(url, n, ".ovf")))
      continue;
    if (asprintf(file, "%.*s%s", (int)n, url, url + q) < 0) {
      *file = NULL;
      return set_error(ENOMEM, "out of memory");
    }
    if (!(*name = url_decode(c + 1, q - n - 1))) {
      free(*file);
      *file = NULL;
      return set_error(ENOMEM, "out of memory");
    }
    return 1;
  }
  return 0;
}

static int split(const char *path, unsigned flags, char **file, char **name) {
  struct stat st;
  *file = *name = NULL;
  if (flags & OPEN_REMOTE)
    return split_url(path, file, name);
  if (stat(path, &st) == 0) {
    size_t n = strlen(path);
    if (!S_ISREG(st.st_mode) ||
        !(ends_with(path, n, ".ova") || ends_with(path, n, ".ovf")))
      return 0;
    if (!(*file = strdup(path)))
      return set_error(ENOMEM, "out of memory");
    return 1;
  }
  /* "FILE.ova:NAME": the first ':' that follows ".ova" or ".ovf" and
   * whose left part exists (a folder may have ':' in its name too). */
  for (const char *c = strchr(path, ':'); c; c = strchr(c + 1, ':')) {
    size_t n = (size_t)(c - path);
    if (!(ends_with(path, n, ".ova") || ends_with(path, n, ".ovf")))
      continue;
    char *f = strndup(path, n);
    if (!f)
      return set_error(ENOMEM, "out of memory");
    if (stat(f, &st) == 0 && S_ISREG(st.st_mode)) {
      if (!(*name = strdup(c + 1))) {
        free(f);
        return set_error(ENOMEM, "out of memory");
      }
      *file = f;
      return 1;
    }
    free(f);
  }
  return 0;
}

/* The OVF of the archive T parsed, or NULL: *OVF NULL without error when
 * T has none.  0 or -1. */
static int archive_ovf(const struct tar *t, struct vmdk_ovf **ovf) {
  *ovf = NULL;
  const struct tar_member *m = ova_find_ovf(t);
  if (!m)
    return 0;
  char *xml;
  size_t len;
  if (tar_read_member(t, m, MAX_OVF_BYTES, &xml, &len) != 0)
    return -1;
  size_t n = strlen(t->path) + strlen(m->name) + 2;
  char *name = malloc(n);
  if (!name) {
    free(xml);
    return set_error(ENOMEM, "out of memory");
  }
  snprintf(name, n, "%s:%s", t->path, m->name);
  *ovf = ovf_parse(xml, len, name);
  free(xml);
  free(name);
  return *ovf ? 0 : -1;
}

/* Every disk the OVF of archive T lists must be there, whole and stored
 * as it is read: no compression, no chunks.  0 or -1. */
static int check_disk_files(const struct tar *t, const struct vmdk_ovf *o) {
  for (size_t i = 0; i < o->n_disks; i++) {
    const struct vmdk_ovf_disk *d = &o->disks[i];
    if (!d->file)
      continue;
    if (d->compression)
      return set_error(ENOTSUP,
                       "%s: the OVF's disk %s (%s) is stored "
                       "compressed (ovf:compression=\"%s\"), which "
                       "is not read in place",
                       t->path, d->id, d->file, d->compression);
    if (d->chunked)
      return set_error(ENOTSUP,
                       "%s: the OVF's disk %s (%s) is stored in "
                       "chunks (ovf:chunkSize), which is not read "
                       "in place",
                       t->path, d->id, d->file);
    const struct tar_member *m = tar_find(t, d->file);
    if (!m)
      return set_error(ENOENT,
                       "%s: the OVF names disk %s's file %s, which "
                       "is not in the archive (%zu members)",
                       t->path, d->id, d->file, t->n_members);
    if (d->file_bytes && m->size != d->file_bytes)
      return set_error(EINVAL,
                       "%s: the OVF gives disk %s's file %s a size "
                       "of %" PRIu64 " bytes, the archive member is "
                       "%" PRIu64 " bytes",
                       t->path, d->id, d->file, d->file_bytes, m->size);
  }
  return 0;
}

/* A disk file NAME the OVF at OVF_PATH names: a plain relative path
 * inside the OVF's folder (no URL, no absolute path, no ".."). */
static int check_relative(const char *ovf_path, const char *name) {
  bool bad = name[0] == '/' || strstr(name, "://") != NULL || !*name;
  for (const char *s = name; !bad && s;) {
    if (strncmp(s, "..", 2) == 0 && (s[2] == '/' || s[2] == '\0'))
      bad = true;
    s = strchr(s, '/');
    if (s)
      s++;
  }
  if (bad)
    return set_error(EPERM,
                     "%s: disk file \"%s\" is not a file in the OVF's "
                     "folder (a URL, an absolute path or \"..\")",
                     ovf_path, name);
  return 0;
}

static char *sibling(const char *path, const char *name) {
  if (url_is_remote(path))
    return url_resolve(path, name);
  const char *slash = strrchr(path, '/');
  size_t dn = slash ? (size_t)(slash - path) + 1 : 0;
  char *p = malloc(dn + strlen(name) + 1);
  if (p) {
    memcpy(p, path, dn);
    strcpy(p + dn, name);
  }
  return p;
}

static struct vmdk_disk *open_ovf(const char *path, const char *name,
                                  int format, unsigned flags) {
  struct vmdk_ovf *o = vmdk_ovf_read(path);
  if (!o)
    return NULL;
  const char *file = NULL;
  if (name) {
    for (size_t i = 0; i < o->n_disks && !file; i++)
      if (o->disks[i].file && strcmp(o->disks[i].file, name) == 0)
        file = o->disks[i].file;
    if (!file)
      set_error(ENOENT, "%s: the OVF lists no disk file %s", path, name);
  } else {
    for (size_t i = 0; i < o->n_disks && !file; i++)
      file = o->disks[i].file;
    if (!file)
      set_error(ENOENT, "%s: the OVF lists no disk with a file", path);
  }
  char *p = NULL;
  if (file && check_relative(path, file) == 0 && !(p = sibling(path, file)))
    set_error(ENOMEM, "out of memory");
  vmdk_ovf_free(o);
  if (!p)
    return NULL;
  /* The disk file is opened as an image file, never routed again as an
   * archive path: an OVF naming itself, another OVF or "X.ovf:NAME" would
   * otherwise recurse without end (a stack overflow). */
  struct vmdk_disk *d = disk_open_confined(p, format, flags, NULL);
  free(p);
  return d;
}

static struct vmdk_disk *open_ova(const char *path, const char *name,
                                  int format, unsigned flags) {
  if (flags & VMDK_OPEN_RDWR) {
    set_error(EROFS,
              "%s: a disk inside an OVA is read-only (extract it to "
              "change it)",
              path);
    return NULL;
  }
  struct tar *t = tar_open(path);
  if (!t)
    return NULL;
  struct vmdk_ovf *o = NULL;
  const char *member = name;
  if (archive_ovf(t, &o) != 0 || (o && check_disk_files(t, o) != 0))
    goto fail;
  if (!member && o) {
    for (size_t i = 0; i < o->n_disks && !member; i++)
      member = o->disks[i].file;
    if (!member) {
      set_error(ENOENT, "%s: the OVF lists no disk with a file", path);
      goto fail;
    }
  } else if (!member) { /* no OVF: the first VMDK member */
    for (size_t i = 0; i < t->n_members && !member; i++)
      if (t->members[i].type == '0' &&
          ends_with(t->members[i].name, strlen(t->members[i].name), ".vmdk"))
        member = t->members[i].name;
    if (!member) {
      set_error(ENOENT,
                "%s: the archive has no OVF and no .vmdk member (%zu "
                "members)",
                path, t->n_members);
      goto fail;
    }
  }
  const struct tar_member *m = tar_find(t, member);
  if (!m) {
    set_error(ENOENT, "%s: no member %s in the archive (%zu members)", path,
              member, t->n_members);
    goto fail;
  }
  char *mname = strdup(m->name);
  vmdk_ovf_free(o);
  if (!mname) {
    tar_close(t);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  struct vmdk_disk *d = disk_open_archived(
      t, mname, format == VMDK_FORMAT_AUTO ? VMDK_FORMAT_VMDK : format, flags);
  free(mname);
  return d;

fail:
  vmdk_ovf_free(o);
  tar_close(t);
  return NULL;
}

int ova_route(const char *path, int format, unsigned flags,
              struct vmdk_disk **d) {
  char *file, *name;
  *d = NULL;
  int r = split(path, flags, &file, &name);
  if (r <= 0)
    return r < 0 ? 1 : 0;
  if (ends_with(file, strlen(file), ".ovf"))
    *d = open_ovf(file, name, format, flags);
  else
    *d = open_ova(file, name, format, flags);
  free(file);
  free(name);
  return 1;
}

static struct vmdk_ovf *ovf_read(const char *path);

struct vmdk_ovf *vmdk_ovf_read(const char *path) {
  char *url = NULL;
  if (url_is_remote(path)) { /* without its credentials from here on */
    if (remote_prepare(path, &url) != 0)
      return NULL;
    path = url;
  }
  struct vmdk_ovf *o = ovf_read(path);
  free(url);
  return o;
}

static struct vmdk_ovf *ovf_read(const char *path) {
  size_t n = strlen(path);
  if (ends_with(path, n, ".ovf")) {
    struct vfile *f =
        vf_open(path, false, url_is_remote(path) ? OPEN_REMOTE : 0);
    if (!f)
      return NULL;
    if (f->size > MAX_OVF_BYTES) {
      set_error(EFBIG, "%s: an OVF of %" PRIu64 " bytes (at most %zu)", path,
                f->size, MAX_OVF_BYTES);
      vf_close(f);
      return NULL;
    }
    char *xml = malloc((size_t)f->size + 1);
    struct vmdk_ovf *o = NULL;
    if (!xml)
      set_error(ENOMEM, "out of memory");
    else if (vf_pread(f, xml, (size_t)f->size, 0) == 0)
      o = ovf_parse(xml, (size_t)f->size, path);
    free(xml);
    vf_close(f);
    for (size_t i = 0; o && i < o->n_disks; i++)
      if (o->disks[i].file && check_relative(path, o->disks[i].file) != 0) {
        vmdk_ovf_free(o);
        o = NULL;
      }
    return o;
  }
  struct tar *t = tar_open(path);
  if (!t)
    return NULL;
  struct vmdk_ovf *o = NULL;
  if (archive_ovf(t, &o) == 0 && !o)
    set_error(ENOENT,
              "%s: the archive has no OVF descriptor (no member "
              "ending in .ovf among its %zu)",
              path, t->n_members);
  if (o && check_disk_files(t, o) != 0) {
    vmdk_ovf_free(o);
    o = NULL;
  }
  tar_close(t);
  return o;
}
