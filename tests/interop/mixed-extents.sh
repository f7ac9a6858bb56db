#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Descriptors written by hand (as the spec allows and real files contain):
#
#  1. One disk mixing FLAT with a non-zero offset, ZERO, RDONLY FLAT, a
#     vmdkit-made SPARSE extent without an embedded descriptor (the -s001 file
#     of a twoGbMaxExtentSparse image), an odd-sized FLAT and a NOACCESS
#     extent, under each of the four first-line spellings, with LF and CRLF
#     line ends and keys in odd case: it reads as the expected raw bytes up
#     to the NOACCESS extent; reading that extent, and writing into the
#     RDONLY, ZERO or NOACCESS extents (also when the write starts in a RW
#     extent) are refused with clear messages and change no byte of any file
#     (sha256 of every file before and after); writes inside RW extents and
#     across RW boundaries land where they should.
#  2. Error texts: an unknown extent type, a missing extent file (named), a
#     NOACCESS read.  A renamed monolithicSparse whose embedded descriptor
#     names the old file opens, reads and writes.
#  3. The classic boundary bug: extents of 4193792, 2097664 and 512 sectors,
#     sparse and flat mixed both ways, with writes and reads at odd offsets
#     across both boundaries, against a sparse raw mirror, by vmdkit and by
#     qemu-io, compared by qemu-img compare and vmdkit compare.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3

has_qemu=true
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || has_qemu=false
d=$tmpdir
head -c $((1024 * 1024)) /dev/urandom >"$d/random.bin"

# piece SKIP LEN: LEN bytes of random.bin from SKIP, on stdout
piece() {
  dd if="$d/random.bin" bs=64K iflag=skip_bytes,count_bytes skip=$1 count=$2 status=none
}
# put FILE OFF < data: overwrite bytes of FILE at OFF
put() {
  dd of="$1" bs=64K oflag=seek_bytes seek=$2 conv=notrunc status=none
}
# cut FILE OFF LEN: bytes of FILE on stdout
cut_bytes() {
  dd if="$1" bs=64K iflag=skip_bytes,count_bytes skip=$2 count=$3 status=none
}
sums() { # sha256 of every file in the folder but the scratch ones
  (cd "$d" && sha256sum -- $(ls | grep -Ev '^(random\.bin|out|err|got|want|chunk|sums-.*)$'))
}
expect_refused() { # LABEL PATTERN CMD...: exit 1, one stderr line matching PATTERN
  local label=$1 pat=$2
  shift 2
  run "$@"
  [[ $rc -eq 1 ]] || { cat "$d/err" >&2; die "$label: exit $rc, expected 1"; }
  one_error_line "$label"
  grep -Eq -- "$pat" "$d/err" || { cat "$d/err" >&2; die "$label: message does not match /$pat/"; }
}

# ---- 1. the mixed disk ---------------------------------------------------------

# E0: RW FLAT 100 sectors of base.bin from sector 7 (the file has 120)
piece 0 $((120 * 512)) >"$d/base.bin"
# E1: RW ZERO 50 sectors
# E2: RDONLY FLAT 30 sectors
piece 100000 $((30 * 512)) >"$d/ro.bin"
# E3: RW SPARSE 2048 sectors: the -s001 extent of a 1 MiB twoGbMaxExtentSparse
"$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse "$d/sp.vmdk" 1M
truncate -s 1M "$d/sp.expect"
for w in "0 1" "65535 3" "70000 9000" "$((1024 * 1024 - 5)) 5"; do
  set -- $w
  piece $((200000 + $1)) $2 >"$d/chunk"
  "$VMDKIT" write "$d/sp.vmdk" $1 <"$d/chunk"
  put "$d/sp.expect" $1 <"$d/chunk"
done
rm "$d/sp.vmdk"
mv "$d/sp-s001.vmdk" "$d/part.vmdk"
# E4: RW FLAT 17 sectors
piece 400000 $((17 * 512)) >"$d/tail.bin"
# E5: NOACCESS FLAT 40 sectors
piece 500000 $((40 * 512)) >"$d/na.bin"

sizes=(100 50 30 2048 17 40)
starts=()
s=0
for n in "${sizes[@]}"; do starts+=($((s * 512))); s=$((s + n)); done
total=$((s * 512))
readable=$((starts[5]))
{
  cut_bytes "$d/base.bin" $((7 * 512)) $((100 * 512))
  head -c $((50 * 512)) /dev/zero
  cat "$d/ro.bin" "$d/sp.expect" "$d/tail.bin"
} >"$d/expect.raw"
[[ $(stat -c %s "$d/expect.raw") -eq $readable ]] || die "expected image has the wrong size (test bug)"

