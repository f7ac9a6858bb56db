#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# qemu-img creates VMDKs (monolithicSparse, with zeroed_grain=on, and
# monolithicFlat), qemu-io writes at many odd offsets and lengths (across
# grains, across the 32 MiB grain-table edge, zero writes that make zeroed
# grains), then everything vmdkit reads must equal qemu-img's raw export.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

size=$((80 * 1024 * 1024)) # 2.5 grain tables at the default grain
T=$((32 * 1024 * 1024))    # bytes one grain table covers (64 KiB grains)
G=65536

# The write commands, one qemu-io run per image.
cmds=()
w() { cmds+=(-c "write -P $3 $1 $2"); }
z() { cmds+=(-c "write -z $1 $2"); }
w 0 1 0x11
w 511 2 0x12
w $((G - 1)) 2 0x13                 # grain 0 / 1 edge
w $G $G 0x14                        # one whole grain
w $((3 * G + 7)) $((2 * G + 11)) 0x15 # several grains, unaligned
w $((T - 1)) 2 0x16                 # the grain-table edge
w $((T - 1000)) 5000 0x17
w $((T + 3 * G + 7)) 70000 0x18
w $((2 * T - G)) $((2 * G)) 0x19    # second table edge, aligned
w $((2 * T - 77)) 300000 0x1a
w $((size - 1)) 1 0x1b              # last byte
w $((size - G - 5)) 5 0x1c
w $((size - 3 * G)) $((2 * G)) 0x1d
# 30 more, spread over the disk with odd offsets and lengths
for i in $(seq 1 30); do
  off=$(((i * 2654435761 + i * i * 131) % (size - 300000)))
  len=$(((i * 37337) % 250000 + 1))
  w $off $len $(((i * 7) % 254 + 1))
done
# zero writes over data written above: whole grains (zeroed grains with
# zeroed_grain=on), a range across the table edge, and partial grains
z $G $G
z $((T - G)) $((2 * G))
z $((2 * T - G)) $G
z 1000 3000
z $((3 * G + 100)) $((G + 50))
z $((size - 2 * G)) $((2 * G))
# writes after zeroes, inside a zeroed grain
w $((G + 100)) 10 0x7e
w $((T + 5)) 3 0x7f
((${#cmds[@]} / 2 >= 40)) || die "only $((${#cmds[@]} / 2)) qemu-io commands"

check_image() { # LABEL IMG [leaks-ok]
  local label=$1 img=$2 leaks_ok=${3:-}
  qemu-io -f vmdk "${cmds[@]}" "$img" >"$tmpdir/qemu-io.log" 2>&1 ||
    { cat "$tmpdir/qemu-io.log" >&2; die "$label: qemu-io writes failed"; }
  qemu-img convert -f vmdk -O raw "$img" "$tmpdir/ref.raw"
  [[ $(stat -c %s "$tmpdir/ref.raw") -eq $size ]] || die "$label: qemu export has the wrong size"

  # vmdkit read of the whole disk
  "$VMDKIT" read "$img" 0 $size >"$tmpdir/read.raw" ||
    die "$label: vmdkit read failed"
  cmp "$tmpdir/ref.raw" "$tmpdir/read.raw" || die "$label: vmdkit read differs from qemu-img convert"

  # vmdkit read of odd ranges equals the same bytes of the export
  local r off len
  for r in "0 1" "511 2" "$((G - 1)) 2" "$((T - 3)) 7" "$((T + 3 * G)) 100000" \
    "$((size - 1)) 1" "$((2 * T - 77)) 300000" "12345 678901"; do
    set -- $r
    off=$1 len=$2
    "$VMDKIT" read "$img" $off $len >"$tmpdir/part" || die "$label: vmdkit read $off $len failed"
    dd if="$tmpdir/ref.raw" of="$tmpdir/part.ref" bs=64K iflag=skip_bytes,count_bytes \
      skip=$off count=$len status=none
    cmp "$tmpdir/part.ref" "$tmpdir/part" || die "$label: vmdkit read $off $len differs"
  done

  # vmdkit convert -O raw
  rm -f "$tmpdir/conv.raw"
  "$VMDKIT" convert -O raw "$img" "$tmpdir/conv.raw" || die "$label: vmdkit convert failed"
  cmp "$tmpdir/ref.raw" "$tmpdir/conv.raw" || die "$label: vmdkit convert -O raw differs"

  # vmdkit map agrees with qemu-img map, grain by grain (sparse images; for
  # flat ones qemu reports everything as data)
  if [[ $label == monolithicSparse* ]]; then
    qemu-img map -f vmdk --output=json "$img" >"$tmpdir/qmap.json"
    "$VMDKIT" map --output=json "$img" >"$tmpdir/vmap.json" || die "$label: vmdkit map failed"
    map_grains "$tmpdir/qmap.json" $G >"$tmpdir/qgrains"
    map_grains "$tmpdir/vmap.json" $G >"$tmpdir/vgrains" || die "$label: vmdkit map runs are not consecutive"
    diff "$tmpdir/qgrains" "$tmpdir/vgrains" >"$tmpdir/diff" ||
      { head -20 "$tmpdir/diff" >&2; die "$label: vmdkit map differs from qemu-img map (< qemu, > vmdkit; start present zero data offset)"; }
  fi

  # vmdkit compare, vmdkit check
  expect_rc 0 "$VMDKIT" compare "$img" "$tmpdir/ref.raw"
  if [[ -z $leaks_ok ]]; then
    expect_rc 0 "$VMDKIT" check "$img"
  else
    # qemu leaks the old grain when it turns an allocated grain into a
    # zeroed-grain entry: vmdkit check must see leaks (exit 3), nothing worse
    run "$VMDKIT" check --output=json "$img"
    [[ $rc -eq 3 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "$label: vmdkit check exit $rc, expected 3 (leaks)"; }
    [[ $(json_get "$tmpdir/out" corruptions) -eq 0 ]] || die "$label: vmdkit check reports corruption"
  fi
  echo "$label: ok ($((${#cmds[@]} / 2)) qemu-io writes)"
}

qemu-img create -q -f vmdk "$tmpdir/sparse.vmdk" $size
check_image "monolithicSparse" "$tmpdir/sparse.vmdk"

qemu-img create -q -f vmdk -o zeroed_grain=on "$tmpdir/zeroed.vmdk" $size
check_image "monolithicSparse zeroed_grain=on" "$tmpdir/zeroed.vmdk" leaks-ok
# qemu made zeroed-grain entries for the whole-grain zero writes: the
# export's bytes there are zeros, and qemu-img map says so too.
qemu-img map -f vmdk --output=json "$tmpdir/zeroed.vmdk" >"$tmpdir/qmap.json"
python3 - "$tmpdir/qmap.json" $((size - 2 * G)) $size <<'EOF' ||
import json, sys
lo, hi = int(sys.argv[2]), int(sys.argv[3])
m = json.load(open(sys.argv[1]))
assert any(e["start"] <= lo and e["start"] + e["length"] >= hi and
           e["zero"] and e["present"] and not e["data"] for e in m), m[-4:]
EOF
  die "qemu made no zeroed grains at the end of the disk (test premise)"

qemu-img create -q -f vmdk -o subformat=monolithicFlat "$tmpdir/flat.vmdk" $size
check_image "monolithicFlat" "$tmpdir/flat.vmdk"
echo "all ok"
