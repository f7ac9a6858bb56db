/* SPDX-License-Identifier: BSD-3-Clause */
/* Remote files (lib/remote.c reads them): the options, the nbdkit command
 * line that carries them, and nbdkit's messages turned into one line.
 *
 * Options (vmdk_remote_option, process-wide, and the USER:PASSWORD of a
 * URL, for that URL's host only) become nbdkit's plugin parameters,
 * except vmdkit's own (connections, readahead, confine, filter).  A secret
 * (password, proxy-password, cookie, header) never goes on nbdkit's
 * command line: its value is put in an anonymous memory file (memfd) the
 * child inherits, named as password=-FD, or read by header-script=cat
 * /dev/fd/FD.  Every secret is registered with error.c, which blanks it
 * out of any message.  nbdkit's stderr goes to another memfd; its last
 * "error:" line is turned into one line the user can act on
 * (remote_explain). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remote.h"

/* ---- options ------------------------------------------------------------ */

static pthread_mutex_t opt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ropt *opts;
static size_t n_opts;

bool is_secret_key(const char *k) {
  return strcmp(k, "password") == 0 || strcmp(k, "proxy-password") == 0 ||
         strcmp(k, "cookie") == 0 || strcmp(k, "header") == 0;
}

/* Whether a secret's value V names where it is (nbdkit's "+FILE", "-FD")
 * rather than being the secret itself. */
static bool names_file(const char *v) {
  return v[0] == '+' || (v[0] == '-' && v[1] >= '0' && v[1] <= '9');
}

/* Free O's strings, the value wiped first (it may be a secret). */
static void ropt_clear(struct ropt *o) {
  free(o->key);
  if (o->value)
    explicit_bzero(o->value, strlen(o->value));
  free(o->value);
  free(o->origin);
  *o = (struct ropt){0};
}

/* Keys that may be given more than once (each one is passed on). */
static bool is_list_key(const char *k) {
  return strcmp(k, "filter") == 0 || strcmp(k, "header") == 0 ||
         strcmp(k, "protocols") == 0;
}

int parse_bool(const char *v, bool *b) {
  static const char *const yes[] = {"1", "yes", "true", "on"};
  static const char *const no[] = {"0", "no", "false", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0)
      return *b = true, 0;
    if (strcasecmp(v, no[i]) == 0)
      return *b = false, 0;
  }
  return -1;
}

/* A byte count with an optional K, M or G (binary) suffix. */
int parse_bytes(const char *v, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || end == v || *v == '-')
    return -1;
  unsigned shift = 0;
  switch (*end) {
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  }
  if (*end == 'i' && shift)
    end++;
  if (*end == 'B' || *end == 'b')
    end++;
  if (*end || n > (UINT64_MAX >> shift))
    return -1;
  *out = (uint64_t)n << shift;
  return 0;
}

