#!/usr/bin/env bash
# Builds the release library and cbench, then runs the C ABI table.
#
#   bash benches/c/run.sh                 full table: 1,2,4,8,16 threads, 300 ms, 3 reps
#   bash benches/c/run.sh --smoke         the short run CI does (fails on errors only)
#   bash benches/c/run.sh --threads 1,2 --ms 500 --reps 5 --workloads lowest,hot
#
# Arguments go to cbench (see the top of cbench.c). Prints the commit, the
# machine and the load first, since the numbers mean little without them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

cargo build --release -p ioasid-ffi
make -s -C benches/c NOLIB=1

echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src ffi 2>/dev/null || echo ' (src or ffi modified)')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
benches/c/build/cbench "$@"
