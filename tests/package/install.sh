#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Proof from the outside: install the build into a staging folder
# (`make install DESTDIR=...`), then build examples/ against the *installed*
# library only -- with `pkg-config --cflags --libs vmdkit` (shared and
# static) and with `find_package(vmdkit)` -- run them and compare what they
# read and write with qemu-img.  The installed CLI, nbdkit plugin and Python
# module are run from the staging folder too; make uninstall empties it.
#
#   install.sh SRC_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd) build=$(cd "$2" && pwd)
for t in qemu-img qemu-io pkg-config cc make cmake readelf; do
  command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
stage=$tmp/stage

# ---- install ------------------------------------------------------------
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$build/CMakeCache.txt")
[[ -n $prefix && -n $libdir ]] || fail "no install prefix/libdir in $build/CMakeCache.txt"
[[ $libdir == /* ]] || libdir=$prefix/$libdir
make -s -C "$build" install DESTDIR="$stage" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "make install DESTDIR=$stage failed"; }
root=$stage$prefix
slib=$stage$libdir

# Everything a user of the library needs is there, and nothing of the
# build tree leaks into it.
for f in bin/vmdkit include/vmdkit.h; do
  [[ -f $root/$f ]] || fail "not installed: $prefix/$f"
done
for f in libvmdkit.a libvmdkit.so libvmdkit.so.0 pkgconfig/vmdkit.pc \
  cmake/vmdkit/vmdkitConfig.cmake cmake/vmdkit/vmdkitConfigVersion.cmake \
  cmake/vmdkit/vmdkitTargets.cmake; do
  [[ -e $slib/$f ]] || fail "not installed: $libdir/$f"
done
[[ $(readlink "$slib/libvmdkit.so") == libvmdkit.so.0 ]] || fail "libvmdkit.so does not point at libvmdkit.so.0"
[[ -f $slib/$(readlink "$slib/libvmdkit.so.0") ]] || fail "libvmdkit.so.0 is a dangling link"
cmp -s "$src/include/vmdkit.h" "$root/include/vmdkit.h" || fail "the installed vmdkit.h differs from include/vmdkit.h"
# (Text files: pc, CMake package, man pages, completion.  Binaries keep
# the build folder in their debug information, as any -g build does, but
# not in a RUNPATH.)
if grep -rlIF "$build" "$stage" >"$tmp/leaks"; then
  cat "$tmp/leaks"; fail "installed files name the build folder $build"
fi
while read -r f; do
  if readelf -d "$f" 2>/dev/null | grep -E 'RPATH|RUNPATH' | grep -qF "$build"; then
    fail "$f has a RUNPATH into the build folder: $(readelf -d "$f" | grep -E 'RPATH|RUNPATH')"
  fi
done < <(find "$stage" -type f \( -name '*.so*' -o -path '*/bin/*' \))
# The man pages and the completion, once the tree has them.
if [[ -f $src/docs/man/CMakeLists.txt ]]; then
  for f in man1/vmdkit.1 man1/nbdkit-vmdkit-plugin.1 man3/vmdkit.3; do
    [[ -f $root/share/man/$f ]] || fail "not installed: $prefix/share/man/$f"
  done
fi
if [[ -f $src/completion/CMakeLists.txt ]]; then
  [[ -f $root/share/bash-completion/completions/vmdkit ]] ||
    fail "not installed: $prefix/share/bash-completion/completions/vmdkit"
fi

# ---- pkg-config against the staging folder --------------------------------
# PKG_CONFIG_SYSROOT_DIR puts $stage in front of the -I/-L paths, as for
# any staged or cross install; the source tree is never on the command line.
export PKG_CONFIG_PATH=$slib/pkgconfig PKG_CONFIG_LIBDIR=$slib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage
pkg-config --exists vmdkit || fail "pkg-config does not find vmdkit in $slib/pkgconfig"
ver=$(pkg-config --modversion vmdkit)
hver=$(sed -n 's/^#define VMDKIT_VERSION_STRING "\(.*\)"/\1/p' "$src/include/vmdkit.h")
[[ $ver == "$hver" ]] || fail "vmdkit.pc says version $ver, vmdkit.h $hver"
cflags=$(pkg-config --cflags vmdkit) libs=$(pkg-config --libs vmdkit)
echo "pkg-config --cflags --libs vmdkit: $cflags $libs"
[[ $cflags == *"-I$root/include"* || $root/include == /usr/include ]] || fail "--cflags '$cflags' does not name the staged include folder"
[[ $libs == *-lvmdkit* ]] || fail "--libs '$libs' has no -lvmdkit"

mkdir "$tmp/shared" "$tmp/static"
cp "$src"/examples/*.c "$src"/examples/Makefile "$tmp/shared/"
cp "$src"/examples/*.c "$src"/examples/Makefile "$tmp/static/"
make -s -C "$tmp/shared" CFLAGS='-O2 -Wall -Wextra -Werror' >"$tmp/make.log" 2>&1 ||
  { cat "$tmp/make.log"; fail "examples do not build with pkg-config against the installed library"; }
make -s -C "$tmp/static" STATIC=1 CFLAGS='-O2 -Wall -Wextra -Werror' >"$tmp/make.log" 2>&1 ||
  { cat "$tmp/make.log"; fail "examples do not build against the installed libvmdkit.a"; }
readelf -d "$tmp/shared/vmdk-cat" | grep -q 'NEEDED.*\[libvmdkit\.so\.0\]' || fail "vmdk-cat is not linked to libvmdkit.so.0"
! readelf -d "$tmp/static/vmdk-cat" | grep -q 'libvmdkit' || fail "the static vmdk-cat still needs libvmdkit.so"

# ---- find_package(vmdkit) against the staging folder ----------------------
cmake -S "$src/examples" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$root" \
  -DCMAKE_FIND_ROOT_PATH="$stage" -DCMAKE_C_FLAGS='-Wall -Wextra -Werror' >"$tmp/cmake.log" 2>&1 &&
  cmake --build "$tmp/cmake" >>"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log"; fail "examples do not build with find_package(vmdkit)"; }
grep -q "vmdkit_DIR:PATH=$slib/cmake/vmdkit" "$tmp/cmake/CMakeCache.txt" ||
  fail "find_package(vmdkit) did not use the staged package: $(grep vmdkit_DIR "$tmp/cmake/CMakeCache.txt")"
cmake -S "$src/examples" -B "$tmp/cmake-static" -DCMAKE_PREFIX_PATH="$root" -DVMDKIT_STATIC=ON \
  -DCMAKE_C_FLAGS='-Wall -Wextra -Werror' >"$tmp/cmake.log" 2>&1 &&
  cmake --build "$tmp/cmake-static" >>"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log"; fail "examples do not build with find_package(vmdkit) and vmdkit::vmdkit-static"; }
! readelf -d "$tmp/cmake-static/vmdk-make" | grep -q 'libvmdkit' || fail "vmdkit::vmdkit-static links libvmdkit.so"

# The shared programs load the staged library, not one from elsewhere.
# (grep reads all of it: with pipefail, grep -q would end the pipeline
# early and ldd, killed by SIGPIPE, would fail it now and then)
export LD_LIBRARY_PATH=$slib
ldd "$tmp/shared/vmdk-cat" | grep "libvmdkit.so.0 => $slib/" >/dev/null || { ldd "$tmp/shared/vmdk-cat"; fail "vmdk-cat does not load the staged libvmdkit.so.0"; }

# ---- run them, compare with qemu-img ----------------------------------------
# vmdk-make: create, write 3 MiB of data at 1 MiB + 512 in a 64 MiB disk;
# qemu-img reads it back as the same bytes.
head -c $((3 * 1024 * 1024)) /dev/urandom >"$tmp/data"
truncate -s 64M "$tmp/expect.raw"
dd if="$tmp/data" of="$tmp/expect.raw" bs=512 seek=$((2048 + 1)) conv=notrunc status=none
for kind in shared static cmake cmake-static; do
  for sub in monolithicSparse streamOptimized twoGbMaxExtentSparse monolithicFlat; do
    img=$tmp/$kind-$sub.vmdk
    "$tmp/$kind/vmdk-make" "$img" "$sub" $((64 * 1024 * 1024)) $((1024 * 1024 + 512)) <"$tmp/data" ||
      fail "$kind vmdk-make $sub failed"
    qemu-img convert -f vmdk -O raw "$img" "$tmp/got.raw"
    cmp "$tmp/expect.raw" "$tmp/got.raw" || fail "$kind vmdk-make $sub: qemu-img reads other bytes"
    qemu-img check -q -f vmdk "$img" || fail "$kind vmdk-make $sub: qemu-img check complains"
  done
done

# vmdk-cat: an image qemu-img made and wrote, read to stdout; the bytes are
# qemu-img convert's.
qemu-img create -q -f vmdk -o subformat=monolithicSparse "$tmp/q.vmdk" 40M
qemu-io -f vmdk -c 'write -P 0x5a 3M 1M' -c 'write -P 0x17 20971000 4096' -c 'write -z 30M 64k' \
  "$tmp/q.vmdk" >/dev/null
qemu-img create -q -f vmdk -b q.vmdk -F vmdk "$tmp/child.vmdk"
qemu-io -f vmdk -c 'write -P 0xc3 3584k 1M' "$tmp/child.vmdk" >/dev/null
for img in q child; do
  qemu-img convert -f vmdk -O raw "$tmp/$img.vmdk" "$tmp/$img.raw"
  for kind in shared static cmake cmake-static; do
    "$tmp/$kind/vmdk-cat" "$tmp/$img.vmdk" >"$tmp/cat.raw" || fail "$kind vmdk-cat $img.vmdk failed"
    cmp "$tmp/$img.raw" "$tmp/cat.raw" || fail "$kind vmdk-cat $img.vmdk: not qemu-img's bytes"
  done
done
# The README's library example, as printed there: builds against the
# installed library and writes what qemu-img then reads.
awk '/^```c$/ {on = 1; next} /^```$/ {if (on) exit} on' "$src/README.md" >"$tmp/hello.c"
grep -q vmdk_create "$tmp/hello.c" || fail "no C example found in README.md"
cc -Wall -Wextra -Werror -o "$tmp/hello" "$tmp/hello.c" $(pkg-config --cflags --libs vmdkit) ||
  fail "README.md's example does not build against the installed library"
(cd "$tmp" && rm -f disk.vmdk && ./hello) || fail "README.md's example failed"
qemu-img convert -f vmdk -O raw "$tmp/disk.vmdk" "$tmp/hello.raw"
[[ $(stat -c %s "$tmp/hello.raw") == 1073741824 ]] && [[ $(dd if="$tmp/hello.raw" bs=1 skip=4096 count=5 status=none) == hello ]] ||
  fail "README.md's example: qemu-img does not read 'hello' at 4096 of a 1 GiB disk"
rm -f "$tmp/hello.raw"

# A bad argument: one line naming the file, non-zero exit.
set +e
"$tmp/shared/vmdk-cat" "$tmp/missing.vmdk" >/dev/null 2>"$tmp/err"; rc=$?
set -e
((rc != 0)) && [[ $(wc -l <"$tmp/err") == 1 ]] && grep -q missing.vmdk "$tmp/err" ||
  { cat "$tmp/err"; fail "vmdk-cat of a missing file: exit $rc"; }

# ---- the installed CLI and plugin, from the staging folder -------------------
unset LD_LIBRARY_PATH
"$root/bin/vmdkit" --version | grep -q "vmdkit version $hver (library $hver)" ||
  fail "the installed CLI does not run: $("$root/bin/vmdkit" --version 2>&1)"
LD_LIBRARY_PATH=$slib "$root/bin/vmdkit" convert -O raw "$tmp/child.vmdk" "$tmp/cli.raw"
cmp "$tmp/child.raw" "$tmp/cli.raw" || fail "the installed CLI converts other bytes than qemu-img"
plugin=$(find "$stage" -name nbdkit-vmdkit-plugin.so | head -1)
if [[ -n $plugin ]] && command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null &&
  [[ ${VMDKIT_SANITIZED:-0} != 1 ]]; then
  LD_LIBRARY_PATH=$slib nbdkit -U - "$plugin" file="$tmp/child.vmdk" \
    --run "nbdcopy \"\$uri\" $tmp/nbd.raw"
  cmp "$tmp/child.raw" "$tmp/nbd.raw" || fail "the installed plugin serves other bytes than qemu-img reads"
fi

# ---- the Python module, as /usr/bin/python3 imports it ----------------------
# The build installs /usr/bin/python3's module (python/CMakeLists.txt: the
# first interpreter of VMDKIT_PYTHON, by default /usr/bin/python3) into the
# first of that interpreter's site folders under the prefix (Debian,
# /usr/local: /usr/local/lib/python3.X/dist-packages).  Imported from the
# staging folder (PYTHONPATH), it must load the staged libvmdkit.so.0 (by
# its RUNPATH outside the linker's folders) and read qemu-img's bytes.
pymods=$(find "$stage" \( -name 'vmdkit.*.so' -o -name vmdkit.so \) -print)
syspy=/usr/bin/python3
firstpy=$(sed -n 's/^VMDKIT_PYTHON:[A-Z]*=//p' "$build/CMakeCache.txt")
firstpy=${firstpy%%;*}
if [[ -f $src/python/CMakeLists.txt && -x $syspy && ${firstpy:-$syspy} == "$syspy" ]] &&
  pytag=$("$syspy" -c 'import sys; print(sys.implementation.cache_tag)') &&
  [[ -d $build/python/$pytag-usr ]]; then
  read -r pysuffix pydir < <("$syspy" -c '
import site, sys, sysconfig
p = sys.argv[1].rstrip("/")
d = [x for x in site.getsitepackages() + [site.getusersitepackages()] if x.startswith(p + "/lib/")]
print(sysconfig.get_config_var("EXT_SUFFIX"), d[0] if d else "")' "$prefix")
  [[ $pymods == "$stage"*/vmdkit"$pysuffix" && $pymods != *$'\n'* ]] ||
    fail "not one installed Python module vmdkit$pysuffix: '${pymods:-none}'"
  pymod=${pymods#"$stage"}
  if [[ -n $pydir ]]; then
    [[ $pymod == "$pydir/vmdkit$pysuffix" ]] ||
      fail "the Python module is installed as $pymod, not into $pydir (on $syspy's sys.path for $prefix)"
  fi
  if [[ ${VMDKIT_SANITIZED:-0} != 1 ]]; then
    (cd "$tmp" && env -u LD_LIBRARY_PATH PYTHONPATH="$stage${pymod%/*}" "$syspy" -s -c '
import sys, vmdkit
assert vmdkit.__file__ == sys.argv[1], vmdkit.__file__
libs = {l.split()[-1] for l in open("/proc/self/maps") if "libvmdkit.so" in l}
assert libs and all(l.startswith(sys.argv[2] + "/") for l in libs), libs
with vmdkit.open(sys.argv[3]) as d, open(sys.argv[4], "wb") as out:
    while b := d.read(1 << 20):
        out.write(b)' "$stage$pymod" "$slib" "$tmp/child.vmdk" "$tmp/py.raw") ||
      fail "$syspy does not import the installed module $pymod (with the staged libvmdkit.so.0) or read child.vmdk"
    cmp "$tmp/child.raw" "$tmp/py.raw" || fail "the installed Python module reads other bytes than qemu-img"
    echo "python: $syspy imports the installed $pymod; it reads qemu-img's bytes"
  fi
elif [[ -n $pymods ]]; then
  echo "python: installed $pymods (not /usr/bin/python3's: not imported here)"
fi

# ---- make uninstall ------------------------------------------------------------
# With the same DESTDIR it removes every file the install put there, the
# Python module included.  (CMake's manifest names the files without
# DESTDIR: not tried when one of them exists outside the staging folder --
# a real install there that a broken uninstall would remove.)
while read -r f; do
  [[ -e $f || -L $f ]] && { echo "uninstall: not tried, $f exists (installed for real)"; break; }
done <"$build/install_manifest.txt" >"$tmp/real"
if [[ ! -s $tmp/real ]]; then
  make -s -C "$src" uninstall BUILD="$build" DESTDIR="$stage" >"$tmp/uninstall.log" 2>&1 ||
    { cat "$tmp/uninstall.log"; fail "make uninstall DESTDIR=$stage failed"; }
  if find "$stage" ! -type d | grep . >"$tmp/left"; then
    cat "$tmp/left"; fail "make uninstall DESTDIR=$stage left files behind"
  fi
else
  cat "$tmp/real"
fi
echo "ok: installed into $stage$prefix; examples built with pkg-config (shared, static) and find_package, their reads and writes match qemu-img's"
