#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Remote image files over ssh:// that cannot be read (OpenSSH's sshd from
# tests/servers.sh; skipped when it cannot run here): a host key that does
# not match known_hosts, a host missing from it, a missing file, a key the
# server does not accept (and a password in the URL that must not show), a
# port where nothing listens, a remote image opened for writing.  Each is a
# non-zero exit and one line "vmdkit: URL: ..." naming the URL without
# credentials and saying what is wrong in words a user can act on.  A
# password given as a literal is on no command line of a process vmdkit
# starts (nbdkit must have been seen, so the check is not vacuous).
#
# Every case runs (in a subshell) even when an earlier one failed; the
# failed ones are listed at the end.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
source "$SRC_DIR/tests/servers.sh"
source "$SRC_DIR/tests/remote-watch.sh"
need nbdkit python3 ssh-keygen
nbdkit ssh --version >/dev/null 2>&1 || { echo "SKIP: nbdkit's ssh plugin is not installed" >&2; exit 77; }
nbdkit --filter=delay null --version >/dev/null 2>&1 || { echo "SKIP: nbdkit's delay filter is not installed" >&2; exit 77; }
"$VMDKIT" info --help | grep -q -- --remote-option || { echo "SKIP: vmdkit without remote images" >&2; exit 77; }
cd "$tmpdir"

mkdir -p www dst
head -c 4M /dev/urandom >small.raw
"$VMDKIT" convert -f raw -O vmdk small.raw www/disk.vmdk
head -c 16M /dev/urandom >mid.raw
"$VMDKIT" convert -f raw -O vmdk mid.raw www/mid.vmdk
start_sshd
# the folder as the URL's path (absolute: ssh:// paths are the server's)
base="127.0.0.1:$SSH_PORT$tmpdir/www"
good=(--remote-option "identity=$SSH_KEY" --remote-option "known-hosts=$SSH_KNOWN_HOSTS")

case_works() {
  # the fixture works: the errors below are the ones named
  "$VMDKIT" info "${good[@]}" "ssh://$SSH_USER@$base/disk.vmdk" >/dev/null ||
    die "ssh:// with the right key and known_hosts does not open"
}

case_host_key_mismatch() {
  local u="ssh://$base/disk.vmdk"
  refused "host key mismatch" "$u" 'host key' -- \
    "$VMDKIT" info --remote-option "identity=$SSH_KEY" \
    --remote-option "known-hosts=$SSH_BAD_KNOWN_HOSTS" "ssh://$SSH_USER@$base/disk.vmdk"
  grep -qiE 'changed|mismatch|does not match|not trusted|differ' "$tmpdir/err" ||
    die "host key mismatch: the message does not say the key is wrong"
  refused "host key mismatch, convert" "$u" 'host key' -- \
    "$VMDKIT" convert -O raw --remote-option "identity=$SSH_KEY" \
    --remote-option "known-hosts=$SSH_BAD_KNOWN_HOSTS" \
    "ssh://$SSH_USER@$base/disk.vmdk" "$tmpdir/dst/x.raw"
  [[ ! -e dst/x.raw ]] || die "host key mismatch: convert left dst/x.raw"
}

case_host_unknown() {
  local u="ssh://$base/disk.vmdk"
  : >empty_known_hosts
  refused "host not in known_hosts" "$u" 'host key' -- \
    "$VMDKIT" info --remote-option "identity=$SSH_KEY" \
    --remote-option "known-hosts=$tmpdir/empty_known_hosts" "ssh://$SSH_USER@$base/disk.vmdk"
  grep -qE 'known-hosts=|known_hosts|verify-remote-host' "$tmpdir/err" ||
    die "host not in known_hosts: the message gives no remedy"
}

case_missing_file() {
  local u="ssh://$base/missing.vmdk"
  refused "missing file" "$u" 'not found|no such file' -- \
    "$VMDKIT" info "${good[@]}" "ssh://$SSH_USER@$base/missing.vmdk"
  refused "missing file, convert" "$u" 'not found|no such file' -- \
    "$VMDKIT" convert -O raw "${good[@]}" "ssh://$SSH_USER@$base/missing.vmdk" "$tmpdir/dst/x.raw"
  [[ ! -e dst/x.raw ]] || die "missing file: convert left dst/x.raw"
}

