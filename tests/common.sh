# SPDX-License-Identifier: BSD-3-Clause
# Shared helpers for tests/interop/*.sh (sourced, not run; every *.sh in
# tests/interop/ is a test, so helpers live here).
#
# Environment (set by ctest): VMDKIT (the CLI), BUILD_DIR, SRC_DIR, CORPUS,
# TMPDIR.  Run by hand:  VMDKIT=build/vmdkit SRC_DIR=. bash tests/interop/X.sh
#
# Provides:
#   $tmpdir              a fresh directory, removed on exit
#   need TOOL...         exit 77 (skip) unless every TOOL is on PATH
#   die MSG...           print "FAIL: MSG" on stderr and exit 1
#   sha FILE             sha256 of FILE (hex)
#   run CMD...           run CMD, keeping going on failure: $rc is its exit
#                        status, $tmpdir/out and $tmpdir/err its output
#   expect_rc N CMD...   run CMD, die unless it exits N
#   one_error_line WHAT  die unless $tmpdir/err is exactly one line that
#                        starts with "vmdkit: "
#   same FILE1 FILE2     die unless the files have the same bytes (cmp)
#   same_sparse A B      the same, comparing only where either file holds
#                        data (SEEK_DATA): fast for large sparse raws
#   qemu_write IMG 'OFF LEN BYTE'...
#                        qemu-io writes each pattern into the VMDK IMG
#   json_get FILE KEY... print a value from a JSON document (python3):
#                        keys are object keys or array indexes
#   map_grains JSON G    a qemu-img style JSON map, one line per G-byte
#                        grain: "start present zero data file-offset"
#                        (so maps that merge runs differently compare equal)
#   map_layers JSON G    like map_grains, with the layer each grain comes
#                        from: "start depth present zero data file-offset"
#   desc_value FILE KEY  the value of KEY (e.g. parentCID) in the descriptor
#                        of FILE (a text descriptor or a monolithicSparse
#                        file's embedded one), quotes removed
#   tree_state DIR...    every regular file under the DIRs (not following
#                        symlinks): path, size and mtime (ns), then its
#                        sha256 -- equal before and after a command proves
#                        it changed (and touched) no file

set -euo pipefail

if [[ -z "${VMDKIT:-}" ]]; then
  if [[ -n "${BUILD_DIR:-}" && -x "$BUILD_DIR/vmdkit" ]]; then
    VMDKIT=$BUILD_DIR/vmdkit
  else
    echo "FAIL: VMDKIT is not set (the vmdkit CLI to test)" >&2
    exit 1
  fi
fi
[[ -x "$VMDKIT" ]] || { echo "FAIL: VMDKIT=$VMDKIT is not executable" >&2; exit 1; }
: "${SRC_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${CORPUS:=$SRC_DIR/../shared/corpus}"
mkdir -p "${TMPDIR:-/tmp}"

tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/vmdkit-$(basename "$0" .sh).XXXXXX")
trap 'rm -rf "$tmpdir"' EXIT

die() {
  echo "FAIL: $(basename "$0"): $*" >&2
  exit 1
}

need() {
  local t
  for t in "$@"; do
    if ! command -v "$t" >/dev/null 2>&1; then
      echo "SKIP: $t is not installed" >&2
      exit 77
    fi
  done
}

# run_nbdkit ARGS...: nbdkit ARGS.  In a sanitizer build the plugin needs
# the ASan runtime loaded first, and nbdkit is not built with it: the
# runtime (ASAN_RUNTIME, from CMake) is preloaded into nbdkit and unset
# again for its --run command.  Skips (77) when no runtime was found.
run_nbdkit() {
  if [[ ${VMDKIT_SANITIZED:-0} != 1 ]]; then
    nbdkit "$@"
    return
  fi
  if [[ -z ${ASAN_RUNTIME:-} || ! -f ${ASAN_RUNTIME:-} ]]; then
    echo "SKIP: sanitizer build without a known ASan runtime for nbdkit" >&2
    exit 77
  fi
  local args=() prev="" a
  for a in "$@"; do
    [[ $prev == --run ]] && a="unset LD_PRELOAD; $a"
    args+=("$a")
    prev=$a
  done
  LD_PRELOAD=$ASAN_RUNTIME nbdkit "${args[@]}"
}

sha() {
  sha256sum "$1" | cut -d' ' -f1
}

rc=0
run() {
  set +e
  "$@" >"$tmpdir/out" 2>"$tmpdir/err"
  rc=$?
  set -e
}

