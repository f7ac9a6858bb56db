# SPDX-License-Identifier: BSD-3-Clause
"""vmdkit.Disk as a binary file object: what io, shutil and hashlib expect,
checked against the bytes qemu-img reads; errors and misuse; threads."""
import errno
import hashlib
import io
import os
import shutil
import threading

import pytest
import vmdkit

from conftest import MiB, qemu_img, qemu_read


@pytest.fixture
def sparse(tmp_path, raw16):
    """(path, bytes): a monolithicSparse image made by qemu-img."""
    raw, data = raw16
    img = tmp_path / "disk.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, img)
    assert qemu_read(img) == data
    return img, data


def test_is_a_raw_file_object(sparse):
    img, data = sparse
    with vmdkit.open(img) as d:
        assert isinstance(d, io.RawIOBase)
        assert isinstance(d, io.IOBase)
        assert d.readable() and d.seekable() and not d.writable()
        assert d.size == len(data)
        assert d.name == str(img)
        assert d.mode == "r"
        assert not d.closed
        assert d.read() == data
        assert d.tell() == len(data)
        assert d.read(10) == b""
    assert d.closed


def test_copyfileobj_and_hashlib(sparse):
    img, data = sparse
    out = io.BytesIO()
    with vmdkit.open(str(img)) as d:
        shutil.copyfileobj(d, out, 1 * MiB)
    assert out.getvalue() == data
    h = hashlib.sha256()
    buf = bytearray(MiB)
    with vmdkit.open(os.fspath(img)) as d:
        while n := d.readinto(buf):
            h.update(memoryview(buf)[:n])
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


def test_buffered_reader_and_partial_reads(sparse):
    img, data = sparse
    size = len(data)
    with vmdkit.open(img) as d:
        r = io.BufferedReader(d, buffer_size=65536)
        assert r.read(1000) == data[:1000]
        r.seek(size - 100)
        assert r.read(4096) == data[-100:]
        assert r.read(1) == b""
        # raw: a read past the end is short, then empty
        d.seek(size - 10)
        assert d.read(4096) == data[-10:]
        assert d.read(4096) == b""
        buf = bytearray(50)
        d.seek(size - 20)
        assert d.readinto(buf) == 20
        assert bytes(buf[:20]) == data[-20:]
        assert d.readinto(buf) == 0
        # seeking past the end is allowed; reads there are empty
        assert d.seek(10, io.SEEK_END) == size + 10
        assert d.read(5) == b""
        assert d.seek(-5, io.SEEK_CUR) == size + 5
        with pytest.raises(ValueError):
            d.seek(-1)
        # readinto fills any writable buffer: memoryview slices, array
        mv = memoryview(bytearray(4096))
        d.seek(12345)
        assert d.readinto(mv[100:612]) == 512
        assert bytes(mv[100:612]) == data[12345:12857]
        # pread does not move the position
        d.seek(7)
        assert d.pread(300, 1 * MiB + 3) == data[MiB + 3:MiB + 303]
        assert d.pread(300, size - 5) == data[-5:]
        assert d.pread(10, size + 100) == b""
        assert d.tell() == 7


def test_write_and_read_back_with_qemu(tmp_path):
    img = tmp_path / "new.vmdk"
    size = 8 * MiB
    expect = bytearray(size)
    with vmdkit.create(img, size) as d:
        assert d.writable() and d.mode == "r+"
        assert d.write(b"\x11" * 5000) == 5000
        expect[0:5000] = b"\x11" * 5000
        d.seek(3 * MiB + 7)
        blob = os.urandom(200000)
        assert d.write(memoryview(blob)) == len(blob)
        expect[3 * MiB + 7:3 * MiB + 7 + len(blob)] = blob
        assert d.pwrite(b"\x22" * 4096, 6 * MiB) == 4096
        expect[6 * MiB:6 * MiB + 4096] = b"\x22" * 4096
        d.zero(3 * MiB + 100, 1000)
        expect[3 * MiB + 100:3 * MiB + 1100] = bytes(1000)
        # a write across the end is short; past it, ENOSPC
        d.seek(size - 10)
        assert d.write(b"\x33" * 100) == 10
        expect[size - 10:] = b"\x33" * 10
        with pytest.raises(vmdkit.Error) as e:
            d.write(b"x")
        assert e.value.errno == errno.ENOSPC
        d.flush()
    assert qemu_read(img) == bytes(expect)
    qemu_img("check", img)


