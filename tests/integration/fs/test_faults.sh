#!/bin/bash
# Faults between the mount and the registry (tests/fixtures/fault_proxy.py): a registry
# that goes away fails reads with EIO within the deadline, and the same read succeeds once
# it is back without remounting; corrupt pack bytes are never served (one refetch heals a
# transient flip); 429 and 5xx bursts are ridden out; a mount whose fetches hang unmounts
# without waiting for them; a store whose disk is full still serves what is fetched; the
# cache gives back room when the host's free space runs short.
. "$(dirname "$0")/lib.sh"
start_registry
make_image img v1 --big-mib 2
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: >"$WORK/rules"
python3 "$src/tests/fixtures/fault_proxy.py" --listen "$pport" --upstream "$REG" \
	--rules "$WORK/rules" --log "$WORK/proxy.log" </dev/null >/dev/null 2>&1 &
PROXY_PID=$!
for i in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$pport/v2/" && break; sleep 0.05; done
R=$WORK/root
ref=127.0.0.1:$pport/fs/img:v1
ROOTFS=$WORK/unp-img-v1/rootfs
"$ISORUN" --root "$R" pull "$ref" >/dev/null || fail "pull through the proxy"
mkdir -p "$WORK/m1"
"$ISORUN" --root "$R" mount --prefetch=none --fetch-timeout=4 "$ref" "$WORK/m1" || fail "mount"

expect_eio() { # FILE
	local err rc=0
	err=$(timeout 120 cat "$WORK/m1/$1" 2>&1 >/dev/null) || rc=$?
	[ $rc -ne 124 ] || fail "reading $1 hung"
	[ $rc -ne 0 ] || fail "reading $1 succeeded through a broken registry"
	grep -q "Input/output error" <<<"$err" || fail "reading $1: $err"
}

# Registry unreachable: EIO, then the same read works once it is back.
echo "/v2/fs/img/blobs/ down -1" >"$WORK/rules"
expect_eio usr/lib/libbig.so
: >"$WORK/rules"
cmp "$ROOTFS/usr/lib/libbig.so" "$WORK/m1/usr/lib/libbig.so" || fail "read after recovery"

# Every answer corrupted: never served.
echo "/v2/fs/img/blobs/ flip -1" >"$WORK/rules"
expect_eio usr/bin/tool
[ "$(stats_json "$R" "$WORK/m1" | jget errors.corrupt)" -gt 0 ] || fail "corruption not counted"
# One corrupted answer: the refetch heals it.
echo "/v2/fs/img/blobs/ flip 1" >"$WORK/rules"
cmp "$ROOTFS/usr/bin/tool" "$WORK/m1/usr/bin/tool" || fail "transient corruption not healed"

# Bursts of 429 and 5xx.
printf '/v2/fs/img/blobs/ status429 2 0\n' >"$WORK/rules"
cmp "$ROOTFS/usr/lib/text.txt" "$WORK/m1/usr/lib/text.txt" || fail "429 burst"
printf '/v2/fs/img/blobs/ status500 3\n' >"$WORK/rules"
cmp "$ROOTFS/data/f010" "$WORK/m1/data/f010" || fail "500 burst"
printf '/v2/fs/img/blobs/ truncate 1\n' >"$WORK/rules"
cmp "$ROOTFS/data/f011" "$WORK/m1/data/f011" || fail "truncated answer"
: >"$WORK/rules"

# The whole tree is right after all this.
compare "$ROOTFS" "$WORK/m1"
grep -q "fetch:.*failed" "$R"/mounts/*/daemon.log || fail "failures were not logged"
"$ISORUN" --root "$R" umount "$WORK/m1"

# A mount never starts that cannot read: registry down at mount time (fresh store, so the
# chunks are not local).
: >"$WORK/rules"
"$ISORUN" --root "$WORK/root2" pull "$ref" >/dev/null || fail "pull into a second store"
echo "/v2/fs/img/blobs/ down -1" >"$WORK/rules"
mkdir -p "$WORK/m2"
if "$ISORUN" --root "$WORK/root2" mount --prefetch=none --fetch-timeout=3 "$ref" "$WORK/m2" \
	2>/dev/null; then
	fail "mount succeeded with the registry unreachable"
fi
grep -q "does not serve pack" "$WORK"/root2/mounts/*/daemon.log || fail "cause not logged"

