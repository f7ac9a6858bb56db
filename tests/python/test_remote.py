# SPDX-License-Identifier: BSD-3-Clause
"""Remote images from Python: a lighttpd on 127.0.0.1 serves images made by
qemu-img; what vmdkit.open(URL) reads equals what qemu-img reads from the
local files, for a sparse, a split and a streamOptimized image, with Basic
auth given in the URL and by vmdkit.remote_option.  The URL's password is
never in Disk.name or an error."""
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
import vmdkit

from conftest import MiB, qemu_img, qemu_read

LIGHTTPD = shutil.which("lighttpd") or "/usr/sbin/lighttpd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """lighttpd serving a folder (Basic auth on /private/); yields (URL,
    folder)."""
    if not os.access(LIGHTTPD, os.X_OK):
        pytest.skip("lighttpd is not installed")
    if not shutil.which("nbdkit"):
        pytest.skip("nbdkit is not installed")
    root = tmp_path_factory.mktemp("www")
    (root / "private").mkdir()
    users = root.parent / "users"
    users.write_text("pyuser:py-s3cret\n")
    port = free_port()
    conf = root.parent / "lighttpd.conf"
    conf.write_text(
        'server.document-root = "%s"\n'
        'server.bind = "127.0.0.1"\nserver.port = %d\n'
        'server.errorlog = "%s"\n'
        'server.modules = ("mod_auth", "mod_authn_file")\n'
        'auth.backend = "plain"\nauth.backend.plain.userfile = "%s"\n'
        'auth.require = ("/private/" => ("method" => "basic", '
        '"realm" => "vmdkit", "require" => "valid-user"))\n'
        % (root, port, root.parent / "error.log", users))
    p = subprocess.Popen([LIGHTTPD, "-D", "-f", str(conf)])
    url = "http://127.0.0.1:%d" % port
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers (403/404 for the folder)
        except OSError:
            time.sleep(0.1)
    yield url, root
    p.terminate()
    p.wait()


def read_all(d):
    out = bytearray()
    buf = bytearray(5 * MiB + 3)
    while n := d.readinto(buf):
        out += buf[:n]
    return bytes(out)


@pytest.mark.parametrize("subformat", ["monolithicSparse",
                                       "twoGbMaxExtentSparse",
                                       "streamOptimized"])
def test_read_over_http_equals_qemu(server, raw16, subformat):
    url, root = server
    raw, data = raw16
    img = root / ("py-%s.vmdk" % subformat)
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o",
             "subformat=" + subformat, raw, img)
    with vmdkit.open(url + "/" + img.name) as d:
        assert d.size == len(data)
        assert read_all(d) == qemu_read(img)
        d.seek(3 * MiB + 5)
        assert d.read(4097) == data[3 * MiB + 5:3 * MiB + 5 + 4097]


def test_credentials(server, raw16):
    url, root = server
    raw, data = raw16
    img = root / "private" / "split.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o",
             "subformat=twoGbMaxExtentSparse", raw, img)
    host = url[len("http://"):]
    # in the URL: the extent file gets them too; the name never shows them
    with vmdkit.open("http://pyuser:py-s3cret@%s/private/split.vmdk"
                     % host) as d:
        assert "py-s3cret" not in d.name and "pyuser" not in d.name
        assert read_all(d) == data
    vmdkit.remote_options_clear()
    with pytest.raises(vmdkit.Error) as e:
        vmdkit.open(url + "/private/split.vmdk")
    assert "HTTP 401" in str(e.value)
    # by remote_option; a wrong password is not shown in the error
    vmdkit.remote_option("user", "pyuser")
    vmdkit.remote_option("password", "wrong-pw-123")
    with pytest.raises(vmdkit.Error) as e:
        vmdkit.open(url + "/private/split.vmdk")
    assert "wrong-pw-123" not in str(e.value)
    vmdkit.remote_option("password", "py-s3cret")
    try:
        with vmdkit.open(url + "/private/split.vmdk") as d:
            assert read_all(d) == data
    finally:
        vmdkit.remote_options_clear()


def test_bad_options_and_writes(server, raw16):
    url, root = server
    with pytest.raises(ValueError):
        vmdkit.remote_option("connections", "99")
    with pytest.raises(ValueError):
        vmdkit.remote_option("Bad Key", "x")
    raw, _ = raw16
    img = root / "w.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, img)
    before = img.read_bytes()
    with pytest.raises(vmdkit.Error) as e:
        vmdkit.open(url + "/w.vmdk", "r+")
    assert "read-only" in str(e.value)
    assert img.read_bytes() == before
