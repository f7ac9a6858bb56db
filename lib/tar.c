/* SPDX-License-Identifier: BSD-3-Clause */
/* A bounded, validating tar reader (ustar, pax, GNU), for OVA files.
 *
 * tar_open reads every header once, in order, and keeps the members'
 * names, data offsets and sizes: nothing is extracted, a member is read in
 * place through a read-only window of the archive (vf_append_window, cut
 * at the member's end).
 *
 * Every header field is hostile: the checksum must match (the unsigned sum
 * POSIX asks for, or the signed one old tars wrote), sizes are octal or
 * GNU base-256 and must end inside the file, pax and GNU long-name data is
 * bounded (TAR_MAX_EXTRA), and so is the number of members
 * (TAR_MAX_MEMBERS): memory is bounded whatever the archive says. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ova.h"

#define BLOCK 512u
#define TAR_MAX_EXTRA                                                          \
  ((size_t)64 * 1024) /* bytes of a pax or long-name                           \
                         header's data */

/* Field offsets and lengths of a ustar header block. */
#define H_NAME 0
#define H_NAME_LEN 100
#define H_SIZE 124
#define H_SIZE_LEN 12
#define H_CHKSUM 148
#define H_CHKSUM_LEN 8
#define H_TYPE 156
#define H_MAGIC 257
#define H_PREFIX 345
#define H_PREFIX_LEN 155

static bool is_zero_block(const uint8_t *b) {
  for (unsigned i = 0; i < BLOCK; i++)
    if (b[i])
      return false;
  return true;
}

/* An octal field: leading spaces, digits, then NUL or spaces to its end.
 * False when it is anything else or does not fit 63 bits. */
static bool parse_octal(const uint8_t *p, size_t n, uint64_t *v) {
  size_t i = 0;
  while (i < n && p[i] == ' ')
    i++;
  uint64_t x = 0;
  size_t digits = 0;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
    if (x >> 60)
      return false;
    x = x * 8 + (uint64_t)(p[i] - '0');
  }
  for (; i < n; i++)
    if (p[i] != ' ' && p[i] != '\0')
      return false;
  if (digits == 0 && !(n > 0 && p[0] == '\0'))
    return false;
  *v = x;
  return true;
}

/* The size field: octal, or GNU base-256 (first byte 0x80, big-endian).
 * False when invalid or above 2^63 - 1. */
static bool parse_size(const uint8_t *p, uint64_t *v) {
  if (p[0] == 0x80) {
    uint64_t x = 0;
    for (unsigned i = 1; i < H_SIZE_LEN; i++) {
      if (x >> 55)
        return false;
      x = x << 8 | p[i];
    }
    if (x > (uint64_t)INT64_MAX)
      return false;
    *v = x;
    return true;
  }
  return parse_octal(p, H_SIZE_LEN, v);
}

bool tar_probe(const uint8_t block[512]) {
  if (memcmp(block + H_MAGIC, "ustar", 5) != 0)
    return false;
  uint64_t want;
  if (!parse_octal(block + H_CHKSUM, H_CHKSUM_LEN, &want))
    return false;
  uint64_t u = 0;
  int64_t s = 0;
  for (unsigned i = 0; i < BLOCK; i++) {
    uint8_t c = i >= H_CHKSUM && i < H_CHKSUM + H_CHKSUM_LEN ? ' ' : block[i];
    u += c;
    s += (int8_t)c;
  }
  return u == want || (s >= 0 && (uint64_t)s == want);
}

/* NAME with leading "./" and trailing "/" removed, malloc'ed. */
static char *normalize(const char *name, size_t n) {
  while (n >= 2 && name[0] == '.' && name[1] == '/') {
    name += 2;
    n -= 2;
    while (n && *name == '/') {
      name++;
      n--;
    }
  }
  while (n > 1 && name[n - 1] == '/')
    n--;
  return strndup(name, n);
}

/* Record from pax extended header data: "LEN KEY=VALUE\n"...  Sets *PATH
 * (malloc'ed, replacing), *SIZE (when given; *HAS_SIZE) and *SPARSE (a
 * GNU.sparse key).  0, or -1 with the error set (AT: the header's
 * offset). */