# The same check failing (HEAD of the packs refused) for `isorun create`, which has just
# fetched the index from that registry: it does not wait for the check (--index-fresh, one
# round trip less on a distant registry), its mount comes up and the failed check is logged.
echo "HEAD%20/v2/fs/img/blobs/ down -1" >"$WORK/rules"
id=$(ISORUN_PREFETCH=none ISORUN_KEEP_WARM=0 "$ISORUN" --root "$WORK/root4" create "$ref") ||
	fail "create did not come up with its registry check still to answer"
for _ in $(seq 1 300); do
	grep -q "registry check of .* failed after the mount was reported ready" \
		"$WORK"/root4/mounts/*/daemon.log && break
	sleep 0.1
done
grep -q "registry check of .* failed after the mount was reported ready" \
	"$WORK"/root4/mounts/*/daemon.log || fail "the background check's failure not logged"
"$ISORUN" --root "$WORK/root4" rm -f "$id" || fail "rm"
: >"$WORK/rules"

# Prefetch workers follow the registry's latency unless --prefetch-threads says otherwise:
# 2 for a near registry, 4 when its first answer takes 10 ms or more (only the delayed case
# is checked: on a loaded machine even the loopback registry may take 10 ms).
: >"$WORK/rules"
workers() { # STORE: mount, print prefetch.workers, unmount
	"$ISORUN" --root "$1" mount --prefetch=none "${@:2}" "$ref" "$WORK/m2" || fail "mount $*"
	stats_json "$1" "$WORK/m2" | jget prefetch.workers
	"$ISORUN" --root "$1" umount "$WORK/m2" || fail "umount $*"
	for _ in $(seq 1 100); do [ -n "$(ls "$1"/mounts/*/ctl.sock 2>/dev/null)" ] || break; sleep 0.1; done
}
"$ISORUN" --root "$WORK/root3" pull "$ref" >/dev/null || fail "pull into a third store"
echo "/v2/fs/img/blobs/ delay -1 0.05" >"$WORK/rules"
n=$(workers "$WORK/root3")
[ "$n" = 4 ] || fail "a distant registry got $n prefetch workers, not 4"
n=$(workers "$WORK/root3" --prefetch-threads=3)
[ "$n" = 3 ] || fail "--prefetch-threads=3 gave $n prefetch workers"
: >"$WORK/rules"

# Unmounting while the startup list's fetch hangs on the registry: the prefetch workers,
# stalled in range requests, and the page pusher, waiting for chunks that do not come, let
# the daemon go (the pusher waited up to 30 s for each unit of the startup list, its give-up
# time, before it looked at the stop). The default index lists a few small files; an index
# ordered by a trace of libbig.so (2 MiB: some 30 chunks for the pusher to wait for) is pushed as
# the image's newest artifact first.
"$ISORUN" --root "$WORK/root5" pull "$ref" >/dev/null || fail "pull into a fifth store"
mkdir -p "$WORK/m5"
"$ISORUN" --root "$WORK/root5" mount --prefetch=none --record-trace "$WORK/trace5" "$ref" \
	"$WORK/m5" || fail "mount --record-trace"