def test_misuse_raises_the_usual_exceptions(sparse):
    img, _ = sparse
    d = vmdkit.open(img)
    with pytest.raises(io.UnsupportedOperation):
        d.write(b"x")
    with pytest.raises(io.UnsupportedOperation):
        d.pwrite(b"x", 0)
    with pytest.raises(io.UnsupportedOperation):
        d.zero(0, 512)
    with pytest.raises(io.UnsupportedOperation):
        d.resize(1 * MiB)
    with pytest.raises(io.UnsupportedOperation):
        d.check(repair=True)
    with pytest.raises(io.UnsupportedOperation):
        d.fileno()
    d.close()
    d.close()  # twice is fine
    for call in (lambda: d.read(1), lambda: d.readinto(bytearray(1)),
                 lambda: d.seek(0), lambda: d.tell(), lambda: d.flush(),
                 lambda: d.pread(1, 0), lambda: d.info(), lambda: d.size,
                 lambda: list(d.map())):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(TypeError):
        vmdkit.Disk()
    with pytest.raises(ValueError):
        vmdkit.open(img, mode="w")
    with pytest.raises(ValueError):
        vmdkit.open(img, cache="sometimes")
    with pytest.raises(TypeError):
        vmdkit.open(img, nonsense=1)


def test_errors_carry_errno_filename_and_message(tmp_path):
    missing = tmp_path / "missing.vmdk"
    with pytest.raises(vmdkit.Error) as e:
        vmdkit.open(missing)
    assert isinstance(e.value, OSError)
    assert e.value.errno == errno.ENOENT
    assert e.value.filename == str(missing)
    assert str(missing) in e.value.message
    assert "[Errno 2]" in str(e.value)


DAMAGED = {
    # name: (bytes of the file, what the message must mention)
    "short-header.vmdk": (b"KDMV\x01\x00\x00\x00" + bytes(100), None),
    "garbage-descriptor.vmdk": (
        b"# Disk DescriptorFile\nversion=1\nCID=zz\ncreateType=\"monolithicFlat\"\n"
        b"RW 99999999999999999999 FLAT \"nowhere-flat.vmdk\" 0\n", None),
    "flat-missing.vmdk": (
        b"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        b"createType=\"monolithicFlat\"\nRW 2048 FLAT \"nowhere-flat.vmdk\" 0\n",
        "nowhere-flat.vmdk"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_images_raise_a_clear_error(tmp_path, name):
    content, mention = DAMAGED[name]
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(vmdkit.Error) as e:
        vmdkit.open(p, format="vmdk")
    assert e.value.errno
    assert e.value.message and "\n" not in e.value.message
    if mention:
        assert mention in e.value.message
    assert p.read_bytes() == content  # nothing written


def test_damaged_grain_table_reads_fail_cleanly(tmp_path, raw16):
    raw, data = raw16
    img = tmp_path / "gd.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, img)
    blob = bytearray(img.read_bytes())
    # point the first grain directory entry far past the end of the file
    gd = int.from_bytes(blob[56:64], "little") * 512  # gdOffset (sectors)
    blob[gd:gd + 4] = (0x7ffffff0).to_bytes(4, "little")
    rgd = int.from_bytes(blob[48:56], "little") * 512
    blob[rgd:rgd + 4] = (0x7ffffff0).to_bytes(4, "little")
    img.write_bytes(bytes(blob))
    try:
        d = vmdkit.open(img)
    except vmdkit.Error as e:
        assert str(img) in e.message
        return
    with d:
        with pytest.raises(vmdkit.Error) as e:
            d.read()
        assert e.value.errno
        assert e.value.message
        report = d.check()
        assert report["corruptions"] > 0
        assert report["problems"] and report["problems"][0]["kind"] == "corruption"


def test_threads_share_a_disk(sparse):
    img, data = sparse
    errors = []
    with vmdkit.open(img) as d:
        def worker(seed):
            import random
            rnd = random.Random(seed)
            try:
                for _ in range(200):
                    off = rnd.randrange(0, len(data) - 70000)
                    n = rnd.randrange(1, 70000)
                    if d.pread(n, off) != data[off:off + n]:
                        errors.append((off, n))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert errors == []


def test_close_waits_for_another_threads_call(sparse):
    img, data = sparse
    d = vmdkit.open(img)
    done = []

    def reader():
        try:
            for _ in range(50):
                d.pread(len(data), 0)
        except ValueError:
            pass  # closed meanwhile: the usual exception, no crash
        done.append(True)
    t = threading.Thread(target=reader)
    t.start()
    d.close()
    t.join()
    assert done == [True]
