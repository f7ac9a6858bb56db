#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Split and ESXi layouts: twoGbMaxExtentSparse, twoGbMaxExtentFlat, vmfs.
#
#  1. vmdkit creates each one at 5 GiB (2047 MiB extents, like VMware and
#     VirtualBox): the descriptor text and file names are checked, the
#     split sparse extents carry no embedded descriptor; writes at odd
#     offsets across the extent boundaries go into the image with `vmdkit
#     write` and into a sparse raw mirror with dd; then qemu-img compare,
#     qemu-img check, vmdkinfo, vmdkit check and vmdkit compare; then
#     qemu-io writes across the boundaries too and vmdkit reads them.
#  2. convert walks the image through every creatable layout and raw, each
#     step from the previous one's output.
#  3. qemu-img creates both split layouts (QEMU's 2 GiB extents), qemu-io
#     writes patterns across its boundaries, vmdkit reads them identically,
#     writes across them itself, and qemu-img compares; the
#     "2GbMaxExtentSparse" createType spelling reads the same.
# Every file is sparse on the host: the whole test writes a few MiB.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

GiB=$((1 << 30))
size=$((5 * GiB))
S=4192256           # sectors in a 2047 MiB extent
X=$((S * 512))      # its bytes
last=$((size / 512 - 2 * S)) # sectors in the third, last extent
mirror=$tmpdir/mirror.raw
head -c $((1024 * 1024)) /dev/urandom >"$tmpdir/random.bin"

# (offset length) pairs at odd places across the 2047 MiB and 2 GiB edges
writes() {
  echo 0 1
  echo 511 3
  echo $((X - 1)) 2
  echo $((X - 100)) 200
  echo $((X + 7)) 5000
  echo $((2 * GiB - 100)) 300
  echo $((2 * X - 65536 - 3)) 131079
  echo $((2 * X - 1)) 1
  echo $((2 * X)) 1
  echo $((4 * GiB + 7)) 1000
  echo $((size - 70001)) 70000
  echo $((size - 1)) 1
}

src=0
# write_both IMG OFF LEN: LEN random bytes at OFF into IMG (vmdkit) and the mirror
write_both() {
  local img=$1 off=$2 len=$3
  src=$(((src + 7919 * len + 13) % (1024 * 1024 - len)))
  dd if="$tmpdir/random.bin" of="$tmpdir/chunk" bs=64K iflag=skip_bytes,count_bytes \
    skip=$src count=$len status=none
  "$VMDKIT" write "$img" $off <"$tmpdir/chunk" || die "vmdkit write $img $off ($len bytes) failed"
  dd if="$tmpdir/chunk" of="$mirror" bs=64K oflag=seek_bytes seek=$off conv=notrunc status=none
}

# qemu_both IMG OFF LEN BYTE: qemu-io writes pattern BYTE into IMG, dd into the mirror
qemu_both() {
  local img=$1 off=$2 len=$3 byte=$4
  qemu-io -f vmdk -c "write -P $byte $off $len" "$img" >"$tmpdir/qemu-io.log" 2>&1 ||
    { cat "$tmpdir/qemu-io.log" >&2; die "qemu-io write $img $off $len failed"; }
  head -c $len /dev/zero | tr '\0' "\\$(printf '%03o' $byte)" |
    dd of="$mirror" bs=64K oflag=seek_bytes seek=$off conv=notrunc status=none
}

