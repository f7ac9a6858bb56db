# SPDX-License-Identifier: BSD-3-Clause
# Sourced by tests/package/*.sh.  header_functions HEADER: the names of the
# functions HEADER declares with VMDK_API, sorted, one a line.  Comments
# and preprocessor lines are removed first; a declaration may span lines;
# the name is the identifier right before the first "(" after VMDK_API.
header_functions() {
  perl -0777 -ne 's{/\*.*?\*/}{ }gs; s{//[^\n]*}{}g; s{^[ \t]*#[^\n]*}{}gm;
    while (/\bVMDK_API\b([^;{]*?)\b([A-Za-z_]\w*)\s*\(/g) { print "$2\n" }' "$1" |
    LC_ALL=C sort -u
}
