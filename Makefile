# SPDX-License-Identifier: BSD-3-Clause
# Thin driver around CMake/CTest.  The real build is CMakeLists.txt.
#
#   make            same as `make build`
#   make build      install missing Debian packages, configure build/
#                   (RelWithDebInfo) and build; the CLI is build/vmdkit
#   make asan       the same in build-asan/ with ASan + UBSan
#   make check      build both, run every test in build/ and the unit and
#                   interop tests in build-asan/
#   make demo       build, then run scripts/demo.sh on a sample ext4 disk
#   make deps       only install missing Debian packages
#   make mutants    plant each bug of tests/mutants/*.patch in a copy of the
#                   tree and check that the tests catch it (not part of
#                   check; ~4 min per mutant).  MUTANTS=a,b picks some,
#                   CTEST_ARGS='-R name' restricts the tests, MUTANT_TIMEOUT
#                   (s) bounds each run; the result goes to docs/MUTANTS.md
#   make install    build, then install into $(DESTDIR)$(PREFIX): the CLI,
#                   libvmdkit.so.0 and libvmdkit.a, vmdkit.h, vmdkit.pc, the
#                   CMake package, the nbdkit plugin, the Python module
#                   (for /usr/bin/python3, on its sys.path for the prefix:
#                   python/CMakeLists.txt), man pages and bash
#                   completion.  PREFIX defaults to /usr/local; DESTDIR
#                   stages the files elsewhere (for packaging)
#   make uninstall  remove what the last `make install` installed (pass the
#                   same DESTDIR: CMake's manifest names the files without it)
#   make deb        build the Debian packages into build-deb/ (debian/)
#   make abi-update record the current ABI as the baseline abi/libvmdkit.abi
#                   (on purpose only: tests/package/abi.sh compares with it)
#   make clean      remove build/, build-asan/ and build-deb/
#
# JOBS sets the build and test parallelism (the machines have 2 cores).

JOBS       ?= 2
BUILD      ?= build
BUILD_ASAN ?= build-asan
CMAKE      ?= cmake
CTEST      ?= ctest
PREFIX     ?= /usr/local
DESTDIR    ?=

# Sanitizer settings for the ASan test run.
SAN_ENV = ASAN_OPTIONS=detect_leaks=1 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# ctest: fail on an empty test set, too; a run that tests nothing is a
# failure, not a pass.
CTEST_FLAGS = --output-on-failure --no-tests=error -j$(JOBS)

.DEFAULT_GOAL := build
.PHONY: build deps asan check demo clean mutants install uninstall deb abi-update

deps:
	@bash scripts/install-deps.sh

# Configuring an existing tree is cheap and picks up new source files.
# (cmake --build runs its own make; MAKEFLAGS is cleared so an outer `make -jN`
# does not leak a jobserver it cannot use into it.)
build: deps
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	MAKEFLAGS= $(CMAKE) --build $(BUILD) -j$(JOBS)

asan: deps
	$(CMAKE) -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DVMDKIT_SANITIZE=ON
	MAKEFLAGS= $(CMAKE) --build $(BUILD_ASAN) -j$(JOBS)

# Both test runs print ctest's summary ("100% tests passed, 0 tests failed
# out of N"); make stops with a non-zero exit at the first run that fails.
check: deps build asan
	cd $(BUILD) && $(CTEST) $(CTEST_FLAGS)
	cd $(BUILD_ASAN) && $(SAN_ENV) $(CTEST) $(CTEST_FLAGS) -L 'unit|interop'

demo: deps build
	VMDKIT=$(abspath $(BUILD))/vmdkit bash scripts/demo.sh

# Not part of `check`: it builds and tests the tree once per mutant.
mutants: deps
	MUTANTS='$(MUTANTS)' CTEST_ARGS='$(CTEST_ARGS)' MUTANT_TIMEOUT='$(MUTANT_TIMEOUT)' \
	  JOBS=$(JOBS) bash tests/mutants/run.sh

# The prefix is configured into the tree (vmdkit.pc, the CMake package and
# RUNPATHs name it); DESTDIR only moves where the files are written.  When
# installing for real as root, ldconfig makes the new library known.
install: deps
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	MAKEFLAGS= $(CMAKE) --build $(BUILD) -j$(JOBS)
	DESTDIR='$(DESTDIR)' $(CMAKE) --install $(BUILD)
	@if [ -z '$(DESTDIR)' ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	@test -f $(BUILD)/install_manifest.txt || { echo "uninstall: no $(BUILD)/install_manifest.txt (nothing installed from $(BUILD))" >&2; exit 1; }
	sed 's|^|$(DESTDIR)|' $(BUILD)/install_manifest.txt | xargs -d '\n' rm -f --

deb: deps
	bash scripts/make-deb.sh build-deb

abi-update: build
	bash tests/package/abi.sh --update . $(BUILD)/libvmdkit.so.0

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-deb
