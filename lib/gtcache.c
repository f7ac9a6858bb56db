/* SPDX-License-Identifier: BSD-3-Clause */
/* The grain table cache of hosted sparse (extent_sparse.c) and COWD
 * (extent_cowd.c) extents: a bounded set of slots, each holding one grain
 * table decoded to host-order uint32 entries, found by GD entry.
 *
 * Eviction is exact LRU kept as a doubly linked list of slot indexes
 * (newest at one end, oldest at the other): a hit moves its slot to the
 * newest end, a miss with no free slot evicts the oldest.  Every operation
 * is O(1); only gtc_next_dirty scans, one bit a slot (a bitmap), and only
 * during a flush.  The choice of victim and of slot index is the same as
 * the linear scan over last-use stamps this replaced (free slot with the
 * lowest index first, else the least recently used), so the flush, which
 * writes dirty tables in slot order, writes them in the same order.
 *
 * Free slots: slots [n_fresh, n_slots) have not been taken since the cache
 * was set up or emptied; a slot given back by gtc_abandon (its table could
 * not be read or allocated) goes to the oldest end of the list holding no
 * table and is the next one taken.  Table buffers are allocated the first
 * time a slot is taken, so an image that touches few tables uses little.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int gt_read(struct vfile *f, uint64_t sector, uint32_t *t, uint32_t n) {
  if (vf_pread(f, t, (size_t)n * 4, sector * SECTOR) != 0)
    return -1;
  /* Decode in place: entry I's bytes are exactly t[I]'s storage, read
   * (through uint8_t, which may alias anything) before t[I] is stored. */
  const uint8_t *raw = (const uint8_t *)t;
  for (uint32_t i = 0; i < n; i++)
    t[i] = le32(raw + 4 * (size_t)i);
  return 0;
}

int gtc_init(struct gtcache *c, uint32_t n_gdes, uint32_t n_entries,
             uint32_t n_slots, int (*flush)(void *opaque), void *opaque,
             const char *path) {
  memset(c, 0, sizeof *c);
  c->n_entries = n_entries;
  c->n_slots = n_slots;
  c->n_gdes = n_gdes;
  c->newest = c->oldest = GTC_NONE;
  c->flush = flush;
  c->opaque = opaque;
  c->path = path;
  /* + 1: never calloc(0) */
  c->slots = calloc((size_t)n_slots + 1, sizeof *c->slots);
  c->slot_of = calloc((size_t)n_gdes + 1, sizeof *c->slot_of);
  c->dirty = calloc((size_t)n_slots / 64 + 1, sizeof *c->dirty);
  if (!c->slots || !c->slot_of || !c->dirty) {
    gtc_free(c);
    return set_error(ENOMEM, "%s: out of memory for the grain table cache",
                     path);
  }
  return 0;
}

void gtc_free(struct gtcache *c) {
  for (uint32_t i = 0; c->slots && i < c->n_slots; i++)
    free(c->slots[i].gt);
  free(c->slots);
  free(c->slot_of);
  free(c->dirty);
  free(c->defer);
  c->slots = NULL;
  c->slot_of = NULL;
  c->dirty = NULL;
  c->defer = NULL;
  c->n_dirty = 0;
  c->n_defer = c->cap_defer = 0;
  c->pend.len = 0;
}

int gtc_grow(struct gtcache *c, uint32_t n_gdes) {
  if (n_gdes <= c->n_gdes)
    return 0;
  uint32_t *so = realloc(c->slot_of, ((size_t)n_gdes + 1) * sizeof *so);
  if (!so)
    return set_error(ENOMEM, "%s: out of memory", c->path);
  memset(so + c->n_gdes, 0, ((size_t)n_gdes + 1 - c->n_gdes) * sizeof *so);
  c->slot_of = so;
  c->n_gdes = n_gdes;
  return 0;
}

/* ---- the recency list ---------------------------------------------------- */

static void unlink_slot(struct gtcache *c, uint32_t i) {
  struct gtc_slot *s = &c->slots[i];
  if (s->newer != GTC_NONE)
    c->slots[s->newer].older = s->older;
  else
    c->newest = s->older;
  if (s->older != GTC_NONE)
    c->slots[s->older].newer = s->newer;
  else
    c->oldest = s->newer;
  s->newer = s->older = GTC_NONE;
}

