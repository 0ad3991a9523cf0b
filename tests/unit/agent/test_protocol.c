/*
 * The agent protocol's encoder and decoder: round trips of every message shape, and
 * truncated, oversized and garbage input (which must be rejected, never crash or
 * over-read: this test also runs under ASan/UBSan).
 */
#include "agent/protocol.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void hdr(uint8_t *h, uint32_t len, uint16_t type, uint16_t flags, uint32_t stream)
{
	put32(h, len);
	h[4] = (uint8_t)type;
	h[5] = (uint8_t)(type >> 8);
	h[6] = (uint8_t)flags;
	h[7] = (uint8_t)(flags >> 8);
	put32(h + 8, stream);
}

static void test_frame_roundtrip(void **state)
{
	struct agent_wbuf b;
	struct agent_frame f;
	agent_wbuf_init(&b, 1 << 20);
	assert_int_equal(agent_frame_put(&b, AGENT_MSG_PING, 7, "abc", 3), 0);
	assert_int_equal(b.len, AGENT_FRAME_HDR + 3);
	/* every strict prefix asks for more bytes */
	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(agent_frame_parse(b.data, n, &f), 0);
	assert_int_equal(agent_frame_parse(b.data, b.len, &f), (int)b.len);
	assert_int_equal(f.type, AGENT_MSG_PING);
	assert_int_equal(f.stream, 7);
	assert_int_equal(f.len, 3);
	assert_memory_equal(f.payload, "abc", 3);
	agent_wbuf_fini(&b);
}

static void le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void test_frame_rejects(void **state)
{
	uint8_t h[AGENT_FRAME_HDR];
	struct agent_frame f;
	/* oversized: decided from the header alone, before the payload arrives */
	hdr(h, AGENT_FRAME_MAX_PAYLOAD + 1, AGENT_MSG_PING, 0, 0);
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -EFBIG);
	hdr(h, UINT32_MAX, AGENT_MSG_STDIN, 0, 1);
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -EFBIG);
	/* the cap itself is allowed (needs more bytes) */
	hdr(h, AGENT_FRAME_MAX_PAYLOAD, AGENT_MSG_STDIN, 0, 1);
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), 0);
	/* reserved flags */
	hdr(h, 0, AGENT_MSG_PING, 1, 0);
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -EPROTO);
	/* unknown types */
	uint16_t bad[] = {0, 8, 15, 25, 31, 38, 0xffff};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hdr(h, 0, bad[i], 0, 0);
		assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -EPROTO);
	}
	/* garbage: a deterministic pseudo-random stream never crashes the parser, and what it
	 * accepts is consistent with the header */
	uint8_t g[4096];
	uint32_t x = 12345;
	for (int round = 0; round < 2000; round++) {
		for (size_t i = 0; i < sizeof(g); i++) {
			x = x * 1103515245u + 12345u;
			g[i] = (uint8_t)(x >> 16);
		}
		if (round & 1) /* small lengths so some frames complete */
			put32(g, x % 64);
		int r = agent_frame_parse(g, sizeof(g), &f);
		if (r > 0) {
			assert_true(agent_msg_type_known(f.type));
			assert_int_equal((size_t)r, AGENT_FRAME_HDR + f.len);
		} else {
			assert_true(r == 0 || r == -EPROTO || r == -EFBIG);
		}
	}
}

