/* SPDX-License-Identifier: BSD-3-Clause */
/* The text descriptor: parse what real producers write, print what the
 * strictest readers accept.
 *
 * Parsing is tolerant: CRLF, trailing blanks, comments anywhere, keys in
 * any case, quoted or bare values, text ending at the first NUL.  It is
 * strict about what matters: every extent line must be well formed, sizes
 * must be numbers that fit, and the extent type must be known (an unknown
 * type would silently change the disk size). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define DESC_MAX_EXTENTS 65536
#define DESC_MAX_KEYS 65536 /* header and ddb "key = value" lines (real
                               descriptors have a few dozen) */
#define DESC_MAX_LINE 4096

static const char *const type_names[] = {
    [EXT_FLAT] = "FLAT",         [EXT_SPARSE] = "SPARSE",
    [EXT_ZERO] = "ZERO",         [EXT_VMFS] = "VMFS",
    [EXT_VMFSSPARSE] = "VMFSSPARSE", [EXT_VMFSRDM] = "VMFSRDM",
    [EXT_VMFSRAW] = "VMFSRAW",   [EXT_SESPARSE] = "SESPARSE",
};
static const char *const access_names[] = {
    [ACC_RW] = "RW", [ACC_RDONLY] = "RDONLY", [ACC_NOACCESS] = "NOACCESS"};

const char *ext_type_name(enum ext_type t) {
  return type_names[t];
}
const char *ext_access_name(enum ext_access a) {
  return access_names[a];
}

bool desc_looks_like(const uint8_t *buf, size_t len) {
  static const char *const firsts[] = {
      "# Disk DescriptorFile", "# Disk Descriptor File",
      "#Disk Descriptor File", "#Disk DescriptorFile"};
  for (size_t i = 0; i < sizeof firsts / sizeof *firsts; i++) {
    size_t n = strlen(firsts[i]);
    if (len >= n && strncasecmp((const char *)buf, firsts[i], n) == 0)
      return true;
  }
  return false;
}

void desc_free(struct descriptor *d) {
  if (!d)
    return;
  free(d->create_type);
  free(d->parent_hint);
  for (size_t i = 0; i < d->n_header; i++) {
    free(d->header[i].key);
    free(d->header[i].value);
  }
  free(d->header);
  for (size_t i = 0; i < d->n_extents; i++)
    free(d->extents[i].filename);
  free(d->extents);
  for (size_t i = 0; i < d->n_ddb; i++) {
    free(d->ddb[i].key);
    free(d->ddb[i].value);
  }
  free(d->ddb);
  free(d);
}

/* The arrays' capacity is implied by their length: 8, then the next power
 * of two, grown when the length reaches it, so appending is amortised
 * O(1) (growing by one entry made a descriptor of 250000 "key=value" lines
 * take minutes to parse under ASan). */
static int kv_append(struct desc_kv **arr, size_t *n, const char *key,
                     const char *value) {
  struct desc_kv *a = *arr;
  if (*n == 0 || (*n >= 8 && is_power_of_2(*n))) {
    a = realloc(*arr, (*n ? *n * 2 : 8) * sizeof **arr);
    if (!a)
      return set_error(ENOMEM, "out of memory");
    *arr = a;
  }
  a[*n].key = strdup(key);
  a[*n].value = strdup(value);
  if (!a[*n].key || !a[*n].value) {
    free(a[*n].key);
    free(a[*n].value);
    return set_error(ENOMEM, "out of memory");
  }
  (*n)++;
  return 0;
}

const char *desc_get_ddb(const struct descriptor *d, const char *key) {
  for (size_t i = 0; i < d->n_ddb; i++)
    if (strcasecmp(d->ddb[i].key, key) == 0)
      return d->ddb[i].value;
  return NULL;
}

int desc_set_ddb(struct descriptor *d, const char *key, const char *value) {
  for (size_t i = 0; i < d->n_ddb; i++)
    if (strcasecmp(d->ddb[i].key, key) == 0) {
      char *v = strdup(value);
      if (!v)
        return set_error(ENOMEM, "out of memory");
      free(d->ddb[i].value);
      d->ddb[i].value = v;
      return 0;
    }
  return kv_append(&d->ddb, &d->n_ddb, key, value);
}

