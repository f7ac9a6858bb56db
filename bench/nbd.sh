#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The nbdkit plugin against qemu-nbd on the same image, same run: nbdcopy of
# the whole export to /dev/null, alternating, ROUNDS times (median), then the
# plugin's aggregate read rate with 1, 2 and 4 parallel nbdcopy clients on a
# read-only export (each connection has its own handle).
#
#   bench/nbd.sh [--size-mib N] [--rounds N] [IMAGE.vmdk]
#
# Without IMAGE, makes a monolithicSparse image of N MiB (default 1024)
# holding real files' bytes (/usr/lib and /usr/share, sorted, deterministic).
# Prints a markdown table.  Timing is reported, never enforced.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
vmdkit=${VMDKIT:-$top/build/vmdkit}
plugin=${PLUGIN:-$top/build/nbdkit-vmdkit-plugin.so}
size_mib=1024
rounds=3
img=
while (($#)); do
  case $1 in
  --size-mib) size_mib=$2; shift 2 ;;
  --rounds) rounds=$2; shift 2 ;;
  *) img=$1; shift ;;
  esac
done
for t in nbdkit nbdcopy qemu-nbd; do
  command -v $t >/dev/null || { echo "bench/nbd.sh: $t is missing" >&2; exit 1; }
done
[[ -x $vmdkit && -f $plugin ]] || { echo "bench/nbd.sh: build first (make)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z $img ]]; then
  find /usr/lib /usr/share -type f -size +16k 2>/dev/null | LC_ALL=C sort |
    xargs cat 2>/dev/null | head -c $((size_mib * 1024 * 1024)) >"$work/src.raw" || true
  truncate -s $((size_mib * 1024 * 1024)) "$work/src.raw"
  "$vmdkit" convert -O vmdk "$work/src.raw" "$work/img.vmdk"
  rm -f "$work/src.raw"
  img=$work/img.vmdk
fi
now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

vm=() qn=()
for ((r = 0; r < rounds; r++)); do
  t0=$(now)
  nbdkit -U - -r "$plugin" file="$img" --run 'nbdcopy "$uri" null:' 
  t1=$(now)
  qemu-nbd -r -f vmdk -k "$work/q.sock" -t "$img" &
  qpid=$!
  for _ in $(seq 100); do [[ -S $work/q.sock ]] && break; sleep 0.05; done
  t2=$(now)
  nbdcopy "nbd+unix:///?socket=$work/q.sock" null:
  t3=$(now)
  kill $qpid; wait $qpid 2>/dev/null || true
  rm -f "$work/q.sock"
  vm+=("$(echo "$t1 - $t0" | bc)")
  qn+=("$(echo "$t3 - $t2" | bc)")
done
v=$(median "${vm[@]}")
q=$(median "${qn[@]}")
bytes=$("$vmdkit" info --output=json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
echo "| nbdcopy of $((bytes >> 20)) MiB to null: | seconds (median of $rounds) |"
echo "| --- | --- |"
echo "| nbdkit vmdkit (incl. server start) | $v |"
echo "| qemu-nbd (server already up) | $q |"
echo "| ratio vmdkit / qemu-nbd | $(echo "scale=2; $v / $q" | bc) |"
echo
echo "| parallel clients (nbdkit -r vmdkit) | aggregate MiB/s |"
echo "| --- | --- |"
for n in 1 2 4; do
  t0=$(now)
  nbdkit -U - -r "$plugin" file="$img" --run "for i in \$(seq $n); do nbdcopy \"\$uri\" null: & done; wait"
  t1=$(now)
  echo "| $n | $(echo "scale=0; $n * $bytes / 1048576 / ($t1 - $t0)" | bc) |"
done
