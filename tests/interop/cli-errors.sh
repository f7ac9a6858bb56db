#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The CLI's contract for help and errors: every command's --help/-h exits 0
# and prints its usage on stdout; mistakes exit non-zero with exactly one
# stderr line "vmdkit: ..." and nothing on stdout; failures name the file.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"

commands="create info convert check map compare read write"

# --help, -h and `vmdkit help CMD`
for c in $commands; do
  for h in --help -h; do
    expect_rc 0 "$VMDKIT" $c $h
    grep -q "^Usage: vmdkit $c" "$tmpdir/out" ||
      { cat "$tmpdir/out" >&2; die "'vmdkit $c $h' does not print 'Usage: vmdkit $c'"; }
    [[ ! -s "$tmpdir/err" ]] || die "'vmdkit $c $h' wrote to stderr"
  done
  cp "$tmpdir/out" "$tmpdir/help1"
  expect_rc 0 "$VMDKIT" help $c
  cmp -s "$tmpdir/out" "$tmpdir/help1" || die "'vmdkit help $c' differs from 'vmdkit $c --help'"
done
for h in --help -h; do
  expect_rc 0 "$VMDKIT" $h
  for c in $commands; do
    grep -qw "$c" "$tmpdir/out" || die "'vmdkit $h' does not list $c"
  done
done
expect_rc 0 "$VMDKIT" --version
grep -Eq '^vmdkit version [0-9]+\.[0-9]+\.[0-9]+' "$tmpdir/out" || die "--version output: $(cat "$tmpdir/out")"

# a mistake: non-zero exit, one stderr line "vmdkit: ...", nothing on stdout
bad() { # WANT-RC|any PATTERN LABEL CMD...
  local want=$1 pattern=$2 label=$3
  shift 3
  run "$@"
  if [[ $want == any ]]; then
    ((rc != 0 && rc < 128)) || { cat "$tmpdir/err" >&2; die "$label: exit $rc"; }
  else
    ((rc == want)) || { cat "$tmpdir/err" >&2; die "$label: exit $rc, expected $want"; }
  fi
  one_error_line "$label"
  [[ ! -s "$tmpdir/out" ]] || { head -c 300 "$tmpdir/out" >&2; die "$label: printed on stdout"; }
  grep -Eq -- "$pattern" "$tmpdir/err" || { cat "$tmpdir/err" >&2; die "$label: stderr does not match /$pattern/"; }
}

bad 1 "frobnicate" "unknown command" "$VMDKIT" frobnicate
bad 1 "." "no command" "$VMDKIT"
bad 1 "--bogus" "unknown global option" "$VMDKIT" --bogus
# (compare exits 2 for every error: 1 means "different")
for c in $commands; do
  want=1
  [[ $c != compare ]] || want=2
  bad $want "bogus|unrecognized|unknown" "$c: unknown option" "$VMDKIT" $c --bogus-option x y
done
bad 1 "12X" "create: bad size 12X" "$VMDKIT" create "$tmpdir/x.vmdk" 12X
[[ ! -e "$tmpdir/x.vmdk" ]] || die "create with a bad size left a file"
bad 1 "." "create: negative size" "$VMDKIT" create "$tmpdir/x.vmdk" -- -5M
bad 1 "." "create: size overflow" "$VMDKIT" create "$tmpdir/x.vmdk" 99999999999999999999
bad 1 "." "create: size 1.5G" "$VMDKIT" create "$tmpdir/x.vmdk" 1.5G
bad 1 "." "create: missing size" "$VMDKIT" create "$tmpdir/x.vmdk"
bad 1 "subformat|bogus" "create: bad subformat" "$VMDKIT" create -o subformat=bogus "$tmpdir/x.vmdk" 1M
bad 1 "adapter|scsi" "create: bad adapter" "$VMDKIT" create -o adapter_type=scsi "$tmpdir/x.vmdk" 1M
bad 1 "grain" "create: grain 3000" "$VMDKIT" create -o grain_size=3000 "$tmpdir/x.vmdk" 1M
bad 1 "nosuchoption" "create: unknown -o" "$VMDKIT" create -o nosuchoption=1 "$tmpdir/x.vmdk" 1M
[[ ! -e "$tmpdir/x.vmdk" ]] || die "a failed create left $tmpdir/x.vmdk"
# a capacity too big for a hosted sparse extent (32-bit grain offsets)
bad 1 "x.vmdk" "create: 300T sparse" "$VMDKIT" create "$tmpdir/x.vmdk" 300T
[[ ! -e "$tmpdir/x.vmdk" ]] || die "a failed create left $tmpdir/x.vmdk"
expect_rc 0 "$VMDKIT" create -q -o help

