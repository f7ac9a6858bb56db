#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""vmdkit against qemu-img, side by side (issue 5).  Run it through
bench/run.sh, which documents the options.

Every timed case runs each tool ROUNDS times, alternating the tools (and
reversing their order every other round), and reports the median wall-clock
seconds of the whole process, the ratio vmdkit/peer, the output's size and
the peak RSS (/usr/bin/time %M, the largest over the rounds).  Every output
is checked in the same run: convert outputs with `qemu-img compare` against
their input, bench images against each other and with `qemu-img check`.  A
failed check stops the benchmark (exit 1); a missed speed target does not:
timing is reported, never turned into a pass/fail.
"""
import argparse
import datetime
import hashlib
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PATTERN = "165"  # bench --pattern: 0xa5, so images can be compared


class Failure(Exception):
    """A tool failed or an output did not verify."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, what=None, **kw):
    """Run CMD, untimed; raise Failure with its stderr when it fails."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, **kw)
    if p.returncode != 0:
        raise Failure("%s failed (exit %d): %s\n%s" % (
            what or " ".join(cmd), p.returncode, " ".join(cmd),
            (p.stderr or p.stdout).strip()[-2000:]))
    return p.stdout


class Timer:
    def __init__(self, scratch, drop_caches):
        self.tfile = os.path.join(scratch, "time.out")
        self.drop_caches = drop_caches

    def __call__(self, cmd):
        """Run CMD under /usr/bin/time: (seconds, peak RSS KiB, stdout).
        The page cache is synced first (untimed): a run does not pay for
        writing back what the run before it left dirty."""
        os.sync()
        if self.drop_caches:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", self.tfile]
                           + cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        t1 = time.perf_counter()
        if p.returncode != 0:
            raise Failure("%s exited %d\n%s" % (" ".join(cmd), p.returncode,
                                                p.stderr.strip()[-2000:]))
        with open(self.tfile) as f:
            rss = int(f.read().split()[-1])
        return t1 - t0, rss, p.stdout


def sizes(path):
    """(apparent bytes, allocated bytes) of PATH."""
    st = os.stat(path)
    return st.st_size, st.st_blocks * 512


def remove(*paths):
    for p in paths:
        if p and os.path.lexists(p):
            os.unlink(p)


def fmt_bytes(n):
    if n is None:
        return "-"
    if n >= GiB:
        return "%d GiB" % (n // GiB) if n % GiB == 0 else "%.2f GiB" % (n / GiB)
    if n >= MiB:
        return "%.1f MiB" % (n / MiB)
    return "%.0f KiB" % (n / KiB)


def fmt_secs(s):
    return "-" if s is None else ("%.3f" % s if s < 10 else "%.2f" % s)


class Contender:
    """One command of a row.  CMD is the argument list; OUT the file it
    makes (removed before each run); PREPARE, when given, runs (untimed)
    before each run; VERIFY is a list of commands run after the round, each
    must exit 0."""

    def __init__(self, name, cmd, out=None, prepare=None, verify=(),
                 size_kind="apparent"):
        self.name = name
        self.cmd = cmd
        self.out = out
        self.prepare = prepare
        self.verify = list(verify)
        self.size_kind = size_kind  # "apparent" or "allocated"
        self.times = []
        self.rss = []
        self.stdout = []
        self.size = None
        self.verified = 0

    def median(self):
        return statistics.median(self.times) if self.times else None

    def peak_rss(self):
        return max(self.rss) if self.rss else None


class Row:
    """A timed case in one cache mode.  LINES says what the table shows:
    (label, index of A, index of B, target text, target check) where the
    check gets (A, B) and returns True/False."""

    def __init__(self, case, title, mode, contenders, lines,
                 verify_rounds=None, cleanup=True):
        self.case = case
        self.title = title
        self.mode = mode
        self.contenders = contenders
        self.lines = lines
        self.verify_rounds = verify_rounds  # None: every round
        self.cleanup = cleanup

    def run_round(self, rnd, timer):
        """One timed run of each contender.  Each output is verified,
        measured and removed right after its own run, so every run starts
        with the same files and memory in use (in a VM, a run that follows
        another's 1.2 GiB output was seen up to 8 times slower)."""
        order = list(self.contenders)
        if rnd % 2:
            order.reverse()
        verify = self.verify_rounds is None or rnd < self.verify_rounds
        for c in order:
            remove(c.out)
            if c.prepare:
                c.prepare()
            secs, rss, out = timer(c.cmd)
            c.times.append(secs)
            c.rss.append(rss)
            c.stdout.append(out)
            log("  %-28s %-22s round %d: %8.3f s  %7d KiB" % (
                "%s [%s]" % (self.case, self.mode), c.name, rnd + 1, secs, rss))
            if verify:
                for v in c.verify:
                    run(v, "verifying %s's output (%s, %s)" % (
                        c.name, self.case, self.mode))
                c.verified += 1
            if c.out and os.path.exists(c.out):
                a, b = sizes(c.out)
                c.size = a if c.size_kind == "apparent" else b
            if self.cleanup:
                remove(c.out)


def ratio(a, b):
    return a / b if a is not None and b else None


# ---------------------------------------------------------------------------


def tool_versions(vmdkit):
    v = run([vmdkit, "--version"]).strip()
    q = run(["qemu-img", "--version"]).splitlines()[0].strip()
    return v, q


def build_workload(a, work):
    """The raw disk image, built once per work folder and parameters."""
    raw = os.path.join(work, "disk.raw")
    stamp = os.path.join(work, "disk.stamp")
    with open(os.path.join(HERE, "workload.py"), "rb") as f:
        key = "%d %d %s" % (a.size_bytes, a.seed,
                            hashlib.sha256(f.read()).hexdigest())
    if os.path.exists(raw) and os.path.exists(stamp):
        with open(stamp) as f:
            lines = f.read().splitlines()
        if lines and lines[0] == key:
            log("workload: reusing %s" % raw)
            return raw, lines[1:]
    remove(raw, stamp)
    log("workload: building a %s ext4 image (mkfs.ext4 -d) ..." %
        fmt_bytes(a.size_bytes))
    t0 = time.perf_counter()
    tree = os.path.join(work, "tree")
    out = run([sys.executable, os.path.join(HERE, "workload.py"),
               "--out", raw, "--size-bytes", str(a.size_bytes),
               "--tree", tree, "--seed", str(a.seed)], "building the workload")
    shutil.rmtree(tree, ignore_errors=True)
    stats = out.strip().splitlines()
    log("workload: built in %.1f s" % (time.perf_counter() - t0))
    with open(stamp, "w") as f:
        f.write("\n".join([key] + stats) + "\n")
    return raw, stats


def convert_rows(a, vmdkit, raw, work, inputs, modes, threads, has_level):
    """Cases 1-4, one row per cache mode."""
    sparse_in, stream_in = inputs
    rows = []
    odir = os.path.join(work, "out")
    for mode in modes:
        t = [] if mode == "default" else ["-t", mode]
        label = "default (unsafe)" if mode == "default" else mode

        def out(case, tool, ext):
            return os.path.join(odir, "%s-%s-%s.%s" % (case, mode, tool, ext))

        def cmp_raw(fmt, path):
            return [["qemu-img", "compare", "-q", "-f", "raw", "-F", fmt, raw,
                     path]]

        # 1. raw -> monolithicSparse (and cp --sparse=always)
        v, q = out(1, "vmdkit", "vmdk"), out(1, "qemu", "vmdk")
        cs = [Contender("vmdkit", [vmdkit, "convert", "-f", "raw", "-O", "vmdk"]
                        + t + [raw, v], v, verify=cmp_raw("vmdk", v)),
              Contender("qemu-img", ["qemu-img", "convert", "-f", "raw", "-O",
                                     "vmdk"] + t + [raw, q], q,
                        verify=cmp_raw("vmdk", q))]
        lines = [("1 raw → monolithicSparse", 0, 1, "≤ 0.5",
                  lambda x, y: ratio(x.median(), y.median()) <= 0.5)]
        if mode == "default":
            c = out(1, "cp", "raw")
            cs.append(Contender("cp --sparse=always",
                                ["cp", "--sparse=always", raw, c], c,
                                verify=cmp_raw("raw", c),
                                size_kind="allocated"))
            lines.append(("1 raw → monolithicSparse, vs cp --sparse=always",
                          0, 2, "≤ 1.3",
                          lambda x, y: ratio(x.median(), y.median()) <= 1.3))
        rows.append(Row("1", "raw → monolithicSparse", label, cs, lines))

        # 2. raw -> streamOptimized
        v, q = out(2, "vmdkit", "vmdk"), out(2, "qemu", "vmdk")
        so = ["-o", "subformat=streamOptimized"]
        cs = [Contender("vmdkit -m %d" % threads,
                        [vmdkit, "convert", "-f", "raw", "-O", "vmdk", "-m",
                         str(threads)] + so + t + [raw, v], v,
                        verify=cmp_raw("vmdk", v)),
              Contender("qemu-img", ["qemu-img", "convert", "-f", "raw", "-O",
                                     "vmdk"] + so + t + [raw, q], q,
                        verify=cmp_raw("vmdk", q))]
        lines = [("2 raw → streamOptimized", 0, 1,
                  "≤ 0.2, size ≤ qemu-img's",
                  lambda x, y: ratio(x.median(), y.median()) <= 0.2
                  and x.size <= y.size)]
        if mode == "default" and has_level:
            f = out(2, "vmdkit-level1", "vmdk")
            cs.append(Contender(
                "vmdkit -m %d level 1" % threads,
                [vmdkit, "convert", "-f", "raw", "-O", "vmdk", "-m",
                 str(threads), "-o",
                 "subformat=streamOptimized,compression_level=1"] + t
                + [raw, f], f, verify=cmp_raw("vmdk", f)))
            lines.append(("2 raw → streamOptimized, vmdkit "
                          "compression_level=1", 2, 1, "(information)",
                          None))
        rows.append(Row("2", "raw → streamOptimized", label, cs, lines))

        # 3. streamOptimized -> raw, 4. monolithicSparse -> raw
        for case, src, name, target in (
                ("3", stream_in, "streamOptimized → raw", 0.4),
                ("4", sparse_in, "monolithicSparse → raw", 0.8)):
            v, q = out(case, "vmdkit", "raw"), out(case, "qemu", "raw")
            cs = [Contender("vmdkit", [vmdkit, "convert", "-f", "vmdk", "-O",
                                       "raw"] + t + [src, v], v,
                            verify=cmp_raw("raw", v), size_kind="allocated"),
                  Contender("qemu-img", ["qemu-img", "convert", "-f", "vmdk",
                                         "-O", "raw"] + t + [src, q], q,
                            verify=cmp_raw("raw", q), size_kind="allocated")]
            rows.append(Row(case, name, label, cs, [
                ("%s %s" % (case, name), 0, 1, "≤ %g" % target,
                 lambda x, y, tg=target: ratio(x.median(), y.median()) <= tg)]))
    return rows


def qemu_rows(vmdkit, raw, work, qcow2_in, sparse_in, threads):
    """Case 8: QEMU's formats through qemu-nbd, side by side with qemu-img
    convert on the same input: qcow2 -> monolithicSparse, qcow2 ->
    streamOptimized, monolithicSparse -> qcow2 (qemu's qcow2 writer either
    way: vmdkit writes through qemu-nbd)."""
    odir = os.path.join(work, "out")

    def out(case, tool, ext):
        return os.path.join(odir, "8%s-%s.%s" % (case, tool, ext))

    def cmp_raw(fmt, path):
        return [["qemu-img", "compare", "-q", "-f", "raw", "-F", fmt, raw,
                 path]]

    rows = []
    so = ["-o", "subformat=streamOptimized"]
    for case, name, src, sfmt, ofmt, vopts, qopts, target in (
            ("a", "qcow2 → monolithicSparse", qcow2_in, "qcow2", "vmdk", [],
             [], 0.5),
            ("b", "qcow2 → streamOptimized", qcow2_in, "qcow2", "vmdk",
             ["-m", str(threads)] + so, so, 0.2),
            ("c", "monolithicSparse → qcow2", sparse_in, "vmdk", "qcow2", [],
             [], 1.2)):
        v, q = out(case, "vmdkit", ofmt), out(case, "qemu", ofmt)
        cs = [Contender("vmdkit", [vmdkit, "convert", "-f", sfmt, "-O", ofmt]
                        + vopts + [src, v], v, verify=cmp_raw(ofmt, v)),
              Contender("qemu-img", ["qemu-img", "convert", "-f", sfmt, "-O",
                                     ofmt] + qopts + [src, q], q,
                        verify=cmp_raw(ofmt, q))]
        rows.append(Row("8" + case, name, "default (unsafe)", cs, [
            ("8%s %s" % (case, name), 0, 1, "≤ %g" % target,
             lambda x, y, tg=target: ratio(x.median(), y.median()) <= tg)]))
    return rows


def bench_rows(a, vmdkit, work, modes, count):
    """Case 5: COUNT 4 KiB writes 64 KiB apart into a fresh image."""
    template = os.path.join(work, "bench-template.vmdk")
    run(["qemu-img", "create", "-q", "-f", "vmdk", template, "2G"])
    # What both images must read: 4 KiB of the pattern byte every 64 KiB
    # from offset 0 (qemu-img bench's -o default), zeros elsewhere.
    want = os.path.join(work, "bench-want.raw")
    with open(want, "wb") as f:
        f.truncate(2 << 30)
        block = bytes([int(PATTERN, 0)]) * 4096
        for k in range(count):
            f.seek(k * 65536)
            f.write(block)
    rows = []
    for mode in modes:
        t = [] if mode == "default" else ["-t", mode]
        label = "default (writeback)" if mode == "default" else mode
        v = os.path.join(work, "out", "5-%s-vmdkit.vmdk" % mode)
        q = os.path.join(work, "out", "5-%s-qemu.vmdk" % mode)
        flags = ["-w", "-c", str(count), "-s", "4096", "-S", "65536", "-f",
                 "vmdk", "--pattern=" + PATTERN] + t
        cs = [Contender("vmdkit", [vmdkit, "bench"] + flags + [v], v,
                        prepare=lambda v=v: shutil.copyfile(template, v),
                        verify=[["qemu-img", "check", "-q", v],
                                ["qemu-img", "compare", "-q", "-f", "raw",
                                 "-F", "vmdk", want, v]],
                        size_kind="allocated"),
              Contender("qemu-img", ["qemu-img", "bench"] + flags + [q], q,
                        prepare=lambda q=q: shutil.copyfile(template, q),
                        verify=[["qemu-img", "check", "-q", q],
                                ["qemu-img", "compare", "-q", "-f", "raw",
                                 "-F", "vmdk", want, q]],
                        size_kind="allocated")]
        rows.append(Row("5", "bench: %d allocating 4 KiB writes" % count,
                        label, cs, [
                            ("5 bench -w -c %d -s 4096 -S 65536" % count, 0, 1,
                             "≤ 0.1", lambda x, y:
                             ratio(x.median(), y.median()) <= 0.1)]))
    return rows


def big_rows(a, vmdkit, work, virtual, data, control_virtual):
    """Case 6: an image of VIRTUAL bytes with DATA bytes at each end,
    converted to raw and to monolithicSparse; the same with CONTROL_VIRTUAL
    bytes shows how time depends on the virtual size."""
    blob = os.path.join(work, "big-data.bin")
    with open(blob, "wb") as f:
        f.write(random.Random(a.seed).randbytes(data))
    rows = []
    for tag, vsize in (("big", virtual), ("small", control_virtual)):
        src = os.path.join(work, "%s.vmdk" % tag)
        remove(src)
        run([vmdkit, "create", src, str(vsize)])
        for off in (0, vsize - data):
            with open(blob, "rb") as f:
                run([vmdkit, "write", src, str(off)], stdin=f)
        for fmt, ext in (("raw", "raw"), ("vmdk", "vmdk")):
            v = os.path.join(work, "out", "6-%s-vmdkit.%s" % (tag, ext))
            q = os.path.join(work, "out", "6-%s-qemu.%s" % (tag, ext))
            ver = lambda p: [["qemu-img", "compare", "-q", "-f", "vmdk",
                              "-F", fmt, src, p]]
            kind = "allocated" if fmt == "raw" else "apparent"
            cs = [Contender("vmdkit", [vmdkit, "convert", "-f", "vmdk", "-O",
                                       fmt, src, v], v, verify=ver(v),
                            size_kind=kind),
                  Contender("qemu-img", ["qemu-img", "convert", "-f", "vmdk",
                                         "-O", fmt, src, q], q, verify=ver(q),
                            size_kind=kind)]
            name = "%s sparse (2 × %s data) → %s" % (
                fmt_bytes(vsize), fmt_bytes(data),
                "raw" if fmt == "raw" else "monolithicSparse")
            row = Row("6" if tag == "big" else "6-control", name,
                      "default (unsafe)", cs, [
                          ("6 " + name, 0, 1, "RSS ≤ 64 MiB",
                           lambda x, y: x.peak_rss() <= 64 * 1024)],
                      verify_rounds=1)
            row.virtual = vsize
            row.output = "raw" if fmt == "raw" else "monolithicSparse"
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------

SYSCALLS = ["write", "pwrite64", "pwritev", "pwritev2", "writev",
            "ftruncate", "fallocate", "fsync", "fdatasync", "sync_file_range"]
GROUPS = [  # (label, syscalls, target ratio or None)
    ("write calls to files (write, pwrite64, pwritev, pwritev2, writev)",
     ("write", "pwrite64", "pwritev", "pwritev2", "writev"), 0.25),
    ("syncs and truncates (fsync, fdatasync, sync_file_range, ftruncate)",
     ("fsync", "fdatasync", "sync_file_range", "ftruncate"), 0.1),
    ("  of which syncs", ("fsync", "fdatasync", "sync_file_range"), None),
    ("  of which truncates", ("ftruncate",), None),
    ("fallocate", ("fallocate",), None),
]
CALL_RE = re.compile(r"^\d+\s+(\w+)\((\d+)(<[^>]*>)?")


def strace_counts(log_path):
    """Per syscall: (calls on regular files, all calls) from an strace -f -y
    log.  Calls on pipes, terminals, eventfds and /dev are not file I/O."""
    files, total = {}, {}
    with open(log_path, errors="replace") as f:
        for line in f:
            m = CALL_RE.match(line)
            if not m:
                continue  # "<... resumed>" halves, signals, exit lines
            name, target = m.group(1), m.group(3) or ""
            total[name] = total.get(name, 0) + 1
            if target.startswith("</") and not target.startswith("</dev/"):
                files[name] = files.get(name, 0) + 1
    return files, total


def fuse_mount(work):
    """Case 7's stand-in for a network file system: a bindfs (FUSE) mount of
    a folder of WORK, where every call the kernel cannot answer itself is a
    round trip to another process, as on sshfs or virtiofs.  Returns (mount
    point, backing folder), None), or (None, why not)."""
    if not shutil.which("bindfs"):
        return None, "bindfs is not installed"
    if not os.path.exists("/dev/fuse"):
        return None, "/dev/fuse is missing"
    src = os.path.join(work, "out", "7-fuse-backing")
    mnt = os.path.join(work, "out", "7-fuse")
    os.makedirs(src, exist_ok=True)
    os.makedirs(mnt, exist_ok=True)
    p = subprocess.run(["bindfs", src, mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0 or not os.path.ismount(mnt):
        return None, "bindfs could not mount (%s)" % p.stdout.strip()[-200:]
    return (mnt, src), None


def fuse_unmount(mnt):
    """Unmount MNT; lazily when it is busy (after Ctrl-C, a command strace
    let go of may still be writing there)."""
    for cmd in (["fusermount3", "-u", mnt], ["fusermount", "-u", mnt],
                ["umount", mnt], ["fusermount3", "-uz", mnt],
                ["fusermount", "-uz", mnt], ["umount", "-l", mnt]):
        if shutil.which(cmd[0]) and subprocess.run(
                cmd, stderr=subprocess.DEVNULL).returncode == 0:
            return


def syscall_counts(vmdkit, raw, folder, tag, work):
    """strace counts of convert -t writeback -O vmdk from RAW into FOLDER,
    for both tools; each output verified, then removed."""
    result = {}
    # LeakSanitizer cannot run under ptrace: an ASan build of vmdkit would
    # fail at exit under strace.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
                           ).lstrip(":")
    for tool, cmd in (("vmdkit", [vmdkit]), ("qemu-img", ["qemu-img"])):
        out = os.path.join(folder, "7-%s.vmdk" % tool)
        slog = os.path.join(work, "7-%s.strace" % tool)
        remove(out, slog)
        log("  7 strace %-19s %s" % (tag, tool))
        run(["strace", "-f", "-y", "-qq", "-o", slog, "-e",
             "trace=" + ",".join(SYSCALLS)] + cmd
            + ["convert", "-t", "writeback", "-f", "raw", "-O", "vmdk", raw,
               out], "strace of %s convert" % tool, env=env)
        run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "vmdk", raw, out],
            "verifying %s's output (7, %s)" % (tool, tag))
        result[tool] = strace_counts(slog)
        remove(out, slog)
    return result


