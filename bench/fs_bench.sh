#!/bin/bash
# The lazy filesystem's numbers (results: bench/results/fs.md and fs.json).
#
#   bench/fs_bench.sh [--images "python browser"] [--nets "lo wan"] [--reps N]
#
# For each image (from bench/images.sh, pushed to the loopback registry bench/registry.sh;
# "wan" is the same storage behind bench/wan.sh's delayed, rate-limited link):
#   baseline    cold: skopeo copy + umoci unpack + the first command in a chroot of the tree
#   isorun      cold, index pre-built (the artifact is in the registry, pushed once here with
#               isorun-index build --push): isorun pull (index only) into an empty store +
#               isorun mount (default prefetch=all) + the first command in a chroot of it
#   traced      the same as isorun, with an index built with --startup-trace from a trace of
#               the first command (recorded once per image beforehand: isorun mount
#               --record-trace, prefetch=none, loopback), pushed next to a copy of the image
#               in the repository bench-traced/IMAGE, so its chunks are laid out and
#               prefetched in the order the command reads them
#   bytes       fetched when the first command exits (prefetch=all, and prefetch=none), and
#               the bytes it touched: the uncompressed size of the chunks it read, from a
#               --record-trace of the prefetch=none run (docs/trace.md)
# Then, on the browser image (largest file) with everything local: sequential read with the
# page cache dropped, mount vs the same file on local disk (umoci's tree); and the daemon's
# RSS once the whole image is prefetched.
# Page cache is dropped before every cold step. Medians of --reps repetitions.
#
# BEFORE=<isorun binary> also runs the isorun cold step and the sequential read with that
# binary (its own daemon), interleaved with the current one in every repetition, so a
# change is compared side by side under the same machine load (reported as ratios).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

IMAGES="python browser"
NETS="lo wan"
REPS=1
while [ $# -gt 0 ]; do
	case $1 in
	--images) IMAGES=$2; shift ;;
	--nets) NETS=$2; shift ;;
	--reps) REPS=$2; shift ;;
	-h | --help) sed -n '2,29p' "$0"; exit 0 ;;
	*) die "unknown argument $1" ;;
	esac
	shift
done

require_root
require_cmds skopeo umoci jq chroot unshare
ISORUN=$(isorun_bin isorun)
ISORUN_INDEX=$(isorun_bin isorun-index)
has_verb "$ISORUN" mount || skip "isorun mount is not built"
BEFORE=${BEFORE:-}
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || die "BEFORE=$BEFORE is not an executable"
export ISORUN_INSECURE_REGISTRIES=http://$BENCH_WAN_ADDR,$BENCH_WAN_ADDR # (see run.sh)
"$BENCH_DIR/registry.sh" status >/dev/null || "$BENCH_DIR/registry.sh" start >/dev/null
case " $NETS " in *" wan "*) "$BENCH_DIR/wan.sh" status >/dev/null || "$BENCH_DIR/wan.sh" up >/dev/null ;; esac

W=$BENCH_WORK/fs
MNT=$W/mnt
mkdir -p "$W" "$MNT" "$MNT.b"
RESULTS_JSON=$BENCH_RESULTS/fs.json
RECS=$W/records.tsv
: >"$RECS"
rec() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$RECS"; } # IMAGE NET METRIC VALUE

cleanup() {
	set +e
	mountpoint -q "$MNT" && { "$ISORUN" --root "$W/root" umount "$MNT" || umount -l "$MNT"; }
	mountpoint -q "$MNT.b" && umount -l "$MNT.b"
	for p in "$W"/root/mounts/*/pid "$W"/root-before/mounts/*/pid; do
		[ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null
	done
}
trap cleanup EXIT

first_cmd() { # IMAGE -> "MODE ARGV..."
	case $1 in
	python | python-zstd) echo "bare python3 -c 'import numpy'" ;;
	browser) echo "full chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank" ;;
	minimal) echo "bare /bin/true" ;;
	esac
}
run_cmd() { # IMAGE ROOT
	local line mode
	line=$(first_cmd "$1")
	mode=${line%% *}
	eval "set -- $2 ${line#* }"
	local root=$1
	shift
	in_chroot "$mode" "$root" "$@" >/dev/null 2>&1
}

net_addr() { [ "$1" = lo ] && echo "$BENCH_LO_ADDR" || echo "$BENCH_WAN_ADDR"; }
ref_of() { echo "$(net_addr "$2")/$1:latest"; }
declare -A PINNED

