#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# streamOptimized: VMware's layout (GD at the end, footer, EOS) and QEMU's
# (GD at the front) read identically; what vmdkit writes is a valid VMware
# stream (version 3, markers, footer, EOS, ascending grains) that qemu-img
# and vmdkinfo accept; appending keeps a stream valid; rewriting a grain is
# refused with the file unchanged; a stream that lost its footer is refused
# (convert --salvage reads it by scanning its markers) and check reports it
# (tests/interop/stream-truncated.sh cuts streams everywhere).
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img python3

M=$((1024 * 1024))

# --- VMware's stream (GD at the end), made by the project's generator ----------
python3 "$SRC_DIR/tests/gen/make_vmware_layouts.py" stream "$tmpdir" vw
expect_rc 0 "$VMDKIT" check "$tmpdir/vw.vmdk"
"$VMDKIT" convert -O raw "$tmpdir/vw.vmdk" "$tmpdir/vw-conv.raw"
same "$tmpdir/vw.raw" "$tmpdir/vw-conv.raw"
expect_rc 0 qemu-img compare -f raw -F vmdk "$tmpdir/vw.raw" "$tmpdir/vw.vmdk"

# QEMU's sample of a VMware stream (qemu-iotests 059), when the optional
# outside corpus is there (../shared/corpus: reading material, not needed).
v3=${CORPUS:-/nonexistent}/qemu-sample-images/iotest-version3.vmdk
if [[ -f $v3 ]]; then
  expect_rc 0 "$VMDKIT" check "$v3"
  "$VMDKIT" convert -O raw "$v3" "$tmpdir/v3.raw"
  expect_rc 0 qemu-img compare -f raw -F vmdk "$tmpdir/v3.raw" "$v3"
  rm -f "$tmpdir/v3.raw"
  for i in $(seq 0 7 99); do # qemu-iotests 059's pattern, every 7th
    off=$((i * 655360 + i * 512))
    want=$(printf '%02x' $((0x30 + i % 10)))
    got=$("$VMDKIT" read "$v3" $off 512 | od -An -tx1 -v | tr -s ' \n' '\n' | sort -u | grep -v '^$')
    [[ $got == "$want" ]] || die "pattern $i at $off reads '$got', expected $want"
  done
else
  echo "stream: the outside corpus sample is not here; its part is skipped"
fi

# Append to a copy: into a grain table that exists (tables 2 and 7) and
# into a region whose grain-directory entry is 0 (table 3; QEMU writes such
# grains at offset 0).
cp "$tmpdir/vw.vmdk" "$tmpdir/v.vmdk"
cp --sparse=always "$tmpdir/vw.raw" "$tmpdir/v.raw"
head -c 100000 /dev/urandom >"$tmpdir/pat"
for off in $((64 * M + 7)) $((100 * M)) $((250 * M)); do
  "$VMDKIT" write "$tmpdir/v.vmdk" $off <"$tmpdir/pat" || die "append at $off failed"
  dd if="$tmpdir/pat" of="$tmpdir/v.raw" oflag=seek_bytes seek=$off conv=notrunc status=none
done
expect_rc 0 qemu-img check "$tmpdir/v.vmdk"
expect_rc 0 qemu-img compare -f raw -F vmdk "$tmpdir/v.raw" "$tmpdir/v.vmdk"
expect_rc 0 "$VMDKIT" compare "$tmpdir/v.raw" "$tmpdir/v.vmdk"
expect_rc 0 "$VMDKIT" check "$tmpdir/v.vmdk"

# Rewriting a grain that is in the stream: refused, nothing changed.
before=$(sha "$tmpdir/v.vmdk")
run "$VMDKIT" write "$tmpdir/v.vmdk" $((100 * M + 4096)) <"$tmpdir/pat"
[[ $rc -ne 0 ]] || die "rewriting a stream grain was accepted"
one_error_line "rewrite"
grep -q "cannot be rewritten" "$tmpdir/err" || die "unexpected error: $(cat "$tmpdir/err")"
[[ $(sha "$tmpdir/v.vmdk") == "$before" ]] || die "a refused write changed the stream"

# --- streams vmdkit makes ---------------------------------------------------------
python3 - "$tmpdir/src.raw" <<'PY'
import os, sys, random
random.seed(7)
size = 48 << 20
with open(sys.argv[1], 'wb') as f:
    f.truncate(size)
    for i in range(300):
        off = random.randrange(0, size - 70000)
        f.seek(off)
        kind = i % 3
        data = os.urandom(5000) if kind == 0 else (b'vmdkit text %d\n' % i) * 300 if kind == 1 else bytes([i % 256]) * 70000
        f.write(data)
