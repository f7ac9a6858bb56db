/* SPDX-License-Identifier: BSD-3-Clause */
/* Images in the formats QEMU reads (qcow2, vhdx, vpc, vdi, qed, parallels,
 * dmg, ...): recognised by their magic numbers as qemu-img probes them,
 * read and written through a private qemu-nbd (extent_nbd.c), made with
 * `qemu-img create`.  VMDK and raw stay native: they never get here.
 *
 * Probing looks at the first bytes (HEAD) and, for the formats whose
 * signature is a trailer, the last 512 bytes of the file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static bool starts(const uint8_t *head, size_t n, const char *magic,
                   size_t len) {
  return n >= len && memcmp(head, magic, len) == 0;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

const char *qemu_probe(struct vfile *f) {
  uint8_t head[512] = {0};
  size_t n = f->size < sizeof head ? (size_t)f->size : sizeof head;
  if (vf_pread(f, head, n, 0) != 0)
    return NULL;
  if (starts(head, n, "QFI\xfb", 4) && n >= 8) /* qcow2 (version 2, 3), qcow */
    return be32(head + 4) >= 2 ? "qcow2" : "qcow";
  if (starts(head, n, "QED\0", 4))
    return "qed";
  if (starts(head, n, "vhdxfile", 8))
    return "vhdx";
  if (starts(head, n, "conectix", 8)) /* dynamic VHD: footer copy first */
    return "vpc";
  if (n >= 68 && le32(head + 64) == 0xbeda107fu) /* VDI signature */
    return "vdi";
  if ((starts(head, n, "WithoutFreeSpace", 16) ||
       starts(head, n, "WithouFreSpacExt", 16)) &&
      n >= 20 && le32(head + 16) == 2)
    return "parallels";
  if (starts(head, n, "Bochs Virtual HD Image", 22))
    return "bochs";
  if (starts(head, n, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0", 46))
    return "cloop";
  if (starts(head, n, "LUKS\xba\xbe", 6))
    return "luks";
  /* Trailers: a fixed VHD has its footer only at the end (qemu-img
   * probes it as raw and would show the footer as disk data); a dmg its
   * "koly" block. */
  uint8_t tail[512];
  if (f->size >= 1024 && vf_pread(f, tail, sizeof tail, f->size - 512) == 0) {
    if (memcmp(tail, "conectix", 8) == 0)
      return "vpc";
    if (memcmp(tail, "koly", 4) == 0 && be32(tail + 4) == 4)
      return "dmg";
  }
  return NULL;
}

/* A format name as qemu-img takes it: lower-case letters, digits, '_'. */
static int check_format_name(const char *path, const char *format) {
  size_t n = format ? strlen(format) : 0;
  if (n == 0 || n > 32 || strspn(format, "abcdefghijklmnopqrstuvwxyz0123456789_") != n)
    return set_error(EINVAL, "%s: \"%s\" is not a QEMU format name", path,
                     format ? format : "");
  return 0;
}

struct vmdk_disk *vmdk_open_qemu(const char *path, const char *format,
                                 unsigned flags) {
  if (!format) {
    struct vfile *f = vf_open(path, false, 0);
    if (!f)
      return NULL;
    set_error(0, "%s", "");
    const char *name = qemu_probe(f);
    int err = vmdk_get_errno();
    vf_close(f);
    if (!name) {
      if (!err)
        set_error(EINVAL, "%s: not an image in a format QEMU reads (no "
                          "qcow2, qed, vhdx, vpc, vdi, parallels, dmg, "
                          "bochs, cloop or luks signature)",
                  path);
      return NULL;
    }
    format = name;
  }
  if (check_format_name(path, format) != 0)
    return NULL;
  return disk_open_qemu(path, format, flags);
}

/* Run ARGV (argv[0] looked up on PATH) and wait; its stderr is kept, and
 * on failure its last line is the error (naming PATH and WHAT). */
static int run_tool(char *const argv[], const char *path, const char *what) {
  if (qemu_find_tool(argv[0], path) != 0)
    return -1;
  FILE *err = tmpfile();
  if (!err)
    return set_error(errno, "%s: %s", path, strerror(errno));
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    fclose(err);
    return set_error(e, "%s: cannot start %s: %s", path, argv[0], strerror(e));
  }
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
    }
    dup2(fileno(err), 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      int e = errno;
      fclose(err);
      return set_error(e, "%s: %s: %s", path, what, strerror(e));
    }
  int r = 0;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    char msg[1024];
    fflush(err);
    if (qemu_last_line(fileno(err), msg, sizeof msg) != 0)
      snprintf(msg, sizeof msg, "exit status %d",
               WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    const char *m = msg;
    if (strncmp(m, "qemu-img: ", 10) == 0)
      m += 10;
    r = set_error(EIO, "%s: %s: %s", path, what, m);
  }
  fclose(err);
  return r;
}

struct vmdk_disk *vmdk_create_qemu(const char *path, const char *format,
                                   const struct vmdk_create_options *o,
                                   unsigned flags) {
  if (remote_refuse_write(path) != 0 || check_format_name(path, format) != 0)
    return NULL;
  if (o->backing_file) {
    set_error(EINVAL, "%s: vmdk_create_qemu makes no backing links (use "
                      "qemu-img create -b)",
              path);
    return NULL;
  }
  if (o->size_bytes > UINT64_MAX - SECTOR) {
    set_error(EFBIG, "%s: size %" PRIu64 " is too large", path,
              o->size_bytes);
    return NULL;
  }
  char size[32], abs[PATH_MAX + 2];
  snprintf(size, sizeof size, "%" PRIu64,
           div_round_up(o->size_bytes, SECTOR) * SECTOR);
  /* "./name": qemu would read "proto:..." names as options. */
  snprintf(abs, sizeof abs, "%s%s", path[0] == '/' ? "" : "./", path);
  char *argv[12];
  size_t i = 0;
  argv[i++] = (char *)"qemu-img";
  argv[i++] = (char *)"create";
  argv[i++] = (char *)"-q";
  argv[i++] = (char *)"-f";
  argv[i++] = (char *)format;
  if (strcmp(format, "vpc") == 0) { /* the size asked, not CHS-rounded */
    argv[i++] = (char *)"-o";
    argv[i++] = (char *)"force_size=on";
  }
  argv[i++] = abs;
  argv[i++] = size;
  argv[i] = NULL;
  char what[64];
  snprintf(what, sizeof what, "qemu-img create -f %s", format);
  if (qemu_find_tool("qemu-nbd", path) != 0 || run_tool(argv, path, what) != 0)
    return NULL;
  struct vmdk_disk *d = disk_open_qemu(path, format, flags | VMDK_OPEN_RDWR);
  if (!d)
    unlink(path);
  return d;
}
