#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Power-cut replay: the states a power cut could leave, checked.

Usage: replay.py [options] SPEC

Input: a FAULT_LOG recorded by tests/fault/shim.c (record format in its top
comment), a pristine copy of the watched folder as it was before the run,
and SPEC, a text file (one directive a line, '#' comments) that says what
the workload did:

  log FILE                    the recording
  watch DIR                   the live folder the workload ran in (the
                              recorded paths lie under it)
  pristine DIR                its copy from before the run
  disk NAME FMT SIZE [from=POS]
                              a virtual disk to verify: image NAME (relative
                              to DIR), format vmdk or raw, SIZE bytes.  With
                              from=POS it is checked only at cuts at or after
                              log position POS (an output that is not
                              expected to exist or be valid before it)
  region NAME OFF LEN         verify only these ranges of NAME's disk
                              (default: all of it)
  reader NAME ARGV...         how to read NAME's regions: a command whose
                              stdout (or the file {out}) is the regions
                              concatenated; {img} is the image path.  The
                              default is VMDKIT read -f FMT {img} OFF LEN, one
                              process per region
  checker NAME RCS ARGV...    a metadata check of NAME that must exit with
                              one of RCS (comma list: 0,3); {img} as above.
                              Default for vmdk disks: VMDKIT check {img} and
                              qemu-img check -f vmdk {img}, both 0 or 3
  op NAME START END OFF LEN PATTERN
                              a write the workload made to NAME's disk, in
                              order: issued by a process launched at log
                              position START, acknowledged (its flush or
                              close returned) at log position END (- when
                              never); PATTERN is byte:N (N repeated),
                              stamp:SEED (each 512-byte sector of the disk
                              holds 32 copies of le64(sector) le64(SEED)),
                              or file:PATH (PATH's bytes at the same offset)

The model.  A cut after record i leaves each file with everything up to
its last sync (fdatasync/fsync of that file) before i, plus any subset of
the 4 KiB pieces written, truncated or punched since, each piece holding
any of its versions since that sync (the newest most often), and the
file's length any of its lengths since that sync.  For every cut point
(all of them, or a sample: every sync and acknowledgement boundary and
evenly spread ones) it checks the state with none of the pending pieces,
the one with all of them, and R random ones (seeded).  Every state is
materialized in a scratch folder and:

  1. every checker exits with an allowed code;
  2. every 512-byte sector of every disk reads a value it had before the
     run or after one of the ops that had started by the cut (the disk
     passed through that state);
  3. every sector written by an op acknowledged by the cut reads the value
     after the newest such op, or after a later started op.

Prints 'LABEL: N states checked, M went wrong' and details of the first
few wrong states; exits 1 if M > 0 (0 with --qemu: a comparison only).
--selftest-drop-syncs replays as if no sync had happened, without the
durability check (which would fail trivially), and exits 0 only if some
state then fails checks 1 or 2: proof that they can see a broken order.

Standard library only (runs under any python3 >= 3.6).
"""
import argparse
import bisect
import json
import os
import random
import re
import shlex
import struct
import subprocess
import sys
import time

PAGE = 4096
SECTOR = 512
HDR = struct.Struct("<IIIIQQII")
MAGIC = 0x52434456
K_WRITE, K_TRUNC, K_FALLOC, K_SYNC, K_OPEN, K_SFR = 1, 2, 3, 4, 5, 6
KIND_NAME = {1: "write", 2: "truncate", 3: "fallocate", 4: "sync",
             5: "open", 6: "sync_file_range"}
FL_KEEP_SIZE, FL_PUNCH, FL_COLLAPSE, FL_ZERO, FL_INSERT = 1, 2, 8, 0x10, 0x20
O_TRUNC = 0o1000
ZEROS = bytes(PAGE)


def die(msg):
    sys.stderr.write("replay: %s\n" % msg)
    sys.exit(2)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


# ---- the log -----------------------------------------------------------------

class Log:
    """Records as parallel lists; payloads stay in the file (pread)."""

    def __init__(self, path, drop_syncs=False):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        self.kind, self.fid, self.off, self.len, self.mode = [], [], [], [], []
        self.data, self.end = [], []
        self.paths = {}
        size = os.fstat(self.fd).st_size
        pos = 0
        with open(path, "rb") as f:
            while pos < size:
                h = f.read(HDR.size)
                if len(h) < HDR.size:
                    die("%s: truncated record at byte %d" % (path, pos))
                magic, kind, fid, _pad, off, ln, mode, plen = HDR.unpack(h)
                if magic != MAGIC or kind not in KIND_NAME:
                    die("%s: bad record at byte %d (magic %#x kind %d)" %
                        (path, pos, magic, kind))
                payload = ln if kind == K_WRITE else plen
                dpos = pos + HDR.size
                if kind == K_OPEN:
                    p = f.read(plen).decode("utf-8", "replace")
                    self.paths.setdefault(fid, p)
                else:
                    f.seek(payload, 1)
                pos = dpos + payload
                if pos > size:
                    die("%s: truncated payload at byte %d" % (path, dpos))
                if drop_syncs and kind == K_SYNC:
                    kind = K_SFR  # as if it never synced anything
                self.kind.append(kind)
                self.fid.append(fid)
                self.off.append(off)
                self.len.append(ln)
                self.mode.append(mode)
                self.data.append(dpos)
                self.end.append(pos)
        self.size = size

    def __len__(self):
        return len(self.kind)

    def payload(self, i, start, n):
        """N payload bytes of write record I from payload offset START."""
        return os.pread(self.fd, n, self.data[i] + start)

    def describe(self, i, names):
        k = self.kind[i]
        name = names.get(self.fid[i], "file#%d" % self.fid[i])
        if k == K_WRITE:
            return "write %s [%d, +%d)" % (name, self.off[i], self.len[i])
        if k == K_TRUNC:
            return "truncate %s to %d" % (name, self.off[i])
        if k == K_FALLOC:
            return "fallocate %s mode %#x [%d, +%d)" % (
                name, self.mode[i], self.off[i], self.len[i])
        if k == K_OPEN:
            return "open %s flags %#o" % (name, self.mode[i])
        return "%s %s" % (KIND_NAME[k], name)


# ---- a file: durable copy in the scratch folder, pending pieces --------------

class File:
    def __init__(self, path, exists):
        self.path = path
        self.fd = None
        self.dlen = 0          # durable length (= the scratch file's length)
        self.cur = 0           # length after every recorded change
        self.events = []       # record indexes since the last sync
        self.pages = {}        # page -> [record indexes touching it]
        self.lens = []         # lengths after size changes since the sync
        self.gen = 0           # bumps at every sync that changed something
        if exists:
            self.fd = os.open(path, os.O_RDWR)
            self.dlen = self.cur = os.fstat(self.fd).st_size

    def create(self):
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self.dlen = self.cur = os.fstat(self.fd).st_size

    def touch(self, i, lo, hi):
        if hi <= lo:
            return
        for p in range(lo // PAGE, (hi - 1) // PAGE + 1):
            self.pages.setdefault(p, []).append(i)

    def record(self, log, i):
        """Record I (not a sync) happened: remember it as pending."""
        k, off, ln, mode = log.kind[i], log.off[i], log.len[i], log.mode[i]
        old = self.cur
        if k == K_OPEN:
            self.create()
            if not mode & O_TRUNC:
                return
            k, off = K_TRUNC, 0
        if k == K_WRITE:
            self.touch(i, off, off + ln)
            self.cur = max(self.cur, off + ln)
        elif k == K_TRUNC:
            if off < self.cur:
                self.touch(i, off, self.cur)
            self.cur = off
        elif k == K_FALLOC:
            if mode & (FL_COLLAPSE | FL_INSERT):
                die("fallocate mode %#x is not modelled" % mode)
            if mode & (FL_PUNCH | FL_ZERO):
                self.touch(i, off, min(off + ln, self.cur))
            if not mode & (FL_KEEP_SIZE | FL_PUNCH):
                self.cur = max(self.cur, off + ln)
        else:
            return
        self.events.append(i)
        if self.cur != old:
            self.lens.append(self.cur)

    def sync(self, log):
        """Make every pending change durable in the scratch copy."""
        if not self.events:
            return
        self.create()
        wlen = self.dlen
        for i in self.events:
            k, off, ln, mode = log.kind[i], log.off[i], log.len[i], log.mode[i]
            if k == K_OPEN:
                k, off = K_TRUNC, 0
            if k == K_WRITE:
                done = 0
                while done < ln:
                    n = min(ln - done, 1 << 22)
                    os.pwrite(self.fd, log.payload(i, done, n), off + done)
                    done += n
                wlen = max(wlen, off + ln)
            elif k == K_TRUNC:
                os.ftruncate(self.fd, off)
                wlen = off
            elif k == K_FALLOC:
                if mode & (FL_PUNCH | FL_ZERO):
                    hi = min(off + ln, wlen)
                    o = off
                    while o < hi:
                        n = min(hi - o, 1 << 20)
                        os.pwrite(self.fd, bytes(n), o)
                        o += n
                if not mode & (FL_KEEP_SIZE | FL_PUNCH) and off + ln > wlen:
                    os.ftruncate(self.fd, off + ln)
                    wlen = off + ln
        assert wlen == self.cur, (self.path, wlen, self.cur)
        self.dlen = self.cur
        self.events, self.pages, self.lens = [], {}, []
        self.gen += 1

    def page_version(self, log, p, v):
        """Page P after the first V pending changes that touch it."""
        pstart = p * PAGE
        buf = bytearray(os.pread(self.fd, PAGE, pstart) if self.fd is not None else b"")
        buf.extend(bytes(PAGE - len(buf)))
        for i in self.pages[p][:v]:
            k, off, ln, mode = log.kind[i], log.off[i], log.len[i], log.mode[i]
            if k == K_OPEN:
                k, off = K_TRUNC, 0
            if k == K_WRITE:
                lo, hi = max(off, pstart), min(off + ln, pstart + PAGE)
                buf[lo - pstart:hi - pstart] = log.payload(i, lo - off, hi - lo)
            elif k == K_TRUNC:
                lo = max(off, pstart)
                buf[lo - pstart:] = bytes(pstart + PAGE - lo)
            elif k == K_FALLOC:
                lo, hi = max(off, pstart), min(off + ln, pstart + PAGE)
                if hi > lo:
                    buf[lo - pstart:hi - pstart] = bytes(hi - lo)
        return bytes(buf)

    def apply(self, log, choice, length):
        """Put the state (CHOICE: page -> version, LENGTH) in the scratch
        copy; returns what undo() needs."""
        self.create()
        contents = [(p, self.page_version(log, p, v)) for p, v in sorted(choice.items())]
        saved = [(p * PAGE, os.pread(self.fd, PAGE, p * PAGE)) for p, _ in contents]
        if length < self.dlen:
            saved.append((length, os.pread(self.fd, self.dlen - length, length)))
        for p, c in contents:
            os.pwrite(self.fd, c, p * PAGE)
        os.ftruncate(self.fd, length)
        return saved

    def undo(self, saved):
        os.ftruncate(self.fd, self.dlen)
        for off, b in saved:
            if b:
                os.pwrite(self.fd, b, off)


# ---- the spec and the expected disk contents ---------------------------------

def pattern_bytes(pat, off, n, cache):
    kind, _, arg = pat.partition(":")
    if kind == "byte":
        return bytes([int(arg, 0)]) * n
    if kind == "stamp":
        seed = int(arg, 0)
        first, last = off // SECTOR, (off + n - 1) // SECTOR
        b = b"".join(struct.pack("<QQ", s, seed) * 32 for s in range(first, last + 1))
        return b[off - first * SECTOR:off - first * SECTOR + n]
    if kind == "file":
        f = cache.get(arg)
        if f is None:
            f = cache[arg] = open(arg, "rb")
        f.seek(off)
        b = f.read(n)
        return b + bytes(n - len(b))
    die("unknown pattern %r" % pat)


class Disk:
    def __init__(self, name, fmt, size, start):
        self.name, self.fmt, self.size, self.start = name, fmt, size, start
        self.regions = []
        self.reader = None
        self.checkers = []
        self.ops = []           # (start, end, off, len, pattern)

    def model(self, before):
        """Split the regions into runs: untouched byte ranges of the
        concatenated read (must equal BEFORE), and groups of sectors touched
        by the same ops, with the group's bytes after each of them."""
        cache = {}
        self.untouched = []
        self.groups = []  # (pos, vdisk off, len, [op idx], [value after op])
        pos = 0
        order = sorted(range(len(self.ops)), key=lambda k: self.ops[k][2])
        starts = [self.ops[k][2] for k in order]
        maxlen = max([op[3] for op in self.ops] or [0])
        for roff, rlen in self.regions:
            # sector-aligned boundaries of every op inside the region
            cuts = {roff, roff + rlen}
            hits = []
            near = order[bisect.bisect_right(starts, roff - maxlen):
                         bisect.bisect_left(starts, roff + rlen)]
            for k in sorted(near):
                _s, _e, off, ln, _p = self.ops[k]
                lo, hi = max(off, roff), min(off + ln, roff + rlen)
                if lo < hi:
                    hits.append(k)
                    cuts.add(max(roff, lo // SECTOR * SECTOR))
                    cuts.add(min(roff + rlen, -(-hi // SECTOR) * SECTOR))
            cuts = sorted(cuts)
            for a, b in zip(cuts, cuts[1:]):
                ks = [k for k in hits
                      if self.ops[k][2] < b and self.ops[k][2] + self.ops[k][3] > a]
                p = pos + a - roff
                if not ks:
                    if self.untouched and self.untouched[-1][1] == p:
                        self.untouched[-1] = (self.untouched[-1][0], p + b - a)
                    else:
                        self.untouched.append((p, p + b - a))
                    continue
                buf = bytearray(before[p:p + b - a] if before is not None else bytes(b - a))
                vals = []
                for k in ks:
                    _s, _e, off, ln, pat = self.ops[k]
                    lo, hi = max(off, a), min(off + ln, b)
                    buf[lo - a:hi - a] = pattern_bytes(pat, lo, hi - lo, cache)
                    vals.append(bytes(buf))
                self.groups.append((p, a, b - a, ks, vals))
            pos += rlen
        for f in cache.values():
            f.close()
        self.before = before


def parse_spec(path, vmdkit):
    spec = {"disks": [], "log": None, "watch": None, "pristine": None}
    disks = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            w = shlex.split(line, comments=True) if '"' in line or "'" in line else line.split('#', 1)[0].split()
            if not w:
                continue
            d, a = w[0], w[1:]
            try:
                if d in ("log", "watch", "pristine"):
                    spec[d] = a[0]
                elif d == "disk":
                    start = 0
                    for extra in a[3:]:
                        if extra.startswith("from="):
                            start = int(extra[5:])
                    disk = Disk(a[0], a[1], int(a[2]), start)
                    disks[a[0]] = disk
                    spec["disks"].append(disk)
                elif d == "region":
                    disks[a[0]].regions.append((int(a[1]), int(a[2])))
                elif d == "reader":
                    disks[a[0]].reader = a[1:]
                elif d == "checker":
                    rcs = [int(x) for x in a[1].split(",")]
                    disks[a[0]].checkers.append((rcs, a[2:]))
                elif d == "op":
                    end = -1 if a[2] == "-" else int(a[2])
                    disks[a[0]].ops.append((int(a[1]), end, int(a[3]), int(a[4]), a[5]))
                else:
                    raise ValueError("unknown directive %r" % d)
            except (IndexError, KeyError, ValueError) as e:
                die("%s:%d: %s" % (path, lineno, e))
    for k in ("log", "watch", "pristine"):
        if not spec[k]:
            die("%s: no '%s' line" % (path, k))
    for disk in spec["disks"]:
        if not disk.regions:
            disk.regions = [(0, disk.size)]
        if disk.fmt == "vmdk" and not disk.checkers:
            disk.checkers = [([0, 3], [vmdkit, "check", "{img}"]),
                             ([0, 3], ["qemu-img", "check", "-f", "vmdk", "{img}"])]
    return spec


# ---- checking one state ------------------------------------------------------

def run(argv, timeout=600):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return -1, b"", b"timed out"
    except OSError as e:
        return -1, b"", str(e).encode()


def first_line(b):
    s = b.decode("utf-8", "replace").strip().splitlines()
    return s[0][:400] if s else ""


def read_disk(disk, img, vmdkit, scratch):
    """The disk's regions concatenated, or (None, error)."""
    if disk.reader:
        out = os.path.join(scratch, ".reader-out")
        argv = [x.replace("{img}", img).replace("{out}", out) for x in disk.reader]
        rc, so, se = run(argv)
        if rc != 0:
            return None, "reader %s exited %d: %s" % (os.path.basename(argv[0]), rc, first_line(se))
        if "{out}" in " ".join(disk.reader):
            with open(out, "rb") as f:
                so = f.read()
            os.unlink(out)
    else:
        parts = []
        for off, ln in disk.regions:
            rc, o, se = run([vmdkit, "read", "-f", disk.fmt, img, str(off), str(ln)])
            if rc != 0:
                return None, "vmdkit read exited %d: %s" % (rc, first_line(se))
            parts.append(o)
        so = b"".join(parts)
    want = sum(n for _o, n in disk.regions)
    if len(so) != want:
        return None, "read %d bytes, expected %d" % (len(so), want)
    return so, None


def describe_bytes(b):
    if b == bytes(len(b)):
        return "zeros"
    if b == b[:1] * len(b):
        return "0x%02x repeated" % b[0]
    return "bytes %s..." % b[:16].hex()


def vaddr(disk, pos):
    """Virtual disk offset of byte POS of the concatenated regions."""
    for off, ln in disk.regions:
        if pos < ln:
            return off + pos
        pos -= ln
    return -1


def check_contents(disk, got, cutpos, durability):
    """Problems (class, message) of GOT against the model at CUTPOS."""
    probs = []
    before = disk.before
    bad_u = 0
    first_u = None
    for a, b in disk.untouched:
        if before is None or got[a:b] == before[a:b]:
            continue
        for s in range(a, b, SECTOR):
            if got[s:s + SECTOR] != before[s:s + SECTOR]:
                bad_u += 1
                if first_u is None:
                    first_u = s
    if bad_u:
        probs.append(("content", "%d sectors never written by the workload changed, "
                      "first at disk offset %d (reads %s)" %
                      (bad_u, vaddr(disk, first_u), describe_bytes(got[first_u:first_u + SECTOR]))))
    ops = disk.ops
    bad_c = bad_d = 0
    first_c = first_d = None
    for p, _a, n, ks, vals in disk.groups:
        g = got[p:p + n]
        allowed = [before[p:p + n]] if before is not None else []
        req = None
        for k, v in zip(ks, vals):
            s, e, _o, _l, _pat = ops[k]
            if s < cutpos:
                allowed.append(v)
            if durability and 0 <= e <= cutpos:
                req = len(allowed) - 1   # this value or a later one
        need = allowed[req:] if req is not None else allowed
        if g in need:
            continue
        for q in range(0, n, SECTOR):
            gs = g[q:q + SECTOR]
            if not any(gs == v[q:q + SECTOR] for v in allowed):
                bad_c += 1
                if first_c is None:
                    first_c = (p + q, gs, len(allowed))
            elif req is not None and not any(gs == v[q:q + SECTOR] for v in allowed[req:]):
                bad_d += 1
                if first_d is None:
                    first_d = (p + q, gs, allowed[req][q:q + SECTOR])
    if bad_c:
        pos, gs, na = first_c
        probs.append(("content", "%d sectors read a value the disk never held, first at "
                      "disk offset %d: reads %s, not one of its %d values so far" %
                      (bad_c, vaddr(disk, pos), describe_bytes(gs), na)))
    if bad_d:
        pos, gs, want = first_d
        probs.append(("durability", "%d acknowledged sectors lost, first at disk offset %d: "
                      "reads %s, acknowledged %s" %
                      (bad_d, vaddr(disk, pos), describe_bytes(gs), describe_bytes(want))))
    return probs


def check_state(spec, scratch, cutpos, vmdkit, durability):
    probs = []
    for disk in spec["disks"]:
        if cutpos < disk.start:
            continue
        img = os.path.join(scratch, disk.name)
        for rcs, argv in disk.checkers:
            argv = [x.replace("{img}", img) for x in argv]
            rc, so, se = run(argv)
            if rc not in rcs:
                tool = os.path.basename(argv[0])
                msg = first_line(se) or first_line(so)
                probs.append(("check", "%s: %s %s exited %d: %s" %
                              (disk.name, tool, argv[1], rc, msg)))
        got, err = read_disk(disk, img, vmdkit, scratch)
        if got is None:
            probs.append(("read", "%s: %s" % (disk.name, err)))
            continue
        for cls, msg in check_contents(disk, got, cutpos, durability):
            probs.append((cls, "%s: %s" % (disk.name, msg)))
    return probs


# ---- the sweep ---------------------------------------------------------------

def rel_names(log, watch):
    names = {}
    root = os.path.realpath(watch).rstrip("/") + "/"
    for fid, p in log.paths.items():
        if p.startswith(root):
            names[fid] = p[len(root):]
    return names


def choose_cuts(log, spec, max_cuts):
    """Record indexes to cut after (-1: before the first record)."""
    useful = [i for i in range(len(log))
              if log.kind[i] in (K_WRITE, K_TRUNC, K_FALLOC, K_SYNC)
              or (log.kind[i] == K_OPEN and log.mode[i] & O_TRUNC)]
    if len(useful) + 1 <= max_cuts:
        return [-1] + useful
    must = set()
    acks = set()
    for disk in spec["disks"]:
        for s, e, _o, _l, _p in disk.ops:
            acks.add(s)
            if e >= 0:
                acks.add(e)
    idx = {i: n for n, i in enumerate(useful)}
    ends = {log.end[i]: i for i in useful}
    for n, i in enumerate(useful):
        if log.kind[i] == K_SYNC or log.end[i] in acks or n == len(useful) - 1:
            for m in (n - 1, n, n + 1):
                if 0 <= m < len(useful):
                    must.add(useful[m])
    del idx, ends
    must = sorted(must)
    if len(must) > max_cuts // 2:
        step = len(must) / float(max_cuts // 2)
        must = [must[int(j * step)] for j in range(max_cuts // 2)] + [must[-1]]
    chosen = set(must)
    rest = max_cuts - len(chosen)
    if rest > 0:
        step = len(useful) / float(rest)
        for j in range(rest):
            chosen.add(useful[min(len(useful) - 1, int(j * step + step / 2))])
    return [-1] + sorted(chosen)


def plan_states(files, rng, R):
    """(label, {fid: (choice, length)}) for the states of one cut."""
    pend = {fid: f for fid, f in files.items() if f.pages or f.lens}
    states = [("none", {})]
    if not pend:
        return states
    states.append(("all", {fid: ({p: len(v) for p, v in f.pages.items()}, f.cur)
                           for fid, f in pend.items()}))
    for r in range(R):
        plan = {}
        for fid, f in pend.items():
            prob = rng.choice((0.1, 0.5, 0.9, rng.random()))
            choice = {}
            for p in sorted(f.pages):
                if rng.random() < prob:
                    nv = len(f.pages[p])
                    choice[p] = nv if nv == 1 or rng.random() < 0.75 else rng.randint(1, nv)
            length = rng.choice([f.dlen] + f.lens) if f.lens else f.dlen
            plan[fid] = (choice, length)
        states.append(("random%d" % (r + 1), plan))
    return states


def describe_plan(files, names, plan):
    out = []
    for fid, (choice, length) in sorted(plan.items()):
        f = files[fid]
        old = sum(1 for p, v in choice.items() if v < len(f.pages[p]))
        pages = sorted(choice)
        shown = ",".join("%d%s" % (p, "" if choice[p] == len(f.pages[p]) else "@v%d" % choice[p])
                         for p in pages[:12])
        out.append("%s: %d of %d pending 4K pieces%s [%s%s], length %d (durable %d, lengths %s)" % (
            names.get(fid, fid), len(choice), len(f.pages),
            " (%d older versions)" % old if old else "", shown,
            ",..." if len(pages) > 12 else "", length, f.dlen,
            ",".join(str(x) for x in f.lens[:6]) + (",..." if len(f.lens) > 6 else "")))
    for fid, f in sorted(files.items()):
        if fid not in plan and (f.pages or f.lens):
            out.append("%s: none of %d pending 4K pieces, length %d (durable)" % (
                names.get(fid, fid), len(f.pages), f.dlen))
    return "; ".join(out) if out else "no pending pieces"


def sweep(args, spec, log, names, cuts, shard, nshards, vmdkit, scratch):
    files = {}
    for fid, name in names.items():
        path = os.path.join(scratch, name)
        files[fid] = File(path, os.path.exists(path))
    results = []
    R = args.R
    todo = [c for n, c in enumerate(cuts) if n % nshards == shard]
    todo_set = set(todo)
    last_none = None
    durability = not args.selftest_drop_syncs

    def do_cut(i):
        nonlocal last_none
        cutpos = log.end[i] if i >= 0 else 0
        rng = random.Random("%d:%d" % (args.seed, i))
        key = (tuple(sorted((fid, f.gen) for fid, f in files.items())),
               tuple(sum(1 for op in d.ops if op[0] < cutpos) for d in spec["disks"]),
               tuple(sum(1 for op in d.ops if 0 <= op[1] <= cutpos) for d in spec["disks"]),
               tuple(cutpos >= d.start for d in spec["disks"]))
        for label, plan in plan_states(files, rng, R):
            if label == "none":
                if key == last_none:
                    continue
                last_none = key
            undo = {}
            for fid, (choice, length) in plan.items():
                undo[fid] = files[fid].apply(log, choice, length)
            try:
                probs = check_state(spec, scratch, cutpos, vmdkit, durability)
            finally:
                for fid, saved in undo.items():
                    files[fid].undo(saved)
            res = {"cut": i, "pos": cutpos, "state": label, "probs": probs}
            if probs:
                res["what"] = log.describe(i, names) if i >= 0 else "before the first record"
                res["plan"] = describe_plan(files, names, plan)
            results.append(res)

    if -1 in todo_set:
        do_cut(-1)
    for i in range(len(log)):
        k, fid = log.kind[i], log.fid[i]
        f = files.get(fid)
        if f is not None:
            if k == K_SYNC:
                f.sync(log)
            elif k != K_SFR:
                f.record(log, i)
        if i in todo_set:
            do_cut(i)
    return results


def materialize_pristine(spec, scratch):
    if os.path.exists(scratch):
        subprocess.check_call(["rm", "-rf", scratch])
    os.makedirs(scratch)
    subprocess.check_call(["cp", "-a", "--sparse=always", spec["pristine"] + "/.", scratch])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec")
    ap.add_argument("-R", type=int, default=None, help="random states per cut (default 3, --long 8)")
    ap.add_argument("--cuts", type=int, default=None,
                    help="at most this many cut points (default 80, --long 400)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--long", action="store_true")
    ap.add_argument("-j", type=int, default=1, help="parallel shards")
    ap.add_argument("--qemu", action="store_true", help="a comparison: report, never fail")
    ap.add_argument("--label", default=None)
    ap.add_argument("--selftest-drop-syncs", action="store_true")
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--show", type=int, default=5, help="wrong states to detail")
    ap.add_argument("--vmdkit", default=os.environ.get("VMDKIT", "vmdkit"))
    args = ap.parse_args()
    if args.R is None:
        args.R = 8 if args.long else 3
    if args.cuts is None:
        args.cuts = 400 if args.long else 80
    label = args.label or ("qemu" if args.qemu else "vmdkit")
    if args.selftest_drop_syncs:
        label += " (syncs dropped)"
    spec = parse_spec(args.spec, args.vmdkit)
    base_scratch = args.scratch or (args.spec + ".scratch")
    t0 = time.time()

    if args.shard is None and args.j > 1:
        procs = []
        for k in range(args.j):
            argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:] + ["--shard", "%d/%d" % (k, args.j)]
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE))
        results, log_info = [], None
        failed = False
        for p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                failed = True
                continue
            doc = json.loads(out.decode())
            results.extend(doc["results"])
            log_info = doc["info"]
        if failed:
            die("a shard failed")
    else:
        shard, nshards = 0, 1
        if args.shard:
            shard, nshards = (int(x) for x in args.shard.split("/"))
        scratch = "%s.%d" % (base_scratch, shard)
        log = Log(spec["log"], drop_syncs=args.selftest_drop_syncs)
        names = rel_names(log, spec["watch"])
        cuts = choose_cuts(log, spec, args.cuts)
        # the contents before the run, read from the pristine copy
        materialize_pristine(spec, scratch)
        for disk in spec["disks"]:
            before = None
            if disk.start == 0:
                before, err = read_disk(disk, os.path.join(scratch, disk.name), args.vmdkit, scratch)
                if before is None:
                    die("%s: cannot read the disk before the run: %s" % (disk.name, err))
            disk.model(before)
        try:
            results = sweep(args, spec, log, names, cuts, shard, nshards, args.vmdkit, scratch)
        finally:
            subprocess.call(["rm", "-rf", scratch])
        syncs = sum(1 for k in log.kind if k == K_SYNC)
        log_info = {"records": len(log), "bytes": log.size, "files": sorted(names.values()),
                    "cuts": len(cuts), "syncs": syncs}
        if args.shard:
            json.dump({"results": results, "info": log_info}, sys.stdout)
            return 0

    results.sort(key=lambda r: (r["cut"], r["state"]))
    wrong = [r for r in results if r["probs"]]
    elapsed = time.time() - t0
    print("%s: log of %d records (%s), %d syncs, files %s; %d cut points, %d states per cut at most" % (
        label, log_info["records"], human(log_info["bytes"]), log_info["syncs"],
        ", ".join(log_info["files"]), log_info["cuts"], args.R + 2))
    classes = {}
    for r in wrong:
        for cls, msg in r["probs"]:
            classes[cls] = classes.get(cls, 0) + 1
    for r in wrong[:args.show]:
        print("  WRONG: cut after record %d (%s, log byte %d), state %s" % (
            r["cut"], r["what"], r["pos"], r["state"]))
        print("    subset: %s" % r["plan"])
        for cls, msg in r["probs"]:
            print("    %s: %s" % (cls, msg))
    if len(wrong) > args.show:
        print("  ... and %d more wrong states" % (len(wrong) - args.show))
    if classes:
        print("  wrong by class: %s" % ", ".join("%s %d" % kv for kv in sorted(classes.items())))
        kinds = {}
        for r in wrong:
            for cls, msg in r["probs"]:
                k = re.sub(r"(/[^ :]*/)", "", msg)           # folders
                k = re.sub(r"\b(0x)?[0-9a-f]*[0-9][0-9a-f]*\b", "N", k)  # numbers
                k = cls + ": " + k[:150]
                kinds[k] = kinds.get(k, 0) + 1
        print("  kinds of problem (states):")
        for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:10]:
            print("    %4d  %s" % (n, k))
    print("%s: %d states checked, %d went wrong (%.1f s)" % (label, len(results), len(wrong), elapsed))
    if args.selftest_drop_syncs:
        alive = sum(1 for r in wrong if any(c in ("check", "content", "read") for c, _m in r["probs"]))
        if alive == 0:
            print("selftest: FAILED: with the syncs dropped no state went wrong: the check is blind")
            return 1
        print("selftest: ok: with the syncs dropped %d states went wrong" % alive)
        return 0
    if args.qemu:
        return 0
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
