#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Every format QEMU reads, in and out, through QEMU's own NBD server
# (qemu-nbd, started by libnbd with socket activation):
#
#  1. In: qcow2 (plain, compressed clusters, a backing chain), vhdx, vdi,
#     vpc (dynamic, and fixed: its footer is only at the end), qed and
#     parallels made by qemu-img from one raw pattern are probed (info
#     names the format; -f FMT too) and converted to VMDK and to raw: the
#     bytes are the pattern's (qemu-img compare, vmdkit compare, cmp), and
#     holes stay holes (the VMDK allocates exactly the grains that hold
#     non-zero bytes).  map and compare read them too; mount shows a qcow2
#     read-only and read-write (where FUSE mounts work).
#  2. Out: VMDK -> qcow2, vhdx, vdi: qemu-img compare and vmdkit compare
#     agree with the source; the output allocates no more data than
#     qemu-img convert's own output of the same image (qemu-img map).
#  3. A VMware layout QEMU 7.2 misreads (a descriptor with a ZERO extent
#     between two FLAT ones: qemu-img drops the ZERO extent) comes out
#     right as qcow2.
#  4. Errors, one line each, nothing written: qemu-nbd missing from PATH
#     (the message names the Debian package qemu-utils) for convert from
#     and to qcow2; qemu-nbd's own message for a qcow2 it refuses; -o and
#     -B with a QEMU -O; an unknown -O name.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-nbd qemu-io python3
cd "$tmpdir"
K=1024
M=$((1024 * 1024))

# The pattern: 48 MiB, random data at a few places (one piece across a
# 64 KiB boundary), a stretch of written zeros, holes elsewhere.
python3 - src.raw <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(48 << 20)
    for off, n in ((0, 4096), (5 << 20, 200000), ((20 << 20) + 12345, 70000),
                   ((48 << 20) - 65536, 65536)):
        f.seek(off)
        f.write(os.urandom(n))
    f.seek(30 << 20)
    f.write(bytes(1 << 20))
PY
# grains of 64 KiB that hold a non-zero byte
nonzero_grains() {
  python3 - "$1" <<'PY'
import sys
n = 0
with open(sys.argv[1], "rb") as f:
    while True:
        b = f.read(65536)
        if not b:
            break
        n += any(b)
print(n)
PY
}
# bytes qemu-img map reports as data
data_bytes() {
  qemu-img map --output=json "$@" | python3 -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))'
}
want_grains=$(nonzero_grains src.raw)

# ---- 1. in ---------------------------------------------------------------
qemu-img convert -f raw -O qcow2 src.raw in.qcow2
qemu-img convert -f raw -O qcow2 -c src.raw in-c.qcow2
qemu-img convert -f raw -O vhdx src.raw in.vhdx
qemu-img convert -f raw -O vdi src.raw in.vdi
qemu-img convert -f raw -O vpc -o force_size=on src.raw in.vpc
qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on src.raw in-fixed.vpc
qemu-img convert -f raw -O qed src.raw in.qed
qemu-img convert -f raw -O parallels src.raw in.parallels
# a backing chain: base.qcow2 <- top.qcow2, with writes in the top
qemu-img convert -f raw -O qcow2 src.raw base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 0x5a $((7 * M)) $((100 * K))" \
  -c "write -z 0 4096" top.qcow2 >/dev/null
cp src.raw top.raw
python3 - top.raw $((7 * M)) $((100 * K)) <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(b"\x5a" * int(sys.argv[3]))
    f.seek(0); f.write(bytes(4096))
PY
ls -l in-c.qcow2 in.qcow2 >&2
(($(stat -c %s in-c.qcow2) < $(stat -c %s in.qcow2))) ||
  die "the compressed qcow2 is not smaller: no compressed clusters to test"

for img in in.qcow2:qcow2:src.raw in-c.qcow2:qcow2:src.raw \
  top.qcow2:qcow2:top.raw in.vhdx:vhdx:src.raw in.vdi:vdi:src.raw \
  in.vpc:vpc:src.raw in-fixed.vpc:vpc:src.raw in.qed:qed:src.raw \
  in.parallels:parallels:src.raw; do
  IFS=: read -r file fmt want <<<"$img"
  expect_rc 0 "$VMDKIT" info "$file"
  grep -q "^file format: $fmt\$" out || die "$file: info says $(grep 'file format' out)"
  grep -q "^virtual size: 48 MiB" out || die "$file: info: $(cat out)"
  expect_rc 0 "$VMDKIT" convert -O vmdk "$file" "$file.vmdk"
  expect_rc 0 qemu-img compare -f raw -F vmdk "$want" "$file.vmdk"
  expect_rc 0 "$VMDKIT" compare "$want" "$file.vmdk"
  expect_rc 0 "$VMDKIT" compare "$file" "$want"
  expect_rc 0 "$VMDKIT" convert -f "$fmt" -O raw "$file" "$file.raw"
  same "$want" "$file.raw"
  # holes stay holes: exactly the grains with non-zero bytes
  "$VMDKIT" check --output=json "$file.vmdk" >check.json
  got=$(json_get check.json allocated-clusters)
  g=$want_grains
  [[ $want == top.raw ]] && g=$(nonzero_grains top.raw)
  ((got == g)) || die "$file -> vmdk allocated $got grains, expected $g"
  "$VMDKIT" map --output=json "$file" >map.json
  [[ $(json_get map.json 0 start) == 0 ]] || die "$file: map"
