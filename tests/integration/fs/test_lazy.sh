#!/bin/bash
# Laziness: with prefetch off, reading one file fetches about that file's bytes, not the
# image; the first-touch trace (docs/trace.md) lists what was read.
. "$(dirname "$0")/lib.sh"
start_registry
make_image img v1 --big-mib 8
R=$WORK/root
ref=$REG/fs/img:v1
"$ISORUN" --root "$R" pull "$ref" >/dev/null || fail "pull"
mkdir -p "$WORK/m1"
"$ISORUN" --root "$R" mount --prefetch=none --record-trace "$WORK/trace" "$ref" "$WORK/m1" ||
	fail "mount"

# One small file: one chunk, a few bytes.
cmp "$WORK/unp-img-v1/rootfs/etc/os-release" "$WORK/m1/etc/os-release" || fail "os-release"
f=$(stats_json "$R" "$WORK/m1" | jget fetched_bytes)
[ "$f" -le 65536 ] || fail "reading a 40-byte file fetched $f bytes"

# One big file (8 MiB of random data: stored about as large).
big=$WORK/unp-img-v1/rootfs/usr/lib/libbig.so
size=$(stat -c %s "$big")
cmp "$big" "$WORK/m1/usr/lib/libbig.so" || fail "libbig.so differs"
s=$(stats_json "$R" "$WORK/m1")
f=$(echo "$s" | jget fetched_bytes)
total=$(echo "$s" | jget stored_bytes)
echo "file $size bytes, fetched $f bytes of $total stored"
[ "$f" -le $((size * 2)) ] || fail "fetched $f bytes for a $size-byte file"
[ "$f" -lt "$total" ] || fail "the whole image was fetched"
[ "$(echo "$s" | jget prefetch.complete)" = False ] || fail "prefetch ran with --prefetch=none"

"$ISORUN" --root "$R" umount "$WORK/m1" || fail "umount"
for i in $(seq 1 100); do [ -n "$(ls "$R"/mounts/*/ctl.sock 2>/dev/null)" ] || break; sleep 0.1; done
head -1 "$WORK/trace" | grep -qx "isorun-trace 1" || fail "trace header"
n=$(grep -c '^[0-9]' "$WORK/trace")
ino=$(stat -c %i "$WORK/unp-img-v1/rootfs/usr/lib/libbig.so")
[ "$n" -ge 2 ] || fail "trace has $n records"
# Records are in first-touch order with increasing sequence numbers.
awk '/^[0-9]/ { if ($1 != n++) exit 1 }' "$WORK/trace" || fail "trace sequence"
pass