case_auth_failure() {
  local u="ssh://$base/disk.vmdk"
  rm -f stranger stranger.pub
  ssh-keygen -q -t ed25519 -N '' -C vmdkit-test-stranger -f stranger
  refused "key not authorized" "$u" 'authentication' -- \
    "$VMDKIT" info --remote-option "identity=$tmpdir/stranger" \
    --remote-option "known-hosts=$SSH_KNOWN_HOSTS" "ssh://$SSH_USER@$base/disk.vmdk"
  grep -qE 'identity=|password=' "$tmpdir/err" ||
    die "key not authorized: the message gives no remedy"
  # a password in the URL (sshd takes none here): never shown
  refused "key not authorized, password in the URL" "$u" 'authentication' SSHPWSECRET777 "@$base" -- \
    "$VMDKIT" info --remote-option "identity=$tmpdir/stranger" \
    --remote-option "known-hosts=$SSH_KNOWN_HOSTS" \
    "ssh://$SSH_USER:SSHPWSECRET777@$base/disk.vmdk"
  refused "key not authorized, --remote-option password" "$u" 'authentication' SSHPWSECRET888 -- \
    "$VMDKIT" info --remote-option "identity=$tmpdir/stranger" \
    --remote-option "known-hosts=$SSH_KNOWN_HOSTS" --remote-option password=SSHPWSECRET888 \
    "ssh://$SSH_USER@$base/disk.vmdk"
  refused "unknown user" "$u" 'authentication' -- \
    "$VMDKIT" info "${good[@]}" "ssh://nosuchuser-vmdkit@$base/disk.vmdk"
}

case_refused() {
  local port u
  port=$(free_port)
  u="ssh://127.0.0.1:$port$tmpdir/www/disk.vmdk"
  # nothing listens: the server cannot be reached (the host key was never
  # seen, so the message must not blame it)
  refused "connection refused" "$u" 'cannot reach' -- \
    "$VMDKIT" info "${good[@]}" "ssh://$SSH_USER@127.0.0.1:$port$tmpdir/www/disk.vmdk"
  if grep -qi 'host key' "$tmpdir/err"; then
    die "connection refused: the message blames the host key: $(cat "$tmpdir/err")"
  fi
}

case_read_only() {
  local u="ssh://$base/disk.vmdk" before
  before=$(sha www/disk.vmdk)
  refused "write ssh://" "$u" 'read-only' -- \
    "$VMDKIT" write "${good[@]}" "ssh://$SSH_USER@$base/disk.vmdk" 0
  refused "resize ssh://" "$u" 'read-only' -- \
    "$VMDKIT" resize "${good[@]}" "ssh://$SSH_USER@$base/disk.vmdk" 8M
  [[ $(sha www/disk.vmdk) == "$before" ]] || die "www/disk.vmdk changed on the server"
}

case_cmdline_password() {
  # key login works; the password is passed as well and must stay hidden
  run watch procs "$VMDKIT" convert -O raw "${good[@]}" \
    --remote-option filter=delay --remote-option delay-read=200ms \
    --remote-option password=SSHLITERALSECRET \
    "ssh://$SSH_USER:SSHURLSECRET@$base/mid.vmdk" dst/pw.raw
  [[ $rc -eq 0 ]] || die "convert over ssh:// with a password: exit $rc: $(cat "$tmpdir/err")"
  same dst/pw.raw mid.raw
  rm -f dst/pw.raw
  no_secret_in_children "ssh password" procs SSHLITERALSECRET SSHURLSECRET
}

check "ssh:// works with the right key" case_works
check "host key mismatch" case_host_key_mismatch
check "host not in known_hosts" case_host_unknown
check "missing file" case_missing_file
check "authentication failure" case_auth_failure
check "connection refused" case_refused
check "remote image read-only" case_read_only
check "password not on child command lines" case_cmdline_password

if ((${#failed[@]})); then
  echo "FAIL: $(basename "$0"): ${#failed[@]} case(s) failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all remote ssh error cases passed"
