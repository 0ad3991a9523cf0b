#!/bin/bash
# Time-to-first-command of real images, by method and network, side by side.
#
#   bench/run.sh [--quick] [--images "minimal python ..."] [--nets "lo wan"] [--reps N]
#                [--commands "chromium node"] (first commands to measure, by label)
#                [--methods "run-index run-traced"] (besides baseline and floor, always run)
#                [--out FILE.json] [--delay MS] [--rate RATE]
#
# --quick: minimal image, loopback, one repetition, results in bench/work/quick.json (the CTest
# entry integration/bench_quick). Default: every image, loopback and WAN, 3 repetitions,
# results in bench/results/run-<UTC time>.json (and latest.json). Exit 77 when not root or
# when an image must be built and the Debian mirror is unreachable; non-zero when any
# measured step fails.
#
# Methods (one m_<name> function each; a method whose isorun verb is not built yet prints
# "n/a (not built yet)"). Every cold repetition starts with `sync; echo 3 > drop_caches`.
#   baseline     skopeo copy → OCI layout, umoci unpack, first command in a chroot of the tree
#                (split: pull, unpack, command)
#   floor        the first command on the already-unpacked tree, cold page cache
#   index-oci    isorun-index build oci:LAYOUT:TAG (the local layout, no network), empty store;
#                also records the store's size afterwards (index + packs/chunks)
#   index        isorun-index build REF (from the registry), when the tool takes registry refs
#   pull         isorun pull REF into an empty store
#   run-cold     isorun run REF -- CMD, empty store (first boot builds the index)
#   run-index    isorun run REF -- CMD, store holding only the pre-built index
#   run-warm     isorun run REF -- CMD again, chunks local, page cache kept
#   run-traced   as run-index, with an index built with --startup-trace from a first-touch
#                trace of the same command (isorun mount --record-trace, prefetch=none,
#                loopback; recorded once per image and command, pushed next to a copy of
#                the image in IMAGE-traced-LABEL): what CI publishes after one run
#   run-stored   as run-traced, with every chunk already in the store (a previous run
#                fetched the image; its daemon stopped) and the page cache dropped: the
#                floor's state, the image on local disk
#   mount-cold / mount-index / mount-warm: the same three through `isorun mount REF DIR` and
#                the first command in a chroot of DIR (mount time included)
# Bytes: "touched" = page-cache-resident bytes of every file in the unpacked tree after the
# command ran on a cold cache (mincore via fincore; includes kernel readahead); "opened" =
# files opened/executed after chroot (strace) and their total size; "fetched" = what isorun
# says it fetched (`isorun stats`), n/a without that verb.
set -eEuo pipefail
. "$(dirname "$0")/lib.sh"
trap 'log "run.sh: failed at line $LINENO: $BASH_COMMAND"' ERR

QUICK=0
IMAGES=
NETS="lo wan"
COMMANDS= # first-command labels to keep (default: all of each image's)
REPS=3
ONLY_METHODS=
OUT=
WAN_ARGS=()
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--images) IMAGES=$2; shift ;;
	--nets) NETS=$2; shift ;;
	--commands) COMMANDS=$2; shift ;;
	--methods) ONLY_METHODS=$2; shift ;;
	--reps) REPS=$2; shift ;;
	--out) OUT=$2; shift ;;
	--delay | --rate) WAN_ARGS+=("$1" "$2"); shift ;;
	-h | --help) sed -n '2,30p' "$0"; exit 0 ;;
	*) die "unknown argument $1" ;;
	esac
	shift
done
if [ "$QUICK" = 1 ]; then
	IMAGES=${IMAGES:-minimal}
	NETS=lo
	REPS=1
	OUT=${OUT:-$BENCH_WORK/quick.json}
fi
IMAGES=${IMAGES:-minimal python python-zstd browser}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$BENCH_RESULTS/run-$STAMP.json}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps wants a positive number"

require_root
require_cmds skopeo umoci unshare chroot strace fincore jq curl awk
mkdir -p "$BENCH_WORK"
exec 9>"$BENCH_WORK/.run.lock"
flock -w 300 9 || die "another bench/run.sh has held $BENCH_WORK/.run.lock for 5 min"

RUN=$BENCH_WORK/run
IROOT=$RUN/isorun-root        # the client's store
IDXROOT=$RUN/isorun-index-root # the indexer's store ("CI")
RECORDS=$BENCH_WORK/records.$$.tsv
: >"$RECORDS"
rm -rf "$RUN"
mkdir -p "$RUN"
STARTED_REGISTRY=0
STARTED_WAN=0

