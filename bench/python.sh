#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The Python module against the CLI and against libvmdk's binding, reading
# the same image in the same run (issue 15):
#
#   1  vmdkit read IMG 0 SIZE > /dev/null
#   2  python_read.py vmdkit IMG: Disk.readinto into one 1 MiB bytearray,
#      until it returns 0
#   3  python_read.py aligned IMG: the same into a page-aligned buffer
#      (mmap.mmap(-1, 1 MiB)): the kernel copies out of the page cache into
#      it at full speed, into a bytearray (16 bytes past a page) it does not
#      (the library then reads through a bounce buffer: lib/io.c)
#   4  python_read.py pyvmdk IMG: read_buffer_at_offset(1 MiB, offset)
#      (pyvmdk: Debian's python3-libvmdk)
#
#   bench/python.sh [--rounds N] [--size-mib MiB] [--files-mb MB]
#                   [--chunk BYTES] [--workdir DIR] [--keep] [--out FILE]
#
# IMG is bench/workload.py's raw disk (an ext4 file system; default a
# 2048 MiB disk holding 710 MB of files) converted to monolithicSparse by
# `vmdkit convert -O vmdk`.  The page cache is warm: one untimed read of
# the image first.  Then an untimed pass of each reader hashes the whole
# disk (SHA-256): all four must match the raw disk's, else exit 1.  Then
# ROUNDS rounds (default 5), the order of the four rotating every round,
# time each whole process (wall clock); the Python script also prints the
# time of its read loop alone, so the interpreter's start-up and the
# import show separately.  Medians and the ratios readinto / vmdkit read
# (target <= 1.25) and readinto / pyvmdk (target <= 0.8) go to stdout as
# markdown and to bench/results/python-latest.md (or --out FILE).  Targets
# are reported, never enforced.
#
#   --rounds N       rounds (default 5)
#   --size-mib MiB   disk size (default 2048)
#   --files-mb MB    bytes of files in it, in 10^6 (default 710)
#   --chunk BYTES    the Python readers' chunk (default 1048576)
#   --workdir DIR    work here (default: a fresh folder in $TMPDIR, removed
#                    at the end); the raw workload is kept there and reused
#                    while its parameters do not change
#   --keep           keep the work folder
#   --out FILE       where the table goes (default
#                    bench/results/python-latest.md)
#
# Environment: VMDKIT (the CLI; default build/vmdkit), VMDKIT_PYTHONPATH
# (the folder of the module; default the first build/python/cpython-*-usr),
# PYTHON (default /usr/bin/python3, the interpreter pyvmdk is installed
# for).  Needs mkfs.ext4 and debugfs (e2fsprogs), sha256sum, python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
rounds=5 size_mib=2048 files_mb=710 chunk=$((1 << 20)) workdir="" keep=0
out=$here/results/python-latest.md
while (($#)); do
  case $1 in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  --rounds) rounds=$2; shift 2 ;;
  --size-mib) size_mib=$2; shift 2 ;;
  --files-mb) files_mb=$2; shift 2 ;;
  --chunk) chunk=$2; shift 2 ;;
  --workdir) workdir=$2; shift 2 ;;
  --keep) keep=1; shift ;;
  --out) out=$2; shift 2 ;;
  *) echo "bench/python.sh: unknown argument '$1' (try --help)" >&2; exit 1 ;;
  esac
done
die() { echo "bench/python.sh: $*" >&2; exit 1; }

VMDKIT=${VMDKIT:-$root/build/vmdkit}
PYTHON=${PYTHON:-/usr/bin/python3}
if [[ -z ${VMDKIT_PYTHONPATH:-} ]]; then
  for d in "$root"/build/python/cpython-*-usr; do
    [[ -d $d ]] && { VMDKIT_PYTHONPATH=$d; break; }
  done
fi
[[ -x $VMDKIT ]] || die "VMDKIT=$VMDKIT is not executable: build it first ('make'), or set VMDKIT"
[[ -n ${VMDKIT_PYTHONPATH:-} && -d $VMDKIT_PYTHONPATH ]] ||
  die "no module: build it ('make', needs python3-dev) or set VMDKIT_PYTHONPATH"
VMDKIT=$(realpath "$VMDKIT")
VMDKIT_PYTHONPATH=$(realpath "$VMDKIT_PYTHONPATH")
export PATH=$PATH:/usr/sbin:/sbin
for t in mkfs.ext4 debugfs sha256sum python3 "$PYTHON"; do
  command -v "$t" >/dev/null || die "$t is not installed"
done
PYTHONPATH=$VMDKIT_PYTHONPATH "$PYTHON" -c 'import vmdkit' ||
  die "$PYTHON cannot import vmdkit from $VMDKIT_PYTHONPATH"
"$PYTHON" -c 'import pyvmdk' 2>/dev/null ||
  die "$PYTHON has no pyvmdk (Debian: python3-libvmdk)"
reader=$here/python_read.py