PY
"$VMDKIT" convert -O vmdk -o subformat=streamOptimized "$tmpdir/src.raw" "$tmpdir/s.vmdk"
expect_rc 0 qemu-img check "$tmpdir/s.vmdk"
expect_rc 0 qemu-img compare -f raw -F vmdk "$tmpdir/src.raw" "$tmpdir/s.vmdk"
expect_rc 0 "$VMDKIT" check "$tmpdir/s.vmdk"
qemu-img convert -O raw "$tmpdir/s.vmdk" "$tmpdir/back.raw"
same "$tmpdir/src.raw" "$tmpdir/back.raw"
if command -v vmdkinfo >/dev/null; then
  vmdkinfo "$tmpdir/s.vmdk" >"$tmpdir/vi" || die "vmdkinfo refused our stream"
  grep -q "Stream optimized" "$tmpdir/vi" || die "vmdkinfo: $(cat "$tmpdir/vi")"
  grep -q "(50331648 bytes)" "$tmpdir/vi" || die "vmdkinfo media size: $(cat "$tmpdir/vi")"
fi
# The layout VMware products demand, byte by byte.
python3 - "$tmpdir/s.vmdk" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
def die(m):
    print("FAIL: stream layout: " + m, file=sys.stderr); sys.exit(1)
magic, ver, flags, cap, grain, doff, dsize, gtes, rgd, gd, over = struct.unpack_from('<IIIQQQQIQQQ', b, 0)
if magic != 0x564d444b or ver != 3: die("magic/version %x %d" % (magic, ver))
if flags != 0x30001: die("flags 0x%x, expected 0x30001" % flags)
if gd != 0xffffffffffffffff: die("header gdOffset 0x%x, expected GD_AT_END" % gd)
if struct.unpack_from('<H', b, 77)[0] != 1: die("compressAlgorithm")
if dsize < 20: die("descriptor space %d sectors < 20" % dsize)
desc = b[doff * 512:(doff + dsize) * 512].split(b'\0')[0].decode()
for want in ('# Disk DescriptorFile', 'createType="streamOptimized"', 'ddb.toolsVersion',
             'ddb.adapterType = "lsilogic"', 'ddb.virtualHWVersion', 'ddb.toolsInstallType'):
    if want not in desc: die("descriptor lacks " + want)
if b[-512:] != bytes(512): die("no EOS marker at the end")
fm = b[-1536:-1024]
if struct.unpack_from('<QII', fm, 0) != (1, 0, 3): die("no footer marker before the footer")
f = b[-1024:-512]
if f[:4] != b'KDMV' or struct.unpack_from('<Q', f, 56)[0] in (0, 0xffffffffffffffff): die("bad footer")
# Walk the stream: grains in ascending LBA order, then GT/GD markers.
sec, last, grains = over, -1, 0
while True:
    lba, size, typ = struct.unpack_from('<QII', b, sec * 512)
    if size:
        if lba <= last: die("grain LBA %d after %d: not ascending" % (lba, last))
        if b[sec * 512 + 12] != 0x78: die("grain at sector %d is not zlib data" % sec)
        last, grains = lba, grains + 1
        sec += (12 + size + 511) // 512
    elif typ == 0:
        break
    else:
        sec += 1 + lba
