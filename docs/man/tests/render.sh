#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Render each man page as a reader would, and fail on any warning:
#   LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l PAGE
# and groff -man -Tutf8 -ww -z (every warning) on the same file.  Also fails when
# a rendered line is wider than 80 columns (a verbatim block too wide for
# the terminal), when the page has no NAME or no SYNOPSIS section, or when
# its footer does not carry RELEASE (vmdkit-VERSION).
#   bash render.sh RELEASE PAGE...
set -uo pipefail
release=${1:?usage: render.sh RELEASE PAGE...}
shift
for t in man groff; do
  command -v $t >/dev/null || { echo "FAIL: $t is not installed (man-db, groff-base)" >&2; exit 1; }
done
(($# > 0)) || { echo "FAIL: no pages given" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmdkit-man-render.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
for page in "$@"; do
  name=$(basename "$page")
  if [[ ! -s $page ]]; then
    echo "FAIL: $page: missing or empty" >&2
    fail=1
    continue
  fi
  LC_ALL=C.UTF-8 MANWIDTH=80 MAN_KEEP_FORMATTING= man --warnings -E UTF-8 -l "$page" \
    >"$tmp/$name.txt" 2>"$tmp/$name.err"
  rc=$?
  if ((rc != 0)) || [[ -s $tmp/$name.err ]]; then
    echo "FAIL: man --warnings -l $page (exit $rc):" >&2
    cat "$tmp/$name.err" >&2
    fail=1
  fi
  groff -man -Tutf8 -ww -z -K utf8 "$page" 2>"$tmp/$name.groff"
  rc=$?
  if ((rc != 0)) || [[ -s $tmp/$name.groff ]]; then
    echo "FAIL: groff -man -Tutf8 -ww -z $page (exit $rc):" >&2
    cat "$tmp/$name.groff" >&2
    fail=1
  fi
  # man pipes through col -b when its output is not a terminal: plain text.
  wide=$(LC_ALL=C.UTF-8 awk 'length($0) > 80 { printf "  line %d (%d columns): %s\n", NR, length($0), $0 }' "$tmp/$name.txt")
  if [[ -n $wide ]]; then
    echo "FAIL: $page: rendered lines wider than 80 columns:" >&2
    echo "$wide" >&2
    fail=1
  fi
  for section in NAME SYNOPSIS DESCRIPTION 'SEE ALSO'; do
    if ! grep -qx "$section" "$tmp/$name.txt"; then
      echo "FAIL: $page: no $section section" >&2
      fail=1
    fi
  done
  if ! tail -n 1 "$tmp/$name.txt" | grep -qF "$release"; then
    echo "FAIL: $page: the footer does not name $release: $(tail -n 1 "$tmp/$name.txt")" >&2
    fail=1
  fi
  [[ $fail == 0 ]] && echo "ok: $page ($(wc -l <"$tmp/$name.txt") lines)"
done
exit $fail
