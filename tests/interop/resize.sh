#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit resize (qemu-img cannot resize VMDK at all):
#  - growing monolithicSparse (past new grain tables), monolithicFlat,
#    twoGbMaxExtentSparse/Flat (past the 2047 MiB extent: a new extent
#    file), raw and a child image: qemu-img info shows the new size, the old
#    data is intact and the new part reads zeros (qemu-img compare against a
#    grown raw mirror), qemu-img check and vmdkit check pass, and writes into
#    the new part land;
#  - relative sizes (+SIZE, -SIZE);
#  - shrinking is refused without --shrink and when the part cut off holds
#    data (files unchanged), and done with --shrink when it holds none.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img python3

cd "$tmpdir"
G=65536
M=$((1024 * 1024))

checks_clean() {
  run qemu-img check "$1"
  [[ $rc -eq 0 ]] && grep -q "No errors" out || { cat out err >&2; die "$1: qemu-img check: exit $rc"; }
  expect_rc 0 "$VMDKIT" check "$@"
}
# IMAGE has SIZE bytes (qemu-img and vmdkit) and reads exactly MIRROR
verify() { # IMAGE MIRROR SIZE [FMT]
  local fmt=${4:-vmdk}
  qemu-img info -f "$fmt" --output=json "$1" >info.json
  [[ $(json_get info.json virtual-size) -eq $3 ]] || die "$1: qemu-img size $(json_get info.json virtual-size), expected $3"
  "$VMDKIT" info -f "$fmt" --output=json "$1" >info.json
  [[ $(json_get info.json virtual-size) -eq $3 ]] || die "$1: vmdkit size $(json_get info.json virtual-size), expected $3"
  [[ $(stat -c %s "$2") -eq $3 ]] || die "test bug: mirror $2 is not $3 bytes"
  run qemu-img compare -f "$fmt" -F raw "$1" "$2"
  [[ $rc -eq 0 ]] || { cat out err >&2; die "$1 does not read as $2 (qemu-img compare: exit $rc)"; }
  expect_rc 0 "$VMDKIT" compare -f "$fmt" -F raw "$1" "$2"
}
put() { # IMAGE MIRROR OFF LEN BYTE
  head -c "$4" /dev/zero | tr '\0' "$5" >chunk
  "$VMDKIT" write "$1" "$3" <chunk || die "vmdkit write $1 $3 failed"
  dd if=chunk of="$2" bs=64K oflag=seek_bytes seek="$3" conv=notrunc status=none
}
resize_ok() { # ARGS...: resize succeeds and says so
  expect_rc 0 "$VMDKIT" resize "$@"
  [[ $(cat out) == "Image resized." ]] || die "resize $*: output $(cat out)"
}

# ---- monolithicSparse: grow by a few grains, then past many grain tables -------
size=$((5000 * 1024)) # not a multiple of the grain
"$VMDKIT" create -q sp.vmdk $size
truncate -s $size sp.raw
put sp.vmdk sp.raw 0 100 'a'
put sp.vmdk sp.raw $((size - G - 3)) $((G + 3)) 'b' # the last (partial) grain
resize_ok sp.vmdk +3M
size=$((size + 3 * M))
truncate -s $size sp.raw
verify sp.vmdk sp.raw $size
checks_clean sp.vmdk
put sp.vmdk sp.raw $((size - 1)) 1 'c'
verify sp.vmdk sp.raw $size
# 100 MiB: a grain table covers 32 MiB of 64 KiB grains
resize_ok sp.vmdk 100M
size=$((100 * M))
truncate -s $size sp.raw
put sp.vmdk sp.raw $((99 * M + 7)) 300000 'd'
put sp.vmdk sp.raw $((40 * M - 1)) 2 'e'
verify sp.vmdk sp.raw $size
checks_clean sp.vmdk

# ---- shrinking -------------------------------------------------------------------
before=$(sha sp.vmdk)
expect_rc 1 "$VMDKIT" resize sp.vmdk 50M
one_error_line "shrink without --shrink"
grep -q -- "--shrink" err || die "shrink without --shrink: $(cat err)"
expect_rc 1 "$VMDKIT" resize sp.vmdk -1M
grep -q -- "--shrink" err || die "resize -1M without --shrink: $(cat err)"
expect_rc 1 "$VMDKIT" resize --shrink sp.vmdk 99M # 'd' lies past 99M
one_error_line "shrink over data"
grep -q "holds data" err || die "shrink over data: $(cat err)"
[[ $(sha sp.vmdk) == "$before" ]] || die "a refused shrink changed the image"
verify sp.vmdk sp.raw $size
# the part past 99M+300007 holds no data: cut it off
resize_ok --shrink sp.vmdk $((99 * M + 300007))
size=$((99 * M + 300032)) # rounded up to 512
truncate -s $size sp.raw
verify sp.vmdk sp.raw $size
checks_clean sp.vmdk
# relative shrink into the unwritten middle is refused: 'd' is still at the end
expect_rc 1 "$VMDKIT" resize --shrink sp.vmdk -- -30M
grep -q "holds data" err || die "relative shrink over data: $(cat err)"
expect_rc 1 "$VMDKIT" resize sp.vmdk -200M
one_error_line "shrink past zero"

