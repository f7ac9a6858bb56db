# SPDX-License-Identifier: BSD-3-Clause
"""Every subformat and chains: the bytes the module reads equal qemu-img's
and libvmdk's own binding's (pyvmdk); the bytes it writes are read back by
qemu-img."""
import pytest
import vmdkit

from conftest import MiB, cli, qemu_img, qemu_read

QEMU_SUBFORMATS = ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
                   "twoGbMaxExtentFlat", "streamOptimized"]
ALL_SUBFORMATS = QEMU_SUBFORMATS + ["vmfs"]


def make(tmp_path, raw, subformat):
    """The raw image RAW in SUBFORMAT: made by qemu-img, or by the vmdkit
    CLI for layouts qemu-img does not make (vmfs)."""
    img = tmp_path / ("%s.vmdk" % subformat)
    if subformat in QEMU_SUBFORMATS:
        qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o",
                 "subformat=" + subformat, raw, img)
    else:
        cli("convert", "-f", "raw", "-O", "vmdk", "-o",
            "subformat=" + subformat, raw, img)
    return img


def read_all(d):
    out = bytearray()
    buf = bytearray(3 * MiB + 17)  # odd size: chunks across grains
    while n := d.readinto(buf):
        out += buf[:n]
    return bytes(out)


@pytest.mark.parametrize("subformat", ALL_SUBFORMATS)
def test_read_equals_qemu(tmp_path, raw16, subformat):
    raw, data = raw16
    img = make(tmp_path, raw, subformat)
    theirs = qemu_read(img)
    assert theirs == data
    with vmdkit.open(img) as d:
        assert d.size == len(data)
        assert read_all(d) == theirs
        assert d.info()["format-specific"]["data"]["create-type"] == subformat


@pytest.mark.parametrize("subformat", QEMU_SUBFORMATS)
def test_read_equals_pyvmdk(tmp_path, raw16, subformat):
    pyvmdk = pytest.importorskip("pyvmdk")
    raw, data = raw16
    img = make(tmp_path, raw, subformat)
    h = pyvmdk.handle()
    h.open(str(img))
    h.open_extent_data_files()
    try:
        size = h.get_media_size()
        with vmdkit.open(img) as d:
            assert d.size == size
            off = 0
            while off < size:
                n = min(MiB, size - off)
                assert d.pread(n, off) == h.read_buffer_at_offset(n, off), off
                off += n
    finally:
        h.close()


@pytest.mark.parametrize("subformat", ["monolithicSparse", "monolithicFlat",
                                       "twoGbMaxExtentSparse",
                                       "twoGbMaxExtentFlat", "vmfs", "raw"])
def test_write_is_read_back_by_qemu(tmp_path, raw16, subformat):
    raw, data = raw16
    img = tmp_path / ("w-%s.img" % subformat)
    with vmdkit.create(img, len(data), subformat=subformat) as d:
        # out of order, odd sizes, across grain and extent boundaries
        for off in range(0, len(data), 5 * MiB + 4097):
            d.pwrite(data[off:off + 5 * MiB + 4097], off)
    fmt = "raw" if subformat == "raw" else "vmdk"
    assert qemu_read(img, fmt) == data
    if fmt == "vmdk":
        qemu_img("check", img)


def test_stream_optimized_written_front_to_back(tmp_path, raw16):
    raw, data = raw16
    img = tmp_path / "s.vmdk"
    with vmdkit.create(img, len(data), subformat="streamOptimized",
                       compression_level=1) as d:
        for off in range(0, len(data), MiB):
            assert d.write(data[off:off + MiB]) == MiB
    assert qemu_read(img) == data
    qemu_img("check", img)


def test_chain_reads_through_layers(tmp_path, raw16):
    raw, data = raw16
    base = tmp_path / "base.vmdk"
    child = tmp_path / "child.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, base)
    qemu_img("create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", child)
    qemu_img_io = ["qemu-io", "-f", "vmdk", "-c", "write -P 0x5a 1M 64k",
                   "-c", "write -z 4M 128k", str(child)]
    import subprocess
    subprocess.run(qemu_img_io, check=True, stdout=subprocess.DEVNULL)
    expect = qemu_read(child)
    with vmdkit.open(child) as d:
        assert d.read() == expect
        b = d.backing
        assert b is not None and b.name == str(base)
        assert b.mode == "r" and not b.writable()
        assert b.read() == data
        assert b.backing is None
        depths = {r.depth for r in d.map()}
        assert depths == {0, 1}
        info = d.info()
        assert info["backing-filename"] == "base.vmdk"
        assert info["full-backing-filename"] == str(base)
        assert info["backing-filename-format"] == "vmdk"
    # a layer reads as closed once its image is closed
    assert b.closed
    for call in (lambda: b.read(1), lambda: b.tell(), lambda: b.flush(),
                 lambda: b.readable()):
        with pytest.raises(ValueError):
            call()


def test_create_child_over_backing(tmp_path, raw16):
    raw, data = raw16
    base = tmp_path / "base.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, base)
    child = tmp_path / "c.vmdk"
    with vmdkit.create(child, backing="base.vmdk") as d:
        assert d.size == len(data)
        d.pwrite(b"\xee" * 512, 512)
    expect = bytearray(data)
    expect[512:1024] = b"\xee" * 512
    assert qemu_read(child) == bytes(expect)
    assert qemu_img("info", "--output=json", child).count(b"base.vmdk") >= 1
