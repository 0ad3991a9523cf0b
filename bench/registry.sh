#!/bin/bash
# The benchmark's loopback registry: Debian's docker-registry (CNCF distribution 2.8) with its
# own config and storage under bench/work/, listening on 127.0.0.1:$ISORUN_BENCH_PORT (5117).
#
#   bench/registry.sh start|stop|status
#
# start is a no-op when it already runs; status exits 0 when it answers /v2/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PIDFILE=$BENCH_WORK/registry.pid
CONFIG=$BENCH_WORK/registry.yml
LOGFILE=$BENCH_WORK/registry.log

start() {
	require_cmds docker-registry curl
	if pid_alive "$PIDFILE"; then
		echo "registry already running at http://$BENCH_LO_ADDR (pid $(cat "$PIDFILE"))"
		return 0
	fi
	mkdir -p "$BENCH_WORK/registry"
	registry_config "$BENCH_LO_ADDR" "$CONFIG"
	setsid docker-registry serve "$CONFIG" >>"$LOGFILE" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	if ! wait_http "http://$BENCH_LO_ADDR/v2/"; then
		stop
		die "registry did not come up on $BENCH_LO_ADDR, see $LOGFILE"
	fi
	echo "registry running at http://$BENCH_LO_ADDR (pid $(cat "$PIDFILE"))"
}

stop() {
	if pid_alive "$PIDFILE"; then
		local pid
		pid=$(cat "$PIDFILE")
		kill "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	fi
	rm -f "$PIDFILE"
}

status() {
	if pid_alive "$PIDFILE" && curl -fsS -o /dev/null --max-time 2 "http://$BENCH_LO_ADDR/v2/"; then
		echo "running at http://$BENCH_LO_ADDR (pid $(cat "$PIDFILE")), storage $BENCH_WORK/registry"
		return 0
	fi
	echo "not running"
	return 1
}

case ${1:-} in
start | stop | status) "$1" ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
