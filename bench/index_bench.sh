#!/bin/bash
# Indexer benchmark: writes bench/results/index.md (and index.json with the raw numbers).
#
#   speed   `isorun-index build` vs `umoci unpack` of the same image (>= 200 MB unpacked),
#           side by side with hyperfine, a fresh store / rootfs for every run
#   dedup   a second image sharing the first one's base layer: bytes written again
#   rss     peak RSS of the indexer (/usr/bin/time -v) on the largest image
#   cdc     CDC min/avg/max: dedup between two versions of an image vs chunk count and
#           index size, one Release build of the indexer per setting (-DIDX_CDC_*)
#
# usage: bench/index_bench.sh [--runs N] [speed|dedup|rss|cdc|report|all]...   (default: all;
#        report only rewrites index.md from the numbers already measured)
# Images: bench/work/oci (bench/images.sh: minimal, python, browser) when present, otherwise
# an image built here under bench/work/idx/ (debootstrap minbase + python3 + numpy).
# The indexer is built in Release mode in build/bench-idx (ISORUN_INDEX overrides).
# Root is needed (umoci unpack keeps owners; debootstrap/chroot for the fallback images).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
WORK=$SRC/bench/work/idx
OUT=$SRC/bench/results
RUNS=3
SECTIONS=()
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	speed | dedup | rss | cdc | report | all) SECTIONS+=("$1"); shift ;;
	*) echo "usage: $0 [--runs N] [speed|dedup|rss|cdc|all]..." >&2; exit 2 ;;
	esac
