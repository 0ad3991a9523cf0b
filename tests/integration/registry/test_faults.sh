#!/bin/bash
# Transport faults injected by tests/fixtures/fault_proxy.py between reg-tool and a real
# registry: transient faults are retried (and downloads resumed) to a verified result;
# corrupting faults are detected and never accepted; a dead registry fails within the deadline.
. "$(dirname "$0")/lib.sh"

start_registry r --auth none
H=$(reg_env r REG_HOST)
python3 "$FIX/make_image.py" "$WORK/img" v1 --layers 2 --kib 512 >/dev/null
skopeo_push "$WORK/img" v1 "$H/f/app:v1"

PP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RULES=$WORK/rules; PLOG=$WORK/proxy.log
: >"$RULES"
python3 "$FIX/fault_proxy.py" --listen "$PP" --upstream "$H" --rules "$RULES" --log "$PLOG" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PP/v2/" && break; sleep 0.05; done
X=127.0.0.1:$PP
T=("$REG_TOOL" --retry-base-ms 20 --low-speed-time 2 --timeout 60)

read -r _ L0 S0 _ < <("${T[@]}" resolve "$X/f/app:v1" | grep '^layer' | head -1)
MD=$("${T[@]}" manifest "$X/f/app:v1" | cut -d' ' -f1)
SRCBLOB=$WORK/img/blobs/sha256/${L0#sha256:}

rule() { printf "%s\n# %s\n" "$*" "$((++NRULE))" >"$RULES"; : >"$PLOG"; }
NRULE=0
fired() { grep -q "fired 1 $1" "$PLOG" || fail "fault $1 was not injected"; }

# Range requests answered 206 end by themselves: the connection is kept for the next one
# (aborting each at its last byte closed it: a handshake per request on a distant registry).
: >"$RULES"; : >"$PLOG"
"${T[@]}" --repeat 6 ranges "$X/f/app:v1" "$L0" 100:1000 >"$WORK/rr" || fail "repeated ranges"
[ "$(grep -c '^req GET /v2/f/app/blobs/' "$PLOG")" = 6 ] || fail "expected 6 range requests"
NCONN=$(grep -c '^conn$' "$PLOG")
[ "$NCONN" -le 2 ] || fail "6 range requests used $NCONN connections (want 1, 2 with a TLS probe)"
ok "consecutive range requests reuse one connection ($NCONN accepted)"

# A 206 answer running past the range asked for (a server that drops the range's end) is
# cut short once the range is in (which closes its connection: 3 requests, 3 connections),
# with the range's bytes.
rule "/blobs/$L0 rangeopen -1"
"${T[@]}" --repeat 3 ranges "$X/f/app:v1" "$L0" 100:1000 >"$WORK/rr2" || fail "ranges with an open-ended 206"
[ "$(sort -u "$WORK/rr2")" = "$(head -1 "$WORK/rr")" ] || fail "an open-ended 206 gave other bytes"
fired rangeopen
NCONN=$(grep -c '^conn$' "$PLOG")
[ "$NCONN" -ge 3 ] || fail "open-ended 206 answers were read to the end ($NCONN connections for 3)"
ok "a 206 answer longer than the range asked: the range's bytes, the transfer cut short"

rule "/blobs/$L0 reset 1"
"${T[@]}" blob "$X/f/app:v1" "$L0" "$WORK/b" && cmp -s "$WORK/b" "$SRCBLOB" || fail "reset: blob"
fired reset
ok "connection reset mid-body: resumed, verified"

# A range request whose answer breaks half way: retried, and the prefix its progress hook
# had reported stays what the buffer holds (reg-tool checks it).
rule "/blobs/$L0 reset 1"
"${T[@]}" ranges "$X/f/app:v1" "$L0" 1000:300000 >"$WORK/rr3" 2>"$WORK/rr3.err" ||
	fail "reset: range: $(cat "$WORK/rr3.err")"
fired reset
[ "$(cat "$WORK/rr3")" = "$(tail -c +1001 "$SRCBLOB" | head -c 300000 | sha256sum |
	sed 's/^/sha256:/; s/ .*//')" ] || fail "reset: range bytes"
grep -q '^progress: [1-9]' "$WORK/rr3.err" || fail "reset: range: no progress reported"
ok "connection reset in a range answer: retried, its progress prefix kept"

rule "/blobs/$L0 reset 1"
"${T[@]}" stream "$X/f/app:v1" "$L0" "$S0" | grep -qx "$L0 $S0" || fail "reset: stream"
fired reset
ok "connection reset mid-body while streaming: resumed, verified"

rule "/manifests/ status500 2"
"${T[@]}" manifest "$X/f/app:v1" >/dev/null || fail "500"
[ "$(grep -c 'fired 1 status500' "$PLOG")" = 2 ] || fail "500 should fire twice"
ok "HTTP 500 twice: retried"

rule "/blobs/$L0 status429 1 1"
"${T[@]}" blob "$X/f/app:v1" "$L0" "$WORK/b" && cmp -s "$WORK/b" "$SRCBLOB" || fail "429"
fired status429
ok "HTTP 429 with Retry-After: retried"

rule "/blobs/$L0 truncate 1"
"${T[@]}" blob "$X/f/app:v1" "$L0" "$WORK/b" && cmp -s "$WORK/b" "$SRCBLOB" || fail "truncate"
fired truncate
ok "truncated body (connection closed early): resumed, verified"

rule "/blobs/$L0 stall 1 20"
"${T[@]}" blob "$X/f/app:v1" "$L0" "$WORK/b" && cmp -s "$WORK/b" "$SRCBLOB" || fail "stall"
fired stall
ok "stalled transfer: detected by the low-speed limit, resumed"

# closing a stream while the registry is silent must not wait for stall detection or retries
rule "/blobs/$L0 stall 1 120"
timeout 20 "${T[@]}" --low-speed-time 100 stream "$X/f/app:v1" "$L0" "$S0" 1000 | grep -q " 1000$" || fail "stream close during a stall hung"
ok "closing a stream while the transfer is stalled returns promptly"

rule "/blobs/$L0 shorten -1"
expect_rc 74 "${T[@]}" blob "$X/f/app:v1" "$L0" "$WORK/b"
expect_rc 74 "${T[@]}" stream "$X/f/app:v1" "$L0" "$S0"
fired shorten
ok "consistently short body: EBADMSG, never accepted"

rule "/blobs/$L0 flip -1"
expect_rc 74 "${T[@]}" blob "$X/f/app:v1" "$L0" "$WORK/b"
expect_rc 74 "${T[@]}" stream "$X/f/app:v1" "$L0" "$S0"
expect_rc 0 "${T[@]}" ranges "$X/f/app:v1" "$L0" 0:10
expect_rc 74 "${T[@]}" --parallel 3 pull "$X/f/app:v1" "$WORK/badpull"
[ -e "$WORK/badpull/index.json" ] && fail "a failed pull left an index.json"
[ -e "$WORK/badpull/blobs/sha256/${L0#sha256:}" ] && fail "a corrupted blob was published"
rule "/manifests/$MD flip -1"
expect_rc 74 "${T[@]}" manifest "$X/f/app@$MD"
rule "/manifests/v1 flip -1"
expect_rc 74 "${T[@]}" manifest "$X/f/app:v1" # Docker-Content-Digest no longer matches
ok "flipped byte in blob and manifest: EBADMSG, never accepted"

rule "/v2/ status500 -1"
expect_rc 11 "${T[@]}" --retries 3 manifest "$X/f/app:v1"
grep -q "HTTP 500" "$WORK/err" || fail "message should name the status: $(cat "$WORK/err")"
expect_rc 110 "$REG_TOOL" --retry-base-ms 200 --retries 1000 --timeout 3 manifest "$X/f/app:v1"
grep -q "deadline" "$WORK/err" || fail "message should name the deadline: $(cat "$WORK/err")"
rule "/v2/ down -1"
expect_rc 110 "$REG_TOOL" --retry-base-ms 200 --retries 1000 --timeout 3 manifest "$X/f/app:v1"
grep -q "deadline of 3s reached after [0-9]* retries (.*[a-z].*)" "$WORK/err" ||
	fail "message should say why the transfers failed: $(cat "$WORK/err")"
# Nobody listening: the message says so (it said "transfer failed 3 times" and no more).
NOPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_rc 11 "$REG_TOOL" --retry-base-ms 20 --retries 2 manifest "127.0.0.1:$NOPORT/f/app:v1"
grep -q "transfer failed 3 times (Couldn't connect to server)" "$WORK/err" ||
	fail "message should name the refused connection: $(cat "$WORK/err")"
ok "permanently failing registry: EAGAIN after the retries, ETIMEDOUT at the deadline, the cause named"
# Referrers: the tag schema is asked for beside the API. Where the API answers (the proxy
# serves it: distribution 2.8 has none) its answer wins over the tag's; where it answers 404
# the tag's is used, and a tag request that failed beside it is asked again, not reported.
: >"$RULES"
AR=$("${T[@]}" push-referrer "$X/f/app" "$MD" application/vnd.isorun.index.v1)
expect_rc 0 "${T[@]}" referrers "$X/f/app" "$MD"
grep -qx "via tag-schema" "$WORK/out" && grep -qx "$AR application/vnd.isorun.index.v1" "$WORK/out" ||
	fail "referrers through the tag schema: $(cat "$WORK/out" "$WORK/err")"
FAKE=sha256:$(printf api | sha256sum | cut -d' ' -f1)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":123,"artifactType":"application/vnd.isorun.index.v1"}]}' \
	"$FAKE" >"$WORK/api.json"
rule "GET%20/v2/f/app/referrers/ serve -1 $WORK/api.json"
expect_rc 0 "${T[@]}" referrers "$X/f/app" "$MD"
grep -qx "via api" "$WORK/out" && grep -qx "$FAKE application/vnd.isorun.index.v1" "$WORK/out" &&
	! grep -q "$AR" "$WORK/out" || fail "the API's answer should win: $(cat "$WORK/out")"
fired serve
grep -q "^req GET /v2/f/app/manifests/sha256-" "$PLOG" || fail "the tag was not asked for beside the API"
rule "GET%20/v2/f/app/manifests/sha256- flip 1"
expect_rc 0 "${T[@]}" referrers "$X/f/app" "$MD"
grep -qx "via tag-schema" "$WORK/out" && grep -qx "$AR application/vnd.isorun.index.v1" "$WORK/out" ||
	fail "a tag request that failed beside the API: $(cat "$WORK/out" "$WORK/err")"
fired flip
[ "$(grep -c "^req GET /v2/f/app/manifests/sha256-" "$PLOG")" = 2 ] || fail "the tag was not asked again"
[ ! -s "$WORK/err" ] || fail "the failure beside the API was reported: $(cat "$WORK/err")"
ok "referrers: the tag asked for beside the API; the API's answer wins, a failed tag request is asked again"

echo "all passed"
