#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Layouts VMware writes and qemu-img cannot make, built from the spec by
# tests/gen/make_vmware_layouts.py: a hosted sparse image whose grain tables
# exist only where there is data (GD entries 0 elsewhere), and a VMware
# stream with a vSphere type-4 marker, with and without its footer.
# vmdkit reads them identically to the generator's raw (the stream without
# footer is refused, and read with convert --salvage); writes into a region
# without a grain table allocate the table at the end of the file (QEMU
# 7.2 writes such data at offset 0, over the header).
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3 qemu-img
gen=$SRC_DIR/tests/gen/make_vmware_layouts.py
M=$((1024 * 1024))

for kind in sparse-lazy stream stream-nofooter; do
  python3 "$gen" $kind "$tmpdir" $kind
  if [[ $kind == stream-nofooter ]]; then # truncated (qemu cannot read it either)
    expect_rc 1 "$VMDKIT" read "$tmpdir/$kind.vmdk" 0 256M
    one_error_line "read of a stream without footer"
    grep -q "stream is truncated after [0-9]* bytes: no grain directory, footer or end-of-stream marker; 6 grains recovered" "$tmpdir/err" ||
      die "$kind: read did not say what is missing: $(cat "$tmpdir/err")"
    expect_rc 0 "$VMDKIT" convert --salvage -O raw "$tmpdir/$kind.vmdk" "$tmpdir/$kind.out"
    same "$tmpdir/$kind.raw" "$tmpdir/$kind.out"
    continue
  fi
  "$VMDKIT" read "$tmpdir/$kind.vmdk" 0 256M | cmp - "$tmpdir/$kind.raw" ||
    die "$kind: vmdkit reads other bytes than the generator wrote"
  "$VMDKIT" convert -O raw "$tmpdir/$kind.vmdk" "$tmpdir/$kind.out"
  same "$tmpdir/$kind.raw" "$tmpdir/$kind.out"
  expect_rc 0 qemu-img compare -f raw -F vmdk "$tmpdir/$kind.raw" "$tmpdir/$kind.vmdk"
  expect_rc 0 "$VMDKIT" check "$tmpdir/$kind.vmdk"
done

# Writes into regions whose grain table does not exist yet, and next to
# grains that do; the header must survive, qemu-img must agree.
img=$tmpdir/sparse-lazy.vmdk
mirror=$tmpdir/sparse-lazy.raw
head -c 512 "$img" >"$tmpdir/header.before"
i=0
for off in $((32 * M + 5)) $((40 * M - 3)) $((64 * M - 70000)) $((96 * 1024)) $((3 * 32 * M + 65536 * 9 + 100)); do
  head -c $((1000 + i * 40000)) /dev/urandom >"$tmpdir/chunk"
  "$VMDKIT" write "$img" $off <"$tmpdir/chunk"
  dd if="$tmpdir/chunk" of="$mirror" oflag=seek_bytes seek=$off conv=notrunc status=none
  i=$((i + 1))
done
cmp -s <(head -c 72 "$img") <(head -c 72 "$tmpdir/header.before") ||
  die "the header changed (beyond the uncleanShutdown byte and after)"
expect_rc 0 qemu-img check "$img"
expect_rc 0 qemu-img compare -f raw -F vmdk "$mirror" "$img"
expect_rc 0 "$VMDKIT" check "$img"
"$VMDKIT" read "$img" 0 256M | cmp - "$mirror" || die "sparse-lazy after writes differs"
# The new tables were added: GD entries 1 and 3 are no longer 0.
python3 - "$img" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
gd = struct.unpack_from('<Q', b, 56)[0]
rgd = struct.unpack_from('<Q', b, 48)[0]
gdv = struct.unpack_from("<8I", b, gd * 512)
rgdv = struct.unpack_from("<8I", b, rgd * 512)
if not (gdv[1] and gdv[3] and rgdv[1] and rgdv[3]):
    print("FAIL: GD %r RGD %r: tables 1 and 3 were not allocated" % (gdv, rgdv), file=sys.stderr)
    sys.exit(1)
if b[72] != 0:
    print("FAIL: uncleanShutdown left set after a clean close", file=sys.stderr)
    sys.exit(1)
PY

# The stream without footer: check says so (exit 2).
run "$VMDKIT" check "$tmpdir/stream-nofooter.vmdk"
[[ $rc -eq 2 ]] || die "check of a stream without footer exited $rc"
echo "vmware-layouts: all checks passed"
