/* SPDX-License-Identifier: BSD-3-Clause */
/* Descriptor text: desc_parse / desc_print round trips on what qemu-img and
 * VMware write, and the error cases (desc_parse returns NULL and the
 * thread's error names the problem).
 *
 * A round trip means: parse(text) == expected fields; print it; parse the
 * printed text again and get the same fields; printing that gives the same
 * text again (printing is a fixed point).
 */
#include "testlib.h"

#include "internal.h"

/* ---- comparing two parsed descriptors --------------------------------- */

static bool str_eq(const char *a, const char *b) {
  if (!a || !b)
    return a == b;
  return strcmp(a, b) == 0;
}

/* Records a failure (with WHAT) for every field that differs. */
static void check_same(const struct descriptor *a, const struct descriptor *b,
                       const char *what) {
  CHECK(a->version == b->version, "%s: version %u vs %u", what, a->version,
        b->version);
  CHECK(a->cid == b->cid, "%s: CID %08x vs %08x", what, a->cid, b->cid);
  CHECK(a->parent_cid == b->parent_cid, "%s: parentCID %08x vs %08x", what,
        a->parent_cid, b->parent_cid);
  CHECK(str_eq(a->create_type, b->create_type), "%s: createType %s vs %s", what,
        a->create_type, b->create_type);
  CHECK(str_eq(a->parent_hint, b->parent_hint),
        "%s: parentFileNameHint %s vs %s", what,
        a->parent_hint ? a->parent_hint : "(null)",
        b->parent_hint ? b->parent_hint : "(null)");
  if (CHECK(a->n_header == b->n_header, "%s: %zu vs %zu other header keys",
            what, a->n_header, b->n_header))
    for (size_t i = 0; i < a->n_header; i++) {
      CHECK(str_eq(a->header[i].key, b->header[i].key),
            "%s: header key %zu: %s vs %s", what, i, a->header[i].key,
            b->header[i].key);
      CHECK(str_eq(a->header[i].value, b->header[i].value),
            "%s: header %s: \"%s\" vs \"%s\"", what, a->header[i].key,
            a->header[i].value, b->header[i].value);
    }
  if (CHECK(a->n_extents == b->n_extents, "%s: %zu vs %zu extents", what,
            a->n_extents, b->n_extents))
    for (size_t i = 0; i < a->n_extents; i++) {
      const struct desc_extent *x = &a->extents[i], *y = &b->extents[i];
      CHECK(x->access == y->access && x->sectors == y->sectors &&
                x->type == y->type && str_eq(x->filename, y->filename) &&
                x->offset == y->offset && x->has_offset == y->has_offset,
            "%s: extent %zu: %s %" PRIu64 " %s \"%s\" %" PRIu64
            " (has_offset %d) vs %s %" PRIu64 " %s \"%s\" %" PRIu64
            " (has_offset %d)",
            what, i, ext_access_name(x->access), x->sectors,
            ext_type_name(x->type), x->filename ? x->filename : "(null)",
            x->offset, x->has_offset, ext_access_name(y->access), y->sectors,
            ext_type_name(y->type), y->filename ? y->filename : "(null)",
            y->offset, y->has_offset);
    }
  if (CHECK(a->n_ddb == b->n_ddb, "%s: %zu vs %zu ddb keys", what, a->n_ddb,
            b->n_ddb))
    for (size_t i = 0; i < a->n_ddb; i++) {
      CHECK(str_eq(a->ddb[i].key, b->ddb[i].key), "%s: ddb key %zu: %s vs %s",
            what, i, a->ddb[i].key, b->ddb[i].key);
      CHECK(str_eq(a->ddb[i].value, b->ddb[i].value),
            "%s: %s: \"%s\" vs \"%s\"", what, a->ddb[i].key, a->ddb[i].value,
            b->ddb[i].value);
    }
}

/* Print D, check the printed text's shape, reparse, compare, print again
 * and compare the two texts. */
