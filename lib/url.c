/* SPDX-License-Identifier: BSD-3-Clause */
/* URLs of remote image files (lib/remote.c reads them):
 *
 *   http://HOST[:PORT]/PATH[?QUERY]     https://...     (nbdkit curl)
 *   ssh://[USER@]HOST[:PORT]/PATH                        (nbdkit ssh)
 *   file+nbd://HOST[:PORT]/EXPORT, file+nbds://...,
 *   file+nbd+unix:///EXPORT?socket=SOCKET, file+nbds+unix://...
 *                     an NBD export that holds a VMDK *file's* bytes
 *                     (libnbd, no nbdkit); a bare nbd:// URI is a whole
 *                     virtual disk (lib/extent_nbd.c), not a file.
 *
 * Credentials in a URL (USER:PASSWORD@) never stay in it: url_parse
 * takes them out, and every URL the library keeps (in messages, in a
 * child's command line) is written without them.
 *
 * A file named by a descriptor (an extent, a backing file, an OVF's disk)
 * resolves relative to the descriptor's URL: the name replaces the last
 * path segment, percent-encoded byte by byte (a name is a file name, never
 * a URL: "http://x" in a descriptor is a folder "http:" and so on), dot
 * segments are removed, and the descriptor's query string is kept (ESXi's
 * ?dcPath=...&dsName=... names the datastore, the same for every file of
 * the VM).  Confinement compares such normalised URLs: same scheme, host
 * and port, and a path under the descriptor's folder. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* The length of S's scheme and "://" when it is one of ours, else 0. */
static size_t scheme_len(const char *s, enum url_kind *kind) {
  static const struct {
    const char *prefix;
    enum url_kind kind;
  } known[] = {{"http://", URL_HTTP},
               {"https://", URL_HTTP},
               {"ssh://", URL_SSH},
               {"file+nbd://", URL_NBD},
               {"file+nbds://", URL_NBD},
               {"file+nbd+unix://", URL_NBD},
               {"file+nbds+unix://", URL_NBD}};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
    size_t n = strlen(known[i].prefix);
    if (strncasecmp(s, known[i].prefix, n) == 0) {
      if (kind)
        *kind = known[i].kind;
      return n;
    }
  }
  return 0;
}

bool url_is_remote(const char *s) {
  return s && scheme_len(s, NULL) > 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char *url_decode(const char *s, size_t n) {
  char *out = malloc(n + 1);
  if (!out)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n &&
        (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      out[k++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      out[k++] = s[i];
    }
  }
  out[k] = '\0';
  return out;
}

/* Bytes that stay as they are in a path segment (RFC 3986 pchar minus
 * '%', which is always encoded, and minus '\\', encoded too: some servers
 * read it as a separator). */
static bool path_char(unsigned char c) {
  return isalnum(c) || strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

/* Append N bytes of S to the buffer at *B (length *LEN, capacity *CAP). */
static int append(char **b, size_t *len, size_t *cap, const char *s,
                  size_t n) {
  if (*len + n + 1 > *cap) {
    size_t c = (*len + n + 1) * 2;
    char *nb = realloc(*b, c);
    if (!nb)
      return -1;
    *b = nb;
    *cap = c;
  }
  memcpy(*b + *len, s, n);
  *len += n;
  (*b)[*len] = '\0';
  return 0;
}

/* Decode the percent-encodings of unreserved bytes (RFC 3986 6.2.2.2:
 * "%2E" is ".", so "%2E%2E" is a dot segment), upper-case the others. */
static char *normalise_encoding(const char *s, size_t n) {
  char *b = NULL;
  size_t len = 0, cap = 0;
  if (append(&b, &len, &cap, "", 0) != 0)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n &&
        (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      unsigned char c = (unsigned char)(hi << 4 | lo);
      char enc[4];
      if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
        enc[0] = (char)c;
        enc[1] = '\0';
      } else {
        snprintf(enc, sizeof enc, "%%%02X", c);
      }
      if (append(&b, &len, &cap, enc, strlen(enc)) != 0)
        goto oom;
      i += 2;
    } else if (append(&b, &len, &cap, s + i, 1) != 0) {
      goto oom;
    }
  }
  return b;
oom:
  free(b);
  return NULL;
}

