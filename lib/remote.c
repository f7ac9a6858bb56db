/* SPDX-License-Identifier: BSD-3-Clause */
/* Remote image files: a read-only struct vfile whose bytes come over NBD.
 *
 * http(s):// and ssh:// files are served by a private nbdkit (the curl or
 * ssh plugin) that libnbd starts with systemd socket activation, one
 * process per connection; file+nbd...:// exports are connected to
 * directly.  Nothing is copied to local disk.
 *
 * The options and the nbdkit command line are lib/remote_nbdkit.c's.
 *
 * Reading: the curl and ssh plugins serve one request at a time per
 * connection, and over a WAN each request costs a round trip, so reads are
 * planned here, not passed through:
 *  - A cache of ENTRIES (byte ranges of the file), bounded by CACHE_BYTES.
 *    A read is served from them; a miss fetches at least SMALL_FETCH bytes
 *    around it (metadata reads: headers, grain directories and tables).
 *  - Read-ahead: reads that follow each other (each starting at most
 *    SEQ_GAP bytes past where the last ended: a sparse image's grains with
 *    tables between them) make a stream; ahead of a stream, RA_CHUNK-sized
 *    aligned entries are queued up to a window that doubles to RA_WINDOW.
 *  - One worker thread per connection takes queued entries, demanded ones
 *    first, then read-ahead in file order, and fetches each with one NBD
 *    read.  Connections past the first are started when the first
 *    read-ahead is queued (so `info` starts one nbdkit, `convert` several);
 *    one idle for IDLE_SECS ends while another remains, and the last one
 *    then drops the cache (a split image's many files keep none).  Each
 *    nbdkit is started by its connection's thread and exits with it
 *    (--exit-with-parent), so closing joins the threads, then reaps.
 *  - Eviction takes what reads used before read-ahead nobody read yet.
 *  - A failed fetch fails the reads that wait for it, with nbdkit's reason
 *    (the next read of that range fetches again); when every connection is
 *    gone, everything queued fails, and the next read starts one again. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remote.h"

#ifdef HAVE_LIBNBD
#include <libnbd.h>

/* ---- connections -------------------------------------------------------- */

#define SMALL_FETCH (256u << 10) /* bytes a read out of any stream fetches */
#define FETCH_ALIGN (64u << 10)
#define RA_CHUNK (4u << 20)      /* one read-ahead request */
#define RA_WINDOW (32u << 20)    /* read-ahead in flight at most (default) */
#define SEQ_GAP (1u << 20)       /* a read this far past the stream's end */
#define SEQ_BACK (4u << 20)      /* or this far before it continues it */
#define CACHE_BYTES (96u << 20)  /* cached and in flight, at most */
#define MAX_ENTRIES 256
#define DEFAULT_CONNS 4
#define IDLE_SECS 3              /* an extra connection idle this long ends;
                                    the last one drops the cache */

enum est { E_QUEUED, E_LOADING, E_READY, E_FAILED };

struct entry {
  uint64_t off;
  size_t len;
  uint8_t *buf;
  enum est state;
  bool demand;    /* a read waits for it: fetched before read-ahead */
  unsigned users; /* reads copying from or waiting on it: not evicted */
  bool read;      /* a read copied from it */
  uint64_t used;  /* LRU tick */
};

struct conn {
  struct remote *r;
  struct nbd_handle *h;
  int errfd;        /* nbdkit's stderr (memfd), or -1 */
  pthread_t thread;
  bool started;     /* a thread was made (and is not joined yet) */
  bool exited;      /* that thread ended (under the lock) */
};

struct remote {
  unsigned refs;    /* the vfiles sharing it (windows of an archive) */
  char *url;        /* without credentials (for messages) */
  struct url u;
  struct ropt *o;
  size_t n_o;
  uint64_t size;
  unsigned max_conns;
  uint64_t window_max;   /* 0: no read-ahead */

