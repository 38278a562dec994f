#!/usr/bin/env bash
# The C ABI's whole check, for CI and by hand (from any directory):
#   1. builds libioasid.a / libioasid.so (make -C ffi lib, into target/c);
#   2. runs the ffi crate's Rust tests, among them the header drift check
#      (include/ioasid.h regenerated with the pinned cbindgen must equal the
#      committed one), and compiles the header as C11 and C++;
#   3. builds the C harnesses and runs them normally, then under
#      valgrind --error-exitcode=1 --leak-check=full with definite and
#      possible leaks as errors, then rebuilt with
#      -fsanitize=address,undefined (LeakSanitizer on). Each harness frees
#      everything, checks the live counts, and drains deferred frees before
#      it exits (check_report), so a leak of the library is reported;
#   4. compiles and runs the example of README.md, linked with the
#      shared and with the static library.
# Ends with "N passed, N failed" (the C checks of every run) and exits
# non-zero on any failure. Needs cargo, gcc, g++, make and valgrind.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ffi=$(cd "$here/.." && pwd)
root=$(cd "$ffi/.." && pwd)
cd "$root"

# 200000 alloc/free steps per thread normally, fewer under valgrind
# (which runs the threads one at a time, some 50 times slower).
THREAD_STEPS=${THREAD_STEPS:-200000}
THREAD_STEPS_VALGRIND=${THREAD_STEPS_VALGRIND:-20000}

total_passed=0
total_failed=0
steps_failed=()

step() { echo; echo "== $*"; }
fail_step() { steps_failed+=("$1"); echo "FAILED: $1"; }

# Runs one harness binary (with an optional runner in front) and adds its
# "name: N passed, M failed" line to the totals. A harness that fails without
# a failed check (a crash, a valgrind or sanitizer error) counts as one
# failed check.
run_harness() {
	local label=$1
	shift
	local out rc line passed failed
	out=$("$@" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	line=$(printf '%s\n' "$out" | grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed$' | tail -1)
	passed=0
	failed=0
	if [[ -n $line ]]; then
		passed=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
		failed=$(sed -E 's/.*, ([0-9]+) failed/\1/' <<<"$line")
	fi
	if ((rc != 0 && failed == 0)); then
		failed=1
		echo "$label: exited with status $rc"
	fi
	total_passed=$((total_passed + passed))
	total_failed=$((total_failed + failed))
	((rc == 0 && failed == 0)) || fail_step "$label"
}

run_all() {
	local variant=$1
	shift
	local t bin args
	for t in kernel allocator rfc ext threads vcmd compat refs notify sets spid snapshot guest_sva; do
		bin="ffi/tests/build/$variant/test_$t"
		args=()
		if [[ $t == threads || $t == vcmd ]]; then
			args=("$THREAD_STEPS")
			[[ $variant == valgrind ]] && args=("$THREAD_STEPS_VALGRIND")
		fi
		run_harness "$variant/$t" "$@" "$bin" "${args[@]}"
	done
}

# Stale harness binaries must never stand in for ones that failed to build.
rm -rf ffi/tests/build

step "build libioasid (release), staged in target/c"
make -s -C ffi lib || fail_step "make -C ffi lib"

step "Rust tests of the ffi crate, header drift check"
# FFI_SKIP_CARGO_TEST=1 skips them where the workspace's test run (nextest)
# has just run the same tests.
if [[ ${FFI_SKIP_CARGO_TEST:-0} != 1 ]]; then
	cargo test -p ioasid-ffi || fail_step "cargo test -p ioasid-ffi (header drift?)"
fi
make -s -C ffi header-check || fail_step "header compiles as C11 and C++"

step "C harnesses"
make -s -C ffi harnesses VARIANT=plain || fail_step "build harnesses"
run_all plain

step "C harnesses under valgrind"
if command -v valgrind >/dev/null; then
	# The same binaries; valgrind's build dir name only labels the run.
	mkdir -p ffi/tests/build/valgrind
	cp ffi/tests/build/plain/test_* ffi/tests/build/valgrind/
	run_all valgrind valgrind -q --error-exitcode=1 --leak-check=full --child-silent-after-fork=yes \
		--errors-for-leak-kinds=definite,possible
else
	fail_step "valgrind is not installed"
fi

step "C harnesses with -fsanitize=address,undefined"
make -s -C ffi harnesses VARIANT=asan \
	SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" ||
	fail_step "build sanitizer harnesses"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	run_all asan

step "README example, shared and static"
mkdir -p ffi/tests/build/example
awk '/^```c$/ { on = 1; next } /^```$/ { on = 0 } on' README.md >ffi/tests/build/example/example.c
if [[ -s ffi/tests/build/example/example.c ]] &&
	gcc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude ffi/tests/build/example/example.c \
		-o ffi/tests/build/example/shared -Ltarget/c -lioasid -lpthread &&
	LD_LIBRARY_PATH=target/c ffi/tests/build/example/shared &&
	gcc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude ffi/tests/build/example/example.c \
		-o ffi/tests/build/example/static target/c/libioasid.a -lpthread -lm -ldl -lrt -lutil &&
	ffi/tests/build/example/static; then
	:
else
	fail_step "README example"
fi

echo
if ((${#steps_failed[@]})); then
	echo "failed steps: ${steps_failed[*]}"
fi
echo "$total_passed passed, $total_failed failed"
((${#steps_failed[@]} == 0 && total_failed == 0))
