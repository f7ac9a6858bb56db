#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Usage: sectors.py BEFORE AFTER GOT

Every 512-byte sector of GOT must equal the same sector of BEFORE or of
AFTER (the contents before an operation and after it succeeded).  GOT's
length must be BEFORE's or AFTER's; a sector that lies beyond the end of
one model is compared with the other only.

Prints nothing and exits 0 when GOT is fine.  Otherwise prints one line:
how many sectors match neither, the first bad run (sectors A..B) and what
it reads (zeros, a byte repeated, BEFORE's bytes of another sector...), and
exits 1.  Standard library only; reads in chunks.
"""
import os
import sys

SECTOR = 512
CHUNK = 1 << 20


def describe(data, before, after):
    if data == b"\0" * len(data):
        return "reads zeros"
    if data == data[:1] * len(data):
        return "reads 0x%02x repeated" % data[0]
    n = len(data)
    nb = sum(1 for i in range(n) if i < len(before) and data[i] == before[i])
    na = sum(1 for i in range(n) if i < len(after) and data[i] == after[i])
    nz = data.count(0)
    return ("reads other bytes (first sector: %d of %d bytes as before, %d as after, "
            "%d zeros)" % (nb, n, na, nz))


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    paths = argv[1:]
    sizes = [os.path.getsize(p) for p in paths]
    nb, na, ng = sizes
    problems = []
    if ng not in (nb, na):
        problems.append("length %d is neither before's %d nor after's %d" % (ng, nb, na))
    bad = 0
    first = None  # (start sector, end sector, description)
    files = [open(p, "rb") for p in paths]
    try:
        pos = 0
        while pos < ng:
            b, a, g = (f.read(CHUNK) for f in files)
            n = len(g)
            if n == 0:
                break
            if g == b[:n] and len(b) >= n or g == a[:n] and len(a) >= n:
                if first is not None and first[1] is None:
                    first = (first[0], pos // SECTOR - 1, first[2])
                pos += n
                continue
            for s in range(0, n, SECTOR):
                gs = g[s:s + SECTOR]
                bs = b[s:s + SECTOR]
                as_ = a[s:s + SECTOR]
                ok = (len(bs) == len(gs) and gs == bs) or (len(as_) == len(gs) and gs == as_)
                if ok:
                    if first is not None and first[1] is None:
                        first = (first[0], (pos + s) // SECTOR - 1, first[2])
                    continue
                bad += 1
                if first is None:
                    first = ((pos + s) // SECTOR, None, describe(gs, bs, as_))
            pos += n
        if first is not None and first[1] is None:
            first = (first[0], (pos - 1) // SECTOR, first[2])
    finally:
        for f in files:
            f.close()
    if bad:
        problems.append("%d sectors match neither before nor after; first bad run: "
                        "sectors %d..%d (bytes %d..%d) %s"
                        % (bad, first[0], first[1], first[0] * SECTOR,
                           (first[1] + 1) * SECTOR - 1, first[2]))
    if problems:
        print("; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
