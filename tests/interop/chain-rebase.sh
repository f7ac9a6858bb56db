#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit rebase:
#  - safe mode onto a different base, onto a raw base and onto nothing
#    (-b ""): the child reads exactly as before (qemu-img compare with its
#    raw export from before), the link changed (parentFileNameHint,
#    parentCID = the new base's CID), qemu-img check and vmdkit check pass,
#    the old and new bases are unchanged;
#  - -u only rewrites the link: the child's file keeps its grains, and it
#    now reads the new base under them (raw mirror); relinking to a renamed
#    copy of the base keeps the content;
#  - refusals (a loop back to the child, a missing new base) change nothing.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img python3

cd "$tmpdir"

# rebase -u repairs a link whose parent moved (the old parent is never
# opened), and the child then reads through the moved parent.
"$VMDKIT" create -q mv-base.vmdk 1M
printf 'moved-parent-data' | "$VMDKIT" write mv-base.vmdk 1000
"$VMDKIT" create -q -b mv-base.vmdk mv-child.vmdk
mv mv-base.vmdk mv-moved.vmdk
expect_rc 1 "$VMDKIT" read mv-child.vmdk 1000 17
expect_rc 0 "$VMDKIT" rebase -u -b mv-moved.vmdk mv-child.vmdk
[[ $("$VMDKIT" read mv-child.vmdk 1000 17) == moved-parent-data ]] ||
  die "after rebase -u the child does not read through the moved parent"
expect_rc 0 qemu-img check mv-child.vmdk
G=65536
M=$((1024 * 1024))

checks_clean() {
  run qemu-img check "$1"
  [[ $rc -eq 0 ]] && grep -q "No errors" out || { cat out err >&2; die "$1: qemu-img check: exit $rc"; }
  expect_rc 0 "$VMDKIT" check "$1"
}
reads_as() { # IMAGE RAW
  run qemu-img compare -F raw "$1" "$2"
  [[ $rc -eq 0 ]] || { cat out err >&2; die "$1 does not read as $2 (qemu-img compare: exit $rc)"; }
  expect_rc 0 "$VMDKIT" compare -F raw "$1" "$2"
}
fill() { # IMAGE OFF LEN BYTE [MIRROR]
  head -c "$3" /dev/zero | tr '\0' "$4" >chunk
  "$VMDKIT" write "$1" "$2" <chunk || die "vmdkit write $1 $2 failed"
  [[ -z ${5:-} ]] || dd if=chunk of="$5" bs=64K oflag=seek_bytes seek="$2" conv=notrunc status=none
}

# two different bases; a child of base1 with its own data
"$VMDKIT" create -q base1.vmdk 4M
fill base1.vmdk 0 $((2 * M)) 'a'
fill base1.vmdk $((3 * M + 5)) 100 'b'
"$VMDKIT" create -q base2.vmdk 4M
fill base2.vmdk $((M / 2)) $((2 * M)) 'x'
fill base2.vmdk $((4 * M - G)) $G 'y'
# the same data in both: safe mode has no reason to copy it
fill base1.vmdk $((2 * M + 12 * G)) 5000 's'
fill base2.vmdk $((2 * M + 12 * G)) 5000 's'
make_child() { # NAME: a child of base1 with data at odd offsets, and its export
  "$VMDKIT" create -q -b base1.vmdk "$1.vmdk"
  fill "$1.vmdk" $((G + 7)) 300 'c'
  fill "$1.vmdk" $((3 * M)) 10 'd'
  fill "$1.vmdk" $((M - 1)) 2 '\000'
  "$VMDKIT" read "$1.vmdk" 0 4M >"$1.before.raw"
}
b1=$(sha base1.vmdk)
b2=$(sha base2.vmdk)

