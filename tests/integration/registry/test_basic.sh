#!/bin/bash
# Pull path against a real registry without auth: an image pushed by skopeo (an independent
# client) is read back by our client and compared byte for byte.
. "$(dirname "$0")/lib.sh"

start_registry r --auth none
H=$(reg_env r REG_HOST)

python3 "$FIX/make_image.py" "$WORK/img" v1 --layers 3 --kib 300 >/dev/null
python3 "$FIX/make_image.py" "$WORK/multi" v2 --layers 2 --kib 64 --seed 7 \
	--platforms linux/amd64,linux/arm64/v8,linux/arm/v7 >/dev/null
skopeo_push "$WORK/img" v1 "$H/test/app:v1"
skopeo copy -q --all --dest-tls-verify=false "oci:$WORK/multi:v2" "docker://$H/test/multi:v2" >/dev/null

# manifest digest equals skopeo's view
want=$(skopeo inspect --raw --tls-verify=false "docker://$H/test/app:v1" | sha256sum | cut -d' ' -f1)
"$REG_TOOL" manifest "$H/test/app:v1" >"$WORK/m"
grep -q "^sha256:$want application/vnd.oci.image.manifest.v1+json$" "$WORK/m" || fail "manifest digest"
ok "manifest by tag matches skopeo"
"$REG_TOOL" manifest "$H/test/app@sha256:$want" >/dev/null || fail "manifest by digest"
ok "manifest by digest verified"

# full pull into an OCI layout, every blob identical to the source layout
"$REG_TOOL" --parallel 3 pull "$H/test/app:v1" "$WORK/pulled" >/dev/null
for b in "$WORK"/img/blobs/sha256/*; do
	cmp -s "$b" "$WORK/pulled/blobs/sha256/$(basename "$b")" || fail "blob $(basename "$b") differs"
done
skopeo inspect --raw "oci:$WORK/pulled:v1" | sha256sum | grep -q "$want" || fail "pulled layout unreadable by skopeo"
ok "pull into OCI layout: all blobs identical, skopeo reads the layout"

# second pull reuses verified blobs
"$REG_TOOL" pull "$H/test/app:v1" "$WORK/pulled" >/dev/null || fail "re-pull"
victim=$(ls -S "$WORK/pulled/blobs/sha256" | head -1) # the largest: a layer
printf 'X' | dd of="$WORK/pulled/blobs/sha256/$victim" bs=1 seek=100 conv=notrunc status=none
"$REG_TOOL" pull "$H/test/app:v1" "$WORK/pulled" >/dev/null || fail "re-pull over a damaged blob"
cmp -s "$WORK/pulled/blobs/sha256/$victim" "$WORK/img/blobs/sha256/$victim" || fail "damaged blob kept"
ok "re-pull over an existing layout reuses good blobs and replaces a damaged one"

# streaming read of the largest layer
"$REG_TOOL" resolve "$H/test/app:v1" >"$WORK/res"
read -r _ L0 S0 _ < <(grep '^layer' "$WORK/res" | head -1)
"$REG_TOOL" stream "$H/test/app:v1" "$L0" "$S0" >"$WORK/s"
[ "$(cat "$WORK/s")" = "$L0 $S0" ] || fail "stream digest: $(cat "$WORK/s") vs $L0 $S0"
"$REG_TOOL" stream "$H/test/app:v1" "$L0" "$S0" 70000 | grep -q " 70000$" || fail "stream closed early"
ok "blob stream delivers the verified blob; closing a stream early stops its download"

# the indexer's registry source: manifest through the index, config, layers as streams
SC=$(dirname "$REG_TOOL")/source-check
out=$("$SC" "$H/test/app:v1") || fail "source-check"
[ "$out" = "ok 3 $(grep '^layer' "$WORK/res" | awk '{s+=$3} END {print s}') sha256:$want" ] || fail "source-check: $out"
"$SC" "docker://$H/test/multi:v2" | grep -q "^ok 2 " || fail "source-check through an index"
ok "idx_source over the registry: streams deliver every layer, verified"

# ranges: one range, several (multipart/byteranges), compared with slices of the blob
F=$WORK/img/blobs/sha256/${L0#sha256:}
slice() { tail -c +$(($1 + 1)) "$F" | head -c "$2" | sha256sum | sed 's/^/sha256:/; s/ .*//'; }
"$REG_TOOL" ranges "$H/test/app:v1" "$L0" 1000:5000 >"$WORK/r1" 2>"$WORK/r1.err" ||
	fail "single range: $(cat "$WORK/r1.err")"
