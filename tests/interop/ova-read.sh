#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# OVA and OVF in place: FILE.ova (its first disk), FILE.ova:NAME and
# FILE.ovf give what the same commands give on the extracted files.  The
# archives are made with GNU tar in its three formats (ustar, pax, GNU: a
# member name over 100 bytes), around hand-made OVFs in the styles of
# VMware ovftool, VirtualBox (OVF 2.0) and open-vmdk's ova-compose
# (tests/interop/ova/*.ovf), and by 'vmdkit ova create' when it is built.
# Disks: streamOptimized (vmdkit), monolithicSparse (qemu-img), a
# monolithicFlat descriptor whose flat file is another member, in a
# subfolder.  For each: info and map JSON (file names aside), convert -O
# raw bytes (also against qemu-img convert of the extracted disk),
# compare, check, read; the nbdkit plugin (nbdcopy) and the FUSE mount
# when they can run; strace shows no file opened for writing.  vmdkit ova
# info (human, JSON).  ova-errors.sh has the damaged archives.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io tar python3
cd "$tmpdir"
M=$((1024 * 1024))
ovfs=$SRC_DIR/tests/interop/ova

# Disks, with data, zeros and holes; qemu writes them.
qemu-img create -q -f raw a.raw 6M
qemu-io -f raw -c 'write -P 0x41 0 1M' -c 'write -P 0x42 3M 65536' -c 'write -P 0x43 6143k 1k' a.raw >/dev/null
qemu-img create -q -f raw b.raw 5M
qemu-io -f raw -c 'write -P 0x61 64k 2M' -c 'write -P 0x62 4M 512' b.raw >/dev/null
mkdir src
"$VMDKIT" convert -f raw -O vmdk -o subformat=streamOptimized a.raw src/stream.vmdk
qemu-img convert -f raw -O vmdk b.raw src/sparse.vmdk
mkdir src/sub
"$VMDKIT" convert -f raw -O vmdk -o subformat=monolithicFlat b.raw src/sub/flat.vmdk