static int parse_pax(const struct tar *t, uint64_t at, const char *d, size_t n,
                     char **path, uint64_t *size, bool *has_size,
                     bool *sparse) {
  size_t i = 0;
  while (i < n) {
    if (d[i] == '\0') /* some writers pad with NULs */
      break;
    size_t len = 0, j = i;
    while (j < n && d[j] >= '0' && d[j] <= '9' && len < n)
      len = len * 10 + (size_t)(d[j++] - '0');
    if (j == i || j >= n || d[j] != ' ' || len <= j - i + 1 || len > n - i ||
        d[i + len - 1] != '\n')
      return set_error(EINVAL,
                       "%s: tar header at offset %" PRIu64
                       ": pax record at byte %zu of its %zu bytes is "
                       "malformed",
                       t->path, at, i, n);
    const char *key = d + j + 1, *end = d + i + len - 1;
    const char *eq = memchr(key, '=', (size_t)(end - key));
    if (!eq)
      return set_error(EINVAL,
                       "%s: tar header at offset %" PRIu64
                       ": pax record at byte %zu has no '='",
                       t->path, at, i);
    size_t klen = (size_t)(eq - key);
    const char *val = eq + 1;
    size_t vlen = (size_t)(end - val);
    if (klen == 4 && memcmp(key, "path", 4) == 0) {
      free(*path);
      if (!(*path = normalize(val, vlen)))
        return set_error(ENOMEM, "out of memory");
    } else if (klen == 4 && memcmp(key, "size", 4) == 0) {
      uint64_t v = 0;
      size_t k = 0;
      for (; k < vlen && val[k] >= '0' && val[k] <= '9'; k++) {
        if (v > ((uint64_t)INT64_MAX - 9) / 10)
          break;
        v = v * 10 + (uint64_t)(val[k] - '0');
      }
      if (k == 0 || k != vlen)
        return set_error(EINVAL,
                         "%s: tar header at offset %" PRIu64
                         ": pax size \"%.*s\" is not a number "
                         "below 2^63",
                         t->path, at, (int)(vlen > 40 ? 40 : vlen), val);
      *size = v;
      *has_size = true;
    } else if (klen > 11 && memcmp(key, "GNU.sparse.", 11) == 0) {
      *sparse = true;
    }
    i += len;
  }
  return 0;
}

static int add_member(struct tar *t, char *name, uint64_t hdr, uint64_t off,
                      uint64_t size, char type, size_t *cap) {
  if (t->n_members == TAR_MAX_MEMBERS) {
    free(name);
    return set_error(EFBIG,
                     "%s: tar archive lists more than %u members "
                     "(at offset %" PRIu64 ")",
                     t->path, TAR_MAX_MEMBERS, hdr);
  }
  if (t->n_members == *cap) {
    size_t c = *cap ? *cap * 2 : 8;
    struct tar_member *m = realloc(t->members, c * sizeof *m);
    if (!m) {
      free(name);
      return set_error(ENOMEM, "out of memory");
    }
    t->members = m;
    *cap = c;
  }
  t->members[t->n_members++] = (struct tar_member){.name = name,
                                                   .header_offset = hdr,
                                                   .offset = off,
                                                   .size = size,
                                                   .type = type};
  return 0;
}

