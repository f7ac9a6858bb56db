#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# --confine (VMDK_OPEN_CONFINE) on every command: extent files and backing
# files that resolve -- after "..", symbolic links and absolute names --
# outside the folder of the image named on the command line are refused
# before they are opened, with one error line naming the image, the path
# and where it resolves; no file changes.  Without --confine the same
# images open and read what they point at (so every refusal below is
# --confine's doing).  Inside the folder everything keeps working: absolute
# names, symlinks to files inside, a symlinked image folder, parents in a
# subfolder.  For a chain every layer is held to the TOP image's folder.
# A missing extent gives the usual "missing file" error; an extent that is
# a FIFO is refused at once (it used to block the open forever).
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3

cd "$tmpdir"
real=$(pwd -P)
mkdir img img/sub outside
V=$VMDKIT

# ---- fixtures -----------------------------------------------------------------
python3 - <<'EOF'
import random
random.seed(6)
open("outside/secret.bin", "wb").write(bytes(random.getrandbits(8) for _ in range(1 << 20)))
open("pattern.bin", "wb").write(bytes(random.getrandbits(8) for _ in range(1 << 20)))
EOF
"$V" create -q -o subformat=monolithicFlat img/a.vmdk 1M
"$V" write img/a.vmdk 0 <pattern.bin
cmp -s img/a-flat.vmdk pattern.bin || die "fixture: a-flat.vmdk does not hold the pattern"

# IMG with the extent of img/a.vmdk renamed to NAME
flat_naming() {
  sed "s|\"a-flat.vmdk\"|\"$2\"|" img/a.vmdk >"$1"
  grep -qF "\"$2\"" "$1" || die "fixture: $1 does not name $2"
}
flat_naming img/dotdot.vmdk ../outside/secret.bin
flat_naming img/abs-out.vmdk "$tmpdir/outside/secret.bin"
flat_naming img/abs-in.vmdk "$tmpdir/img/a-flat.vmdk"
ln -s ../outside/secret.bin img/link-out-flat.vmdk
flat_naming img/link-out.vmdk link-out-flat.vmdk
cp img/a-flat.vmdk img/sub/real-flat.vmdk
ln -s sub/real-flat.vmdk img/link-in-flat.vmdk
flat_naming img/link-in.vmdk link-in-flat.vmdk
flat_naming img/missing.vmdk gone-flat.vmdk
ln -s ../outside/nothing-here img/dangling-flat.vmdk
flat_naming img/dangling.vmdk dangling-flat.vmdk
mkfifo img/fifo-flat.vmdk
flat_naming img/fifo.vmdk fifo-flat.vmdk
ln -s img imglink

# chains: a parent outside, in a subfolder, and layers whose own files
# escape
"$V" create -q outside/base.vmdk 1M
"$V" write outside/base.vmdk 0 <pattern.bin
"$V" create -q -b ../outside/base.vmdk img/child-out.vmdk
"$V" create -q img/sub/base.vmdk 1M
"$V" write img/sub/base.vmdk 0 <pattern.bin
"$V" create -q -b sub/base.vmdk img/child-in.vmdk
sed 's|"a-flat.vmdk"|"../../outside/secret.bin"|' img/a.vmdk >img/sub/esc-base.vmdk
"$V" create -q -b sub/esc-base.vmdk img/child-deep.vmdk
sed 's|"a-flat.vmdk"|"../a-flat.vmdk"|' img/a.vmdk >img/sub/up-base.vmdk
"$V" create -q -b sub/up-base.vmdk img/child-up.vmdk
"$V" create -q -b ../../outside/base.vmdk img/sub/mid.vmdk
"$V" create -q -b sub/mid.vmdk img/child-mid.vmdk

outside="(refused: the image is opened confined to its folder)"
# the error for IMAGE whose WHAT (extent file / backing file) PATH resolves
# to REAL outside ROOT
refusal() {
  echo "vmdkit: $1: $2 $3 resolves to $4, outside the image's folder $5 $outside"
}

# CMD... must fail with exactly the error line WANT (given first) and
# change no file under img/ and outside/
must_refuse() {
  local want=$1
  shift
  tree_state img outside >state.before
  run "$@"
  [[ $rc -ne 0 ]] || die "'$*' succeeded; expected: $want"
  one_error_line "$*"
  [[ "$(cat err)" == "$want" ]] || die "'$*': error
  got:  $(cat err)
  want: $want"
  tree_state img outside >state.after
  cmp -s state.before state.after || { diff state.before state.after >&2; die "'$*' changed files"; }
}

