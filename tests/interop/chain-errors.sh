#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Broken backing chains are refused with one clear error line, a non-zero
# exit, and no file changed:
#  - CID mismatch (the parent written after the child was made, by vmdkit
#    and by qemu-io): the message names both CIDs;
#  - loops (a -> b -> a, a -> a; edited text descriptors): "loops";
#  - an over-deep chain (70 levels made by qemu-img): "more than 64 images",
#    naming the image opened;
#  - a missing parent: the message names the child and the missing file;
#  - create -b over the backing file itself is refused before anything is
#    overwritten.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

cd "$tmpdir"

# sha256 of every regular file in the folder, one line each
snapshot() {
  find . -maxdepth 2 -type f ! -name out ! -name err ! -name 'snap*' -print0 |
    sort -z | xargs -0 sha256sum
}
# CMD... must fail with one error line containing every PATTERN given after
# "--", and leave every file as it was
must_refuse() {
  local pats=() cmd=()
  while [[ $1 != -- ]]; do pats+=("$1"); shift; done
  shift
  cmd=("$@")
  snapshot >snap.before
  run "${cmd[@]}"
  [[ $rc -ne 0 ]] || die "'${cmd[*]}' succeeded; expected a refusal"
  one_error_line "${cmd[*]}"
  local p
  for p in "${pats[@]}"; do
    grep -qF -- "$p" err || die "'${cmd[*]}': error '$(cat err)' does not contain '$p'"
  done
  [[ ! -s out ]] || die "'${cmd[*]}' printed on stdout: $(cat out)"
  snapshot >snap.after
  cmp -s snap.before snap.after || { diff snap.before snap.after >&2; die "'${cmd[*]}' changed files"; }
}

# ---- CID mismatch -------------------------------------------------------------
"$VMDKIT" create -q base.vmdk 2M
printf 'base data' | "$VMDKIT" write base.vmdk 1000
"$VMDKIT" create -q -b base.vmdk child.vmdk
printf 'child data' | "$VMDKIT" write child.vmdk 70000
expect_rc 0 "$VMDKIT" info child.vmdk # consistent so far
want=$(desc_value child.vmdk parentCID)
[[ $want == "$(desc_value base.vmdk CID)" ]] || die "test bug: child's parentCID is not base's CID"
printf 'changed' | "$VMDKIT" write base.vmdk 5000 # gives base a new CID
now=$(desc_value base.vmdk CID)
[[ $now != "$want" ]] || die "writing to the parent did not change its CID"
for cmd in "info child.vmdk" "read child.vmdk 0 512" "map child.vmdk" "check child.vmdk" \
  "compare child.vmdk base.vmdk" "convert child.vmdk out.raw" "info --backing-chain child.vmdk"; do
  # shellcheck disable=SC2086
  must_refuse child.vmdk base.vmdk "$now" "$want" -- "$VMDKIT" $cmd
done
[[ ! -e out.raw ]] || die "a refused convert left its output"
# opening for writing is refused too, and writes nothing
must_refuse child.vmdk "$now" "$want" -- sh -c 'printf x | "$1" write child.vmdk 0' sh "$VMDKIT"
# numbers in the message are the CIDs in the descriptors' hex spelling
grep -q "CID is $now" err && grep -q "parentCID $want" err || die "CID message: $(cat err)"

# the same when qemu-io changes the parent of a qemu-made child
qemu-img create -q -f vmdk qbase.vmdk 1M
qemu-img create -q -f vmdk -b qbase.vmdk -F vmdk qchild.vmdk
expect_rc 0 "$VMDKIT" info qchild.vmdk
qemu-io -c 'write -P 1 0 512' qbase.vmdk >/dev/null
must_refuse qchild.vmdk qbase.vmdk "$(desc_value qbase.vmdk CID)" "$(desc_value qchild.vmdk parentCID)" \
  -- "$VMDKIT" info qchild.vmdk

