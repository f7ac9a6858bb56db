/* SPDX-License-Identifier: BSD-3-Clause */
/* The per-thread error: one message and one errno, set by the call that
 * failed and read with vmdk_get_error()/vmdk_get_errno(). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local char err_msg[1024];
static _Thread_local int err_num;

/* Secrets (passwords, cookies, headers, signatures of presigned URLs) the
 * remote layer was given: no message ever shows one.  Kept for the life
 * of the process; shorter ones than SECRET_MIN are not looked for (a
 * one-letter password would blank every such letter). */
#define SECRET_MIN 4
#define SECRET_MAX 256 /* then the oldest goes */
static pthread_mutex_t secret_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[SECRET_MAX];
static size_t n_secrets; /* read without the lock only to skip the scan */

void secret_register(const char *s) {
  if (!s || strlen(s) < SECRET_MIN)
    return;
  pthread_mutex_lock(&secret_lock);
  bool known = false;
  for (size_t i = 0; i < n_secrets && !known; i++)
    known = strcmp(secrets[i], s) == 0;
  char *c = known ? NULL : strdup(s);
  if (c && n_secrets == SECRET_MAX) { /* a long-lived process: forget the
                                         oldest */
    free(secrets[0]);
    memmove(secrets, secrets + 1, (SECRET_MAX - 1) * sizeof *secrets);
    n_secrets--;
  }
  if (c) {
    secrets[n_secrets] = c;
    __atomic_store_n(&n_secrets, n_secrets + 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&secret_lock);
}

void secret_scrub(char *msg, size_t cap) {
  if (__atomic_load_n(&n_secrets, __ATOMIC_ACQUIRE) == 0)
    return;
  pthread_mutex_lock(&secret_lock);
  for (size_t i = 0; i < n_secrets; i++) {
    size_t n = strlen(secrets[i]);
    for (char *p = strstr(msg, secrets[i]); p; p = strstr(p, secrets[i])) {
      static const char mask[] = "(secret)";
      size_t m = sizeof mask - 1, rest = strlen(p + n);
      if ((size_t)(p - msg) + m + 1 > cap) { /* no room: cut it here */
        *p = '\0';
        break;
      }
      if ((size_t)(p - msg) + m + rest + 1 > cap)
        rest = cap - (size_t)(p - msg) - m - 1;
      memmove(p + m, p + n, rest);
      p[m + rest] = '\0';
      memcpy(p, mask, m);
      p += m;
    }
  }
  pthread_mutex_unlock(&secret_lock);
}

char *secret_scrubbed(const char *s) {
  size_t cap = strlen(s) * 2 + 16; /* "(secret)" replaces 4 bytes or more */
  char *c = malloc(cap);
  if (c) {
    snprintf(c, cap, "%s", s);
    secret_scrub(c, cap);
  }
  return c;
}

int set_error(int errnum, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err_msg, sizeof err_msg, fmt, ap);
  va_end(ap);
  secret_scrub(err_msg, sizeof err_msg);
  err_num = errnum ? errnum : EIO;
  return -1;
}

const char *vmdk_get_error(void) {
  return err_msg;
}

int vmdk_get_errno(void) {
  return err_num;
}

const char *vmdk_version(void) {
  return VMDKIT_VERSION_STRING;
}

const char *human_size(uint64_t bytes) {
  static _Thread_local char bufs[4][32];
  static _Thread_local unsigned next;
  char *b = bufs[next++ % 4];
  static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) {
    snprintf(b, 32, "%" PRIu64 " bytes", bytes);
    return b;
  }
  unsigned u = 0;
  uint64_t div = 1024;
  while (u + 1 < 6 && bytes / div >= 1024) {
    div *= 1024;
    u++;
  }
  if (bytes % div == 0)
    snprintf(b, 32, "%" PRIu64 " %s", bytes / div, units[u]);
  else
    snprintf(b, 32, "%.2f %s", (double)bytes / (double)div, units[u]);
  return b;
}
