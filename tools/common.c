/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit CLI: shared helpers (see cli.h for the contracts). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

unsigned cli_open_flags;

/* ---- errors ------------------------------------------------------------- */

/* FILE as messages show it: a URL without the USER:PASSWORD@ it may
 * carry (the library's own messages never have it). */
static const char *safe_name(const char *file, char *buf, size_t cap) {
  const char *sep = file ? strstr(file, "://") : NULL;
  if (!sep)
    return file;
  const char *host = sep + 3;
  size_t an = strcspn(host, "/?#");
  const char *at = memrchr(host, '@', an);
  if (!at)
    return file;
  snprintf(buf, cap, "%.*s%s", (int)(host - file), file, at + 1);
  return buf;
}

void cli_lib_error(const char *file) {
  char safe[4096];
  file = safe_name(file, safe, sizeof safe);
  const char *msg = vmdk_get_error();
  if (msg && *msg) {
    fprintf(stderr, "vmdkit: %s\n", msg);
    return;
  }
  int e = vmdk_get_errno();
  const char *what = e ? strerror(e) : "unknown error";
  if (file)
    fprintf(stderr, "vmdkit: %s: %s\n", file, what);
  else
    fprintf(stderr, "vmdkit: %s\n", what);
}

static void verror(const char *file, const char *fmt, va_list ap) {
  char safe[4096];
  file = safe_name(file, safe, sizeof safe);
  fputs("vmdkit: ", stderr);
  if (file)
    fprintf(stderr, "%s: ", file);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

void cli_error(const char *file, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verror(file, fmt, ap);
  va_end(ap);
}

void cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "vmdkit: %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (try 'vmdkit %s --help')\n", cmd);
}

int cli_flush_stdout(void) {
  if (fflush(stdout) != 0 || ferror(stdout)) {
    cli_error(NULL, "write error on stdout: %s", strerror(errno));
    return -1;
  }
  return 0;
}

/* ---- argument parsing --------------------------------------------------- */

/* The fixed lists of values (cli_value_words()); the parsers below look
 * names up in them, so completion offers exactly what they take. */
/* vmdk and raw are native; the rest are QEMU's formats, read (and those
 * of output_format_names written) through qemu-nbd: -f/-O value
 * CLI_FORMAT_QEMU + the index here. */
static const char *const format_names[] = {
    "vmdk", "raw",       "qcow2", "vhdx",  "vpc",   "vdi", "qed",
    "parallels", "dmg",  "qcow",  "bochs", "cloop", NULL};
static const char *const vmdk_format_names[] = {"vmdk", "raw", NULL};
static const char *const output_format_names[] = {
    "raw", "vmdk", "qcow2", "vhdx", "vpc", "vdi", "qed", "parallels",
    "qcow", NULL};
static const char *const output_names[] = {"human", "json", NULL};
static const enum cli_output output_values[] = {CLI_OUTPUT_HUMAN,
                                                CLI_OUTPUT_JSON};
/* cli_parse_cache() takes these (and "off"). */
static const char *const cache_names[] = {
    "none", "writeback", "unsafe", "writethrough", "directsync", NULL};
static const char *const repair_names[] = {"leaks", "all", NULL};
static const char *const aio_names[] = {"threads", "native", "io_uring",
                                        NULL};
static const char *const create_option_keys[] = {
    "subformat",    "adapter_type", "hwversion",
    "zeroed_grain", "grain_size",   "compression_level", NULL};
static const char *const adapter_types[] = {"ide",       "buslogic",
                                            "lsilogic",  "legacyESX",
                                            "pvscsi",    NULL};
static const char *const on_off[] = {"on", "off", NULL};

const char *const *cli_value_words(enum cli_values v) {
  switch (v) {
  case CLI_FORMAT:
    return format_names;
  case CLI_FORMAT_OUT:
    return output_format_names;
  case CLI_FORMAT_VMDK:
    return vmdk_format_names;
  case CLI_OUTPUT:
    return output_names;
  case CLI_CACHE:
    return cache_names;
  case CLI_REPAIR:
    return repair_names;
  case CLI_AIO:
    return aio_names;
  case CLI_CREATE_OPTIONS:
    return create_option_keys;
  default:
    return NULL;
  }
}

