#!/bin/bash
# `isorun cp` of directories, in and out of a running sandbox, against what a user does
# without it: a tar stream through `isorun exec -i` (and `tar` on the host), and against
# `cp -a` between two host directories (the floor: the same bytes, no sandbox), side by side
# in one hyperfine run per direction. Two trees: many small files (a copy of /usr/include)
# and one large file (256 MiB of random bytes). Everything (the trees, the sandbox's scratch,
# the destinations) is on a tmpfs: on this host's disk, writeback of the previous run's
# 134 MiB of small files made every row, the host's cp -a too, take 2-7 s at random, which
# measured the disk; the copy's own cost is what the rows compare.
#
# usage: bench/cp_bench.sh [BUILD_DIR]      (root; writes bench/results/cp.md)
#   RUNS=N   hyperfine runs per command (default 10)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-${ISORUN_BUILD_DIR:-$SRC/build}}" && pwd)
ISORUN="$BUILD/tools/isorun"
export ISORUN_AGENT="$BUILD/agent/isorun-agent"
RUNS=${RUNS:-10}
WORK="$SRC/bench/work/cp"
OUT="$SRC/bench/results/cp.md"

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in hyperfine busybox tar; do
	command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }
done
[ -x "$ISORUN" ] || { echo "no $ISORUN (build first)" >&2; exit 1; }

if mountpoint -q "$WORK"; then umount -l "$WORK"; fi
rm -rf "$WORK"
mkdir -p "$WORK" "$SRC/bench/results"
mount -t tmpfs -o size=3g isorun-cp-bench "$WORK"
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/sandbox"
export ISORUN_ROOT="$WORK/root"
# a busybox rootfs: its tar is the in-sandbox end of the tar-stream rows
cp "$(command -v busybox)" "$WORK/rootfs/bin/busybox"
for a in sh tar rm mkdir true; do ln -s busybox "$WORK/rootfs/bin/$a"; done
ID=$("$ISORUN" create --rootfs "$WORK/rootfs")
cleanup() {
	"$ISORUN" rm -f "$ID" >/dev/null 2>&1 || true
	umount -l "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

cp -a /usr/include "$WORK/small"
mkdir -p "$WORK/large"
head -c 256M /dev/urandom >"$WORK/large/blob"
NSMALL=$(find "$WORK/small" | wc -l)
SZSMALL=$(du -sm "$WORK/small" | cut -f1)

{
	echo "# \`isorun cp\` of directories"
	echo
	echo "$(date -u +%Y-%m-%d), $(git -C "$SRC" rev-parse --short HEAD), $(nproc) vCPUs, RUNS=$RUNS."
	echo "small: a copy of /usr/include ($NSMALL entries, $SZSMALL MiB); large: one 256 MiB file."
	echo "in: host directory to /sandbox/t of a running sandbox (its scratch layer; all on tmpfs);"
	echo "out: the sandbox's copy back to a host directory. The destination is removed before"
	echo "each run (hyperfine --prepare). Rows: isorun cp; tar | isorun exec -i ID -- tar -x"
	echo "(and its reverse), what users do without directory copies; cp -a on the host (floor)."
	echo
} >"$OUT"

for tree in small large; do
	"$ISORUN" cp "$WORK/$tree" "$ID:/sandbox/$tree"
	DST="$WORK/out"
	hyperfine -N --runs "$RUNS" --warmup 1 --export-markdown "$WORK/in-$tree.md" \
		--prepare "sh -c 'rm -rf $DST; $ISORUN exec $ID -- rm -rf /sandbox/t'" \
		-n "isorun cp (in, $tree)" "$ISORUN cp $WORK/$tree $ID:/sandbox/t" \
		-n "tar | isorun exec -i tar -x (in, $tree)" \
		"sh -c 'tar -C $WORK/$tree -cf - . | $ISORUN exec -i $ID -- sh -c \"mkdir /sandbox/t && tar -xf - -C /sandbox/t\"'" \
		-n "cp -a on the host (floor, $tree)" "cp -a $WORK/$tree $DST"
	hyperfine -N --runs "$RUNS" --warmup 1 --export-markdown "$WORK/out-$tree.md" \
		--prepare "rm -rf $DST" \
		-n "isorun cp (out, $tree)" "$ISORUN cp $ID:/sandbox/$tree $DST" \
		-n "isorun exec tar -c | tar -x (out, $tree)" \
		"sh -c 'mkdir $DST && $ISORUN exec $ID -- tar -C /sandbox/$tree -cf - . | tar -xf - -C $DST'" \
		-n "cp -a on the host (floor, $tree)" "cp -a $WORK/$tree $DST"
	for d in in out; do
		echo "### $d, $tree"
		echo
		cat "$WORK/$d-$tree.md"
		echo
	done >>"$OUT"
done
echo "wrote $OUT" >&2
