#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Writes on network and user-space file systems (lib/io.c): on a FUSE mount
# (bindfs, standing in for NFS/SMB/sshfs) a large write goes whole, as
# several concurrent pwrites of disjoint parts from more than one thread;
# on a local file system no pwrite is larger than 64 KiB.  Either way the
# output holds the same bytes: convert to raw, monolithicSparse,
# twoGbMaxExtentSparse and streamOptimized on the mount is read back by
# qemu-img compare (and checked by qemu-img check and vmdkinfo), and a
# parallel write that runs out of space fails with one error line and
# leaves no output.
# Skips (77) without bindfs, strace or /dev/fuse, or where FUSE mounts are
# not allowed.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need bindfs strace qemu-img python3 mountpoint vmdkinfo
[[ -c /dev/fuse ]] || { echo "SKIP: /dev/fuse is missing" >&2; exit 77; }
# (LeakSanitizer cannot run under ptrace: ASan builds need detect_leaks=0)
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
cd "$tmpdir"
M=$((1024 * 1024))

mounts=()
unmount_all() {
  local m
  for m in "${mounts[@]}"; do
    fusermount3 -u "$m" 2>/dev/null || fusermount -u "$m" 2>/dev/null ||
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$tmpdir"
}
trap unmount_all EXIT

mkdir back mnt
if ! bindfs "$tmpdir/back" "$tmpdir/mnt" 2>"$tmpdir/err" ||
  ! mountpoint -q "$tmpdir/mnt"; then
  echo "SKIP: bindfs cannot mount here: $(head -c 200 "$tmpdir/err")" >&2
  exit 77
fi
mounts+=("$tmpdir/mnt")
[[ $(stat -f -c %t mnt) == 65735546 ]] || die "mnt is not a FUSE mount"

# 24 MiB: random, text, zeros and a hole, in runs that are not grain-sized.
python3 - in.raw <<'EOF'
import random, sys
r = random.Random(7)
M = 1 << 20
with open(sys.argv[1], "wb") as f:
    f.write(r.randbytes(5 * M + 12345))
    f.write(b"".join(b"line %d of some text\n" % i for i in range(200000))
            [:6 * M])
    f.write(bytes(3 * M))
    f.seek(16 * M + 777)
    f.write(r.randbytes(7 * M))
    f.truncate(24 * M)
EOF

# pwrites LOG STEM: "COUNT MAXLEN THREADS" of the pwrite64 calls on the
# files whose paths start with STEM (an image and its extents) in an
# strace -f -y log.
pwrites() {
  python3 - "$1" "$2" <<'EOF'
import re, sys
log, path = sys.argv[1], sys.argv[2]
rx = re.compile(r"^(\d+)\s+pwrite64\(\d+<([^>]*)>, .*, (\d+), \d+(\)| <unfinished)")
n, big, tids = 0, 0, set()
for line in open(log, errors="replace"):
    m = rx.match(line)
    if m and m.group(2).startswith(path):
        n += 1
        big = max(big, int(m.group(3)))
        tids.add(m.group(1))
print(n, big, len(tids))
EOF
}

# convert_traced OUT ARGS...: vmdkit convert ARGS in.raw OUT under strace.
convert_traced() {
  local out=$1
  shift
  expect_rc 0 strace -f -y -qq -o "$tmpdir/strace.log" -e trace=pwrite64 \
    "$VMDKIT" convert -t writeback -f raw "$@" in.raw "$out"
}

check_out() { # OUT FORMAT-ARGS...: OUT reads as in.raw in qemu-img
  local out=$1
  expect_rc 0 qemu-img compare -f raw in.raw "$out"
  if [[ $out == *.vmdk ]]; then
    expect_rc 0 qemu-img check "$out"
    expect_rc 0 vmdkinfo "$out"
  fi
}

