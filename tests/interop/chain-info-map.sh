#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# info and map on backing chains, against qemu-img on chains it builds:
#  - info shows "backing file: X" / "backing file format: F" (with the
#    actual path when it differs), JSON backing-filename,
#    full-backing-filename and backing-filename-format as qemu-img does;
#  - info --backing-chain lists every layer (human: blank line between
#    images; JSON: an array) with the same names, sizes and CIDs as
#    `qemu-img info --backing-chain`;
#  - map --output=json gives the same depth/present/zero/data/offset for
#    every grain as `qemu-img map --output=json`, and the human map shows
#    the same table (runs from a backing file name the backing's file).
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

cd "$tmpdir"
G=65536
mkdir d
qemu-img create -q -f vmdk d/base.vmdk 4M
qemu-io -c 'write -P 1 0 1M' -c 'write -P 5 3M 100' d/base.vmdk >/dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk d/mid.vmdk
qemu-io -c 'write -P 2 1048676 100' -c 'write -P 6 200000 10' d/mid.vmdk >/dev/null
qemu-img create -q -f vmdk -o zeroed_grain=on -b mid.vmdk -F vmdk d/top.vmdk
qemu-io -c 'write -P 3 2M 65537' -c 'write -z 0 131072' -c 'write -z 3M 65536' d/top.vmdk >/dev/null

# ---- info --------------------------------------------------------------------
# run from the parent folder, so the actual paths differ from the links
"$VMDKIT" info d/top.vmdk >info.txt || die "info failed"
grep -qx 'backing file: mid.vmdk (actual path: d/mid.vmdk)' info.txt || die "info: $(cat info.txt)"
grep -qx 'backing file format: vmdk' info.txt || die "info: no backing file format"
qemu-img info d/top.vmdk | grep '^backing file' >q.txt
grep '^backing file' info.txt >v.txt
cmp q.txt v.txt || die "backing lines differ from qemu-img's: $(cat v.txt) vs $(cat q.txt)"
"$VMDKIT" info d/base.vmdk >info.txt
! grep -q '^backing' info.txt || die "a base image shows a backing file"

"$VMDKIT" info --output=json d/top.vmdk >v.json
qemu-img info --output=json d/top.vmdk >q.json
for key in backing-filename full-backing-filename backing-filename-format; do
  [[ $(json_get v.json $key) == "$(json_get q.json $key)" ]] ||
    die "info JSON $key is '$(json_get v.json $key)', qemu-img says '$(json_get q.json $key)'"
done
[[ $(json_get v.json full-backing-filename) == d/mid.vmdk ]] || die "full-backing-filename $(json_get v.json full-backing-filename)"

# ---- info --backing-chain ------------------------------------------------------
"$VMDKIT" info --backing-chain d/top.vmdk >chain.txt || die "info --backing-chain failed"
[[ $(grep '^image: ' chain.txt | tr '\n' ' ') == "image: d/top.vmdk image: d/mid.vmdk image: d/base.vmdk " ]] ||
  die "backing chain images: $(grep '^image: ' chain.txt)"
# a blank line before each image but the first, and nowhere else
python3 - chain.txt <<'EOF' || die "info --backing-chain layout: $(cat chain.txt)"
import sys
lines = open(sys.argv[1]).read().split("\n")
assert lines[-1] == "" and lines[-2] != "", "ends with one newline"
blanks = [i for i, l in enumerate(lines[:-1]) if l == ""]
assert len(blanks) == 2, blanks
for i in blanks:
    assert lines[i + 1].startswith("image: "), lines[i + 1]
EOF
[[ $(grep -c '^backing file: ' chain.txt) -eq 2 ]] || die "backing chain: expected 2 'backing file' lines"
# without --backing-chain only the top image
[[ $(grep -c '^image: ' info.txt) -eq 1 ]] || die "plain info shows more than one image"

"$VMDKIT" info --backing-chain --output=json d/top.vmdk >v.json || die "info --backing-chain --output=json failed"
qemu-img info --backing-chain --output=json d/top.vmdk >q.json
python3 - v.json q.json <<'EOF' || die "info --backing-chain JSON differs from qemu-img's"
import json, sys
v, q = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert isinstance(v, list) and len(v) == len(q) == 3, (len(v), len(q))
for a, b in zip(v, q):
    for k in ("filename", "format", "virtual-size", "cluster-size", "backing-filename",
              "full-backing-filename", "backing-filename-format"):
        assert a.get(k) == b.get(k), (k, a.get(k), b.get(k))
    for k in ("cid", "parent-cid", "create-type"):
        assert a["format-specific"]["data"][k] == b["format-specific"]["data"][k], k
    assert list(a)[0] == list(b)[0], "key order: %s vs %s" % (list(a)[0], list(b)[0])
EOF

# ---- map -----------------------------------------------------------------------
for img in top mid base; do
  "$VMDKIT" map --output=json d/$img.vmdk >v.json || die "map --output=json $img failed"
  qemu-img map --output=json d/$img.vmdk >q.json
  map_layers v.json $G >v.grains
  map_layers q.json $G >q.grains
  diff q.grains v.grains >&2 || die "map of $img: grains differ from qemu-img map (< qemu, > vmdkit)"
  "$VMDKIT" map d/$img.vmdk >v.txt || die "map $img failed"
  qemu-img map d/$img.vmdk >q.txt
  diff q.txt v.txt >&2 || die "human map of $img differs from qemu-img's"
done
# the test chain has every depth in it
"$VMDKIT" map --output=json d/top.vmdk >v.json
python3 - v.json <<'EOF' || die "map of top: not every layer shows up"
import json, sys
runs = json.load(open(sys.argv[1]))
depths = {(r["depth"], r["present"], r["zero"], r["data"]) for r in runs}
for want in [(0, True, False, True), (0, True, True, False), (1, True, False, True),
             (2, True, False, True), (2, False, True, False)]:
    assert want in depths, (want, sorted(depths))
EOF
# the human table names the file of the layer each run comes from
"$VMDKIT" map d/top.vmdk >v.txt
for f in d/top.vmdk d/mid.vmdk d/base.vmdk; do
  grep -q " $f\$" v.txt || die "human map does not show $f: $(cat v.txt)"
done
exit 0
