#!/bin/bash
# `isorun run REF` / `create REF` end to end against a real registry:
#  - an image built here with umoci: a busybox base layer, a second layer that deletes a base
#    file (umoci writes the whiteout) and adds files; Env, WorkingDir and User in the config;
#  - pushed with skopeo; the index artifact pushed by `isorun-index build --push`;
#  - a host with an EMPTY store: `isorun run REF` pulls only the index (no chunk is local
#    before the run), mounts lazily, and the command sees the image's Env/WorkingDir/User
#    and not the deleted file; exit status is the command's;
#  - 20 sandboxes of the image created at once share one FUSE mount; `rm` of the last
#    unmounts it
#    (ISORUN_KEEP_WARM=0), or keeps it for the next sandbox for ISORUN_KEEP_WARM seconds;
#  - floating tags are refused by create/run;
#  - a sandbox claimed from the warm pool is named as the claiming create named the image;
#  - an image whose chunks are all local runs with the registry gone, by tag and by digest.
set -euo pipefail
INDEX=$1
ISORUN=$2
SRC=${ISORUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
FIX=$SRC/tests/fixtures
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (namespaces, overlayfs, FUSE)"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
for tool in docker-registry skopeo umoci busybox python3 curl; do
	command -v $tool >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
BUSYBOX=$(command -v busybox)
readelf -l "$BUSYBOX" 2>/dev/null | grep -q INTERP && { echo "SKIP: busybox is not static"; exit 77; }

# Unmount at the last release unless a step says otherwise (the default keeps it 60 s).
export ISORUN_KEEP_WARM=0
WORK=$(mktemp -d /tmp/isorun-run.XXXXXX)
ROOT=$WORK/host
cleanup() {
	"$ISORUN" --root "$ROOT" rm -f $("$ISORUN" --root "$ROOT" ps --format json 2>/dev/null |
		python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)))' 2>/dev/null) \
		>/dev/null 2>&1 || true
	for m in $(grep " $WORK/" /proc/mounts | cut -d' ' -f2 | sort -r); do umount -l "$m" 2>/dev/null || true; done
	"$FIX/registry.sh" stop "$WORK/reg" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# The image.
cd "$WORK"
umoci init --layout img >/dev/null
umoci new --image img:v1 >/dev/null
umoci unpack --image img:v1 b >/dev/null
R=b/rootfs
mkdir -p $R/bin $R/etc $R/app $R/data $R/home/app
cp "$BUSYBOX" $R/bin/busybox
for t in sh ls cat id pwd test env sleep grep wc echo true false stat; do ln -s busybox $R/bin/$t; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >$R/etc/passwd
printf 'root:x:0:\napp:x:1000:\n' >$R/etc/group
echo doomed >$R/etc/deleteme
head -c 3000000 /dev/urandom >$R/data/blob
sha=$(sha256sum $R/data/blob | cut -d' ' -f1)
umoci repack --image img:v1 b >/dev/null
rm -rf b
umoci unpack --image img:v1 b >/dev/null
rm b/rootfs/etc/deleteme
printf '#!/bin/sh\necho hello from the image\n' >b/rootfs/app/hello.sh
chmod 755 b/rootfs/app/hello.sh
chown 1000:1000 b/rootfs/home/app
umoci repack --image img:v1 b >/dev/null
umoci config --image img:v1 --config.env FOO=bar --config.env PATH=/bin \
	--config.workingdir /app --config.user app >/dev/null
[ "$(umoci stat --image img:v1 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["history"]))')" -ge 2 ] ||
	fail "image has fewer than two layers"

"$FIX/registry.sh" start "$WORK/reg" >/dev/null
REG=127.0.0.1:$(. "$WORK/reg/env"; echo "$REG_PORT")
skopeo copy -q --dest-tls-verify=false oci:img:v1 "docker://$REG/app:v1"
skopeo copy -q --dest-tls-verify=false oci:img:v1 "docker://$REG/app:latest"
"$INDEX" --root "$WORK/ci" build --push "$REG/app:v1" >/dev/null

# A host with an empty store.
out=$("$ISORUN" --root "$ROOT" run "$REG/app:v1" -- sh -c \
	'echo "$FOO"; pwd; id -u; test ! -e /etc/deleteme && echo gone; ./hello.sh; sha256sum /data/blob 2>/dev/null || busybox sha256sum /data/blob')
