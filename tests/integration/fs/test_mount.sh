#!/bin/bash
# Pull an image from a real registry into an EMPTY store (only its index artifact), mount it
# lazily and compare the whole tree with `umoci unpack`; share the mount between two users;
# complete the prefetch, stop the registry and check the image still mounts and reads.
. "$(dirname "$0")/lib.sh"
start_registry
make_image img v1 --big-mib 6
R=$WORK/root
ref=$REG/fs/img:v1

out=$("$ISORUN" --debug --root "$R" pull "$ref" 2>"$WORK/pull1.log") || fail "pull"
grep -q "index artifact" <<<"$out" || fail "pull did not use the index artifact: $out"
grep -q "named by the referrers list, fetched beside" "$WORK/pull1.log" ||
	fail "the index blob was not fetched beside the artifact manifest"
# A loopback registry is an insecure one: the first contact probes TLS, falls back to plain
# HTTP, and the store remembers it, so later processes (the mount's daemon) skip the probe.
grep -q "https://$REG/" "$WORK/pull1.log" || fail "the first pull did not probe TLS"
grep -qx "$REG http" "$R/registry-schemes" || fail "registry-schemes: $(cat "$R/registry-schemes")"
"$ISORUN" --debug --root "$R" pull "$ref" >/dev/null 2>"$WORK/pull2.log" || fail "second pull"
! grep -q "https://" "$WORK/pull2.log" || fail "the second pull probed TLS again"
# A remembered scheme that no longer connects is probed again.
echo "$REG https" >"$R/registry-schemes"
"$ISORUN" --root "$R" pull "$ref" >/dev/null || fail "pull with a stale registry-schemes"
grep -qx "$REG http" "$R/registry-schemes" || fail "stale scheme not replaced"
# Named with its scheme in $ISORUN_INSECURE_REGISTRIES, a registry is never probed, and
# nothing is written down; named with the wrong one, it is not reached.
ISORUN_INSECURE_REGISTRIES="other:5000,http://$REG,$REG" "$ISORUN" --debug --root "$WORK/root-http" \
	pull "$ref" >/dev/null 2>"$WORK/pull-http.log" || fail "pull from http://$REG"
! grep -q "https://" "$WORK/pull-http.log" || fail "http://$REG was probed with TLS"
[ ! -e "$WORK/root-http/registry-schemes" ] || fail "a named scheme was written down"
if ISORUN_INSECURE_REGISTRIES="https://$REG" "$ISORUN" --root "$WORK/root-https" \
	pull --timeout 5 "$ref" >/dev/null 2>"$WORK/pull-https.log"; then
	fail "https://$REG (a plain HTTP registry) was reached"
fi
! grep -q "http://$REG/" "$WORK/pull-https.log" || fail "https://$REG fell back to plain HTTP"
# By digest, the referrers are asked for while the manifest is fetched; the same index.
mdig=$(skopeo inspect --raw --tls-verify=false "docker://$ref" | sha256sum | cut -d' ' -f1)
"$ISORUN" --debug --root "$WORK/root-dig" pull "$REG/fs/img@sha256:$mdig" >/dev/null \
	2>"$WORK/pull-dig.log" || fail "pull by digest: $(tail -3 "$WORK/pull-dig.log")"
grep -q "referrers of sha256:$mdig asked for beside the manifest" "$WORK/pull-dig.log" ||
	fail "pull by digest did not ask for the referrers beside the manifest"
# (a fresh store: both requests probe TLS at once; the one that learns the scheme second
# goes again at once, not after a retry's backoff)
! grep -q "retrying" "$WORK/pull-dig.log" ||
	fail "a request of the pull by digest was retried: $(grep retrying "$WORK/pull-dig.log")"
[ "$(ls "$WORK/root-dig/indexes")" = "$(ls "$R/indexes")" ] || fail "pull by digest: another index"
[ -z "$(ls "$R/chunks" 2>/dev/null)" ] || [ -z "$(find "$R/chunks" -type f)" ] ||
	fail "pull fetched chunks"

