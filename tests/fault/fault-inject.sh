#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Fault injection: every operation that writes an image is run once under
# the LD_PRELOAD shim (tests/fault/shim.c) to count its K write-like calls
# (pwrite, ftruncate, fallocate, fdatasync/fsync, sync_file_range) on the
# image files, then K more times, with the N-th call failing (ENOSPC, EIO,
# and for the write workloads SHORT: half a write lands, then the disk is
# full).  After each run:
#   a. exit 0 is allowed only when the fault was harmless: the image reads
#      exactly as after a successful run and the failed call was a
#      sync_file_range (a hint); a failed write or fdatasync that still
#      exits 0 was ignored.  A non-zero exit must print exactly one stderr
#      line, "vmdkit: ...", that names an image file;
#   b. vmdkit check exits 0 or 3 (leaks only), and so does qemu-img check
#      where QEMU knows the subformat;
#   c. every 512-byte sector of the virtual disk reads as before the
#      operation or as after it (tests/fault/sectors.py); files the
#      operation must not change (the base of a child, a convert's source)
#      are byte-identical; a failed convert leaves no output file;
#   d. the same command run again without a fault succeeds and the image
#      then reads exactly as after a successful run (a re-run that is
#      refused is fine only when the image already reads as after: a
#      stream cannot take the same grain twice).
# The "after" models are built independently of vmdkit's write path where
# that is possible (the bytes spliced into the "before" model with dd).
#
# Prints per operation "OP ERRNO: K positions, M wrong" with one line per
# wrong position (the call that failed and what went wrong), and at the end
# "N faults injected, M went wrong"; exits 1 unless M is 0.
#
#   --qemu        also run the write workloads under qemu-io and print
#                 "qemu: N faults injected, M went wrong" (never fails)
#   --qemu-only   only the QEMU side (exit 0 whatever it finds)
#   --only OP     only the operations whose name contains OP
#   --errno LIST  comma-separated errnos (default ENOSPC,EIO,SHORT,STICKY;
#                 STICKY: ENOSPC from the N-th call on, write-child only)
#   -v            print the reason of every wrong position in full
#
# Environment: VMDKIT, BUILD_DIR, SRC_DIR (as tests/interop), FAULT_SHIM
# (the shim .so; default $BUILD_DIR/libvmdkit-faultshim.so).  Exit 77 when
# the shim is missing.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img python3 cmp timeout

side=vmdkit
only=""
errnos=ENOSPC,EIO,SHORT,STICKY
verbose=0
while [[ $# -gt 0 ]]; do
  case $1 in
  --qemu) side=both ;;
  --qemu-only) side=qemu ;;
  --only) only=$2; shift ;;
  --errno) errnos=$2; shift ;;
  -v) verbose=1 ;;
  *) die "unknown argument $1" ;;
  esac
  shift
done

: "${FAULT_SHIM:=${BUILD_DIR:-$SRC_DIR/build}/libvmdkit-faultshim.so}"
if [[ ! -f $FAULT_SHIM ]]; then
  echo "SKIP: the fault shim ($FAULT_SHIM) is not built" >&2
  exit 77
fi
FAULT_SHIM=$(realpath "$FAULT_SHIM")
V=$(realpath "$VMDKIT")
SECTORS=$SRC_DIR/tests/fault/sectors.py
K=1024
M=$((1024 * K))
# Everything runs on a tmpfs when /dev/shm is there (FAULT_TMP overrides):
# the faults are simulated, so the file system only has to be fast (an
# fdatasync on a real disk costs more than the rest of a run).
root=$tmpdir
shm=${FAULT_TMP:-/dev/shm}
if [[ -d $shm && -w $shm ]] && root=$(mktemp -d "$shm/vmdkit-fault.XXXXXX" 2>/dev/null); then
  trap 'rm -rf "$tmpdir" "$root"' EXIT
  trap 'exit 143' TERM INT HUP # so that the EXIT trap cleans /dev/shm
else
  root=$tmpdir
fi
fx=$root/fx  # pristine fixtures, one folder per operation
md=$root/m   # models: md/OP/IMG.before, IMG.after (raw)
w=$root/w    # the work folder every run happens in
mkdir -p "$fx" "$md"
t_start=$SECONDS

