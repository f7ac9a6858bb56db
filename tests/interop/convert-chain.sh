#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# convert and compare across chains and formats:
#  - convert of a 3-level chain (qemu-made) flattens it: the output has no
#    link and equals qemu-img convert of the chain, for -O raw and -O vmdk;
#  - convert -B BACKING writes only what differs from BACKING: the output
#    links to BACKING (relative, right parentCID), reads exactly as the
#    source (qemu-img compare, vmdkit compare), passes qemu-img check, and
#    its own grains (map depth 0) are exactly the grains where the source
#    differs from BACKING -- including zeros over BACKING's data;
#  - compare -f/-F across raw, vmdk and chains: exit 0 identical, 1
#    different with the first differing byte offset, 2 on error.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

cd "$tmpdir"
G=65536
M=$((1024 * 1024))
qemu-img create -q -f vmdk base.vmdk 8M
qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x12 5M 1M' base.vmdk >/dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk mid.vmdk
qemu-io -c 'write -P 0x21 100000 100' -c 'write -P 0x22 4M 65536' mid.vmdk >/dev/null
qemu-img create -q -f vmdk -o zeroed_grain=on -b mid.vmdk -F vmdk top.vmdk
qemu-io -c 'write -P 0x31 7340033 5' -c 'write -z 5M 131072' -c 'write -z 2M 1000' \
  -c 'write -P 0x32 8388607 1' top.vmdk >/dev/null
qemu-img convert -O raw top.vmdk q-top.raw

# ---- flattening -------------------------------------------------------------
"$VMDKIT" convert top.vmdk flat.raw || die "convert of the chain failed"
cmp q-top.raw flat.raw || die "convert -O raw of the chain differs from qemu-img convert"
"$VMDKIT" convert -O vmdk top.vmdk flat.vmdk || die "convert -O vmdk of the chain failed"
qemu-img convert -O raw flat.vmdk flat-export.raw
cmp q-top.raw flat-export.raw || die "the flattened VMDK reads differently in qemu-img"
"$VMDKIT" info --output=json flat.vmdk >info.json
! grep -q backing info.json || die "the flattened VMDK has a backing link"
[[ $(json_get info.json format-specific data parent-cid) -eq 4294967295 ]] || die "flattened VMDK has a parentCID"
"$VMDKIT" map --output=json flat.vmdk >map.json
python3 - map.json <<'EOF' || die "flattened VMDK map has layers below it"
import json, sys
assert all(r["depth"] == 0 for r in json.load(open(sys.argv[1])))
EOF

# ---- convert -B ---------------------------------------------------------------
# the source: base's content with changes (data, zeros over base data, data
# where base has none, a partial grain), as a raw file
qemu-img convert -O raw base.vmdk src.raw
cp src.raw base.raw
printf 'changed' | dd of=src.raw bs=1 seek=$((G + 10)) conv=notrunc status=none # grain 1: partial
head -c $((2 * G)) /dev/zero | dd of=src.raw bs=64K seek=$((M / G * 2)) conv=notrunc status=none # grains 32,33: zeros over data
head -c 300 /dev/urandom | dd of=src.raw bs=1 seek=$((4 * M + 5)) conv=notrunc status=none # grain 64: data over nothing
head -c $((G + 2)) /dev/urandom | dd of=src.raw bs=1 seek=$((6 * M - 1)) conv=notrunc status=none # grains 95-97
printf '\x11' | dd of=src.raw bs=1 seek=$((3 * G)) conv=notrunc status=none # the same byte: no change
changed="1 32 33 64 95 96 97"

# DEST in a sub-folder, -B given as an absolute path inside that folder
mkdir dst
cp base.vmdk dst/base.vmdk
"$VMDKIT" convert -f raw -O vmdk -B "$tmpdir/dst/base.vmdk" -F vmdk src.raw dst/diff.vmdk ||
  die "convert -B failed"
[[ $(desc_value dst/diff.vmdk parentFileNameHint) == base.vmdk ]] ||
  die "convert -B link '$(desc_value dst/diff.vmdk parentFileNameHint)', expected base.vmdk"