int cli_word_index(const char *const *words, const char *s) {
  for (int i = 0; words && words[i]; i++)
    if (strcmp(words[i], s) == 0)
      return i;
  return -1;
}

size_t cli_create_option_values(const char *key, const char **words,
                                size_t max) {
  size_t n = 0;
  if (strcmp(key, "subformat") == 0) {
    /* Every subformat the library names, as apply_create_option() takes
     * them: raw is not a VMDK layout.  (The enum has no holes; a few more
     * values are tried in case it grows.) */
    for (int v = 0; v < 64 && n < max; v++) {
      const char *name = vmdk_subformat_name((enum vmdk_subformat)v);
      if (name && v != VMDK_SUBFORMAT_RAW)
        words[n++] = name;
    }
    return n;
  }
  const char *const *list = strcmp(key, "adapter_type") == 0   ? adapter_types
                            : strcmp(key, "zeroed_grain") == 0 ? on_off
                                                               : NULL;
  for (; list && list[n] && n < max; n++)
    words[n] = list[n];
  return n;
}

static int digit_value(char ch, int base) {
  int v;
  if (ch >= '0' && ch <= '9')
    v = ch - '0';
  else if (ch >= 'a' && ch <= 'f')
    v = ch - 'a' + 10;
  else if (ch >= 'A' && ch <= 'F')
    v = ch - 'A' + 10;
  else
    return -1;
  return v < base ? v : -1;
}

int cli_parse_size(const char *what, const char *s, uint64_t *out) {
  const char *p = s;
  int base = 10;
  uint64_t v = 0;

  if (*p == '-') {
    cli_error(NULL, "invalid %s '%s': negative values are not allowed", what,
              s);
    return -1;
  }
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    base = 16;
    p += 2;
  }
  if (digit_value(*p, base) < 0) {
    cli_error(NULL, "invalid %s '%s': not a number", what, s);
    return -1;
  }
  for (; digit_value(*p, base) >= 0; p++) {
    if (__builtin_mul_overflow(v, (uint64_t)base, &v) ||
        __builtin_add_overflow(v, (uint64_t)digit_value(*p, base), &v)) {
      cli_error(NULL,
                "invalid %s '%s': too large (the maximum is %" PRIu64 " bytes)",
                what, s, UINT64_MAX);
      return -1;
    }
  }

  unsigned shift;
  switch (*p) {
  case '\0':
  case 'b':
  case 'B':
    shift = 0;
    break;
  case 'k':
  case 'K':
    shift = 10;
    break;
  case 'm':
  case 'M':
    shift = 20;
    break;
  case 'g':
  case 'G':
    shift = 30;
    break;
  case 't':
  case 'T':
    shift = 40;
    break;
  case 'p':
  case 'P':
    shift = 50;
    break;
  case 'e':
  case 'E':
    shift = 60;
    break;
  case '.':
  case ',':
    cli_error(NULL, "invalid %s '%s': fractions are not supported", what, s);
    return -1;
  default:
    cli_error(NULL,
              "invalid %s '%s': unknown suffix '%s' (use b, K, M, G, T, "
              "P or E; powers of 1024)",
              what, s, p);
    return -1;
  }
  if (*p != '\0' && p[1] != '\0') {
    cli_error(NULL, "invalid %s '%s': junk '%s' after the number", what, s,
              p + 1);
    return -1;
  }
  if (shift && v > (UINT64_MAX >> shift)) {
    cli_error(NULL,
              "invalid %s '%s': too large (the maximum is %" PRIu64 " bytes)",
              what, s, UINT64_MAX);
    return -1;
  }
  *out = v << shift;
  return 0;
}

/* The words of LIST joined by ", " (a static buffer per list). */
static const char *joined(const char *const *list, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; list[i] && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", list[i]);
  return buf;
}

const char *cli_values_note(enum cli_values v) {
  static char in[256], out[256];
  if (v == CLI_FORMAT)
    return joined(format_names, in, sizeof in);
  if (v == CLI_FORMAT_OUT)
    return joined(output_format_names, out, sizeof out);
  return NULL;
}

