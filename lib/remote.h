/* SPDX-License-Identifier: BSD-3-Clause */
/* The internal interface between lib/remote.c (the remote vfile: its
 * connections, cache and read-ahead) and lib/remote_nbdkit.c (options, the
 * nbdkit command line, nbdkit's messages). */
#ifndef VMDKIT_REMOTE_H
#define VMDKIT_REMOTE_H

#include "internal.h"

/* An option: KEY=VALUE for ORIGIN ("scheme://host:port") or every URL. */
struct ropt {
  char *key, *value;
  char *origin;
};

/* The options that apply to U, general ones first: a copy (free_opts), or
 * NULL (error set). */
struct ropt *opts_for(const struct url *u, size_t *n);
void free_opts(struct ropt *o, size_t n);
/* The last value of KEY among O, or NULL. */
const char *opt_get(const struct ropt *o, size_t n, const char *key);
/* A byte count with an optional K, M or G suffix: 0 or -1. */
int parse_bytes(const char *v, uint64_t *out);
int parse_bool(const char *v, bool *b);
bool is_secret_key(const char *k);

/* A string vector that owns its strings (NULL-terminated V). */
struct argv {
  char **v;
  size_t n, cap;
};
void argv_free(struct argv *a);
/* The command that starts nbdkit for the file U with options O, its
 * stderr appended to the descriptor ERRFD: into A; the descriptors of the
 * secrets it inherits into FDS (*N_FDS; at most REMOTE_MAX_SECRETS + 2),
 * which the caller closes once the child started.  0 or -1 (out of
 * memory). */
int nbdkit_argv(const struct url *u, const struct ropt *o, size_t n_o,
                int errfd, struct argv *a, int *fds, size_t *n_fds);
/* 0 when nbdkit is on PATH, else -1 with a message naming URL. */
int nbdkit_installed(const char *url, enum url_kind kind);
/* nbdkit's reason from its stderr (the memfd FD): 0, or -1 if none. */
int nbdkit_reason(int fd, char *buf, size_t cap);
/* One line the user can act on, from nbdkit's REASON (or libnbd's) about
 * the file URL, while DOING (e.g. "reading bytes A-B", or "").  Sets the
 * error; returns -1. */
int remote_explain(const char *url, enum url_kind kind, int err,
                   const char *reason, const char *doing);

#endif