cleanup() {
	local m
	# Everything mounted under the run's scratch: our bind mounts and isorun's own mounts.
	findmnt -rn -o TARGET | awk -v r="$RUN/" 'index($0, r) == 1' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	if declare -F isorun_quiesce >/dev/null; then
		isorun_quiesce "$IROOT"
		isorun_quiesce "$IDXROOT"
	fi
	[ "$STARTED_WAN" = 0 ] || "$BENCH_DIR/wan.sh" down >/dev/null 2>&1 || true
	[ "$STARTED_REGISTRY" = 0 ] || "$BENCH_DIR/registry.sh" stop >/dev/null 2>&1 || true
	rm -f "$RECORDS"
	rm -rf "$RUN"
}
trap cleanup EXIT

# Images and their first commands -----------------------------------------------------------

# image_cmds IMAGE: one line per first command: LABEL MODE ARGV... (MODE as in in_chroot),
# restricted to --commands when given.
image_cmds() {
	if [ -n "$COMMANDS" ]; then
		all_image_cmds "$1" | awk -v keep=" $COMMANDS " 'index(keep, " " $1 " ")'
	else
		all_image_cmds "$1"
	fi
}
all_image_cmds() {
	case $1 in
	minimal) echo "true bare /bin/true" ;;
	python | python-zstd) echo "numpy bare python3 -c 'import numpy'" ;;
	browser)
		echo "chromium full chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank"
		echo "node full node -e 1"
		;;
	*) die "no first command known for image $1" ;;
	esac
}

net_addr() { [ "$1" = lo ] && echo "$BENCH_LO_ADDR" || echo "$BENCH_WAN_ADDR"; }

image_digest() {
	jq -r --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
		<"$BENCH_WORK/oci/index.json" | head -n1
}

# image_ref IMAGE NET [REPO]: the image pinned by digest (isorun refuses floating tags, and a
# digest is what every method must fetch alike); the digest is the one in bench/work/oci, which
# the registry keeps (pushed with --preserve-digests). REPO defaults to bench-noindex/IMAGE, a
# repository of the harness's own that must never hold an index artifact (other benchmarks
# push artifacts next to IMAGE itself): ensure_no_index checks it before every repetition.
image_ref() {
	echo "$(net_addr "$2")/${3:-bench-noindex/$1}@$(image_digest "$1")"
}

# ensure_no_index IMAGE: deletes any index artifact found for IMAGE in bench-noindex/IMAGE (the
# OCI tag fallback names it sha256-<digest>; this registry has no referrers API), so that the
# "no index" methods really start without one. Says so when it had to.
ensure_no_index() {
	local repo=bench-noindex/$1 tag d
	for tag in $(curl -fsS "http://$BENCH_LO_ADDR/v2/$repo/tags/list" | jq -r '.tags[]? | select(startswith("sha256-"))'); do
		log "WARNING: someone pushed an index artifact ($tag) to $repo; deleting it"
		d=$(curl -fsSI -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
			-H 'Accept: application/vnd.oci.image.index.v1+json' \
			"http://$BENCH_LO_ADDR/v2/$repo/manifests/$tag" | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }' | tr -d '\r')
		# shellcheck disable=SC2015 # either failing is fatal
		[ -n "$d" ] && curl -fsS -X DELETE -o /dev/null "http://$BENCH_LO_ADDR/v2/$repo/manifests/$d" ||
			die "cannot delete $repo:$tag; the no-index measurements would be wrong"
	done
}

# record IMAGE CMD NET METHOD METRIC REP VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RECORDS"; }

# step NAME CMD...: runs a measured step; its failure fails the whole run (with its output).
step() {
	local name=$1
	shift
	if ! "$@" >"$RUN/step.log" 2>&1; then
		log "FAILED: $name: $*"
		tail -n 30 "$RUN/step.log" >&2
		exit 1
	fi
}

# run_first IMAGE LABEL ROOT: the first command LABEL of IMAGE in a chroot of ROOT.
run_first() {
	local line mode root=$3
	line=$(image_cmds "$1" | awk -v l="$2" '$1 == l')
	mode=$(awk '{ print $2 }' <<<"$line")
	eval "set -- ${line#* * }"
	in_chroot "$mode" "$root" "$@"
}
run_first_step() { step "first command" run_first "$@"; }

# isorun tools, when built
ISORUN=$(isorun_bin isorun)
ISORUN_INDEX=$(isorun_bin isorun-index)
# named with its scheme: no TLS probe on each cold run's fresh store (isorun releases before
# the http:// form match the plain entry)
export ISORUN_INSECURE_REGISTRIES=http://$BENCH_WAN_ADDR,$BENCH_WAN_ADDR

# Methods: avail_<m> says whether it can run (else "n/a"), m_<m> IMAGE LABEL NET REP measures
# and records. Adding a method = one pair of functions + its name in METHODS.
# Order matters: each *-warm method reuses the state its *-cold method just left.
METHODS="baseline floor index-oci index pull run-cold run-warm run-index run-traced run-stored mount-cold mount-warm mount-index"
if [ -n "$ONLY_METHODS" ]; then
	keep="baseline floor"
	for m in $METHODS; do
		case " $ONLY_METHODS " in *" $m "*) keep="$keep $m" ;; esac
	done
	METHODS=$keep