static void round_trip(const struct descriptor *d, const char *what) {
  size_t len1 = 0, len2 = 0;
  char *t1 = desc_print(d, &len1);
  if (!CHECK(t1 != NULL, "%s: desc_print failed: %s", what, vmdk_get_error()))
    return;
  CHECK(strlen(t1) == len1, "%s: desc_print length %zu but strlen %zu", what,
        len1, strlen(t1));
  CHECK(strncmp(t1, "# Disk DescriptorFile\n", 22) == 0,
        "%s: printed text starts with \"%.30s\", expected the strict "
        "\"# Disk DescriptorFile\" line",
        what, t1);
  CHECK(strchr(t1, '\r') == NULL, "%s: printed text has a CR", what);
  CHECK(len1 > 0 && t1[len1 - 1] == '\n',
        "%s: printed text does not end in "
        "a newline",
        what);
  /* Order the strictest readers (VirtualBox) need: header keys, extents,
   * DDB. */
  const char *ct = strstr(t1, "createType");
  const char *ddb = strstr(t1, "\nddb.");
  const char *ext = NULL;
  for (const char *p = t1; (p = strchr(p, '\n')) != NULL; p++) {
    if (strncmp(p + 1, "RW ", 3) == 0 || strncmp(p + 1, "RDONLY ", 7) == 0 ||
        strncmp(p + 1, "NOACCESS ", 9) == 0)
      ext = p + 1; /* the last extent line */
  }
  CHECK(ct != NULL, "%s: printed text has no createType:\n%s", what, t1);
  CHECK(ext != NULL, "%s: printed text has no extent line:\n%s", what, t1);
  if (ct && ext)
    CHECK(ct < ext, "%s: createType printed after an extent:\n%s", what, t1);
  if (ddb && ext)
    CHECK(ext < ddb, "%s: an extent is printed after the DDB:\n%s", what, t1);

  struct descriptor *d2 = desc_parse(t1, len1, "printed.vmdk");
  if (!CHECK(d2 != NULL, "%s: reparse of the printed text failed: %s\n%s", what,
             vmdk_get_error(), t1)) {
    free(t1);
    return;
  }
  char buf[256];
  snprintf(buf, sizeof buf, "%s (reparsed)", what);
  check_same(d, d2, buf);
  char *t2 = desc_print(d2, &len2);
  if (CHECK(t2 != NULL, "%s: second print failed: %s", what, vmdk_get_error()))
    CHECK(len1 == len2 && memcmp(t1, t2, len1) == 0,
          "%s: printing is not a fixed point:\n--- first\n%s--- second\n%s",
          what, t1, t2 ? t2 : "");
  free(t2);
  desc_free(d2);
  free(t1);
}

static const char *ddb_value(const struct descriptor *d, const char *key) {
  for (size_t i = 0; i < d->n_ddb; i++)
    if (strcmp(d->ddb[i].key, key) == 0)
      return d->ddb[i].value;
  return NULL;
}
static const char *header_value(const struct descriptor *d, const char *key) {
  for (size_t i = 0; i < d->n_header; i++)
    if (strcasecmp(d->header[i].key, key) == 0)
      return d->header[i].value;
  return NULL;
}

static void check_extent(const struct descriptor *d, size_t i,
                         enum ext_access acc, uint64_t sectors,
                         enum ext_type type, const char *filename,
                         bool has_offset, uint64_t offset, const char *what) {
  if (!CHECK(i < d->n_extents, "%s: extent %zu missing (only %zu)", what, i,
             d->n_extents))
    return;
  const struct desc_extent *e = &d->extents[i];
  CHECK(e->access == acc, "%s: extent %zu access %s, expected %s", what, i,
        ext_access_name(e->access), ext_access_name(acc));
  CHECK(e->sectors == sectors,
        "%s: extent %zu sectors %" PRIu64 ", expected %" PRIu64, what, i,
        e->sectors, sectors);
  CHECK(e->type == type, "%s: extent %zu type %s, expected %s", what, i,
        ext_type_name(e->type), ext_type_name(type));
  CHECK(str_eq(e->filename, filename),
        "%s: extent %zu file \"%s\", expected "
        "\"%s\"",
        what, i, e->filename ? e->filename : "(null)",
        filename ? filename : "(null)");
  CHECK(e->has_offset == has_offset,
        "%s: extent %zu has_offset %d, expected "
        "%d",
        what, i, e->has_offset, has_offset);
  if (has_offset)
    CHECK(e->offset == offset,
          "%s: extent %zu offset %" PRIu64 ", expected %" PRIu64, what, i,
          e->offset, offset);
}

/* ---- what qemu-img 7.2 writes --------------------------------------- */

