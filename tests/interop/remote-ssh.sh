#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Remote image files over SSH (ssh://USER@127.0.0.1:PORT/ABSOLUTE/PATH,
# nbdkit's ssh plugin over SFTP) from a real sshd (tests/servers.sh; the
# test is skipped where sshd cannot run): a monolithicSparse written by
# qemu-io, a twoGbMaxExtentSparse (2.5 GiB, data across the 2047 MiB
# extent edge: its extents resolve to ssh:// URLs beside it) and a backing
# chain (child and base side by side) give the same bytes as the local
# files: compare says identical, convert -O raw equals qemu-img's raw,
# reads across the extent edge equal the raw, check exits 0, info JSON
# has qemu-img's virtual size.  A host key that does not match the
# known_hosts file is refused (one line), and so is a child whose parent
# is outside its folder, unless confine=no.  remote-read.sh has HTTP(S)
# and file+nbd.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
source "$SRC_DIR/tests/servers.sh"
need nbdkit qemu-img qemu-io python3
nbdkit ssh --version >/dev/null 2>&1 || { echo "SKIP: nbdkit's ssh plugin is not installed" >&2; exit 77; }
start_sshd
cd "$tmpdir"
M=$((1024 * 1024))
GiB=$((1 << 30))
X=$((4192256 * 512)) # a 2047 MiB extent
srv=$tmpdir/srv
mkdir -p "$srv/sub" ref

qemu-img create -q -f vmdk "$srv/sparse.vmdk" 5M
qemu_write "$srv/sparse.vmdk" '0 65536 0x41' '1048577 4095 0x42' '3145728 100000 0x43' '5242368 512 0x44'
"$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse "$srv/split.vmdk" 2560M
qemu_write "$srv/split.vmdk" '0 4096 0x51' "$((X - 70000)) 140000 0x52" "$((2 * GiB + 12345)) 777 0x53" "$((2560 * M - 512)) 512 0x54"
qemu-img create -q -f vmdk "$srv/base.vmdk" 4M
qemu_write "$srv/base.vmdk" '0 2M 0x91' '3M 65536 0x92'
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$srv/child.vmdk"
qemu_write "$srv/child.vmdk" '65536 4096 0x93' '3M 512 0x94'
(cd "$srv/sub" && qemu-img create -q -f vmdk -b ../base.vmdk -F vmdk child2.vmdk)
qemu_write "$srv/sub/child2.vmdk" '1M 65536 0x95'
for img in sparse.vmdk split.vmdk child.vmdk sub/child2.vmdk; do
  qemu-img convert -O raw "$srv/$img" "ref/${img//\//_}.raw"
done

base=ssh://$SSH_USER@127.0.0.1:$SSH_PORT$srv
shown=ssh://127.0.0.1:$SSH_PORT$srv # as messages and info name it (no user)
ssh_opts=(--remote-option "identity=$SSH_KEY" --remote-option "known-hosts=$SSH_KNOWN_HOSTS")

# same_image URL LOCAL REF [OPTION...]
same_image() {
  local url=$1 local=$2 ref=$3 size off
  shift 3
  expect_rc 0 "$VMDKIT" compare "$@" "$url" "$local"
  grep -q '^Images are identical' out || die "compare $url: $(cat out)"
  rm -f got.raw
  expect_rc 0 "$VMDKIT" convert "$@" -O raw "$url" got.raw
  same_sparse "$ref" got.raw
  expect_rc 0 "$VMDKIT" check "$@" "$url"
  expect_rc 0 "$VMDKIT" info "$@" --output=json "$url"
  cp out info.json
  size=$(qemu-img info --output=json "$local" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
  [[ $(json_get info.json virtual-size) == "$size" ]] || die "info $url: virtual size $(json_get info.json virtual-size), qemu-img says $size"
  for off in 511 $((size / 3 + 4097)) $((size - 65537)); do
    "$VMDKIT" read "$@" "$url" $off 65537 >got.bin || die "read $url $off failed"
    dd if="$ref" of=want.bin bs=64K iflag=skip_bytes,count_bytes skip=$off count=65537 status=none
    cmp want.bin got.bin || die "read $url at $off differs"
  done
}

same_image "$base/sparse.vmdk" "$srv/sparse.vmdk" ref/sparse.vmdk.raw "${ssh_opts[@]}"
same_image "$base/split.vmdk" "$srv/split.vmdk" ref/split.vmdk.raw "${ssh_opts[@]}"
for off in $((X - 70001)) $((X - 3)) $((2 * GiB + 12000)); do
  "$VMDKIT" read "${ssh_opts[@]}" "$base/split.vmdk" $off 140003 >got.bin || die "read split.vmdk $off failed"
  dd if=ref/split.vmdk.raw of=want.bin bs=64K iflag=skip_bytes,count_bytes skip=$off count=140003 status=none
  cmp want.bin got.bin || die "read split.vmdk at $off (the extent edge) differs"
done
expect_rc 0 "$VMDKIT" info "${ssh_opts[@]}" --output=json "$base/split.vmdk"
cp out info.json
[[ $(json_get info.json format-specific data extents 1 filename) == "$shown/split-s002.vmdk" ]] ||
  die "split extent 1 is not beside its descriptor: $(cat info.json)"
same_image "$base/child.vmdk" "$srv/child.vmdk" ref/child.vmdk.raw "${ssh_opts[@]}"
expect_rc 0 "$VMDKIT" info "${ssh_opts[@]}" --output=json "$base/child.vmdk"
grep -qF "\"$shown/base.vmdk\"" out || die "child's backing file is not $shown/base.vmdk: $(cat out)"

# A parent outside the child's folder: refused, then read with confine=no.
expect_rc 1 "$VMDKIT" info "${ssh_opts[@]}" "$base/sub/child2.vmdk"
one_error_line "parent outside the folder"
grep -qF "outside the image's folder $shown/sub/" err || die "confinement message: $(cat err)"
same_image "$base/sub/child2.vmdk" "$srv/sub/child2.vmdk" ref/sub_child2.vmdk.raw "${ssh_opts[@]}" --remote-option confine=no

# A host key that does not match: refused, one line, nothing read.
expect_rc 2 "$VMDKIT" compare --remote-option "identity=$SSH_KEY" --remote-option "known-hosts=$SSH_BAD_KNOWN_HOSTS" \
  "$base/sparse.vmdk" "$srv/sparse.vmdk"
one_error_line "host key mismatch"
grep -qiE "host key|known.hosts|verif" err || die "host key mismatch: $(cat err)"
exit 0