  pthread_mutex_t lock;
  pthread_cond_t work;   /* an entry was queued, or stop */
  pthread_cond_t done;   /* an entry was fetched or failed */
  struct conn conns[REMOTE_MAX_CONNS];
  unsigned live;         /* threads running (started, not exited) */
  bool stop;
  int opened;            /* connection 0: 0 starting, 1 up, -1 failed */
  struct entry *ents[MAX_ENTRIES];
  size_t n_ents;
  uint64_t bytes;        /* in all entries */
  uint64_t tick;
  /* the stream: where the last read ended, the read-ahead window */
  uint64_t seq_end;
  unsigned seq_run;
  uint64_t window;
  /* the last failure: the reason a fetch failed, for the reads that
   * waited on it (messages are per thread) */
  int err;
  char msg[768];
};

/* Why C's last call failed: nbdkit's stderr, else libnbd's message. */
static int conn_fail(struct remote *r, struct conn *c, const char *doing) {
  int err = nbd_get_errno();
  char why[768];
  if (nbdkit_reason(c->errfd, why, sizeof why) != 0)
    snprintf(why, sizeof why, "%s", nbd_get_error() ? nbd_get_error()
                                                     : "the connection failed");
  return remote_explain(r->url, r->u.kind, err, why, doing);
}

/* Connect C: start nbdkit for R's file, or connect to the NBD export.
 * Sets the error (the user's line) on failure. */
static int conn_open(struct remote *r, struct conn *c) {
  c->r = r;
  c->errfd = -1;
  c->h = nbd_create();
  if (!c->h)
    return set_error(ENOMEM, "%s: %s", r->url, nbd_get_error());
  if (r->u.kind == URL_NBD) {
    /* the URI as libnbd takes it: without "file+" */
    char *s = url_format(&r->u);
    int k = s ? nbd_connect_uri(c->h, s + 5) : -1;
    free(s);
    if (k == -1)
      return conn_fail(r, c, "cannot connect");
    return 0;
  }
  int m = memfd_create("nbdkit-stderr", 0);
  c->errfd = m >= 0 ? fcntl(m, F_DUPFD, 10) : -1;
  if (m >= 0)
    close(m);
  if (c->errfd < 0)
    return set_error(errno, "%s: cannot make a buffer for nbdkit's "
                            "messages: %s",
                     r->url, strerror(errno));
  struct argv a = {0};
  int fds[REMOTE_MAX_SECRETS + 2];
  size_t n_fds = 0;
  bool made = nbdkit_argv(&r->u, r->o, r->n_o, c->errfd, &a, fds, &n_fds) == 0;
  int k = made ? nbd_connect_systemd_socket_activation(c->h, a.v) : -1;
  fcntl(c->errfd, F_SETFD, FD_CLOEXEC); /* no later child inherits it */
  for (size_t i = 0; i < n_fds; i++)
    close(fds[i]);
  argv_free(&a);
  if (!made)
    return set_error(ENOMEM, "%s: out of memory", r->url);
  if (k == -1)
    return conn_fail(r, c, "cannot start nbdkit");
  return 0;
}

static void conn_close(struct conn *c) {
  if (c->h) {
    nbd_shutdown(c->h, 0);
    nbd_close(c->h); /* waits for the nbdkit it started */
  }
  c->h = NULL;
  if (c->errfd >= 0)
    close(c->errfd);
  c->errfd = -1;
}

/* ---- the cache ------------------------------------------------------------ */

static void entry_free(struct remote *r, size_t i) {
  struct entry *e = r->ents[i];
  r->bytes -= e->len;
  free(e->buf);
  free(e);
  r->ents[i] = r->ents[--r->n_ents];
}

/* The entry holding byte OFF, or NULL. */
static struct entry *find(struct remote *r, uint64_t off) {
  for (size_t i = 0; i < r->n_ents; i++) {
    struct entry *e = r->ents[i];
    if (off >= e->off && off - e->off < e->len)
      return e;
  }
  return NULL;
}