# ---- helpers -------------------------------------------------------------
fill() { # BYTE COUNT -> stdout
  head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$1")"
}
splice() { # RAW OFFSET DATAFILE: write DATAFILE into RAW at OFFSET
  dd if="$3" of="$1" bs=64K seek="$2" oflag=seek_bytes conv=notrunc status=none
}
first_line() { # FILE: its first non-empty line, never failing
  grep -m1 -v '^$' "$1" 2>/dev/null || true
}
raw_of() { # IMG OUT: the virtual disk of IMG as a raw file
  "$V" convert -O raw "$1" "$2"
}

# Operation registry.  op NAME KIND ERRNOS CMD
#   KIND: cli | convert:OUT | nbd | qemu
#   CMD:  run by eval in the work folder ($V is the CLI)
# and then the arrays, keyed by NAME:
#   CHECK[NAME]="IMG:Q ..."  images checked (Q=1: qemu-img check too); the
#                            models are $md/NAME/IMG.before and .after
#   SAME[NAME]="FILE ..."    files that must stay byte-identical
ops=()
declare -A KIND ERRS CMD CHECK SAME MAXPOS
op() {
  ops+=("$1")
  KIND[$1]=$2
  ERRS[$1]=$3
  CMD[$1]=$4
  CHECK[$1]=""
  SAME[$1]=""
  mkdir -p "$fx/$1" "$md/$1"
}
want() { # NAME: is NAME selected?
  [[ -z $only || $1 == *"$only"* ]]
}

# ---- fixtures ------------------------------------------------------------
# The base every child sits on: 8 MiB, every byte 0x5A.
mkdir -p "$root/common"
(
  cd "$root/common"
  "$V" create -q base.vmdk 8M
  fill 0x5A $((8 * M)) >base.raw
  "$V" write base.vmdk 0 <base.raw
  head -c 200000 /dev/urandom >data200k
  head -c $((2 * M + 12000)) /dev/urandom >data3gt
)
C=$root/common

# a child (subformat SUB, grain G or default) of the 0x5A base in folder D
child_of_base() { # DIR NAME SUBFORMAT [GRAIN]
  cp "$C/base.vmdk" "$1/"
  local o="subformat=$3"
  [[ -n ${4:-} ]] && o+=",grain_size=$4"
  (cd "$1" && "$V" create -q -o "$o" -b base.vmdk "$2")
}

# 1. The bug report: 200000 bytes at 1000000 into a monolithicSparse child
#    of the 0x5A base (partial head and tail grains copied from the base).
n=write-child
op $n cli ENOSPC,EIO,SHORT,STICKY '"$V" write child.vmdk 1000000 <data'
child_of_base "$fx/$n" child.vmdk monolithicSparse
cp "$C/data200k" "$fx/$n/data"
CHECK[$n]="child.vmdk:1"
SAME[$n]="base.vmdk data"
cp "$C/base.raw" "$md/$n/child.vmdk.before"
cp "$C/base.raw" "$md/$n/child.vmdk.after"
splice "$md/$n/child.vmdk.after" 1000000 "$C/data200k"

# 2. A write across 3 grain tables (4 KiB grains: a table covers 2 MiB)
#    into a child that already has table 1 and a grain in it (missing
#    tables 0 and 2 are allocated; an existing grain is overwritten).
n=write-child-3gt
op $n cli ENOSPC,EIO,SHORT '"$V" write child.vmdk $((2 * M - 6000)) <data'
child_of_base "$fx/$n" child.vmdk monolithicSparse 4096
fill 0x11 8192 >"$root/f11"
"$V" write "$fx/$n/child.vmdk" $((2 * M + 8192)) <"$root/f11"
cp "$C/data3gt" "$fx/$n/data"
CHECK[$n]="child.vmdk:1"
SAME[$n]="base.vmdk data"
cp "$C/base.raw" "$md/$n/child.vmdk.before"
splice "$md/$n/child.vmdk.before" $((2 * M + 8192)) "$root/f11"
cp "$md/$n/child.vmdk.before" "$md/$n/child.vmdk.after"
splice "$md/$n/child.vmdk.after" $((2 * M - 6000)) "$C/data3gt"