static void push_newest(struct gtcache *c, uint32_t i) {
  struct gtc_slot *s = &c->slots[i];
  s->newer = GTC_NONE;
  s->older = c->newest;
  if (c->newest != GTC_NONE)
    c->slots[c->newest].newer = i;
  else
    c->oldest = i;
  c->newest = i;
}

static void push_oldest(struct gtcache *c, uint32_t i) {
  struct gtc_slot *s = &c->slots[i];
  s->older = GTC_NONE;
  s->newer = c->oldest;
  if (c->oldest != GTC_NONE)
    c->slots[c->oldest].older = i;
  else
    c->newest = i;
  c->oldest = i;
}

/* ---- lookup, take, install ----------------------------------------------- */

uint32_t gtc_lookup(struct gtcache *c, uint32_t gdi) {
  uint32_t i = c->slot_of[gdi];
  if (i == 0)
    return GTC_NONE;
  i--;
  if (c->newest != i) {
    unlink_slot(c, i);
    push_newest(c, i);
  }
  return i;
}

bool gtc_cached(const struct gtcache *c, uint32_t gdi) {
  return gdi < c->n_gdes && c->slot_of[gdi] != 0;
}

int gtc_take(struct gtcache *c, uint32_t *slot) {
  *slot = GTC_NONE;
  if (c->n_slots == 0)
    return set_error(EINVAL, "%s: the grain table cache has no slots", c->path);
  uint32_t i = c->oldest;
  if (i != GTC_NONE && c->slots[i].gdi == GTC_NONE) {
    unlink_slot(c, i); /* given back by gtc_abandon: holds no table */
  } else if (c->n_fresh < c->n_slots) {
    i = c->n_fresh;
    if (!c->slots[i].gt && !(c->slots[i].gt = malloc((size_t)c->n_entries * 4)))
      return set_error(ENOMEM, "%s: out of memory for a grain table", c->path);
    c->slots[i].gdi = GTC_NONE;
    c->slots[i].newer = c->slots[i].older = GTC_NONE;
    c->n_fresh++;
  } else if (i == GTC_NONE) {
    /* every slot taken and none installed: a caller broke the contract */
    return set_error(EINVAL, "%s: no grain table slot is free", c->path);
  } else {
    /* Evict the least recently used table; a dirty one is written first
     * by the owner's flush, which writes every dirty table.  Held entries
     * are applied first: one may be for this very table. */
    if (c->n_defer && gtc_issue(c) != 0)
      return -1;
    if (gtc_is_dirty(c, i)) {
      if (c->flush(c->opaque) != 0)
        return -1;
      if (gtc_is_dirty(c, i))
        return set_error(EIO,
                         "%s: grain table %" PRIu32 " is still dirty "
                         "after a flush (cache contract broken)",
                         c->path, c->slots[i].gdi);
    }
    unlink_slot(c, i);
    c->slot_of[c->slots[i].gdi] = 0;
    c->slots[i].gdi = GTC_NONE;
  }
  *slot = i;
  return 0;
}

void gtc_install(struct gtcache *c, uint32_t slot, uint32_t gdi, bool dirty) {
  c->slots[slot].gdi = gdi;
  c->slot_of[gdi] = slot + 1;
  push_newest(c, slot);
  if (dirty)
    gtc_mark_dirty(c, slot);
}

void gtc_install_new(struct gtcache *c, uint32_t slot, uint32_t gdi) {
  memset(c->slots[slot].gt, 0, (size_t)c->n_entries * 4);
  gtc_install(c, slot, gdi, true);
}

int gtc_load(struct gtcache *c, uint32_t slot, uint32_t gdi, struct vfile *f,
             uint64_t sector) {
  if (gt_read(f, sector, c->slots[slot].gt, c->n_entries) != 0) {
    gtc_abandon(c, slot);
    return -1;
  }
  gtc_install(c, slot, gdi, false);
  return 0;
}

void gtc_abandon(struct gtcache *c, uint32_t slot) {
  c->slots[slot].gdi = GTC_NONE;
  push_oldest(c, slot);
}

/* ---- dirty tables ----------------------------------------------------------
 */

