#!/bin/bash
# The whole test suite: builds isorun twice (warnings as errors; then ASan+UBSan) and runs
# every CTest entry (unit, fuzz-corpus replay, integration) in both builds.
# Usage: scripts/test.sh [--no-asan] [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
asan=1
if [ "${1:-}" = "--no-asan" ]; then asan=0; shift; fi
jobs=$(nproc)

run() {
	local dir=$1; shift
	cmake -S . -B "$dir" -DISORUN_WERROR=ON "$@" >/dev/null
	cmake --build "$dir" -j"$jobs"
	ctest --test-dir "$dir" --output-on-failure -j"$jobs" "${CTEST_ARGS[@]}"
}
CTEST_ARGS=("$@")
run build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "$asan" = 1 ]; then
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		run build/asan -DCMAKE_BUILD_TYPE=Debug -DISORUN_SANITIZE=ON
fi
