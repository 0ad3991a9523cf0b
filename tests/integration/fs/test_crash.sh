#!/bin/bash
# kill -9 of the daemon in the middle of the prefetch: the dead mount is cleaned up by the
# next mount, the store holds only whole, verified chunks, and the tree is still identical.
. "$(dirname "$0")/lib.sh"
start_registry
make_image img v1 --big-mib 12
R=$WORK/root
ref=$REG/fs/img:v1
"$ISORUN" --root "$R" pull "$ref" >/dev/null || fail "pull"
mkdir -p "$WORK/m1"
"$ISORUN" --root "$R" mount --prefetch=all --bwlimit=2M "$ref" "$WORK/m1" || fail "mount"
for i in $(seq 1 200); do
	[ "$(stats_json "$R" "$WORK/m1" | jget fetched_bytes)" -gt 0 ] && break
	sleep 0.05
done
s=$(stats_json "$R" "$WORK/m1")
[ "$(echo "$s" | jget prefetch.complete)" = False ] || fail "prefetch finished before the kill"
pid=$(cat "$R"/mounts/*/pid)
kill -9 "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
ls "$WORK/m1" >/dev/null 2>&1 && fail "dead mount still answers"
umount -l "$WORK/m1"
"$ISORUN" --root "$R" mount --prefetch=all "$ref" "$WORK/m1" || fail "remount after the crash"
compare "$WORK/unp-img-v1/rootfs" "$WORK/m1"
wait_prefetch "$R" "$WORK/m1"
idx=$("$ISORUN" --root "$R" images | awk 'NR == 2 {print $3}')
"$INDEX" --root "$R" verify "$ref" >/dev/null || fail "store verification after the crash"
"$ISORUN" --root "$R" umount "$WORK/m1"
pass