def syscall_case(a, vmdkit, raw, work, fuse, why):
    """Case 7: system calls of convert -t writeback -O vmdk, both tools, on
    the work folder's own file system and on the FUSE mount FUSE (mount
    point, backing folder; None: WHY not).  Returns a list of (where,
    counts or None, why skipped), or None without strace."""
    if not shutil.which("strace"):
        return None
    fs = run(["df", "--output=fstype", work]).split()[-1]
    places = [("local file system (%s)" % fs,
               syscall_counts(vmdkit, raw, os.path.join(work, "out"),
                              "local", work), None)]
    if fuse is None:
        places.append(("FUSE (bindfs)", None, why))
    else:
        places.append(("FUSE (bindfs), standing in for NFS/SMB",
                       syscall_counts(vmdkit, raw, fuse[0], "FUSE", work),
                       None))
    return places


def fuse_rows(vmdkit, raw, fuse):
    """Case 7, timed: raw -> monolithicSparse -t writeback onto the FUSE
    mount (verified through the backing folder, which reads faster)."""
    mnt, back = fuse
    cs = []
    for tool, cmd in (("vmdkit", [vmdkit]), ("qemu-img", ["qemu-img"])):
        name = "7-fuse-%s.vmdk" % tool
        cs.append(Contender(tool, cmd + [
            "convert", "-t", "writeback", "-f", "raw", "-O", "vmdk", raw,
            os.path.join(mnt, name)], os.path.join(mnt, name), verify=[[
                "qemu-img", "compare", "-q", "-f", "raw", "-F", "vmdk", raw,
                os.path.join(back, name)]]))
    return [Row("7", "raw → monolithicSparse on FUSE (bindfs)", "writeback",
                cs, [("7 raw → monolithicSparse on a FUSE mount (bindfs)",
                      0, 1, "(information)", None)])]