expect_rc() {
  local want=$1
  shift
  run "$@"
  if [[ $rc -ne $want ]]; then
    echo "--- stdout:" >&2; head -c 2000 "$tmpdir/out" >&2 || true
    echo "--- stderr:" >&2; head -c 2000 "$tmpdir/err" >&2 || true
    die "'$*' exited $rc, expected $want"
  fi
}

one_error_line() {
  local what=$1 n
  n=$(wc -l <"$tmpdir/err")
  if [[ $n -ne 1 ]] || ! head -n1 "$tmpdir/err" | grep -q '^vmdkit: '; then
    echo "--- stderr ($n lines):" >&2; cat "$tmpdir/err" >&2
    die "$what: expected exactly one stderr line starting 'vmdkit: '"
  fi
}

same() {
  if ! cmp "$1" "$2"; then
    die "$1 and $2 differ"
  fi
}

json_get() {
  python3 - "$@" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    doc = doc[int(k)] if isinstance(doc, list) else doc[k]
print(json.dumps(doc) if isinstance(doc, (dict, list, bool)) or doc is None else doc)
EOF
}

map_grains() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
G = int(sys.argv[2])
end = 0
for e in json.load(open(sys.argv[1])):
    s, n = int(e["start"]), int(e["length"])
    if s != end:
        sys.exit("map: run at %d, expected %d" % (s, end))
    end = s + n
    for g in range(s, s + n, G):
        off = e.get("offset")
        print(g, int(e["present"]), int(e["zero"]), int(e["data"]),
              "-" if off is None else off + (g - s))
EOF
}

map_layers() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
G = int(sys.argv[2])
end = 0
for e in json.load(open(sys.argv[1])):
    s, n = int(e["start"]), int(e["length"])
    if s != end:
        sys.exit("map: run at %d, expected %d" % (s, end))
    end = s + n
    for g in range(s, s + n, G):
        off = e.get("offset")
        print(g, int(e["depth"]), int(e["present"]), int(e["zero"]),
              int(e["data"]), "-" if off is None else off + (g - s))
EOF
}

desc_value() {
  python3 - "$1" "$2" <<'EOF'
import re, struct, sys
data = open(sys.argv[1], "rb").read()
if data[:4] == b"KDMV":
    off, size = struct.unpack_from("<QQ", data, 28)
    data = data[off * 512:(off + size) * 512]
text = data.split(b"\0", 1)[0].decode("latin-1")
for line in text.splitlines():
    m = re.match(r"\s*([A-Za-z0-9_.]+)\s*=\s*(.*?)\s*$", line)
    if m and m.group(1).lower() == sys.argv[2].lower():
        print(m.group(2).strip('"'))
        sys.exit(0)
sys.exit("%s: no %s in the descriptor" % (sys.argv[1], sys.argv[2]))
EOF
}

tree_state() {
  find "$@" -type f -printf '%p %s %T@\n' | LC_ALL=C sort
  find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
}

# same_sparse A B: the files have the same size and bytes, comparing only
# where either holds data (SEEK_DATA/SEEK_HOLE): the rest reads as zeros in
# both (cmp takes 15 s over a 2.5 GiB raw that is mostly holes).
same_sparse() {
  python3 - "$1" "$2" <<'EOF' || die "$1 and $2 differ"
import os, sys
a, b = sys.argv[1:3]
fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
size = os.fstat(fa).st_size
if size != os.fstat(fb).st_size:
    sys.exit("sizes %d and %d" % (size, os.fstat(fb).st_size))
def runs(fd):
    out, pos = [], 0
    while pos < size:
        try:
            s = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        e = os.lseek(fd, s, os.SEEK_HOLE)
        out.append((s, e))
        pos = e
    return out
checked = 0
for s, e in sorted(runs(fa) + runs(fb)):
    pos = s
    while pos < e:
        n = min(e - pos, 1 << 20)
        if os.pread(fa, n, pos) != os.pread(fb, n, pos):
            sys.exit("bytes differ in [%d, %d)" % (pos, pos + n))
        pos += n
        checked += n
if checked == 0:
    sys.exit("no data at all (test bug)")
EOF
}

# qemu_write IMG 'OFF LEN BYTE'...: qemu-io writes the patterns.
qemu_write() {
  local img=$1 w args=()
  shift
  for w in "$@"; do
    set -- $w
    args+=(-c "write -P $3 $1 $2")
  done
  qemu-io -f vmdk "${args[@]}" "$img" >qemu-io.log 2>&1 || { cat qemu-io.log >&2; die "qemu-io $img"; }
}
