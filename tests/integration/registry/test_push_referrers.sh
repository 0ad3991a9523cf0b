#!/bin/bash
# Push (monolithic, chunked, cross-repository mount) and referrers via the OCI 1.1 tag schema
# (distribution 2.8 has no referrers API), read back with skopeo.
. "$(dirname "$0")/lib.sh"

start_registry r --auth none
H=$(reg_env r REG_HOST)
python3 "$FIX/make_image.py" "$WORK/img" v1 --layers 3 --kib 200 >/dev/null
python3 "$FIX/make_image.py" "$WORK/img" v2 --layers 2 --kib 100 --seed 2 >/dev/null
python3 "$FIX/make_image.py" "$WORK/multi" m --layers 1 --kib 64 --seed 3 --platforms linux/amd64,linux/arm64 >/dev/null

D1=$("$REG_TOOL" push-layout "$WORK/img:v1" "$H/push/mono:v1")
want=$(skopeo inspect --raw --tls-verify=false "docker://$H/push/mono:v1" | sha256sum | cut -d' ' -f1)
[ "$D1" = "sha256:$want" ] || fail "pushed manifest digest $D1 vs skopeo sha256:$want"
cmp -s <(skopeo inspect --raw --tls-verify=false "docker://$H/push/mono:v1") "$WORK/img/blobs/sha256/${D1#sha256:}" || fail "manifest bytes differ"
skopeo copy -q --src-tls-verify=false "docker://$H/push/mono:v1" "oci:$WORK/back:v1" >/dev/null || fail "skopeo cannot pull what we pushed (blobs are verified by skopeo)"
ok "monolithic push of an OCI layout; skopeo inspect --raw and copy read it back"

"$REG_TOOL" push-layout "$WORK/img:v2" "$H/push/chunked:v2" 65536 >/dev/null
skopeo copy -q --src-tls-verify=false "docker://$H/push/chunked:v2" "oci:$WORK/back2:v2" >/dev/null || fail "chunked"
ok "chunked (PATCH) push, 64 KiB chunks"

"$REG_TOOL" push-layout "$WORK/img:v1" "$H/push/mono:v1" >/dev/null || fail "re-push is idempotent"
ok "re-push skips existing blobs"

read -r _ B _ < <("$REG_TOOL" resolve "$H/push/mono:v1" | grep '^layer' | head -1)
B=${B#sha256:}
expect_rc 2 "$REG_TOOL" exists "$H/push/other" "sha256:$B"
"$REG_TOOL" push-blob "$H/push/other" "$WORK/img/blobs/sha256/$B" push/mono | grep -q "sha256:$B present-or-mounted" || fail "mount"
"$REG_TOOL" exists "$H/push/other" "sha256:$B" >/dev/null || fail "mounted blob not in the target repository"
"$REG_TOOL" push-blob "$H/push/other" "$WORK/img/blobs/sha256/${D1#sha256:}" push/absent | grep -q uploaded || fail "mount fallback to upload"
ok "cross-repository mount, and upload when the source repository lacks the blob"

DM=$("$REG_TOOL" push-layout "$WORK/multi:m" "$H/push/multi:m")
skopeo inspect --raw --tls-verify=false "docker://$H/push/multi:m" | grep -q '"manifests"' || fail "index push"
"$REG_TOOL" --platform linux/arm64 resolve "$H/push/multi:m" >/dev/null || fail "arm64 manifest of the pushed index"
ok "push of an image index with its platform manifests"

# referrers through the tag schema: two artifacts of different types, neither lost
SUBJ=$D1
expect_rc 0 "$REG_TOOL" referrers "$H/push/mono" "$SUBJ"
grep -qx "via tag-schema" "$WORK/out" || { cat "$WORK/out" "$WORK/err" >&2; fail "expected tag-schema fallback"; }
[ "$(wc -l <"$WORK/out")" = 1 ] || fail "no referrers expected yet"
A1=$("$REG_TOOL" push-referrer "$H/push/mono" "$SUBJ" application/vnd.isorun.index.v1 org.example.k=one)
A2=$("$REG_TOOL" push-referrer "$H/push/mono" "$SUBJ" application/vnd.example.sbom)
"$REG_TOOL" referrers "$H/push/mono" "$SUBJ" >"$WORK/refs"
grep -qx "$A1 application/vnd.isorun.index.v1" "$WORK/refs" || fail "first referrer lost: $(cat "$WORK/refs")"
grep -qx "$A2 application/vnd.example.sbom" "$WORK/refs" || fail "second referrer missing: $(cat "$WORK/refs")"
"$REG_TOOL" referrers "$H/push/mono" "$SUBJ" application/vnd.isorun.index.v1 >"$WORK/f"
[ "$(grep -c sha256 "$WORK/f")" = 1 ] && grep -q "$A1" "$WORK/f" || fail "artifactType filter: $(cat "$WORK/f")"
tag=sha256-${SUBJ#sha256:}
skopeo inspect --raw --tls-verify=false "docker://$H/push/mono:$tag" | python3 -c '
import json,sys
ix=json.load(sys.stdin)
assert ix["mediaType"]=="application/vnd.oci.image.index.v1+json", ix
ann=[m.get("annotations",{}) for m in ix["manifests"]]
assert {"org.example.k":"one"} in ann, ann
assert len(ix["manifests"])==2, ix' || fail "tag-schema index content"
A1b=$("$REG_TOOL" push-referrer "$H/push/mono" "$SUBJ" application/vnd.isorun.index.v1 org.example.k=one)
[ "$A1b" = "$A1" ] || fail "same artifact twice should have the same digest"
[ "$("$REG_TOOL" referrers "$H/push/mono" "$SUBJ" | grep -c sha256)" = 2 ] || fail "re-push duplicated an entry"
ok "referrers via tag schema: two referrers kept, artifactType filter, idempotent"

# concurrent writers of one tag-schema index (no compare-and-swap in the registry API): the
# converging update must keep every entry
for i in 1 2 3 4 5; do
	"$REG_TOOL" push-referrer "$H/push/mono" "$SUBJ" "application/x-concurrent-$i" >"$WORK/cc$i" &
	PIDS+=($!)
done
wait
n=$("$REG_TOOL" referrers "$H/push/mono" "$SUBJ" | grep -c sha256)
[ "$n" = 7 ] || fail "concurrent referrer pushes: $n entries, expected 7"
ok "five concurrent referrer pushes: all kept"
echo "all passed"
