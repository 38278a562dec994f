#!/usr/bin/env bash
# Runs every check and test of the project, in the order CI runs them.
# The README names this script as the test command; .ci/run calls it after
# installing prerequisites. The last lines are the test runner's summary.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "clippy (all crates, all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "demo (the main job), 3 seconds"
cargo run --profile ci --example pasid_demo -- --secs 3

step "doc tests"
cargo test --profile ci --workspace --doc

step "C ABI: libraries, header drift, C harnesses plain, under valgrind, with ASan/UBSan"
# The ffi crate's Rust tests (header drift included) run in the nextest step.
FFI_SKIP_CARGO_TEST=1 bash ffi/tests/run.sh

step "benches: build and run every benchmark once; memory report smoke"
IOASID_BENCH_THREADS=1,2 cargo bench -p ioasid-benches -- --test
cargo run --profile ci -p ioasid-benches --bin memory -- --small

step "memory boundedness, 10M alloc/free cycles per policy"
IOASID_MEMORY_CYCLES=10000000 cargo test --profile ci -p ioasid --test memory_bound -- --nocapture

step "soak, 60 seconds, 16 threads"
cargo run --profile ci --example soak -- --secs 60 --threads 16

step "loom models of the concurrent protocols (about 3 minutes)"
bash loom-tests/run.sh

step "unit, integration and property tests"
cargo nextest run --workspace --cargo-profile ci --no-fail-fast