# ---------------------------------------------------------------------------


def environment(a, vmdkit, work, stats, raw):
    v, q = tool_versions(vmdkit)
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs = run(["df", "--output=fstype", work]).split()[-1]
    app, alloc = sizes(raw)
    lines = [
        "- date: %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "- machine: %s, %d CPUs, Linux %s, work folder on %s" % (
            cpu, os.cpu_count() or 0, platform.release(), fs),
        "- %s; %s" % (v, q),
        "- workload: %s raw image (%s allocated), ext4 made by "
        "`mkfs.ext4 -d`; files by class (count, bytes): %s" % (
            fmt_bytes(app), fmt_bytes(alloc), "; ".join(
                "%s %s %s" % (s.split()[0], s.split()[1],
                              fmt_bytes(int(s.split()[2]))) for s in stats)),
        "- rounds: %d, tools alternating (order reversed every other round),"
        " `sync` (untimed) before every run%s" % (
            a.rounds, ", caches dropped before every run"
            if a.drop_caches else ", page cache warm (not dropped)"),
    ]
    return lines


def render(a, env, rows, syscalls, load_start):
    md = ["# vmdkit vs qemu-img", ""]
    md += env
    md.append("- load average (1 min) at the start %.2f, at the end %.2f: "
              "other work on the machine makes the times noisy" % (
                  load_start, os.getloadavg()[0]))
    md += ["", "Times are medians of the wall-clock seconds of the whole "
           "process; ratio = vmdkit / peer (below 1: vmdkit is faster). "
           "Output size: file size for VMDK outputs, allocated bytes for raw "
           "ones. RSS: peak resident memory over the rounds. Every output "
           "was checked with `qemu-img compare` against its input in this "
           "run, right after it was made (case 5: against the raw image the "
           "writes must give, and `qemu-img check`; case 6: in the first "
           "round).", ""]
    md.append("| case | mode | vmdkit s | peer | peer s | ratio | target | "
              "met | vmdkit out | peer out | vmdkit RSS | peer RSS | "
              "checked |")
    md.append("|---|---|---:|---|---:|---:|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        for label, ia, ib, target, check in row.lines:
            x, y = row.contenders[ia], row.contenders[ib]
            r = ratio(x.median(), y.median())
            met = "-" if check is None else ("yes" if check(x, y) else "**no**")
            md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | "
                      "%s | %s | %d/%d, %d/%d |" % (
                          label, row.mode, fmt_secs(x.median()), y.name,
                          fmt_secs(y.median()),
                          "-" if r is None else "%.2f" % r, target, met,
                          fmt_bytes(x.size), fmt_bytes(y.size),
                          fmt_bytes((x.peak_rss() or 0) * KiB),
                          fmt_bytes((y.peak_rss() or 0) * KiB), x.verified,
                          len(x.times), y.verified, len(y.times)))

    # case 5: what each tool itself reports
    inner = []
    for row in rows:
        if row.case != "5":
            continue
        vals = []
        for c in row.contenders:
            ts = [float(m.group(1)) for o in c.stdout for m in
                  [re.search(r"Run completed in ([0-9.]+) seconds", o)] if m]
            vals.append(statistics.median(ts) if ts else None)
        if None not in vals:
            inner.append("| %s | %s | %s | %s |" % (
                row.mode, fmt_secs(vals[0]), fmt_secs(vals[1]),
                "%.3f" % ratio(vals[0], vals[1]) if vals[1] else "-"))
    if inner:
        md += ["", "Case 5, the tools' own \"Run completed in\" times "
               "(requests only, without open and close), medians:", "",
               "| mode | vmdkit s | qemu-img s | ratio |", "|---|---:|---:|---:|"]
        md += inner

    # case 6: time against the virtual size (rows made in pairs: the big
    # image's, then the control's, for each output format)
    bigs = [r for r in rows if r.case == "6"]
    smalls = [r for r in rows if r.case == "6-control"]
    if bigs and smalls:
        md += ["", "Case 6, time against the virtual size (the same data; "
               "median seconds; ratio = big / small):", "",
               "| output | tool | %s virtual | %s virtual | ratio |" % (
                   fmt_bytes(smalls[0].virtual), fmt_bytes(bigs[0].virtual)),
               "|---|---|---:|---:|---:|"]
        for rb, rs in zip(bigs, smalls):
            for b, sm in zip(rb.contenders, rs.contenders):
                md.append("| %s | %s | %s | %s | %.1f |" % (
                    rb.output, b.name, fmt_secs(sm.median()),
                    fmt_secs(b.median()), ratio(b.median(), sm.median())))

    # case 7
    if syscalls:
        md += ["", "Case 7, system calls of `convert -t writeback -f raw -O "
               "vmdk` (strace -f -y; calls on regular files, all calls in "
               "brackets).  The target is set for network file systems, "
               "where every call is a round trip; vmdkit writes whole "
               "chunks there (NFS, SMB, 9P, Ceph, AFS, FUSE), a chunk of "
               "1 MiB or more as up to 8 concurrent calls, and 64 KiB "
               "pieces on local file systems, where larger page-cache "
               "writes were slower (lib/io.c).  Syncs and truncates do not "
               "depend on the file system."]
        for where, counts, why in syscalls:
            if counts is None:
                md += ["", "On %s: skipped, %s." % (where, why)]
                continue
            network = not where.startswith("local")
            vf, vt = counts["vmdkit"]
            qf, qt = counts["qemu-img"]
            md += ["", "On %s:" % where, "",
                   "| calls | vmdkit | qemu-img | ratio | target | met |",
                   "|---|---:|---:|---:|---|---|"]
            for label, names, target in GROUPS:
                if target is not None and not network and \
                        names[0] == "write":
                    target = None  # the write-call target is a network one
                a_f = sum(vf.get(n, 0) for n in names)
                a_t = sum(vt.get(n, 0) for n in names)
                b_f = sum(qf.get(n, 0) for n in names)
                b_t = sum(qt.get(n, 0) for n in names)
                r = a_f / b_f if b_f else None
                met = "-" if target is None else (
                    "yes" if (a_f <= target * b_f) else "**no**")
                md.append("| %s | %d (%d) | %d (%d) | %s | %s | %s |" % (
                    label, a_f, a_t, b_f, b_t,
                    "-" if r is None else "%.3f" % r,
                    "-" if target is None else "≤ %g" % target, met))
            md += ["", "Per system call (files / all): vmdkit %s; qemu-img "
                   "%s." % (
                       ", ".join("%s %d/%d" % (n, vf.get(n, 0), vt[n])
                                 for n in SYSCALLS if n in vt) or "none",
                       ", ".join("%s %d/%d" % (n, qf.get(n, 0), qt[n])
                                 for n in SYSCALLS if n in qt) or "none")]
    elif syscalls is None:
        md += ["", "Case 7 skipped: strace is not installed."]
    return "\n".join(md) + "\n"