static void test_exec_roundtrip(void **state)
{
	const char *argv[] = {"/bin/sh", "-c", "echo hi", NULL};
	const char *envp[] = {"PATH=/bin", "A=b", NULL};
	struct agent_exec_req q = {.flags = AGENT_EXEC_PTY | AGENT_EXEC_STDIN,
				   .timeout_ms = 1500,
				   .rows = 24,
				   .cols = 80,
				   .user = "app:extra",
				   .cwd = "/home/app",
				   .argc = 3,
				   .envc = 2,
				   .argv = argv,
				   .envp = envp};
	struct agent_wbuf b;
	struct agent_frame f;
	struct agent_exec_req d;
	agent_wbuf_init(&b, 1 << 20);
	assert_int_equal(agent_exec_req_encode(&b, 9, &q), 0);
	assert_int_equal(agent_frame_parse(b.data, b.len, &f), (int)b.len);
	assert_int_equal(f.type, AGENT_MSG_EXEC);
	assert_int_equal(agent_exec_req_decode(f.payload, f.len, &d), 0);
	assert_int_equal(d.flags, q.flags);
	assert_int_equal(d.timeout_ms, 1500);
	assert_int_equal(d.rows, 24);
	assert_int_equal(d.cols, 80);
	assert_string_equal(d.user, "app:extra");
	assert_string_equal(d.cwd, "/home/app");
	assert_int_equal(d.argc, 3);
	assert_string_equal(d.argv[2], "echo hi");
	assert_null(d.argv[3]);
	assert_int_equal(d.envc, 2);
	assert_string_equal(d.envp[1], "A=b");
	assert_null(d.envp[2]);
	agent_exec_req_fini(&d);

	/* every truncation of the payload is rejected */
	for (uint32_t n = 0; n < f.len; n++)
		assert_int_equal(agent_exec_req_decode(f.payload, n, &d) < 0, 1);
	/* trailing garbage is rejected */
	uint8_t *p = malloc(f.len + 1);
	memcpy(p, f.payload, f.len);
	p[f.len] = 0;
	assert_int_equal(agent_exec_req_decode(p, f.len + 1, &d), -EPROTO);
	/* a string whose NUL is missing, or with an inner NUL */
	memcpy(p, f.payload, f.len);
	size_t user_off = 4 + 4 + 2 + 2 + 4; /* flags, timeout, rows, cols, user length */
	p[user_off + 3] = 0;		     /* "app\0extra" */
	assert_int_equal(agent_exec_req_decode(p, f.len, &d), -EPROTO);
	memcpy(p, f.payload, f.len);
	p[user_off + strlen("app:extra")] = 'X'; /* no terminating NUL */
	assert_int_equal(agent_exec_req_decode(p, f.len, &d), -EPROTO);
	/* an argc the payload cannot hold is rejected before allocating */
	memcpy(p, f.payload, f.len);
	size_t argc_off = user_off + strlen("app:extra") + 1 + 4 + strlen("/home/app") + 1;
	put32(p + argc_off, 4000);
	assert_int_equal(agent_exec_req_decode(p, f.len, &d), -EPROTO);
	put32(p + argc_off, AGENT_MAX_ARGS + 1);
	assert_int_equal(agent_exec_req_decode(p, f.len, &d), -EFBIG);
	put32(p + argc_off, 0);
	assert_int_equal(agent_exec_req_decode(p, f.len, &d), -EPROTO);
	/* unknown flag bits */
	memcpy(p, f.payload, f.len);
	put32(p, 0x80);
	assert_int_equal(agent_exec_req_decode(p, f.len, &d), -EPROTO);
	free(p);
	agent_wbuf_fini(&b);
}

