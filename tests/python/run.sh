#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Run the Python module's tests (tests/python/test_*.py, pytest) with one
# interpreter and the module built for it.
#
#   run.sh PYTHON MODULE_DIR
#
# Environment (set by ctest): VMDKIT (the CLI, for comparisons),
# VMDKIT_SANITIZED / ASAN_RUNTIME (a sanitizer build: the interpreter is not
# built with ASan, so the runtime is preloaded and leak checking is off --
# CPython itself keeps memory to the end).
#
# pytest and pyvmdk are Debian packages (python3-pytest, python3-libvmdk)
# installed for /usr/bin/python3.  Another interpreter of the same Python
# version (a pyenv build on PATH) runs them from Debian's folder, after its
# own: their code is pure Python (pytest) or built for that same version
# (pyvmdk).  Exit 77 (skip) when pytest cannot be imported at all.
set -euo pipefail
py=${1:?usage: run.sh PYTHON MODULE_DIR}
moddir=${2:?usage: run.sh PYTHON MODULE_DIR}
here=$(cd "$(dirname "$0")" && pwd)

path=$moddir
if ! "$py" -c 'import pytest' 2>/dev/null; then
  debian=/usr/lib/python3/dist-packages
  same=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  deb=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
  if [[ -d $debian && $same == "$deb" ]] &&
     PYTHONPATH=$debian "$py" -c 'import pytest' 2>/dev/null; then
    path=$moddir:$debian
  else
    echo "note: no pytest for $py (Debian: python3-pytest, for /usr/bin/python3): not tested" >&2
    exit 77
  fi
fi

if [[ ${VMDKIT_SANITIZED:-0} == 1 ]]; then
  if [[ -z ${ASAN_RUNTIME:-} ]]; then
    echo "note: sanitizer build without a known ASan runtime: not tested" >&2
    exit 77
  fi
  # Only Python gets the runtime (not mktemp, not the peers: conftest.py
  # drops it from the environment), and leak checking off, after whatever
  # the caller set (make check: detect_leaks=1; the last setting wins).
  preload=(env LD_PRELOAD="$ASAN_RUNTIME" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
else
  preload=()
fi
base=$(mktemp -d "${TMPDIR:-/tmp}/vmdkit-pytest.XXXXXX")
trap 'rm -rf "$base"' EXIT
cd "$here"
PYTHONPATH=$path PYTHONDONTWRITEBYTECODE=1 "${preload[@]}" "$py" -m pytest -q -p no:cacheprovider \
  --basetemp="$base/t" "$here"
