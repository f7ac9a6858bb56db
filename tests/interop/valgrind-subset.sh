#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A subset of the CLI under valgrind (memcheck): every byte read must be
# initialised and every allocation freed, on the main paths of the main
# subformats (sparse, stream, flat, a chain).  Skipped in the sanitizer build
# (ASan and valgrind do not mix) and where valgrind is missing.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need valgrind
[[ ${VMDKIT_SANITIZED:-0} == 1 ]] && { echo "sanitizer build: valgrind skipped"; exit 77; }
cd "$tmpdir"
vg() {
  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    "$VMDKIT" "$@" || die "valgrind: vmdkit $* failed (exit $?)"
}
head -c 300000 /dev/urandom >data
vg create -q s.vmdk 8M
vg write s.vmdk 70001 <data
vg read s.vmdk 70001 300000 >back
same data back
vg convert -O vmdk -o subformat=streamOptimized s.vmdk st.vmdk
vg convert -O vmdk -o subformat=monolithicFlat st.vmdk f.vmdk
vg compare s.vmdk f.vmdk >/dev/null
vg create -q -b s.vmdk child.vmdk
printf 'child' | vg write child.vmdk 100
vg info --backing-chain child.vmdk >/dev/null
vg map --output=json child.vmdk >/dev/null
vg check child.vmdk >/dev/null
vg commit -q child.vmdk
vg check st.vmdk >/dev/null
echo "valgrind-subset: no memcheck errors"
