#!/usr/bin/env bash
# Runs every check and test of the project, in the order CI runs them.
# The README names this script as the test command; .ci/run calls it after
# installing prerequisites. The last lines are the test runner's summary.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "MSRV: the workspace builds with rust-version's toolchain"
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
if [[ $(rustc --version) == "rustc $msrv"* ]]; then
	echo "rustc is $msrv, the rust-version: every build below checks it"
elif cargo "+$msrv" --version >/dev/null 2>&1; then
	cargo "+$msrv" check --workspace --all-targets --locked
else
	echo "rustc is not $msrv and no $msrv toolchain is installed: MSRV not checked"
fi

step "format"
cargo fmt --all --check

step "clippy (all crates, all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p ioasid --all-targets --features serde -- -D warnings

step "demo (the main job), 3 seconds; its summary lines up; --help"
mkdir -p target
cargo run --profile ci --example pasid_demo -- --secs 3 | tee target/pasid_demo.out
bash scripts/check-example.sh summary target/pasid_demo.out
bash scripts/check-example.sh help pasid_demo

step "doc tests"
cargo test --profile ci --workspace --doc

step "C ABI: libraries, header drift, C harnesses plain, under valgrind, with ASan/UBSan"
# The ffi crate's Rust tests (header drift included) run in the nextest step.
FFI_SKIP_CARGO_TEST=1 bash ffi/tests/run.sh

step "C ABI benchmark smoke run (fails on wrong results, never on ratios); its plots"
mkdir -p target
bash benches/c/run.sh --smoke | tee target/cbench-smoke.md
cargo run --profile ci -p ioasid-benches --bin report -- --cbench target/cbench-smoke.md \
	--plot-dir target/cbench-smoke-plots

step "C library install: DESTDIR/PREFIX/LIBDIR/INCLUDEDIR, SONAME, pkg-config and CMake users, uninstall"
bash ffi/tests/install.sh

step "API docs of every crate (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "publish dry run of the core crate (packages and builds what would be uploaded)"
# Needs the registry's index; --allow-dirty lets a local run with edits pass.
cargo publish --dry-run -p ioasid --allow-dirty

step "benches: build and run every benchmark once; memory report smoke"
IOASID_BENCH_THREADS=1,2 cargo bench -p ioasid-benches -- --test
cargo run --profile ci -p ioasid-benches --bin memory -- --small

step "memory boundedness, 10M alloc/free cycles per policy"
IOASID_MEMORY_CYCLES=10000000 cargo test --profile ci -p ioasid --test memory_bound -- --nocapture

step "soak, 60 seconds, 16 threads"
cargo run --profile ci --example soak -- --secs 60 --threads 16 | tee target/soak.out
bash scripts/check-example.sh summary target/soak.out
bash scripts/check-example.sh help soak

step "Miri: core unit, API, regression, leak and notifier tests, Tree and Stacked Borrows"
bash scripts/miri.sh

step "loom models of the concurrent protocols (about 3 minutes)"
bash loom-tests/run.sh

step "snapshot round trips with the serde feature (the workspace run below has it off)"
cargo test --profile ci -p ioasid --features serde --test snapshot

step "fuzz the snapshot decoder, 30 seconds (libFuzzer on stable, fuzz/README.md)"
# The decoder's arbitrary-bytes proptest runs in the test step below either way.
if command -v c++ >/dev/null; then
	(
		cd fuzz
		RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
			cargo build --release --features libfuzzer --bin snapshot_decode \
			--target x86_64-unknown-linux-gnu --target-dir target/fuzz
		mkdir -p corpus/snapshot_decode artifacts
		./target/fuzz/x86_64-unknown-linux-gnu/release/snapshot_decode corpus/snapshot_decode \
			-max_total_time=30 -max_len=4096 -timeout=20 -artifact_prefix=artifacts/
	)
else
	echo "no C++ compiler to build libFuzzer: the snapshot decoder is not fuzzed here" \
		"(its arbitrary-bytes proptest still runs below)"
fi

step "unit, integration and property tests"
cargo nextest run --workspace --cargo-profile ci --no-fail-fast
