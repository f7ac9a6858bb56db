#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Remote image files over HTTP, HTTPS and file+nbd, from a real lighttpd
# (tests/servers.sh) and a real `nbdkit file dir=`, read the same bytes as
# the local files they serve.  Fixtures, written by qemu-img/qemu-io (and
# vmdkit where qemu cannot make the layout): monolithicSparse (a small one
# with data at several offsets, and a 48 MiB one of random data so that
# read-ahead and several connections engage), twoGbMaxExtentSparse (2.5
# GiB, data across the 2047 MiB extent edge), twoGbMaxExtentFlat (a
# hand-written descriptor with three small extents), monolithicFlat, vmfs,
# streamOptimized, ESXi's vmfsSparse (COWD) and seSparse snapshots (the
# project's generators, tests/gen/, with the bytes they must read as), a
# backing chain (child and base side by side) and an OVA (vmdkit ova
# create).
#
#  1. Every image over HTTP: compare with the local file says identical;
#     convert -O raw equals qemu-img's raw of the local file (the
#     generator's for COWD and seSparse) byte for byte;
#     info JSON's virtual size is qemu-img info's; map JSON is the local
#     map (file names aside); check exits 0; reads at odd offsets equal
#     the raw.  The big image also with connections=1 readahead=0 and
#     connections=8 readahead=8M.  The OVA: ova info (human and JSON),
#     ova verify, compare URL.ova with the disk it was made from; ova
#     create from a URL makes an appliance whose disk reads as the source.
#  2. A child in a subfolder whose parent is in the folder above: refused
#     by default (one line naming the folder), read with confine=no.
#  3. HTTPS with cainfo=CERT and with sslverify=false reads the same
#     bytes; with neither it is refused (self-signed certificate).
#  4. Basic auth on /private/: credentials in the URL, and user= with
#     password=+FILE, for a monolithicSparse and a split image (its
#     extents get the credentials too); no output, stdout or stderr, of a
#     success or a failure ever holds the password; without credentials:
#     one line, HTTP 401.
#  5. A query string (ESXi's ?dcPath=&dsName=) on a split descriptor: the
#     bytes are right and lighttpd's access log shows that every extent
#     file was requested with that same query string.
#  6. file+nbd+unix:// (an `nbdkit file dir=` export per file): the split
#     image, monolithicSparse and a chain read the same bytes.
#  7. The nbdkit plugin given an http:// file=: nbdcopy gives qemu-img's raw.
# The SSH transport is tests/interop/remote-ssh.sh (skipped without sshd).
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
source "$SRC_DIR/tests/servers.sh"
need nbdkit qemu-img qemu-io python3 curl
nbdkit curl --version >/dev/null 2>&1 || { echo "SKIP: nbdkit's curl plugin is not installed" >&2; exit 77; }
cd "$tmpdir"
M=$((1024 * 1024))
GiB=$((1 << 30))
X=$((4192256 * 512)) # a 2047 MiB extent
srv=$tmpdir/srv
mkdir -p "$srv/sub" "$srv/private" ref

# map_norm JSON: the map without file names.
map_norm() {
  python3 -c '
import json, sys
for e in json.load(open(sys.argv[1])):
    e.pop("filename", None)
    print(json.dumps(e, sort_keys=True))' "$1"
}

# ---- Fixtures ----------------------------------------------------------
# monolithicSparse with data at several offsets, and the read-ahead image.
qemu-img create -q -f vmdk "$srv/sparse.vmdk" 5M
qemu_write "$srv/sparse.vmdk" '0 65536 0x41' '1048577 4095 0x42' '3145728 100000 0x43' '5242368 512 0x44'
head -c $((48 * M)) /dev/urandom >big.raw
qemu-img convert -f raw -O vmdk big.raw "$srv/big.vmdk"
# twoGbMaxExtentSparse (qemu-img would make it too, but at QEMU's 2 GiB
# split; vmdkit's is VMware's 2047 MiB), written by qemu-io across the edge.
"$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse "$srv/split.vmdk" 2560M
qemu_write "$srv/split.vmdk" '0 4096 0x51' "$((X - 70000)) 140000 0x52" "$((2 * GiB + 12345)) 777 0x53" "$((2560 * M - 512)) 512 0x54"
# twoGbMaxExtentFlat with three small extents (2 MiB, 1 MiB, 1 MiB).
for i in 1 2 3; do head -c $(( (i == 1 ? 2 : 1) * M)) /dev/zero >"$srv/sflat-f00$i.vmdk"; done
cat >"$srv/sflat.vmdk" <<'EOF'
# Disk DescriptorFile
version=1
CID=2a3b4c5d
parentCID=ffffffff
createType="twoGbMaxExtentFlat"