/* Remove "." and ".." segments from the absolute path P in place
 * (RFC 3986 5.2.4); ".." at the root stays at the root. */
static void remove_dots(char *p) {
  char *out = p; /* the output so far: starts with '/' */
  const char *in = p;
  while (*in) {
    /* IN is at a '/' (a segment follows) */
    const char *seg = in + 1;
    size_t n = strcspn(seg, "/");
    bool last = seg[n] == '\0';
    if (n == 1 && seg[0] == '.') {
      in = seg + n;
      if (last) {
        *out++ = '/';
        break;
      }
      continue;
    }
    if (n == 2 && seg[0] == '.' && seg[1] == '.') {
      while (out > p && *--out != '/')
        ;
      in = seg + n;
      if (last) {
        *out++ = '/';
        break;
      }
      continue;
    }
    *out++ = '/';
    memmove(out, seg, n);
    out += n;
    in = seg + n;
  }
  if (out == p)
    *out++ = '/';
  *out = '\0';
}

void url_free(struct url *u) {
  if (!u)
    return;
  free(u->user);
  if (u->password) {
    explicit_bzero(u->password, strlen(u->password));
    free(u->password);
  }
  free(u->host);
  free(u->port);
  free(u->path);
  free(u->query);
  memset(u, 0, sizeof *u);
}

int url_parse(const char *s, struct url *u) {
  memset(u, 0, sizeof *u);
  size_t sl = scheme_len(s, &u->kind);
  if (sl == 0)
    return set_error(EINVAL, "not a URL vmdkit reads: expected http://, "
                             "https://, ssh:// or file+nbd...://");
  size_t k = 0;
  const char *sch = s;
  if (u->kind == URL_NBD)
    sch += 5; /* "file+" */
  for (; sch[k] != ':' && k + 1 < sizeof u->scheme; k++)
    u->scheme[k] = (char)tolower((unsigned char)sch[k]);
  u->scheme[k] = '\0';
  const char *auth = s + sl;
  size_t an = strcspn(auth, "/?#");
  const char *at = memrchr(auth, '@', an);
  const char *hp = auth;
  if (at) {
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    size_t un = colon ? (size_t)(colon - auth) : (size_t)(at - auth);
    u->user = url_decode(auth, un);
    if (colon)
      u->password = url_decode(colon + 1, (size_t)(at - colon - 1));
    if (!u->user || (colon && !u->password))
      goto oom;
    hp = at + 1;
  }
  size_t hn = (size_t)(auth + an - hp);
  const char *pc = NULL;
  if (hn && hp[0] == '[') { /* [IPv6] */
    const char *close = memchr(hp, ']', hn);
    if (!close) {
      url_free(u);
      return set_error(EINVAL, "an IPv6 address in a URL without its ']'");
    }
    if ((size_t)(close + 1 - hp) < hn && close[1] == ':')
      pc = close + 1;
  } else {
    pc = memchr(hp, ':', hn);
  }
  size_t host_n = pc ? (size_t)(pc - hp) : hn;
  if (!(u->host = strndup(hp, host_n)))
    goto oom;
  if (pc) {
    size_t pn = (size_t)(hp + hn - pc - 1);
    if (pn == 0 || pn > 5 || strspn(pc + 1, "0123456789") < pn) {
      url_free(u);
      return set_error(EINVAL, "the port of a URL is not a number");
    }
    if (!(u->port = strndup(pc + 1, pn)))
      goto oom;
  }
  if (host_n == 0 && !(u->kind == URL_NBD && strstr(u->scheme, "unix"))) {
    url_free(u);
    return set_error(EINVAL, "a URL without a host name");
  }
  const char *path = auth + an;
  size_t pn = strcspn(path, "?#");
  if (pn == 0 || path[0] != '/') {
    url_free(u);
    return set_error(EINVAL, "a URL without the path of a file");
  }
  if (!(u->path = normalise_encoding(path, pn)))
    goto oom;
  remove_dots(u->path);
  if (path[pn] == '?') {
    size_t qn = strcspn(path + pn + 1, "#");
    if (!(u->query = strndup(path + pn + 1, qn)))
      goto oom;
  }
  return 0;
oom:
  url_free(u);
  return set_error(ENOMEM, "out of memory");
}