# 3. The same write into a twoGbMaxExtentSparse child.
n=write-split
op $n cli ENOSPC,EIO,SHORT '"$V" write t.vmdk 1000000 <data'
child_of_base "$fx/$n" t.vmdk twoGbMaxExtentSparse
cp "$C/data200k" "$fx/$n/data"
CHECK[$n]="t.vmdk:1"
SAME[$n]="base.vmdk data"
cp "$md/write-child/child.vmdk.before" "$md/$n/t.vmdk.before"
cp "$md/write-child/child.vmdk.after" "$md/$n/t.vmdk.after"

# 4. vmfsSparse (COWD, made by tests/gen/make_cowd.py, 4 KiB grains: a
#    table covers 16 MiB): into table 1, which does not exist yet, and
#    across grains.  qemu-img check does not know COWD.
n=write-cowd
op $n cli ENOSPC,EIO,SHORT '"$V" write x.vmdk $((16 * M + 1000000)) <data'
python3 "$SRC_DIR/tests/gen/make_cowd.py" --grain 8 "$fx/$n" x
mv "$fx/$n/x.raw" "$md/$n/x.vmdk.before"
cp "$C/data200k" "$fx/$n/data"
CHECK[$n]="x.vmdk:0"
SAME[$n]="data"
cp "$md/$n/x.vmdk.before" "$md/$n/x.vmdk.after"
splice "$md/$n/x.vmdk.after" $((16 * M + 1000000)) "$C/data200k"

# 5. monolithicFlat: one pwrite in place.
n=write-flat
op $n cli ENOSPC,EIO,SHORT '"$V" write flat.vmdk 1000000 <data'
(cd "$fx/$n" && "$V" create -q -o subformat=monolithicFlat flat.vmdk 4M &&
  fill 0x5A $((4 * M)) | "$V" write flat.vmdk 0)
cp "$C/data200k" "$fx/$n/data"
CHECK[$n]="flat.vmdk:1"
SAME[$n]="data"
fill 0x5A $((4 * M)) >"$md/$n/flat.vmdk.before"
cp "$md/$n/flat.vmdk.before" "$md/$n/flat.vmdk.after"
splice "$md/$n/flat.vmdk.after" 1000000 "$C/data200k"

# 6. streamOptimized: an append into grains the stream does not hold yet.
n=write-stream
op $n cli ENOSPC,EIO,SHORT '"$V" write s.vmdk $((2 * M)) <data'
head -c $M /dev/urandom >"$root/s.raw"
truncate -s $((4 * M)) "$root/s.raw"
"$V" convert -f raw -O vmdk -o subformat=streamOptimized "$root/s.raw" "$fx/$n/s.vmdk"
cp "$C/data200k" "$fx/$n/data"
CHECK[$n]="s.vmdk:1"
SAME[$n]="data"
cp "$root/s.raw" "$md/$n/s.vmdk.before"
cp "$root/s.raw" "$md/$n/s.vmdk.after"
splice "$md/$n/s.vmdk.after" $((2 * M)) "$C/data200k"

# 7. commit: the child's grains go into the base.  The child reads the
#    same all along; the base reads as before or as the child.
n=commit
op $n cli ENOSPC,EIO '"$V" commit -q child.vmdk'
child_of_base "$fx/$n" child.vmdk monolithicSparse
"$V" write "$fx/$n/child.vmdk" 1000000 <"$C/data200k"
CHECK[$n]="child.vmdk:1 base.vmdk:1"
cp "$md/write-child/child.vmdk.after" "$md/$n/child.vmdk.before"
cp "$md/write-child/child.vmdk.after" "$md/$n/child.vmdk.after"
cp "$C/base.raw" "$md/$n/base.vmdk.before"
cp "$md/write-child/child.vmdk.after" "$md/$n/base.vmdk.after"

# 8. rebase (safe) onto another base whose first 256 KiB differ: those
#    ranges are copied into the child first; the child reads the same all
#    along and neither base changes.
n=rebase
op $n cli ENOSPC,EIO '"$V" rebase -q -b base2.vmdk child.vmdk'
child_of_base "$fx/$n" child.vmdk monolithicSparse
"$V" write "$fx/$n/child.vmdk" 1000000 <"$C/data200k"
(cd "$fx/$n" && "$V" create -q base2.vmdk 8M && "$V" write base2.vmdk 0 <"$C/base.raw" &&
  fill 0xA5 $((256 * K)) | "$V" write base2.vmdk 0)
