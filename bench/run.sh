#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit against qemu-img, side by side: the benchmark of issue 5.
#
#   bench/run.sh [--quick] [--rounds N] [--size GiB | --size-mib MiB]
#                [--modes LIST] [--bench-modes LIST] [--cases LIST]
#                [--workdir DIR] [--keep] [--drop-caches] [--out FILE]
#
# Builds a raw disk image holding an ext4 file system full of real files
# (bench/workload.py: ELF binaries, text, already-compressed files, random
# data, zero files, deterministic), then times each case with vmdkit and
# qemu-img, alternating, ROUNDS times (bench/bench.py):
#   1  raw -> monolithicSparse (and cp --sparse=always)
#   2  raw -> streamOptimized (vmdkit -m NCPU; also compression_level=1)
#   3  streamOptimized -> raw      4  monolithicSparse -> raw
#   5  bench -w: COUNT 4 KiB writes 64 KiB apart, each allocating a grain
#   6  a 2047 GiB image with 64 MiB at each end -> raw and monolithicSparse
#      (and the same data in a 4 GiB image: time against virtual size)
#   7  strace: system calls of convert -t writeback -O vmdk, on the work
#      folder's file system and on a bindfs (FUSE) mount standing in for
#      NFS/SMB; and raw -> monolithicSparse -t writeback timed on that mount
#   8  QEMU formats through qemu-nbd, against qemu-img convert on the same
#      input: qcow2 -> monolithicSparse, qcow2 -> streamOptimized (vmdkit
#      -m NCPU), monolithicSparse -> qcow2 (default cache mode)
# Prints a markdown table (progress goes to stderr) and writes it to
# bench/results/latest.md (or --out FILE).  Every output is verified with
# qemu-img in the same run; a failed verification exits 1.  Speed targets
# are reported, never enforced.
#
#   --quick          256 MiB workload, cases 1-4 and 5 in the default cache
#                    mode only, 2000 bench writes, case 6 at 64 GiB virtual
#                    with 4 MiB at each end
#   --rounds N       rounds per case (default 3)
#   --size GiB       workload size (default 2; --quick: 0.25)
#   --size-mib MiB   workload size in MiB (the smoke test uses 64)
#   --modes LIST     cache modes of cases 1-4 (default: default,writeback,none;
#                    "default" passes no -t: unsafe for convert, as qemu-img)
#   --bench-modes LIST  cache modes of case 5 (default: default,unsafe,none;
#                    "default" is writeback, as qemu-img bench)
#   --cases LIST     which cases (default 1,2,3,4,5,6,7,8)
#   --workdir DIR    work here (default: a fresh folder in $TMPDIR, removed
#                    at the end); the workload image is kept there and reused
#                    while its parameters do not change
#   --keep           keep the outputs
#   --drop-caches    drop the page cache before every timed run (root only;
#                    off by default)
#   --out FILE       where the table goes (default bench/results/latest.md)
#
# Environment: VMDKIT (the CLI; default build/vmdkit of this tree).  Needs
# qemu-img, mkfs.ext4 and debugfs (e2fsprogs), /usr/bin/time, python3;
# strace for case 7.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

case "${1:-}" in
-h | --help)
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 0
  ;;
esac

vmdkit=${VMDKIT:-$root/build/vmdkit}
if [[ ! -x $vmdkit ]]; then
  echo "bench/run.sh: $vmdkit is not there: build it first ('make'), or set" \
    "VMDKIT to the vmdkit CLI" >&2
  exit 1
fi
# mkfs.ext4 and debugfs live in /sbin, which is not on every user's PATH.
export PATH=$PATH:/usr/sbin:/sbin
missing=()
for t in qemu-img mkfs.ext4 debugfs python3; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[[ -x /usr/bin/time ]] || missing+=("/usr/bin/time (Debian package 'time')")
if ((${#missing[@]})); then
  echo "bench/run.sh: missing: ${missing[*]}" >&2
  exit 1
fi

exec python3 "$here/bench.py" --vmdkit "$(realpath "$vmdkit")" "$@"
