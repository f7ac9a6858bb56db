#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `vmdkit ova create` against the pipeline people use today, on the same
# input in the same run:
#
#   qemu-img convert -O vmdk -o subformat=streamOptimized IN DISK.vmdk
#   + an OVF written from a template (the disk's size filled in)
#   + sha256sum of the OVF and the disk into the .mf
#   + tar -cf OUT.ova --format=ustar OVF MF DISK
#
#   bench/ova.sh [--rounds N] [--size-mib MiB] [--workdir DIR] [--keep]
#                [--out FILE]
#
# The input is bench/workload.py's raw disk (an ext4 file system full of
# real files, about half of it data; default 2048 MiB).  Rounds alternate
# the two (default 3); the medians and their ratio (vmdkit / pipeline) go
# to stdout as a markdown table and to bench/results/ova-latest.md (or
# --out FILE).  Both outputs are verified in the same run: `tar x`,
# `sha256sum -c` of the manifest, `qemu-img compare` of the extracted disk
# with the input.  Environment: VMDKIT (default build/vmdkit).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
rounds=3 size_mib=2048 workdir="" keep=0 out=$here/results/ova-latest.md
while (($#)); do
  case $1 in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  --rounds) rounds=$2; shift 2 ;;
  --size-mib) size_mib=$2; shift 2 ;;
  --workdir) workdir=$2; shift 2 ;;
  --keep) keep=1; shift ;;
  --out) out=$2; shift 2 ;;
  *) echo "bench/ova.sh: unknown argument '$1' (try --help)" >&2; exit 1 ;;
  esac
done
VMDKIT=${VMDKIT:-$root/build/vmdkit}
for t in qemu-img sha256sum tar python3 mkfs.ext4; do
  command -v "$t" >/dev/null || { echo "bench/ova.sh: $t is not installed" >&2; exit 1; }
done
[[ -x $VMDKIT ]] || { echo "bench/ova.sh: VMDKIT=$VMDKIT is not executable" >&2; exit 1; }

if [[ -z $workdir ]]; then
  workdir=$(mktemp -d "${TMPDIR:-/tmp}/vmdkit-bench-ova.XXXXXX")
  [[ $keep == 1 ]] || trap 'rm -rf "$workdir"' EXIT
fi
mkdir -p "$workdir"
in=$workdir/disk-$size_mib.raw
if [[ ! -f $in ]]; then
  echo "bench/ova.sh: building the $size_mib MiB workload" >&2
  rm -rf "$workdir/tree"
  python3 "$here/workload.py" --out "$in" --size-bytes $((size_mib << 20)) \
    --tree "$workdir/tree" >&2
  rm -rf "$workdir/tree"
fi
capacity=$(stat -c %s "$in")

# The pipeline: what a build script does with qemu-img, sha256sum and tar.
pipeline() {
  local d=$workdir/pipe
  rm -rf "$d" "$workdir/pipe.ova"
  mkdir "$d"
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$in" "$d/app-disk1.vmdk"
  local size
  size=$(stat -c %s "$d/app-disk1.vmdk")
  cat >"$d/app.ovf" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="app-disk1.vmdk" ovf:id="file1" ovf:size="$size"/></References>
  <DiskSection><Info>Virtual disk information</Info>
    <Disk ovf:capacity="$capacity" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="app"><Info>A virtual machine</Info>
    <VirtualHardwareSection><Info>Virtual hardware requirements</Info>
      <Item><rasd:ElementName>Hard disk 1</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
EOF
  (cd "$d" && sha256sum app.ovf app-disk1.vmdk |
    sed -E 's/^([0-9a-f]{64})  (.*)$/SHA256(\2)= \1/' >app.mf)
  tar -cf "$workdir/pipe.ova" --format=ustar -C "$d" app.ovf app.mf app-disk1.vmdk
  rm -rf "$d"
}

ours() {
  rm -f "$workdir/app.ova"
  "$VMDKIT" ova create "$workdir/app.ova" --disk "$in" >/dev/null
}

# seconds CMD...: wall-clock seconds of CMD, synced before the clock stops
# (both outputs are then on the disk, as the rename of ova create is).
seconds() {
  sync
  local t0 t1
  t0=$(date +%s.%N)
  "$@"
  sync
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}' 
}

median() {
  sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

verify() { # verify OVA NAME
  local x=$workdir/verify
  rm -rf "$x"
  mkdir "$x"
  tar -xf "$1" -C "$x"
  (cd "$x" && sed -E 's/^SHA256\(([^)]*)\)= ([0-9a-f]{64})$/\2  \1/' "$2.mf" | sha256sum --quiet -c) ||
    { echo "bench/ova.sh: $1: sha256sum -c failed" >&2; exit 1; }
  qemu-img compare -q -f raw "$in" "$x/$2-disk1.vmdk" ||
    { echo "bench/ova.sh: $1: the disk differs from the input" >&2; exit 1; }
  rm -rf "$x"
}

: >"$workdir/t-ours"
: >"$workdir/t-pipe"
for ((r = 1; r <= rounds; r++)); do
  echo "bench/ova.sh: round $r of $rounds" >&2
  seconds ours >>"$workdir/t-ours"
  seconds pipeline >>"$workdir/t-pipe"
done
verify "$workdir/app.ova" app
verify "$workdir/pipe.ova" app
t_ours=$(median <"$workdir/t-ours")
t_pipe=$(median <"$workdir/t-pipe")
ratio=$(awk -v a="$t_ours" -v b="$t_pipe" 'BEGIN {print a / b}')
s_ours=$(stat -c %s "$workdir/app.ova")
s_pipe=$(stat -c %s "$workdir/pipe.ova")

{
  echo "# vmdkit ova create vs qemu-img + OVF + sha256sum + tar"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) CPUs, load average $(cut -d' ' -f1 /proc/loadavg)," \
    "input: a $size_mib MiB raw ext4 image (bench/workload.py), $rounds rounds, medians;" \
    "both OVAs verified (sha256sum -c, qemu-img compare)."
  echo
  echo "| | seconds | OVA bytes |"
  echo "| --- | ---: | ---: |"
  printf '| vmdkit ova create | %.2f | %s |\n' "$t_ours" "$s_ours"
  printf '| qemu-img convert + OVF + sha256sum + tar | %.2f | %s |\n' "$t_pipe" "$s_pipe"
  printf '| ratio (vmdkit / pipeline) | %.2f | |\n' "$ratio"
  echo
  echo "Rounds (s): vmdkit $(tr '\n' ' ' <"$workdir/t-ours"); pipeline $(tr '\n' ' ' <"$workdir/t-pipe")"
} | tee "$out"
