/* WWW-Authenticate parsing (RFC 7235), data-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "registry/auth.h"

static void parse_ok(struct reg_challenges *c, const char *s)
{
	int e = reg_challenges_parse(c, s, strlen(s));
	if (e != 0)
		fail_msg("'%s' failed: %d", s, e);
}

static void test_registry_bearer(void **state)
{
	struct reg_challenges c;
	reg_challenges_init(&c);
	parse_ok(&c, "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
		     "scope=\"repository:library/python:pull\"");
	assert_int_equal(c.n, 1);
	const struct reg_challenge *b = reg_challenges_find(&c, "BEARER");
	assert_non_null(b);
	assert_string_equal(b->scheme, "bearer");
	assert_string_equal(reg_challenge_param(b, "realm"), "https://auth.docker.io/token");
	assert_string_equal(reg_challenge_param(b, "Service"), "registry.docker.io");
	assert_string_equal(reg_challenge_param(b, "scope"), "repository:library/python:pull");
	assert_null(reg_challenge_param(b, "error"));
	reg_challenges_fini(&c);
}

static void test_several(void **state)
{
	struct reg_challenges c;
	reg_challenges_init(&c);
	/* two challenges in one header, token values, spaces around '=', escapes, and a
	 * second header line appended */
	parse_ok(&c,
		 "Basic realm=\"simple\", Bearer realm = \"https://a/t\" , error=invalid_token, "
		 "error_description=\"say \\\"hi\\\" \\\\ there, ok\"");
	parse_ok(&c, "Negotiate abc123==, NewAuth");
	assert_int_equal(c.n, 4);
	assert_string_equal(c.v[0].scheme, "basic");
	assert_string_equal(reg_challenge_param(&c.v[0], "realm"), "simple");
	assert_string_equal(c.v[1].scheme, "bearer");
	assert_string_equal(reg_challenge_param(&c.v[1], "realm"), "https://a/t");
	assert_string_equal(reg_challenge_param(&c.v[1], "error"), "invalid_token");
	assert_string_equal(reg_challenge_param(&c.v[1], "error_description"),
			    "say \"hi\" \\ there, ok");
	assert_string_equal(c.v[2].scheme, "negotiate");
	assert_string_equal(c.v[2].token68, "abc123==");
	assert_string_equal(c.v[3].scheme, "newauth");
	assert_int_equal(c.v[3].n_params, 0);
	reg_challenges_fini(&c);
}

static void test_commas_and_empty(void **state)
{
	struct reg_challenges c;
	reg_challenges_init(&c);
	parse_ok(&c, ", ,Bearer realm=\"r\",,service=s,  ,Basic");
	assert_int_equal(c.n, 2);
	assert_string_equal(reg_challenge_param(&c.v[0], "service"), "s");
	parse_ok(&c, "");
	assert_int_equal(c.n, 2);
	reg_challenges_fini(&c);
}

static void test_malformed(void **state)
{
	static const char *bad[] = {
	    "Bearer realm=\"unterminated",
	    "Bearer realm=",
	    "Bearer realm=\"a\" service=\"b\"", /* missing comma */
	    "=realm",
	    "Bearer realm=\"ctl\x01\"",
	    "Bea rer\"",
	    "Bearer @@@",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct reg_challenges c;
		reg_challenges_init(&c);
		int e = reg_challenges_parse(&c, bad[i], strlen(bad[i]));
		if (e != -EPROTO)
			fail_msg("'%s' should be -EPROTO, got %d", bad[i], e);
		assert_int_equal(c.n, 0); /* nothing half-parsed is kept */
		reg_challenges_fini(&c);
	}
}

static void test_caps(void **state)
{
	struct reg_challenges c;
	reg_challenges_init(&c);
	char big[REG_CHALLENGE_MAX + 2];
	memset(big, 'a', sizeof(big));
	assert_int_equal(reg_challenges_parse(&c, big, sizeof(big)), -EFBIG);
	for (int i = 0; i < REG_CHALLENGES_MAX; i++)
		parse_ok(&c, "Basic");
	assert_int_equal(reg_challenges_parse(&c, "Basic", 5), -EFBIG);
	reg_challenges_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_registry_bearer),
	    cmocka_unit_test(test_several),
	    cmocka_unit_test(test_commas_and_empty),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