# write_desc FIRSTLINE EOL: the mixed descriptor as mixed.vmdk
write_desc() {
  local first=$1 eol=$2
  {
    printf '%s\n' "$first"
    printf '# written by hand\n'
    printf 'Version=1\n'
    printf 'cid=12345678\n'
    printf 'PARENTCID = ffffffff\n'
    printf 'CreateType = "twoGbMaxExtentSparse"\n'
    printf '\n# Extent description\n'
    printf 'RW 100 FLAT "base.bin" 7\n'
    printf 'RW 50 zero\n'
    printf 'RDONLY 30 FLAT "ro.bin" 0\n'
    printf 'RW 2048 SPARSE "part.vmdk"\n'
    printf 'RW 17 Flat "tail.bin" 0\n'
    printf 'NOACCESS 40 FLAT "na.bin" 0\n'
    printf '\n#DDB\n'
    printf 'DDB.adapterType = "lsilogic"\n'
  } | if [[ $eol == crlf ]]; then sed 's/$/\r/'; else cat; fi >"$d/mixed.vmdk"
}

for first in "# Disk DescriptorFile" "# Disk Descriptor File" "#Disk Descriptor File" \
  "#Disk DescriptorFile"; do
  for eol in lf crlf; do
    write_desc "$first" $eol
    "$VMDKIT" read "$d/mixed.vmdk" 0 $readable >"$d/got" ||
      die "'$first' $eol: read failed"
    cmp "$d/expect.raw" "$d/got" || die "'$first' $eol: the disk reads wrong"
  done
done
"$VMDKIT" info --output=json "$d/mixed.vmdk" >"$d/out"
[[ $(json_get "$d/out" virtual-size) -eq $total ]] || die "mixed: virtual size"
[[ $(json_get "$d/out" format-specific data extents 2 access) == RDONLY &&
   $(json_get "$d/out" format-specific data extents 1 type) == ZERO &&
   $(json_get "$d/out" format-specific data extents 5 access) == NOACCESS ]] ||
  die "mixed: vmdkit info extents"
expect_rc 0 "$VMDKIT" check "$d/mixed.vmdk"

# reads across each boundary at odd offsets, and the NOACCESS extent
for i in 1 2 3 4; do
  for w in "-1 2" "-513 1027" "-7 3000"; do
    set -- $w
    off=$((starts[i] + $1)) len=$2
    ((off + len <= readable)) || len=$((readable - off))
    "$VMDKIT" read "$d/mixed.vmdk" $off $len >"$d/got" || die "read $off $len failed"
    cut_bytes "$d/expect.raw" $off $len | cmp - "$d/got" || die "read $off $len differs"
  done
done
expect_refused "NOACCESS read" "NOACCESS" "$VMDKIT" read "$d/mixed.vmdk" $((readable - 1)) 2
[[ ! -s "$d/out" ]] || die "a refused read printed data"
expect_refused "whole-disk read" "NOACCESS" "$VMDKIT" read "$d/mixed.vmdk" 0 $total

# refused writes change nothing, anywhere
sums >"$d/sums-before"
printf 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' >"$d/chunk" # 55 bytes
w_refused() { # LABEL PATTERN OFFSET
  expect_refused "$1" "$2" "$VMDKIT" write "$d/mixed.vmdk" $3 <"$d/chunk"
}
w_refused "write into RDONLY" "RDONLY" $((starts[2] + 101))
w_refused "write into ZERO" "ZERO" $((starts[1] + 3))
w_refused "write into NOACCESS" "NOACCESS" $((starts[5] + 511))
w_refused "write FLAT->ZERO" "ZERO" $((starts[1] - 20))
w_refused "write ZERO->RDONLY" "ZERO|RDONLY" $((starts[2] - 20))
w_refused "write RDONLY->SPARSE" "RDONLY" $((starts[3] - 20))
w_refused "write FLAT->NOACCESS" "NOACCESS" $((starts[5] - 20))
# a write that starts in the RW sparse extent and ends in NOACCESS (under
# 1 MiB: `vmdkit write` passes stdin to the library a MiB at a time; one
# library call is refused whole, see test-split-create)
piece 0 $((200003 + 17 * 512 + 1000)) >"$d/chunk"
w_refused "write SPARSE->FLAT->NOACCESS" "NOACCESS" $((starts[4] - 200003))
sums >"$d/sums-after"
cmp "$d/sums-before" "$d/sums-after" || { diff "$d/sums-before" "$d/sums-after" >&2; die "a refused write changed a file"; }
# zeroing a ZERO extent is fine and writes nothing (vmdk_zero is tested in
# the unit tests; here: the CLI has no zero command)

