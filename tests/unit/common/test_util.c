#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/digest.h"
#include "common/util.h"

#include <errno.h>
#include <string.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_cap),
		cmocka_unit_test(test_digest_roundtrip),
		cmocka_unit_test(test_parse_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
