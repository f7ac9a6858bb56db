#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The Debian packages, from the outside: build them with scripts/make-deb.sh
# (dpkg-buildpackage -b on a clean copy of the tree, the unit tests run in
# it, lintian must report no error), then look into every .deb with dpkg-deb
# -- nothing is installed on this machine:
#  - exactly the packages libvmdkit0, libvmdkit-dev, vmdkit,
#    nbdkit-plugin-vmdkit, python3-vmdkit (and the -dbgsym packages of all
#    but libvmdkit-dev, unless DEB_BUILD_OPTIONS has noautodbgsym);
#  - each holds exactly its files (dpkg-deb -c; a file in the wrong
#    package, a missing man page, completion or .so link fails);
#  - their control fields: version, architecture, section, Multi-Arch,
#    Depends (vmdkit: libvmdkit0 (>= VERSION), libfuse3-3; the plugin:
#    nbdkit, libvmdkit0; libvmdkit-dev: libvmdkit0 (= VERSION) and the -dev
#    packages of what libvmdkit.a needs; python3-vmdkit: libvmdkit0 and
#    python3 of /usr/bin/python3's version), libvmdkit0's symbols, shlibs
#    and ldconfig trigger;
#  - the extracted (dpkg-deb -x) library: SONAME libvmdkit.so.0, stripped,
#    its exported symbols exactly those of debian/libvmdkit0.symbols; the
#    CLI, the plugin and the Python module: no RUNPATH, hardened (PIE,
#    RELRO, BIND_NOW);
#  - they work: the extracted CLI, with LD_LIBRARY_PATH on the extracted
#    libvmdkit0, creates an image and writes into it, and qemu-img convert
#    -O raw reads the expected bytes; nbdkit serves it through the extracted
#    plugin; examples/vmdk-cat.c builds with pkg-config against the
#    extracted libvmdkit-dev (shared and static) and reads the same bytes;
#    /usr/bin/python3 imports the extracted module (python3-vmdkit, in
#    /usr/lib/python3/dist-packages) and reads qemu-img's bytes.
#
#   deb.sh SRC_DIR OUT_DIR [--no-build]
#
# OUT_DIR receives the build (ctest: BUILD_DIR/deb); --no-build inspects
# the packages a previous run left there.  Exit 77 (skip) only when
# dpkg-buildpackage or debhelper is missing.
set -euo pipefail
(($# == 2 || $# == 3)) || { echo "usage: $0 SRC_DIR OUT_DIR [--no-build]" >&2; exit 2; }
src=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
build=1
[[ ${3:-} == --no-build ]] && build=0
for t in dpkg-buildpackage dh; do
  command -v $t >/dev/null || { echo "SKIP: $t missing (dpkg-dev, debhelper)"; exit 77; }
done
for t in dpkg-deb dpkg-architecture dpkg-parsechangelog lintian readelf nm qemu-img \
  nbdkit nbdcopy pkg-config cc; do
  command -v $t >/dev/null || { echo "FAIL: $t missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# grep -q for a pipe: reads all of its input (under pipefail, grep -q
# leaving early would fail the writer with SIGPIPE).
has() { grep "$@" >/dev/null; }

version=$(sed -n 's/^#define VMDKIT_VERSION_STRING "\(.*\)"/\1/p' "$src/include/vmdkit.h")
major=${version%%.*}
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
[[ -n $version && -n $arch && -n $ma ]] || fail "no version, architecture or multiarch triplet"
[[ $(dpkg-parsechangelog -l "$src/debian/changelog" -S Version) == "$version" ]] ||
  fail "debian/changelog's version is not vmdkit.h's $version"

# ---- build ------------------------------------------------------------------
if ((build)); then
  start=$(date +%s)
  bash "$src/scripts/make-deb.sh" "$out" >"$tmp/make-deb.log" 2>&1 ||
    { cat "$tmp/make-deb.log"; fail "scripts/make-deb.sh failed"; }
  cat "$tmp/make-deb.log"
  grep -q '^make-deb: lintian: 0 errors' "$tmp/make-deb.log" || fail "make-deb.sh did not report a lintian-clean build"
  echo "package build: $(( $(date +%s) - start ))s"
fi

# ---- which packages ------------------------------------------------------------
main=(libvmdkit0 libvmdkit-dev vmdkit nbdkit-plugin-vmdkit python3-vmdkit)
declare -A deb=()
shopt -s nullglob
for f in "$out"/*.deb; do
  p=$(dpkg-deb -f "$f" Package)
  [[ $(basename "$f") == "${p}_${version}_${arch}.deb" ]] || fail "$(basename "$f"): not ${p}_${version}_${arch}.deb"
  deb[$p]=$f
done
for p in "${main[@]}"; do
  [[ -n ${deb[$p]:-} ]] || fail "no package $p in $out"
done
for p in "${!deb[@]}"; do
  case $p in
    libvmdkit0 | libvmdkit-dev | vmdkit | nbdkit-plugin-vmdkit | python3-vmdkit) ;;
    libvmdkit0-dbgsym | vmdkit-dbgsym | nbdkit-plugin-vmdkit-dbgsym | python3-vmdkit-dbgsym) ;;
    *) fail "unexpected package $p (${deb[$p]})" ;;
  esac
done
if [[ " ${DEB_BUILD_OPTIONS:-} " != *" noautodbgsym "* ]]; then
  for p in libvmdkit0 vmdkit nbdkit-plugin-vmdkit python3-vmdkit; do
    [[ -n ${deb[$p-dbgsym]:-} ]] || fail "no package $p-dbgsym"
  done
fi

# ---- the files of each package --------------------------------------------------
# dpkg-deb -c, less the folders: "path" for a file, "path -> target" for a
# symbolic link.
contents() {
  dpkg-deb -c "$1" | awk '$1 !~ /^d/ {
      line = $0
      for (i = 0; i < 5; i++) sub(/^[^ ]+ +/, "", line)
      sub(/^\.\//, "", line); print line }' |
    LC_ALL=C sort
}
doc() { printf '%s\n' "usr/share/doc/$1/changelog.gz" "usr/share/doc/$1/copyright"; }
L=usr/lib/$ma
{
  printf '%s\n' "$L/libvmdkit.so.$version" "$L/libvmdkit.so.$major -> libvmdkit.so.$version"
  doc libvmdkit0
} | LC_ALL=C sort >"$tmp/want.libvmdkit0"
{
  printf '%s\n' usr/include/vmdkit.h "$L/libvmdkit.a" "$L/libvmdkit.so -> libvmdkit.so.$major" \
    "$L/pkgconfig/vmdkit.pc" "$L/cmake/vmdkit/vmdkitConfig.cmake" \
    "$L/cmake/vmdkit/vmdkitConfigVersion.cmake" "$L/cmake/vmdkit/vmdkitTargets.cmake" \
    "$L/cmake/vmdkit/vmdkitTargets-none.cmake" usr/share/man/man3/vmdkit.3.gz
  doc libvmdkit-dev
} | LC_ALL=C sort >"$tmp/want.libvmdkit-dev"
{
  printf '%s\n' usr/bin/vmdkit usr/share/man/man1/vmdkit.1.gz \
    usr/share/bash-completion/completions/vmdkit
  doc vmdkit
} | LC_ALL=C sort >"$tmp/want.vmdkit"
{
  printf '%s\n' "$L/nbdkit/plugins/nbdkit-vmdkit-plugin.so" \
    usr/share/man/man1/nbdkit-vmdkit-plugin.1.gz
  doc nbdkit-plugin-vmdkit
} | LC_ALL=C sort >"$tmp/want.nbdkit-plugin-vmdkit"
# The module of Debian's python3, under its full EXT_SUFFIX name.
py=/usr/bin/python3
[[ -x $py ]] || fail "no $py"
read -r pysuffix pyver < <("$py" -c 'import sys, sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"), "%d.%d" % sys.version_info[:2])')
pymod=usr/lib/python3/dist-packages/vmdkit$pysuffix
{
  printf '%s\n' "$pymod"
  doc python3-vmdkit
} | LC_ALL=C sort >"$tmp/want.python3-vmdkit"

for p in "${main[@]}"; do
  contents "${deb[$p]}" >"$tmp/got.$p"
  diff -u "$tmp/want.$p" "$tmp/got.$p" >"$tmp/diff" ||
    { cat "$tmp/diff"; fail "$p does not hold exactly its files (- expected, + in the package)"; }
done
# A -dbgsym package: only the detached debug information of its package.
for p in "${!deb[@]}"; do
  [[ $p == *-dbgsym ]] || continue
  contents "${deb[$p]}" >"$tmp/got.$p"
  grep -vE "^usr/lib/debug/\.build-id/[0-9a-f]{2}/[0-9a-f]+\.debug\$|^usr/share/doc/$p -> ${p%-dbgsym}\$" \
    "$tmp/got.$p" >"$tmp/extra" && { cat "$tmp/extra"; fail "$p holds more than debug information"; }
  [[ $(dpkg-deb -f "${deb[$p]}" Depends) == "${p%-dbgsym} (= $version)" ]] ||
    fail "$p: Depends is '$(dpkg-deb -f "${deb[$p]}" Depends)'"
done

# ---- control fields -------------------------------------------------------------
field() { dpkg-deb -f "${deb[$1]}" "$2"; }
# has_dep PACKAGE FIELD REGEX: one entry of FIELD matches ^REGEX$.
has_dep() {
  field "$1" "$2" | tr ',' '\n' | sed 's/^ *//; s/ *$//' | has -E "^($3)\$" ||
    fail "$1: $2 '$(field "$1" "$2")' has no entry matching $3"
}
no_dep() {
  ! field "$1" "$2" | tr ',' '\n' | sed 's/^ *//' | has -E "^($3)( |\$)" ||
    fail "$1: $2 '$(field "$1" "$2")' should not name $3"
}
declare -A section=([libvmdkit0]=libs [libvmdkit-dev]=libdevel [vmdkit]=utils [nbdkit-plugin-vmdkit]=admin
  [python3-vmdkit]=python)
declare -A multiarch=([libvmdkit0]=same [libvmdkit-dev]=same [vmdkit]=foreign [nbdkit-plugin-vmdkit]=same
  [python3-vmdkit]=no)
for p in "${main[@]}"; do
  [[ $(field $p Version) == "$version" ]] || fail "$p: Version $(field $p Version), not $version"
  [[ $(field $p Architecture) == "$arch" ]] || fail "$p: Architecture $(field $p Architecture)"
  [[ $(field $p Section) == "${section[$p]}" ]] || fail "$p: Section $(field $p Section), not ${section[$p]}"
  [[ $(field $p Multi-Arch) == "${multiarch[$p]}" ]] || fail "$p: Multi-Arch '$(field $p Multi-Arch)', not ${multiarch[$p]}"
  [[ $(field $p Priority) == optional ]] || fail "$p: Priority $(field $p Priority)"
  [[ -n $(field $p Description) ]] || fail "$p: no Description"
  echo "$p: Depends: $(field $p Depends)"
done
v=${version//./\\.}
has_dep libvmdkit0 Depends 'libc6 \(>= [0-9.~]+\)'
no_dep libvmdkit0 Depends 'libvmdkit0|libfuse3-3|nbdkit'
has_dep libvmdkit-dev Depends "libvmdkit0 \(= $v\)"
has_dep libvmdkit-dev Depends 'libnbd-dev'
has_dep libvmdkit-dev Depends 'libdeflate-dev'
has_dep vmdkit Depends "libvmdkit0 \(>= $v\)"
has_dep vmdkit Depends 'libfuse3-3( \(>= [0-9.~]+\))?'
no_dep vmdkit Depends 'nbdkit'
has_dep vmdkit Recommends 'fuse3'
has_dep vmdkit Recommends 'qemu-utils'
has_dep nbdkit-plugin-vmdkit Depends 'nbdkit'
# the plugin uses only VMDKIT_0.1 functions: the symbols file gives 0.1.0
has_dep nbdkit-plugin-vmdkit Depends 'libvmdkit0 \(>= [0-9.]+\)'
no_dep nbdkit-plugin-vmdkit Depends 'libfuse3-3'
# dh_python3: the python3 the module was built for (its EXT_SUFFIX names
# that version); shlibs: libvmdkit0.
has_dep python3-vmdkit Depends 'libvmdkit0 \(>= [0-9.]+\)'
has_dep python3-vmdkit Depends "python3 \(>= ${pyver//./\\.}~\)"
has_dep python3-vmdkit Depends "python3 \(<< ${pyver%%.*}\\.$(( ${pyver#*.} + 1 ))\)"
no_dep python3-vmdkit Depends 'libfuse3-3|nbdkit'

# libvmdkit0's control files: the symbols file as written in debian/,
# shlibs, and the ldconfig trigger.
dpkg-deb -e "${deb[libvmdkit0]}" "$tmp/ctrl"
for f in symbols shlibs triggers; do
  [[ -f $tmp/ctrl/$f ]] || fail "libvmdkit0 has no control file $f"
done
grep -q "^libvmdkit $major libvmdkit0 (>= $v)\$" "$tmp/ctrl/shlibs" ||
  { cat "$tmp/ctrl/shlibs"; fail "libvmdkit0's shlibs"; }
grep -q '^activate-noawait ldconfig$' "$tmp/ctrl/triggers" || fail "libvmdkit0 does not trigger ldconfig"
diff -u "$src/debian/libvmdkit0.symbols" "$tmp/ctrl/symbols" >"$tmp/diff" ||
  { cat "$tmp/diff"; fail "libvmdkit0's symbols control file is not debian/libvmdkit0.symbols"; }

# ---- the extracted files ----------------------------------------------------------
# Each package into its own folder, and all four into one (as if installed
# together: the -dev package's libvmdkit.so link then reaches libvmdkit0's
# library).
merged=$tmp/root
for p in "${main[@]}"; do
  mkdir -p "$tmp/x/$p" "$merged"
  dpkg-deb -x "${deb[$p]}" "$tmp/x/$p"
  dpkg-deb -x "${deb[$p]}" "$merged"
done
lib=$tmp/x/libvmdkit0/$L/libvmdkit.so.$version
cli=$tmp/x/vmdkit/usr/bin/vmdkit
plugin=$tmp/x/nbdkit-plugin-vmdkit/$L/nbdkit/plugins/nbdkit-vmdkit-plugin.so
pyext=$tmp/x/python3-vmdkit/$pymod
[[ -f $merged/$L/$(readlink "$merged/$L/libvmdkit.so") ]] || fail "libvmdkit-dev's libvmdkit.so does not reach libvmdkit0's library"

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libvmdkit.so.$major" ]] || fail "the packaged library's SONAME is '$soname'"
for f in "$lib" "$cli" "$plugin" "$pyext"; do
  name=${f#"$tmp/x/"}
  readelf -S "$f" | has '\.debug_info' && fail "$name is not stripped"
  if readelf -d "$f" | grep -E '\((RPATH|RUNPATH)\)' >"$tmp/rpath"; then
    cat "$tmp/rpath"; fail "$name has a RUNPATH"
  fi
  readelf -lW "$f" | has GNU_RELRO || fail "$name: no RELRO"
  readelf -d "$f" | has -E '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' || fail "$name: not linked with -z now"
  readelf -sW --dyn-syms "$f" | has '__stack_chk_fail' || fail "$name: no stack protector"
done
readelf -h "$cli" | has 'Type: *DYN' || fail "vmdkit is not a PIE"
for n in "libvmdkit.so.$major" libfuse3.so.3; do
  readelf -d "$cli" | has "(NEEDED).*\[$n\]" || fail "vmdkit does not link $n"
done
readelf -d "$plugin" | has "(NEEDED).*\[libvmdkit.so.$major\]" || fail "the plugin does not link libvmdkit.so.$major"
readelf -d "$pyext" | has "(NEEDED).*\[libvmdkit.so.$major\]" || fail "the Python module does not link libvmdkit.so.$major"
# Exported symbols: "name@VERSION" of every defined dynamic symbol (the
# version node itself included, as dpkg-gensymbols lists it) is exactly
# debian/libvmdkit0.symbols.
nm -D --defined-only --with-symbol-versions "$lib" |
  awk '{ s = $3; if ($2 == "A") s = s "@" s; sub(/@@/, "@", s); print s }' | LC_ALL=C sort >"$tmp/exported"
sed -n 's/^ \([^ ]*\) .*/\1/p' "$src/debian/libvmdkit0.symbols" | LC_ALL=C sort >"$tmp/listed"
diff -u "$tmp/listed" "$tmp/exported" >"$tmp/diff" ||
  { cat "$tmp/diff"; fail "the packaged library exports other symbols than debian/libvmdkit0.symbols lists (- listed, + exported)"; }
echo "libvmdkit.so.$version: SONAME $soname, $(wc -l <"$tmp/exported") versioned symbols as listed"

cmp -s "$src/include/vmdkit.h" "$tmp/x/libvmdkit-dev/usr/include/vmdkit.h" || fail "the packaged vmdkit.h is not include/vmdkit.h"
# No file names the folder the packages were built in.
if grep -rlF "$out" "$tmp/x" >"$tmp/leaks"; then
  cat "$tmp/leaks"; fail "packaged files name the build folder $out"
fi
pc=$tmp/x/libvmdkit-dev/$L/pkgconfig/vmdkit.pc
[[ $(PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=${pc%/*} pkg-config --variable=libdir vmdkit) == "/$L" ]] ||
  fail "vmdkit.pc: libdir is not /$L"
# Man pages and completion: what they should be.
for m in man1/vmdkit.1 man1/nbdkit-vmdkit-plugin.1 man3/vmdkit.3; do
  f=$(find "$tmp/x" -path "*/usr/share/man/$m.gz")
  n=${m#*/}; s=${n##*.}; n=${n%.*}
  zcat "$f" | has -iE "^\.TH \"?${n}\"? \"?$s\"?" || fail "$m is not a man page of $n($s)"
done
bash -c 'source "$1" && complete -p vmdkit' _ "$tmp/x/vmdkit/usr/share/bash-completion/completions/vmdkit" \
  >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "the packaged completion does not complete vmdkit"; }
echo "man pages vmdkit(1), nbdkit-vmdkit-plugin(1), vmdkit(3) and the bash completion are in their packages"

# ---- they work, without being installed -------------------------------------------
libdir=$tmp/x/libvmdkit0/$L
export LD_LIBRARY_PATH=$libdir
ldd "$cli" | has "libvmdkit.so.$major => $libdir/" || { ldd "$cli"; fail "the CLI does not load the extracted library"; }
"$cli" --version | has "vmdkit version $version (library $version)" ||
  fail "the packaged CLI: $("$cli" --version 2>&1)"
head -c $((3 * 1024 * 1024 + 4096)) /dev/urandom >"$tmp/data"
truncate -s 64M "$tmp/expect.raw"
dd if="$tmp/data" of="$tmp/expect.raw" bs=512 seek=$((2 * 2048 + 3)) conv=notrunc status=none
printf 'packaged\n' | dd of="$tmp/expect.raw" bs=1 seek=$((60 * 1024 * 1024)) conv=notrunc status=none
for sub in monolithicSparse streamOptimized monolithicFlat; do
  img=$tmp/$sub.vmdk
  "$cli" create -q -o subformat=$sub "$img" 64M || fail "vmdkit create $sub failed"
  "$cli" write "$img" $((2 * 1024 * 1024 + 3 * 512)) <"$tmp/data" || fail "vmdkit write into $sub failed"
  printf 'packaged\n' | "$cli" write "$img" 60M || fail "vmdkit write into $sub failed"
  qemu-img convert -f vmdk -O raw "$img" "$tmp/got.raw"
  cmp "$tmp/expect.raw" "$tmp/got.raw" || fail "$sub written by the packaged CLI: qemu-img reads other bytes"
done
echo "the packaged CLI wrote monolithicSparse, streamOptimized and monolithicFlat images; qemu-img reads the expected bytes"

# The plugin, as nbdkit loads it from the package (by path: nothing is
# installed in nbdkit's plugin folder).
nbdkit -r -U - "$plugin" file="$tmp/monolithicSparse.vmdk" \
  --run "nbdcopy \"\$uri\" $tmp/nbd.raw" || fail "nbdkit with the packaged plugin failed"
cmp "$tmp/expect.raw" "$tmp/nbd.raw" || fail "the packaged plugin serves other bytes"
echo "nbdkit serves the same bytes through the packaged plugin"

# libvmdkit-dev: examples/vmdk-cat.c against the extracted packages, with
# pkg-config (PKG_CONFIG_SYSROOT_DIR puts the extraction in front of the
# packaged /usr paths), linked to libvmdkit.so.0 and to libvmdkit.a.
export PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=$merged/$L/pkgconfig PKG_CONFIG_SYSROOT_DIR=$merged
[[ $(pkg-config --modversion vmdkit) == "$version" ]] || fail "vmdkit.pc: version $(pkg-config --modversion vmdkit)"
cc -Wall -Wextra -Werror -o "$tmp/cat-shared" "$src/examples/vmdk-cat.c" $(pkg-config --cflags --libs vmdkit) ||
  fail "examples/vmdk-cat.c does not build against the packaged libvmdkit-dev"
cc -Wall -Wextra -Werror -o "$tmp/cat-static" "$src/examples/vmdk-cat.c" $(pkg-config --cflags vmdkit) \
  -Wl,-Bstatic $(pkg-config --libs-only-L vmdkit) -lvmdkit -Wl,-Bdynamic \
  $(pkg-config --static --libs vmdkit | sed 's/-lvmdkit//') ||
  fail "examples/vmdk-cat.c does not build against the packaged libvmdkit.a"
readelf -d "$tmp/cat-static" | has libvmdkit && fail "the static vmdk-cat still needs libvmdkit.so"
LD_LIBRARY_PATH=$merged/$L
for kind in shared static; do
  "$tmp/cat-$kind" "$tmp/streamOptimized.vmdk" >"$tmp/cat.raw" || fail "vmdk-cat ($kind) failed"
  cmp "$tmp/expect.raw" "$tmp/cat.raw" || fail "vmdk-cat ($kind) reads other bytes"
done
echo "examples/vmdk-cat.c builds against the packaged libvmdkit-dev (shared and static) and reads the same bytes"

# python3-vmdkit: /usr/bin/python3 imports the extracted module (PYTHONPATH
# on its dist-packages) with the extracted libvmdkit0, and reads an image
# qemu-img wrote as the bytes qemu-img reads.
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$tmp/expect.raw" "$tmp/q.vmdk"
qemu-img convert -f vmdk -O raw "$tmp/q.vmdk" "$tmp/q.raw"
(cd "$tmp" && LD_LIBRARY_PATH=$libdir PYTHONPATH=${pyext%/*} "$py" -s -c '
import sys, vmdkit
assert vmdkit.__file__ == sys.argv[1], vmdkit.__file__
libs = {l.split()[-1] for l in open("/proc/self/maps") if "libvmdkit.so" in l}
assert libs and all(l.startswith(sys.argv[2] + "/") for l in libs), libs
with vmdkit.open(sys.argv[3]) as d, open(sys.argv[4], "wb") as out:
    assert d.size == 64 << 20, d.size
    while b := d.read(1 << 20):
        out.write(b)' "$pyext" "$libdir" "$tmp/q.vmdk" "$tmp/py.raw") ||
  fail "$py does not import the packaged module with the packaged libvmdkit0, or it does not read q.vmdk"
cmp "$tmp/q.raw" "$tmp/py.raw" || fail "the packaged Python module reads other bytes than qemu-img"
echo "$py imports the packaged module /$pymod and reads qemu-img's bytes"
echo "ok: ${#deb[@]} packages in $out, each with exactly its files and dependencies; nothing was installed"
