#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# bench/run.sh runs end to end on a tiny workload: it exits 0, prints the
# results table with every case, and every output was verified by qemu-img
# in the run (the "checked" column).  Timing is never checked here.
source "$(dirname "$0")/../common.sh"
export PATH=$PATH:/usr/sbin:/sbin
need qemu-img mkfs.ext4 debugfs python3
[[ -x /usr/bin/time ]] || { echo "SKIP: /usr/bin/time is not installed" >&2; exit 77; }

expect_rc 0 env VMDKIT="$VMDKIT" bash "$SRC_DIR/bench/run.sh" --quick \
  --rounds 1 --size-mib 64 --workdir "$tmpdir/work" --out "$tmpdir/latest.md"
out=$tmpdir/out
cp "$out" "$tmpdir/stdout.md"
same "$tmpdir/stdout.md" "$tmpdir/latest.md"
grep -q '^| case | mode | vmdkit s | peer | peer s | ratio |' "$out" ||
  die "no results table in the output"
for c in 1 2 3 4 5 6; do
  grep -q "^| $c " "$out" || die "no row for case $c in the table"
done
# Every row of the main table: each side verified in its one round.
rows=$(grep -c '^| [1-6] ' "$out")
checked=$(grep -c '^| [1-6] .* | 1/1, 1/1 |$' "$out")
[[ $rows -ge 10 && $rows -eq $checked ]] ||
  die "$checked of $rows table rows show both outputs verified"
# case 8, QEMU's formats through qemu-nbd (qcow2 in and out), verified too
if command -v qemu-nbd >/dev/null 2>&1; then
  for c in 8a 8b 8c; do
    grep -q "^| $c .* | 1/1, 1/1 |\$" "$out" || die "no verified row for case $c"
  done
fi
if command -v strace >/dev/null 2>&1; then
  grep -q '^| write calls to files ' "$out" || die "no case 7 (strace) table"
fi
[[ ! -e $tmpdir/work/out ]] || die "the outputs were not removed"
