#!/usr/bin/env bash
# Runs the loom models of the core (see loom-tests/tests/models.rs).
#
# The core is built with `--cfg ioasid_loom` (loom's atomics, cells and
# thread-locals) and crossbeam-epoch with `--cfg crossbeam_loom` (its loom
# build; the core turns on its `loom` feature under the same cfg). A target
# dir of its own keeps these builds from evicting the normal ones.
#
# Each model sets its own preemption bound; LOOM_MAX_PREEMPTIONS=<n>
# overrides all of them for a deeper run by hand. Extra arguments go to the
# test harness, e.g. `loom-tests/run.sh cyclic` runs one model.
#
# The whole run takes a few minutes on two
# shared cores, plus the first build of loom and the core in this cfg.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg ioasid_loom --cfg crossbeam_loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_LOOM:-target/loom}"
exec cargo test -p loom-tests --release --test models -- --nocapture --test-threads="${LOOM_TEST_THREADS:-1}" "$@"
