#!/usr/bin/env bash
# Installs libioasid the way a distribution package would and uses it as a
# downstream project would:
#   1. `make -C ffi install` into a DESTDIR staging root with PREFIX, LIBDIR
#      and INCLUDEDIR all moved off their defaults; checks the versioned
#      shared library, its SONAME and links, and that the .pc version is the
#      ffi crate's;
#   2. builds the README's C example with nothing but pkg-config's flags
#      (no -I or -L of the source tree), checks it needs libioasid.so.MAJOR
#      and runs it from the staged tree;
#   3. where cmake is installed: a CMake project finds the library both with
#      find_package(ioasid) and with pkg_check_modules, builds and runs the
#      example each way (installed with PREFIX only, no DESTDIR, since CMake
#      package files hold final paths);
#   4. `make -C ffi uninstall` with the same variables leaves no file.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "install test: $*" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

version=$(cargo pkgid -p ioasid-ffi | sed 's/.*[#@]//')
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "no crate version (got '$version')"
major=${version%%.*}
[[ $(make -s -C ffi version) == "$version" ]] || fail "the Makefile's version is not the crate's $version"

awk '/^```c$/ { on = 1; next } /^```$/ { on = 0 } on' README.md >"$tmp/example.c"
[[ -s $tmp/example.c ]] || fail "no C example in README.md"

# 1. Staged install.
stage=$tmp/stage
vars=(DESTDIR="$stage" PREFIX=/opt/ioasid LIBDIR=/opt/ioasid/lib64 INCLUDEDIR=/opt/ioasid/include/ioasid)
make -s -C ffi install "${vars[@]}"
lib=$stage/opt/ioasid/lib64
[[ -f $lib/libioasid.so.$version && ! -L $lib/libioasid.so.$version ]] || fail "no libioasid.so.$version"
[[ $(readlink "$lib/libioasid.so.$major") == "libioasid.so.$version" ]] || fail "libioasid.so.$major does not link libioasid.so.$version"
[[ $(readlink "$lib/libioasid.so") == "libioasid.so.$major" ]] || fail "libioasid.so does not link libioasid.so.$major"
[[ -f $lib/libioasid.a ]] || fail "no libioasid.a"
[[ -f $stage/opt/ioasid/include/ioasid/ioasid.h ]] || fail "ioasid.h not in INCLUDEDIR"
readelf -d "$lib/libioasid.so.$version" | grep -q "SONAME.*\[libioasid\.so\.$major\]" || fail "SONAME is not libioasid.so.$major"
[[ ! -e $stage/usr ]] || fail "something was installed outside PREFIX"

# 2. pkg-config only. The sysroot prefixes -I/-L with the staging root.
pc() { PKG_CONFIG_LIBDIR=$lib/pkgconfig PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=$stage pkg-config "$@" ioasid; }
[[ $(pc --modversion) == "$version" ]] || fail "ioasid.pc has version $(pc --modversion), not $version"
grep -qx 'libdir=/opt/ioasid/lib64' "$lib/pkgconfig/ioasid.pc" || fail "ioasid.pc names another libdir"
# shellcheck disable=SC2046 # the flags are words
gcc -std=c11 -Wall -Wextra -Werror -pedantic $(pc --cflags) "$tmp/example.c" -o "$tmp/example" $(pc --libs)
readelf -d "$tmp/example" | grep -q "NEEDED.*\[libioasid\.so\.$major\]" || fail "the example does not need libioasid.so.$major"
LD_LIBRARY_PATH=$lib "$tmp/example" >"$tmp/out" || fail "the example failed"
grep -q -- "-> pid 5678" "$tmp/out" || fail "unexpected example output: $(cat "$tmp/out")"
echo "pkg-config: built and ran the README example against $version"

# 4 (staged). Uninstall leaves nothing but directories.
make -s -C ffi uninstall "${vars[@]}"
left=$(find "$stage" ! -type d)
[[ -z $left ]] || fail "uninstall left: $left"

# 3. CMake, both ways.
if command -v cmake >/dev/null; then
	prefix=$tmp/prefix
	make -s -C ffi install PREFIX="$prefix"
	mkdir -p "$tmp/cmake"
	cp "$tmp/example.c" "$tmp/cmake/"
	cat >"$tmp/cmake/CMakeLists.txt" <<-CMAKE
		cmake_minimum_required(VERSION 3.13)
		project(ioasid_user C)
		find_package(ioasid $major.${version#*.} REQUIRED)
		add_executable(with_config example.c)
		target_link_libraries(with_config PRIVATE ioasid::ioasid)
		find_package(PkgConfig REQUIRED)
		pkg_check_modules(IOASID REQUIRED IMPORTED_TARGET ioasid=$version)
		add_executable(with_pkgconfig example.c)
		target_link_libraries(with_pkgconfig PRIVATE PkgConfig::IOASID)
	CMAKE
	PKG_CONFIG_LIBDIR=$prefix/lib/pkgconfig cmake -S "$tmp/cmake" -B "$tmp/cmake/build" \
		-DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 ||
		{ cat "$tmp/cmake.log"; fail "cmake configure"; }
	cmake --build "$tmp/cmake/build" >>"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "cmake build"; }
	for exe in with_config with_pkgconfig; do
		LD_LIBRARY_PATH=$prefix/lib "$tmp/cmake/build/$exe" | grep -q -- "-> pid 5678" || fail "cmake's $exe failed"
	done
	make -s -C ffi uninstall PREFIX="$prefix"
	left=$(find "$prefix" ! -type d)
	[[ -z $left ]] || fail "uninstall left: $left"
	echo "cmake: find_package(ioasid) and pkg_check_modules(ioasid) built and ran the example"
else
	echo "cmake: not installed, CMake check skipped"
fi
echo "install test: ok"
