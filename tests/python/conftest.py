# SPDX-License-Identifier: BSD-3-Clause
"""Shared helpers of the Python module's tests (tests/python/run.sh runs them).

Every expected byte comes from a peer: images are made and read back with
qemu-img (and qemu-io), or with the vmdkit CLI where qemu cannot make the
layout (vmfs), and compared byte for byte with what the module reads or
wrote.  The raw "truth" files are made here from a fixed seed.
"""
import json
import os
import random
import shutil
import subprocess

import pytest

# In the sanitizer tree run.sh preloads the ASan runtime into Python; the
# peers these tests start (qemu-img, qemu-io, qemu-nbd, the CLI) must not
# inherit it (qemu-img hangs with it preloaded).
os.environ.pop("LD_PRELOAD", None)

MiB = 1 << 20
VMDKIT = os.environ.get("VMDKIT", "vmdkit")


def need(tool):
    if not shutil.which(tool):
        pytest.skip("%s is not installed" % tool)


def run(*cmd, **kw):
    """Run CMD; fail the test with its stderr when it fails."""
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, **kw)
    if p.returncode != 0:
        pytest.fail("%s failed (%d): %s" % (" ".join(map(str, cmd)),
                                            p.returncode,
                                            p.stderr.decode(errors="replace")))
    return p.stdout


def qemu_img(*args):
    need("qemu-img")
    return run("qemu-img", *args)


def cli(*args):
    return run(VMDKIT, *args)


def cli_json(*args):
    return json.loads(cli(*args, "--output=json"))


def pattern_raw(path, size, seed=1):
    """A raw file of SIZE bytes: runs of random data, zero-filled blocks
    and holes, deterministic for SEED.  Returns its bytes."""
    rnd = random.Random(seed)
    data = bytearray(size)
    off = 0
    while off < size:
        n = min(rnd.choice([4096, 65536, 200000, MiB]), size - off)
        kind = rnd.random()
        if kind < 0.5:
            data[off:off + n] = rnd.randbytes(n)
        elif kind < 0.6:
            data[off:off + n] = bytes([rnd.randrange(1, 256)]) * n
        off += n + rnd.choice([0, 512, 65536, 3 * MiB])
    with open(path, "wb") as f:
        f.truncate(size)
        # holes stay holes: write only the non-zero pieces
        for i in range(0, size, 65536):
            piece = data[i:i + 65536]
            if any(piece):
                f.seek(i)
                f.write(piece)
    return bytes(data)


def qemu_read(path, fmt=None):
    """The bytes qemu-img reads from the image PATH."""
    out = str(path) + ".qemu.raw"
    args = ["convert"] + (["-f", fmt] if fmt else []) + ["-O", "raw", path, out]
    qemu_img(*args)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


@pytest.fixture
def raw16(tmp_path):
    """(path, bytes) of a 16 MiB patterned raw image."""
    p = tmp_path / "truth.raw"
    return p, pattern_raw(p, 16 * MiB)
