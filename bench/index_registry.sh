#!/bin/bash
# isorun-index build REF (layers streamed from the loopback registry) vs build oci:LAYOUT (the
# same image already on disk), side by side in one hyperfine run, fresh store each run.
# Target (issue 3): no slower than 1.2x. Writes bench/results/index_registry.md.
#   bench/index_registry.sh [IMAGE (default python)] [RUNS (default 5)]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
IMAGE=${1:-python}
RUNS=${2:-5}
BIN=${ISORUN_BIN:-build/release/tools}
[ -x "$BIN/isorun-index" ] || die "build isorun first (cmake --preset release && cmake --build build/release)"
bench/registry.sh start >/dev/null
REF=$BENCH_LO_ADDR/idxbench/$IMAGE:v1
skopeo copy -q --dest-tls-verify=false "oci:$BENCH_WORK/oci:$IMAGE" "docker://$REF"
STORE=$(mktemp -d /tmp/isorun-idxreg.XXXXXX)
trap 'rm -rf "$STORE"' EXIT
out=bench/results/index_registry.md
load=$(cut -d' ' -f1-3 /proc/loadavg)
hyperfine -N -w 1 -r "$RUNS" -p "rm -rf $STORE/s" \
	-n "isorun-index build oci:LAYOUT" "$BIN/isorun-index --root $STORE/s build oci:$BENCH_WORK/oci:$IMAGE" \
	-n "isorun-index build REF (registry)" "$BIN/isorun-index --root $STORE/s build --force $REF" \
	--export-markdown "$STORE/table.md" >/dev/null
{
	echo "# isorun-index build from the registry vs from a layout on disk"
	echo
	echo "Image \`$IMAGE\` of bench/images.sh; registry: Debian's docker-registry on loopback."
	echo "$(date -u +%F), 2 cores, load average at the start $load; hyperfine, $RUNS runs, fresh store each."
	echo "Reproduce: \`bench/index_registry.sh $IMAGE $RUNS\`. Target: registry ≤ 1.2× layout."
	echo
	cat "$STORE/table.md"
} >"$out"
cat "$out"