void gtc_mark_dirty(struct gtcache *c, uint32_t slot) {
  uint64_t bit = 1ull << (slot % 64);
  if (!(c->dirty[slot / 64] & bit)) {
    c->dirty[slot / 64] |= bit;
    c->n_dirty++;
  }
}

void gtc_clean(struct gtcache *c, uint32_t slot) {
  uint64_t bit = 1ull << (slot % 64);
  if (c->dirty[slot / 64] & bit) {
    c->dirty[slot / 64] &= ~bit;
    c->n_dirty--;
  }
}

uint32_t gtc_next_dirty(const struct gtcache *c, uint32_t from) {
  if (c->n_dirty == 0 || from >= c->n_slots)
    return GTC_NONE;
  size_t w = from / 64;
  uint64_t bits = c->dirty[w] & (~0ull << (from % 64));
  size_t words = (size_t)(c->n_slots + 63) / 64;
  while (!bits) {
    if (++w >= words)
      return GTC_NONE;
    bits = c->dirty[w];
  }
  return (uint32_t)(w * 64 + (size_t)__builtin_ctzll(bits));
}

/* ---- the data path: data before the entries that point at it ------------ */

int gtc_issue(struct gtcache *c) {
  size_t n = c->pend.len;
  c->pend.len = 0;
  int r = n ? vf_pwrite(c->f, c->pend.buf, n, c->pend.off) : 0;
  for (uint32_t i = 0; r == 0 && i < c->n_defer; i++) {
    const struct gtc_defer *d = &c->defer[i];
    c->slots[d->slot].gt[d->idx] = d->value;
    gtc_mark_dirty(c, d->slot);
  }
  c->n_defer = 0; /* applied, or dropped with the data they waited on */
  return r;
}

int gtc_write_data(struct gtcache *c, uint64_t off, const void *buf,
                   size_t n) {
  if (c->pend.len && off == c->pend.off + c->pend.len &&
      (const uint8_t *)buf == c->pend.buf + c->pend.len) {
    c->pend.len += n;
    return 0;
  }
  if (gtc_issue(c) != 0)
    return -1;
  c->pend.off = off;
  c->pend.buf = buf;
  c->pend.len = n;
  return 0;
}

int gtc_set_entry(struct gtcache *c, uint32_t slot, uint32_t idx,
                  uint32_t value) {
  if (!gtc_holding(c)) { /* every byte written for it has landed */
    c->slots[slot].gt[idx] = value;
    gtc_mark_dirty(c, slot);
    return 0;
  }
  if (c->n_defer == c->cap_defer) {
    uint32_t cap = c->cap_defer ? 2 * c->cap_defer : 64;
    struct gtc_defer *d = realloc(c->defer, (size_t)cap * sizeof *d);
    if (!d)
      return set_error(ENOMEM, "%s: out of memory", c->path);
    c->defer = d;
    c->cap_defer = cap;
  }
  c->defer[c->n_defer++] = (struct gtc_defer){slot, idx, value};
  return 0;
}

/* ---- reads and writes of grains ---------------------------------------- */

int gtc_pread(struct extent *e, struct gtcache *c, void *buf, size_t len,
              uint64_t off) {
  uint8_t *p = buf;
  /* Contiguous grains are read with one pread. */
  uint64_t r_off = 0;
  uint8_t *r_buf = NULL;
  size_t r_len = 0;
  while (len > 0) {
    uint64_t in = off % c->grain_bytes;
    size_t n = c->grain_bytes - in < len ? (size_t)(c->grain_bytes - in) : len;
    struct grain_ref g;
    if (c->lookup(c->opaque, off / c->grain_bytes, false, &g) != 0)
      return -1;
    if (g.gte > 1) {
      uint64_t fo = (uint64_t)g.gte * SECTOR + in;
      if (r_len && (fo != r_off + r_len || p != r_buf + r_len)) {
        if (vf_pread(c->f, r_buf, r_len, r_off) != 0)
          return -1;
        r_len = 0;
      }
      if (!r_len) {
        r_off = fo;
        r_buf = p;
      }
      r_len += n;
    } else if (g.gte == 1) {
      memset(p, 0, n);
    } else if (disk_read_backing(e->disk, p, n, e->virt_start + off) != 0) {
      return -1;
    }
    p += n;
    off += n;
    len -= n;
  }
  if (r_len && vf_pread(c->f, r_buf, r_len, r_off) != 0)
    return -1;
  return 0;
}