int cli_parse_format(const char *s, int *format) {
  int i = cli_word_index(format_names, s);
  if (i < 0) {
    cli_error(NULL, "unknown image format '%s' (valid: %s)", s,
              cli_values_note(CLI_FORMAT));
    return -1;
  }
  *format = i == 0   ? VMDK_FORMAT_VMDK
            : i == 1 ? VMDK_FORMAT_RAW
                     : CLI_FORMAT_QEMU + i;
  return 0;
}

int cli_parse_output_format(const char *s, int *format) {
  if (cli_word_index(output_format_names, s) < 0) {
    cli_error(NULL, "cannot write image format '%s' (valid: %s)", s,
              cli_values_note(CLI_FORMAT_OUT));
    return -1;
  }
  return cli_parse_format(s, format);
}

int cli_parse_vmdk_format(const char *s, int *format) {
  if (cli_word_index(vmdk_format_names, s) < 0) {
    cli_error(NULL, "unknown image format '%s' (valid here: vmdk, raw)", s);
    return -1;
  }
  return cli_parse_format(s, format);
}

const char *cli_qemu_format(int format) {
  int n = (int)(sizeof format_names / sizeof *format_names) - 1;
  return format > CLI_FORMAT_QEMU + 1 && format < CLI_FORMAT_QEMU + n
             ? format_names[format - CLI_FORMAT_QEMU]
             : NULL;
}

struct vmdk_disk *cli_open(const char *file, int format, unsigned flags) {
  const char *qemu = cli_qemu_format(format);
  return qemu ? vmdk_open_qemu(file, qemu, flags)
              : vmdk_open_format(file, format, flags);
}

int cli_parse_output(const char *s, enum cli_output *out) {
  int i = cli_word_index(output_names, s);
  if (i < 0) {
    cli_error(NULL, "unknown --output format '%s' (valid: human, json)", s);
    return -1;
  }
  *out = output_values[i];
  return 0;
}

int cli_parse_cache(const char *s, unsigned *flags, bool *writethrough) {
  unsigned f = *flags & ~(VMDK_OPEN_NOCACHE | VMDK_OPEN_UNSAFE);
  bool wt = false;
  if (strcmp(s, "writeback") == 0) {
    /* the default: page cache, syncs only on flush */
  } else if (strcmp(s, "none") == 0 || strcmp(s, "off") == 0) {
    f |= VMDK_OPEN_NOCACHE; /* "off" is qemu's other name for it */
  } else if (strcmp(s, "unsafe") == 0) {
    f |= VMDK_OPEN_UNSAFE;
  } else if (strcmp(s, "writethrough") == 0) {
    wt = true;
  } else if (strcmp(s, "directsync") == 0) {
    f |= VMDK_OPEN_NOCACHE;
    wt = true;
  } else {
    cli_error(NULL,
              "invalid cache mode '%s' (valid: none, writeback, unsafe, "
              "writethrough, directsync)",
              s);
    return -1;
  }
  *flags = f;
  *writethrough = wt;
  return 0;
}

int cli_parse_uint(const char *what, const char *s, uint64_t min, uint64_t max,
                   uint64_t *out) {
  uint64_t v = 0;
  const char *p = s;
  if (*p < '0' || *p > '9') {
    cli_error(NULL, "invalid %s '%s': not a non-negative integer", what, s);
    return -1;
  }
  for (; *p >= '0' && *p <= '9'; p++) {
    if (__builtin_mul_overflow(v, (uint64_t)10, &v) ||
        __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v)) {
      v = UINT64_MAX;
      while (p[1] >= '0' && p[1] <= '9')
        p++;
    }
  }
  if (*p != '\0') {
    cli_error(NULL, "invalid %s '%s': not a non-negative integer", what, s);
    return -1;
  }
  if (v < min || v > max) {
    cli_error(NULL,
              "invalid %s '%s': must be from %" PRIu64 " to %" PRIu64, what,
              s, min, max);
    return -1;
  }
  *out = v;
  return 0;
}

#define CREATE_OPTION_KEYS                                                     \
  "subformat, adapter_type, hwversion, zeroed_grain, grain_size, "             \
  "compression_level"
static bool is_create_option_key(const char *key) {
  return cli_word_index(create_option_keys, key) >= 0;
}

