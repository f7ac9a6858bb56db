/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit mount: the virtual disk as one regular file in a FUSE file system.
 *
 * A thin adapter over include/vmdkit.h, like the nbdkit plugin.  Contracts:
 *  - The image is opened before anything is mounted: an image that does not
 *    open is refused with the usual one-line error and the mount point is
 *    left alone.  The process goes to the background (unless -f) only after
 *    the mount succeeded, so when `vmdkit mount` returns 0 the file is there.
 *  - The mount point holds one file, NAME.raw (see file_name()), mode 0644
 *    (0444 with -r), whose size is the virtual size; it cannot be resized,
 *    created, removed or renamed.  Writes past its end fail with ENOSPC, as on
 *    a disk.
 *  - One handle serves every request, serialised by a mutex (the FUSE loop
 *    is multi-threaded; the handle is not thread-safe).
 *  - Durability: fsync(2) is vmdk_flush().  close(2) flushes too when
 *    anything was written since the last flush (so once close returns the
 *    image files are consistent on disk), and unmounting closes the image,
 *    which flushes.
 *  - SEEK_DATA/SEEK_HOLE follow vmdk_block_status(): a hole is a range that
 *    holds no stored data and reads as zeros (unallocated or zeroed grains,
 *    through the whole backing chain); everything else is data.
 *  - fallocate(PUNCH_HOLE|KEEP_SIZE) and ZERO_RANGE are vmdk_zero().
 *  - Library errors reach the caller as their errno and the log as the
 *    library's one-line message: stderr while in the foreground, syslog
 *    once the process is a daemon (its stderr is then /dev/null). */
#include "cli.h"

enum { OPT_FORMAT = CLI_OPT_FIRST };

static int mount_run(int argc, char **argv);

/* Described (help, man page, completion) also when built without FUSE. */
const struct cli_command cmd_mount = {
    .name = "mount",
    .summary = "show the virtual disk as a raw file (FUSE)",
    .description =
        "Show the virtual disk of IMAGE as one regular file in MOUNTPOINT: a "
        "raw view of the whole disk, named after IMAGE with its extension "
        "replaced by \".raw\" (disk.vmdk -> MOUNTPOINT/disk.raw; an NBD URI "
        "shows as disk.raw).  Reads and writes go through the image's own "
        "format: grains are allocated as needed, SEEK_DATA/SEEK_HOLE show "
        "what is allocated, fallocate(PUNCH_HOLE) and ZERO_RANGE zero without "
        "allocating, fsync flushes the image.  The file keeps the disk's "
        "size: it cannot be truncated or extended (use 'vmdkit resize')."
        "\n\n"
        "The command returns once the file system is mounted and keeps "
        "serving it in the background (messages then go to syslog).  Unmount "
        "with 'fusermount3 -u MOUNTPOINT': the image is then flushed and "
        "closed.",
    .options =
        (const struct cli_option[]){
            {'r', "read-only", NULL, CLI_NONE, 0,
             "mount read-only (the image is opened read-only, the file is "
             "0444; an image that cannot be written, such as a disk "
             "inside an OVA, is mounted so with a warning)"},
            {'f', "foreground", NULL, CLI_NONE, 0,
             "stay in the foreground until unmounted (messages on stderr; "
             "SIGINT/SIGTERM unmount)"},
            {'o', NULL, "OPTS", CLI_TEXT, 0,
             "FUSE mount options, comma-separated, e.g. allow_other (may be "
             "repeated)"},
            {OPT_FORMAT, "format", "FMT", CLI_FORMAT, 0,
             "image format (default: probe)"},
            CLI_OPTIONS_END,
        },
    .operands = (const struct cli_operand[]){{"IMAGE", CLI_FILE},
                                             {"MOUNTPOINT", CLI_DIRECTORY},
                                             {NULL, CLI_NONE}},
    .run = mount_run,
};

#ifdef HAVE_FUSE3
#define FUSE_USE_VERSION 31
#include <fuse.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>



/* ---- state --------------------------------------------------------------- */

/* Everything the FUSE callbacks share.  LOCK guards DISK, DIRTY and the
 * times; the other fields are set before the mount and never change. */
