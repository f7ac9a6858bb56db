#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The public header compiles alone as C11 and, when a C++ compiler exists, as C++.
set -e
h="$1"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
printf '#include "%s"\nint main(void){return (int)sizeof(struct vmdk_run) == 0;}\n' "$h" > "$t/a.c"
cc -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only "$t/a.c"
if command -v c++ >/dev/null 2>&1; then
  cp "$t/a.c" "$t/a.cpp"
  c++ -Wall -Wextra -Werror -fsyntax-only "$t/a.cpp"
fi
echo "header compiles standalone"
