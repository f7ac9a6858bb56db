#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# An interrupted resize of a monolithicSparse image: the header already
# has the new capacity but the embedded descriptor still gives the old size
# (a grow stopped between its two writes; a shrink writes the descriptor
# first, so it leaves the same shape).  Such an image:
#  - opens, as the descriptor's size, and reads its data byte for byte;
#  - checks as leaks only (exit 3), saying what happened;
#  - is finished by running the resize again (check then exit 0), or
#    brought back by `check -r leaks` (the header takes the descriptor's
#    size; vmdkit check and qemu-img check exit 0, qemu-img reads the same
#    bytes);
# and a descriptor giving MORE than the header holds is still refused.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3
cd "$tmpdir"
M=$((1024 * 1024))

# set the embedded descriptor's extent size of FILE to SECTORS
set_desc_sectors() {
  python3 - "$1" "$2" <<'EOF'
import re, struct, sys
path, sectors = sys.argv[1], int(sys.argv[2])
b = bytearray(open(path, "rb").read())
off, size = struct.unpack_from("<QQ", b, 28)
region = bytes(b[off * 512:(off + size) * 512])
text = region.split(b"\0", 1)[0]
new = re.sub(rb"(RW )\d+( SPARSE)", rb"\g<1>%d\g<2>" % sectors, text, count=1)
assert new != text
b[off * 512:(off + size) * 512] = new.ljust(size * 512, b"\0")
open(path, "wb").write(bytes(b))
EOF
}

head -c $((3 * M + 1234)) /dev/urandom >data
"$VMDKIT" create -q img.vmdk 12M
"$VMDKIT" write img.vmdk 0 <data
head -c $((4 * M)) /dev/zero >expect.raw
dd if=data of=expect.raw conv=notrunc status=none
cp img.vmdk whole.vmdk

interrupted() {
  cp whole.vmdk img.vmdk
  set_desc_sectors img.vmdk 8192
}

# 1. It opens as the descriptor says and reads its data.
interrupted
"$VMDKIT" info --output=json img.vmdk >info.json
[[ $(json_get info.json virtual-size) -eq $((4 * M)) ]] ||
  die "the interrupted image is $(json_get info.json virtual-size) bytes, not the descriptor's $((4 * M))"
"$VMDKIT" read img.vmdk 0 $((4 * M)) | cmp - expect.raw || die "the interrupted image reads wrong"
run "$VMDKIT" check img.vmdk
[[ $rc -eq 3 ]] || die "check of an interrupted resize exits $rc, not 3 (leaks only)"
grep -q "header says 24576 sectors but the descriptor gives the extent 8192" out err ||
  die "check does not say what happened: $(cat out err)"

# 2. Running the resize again finishes it.
"$VMDKIT" resize img.vmdk 12M || die "resize after an interrupted one failed"
expect_rc 0 "$VMDKIT" check img.vmdk
head -c $((12 * M)) /dev/zero >expect12.raw
dd if=data of=expect12.raw conv=notrunc status=none
"$VMDKIT" read img.vmdk 0 $((12 * M)) | cmp - expect12.raw || die "the re-run resize reads wrong"

# 3. check -r leaks brings the header to the descriptor's size.
interrupted
run "$VMDKIT" check -r leaks img.vmdk
[[ $rc -eq 0 ]] || die "check -r leaks of an interrupted resize exits $rc: $(cat err)"
python3 -c 'import struct,sys; print(struct.unpack_from("<Q", open(sys.argv[1],"rb").read(512), 12)[0])' img.vmdk >cap
[[ $(cat cap) -eq 8192 ]] || die "after check -r the header says $(cat cap) sectors, not 8192"
expect_rc 0 "$VMDKIT" check img.vmdk
"$VMDKIT" read img.vmdk 0 $((4 * M)) | cmp - expect.raw || die "check -r changed the data"
if command -v qemu-img >/dev/null; then
  expect_rc 0 qemu-img check -f vmdk img.vmdk
  qemu-img compare -q -f vmdk -F raw img.vmdk expect.raw || die "qemu-img reads the repaired image differently"
fi

# 4. More than the header holds is refused, with both numbers.
cp whole.vmdk img.vmdk
set_desc_sectors img.vmdk 32768
run "$VMDKIT" read img.vmdk 0 512
[[ $rc -ne 0 ]] || die "a descriptor larger than the header was accepted"
one_error_line "larger descriptor"
grep -q "gives the extent 32768 sectors but its header says 24576" err || die "unclear refusal: $(cat err)"
echo "interrupted resize: opens at the descriptor's size, checks as a leak, resumes, repairs"