/* Walk the headers from offset 0 to the end of the archive. */
static int read_headers(struct tar *t) {
  uint64_t fsize = t->f->size, off = 0;
  uint8_t h[BLOCK];
  char *pend_name = NULL; /* from a pax "path" or a GNU long name */
  uint64_t pend_size = 0;
  bool pend_has_size = false, pend_sparse = false;
  uint64_t pend_at = 0; /* the first header of the member */
  bool pending = false;
  size_t cap = 0;
  int r = -1;
  for (;;) {
    if (off == fsize) { /* the end, without the end blocks */
      if (pending) {
        set_error(EINVAL,
                  "%s: tar archive is truncated: it ends after the "
                  "extended header at offset %" PRIu64
                  ", before the member it describes",
                  t->path, pend_at);
        goto out;
      }
      break;
    }
    if (fsize - off < BLOCK) {
      set_error(EINVAL,
                "%s: tar archive is truncated: the header at offset "
                "%" PRIu64 " is cut after %" PRIu64 " of its 512 bytes",
                t->path, off, fsize - off);
      goto out;
    }
    if (vf_pread(t->f, h, BLOCK, off) != 0)
      goto out;
    if (is_zero_block(h)) {
      if (pending) {
        set_error(EINVAL,
                  "%s: tar archive ends (a zero block at offset "
                  "%" PRIu64 ") after an extended header, before the "
                  "member it describes",
                  t->path, off);
        goto out;
      }
      break; /* the end-of-archive blocks */
    }
    if (memcmp(h + H_MAGIC, "ustar", 5) != 0) {
      if (off == 0)
        set_error(EINVAL,
                  "%s: not a tar archive: no \"ustar\" magic at "
                  "offset 257",
                  t->path);
      else
        set_error(EINVAL,
                  "%s: tar header at offset %" PRIu64
                  " has no \"ustar\" magic (the member before it "
                  "ends there)",
                  t->path, off);
      goto out;
    }
    uint64_t want;
    if (!parse_octal(h + H_CHKSUM, H_CHKSUM_LEN, &want)) {
      set_error(EINVAL,
                "%s: tar header at offset %" PRIu64
                ": checksum field \"%.8s\" is not an octal number",
                t->path, off, (const char *)h + H_CHKSUM);
      goto out;
    }
    if (!tar_probe(h)) {
      uint64_t sum = 0;
      for (unsigned i = 0; i < BLOCK; i++)
        sum += i >= H_CHKSUM && i < H_CHKSUM + H_CHKSUM_LEN ? ' ' : h[i];
      set_error(EINVAL,
                "%s: tar header at offset %" PRIu64
                ": bad checksum: the header says %" PRIu64 " (octal %" PRIo64
                "), its bytes add up to %" PRIu64,
                t->path, off, want, want, sum);
      goto out;
    }
    uint64_t size;
    if (!parse_size(h + H_SIZE, &size)) {
      set_error(EINVAL,
                "%s: tar header at offset %" PRIu64
                ": size field is not an octal or base-256 number "
                "below 2^63",
                t->path, off);
      goto out;
    }
    char type = (char)h[H_TYPE];
    if (!pending)
      pend_at = off;
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      /* Extended data for the next member ('x', 'L'), or to skip ('g':
       * global pax, 'K': a long link name). */
      if (size > fsize - off - BLOCK) {
        set_error(EINVAL,
                  "%s: tar header at offset %" PRIu64 ": its %" PRIu64
                  " bytes of extended data end past "
                  "the end of the archive (%" PRIu64 " bytes)",
                  t->path, off, size, fsize);
        goto out;
      }
      if (type == 'x' || type == 'L') {
        if (size > TAR_MAX_EXTRA) {
          set_error(EFBIG,
                    "%s: tar header at offset %" PRIu64 ": %" PRIu64
                    " bytes of %s data (at most %zu)",
                    t->path, off, size,
                    type == 'x' ? "pax header" : "GNU long name",
                    TAR_MAX_EXTRA);
          goto out;
        }
        char *d = malloc((size_t)size + 1);
        if (!d) {
          set_error(ENOMEM, "out of memory");
          goto out;
        }
        if (vf_pread(t->f, d, (size_t)size, off + BLOCK) != 0) {
          free(d);
          goto out;
        }
        d[size] = '\0';
        int pr = 0;
        if (type == 'x') {
          pr = parse_pax(t, off, d, (size_t)size, &pend_name, &pend_size,
                         &pend_has_size, &pend_sparse);
        } else {
          free(pend_name);
          if (!(pend_name = normalize(d, strnlen(d, (size_t)size))))
            pr = set_error(ENOMEM, "out of memory");
        }
        free(d);
        if (pr != 0)
          goto out;
        pending = type == 'x' || type == 'L' || pending;
      }
      off += BLOCK + div_round_up(size, BLOCK) * BLOCK;
      if (off > fsize)
        off = fsize;
      continue;
    }
    /* A member. */
    if (pend_has_size)
      size = pend_size;
    uint64_t data = off + BLOCK;
    char *name = pend_name;
    pend_name = NULL;
    if (!name) {
      size_t n = strnlen((const char *)h + H_NAME, H_NAME_LEN);
      size_t pn = 0;
      bool posix = memcmp(h + H_MAGIC, "ustar\0", 6) == 0;
      if (posix)
        pn = strnlen((const char *)h + H_PREFIX, H_PREFIX_LEN);
      char full[H_PREFIX_LEN + 1 + H_NAME_LEN + 1];
      int len = snprintf(full, sizeof full, "%.*s%s%.*s", (int)pn,
                         (const char *)h + H_PREFIX, pn ? "/" : "", (int)n,
                         (const char *)h + H_NAME);
      name = normalize(full, (size_t)len);
      if (!name) {
        set_error(ENOMEM, "out of memory");
        goto out;
      }
    }
    if (type == '\0' || type == '7')
      type = '0';
    if (pend_sparse)
      type = 'S';
    /* Links and directories carry no data, whatever the size field says
     * (POSIX); every other type is followed by SIZE bytes. */
    if (type == '1' || type == '2' || type == '5')
      size = 0;
    if (size > fsize - data) {
      set_error(EINVAL,
                "%s: tar member %s (header at offset %" PRIu64 "): its %" PRIu64
                " bytes of data at offset %" PRIu64
                " end past the end of the archive (%" PRIu64
                " bytes): the archive is truncated, or the size is wrong",
                t->path, name, pend_at, size, data, fsize);
      free(name);
      goto out;
    }
    if (add_member(t, name, pend_at, data, size, type, &cap) != 0)
      goto out;
    pending = pend_has_size = pend_sparse = false;
    off = data + div_round_up(size, BLOCK) * BLOCK;
    if (off > fsize) /* the last member's padding is cut: its data is whole */
      off = fsize;
  }
  r = 0;
