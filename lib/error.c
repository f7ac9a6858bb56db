/* SPDX-License-Identifier: BSD-3-Clause */
/* The per-thread error: one message and one errno, set by the call that
 * failed and read with vmdk_get_error()/vmdk_get_errno(). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char err_msg[1024];
static _Thread_local int err_num;

int set_error(int errnum, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err_msg, sizeof err_msg, fmt, ap);
  va_end(ap);
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