static void test_small_messages(void **state)
{
	struct agent_wbuf b;
	struct agent_frame f;
	agent_wbuf_init(&b, 1 << 20);

	struct agent_exit x = {.kind = 1, .code = 9, .flags = AGENT_EXIT_TIMED_OUT}, y;
	assert_int_equal(agent_exit_encode(&b, 3, &x), 0);
	assert_true(agent_frame_parse(b.data, b.len, &f) > 0);
	assert_int_equal(agent_exit_decode(f.payload, f.len, &y), 0);
	assert_int_equal(y.kind, 1);
	assert_int_equal(y.code, 9);
	assert_int_equal(y.flags, AGENT_EXIT_TIMED_OUT);
	assert_int_equal(agent_exit_decode(f.payload, f.len - 1, &y), -EPROTO);
	uint8_t bad[12] = {2}; /* kind 2 */
	assert_int_equal(agent_exit_decode(bad, 12, &y), -EPROTO);
	b.len = 0;

	struct agent_error e = {.stage = AGENT_STAGE_EXEC, .err = ENOENT, .msg = "exec"}, e2;
	assert_int_equal(agent_error_encode(&b, AGENT_MSG_EXEC_FAILED, 3, &e), 0);
	assert_true(agent_frame_parse(b.data, b.len, &f) > 0);
	assert_int_equal(agent_error_decode(f.type, f.payload, f.len, &e2), 0);
	assert_int_equal(e2.stage, AGENT_STAGE_EXEC);
	assert_int_equal(e2.err, ENOENT);
	assert_string_equal(e2.msg, "exec");
	/* an ERROR has no stage: the same bytes do not parse as one */
	assert_int_equal(agent_error_decode(AGENT_MSG_ERROR, f.payload, f.len, &e2), -EPROTO);
	b.len = 0;

	struct agent_file_hdr h = {.mode = 0755, .uid = 1, .gid = 2, .path = "/a/b"}, h2;
	assert_int_equal(agent_file_hdr_encode(&b, AGENT_MSG_FILE_PUT, 5, &h), 0);
	assert_true(agent_frame_parse(b.data, b.len, &f) > 0);
	assert_int_equal(agent_file_hdr_decode(f.type, f.payload, f.len, &h2), 0);
	assert_int_equal(h2.mode, 0755);
	assert_string_equal(h2.path, "/a/b");
	b.len = 0;
	h.path = "relative";
	assert_int_equal(agent_file_hdr_encode(&b, AGENT_MSG_FILE_GET, 5, &h), 0);
	assert_true(agent_frame_parse(b.data, b.len, &f) > 0);
	assert_int_equal(agent_file_hdr_decode(f.type, f.payload, f.len, &h2), -EPROTO);
	b.len = 0;
	struct agent_file_hdr info = {.mode = 0644, .size = 1ull << 40};
	assert_int_equal(agent_file_hdr_encode(&b, AGENT_MSG_FILE_INFO, 5, &info), 0);
	assert_true(agent_frame_parse(b.data, b.len, &f) > 0);
	assert_int_equal(agent_file_hdr_decode(f.type, f.payload, f.len, &h2), 0);
	assert_int_equal(h2.size, 1ull << 40);
	/* version 2: type bits of a directory in FILE_PUT and of anything in FILE_INFO; none
	 * other in FILE_PUT, and no bit outside S_IFMT|07777 anywhere */
	struct {
		uint16_t type;
		uint32_t mode;
		int want;
	} modes[] = {
	    {AGENT_MSG_FILE_PUT, S_IFDIR | 0755, 0},
	    {AGENT_MSG_FILE_PUT, S_IFREG | 0644, -EPROTO},
	    {AGENT_MSG_FILE_PUT, S_IFLNK | 0777, -EPROTO},
	    {AGENT_MSG_FILE_INFO, S_IFLNK | 0777, 0},
	    {AGENT_MSG_FILE_INFO, S_IFDIR | 01777, 0},
	    {AGENT_MSG_FILE_PUT, 0x10000000u | 0644, -EPROTO},
	};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		uint8_t raw[64];
		size_t n = 0;
		le32(raw, modes[i].mode);
		memset(raw + 4, 0, 8); /* uid, gid */
		n = 12;
		if (modes[i].type == AGENT_MSG_FILE_INFO) {
			memset(raw + n, 0, 8);
			n += 8;
		} else {
			le32(raw + n, 3);
			memcpy(raw + n + 4, "/a", 3);
			n += 7;
		}
		assert_int_equal(agent_file_hdr_decode(modes[i].type, raw, n, &h2), modes[i].want);
		if (modes[i].want == 0)
			assert_int_equal(h2.mode, modes[i].mode);
	}
	/* FILE_STAT carries a path only */
	h.path = "/x";
	b.len = 0;
	assert_int_equal(agent_file_hdr_encode(&b, AGENT_MSG_FILE_STAT, 5, &h), 0);
	assert_true(agent_frame_parse(b.data, b.len, &f) > 0);
	assert_int_equal(f.len, 4 + 3);
	assert_int_equal(agent_file_hdr_decode(f.type, f.payload, f.len, &h2), 0);
	assert_string_equal(h2.path, "/x");

	uint16_t rows, cols;
	uint8_t rz[4] = {24, 0, 80, 0};
	assert_int_equal(agent_resize_decode(rz, 4, &rows, &cols), 0);
	assert_int_equal(rows, 24);
	assert_int_equal(cols, 80);
	assert_int_equal(agent_resize_decode(rz, 3, &rows, &cols), -EPROTO);
	agent_wbuf_fini(&b);
}

static void test_caps(void **state)
{
	struct agent_wbuf b;
	agent_wbuf_init(&b, 64);
	/* a buffer never grows past its cap */
	assert_int_equal(agent_frame_put(&b, AGENT_MSG_STDOUT, 1, "0123456789", 10), 0);
	char big[100] = {0};
	assert_int_equal(agent_frame_put(&b, AGENT_MSG_STDOUT, 1, big, sizeof(big)), -EFBIG);
	assert_int_equal(b.len, AGENT_FRAME_HDR + 10); /* the failed frame left nothing behind */
	agent_wbuf_fini(&b);

	/* a payload over the frame cap is refused by the encoder */
	agent_wbuf_init(&b, 4u << 20);
	char *huge = calloc(1, AGENT_FRAME_MAX_PAYLOAD + 1);
	assert_int_equal(
	    agent_frame_put(&b, AGENT_MSG_STDOUT, 1, huge, AGENT_FRAME_MAX_PAYLOAD + 1), -EFBIG);
	assert_int_equal(b.len, 0);
	free(huge);
	/* a user string over its cap is refused by both sides */
	char user[AGENT_MAX_USER + 1];
	memset(user, 'u', sizeof(user) - 1);
	user[sizeof(user) - 1] = 0;
	const char *argv[] = {"x", NULL};
	struct agent_exec_req q = {.user = user, .cwd = "/", .argc = 1, .argv = argv};
	assert_int_equal(agent_exec_req_encode(&b, 1, &q), -EFBIG);
	agent_wbuf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frame_roundtrip),
	    cmocka_unit_test(test_frame_rejects),
	    cmocka_unit_test(test_exec_roundtrip),
	    cmocka_unit_test(test_small_messages),
	    cmocka_unit_test(test_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
