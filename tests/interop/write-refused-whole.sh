#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# `vmdkit write` goes in 1 MiB chunks, but a write that cannot be done
# whole is refused before its first byte: input of more than 1 MiB that
# ends in a RDONLY extent (or a ZERO extent, or an already written grain of
# a stream image) exits 1 with one error line, and every file is
# byte-identical (and untouched: tree_state compares mtimes too) -- from a
# regular file on stdin and from a pipe.  Writes that fit the writable part
# land, and read back (vmdkit and qemu-img) as written.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3

cd "$tmpdir"
mkdir img
V=$VMDKIT
M=$((1024 * 1024))

python3 - <<'EOF'
import random
random.seed(4)
r = lambda n: bytes(random.getrandbits(8) for _ in range(n))
open("in3m.bin", "wb").write(r(3 << 20))
open("ro.orig", "wb").write(r(2 << 20))
EOF
truncate -s 2M img/rw-flat.bin
cp ro.orig img/ro-flat.bin
# 2 MiB RW, then 2 MiB RDONLY
cat >img/mixed.vmdk <<'EOF'
# Disk DescriptorFile
version=1
CID=12345678
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 4096 FLAT "rw-flat.bin" 0
RDONLY 4096 FLAT "ro-flat.bin" 0

# The Disk Data Base
ddb.adapterType = "ide"
EOF
# 2 MiB RW, then a 2 MiB ZERO extent
sed -e 's|^RDONLY 4096 FLAT "ro-flat.bin" 0|RW 4096 ZERO|' -e 's|rw-flat.bin|rwz-flat.bin|' img/mixed.vmdk >img/zero.vmdk
truncate -s 2M img/rwz-flat.bin
expect_rc 0 "$V" info img/mixed.vmdk
expect_rc 0 "$V" info img/zero.vmdk

# CMD... (a shell command line) must exit 1 with one error line matching
# REGEX and change no file under img/
refused() {
  local regex=$1 cmd=$2
  tree_state img >state.before
  run sh -c "$cmd"
  [[ $rc -eq 1 ]] || die "'$cmd' exited $rc, expected 1 (stderr: $(cat err))"
  one_error_line "$cmd"
  grep -Eq "$regex" err || die "'$cmd': error '$(cat err)' does not match /$regex/"
  tree_state img >state.after
  cmp -s state.before state.after || { diff state.before state.after >&2; die "'$cmd' changed files"; }
}
V_=$(printf %q "$V")

# ---- more than 1 MiB, ending in the RDONLY extent ---------------------------------
ro='cannot write at offset [0-9]+: extent 1 \(.*ro-flat.bin\) is RDONLY'
refused "$ro" "$V_ write img/mixed.vmdk 0 <in3m.bin"
refused "$ro" "cat in3m.bin | $V_ write img/mixed.vmdk 0"
# 1.5 MiB + 1 byte from 512 KiB: only its last byte is RDONLY
head -c $((3 * M / 2 + 1)) in3m.bin >in-edge.bin
refused "$ro" "$V_ write img/mixed.vmdk 512K <in-edge.bin"
refused "$ro" "cat in-edge.bin | $V_ write img/mixed.vmdk 512K"
# longer than the disk from a pipe, over the RDONLY part: the same
# refusal, still nothing written
cat in3m.bin in3m.bin >in6m.bin
refused "longer than the 4194304 bytes left before the end of the disk .*nothing was written" "cat in6m.bin | $V_ write img/mixed.vmdk 0"
refused "past the end of the disk" "$V_ write img/mixed.vmdk 0 <in6m.bin"
cmp -s img/ro-flat.bin ro.orig || die "ro-flat.bin changed"
cmp -s img/rw-flat.bin <(head -c 2M /dev/zero) || die "rw-flat.bin changed"

# ---- the writable part takes writes (regular file and pipe), bytes land ----------
head -c $((2 * M)) in3m.bin >in2m.bin
expect_rc 0 "$V" write img/mixed.vmdk 0 <in2m.bin
same img/rw-flat.bin in2m.bin
tail -c $((3 * M / 2)) in3m.bin >in15.bin
cat in15.bin | "$V" write img/mixed.vmdk 512K || die "a pipe write into the RW part failed"
head -c 512K in2m.bin >want.bin
cat in15.bin >>want.bin
same img/rw-flat.bin want.bin
cat want.bin ro.orig >disk.want
expect_rc 0 "$V" read img/mixed.vmdk 0 4M
same out disk.want
if command -v qemu-img >/dev/null; then
  # (QEMU 7.2 skips extents that are not RW: it sees the first 2 MiB)
  qemu-img convert -f vmdk -O raw img/mixed.vmdk qemu.raw
  same qemu.raw want.bin
fi

# ---- a ZERO extent after the RW one ---------------------------------------------------
refused "ZERO extent" "$V_ write img/zero.vmdk 0 <in3m.bin"
refused "ZERO extent" "cat in3m.bin | $V_ write img/zero.vmdk 0"
cmp -s img/rwz-flat.bin <(head -c 2M /dev/zero) || die "rwz-flat.bin changed"

# ---- a stream image: a written grain at 2 MiB -------------------------------------------
head -c 4M /dev/zero >s.raw
printf 'written once' | dd of=s.raw bs=1 seek=$((2 * M)) conv=notrunc status=none
"$V" convert -q -O vmdk -o subformat=streamOptimized s.raw img/s.vmdk
refused "" "$V_ write img/s.vmdk 0 <in3m.bin"
refused "" "cat in3m.bin | $V_ write img/s.vmdk 0"
expect_rc 0 "$V" compare img/s.vmdk s.raw

echo "write-refused-whole: all checks passed"
