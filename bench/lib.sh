# shellcheck shell=bash
# shellcheck disable=SC2034 # the BENCH_* settings are used by the scripts that source this
# Helpers shared by the benchmark harness scripts (sourced, never run).
#
# Everything the harness makes lives under $BENCH_WORK (default bench/work/, gitignored):
#   rootfs/       debootstrap output, cached between runs
#   oci/          one OCI layout holding every image, one tag per image
#   registry/     docker-registry storage (shared by the loopback and the WAN registry)
#   run/          per-run scratch (pulled layouts, unpacked trees, isorun roots)
#   *.pid *.log   the registries' pid and log files
#
# Knobs (environment): ISORUN_BENCH_WORK, ISORUN_BENCH_PORT (loopback registry, default 5117),
# ISORUN_BENCH_MIRROR (Debian mirror; default: the one apt uses on this machine),
# ISORUN_BUILD_DIR (where tools/isorun and tools/isorun-index are looked up).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_WORK=${ISORUN_BENCH_WORK:-$BENCH_DIR/work}
BENCH_RESULTS=$BENCH_DIR/results
BENCH_PORT=${ISORUN_BENCH_PORT:-5117}
BENCH_LO_ADDR=127.0.0.1:$BENCH_PORT

# The WAN registry: a network namespace of our own, a veth pair with addresses of our own.
BENCH_NETNS=isorun-bench
BENCH_VETH_HOST=ibench0
BENCH_VETH_NS=ibench1
BENCH_WAN_HOST_IP=10.213.0.1
BENCH_WAN_NS_IP=10.213.0.2
BENCH_WAN_PORT=5000
BENCH_WAN_ADDR=$BENCH_WAN_NS_IP:$BENCH_WAN_PORT

SUITE=bookworm

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
# skip REASON: exit 77, which CTest reports as skipped.
skip() {
	echo "SKIP: $*" >&2
	exit 77
}

require_root() { [ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot, mounts, netns)"; }

require_cmds() {
	local c missing=
	for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing="$missing $c"; done
	[ -z "$missing" ] || skip "missing commands:$missing (run scripts/deps.sh)"
}

# The Debian mirror apt uses here (deb822 .sources or one-line .list), for debootstrap and
# the chroots' apt. Only Debian's main archive qualifies, never a third-party repository.
debian_mirror() {
	if [ -n "${ISORUN_BENCH_MIRROR:-}" ]; then
		echo "$ISORUN_BENCH_MIRROR"
		return
	fi
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
	if [ -z "$m" ]; then
		m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }')
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

mirror_reachable() {
	curl -fsS -o /dev/null --max-time 15 "$(debian_mirror)/dists/$SUITE/Release"
}

# now_ns: monotonic-enough wall clock in nanoseconds (date +%s%N; bash 5 has EPOCHREALTIME).
now_ns() {
	local t=${EPOCHREALTIME/./}
	echo "${t}000"
}
# ms_since START_NS: elapsed milliseconds, 1 decimal.
ms_since() {
	local end
	end=$(now_ns)
	awk -v a="$1" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# median V...: the median of numbers (mean of the two middle ones for an even count).
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "null"; exit }
		if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# human BYTES
human() {
	numfmt --to=iec-i --suffix=B --format='%.1f' "$1" 2>/dev/null || echo "$1"
}

# in_chroot MODE ROOT CMD...: run CMD in a chroot of ROOT, in a private mount namespace so
# every mount made for it disappears with it, even if we are killed. ROOT is never written
# to (it may be a read-only FUSE mount): /dev is a fresh tmpfs with bind-mounted nodes.
# MODE "bare": nothing mounted; "full": /proc, a minimal /dev with /dev/shm, /tmp tmpfs.
# The environment is reset: PATH, HOME=/tmp, LANG=C.UTF-8.
in_chroot() {
	local mode=$1 root=$2
	shift 2
	local envs=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		HOME=/tmp LANG=C.UTF-8)
	if [ "$mode" = bare ]; then
		unshare --mount --propagation private -- chroot "$root" "${envs[@]}" "$@"
		return
	fi
	# shellcheck disable=SC2016
	unshare --mount --propagation private -- sh -euc '
		r=$1; shift
		mount -t proc proc "$r/proc"
		mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
		for n in null zero full random urandom tty; do
			: >"$r/dev/$n"
			mount --bind "/dev/$n" "$r/dev/$n"
		done
		mkdir "$r/dev/shm" "$r/dev/pts"
		mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
		ln -s /proc/self/fd "$r/dev/fd"
		ln -s /proc/self/fd/0 "$r/dev/stdin"
		ln -s /proc/self/fd/1 "$r/dev/stdout"
		ln -s /proc/self/fd/2 "$r/dev/stderr"
		mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
		exec chroot "$r" "$@"' sh "$root" "${envs[@]}" "$@"
}

