#!/bin/bash
# Isolation: pid and network namespaces, no mount, seccomp EPERM, the exact capability set,
# masked and read-only /proc paths, memory and pids limits through cgroups.
. "$(dirname "$0")/lib.sh"

[ -x "$PROBE" ] || fail "sandbox-probe not built"
ROOTFS="$WORK/rootfs"
make_rootfs "$ROOTFS"

ID=$("$ISORUN" create --rootfs "$ROOTFS")

# pid namespace: the agent is PID 1 and the only other process is the command itself (ls)
expect_eq "agent is pid 1" "$("$ISORUN" exec "$ID" -- cat /proc/1/cmdline | tr '\0' ' ')" \
	"isorun-agent --listen-fd 3 "
expect_eq "only own pids" "$("$ISORUN" exec "$ID" -- ls /proc | grep -c '^[0-9]')" 2

# network: only lo, up
expect_eq "only lo" "$("$ISORUN" exec "$ID" -- ls /sys/class/net)" lo
expect_rc "lo is up" 0 "$ISORUN" exec "$ID" -- sh -c 'ip link show lo | grep -q "UP"'
HOSTID=$("$ISORUN" create --rootfs "$ROOTFS" --net host)
expect_eq "--net host sees the host's interfaces" \
	"$("$ISORUN" exec "$HOSTID" -- ls /sys/class/net | sort | tr '\n' ' ')" \
	"$(ls /sys/class/net | sort | tr '\n' ' ')"
"$ISORUN" rm -f "$HOSTID"

# uts and ipc namespaces
expect_eq "own hostname" "$("$ISORUN" exec "$ID" -- hostname)" "${ID:0:12}"
expect_rc "sethostname denied (no CAP_SYS_ADMIN)" 1 "$ISORUN" exec "$ID" -- hostname evil
expect_eq "host hostname untouched" "$(hostname)" "$(cat /proc/sys/kernel/hostname)"

# no mounting, even as root in the sandbox
expect_rc "mount fails" 1 "$ISORUN" exec "$ID" -- sh -c 'mkdir -p /sandbox/m && mount -t tmpfs none /sandbox/m'
expect_rc "umount fails" 1 "$ISORUN" exec "$ID" -- umount /proc

# seccomp: these calls work unprivileged on the host and must fail with EPERM inside
host=$(setpriv --reuid=1000 --regid=1000 --clear-groups "$PROBE" seccomp)
echo "host, uid 1000:" $host
for s in add_key keyctl unshare_user userfaultfd; do
	grep -q "^$s OK" <<<"$host" || skip "the host itself refuses $s to users: the check would prove nothing"
done
inside=$("$ISORUN" exec --user 1000 "$ID" -- /bin/probe seccomp)
echo "$inside"
for s in add_key keyctl unshare_user userfaultfd perf_event_open; do
	expect_eq "seccomp denies $s" "$(echo "$inside" | grep "^$s " | cut -d' ' -f2)" EPERM
done
expect_eq "clone3 reports ENOSYS (libc falls back to clone)" \
	"$(echo "$inside" | grep '^clone3 ' | cut -d' ' -f2)" ENOSYS
expect_eq "fork allowed" "$(echo "$inside" | grep '^fork ' | cut -d' ' -f2)" OK
expect_eq "seccomp mode 2 in the sandbox" \
	"$("$ISORUN" exec "$ID" -- sh -c 'grep ^Seccomp: /proc/self/status | cut -f2')" 2
expect_eq "no_new_privs" "$("$ISORUN" exec "$ID" -- sh -c 'grep ^NoNewPrivs: /proc/self/status | cut -f2')" 1

# capabilities: exactly docker's default set for root, nothing effective for a user
DOCKER_CAPS=00000000a80425fb
st=$("$ISORUN" exec "$ID" -- cat /proc/self/status)
expect_eq "root CapEff" "$(echo "$st" | grep ^CapEff: | cut -f2)" $DOCKER_CAPS
expect_eq "root CapBnd" "$(echo "$st" | grep ^CapBnd: | cut -f2)" $DOCKER_CAPS
expect_eq "root CapPrm" "$(echo "$st" | grep ^CapPrm: | cut -f2)" $DOCKER_CAPS
expect_eq "CapInh empty" "$(echo "$st" | grep ^CapInh: | cut -f2)" 0000000000000000
expect_eq "CapAmb empty" "$(echo "$st" | grep ^CapAmb: | cut -f2)" 0000000000000000
expect_eq "agent's own CapEff" \
	"$("$ISORUN" exec "$ID" -- grep ^CapEff: /proc/1/status | cut -f2)" $DOCKER_CAPS
st=$("$ISORUN" exec --user 1000 "$ID" -- cat /proc/self/status)
expect_eq "user CapEff" "$(echo "$st" | grep ^CapEff: | cut -f2)" 0000000000000000
expect_eq "user CapBnd" "$(echo "$st" | grep ^CapBnd: | cut -f2)" $DOCKER_CAPS

# /proc: masked and read-only paths
expect_eq "/proc/keys masked" "$("$ISORUN" exec "$ID" -- sh -c 'wc -c < /proc/keys')" 0
expect_rc "/proc/sys read-only" 1 "$ISORUN" exec "$ID" -- sh -c 'echo 1 > /proc/sys/kernel/sysrq'
expect_rc "/sys read-only" 1 "$ISORUN" exec "$ID" -- sh -c 'touch /sys/x'
expect_rc "/etc/hosts read-only" 1 "$ISORUN" exec "$ID" -- sh -c 'echo x >> /etc/hosts'
expect_rc "/dev/null works" 0 "$ISORUN" exec "$ID" -- sh -c 'echo x > /dev/null && head -c 4 /dev/urandom | wc -c | grep -q 4'
expect_rc "no host devices in /dev" 1 \
	"$ISORUN" exec "$ID" -- test -e /dev/vda