static const char qemu_desc[] = "# Disk DescriptorFile\n"
                                "version=1\n"
                                "CID=f75040ce\n"
                                "parentCID=ffffffff\n"
                                "createType=\"monolithicSparse\"\n"
                                "\n"
                                "# Extent description\n"
                                "RW 131072 SPARSE \"a.vmdk\"\n"
                                "\n"
                                "# The Disk Data Base\n"
                                "#DDB\n"
                                "\n"
                                "ddb.virtualHWVersion = \"4\"\n"
                                "ddb.geometry.cylinders = \"130\"\n"
                                "ddb.geometry.heads = \"16\"\n"
                                "ddb.geometry.sectors = \"63\"\n"
                                "ddb.adapterType = \"ide\"\n"
                                "ddb.toolsVersion = \"2147483647\"\n";

static void test_qemu(void) {
  const char *w = "qemu descriptor";
  struct descriptor *d = desc_parse(qemu_desc, strlen(qemu_desc), "a.vmdk");
  if (!CHECK(d != NULL, "%s: parse failed: %s", w, vmdk_get_error()))
    return;
  CHECK_U64(d->version, 1);
  CHECK_U64(d->cid, 0xf75040ceu);
  CHECK_U64(d->parent_cid, 0xffffffffu);
  CHECK_STR(d->create_type, "monolithicSparse");
  CHECK(d->parent_hint == NULL, "%s: parent hint \"%s\"", w, d->parent_hint);
  CHECK_U64(d->n_extents, 1);
  check_extent(d, 0, ACC_RW, 131072, EXT_SPARSE, "a.vmdk", false, 0, w);
  CHECK_U64(d->n_ddb, 6);
  static const char *const keys[] = {
      "ddb.virtualHWVersion", "ddb.geometry.cylinders", "ddb.geometry.heads",
      "ddb.geometry.sectors", "ddb.adapterType",        "ddb.toolsVersion"};
  static const char *const vals[] = {"4",  "130", "16",
                                     "63", "ide", "2147483647"};
  for (size_t i = 0; i < 6 && i < d->n_ddb; i++) {
    CHECK_STR(d->ddb[i].key, keys[i]);
    CHECK_STR(d->ddb[i].value, vals[i]);
  }
  CHECK_STR(desc_get_ddb(d, "ddb.adapterType"), "ide");
  CHECK_STR(desc_get_ddb(d, "DDB.ADAPTERTYPE"), "ide");
  CHECK(desc_get_ddb(d, "ddb.nosuchkey") == NULL, "unknown ddb key found");
  round_trip(d, w);

  /* desc_set_ddb: replace keeps the position, a new key is appended. */
  CHECK(desc_set_ddb(d, "ddb.adapterType", "lsilogic") == 0,
        "desc_set_ddb replace: %s", vmdk_get_error());
  CHECK(desc_set_ddb(d, "ddb.uuid", "60 00 C2 9b") == 0, "desc_set_ddb add: %s",
        vmdk_get_error());
  CHECK_U64(d->n_ddb, 7);
  if (d->n_ddb == 7) {
    CHECK_STR(d->ddb[4].key, "ddb.adapterType");
    CHECK_STR(d->ddb[4].value, "lsilogic");
    CHECK_STR(d->ddb[6].key, "ddb.uuid");
    CHECK_STR(d->ddb[6].value, "60 00 C2 9b");
  }
  CHECK_STR(desc_get_ddb(d, "ddb.adaptertype"), "lsilogic");
  round_trip(d, "qemu descriptor after desc_set_ddb");

  /* desc_add_extent then round trip. */
  CHECK(desc_add_extent(d, ACC_RDONLY, 2048, EXT_FLAT, "more-flat.vmdk", 4096,
                        true) == 0,
        "desc_add_extent: %s", vmdk_get_error());
  CHECK(desc_add_extent(d, ACC_RW, 100, EXT_ZERO, NULL, 0, false) == 0,
        "desc_add_extent ZERO: %s", vmdk_get_error());
  check_extent(d, 1, ACC_RDONLY, 2048, EXT_FLAT, "more-flat.vmdk", true, 4096,
               "added extent");
  check_extent(d, 2, ACC_RW, 100, EXT_ZERO, NULL, false, 0, "added ZERO");
  round_trip(d, "qemu descriptor with added extents");
  desc_free(d);
}

/* ---- what VMware writes (and worse) ---------------------------------- */

/* Trailing spaces before the newline (the VMware stream sample has them),
 * the "# Disk Descriptor File" first line, comments everywhere, unknown
 * header keys, unknown ddb keys, extents with and without offsets, ZERO
 * extents without a file name, RDONLY/NOACCESS. */
