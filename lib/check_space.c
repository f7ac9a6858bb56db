/* SPDX-License-Identifier: BSD-3-Clause */
/* Who points where in a hosted sparse or COWD extent file: the part of
 * their checks that is the same for both (extent_sparse.c, extent_cowd.c).
 *
 * A check lists every region that metadata points at (header, directories,
 * tables, grains), then regions_sweep reports each region that overlaps
 * one before it on file, and each stretch nothing points at that holds
 * anything but zeros.  Units: sectors throughout. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

int regions_add(struct regions *rs, uint64_t start, uint64_t len,
                uint32_t table, uint32_t entry, const char *what) {
  if (rs->n == rs->cap) {
    size_t cap = rs->cap ? rs->cap * 2 : 1024;
    struct region *r = realloc(rs->r, cap * sizeof *r);
    if (!r)
      return set_error(ENOMEM, "out of memory while checking");
    rs->r = r;
    rs->cap = cap;
  }
  rs->r[rs->n++] = (struct region){start, len, table, entry, what};
  return 0;
}

static int cmp_region(const void *a, const void *b) {
  const struct region *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

static const char *region_name(const struct region *r, char *buf, size_t n) {
  if (r->entry == UINT32_MAX && r->table == UINT32_MAX)
    snprintf(buf, n, "%s", r->what);
  else if (r->entry == UINT32_MAX)
    snprintf(buf, n, "%s %" PRIu32, r->what, r->table);
  else
    snprintf(buf, n, "grain of entry %" PRIu32 " of table %" PRIu32, r->entry,
             r->table);
  return buf;
}

/* Report [FROM, TO) (TO may pass the end of the file), space nothing points
 * at, as leaked when it holds anything but zeros (a hole or zeros costs
 * nothing: that is what `check -r leaks` leaves). */
static int report_leak(struct check_ctx *c, struct vfile *f, uint64_t from,
                       uint64_t to, bool at_end) {
  bool zero = true;
  if (range_is_zero(f, from * SECTOR, (to - from) * SECTOR, &zero) != 0)
    return -1;
  if (!zero)
    check_report(c, VMDK_PROBLEM_LEAK, (to - from) * SECTOR,
                 "%s: %" PRIu64 " sectors at sector %" PRIu64
                 "%s are allocated but not used",
                 f->path, to - from, from,
                 at_end ? " (the end of the file)" : "");
  return 0;
}

int regions_sweep(struct regions *rs, struct check_ctx *c, struct vfile *f,
                  uint64_t data_start, uint64_t file_sectors,
                  uint64_t *covered_out) {
  qsort(rs->r, rs->n, sizeof *rs->r, cmp_region);
  uint64_t covered = 0; /* end of the furthest region seen */
  const struct region *furthest = NULL;
  for (size_t k = 0; k < rs->n; k++) {
    const struct region *r = &rs->r[k];
    if (furthest && r->start < covered) {
      char a[96], b[96];
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: %s at sector %" PRIu64
                   " overlaps %s at sector %" PRIu64,
                   f->path, region_name(r, a, sizeof a), r->start,
                   region_name(furthest, b, sizeof b), furthest->start);
    } else if (r->start > covered && r->start > data_start) {
      uint64_t from = covered > data_start ? covered : data_start;
      if (report_leak(c, f, from, r->start, false) != 0)
        return -1;
    }
    if (r->start + r->len > covered) {
      covered = r->start + r->len;
      furthest = r;
    }
  }
  if (file_sectors > covered && file_sectors > data_start) {
    uint64_t from = covered > data_start ? covered : data_start;
    if (report_leak(c, f, from, file_sectors, true) != 0)
      return -1;
  }
  if (covered_out)
    *covered_out = covered;
  return 0;
}

static int cmp_table_ref(const void *a, const void *b) {
  const struct table_ref *x = a, *y = b;
  if (x->sector != y->sector)
    return x->sector < y->sector ? -1 : 1;
  if (x->redundant != y->redundant) /* then: the first one listed is kept */
    return x->redundant ? 1 : -1;
  return x->gdi < y->gdi ? -1 : x->gdi > y->gdi;
}

void mark_shared_tables(struct check_ctx *c, const char *path,
                        struct table_ref *t, size_t n, uint64_t table_sectors,
                        uint8_t *skip) {
  qsort(t, n, sizeof *t, cmp_table_ref);
  const struct table_ref *prev = NULL;
  for (size_t k = 0; k < n; k++) {
    if (prev && t[k].sector < prev->sector + table_sectors) {
      skip[t[k].gdi] |= t[k].redundant ? 2 : 1;
      check_report(c, VMDK_PROBLEM_CORRUPT, 0,
                   "%s: %sgrain table %" PRIu32 " at sector %" PRIu64
                   " overlaps %sgrain table %" PRIu32 " at sector %" PRIu64
                   " (not checked further)",
                   path, t[k].redundant ? "redundant " : "", t[k].gdi,
                   t[k].sector, prev->redundant ? "redundant " : "", prev->gdi,
                   prev->sector);
    } else {
      prev = &t[k];
    }
  }
}
