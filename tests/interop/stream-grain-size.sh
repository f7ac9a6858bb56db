#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A hostile streamOptimized file: the size field of a grain marker claims
# more compressed bytes than the file has left after the marker.  The
# stream is otherwise whole (VMware's layout, footer and end-of-stream
# marker intact, so open does not walk the markers), so the bound is the
# one checked when the grain is read: read and convert must fail with one
# error line naming the grain, its sector, the size, the grain size and
# the bytes left -- no crash, no bytes out, no output file left behind --
# while the grains before it still read as they were written.
#
# Sizes tried for the last grain (A = bytes from its marker to the end of
# the file): A - 11 (one byte too many), 100000 (more than the file, less
# than the read buffer) and 0xffffffff.  A - 12 (the data running exactly
# to the end of the file) passes the bound.
#
# Written for the mutant stream-grain-size-unchecked (tests/mutants/): the
# size is checked only against the buffer, not against the bytes left.
source "$(dirname "$0")/../common.sh"
need python3

V=$VMDKIT
cd "$tmpdir"

# 4 grains of random data, then a partial one: the last grain has data.
head -c 300000 /dev/urandom >src.raw
head -c 100000 /dev/zero >>src.raw
expect_rc 0 "$V" convert -f raw -O vmdk -o subformat=streamOptimized src.raw s.vmdk
expect_rc 0 "$V" convert -O raw s.vmdk s.raw
cmp -s -n 400000 src.raw s.raw || die "the unmodified stream does not read back"

# The last grain marker: sector, LBA, size (walking the markers).
read -r sector lba size < <(python3 - s.vmdk <<'EOF'
import struct, sys
d = open(sys.argv[1], "rb").read()
sec = struct.unpack_from("<Q", d, 64)[0]  # overHead
last = None
while sec * 512 < len(d):
    val, size, typ = struct.unpack_from("<QII", d, sec * 512)
    if size:
        last = (sec, val, size)
        sec += (12 + size + 511) // 512
    elif typ == 0:
        break
    else:
        sec += 1 + val
print(*last)
EOF
)
file_size=$(stat -c %s s.vmdk)
avail=$((file_size - sector * 512))
grain=$((lba / 128))
[[ $grain -eq 4 ]] || die "the last grain is $grain, expected 4"

for bad in $((avail - 11)) 100000 4294967295; do
  f=s-$bad.vmdk
  cp s.vmdk "$f"
  python3 - "$f" $((sector * 512 + 8)) "$bad" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    f.write(struct.pack("<I", int(sys.argv[3])))
EOF
  want="vmdkit: $f: grain $grain at sector $sector has a compressed size of $bad bytes (grain 65536 bytes, $avail bytes left in the file)"
  expect_rc 1 "$V" read "$f" $((grain * 65536)) 512
  one_error_line "read $f"
  [[ $(cat "$tmpdir/err") == "$want" ]] ||
    die "read $f: got '$(cat "$tmpdir/err")', want '$want'"
  [[ ! -s $tmpdir/out ]] || die "read $f: bytes on stdout"
  run "$V" convert -O raw "$f" "$f.raw"
  [[ $rc -eq 1 ]] || die "convert $f: exit $rc"
  one_error_line "convert $f"
  [[ $(cat "$tmpdir/err") == "$want" ]] ||
    die "convert $f: got '$(cat "$tmpdir/err")', want '$want'"
  [[ ! -e $f.raw ]] || die "convert $f: left $f.raw behind"
  # the grains before it are untouched
  expect_rc 0 "$V" read "$f" 0 262144
  cmp -s -n 262144 "$tmpdir/out" src.raw || die "$f: grains 0-3 read wrong"
done

# The data running exactly to the end of the file passes the bound (what
# it inflates to is then the codec's business: no check here).
f=s-exact.vmdk
cp s.vmdk "$f"
python3 - "$f" $((sector * 512 + 8)) $((avail - 12)) <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    f.write(struct.pack("<I", int(sys.argv[3])))
EOF
run "$V" read "$f" $((grain * 65536)) 512
if [[ $rc -ne 0 ]]; then
  one_error_line "read $f"
  grep -q "has a compressed size of" "$tmpdir/err" &&
    die "read $f: the bound refused data that ends at the end of the file: $(cat "$tmpdir/err")"
fi
echo "stream-grain-size: ok"
