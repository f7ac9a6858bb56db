#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install the Debian packages vmdkit needs to build, test, fuzz and demo,
# when (and only when) some are missing.
#
# Contract:
#  - Quiet and fast (a dpkg-query per package, no network) when everything
#    is installed; exit 0.
#  - Otherwise: apt-get update, then apt-get install of the missing ones
#    only, non-interactively.  As root directly; as another user through
#    sudo when there is one; else print what is missing and exit 1.
#  - Exit 1 if anything is still missing afterwards.
#  - VMDKIT_SKIP_DEPS=1 skips everything (for machines that are not Debian
#    and have the tools some other way).
# Target: Debian 12 (bookworm); the names were checked with apt-cache policy.
set -euo pipefail

packages=(
  build-essential cmake pkg-config # compiler, make, build system
  libdeflate-dev zlib1g-dev        # deflate for streamOptimized grains
  libxml2-dev libssl-dev           # OVA: the OVF (libxml2), SHA-256 (libcrypto)
  libxml2-utils                    # xmllint: OVFs checked against the schema
  qemu-utils libvmdk-utils         # peers: qemu-img/qemu-io, vmdkinfo
  e2fsprogs                        # mkfs.ext4 -d for the demo and tests
  strace time python3 valgrind     # tests and bench helpers
  bindfs                           # bench case 7: a FUSE mount
  clang                            # libFuzzer builds
  libfuse3-dev fuse3               # the FUSE mount
  nbdkit nbdkit-plugin-dev         # the nbdkit plugin
  libnbd-bin libnbd-dev            # nbdinfo/nbdcopy peers
  perl man-db                      # pod2man/podchecker: the man pages
  bash-completion                  # tests of the bash completion
  abigail-tools                    # abidw/abidiff: the ABI baseline
  debhelper dpkg-dev fakeroot lintian # make deb and its tests
  python3-dev dh-python            # the Python module; python3-vmdkit (dh_python3)
  python3-pytest python3-libvmdk   # its tests: pytest, libvmdk's pyvmdk as a peer
  lighttpd lighttpd-mod-openssl    # remote-image tests: HTTP(S) server (tests/servers.sh)
  openssh-server openssl curl      # and an sshd; the test's certificate; curl checks
)

if [[ "${VMDKIT_SKIP_DEPS:-0}" == 1 ]]; then
  exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: no dpkg-query here (not Debian?); make sure the" \
    "equivalents of these are installed: ${packages[*]}" >&2
  exit 0
fi

# Prints the packages of "$@" that are not fully installed ("ii").
missing_of() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ "$status" == ii* ]] || printf '%s\n' "$p"
  done
}

mapfile -t missing < <(missing_of "${packages[@]}")
if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps: not root and no sudo; as root run:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"

mapfile -t still < <(missing_of "${packages[@]}")
if ((${#still[@]} != 0)); then
  echo "install-deps: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "install-deps: done"
