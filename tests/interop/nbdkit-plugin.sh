#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The nbdkit plugin with real clients: nbdinfo (size, --map), nbdcopy to a
# raw file, qemu-io writing over NBD (then vmdkit check and qemu-img compare
# against a raw mirror), eight parallel readers, what read-only kinds
# advertise, and confinement on by default.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need nbdkit nbdinfo nbdcopy qemu-io qemu-img python3
plugin=$BUILD_DIR/nbdkit-vmdkit-plugin.so
[[ -f $plugin ]] || { echo "plugin not built (nbdkit-plugin-dev missing)"; exit 77; }
cd "$tmpdir"
M=$((1024 * 1024))
serve() { # IMAGE [ARGS...] -- COMMAND: run COMMAND with $uri and $sock set
  local img=$1
  shift
  local args=()
  while [[ $1 != -- ]]; do args+=("$1"); shift; done
  shift
  run_nbdkit -U - "${args[@]}" "$plugin" file="$img" --run "$*"
}

# An image with data, zeros and holes; qemu writes it, so the reference is
# independent of vmdkit.
qemu-img create -q -f vmdk img.vmdk 96M
qemu-io -c 'write -P 0x41 0 1M' -c 'write -P 0x42 33M 65536' -c 'write -P 0x43 95M 1000' img.vmdk >/dev/null
qemu-img convert -O raw img.vmdk img.raw

# Size and map.
serve img.vmdk -r -- 'nbdinfo --json "$uri"' >info.json
[[ $(json_get info.json exports 0 export-size) -eq $((96 * M)) ]] || die "nbdinfo size: $(cat info.json)"
serve img.vmdk -r -- 'nbdinfo --map --json "$uri"' >map.json
python3 - map.json <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))
data = [(r["offset"], r["length"]) for r in runs if not r["type"] & 1]
want = [(0, 1 << 20), (33 << 20, 65536), (95 << 20, 65536)]
if data != want:
    print("FAIL: data runs %r, expected %r" % (data, want), file=sys.stderr)
    sys.exit(1)
PY

# nbdcopy to a raw file: the same bytes.
serve img.vmdk -r -- 'nbdcopy "$uri" copy.raw'
same img.raw copy.raw

# Eight parallel readers, each the whole disk.
serve img.vmdk -r -- 'for i in 1 2 3 4 5 6 7 8; do nbdcopy "$uri" par$i.raw & done; wait'
for i in 1 2 3 4 5 6 7 8; do same img.raw par$i.raw; done

# qemu-io writes over NBD (partial grains, zeros, a new table), mirrored.
cp img.raw mirror.raw
ops=(-c 'write -P 0x51 100 200' -c 'write -P 0x52 40M 300000' -c 'write -z 0 4096'
  -c 'write -P 0x53 70M 65536' -c 'discard 33M 65536' -c 'flush')
serve img.vmdk -- "qemu-io -f raw \"\$uri\" $(printf "%q " "${ops[@]}")" >/dev/null
qemu-io -f raw mirror.raw "${ops[@]}" >/dev/null
expect_rc 0 "$VMDKIT" check img.vmdk
expect_rc 0 qemu-img check img.vmdk
expect_rc 0 qemu-img compare -f raw -F vmdk mirror.raw img.vmdk

# A stream image is read-only over NBD, and reads the same.
"$VMDKIT" convert -O vmdk -o subformat=streamOptimized mirror.raw s.vmdk
serve s.vmdk -- 'nbdinfo "$uri"' >s.info
grep -Eq 'is_read_only: true|can_write: false' s.info || die "stream advertises writes: $(cat s.info)"
serve s.vmdk -- 'nbdcopy "$uri" s.raw'
same mirror.raw s.raw

# Confinement is on by default: an extent outside the folder is refused.
mkdir -p srv outside
truncate -s 1M outside/data.bin
printf '# Disk DescriptorFile\nversion=1\nCID=11111111\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "../outside/data.bin" 0\n' >srv/esc.vmdk
run run_nbdkit -U - "$plugin" file=srv/esc.vmdk --run 'nbdinfo "$uri"'
[[ $rc -ne 0 ]] || die "nbdkit served an extent outside the image's folder"
grep -q "outside the image's folder" "$tmpdir/err" || die "confine error: $(cat "$tmpdir/err")"
run_nbdkit -U - -r "$plugin" file=srv/esc.vmdk confine=false --run 'nbdinfo "$uri"' >/dev/null ||
  die "confine=false did not lift it"
echo "nbdkit-plugin: all checks passed"