# (compared as numbers: qemu-img writes CIDs without leading zeros)
[[ $((16#$(desc_value dst/diff.vmdk parentCID))) -eq $((16#$(desc_value dst/base.vmdk CID))) ]] ||
  die "convert -B parentCID: child has $(desc_value dst/diff.vmdk parentCID), base has $(desc_value dst/base.vmdk CID)"
run qemu-img compare -f raw -F vmdk src.raw dst/diff.vmdk
[[ $rc -eq 0 ]] || die "convert -B output reads differently from the source: $(cat out err)"
run qemu-img check dst/diff.vmdk
[[ $rc -eq 0 ]] && grep -q "No errors" out || die "qemu-img check of the convert -B output: $(cat out err)"
expect_rc 0 "$VMDKIT" compare -f raw src.raw dst/diff.vmdk
expect_rc 0 "$VMDKIT" check dst/diff.vmdk
"$VMDKIT" map --output=json dst/diff.vmdk >map.json
own=$(map_layers map.json $G | awk -v g=$G '$2 == 0 && $3 == 1 { printf "%d ", $1 / g }')
[[ $own == "$changed " ]] || die "convert -B output holds grains [$own], expected [$changed ]"
# the base is unchanged
run qemu-img compare -f raw -F vmdk base.raw dst/base.vmdk
[[ $rc -eq 0 ]] || die "convert -B changed its backing file"

# with a zeroed-grain target, zeros over BACKING's data are zeroed-grain
# entries (present, zero, no data)
"$VMDKIT" convert -f raw -O vmdk -o zeroed_grain=on -B base.vmdk src.raw diffz.vmdk || die "convert -B -o zeroed_grain=on failed"
run qemu-img compare -f raw -F vmdk src.raw diffz.vmdk
[[ $rc -eq 0 ]] || die "zeroed-grain convert -B output reads differently: $(cat out err)"
"$VMDKIT" map --output=json diffz.vmdk >map.json
[[ $(map_layers map.json $G | awk -v g=$((32 * G)) '$1 == g { print $2, $3, $4, $5 }') == "0 1 1 0" ]] ||
  die "zeros over backing data are not a zeroed grain: $(map_layers map.json $G | awk -v g=$((32 * G)) '$1 == g')"

# -B of the chain's own base: the output holds what mid and top changed
"$VMDKIT" convert -O vmdk -B base.vmdk top.vmdk over-base.vmdk || die "convert -B of the chain failed"
run qemu-img compare -f raw -F vmdk q-top.raw over-base.vmdk
[[ $rc -eq 0 ]] || die "convert -B of the chain reads differently: $(cat out err)"
"$VMDKIT" map --output=json over-base.vmdk >map.json
own=$(map_layers map.json $G | awk '$2 == 0 && $3 == 1' | wc -l)
[[ $own -ge 1 && $own -le 8 ]] || die "convert -B of the chain holds $own grains of its own"
# a source equal to BACKING gives an empty child
"$VMDKIT" convert -O vmdk -B base.vmdk base.vmdk same.vmdk || die "convert -B of the backing itself failed"
"$VMDKIT" map --output=json same.vmdk >map.json
[[ $(map_layers map.json $G | awk '$2 == 0 && $3 == 1' | wc -l) -eq 0 ]] || die "convert -B of BACKING itself wrote grains"

# usage errors
expect_rc 1 "$VMDKIT" convert -B base.vmdk top.vmdk x.raw
grep -q "raw image cannot have a backing file" err || die "convert -B -O raw: $(cat err)"
expect_rc 1 "$VMDKIT" convert -O vmdk -F vmdk top.vmdk x.vmdk
one_error_line "convert -F without -B"
[[ ! -e x.raw && ! -e x.vmdk ]] || die "a refused convert left a file"

# ---- compare across formats and chains -----------------------------------------
expect_rc 0 "$VMDKIT" compare -f vmdk -F raw top.vmdk q-top.raw
expect_rc 0 "$VMDKIT" compare -f raw -F vmdk q-top.raw top.vmdk
expect_rc 0 "$VMDKIT" compare top.vmdk flat.vmdk
expect_rc 1 "$VMDKIT" compare mid.vmdk top.vmdk
# the first difference: top wrote 0x31 at 7340033 over mid's zeros, but
# earlier, at 2M, top zeroed 1000 bytes of base's 0x11 data
grep -qx "Content mismatch at offset $((2 * M))!" out || die "compare mid top: $(cat out)"
cp q-top.raw off.raw
printf 'X' | dd of=off.raw bs=1 seek=$((7 * M + 12345)) conv=notrunc status=none
expect_rc 1 "$VMDKIT" compare -f vmdk -F raw top.vmdk off.raw
grep -qx "Content mismatch at offset $((7 * M + 12345))!" out || die "compare offset: $(cat out)"
# -F raw: top.vmdk's file bytes themselves are the second image
expect_rc 1 "$VMDKIT" compare -F raw q-top.raw top.vmdk
grep -qx "Content mismatch at offset 0!" out || die "compare -F raw: $(cat out)"
expect_rc 2 "$VMDKIT" compare -f vmdk q-top.raw top.vmdk # a raw file is no VMDK
one_error_line "compare -f vmdk of a raw file"
expect_rc 2 "$VMDKIT" compare top.vmdk missing.vmdk
exit 0