done
[ ${#SECTIONS[@]} -gt 0 ] || SECTIONS=(all)
want() { local s; for s in "${SECTIONS[@]}"; do [ "$s" = all ] || [ "$s" = "$1" ] && return 0; done; return 1; }

log() { echo "== $*" >&2; }
die() { echo "index_bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (umoci unpack with owners, chroot for the fallback image)"
for c in hyperfine umoci python3 cmake /usr/bin/time; do
	command -v "$c" >/dev/null 2>&1 || die "missing $c (scripts/deps.sh)"
done
mkdir -p "$WORK" "$OUT"

# --- the indexer ------------------------------------------------------------------------
# build_indexer DIR [extra cmake args...]: a Release isorun-index in DIR; prints its path.
build_indexer() {
	local dir=$1
	shift
	cmake -S "$SRC" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DISORUN_MODULES="common;registry;indexer;tools" \
		"$@" >"$dir.log" 2>&1 || die "cmake failed, see $dir.log"
	cmake --build "$dir" --target isorun-index -j"$(nproc)" >>"$dir.log" 2>&1 || die "build failed, see $dir.log"
	echo "$dir/tools/isorun-index"
}
TOOL=${ISORUN_INDEX:-}
if [ -z "$TOOL" ]; then
	log "building the indexer (Release) in build/bench-idx"
	TOOL=$(build_indexer "$SRC/build/bench-idx")
fi

# --- images -----------------------------------------------------------------------------
OCI=$SRC/bench/work/oci
has_tag() { [ -f "$1/index.json" ] && grep -q "\"org.opencontainers.image.ref.name\":\"$2\"" <(tr -d ' \n' <"$1/index.json"); }

# Fallback: our own python image (debootstrap minbase, then python3 + numpy in a second layer).
own_images() {
	local mirror=http://deb.debian.org/debian root=$WORK/rootfs
	OCI=$WORK/oci
	has_tag "$OCI" python && return
	log "building bench/work/idx/oci (minbase + python3-numpy; a few minutes)"
	command -v debootstrap >/dev/null || die "missing debootstrap"
	[ -d "$root" ] || debootstrap --variant=minbase bookworm "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1
	rm -rf "$OCI" "$WORK/b"
	umoci init --layout "$OCI"
	umoci new --image "$OCI:minimal"
	umoci unpack --image "$OCI:minimal" "$WORK/b" >/dev/null
	cp -a "$root/." "$WORK/b/rootfs/"
	umoci repack --image "$OCI:minimal" "$WORK/b"
	cp /etc/resolv.conf "$WORK/b/rootfs/etc/resolv.conf"
	DEBIAN_FRONTEND=noninteractive chroot "$WORK/b/rootfs" sh -c \
		'apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-numpy && apt-get clean' \
		>"$WORK/apt.log" 2>&1 || die "apt-get in the chroot failed, see $WORK/apt.log"
	umoci repack --image "$OCI:python" "$WORK/b"
	rm -rf "$WORK/b"
}
if has_tag "$OCI" browser && has_tag "$OCI" minimal; then
	BIG=browser
	SECOND=(python browser)
else
	own_images
	BIG=python
	SECOND=(python)
fi
unpacked_bytes() { # tar bytes of an image tag's layers (bench/images.sh's stats, else counted)
	local stats=$SRC/bench/work/stats/$1.json
	if [ "$OCI" = "$SRC/bench/work/oci" ] && [ -f "$stats" ]; then
		python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["unpacked_bytes"])' "$stats"
		return
	fi
	python3 - "$OCI" "$1" <<'PY'
import json, os, sys, zlib
oci, tag = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(oci, 'blobs', 'sha256', d.split(':')[1])
for m in json.load(open(os.path.join(oci, 'index.json')))['manifests']:
    if m.get('annotations', {}).get('org.opencontainers.image.ref.name') == tag:
        total = 0
        for l in json.load(open(blob(m['digest'])))['layers']:
            d = zlib.decompressobj(47)  # gzip or zlib; plain layers are counted as is
            with open(blob(l['digest']), 'rb') as f:
                for b in iter(lambda: f.read(1 << 20), b''):
                    total += len(d.decompress(b)) if l['mediaType'].endswith('gzip') else len(b)
        print(total)
        break
PY
}

JSON=$WORK/results.json
[ -f "$JSON" ] || echo '{}' >"$JSON"
put() { # put KEY JSON-VALUE
	python3 - "$JSON" "$1" "$2" <<'PY'
import json, sys
p, k, v = sys.argv[1:]
d = json.load(open(p))
d[k] = json.loads(v)
json.dump(d, open(p, 'w'), indent=1, sort_keys=True)
PY
}
# Stored bytes / chunk files of a store (exact, from the files).
store_bytes() { find "$1/chunks" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
store_chunks() { find "$1/chunks" -type f | wc -l; }

# --- speed ------------------------------------------------------------------------------
if want speed; then
	log "speed: isorun-index build vs umoci unpack of $BIG ($RUNS runs each)"
	S=$WORK/speed
	mkdir -p "$S"
	hyperfine --runs "$RUNS" --export-json "$S/hyperfine.json" --export-markdown "$S/hyperfine.md" \
		--prepare "rm -rf $S/store" "$TOOL --root $S/store build oci:$OCI:$BIG" \
		--prepare "rm -rf $S/unpack" "umoci unpack --image $OCI:$BIG $S/unpack" >&2
	rm -rf "$S/store" "$S/unpack"
	put speed "$(python3 - "$S/hyperfine.json" "$BIG" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))['results']
idx, umoci = r[0], r[1]
import datetime
print(json.dumps({'image': sys.argv[2], 'runs': len(idx['times']),
                  'when': f'{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC',
                  'load': open('/proc/loadavg').read().split()[0],
                  'index_mean_s': idx['mean'], 'index_stddev_s': idx['stddev'],
                  'index_user_s': idx['user'], 'index_system_s': idx['system'],
                  'umoci_mean_s': umoci['mean'], 'umoci_stddev_s': umoci['stddev'],
                  'umoci_user_s': umoci['user'], 'umoci_system_s': umoci['system'],
                  'speedup': umoci['mean'] / idx['mean']}))
PY
)"
	put speed_unpacked_bytes "$(unpacked_bytes "$BIG")"
	python3 - "$JSON" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d.setdefault('speed_history', []).append(d['speed'])
json.dump(d, open(sys.argv[1], 'w'), indent=1, sort_keys=True)
PY
fi

# --- dedup ------------------------------------------------------------------------------
if want dedup; then
	log "dedup: images sharing the minimal image's base layer"
	D=$WORK/dedup
	rm -rf "$D" && mkdir -p "$D"
	"$TOOL" --root "$D/shared" build "oci:$OCI:minimal" >/dev/null
	base=$(store_bytes "$D/shared")
	res="{\"base_image\":\"minimal\",\"base_bytes\":$base,\"second\":["
	first=1
	for img in "${SECOND[@]}"; do
		before=$(store_bytes "$D/shared")
		find "$D/shared/chunks" -type f -printf '%f\n' | sort >"$D/before.list"
		"$TOOL" --root "$D/shared" build "oci:$OCI:$img" >/dev/null
		new=$(($(store_bytes "$D/shared") - before))
		"$TOOL" --root "$D/alone-$img" build "oci:$OCI:$img" >/dev/null
		alone=$(store_bytes "$D/alone-$img")
		# Bytes of this image's chunks the store did not hold yet: the least it must receive.
		# new - only = bytes written again although the store had them.
		only=$(join -v 2 "$D/before.list" \
			<(find "$D/alone-$img/chunks" -type f -printf '%f %s\n' | sort) |
			awk '{ s += $2 } END { print s + 0 }')
		[ $first = 1 ] || res="$res,"
		first=0
		res="$res{\"image\":\"$img\",\"new_bytes\":$new,\"alone_bytes\":$alone,\"not_in_base_bytes\":$only}"
		rm -rf "$D/alone-$img"
	done
	put dedup "$res]}"
	rm -rf "$D"
fi

# --- rss --------------------------------------------------------------------------------
if want rss; then
	log "rss: peak RSS of isorun-index build $BIG"
	R=$WORK/rss
	rm -rf "$R"
	/usr/bin/time -v "$TOOL" --root "$R/store" build "oci:$OCI:$BIG" >/dev/null 2>"$R.time" ||
		die "build failed: $(tail -n 5 "$R.time")"
	kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$R.time")
	put rss "{\"image\":\"$BIG\",\"max_rss_kb\":$kb,\"chunks\":$(store_chunks "$R/store"),\"stored_bytes\":$(store_bytes "$R/store")}"
	rm -rf "$R"
fi

# --- cdc --------------------------------------------------------------------------------
# Two versions of one image, each a single flattened layer, so every byte they share must be
# found by the chunker: v1 = debootstrap minbase; v2 = v1 + `apt-get install less vim-tiny
# procps` (dpkg database, ld cache, new files: what a rebuilt image changes).
cdc_images() {
	local base=$SRC/tests/work/indexer/rootfs
	has_tag "$WORK/cdc-oci" v2 && return
	[ -d "$base" ] || die "no minbase rootfs: run tests/integration/indexer/test_umoci.sh once (it caches one)"
	log "cdc: building the two image versions in bench/work/idx/cdc-oci"
	rm -rf "$WORK/cdc-oci" "$WORK/v2root" "$WORK/b"
	cp -a "$base" "$WORK/v2root"
	cp /etc/resolv.conf "$WORK/v2root/etc/resolv.conf"
	DEBIAN_FRONTEND=noninteractive chroot "$WORK/v2root" sh -c \
		'apt-get update -qq && apt-get install -y -qq --no-install-recommends less vim-tiny procps && apt-get clean' \
		>"$WORK/v2.log" 2>&1 || die "apt-get in the chroot failed, see $WORK/v2.log"
	umoci init --layout "$WORK/cdc-oci"
	for v in v1 v2; do
		umoci new --image "$WORK/cdc-oci:$v"
		umoci unpack --image "$WORK/cdc-oci:$v" "$WORK/b" >/dev/null
		if [ $v = v1 ]; then cp -a "$base/." "$WORK/b/rootfs/"; else cp -a "$WORK/v2root/." "$WORK/b/rootfs/"; fi
		umoci repack --image "$WORK/cdc-oci:$v" "$WORK/b"
		rm -rf "$WORK/b"
	done
	rm -rf "$WORK/v2root"
}
if want cdc; then
	cdc_images
	res="["
	first=1
	for cfg in 8:32:128 16:64:256 32:128:512 64:256:1024; do
		IFS=: read -r mn av mx <<<"$cfg"
		log "cdc: min/avg/max = $mn/$av/$mx KiB"
		tool=$(build_indexer "$SRC/build/bench-cdc-$av" \
			-DCMAKE_C_FLAGS="-DIDX_CDC_MIN='($mn<<10)' -DIDX_CDC_AVG='($av<<10)' -DIDX_CDC_MAX='($mx<<10)'")
		C=$WORK/cdc
		rm -rf "$C"
		"$tool" --root "$C/s" build "oci:$WORK/cdc-oci:v1" >/dev/null
		b1=$(store_bytes "$C/s")
		d2=$("$tool" --root "$C/s" build "oci:$WORK/cdc-oci:v2" | tail -n 1)
		new=$(($(store_bytes "$C/s") - b1))
		"$tool" --root "$C/alone" build "oci:$WORK/cdc-oci:v2" >/dev/null
		alone=$(store_bytes "$C/alone")
		chunks=$(store_chunks "$C/alone")
		isize=$(stat -c %s "$C/s/indexes/${d2#sha256:}")
		[ $first = 1 ] || res="$res,"
		first=0
		res="$res{\"min_kib\":$mn,\"avg_kib\":$av,\"max_kib\":$mx,\"v2_chunks\":$chunks,\"v2_index_bytes\":$isize,\"v2_stored_bytes\":$alone,\"v2_new_after_v1_bytes\":$new}"
		rm -rf "$C"
	done
	put cdc "$res]"
fi

# --- report -----------------------------------------------------------------------------
python3 - "$JSON" "$OUT/index.md" "$TOOL" <<'PY'
import json, sys, subprocess, datetime
d = json.load(open(sys.argv[1]))
mib = lambda b: f'{b / 2**20:.1f} MiB'
out = ['# Indexer benchmark (bench/index_bench.sh)', '',
       f'Machine: {subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()} cores; '
       f'written {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC. Raw numbers: bench/work/idx/results.json.', '']
if 'speed' in d:
    s = d['speed']
    out += ['## Build vs `umoci unpack`', '',
            f"Image `{s['image']}` ({mib(d.get('speed_unpacked_bytes', 0))} of layer tars unpacked), "
            f"{s['runs']} runs each with hyperfine, a fresh store / rootfs per run.", '',
            '| command | wall (mean ± sd) | user | system |', '|---|---|---|---|',
            f"| `isorun-index build` | {s['index_mean_s']:.1f} ± {s['index_stddev_s']:.1f} s | {s['index_user_s']:.1f} s | {s['index_system_s']:.1f} s |",
            f"| `umoci unpack` | {s['umoci_mean_s']:.1f} ± {s['umoci_stddev_s']:.1f} s | {s['umoci_user_s']:.1f} s | {s['umoci_system_s']:.1f} s |",
            '', f"**isorun-index build is {s['speedup']:.1f}x faster** (target: 3x); CPU time "
            f"(user + system) ratio {(s['umoci_user_s'] + s['umoci_system_s']) / (s['index_user_s'] + s['index_system_s']):.1f}x.", '']
    hist = d.get('speed_history', [])
    if len(hist) > 1:
        out += ['Every measurement so far (the machine is shared: the 1-minute load average at the end of '
                'each run is given; wall ratios move with it, CPU ratios much less):', '',
                '| when | runs | load | build | umoci | wall ratio | CPU ratio |', '|---|---|---|---|---|---|---|']
        for h in hist:
            cpu = (h['umoci_user_s'] + h['umoci_system_s']) / (h['index_user_s'] + h['index_system_s'])
            out.append(f"| {h.get('when', '?')} | {h['runs']} | {h.get('load', '?')} | {h['index_mean_s']:.1f} ± {h['index_stddev_s']:.1f} s | "
                       f"{h['umoci_mean_s']:.1f} ± {h['umoci_stddev_s']:.1f} s | {h['speedup']:.2f}x | {cpu:.2f}x |")
        out.append('')
if 'dedup' in d:
    x = d['dedup']
    out += ['## Shared base layer', '',
            f"A store holding `{x['base_image']}` ({mib(x['base_bytes'])} stored); then each image below, in order, is "
            "indexed into it (all share its base layer).", '',
            '| next image | new bytes written | stored alone | its chunks not yet in the store | written again |',
            '|---|---|---|---|---|']
    for s in x['second']:
        again = s['new_bytes'] - s['not_in_base_bytes']
        out.append(f"| `{s['image']}` | {mib(s['new_bytes'])} | {mib(s['alone_bytes'])} | {mib(s['not_in_base_bytes'])} | "
                   f"{mib(max(again, 0))} ({100 * max(again, 0) / x['base_bytes']:.2f}% of the base) |")
    out.append('')
if 'rss' in d:
    r = d['rss']
    out += ['## Peak memory', '', f"`isorun-index build` of `{r['image']}` ({r['chunks']} chunks, {mib(r['stored_bytes'])} stored): "
            f"**max RSS {r['max_rss_kb'] / 1024:.1f} MiB** (/usr/bin/time -v; target < 256 MiB).", '']
if 'cdc' in d:
    out += ['## CDC sizes', '', 'Two versions of an image, each one flattened layer (v1: debootstrap minbase; v2: v1 + '
            '`apt-get install less vim-tiny procps`). "new after v1" is what indexing v2 into a store holding v1 writes.', '',
            '| min/avg/max KiB | v2 chunks | v2 index | v2 stored | new after v1 | dedup |', '|---|---|---|---|---|---|']
    for c in d['cdc']:
        out.append(f"| {c['min_kib']}/{c['avg_kib']}/{c['max_kib']} | {c['v2_chunks']} | {c['v2_index_bytes'] / 1024:.0f} KiB | "
                   f"{mib(c['v2_stored_bytes'])} | {mib(c['v2_new_after_v1_bytes'])} | "
                   f"{100 * (1 - c['v2_new_after_v1_bytes'] / c['v2_stored_bytes']):.1f}% |")
    out.append('')
open(sys.argv[2], 'w').write('\n'.join(out))
print(sys.argv[2])
PY
