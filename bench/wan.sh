#!/bin/bash
# A "WAN" registry: the loopback registry's storage served by a second docker-registry inside
# a network namespace of the harness's own (isorun-bench), reached over a veth pair with
# a one-way delay and a rate limit on both ends.
#
#   bench/wan.sh up [--delay MS] [--rate RATE]   (defaults: 10 ms each way = 20 ms RTT, 1gbit)
#   bench/wan.sh down | status
#
# Addresses: host end ibench0 10.213.0.1/30, namespace end ibench1 10.213.0.2/30; the registry
# listens on http://10.213.0.2:5000 (plain http: skopeo needs --src-tls-verify=false, isorun
# gets the address in ISORUN_INSECURE_REGISTRIES). See PROXY_SRC for how delay is made
# without netem. Nothing else on the host is touched; `up`
# refuses to run if those names or that subnet are already in use by something else.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PIDFILE=$BENCH_WORK/wan-registry.pid
PROXY_PIDFILE=$BENCH_WORK/wan-proxy.pid
CONFIG=$BENCH_WORK/wan-registry.yml
LOGFILE=$BENCH_WORK/wan-registry.log
STATEFILE=$BENCH_WORK/wan.state
DELAY=10
RATE=1gbit
# The registry itself listens on the namespace's loopback; only the delay proxy faces the veth.
INNER_ADDR=127.0.0.1:5001

# The one-way delay. This kernel has no sch_netem (CONFIG_NET_SCH_NETEM unset, no modules), so
# latency comes from this proxy and the rate from tbf on both veth ends. Each direction of a
# connection releases every chunk read DELAY after it arrived, in order; the client's first
# bytes are held until 3*DELAY after accept, as if a TCP handshake (one RTT) had come first.
# At most WINDOW bytes are in flight per direction (a TCP receive window of 4 MiB, more than
# the 2.5 MB bandwidth-delay product of 1 Gbit/s x 20 ms). Unlike netem it does not model
# slow start or loss: a lower bound on what a real 20 ms path costs.
# shellcheck disable=SC2016
PROXY_SRC='
import asyncio, sys
listen_host, listen_port, up_host, up_port, delay_ms = sys.argv[1:6]
D = float(delay_ms) / 1000.0
WINDOW = 4 << 20

async def pipe(reader, writer, hold_until):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    room = asyncio.Condition()
    inflight = 0

    async def rd():
        nonlocal inflight
        while True:
            data = await reader.read(256 * 1024)
            await q.put((max(loop.time() + D, hold_until), data))
            if not data:
                return
            async with room:
                inflight += len(data)
                await room.wait_for(lambda: inflight < WINDOW)

    async def wr():
        nonlocal inflight
        while True:
            t, data = await q.get()
            dt = t - loop.time()
            if dt > 0:
                await asyncio.sleep(dt)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            async with room:
                inflight -= len(data)
                room.notify_all()

    await asyncio.gather(rd(), wr())

async def handle(cr, cw):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        ur, uw = await asyncio.open_connection(up_host, int(up_port))
    except OSError:
        cw.close()
        return
    try:
        await asyncio.gather(pipe(cr, uw, t0 + 3 * D), pipe(ur, cw, 0.0))
    except (ConnectionError, OSError):
        pass
    finally:
        cw.close()
        uw.close()

async def main():
    srv = await asyncio.start_server(handle, listen_host, int(listen_port), backlog=256)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
'

up() {
	require_root
	require_cmds ip tc docker-registry curl python3
	if [ -f "$STATEFILE" ]; then
		down
	fi
	if ip -o addr show | grep -q ' 10\.213\.0\.'; then
		die "10.213.0.0/30 already in use on this host; not touching it"
	fi
	ip link show "$BENCH_VETH_HOST" >/dev/null 2>&1 && die "link $BENCH_VETH_HOST exists already"
	ip netns list | grep -qw "$BENCH_NETNS" && die "netns $BENCH_NETNS exists already"

	mkdir -p "$BENCH_WORK/registry"
	echo "delay=${DELAY}ms each way, rate=$RATE" >"$STATEFILE"
	trap 'down; exit 1' ERR
	ip netns add "$BENCH_NETNS"
	ip link add "$BENCH_VETH_HOST" type veth peer name "$BENCH_VETH_NS" netns "$BENCH_NETNS"
	ip addr add "$BENCH_WAN_HOST_IP/30" dev "$BENCH_VETH_HOST"
	ip link set "$BENCH_VETH_HOST" up
	ip -n "$BENCH_NETNS" link set lo up
	ip -n "$BENCH_NETNS" addr add "$BENCH_WAN_NS_IP/30" dev "$BENCH_VETH_NS"
	ip -n "$BENCH_NETNS" link set "$BENCH_VETH_NS" up
	# burst: at least one GSO super-packet (64 KiB) or tbf drops it outright.
	tc qdisc add dev "$BENCH_VETH_HOST" root tbf rate "$RATE" burst 256kb latency 50ms
	ip netns exec "$BENCH_NETNS" tc qdisc add dev "$BENCH_VETH_NS" root tbf rate "$RATE" burst 256kb latency 50ms

	registry_config "$INNER_ADDR" "$CONFIG"
	ip netns exec "$BENCH_NETNS" setsid docker-registry serve "$CONFIG" >>"$LOGFILE" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	ip netns exec "$BENCH_NETNS" setsid python3 -c "$PROXY_SRC" "$BENCH_WAN_NS_IP" "$BENCH_WAN_PORT" \
		"${INNER_ADDR%:*}" "${INNER_ADDR#*:}" "$DELAY" >>"$LOGFILE" 2>&1 </dev/null &
	echo $! >"$PROXY_PIDFILE"
	wait_http "http://$BENCH_WAN_ADDR/v2/" || die "WAN registry did not come up, see $LOGFILE"
	trap - ERR
	echo "WAN registry at http://$BENCH_WAN_ADDR (RTT $((2 * DELAY)) ms, $RATE), storage $BENCH_WORK/registry"
	echo "export ISORUN_INSECURE_REGISTRIES=http://$BENCH_WAN_ADDR"
}

stop_pid() {
	if pid_alive "$1"; then
		local pid
		pid=$(cat "$1")
		kill "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	fi
	rm -f "$1"
}

down() {
	stop_pid "$PROXY_PIDFILE"
	stop_pid "$PIDFILE"
	# Only what `up` made: the namespace (which takes its veth end and so the pair with it).
	if [ -f "$STATEFILE" ]; then
		if ip netns list | grep -qw "$BENCH_NETNS"; then ip netns del "$BENCH_NETNS"; fi
		if ip link show "$BENCH_VETH_HOST" >/dev/null 2>&1; then ip link del "$BENCH_VETH_HOST"; fi
		rm -f "$STATEFILE"
	fi
	return 0
}

status() {
	if [ -f "$STATEFILE" ] && pid_alive "$PIDFILE" && pid_alive "$PROXY_PIDFILE" &&
		curl -fsS -o /dev/null --max-time 2 "http://$BENCH_WAN_ADDR/v2/"; then
		echo "up: http://$BENCH_WAN_ADDR ($(cat "$STATEFILE"))"
		return 0
	fi
	echo "down"
	return 1
}

cmd=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
	case $1 in
	--delay) DELAY=${2%ms}; shift ;;
	--rate) RATE=$2; shift ;;
	*) die "unknown argument $1" ;;
	esac
	shift
done
case $cmd in
up | down | status) "$cmd" ;;
*)
	echo "usage: $0 up [--delay MS] [--rate RATE] | down | status" >&2
	exit 2
	;;
esac
