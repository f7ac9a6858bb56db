#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The shared library exports exactly the public functions: the set of
# VMDK_API functions in include/vmdkit.h, the set lib/libvmdkit.map names
# and the set of dynamic symbols libvmdkit.so defines are the same, every
# one with a symbol version, and nothing else (no internal function, no
# variable) is exported.  Its SONAME is libvmdkit.so.MAJOR with MAJOR from
# vmdkit.h, and vmdk_version() answers the header's version.
#
#   symbols.sh SRC_DIR LIBRARY
set -euo pipefail
src=$1 lib=$2
source "$src/tests/package/header-functions.sh"
for t in nm readelf perl; do
  command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

header_functions "$src/include/vmdkit.h" >"$tmp/header"
n=$(wc -l <"$tmp/header")
((n >= 20)) || fail "only $n functions found in vmdkit.h: the parser is broken"

# The version script: names between "global:" and "local:".
sed -n '/global:/,/local:/p' "$src/lib/libvmdkit.map" |
  grep -o '^ *vmdk_[A-Za-z0-9_]* *;' | tr -d ' ;' | LC_ALL=C sort -u >"$tmp/map"
diff -u "$tmp/header" "$tmp/map" >"$tmp/d1" ||
  { cat "$tmp/d1"; fail "lib/libvmdkit.map and include/vmdkit.h disagree (- header, + map)"; }

# What the library really exports: every defined dynamic symbol.
nm -D --defined-only --with-symbol-versions "$lib" >"$tmp/nm"
awk '$2 != "A" { print $3 }' "$tmp/nm" >"$tmp/exported"
grep -v '@@VMDKIT_' "$tmp/exported" >"$tmp/unversioned" &&
  { cat "$tmp/unversioned"; fail "symbols exported without a VMDKIT_ version"; }
sed 's/@.*//' "$tmp/exported" | LC_ALL=C sort -u >"$tmp/names"
diff -u "$tmp/header" "$tmp/names" >"$tmp/d2" ||
  { cat "$tmp/d2"; fail "$lib exports other symbols than vmdkit.h declares (- header, + library)"; }
awk '$2 != "A" && $2 != "T" { print }' "$tmp/nm" >"$tmp/nonfunc"
[[ ! -s $tmp/nonfunc ]] || { cat "$tmp/nonfunc"; fail "exported symbols that are not functions"; }

major=$(sed -n 's/^#define VMDKIT_VERSION_MAJOR \([0-9]*\)$/\1/p' "$src/include/vmdkit.h")
minor=$(sed -n 's/^#define VMDKIT_VERSION_MINOR \([0-9]*\)$/\1/p' "$src/include/vmdkit.h")
micro=$(sed -n 's/^#define VMDKIT_VERSION_MICRO \([0-9]*\)$/\1/p' "$src/include/vmdkit.h")
grep -q "^#define VMDKIT_VERSION_STRING \"$major\.$minor\.$micro\"\$" "$src/include/vmdkit.h" ||
  fail "VMDKIT_VERSION_STRING is not $major.$minor.$micro"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libvmdkit.so.$major" ]] || fail "SONAME is '$soname', expected libvmdkit.so.$major"

# vmdk_version() of the built library is the header's version.
cat >"$tmp/v.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "vmdkit.h"
int main(void) {
  printf("%s\n", vmdk_version());
  return strcmp(vmdk_version(), VMDKIT_VERSION_STRING) != 0;
}
C
cc -I"$src/include" -o "$tmp/v" "$tmp/v.c" "$lib" || fail "cannot link against $lib"
got=$(LD_LIBRARY_PATH="$(dirname "$lib")" "$tmp/v") || fail "vmdk_version() is '$got', the header says $major.$minor.$micro"
echo "ok: $n functions, all versioned (VMDKIT_*), nothing else exported; SONAME $soname; version $got"
