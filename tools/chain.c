/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit CLI: helpers for backing chains and long operations (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The folder part of PATH ("." for a bare name), malloc'd, or NULL. */
static char *folder_of(const char *path) {
  char *copy = strdup(path);
  if (!copy)
    return NULL;
  char *d = strdup(dirname(copy));
  free(copy);
  return d;
}

char *cli_layer_name(const char *child, const char *hint) {
  if (hint[0] == '/')
    return strdup(hint);
  char *dir = folder_of(child);
  if (!dir)
    return NULL;
  char *p = NULL;
  if (strcmp(dir, ".") == 0) {
    p = strdup(hint);
  } else {
    size_t n = strlen(dir) + strlen(hint) + 2;
    if ((p = malloc(n)))
      snprintf(p, n, "%s/%s", dir, hint);
  }
  free(dir);
  return p;
}

char *cli_backing_hint(const char *child, const char *backing) {
  char *hint = NULL;
  if (backing[0] != '/') {
    if (!(hint = strdup(backing)))
      cli_error(NULL, "out of memory");
    return hint;
  }
  /* Resolve the folders only, so a symlinked file keeps its own name. */
  char *cdir = folder_of(child), *bcopy = strdup(backing),
       *bdir = folder_of(backing);
  char creal[PATH_MAX], breal[PATH_MAX];
  if (!cdir || !bcopy || !bdir) {
    cli_error(NULL, "out of memory");
    goto out;
  }
  const char *base = basename(bcopy);
  size_t clen;
  if (realpath(cdir, creal) && realpath(bdir, breal) &&
      strcmp(base, "/") != 0 && strcmp(base, ".") != 0 &&
      strcmp(base, "..") != 0) {
    clen = strlen(creal);
    if (strcmp(creal, breal) == 0) {
      hint = strdup(base);
    } else if (strncmp(breal, creal, clen) == 0 &&
               (breal[clen] == '/' || clen == 1)) {
      /* BACKING is in a folder below the child's: "sub/dir/NAME". */
      const char *rel = breal + clen + (clen == 1 ? 0 : 1);
      size_t n = strlen(rel) + strlen(base) + 2;
      if ((hint = malloc(n)))
        snprintf(hint, n, "%s/%s", rel, base);
    } else {
      hint = strdup(backing);
    }
  } else {
    hint = strdup(backing); /* cannot tell: the library will say */
  }
  if (!hint)
    cli_error(NULL, "out of memory");
out:
  free(cdir);
  free(bcopy);
  free(bdir);
  return hint;
}

/* ---- long operations: progress and cancellation ----------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

void cli_catch_interrupts(void) {
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
}

bool cli_interrupted(void) {
  return interrupted != 0;
}

int cli_progress_cb(void *opaque, uint64_t done, uint64_t total) {
  progress_update(opaque, done, total);
  return interrupted ? 1 : 0;
}