static const char vmware_desc[] =
    "# Disk Descriptor File \n"
    "version=1 \n"
    "encoding=\"UTF-8\" \n"
    "CID=a454774a \n"
    "parentCID=ffffffff \n"
    "isNativeSnapshot=\"no\" \n"
    "createType=\"custom\" \n"
    "# a comment between header keys\n"
    "\n"
    "# Extent description\n"
    "RW 4192256 SPARSE \"test-s001.vmdk\" \n"
    "RDONLY 2048 FLAT \"test-f001.vmdk\" 0 \n"
    "NOACCESS 1024 FLAT \"dev.raw\" 2048\n"
    "RW 512 ZERO \n"
    "NOACCESS 100 ZERO\n"
    "RW 4096 FLAT \"name with spaces-flat.vmdk\" 7\n"
    "\n"
    "# The Disk Data Base \n"
    "#DDB\n"
    "\n"
    "ddb.adapterType = \"lsilogic\" \n"
    "ddb.geometry.cylinders = \"1044\"\n"
    "ddb.geometry.heads = \"255\"\n"
    "# comment inside the DDB\n"
    "ddb.geometry.sectors = \"63\"\n"
    "ddb.longContentID = \"8c0a0f4b7bf4a1f7e4cd1b6ba454774a\" \n"
    "ddb.uuid.image = \"f7a0ad2b-a3a5-4e44-9b33-62d5c1a2c5a6\"\n"
    "ddb.toolsInstallType = \"4\"\n"
    "ddb.virtualHWVersion = \"8\"\n";

static void check_vmware(const struct descriptor *d, const char *w) {
  CHECK(d->version == 1, "%s: version %u", w, d->version);
  CHECK(d->cid == 0xa454774au, "%s: CID %08x", w, d->cid);
  CHECK(d->parent_cid == NO_CID, "%s: parentCID %08x", w, d->parent_cid);
  CHECK(str_eq(d->create_type, "custom"), "%s: createType \"%s\"", w,
        d->create_type);
  CHECK(str_eq(header_value(d, "encoding"), "UTF-8"),
        "%s: encoding \"%s\" not kept", w,
        header_value(d, "encoding") ? header_value(d, "encoding") : "(null)");
  CHECK(str_eq(header_value(d, "isNativeSnapshot"), "no"),
        "%s: isNativeSnapshot not kept", w);
  if (CHECK(d->n_extents == 6, "%s: %zu extents, expected 6", w,
            d->n_extents)) {
    check_extent(d, 0, ACC_RW, 4192256, EXT_SPARSE, "test-s001.vmdk", false, 0,
                 w);
    check_extent(d, 1, ACC_RDONLY, 2048, EXT_FLAT, "test-f001.vmdk", true, 0,
                 w);
    check_extent(d, 2, ACC_NOACCESS, 1024, EXT_FLAT, "dev.raw", true, 2048, w);
    check_extent(d, 3, ACC_RW, 512, EXT_ZERO, NULL, false, 0, w);
    check_extent(d, 4, ACC_NOACCESS, 100, EXT_ZERO, NULL, false, 0, w);
    check_extent(d, 5, ACC_RW, 4096, EXT_FLAT, "name with spaces-flat.vmdk",
                 true, 7, w);
  }
  CHECK(d->n_ddb == 8, "%s: %zu ddb keys, expected 8", w, d->n_ddb);
  CHECK(str_eq(ddb_value(d, "ddb.adapterType"), "lsilogic"),
        "%s: adapterType \"%s\" (trailing space must not be part of it)", w,
        ddb_value(d, "ddb.adapterType") ? ddb_value(d, "ddb.adapterType")
                                        : "(null)");
  CHECK(str_eq(ddb_value(d, "ddb.longContentID"),
               "8c0a0f4b7bf4a1f7e4cd1b6ba454774a"),
        "%s: ddb.longContentID not kept", w);
  CHECK(str_eq(ddb_value(d, "ddb.uuid.image"),
               "f7a0ad2b-a3a5-4e44-9b33-62d5c1a2c5a6"),
        "%s: ddb.uuid.image not kept", w);
  CHECK(str_eq(ddb_value(d, "ddb.toolsInstallType"), "4"),
        "%s: ddb.toolsInstallType not kept", w);
  CHECK(str_eq(ddb_value(d, "ddb.virtualHWVersion"), "8"),
        "%s: ddb.virtualHWVersion", w);
  /* No value may keep a CR or a trailing blank. */
  for (size_t i = 0; i < d->n_ddb; i++) {
    size_t n = strlen(d->ddb[i].value);
    CHECK(n == 0 ||
              (d->ddb[i].value[n - 1] != ' ' && d->ddb[i].value[n - 1] != '\r'),
          "%s: %s value \"%s\" ends with a blank or CR", w, d->ddb[i].key,
          d->ddb[i].value);
  }
  for (size_t i = 0; i < d->n_header; i++)
    CHECK(strchr(d->header[i].value, '\r') == NULL &&
              strchr(d->header[i].key, '\r') == NULL,
          "%s: header %s keeps a CR", w, d->header[i].key);
}