pid=$(cat "$WORK"/root5/mounts/*/pid)
cat "$WORK/m5/usr/lib/libbig.so" >/dev/null || fail "read libbig.so"
"$ISORUN" --root "$WORK/root5" umount "$WORK/m5" || fail "umount the tracing mount"
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
"$INDEX" --root "$WORK/ci" build --push --force --startup-trace "$WORK/trace5" \
	"$REG/fs/img:v1" >/dev/null || fail "build --startup-trace"
"$ISORUN" --root "$WORK/root6" pull "$ref" >/dev/null || fail "pull the traced index"
echo "GET%20/v2/fs/img/blobs/ stall -1 600" >"$WORK/rules"
mkdir -p "$WORK/m6"
"$ISORUN" --root "$WORK/root6" --debug mount "$ref" "$WORK/m6" ||
	fail "mount, the fetches hanging"
pid=$(cat "$WORK"/root6/mounts/*/pid)
for _ in $(seq 1 100); do
	units=$(sed -n 's/.*push: \([0-9]*\) units listed.*/\1/p' "$WORK"/root6/mounts/*/daemon.log)
	[ -n "$units" ] && break
	sleep 0.1
done
[ "${units:-0}" -ge 16 ] || fail "the traced index's startup list has ${units:-no} units, not 16+"
sleep 1 # the pusher waits for the first startup chunk
timeout 120 "$ISORUN" --root "$WORK/root6" umount "$WORK/m6" || fail "umount"
for _ in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
	[ -n "${DEBUG_STACKS:-}" ] && gdb -batch -p "$pid" -ex "thread apply all bt" >&2
	kill -9 "$pid"
	fail "the daemon still ran 25 s after its unmount, the fetches hanging"
fi
: >"$WORK/rules"

# The store's disk full (a small tmpfs, filled up; the mounts' directories, with the
# daemon's log, elsewhere): what is fetched is still served (verified, from memory), said
# once in the log and counted; the rest of the image is not prefetched meanwhile; once there
# is room again the chunks are kept.
R7=$WORK/root7
mkdir -p "$R7" "$WORK/m7" "$WORK/mounts7"
mount -t tmpfs -o size=2m tmpfs "$R7" || fail "a tmpfs for the store"
mkdir "$R7/mounts"
mount --bind "$WORK/mounts7" "$R7/mounts" || fail "bind the mounts' directory"
"$ISORUN" --root "$R7" pull "$ref" >/dev/null || fail "pull into a seventh store"
dd if=/dev/zero of="$R7/filler" bs=4k 2>/dev/null || true # until it is full
rc=0
"$ISORUN" --root "$R7" mount "$ref" "$WORK/m7" 2>"$WORK/err7" || rc=$?
[ $rc != 0 ] && grep -q "cannot open store $R7: its filesystem is full" "$WORK/err7" ||
	fail "mount on a full store: status $rc, $(cat "$WORK/err7")"
# Room for store.db's shared memory and journal (and a few chunks), not for the image.
truncate -s -256K "$R7/filler"
# (Little memory: what is read after the room is back is not all there already. Small
# requests, one at a time: the requests planned before the first refusal cannot cover the
# image.)
"$ISORUN" --root "$R7" mount --prefetch=all --mem-cache 64K --startup-hold 64K \
	--request-max 128K --prefetch-threads 1 "$ref" "$WORK/m7" || fail "mount, the store full"
cmp "$ROOTFS/usr/lib/libbig.so" "$WORK/m7/usr/lib/libbig.so" || fail "read, the store full"
cmp "$ROOTFS/usr/bin/tool" "$WORK/m7/usr/bin/tool" || fail "second read, the store full"
log7=$(echo "$R7"/mounts/*/daemon.log)
[ "$(grep -c "cannot keep fetched chunks (No space left on device)" "$log7")" = 1 ] ||
	fail "the full store not said once: $(grep -c "store:" "$log7") store lines"
sleep 1 # time for the background prefetch to have gone on, were it not held back
st=$(stats_json "$R7" "$WORK/m7")
st7=$st
[ "$(jget unstored_chunks <<<"$st")" -gt 0 ] || fail "unstored chunks not counted"
# (prefetch.total: the startup list's items, then every chunk; the position stays at the
# list's end while the store refuses)
listed=$(($(jget prefetch.total <<<"$st") - $(jget chunks <<<"$st")))
[ "$(jget prefetch.position <<<"$st")" -le "$listed" ] ||
	fail "the rest of the image was prefetched into a full store: $(jget prefetch <<<"$st")"
