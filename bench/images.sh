#!/bin/bash
# Builds the benchmark images from Debian packages and pushes them to the loopback registry.
#
#   bench/images.sh [--only NAME]... [--no-push] [--rebuild]
#
# Images (tags of one OCI layout, bench/work/oci):
#   minimal      debootstrap --variant=minbase bookworm, one layer
#   python       minimal + python3, python3-numpy + a layer deleting base files (whiteouts);
#                Env/Entrypoint set: three layers
#   python-zstd  python with every layer recompressed to zstd (tar+zstd media type)
#   browser      minimal + chromium, nodejs, npm, fonts, python3, ffmpeg (> 1 GB unpacked)
#
# Idempotent: a tag already in the layout is reused (--rebuild drops it first); the debootstrap
# tree is cached in bench/work/rootfs/. Prints sizes, layer and file counts at the end.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ALL_IMAGES="minimal python python-zstd browser"
ONLY=
PUSH=1
REBUILD=0
while [ $# -gt 0 ]; do
	case $1 in
	--only) ONLY="$ONLY $2"; shift ;;
	--only=*) ONLY="$ONLY ${1#--only=}" ;;
	--no-push) PUSH=0 ;;
	--rebuild) REBUILD=1 ;;
	-h | --help) sed -n '2,15p' "$0"; exit 0 ;;
	*) die "unknown argument $1" ;;
	esac
	shift
done
ONLY=${ONLY:-$ALL_IMAGES}
for n in $ONLY; do
	case " $ALL_IMAGES " in *" $n "*) ;; *) die "unknown image $n (one of: $ALL_IMAGES)" ;; esac
done

require_root
require_cmds debootstrap umoci skopeo zstd jq curl unshare chroot docker-registry

LAYOUT=$BENCH_WORK/oci
BASE=$BENCH_WORK/rootfs/base
STATS=$BENCH_WORK/stats
mkdir -p "$BENCH_WORK" "$STATS"

# Only one builder at a time on a work directory.
exec 8>"$BENCH_WORK/.images.lock"
flock 8

BUNDLE=
cleanup() {
	# chroot mounts live in private mount namespaces and vanish with them; the bundle is
	# scratch and is only kept while a build runs.
	[ -z "$BUNDLE" ] || rm -rf "$BUNDLE"
}
trap cleanup EXIT

has_tag() { [ -f "$LAYOUT/index.json" ] && umoci ls --layout "$LAYOUT" | grep -qx "$1"; }

ensure_layout() { [ -f "$LAYOUT/index.json" ] || umoci init --layout "$LAYOUT"; }

need_mirror() {
	mirror_reachable || skip "Debian mirror $(debian_mirror) unreachable; cannot build images"
}

