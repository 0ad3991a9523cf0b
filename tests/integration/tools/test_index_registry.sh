#!/bin/bash
# isorun-index build REF [--push] and isorun login/logout against Debian's docker-registry:
#  - an image pushed by skopeo indexes straight from the registry to the same index digest as
#    from its OCI layout (determinism across sources and stores);
#  - --push uploads the artifact; skopeo (an independent client) reads it back through the
#    OCI 1.1 referrers tag schema; a second build finds it and does nothing; --force rebuilds;
#  - a second artifact for the same image (another platform of packs) keeps the first referrer;
#  - floating tags are refused unless --allow-floating-tag;
#  - htpasswd registry: refused without credentials, works with --creds and after login;
#    logout removes them; nothing secret reaches the output.
set -euo pipefail
INDEX=$1
ISORUN=$2
SRC=${ISORUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
FIX=$SRC/tests/fixtures
for tool in docker-registry skopeo python3 htpasswd curl jq; do
	command -v $tool >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
WORK=$(mktemp -d /tmp/isorun-tools.XXXXXX)
REGS=()
cleanup() {
	for d in "${REGS[@]}"; do "$FIX/registry.sh" stop "$d" >/dev/null 2>&1 || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
last() { tail -n 1; }

"$FIX/registry.sh" start "$WORK/plain" >/dev/null
REGS+=("$WORK/plain")
PLAIN=127.0.0.1:$(. "$WORK/plain/env"; echo "$REG_PORT")

python3 "$FIX/make_image.py" "$WORK/img" v1 --layers 3 --kib 2048 >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$WORK/img:v1" "docker://$PLAIN/app:v1"
skopeo copy -q --dest-tls-verify=false "oci:$WORK/img:v1" "docker://$PLAIN/app:latest"

# 1. same digest from the layout and from the registry, into different stores
d_oci=$("$INDEX" --root "$WORK/s1" build "oci:$WORK/img:v1" | last)
d_reg=$("$INDEX" --root "$WORK/s2" build "$PLAIN/app:v1" | last)
[ "$d_oci" = "$d_reg" ] || fail "index digest differs: oci $d_oci, registry $d_reg"
case $d_reg in sha256:*) ;; *) fail "last line is not a digest: $d_reg" ;; esac
ok "registry and layout give the same index $d_reg"
"$INDEX" --root "$WORK/s2" verify "$PLAIN/app:v1" >/dev/null 2>&1 ||
	"$INDEX" --root "$WORK/s2" verify "$d_reg" >/dev/null || fail "verify after build from registry"
ok "verify"

# 2. push, read back with skopeo, found again
out=$("$INDEX" --root "$WORK/s3" build --push "$PLAIN/app:v1")
grep -q '^pushed ' <<<"$out" || fail "no 'pushed' line: $out"
[ "$(echo "$out" | last)" = "$d_reg" ] || fail "pushed build has another digest"
mdigest=$(skopeo inspect --raw --tls-verify=false "docker://$PLAIN/app:v1" | sha256sum | cut -d' ' -f1)
refs=$(skopeo inspect --raw --tls-verify=false "docker://$PLAIN/app:sha256-$mdigest")
echo "$refs" | jq -e '.manifests | length == 1' >/dev/null || fail "referrers index: $refs"
adigest=$(echo "$refs" | jq -r '.manifests[0].digest')
art=$(skopeo inspect --raw --tls-verify=false "docker://$PLAIN/app@$adigest")
echo "$art" | jq -e --arg m "sha256:$mdigest" '.subject.digest == $m and
	.artifactType == "application/vnd.isorun.index.v1" and
	.layers[0].mediaType == "application/vnd.isorun.index.v1.bin+zstd"' >/dev/null ||
	fail "artifact manifest: $art"
[ "$(echo "$art" | jq -r '.annotations["dev.isorun.index.digest"]')" = "$d_reg" ] ||
	fail "artifact names another index"
blob=$(echo "$art" | jq -r '.layers[0].digest')
[ "$(echo "$art" | jq -r '.annotations["dev.isorun.index.blob"]')" = "$blob" ] ||
	fail "artifact's dev.isorun.index.blob is not its index layer"
