#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Build the Debian packages of vmdkit (debian/) into OUT_DIR.
#
#   bash scripts/make-deb.sh OUT_DIR        (`make deb`: OUT_DIR=build-deb)
#
# What it does:
#  1. Copies a clean source tree into OUT_DIR/src/vmdkit-VERSION/ (VERSION
#     from include/vmdkit.h, which must equal debian/changelog's version).
#     In a git checkout: the files git tracks, as they are in the working
#     tree, i.e. with uncommitted changes to tracked files (what a developer
#     wants to try) but without untracked files (git add a new file for it
#     to be packaged) and without tracked files deleted in the work tree.
#     Outside git: every file but build*/, obj-*/, .git and OUT_DIR.
#     It says so when the working tree differs from HEAD.
#  2. Runs `dpkg-buildpackage -us -uc -b` there (the unit tests run in it;
#     DEB_BUILD_OPTIONS=nocheck skips them). The output goes to
#     OUT_DIR/build.log; its end is printed when the build fails (VERBOSE=1
#     prints all of it as it goes). The .deb, .buildinfo and .changes files
#     land in OUT_DIR/src/; the .deb files are also linked into OUT_DIR/.
#     (OUT_DIR/src/ and the earlier .deb files of these packages in OUT_DIR
#     are removed first; nothing else there is touched.)
#  3. Runs lintian on the .changes, prints what it says, and fails (exit 1)
#     when it reports an error (E:). Warnings are printed, not fatal.
#
# Nothing is installed.  JOBS (default: the number of CPUs) is the build
# parallelism.  Exit status: 0 built and lintian-clean; 1 failure; 2 usage.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR" >&2; exit 2; }
(($# == 1)) && [[ -n "$1" ]] || usage

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

say() { printf 'make-deb: %s\n' "$*"; }
die() { printf 'make-deb: %s\n' "$*" >&2; exit 1; }

for tool in dpkg-buildpackage dpkg-parsechangelog dh lintian tar; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found (apt-get install debhelper dpkg-dev fakeroot lintian; scripts/install-deps.sh lists them)"
done

# ---- the version: include/vmdkit.h and debian/changelog agree ------------
version=$(sed -n 's/^#define VMDKIT_VERSION_STRING "\([0-9.]*\)".*/\1/p' "$root/include/vmdkit.h")
[[ -n "$version" ]] || die "no VMDKIT_VERSION_STRING in include/vmdkit.h"
deb_version=$(dpkg-parsechangelog -l "$root/debian/changelog" -S Version)
[[ "$deb_version" == "$version" ]] ||
  die "debian/changelog is at $deb_version but include/vmdkit.h says $version: add a changelog entry (dch -v $version)"
source=$(dpkg-parsechangelog -l "$root/debian/changelog" -S Source)

# ---- 1. a clean copy of the source ----------------------------------------
srcdir="$out/src"
tree="$srcdir/$source-$version"
# Only what earlier runs of this script made there: OUT_DIR/src, the log
# and the .deb files of debian/control's packages (and their -dbgsym).
rm -rf "$srcdir"
rm -f "$out/build.log"
while read -r pkg; do
  rm -f "$out/${pkg}_"*.deb "$out/${pkg}-dbgsym_"*.deb
done < <(sed -n 's/^Package: *//p' "$root/debian/control")
mkdir -p "$tree"

if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
   [[ "$(git -C "$root" rev-parse --show-toplevel)" == "$root" ]]; then
  changed=$(git -C "$root" status --porcelain --untracked-files=no | wc -l)
  untracked=$(git -C "$root" status --porcelain --untracked-files=normal | grep -c '^??' || true)
  if ((changed > 0)); then
    say "note: $changed tracked file(s) differ from HEAD; their working-tree contents are packaged"
  fi
  if ((untracked > 0)); then
    say "note: $untracked untracked path(s) are left out (git add them to package them)"
  fi
  # Tracked files that exist in the working tree (a deleted one is left out).
  git -C "$root" ls-files -z --cached |
    (cd "$root" && while IFS= read -r -d '' f; do
       [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"
     done) |
    tar -C "$root" --null --no-recursion -T - -cf - | tar -C "$tree" -xf -
  say "copied $(git -C "$root" ls-files | wc -l) tracked files into $tree"
else
  excl=(--exclude=./.git --exclude='./build' --exclude='./build-*'
        --exclude='./obj-*' --exclude=./debian/.debhelper)
  case "$out/" in
    "$root"/*) excl+=(--exclude="./${out#"$root"/}") ;;
  esac
  tar -C "$root" "${excl[@]}" -cf - . | tar -C "$tree" -xf -
  say "not a git checkout: copied $root (less build directories) into $tree"
fi

# ---- 2. dpkg-buildpackage --------------------------------------------------
# An outer `make deb` (or make -jN) must not hand its jobserver to the
# package build's own make.
unset MAKEFLAGS MFLAGS MAKELEVEL
log="$out/build.log"
say "dpkg-buildpackage -us -uc -b -J$jobs in $tree (log: $log)"
start=$(date +%s)
set +e
if [[ "${VERBOSE:-0}" == 1 ]]; then
  (cd "$tree" && dpkg-buildpackage -us -uc -b -J"$jobs") 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
else
  (cd "$tree" && dpkg-buildpackage -us -uc -b -J"$jobs") >"$log" 2>&1
  rc=$?
fi
set -e
if ((rc != 0)); then
  tail -n 80 "$log" >&2
  die "dpkg-buildpackage failed (exit $rc) after $(( $(date +%s) - start ))s; the whole log is $log"
fi
say "built in $(( $(date +%s) - start ))s"
grep -E '^ *(([0-9]+)% tests passed|Total Test time)' "$log" | sed 's/^ */make-deb: unit tests: /' || true

shopt -s nullglob
debs=("$srcdir"/*.deb)
changes=("$srcdir"/*.changes)
((${#debs[@]} > 0)) || die "no .deb in $srcdir"
((${#changes[@]} == 1)) || die "expected one .changes in $srcdir, found ${#changes[@]}"
ln -f "${debs[@]}" "$out"/
for d in "${debs[@]}"; do
  say "  $out/$(basename "$d")"
done

# ---- 3. lintian --------------------------------------------------------------
say "lintian ${changes[0]#"$out"/}"
set +e
lint=$(lintian --fail-on none "${changes[0]}" 2>&1)
lrc=$?
set -e
[[ -n "$lint" ]] && printf '%s\n' "$lint"
((lrc == 0)) || die "lintian itself failed (exit $lrc)"
errors=$(grep -c '^E: ' <<<"$lint" || true)
warnings=$(grep -c '^W: ' <<<"$lint" || true)
if ((errors > 0)); then
  die "lintian: $errors error(s), $warnings warning(s)"
fi
say "lintian: 0 errors, $warnings warning(s)"