# Registry helpers -------------------------------------------------------------------------

registry_config() { # registry_config ADDR FILE
	cat >"$2" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $BENCH_WORK/registry
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $1
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

# wait_http URL: until the registry answers /v2/ (10 s at most).
wait_http() {
	local _
	for _ in $(seq 100); do
		curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# isorun tool detection --------------------------------------------------------------------

# isorun_build_dir: the build whose tools are measured: $ISORUN_BUILD_DIR (CTest sets it), else
# the first of build/h-bench, build/debug that has tools/isorun. Both tools come from it.
isorun_build_dir() {
	local d
	for d in "${ISORUN_BUILD_DIR:-}" "$BENCH_DIR/../build/h-bench" "$BENCH_DIR/../build/debug"; do
		[ -n "$d" ] && [ -x "$d/tools/isorun" ] && { (cd "$d" && pwd); return 0; }
	done
	return 0
}

isorun_bin() { # isorun_bin NAME: path of a built isorun tool, or nothing
	local d
	d=$(isorun_build_dir)
	if [ -n "$d" ]; then
		[ ! -x "$d/tools/$1" ] || echo "$d/tools/$1"
		return 0
	fi
	command -v "$1" 2>/dev/null || true
}

# has_verb BIN VERB: BIN --help lists VERB (the usage lists verbs indented, one a line).
has_verb() {
	[ -n "$1" ] && [ -x "$1" ] && "$1" --help 2>&1 | grep -Eq "^[[:space:]]+$2([[:space:]]|$)"
}

# OCI layouts --------------------------------------------------------------------------------

# oci_manifest LAYOUT TAG: path of TAG's manifest blob (fails when there is no such tag).
oci_manifest() {
	local d
	d=$(jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
		<"$1/index.json" | head -n1)
	[ -n "$d" ] || { log "no tag $2 in $1"; return 1; }
	echo "$1/blobs/sha256/${d#sha256:}"
}

# oci_relayer LAYOUT SRC_TAG DST_TAG FORMAT: tags as DST_TAG (replacing it) a copy of SRC_TAG
# whose layers are re-encoded as FORMAT: "zstd" (tar+zstd, level 3, the docker default) or
# "tar" (uncompressed). Layer descriptors get the new media type, digest and size; the config,
# and with it the diff_ids (digests of the uncompressed tars), is unchanged: same image.
oci_relayer() {
	local layout=$1 src=$2 dst=$3 fmt=$4 mf tmp layers='[]' d media hex size out_media dec
	case $fmt in
	zstd) out_media=application/vnd.oci.image.layer.v1.tar+zstd ;;
	tar) out_media=application/vnd.oci.image.layer.v1.tar ;;
	*) log "oci_relayer: unknown format $fmt"; return 1 ;;
	esac
	mf=$(oci_manifest "$layout" "$src") || return 1
	tmp=$(mktemp -d "$layout/.relayer.XXXXXX") || return 1
	while read -r d media; do
		case $media in
		*tar+gzip) dec="gzip -dc" ;;
		*tar+zstd) dec="zstd -dcq" ;;
		*.tar) dec="cat" ;;
		*) log "oci_relayer: unexpected layer media type $media"; rm -rf "$tmp"; return 1 ;;
		esac
		if [ "$fmt" = zstd ]; then
			$dec <"$layout/blobs/sha256/${d#sha256:}" | zstd -q -3 -T0 >"$tmp/layer" || { rm -rf "$tmp"; return 1; }
		else
			$dec <"$layout/blobs/sha256/${d#sha256:}" >"$tmp/layer" || { rm -rf "$tmp"; return 1; }
		fi
		hex=$(sha256sum "$tmp/layer" | cut -d' ' -f1)
		size=$(stat -c %s "$tmp/layer")
		mv "$tmp/layer" "$layout/blobs/sha256/$hex"
		layers=$(jq -c --arg d "sha256:$hex" --argjson s "$size" --arg m "$out_media" \
			'. + [{mediaType: $m, digest: $d, size: $s}]' <<<"$layers")
	done < <(jq -r '.layers[] | "\(.digest) \(.mediaType)"' <"$mf")
	jq -c --argjson layers "$layers" '.layers = $layers' <"$mf" >"$tmp/manifest"
	hex=$(sha256sum "$tmp/manifest" | cut -d' ' -f1)
	size=$(stat -c %s "$tmp/manifest")
	mv "$tmp/manifest" "$layout/blobs/sha256/$hex"
	jq --arg d "sha256:$hex" --argjson s "$size" --arg t "$dst" '
		.manifests |= (map(select(.annotations["org.opencontainers.image.ref.name"] != $t))
		+ [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
		    annotations: {"org.opencontainers.image.ref.name": $t}}])' \
		<"$layout/index.json" >"$tmp/index.json"
	mv "$tmp/index.json" "$layout/index.json"
	rmdir "$tmp"
}
