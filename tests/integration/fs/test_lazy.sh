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
# The store got it as a raw frame (docs/format.md) in the mount's local pack, recorded in
# store.db's local_chunks (within the daemon's 2 s bookkeeping flush): 12 bytes of headers,
# then the bytes; no chunk file.
osr=$WORK/unp-img-v1/rootfs/etc/os-release
id=$(sha256sum "$osr" | cut -c1-64)
[ ! -e "$R/chunks/${id:0:2}/$id" ] || fail "a mount wrote a chunk file"
chunk=$WORK/os-release.frame
# frame_of ROOT DIGEST: "PACK OFFSET LENGTH" of a chunk in a local pack, its frame copied
# to $chunk; fails while store.db has no row for it.
frame_of() {
	python3 - "$1" "$2" "$chunk" <<'PY'
import sqlite3, sys
root, digest, out = sys.argv[1:]
db = sqlite3.connect(f"file:{root}/store.db?mode=ro", uri=True)
row = db.execute("SELECT pack, off, len FROM local_chunks WHERE digest=?",
                 (bytes.fromhex(digest),)).fetchone()
if not row:
    sys.exit(1)
pack = f"{root}/packs/{row[0]:016x}"
with open(pack, "rb") as f:
    f.seek(row[1])
    open(out, "wb").write(f.read(row[2]))
print(pack, row[1], row[2])
PY
}
for i in $(seq 1 100); do frame_of "$R" "$id" >/dev/null && break; sleep 0.1; done
[ -f "$chunk" ] || fail "the chunk of os-release is not in the store"
[ "$(stat -c %s "$chunk")" = $(($(stat -c %s "$osr") + 12)) ] || fail "not stored as a raw frame"
tail -c "$(stat -c %s "$osr")" "$chunk" | cmp - "$osr" || fail "raw frame does not hold the bytes"
zstd -qdc "$chunk" | cmp - "$osr" || fail "raw frame is not a valid zstd frame"
"$INDEX" --root "$R" verify "$ref" >/dev/null 2>&1 && fail "verify passed with most chunks missing"

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

# --chunk-format=zstd stores the fetched frame as it is in the pack (another store: another
# daemon), and reads it back.
R2=$WORK/root2
mkdir -p "$WORK/m2"
"$ISORUN" --root "$R2" pull "$ref" >/dev/null || fail "pull (root2)"
"$ISORUN" --root "$R2" mount --prefetch=none --chunk-format=zstd "$ref" "$WORK/m2" ||
	fail "mount --chunk-format=zstd"
cmp "$osr" "$WORK/m2/etc/os-release" || fail "os-release (zstd store)"
chunk2=$R2/chunks/${id:0:2}/$id
[ -f "$chunk2" ] || fail "the chunk of os-release is not in the second store"
[ "$(stat -c %s "$chunk2")" != $(($(stat -c %s "$osr") + 12)) ] || fail "stored raw despite zstd"
zstd -qdc "$chunk2" | cmp - "$osr" || fail "zstd chunk does not decompress to the bytes"
"$ISORUN" --root "$R2" umount "$WORK/m2" || fail "umount m2"

