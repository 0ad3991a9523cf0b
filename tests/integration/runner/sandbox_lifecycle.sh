#!/bin/bash
# Lifecycle end to end: image config defaults, scratch persistence across stop/start,
# isolation of scratch between sandboxes, /tmp noexec and /sandbox exec, background daemons,
# exit statuses, timeout, signal forwarding, cp both ways, ps after the creator exited,
# stale detection after kill -9 of the agent, run's sandbox removed after kill -9 of run.
. "$(dirname "$0")/lib.sh"

ROOTFS="$WORK/rootfs"
make_rootfs "$ROOTFS"
cat >"$WORK/config.json" <<'JSON'
{"architecture":"amd64","os":"linux",
 "config":{"Env":["PATH=/usr/bin:/bin:/sbin","GREETING=from-image","OVERRIDE=image"],
           "WorkingDir":"/home/app","User":"app","Entrypoint":["/bin/false"]}}
JSON

# an agent that dies at start: create fails (no hang) and leaves nothing behind
expect_rc "create with a dying agent" 125 env ISORUN_AGENT="$BUSYBOX" timeout 60 "$ISORUN" create --rootfs "$ROOTFS"
grep -q "applet not found" "$WORK/err" || fail "the agent's last words are not reported"
expect_eq "no state left by a failed create" "$(ls "$ISORUN_ROOT/sandboxes" | wc -l)" 0
expect_rc "create on a missing lower dir" 125 "$ISORUN" create --rootfs "$WORK/nonexistent"

