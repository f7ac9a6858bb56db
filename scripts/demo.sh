#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit demo: the main job on a built-in sample disk.
#
# Makes a 64 MiB raw disk holding a real ext4 file system (built with
# `mkfs.ext4 -d`, no mounting, no root needed), converts it to a
# monolithicSparse VMDK with vmdkit and shows that the result is correct:
# vmdkit info/check/map/compare/read, a round trip back to raw, a file
# pulled out of the round-tripped file system, and the verdicts of the
# peers (qemu-img, vmdkinfo) when they are installed.
#
# Usage: scripts/demo.sh            (uses build/vmdkit)
#        VMDKIT=/path/to/vmdkit scripts/demo.sh
# Exits non-zero, naming the step, if anything fails.  Works in a temporary
# folder that is removed at the end.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VMDKIT=${VMDKIT:-$root/build/vmdkit}
export PATH="$PATH:/usr/sbin:/sbin" # mkfs.ext4, debugfs for non-root users
export LC_ALL=C

die() {
  echo "demo: $*" >&2
  exit 1
}

[[ -x "$VMDKIT" ]] || die "no vmdkit CLI at $VMDKIT (run 'make build' first)"
for tool in mkfs.ext4 debugfs dd cmp sha256sum; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool is missing (run scripts/install-deps.sh)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/vmdkit-demo.XXXXXX")
step="setup"
trap 'rm -rf "$work"' EXIT
trap 'echo "demo: FAILED in step: $step" >&2' ERR
cd "$work"

# section TITLE: print a header and remember the step for failure messages.
n=0
section() {
  n=$((n + 1))
  step="$n. $1"
  printf '\n==== %s ====\n' "$step"
}
# show CMD...: print the command as it would be typed (the CLI's path
# shortened to "vmdkit", arguments with spaces quoted).
show() {
  local a line="$"
  for a in "$@"; do
    [[ "$a" == "$VMDKIT" ]] && a=vmdkit
    [[ "$a" == *[[:space:]]* ]] && a="'$a'"
    line+=" $a"
  done
  printf '%s\n' "$line"
}
# run CMD...: show it, then run it.
run() {
  show "$@"
  "$@"
}
# run_to FILE CMD...: show it, then run it with its stdout into FILE.
run_to() {
  local out=$1
  shift
  printf '%s > %s\n' "$(show "$@")" "$out"
  "$@" >"$out"
}
# size_line NAME FILE: apparent size and space allocated on the host.
size_line() {
  local apparent blocks bsize
  read -r apparent blocks bsize < <(stat -c '%s %b %B' "$2")
  printf '  %-12s apparent %10s   on disk %10s\n' "$1" \
    "$(numfmt --to=iec-i --suffix=B "$apparent")" \
    "$(numfmt --to=iec-i --suffix=B $((blocks * bsize)))"
}
# expect_range FILE OFFSET LENGTH: the bytes vmdkit reads from disk.vmdk at
# OFFSET equal those of FILE.
expect_range() {
  run_to got.bin "$VMDKIT" read disk.vmdk "$2" "$3"
  dd if="$1" of=want.bin bs=64K iflag=skip_bytes,count_bytes \
    skip="$2" count="$3" status=none
  cmp got.bin want.bin
  echo "  $3 bytes at offset $2 match $1"
}

section "Make a sample disk: 64 MiB raw image with an ext4 file system"
mkdir -p src/docs
printf 'Hello from the vmdkit demo.\n' >src/hello.txt
seq 1 20000 >src/docs/numbers.txt
cp /etc/os-release src/docs/os-release.txt
cp /usr/bin/ls src/ls
head -c 3M /dev/urandom >src/random.bin
head -c 4M /dev/zero >src/zeros.bin
run truncate -s 64M disk.raw
run mkfs.ext4 -q -F -L vmdkit-demo -d src disk.raw
run debugfs -R 'ls -l /' disk.raw 2>/dev/null
size=$(stat -c %s disk.raw)

section "Convert raw -> VMDK (monolithicSparse)"
run "$VMDKIT" convert -f raw -O vmdk -p disk.raw disk.vmdk

section "Image information"
run "$VMDKIT" info disk.vmdk
run "$VMDKIT" info --output=json disk.vmdk

section "Check the metadata"
run "$VMDKIT" check disk.vmdk

section "Allocation map (first lines)"
run_to map.txt "$VMDKIT" map disk.vmdk
head -n 10 map.txt
echo "  ... $(wc -l <map.txt) lines in all"

section "Compare raw and VMDK"
run "$VMDKIT" compare disk.raw disk.vmdk

section "Read ranges back and compare bytes"
expect_range disk.raw 0 4096                 # boot block + superblock
expect_range disk.raw 1048699 3000001        # unaligned, crosses grains
expect_range disk.raw $((size - 1000)) 1000  # the tail of the disk
run_to whole.bin "$VMDKIT" read disk.vmdk 0 "$size"
want=$(sha256sum <disk.raw)
got=$(sha256sum <whole.bin)
[[ "$want" == "$got" ]]
echo "  whole disk: sha256 ${got%% *} on both sides"

section "Round trip VMDK -> raw, and a file out of its ext4"
run "$VMDKIT" convert -O raw disk.vmdk back.raw
run cmp disk.raw back.raw
echo "  back.raw is byte-identical to disk.raw"
run debugfs -R 'dump /ls ls.out' back.raw 2>/dev/null
run cmp ls.out /usr/bin/ls
echo "  /ls from the round-tripped file system is /usr/bin/ls"

section "Peers' verdicts"
if command -v qemu-img >/dev/null 2>&1; then
  run qemu-img check disk.vmdk
  run qemu-img compare -f raw -F vmdk disk.raw disk.vmdk
else
  echo "  qemu-img not installed: skipped"
fi
if command -v vmdkinfo >/dev/null 2>&1; then
  run_to vmdkinfo.txt vmdkinfo disk.vmdk
  grep -iE 'media size|disk type|number of extents' vmdkinfo.txt || true
  echo "  vmdkinfo (libvmdk) opened the image"
else
  echo "  vmdkinfo not installed: skipped"
fi

section "Sizes"
size_line disk.raw disk.raw
size_line disk.vmdk disk.vmdk

step="done"
printf '\ndemo: all steps passed\n'
