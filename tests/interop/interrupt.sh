#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Ctrl-C (SIGINT) in the middle of convert, commit and rebase: the command
# stops within moments, says so in one error line, exits non-zero, and
# leaves valid images that read what they read before -- or, for convert,
# no partial output at all.
#
# The commands are slowed down deterministically, not raced: strace delays
# every pwrite64 by 20 ms (fault injection), and the signal is sent once a
# number of data writes (of 64 KiB or more: not the small metadata
# writes of creating the output, which come before the command handles
# signals -- a background job of a script starts with SIGINT ignored) went
# through, so it always lands mid-copy.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need strace qemu-img python3

M=$((1024 * 1024))
# (LeakSanitizer cannot run under ptrace: ASan builds need detect_leaks=0)
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0

data_writes() { # LOG: completed pwrite64 calls of 64 KiB or more
  awk '/pwrite64\(/ && match($0, /= [0-9]+/) {
         if (substr($0, RSTART + 2, RLENGTH - 2) + 0 >= 65536) n++
       } END { print n + 0 }' "$1"
}
data_bytes() { # LOG: bytes those calls wrote
  awk '/pwrite64\(/ && match($0, /= [0-9]+/) {
         b = substr($0, RSTART + 2, RLENGTH - 2) + 0
         if (b >= 65536) n += b
       } END { printf "%d\n", n }' "$1"
}

# interrupted AFTER_WRITES CMD...: run CMD under strace with slowed writes,
# send SIGINT to it after AFTER_WRITES completed data writes, wait; $rc
# is its exit status and $tmpdir/err its stderr.
interrupted() {
  local after=$1
  shift
  local log=$tmpdir/strace.log
  rm -f "$log"
  set +e
  strace -f -qq -o "$log" -e trace=pwrite64 \
    -e inject=pwrite64:delay_exit=20000 "$@" >"$tmpdir/out" 2>"$tmpdir/err" &
  local tracer=$! child="" i name
  name=$(basename "$1")
  name=${name:0:15} # the kernel's command name (comm) is cut at 15

  for ((i = 0; i < 3000; i++)); do # at most 30 s
    # (strace forks short-lived helpers first: wait for the command itself)
    [[ -z $child ]] && child=$(pgrep -x -P "$tracer" "$name" | head -1)
    if [[ -n $child && -f $log ]] &&
      (($(data_writes "$log") >= after)); then
      break
    fi
    kill -0 "$tracer" 2>/dev/null || break
    sleep 0.01
  done
  local at=0
  [[ -f $log ]] && at=$(data_bytes "$log")
  [[ -n $child ]] && kill -INT "$child" 2>/dev/null
  wait "$tracer"
  rc=$?
  set -e
  local writes bytes
  writes=$(data_writes "$log")
  bytes=$(data_bytes "$log")
  echo "  ${*:2:4}: SIGINT after $after writes ($at bytes); it made" \
    "$writes ($bytes bytes), exit $rc: $(head -c 200 "$tmpdir/err")"
  ((rc != 0)) || die "$*: still exited 0 (the signal came too late?)"
  [[ $(wc -l <"$tmpdir/err") -eq 1 ]] && grep -q '^vmdkit: .*\(interrupted\|cancelled\)' "$tmpdir/err" ||
    { cat "$tmpdir/err" >&2; die "$*: not one 'vmdkit: ... interrupted/cancelled' line"; }
  # It stopped soon: the write under way finishes (a streamOptimized batch
  # is 16 MiB), then nothing more -- far less than the rest of the job
  # (48 MiB in all) needs.
  ((bytes - at <= 20 * M)) ||
    die "$*: went on for $((bytes - at)) bytes after SIGINT"
}

random_file() { # FILE MiB
  head -c $(($2 * M)) /dev/urandom >"$1"
}

# ---- convert: the partial output is removed ------------------------------
random_file "$tmpdir/src.raw" 48
for fmt in "vmdk" "vmdk -o subformat=streamOptimized" "vmdk -o subformat=twoGbMaxExtentSparse" "raw"; do
  # shellcheck disable=SC2086
  interrupted 8 "$VMDKIT" convert -f raw -O $fmt "$tmpdir/src.raw" "$tmpdir/dst.img"
  leftovers=$(find "$tmpdir" -name 'dst*')
  [[ -z $leftovers ]] || die "convert -O $fmt: interrupted, left $leftovers"
done
# Without the signal the same command completes (the test's baseline).
"$VMDKIT" convert -f raw -O vmdk "$tmpdir/src.raw" "$tmpdir/dst.vmdk"
qemu-img compare -q -f raw -F vmdk "$tmpdir/src.raw" "$tmpdir/dst.vmdk" ||
  die "uninterrupted convert differs from its source"