CHECK[$n]="child.vmdk:1"
SAME[$n]="base.vmdk base2.vmdk"
cp "$md/write-child/child.vmdk.after" "$md/$n/child.vmdk.before"
cp "$md/write-child/child.vmdk.after" "$md/$n/child.vmdk.after"

# 9. resize: grow a monolithicSparse image from 4 to 12 MiB (new tables).
n=resize
op $n cli ENOSPC,EIO '"$V" resize -q img.vmdk 12M'
(cd "$fx/$n" && "$V" create -q img.vmdk 4M && "$V" write img.vmdk 1000000 <"$C/data200k")
CHECK[$n]="img.vmdk:1"
truncate -s $((4 * M)) "$md/$n/img.vmdk.before"
splice "$md/$n/img.vmdk.before" 1000000 "$C/data200k"
cp "$md/$n/img.vmdk.before" "$md/$n/img.vmdk.after"
truncate -s $((12 * M)) "$md/$n/img.vmdk.after"

# 10. check -r leaks on an image with leaked space in the middle and at
#     the end; it reads the same all along.
n=check-repair
op $n check ENOSPC,EIO '"$V" check -q -r leaks leak.vmdk'
(cd "$fx/$n" && "$V" create -q leak.vmdk 4M && fill 0x41 4096 | "$V" write leak.vmdk 0 &&
  head -c 65536 /dev/urandom >>leak.vmdk && fill 0x42 4096 | "$V" write leak.vmdk 2M &&
  head -c 65536 /dev/urandom >>leak.vmdk)
CHECK[$n]="leak.vmdk:1"
raw_of "$fx/$n/leak.vmdk" "$md/$n/leak.vmdk.before"
cp "$md/$n/leak.vmdk.before" "$md/$n/leak.vmdk.after"

# 11, 12. convert a chain (200000 bytes over a 1 MiB base) to
#     monolithicSparse and to streamOptimized (-t writeback: synced).  A
#     failed convert must remove its output; the source is never touched.
for sub in monolithicSparse streamOptimized; do
  n=convert-$sub
  op $n convert:out.vmdk ENOSPC,EIO "\"\$V\" convert -q -t writeback -m 2 -O vmdk -o subformat=$sub child.vmdk out.vmdk"
  (cd "$fx/$n" && head -c $M "$C/base.raw" >b.raw && "$V" create -q base.vmdk 1M &&
    "$V" write base.vmdk 0 <b.raw && rm b.raw &&
    "$V" create -q -b base.vmdk child.vmdk && "$V" write child.vmdk 500000 <"$C/data200k")
  CHECK[$n]="out.vmdk:1"
  SAME[$n]="base.vmdk child.vmdk"
  head -c $M "$C/base.raw" >"$md/$n/out.vmdk.after"
  splice "$md/$n/out.vmdk.after" 500000 "$C/data200k"
  cp "$md/$n/out.vmdk.after" "$md/$n/out.vmdk.before" # unused: no output before
done

# The fixture and models of operation 1 (write-child) for operation NAME,
# which writes the same 200000 bytes at 1000000 another way.
like_write_child() {
  child_of_base "$fx/$1" child.vmdk monolithicSparse
  cp "$C/data200k" "$fx/$1/data"
  CHECK[$1]="child.vmdk:1"
  SAME[$1]="base.vmdk data"
  cp "$md/write-child/child.vmdk."{before,after} "$md/$1/"
}

# 13. The nbdkit plugin under the shim; qemu-io writes and flushes over NBD.
plugin=${BUILD_DIR:-$SRC_DIR/build}/nbdkit-vmdkit-plugin.so
if command -v nbdkit >/dev/null && command -v qemu-io >/dev/null && [[ -f $plugin ]]; then
  n=nbdkit
  op $n nbd ENOSPC,EIO,SHORT "timeout 60 nbdkit -U - $(printf %q "$plugin") file=child.vmdk --run 'unset LD_PRELOAD; qemu-io -f raw \"\$uri\" -c \"write -s data 1000000 200000\" -c flush'"
  like_write_child "$n"
else
  echo "nbdkit: skipped (nbdkit, qemu-io or the plugin is missing)"
fi

