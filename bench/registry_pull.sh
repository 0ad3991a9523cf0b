#!/bin/bash
# Full-pull throughput of the registry client against skopeo, from a loopback registry.
#
#   bench/registry_pull.sh [--image NAME] [--runs N] [--reg-tool PATH]
#
# The image (default: browser, 2 layers, ~580 MiB compressed) comes from bench/work/oci,
# built by bench/images.sh when missing. It is pushed to a registry of our own
# (tests/fixtures/registry.sh, a free port, storage under bench/work/registry-pull), then
# hyperfine times, alternately and after a warm-up run each:
#   skopeo copy docker://… oci:OUT      (skopeo's full pull into an OCI layout)
#   reg-tool pull …  OUT                (reg_client_pull_blobs into an OCI layout)
# Both write every blob to disk and verify every digest; the two layouts are compared blob
# by blob afterwards. Results: bench/results/registry_pull.md (committed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
IMAGE=browser
RUNS=5
REG_TOOL=
while [ $# -gt 0 ]; do
	case $1 in
	--image) IMAGE=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--reg-tool) REG_TOOL=$2; shift ;;
	-h | --help) sed -n '2,14p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
for t in skopeo hyperfine docker-registry python3; do
	command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
if [ -z "$REG_TOOL" ]; then
	for c in "${ISORUN_BUILD_DIR:-}/tests/reg-tool" build/ci/tests/reg-tool build/h-registry/tests/reg-tool; do
		[ -x "$c" ] && { REG_TOOL=$(readlink -f "$c"); break; }
	done
fi
[ -x "$REG_TOOL" ] || { echo "reg-tool not built (cmake --build BUILD --target reg-tool)" >&2; exit 1; }

WORK=${ISORUN_BENCH_WORK:-$ROOT/bench/work}
LAYOUT=$WORK/oci
if ! { [ -f "$LAYOUT/index.json" ] && grep -q "\"$IMAGE\"" "$LAYOUT/index.json"; }; then
	bench/images.sh --only "$IMAGE" --no-push
fi

REG=$WORK/registry-pull
OUT=$(mktemp -d /tmp/isorun-bench-pull.XXXXXX)
cleanup() { tests/fixtures/registry.sh stop "$REG" || true; rm -rf "$OUT"; }
trap cleanup EXIT
port=$(tests/fixtures/registry.sh start "$REG")
H=127.0.0.1:$port
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$LAYOUT:$IMAGE" "docker://$H/bench/$IMAGE:b1"

layers=$("$REG_TOOL" resolve "$H/bench/$IMAGE:b1" | grep -c '^layer')
bytes=$("$REG_TOOL" resolve "$H/bench/$IMAGE:b1" | awk '/^layer|^config/ {s+=$3} END {print s}')
echo "image $IMAGE: $layers layers, $((bytes / 1048576)) MiB of blobs"

hyperfine --warmup 1 --runs "$RUNS" --style basic \
	--prepare "rm -rf $OUT/skopeo $OUT/isorun" \
	--export-markdown "$OUT/table.md" --export-json "$OUT/result.json" \
	-n "skopeo copy" "skopeo copy -q --src-tls-verify=false docker://$H/bench/$IMAGE:b1 oci:$OUT/skopeo:b1" \
	-n "isorun (reg_client_pull_blobs)" "$REG_TOOL pull $H/bench/$IMAGE:b1 $OUT/isorun"

# both layouts must hold the same, verified blobs (hyperfine's prepare removed one of them)
rm -rf "$OUT/skopeo" "$OUT/isorun"
skopeo copy -q --src-tls-verify=false "docker://$H/bench/$IMAGE:b1" "oci:$OUT/skopeo:b1"
"$REG_TOOL" pull "$H/bench/$IMAGE:b1" "$OUT/isorun" >/dev/null
n=0
for b in "$OUT"/skopeo/blobs/sha256/*; do
	cmp -s "$b" "$OUT/isorun/blobs/sha256/$(basename "$b")" || { echo "blob $(basename "$b") differs" >&2; exit 1; }
	n=$((n + 1))
done
[ "$n" -ge $((layers + 2)) ] || { echo "only $n blobs compared" >&2; exit 1; }

mkdir -p bench/results
{
	echo "# Full pull from a loopback registry: isorun vs skopeo"
	echo
	echo "Image \`$IMAGE\` of bench/images.sh: $layers layers, $((bytes / 1048576)) MiB of compressed blobs,"
	echo "served by Debian's docker-registry 2.8 on 127.0.0.1 (storage in the page cache after the"
	echo "warm-up). Both tools write an OCI image layout to /tmp and verify every digest; the two"
	echo "layouts were compared blob by blob. $(nproc) cores, $(date -u +%Y-%m-%d), hyperfine, $RUNS runs."
	echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other builds ran)."
	echo "Reproduce: \`bench/registry_pull.sh --image $IMAGE --runs $RUNS\`."
	echo
	cat "$OUT/table.md"
	python3 - "$OUT/result.json" "$bytes" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
b = int(sys.argv[2])
print()
for x in r:
    print("- %s: %.0f MiB/s (mean)" % (x["command"], b / x["mean"] / 1048576))
s, i = r[0]["mean"], r[1]["mean"]
print("- isorun / skopeo time ratio: %.2f" % (i / s))
PY
} >bench/results/registry_pull.md
cat bench/results/registry_pull.md
