# SPDX-License-Identifier: BSD-3-Clause
"""create/convert/compare/commit/rebase/resize, info/map/check: checked with
qemu-img and against what the vmdkit CLI prints for the same image."""
import os
import subprocess

import pytest
import vmdkit

from conftest import MiB, cli, cli_json, need, qemu_img, qemu_read


@pytest.fixture
def sparse(tmp_path, raw16):
    raw, data = raw16
    img = tmp_path / "disk.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, img)
    return img, data


def test_info_equals_the_cli(sparse, tmp_path):
    img, _ = sparse
    child = tmp_path / "child.vmdk"
    qemu_img("create", "-f", "vmdk", "-b", "disk.vmdk", "-F", "vmdk", child)
    for path in (img, child):
        with vmdkit.open(path) as d:
            assert d.info() == cli_json("info", path)


def test_map_equals_the_cli(sparse, tmp_path):
    img, data = sparse
    child = tmp_path / "child.vmdk"
    qemu_img("create", "-f", "vmdk", "-b", "disk.vmdk", "-F", "vmdk", child)
    subprocess.run(["qemu-io", "-f", "vmdk", "-c", "write -P 7 2M 256k",
                    str(child)], check=True, stdout=subprocess.DEVNULL)
    with vmdkit.open(child) as d:
        runs = list(d.map())
        theirs = cli_json("map", child)
        ours = [{"start": r.offset, "length": r.length, "depth": r.depth,
                 "data": r.type == "data"} for r in runs]
        assert ours == [{k: t[k] for k in ("start", "length", "depth", "data")}
                        for t in theirs]
        for r, t in zip(runs, theirs):
            assert r.file_offset == t.get("offset")
            assert (r.type != "hole") == t["present"]
            if r.type == "data":
                assert r.file is not None
        # the runs tile the disk, and a part of it
        assert runs[0].offset == 0
        assert sum(r.length for r in runs) == d.size
        part = list(d.map(3 * MiB + 5, MiB))
        assert part[0].offset == 3 * MiB + 5
        assert sum(r.length for r in part) == MiB
        # data runs hold what qemu-img reads there; others read zeros
        expect = qemu_read(child)
        for r in runs:
            if r.type != "data" and r.depth == 0:
                assert d.pread(r.length, r.offset) == bytes(r.length)
            assert d.pread(r.length, r.offset) == expect[r.offset:r.offset + r.length]


def test_check_and_repair_equal_the_cli(sparse, tmp_path):
    img, _ = sparse
    with vmdkit.open(img) as d:
        report = d.check()
    theirs = cli_json("check", img)
    assert {k: report[k] for k in theirs} == theirs
    assert report["problems"] == []
    # a leak: space at the end of the file no table points at
    leaky = tmp_path / "leaky.vmdk"
    leaky.write_bytes(img.read_bytes() + os.urandom(65536))
    with vmdkit.open(leaky) as d:
        r = d.check()
        assert r["leaks"] == 1 and r["corruptions"] == 0
        assert r["problems"][0]["kind"] == "leak"
        assert str(leaky) in r["problems"][0]["message"]
    with vmdkit.open(leaky, "r+") as d:
        r = d.check(repair="leaks")
        assert r["leaks-fixed"] == 1 and r["leaks"] == 0
        assert r["repairs"] and r["repairs"][0]["kind"] == "leak"
    qemu_img("check", leaky)
    assert qemu_read(leaky) == qemu_read(img)


def test_check_refuses_a_qemu_format(tmp_path):
    need("qemu-nbd")
    q = tmp_path / "q.qcow2"
    qemu_img("create", "-f", "qcow2", q, "1M")
    with vmdkit.open(q) as d:
        assert d.info()["format"] == "qcow2"
        with pytest.raises(vmdkit.Error) as e:
            d.check()
        assert "qemu-img check" in e.value.message


def test_resize(sparse):
    img, data = sparse
    with vmdkit.open(img, "r+") as d:
        d.resize(len(data) + 5 * MiB)
        assert d.size == len(data) + 5 * MiB
        assert d.pread(5 * MiB, len(data)) == bytes(5 * MiB)
    assert qemu_read(img) == data + bytes(5 * MiB)
    with vmdkit.open(img, "r+") as d:
        with pytest.raises(vmdkit.Error):
            d.resize(MiB)  # data would be cut off
        d.resize(len(data), shrink=True)
    assert qemu_read(img) == data


