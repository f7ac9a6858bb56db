#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Allocating grains must not cost a file-size change or a sync per grain:
# converting a raw image with >= 3000 non-zero grains into a VMDK makes at
# most 2 ftruncate/fallocate calls and a handful of syncs (counted with
# strace).  Partial-grain writes produce the right bytes around them.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3

M=$((1024 * 1024))
raw=$tmpdir/src.raw
# 200 MiB, 4 KiB of random data at the start of every 64 KiB: 3200 grains
python3 - "$raw" <<'EOF'
import os, sys
size, step, chunk = 200 << 20, 64 << 10, 4096
with open(sys.argv[1], 'wb') as f:
    f.truncate(size)
    for off in range(0, size, step):
        f.seek(off + (off // step) % 61 * 512)  # varying place in the grain
        f.write(os.urandom(chunk))
EOF
[[ $(stat -c %s "$raw") -eq $((200 * M)) ]] || die "raw source has the wrong size (test bug)"

if command -v strace >/dev/null; then
  count() { # LOG REGEX: completed calls (strace -f splits interrupted ones)
    grep -E "$2" "$1" | grep -vc 'resumed>' || true
  }
  log=$tmpdir/strace.log
  # (LeakSanitizer cannot run under ptrace: ASan builds need detect_leaks=0)
  calls=ftruncate,fallocate,fsync,fdatasync,sync_file_range
  trace=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    strace -f -e "trace=$calls" -o "$log")
  "${trace[@]}" "$VMDKIT" convert -O vmdk "$raw" "$tmpdir/out.vmdk" || die "convert under strace failed"
  t=$(count "$log" '(ftruncate|fallocate)\(')
  s=$(count "$log" '(fsync|fdatasync|sync_file_range)\(')
  echo "convert of 3200 grains: $t ftruncate/fallocate, $s syncs"
  ((t <= 2)) || { head -20 "$log" >&2; die "convert made $t ftruncate/fallocate calls (at most 2)"; }
  ((s <= 6)) || { head -20 "$log" >&2; die "convert made $s sync calls (a handful at most)"; }

  # vmdkit write of 10 MiB (160 grains) into a fresh image: the same
  "$VMDKIT" create -q "$tmpdir/w.vmdk" 1G
  head -c $((10 * M)) "$raw" >"$tmpdir/chunk"
  "${trace[@]}" "$VMDKIT" write "$tmpdir/w.vmdk" $((3 * M + 512)) <"$tmpdir/chunk" || die "write under strace failed"
  t=$(count "$log" '(ftruncate|fallocate)\(')
  s=$(count "$log" '(fsync|fdatasync|sync_file_range)\(')
  echo "write of 160 grains: $t ftruncate/fallocate, $s syncs"
  ((t <= 2)) || { head -20 "$log" >&2; die "write made $t ftruncate/fallocate calls (at most 2)"; }
  ((s <= 6)) || { head -20 "$log" >&2; die "write made $s sync calls (a handful at most)"; }
  "$VMDKIT" read "$tmpdir/w.vmdk" $((3 * M + 512)) $((10 * M)) | cmp - "$tmpdir/chunk" ||
    die "the 10 MiB written do not read back"
else
  echo "strace not installed: syscall counts not checked" >&2
  "$VMDKIT" convert -O vmdk "$raw" "$tmpdir/out.vmdk" || die "convert failed"
fi
# the converted image holds the right bytes, in 3200 grains
expect_rc 0 "$VMDKIT" compare "$raw" "$tmpdir/out.vmdk"
expect_rc 0 "$VMDKIT" check "$tmpdir/out.vmdk"
"$VMDKIT" check --output=json "$tmpdir/out.vmdk" >"$tmpdir/check.json"
[[ $(json_get "$tmpdir/check.json" allocated-clusters) -eq 3200 ]] ||
  die "converted image has $(json_get "$tmpdir/check.json" allocated-clusters) grains, expected 3200"
if command -v qemu-img >/dev/null; then
  expect_rc 0 qemu-img compare -f raw -F vmdk "$raw" "$tmpdir/out.vmdk"
  expect_rc 0 qemu-img check -f vmdk "$tmpdir/out.vmdk"
fi

# Partial-grain write: 100 bytes at 65536*5+7 of a fresh image; the whole
# grain reads back as zeros around them.
"$VMDKIT" create -q "$tmpdir/p.vmdk" 16M
truncate -s 16M "$tmpdir/p.raw"
off=$((65536 * 5 + 7))
head -c 100 /dev/urandom >"$tmpdir/hundred"
"$VMDKIT" write "$tmpdir/p.vmdk" $off <"$tmpdir/hundred" || die "partial write failed"
dd if="$tmpdir/hundred" of="$tmpdir/p.raw" bs=100 oflag=seek_bytes seek=$off conv=notrunc status=none
"$VMDKIT" read "$tmpdir/p.vmdk" $((65536 * 5)) 65536 >"$tmpdir/grain"
dd if="$tmpdir/p.raw" of="$tmpdir/grain.ref" bs=65536 skip=5 count=1 status=none
cmp "$tmpdir/grain.ref" "$tmpdir/grain" || die "the partially written grain reads wrong"
# a second partial write into the same grain keeps the first
head -c 3 /dev/urandom >"$tmpdir/three"
"$VMDKIT" write "$tmpdir/p.vmdk" $((65536 * 6 - 2)) <"$tmpdir/three" || die "second partial write failed"
dd if="$tmpdir/three" of="$tmpdir/p.raw" bs=3 oflag=seek_bytes seek=$((65536 * 6 - 2)) conv=notrunc status=none
"$VMDKIT" read "$tmpdir/p.vmdk" 0 16M | cmp - "$tmpdir/p.raw" || die "the image differs from its mirror"
expect_rc 0 "$VMDKIT" compare "$tmpdir/p.raw" "$tmpdir/p.vmdk"
if command -v qemu-img >/dev/null; then
  run qemu-img compare -f raw -F vmdk "$tmpdir/p.raw" "$tmpdir/p.vmdk"
  [[ $rc -eq 0 ]] && grep -q "identical" "$tmpdir/out" || die "qemu-img compare: exit $rc"
fi
echo "all ok"