# fill TEMPLATE OUT DISK1 DISK2: an OVF from a template, with the disks'
# names, sizes, capacities (bytes, MiB, GiB: rounded up) and populated
# sizes.
fill() {
  python3 - "$@" <<'EOF'
import os, sys
tpl, out, d1, d2 = sys.argv[1:5]
def cap(p):
    import subprocess, json
    return int(json.loads(subprocess.check_output(
        [os.environ["VMDKIT"], "info", "--output=json", "src/" + p]))["virtual-size"])
c1, c2 = cap(d1), cap(d2)
v = {"DISK1": d1, "DISK2": d2,
     "SIZE1": os.path.getsize("src/" + d1), "SIZE2": os.path.getsize("src/" + d2),
     "CAP1": c1, "CAP2": c2, "CAPMIB1": -(-c1 // 2**20), "CAPGIB1": -(-c1 // 2**30),
     "POP1": 1 << 20}
t = open(tpl).read()
for k, x in v.items():
    t = t.replace("@%s@" % k, str(x))
open(out, "w").write(t)
EOF
}

# Three archives, one per producer style and tar format.
fill "$ovfs/vmware.ovf" src/vmware.ovf stream.vmdk sparse.vmdk
(cd src && tar --format=ustar -cf ../vmware.ova vmware.ovf stream.vmdk sparse.vmdk)
fill "$ovfs/virtualbox.ovf" src/virtualbox.ovf sparse.vmdk stream.vmdk
(cd src && tar --format=pax -cf ../virtualbox.ova virtualbox.ovf sparse.vmdk stream.vmdk)
long=a-disk-name-that-is-longer-than-the-one-hundred-bytes-a-ustar-name-field-holds-so-gnu-tar-writes-an-L-header.vmdk
cp src/stream.vmdk "src/$long"
fill "$ovfs/ova-compose.ovf" src/compose.ovf "$long" sparse.vmdk
(cd src && tar --format=gnu -cf ../compose.ova compose.ovf "$long" sparse.vmdk)
# No OVF: the first .vmdk member (a descriptor; its flat file is a member
# of the same folder in the archive).
(cd src && tar -cf ../noovf.ova sub/flat.vmdk sub/flat-flat.vmdk stream.vmdk)
# A descriptor whose flat extent claims more than its member holds, and a
# member with data after it: past the member the disk reads as zeros and
# maps as no data, as the shorter extracted file does.
mkdir short
head -c $((2 * M)) b.raw >short/short-flat.vmdk
sed 's/"flat-flat.vmdk"/"short-flat.vmdk"/' src/sub/flat.vmdk >short/short.vmdk
tar -cf short.ova -C short short.vmdk short-flat.vmdk -C ../src stream.vmdk
# An OVF next to its disk files.
cp src/vmware.ovf src/appliance.ovf
# The reference: each archive extracted by tar (which stores and extracts
# a flat file's holes as zeros).
for a in vmware virtualbox compose noovf short; do
  mkdir "x-$a"
  tar -C "x-$a" -xf "$a.ova"
done

# What each path must read as: "PATH EXTRACTED-FILE".
cases=(
  "vmware.ova x-vmware/stream.vmdk"
  "vmware.ova:stream.vmdk x-vmware/stream.vmdk"
  "vmware.ova:sparse.vmdk x-vmware/sparse.vmdk"
  "virtualbox.ova x-virtualbox/sparse.vmdk"
  "virtualbox.ova:stream.vmdk x-virtualbox/stream.vmdk"
  "compose.ova x-compose/sparse.vmdk"
  "compose.ova:$long x-compose/$long"
  "noovf.ova x-noovf/sub/flat.vmdk"
  "noovf.ova:sub/flat.vmdk x-noovf/sub/flat.vmdk"
  "noovf.ova:./stream.vmdk x-noovf/stream.vmdk"
  "short.ova x-short/short.vmdk"
  "src/appliance.ovf src/stream.vmdk"
  "src/appliance.ovf:sparse.vmdk src/sparse.vmdk"
)
if "$VMDKIT" ova create --help >/dev/null 2>&1; then
  "$VMDKIT" ova create --disk a.raw --disk src/sparse.vmdk made.ova >/dev/null
  mkdir made && tar -C made -xf made.ova
  mapfile -t made_disks < <(tar -tf made.ova | grep '\.vmdk$')
  [[ ${#made_disks[@]} -eq 2 ]] || die "made.ova: disks ${made_disks[*]}"
  cases+=("made.ova made/${made_disks[0]}"
          "made.ova:${made_disks[1]} made/${made_disks[1]}")
else
  echo "note: 'vmdkit ova create' is not built: no vmdkit-made OVA" >&2
fi

# JSON without the keys that name files or count host blocks.
strip_json() {
  python3 - "$1" <<'EOF'
import json, sys
def clean(x):
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()
                if "filename" not in k and k not in ("actual-size", "file")}
    if isinstance(x, list):
        return [clean(v) for v in x]
    return x
print(json.dumps(clean(json.load(open(sys.argv[1]))), sort_keys=True, indent=1))
EOF
}

n=0
for c in "${cases[@]}"; do
  p=${c% *} x=${c##* }
  n=$((n + 1))
  # info
  expect_rc 0 "$VMDKIT" info --output=json "$p"
  strip_json "$tmpdir/out" >i1.json
  expect_rc 0 "$VMDKIT" info --output=json "$x"
  strip_json "$tmpdir/out" >i2.json
  diff i1.json i2.json >&2 || die "$p: info differs from $x's"
  # map
  expect_rc 0 "$VMDKIT" map --output=json "$p"
  strip_json "$tmpdir/out" >m1.json
  expect_rc 0 "$VMDKIT" map --output=json "$x"
  strip_json "$tmpdir/out" >m2.json
  diff m1.json m2.json >&2 || die "$p: map differs from $x's"
  # convert, against vmdkit and qemu-img on the extracted disk
  expect_rc 0 "$VMDKIT" convert -O raw "$p" c1.raw
  "$VMDKIT" convert -O raw "$x" c2.raw
  qemu-img convert -O raw "$x" q.raw
  same c1.raw c2.raw
  same c1.raw q.raw
  expect_rc 0 "$VMDKIT" convert -O vmdk "$p" c1.vmdk
  expect_rc 0 "$VMDKIT" compare c1.vmdk "$x"
  # compare, check, read
  expect_rc 0 "$VMDKIT" compare "$p" "$x"
  expect_rc 0 "$VMDKIT" compare "$x" "$p"
  expect_rc 0 "$VMDKIT" check --output=json "$p"
  strip_json "$tmpdir/out" >k1.json
  expect_rc 0 "$VMDKIT" check --output=json "$x"
  strip_json "$tmpdir/out" >k2.json
  diff k1.json k2.json >&2 || die "$p: check differs from $x's"
  expect_rc 0 "$VMDKIT" read "$p" $((3 * M - 100)) 70000
  cp "$tmpdir/out" r1.bin
  "$VMDKIT" read "$x" $((3 * M - 100)) 70000 >r2.bin
  same r1.bin r2.bin
  rm -f c1.raw c2.raw q.raw c1.vmdk
done
echo "ova-read: $n paths read as their extracted disks"

# Nothing is extracted and no file is opened for writing: strace sees no
# open with O_WRONLY, O_RDWR or O_CREAT, and the folders are unchanged.
if command -v strace >/dev/null 2>&1 && strace -f -o /dev/null true 2>/dev/null; then
  for p in vmware.ova noovf.ova "compose.ova:$long" src/appliance.ovf; do
    # (LeakSanitizer cannot run under ptrace)
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
      strace -f -qq -e trace=open,openat,creat,mkdir,rename,link,symlink,unlink \
      -o strace.log "$VMDKIT" compare "$p" "$p" >/dev/null
    ! grep -E 'O_WRONLY|O_RDWR|O_CREAT|creat\(|mkdir|rename|link\(' strace.log >&2 ||
      die "$p: a file was opened for writing or made (strace above)"
    rm -f strace.log
  done
else
  echo "note: strace cannot run here: the file listing alone is checked" >&2
fi
before=$(tree_state .)
for p in vmware.ova virtualbox.ova compose.ova noovf.ova; do
  "$VMDKIT" info "$p" >/dev/null
  "$VMDKIT" map --output=json "$p" >/dev/null
done
[[ $(tree_state .) == "$before" ]] || die "reading the archives changed a file"

# Opening for writing is refused, and changes nothing.
sha0=$(sha vmware.ova)
printf 'x' >x.bin
expect_rc 1 "$VMDKIT" write vmware.ova 0 <x.bin
one_error_line "write into an OVA"
grep -q 'read-only' "$tmpdir/err" || die "write: $(cat "$tmpdir/err")"
[[ $(sha vmware.ova) == "$sha0" ]] || die "a refused write changed vmware.ova"

# A file whose name looks like an archive path is opened as itself.
cp a.raw 'plain.ova:x.raw'
expect_rc 0 "$VMDKIT" compare -f raw 'plain.ova:x.raw' a.raw

# The nbdkit plugin serves file=X.ova (read-only: the write open falls
# back).
plugin=$BUILD_DIR/nbdkit-vmdkit-plugin.so
if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null && [[ -f $plugin ]]; then
  for c in "vmware.ova a.raw" "virtualbox.ova:stream.vmdk a.raw" "noovf.ova b.raw"; do
    p=${c% *} x=${c##* }
    rm -f n.raw
    run_nbdkit -U - "$plugin" file="$p" --run 'nbdcopy "$uri" n.raw'
    same n.raw "$x"
    rm -f n.raw
    run_nbdkit -r -U - "$plugin" file="$p" --run 'nbdcopy "$uri" n.raw'
    same n.raw "$x"
  done
  echo "ova-read: the nbdkit plugin serves the archives' disks"
else
  echo "note: nbdkit, nbdcopy or the plugin missing: plugin not tested" >&2
fi

# The FUSE mount, read-only, when this machine lets us mount.
if [[ -c /dev/fuse ]] && command -v fusermount3 >/dev/null && command -v mountpoint >/dev/null; then
  mkdir mnt
  if "$VMDKIT" mount -r vmware.ova:sparse.vmdk "$tmpdir/mnt" 2>mount.err; then
    f=$(ls mnt)
    cmp "mnt/$f" b.raw || { fusermount3 -u "$tmpdir/mnt"; die "FUSE: mnt/$f differs from b.raw"; }
    fusermount3 -u "$tmpdir/mnt"
    echo "ova-read: the FUSE mount reads vmware.ova:sparse.vmdk"
    # Without -r: mounted read-only with a warning (a disk inside an OVA
    # cannot be written), the file 0444, a write refused, the OVA unchanged.
    sum_before=$(sha256sum < vmware.ova)
    "$VMDKIT" mount vmware.ova:sparse.vmdk "$tmpdir/mnt" 2>mount.err ||
      die "mount without -r of an OVA member failed: $(cat mount.err)"
    grep -q 'cannot be written, mounted read-only' mount.err ||
      { fusermount3 -u "$tmpdir/mnt"; die "mount without -r: no read-only warning: $(cat mount.err)"; }
    f=$(ls mnt)
    mode=$(stat -c %a "mnt/$f")
    if [[ $mode != 444 ]]; then fusermount3 -u "$tmpdir/mnt"; die "mount without -r: mode $mode, not 444"; fi
    if dd if=/dev/zero of="mnt/$f" bs=512 count=1 conv=notrunc 2>/dev/null; then
      fusermount3 -u "$tmpdir/mnt"; die "mount without -r: a write to the OVA member succeeded"
    fi
    cmp "mnt/$f" b.raw || { fusermount3 -u "$tmpdir/mnt"; die "mount without -r: mnt/$f differs from b.raw"; }
    fusermount3 -u "$tmpdir/mnt"
    [[ $(sha256sum < vmware.ova) == "$sum_before" ]] || die "mount without -r changed vmware.ova"
    echo "ova-read: mount without -r falls back to read-only"
  else
    echo "note: FUSE mount refused here: $(cat mount.err)" >&2
  fi
fi

# vmdkit ova info: what each OVF says.  (Reached through 'vmdkit ova',
# tools/cmd_ova.c.)
if ! "$VMDKIT" ova info --help 2>&1 | grep -q 'Usage: vmdkit ova info'; then
  echo "note: 'vmdkit ova info' is not reachable: not tested" >&2
  exit 0
fi
expect_rc 0 "$VMDKIT" ova info --output=json vmware.ova
cp "$tmpdir/out" v.json
python3 - v.json "$(stat -c %s src/stream.vmdk)" <<'EOF'
import json, sys
o = json.load(open(sys.argv[1]))
want = {"name": "photon-5", "ovf-version": 1, "cpus": 2, "memory-mib": 2048,
        "firmware": "efi", "os-type": "vmwarePhoton64Guest", "os-id": 36,
        "networks": [{"name": "VM Network",
                      "description": "The VM Network network"}]}
for k, v in want.items():
    if o.get(k) != v:
        sys.exit("FAIL: vmware.ova: %s is %r, expected %r" % (k, o.get(k), v))
d = o["disks"]
exp = [("vmdisk1", "stream.vmdk", 6 << 20, 1 << 20, "SCSI", "VirtualSCSI", 0),
       ("vmdisk2", "sparse.vmdk", 5 << 20, None, "SATA", "vmware.sata.ahci", 1)]
got = [(x["id"], x["file"], x["capacity"], x.get("populated-size"),
        x["controller"], x["controller-model"], x["unit"]) for x in d]
if got != exp:
    sys.exit("FAIL: vmware.ova disks %r, expected %r" % (got, exp))
if d[0]["file-size"] != int(sys.argv[2]):
    sys.exit("FAIL: file-size %r" % d[0]["file-size"])
EOF
expect_rc 0 "$VMDKIT" ova info --output=json virtualbox.ova
cp "$tmpdir/out" vb.json
python3 - vb.json <<'EOF'
import json, sys
o = json.load(open(sys.argv[1]))
got = (o["name"], o["ovf-version"], o["cpus"], o["memory-mib"], o["firmware"],
       o["os-type"], [n["name"] for n in o["networks"]],
       [(x["file"], x["capacity"], x["controller"], x["unit"]) for x in o["disks"]])
exp = ("debian12", 2, 1, 1024, "efi", "Debian12_64", ["NAT"],
       [("sparse.vmdk", 5 << 20, "SATA", 0), ("stream.vmdk", 6 << 20, "IDE", 1)])
if got != exp:
    sys.exit("FAIL: virtualbox.ova: %r, expected %r" % (got, exp))
EOF
expect_rc 0 "$VMDKIT" ova info --output=json compose.ova
cp "$tmpdir/out" c.json
python3 - c.json <<'EOF'
import json, sys
o = json.load(open(sys.argv[1]))
got = (o["name"], o["cpus"], o["memory-mib"], o["firmware"], o["os-type"],
       [n["name"] for n in o["networks"]],
       [(x["id"], x["capacity"], x.get("controller"), x.get("unit")) for x in o["disks"]])
exp = ("minimal", 4, 1024, "bios", "other5xLinux64Guest", ["mgmt", "data"],
       [("disk-b", 5 << 20, None, None), ("disk-a", 1 << 30, "NVMe", 2)])
if got != exp:
    sys.exit("FAIL: compose.ova: %r, expected %r" % (got, exp))
EOF
expect_rc 0 "$VMDKIT" ova info src/appliance.ovf
cat >want.txt <<EOF
appliance: src/appliance.ovf
name: photon-5
ovf version: 1.x
cpus: 2
memory: 2048 MiB
firmware: efi
os type: vmwarePhoton64Guest (ovf:id 36)
networks: 1
    [0]: VM Network (The VM Network network)
disks: 2
    [0]:
        id: vmdisk1
        file: stream.vmdk
        capacity: 6 MiB (6291456 bytes)
        populated size: 1 MiB (1048576 bytes)
        controller: SCSI (VirtualSCSI), unit 0
    [1]:
        id: vmdisk2
        file: sparse.vmdk
        capacity: 5 MiB (5242880 bytes)
        populated size: -
        controller: SATA (vmware.sata.ahci), unit 1
EOF
diff want.txt "$tmpdir/out" >&2 || die "ova info (human) differs"
if [[ -f made.ova ]]; then
  expect_rc 0 "$VMDKIT" ova info made.ova
fi
echo "ova-read: ova info reads the three producers' OVFs"
