#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# NBD URIs as sources (libnbd): convert from an nbdkit `file` server and from
# the vmdkit plugin; the server's block status makes holes and zeros stay
# unallocated; compare and info take URIs too.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need nbdkit qemu-img python3
cd "$tmpdir"
M=$((1024 * 1024))
python3 - src.raw <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(64 << 20)
    for off in (0, 5 << 20, (40 << 20) + 12345, (64 << 20) - 4096):
        f.seek(off)
        f.write(os.urandom(4096))
PY
run "$VMDKIT" info nbd+unix:///?socket=/nonexistent/sock
[[ $rc -ne 0 ]] || die "info of a dead URI succeeded"
one_error_line "dead NBD URI"
grep -q "vmdkit was built without libnbd" err && { echo "built without libnbd"; exit 77; }

# An nbdkit file server: the export is the raw file.
nbdkit -U - -r file src.raw --run "
  '$VMDKIT' info --output=json \"\$uri\" >info.json &&
  '$VMDKIT' convert -O vmdk \"\$uri\" out.vmdk &&
  '$VMDKIT' compare \"\$uri\" out.vmdk" || die "convert from an nbdkit file server failed"
[[ $(json_get info.json virtual-size) -eq $((64 * M)) ]] || die "info over NBD: wrong size"
expect_rc 0 qemu-img compare -f raw -F vmdk src.raw out.vmdk
expect_rc 0 qemu-img check out.vmdk
"$VMDKIT" check --output=json out.vmdk >check.json
grains=$(json_get check.json allocated-clusters)
((grains == 4)) || die "convert from NBD allocated $grains grains, expected 4 (holes must be skipped)"

# The vmdkit plugin serving a VMDK, converted to raw (in a sanitizer build,
# only with an ASan runtime for nbdkit to preload: run_nbdkit).
if [[ -f $BUILD_DIR/nbdkit-vmdkit-plugin.so ]] &&
  [[ ${VMDKIT_SANITIZED:-0} != 1 || -f ${ASAN_RUNTIME:-} ]]; then
  run_nbdkit -U - -r "$BUILD_DIR/nbdkit-vmdkit-plugin.so" file=out.vmdk --run "
    '$VMDKIT' convert -O raw \"\$uri\" back.raw" || die "convert from the vmdkit plugin failed"
  same src.raw back.raw
fi
# A URI is read-only: writes are refused with a clear error.
nbdkit -U - file src.raw --run "
  printf x | '$VMDKIT' write \"\$uri\" 0 2>err.txt; echo \$? >rc.txt"
[[ $(cat rc.txt) -ne 0 ]] && grep -q "read-only" err.txt || die "write to a URI: $(cat err.txt)"
echo "nbd-source: all checks passed"