# Every command on IMAGE with --confine must be refused with WANT.  For
# read-only commands the image opens without --confine (checked by the
# caller) so the refusal is --confine's.
every_command_refuses() {
  local img=$1 want=$2
  must_refuse "$want" "$V" info --confine "$img"
  must_refuse "$want" "$V" info --confine --backing-chain --output=json "$img"
  must_refuse "$want" "$V" check --confine "$img"
  must_refuse "$want" "$V" map --confine --output=json "$img"
  must_refuse "$want" "$V" read --confine "$img" 0 4096
  must_refuse "$want" "$V" compare --confine "$img" img/a.vmdk
  must_refuse "$want" "$V" convert --confine "$img" conv.raw
  [[ ! -e conv.raw ]] || die "a refused convert left conv.raw"
  must_refuse "$want" "$V" convert --confine -O vmdk "$img" img/conv.vmdk
  [[ ! -e img/conv.vmdk ]] || die "a refused convert left img/conv.vmdk"
  must_refuse "$want" sh -c 'printf x | "$1" write --confine "$2" 0' sh "$V" "$img"
  must_refuse "$want" "$V" resize --confine "$img" +1M
  must_refuse "$want" "$V" bench --confine -c 1 "$img"
  must_refuse "$want" "$V" bench --confine -w -c 1 "$img"
}

# ---- ".." out of the folder -----------------------------------------------------
expect_rc 0 "$V" read img/dotdot.vmdk 0 1M
cmp -s out pattern.bin && die "test bug: secret.bin is the pattern"
cmp -s out outside/secret.bin || die "without --confine, dotdot.vmdk does not read secret.bin"
every_command_refuses img/dotdot.vmdk \
  "$(refusal img/dotdot.vmdk "extent file" img/../outside/secret.bin "$real/outside/secret.bin" "$real/img")"

# ---- absolute paths -------------------------------------------------------------
expect_rc 0 "$V" read img/abs-out.vmdk 0 1M
cmp -s out outside/secret.bin || die "without --confine, an absolute extent path does not work"
every_command_refuses img/abs-out.vmdk \
  "$(refusal img/abs-out.vmdk "extent file" "$tmpdir/outside/secret.bin" "$real/outside/secret.bin" "$real/img")"
# an absolute path inside the folder is fine
expect_rc 0 "$V" read --confine img/abs-in.vmdk 0 1M
cmp -s out pattern.bin || die "--confine: an absolute extent path inside the folder reads wrongly"

# ---- symbolic links -------------------------------------------------------------
expect_rc 0 "$V" read img/link-out.vmdk 0 1M
cmp -s out outside/secret.bin || die "without --confine, a symlinked extent does not work"
every_command_refuses img/link-out.vmdk \
  "$(refusal img/link-out.vmdk "extent file" img/link-out-flat.vmdk "$real/outside/secret.bin" "$real/img")"
# a symlink from inside to inside is fine
expect_rc 0 "$V" read --confine img/link-in.vmdk 0 1M
cmp -s out pattern.bin || die "--confine: a symlink inside the folder reads wrongly"
# the image's folder itself reached through a symlink is fine...
expect_rc 0 "$V" read --confine imglink/a.vmdk 0 1M
cmp -s out pattern.bin || die "--confine: an image in a symlinked folder reads wrongly"
expect_rc 0 "$V" check --confine imglink/link-in.vmdk
# ...and ".." still counts from where the folder really is
must_refuse "$(refusal imglink/dotdot.vmdk "extent file" imglink/../outside/secret.bin "$real/outside/secret.bin" "$real/img")" \
  "$V" info --confine imglink/dotdot.vmdk

# ---- missing, dangling, FIFO ------------------------------------------------------
want="vmdkit: img/missing.vmdk: extent 0: cannot open img/gone-flat.vmdk: No such file or directory"
must_refuse "$want" "$V" info img/missing.vmdk
must_refuse "$want" "$V" info --confine img/missing.vmdk
must_refuse "vmdkit: img/dangling.vmdk: extent 0: cannot open img/dangling-flat.vmdk: No such file or directory" \
  "$V" info img/dangling.vmdk
must_refuse "vmdkit: img/dangling.vmdk: extent file img/dangling-flat.vmdk is a symbolic link to a file that does not exist" \
  "$V" info --confine img/dangling.vmdk
