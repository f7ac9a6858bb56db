#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit mount of a remote image (lighttpd on 127.0.0.1): in the background
# (the daemon opens the URL again after the fork: threads and nbdkit
# processes do not cross it) and with -f, the mounted file reads like
# qemu-img convert -O raw of the local file, for a sparse and a split
# image; a mount without -r falls back to read-only with one warning; the
# unmount stops every nbdkit the mount started; a URL that fails (404) is
# refused with one line and nothing is mounted.
# Skips (77) when /dev/fuse, fusermount3 or lighttpd is missing, or when
# this machine does not let us mount FUSE file systems.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io fusermount3 mountpoint nbdkit pgrep
[[ -c /dev/fuse ]] || { echo "SKIP: /dev/fuse is missing" >&2; exit 77; }
source "$SRC_DIR/tests/servers.sh"
cd "$tmpdir"
M=$((1024 * 1024))
mkdir www mnt
mnt=$tmpdir/mnt
san=$tmpdir/sanitizer
if [[ ${VMDKIT_SANITIZED:-0} == 1 ]]; then # the daemon's stderr is /dev/null
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$san"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$san"
fi

qemu-img create -q -f vmdk www/sparse.vmdk 24M
qemu-io -f vmdk -c "write -P 0x5a 0 3M" -c "write -P 0xa5 $((17 * M + 512)) 70k" \
  www/sparse.vmdk >/dev/null
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentFlat www/split.vmdk 8M
qemu-io -f vmdk -c "write -P 0x33 $((5 * M)) 1M" www/split.vmdk >/dev/null
for i in sparse split; do qemu-img convert -O raw www/$i.vmdk $i.raw; done
start_http "$tmpdir/www"

# nbdkit processes reading from our server (the fixture starts none).
ours() { pgrep -f -- "nbdkit .*127.0.0.1:${HTTP_URL##*:}/" || true; }

unmount() {
  fusermount3 -u "$mnt"
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -z $(ours) ]] && return 0
    sleep 0.1
  done
  die "nbdkit still runs 10 s after the unmount: $(ours)"
}

# In the background, without -r: the remote image is mounted read-only.
if ! "$VMDKIT" mount "$HTTP_URL/sparse.vmdk" "$mnt" 2>err; then
  if grep -qiE "fuse|permission|not permitted" err; then
    echo "SKIP: cannot mount FUSE here: $(cat err)" >&2
    exit 77
  fi
  die "mount failed: $(cat err)"
fi
mountpoint -q "$mnt" || die "nothing mounted"
[[ $(wc -l <err) == 1 ]] && grep -q "read-only" err ||
  die "expected one read-only warning, got: $(cat err)"
same "$mnt/sparse.raw" sparse.raw
[[ -n $(ours) ]] || die "no nbdkit serves the mount (is it reading locally?)"
! (echo x | dd of="$mnt/sparse.raw" conv=notrunc status=none) 2>/dev/null ||
  die "a write to the read-only mount succeeded"
unmount

# In the foreground, a split image (a descriptor and its extent file).
"$VMDKIT" mount -f -r "$HTTP_URL/split.vmdk" "$mnt" 2>err &
fg=$!
for ((i = 0; i < 100; i++)); do
  mountpoint -q "$mnt" && break
  kill -0 $fg 2>/dev/null || die "mount -f exited: $(cat err)"
  sleep 0.1
done
mountpoint -q "$mnt" || die "mount -f: nothing mounted after 10 s"
same "$mnt/split.raw" split.raw
unmount
wait $fg || die "mount -f exited with $?: $(cat err)"

# A URL that fails: one line, nothing mounted.
expect_rc 1 "$VMDKIT" mount "$HTTP_URL/nope.vmdk" "$mnt"
one_error_line "mount of a missing URL"
grep -q "HTTP 404" "$tmpdir/err" || die "no HTTP 404 in: $(cat "$tmpdir/err")"
! mountpoint -q "$mnt" || die "a failed mount left something mounted"

if [[ -e $san || -n $(compgen -G "$san.*" || true) ]]; then
  cat "$san"* >&2
  die "sanitizer reports from the daemon"
fi
echo "remote-mount: OK"
