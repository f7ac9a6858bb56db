#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit ova create: the OVA is a ustar archive with the .ovf first, the .mf
# second and the disks after them (the order vSphere requires); the OVF
# validates offline against the DMTF OVF 1.1 schema (tests/ovf-schema/);
# `sha256sum -c` accepts the manifest after `tar x`; every extracted disk is
# a streamOptimized VMDK that qemu-img compares equal to its source (raw,
# VMDK and qcow2 sources) and checks clean, and vmdkinfo reads; the
# defaults and every option are in the OVF; --output=json gives the
# members' offsets, sizes and digests; failures (a missing source, an
# unwritable destination, bad option values) print one line and leave no
# file, and an existing OUT is untouched.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img xmllint tar sha256sum python3 vmdkinfo

M=$((1024 * 1024))
schema=$SRC_DIR/tests/ovf-schema/dsp8023_1.1.1.xsd
[[ -f $schema ]] || die "the schema copy $schema is missing"

# Sources: a raw image with data among holes, the same as monolithicSparse
# VMDK, and a qcow2 of another pattern.
python3 - "$tmpdir/a.raw" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(64 << 20)
    for i, off in enumerate((0, 1 << 20, 9 << 20, (64 << 20) - 4096)):
        f.seek(off)
        f.write(os.urandom(4096) + bytes([i + 1]) * 70000)
EOF
truncate -s -4096 "$tmpdir/a.raw" # 64 MiB - 4 KiB: not a multiple of a grain
"$VMDKIT" convert -O vmdk "$tmpdir/a.raw" "$tmpdir/a.vmdk"
head -c $((3 * M)) /dev/urandom >"$tmpdir/b.raw"
truncate -s $((40 * M)) "$tmpdir/b.raw"
qemu-img convert -f raw -O qcow2 "$tmpdir/b.raw" "$tmpdir/b.qcow2"

# xpath VALUE-EXPR FILE: the string value of an XPath over local names.
xp() {
  xmllint --xpath "string($1)" "$2"
}
el() { # el NAME: a child element of that local name
  echo "*[local-name()='$1']"
}
at() { # at NAME: an attribute of that local name
  echo "@*[local-name()='$1']"
}

