#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# One description per command: `vmdkit CMD --help`, the man page POD
# (`vmdkit help --pod`) and the parser agree.  For every command: --help
# and the POD list the same options (same names and arguments) and the same
# synopsis; every listed option is accepted by the parser (with its
# argument when it takes one, refused without it), and every short option
# that is not listed is refused with the one-line error; the POD has one
# "=head2 vmdkit CMD" per command, and podchecker finds no error or warning
# in it (as spliced under a =head1 of vmdkit(1)).  Skips (77) without
# podchecker.
source "${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/common.sh"
need podchecker

fails=0
fail() {
  echo "FAIL: $*" >&2
  fails=$((fails + 1))
}

# The commands `vmdkit --help` lists.
"$VMDKIT" --help >"$tmpdir/main-help" || die "vmdkit --help failed"
commands=$(sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z]*\) .*/\1/p' "$tmpdir/main-help")
[[ $(wc -w <<<"$commands") -ge 13 ]] || die "vmdkit --help lists too few commands: $commands"

"$VMDKIT" help --pod >"$tmpdir/pod" || die "vmdkit help --pod failed"
[[ -s $tmpdir/pod ]] || die "vmdkit help --pod printed nothing"

# podchecker: no errors, no warnings, as it is used (under a =head1).
{
  printf '=head1 NAME\n\nvmdkit - test frame\n\n=head1 COMMANDS\n\n'
  cat "$tmpdir/pod"
} >"$tmpdir/framed.pod"
podchecker "$tmpdir/framed.pod" >"$tmpdir/podcheck" 2>&1 ||
  { cat "$tmpdir/podcheck" >&2; die "podchecker failed on 'vmdkit help --pod'"; }
if grep -Eq 'WARNING|ERROR' "$tmpdir/podcheck"; then
  cat "$tmpdir/podcheck" >&2
  die "podchecker warns about 'vmdkit help --pod'"
fi
if command -v pod2man >/dev/null; then
  pod2man --errors=die "$tmpdir/framed.pod" >/dev/null 2>"$tmpdir/pod2man" ||
    { cat "$tmpdir/pod2man" >&2; die "pod2man failed on 'vmdkit help --pod'"; }
fi

# One section per command, in the order of vmdkit --help.
grep '^=head2 ' "$tmpdir/pod" | sed 's/^=head2 vmdkit //' >"$tmpdir/pod-commands"
[[ "$(cat "$tmpdir/pod-commands")" == "$commands" ]] ||
  fail "the =head2 sections of the POD ($(tr '\n' ' ' <"$tmpdir/pod-commands")) are not the commands of vmdkit --help ($(tr '\n' ' ' <<<"$commands"))"

# POD text without markup.
plain() { sed -E ':a; s/[SBI]<([^<>]*)>/\1/g; ta; s/E<lt>/</g; s/E<gt>/>/g'; }

# run_opt CMD ARGS...: run vmdkit (no stdin, in an empty directory: no
# operand names a file, so nothing is created, changed or mounted).
mkdir -p "$tmpdir/empty"
vmdkit_abs=$(cd "$(dirname "$VMDKIT")" && pwd)/$(basename "$VMDKIT")
run_opt() {
  (cd "$tmpdir/empty" && "$vmdkit_abs" "$@" </dev/null >"$tmpdir/o-out" 2>"$tmpdir/o-err")
}