# ---- safe mode onto base2 ------------------------------------------------------
make_child safe
expect_rc 0 "$VMDKIT" rebase -b base2.vmdk safe.vmdk
[[ ! -s out ]] || die "rebase printed: $(cat out)"
reads_as safe.vmdk safe.before.raw
[[ $(desc_value safe.vmdk parentFileNameHint) == base2.vmdk ]] || die "safe rebase: link not changed"
[[ $((16#$(desc_value safe.vmdk parentCID))) -eq $((16#$(desc_value base2.vmdk CID))) ]] || die "safe rebase: parentCID"
checks_clean safe.vmdk
qemu-img info --output=json safe.vmdk >info.json
[[ $(json_get info.json backing-filename) == base2.vmdk ]] || die "qemu-img sees backing $(json_get info.json backing-filename)"
[[ $(sha base1.vmdk) == "$b1" && $(sha base2.vmdk) == "$b2" ]] || die "safe rebase changed a base"
"$VMDKIT" map --output=json safe.vmdk >map.json
[[ $(map_layers map.json $G | awk '$2 == 1 && $5 == 1' | wc -l) -gt 0 ]] ||
  die "safe rebase copied everything: no grain is read from the new base"

# with -p (progress on stderr), an absolute -b in the child's folder
make_child safep
expect_rc 0 "$VMDKIT" rebase -p -b "$tmpdir/base2.vmdk" -F vmdk safep.vmdk
grep -q "100.00/100%" err || die "rebase -p shows no progress: $(cat err)"
[[ $(desc_value safep.vmdk parentFileNameHint) == base2.vmdk ]] || die "absolute -b not stored relative"
reads_as safep.vmdk safep.before.raw

# ---- safe mode onto a raw base, then onto nothing ---------------------------------
make_child toraw
qemu-img convert -O raw base2.vmdk base2.img
expect_rc 0 "$VMDKIT" rebase -b base2.img -F raw toraw.vmdk
[[ $(desc_value toraw.vmdk parentFileNameHint) == base2.img ]] || die "raw rebase: link not changed"
expect_rc 0 "$VMDKIT" compare -F raw toraw.vmdk toraw.before.raw
expect_rc 0 "$VMDKIT" check toraw.vmdk
expect_rc 0 "$VMDKIT" rebase -b "" toraw.vmdk
expect_rc 0 "$VMDKIT" info --output=json toraw.vmdk
! grep -q backing out || die "rebase -b '': the child still has a backing file"
[[ $(desc_value toraw.vmdk parentCID) == ffffffff ]] || die "rebase -b '': parentCID $(desc_value toraw.vmdk parentCID)"
reads_as toraw.vmdk toraw.before.raw
checks_clean toraw.vmdk

# ---- -u: the link only --------------------------------------------------------
make_child unsafe
"$VMDKIT" map --output=json unsafe.vmdk >map-before.json
# what it must read afterwards: base2, except in the grains the child holds
# itself, which keep their content (copied-on-write parts of base1 included)
qemu-img convert -O raw base2.vmdk unsafe.want.raw
map_layers map-before.json $G | awk '$2 == 0 && $3 == 1 { print $1 }' >own.txt
[[ $(wc -l <own.txt) -ge 3 ]] || die "test bug: the child holds $(wc -l <own.txt) grains"
while read -r g; do
  dd if=unsafe.before.raw of=unsafe.want.raw bs=64K iflag=skip_bytes oflag=seek_bytes \
    skip=$g seek=$g count=1 conv=notrunc status=none
done <own.txt
expect_rc 0 "$VMDKIT" rebase -u -b base2.vmdk unsafe.vmdk
[[ $(desc_value unsafe.vmdk parentFileNameHint) == base2.vmdk ]] || die "rebase -u: link not changed"
[[ $((16#$(desc_value unsafe.vmdk parentCID))) -eq $((16#$(desc_value base2.vmdk CID))) ]] || die "rebase -u: parentCID"
reads_as unsafe.vmdk unsafe.want.raw
! cmp -s unsafe.want.raw unsafe.before.raw || die "test bug: -u changed nothing visible"
"$VMDKIT" map --output=json unsafe.vmdk >map-after.json
diff <(map_layers map-before.json $G | awk '$2 == 0') <(map_layers map-after.json $G | awk '$2 == 0') >&2 ||
  die "rebase -u changed the child's own grains"
checks_clean unsafe.vmdk

# -u onto a renamed copy of the base: the content stays
make_child moved
cp base1.vmdk base1-copy.vmdk
expect_rc 0 "$VMDKIT" rebase -u -b base1-copy.vmdk moved.vmdk
reads_as moved.vmdk moved.before.raw
[[ $(desc_value moved.vmdk parentFileNameHint) == base1-copy.vmdk ]] || die "rebase -u to the copy"

# ---- refusals ------------------------------------------------------------------
"$VMDKIT" create -q -b safe.vmdk grandchild.vmdk
s_sha=$(sha safe.vmdk)
expect_rc 1 "$VMDKIT" rebase -u -b grandchild.vmdk safe.vmdk # the new chain contains safe.vmdk
one_error_line "rebase into a loop"
expect_rc 1 "$VMDKIT" rebase -b grandchild.vmdk safe.vmdk
one_error_line "safe rebase into a loop"
expect_rc 1 "$VMDKIT" rebase -b safe.vmdk safe.vmdk
expect_rc 1 "$VMDKIT" rebase -b missing.vmdk safe.vmdk
one_error_line "rebase onto a missing file"
grep -q missing.vmdk err || die "rebase onto a missing file: $(cat err)"
expect_rc 1 "$VMDKIT" rebase safe.vmdk
grep -q -- "-b" err || die "rebase without -b: $(cat err)"
[[ $(sha safe.vmdk) == "$s_sha" ]] || die "a refused rebase changed the child"
reads_as safe.vmdk safe.before.raw
exit 0