for spec in "raw" "vmdk" "vmdk subformat=twoGbMaxExtentSparse" \
  "vmdk subformat=streamOptimized"; do
  read -r fmt opt <<<"$spec"
  ext=$fmt
  args=(-O "$fmt")
  [[ -n ${opt:-} ]] && args+=(-o "$opt")
  tag=${opt#subformat=}
  name=out-${tag:-$fmt}.$ext
  # On the FUSE mount.
  convert_traced "$tmpdir/mnt/$name" "${args[@]}"
  check_out "$tmpdir/mnt/$name"
  read -r n big tids < <(pwrites "$tmpdir/strace.log" "$tmpdir/mnt/${name%.*}")
  echo "  $spec on FUSE: $n pwrites, largest $big bytes, from $tids threads"
  ((n > 0)) || die "$spec on FUSE: no pwrite64 on the output in the trace"
  if [[ $opt != *streamOptimized* ]]; then
    # Whole chunks, split among threads: a data write of at least 1 MiB
    # went as parts from more than one thread.
    ((big >= 256 * 1024)) ||
      die "$spec on FUSE: largest pwrite is $big bytes, expected whole chunks"
    ((tids >= 2)) ||
      die "$spec on FUSE: all pwrites came from one thread ($tids)"
  fi
  # Locally: the same bytes, in pieces of at most 64 KiB.
  convert_traced "$tmpdir/$name" "${args[@]}"
  check_out "$tmpdir/$name"
  read -r n big tids < <(pwrites "$tmpdir/strace.log" "$tmpdir/${name%.*}")
  echo "  $spec locally: $n pwrites, largest $big bytes, from $tids threads"
  ((n > 0)) || die "$spec locally: no pwrite64 on the output in the trace"
  ((big <= 65536)) ||
    die "$spec locally: a pwrite of $big bytes (expected <= 65536)"
  [[ $fmt == raw ]] && same "$tmpdir/$name" "$tmpdir/mnt/$name"
  rm -f "$tmpdir/mnt/$name" "$tmpdir/$name" "$tmpdir"/mnt/*-s0*.vmdk \
    "$tmpdir"/*-s0*.vmdk
done

# Writes at odd offsets into a monolithicFlat image on the mount go to its
# flat extent as they are: split into parts from several threads, landing
# where a raw mirror has them.  (`vmdkit write` hands the library 1 MiB at
# a time; unit/test-write-parts covers lengths that are not whole units.)
expect_rc 0 "$VMDKIT" create -f vmdk -o subformat=monolithicFlat \
  "$tmpdir/mnt/flat.vmdk" 16M
truncate -s 16M mirror.raw
for w in "777 1061891" "3000001 5242881" "9437184 1048576"; do
  read -r off len <<<"$w"
  head -c "$len" /dev/urandom >chunk
  dd if=chunk of=mirror.raw bs=1M seek="$off" oflag=seek_bytes conv=notrunc \
    status=none
  strace -f -y -qq -o "$tmpdir/strace.log" -e trace=pwrite64 \
    "$VMDKIT" write "$tmpdir/mnt/flat.vmdk" "$off" <chunk ||
    die "vmdkit write of $len bytes at $off onto the mount failed"
  read -r n big tids < <(pwrites "$tmpdir/strace.log" "$tmpdir/mnt/flat-flat")
  echo "  write of $len bytes at $off: $n pwrites, largest $big, $tids threads"
  ((tids >= 2)) || die "write of $len bytes at $off: not split among threads"
done
expect_rc 0 qemu-img compare -f raw -F vmdk mirror.raw "$tmpdir/mnt/flat.vmdk"
"$VMDKIT" read "$tmpdir/mnt/flat.vmdk" 0 16M >got.raw
same mirror.raw got.raw

# Out of space in the middle of a parallel write: a 4 MiB tmpfs under the
# FUSE mount (root only: mounting tmpfs needs it).
mkdir small smnt
if mount -t tmpfs -o size=4m tmpfs "$tmpdir/small" 2>/dev/null; then
  mounts=("$tmpdir/smnt" "$tmpdir/small" "${mounts[@]}")
  bindfs "$tmpdir/small" "$tmpdir/smnt" || die "bindfs on the tmpfs failed"
  expect_rc 1 "$VMDKIT" convert -f raw -O raw in.raw "$tmpdir/smnt/full.raw"
  one_error_line "convert onto a full file system"
  grep -q 'No space left on device' "$tmpdir/err" ||
    die "the error does not say the device is full: $(cat "$tmpdir/err")"
  [[ ! -e $tmpdir/smnt/full.raw && ! -e $tmpdir/small/full.raw ]] ||
    die "a partial output was left on the full file system"
  echo "  full file system: $(cat "$tmpdir/err")"
else
  echo "  (not root: the out-of-space part is skipped)"
fi
echo "PASS"
