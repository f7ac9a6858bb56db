#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Build the benchmark workload: a raw disk image holding an ext4 file
system full of real files, like a small cloud image.

    workload.py --out disk.raw --size-bytes N --tree DIR [--seed S]
                [--files-bytes M]

The file system is made by `mkfs.ext4 -d TREE` (no mounting, no root
needed).  TREE gets, by share of the image size:

    ELF binaries      22 %   copies of ELF files from /usr/lib and /usr/share
    text              13 %   copies of text files (source, docs, configs)
    compressed        12 %   copies of .gz/.xz/.bz2/.zst/.png/.jpg/zip files
    random             6 %   incompressible bytes from a seeded generator
    zero files         8 %   all zeros (mkfs leaves their blocks unwritten)

so about half of the file system holds data.  --files-bytes M scales all
five shares by the same factor so that the files add up to about M bytes
(without it: 61 % of the image size).  Candidate files are listed sorted,
then shuffled with a fixed seed, and taken in that order until each share
is full: the same machine always gives the same tree.  All
timestamps are fixed (ctimes with debugfs after mkfs), and so are the file system's UUID and hash seed, and
mkfs's clock (E2FSPROGS_FAKE_TIME).  The first half of the image file is
written with zeros before mkfs (as in a dump of a used disk), the second
half is left as holes; mkfs runs with nodiscard so it keeps both.

Prints one line per class ("class files bytes") on stdout.
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys

ROOTS = ["/usr/lib", "/usr/share"]
SHARES = [  # (class, share of the image size)
    ("elf", 0.22),
    ("text", 0.13),
    ("compressed", 0.12),
    ("random", 0.06),
    ("zero", 0.08),
]
COMPRESSED_MAGIC = [
    b"\x1f\x8b",  # gzip
    b"\xfd7zXZ\x00",  # xz
    b"BZh",  # bzip2
    b"\x28\xb5\x2f\xfd",  # zstd
    b"\x89PNG",  # png
    b"\xff\xd8\xff",  # jpeg
    b"PK\x03\x04",  # zip, jar, whl
]
MAX_FILE = 48 << 20  # larger files are skipped (keeps the mix varied)
PER_DIR = 128  # files per folder of the tree
FIXED_TIME = 1700000000  # 2023-11-14, every timestamp in the tree
FS_UUID = "5eed0000-0000-4000-8000-00000000be4c"
HASH_SEED = "5eed0000-0000-4000-8000-0000000000a5"


def classify(path):
    """'elf', 'compressed', 'text', or None (other binaries, unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError:
        return None
    if head.startswith(b"\x7fELF"):
        return "elf"
    if any(head.startswith(m) for m in COMPRESSED_MAGIC):
        return "compressed"
    if head and b"\0" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            # a multi-byte character cut at the end of HEAD is still text
            try:
                head[:-4].decode("utf-8")
            except UnicodeDecodeError:
                return None
        return "text"
    return None


def candidates():
    """Regular, non-empty files under ROOTS, sorted by path."""
    out = []
    for root in ROOTS:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if os.path.isfile(p) and not os.path.islink(p) and \
                        0 < st.st_size <= MAX_FILE:
                    out.append((p, st.st_size))
    return out


def fill_copies(tree, budgets, seed):
    """Copy files of the classes in BUDGETS (class -> bytes) into TREE.
    Returns class -> [files, bytes]."""
    files = candidates()
    random.Random(seed).shuffle(files)
    left = dict(budgets)
    stats = {k: [0, 0] for k in budgets}
    for i, (path, size) in enumerate(files):
        if all(v < 65536 for v in left.values()):
            break
        if max(left.values()) < size:
            continue
        kind = classify(path)
        if kind not in left or size > left[kind]:
            continue
        # At most PER_DIR entries per folder: mkfs -d slows down
        # quadratically with the size of a folder.
        sub = os.path.join(tree, kind, "%04d" % (stats[kind][0] // PER_DIR))
        os.makedirs(sub, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._+-]", "_", os.path.basename(path))
        dest = os.path.join(sub, "%06d-%s" % (i, name))
        try:
            shutil.copyfile(path, dest)
        except OSError:
            continue
        left[kind] -= size
        stats[kind][0] += 1
        stats[kind][1] += size
    return stats


def fill_generated(tree, kind, budget, rng):
    """Files of 64 KiB .. 8 MiB of random bytes or zeros, BUDGET in all."""
    n = total = 0
    while budget - total >= 4096:
        size = min(budget - total, rng.choice([1, 4, 16, 64, 128]) * 65536)
        path = os.path.join(tree, kind, "%s-%04d.bin" % (kind, n))
        with open(path, "wb") as f:
            if kind == "random":
                f.write(rng.randbytes(size))
            else:
                f.write(bytes(size))
        n += 1
        total += size
    return [n, total]


def fix_times(tree):
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (FIXED_TIME, FIXED_TIME))
    os.utime(tree, (FIXED_TIME, FIXED_TIME))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="raw image to write")
    ap.add_argument("--size-bytes", type=int, required=True)
    ap.add_argument("--tree", required=True, help="scratch folder for the files")
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--files-bytes", type=int,
                    help="files in all, bytes (default: 61%% of the size)")
    a = ap.parse_args()
    if a.size_bytes < 32 << 20 or a.size_bytes % 4096:
        sys.exit("workload.py: --size-bytes must be a multiple of 4096, "
                 "at least 32 MiB")

    if os.path.exists(a.tree):
        shutil.rmtree(a.tree)
    for kind, _ in SHARES:
        os.makedirs(os.path.join(a.tree, kind))
    budgets = {k: int(a.size_bytes * s) for k, s in SHARES}
    if a.files_bytes is not None:
        if not 0 < a.files_bytes <= sum(budgets.values()):
            sys.exit("workload.py: --files-bytes must be positive and at "
                     "most %d" % sum(budgets.values()))
        total = sum(s for _, s in SHARES)
        budgets = {k: int(a.files_bytes * s / total) for k, s in SHARES}
    stats = fill_copies(a.tree, {k: budgets[k] for k in
                                 ("elf", "text", "compressed")}, a.seed)
    rng = random.Random(a.seed)
    stats["random"] = fill_generated(a.tree, "random", budgets["random"], rng)
    stats["zero"] = fill_generated(a.tree, "zero", budgets["zero"], rng)
    fix_times(a.tree)

    # First half: written zeros (allocated); second half: a hole.
    with open(a.out, "wb") as f:
        chunk = bytes(1 << 20)
        half = a.size_bytes // 2
        done = 0
        while done < half:
            n = min(len(chunk), half - done)
            f.write(chunk[:n])
            done += n
        f.truncate(a.size_bytes)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(FIXED_TIME))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "benchroot",
                    "-U", FS_UUID,
                    "-E", "nodiscard,hash_seed=" + HASH_SEED,
                    "-d", a.tree, a.out], check=True, env=env)
    # mkfs -d copies each file's ctime, which is the time of the copy and
    # cannot be set on the host: set them all to FIXED_TIME in the image.
    cmds = ["sif / ctime %d" % FIXED_TIME, "sif /lost+found ctime %d" % FIXED_TIME]
    for dirpath, dirnames, filenames in os.walk(a.tree):
        for name in sorted(dirnames + filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), a.tree)
            cmds.append("sif /%s ctime %d" % (rel, FIXED_TIME))
    subprocess.run(["debugfs", "-w", "-f", "-", a.out], input="\n".join(cmds) + "\n",
                   text=True, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    for kind, _ in SHARES:
        print(kind, stats[kind][0], stats[kind][1])


if __name__ == "__main__":
    main()
