#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Power-cut simulation.  Every workload runs under the recording shim
# (tests/fault/shim.c: FAULT_MATCH=its folder, FAULT_LOG=a log of every
# write, truncate, fallocate and sync that completed), one process per
# acknowledged operation where that is how the user would run it; the log's
# size when a command exited 0 (or when vmdkit-scatter's vmdk_flush
# returned) is where that command's data was acknowledged.  Then
# tests/fault/replay.py builds the states a power cut at a sample of points
# could leave (synced data + any subset of the 4 KiB pieces written since
# the last sync of each file) and checks each: vmdkit check and qemu-img
# check exit 0 or 3, every sector reads a value the disk held during the
# run, and what was acknowledged is there.
#
#  a. 6 `vmdkit write` (overlapping, unaligned, the last bytes) into a
#     monolithicSparse child over a base filled with 0x5A; the base must
#     never change.
#  b. vmdkit-scatter: 20000 4 KiB writes, one per grain table (grains of
#     4 KiB: a table covers 2 MiB), over a base that holds 0x5A there: the
#     table cache (32 MiB of 2 KiB tables = 16384) evicts dirty tables part
#     of the way (after the vmdk_flush that follows the first 2000 writes,
#     16384 dirty tables fill the cache; the next table evicts one).  Cut
#     points are sampled.
#  c. `vmdkit commit child.vmdk`: the base must read as before or as the
#     child, and as the child once commit exited; the child must always read
#     the same.
#  d. `vmdkit convert -t writeback -O vmdk src.raw out.vmdk`: the source must
#     never change; once convert exited, out.vmdk must check clean (0 or 3)
#     and read as the source.  Before that it may be anything (an
#     interrupted convert is re-run).
#  Then workload a with qemu-io instead of vmdkit write (one process per
#  write, each with `-c flush`), replayed with --qemu: reported, never a
#  failure (QEMU 7.2 for comparison), and replay --selftest-drop-syncs on
#  workload b: the same log with every sync ignored must go wrong (the
#  checks can see a broken order).
#
# Usage: powercut.sh [--long]   (--long: thousands of states instead of
# hundreds).  Environment as the interop tests, plus FAULT_SHIM (the shim;
# skip without it) and SCATTER (vmdkit-scatter; default $BUILD_DIR/...).
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

if [[ -z ${FAULT_SHIM:-} || ! -f ${FAULT_SHIM:-} ]]; then
  echo "SKIP: FAULT_SHIM (the recording shim, tests/fault/shim.c) is not built" >&2
  exit 77
fi
SCATTER=${SCATTER:-${BUILD_DIR:-$(dirname "$VMDKIT")}/vmdkit-scatter}
[[ -x $SCATTER ]] || die "SCATTER=$SCATTER is not built (target vmdkit-scatter)"
LONG=()
[[ ${1:-} == --long ]] && LONG=(--long)
REPLAY=("${PYTHON:-python3}" "$SRC_DIR/tests/fault/replay.py" -j 2 --vmdkit "$VMDKIT" "${LONG[@]}")
M=$((1024 * 1024))

# setup W: a fresh workload folder $tmpdir/W, its log and spec.
setup() {
  wdir=$tmpdir/$1
  mkdir -p "$wdir"
  wdir=$(cd "$wdir" && pwd -P)
  log=$tmpdir/$1.log
  spec=$tmpdir/$1.spec
  : >"$log"
}
# snapshot: the pristine copy, and the spec's head (after setup's fixtures).
snapshot() {
  cp -a --sparse=always "$wdir" "$wdir.pristine"
  printf 'log %s\nwatch %s\npristine %s\n' "$log" "$wdir" "$wdir.pristine" >"$spec"
}
# rec CMD...: CMD under the recording shim, in the workload folder.
rec() {
  (cd "$wdir" && LD_PRELOAD=$FAULT_SHIM FAULT_MATCH=$wdir FAULT_LOG=$log "$@")
}
logpos() { stat -c %s "$log"; }
# fill FILE LEN BYTE: LEN bytes of BYTE (hex, 2 digits)
fill() { head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "0x$3")" >"$1"; }

