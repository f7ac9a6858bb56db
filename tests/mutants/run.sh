#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The mutants harness: does the test suite fail when a small bug is planted?
#
#   bash tests/mutants/run.sh [NAME...]        (or: make mutants MUTANTS=a,b)
#
# Each tests/mutants/NAME.patch is one planted bug: a unified diff against
# the current tree (text before the first "--- " line describes it; patch
# skips it).  The runner
#   1. copies the tree to $MUTANTS_DIR/tree once -- by default the
#      committed tree (git archive HEAD: others' edits in progress cannot
#      break the baseline); with MUTANTS_SOURCE=worktree the files as they
#      are in the working tree (git ls-files: tracked and untracked but not
#      ignored; no build folders) -- and builds it there (RelWithDebInfo;
#      the normal build only, not the ASan tree: a full ASan run per
#      mutant would double the time);
#   2. runs ctest on the unmutated copy first (the baseline: a mutant
#      "caught" by a test that fails anyway proves nothing) -- unless
#      MUTANTS_BASELINE=0;
#   3. for each mutant: applies the patch (patch -p1 --fuzz=3), rebuilds
#      (incrementally: only the patched files recompile), runs ctest with
#      CTEST_ARGS under a per-mutant timeout, then puts the patched files
#      back from a pristine copy.
# Results per mutant:
#   caught           some test failed (or ctest ran past MUTANT_TIMEOUT)
#   MISSED           every test passed: the bug went unnoticed
#   did-not-apply    the patch no longer fits the tree (the code moved on:
#                    refresh the patch); not a verdict on the tests
#   did-not-build    the mutated tree does not compile
# and a summary line "N mutants: C caught, M missed, A did not apply, B did
# not build".  Exit status: 1 if any mutant was missed (or the baseline
# failed), else 0.  The result table is written to $MUTANTS_REPORT
# (default docs/MUTANTS.md), replacing the part between its
# "<!-- mutants-result -->" markers.
#
# Environment:
#   MUTANTS          comma-separated names (default: every *.patch)
#   CTEST_ARGS       extra ctest arguments, e.g. "-R confine-sibling" or
#                    "-L interop" (default: the whole normal-build suite)
#   MUTANT_TIMEOUT   seconds per mutant's ctest run (default 900)
#   MUTANTS_DIR      scratch folder (default build-mutants/ in the tree)
#   MUTANTS_SOURCE   head (default) or worktree: what is copied
#   MUTANTS_BASELINE 0 to skip the unmutated run
#   MUTANTS_REPORT   file for the result table ("" or "-": none)
#   JOBS             build and ctest parallelism (default 2)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cd "$src" || exit 2
JOBS=${JOBS:-2}
MUTANT_TIMEOUT=${MUTANT_TIMEOUT:-900}
MUTANTS_DIR=${MUTANTS_DIR:-$src/build-mutants}
MUTANTS_REPORT=${MUTANTS_REPORT-$src/docs/MUTANTS.md}
CTEST_ARGS=${CTEST_ARGS:-}
read -r -a ctest_args <<<"$CTEST_ARGS"

say() { printf '%s\n' "$*" >&2; }

