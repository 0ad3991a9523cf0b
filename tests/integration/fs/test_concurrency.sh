#!/bin/bash
# Two images sharing most chunks, mounted together under a cache cap far below their size,
# read in parallel (fio random reads and many whole-file readers) while the cache evicts:
# no read fails and every byte read matches the umoci reference.
. "$(dirname "$0")/lib.sh"
start_registry
make_image img v1 --big-mib 6
make_image img v2 --big-mib 6 --variant b
R=$WORK/root
for t in v1 v2; do
	"$ISORUN" --root "$R" pull "$REG/fs/img:$t" >/dev/null || fail "pull $t"
	mkdir -p "$WORK/m-$t"
	"$ISORUN" --root "$R" mount --prefetch=all --cache-max=3M "$REG/fs/img:$t" "$WORK/m-$t" ||
		fail "mount $t"
done

# Reference hashes of every regular file.
for t in v1 v2; do
	(cd "$WORK/unp-img-$t/rootfs" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
		>"$WORK/sums-$t"
done

pids=()
if command -v fio >/dev/null; then
	for t in v1 v2; do
		fio --name=rr-$t --filename="$WORK/m-$t/usr/lib/libbig.so" --readonly --rw=randread \
			--bsrange=4k-256k --ioengine=psync --numjobs=2 --runtime=4 --time_based \
			--output="$WORK/fio-$t.log" >/dev/null 2>&1 &
		pids+=($!)
	done
fi
for round in 1 2 3; do
	for t in v1 v2; do
		(cd "$WORK/m-$t" && sha256sum --quiet -c "$WORK/sums-$t") >"$WORK/check-$t-$round" 2>&1 &
		pids+=($!)
	done
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ $rc = 0 ] || { cat "$WORK"/check-* "$WORK"/fio-*.log 2>/dev/null | tail -20; fail "a reader failed"; }

for t in v1 v2; do
	s=$(stats_json "$R" "$WORK/m-$t")
	[ "$(echo "$s" | jget read_errors)" = 0 ] || fail "read errors on $t: $s"
done
grep -q "cache: evicted" "$R"/mounts/*/daemon.log || fail "the cache never evicted"
for t in v1 v2; do "$ISORUN" --root "$R" umount "$WORK/m-$t"; done
"$ISORUN" --root "$R" cache gc --cache-max 3M >/dev/null || fail "gc"
"$ISORUN" --root "$R" cache stats --json | jget bytes | awk '{ exit !($1 <= 3 * 1048576) }' ||
	fail "store above the cap after gc"
pass
