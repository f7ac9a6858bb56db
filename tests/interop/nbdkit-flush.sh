#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The nbdkit plugin's flush and multi-conn contract, checked while the
# server runs (not after: closing the last connection flushes anyway, and
# whether nbdkit gets to close it before it exits is a race -- which made
# a flush that did not flush show up in only some runs).
#
# A small NBD client (Python stdlib, tests/interop below) opens two
# connections to one writable server and checks, in order:
#  - both advertise flush, FUA and multi-conn;
#  - a write on connection A into a fresh grain (no grain-table entry yet),
#    then a flush on A: connection B reads the bytes, and a second process
#    opening the image FILE read-only (vmdkit read, vmdkit map, qemu-io -U)
#    reads them too, while both connections stay open: the data and its
#    grain-table entry reached the file at the flush;
#  - the same the other way round (write on B, flush on B), over a grain
#    that already held data (an overwrite in place), and into a grain
#    table the image did not have yet (a new table and directory entry);
#  - a write with FUA (no flush) is in the file at once;
#  - vmdkit check of the file is clean after each flush (no entry points
#    at data that is not there; leaks, exit 3, are tolerated while open).
# Everything written is compared byte for byte; the server stops last, and
# then the image reads as a raw mirror of every write (qemu-img compare).
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need nbdkit qemu-img qemu-io python3
plugin=$BUILD_DIR/nbdkit-vmdkit-plugin.so
[[ -f $plugin ]] || { echo "plugin not built (nbdkit-plugin-dev missing)"; exit 77; }
cd "$tmpdir"
M=$((1024 * 1024))

cat >client.py <<'PY'
# A minimal NBD client (fixed newstyle, NBD_OPT_GO, simple replies) and the
# checks; argv: socket image vmdkit.
import os, random, socket, struct, subprocess, sys

sock_path, image, vmdkit = sys.argv[1:4]
M = 1 << 20

def fail(msg):
    print("FAIL: nbdkit-flush: " + msg, file=sys.stderr)
    sys.exit(1)

class Conn:
    def __init__(self, name):
        self.name = name
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(sock_path)
        self.cookie = 0
        magic, opt, hflags = struct.unpack(">8s8sH", self.recv(18))
        if magic != b"NBDMAGIC" or opt != b"IHAVEOPT":
            fail("%s: not a newstyle server" % name)
        self.s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
        self.s.sendall(b"IHAVEOPT" + struct.pack(">II", 7, 6) + struct.pack(">IH", 0, 0))
        self.size = self.flags = None
        while True:
            rmagic, ropt, rtype, rlen = struct.unpack(">QIII", self.recv(20))
            data = self.recv(rlen)
            if rmagic != 0x3e889045565a9 or ropt != 7:
                fail("%s: bad option reply" % name)
            if rtype & (1 << 31):
                fail("%s: NBD_OPT_GO refused (%#x): %r" % (name, rtype, data))
            if rtype == 3 and struct.unpack(">H", data[:2])[0] == 0:  # INFO_EXPORT
                self.size, self.flags = struct.unpack(">QH", data[2:12])
            if rtype == 1:  # ACK
                break
        if self.size is None:
            fail("%s: no export size" % name)

    def recv(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                fail("%s: server closed the connection" % self.name)
            b += c
        return b

    def request(self, typ, off, length, data=b"", flags=0):
        self.cookie += 1
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, typ, self.cookie, off, length) + data)
        magic, err, cookie = struct.unpack(">IIQ", self.recv(16))
        if magic != 0x67446698 or cookie != self.cookie:
            fail("%s: bad reply" % self.name)
        if err:
            fail("%s: request %d at %d (%d bytes) failed: error %d" % (self.name, typ, off, length, err))
        return self.recv(length) if typ == 0 else None

    def pread(self, off, n): return self.request(0, off, n)
    def pwrite(self, off, data, fua=False): self.request(1, off, len(data), data, 1 if fua else 0)
    def flush(self): self.request(3, 0, 0)
    def close(self):
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 0, 0, 0))
        self.s.close()

