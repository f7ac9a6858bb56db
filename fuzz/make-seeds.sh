#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Regenerate the seed corpora fuzz/corpus/{open,descriptor,write,ova}/seed-*
# (docs/FUZZING.md).  Seeds are small valid inputs of every subformat; every
# one is under 64 KiB so that -max_len 65536 keeps it whole.
#
# Usage: fuzz/make-seeds.sh VMDKIT
#   VMDKIT   the built CLI (build/vmdkit)
# Needs python3; uses qemu-img for QEMU's layouts when it is installed.
# Only files named seed-* are replaced: inputs libFuzzer added stay.
set -euo pipefail

VMDKIT=$(realpath "${1:?usage: make-seeds.sh path/to/vmdkit}")
HERE=$(cd "$(dirname "$0")" && pwd)
GEN=$HERE/../tests/gen
CORPUS=$HERE/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$CORPUS"/{open,descriptor,write,ova}
rm -f "$CORPUS"/open/seed-* "$CORPUS"/descriptor/seed-* "$CORPUS"/write/seed-* \
  "$CORPUS"/ova/seed-*

# pack OUT FILE... : the FZMF container of fuzz_common.h (first FILE is the
# image to open; names are the files' base names).
pack() {
  python3 - "$@" <<'EOF'
import os, struct, sys
out, files = sys.argv[1], sys.argv[2:]
b = bytearray(b"FZMF")
for f in files:
    name = os.path.basename(f).encode()
    data = open(f, "rb").read()
    b += bytes([len(name)]) + name + struct.pack("<I", len(data)) + data
open(out, "wb").write(b)
EOF
}

# pattern FILE OFFSET LEN: write LEN patterned bytes at OFFSET into FILE's disk.
pattern() {
  python3 -c "import sys; sys.stdout.buffer.write(bytes((i*7+$2) % 251 for i in range($3)))" |
    "$VMDKIT" write "$1" "$2" >/dev/null
}

o=$CORPUS/open
cd "$tmp"

# ---- hosted sparse (KDMV), one file --------------------------------------
"$VMDKIT" create -q -o grain_size=4096 sparse.vmdk 64K
cp sparse.vmdk "$o/seed-sparse-empty.vmdk"
pattern sparse.vmdk 0 700
pattern sparse.vmdk 20000 9000
pattern sparse.vmdk 65000 536
cp sparse.vmdk "$o/seed-sparse-data.vmdk"

"$VMDKIT" create -q -o grain_size=4096,zeroed_grain=on zg.vmdk 64K
pattern zg.vmdk 4096 4096
cp zg.vmdk "$o/seed-sparse-zeroed-grain.vmdk"

"$VMDKIT" create -q -o grain_size=65536 big.vmdk 16M
cp big.vmdk "$o/seed-sparse-64k-grains.vmdk"

"$VMDKIT" create -q -o grain_size=4096 odd.vmdk 33281b
pattern odd.vmdk 33000 281
cp odd.vmdk "$o/seed-sparse-partial-grain.vmdk"

# ---- streamOptimized -------------------------------------------------------
"$VMDKIT" create -q -o subformat=streamOptimized,grain_size=4096 s.vmdk 64K
cp s.vmdk "$o/seed-stream-empty.vmdk"
"$VMDKIT" create -q -o subformat=streamOptimized,grain_size=4096 s2.vmdk 64K
pattern s2.vmdk 0 5000
pattern s2.vmdk 40960 9000
cp s2.vmdk "$o/seed-stream-data.vmdk"

# ---- descriptor + extent files ---------------------------------------------
mkdir flat && (cd flat && "$VMDKIT" create -q -o subformat=monolithicFlat d.vmdk 8K &&
  pattern d.vmdk 100 300 && pack "$o/seed-flat" d.vmdk d-flat.vmdk)
mkdir vmfs && (cd vmfs && "$VMDKIT" create -q -o subformat=vmfs d.vmdk 8K &&
  pattern d.vmdk 5000 300 && pack "$o/seed-vmfs" d.vmdk d-flat.vmdk)
