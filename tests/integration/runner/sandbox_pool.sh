#!/bin/bash
# The warm pool (--warm, isorun pool-fill): booted sandboxes waiting for a create or run with
# the same options. A warm run uses one (fresh: nothing of an earlier command) and leaves
# another behind; other options draw from another pool; a pooled sandbox whose agent died is
# dropped, not used; ps shows pooled sandboxes and rm removes them with their pool entry.
. "$(dirname "$0")/lib.sh"
RF=$WORK/rootfs
make_rootfs "$RF"

pooled() { # ids of pooled sandboxes
	"$ISORUN" ps --format json | tr -d ' \n' | grep -o '"id":"[0-9a-f]*","status":"pooled"' |
		sed 's/"id":"\([0-9a-f]*\)".*/\1/'
}
wait_pooled() { # N [NOT-ID]: until N sandboxes are pooled (none of them NOT-ID)
	for _ in $(seq 1 300); do
		if [ "$(pooled | grep -vc "${2:-^$}")" -ge "$1" ]; then return 0; fi
		sleep 0.05
	done
	fail "fewer than $1 pooled sandboxes after 15 s: $(pooled | tr '\n' ' ')"
}
fillers_done() { # wait for background pool-fill processes (they hold .fill)
	for f in "$ISORUN_ROOT"/pool/*/.fill; do [ -e "$f" ] && flock "$f" true; done
	return 0
}
trap 'fillers_done; cleanup' EXIT

"$ISORUN" pool-fill --rootfs "$RF" || fail "pool-fill"
p1=$(pooled)
expect_eq "pool-fill boots one pooled sandbox" "$(echo "$p1" | wc -w)" 1
"$ISORUN" pool-fill --rootfs "$RF" || fail "pool-fill again"
expect_eq "pool-fill keeps the pool at its count" "$(pooled | wc -w)" 1
"$ISORUN" pool-fill --count=2 --rootfs "$RF" || fail "pool-fill --count=2"
expect_eq "pool-fill --count=2 adds one" "$(pooled | wc -w)" 2
"$ISORUN" rm -f "$(pooled | grep -v "$p1")" || fail "rm of a pooled sandbox"
expect_eq "rm removes a pooled sandbox and its pool entry" \
	"$(ls "$ISORUN_ROOT"/pool/*/ | grep -vc "$p1")" 0

out=$("$ISORUN" run --warm --rootfs "$RF" -- hostname) || fail "run --warm"
expect_eq "run --warm runs in the pooled sandbox" "$out" "${p1:0:12}"
[ ! -d "$ISORUN_ROOT/sandboxes/$p1" ] || fail "the claimed sandbox outlived its run"
wait_pooled 1 "$p1"
ok "run --warm leaves a new pooled sandbox behind"

"$ISORUN" run --warm --rootfs "$RF" -- sh -c 'echo x > /sandbox/mark' || fail "warm run (write)"
wait_pooled 1
expect_rc "the next warm run does not see the previous one's files" 1 \
	"$ISORUN" run --warm --rootfs "$RF" -- test -e /sandbox/mark
wait_pooled 1

p=$(pooled)
"$ISORUN" run --warm --net host --rootfs "$RF" -- true || fail "run --warm --net host"
pooled | grep -qx "$p" || fail "a --net host run took a --net none sandbox"
ok "other options draw from another pool"
fillers_done
for id in $(pooled); do [ "$id" = "$p" ] || "$ISORUN" rm -f "$id"; done

# A pooled sandbox whose agent died is dropped, and the run still succeeds elsewhere.
pid=$("$ISORUN" ps --format json | tr -d ' \n' | grep -o "\"id\":\"$p\",\"status\":\"pooled\",\"pid\":[0-9]*" |
	sed 's/.*"pid"://')
[ -n "$pid" ] && kill -9 "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
out=$("$ISORUN" run --warm --rootfs "$RF" -- hostname) || fail "run --warm after the agent died"
[ "$out" != "${p:0:12}" ] || fail "ran in the dead pooled sandbox"
[ ! -d "$ISORUN_ROOT/sandboxes/$p" ] || fail "the dead pooled sandbox was not removed"
ok "a dead pooled sandbox is dropped"

fillers_done
id=$("$ISORUN" create --warm --rootfs "$RF") || fail "create --warm"
[ "$(sandbox_status "$id")" = running ] || fail "create --warm: $id is $(sandbox_status "$id")"
ok "create --warm returns a running, claimed sandbox"
"$ISORUN" rm -f "$id"
fillers_done