# the layer is the index as one zstd frame: what the store holds under the index's digest
curl -fsS "http://$PLAIN/v2/app/blobs/$blob" >"$WORK/ilayer"
[ "sha256:$(sha256sum <"$WORK/ilayer" | cut -d' ' -f1)" = "$blob" ] || fail "index layer digest"
[ "sha256:$(zstd -dc <"$WORK/ilayer" | sha256sum | cut -d' ' -f1)" = "$d_reg" ] ||
	fail "the index layer does not decompress to the index"
[ "$(stat -c %s "$WORK/ilayer")" -lt "$(zstd -dc <"$WORK/ilayer" | wc -c)" ] ||
	fail "the index layer is not smaller than the index"
ok "artifact pushed and readable by skopeo, its index layer compressed"
out=$("$INDEX" --root "$WORK/s4" build "$PLAIN/app:v1")
grep -q 'already in the registry' <<<"$out" || fail "existing artifact not reported: $out"
[ "$(echo "$out" | last)" = "$d_reg" ] || fail "existing artifact: wrong digest"
[ ! -d "$WORK/s4/indexes" ] || [ -z "$(ls "$WORK/s4/indexes")" ] || fail "built although an artifact exists"
ok "existing artifact found, nothing rebuilt"
# (built "in 1970": SOURCE_DATE_EPOCH stamps the artifact's org.opencontainers.image.created)
out=$(SOURCE_DATE_EPOCH=1 "$INDEX" --root "$WORK/s4" build --force --push --pack-size 1M "$PLAIN/app:v1")
refs=$(skopeo inspect --raw --tls-verify=false "docker://$PLAIN/app:sha256-$mdigest")
echo "$refs" | jq -e '.manifests | length == 2' >/dev/null || fail "second referrer lost one: $refs"
ok "--force with other packs adds a second referrer, keeps the first"
# A pull takes the newest referrer by its build time, not by its place in the list...
d_old=$(echo "$out" | last)
[ "$d_old" != "$d_reg" ] || fail "--pack-size 1M gave the same index"
"$ISORUN" --root "$WORK/p1" pull "$PLAIN/app:v1" | grep -qx "index    $d_reg" ||
	fail "pull did not take the referrer built last"
# ... (the 1 MiB-pack index again, "built in 2100": a third artifact) ...
SOURCE_DATE_EPOCH=4102444800 "$INDEX" --root "$WORK/s4" build --force --push --pack-size 1M \
	"$PLAIN/app:v1" >/dev/null
"$ISORUN" --root "$WORK/p2" pull "$PLAIN/app:v1" | grep -qx "index    $d_old" ||
	fail "pull did not take the newest referrer"
# ... and of artifacts built at the same time, the one listed last (the tag schema appends).
SOURCE_DATE_EPOCH=4102444800 "$INDEX" --root "$WORK/s4" build --force --push "$PLAIN/app:v1" \
	>/dev/null
"$ISORUN" --root "$WORK/p3" pull "$PLAIN/app:v1" | grep -qx "index    $d_reg" ||
	fail "pull did not take the last of two referrers of the same time"
ok "isorun pull takes the newest of several index artifacts"

# A reference by digest to an index of platforms: the referrers asked for beside it (of the
# index) are dropped, and the platform's manifest's artifact is found.
python3 "$FIX/make_image.py" "$WORK/multi" v1 --layers 2 --kib 256 \
	--platforms linux/amd64,linux/arm64 >/dev/null
skopeo copy -q --all --dest-tls-verify=false "oci:$WORK/multi:v1" "docker://$PLAIN/multi:v1"
d_multi=$("$INDEX" --root "$WORK/sm" build --push "$PLAIN/multi:v1" | last)
ixd=$(skopeo inspect --raw --tls-verify=false "docker://$PLAIN/multi:v1" | sha256sum | cut -d' ' -f1)
out=$("$ISORUN" --debug --root "$WORK/pm" pull "$PLAIN/multi@sha256:$ixd" 2>"$WORK/pm.log") ||
	fail "pull of an index of platforms by digest: $(tail -3 "$WORK/pm.log")"
