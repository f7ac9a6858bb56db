#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The ABI of libvmdkit.so against the baseline abi/libvmdkit.abi (abidw's
# XML, made from the types reachable from include/vmdkit.h).
#
#   abi.sh SRC_DIR LIBRARY           compare; exit 1 on any difference
#   abi.sh --update SRC_DIR LIBRARY  record LIBRARY's ABI as the baseline
#                                    (`make abi-update`: on purpose only)
#
# abidiff's exit status is a bit set: 1 = error, 2 = usage, 4 = the ABI
# changed (a type's layout too), 8 = it certainly changed incompatibly (a
# function removed).  An
# incompatible change needs a new SONAME (VMDKIT_VERSION_MAJOR in
# vmdkit.h) and a new baseline; a compatible one (a function added, in a
# new symbol-version node of lib/libvmdkit.map) needs a new baseline.
# Either way the test fails until the baseline is updated on purpose, so
# no change to the ABI goes by unnoticed.  Needs a library with debug
# information (RelWithDebInfo, the default).
set -euo pipefail
update=0
if [[ ${1:-} == --update ]]; then update=1; shift; fi
src=$1 lib=$2
baseline=$src/abi/libvmdkit.abi
command -v abidw >/dev/null && command -v abidiff >/dev/null ||
  { echo "SKIP: abigail-tools (abidw, abidiff) not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Locations and build paths are left out so the baseline does not depend
# on where the tree was cloned.
abidw --headers-dir "$src/include" --drop-private-types --no-show-locs \
  --no-corpus-path --no-comp-dir-path --out-file "$tmp/now.abi" "$lib"
if ((update)); then
  mkdir -p "$(dirname "$baseline")"
  cp "$tmp/now.abi" "$baseline"
  echo "abi: baseline $baseline updated from $lib"
  exit 0
fi
[[ -f $baseline ]] || { echo "FAIL: no baseline $baseline (make abi-update)" >&2; exit 1; }

# The ABI itself must be the library's: a baseline that lost its
# functions would compare equal to anything with few functions.
n=$(grep -c '<elf-symbol name=.vmdk_' "$baseline" || true)
((n >= 20)) || { echo "FAIL: the baseline lists only $n vmdk_ functions" >&2; exit 1; }

set +e
abidiff "$baseline" "$tmp/now.abi" >"$tmp/report" 2>&1
rc=$?
set -e
cat "$tmp/report"
if ((rc == 0)); then
  echo "ok: the ABI of $(basename "$lib") equals the baseline ($n functions)"
  exit 0
fi
if ((rc > 15 || rc & 3)); then
  echo "FAIL: abidiff failed (exit $rc): no comparison was made" >&2
elif ((rc & 8)); then
  echo "FAIL: incompatible ABI change: callers built against the baseline" \
    "break.  Undo it, or bump VMDKIT_VERSION_MAJOR (a new SONAME) and run" \
    "make abi-update." >&2
elif ((rc & 4)); then
  echo "FAIL: the ABI changed (see above).  Functions only added: put them in" \
    "a new node of lib/libvmdkit.map.  A type, size or signature changed:" \
    "callers built against the baseline break; undo it or bump" \
    "VMDKIT_VERSION_MAJOR.  Then run make abi-update." >&2
fi
exit 1