out:
  free(pend_name);
  return r;
}

struct tar *tar_open(const char *path) {
  struct tar *t = calloc(1, sizeof *t);
  if (!t || !(t->path = strdup(path))) {
    free(t);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  t->f = vf_open(path, false, url_is_remote(path) ? OPEN_REMOTE : 0);
  if (!t->f || read_headers(t) != 0) {
    tar_close(t);
    return NULL;
  }
  return t;
}

void tar_close(struct tar *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->n_members; i++)
    free(t->members[i].name);
  free(t->members);
  vf_close(t->f);
  free(t->path);
  free(t);
}

const struct tar_member *tar_find(const struct tar *t, const char *name) {
  char *n = normalize(name, strlen(name));
  if (!n)
    return NULL;
  const struct tar_member *found = NULL;
  for (size_t i = t->n_members; i-- > 0 && !found;)
    if (strcmp(t->members[i].name, n) == 0)
      found = &t->members[i];
  free(n);
  return found;
}

static int check_regular(const struct tar *t, const struct tar_member *m) {
  if (m->type == '0')
    return 0;
  if (m->type == 'S')
    return set_error(ENOTSUP,
                     "%s: member %s is stored as a sparse file (GNU "
                     "sparse), which is not read in place",
                     t->path, m->name);
  return set_error(EINVAL,
                   "%s: member %s is not a regular file (tar type "
                   "'%c')",
                   t->path, m->name, m->type ? m->type : '0');
}

struct vfile *tar_open_member(const struct tar *t, const struct tar_member *m) {
  if (check_regular(t, m) != 0)
    return NULL;
  size_t n = strlen(t->path) + 1 + strlen(m->name) + 1;
  char *name = malloc(n);
  if (!name) {
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  snprintf(name, n, "%s:%s", t->path, m->name);
  /* A window from the member's data on (io.c), cut at its end: reads
   * past it read zeros, as past the end of a file.  Never written: archive
   * disks open read-only (ova_route), and writable is false. */
  struct vfile *f = vf_window(t->f, name, m->offset, m->size);
  free(name);
  return f;
}

int tar_read_member(const struct tar *t, const struct tar_member *m, size_t max,
                    char **text, size_t *len) {
  if (check_regular(t, m) != 0)
    return -1;
  if (m->size > max)
    return set_error(EFBIG,
                     "%s: member %s is %" PRIu64
                     " bytes, more than the %zu this reads",
                     t->path, m->name, m->size, max);
  char *b = malloc((size_t)m->size + 1);
  if (!b)
    return set_error(ENOMEM, "out of memory");
  if (vf_pread(t->f, b, (size_t)m->size, m->offset) != 0) {
    free(b);
    return -1;
  }
  b[m->size] = '\0';
  *text = b;
  *len = (size_t)m->size;
  return 0;
}