rm "$R7/filler"
compare "$ROOTFS" "$WORK/m7"
grep -q "store: keeping fetched chunks again" "$log7" || fail "room again, not said"
st=$(stats_json "$R7" "$WORK/m7")
[ "$(jget resident_chunks <<<"$st")" -gt "$(jget resident_chunks <<<"$st7")" ] ||
	fail "room again, yet no chunk kept"
"$ISORUN" --root "$R7" umount "$WORK/m7" || fail "umount the full store's mount"

# The cache yields to the host's free space: when another tenant leaves the store's
# filesystem less free than cache_min_free, the mount's daemon evicts what the store holds
# beyond that as chunks arrive (said once), and `isorun cache gc` does the same; what was
# evicted is fetched again when read.
R8=$WORK/root8
mkdir -p "$R8" "$WORK/m8"
mount -t tmpfs -o size=48m tmpfs "$R8" || fail "a tmpfs for the eighth store"
echo '{"cache_min_free": "24M"}' >"$R8/config.json"
"$ISORUN" --root "$R8" pull "$ref" >/dev/null || fail "pull into an eighth store"
"$ISORUN" --root "$R8" mount --prefetch=none "$ref" "$WORK/m8" || fail "mount the eighth store"
store_bytes() { "$ISORUN" --root "$R8" cache stats --json | jget bytes; }
cmp "$ROOTFS/usr/lib/libbig.so" "$WORK/m8/usr/lib/libbig.so" || fail "read, eighth store"
for _ in $(seq 1 150); do [ "$(store_bytes)" -gt 1000000 ] && break; sleep 0.1; done
b0=$(store_bytes)
[ "$b0" -gt 1000000 ] || fail "the eighth store kept nothing: $b0 bytes"
# another tenant takes the room: 16M free left, 8M short of what the cache leaves
avail=$(df --output=avail -B1 "$R8" | tail -n1)
fallocate -l $((avail - (16 << 20))) "$R8/filler" || fail "fill the eighth store's tmpfs"
cmp "$ROOTFS/usr/bin/tool" "$WORK/m8/usr/bin/tool" || fail "read with little room"
log8=$(echo "$R8"/mounts/*/daemon.log)
for _ in $(seq 1 200); do grep -q "the cache leaves free" "$log8" && break; sleep 0.1; done
grep -q "under the 24.0 MiB the cache leaves free" "$log8" ||
	fail "the daemon did not yield to the host's free space: $(tail -n3 "$log8")"
b1=$(store_bytes)
[ "$b1" -lt "$b0" ] || fail "nothing evicted for the host's free space: $b0 -> $b1 bytes"
compare "$ROOTFS" "$WORK/m8" # evicted chunks come back
"$ISORUN" --root "$R8" umount "$WORK/m8" || fail "umount the eighth store's mount"
# gc, with no daemon: room again, a mount keeps a file's chunks, then the tenant is back
rm "$R8/filler"
"$ISORUN" --root "$R8" mount --prefetch=none "$ref" "$WORK/m8" || fail "mount the eighth again"
cmp "$ROOTFS/usr/lib/libbig.so" "$WORK/m8/usr/lib/libbig.so" || fail "read, eighth store again"
for _ in $(seq 1 150); do [ "$(store_bytes)" -gt 1000000 ] && break; sleep 0.1; done
"$ISORUN" --root "$R8" umount "$WORK/m8" || fail "umount the eighth store's mount again"
b2=$(store_bytes)
[ "$b2" -gt 1000000 ] || fail "the eighth store kept nothing the second time: $b2 bytes"
fallocate -l $(($(df --output=avail -B1 "$R8" | tail -n1) - (16 << 20))) "$R8/filler"
"$ISORUN" --root "$R8" cache gc >"$WORK/gc8" || fail "cache gc, little room: $(cat "$WORK/gc8")"
grep -q "short of the free space the cache leaves" "$WORK/gc8" || fail "gc: $(cat "$WORK/gc8")"
[ "$(store_bytes)" -lt "$b2" ] || fail "gc did not yield to the host's free space"
pass