# 14. The FUSE mount under the shim: a client (not under the shim) writes
#     200000 bytes into the mounted raw file with an fsync, then unmounts;
#     the daemon closes (flushes) the image.  As for nbdkit, the client
#     hears of a failure only while it is connected: the bytes decide.
fmnt=$root/fmnt
if [[ -c /dev/fuse ]] && command -v fusermount3 >/dev/null &&
  command -v mountpoint >/dev/null && mkdir -p "$fmnt" &&
  "$V" mount --help >/dev/null 2>&1; then
  n=fuse
  op $n nbd ENOSPC,EIO,SHORT '"$V" mount -f child.vmdk "$fmnt" 2>"$root/fuse-err" & fp=$!
    for i in $(seq 200); do mountpoint -q "$fmnt" && break; sleep 0.05; done
    (unset LD_PRELOAD; dd if=data of="$fmnt/child.raw" bs=200000 seek=1000000 oflag=seek_bytes conv=notrunc,fsync status=none); frc=$?
    fusermount3 -u "$fmnt" 2>/dev/null || fusermount3 -uz "$fmnt"; wait $fp; drc=$?
    cat "$root/fuse-err" >&2; [[ $frc -eq 0 && $drc -eq 0 ]]'
  like_write_child "$n"
else
  echo "fuse: skipped (no /dev/fuse, fusermount3 or vmdkit mount)"
fi

# The QEMU side: the same write workloads under qemu-io.
qemu_ops=()
if command -v qemu-io >/dev/null; then
  for src in write-child write-child-3gt write-split write-flat; do
    n=qemu-$src
    case $src in
    write-child) c='qemu-io -f vmdk -c "write -s data 1000000 200000" child.vmdk' ;;
    write-child-3gt) c="qemu-io -f vmdk -c \"write -s data $((2 * M - 6000)) $((2 * M + 12000))\" child.vmdk" ;;
    write-split) c='qemu-io -f vmdk -c "write -s data 1000000 200000" t.vmdk' ;;
    write-flat) c='qemu-io -f vmdk -c "write -s data 1000000 200000" flat.vmdk' ;;
    esac
    op $n qemu ENOSPC,EIO,SHORT "$c"
    # QEMU allocates 4 KiB grains one by one (data, table, redundant
    # table): thousands of positions; a spread of them is tried
    [[ $src == write-child-3gt ]] && MAXPOS[$n]=60
    qemu_ops+=("$n")
    cp -a "$fx/$src/." "$fx/$n/"
    cp -a "$md/$src/." "$md/$n/"
    CHECK[$n]=${CHECK[$src]}
    SAME[$n]=${SAME[$src]}
  done
fi
echo "fixtures ready in $((SECONDS - t_start)) s"