echo "$out" | sed -n 1p | grep -qx bar || fail "Env not applied: $out"
echo "$out" | sed -n 2p | grep -qx /app || fail "WorkingDir not applied: $out"
echo "$out" | sed -n 3p | grep -qx 1000 || fail "User not applied: $out"
grep -qx gone <<<"$out" || fail "whiteout not applied: $out"
grep -qx "hello from the image" <<<"$out" || fail "upper layer file missing: $out"
grep -q "^$sha " <<<"$out" || fail "file content differs: $out"
ok "run REF from an empty store: Env, WorkingDir, User, whiteout, content"
set +e
"$ISORUN" --root "$ROOT" run "$REG/app:v1" -- sh -c 'exit 7'
rc=$?
set -e
[ "$rc" = 7 ] || fail "exit status $rc, expected 7"
ok "exit status passes through"

if "$ISORUN" --root "$ROOT" run "$REG/app:latest" -- true 2>"$WORK/err"; then
	fail "floating tag accepted by run"
fi
grep -q floating "$WORK/err" || fail "no reason for refusing latest: $(cat "$WORK/err")"
ok "run refuses floating tags"
rc=0
"$ISORUN" --root "$ROOT" run "$REG/app:v404" -- true 2>"$WORK/err" || rc=$?
[ "$rc" = 125 ] || fail "run of a tag the registry lacks: exit $rc, not 125"
grep -q "cannot resolve $REG/app:v404: not found in the registry" "$WORK/err" ||
	fail "run of a tag the registry lacks should say so: $(cat "$WORK/err")"
ok "run of a tag the registry lacks: 125, not found in the registry"

# 20 sandboxes of the image at once, created concurrently (their creators race for the
# image's mount): one FUSE superblock (one daemon, one page cache) however many places it is
# visible at, 20 named holders, each sandbox's writes its own; removed concurrently, the last
# removal unmounts. (Other tests may run in parallel: count only what lives under this
# test's root.)
N=20
pids=()
for i in $(seq $N); do
	"$ISORUN" --root "$ROOT" create "$REG/app:v1" >"$WORK/id.$i" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent create failed"; done
