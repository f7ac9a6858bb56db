#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A grain-table entry whose grain ends exactly at the end of the file is
# read; one whose grain runs one sector past it is refused, by every
# reader of the data path (read, convert, map, compare), with the field and
# the numbers named -- never read as zeros (new grains go at the end of the
# file, so a grain running past it would later be overwritten).
#
# Two disks: one whose last grain is whole (128 sectors), one whose
# capacity ends half-way through its last grain (64 sectors of it are
# read, so 64 sectors must be in the file).  Each is cut at the exact end
# of that grain (accepted: the bytes read equal what was written, and what
# qemu-io reads), one sector short of it (refused), and one byte more than
# a sector short (the file's length rounds up to a sector: still refused).
#
# Written for the mutant gte-bounds-off-by-one (tests/mutants/): the bound
# one sector short accepts the grain that runs one sector past the end.
source "$(dirname "$0")/../common.sh"
need qemu-io

V=$VMDKIT
cd "$tmpdir"

# CAPACITY GRAIN_SECTORS_READ
one_disk() {
  local cap=$1 nsec=$2 name=d$1
  local last=$(((cap - 1) / 65536 * 65536)) # the last grain's first byte
  local len=$((nsec * 512))
  head -c "$len" /dev/urandom >"$name.pat"
  expect_rc 0 "$V" create "$name.vmdk" "$cap"
  expect_rc 0 "$V" write "$name.vmdk" "$last" <"$name.pat"
  expect_rc 0 "$V" map --output=json "$name.vmdk"
  local off
  off=$(json_get "$tmpdir/out" 1 offset)
  [[ $(json_get "$tmpdir/out" 1 start) == "$last" ]] || die "$name: map: $(cat "$tmpdir/out")"
  local sector=$((off / 512)) exact=$((off + len))
  (($(stat -c %s "$name.vmdk") >= exact)) || die "$name: the file ends before its last grain"

  # 1. the file ends exactly where the grain's last read sector ends
  cp "$name.vmdk" "$name-exact.vmdk"
  truncate -s "$exact" "$name-exact.vmdk"
  expect_rc 0 "$V" read "$name-exact.vmdk" "$last" "$len"
  same "$tmpdir/out" "$name.pat"
  expect_rc 0 "$V" check "$name-exact.vmdk"
  qemu-io -f vmdk -r -c "read -v $last $len" "$name-exact.vmdk" >/dev/null ||
    die "$name-exact: qemu-io cannot read it"
  expect_rc 0 "$V" convert -O raw "$name-exact.vmdk" "$name-exact.raw"
  qemu-img convert -f vmdk -O raw "$name-exact.vmdk" "$name-exact.qemu.raw"
  same "$name-exact.raw" "$name-exact.qemu.raw"
  cmp -s -i "$last:0" "$name-exact.raw" "$name.pat" -n "$len" ||
    die "$name-exact: converted bytes of the last grain differ"

  # 2. one sector short, and a byte more (rounded up: one sector short)
  local cut
  for cut in $((exact - 512)) $((exact - 513)); do
    local f=$name-$cut.vmdk
    cp "$name.vmdk" "$f"
    truncate -s "$cut" "$f"
    local want
    want="vmdkit: $f: grain table entry $(((last / 65536) % 512)) of table $((last / 65536 / 512))"
    want+=" points at a grain that runs past the end of the file (sector $sector, $nsec sectors, file"
    expect_rc 1 "$V" read "$f" "$last" "$len"
    one_error_line "read $f"
    [[ ! -s $tmpdir/out ]] || die "read $f: wrote bytes to stdout"
    grep -qF "$want" "$tmpdir/err" || die "read $f: got '$(cat "$tmpdir/err")', want '$want ...'"
    # even a read of the grain's first sector only
    expect_rc 1 "$V" read "$f" "$last" 512
    grep -qF "$want" "$tmpdir/err" || die "read $f (one sector): got '$(cat "$tmpdir/err")'"
    run "$V" convert -O raw "$f" "$f.raw"
    [[ $rc -ne 0 ]] || die "convert $f: accepted"
    grep -qF "$want" "$tmpdir/err" || die "convert $f: got '$(cat "$tmpdir/err")'"
    [[ ! -e $f.raw ]] || die "convert $f: left its output behind"
    run "$V" compare "$name-exact.vmdk" "$f"
    [[ $rc -eq 2 ]] || die "compare with $f: exit $rc, expected 2"
    grep -qF "$want" "$tmpdir/err" || die "compare with $f: got '$(cat "$tmpdir/err")'"
    # a write elsewhere must not go over the grain either: refused too
    # and it changes no byte of the file: not even the CID or the unclean
    # flag (both are written only with the first data that lands)
    printf 'x' >"$tmpdir/x"
    sum_before=$(sha "$f")
    run "$V" write "$f" "$last" <"$tmpdir/x"
    [[ $rc -ne 0 ]] || die "write into the short grain of $f: accepted"
    grep -qF "$want" "$tmpdir/err" || die "write $f: got '$(cat "$tmpdir/err")'"
    [[ $(sha "$f") == "$sum_before" ]] || die "the refused write changed $f (CID or unclean flag)"
    # check names it as corruption
    expect_rc 2 "$V" check "$f"
  done
}

one_disk $((17 * 65536)) 128   # the last grain whole
one_disk $((16 * 65536 + 32768)) 64 # half of the last grain is in the disk
echo "gte-grain-bounds: ok"