fresh_root() {
	cleanup
	# A daemon finishes its prefetch request and bookkeeping after the unmount: wait.
	local p pid
	for p in "$W"/root/mounts/*/pid; do
		[ -f "$p" ] || continue
		pid=$(cat "$p")
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	done
	rm -rf "$W/root"
}

stat_of() { "$ISORUN" --root "$W/root" stats --json "$MNT" | jq -r "$1"; }

# cold_mount BIN REF IMAGE NET KEY FETCHED_KEY: isorun pull + mount + the first command on an
# empty store with the page cache dropped; records KEY_ms and its pull/mount/cmd split, and
# the bytes fetched when the command exited as FETCHED_KEY.
cold_mount() {
	local bin=$1 ref=$2 img=$3 net=$4 key=$5 fkey=$6 t t1 t2 t3
	fresh_root
	drop_caches
	t=$(now_ns)
	"$bin" --root "$W/root" pull -q "$ref"
	t1=$(now_ns)
	"$bin" --root "$W/root" mount "$ref" "$MNT"
	t2=$(now_ns)
	run_cmd "$img" "$MNT"
	t3=$(now_ns)
	rec "$img" "$net" "${key}_ms" $(((t3 - t) / 1000000))
	rec "$img" "$net" "${key}_pull_ms" $(((t1 - t) / 1000000))
	rec "$img" "$net" "${key}_mount_ms" $(((t2 - t1) / 1000000))
	rec "$img" "$net" "${key}_cmd_ms" $(((t3 - t2) / 1000000))
	rec "$img" "$net" "$fkey" "$(stat_of .fetched_bytes)"
	"$bin" --root "$W/root" umount "$MNT"
}

for img in $IMAGES; do
	oci_manifest "$BENCH_WORK/oci" "$img" >/dev/null || die "image $img missing: bench/images.sh --only $img"
	# Pin the tag once: other runs may push a new "latest" meanwhile.
	dig=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$(ref_of "$img" lo)")
	log "$img: $dig, index artifact (once)"
	"$ISORUN_INDEX" --root "$W/ci" build --push "$BENCH_LO_ADDR/$img@$dig" >/dev/null
	PINNED[$img]=$dig
	log "$img: trace of the first command, and the trace-ordered index (once)"
	fresh_root
	"$ISORUN" --root "$W/root" pull -q "$BENCH_LO_ADDR/$img@$dig"
	"$ISORUN" --root "$W/root" mount --prefetch=none --record-trace "$W/trace-$img" \
		"$BENCH_LO_ADDR/$img@$dig" "$MNT"
	run_cmd "$img" "$MNT"
	"$ISORUN" --root "$W/root" umount "$MNT"
	for _ in $(seq 1 100); do [ -n "$(ls "$W"/root/mounts/*/ctl.sock 2>/dev/null)" ] || break; sleep 0.1; done
	skopeo copy -q --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
		"docker://$BENCH_LO_ADDR/$img@$dig" "docker://$BENCH_LO_ADDR/bench-traced/$img:latest"
	"$ISORUN_INDEX" --root "$W/ci" build --push --force --startup-trace "$W/trace-$img" \
		"$BENCH_LO_ADDR/bench-traced/$img@$dig" >/dev/null
	for net in $NETS; do
		ref=$(net_addr "$net")/$img@$dig
		for rep in $(seq 1 "$REPS"); do
			log "$img/$net #$rep: baseline (skopeo copy + umoci unpack + command)"
			rm -rf "$W/pull" "$W/unp"
			drop_caches
			t=$(now_ns)
			skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$W/pull:x" >/dev/null
			t1=$(now_ns)
			umoci unpack --image "$W/pull:x" "$W/unp" >/dev/null 2>&1
			t2=$(now_ns)
			run_cmd "$img" "$W/unp/rootfs"
			t3=$(now_ns)
			rec "$img" "$net" baseline_ms $(((t3 - t) / 1000000))
			rec "$img" "$net" baseline_pull_ms $(((t1 - t) / 1000000))
			rec "$img" "$net" baseline_unpack_ms $(((t2 - t1) / 1000000))
			rec "$img" "$net" baseline_cmd_ms $(((t3 - t2) / 1000000))

			for who in ${BEFORE:+before} current; do
				bin=$ISORUN sfx=
				[ "$who" = current ] || bin=$BEFORE sfx=_before
				log "$img/$net #$rep: isorun ($who) pull + mount + command (cold, prefetch=all)"
				cold_mount "$bin" "$ref" "$img" "$net" "isorun$sfx" "fetched${sfx}_all"
			done

			log "$img/$net #$rep: isorun pull + mount + command, trace-ordered index"
			cold_mount "$ISORUN" "$(net_addr "$net")/bench-traced/$img@$dig" "$img" "$net" \
				traced fetched_traced

			log "$img/$net #$rep: isorun, prefetch=none, traced"
			fresh_root
			drop_caches
			t=$(now_ns)
			"$ISORUN" --root "$W/root" pull -q "$ref"
			"$ISORUN" --root "$W/root" mount --prefetch=none --record-trace "$W/trace" "$ref" "$MNT"
			run_cmd "$img" "$MNT"
			t3=$(now_ns)
			rec "$img" "$net" lazy_ms $(((t3 - t) / 1000000))
			rec "$img" "$net" fetched_none $(stat_of .fetched_bytes)
			rec "$img" "$net" read_p50_us $(stat_of .read_latency_us.p50)
			rec "$img" "$net" read_p99_us $(stat_of .read_latency_us.p99)
			"$ISORUN" --root "$W/root" umount "$MNT"
			for _ in $(seq 1 100); do [ -n "$(ls "$W"/root/mounts/*/ctl.sock 2>/dev/null)" ] || break; sleep 0.1; done
			rec "$img" "$net" touched $(awk '/^[0-9]/ { s += $6 } END { print s + 0 }' "$W/trace")
		done
	done
