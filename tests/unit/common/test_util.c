#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/digest.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_buf_cap(void **state)
{
	struct cm_buf b;
	cm_buf_init(&b, 8);
	assert_int_equal(cm_buf_append(&b, "12345678", 8), 0);
	assert_int_equal(cm_buf_append(&b, "9", 1), -EFBIG);
	assert_int_equal(b.len, 8);
	cm_buf_fini(&b);
}

static void test_digest_roundtrip(void **state)
{
	uint8_t d[32], e[32];
	char s[CM_DIGEST_STR_SIZE];
	cm_sha256("abc", 3, d);
	cm_digest_format(d, s);
	assert_string_equal(s, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(cm_digest_parse(s, e), 0);
	assert_memory_equal(d, e, 32);
	assert_int_equal(cm_digest_parse("sha512:00", e), -ENOTSUP);
	assert_int_equal(cm_digest_parse("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", e), -EPROTO);
	assert_int_equal(cm_digest_parse("sha256:abc", e), -EPROTO);
	assert_int_equal(cm_digest_parse("nocolon", e), -EPROTO);
}

/* The streaming context agrees with the one-shot digest (both go through the dlopen()ed
 * libcrypto), also across a reset. */
static void test_sha256_stream(void **state)
{
	uint8_t one[32], two[32];
	struct cm_sha256 *s;
	assert_int_equal(cm_sha256_new(&s), 0);
	cm_sha256_update(s, "junk", 4);
	cm_sha256_reset(s);
	cm_sha256_update(s, "a", 1);
	cm_sha256_update(s, "bc", 2);
	cm_sha256_final(s, one);
	cm_sha256("abc", 3, two);
	assert_memory_equal(one, two, 32);
	cm_sha256_update(s, "abc", 3); /* final resets the context */
	cm_sha256_final(s, one);
	assert_memory_equal(one, two, 32);
	cm_sha256_free(s);
}

/* RFC 4648 section 10 test vectors, and what the decoder refuses. */
static void test_base64(void **state)
{
	static const char *const vec[][2] = {
	    {"", ""},		{"f", "Zg=="},	       {"fo", "Zm8="},	     {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		char enc[CM_BASE64_LEN(6)];
		uint8_t dec[8];
		cm_base64_encode(vec[i][0], strlen(vec[i][0]), enc);
		assert_string_equal(enc, vec[i][1]);
		ssize_t n = cm_base64_decode(vec[i][1], strlen(vec[i][1]), dec);
		assert_int_equal(n, (ssize_t)strlen(vec[i][0]));
		assert_memory_equal(dec, vec[i][0], (size_t)n);
	}
	uint8_t all[256], back[258];
	char enc[CM_BASE64_LEN(256)];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	cm_base64_encode(all, 256, enc);
	assert_int_equal(cm_base64_decode(enc, strlen(enc), back), 256);
	assert_memory_equal(all, back, 256);
	static const char *const bad[] = {"Zg=", "Z===", "====", "Zg==Zg==", "Zm9*", "Zm=v",
					  "Zm9v\n"};
	uint8_t out[16];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cm_base64_decode(bad[i], strlen(bad[i]), out), -EPROTO);
}

static void test_parse_size(void **state)
{
	uint64_t v;
	assert_int_equal(cm_parse_size("64K", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(cm_parse_size("2GiB", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(cm_parse_size("12x", &v), -EINVAL);
	assert_int_equal(cm_parse_size("", &v), -EINVAL);
}

static void test_parse_uint(void **state)
{
	(void)state;
	unsigned v = 7;
	assert_int_equal(cm_parse_uint("64", 1, 64, &v), 0);
	assert_int_equal(v, 64);
	assert_int_equal(cm_parse_uint("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	/* out of range, whatever the width */
	assert_int_equal(cm_parse_uint("65", 1, 64, &v), -ERANGE);
	assert_int_equal(cm_parse_uint("0", 1, 64, &v), -ERANGE);
	assert_int_equal(cm_parse_uint("4294967296", 0, UINT32_MAX, &v), -ERANGE);
	assert_int_equal(cm_parse_uint("99999999999999999999999", 0, UINT32_MAX, &v), -ERANGE);
	/* not a plain number: what atoi would have read as 0 or 5 */
	static const char *const bad[] = {"", "abc", "-1", "+5", " 5", "5 ", "5s", "0x10", "1e3"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cm_parse_uint(bad[i], 0, UINT32_MAX, &v), -EINVAL);
	assert_int_equal(cm_parse_uint(NULL, 0, 1, &v), -EINVAL);
	assert_int_equal(v, 0); /* untouched by the failures */
}

/* cm_pwritev_full: every piece, in order, from the offset; a short write continues where
 * it stopped (here cut by RLIMIT_FSIZE, which then fails the rest with EFBIG). */
static void test_writev_full(void **state)
{
	(void)state;
	static uint8_t a[1500], b[7], c[2000];
	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)i;
	memset(b, 0xbb, sizeof(b));
	for (size_t i = 0; i < sizeof(c); i++)
		c[i] = (uint8_t)(i * 7);
	uint8_t want[sizeof(a) + sizeof(b) + sizeof(c)], got[sizeof(want) + 1];
	memcpy(want, a, sizeof(a));
	memcpy(want + sizeof(a), b, sizeof(b));
	memcpy(want + sizeof(a) + sizeof(b), c, sizeof(c));
	for (int limited = 0; limited < 2; limited++) {
		char path[] = "/tmp/isorun-writev-XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		pid_t pid = fork();
		if (pid == 0) {
			if (limited) {
				signal(SIGXFSZ, SIG_IGN);
				struct rlimit rl = {.rlim_cur = 1000, .rlim_max = RLIM_INFINITY};
				setrlimit(RLIMIT_FSIZE, &rl);
			}
			struct iovec iov[] = {{a, sizeof(a)}, {b, sizeof(b)}, {c, sizeof(c)}};
			int r = cm_pwritev_full(fd, iov, 3, 0);
			_exit(limited ? (r == -EFBIG ? 0 : 1) : (r == 0 ? 0 : 2));
		}
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
		ssize_t n = pread(fd, got, sizeof(got), 0);
		assert_int_equal(n, limited ? 1000 : (ssize_t)sizeof(want));
		assert_memory_equal(got, want, (size_t)n);
		close(fd);
		unlink(path);
	}
}

static void test_json_helpers(void **state)
{
	(void)state;
	json_object *o;
	static const char *const bad[] = {"", "[1]", "{} x", "{\"a\":1}{}", "{", "\"s\"", "{} \0"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = strlen(bad[i]) + (i == 6 ? 2 : 0);
		assert_int_equal(cm_json_parse_object(bad[i], len, &o), -EPROTO);
		assert_null(o);
	}
	const char *doc = " {\"s\":\"v\",\"n\":null,\"i\":1,\"a\":[\"x\",\"y\"],\"b\":[1]} \n";
	assert_int_equal(cm_json_parse_object(doc, strlen(doc), &o), 0);
	char *s;
	assert_int_equal(cm_json_str(o, "s", NULL, &s), 0);
	assert_string_equal(s, "v");
	free(s);
	assert_int_equal(cm_json_str(o, "n", NULL, &s), 0);
	assert_null(s);
	assert_int_equal(cm_json_str(o, "missing", NULL, &s), 0);
	assert_null(s);
	assert_int_equal(cm_json_str(o, "i", NULL, &s), -EPROTO);
	char **v;
	json_object *a;
	assert_true(json_object_object_get_ex(o, "a", &a));
	assert_int_equal(cm_json_strv(a, NULL, &v), 0);
	assert_string_equal(v[0], "x");
	assert_string_equal(v[1], "y");
	assert_null(v[2]);
	cm_strv_free(v);
	assert_true(json_object_object_get_ex(o, "b", &a));
	assert_int_equal(cm_json_strv(a, NULL, &v), -EPROTO);
	assert_null(v);
	assert_true(json_object_object_get_ex(o, "s", &a));
	assert_int_equal(cm_json_strv(a, NULL, &v), -EPROTO);
	assert_int_equal(cm_json_strv(NULL, NULL, &v), 0);
	assert_null(v);
	json_object_put(o);
}

/* cm_log_errors counts the error lines written: not warnings, not demoted lines. Stderr
 * goes to /dev/null meanwhile. */
static void test_log_errors(void **state)
{
	(void)state;
	int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && null >= 0);
	dup2(null, STDERR_FILENO);
	unsigned n = cm_log_errors();
	log_warn("a warning");
	assert_int_equal(cm_log_errors(), n);
	log_error("an error");
	assert_int_equal(cm_log_errors(), n + 1);
	assert_int_equal(cm_log_ret(-EIO, "another"), -EIO);
	assert_int_equal(cm_log_errors(), n + 2);
	bool was = cm_log_demote_thread(true);
	log_error("demoted");
	assert_int_equal(cm_log_errors(), n + 2);
	assert_true(cm_log_demote_thread(was));
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
}

int main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buf_cap),
	    cmocka_unit_test(test_digest_roundtrip),
	    cmocka_unit_test(test_sha256_stream),
	    cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_parse_size),
	    cmocka_unit_test(test_parse_uint),
	    cmocka_unit_test(test_writev_full),
	    cmocka_unit_test(test_json_helpers),
	    cmocka_unit_test(test_log_errors),
	};
	/* clang-format on */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
