#!/bin/bash
# Sandbox numbers: warm `isorun run REF -- /bin/true` of the bench's minimal image (index and
# chunks cached, the image mounted by an earlier run and kept warm) against `unshare` +
# `chroot` of an unpacked copy of the same image, side by side in one hyperfine run; the
# same with a busybox rootfs (`--rootfs`); `isorun exec` round trip on a running sandbox; the
# memory of 20 idle sandboxes (agent PSS/RSS and cgroup memory usage).
# The minimal image comes from bench/images.sh through the loopback registry of
# bench/registry.sh (started here when it is not running, and stopped again).
#
# usage: bench/sandbox_bench.sh [BUILD_DIR]      (root; writes bench/results/sandbox.md)
#   RUNS=N   hyperfine runs per command (default 100)
#   BEFORE=PATH  another `isorun` binary (e.g. built from an older commit) measured in the
#                same hyperfine runs, for before/after rows that share the machine's load
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-${ISORUN_BUILD_DIR:-$SRC/build}}" && pwd)
ISORUN="$BUILD/tools/isorun"
export ISORUN_AGENT="$BUILD/agent/isorun-agent"
RUNS=${RUNS:-100}
BEFORE=${BEFORE:-}
WORK="$SRC/bench/work/sandbox"
OUT="$SRC/bench/results/sandbox.md"

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in hyperfine busybox unshare python3 jq flock; do
	command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }
done
[ -x "$ISORUN" ] || { echo "no $ISORUN (build first)" >&2; exit 1; }
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || { echo "BEFORE=$BEFORE is not executable" >&2; exit 1; }

. "$SRC/bench/lib.sh"
REG_STARTED=
if ! curl -fsS "http://$BENCH_LO_ADDR/v2/" >/dev/null 2>&1; then
	"$SRC/bench/registry.sh" start
	REG_STARTED=1
fi
"$SRC/bench/images.sh" --only minimal
MIN_DIGEST=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "minimal") | .digest' \
	"$BENCH_WORK/oci/index.json" | head -n1)
REF="$BENCH_LO_ADDR/minimal@$MIN_DIGEST"

