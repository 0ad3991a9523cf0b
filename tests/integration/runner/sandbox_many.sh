#!/bin/bash
# 20 sandboxes of one lower dir at once: each runs its commands correctly, sees only its own
# scratch writes, and rm cleans every one up (state dirs, cgroups, agent processes, mounts).
. "$(dirname "$0")/lib.sh"

ROOTFS="$WORK/rootfs"
make_rootfs "$ROOTFS"
N=20
ids=()
for i in $(seq $N); do
	ids+=("$("$ISORUN" create --rootfs "$ROOTFS" --hostname "box$i")")
done
expect_eq "$N sandboxes running" "$("$ISORUN" ps --format json | tr -d ' ' | grep -c '"status":"running"')" $N

# concurrent execs: each writes its own marker
pids=()
for i in $(seq $N); do
	"$ISORUN" exec "${ids[$((i - 1))]}" -- sh -c "echo $i > /root/marker" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "an exec failed"; done
ok "$N concurrent execs"

agents=()
for i in $(seq $N); do
	id=${ids[$((i - 1))]}
	got=$("$ISORUN" exec "$id" -- sh -c 'echo $(hostname):$(cat /root/marker)')
	[ "$got" = "box$i:$i" ] || fail "sandbox $i: got '$got', want 'box$i:$i'"
	agents+=("$("$ISORUN" ps --format json | tr -d ' \n' | grep -o "\"id\":\"$id\",\"status\":\"running\",\"pid\":[0-9]*" | sed 's/.*://')")
done
ok "each sandbox sees its own hostname and scratch"
[ "$(cat "$ROOTFS/root/marker" 2>/dev/null)" = "" ] || fail "a write reached the lower dir"
ok "lower dir untouched"

"$ISORUN" rm -f "${ids[@]}"
expect_eq "no sandbox left" "$(ls "$ISORUN_ROOT/sandboxes" | wc -l)" 0
for p in "${agents[@]}"; do
	if kill -0 "$p" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$p/status"; then
		fail "agent $p still alive"
	fi
done
ok "all agents gone"
for id in "${ids[@]}"; do
	for c in memory pids; do
		[ ! -d "/sys/fs/cgroup/$c/isorun/$id" ] || fail "cgroup $c/isorun/$id left behind"
	done
done
ok "all cgroups removed"
grep -q "$ISORUN_ROOT" /proc/self/mountinfo && fail "mounts left in the host namespace"
ok "no mount leaked into the host"
echo "all many-sandbox checks passed"