static const char create_options_help[] =
    "Supported options (-o key=value,key=value):\n"
    "  subformat=NAME     VMDK layout (default monolithicSparse):\n"
    "      monolithicSparse      one growable file, embedded descriptor\n"
    "      monolithicFlat        NAME.vmdk + preallocated NAME-flat.vmdk\n"
    "      twoGbMaxExtentSparse  NAME.vmdk + growable NAME-s001.vmdk... "
    "(2047 MiB each)\n"
    "      twoGbMaxExtentFlat    NAME.vmdk + preallocated NAME-f001.vmdk... "
    "(2047 MiB each)\n"
    "      streamOptimized       one compressed file, as VMware exports "
    "(OVA)\n"
    "      vmfs                  ESXi: NAME.vmdk + NAME-flat.vmdk\n"
    "  adapter_type=ide|buslogic|lsilogic|legacyESX|pvscsi   (default "
    "lsilogic)\n"
    "  hwversion=N        ddb.virtualHWVersion (default 4)\n"
    "  zeroed_grain=on|off   version-2 sparse header with zeroed-grain "
    "entries\n"
    "  grain_size=BYTES   grain (cluster) size, a power of two from 4K to 1G "
    "(default 64K)\n"
    "  compression_level=N   streamOptimized: deflate level, 1 (fastest) to "
    "12\n"
    "                     (smallest); default 6, zlib's default\n";

/* Apply KEY=VAL (both NUL-terminated) to *OPTS. */
static int apply_create_option(const char *key, const char *val,
                               struct vmdk_create_options *opts) {
  if (strcmp(key, "subformat") == 0) {
    enum vmdk_subformat sf;
    if (vmdk_subformat_from_name(val, &sf) < 0) {
      cli_lib_error(NULL);
      return -1;
    }
    if (sf == VMDK_SUBFORMAT_RAW) {
      cli_error(NULL, "subformat 'raw' is not a VMDK layout (use -f raw or "
                      "-O raw)");
      return -1;
    }
    opts->subformat = sf;
  } else if (strcmp(key, "adapter_type") == 0) {
    size_t i, n = sizeof adapter_types / sizeof adapter_types[0] - 1;
    for (i = 0; i < n; i++)
      if (strcasecmp(val, adapter_types[i]) == 0)
        break;
    if (i == n) {
      cli_error(NULL,
                "invalid adapter_type '%s' (valid: ide, buslogic, "
                "lsilogic, legacyESX, pvscsi)",
                val);
      return -1;
    }
    opts->adapter_type = adapter_types[i];
  } else if (strcmp(key, "hwversion") == 0) {
    unsigned long long v = 0;
    const char *p = val;
    for (; *p >= '0' && *p <= '9'; p++) {
      v = v * 10 + (unsigned)(*p - '0');
      if (v > UINT_MAX)
        break;
    }
    if (p == val || *p != '\0' || v == 0) {
      cli_error(NULL,
                "invalid hwversion '%s' (a positive integer, e.g. 4, "
                "6 or 7)",
                val);
      return -1;
    }
    opts->hw_version = (unsigned)v;
  } else if (strcmp(key, "zeroed_grain") == 0) {
    if (strcmp(val, "on") == 0)
      opts->zeroed_grain = 1;
    else if (strcmp(val, "off") == 0)
      opts->zeroed_grain = 0;
    else {
      cli_error(NULL, "invalid zeroed_grain '%s' (valid: on, off)", val);
      return -1;
    }
  } else if (strcmp(key, "grain_size") == 0) {
    uint64_t bytes;
    if (cli_parse_size("grain_size", val, &bytes) < 0)
      return -1;
    if (bytes < 4096 || bytes > ((uint64_t)1 << 30) ||
        (bytes & (bytes - 1)) != 0) {
      cli_error(NULL,
                "invalid grain_size '%s' (%" PRIu64 " bytes): must be "
                "a power of two from 4096 (4K) to 1073741824 (1G)",
                val, bytes);
      return -1;
    }
    opts->grain_sectors = (uint32_t)(bytes / 512);
  } else if (strcmp(key, "compression_level") == 0) {
    uint64_t level;
    if (cli_parse_uint("compression_level", val, 1, 12, &level) < 0)
      return -1;
    opts->compression_level = (int)level;
  } else {
    cli_error(NULL, "unknown option '%s' (valid: " CREATE_OPTION_KEYS ")", key);
    return -1;
  }
  return 0;
}