def run(*cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

mirror = {}  # off -> bytes, every write, for the final compare
def in_file(what, off, data):
    """A second process opens the image file read-only and reads DATA at OFF."""
    r = run(vmdkit, "read", image, str(off), str(len(data)))
    if r.returncode != 0:
        fail("%s: vmdkit read of the file while the server runs: exit %d: %s"
             % (what, r.returncode, r.stderr.decode().strip()))
    if r.stdout != data:
        z = r.stdout == bytes(len(data))
        fail("%s: the file does not hold the %d bytes at %d while the server runs%s"
             % (what, len(data), off, " (reads zeros: not flushed to the file)" if z else ""))
    # the grain table in the file points at it: map shows data there
    r = run(vmdkit, "map", "--output=json", image)
    if r.returncode != 0:
        fail("%s: vmdkit map of the file: %s" % (what, r.stderr.decode().strip()))
    import json
    runs = json.loads(r.stdout)
    if not any(e["data"] and e["start"] <= off and off + len(data) <= e["start"] + e["length"] for e in runs):
        fail("%s: vmdkit map of the file shows no data at %d..%d: %s" % (what, off, off + len(data), r.stdout.decode()[:500]))
    # qemu, sharing the file (-U): a constant pattern checked with read -P
    if len(set(data)) == 1:
        r = run("qemu-io", "-f", "vmdk", "-r", "-U", "-c", "read -P %d %d %d" % (data[0], off, len(data)), image)
        out = r.stdout.decode() + r.stderr.decode()
        if r.returncode != 0 or "verification failed" in out or "error" in out.lower():
            fail("%s: qemu-io -U read -P %d %d %d of the file: %s" % (what, data[0], off, len(data), out.strip()))
    r = run(vmdkit, "check", image)
    if r.returncode not in (0, 3):
        fail("%s: vmdkit check of the file while the server runs: exit %d: %s"
             % (what, r.returncode, (r.stdout + r.stderr).decode().strip()))

def rnd(seed, n):
    g = random.Random(seed)
    return bytes(g.getrandbits(8) for _ in range(n))

a, b = Conn("A"), Conn("B")
for c in (a, b):
    if c.size != 96 * M:
        fail("%s: export size %d" % (c.name, c.size))
    # HAS_FLAGS 1, SEND_FLUSH 4, SEND_FUA 8, CAN_MULTI_CONN 256; not READ_ONLY 2
    for bit, what in ((4, "flush"), (8, "FUA"), (256, "multi-conn")):
        if not c.flags & bit:
            fail("%s does not advertise %s (flags %#x)" % (c.name, what, c.flags))
    if c.flags & 2:
        fail("%s is read-only (flags %#x)" % (c.name, c.flags))

def write_flush(w, r, what, off, data, fua=False):
    w.pwrite(off, data, fua=fua)
    mirror[off] = data
    if not fua:
        w.flush()
    got = r.pread(off, len(data))
    if got != data:
        fail("%s: connection %s does not read what %s wrote%s at %d"
             % (what, r.name, w.name, " with FUA" if fua else " and flushed", off))
    in_file(what, off, data)

# 1. a fresh grain in an existing table, A -> B
write_flush(a, b, "write on A, flush on A", 5 * M + 4096, rnd(1, 70000))
# 2. the other way, a constant pattern
write_flush(b, a, "write on B, flush on B", 9 * M, bytes([0x5a]) * 65536)
# 3. over a grain that already holds data (overwrite in place)
write_flush(a, b, "overwrite on A", 5 * M + 8192, bytes([0x3c]) * 4096)
mirror[5 * M + 4096] = mirror[5 * M + 4096][:4096] + bytes([0x3c]) * 4096 + mirror[5 * M + 4096][8192:]
# 4. into a grain table the image does not have yet (the image has none
#    past the first 64 MiB; see the test's setup)
write_flush(b, a, "new table on B", 80 * M + 100, rnd(2, 5000))
# 5. FUA, no flush
write_flush(a, b, "FUA write on A", 40 * M + 512, bytes([0x77]) * 1024, fua=True)

a.close()
b.close()
with open("mirror.list", "w") as f:
    for off in sorted(mirror):
        f.write("%d %s\n" % (off, mirror[off].hex()))
print("nbdkit-flush: client checks passed")
PY

# The image: 96 MiB monolithicSparse with data in its first table; its
# directory entries past 64 MiB are cleared (as VMware leaves tables
# unallocated until needed), so write 4 allocates a new table.
"$VMDKIT" create -q img.vmdk 96M
head -c $M /dev/zero | tr '\0' '\001' | "$VMDKIT" write img.vmdk 0
python3 - img.vmdk <<'EOF'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(512)
gtes = struct.unpack_from("<I", h, 44)[0]
rgd, gd = struct.unpack_from("<QQ", h, 48)
per_table = gtes * 65536
for d in (rgd, gd):
    if d:
        f.seek(d * 512 + 4 * (64 << 20) // per_table)
        f.write(b"\0" * 4 * ((96 << 20) // per_table - (64 << 20) // per_table))
EOF
expect_rc 0 "$VMDKIT" check img.vmdk
truncate -s $((96 * M)) mirror.raw
head -c $M /dev/zero | tr '\0' '\001' | dd of=mirror.raw conv=notrunc status=none

run_nbdkit -U - "$plugin" file=img.vmdk \
  --run "python3 client.py \"\$unixsocket\" img.vmdk $(printf %q "$VMDKIT")" ||
  die "the client checks failed"

# After the server stops: the image is every write, and clean.
python3 - <<'EOF'
f = open("mirror.raw", "r+b")
for line in open("mirror.list"):
    off, data = line.split()
    f.seek(int(off))
    f.write(bytes.fromhex(data))
EOF
expect_rc 0 "$VMDKIT" check img.vmdk
expect_rc 0 qemu-img check img.vmdk
expect_rc 0 qemu-img compare -f vmdk -F raw img.vmdk mirror.raw
expect_rc 0 "$VMDKIT" compare img.vmdk mirror.raw
echo "nbdkit-flush: all checks passed"
