# SPDX-License-Identifier: BSD-3-Clause
# Watching the processes vmdkit starts (sourced after tests/common.sh by
# tests/interop/remote-*.sh; not run: it is not under tests/interop/).
# Remote image files are read through nbdkit processes that vmdkit starts;
# secrets (passwords, cookies, headers, presigned URLs' signatures) must
# never be on their command lines nor in their environments.
#
# Provides:
#   check NAME FUNCTION [ARGS...]
#                        run one case in a subshell with set -e; a failure
#                        is recorded in the array failed and the next runs
#   refused LABEL URL PATTERN [NOT...] -- CMD...
#                        CMD fails with one line naming URL, matching
#                        PATTERN, without any of the strings NOT
#   watch OUT CMD...     run CMD and record its descendants (see below)
#   no_secret_in_children LABEL OUT SECRET...
#                        die unless nbdkit was seen in OUT and no SECRET is
#                        in any command line or environment recorded there

: "${tmpdir:?remote-watch.sh is sourced after tests/common.sh}"

# watch OUT CMD...: run CMD, recording the command line and environment of
# every process below it (not CMD itself, whose command line the user
# wrote, nor a child not yet past exec, which still shows it) every few ms until it exits, in OUT (one "pid<TAB>cmdline" line
# per process and state, NULs as spaces; environments in OUT.env).  Its
# exit status is CMD's; its stderr goes to $tmpdir/err.  CMD runs without
# the fixture's HTTP_PASSWORD in its environment (it would be found there).
watch() {
  python3 - "$@" 2>"$tmpdir/err" <<'EOF'
import os, subprocess, sys, time
out = sys.argv[1]
env = {k: v for k, v in os.environ.items() if k != "HTTP_PASSWORD"}
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=sys.stderr,
                     env=env)
seen, envs = set(), set()
root_cmdline = None
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None
while True:
    done = p.poll() is not None
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = read("/proc/%s/stat" % d)
            if st:
                parent[int(d)] = int(st[st.rindex(b")") + 2:].split()[1])
    below = set()
    for pid in parent:
        q, chain = pid, 0
        while q in parent and q > 1 and chain < 64:
            q = parent[q]
            chain += 1
            if q == p.pid:
                below.add(pid)
                break
    if root_cmdline is None:
        root_cmdline = read("/proc/%d/cmdline" % p.pid)
    for pid in below:
        c = read("/proc/%d/cmdline" % pid)
        # a child between fork and exec still shows CMD's own command line
        # (the user's): not one vmdkit wrote
        if c and c == root_cmdline:
            continue
        if c:
            seen.add("%d\t%s" % (pid, c.replace(b"\0", b" ").decode("latin-1")))
        e = read("/proc/%d/environ" % pid)
        if e:
            envs.add("%d\t%s" % (pid, e.replace(b"\0", b" ").decode("latin-1")))
    if done:
        break
    time.sleep(0.005)
with open(out, "w") as f:
    f.write("".join(s + "\n" for s in sorted(seen)))
with open(out + ".env", "w") as f:
    f.write("".join(s + "\n" for s in sorted(envs)))
sys.exit(p.returncode)
EOF
}

# no_secret_in_children LABEL PROCS SECRET...: nbdkit was seen among PROCS
# and no SECRET is in any command line or environment there.
no_secret_in_children() {
  local label=$1 procs=$2 s n
  shift 2
  n=$(grep -cE $'\t''(\S*/)?nbdkit ' "$procs" || true)
  echo "$label: $n command lines of nbdkit seen, $(cut -f1 "$procs" | sort -u | wc -l) processes"
  [[ $n -ge 1 ]] || { cat "$procs" >&2; die "$label: no nbdkit process was seen (the check would be vacuous)"; }
  for s in "$@"; do
    if grep -qF -- "$s" "$procs"; then
      grep -F -- "$s" "$procs" >&2
      die "$label: '$s' is on a child's command line"
    fi
    if grep -qF -- "$s" "$procs.env"; then
      die "$label: '$s' is in a child's environment"
    fi
  done
}

failed=()
# check NAME FUNCTION [ARGS...]: run one case in a subshell with set -e;
# a failure (die, or any failing command) is recorded and the next case runs.
check() {
  local name=$1 r
  shift
  set +e
  (
    set -e
    "$@"
  )
  r=$?
  set -e
  if [[ $r -eq 0 ]]; then
    echo "ok: $name"
  else
    echo "FAILED: $name" >&2
    failed+=("$name")
  fi
}

# refused LABEL URL PATTERN [NOT...] -- CMD...: CMD exits non-zero (not by
# a signal) with one line "vmdkit: ..." that names URL and matches the
# extended regex PATTERN (case-insensitive), and contains none of the
# fixed strings NOT.
refused() {
  local label=$1 url=$2 pattern=$3 nots=() s
  shift 3
  while [[ $1 != -- ]]; do
    nots+=("$1")
    shift
  done
  shift
  run "$@" </dev/null
  echo "$label: $(cat "$tmpdir/err")"
  [[ $rc -ne 0 ]] || die "$label: exited 0"
  [[ $rc -lt 128 ]] || die "$label: killed by signal $((rc - 128))"
  one_error_line "$label"
  grep -qF -- "$url" "$tmpdir/err" ||
    die "$label: the message does not name $url: $(cat "$tmpdir/err")"
  grep -qiE -- "$pattern" "$tmpdir/err" ||
    die "$label: the message does not match /$pattern/: $(cat "$tmpdir/err")"
  for s in "${nots[@]}"; do
    if grep -qF -- "$s" "$tmpdir/err"; then
      die "$label: the message shows '$s': $(cat "$tmpdir/err")"
    fi
  done
}
