#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Nothing changes on refusal, and read-only opens never write: for every
# subformat, a chain, a dirty image and a list of broken or refused images,
# the sha256, size and mtime of EVERY file in the image's folder are
# recorded before and after each vmdkit command and must be equal -- not
# even the CID or the uncleanShutdown byte may be rewritten.
#  - read-only commands (info, info --backing-chain, check, map, read,
#    compare, convert as the source, bench) on every subformat succeed and
#    change nothing;
#  - images that fail to open (corrupt header, CID mismatch, missing
#    extent, truncated, the fuzzed corpus file) are refused by every
#    command, read-write ones included;
#  - refused writes (past the end of the disk, into an RDONLY extent, over
#    a stream grain, into seSparse), refused resizes, commits and rebases
#    leave every file as it was.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3

cd "$tmpdir"
V=$VMDKIT
mkdir conv

# DIR CMD...: run CMD; die if any file under DIR changed.  $rc is CMD's
# exit status; stdout/stderr in out/err.
unchanged() {
  local dir=$1
  shift
  tree_state "$dir" >state.before
  [[ -s state.before ]] || die "test bug: no files under $dir"
  run "$@"
  tree_state "$dir" >state.after
  if ! cmp -s state.before state.after; then
    diff state.before state.after >&2 || true
    die "'$*' changed files under $dir (exit $rc: $(head -c 300 err))"
  fi
}

# DIR CMD...: CMD must succeed and change nothing under DIR
ro_ok() {
  unchanged "$@"
  [[ $rc -eq 0 ]] || die "'${*:2}' exited $rc: $(head -c 300 err)"
}

# DIR PATTERN CMD...: CMD must fail with one error line containing PATTERN
# and change nothing under DIR
refused() {
  local dir=$1 pat=$2
  shift 2
  unchanged "$dir" "$@"
  [[ $rc -ne 0 ]] || die "'$*' succeeded; expected a refusal ($pat)"
  one_error_line "$*"
  grep -qF -- "$pat" err || die "'$*': error '$(cat err)' does not contain '$pat'"
}

# the virtual size of IMG in bytes
virtual_size() {
  "$V" info "$1" | sed -n 's/^virtual size: .*(\([0-9]*\) bytes)$/\1/p'
}

python3 -c "import random; random.seed(61); open('pat.bin','wb').write(bytes(random.getrandbits(8) for _ in range(300000)))"

# ---- images of every subformat, with data --------------------------------------
subformats="monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized vmfs"
images=()
for sf in $subformats; do
  mkdir "$sf"
  "$V" create -q -o subformat=$sf "$sf/d.vmdk" 1M
  "$V" write "$sf/d.vmdk" 70000 <pat.bin
  images+=("$sf/d.vmdk")
done
mkdir raw
"$V" create -q -f raw raw/d.img 1M
"$V" write raw/d.img 70000 <pat.bin
images+=(raw/d.img)
mkdir cowd se
python3 "$SRC_DIR/tests/gen/make_cowd.py" cowd d >/dev/null
python3 "$SRC_DIR/tests/gen/make_sesparse.py" se d >/dev/null
images+=(cowd/d.vmdk cowd/d-delta.vmdk se/d.vmdk)
# a chain (child over monolithicSparse) in one folder
mkdir chain
"$V" create -q chain/base.vmdk 1M
"$V" write chain/base.vmdk 0 <pat.bin
"$V" create -q -b base.vmdk chain/child.vmdk
printf 'child data' | "$V" write chain/child.vmdk 100000
images+=(chain/child.vmdk)
# a dirty image: its uncleanShutdown byte set (as after a crash); read-only
# opens must leave it set
mkdir dirty
cp monolithicSparse/d.vmdk dirty/d.vmdk
printf '\001' | dd of=dirty/d.vmdk bs=1 seek=72 conv=notrunc status=none
expect_rc 0 "$V" info dirty/d.vmdk
grep -q 'cleanly shut down: no' out || die "test bug: dirty/d.vmdk is not dirty"
images+=(dirty/d.vmdk)
# a stream as QEMU lays it out (tables at the front), when qemu-img is there
if command -v qemu-img >/dev/null; then
  mkdir qstream
  qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized raw/d.img qstream/d.vmdk
  images+=(qstream/d.vmdk)
