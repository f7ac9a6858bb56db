#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The EXAMPLE program of vmdkit(3) (docs/man/vmdkit-example.c, built against
# the build tree's header and libvmdkit.so): on images made with the
# build's `vmdkit create` and `vmdkit write` -- a standalone
# monolithicSparse image, a larger child over it with writes of its own,
# and a twoGbMaxExtentFlat image -- its stdout has the bytes of `qemu-img
# convert -O raw` (and of `vmdkit convert -O raw`), its stderr describes
# the image (format, extents, backing, runs with their layer); an image
# that does not open gives exit 1 and the library's message with the
# errno.  The page must hold the program as it was compiled: the
# EXAMPLE section of the built vmdkit.3.pod, unindented, is the file.
#   VMDKIT=build/vmdkit EXAMPLE=build/docs/man/vmdkit-example \
#   PAGE=build/docs/man/vmdkit.3.pod SOURCE=docs/man/vmdkit-example.c \
#     bash example.sh
set -euo pipefail
for v in VMDKIT EXAMPLE PAGE SOURCE; do
  [[ -n ${!v:-} ]] || { echo "FAIL: $v is not set" >&2; exit 1; }
done
[[ -x $EXAMPLE ]] || { echo "FAIL: $EXAMPLE is not built" >&2; exit 1; }
mkdir -p "${TMPDIR:-/tmp}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmdkit-man-example.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
die() {
  echo "FAIL: example.sh: $*" >&2
  exit 1
}

# The program in the page is the program that was compiled.
perl -e '
  local $/; my $pod = <STDIN>;
  my ($sec) = $pod =~ /^=head1 EXAMPLE\n(.*?)^=head1 /ms or die "no EXAMPLE section\n";
  my @code = grep { /^ / || $_ eq "" } split /\n/, $sec;
  shift @code while @code && $code[0] !~ /^ /;
  pop @code while @code && $code[-1] eq "";
  print map { (my $l = $_) =~ s/^ //; "$l\n" } @code;
' <"$PAGE" >"$tmp/page.c" || die "cannot read the EXAMPLE section of $PAGE"
cmp -s "$tmp/page.c" "$SOURCE" || {
  diff -u "$SOURCE" "$tmp/page.c" >&2 || true
  die "the EXAMPLE section of $PAGE is not $SOURCE"
}

cd "$tmp"
M=$((1024 * 1024))
pattern() { # BYTES SEED: BYTES of deterministic non-zero data
  perl -e 'my ($n, $s) = @ARGV; my $b = ""; my $x = $s;
    while (length $b < $n) { $x = ($x * 1103515245 + 12345) % 2147483648; $b .= pack("N", $x | 0x01010101) }
    print substr($b, 0, $n)' "$1" "$2"
}

# A standalone image: data at odd offsets, across grains, at the end.
"$VMDKIT" create -q base.vmdk 8M
pattern 1000 1 | "$VMDKIT" write base.vmdk 0
pattern 200000 2 | "$VMDKIT" write base.vmdk $((3 * M + 123))
pattern 4096 3 | "$VMDKIT" write base.vmdk $((8 * M - 4096))
# A child over it, larger than its base: its own writes, the rest read
# through the base, zeros past the base's end.
"$VMDKIT" create -q -b base.vmdk -F vmdk child.vmdk 12M
pattern 70000 4 | "$VMDKIT" write child.vmdk $((3 * M + 50000))
pattern 512 5 | "$VMDKIT" write child.vmdk $((10 * M))
# A split flat image (descriptor and extent files).
"$VMDKIT" create -q -o subformat=twoGbMaxExtentFlat flat.vmdk 3M
pattern 65536 6 | "$VMDKIT" write flat.vmdk $((M - 100))

have_qemu=false
command -v qemu-img >/dev/null && have_qemu=true
$have_qemu || echo "note: qemu-img is not installed; comparing with vmdkit convert only"

for img in base child flat; do
  rc=0
  "$EXAMPLE" $img.vmdk >$img.out 2>$img.err || rc=$?
  ((rc == 0)) || { cat $img.err >&2; die "$img.vmdk: the example exited $rc"; }
  "$VMDKIT" convert -O raw $img.vmdk $img.ref
  cmp $img.out $img.ref || die "$img.vmdk: the example's output is not what vmdkit convert -O raw gives"
  if $have_qemu; then
    qemu-img convert -f vmdk -O raw $img.vmdk $img.qemu
    cmp $img.out $img.qemu || die "$img.vmdk: the example's output is not what qemu-img convert -O raw gives"
  fi
  head -n 1 $img.err | grep -Eq "^$img\\.vmdk: vmdk [A-Za-z]+, [0-9]+ bytes \\(library [0-9.]+\\)\$" ||
    die "$img.vmdk: first stderr line: $(head -n 1 $img.err)"
  grep -Eq '^ +[0-9]+ +[0-9]+ data' $img.err || die "$img.vmdk: no data run on stderr: $(cat $img.err)"
done
grep -q '^  backing: 8388608 bytes$' child.err || die "child.vmdk: no backing line: $(cat child.err)"
grep -Eq ' data +depth 1$' child.err || die "child.vmdk: no data run from the base (depth 1): $(cat child.err)"
grep -Eq ' data +depth 0$' child.err || die "child.vmdk: no data run of its own (depth 0): $(cat child.err)"
grep -q '^  extent 0: RW FLAT, 3145728 bytes, .*flat-f001\.vmdk$' flat.err || die "flat.vmdk: no FLAT extent line: $(cat flat.err)"

# Errors: exit 1, the library's message naming the file, and the errno.
rc=0
"$EXAMPLE" missing.vmdk >missing.out 2>missing.err || rc=$?
((rc == 1)) || die "missing.vmdk: exit $rc, expected 1"
[[ ! -s missing.out ]] || die "missing.vmdk: wrote to stdout"
grep -Eq '^missing\.vmdk: .*\(errno 2\)$' missing.err || die "missing.vmdk: stderr: $(cat missing.err)"
rc=0
"$EXAMPLE" >/dev/null 2>usage.err || rc=$?
((rc == 2)) || die "no argument: exit $rc, expected 2"
echo "ok: the example program reads base, child and flat images as qemu-img does"