if sec * 512 != len(b) - 512: die("EOS at sector %d, file has %d" % (sec, len(b) // 512))
if grains == 0: die("no grains")
PY
qemu-img convert -O vmdk -o subformat=streamOptimized "$tmpdir/src.raw" "$tmpdir/q.vmdk"
vs=$(stat -c %s "$tmpdir/s.vmdk"); qs=$(stat -c %s "$tmpdir/q.vmdk")
echo "stream sizes: vmdkit $vs bytes, qemu-img $qs bytes"
((vs <= qs)) || die "our stream ($vs bytes) is larger than qemu-img's ($qs bytes)"

# --- QEMU's layout: read, then append --------------------------------------------
expect_rc 0 "$VMDKIT" compare "$tmpdir/src.raw" "$tmpdir/q.vmdk"
cp --sparse=always "$tmpdir/src.raw" "$tmpdir/q.raw"
zero_at=$(python3 - "$tmpdir/src.raw" <<'PY'
import sys
b = open(sys.argv[1], 'rb').read()
g = 65536
for i in range(len(b) // g - 1, 0, -1):
    if not any(b[i * g:(i + 1) * g]):
        print(i * g); break
PY
)
head -c 65536 "$tmpdir/pat" >"$tmpdir/grain"
"$VMDKIT" write "$tmpdir/q.vmdk" "$zero_at" <"$tmpdir/grain"
dd if="$tmpdir/grain" of="$tmpdir/q.raw" oflag=seek_bytes seek="$zero_at" conv=notrunc status=none
expect_rc 0 qemu-img check "$tmpdir/q.vmdk"
expect_rc 0 qemu-img compare -f raw -F vmdk "$tmpdir/q.raw" "$tmpdir/q.vmdk"

# --- partial grains and a new, empty stream ------------------------------------------
"$VMDKIT" create -q -o subformat=streamOptimized "$tmpdir/p.vmdk" 1M
truncate -s 1M "$tmpdir/p.raw"
expect_rc 0 qemu-img check "$tmpdir/p.vmdk"
# Each write is its own open and close: the partial grains it leaves are
# filled with zeros and written at close, after which they are final.
for spec in "200 100" "131071 2" "300000 60000" "1048000 576"; do
  set -- $spec
  head -c "$2" /dev/urandom >"$tmpdir/chunk"
  "$VMDKIT" write "$tmpdir/p.vmdk" "$1" <"$tmpdir/chunk"
  dd if="$tmpdir/chunk" of="$tmpdir/p.raw" oflag=seek_bytes seek="$1" conv=notrunc status=none
done
expect_rc 1 "$VMDKIT" write "$tmpdir/p.vmdk" 250 <"$tmpdir/chunk" # written at close: final
expect_rc 0 qemu-img compare -f raw -F vmdk "$tmpdir/p.raw" "$tmpdir/p.vmdk"
expect_rc 0 qemu-img check "$tmpdir/p.vmdk"

# --- a stream that lost its footer and EOS -------------------------------------------
# Every grain is still there (only the footer marker, footer and EOS are
# cut), but nothing says so: refused; --salvage gets all of it back.
cp "$tmpdir/s.vmdk" "$tmpdir/cut.vmdk"
truncate -s -1536 "$tmpdir/cut.vmdk"
expect_rc 2 "$VMDKIT" compare "$tmpdir/src.raw" "$tmpdir/cut.vmdk"
one_error_line "compare of a stream without footer"
grep -q "stream is truncated after [0-9]* bytes: no footer or end-of-stream marker" "$tmpdir/err" ||
  die "compare did not name the missing footer: $(cat "$tmpdir/err")"
expect_rc 0 "$VMDKIT" convert --salvage -O raw "$tmpdir/cut.vmdk" "$tmpdir/cut.raw"
same "$tmpdir/src.raw" "$tmpdir/cut.raw"
run "$VMDKIT" check "$tmpdir/cut.vmdk"
[[ $rc -eq 2 ]] || die "check of a stream without footer exited $rc, expected 2"
grep -q "no footer or end-of-stream marker" "$tmpdir/out" "$tmpdir/err" || die "check did not name the missing footer"
# --- incompressible grains are stored, compressible ones compressed ---------------
# Grain 0: random bytes (stored: deflate level 0); grain 1: text; grain 2:
# random bytes over a range of 16 values (nearly even: level 1 would not
# apply, it is not even enough -- it must shrink); grain 3: random again.
python3 - "$tmpdir/mix.raw" <<'PY'
import os, random, sys
random.seed(5)
g = 65536
data = os.urandom(g)
data += b''.join(b'line %d of some text, repeated\n' % i for i in range(3000))[:g]
data += bytes(random.randrange(16) for _ in range(g))
data += os.urandom(g)
open(sys.argv[1], 'wb').write(data + bytes(g * 12))
PY
"$VMDKIT" convert -f raw -O vmdk -o subformat=streamOptimized "$tmpdir/mix.raw" "$tmpdir/mix.vmdk"
expect_rc 0 qemu-img compare -f raw -F vmdk "$tmpdir/mix.raw" "$tmpdir/mix.vmdk"
expect_rc 0 qemu-img check "$tmpdir/mix.vmdk"
qemu-img convert -f vmdk -O raw "$tmpdir/mix.vmdk" "$tmpdir/mix.back"
same "$tmpdir/mix.raw" "$tmpdir/mix.back"
python3 - "$tmpdir/mix.vmdk" <<'PY' || die "grain sizes in the stream are not as expected"
import struct, sys
b = open(sys.argv[1], 'rb').read()
overhead = struct.unpack_from('<Q', b, 64)[0]  # overHead, sectors
pos, sizes = overhead * 512, {}
while pos + 12 <= len(b):
    lba, size, kind = struct.unpack_from('<QII', b, pos)
    if size == 0:  # a metadata marker: LBA sectors of metadata follow it
        if kind == 0:
            break  # end of stream
        pos += 512 + lba * 512
        continue
    sizes[lba // 128] = size
    # a stored grain: zlib header, 2 stored blocks (5 bytes each), adler32
    pos += (12 + size + 511) // 512 * 512
print("grain sizes in the stream:", sizes)
ok = sizes[0] == 65536 + 16 and sizes[3] == 65536 + 16  # stored
ok = ok and sizes[1] < 8000 and sizes[2] < 40000        # compressed
sys.exit(0 if ok and sorted(sizes) == [0, 1, 2, 3] else 1)
PY
if command -v vmdkinfo >/dev/null; then
  vmdkinfo "$tmpdir/mix.vmdk" >/dev/null || die "vmdkinfo refused a stream with stored grains"
fi
echo "stream: all checks passed"
