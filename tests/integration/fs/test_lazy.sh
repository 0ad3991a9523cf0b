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
# their first read, its chunks are held for it even though the memory cache (4 MiB here,
# half the file) cannot keep them all: the read loads nothing back from the store, and leaves none held.
# With a hold too small for any chunk they go through the cache and come back from the store.
"$INDEX" --root "$WORK/ci" build --push --force --startup-trace "$WORK/trace" "$ref" >/dev/null ||
	fail "build --startup-trace"
for hold in 256M 1; do
	R4=$WORK/root-hold-$hold
	mkdir -p "$WORK/m4"
	# (without the page pusher, which would take the chunks before the reads: below)
	"$ISORUN" --root "$R4" mount --prefetch=startup --mem-cache 4M --startup-hold "$hold" \
		--no-page-push "$ref" "$WORK/m4" || fail "mount --startup-hold $hold"
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
		[ "$loads" -gt 50 ] || fail "the control run loaded $loads chunks from the store"
	else
		# (a chunk two readahead windows share can leave the cache between its two reads
		# and come back from the store: with a 2 MiB cache, up to 13 loads in a third of
		# the runs)
		[ "$loads" -le 4 ] || fail "$loads chunks loaded back from the store despite the hold"
		[ "$peak" -ge $((size / 2)) ] || fail "held at most $peak bytes"
		# (the trace's other small files are not read here)
		[ "$(echo "$s" | jget held_bytes)" -lt 65536 ] || fail "chunks still held after their read"
	fi
	"$ISORUN" --root "$R4" umount "$WORK/m4" || fail "umount (hold $hold)"
done

# The page pusher: the startup list's pages go into the kernel's page cache once their file
# is looked up (here after the whole list has arrived: every unit waits for its lookup), so
# reading them makes no FUSE read at all, and the pages hold the file's bytes: libbig.so's
# chunk boundaries fall inside pages (content-defined chunks of random data), os-release
# ends inside its only page. With --no-page-push the same reads go to the daemon.
osize=$(stat -c %s "$osr")
# Proactive reclaim (a DAMON pageout scheme, as these VMs run; or the damon_reclaim module)
# pages out page cache that nothing has read for a while, and pushed pages are such pages
# until their read: with it on, only the pushes themselves are checked (the kernel took every
# page), not what stays in the page cache until the read (beside a busy test, up to 63 % of
# the pages went between the push and the read).
damon_pageout() {
	local k
	[ "$(cat /sys/module/damon_reclaim/parameters/enabled 2>/dev/null)" = Y ] && return 0
	for k in /sys/kernel/mm/damon/admin/kdamonds/[0-9]*; do
		[ "$(cat "$k/state" 2>/dev/null)" = on ] || continue
		grep -qx pageout "$k"/contexts/*/schemes/*/action 2>/dev/null && return 0
	done
	return 1
}
# push_check NAME [MOUNT OPTION]: mount, look the two files up (with LIST=1: list their
# directories instead, which gives the kernel their inodes without a lookup), read them,
# check.
push_check() {
	local name=$1 R5=$WORK/root-push-$1 s res r0 r1 i
	shift
	mkdir -p "$WORK/m5"
	"$ISORUN" --root "$R5" mount --prefetch=startup "$@" "$ref" "$WORK/m5" || fail "mount ($name)"
	for i in $(seq 1 300); do
		s=$(stats_json "$R5" "$WORK/m5")
		[ "$(echo "$s" | jget prefetch.position)" = "$(echo "$s" | jget prefetch.total)" ] && break
		sleep 0.1
	done
	if [ "${LIST:-}" = 1 ]; then
		ls -l "$WORK/m5/usr/lib" "$WORK/m5/etc" >/dev/null || fail "ls ($name)"
	else
		stat "$WORK/m5/usr/lib/libbig.so" "$WORK/m5/etc/os-release" >/dev/null ||
			fail "stat ($name)"
	fi
	if [ $# = 0 ]; then
		for i in $(seq 1 300); do
			s=$(stats_json "$R5" "$WORK/m5")
			[ "$(echo "$s" | jget pushed_bytes)" -ge $((size + osize)) ] && break
			sleep 0.1
		done
	fi
	res=$(fincore -b -n -o RES "$WORK/m5/usr/lib/libbig.so" | tr -d ' ')
	r0=$(echo "$s" | jget reads)
	cmp "$big" "$WORK/m5/usr/lib/libbig.so" || fail "libbig.so ($name)"
	cmp "$osr" "$WORK/m5/etc/os-release" || fail "os-release ($name)"
	s=$(stats_json "$R5" "$WORK/m5")
	r1=$(echo "$s" | jget reads)
	echo "$name: $(echo "$s" | jget pushed_bytes) bytes pushed in $(echo "$s" | jget push_sends) sends, libbig.so $res bytes cached before its read, $((r1 - r0)) FUSE reads"
	if [ $# = 0 ] && damon_pageout; then
		echo "($name: proactive reclaim is on here: what of the pushed pages stays in the" \
			"page cache until the read is not checked, only that the kernel took them all)"
		[ "$(echo "$s" | jget pushed_bytes)" -ge $((size + osize)) ] ||
			fail "$name: $(echo "$s" | jget pushed_bytes) bytes pushed, not $((size + osize))"
	elif [ $# = 0 ]; then
		[ "$res" = "$size" ] || fail "$name: $res of libbig.so's $size bytes in the page cache"
		[ "$r1" = "$r0" ] || fail "$name: $((r1 - r0)) FUSE reads of pushed pages"
	else
		[ "$(echo "$s" | jget pushed_bytes)" = 0 ] || fail "$name: pushed pages"
		[ "$r1" -gt "$r0" ] || fail "$name: the control run made no FUSE read"
	fi
	"$ISORUN" --root "$R5" umount "$WORK/m5" || fail "umount ($name)"
}
push_check push
LIST=1 push_check push-listed
push_check no-push --no-page-push
# A startup list that reads libbig.so backwards, a MiB at a time: the unit after a boundary
# comes before the one ahead of it, which then sends the page across their boundary.
R6=$WORK/root-back
mkdir -p "$WORK/m6"
"$ISORUN" --root "$R6" mount --prefetch=none --record-trace "$WORK/trace-back" "$ref" "$WORK/m6" ||
	fail "mount (backwards trace)"
for m in $(seq $((size / 1048576 - 1)) -1 0); do
	dd if="$WORK/m6/usr/lib/libbig.so" of=/dev/null bs=1M skip="$m" count=1 status=none ||
		fail "backwards read at $m MiB"
done
cat "$WORK/m6/etc/os-release" >/dev/null
pid=$(cat "$R6"/mounts/*/pid)
"$ISORUN" --root "$R6" umount "$WORK/m6" || fail "umount (backwards trace)"
for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
"$INDEX" --root "$WORK/ci" build --push --force --startup-trace "$WORK/trace-back" "$ref" \
	>/dev/null || fail "build --startup-trace (backwards)"
push_check push-backwards

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