fi
declare -A METHOD_TITLE=(
	[baseline]="baseline: skopeo+umoci+chroot"
	[floor]="floor: unpacked tree, cold cache"
	[index-oci]="isorun-index build oci:LAYOUT"
	[index]="isorun-index build REF"
	[pull]="isorun pull"
	[run-cold]="isorun run, cold, no index"
	[run-index]="isorun run, cold, pre-built index"
	[run-warm]="isorun run, warm"
	[run-traced]="isorun run, cold, trace-ordered index"
	[run-stored]="isorun run, chunks in the store, trace-ordered index"
	[mount-cold]="isorun mount+chroot, cold, no index"
	[mount-index]="isorun mount+chroot, cold, pre-built index"
	[mount-warm]="isorun mount+chroot, warm"
)

avail_baseline() { return 0; }
avail_floor() { return 0; }
avail_index_oci() { has_verb "$ISORUN_INDEX" build; }
# Registry sources: the tool's usage names them (REF, registry or docker://) next to oci:.
index_takes_refs() { has_verb "$ISORUN_INDEX" build && "$ISORUN_INDEX" --help 2>&1 | grep -Eq 'REF|registry|docker://'; }
avail_index() { index_takes_refs; }
avail_pull() { has_verb "$ISORUN" pull; }
avail_run_cold() { has_verb "$ISORUN" run; }
avail_run_index() { has_verb "$ISORUN" run && avail_index_oci; }
avail_run_warm() { has_verb "$ISORUN" run; }
avail_run_traced() { has_verb "$ISORUN" run && has_verb "$ISORUN" mount && index_can_push && index_takes_refs; }
avail_run_stored() { avail_run_traced; }
avail_mount_cold() { has_verb "$ISORUN" mount; }
avail_mount_index() { has_verb "$ISORUN" mount && avail_index_oci; }
avail_mount_warm() { has_verb "$ISORUN" mount; }

# The baseline pulls and unpacks once per image and repetition (m_baseline_prepare), then
# times each first command on that tree, whose files the unpack left in the page cache.
BASE_TREE=
m_baseline_prepare() { # IMAGE NET REP
	local image=$1 net=$2 rep=$3 t
	rm -rf "$RUN/baseline"
	mkdir -p "$RUN/baseline"
	drop_caches
	t=$(now_ns)
	step "skopeo copy" skopeo copy -q --src-tls-verify=false \
		"docker://$(image_ref "$image" "$net")" "oci:$RUN/baseline/layout:latest"
	BASE_PULL=$(ms_since "$t")
	# umoci 0.4.7 cannot read zstd layers: they are decompressed to plain tar layers first
	# (timed apart, part of the total: a zstd-capable unpacker would decompress while
	# extracting, so this overstates the baseline by roughly one write + hash of the tars).
	BASE_CONVERT=0
	if grep -q 'tar+zstd' "$(oci_manifest "$RUN/baseline/layout" latest)"; then
		t=$(now_ns)
		step "zstd -d layers" oci_relayer "$RUN/baseline/layout" latest latest tar
		BASE_CONVERT=$(ms_since "$t")
	fi
	t=$(now_ns)
	step "umoci unpack" umoci unpack --image "$RUN/baseline/layout:latest" "$RUN/baseline/bundle"
	BASE_UNPACK=$(ms_since "$t")
	BASE_TREE=$RUN/baseline/bundle/rootfs
}
m_baseline() { # IMAGE LABEL NET REP
	local t cmd
	t=$(now_ns)
	run_first_step "$1" "$2" "$BASE_TREE"
	cmd=$(ms_since "$t")
	record "$1" "$2" "$3" baseline pull_ms "$4" "$BASE_PULL"
	record "$1" "$2" "$3" baseline unpack_ms "$4" "$BASE_UNPACK"
	[ "$BASE_CONVERT" = 0 ] || record "$1" "$2" "$3" baseline zstd_to_tar_ms "$4" "$BASE_CONVERT"
	record "$1" "$2" "$3" baseline cmd_ms "$4" "$cmd"
	record "$1" "$2" "$3" baseline total_ms "$4" "$(awk -v a="$BASE_PULL" -v b="$BASE_UNPACK" -v c="$cmd" -v d="$BASE_CONVERT" 'BEGIN { printf "%.1f", a + b + c + d }')"
}
m_floor() {
	local t
	drop_caches
	t=$(now_ns)
	run_first_step "$1" "$2" "$BASE_TREE"
	record "$1" "$2" "$3" floor total_ms "$4" "$(ms_since "$t")"
}