# POWERCUT_KEEP=1: keep $tmpdir (the logs, specs and fixtures) to replay by hand
if [[ -n ${POWERCUT_KEEP:-} ]]; then
  trap - EXIT
  echo "keeping $tmpdir" >&2
fi
failed=()
# want W: workload W is selected (POWERCUT_ONLY="a b ...", default all)
want() { [[ -z ${POWERCUT_ONLY:-} || " $POWERCUT_ONLY " == *" $1 "* ]]; }
# replay NAME ARGS...: replay.py on NAME's spec; remember a failure.
replay() {
  local name=$1
  shift
  echo "--- $name"
  if ! "${REPLAY[@]}" "$@" "$tmpdir/$name.spec"; then
    failed+=("$name")
  fi
}

# ---- a. vmdkit write into a child over a 0x5A base --------------------------
A_SIZE=$((16 * M))
A_OPS=(  # offset length byte
  "0 100000 11"
  "$((3 * 65536 + 1000)) 200000 22"
  "50000 70000 33"
  "$((8 * M - 512)) 12288 44"
  "1000001 1 55"
  "$((A_SIZE - 70000)) 70000 66"
)
workload_a() {  # NAME; MODE=vmdkit|qemu
  local name=$1 o start end
  setup "$name"
  (cd "$wdir" && "$VMDKIT" create -q base.vmdk $A_SIZE && fill base.fill $A_SIZE 5a &&
     "$VMDKIT" write base.vmdk 0 <base.fill && rm base.fill &&
     "$VMDKIT" create -q -b base.vmdk -F vmdk child.vmdk) || die "$name: fixture"
  snapshot
  printf 'disk child.vmdk vmdk %d\ndisk base.vmdk vmdk %d\n' $A_SIZE $A_SIZE >>"$spec"
  for o in "${A_OPS[@]}"; do
    set -- $o
    fill "$tmpdir/data" "$2" "$3"
    start=$(logpos)
    if [[ $MODE == qemu ]]; then
      rec qemu-io -f vmdk -c "write -P 0x$3 $1 $2" -c flush child.vmdk >/dev/null ||
        die "qemu-io write $o failed"
    else
      rec "$VMDKIT" write child.vmdk "$1" <"$tmpdir/data" || die "vmdkit write $o failed"
    fi
    end=$(logpos)
    echo "op child.vmdk $start $end $1 $2 byte:0x$3" >>"$spec"
  done
}
want a && MODE=vmdkit workload_a a
want aq && MODE=qemu workload_a aq

# ---- b. scattered writes over more tables than the cache holds --------------
if want b; then
  B_N=20000 B_STRIDE=$((2 * M)) B_BLOCK=4096 B_SEED=7 B_FLUSH=2000
  B_SIZE=$((20480 * B_STRIDE))  # 40 GiB: 20480 tables of 512 4 KiB grains
  setup b
  (cd "$wdir" && "$VMDKIT" create -q base.vmdk $B_SIZE &&
     "$VMDKIT" bench -q -w -c $B_N -s $B_BLOCK -S $B_STRIDE --pattern=90 base.vmdk &&
     "$VMDKIT" create -q -o grain_size=$B_BLOCK -b base.vmdk -F vmdk child.vmdk) ||
    die "b: fixture"
  snapshot
  start=$(logpos)
  rec "$SCATTER" write child.vmdk $B_N $B_STRIDE $B_BLOCK $B_SEED $B_FLUSH >"$tmpdir/b.ack" ||
    die "b: vmdkit-scatter failed"
  end=$(logpos)
  mid=$(awk '$1 == "ack" { print $2 }' "$tmpdir/b.ack")
  [[ -n $mid && $mid -gt $start ]] || die "b: no acknowledgement position from the mid-way flush"
  {
    echo "disk child.vmdk vmdk $B_SIZE"
    echo "reader child.vmdk $SCATTER dump {img} $B_N $B_STRIDE $B_BLOCK"
    awk -v n=$B_N -v s=$B_STRIDE -v b=$B_BLOCK -v seed=$B_SEED -v f=$B_FLUSH \
        -v start=$start -v mid=$mid -v end=$end 'BEGIN {
      for (i = 0; i < n; i++) printf "region child.vmdk %.0f %d\n", i * s, b
      for (i = 0; i < n; i++)
        printf "op child.vmdk %.0f %.0f %.0f %d stamp:%d\n", start, (i < f ? mid : end), i * s, b, seed
    }'
  } >>"$spec"
