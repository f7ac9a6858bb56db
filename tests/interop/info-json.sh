#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit info --output=json says what qemu-img info --output=json says, with
# the same keys: virtual-size, cluster-size, format, and under
# format-specific.data: create-type, cid, parent-cid; for qemu-made images
# (sparse, zeroed_grain, flat, odd sizes, 4 KiB-less grains) and vmdkit-made
# ones.  The human output names the same numbers.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img python3

compare_info() { # LABEL IMG
  local label=$1 img=$2
  qemu-img info -f vmdk --output=json "$img" >"$tmpdir/q.json"
  "$VMDKIT" info --output=json "$img" >"$tmpdir/v.json" 2>"$tmpdir/v.err" ||
    { cat "$tmpdir/v.err" >&2; die "$label: vmdkit info --output=json failed"; }
  [[ ! -s "$tmpdir/v.err" ]] || { cat "$tmpdir/v.err" >&2; die "$label: vmdkit info wrote to stderr"; }
  python3 - "$tmpdir/q.json" "$tmpdir/v.json" "$label" <<'EOF'
import json, sys
q = json.load(open(sys.argv[1]))
try:
    v = json.load(open(sys.argv[2]))
except ValueError as e:
    sys.exit("%s: vmdkit info output is not JSON: %s" % (sys.argv[3], e))
bad = []
def get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return "(missing)"
        d = d[k]
    return d
for path in (("virtual-size",), ("cluster-size",), ("format",),
             ("format-specific", "type"),
             ("format-specific", "data", "create-type"),
             ("format-specific", "data", "cid"),
             ("format-specific", "data", "parent-cid"), ("dirty-flag",)):
    a, b = get(q, path), get(v, path)
    if a != b:
        bad.append("%s: qemu-img %r, vmdkit %r" % (".".join(path), a, b))
qe = get(q, ("format-specific", "data", "extents"))
ve = get(v, ("format-specific", "data", "extents"))
if not isinstance(ve, list) or len(ve) != len(qe):
    bad.append("extents: qemu-img %r, vmdkit %r" % (qe, ve))
else:
    for i, (a, b) in enumerate(zip(qe, ve)):
        for k in ("virtual-size", "cluster-size"):
            if a.get(k) != b.get(k):
                bad.append("extent %d %s: qemu-img %r, vmdkit %r" % (i, k, a.get(k), b.get(k)))
if not isinstance(v.get("actual-size"), int) or v["actual-size"] <= 0:
    bad.append("actual-size %r" % v.get("actual-size"))
if bad:
    sys.exit("%s:\n  %s" % (sys.argv[3], "\n  ".join(bad)))
EOF
  # the human output carries the same numbers
  "$VMDKIT" info "$img" >"$tmpdir/v.txt" || die "$label: vmdkit info failed"
  local vs cid
  vs=$(json_get "$tmpdir/q.json" virtual-size)
  cid=$(json_get "$tmpdir/q.json" format-specific data cid)
  grep -q "$vs" "$tmpdir/v.txt" || { cat "$tmpdir/v.txt" >&2; die "$label: human info lacks the size $vs"; }
  grep -Eqi "$cid|$(printf '%08x' "$cid")" "$tmpdir/v.txt" ||
    { cat "$tmpdir/v.txt" >&2; die "$label: human info lacks the CID"; }
  grep -q "$(json_get "$tmpdir/q.json" format-specific data create-type)" "$tmpdir/v.txt" ||
    die "$label: human info lacks the create type"
  echo "$label: ok"
}

qemu-img create -q -f vmdk "$tmpdir/a.vmdk" 64M
compare_info "qemu monolithicSparse" "$tmpdir/a.vmdk"
qemu-img create -q -f vmdk -o zeroed_grain=on,adapter_type=lsilogic "$tmpdir/b.vmdk" 1G
qemu-io -f vmdk -c "write -P 0x55 0 1M" "$tmpdir/b.vmdk" >/dev/null
compare_info "qemu zeroed_grain with data" "$tmpdir/b.vmdk"
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$tmpdir/c.vmdk" 10M
compare_info "qemu monolithicFlat" "$tmpdir/c.vmdk"
qemu-img create -q -f vmdk "$tmpdir/d.vmdk" 1000000000 # not a multiple of 64 KiB
compare_info "qemu odd size" "$tmpdir/d.vmdk"

# vmdkit-made images: qemu-img must agree with vmdkit about them too
"$VMDKIT" create -q "$tmpdir/e.vmdk" 3G
compare_info "vmdkit monolithicSparse" "$tmpdir/e.vmdk"
"$VMDKIT" create -q -o grain_size=8192,zeroed_grain=on "$tmpdir/f.vmdk" 100M
compare_info "vmdkit 8 KiB grains" "$tmpdir/f.vmdk"
"$VMDKIT" create -q -o subformat=monolithicFlat "$tmpdir/g.vmdk" 5M
compare_info "vmdkit monolithicFlat" "$tmpdir/g.vmdk"

# the first write after an open changes the CID (qemu-img sees the new one);
# reads and info do not
cid0=$(json_get "$tmpdir/v.json" format-specific data cid)
"$VMDKIT" read "$tmpdir/g.vmdk" 0 4096 >/dev/null
"$VMDKIT" info --output=json "$tmpdir/g.vmdk" >"$tmpdir/v2.json"
[[ $(json_get "$tmpdir/v2.json" format-specific data cid) == "$cid0" ]] || die "a read changed the CID"
printf 'data' | "$VMDKIT" write "$tmpdir/g.vmdk" 1000
compare_info "vmdkit monolithicFlat after a write" "$tmpdir/g.vmdk"
[[ $(json_get "$tmpdir/v.json" format-specific data cid) != "$cid0" ]] || die "a write did not change the CID"
"$VMDKIT" info --output=json "$tmpdir/f.vmdk" >"$tmpdir/v2.json"
cid0=$(json_get "$tmpdir/v2.json" format-specific data cid)
printf 'data' | "$VMDKIT" write "$tmpdir/f.vmdk" 100000
compare_info "vmdkit 8 KiB grains after a write" "$tmpdir/f.vmdk"
[[ $(json_get "$tmpdir/v.json" format-specific data cid) != "$cid0" ]] || die "a write did not change the CID (sparse)"

# a raw file: format raw, the file's size
head -c 1048576 /dev/zero >"$tmpdir/h.raw"
"$VMDKIT" info --output=json "$tmpdir/h.raw" >"$tmpdir/h.json" || die "info of a raw file failed"
[[ $(json_get "$tmpdir/h.json" format) == raw ]] || die "raw file: format $(json_get "$tmpdir/h.json" format)"
[[ $(json_get "$tmpdir/h.json" virtual-size) -eq 1048576 ]] || die "raw file: virtual-size"
echo "all ok"
