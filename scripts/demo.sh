#!/bin/bash
# The main job, end to end on a fresh Debian 12 machine (as root):
#  1. install the Debian packages isorun needs and build it (release);
#  2. build a real minimal Debian image (debootstrap + umoci) and start a local registry
#     with the image pushed to it (bench/images.sh, bench/registry.sh);
#  3. CI step: index the image and push the index artifact next to it (isorun-index --push);
#  4. a new host (empty store): pull only the index, mount the image lazily and run commands
#     in a sandbox; show how little was fetched; copy a directory into a kept sandbox, build
#     there, copy the results out.
# Each step uses what isorun provides; see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing dependencies"
sh scripts/deps.sh
say "building isorun"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null
BIN=$PWD/build/release/tools
export PATH=$BIN:$PATH

say "building the minimal Debian image and the local registry"
bench/registry.sh start
bench/images.sh --only minimal
. bench/lib.sh
REF=$BENCH_LO_ADDR/minimal:bookworm
skopeo copy -q --dest-tls-verify=false "oci:$BENCH_WORK/oci:minimal" "docker://$REF"

CI_ROOT=$(mktemp -d /tmp/isorun-demo-ci.XXXXXX)
HOST_ROOT=$(mktemp -d /tmp/isorun-demo-host.XXXXXX)
MNT=$(mktemp -d /tmp/isorun-demo-mnt.XXXXXX)
cleanup() {
	mountpoint -q "$MNT" && isorun --root "$HOST_ROOT" umount "$MNT" 2>/dev/null || true
	# The image stays mounted a while for the next sandbox (ISORUN_KEEP_WARM): unmount it and
	# let its daemon exit before the store is deleted.
	findmnt -rn -o TARGET | awk -v r="$HOST_ROOT/" 'index($0, r) == 1' | sort -r |
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
	for p in "$HOST_ROOT"/mounts/*/pid; do
		[ -f "$p" ] || continue
		for _ in $(seq 1 50); do kill -0 "$(cat "$p")" 2>/dev/null || break; sleep 0.1; done
	done
	rm -rf "$CI_ROOT" "$HOST_ROOT"
	rmdir "$MNT" 2>/dev/null || true
}
trap cleanup EXIT

has_verb() { isorun --help 2>/dev/null | grep -q "^  $1 "; }

say "CI: isorun-index build $REF --push"
isorun-index --root "$CI_ROOT" build --push --force "$REF"
isorun-index --root "$CI_ROOT" inspect "$REF"

if has_verb pull; then
	say "host: isorun pull $REF (index only)"
	isorun --root "$HOST_ROOT" pull "$REF"
	du -sh "$HOST_ROOT"
fi
if has_verb mount; then
	say "host: isorun mount $REF $MNT (lazy)"
	isorun --root "$HOST_ROOT" mount --prefetch=none "$REF" "$MNT"
	cat "$MNT/etc/os-release" | head -3
	isorun --root "$HOST_ROOT" stats "$MNT"
	isorun --root "$HOST_ROOT" umount "$MNT"
fi
if has_verb run; then
	say "host: isorun run $REF -- cat /etc/debian_version"
	isorun --root "$HOST_ROOT" run "$REF" -- sh -c 'cat /etc/debian_version; id; ls /'
fi
if has_verb cp; then
	say "host: a sandbox kept running: create, cp a directory in, exec, cp the results out, rm"
	ID=$(isorun --root "$HOST_ROOT" create "$REF")
	proj=$(mktemp -d)
	mkdir -p "$proj/src"
	printf '#!/bin/sh\necho "built in $(hostname)" > /sandbox/out/result.txt\n' >"$proj/src/build.sh"
	chmod +x "$proj/src/build.sh"
	isorun --root "$HOST_ROOT" cp "$proj" "$ID:/sandbox/proj"
	isorun --root "$HOST_ROOT" exec "$ID" -- sh -c 'mkdir -p /sandbox/out && /sandbox/proj/src/build.sh'
	isorun --root "$HOST_ROOT" cp "$ID:/sandbox/out" "$proj/out"
	cat "$proj/out/result.txt"
	isorun --root "$HOST_ROOT" rm -f "$ID"
	rm -rf "$proj"
fi
say "done"
