#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Converting a remote image (http://) against downloading it first, on the
# same input in the same run.  For a monolithicSparse and a streamOptimized
# image served by lighttpd on 127.0.0.1:
#
#   A  curl -s -o local.vmdk URL + vmdkit convert -O vmdk local.vmdk out.vmdk
#      (each timed; A is the sum; no added latency)
#   B  vmdkit convert -O vmdk URL out.vmdk through nbdkit's curl plugin with
#      --remote-option filter=delay --remote-option delay-read=DELAY
#      (DELAY per read request, like a WAN): vmdkit's own read-ahead over
#      its default 4 connections
#   C  the same over one connection, vmdkit's read-ahead off and nbdkit's
#      instead: connections=1 readahead=0 filter=readahead filter=cache
#      filter=delay delay-read=DELAY (readahead and cache in front of delay)
#   D  (--sweep) B with connections=1, 2, 4 and 8
#
#   bench/remote.sh [--rounds N] [--size-mib MiB] [--delay DELAY] [--sweep]
#                   [--workdir DIR] [--keep] [--out FILE]
#
# The input is bench/workload.py's raw disk (an ext4 file system full of
# real files, about half of it data); the default 2048 MiB, the size the
# other benchmarks use, makes a monolithicSparse of 1.19 GiB and a
# streamOptimized of 576 MiB (1728 MiB would make the first 1.0 GiB; both
# sizes are printed).  It is converted locally once to both images.
# Rounds alternate the configurations (the order reversed every other
# round; default 3 rounds); the medians, B/A and C/A (targets from the
# issue: B/A <= 1.5 for monolithicSparse, <= 1.2 for streamOptimized;
# reported, never enforced) go to stdout as a markdown table and to
# bench/results/remote-latest.md (or --out FILE).  Every configuration's
# output is verified in its first round with `qemu-img compare` against the
# raw input; a difference exits 1.  DELAY in nbdkit's syntax: NNms or whole
# seconds (default 20ms).  Environment: VMDKIT (default build/vmdkit),
# LIGHTTPD (default lighttpd on PATH or /usr/sbin/lighttpd).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
rounds=3 size_mib=2048 delay=20ms sweep=0 workdir="" keep=0
out=$here/results/remote-latest.md
while (($#)); do
  case $1 in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  --rounds) rounds=$2; shift 2 ;;
  --size-mib) size_mib=$2; shift 2 ;;
  --delay) delay=$2; shift 2 ;;
  --sweep) sweep=1; shift ;;
  --workdir) workdir=$2; shift 2 ;;
  --keep) keep=1; shift ;;
  --out) out=$2; shift 2 ;;
  *) echo "bench/remote.sh: unknown argument '$1' (try --help)" >&2; exit 1 ;;
  esac
