#!/bin/bash
# A libFuzzer campaign over the fuzz targets (tests/fuzz/), for a developer's machine: not
# part of the test suite, which replays the committed corpora (tests/fuzz/corpus/TARGET/)
# under CTest in both of its builds.
#
#   scripts/fuzz.sh [-t SECONDS] [-j JOBS] [TARGET...]
#
# Builds the `fuzz` preset (clang, libFuzzer + ASan + UBSan) into build/fuzz, then runs each
# target (default: all) for SECONDS (default 120), JOBS at a time (default: the CPUs), each
# on a scratch copy of its corpus in build/fuzz/campaign/TARGET/ (the committed corpus is
# not touched: add an input found there with a reason, not the whole scratch corpus).
# Crashes, leaks and timeouts land in build/fuzz/campaign/TARGET/crashes/; the script exits 1
# when there is any, naming them.
set -euo pipefail

cd "$(dirname "$0")/.."
secs=120
jobs=$(nproc)
while getopts "t:j:h" o; do
	case $o in
	t) secs=$OPTARG ;;
	j) jobs=$OPTARG ;;
	*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
# (libFuzzer takes -max_total_time=0 as "no limit")
[[ $secs =~ ^[1-9][0-9]*$ && $jobs =~ ^[1-9][0-9]*$ ]] ||
	{ echo "fuzz.sh: -t and -j take positive numbers" >&2; exit 2; }

cmake --preset fuzz >/dev/null
cmake --build build/fuzz -j"$(nproc)" >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
for t in "${targets[@]}"; do
	[ -x "build/fuzz/tests/$t" ] || { echo "fuzz.sh: no target $t (tests/fuzz/$t.c)" >&2; exit 2; }
done

run() {
	local t=$1 d=build/fuzz/campaign/$1
	rm -rf "$d"
	mkdir -p "$d/corpus" "$d/crashes"
	if [ -d "tests/fuzz/corpus/$t" ]; then cp -r "tests/fuzz/corpus/$t/." "$d/corpus/"; fi
	local rc=0
	"build/fuzz/tests/$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
		-artifact_prefix="$d/crashes/" "$d/corpus" >"$d/log" 2>&1 || rc=$?
	local runs
	runs=$(grep -Eo '^#[0-9]+' "$d/log" | tail -1 | tr -d '#')
	printf '%-24s %10s runs  exit %d  %d finding(s)\n' "$t" "${runs:-0}" "$rc" \
		"$(find "$d/crashes" -type f | wc -l)"
}

[ "$jobs" -le ${#targets[@]} ] || jobs=${#targets[@]}
echo "fuzzing ${#targets[@]} target(s), ${secs} s each, ${jobs} at a time"
active=0
for t in "${targets[@]}"; do
	run "$t" &
	active=$((active + 1))
	if [ "$active" -ge "$jobs" ]; then
		wait -n || true
		active=$((active - 1))
	fi
done
wait
found=$(for t in "${targets[@]}"; do find "build/fuzz/campaign/$t/crashes" -type f; done | sort)
if [ -n "$found" ]; then
	echo "findings (reproduce: build/fuzz/tests/TARGET FILE):"
	echo "$found"
	exit 1
fi
echo "no findings"