ids=()
for i in $(seq $N); do ids+=("$(cat "$WORK/id.$i")"); done
mine() { awk -v r="$ROOT/" '$0 ~ /fuse.isorun/ && index($5, r) == 1 {print $3}' /proc/self/mountinfo; }
n=$(mine | sort -u | wc -l)
[ "$n" = 1 ] || fail "$n FUSE filesystems for $N sandboxes of one image"
n=$(pgrep -fc "fsd .*$ROOT/" || true)
[ "$n" = 1 ] || fail "$n mount daemons for $N sandboxes of one image"
refs=$(echo "$ROOT"/mounts/*/refs)
[ "$(grep -c '^dir /' "$refs")" = $N ] || fail "holders of $N sandboxes: $(cat "$refs")"
pids=()
for id in "${ids[@]}"; do
	"$ISORUN" --root "$ROOT" exec "$id" -- sh -c "echo $id >/sandbox/me" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent exec failed"; done
for id in "${ids[@]}"; do
	got=$("$ISORUN" --root "$ROOT" exec "$id" -- cat /sandbox/me)
	[ "$got" = "$id" ] || fail "sandbox $id sees $got"
done
ok "$N sandboxes created at once: one shared mount, $N holders, separate scratch"
# ps names the image as it was given, not only by its index digest.
[ "$("$ISORUN" --root "$ROOT" ps | grep -c " $REG/app:v1\$")" = $N ] ||
	fail "ps does not name the image: $("$ISORUN" --root "$ROOT" ps)"
[ "$("$ISORUN" --root "$ROOT" ps --format json | grep -c "\"image_name\":\"$REG/app:v1\"")" = $N ] ||
	fail "ps --format json has no image_name"
pids=()
for id in "${ids[@]}"; do
	"$ISORUN" --root "$ROOT" rm -f "$id" >/dev/null &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent rm failed"; done
n=$(mine | wc -l)
[ "$n" = 0 ] || fail "mount left after the last sandbox was removed"
[ ! -s "$refs" ] || fail "holders left after every sandbox was removed: $(cat "$refs")"
[ "$("$ISORUN" --root "$ROOT" ps | grep -c .)" -le 1 ] || fail "sandboxes left: $("$ISORUN" --root "$ROOT" ps)"
ok "last rm unmounts the image"

# Keep-warm: the mount outlives the last sandbox, the next sandbox reuses its daemon, and it
# goes away once the delay has passed with no sandbox.
id=$(ISORUN_KEEP_WARM=3 "$ISORUN" --root "$ROOT" create "$REG/app:v1")
pid=$(pgrep -f "fsd .*$ROOT/" | head -1)
"$ISORUN" --root "$ROOT" rm -f "$id" >/dev/null
[ "$(mine | wc -l)" = 1 ] || fail "keep-warm: the mount went away at the last rm"
id=$("$ISORUN" --root "$ROOT" create "$REG/app:v1")
[ "$(pgrep -f "fsd .*$ROOT/" | head -1)" = "$pid" ] || fail "keep-warm: a new mount daemon"
"$ISORUN" --root "$ROOT" rm -f "$id" >/dev/null
for _ in $(seq 1 100); do [ "$(mine | wc -l)" = 0 ] && break; sleep 0.1; done
[ "$(mine | wc -l)" = 0 ] || fail "keep-warm: the mount outlived its delay"
ok "keep-warm keeps the image mounted between sandboxes, then unmounts"
# --keep-warm S: the delay of the sandbox that lets go of the mount last, over
# ISORUN_KEEP_WARM (0 here) and over the delay the mount was made with.
id=$("$ISORUN" --root "$ROOT" create --keep-warm 600 "$REG/app:v1")
pid=$(pgrep -f "fsd .*$ROOT/" | head -1)
grep -q '"keep_warm_s":600' "$ROOT/sandboxes/$id/config.json" ||
	fail "--keep-warm not in the sandbox's config"
"$ISORUN" --root "$ROOT" rm -f "$id" >/dev/null
sleep 1
[ "$(mine | wc -l)" = 1 ] || fail "--keep-warm 600: the mount went away at the last rm"
id=$(ISORUN_KEEP_WARM=600 "$ISORUN" --root "$ROOT" create --keep-warm 0 "$REG/app:v1")
[ "$(pgrep -f "fsd .*$ROOT/" | head -1)" = "$pid" ] || fail "--keep-warm: a new mount daemon"
ISORUN_KEEP_WARM=600 "$ISORUN" --root "$ROOT" rm -f "$id" >/dev/null
for _ in $(seq 1 50); do [ "$(mine | wc -l)" = 0 ] && break; sleep 0.1; done
[ "$(mine | wc -l)" = 0 ] || fail "--keep-warm 0: the mount outlived its last sandbox"
ok "create --keep-warm sets how long the image stays mounted after its last sandbox"

# The mount's holders (ROOT/mounts/<hex>/refs) name the sandbox directories that hold it.
a=$("$ISORUN" --root "$ROOT" create "$REG/app:v1")
b=$("$ISORUN" --root "$ROOT" create "$REG/app:v1")
hex=$(ls "$ROOT/mounts" | head -1)
refs=$ROOT/mounts/$hex/refs
rroot=$(realpath "$ROOT")
[ "$(grep -c . "$refs")" = 2 ] || fail "two sandboxes, holders: $(cat "$refs")"
grep -qx "dir $rroot/sandboxes/$a" "$refs" || fail "sandbox $a is not a holder: $(cat "$refs")"
"$ISORUN" --root "$ROOT" stop "$b"
[ "$(cat "$refs")" = "dir $rroot/sandboxes/$a" ] || fail "a stopped sandbox still holds: $(cat "$refs")"
ok "the image mount's holders are the running sandboxes"

# A creator killed at any point of the boot after its reference was taken (state still
# "created", its pid dead): rm gives the reference back. Emulated with B, put back as a dead
# creator would have left it.
echo "dir $rroot/sandboxes/$b" >>"$refs"
sh -c 'exit 0' &
dead=$!
wait "$dead"
printf '{"status":"created","pid":%d,"pid_start":1}' "$dead" >"$ROOT/sandboxes/$b/state.json"
"$ISORUN" --root "$ROOT" rm -f "$b" >/dev/null
[ "$(cat "$refs")" = "dir $rroot/sandboxes/$a" ] || fail "rm of a half-created sandbox kept its reference: $(cat "$refs")"
ok "rm of a half-created sandbox gives its image reference back"

# A holder that is gone without releasing (its directory removed by hand) is dropped by the
# next release, so the last sandbox's rm still unmounts the image.
echo "dir $rroot/sandboxes/0000000000000000" >>"$refs"
"$ISORUN" --root "$ROOT" rm -f "$a" >/dev/null
for _ in $(seq 1 100); do [ "$(mine | wc -l)" = 0 ] && break; sleep 0.1; done
[ "$(mine | wc -l)" = 0 ] || fail "a holder that is gone kept the image mounted: $(cat "$refs")"
[ ! -s "$refs" ] || fail "holders left: $(cat "$refs")"
ok "the reference of a holder that is gone is dropped"

# With no release at all: the daemon itself looks for holders that are gone (every
# ISORUN_FSD_AUDIT_S seconds) and unmounts when none is left. Emulated by renaming the only
# holder's line to a directory that does not exist.
c=$(ISORUN_FSD_AUDIT_S=1 "$ISORUN" --root "$ROOT" create "$REG/app:v1")
[ "$(mine | wc -l)" = 1 ] || fail "no mount for sandbox $c"
echo "dir $rroot/sandboxes/$c-removed-by-hand" >"$refs"
for _ in $(seq 1 100); do [ "$(mine | wc -l)" = 0 ] && break; sleep 0.1; done
[ "$(mine | wc -l)" = 0 ] || fail "the daemon kept a mount whose holders are all gone: $(cat "$refs")"
"$ISORUN" --root "$ROOT" rm -f "$c" >/dev/null || fail "rm of $c"
ok "the mount daemon drops holders that are gone and unmounts"

# A sandbox from the warm pool takes the name of the create that claims it: the pool is the
# image's (its index), whatever name it was booted under.
pooled() {
	"$ISORUN" --root "$ROOT" ps --format json | python3 -c 'import json,sys
print(" ".join(s["id"] for s in json.load(sys.stdin) if s["status"] == "pooled"))'
}
"$ISORUN" --root "$ROOT" pool-fill "$REG/app:v1" || fail "pool-fill $REG/app:v1"
p=$(pooled)
[ "$(wc -w <<<"$p")" = 1 ] || fail "pool-fill: pooled sandboxes '$p'"
dig=$(skopeo inspect --tls-verify=false "docker://$REG/app:v1" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
id=$("$ISORUN" --root "$ROOT" create --warm "$REG/app@$dig") || fail "create --warm by digest"
[ "$id" = "$p" ] || fail "create --warm by digest booted $id, not the pooled $p"
"$ISORUN" --root "$ROOT" ps | grep -q "^$id .* $REG/app@$dig\$" ||
	fail "the claimed sandbox is not named as claimed: $("$ISORUN" --root "$ROOT" ps)"
for f in "$ROOT"/pool/*/.fill; do [ -e "$f" ] && flock "$f" true; done # the refill
"$ISORUN" --root "$ROOT" rm -f "$id" $(pooled) >/dev/null || fail "rm of the pool"
ok "a sandbox claimed from the warm pool is named as the claiming create named its image"

# Offline: an image whose chunks are all local runs with its registry gone, by its tag and by
# REPO@DIGEST (a store that knows that manifest only under the tag: the same image); another
# repository's name for the same digest still asks its registry.
R2=$WORK/host2
mkdir -p "$WORK/m"
"$ISORUN" --root "$R2" mount "$REG/app:v1" "$WORK/m" || fail "mount to fetch the image"
for _ in $(seq 1 300); do
	"$ISORUN" --root "$R2" stats --json "$WORK/m" | grep -q '"complete": *true' && break
	sleep 0.1
done
# (while it is mounted: a second mount on it and a prune of its image are refused, each
# saying why in one line)
for cmd in "mount $REG/app:v1 $WORK/m" "cache prune --image $REG/app:v1"; do
	rc=0
	# shellcheck disable=SC2086
	"$ISORUN" --root "$R2" $cmd 2>"$WORK/err" || rc=$?
	[ $rc = 125 ] && [ "$(wc -l <"$WORK/err")" = 1 ] ||
		fail "$cmd: status $rc, $(cat "$WORK/err")"
done
grep -q "is mounted" "$WORK/err" || fail "cache prune of a mounted image: $(cat "$WORK/err")"
"$ISORUN" --root "$R2" umount "$WORK/m" || fail "umount"
"$FIX/registry.sh" stop "$WORK/reg" >/dev/null
out=$("$ISORUN" --root "$R2" run "$REG/app:v1" -- cat /app/hello.sh) || fail "offline run by tag"
grep -q "hello from the image" <<<"$out" || fail "offline run by tag: $out"
out=$("$ISORUN" --root "$R2" run "$REG/app@$dig" -- cat /app/hello.sh) ||
	fail "offline run by digest"
grep -q "hello from the image" <<<"$out" || fail "offline run by digest: $out"
rc=0
"$ISORUN" --root "$R2" run "$REG/other@$dig" -- true 2>"$WORK/err" || rc=$?
[ $rc = 125 ] && grep -q "could not be reached" "$WORK/err" ||
	fail "another repository's name for the digest, offline: $rc $(cat "$WORK/err")"
ok "an image in the store runs offline, by tag and by digest"
echo "all run tests passed"