done

# Sequential read and RSS, on the largest image measured, everything local.
img=${IMAGES##* }
log "$img: full prefetch, sequential read vs local disk, daemon RSS"
fresh_root
"$ISORUN" --root "$W/root" pull -q "$BENCH_LO_ADDR/$img@${PINNED[$img]}"
"$ISORUN" --root "$W/root" mount "$BENCH_LO_ADDR/$img@${PINNED[$img]}" "$MNT"
for _ in $(seq 1 3000); do [ "$(stat_of .prefetch.complete)" = true ] && break; sleep 0.2; done
[ "$(stat_of .prefetch.complete)" = true ] || die "prefetch of $img did not complete"
pid=$(cat "$W"/root/mounts/*/pid)
rec "$img" lo rss_kib "$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")"
rec "$img" lo hwm_kib "$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")"
[ -d "$W/unp/rootfs" ] || die "no unpacked tree of $img"
BEFORE_REF=$BENCH_LO_ADDR/$img@${PINNED[$img]}
big=$(cd "$W/unp/rootfs" && find . -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
rec "$img" lo seq_file_bytes "$(stat -c %s "$W/unp/rootfs/$big")"
for rep in $(seq 1 "$REPS"); do
	drop_caches
	t=$(now_ns)
	dd if="$W/unp/rootfs/$big" of=/dev/null bs=1M status=none
	rec "$img" lo seq_disk_ms $((($(now_ns) - t) / 1000000))
	drop_caches
	t=$(now_ns)
	dd if="$MNT/$big" of=/dev/null bs=1M status=none
	rec "$img" lo seq_mount_ms $((($(now_ns) - t) / 1000000))
	if [ -n "$BEFORE" ]; then
		# The other binary's daemon on a store it filled itself (the stores' chunk files
		# may differ in form: raw frames or the packs' zstd frames).
		if [ ! -d "$W/root-before" ]; then
			"$BEFORE" --root "$W/root-before" pull -q "$BEFORE_REF"
			"$BEFORE" --root "$W/root-before" mount "$BEFORE_REF" "$MNT.b"
			for _ in $(seq 1 3000); do
				[ "$("$BEFORE" --root "$W/root-before" stats --json "$MNT.b" | jq -r .prefetch.complete)" = true ] && break
				sleep 0.2
			done
			"$BEFORE" --root "$W/root-before" umount "$MNT.b"
		fi
		"$BEFORE" --root "$W/root-before" mount --prefetch=none "$BEFORE_REF" "$MNT.b"
		drop_caches
		t=$(now_ns)
		dd if="$MNT.b/$big" of=/dev/null bs=1M status=none
		rec "$img" lo seq_mount_before_ms $((($(now_ns) - t) / 1000000))
		"$BEFORE" --root "$W/root-before" umount "$MNT.b"
	fi
done
"$ISORUN" --root "$W/root" umount "$MNT"
rm -rf "$W/root-before"

# Medians and the report.
python3 - "$RECS" "$RESULTS_JSON" "$BENCH_RESULTS/fs.md" "$(git -C "$BENCH_DIR" rev-parse --short HEAD)" \
	"$(uptime | sed 's/.*load average: //')" <<'PY'
import json, statistics, sys
recs, out_json, out_md, commit, load = sys.argv[1:6]
vals = {}
for line in open(recs):
    img, net, k, v = line.rstrip("\n").split("\t")
    vals.setdefault((img, net, k), []).append(float(v))
m = {k: statistics.median(v) for k, v in vals.items()}
json.dump({"|".join(k): v for k, v in m.items()}, open(out_json, "w"), indent=1, sort_keys=True)
def g(img, net, k):
    return m.get((img, net, k))
def split(img, net, key, parts="pull mount cmd"):
    # "total (part + part + part)" of a method's medians
    return "%.0f (%s)" % (g(img, net, key + "_ms"),
                          " + ".join("%.0f" % g(img, net, "%s_%s_ms" % (key, p)) for p in parts.split()))
def mib(b):
    return "n/a" if b is None else "%.1f MiB" % (b / 1048576)
imgs = sorted({k[0] for k in m}, key=lambda s: ["python", "browser"].index(s) if s in ("python", "browser") else 9)
nets = [n for n in ("lo", "wan") if any(k[1] == n and k[2] == "baseline_ms" for k in m)]
L = ["# fs: lazy mount numbers", "",
     "Generated by `bench/fs_bench.sh` (commit %s, load average at the end: %s). Cold = page "
     "cache dropped, empty isorun store; the index artifact was pushed beforehand "
     "(`isorun-index build --push`). Times in ms, medians." % (commit, load), "",
     "## Time to first command", "",
     "| image | net | baseline: skopeo copy + umoci unpack + cmd | isorun: pull + mount + cmd | speed-up | trace-ordered index: pull + mount + cmd | speed-up | isorun prefetch=none |",
     "|---|---|---:|---:|---:|---:|---:|---:|"]
has_before = any(k[2] == "isorun_before_ms" for k in m)
if has_before:
    L[-2] += " before (BEFORE=, same run): pull + mount + cmd | after/before |"
    L[-1] += "---:|---:|"
for i in imgs:
    for n in nets:
        b, s, z = g(i, n, "baseline_ms"), g(i, n, "isorun_ms"), g(i, n, "lazy_ms")
        if b is None:
            continue
        tr = g(i, n, "traced_ms")
        L.append("| %s | %s | %s | %s | %.1fx | %s | %.1fx | %.0f |" % (
            i, n, split(i, n, "baseline", "pull unpack cmd"), split(i, n, "isorun"), b / s,
            split(i, n, "traced"), b / tr, z))
        sb = g(i, n, "isorun_before_ms")
        if sb is not None:
            L[-1] += " %s | %.2f |" % (split(i, n, "isorun_before"), s / sb)
L += ["", "## Bytes fetched before the first command exits", "",
      "| image | net | touched (chunks read, uncompressed) | fetched, prefetch=none | ratio | fetched, prefetch=all | ratio | fetched, trace-ordered index | ratio |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for i in imgs:
    for n in nets:
        t, fn, fa = g(i, n, "touched"), g(i, n, "fetched_none"), g(i, n, "fetched_all")
        if t is None:
            continue
        ft = g(i, n, "fetched_traced")
        L.append("| %s | %s | %s | %s | %.2f | %s | %.2f | %s | %.2f |" % (i, n, mib(t), mib(fn), fn / t if t else 0, mib(fa), fa / t if t else 0,
                                                         mib(ft), ft / t if t else 0))
L += ["", "## Everything local", ""]
for i in imgs:
    d, mt, sz = g(i, "lo", "seq_disk_ms"), g(i, "lo", "seq_mount_ms"), g(i, "lo", "seq_file_bytes")
    if d is not None:
        L.append("- %s, sequential read of its largest file (%s), page cache dropped: local disk %.0f ms (%.0f MB/s), "
                 "mount %.0f ms (%.0f MB/s): **%.2fx** of local disk" % (i, mib(sz), d, sz / d / 1000, mt, sz / mt / 1000, d / mt))
        mb = g(i, "lo", "seq_mount_before_ms")
        if mb is not None:
            L[-1] += "; BEFORE's daemon in the same run: %.0f ms (%.2fx of local disk)" % (mb, d / mb)
    r = g(i, "lo", "rss_kib")
    if r is not None:
        L.append("- %s mounted, prefetch complete: daemon RSS %.1f MiB (peak %.1f MiB)" % (i, r / 1024, g(i, "lo", "hwm_kib") / 1024))
open(out_md, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