@pytest.mark.parametrize("fmt,subformat", [
    ("vmdk", None), ("vmdk", "streamOptimized"), ("vmdk", "twoGbMaxExtentFlat"),
    ("raw", None), ("qcow2", None), ("vhdx", None), ("vdi", None)])
def test_convert_checked_by_qemu(tmp_path, sparse, fmt, subformat):
    img, data = sparse
    if fmt not in ("vmdk", "raw"):
        need("qemu-nbd")
    out = tmp_path / ("out." + fmt)
    seen = []
    vmdkit.convert(img, out, format=fmt, subformat=subformat,
                   progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] == len(data)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    qemu_img("compare", "-f", "vmdk", "-F", fmt, img, out)
    assert qemu_read(out, fmt) == data


def test_convert_from_qcow2_and_from_an_open_disk(tmp_path, raw16):
    need("qemu-nbd")
    raw, data = raw16
    q = tmp_path / "in.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, q)
    out = tmp_path / "app.vmdk"
    vmdkit.convert(q, out, subformat="streamOptimized")
    assert qemu_read(out) == data
    with vmdkit.open(out) as d:
        vmdkit.convert(d, tmp_path / "again.vmdk")
        assert d.read(10) == data[:10]  # still open, still usable
    assert qemu_read(tmp_path / "again.vmdk") == data


def test_convert_cancelled_by_an_exception_leaves_nothing(tmp_path, sparse):
    img, _ = sparse
    out = tmp_path / "cut.vmdk"

    class Stop(Exception):
        pass

    def progress(done, total):
        if done > 0:
            raise Stop()
    with pytest.raises(Stop):
        vmdkit.convert(img, out, subformat="twoGbMaxExtentSparse",
                       progress=progress)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cut")) == []


def test_convert_refuses_to_overwrite_its_source(sparse):
    img, _ = sparse
    before = img.read_bytes()
    with pytest.raises(vmdkit.Error) as e:
        vmdkit.convert(img, img)
    assert e.value.message
    assert img.read_bytes() == before


def test_compare(tmp_path, sparse):
    img, data = sparse
    raw = tmp_path / "copy.raw"
    raw.write_bytes(data)
    r = vmdkit.compare(img, raw)
    assert r == {"identical": True, "difference": None, "offset": None,
                 "size_differs": False}
    changed = bytearray(data)
    changed[1234567] ^= 0xFF
    raw.write_bytes(bytes(changed))
    r = vmdkit.compare(img, raw)
    assert r["identical"] is False and r["difference"] == "content"
    assert r["offset"] == 1234567
    # qemu-img names the sector holding that byte
    p = subprocess.run(["qemu-img", "compare", str(img), str(raw)],
                       stdout=subprocess.PIPE)
    assert p.returncode == 1
    assert b"offset %d!" % (1234567 // 512 * 512) in p.stdout
    # sizes: a longer raw that reads zeros past the end is identical unless strict
    raw.write_bytes(data + bytes(MiB))
    assert vmdkit.compare(img, raw)["identical"] is True
    assert vmdkit.compare(img, raw)["size_differs"] is True
    r = vmdkit.compare(img, raw, strict=True)
    assert r["identical"] is False and r["difference"] == "size"
    with vmdkit.open(img) as d:
        assert vmdkit.compare(d, d)["identical"] is True


def test_commit_and_rebase(tmp_path, raw16):
    raw, data = raw16
    base = tmp_path / "base.vmdk"
    child = tmp_path / "child.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, base)
    qemu_img("create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", child)
    subprocess.run(["qemu-io", "-f", "vmdk", "-c", "write -P 0x42 5M 300k",
                    str(child)], check=True, stdout=subprocess.DEVNULL)
    expect = qemu_read(child)
    # rebase onto nothing, safely: the child keeps reading the same
    flat = tmp_path / "flat.vmdk"
    flat.write_bytes(child.read_bytes())
    vmdkit.rebase(flat, None)
    assert qemu_read(flat) == expect
    assert "backing-filename" not in cli_json("info", flat)
    # commit: the base then reads what the child did
    seen = []
    vmdkit.commit(child, progress=lambda d, t: seen.append(d))
    assert seen
    assert qemu_read(base) == expect
    qemu_img("check", base)
    # unsafe rebase rewrites only the link
    other = tmp_path / "other.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, other)
    vmdkit.rebase(child, "other.vmdk", unsafe=True)
    assert cli_json("info", child)["backing-filename"] == "other.vmdk"
