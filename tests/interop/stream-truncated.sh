#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Truncated streamOptimized images are never read silently.  Streams made by
# vmdkit (VMware's layout: grains, tables, GD, footer, EOS) and by qemu-img
# (QEMU's: tables at the front, then grains, no EOS marker) are cut inside
# the header, between grains, in the middle of a grain, after the last
# grain, before the footer and just before the end-of-stream marker.  For
# each cut:
#  - convert, compare, read and the nbdkit plugin refuse it with one line
#    saying what is missing and how much the markers give (convert leaves
#    no output), unless only the EOS marker is missing (nothing is lost:
#    it converts, with a warning; a QEMU stream cut after its last grain
#    is whole);
#  - convert --salvage exits 0 with one warning line, and its output holds
#    the source's bytes for every grain that was whole in the prefix and
#    zeros elsewhere (the expected image is computed here from the markers
#    of the uncut file, independently of vmdkit); the plugin with
#    salvage=true serves the same bytes;
#  - info (text and JSON) and check say what state the stream is in;
#  - write and check -r (read-write opens) refuse it and change nothing.
# The uncut files convert byte-identically (and qemu-img agrees).
set -euo pipefail
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need python3 qemu-img
cd "$tmpdir"

# 30 MiB, 480 grains of 64 KiB: zero grains (not stored), random ones
# (stored: 64 KiB + 16 bytes) and text (a few hundred bytes compressed).
python3 - src.raw <<'PY'
import random, sys
rnd = random.Random(12)
g = 65536
out = bytearray()
for i in range(480):
    k = i % 5
    if k == 0:
        out += bytes(g)
    elif k == 1:
        out += rnd.randbytes(g)
    else:
        t = (b'grain %d, some text %d ' % (i, k)) * (g // 20)
        out += t[:g - 777] + bytes(777)
open(sys.argv[1], 'wb').write(out)
PY

"$VMDKIT" convert -O vmdk -o subformat=streamOptimized src.raw v.vmdk
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized src.raw q.vmdk

# The uncut streams: complete, byte-identical, qemu-img agrees.
for p in v q; do
  expect_rc 0 "$VMDKIT" convert -O raw $p.vmdk $p.raw
  [[ ! -s $tmpdir/err ]] || die "$p: convert of a whole stream printed: $(cat "$tmpdir/err")"
  same src.raw $p.raw
  expect_rc 0 qemu-img compare -f raw -F vmdk src.raw $p.vmdk
  expect_rc 0 "$VMDKIT" check $p.vmdk
  "$VMDKIT" info $p.vmdk | grep -q '^            stream: complete, 384 grains$' ||
    die "$p: info does not say the stream is complete: $("$VMDKIT" info $p.vmdk)"
  "$VMDKIT" info --output=json $p.vmdk >info.json
  [[ $(json_get info.json format-specific data extents 0 stream) == complete &&
     $(json_get info.json format-specific data extents 0 stream-grains) == 384 ]] ||
    die "$p: info JSON: $(cat info.json)"
done
expect_rc 0 "$VMDKIT" convert -O vmdk v.vmdk v2.vmdk
expect_rc 0 qemu-img compare -f raw -F vmdk src.raw v2.vmdk

# The cuts, the expected salvage of each (exp-P-NAME.raw) and what the
# message must say, from the markers of the uncut file.  One line per cut:
# NAME|LENGTH|KIND|MESSAGE|GRAINS; KIND header (refused even with
# --salvage), truncated (refused, salvaged) or noeos (accepted).
python3 - src.raw v.vmdk q.vmdk >cuts.txt <<'PY'
import struct, sys
src = open(sys.argv[1], 'rb').read()
G = 65536
def human(n):  # the library's human_size()
    if n < 1024:
        return '%d bytes' % n
    u, div = 0, 1024
    while u < 5 and n // div >= 1024:
        div *= 1024
        u += 1
    unit = ('KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB')[u]
    return '%d %s' % (n // div, unit) if n % div == 0 else '%.2f %s' % (n / div, unit)
for prod, path in (('v', sys.argv[2]), ('q', sys.argv[3])):
    b = open(path, 'rb').read()
    overhead, = struct.unpack_from('<Q', b, 64)
    grains, meta = [], []   # (start byte, end byte, lba sectors, need bytes)
    pos, eos = overhead * 512, None
    while pos + 16 <= len(b):  # (QEMU writes no EOS marker)
        lba, size, kind = struct.unpack_from('<QII', b, pos)
        if size:
            grains.append((pos, pos + 12 + size, lba, 12 + size))
            pos += (12 + size + 511) // 512 * 512
        elif kind == 0:
            eos = pos
            break
        else:
            meta.append((pos, kind))
            pos += 512 + lba * 512
    assert len(grains) == 384, len(grains)
    cuts = [('header300', 300), ('header600', 600)]
    # between two grains, about 1 MiB in
    cuts.append(('grains', next(s for s, e, l, n in grains if s >= 1 << 20)))
    # in the middle of a stored (64 KiB) grain
    s, e, l, n = next(x for x in grains if x[0] >= (1 << 20) and x[3] > G)
    cuts.append(('midgrain', s + n // 2))
    last_end = (grains[-1][1] + 511) // 512 * 512
    cuts.append(('aftergrains', last_end))  # v: no tables, GD, footer
    if prod == 'v':
        footer_marker = [p for p, k in meta if k == 3][-1]
        cuts.append(('beforefooter', footer_marker))
        cuts.append(('beforeeos', eos))
    for name, L in cuts:
        whole = [x for x in grains if x[1] <= L]
        cut = [x for x in grains if x[0] < L < x[1]]
        exp = bytearray(len(src))
        for s, e, lba, n in whole:
            o = lba * 512
            exp[o:o + G] = src[o:o + G]
        open('exp-%s-%s.raw' % (prod, name), 'wb').write(exp)
        got = len(whole)
        rec = '%d grains recovered (%s of the 30 MiB disk)' % (got, human(got * G))
        cutmsg = ''
        if cut:
            s, e, lba, n = cut[0]
            cutmsg = 'the grain at sector %d (LBA %d) is cut after %d of its %d bytes; ' % (
                s // 512, lba, L - s, n)
        if name.startswith('header'):
            kind = 'header'
            msg = 'stream is truncated after %d bytes, inside its header' % L
        elif name == 'beforeeos':
            kind = 'noeos'
            msg = 'stream has no end-of-stream marker: the file (%d bytes) ends with its footer' % L
        elif prod == 'q' and name == 'aftergrains':
            # every grain its tables list: whole (QEMU writes no EOS)
            kind, msg = 'whole', ''
            assert got == 384
        elif prod == 'v':
            kind = 'truncated'
            missing = ('no footer or end-of-stream marker' if name == 'beforefooter'
                       else 'no grain directory, footer or end-of-stream marker')
            msg = 'stream is truncated after %d bytes: %s%s; %s' % (L, cutmsg, missing, rec)
        else:
            kind = 'truncated'
            past = [x for x in grains if x[0] // 512 >= L // 512]
            msg = ('stream is truncated after %d bytes: %d of the 384 grains its grain tables '
                   'list lie past the end of the file; %s%s') % (L, len(past), cutmsg, rec)
        print('%s|%s|%d|%s|%s|%d' % (prod, name, L, kind, msg, got))
PY

M=$((1024 * 1024))
plugin=$BUILD_DIR/nbdkit-vmdkit-plugin.so
have_nbd=0
if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null && [[ -f $plugin ]]; then
  have_nbd=1
fi

# The one stderr line, exactly: "vmdkit: cut.vmdk: <MSG...>".
expect_line() { # WHAT PREFIX MSG
  one_error_line "$1"
  grep -qF -- "$2$3" "$tmpdir/err" || {
    cat "$tmpdir/err" >&2
    die "$1: expected the line to contain: $2$3"
  }
}

while IFS='|' read -r prod name len kind msg got; do
  label="$prod-$name (cut at $len)"
  head -c "$len" $prod.vmdk >cut.vmdk
  before=$(sha cut.vmdk)
  rm -f out.raw
  case $kind in
  header)
    expect_rc 1 "$VMDKIT" convert -O raw cut.vmdk out.raw
    expect_line "$label: convert" "vmdkit: cut.vmdk: " "$msg"
    [[ ! -e out.raw ]] || die "$label: convert left out.raw"
    expect_rc 1 "$VMDKIT" convert --salvage -O raw cut.vmdk out.raw
    expect_line "$label: convert --salvage" "vmdkit: cut.vmdk: " "$msg"
    grep -q "no grain is left to recover" "$tmpdir/err" || die "$label: $(cat "$tmpdir/err")"
    [[ ! -e out.raw ]] || die "$label: convert --salvage left out.raw"
    expect_rc 1 "$VMDKIT" info cut.vmdk
    expect_line "$label: info" "vmdkit: cut.vmdk: " "$msg"
    expect_rc 1 "$VMDKIT" check cut.vmdk
    expect_line "$label: check" "vmdkit: cut.vmdk: " "$msg"
    ;;
  truncated)
    # refused, one line, no output
    expect_rc 1 "$VMDKIT" convert -O raw cut.vmdk out.raw
    expect_line "$label: convert" "vmdkit: cut.vmdk: " "$msg"
    grep -q -- "--salvage converts what is there" "$tmpdir/err" || die "$label: convert does not name --salvage"
    [[ ! -e out.raw ]] || die "$label: convert left out.raw"
    expect_rc 1 "$VMDKIT" convert -O vmdk -o subformat=streamOptimized cut.vmdk out.vmdk
    [[ ! -e out.vmdk ]] || die "$label: convert -O vmdk left out.vmdk"
    expect_rc 2 "$VMDKIT" compare src.raw cut.vmdk
    expect_line "$label: compare" "vmdkit: cut.vmdk: " "$msg"
    expect_rc 1 "$VMDKIT" read cut.vmdk 0 512
    expect_line "$label: read" "vmdkit: cut.vmdk: " "$msg"
    [[ ! -s $tmpdir/out ]] || die "$label: read printed data"
    expect_rc 1 "$VMDKIT" map cut.vmdk
    expect_line "$label: map" "vmdkit: cut.vmdk: " "$msg"
    # read-write opens: refused even when salvaging would read it
    expect_rc 1 sh -c 'printf x | "$1" write cut.vmdk 100' sh "$VMDKIT"
    expect_line "$label: write" "vmdkit: cut.vmdk: " "$msg; a damaged stream cannot be opened for writing"
    expect_rc 1 "$VMDKIT" check -r all cut.vmdk
    expect_line "$label: check -r" "vmdkit: cut.vmdk: " "$msg; a damaged stream cannot be opened for writing"
    [[ $(sha cut.vmdk) == "$before" ]] || die "$label: a refused command changed the file"
    # salvaged: one warning line, the grains that were whole, zeros elsewhere
    expect_rc 0 "$VMDKIT" convert --salvage -O raw cut.vmdk out.raw
    expect_line "$label: convert --salvage" "vmdkit: cut.vmdk: warning: " "$msg; the rest reads as zeros"
    same exp-$prod-$name.raw out.raw
    # info: the state; check: corrupt, the same message
    expect_rc 0 "$VMDKIT" info cut.vmdk
    grep -qx "            stream: truncated, $got grains recovered" "$tmpdir/out" ||
      die "$label: info: $(cat "$tmpdir/out")"
    grep -qxF "            stream damage: $msg" "$tmpdir/out" || die "$label: info: $(cat "$tmpdir/out")"
    "$VMDKIT" info --output=json cut.vmdk >info.json
    [[ $(json_get info.json format-specific data extents 0 stream) == truncated &&
       $(json_get info.json format-specific data extents 0 stream-grains) == "$got" &&
       $(json_get info.json format-specific data extents 0 stream-damage) == "$msg" ]] ||
      die "$label: info JSON: $(cat info.json)"
    expect_rc 2 "$VMDKIT" check cut.vmdk
    grep -qF "ERROR cut.vmdk: $msg" "$tmpdir/err" || die "$label: check: $(cat "$tmpdir/err")"
    [[ $(sha cut.vmdk) == "$before" ]] || die "$label: the file changed"
    if ((have_nbd)); then
      run run_nbdkit -U - "$plugin" file=cut.vmdk --run 'nbdcopy "$uri" nbd.raw'
      [[ $rc -ne 0 ]] || die "$label: nbdkit served a truncated stream"
      grep -qF "cut.vmdk: $msg" "$tmpdir/err" || die "$label: nbdkit did not say why: $(cat "$tmpdir/err")"
      [[ ! -e nbd.raw ]] || die "$label: nbdkit served a truncated stream"
      rm -f nbd.raw
      run run_nbdkit -U - "$plugin" file=cut.vmdk salvage=true --run 'nbdinfo "$uri" >nbd.info && nbdcopy "$uri" nbd.raw'
      [[ $rc -eq 0 ]] || die "$label: nbdkit salvage=true failed: $(cat "$tmpdir/err")"
      grep -q "warning: .*cut.vmdk: " "$tmpdir/err" && grep -qF "cut.vmdk: $msg; the rest reads as zeros" "$tmpdir/err" ||
        die "$label: nbdkit salvage=true did not warn: $(cat "$tmpdir/err")"
      grep -Eq 'is_read_only: true|can_write: false' nbd.info || die "$label: salvage=true advertises writes"
      same exp-$prod-$name.raw nbd.raw
      rm -f nbd.raw nbd.info
    fi
    ;;
  whole)
    expect_rc 0 "$VMDKIT" convert -O raw cut.vmdk out.raw
    [[ ! -s $tmpdir/err ]] || die "$label: convert printed: $(cat "$tmpdir/err")"
    same src.raw out.raw
    expect_rc 0 "$VMDKIT" check cut.vmdk
    "$VMDKIT" info cut.vmdk | grep -qx "            stream: complete, 384 grains" ||
      die "$label: info: $("$VMDKIT" info cut.vmdk)"
    ;;
  noeos)
    # nothing is lost: read as a whole; convert says what is missing
    expect_rc 0 "$VMDKIT" convert -O raw cut.vmdk out.raw
    expect_line "$label: convert" "vmdkit: cut.vmdk: warning: " "$msg"
    same src.raw out.raw
    expect_rc 0 "$VMDKIT" compare src.raw cut.vmdk
    "$VMDKIT" read cut.vmdk 0 30M | cmp - src.raw || die "$label: read differs"
    expect_rc 0 "$VMDKIT" info cut.vmdk
    grep -qx "            stream: no-end-of-stream, 384 grains" "$tmpdir/out" ||
      die "$label: info: $(cat "$tmpdir/out")"
    expect_rc 2 "$VMDKIT" check cut.vmdk
    grep -qF "ERROR cut.vmdk: $msg" "$tmpdir/err" || die "$label: check: $(cat "$tmpdir/err")"
    [[ $(sha cut.vmdk) == "$before" ]] || die "$label: the file changed"
    if ((have_nbd)); then
      run run_nbdkit -U - "$plugin" file=cut.vmdk --run 'nbdcopy "$uri" nbd.raw'
      [[ $rc -eq 0 ]] || die "$label: nbdkit refused: $(cat "$tmpdir/err")"
      same src.raw nbd.raw
      rm -f nbd.raw
    fi
    ;;
  esac
  echo "$label: $kind ok"
done <cuts.txt
[[ $(wc -l <cuts.txt) -eq 12 ]] || die "expected 12 cuts: $(cat cuts.txt)"

# A stream cut 12 bytes into its EOS marker's sector still misses it.
head -c $(($(stat -c %s v.vmdk) - 500)) v.vmdk >cut.vmdk
expect_rc 0 "$VMDKIT" convert -O raw cut.vmdk out.raw
expect_line "partial EOS" "vmdkit: cut.vmdk: warning: " "stream has no end-of-stream marker: the file ($(stat -c %s cut.vmdk) bytes) ends 12 bytes after its footer"
same src.raw out.raw

# Appending to a stream made by vmdkit and closed normally works, and the
# result is complete; the writes of a stream whose writer did not finish
# (no footer yet) are refused like any truncated stream (the kill itself is
# tests/unit/test-crash-kill.c's stream layout).
"$VMDKIT" create -q -o subformat=streamOptimized app.vmdk 30M
head -c 65536 /dev/urandom >chunk
"$VMDKIT" write app.vmdk $((5 * M)) <chunk
"$VMDKIT" info app.vmdk | grep -q '^            stream: complete, 1 grain$' || die "append: $("$VMDKIT" info app.vmdk)"
"$VMDKIT" read app.vmdk $((5 * M)) 65536 | cmp - chunk || die "append: read back differs"
expect_rc 0 "$VMDKIT" check app.vmdk
echo "stream-truncated: all ok"