# The daemon writes the trace's last version when it stops, after the unmount: wait for it.
pid=$(cat "$R"/mounts/*/pid)
"$ISORUN" --root "$R" umount "$WORK/m1" || fail "umount"
for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
head -1 "$WORK/trace" | grep -qx "isorun-trace 1" || fail "trace header"
n=$(grep -c '^[0-9]' "$WORK/trace")
ino=$(stat -c %i "$WORK/unp-img-v1/rootfs/usr/lib/libbig.so")
[ "$n" -ge 2 ] || fail "trace has $n records"
# Records are in first-touch order with increasing sequence numbers.
awk '/^[0-9]/ { if ($1 != n++) exit 1 }' "$WORK/trace" || fail "trace sequence"

# The trace makes os-release and libbig.so the head of the startup list. Fetched by the prefetch ahead of
# their first read, its chunks are held for it even though the memory cache (2 MiB here)
# cannot keep them all: the read loads nothing back from the store, and leaves none held.
# With a hold too small for any chunk they go through the cache and come back from the store.
"$INDEX" --root "$WORK/ci" build --push --force --startup-trace "$WORK/trace" "$ref" >/dev/null ||
	fail "build --startup-trace"
for hold in 256M 1; do
	R4=$WORK/root-hold-$hold
	mkdir -p "$WORK/m4"
	"$ISORUN" --root "$R4" mount --prefetch=startup --mem-cache 2M --startup-hold "$hold" \
		"$ref" "$WORK/m4" || fail "mount --startup-hold $hold"
	for i in $(seq 1 300); do
		s=$(stats_json "$R4" "$WORK/m4")
		[ "$(echo "$s" | jget prefetch.position)" = "$(echo "$s" | jget prefetch.total)" ] && break
		sleep 0.1
	done
	[ "$(echo "$s" | jget prefetch.total)" -ge 100 ] || fail "the startup list lost libbig.so"
	cmp "$big" "$WORK/m4/usr/lib/libbig.so" || fail "libbig.so (hold $hold)"
	cmp "$osr" "$WORK/m4/etc/os-release" || fail "os-release (hold $hold)"
	s=$(stats_json "$R4" "$WORK/m4")
	loads=$(($(echo "$s" | jget store_hits) + $(echo "$s" | jget preloads)))
	peak=$(echo "$s" | jget held_peak_bytes)
	echo "hold $hold: $loads store loads, held at most $peak bytes, $(echo "$s" | jget held_bytes) now"
	if [ "$hold" = 1 ]; then
		[ "$peak" = 0 ] || fail "held $peak bytes with a 1-byte hold"
		[ "$loads" -gt 0 ] || fail "the control run loaded nothing from the store"
	else
		[ "$loads" = 0 ] || fail "$loads chunks loaded back from the store despite the hold"
		[ "$peak" -ge $((size / 2)) ] || fail "held at most $peak bytes"
		# (the trace's other small files are not read here)
		[ "$(echo "$s" | jget held_bytes)" -lt 65536 ] || fail "chunks still held after their read"
	fi
	"$ISORUN" --root "$R4" umount "$WORK/m4" || fail "umount (hold $hold)"
done

# Damaged local chunks. A frame whose header is gone (what an eviction's hole punch leaves:
# zeros) reads as absent and is fetched again; a flipped data byte keeps the frame's shape
# but not its XXH3 sum: counted as corrupt, not served, fetched again. Either way the store
# then holds a good copy.
for damage in header data; do
	read -r pack off len < <(frame_of "$R" "$id") || fail "os-release's chunk is not recorded"
	if [ $damage = header ]; then
		dd if=/dev/zero of="$pack" bs=1 seek="$off" count=12 conv=notrunc status=none
	else
		printf 'X' | dd of="$pack" bs=1 seek=$((off + len - 1)) conv=notrunc status=none
	fi
	"$ISORUN" --root "$R" mount --prefetch=none "$ref" "$WORK/m1" || fail "mount ($damage)"
	cmp "$osr" "$WORK/m1/etc/os-release" || fail "damaged chunk ($damage) was served"
	c=$(stats_json "$R" "$WORK/m1" | jget errors.corrupt)
	[ $damage = header ] || [ "$c" -ge 1 ] || fail "$damage damage not counted as corrupt"
	"$ISORUN" --root "$R" umount "$WORK/m1" || fail "umount ($damage)"
	for i in $(seq 1 100); do [ -n "$(ls "$R"/mounts/*/ctl.sock 2>/dev/null)" ] || break; sleep 0.1; done
	frame_of "$R" "$id" >/dev/null || fail "chunk not recorded again ($damage)"
	tail -c "$(stat -c %s "$osr")" "$chunk" | cmp - "$osr" || fail "chunk not restored ($damage)"
done
# --verify-local also checks the SHA-256 of what it loads: an undamaged store serves as is.
"$ISORUN" --root "$R" mount --prefetch=none --verify-local "$ref" "$WORK/m1" || fail "mount (verify)"
cmp "$osr" "$WORK/m1/etc/os-release" || fail "os-release with --verify-local"
[ "$(stats_json "$R" "$WORK/m1" | jget errors.corrupt)" = 0 ] || fail "verify-local: corrupt"
"$ISORUN" --root "$R" umount "$WORK/m1" || fail "umount (verify)"
pass