/* Same text with CRLF line endings. */
static char *to_crlf(const char *s, size_t *len) {
  size_t n = strlen(s), lines = 0;
  for (size_t i = 0; i < n; i++)
    lines += s[i] == '\n';
  char *out = malloc(n + lines + 1), *p = out;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\n')
      *p++ = '\r';
    *p++ = s[i];
  }
  *p = 0;
  *len = (size_t)(p - out);
  return out;
}

static void test_vmware(void) {
  struct descriptor *d =
      desc_parse(vmware_desc, strlen(vmware_desc), "vmware.vmdk");
  if (CHECK(d != NULL, "vmware descriptor: parse failed: %s",
            vmdk_get_error())) {
    check_vmware(d, "vmware descriptor");
    round_trip(d, "vmware descriptor");
    /* The printed text must keep the unknown keys (not only the struct). */
    size_t len;
    char *t = desc_print(d, &len);
    if (t) {
      static const char *const must[] = {"encoding",
                                         "UTF-8",
                                         "isNativeSnapshot",
                                         "ddb.uuid.image",
                                         "ddb.longContentID",
                                         "ddb.toolsInstallType",
                                         "NOACCESS",
                                         "RDONLY",
                                         "ZERO"};
      for (size_t i = 0; i < sizeof must / sizeof *must; i++)
        CHECK(strstr(t, must[i]) != NULL, "vmware reprint lost \"%s\":\n%s",
              must[i], t);
    }
    free(t);
    desc_free(d);
  }

  size_t len;
  char *crlf = to_crlf(vmware_desc, &len);
  d = desc_parse(crlf, len, "crlf.vmdk");
  if (CHECK(d != NULL, "CRLF descriptor: parse failed: %s", vmdk_get_error())) {
    check_vmware(d, "CRLF descriptor");
    round_trip(d, "CRLF descriptor");
    desc_free(d);
  }
  free(crlf);

  /* The other first-line variants VirtualBox accepts, and none at all. */
  static const char *const firsts[] = {
      "# Disk DescriptorFile\n", "#Disk Descriptor File\n",
      "#Disk DescriptorFile\n", "# disk descriptorfile\n", ""};
  for (size_t i = 0; i < sizeof firsts / sizeof *firsts; i++) {
    char text[2048];
    snprintf(text, sizeof text,
             "%sversion=1\nCID=00000001\nparentCID=ffffffff\n"
             "createType=\"monolithicFlat\"\nRW 8 FLAT \"x-flat.vmdk\" 0\n",
             firsts[i]);
    d = desc_parse(text, strlen(text), "first.vmdk");
    if (CHECK(d != NULL, "first line \"%s\": parse failed: %s", firsts[i],
              vmdk_get_error())) {
      CHECK_STR(d->create_type, "monolithicFlat");
      CHECK_U64(d->cid, 1);
      round_trip(d, "first-line variant");
      desc_free(d);
    }
  }
}

/* Keys are not case-sensitive (the spec); whitespace around '=' is allowed;
 * values may be bare. */
