#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Backing chains both ways.
#  1. qemu-img builds chains (3 VMDK levels; a raw base), qemu-io writes at
#     odd offsets in every layer (partial grains over parent data, whole and
#     partial `write -z` in a zeroed_grain=on child): vmdkit read, convert
#     (flattened) and compare all equal qemu-img's raw export of the top.
#  2. vmdkit builds a chain (create -b; writes at odd offsets, partial grains
#     over parent data, zeros over parent data) with a raw mirror of every
#     write: qemu-img compare says identical for every layer, qemu-img check
#     and vmdkit check are clean, the descriptor links are right (parentCID
#     = the parent's CID, relative parentFileNameHint) and a partially
#     written grain holds parent head + data + parent tail on disk.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

cd "$tmpdir"
M=$((1024 * 1024))
G=65536

# ---- 1. chains qemu-img builds ----------------------------------------------
qemu-img create -q -f vmdk base.vmdk 8M
qemu-io -c 'write -P 0x11 0 100000' -c 'write -P 0x12 1048909 70000' \
  -c 'write -P 0x13 5242873 200000' -c 'write -P 0x14 3145728 65536' \
  base.vmdk >/dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk mid.vmdk
qemu-io -c 'write -P 0x21 50000 100' -c 'write -P 0x22 1179648 131077' \
  -c 'write -P 0x23 7340033 3' -c 'write -P 0x24 3145800 10' \
  mid.vmdk >/dev/null
qemu-img create -q -f vmdk -o zeroed_grain=on -b mid.vmdk -F vmdk top.vmdk
# whole zeroed grains over base data (1M..1M+128K) and over mid data (3M),
# a partial zero write over base data, data at odd offsets, the last byte
qemu-io -c 'write -P 0x31 99999 2' -c 'write -z 1048576 131072' \
  -c 'write -z 3145728 65536' -c 'write -z 5243880 100' \
  -c 'write -P 0x32 8388607 1' -c 'write -P 0x33 6291455 65538' \
  top.vmdk >/dev/null

for img in base mid top; do
  qemu-img convert -f vmdk -O raw $img.vmdk q-$img.raw
  "$VMDKIT" read $img.vmdk 0 8M >v-$img.raw || die "vmdkit read $img.vmdk failed"
  cmp q-$img.raw v-$img.raw || die "qemu chain: vmdkit reads $img.vmdk differently from qemu-img"
done
# the test data really is layered: each level changed what the one below read
! cmp -s q-base.raw q-mid.raw && ! cmp -s q-mid.raw q-top.raw || die "test bug: layers equal"
[[ $(head -c $((M + 8)) q-top.raw | tail -c 8 | od -An -tx1 | tr -d ' \n') == 0000000000000000 ]] ||
  die "test bug: the zeroed grain over base data does not read zeros in qemu"

"$VMDKIT" convert top.vmdk conv-top.raw || die "vmdkit convert of the qemu chain failed"
cmp q-top.raw conv-top.raw || die "vmdkit convert of the qemu chain differs from qemu-img convert"
"$VMDKIT" convert -O vmdk top.vmdk conv-top.vmdk || die "vmdkit convert -O vmdk of the chain failed"
"$VMDKIT" info conv-top.vmdk >info.txt
! grep -q '^backing file' info.txt || die "convert without -B left a backing link"
[[ $(desc_value conv-top.vmdk parentCID) == ffffffff ]] || die "convert output has a parentCID"
run qemu-img compare -f raw -F vmdk q-top.raw conv-top.vmdk
[[ $rc -eq 0 ]] || die "flattened vmdk differs from the chain (qemu-img compare: $(cat out))"
expect_rc 0 "$VMDKIT" compare -f vmdk -F raw top.vmdk q-top.raw
expect_rc 0 "$VMDKIT" compare top.vmdk conv-top.vmdk
grep -q "Images are identical." out || die "compare output: $(cat out)"

# a raw base under a VMDK child under a VMDK child: qemu 7.2 refuses to make
# or open a VMDK over raw, so qemu builds the chain over a VMDK base, which
# is then exported to raw and the middle image relinked to it (rebase -u)
qemu-img create -q -f vmdk rbase.vmdk 4M
qemu-io -c 'write -P 0x41 1000 300000' -c 'write -P 0x42 3000000 5' rbase.vmdk >/dev/null
qemu-img create -q -f vmdk -b rbase.vmdk -F vmdk rmid.vmdk
qemu-io -c 'write -P 0x51 70000 10' -c 'write -P 0x52 2999999 3' rmid.vmdk >/dev/null
qemu-img create -q -f vmdk -b rmid.vmdk -F vmdk rtop.vmdk
qemu-io -c 'write -P 0x61 1 1' -c 'write -P 0x62 131071 2' rtop.vmdk >/dev/null
qemu-img convert -O raw rtop.vmdk q-rtop.raw
qemu-img convert -O raw rbase.vmdk rbase.img
"$VMDKIT" rebase -u -b rbase.img -F raw rmid.vmdk 2>err && ! [[ -s err ]] ||
  die "rebase -u onto a raw base failed: $(cat err)"
