#!/bin/bash
# Renders a bench/run.sh result file.
#
#   bench/plot.sh [RESULT.json] [--png OUT.png]   bar chart of time-to-first-command per image,
#                                                 network and method (gnuplot, log scale)
#   bench/plot.sh --table [RESULT.json]           the text table run.sh prints
#   bench/plot.sh --markdown [RESULT.json]        the same as Markdown tables
#   bench/plot.sh --report [RESULT.json]          the committed final results: harness.json,
#                                                 ttfc.png and harness.md in bench/results/
#
# RESULT.json defaults to bench/results/latest.json; OUT.png to bench/results/ttfc.png.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MODE=png
INS=()
PNG=$BENCH_RESULTS/ttfc.png
while [ $# -gt 0 ]; do
	case $1 in
	--table) MODE=table ;;
	--markdown) MODE=markdown ;;
	--report) MODE=report ;;
	--png) PNG=$2; shift ;;
	-h | --help) sed -n '2,10p' "$0"; exit 0 ;;
	*) INS+=("$1") ;;
	esac
	shift
done
[ ${#INS[@]} -gt 0 ] || INS=("$BENCH_RESULTS/latest.json")
for f in "${INS[@]}"; do [ -f "$f" ] || die "no result file $f (run bench/run.sh first)"; done
require_cmds jq awk
if [ ${#INS[@]} = 1 ]; then
	IN=${INS[0]}
else
	# Several runs (e.g. the browser image run apart): one document, the first run's metadata,
	# every run's images, commands and results; the fewest repetitions is the one reported.
	MERGED=$(mktemp)
	trap 'rm -f "$MERGED"' EXIT
	IN=$MERGED
	jq -s 'def order: . as $i | ["minimal", "python", "python-zstd", "browser"] | index($i) // 99;
		.[0] + {images: (map(.images) | add | unique_by(.name) | sort_by(.name | order)),
		commands: (map(.commands) | add | sort_by(.image | order)), results: (map(.results) | add),
		networks: (map(.networks) | add | unique), repetitions: (map(.repetitions) | min),
		date: (map(.date) | join(", ")), notes: (map(.notes // []) | add),
		machine: (.[0].machine + {loadavg: (map(.machine.loadavg) | join("; "))})}' "${INS[@]}" >"$IN"
fi

# median IMAGE CMD NET METHOD METRIC -> number or "null"
med() {
	jq -r --arg i "$1" --arg c "$2" --arg n "$3" --arg m "$4" --arg k "$5" \
		'[.results[] | select(.image == $i and .command == $c and .network == $n and .method == $m and .metric == $k) | .median][0] // "null"' "$IN"
}

fmt_ms() { # ms -> "1234 ms" / "12.3 s"
	awk -v v="$1" 'BEGIN { if (v == "null") print "-"; else if (v >= 10000) printf "%.1f s", v / 1000; else printf "%.0f ms", v }'
}
ratio() { # method baseline -> "0.05x"
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b == "null" || b == 0) print "-"; else printf "%.3fx", a / b }'
}
net_title() { [ "$1" = lo ] && echo loopback || echo "WAN ($(jq -r .wan "$IN"))"; }

# rows IMAGE CMD: "title<TAB>net1 ms<TAB>net1 ratio<TAB>..." per method, then the split
rows() {
	local image=$1 cmd=$2 m title avail cells net base v
	for m in $(jq -r '.methods[]' "$IN"); do
		title=$(jq -r --arg m "$m" '.method_titles[$m]' "$IN")
		avail=$(jq -r --arg m "$m" '.available[$m]' "$IN")
		cells=
		for net in $(jq -r '.networks[]' "$IN"); do
			if [ "$avail" != true ]; then
				cells="$cells"$'\t'"n/a (not built yet)"$'\t'
				continue
			fi
			base=$(med "$image" "$cmd" "$net" baseline total_ms)
			v=$(med "$image" "$cmd" "$net" "$m" total_ms)
			cells="$cells"$'\t'"$(fmt_ms "$v")"$'\t'"$(ratio "$v" "$base")"
		done
		printf '%s%s\n' "$title" "$cells"
	done
}

split_line() { # IMAGE CMD NET
	local p u c z zs=
	p=$(med "$1" "$2" "$3" baseline pull_ms)
	u=$(med "$1" "$2" "$3" baseline unpack_ms)
	c=$(med "$1" "$2" "$3" baseline cmd_ms)
	z=$(med "$1" "$2" "$3" baseline zstd_to_tar_ms)
	[ "$z" = null ] || zs=" + zstd→tar (umoci has no zstd) $(fmt_ms "$z")"
	echo "pull $(fmt_ms "$p")$zs + unpack $(fmt_ms "$u") + command $(fmt_ms "$c")"
}

bytes_line() { # IMAGE CMD
	local net r of ob fetched=
	net=$(jq -r '.networks[0]' "$IN")
	r=$(med "$1" "$2" "$net" trace resident_bytes)
	of=$(med "$1" "$2" "$net" trace opened_files)
	ob=$(med "$1" "$2" "$net" trace opened_bytes)
	for m in run-cold run-index mount-cold mount-index; do
		for n in $(jq -r '.networks[]' "$IN"); do
			v=$(med "$1" "$2" "$n" "$m" fetched_bytes)
			[ "$v" = null ] || fetched="$fetched $m/$n $(human "${v%.*}")"
			v=$(med "$1" "$2" "$n" "$m" prefetched_bytes)
			[ "$v" = null ] || [ "$v" = 0.0 ] || fetched="$fetched (prefetch $(human "${v%.*}"))"
		done
	done
	local comp unp store extra=
	store=$(med "$1" "$2" "$net" index-oci store_bytes)
	[ "$store" = null ] || extra="; isorun store after index build: $(human "${store%.*}")"
	comp=$(jq -r --arg i "$1" '.images[] | select(.name == $i) | .compressed_bytes' "$IN")
	unp=$(jq -r --arg i "$1" '.images[] | select(.name == $i) | .unpacked_bytes' "$IN")
	echo "touched $(human "${r%.*}") resident after a cold run (image: $(human "$comp") compressed, $(human "$unp") unpacked);" \
		"opened ${of%.*} files, $(human "${ob%.*}");" \
		"isorun fetched:${fetched:- n/a (needs isorun stats)}$extra"
}

table() {
	local image cmd argv nets net
	nets=$(jq -r '.networks[]' "$IN")
	echo "time to first command, median of $(jq -r .repetitions "$IN") (x = method time / baseline time)"
	jq -r '.commands[] | [.image, .label, .argv] | @tsv' "$IN" | while IFS=$'\t' read -r image cmd argv; do
		echo
		echo "== $image: $argv"
		printf '  %-44s' method
		for net in $nets; do printf ' %30s' "$(net_title "$net" | cut -c1-30)"; done
		echo
		rows "$image" "$cmd" | while IFS=$'\t' read -r -a f; do
			printf '  %-44s' "${f[0]}"
			for ((i = 1; i < ${#f[@]}; i += 2)); do
				if [[ ${f[i]} == n/a* ]]; then
					printf ' %30s' "${f[i]}"
				else
					printf ' %20s %9s' "${f[i]}" "${f[i + 1]}"
				fi
			done
			echo
		done
		for net in $nets; do echo "  baseline split, $(net_title "$net"): $(split_line "$image" "$cmd" "$net")"; done
		echo "  bytes: $(bytes_line "$image" "$cmd")"
	done
}

markdown() {
	local image cmd argv nets net
	nets=$(jq -r '.networks[]' "$IN")
	jq -r '.commands[] | [.image, .label, .argv] | @tsv' "$IN" | while IFS=$'\t' read -r image cmd argv; do
		echo
		echo "**$image** — \`$argv\`"
		echo
		printf '| method |'
		for net in $nets; do printf ' %s | × baseline |' "$(net_title "$net")"; done
		echo
		printf '|---|'
		for net in $nets; do printf -- '---:|---:|'; done
		echo
		rows "$image" "$cmd" | while IFS=$'\t' read -r -a f; do
			printf '| %s |' "${f[0]}"
			for ((i = 1; i < ${#f[@]}; i += 2)); do printf ' %s | %s |' "${f[i]}" "${f[i + 1]:-}"; done
			echo
		done
		echo
		for net in $nets; do echo "- baseline split, $(net_title "$net"): $(split_line "$image" "$cmd" "$net")"; done
		echo "- bytes: $(bytes_line "$image" "$cmd")"
	done
}

png() {
	require_cmds gnuplot
	local dat methods m net image cmd
	dat=$(mktemp)
	# Methods that have at least one measurement and end in a first command (not index builds
	# or pulls, which are in the tables).
	methods=$(jq -r '[.results[] | select(.metric == "total_ms") | .method] as $have
		| .methods[] | select(. as $m | $have | index($m))
		| select((startswith("index") or . == "pull") | not)' "$IN")
	{
		printf 'case'
		for m in $methods; do printf '\t"%s"' "$(jq -r --arg m "$m" '.method_titles[$m]' "$IN")"; done
		echo
		jq -r '.commands[] | [.image, .label] | @tsv' "$IN" | while IFS=$'\t' read -r image cmd; do
			for net in $(jq -r '.networks[]' "$IN"); do
				printf '"%s\\n%s, %s"' "$image" "$cmd" "$net"
				for m in $methods; do
					v=$(med "$image" "$cmd" "$net" "$m" total_ms)
					[ "$v" = null ] && v=-
					printf '\t%s' "$v"
				done
				echo
			done
		done
	} >"$dat"
	local n
	n=$(echo "$methods" | wc -w)
	gnuplot <<EOF
set terminal pngcairo size 1600,800 font "DejaVu Sans,11"
set output "$PNG"
set title "Time to first command (median of $(jq -r .repetitions "$IN"); log scale) — $(jq -r .machine.cpus "$IN") CPUs, $(jq -r .machine.kernel "$IN"), WAN: $(jq -r .wan "$IN")"
set datafile separator "\t"
set datafile missing "-"
set key autotitle columnhead
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set logscale y
set ylabel "milliseconds"
set grid ytics
set key below horizontal maxrows 2 samplen 2
# One colour per method, fixed: baseline grey, floor black, isorun run blues, mount oranges.
array C[12] = ["#8c8c8c", "#222222", "#1f4e9c", "#4f86d9", "#9cc2f0", "#b34a00", "#f08a24", "#f7c27d", "#2ca02c", "#9467bd", "#d62728", "#17becf"]
set xtics font ",10"
set yrange [1:*]
set offsets 0, 0, graph 0.08, 0
set bmargin 7
set xtics nomirror
# Bar i of cluster j sits at j + (i - 1 - (n - 1) / 2) / (n + gap), gap = 1.
plot for [i=2:$((n + 1))] "$dat" using i:xtic(1) title columnheader(i) lc rgb C[i - 1], \
     for [i=2:$((n + 1))] "$dat" using (\$0 + (i - 2 - ($n - 1) / 2.0) / ($n + 1)):(column(i)):(column(i) >= 10000 ? sprintf("%.1fs", column(i) / 1000) : sprintf("%.0f", column(i))) \
         with labels rotate by 90 left offset 0,0.3 font ",8" notitle
EOF
	rm -f "$dat"
	echo "wrote $PNG"
}

report() {
	local md=$BENCH_RESULTS/harness.md
	mkdir -p "$BENCH_RESULTS"
	[ "$(realpath "$IN")" = "$(realpath -m "$BENCH_RESULTS/harness.json")" ] || cp "$IN" "$BENCH_RESULTS/harness.json"
	chmod 0644 "$BENCH_RESULTS/harness.json"
	IN=$BENCH_RESULTS/harness.json
	PNG=$BENCH_RESULTS/ttfc.png
	png >/dev/null
	{
		echo "# Benchmark harness: latest results"
		echo
		echo "Generated by \`bench/plot.sh --report\` from \`harness.json\` (a \`bench/run.sh\` run of"
		echo "$(jq -r .date "$IN"), median of $(jq -r .repetitions "$IN") repetitions). Times are wall-clock"
		echo "time to first command; \`× baseline\` is the method's time divided by the baseline's."
		echo
		echo "![time to first command](ttfc.png)"
		echo
		echo "## Machine"
		echo
		jq -r '.machine | "- \(.os), kernel \(.kernel), \(.cpus) × \(.cpu), \(.mem_bytes / 1073741824 | floor) GiB RAM, work directory on \(.work_fs)",
			"- skopeo \(.skopeo), umoci \(.umoci), docker-registry \(.docker_registry); source tree at commit \(.isorun_commit) when the run started",
			"- load average (1/5/15 min) at the start -> end of the run: \(.loadavg // "not recorded") — the machine is shared"' "$IN"
		echo "- networks: $(jq -r '.networks | join(", ")' "$IN"); WAN: $(jq -r .wan "$IN") (tbf rate on both veth ends, delay from the harness's proxy: this kernel has no netem)"
		echo
		echo "## Images"
		echo
		echo "| image | layers | compressed | unpacked | files | layer media type |"
		echo "|---|---:|---:|---:|---:|---|"
		jq -r '.images[] | [.name, .layers, .compressed_bytes, .unpacked_bytes, .files, .layer_media_type] | @tsv' "$IN" |
			while IFS=$'\t' read -r n l c u f m; do
				echo "| $n | $l | $(human "$c") | $(human "$u") | $f | \`${m##*.}\` |"
			done
		echo
		echo "## Time to first command"
		markdown
		if [ "$(jq -r '.notes // [] | length' "$IN")" != 0 ]; then
			echo
			echo "## Notes on this data"
			echo
			jq -r '.notes[] | "- " + .' "$IN"
		fi
		echo
		echo "## How it is measured"
		echo
		echo "- Every cold repetition starts with \`sync; echo 3 > /proc/sys/vm/drop_caches\`."
		echo "- baseline: \`skopeo copy docker://REF oci:DIR:latest\` + \`umoci unpack\` + the command in a"
		echo "  chroot of the unpacked tree (private mount namespace; \`full\` commands get /proc, a tmpfs"
		echo "  /dev with bind-mounted null/zero/full/random/urandom/tty, /dev/shm and /tmp tmpfs,"
		echo "  HOME=/tmp). The command runs right after the unpack, on the page cache the unpack left."
		echo "- floor: the same command on the same unpacked tree with a cold page cache."
		echo "- touched: after a cold-cache run on the unpacked tree, the page-cache-resident bytes of"
		echo "  every regular file of the tree (\`fincore\`, mincore(2); includes kernel readahead)."
		echo "  opened: files opened or executed after chroot(2) (\`strace -f -e"
		echo "  trace=chroot,openat,open,execve\`), each counted once with its full size."
		echo "- isorun: every cold method starts from an empty store (\`--root\`) and digest-pinned"
		echo "  references. \"no index\": the registry has no index artifact for the image, so isorun"
		echo "  indexes it locally on first use; \"pre-built index\": \`isorun-index build --push\` put"
		echo "  the artifact next to the image beforehand (untimed). mount+chroot times \`isorun"
		echo "  mount\` plus the command in a chroot of the mount; warm is a second run on the same"
		echo "  store (run) or the live mount (mount). fetched/prefetch: \`isorun stats --json\` of"
		echo "  the mount right after the command (\`fetched_bytes\`, \`prefetched_bytes\`)."
		echo "- isorun rows say \`n/a (not built yet)\` while the verb is missing from the build's"
		echo "  \`isorun --help\` / \`isorun-index --help\`; see bench/README.md for each method."
		echo "- The machine is shared with other engineers' builds and tests (load average above):"
		echo "  absolute times are noisy; compare methods within one table."
		echo
		echo "## Reproduce"
		echo
		echo '```sh'
		echo "scripts/deps.sh                      # Debian packages (as root)"
		echo "cmake -S . -B build/h-bench -DISORUN_WERROR=ON && cmake --build build/h-bench -j2"
		echo "bench/images.sh                      # builds and pushes minimal, python, python-zstd, browser"
		local f outs=
		for f in "${INS[@]}"; do
			echo "ISORUN_BUILD_DIR=\$PWD/build/h-bench bench/run.sh --images \"$(jq -r '[.images[].name] | join(" ")' "$f")\" --nets \"$(jq -r '.networks | join(" ")' "$f")\" --reps $(jq -r .repetitions "$f") --out bench/results/$(basename "$f")"
			outs="$outs bench/results/$(basename "$f")"
		done
		echo "bench/plot.sh --report$outs"
		echo '```'
	} >"$md"
	echo "wrote $md, $PNG, $BENCH_RESULTS/harness.json"
}

case $MODE in
table) table ;;
markdown) markdown ;;
png) png ;;
report) report ;;
esac
