#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# --confine and a sibling folder whose name starts with the image folder's
# name: for an image in img/, "../img-evil/secret.bin" resolves to
# .../img-evil/secret.bin, which starts with the string ".../img" but is not
# inside .../img/.  Confinement must compare whole path components (a plain
# prefix compare lets it through).  Checked for an extent file, for a
# missing extent file in the sibling folder (the "where would it be" path),
# for a parentFileNameHint, and for the nbdkit plugin (confined by
# default).  Each refusal is one error line naming the resolved path, no
# file changes, and the secret is never opened (strace, when it can run)
# and none of its bytes come out.  Without --confine the same images read
# the secret, so every refusal is --confine's doing.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3

cd "$tmpdir"
real=$(pwd -P)
mkdir img img-evil imgx
V=$VMDKIT
M=$((1024 * 1024))

python3 - <<'EOF'
import random
random.seed(12)
open("img-evil/secret.bin", "wb").write(bytes(random.getrandbits(8) for _ in range(1 << 20)))
open("pattern.bin", "wb").write(bytes(random.getrandbits(8) for _ in range(1 << 20)))
EOF
cmp -s pattern.bin img-evil/secret.bin && die "test bug: secret.bin is the pattern"
"$V" create -q -o subformat=monolithicFlat img/a.vmdk 1M
"$V" write img/a.vmdk 0 <pattern.bin
cmp -s img/a-flat.vmdk pattern.bin || die "fixture: a-flat.vmdk does not hold the pattern"

# img/NAME.vmdk: img/a.vmdk with its extent renamed to PATH
flat_naming() {
  sed "s|\"a-flat.vmdk\"|\"$2\"|" img/a.vmdk >"img/$1"
  grep -qF "\"$2\"" "img/$1" || die "fixture: img/$1 does not name $2"
}
flat_naming sib.vmdk ../img-evil/secret.bin
flat_naming sib-missing.vmdk ../img-evil/not-there.bin
flat_naming sibx.vmdk ../imgx/../img-evil/secret.bin
# a child whose parentFileNameHint is the secret (read as a raw parent
# without --confine)
"$V" create -q img/base.vmdk 1M
"$V" create -q -b base.vmdk img/child.vmdk
sed -i 's|parentFileNameHint="base.vmdk"|parentFileNameHint="../img-evil/secret.bin"|' img/child.vmdk
grep -q 'parentFileNameHint="../img-evil/secret.bin"' img/child.vmdk 2>/dev/null ||
  [[ $(desc_value img/child.vmdk parentFileNameHint) == ../img-evil/secret.bin ]] ||
  die "fixture: child.vmdk does not name ../img-evil/secret.bin as its parent"

# Without --confine the images read the secret (so the refusals below are
# --confine's, and the fixtures are right).
expect_rc 0 "$V" read img/sib.vmdk 0 1M
cmp -s out img-evil/secret.bin || die "without --confine, sib.vmdk does not read secret.bin"
expect_rc 0 "$V" read img/child.vmdk 0 1M
cmp -s out img-evil/secret.bin || die "without --confine, child.vmdk does not read secret.bin through its parent"
# and the image folder itself is fine under --confine
expect_rc 0 "$V" read --confine img/a.vmdk 0 1M
cmp -s out pattern.bin || die "--confine: img/a.vmdk reads wrongly"

suffix="(refused: the image is opened confined to its folder)"
refusal() { # IMAGE WHAT PATH REAL
  echo "vmdkit: $1: $2 $3 resolves to $4, outside the image's folder $real/img $suffix"
}

tracing=0
if command -v strace >/dev/null &&
  strace -f -qq -o /dev/null true >/dev/null 2>&1; then
  tracing=1
