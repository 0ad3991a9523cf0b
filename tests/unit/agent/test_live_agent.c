/*
 * The real isorun-agent binary, run as a plain child process (no sandbox, no root needed)
 * on a listening unix socket: malformed, oversized and truncated frames close only their
 * own connection while the agent keeps serving others; a frame split across writes and a
 * partial frame left pending do not block other clients; execs multiplex on one connection.
 */
#include "agent/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[] = "/tmp/isorun-agent-test.XXXXXX";
static char sock_path[100];
static pid_t agent_pid;

static int setup(void **state)
{
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/agent.sock", dir);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 16) < 0)
		return -1;
	agent_pid = fork();
	if (agent_pid == 0) {
		dup2(s, 3);
		execl(AGENT_PATH, "isorun-agent", "--listen-fd", "3", (char *)NULL);
		_exit(127);
	}
	close(s);
	signal(SIGPIPE, SIG_IGN);
	return agent_pid > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
	}
	unlink(sock_path);
	rmdir(dir);
	return 0;
}

static int conn(void)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	assert_true(s >= 0);
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

static void send_all(int s, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t k = write(s, b, n);
		assert_true(k > 0);
		b += k;
		n -= (size_t)k;
	}
}

static void send_wbuf(int s, struct agent_wbuf *b)
{
	send_all(s, b->data, b->len);
	b->len = 0;
}

struct reader {
	uint8_t buf[AGENT_FRAME_HDR + AGENT_FRAME_MAX_PAYLOAD];
	size_t len, off;
};

/* Next frame; returns 0 at EOF, 1 with *f. */
static int next(int s, struct reader *r, struct agent_frame *f)
{
	for (;;) {
		int n = agent_frame_parse(r->buf + r->off, r->len - r->off, f);
		assert_true(n >= 0);
		if (n > 0) {
			r->off += (size_t)n;
			return 1;
		}
		memmove(r->buf, r->buf + r->off, r->len - r->off);
		r->len -= r->off;
		r->off = 0;
		ssize_t k = read(s, r->buf + r->len, sizeof(r->buf) - r->len);
		assert_true(k >= 0); /* a timeout would be a hang: fail */
		if (k == 0)
			return 0;
		r->len += (size_t)k;
	}
}

