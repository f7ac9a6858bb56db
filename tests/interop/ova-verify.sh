#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit ova verify: an OVA that ova create made, and one GNU tar packs in
# the same order, are whole (exit 0); a bad digest, a manifest line for a
# member that is not there, an OVF naming a disk the archive lacks, a
# member out of order, a missing manifest, a tar cut short and a damaged
# disk are each found (exit 2) with one "vmdkit: FILE: ..." line per
# problem that names the member and the numbers; a missing file exits 1.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need tar python3

head -c $((2 << 20)) /dev/urandom >"$tmpdir/a.raw"
truncate -s $((16 << 20)) "$tmpdir/a.raw"
head -c $((1 << 20)) /dev/urandom >"$tmpdir/b.raw"
"$VMDKIT" ova create "$tmpdir/app.ova" --disk "$tmpdir/a.raw" --disk "$tmpdir/b.raw" >/dev/null
expect_rc 0 "$VMDKIT" ova verify "$tmpdir/app.ova"
grep -q "^$tmpdir/app.ova: OK" "$tmpdir/out" || die "no OK line: $(cat "$tmpdir/out")"
expect_rc 0 "$VMDKIT" ova verify --output=json "$tmpdir/app.ova"
[[ $(json_get "$tmpdir/out" problems) == 0 ]] || die "json: $(cat "$tmpdir/out")"
mkdir "$tmpdir/x"
tar xf "$tmpdir/app.ova" -C "$tmpdir/x"

# Repacked by GNU tar in the same order: still whole.
tar -cf "$tmpdir/repack.ova" --format=ustar -C "$tmpdir/x" app.ovf app.mf app-disk1.vmdk app-disk2.vmdk
expect_rc 0 "$VMDKIT" ova verify "$tmpdir/repack.ova"

# flip FILE OFFSET: invert the byte at OFFSET (writing a fixed value would
# change nothing when the random data already held it: a flaky test).
flip() {
  python3 - "$1" "$2" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0xFF]))
EOF
}

# finds OVA PATTERN...: exit 2, every stderr line "vmdkit: OVA...", and a
# line matching each PATTERN.
finds() {
  local ova=$1 p
  shift
  expect_rc 2 "$VMDKIT" ova verify "$ova"
  if grep -v "^vmdkit: $ova" "$tmpdir/err" | grep -q .; then
    cat "$tmpdir/err" >&2
    die "$ova: a line that is not 'vmdkit: $ova...'"
  fi
  for p in "$@"; do
    grep -q -- "$p" "$tmpdir/err" || { cat "$tmpdir/err" >&2; die "$ova: no line matching '$p'"; }
  done
}

# A bad digest: one byte of disk 2 changed (inside its compressed grain:
# the stream may still inflate it, the digest cannot match).
cp "$tmpdir/app.ova" "$tmpdir/bad-digest.ova"
off=$(python3 - "$tmpdir/app.ova" <<'EOF'
import sys, tarfile
for m in tarfile.open(sys.argv[1]):
    if m.name == "app-disk2.vmdk":
        print(m.offset_data + 70000)
EOF
)
flip "$tmpdir/bad-digest.ova" "$off"
finds "$tmpdir/bad-digest.ova" \
  "app-disk2.vmdk: SHA256 digest [0-9a-f]\{64\} does not match the manifest's [0-9a-f]\{64\} ([0-9]* bytes at offset [0-9]*)"

# The manifest names a member that is not there, and the OVF names a disk
# the archive lacks.
tar -cf "$tmpdir/missing.ova" --format=ustar -C "$tmpdir/x" app.ovf app.mf app-disk1.vmdk
finds "$tmpdir/missing.ova" "app.mf line 3 names app-disk2.vmdk, which is not in the archive" \
  "app-disk2.vmdk"
[[ $(wc -l <"$tmpdir/err") -ge 2 ]] || die "missing.ova: expected the manifest and the OVF problems"

# Out of order: the manifest first.
tar -cf "$tmpdir/order.ova" --format=ustar -C "$tmpdir/x" app.mf app.ovf app-disk1.vmdk app-disk2.vmdk
finds "$tmpdir/order.ova" "the OVF app.ovf is member 2, not the first" \
  "the manifest app.mf is member 1, not the second"

# No manifest.
tar -cf "$tmpdir/nomf.ova" --format=ustar -C "$tmpdir/x" app.ovf app-disk1.vmdk app-disk2.vmdk
finds "$tmpdir/nomf.ova" "no manifest"

# A member not in the manifest.
echo extra >"$tmpdir/x/extra.txt"
tar -cf "$tmpdir/extra.ova" --format=ustar -C "$tmpdir/x" app.ovf app.mf app-disk1.vmdk app-disk2.vmdk extra.txt
finds "$tmpdir/extra.ova" "extra.txt (6 bytes) is not in the manifest app.mf"

# A tar cut short inside disk 2: the archive's own problem, with offsets.
cp "$tmpdir/app.ova" "$tmpdir/cut.ova"
truncate -s $((off + 100)) "$tmpdir/cut.ova"
finds "$tmpdir/cut.ova" "[0-9]"
[[ $(wc -l <"$tmpdir/err") -eq 1 ]] || die "cut.ova: expected one line"

# A damaged disk whose digest is right (the manifest rewritten to match):
# the disk check (vmdk_check) finds it.
cp -r "$tmpdir/x" "$tmpdir/y"
# One byte inverted inside a grain's deflate data (the first 2 MiB are data):
# the grain no longer inflates.
flip "$tmpdir/y/app-disk1.vmdk" 600000
(cd "$tmpdir/y" && sha256sum app.ovf app-disk1.vmdk app-disk2.vmdk |
  sed -E 's/^([0-9a-f]{64})  (.*)$/SHA256(\2)= \1/' >app.mf)
tar -cf "$tmpdir/damaged.ova" --format=ustar -C "$tmpdir/y" app.ovf app.mf app-disk1.vmdk app-disk2.vmdk
finds "$tmpdir/damaged.ova" "damaged.ova:app-disk1.vmdk: grain [0-9]* at sector [0-9]*: the compressed data is corrupt"

# Nothing to check: exit 1, one line.
expect_rc 1 "$VMDKIT" ova verify "$tmpdir/nothing.ova"
one_error_line "missing file"

echo "ova-verify: OK"