[ "$(cat "$WORK/r1")" = "$(slice 1000 5000)" ] || fail "single range"
grep -q '^progress: [1-9]' "$WORK/r1.err" || fail "single range: no progress reported"
"$REG_TOOL" ranges "$H/test/app:v1" "$L0" 0:10 70000:33333 $((S0 - 7)):7 >"$WORK/r3"
printf '%s\n%s\n%s\n' "$(slice 0 10)" "$(slice 70000 33333)" "$(slice $((S0 - 7)) 7)" >"$WORK/r3want"
cmp -s "$WORK/r3" "$WORK/r3want" || fail "multi range"
ok "Range GET: single (its progress reported) and multipart/byteranges"

# exists / not found
"$REG_TOOL" exists "$H/test/app:v1" "$L0" | grep -qx "$S0" || fail "HEAD size"
expect_rc 2 "$REG_TOOL" exists "$H/test/app:v1" sha256:0000000000000000000000000000000000000000000000000000000000000000
expect_rc 2 "$REG_TOOL" manifest "$H/test/app:nope"
expect_rc 2 "$REG_TOOL" manifest "$H/test/absent:v1"
grep -q "MANIFEST_UNKNOWN\|NAME_UNKNOWN" "$WORK/err" || fail "registry error code not in message: $(cat "$WORK/err")"
ok "404s are ENOENT with the registry's error code"

# platform selection from an index
"$REG_TOOL" resolve "$H/test/multi:v2" >"$WORK/amd"
"$REG_TOOL" --platform linux/arm64 resolve "$H/test/multi:v2" >"$WORK/arm64"
"$REG_TOOL" --platform linux/arm/v7 resolve "$H/test/multi:v2" >"$WORK/armv7"
ix=$(skopeo inspect --raw --tls-verify=false "docker://$H/test/multi:v2")
for p in amd64:amd arm64:arm64 arm:armv7; do
	arch=${p%%:*}
	d=$(echo "$ix" | python3 -c "import json,sys; print([m['digest'] for m in json.load(sys.stdin)['manifests'] if m['platform']['architecture']=='$arch'][0])")
	grep -q "^manifest $d$" "$WORK/${p#*:}" || fail "platform $arch resolved wrongly"
done
expect_rc 2 "$REG_TOOL" --platform linux/s390x resolve "$H/test/multi:v2"
grep -q "linux/arm64" "$WORK/err" || fail "no-platform message should list platforms"
ok "platform selection: amd64, arm64, arm/v7; missing platform lists what exists"

# a loopback registry speaking TLS: unverified HTTPS (docker's rule for loopback); the plain
# ones above were reached by falling back to HTTP
start_registry tls --tls
TH=$(reg_env tls REG_HOST)
skopeo_push "$WORK/img" v1 "$TH/test/app:v1"
"$REG_TOOL" manifest "$TH/test/app:v1" | grep -q "^sha256:$want " || fail "TLS registry"
"$REG_TOOL" stream "$TH/test/app:v1" "$L0" "$S0" | grep -qx "$L0 $S0" || fail "TLS stream"
ok "loopback registry over TLS (self-signed) and over plain HTTP"

# reference policy
expect_rc 22 "$REG_TOOL" policy "$H/test/app"
grep -q "pin" "$WORK/err" || fail "policy message"
expect_rc 22 "$REG_TOOL" policy "$H/test/app:latest"
expect_rc 0 "$REG_TOOL" policy "$H/test/app:latest" --allow-floating
expect_rc 0 "$REG_TOOL" policy "$H/test/app:v1"
ok "pinning policy"
echo "all passed"