struct mount_state {
  pthread_mutex_t lock;
  struct vmdk_disk *disk;              /* NULL once destroy() closed it */
  char *path;                          /* "/NAME.raw": the file's FUSE path */
  uint64_t size;                       /* virtual size in bytes */
  bool readonly;                       /* -r: opened read-only, mode 0444 */
  bool dirty;                          /* written since the last vmdk_flush() */
  bool close_failed;                   /* the final vmdk_close() failed */
  struct timespec atime, mtime, ctime; /* shown by getattr: the image
                                          file's at mount, then updated by
                                          writes and utimens */
  uid_t uid;
  gid_t gid;
};

static struct mount_state ms = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* True once the process is a daemon: messages go to syslog. */
static bool use_syslog;

static void vlog_line(const char *fmt, va_list ap) {
  if (use_syslog) {
    vsyslog(LOG_ERR, fmt, ap);
    return;
  }
  fputs("vmdkit: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

static void log_line(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog_line(fmt, ap);
  va_end(ap);
}

/* libfuse's own messages ("fuse: bad mount point ...\n"), some printed in
 * pieces: collected until their newline, then logged as one line with our
 * prefix.  LOG_LOCK guards LOG_BUF. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1024];

static void fuse_log_flush(void) {
  pthread_mutex_lock(&log_lock);
  size_t n = strlen(log_buf);
  while (n > 0 && log_buf[n - 1] == '\n')
    log_buf[--n] = '\0';
  if (n > 0)
    log_line("%s", log_buf);
  log_buf[0] = '\0';
  pthread_mutex_unlock(&log_lock);
}

static void fuse_log_cb(enum fuse_log_level level, const char *fmt,
                        va_list ap) {
  if (level > FUSE_LOG_NOTICE)
    return;
  pthread_mutex_lock(&log_lock);
  size_t n = strlen(log_buf);
  vsnprintf(log_buf + n, sizeof log_buf - n, fmt, ap);
  n = strlen(log_buf);
  bool line = n > 0 && log_buf[n - 1] == '\n';
  pthread_mutex_unlock(&log_lock);
  if (line || n + 1 >= sizeof log_buf)
    fuse_log_flush();
}

/* Log the library's last error and return it as -errno (EIO when the
 * library left none). */
static int lib_fail(void) {
  const char *msg = vmdk_get_error();
  log_line("%s", msg && *msg ? msg : "unknown error");
  int e = vmdk_get_errno();
  return -(e ? e : EIO);
}

static void now(struct timespec *ts) {
  clock_gettime(CLOCK_REALTIME, ts);
}

/* Flush the image if something was written since the last flush.  Called
 * with ms.lock held.  Returns 0 or -errno. */
static int flush_locked(void) {
  if (!ms.disk || !ms.dirty)
    return 0;
  if (vmdk_flush(ms.disk) != 0)
    return lib_fail();
  ms.dirty = false;
  return 0;
}

/* ---- FUSE operations ----------------------------------------------------- */

static bool is_root(const char *path) {
  return strcmp(path, "/") == 0;
}

static bool is_file(const char *path) {
  return path && strcmp(path, ms.path) == 0;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  (void)conn;
  cfg->use_ino = 0;
  /* The file's size never changes and only this process writes it. */
  cfg->attr_timeout = 1.0;
  cfg->entry_timeout = 1.0;
  return NULL;
}

static void op_destroy(void *private_data) {
  (void)private_data;
  pthread_mutex_lock(&ms.lock);
  if (ms.disk) {
    if (vmdk_close(ms.disk) != 0) {
      ms.close_failed = true;
      lib_fail();
    }
    ms.disk = NULL;
  }
  pthread_mutex_unlock(&ms.lock);
}

static int op_getattr(const char *path, struct stat *st,
                      struct fuse_file_info *fi) {
  (void)fi;
  memset(st, 0, sizeof *st);
  st->st_uid = ms.uid;
  st->st_gid = ms.gid;
  pthread_mutex_lock(&ms.lock);
  st->st_atim = ms.atime;
  st->st_mtim = ms.mtime;
  st->st_ctim = ms.ctime;
  if (is_root(path)) {
    pthread_mutex_unlock(&ms.lock);
    st->st_mode = S_IFDIR | (ms.readonly ? 0555 : 0755);
    st->st_nlink = 2;
    return 0;
  }
  if (!is_file(path)) {
    pthread_mutex_unlock(&ms.lock);
    return -ENOENT;
  }
  /* st_blocks: the host space the image takes (so du and sparse-aware
   * copies see a sparse file), at most the disk's size, and at least one
   * block: some archivers take 0 blocks for "all holes" without looking
   * (and a child's data may all be in its backing file). */
  uint64_t blocks = (ms.size + 511) / 512;
  struct vmdk_info info;
  if (ms.disk && vmdk_get_info(ms.disk, &info) == 0 &&
      info.actual_bytes / 512 < blocks)
    blocks = info.actual_bytes / 512;
  if (blocks == 0 && ms.size > 0)
    blocks = 1;
  pthread_mutex_unlock(&ms.lock);
  st->st_mode = S_IFREG | (ms.readonly ? 0444 : 0644);
  st->st_nlink = 1;
  st->st_size = (off_t)ms.size;
  st->st_blocks = (blkcnt_t)blocks;
  st->st_blksize = 65536;
  return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
                      off_t offset, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
  (void)offset;
  (void)fi;
  (void)flags;
  if (!is_root(path))
    return -ENOTDIR;
  filler(buf, ".", NULL, 0, 0);
  filler(buf, "..", NULL, 0, 0);
  filler(buf, ms.path + 1, NULL, 0, 0);
  return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi) {
  if (is_root(path))
    return -EISDIR;
  if (!is_file(path))
    return -ENOENT;
  if (ms.readonly && (fi->flags & O_ACCMODE) != O_RDONLY)
    return -EROFS;
  return 0;
}

static int op_read(const char *path, char *buf, size_t count, off_t offset,
                   struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  if (offset < 0)
    return -EINVAL;
  uint64_t off = (uint64_t)offset;
  if (off >= ms.size)
    return 0;
  if (count > ms.size - off)
    count = (size_t)(ms.size - off);
  if (count > INT_MAX)
    count = INT_MAX & ~(size_t)4095;
  pthread_mutex_lock(&ms.lock);
  int r = ms.disk ? vmdk_pread(ms.disk, buf, count, off) : -1;
  int ret = r == 0 ? (int)count : ms.disk ? lib_fail() : -EIO;
  pthread_mutex_unlock(&ms.lock);
  return ret;
}

static int op_write(const char *path, const char *buf, size_t count,
                    off_t offset, struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  if (ms.readonly)
    return -EROFS;
  if (offset < 0)
    return -EINVAL;
  uint64_t off = (uint64_t)offset;
  if (count == 0)
    return 0;
  if (off >= ms.size)
    return -ENOSPC; /* the disk cannot grow through the mount */
  if (count > ms.size - off)
    count = (size_t)(ms.size - off); /* a short write, as on a disk */
  if (count > INT_MAX)
    count = INT_MAX & ~(size_t)4095;
  pthread_mutex_lock(&ms.lock);
  int ret;
  if (!ms.disk) {
    ret = -EIO;
  } else if (vmdk_pwrite(ms.disk, buf, count, off) != 0) {
    ret = lib_fail();
    ms.dirty = true; /* part of it may have been written */
  } else {
    ret = (int)count;
    ms.dirty = true;
    now(&ms.mtime);
    ms.ctime = ms.mtime;
  }
  pthread_mutex_unlock(&ms.lock);
  return ret;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path;
  (void)datasync;
  (void)fi;
  pthread_mutex_lock(&ms.lock);
  int ret = 0;
  /* Always a full flush, dirty or not: fsync(2) promises durability of
   * everything written before, whoever wrote it. */
  if (ms.disk && !ms.readonly) {
    if (vmdk_flush(ms.disk) != 0)
      ret = lib_fail();
    else
      ms.dirty = false;
  }
  pthread_mutex_unlock(&ms.lock);
  return ret;
}

/* close(2) of a descriptor (and of each of its duplicates). */
static int op_flush(const char *path, struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  pthread_mutex_lock(&ms.lock);
  int ret = flush_locked();
  pthread_mutex_unlock(&ms.lock);
  return ret;
}

/* The last reference to an open file went away (also after munmap). */
static int op_release(const char *path, struct fuse_file_info *fi) {
  return op_flush(path, fi);
}

struct seek_ctx {
  bool want_data; /* SEEK_DATA: find data, else a hole */
  bool found;
  uint64_t offset; /* where the first matching run starts */
};

/* A hole holds no stored data and reads as zeros. */
static bool run_is_data(const struct vmdk_run *run) {
  return (run->flags & VMDK_RUN_DATA) || !(run->flags & VMDK_RUN_ZERO);
}

static int seek_cb(void *opaque, const struct vmdk_run *run) {
  struct seek_ctx *c = opaque;
  if (run->length == 0 || run_is_data(run) != c->want_data)
    return 0;
  c->found = true;
  c->offset = run->offset;
  return 1;
}

static off_t op_lseek(const char *path, off_t offset, int whence,
                      struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  if (whence != SEEK_DATA && whence != SEEK_HOLE)
    return -EINVAL; /* the kernel handles SEEK_SET, SEEK_CUR, SEEK_END */
  if (offset < 0)
    return -ENXIO;
  uint64_t off = (uint64_t)offset;
  if (off >= ms.size)
    return -ENXIO;
  struct seek_ctx c = {.want_data = whence == SEEK_DATA};
  pthread_mutex_lock(&ms.lock);
  int r = ms.disk ? vmdk_block_status(ms.disk, off, ms.size - off, seek_cb, &c)
                  : -1;
  off_t ret;
  if (r != 0)
    ret = ms.disk ? lib_fail() : -EIO;
  else if (c.found)
    ret = (off_t)(c.offset > off ? c.offset : off);
  else if (whence == SEEK_HOLE)
    ret = (off_t)ms.size; /* the end of the file is a hole */
  else
    ret = -ENXIO;
  pthread_mutex_unlock(&ms.lock);
  return ret;
}

static int op_fallocate(const char *path, int mode, off_t offset, off_t len,
                        struct fuse_file_info *fi) {
  (void)path;
  (void)fi;
  if (ms.readonly)
    return -EROFS;
  bool keep_size = mode & FALLOC_FL_KEEP_SIZE;
  int op = mode & ~FALLOC_FL_KEEP_SIZE;
  if (op != FALLOC_FL_PUNCH_HOLE && op != FALLOC_FL_ZERO_RANGE)
    return -EOPNOTSUPP; /* allocating: nothing can reserve grains */
  if (op == FALLOC_FL_PUNCH_HOLE && !keep_size)
    return -EOPNOTSUPP;
  if (offset < 0 || len <= 0)
    return -EINVAL;
  uint64_t off = (uint64_t)offset, count = (uint64_t)len;
  if (off >= ms.size || count > ms.size - off) {
    if (!keep_size)
      return -ENOSPC; /* would grow the file */
    if (off >= ms.size)
      return 0;
    count = ms.size - off;
  }
  pthread_mutex_lock(&ms.lock);
  int ret = 0;
  if (!ms.disk) {
    ret = -EIO;
  } else {
    ms.dirty = true;
    if (vmdk_zero(ms.disk, count, off) != 0) {
      ret = lib_fail();
    } else {
      now(&ms.mtime);
      ms.ctime = ms.mtime;
    }
  }
  pthread_mutex_unlock(&ms.lock);
  return ret;
}

/* The size is the disk's: truncating to it is a no-op, anything else is
 * refused (an O_TRUNC open fails too). */
static int op_truncate(const char *path, off_t size,
                       struct fuse_file_info *fi) {
  (void)fi;
  if (!is_file(path))
    return is_root(path) ? -EISDIR : -ENOENT;
  if (ms.readonly)
    return -EROFS;
  return size >= 0 && (uint64_t)size == ms.size ? 0 : -EPERM;
}

static int op_utimens(const char *path, const struct timespec tv[2],
                      struct fuse_file_info *fi) {
  (void)fi;
  if (!is_file(path) && !is_root(path))
    return -ENOENT;
  pthread_mutex_lock(&ms.lock);
  struct timespec t;
  now(&t);
  for (int i = 0; i < 2; i++) {
    struct timespec *dst = i == 0 ? &ms.atime : &ms.mtime;
    if (!tv || tv[i].tv_nsec == UTIME_NOW)
      *dst = t;
    else if (tv[i].tv_nsec != UTIME_OMIT)
      *dst = tv[i];
  }
  ms.ctime = t;
  pthread_mutex_unlock(&ms.lock);
  return 0;
}

/* The folder holds the one file: nothing is created, removed, renamed or
 * changed hands (EPERM rather than libfuse's ENOSYS). */
static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  (void)path;
  (void)mode;
  (void)fi;
  return -EPERM;
}

static int op_mkdir(const char *path, mode_t mode) {
  (void)path;
  (void)mode;
  return -EPERM;
}

static int op_remove(const char *path) {
  (void)path;
  return -EPERM;
}

static int op_rename(const char *from, const char *to, unsigned flags) {
  (void)from;
  (void)to;
  (void)flags;
  return -EPERM;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
  (void)path;
  (void)mode;
  (void)fi;
  return -EPERM;
}

static int op_chown(const char *path, uid_t uid, gid_t gid,
                    struct fuse_file_info *fi) {
  (void)path;
  (void)uid;
  (void)gid;
  (void)fi;
  return -EPERM;
}

static const struct fuse_operations ops = {
    .init = op_init,
    .destroy = op_destroy,
    .getattr = op_getattr,
    .readdir = op_readdir,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .fsync = op_fsync,
    .flush = op_flush,
    .release = op_release,
    .lseek = op_lseek,
    .fallocate = op_fallocate,
    .truncate = op_truncate,
    .utimens = op_utimens,
    .create = op_create,
    .mkdir = op_mkdir,
    .unlink = op_remove,
    .rmdir = op_remove,
    .rename = op_rename,
    .chmod = op_chmod,
    .chown = op_chown,
};

/* ---- setup --------------------------------------------------------------- */

/* Whether IMAGE is a URI (nbd://, nbd+unix://, http://, https://, ssh://,
 * file+nbd://, ...): the library opens those itself, they are no paths. */
static bool is_uri(const char *image) {
  const char *sep = strstr(image, "://");
  size_t n = sep ? (size_t)(sep - image) : 0;
  return n > 0 &&
         strspn(image, "abcdefghijklmnopqrstuvwxyz+") == n;
}

/* Whether IMAGE is the URL of a remote file (read through nbdkit child
 * processes and threads, which a fork does not carry over). */
static bool is_remote(const char *image) {
  return is_uri(image) && strncmp(image, "nbd", 3) != 0;
}

/* The file's FUSE path: "/" + IMAGE's base name with its extension (from
 * the last dot, unless the name starts with it) replaced by ".raw".  An
 * NBD URI gives "/disk.raw".  malloc'd, NULL when out of memory. */
static char *file_name(const char *image) {
  if (is_uri(image) && !is_remote(image))
    return strdup("/disk.raw");
  size_t n = is_remote(image) ? strcspn(image, "?#") : strlen(image);
  while (n > 1 && image[n - 1] == '/')
    n--;
  size_t start = n;
  while (start > 0 && image[start - 1] != '/')
    start--;
  size_t end = n;
  for (size_t i = n; i > start + 1; i--)
    if (image[i - 1] == '.') {
      end = i - 1;
      break;
    }
  if (end == start) /* "/" or "" */
    return strdup("/disk.raw");
  char *p = malloc(1 + (end - start) + 5);
  if (!p)
    return NULL;
  p[0] = '/';
  memcpy(p + 1, image + start, end - start);
  memcpy(p + 1 + (end - start), ".raw", 5);
  return p;
}

/* IMAGE as an absolute path (the daemon changes its folder to "/", and the
 * library reopens the descriptor by path).  Not resolved: symbolic links
 * and .. keep their meaning.  URIs are kept.  malloc'd, NULL after printing
 * an error. */
static char *absolute(const char *image) {
  if (image[0] == '/' || is_uri(image)) {
    char *p = strdup(image);
    if (!p)
      cli_error(NULL, "out of memory");
    return p;
  }
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) {
    cli_error(NULL, "cannot get the current folder: %s", strerror(errno));
    return NULL;
  }
  size_t n = strlen(cwd) + 1 + strlen(image) + 1;
  char *p = malloc(n);
  if (!p) {
    cli_error(NULL, "out of memory");
    return NULL;
  }
  snprintf(p, n, "%s/%s", strcmp(cwd, "/") ? cwd : "", image);
  return p;
}