void desc_del_ddb(struct descriptor *d, const char *key) {
  for (size_t i = 0; i < d->n_ddb; i++)
    if (strcasecmp(d->ddb[i].key, key) == 0) {
      free(d->ddb[i].key);
      free(d->ddb[i].value);
      memmove(&d->ddb[i], &d->ddb[i + 1], (d->n_ddb - i - 1) * sizeof *d->ddb);
      d->n_ddb--;
      return;
    }
}

int desc_add_extent(struct descriptor *d, enum ext_access acc,
                    uint64_t sectors, enum ext_type type,
                    const char *filename, uint64_t offset, bool has_offset) {
  if (d->n_extents >= DESC_MAX_EXTENTS)
    return set_error(EFBIG, "too many extents (more than %d)",
                     DESC_MAX_EXTENTS);
  if (d->n_extents == d->extents_cap) {
    size_t cap = d->extents_cap ? d->extents_cap * 2 : 8;
    struct desc_extent *a = realloc(d->extents, cap * sizeof *d->extents);
    if (!a)
      return set_error(ENOMEM, "out of memory");
    d->extents = a;
    d->extents_cap = cap;
  }
  struct desc_extent *a = d->extents;
  struct desc_extent *x = &a[d->n_extents];
  x->access = acc;
  x->sectors = sectors;
  x->type = type;
  x->offset = offset;
  x->has_offset = has_offset;
  x->filename = NULL;
  if (filename && !(x->filename = strdup(filename)))
    return set_error(ENOMEM, "out of memory");
  d->n_extents++;
  return 0;
}

/* Parse an unsigned decimal number that must fit in 64 bits. */
static bool parse_u64(const char *s, const char **end, uint64_t *out) {
  if (!isdigit((unsigned char)*s))
    return false;
  uint64_t v = 0;
  while (isdigit((unsigned char)*s)) {
    if (mul_overflow_u64(v, 10, &v) ||
        add_overflow_u64(v, (uint64_t)(*s - '0'), &v))
      return false;
    s++;
  }
  *end = s;
  *out = v;
  return true;
}

static char *skip_blank(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  return s;
}

/* Cut a word or a "quoted string" off *S; returns it (NUL terminated in
 * place) or NULL if the quote is not closed. */
static char *take_token(char **s, bool *quoted) {
  char *p = skip_blank(*s);
  *quoted = false;
  if (*p == '"') {
    char *q = strchr(p + 1, '"');
    if (!q)
      return NULL;
    *q = '\0';
    *s = q + 1;
    *quoted = true;
    return p + 1;
  }
  char *start = p;
  while (*p && *p != ' ' && *p != '\t')
    p++;
  if (*p)
    *p++ = '\0';
  *s = p;
  return start;
}

static int parse_extent_line(struct descriptor *d, char *line,
                             const char *name, unsigned lineno) {
  char *s = line;
  bool q;
  char *acc = take_token(&s, &q);
  enum ext_access a = ACC_RW;
  if (strcasecmp(acc, "RW") == 0)
    a = ACC_RW;
  else if (strcasecmp(acc, "RDONLY") == 0)
    a = ACC_RDONLY;
  else
    a = ACC_NOACCESS;

  s = skip_blank(s);
  uint64_t sectors;
  const char *end;
  if (!parse_u64(s, &end, &sectors) || (*end && *end != ' ' && *end != '\t'))
    return set_error(EINVAL,
                     "%s: line %u: extent size \"%.*s\" is not a sector "
                     "count (a decimal number that fits 64 bits)",
                     name, lineno, (int)strcspn(s, " \t"), s);
  if (sectors > UINT64_MAX / SECTOR)
    return set_error(EFBIG, "%s: line %u: extent of %" PRIu64
                            " sectors is too large",
                     name, lineno, sectors);
  s = (char *)end;

  char *type = take_token(&s, &q);
  if (!type)
    return set_error(EINVAL, "%s: line %u: extent type has no closing quote",
                     name, lineno);
  int t = -1;
  for (size_t i = 0; i < sizeof type_names / sizeof *type_names; i++)
    if (strcasecmp(type, type_names[i]) == 0)
      t = (int)i;
  if (t < 0)
    return set_error(ENOTSUP, "%s: line %u: unknown extent type \"%s\"", name,
                     lineno, type);

  char *file = NULL;
  uint64_t offset = 0;
  bool has_offset = false;
  s = skip_blank(s);
  if (*s) {
    file = take_token(&s, &q);
    if (!file)
      return set_error(EINVAL, "%s: line %u: extent file name has no closing "
                               "quote",
                       name, lineno);
    s = skip_blank(s);
    if (*s) {
      if (!parse_u64(s, &end, &offset))
        return set_error(EINVAL, "%s: line %u: bad extent offset \"%s\"", name,
                         lineno, s);
      if (offset > UINT64_MAX / SECTOR)
        return set_error(EFBIG, "%s: line %u: extent offset %" PRIu64
                                " sectors is too large",
                         name, lineno, offset);
      has_offset = true;
      /* Extra fields (partition UUID, device id) are ignored. */
    }
  }
  if (t != EXT_ZERO && (!file || !*file))
    return set_error(EINVAL, "%s: line %u: %s extent without a file name",
                     name, lineno, type_names[t]);
  if (d->n_extents >= DESC_MAX_EXTENTS)
    return set_error(EFBIG, "%s: line %u: more than %d extents", name,
                     lineno, DESC_MAX_EXTENTS);
  if (t == EXT_ZERO) /* no storage: a file name or offset means nothing */
    return desc_add_extent(d, a, sectors, EXT_ZERO, NULL, 0, false);
  return desc_add_extent(d, a, sectors, (enum ext_type)t, file, offset,
                         has_offset);
}