int cli_parse_create_options(const char *s, struct vmdk_create_options *opts,
                             bool *help) {
  char *copy = strdup(s);
  if (!copy) {
    cli_error(NULL, "out of memory");
    return -1;
  }
  int ret = 0;
  char *save = NULL;
  for (char *item = strtok_r(copy, ",", &save); item;
       item = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(item, '=');
    if (!eq) {
      if (strcmp(item, "help") == 0 || strcmp(item, "?") == 0) {
        fputs(create_options_help, stdout);
        *help = true;
        continue;
      }
      if (!is_create_option_key(item))
        cli_error(NULL, "unknown option '%s' (valid: " CREATE_OPTION_KEYS ")",
                  item);
      else
        cli_error(NULL, "option '%s' needs a value (%s=...)", item, item);
      ret = -1;
      break;
    }
    *eq = '\0';
    if (apply_create_option(item, eq + 1, opts) < 0) {
      ret = -1;
      break;
    }
  }
  free(copy);
  return ret;
}

/* ---- growable text buffer ----------------------------------------------- */

static bool sb_reserve(struct strbuf *sb, size_t extra) {
  if (sb->failed)
    return false;
  if (extra < sb->cap - sb->len) /* room for EXTRA bytes and the NUL */
    return true;
  size_t need = sb->len + extra + 1;
  if (need < sb->len) {
    sb->failed = true;
    return false;
  }
  size_t cap = sb->cap ? sb->cap : 256;
  while (cap < need)
    cap *= 2;
  char *p = realloc(sb->data, cap);
  if (!p) {
    sb->failed = true;
    return false;
  }
  sb->data = p;
  sb->cap = cap;
  return true;
}

void sb_append(struct strbuf *sb, const char *s, size_t n) {
  if (!sb_reserve(sb, n))
    return;
  memcpy(sb->data + sb->len, s, n);
  sb->len += n;
  sb->data[sb->len] = '\0';
}

void sb_puts(struct strbuf *sb, const char *s) {
  sb_append(sb, s, strlen(s));
}

void sb_printf(struct strbuf *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    sb->failed = true;
    return;
  }
  if (!sb_reserve(sb, (size_t)n))
    return;
  va_start(ap, fmt);
  vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  sb->len += (size_t)n;
}

void sb_free(struct strbuf *sb) {
  free(sb->data);
  sb->data = NULL;
  sb->len = sb->cap = 0;
  sb->failed = false;
}

int sb_write_stdout(struct strbuf *sb) {
  if (sb->failed) {
    cli_error(NULL, "out of memory while formatting the output");
    return -1;
  }
  if (sb->len)
    fwrite(sb->data, 1, sb->len, stdout);
  return cli_flush_stdout();
}

/* ---- JSON --------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at P (1..4), or 0 if invalid. */
static size_t utf8_sequence(const unsigned char *p) {
  unsigned c = p[0];
  size_t n;
  unsigned min;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  unsigned cp = c & (0x7fu >> n);
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3fu);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

void json_escape(struct strbuf *sb, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  sb_append(sb, "\"", 1);
  while (*p) {
    unsigned char c = *p;
    switch (c) {
    case '"':
      sb_append(sb, "\\\"", 2);
      p++;
      continue;
    case '\\':
      sb_append(sb, "\\\\", 2);
      p++;
      continue;
    case '\n':
      sb_append(sb, "\\n", 2);
      p++;
      continue;
    case '\r':
      sb_append(sb, "\\r", 2);
      p++;
      continue;
    case '\t':
      sb_append(sb, "\\t", 2);
      p++;
      continue;
    case '\b':
      sb_append(sb, "\\b", 2);
      p++;
      continue;
    case '\f':
      sb_append(sb, "\\f", 2);
      p++;
      continue;
    default:
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      sb_printf(sb, "\\u%04x", c);
      p++;
      continue;
    }
    size_t n = utf8_sequence(p);
    if (n == 0) {
      sb_append(sb, "\\ufffd", 6);
      p++;
    } else {
      sb_append(sb, (const char *)p, n);
      p += n;
    }
  }
  sb_append(sb, "\"", 1);
}

