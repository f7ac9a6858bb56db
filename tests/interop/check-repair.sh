#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit check -r leaks|all on images broken on purpose: check lists every
# problem (not just the first); -r all repairs them, says what it did and
# double-checks like qemu-img; afterwards vmdkit check and qemu-img check
# are clean and every grain that was readable reads the same bytes (a grain
# whose entry pointed past the end of the file reads as zeros: it was lost
# already; one whose redundant entry was good gets it back).  -r leaks fixes
# only leaks (cut off at the end, zeroed/punched in the middle) and the
# traces of an interrupted update; a corruption stays (exit 2).  A clean
# image is left byte for byte as it was.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

K=1024
M=$((1024 * K))
G=$((64 * K)) # the grain of qemu's images

# kdmv IMG gd|rgd INDEX [VALUE] | kdmv IMG gt|rgt TABLE INDEX [VALUE]:
# print (or set) an entry of the (redundant) grain directory or of a
# (redundant) grain table of the hosted sparse file IMG.
kdmv() {
  python3 - "$@" <<'EOF'
import struct, sys
img, what = sys.argv[1], sys.argv[2]
args = [int(a, 0) for a in sys.argv[3:]]
with open(img, "r+b") as f:
    h = f.read(512)
    rgd, gd = struct.unpack_from("<QQ", h, 48)
    def u32(pos):
        f.seek(pos)
        return struct.unpack("<I", f.read(4))[0]
    if what in ("gd", "rgd"):
        pos = (gd if what == "gd" else rgd) * 512 + 4 * args[0]
        rest = args[1:]
    else:
        d = gd if what == "gt" else rgd
        pos = u32(d * 512 + 4 * args[0]) * 512 + 4 * args[1]
        rest = args[2:]
    if rest:
        f.seek(pos)
        f.write(struct.pack("<I", rest[0]))
        if u32(pos) != rest[0]:
            sys.exit("kdmv: the patch did not stick (test bug)")
    else:
        print(u32(pos))
EOF
}

# raw_of SIZE OUT GRAIN:BYTE...: a raw image of SIZE bytes, zeros but for
# 64 KiB grains (numbers) filled with BYTE.
raw_of() {
  python3 - "$@" <<'EOF'
import sys
size, out = int(sys.argv[1]), sys.argv[2]
with open(out, "wb") as f:
    f.truncate(size)
    for spec in sys.argv[3:]:
        g, b = spec.split(":")
        f.seek(int(g) * 65536)
        f.write(bytes([int(b, 0)]) * 65536)
EOF
}

