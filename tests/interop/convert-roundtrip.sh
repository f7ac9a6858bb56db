#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# raw (holes, runs of written zeros, data) -> vmdkit convert -O vmdk
# (monolithicSparse, grain_size=4096, monolithicFlat) -> qemu-img compare
# identical, qemu-img check clean, allocated grains exactly the grains with
# non-zero bytes -> vmdkit convert back to raw, cmp; and a qemu-made VMDK
# converted to VMDK.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

M=$((1024 * 1024))
size=$((48 * M))
raw=$tmpdir/src.raw
truncate -s $size "$raw"
put_random() { # OFF LEN
  head -c "$2" /dev/urandom | dd of="$raw" bs=64K oflag=seek_bytes seek="$1" conv=notrunc status=none
}
put_zeros() { # OFF LEN: written zeros (allocated in the raw file)
  head -c "$2" /dev/zero | dd of="$raw" bs=64K oflag=seek_bytes seek="$1" conv=notrunc status=none
}
put_random 0 4096
put_random $((M + 7)) 100000
put_zeros $((4 * M)) $((4 * M))          # a 4 MiB run of written zeros
put_random $((6 * M + 65536 * 3 + 100)) 1 # one byte inside the zero run
put_random $((20 * M)) $((3 * M))
put_zeros $((23 * M)) $((M))
put_random $((32 * M - 3000)) 8000        # across the grain-table edge
put_random $((size - 1)) 1                # the last byte
[[ $(stat -c %s "$raw") -eq $size ]] || die "raw source has the wrong size (test bug)"

# Grains (of size G) holding a non-zero byte in FILE, one start offset per line.
nonzero_grains() {
  python3 - "$1" "$2" <<'EOF'
import sys
path, G = sys.argv[1], int(sys.argv[2])
with open(path, 'rb') as f:
    i = 0
    while True:
        b = f.read(G)
        if not b:
            break
        if b.count(0) != len(b):
            print(i * G)
        i += 1
EOF
}

# Grains a qemu-img/vmdkit JSON map reports as data, one start per line
# (every run split into G-sized grains).
data_grains() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
G = int(sys.argv[2])
out = set()
for e in json.load(open(sys.argv[1])):
    if e.get("data"):
        s, n = int(e["start"]), int(e["length"])
        for g in range(s // G, (s + n + G - 1) // G):
            out.add(g * G)
for g in sorted(out):
    print(g)
EOF
}