fi

# ---- read-only commands change nothing ---------------------------------------------
for img in "${images[@]}"; do
  dir=${img%%/*}
  size=$(virtual_size "$img")
  ro_ok "$dir" "$V" info "$img"
  ro_ok "$dir" "$V" info --backing-chain --output=json "$img"
  ro_ok "$dir" "$V" check "$img"
  unchanged "$dir" "$V" map "$img" # (human: refused for compressed data)
  ro_ok "$dir" "$V" map --output=json "$img"
  ro_ok "$dir" "$V" read "$img" 0 "$size"
  ro_ok "$dir" "$V" compare "$img" "$img"
  ro_ok "$dir" "$V" convert "$img" conv/x.raw
  ro_ok "$dir" "$V" bench -c 16 -s 4k "$img"
  rm -f conv/*
done

# ---- refused writes, resizes, commits, rebases on images that open ----------------------
for img in "${images[@]}"; do
  dir=${img%%/*}
  size=$(virtual_size "$img")
  refused "$dir" "nothing was written" sh -c 'printf xyz | "$1" write "$2" "$3"' sh "$V" "$img" $((size - 1))
  refused "$dir" "negative values are not allowed" sh -c 'printf x | "$1" write "$2" -- -1' sh "$V" "$img"
  refused "$dir" "past the end of the disk" "$V" read "$img" $((size - 1)) 2
done
refused monolithicSparse "has no backing file" "$V" commit monolithicSparse/d.vmdk
refused monolithicSparse "nothere.vmdk" "$V" rebase -u -b nothere.vmdk monolithicSparse/d.vmdk
refused monolithicSparse "nothere.vmdk" "$V" rebase -b nothere.vmdk monolithicSparse/d.vmdk
refused monolithicSparse "nothere.vmdk" "$V" create -q -b nothere.vmdk monolithicSparse/d.vmdk
refused chain "is the backing file" "$V" create -q -b base.vmdk chain/base.vmdk
refused chain "backing" "$V" convert -O vmdk -B base.vmdk chain/child.vmdk chain/base.vmdk
refused raw "raw" "$V" rebase -u -b ../monolithicSparse/d.vmdk raw/d.img
refused streamOptimized "cannot be resized" "$V" resize streamOptimized/d.vmdk +1M
refused se "cannot be resized" "$V" resize se/d.vmdk +1M
refused monolithicSparse "--shrink" "$V" resize monolithicSparse/d.vmdk 512K
# a stream grain is written once
refused streamOptimized "already in the stream" sh -c 'printf x | "$1" write streamOptimized/d.vmdk 70000' sh "$V"
# seSparse is read-only
refused se "read-only" sh -c 'printf x | "$1" write se/d.vmdk 0' sh "$V"
# an RDONLY extent (a flat image whose extent line says RDONLY)
mkdir rdonly
cp monolithicFlat/d-flat.vmdk rdonly/d-flat.vmdk
sed 's/^RW /RDONLY /' monolithicFlat/d.vmdk >rdonly/d.vmdk
grep -q '^RDONLY ' rdonly/d.vmdk || die "test bug: no RDONLY extent"
refused rdonly "RDONLY" sh -c 'printf x | "$1" write rdonly/d.vmdk 0' sh "$V"
refused rdonly "cannot be resized" "$V" resize rdonly/d.vmdk +1M
ro_ok rdonly "$V" read rdonly/d.vmdk 0 4096
# a write whose range is partly writable is refused whole, before anything
mkdir mixed
cp monolithicFlat/d-flat.vmdk mixed/a-flat.vmdk
cp monolithicFlat/d-flat.vmdk mixed/b-flat.vmdk
cat >mixed/d.vmdk <<'EOF'
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"
RW 2048 FLAT "a-flat.vmdk" 0
RDONLY 2048 FLAT "b-flat.vmdk" 0
EOF
refused mixed "RDONLY" sh -c 'head -c 8192 pat.bin | "$1" write mixed/d.vmdk $((1048576 - 4096))' sh "$V"

# ---- images that do not open: every command refuses, nothing changes ----------------------
broken=()
mkdir corrupt-header
cp monolithicSparse/d.vmdk corrupt-header/d.vmdk
printf '\003' | dd of=corrupt-header/d.vmdk bs=1 seek=20 conv=notrunc status=none # grain 3
broken+=("corrupt-header/d.vmdk|grain size")
mkdir cid-mismatch
cp chain/base.vmdk chain/child.vmdk cid-mismatch/
printf 'new' | "$V" write cid-mismatch/base.vmdk 0 # renews base's CID
broken+=("cid-mismatch/child.vmdk|was changed after it was made")
mkdir missing-extent
cp monolithicFlat/d.vmdk missing-extent/d.vmdk
broken+=("missing-extent/d.vmdk|No such file")
mkdir truncated
head -c 1000 monolithicSparse/d.vmdk >truncated/d.vmdk
broken+=("truncated/d.vmdk|truncated/d.vmdk")
mkdir cowd-bad
python3 "$SRC_DIR/tests/gen/make_cowd.py" --corrupt gdes-huge cowd-bad d >/dev/null
broken+=("cowd-bad/d.vmdk|does not fit in the file")
mkdir se-bad
python3 "$SRC_DIR/tests/gen/make_sesparse.py" --corrupt replay se-bad d >/dev/null
broken+=("se-bad/d.vmdk|journal must be replayed")
if [[ -f $CORPUS/qemu-sample-images/afl9.vmdk ]]; then
  mkdir afl9
  cp "$CORPUS/qemu-sample-images/afl9.vmdk" afl9/
  broken+=("afl9/afl9.vmdk|afl9.vmdk")
fi
for entry in "${broken[@]}"; do
  img=${entry%%|*} pat=${entry#*|}
  dir=${img%%/*}
  refused "$dir" "$pat" "$V" info "$img"
  refused "$dir" "$pat" "$V" info --backing-chain "$img"
  refused "$dir" "$pat" "$V" check "$img"
  refused "$dir" "$pat" "$V" map "$img"
  refused "$dir" "$pat" "$V" read "$img" 0 512
  refused "$dir" "$pat" "$V" compare "$img" raw/d.img
  refused "$dir" "$pat" "$V" convert "$img" conv/x.raw
  [[ ! -e conv/x.raw ]] || die "a refused convert of $img left its output"
  refused "$dir" "$pat" "$V" bench -c 1 "$img"
  refused "$dir" "$pat" sh -c 'printf x | "$1" write "$2" 0' sh "$V" "$img"
  refused "$dir" "$pat" "$V" resize "$img" +1M
  refused "$dir" "$pat" "$V" commit "$img"
  # (rebase -u opens the image alone: it is how a CID mismatch is repaired)
  [[ $dir == cid-mismatch ]] || refused "$dir" "$pat" "$V" rebase -u -b ../raw/d.img "$img"
  refused "$dir" "$pat" "$V" rebase -b ../raw/d.img "$img"
  refused "$dir" "$pat" "$V" bench -w -c 1 "$img"
done
# the repair that is allowed: relinking the child with rebase -u
expect_rc 0 "$V" rebase -u -b base.vmdk cid-mismatch/child.vmdk
expect_rc 0 "$V" info cid-mismatch/child.vmdk
echo "refusal-unchanged: all checks passed"
