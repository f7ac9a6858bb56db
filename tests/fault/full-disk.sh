#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# A real full disk (no shim): a 40 MiB tmpfs holds a chain -- a 16 MiB
# monolithicSparse base, every byte 0x5A, and a child -- and a filler file
# leaves a few MiB free.  `vmdkit write` puts 1 MiB pieces (at offsets that
# are not grain-aligned, so head and tail grains are copied from the base)
# into the child until the disk is full.  Then:
#   - the failing write exits non-zero with one stderr line, "vmdkit: ",
#     naming child.vmdk;
#   - vmdkit check and qemu-img check exit 0 or 3 (leaks only);
#   - every sector reads as before that write or as after it
#     (tests/fault/sectors.py); the base is unchanged;
#   - the same write again while the disk is still full fails the same way
#     and changes nothing that was there (a disk that stays full);
#   - with the filler removed the same write succeeds, and the child reads
#     exactly what was written;
#   - a convert that fills the disk fails, leaves no output, and the source
#     is byte-identical.
# Needs root (mount); skips (77) when the tmpfs cannot be mounted.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3 qemu-img mount umount
SECTORS=$SRC_DIR/tests/fault/sectors.py
V=$(realpath "$VMDKIT")
M=$((1024 * 1024))
mnt=$tmpdir/mnt
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=40m tmpfs "$mnt" 2>"$tmpdir/mount.err"; then
  echo "SKIP: cannot mount a tmpfs: $(cat "$tmpdir/mount.err")" >&2
  exit 77
fi
trap 'umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null; rm -rf "$tmpdir"' EXIT
wrong=0
bad() {
  echo "  WRONG: $*"
  wrong=$((wrong + 1))
}

cd "$mnt"
head -c $((16 * M)) /dev/zero | tr '\0' '\132' >"$tmpdir/base.raw"
# check_state LABEL BEFORE AFTER: (b) and (c) on child.vmdk
check_state() {
  local label=$1 before=$2 after=$3
  run "$V" check child.vmdk
  [[ $rc -eq 0 || $rc -eq 3 ]] || bad "slack ${slack:-}, $label: vmdkit check exit $rc: $(head -n1 "$tmpdir/err")"
  run qemu-img check -f vmdk child.vmdk
  [[ $rc -eq 0 || $rc -eq 3 ]] || bad "slack ${slack:-}, $label: qemu-img check exit $rc: $(head -n1 "$tmpdir/out")"
  rm -f "$tmpdir/got.raw"
  if ! "$V" convert -O raw child.vmdk "$tmpdir/got.raw" 2>"$tmpdir/conv.err"; then
    bad "slack ${slack:-}, $label: child.vmdk does not read: $(head -n1 "$tmpdir/conv.err")"
  elif ! python3 "$SECTORS" "$before" "$after" "$tmpdir/got.raw" >"$tmpdir/sec"; then
    bad "slack ${slack:-}, $label: child.vmdk: $(cat "$tmpdir/sec")"
  fi
  cmp -s base.vmdk "$tmpdir/base.vmdk.orig" || bad "slack ${slack:-}, $label: base.vmdk changed"
}

# check_error LABEL NAME: (a) for a failed command
check_error() {
  local n
  n=$(wc -l <"$tmpdir/err")
  if [[ $n -ne 1 ]] || ! grep -q '^vmdkit: ' "$tmpdir/err"; then
    bad "slack ${slack:-}, $1: stderr is not one 'vmdkit: ' line: $(head -c 300 "$tmpdir/err" | tr '\n' '|')"
  elif ! grep -qF "$2" "$tmpdir/err"; then
    bad "slack ${slack:-}, $1: the error does not name $2: $(cat "$tmpdir/err")"
  fi
}

# scenario SLACK_K: a fresh chain, free space 5 MiB + SLACK_K KiB, then
# 1 MiB writes until one fails (different slacks fail at different points
# of a write: grain data, copied head or tail, a new grain table).
scenario() {
  local slack=$1
  rm -f ./*.vmdk filler
  "$V" create -q base.vmdk 16M
  "$V" write base.vmdk 0 <"$tmpdir/base.raw"
  "$V" create -q -b base.vmdk child.vmdk
  cp base.vmdk "$tmpdir/base.vmdk.orig"
  cp "$tmpdir/base.raw" "$tmpdir/model.raw" # what the child reads now
  local free_k fill_k
  free_k=$(df -k --output=avail . | tail -n1 | tr -d ' ')
  fill_k=$((free_k - 5 * 1024 - slack))
  dd if=/dev/zero of=filler bs=1K count=$fill_k status=none
  failed_at=""
  for i in $(seq 0 14); do
    off=$((i * M + 1000))
    head -c $M /dev/urandom >"$tmpdir/piece"
    cp "$tmpdir/model.raw" "$tmpdir/next.raw"
    dd if="$tmpdir/piece" of="$tmpdir/next.raw" bs=64K seek=$off oflag=seek_bytes conv=notrunc status=none
    run "$V" write child.vmdk $off <"$tmpdir/piece"
    if [[ $rc -eq 0 ]]; then
      mv "$tmpdir/next.raw" "$tmpdir/model.raw"
      continue
    fi
    failed_at=$i
    echo "write $i (1 MiB at $off) failed: $(head -n1 "$tmpdir/err")"
    check_error "write $i" child.vmdk
    check_state "write $i" "$tmpdir/model.raw" "$tmpdir/next.raw"
    # The disk stays full: again, and again it must fail cleanly.
    run "$V" write child.vmdk $off <"$tmpdir/piece"
    if [[ $rc -eq 0 ]]; then
      echo "  (the second attempt on the full disk succeeded)"
    else
      check_error "write $i again" child.vmdk
      check_state "write $i again" "$tmpdir/model.raw" "$tmpdir/next.raw"
    fi
    # Space again: the write goes through and reads back exactly.
    rm -f filler
    run "$V" write child.vmdk $off <"$tmpdir/piece"
    if [[ $rc -ne 0 ]]; then
      bad "write $i with space again failed: $(head -n1 "$tmpdir/err")"
    else
      check_state "write $i with space again" "$tmpdir/next.raw" "$tmpdir/next.raw"
      mv "$tmpdir/next.raw" "$tmpdir/model.raw"
    fi
    break
  done
  [[ -n $failed_at ]] || die "slack $slack: the disk never filled up (the test is broken)"

}
for slack in 0 160 480 800; do
  echo "-- free space 5 MiB + $slack KiB"
  scenario $slack
done

# A convert that fills the disk: fails, no output left, source unchanged.
free_k=$(df -k --output=avail . | tail -n1 | tr -d ' ')
dd if=/dev/zero of=filler bs=1K count=$((free_k - 2 * 1024)) status=none
sum_before=$(sha256sum base.vmdk child.vmdk)
run "$V" convert -O vmdk child.vmdk out.vmdk
if [[ $rc -eq 0 ]]; then
  bad "convert onto the full disk succeeded (the test expects ENOSPC)"
else
  echo "convert failed: $(head -n1 "$tmpdir/err")"
  check_error convert out.vmdk
  [[ ! -e out.vmdk ]] || bad "convert: the failed convert left out.vmdk behind"
  [[ $(sha256sum base.vmdk child.vmdk) == "$sum_before" ]] || bad "convert: the source changed"
fi

echo "full disk: $wrong wrong"
[[ $wrong -eq 0 ]]