ID=$("$ISORUN" create --rootfs "$ROOTFS" --config "$WORK/config.json")
[ ${#ID} = 16 ] || fail "create printed '$ID'"
ok "create"
expect_eq "running after create" "$(sandbox_status "$ID")" running

# image config: Env (PATH first), WorkingDir, User; exec options override them
expect_eq "env from the image" "$("$ISORUN" exec "$ID" -- sh -c 'echo $GREETING')" from-image
expect_eq "PATH first" "$("$ISORUN" exec "$ID" -- env | head -n1)" "PATH=/usr/bin:/bin:/sbin"
expect_eq "env override" "$("$ISORUN" exec --env OVERRIDE=cli "$ID" -- sh -c 'echo $OVERRIDE')" cli
expect_eq "WorkingDir" "$("$ISORUN" exec "$ID" -- pwd)" /home/app
expect_eq "--workdir" "$("$ISORUN" exec --workdir /etc "$ID" -- pwd)" /etc
expect_eq "User" "$("$ISORUN" exec "$ID" -- id -u)" 1000
expect_eq "supplementary groups" "$("$ISORUN" exec "$ID" -- id -G)" "1000 2000"
expect_eq "HOME from passwd" "$("$ISORUN" exec "$ID" -- sh -c 'echo $HOME')" /home/app
expect_eq "--user root" "$("$ISORUN" exec --user root "$ID" -- id -u)" 0
expect_eq "numeric uid:gid" "$("$ISORUN" exec --user 4242:4343 "$ID" -- sh -c 'echo $(id -u):$(id -g)')" 4242:4343
expect_rc "unknown user" 126 "$ISORUN" exec --user nosuchuser "$ID" -- true
grep -qx "isorun: cannot run true: no such user 'nosuchuser' in the image's /etc/passwd" \
	"$WORK/err" || fail "unknown user: $(cat "$WORK/err")"
expect_eq "hostname file" "$("$ISORUN" exec "$ID" -- cat /etc/hostname)" "${ID:0:12}"

# stdout and stderr stay separate; stdin is forwarded with -i
out=$("$ISORUN" exec "$ID" -- sh -c 'echo out; echo err >&2' 2>"$WORK/stderr")
expect_eq "stdout" "$out" out
expect_eq "stderr" "$(cat "$WORK/stderr")" err
expect_eq "stdin with -i" "$(printf 'abc\ndef\n' | "$ISORUN" exec -i "$ID" -- wc -l)" 2
expect_eq "no stdin without -i" "$(echo x | "$ISORUN" exec "$ID" -- cat)" ""
big=$(head -c 3000000 /dev/urandom | "$ISORUN" exec -i "$ID" -- wc -c)
expect_eq "3 MB through stdin and back" "$big" 3000000
# a command that prints a lot before reading its (large) stdin must not deadlock the client
big=$(head -c 20000000 /dev/zero | timeout -s KILL 300 "$ISORUN" exec -i "$ID" -- \
	sh -c 'head -c 20000000 /dev/zero; cat > /dev/null' | wc -c)
expect_eq "20 MB out while 20 MB wait on stdin" "$big" 20000000

# exit statuses, docker's convention
expect_rc "exit 0" 0 "$ISORUN" exec "$ID" -- true
expect_rc "exit 1" 1 "$ISORUN" exec "$ID" -- false
expect_rc "exit 42" 42 "$ISORUN" exec "$ID" -- sh -c 'exit 42'
expect_rc "not found: 127" 127 "$ISORUN" exec "$ID" -- no-such-command
expect_rc "not found by path: 127" 127 "$ISORUN" exec "$ID" -- /no/such/file
expect_rc "killed by SIGKILL: 137" 137 "$ISORUN" exec "$ID" -- sh -c 'kill -9 $$'
expect_rc "killed by SIGTERM: 143" 143 "$ISORUN" exec "$ID" -- sh -c 'kill -TERM $$'
expect_rc "bad cwd: 126" 126 "$ISORUN" exec --workdir /nonexistent "$ID" -- true
grep -q "cannot run true: working directory /nonexistent: No such file" "$WORK/err" ||
	fail "bad cwd: $(cat "$WORK/err")"

# /tmp is noexec, /sandbox is writable and exec-able
"$ISORUN" exec --user root "$ID" -- sh -c 'printf "#!/bin/sh\necho ran\n" > /tmp/s.sh; chmod +x /tmp/s.sh'
expect_rc "/tmp refuses exec: 126" 126 "$ISORUN" exec "$ID" -- /tmp/s.sh
"$ISORUN" exec "$ID" -- sh -c 'printf "#!/bin/sh\necho ran\n" > /sandbox/s.sh; chmod +x /sandbox/s.sh'
expect_eq "/sandbox allows exec" "$("$ISORUN" exec "$ID" -- /sandbox/s.sh)" ran
expect_rc "not executable: 126" 126 "$ISORUN" exec "$ID" -- /etc/passwd

# timeout kills the process group (124, like timeout(1))
expect_rc "timeout" 124 "$ISORUN" exec --timeout 0.5 "$ID" -- sh -c 'sleep 60 & sleep 60'
expect_eq "timeout killed the group" "$("$ISORUN" exec "$ID" -- sh -c 'ps -o comm | grep -c "^sleep$" || true')" 0

# signals to `isorun exec` reach the command
"$ISORUN" exec "$ID" -- sh -c 'trap "echo got-usr1; exit 7" USR1; echo ready; while :; do sleep 0.05; done' \
	>"$WORK/sig.out" &
pid=$!
for _ in $(seq 200); do grep -q ready "$WORK/sig.out" 2>/dev/null && break; sleep 0.05; done
kill -USR1 $pid
rc=0
wait $pid || rc=$?
expect_eq "SIGUSR1 forwarded (trap ran)" "$(tail -n1 "$WORK/sig.out"):$rc" "got-usr1:7"
"$ISORUN" exec "$ID" -- sh -c 'echo ready; exec sleep 60' >"$WORK/sig2.out" &
pid=$!
for _ in $(seq 200); do grep -q ready "$WORK/sig2.out" 2>/dev/null && break; sleep 0.05; done
kill -INT $pid
rc=0
wait $pid || rc=$?
expect_eq "SIGINT forwarded: 130" "$rc" 130

# a background daemon outlives its exec and answers the next one; the exec that started it
# returns although the daemon inherited its stdout
"$ISORUN" exec "$ID" -- sh -c 'httpd -p 127.0.0.1:8080 -h /var/www; i=0; (while :; do i=$((i+1)); echo $i > /sandbox/tick; sleep 0.1; done) & echo started'
ok "exec returned while a background loop holds its stdout"
expect_eq "daemon answers the next exec" \
	"$("$ISORUN" exec "$ID" -- wget -qO- http://127.0.0.1:8080/index.html)" "hello from httpd"
expect_rc "background loop still writing" 0 "$ISORUN" exec "$ID" -- sh -c \
	'a=$(cat /sandbox/tick); sleep 0.5; [ "$(cat /sandbox/tick)" != "$a" ]'

# output is streamed live, not at the end: the first line arrives while the command runs
"$ISORUN" exec "$ID" -- sh -c 'echo first; exec sleep 60' >"$WORK/live.out" &
pid=$!
for _ in $(seq 400); do grep -q first "$WORK/live.out" 2>/dev/null && break; sleep 0.05; done
kill -0 $pid 2>/dev/null || fail "the command ended before its output was seen"
expect_eq "live output" "$(cat "$WORK/live.out")" first
kill -TERM $pid
wait $pid || true

# a reader that goes away ends the writer, as in a shell pipeline
expect_eq "exec | head" "$("$ISORUN" exec "$ID" -- yes | head -n1)" y
for _ in $(seq 100); do
	n=$("$ISORUN" exec "$ID" -- sh -c 'ps -o comm | grep -c "^yes$" || true')
	[ "$n" = 0 ] && break
	sleep 0.05
done
expect_eq "the writer got SIGPIPE" "$n" 0

# pty: a terminal on stdin/stdout
expect_eq "pty allocated" "$("$ISORUN" exec -t "$ID" -- sh -c 'tty >/dev/null && echo tty' | tr -d '\r')" tty

# cp both ways
head -c 200000 /dev/urandom >"$WORK/blob"
chmod 0751 "$WORK/blob"
"$ISORUN" cp "$WORK/blob" "$ID:/sandbox/blob"
expect_eq "cp in: content" "$("$ISORUN" exec --user root "$ID" -- md5sum /sandbox/blob | cut -d' ' -f1)" \
	"$(md5sum <"$WORK/blob" | cut -d' ' -f1)"
expect_eq "cp in: mode" "$("$ISORUN" exec "$ID" -- stat -c %a /sandbox/blob)" 751
"$ISORUN" cp "$ID:/sandbox/blob" "$WORK/blob.back"
cmp "$WORK/blob" "$WORK/blob.back" || fail "cp out differs"
ok "cp out"
expect_rc "cp of a missing file" 125 "$ISORUN" cp "$ID:/no/such" "$WORK/x"
# a put the agent refuses at once says why, not "Broken pipe" (the data was still coming)
expect_rc "cp into a missing directory" 125 "$ISORUN" cp "$WORK/blob" "$ID:/no/such/dir/blob"
grep -q "cannot copy $WORK/blob to $ID:/no/such/dir/blob: create: No such file or directory" \
	"$WORK/err" || fail "cp into a missing directory should say why: $(cat "$WORK/err")"
# a destination that is a directory keeps the source's name, with or without a slash
"$ISORUN" cp "$WORK/blob" "$ID:/tmp"
expect_eq "cp into a directory keeps the name" \
	"$("$ISORUN" exec --user root "$ID" -- md5sum /tmp/blob | cut -d' ' -f1)" "$(md5sum <"$WORK/blob" | cut -d' ' -f1)"
# a set-id file out of a sandbox loses its set-id bits (the sandbox is not trusted)
"$ISORUN" exec --user root "$ID" -- sh -c 'cp /bin/true /sandbox/suid && chmod 6755 /sandbox/suid'
"$ISORUN" cp "$ID:/sandbox/suid" "$WORK/suid"
expect_eq "cp out drops set-id bits" "$(stat -c %a "$WORK/suid")" 755

# directories both ways: nested, symlinks, modes, times, a read-only directory, a fifo
T="$WORK/tree"
mkdir -p "$T/a/b/c" "$T/ro" "$T/empty"
head -c 1500000 /dev/urandom >"$T/a/big"
for i in $(seq 1 200); do echo "$i" >"$T/a/b/f$i"; done
: >"$T/a/b/c/zero"
ln -s ../big "$T/a/b/rel"
ln -s /etc/passwd "$T/abs"
echo x >"$T/ro/file"
chmod 0555 "$T/ro"
chmod 0700 "$T/a/b/c"
touch -d 2021-02-03T04:05:06 "$T/a/big"
mkfifo "$T/fifo"
chown -R 1234:1234 "$T/a/b" # a host user's files: root's in the sandbox, like docker cp
listing() { # path, type, mode, size (not of dirs), symlink target, content digest
	(cd "$1" && find . -mindepth 1 ! -type p -printf '%p %y %m %s %l\n' | sed 's/ d \([0-7]*\) [0-9]* / d \1 /' | sort &&
		find . -type f -exec md5sum {} + | sort)
}
"$ISORUN" cp "$T" "$ID:/sandbox/" 2>"$WORK/err" || fail "cp of a directory in: $(cat "$WORK/err")"
grep -q "left out 1 device(s), fifo(s) or socket(s)" "$WORK/err" ||
	fail "cp in should say it left the fifo out: $(cat "$WORK/err")"
want=$(listing "$T")
# the sandbox's /sandbox is in its scratch layer: read the copy there with the host's tools
expect_eq "cp of a directory in: same tree" \
	"$(listing "$ISORUN_ROOT/sandboxes/$ID/scratch/upper/sandbox/tree")" "$want"
expect_eq "cp in keeps times" "$("$ISORUN" exec "$ID" -- stat -c %Y /sandbox/tree/a/big)" "$(stat -c %Y "$T/a/big")"
expect_eq "cp in: owned by root" "$("$ISORUN" exec "$ID" -- stat -c %u:%g /sandbox/tree/a/b/f1 /sandbox/tree/a/b)" "0:0
0:0"
"$ISORUN" cp "$ID:/sandbox/tree" "$WORK/treeout"
expect_eq "cp of a directory out: same tree" "$(listing "$WORK/treeout")" "$want"
expect_eq "cp out keeps times" "$(stat -c %Y "$WORK/treeout/a/big")" "$(stat -c %Y "$T/a/big")"
# SRC/. copies the contents into an existing directory; a plain SRC goes under its name
mkdir "$WORK/merge"
"$ISORUN" cp "$ID:/sandbox/tree/a/." "$WORK/merge"
[ -f "$WORK/merge/big" ] && [ -L "$WORK/merge/b/rel" ] || fail "SRC/. should copy the contents"
"$ISORUN" cp "$ID:/sandbox/tree/a" "$WORK/merge"
[ -f "$WORK/merge/a/b/f7" ] || fail "cp out into an existing directory should keep the name"
ok "cp SRC/. and SRC into a directory"
# a destination the user names through a symlink of theirs is followed (only that one)
ln -s "$WORK/merge" "$WORK/merge-link"
"$ISORUN" cp "$ID:/sandbox/tree/a/b/c/." "$WORK/merge-link"
[ -f "$WORK/merge/zero" ] || fail "cp out to a symlink to a directory should write into it"
ok "cp out through the destination's own symlink"
# a sandbox cannot make a copy out write through a symlink: its link lands as a link, and a
# later copy into the same place that has a directory there stops at the link
mkdir "$WORK/victim"
"$ISORUN" exec --user root "$ID" -- sh -c "mkdir /sandbox/ev && ln -s $WORK/victim /sandbox/ev/d"
"$ISORUN" cp "$ID:/sandbox/ev" "$WORK/evout"
[ -L "$WORK/evout/d" ] || fail "a symlink out of the sandbox should stay a symlink"
"$ISORUN" exec --user root "$ID" -- sh -c 'rm /sandbox/ev/d && mkdir /sandbox/ev/d && echo pwn > /sandbox/ev/d/x'
expect_rc "cp out onto a symlink to a directory" 125 "$ISORUN" cp "$ID:/sandbox/ev/." "$WORK/evout"
grep -q "evout/d: exists and is not a directory" "$WORK/err" ||
	fail "cp out onto a symlink should say why: $(cat "$WORK/err")"
[ ! -e "$WORK/victim/x" ] || fail "cp out wrote through a symlink"
ok "cp out never writes through a symlink"
expect_rc "cp of a directory onto a file" 125 "$ISORUN" cp "$T" "$ID:/sandbox/blob"
grep -q "Not a directory" "$WORK/err" || fail "cp of a directory onto a file: $(cat "$WORK/err")"
chmod -R u+w "$T" "$WORK/treeout" "$WORK/merge" 2>/dev/null || true

# writes land in the scratch layer, survive stop/start, are invisible to another sandbox
"$ISORUN" exec --user root "$ID" -- sh -c 'echo persisted > /root/note; rm /bin/vi'
[ -f "$ISORUN_ROOT/sandboxes/$ID/scratch/upper/root/note" ] || fail "write not in the scratch"
ok "write landed in the scratch layer"
[ -e "$ROOTFS/bin/vi" ] || fail "the lower dir was modified"
ok "lower dir untouched"
# stop: SIGTERM first (a trap gets to run and its write is synced), then the scratch stays
"$ISORUN" exec --user root "$ID" -- sh -c \
	'(trap "echo graceful > /root/term; exit 0" TERM; while :; do sleep 0.05; done) >/dev/null 2>&1 &'
"$ISORUN" stop "$ID"
expect_eq "stopped" "$(sandbox_status "$ID")" stopped
expect_eq "SIGTERM reached the processes at stop" \
	"$(cat "$ISORUN_ROOT/sandboxes/$ID/scratch/upper/root/term" 2>/dev/null)" graceful
expect_rc "exec on a stopped sandbox fails" 125 "$ISORUN" exec "$ID" -- true
grep -q "sandbox $ID is stopped (isorun start $ID" "$WORK/err" ||
	fail "exec on a stopped sandbox should say so: $(cat "$WORK/err")"
expect_rc "cp into a stopped sandbox fails" 125 "$ISORUN" cp /etc/hostname "$ID:/tmp/x"
grep -q "sandbox $ID is not running" "$WORK/err" ||
	fail "cp into a stopped sandbox should say so: $(cat "$WORK/err")"
"$ISORUN" start "$ID"
expect_eq "running again" "$(sandbox_status "$ID")" running
expect_eq "scratch survived stop/start" "$("$ISORUN" exec "$ID" -- cat /root/note)" persisted
expect_rc "deletion survived too" 1 "$ISORUN" exec "$ID" -- test -e /bin/vi
expect_rc "processes ended at stop" 1 "$ISORUN" exec "$ID" -- pidof httpd

# the agent raises its own open-file limit for its connections and pipes; its commands get
# the limit the sandbox was created with
ID2=$(ulimit -Sn 512 && "$ISORUN" create --rootfs "$ROOTFS")
expect_eq "commands keep the creator's open-file limit" "$("$ISORUN" exec "$ID2" -- sh -c 'ulimit -Sn')" 512
# many execs at once on one sandbox (an agent framework's parallel tool calls): more than
# the agent has connection slots for would once fail ("the agent went away"); now they wait
pids=
for i in $(seq 1 80); do
	("$ISORUN" exec "$ID2" -- sh -c "sleep 1; echo $i" >"$WORK/par.$i" 2>&1 || echo "rc $?" >>"$WORK/par.$i") &
	pids="$pids $!"
done
# shellcheck disable=SC2086
wait $pids
bad=0
for i in $(seq 1 80); do [ "$(cat "$WORK/par.$i")" = "$i" ] || bad=$((bad + 1)); done
expect_eq "80 execs at once on one sandbox" "$bad failed" "0 failed"
expect_rc "other sandbox does not see the write" 1 "$ISORUN" exec "$ID2" -- test -e /root/note
expect_rc "other sandbox still has /bin/vi" 0 "$ISORUN" exec "$ID2" -- test -e /bin/vi
expect_eq "no image config: root" "$("$ISORUN" exec "$ID2" -- id -u)" 0

# ps after the creating process is gone; stale after kill -9 of the agent
pid=$("$ISORUN" ps --format json | tr -d ' \n' | grep -o "\"id\":\"$ID2\",\"status\":\"running\",\"pid\":[0-9]*" | sed 's/.*://')
[ -n "$pid" ] && kill -0 "$pid" || fail "ps shows no agent pid for $ID2"
ok "ps lists the running sandbox with its agent pid"
kill -9 "$pid"
for _ in $(seq 100); do [ "$(sandbox_status "$ID2")" = stale ] && break; sleep 0.05; done
expect_eq "stale after kill -9 of the agent" "$(sandbox_status "$ID2")" stale
"$ISORUN" ps | grep -q "$ID2.*stale" || fail "table output lacks the stale sandbox"
ok "ps table"
expect_rc "exec in a stale sandbox fails" 125 "$ISORUN" exec "$ID2" -- true
grep -q "sandbox $ID2 does not answer: its agent is gone" "$WORK/err" ||
	fail "exec in a stale sandbox should say why: $(cat "$WORK/err")"
"$ISORUN" rm "$ID2"
[ ! -d "$ISORUN_ROOT/sandboxes/$ID2" ] || fail "rm left the state dir"
ok "rm of a stale sandbox"

expect_rc "rm of a running sandbox without -f" 125 "$ISORUN" rm "$ID"
[ "$(cat "$WORK/err")" = "isorun: error: sandbox $ID is running (use -f)" ] ||
	fail "rm of a running sandbox: $(cat "$WORK/err")"
"$ISORUN" rm -f "$ID"
[ ! -d "$ISORUN_ROOT/sandboxes/$ID" ] || fail "rm -f left the state dir"
[ ! -d "/sys/fs/cgroup/memory/isorun/$ID" ] || fail "rm left the memory cgroup"
ok "rm -f"

# a hostile image: /etc/passwd and /etc/group as FIFOs must not hang the agent
HID=$("$ISORUN" create --rootfs "$ROOTFS")
"$ISORUN" exec "$HID" -- sh -c 'rm /etc/passwd /etc/group && mkfifo /etc/passwd /etc/group'
expect_rc "exec with FIFO user databases" 0 timeout 60 "$ISORUN" exec "$HID" -- true
expect_rc "numeric user with FIFO user databases" 0 timeout 60 "$ISORUN" exec --user 7:7 "$HID" -- true
expect_rc "named user with FIFO user databases: 126" 126 timeout 60 "$ISORUN" exec --user app "$HID" -- true
"$ISORUN" rm -f "$HID"

# run: create, exec, remove; the status is the command's
expect_rc "run exit status" 3 "$ISORUN" run --rootfs "$ROOTFS" -- sh -c 'exit 3'
expect_eq "run output" "$("$ISORUN" run --rootfs "$ROOTFS" --config "$WORK/config.json" -- sh -c 'echo $GREETING')" from-image
expect_eq "run removed its sandbox" "$(ls "$ISORUN_ROOT/sandboxes" | wc -l)" 0
# a sandbox whose creator died during its boot (its agent already started, the state still
# "created", naming the creator) is reported stale, not "created" for ever, and rm stops the
# agent the boot had marked on the sandbox's directory
SID=$("$ISORUN" create --rootfs "$ROOTFS")
apid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" \
	"$ISORUN_ROOT/sandboxes/$SID/state.json")
sh -c 'exit 0' &
dead=$!
wait "$dead"
printf '{"status":"created","pid":%d,"pid_start":1}' "$dead" >"$ISORUN_ROOT/sandboxes/$SID/state.json"
expect_eq "creator gone during the boot: stale" "$(sandbox_status "$SID")" stale
kill -0 "$apid" || fail "the agent should still run before rm"
"$ISORUN" rm -f "$SID"
for _ in $(seq 50); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$apid" 2>/dev/null && fail "rm left the agent of a half-created sandbox running"
ok "half-created sandbox: stale, and rm stops its agent"

# a closed stdout (| head) ends the command with SIGPIPE and still removes the sandbox
"$ISORUN" run --rootfs "$ROOTFS" -- sh -c 'while :; do echo y; done' | head -n1 >/dev/null
rc=${PIPESTATUS[0]}
expect_eq "run into a closed pipe: 128+SIGPIPE" "$rc" 141
expect_eq "run into a closed pipe removed its sandbox" "$(ls "$ISORUN_ROOT/sandboxes" | wc -l)" 0

# run killed with SIGKILL (a CI job's timeout, the OOM killer), its whole process group with
# it: its sandbox, and the command in it, go all the same; with --keep it stays.
setsid "$ISORUN" run --rootfs "$ROOTFS" -- sh -c 'echo $$ >/sandbox/pid; exec sleep 300' &
rpid=$!
for _ in $(seq 100); do [ "$(ls "$ISORUN_ROOT/sandboxes" | wc -l)" = 1 ] && break; sleep 0.1; done
KID=$(ls "$ISORUN_ROOT/sandboxes")
for _ in $(seq 100); do [ -s "$ISORUN_ROOT/sandboxes/$KID/scratch/upper/sandbox/pid" ] && break; sleep 0.1; done
apid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" \
	"$ISORUN_ROOT/sandboxes/$KID/state.json")
kill -KILL -- -"$rpid"
for _ in $(seq 100); do [ -d "$ISORUN_ROOT/sandboxes/$KID" ] || break; sleep 0.1; done
[ -d "$ISORUN_ROOT/sandboxes/$KID" ] && fail "run killed: its sandbox $KID is still there"
running() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
for _ in $(seq 50); do running "$apid" || break; sleep 0.1; done
running "$apid" && fail "run killed: its sandbox's agent still runs"
setsid "$ISORUN" run --keep --rootfs "$ROOTFS" -- sleep 300 2>/dev/null &
rpid=$!
for _ in $(seq 100); do [ "$(sandbox_status "$(ls "$ISORUN_ROOT/sandboxes")")" = running ] && break; sleep 0.1; done
KID=$(ls "$ISORUN_ROOT/sandboxes")
kill -KILL -- -"$rpid"
sleep 1
expect_eq "run --keep killed: its sandbox stays" "$(sandbox_status "$KID")" running
"$ISORUN" rm -f "$KID" >/dev/null
ok "run killed with SIGKILL removes its sandbox (not with --keep)"

# boot writes nothing into the scratch layer: the mount targets come from the shared
# targets layer (ROOT/targets), and the volatile overlay's mark is cleared at every boot
TID=$("$ISORUN" create --rootfs "$ROOTFS")
expect_eq "nothing copied up by the boot" "$(ls -A "$ISORUN_ROOT/sandboxes/$TID/scratch/upper" | wc -l)" 0
expect_eq "/sandbox sticky and world-writable" "$("$ISORUN" exec "$TID" -- stat -c %a /sandbox)" 1777
"$ISORUN" stop "$TID"
[ -d "$ISORUN_ROOT/sandboxes/$TID/scratch/work/work/incompat" ] || fail "no volatile mark after a boot"
"$ISORUN" start "$TID"
expect_rc "restarted on a volatile scratch" 0 "$ISORUN" exec "$TID" -- true
"$ISORUN" rm -f "$TID"
ok "targets layer and volatile scratch"

# an image whose /etc is a symlink boots without the targets layer (whose etc/ would hide
# it): its mount targets are made in the scratch layer as before (a symlinked /etc is
# replaced there, never followed out of the root), the image's files stay where they are
LROOT="$WORK/rootfs-etc-link"
cp -a "$ROOTFS" "$LROOT"
mkdir -p "$LROOT/usr"
mv "$LROOT/etc" "$LROOT/usr/etc"
ln -s usr/etc "$LROOT/etc"
expect_eq "boot of an image with a symlinked /etc" \
	"$("$ISORUN" run --rootfs "$LROOT" -- sh -c 'grep -c ^app: /usr/etc/passwd; cat /etc/hostname | wc -c')" \
	"$(printf '1\n13')"
echo "all lifecycle checks passed"