grep -qx "index    $d_multi" <<<"$out" || fail "pull by index digest: $out"
grep -q "index artifact" <<<"$out" || fail "pull by index digest did not use the artifact"
! grep -q "asked for beside the manifest" "$WORK/pm.log" ||
	fail "the referrers of the platforms' index were taken for the manifest's"
ok "pull by the digest of an index of platforms finds the platform's artifact"

# 3. floating tags
if "$INDEX" --root "$WORK/s5" build "$PLAIN/app:latest" >"$WORK/out" 2>&1; then
	fail "latest accepted without --allow-floating-tag"
fi
grep -q "floating" "$WORK/out" || fail "no reason given: $(cat "$WORK/out")"
"$INDEX" --root "$WORK/s5" build --allow-floating-tag "$PLAIN/app:latest" >/dev/null
if "$ISORUN" --root "$WORK/s5b" pull "$PLAIN/app:latest" >"$WORK/out" 2>&1; then
	fail "pull accepted latest without --allow-floating-tag"
fi
grep -q "floating" "$WORK/out" || fail "pull gave no reason: $(cat "$WORK/out")"
"$ISORUN" --root "$WORK/s5b" pull --allow-floating-tag "$PLAIN/app:latest" >/dev/null
"$ISORUN" --root "$WORK/s5b" pull "$PLAIN/app:v1" >/dev/null
ok "floating tags refused unless allowed (isorun-index build, isorun pull)"

# 4. basic auth
"$FIX/registry.sh" start "$WORK/auth" --auth htpasswd >/dev/null
REGS+=("$WORK/auth")
. "$WORK/auth/env"
AUTH=127.0.0.1:$REG_PORT
skopeo copy -q --dest-tls-verify=false --dest-creds "$REG_USER:$REG_PASS" "oci:$WORK/img:v1" "docker://$AUTH/app:v1"
export DOCKER_CONFIG=$WORK/docker REGISTRY_AUTH_FILE=$WORK/none.json
if "$INDEX" --root "$WORK/s6" build "$AUTH/app:v1" >"$WORK/out" 2>&1; then
	fail "anonymous build against an htpasswd registry succeeded"
fi
ok "anonymous access refused"
echo "$REG_PASS" | "$ISORUN" login "$AUTH" -u "$REG_USER" --password-stdin >"$WORK/out" 2>&1 ||
	fail "login: $(cat "$WORK/out")"
[ "$(stat -c %a "$DOCKER_CONFIG/config.json")" = 600 ] || fail "auth file mode"
if echo wrong | "$ISORUN" login "$AUTH" -u "$REG_USER" --password-stdin >"$WORK/out2" 2>&1; then
	fail "login with a wrong password succeeded"
fi
d_auth=$("$INDEX" --root "$WORK/s6" build --push "$AUTH/app:v1" 2>"$WORK/err" | last)
[ "$d_auth" = "$d_reg" ] || fail "build with saved login: $d_auth $(cat "$WORK/err")"
"$ISORUN" logout "$AUTH" >/dev/null
# Refused by digest: one error, the manifest's; the referrers asked for beside it failed
# too, and that is not the user's business (it shows under --debug).
if "$ISORUN" --root "$WORK/s8" pull "$AUTH/app@sha256:$mdigest" >"$WORK/out4" 2>&1; then
	fail "pull by digest authorised after logout"
fi
grep -q "manifests/sha256:$mdigest: HTTP 401" "$WORK/out4" || fail "no 401 reported: $(cat "$WORK/out4")"
! grep -q "sha256-$mdigest" "$WORK/out4" || fail "the early referrers' failure was reported: $(cat "$WORK/out4")"
if "$INDEX" --root "$WORK/s7" build "$AUTH/app:v1" >"$WORK/out3" 2>&1; then
	fail "still authorised after logout"
fi
d_creds=$("$INDEX" --root "$WORK/s7" build --creds "$REG_USER:$REG_PASS" "$AUTH/app:v1" 2>"$WORK/err" | last)
[ "$d_creds" = "$d_reg" ] || fail "--creds: $(cat "$WORK/err")"
if cat "$WORK"/out* "$WORK/err" | grep -qF "$REG_PASS"; then
	fail "the password appeared in output"
fi
ok "basic auth: login, --creds, logout; no secret in output"
echo "all tools tests passed"