/* Copy-on-write: fill LEN bytes of a new grain at file offset FOFF with what
 * the backing holds at extent offset OFF.  Without a backing (or for
 * ZEROS) the bytes must read as zeros, which space past the file's length
 * already does (rule 1 of the owners): only bytes inside the file are
 * written. */
static int fill_new_grain(struct extent *e, struct gtcache *c, uint64_t foff,
                          uint64_t off, uint64_t len, bool zeros) {
  if (len == 0)
    return 0;
  if (zeros || !disk_has_backing(e->disk)) {
    if (c->f->size > foff)
      return vf_write_zeros(
          c->f, len < c->f->size - foff ? len : c->f->size - foff, foff);
    return 0;
  }
  if (gtc_issue(c) != 0)
    return -1;
  size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
  uint8_t *tmp = malloc(chunk);
  if (!tmp)
    return set_error(ENOMEM, "%s: out of memory", c->path);
  int r = 0;
  while (r == 0 && len > 0) {
    size_t n = len < chunk ? (size_t)len : chunk;
    r = disk_read_backing(e->disk, tmp, n, e->virt_start + off) != 0 ||
                vf_pwrite(c->f, tmp, n, foff) != 0
            ? -1
            : 0;
    len -= n;
    off += n;
    foff += n;
  }
  free(tmp);
  return r;
}

int gtc_allocate(struct extent *e, struct gtcache *c, struct grain_ref *g,
                 uint64_t grain_off, uint64_t in, const uint8_t *buf,
                 size_t n) {
  uint32_t sec = 0;
  bool zeroed = g->gte == 1;
  if (c->alloc(c->opaque, &sec) != 0)
    return -1;
  uint64_t fo = (uint64_t)sec * SECTOR, tail = in + n;
  if (fill_new_grain(e, c, fo, grain_off, in, zeroed) != 0 ||
      (buf ? gtc_write_data(c, fo + in, buf, n)
           : fill_new_grain(e, c, fo + in, grain_off + in, n, true)) != 0 ||
      fill_new_grain(e, c, fo + tail, grain_off + tail, c->grain_bytes - tail,
                     zeroed) != 0)
    return -1;
  return gtc_set_gte(c, g, sec);
}

int gtc_pwrite(struct extent *e, struct gtcache *c, const void *buf,
               size_t len, uint64_t off) {
  const uint8_t *p = buf;
  int r = 0;
  while (r == 0 && len > 0) {
    uint64_t in = off % c->grain_bytes;
    size_t n = c->grain_bytes - in < len ? (size_t)(c->grain_bytes - in) : len;
    struct grain_ref g;
    if (c->lookup(c->opaque, off / c->grain_bytes, true, &g) != 0)
      r = -1;
    else if (g.gte > 1)
      r = gtc_write_data(c, (uint64_t)g.gte * SECTOR + in, p, n);
    else
      r = gtc_allocate(e, c, &g, off - in, in, p, n);
    p += n;
    off += n;
    len -= n;
  }
  if (r != 0) {
    /* What is still held goes with the failed write: its bytes are the
     * caller's, and the entries waiting on them are dropped (their grains
     * leak); every sector keeps its old bytes or what already landed. */
    c->pend.len = 0;
    c->n_defer = 0;
    return -1;
  }
  /* The caller's buffer is only valid during this call. */
  return gtc_issue(c);
}

void gtc_drop_all(struct gtcache *c) {
  c->n_defer = 0;
  for (uint32_t i = 0; i < c->n_slots; i++) {
    free(c->slots[i].gt);
    c->slots[i].gt = NULL;
    c->slots[i].gdi = GTC_NONE;
  }
  memset(c->slot_of, 0, ((size_t)c->n_gdes + 1) * sizeof *c->slot_of);
  memset(c->dirty, 0, ((size_t)c->n_slots / 64 + 1) * sizeof *c->dirty);
  c->n_dirty = 0;
  c->n_fresh = 0;
  c->newest = c->oldest = GTC_NONE;
}
