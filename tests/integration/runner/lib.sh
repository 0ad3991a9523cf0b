# Shared helpers of the runner's end-to-end tests (sourced). Real sandboxes: root, a busybox
# rootfs built here, the real agent and the real `isorun` binary of the build tree.
set -eu

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

[ "$(id -u)" = 0 ] || skip "needs root (namespaces, overlayfs, cgroups)"
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || skip "busybox not installed (busybox-static)"
readelf -l "$(readlink -f "$BUSYBOX")" 2>/dev/null | grep -q INTERP && skip "busybox is not static (install busybox-static)"
: "${ISORUN_BUILD_DIR:?ISORUN_BUILD_DIR unset (run through ctest)}"
ISORUN="$ISORUN_BUILD_DIR/tools/isorun"
PROBE="$ISORUN_BUILD_DIR/tests/integration/sandbox-probe"
[ -x "$ISORUN" ] || fail "no isorun binary at $ISORUN"
export ISORUN_AGENT="$ISORUN_BUILD_DIR/agent/isorun-agent"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/isorun-test.XXXXXX")
export ISORUN_ROOT="$WORK/root"
cleanup() {
	for d in "$ISORUN_ROOT"/sandboxes/*/; do
		[ -d "$d" ] && "$ISORUN" rm -f "$(basename "$d")" >/dev/null 2>&1 || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

# make_rootfs DIR: a busybox rootfs with users root, app (1000) and group extra (2000) with
# app as member, plus the probe helper.
make_rootfs() {
	local r=$1
	mkdir -p "$r/bin" "$r/etc" "$r/root" "$r/home/app" "$r/usr/bin" "$r/sbin" "$r/var/www"
	cp "$BUSYBOX" "$r/bin/busybox"
	for a in $("$BUSYBOX" --list); do
		[ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$r/etc/passwd"
	printf 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n' >"$r/etc/group"
	chown 1000:1000 "$r/home/app"
	[ -x "$PROBE" ] && cp "$PROBE" "$r/bin/probe"
	echo "hello from httpd" >"$r/var/www/index.html"
}

# expect_eq WHAT GOT WANT
expect_eq() {
	[ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
	ok "$1"
}

# expect_rc WHAT WANT CMD...: run CMD, compare its exit status
expect_rc() {
	local what=$1 want=$2 rc=0
	shift 2
	"$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
	[ "$rc" = "$want" ] || { cat "$WORK/err" >&2; fail "$what: exit $rc, want $want"; }
	ok "$what"
}

sandbox_status() { # ID -> created|running|stopped|stale
	"$ISORUN" ps --format json | tr -d ' \n' | grep -o "\"id\":\"$1\",\"status\":\"[a-z]*\"" |
		sed 's/.*"status":"\([a-z]*\)"/\1/'
}