/* Which of two evictable entries goes first: one a read used (or that
 * failed) before fetched read-ahead nobody read yet, then the least
 * recently used.  (Evicting by use alone dropped unread read-ahead, made
 * before the reads behind it, and fetched it again.) */
static bool evict_before(const struct entry *a, const struct entry *b) {
  bool a_spare = a->read || a->state == E_FAILED;
  bool b_spare = b->read || b->state == E_FAILED;
  if (a_spare != b_spare)
    return a_spare;
  return a->used < b->used;
}

/* Make room for N more bytes: evict entries that no read holds (fetched
 * or failed ones), in evict_before's order. */
static void evict_for(struct remote *r, uint64_t n) {
  while (r->n_ents > 0 &&
         (r->bytes + n > CACHE_BYTES || r->n_ents >= MAX_ENTRIES)) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < r->n_ents; i++) {
      struct entry *e = r->ents[i];
      if (e->users == 0 && (e->state == E_READY || e->state == E_FAILED) &&
          (best == SIZE_MAX || evict_before(e, r->ents[best])))
        best = i;
    }
    if (best == SIZE_MAX)
      return; /* all in flight: the budget is exceeded for a moment */
    entry_free(r, best);
  }
}

/* A new queued entry holding byte AT (not held by any entry), as much of
 * [OFF, END) around it as no entry holds; NULL when out of memory (error
 * set). */
