#!/bin/bash
# Renders a bench/run.sh result file.
#
#   bench/plot.sh [RESULT.json] [--png OUT.png]   bar chart of time-to-first-command per image,
#                                                 network and method (gnuplot, log scale)
#   bench/plot.sh --table [RESULT.json]           the text table run.sh prints
#   bench/plot.sh --markdown [RESULT.json]        the same as Markdown tables
#
# RESULT.json defaults to bench/results/latest.json; OUT.png to bench/results/ttfc.png.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MODE=png
IN=
PNG=$BENCH_RESULTS/ttfc.png
while [ $# -gt 0 ]; do
	case $1 in
	--table) MODE=table ;;
	--markdown) MODE=markdown ;;
	--png) PNG=$2; shift ;;
	-h | --help) sed -n '2,10p' "$0"; exit 0 ;;
	*) IN=$1 ;;
	esac
	shift
done
IN=${IN:-$BENCH_RESULTS/latest.json}
[ -f "$IN" ] || die "no result file $IN (run bench/run.sh first)"
require_cmds jq awk

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
	local p u c
	p=$(med "$1" "$2" "$3" baseline pull_ms)
	u=$(med "$1" "$2" "$3" baseline unpack_ms)
	c=$(med "$1" "$2" "$3" baseline cmd_ms)
	echo "pull $(fmt_ms "$p") + unpack $(fmt_ms "$u") + command $(fmt_ms "$c")"
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
		done
	done
	local comp unp
	comp=$(jq -r --arg i "$1" '.images[] | select(.name == $i) | .compressed_bytes' "$IN")
	unp=$(jq -r --arg i "$1" '.images[] | select(.name == $i) | .unpacked_bytes' "$IN")
	echo "touched $(human "${r%.*}") resident after a cold run (image: $(human "$comp") compressed, $(human "$unp") unpacked);" \
		"opened ${of%.*} files, $(human "${ob%.*}");" \
		"isorun fetched: ${fetched:- n/a (needs isorun stats)}"
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
	local dat methods cols=() m net image cmd
	dat=$(mktemp)
	trap 'rm -f "$dat"' RETURN
	# Methods that have at least one measurement.
	methods=$(jq -r '[.results[] | select(.metric == "total_ms") | .method] as $have
		| .methods[] | select(. as $m | $have | index($m))' "$IN")
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
set terminal pngcairo size 1400,700 font "DejaVu Sans,11"
set output "$PNG"
set title "Time to first command (median of $(jq -r .repetitions "$IN"); log scale) — $(jq -r .machine.cpus "$IN") CPUs, $(jq -r .machine.kernel "$IN"), WAN: $(jq -r .wan "$IN")"
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set logscale y
set ylabel "milliseconds"
set grid ytics
set key outside right top vertical
set xtics font ",10"
set yrange [1:*]
plot for [i=2:$((n + 1))] "$dat" using i:xtic(1) title columnheader(i)
EOF
	echo "wrote $PNG"
}

case $MODE in
table) table ;;
markdown) markdown ;;
png) png ;;
esac
