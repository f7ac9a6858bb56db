/* SPDX-License-Identifier: BSD-3-Clause */
/* Replay driver: run a fuzz target's LLVMFuzzerTestOneInput over saved
 * inputs, without libFuzzer, so any compiler builds it and ctest runs it.
 *
 * Usage: replay-TARGET PATH...
 * Each PATH is a file (one input) or a folder (every regular file in it,
 * in name order; sub-folders and names starting with "." are skipped).  A
 * PATH that does not exist is skipped with a note, so an optional corpus
 * may be named.  Prints one line per input to stderr before running it (so
 * the last line names the culprit of a crash), and a summary at the end.  Exits 0 when every input ran (a finding aborts
 * the process), 1 on a usage or I/O error, 77 when there was no input at
 * all.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned n_inputs;

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 65536, len = 0;
  uint8_t *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      uint8_t *b = realloc(buf, cap *= 2);
      if (!b)
        free(buf);
      buf = b;
    }
  }
  int err = ferror(f);
  fclose(f);
  if (!buf || err) {
    fprintf(stderr, "replay: %s: %s\n", path,
            buf ? "read error" : "out of memory");
    free(buf);
    return -1;
  }
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
  /* libFuzzer never passes NULL; give the target a private copy of
   * exactly LEN bytes so ASan sees reads past its end. */
  uint8_t *input = malloc(len ? len : 1);
  if (!input) {
    free(buf);
    return -1;
  }
  memcpy(input, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(input, len);
  free(input);
  n_inputs++;
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  int r = 0;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    if (n == cap) {
      char **a = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names);
      if (!a) {
        r = -1;
        break;
      }
      names = a;
    }
    size_t len = strlen(dir) + strlen(de->d_name) + 2;
    if (!(names[n] = malloc(len))) {
      r = -1;
      break;
    }
    snprintf(names[n++], len, "%s/%s", dir, de->d_name);
  }
  closedir(d);
  if (n)
    qsort(names, n, sizeof *names, cmp_names);
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (r == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode) &&
        run_file(names[i]) != 0)
      r = -1;
    free(names[i]);
  }
  free(names);
  if (r != 0)
    fprintf(stderr, "replay: %s: cannot list it\n", dir);
  return r;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "Usage: %s PATH...\n", argv[0]);
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s: %s (skipped)\n", argv[i], strerror(errno));
      continue;
    }
    if ((S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i])) != 0)
      return 1;
  }
  printf("replay: %u inputs ran\n", n_inputs);
  return n_inputs ? 0 : 77;
}