static struct entry *add_entry(struct remote *r, uint64_t off, uint64_t end,
                               uint64_t at, bool demand) {
  for (size_t i = 0; i < r->n_ents; i++) { /* each lies before AT or after */
    struct entry *e = r->ents[i];
    if (e->off + e->len <= at) {
      if (e->off + e->len > off)
        off = e->off + e->len;
    } else if (e->off < end) {
      end = e->off;
    }
  }
  if (end > r->size)
    end = r->size;
  evict_for(r, end - off);
  if (r->n_ents >= MAX_ENTRIES) {
    set_error(EBUSY, "%s: too many reads in flight", r->url);
    return NULL;
  }
  struct entry *e = calloc(1, sizeof *e);
  if (e)
    e->buf = io_alloc((size_t)(end - off));
  if (!e || !e->buf) {
    free(e);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  e->off = off;
  e->len = (size_t)(end - off);
  e->state = E_QUEUED;
  e->demand = demand;
  e->used = ++r->tick;
  r->ents[r->n_ents++] = e;
  r->bytes += e->len;
  pthread_cond_signal(&r->work);
  return e;
}

static void *conn_main(void *arg);

/* Start a connection's thread in a free slot (one never used, or one
 * whose thread ended: joined and closed first).  Under the lock.  False
 * when no slot is free or the thread cannot be made. */
static bool conn_start(struct remote *r) {
  struct conn *c = NULL;
  for (unsigned i = 0; i < REMOTE_MAX_CONNS && !c; i++) {
    struct conn *s = &r->conns[i];
    if (s->started && s->exited) { /* its nbdkit got SIGTERM: quick */
      pthread_join(s->thread, NULL);
      conn_close(s);
      s->started = s->exited = false;
    }
    if (!s->started)
      c = s;
  }
  if (!c)
    return false;
  c->r = r;
  c->errfd = -1;
  sigset_t all, old; /* the thread starts with every signal blocked */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  bool ok = pthread_create(&c->thread, NULL, conn_main, c) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (ok) {
    c->started = true;
    r->live++;
  }
  return ok;
}

/* Whether a read at OFF continues the stream: it starts at most SEQ_GAP
 * past the furthest end so far, or SEQ_BACK before it (readers that read
 * a little more than they use, then go on from what they used). */
static bool in_stream(const struct remote *r, uint64_t off) {
  return off + SEQ_BACK >= r->seq_end && off <= r->seq_end + SEQ_GAP;
}

/* Queue read-ahead for the stream that a read of [OFF, END) continues. */
static void read_ahead(struct remote *r, uint64_t off, uint64_t end) {
  if (r->window_max == 0)
    return;
  bool seq = in_stream(r, off);
  r->seq_run = seq ? r->seq_run + 1 : 0;
  if (!seq || end > r->seq_end)
    r->seq_end = end;
  if (r->seq_run < 2) {
    if (!seq)
      r->window = 0;
    return;
  }
  r->window = r->window ? r->window * 2 : 2 * RA_CHUNK;
  if (r->window > r->window_max)
    r->window = r->window_max;
  end = r->seq_end;
  for (uint64_t c = end / RA_CHUNK * RA_CHUNK; c < end + r->window &&
                                               c < r->size;
       c += RA_CHUNK) {
    if (r->bytes + RA_CHUNK > CACHE_BYTES) {
      evict_for(r, RA_CHUNK);
      if (r->bytes + RA_CHUNK > CACHE_BYTES)
        break;
    }
    uint64_t at = c; /* the first byte of the chunk no entry holds */
    for (struct entry *e; at < c + RA_CHUNK && (e = find(r, at));)
      at = e->off + e->len;
    if (at < c + RA_CHUNK && at < r->size)
      add_entry(r, c, c + RA_CHUNK, at, false);
  }
  while (r->live < r->max_conns && !r->stop && conn_start(r))
    ;
}

/* The next entry to fetch: a demanded one, else the first read-ahead. */
static struct entry *next_queued(struct remote *r) {
  struct entry *best = NULL;
  for (size_t i = 0; i < r->n_ents; i++) {
    struct entry *e = r->ents[i];
    if (e->state != E_QUEUED)
      continue;
    if (!best || (e->demand && !best->demand) ||
        (e->demand == best->demand && e->off < best->off))
      best = e;
  }
  return best;
}

/* A connection's thread: it starts the connection's nbdkit (which exits
 * with it: --exit-with-parent follows the thread that forked it), then
 * fetches queued entries until stop.  The first one reports its start to
 * remote_open (R->opened).  One that cannot start ends, and no more are
 * tried (a server may limit connections); one idle for IDLE_SECS ends
 * while another remains. */
static void *conn_main(void *arg) {
  struct conn *c = arg;
  struct remote *r = c->r;
  /* nbdkit inherits this thread's signal mask across fork and exec, and
   * never unblocks what it finds blocked: a caller's thread that blocks
   * SIGTERM (libfuse's workers do) would leave it deaf to
   * --exit-with-parent, and close would wait for it forever.  So nbdkit
   * starts with none blocked; this thread itself takes no signal. */
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  int k = conn_open(r, c);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  pthread_mutex_lock(&r->lock);
  bool first = r->opened == 0;
  pthread_mutex_unlock(&r->lock);
  if (k == 0 && first) {
    int64_t sz = nbd_get_size(c->h);
    if (sz < 0)
      k = conn_fail(r, c, "cannot get its size");
    else
      r->size = (uint64_t)sz;
  }
  pthread_mutex_lock(&r->lock);
  if (first)
    r->opened = k == 0 ? 1 : -1;
  if (k != 0) {
    r->err = vmdk_get_errno();
    snprintf(r->msg, sizeof r->msg, "%s", vmdk_get_error());
    if (r->max_conns > 1 && r->live > 1)
      r->max_conns = r->live - 1;
    goto gone;
  }
  pthread_cond_broadcast(&r->done);
  for (;;) {
    struct entry *e = NULL;
    bool idle = false;
    bool dropped = false; /* the cache, after IDLE_SECS without work */
    while (!r->stop && !idle && !(e = next_queued(r))) {
      if (r->live > 1 || !dropped) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += IDLE_SECS;
        bool quiet =
            pthread_cond_timedwait(&r->work, &r->lock, &t) == ETIMEDOUT &&
            !next_queued(r);
        idle = quiet && r->live > 1;
        if (quiet && r->live == 1) { /* the last one: keep no cache of an
                                        idle file (a split image has many) */
          for (size_t i = r->n_ents; i-- > 0;)
            if (r->ents[i]->users == 0 && r->ents[i]->state != E_QUEUED &&
                r->ents[i]->state != E_LOADING)
              entry_free(r, i);
          dropped = true;
        }
      } else {
        pthread_cond_wait(&r->work, &r->lock);
      }
    }
    if (r->stop || idle)
      break;
    e->state = E_LOADING;
    e->users++;
    pthread_mutex_unlock(&r->lock);
    k = nbd_pread(c->h, e->buf, e->len, e->off, 0);
    char doing[96];
    if (k == -1) {
      snprintf(doing, sizeof doing, "reading bytes %" PRIu64 "-%" PRIu64,
               e->off, e->off + e->len - 1);
      conn_fail(r, c, doing);
    }
    pthread_mutex_lock(&r->lock);
    e->users--;
    e->state = k == 0 ? E_READY : E_FAILED;
    if (k != 0) {
      r->err = vmdk_get_errno();
      snprintf(r->msg, sizeof r->msg, "%s", vmdk_get_error());
    }
    pthread_cond_broadcast(&r->done);
    if (k != 0 && nbd_aio_is_dead(c->h) == 1)
      break;
  }
  if (!r->stop) { /* leaving early: say goodbye; closed by who reuses the
                     slot, or remote_free */
    pthread_mutex_unlock(&r->lock);
    nbd_shutdown(c->h, 0);
    pthread_mutex_lock(&r->lock);
  }
gone:
  c->exited = true;
  r->live--;
  if (r->live == 0) /* nobody left to fetch: fail what waits */
    for (size_t i = 0; i < r->n_ents; i++)
      if (r->ents[i]->state == E_QUEUED)
        r->ents[i]->state = E_FAILED;
  pthread_cond_broadcast(&r->done);
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

/* ---- the file ------------------------------------------------------------- */

static void remote_free(struct remote *r) {
  if (!r)
    return;
  pthread_mutex_lock(&r->lock);
  r->stop = true;
  pthread_cond_broadcast(&r->work);
  pthread_mutex_unlock(&r->lock);
  for (unsigned i = 0; i < REMOTE_MAX_CONNS; i++) {
    if (r->conns[i].started)
      pthread_join(r->conns[i].thread, NULL);
    conn_close(&r->conns[i]);
  }
  while (r->n_ents)
    entry_free(r, 0);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->work);
  pthread_cond_destroy(&r->done);
  free_opts(r->o, r->n_o);
  url_free(&r->u);
  free(r->url);
  free(r);
}