# Extent description
RW 4096 FLAT "sflat-f001.vmdk" 0
RW 2048 FLAT "sflat-f002.vmdk" 0
RW 2048 FLAT "sflat-f003.vmdk" 0

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "8"
ddb.geometry.heads = "16"
ddb.geometry.sectors = "63"
ddb.adapterType = "lsilogic"
EOF
qemu_write "$srv/sflat.vmdk" '100 1000 0x61' "$((2 * M - 3000)) 6000 0x62" "$((3 * M - 1)) 2 0x63" "$((4 * M - 4096)) 4096 0x64"
# monolithicFlat and vmfs (descriptor + -flat file).
"$VMDKIT" create -q -o subformat=monolithicFlat "$srv/flat.vmdk" 3M
qemu_write "$srv/flat.vmdk" '0 512 0x71' '1000000 70000 0x72'
"$VMDKIT" create -q -o subformat=vmfs "$srv/esx.vmdk" 3M
grep -q '^createType="vmfs"' "$srv/esx.vmdk" || die "vmdkit create -o subformat=vmfs: $(cat "$srv/esx.vmdk")"
grep -q '^RW [0-9]* VMFS "esx-flat.vmdk"' "$srv/esx.vmdk" || die "vmfs extent line: $(cat "$srv/esx.vmdk")"
qemu_write "$srv/esx.vmdk" '512 1024 0x73' '2097152 65536 0x74'
# A flat file has no holes a remote reader can see (curl has no
# SEEK_HOLE): allocate them all, so that the local map is the same.
for f in flat-flat esx-flat sflat-f001 sflat-f002 sflat-f003; do
  cp --sparse=never "$srv/$f.vmdk" alloc.tmp && mv alloc.tmp "$srv/$f.vmdk"
done
# streamOptimized (qemu-img writes it).
qemu-img create -q -f raw s.raw 6M
qemu-io -f raw -c 'write -P 0x81 0 1M' -c 'write -P 0x82 4M 1000' s.raw >/dev/null
head -c 300000 /dev/urandom | dd of=s.raw bs=4k seek=500 conv=notrunc status=none
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized s.raw "$srv/stream.vmdk"
# A chain: base and child side by side, and a child in sub/ whose parent
# is ../base.vmdk.
qemu-img create -q -f vmdk "$srv/base.vmdk" 4M
qemu_write "$srv/base.vmdk" '0 2M 0x91' '3M 65536 0x92'
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$srv/child.vmdk"
qemu_write "$srv/child.vmdk" '65536 4096 0x93' '3M 512 0x94'
(cd "$srv/sub" && qemu-img create -q -f vmdk -b ../base.vmdk -F vmdk child2.vmdk)
qemu_write "$srv/sub/child2.vmdk" '1M 65536 0x95'
# An OVA of the small sparse disk.
"$VMDKIT" ova create --disk="$srv/sparse.vmdk" --name=appliance "$srv/appliance.ova" >/dev/null
# /private/: a monolithicSparse and a split image.
cp --sparse=always "$srv/sparse.vmdk" "$srv/private/"
cp --sparse=always "$srv"/split*.vmdk "$srv/private/"

# ESXi snapshots: vmfsSparse (COWD) and seSparse, made from the format's
# specification by the project's generators, with the bytes they must
# read as.
python3 "$SRC_DIR/tests/gen/make_cowd.py" --grain 8 "$srv" cowd >/dev/null
python3 "$SRC_DIR/tests/gen/make_sesparse.py" "$srv" ses >/dev/null

