#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Self-check of tests/servers.sh (not run by ctest):
#   bash tests/servers-selftest.sh
# Starts lighttpd and sshd and checks that a file's bytes come back
# identical over HTTP, HTTPS (--cacert), Basic auth, and ssh; that /private/
# refuses a missing or wrong password; that the no-range port ignores a
# Range while the others honour it; and, when nbdkit and nbdinfo are here,
# that nbdkit's curl and ssh plugins read the same sizes.
# Exits 77 if sshd cannot run here.

set -euo pipefail
: "${SRC_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${VMDKIT:=/bin/true}" # common.sh wants one; nothing here runs it
source "$SRC_DIR/tests/common.sh"
source "$SRC_DIR/tests/servers.sh"

www=$tmpdir/www
mkdir -p "$www/private"
head -c 3000000 /dev/urandom >"$www/img"
cp "$www/img" "$www/private/img"
size=$(stat -c %s "$www/img")
got=$tmpdir/got
mkdir -p "$got"

start_http "$www"
start_sshd

# curl_to OUT ARGS...: fetch with curl (failing on HTTP errors) into OUT.
curl_to() {
  local out=$1
  shift
  curl -sS --fail --max-time 20 -o "$out" "$@" || die "curl $* failed"
}

curl_to "$got/http" "$HTTP_URL/img"
same "$www/img" "$got/http"
curl_to "$got/https" --cacert "$HTTPS_CERT" "$HTTPS_URL/img"
same "$www/img" "$got/https"
curl_to "$got/https-localhost" --cacert "$HTTPS_CERT" \
  "${HTTPS_URL/127.0.0.1/localhost}/img"
same "$www/img" "$got/https-localhost"
curl_to "$got/auth" -u "$HTTP_USER:$HTTP_PASSWORD" "$HTTP_URL/private/img"
same "$www/img" "$got/auth"
curl_to "$got/auth-https" --cacert "$HTTPS_CERT" \
  -u "$HTTP_USER:$HTTP_PASSWORD" "$HTTPS_URL/private/img"
same "$www/img" "$got/auth-https"
curl_to "$got/norange" "$NORANGE_URL/img"
same "$www/img" "$got/norange"

# The certificate is not trusted without --cacert.
if curl -sS -o /dev/null --max-time 10 "$HTTPS_URL/img" 2>/dev/null; then
  die "HTTPS without --cacert was accepted"
fi

# /private/ wants the password.
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
[[ $(code "$HTTP_URL/private/img") == 401 ]] ||
  die "/private/ without a password is not 401"
[[ $(code -u "$HTTP_USER:wrong" "$HTTP_URL/private/img") == 401 ]] ||
  die "/private/ with a wrong password is not 401"
[[ $(code "$HTTP_URL/nothing-here") == 404 ]] || die "a missing file is not 404"

# Ranges: 206 + Accept-Ranges on the normal ports, neither on NORANGE_URL.
for url in "$HTTP_URL" "$HTTPS_URL"; do
  curl -sS --max-time 10 --cacert "$HTTPS_CERT" -r 0-9 -D "$got/hdr" \
    -o "$got/part" "$url/img"
  grep -q '^HTTP/[0-9.]* 206' "$got/hdr" || die "$url: no 206 for a range"
  grep -qi '^Accept-Ranges: bytes' "$got/hdr" || die "$url: no Accept-Ranges"
  head -c 10 "$www/img" | cmp - "$got/part" || die "$url: wrong range bytes"
done
curl -sS --max-time 10 -r 0-9 -D "$got/hdr" -o "$got/part" "$NORANGE_URL/img"
grep -q '^HTTP/[0-9.]* 200' "$got/hdr" || die "no-range port: not 200"
if grep -qi '^Accept-Ranges: bytes' "$got/hdr"; then
  die "no-range port: says Accept-Ranges: bytes"
fi
[[ $(stat -c %s "$got/part") == "$size" ]] ||
  die "no-range port: did not send the whole file"

# ssh: the bytes, and the known_hosts files.
ssh "${SSH_OPTS[@]}" -p "$SSH_PORT" "$SSH_USER@127.0.0.1" cat "$www/img" \
  </dev/null | cmp - "$www/img" || die "ssh cat: different bytes"
# (ssh takes the first value of an option: overrides go before SSH_OPTS.)
if ssh -o UserKnownHostsFile="$SSH_BAD_KNOWN_HOSTS" "${SSH_OPTS[@]}" \
    -p "$SSH_PORT" "$SSH_USER@127.0.0.1" true </dev/null 2>/dev/null; then
  die "ssh with SSH_BAD_KNOWN_HOSTS was accepted"
fi

# What vmdkit will do: nbdkit's curl and ssh plugins.
if command -v nbdkit >/dev/null && command -v nbdinfo >/dev/null; then
  nbd_size() {
    local got
    got=$(nbdinfo --size -- [ nbdkit -r "$@" ]) || die "nbdkit $* failed"
    [[ $got == "$size" ]] || die "nbdkit $*: size $got, expected $size"
  }
  nbd_size curl url="$HTTP_URL/img"
  nbd_size curl url="$HTTPS_URL/img" cainfo="$HTTPS_CERT"
  nbd_size curl url="$HTTPS_URL/img" sslverify=false
  nbd_size curl url="$HTTP_URL/private/img" user="$HTTP_USER" \
    password=+"$HTTP_PASSWORD_FILE"
  nbd_size ssh host=127.0.0.1 port="$SSH_PORT" user="$SSH_USER" \
    identity="$SSH_KEY" known-hosts="$SSH_KNOWN_HOSTS" path="$www/img"
  if command -v nbdcopy >/dev/null; then
    nbdcopy -- [ nbdkit -r curl url="$HTTPS_URL/img" cainfo="$HTTPS_CERT" ] \
      "$got/nbd-https" || die "nbdcopy over HTTPS failed"
    same "$www/img" "$got/nbd-https"
    nbdcopy -- [ nbdkit -r ssh host=127.0.0.1 port="$SSH_PORT" \
      user="$SSH_USER" identity="$SSH_KEY" known-hosts="$SSH_KNOWN_HOSTS" \
      path="$www/img" ] "$got/nbd-ssh" || die "nbdcopy over ssh failed"
    same "$www/img" "$got/nbd-ssh"
  fi
else
  echo "note: nbdkit/nbdinfo not installed, plugin checks skipped" >&2
fi

# The server going away.
stop_http
if curl -s -o /dev/null --max-time 5 "$HTTP_URL/img"; then
  die "lighttpd still answers after stop_http"
fi
stop_sshd

echo "servers-selftest: OK"
