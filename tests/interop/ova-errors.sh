#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Damaged OVAs and OVFs: an OVF naming a disk the archive lacks, a tar cut
# inside a member and inside a header, a member that is not a VMDK, a bad
# header checksum, a member size past the end of the file, a pax size past
# it, a huge GNU long-name header, a non-XML OVF, an OVF outside the OVF
# namespace, a disk file named with "..", a compressed disk.  Each is one
# line "vmdkit: FILE: ..." with the numbers, a non-zero exit, no crash,
# and the archive unchanged -- from info, convert, map, check, compare and
# ova info alike.
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need tar python3
cd "$tmpdir"
ovfs=$SRC_DIR/tests/interop/ova

head -c 1M /dev/urandom >a.raw
"$VMDKIT" convert -f raw -O vmdk -o subformat=streamOptimized a.raw stream.vmdk
"$VMDKIT" convert -f raw -O vmdk a.raw sparse.vmdk
# An OVF in VMware's style naming stream.vmdk and sparse.vmdk.
python3 - "$ovfs/vmware.ovf" vm.ovf <<'EOF'
import os, sys
t = open(sys.argv[1]).read()
for k, v in {"DISK1": "stream.vmdk", "DISK2": "sparse.vmdk",
             "SIZE1": os.path.getsize("stream.vmdk"),
             "SIZE2": os.path.getsize("sparse.vmdk"),
             "CAPMIB1": 1, "CAP2": 1 << 20, "POP1": 1 << 20}.items():
    t = t.replace("@%s@" % k, str(v))
open(sys.argv[2], "w").write(t)
EOF
tar --format=ustar -cf good.ova vm.ovf stream.vmdk sparse.vmdk
"$VMDKIT" info good.ova >/dev/null || die "the good archive does not open"

# 'vmdkit ova info' is reached through 'vmdkit ova' (tools/cmd_ova.c).
have_ova_info=1
"$VMDKIT" ova info --help 2>&1 | grep -q 'Usage: vmdkit ova info' || {
  have_ova_info=0
  echo "note: 'vmdkit ova info' is not reachable: not tested" >&2
}

# refused FILE PATTERN [PATH]: every reader refuses PATH (default FILE)
# with one line that matches PATTERN, and FILE is unchanged.
refused() {
  local file=$1 pattern=$2 path=${3:-$1} s cmd
  s=$(sha "$file")
  for cmd in "info" "info --output=json" "map --output=json" "check" \
             "convert -O raw @ out.raw" "compare @ a.raw" "read @ 0 512" \
             "ova info"; do
    [[ $cmd == "ova info" && ($path == *:* || $have_ova_info == 0) ]] && continue
    local args=()
    if [[ $cmd == *@* ]]; then
      read -ra args <<<"${cmd/@/$path}"
    else
      read -ra args <<<"$cmd $path"
    fi
    run "$VMDKIT" "${args[@]}"
    [[ $rc -ne 0 ]] || die "$cmd $path: exited 0"
    [[ $rc -lt 128 ]] || die "$cmd $path: killed by signal $((rc - 128))"
    one_error_line "$cmd $path"
    grep -qE -- "$pattern" "$tmpdir/err" ||
      die "$cmd $path: '$(cat "$tmpdir/err")' does not match '$pattern'"
    [[ ! -e out.raw ]] || die "$cmd $path: left out.raw behind"
  done
  [[ $(sha "$file") == "$s" ]] || die "$file was changed"
  echo "refused: $path: $(cat "$tmpdir/err")"
}

# hdr_of OVA N: the header offset of member N (0: the first).
hdr_of() {
  python3 - "$1" "$2" <<'EOF'
import sys
data, want, off, n = open(sys.argv[1], "rb").read(), int(sys.argv[2]), 0, 0
while True:
    h = data[off:off + 512]
    size = int(h[124:136].strip(b"\0 ") or b"0", 8)
    if n == want:
        print(off)
        break
    off += 512 + (size + 511) // 512 * 512
    n += 1
EOF
}

# set_field OVA HDR-OFFSET FIELD-OFFSET BYTES [fix]: write BYTES into a
# header, then recompute its checksum unless "nofix".
set_field() {
  python3 - "$@" <<'EOF'
import sys
path, hdr, field, val = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
fix = len(sys.argv) < 6 or sys.argv[5] != "nofix"
b = bytearray(open(path, "rb").read())
b[hdr + field:hdr + field + len(val)] = val
if fix:
    h = b[hdr:hdr + 512]
    h[148:156] = b" " * 8
    b[hdr + 148:hdr + 156] = b"%06o\0 " % sum(h)
open(path, "wb").write(b)
EOF
}

# 1. The OVF names a disk the archive does not hold.
tar --format=ustar -cf missing.ova vm.ovf stream.vmdk
refused missing.ova 'missing.ova: the OVF names disk vmdisk2.s file sparse.vmdk, which is not in the archive \(2 members\)'