for c in $commands; do
  "$VMDKIT" $c --help >"$tmpdir/help" 2>"$tmpdir/help-err" || fail "$c --help: exit $?"
  [[ ! -s $tmpdir/help-err ]] || fail "$c --help wrote to stderr"
  # the section of this command, without markup
  awk -v c="=head2 vmdkit $c" '$0 == c {on = 1; next} /^=head2 / {on = 0} on' \
    "$tmpdir/pod" >"$tmpdir/section"

  # -- the options: "-f FMT", "--output=FORMAT", "-r, --read-only"
  sed -nE 's/^  (-[^ ,]+( [A-Z][A-Z0-9_]*)?(, --[^ ]+)?)( {2,}.*)?$/\1/p' \
    "$tmpdir/help" >"$tmpdir/help-opts"
  sed -n 's/^=item //p' "$tmpdir/section" | plain >"$tmpdir/pod-opts"
  [[ -s $tmpdir/help-opts ]] || fail "$c --help lists no options"
  if ! cmp -s "$tmpdir/help-opts" "$tmpdir/pod-opts"; then
    diff "$tmpdir/help-opts" "$tmpdir/pod-opts" | sed 's/^/    /' >&2 || true
    fail "$c: the options of --help (<) and of the POD (>) differ"
  fi
  for o in -h --help --confine; do
    grep -Eq -- "(^|, )$o( |,|$)" "$tmpdir/help-opts" || fail "$c --help does not list $o"
  done

  # -- the synopsis: the usage line(s) of --help, the POD's first paragraph
  usage=$(sed -n '1,/^$/p' "$tmpdir/help" | tr -s ' \n' '  ' | sed 's/^Usage: //; s/ *$//')
  synopsis=$(awk 'NF {print; exit}' "$tmpdir/section" | plain)
  [[ "$usage" == "$synopsis" ]] || fail "$c: usage '$usage' but POD synopsis '$synopsis'"

  # -- the parser takes each listed option, and its argument
  listed=" "
  while read -r label; do
    # "-f FMT" -> -f (takes an argument); "-r, --read-only" -> -r --read-only
    arg=
    [[ $label =~ [\ =]([A-Z][A-Z0-9_=]*)$ ]] && arg=${BASH_REMATCH[1]}
    for name in $(sed -E 's/,//g; s/=[A-Z][A-Z0-9_=]*$//; s/ [A-Z][A-Z0-9_]*$//' <<<"$label"); do
      listed+="$name "
      [[ $name == -h || $name == --help ]] && continue
      if [[ -n $arg ]]; then
        run_opt $c "$name" x || true
        if grep -Eq -- "(unknown option|does not take an argument|requires an argument).*'$name'" "$tmpdir/o-err"; then
          fail "$c $name x: $(cat "$tmpdir/o-err")"
        fi
        # without its argument (the last word): refused, one line
        run_opt $c "$name" && fail "$c $name (no argument): exit 0"
        grep -q -- "option '$name' requires an argument" "$tmpdir/o-err" ||
          fail "$c $name (no argument): $(cat "$tmpdir/o-err")"
      else
        run_opt $c "$name" || true
        if grep -Eq -- "(unknown option|requires an argument).*'$name'" "$tmpdir/o-err"; then
          fail "$c $name: $(cat "$tmpdir/o-err")"
        fi
        if [[ $name == --* ]]; then
          run_opt $c "$name=x" && fail "$c $name=x: exit 0"
          grep -q -- "option '$name' does not take an argument" "$tmpdir/o-err" ||
            fail "$c $name=x: $(cat "$tmpdir/o-err")"
        fi
      fi
    done
  done <"$tmpdir/help-opts"

  # -- every short option that is not listed is refused: one line, the
  #    command's usage-error status, nothing on stdout
  want=1
  [[ $c != compare ]] || want=2
  for l in {a..z} {A..Z}; do
    [[ $listed == *" -$l "* ]] && continue
    rc=0
    run_opt $c -$l || rc=$?
    if [[ $rc -ne $want || $(wc -l <"$tmpdir/o-err") -ne 1 || -s $tmpdir/o-out ]] ||
      ! grep -q "^vmdkit: $c: unknown option '-$l' (try 'vmdkit $c --help')$" "$tmpdir/o-err"; then
      fail "$c -$l (not in --help): exit $rc, $(cat "$tmpdir/o-err")"
    fi
  done
  rc=0
  run_opt $c --no-such-option || rc=$?
  [[ $rc -eq $want ]] &&
    grep -q "^vmdkit: $c: unknown option '--no-such-option' (try 'vmdkit $c --help')$" "$tmpdir/o-err" ||
    fail "$c --no-such-option: exit $rc, $(cat "$tmpdir/o-err")"
done

((fails == 0)) || die "$fails checks failed"
echo "all ok"