# ---- monolithicFlat ----------------------------------------------------------------
"$VMDKIT" create -q -o subformat=monolithicFlat fl.vmdk 3M
truncate -s 3M fl.raw
put fl.vmdk fl.raw $((3 * M - 10)) 10 'f'
resize_ok fl.vmdk 5M
truncate -s 5M fl.raw
put fl.vmdk fl.raw $((4 * M)) 5 'g'
verify fl.vmdk fl.raw $((5 * M))
checks_clean fl.vmdk
[[ $(stat -c %s fl-flat.vmdk) -eq $((5 * M)) ]] || die "the flat extent is $(stat -c %s fl-flat.vmdk) bytes"
expect_rc 1 "$VMDKIT" resize --shrink fl.vmdk 4M # 'g' is at 4M
grep -q "holds data" err || die "flat shrink over data: $(cat err)"
resize_ok --shrink fl.vmdk $((4 * M + 512))
truncate -s $((4 * M + 512)) fl.raw
verify fl.vmdk fl.raw $((4 * M + 512))

# ---- split images, past the 2047 MiB extent ------------------------------------------
for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
  rm -f sl*
  "$VMDKIT" create -q -o subformat=$sub sl.vmdk 10M
  truncate -s 10M sl.raw
  put sl.vmdk sl.raw $((10 * M - 3)) 3 'h'
  resize_ok sl.vmdk 2100M
  size=$((2100 * M))
  truncate -s $size sl.raw
  put sl.vmdk sl.raw $((2047 * M - 5)) 10 'i' # across the extent boundary
  put sl.vmdk sl.raw $((size - 1)) 1 'j'
  verify sl.vmdk sl.raw $size
  checks_clean sl.vmdk
  ls sl-?002.vmdk >/dev/null 2>&1 || die "$sub: growing past 2047 MiB made no second extent file"
  [[ $(grep -c '^RW ' sl.vmdk) -eq 2 ]] || die "$sub: descriptor extents: $(grep '^RW' sl.vmdk)"
done
rm -f sl*

# ---- raw ------------------------------------------------------------------------------
"$VMDKIT" create -q -f raw r.img 1M
printf 'raw' | "$VMDKIT" write -f raw r.img $((M - 3))
cp r.img r.raw
resize_ok -f raw r.img +1M
truncate -s $((2 * M)) r.raw
cmp r.img r.raw || die "raw resize"

# ---- a child image: the new part reads zeros past its parent -------------------------
"$VMDKIT" create -q pb.vmdk 1M
truncate -s 1M ch.raw
put pb.vmdk ch.raw 0 $M 'p'
"$VMDKIT" create -q -b pb.vmdk ch.vmdk
resize_ok ch.vmdk 2M
truncate -s 2M ch.raw
put ch.vmdk ch.raw $((M / 4)) 2 'q'
verify ch.vmdk ch.raw $((2 * M))
checks_clean ch.vmdk
# the part past M/2 holds only the parent's data and zeros: none of its own
resize_ok --shrink ch.vmdk $((M / 2))
truncate -s $((M / 2)) ch.raw
verify ch.vmdk ch.raw $((M / 2))

# ---- growing a child over a larger parent: the new part reads zeros -----
# (the parent's bytes there were never part of the child; after a shrink,
# data the child hid must not come back either)
"$VMDKIT" create -q big-parent.vmdk 1M
head -c 1M /dev/zero | tr '\0' p | "$VMDKIT" write big-parent.vmdk 0
"$VMDKIT" create -q -b big-parent.vmdk small-child.vmdk 512K
head -c 512K /dev/zero | tr '\0' p >small-child.raw
resize_ok small-child.vmdk 1M
truncate -s 1M small-child.raw
verify small-child.vmdk small-child.raw $M
resize_ok --shrink small-child.vmdk 256K
resize_ok small-child.vmdk 1M
truncate -s 256K small-child.raw
truncate -s 1M small-child.raw
verify small-child.vmdk small-child.raw $M

# ---- grow past the directory, shrink back: nothing leaks --------------------
# The growth moves the directories to the end of the file and adds tables
# there; the shrink must release what the smaller disk no longer uses
# (vmdkit check: exit 0, not 3 for leaked space), and a growth after it
# starts from empty tables.
"$VMDKIT" create -q gs.vmdk 10G
head -c 1M /dev/urandom >gs.dat
"$VMDKIT" write gs.vmdk 0 <gs.dat
resize_ok gs.vmdk 20G
"$VMDKIT" write gs.vmdk 4G <gs.dat
resize_ok --shrink gs.vmdk 5G
expect_rc 0 "$VMDKIT" check gs.vmdk
expect_rc 0 qemu-img check gs.vmdk
resize_ok gs.vmdk 30G
"$VMDKIT" write gs.vmdk 25G <gs.dat
expect_rc 0 "$VMDKIT" check gs.vmdk
truncate -s 30G gs.raw # the mirror: sparse, 3 MiB of data
for at in 0 $((4 * 1024)) $((25 * 1024)); do
  dd if=gs.dat of=gs.raw bs=1M seek=$at conv=notrunc status=none
done
verify gs.vmdk gs.raw $((30 * 1024 * M))
rm -f gs.raw

# ---- quiet, usage ---------------------------------------------------------------------
expect_rc 0 "$VMDKIT" resize -q sp.vmdk +1M
[[ ! -s out && ! -s err ]] || die "resize -q printed: $(cat out err)"
expect_rc 1 "$VMDKIT" resize sp.vmdk
one_error_line "resize without SIZE"
expect_rc 1 "$VMDKIT" resize sp.vmdk 1X
one_error_line "resize with a bad size"
expect_rc 1 "$VMDKIT" resize missing.vmdk 1M
one_error_line "resize of a missing file"
exit 0
