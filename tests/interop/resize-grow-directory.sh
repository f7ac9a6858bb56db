#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit resize of a sparse image far past what its grain directory holds:
# 1 GiB -> 20 GiB (32 -> 640 grain-directory entries: the directory no
# longer fits in the sectors it had, so it must move; written in place it
# would run over the grain tables behind it).  For monolithicSparse and
# twoGbMaxExtentSparse: data written before the resize (in the first and
# last grain tables of the old directory) stays; writes at 15 GiB, near and
# at the new end land; then vmdkit check and qemu-img check pass (exit 0),
# vmdkinfo opens it with the new media size, and every written range reads
# back byte for byte through vmdkit (random data) and qemu-io (read -P),
# and qemu-img compare against a sparse raw mirror of the whole 20 GiB
# passes.  Then the grown image grows again, its directory moving each
# time: 20 -> 21 GiB (data written after the last move, so the old
# directory is not at the end of the file), 21 -> 22 -> 40 GiB (twice in a
# row, nothing written in between).  The directories moved away from lie
# in the data area (past overHead): resize releases them once the new one
# and the header are synced, so vmdkit check and qemu-img check exit 0
# after every growth -- no leaked sectors.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

cd "$tmpdir"
M=$((1024 * 1024))
G=$((1024 * M))

# put IMG MIRROR OFF LEN BYTE: write LEN bytes of BYTE (hex 0xNN) at OFF
# with vmdkit, and into the raw mirror
put() {
  python3 -c "import sys; sys.stdout.buffer.write(bytes([$5]) * $4)" >chunk
  "$VMDKIT" write "$1" "$3" <chunk || die "vmdkit write $1 $3 $4 failed"
  dd if=chunk of="$2" bs=64K oflag=seek_bytes seek="$3" conv=notrunc status=none
  echo "$3 $4 $5" >>"$1.writes"
}
# putr IMG MIRROR OFF LEN SEED: random bytes
putr() {
  python3 -c "import random, sys; random.seed($5); sys.stdout.buffer.write(bytes(random.getrandbits(8) for _ in range($4)))" >chunk
  "$VMDKIT" write "$1" "$3" <chunk || die "vmdkit write $1 $3 $4 failed"
  dd if=chunk of="$2" bs=64K oflag=seek_bytes seek="$3" conv=notrunc status=none
  echo "$3 $4 -" >>"$1.writes"
}
# every range written reads back as in the mirror (vmdkit read), and the
# constant ones also through qemu-io read -P; the bytes just around each
# range read as in the mirror too
verify_ranges() { # IMG MIRROR
  local off len byte lo hi
  while read -r off len byte; do
    lo=$((off >= 4096 ? off - 4096 : 0))
    hi=$((off + len + 4096))
    ((hi <= $(stat -c %s "$2"))) || hi=$(stat -c %s "$2")
    expect_rc 0 "$VMDKIT" read "$1" $lo $((hi - lo))
    dd if="$2" bs=64K iflag=skip_bytes,count_bytes skip=$lo count=$((hi - lo)) status=none >want
    cmp -s out want || die "$1: bytes $lo..$hi (a write of $len at $off) do not read back through vmdkit"
    if [[ $byte != - ]]; then
      run qemu-io -f vmdk -r -c "read -P $byte $off $len" "$1"
      [[ $rc -eq 0 ]] && ! grep -qi 'pattern verification failed\|error' out ||
        { cat out err >&2; die "$1: qemu-io read -P $byte $off $len"; }
    fi
  done <"$1.writes"
}
checks() { # IMG MIRROR SIZE
  local img=$1 mirror=$2 size=$3
  run "$VMDKIT" check "$img"
  [[ $rc -eq 0 ]] || { cat out err >&2; die "$img: vmdkit check exit $rc"; }
  run qemu-img check "$img"
  [[ $rc -eq 0 ]] && grep -q "No errors" out || { cat out err >&2; die "$img: qemu-img check exit $rc"; }
  qemu-img info --output=json "$img" >info.json
  [[ $(json_get info.json virtual-size) -eq $size ]] || die "$img: qemu-img virtual-size $(json_get info.json virtual-size), expected $size"
  "$VMDKIT" info --output=json "$img" >info.json
  [[ $(json_get info.json virtual-size) -eq $size ]] || die "$img: vmdkit virtual-size $(json_get info.json virtual-size), expected $size"
  if command -v vmdkinfo >/dev/null; then
    run vmdkinfo "$img"
    [[ $rc -eq 0 ]] || { cat out err >&2; die "$img: vmdkinfo exit $rc"; }
    grep -Eq "Media size:.*\($size bytes\)" out || { cat out >&2; die "$img: vmdkinfo media size"; }
  fi
  verify_ranges "$img" "$mirror"
  run qemu-img compare -f vmdk -F raw "$img" "$mirror"
  [[ $rc -eq 0 ]] || { cat out err >&2; die "$img does not read as its mirror (qemu-img compare: exit $rc)"; }
  expect_rc 0 "$VMDKIT" compare -f vmdk -F raw "$img" "$mirror"
}

for sub in monolithicSparse twoGbMaxExtentSparse; do
  rm -f d.vmdk d-*.vmdk d.vmdk.writes d.raw
  "$VMDKIT" create -q -o subformat=$sub d.vmdk 1G
  truncate -s 1G d.raw
  # data in the first and last grain tables of the old directory, and one
  # in between (a table that exists in the file before the resize)
  putr d.vmdk d.raw 0 $((64 * 1024 + 17)) 1
  put d.vmdk d.raw $((512 * M + 100)) 3000 0x41
  putr d.vmdk d.raw $((G - 70000)) 70000 2
  checks d.vmdk d.raw $G

  expect_rc 0 "$VMDKIT" resize d.vmdk 20G
  [[ $(cat out) == "Image resized." ]] || die "$sub: resize said: $(cat out)"
  truncate -s 20G d.raw
  put d.vmdk d.raw $((15 * G)) 65536 0x51          # a whole grain at 15 GiB
  put d.vmdk d.raw $((15 * G + 3 * M + 5)) 1000 0x52 # a partial one
  putr d.vmdk d.raw $((20 * G - 200000)) 199999 3  # near the new end
  put d.vmdk d.raw $((20 * G - 1)) 1 0x53          # the last byte
  put d.vmdk d.raw $((G + 512)) 512 0x54           # just past the old end
  checks d.vmdk d.raw $((20 * G))

  # once more: the moved directory grows again (it lies in the data area
  # now, with grains after it); its old sectors are released
  expect_rc 0 "$VMDKIT" resize d.vmdk +1G
  truncate -s 21G d.raw
  checks d.vmdk d.raw $((21 * G))
  put d.vmdk d.raw $((21 * G - 4096)) 4096 0x55
  put d.vmdk d.raw $((16 * G + 7)) 9 0x56
  checks d.vmdk d.raw $((21 * G))

  # twice in a row, nothing written in between (the directory moved away
  # from is the last thing in the file), then data at the new end
  expect_rc 0 "$VMDKIT" resize d.vmdk 22G
  truncate -s 22G d.raw
  checks d.vmdk d.raw $((22 * G))
  expect_rc 0 "$VMDKIT" resize d.vmdk 40G
  truncate -s 40G d.raw
  putr d.vmdk d.raw $((40 * G - 100000)) 100000 4
  put d.vmdk d.raw $((21 * G + 512)) 512 0x57
  checks d.vmdk d.raw $((40 * G))
  echo "$sub: 1 -> 20 -> 21 -> 22 -> 40 GiB: checks pass after each, every write reads back"
done
echo "resize-grow-directory: all checks passed"
