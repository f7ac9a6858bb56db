/* SPDX-License-Identifier: BSD-3-Clause */
/* The grain table cache (lib/gtcache.c) against a model: the cache it
 * replaced in extent_sparse.c and extent_cowd.c (a linear scan for the
 * lowest free slot, else the smallest last-use stamp), so that the new one
 * is shown to pick the same victim, in the same slot, and to call the
 * owner's flush at the same points, writing dirty tables in the same
 * (slot) order.
 *
 * Each run: N_GDES tables of N_ENTRIES entries in a real file (table GDI
 * at sector 1 + GDI * table sectors; some absent, made on first write as
 * the extents do), far more tables than slots; random reads and writes of
 * entries (hot set plus uniform), explicit flushes, failed installs
 * (gtc_abandon), a failing flush during an eviction (the take fails, the
 * cache is unchanged), an emptied cache (gtc_drop_all) and a grown
 * directory (gtc_grow).  After every operation the cache and the model
 * agree on which tables are cached, where, which are dirty, and every
 * cached table reads as the truth (so do tables read back after being
 * evicted and written by a flush).  Last, a flush that breaks the contract
 * (leaves the victim dirty) makes the take fail with its message, and
 * gt_read decodes little-endian bytes.
 *
 * Seed: argv[1], else $VMDKIT_SEED, else a fixed default (printed).
 */
#include "testlib.h"

#include "internal.h"

/* ---- the model: the old scan-based cache --------------------------------- */

struct mslot {
  bool has; /* holds a table */
  uint32_t gdi;
  bool dirty;
  uint64_t stamp; /* last use */
};

struct run {
  /* parameters */
  uint32_t n_gdes, n_entries, n_slots;
  /* the file and the truth */
  struct vfile *f;
  uint32_t *sector; /* per GD entry: table sector, 0 = absent */
  uint32_t next_sector;
  uint32_t **truth; /* per GD entry: what the table holds (n_entries) */
  /* the cache under test */
  struct gtcache c;
  /* the model */
  struct mslot *m;
  uint32_t *m_slot_of; /* slot + 1, 0 = not cached */
  uint64_t clock;
  /* what the owner's flush did */
  unsigned flushes;
  uint32_t *order; /* gdis written by the last flush, in order */
  size_t n_order;
  unsigned evict_flushes; /* of those, run by gtc_take */
  int fail_flush;         /* > 0: the next flush fails */
};

static uint32_t table_sectors(const struct run *r) {
  return (uint32_t)div_round_up((uint64_t)r->n_entries * 4, SECTOR);
}

static int write_to_file(struct run *r, uint32_t gdi, const uint32_t *t) {
  size_t bytes = (size_t)r->n_entries * 4;
  uint8_t *b = malloc(bytes);
  if (!b)
    return -1;
  for (uint32_t i = 0; i < r->n_entries; i++)
    put_le32(b + 4 * i, t[i]);
  int ret = vf_pwrite(r->f, b, bytes, (uint64_t)r->sector[gdi] * SECTOR);
  free(b);
  return ret;
}

/* The owner's flush: every dirty table, in slot order (as the extents). */
static int owner_flush(void *opaque) {
  struct run *r = opaque;
  r->flushes++;
  r->n_order = 0;
  if (r->fail_flush > 0) {
    r->fail_flush--;
    return set_error(EIO, "test: injected flush failure");
  }
  for (uint32_t i = gtc_next_dirty(&r->c, 0); i != GTC_NONE;
       i = gtc_next_dirty(&r->c, i + 1)) {
    uint32_t gdi = gtc_gdi(&r->c, i);
    if (write_to_file(r, gdi, gtc_table(&r->c, i)) != 0)
      return -1;
    r->order[r->n_order++] = gdi;
    gtc_clean(&r->c, i);
  }
  return 0;
}

/* The model's flush: the gdis it writes, in order (into OUT); all clean. */
static size_t model_flush(struct run *r, uint32_t *out) {
  size_t n = 0;
  for (uint32_t i = 0; i < r->n_slots; i++)
    if (r->m[i].has && r->m[i].dirty) {
      out[n++] = r->m[i].gdi;
      r->m[i].dirty = false;
    }
  return n;
}

