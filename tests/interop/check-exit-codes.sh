#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# vmdkit check exit codes: 0 clean, 3 leaks only, 2 corruption (with a
# message), 1 could not check; --output=json agrees; check never changes the
# image; qemu-img check agrees where it detects the same thing.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need qemu-img qemu-io python3

M=$((1024 * 1024))

# Patch the hosted sparse metadata of IMG with printf|dd, reading the
# header with od:  patch IMG gd|rgd|gt|rgt INDEX VALUE
#   gd/rgd: entry INDEX of the (redundant) grain directory
#   gt/rgt: entry INDEX of the first (redundant) grain table
u64_at() { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
u32_at() { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
le32() { # VALUE -> 4 little-endian bytes on stdout
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) \
    $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"
}
entry_pos() { # IMG gd|rgd|gt|rgt INDEX -> byte offset of that entry
  local img=$1 what=$2 index=$3 gd rgd
  rgd=$(u64_at "$img" 48)
  gd=$(u64_at "$img" 56)
  case $what in
  gd) echo $((gd * 512 + 4 * index)) ;;
  rgd) echo $((rgd * 512 + 4 * index)) ;;
  gt) echo $(($(u32_at "$img" $((gd * 512))) * 512 + 4 * index)) ;;
  rgt) echo $(($(u32_at "$img" $((rgd * 512))) * 512 + 4 * index)) ;;
  esac
}
entry() { u32_at "$1" "$(entry_pos "$@")"; }
patch() {
  local img=$1 value=$4 pos
  pos=$(entry_pos "$1" "$2" "$3")
  le32 "$value" | dd of="$img" bs=1 seek="$pos" conv=notrunc status=none
  [[ $(u32_at "$img" "$pos") -eq $value ]] || die "patch $2[$3] = $value did not stick (test bug)"
}

# A qemu-made image with a few grains of data.
qemu-img create -q -f vmdk "$tmpdir/base.vmdk" 64M
qemu-io -f vmdk -c "write -P 0x41 0 192k" -c "write -P 0x42 $((33 * M)) 64k" \
  "$tmpdir/base.vmdk" >/dev/null
[[ $(u64_at "$tmpdir/base.vmdk" 48) -ne 0 ]] || die "qemu image has no redundant GD (test premise)"

check_case() { # LABEL IMG WANT-RC [grep pattern for the message]
  local label=$1 img=$2 want=$3 pattern=${4:-} before
  before=$(sha "$img")
  run "$VMDKIT" check "$img"
  if [[ $rc -ne $want ]]; then
    cat "$tmpdir/out" "$tmpdir/err" >&2
    die "$label: vmdkit check exited $rc, expected $want"
  fi
  cat "$tmpdir/out" "$tmpdir/err" >"$tmpdir/both"
  if [[ -n $pattern ]] && ! grep -Eqi "$pattern" "$tmpdir/both"; then
    cat "$tmpdir/both" >&2
    die "$label: vmdkit check output does not match /$pattern/"
  fi
  if ((want == 2 || want == 3)); then
    # the problem is named with the file
    grep -q "$(basename "$img")" "$tmpdir/both" || { cat "$tmpdir/both" >&2; die "$label: messages do not name the file"; }
  fi
  [[ $(sha "$img") == "$before" ]] || die "$label: vmdkit check changed the image"
  # --output=json: same exit code, a JSON document with the counts
  run "$VMDKIT" check --output=json "$img"
  [[ $rc -eq $want ]] || die "$label: vmdkit check --output=json exited $rc, expected $want"
  if ((want != 1)); then
    python3 - "$tmpdir/out" "$want" "$label" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
want, label = int(sys.argv[2]), sys.argv[3]
c, l = d.get("corruptions"), d.get("leaks")
ok = {0: c == 0 and l == 0, 2: isinstance(c, int) and c > 0,
      3: c == 0 and isinstance(l, int) and l > 0}[want]
if not ok or d.get("format") != "vmdk":
    sys.exit("%s: check --output=json: %r" % (label, d))
EOF
  fi
  [[ $(sha "$img") == "$before" ]] || die "$label: vmdkit check --output=json changed the image"
  echo "$label: exit $want ok"
}

