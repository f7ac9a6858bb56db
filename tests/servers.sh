# SPDX-License-Identifier: BSD-3-Clause
# Real servers on 127.0.0.1 for remote-image tests (sourced after
# tests/common.sh, not run; it is not under tests/interop/, where every *.sh
# is a test).  vmdkit reads remote images through nbdkit's curl and ssh
# plugins; these fixtures give them something real to talk to.  Everything
# (configs, keys, certificate, logs) lives in $tmpdir; the servers listen on
# random free high ports, so they never depend on or collide with a system
# lighttpd or sshd.
#
# Provides:
#   free_port        print a TCP port free on 127.0.0.1 now
#   start_http DIR   lighttpd serving DIR on three ports, started in the
#                    foreground of a background job; returns once every port
#                    answers (dies, with lighttpd's error log, if not).
#                    Exports:
#                      HTTP_URL     http://127.0.0.1:PORT (DIR is its root)
#                      HTTPS_URL    https://127.0.0.1:PORT2, same content,
#                                   a self-signed certificate for 127.0.0.1
#                                   and localhost
#                      HTTPS_CERT   that certificate (PEM): curl --cacert,
#                                   nbdkit curl cainfo=
#                      NORANGE_URL  http://127.0.0.1:PORT3, same content but
#                                   no byte ranges (no Accept-Ranges, a
#                                   Range header is answered 200 and the
#                                   whole file)
#                      HTTP_USER, HTTP_PASSWORD  (vmdkit / s3cret-pw): the
#                                   Basic auth account that every URL's
#                                   /private/ (DIR/private/) requires
#                      HTTP_PASSWORD_FILE  a file holding the password (no
#                                   newline): nbdkit curl password=+FILE
#                      HTTP_PID     lighttpd's pid
#                      HTTP_LOG     lighttpd's error log
#                      HTTP_ACCESS_LOG  lighttpd's access log, a line a
#                                   request: "METHOD PATH?QUERY PROTOCOL
#                                   STATUS RANGE" (the request line as
#                                   sent; RANGE is the Range header or -).
#                                   lighttpd buffers it: a request shows up
#                                   some seconds later (or at stop_http)
#   stop_http        kill lighttpd and wait for it (a server going away)
#   start_sshd       OpenSSH's sshd (with SFTP, which nbdkit's ssh plugin
#                    uses) on 127.0.0.1 at a free port, key login only, for
#                    the user running the test (root or not).  Returns once
#                    it accepts a login.  Exits 77 (skip) if sshd is not
#                    installed or cannot run here (rejects the config,
#                    exits at start); dies if it runs but refuses the
#                    login (a fixture bug).  Exports:
#                      SSH_PORT, SSH_USER ($(id -un)), SSH_PID, SSH_LOG
#                      SSH_KEY      the client's private key (ed25519)
#                      SSH_KNOWN_HOSTS      the host key of [127.0.0.1]:PORT
#                      SSH_BAD_KNOWN_HOSTS  a different key for the same
#                                   host and port (a host key mismatch)
#                      SSH_OPTS     an array of ssh(1) options that use
#                                   those: ssh "${SSH_OPTS[@]}" -p "$SSH_PORT"
#                                   "$SSH_USER@127.0.0.1" CMD (ssh keeps
#                                   the first value of an option: put an
#                                   override, e.g. -o UserKnownHostsFile=,
#                                   before "${SSH_OPTS[@]}")
#   stop_sshd        kill sshd and wait for it
#   LIGHTTPD, SSHD   (optional) the server binaries; by default lighttpd on
#                    PATH or /usr/sbin/lighttpd (not on a user's PATH), and
#                    /usr/sbin/sshd
#
# The servers are killed on exit: servers.sh chains its cleanup in front of
# the EXIT trap already set (common.sh's, which removes $tmpdir).  Call the
# start_* functions directly, not in $( ) or a pipeline (the exports and the
# job would stay in a subshell).

: "${tmpdir:?servers.sh is sourced after tests/common.sh}"

_servers_pids=()
# The EXIT trap set so far (common.sh's), run after ours.
_servers_prev_exit_trap=$(trap -p EXIT)
if [[ -n $_servers_prev_exit_trap ]]; then
  eval "_servers_prev_exit_trap=$(sed -E "s/^trap -- (.*) EXIT\$/\\1/" <<<"$_servers_prev_exit_trap")"
fi