static int set_str(char **dst, const char *v) {
  char *c = strdup(v);
  if (!c)
    return set_error(ENOMEM, "out of memory");
  free(*dst);
  *dst = c;
  return 0;
}

static int parse_cid(const char *v, uint32_t *out, const char *name,
                     const char *key, unsigned lineno) {
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 16);
  if (errno || end == v || *end || x > 0xffffffffULL)
    return set_error(EINVAL, "%s: line %u: %s is not a 32-bit hex number: "
                             "\"%s\"",
                     name, lineno, key, v);
  *out = (uint32_t)x;
  return 0;
}

static int parse_kv_line(struct descriptor *d, char *line, const char *name,
                         unsigned lineno) {
  char *eq = strchr(line, '=');
  char *key = line, *val = eq + 1;
  char *kend = eq;
  while (kend > key && (kend[-1] == ' ' || kend[-1] == '\t'))
    kend--;
  *kend = '\0';
  val = skip_blank(val);
  if (*val == '"') {
    char *q = strchr(val + 1, '"');
    if (q)
      *q = '\0';
    val++;
  }
  if (!*key)
    return set_error(EINVAL, "%s: line %u: \"=\" without a key", name, lineno);
  if (d->n_ddb + d->n_header >= DESC_MAX_KEYS)
    return set_error(EFBIG, "%s: line %u: more than %d key = value lines",
                     name, lineno, DESC_MAX_KEYS);

  if (strncasecmp(key, "ddb.", 4) == 0)
    return kv_append(&d->ddb, &d->n_ddb, key, val);
  if (strcasecmp(key, "version") == 0) {
    uint64_t v;
    const char *end;
    if (!parse_u64(val, &end, &v) || *end || v > 1000)
      return set_error(EINVAL, "%s: line %u: bad version \"%s\"", name, lineno,
                       val);
    d->version = (unsigned)v;
    return 0;
  }
  if (strcasecmp(key, "CID") == 0)
    return parse_cid(val, &d->cid, name, "CID", lineno);
  if (strcasecmp(key, "parentCID") == 0)
    return parse_cid(val, &d->parent_cid, name, "parentCID", lineno);
  if (strcasecmp(key, "createType") == 0)
    return set_str(&d->create_type, val);
  if (strcasecmp(key, "parentFileNameHint") == 0)
    return set_str(&d->parent_hint, val);
  return kv_append(&d->header, &d->n_header, key, val);
}

static bool is_extent_line(const char *s) {
  static const char *const acc[] = {"RW", "RDONLY", "NOACCESS"};
  for (size_t i = 0; i < 3; i++) {
    size_t n = strlen(acc[i]);
    if (strncasecmp(s, acc[i], n) == 0 && (s[n] == ' ' || s[n] == '\t'))
      return true;
  }
  return false;
}

struct descriptor *desc_parse(const char *text, size_t len, const char *name) {
  const char *nul = memchr(text, '\0', len);
  if (nul)
    len = (size_t)(nul - text);
  struct descriptor *d = calloc(1, sizeof *d);
  if (!d) {
    set_error(ENOMEM, "%s: out of memory", name);
    return NULL;
  }
  d->version = 1;
  d->cid = NO_CID;
  d->parent_cid = NO_CID;

