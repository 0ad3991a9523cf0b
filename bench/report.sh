#!/bin/bash
# Assembles docs/benchmarks.md from the latest result pages in bench/results/ (each written
# by the benchmark script named in it). Run after any benchmark; commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/benchmarks.md
{
	cat <<'HDR'
# Benchmarks

Every number here is a ratio against what users do today or against the floor, measured side
by side in one run on one machine (2 cores, 24 GiB, Debian 12; the machine is named in each
section with its load). Absolute times move with the machine; the ratios are the claims.
Each section names the script that produced it: rerun it, then `bench/report.sh` to rebuild
this page.

| what | script | section |
|---|---|---|
| time to first command: full pull vs isorun, per image, loopback and WAN | `bench/run.sh`, `bench/plot.sh` | [Time to first command](#time-to-first-command) |
| indexer speed vs `umoci unpack`, shared-base dedup, peak RSS, CDC sizes | `bench/index_bench.sh` | [Indexer](#indexer) |
| full layer pull vs `skopeo copy` | `bench/registry_pull.sh` | [Registry pull](#registry-pull) |
| indexing straight from the registry vs from a layout on disk | `bench/index_registry.sh` | [Indexing from a registry](#indexing-from-a-registry) |
| lazy filesystem: cold starts, bytes fetched vs touched, sequential read, daemon RSS | `bench/fs_bench.sh` | [Filesystem](#filesystem) |
| sandbox start, exec round trip, memory per sandbox | `bench/sandbox_bench.sh` | [Sandboxes](#sandboxes) |
| `isorun cp` of directories vs a tar stream through exec vs `cp -a` | `bench/cp_bench.sh` | [Copying directories](#copying-directories) |

HDR
	section() { # TITLE FILE
		echo
		echo "## $1"
		echo
		if [ -f "$2" ]; then
			# drop the page's own H1, demote its headings, point images at bench/results/
			sed -e '1{/^# /d}' -e 's/^## /### /' -e 's/^### \(.*\)$/### \1/' \
				-e 's|](\([a-z_]*\.png\))|](../bench/results/\1)|g' "$2"
		else
			echo "_No results yet: run the script above._"
		fi
	}
	section "Time to first command" bench/results/harness.md
	section "Indexer" bench/results/index.md
	section "Registry pull" bench/results/registry_pull.md
	section "Indexing from a registry" bench/results/index_registry.md
	section "Filesystem" bench/results/fs.md
	section "Sandboxes" bench/results/sandbox.md
	section "Copying directories" bench/results/cp.md
} >"$out"
echo "wrote $out"