struct remote *remote_open(const char *url, uint64_t *size) {
  struct remote *r = calloc(1, sizeof *r);
  if (!r || !(r->url = strdup(url))) {
    free(r);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  r->refs = 1;
  for (unsigned i = 0; i < REMOTE_MAX_CONNS; i++)
    r->conns[i].errfd = -1;
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->work, NULL);
  pthread_cond_init(&r->done, NULL);
  if (url_parse(url, &r->u) != 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vmdk_get_error());
    set_error(EINVAL, "%s: %s", url, msg);
    remote_free(r);
    return NULL;
  }
  r->o = opts_for(&r->u, &r->n_o);
  if (!r->o || (r->u.kind != URL_NBD && nbdkit_installed(r->url, r->u.kind) != 0)) {
    remote_free(r);
    return NULL;
  }
  size_t secrets = 0;
  for (size_t i = 0; i < r->n_o; i++)
    secrets += is_secret_key(r->o[i].key);
  if (secrets > REMOTE_MAX_SECRETS) {
    set_error(EINVAL, "%s: more than %d secret options", url,
              REMOTE_MAX_SECRETS);
    remote_free(r);
    return NULL;
  }
  const char *v = opt_get(r->o, r->n_o, "connections");
  uint64_t n = DEFAULT_CONNS;
  if (v)
    parse_bytes(v, &n);
  r->max_conns = (unsigned)n;
  v = opt_get(r->o, r->n_o, "readahead");
  r->window_max = RA_WINDOW;
  if (v)
    parse_bytes(v, &r->window_max);
  if (r->window_max && r->window_max < RA_CHUNK)
    r->window_max = RA_CHUNK;
  if (r->window_max > CACHE_BYTES / 2)
    r->window_max = CACHE_BYTES / 2;
  pthread_mutex_lock(&r->lock);
  bool ok = conn_start(r);
  while (ok && r->opened == 0)
    pthread_cond_wait(&r->done, &r->lock);
  pthread_mutex_unlock(&r->lock);
  if (!ok || r->opened < 0) {
    if (!ok)
      set_error(EAGAIN, "%s: cannot start a thread", url);
    else
      set_error(r->err, "%s", r->msg);
    remote_free(r);
    return NULL;
  }
  *size = r->size;
  return r;
}