# Both tools agree the image equals the mirror; vmdkit reads the edges.
same_as_mirror() {
  local label=$1 img=$2 off len
  [[ $(stat -c %s "$mirror") -eq $size ]] || die "$label: mirror grew (test bug)"
  run qemu-img compare -f raw -F vmdk "$mirror" "$img"
  [[ $rc -eq 0 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "$label: qemu-img compare: exit $rc"; }
  run "$VMDKIT" compare "$img" "$mirror"
  [[ $rc -eq 0 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "$label: vmdkit compare: exit $rc"; }
  while read -r off len; do
    off=$((off - 50)) len=$((len + 100))
    ((off >= 0)) || off=0
    ((off + len <= size)) || len=$((size - off))
    "$VMDKIT" read "$img" $off $len >"$tmpdir/got" || die "$label: vmdkit read $off $len failed"
    dd if="$mirror" of="$tmpdir/want" bs=64K iflag=skip_bytes,count_bytes skip=$off count=$len status=none
    cmp "$tmpdir/want" "$tmpdir/got" || die "$label: vmdkit read at $off ($len bytes) differs"
  done < <(writes)
}

# qemu-img check: clean, or (flat layouts, some versions) nothing to check
qemu_check() {
  local label=$1 img=$2
  run qemu-img check -f vmdk "$img"
  if [[ $rc -eq 0 ]] && grep -q "No errors" "$tmpdir/out"; then
    return
  fi
  if [[ $rc -eq 63 ]] && grep -q "does not support checks" "$tmpdir/out" "$tmpdir/err"; then
    return
  fi
  cat "$tmpdir/out" "$tmpdir/err" >&2
  die "$label: qemu-img check: exit $rc"
}

# The descriptor's extent lines, exactly.
extent_lines() {
  grep -E '^(RW|RDONLY|NOACCESS) ' "$1"
}

# ---- 1. vmdkit creates ------------------------------------------------------

for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat vmfs; do
  rm -f "$tmpdir"/img*.vmdk "$mirror"
  img=$tmpdir/img.vmdk
  "$VMDKIT" create -q -o subformat=$sub "$img" 5G || die "$sub: vmdkit create failed"
  truncate -s $size "$mirror"
  grep -qx "createType=\"$sub\"" "$img" || { cat "$img" >&2; die "$sub: createType"; }
  case $sub in
  twoGbMaxExtentSparse)
    printf 'RW %s SPARSE "img-s%03d.vmdk"\n' $S 1 $S 2 $last 3 >"$tmpdir/want-lines"
    files="img-s001.vmdk img-s002.vmdk img-s003.vmdk" ;;
  twoGbMaxExtentFlat)
    printf 'RW %s FLAT "img-f%03d.vmdk" 0\n' $S 1 $S 2 $last 3 >"$tmpdir/want-lines"
    files="img-f001.vmdk img-f002.vmdk img-f003.vmdk" ;;
  vmfs)
    printf 'RW %s VMFS "img-flat.vmdk"\n' $((size / 512)) >"$tmpdir/want-lines"
    files="img-flat.vmdk" ;;
  esac
  extent_lines "$img" >"$tmpdir/got-lines"
  cmp "$tmpdir/want-lines" "$tmpdir/got-lines" ||
    { cat "$img" >&2; die "$sub: extent lines differ from the expected ones"; }
  (cd "$tmpdir" && ls img*.vmdk) | sort >"$tmpdir/got-files"
  printf '%s\n' img.vmdk $files | sort >"$tmpdir/want-files"
  cmp "$tmpdir/want-files" "$tmpdir/got-files" || die "$sub: wrong set of files"
  case $sub in
  twoGbMaxExtentSparse)
    # hosted sparse extents without an embedded descriptor (offset and size 0),
    # each holding its share of the disk
    python3 - "$tmpdir" $S $last <<'EOF' || die "$sub: sparse extent headers"
import struct, sys
d, S, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i, cap in ((1, S), (2, S), (3, last)):
    h = open("%s/img-s%03d.vmdk" % (d, i), "rb").read(512)
    magic, ver, flags, capacity, grain, doff, dsize = struct.unpack_from("<IIIQQQQ", h)
    assert magic == 0x564d444b, "magic"
    assert capacity == cap, "s%03d capacity %d, expected %d" % (i, capacity, cap)
    assert (doff, dsize) == (0, 0), "s%03d embedded descriptor at %d (%d sectors)" % (i, doff, dsize)