# missing files: "vmdkit: FILE: ..."
missing=$tmpdir/missing.vmdk
for c in info check map; do
  bad 1 "^vmdkit: .*missing\.vmdk: " "$c: missing file" "$VMDKIT" $c "$missing"
done
bad any "^vmdkit: .*missing\.vmdk: " "read: missing file" "$VMDKIT" read "$missing" 0 1
bad any "^vmdkit: .*missing\.vmdk: " "write: missing file" "$VMDKIT" write "$missing" 0 </dev/null
bad 2 "^vmdkit: .*missing\.vmdk: " "compare: missing file" "$VMDKIT" compare "$missing" "$missing"
bad 1 "^vmdkit: .*missing\.vmdk: " "convert: missing file" "$VMDKIT" convert "$missing" "$tmpdir/y.raw"
[[ ! -e "$tmpdir/y.raw" ]] || die "convert of a missing file created the destination"
bad 1 "^vmdkit: .*missing\.vmdk: " "info -f vmdk: missing file" "$VMDKIT" info -f vmdk "$missing"

# reads and writes past the end
"$VMDKIT" create -q "$tmpdir/d.vmdk" 1M
before=$(sha "$tmpdir/d.vmdk")
bad any "." "read past the end" "$VMDKIT" read "$tmpdir/d.vmdk" 1048000 1000
bad any "." "read at the end" "$VMDKIT" read "$tmpdir/d.vmdk" 1M 1
bad any "." "read of 2^64-1 bytes" "$VMDKIT" read "$tmpdir/d.vmdk" 1 18446744073709551615
bad any "." "read: bad offset" "$VMDKIT" read "$tmpdir/d.vmdk" 12X 1
head -c 1000 /dev/urandom >"$tmpdir/k"
bad any "." "write past the end" "$VMDKIT" write "$tmpdir/d.vmdk" 1048000 <"$tmpdir/k"
bad any "." "write: bad offset" "$VMDKIT" write "$tmpdir/d.vmdk" -1 <"$tmpdir/k"
[[ $(sha "$tmpdir/d.vmdk") == "$before" ]] || die "a refused write changed the image"
# a read that fits prints exactly LENGTH bytes
"$VMDKIT" read "$tmpdir/d.vmdk" 1048000 576 >"$tmpdir/tail"
[[ $(stat -c %s "$tmpdir/tail") -eq 576 ]] || die "read of the last 576 bytes printed $(stat -c %s "$tmpdir/tail")"
cmp -s "$tmpdir/tail" <(head -c 576 /dev/zero) || die "the last 576 bytes of a fresh image are not zeros"
"$VMDKIT" read "$tmpdir/d.vmdk" 0 0 >"$tmpdir/empty" || die "read of 0 bytes failed"
[[ ! -s "$tmpdir/empty" ]] || die "read of 0 bytes printed something"

# wrong number of arguments
bad 1 "." "info: no file" "$VMDKIT" info
bad 1 "." "read: no length" "$VMDKIT" read "$tmpdir/d.vmdk" 0
bad 2 "." "compare: one image" "$VMDKIT" compare "$tmpdir/d.vmdk"
bad 1 "." "convert: no destination" "$VMDKIT" convert "$tmpdir/d.vmdk"
bad 1 "json|output" "info: bad --output" "$VMDKIT" info --output=xml "$tmpdir/d.vmdk"
bad 1 "." "convert: bad -O" "$VMDKIT" convert -O qcow3 "$tmpdir/d.vmdk" "$tmpdir/z"
bad 1 "cannot write" "convert: -O of a read-only QEMU format" "$VMDKIT" convert -O dmg "$tmpdir/d.vmdk" "$tmpdir/z"
[[ ! -e "$tmpdir/z" ]] || die "convert with a bad -O created the destination"
echo "all ok"