mkdir -p "$WORK/m1" "$WORK/m2"
# The daemon's own options are refused by `isorun mount`, not silently taken.
for o in --index-fresh --index=sha256:0 --mountpoint=/tmp --ready-fd=3; do
	rc=0
	err=$("$ISORUN" --root "$R" mount "$o" "$ref" "$WORK/m1" 2>&1) || rc=$?
	[ "$rc" = 2 ] && grep -q -- "${o%%=*} is an option of the mount daemon" <<<"$err" ||
		fail "mount $o: exit $rc: $err"
done
# A bad value is named with its own option (whatever the option table's order).
for o in --prefetch --bwlimit --fg-spill --startup-hold --mem-cache; do
	rc=0
	err=$("$ISORUN" --root "$R" mount "$o=bogus" "$ref" "$WORK/m1" 2>&1) || rc=$?
	[ "$rc" = 2 ] && grep -q -- "invalid value 'bogus' for $o\$" <<<"$err" ||
		fail "mount $o=bogus: exit $rc: $err"
done
"$ISORUN" --root "$R" mount --prefetch=none "$ref" "$WORK/m1" || fail "mount"
compare "$WORK/unp-img-v1/rootfs" "$WORK/m1"
s=$(stats_json "$R" "$WORK/m1")
[ "$(echo "$s" | jget fetched_bytes)" -gt 0 ] || fail "nothing was fetched: $s"
[ "$(echo "$s" | jget read_errors)" = 0 ] || fail "read errors: $s"

# Writes fail with EROFS.
err=$(touch "$WORK/m1/new" 2>&1) && fail "creating a file succeeded"
grep -q "Read-only file system" <<<"$err" || fail "create did not fail with EROFS: $err"
err=$(sh -c "echo x >> '$WORK/m1/etc/passwd'" 2>&1) && fail "appending succeeded"
grep -q "Read-only file system" <<<"$err" || fail "write did not fail with EROFS: $err"

# statfs: blocks of the regular files' bytes and one file per inode of the image (hardlinks
# once), the same answer on every call (computed on the first).
want=$(python3 - "$WORK/unp-img-v1/rootfs" <<'PY'
import os, sys
seen, size = set(), 0
for d, dirs, files in os.walk(sys.argv[1]):
    for n in [d] + [os.path.join(d, f) for f in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]]:
        st = os.lstat(n)
        if st.st_ino in seen:
            continue
        seen.add(st.st_ino)
        if os.path.isfile(n) and not os.path.islink(n):
            size += st.st_size
print((size + 4095) // 4096, len(seen))
PY
)
for _ in 1 2; do
	got=$(stat -f -c '%b %c' "$WORK/m1")
	[ "$got" = "$want" ] || fail "statfs: blocks and files $got, want $want"
done

# A second mount of the same image shares the daemon (same superblock, two holders).
"$ISORUN" --root "$R" mount "$ref" "$WORK/m2" || fail "second mount"
[ "$(stat -c %d "$WORK/m1")" = "$(stat -c %d "$WORK/m2")" ] || fail "mounts are not shared"
hex=$(ls "$R/mounts")
[ "$(grep -c '^bind [0-9]* /' "$R/mounts/$hex/refs")" = 2 ] || fail "holders: $(cat "$R/mounts/$hex/refs")"
grep -q " $(realpath "$WORK/m2")\$" "$R/mounts/$hex/refs" || fail "m2 is not a holder"
h=$(stats_json "$R" "$WORK/m2")
[ "$(echo "$h" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["holders"]))')" = 2 ] ||
	fail "stats do not list the two holders: $h"
"$ISORUN" --root "$R" stats "$WORK/m2" | grep -q "^holders *2$" || fail "isorun stats: no holders line"
err=$("$ISORUN" --root "$R" mount "$ref" "$WORK/m2" 2>&1) && fail "mounted twice on m2"
grep -q "already an isorun mount" <<<"$err" || fail "second mount on m2: $err"
# m1 goes away with a plain umount (its holder line stays): the release of m2 finds that
# holder gone (no such mount any more) and the daemon still exits after the last umount.
umount "$WORK/m1" || fail "umount m1"
cmp "$WORK/unp-img-v1/rootfs/usr/lib/libbig.so" "$WORK/m2/usr/lib/libbig.so" ||
	fail "m2 broken after m1 was unmounted"