done
die() { echo "bench/remote.sh: $*" >&2; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds wants a positive number"
[[ $size_mib =~ ^[1-9][0-9]*$ ]] || die "--size-mib wants a positive number"
[[ $delay =~ ^[0-9]+(ms)?$ ]] || die "--delay wants NNms or whole seconds (nbdkit's syntax)"
# mkfs.ext4, debugfs and lighttpd live in /sbin, not on every user's PATH.
export PATH=$PATH:/usr/sbin:/sbin
VMDKIT=${VMDKIT:-$root/build/vmdkit}
LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
for t in qemu-img curl nbdkit python3 mkfs.ext4 debugfs; do
  command -v "$t" >/dev/null || die "$t is not installed"
done
[[ -x $LIGHTTPD ]] || die "lighttpd is not installed (LIGHTTPD=$LIGHTTPD)"
[[ -x $VMDKIT ]] || die "VMDKIT=$VMDKIT is not executable (build it first)"
for f in delay readahead cache; do
  nbdkit --filter="$f" null --dump-plugin >/dev/null 2>&1 ||
    die "nbdkit's $f filter is not installed"
done
nbdkit curl --dump-plugin >/dev/null 2>&1 || die "nbdkit's curl plugin is not installed"

http_pid=""
cleanup() {
  if [[ -n $http_pid ]]; then
    kill "$http_pid" 2>/dev/null || true
    wait "$http_pid" 2>/dev/null || true
  fi
  if [[ $keep != 1 && -n ${made_workdir:-} ]]; then
    rm -rf "$workdir"
  fi
}
trap cleanup EXIT
made_workdir=""
if [[ -z $workdir ]]; then
  workdir=$(mktemp -d "${TMPDIR:-/tmp}/vmdkit-bench-remote.XXXXXX")
  made_workdir=1
fi
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
log=$workdir/log
: >"$log"

# The input, kept in --workdir and reused for the same size.
in=$workdir/disk-$size_mib.raw
if [[ ! -f $in ]]; then
  echo "bench/remote.sh: building the $size_mib MiB workload" >&2
  rm -rf "$workdir/tree"
  python3 "$here/workload.py" --out "$in.tmp" --size-bytes $((size_mib << 20)) \
    --tree "$workdir/tree" >&2
  rm -rf "$workdir/tree"
  mv "$in.tmp" "$in"
fi

# The two images, made locally by this vmdkit once per run.
srv=$workdir/srv
mkdir -p "$srv"
rm -f "$srv"/*.vmdk
echo "bench/remote.sh: converting the input to monolithicSparse and streamOptimized" >&2
"$VMDKIT" convert -O vmdk "$in" "$srv/sparse.vmdk" >>"$log" 2>&1 ||
  { tail -n 20 "$log" >&2; die "vmdkit convert to monolithicSparse failed"; }
"$VMDKIT" convert -O vmdk -o subformat=streamOptimized "$in" "$srv/stream.vmdk" >>"$log" 2>&1 ||
  { tail -n 20 "$log" >&2; die "vmdkit convert to streamOptimized failed"; }
declare -A img_bytes
for img in sparse stream; do
  img_bytes[$img]=$(stat -c %s "$srv/$img.vmdk")
  printf 'bench/remote.sh: %s.vmdk: %s bytes (%.0f MiB)\n' "$img" "${img_bytes[$img]}" \
    "$(awk -v b="${img_bytes[$img]}" 'BEGIN {print b / 1048576}')" >&2
done

# lighttpd on a free port of 127.0.0.1, serving $srv (HTTP/1.1, byte ranges).
port=$(python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')
mkdir -p "$workdir/http"
cat >"$workdir/http/lighttpd.conf" <<EOF
server.document-root = "$srv"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$workdir/http/error.log"
server.pid-file = "$workdir/http/lighttpd.pid"
server.upload-dirs = ("$workdir/http")
EOF
"$LIGHTTPD" -tt -f "$workdir/http/lighttpd.conf" >"$workdir/http/check.log" 2>&1 ||
  { cat "$workdir/http/check.log" >&2; die "lighttpd rejects its configuration"; }
"$LIGHTTPD" -D -f "$workdir/http/lighttpd.conf" >>"$workdir/http/error.log" 2>&1 &
http_pid=$!
url=http://127.0.0.1:$port
for ((i = 0; ; i++)); do
  kill -0 "$http_pid" 2>/dev/null || { cat "$workdir/http/error.log" >&2; die "lighttpd exited"; }
  curl -s -o /dev/null --max-time 2 "$url/" && break
  ((i < 100)) || { cat "$workdir/http/error.log" >&2; die "lighttpd does not answer on $url"; }
  sleep 0.1
done
for img in sparse stream; do
  [[ $(curl -s -r 0-3 "$url/$img.vmdk" | od -An -c | tr -d ' ') == KDMV ]] ||
    die "$url/$img.vmdk: lighttpd does not serve the image (with byte ranges)"
done

delay_opts=(--remote-option filter=delay --remote-option "delay-read=$delay")
nbdkit_opts=(--remote-option connections=1 --remote-option readahead=0
  --remote-option filter=readahead --remote-option filter=cache "${delay_opts[@]}")

# seconds CMD...: wall-clock seconds of CMD (its output goes to the log; a
# failure ends the benchmark with the log's tail).
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  echo "+ $*" >>"$log"
  "$@" >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "failed: $*"; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}'
}

median() {
  sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

verify() { # verify NAME: out.vmdk against the raw input
  qemu-img compare -q -f raw -F vmdk "$in" "$workdir/out.vmdk" ||
    die "$1: out.vmdk differs from the input (wrong bytes)"
  echo "bench/remote.sh: $1: verified (qemu-img compare with the input)" >&2
}

# run CONFIG: one timed run of a configuration (IMAGE-A, IMAGE-B, IMAGE-C,
# IMAGE-cN); appends its seconds to $workdir/t-CONFIG.
declare -A verified
run() {
  local c=$1 img=${1%%-*} k=${1#*-} t1 t2
  rm -f "$workdir/local.vmdk" "$workdir/out.vmdk"
  case $k in
  A)
    t1=$(seconds curl -s -f -o "$workdir/local.vmdk" "$url/$img.vmdk")
    t2=$(seconds "$VMDKIT" convert -O vmdk "$workdir/local.vmdk" "$workdir/out.vmdk")
    echo "$t1" >>"$workdir/t-$c-curl"
    echo "$t2" >>"$workdir/t-$c-convert"
    awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.3f\n", a + b}' >>"$workdir/t-$c"
    ;;
  B)
    seconds "$VMDKIT" convert -O vmdk "${delay_opts[@]}" "$url/$img.vmdk" \
      "$workdir/out.vmdk" >>"$workdir/t-$c"
    ;;
  C)
    seconds "$VMDKIT" convert -O vmdk "${nbdkit_opts[@]}" "$url/$img.vmdk" \
      "$workdir/out.vmdk" >>"$workdir/t-$c"
    ;;
  c*)
    seconds "$VMDKIT" convert -O vmdk --remote-option "connections=${k#c}" \
      "${delay_opts[@]}" "$url/$img.vmdk" "$workdir/out.vmdk" >>"$workdir/t-$c"
    ;;
  esac
  echo "bench/remote.sh:   $c $(tail -n 1 "$workdir/t-$c") s" >&2
  if [[ -z ${verified[$c]:-} ]]; then
    verify "$c"
    verified[$c]=1
  fi
  rm -f "$workdir/local.vmdk" "$workdir/out.vmdk"
}

configs=()
for img in sparse stream; do
  configs+=("$img-A" "$img-B" "$img-C")
  if [[ $sweep == 1 ]]; then
    configs+=("$img-c1" "$img-c2" "$img-c4" "$img-c8")
  fi
done
rm -f "$workdir"/t-*
for c in "${configs[@]}"; do : >"$workdir/t-$c"; done
load_start=$(cut -d' ' -f1 /proc/loadavg)
for ((r = 1; r <= rounds; r++)); do
  echo "bench/remote.sh: round $r of $rounds" >&2
  order=("${configs[@]}")
  if ((r % 2 == 0)); then
    order=()
    for ((i = ${#configs[@]} - 1; i >= 0; i--)); do order+=("${configs[i]}"); done
  fi
  for c in "${order[@]}"; do run "$c"; done
done

med() { median <"$workdir/t-$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
rounds_of() { tr '\n' ' ' <"$workdir/t-$1" | sed 's/ $//'; }
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
v_vmdkit=$("$VMDKIT" --version | head -n 1)
v_nbdkit=$(nbdkit --version | head -n 1)
v_curl=$(curl --version | head -n 1 | cut -d' ' -f1,2)
v_lighttpd=$("$LIGHTTPD" -v | head -n 1 | cut -d' ' -f1)
v_qemu=$(qemu-img --version | head -n 1)

{
  echo "# vmdkit convert from an http:// URL vs download + local convert"
  echo
  echo "- $(date -u +%Y-%m-%d), ${cpu:-?}, $(nproc) CPUs, Linux $(uname -r);" \
    "load average (1 min) at the start $load_start, at the end $(cut -d' ' -f1 /proc/loadavg)"
  echo "- $v_vmdkit; $v_nbdkit; $v_curl; $v_lighttpd; $v_qemu"
  echo "- input: a $size_mib MiB raw ext4 image (bench/workload.py), converted" \
    "locally to monolithicSparse (${img_bytes[sparse]} bytes) and streamOptimized" \
    "(${img_bytes[stream]} bytes), served by lighttpd on 127.0.0.1"
  echo "- rounds: $rounds, configurations alternating (order reversed every" \
    "other round), medians of wall-clock seconds; every output verified with" \
    "\`qemu-img compare\` against the input in this run"
  echo "- A: \`curl -o\` + \`vmdkit convert -O vmdk\` of the local copy (no added latency;" \
    "in parentheses the medians of the two parts);" \
    "B: \`vmdkit convert -O vmdk URL\` with nbdkit's delay filter (delay-read=$delay)," \
    "vmdkit's read-ahead, default connections; C: connections=1 readahead=0," \
    "nbdkit's readahead and cache filters in front of the same delay"
  echo
  echo "| image | A: curl + convert | B: vmdkit read-ahead | C: nbdkit readahead+cache | B/A | C/A | target B/A |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for img in sparse stream; do
    a=$(med "$img-A") b=$(med "$img-B") c=$(med "$img-C")
    name=monolithicSparse target=1.5
    [[ $img == stream ]] && name=streamOptimized target=1.2
    printf '| %s | %.2f (%.2f + %.2f) | %.2f | %.2f | %s | %s | <= %s |\n' "$name" \
      "$a" "$(med "$img-A-curl")" "$(med "$img-A-convert")" "$b" "$c" \
      "$(ratio "$b" "$a")" "$(ratio "$c" "$a")" "$target"
  done
  if [[ $sweep == 1 ]]; then
    echo
    echo "B by number of connections (--remote-option connections=N):"
    echo
    echo "| connections | monolithicSparse s | B/A | streamOptimized s | B/A |"
    echo "| ---: | ---: | ---: | ---: | ---: |"
    for n in 1 2 4 8; do
      s=$(med "sparse-c$n") t=$(med "stream-c$n")
      printf '| %d | %.2f | %s | %.2f | %s |\n' "$n" "$s" "$(ratio "$s" "$(med sparse-A)")" \
        "$t" "$(ratio "$t" "$(med stream-A)")"
    done
  fi
  echo
  echo "Rounds (s):"
  for c in "${configs[@]}"; do
    echo "$c: $(rounds_of "$c")"
  done | sed 's/^/    /'
} | tee "$out"