fi

# ---- c. commit ----------------------------------------------------------------
if want c; then
  C_SIZE=$((16 * M))
  setup c
  (cd "$wdir" && "$VMDKIT" create -q base.vmdk $C_SIZE && fill base.fill $C_SIZE 5a &&
     "$VMDKIT" write base.vmdk 0 <base.fill && rm base.fill &&
     "$VMDKIT" create -q -b base.vmdk -F vmdk child.vmdk) || die "c: fixture"
  for o in "${A_OPS[@]}"; do
    set -- $o
    fill "$tmpdir/data" "$2" "$3"
    "$VMDKIT" write "$wdir/child.vmdk" "$1" <"$tmpdir/data" || die "c: fixture write"
  done
  "$VMDKIT" read "$wdir/child.vmdk" 0 $C_SIZE >"$tmpdir/c-child.raw"
  snapshot
  start=$(logpos)
  rec "$VMDKIT" commit -q child.vmdk || die "c: vmdkit commit failed"
  end=$(logpos)
  cmp -s "$tmpdir/c-child.raw" <("$VMDKIT" read "$wdir/base.vmdk" 0 $C_SIZE) ||
    die "c: after commit the base does not read as the child"
  {
    echo "disk base.vmdk vmdk $C_SIZE"
    echo "op base.vmdk $start $end 0 $C_SIZE file:$tmpdir/c-child.raw"
    echo "disk child.vmdk vmdk $C_SIZE"
  } >>"$spec"
fi

# ---- d. convert ---------------------------------------------------------------
if want d; then
  D_SIZE=$((8 * M))
  setup d
  python3 - "$wdir/src.raw" $D_SIZE <<'EOF'
import sys
path, size = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    for blk in range(size // 65536):
        if blk % 5 == 3:
            f.write(bytes(65536))          # holes to skip
        elif blk % 7 == 2:
            f.write(bytes(30000) + bytes([blk & 255]) * 35536)
        else:
            f.write(bytes([(blk * 37 + i // 512) & 255 for i in range(65536)]))
EOF
  cp "$wdir/src.raw" "$tmpdir/d-src.raw"
  snapshot
  start=$(logpos)
  rec "$VMDKIT" convert -t writeback -O vmdk src.raw out.vmdk || die "d: vmdkit convert failed"
  end=$(logpos)
  {
    echo "disk src.raw raw $D_SIZE"
    echo "disk out.vmdk vmdk $D_SIZE from=$end"
    echo "op out.vmdk $start $end 0 $D_SIZE file:$tmpdir/d-src.raw"
  } >>"$spec"
fi

# ---- replay ---------------------------------------------------------------------
t0=$SECONDS
want a && replay a --label "vmdkit a (write)"
# b: each state takes ~1 s (qemu-img check of 20480 tables): fewer cuts
want b && replay b --label "vmdkit b (scatter)" $( ((${#LONG[@]})) && echo "--cuts 60 -R 6" || echo "--cuts 16 -R 2")
want c && replay c --label "vmdkit c (commit)"
want d && replay d --label "vmdkit d (convert)"
if want aq; then
  echo "--- aq"
  "${REPLAY[@]}" --qemu --label "qemu a (qemu-io write)" "$tmpdir/aq.spec" || true
fi
if want b; then
  echo "--- b, selftest"
  "${REPLAY[@]}" --selftest-drop-syncs --cuts 4 -R 2 --label "vmdkit b" "$tmpdir/b.spec" ||
    failed+=("selftest-drop-syncs")
fi
echo "replay took $((SECONDS - t0)) s"
if ((${#failed[@]})); then
  die "power-cut states went wrong in: ${failed[*]}"
fi