void json_init(struct json *j, struct strbuf *sb) {
  j->sb = sb;
  j->depth = 0;
  j->has_members[0] = false;
}

/* Separator, indentation and "key": before a value. */
static void json_member(struct json *j, const char *key) {
  if (j->depth == 0)
    return;
  sb_puts(j->sb, j->has_members[j->depth] ? ",\n" : "\n");
  for (int i = 0; i < j->depth; i++)
    sb_append(j->sb, "    ", 4);
  if (key) {
    json_escape(j->sb, key);
    sb_append(j->sb, ": ", 2);
  }
  j->has_members[j->depth] = true;
}

static void json_open(struct json *j, const char *key, char bracket) {
  json_member(j, key);
  sb_append(j->sb, &bracket, 1);
  if (j->depth + 1 >= JSON_MAX_DEPTH) {
    j->sb->failed = true;
    return;
  }
  j->depth++;
  j->has_members[j->depth] = false;
}

static void json_close(struct json *j, char bracket) {
  if (j->depth <= 0) {
    j->sb->failed = true;
    return;
  }
  if (j->has_members[j->depth]) {
    sb_append(j->sb, "\n", 1);
    for (int i = 0; i < j->depth - 1; i++)
      sb_append(j->sb, "    ", 4);
  }
  sb_append(j->sb, &bracket, 1);
  j->depth--;
}

void json_open_object(struct json *j, const char *key) {
  json_open(j, key, '{');
}
void json_close_object(struct json *j) {
  json_close(j, '}');
}
void json_open_array(struct json *j, const char *key) {
  json_open(j, key, '[');
}
void json_close_array(struct json *j) {
  json_close(j, ']');
}

void json_uint(struct json *j, const char *key, uint64_t v) {
  json_member(j, key);
  sb_printf(j->sb, "%" PRIu64, v);
}

void json_string(struct json *j, const char *key, const char *v) {
  json_member(j, key);
  json_escape(j->sb, v ? v : "");
}

void json_bool(struct json *j, const char *key, bool v) {
  json_member(j, key);
  sb_puts(j->sb, v ? "true" : "false");
}

/* ---- formatting --------------------------------------------------------- */

char *cli_human_size(char *buf, uint64_t bytes) {
  static const char *const units[] = {"B",   "KiB", "MiB", "GiB",
                                      "TiB", "PiB", "EiB"};
  /* Unit i is used from 1000 * 1024^(i-1) bytes on, so the number shown
   * stays below 1000. */
  unsigned i = 0;
  while (i < 6 && (double)bytes >= 1000.0 * (double)((uint64_t)1 << (10 * i)))
    i++;
  double v = (double)bytes / (double)((uint64_t)1 << (10 * i));
  snprintf(buf, 32, "%0.3g %s", v, units[i]);
  return buf;
}

/* ---- progress bar (-p) -------------------------------------------------- */

static void progress_print(double pct) {
  fprintf(stderr, "    (%3.2f/100%%)\r", pct);
  fflush(stderr);
}

void progress_start(struct cli_progress *p, bool enabled) {
  p->enabled = enabled;
  p->shown = -1.0;
  if (enabled) {
    progress_print(0.0);
    p->shown = 0.0;
  }
}

void progress_update(struct cli_progress *p, uint64_t done, uint64_t total) {
  if (!p->enabled)
    return;
  double pct = total ? (double)done * 100.0 / (double)total : 100.0;
  if (pct > 100.0)
    pct = 100.0;
  /* Redraw at most once per percent, like qemu-img. */
  if (pct - p->shown >= 1.0 || (pct >= 100.0 && p->shown < 100.0)) {
    progress_print(pct);
    p->shown = pct;
  }
}

void progress_end(struct cli_progress *p, bool success) {
  if (!p->enabled)
    return;
  if (success && p->shown < 100.0)
    progress_print(100.0);
  fputc('\n', stderr);
  p->enabled = false;
}

void *cli_io_alloc(size_t n) {
  void *b;
  return posix_memalign(&b, 4096, n ? n : 1) == 0 ? b : NULL;
}
