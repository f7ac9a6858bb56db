#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# seSparse (NAME-sesparse.vmdk) images made from the format by
# tests/gen/make_sesparse.py (qemu-img cannot create them), standalone:
#  - vmdkit read / convert -O raw give the generator's raw bytes (allocated
#    grains, one whose index needs both halves of the entry encoding, an
#    unmapped and a zero entry, a missing grain table), and so does
#    qemu-img; the block maps agree; vmdkit check exits 0 and counts the 6
#    allocated grains;
#  - writes are refused (seSparse is read-only in vmdkit) with one error
#    naming the file, and change nothing: not the extent, not the CID in
#    the descriptor;
#  - hostile headers and tables: one clear error, non-zero exit, the files
#    unchanged.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3
gen=$SRC_DIR/tests/gen/make_sesparse.py

d=$tmpdir/good
mkdir "$d"
python3 "$gen" "$d" x
size=$(stat -c %s "$d/x.raw")
"$VMDKIT" read "$d/x.vmdk" 0 "$size" >"$d/read.raw" || die "read failed"
same "$d/x.raw" "$d/read.raw"
"$VMDKIT" convert -O raw "$d/x.vmdk" "$d/conv.raw" || die "convert failed"
same "$d/x.raw" "$d/conv.raw"
expect_rc 0 "$VMDKIT" check "$d/x.vmdk"
"$VMDKIT" check --output=json "$d/x.vmdk" >"$d/check.json"
[[ $(json_get "$d/check.json" allocated-clusters) -eq 6 ]] ||
  die "check counts $(json_get "$d/check.json" allocated-clusters) grains, not 6"
"$VMDKIT" map --output=json "$d/x.vmdk" >"$d/map.json"
map_grains "$d/map.json" 4096 >"$d/map.txt"
# the unmapped and zero entries (grains 1 and 2) read as zeros, present
grep -q '^4096 1 1 0 -$' "$d/map.txt" || die "the unmapped grain is not mapped as a present zero"
grep -q '^8192 1 1 0 -$' "$d/map.txt" || die "the zero grain is not mapped as a present zero"
if command -v qemu-img >/dev/null; then
  qemu-img convert -f vmdk -O raw "$d/x.vmdk" "$d/qemu.raw" || die "qemu-img convert failed"
  same "$d/x.raw" "$d/qemu.raw"
  qemu-img map -f vmdk --output=json "$d/x.vmdk" >"$d/qmap.json"
  map_grains "$d/qmap.json" 4096 >"$d/qmap.txt"
  cmp "$d/map.txt" "$d/qmap.txt" || die "vmdkit and qemu-img maps differ"
fi

# Writes are refused before anything changes.
head -c 5000 /dev/urandom >"$d/data"
ext=$(sha "$d/x-sesparse.vmdk") desc=$(sha "$d/x.vmdk")
run "$VMDKIT" write "$d/x.vmdk" 4097 <"$d/data"
[[ $rc -ne 0 ]] || die "a write to a seSparse image succeeded"
one_error_line "write"
grep -q 'x-sesparse.vmdk: seSparse extents are read-only' "$tmpdir/err" ||
  { cat "$tmpdir/err" >&2; die "the write refusal does not name the file and say read-only"; }
[[ $(sha "$d/x-sesparse.vmdk") == "$ext" ]] || die "the refused write changed the extent"
[[ $(sha "$d/x.vmdk") == "$desc" ]] || die "the refused write changed the descriptor"
run "$VMDKIT" convert -O vmdk "$d/x.vmdk" "$d/copy.vmdk"
[[ $rc -eq 0 ]] || die "convert to monolithicSparse failed"
expect_rc 0 "$VMDKIT" compare "$d/x.raw" "$d/copy.vmdk"

# Hostile variants: KIND:WORDS-IN-THE-ERROR:CHECK-EXIT.
d=$tmpdir/bad
mkdir "$d"
for v in "magic:constant header magic 0x00000000cafebabf:1" \
  "version:version 0x0000000200000002:1" "grain:grain size 16:1" \
  "volatile:volatile header magic:1" "replay:journal must be replayed:1" \
  "gd-past-eof:grain directory (sector 33026:1" \
  "gde-bad:grain directory entry 0 is 0x2000000000000001:2" \
  "gde-range:names grain table 7:2" \
  "gte-past-eof:(grain 999999) points past the end:2" \
  "gte-type:entry 3 of table 0 is 0x5000000000000001:2" \
  "size:says 81920:1"; do
  IFS=: read -r kind words check_rc <<<"$v"
  python3 "$gen" --corrupt "$kind" "$d" "$kind"
  before=$(sha "$d/$kind-sesparse.vmdk")
  for cmd in "read $d/$kind.vmdk 0 41943040" "convert -O raw $d/$kind.vmdk $d/out.raw"; do
    # shellcheck disable=SC2086
    run "$VMDKIT" $cmd
    [[ $rc -ne 0 ]] || die "$kind: '$cmd' succeeded"
    one_error_line "$kind: $cmd"
    grep -qF -- "$words" "$tmpdir/err" || { cat "$tmpdir/err" >&2; die "$kind: '$cmd': the error does not say '$words'"; }
    [[ ! -e $d/out.raw ]] || die "$kind: a failed convert left its output"
  done
  expect_rc "$check_rc" "$VMDKIT" check "$d/$kind.vmdk"
  [[ $(sha "$d/$kind-sesparse.vmdk") == "$before" ]] || die "$kind: the extent file changed"
done
echo "all ok"