"$ISORUN" --root "$R" umount "$WORK/m2" || fail "umount m2"
for i in $(seq 1 100); do [ -e "$R/mounts/$hex/ctl.sock" ] || break; sleep 0.1; done
[ ! -e "$R/mounts/$hex/ctl.sock" ] || fail "daemon still running after the last umount"

# Full prefetch, then the registry goes away: the image is local and keeps working.
"$ISORUN" --root "$R" mount --prefetch=all "$ref" "$WORK/m1" || fail "mount (prefetch)"
wait_prefetch "$R" "$WORK/m1"
"$ISORUN" --root "$R" umount "$WORK/m1"
# Every chunk the mount stored (raw frames) reads back whole and verified.
"$INDEX" --root "$R" verify "$ref" >/dev/null || fail "isorun-index verify after the prefetch"
# The referrers list's entry names the index blob (the artifact's annotations, copied by the
# tag fallback). Without that name, or with a wrong one, a pull still finds the index
# through the artifact manifest's index layer.
relist() { # strip|wrong: rewrite the tag-fallback referrers list of fs/img:v1
	python3 - "$REG" "$1" <<'PY' || fail "rewriting the referrers list ($1)"
import json, sys, urllib.request
reg, mode = sys.argv[1:3]
acc = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
       "application/vnd.docker.distribution.manifest.v2+json")
def req(method, path, data=None, ct=None):
    h = {"Accept": acc}
    if ct:
        h["Content-Type"] = ct
    r = urllib.request.Request(f"http://{reg}/v2/fs/img/manifests/{path}", data=data,
                               method=method, headers=h)
    return urllib.request.urlopen(r)
tag = "sha256-" + req("HEAD", "v1").headers["Docker-Content-Digest"].split(":")[1]
ix = json.load(req("GET", tag))
for m in ix["manifests"]:
    if mode == "strip":
        m.pop("annotations", None)
    else:
        m["annotations"]["dev.isorun.index.blob"] = "sha256:" + "0" * 64
req("PUT", tag, json.dumps(ix).encode(), "application/vnd.oci.image.index.v1+json")
PY
}
# old|badz: replace the artifact by one whose index layer is the raw index (as artifacts
# were before the layer was compressed), or a "+zstd" layer that is not a zstd frame.
reart() {
	python3 - "$REG" "$1" <<'PY' || fail "rewriting the artifact ($1)"
import hashlib, json, subprocess, sys, urllib.request
reg, mode = sys.argv[1:3]
acc = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
def req(method, path, data=None, ct=None, kind="manifests"):
    h = {"Accept": acc}
    if ct:
        h["Content-Type"] = ct
    url = path if path.startswith("http") else f"http://{reg}/v2/fs/img/{kind}/{path}"
    return urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=h))
def push_blob(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = req("POST", "uploads/", b"", kind="blobs").headers["Location"]
    if not loc.startswith("http"):
        loc = f"http://{reg}{loc}"
    req("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + d, data,
        "application/octet-stream")
    return d
tag = "sha256-" + req("HEAD", "v1").headers["Docker-Content-Digest"].split(":")[1]
ix = json.load(req("GET", tag))
e = ix["manifests"][-1]
art = json.load(req("GET", e["digest"]))
l0 = art["layers"][0]
if mode == "old":
    assert l0["mediaType"] == "application/vnd.isorun.index.v1.bin+zstd", l0
    blob = req("GET", l0["digest"], kind="blobs").read()
    raw = subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=True).stdout
    l0.update(mediaType="application/vnd.isorun.index.v1.bin", size=len(raw))
    l0["digest"] = push_blob(raw)
    art["annotations"].pop("dev.isorun.index.blob")
    art["annotations"]["dev.isorun.index.digest"] = l0["digest"]
else:
    bad = b"not a zstd frame" * 64
    l0.update(mediaType="application/vnd.isorun.index.v1.bin+zstd", size=len(bad),
              digest=push_blob(bad))
    art["annotations"]["dev.isorun.index.blob"] = l0["digest"]