fi
# CMD... must fail with exactly the error line WANT (given first), print
# nothing on stdout (no secret bytes), change no file, and never open a
# file under img-evil/.
must_refuse() {
  local want=$1
  shift
  tree_state img img-evil >state.before
  if ((tracing)); then
    run env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
      strace -f -qq -e trace=open,openat,openat2,creat,truncate,execve -o trace.log "$@"
  else
    run "$@"
  fi
  [[ $rc -ne 0 ]] || die "'$*' succeeded; expected: $want"
  one_error_line "$*"
  [[ "$(cat err)" == "$want" ]] || die "'$*': error
  got:  $(cat err)
  want: $want"
  [[ ! -s out ]] || die "'$*' printed $(stat -c %s out) bytes on stdout"
  tree_state img img-evil >state.after
  cmp -s state.before state.after || { diff state.before state.after >&2; die "'$*' changed files"; }
  if ((tracing)); then
    grep -q 'open' trace.log || die "test bug: strace logged no open call: $(head -5 trace.log)"
    if grep -E 'open(at2?)?\(.*img-evil' trace.log | grep -v ENOENT >&2; then
      die "'$*' opened a file in img-evil/"
    fi
  fi
}

every_command_refuses() { # IMAGE WANT
  local img=$1 want=$2
  must_refuse "$want" "$V" info --confine "$img"
  must_refuse "$want" "$V" check --confine "$img"
  must_refuse "$want" "$V" map --confine --output=json "$img"
  must_refuse "$want" "$V" read --confine "$img" 0 1M
  must_refuse "$want" "$V" convert --confine -O raw "$img" conv.raw
  [[ ! -e conv.raw ]] || die "a refused convert left conv.raw"
  must_refuse "$want" sh -c 'printf x | "$1" write --confine "$2" 0' sh "$V" "$img"
}

every_command_refuses img/sib.vmdk \
  "$(refusal img/sib.vmdk "extent file" img/../img-evil/secret.bin "$real/img-evil/secret.bin")"
every_command_refuses img/sibx.vmdk \
  "$(refusal img/sibx.vmdk "extent file" img/../imgx/../img-evil/secret.bin "$real/img-evil/secret.bin")"
every_command_refuses img/sib-missing.vmdk \
  "$(refusal img/sib-missing.vmdk "extent file" img/../img-evil/not-there.bin "$real/img-evil/not-there.bin")"
every_command_refuses img/child.vmdk \
  "$(refusal img/child.vmdk "backing file" img/../img-evil/secret.bin "$real/img-evil/secret.bin")"
# creating a child of the secret, and rebasing onto it
want=$(refusal img/new.vmdk "backing file" img/../img-evil/secret.bin "$real/img-evil/secret.bin")
must_refuse "$want" "$V" create --confine -F raw -b ../img-evil/secret.bin img/new.vmdk
[[ ! -e img/new.vmdk ]] || die "a refused create left img/new.vmdk"

# The nbdkit plugin confines by default: the same image is refused there too.
plugin=${BUILD_DIR:-}/nbdkit-vmdkit-plugin.so
if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null && [[ -f $plugin ]]; then
  tree_state img img-evil >state.before
  run run_nbdkit -U - -r "$plugin" file=img/sib.vmdk --run 'nbdcopy "$uri" served.raw'
  [[ $rc -ne 0 ]] || die "nbdkit served img/sib.vmdk (an extent in a sibling folder)"
  grep -qF "resolves to $real/img-evil/secret.bin, outside the image's folder $real/img" err ||
    die "nbdkit: confine error: $(cat err)"
  [[ ! -e served.raw ]] || ! cmp -s served.raw img-evil/secret.bin ||
    die "nbdkit served the secret's bytes"
  tree_state img img-evil >state.after
  cmp -s state.before state.after || die "nbdkit changed files"
  # confine=false lifts it (so the refusal was confinement's)
  run_nbdkit -U - -r "$plugin" file=img/sib.vmdk confine=false --run 'nbdcopy "$uri" served.raw' ||
    die "confine=false did not serve img/sib.vmdk"
  same served.raw img-evil/secret.bin
fi
echo "confine-sibling: all checks passed (strace: $tracing)"