if [[ -z $workdir ]]; then
  workdir=$(mktemp -d "${TMPDIR:-/tmp}/vmdkit-bench-python.XXXXXX")
  [[ $keep == 1 ]] || trap 'rm -rf "$workdir"' EXIT
fi
mkdir -p "$workdir"
raw=$workdir/disk-${size_mib}MiB-${files_mb}MB.raw
if [[ ! -f $raw ]]; then
  echo "bench/python.sh: building the workload ($size_mib MiB, $files_mb MB of files)" >&2
  rm -rf "$workdir/tree"
  python3 "$here/workload.py" --out "$raw.tmp" --size-bytes $((size_mib << 20)) \
    --files-bytes $((files_mb * 1000000)) --tree "$workdir/tree" >"$raw.classes"
  rm -rf "$workdir/tree"
  mv "$raw.tmp" "$raw"
fi
img=$workdir/disk.vmdk
rm -f "$img"
"$VMDKIT" convert -O vmdk "$raw" "$img" >/dev/null
size=$(stat -c %s "$raw")

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
cli() { "$VMDKIT" read "$img" 0 "$size"; }
py() { PYTHONPATH=$VMDKIT_PYTHONPATH "$PYTHON" "$reader" --chunk "$chunk" "$@"; }

# Warm the page cache, then hash the whole disk with each reader (untimed).
echo "bench/python.sh: warming up and verifying" >&2
cat "$img" >/dev/null
cli >/dev/null
want=$(sha256sum <"$raw" | cut -d' ' -f1)
got_cli=$(cli | sha256sum | cut -d' ' -f1)
got_vmdkit=$(py --sha256 vmdkit "$img" | awk '$1 == "sha256" {print $2}')
got_aligned=$(py --sha256 aligned "$img" | awk '$1 == "sha256" {print $2}')
got_pyvmdk=$(py --sha256 pyvmdk "$img" | awk '$1 == "sha256" {print $2}')
for r in cli:$got_cli vmdkit:$got_vmdkit aligned:$got_aligned pyvmdk:$got_pyvmdk; do
  [[ ${r#*:} == "$want" ]] ||
    die "${r%%:*}: SHA-256 of the disk ${r#*:} is not the raw disk's $want"
done

# seconds FILE CMD...: run CMD with stdout to FILE, print its wall-clock
# seconds.
seconds() {
  local f=$1 t0 t1
  shift
  t0=$EPOCHREALTIME
  "$@" >"$f"
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f\n", b - a}'
}
median() {
  sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

names=(cli vmdkit aligned pyvmdk)
for n in "${names[@]}"; do
  : >"$workdir/t-$n"; : >"$workdir/loop-$n"; : >"$workdir/open-$n"; : >"$workdir/rest-$n"
done
for ((r = 1; r <= rounds; r++)); do
  echo "bench/python.sh: round $r of $rounds" >&2
  for ((i = 0; i < 4; i++)); do
    n=${names[(r - 1 + i) % 4]}
    if [[ $n == cli ]]; then
      seconds /dev/null cli >>"$workdir/t-cli"
    else
      t=$(seconds "$workdir/out" py "$n" "$img")
      echo "$t" >>"$workdir/t-$n"
      awk '{print $4}' "$workdir/out" >>"$workdir/loop-$n"
      awk '{print $2}' "$workdir/out" >>"$workdir/open-$n"
      awk -v t="$t" '{printf "%.4f\n", t - $4}' "$workdir/out" >>"$workdir/rest-$n"
    fi
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

for n in "${names[@]}"; do
  declare "p_$n=$(median <"$workdir/t-$n")"
done
for n in vmdkit aligned pyvmdk; do
  declare "l_$n=$(median <"$workdir/loop-$n")"
  declare "o_$n=$(median <"$workdir/open-$n")"
  declare "x_$n=$(median <"$workdir/rest-$n")"
done
calc() { awk "BEGIN {printf \"%.2f\", $*}"; }
met() { awk -v v="$1" -v t="$2" 'BEGIN {print (v <= t) ? "yes" : "**no**"}'; }
r_cli=$(calc "$p_vmdkit / $p_cli")
r_cli_loop=$(calc "$l_vmdkit / $p_cli")
r_py=$(calc "$p_vmdkit / $p_pyvmdk")
r_py_loop=$(calc "$l_vmdkit / $l_pyvmdk")
a_cli=$(calc "$p_aligned / $p_cli")
a_cli_loop=$(calc "$l_aligned / $p_cli")
a_py=$(calc "$p_aligned / $p_pyvmdk")
a_py_loop=$(calc "$l_aligned / $l_pyvmdk")
gibs() { awk -v s="$size" -v t="$1" 'BEGIN {printf "%.2f", s / t / 1073741824}'; }
rounds_of() { tr '\n' ' ' <"$1" | sed 's/ $//'; }

cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
vmdkit_version=$("$VMDKIT" --version | head -1)
module_version=$(PYTHONPATH=$VMDKIT_PYTHONPATH "$PYTHON" -c \
  'import vmdkit; print(getattr(vmdkit, "__version__", "?"))')
pyvmdk_version=$("$PYTHON" -c 'import pyvmdk; print(pyvmdk.get_version())')
libvmdk_pkg=$(dpkg-query -W -f '${Version}' python3-libvmdk 2>/dev/null || echo "?")
python_version=$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')
alloc=$(du -B1 "$img" | cut -f1)
classes=""
[[ -f $raw.classes ]] &&
  classes=$(awk '{printf "%s%s %d %.1f MB", (NR > 1 ? "; " : ""), $1, $2, $3 / 1e6; t += $3}
    END {printf "; in all %.1f MB", t / 1e6}' "$raw.classes")

{
  echo "# Reading a whole disk from Python: vmdkit's Disk.readinto vs the CLI and pyvmdk"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo "- machine: ${cpu:-?}, $(nproc) CPUs, Linux $(uname -r), work folder on $(findmnt -n -o FSTYPE -T "$workdir" 2>/dev/null || stat -f -c %T "$workdir")"
  echo "- $vmdkit_version; module vmdkit $module_version ($VMDKIT_PYTHONPATH); pyvmdk $pyvmdk_version (python3-libvmdk $libvmdk_pkg); Python $python_version ($PYTHON)"
  echo "- input: a $size_mib MiB raw disk, ext4 made by bench/workload.py --files-bytes $((files_mb * 1000000)) (files by class, count, bytes: ${classes:-?}), converted by \`vmdkit convert -O vmdk\` to monolithicSparse ($(awk -v a="$alloc" 'BEGIN {printf "%.1f MiB", a / 1048576}') on the disk)"
  echo "- chunk $chunk bytes; $rounds rounds, the four alternating (order rotated every round), page cache warm (one untimed read first)"
  echo "- load average (1, 5, 15 min) at the start $load_start, at the end $load_end: other work on the machine makes the times noisy"
  echo "- verified in this run: the SHA-256 of the whole disk from each reader (an untimed pass each) is the raw disk's, $want"
  echo
  echo "Times are medians of wall-clock seconds. Process: the whole process (for Python: start-up, import, open, loop, exit). Loop: the read loop alone, timed inside the script; open: opening the image; process − loop: the median over the rounds of the difference, mostly the start-up of the interpreter and the import. GiB/s: the 2 GiB of the disk (holes included) over the time."
  echo
  echo "| reader | process s | loop s | open s | process − loop s | disk GiB/s (loop) |"
  echo "|---|---:|---:|---:|---:|---:|"
  printf '| `vmdkit read IMG 0 %s > /dev/null` | %.3f | | | | %s (process) |\n' "$size" "$p_cli" "$(gibs "$p_cli")"
  printf '| `Disk.readinto(buf)`, vmdkit module | %.3f | %.3f | %.4f | %.3f | %s |\n' "$p_vmdkit" "$l_vmdkit" "$o_vmdkit" "$x_vmdkit" "$(gibs "$l_vmdkit")"
  printf '| `Disk.readinto(buf)`, a page-aligned buffer (`mmap.mmap(-1, n)`) | %.3f | %.3f | %.4f | %.3f | %s |\n' "$p_aligned" "$l_aligned" "$o_aligned" "$x_aligned" "$(gibs "$l_aligned")"
  printf '| `read_buffer_at_offset(n, off)`, pyvmdk | %.3f | %.3f | %.4f | %.3f | %s |\n' "$p_pyvmdk" "$l_pyvmdk" "$o_pyvmdk" "$x_pyvmdk" "$(gibs "$l_pyvmdk")"
  echo
  echo "| ratio | process | loop | target | met (process) |"
  echo "|---|---:|---:|---|---|"
  echo "| readinto / vmdkit read | $r_cli | $r_cli_loop (loop / CLI process) | ≤ 1.25 | $(met "$r_cli" 1.25) |"
  echo "| readinto / pyvmdk | $r_py | $r_py_loop | ≤ 0.8 | $(met "$r_py" 0.8) |"
  echo "| readinto, aligned buffer / vmdkit read | $a_cli | $a_cli_loop (loop / CLI process) | ≤ 1.25 | $(met "$a_cli" 1.25) |"
  echo "| readinto, aligned buffer / pyvmdk | $a_py | $a_py_loop | ≤ 0.8 | $(met "$a_py" 0.8) |"
  echo
  echo "Rounds, process s: vmdkit read $(rounds_of "$workdir/t-cli"); readinto $(rounds_of "$workdir/t-vmdkit"); aligned $(rounds_of "$workdir/t-aligned"); pyvmdk $(rounds_of "$workdir/t-pyvmdk")."
  echo "Rounds, loop s: readinto $(rounds_of "$workdir/loop-vmdkit"); aligned $(rounds_of "$workdir/loop-aligned"); pyvmdk $(rounds_of "$workdir/loop-pyvmdk")."
} | tee "$out"