static void test_case_insensitive(void) {
  static const char text[] = "# Disk DescriptorFile\n"
                             "VERSION = 1\n"
                             "cid=0000abcd\n"
                             "PARENTCID = ffffffff\n"
                             "createtype = monolithicSparse\n"
                             "rw 2048 sparse \"disk.vmdk\"\n"
                             "DDB.adapterType=\"buslogic\"\n";
  struct descriptor *d = desc_parse(text, strlen(text), "case.vmdk");
  if (!CHECK(d != NULL, "case-insensitive keys: parse failed: %s",
             vmdk_get_error()))
    return;
  CHECK_U64(d->version, 1);
  CHECK_U64(d->cid, 0xabcd);
  CHECK_U64(d->parent_cid, NO_CID);
  CHECK_STR(d->create_type, "monolithicSparse");
  CHECK_U64(d->n_extents, 1);
  check_extent(d, 0, ACC_RW, 2048, EXT_SPARSE, "disk.vmdk", false, 0,
               "lower-case extent");
  CHECK_STR(desc_get_ddb(d, "ddb.adapterType"), "buslogic");
  round_trip(d, "case-insensitive keys");
  desc_free(d);

  /* A delta link: parentFileNameHint kept. */
  static const char child[] =
      "# Disk DescriptorFile\nversion=1\nCID=11111111\nparentCID=22222222\n"
      "createType=\"monolithicSparse\"\n"
      "parentFileNameHint=\"../base dir/base.vmdk\"\n"
      "RW 2048 SPARSE \"child.vmdk\"\n";
  d = desc_parse(child, strlen(child), "child.vmdk");
  if (CHECK(d != NULL, "child: parse failed: %s", vmdk_get_error())) {
    CHECK_U64(d->parent_cid, 0x22222222);
    CHECK_STR(d->parent_hint, "../base dir/base.vmdk");
    round_trip(d, "child descriptor");
    desc_free(d);
  }
}

/* Parsing stops at the first NUL: whatever follows (here a line that would
 * be an error) is padding of an embedded descriptor. */
static void test_nul(void) {
  static const char head[] =
      "# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"
      "parentCID=ffffffff\ncreateType=\"monolithicSparse\"\n"
      "RW 2048 SPARSE \"x.vmdk\"\n"
      "ddb.adapterType = \"ide\"\n";
  static const char tail[] = "RW -5 BOGUS\ncreateType=\"twoGbMaxExtentFlat\"\n"
                             "ddb.after = \"nul\"\n";
  char buf[10240];
  memset(buf, 0, sizeof buf);
  memcpy(buf, head, sizeof head - 1);
  /* one NUL, then garbage, then NUL padding like a 20-sector descriptor */
  memcpy(buf + sizeof head, tail, sizeof tail - 1);
  struct descriptor *d = desc_parse(buf, sizeof buf, "nul.vmdk");
  if (!CHECK(d != NULL, "text with NUL: parse failed: %s", vmdk_get_error()))
    return;
  CHECK_STR(d->create_type, "monolithicSparse");
  CHECK_U64(d->n_extents, 1);
  CHECK_U64(d->n_ddb, 1);
  CHECK(desc_get_ddb(d, "ddb.after") == NULL,
        "a key after the first NUL was parsed");
  round_trip(d, "text with NUL");
  desc_free(d);
}

static void test_looks_like(void) {
  CHECK(desc_looks_like((const uint8_t *)qemu_desc, strlen(qemu_desc)),
        "desc_looks_like(qemu descriptor) is false");
  CHECK(desc_looks_like((const uint8_t *)vmware_desc, strlen(vmware_desc)),
        "desc_looks_like(vmware descriptor) is false");
  static const uint8_t kdmv[16] = {'K', 'D', 'M', 'V', 1, 0, 0, 0, 3};
  CHECK(!desc_looks_like(kdmv, sizeof kdmv), "desc_looks_like(KDMV) is true");
  uint8_t zeros[512] = {0};
  CHECK(!desc_looks_like(zeros, sizeof zeros),
        "desc_looks_like(512 zero bytes) is true");
  static const char mbr[] = "\xeb\x63\x90\x10\x8e\xd0\xbc\x00\xb0\xb8\x00\x00"
                            "\x8e\xd8\x8e\xc0\xfb\xbe\x00\x7c\xbf\x00\x06";
  CHECK(!desc_looks_like((const uint8_t *)mbr, sizeof mbr - 1),
        "desc_looks_like(boot sector) is true");
}

/* ---- errors ------------------------------------------------------------ */

/* Parse TEXT (LEN bytes, or strlen when 0) expecting failure, with an error
 * message that names the file and contains one of the NULL-terminated
 * needles. */
