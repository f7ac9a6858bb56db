#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The sector count of a descriptor's extent line is a decimal number and
# nothing else: junk right after it ("2048x", "2048.0", "2048-", a quoted
# type glued to it) is refused at open, with one error line that names the
# file, the line and the size as written -- not read as 2048 sectors and
# not reported as some other field.  The same line with a blank (space or
# tab) after the number opens.  No file is changed by a refused open.
#
# Written for the mutant descriptor-sectors-junk (tests/mutants/): junk
# after the number accepted (the size parsed as 2048; "2048\"FLAT\"" then
# opens as a 1 MiB FLAT extent, "2048x" fails on the type "x" instead).
source "$(dirname "$0")/../common.sh"

V=$VMDKIT
mkdir "$tmpdir/img"
cd "$tmpdir/img"
truncate -s 1M f.raw

desc() { # EXTENT-LINE
  printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
  printf 'createType="monolithicFlat"\n\n# Extent description\n%s\n\n' "$1"
  printf '# The Disk Data Base\nddb.adapterType = "ide"\nddb.geometry.cylinders = "2"\n'
  printf 'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\n'
}

# good lines
for line in 'RW 2048 FLAT "f.raw" 0' $'RW 2048\tFLAT "f.raw" 0' 'RW   2048   FLAT "f.raw"'; do
  desc "$line" >ok.vmdk
  expect_rc 0 "$V" info --output=json ok.vmdk
  [[ $(json_get "$tmpdir/out" virtual-size) -eq 1048576 ]] ||
    die "'$line': virtual size $(json_get "$tmpdir/out" virtual-size)"
done

# junk after the number
n=0
for size in '2048x' '2048.0' '2048-' '2048"FLAT"' '2048,' '2048s' '0x800' '99999999999999999999999'; do
  n=$((n + 1))
  f=bad$n.vmdk
  desc "RW $size FLAT \"f.raw\" 0" >"$f"
  before=$(tree_state "$tmpdir/img")
  want="vmdkit: $f: line 8: extent size \"$size\" is not a sector count (a decimal number that fits 64 bits)"
  for cmd in info read; do
    if [[ $cmd == read ]]; then
      run "$V" read "$f" 0 512
    else
      run "$V" info "$f"
    fi
    [[ $rc -eq 1 ]] || die "$cmd of RW $size: exit $rc (stdout: $(head -c 200 "$tmpdir/out"))"
    one_error_line "$cmd of RW $size"
    [[ $(cat "$tmpdir/err") == "$want" ]] ||
      die "$cmd of RW $size: got '$(cat "$tmpdir/err")', want '$want'"
    [[ ! -s $tmpdir/out ]] || die "$cmd of RW $size: printed to stdout"
  done
  run "$V" write "$f" 0 </dev/null
  [[ $rc -ne 0 && $(cat "$tmpdir/err") == "$want" ]] ||
    die "write to RW $size: exit $rc, '$(cat "$tmpdir/err")'"
  after=$(tree_state "$tmpdir/img")
  [[ $before == "$after" ]] || die "RW $size: a refused open changed a file"
done
echo "descriptor-extent-size: ok"
