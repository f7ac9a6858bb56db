#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# podchecker on every POD given: exit 0 only when each one is "pod syntax
# OK" with no error and no warning at all (podchecker itself exits 0 with
# warnings).
#   bash podchecker.sh FILE.pod...
set -uo pipefail
command -v podchecker >/dev/null || { echo "FAIL: podchecker is not installed (perl)" >&2; exit 1; }
(($# > 0)) || { echo "FAIL: no POD files given" >&2; exit 1; }
fail=0
for pod in "$@"; do
  if [[ ! -s $pod ]]; then
    echo "FAIL: $pod: missing or empty" >&2
    fail=1
    continue
  fi
  out=$(podchecker "$pod" 2>&1)
  rc=$?
  if ((rc != 0)) || grep -Eq '\*\*\* (WARNING|ERROR)' <<<"$out" ||
    ! grep -q 'pod syntax OK' <<<"$out"; then
    echo "FAIL: podchecker $pod (exit $rc):" >&2
    echo "$out" >&2
    fail=1
  else
    echo "ok: $pod"
  fi
done
exit $fail