/* Whether the real path of FILE lies under the real folder DIR (or is it). */
static bool inside(const char *dir, const char *file) {
  char rd[PATH_MAX], rf[PATH_MAX];
  if (!realpath(dir, rd) || !realpath(file, rf))
    return false;
  size_t n = strlen(rd);
  if (strcmp(rd, "/") == 0)
    return true;
  return strncmp(rf, rd, n) == 0 && (rf[n] == '/' || rf[n] == '\0');
}

/* Refuse a MOUNTPOINT that would hide the image's own files: the library
 * reopens the descriptor by path (info, CID updates), and it would find
 * the mount instead.  0, or -1 after printing an error. */
static int check_mountpoint(struct vmdk_disk *disk, const char *image,
                            const char *mountpoint) {
  if (is_uri(image))
    return 0;
  if (inside(mountpoint, image)) {
    cli_error(mountpoint,
              "the mount would hide the image %s itself; choose a mount "
              "point outside the image's folder",
              image);
    return -1;
  }
  struct vmdk_info info;
  if (vmdk_get_info(disk, &info) != 0)
    return 0;
  for (size_t i = 0; i < info.n_extents; i++) {
    const char *f = info.extents[i].filename;
    if (f && inside(mountpoint, f)) {
      cli_error(mountpoint,
                "the mount would hide the image's extent file %s; choose a "
                "mount point outside its folder",
                f);
      return -1;
    }
  }
  return 0;
}

