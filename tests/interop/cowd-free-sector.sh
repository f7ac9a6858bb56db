#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# A COWD (vmfsSparse) extent whose freeSector lies past the end of its file
# (a file cut short, or a damaged header):
#  - reads still work (they do not depend on freeSector);
#  - `vmdkit write` and `vmdkit zero` are refused with one error line that
#    gives both numbers, and no file changes (not even the CID);
#  - `vmdkit check` reports it as a leak (exit 3: a power cut between the
#    file's growth and the header leaves it too); `check -r leaks` lowers
#    freeSector to the end of the space in use, after which check is clean
#    and writes land where they should (compared with a raw mirror).
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3

d=$tmpdir/img
mkdir "$d"
python3 "$SRC_DIR/tests/gen/make_cowd.py" --grain 8 "$d" x
size=$(stat -c %s "$d/x.raw")
delta=$d/x-delta.vmdk
sectors=$(($(stat -c %s "$delta") / 512))

u32() {
  python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); f.seek(int(sys.argv[2])); print(struct.unpack("<I", f.read(4))[0])' "$1" "$2"
}
put_u32() {
  python3 -c 'import struct,sys; f=open(sys.argv[1],"r+b"); f.seek(int(sys.argv[2])); f.write(struct.pack("<I", int(sys.argv[3])))' "$1" "$2" "$3"
}

past=$((sectors + 4096))
put_u32 "$delta" 28 "$past"

# Reads are fine.
"$VMDKIT" read "$d/x.vmdk" 0 "$size" | cmp - "$d/x.raw" ||
  die "reading with freeSector past the end gives the wrong bytes"

# Writes and zeroing are refused before anything changes.
before=$(tree_state "$d")
head -c 70000 /dev/urandom >"$tmpdir/data"
run "$VMDKIT" write "$d/x.vmdk" 4096 <"$tmpdir/data"
[[ $rc -ne 0 ]] || die "a write with freeSector past the end of the file was accepted"
one_error_line "refused write"
grep -q "freeSector $past lies past the end of the file ($sectors sectors)" "$tmpdir/err" ||
  die "the refusal does not give the numbers: $(cat "$tmpdir/err")"
run "$VMDKIT" zero "$d/x.vmdk" 0 65536
[[ $rc -ne 0 ]] || die "zeroing with freeSector past the end of the file was accepted"
one_error_line "refused zero"
[[ "$(tree_state "$d")" == "$before" ]] || die "a refused write changed a file"

# check reports it; check -r leaks repairs it.
run "$VMDKIT" check "$d/x.vmdk"
[[ $rc -eq 3 ]] || die "check exits $rc, not 3, for freeSector past the end"
grep -q "freeSector $past lies past the end of the file" "$tmpdir/out" "$tmpdir/err" ||
  die "check does not say what is wrong"
run "$VMDKIT" check -r leaks "$d/x.vmdk"
[[ $rc -eq 0 ]] || die "check -r leaks exits $rc: $(cat "$tmpdir/err")"
fs=$(u32 "$delta" 28)
((fs <= $(($(stat -c %s "$delta") / 512)))) || die "freeSector $fs is still past the end"
expect_rc 0 "$VMDKIT" check "$d/x.vmdk"
"$VMDKIT" read "$d/x.vmdk" 0 "$size" | cmp - "$d/x.raw" || die "the repair changed the data"

# Now writes work, and land (a mirror says where).
cp "$d/x.raw" "$tmpdir/mirror"
"$VMDKIT" write "$d/x.vmdk" 4096 <"$tmpdir/data" || die "write after the repair failed"
dd if="$tmpdir/data" of="$tmpdir/mirror" bs=64K oflag=seek_bytes seek=4096 conv=notrunc status=none
"$VMDKIT" read "$d/x.vmdk" 0 "$size" | cmp - "$tmpdir/mirror" || die "the write after the repair reads wrong"
expect_rc 0 "$VMDKIT" check "$d/x.vmdk"
echo "cowd freeSector past EOF: refused, reported, repaired"
