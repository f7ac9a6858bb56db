/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdk_ova_verify: is an OVA whole and what its manifest says?
 *
 * The checks, each problem reported once with its numbers (never just the
 * first one), in this order:
 *  1. the archive: every tar header valid and every member whole
 *     (tar_open; a damaged archive is one problem and ends the check,
 *     nothing past it can be trusted);
 *  2. the order vSphere requires: the OVF first, the manifest (if any)
 *     right after it (a certificate may follow it), the files after them;
 *  3. the manifest: each "ALGO(NAME)= HEX" line well-formed, NAME a member,
 *     the digest (SHA1, SHA256 or SHA512) that of the member's bytes; every
 *     member but the manifest and the certificate listed; an OVA without a
 *     manifest is a problem too (nothing can vouch for its bytes);
 *  4. the OVF: well-formed, every file it names a member of the size it
 *     gives (vmdk_ovf_read);
 *  5. each disk of the OVF: opens (in place, read-only), its size is the
 *     OVF's capacity, and vmdk_check finds nothing wrong.
 * Digests are computed by reading each member once, in archive order. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "ova.h"

#define HASH_CHUNK ((size_t)1 << 20)
#define MAX_MANIFEST ((size_t)1 << 20)

struct verify {
  const char *path;
  vmdk_problem_cb cb;
  void *opaque;
  int problems;
};