/* The old take_slot: lowest free slot, else the least recently used. */
static uint32_t model_victim(const struct run *r) {
  uint32_t v = GTC_NONE;
  for (uint32_t i = 0; i < r->n_slots; i++) {
    if (!r->m[i].has)
      return i;
    if (v == GTC_NONE || r->m[i].stamp < r->m[v].stamp)
      v = i;
  }
  return v;
}

/* Cache and model agree, and cached tables hold the truth. */
static void compare(struct run *r, const char *when, uint64_t op) {
  uint32_t model_dirty = 0;
  for (uint32_t i = 0; i < r->n_slots; i++)
    model_dirty += r->m[i].has && r->m[i].dirty;
  CHECK(r->c.n_dirty == model_dirty, "%s op %" PRIu64 ": %u dirty, model %u",
        when, op, r->c.n_dirty, model_dirty);
  for (uint32_t gdi = 0; gdi < r->n_gdes; gdi++) {
    bool cached = gtc_cached(&r->c, gdi);
    if (!CHECK(cached == (r->m_slot_of[gdi] != 0),
               "%s op %" PRIu64 ": table %u cached %d, model %d", when, op, gdi,
               cached, r->m_slot_of[gdi] != 0) ||
        !cached)
      continue;
    uint32_t slot = r->c.slot_of[gdi] - 1;
    if (!CHECK(slot == r->m_slot_of[gdi] - 1,
               "%s op %" PRIu64 ": table %u in slot %u, model %u", when, op,
               gdi, slot, r->m_slot_of[gdi] - 1))
      continue;
    CHECK(gtc_gdi(&r->c, slot) == gdi, "%s: slot %u says table %u, not %u",
          when, slot, gtc_gdi(&r->c, slot), gdi);
    CHECK(gtc_is_dirty(&r->c, slot) == r->m[slot].dirty,
          "%s op %" PRIu64 ": table %u dirty %d, model %d", when, op, gdi,
          gtc_is_dirty(&r->c, slot), r->m[slot].dirty);
    int64_t d = t_first_diff(gtc_table(&r->c, slot), r->truth[gdi],
                             (size_t)r->n_entries * 4);
    CHECK(d < 0, "%s op %" PRIu64 ": table %u differs at byte %" PRId64, when,
          op, gdi, d);
  }
}

/* What an extent's get_table does: the slot of GDI's table, loading it or
 * (ALLOCATE) making it; GTC_NONE when absent and not ALLOCATE.  ABANDON:
 * the load "fails" after the take (as a read error or a full file).
 * Returns -1 when the take failed. */
