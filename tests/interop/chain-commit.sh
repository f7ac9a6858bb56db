#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit commit: the backing file afterwards reads exactly as the child did
# (qemu-img compare against a raw mirror of the child), both images pass
# qemu-img check and vmdkit check, and the child still opens and reads the
# same (its parentCID follows the parent's new CID).  Covers partial grains,
# zeroed grains over parent data (qemu-made child), a 3-level chain (only
# the next layer down changes), a child larger than its parent (the parent
# grows), a raw parent, -p/-q output, and refusals.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

cd "$tmpdir"
G=65536
M=$((1024 * 1024))

# IMAGE passes qemu-img check and vmdkit check
checks_clean() {
  run qemu-img check "$1"
  [[ $rc -eq 0 ]] && grep -q "No errors" out || { cat out err >&2; die "$1: qemu-img check: exit $rc"; }
  expect_rc 0 "$VMDKIT" check "$1"
}
# IMAGE reads exactly RAW (qemu-img and vmdkit)
reads_as() {
  run qemu-img compare -F raw "$1" "$2"
  [[ $rc -eq 0 ]] || { cat out err >&2; die "$1 does not read as $2 (qemu-img compare: exit $rc)"; }
  expect_rc 0 "$VMDKIT" compare -F raw "$1" "$2"
}
put() { # IMAGE MIRROR OFF LEN BYTE
  head -c "$4" /dev/zero | tr '\0' "$5" >chunk
  "$VMDKIT" write "$1" "$3" <chunk || die "vmdkit write $1 $3 failed"
  dd if=chunk of="$2" bs=64K oflag=seek_bytes seek="$3" conv=notrunc status=none
}

# ---- a two-level vmdkit chain -------------------------------------------------
"$VMDKIT" create -q base.vmdk 4M
truncate -s 4M child.raw
put base.vmdk child.raw 0 $((3 * G)) 'a'
put base.vmdk child.raw $((2 * M + 7)) 1000 'b'
cp child.raw base-before.raw
"$VMDKIT" create -q -b base.vmdk child.vmdk
"$VMDKIT" create -q -b base.vmdk sibling.vmdk
put child.vmdk child.raw $((G + 100)) 100 'c'         # partial grain over data
put child.vmdk child.raw $((3 * M - 1)) 2 'd'          # where base has nothing
put child.vmdk child.raw $((2 * M)) $((2 * G)) '\000'  # zeros over base data
put child.vmdk child.raw $((4 * M - 1)) 1 'e'
reads_as child.vmdk child.raw
child_sha=$(sha child.vmdk)

