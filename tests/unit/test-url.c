/* SPDX-License-Identifier: BSD-3-Clause */
/* URLs of remote files (lib/url.c) and the secrets no message may show
 * (lib/error.c): parsing, credentials taken out, a descriptor's file names
 * resolved with the query kept, dot segments (also percent-encoded ones)
 * removed, confinement to the folder, and messages blanked. */
#include "testlib.h"

#include "internal.h"

static void check_resolve(const char *base, const char *name,
                          const char *want) {
  char *got = url_resolve(base, name);
  CHECK(got && strcmp(got, want) == 0, "resolve(%s, %s) = %s, want %s", base,
        name, got ? got : vmdk_get_error(), want);
  free(got);
}

static void test_parse(void) {
  struct url u;
  CHECK(url_parse("https://root:pa%3Ass@esxi.example:8443/folder/VM/a%20b.vmdk"
                  "?dcPath=ha-datacenter&dsName=ds1",
                  &u) == 0,
        "parse: %s", vmdk_get_error());
  CHECK_STR(u.scheme, "https");
  CHECK_STR(u.user, "root");
  CHECK_STR(u.password, "pa:ss");
  CHECK_STR(u.host, "esxi.example");
  CHECK_STR(u.port, "8443");
  CHECK_STR(u.path, "/folder/VM/a%20b.vmdk");
  CHECK_STR(u.query, "dcPath=ha-datacenter&dsName=ds1");
  char *s = url_format(&u);
  CHECK_STR(s, "https://esxi.example:8443/folder/VM/a%20b.vmdk"
               "?dcPath=ha-datacenter&dsName=ds1");
  free(s);
  url_free(&u);

  CHECK(url_parse("file+nbd+unix:///disk.vmdk?socket=/tmp/s", &u) == 0,
        "nbd+unix: %s", vmdk_get_error());
  CHECK(u.kind == URL_NBD, "nbd+unix: kind %d", (int)u.kind);
  CHECK_STR(u.scheme, "nbd+unix");
  s = url_format(&u);
  CHECK_STR(s, "file+nbd+unix:///disk.vmdk?socket=/tmp/s");
  free(s);
  url_free(&u);

  CHECK(url_parse("ssh://me@[::1]:2222/srv/x.vmdk", &u) == 0, "ipv6: %s",
        vmdk_get_error());
  CHECK_STR(u.host, "[::1]");
  CHECK_STR(u.port, "2222");
  url_free(&u);

  /* dot segments, plain and encoded, are gone before anything compares */
  CHECK(url_parse("http://h/a/./b/%2E%2e/c.vmdk", &u) == 0, "dots: %s",
        vmdk_get_error());
  CHECK_STR(u.path, "/a/c.vmdk");
  url_free(&u);

  static const char *const bad[] = {"http://", "http://h", "http://h:x/a",
                                    "http://h:123456/a", "ftp://h/a",
                                    "http://[::1/a"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK(url_parse(bad[i], &u) != 0, "%s parsed", bad[i]);
  CHECK(url_is_remote("HTTPS://h/x") && url_is_remote("file+nbd://h/x") &&
            !url_is_remote("nbd://h/x") && !url_is_remote("/tmp/http://x") &&
            !url_is_remote("disk.vmdk"),
        "url_is_remote");
}

static void test_resolve(void) {
  const char *esxi = "https://esxi/folder/VM/disk.vmdk?dcPath=dc&dsName=ds1";
  check_resolve(esxi, "disk-flat.vmdk",
                "https://esxi/folder/VM/disk-flat.vmdk?dcPath=dc&dsName=ds1");
  check_resolve(esxi, "../base/base.vmdk",
                "https://esxi/folder/base/base.vmdk?dcPath=dc&dsName=ds1");
  /* a name is a file name: bytes a URL would read otherwise are encoded */
  check_resolve("http://h/d/a.vmdk", "my disk#1?.vmdk",
                "http://h/d/my%20disk%231%3F.vmdk");
  check_resolve("http://h/d/a.vmdk", "http://evil/x", "http://h/d/http://evil/x");
  check_resolve("http://h/d/a.vmdk", "%2e%2e/x", "http://h/d/%252e%252e/x");
  check_resolve("http://h/d/a.vmdk", "/etc/passwd", "http://h/etc/passwd");
  check_resolve("http://h/a.vmdk", "../../../x", "http://h/x");
  check_resolve("ssh://h:22/srv/vm/a.vmdk", "a-s001.vmdk",
                "ssh://h:22/srv/vm/a-s001.vmdk");
}

static void test_confine(void) {
  char *f = url_folder("https://esxi/folder/VM/disk.vmdk?dcPath=dc");
  CHECK_STR(f, "https://esxi/folder/VM/");
  if (f) {
    CHECK(url_inside(f, "https://esxi/folder/VM/disk-flat.vmdk?dcPath=dc"),
          "extent in folder refused");
    CHECK(url_inside(f, "https://esxi/folder/VM/sub/x.vmdk"),
          "subfolder refused");
    CHECK(!url_inside(f, "https://esxi/folder/base.vmdk"), "parent accepted");
    CHECK(!url_inside(f, "https://esxi/folder/VMX/x.vmdk"),
          "sibling with the same prefix accepted");
    CHECK(!url_inside(f, "http://esxi/folder/VM/x.vmdk"), "other scheme");
    CHECK(!url_inside(f, "https://esxi:444/folder/VM/x.vmdk"), "other port");
    CHECK(!url_inside(f, "https://other/folder/VM/x.vmdk"), "other host");
  }
  free(f);
}

static void test_secrets(void) {
  struct url u;
  CHECK(url_parse("https://u:hunter2pw@s3/b/x.ova?X-Amz-Credential=CRED123"
                  "&X-Amz-Signature=SIG456789&versionId=7",
                  &u) == 0,
        "presigned: %s", vmdk_get_error());
  url_register_secrets(&u);
  url_free(&u);
  set_error(EIO, "open https://s3/b/x.ova?X-Amz-Credential=CRED123&"
                 "X-Amz-Signature=SIG456789&versionId=7 as u:hunter2pw");
  const char *m = vmdk_get_error();
  CHECK(!strstr(m, "CRED123") && !strstr(m, "SIG456789") &&
            !strstr(m, "hunter2pw") && strstr(m, "versionId=7") &&
            strstr(m, "(secret)"),
        "scrubbed: %s", m);
  CHECK(vmdk_remote_option("cookie", "vmware_soap_session=\"COOKIE77\"") == 0,
        "cookie: %s", vmdk_get_error());
  CHECK(vmdk_remote_option("header", "Authorization: Bearer TOKEN88") == 0,
        "header: %s", vmdk_get_error());
  set_error(EIO, "x TOKEN88 y vmware_soap_session=\"COOKIE77\" z");
  m = vmdk_get_error();
  CHECK(!strstr(m, "TOKEN88") && !strstr(m, "COOKIE77"), "scrubbed: %s", m);
  /* a message that would overflow keeps its end off, not the secret on */
  char big[1100];
  memset(big, 'a', sizeof big);
  memcpy(big + 1015, "TOKEN88", 7);
  big[sizeof big - 1] = '\0';
  set_error(EIO, "%s", big);
  CHECK(!strstr(vmdk_get_error(), "TOKEN8") && !strstr(vmdk_get_error(), "TOK"),
        "a secret cut at the end of a long message survived");
  CHECK(vmdk_remote_option("connections", "0") != 0 &&
            vmdk_remote_option("connections", "17") != 0 &&
            vmdk_remote_option("Bad", "1") != 0 &&
            vmdk_remote_option("password", "-") != 0 &&
            vmdk_remote_option("url", "http://x/") != 0 &&
            vmdk_remote_option("readahead", "64M") == 0 &&
            vmdk_remote_option("confine", "no") == 0 &&
            vmdk_remote_option("filter", "de;lay") != 0,
        "option validation");
  vmdk_remote_options_clear();
}

int main(void) {
  test_parse();
  test_resolve();
  test_confine();
  test_secrets();
  if (!t_failures)
    printf("url tests passed\n");
  return t_exit_code();
}
