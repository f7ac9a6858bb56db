/* SPDX-License-Identifier: BSD-3-Clause */
/* Fuzz target: the text descriptor parser and printer.
 *
 * The input is descriptor text.  When desc_parse accepts it, the printed
 * form (desc_print, what vmdkit writes back when it updates a CID) must
 * parse again to the same descriptor, field by field, and print to the
 * same text: a descriptor vmdkit accepted and rewrote must never become
 * one it refuses or reads differently.  The same holds after a ddb key is
 * set, as vmdk_pwrite's CID update does.
 */
#include "fuzz_common.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The header keys other than "encoding", or only that one, in order. */
static void same_header(const struct descriptor *a, const struct descriptor *b,
                        bool encoding) {
  size_t i = 0, j = 0;
  for (;;) {
    while (i < a->n_header &&
           (strcasecmp(a->header[i].key, "encoding") == 0) != encoding)
      i++;
    while (j < b->n_header &&
           (strcasecmp(b->header[j].key, "encoding") == 0) != encoding)
      j++;
    if (i == a->n_header || j == b->n_header)
      break;
    FZ_ASSERT(strcmp(a->header[i].key, b->header[j].key) == 0 &&
                  strcmp(a->header[i].value, b->header[j].value) == 0,
              "header %s=\"%s\" came back as %s=\"%s\"", a->header[i].key,
              a->header[i].value, b->header[j].key, b->header[j].value);
    i++;
    j++;
  }
  FZ_ASSERT(i == a->n_header && j == b->n_header,
            "header key counts differ (%zu, %zu)", a->n_header, b->n_header);
}

static void same(const struct descriptor *a, const struct descriptor *b,
                 const char *text) {
  FZ_ASSERT(a->version == b->version, "version %u -> %u", a->version,
            b->version);
  FZ_ASSERT(a->cid == b->cid && a->parent_cid == b->parent_cid,
            "CIDs %08x/%08x -> %08x/%08x", a->cid, a->parent_cid, b->cid,
            b->parent_cid);
  FZ_ASSERT(same_str(a->create_type, b->create_type),
            "createType \"%s\" -> \"%s\"\n%s", a->create_type, b->create_type,
            text);
  FZ_ASSERT(same_str(a->parent_hint, b->parent_hint),
            "parentFileNameHint \"%s\" -> \"%s\"\n%s",
            a->parent_hint ? a->parent_hint : "(none)",
            b->parent_hint ? b->parent_hint : "(none)", text);
  same_header(a, b, false);
  same_header(a, b, true);
  FZ_ASSERT(a->n_extents == b->n_extents, "%zu extents -> %zu\n%s",
            a->n_extents, b->n_extents, text);
  for (size_t i = 0; i < a->n_extents; i++) {
    const struct desc_extent *x = &a->extents[i], *y = &b->extents[i];
    FZ_ASSERT(x->access == y->access && x->sectors == y->sectors &&
                  x->type == y->type && same_str(x->filename, y->filename) &&
                  x->offset == y->offset && x->has_offset == y->has_offset,
              "extent %zu (%s %llu %s \"%s\" %llu) came back as (%s %llu %s "
              "\"%s\" %llu)\n%s",
              i, ext_access_name(x->access), (unsigned long long)x->sectors,
              ext_type_name(x->type), x->filename ? x->filename : "",
              (unsigned long long)x->offset, ext_access_name(y->access),
              (unsigned long long)y->sectors, ext_type_name(y->type),
              y->filename ? y->filename : "", (unsigned long long)y->offset,
              text);
  }
  FZ_ASSERT(a->n_ddb == b->n_ddb, "%zu ddb keys -> %zu\n%s", a->n_ddb,
            b->n_ddb, text);
  for (size_t i = 0; i < a->n_ddb; i++)
    FZ_ASSERT(strcmp(a->ddb[i].key, b->ddb[i].key) == 0 &&
                  strcmp(a->ddb[i].value, b->ddb[i].value) == 0,
              "ddb %s=\"%s\" came back as %s=\"%s\"", a->ddb[i].key,
              a->ddb[i].value, b->ddb[i].key, b->ddb[i].value);
}

/* Print D, parse the text, compare; returns the reparsed descriptor. */
static struct descriptor *round_trip(const struct descriptor *d) {
  size_t len = 0;
  char *text = desc_print(d, &len);
  FZ_ASSERT(text != NULL, "desc_print failed: %s", vmdk_get_error());
  FZ_ASSERT(strlen(text) == len, "printed length %zu, strlen %zu", len,
            strlen(text));
  FZ_ASSERT(desc_looks_like((const uint8_t *)text, len),
            "printed text does not look like a descriptor");
  struct descriptor *e = desc_parse(text, len, "printed");
  FZ_ASSERT(e != NULL, "the printed descriptor does not parse: %s\n%s",
            vmdk_get_error(), text);
  same(d, e, text);
  size_t len2 = 0;
  char *text2 = desc_print(e, &len2);
  FZ_ASSERT(text2 && len2 == len && memcmp(text, text2, len) == 0,
            "printing is not stable:\n%s\n----\n%s", text,
            text2 ? text2 : "(null)");
  free(text2);
  free(text);
  return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct descriptor *d = desc_parse((const char *)data, size, "fuzz.vmdk");
  if (!d) {
    FZ_ASSERT(*vmdk_get_error(), "refused without a message");
    return 0;
  }
  FZ_ASSERT(d->create_type && d->n_extents > 0, "accepted without %s",
            d->create_type ? "extents" : "createType");
  for (size_t i = 0; i < d->n_extents; i++)
    FZ_ASSERT(d->extents[i].type == EXT_ZERO || d->extents[i].filename,
              "extent %zu has no file name", i);
  (void)desc_get_ddb(d, "ddb.adapterType");
  struct descriptor *e = round_trip(d);
  desc_free(e);
  /* What a write's CID update does to the text. */
  d->cid = 0x12345678u;
  if (desc_set_ddb(d, "ddb.longContentID",
                   "0123456789abcdef0123456789abcdef") == 0 &&
      desc_set_ddb(d, "ddb.uuid", "00 11 22 33") == 0) {
    e = round_trip(d);
    desc_free(e);
  }
  desc_free(d);
  return 0;
}