done
# the map of a qcow2 has its holes (qemu-img map agrees on what is data)
"$VMDKIT" map --output=json in.qcow2 >map.json
python3 - map.json <<'PY' || die "in.qcow2: vmdkit map shows no hole"
import json, sys
runs = json.load(open(sys.argv[1]))
assert any(not r["data"] for r in runs) and any(r["data"] for r in runs)
PY
echo "in: qcow2 (plain, compressed, chain), vhdx, vdi, vpc, qed, parallels read right, holes kept"

# mount: a qcow2 as one raw file, read-only and read-write (where FUSE
# mounts work here; the writes land in the qcow2 through qemu-nbd)
if [[ -c /dev/fuse ]] && command -v fusermount3 >/dev/null &&
  command -v mountpoint >/dev/null; then
  mkdir mnt
  mount_fg() { # IMAGE [-r]: mount in the foreground, in the background
    "$VMDKIT" mount -f ${2:-} "$1" mnt 2>mount.err &
    mpid=$!
    for _ in $(seq 100); do
      mountpoint -q mnt && return 0
      kill -0 $mpid 2>/dev/null || break
      sleep 0.1
    done
    kill $mpid 2>/dev/null || true
    wait $mpid || true
    return 1
  }
  if mount_fg in.qcow2 -r; then
    cmp mnt/in.raw src.raw || { fusermount3 -u mnt; die "mount of a qcow2 reads other bytes"; }
    fusermount3 -u mnt
    wait $mpid || die "vmdkit mount -r of a qcow2 exited $?"
    cp in.qcow2 rw.qcow2
    mount_fg rw.qcow2 || die "mount of a qcow2 read-write failed: $(cat mount.err)"
    printf 'written through the mount' |
      dd of=mnt/rw.raw bs=1 seek=$((9 * M + 3)) conv=notrunc status=none
    fusermount3 -u mnt
    wait $mpid || die "vmdkit mount of a qcow2 exited $?"
    cp src.raw rw.raw
    printf 'written through the mount' |
      dd of=rw.raw bs=1 seek=$((9 * M + 3)) conv=notrunc status=none
    expect_rc 0 qemu-img compare -f raw -F qcow2 rw.raw rw.qcow2
    expect_rc 0 qemu-img check -q -f qcow2 rw.qcow2
    echo "mount: a qcow2 read and written through FUSE"
  else
    echo "note: no FUSE mount here ($(head -n1 mount.err)); mount not checked"
  fi
fi

# ---- 2. out --------------------------------------------------------------
"$VMDKIT" convert -O vmdk src.raw src.vmdk
for fmt in qcow2 vhdx vdi; do
  expect_rc 0 "$VMDKIT" convert -O $fmt src.vmdk out.$fmt
  expect_rc 0 qemu-img compare -f vmdk -F $fmt src.vmdk out.$fmt
  expect_rc 0 qemu-img compare -f raw -F $fmt src.raw out.$fmt
  expect_rc 0 "$VMDKIT" compare src.vmdk out.$fmt
  expect_rc 0 qemu-img check -f $fmt out.$fmt
  qemu-img convert -f vmdk -O $fmt src.vmdk ref.$fmt
  ours=$(data_bytes -f $fmt out.$fmt)
  theirs=$(data_bytes -f $fmt ref.$fmt)
  ((ours <= theirs)) || die "-O $fmt: $ours data bytes, qemu-img convert's output has $theirs"
  echo "out $fmt: $ours data bytes (qemu-img convert: $theirs)"
done
# a QEMU image is also a source for another QEMU format
expect_rc 0 "$VMDKIT" convert -O qcow2 in.vdi out2.qcow2
expect_rc 0 qemu-img compare -f raw -F qcow2 src.raw out2.qcow2

# ---- 3. a VMware layout QEMU misreads -------------------------------------
head -c $M /dev/urandom >flat.bin
cat >zero-extent.vmdk <<'EOF'
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 2048 FLAT "flat.bin" 0
RW 2048 ZERO
RW 2048 FLAT "flat.bin" 0