# writes inside RW extents and across RW boundaries
cp "$d/expect.raw" "$d/mirror.raw"
for w in "0 1" "$((starts[1] - 1)) 1" "$((starts[3] - 0)) 513" "$((starts[4] - 77)) 100" \
  "$((starts[4] + 3)) $((17 * 512 - 3))" "$((starts[3] + 9999)) 70001" "$((starts[4] - 4097)) $((4097 + 17 * 512))"; do
  set -- $w
  piece $((300000 + $2)) $2 >"$d/chunk"
  "$VMDKIT" write "$d/mixed.vmdk" $1 <"$d/chunk" || die "write $1 ($2 bytes) failed"
  put "$d/mirror.raw" $1 <"$d/chunk"
done
"$VMDKIT" read "$d/mixed.vmdk" 0 $readable >"$d/got"
cmp "$d/mirror.raw" "$d/got" || die "mixed: the disk reads wrong after RW writes"
cut_bytes "$d/base.bin" 0 $((7 * 512)) | cmp - <(piece 0 $((7 * 512))) ||
  die "mixed: a write went before the FLAT extent's offset"
cut_bytes "$d/base.bin" $((107 * 512)) $((13 * 512)) | cmp - <(piece $((107 * 512)) $((13 * 512))) ||
  die "mixed: a write went past the FLAT extent's end"
cmp "$d/ro.bin" <(piece 100000 $((30 * 512))) || die "mixed: the RDONLY file changed"
cmp "$d/na.bin" <(piece 500000 $((40 * 512))) || die "mixed: the NOACCESS file changed"
grep -q '^CID=12345678' "$d/mixed.vmdk" && die "mixed: the CID was not renewed by a write"
expect_rc 0 "$VMDKIT" check "$d/mixed.vmdk"
echo "mixed extents: ok"

# ---- 2. errors, renamed files --------------------------------------------------

write_desc "# Disk DescriptorFile" lf
sed -i 's/^RW 50 zero$/RW 50 FROBNICATED "x.bin"/' "$d/mixed.vmdk"
expect_refused "unknown extent type" 'unknown extent type "FROBNICATED"' "$VMDKIT" info "$d/mixed.vmdk"
grep -q 'mixed.vmdk' "$d/err" || die "unknown extent type: the message does not name the descriptor"

"$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse "$d/gone.vmdk" 5G
rm "$d/gone-s002.vmdk"
expect_refused "missing extent" "gone-s002\.vmdk" "$VMDKIT" read "$d/gone.vmdk" 0 1
grep -qi "no such file" "$d/err" || die "missing extent: the message does not say why"
rm "$d"/gone*.vmdk

"$VMDKIT" create -q "$d/old-name.vmdk" 1M
piece 0 5000 >"$d/chunk"
"$VMDKIT" write "$d/old-name.vmdk" 777 <"$d/chunk"
mv "$d/old-name.vmdk" "$d/new-name.vmdk"
grep -a -q '"old-name.vmdk"' "$d/new-name.vmdk" || die "renamed: test assumption (embedded name)"
"$VMDKIT" read "$d/new-name.vmdk" 777 5000 | cmp - "$d/chunk" || die "renamed: reads wrong"
"$VMDKIT" write "$d/new-name.vmdk" 100000 <"$d/chunk" || die "renamed: write failed"
"$VMDKIT" read "$d/new-name.vmdk" 100000 5000 | cmp - "$d/chunk" || die "renamed: reads wrong after a write"
expect_rc 0 "$VMDKIT" check "$d/new-name.vmdk"
echo "errors and renamed files: ok"

# ---- 3. extents of 4193792, 2097664 and 512 sectors ---------------------------

A=4193792 B=2097664 C=512
b1=$((A * 512)) b2=$(((A + B) * 512)) size=$(((A + B + C) * 512))
boundary_writes() {
  echo 0 1
  echo $((b1 - 1)) 2
  echo $((b1 - 4097)) 8195
  echo $((b1 - 131077)) 262159
  echo $((b1 + 511)) 3
  echo $((b2 - 1)) 2
  echo $((b2 - 70001)) 140003
  echo $((b2 - 3)) $((C * 512 + 3))
  echo $((size - 1)) 1
}