mkdir twos && (cd twos && "$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse,grain_size=4096 d.vmdk 32K &&
  pattern d.vmdk 4000 300 && pack "$o/seed-twogb-sparse" d.vmdk d-s001.vmdk)
mkdir twof && (cd twof && "$VMDKIT" create -q -o subformat=twoGbMaxExtentFlat d.vmdk 8K &&
  pattern d.vmdk 0 512 && pack "$o/seed-twogb-flat" d.vmdk d-f001.vmdk)

# a chain: child over a sparse parent
mkdir chain && (cd chain && "$VMDKIT" create -q -o grain_size=4096 base.vmdk 32K &&
  pattern base.vmdk 0 10000 &&
  "$VMDKIT" create -q -b base.vmdk -o grain_size=4096,zeroed_grain=on child.vmdk &&
  pattern child.vmdk 6000 4000 &&
  pack "$o/seed-chain" child.vmdk base.vmdk)

# mixed extents: FLAT, SPARSE, ZERO and a FLAT at an offset in one descriptor
mkdir mixed && (cd mixed &&
  "$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse,grain_size=4096 sp.vmdk 16K &&
  pattern sp.vmdk 0 2000 &&
  python3 -c "import sys; sys.stdout.buffer.write(bytes(i % 253 for i in range(8192)))" >fl.bin &&
  cat >d.vmdk <<EOF
# Disk DescriptorFile
version=1
CID=0badcafe
parentCID=ffffffff
createType="custom"

# Extent description
RW 8 FLAT "fl.bin" 0
RW 32 SPARSE "sp-s001.vmdk"
RW 16 ZERO
RDONLY 4 FLAT "fl.bin" 12

# The Disk Data Base
#DDB

ddb.adapterType = "ide"
EOF
  pack "$o/seed-mixed" d.vmdk fl.bin sp-s001.vmdk)

# ESXi vmfsSparse (COWD): descriptor + delta, and the delta opened bare
mkdir cowd && (cd cowd && python3 "$GEN/make_cowd.py" . c >/dev/null &&
  pack "$o/seed-cowd" c.vmdk c-delta.vmdk && cp c-delta.vmdk "$o/seed-cowd-bare.vmdk")

# ESXi seSparse: a 32 KiB disk, one grain table, two grains and the other
# entry types (the layout of tests/gen/make_sesparse.py, made small).
mkdir se && (cd se && python3 - <<'EOF'
import struct
S = 512
cap = 64                                   # sectors
vol, jh, j, jn, gd, gts, fb, bm = 1, 2, 3, 1, 4, 5, 69, 70
grains = 72                                # multiple of 8
img = bytearray((grains + 2 * 8) * S)
struct.pack_into("<10Q", img, 0, 0xCAFEBABE, 0x0000000200000001, cap, 8, 64,
                 0, 0, 0, 0, 0)
struct.pack_into("<16Q", img, 80, vol, 1, jh, 1, j, jn, gd, 1, gts, 64,
                 fb, 1, bm, 1, grains, 16)
struct.pack_into("<4Q", img, vol * S, 0xCAFECAFE, 1, 1, 0)
struct.pack_into("<Q", img, gd * S, (0x10000000 << 32) | 0)
alloc = lambda i: (3 << 60) | ((i & 0xFFF) << 48) | (i >> 12)
for i, e in {0: alloc(0), 1: 1 << 60, 2: 2 << 60, 7: alloc(1)}.items():
    struct.pack_into("<Q", img, gts * S + 8 * i, e)
for k in range(2):
    off = (grains + 8 * k) * S
    img[off:off + 8 * S] = bytes((k * 31 + i) % 251 for i in range(8 * S))
open("e-sesparse.vmdk", "wb").write(img)
open("e.vmdk", "w").write(
    '# Disk DescriptorFile\nversion=1\nCID=5a3c1e02\nparentCID=ffffffff\n'
    'createType="seSparse"\n\n# Extent description\n'
    'RW %d SESPARSE "e-sesparse.vmdk"\n\n# The Disk Data Base\n#DDB\n\n'
    'ddb.adapterType = "lsilogic"\n' % cap)
EOF
  pack "$o/seed-sesparse" e.vmdk e-sesparse.vmdk)

