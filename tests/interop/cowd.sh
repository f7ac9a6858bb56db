#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# vmfsSparse ("COWD", NAME-delta.vmdk) images made from the specification by
# tests/gen/make_cowd.py (qemu-img cannot create them), grain sizes 1 and 8
# sectors, standalone (no parent: chains come with issue 4):
#  - vmdkit read / convert -O raw give the generator's raw bytes, and so
#    does qemu-img (which reads a standalone delta fine); block maps agree;
#  - vmdkit check exits 0 and counts the 9 grains;
#  - the bare -delta.vmdk opens on its own as a one-extent disk;
#  - writes at odd offsets (crossing grains and grain tables, into the range
#    whose grain table does not exist yet) match a raw mirror, in vmdkit and
#    qemu-img; check stays clean, freeSector follows the file's end and the
#    header is intact (QEMU 7.2 writes such grains at offset 0);
#  - hostile headers and tables: one clear error, non-zero exit, the extent
#    file unchanged.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3
gen=$SRC_DIR/tests/gen/make_cowd.py
have_qemu=0
command -v qemu-img >/dev/null && have_qemu=1

# the header field at byte OFFSET of FILE (uint32 LE)
u32() {
  python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); f.seek(int(sys.argv[2])); print(struct.unpack("<I", f.read(4))[0])' "$1" "$2"
}

head -c $((2 * 1024 * 1024)) /dev/urandom >"$tmpdir/random"
chunk() { # OFFSET-IN-RANDOM LENGTH -> stdout
  dd if="$tmpdir/random" bs=64K iflag=skip_bytes,count_bytes skip="$1" count="$2" status=none
}