char *url_format(const struct url *u) {
  char *s = NULL;
  if (asprintf(&s, "%s%s://%s%s%s%s%s%s", u->kind == URL_NBD ? "file+" : "",
               u->scheme, u->host, u->port ? ":" : "", u->port ? u->port : "",
               u->path, u->query ? "?" : "", u->query ? u->query : "") < 0)
    return NULL;
  return s;
}

char *url_resolve(const char *base, const char *name) {
  struct url u;
  if (url_parse(base, &u) != 0)
    return NULL;
  char *b = NULL;
  size_t len = 0, cap = 0;
  bool ok = true;
  if (name[0] == '/') {
    ok = append(&b, &len, &cap, "", 0) == 0;
  } else {
    size_t dn = strlen(u.path); /* the folder, with its '/' */
    while (dn > 0 && u.path[dn - 1] != '/')
      dn--;
    ok = append(&b, &len, &cap, u.path, dn) == 0;
  }
  for (const unsigned char *c = (const unsigned char *)name; ok && *c; c++) {
    char enc[4];
    if (*c == '/' || path_char(*c)) {
      enc[0] = (char)*c;
      enc[1] = '\0';
    } else {
      snprintf(enc, sizeof enc, "%%%02X", *c);
    }
    ok = append(&b, &len, &cap, enc, strlen(enc)) == 0;
  }
  if (!ok) {
    free(b);
    url_free(&u);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  remove_dots(b);
  free(u.path);
  u.path = b;
  char *r = url_format(&u);
  url_free(&u);
  if (!r)
    set_error(ENOMEM, "out of memory");
  return r;
}

char *url_folder(const char *url) {
  struct url u;
  if (url_parse(url, &u) != 0)
    return NULL;
  char *slash = strrchr(u.path, '/'); /* (a path starts with '/') */
  if (slash)
    slash[1] = '\0';
  free(u.query);
  u.query = NULL;
  char *r = url_format(&u);
  url_free(&u);
  if (!r)
    set_error(ENOMEM, "out of memory");
  return r;
}

bool url_inside(const char *folder, const char *url) {
  struct url f, u;
  if (url_parse(folder, &f) != 0)
    return false;
  if (url_parse(url, &u) != 0) {
    url_free(&f);
    return false;
  }
  size_t n = strlen(f.path);
  bool ok = f.kind == u.kind && strcmp(f.scheme, u.scheme) == 0 &&
            strcasecmp(f.host, u.host) == 0 &&
            !!f.port == !!u.port && (!f.port || strcmp(f.port, u.port) == 0) &&
            strncmp(u.path, f.path, n) == 0;
  url_free(&f);
  url_free(&u);
  return ok;
}

/* Query keys whose values are credentials (presigned object-store URLs:
 * X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, Azure's sig,
 * Google's X-Goog-Signature, tokens and keys of all kinds). */
static bool secret_key(const char *k, size_t n) {
  static const char *const words[] = {"sig", "token", "key", "cred",
                                      "pass", "secret", "auth"};
  for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
    size_t wn = strlen(words[w]);
    for (size_t i = 0; i + wn <= n; i++)
      if (strncasecmp(k + i, words[w], wn) == 0)
        return true;
  }
  return false;
}

void url_register_secrets(const struct url *u) {
  if (u->password)
    secret_register(u->password);
  for (const char *q = u->query; q && *q;) {
    size_t n = strcspn(q, "&;");
    const char *eq = memchr(q, '=', n);
    if (eq && secret_key(q, (size_t)(eq - q)) && eq + 1 < q + n) {
      char *v = strndup(eq + 1, (size_t)(q + n - eq - 1));
      if (v) {
        secret_register(v);
        char *d = url_decode(v, strlen(v));
        if (d && strcmp(d, v) != 0)
          secret_register(d);
        free(d);
        free(v);
      }
    }
    q += n;
    if (*q)
      q++;
  }
}

int remote_refuse_write(const char *path) {
  if (!url_is_remote(path))
    return 0;
  return set_error(EROFS, "%s: a URL: remote images are read-only (vmdkit "
                          "writes local files only)",
                   path);
}
