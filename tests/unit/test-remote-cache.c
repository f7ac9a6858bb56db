/* SPDX-License-Identifier: BSD-3-Clause */
/* The remote file's cache and read-ahead (lib/remote.c) against the bytes
 * of the file itself: a 40 MiB random file served by `nbdkit file dir=`
 * on a Unix socket, read through a file+nbd+unix:// URL with sequential
 * runs, runs that re-read a little behind (as the stream reader does),
 * jumps, reads across entry boundaries and past the end, from 4 threads at
 * once, under several option sets (default, 1 connection, no read-ahead,
 * a small window).  Every read is compared byte for byte.  Skips (77)
 * without nbdkit. */
#include "testlib.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#define FILE_BYTES ((size_t)40 << 20)
#define THREADS 4
#ifdef __SANITIZE_ADDRESS__
#define READS 800 /* the same paths, in the time of the others */
#else
#define READS 3000
#endif

static uint8_t *truth;
static struct vfile *shared;

static uint64_t rnd(uint64_t *s) { /* xorshift64 */
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void *reader(void *arg) {
  uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  uint8_t *buf = malloc(3 << 20);
  uint64_t pos = rnd(&seed) % FILE_BYTES;
  int bad = 0;
  for (int i = 0; i < READS && !bad; i++) {
    uint64_t k = rnd(&seed) % 100;
    size_t len = k < 50 ? 512 + rnd(&seed) % 65536
               : k < 90 ? rnd(&seed) % (1 << 20) + 1
                        : rnd(&seed) % (3 << 20) + 1;
    if (k < 60)
      ; /* go on where the last read ended */
    else if (k < 75)
      pos = pos > (1 << 20) ? pos - rnd(&seed) % (1 << 20) : 0; /* re-read */
    else if (k < 97)
      pos = rnd(&seed) % FILE_BYTES; /* jump */
    else
      pos = FILE_BYTES - rnd(&seed) % 4096; /* the end, and past it */
    memset(buf, 0xee, len);
    if (vf_pread(shared, buf, len, pos) != 0) {
      fprintf(stderr, "read of %zu at %llu: %s\n", len,
              (unsigned long long)pos, vmdk_get_error());
      bad = 1;
      break;
    }
    size_t in = pos < FILE_BYTES ? (len < FILE_BYTES - pos ? len : FILE_BYTES - pos) : 0;
    if (memcmp(buf, truth + (in ? pos : 0), in) == 0) {
      size_t j = in;
      while (j < len && buf[j] == 0)
        j++;
      if (j == len) {
        pos += len;
        if (pos >= FILE_BYTES)
          pos = 0;
        continue;
      }
    }
    for (size_t j = 0; j < len; j++) { /* find and say the first wrong byte */
      uint8_t want = pos + j < FILE_BYTES ? truth[pos + j] : 0;
      if (buf[j] != want) {
        fprintf(stderr, "read of %zu at %llu: byte %zu is %02x, not %02x\n",
                len, (unsigned long long)pos, j, buf[j], want);
        bad = 1;
        break;
      }
    }
    pos += len;
    if (pos >= FILE_BYTES)
      pos = 0;
  }
  free(buf);
  return (void *)(intptr_t)bad;
}

static void run_with(const char *url, const char *what) {
  shared = vf_open(url, false, OPEN_REMOTE);
  if (!CHECK(shared, "%s: open: %s", what, vmdk_get_error()))
    return;
  CHECK(shared->size == FILE_BYTES, "%s: size %llu", what,
        (unsigned long long)shared->size);
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, reader, (void *)(i + 1));
  int bad = 0;
  for (int i = 0; i < THREADS; i++) {
    void *r;
    pthread_join(t[i], &r);
    bad |= (int)(intptr_t)r;
  }
  CHECK(!bad, "%s: wrong bytes or a failed read (above)", what);
  vf_close(shared);
}

int main(void) {
  if (system("nbdkit --version >/dev/null 2>&1") != 0) {
    printf("SKIP: nbdkit is not installed\n");
    return 77;
  }
  char dir[] = "/tmp/vmdkit-remote-cache.XXXXXX";
  if (!mkdtemp(dir))
    return 1;
  char path[256], sock[256], url[512];
  snprintf(path, sizeof path, "%s/f.bin", dir);
  snprintf(sock, sizeof sock, "%s/sock", dir);
  truth = malloc(FILE_BYTES);
  uint64_t s = 42;
  for (size_t i = 0; i < FILE_BYTES; i += 8) {
    uint64_t v = rnd(&s);
    memcpy(truth + i, &v, 8);
  }
  FILE *f = fopen(path, "wb");
  fwrite(truth, 1, FILE_BYTES, f);
  fclose(f);
  char dirarg[300];
  snprintf(dirarg, sizeof dirarg, "dir=%s", dir);
  pid_t pid = fork();
  if (pid == 0) {
    execlp("nbdkit", "nbdkit", "-f", "-r", "--exit-with-parent", "-U", sock,
           "file", dirarg, NULL);
    _exit(127);
  }
  for (int i = 0; i < 100 && access(sock, F_OK) != 0; i++)
    usleep(50000);
  snprintf(url, sizeof url, "file+nbd+unix:///f.bin?socket=%s", sock);

  run_with(url, "defaults");
  vmdk_remote_option("connections", "1");
  run_with(url, "1 connection");
  vmdk_remote_option("connections", "8");
  vmdk_remote_option("readahead", "4M");
  run_with(url, "8 connections, 4 MiB window");
  vmdk_remote_option("readahead", "0");
  run_with(url, "no read-ahead");
  vmdk_remote_options_clear();

  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  unlink(path);
  unlink(sock);
  rmdir(dir);
  free(truth);
  if (!t_failures)
    printf("remote cache tests passed\n");
  return t_exit_code();
}
