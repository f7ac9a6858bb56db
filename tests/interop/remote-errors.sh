#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Remote image files that cannot be read, over real HTTP(S) (lighttpd from
# tests/servers.sh): a missing file (HTTP 404), /private/ without
# credentials and with a wrong password (HTTP 401), a server without byte
# ranges, HTTPS with a self-signed certificate, a port where nothing
# listens, the server going away in the middle of a convert (raw and VMDK
# output), bad --remote-option values, a remote image opened for writing.
# Each is a non-zero exit and one line "vmdkit: URL: ..." that names the
# URL without its credentials and says what is wrong in words a user can
# act on; a convert that fails leaves no output behind; nothing on the
# server changes.
#
# Secrets: no password, cookie, header value, URL password or presigned
# query value (X-Amz-Signature=...) appears in any message; no password,
# cookie, header value or URL password appears on the command line (or in
# the environment) of any process vmdkit starts -- the
# process tree is watched while a slow convert (nbdkit's delay filter)
# runs, and nbdkit must have been seen there, so the check cannot pass
# vacuously; a header and a cookie are shown to have reached the server.
#
# Every case runs (in a subshell) even when an earlier one failed; the
# failed ones are listed at the end.  The ssh cases are in
# remote-ssh-errors.sh (sshd may not run here: that one skips).
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
source "$SRC_DIR/tests/servers.sh"
source "$SRC_DIR/tests/remote-watch.sh"
need nbdkit python3 curl
nbdkit curl --version >/dev/null 2>&1 || { echo "SKIP: nbdkit's curl plugin is not installed" >&2; exit 77; }
nbdkit --filter=delay null --version >/dev/null 2>&1 || { echo "SKIP: nbdkit's delay filter is not installed" >&2; exit 77; }
"$VMDKIT" info --help | grep -q -- --remote-option || { echo "SKIP: vmdkit without remote images" >&2; exit 77; }
cd "$tmpdir"

# ---- fixtures ---------------------------------------------------------------