static int get(struct run *r, uint32_t gdi, bool allocate, bool abandon,
               uint32_t *slot, uint64_t op) {
  uint32_t *expect = r->order + r->n_gdes; /* second half: the model's */
  *slot = gtc_lookup(&r->c, gdi);
  if (r->m_slot_of[gdi]) {
    uint32_t ms = r->m_slot_of[gdi] - 1;
    r->m[ms].stamp = ++r->clock;
    CHECK(*slot == ms, "op %" PRIu64 ": hit on table %u in slot %u, model %u",
          op, gdi, *slot, ms);
    return 0;
  }
  CHECK(*slot == GTC_NONE, "op %" PRIu64 ": table %u found, model: miss", op,
        gdi);
  if (r->sector[gdi] == 0 && !allocate)
    return 0;

  /* The model's take, predicted before the real one runs. */
  uint32_t v = model_victim(r);
  bool evict = r->m[v].has;
  bool will_flush = evict && r->m[v].dirty;
  size_t n_expect = 0;
  bool flush_fails = will_flush && r->fail_flush > 0;
  unsigned flushes = r->flushes;
  uint32_t t;
  int ret = gtc_take(&r->c, &t);
  CHECK(r->flushes == flushes + (will_flush ? 1 : 0),
        "op %" PRIu64 ": %u flushes during the take, model %d", op,
        r->flushes - flushes, will_flush);
  if (flush_fails) {
    /* The take fails with the flush's error; nothing changed, in the
     * model either (compare() checks). */
    CHECK(ret == -1 && t_contains_ci(vmdk_get_error(), "injected"),
          "op %" PRIu64 ": take with a failing flush: %d, %s", op, ret,
          vmdk_get_error());
    return -1;
  }
  CHECK(ret == 0, "op %" PRIu64 ": take: %s", op, vmdk_get_error());
  if (ret != 0)
    return -1;
  if (will_flush) {
    r->evict_flushes++;
    n_expect = model_flush(r, expect);
    bool same = n_expect == r->n_order &&
                memcmp(expect, r->order, n_expect * sizeof *expect) == 0;
    CHECK(same, "op %" PRIu64 ": the flush wrote %zu tables, model %zu%s", op,
          r->n_order, n_expect, n_expect == r->n_order ? " (other order)" : "");
  }
  CHECK(t == v, "op %" PRIu64 ": took slot %u, model %u", op, t, v);
  if (evict) {
    r->m_slot_of[r->m[v].gdi] = 0;
    r->m[v].has = false;
  }
  if (abandon) {
    gtc_abandon(&r->c, t);
    return 0; /* the model's slot is free again, as the old code left it */
  }
  if (r->sector[gdi] == 0) {
    r->sector[gdi] = r->next_sector;
    r->next_sector += table_sectors(r);
    gtc_install_new(&r->c, t, gdi);
    r->m[v].dirty = true;
  } else {
    CHECK(gtc_load(&r->c, t, gdi, r->f, r->sector[gdi]) == 0,
          "op %" PRIu64 ": load: %s", op, vmdk_get_error());
    r->m[v].dirty = false;
  }
  r->m[v].has = true;
  r->m[v].gdi = gdi;
  r->m[v].stamp = ++r->clock;
  r->m_slot_of[gdi] = v + 1;
  *slot = t;
  return 0;
}