for grain in 1 8; do
  d=$tmpdir/g$grain
  mkdir "$d"
  python3 "$gen" --grain "$grain" "$d" x
  size=$(stat -c %s "$d/x.raw")
  cover=$((4096 * grain * 512)) # bytes one grain table covers

  "$VMDKIT" read "$d/x.vmdk" 0 "$size" >"$d/read.raw" || die "g$grain: read failed"
  same "$d/x.raw" "$d/read.raw"
  "$VMDKIT" convert -O raw "$d/x.vmdk" "$d/conv.raw" || die "g$grain: convert failed"
  same "$d/x.raw" "$d/conv.raw"
  # the extent file alone: a one-extent vmfsSparse disk
  "$VMDKIT" read "$d/x-delta.vmdk" 0 "$size" | cmp - "$d/x.raw" ||
    die "g$grain: the bare COWD file reads wrong"
  "$VMDKIT" info --output=json "$d/x-delta.vmdk" >"$d/info.json"
  [[ $(json_get "$d/info.json" format-specific data create-type) == vmfsSparse ]] ||
    die "g$grain: bare COWD file: create type is not vmfsSparse"
  expect_rc 0 "$VMDKIT" check "$d/x.vmdk"
  "$VMDKIT" check --output=json "$d/x.vmdk" >"$d/check.json"
  [[ $(json_get "$d/check.json" allocated-clusters) -eq 9 ]] ||
    die "g$grain: check counts $(json_get "$d/check.json" allocated-clusters) grains, not 9"
  if ((have_qemu)); then
    qemu-img convert -f vmdk -O raw "$d/x.vmdk" "$d/qemu.raw" || die "g$grain: qemu-img convert failed"
    same "$d/x.raw" "$d/qemu.raw"
    "$VMDKIT" map --output=json "$d/x.vmdk" >"$d/map.json"
    qemu-img map -f vmdk --output=json "$d/x.vmdk" >"$d/qmap.json"
    map_grains "$d/map.json" $((grain * 512)) >"$d/map.txt"
    map_grains "$d/qmap.json" $((grain * 512)) >"$d/qmap.txt"
    cmp "$d/map.txt" "$d/qmap.txt" || die "g$grain: vmdkit and qemu-img maps differ"
  fi

  # Writes, mirrored into a raw copy.  Table 1 (bytes cover..2*cover) has
  # no grain table: writes into it allocate one at the end of the file.
  cp "$d/x.raw" "$d/mirror.raw"
  [[ $(u32 "$d/x-delta.vmdk" $((2048 + 4))) -eq 0 ]] || die "test bug: GD entry 1 is set"
  src=0
  for w in "$((cover + 777)):3000" "$((cover - 100)):5000" "7:1" \
    "$((2 * cover + 3 * 512 + 1)):70000" "$((4 * cover - cover / 2 - 10)):10" \
    "$((cover + cover / 2)):1048576" "$((cover + 777 + 1000)):33"; do
    off=${w%%:*} n=${w##*:}
    chunk $src "$n" >"$d/data"
    src=$((src + 4099))
    "$VMDKIT" write "$d/x.vmdk" "$off" <"$d/data" || die "g$grain: write of $n at $off failed"
    dd if="$d/data" of="$d/mirror.raw" bs=64K oflag=seek_bytes seek="$off" conv=notrunc status=none
  done
  "$VMDKIT" read "$d/x.vmdk" 0 "$size" | cmp - "$d/mirror.raw" ||
    die "g$grain: the written image differs from its mirror"
  expect_rc 0 "$VMDKIT" check "$d/x.vmdk"
  [[ $(head -c 4 "$d/x-delta.vmdk") == COWD ]] || die "g$grain: the header was overwritten"
  gde1=$(u32 "$d/x-delta.vmdk" $((2048 + 4)))
  ((gde1 * 512 >= 56320)) || die "g$grain: the new grain table is at sector $gde1, not after the old end of file"
  free=$(u32 "$d/x-delta.vmdk" 28)
  [[ $((free * 512)) -eq $(stat -c %s "$d/x-delta.vmdk") ]] ||
    die "g$grain: freeSector $free is not the end of the file ($(stat -c %s "$d/x-delta.vmdk") bytes)"
  if ((have_qemu)); then
    qemu-img convert -f vmdk -O raw "$d/x.vmdk" "$d/qemu2.raw" || die "g$grain: qemu-img convert after writes failed"
    same "$d/mirror.raw" "$d/qemu2.raw"
  fi
done

# Writing through the bare extent file (no descriptor: no CID to update).
d=$tmpdir/bare
mkdir "$d"
python3 "$gen" --grain 8 "$d" x
cp "$d/x.raw" "$d/mirror.raw"
chunk 100 12345 >"$d/data"
"$VMDKIT" write "$d/x-delta.vmdk" $((16 * 1024 * 1024 + 4095)) <"$d/data" || die "bare: write failed"
dd if="$d/data" of="$d/mirror.raw" bs=64K oflag=seek_bytes seek=$((16 * 1024 * 1024 + 4095)) conv=notrunc status=none
"$VMDKIT" read "$d/x.vmdk" 0 "$(stat -c %s "$d/x.raw")" | cmp - "$d/mirror.raw" ||
  die "bare: the written extent reads wrong through its descriptor"
expect_rc 0 "$VMDKIT" check "$d/x-delta.vmdk"

# An old-style child (no root flag) names its parent in the header: opened
# bare, it reads its unallocated grains from that parent; a missing parent
# is a clear error naming it.
cp "$d/x-delta.vmdk" "$d/child.vmdk"
python3 - "$d/child.vmdk" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(8)
    f.write(struct.pack("<I", 2))  # flags: check-capable, not root
    f.seek(32)
    f.write(b"base-flat.vmdk\0")
PY
run "$VMDKIT" read "$d/child.vmdk" 0 512
[[ $rc -ne 0 ]] || die "a bare COWD child whose parent is missing opened"
one_error_line "bare child"
grep -qF 'base-flat.vmdk' "$tmpdir/err" || die "bare child: the error does not name the parent: $(cat "$tmpdir/err")"
# With its parent there (a raw file of another pattern), unallocated grains
# read from the parent, allocated ones from the child.
size=$(stat -c %s "$d/mirror.raw")
python3 - "$d/base-flat.vmdk" "$size" <<'PY'
import sys
n = int(sys.argv[2])
with open(sys.argv[1], "wb") as f:
    f.write(bytes((i * 13 + 5) % 256 for i in range(65536)) * (n // 65536) + bytes(n % 65536))
PY
python3 - "$d/child.vmdk" "$d/base-flat.vmdk" "$d/mirror.raw" "$d/expect.raw" <<'PY'
import struct, sys
# expected: the child's allocated grains over the parent's bytes
child = open(sys.argv[1], "rb").read()
parent = bytearray(open(sys.argv[2], "rb").read())
mirror = open(sys.argv[3], "rb").read()
magic, ver, flags, nsec, grain, gdoff, ngde = struct.unpack_from("<7I", child, 0)
for gi in range(ngde):
    gte = struct.unpack_from("<I", child, gdoff * 512 + 4 * gi)[0]
    if not gte:
        continue
    for i in range(4096):
        e = struct.unpack_from("<I", child, gte * 512 + 4 * i)[0]
        if e:
            o = (gi * 4096 + i) * grain * 512
            parent[o:o + grain * 512] = mirror[o:o + grain * 512]
open(sys.argv[4], "wb").write(parent)
PY
"$VMDKIT" read "$d/child.vmdk" 0 "$size" | cmp - "$d/expect.raw" ||
  die "bare child: reads through its raw parent wrong"

# Hostile variants: KIND:WORDS-IN-THE-ERROR:CHECK-EXIT[:WRITE-OFFSET].
# Header problems refuse the open (check exits 1); bad table entries are
# refused when used and reported by check (exit 2).  The write goes to the
# bad entry's grain (default: grain 7 of table 2).
d=$tmpdir/bad
mkdir "$d"
chunk 0 100 >"$d/data"
for v in "magic:COWD magic:1" "version:version 2:1" "grain:grain size 3:1" \
  "gdes-huge:4294967295 entries:1" "gdes-short:numGDEntries 1:1" \
  "gd-past-eof:does not fit in the file:1" \
  "gde-past-eof:grain directory entry 2 points past the end:2" \
  "gte-past-eof:entry 7 of table 2 points past the end:2" \
  "gte-header:entry 0 of table 0 points into the header:2:100" \
  "size:numSectors 14336:1"; do
  IFS=: read -r kind words check_rc woff <<<"$v"
  python3 "$gen" --corrupt "$kind" "$d" "$kind"
  before=$(sha "$d/$kind-delta.vmdk")
  for cmd in "read $d/$kind.vmdk 0 7340032" "convert -O raw $d/$kind.vmdk $d/out.raw" \
    "write $d/$kind.vmdk ${woff:-$(((2 * 4096 + 7) * 512))}"; do
    # shellcheck disable=SC2086
    run "$VMDKIT" $cmd <"$d/data"
    [[ $rc -ne 0 ]] || die "$kind: '$cmd' succeeded"
    one_error_line "$kind: $cmd"
    grep -qF -- "$words" "$tmpdir/err" || { cat "$tmpdir/err" >&2; die "$kind: '$cmd': the error does not say '$words'"; }
    [[ ! -e $d/out.raw ]] || die "$kind: a failed convert left its output"
  done
  expect_rc "$check_rc" "$VMDKIT" check "$d/$kind.vmdk"
  [[ $(sha "$d/$kind-delta.vmdk") == "$before" ]] || die "$kind: the extent file changed"
done
echo "all ok"