expect_clean_everywhere() { # LABEL IMG
  expect_rc 0 "$VMDKIT" check "$2"
  grep -q "No errors were found" "$tmpdir/out" || die "$1: vmdkit check: no 'No errors' line"
  run qemu-img check -f vmdk "$2"
  [[ $rc -eq 0 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "$1: qemu-img check exited $rc after the repair"; }
}

# ---- a qemu-made image, then every problem at once -----------------------
# Grains (64 KiB): 0..3 in table 0 (0x41..0x44), 528 and 544 in table 1
# (0x45, 0x46); then 64 KiB of junk, grain 128 (0x47) allocated after it
# (so the junk is a leak in the middle), and junk at the end.
qemu-img create -q -f vmdk "$tmpdir/all.vmdk" 64M
qemu-io -f vmdk -c "write -P 0x41 0 64k" -c "write -P 0x42 64k 64k" \
  -c "write -P 0x43 128k 64k" -c "write -P 0x44 192k 64k" \
  -c "write -P 0x45 33M 64k" -c "write -P 0x46 34M 64k" "$tmpdir/all.vmdk" >/dev/null
head -c $G /dev/urandom >>"$tmpdir/all.vmdk"
qemu-io -f vmdk -c "write -P 0x47 8M 64k" "$tmpdir/all.vmdk" >/dev/null
head -c $G /dev/urandom >>"$tmpdir/all.vmdk"
cp "$tmpdir/all.vmdk" "$tmpdir/pristine.vmdk"
past_eof=$((0x100000))
g0=$(kdmv "$tmpdir/all.vmdk" gt 0 0)
# 1. GD and RGD disagree: the redundant entry of table 1 is gone
kdmv "$tmpdir/all.vmdk" rgd 1 0
# 2. GT and RGT differ: the redundant entry of grain 3 is gone
kdmv "$tmpdir/all.vmdk" rgt 0 3 0
# 3. an entry past the end of the file, in both tables: grain 1 is lost
kdmv "$tmpdir/all.vmdk" gt 0 1 $past_eof
kdmv "$tmpdir/all.vmdk" rgt 0 1 $past_eof
# 4. an entry past the end of the file in the grain table only: grain 2
#    comes back from the redundant table
kdmv "$tmpdir/all.vmdk" gt 0 2 $past_eof
# 5. two entries for one grain: grain 5 (in both tables) points at grain 0
kdmv "$tmpdir/all.vmdk" gt 0 5 "$g0"
kdmv "$tmpdir/all.vmdk" rgt 0 5 "$g0"

# What every readable grain reads before the repair.
readable="0 3 5 128 528 544"
for g in $readable; do
  "$VMDKIT" read "$tmpdir/all.vmdk" $((g * G)) $G >"$tmpdir/before.$g" ||
    die "grain $g of the broken image does not read"
done

# check lists every problem: 5 corruptions (one line each) and the leaks
before=$(sha "$tmpdir/all.vmdk")
expect_rc 2 "$VMDKIT" check "$tmpdir/all.vmdk"
cp "$tmpdir/err" "$tmpdir/problems"
n_err=$(grep -c '^ERROR ' "$tmpdir/problems" || true)
n_leak=$(grep -c '^Leaked cluster: ' "$tmpdir/problems" || true)
for want in 'grain directory entry 1 is' 'grain table 0 and its redundant copy differ in 2 ' \
  'entry 1 of table 0 points past the end' 'entry 2 of table 0 points past the end' \
  'entry 5 of table 0 .*overlaps'; do
  grep -Eq "$want" "$tmpdir/problems" || { cat "$tmpdir/problems" >&2; die "check does not report /$want/"; }
done
[[ $n_err -eq 5 ]] || { cat "$tmpdir/problems" >&2; die "check printed $n_err ERROR lines, expected 5"; }
[[ $n_leak -ge 2 ]] || { cat "$tmpdir/problems" >&2; die "check printed $n_leak leak lines, expected at least 2"; }
grep -q "^5 errors were found on the image" "$tmpdir/out" || die "summary does not count 5 errors"
run "$VMDKIT" check --output=json "$tmpdir/all.vmdk"
[[ $(json_get "$tmpdir/out" corruptions) -eq 5 ]] || die "JSON corruptions is not 5"
[[ $(sha "$tmpdir/all.vmdk") == "$before" ]] || die "check without -r changed the image"
echo "check: $n_err errors, $n_leak leaks listed"

# -r all: every repair printed, the qemu-img style summary, exit 0
expect_rc 0 "$VMDKIT" check -r all "$tmpdir/all.vmdk"
grep -q "^Repaired: " "$tmpdir/err" || die "-r all printed no 'Repaired:' line"
n_rep=$(grep -c '^Repaired: ' "$tmpdir/err")
grep -q "The following inconsistencies were found and repaired:" "$tmpdir/out" &&
  grep -q "Double checking the fixed image now..." "$tmpdir/out" &&
  grep -q "No errors were found on the image." "$tmpdir/out" ||
  { cat "$tmpdir/out" >&2; die "-r all: not qemu-img's summary"; }
grep -Eq '^    [1-9][0-9]* corruptions$' "$tmpdir/out" &&
  grep -Eq '^    [1-9][0-9]* leaked clusters$' "$tmpdir/out" ||
  { cat "$tmpdir/out" >&2; die "-r all: no counts of what was repaired"; }
echo "-r all: $n_rep repairs"
expect_clean_everywhere "-r all" "$tmpdir/all.vmdk"

# the data: readable grains read the same, grain 2 is back, grain 1 lost
for g in $readable; do
  "$VMDKIT" read "$tmpdir/all.vmdk" $((g * G)) $G | cmp - "$tmpdir/before.$g" ||
    die "grain $g reads differently after the repair"
done
raw_of $((64 * M)) "$tmpdir/want.raw" 0:0x41 2:0x43 3:0x44 5:0x41 128:0x47 528:0x45 544:0x46
qemu-img convert -f vmdk -O raw "$tmpdir/all.vmdk" "$tmpdir/qemu.raw"
same "$tmpdir/want.raw" "$tmpdir/qemu.raw"
"$VMDKIT" read "$tmpdir/all.vmdk" 0 64M >"$tmpdir/vmdkit.raw"
same "$tmpdir/want.raw" "$tmpdir/vmdkit.raw"
# grain 5 has its own copy now: writing it leaves grain 0 alone
qemu-io -f vmdk -c "write -P 0x55 $((5 * G)) 64k" "$tmpdir/all.vmdk" >/dev/null
"$VMDKIT" read "$tmpdir/all.vmdk" 0 $G | cmp - "$tmpdir/before.0" ||
  die "grain 5 still shares grain 0's sectors after the repair"

# ---- a grain directory entry lost in a cleanly closed image: the
#      redundant table is adopted and the data comes back --------------------
cp "$tmpdir/pristine.vmdk" "$tmpdir/gd0.vmdk"
kdmv "$tmpdir/gd0.vmdk" gd 1 0
expect_rc 2 "$VMDKIT" check "$tmpdir/gd0.vmdk"
expect_rc 0 "$VMDKIT" check -r all "$tmpdir/gd0.vmdk"
"$VMDKIT" read "$tmpdir/gd0.vmdk" 0 64M | cmp - <("$VMDKIT" read "$tmpdir/pristine.vmdk" 0 64M) ||
  die "gd0: table 1 did not come back from the redundant table"
expect_clean_everywhere "gd0" "$tmpdir/gd0.vmdk"

# ---- -r leaks: leaks go, a corruption stays ------------------------------
cp "$tmpdir/pristine.vmdk" "$tmpdir/leaks.vmdk"
kdmv "$tmpdir/leaks.vmdk" rgt 0 3 0 # a corruption (the image is clean)
size_before=$(stat -c %s "$tmpdir/leaks.vmdk")
expect_rc 2 "$VMDKIT" check "$tmpdir/leaks.vmdk"
grep -q '^Leaked cluster: ' "$tmpdir/err" || die "leaks: no leak listed"
mid=$(grep '^Leaked cluster: ' "$tmpdir/err" | grep -v 'end of the file' | head -n1 |
  sed -E 's/.* ([0-9]+) sectors at sector ([0-9]+).*/\2 \1/')
[[ -n $mid ]] || { cat "$tmpdir/err" >&2; die "leaks: no leak in the middle listed"; }
expect_rc 2 "$VMDKIT" check -r leaks "$tmpdir/leaks.vmdk"
grep -q "^Repaired: .*cut them off" "$tmpdir/err" || { cat "$tmpdir/err" >&2; die "-r leaks: the leak at the end was not cut off"; }
grep -q "^Repaired: .*zeroed them" "$tmpdir/err" || { cat "$tmpdir/err" >&2; die "-r leaks: the leak in the middle was not zeroed"; }
[[ $(grep -c "^ERROR .*grain table 0 and its redundant copy differ" "$tmpdir/err") -eq 2 ]] ||
  { cat "$tmpdir/err" >&2; die "-r leaks: the corruption is not listed again after the repair"; }
expect_rc 2 "$VMDKIT" check "$tmpdir/leaks.vmdk"
grep -q '^Leaked cluster: ' "$tmpdir/err" && { cat "$tmpdir/err" >&2; die "-r leaks: leaks remain"; }
size_after=$(stat -c %s "$tmpdir/leaks.vmdk")
((size_after == size_before - G)) || die "-r leaks: file is $size_after bytes, expected $((size_before - G))"
python3 - "$tmpdir/leaks.vmdk" $mid <<'EOF' || die "-r leaks: the leaked space in the middle still holds data"
import sys
sec, n = int(sys.argv[2]), int(sys.argv[3])
with open(sys.argv[1], "rb") as f:
    f.seek(sec * 512)
    sys.exit(0 if f.read(n * 512).count(0) == n * 512 else 1)
EOF
"$VMDKIT" read "$tmpdir/leaks.vmdk" 0 64M | cmp - <("$VMDKIT" read "$tmpdir/pristine.vmdk" 0 64M) ||
  die "-r leaks: the disk reads differently"
expect_rc 0 "$VMDKIT" check -r all "$tmpdir/leaks.vmdk"
expect_clean_everywhere "-r leaks then -r all" "$tmpdir/leaks.vmdk"

# ---- traces of an interrupted update (uncleanShutdown set; a redundant
#      table behind its primary, a redundant directory entry without its
#      grain directory entry): harmless, -r leaks brings them in line and
#      the disk reads as before ------------------------------------------------
cp "$tmpdir/pristine.vmdk" "$tmpdir/crash.vmdk"
truncate -s $(($(stat -c %s "$tmpdir/crash.vmdk") - G)) "$tmpdir/crash.vmdk" # no end leak
kdmv "$tmpdir/crash.vmdk" rgt 0 3 0
kdmv "$tmpdir/crash.vmdk" gd 1 0
printf '\001' | dd of="$tmpdir/crash.vmdk" bs=1 seek=72 conv=notrunc status=none
"$VMDKIT" read "$tmpdir/crash.vmdk" 0 64M >"$tmpdir/crash.before"
expect_rc 3 "$VMDKIT" check "$tmpdir/crash.vmdk"
grep -q "^Leaked cluster: .*redundant grain table 0 is out of date.*crash" "$tmpdir/err" &&
  grep -q "^Leaked cluster: .*grain directory entry 1 is 0 .*crash" "$tmpdir/err" ||
  { cat "$tmpdir/err" >&2; die "crash traces: not reported as an interrupted update"; }
grep -q '^ERROR' "$tmpdir/err" && { cat "$tmpdir/err" >&2; die "crash traces: reported as corruption"; }
expect_rc 0 "$VMDKIT" check -r leaks "$tmpdir/crash.vmdk"
[[ $(od -An -tu1 -j72 -N1 "$tmpdir/crash.vmdk" | tr -d ' ') -eq 0 ]] ||
  die "crash traces: uncleanShutdown still set after the repair"
[[ $(kdmv "$tmpdir/crash.vmdk" rgt 0 3) -eq $(kdmv "$tmpdir/crash.vmdk" gt 0 3) ]] ||
  die "crash traces: the redundant entry was not brought in line"
[[ $(kdmv "$tmpdir/crash.vmdk" rgd 1) -eq 0 ]] || die "crash traces: the lone redundant directory entry is still set"
"$VMDKIT" read "$tmpdir/crash.vmdk" 0 64M | cmp - "$tmpdir/crash.before" ||
  die "crash traces: the disk reads differently after the repair"
expect_clean_everywhere "crash traces" "$tmpdir/crash.vmdk"

# ---- the file cut inside its last grain: -r all extends it over the grain,
#      which reads its bytes that are left, then zeros ----------------------
qemu-img create -q -f vmdk "$tmpdir/cut.vmdk" 64M
qemu-io -f vmdk -c "write -P 0x41 0 64k" -c "write -P 0x42 1M 64k" "$tmpdir/cut.vmdk" >/dev/null
truncate -s $(($(stat -c %s "$tmpdir/cut.vmdk") - 10000)) "$tmpdir/cut.vmdk"
run "$VMDKIT" check -r all "$tmpdir/cut.vmdk"
[[ $rc -eq 0 ]] || { cat "$tmpdir/out" "$tmpdir/err" >&2; die "cut: check -r all exited $rc"; }
grep -q "^Repaired: .*ran past the end of the file: extended" "$tmpdir/err" ||
  { cat "$tmpdir/err" >&2; die "cut: the file was not extended over the grain"; }
raw_of $((64 * M)) "$tmpdir/cut.raw" 0:0x41 16:0x42
python3 - "$tmpdir/cut.raw" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(17 * 65536 - 10000)
    f.write(bytes(10000))
EOF
"$VMDKIT" read "$tmpdir/cut.vmdk" 0 64M | cmp - "$tmpdir/cut.raw" || die "cut: the disk does not read as expected"
expect_clean_everywhere "cut" "$tmpdir/cut.vmdk"

# ---- COWD (vmfsSparse): bad entries cleared, the rest reads the same ------
for kind in gte-past-eof gte-header; do
  d="$tmpdir/cowd-$kind"
  mkdir -p "$d/good"
  python3 "$SRC_DIR/tests/gen/make_cowd.py" --grain 8 "$d/good" x
  python3 "$SRC_DIR/tests/gen/make_cowd.py" --grain 8 --corrupt "$kind" "$d" x
  expect_rc 2 "$VMDKIT" check "$d/x.vmdk"
  expect_rc 0 "$VMDKIT" check -r all "$d/x.vmdk"
  grep -q "^Repaired: .*cleared it" "$tmpdir/err" || { cat "$tmpdir/err" >&2; die "cowd $kind: no entry cleared"; }
  expect_clean_everywhere "cowd $kind" "$d/x.vmdk"
  # what changed: only the grain whose entry was cleared (now zeros)
  "$VMDKIT" read "$d/x.vmdk" 0 "$(stat -c %s "$d/good/x.raw")" >"$d/after.raw"
  python3 - "$d/good/x.raw" "$d/after.raw" <<'EOF' || die "cowd $kind: more than the bad grain changed, or it is not zeros"
import sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
grain = 8 * 512
assert len(a) == len(b)
diff = {i // grain for i in range(0, len(a), grain) if a[i:i + grain] != b[i:i + grain]}
if len(diff) != 1 or b[min(diff) * grain:(min(diff) + 1) * grain] != bytes(grain):
    sys.exit("grains changed: %s" % sorted(diff)[:10])
EOF
done

# ---- a clean image: nothing changes; bad -r values are refused ------------
"$VMDKIT" create -q "$tmpdir/fresh.vmdk" 1G
head -c 4096 /dev/urandom | "$VMDKIT" write "$tmpdir/fresh.vmdk" 1M
before=$(sha "$tmpdir/fresh.vmdk")
expect_rc 0 "$VMDKIT" check -r all "$tmpdir/fresh.vmdk"
grep -q "No errors were found" "$tmpdir/out" || die "clean -r all: no 'No errors' line"
grep -q "repaired" "$tmpdir/out" && die "clean -r all: claims to have repaired something"
[[ $(sha "$tmpdir/fresh.vmdk") == "$before" ]] || die "check -r all changed a clean image"
expect_rc 1 "$VMDKIT" check -r some "$tmpdir/fresh.vmdk"
one_error_line "check -r some"
echo "all ok"
