#!/bin/bash
# The command line's own contract, no root needed: every verb answers -h/--help (and `isorun
# help VERB`) with its usage on stdout and status 0; the options `run --help` lists are the
# ones the parser takes; bad options and values are refused naming what was wrong, before
# anything is touched, with status 125 in run and exec (whose status is otherwise the
# command's, so a 2 would read as the command's) and 2 in the other verbs; a CMD's own
# --help is the command's, not run's; without root, run says that sandboxes need it.
# isorun-index (second argument): --version, each command's --help, and its numeric options
# checked.
set -uo pipefail
ISORUN=$1
INDEX=${2:-} # isorun-index, when built
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export ISORUN_ROOT=$WORK/root
fail() { echo "FAIL: $*"; exit 1; }

# expect STATUS PATTERN ARGS...: isorun ARGS exits STATUS and stderr matches PATTERN.
expect() {
	local want=$1 pat=$2 rc=0 bin=${BIN:-$ISORUN}
	shift 2
	"$bin" "$@" >"$WORK/out" 2>"$WORK/err" </dev/null || rc=$?
	[ "$rc" = "$want" ] || fail "$bin $*: status $rc, not $want ($(cat "$WORK/err"))"
	grep -q -e "$pat" "$WORK/err" || fail "$bin $*: stderr does not say '$pat': $(cat "$WORK/err")"
}

"$ISORUN" --help >"$WORK/help" || fail "isorun --help"
verbs=$(sed -n '/^verbs:/,/^$/p' "$WORK/help" | awk 'NR > 1 && NF { print $1 }')
[ "$(wc -w <<<"$verbs")" -ge 15 ] || fail "isorun --help lists: $verbs"
for v in $verbs; do
	for h in --help -h; do
		"$ISORUN" "$v" "$h" >"$WORK/out" 2>"$WORK/err" || fail "isorun $v $h: status $?"
		head -1 "$WORK/out" | grep -q "^usage: isorun $v\b" || fail "isorun $v $h: $(head -1 "$WORK/out")"
		[ -s "$WORK/err" ] && fail "isorun $v $h wrote to stderr: $(cat "$WORK/err")"
	done
	"$ISORUN" help "$v" | cmp -s - "$WORK/out" || fail "isorun help $v differs from isorun $v -h"
done
[ "$("$ISORUN" --version)" = "$("$ISORUN" version)" ] || fail "isorun --version"

# Every option run's parser takes is in run --help (and so in create's and exec's).
"$ISORUN" run --help >"$WORK/run-help"
for o in --keep --rootfs --config --net --memory --cpus --pids --hostname --userns --warm \
	--keep-warm -i --interactive -t --tty -e --env -w --workdir -u --user --timeout; do
	grep -q -- "\\s$o\\b" "$WORK/run-help" || fail "run --help does not list $o"
done

# run and exec: 125, naming the problem.
expect 125 "unknown option --bogus" run --bogus busybox:1.36 -- true
expect 125 "bad --memory lots" run --memory lots busybox:1.36 -- true
expect 125 "bad --cpus" run --cpus 0 busybox:1.36 -- true
expect 125 "bad --timeout" run --timeout -1 busybox:1.36 -- true
expect 125 "bad --keep-warm 1h" run --keep-warm 1h busybox:1.36 -- true
expect 125 "no command" run busybox:1.36
expect 125 "no sandbox ID" exec
expect 125 "unknown option --bogus" exec --bogus 0123 -- true
expect 125 "no command" exec 0123 --
# The other verbs: 2.
expect 2 "unknown option --bogus" create --bogus busybox:1.36
expect 2 "unexpected extra" create busybox:1.36 extra
expect 2 "usage: isorun ps" ps --bogus
expect 2 "unexpected --bogus" images --bogus
expect 2 "usage: isorun cache" cache stats --bogus
expect 2 "invalid value '0' for --prefetch-threads" mount --prefetch-threads 0 busybox:1.36 "$WORK"
expect 2 "invalid value 'abc' for --fetch-timeout" mount --fetch-timeout abc busybox:1.36 "$WORK"
expect 2 "unrecognized option '--bogus'" mount --bogus busybox:1.36 "$WORK"
expect 2 "bad --timeout 5s" pull --timeout 5s busybox:1.36
expect 2 "bad -t abc" stop -t abc 0123
expect 2 "exactly one of SRC and DST" cp a b
expect 2 "unknown verb 'bogus'" bogus
"$ISORUN" help --help | grep -q "^verbs:" || fail "isorun help --help"
if [ -n "$INDEX" ]; then
	"$INDEX" --version | grep -q '^isorun-index [0-9]' || fail "isorun-index --version"
	for c in build inspect ls extract verify; do
		"$INDEX" "$c" --help | grep -q '^usage: isorun-index' || fail "isorun-index $c --help"
	done
	BIN=$INDEX expect 2 "--threads: from 1 to 256, not 'abc'" build --threads abc oci:"$WORK"/x
	BIN=$INDEX expect 2 "--startup-level: a zstd level from 1 to 19, not '20'" \
		build --startup-level 20 oci:"$WORK"/x
fi
# None of it touched the state root.
[ -e "$ISORUN_ROOT" ] && fail "a refused command left $ISORUN_ROOT behind"

# A command's own --help is the command's: run goes on to the image (not there: 125, and
# not run's usage).
expect 125 "oci:$WORK/none" run "oci:$WORK/none:x" -- sh --help
grep -q "usage: isorun" "$WORK/out" "$WORK/err" && fail "run printed its usage for the command's --help"
# ... and says once what is wrong with it, then which image it could not get.
[ "$(grep -c "oci layout $WORK/none: No such file" "$WORK/err")" = 1 ] ||
	fail "run oci:missing does not say once that the layout is missing: $(cat "$WORK/err")"
[ "$(wc -l <"$WORK/err")" = 2 ] && grep -q "cannot get the image oci:$WORK/none:x" "$WORK/err" ||
	fail "run oci:missing: $(cat "$WORK/err")"

# A failed verb says what failed once: the library's line, no second one with the errno.
expect 125 "umount: $WORK is not an isorun mount" umount "$WORK"
[ "$(wc -l <"$WORK/err")" = 1 ] || fail "umount of a plain directory: $(cat "$WORK/err")"

# Without root, a sandbox cannot boot: 125, saying that it needs root (as root, the check
# runs as nobody through setpriv, when nobody can run the binary).
chmod 711 "$WORK"
mkdir -m 1777 "$WORK/nr"
as_user=()
if [ "$(id -u)" = 0 ]; then
	as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	command -v setpriv >/dev/null && "${as_user[@]}" test -x "$ISORUN" || as_user=(skip)
fi
if [ "${as_user[*]}" = skip ]; then
	echo "SKIP (non-root check): no setpriv, or nobody cannot run $ISORUN"
else
	rc=0
	"${as_user[@]}" "$ISORUN" --root "$WORK/nr/root" run --rootfs / -- true 2>"$WORK/err" ||
		rc=$?
	[ $rc = 125 ] && grep -q "sandboxes need root" "$WORK/err" ||
		fail "run as non-root: status $rc, $(cat "$WORK/err")"
fi
echo PASS