# bytes_touched IMAGE LABEL NET: page-level trace of the first command on the unpacked tree.
bytes_touched() {
	local image=$1 label=$2 net=$3 line mode resident opened
	line=$(image_cmds "$image" | awk -v l="$label" '$1 == l')
	mode=$(awk '{ print $2 }' <<<"$line")
	drop_caches
	run_first_step "$image" "$label" "$BASE_TREE"
	# fincore maps each file and asks mincore(): it reports residency without reading.
	resident=$(find "$BASE_TREE" -xdev -type f -print0 |
		xargs -0 -r fincore --bytes --noheadings --output RES 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
	drop_caches
	# strace the chroot itself: everything opened after chroot() is the command's.
	eval "set -- ${line#* * }"
	# shellcheck disable=SC2016
	step "strace" strace -f -qq -e trace=chroot,openat,open,execve -o "$RUN/strace.log" \
		bash -c '. "$1"; shift; in_chroot "$@"' sh "$BENCH_DIR/lib.sh" "$mode" "$BASE_TREE" "$@"
	# Sizes are taken inside the chroot (stat -L: symlinks resolve as the command saw them),
	# each file once (by device and inode).
	opened=$(awk '
		/chroot\(".*\) = 0/ { inside = 1; next }
		inside && /(openat|open|execve)\(/ && !/= -1/ {
			if (match($0, /"[^"]*"/)) print substr($0, RSTART + 1, RLENGTH - 2)
		}' "$RUN/strace.log" | sort -u | tr '\n' '\0' |
		{ xargs -0 -r chroot "$BASE_TREE" stat -L -c '%d:%i %s %F' -- 2>/dev/null || true; } |
		awk '/regular/ && !seen[$1]++ { n++; s += $2 } END { printf "%d %d", n, s }')
	record "$image" "$label" "$net" trace resident_bytes 1 "$resident"
	record "$image" "$label" "$net" trace opened_files 1 "${opened% *}"
	record "$image" "$label" "$net" trace opened_bytes 1 "${opened#* }"
}

# isorun methods -----------------------------------------------------------------------------


# isorun_fresh_root: an empty store. Mounts isorun left under the old one (the shared FUSE
# mount may outlive a run by design) are unmounted first, so rm never walks into one.
isorun_fresh_root() {
	if mountpoint -q "$RUN/mnt"; then isorun_umount "$RUN/mnt" || umount -l "$RUN/mnt"; fi
	isorun_quiesce "$IROOT"
	rm -rf "$IROOT"
	mkdir -p "$IROOT"
}

# root_pids ROOT: processes started by our isorun invocations on store ROOT (their command
# line has --root ROOT / --root=ROOT): the shared mount's daemon outlives `isorun run`.
root_pids() {
	local p
	for p in /proc/[0-9]*; do
		# shellcheck disable=SC2002 # cat: a vanished process is not an error
		cat "$p/cmdline" 2>/dev/null | tr '\0' ' ' | grep -q -e "--root=$1 " -e "--root $1 " &&
			echo "${p#/proc/}"
	done
	return 0
}

# isorun_quiesce ROOT: unmounts whatever is mounted under ROOT (deepest first), then waits for
# ROOT's daemons to exit (10 s, then they are killed, by pid), so nothing writes into ROOT.
isorun_quiesce() {
	local m pids i
	[ -d "$1" ] || return 0
	findmnt -rn -o TARGET | awk -v r="$1/" 'index($0, r) == 1' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	for i in $(seq 100); do
		pids=$(root_pids "$1")
		[ -n "$pids" ] || return 0
		sleep 0.1
	done
	log "isorun daemons still running on $1 after unmount: $pids; killing them"
	# shellcheck disable=SC2086
	kill $pids 2>/dev/null || true
	sleep 0.5
	return 0
}

# Registry options for isorun-index (isorun itself reads $ISORUN_INSECURE_REGISTRIES).
index_reg_opts() {
	"$ISORUN_INDEX" --help 2>&1 | grep -q -- --insecure-registry && echo "--insecure-registry $BENCH_WAN_ADDR"
	return 0
}

# The pre-built index, as CI would publish it: with --push, `isorun-index build --push` of the
# image in a repository of its own, IMAGE-indexed (same blobs, same digest), once per image and
# run, so the "no index" methods (repository IMAGE) never find an artifact. The client then
# starts from an empty store and finds the index through the registry. Without --push, the
# index is built from the OCI layout into a store of its own and only its indexes/ (never
# chunks/) is copied into the client's empty store.
declare -A INDEX_PUSHED
index_can_push() { "$ISORUN_INDEX" --help 2>&1 | grep -q -- --push; }
isorun_prebuilt_index() { # IMAGE NET: prepares $IROOT, sets PREBUILT_REF to the REF to use
	local image=$1 net=$2
	if index_can_push && index_takes_refs; then
		if [ -z "${INDEX_PUSHED[$image]:-}" ]; then
			step "push $image-indexed" skopeo copy -q --preserve-digests --dest-tls-verify=false \
				"oci:$BENCH_WORK/oci:$image" "docker://$BENCH_LO_ADDR/$image-indexed:latest"
			rm -rf "$IDXROOT"
			mkdir -p "$IDXROOT"
			# shellcheck disable=SC2046
			step "isorun-index build --push" "$ISORUN_INDEX" --root "$IDXROOT" build --push --force \
				$(index_reg_opts) "$(image_ref "$image" lo "$image-indexed")"
			INDEX_PUSHED[$image]=1
		fi
		isorun_fresh_root
		PREBUILT_REF=$(image_ref "$image" "$net" "$image-indexed")
		return 0
	fi
	rm -rf "$IDXROOT"
	mkdir -p "$IDXROOT"
	step "isorun-index build (prepare)" "$ISORUN_INDEX" --root "$IDXROOT" build "oci:$BENCH_WORK/oci:$image"
	isorun_fresh_root
	[ ! -d "$IDXROOT/indexes" ] || cp -a "$IDXROOT/indexes" "$IROOT/"
	PREBUILT_REF=$(image_ref "$image" "$net")
}

# isorun_stats KEY [DIR]: KEY (fetched_bytes, prefetched_bytes) summed over the live mounts
# of the store, from `isorun stats --json`; "null" when unknown.
isorun_stats() {
	has_verb "$ISORUN" stats || { echo null; return; }
	local out
	out=$("$ISORUN" --root "$IROOT" stats --json ${2:+"$2"} 2>/dev/null) || { echo null; return; }
	jq -r --arg k "$1" '[.. | objects | select(has($k)) | .[$k] | numbers] | if length > 0 then add else null end' \
		<<<"$out" 2>/dev/null || echo null
}
fetched_bytes() { isorun_stats fetched_bytes "$@"; }

# The index depends on the image only: measured for its first command on the first network.
index_once() { [ "$2" = "$(image_cmds "$1" | awk 'NR == 1 { print $1 }')" ] && [ "$3" = "${NETS%% *}" ]; }
m_index_oci() {
	index_once "$1" "$2" "$3" || return 0
	local t
	rm -rf "$IDXROOT"
	mkdir -p "$IDXROOT"
	drop_caches
	t=$(now_ns)
	step "isorun-index build oci:" "$ISORUN_INDEX" --root "$IDXROOT" build "oci:$BENCH_WORK/oci:$1"
	record "$1" "$2" "$3" index-oci total_ms "$4" "$(ms_since "$t")"
	record "$1" "$2" "$3" index-oci store_bytes "$4" "$(du -sb "$IDXROOT" | cut -f1)"
}
m_index() {
	index_once "$1" "$2" "$3" || return 0
	local t
	rm -rf "$IDXROOT"
	mkdir -p "$IDXROOT"
	drop_caches
	t=$(now_ns)
	# shellcheck disable=SC2046
	step "isorun-index build REF" "$ISORUN_INDEX" --root "$IDXROOT" build $(index_reg_opts) "$(image_ref "$1" "$3")"
	record "$1" "$2" "$3" index total_ms "$4" "$(ms_since "$t")"
}
# Pulling depends on the image, not the command: timed with the image's first command.
first_cmd() { [ "$2" = "$(image_cmds "$1" | awk 'NR == 1 { print $1 }')" ]; }
m_pull() {
	first_cmd "$1" "$2" || return 0
	local t
	isorun_fresh_root
	drop_caches
	t=$(now_ns)
	step "isorun pull" "$ISORUN" --root "$IROOT" pull "$(image_ref "$1" "$3")"
	record "$1" "$2" "$3" pull total_ms "$4" "$(ms_since "$t")"
}

isorun_run() { # IMAGE LABEL NET [REF]
	local line ref=${4:-$(image_ref "$1" "$3")}
	line=$(image_cmds "$1" | awk -v l="$2" '$1 == l')
	eval "set -- ${line#* * }"
	# The environment the chroot methods give the command (in_chroot): HOME on a tmpfs,
	# where chromium writes its profile, instead of the image's HOME in the scratch layer.
	"$ISORUN" --root "$IROOT" run --env HOME=/tmp --env LANG=C.UTF-8 "$ref" -- "$@"
}
m_run_cold() {
	local t
	isorun_fresh_root
	drop_caches
	t=$(now_ns)
	step "isorun run (cold)" isorun_run "$1" "$2" "$3"
	WARM_STATE="run $*"
	record "$1" "$2" "$3" run-cold total_ms "$4" "$(ms_since "$t")"
	record "$1" "$2" "$3" run-cold fetched_bytes "$4" "$(fetched_bytes)"
}
m_run_index() {
	local t ref
	isorun_prebuilt_index "$1" "$3"
	ref=$PREBUILT_REF
	drop_caches
	t=$(now_ns)
	step "isorun run (pre-built index)" isorun_run "$1" "$2" "$3" "$ref"
	record "$1" "$2" "$3" run-index total_ms "$4" "$(ms_since "$t")"
	record "$1" "$2" "$3" run-index fetched_bytes "$4" "$(fetched_bytes)"
}
# isorun_traced_index IMAGE LABEL NET: sets TRACED_REF to the image with a trace-ordered index
# for LABEL's command (built and pushed once per image and command).
declare -A TRACED_PUSHED
isorun_traced_index() {
	local image=$1 label=$2 net=$3 repo=$1-traced-$2 line mode
	if [ -z "${TRACED_PUSHED[$image/$label]:-}" ]; then
		isorun_prebuilt_index "$image" lo
		isorun_fresh_root
		mkdir -p "$RUN/mnt"
		step "pull for the trace" "$ISORUN" --root "$IROOT" pull -q "$PREBUILT_REF"
		step "mount --record-trace" "$ISORUN" --root "$IROOT" mount --prefetch=none \
			--record-trace "$RUN/trace-$image-$label" "$PREBUILT_REF" "$RUN/mnt"
		line=$(image_cmds "$image" | awk -v l="$label" '$1 == l')
		mode=$(awk '{ print $2 }' <<<"$line")
		eval "set -- ${line#* * }"
		in_chroot "$mode" "$RUN/mnt" "$@" >/dev/null 2>&1 || log "WARNING: the traced command failed"
		isorun_fresh_root # unmounts; the daemon writes the trace's last version as it exits
		step "push $repo" skopeo copy -q --preserve-digests --dest-tls-verify=false \
			"oci:$BENCH_WORK/oci:$image" "docker://$BENCH_LO_ADDR/$repo:latest"
		rm -rf "$IDXROOT"
		mkdir -p "$IDXROOT"
		# shellcheck disable=SC2046
		step "isorun-index build --startup-trace --push" "$ISORUN_INDEX" --root "$IDXROOT" \
			build --push --force --startup-trace "$RUN/trace-$image-$label" $(index_reg_opts) \
			"$(image_ref "$image" lo "$repo")"
		TRACED_PUSHED[$image/$label]=1
	fi
	isorun_fresh_root
	TRACED_REF=$(image_ref "$image" "$net" "$repo")
}
m_run_traced() {
	local t
	isorun_traced_index "$1" "$2" "$3"
	drop_caches
	t=$(now_ns)
	step "isorun run (trace-ordered index)" isorun_run "$1" "$2" "$3" "$TRACED_REF"
	record "$1" "$2" "$3" run-traced total_ms "$4" "$(ms_since "$t")"
	record "$1" "$2" "$3" run-traced fetched_bytes "$4" "$(fetched_bytes)"
}

m_run_stored() {
	local t i
	isorun_traced_index "$1" "$2" "$3"
	step "isorun run (filling the store)" isorun_run "$1" "$2" "$3" "$TRACED_REF"
	# The rest of the image arrives in the background (the mount is kept warm): every chunk.
	for i in $(seq 1 600); do
		[ "$("$ISORUN" --root "$IROOT" stats --json 2>/dev/null | jq -r '.mounts[0].prefetch.complete')" = true ] && break
		sleep 0.2
	done
	isorun_quiesce "$IROOT"
	drop_caches
	t=$(now_ns)
	step "isorun run (chunks in the store)" isorun_run "$1" "$2" "$3" "$TRACED_REF"
	record "$1" "$2" "$3" run-stored total_ms "$4" "$(ms_since "$t")"
	record "$1" "$2" "$3" run-stored fetched_bytes "$4" "$(fetched_bytes)"
}

# WARM_STATE names the image/command/network/repetition whose cold run left the store (and,
# for mounts, the live mount) in place; a warm method without it warms up by itself first.
WARM_STATE=
m_run_warm() {
	local t
	if [ "$WARM_STATE" != "run $*" ]; then
		isorun_fresh_root
		step "isorun run (warming)" isorun_run "$1" "$2" "$3"
	fi
	t=$(now_ns)
	step "isorun run (warm)" isorun_run "$1" "$2" "$3"
	record "$1" "$2" "$3" run-warm total_ms "$4" "$(ms_since "$t")"
}

# isorun_mount REF DIR: mounts, whether `isorun mount` daemonizes or stays in the foreground
# (then it runs in the background until DIR is unmounted). Waits for the mount (120 s max).
MOUNT_PID= # the `isorun mount` of isorun_mount, when it stays in the foreground
isorun_mount() {
	mkdir -p "$2"
	"$ISORUN" --root "$IROOT" mount "$1" "$2" >"$RUN/mount.log" 2>&1 &
	MOUNT_PID=$!
	local i
	for i in $(seq 1200); do
		mountpoint -q "$2" && return 0
		if ! kill -0 "$MOUNT_PID" 2>/dev/null; then
			wait "$MOUNT_PID" || { cat "$RUN/mount.log" >&2; return 1; }
			mountpoint -q "$2" && return 0
			echo "isorun mount exited 0 without mounting $2" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "isorun mount: $2 not mounted after 120 s" >&2
	return 1
}
isorun_umount() {
	if has_verb "$ISORUN" umount; then
		"$ISORUN" --root "$IROOT" umount "$1" || umount "$1"
	else
		umount "$1"
	fi
	[ -z "$MOUNT_PID" ] || wait "$MOUNT_PID" 2>/dev/null || true
}
mount_and_run() { # IMAGE LABEL NET [REF]: mount, first command in a chroot of it
	isorun_mount "${4:-$(image_ref "$1" "$3")}" "$RUN/mnt" && run_first "$1" "$2" "$RUN/mnt"
}
m_mount_cold() {
	local t
	isorun_fresh_root
	drop_caches
	t=$(now_ns)
	step "isorun mount + chroot (cold)" mount_and_run "$1" "$2" "$3"
	record "$1" "$2" "$3" mount-cold total_ms "$4" "$(ms_since "$t")"
	record "$1" "$2" "$3" mount-cold fetched_bytes "$4" "$(fetched_bytes "$RUN/mnt")"
	record "$1" "$2" "$3" mount-cold prefetched_bytes "$4" "$(isorun_stats prefetched_bytes "$RUN/mnt")"
	# Left mounted for mount-warm.
	WARM_STATE="mount $*"
}
m_mount_index() {
	local t ref
	isorun_prebuilt_index "$1" "$3"
	ref=$PREBUILT_REF
	drop_caches
	t=$(now_ns)
	step "isorun mount + chroot (pre-built index)" mount_and_run "$1" "$2" "$3" "$ref"
	record "$1" "$2" "$3" mount-index total_ms "$4" "$(ms_since "$t")"
	record "$1" "$2" "$3" mount-index fetched_bytes "$4" "$(fetched_bytes "$RUN/mnt")"
	record "$1" "$2" "$3" mount-index prefetched_bytes "$4" "$(isorun_stats prefetched_bytes "$RUN/mnt")"
	step "umount" isorun_umount "$RUN/mnt"
}
m_mount_warm() {
	local t
	if [ "$WARM_STATE" != "mount $*" ]; then
		isorun_fresh_root
		step "isorun mount + chroot (warming)" mount_and_run "$1" "$2" "$3"
	fi
	WARM_STATE=
	t=$(now_ns)
	step "chroot (warm)" run_first "$1" "$2" "$RUN/mnt"
	record "$1" "$2" "$3" mount-warm total_ms "$4" "$(ms_since "$t")"
	step "umount" isorun_umount "$RUN/mnt"
}

# Set-up ------------------------------------------------------------------------------------

rc=0
# shellcheck disable=SC2086,SC2046
"$BENCH_DIR/images.sh" $(printf -- '--only %s ' $IMAGES) --no-push >"$BENCH_WORK/images.log" 2>&1 || rc=$?
[ "$rc" = 77 ] && skip "$(grep SKIP "$BENCH_WORK/images.log" | head -n1)"
[ "$rc" = 0 ] || { tail -n 30 "$BENCH_WORK/images.log" >&2; die "bench/images.sh failed"; }

if ! "$BENCH_DIR/registry.sh" status >/dev/null 2>&1; then
	"$BENCH_DIR/registry.sh" start >/dev/null
	STARTED_REGISTRY=1
fi
for image in $IMAGES; do
	step "push $image" skopeo copy -q --preserve-digests --dest-tls-verify=false \
		"oci:$BENCH_WORK/oci:$image" "docker://$BENCH_LO_ADDR/bench-noindex/$image:latest"
done
case " $NETS " in *" wan "*)
	if ! "$BENCH_DIR/wan.sh" status >/dev/null 2>&1; then
		"$BENCH_DIR/wan.sh" up "${WAN_ARGS[@]}" >/dev/null
		STARTED_WAN=1
	fi
	;;
esac
WAN_DESC=$(cat "$BENCH_WORK/wan.state" 2>/dev/null || echo "not used")

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A AVAIL
for m in $METHODS; do
	if "avail_${m//-/_}"; then AVAIL[$m]=1; else AVAIL[$m]=0; fi
done
log "isorun: ${ISORUN:-not built}; isorun-index: ${ISORUN_INDEX:-not built}"
log "methods available: $(for m in $METHODS; do [ "${AVAIL[$m]}" = 1 ] && printf '%s ' "$m"; done)"

# Measurements ------------------------------------------------------------------------------

# Networks are interleaved within each repetition, so that load changing over time (this
# machine is shared) does not favour one of them.
for image in $IMAGES; do
	labels=$(image_cmds "$image" | awk '{ print $1 }')
	for rep in $(seq "$REPS"); do
		for net in $NETS; do
			log "$image / $net / repetition $rep of $REPS"
			ensure_no_index "$image"
			m_baseline_prepare "$image" "$net" "$rep"
			for label in $labels; do
				m_baseline "$image" "$label" "$net" "$rep"
				m_floor "$image" "$label" "$net" "$rep"
				for m in $METHODS; do
					case $m in baseline | floor) continue ;; esac
					[ "${AVAIL[$m]}" = 1 ] || continue
					"m_${m//-/_}" "$image" "$label" "$net" "$rep"
				done
			done
			# The trace depends on the tree, not the network or the repetition: once.
			if [ "$rep" = 1 ] && [ "$net" = "${NETS%% *}" ]; then
				for label in $labels; do bytes_touched "$image" "$label" "$net"; done
			fi
		done
	done
	rm -rf "$RUN/baseline"
done

# Results -----------------------------------------------------------------------------------

machine_json() {
	jq -n --arg kernel "$(uname -r)" \
		--arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
		--argjson cpus "$(nproc)" \
		--argjson mem "$(awk '/MemTotal/ { print $2 * 1024 }' /proc/meminfo)" \
		--arg os "$(. /etc/os-release && echo "$PRETTY_NAME")" \
		--arg fs "$(df -T "$BENCH_WORK" | awk 'NR == 2 { print $2 }')" \
		--arg skopeo "$(skopeo --version | awk '{ print $3 }')" \
		--arg umoci "$(umoci --version | awk '{ print $3 }')" \
		--arg registry "$(docker-registry --version | awk '{ print $3 }')" \
		--arg commit "$(git -C "$BENCH_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		--arg load "$LOAD_BEFORE -> $(cut -d' ' -f1-3 /proc/loadavg)" \
		'{loadavg: $load, kernel: $kernel, cpu: $cpu, cpus: $cpus, mem_bytes: $mem, os: $os, work_fs: $fs,
		  skopeo: $skopeo, umoci: $umoci, docker_registry: $registry, isorun_commit: $commit}'
}

images_json() {
	local i
	for i in $IMAGES; do cat "$BENCH_WORK/stats/$i.json"; done | jq -s .
}

# One object per image, command, network, method, metric: the repetitions and their median.
results_json() {
	awk -F'\t' '{ k = $1 "\t" $2 "\t" $3 "\t" $4 "\t" $5; v[k] = v[k] (v[k] == "" ? "" : ",") $7 }
		END { for (k in v) print k "\t" v[k] }' "$RECORDS" | sort |
		while IFS=$'\t' read -r image label net method metric values; do
			# shellcheck disable=SC2086
			med=$(median ${values//,/ })
			[[ $values == *null* ]] && med=null
			jq -n --arg i "$image" --arg c "$label" --arg n "$net" --arg m "$method" \
				--arg k "$metric" --argjson v "[${values}]" --argjson med "$med" \
				'{image: $i, command: $c, network: $n, method: $m, metric: $k, values: $v, median: $med}'
		done | jq -s .
}

mkdir -p "$(dirname "$OUT")"
jq -n --arg date "$(date -u +%FT%TZ)" --argjson machine "$(machine_json)" \
	--argjson images "$(images_json)" --argjson results "$(results_json)" \
	--arg nets "$NETS" --argjson reps "$REPS" --arg wan "$WAN_DESC" \
	--arg methods "$METHODS" \
	--argjson avail "$(for m in $METHODS; do echo "{\"$m\": ${AVAIL[$m]}}"; done | jq -s 'add | map_values(. == 1)')" \
	--argjson titles "$(for m in $METHODS; do jq -n --arg k "$m" --arg v "${METHOD_TITLE[$m]}" '{($k): $v}'; done | jq -s add)" \
	--argjson cmds "$(for i in $IMAGES; do image_cmds "$i" | while read -r l _ a; do
		jq -n --arg i "$i" --arg l "$l" --arg a "$a" '{image: $i, label: $l, argv: $a}'; done; done | jq -s .)" \
	'{date: $date, machine: $machine, networks: ($nets | split(" ")), repetitions: $reps,
	  wan: $wan, methods: ($methods | split(" ")), method_titles: $titles, available: $avail,
	  commands: $cmds, images: $images, results: $results}' >"$OUT"
[ "$QUICK" = 1 ] || cp "$OUT" "$BENCH_RESULTS/latest.json"

"$BENCH_DIR/plot.sh" --table "$OUT"
log "results: $OUT"