check_vmdk() { # LABEL IMG REFERENCE [FMT of REFERENCE]
  local label=$1 img=$2 ref=$3 reffmt=${4:-raw}
  run qemu-img compare -f "$reffmt" -F vmdk "$ref" "$img"
  [[ $rc -eq 0 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "$label: qemu-img compare: exit $rc"; }
  run qemu-img check -f vmdk "$img"
  [[ $rc -eq 0 ]] && grep -q "No errors" "$tmpdir/out" ||
    { cat "$tmpdir/out" "$tmpdir/err" >&2; die "$label: qemu-img check: exit $rc"; }
  expect_rc 0 "$VMDKIT" check "$img"
  expect_rc 0 "$VMDKIT" compare "$ref" "$img"
}

check_grains() { # LABEL IMG GRAIN REFERENCE-RAW
  local label=$1 img=$2 G=$3 ref=$4
  nonzero_grains "$ref" $G >"$tmpdir/want"
  [[ -s "$tmpdir/want" ]] || die "no data grains in the source (test bug)"
  qemu-img map -f vmdk --output=json "$img" >"$tmpdir/qmap.json"
  data_grains "$tmpdir/qmap.json" $G >"$tmpdir/qgot"
  diff "$tmpdir/want" "$tmpdir/qgot" >"$tmpdir/diff" ||
    { head -20 "$tmpdir/diff" >&2; die "$label: qemu-img map: allocated grains are not exactly the non-zero grains (< wanted, > allocated)"; }
  "$VMDKIT" map --output=json "$img" >"$tmpdir/vmap.json" || die "$label: vmdkit map failed"
  data_grains "$tmpdir/vmap.json" $G >"$tmpdir/vgot"
  diff "$tmpdir/want" "$tmpdir/vgot" >"$tmpdir/diff" ||
    { head -20 "$tmpdir/diff" >&2; die "$label: vmdkit map: data grains are not exactly the non-zero grains (< wanted, > reported)"; }
}

back_to_raw() { # LABEL IMG REFERENCE-RAW
  local label=$1 img=$2 ref=$3
  rm -f "$tmpdir/back.raw"
  "$VMDKIT" convert -O raw "$img" "$tmpdir/back.raw" || die "$label: convert back to raw failed"
  cmp "$ref" "$tmpdir/back.raw" || die "$label: raw -> vmdk -> raw differs"
  # holes and zero runs stay holes in the raw output too (data is ~3.3 MiB)
  local used
  used=$(du -B1 "$tmpdir/back.raw" | cut -f1)
  ((used < 16 * M)) || die "$label: raw output uses $used bytes on disk for ~3.3 MiB of data"
}

# 1. monolithicSparse, default grain
rm -f "$tmpdir/a.vmdk"
"$VMDKIT" convert -f raw -O vmdk "$raw" "$tmpdir/a.vmdk" || die "convert to monolithicSparse failed"
check_vmdk "sparse" "$tmpdir/a.vmdk" "$raw"
check_grains "sparse" "$tmpdir/a.vmdk" 65536 "$raw"
back_to_raw "sparse" "$tmpdir/a.vmdk" "$raw"
# the 4 MiB of written zeros took no space in the vmdk
vsize=$(stat -c %s "$tmpdir/a.vmdk")
((vsize < 6 * M)) || die "sparse vmdk is $vsize bytes for ~3.3 MiB of data"
echo "raw -> monolithicSparse -> raw: ok ($vsize bytes)"

# 2. monolithicSparse, 4 KiB grains, with progress output
rm -f "$tmpdir/b.vmdk"
"$VMDKIT" convert -p -O vmdk -o grain_size=4096 "$raw" "$tmpdir/b.vmdk" >/dev/null 2>&1 ||
  die "convert -o grain_size=4096 -p failed"
check_vmdk "sparse 4K" "$tmpdir/b.vmdk" "$raw"
check_grains "sparse 4K" "$tmpdir/b.vmdk" 4096 "$raw"
back_to_raw "sparse 4K" "$tmpdir/b.vmdk" "$raw"
echo "raw -> monolithicSparse (4 KiB grains) -> raw: ok"

# 3. monolithicFlat
rm -f "$tmpdir/c.vmdk" "$tmpdir/c-flat.vmdk"
"$VMDKIT" convert -O vmdk -o subformat=monolithicFlat "$raw" "$tmpdir/c.vmdk" ||
  die "convert to monolithicFlat failed"
[[ -f "$tmpdir/c-flat.vmdk" ]] || die "monolithicFlat: no c-flat.vmdk"
[[ $(stat -c %s "$tmpdir/c-flat.vmdk") -eq $size ]] || die "monolithicFlat: c-flat.vmdk has the wrong size"
cmp "$raw" "$tmpdir/c-flat.vmdk" || die "monolithicFlat: the flat extent is not the raw bytes"
grep -aq 'createType="monolithicFlat"' "$tmpdir/c.vmdk" || die "monolithicFlat: descriptor createType"
check_vmdk "flat" "$tmpdir/c.vmdk" "$raw"
back_to_raw "flat" "$tmpdir/c.vmdk" "$raw"
echo "raw -> monolithicFlat -> raw: ok"

# 4. a qemu-made vmdk (with zeroed grains) -> vmdk
qemu-img create -q -f vmdk -o zeroed_grain=on "$tmpdir/q.vmdk" 40M
qemu-io -f vmdk -c "write -P 0x61 0 1M" -c "write -P 0x62 $((32 * M - 512)) 1024" \
  -c "write -z 65536 131072" -c "write -P 0x63 $((40 * M - 3)) 3" \
  -c "write -P 0x64 300007 5" "$tmpdir/q.vmdk" >/dev/null
qemu-img convert -f vmdk -O raw "$tmpdir/q.vmdk" "$tmpdir/q.raw"
rm -f "$tmpdir/d.vmdk"
"$VMDKIT" convert -O vmdk "$tmpdir/q.vmdk" "$tmpdir/d.vmdk" || die "convert qemu vmdk -> vmdk failed"
check_vmdk "vmdk->vmdk" "$tmpdir/d.vmdk" "$tmpdir/q.vmdk" vmdk
check_grains "vmdk->vmdk" "$tmpdir/d.vmdk" 65536 "$tmpdir/q.raw"
back_to_raw "vmdk->vmdk" "$tmpdir/d.vmdk" "$tmpdir/q.raw"
echo "qemu vmdk -> vmdk: ok"

# 5. converting into a missing folder fails with one error line
run "$VMDKIT" convert -O vmdk "$raw" "$tmpdir/no/such/dir/x.vmdk"
[[ $rc -ne 0 ]] || die "convert into a missing folder succeeded"
one_error_line "convert into a missing folder"
echo "all ok"