mkdir -p www/private dst
head -c 4M /dev/urandom >small.raw
"$VMDKIT" convert -f raw -O vmdk small.raw www/disk.vmdk
cp www/disk.vmdk www/private/disk.vmdk
head -c 16M /dev/urandom >mid.raw
"$VMDKIT" convert -f raw -O vmdk mid.raw www/mid.vmdk
cp www/mid.vmdk www/private/mid.vmdk
head -c 64M /dev/urandom >big.raw
"$VMDKIT" convert -f raw -O vmdk big.raw www/big.vmdk
start_http www
hostport=${HTTP_URL#http://}

# ---- HTTP errors ------------------------------------------------------------

case_404() {
  local u=$HTTP_URL/missing.vmdk cmd
  for cmd in info check "map --output=json" "read @ 0 512" \
             "convert -O raw @ $tmpdir/dst/x.raw" "compare @ $tmpdir/small.raw"; do
    local args=()
    if [[ $cmd == *@* ]]; then read -ra args <<<"${cmd/@/$u}"; else read -ra args <<<"$cmd $u"; fi
    refused "404 ($cmd)" "$u" 'HTTP 404' -- "$VMDKIT" "${args[@]}"
  done
  [[ -z $(ls dst) ]] || die "404: convert left $(ls dst)"
}

case_401() {
  local u=$HTTP_URL/private/disk.vmdk
  refused "401 without credentials" "$u" 'HTTP 401' -- "$VMDKIT" info "$u"
  # the remedy: user and password
  grep -qiE 'user|password|credential' "$tmpdir/err" ||
    die "401: the message does not say to give credentials"
  refused "401 wrong password in the URL" "$u" 'HTTP 401' wrongpw123 "@$hostport" -- \
    "$VMDKIT" info "http://vmdkit:wrongpw123@$hostport/private/disk.vmdk"
  refused "401 wrong --remote-option password" "$u" 'HTTP 401' wrongpw456 -- \
    "$VMDKIT" info --remote-option user=vmdkit --remote-option password=wrongpw456 "$u"
  refused "401 wrong password, convert" "$u" 'HTTP 401' wrongpw789 -- \
    "$VMDKIT" convert -O raw --remote-option user=vmdkit \
    --remote-option password=wrongpw789 "$u" "$tmpdir/dst/x.raw"
  [[ ! -e dst/x.raw ]] || die "401: convert left dst/x.raw"
  # the right password works (so the 401s above are about the password)
  "$VMDKIT" info "http://vmdkit:$HTTP_PASSWORD@$hostport/private/disk.vmdk" >/dev/null ||
    die "the right password in the URL does not open /private/disk.vmdk"
  "$VMDKIT" info --remote-option user=vmdkit \
    --remote-option "password=+$HTTP_PASSWORD_FILE" "$u" >/dev/null ||
    die "password=+FILE does not open /private/disk.vmdk"
}

case_404_with_credentials() {
  # a 404 behind a correct password: neither the password nor the user@
  local u=$HTTP_URL/private/missing.vmdk
  refused "404 with the password in the URL" "$u" 'HTTP 404' "$HTTP_PASSWORD" "@$hostport" -- \
    "$VMDKIT" info "http://vmdkit:$HTTP_PASSWORD@$hostport/private/missing.vmdk"
}

case_presigned_404() {
  local q='X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=CREDSECRET456&X-Amz-Signature=SIGSECRET123'
  refused "404 presigned URL" "$HTTP_URL/missing.vmdk" 'HTTP 404' SIGSECRET123 CREDSECRET456 -- \
    "$VMDKIT" info "$HTTP_URL/missing.vmdk?$q"
  refused "404 presigned URL, sig=/token=" "$HTTP_URL/missing.vmdk" 'HTTP 404' SIGSECRET789 TOKSECRET321 -- \
    "$VMDKIT" info "$HTTP_URL/missing.vmdk?sv=2020&sig=SIGSECRET789&token=TOKSECRET321"
}

case_norange() {
  local u=$NORANGE_URL/disk.vmdk
  refused "no byte ranges" "$u" 'range' -- "$VMDKIT" info "$u"
  refused "no byte ranges, convert" "$u" 'range' -- \
    "$VMDKIT" convert -O raw "$u" "$tmpdir/dst/x.raw"
  [[ ! -e dst/x.raw ]] || die "no ranges: convert left dst/x.raw"
}

case_tls() {
  local u=$HTTPS_URL/disk.vmdk
  refused "self-signed certificate" "$u" 'TLS|certificate' -- "$VMDKIT" info "$u"
  grep -qE 'sslverify=false|cainfo' "$tmpdir/err" ||
    die "TLS: the message does not give the remedy (sslverify=false or cainfo=)"
  # the remedies work
  "$VMDKIT" info --remote-option "cainfo=$HTTPS_CERT" "$u" >/dev/null ||
    die "cainfo=CERT does not open $u"
  "$VMDKIT" info --remote-option sslverify=false "$u" >/dev/null ||
    die "sslverify=false does not open $u"
}

case_refused() {
  local port u
  port=$(free_port)
  u=http://127.0.0.1:$port/disk.vmdk
  refused "connection refused" "$u" 'cannot reach' -- "$VMDKIT" info "$u"
  refused "connection refused, convert" "$u" 'cannot reach' -- \
    "$VMDKIT" convert -O raw "$u" "$tmpdir/dst/x.raw"
  [[ ! -e dst/x.raw ]] || die "connection refused: convert left dst/x.raw"
  u=https://127.0.0.1:$port/disk.vmdk
  refused "connection refused, https" "$u" 'cannot reach' -- "$VMDKIT" info "$u"
}

# ---- bad options: usage errors, no server contacted -------------------------

case_bad_options() {
  local port log lpid o
  port=$(free_port)
  log=$tmpdir/listener.log
  : >"$log"
  # a listener that writes a line for every connection it accepts
  python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    open(sys.argv[2], "a").write("connection\n")
    c.close()' "$port" "$log" &
  lpid=$!
  # (this runs in check's subshell: its own EXIT trap)
  trap "kill $lpid 2>/dev/null || true" EXIT
  for ((i = 0; i < 50; i++)); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null || true
    [[ -s $log ]] && break
    sleep 0.1
  done
  [[ -s $log ]] || { kill "$lpid"; die "the test listener does not answer"; }
  : >"$log"
  local u=http://127.0.0.1:$port/disk.vmdk
  # OPTION PATTERN
  while read -r o pat; do
    for cmd in info "convert -O raw"; do
      local args
      read -ra args <<<"$cmd"
      [[ $cmd == info ]] && args+=(--remote-option "$o" "$u") ||
        args+=(--remote-option "$o" "$u" "$tmpdir/dst/x.raw")
      run "$VMDKIT" "${args[@]}"
      echo "--remote-option $o ($cmd): $(cat "$tmpdir/err")"
      ((rc != 0 && rc < 128)) || { kill "$lpid"; die "--remote-option $o ($cmd): exit $rc"; }
      one_error_line "--remote-option $o ($cmd)"
      [[ ! -s $tmpdir/out ]] || { kill "$lpid"; die "--remote-option $o ($cmd): printed on stdout"; }
      grep -qiE -- "$pat" "$tmpdir/err" ||
        { kill "$lpid"; die "--remote-option $o ($cmd): the message does not match /$pat/"; }
      [[ ! -e dst/x.raw ]] || { kill "$lpid"; die "--remote-option $o: convert left dst/x.raw"; }
    done
  done <<'EOF'
nokeyvalue KEY=VALUE
=novalue key
connections=99 connections.*16
connections=0 connections
connections=many connections
readahead=2G readahead
readahead=-1 readahead
confine=maybe confine
filter=../evil filter
url=http://evil/ url
header-script=/bin/true header-script
Password=x key
password=- \+FILE
cookie=- \+FILE
proxy-password=- \+FILE
EOF
  sleep 0.2
  kill "$lpid" 2>/dev/null || true
  wait "$lpid" 2>/dev/null || true
  [[ ! -s $log ]] || die "a bad --remote-option still contacted the server ($(wc -l <"$log") connections)"
}

# ---- a remote image opened for writing --------------------------------------

case_read_only() {
  local u=$HTTP_URL/disk.vmdk before
  before=$(sha www/disk.vmdk)
  head -c 512 /dev/urandom >sector
  run "$VMDKIT" write "$u" 0 <sector
  cp "$tmpdir/err" "$tmpdir/err.write"
  echo "write: $(cat "$tmpdir/err")"
  ((rc != 0 && rc < 128)) || die "write URL: exit $rc"
  one_error_line "write URL"
  grep -qF "$u" "$tmpdir/err" || die "write URL: the message does not name $u"
  grep -qi 'read-only' "$tmpdir/err" || die "write URL: the message does not say read-only"
  refused "resize URL" "$u" 'read-only' -- "$VMDKIT" resize "$u" 8M
  refused "resize --shrink URL" "$u" 'read-only' -- "$VMDKIT" resize --shrink "$u" 1M
  refused "write with credentials in the URL" "$HTTP_URL/private/disk.vmdk" 'read-only' \
    "$HTTP_PASSWORD" "@$hostport" -- \
    "$VMDKIT" write "http://vmdkit:$HTTP_PASSWORD@$hostport/private/disk.vmdk" 0
  [[ $(sha www/disk.vmdk) == "$before" ]] || die "www/disk.vmdk changed on the server"
}

case_output_url() {
  # An output (convert, create) that is a URL: refused as remote and
  # read-only, not "No such file or directory" (and no local "http:" made).
  refused "convert to a URL" "$HTTP_URL/new.raw" 'read-only|remote' -- \
    "$VMDKIT" convert -f raw -O raw small.raw "$HTTP_URL/new.raw"
  refused "create a URL" "$HTTP_URL/new.vmdk" 'read-only|remote' -- \
    "$VMDKIT" create "$HTTP_URL/new.vmdk" 1M
  [[ ! -e www/new.raw && ! -e www/new.vmdk && ! -e http: && ! -e "$tmpdir/http:" ]] ||
    die "an output URL made a file"
}

# ---- secrets never on a child's command line --------------------------------

# watch and no_secret_in_children: tests/remote-watch.sh

slow=(--remote-option filter=delay --remote-option delay-read=200ms)

case_cmdline_password() {
  run watch procs "$VMDKIT" convert -O raw "${slow[@]}" --remote-option user=vmdkit \
    --remote-option "password=$HTTP_PASSWORD" "$HTTP_URL/private/mid.vmdk" dst/pw.raw
  [[ $rc -eq 0 ]] || die "convert with password=LITERAL: exit $rc: $(cat "$tmpdir/err")"
  same dst/pw.raw mid.raw
  rm -f dst/pw.raw
  no_secret_in_children "password=LITERAL" procs "$HTTP_PASSWORD"
}

case_cmdline_url_credentials() {
  run watch procs "$VMDKIT" convert -O raw "${slow[@]}" \
    "http://vmdkit:$HTTP_PASSWORD@$hostport/private/mid.vmdk" dst/url.raw
  [[ $rc -eq 0 ]] || die "convert with USER:PASSWORD@ in the URL: exit $rc: $(cat "$tmpdir/err")"
  same dst/url.raw mid.raw
  rm -f dst/url.raw
  no_secret_in_children "URL credentials" procs "$HTTP_PASSWORD" "vmdkit:$HTTP_PASSWORD"
}

# A small HTTP server with byte ranges that logs every request's headers
# (lighttpd's access log does not show them): proves the cookie and header
# were sent, so their absence from command lines means something.
start_recorder() {
  local port=$1 root=$2 log=$3
  python3 - "$port" "$root" "$log" <<'EOF' &
import http.server, os, re, sys
port, root, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def record(self):
        with open(log, "a") as f:
            f.write("%s %s %s\n" % (self.command, self.path,
                    " | ".join("%s: %s" % kv for kv in self.headers.items())))
    def serve(self, body):
        self.record()
        path = os.path.join(root, self.path.split("?")[0].lstrip("/"))
        if not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = os.path.getsize(path)
        m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, end = 0, size - 1
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                self.wfile.write(f.read(end - start + 1))
    def do_HEAD(self):
        self.serve(False)
    def do_GET(self):
        self.serve(True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
  REC_PID=$!
  # (called in check's subshell: its own EXIT trap)
  trap "kill $REC_PID 2>/dev/null || true" EXIT
  for ((i = 0; i < 50; i++)); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && return 0
    sleep 0.1
  done
  kill "$REC_PID"
  die "the recording HTTP server does not answer"
}

# cookie_header LABEL CHECKS OPTIONS...: a slow convert from the recording
# server with OPTIONS; CHECKS is a list of "SECRET|LOG-PATTERN": no SECRET
# on a child's command line, and every request logged matches every
# LOG-PATTERN (the cookie or header was sent, on every request).
cookie_header() {
  local label=$1 checks=$2 port log c secrets=()
  shift 2
  port=$(free_port)
  log=$tmpdir/recorder.log
  : >"$log"
  start_recorder "$port" "$tmpdir/www" "$log"
  : >"$log"
  run watch procs "$VMDKIT" convert -O raw "${slow[@]}" "$@" \
    "http://127.0.0.1:$port/mid.vmdk" dst/ck.raw
  kill "$REC_PID" 2>/dev/null || true
  wait "$REC_PID" 2>/dev/null || true
  [[ $rc -eq 0 ]] || die "$label: convert exit $rc: $(cat "$tmpdir/err")"
  same dst/ck.raw mid.raw
  rm -f dst/ck.raw
  for c in $checks; do
    secrets+=("${c%%|*}")
  done
  no_secret_in_children "$label" procs "${secrets[@]}"
  [[ -s $log ]] || die "$label: no request reached the recording server"
  for c in $checks; do
    c=${c#*|}
    c=${c//_/ }
    if grep -vqF -- "$c" "$log"; then
      echo "--- $(grep -vcF -- "$c" "$log") of $(wc -l <"$log") requests without '$c':" >&2
      grep -vF -- "$c" "$log" | head -3 >&2
      die "$label: '$c' did not reach the server (on every request)"
    fi
  done
}

case_cmdline_cookie() {
  cookie_header "cookie=" "COOKIESECRET|Cookie:_COOKIESECRET" \
    --remote-option cookie=COOKIESECRET
}

case_cmdline_header() {
  cookie_header "header=" \
    "HEADERSECRET|Authorization:_Bearer_HEADERSECRET XHDRSECRET|X-Extra:_XHDRSECRET" \
    --remote-option 'header=Authorization: Bearer HEADERSECRET' \
    --remote-option 'header=X-Extra: XHDRSECRET'
}

case_cmdline_cookie_and_header() {
  cookie_header "cookie= and header=" \
    "COOKIESECRET|Cookie:_COOKIESECRET HEADERSECRET|Authorization:_Bearer_HEADERSECRET" \
    --remote-option cookie=COOKIESECRET \
    --remote-option 'header=Authorization: Bearer HEADERSECRET'
}

# (A presigned URL's query -- X-Amz-Signature and the like -- is not checked
# here: nbdkit 1.32's curl plugin takes the URL only as its url= parameter,
# so the query is on that nbdkit's command line.  vmdkit(1) says so; the
# messages case above proves it is in no message.)

# ---- the server going away in the middle of a convert -----------------------

# dropped LABEL OUTDIR CONVERT-ARGS...: a slow convert of big.vmdk into
# OUTDIR; lighttpd is killed while it runs; convert fails with one line
# naming the URL, and OUTDIR is left empty.  lighttpd stays down (the
# caller starts it again: a server started in this subshell would outlive
# it).
dropped() {
  local label=$1 dir=$2 pid i r
  shift 2
  local u=$HTTP_URL/big.vmdk
  mkdir -p "$dir"
  "$VMDKIT" convert "$@" --remote-option filter=delay \
    --remote-option delay-read=300ms "$u" "$dir/out" >"$tmpdir/out" 2>"$tmpdir/err" &
  pid=$!
  # until the output exists (the source is open and being copied), then a bit
  for ((i = 0; i < 100; i++)); do
    [[ -n $(ls "$dir") ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  sleep 0.5
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    die "$label: convert ended before the server was stopped (inconclusive): $(cat "$tmpdir/err")"
  fi
  stop_http
  set +e
  wait "$pid"
  r=$?
  set -e
  echo "$label: exit $r: $(cat "$tmpdir/err")"
  [[ $r -ne 0 ]] || die "$label: convert exited 0 although the server went away"
  [[ $r -lt 128 ]] || die "$label: killed by signal $((r - 128))"
  one_error_line "$label"
  grep -qF "$u" "$tmpdir/err" || die "$label: the message does not name $u"
  grep -qiE 'cannot reach|connection|closed|gone|lost|server' "$tmpdir/err" ||
    die "$label: the message does not say the server went away"
  if [[ -n $(ls -A "$dir") ]]; then
    ls -la "$dir" >&2
    die "$label: the partial output was left behind"
  fi
}

case_dropped_raw() {
  dropped "dropped, -O raw" "$tmpdir/drop-raw" -O raw
}
case_dropped_vmdk() {
  dropped "dropped, -O vmdk" "$tmpdir/drop-vmdk" -O vmdk
}
case_dropped_vmdk_flat() {
  # a descriptor and its extent file
  dropped "dropped, -O vmdk monolithicFlat" "$tmpdir/drop-flat" -O vmdk -o subformat=monolithicFlat
}
case_dropped_vmdk_split() {
  dropped "dropped, -O vmdk twoGbMaxExtentSparse" "$tmpdir/drop-split" -O vmdk -o subformat=twoGbMaxExtentSparse
}

# ---- run --------------------------------------------------------------------

check "HTTP 404" case_404
check "HTTP 401" case_401
check "HTTP 404 with credentials" case_404_with_credentials
check "presigned URL in messages" case_presigned_404
check "no byte ranges" case_norange
check "self-signed TLS certificate" case_tls
check "connection refused" case_refused
check "bad --remote-option" case_bad_options
check "remote image read-only" case_read_only
check "output to a URL refused" case_output_url
check "password=LITERAL not on child command lines" case_cmdline_password
check "URL credentials not on child command lines" case_cmdline_url_credentials
check "cookie= not on child command lines, and sent" case_cmdline_cookie
check "header= not on child command lines, and sent" case_cmdline_header
check "cookie= with header=: both sent, neither on command lines" case_cmdline_cookie_and_header
# these stop lighttpd (in the subshell): it is started again here, on
# new ports, before the next one
check "server dropped mid-convert (raw)" case_dropped_raw
start_http www
check "server dropped mid-convert (vmdk)" case_dropped_vmdk
start_http www
check "server dropped mid-convert (vmdk flat)" case_dropped_vmdk_flat
start_http www
check "server dropped mid-convert (vmdk split)" case_dropped_vmdk_split

if ((${#failed[@]})); then
  echo "FAIL: $(basename "$0"): ${#failed[@]} case(s) failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all remote error cases passed"
