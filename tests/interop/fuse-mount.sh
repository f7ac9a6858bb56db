#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit mount (FUSE): the mount point shows the disk as one raw file that
# reads like qemu-img convert -O raw; dd conv=notrunc writes (odd offsets,
# across grains), fallocate punch-hole, fsync, then fusermount3 -u and the
# daemon's exit leave an image that vmdkit check, qemu-img check and
# qemu-img compare (against a raw mirror of the same writes) accept.
# SEEK_DATA/SEEK_HOLE match vmdkit map and qemu-img map.  -r refuses writes
# and changes no byte; -f stays in the foreground and SIGTERM unmounts
# cleanly; a corrupt image, a bad -o option or a mount point that hides the
# image are refused with one error line and nothing mounted.
# Skips (77) when /dev/fuse or fusermount3 is missing, or when this machine
# does not let us mount FUSE file systems.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3 fusermount3 mountpoint fallocate
[[ -c /dev/fuse ]] || { echo "SKIP: /dev/fuse is missing" >&2; exit 77; }
cd "$tmpdir"
M=$((1024 * 1024))
G=65536 # qemu-img's default grain
mnt=$tmpdir/mnt # absolute: the daemon is found by it (daemon_pid)
mkdir "$mnt"
# Under ASan/UBSan the daemon's stderr is /dev/null: its reports go to
# files, and any file fails the test.
san=$tmpdir/sanitizer
if [[ ${VMDKIT_SANITIZED:-0} == 1 ]]; then
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$san"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$san"
fi

# The pids of the vmdkit processes serving the mount point $1.
daemon_pid() {
  python3 - "$1" <<'EOF'
import os, sys
mnt = sys.argv[1].encode()
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        args = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
    except OSError:
        continue
    if (len(args) > 3 and os.path.basename(args[0]) == b"vmdkit"
            and args[1] == b"mount" and mnt in args):
        print(p)
EOF
}

