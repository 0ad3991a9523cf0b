#!/bin/bash
# Authentication against real registries: htpasswd (basic) and token (bearer) auth, auth
# files written by login, credential helpers, identity tokens, expiring tokens.
. "$(dirname "$0")/lib.sh"
unset REGISTRY_AUTH_FILE DOCKER_CONFIG XDG_RUNTIME_DIR
export HOME=$WORK/home
mkdir -p "$HOME"

python3 "$FIX/make_image.py" "$WORK/img" v1 --layers 2 --kib 128 >/dev/null

# ---- htpasswd ----
start_registry hp --auth htpasswd
H=$(reg_env hp REG_HOST); U=$(reg_env hp REG_USER); P=$(reg_env hp REG_PASS)
echo "$P" | "$REG_TOOL" --authfile "$WORK/auth.json" login "$H" "$U"
[ "$(stat -c %a "$WORK/auth.json")" = 600 ] || fail "auth file mode $(stat -c %a "$WORK/auth.json")"
grep -q "$P" "$WORK/auth.json" && fail "password stored in clear"
skopeo copy -q --dest-tls-verify=false --dest-authfile "$WORK/auth.json" "oci:$WORK/img:v1" "docker://$H/priv/app:v1" >/dev/null
ok "login writes a 0600 docker auth file that skopeo accepts"

expect_rc 13 "$REG_TOOL" manifest "$H/priv/app:v1"
ok "anonymous access to a basic-auth registry: EACCES"
echo "$U:wrong-$P" | ISORUN_LOG=debug expect_rc 13 "$REG_TOOL" --creds-stdin manifest "$H/priv/app:v1"
grep -q "wrong-$P" "$WORK/err" "$WORK/out" && fail "password leaked into output"
ok "wrong password: EACCES, password not in messages"
echo "$U:$P" | "$REG_TOOL" --creds-stdin manifest "$H/priv/app:v1" >/dev/null || fail "explicit creds"
"$REG_TOOL" --authfile "$WORK/auth.json" manifest "$H/priv/app:v1" >/dev/null || fail "authfile creds"
ok "explicit credentials and --authfile"

# standard chain: $REGISTRY_AUTH_FILE, then ~/.docker/config.json
REGISTRY_AUTH_FILE=$WORK/auth.json "$REG_TOOL" manifest "$H/priv/app:v1" >/dev/null || fail "REGISTRY_AUTH_FILE"
mkdir -p "$HOME/.docker"
cp "$WORK/auth.json" "$HOME/.docker/config.json"
"$REG_TOOL" manifest "$H/priv/app:v1" >/dev/null || fail "~/.docker/config.json"
"$REG_TOOL" logout "$H"
expect_rc 13 "$REG_TOOL" manifest "$H/priv/app:v1"
expect_rc 2 "$REG_TOOL" logout "$H"
ok "REGISTRY_AUTH_FILE, ~/.docker/config.json, logout"

# credential helper (credHelpers, then credsStore) from $DOCKER_CONFIG
mkdir -p "$WORK/bin" "$WORK/dc"
cat >"$WORK/bin/docker-credential-fake" <<SH
#!/bin/sh
echo "\$*" >>"$WORK/helper.args"
read -r host
echo "\$host" >>"$WORK/helper.hosts"
if [ "\$host" = "$H" ]; then
	printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "\$host" "$U" "$P"
else
	echo "credentials not found in native keychain"; exit 1
fi
SH
chmod +x "$WORK/bin/docker-credential-fake"
echo "{\"credHelpers\": {\"$H\": \"fake\"}}" >"$WORK/dc/config.json"
PATH=$WORK/bin:$PATH DOCKER_CONFIG=$WORK/dc "$REG_TOOL" manifest "$H/priv/app:v1" >/dev/null || fail "credHelpers"
echo '{"credsStore": "fake", "auths": {}}' >"$WORK/dc/config.json"
PATH=$WORK/bin:$PATH DOCKER_CONFIG=$WORK/dc "$REG_TOOL" manifest "$H/priv/app:v1" >/dev/null || fail "credsStore"
grep -qvx get "$WORK/helper.args" && fail "helper got arguments other than 'get': $(sort -u "$WORK/helper.args")"
grep -qx "$H" "$WORK/helper.hosts" || fail "helper did not get the host on stdin"
ok "credential helpers: credHelpers and credsStore, host on stdin, only 'get' on the command line"

# redirects to a blob store: followed, but our Authorization stays with the registry
PP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "/blobs/ redirect -1" >"$WORK/rules"
python3 "$FIX/fault_proxy.py" --listen "$PP" --upstream "$H" --rules "$WORK/rules" \
	--log "$WORK/proxy.log" --storage-auth "$U:$P" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PP/v2/" && break; sleep 0.05; done
read -r _ L0 S0 _ < <(echo "$U:$P" | "$REG_TOOL" --creds-stdin resolve "127.0.0.1:$PP/priv/app:v1" | grep '^layer' | head -1)
echo "$U:$P" | "$REG_TOOL" --creds-stdin blob "127.0.0.1:$PP/priv/app:v1" "$L0" "$WORK/rb" || fail "redirected blob"
cmp -s "$WORK/rb" "$WORK/img/blobs/sha256/${L0#sha256:}" || fail "redirected blob content"
grep -q "req GET /v2/priv/app/blobs/$L0 auth=yes" "$WORK/proxy.log" || fail "registry request without auth: $(cat "$WORK/proxy.log")"
grep -q "req GET /__storage__/v2/priv/app/blobs/$L0 auth=no" "$WORK/proxy.log" || fail "Authorization sent to the storage host: $(cat "$WORK/proxy.log")"
ok "307 to another host is followed without our Authorization header"