ensure_base() {
	[ -f "$BASE/.isorun-bench-complete" ] && return 0
	need_mirror
	log "debootstrap --variant=minbase $SUITE from $(debian_mirror) (1-2 min)"
	rm -rf "$BASE"
	mkdir -p "$(dirname "$BASE")"
	debootstrap --variant=minbase "$SUITE" "$BASE" "$(debian_mirror)" >"$BENCH_WORK/debootstrap.log" 2>&1 ||
		die "debootstrap failed, see $BENCH_WORK/debootstrap.log"
	# Container images carry no resolver config or apt lists; runtimes provide the former.
	rm -f "$BASE/etc/resolv.conf" "$BASE/etc/hostname"
	rm -rf "$BASE"/var/lib/apt/lists/* "$BASE"/var/cache/apt/*.bin "$BASE"/var/cache/apt/archives/*.deb
	touch "$BASE/.isorun-bench-complete"
}

# chroot_apt ROOT PKG...: installs packages in ROOT with services denied (policy-rc.d) and
# the chroot mounts (/proc, /dev) made in a private mount namespace: they go away with it.
chroot_apt() {
	local root=$1
	shift
	need_mirror
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	local rc=0
	in_chroot full "$root" env DEBIAN_FRONTEND=noninteractive sh -ec '
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "$@"
		apt-get clean' sh "$@" >"$BENCH_WORK/apt-$(basename "$BUNDLE").log" 2>&1 || rc=$?
	rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/apt/* \
		"$root"/var/log/dpkg.log "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
	[ "$rc" = 0 ] || die "apt-get install $* failed, see $BENCH_WORK/apt-$(basename "$BUNDLE").log"
}

new_bundle() { # new_bundle NAME: a fresh scratch bundle path in $BUNDLE
	BUNDLE=$BENCH_WORK/bundle-$1
	rm -rf "$BUNDLE"
}

# save_stats NAME ROOTFS: merged-tree facts, taken while the final tree is at hand.
save_stats() {
	local name=$1 root=$2 mf
	mf=$(manifest_of "$name")
	jq -n --arg name "$name" \
		--argjson files "$(find "$root" -xdev -type f | wc -l)" \
		--argjson entries "$(find "$root" -xdev | wc -l)" \
		--argjson unpacked "$(du -sb --apparent-size "$root" | cut -f1)" \
		--argjson layers "$(jq '.layers | length' <"$mf")" \
		--argjson compressed "$(jq '[.layers[].size] | add' <"$mf")" \
		--arg media "$(jq -r '.layers[0].mediaType' <"$mf")" \
		'{name: $name, layers: $layers, compressed_bytes: $compressed, unpacked_bytes: $unpacked,
		  files: $files, entries: $entries, layer_media_type: $media}' >"$STATS/$name.json"
}

manifest_of() { oci_manifest "$LAYOUT" "$1" || exit 1; } # manifest_of TAG: its manifest blob

build_minimal() {
	ensure_base
	new_bundle minimal
	umoci new --image "$LAYOUT:minimal"
	umoci config --image "$LAYOUT:minimal" --os linux --architecture amd64 \
		--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--config.cmd /bin/bash
	umoci unpack --image "$LAYOUT:minimal" "$BUNDLE" >/dev/null
	cp -a "$BASE/." "$BUNDLE/rootfs/"
	rm -f "$BUNDLE/rootfs/.isorun-bench-complete"
	umoci repack --image "$LAYOUT:minimal" "$BUNDLE"
	save_stats minimal "$BUNDLE/rootfs"
}

build_python() {
	has_tag minimal || build_minimal
	new_bundle python
	umoci unpack --image "$LAYOUT:minimal" "$BUNDLE" >/dev/null
	chroot_apt "$BUNDLE/rootfs" python3 python3-numpy
	umoci repack --refresh-bundle --image "$LAYOUT:python" "$BUNDLE"
	# Third layer: whiteouts for base files (docs, man pages, locales, a directory with
	# children, single files) and the runtime config.
	rm -rf "$BUNDLE"/rootfs/usr/share/doc/* "$BUNDLE"/rootfs/usr/share/man \
		"$BUNDLE"/rootfs/usr/share/info "$BUNDLE"/rootfs/usr/share/locale/* \
		"$BUNDLE/rootfs/etc/motd" "$BUNDLE/rootfs/usr/bin/perl"*
	umoci repack --image "$LAYOUT:python" "$BUNDLE"
	umoci config --image "$LAYOUT:python" \
		--config.env PYTHONDONTWRITEBYTECODE=1 --config.env LANG=C.UTF-8 \
		--config.entrypoint python3 --clear=config.cmd
	save_stats python "$BUNDLE/rootfs"
}

# python-zstd: the python image with its layer blobs recompressed (umoci cannot write zstd).
build_python_zstd() {
	has_tag python || build_python
	oci_relayer "$LAYOUT" python python-zstd zstd || die "recompressing python's layers failed"
	jq --argjson c "$(jq '[.layers[].size] | add' <"$(manifest_of python-zstd)")" \
		'.name = "python-zstd" | .compressed_bytes = $c
		 | .layer_media_type = "application/vnd.oci.image.layer.v1.tar+zstd"' \
		<"$STATS/python.json" >"$STATS/python-zstd.json"
}

BROWSER_PKGS="chromium nodejs npm python3 fonts-liberation fonts-dejavu-core fonts-noto-core
 fonts-noto-cjk fonts-noto-color-emoji fonts-freefont-ttf xvfb ffmpeg"

build_browser() {
	has_tag minimal || build_minimal
	new_bundle browser
	umoci unpack --image "$LAYOUT:minimal" "$BUNDLE" >/dev/null
	# shellcheck disable=SC2086
	chroot_apt "$BUNDLE/rootfs" $BROWSER_PKGS
	umoci repack --image "$LAYOUT:browser" "$BUNDLE"
	umoci config --image "$LAYOUT:browser" --config.env HOME=/tmp
	save_stats browser "$BUNDLE/rootfs"
}

ensure_layout
for name in $ONLY; do
	if [ "$REBUILD" = 1 ] && has_tag "$name"; then
		umoci rm --image "$LAYOUT:$name"
	fi
	if has_tag "$name" && [ -f "$STATS/$name.json" ]; then
		log "$name: already built"
	else
		t0=$(now_ns)
		log "$name: building"
		# A tag without stats is a build that was interrupted: start it over.
		! has_tag "$name" || umoci rm --image "$LAYOUT:$name"
		"build_${name//-/_}"
		[ -z "$BUNDLE" ] || rm -rf "$BUNDLE"
		BUNDLE=
		log "$name: built in $(awk -v m="$(ms_since "$t0")" 'BEGIN { printf "%.0f", m / 1000 }') s"
	fi
done
# Blobs of dropped tags.
[ "$REBUILD" = 0 ] || umoci gc --layout "$LAYOUT"

if [ "$PUSH" = 1 ]; then
	started=0
	"$BENCH_DIR/registry.sh" status >/dev/null 2>&1 || { "$BENCH_DIR/registry.sh" start; started=1; }
	for name in $ONLY; do
		log "$name: push to $BENCH_LO_ADDR/$name:latest"
		skopeo copy -q --preserve-digests --dest-tls-verify=false \
			"oci:$LAYOUT:$name" "docker://$BENCH_LO_ADDR/$name:latest"
	done
	[ "$started" = 0 ] || "$BENCH_DIR/registry.sh" stop
fi

printf '\n%-12s %6s %12s %12s %8s  %s\n' image layers compressed unpacked files "layer media type"
for name in $ONLY; do
	jq -r '[.name, .layers, .compressed_bytes, .unpacked_bytes, .files, .layer_media_type] | @tsv' \
		<"$STATS/$name.json" | while IFS=$'\t' read -r n l c u f m; do
		printf '%-12s %6s %12s %12s %8s  %s\n' "$n" "$l" "$(human "$c")" "$(human "$u")" "$f" "${m##*.}"
	done
done