rm -f "$tmpdir/dst.vmdk"

# ---- commit: base and child stay valid, the chain reads the same ---------
random_file "$tmpdir/base.raw" 48
qemu-img convert -f raw -O vmdk "$tmpdir/base.raw" "$tmpdir/base.vmdk"
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$tmpdir/child.vmdk"
random_file "$tmpdir/new.raw" 40
qemu-io -f vmdk -c "write -s $tmpdir/new.raw 4M 40M" "$tmpdir/child.vmdk" >/dev/null
cp "$tmpdir/base.raw" "$tmpdir/want.raw" # what the chain reads
dd if="$tmpdir/new.raw" of="$tmpdir/want.raw" bs=1M seek=4 conv=notrunc status=none
qemu-img compare -q -f raw -F vmdk "$tmpdir/want.raw" "$tmpdir/child.vmdk" ||
  die "commit setup: the chain does not read what the test expects (test bug)"
child_sha=$(sha "$tmpdir/child.vmdk")

interrupted 8 "$VMDKIT" commit "$tmpdir/child.vmdk"
[[ $(sha "$tmpdir/child.vmdk") == "$child_sha" ]] ||
  # the one change allowed: parentCID follows the base's new CID
  [[ $(desc_value "$tmpdir/child.vmdk" parentCID) == $(desc_value "$tmpdir/base.vmdk" CID) ]] ||
  die "commit: interrupted, the child changed (not only its parentCID)"
qemu-img check -q "$tmpdir/base.vmdk" || die "commit: interrupted, qemu-img check of the base fails"
qemu-img check -q "$tmpdir/child.vmdk" || die "commit: interrupted, qemu-img check of the child fails"
"$VMDKIT" check "$tmpdir/base.vmdk" >/dev/null || die "commit: interrupted, vmdkit check of the base fails"
qemu-img compare -q -f raw -F vmdk "$tmpdir/want.raw" "$tmpdir/child.vmdk" ||
  die "commit: interrupted, the chain (qemu-img) no longer reads what it read"
"$VMDKIT" read "$tmpdir/child.vmdk" 0 $((48 * M)) >"$tmpdir/got.raw" ||
  die "commit: interrupted, vmdkit cannot read the chain any more"
same "$tmpdir/want.raw" "$tmpdir/got.raw"
# The commit can be run again, to the end.
"$VMDKIT" commit -q "$tmpdir/child.vmdk"
qemu-img compare -q -f raw -F vmdk "$tmpdir/want.raw" "$tmpdir/base.vmdk" ||
  die "commit after an interrupted one: the base is not the chain's content"

# ---- rebase (safe mode): the old link stays until the copy is complete ----
random_file "$tmpdir/b1.raw" 48
qemu-img convert -f raw -O vmdk "$tmpdir/b1.raw" "$tmpdir/b1.vmdk"
qemu-img create -q -f vmdk "$tmpdir/b2.vmdk" 48M
qemu-img create -q -f vmdk -b b1.vmdk -F vmdk "$tmpdir/c.vmdk"
qemu-io -f vmdk -c "write -P 0x5a 0 1M" "$tmpdir/c.vmdk" >/dev/null
cp "$tmpdir/b1.raw" "$tmpdir/cwant.raw"
printf '\x5a%.0s' $(seq 1 $M) | dd of="$tmpdir/cwant.raw" conv=notrunc status=none
interrupted 8 "$VMDKIT" rebase -b b2.vmdk -F vmdk "$tmpdir/c.vmdk"
[[ $(desc_value "$tmpdir/c.vmdk" parentFileNameHint) == b1.vmdk ]] ||
  die "rebase: interrupted, but the child already names $(desc_value "$tmpdir/c.vmdk" parentFileNameHint)"
qemu-img check -q "$tmpdir/c.vmdk" || die "rebase: interrupted, qemu-img check of the child fails"
qemu-img compare -q -f raw -F vmdk "$tmpdir/cwant.raw" "$tmpdir/c.vmdk" ||
  die "rebase: interrupted, the child no longer reads what it read"
"$VMDKIT" read "$tmpdir/c.vmdk" 0 $((48 * M)) >"$tmpdir/cgot.raw"
same "$tmpdir/cwant.raw" "$tmpdir/cgot.raw"
"$VMDKIT" rebase -q -b b2.vmdk -F vmdk "$tmpdir/c.vmdk"
qemu-img compare -q -f raw -F vmdk "$tmpdir/cwant.raw" "$tmpdir/c.vmdk" ||
  die "rebase after an interrupted one: the child does not read the same"
echo "interrupt: convert (4 formats), commit and rebase stop cleanly"