# The Disk Data Base
ddb.adapterType = "ide"
EOF
{ cat flat.bin; head -c $M /dev/zero; cat flat.bin; } >zero-extent.raw
expect_rc 0 "$VMDKIT" convert -O qcow2 zero-extent.vmdk zero-extent.qcow2
expect_rc 0 qemu-img compare -f raw -F qcow2 zero-extent.raw zero-extent.qcow2
expect_rc 0 "$VMDKIT" compare zero-extent.raw zero-extent.qcow2
# (qemu-img convert of the same descriptor: QEMU 7.2 leaves the ZERO
# extent out, a 2 MiB disk with the second FLAT extent at 1 MiB)
qemu-img convert -f vmdk -O qcow2 zero-extent.vmdk qemu-zero.qcow2
if qemu-img compare -q -f raw -F qcow2 zero-extent.raw qemu-zero.qcow2; then
  echo "note: this qemu-img reads the ZERO extent right"
else
  echo "qemu-img misreads the ZERO extent; vmdkit's qcow2 is right"
fi

# ---- 4. errors -----------------------------------------------------------
# qemu-nbd missing: only qemu-img on PATH (and what the shell needs)
mkdir bin
ln -s "$(command -v qemu-img)" bin/qemu-img
expect_rc 1 env PATH="$tmpdir/bin" "$VMDKIT" convert -O vmdk in.qcow2 gone.vmdk
one_error_line "convert from qcow2 without qemu-nbd"
grep -q "qemu-nbd is not installed.*qemu-utils" err || die "no qemu-nbd: $(cat err)"
[[ ! -e gone.vmdk ]] || die "convert without qemu-nbd left gone.vmdk"
expect_rc 1 env PATH="$tmpdir/bin" "$VMDKIT" convert -O qcow2 src.vmdk gone.qcow2
one_error_line "convert to qcow2 without qemu-nbd"
grep -q "qemu-nbd is not installed.*qemu-utils" err || die "no qemu-nbd: $(cat err)"
[[ ! -e gone.qcow2 ]] || die "convert without qemu-nbd left gone.qcow2"
expect_rc 1 env PATH="$tmpdir/bin" "$VMDKIT" info in.vhdx
one_error_line "info of vhdx without qemu-nbd"
# qemu-nbd's own message, in one line
python3 - bad.qcow2 <<'PY'
import struct, sys
h = b"QFI\xfb" + struct.pack(">I", 3) + bytes(12) + struct.pack(">I", 0)
open(sys.argv[1], "wb").write(h.ljust(1 << 20, b"\0"))
PY
expect_rc 1 "$VMDKIT" convert -O vmdk bad.qcow2 gone.vmdk
one_error_line "a qcow2 qemu-nbd refuses"
grep -q "bad.qcow2: qemu-nbd -f qcow2: .*cluster size" err || die "qemu-nbd's message: $(cat err)"
[[ ! -e gone.vmdk ]] || die "a failed convert left gone.vmdk"
expect_rc 1 "$VMDKIT" info -f vdi in.qcow2
one_error_line "-f vdi on a qcow2"
grep -q "qemu-nbd -f vdi" err || die "-f vdi on a qcow2: $(cat err)"
expect_rc 1 "$VMDKIT" convert -O qcow2 -o subformat=vmfs src.vmdk gone.qcow2
one_error_line "-o with -O qcow2"
expect_rc 1 "$VMDKIT" convert -O qcow2 -B src.vmdk src.raw gone.qcow2
one_error_line "-B with -O qcow2"
expect_rc 1 "$VMDKIT" convert -O dmg src.vmdk gone.dmg
one_error_line "-O dmg"
[[ ! -e gone.qcow2 && ! -e gone.dmg ]] || die "a refused convert left a file"
# a write qemu-nbd fails (the file size limit it inherits: ENOSPC) fails
# the convert, in one line, and the output is removed
head -c $((12 * M)) /dev/urandom >full.raw
"$VMDKIT" convert -O vmdk full.raw full.vmdk
expect_rc 1 bash -c "ulimit -f 4096 && exec \"\$0\" convert -O qcow2 full.vmdk full.qcow2" "$VMDKIT"
one_error_line "a write qemu-nbd fails"
grep -q "full.qcow2: write of [0-9]* bytes at offset [0-9]* failed: " err ||
  die "a failed write: $(cat err)"
[[ ! -e full.qcow2 ]] || die "a convert whose write failed left full.qcow2"
# check is VMDK's: a qcow2 is not reported clean
expect_rc 1 "$VMDKIT" check in.qcow2
one_error_line "check of a qcow2"
grep -q "use qemu-img check for a qcow2 image" err || die "check of a qcow2: $(cat err)"
# confined opens refuse QEMU images (qemu-nbd follows their backing names)
expect_rc 1 "$VMDKIT" info --confine top.qcow2
one_error_line "--confine with a qcow2"
echo "qemu-formats: all checks passed"
