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

/* Whether the file at PATH is the file DEST_ST describes. */
static bool same_inode(const char *path, const struct stat *dest_st) {
  struct stat st;
  return path && stat(path, &st) == 0 && st.st_dev == dest_st->st_dev &&
         st.st_ino == dest_st->st_ino;
}

/* Refuse (-1, error printed) a DEST about to be created or overwritten
 * that is a file (descriptor or extent) of the image TOP, opened as
 * TOP_NAME, or of any image in TOP's backing chain; WHAT names TOP in the
 * message.  0 when DEST does not exist or is none of them.  (vmdk_convert
 * does the same in the library.) */
static int check_not_layer_file(const char *dest, struct vmdk_disk *top,
                                const char *top_name, const char *what) {
  struct stat dest_st;
  if (stat(dest, &dest_st) < 0)
    return 0; /* does not exist yet: nothing to destroy */
  char *name = strdup(top_name); /* the layer D is; owned */
  if (!name) {
    cli_error(NULL, "out of memory");
    return -1;
  }
  int ret = 0;
  for (struct vmdk_disk *d = top; d; d = vmdk_get_backing(d)) {
    struct vmdk_info info;
    if (vmdk_get_info(d, &info) < 0) {
      cli_lib_error(name);
      ret = -1;
      break;
    }
    bool hit = same_inode(name, &dest_st);
    for (size_t i = 0; !hit && i < info.n_extents; i++)
      hit = same_inode(info.extents[i].filename, &dest_st);
    if (hit) {
      if (d == top)
        cli_error(dest, "is a file of %s; refusing to overwrite it", what);
      else
        cli_error(dest,
                  "is a file of %s, in the backing chain of %s; refusing "
                  "to overwrite it",
                  name, what);
      ret = -1;
      break;
    }
    if (!info.parent_hint)
      break;
    char *next = cli_layer_name(name, info.parent_hint);
    if (!next) {
      cli_error(NULL, "out of memory");
      ret = -1;
      break;
    }
    free(name);
    name = next;
  }
  free(name);
  return ret;
}

int cli_check_not_in_chain(const char *dest, const char *backing, int format) {
  struct stat dest_st;
  if (stat(dest, &dest_st) < 0)
    return 0; /* does not exist yet: nothing to destroy */
  char *top = cli_layer_name(dest, backing);
  if (!top) {
    cli_error(NULL, "out of memory");
    return -1;
  }
  int ret = 0;
  struct vmdk_disk *disk = NULL;
  if (same_inode(top, &dest_st)) {
    cli_error(dest, "is the backing file %s itself; refusing to overwrite it",
              backing);
    ret = -1;
  } else if ((disk = vmdk_open_format(top, format, cli_open_flags))) {
    /* (When it does not open, the create call reports why.) */
    char what[64 + PATH_MAX];
    snprintf(what, sizeof what, "the backing file %s", backing);
    ret = check_not_layer_file(dest, disk, top, what);
  }
  vmdk_close(disk);
  free(top);
  return ret;
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