/* HELLO min..max; returns the version the agent chose. */
static uint32_t hello_range(int s, struct reader *r, uint32_t min, uint32_t max)
{
	struct agent_wbuf b;
	struct agent_frame f;
	struct agent_rd rd;
	uint32_t ver = 0;
	size_t off;
	agent_wbuf_init(&b, 1 << 20);
	assert_int_equal(agent_frame_begin(&b, AGENT_MSG_HELLO, 0, &off), 0);
	agent_put_u32(&b, min);
	agent_put_u32(&b, max);
	agent_frame_end(&b, off);
	send_wbuf(s, &b);
	assert_int_equal(next(s, r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_HELLO_OK);
	agent_rd_init(&rd, f.payload, f.len);
	assert_int_equal(agent_get_u32(&rd, &ver), 0);
	agent_wbuf_fini(&b);
	return ver;
}

static void hello(int s, struct reader *r)
{
	assert_int_equal(hello_range(s, r, 1, 7), AGENT_PROTO_VERSION);
}

static void ping_ok(void)
{
	static struct reader r;
	struct agent_wbuf b;
	struct agent_frame f;
	int s = conn();
	r.len = r.off = 0;
	hello(s, &r);
	agent_wbuf_init(&b, 1 << 20);
	agent_frame_put(&b, AGENT_MSG_PING, 0, "xyz", 3);
	send_wbuf(s, &b);
	assert_int_equal(next(s, &r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_PONG);
	assert_memory_equal(f.payload, "xyz", 3);
	agent_wbuf_fini(&b);
	close(s);
	assert_int_equal(kill(agent_pid, 0), 0);
}

/* Send raw bytes on a fresh connection; expect ERROR with `err`, then EOF. */
static void expect_rejected(const void *bytes, size_t n, bool do_hello, int err)
{
	static struct reader r;
	struct agent_frame f;
	int s = conn();
	r.len = r.off = 0;
	if (do_hello)
		hello(s, &r);
	send_all(s, bytes, n);
	assert_int_equal(next(s, &r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_ERROR);
	struct agent_error e;
	assert_int_equal(agent_error_decode(f.type, f.payload, f.len, &e), 0);
	assert_int_equal(e.err, err);
	assert_int_equal(next(s, &r, &f), 0); /* closed */
	close(s);
	ping_ok(); /* and the agent serves others */
}

static void put_hdr(uint8_t *h, uint32_t len, uint16_t type, uint16_t flags, uint32_t stream)
{
	memset(h, 0, AGENT_FRAME_HDR);
	h[0] = (uint8_t)len;
	h[1] = (uint8_t)(len >> 8);
	h[2] = (uint8_t)(len >> 16);
	h[3] = (uint8_t)(len >> 24);
	h[4] = (uint8_t)type;
	h[5] = (uint8_t)(type >> 8);
	h[6] = (uint8_t)flags;
	h[8] = (uint8_t)stream;
}

static void test_bad_frames(void **state)
{
	uint8_t h[AGENT_FRAME_HDR + 16];
	ping_ok();
	/* oversized */
	put_hdr(h, AGENT_FRAME_MAX_PAYLOAD + 1, AGENT_MSG_STDIN, 0, 1);
	expect_rejected(h, AGENT_FRAME_HDR, true, EFBIG);
	/* garbage header */
	memcpy(h, "GET / HTTP/1.1\r\n", 16);
	expect_rejected(h, 16, false, EFBIG);
	put_hdr(h, 0, 0x7777, 0, 0);
	expect_rejected(h, AGENT_FRAME_HDR, true, EPROTO);
	put_hdr(h, 0, AGENT_MSG_PING, 4, 0);
	expect_rejected(h, AGENT_FRAME_HDR, true, EPROTO);
	/* anything before HELLO */
	put_hdr(h, 0, AGENT_MSG_PING, 0, 0);
	expect_rejected(h, AGENT_FRAME_HDR, false, EPROTO);
	/* a message only the agent sends */
	put_hdr(h, 0, AGENT_MSG_PONG, 0, 0);
	expect_rejected(h, AGENT_FRAME_HDR, true, EPROTO);
	/* malformed EXEC payload */
	put_hdr(h, 4, AGENT_MSG_EXEC, 0, 1);
	memset(h + AGENT_FRAME_HDR, 0xff, 4);
	expect_rejected(h, AGENT_FRAME_HDR + 4, true, EPROTO);
	/* a ping over its cap */
	static uint8_t bigping[AGENT_FRAME_HDR + AGENT_MAX_PING + 1];
	put_hdr(bigping, AGENT_MAX_PING + 1, AGENT_MSG_PING, 0, 0);
	expect_rejected(bigping, sizeof(bigping), true, EFBIG);
	/* FILE_DATA with no transfer */
	put_hdr(h, 1, AGENT_MSG_FILE_DATA, 0, 3);
	expect_rejected(h, AGENT_FRAME_HDR + 1, true, EPROTO);
}

/* A client of version 1 (a host older than the agent) gets version 1 and none of what 2
 * adds; no common version is refused. */
static void test_versions(void **state)
{
	static struct reader r;
	struct agent_frame f;
	struct agent_wbuf b;
	uint8_t h[AGENT_FRAME_HDR + 16];
	int s = conn();
	r.len = r.off = 0;
	assert_int_equal(hello_range(s, &r, 1, 1), 1);
	/* version 1 still does files */
	agent_wbuf_init(&b, 1 << 20);
	struct agent_file_hdr fh = {.path = "/"};
	assert_int_equal(agent_file_hdr_encode(&b, AGENT_MSG_FILE_GET, 1, &fh), 0);
	send_wbuf(s, &b);
	assert_int_equal(next(s, &r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_ERROR); /* a directory: EISDIR in version 1 */
	struct agent_error e;
	assert_int_equal(agent_error_decode(f.type, f.payload, f.len, &e), 0);
	assert_int_equal(e.err, EISDIR);
	/* FILE_STAT is version 2's: refused, connection closed */
	b.len = 0;
	assert_int_equal(agent_file_hdr_encode(&b, AGENT_MSG_FILE_STAT, 2, &fh), 0);
	send_wbuf(s, &b);
	assert_int_equal(next(s, &r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_ERROR);
	assert_int_equal(next(s, &r, &f), 0);
	close(s);
	/* version 2: a directory's FILE_GET answers its type */
	s = conn();
	r.len = r.off = 0;
	assert_int_equal(hello_range(s, &r, 2, 2), 2);
	b.len = 0;
	assert_int_equal(agent_file_hdr_encode(&b, AGENT_MSG_FILE_STAT, 1, &fh), 0);
	send_wbuf(s, &b);
	assert_int_equal(next(s, &r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_FILE_INFO);
	struct agent_file_hdr info;
	assert_int_equal(agent_file_hdr_decode(f.type, f.payload, f.len, &info), 0);
	assert_true(S_ISDIR(info.mode));
	close(s);
	agent_wbuf_fini(&b);
	/* no common version */
	struct agent_wbuf hb;
	size_t off;
	agent_wbuf_init(&hb, 64);
	agent_frame_begin(&hb, AGENT_MSG_HELLO, 0, &off);
	agent_put_u32(&hb, AGENT_PROTO_VERSION + 1);
	agent_put_u32(&hb, AGENT_PROTO_VERSION + 5);
	agent_frame_end(&hb, off);
	memcpy(h, hb.data, hb.len);
	expect_rejected(h, hb.len, false, EPROTONOSUPPORT);
	agent_wbuf_fini(&hb);
}

static void test_truncated_and_split(void **state)
{
	static struct reader r;
	struct agent_frame f;
	uint8_t h[AGENT_FRAME_HDR + 3];
	/* a truncated frame, then the client goes away: nothing to answer, agent unharmed */
	int s = conn();
	r.len = r.off = 0;
	hello(s, &r);
	put_hdr(h, 100, AGENT_MSG_PING, 0, 0);
	send_all(s, h, AGENT_FRAME_HDR + 3);
	/* while it is pending, another client is served */
	ping_ok();
	close(s);
	ping_ok();

	/* a frame delivered one byte at a time */
	s = conn();
	r.len = r.off = 0;
	hello(s, &r);
	put_hdr(h, 3, AGENT_MSG_PING, 0, 0);
	memcpy(h + AGENT_FRAME_HDR, "abc", 3);
	for (size_t i = 0; i < sizeof(h); i++)
		send_all(s, h + i, 1);
	assert_int_equal(next(s, &r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_PONG);
	close(s);
}

static void exec_req(struct agent_wbuf *b, uint32_t stream, const char *cmd)
{
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	struct agent_exec_req q = {
	    .user = "", .cwd = "/", .argc = 3, .envc = 1, .argv = argv, .envp = envp};
	assert_int_equal(agent_exec_req_encode(b, stream, &q), 0);
}

static void test_exec_multiplexed(void **state)
{
	static struct reader r;
	struct agent_wbuf b;
	struct agent_frame f;
	char out[2][64] = {"", ""};
	struct agent_exit ex[2];
	int done = 0;
	int s = conn();
	r.len = r.off = 0;
	hello(s, &r);
	agent_wbuf_init(&b, 1 << 20);
	/* two commands at once on one connection; stream 1's stdin is /dev/null (no STDIN flag) */
	exec_req(&b, 1, "read x; sleep 0.1; echo slow-$x; exit 3");
	exec_req(&b, 2, "echo fast; echo err >&2");
	send_wbuf(s, &b);
	while (done < 2) {
		assert_int_equal(next(s, &r, &f), 1);
		assert_true(f.stream == 1 || f.stream == 2);
		int i = (int)f.stream - 1;
		switch (f.type) {
		case AGENT_MSG_EXEC_STARTED:
			break;
		case AGENT_MSG_STDOUT:
			strncat(out[i], (const char *)f.payload, f.len);
			break;
		case AGENT_MSG_STDERR:
			assert_int_equal(f.stream, 2);
			assert_memory_equal(f.payload, "err\n", 4);
			break;
		case AGENT_MSG_EXIT:
			assert_int_equal(agent_exit_decode(f.payload, f.len, &ex[i]), 0);
			done++;
			break;
		default:
			fail_msg("unexpected frame %s", agent_msg_type_name(f.type));
		}
	}
	assert_string_equal(out[1], "fast\n");
	assert_string_equal(out[0], "slow-\n"); /* stdin was /dev/null: read got EOF */
	assert_int_equal(ex[0].code, 3);
	assert_int_equal(ex[1].code, 0);

	/* exec failures are reported per stream, the connection stays usable */
	const char *argv[] = {"/no/such/binary", NULL};
	struct agent_exec_req q = {.user = "", .cwd = "/", .argc = 1, .argv = argv};
	assert_int_equal(agent_exec_req_encode(&b, 5, &q), 0);
	send_wbuf(s, &b);
	assert_int_equal(next(s, &r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_EXEC_FAILED);
	struct agent_error e;
	assert_int_equal(agent_error_decode(f.type, f.payload, f.len, &e), 0);
	assert_int_equal(e.stage, AGENT_STAGE_EXEC);
	assert_int_equal(e.err, ENOENT);
	/* reusing a live stream id is a protocol error */
	exec_req(&b, 6, "sleep 5");
	exec_req(&b, 6, "true");
	send_wbuf(s, &b);
	bool closed = false;
	while (!closed) {
		int k = next(s, &r, &f);
		if (k == 0)
			closed = true;
		else
			assert_true(f.type == AGENT_MSG_EXEC_STARTED || f.type == AGENT_MSG_ERROR);
	}
	close(s);
	agent_wbuf_fini(&b);
	ping_ok();
}

static void test_shutdown(void **state)
{
	static struct reader r;
	struct agent_wbuf b;
	struct agent_frame f;
	int s = conn();
	r.len = r.off = 0;
	hello(s, &r);
	agent_wbuf_init(&b, 1 << 20);
	uint8_t grace[4] = {0xe8, 0x03, 0, 0}; /* 1000 ms */
	agent_frame_put(&b, AGENT_MSG_SHUTDOWN, 0, grace, 4);
	send_wbuf(s, &b);
	assert_int_equal(next(s, &r, &f), 1);
	assert_int_equal(f.type, AGENT_MSG_SHUTDOWN_OK);
	int st;
	assert_int_equal(waitpid(agent_pid, &st, 0), agent_pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	agent_pid = 0;
	close(s);
	agent_wbuf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_frames),
	    cmocka_unit_test(test_versions),
	    cmocka_unit_test(test_truncated_and_split),
	    cmocka_unit_test(test_exec_multiplexed),
	    cmocka_unit_test(test_shutdown),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