run "$VMDKIT" commit child.vmdk
[[ $rc -eq 0 ]] || { cat err >&2; die "commit failed: exit $rc"; }
[[ $(cat out) == "Image committed." ]] || die "commit output: $(cat out)"
reads_as base.vmdk child.raw
reads_as child.vmdk child.raw
checks_clean base.vmdk
checks_clean child.vmdk
[[ $((16#$(desc_value child.vmdk parentCID))) -eq $((16#$(desc_value base.vmdk CID))) ]] ||
  die "after commit the child's parentCID $(desc_value child.vmdk parentCID) is not base's CID $(desc_value base.vmdk CID)"
[[ $(desc_value child.vmdk parentFileNameHint) == base.vmdk ]] || die "commit changed the child's link"
! cmp -s child.raw base-before.raw || die "test bug: the child changed nothing"
# the sibling's parent changed under it: it no longer opens, and says why
expect_rc 1 "$VMDKIT" info sibling.vmdk
grep -q "parentCID" err || die "sibling after commit: $(cat err)"

# ---- -p and -q ------------------------------------------------------------------
"$VMDKIT" create -q base2.vmdk 1M
"$VMDKIT" create -q -b base2.vmdk child2.vmdk
printf 'hello' | "$VMDKIT" write child2.vmdk 12345
expect_rc 0 "$VMDKIT" commit -p child2.vmdk
grep -q "100.00/100%" err || die "commit -p shows no progress: $(cat err)"
[[ $(cat out) == "Image committed." ]] || die "commit -p output: $(cat out)"
printf 'again' | "$VMDKIT" write child2.vmdk 22345
expect_rc 0 "$VMDKIT" commit -q -p child2.vmdk
[[ ! -s out && ! -s err ]] || die "commit -q printed: $(cat out err)"
[[ $("$VMDKIT" read base2.vmdk 22345 5) == again && $("$VMDKIT" read base2.vmdk 12345 5) == hello ]] ||
  die "commit -q did not write into the parent"

# ---- a qemu-made 3-level chain with zeroed grains --------------------------------
qemu-img create -q -f vmdk q0.vmdk 4M
qemu-io -c 'write -P 0x11 0 2M' q0.vmdk >/dev/null
qemu-img create -q -f vmdk -b q0.vmdk -F vmdk q1.vmdk
qemu-io -c 'write -P 0x22 1M 100' q1.vmdk >/dev/null
qemu-img create -q -f vmdk -o zeroed_grain=on -b q1.vmdk -F vmdk q2.vmdk
qemu-io -c 'write -z 0 131072' -c 'write -P 0x33 1048600 10' -c 'write -P 0x34 3M 1' q2.vmdk >/dev/null
qemu-img convert -O raw q2.vmdk q2.raw
q0_sha=$(sha q0.vmdk)
expect_rc 0 "$VMDKIT" commit q2.vmdk
reads_as q1.vmdk q2.raw
reads_as q2.vmdk q2.raw
checks_clean q1.vmdk
checks_clean q2.vmdk
[[ $(sha q0.vmdk) == "$q0_sha" ]] || die "commit changed the image two levels down"
[[ $(head -c $((2 * G)) q2.raw | tr -d '\0' | wc -c) -eq 0 ]] || die "test bug: no zeroed grains"

# ---- a child larger than its parent ---------------------------------------------
"$VMDKIT" create -q small.vmdk 1M
printf 'low' | "$VMDKIT" write small.vmdk 0
"$VMDKIT" create -q -b small.vmdk big.vmdk 3M
printf 'high' | "$VMDKIT" write big.vmdk $((3 * M - 4))
"$VMDKIT" read big.vmdk 0 3M >big.raw
expect_rc 0 "$VMDKIT" commit big.vmdk
qemu-img info --output=json small.vmdk >info.json
[[ $(json_get info.json virtual-size) -eq $((3 * M)) ]] || die "commit did not grow the parent: $(json_get info.json virtual-size)"
reads_as small.vmdk big.raw
checks_clean small.vmdk

# ---- a raw parent ----------------------------------------------------------------
"$VMDKIT" create -q -f raw rbase.img 2M
printf 'rawdata' | "$VMDKIT" write -f raw rbase.img 100
"$VMDKIT" create -q -b rbase.img -F raw rchild.vmdk
printf 'over' | "$VMDKIT" write rchild.vmdk 102
printf 'tail' | "$VMDKIT" write rchild.vmdk $((2 * M - 4))
"$VMDKIT" read rchild.vmdk 0 2M >rchild.raw
expect_rc 0 "$VMDKIT" commit rchild.vmdk
cmp rbase.img rchild.raw || die "commit into a raw parent: the file differs from the child's content"

# ---- refusals ----------------------------------------------------------------
expect_rc 1 "$VMDKIT" commit base2.vmdk.nonexistent
one_error_line "commit of a missing file"
before=$(sha base-before.raw)
"$VMDKIT" create -q alone.vmdk 1M
alone_sha=$(sha alone.vmdk)
expect_rc 1 "$VMDKIT" commit alone.vmdk
one_error_line "commit of an image without a backing file"
grep -q "no backing file" err || die "commit without backing: $(cat err)"
[[ $(sha alone.vmdk) == "$alone_sha" ]] || die "a refused commit changed the image"
[[ $(sha base-before.raw) == "$before" ]] || die "test bug"
[[ $(sha child.vmdk) != "$child_sha" ]] || die "commit did not update the child's parentCID"
exit 0