# ---- loops --------------------------------------------------------------------
# text descriptors (twoGbMaxExtentSparse), so the links are easy to edit
"$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse a.vmdk 1M
"$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse -b a.vmdk b.vmdk
expect_rc 0 "$VMDKIT" info b.vmdk
# relink a to b, with b's CID so that only the loop is wrong
bcid=$(desc_value b.vmdk CID)
sed -i "s/^parentCID=.*/parentCID=$bcid\nparentFileNameHint=\"b.vmdk\"/" a.vmdk
[[ $(desc_value a.vmdk parentFileNameHint) == b.vmdk ]] || die "test bug: a.vmdk not relinked"
must_refuse loops a.vmdk b.vmdk -- "$VMDKIT" info a.vmdk
must_refuse loops a.vmdk b.vmdk -- "$VMDKIT" read b.vmdk 0 1
must_refuse loops -- "$VMDKIT" map --output=json b.vmdk
# a loop through a second name for the same file (a hard link)
ln a.vmdk a2.vmdk
sed -i "s/^parentFileNameHint=.*/parentFileNameHint=\"a2.vmdk\"/" b.vmdk
must_refuse loops -- "$VMDKIT" info b.vmdk
# an image that names itself
"$VMDKIT" create -q -o subformat=twoGbMaxExtentSparse self.vmdk 1M
scid=$(desc_value self.vmdk CID)
sed -i "s/^parentCID=.*/parentCID=$scid\nparentFileNameHint=\"self.vmdk\"/" self.vmdk
must_refuse loops self.vmdk -- "$VMDKIT" info self.vmdk
rm -f a* b* self*

# ---- an over-deep chain -------------------------------------------------------
mkdir deep
qemu-img create -q -f vmdk deep/L0.vmdk 1M
qemu-io -c 'write -P 0x37 0 512' deep/L0.vmdk >/dev/null
for i in $(seq 1 69); do
  qemu-img create -q -f vmdk -b L$((i - 1)).vmdk -F vmdk deep/L$i.vmdk
done
must_refuse "deep/L69.vmdk: the backing chain has more than 64 images" -- "$VMDKIT" info deep/L69.vmdk
must_refuse "more than 64 images" -- "$VMDKIT" read deep/L69.vmdk 0 512
must_refuse "more than 64 images" -- "$VMDKIT" create -b L69.vmdk deep/x.vmdk
[[ ! -e deep/x.vmdk ]] || die "a refused create -b left its file"
# a chain of 21 images is fine, and reads its bottom layer
"$VMDKIT" read deep/L20.vmdk 0 512 >sector.bin || die "a 21-image chain did not open"
cmp sector.bin <(head -c 512 /dev/zero | tr '\0' '\067') || die "the 21-image chain reads wrong data"
rm -rf deep

# ---- a missing parent ---------------------------------------------------------
"$VMDKIT" create -q p.vmdk 1M
"$VMDKIT" create -q -b p.vmdk c.vmdk
mv p.vmdk moved.vmdk
must_refuse c.vmdk p.vmdk -- "$VMDKIT" info c.vmdk
must_refuse c.vmdk p.vmdk -- "$VMDKIT" info --backing-chain --output=json c.vmdk
# one level down: the message names the missing file
mv moved.vmdk p.vmdk
"$VMDKIT" create -q -b c.vmdk gc.vmdk
expect_rc 0 "$VMDKIT" info --backing-chain gc.vmdk
mv p.vmdk moved.vmdk
must_refuse p.vmdk -- "$VMDKIT" read gc.vmdk 0 1
must_refuse gone.vmdk -- "$VMDKIT" create -b gone.vmdk new.vmdk
[[ ! -e new.vmdk ]] || die "create -b of a missing backing file left its file"

# ---- create must not overwrite its own backing chain --------------------------
mv moved.vmdk p.vmdk
must_refuse "refusing to overwrite" -- "$VMDKIT" create -b p.vmdk p.vmdk
must_refuse "refusing to overwrite" -- "$VMDKIT" create -b c.vmdk p.vmdk
must_refuse "refusing to overwrite" -- "$VMDKIT" convert -O vmdk gc.vmdk c.vmdk
must_refuse "refusing to overwrite" -- "$VMDKIT" convert -O vmdk -B c.vmdk gc.vmdk p.vmdk

# ---- command-line mistakes around -b / -F -----------------------------------------
must_refuse "-F" -- "$VMDKIT" create -F vmdk lone.vmdk 1M
must_refuse "raw image cannot have a backing file" -- "$VMDKIT" create -f raw -b p.vmdk lone.img
must_refuse "expected FILE SIZE" -- "$VMDKIT" create lone.vmdk
must_refuse "sparse" -- "$VMDKIT" create -o subformat=monolithicFlat -b p.vmdk lone.vmdk
must_refuse "unknown image format" -- "$VMDKIT" create -b p.vmdk -F qcow2 lone.vmdk
must_refuse "-b" -- "$VMDKIT" rebase -F vmdk c.vmdk
must_refuse "expected one FILE" -- "$VMDKIT" commit
[[ ! -e lone.vmdk && ! -e lone.img ]] || die "a refused create left a file"
for cmd in commit rebase resize; do
  expect_rc 0 "$VMDKIT" $cmd --help
  grep -q "^Usage: vmdkit $cmd " out || die "$cmd --help: $(head -1 out)"
  "$VMDKIT" --help | grep -q "^  $cmd " || die "vmdkit --help does not list $cmd"
done
exit 0