if mountpoint -q "$WORK/mnt" 2>/dev/null; then umount -l "$WORK/mnt"; fi
for m in $(awk -v w="$WORK/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
	umount -l "$m" 2>/dev/null || true
done
rm -rf "$WORK"
mkdir -p "$WORK" "$SRC/bench/results"
export ISORUN_ROOT="$WORK/root"
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS/bin" "$ROOTFS/etc" "$ROOTFS/root"
cp "$(command -v busybox)" "$ROOTFS/bin/busybox"
for a in sh true cat; do ln -s busybox "$ROOTFS/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\n' >"$ROOTFS/etc/group"
mkdir -p "$ROOTFS/proc"

cleanup() {
	for d in "$ISORUN_ROOT"/sandboxes/*/; do
		[ -d "$d" ] && "$ISORUN" rm -f "$(basename "$d")" >/dev/null 2>&1 || true
	done
	# the image's mount, kept warm by the runs: unmount it now (its daemon then exits;
	# `isorun umount` leaves a shared mount to its holders and its keep-warm delay)
	for m in "$ISORUN_ROOT"/mounts/*/mnt; do
		mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null || true
	done
	[ -z "$REG_STARTED" ] || "$SRC/bench/registry.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The image: its index pulled (built from the layers: the minimal repository has no index
# artifact), its chunks fetched by a first run, and an unpacked copy for the baseline, copied
# out of a mount of it (the same tree, byte for byte).
echo "== minimal image: pull, first run, unpacked copy"
"$ISORUN" pull "$REF" >/dev/null
"$ISORUN" run "$REF" -- /bin/true
mkdir -p "$WORK/mnt"
"$ISORUN" mount "$REF" "$WORK/mnt"
cp -a "$WORK/mnt" "$WORK/unpacked"
"$ISORUN" umount "$WORK/mnt"
UNPACKED="$WORK/unpacked"
# hyperfine runs one command's runs after the other's: let the copy's writeback finish first,
# or the first rows pay for it
sync
sleep 3

median() { # hyperfine json, command index -> "median min max" in ms
	python3 -c "
import json,sys
r=json.load(open(sys.argv[1]))['results'][int(sys.argv[2])]
print('%.2f %.2f %.2f %.2f' % (r['median']*1e3, r['min']*1e3, r['max']*1e3, r['stddev']*1e3))" "$1" "$2"
}

# The same CLI with only the sandbox verbs: what `isorun` costs without the libraries of
# the other modules (libcurl & co.), which dominate its start-up.
SLIM="$WORK/isorun-slim"
cc -O2 -D_GNU_SOURCE -o "$SLIM" -DISORUN_VERSION='"slim"' "$SRC/tools/isorun/main.c" \
	"$SRC/tools/isorun/cmd_version.c" "$SRC/tools/isorun/cmd_runner_sandbox.c" \
	-I"$SRC/common/include" -I"$SRC/runner/include" \
	"$BUILD/runner/libisorun_runner.a" "$BUILD/agent/libisorun_agent_proto.a" \
	"$BUILD/common/libisorun_common.a" $(pkg-config --libs json-c libseccomp libxxhash)

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
io_before=$(sed -n 's/^some avg10=\([0-9.]*\) avg60=\([0-9.]*\).*/\1% (10 s), \2% (60 s)/p' \
	/proc/pressure/io 2>/dev/null || true)
# the BEFORE binary's commands, when given, come last so the indexes above stay fixed
before_run=() before_exec=()
if [ -n "$BEFORE" ]; then
	before_run=("$BEFORE run $REF -- /bin/true" "$BEFORE run --rootfs $ROOTFS -- /bin/true")
fi
echo "== run vs baseline"
# The image rows first: every sandbox run leaves ~20 freed inodes behind, and on a
# filesystem without a journal (this one) ext4 skips recently freed inodes when it allocates
# (find_inode_bit/recently_deleted), so later rows pay for the runs before them.
hyperfine -N -w 10 -r "$RUNS" --export-json "$WORK/run.json" \
	"$ISORUN run $REF -- /bin/true" \
	"unshare -mpiuf --mount-proc chroot $UNPACKED /bin/true" \
	"$ISORUN run --rootfs $ROOTFS -- /bin/true" \
	"unshare -mpiuf --mount-proc chroot $ROOTFS /bin/true" \
	"unshare -mpiufn --mount-proc chroot $ROOTFS /bin/true" \
	"$ISORUN run --warm --rootfs $ROOTFS -- /bin/true" "${before_run[@]}"
# the warm runs' background pool-fill: let the last one finish, then empty the pool
for f in "$ISORUN_ROOT"/pool/*/.fill; do [ -e "$f" ] && flock "$f" true; done
for id in $("$ISORUN" ps --format json | jq -r '.[] | select(.status == "pooled") | .id'); do
	"$ISORUN" rm -f "$id"
done
# The same with 50 ms between runs (a sandbox requested now and then, as agents do): the
# warm pool has time to refill in the background.
echo "== run vs baseline, runs 50 ms apart"
hyperfine -N -w 5 -r "$((RUNS / 2))" --prepare "sleep 0.05" --export-json "$WORK/spaced.json" \
	"$ISORUN run --rootfs $ROOTFS -- /bin/true" \
	"$ISORUN run --warm --rootfs $ROOTFS -- /bin/true" \
	"unshare -mpiuf --mount-proc chroot $ROOTFS /bin/true"
for f in "$ISORUN_ROOT"/pool/*/.fill; do [ -e "$f" ] && flock "$f" true; done
for id in $("$ISORUN" ps --format json | jq -r '.[] | select(.status == "pooled") | .id'); do
	"$ISORUN" rm -f "$id"
done
read -r srun2_med srun2_min srun2_max srun2_sd <<<"$(median "$WORK/spaced.json" 0)"
read -r swarm_med swarm_min swarm_max swarm_sd <<<"$(median "$WORK/spaced.json" 1)"
read -r sbase_med sbase_min sbase_max sbase_sd <<<"$(median "$WORK/spaced.json" 2)"
read -r irun_med irun_min irun_max irun_sd <<<"$(median "$WORK/run.json" 0)"
read -r ibase_med ibase_min ibase_max ibase_sd <<<"$(median "$WORK/run.json" 1)"
read -r run_med run_min run_max run_sd <<<"$(median "$WORK/run.json" 2)"
read -r base_med base_min base_max base_sd <<<"$(median "$WORK/run.json" 3)"
read -r basen_med basen_min basen_max basen_sd <<<"$(median "$WORK/run.json" 4)"
read -r wrun_med wrun_min wrun_max wrun_sd <<<"$(median "$WORK/run.json" 5)"
if [ -n "$BEFORE" ]; then
	read -r birun_med birun_min birun_max birun_sd <<<"$(median "$WORK/run.json" 6)"
	read -r brun_med brun_min brun_max brun_sd <<<"$(median "$WORK/run.json" 7)"
fi

echo "== exec round trip"
ID=$("$ISORUN" create --rootfs "$ROOTFS")
if [ -n "$BEFORE" ]; then
	before_exec=("$BEFORE exec $ID -- /bin/true" "$BEFORE version")
fi
hyperfine -N -w 20 -r "$((RUNS * 2))" --export-json "$WORK/exec.json" \
	"$ISORUN exec $ID -- /bin/true" "$ISORUN version" "$SLIM exec $ID -- /bin/true" \
	"$SLIM version" "${before_exec[@]}"
read -r exec_med exec_min exec_max exec_sd <<<"$(median "$WORK/exec.json" 0)"
read -r ver_med ver_min ver_max ver_sd <<<"$(median "$WORK/exec.json" 1)"
read -r sexec_med sexec_min sexec_max sexec_sd <<<"$(median "$WORK/exec.json" 2)"
read -r sver_med sver_min sver_max sver_sd <<<"$(median "$WORK/exec.json" 3)"
# CPU time of the client process (perf stat task-clock, mean of RUNS): wall-clock medians on
# a loaded machine mostly measure the wait for a CPU; this does not.
cpu_ms() { perf stat -x, -r "$RUNS" -e task-clock -- "$@" 2>&1 >/dev/null | awk -F, '/task-clock/{printf "%.2f", $1}'; }
cpu_rows=""
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
	for bin in "$ISORUN" "$SLIM" ${BEFORE:+"$BEFORE"}; do
		v=$(cpu_ms "$bin" version) e=$(cpu_ms "$bin" exec "$ID" -- /bin/true)
		name="\`$(basename "$bin")\`"
		[ "$bin" != "$BEFORE" ] || name="$name (before)"
		cpu_rows+="| $name | $v ms | $e ms |"$'\n'
	done
fi
if [ -n "$BEFORE" ]; then
	read -r bexec_med bexec_min bexec_max bexec_sd <<<"$(median "$WORK/exec.json" 4)"
	read -r bver_med bver_min bver_max bver_sd <<<"$(median "$WORK/exec.json" 5)"
fi
"$ISORUN" rm -f "$ID"

echo "== in-process (the runner library without the CLI's start-up)"
# The isorun CLI links every module's libraries (libcurl and its dependencies, libfuse,
# libarchive, ...): its start-up is measured separately above. This client measures what
# the runner itself costs, through its public API.
cat >"$WORK/rtt.c" <<'C'
#include "runner/runner.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}
int main(int argc, char **argv)
{
	int n = atoi(argv[2]);
	struct run_ctx *ctx;
	if (run_ctx_new(NULL, &ctx) < 0)
		return 1;
	const char *av[] = {"/bin/true", NULL};
	int null = open("/dev/null", O_WRONLY);
	struct run_exec_opts o = {.argv = av, .stdin_fd = -1, .stdout_fd = null,
				  .stderr_fd = null, .signal_fd = -1};
	struct run_create_opts co = {.lower_dir = argv[3]};
	double *v = calloc((size_t)n, sizeof(double));
	char *id = NULL;
	if (!strcmp(argv[1], "exec") && run_sandbox_create(ctx, &co, &id) < 0)
		return 1;
	for (int i = 0; i < n + 5; i++) {
		struct run_exec_result r;
		double t = now();
		if (!strcmp(argv[1], "run") && run_sandbox_create(ctx, &co, &id) < 0)
			return 1;
		if (run_sandbox_exec(ctx, id, &o, &r) < 0 || run_exec_status(&r) != 0)
			return 1;
		if (!strcmp(argv[1], "run")) {
			if (run_sandbox_remove(ctx, id, true) < 0)
				return 1;
			free(id);
		}
		if (i >= 5) /* warm-up */
			v[i - 5] = now() - t;
	}
	if (!strcmp(argv[1], "exec"))
		run_sandbox_remove(ctx, id, true);
	qsort(v, (size_t)n, sizeof(double), cmp);
	printf("%.2f %.2f %.2f\n", v[n / 2], v[0], v[n * 9 / 10]);
	return 0;
}
C
cc -O2 -o "$WORK/rtt" "$WORK/rtt.c" -I"$SRC/runner/include" \
	"$BUILD/runner/libisorun_runner.a" "$BUILD/agent/libisorun_agent_proto.a" \
	"$BUILD/common/libisorun_common.a" $(pkg-config --libs json-c libseccomp libxxhash)
read -r lexec_med lexec_min lexec_p90 <<<"$("$WORK/rtt" exec "$((RUNS * 2))" "$ROOTFS")"
read -r lrun_med lrun_min lrun_p90 <<<"$("$WORK/rtt" run "$RUNS" "$ROOTFS")"

echo "== memory of 20 idle sandboxes"
ids=()
# with a memory limit, so each has a memory cgroup to read the usage from
for i in $(seq 20); do ids+=("$("$ISORUN" create --rootfs "$ROOTFS" --memory 256M)"); done
sleep 1
pss=0 rss=0 cg=0
for id in "${ids[@]}"; do
	pid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" \
		"$ISORUN_ROOT/sandboxes/$id/state.json")
	p=$(awk '/^Pss:/{print $2}' "/proc/$pid/smaps_rollup")
	r=$(awk '/^Rss:/{print $2}' "/proc/$pid/smaps_rollup")
	c=0
	for f in /sys/fs/cgroup/memory/isorun/$id/memory.usage_in_bytes \
		/sys/fs/cgroup/isorun/$id/memory.current; do
		[ -f "$f" ] && c=$(cat "$f")
	done
	pss=$((pss + p)) rss=$((rss + r)) cg=$((cg + c))
done
"$ISORUN" rm -f "${ids[@]}"
pss_each=$(python3 -c "print('%.0f' % ($pss/20))")
rss_each=$(python3 -c "print('%.0f' % ($rss/20))")
cg_each=$(python3 -c "print('%.0f' % ($cg/20/1024))")
ratio=$(python3 -c "print('%.1f' % ($run_med/$base_med))")
iratio=$(python3 -c "print('%.1f' % ($irun_med/$ibase_med))")
lratio=$(python3 -c "print('%.1f' % ($lrun_med/$base_med))")
wratio=$(python3 -c "print('%.1f' % ($wrun_med/$base_med))")
s_ratio=$(python3 -c "print('%.1f' % ($srun2_med/$sbase_med))")
sw_ratio=$(python3 -c "print('%.1f' % ($swarm_med/$sbase_med))")

verdict() { python3 -c "import sys; print('met' if float(sys.argv[1]) <= float(sys.argv[2]) else 'NOT met')" "$1" "$2"; }

before_rows=""
if [ -n "$BEFORE" ]; then
	bratio=$(python3 -c "print('%.1f' % ($brun_med/$base_med))")
	biratio=$(python3 -c "print('%.1f' % ($birun_med/$ibase_med))")
	before_rows="| before: \`isorun run REF -- /bin/true\` (minimal image) | ${birun_med} ms | ${birun_min} | ${birun_max} | ${birun_sd} | ≤ 40 ms | $(verdict "$birun_med" 40) |
| before: image run / image baseline | ${biratio}× | | | | ≤ 3× | $(verdict "$biratio" 3) |
| before: \`isorun run --rootfs DIR -- /bin/true\` | ${brun_med} ms | ${brun_min} | ${brun_max} | ${brun_sd} | ≤ 40 ms | $(verdict "$brun_med" 40) |
| before: run / baseline | ${bratio}× | | | | ≤ 3× | $(verdict "$bratio" 3) |
| before: \`isorun exec ID -- /bin/true\` | ${bexec_med} ms | ${bexec_min} | ${bexec_max} | ${bexec_sd} | ≤ 5 ms | $(verdict "$bexec_med" 5) |
| before: \`isorun version\` | ${bver_med} ms | ${bver_min} | ${bver_max} | ${bver_sd} | | |
"
fi
before_note=""
[ -z "$BEFORE" ] || before_note=" The \"before:\" rows are \`$BEFORE\`, measured in the same
hyperfine runs as the rows above them."
libs=$(ldd "$ISORUN" | awk '{print $1}' | sed 's/\.so.*//; s,.*/,,' | grep -v '^linux-vdso$' | paste -sd' ')

cat >"$OUT" <<EOF
# Sandbox benchmarks

Measured by \`bench/sandbox_bench.sh\` on $(date -u +%Y-%m-%d) ($(nproc) CPUs, kernel
$(uname -r), load average before the run: $load_before, I/O pressure ${io_before:-unknown},
niceness $(nice); other jobs shared the machine, so every number moves between runs — compare
rows of the same run).
Image: the bench's \`minimal\` (debootstrap minbase bookworm, $(du -sh "$UNPACKED" | cut -f1) unpacked),
\`$REF\` from the loopback registry, index and chunks in the store, its mount kept warm
between runs (the default \`ISORUN_KEEP_WARM\`); the baseline is \`unshare\` + \`chroot\` of an
unpacked copy of it. Rootfs rows: busybox-static with three links (\`/bin/true\` is busybox).
Times are wall-clock medians from hyperfine (-N, warm, $RUNS runs), every row of the first
table in one hyperfine run.

| measure | median | min | max | σ | target | |
|---|---:|---:|---:|---:|---|---|
| \`isorun run REF -- /bin/true\` (minimal image) | ${irun_med} ms | ${irun_min} | ${irun_max} | ${irun_sd} | ≤ 40 ms | $(verdict "$irun_med" 40) |
| baseline \`unshare -mpiuf --mount-proc chroot UNPACKED /bin/true\` | ${ibase_med} ms | ${ibase_min} | ${ibase_max} | ${ibase_sd} | | |
| image run / image baseline | ${iratio}× | | | | ≤ 3× | $(verdict "$iratio" 3) |
| \`isorun run --rootfs DIR -- /bin/true\` | ${run_med} ms | ${run_min} | ${run_max} | ${run_sd} | ≤ 40 ms | $(verdict "$run_med" 40) |
| baseline \`unshare -mpiuf --mount-proc chroot DIR /bin/true\` | ${base_med} ms | ${base_min} | ${base_max} | ${base_sd} | | |
| baseline + network namespace (\`-n\`) | ${basen_med} ms | ${basen_min} | ${basen_max} | ${basen_sd} | | |
| run / baseline | ${ratio}× | | | | ≤ 3× | $(verdict "$ratio" 3) |
| \`isorun run --warm --rootfs DIR -- /bin/true\` (warm pool) | ${wrun_med} ms | ${wrun_min} | ${wrun_max} | ${wrun_sd} | ≤ 40 ms | $(verdict "$wrun_med" 40) |
| warm run / baseline | ${wratio}× | | | | ≤ 3× | $(verdict "$wratio" 3) |
| runs 50 ms apart: \`isorun run --rootfs DIR -- /bin/true\` | ${srun2_med} ms | ${srun2_min} | ${srun2_max} | ${srun2_sd} | ≤ 40 ms | $(verdict "$srun2_med" 40) |
| runs 50 ms apart: \`isorun run --warm ...\` (warm pool) | ${swarm_med} ms | ${swarm_min} | ${swarm_max} | ${swarm_sd} | ≤ 40 ms | $(verdict "$swarm_med" 40) |
| runs 50 ms apart: baseline | ${sbase_med} ms | ${sbase_min} | ${sbase_max} | ${sbase_sd} | | |
| runs 50 ms apart: run / baseline | ${s_ratio}× | | | | ≤ 3× | $(verdict "$s_ratio" 3) |
| runs 50 ms apart: warm run / baseline | ${sw_ratio}× | | | | ≤ 3× | $(verdict "$sw_ratio" 3) |
| \`isorun exec ID -- /bin/true\` (running sandbox) | ${exec_med} ms | ${exec_min} | ${exec_max} | ${exec_sd} | ≤ 5 ms | $(verdict "$exec_med" 5) |
| \`isorun version\` (CLI start-up alone) | ${ver_med} ms | ${ver_min} | ${ver_max} | ${ver_sd} | | |
| slim CLI \`exec ID -- /bin/true\` | ${sexec_med} ms | ${sexec_min} | ${sexec_max} | ${sexec_sd} | ≤ 5 ms | $(verdict "$sexec_med" 5) |
| slim CLI \`version\` (start-up alone) | ${sver_med} ms | ${sver_min} | ${sver_max} | ${sver_sd} | | |
| run through the library (create + exec + remove, no CLI start-up) | ${lrun_med} ms | ${lrun_min} | p90 ${lrun_p90} | | ≤ 40 ms | $(verdict "$lrun_med" 40) |
| library run / baseline | ${lratio}× | | | | ≤ 3× | $(verdict "$lratio" 3) |
| exec through the library (\`run_sandbox_exec\`, no CLI start-up) | ${lexec_med} ms | ${lexec_min} | p90 ${lexec_p90} | | ≤ 5 ms | $(verdict "$lexec_med" 5) |
${before_rows}
CPU time of the CLI process (perf stat task-clock, mean of $RUNS runs; unlike wall-clock
time it hardly depends on the machine's load):

| binary | \`version\` | \`exec ID -- /bin/true\` |
|---|---:|---:|
${cpu_rows:-| (perf not available) | | |
}
Memory of 20 idle sandboxes (per sandbox, mean):

| measure | per sandbox | target |
|---|---:|---|
| agent PSS | ${pss_each} KiB | |
| agent RSS | ${rss_each} KiB | |
| cgroup memory usage (agent + kernel objects charged to it) | ${cg_each} KiB | |
| total PSS + cgroup | $((pss_each + cg_each)) KiB | ≤ 5 MB: $(verdict "$((pss_each + cg_each))" 5120) |

What \`run\` does that the baseline does not: a network namespace with lo up, a cgroup
namespace, an overlay mount with a scratch upper, a fresh /proc with
10 masked and 4 read-only paths, read-only /sys, a /dev tmpfs with device nodes, devpts,
/dev/shm and /tmp tmpfs, three read-only /etc binds, pivot_root, capability and seccomp
setup, a static agent as PID 1, the HELLO/PING/EXEC/EXIT protocol exchange, and an orderly
teardown (state written and removed: the agent is killed and waited for; the tree is deleted
by a detached process). For an image, also: the reference resolved in the store, the image
config read from the index, a reference taken on (and given back to) the image's shared mount
through its daemon's control socket. The overlay is mounted \`volatile\`: its unmount, in the
dying agent's exit, does not sync the disk holding the store (which cost 2-3 ms on an idle
disk and 10-150 ms on a busy one); \`isorun stop\` syncs the scratch layer instead. The image
is served by FUSE with zero-message opens and, for an image without extended attributes
(this one), no getxattr round trips: a warm run sends 3 requests to the daemon instead of 44.
The mount targets the boot needs come from a shared read-only layer (\`ROOT/targets\`) stacked
above the image, so a fresh sandbox's scratch stays empty, and the image mount's holders
file is rewritten in place (a rename over it cost 0.3-0.5 ms on this disk). This disk's
ext4 has no journal: it then skips recently freed inodes when it allocates one, and every
run frees ~20, so a row costs more the more sandbox runs came before it; the image rows
come first, the "before:" rows last (which disadvantages them). The rows above show where
the baseline stands with a network namespace alone. (cgroups are made only for sandboxes with limits: the idle
sandboxes of the memory table have \`--memory 256M\` so that their usage can be read.)

The warm-pool row: \`--warm\` takes a sandbox booted ahead of time with the same options
(its agent already answering) when one is ready, and starts \`isorun pool-fill\` detached to
boot the next one, so a run costs the CLI start-up, the claim, the exec and the removal. In
this back-to-back loop the background boot of one run overlaps the next run (two CPUs), and
a run that comes before the pool is refilled boots its own sandbox: the median is what a
user running commands one after another sees.

The CLI rows include the start-up of the \`isorun\` binary ($(ldd "$ISORUN" | wc -l) shared
objects: $libs); that alone is the \`isorun version\` row. libcurl and libarchive (with their
~35 dependencies: gnutls, krb5, ldap, ICU, libxml2...) are loaded with dlopen() only by the
verbs that reach a registry or read a layer. The "slim CLI" rows are the same \`main.c\` and
sandbox verbs linked with only common/agent/runner (\`$(ldd "$SLIM" | wc -l)\` shared
objects), built by this script. The library rows measure the runner through its public API
in one process (\`rtt.c\` in the script).${before_note}
EOF
cat "$OUT"