/* Append ",OPT" (or "OPT" to an empty list) to the malloc'd *LIST with
 * the commas and backslashes of OPT escaped when ESCAPE.  0, or -1 when out
 * of memory. */
static int add_option(char **list, const char *opt, bool escape) {
  size_t old = *list ? strlen(*list) : 0;
  size_t n = old + 1 + 2 * strlen(opt) + 1;
  char *p = realloc(*list, n);
  if (!p)
    return -1;
  size_t k = old;
  if (old)
    p[k++] = ',';
  for (const char *s = opt; *s; s++) {
    if (escape && (*s == ',' || *s == '\\'))
      p[k++] = '\\';
    p[k++] = *s;
  }
  p[k] = '\0';
  *list = p;
  return 0;
}

static int mount_run(int argc, char **argv) {
  struct cli_parser parser;
  int format = VMDK_FORMAT_AUTO;
  bool readonly = false, foreground = false;
  char *user_opts = NULL; /* -o arguments, joined with commas */
  int c;

  cli_parser_init(&parser, &cmd_mount, argc, argv);
  while ((c = cli_getopt(&parser)) > 0) {
    switch (c) {
    case 'r':
      readonly = true;
      break;
    case 'f':
      foreground = true;
      break;
    case 'o':
      if (add_option(&user_opts, optarg, false) < 0) {
        cli_error(NULL, "out of memory");
        free(user_opts);
        return 1;
      }
      break;
    case OPT_FORMAT:
      if (cli_parse_format(optarg, &format) < 0) {
        free(user_opts);
        return 1;
      }
      break;
    default:
      free(user_opts);
      return cli_unhandled(&parser, c);
    }
  }
  if (c < 0) {
    free(user_opts);
    return parser.status;
  }
  if (argc - optind != 2) {
    cli_usage_error(argv[0], "expected IMAGE MOUNTPOINT");
    free(user_opts);
    return 1;
  }
  const char *given = argv[optind];
  const char *mountpoint = argv[optind + 1];

  int ret = 1;
  char *image = NULL, *opts = NULL;
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  struct fuse *fuse = NULL;
  bool mounted = false, handlers = false;

  fuse_set_log_func(fuse_log_cb);
  ms.readonly = readonly;
  ms.uid = getuid();
  ms.gid = getgid();
  if (!(image = absolute(given)))
    goto out;
  if (!(ms.path = file_name(given))) {
    cli_error(NULL, "out of memory");
    goto out;
  }

  /* Open first: a bad image is refused before anything is mounted. */
  ms.disk = cli_open(image, format,
                             (readonly ? 0 : VMDK_OPEN_RDWR) | cli_open_flags);
  if (!ms.disk && !readonly && vmdk_get_errno() == EROFS) {
    /* A disk that cannot be written (inside an OVA, on a read-only file
     * system): mounted read-only with a warning, as mount(8) does for a
     * write-protected device. */
    ms.disk = cli_open(image, format, cli_open_flags);
    if (ms.disk) {
      readonly = ms.readonly = true;
      log_line("%s: cannot be written, mounted read-only", given);
    }
  }
  if (!ms.disk) {
    /* The library names the path it was given: show the user's. */
    const char *msg = vmdk_get_error();
    size_t n = strlen(image);
    if (msg && strncmp(msg, image, n) == 0 && msg[n] == ':') {
      const char *rest = msg + n + 1;
      cli_error(given, "%s", rest + (*rest == ' '));
    } else
      cli_lib_error(given);
    goto out;
  }
  ms.size = vmdk_get_size(ms.disk);
  struct stat st;
  if (!is_uri(image) && stat(image, &st) == 0) {
    ms.atime = st.st_atim;
    ms.mtime = st.st_mtim;
    ms.ctime = st.st_ctim;
  } else {
    now(&ms.mtime);
    ms.atime = ms.ctime = ms.mtime;
  }
  if (check_mountpoint(ms.disk, image, mountpoint) < 0)
    goto out;

  /* fsname: the image, so mount(8) and /proc/mounts name it. */
  char *fsname = malloc(strlen(image) + 8);
  if (!fsname) {
    cli_error(NULL, "out of memory");
    goto out;
  }
  snprintf(fsname, strlen(image) + 8, "fsname=%s", image);
  int oom = add_option(&opts, fsname, true);
  free(fsname);
  if (oom || add_option(&opts, "subtype=vmdkit", false) ||
      add_option(&opts, "default_permissions", false) ||
      (readonly && add_option(&opts, "ro", false)) ||
      (user_opts && add_option(&opts, user_opts, false)) ||
      fuse_opt_add_arg(&args, "vmdkit") != 0 ||
      fuse_opt_add_arg(&args, "-o") != 0 ||
      fuse_opt_add_arg(&args, opts) != 0) {
    cli_error(NULL, "out of memory");
    goto out;
  }

  fuse = fuse_new(&args, &ops, sizeof ops, NULL);
  if (!fuse)
    goto out; /* libfuse said why (bad -o option) */
  /* Absolute: the unmount at the end runs after a change to "/". */
  char real_mountpoint[PATH_MAX];
  if (realpath(mountpoint, real_mountpoint))
    mountpoint = real_mountpoint;
  if (fuse_mount(fuse, mountpoint) != 0)
    goto out; /* libfuse said why */
  mounted = true;

  /* Mounted: only now go to the background.  The parent exits 0 once the
   * child is set up. */
  /* A remote image's nbdkit processes and reading threads stay with the
   * process that started them: it is opened again in the daemon. */
  bool reopen = !foreground && is_remote(image);
  if (reopen) {
    vmdk_close(ms.disk);
    ms.disk = NULL;
  }
  if (fuse_daemonize(foreground) != 0) {
    log_line("%s: cannot go to the background", mountpoint);
    goto out;
  }
  if (!foreground) {
    openlog("vmdkit", LOG_PID, LOG_DAEMON);
    use_syslog = true;
  }
  if (reopen && !(ms.disk = cli_open(image, format, cli_open_flags))) {
    log_line("%s", vmdk_get_error());
    goto out;
  }
  if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0) {
    log_line("%s: cannot set signal handlers", mountpoint);
    goto out;
  }
  handlers = true;
  /* 0 after an unmount, the signal's number after SIGINT/SIGTERM/SIGHUP
   * (both end the mount cleanly), -errno on failure. */
  int r = fuse_loop_mt(fuse, 0);
  if (r < 0) {
    log_line("%s: the FUSE loop failed: %s", mountpoint, strerror(-r));
    goto out;
  }
  ret = 0;

out:
  fuse_log_flush();
  if (handlers)
    fuse_remove_signal_handlers(fuse_get_session(fuse));
  if (mounted)
    fuse_unmount(fuse);
  if (fuse)
    fuse_destroy(fuse); /* calls op_destroy when the session started */
  /* Not started (or destroy was skipped): close here, flushing. */
  op_destroy(NULL);
  if (ms.close_failed)
    ret = 1;
  fuse_opt_free_args(&args);
  free(opts);
  free(user_opts);
  free(ms.path);
  ms.path = NULL;
  free(image);
  return ret;
}

#else /* !HAVE_FUSE3 */

#include <stdio.h>

static int mount_run(int argc, char **argv) {
  (void)argc;
  (void)argv;
  cli_error(NULL, "mount: this vmdkit was built without FUSE (libfuse3-dev "
                  "was not found at build time)");
  return 1;
}

#endif /* HAVE_FUSE3 */