rm rbase.vmdk
[[ $(desc_value rmid.vmdk parentFileNameHint) == rbase.img ]] || die "rebase -u did not relink to rbase.img"
"$VMDKIT" read rtop.vmdk 0 4M >v-rtop.raw || die "vmdkit read of the raw-based chain failed"
cmp q-rtop.raw v-rtop.raw || die "raw-based chain read differently"
! cmp -s q-rtop.raw rbase.img || die "test bug: raw chain layers equal"
"$VMDKIT" info --backing-chain rtop.vmdk >info.txt || die "info --backing-chain of the raw-based chain failed"
grep -q '^backing file format: raw$' info.txt || die "no 'backing file format: raw' in $(cat info.txt)"

# ---- 2. chains vmdkit builds, against a raw mirror of every write -----------
head -c $((4 * M)) /dev/urandom >random.bin
src=0
# put LEN random bytes at OFF into IMAGE and into MIRROR
put() {
  local image=$1 mirror=$2 off=$3 len=$4
  src=$(((src + 7919 * len + 13) % (4 * M - len)))
  dd if=random.bin of=chunk bs=64K iflag=skip_bytes,count_bytes skip=$src count=$len status=none
  "$VMDKIT" write "$image" $off <chunk || die "vmdkit write $image $off ($len bytes) failed"
  dd if=chunk of="$mirror" bs=64K oflag=seek_bytes seek=$off conv=notrunc status=none
}
# put LEN zero bytes at OFF
put_zeros() {
  local image=$1 mirror=$2 off=$3 len=$4
  head -c $len /dev/zero >chunk
  "$VMDKIT" write "$image" $off <chunk || die "vmdkit write of zeros into $image failed"
  dd if=chunk of="$mirror" bs=64K oflag=seek_bytes seek=$off conv=notrunc status=none
}
# LAYER reads exactly MIRROR (qemu-img and vmdkit), and both checks are clean
verify() {
  local image=$1 mirror=$2
  run qemu-img compare -f raw -F vmdk "$mirror" "$image"
  [[ $rc -eq 0 ]] || { cat out err >&2; die "$image: qemu-img compare with its mirror: exit $rc"; }
  run qemu-img check -f vmdk "$image"
  [[ $rc -eq 0 ]] && grep -q "No errors" out || { cat out err >&2; die "$image: qemu-img check: exit $rc"; }
  expect_rc 0 "$VMDKIT" check "$image"
  "$VMDKIT" read "$image" 0 $(stat -c %s "$mirror") >readback.raw || die "$image: vmdkit read failed"
  cmp "$mirror" readback.raw || die "$image: vmdkit reads differently from the mirror"
}

size=$((6 * M))
"$VMDKIT" create -q vbase.vmdk $size
truncate -s $size vbase.raw
put vbase.vmdk vbase.raw 0 $((3 * G + 17))
put vbase.vmdk vbase.raw $((M - 5)) $((2 * G))
put vbase.vmdk vbase.raw $((4 * M + 12345)) 300000
put vbase.vmdk vbase.raw $((size - 1000)) 1000
verify vbase.vmdk vbase.raw

# the child is made with an absolute -b: the link is stored relative
"$VMDKIT" create -b "$tmpdir/vbase.vmdk" -F vmdk vmid.vmdk >create.txt || die "create -b failed"
grep -q "^Formatting 'vmid.vmdk', fmt=vmdk size=$size backing_file=vbase.vmdk backing_fmt=vmdk" create.txt ||
  die "create -b output: $(cat create.txt)"
[[ $(desc_value vmid.vmdk parentFileNameHint) == vbase.vmdk ]] ||
  die "parentFileNameHint is '$(desc_value vmid.vmdk parentFileNameHint)', expected the relative vbase.vmdk"