# ---- which mutants ------------------------------------------------------------
names=()
if (($#)); then
  names=("$@")
elif [[ -n ${MUTANTS:-} ]]; then
  IFS=', ' read -r -a names <<<"$MUTANTS"
else
  for p in "$here"/*.patch; do
    [[ -e $p ]] && names+=("$(basename "$p" .patch)")
  done
fi
((${#names[@]})) || { say "mutants: no mutants to run"; exit 2; }
for n in "${names[@]}"; do
  [[ -f $here/$n.patch ]] || { say "mutants: no such mutant: $here/$n.patch"; exit 2; }
done

# ---- the scratch copy ---------------------------------------------------------
tree=$MUTANTS_DIR/tree
pristine=$MUTANTS_DIR/pristine
build=$tree/build
logs=$MUTANTS_DIR/logs
rm -rf "$tree" "$pristine" "$logs"
mkdir -p "$tree" "$pristine" "$logs" || exit 2
# the tests find the sample corpus at SRC_DIR/../shared/corpus
if [[ -d $src/../shared && ! -e $MUTANTS_DIR/shared ]]; then
  ln -s "$(cd "$src/../shared" && pwd)" "$MUTANTS_DIR/shared"
fi
MUTANTS_SOURCE=${MUTANTS_SOURCE:-head}
copy_tree() { # DEST
  if [[ $MUTANTS_SOURCE == head ]]; then
    git -C "$src" archive --format=tar HEAD | tar -xf - -C "$1"
    return
  fi
  git -C "$src" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      # deleted-but-tracked files are gone; build folders are ignored anyway
      [[ -e $f || -L $f ]] && printf '%s\0' "$f"
    done |
    grep -zv -E '^(build[^/]*|tests/mutants)/' |
    tar --null -T - -cf - | tar -xf - -C "$1"
}
copy_tree "$tree" || { say "mutants: copying the tree failed"; exit 2; }
copy_tree "$pristine" || exit 2
tree_name=$(git -C "$src" rev-parse --short HEAD)
if [[ $MUTANTS_SOURCE != head ]] && ! git -C "$src" diff --quiet HEAD -- . 2>/dev/null; then
  tree_name+=" + the working tree's uncommitted changes"
fi
say "mutants: tree copied to $tree ($tree_name)"

build_tree() { # LOG
  {
    cmake -S "$tree" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
      MAKEFLAGS= cmake --build "$build" -j"$JOBS"
  } >"$1" 2>&1
}
run_ctest() { # LOG: 0 all passed, 1 some failed, 124 timed out
  (cd "$build" && timeout -k 30 "$MUTANT_TIMEOUT" \
    ctest --output-on-failure --no-tests=error -j"$JOBS" "${ctest_args[@]}") >"$1" 2>&1
}
failed_tests() { # LOG: the names of the failed tests, one line
  sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) (.*/\1/p' "$1" | tr '\n' ' ' | sed 's/ $//'
}
patched_files() { # PATCH: the paths it changes (from its +++ lines)
  sed -n 's|^+++ [^/]*/\([^	 ]*\).*|\1|p' "$1" | sort -u
}
restore() { # PATCH
  local f
  for f in $(patched_files "$1"); do
    if [[ -e $pristine/$f ]]; then
      cp "$pristine/$f" "$tree/$f" # a new mtime: make rebuilds it
    else
      rm -f "$tree/$f"
    fi
  done
  find "$tree" -path "$build" -prune -o \( -name "*.orig" -o -name "*.rej" \) -type f -delete 2>/dev/null
}

# ---- baseline ---------------------------------------------------------------
t0=$(date +%s)
if ! build_tree "$logs/baseline.build.log"; then
  say "mutants: the unmutated tree does not build (see $logs/baseline.build.log)"
  tail -20 "$logs/baseline.build.log" >&2
  exit 2
fi
baseline="skipped"
if [[ ${MUTANTS_BASELINE:-1} != 0 ]]; then
  say "mutants: baseline (unmutated) ctest ${CTEST_ARGS:-(all tests)}"
  tb=$(date +%s)
  run_ctest "$logs/baseline.ctest.log"
  brc=$?
  if ((brc != 0)); then
    say "mutants: the unmutated tree fails its tests ($(failed_tests "$logs/baseline.ctest.log")); see $logs/baseline.ctest.log"
    say "mutants: results would mean nothing: stopping"
    exit 1
  fi
  baseline="passed in $(($(date +%s) - tb)) s"
  say "mutants: baseline $baseline"
fi

# ---- each mutant --------------------------------------------------------------
declare -A result detail secs
n_caught=0 n_missed=0 n_apply=0 n_build=0
for n in "${names[@]}"; do
  p=$here/$n.patch
  tm=$(date +%s)
  if ! (cd "$tree" && patch -p1 --fuzz=3 --no-backup-if-mismatch -s -f <"$p") >"$logs/$n.patch.log" 2>&1; then
    result[$n]="did-not-apply"
    detail[$n]=$(head -c 300 "$logs/$n.patch.log" | tr '\n' ' ')
    n_apply=$((n_apply + 1))
  elif ! build_tree "$logs/$n.build.log"; then
    result[$n]="did-not-build"
    detail[$n]=$(grep -m1 -E 'error' "$logs/$n.build.log" | head -c 300)
    n_build=$((n_build + 1))
  else
    run_ctest "$logs/$n.ctest.log"
    crc=$?
    if ((crc == 0)); then
      result[$n]="MISSED"
      detail[$n]="every test passed"
      n_missed=$((n_missed + 1))
    elif ((crc == 124 || crc == 137)); then
      result[$n]="caught"
      detail[$n]="ctest ran past ${MUTANT_TIMEOUT} s (a hang); failed so far: $(failed_tests "$logs/$n.ctest.log")"
      n_caught=$((n_caught + 1))
    else
      result[$n]="caught"
      detail[$n]="failed: $(failed_tests "$logs/$n.ctest.log")"
      n_caught=$((n_caught + 1))
    fi
  fi
  restore "$p"
  secs[$n]=$(($(date +%s) - tm))
  printf '%-34s %-14s %4ss  %s\n' "$n" "${result[$n]}" "${secs[$n]}" "${detail[$n]}"
done
# leave the copy built as it was (the next run starts afresh anyway)
total=${#names[@]}
summary="$total mutants: $n_caught caught, $n_missed missed, $n_apply did not apply, $n_build did not build"
elapsed=$(($(date +%s) - t0))
echo "$summary ($elapsed s; ctest ${CTEST_ARGS:-all tests}; logs in $logs)"

# ---- the report ----------------------------------------------------------------
if [[ -n $MUTANTS_REPORT && $MUTANTS_REPORT != - && -f $MUTANTS_REPORT ]]; then
  table=$(mktemp)
  {
    echo "<!-- mutants-result -->"
    echo "Last run: $(date -u '+%Y-%m-%d %H:%M UTC'), tree $tree_name,"
    if [[ -n $CTEST_ARGS ]]; then
      echo "a restricted run (\`CTEST_ARGS=$CTEST_ARGS\`: a mutant missed here may be caught by a test left out), baseline ${baseline}, ${elapsed} s in all."
    else
      echo "the whole normal-build suite, baseline ${baseline}, ${elapsed} s in all."
    fi
    echo
    echo "| mutant | result | time | detail |"
    echo "|---|---|---|---|"
    for n in "${names[@]}"; do
      echo "| \`$n\` | ${result[$n]} | ${secs[$n]} s | ${detail[$n]//|/\\|} |"
    done
    echo
    echo "$summary"
    echo "<!-- /mutants-result -->"
  } >"$table"
  python3 - "$MUTANTS_REPORT" "$table" <<'EOF'
import sys
path, table = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
doc = open(path).read()
a, b = "<!-- mutants-result -->", "<!-- /mutants-result -->"
if a in doc and b in doc:
    doc = doc[:doc.index(a)] + table + doc[doc.index(b) + len(b):]
else:
    doc = doc.rstrip("\n") + "\n\n" + table + "\n"
open(path, "w").write(doc)
EOF
  rm -f "$table"
fi
((n_missed == 0))