# ---- one run ---------------------------------------------------------------
# run_op NAME [ENV...]: restore the fixture into $w and run the operation
# there with the shim's ENV; $rc, $w/.out, $w/.err (outside $w: .. )
restore() {
  rm -rf "$w"
  cp -a "$fx/$1" "$w"
}
run_op() {
  local name=$1
  shift
  set +e
  (
    cd "$w" || exit 99
    if [[ $# -gt 0 ]]; then
      export LD_PRELOAD=$FAULT_SHIM FAULT_MATCH=$w "$@"
    fi
    eval "timeout 120 ${CMD[$name]}"
  ) >"$root/out" 2>"$root/err"
  rc=$?
  set -e
}

# The K counted calls of NAME, described one a line in $root/calls.NAME
# (from the shim's log of a run without a fault), checked to end as
# "after".
count_calls() {
  local name=$1
  restore "$name"
  rm -f "$root/count" "$root/log"
  run_op "$name" FAULT_COUNT="$root/count" FAULT_LOG="$root/log"
  if [[ $rc -ne 0 ]]; then
    cat "$root/err" >&2
    die "$name: the run without a fault failed (exit $rc)"
  fi
  why=""
  check_images "$name" 0 after
  if [[ -n $why ]]; then
    [[ -n ${FAULT_KEEP:-} ]] && cp -a "$w" "$FAULT_KEEP"
    die "$name: the run without a fault does not give the after model:$why"
  fi
  K_=$(cat "$root/count" 2>/dev/null || echo 0)
  python3 - "$root/log" "$w" >"$root/calls.$name" <<'EOF'
import os, struct, sys
data = open(sys.argv[1], "rb").read() if os.path.exists(sys.argv[1]) else b""
names = {}
kinds = {1: "write", 2: "ftruncate", 3: "fallocate", 4: "fdatasync", 6: "sync_file_range"}
o = 0
while o + 40 <= len(data):
    magic, kind, fid, _, off, ln, mode, plen = struct.unpack_from("<IIIIQQII", data, o)
    if magic != 0x52434456:
        sys.exit("bad record magic at %d" % o)
    o += 40
    if kind == 5:
        names[fid] = os.path.relpath(data[o:o + plen].decode(), sys.argv[2])
        o += plen
        continue
    f = names.get(fid, "file %d" % fid)
    if kind == 1:
        o += ln
        print("%s %d bytes at %d in %s" % (kinds[kind], ln, off, f))
    elif kind == 2:
        print("ftruncate %s to %d" % (f, off))
    elif kind in (3, 6):
        print("%s %d+%d (mode %d) in %s" % (kinds[kind], off, ln, mode, f))
    else:
        print("%s %s" % (kinds.get(kind, "kind %d" % kind), f))
EOF
}

# check_images NAME RC WANT: (b) and (c) for every image of NAME; WANT is
# "after" (must read exactly as after) or "either" (per sector before or
# after); appends to $why.
check_images() {
  local name=$1 orc=$2 wantm=$3 spec img q m got r
  for spec in ${CHECK[$name]}; do
    img=${spec%:*}
    q=${spec#*:}
    m=$md/$name/$img
    if [[ ${KIND[$name]} == convert:* && $orc -ne 0 && $wantm == either ]]; then
      [[ -e $w/$img ]] && why+=" failed convert left $img behind;"
      continue
    fi
    if [[ $wantm != rerun ]]; then
      set +e
      "$V" check -q "$w/$img" >/dev/null 2>"$root/chk"
      r=$?
      set -e
      if [[ $r -ne 0 && $r -ne 3 ]]; then
        why+=" vmdkit check $img exit $r: $(first_line "$root/chk");"
      fi
    fi
    if [[ $q == 1 && $wantm == either && $cur_errno == ENOSPC ]]; then
      set +e
      qemu-img check -q -f vmdk "$w/$img" >/dev/null 2>"$root/chk"
      r=$?
      set -e
      if [[ $r -ne 0 && $r -ne 3 ]]; then
        why+=" qemu-img check $img exit $r: $(first_line "$root/chk");"
      fi
    fi
    got=$root/got.raw
    rm -f "$got"
    if ! "$V" convert -O raw "$w/$img" "$got" 2>"$root/chk"; then
      why+=" $img does not read: $(first_line "$root/chk");"
      continue
    fi
    if cmp -s "$got" "$m.after"; then
      continue
    fi
    if [[ $wantm != either ]]; then
      why+=" $img does not read as after: $(python3 "$SECTORS" "$m.after" "$m.after" "$got" || true);"
      continue
    fi
    if cmp -s "$got" "$m.before"; then
      continue
    fi
    if ! python3 "$SECTORS" "$m.before" "$m.after" "$got" >"$root/sec"; then
      why+=" $img: $(cat "$root/sec");"
    fi
  done
  local f
  for f in ${SAME[$name]}; do
    cmp -s "$fx/$name/$f" "$w/$f" || why+=" $f changed;"
  done
}

# (a): the exit status and stderr of a faulted run.  CALL: the failed call.
check_exit() {
  local name=$1 call=$2 kind=${KIND[$1]}
  if [[ $rc -eq 0 ]]; then
    # Harmless or not is for check_images to say (the image must read
    # exactly as after).  A failed fdatasync cannot be seen in the bytes:
    # exiting 0 after one means the data may not be on the disk.  (The
    # client of nbdkit cannot hear of a failure after it disconnected.)
    if [[ $kind != nbd && $call == fdatasync* ]]; then
      why+=" exit 0 although '$call' failed;"
    fi
    return 0
  fi
  [[ $kind == qemu || $kind == nbd ]] && return 0
  if [[ $rc -ge 124 ]]; then
    why+=" exit $rc (timeout or signal);"
  fi
  local lines
  if [[ $kind == check ]]; then
    # check -r prints what it finds and repairs; the error is the last line
    lines=1
    tail -n1 "$root/err" >"$root/err1"
    grep -q '^vmdkit: ' "$root/err1" || lines=0
  else
    lines=$(wc -l <"$root/err")
    cp "$root/err" "$root/err1"
  fi
  if [[ $lines -ne 1 ]] || ! head -n1 "$root/err1" | grep -q '^vmdkit: '; then
    why+=" stderr is not one 'vmdkit: ' line: $(head -c 300 "$root/err" | tr '\n' '|' || true);"
    return 0
  fi
  local f named=0
  for f in "$w"/* "$fx/$name"/* ${CHECK[$name]}; do
    f=$(basename "${f%:*}")
    if grep -qF -- "$f" "$root/err1"; then named=1; break; fi
  done
  ((named)) || why+=" the error names no image file: $(cat "$root/err1");"
}

# ---- the loop --------------------------------------------------------------
total=0
cur_errno=ENOSPC
wrong=0
q_total=0
q_wrong=0
run_one_op() {
  local name=$1 is_qemu=0
  [[ ${KIND[$name]} == qemu ]] && is_qemu=1
  count_calls "$name"
  local k=$K_ e
  mapfile -t calls <"$root/calls.$name"
  for e in ${ERRS[$name]//,/ }; do
    [[ ,$errnos, == *",$e,"* ]] || continue
    local nwrong=0 pos stride=1 tried=0 note=""
    if [[ -n ${MAXPOS[$name]:-} && $k -gt ${MAXPOS[$name]} ]]; then
      stride=$(((k + MAXPOS[$name] - 1) / MAXPOS[$name]))
    fi
    for ((pos = 1; pos <= k; pos += stride)); do
      tried=$((tried + 1))
      local call=${calls[pos - 1]:-call $pos}
      why=""
      cur_errno=$e
      restore "$name"
      if [[ $e == STICKY ]]; then
        run_op "$name" FAULT_AT=$pos FAULT_ERRNO=ENOSPC FAULT_STICKY=1
      else
        run_op "$name" FAULT_AT=$pos FAULT_ERRNO=$e
      fi
      local frc=$rc
      check_exit "$name" "$call"
      if [[ $frc -eq 0 ]]; then
        check_images "$name" 0 after
      else
        check_images "$name" "$frc" either
        # (d) later requests work: the same command again, no fault
        run_op "$name"
        if [[ $rc -ne 0 ]]; then
          # A re-run may be refused when the failed run already finished
          # the job (a stream grain cannot be appended twice): fine if the
          # image reads exactly as after.
          local before_why=$why rerr
          rerr=$(first_line "$root/err")
          why=""
          check_images "$name" 0 rerun
          if [[ -n $why ]]; then
            why="$before_why the re-run failed (exit $rc): $rerr;"
          else
            why=$before_why
          fi
        else
          local before_why=$why
          why=""
          check_images "$name" 0 rerun
          [[ -z $why ]] || why="$before_why after the re-run:$why"
          [[ -n $why ]] || why=$before_why
        fi
      fi
      if [[ -n $why ]]; then
        nwrong=$((nwrong + 1))
        if ((verbose)); then
          echo "  WRONG $name $e position $pos ($call), exit $frc:$why"
        else
          echo "  WRONG $name $e position $pos ($call), exit $frc:${why:0:400}"
        fi
      fi
    done
    ((stride == 1)) || note=" (every ${stride}th tried: $tried)"
    echo "$name $e: $k positions$note, $nwrong wrong"
    if ((is_qemu)); then
      q_total=$((q_total + tried))
      q_wrong=$((q_wrong + nwrong))
    else
      total=$((total + tried))
      wrong=$((wrong + nwrong))
    fi
  done
}

for name in "${ops[@]}"; do
  want "$name" || continue
  if [[ ${KIND[$name]} == qemu ]]; then
    [[ $side == vmdkit ]] && continue
  else
    [[ $side == qemu ]] && continue
  fi
  run_one_op "$name"
done

echo "time: $((SECONDS - t_start)) s"
if [[ $side != vmdkit ]]; then
  echo "qemu: $q_total faults injected, $q_wrong went wrong"
fi
if [[ $side == qemu ]]; then
  exit 0
fi
echo "$total faults injected, $wrong went wrong"
[[ $wrong -eq 0 ]] || exit 1
