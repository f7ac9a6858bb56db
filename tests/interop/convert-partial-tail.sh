#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# convert of a disk whose size is not a multiple of the cluster (64 KiB
# grains, or convert's 64 KiB zero-detection block for raw targets), with
# data in the last, partial cluster: every byte of it must arrive, in
# every direction, byte for byte what qemu-img produces.
#
#  1. a raw file of 3 MiB + 12800 bytes of random data (several 2 MiB
#     chunks, so the read-ahead ring's buffers are reused): to sparse,
#     streamOptimized and flat VMDK and to raw; each result read back by
#     qemu-img and by vmdkit equals the source; qemu-img's VMDK converted
#     by vmdkit too
#  2. a raw file of 1 MiB + 100 bytes (not even a whole sector: both tools
#     round the disk up to 1 MiB + 512 and read zeros past the end)
#  3. a sparse VMDK written by qemu-io with data only in its last partial
#     grain (the source's only run is that grain): to raw and VMDK
#
# Written for the mutant convert-last-partial (tests/mutants/): the last
# partial cluster is not read from the source (the buffer's old contents
# are written instead).
source "$(dirname "$0")/../common.sh"
need qemu-img qemu-io

V=$VMDKIT
cd "$tmpdir"

# SRC_RAW NAME: SRC_RAW (what the disk reads, a whole number of sectors)
# converted every way; every result compared with SRC_RAW and qemu-img.
check_all() {
  local src=$1 n=$2 fmt=${3:-raw}
  local want=$n.want.raw
  qemu-img convert -f "$fmt" -O raw "$src" "$want"
  # what qemu-img reads is what the source holds
  [[ $fmt != raw ]] || cmp -s -n "$(stat -c %s "$src")" "$src" "$want" ||
    die "$n: qemu-img's raw copy differs from the source"

  expect_rc 0 "$V" convert -f "$fmt" -O raw "$src" "$n.out.raw"
  same "$n.out.raw" "$want"
  local sub
  for sub in monolithicSparse streamOptimized monolithicFlat; do
    local out=$n.$sub.vmdk
    expect_rc 0 "$V" convert -f "$fmt" -O vmdk -o subformat=$sub "$src" "$out"
    qemu-img convert -f vmdk -O raw "$out" "$out.qemu.raw"
    same "$out.qemu.raw" "$want"
    expect_rc 0 "$V" convert -O raw "$out" "$out.vmdkit.raw"
    same "$out.vmdkit.raw" "$want"
    expect_rc 0 qemu-img compare -f "$fmt" -F vmdk "$src" "$out"
    expect_rc 0 "$V" compare "$src" "$out"
  done
  # qemu-img's VMDK, converted by vmdkit (the source is a VMDK now)
  qemu-img convert -f "$fmt" -O vmdk "$src" "$n.qemu.vmdk"
  expect_rc 0 "$V" convert -O raw "$n.qemu.vmdk" "$n.from-qemu.raw"
  same "$n.from-qemu.raw" "$want"
  expect_rc 0 "$V" convert -O vmdk "$n.qemu.vmdk" "$n.from-qemu.vmdk"
  qemu-img convert -f vmdk -O raw "$n.from-qemu.vmdk" "$n.from-qemu.check.raw"
  same "$n.from-qemu.check.raw" "$want"
}

# 1. several chunks and a partial last grain, random data everywhere
head -c $((3 * 1048576 + 12800)) /dev/urandom >a.raw
check_all a.raw a
# the last partial grain really holds data (not a test of zeros)
tail -c 12800 a.raw | cmp -s - <(head -c 12800 /dev/zero) && die "a.raw ends in zeros"

# 2. not a whole sector
head -c $((1048576 + 100)) /dev/urandom >b.raw
qemu-img convert -f raw -O raw b.raw b.qemu.raw
expect_rc 0 "$V" convert -f raw -O raw b.raw b.vmdkit.raw
same b.vmdkit.raw b.qemu.raw
[[ $(stat -c %s b.qemu.raw) -eq $((1048576 + 512)) ]] || die "qemu-img: b is $(stat -c %s b.qemu.raw) bytes"
check_all b.qemu.raw b

# 3. a sparse source whose only data is its last partial grain
qemu-img create -q -f vmdk c.vmdk $((2 * 1048576 + 4096))
qemu-io -f vmdk -c "write -P 0xa5 $((2 * 1048576)) 4096" c.vmdk >/dev/null
qemu-io -f vmdk -c "write -P 0x3c $((2 * 1048576 + 4096 - 512)) 512" c.vmdk >/dev/null
check_all c.vmdk c vmdk
expect_rc 0 "$V" read c.out.raw $((2 * 1048576)) 4096
cmp -s "$tmpdir/out" <(printf '\xa5%.0s' $(seq 3584); printf '\x3c%.0s' $(seq 512)) ||
  die "c: the last grain's bytes are not what qemu-io wrote"

echo "convert-partial-tail: ok"
