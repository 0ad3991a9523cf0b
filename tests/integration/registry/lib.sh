# Shared helpers of the registry integration tests (sourced). Needs $1 = reg-tool path.
set -euo pipefail
REG_TOOL=$1
SRC=${ISORUN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
FIX=$SRC/tests/fixtures
for tool in docker-registry skopeo python3 openssl htpasswd curl; do
	command -v $tool >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
WORK=$(mktemp -d /tmp/isorun-regtest.XXXXXX)
REGS=()
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for d in "${REGS[@]}"; do "$FIX/registry.sh" stop "$d" || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

# start_registry NAME [registry.sh options] -> sets NAME_HOST etc. via the env file
start_registry() {
	local name=$1; shift
	"$FIX/registry.sh" start "$WORK/$name" "$@" >/dev/null
	REGS+=("$WORK/$name")
}
reg_env() { # NAME VAR
	(. "$WORK/$1/env"; eval "echo \$$2")
}

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# expect_rc CODE CMD...: run, require exit status CODE
expect_rc() {
	local want=$1; shift
	set +e
	"$@" >"$WORK/out" 2>"$WORK/err"
	local rc=$?
	set -e
	if [ "$rc" != "$want" ]; then
		cat "$WORK/out" "$WORK/err" >&2
		fail "expected exit $want, got $rc: $*"
	fi
}

skopeo_push() { # LAYOUT TAG HOST/NAME:TAG [creds]
	local extra=()
	[ -n "${4:-}" ] && extra=(--dest-creds "$4")
	skopeo copy -q --dest-tls-verify=false "${extra[@]}" "oci:$1:$2" "docker://$3" >/dev/null
}