[[ $((16#$(desc_value vmid.vmdk parentCID))) -eq $((16#$(desc_value vbase.vmdk CID))) ]] ||
  die "the child's parentCID $(desc_value vmid.vmdk parentCID) is not the parent's CID $(desc_value vbase.vmdk CID)"
qemu-img info --output=json vmid.vmdk >qinfo.json
[[ $(json_get qinfo.json backing-filename) == vbase.vmdk ]] || die "qemu-img sees backing $(json_get qinfo.json backing-filename)"
[[ $(json_get qinfo.json virtual-size) -eq $size ]] || die "create -b without SIZE: qemu-img size $(json_get qinfo.json virtual-size)"
cp vbase.raw vmid.raw
verify vmid.vmdk vmid.raw # a fresh child reads its parent

# partial grains over parent data: copy-on-write keeps the parent's head
# and tail of the grain; the 100-byte write at 2G+300 is checked on disk
put vmid.vmdk vmid.raw $((2 * G + 300)) 100
put vmid.vmdk vmid.raw $((M - 3)) 7
put vmid.vmdk vmid.raw $((4 * M + 12345 + G)) $((G + 1))
put vmid.vmdk vmid.raw $((5 * M + 1)) 99 # where the parent has no data
put_zeros vmid.vmdk vmid.raw $((G + 5)) 1000
put_zeros vmid.vmdk vmid.raw $((4 * M + 2 * G)) $((2 * G)) # whole grains of zeros over data
verify vmid.vmdk vmid.raw
"$VMDKIT" map --output=json vmid.vmdk >vmid-map.json
read -r _ depth present _ data off < <(map_layers vmid-map.json $G | awk -v g=$((2 * G)) '$1 == g')
[[ $depth == 0 && $present == 1 && $data == 1 && $off != - ]] ||
  die "grain 2 of the child is not its own data grain: depth=$depth present=$present data=$data offset=$off"
dd if=vmid.vmdk of=grain.bin bs=64K iflag=skip_bytes,count_bytes skip=$off count=$G status=none
dd if=vmid.raw of=want.bin bs=64K iflag=skip_bytes,count_bytes skip=$((2 * G)) count=$G status=none
cmp grain.bin want.bin || die "the child's partially written grain on disk is not parent head + data + parent tail"
dd if=vbase.raw of=parent.bin bs=64K iflag=skip_bytes,count_bytes skip=$((2 * G)) count=$G status=none
! cmp -s want.bin parent.bin && cmp -s -n 300 want.bin parent.bin &&
  cmp -s <(tail -c $((G - 400)) want.bin) <(tail -c $((G - 400)) parent.bin) &&
  ! cmp -s -n 300 want.bin /dev/zero ||
  die "test bug: grain 2 should hold parent data around the write"
# grains the child did not write still come from the parent (depth 1)
read -r _ depth _ < <(map_layers vmid-map.json $G | awk -v g=$((3 * G)) '$1 == g')
[[ $depth == 1 ]] || die "an unwritten grain over parent data has depth $depth, expected 1"

# a third level with the zeroed-grain flag, made from another folder with a
# relative link that goes up ("../vmid.vmdk" is kept as given)
mkdir sub
"$VMDKIT" create -q -o zeroed_grain=on -b ../vmid.vmdk sub/vtop.vmdk || die "create -b ../ failed"
[[ $(desc_value sub/vtop.vmdk parentFileNameHint) == ../vmid.vmdk ]] || die "../ link not kept"
cp vmid.raw vtop.raw
put sub/vtop.vmdk vtop.raw 7 1
put sub/vtop.vmdk vtop.raw $((2 * G + 350)) 20 # COW of a grain the middle layer holds
put sub/vtop.vmdk vtop.raw $((size - G - 1)) 2
put_zeros sub/vtop.vmdk vtop.raw $((M - G)) $((3 * G))
put_zeros sub/vtop.vmdk vtop.raw 0 10
verify sub/vtop.vmdk vtop.raw
# the lower layers are unchanged by writes above them
verify vmid.vmdk vmid.raw
verify vbase.vmdk vbase.raw
# a child of a raw base made by vmdkit (qemu cannot open VMDK over raw)
"$VMDKIT" create -q -f raw vrbase.img 2M
truncate -s $((2 * M)) vrchild.raw
put vrbase.img vrchild.raw 100 200000
"$VMDKIT" create -q -b vrbase.img -F raw vrchild.vmdk
[[ $(desc_value vrchild.vmdk parentFileNameHint) == vrbase.img ]] || die "raw backing: wrong link"
put vrchild.vmdk vrchild.raw 150000 333
put vrchild.vmdk vrchild.raw $((2 * M - 1)) 1
expect_rc 0 "$VMDKIT" compare -F raw vrchild.vmdk vrchild.raw
expect_rc 0 "$VMDKIT" check vrchild.vmdk
"$VMDKIT" read vrchild.vmdk 0 2M >readback.raw
cmp vrchild.raw readback.raw || die "vmdkit reads its raw-based child differently from the mirror"
exit 0