want="vmdkit: img/fifo.vmdk: extent 0: cannot open img/fifo-flat.vmdk: not a regular file or block device"
must_refuse "$want" timeout 20 "$V" info img/fifo.vmdk
must_refuse "$want" timeout 20 "$V" info --confine img/fifo.vmdk
must_refuse "vmdkit: img/fifo-flat.vmdk: not a regular file or block device" timeout 20 "$V" info img/fifo-flat.vmdk

# ---- backing chains ----------------------------------------------------------------
expect_rc 0 "$V" read img/child-out.vmdk 0 1M
cmp -s out pattern.bin || die "without --confine, a parent in ../ does not read through"
every_command_refuses img/child-out.vmdk \
  "$(refusal img/child-out.vmdk "backing file" img/../outside/base.vmdk "$real/outside/base.vmdk" "$real/img")"
must_refuse "$(refusal img/child-out.vmdk "backing file" img/../outside/base.vmdk "$real/outside/base.vmdk" "$real/img")" \
  "$V" commit --confine img/child-out.vmdk
must_refuse "$(refusal img/child-out.vmdk "backing file" img/../outside/base.vmdk "$real/outside/base.vmdk" "$real/img")" \
  "$V" rebase --confine -b sub/base.vmdk img/child-out.vmdk
# a parent in a subfolder is inside
expect_rc 0 "$V" read --confine img/child-in.vmdk 0 1M
cmp -s out pattern.bin || die "--confine: a parent in a subfolder reads wrongly"
expect_rc 0 "$V" info --confine --backing-chain img/child-in.vmdk
# every layer is held to the top image's folder: a parent whose own extent
# escapes is refused...
expect_rc 0 "$V" read img/child-deep.vmdk 0 1M
cmp -s out outside/secret.bin || die "without --confine, child-deep.vmdk does not read secret.bin"
every_command_refuses img/child-deep.vmdk \
  "vmdkit: img/child-deep.vmdk: cannot open its parent: $(refusal img/sub/esc-base.vmdk "extent file" img/sub/../../outside/secret.bin "$real/outside/secret.bin" "$real/img" | sed 's/^vmdkit: //')"
# ...as is a grandparent outside...
every_command_refuses img/child-mid.vmdk \
  "$(refusal img/sub/mid.vmdk "backing file" img/sub/../../outside/base.vmdk "$real/outside/base.vmdk" "$real/img")"
# ...while a parent's extent next to the top image is inside (the top's
# folder), though the parent opened alone is held to its own folder
expect_rc 0 "$V" read --confine img/child-up.vmdk 0 1M
cmp -s out pattern.bin || die "--confine: child-up.vmdk reads wrongly"
must_refuse "$(refusal img/sub/up-base.vmdk "extent file" img/sub/../a-flat.vmdk "$real/img/a-flat.vmdk" "$real/img/sub")" \
  "$V" info --confine img/sub/up-base.vmdk

# creating links that escape: refused before any file is made
want=$(refusal img/new.vmdk "backing file" img/../outside/base.vmdk "$real/outside/base.vmdk" "$real/img")
must_refuse "$want" "$V" create --confine -b ../outside/base.vmdk img/new.vmdk
[[ ! -e img/new.vmdk ]] || die "a refused create left img/new.vmdk"
must_refuse "$want" "$V" convert --confine -O vmdk -B ../outside/base.vmdk img/a.vmdk img/new.vmdk
[[ ! -e img/new.vmdk ]] || die "a refused convert -B left img/new.vmdk"
want=$(refusal img/child-in.vmdk "backing file" img/../outside/base.vmdk "$real/outside/base.vmdk" "$real/img")
must_refuse "$want" "$V" rebase --confine -b ../outside/base.vmdk img/child-in.vmdk
must_refuse "$want" "$V" rebase --confine -u -b ../outside/base.vmdk img/child-in.vmdk
# and without --confine they work
expect_rc 0 "$V" create -q -b ../outside/base.vmdk img/new.vmdk
expect_rc 0 "$V" read img/new.vmdk 0 1M
cmp -s out pattern.bin || die "create -b ../outside/base.vmdk reads wrongly"
# inside, --confine creates and commits as usual
expect_rc 0 "$V" create --confine -q -b sub/base.vmdk img/new2.vmdk
printf 'committed' | "$V" write --confine img/new2.vmdk 4096
expect_rc 0 "$V" commit --confine -q img/new2.vmdk
expect_rc 0 "$V" read --confine img/sub/base.vmdk 4096 9
[[ "$(cat out)" == committed ]] || die "commit --confine did not reach sub/base.vmdk"
echo "confine: all checks passed"