/* Validate KEY=VALUE as vmdk_remote_option takes it. */
static int check_option(const char *key, const char *value) {
  size_t n = key ? strlen(key) : 0;
  if (n == 0 || n > 64 || !((key[0] >= 'a' && key[0] <= 'z')) ||
      strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != n)
    return set_error(EINVAL, "remote option \"%s\": a key is lower-case "
                             "letters, digits, '-', '_' and '.', starting "
                             "with a letter",
                     key ? key : "");
  if (!value)
    return set_error(EINVAL, "remote option %s: no value", key);
  if (strcmp(key, "url") == 0 || strcmp(key, "host") == 0 ||
      strcmp(key, "path") == 0 || strcmp(key, "port") == 0 ||
      strcmp(key, "header-script") == 0 || strcmp(key, "cookie-script") == 0)
    return set_error(EINVAL, "remote option %s: set by vmdkit from the "
                             "URL (or, for scripts, from header=/cookie=); "
                             "it cannot be given",
                     key);
  if (strcmp(key, "connections") == 0) {
    uint64_t c;
    if (parse_bytes(value, &c) != 0 || c < 1 || c > REMOTE_MAX_CONNS)
      return set_error(EINVAL, "remote option connections=%s: expected 1 "
                               "to %d",
                       value, REMOTE_MAX_CONNS);
  } else if (strcmp(key, "readahead") == 0) {
    uint64_t b;
    if (parse_bytes(value, &b) != 0 || b > (1ull << 30))
      return set_error(EINVAL, "remote option readahead=%s: expected a "
                               "size up to 1G (0: off)",
                       value);
  } else if (strcmp(key, "confine") == 0) {
    bool b;
    if (parse_bool(value, &b) != 0)
      return set_error(EINVAL, "remote option confine=%s: expected yes or "
                               "no",
                       value);
  } else if (strcmp(key, "filter") == 0) {
    size_t m = strlen(value);
    if (m == 0 || m > 64 ||
        strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789-_") != m)
      return set_error(EINVAL, "remote option filter=%s: expected the name "
                               "of an nbdkit filter (e.g. delay)",
                       value);
  } else if (is_secret_key(key) && strcmp(value, "-") == 0) {
    return set_error(EINVAL, "remote option %s=-: nbdkit cannot ask for it "
                             "(it has no terminal); use %s=+FILE",
                     key, key);
  }
  return 0;
}

static int add_option(const char *key, const char *value, const char *origin) {
  if (is_secret_key(key) && !names_file(value)) {
    secret_register(value);
    const char *colon = strcmp(key, "header") == 0 ? strchr(value, ':') : NULL;
    if (colon) { /* "Authorization: Bearer X": the value, and X */
      colon += strspn(colon + 1, " \t") + 1;
      secret_register(colon);
      const char *sp = strrchr(colon, ' ');
      if (sp)
        secret_register(sp + 1);
    }
  }
  pthread_mutex_lock(&opt_lock);
  int r = 0;
  size_t i = n_opts;
  if (!is_list_key(key))
    for (i = 0; i < n_opts; i++)
      if (strcmp(opts[i].key, key) == 0 &&
          !!opts[i].origin == !!origin &&
          (!origin || strcmp(opts[i].origin, origin) == 0))
        break;
  if (i == n_opts) {
    struct ropt *no = realloc(opts, (n_opts + 1) * sizeof *no);
    if (!no) {
      r = set_error(ENOMEM, "out of memory");
      goto out;
    }
    opts = no;
    opts[n_opts++] = (struct ropt){0};
  }
  char *k = strdup(key), *v = strdup(value);
  char *o = origin ? strdup(origin) : NULL;
  if (!k || !v || (origin && !o)) {
    free(k);
    free(v);
    free(o);
    if (i == n_opts - 1 && !opts[i].key)
      n_opts--;
    r = set_error(ENOMEM, "out of memory");
    goto out;
  }
  ropt_clear(&opts[i]);
  opts[i] = (struct ropt){k, v, o};
out:
  pthread_mutex_unlock(&opt_lock);
  return r;
}

int vmdk_remote_option(const char *key, const char *value) {
  if (check_option(key, value) != 0)
    return -1;
  return add_option(key, value, NULL);
}

void vmdk_remote_options_clear(void) {
  pthread_mutex_lock(&opt_lock);
  free_opts(opts, n_opts);
  opts = NULL;
  n_opts = 0;
  pthread_mutex_unlock(&opt_lock);
}

static char *origin_of(const struct url *u) {
  char *o = NULL;
  if (asprintf(&o, "%s://%s:%s", u->scheme, u->host,
               u->port ? u->port : "") < 0)
    return NULL;
  return o;
}

/* The options that apply to U: a copy (free with free_opts).  An
 * option for U's origin comes after (and so overrides) a general one. */
struct ropt *opts_for(const struct url *u, size_t *n) {
  char *origin = origin_of(u);
  pthread_mutex_lock(&opt_lock);
  struct ropt *c = calloc(n_opts + 1, sizeof *c);
  size_t k = 0;
  for (int pass = 0; c && origin && pass < 2; pass++)
    for (size_t i = 0; i < n_opts; i++) {
      if (pass == 0 ? opts[i].origin != NULL
                    : !opts[i].origin || strcmp(opts[i].origin, origin))
        continue;
      c[k].key = strdup(opts[i].key);
      c[k].value = strdup(opts[i].value);
      k++;
    }
  pthread_mutex_unlock(&opt_lock);
  bool ok = c && origin;
  free(origin);
  for (size_t i = 0; ok && i < k; i++)
    ok = c[i].key && c[i].value;
  if (!ok) {
    free_opts(c, k);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  *n = k;
  return c;
}

void free_opts(struct ropt *o, size_t n) {
  for (size_t i = 0; o && i < n; i++)
    ropt_clear(&o[i]);
  free(o);
}

/* The last value of KEY among O, or NULL. */
const char *opt_get(const struct ropt *o, size_t n, const char *key) {
  const char *v = NULL;
  for (size_t i = 0; i < n; i++)
    if (strcmp(o[i].key, key) == 0)
      v = o[i].value;
  return v;
}

int remote_prepare(const char *url, char **clean) {
  struct url u;
  if (url_parse(url, &u) != 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vmdk_get_error());
    return set_error(EINVAL, "%s: %s", "URL", msg);
  }
  url_register_secrets(&u);
  int r = 0;
  if (u.user || u.password) {
    char *origin = origin_of(&u);
    if (!origin)
      r = set_error(ENOMEM, "out of memory");
    if (r == 0 && u.user)
      r = add_option("user", u.user, origin);
    if (r == 0 && u.password)
      r = add_option("password", u.password, origin);
    free(origin);
  }
  *clean = r == 0 ? url_format(&u) : NULL;
  if (r == 0 && !*clean)
    r = set_error(ENOMEM, "out of memory");
  url_free(&u);
  return r;
}

bool remote_confined(const char *url) {
  struct url u;
  if (url_parse(url, &u) != 0)
    return true;
  size_t n = 0;
  struct ropt *o = opts_for(&u, &n);
  const char *v = o ? opt_get(o, n, "confine") : NULL;
  bool b = true;
  if (v)
    parse_bool(v, &b);
  free_opts(o, n);
  url_free(&u);
  return b;
}

/* ---- nbdkit ------------------------------------------------------------- */

/* The reason in nbdkit's stderr (memfd FD): its last "error:" line, with
 * the "nbdkit: PLUGIN[N]: error: " prefix removed. */
int nbdkit_reason(int fd, char *buf, size_t cap) {
  buf[0] = '\0';
  char tail[8193];
  if (child_stderr_tail(fd, tail, sizeof tail) <= 0)
    return -1;
  const char *best = NULL;
  size_t best_n = 0;
  for (char *line = tail; *line;) {
    size_t n = strcspn(line, "\n");
    const char *e = memmem(line, n, "error: ", 7);
    if (e) {
      best = e + 7;
      best_n = n - (size_t)(e + 7 - line);
    } else if (!best && n > 0) {
      best = line;
      best_n = n;
    }
    line += n;
    if (*line)
      line++;
  }
  if (!best)
    return -1;
  while (best_n && (best[best_n - 1] == '\r' || best[best_n - 1] == ' '))
    best_n--;
  static const char *const prefixes[] = {"pread: ", "curl_easy_perform: "};
  for (size_t i = 0; i < 2; i++)
    if (best_n >= strlen(prefixes[i]) &&
        strncmp(best, prefixes[i], strlen(prefixes[i])) == 0) {
      best += strlen(prefixes[i]);
      best_n -= strlen(prefixes[i]);
    }
  snprintf(buf, cap, "%.*s", (int)best_n, best);
  return 0;
}

static bool has(const char *s, const char *what) {
  return strcasestr(s, what) != NULL;
}


int remote_explain(const char *url, enum url_kind kind, int err,
                   const char *reason, const char *doing) {
  const char *p;
  if ((p = strcasestr(reason, "returned error: ")) ||
      (p = strcasestr(reason, "response code said error: "))) {
    p = strpbrk(p, "0123456789");
    int code = p ? atoi(p) : 0;
    const char *what = code == 401   ? "unauthorized: give the user and "
                                       "password (in the URL, or --remote-"
                                       "option user=NAME --remote-option "
                                       "password=+FILE) or a cookie"
                       : code == 403 ? "forbidden: these credentials may not "
                                       "read it"
                       : code == 404 ? "not found: no such file on the "
                                       "server"
                       : code == 407 ? "the proxy wants credentials "
                                       "(proxy-user=, proxy-password=+FILE)"
                       : code == 416 ? "the server refused the byte range"
                       : code >= 500 ? "the server failed"
                                     : "the server refused the request";
    if (code)
      return set_error(code == 404 ? ENOENT : code == 401 || code == 403 ? EACCES : EIO,
                       "%s: HTTP %d (%s)", url, code, what);
  }
  if (has(reason, "range") && (has(reason, "not support") ||
                               has(reason, "byte range")))
    return set_error(ENOTSUP, "%s: the server does not accept range requests "
                              "(no \"Accept-Ranges: bytes\"): vmdkit reads "
                              "parts of a file and cannot read this one "
                              "remotely; download it first",
                     url);
  if (has(reason, "certificate") || has(reason, "SSL") || has(reason, "TLS"))
    return set_error(EACCES, "%s: TLS: %s (for a server with a self-signed "
                             "certificate, such as ESXi: --remote-option "
                             "cainfo=CERT.pem, or sslverify=false)",
                     url, reason);
  if (has(reason, "could not resolve") || has(reason, "connection refused") ||
      has(reason, "couldn't connect") || has(reason, "failed to connect") ||
      has(reason, "timed out") || has(reason, "timeout"))
    return set_error(EHOSTUNREACH, "%s: cannot reach the server%s%s%s: %s",
                     url, *doing ? " (" : "", *doing ? doing : "",
                     *doing ? ")" : "", reason);
  if (has(reason, "known_hosts") || has(reason, "known hosts") ||
      has(reason, "host key") || has(reason, "server is unknown") ||
      has(reason, "host is unknown"))
    return set_error(EACCES, "%s: the SSH host key is not trusted: %s "
                             "(add the host to known_hosts, give "
                             "--remote-option known-hosts=FILE, or "
                             "verify-remote-host=false)",
                     url, reason);
  if (kind == URL_SSH &&
      (has(reason, "authentication") || has(reason, "auth") ||
       has(reason, "denied")))
    return set_error(EACCES, "%s: SSH authentication failed: %s (give "
                             "--remote-option identity=KEYFILE or "
                             "password=+FILE)",
                     url, reason);
  if (kind == URL_SSH &&
      (has(reason, "no such file") || has(reason, "not found")))
    return set_error(ENOENT, "%s: not found on the server (%s)", url,
                     reason);
  if (has(reason, "partial file") || has(reason, "reset by peer") ||
      has(reason, "connection closed") || has(reason, "broken pipe") ||
      has(reason, "recv failure") || has(reason, "send failure") ||
      has(reason, "disconnect") || has(reason, "socket"))
    return set_error(ECONNRESET, "%s: the connection was lost%s%s%s: %s",
                     url, *doing ? " (" : "", *doing ? doing : "",
                     *doing ? ")" : "", reason);
  return set_error(err ? err : EIO, "%s: %s%s%s", url, doing,
                   *doing ? ": " : "", reason);
}

/* A memfd holding S, at a descriptor >= 10 (socket activation puts the
 * socket on 3), inherited by the next child (no FD_CLOEXEC). */
static int secret_fd(const char *s) {
  int m = memfd_create("vmdkit-secret", MFD_CLOEXEC);
  if (m < 0)
    return -1;
  size_t n = strlen(s);
  int fd = -1;
  if (write(m, s, n) == (ssize_t)n && lseek(m, 0, SEEK_SET) == 0)
    fd = fcntl(m, F_DUPFD, 10); /* the duplicate has no FD_CLOEXEC */
  close(m);
  return fd;
}

/* The secret V stands for: V itself, the contents of FILE for "+FILE",
 * what descriptor FD holds for "-FD" (a trailing newline dropped).
 * malloc'ed, NULL on failure. */
static char *secret_value(const char *v) {
  if (!names_file(v))
    return strdup(v);
  int fd = v[0] == '+' ? open(v + 1, O_RDONLY | O_CLOEXEC) : dup(atoi(v + 1));
  if (fd < 0)
    return NULL;
  char *b = malloc(65536);
  ssize_t n = b ? read(fd, b, 65535) : -1;
  close(fd);
  if (n < 0) {
    free(b);
    return NULL;
  }
  while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r'))
    n--;
  b[n] = '\0';
  return b;
}

static int argv_add(struct argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int argv_add(struct argv *a, const char *fmt, ...) {
  if (a->n + 2 > a->cap) {
    size_t c = a->cap ? a->cap * 2 : 32;
    char **nv = realloc(a->v, c * sizeof *nv);
    if (!nv)
      return -1;
    a->v = nv;
    a->cap = c;
  }
  va_list ap;
  va_start(ap, fmt);
  int k = vasprintf(&a->v[a->n], fmt, ap);
  va_end(ap);
  if (k < 0)
    return -1;
  a->v[++a->n] = NULL;
  return 0;
}

void argv_free(struct argv *a) {
  for (size_t i = 0; i < a->n; i++) {
    explicit_bzero(a->v[i], strlen(a->v[i]));
    free(a->v[i]);
  }
  free(a->v);
}

static bool vmdkit_key(const char *k) {
  return strcmp(k, "connections") == 0 || strcmp(k, "readahead") == 0 ||
         strcmp(k, "confine") == 0 || strcmp(k, "filter") == 0;
}

/* Put SECRET in a memfd the child inherits, add the parameter FMT (one
 * %d: the descriptor) to A and the descriptor to FDS.  False on failure. */
static bool add_secret(struct argv *a, int *fds, size_t *n_fds,
                       const char *secret, const char *fmt) {
  int fd = secret_fd(secret);
  if (fd < 0)
    return false;
  fds[(*n_fds)++] = fd;
  return argv_add(a, fmt, fd) == 0;
}

/* File-name options nbdkit's ssh plugin wants absolute. */
static bool path_key(const char *k) {
  return strcmp(k, "identity") == 0 || strcmp(k, "known-hosts") == 0 ||
         strcmp(k, "config") == 0;
}

/* The nbdkit command for R's file: argv in A, the secrets' descriptors in
 * FDS (*N_FDS of them; the caller closes them once the child started). */
int nbdkit_argv(const struct url *u, const struct ropt *o, size_t n_o,
                int errfd, struct argv *a, int *fds, size_t *n_fds) {
  bool ok = argv_add(a, "sh") == 0 && argv_add(a, "-c") == 0 &&
            argv_add(a, "exec nbdkit \"$@\" 2>>/proc/self/fd/%d", errfd) == 0 &&
            argv_add(a, "nbdkit") == 0 && argv_add(a, "--exit-with-parent") == 0 &&
            argv_add(a, "-r") == 0;
  for (size_t i = 0; ok && i < n_o; i++)
    if (strcmp(o[i].key, "filter") == 0)
      ok = argv_add(a, "--filter=%s", o[i].value) == 0;
  if (!ok)
    return -1;
  if (u->kind == URL_HTTP) {
    char *url = url_format(u); /* (without user and password) */
    ok = url && argv_add(a, "curl") == 0 && argv_add(a, "url=%s", url) == 0;
    free(url);
  } else {
    char *path = url_decode(u->path, strlen(u->path));
    ok = path && argv_add(a, "ssh") == 0 &&
         argv_add(a, "host=%s", u->host) == 0 &&
         (!u->port || argv_add(a, "port=%s", u->port) == 0) &&
         argv_add(a, "path=%s", path) == 0;
    free(path);
  }
  /* header= lines all go into one header-script (nbdkit takes one or the
   * other), from a memfd.  nbdkit 1.32 then sends no cookie= (it does
   * send a cookie-script's): with headers the cookie goes as a script too. */
  char *headers = NULL;
  size_t hlen = 0;
  bool any_header = opt_get(o, n_o, "header") != NULL;
  for (size_t i = 0; ok && i < n_o; i++) {
    const char *k = o[i].key, *v = o[i].value;
    if (vmdkit_key(k))
      continue;
    if (strcmp(k, "cookie") == 0 && any_header) {
      char *c = secret_value(v);
      ok = c && add_secret(a, fds, n_fds, c, "cookie-script=cat /dev/fd/%d");
      if (c)
        explicit_bzero(c, strlen(c));
      free(c);
      continue;
    }
    if (strcmp(k, "header") == 0) {
      char *nh = realloc(headers, hlen + strlen(v) + 2);
      ok = nh != NULL;
      if (ok) {
        headers = nh;
        hlen += (size_t)sprintf(headers + hlen, "%s\n", v);
      }
      continue;
    }
    if (is_secret_key(k) && !names_file(v)) {
      char fmt[80];
      snprintf(fmt, sizeof fmt, "%s=-%%d", k); /* (a checked key: no '%') */
      ok = add_secret(a, fds, n_fds, v, fmt);
      continue;
    }
    if (is_secret_key(k) && v[0] == '+' && v[1] != '/') { /* +FILE */
      char real[PATH_MAX];
      ok = argv_add(a, "%s=+%s", k, realpath(v + 1, real) ? real : v + 1) == 0;
      continue;
    }
    if (path_key(k) && v[0] && v[0] != '/') {
      char real[PATH_MAX];
      ok = argv_add(a, "%s=%s", k, realpath(v, real) ? real : v) == 0;
      continue;
    }
    ok = argv_add(a, "%s=%s", k, v) == 0;
  }
  if (ok && headers)
    ok = add_secret(a, fds, n_fds, headers, "header-script=cat /dev/fd/%d");
  if (headers)
    explicit_bzero(headers, hlen);
  free(headers);
  return ok ? 0 : -1;
}

int nbdkit_installed(const char *url, enum url_kind kind) {
  if (tool_on_path("nbdkit"))
    return 0;
  return set_error(ENOENT, "%s: nbdkit is not installed (not found on PATH); "
                           "remote files are read through its %s plugin "
                           "(Debian package nbdkit)",
                   url, kind == URL_SSH ? "ssh" : "curl");
}