_servers_cleanup() {
  local p
  for p in "${_servers_pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${_servers_pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  _servers_pids=()
  eval "$_servers_prev_exit_trap"
}
trap _servers_cleanup EXIT

_servers_forget() {
  local p keep=()
  for p in "${_servers_pids[@]}"; do
    [[ $p == "$1" ]] || keep+=("$p")
  done
  _servers_pids=("${keep[@]}")
}

free_port() {
  python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Three distinct free ports (a port just printed by free_port is free again
# once it returns, so the next call could print it again).
_servers_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

HTTP_USER=vmdkit
HTTP_PASSWORD=s3cret-pw
export HTTP_USER HTTP_PASSWORD

start_http() {
  local root=${1:?start_http DIR}
  local d=$tmpdir/http p1 p2 p3 i ok url
  local lighttpd=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
  need openssl curl python3
  if [[ ! -x $lighttpd ]]; then
    echo "SKIP: lighttpd is not installed" >&2
    exit 77
  fi
  [[ -d $root ]] || die "start_http: $root is not a directory"
  root=$(cd "$root" && pwd)
  mkdir -p "$d"
  read -r p1 p2 p3 < <(_servers_ports 3)

  HTTPS_CERT=$d/cert.pem
  if ! openssl req -x509 -newkey rsa:2048 -nodes -days 7 \
      -subj /CN=127.0.0.1 \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$d/key.pem" -out "$HTTPS_CERT" >"$d/openssl.log" 2>&1; then
    cat "$d/openssl.log" >&2
    die "start_http: openssl could not make the test certificate"
  fi
  printf '%s:%s\n' "$HTTP_USER" "$HTTP_PASSWORD" >"$d/users"
  HTTP_PASSWORD_FILE=$d/password
  printf '%s' "$HTTP_PASSWORD" >"$HTTP_PASSWORD_FILE"

  HTTP_LOG=$d/error.log
  : >"$HTTP_LOG"
  HTTP_ACCESS_LOG=$d/access.log
  : >"$HTTP_ACCESS_LOG"
  cat >"$d/lighttpd.conf" <<EOF
server.modules = ("mod_auth", "mod_authn_file", "mod_openssl", "mod_accesslog")
server.document-root = "$root"
server.bind = "127.0.0.1"
server.port = $p1
server.errorlog = "$HTTP_LOG"
accesslog.filename = "$HTTP_ACCESS_LOG"
accesslog.format = "%r %s %{Range}i"
server.pid-file = "$d/lighttpd.pid"
server.upload-dirs = ("$d")
server.tag = "lighttpd"
index-file.names = ()

auth.backend = "plain"
auth.backend.plain.userfile = "$d/users"
auth.require = ("/private/" => (
  "method" => "basic",
  "realm" => "vmdkit",
  "require" => "valid-user"
))

\$SERVER["socket"] == "127.0.0.1:$p2" {
  ssl.engine = "enable"
  ssl.pemfile = "$HTTPS_CERT"
  ssl.privkey = "$d/key.pem"
}

# lighttpd 1.4.69 (bookworm): server.range-requests still works, also in a
# socket conditional.
\$SERVER["socket"] == "127.0.0.1:$p3" {
  server.range-requests = "disable"
}
EOF
  if ! "$lighttpd" -tt -f "$d/lighttpd.conf" >"$d/check.log" 2>&1; then
    cat "$d/check.log" "$HTTP_LOG" >&2
    die "start_http: lighttpd rejects its configuration"
  fi
  "$lighttpd" -D -f "$d/lighttpd.conf" >>"$HTTP_LOG" 2>&1 &
  HTTP_PID=$!
  _servers_pids+=("$HTTP_PID")

  HTTP_URL=http://127.0.0.1:$p1
  HTTPS_URL=https://127.0.0.1:$p2
  NORANGE_URL=http://127.0.0.1:$p3
  export HTTP_URL HTTPS_URL NORANGE_URL HTTPS_CERT HTTP_PID HTTP_LOG \
    HTTP_PASSWORD_FILE HTTP_ACCESS_LOG

  # Any HTTP answer (even 404) means the port is up.
  for url in "$HTTP_URL" "$HTTPS_URL" "$NORANGE_URL"; do
    ok=0
    for ((i = 0; i < 100; i++)); do
      if ! kill -0 "$HTTP_PID" 2>/dev/null; then
        break
      fi
      if curl -s -o /dev/null --max-time 2 --cacert "$HTTPS_CERT" "$url/"; then
        ok=1
        break
      fi
      sleep 0.1
    done
    if [[ $ok != 1 ]]; then
      echo "--- lighttpd error log ($HTTP_LOG):" >&2
      cat "$HTTP_LOG" >&2
      stop_http
      die "start_http: lighttpd does not answer on $url"
    fi
  done
}

stop_http() {
  [[ -n ${HTTP_PID:-} ]] || return 0
  kill "$HTTP_PID" 2>/dev/null || true
  wait "$HTTP_PID" 2>/dev/null || true
  _servers_forget "$HTTP_PID"
  HTTP_PID=
}

_sshd_skip() {
  echo "SKIP: sshd cannot run here: $*" >&2
  exit 77
}

start_sshd() {
  local d=$tmpdir/sshd sshd=${SSHD:-/usr/sbin/sshd} i ok=0
  need ssh ssh-keygen python3
  [[ -x $sshd ]] || _sshd_skip "$sshd is not installed (openssh-server)"
  mkdir -p "$d"
  if [[ $(id -u) -eq 0 && ! -d /run/sshd ]]; then
    # The privilege separation directory sshd wants when run as root.
    mkdir -m 0755 /run/sshd || _sshd_skip "cannot create /run/sshd"
  fi
  SSH_USER=$(id -un)
  SSH_PORT=$(free_port)
  SSH_KEY=$d/client_key
  SSH_KNOWN_HOSTS=$d/known_hosts
  SSH_BAD_KNOWN_HOSTS=$d/bad_known_hosts
  SSH_LOG=$d/sshd.log
  rm -f "$d/host_key" "$d/host_key.pub" "$d/other_key" "$d/other_key.pub" \
    "$SSH_KEY" "$SSH_KEY.pub"
  ssh-keygen -q -t ed25519 -N '' -C vmdkit-test-host -f "$d/host_key" ||
    die "start_sshd: ssh-keygen failed"
  ssh-keygen -q -t ed25519 -N '' -C vmdkit-test-other -f "$d/other_key" ||
    die "start_sshd: ssh-keygen failed"
  ssh-keygen -q -t ed25519 -N '' -C vmdkit-test-client -f "$SSH_KEY" ||
    die "start_sshd: ssh-keygen failed"
  cp "$SSH_KEY.pub" "$d/authorized_keys"
  chmod 600 "$d/authorized_keys"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" \
    "$(cut -d' ' -f1,2 "$d/host_key.pub")" >"$SSH_KNOWN_HOSTS"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" \
    "$(cut -d' ' -f1,2 "$d/other_key.pub")" >"$SSH_BAD_KNOWN_HOSTS"

  cat >"$d/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
AllowUsers $SSH_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
  if ! "$sshd" -t -f "$d/sshd_config" >"$d/check.log" 2>&1; then
    _sshd_skip "$sshd -t rejects the test configuration: $(cat "$d/check.log")"
  fi
  "$sshd" -D -e -f "$d/sshd_config" >>"$SSH_LOG" 2>&1 &
  SSH_PID=$!
  _servers_pids+=("$SSH_PID")
  SSH_OPTS=(-F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes
    -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null
    -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" -o ConnectTimeout=5
    -i "$SSH_KEY")
  export SSH_PORT SSH_USER SSH_KEY SSH_KNOWN_HOSTS SSH_BAD_KNOWN_HOSTS \
    SSH_PID SSH_LOG

  for ((i = 0; i < 100; i++)); do
    kill -0 "$SSH_PID" 2>/dev/null || break
    if ssh "${SSH_OPTS[@]}" -p "$SSH_PORT" "$SSH_USER@127.0.0.1" true \
        </dev/null >/dev/null 2>"$d/client.log"; then
      ok=1
      break
    fi
    sleep 0.1
  done
  if [[ $ok != 1 ]]; then
    echo "--- sshd log ($SSH_LOG):" >&2
    cat "$SSH_LOG" >&2
    echo "--- ssh client:" >&2
    cat "$d/client.log" >&2
    if ! kill -0 "$SSH_PID" 2>/dev/null; then
      stop_sshd
      _sshd_skip "sshd exited at start (its log is above)"
    fi
    stop_sshd
    die "start_sshd: sshd runs but did not accept a key login on 127.0.0.1:$SSH_PORT"
  fi
}

stop_sshd() {
  [[ -n ${SSH_PID:-} ]] || return 0
  kill "$SSH_PID" 2>/dev/null || true
  wait "$SSH_PID" 2>/dev/null || true
  _servers_forget "$SSH_PID"
  SSH_PID=
}