# sparse_extent NAME SECTORS: a vmdkit-made hosted sparse extent file
# (twoGbMaxExtentSparse -s001 for what fits one; else monolithicSparse, whose
# embedded descriptor an extent line ignores)
sparse_extent() {
  local name=$1 sectors=$2
  if ((sectors <= 4192256)); then
    "$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse "$d/tmp-$name" $((sectors * 512))
    mv "$d/tmp-${name%.vmdk}-s001.vmdk" "$d/$name"
    rm "$d/tmp-$name"
  else
    "$VMDKIT" create -q "$d/$name" $((sectors * 512))
  fi
}

layout() { # 1: SPARSE/FLAT/SPARSE, 2: FLAT/SPARSE/FLAT
  rm -f "$d"/bd-*
  {
    printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
    printf 'createType="twoGbMaxExtentSparse"\n\n'
    if [[ $1 == 1 ]]; then
      sparse_extent bd-a.vmdk $A
      truncate -s $(((1 + B) * 512)) "$d/bd-b.bin"
      sparse_extent bd-c.vmdk $C
      printf 'RW %s SPARSE "bd-a.vmdk"\nRW %s FLAT "bd-b.bin" 1\nRW %s SPARSE "bd-c.vmdk"\n' $A $B $C
    else
      truncate -s $((A * 512)) "$d/bd-a.bin"
      sparse_extent bd-b.vmdk $B
      truncate -s $(((3 + C) * 512)) "$d/bd-c.bin"
      printf 'RW %s FLAT "bd-a.bin" 0\nRW %s SPARSE "bd-b.vmdk"\nRW %s FLAT "bd-c.bin" 3\n' $A $B $C
    fi
    printf '\n#DDB\nddb.adapterType = "lsilogic"\n'
  } >"$d/bd-disk.vmdk"
}

compare_mirror() { # LABEL
  run "$VMDKIT" compare "$d/bd-disk.vmdk" "$d/bd-mirror.raw"
  [[ $rc -eq 0 ]] || { cat "$d/out" "$d/err" >&2; die "$1: vmdkit compare: exit $rc"; }
  if $has_qemu; then
    run qemu-img compare -f raw -F vmdk "$d/bd-mirror.raw" "$d/bd-disk.vmdk"
    [[ $rc -eq 0 ]] || { cat "$d/out" "$d/err" >&2; die "$1: qemu-img compare: exit $rc"; }
  fi
  local off len
  while read -r off len; do
    off=$((off - 33)) len=$((len + 66))
    ((off >= 0)) || off=0
    ((off + len <= size)) || len=$((size - off))
    "$VMDKIT" read "$d/bd-disk.vmdk" $off $len >"$d/got" || die "$1: read $off $len failed"
    cut_bytes "$d/bd-mirror.raw" $off $len | cmp - "$d/got" || die "$1: read $off $len differs"
  done < <(boundary_writes)
  expect_rc 0 "$VMDKIT" check "$d/bd-disk.vmdk"
}

for lay in 1 2; do
  layout $lay
  truncate -s $size "$d/bd-mirror.raw"
  "$VMDKIT" info --output=json "$d/bd-disk.vmdk" >"$d/out"
  [[ $(json_get "$d/out" virtual-size) -eq $size ]] || die "layout $lay: virtual size"
  src=0
  while read -r off len; do
    src=$(((src + 7919 * len + 13) % (1024 * 1024 - len)))
    piece $src $len >"$d/chunk"
    "$VMDKIT" write "$d/bd-disk.vmdk" $off <"$d/chunk" || die "layout $lay: write $off $len failed"
    put "$d/bd-mirror.raw" $off <"$d/chunk"
  done < <(boundary_writes)
  compare_mirror "layout $lay, vmdkit writes"
  if $has_qemu; then
    i=0
    while read -r off len; do
      i=$((i + 1))
      ((off + 1 + len <= size)) || len=$((size - off - 1))
      qemu-io -f vmdk -c "write -P $((i + 0x40)) $((off + 1)) $len" "$d/bd-disk.vmdk" >"$d/out" 2>&1 ||
        { cat "$d/out" >&2; die "layout $lay: qemu-io write failed"; }
      head -c $len /dev/zero | tr '\0' "\\$(printf '%03o' $((i + 0x40)))" | put "$d/bd-mirror.raw" $((off + 1))
    done < <(boundary_writes | head -n 8)
    compare_mirror "layout $lay, qemu-io writes"
  fi
  echo "boundaries 4193792/2097664/512, layout $lay: ok"
done
rm -f "$d"/bd-*
echo "all ok"