# 1. clean
check_case "clean qemu image" "$tmpdir/base.vmdk" 0
"$VMDKIT" create -q "$tmpdir/fresh.vmdk" 1G
check_case "fresh vmdkit image" "$tmpdir/fresh.vmdk" 0

# 2. a leaked grain: one grain-sized block appended that no table points at
cp "$tmpdir/base.vmdk" "$tmpdir/leak.vmdk"
head -c 65536 /dev/urandom >>"$tmpdir/leak.vmdk"
check_case "leaked grain" "$tmpdir/leak.vmdk" 3 'leak'
# qemu-img 7.2 does not look for leaks in VMDKs; it must not call it corrupt
run qemu-img check -f vmdk "$tmpdir/leak.vmdk"
[[ $rc -eq 0 || $rc -eq 3 ]] || die "qemu-img check of the leaked grain: exit $rc"

# 3. a grain table entry (in GT and RGT) pointing past the end of the file
cp "$tmpdir/base.vmdk" "$tmpdir/gte-eof.vmdk"
patch "$tmpdir/gte-eof.vmdk" gt 1 $((0x100000))
patch "$tmpdir/gte-eof.vmdk" rgt 1 $((0x100000))
check_case "GTE past EOF" "$tmpdir/gte-eof.vmdk" 2 'end of (the )?file|past|beyond|after'
run qemu-img check -f vmdk "$tmpdir/gte-eof.vmdk"
[[ $rc -ne 0 ]] && grep -qi "after EOF" "$tmpdir/out" "$tmpdir/err" ||
  die "qemu-img check no longer detects a GTE past EOF (exit $rc)"
# reading the broken grain fails with one error line; a good one reads
run "$VMDKIT" read "$tmpdir/gte-eof.vmdk" 65536 512
[[ $rc -ne 0 ]] || die "reading a grain past EOF succeeded"
one_error_line "read of a grain past EOF"
"$VMDKIT" read "$tmpdir/gte-eof.vmdk" 0 512 | cmp - <(head -c 512 /dev/zero | tr '\0' 'A') ||
  die "grain 0 of the image with a bad grain 1 does not read right"

# 4. grain directory and its redundant copy disagree (qemu-img 7.2 check
#    does not compare them, and says "No errors")
cp "$tmpdir/base.vmdk" "$tmpdir/gd-rgd.vmdk"
patch "$tmpdir/gd-rgd.vmdk" gd 0 0
check_case "GD entry 0 zero, RGD entry set" "$tmpdir/gd-rgd.vmdk" 2 'grain directory|redundant|RGD|GD'

# 5. grain table and its redundant copy disagree (GTE 5 only in the GT,
#    pointing at grain 0's data: also two entries for one grain; qemu-img
#    7.2 check sees nothing wrong)
cp "$tmpdir/base.vmdk" "$tmpdir/gt-rgt.vmdk"
patch "$tmpdir/gt-rgt.vmdk" gt 5 "$(entry "$tmpdir/gt-rgt.vmdk" gt 0)"
check_case "GT and RGT differ" "$tmpdir/gt-rgt.vmdk" 2 'grain table|redundant|RGT|overlap|twice|shared'

# 6. could not check: missing file, not an image at all
run "$VMDKIT" check "$tmpdir/does-not-exist.vmdk"
[[ $rc -eq 1 ]] || die "check of a missing file exited $rc, expected 1"
one_error_line "check of a missing file"
grep -q "does-not-exist.vmdk" "$tmpdir/err" || die "missing file: message does not name it"
printf 'KDMV\001\000\000\000' >"$tmpdir/stub.vmdk" # a truncated header
check_case "truncated header" "$tmpdir/stub.vmdk" 1
one_error_line "check of a truncated header"
echo "all ok"