static void problem(struct verify *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem(struct verify *v, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  v->problems++;
  if (v->cb)
    v->cb(v->opaque, VMDK_PROBLEM_CORRUPT, msg);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* The digest ALGO ("SHA256") of member M, lower-case hex into OUT. */
static int member_digest(const struct tar *t, const struct tar_member *m,
                         const EVP_MD *md, char *out, size_t cap) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  uint8_t *buf = malloc(HASH_CHUNK);
  int r = 0;
  if (!ctx || !buf || EVP_DigestInit_ex(ctx, md, NULL) != 1)
    r = set_error(ENOMEM, "%s: out of memory for a digest", t->path);
  for (uint64_t done = 0; r == 0 && done < m->size;) {
    size_t n = m->size - done < HASH_CHUNK ? (size_t)(m->size - done)
                                           : HASH_CHUNK;
    r = vf_pread(t->f, buf, n, m->offset + done);
    if (r == 0 && EVP_DigestUpdate(ctx, buf, n) != 1)
      r = set_error(EIO, "%s: digest failed (libcrypto)", t->path);
    done += n;
  }
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (r == 0 && EVP_DigestFinal_ex(ctx, d, &len) != 1)
    r = set_error(EIO, "%s: digest failed (libcrypto)", t->path);
  if (r == 0 && 2 * (size_t)len + 1 > cap)
    r = set_error(EINVAL, "%s: digest too long", t->path);
  for (unsigned i = 0; r == 0 && i < len; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
  EVP_MD_CTX_free(ctx);
  free(buf);
  return r;
}

/* 3. The manifest MF of archive T.  -1 only when a member cannot be read
 * (error set). */
static int check_manifest(struct verify *v, const struct tar *t,
                          const struct tar_member *mf) {
  char *text = NULL;
  size_t len = 0;
  if (tar_read_member(t, mf, MAX_MANIFEST, &text, &len) != 0) {
    problem(v, "%s", vmdk_get_error());
    return 0;
  }
  bool *listed = calloc(t->n_members + 1, sizeof *listed);
  if (!listed) {
    free(text);
    return set_error(ENOMEM, "out of memory");
  }
  int r = 0;
  unsigned lineno = 0;
  for (char *line = text, *next; r == 0 && line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    lineno++;
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r')
      line[--n] = '\0';
    if (n == 0)
      continue;
    /* ALGO(NAME)= HEX */
    char *open = strchr(line, '('), *close = strstr(line, ")=");
    if (!open || !close || close < open) {
      problem(v, "%s: %s line %u is not \"ALGO(FILE)= DIGEST\": \"%.80s\"",
              v->path, mf->name, lineno, line);
      continue;
    }
    *open = '\0';
    *close = '\0';
    const char *algo = line, *name = open + 1, *hex = close + 2;
    while (*hex == ' ')
      hex++;
    const EVP_MD *md = strcasecmp(algo, "SHA1") == 0     ? EVP_sha1()
                       : strcasecmp(algo, "SHA256") == 0 ? EVP_sha256()
                       : strcasecmp(algo, "SHA512") == 0 ? EVP_sha512()
                                                         : NULL;
    if (!md) {
      problem(v, "%s: %s line %u: unknown digest \"%s\" (SHA1, SHA256 or "
                 "SHA512)",
              v->path, mf->name, lineno, algo);
      continue;
    }
    const struct tar_member *m = tar_find(t, name);
    if (!m) {
      problem(v, "%s: %s line %u names %s, which is not in the archive",
              v->path, mf->name, lineno, name);
      continue;
    }
    listed[m - t->members] = true;
    char got[2 * EVP_MAX_MD_SIZE + 1];
    if (member_digest(t, m, md, got, sizeof got) != 0) {
      r = -1;
      break;
    }
    if (strcasecmp(got, hex) != 0)
      problem(v, "%s: %s: %s digest %s does not match the manifest's %.128s "
                 "(%" PRIu64 " bytes at offset %" PRIu64 ")",
              v->path, name, algo, got, hex, m->size, m->offset);
  }
  for (size_t i = 0; r == 0 && i < t->n_members; i++) {
    const struct tar_member *m = &t->members[i];
    if (!listed[i] && m != mf && m->type == '0' && !ends_with(m->name, ".cert"))
      problem(v, "%s: %s (%" PRIu64 " bytes) is not in the manifest %s",
              v->path, m->name, m->size, mf->name);
  }
  free(listed);
  free(text);
  return r;
}

static int ova_verify(const char *path, vmdk_problem_cb cb, void *opaque);

int vmdk_ova_verify(const char *path, vmdk_problem_cb cb, void *opaque) {
  char *url = NULL;
  if (url_is_remote(path)) { /* without its credentials from here on */
    if (remote_prepare(path, &url) != 0)
      return -1;
    path = url;
  }
  int r = ova_verify(path, cb, opaque);
  free(url);
  return r;
}

static int ova_verify(const char *path, vmdk_problem_cb cb, void *opaque) {
  struct verify v = {path, cb, opaque, 0};
  /* 1. The archive. */
  struct tar *t = tar_open(path);
  if (!t) {
    int err = vmdk_get_errno();
    if (err == ENOENT || err == EACCES || err == EISDIR || err == ENOMEM)
      return -1; /* nothing to check */
    problem(&v, "%s", vmdk_get_error());
    return v.problems;
  }
  /* 2. The order. */
  const struct tar_member *ovf = NULL, *mf = NULL;
  size_t i_mf = 0;
  for (size_t i = 0; i < t->n_members; i++) {
    const struct tar_member *m = &t->members[i];
    if (ends_with(m->name, ".ovf") && !ovf)
      ovf = m;
    if (ends_with(m->name, ".mf") && !mf) {
      mf = m;
      i_mf = i;
    }
  }
  if (!ovf)
    problem(&v, "%s: no OVF in the archive (%zu members)", path,
            t->n_members);
  else if (ovf != &t->members[0])
    problem(&v, "%s: the OVF %s is member %zu, not the first (vSphere reads "
                "it first)",
            path, ovf->name, (size_t)(ovf - t->members) + 1);
  if (!mf)
    problem(&v, "%s: no manifest (.mf): nothing vouches for the members' "
                "bytes",
            path);
  else if (i_mf != 1)
    problem(&v, "%s: the manifest %s is member %zu, not the second (right "
                "after the OVF)",
            path, mf->name, i_mf + 1);
  /* 3. The manifest. */
  int r = mf ? check_manifest(&v, t, mf) : 0;
  /* 4. The OVF; 5. the disks. */
  struct vmdk_ovf *o = r == 0 && ovf ? vmdk_ovf_read(path) : NULL;
  if (r == 0 && ovf && !o)
    problem(&v, "%s", vmdk_get_error());
  for (size_t i = 0; r == 0 && o && i < o->n_disks; i++) {
    const struct vmdk_ovf_disk *d = &o->disks[i];
    if (!d->file)
      continue; /* made empty at import */
    char *member = NULL;
    if (asprintf(&member, "%s:%s", path, d->file) < 0) {
      r = set_error(ENOMEM, "out of memory");
      break;
    }
    struct vmdk_disk *disk = vmdk_open_format(member, VMDK_FORMAT_AUTO, 0);
    if (!disk) {
      problem(&v, "%s", vmdk_get_error());
    } else {
      uint64_t size = vmdk_get_size(disk);
      if (d->capacity_bytes && size != d->capacity_bytes)
        problem(&v, "%s: disk %s is %" PRIu64 " bytes but the OVF gives "
                    "%s a capacity of %" PRIu64,
                path, d->file, size, d->id ? d->id : "it",
                d->capacity_bytes);
      struct vmdk_check_result res;
      if (vmdk_check(disk, &res, cb, opaque) != 0)
        problem(&v, "%s", vmdk_get_error());
      else if (res.corruptions)
        v.problems += (int)(res.corruptions < 1000 ? res.corruptions : 1000);
      vmdk_close(disk);
    }
    free(member);
  }
  vmdk_ovf_free(o);
  tar_close(t);
  return r != 0 ? -1 : v.problems;
}