# check_ova OVA DIR SOURCE...: the archive's structure, its OVF, manifest
# and disks against the sources, in the order given.
check_ova() {
  local ova=$1 dir=$2
  shift 2
  local base n=0
  base=$(basename "$ova" .ova)
  # The order and the names: NAME.ovf, NAME.mf, NAME-disk1.vmdk...
  tar tf "$ova" >"$tmpdir/list"
  {
    echo "$base.ovf"
    echo "$base.mf"
    for s in "$@"; do n=$((n + 1)); echo "$base-disk$n.vmdk"; done
  } >"$tmpdir/want-list"
  cmp "$tmpdir/list" "$tmpdir/want-list" || die "$ova: members $(tr '\n' ' ' <"$tmpdir/list")"
  tar tvf "$ova" >/dev/null
  # Every header is POSIX ustar ("ustar\0" "00") with a valid checksum, and
  # the archive ends with two zero blocks in whole 10240-byte records.
  python3 - "$ova" <<'EOF' || die "$ova: not a clean ustar archive"
import sys
data = open(sys.argv[1], "rb").read()
assert len(data) % 10240 == 0, "length %d is not whole records" % len(data)
off = 0
while True:
    h = data[off:off + 512]
    if h == bytes(512):
        assert data[off + 512:off + 1024] == bytes(512), "one zero block"
        break
    assert h[257:265] == b"ustar\x0000", "header at %d: magic %r" % (off, h[257:265])
    want = sum(h[:148]) + 8 * 32 + sum(h[156:])
    assert int(h[148:155].rstrip(b"\0 "), 8) == want, "checksum at %d" % off
    size = int(h[124:136].rstrip(b"\0 "), 8)
    off += 512 + (size + 511) // 512 * 512
assert not any(data[off:]), "bytes after the end-of-archive blocks"
EOF
  rm -rf "$dir"
  mkdir -p "$dir"
  tar xf "$ova" -C "$dir"
  # The OVF validates against the DMTF schema, offline.
  xmllint --noout --nonet --schema "$schema" "$dir/$base.ovf" 2>"$tmpdir/xmllint.err" ||
    { cat "$tmpdir/xmllint.err" >&2; die "$ova: the OVF does not validate"; }
  # The manifest: SHA256(FILE)= HEX lines, as sha256sum -c takes them.
  sed -E 's/^SHA256\(([^)]*)\)= ([0-9a-f]{64})$/\2  \1/' "$dir/$base.mf" >"$dir/sums"
  [[ $(wc -l <"$dir/sums") -eq $((n + 1)) ]] || die "$ova: manifest lines"
  (cd "$dir" && sha256sum --quiet --strict -c sums) || die "$ova: sha256sum -c failed"
  # The disks: streamOptimized, equal to their sources, clean, readable by
  # libvmdk; the OVF's numbers are theirs.
  n=0
  for s in "$@"; do
    n=$((n + 1))
    local d=$dir/$base-disk$n.vmdk
    [[ $(desc_value "$d" createType) == streamOptimized ]] || die "$d: not streamOptimized"
    expect_rc 0 qemu-img compare "$s" "$d"
    expect_rc 0 qemu-img check "$d"
    expect_rc 0 "$VMDKIT" check "$d"
    vmdkinfo "$d" >"$tmpdir/vmdkinfo" 2>&1 || { cat "$tmpdir/vmdkinfo" >&2; die "$d: vmdkinfo failed"; }
    grep -q 'Stream optimized' "$tmpdir/vmdkinfo" || die "$d: vmdkinfo: $(cat "$tmpdir/vmdkinfo")"
    local size cap
    size=$(stat -c %s "$d")
    [[ $(xp "//$(el File)[$(at href)='$base-disk$n.vmdk']/$(at size)" "$dir/$base.ovf") == "$size" ]] ||
      die "$d: ovf:size is not $size"
    cap=$(qemu-img info --output=json "$s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
    cap=$(((cap + 511) / 512 * 512))
    [[ $(xp "//$(el Disk)[$(at diskId)='vmdisk$n']/$(at capacity)" "$dir/$base.ovf") == "$cap" ]] ||
      die "$d: ovf:capacity is not $cap"
    [[ -n $(xp "//$(el Disk)[$(at diskId)='vmdisk$n']/$(at populatedSize)" "$dir/$base.ovf") ]] ||
      die "$d: no ovf:populatedSize"
  done
}

# --- the defaults -------------------------------------------------------------
expect_rc 0 "$VMDKIT" ova create "$tmpdir/app.ova" --disk "$tmpdir/a.raw" \
  --disk "$tmpdir/a.vmdk" --disk "$tmpdir/b.qcow2"
check_ova "$tmpdir/app.ova" "$tmpdir/x" "$tmpdir/a.raw" "$tmpdir/a.vmdk" "$tmpdir/b.qcow2"
ovf=$tmpdir/x/app.ovf
check_xp() { # check_xp EXPR WANT
  local got
  got=$(xp "$1" "$ovf")
  [[ $got == "$2" ]] || die "$ovf: $1 is '$got', expected '$2'"
}
check_xp "//$(el VirtualSystem)/$(at id)" app
check_xp "//$(el VirtualSystemType)" vmx-14
check_xp "//$(el Item)[$(el ResourceType)=3]/$(el VirtualQuantity)" 2
check_xp "//$(el Item)[$(el ResourceType)=4]/$(el VirtualQuantity)" 2048
check_xp "//$(el Item)[$(el ResourceType)=4]/$(el AllocationUnits)" "byte * 2^20"
check_xp "//$(el Item)[$(el ResourceType)=6]/$(el ResourceSubType)" VirtualSCSI
check_xp "count(//$(el Item)[$(el ResourceType)=17])" 3
check_xp "//$(el Item)[$(el ResourceType)=10]/$(el ResourceSubType)" VmxNet3
check_xp "//$(el Item)[$(el ResourceType)=10]/$(el Connection)" "VM Network"
check_xp "//$(el Network)/$(at name)" "VM Network"
check_xp "//$(el OperatingSystemSection)/$(at osType)" otherLinux64Guest
check_xp "//$(el Config)[$(at key)='firmware']/$(at value)" efi
check_xp "count(//$(el Config)[$(at key)='bootOptions.efiSecureBootEnabled'])" 0
check_xp "//$(el Disk)[1]/$(at format)" \
  "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
check_xp "count(//$(el ProductSection))" 0
# The disks are on the controller, at units 0, 1, 2.
check_xp "//$(el Item)[$(el HostResource)='ovf:/disk/vmdisk3']/$(el AddressOnParent)" 2
check_xp "//$(el Item)[$(el HostResource)='ovf:/disk/vmdisk3']/$(el Parent)" \
  "$(xp "//$(el Item)[$(el ResourceType)=6]/$(el InstanceID)" "$ovf")"
# No temporary file is left next to it.
[[ $(ls -A "$tmpdir" | grep -c '\.tmp$' || true) -eq 0 ]] || die "a temporary file was left"

# --- every option, and --output=json -------------------------------------------
expect_rc 0 "$VMDKIT" ova create --output=json "$tmpdir/opt.ova" \
  --disk "$tmpdir/b.qcow2" --name 'My App <1>' --cpus 4 --memory 4G \
  --os-type ubuntu64Guest --firmware efi --secure-boot --hw-version 19 \
  --controller nvme --network 'Lab & Test' --nic e1000e \
  --property net.ip=10.0.0.2 --property 'motd=hello "world"' \
  --product Appliance --vendor 'Example Corp' --version 1.2.3 \
  --annotation 'Built by vmdkit'
cp "$tmpdir/out" "$tmpdir/opt.json"
# Members are named after the VM name ([A-Za-z0-9._-], others '_').
mv "$tmpdir/opt.ova" "$tmpdir/My_App__1_.ova"
check_ova "$tmpdir/My_App__1_.ova" "$tmpdir/y" "$tmpdir/b.qcow2"
ovf=$tmpdir/y/My_App__1_.ovf
check_xp "//$(el VirtualSystem)/$(el Name)" 'My App <1>'
check_xp "//$(el VirtualSystemType)" vmx-19
check_xp "//$(el Item)[$(el ResourceType)=3]/$(el VirtualQuantity)" 4
check_xp "//$(el Item)[$(el ResourceType)=4]/$(el VirtualQuantity)" 4096
check_xp "//$(el OperatingSystemSection)/$(at osType)" ubuntu64Guest
check_xp "//$(el OperatingSystemSection)/$(at id)" 94
check_xp "//$(el Config)[$(at key)='firmware']/$(at value)" efi
check_xp "//$(el Config)[$(at key)='bootOptions.efiSecureBootEnabled']/$(at value)" true
check_xp "//$(el Item)[$(el ResourceType)=20]/$(el ResourceSubType)" vmware.nvme.controller
check_xp "//$(el Item)[$(el ResourceType)=10]/$(el ResourceSubType)" E1000e
check_xp "//$(el Item)[$(el ResourceType)=10]/$(el Connection)" 'Lab & Test'
check_xp "//$(el Network)/$(at name)" 'Lab & Test'
check_xp "//$(el Property)[$(at key)='net.ip']/$(at value)" 10.0.0.2
check_xp "//$(el Property)[$(at key)='motd']/$(at value)" 'hello "world"'
check_xp "//$(el Property)[$(at key)='motd']/$(at userConfigurable)" true
check_xp "//$(el Product)" Appliance
check_xp "//$(el Vendor)" 'Example Corp'
check_xp "//$(el Version)" 1.2.3
check_xp "//$(el Annotation)" 'Built by vmdkit'
# The JSON summary: the members in archive order with what tar and
# sha256sum see.
[[ $(json_get "$tmpdir/opt.json" vm-name) == 'My App <1>' ]] || die "json vm-name"
[[ $(json_get "$tmpdir/opt.json" size) == $(stat -c %s "$tmpdir/My_App__1_.ova") ]] || die "json size"
for i in 0 1 2; do
  name=$(json_get "$tmpdir/opt.json" members $i name)
  [[ $(json_get "$tmpdir/opt.json" members $i sha256) == $(sha "$tmpdir/y/$name") ]] ||
    die "json: $name's sha256"
  [[ $(json_get "$tmpdir/opt.json" members $i size) == $(stat -c %s "$tmpdir/y/$name") ]] ||
    die "json: $name's size"
  off=$(json_get "$tmpdir/opt.json" members $i offset)
  size=$(json_get "$tmpdir/opt.json" members $i size)
  python3 -c 'import sys; a = open(sys.argv[1], "rb"); a.seek(int(sys.argv[2]));
sys.exit(a.read(int(sys.argv[3])) != open(sys.argv[4], "rb").read())' \
    "$tmpdir/My_App__1_.ova" "$off" "$size" "$tmpdir/y/$name" ||
    die "json: $name is not at offset $off"
done
[[ $(json_get "$tmpdir/opt.json" members 2 source) == "$tmpdir/b.qcow2" ]] || die "json source"

# Other controllers and adapters: their sub-types.
for c in lsilogic:6:lsilogic sata:20:vmware.sata.ahci ide:5:; do
  IFS=: read -r kind type sub <<<"$c"
  expect_rc 0 "$VMDKIT" ova create "$tmpdir/c.ova" --disk "$tmpdir/b.raw" \
    --controller "$kind" --nic e1000 --firmware bios
  rm -rf "$tmpdir/z" && mkdir "$tmpdir/z" && tar xf "$tmpdir/c.ova" -C "$tmpdir/z"
  ovf=$tmpdir/z/c.ovf
  xmllint --noout --nonet --schema "$schema" "$ovf" 2>/dev/null || die "$kind: the OVF does not validate"
  check_xp "count(//$(el Item)[$(el ResourceType)=$type])" 1
  check_xp "//$(el Item)[$(el ResourceType)=$type]/$(el ResourceSubType)" "$sub"
  check_xp "//$(el Item)[$(el ResourceType)=10]/$(el ResourceSubType)" E1000
  check_xp "//$(el Config)[$(at key)='firmware']/$(at value)" bios
done

# --- failures: one line, no file left, an existing OUT untouched ---------------
mkdir "$tmpdir/dest"
no_file_left() { # no_file_left WHAT
  [[ -z $(ls -A "$tmpdir/dest") ]] || die "$1: left $(ls -A "$tmpdir/dest")"
}
fails() { # fails WHAT PATTERN ARGS...: exit 1, one line matching PATTERN
  local what=$1 pat=$2
  shift 2
  expect_rc 1 "$VMDKIT" ova create "$@"
  one_error_line "$what"
  grep -q -- "$pat" "$tmpdir/err" || die "$what: $(cat "$tmpdir/err")"
  no_file_left "$what"
}
out=$tmpdir/dest/out.ova
fails "missing source" "$tmpdir/missing.raw: No such file" "$out" --disk "$tmpdir/a.raw" --disk "$tmpdir/missing.raw"
fails "no disk" "no --disk given" "$out"
fails "bad controller" 'controller "scsi": pvscsi, lsilogic, sata, nvme or ide' "$out" --disk "$tmpdir/a.raw" --controller scsi
fails "bad nic" 'network adapter "rtl8139"' "$out" --disk "$tmpdir/a.raw" --nic rtl8139
fails "bad firmware" 'firmware "uefi": efi or bios' "$out" --disk "$tmpdir/a.raw" --firmware uefi
fails "secure boot on bios" "secure boot needs EFI firmware" "$out" --disk "$tmpdir/a.raw" --firmware bios --secure-boot
fails "zero CPUs" "CPU count" "$out" --disk "$tmpdir/a.raw" --cpus 0
fails "memory not MiB" "memory" "$out" --disk "$tmpdir/a.raw" --memory 4097K
fails "memory not a multiple of 4" "a multiple of 4 MiB" "$out" --disk "$tmpdir/a.raw" --memory 1023
fails "bad property" 'property "=x": KEY=VALUE' "$out" --disk "$tmpdir/a.raw" --property =x
fails "bad os type" 'guest OS id "my os"' "$out" --disk "$tmpdir/a.raw" --os-type 'my os'
fails "nvme on old hardware" "needs hardware version 13" "$out" --disk "$tmpdir/a.raw" --controller nvme --hw-version 11
fails "too many IDE disks" "one ide controller takes at most 2" "$out" --controller ide \
  --disk "$tmpdir/a.raw" --disk "$tmpdir/a.raw" --disk "$tmpdir/a.raw"
touch "$tmpdir/plainfile"
fails "unwritable destination" "$tmpdir/plainfile/out.ova: cannot create: Not a directory" \
  "$tmpdir/plainfile/out.ova" --disk "$tmpdir/a.raw"
# A source that fails while it is being read (a stream cut short is
# refused at open; a VMDK whose extent vanished): nothing left.
cp "$tmpdir/app.ova" "$tmpdir/dest/keep.ova"
before=$(tree_state "$tmpdir/dest")
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "gone-flat.vmdk" 0\n' >"$tmpdir/gone.vmdk"
expect_rc 1 "$VMDKIT" ova create "$tmpdir/dest/keep.ova" --disk "$tmpdir/gone.vmdk"
one_error_line "vanished extent"
[[ $(tree_state "$tmpdir/dest") == "$before" ]] || die "a failed create changed the folder"

# A source that fails in the middle of the copy (a grain-table entry
# points past the end of its file): the archive was begun, and its
# temporary file is removed.
"$VMDKIT" convert -O vmdk "$tmpdir/a.raw" "$tmpdir/bad.vmdk"
python3 - "$tmpdir/bad.vmdk" <<'EOF'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(512)
grain, = struct.unpack_from("<Q", h, 20)
gd, = struct.unpack_from("<Q", h, 56)
f.seek(gd * 512)
gt, = struct.unpack("<I", f.read(4))      # the first table
f.seek(gt * 512 + 4 * (9 * 2048 // grain)) # the entry of the grain at 9 MiB
f.write(struct.pack("<I", 0x7ffffff0))
EOF
expect_rc 1 "$VMDKIT" ova create "$tmpdir/dest/keep.ova" --disk "$tmpdir/a.raw" --disk "$tmpdir/bad.vmdk"
one_error_line "corrupt source"
grep -q "bad.vmdk" "$tmpdir/err" || die "corrupt source: $(cat "$tmpdir/err")"
[[ $(tree_state "$tmpdir/dest") == "$before" ]] || die "a failed create left $(ls -A "$tmpdir/dest")"

# Ctrl-C (SIGINT) during a create: "interrupted", exit 1, nothing left; or,
# when the create was done before the signal came, a whole OVA.
python3 -c 'import base64, os, sys; sys.stdout.buffer.write(base64.b64encode(os.urandom(60 << 20)))' \
  >"$tmpdir/text.raw"
mkdir "$tmpdir/int"
"$VMDKIT" ova create "$tmpdir/int/int.ova" --disk "$tmpdir/text.raw" >"$tmpdir/out" 2>"$tmpdir/err" &
pid=$!
sleep 0.3
kill -INT $pid 2>/dev/null || true
set +e
wait $pid
rc=$?
set -e
if [[ $rc -eq 0 ]]; then
  echo "ova-create: the create ended before SIGINT; checking what it wrote"
  check_ova "$tmpdir/int/int.ova" "$tmpdir/int-x" "$tmpdir/text.raw"
else
  [[ $rc -eq 1 ]] || die "SIGINT: exit $rc"
  one_error_line "SIGINT"
  grep -q "int.ova: interrupted" "$tmpdir/err" || die "SIGINT: $(cat "$tmpdir/err")"
  [[ -z $(ls -A "$tmpdir/int") ]] || die "SIGINT: left $(ls -A "$tmpdir/int")"
fi

echo "ova-create: OK"