"$ISORUN" rm -f "$ID"

# memory limit (cgroup v1 memory here, v2 elsewhere): exceeding it kills the process
MID=$("$ISORUN" create --rootfs "$ROOTFS" --memory 32M)
expect_rc "small allocation fits" 0 "$ISORUN" exec "$MID" -- /bin/probe alloc 8
expect_rc "allocation over --memory is killed (SIGKILL)" 137 "$ISORUN" exec "$MID" -- /bin/probe alloc 128
"$ISORUN" rm -f "$MID"

# pids limit: forks beyond it fail with EAGAIN
PID_ID=$("$ISORUN" create --rootfs "$ROOTFS" --pids 16)
out=$("$ISORUN" exec "$PID_ID" -- /bin/probe fork 64)
echo "$out"
n=$(echo "$out" | cut -d' ' -f2)
[ "$n" -lt 16 ] || fail "--pids 16 allowed $n forks"
expect_eq "fork beyond --pids fails with EAGAIN" "$(echo "$out" | cut -d' ' -f3)" EAGAIN
"$ISORUN" rm -f "$PID_ID"

# cpu limit is applied to the cgroup
CID=$("$ISORUN" create --rootfs "$ROOTFS" --cpus 0.5)
if [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
	expect_eq "--cpus 0.5 quota" "$(cat /sys/fs/cgroup/cpu/isorun/$CID/cpu.cfs_quota_us)" 50000
fi
"$ISORUN" rm -f "$CID"
# a hostile image: mount targets that are symlinks out of the root
EVIL="$WORK/evil"
make_rootfs "$EVIL"
rm -rf "$EVIL/proc" "$EVIL/dev" "$EVIL/tmp"
ln -s / "$EVIL/proc"
ln -s ../../../../../../.. "$EVIL/dev"
ln -s "$WORK/host-tmp" "$EVIL/tmp"
ln -s "$WORK/host-hosts" "$EVIL/etc/hosts"
mkdir "$WORK/host-tmp"
EID=$("$ISORUN" create --rootfs "$EVIL")
expect_eq "symlinked /proc replaced by a real procfs" \
	"$("$ISORUN" exec "$EID" -- sh -c 'cat /proc/1/cmdline | tr "\0" " "')" "isorun-agent --listen-fd 3 "
"$ISORUN" exec "$EID" -- sh -c 'echo x > /tmp/f; echo y > /dev/shm/g' || true
[ -z "$(ls -A "$WORK/host-tmp")" ] || fail "a write through the image's /tmp symlink reached the host"
[ ! -e "$WORK/host-hosts" ] || fail "the /etc/hosts bind followed the image's symlink to the host"
ok "mount-target symlinks stay inside the sandbox"
[ -L "$EVIL/proc" ] || fail "the lower dir was modified"
"$ISORUN" rm -f "$EID"

# --userns: root inside is host uid 100000; image files keep their owners (idmapped lower)
UID_=$("$ISORUN" create --rootfs "$ROOTFS" --userns)
expect_eq "uid map" "$("$ISORUN" exec "$UID_" -- cat /proc/self/uid_map | tr -s ' ')" " 0 100000 65536"
expect_eq "root inside" "$("$ISORUN" exec "$UID_" -- id -u)" 0
apid=$("$ISORUN" ps --format json | tr -d ' \n' | grep -o "\"id\":\"$UID_\",\"status\":\"running\",\"pid\":[0-9]*" | sed 's/.*://')
expect_eq "the agent is uid 100000 on the host" "$(awk '/^Uid:/{print $2}' /proc/$apid/status)" 100000
expect_eq "image files owned by root inside" "$("$ISORUN" exec "$UID_" -- stat -c %u:%g /bin/busybox)" 0:0
expect_eq "app's home owned by app inside" "$("$ISORUN" exec "$UID_" -- stat -c %u /home/app)" 1000
expect_rc "copy-up of an image file" 0 "$ISORUN" exec "$UID_" -- sh -c 'echo extra:x:3000: >> /etc/group'
expect_eq "copied-up file owned by host 100000" \
	"$(stat -c %u "$ISORUN_ROOT/sandboxes/$UID_/scratch/upper/etc/group")" 100000
"$ISORUN" exec "$UID_" -- sh -c 'touch /sandbox/f && chown 1000 /sandbox/f'
expect_eq "new file owned by host 101000" \
	"$(stat -c %u "$ISORUN_ROOT/sandboxes/$UID_/scratch/upper/sandbox/f")" 101000
expect_eq "docker caps in the user namespace" \
	"$("$ISORUN" exec "$UID_" -- grep ^CapEff: /proc/self/status | cut -f2)" $DOCKER_CAPS
expect_rc "still no mount" 1 "$ISORUN" exec "$UID_" -- mount -t tmpfs none /sandbox
expect_eq "lower dir untouched" "$(grep -c extra:x:3000 "$ROOTFS/etc/group" || true)" 0
"$ISORUN" stop "$UID_"
"$ISORUN" start "$UID_"
expect_eq "userns scratch survives stop/start" "$("$ISORUN" exec "$UID_" -- grep -c 3000 /etc/group)" 1
"$ISORUN" rm -f "$UID_"
echo "all isolation checks passed"