struct remote *remote_ref(struct remote *r) {
  __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
  return r;
}

void remote_close(struct remote *r) {
  if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
    remote_free(r);
}

int remote_pread(struct remote *r, void *buf, size_t len, uint64_t off) {
  uint8_t *p = buf;
  uint64_t req_off = off, req_end = off + len;
  int rc = 0;
  pthread_mutex_lock(&r->lock);
  while (len > 0) {
    if (off >= r->size) { /* past the end: zeros, as vf_pread reads them */
      memset(p, 0, len);
      break;
    }
    struct entry *e = find(r, off);
    if (e && e->state == E_FAILED && e->users == 0) { /* an earlier fetch's
                                                         failure: try again */
      for (size_t i = 0; i < r->n_ents; i++)
        if (r->ents[i] == e) {
          entry_free(r, i);
          break;
        }
      e = NULL;
    }
    if (!e) {
      bool stream = r->window > 0 && in_stream(r, off);
      uint64_t start, end;
      if (stream) {
        start = off / RA_CHUNK * RA_CHUNK;
        end = start + RA_CHUNK;
      } else {
        start = off / FETCH_ALIGN * FETCH_ALIGN;
        end = off + len;
        end = (end + FETCH_ALIGN - 1) / FETCH_ALIGN * FETCH_ALIGN;
        if (end - start < SMALL_FETCH)
          end = start + SMALL_FETCH;
      }
      /* the range may reach into entries around OFF: add_entry trims it */
      if (!(e = add_entry(r, start, end, off, true))) {
        rc = -1;
        break;
      }
    }
    if (e->state == E_QUEUED && !e->demand) {
      e->demand = true;
      pthread_cond_signal(&r->work);
    }
    if (e->state == E_QUEUED && r->live == 0 && !conn_start(r)) {
      rc = set_error(EAGAIN, "%s: cannot start a thread", r->url);
      break; /* (every connection ended: a new one is tried) */
    }
    e->users++;
    while (e->state == E_QUEUED || e->state == E_LOADING)
      pthread_cond_wait(&r->done, &r->lock);
    e->users--;
    if (e->state == E_FAILED) {
      rc = set_error(r->err ? r->err : EIO, "%s",
                     r->msg[0] ? r->msg : "the connection is gone");
      break;
    }
    size_t n = (size_t)(e->off + e->len - off);
    if (n > len)
      n = len;
    memcpy(p, e->buf + (off - e->off), n);
    e->used = ++r->tick;
    e->read = true;
    p += n;
    off += n;
    len -= n;
  }
  if (rc == 0)
    read_ahead(r, req_off, req_end);
  pthread_mutex_unlock(&r->lock);
  return rc;
}

#else /* no libnbd */

struct remote *remote_open(const char *url, uint64_t *size) {
  (void)size;
  set_error(ENOTSUP, "%s: vmdkit was built without libnbd (needed to read "
                     "remote files)",
            url);
  return NULL;
}
struct remote *remote_ref(struct remote *r) {
  return r;
}
void remote_close(struct remote *r) {
  (void)r;
}
int remote_pread(struct remote *r, void *buf, size_t len, uint64_t off) {
  (void)r;
  (void)buf;
  (void)len;
  (void)off;
  return set_error(ENOTSUP, "vmdkit was built without libnbd");
}

#endif