# Wait (up to 30 s) until none of the pids $@ runs any more.
wait_exit() {
  local p i
  for p in "$@"; do
    for ((i = 0; i < 300; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    ! kill -0 "$p" 2>/dev/null || die "vmdkit (pid $p) still runs 30 s after the unmount"
  done
}

# Unmount $mnt and wait until its daemon has closed (flushed) the image.
unmount() {
  local pids
  pids=$(daemon_pid "$mnt")
  [[ -n $pids ]] || die "no vmdkit process serves $mnt"
  fusermount3 -u "$mnt"
  # shellcheck disable=SC2086
  wait_exit $pids
  ! mountpoint -q "$mnt" || die "$mnt is still mounted"
}

cleanup() {
  local m
  for m in "$mnt" "$tmpdir"; do
    if mountpoint -q "$m" 2>/dev/null; then
      fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
    fi
  done
  local p
  for p in $(daemon_pid "$mnt" 2>/dev/null); do
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  if compgen -G "$san.*" >/dev/null; then
    echo "--- sanitizer reports:" >&2
    cat "$san".* >&2
  fi
  rm -rf "$tmpdir"
}
trap cleanup EXIT

# An image with data (full and partial grains, the last grain), zeros and
# holes, written by qemu so the reference does not come from vmdkit.
qemu-img create -q -f vmdk img.vmdk 64M
qemu-io -c 'write -P 0x41 0 1M' -c 'write -P 0x42 3M 100000' -c 'write -z 5M 65536' \
  -c 'write -P 0x43 33M 65536' -c 'write -P 0x44 63M 1048576' img.vmdk >/dev/null
qemu-img convert -O raw img.vmdk img.raw

# The first mount doubles as the probe: skip where FUSE mounts are not
# allowed here (no module, no privilege, a container without the device).
run "$VMDKIT" mount img.vmdk "$mnt"
if [[ $rc -ne 0 ]]; then
  if grep -Eqi 'built without FUSE|device not found|permission denied|operation not permitted|fusermount3:|mount failed' "$tmpdir/err"; then
    echo "SKIP: cannot mount FUSE file systems here: $(head -n1 "$tmpdir/err")" >&2
    exit 77
  fi
  cat "$tmpdir/err" >&2
  die "vmdkit mount failed (exit $rc)"
fi
[[ ! -s $tmpdir/err ]] || die "vmdkit mount printed: $(cat "$tmpdir/err")"
# It returns once mounted: the file is there now.
mountpoint -q "$mnt" || die "vmdkit mount returned 0 but $mnt is not a mount point"
[[ $(ls -A "$mnt") == img.raw ]] || die "mount point holds: $(ls -A "$mnt")"
f=$mnt/img.raw
[[ $(stat -c '%F %a %s' "$f") == "regular file 644 $((64 * M))" ]] ||
  die "file: $(stat -c '%F %a %s' "$f")"

# Reads: the bytes qemu-img converts to.
same img.raw "$f"

# SEEK_DATA/SEEK_HOLE: the file's data segments are the image's data runs,
# as vmdkit map and qemu-img map see them.
"$VMDKIT" map --output=json img.vmdk >vmap.json
qemu-img map --output=json img.vmdk >qmap.json
python3 - "$f" vmap.json qmap.json <<'EOF'
import errno, json, os, sys
def merge(ranges):
    out = []
    for s, n in sorted(ranges):
        if out and out[-1][0] + out[-1][1] == s:
            out[-1][1] += n
        else:
            out.append([s, n])
    return out
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
seen, off = [], 0
while True:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError as e:
        if e.errno != errno.ENXIO:
            raise
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    if h <= d:
        sys.exit("FAIL: SEEK_HOLE from %d gave %d" % (d, h))
    seen.append((d, h - d))
    off = h
    if off >= size:
        break
seen = merge(seen)
for name in sys.argv[2:]:
    want = merge((r["start"], r["length"]) for r in json.load(open(name)) if r["data"])
    if seen != want:
        sys.exit("FAIL: SEEK_DATA/SEEK_HOLE segments %r, %s has %r" % (seen, name, want))
if seen != [[0, 1 << 20], [3 << 20, 131072], [5 << 20, 65536], [33 << 20, 65536], [63 << 20, 1 << 20]]:
    sys.exit("FAIL: unexpected data segments %r" % seen)
# Inside runs the answer is the offset itself; past the last data, ENXIO;
# the end of the file is a hole.
checks = [(os.SEEK_DATA, 4097, 4097), (os.SEEK_HOLE, 4097, 1 << 20),
          (os.SEEK_DATA, (1 << 20) + 1, 3 << 20), (os.SEEK_HOLE, (33 << 20) + 5, (33 << 20) + 65536),
          (os.SEEK_HOLE, (63 << 20) + 7, size), (os.SEEK_HOLE, (1 << 20) + 3, (1 << 20) + 3)]
for whence, at, want in checks:
    got = os.lseek(fd, at, whence)
    if got != want:
        sys.exit("FAIL: lseek(%d, %s) = %d, expected %d" % (at, "SEEK_DATA" if whence == os.SEEK_DATA else "SEEK_HOLE", got, want))
for whence in (os.SEEK_DATA, os.SEEK_HOLE):
    try:
        os.lseek(fd, size, whence)
        sys.exit("FAIL: lseek at the end of the file did not fail")
    except OSError as e:
        if e.errno != errno.ENXIO:
            raise
EOF

# Writes with dd conv=notrunc, mirrored into a raw copy: inside a grain, at
# odd offsets across grain boundaries into unallocated grains, from a hole
# into data, the very last bytes; one with fsync.
cp img.raw mirror.raw
head -c 400000 /dev/urandom >rand.bin
write_both() { # OFFSET COUNT SKIP [dd flags...]
  local off=$1 count=$2 skip=$3 t
  shift 3
  for t in "$f" mirror.raw; do
    dd if=rand.bin of="$t" bs=65536 iflag=skip_bytes,count_bytes oflag=seek_bytes \
      skip="$skip" seek="$off" count="$count" conv=notrunc "$@" status=none
  done
}
write_both 12345 1000 0
write_both $((5 * G - 777)) 200001 1000
write_both $((33 * M - 1001)) 70001 201001 conv=notrunc,fsync
write_both $((64 * M - 513)) 513 300000
write_both $((20 * M + 3)) 1 399999
# fallocate: punch a hole across allocated and unallocated grains, and a
# zero range inside one grain.
fallocate -p -o $((M - 3 * G - 5)) -l $((4 * G)) "$f"
fallocate -z -o $((33 * M + 100)) -l 1000 "$f"
dd if=/dev/zero of=mirror.raw bs=1 seek=$((M - 3 * G - 5)) count=$((4 * G)) conv=notrunc status=none
dd if=/dev/zero of=mirror.raw bs=1 seek=$((33 * M + 100)) count=1000 conv=notrunc status=none
sync "$f"
same mirror.raw "$f"

# The size is the disk's: writes past the end and truncation are refused.
run dd if=rand.bin of="$f" bs=4096 count=1 oflag=seek_bytes seek=$((64 * M)) conv=notrunc
[[ $rc -ne 0 ]] && grep -q 'No space left on device' "$tmpdir/err" ||
  die "write past the end: rc $rc, $(cat "$tmpdir/err")"
run truncate -s $((32 * M)) "$f"
[[ $rc -ne 0 ]] || die "truncate of the mounted disk succeeded"
[[ $(stat -c %s "$f") -eq $((64 * M)) ]] || die "size changed to $(stat -c %s "$f")"
run touch "$mnt/other"
[[ $rc -ne 0 && ! -e $mnt/other ]] || die "a second file was created in the mount"

# The uncleanShutdown byte of the header: set while a changed image is
# open, cleared by the clean close at the unmount (so a daemon that exits
# without closing is caught).
unclean() { od -An -tu1 -j72 -N1 img.vmdk | tr -d ' '; }
[[ $(unclean) == 1 ]] || die "uncleanShutdown is $(unclean) while the written image is mounted"

# Unmount: the daemon flushes and closes the image, then exits.
unmount
[[ $(unclean) == 0 ]] || die "uncleanShutdown is still set after the unmount"
expect_rc 0 "$VMDKIT" check img.vmdk
expect_rc 0 qemu-img check img.vmdk
expect_rc 0 qemu-img compare -f raw -F vmdk mirror.raw img.vmdk

# -r: mode 0444, reads the same, every write refused, no byte changed.
before=$(tree_state img.vmdk)
expect_rc 0 "$VMDKIT" mount -r img.vmdk "$mnt"
[[ $(stat -c '%a %s' "$f") == "444 $((64 * M))" ]] || die "-r file: $(stat -c '%a %s' "$f")"
same mirror.raw "$f"
run dd if=rand.bin of="$f" bs=512 count=1 conv=notrunc
[[ $rc -ne 0 ]] && grep -Eq 'Read-only file system|Permission denied' "$tmpdir/err" ||
  die "-r: dd write: rc $rc, $(cat "$tmpdir/err")"
python3 - "$f" <<'EOF'
import errno, os, sys
try:
    os.open(sys.argv[1], os.O_RDWR)
    sys.exit("FAIL: -r: open O_RDWR succeeded")
except OSError as e:
    if e.errno not in (errno.EROFS, errno.EACCES):
        raise
EOF
run fallocate -p -o 0 -l 4096 "$f"
[[ $rc -ne 0 ]] || die "-r: fallocate succeeded"
unmount
after=$(tree_state img.vmdk)
[[ $before == "$after" ]] || die "-r mount changed files: $(diff <(echo "$before") <(echo "$after"))"
expect_rc 0 qemu-img compare -f raw -F vmdk mirror.raw img.vmdk

# -f: stays in the foreground; SIGTERM unmounts, flushes and exits 0.
"$VMDKIT" mount -f img.vmdk "$mnt" 2>fg.err &
fg=$!
for ((i = 0; i < 300; i++)); do mountpoint -q "$mnt" && break; sleep 0.1; done
mountpoint -q "$mnt" || die "-f: not mounted after 30 s: $(cat fg.err)"
kill -0 "$fg" || die "-f: the process went away"
write_both $((7 * G + 11)) 99999 12
kill -TERM "$fg"
fg_rc=0
wait "$fg" || fg_rc=$?
[[ $fg_rc -eq 0 ]] || die "-f: exited $fg_rc after SIGTERM: $(cat fg.err)"
[[ ! -s fg.err ]] || die "-f: printed: $(cat fg.err)"
! mountpoint -q "$mnt" || die "-f: still mounted after SIGTERM"
[[ $(unclean) == 0 ]] || die "-f: uncleanShutdown is still set after SIGTERM"
expect_rc 0 "$VMDKIT" check img.vmdk
expect_rc 0 qemu-img compare -f raw -F vmdk mirror.raw img.vmdk

# Refusals: one error line, nothing mounted, no file changed.
python3 - img.vmdk bad.vmdk <<'EOF'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
struct.pack_into("<Q", data, 12, 1 << 60) # capacity: 2^60 sectors
open(sys.argv[2], "wb").write(data)
EOF
bad=(bad.vmdk)
[[ -f $CORPUS/qemu-sample-images/afl9.vmdk ]] && cp "$CORPUS/qemu-sample-images/afl9.vmdk" afl9.vmdk && bad+=(afl9.vmdk)
for b in "${bad[@]}"; do
  before=$(tree_state img.vmdk "$b")
  expect_rc 1 "$VMDKIT" mount "$b" "$mnt"
  one_error_line "mount $b"
  grep -q "^vmdkit: $b: " "$tmpdir/err" || die "mount $b: error does not name it: $(cat "$tmpdir/err")"
  ! mountpoint -q "$mnt" || die "a corrupt image ($b) was mounted"
  after=$(tree_state img.vmdk "$b")
  [[ $before == "$after" ]] || die "refused mount of $b changed files"
done
expect_rc 1 "$VMDKIT" mount -o no_such_fuse_option img.vmdk "$mnt"
one_error_line "mount -o no_such_fuse_option"
! mountpoint -q "$mnt" || die "mounted with a bad -o option"
expect_rc 1 "$VMDKIT" mount img.vmdk "$tmpdir"
one_error_line "mount over the image's folder"
! mountpoint -q "$tmpdir" || die "mounted over the image's own folder"
expect_rc 1 "$VMDKIT" mount img.vmdk "$tmpdir/no-such-dir"
one_error_line "mount on a missing folder"
expect_rc 0 qemu-img compare -f raw -F vmdk mirror.raw img.vmdk
if compgen -G "$san.*" >/dev/null; then
  die "sanitizer reports (printed below)"
fi
echo "fuse-mount: all checks passed"