  char line[DESC_MAX_LINE];
  unsigned lineno = 0;
  size_t pos = 0;
  while (pos < len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
    lineno++;
    if (n >= sizeof line) {
      set_error(EINVAL, "%s: line %u is longer than %d bytes", name, lineno,
                DESC_MAX_LINE - 1);
      goto fail;
    }
    memcpy(line, text + pos, n);
    line[n] = '\0';
    pos += n + (nl != NULL);
    while (n > 0 && isspace((unsigned char)line[n - 1]))
      line[--n] = '\0';
    char *s = skip_blank(line);
    if (!*s || *s == '#')
      continue;
    int r;
    if (is_extent_line(s))
      r = parse_extent_line(d, s, name, lineno);
    else if (strchr(s, '='))
      r = parse_kv_line(d, s, name, lineno);
    else {
      set_error(EINVAL, "%s: line %u is neither a key = value pair nor an "
                        "extent: \"%.60s\"",
                name, lineno, s);
      goto fail;
    }
    if (r != 0)
      goto fail;
  }
  if (!d->create_type) {
    set_error(EINVAL, "%s: descriptor has no createType", name);
    goto fail;
  }
  if (d->n_extents == 0) {
    set_error(EINVAL, "%s: descriptor lists no extents", name);
    goto fail;
  }
  return d;
fail:
  desc_free(d);
  return NULL;
}

/* A growing string buffer for desc_print. */
struct sbuf {
  char *p;
  size_t len, cap;
  bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...) {
  if (b->oom)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = true;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n + 1;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

/* A value or file name as parsing gives it back: quoted, unless it holds
 * a quote itself (parsing never returns a quoted value with one inside):
 * then bare, which parses back whole (such a value never starts or ends
 * with a blank and never starts with a quote). */
static void sb_quoted(struct sbuf *b, const char *v) {
  sb_printf(b, strchr(v, '"') ? "%s" : "\"%s\"", v);
}

char *desc_print(const struct descriptor *d, size_t *len) {
  struct sbuf b = {malloc(1024), 0, 1024, false};
  if (!b.p) {
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  sb_printf(&b, "# Disk DescriptorFile\nversion=%u\n", d->version);
  for (size_t i = 0; i < d->n_header; i++)
    if (strcasecmp(d->header[i].key, "encoding") == 0) {
      sb_printf(&b, "%s=", d->header[i].key);
      sb_quoted(&b, d->header[i].value);
      sb_printf(&b, "\n");
    }
  sb_printf(&b, "CID=%08" PRIx32 "\nparentCID=%08" PRIx32 "\n", d->cid,
            d->parent_cid);
  for (size_t i = 0; i < d->n_header; i++)
    if (strcasecmp(d->header[i].key, "encoding") != 0) {
      sb_printf(&b, "%s=", d->header[i].key);
      sb_quoted(&b, d->header[i].value);
      sb_printf(&b, "\n");
    }
  sb_printf(&b, "createType=");
  sb_quoted(&b, d->create_type);
  sb_printf(&b, "\n");
  if (d->parent_hint) {
    sb_printf(&b, "parentFileNameHint=");
    sb_quoted(&b, d->parent_hint);
    sb_printf(&b, "\n");
  }
  sb_printf(&b, "\n# Extent description\n");
  for (size_t i = 0; i < d->n_extents; i++) {
    const struct desc_extent *x = &d->extents[i];
    sb_printf(&b, "%s %" PRIu64 " %s", access_names[x->access], x->sectors,
              type_names[x->type]);
    if (x->filename) {
      sb_printf(&b, " ");
      sb_quoted(&b, x->filename);
    }
    if (x->has_offset)
      sb_printf(&b, " %" PRIu64, x->offset);
    sb_printf(&b, "\n");
  }
  sb_printf(&b, "\n# The Disk Data Base\n#DDB\n\n");
  for (size_t i = 0; i < d->n_ddb; i++) {
    sb_printf(&b, "%s = ", d->ddb[i].key);
    sb_quoted(&b, d->ddb[i].value);
    sb_printf(&b, "\n");
  }
  if (b.oom) {
    free(b.p);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  *len = b.len;
  return b.p;
}