# ---- token ----
start_registry tk --auth token --token-expires 3
T=$(reg_env tk REG_HOST); LOG=$(reg_env tk REG_TOKEN_LOG)
echo "$U:$P" | "$REG_TOOL" --creds-stdin push-layout "$WORK/img:v1" "$T/tok/app:v1" >/dev/null || fail "push with token auth"
ok "push with bearer token (pull,push scope)"
expect_rc 13 "$REG_TOOL" push-layout "$WORK/img:v1" "$T/tok/other:v1"
ok "anonymous token is pull-only: push refused"
"$REG_TOOL" manifest "$T/tok/app:v1" >/dev/null || fail "anonymous pull with token"
ok "anonymous pull through the token server"
echo "$U:nope-$P" | ISORUN_LOG=debug expect_rc 13 "$REG_TOOL" --creds-stdin manifest "$T/tok/app:v1"
grep -q "nope-$P" "$WORK/err" "$WORK/out" && fail "password leaked into debug output"
echo "$U:$P" | ISORUN_LOG=debug "$REG_TOOL" --creds-stdin manifest "$T/tok/app:v1" >/dev/null 2>"$WORK/dbg"
grep -qi "bearer ey\|$P" "$WORK/dbg" && fail "token or password in debug output"
grep -q "refused wrong-credentials" "$LOG" || fail "token server did not see the wrong password"
ok "wrong password at the token server: EACCES"

# identity token (docker 'identitytoken'): OAuth2 refresh-token grant
IDT=$(reg_env tk REG_IDENTITY_TOKEN)
echo "{\"auths\": {\"$T\": {\"identitytoken\": \"$IDT\"}}}" >"$WORK/idt.json"
"$REG_TOOL" --authfile "$WORK/idt.json" push-layout "$WORK/img:v1" "$T/tok/idt:v1" >/dev/null || fail "identity token push"
ok "identity token from the auth file"

# expiring tokens, on one client: cached while valid, fetched again after expires_in
: >"$LOG"
"$REG_TOOL" --repeat 3 manifest "$T/tok/app:v1" >/dev/null
n=$(grep -c "issued anonymous repository:tok/app:pull" "$LOG")
[ "$n" = 1 ] || fail "expected one cached token for 3 requests, token log: $(cat "$LOG")"
: >"$LOG"
"$REG_TOOL" --repeat 2 --pause-ms 3500 manifest "$T/tok/app:v1" >/dev/null
n=$(grep -c "issued anonymous repository:tok/app:pull" "$LOG")
[ "$n" = 2 ] || fail "expected a fresh token after expiry, token log: $(cat "$LOG")"
# 403 to a token we sent: exactly one refresh, then success or EACCES (no loop)
TP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: >"$WORK/rules403"
python3 "$FIX/fault_proxy.py" --listen "$TP" --upstream "$T" --rules "$WORK/rules403" --log "$WORK/p403.log" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$TP/v2/" && break; sleep 0.05; done
printf '/manifests/ status403 1\n' >"$WORK/rules403"
: >"$LOG"
"$REG_TOOL" manifest "127.0.0.1:$TP/tok/app:v1" >/dev/null || fail "403 once should be refreshed away"
[ "$(grep -c 'issued anonymous repository:tok/app:pull' "$LOG")" = 2 ] || fail "403: expected initial + one refreshed token: $(cat "$LOG")"
printf '/manifests/ status403 -1\n' >"$WORK/rules403"
: >"$LOG"
: >"$WORK/p403.log"
expect_rc 13 "$REG_TOOL" manifest "127.0.0.1:$TP/tok/app:v1"
[ "$(grep -c 'issued anonymous' "$LOG")" = 2 ] || fail "403 forever: expected exactly one refresh: $(cat "$LOG")"
[ "$(grep -c 'fired 1 status403' "$WORK/p403.log")" = 2 ] || fail "403 forever: expected 2 refused requests: $(cat "$WORK/p403.log")"
ok "403 on a token: refreshed exactly once, then success or EACCES"

read -r _ L0 S0 _ < <("$REG_TOOL" resolve "$T/tok/app:v1" | grep '^layer' | head -1)
: >"$LOG"
"$REG_TOOL" stream "$T/tok/app:v1" "$L0" "$S0" >/dev/null || fail "stream with token"
ok "tokens are refreshed after expires_in"
"$REG_TOOL" --parallel 4 pull "$T/tok/app:v1" "$WORK/tokpull" >/dev/null || fail "parallel pull with tokens"
for b in "$WORK"/img/blobs/sha256/*; do
	[ -f "$WORK/tokpull/blobs/sha256/$(basename "$b")" ] || continue
	cmp -s "$b" "$WORK/tokpull/blobs/sha256/$(basename "$b")" || fail "token pull blob differs"
done
ok "parallel pull on one client with bearer tokens"
echo "all passed"