# raw
python3 -c "import sys; sys.stdout.buffer.write(bytes(i % 256 for i in range(4096)))" >"$o/seed-raw"

# QEMU's sparse layout (GD and tables at the front after the RGD), when
# qemu-img is there (exactly 64 KiB; its streamOptimized files are 128 KiB,
# too big: ../shared/corpus/qemu-sample-images/ has a stream for replay)
if command -v qemu-img >/dev/null; then
  qemu-img create -q -f vmdk q.vmdk 64K
  cp q.vmdk "$o/seed-qemu-sparse.vmdk"
fi

# ---- descriptor seeds: the text of every descriptor above, and variants ----
d=$CORPUS/descriptor
n=0
for f in */*.vmdk *.vmdk; do
  if head -c 64 "$f" | grep -aq "Disk Descriptor"; then
    cp "$f" "$d/seed-desc-$n"
  elif ! python3 - "$f" "$d/seed-desc-$n" <<'PY'; then
import struct, sys
b = open(sys.argv[1], "rb").read()
if b[:4] != b"KDMV":
    sys.exit(1)
off, size = struct.unpack_from("<QQ", b, 28)  # embedded descriptor, sectors
text = b[off * 512:(off + size) * 512].split(b"\0")[0]
if not off or not text:
    sys.exit(1)
open(sys.argv[2], "wb").write(text)
PY
    continue
  fi
  n=$((n + 1))
done
printf '# Disk DescriptorFile\r\nversion=1\r\nencoding="UTF-8"\r\nCID=fffffffe\r\nparentCID=12345678\r\ncreateType="monolithicSparse"\r\nparentFileNameHint="../base dir/parent.vmdk"\r\n\r\n# Extent description\r\nRW 2048 SPARSE "child disk.vmdk"\r\n\r\n# The Disk Data Base\r\n#DDB\r\n\r\nddb.virtualHWVersion = "4"\r\nddb.geometry.cylinders="2"\r\nddb.adapterType = ide\r\n' >"$d/seed-crlf-hint"
printf '#Disk Descriptor File\n  version = 1\ncid=1\nCreateType = vmfs\n\nRW 1000 VMFS "a-flat.vmdk" 0\nRDONLY 24 VMFSRDM "rdm.vmdk"\nNOACCESS 8 ZERO\nRW 16 VMFSRAW "/dev/sda" 2048 extra fields\nRW 8 VMFSSPARSE "d-delta.vmdk"\nRW 8 SESPARSE "d-sesparse.vmdk"\n# trailing comment\nddb.uuid = "60 00 C2 9b"\n' >"$d/seed-vmfs-kinds"

# ---- write seeds: a config byte and operations (fuzz_write.c) ---------------
python3 - "$CORPUS/write" <<'EOF'
import random, struct, sys
out = sys.argv[1]
rng = random.Random(6)
# (name, config byte): every layout, both grain sizes, a backing, unsafe
configs = [("sparse", 0), ("zeroed", 1), ("stream", 2), ("flat", 3),
           ("sparse-64k", 4), ("stream-64k", 6), ("sparse-backing", 8),
           ("zeroed-backing", 9), ("zeroed-64k-backing", 13),
           ("sparse-unsafe", 16), ("stream-unsafe", 18)]
DISK = 1024 * 1024 + 7 * 512
def op(kind, off, length, fill, big=False):
    return struct.pack("<B", kind | (0x80 if big else 0)) + \
        struct.pack("<I", off)[:3] + struct.pack("<H", length) + bytes([fill])
for name, cfg in configs:
    ops = [op(0, 0, 5000, 0x41), op(4, 0, 9000, 0), op(3, 1000, 2000, 0),
           op(7, 8192, 1, 0x42), op(5, 0, 0, 0), op(0, DISK - 100, 100, 0x43),
           op(6, 0, 0, 0), op(0, 300000, 4096, 0x44, big=True),
           op(3, 290000, 20000, 0), op(4, 280000, 65535, 0)]
    for _ in range(20):
        ops.append(op(rng.choice([0, 1, 2, 3, 4, 5, 6, 7]),
                      rng.randrange(DISK), rng.randrange(70000) % 65536,
                      rng.randrange(256), rng.random() < 0.2))
    open("%s/seed-%s" % (out, name), "wb").write(bytes([cfg]) + b"".join(ops))
EOF

# ---- ova seeds: archives (fuzz_ova.c), and OVF texts as they are -----------
v=$CORPUS/ova
# made by vmdkit ova create from 1 MiB disks with a little data, then each
# disk member replaced by the same data as a streamOptimized file with 4 KiB
# grains (ova create's 64 KiB grains and overhead make 80 KiB archives), the
# OVF's ovf:size and the manifest's digests fixed to match
mkdir ova && (cd ova &&
  for n in d e; do
    "$VMDKIT" create -q -o subformat=monolithicFlat $n.vmdk 1M &&
    "$VMDKIT" create -q -o subformat=streamOptimized,grain_size=4096 s$n.vmdk 1M
  done &&
  for f in d.vmdk sd.vmdk; do
    pattern $f 0 3000 && pattern $f 524288 700 && pattern $f 1048000 576
  done &&
  "$VMDKIT" ova create --disk=d.vmdk --name=app app.ova >/dev/null &&
  "$VMDKIT" ova create --disk=d.vmdk --name=bios --firmware=bios \
    --controller=sata --nic=e1000 --product=P --vendor=V --version=1 \
    --annotation=note --property=k=v bios.ova >/dev/null &&
  "$VMDKIT" ova create --disk=d.vmdk --disk=e.vmdk --name=two \
    --controller=ide two.ova >/dev/null &&
  python3 - "$v" <<'EOF'
import hashlib, io, re, sys, tarfile
out = sys.argv[1]
def repack(src, dst, disks):
    with tarfile.open(src) as t:
        members = [(i.name, t.extractfile(i).read()) for i in t.getmembers()]
    members = [(n, open(disks[n], "rb").read() if n in disks else b)
               for n, b in members]
    sizes = dict((n, len(b)) for n, b in members)
    fixed = []
    for n, b in members:
        if n.endswith(".ovf"):
            b = re.sub(rb'ovf:href="([^"]+)"( ovf:id="[^"]*")? ovf:size="\d+"',
                       lambda m: b'ovf:href="%s"%s ovf:size="%d"' % (
                           m.group(1), m.group(2) or b"",
                           sizes[m.group(1).decode()]), b)
        fixed.append((n, b))
    digest = dict((n, hashlib.sha256(b).hexdigest()) for n, b in fixed)
    fixed = [(n, "".join("SHA256(%s)= %s\n" % (k, digest[k])
                         for k, _ in fixed if not k.endswith(".mf")).encode()
              if n.endswith(".mf") else b) for n, b in fixed]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for n, b in fixed:
            i = tarfile.TarInfo(n)
            i.size, i.mtime = len(b), 1700000000
            t.addfile(i, io.BytesIO(b))
    open("%s/%s" % (out, dst), "wb").write(buf.getvalue())
repack("app.ova", "seed-ova-create", {"app-disk1.vmdk": "sd.vmdk"})
repack("bios.ova", "seed-ova-create-bios-sata", {"bios-disk1.vmdk": "sd.vmdk"})
repack("two.ova", "seed-ova-create-two-disks",
       {"two-disk1.vmdk": "sd.vmdk", "two-disk2.vmdk": "se.vmdk"})
EOF
)
# hand-built tars: a descriptor + its FLAT extent (no OVF: the first .vmdk
# member), the same with an OVF naming it, members under "./dir/", a pax
# tar (long names in pax "path" records), a GNU tar (long names in "L"
# headers), and an archive of only an OVF
python3 - "$v" "$HERE/../tests/interop/ova/vmware.ovf" <<'EOF'
import io, sys, tarfile
out, ovf_src = sys.argv[1], sys.argv[2]
flat = bytes((i * 7 + 3) % 251 for i in range(8192))
def desc(extent):
    return ('# Disk DescriptorFile\nversion=1\nCID=0badcafe\n'
            'parentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
            '# Extent description\nRW 16 FLAT "%s" 0\n\n'
            '# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\n'
            % extent).encode()
def ovf(disk, size):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
            'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" '
            'xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/'
            'CIM_ResourceAllocationSettingData">\n'
            '<References><File ovf:id="f1" ovf:href="%s" ovf:size="%d"/>'
            '</References>\n<DiskSection><Info>disks</Info>'
            '<Disk ovf:diskId="vmdisk1" ovf:fileRef="f1" ovf:capacity="8192"/>'
            '</DiskSection>\n<VirtualSystem ovf:id="vm"><Name>t</Name>'
            '<VirtualHardwareSection><Item><rasd:InstanceID>3'
            '</rasd:InstanceID><rasd:ResourceType>6</rasd:ResourceType>'
            '</Item><Item><rasd:HostResource>ovf:/disk/vmdisk1'
            '</rasd:HostResource><rasd:Parent>3</rasd:Parent>'
            '<rasd:AddressOnParent>0</rasd:AddressOnParent>'
            '<rasd:ResourceType>17</rasd:ResourceType></Item>'
            '</VirtualHardwareSection></VirtualSystem>\n</Envelope>\n'
            % (disk, size)).encode()
def tar(name, fmt, members):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for n, data in members:
            i = tarfile.TarInfo(n)
            i.size = len(data)
            i.mtime = 1700000000
            t.addfile(i, io.BytesIO(data))
    open("%s/%s" % (out, name), "wb").write(b.getvalue())
U = tarfile.USTAR_FORMAT
tar("seed-tar-flat", U, [("d.vmdk", desc("d-flat.vmdk")), ("d-flat.vmdk", flat)])
d = desc("d-flat.vmdk")
tar("seed-tar-ovf-flat", U, [("a.ovf", ovf("d.vmdk", len(d))), ("d.vmdk", d),
                             ("d-flat.vmdk", flat)])
tar("seed-tar-dir-flat", U, [("./dir/d.vmdk", desc("d-flat.vmdk")),
                             ("./dir/d-flat.vmdk", flat)])
long = "x" * 120
d = desc(long + "-flat.vmdk")
for name, fmt in (("seed-tar-pax", tarfile.PAX_FORMAT),
                  ("seed-tar-gnu-longname", tarfile.GNU_FORMAT)):
    tar(name, fmt, [(long + ".ovf", ovf(long + ".vmdk", len(d))),
                    (long + ".vmdk", d), (long + "-flat.vmdk", flat)])
tar("seed-tar-vmware-ovf", U, [("vm.ovf", open(ovf_src, "rb").read())])
EOF
for f in "$HERE"/../tests/interop/ova/*.ovf; do
  cp "$f" "$v/seed-ovf-$(basename "$f" .ovf)"
done

ls -l "$CORPUS"/*/seed-* | awk '$5 > 65536 { print "too big: " $0; bad = 1 } END { exit bad }'
echo "seeds: $(ls "$CORPUS"/open/seed-* | wc -l) open, $(ls "$CORPUS"/descriptor/seed-* | wc -l) descriptor, $(ls "$CORPUS"/write/seed-* | wc -l) write, $(ls "$CORPUS"/ova/seed-* | wc -l) ova"