def main():
    # SIGTERM (kill, a CI timeout) unwinds like Ctrl-C: the FUSE mount of
    # case 7 is unmounted and the outputs removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(prog="bench/run.sh")
    ap.add_argument("--vmdkit", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=float, help="workload size in GiB")
    ap.add_argument("--size-mib", type=int, help="workload size in MiB")
    ap.add_argument("--modes", help="cache modes for cases 1-4, "
                    "comma-separated (default, none, writeback, ...)")
    ap.add_argument("--bench-modes", help="cache modes for case 5")
    ap.add_argument("--cases", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.md"))
    ap.add_argument("--seed", type=int, default=20240501)
    a = ap.parse_args()

    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if a.size_mib:
        a.size_bytes = a.size_mib * MiB
    elif a.size:
        a.size_bytes = int(a.size * GiB) // MiB * MiB
    else:
        a.size_bytes = 256 * MiB if a.quick else 2 * GiB
    if a.size_bytes < 32 * MiB:
        ap.error("the workload must be at least 32 MiB")
    modes = (a.modes or ("default" if a.quick else
                         "default,writeback,none")).split(",")
    bmodes = (a.bench_modes or ("default" if a.quick else
                                "default,unsafe,none")).split(",")
    cases = set(a.cases.split(","))
    count = 2000 if a.quick else 20000
    # case 6: the largest monolithicSparse size (2 TiB less the metadata is
    # the format's limit; 2047 GiB is the largest whole GiB below it).
    big_virtual = 64 * GiB if a.quick else 2047 * GiB
    big_data = 4 * MiB if a.quick else 64 * MiB
    control_virtual = 4 * GiB
    threads = os.cpu_count() or 1
    if a.drop_caches and os.geteuid() != 0:
        ap.error("--drop-caches needs root")

    own_work = a.workdir is None
    work = a.workdir or tempfile.mkdtemp(prefix="vmdkit-bench.",
                                         dir=os.environ.get("TMPDIR", "/tmp"))
    os.makedirs(os.path.join(work, "out"), exist_ok=True)
    load_start = os.getloadavg()[0]
    fuse = None
    try:
        timer = Timer(work, a.drop_caches)
        raw, stats = build_workload(a, work)
        env = environment(a, a.vmdkit, work, stats, raw)
        has_level = "compression_level" in run([a.vmdkit, "create", "-o",
                                                "help"])
        rows = []
        sparse_in = os.path.join(work, "input-sparse.vmdk")
        if cases & {"1", "2", "3", "4"}:
            stream_in = os.path.join(work, "input-stream.vmdk")
            log("inputs: qemu-img makes the monolithicSparse and "
                "streamOptimized sources of cases 3 and 4")
            if "4" in cases or "8" in cases:
                run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw,
                     sparse_in])
            if "3" in cases:
                run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                     "subformat=streamOptimized", raw, stream_in])
            rows += [r for r in convert_rows(a, a.vmdkit, raw, work,
                                             (sparse_in, stream_in), modes,
                                             threads, has_level)
                     if r.case in cases]
        if "8" in cases:
            qcow2_in = os.path.join(work, "input.qcow2")
            log("inputs: qemu-img makes the qcow2 and monolithicSparse "
                "sources of case 8")
            run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw,
                 qcow2_in])
            if not os.path.exists(sparse_in):
                run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw,
                     sparse_in])
            rows += qemu_rows(a.vmdkit, raw, work, qcow2_in, sparse_in,
                              threads)
        if "5" in cases:
            rows += bench_rows(a, a.vmdkit, work, bmodes, count)
        if "6" in cases:
            rows += big_rows(a, a.vmdkit, work, big_virtual, big_data,
                             control_virtual)
        if "7" in cases:
            fuse, fuse_why = fuse_mount(work)
            if fuse:
                rows += fuse_rows(a.vmdkit, raw, fuse)
        for rnd in range(a.rounds):
            log("round %d of %d" % (rnd + 1, a.rounds))
            for row in rows:
                row.run_round(rnd, timer)
        syscalls = False
        if "7" in cases:
            syscalls = syscall_case(a, a.vmdkit, raw, work, fuse, fuse_why)
        text = render(a, env, rows, syscalls, load_start)
    except Failure as e:
        log("bench: FAILED: %s" % e)
        return 1
    finally:
        if fuse:
            fuse_unmount(fuse[0])
        if own_work and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif not a.keep:
            shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    log("written to %s" % a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