static void expect_error(const char *what, const char *text, size_t len,
                         const char *needle1, const char *needle2) {
  if (!len)
    len = strlen(text);
  struct descriptor *d = desc_parse(text, len, "broken.desc");
  const char *msg = vmdk_get_error();
  if (!CHECK(d == NULL,
             "%s: desc_parse succeeded (createType \"%s\", %zu "
             "extents)",
             what, d ? d->create_type : "", d ? d->n_extents : 0)) {
    desc_free(d);
    return;
  }
  CHECK(t_contains_ci(msg, "broken.desc"),
        "%s: error does not name the file: \"%s\"", what, msg);
  CHECK(t_mentions_any(msg, needle1, needle2, (char *)NULL),
        "%s: error \"%s\" mentions neither \"%s\" nor \"%s\"", what, msg,
        needle1, needle2 ? needle2 : needle1);
  CHECK(vmdk_get_errno() != 0, "%s: errno not set (message \"%s\")", what, msg);
}

#define HDR                                                                    \
  "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"

static void test_errors(void) {
  expect_error("no createType", HDR "RW 2048 SPARSE \"x.vmdk\"\n", 0,
               "createType", NULL);
  expect_error("empty text", "", 1, "createType", "descriptor");
  expect_error("garbage",
               "\x7f"
               "ELF\x02\x01\x01 binary junk \xff\xfe\n",
               0, "line 1", "descriptor");
  expect_error("garbage lines", "this is not a descriptor\nneither is this\n",
               0, "line 1", "descriptor");
  expect_error("negative extent size",
               HDR "createType=\"monolithicFlat\"\nRW -2048 FLAT \"x\" 0\n", 0,
               "extent", "line 6");
  expect_error("overflowing extent size",
               HDR "createType=\"monolithicFlat\"\n"
                   "RW 99999999999999999999999 FLAT \"x\" 0\n",
               0, "extent", "line 6");
  expect_error("extent size not a number",
               HDR "createType=\"monolithicFlat\"\nRW 12abc FLAT \"x\" 0\n", 0,
               "extent", "line 6");
  /* 2^55 sectors = 2^64 bytes: does not fit a byte offset. */
  expect_error("huge sector count",
               HDR "createType=\"monolithicFlat\"\n"
                   "RW 36028797018963968 FLAT \"x\" 0\n",
               0, "extent", "line 6");
  expect_error("largest sector count",
               HDR "createType=\"monolithicFlat\"\n"
                   "RW 18446744073709551615 FLAT \"x\" 0\n",
               0, "extent", "line 6");
  expect_error("negative extent offset",
               HDR "createType=\"monolithicFlat\"\nRW 2048 FLAT \"x\" -1\n", 0,
               "offset", "extent");
  expect_error("extent offset overflowing",
               HDR "createType=\"monolithicFlat\"\n"
                   "RW 2048 FLAT \"x\" 36028797018963968\n",
               0, "offset", "extent");
  expect_error("unterminated file name",
               HDR "createType=\"monolithicFlat\"\nRW 2048 FLAT \"x 0\n", 0,
               "quote", "extent");
  expect_error("FLAT without a file name",
               HDR "createType=\"monolithicFlat\"\nRW 2048 FLAT\n", 0,
               "file name", "extent");
  expect_error("bad CID",
               HDR "CID=xyz\ncreateType=\"monolithicFlat\"\n"
                   "RW 2048 FLAT \"x\" 0\n",
               0, "CID", NULL);
}

/* Each extent fits, their sum (2^64 bytes) does not: the disk made of
 * them (ZERO extents, so no files are needed) is refused at open. */
static void test_extent_sum(void) {
  static const char text[] = HDR "createType=\"custom\"\n"
                                 "RW 18014398509481984 ZERO\n"
                                 "RW 18014398509481984 ZERO\n";
  t_tmpdir("descriptor");
  const char *path = t_path("sum.vmdk");
  if (!CHECK(t_write_file(path, text, sizeof text - 1) == 0, "write %s", path))
    return;
  struct vmdk_disk *d = vmdk_open(path, 0);
  const char *msg = vmdk_get_error();
  if (CHECK(d == NULL, "extents summing to 2^64 bytes: opened, size %" PRIu64,
            vmdk_get_size(d)))
    CHECK(t_contains_ci(msg, "sum.vmdk") && t_contains_ci(msg, "extent"),
          "extents summing to 2^64 bytes: error \"%s\"", msg);
  vmdk_close(d);
}

int main(void) {
  test_qemu();
  test_vmware();
  test_case_insensitive();
  test_nul();
  test_looks_like();
  test_errors();
  test_extent_sum();
  if (!t_failures)
    printf("descriptor tests passed\n");
  return t_exit_code();
}