body = json.dumps(art).encode()
ad = "sha256:" + hashlib.sha256(body).hexdigest()
req("PUT", ad, body, "application/vnd.oci.image.manifest.v1+json")
e.update(digest=ad, size=len(body), annotations=art["annotations"])
ix["manifests"] = [e]
req("PUT", tag, json.dumps(ix).encode(), "application/vnd.oci.image.index.v1+json")
PY
}
for mode in wrong strip; do
	relist "$mode"
	out=$("$ISORUN" --debug --root "$WORK/root-$mode" pull "$ref" 2>"$WORK/pull-$mode.log") ||
		fail "pull with a referrers list entry ($mode): $(tail -3 "$WORK/pull-$mode.log")"
	grep -q "index artifact" <<<"$out" || fail "pull ($mode) did not use the artifact"
	! grep -q "named by the referrers list" "$WORK/pull-$mode.log" ||
		fail "pull ($mode) took the list's index blob"
	[ "$(ls "$WORK/root-$mode/indexes")" = "$(ls "$R/indexes")" ] ||
		fail "pull ($mode) stored another index"
done
# An artifact of before compressed index layers (raw index, no dev.isorun.index.blob) is
# pulled as it was, early fetch included.
reart old
out=$("$ISORUN" --debug --root "$WORK/root-old" pull "$ref" 2>"$WORK/pull-old.log") ||
	fail "pull of a raw-index artifact: $(tail -3 "$WORK/pull-old.log")"
grep -q "index artifact" <<<"$out" || fail "pull (old) did not use the artifact"
grep -q "named by the referrers list" "$WORK/pull-old.log" || fail "pull (old): no early fetch"
[ "$(ls "$WORK/root-old/indexes")" = "$(ls "$R/indexes")" ] || fail "pull (old): another index"
# A "+zstd" index layer that is not a zstd frame: refused with the reason, and the image is
# indexed locally instead.
reart badz
out=$("$ISORUN" --root "$WORK/root-badz" pull "$ref" 2>"$WORK/pull-badz.log") ||
	fail "pull past a broken index layer: $(tail -3 "$WORK/pull-badz.log")"
grep -q "not one zstd frame" "$WORK/pull-badz.log" ||
	fail "pull (badz) did not say what was wrong: $(cat "$WORK/pull-badz.log")"
grep -q "index artifact" <<<"$out" && fail "pull (badz) used the broken artifact"
[ "$(ls "$WORK/root-badz/indexes")" = "$(ls "$R/indexes")" ] ||
	fail "pull (badz): the local build gave another index"
"$src/tests/fixtures/registry.sh" stop "$WORK/reg" >/dev/null
"$ISORUN" --root "$R" mount "$ref" "$WORK/m1" || fail "mount with the registry gone"
sync
echo 3 >/proc/sys/vm/drop_caches
compare "$WORK/unp-img-v1/rootfs" "$WORK/m1"
"$ISORUN" --root "$R" cache stats | grep -q "100.0%" || fail "cache stats do not show 100%"
"$ISORUN" --root "$R" umount "$WORK/m1"

# Keep-warm: the last release leaves the daemon up; a new mount reuses it (same pid).
for i in $(seq 1 100); do [ -e "$R/mounts/$hex/ctl.sock" ] || break; sleep 0.1; done
"$ISORUN" --root "$R" mount --keep-warm=600 "$ref" "$WORK/m1" || fail "mount (keep-warm)"
pid=$(cat "$R/mounts/$hex/pid")
"$ISORUN" --root "$R" umount "$WORK/m1"
[ -e "$R/mounts/$hex/ctl.sock" ] || fail "keep-warm daemon exited at the last umount"
"$ISORUN" --root "$R" mount "$ref" "$WORK/m1" || fail "mount during keep-warm"
[ "$(cat "$R/mounts/$hex/pid")" = "$pid" ] || fail "keep-warm daemon was not reused"
"$ISORUN" --root "$R" umount "$WORK/m1"
kill -TERM "$pid"
for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done

# prune removes the image's chunks (nothing else uses them), images shows 0 % resident.
"$ISORUN" --root "$R" cache prune --image "$ref" | grep -q "^removed [1-9]" || fail "prune"
"$ISORUN" --root "$R" images | grep -q " 0.0%" || fail "image still resident after prune"
pass