static void one_run(uint64_t seed, uint32_t n_gdes, uint32_t n_entries,
                    uint32_t n_slots, uint64_t ops, const char *name) {
  struct run r = {.n_gdes = n_gdes, .n_entries = n_entries, .n_slots = n_slots};
  struct t_rng rng = {seed};
  uint32_t grow_to = n_gdes + n_gdes / 4;
  r.f = vf_create(t_path(name), 0);
  r.sector = calloc(grow_to + 1, sizeof *r.sector);
  r.truth = calloc(grow_to + 1, sizeof *r.truth);
  r.m = calloc(n_slots + 1, sizeof *r.m);
  r.m_slot_of = calloc(grow_to + 1, sizeof *r.m_slot_of);
  r.order = calloc(2 * (size_t)grow_to + 2, sizeof *r.order);
  if (!CHECK(r.f && r.sector && r.truth && r.m && r.m_slot_of && r.order,
             "%s: setup: %s", name, vmdk_get_error()))
    goto out;
  for (uint32_t gdi = 0; gdi < grow_to; gdi++) {
    r.truth[gdi] = calloc(n_entries, 4);
    if (!CHECK(r.truth[gdi] != NULL, "out of memory"))
      goto out;
  }
  /* Two thirds of the tables exist on file, with values; the rest are
   * absent (GD entry 0) until written. */
  r.next_sector = 1;
  for (uint32_t gdi = 0; gdi < n_gdes; gdi++) {
    if (t_below(&rng, 3) == 0)
      continue;
    r.sector[gdi] = r.next_sector;
    r.next_sector += table_sectors(&r);
    for (uint32_t i = 0; i < n_entries; i++)
      r.truth[gdi][i] = (uint32_t)t_rand64(&rng);
    if (!CHECK(write_to_file(&r, gdi, r.truth[gdi]) == 0, "write table"))
      goto out;
  }
  if (!CHECK(gtc_init(&r.c, n_gdes, n_entries, n_slots, owner_flush, &r,
                      t_path(name)) == 0,
             "gtc_init: %s", vmdk_get_error()))
    goto out;

  uint32_t hot = n_slots + n_slots / 2 + 1;
  for (uint64_t op = 0; op < ops; op++) {
    uint32_t gdi = t_below(&rng, 2) ? (uint32_t)t_below(&rng, hot)
                                    : (uint32_t)t_below(&rng, r.n_gdes);
    uint64_t what = t_below(&rng, 1000);
    uint32_t slot;
    if (what < 5) { /* an explicit flush */
      uint32_t *expect = r.order + r.n_gdes;
      size_t n = model_flush(&r, expect);
      CHECK(owner_flush(&r) == 0, "flush: %s", vmdk_get_error());
      CHECK(n == r.n_order && memcmp(expect, r.order, n * sizeof *expect) == 0,
            "op %" PRIu64 ": explicit flush wrote %zu tables, model %zu", op,
            r.n_order, n);
    } else if (what < 7) { /* empty the cache, after a flush */
      uint32_t *expect = r.order + r.n_gdes;
      model_flush(&r, expect);
      CHECK(owner_flush(&r) == 0, "flush: %s", vmdk_get_error());
      gtc_drop_all(&r.c);
      for (uint32_t i = 0; i < n_slots; i++)
        if (r.m[i].has) {
          r.m_slot_of[r.m[i].gdi] = 0;
          r.m[i].has = false;
        }
    } else if (what < 12) { /* the table cannot be read or made */
      (void)get(&r, gdi, true, true, &slot, op);
    } else if (what < 20) { /* a flush fails during an eviction */
      r.fail_flush = 1;
      (void)get(&r, gdi, true, false, &slot, op);
      r.fail_flush = 0;
    } else if (what < 21 && r.n_gdes < grow_to) { /* the directory grows */
      CHECK(gtc_grow(&r.c, grow_to) == 0, "grow: %s", vmdk_get_error());
      r.n_gdes = grow_to;
    } else if (what < 500) { /* read an entry */
      if (get(&r, gdi, false, false, &slot, op) == 0 && slot != GTC_NONE) {
        uint32_t i = (uint32_t)t_below(&rng, n_entries);
        CHECK(gtc_table(&r.c, slot)[i] == r.truth[gdi][i],
              "op %" PRIu64 ": table %u entry %u reads %u, not %u", op, gdi, i,
              gtc_table(&r.c, slot)[i], r.truth[gdi][i]);
      }
    } else { /* write an entry */
      if (get(&r, gdi, true, false, &slot, op) == 0 && slot != GTC_NONE) {
        uint32_t i = (uint32_t)t_below(&rng, n_entries);
        uint32_t v = (uint32_t)t_rand64(&rng);
        gtc_table(&r.c, slot)[i] = v;
        r.truth[gdi][i] = v;
        gtc_mark_dirty(&r.c, slot);
        r.m[slot].dirty = true;
      }
    }
    compare(&r, name, op);
    if (t_failures > 20)
      goto out;
  }
  /* Enough happened to mean something. */
  CHECK(r.evict_flushes > 10, "%s: only %u flushes by evictions", name,
        r.evict_flushes);
  /* Everything reaches the file: every table reads back as the truth. */
  CHECK(owner_flush(&r) == 0, "final flush: %s", vmdk_get_error());
  CHECK_U64(r.c.n_dirty, 0);
  uint32_t *t = malloc((size_t)n_entries * 4);
  for (uint32_t gdi = 0; t && gdi < r.n_gdes; gdi++)
    if (r.sector[gdi]) {
      CHECK(gt_read(r.f, r.sector[gdi], t, n_entries) == 0, "gt_read: %s",
            vmdk_get_error());
      CHECK(memcmp(t, r.truth[gdi], (size_t)n_entries * 4) == 0,
            "%s: table %u on file differs", name, gdi);
    }
  free(t);
out:
  gtc_free(&r.c);
  for (uint32_t gdi = 0; r.truth && gdi < grow_to; gdi++)
    free(r.truth[gdi]);
  free(r.truth);
  free(r.sector);
  free(r.m);
  free(r.m_slot_of);
  free(r.order);
  vf_close(r.f);
}