EOF
    # opened alone, a split extent says to open its descriptor
    run "$VMDKIT" info "$tmpdir/img-s001.vmdk"
    [[ $rc -ne 0 ]] && grep -q "open the descriptor file" "$tmpdir/err" ||
      { cat "$tmpdir/err" >&2; die "$sub: opening img-s001.vmdk alone"; } ;;
  twoGbMaxExtentFlat)
    [[ "$(stat -c %s "$tmpdir/img-f001.vmdk" "$tmpdir/img-f002.vmdk" "$tmpdir/img-f003.vmdk" | tr '\n' ' ')" == "$X $X $((last * 512)) " ]] ||
      die "$sub: flat extent file sizes" ;;
  esac
  # nothing is preallocated on the host
  alloc=$(du -k -c "$tmpdir"/img*.vmdk | tail -n1 | cut -f1)
  ((alloc < 2048)) || die "$sub: the new image allocates $alloc KiB on the host"

  n=0
  while read -r off len; do
    write_both "$img" $off $len
    n=$((n + 1))
  done < <(writes)
  qemu_check "$sub" "$img"
  same_as_mirror "$sub (vmdkit writes)" "$img"
  expect_rc 0 "$VMDKIT" check "$img"
  if command -v vmdkinfo >/dev/null; then
    run vmdkinfo "$img"
    [[ $rc -eq 0 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "$sub: vmdkinfo exit $rc"; }
    grep -Eq "Media size:.*\($size bytes\)" "$tmpdir/out" ||
      { cat "$tmpdir/out" >&2; die "$sub: vmdkinfo media size"; }
  fi
  "$VMDKIT" info --output=json "$img" >"$tmpdir/info.json"
  [[ $(json_get "$tmpdir/info.json" virtual-size) -eq $size &&
     $(json_get "$tmpdir/info.json" format-specific data create-type) == "$sub" ]] ||
    die "$sub: vmdkit info"

  # qemu-io writes across the same edges into the vmdkit-made image
  qemu_both "$img" $((X - 3)) 9 0x61
  qemu_both "$img" $((2 * X + 511)) 4097 0x62
  qemu_both "$img" $((2 * GiB - 1)) 2 0x63
  qemu_check "$sub after qemu-io" "$img"
  same_as_mirror "$sub (qemu-io writes)" "$img"
  expect_rc 0 "$VMDKIT" check "$img"
  echo "$sub: ok ($n vmdkit writes, 3 qemu-io writes)"
done

# ---- 2. convert through every layout ---------------------------------------

# img.vmdk is the vmfs image now; each step converts the previous result
prev=$img
for to in twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized monolithicSparse \
  monolithicFlat vmfs raw twoGbMaxExtentSparse; do
  out=$tmpdir/c-$to.vmdk
  if [[ $to == raw ]]; then
    out=$tmpdir/c.raw
    "$VMDKIT" convert -O raw "$prev" "$out" || die "convert $prev -> raw failed"
  else
    rm -f "$tmpdir"/c-$to*.vmdk
    "$VMDKIT" convert -O vmdk -o subformat=$to "$prev" "$out" ||
      die "convert $(basename "$prev") -> $to failed"
    grep -qx "createType=\"$to\"" "$out" || die "convert -> $to: createType"
  fi
  run "$VMDKIT" compare "$out" "$mirror"
  [[ $rc -eq 0 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "convert -> $to: differs from the mirror"; }
  run qemu-img compare -F raw "$out" "$mirror"
  [[ $rc -eq 0 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "convert -> $to: qemu-img compare: exit $rc"; }
  prev=$out
done
echo "convert chain: ok"

# ---- 3. qemu-img creates -----------------------------------------------------

for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
  rm -f "$tmpdir"/q*.vmdk "$mirror"
  img=$tmpdir/q.vmdk
  qemu-img create -q -f vmdk -o subformat=$sub "$img" 5G
  truncate -s $size "$mirror"
  # QEMU splits at 2 GiB
  [[ $(extent_lines "$img" | awk '{print $2}' | tr '\n' ' ') == "4194304 4194304 2097152 " ]] ||
    { cat "$img" >&2; die "qemu $sub: unexpected extents (test assumption)"; }
  qemu_both "$img" $((2 * GiB - 100)) 300 0xa5
  qemu_both "$img" $((4 * GiB + 7)) 4096 0x5a
  qemu_both "$img" 0 1 0x01
  qemu_both "$img" $((4 * GiB - 1)) 2 0x77
  qemu_both "$img" $((size - 3)) 3 0x44
  same_as_mirror "qemu $sub (qemu-io writes)" "$img"
  "$VMDKIT" read "$img" $((2 * GiB - 100)) 300 >"$tmpdir/got"
  head -c 300 /dev/zero | tr '\0' '\245' | cmp - "$tmpdir/got" ||
    die "qemu $sub: the pattern across 2 GiB reads wrong"
  expect_rc 0 "$VMDKIT" check "$img"
  if [[ $sub == twoGbMaxExtentSparse ]]; then
    # QEMU reserves 20 all-NUL descriptor sectors in each split extent:
    # opened alone, it is still "open the descriptor file"
    run "$VMDKIT" info "$tmpdir/q-s002.vmdk"
    [[ $rc -ne 0 ]] && grep -q "open the descriptor file" "$tmpdir/err" ||
      { cat "$tmpdir/err" >&2; die "qemu $sub: opening q-s002.vmdk alone"; }
  fi

  # vmdkit writes across QEMU's boundaries; qemu reads them
  n=0
  while read -r off len; do
    write_both "$img" $off $len
    n=$((n + 1))
  done < <(writes)
  write_both "$img" $((2 * GiB - 1)) 2
  write_both "$img" $((4 * GiB - 4097)) 8193
  qemu_check "qemu $sub after vmdkit writes" "$img"
  same_as_mirror "qemu $sub (vmdkit writes)" "$img"
  expect_rc 0 "$VMDKIT" check "$img"

  # the spec's spelling of the createType reads the same
  sed -i "s/createType=\"twoGb/createType=\"2Gb/" "$img"
  grep -q '^createType="2GbMaxExtent' "$img" || die "sed failed (test bug)"
  run "$VMDKIT" compare "$img" "$mirror"
  [[ $rc -eq 0 ]] || { cat "$tmpdir/err" >&2; die "qemu $sub as 2GbMaxExtent*: compare exit $rc"; }
  "$VMDKIT" info --output=json "$img" >"$tmpdir/info.json"
  [[ $(json_get "$tmpdir/info.json" format-specific data create-type) == "${sub/twoGb/2Gb}" ]] ||
    die "qemu $sub as 2GbMaxExtent*: create-type"
  echo "qemu-made $sub: ok ($((n + 2)) vmdkit writes)"
done

# the 2Gb spelling is accepted by create as well (written as twoGb...)
"$VMDKIT" create -q -o subformat=2GbMaxExtentFlat "$tmpdir/alias.vmdk" 1M
grep -qx 'createType="twoGbMaxExtentFlat"' "$tmpdir/alias.vmdk" || die "create -o subformat=2GbMaxExtentFlat"
[[ -f "$tmpdir/alias-f001.vmdk" ]] || die "create -o subformat=2GbMaxExtentFlat: no alias-f001.vmdk"
echo "all ok"