images=(sparse.vmdk big.vmdk split.vmdk sflat.vmdk flat.vmdk esx.vmdk stream.vmdk child.vmdk)
for img in "${images[@]}" sub/child2.vmdk; do
  qemu-img convert -O raw "$srv/$img" "ref/${img//\//_}.raw"
done
for img in cowd ses; do
  mv "$srv/$img.raw" "ref/$img.vmdk.raw"
  images+=("$img.vmdk")
done

start_http "$srv"

# ---- 1. Every image over HTTP -----------------------------------------
# same_image URL LOCAL REF [OPTION...]: URL reads as LOCAL and REF (raw).
same_image() {
  local url=$1 local=$2 ref=$3 size off len
  shift 3
  local opts=("$@")
  expect_rc 0 "$VMDKIT" compare "${opts[@]}" "$url" "$local"
  grep -q '^Images are identical' out || die "compare $url: $(cat out)"
  rm -f got.raw
  expect_rc 0 "$VMDKIT" convert "${opts[@]}" -O raw "$url" got.raw
  same_sparse "$ref" got.raw
  expect_rc 0 "$VMDKIT" info "${opts[@]}" --output=json "$url"
  cp out info.json
  size=$(qemu-img info --output=json "$local" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
  [[ $(json_get info.json virtual-size) == "$size" ]] || die "info $url: virtual size $(json_get info.json virtual-size), qemu-img says $size"
  [[ $(stat -c %s "$ref") == "$size" ]] || die "$ref: not $size bytes (test bug)"
  expect_rc 0 "$VMDKIT" map "${opts[@]}" --output=json "$url"
  map_norm out >map.remote
  "$VMDKIT" map --output=json "$local" >map.json
  map_norm map.json >map.local
  cmp -s map.remote map.local || { diff map.local map.remote >&2 || true; die "map $url differs from map $local"; }
  expect_rc 0 "$VMDKIT" check "${opts[@]}" "$url"
  for off in 511 $((size / 3 + 4097)) $((size - 65537)); do
    len=$((size - off < 70000 ? size - off : 70000))
    ((off >= 0)) || continue
    "$VMDKIT" read "${opts[@]}" "$url" $off $len >got.bin || die "read $url $off $len failed"
    dd if="$ref" of=want.bin bs=64K iflag=skip_bytes,count_bytes skip=$off count=$len status=none
    cmp want.bin got.bin || die "read $url at $off ($len bytes) differs"
  done
}

# same_content URL LOCAL REF [OPTION...]: the lighter check for a second
# way to the same file: compare, convert -O raw, a read.
same_content() {
  local url=$1 local=$2 ref=$3 size
  shift 3
  expect_rc 0 "$VMDKIT" compare "$@" "$url" "$local"
  grep -q '^Images are identical' out || die "compare $url: $(cat out)"
  rm -f got.raw
  expect_rc 0 "$VMDKIT" convert "$@" -O raw "$url" got.raw
  same_sparse "$ref" got.raw
  size=$(stat -c %s "$ref")
  "$VMDKIT" read "$@" "$url" $((size - 100000)) 99999 >got.bin || die "read $url failed"
  dd if="$ref" of=want.bin bs=64K iflag=skip_bytes,count_bytes skip=$((size - 100000)) count=99999 status=none
  cmp want.bin got.bin || die "read $url at $((size - 100000)) differs"
}

# A split image's reads across its extent edge, too.
split_edges() {
  local url=$1 ref=$2 off
  shift 2
  for off in $((X - 70001)) $((X - 3)) $((2 * GiB + 12000)); do
    "$VMDKIT" read "$@" "$url" $off 140003 >got.bin || die "read $url $off failed"
    dd if="$ref" of=want.bin bs=64K iflag=skip_bytes,count_bytes skip=$off count=140003 status=none
    cmp want.bin got.bin || die "read $url at $off (split edge) differs"
  done
}

for img in "${images[@]}"; do
  same_image "$HTTP_URL/$img" "$srv/$img" "ref/$img.raw"
done
split_edges "$HTTP_URL/split.vmdk" ref/split.vmdk.raw
# The big image with other read-ahead settings.
same_sparse big.raw ref/big.vmdk.raw
for o in "connections=1 readahead=0" "connections=8 readahead=8M" "connections=2 readahead=1M"; do
  set -- $o
  rm -f got.raw
  expect_rc 0 "$VMDKIT" convert --remote-option "$1" --remote-option "$2" -O raw "$HTTP_URL/big.vmdk" got.raw
  same big.raw got.raw
  "$VMDKIT" read --remote-option "$1" --remote-option "$2" "$HTTP_URL/big.vmdk" 12345678 3000000 >got.bin ||
    die "read big.vmdk with $o failed"
  dd if=big.raw of=want.bin bs=64K iflag=skip_bytes,count_bytes skip=12345678 count=3000000 status=none
  same want.bin got.bin
done

# The OVA: info, verify, its disk.
expect_rc 0 "$VMDKIT" ova info "$HTTP_URL/appliance.ova"
grep -q appliance out || die "ova info: $(cat out)"
expect_rc 0 "$VMDKIT" ova info --output=json "$HTTP_URL/appliance.ova"
cp out ova.json
[[ $(json_get ova.json name) == appliance ]] || die "ova info name: $(cat ova.json)"
[[ $(json_get ova.json disks 0 capacity) == $((5 * M)) ]] || die "ova info capacity: $(cat ova.json)"
"$VMDKIT" ova info --output=json "$srv/appliance.ova" >ova.local.json
cmp -s ova.json ova.local.json || die "ova info of the URL and of the file differ"
expect_rc 0 "$VMDKIT" ova verify "$HTTP_URL/appliance.ova"
expect_rc 0 "$VMDKIT" compare "$HTTP_URL/appliance.ova" "$srv/sparse.vmdk"
grep -q '^Images are identical' out || die "compare ova: $(cat out)"
rm -f got.raw
expect_rc 0 "$VMDKIT" convert -O raw "$HTTP_URL/appliance.ova" got.raw
same ref/sparse.vmdk.raw got.raw
# ova create with a remote disk: the appliance's disk reads as the source.
expect_rc 0 "$VMDKIT" ova create --disk="$HTTP_URL/stream.vmdk" --name=fromurl made.ova
expect_rc 0 "$VMDKIT" ova verify made.ova
rm -f got.raw
expect_rc 0 "$VMDKIT" convert -O raw made.ova got.raw
same ref/stream.vmdk.raw got.raw

# ---- 2. Confinement of a chain -----------------------------------------
expect_rc 1 "$VMDKIT" info "$HTTP_URL/sub/child2.vmdk"
one_error_line "parent outside the folder"
grep -qF "outside the image's folder $HTTP_URL/sub/" err || die "confinement message does not name the folder: $(cat err)"
grep -qF "$HTTP_URL/base.vmdk" err || die "confinement message does not name the parent: $(cat err)"
expect_rc 1 "$VMDKIT" convert -O raw "$HTTP_URL/sub/child2.vmdk" refused.raw
one_error_line "parent outside the folder (convert)"
[[ ! -e refused.raw ]] || die "convert refused but left refused.raw"
same_image "$HTTP_URL/sub/child2.vmdk" "$srv/sub/child2.vmdk" ref/sub_child2.vmdk.raw --remote-option confine=no

# ---- 3. HTTPS ----------------------------------------------------------
for img in sparse.vmdk split.vmdk stream.vmdk; do
  for o in "cainfo=$HTTPS_CERT" sslverify=false; do
    expect_rc 0 "$VMDKIT" compare --remote-option "$o" "$HTTPS_URL/$img" "$srv/$img"
    grep -q '^Images are identical' out || die "https compare $img ($o): $(cat out)"
  done
done
rm -f got.raw
expect_rc 0 "$VMDKIT" convert --remote-option "cainfo=$HTTPS_CERT" -O raw "$HTTPS_URL/big.vmdk" got.raw
same big.raw got.raw
rm -f got.raw
expect_rc 0 "$VMDKIT" convert --remote-option sslverify=false -O raw "$HTTPS_URL/split.vmdk" got.raw
same_sparse ref/split.vmdk.raw got.raw
expect_rc 1 "$VMDKIT" info "$HTTPS_URL/sparse.vmdk"
one_error_line "self-signed certificate"
grep -qiE "certificate|ssl|tls" err || die "self-signed certificate: $(cat err)"

# ---- 4. Basic auth on /private/ ----------------------------------------
creds_url=${HTTP_URL/http:\/\//http://$HTTP_USER:$HTTP_PASSWORD@}
auth=(--remote-option "user=$HTTP_USER" --remote-option "password=+$HTTP_PASSWORD_FILE")
no_password() { # WHAT: neither out nor err holds the password
  ! grep -qF "$HTTP_PASSWORD" out err || die "$1: the password is shown: $(cat out err)"
}
for img in sparse.vmdk split.vmdk; do
  same_content "$creds_url/private/$img" "$srv/private/$img" "ref/$img.raw"
  same_content "$HTTP_URL/private/$img" "$srv/private/$img" "ref/$img.raw" "${auth[@]}"
  expect_rc 0 "$VMDKIT" info "$creds_url/private/$img"
  no_password "info with credentials in the URL"
  grep -qF "$HTTP_URL/private/$img" out || die "info: no image URL: $(cat out)"
  expect_rc 0 "$VMDKIT" info --output=json "${auth[@]}" "$HTTP_URL/private/$img"
  no_password "info --output=json with password=+FILE"
  expect_rc 0 "$VMDKIT" info --remote-option "user=$HTTP_USER" --remote-option "password=$HTTP_PASSWORD" "$HTTP_URL/private/$img"
  no_password "info with a literal password="
  expect_rc 1 "$VMDKIT" info "$HTTP_URL/private/$img"
  one_error_line "no credentials"
  grep -q 'HTTP 401' err || die "no credentials: $(cat err)"
done
split_edges "$creds_url/private/split.vmdk" ref/split.vmdk.raw
# Failures with credentials do not show them either.
expect_rc 1 "$VMDKIT" info "$creds_url/private/missing.vmdk"
one_error_line "missing file with credentials"
no_password "missing file with credentials in the URL"
expect_rc 1 "$VMDKIT" info --remote-option "user=$HTTP_USER" --remote-option "password=$HTTP_PASSWORD" "$HTTP_URL/private/missing.vmdk"
no_password "missing file with a literal password="
expect_rc 1 "$VMDKIT" info "http://$HTTP_USER:wrong-$HTTP_PASSWORD@${HTTP_URL#http://}/private/sparse.vmdk"
one_error_line "wrong password"
grep -q 'HTTP 401' err || die "wrong password: $(cat err)"
no_password "wrong password in the URL"
# A split descriptor outside /private/ (readable without credentials)
# whose extents are in it: the credentials reach the extents.
sed 's/"split-s00/"private\/split-s00/' "$srv/split.vmdk" >"$srv/pubsplit.vmdk"
grep -q '"private/split-s002.vmdk"' "$srv/pubsplit.vmdk" || die "pubsplit.vmdk (test bug)"
expect_rc 0 "$VMDKIT" compare "$creds_url/pubsplit.vmdk" "$srv/split.vmdk"
expect_rc 0 "$VMDKIT" compare "${auth[@]}" "$HTTP_URL/pubsplit.vmdk" "$srv/split.vmdk"
expect_rc 2 "$VMDKIT" compare "$HTTP_URL/pubsplit.vmdk" "$srv/split.vmdk"
one_error_line "extents without credentials"
grep -q 'HTTP 401' err || die "extents without credentials: $(cat err)"

# ---- 5. A query string -------------------------------------------------
q='dcPath=ha-datacenter&dsName=datastore1'
same_image "$HTTP_URL/split.vmdk?$q" "$srv/split.vmdk" ref/split.vmdk.raw
same_content "$HTTP_URL/child.vmdk?$q" "$srv/child.vmdk" ref/child.vmdk.raw

# ---- 6. file+nbd -------------------------------------------------------
need nbdinfo
sock=$tmpdir/file.sock
# (plain nbdkit: no plugin of ours, so no sanitizer runtime to preload)
nbdkit -f -r --exit-with-parent -P "$tmpdir/nbdkit-file.pid" -U "$sock" file dir="$srv" &
nbdkit_job=$!
for ((i = 0; i < 100; i++)); do [[ -S $sock ]] && break; sleep 0.1; done
[[ -S $sock ]] || die "nbdkit file dir= did not start"
for img in split.vmdk sparse.vmdk child.vmdk stream.vmdk; do
  same_content "file+nbd+unix:///$img?socket=$sock" "$srv/$img" "ref/$img.raw"
done
split_edges "file+nbd+unix:///split.vmdk?socket=$sock" ref/split.vmdk.raw
kill "$(cat "$tmpdir/nbdkit-file.pid")" 2>/dev/null || true
wait "$nbdkit_job" 2>/dev/null || true

# ---- 7. The nbdkit plugin with an http:// file= ------------------------
plugin=${BUILD_DIR:-}/nbdkit-vmdkit-plugin.so
if [[ ${VMDKIT_SANITIZED:-0} == 1 ]]; then
  # The ASan runtime nbdkit must preload to load the sanitized plugin is
  # inherited by the plugin's own nbdkit curl processes, which hang at exit
  # under it (p11-kit's destructor); the CLI above ran the same library
  # code under the sanitizers.
  echo "note: sanitizer build: the nbdkit plugin part is skipped" >&2
elif [[ -f $plugin ]] && command -v nbdcopy >/dev/null; then
  for img in big.vmdk split.vmdk child.vmdk; do
    rm -f got.raw
    run_nbdkit -U - -r "$plugin" file="$HTTP_URL/$img?$q" --run 'nbdcopy "$uri" got.raw' ||
      die "nbdkit plugin file=$HTTP_URL/$img failed"
    same_sparse "ref/$img.raw" got.raw
  done
  rm -f got.raw
  run_nbdkit -U - -r "$plugin" file="$HTTP_URL/private/split.vmdk" remote-option="user=$HTTP_USER" \
    remote-option="password=+$HTTP_PASSWORD_FILE" --run 'nbdcopy "$uri" got.raw' ||
    die "nbdkit plugin with remote-option= credentials failed"
  same_sparse ref/split.vmdk.raw got.raw
else
  echo "note: the nbdkit plugin or nbdcopy is missing: its part is skipped" >&2
fi

# ---- 5 (continued). The access log -------------------------------------
# lighttpd buffers it and writes what it holds when it exits: nothing more
# is asked of it from here on.
stop_http
[[ -s $HTTP_ACCESS_LOG ]] || die "lighttpd's access log is empty"
for f in split.vmdk split-s001.vmdk split-s002.vmdk child.vmdk base.vmdk; do
  grep -qE "^GET /$f\\?$q HTTP/[0-9.]+ 20[06] " "$HTTP_ACCESS_LOG" ||
    { grep -F "$f" "$HTTP_ACCESS_LOG" | tail -5 >&2; die "no GET of /$f?$q in the access log"; }
done
# ... and never without it after being opened with it: every request for
# an extent carries either the query or none at all (the plain runs).
if grep -E "/split-s00[12]\\.vmdk\\?" "$HTTP_ACCESS_LOG" | grep -vqF "?$q "; then
  grep -E "/split-s00[12]\\.vmdk\\?" "$HTTP_ACCESS_LOG" | grep -vF "?$q " | head >&2
  die "an extent was requested with another query string"
fi
# The extents of the private split image were requested with credentials
# (200/206), never left at 401 after the descriptor was read.
grep -qE "^GET /private/split-s00[12]\\.vmdk HTTP/[0-9.]+ 206 " "$HTTP_ACCESS_LOG" ||
  die "no authorised GET of the private split extents in the access log"
exit 0