/* A flush that leaves the victim dirty breaks the contract: the take fails,
 * naming the table, and the table stays cached. */
static int lazy_flush(void *opaque) {
  (*(unsigned *)opaque)++;
  return 0;
}

static void lazy_flush_contract(void) {
  struct gtcache c;
  unsigned calls = 0;
  uint32_t a, b, t;
  if (!CHECK(gtc_init(&c, 10, 16, 2, lazy_flush, &calls, "lazy") == 0,
             "gtc_init: %s", vmdk_get_error()))
    return;
  CHECK(gtc_take(&c, &a) == 0 && a == 0, "take a: %u", a);
  gtc_install_new(&c, a, 3);
  CHECK(gtc_take(&c, &b) == 0 && b == 1, "take b: %u", b);
  gtc_install(&c, b, 7, false);
  gtc_table(&c, b)[5] = 42;
  gtc_mark_dirty(&c, b);
  CHECK_U64(c.n_dirty, 2);
  CHECK(gtc_lookup(&c, 3) == a, "lookup 3"); /* table 7 is now the oldest */
  CHECK(gtc_take(&c, &t) == -1, "take with a lazy flush succeeded");
  CHECK_U64(calls, 1);
  CHECK(t_contains_ci(vmdk_get_error(), "lazy: grain table 7 is still dirty"),
        "message: %s", vmdk_get_error());
  CHECK(gtc_lookup(&c, 7) == b && gtc_table(&c, b)[5] == 42,
        "table 7 was dropped");
  CHECK(gtc_lookup(&c, 3) == a, "table 3 was dropped");
  CHECK_U64(c.n_dirty, 2);
  CHECK(gtc_next_dirty(&c, 0) == a && gtc_next_dirty(&c, a + 1) == b &&
            gtc_next_dirty(&c, b + 1) == GTC_NONE,
        "dirty slots");
  gtc_free(&c);
}

static void decode_bytes(void) {
  const char *path = t_path("le.bin");
  uint8_t b[SECTOR + 8] = {0};
  const uint8_t e[8] = {0x01, 0x02, 0x03, 0x04, 0xff, 0x00, 0x00, 0x80};
  memcpy(b + SECTOR, e, 8);
  if (!CHECK(t_write_file(path, b, sizeof b) == 0, "write %s", path))
    return;
  struct vfile *f = vf_open(path, false, 0);
  uint32_t t[4] = {0};
  if (!CHECK(f != NULL, "open: %s", vmdk_get_error()))
    return;
  /* 4 entries: the last two lie past the end of the file and read 0 */
  CHECK(gt_read(f, 1, t, 4) == 0, "gt_read: %s", vmdk_get_error());
  CHECK_U64(t[0], 0x04030201u);
  CHECK_U64(t[1], 0x800000ffu);
  CHECK_U64(t[2], 0);
  CHECK_U64(t[3], 0);
  vf_close(f);
}

int main(int argc, char **argv) {
  uint64_t seed = 20240611;
  const char *s = argc > 1 ? argv[1] : getenv("VMDKIT_SEED");
  if (s && *s)
    seed = strtoull(s, NULL, 0);
  printf("seed %" PRIu64 "\n", seed);
  t_tmpdir("gtcache");
  decode_bytes();
  lazy_flush_contract();
  /* few slots (part of one bitmap word); slots across bitmap words; the
   * sparse minimum of 4; one slot; COWD-sized tables */
  one_run(seed, 300, 128, 7, 30000, "a");
  one_run(seed + 1, 1000, 512, 130, 60000, "b");
  one_run(seed + 2, 64, 512, 4, 20000, "c");
  one_run(seed + 3, 20, 128, 1, 5000, "d");
  one_run(seed + 4, 200, 4096, 64, 20000, "e");
  return t_exit_code();
}