# 2. Truncated inside a member's data, and inside a header.
s1=$(hdr_of good.ova 1)
head -c $((s1 + 512 + 3000)) good.ova >cut.ova
refused cut.ova "cut.ova: tar member stream.vmdk \(header at offset $s1\): its [0-9]+ bytes of data at offset $((s1 + 512)) end past the end of the archive \($((s1 + 3512)) bytes\)"
head -c $((s1 + 100)) good.ova >cuthdr.ova
refused cuthdr.ova "cuthdr.ova: tar archive is truncated: the header at offset $s1 is cut after 100 of its 512 bytes"

# 3. A member that is not a VMDK.
printf 'just text\n' >notes.txt
tar --format=ustar -cf notvmdk.ova vm.ovf stream.vmdk sparse.vmdk notes.txt
refused notvmdk.ova 'notvmdk.ova:notes.txt: not a VMDK' notvmdk.ova:notes.txt
refused notvmdk.ova 'notvmdk.ova: no member nothere.vmdk in the archive \(4 members\)' notvmdk.ova:nothere.vmdk

# 4. A bad header checksum (a name byte changed, the checksum kept).
cp good.ova badsum.ova
set_field badsum.ova "$s1" 0 X nofix
refused badsum.ova "badsum.ova: tar header at offset $s1: bad checksum: the header says [0-9]+ \(octal [0-7]+\), its bytes add up to [0-9]+"

# 5. A member size past the end of the file (checksum recomputed).
cp good.ova past.ova
set_field past.ova "$s1" 124 '77777777777'
refused past.ova "past.ova: tar member stream.vmdk \(header at offset $s1\): its 8589934591 bytes of data at offset $((s1 + 512)) end past the end of the archive"

# 6. A pax size past the end (a pax header says the member is 2^62 bytes).
python3 - <<'EOF'
import tarfile
with tarfile.open("paxsize.ova", "w", format=tarfile.PAX_FORMAT) as t:
    t.add("vm.ovf")
    i = t.gettarinfo("stream.vmdk")
    i.pax_headers = {"size": str(1 << 62)}
    t.addfile(i, open("stream.vmdk", "rb"))
EOF
refused paxsize.ova "paxsize.ova: tar member stream.vmdk \(header at offset [0-9]+\): its 4611686018427387904 bytes of data at offset [0-9]+ end past the end of the archive"

# 7. A GNU long-name header of 1 GiB (bounded: refused, not allocated).
cp good.ova longname.ova
python3 - longname.ova <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
h = bytearray(512)
h[0:13] = b"././@LongLink"
h[100:108] = b"0000644\0"
h[124:136] = b"10000000000\0"   # 1 GiB, octal
h[156:157] = b"L"
h[257:265] = b"ustar  \0"
h[148:156] = b" " * 8
h[148:156] = b"%06o\0 " % sum(h)
# the archive: the long-name header then the rest, padded so that the
# claimed data fits inside the file
open(p, "wb").write(bytes(h) + bytes(b) + bytes((1 << 30) + 1024 - len(b)))
EOF
refused longname.ova "longname.ova: tar header at offset 0: 1073741824 bytes of GNU long name data \(at most 65536\)"
rm -f longname.ova

# 8. OVFs that are not OVF: not XML, another namespace.
printf '<Envelope><Unclosed>' >vm.ovf.bad
cp vm.ovf.bad bad.ovf
tar --format=ustar -cf notxml.ova bad.ovf stream.vmdk
refused notxml.ova 'notxml.ova:bad.ovf: line [0-9]+: not a valid XML document: '
printf '<?xml version="1.0"?>\n<Envelope xmlns="urn:example"/>\n' >bad.ovf
tar --format=ustar -cf notovf.ova bad.ovf stream.vmdk
refused notovf.ova 'notovf.ova:bad.ovf: not an OVF descriptor: the root element is urn:example:Envelope'

# 9. An OVF naming its disk outside its folder, or a compressed disk.
sed 's|ovf:href="stream.vmdk"|ovf:href="../stream.vmdk"|' vm.ovf >dotdot.ovf
refused dotdot.ovf 'dotdot.ovf: disk file "../stream.vmdk" is not a file in the OVF.s folder \(a URL'
sed 's|ovf:href="stream.vmdk"|ovf:href="stream.vmdk" ovf:compression="gzip"|' vm.ovf >gz.ovf
cp gz.ovf vm-gz.ovf
tar --format=ustar -cf gz.ova vm-gz.ovf stream.vmdk sparse.vmdk
refused gz.ova 'gz.ova: the OVF.s disk vmdisk1 \(stream.vmdk\) is stored compressed \(ovf:compression="gzip"\)'

# 10. Not a tar at all, and an empty archive.
cp a.raw notar.ova
refused notar.ova 'notar.ova: not a tar archive: no "ustar" magic at offset 257'
head -c 1024 /dev/zero >empty.ova
refused empty.ova 'empty.ova: the archive has no OVF and no .vmdk member \(0 members\)|empty.ova: the archive has no OVF descriptor'
