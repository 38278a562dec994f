#!/usr/bin/env bash
# Runs the core's unit, API, regression and leak tests under Miri, once with
# Tree Borrows and once with Stacked Borrows. Miri's leak check is on (its
# default): tests that use their own Domain must free everything. Iteration
# counts shrink under cfg(miri), keeping each run to a few minutes on 2 cores.
# Permissive provenance: the packed entry word carries pointers with exposed
# provenance on purpose (src/entry.rs, "Provenance").
# Without a nightly toolchain with Miri, says so and succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "Miri unavailable: skipped"
  exit 0
fi
# The API tests that exercise guards, domains, deferred drops and payload
# ownership (the others walk thousands of IDs: hours under Miri).
api_tests=(every_value_is_dropped_exactly_once synchronize_ a_guard_of_another_domain
  deferred_drops_may_pin set_data_replaces foreign_sets_are_refused unit_data_round_trips
  dropping_a_set_frees quota_counts_live_ids)
for model in "-Zmiri-tree-borrows" ""; do
  echo "--- Miri ${model:-(Stacked Borrows)}"
  export MIRIFLAGS="$model -Zmiri-permissive-provenance"
  cargo +nightly miri test -q -p ioasid --lib --test leaks
  cargo +nightly miri test -q -p ioasid --test regressions guard_of_a_dropped_domain
  cargo +nightly miri test -q -p ioasid --test api -- "${api_tests[@]}"
done
