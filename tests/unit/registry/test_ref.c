/* Reference grammar and normalisation, table-driven (cases from distribution's
 * reference/normalize_test.go and reference_test.go, plus limits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "registry/ref.h"

struct ok_case {
	const char *in, *domain, *path, *tag, *digest, *canonical;
};

#define D64 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const struct ok_case ok_cases[] = {
    {"python:3.12", "docker.io", "library/python", "3.12", NULL, "docker.io/library/python:3.12"},
    {"ubuntu", "docker.io", "library/ubuntu", NULL, NULL, "docker.io/library/ubuntu"},
    {"library/ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", NULL, NULL},
    {"docker.io/ubuntu", "docker.io", "library/ubuntu", NULL, NULL, NULL},
    {"index.docker.io/ubuntu:1", "docker.io", "library/ubuntu", "1", NULL,
     "docker.io/library/ubuntu:1"},
    {"foo/bar", "docker.io", "foo/bar", NULL, NULL, "docker.io/foo/bar"},
    {"ghcr.io/owner/repo/sub:v1.2.3", "ghcr.io", "owner/repo/sub", "v1.2.3", NULL, NULL},
    {"localhost/foo", "localhost", "foo", NULL, NULL, "localhost/foo"},
    {"localhost:5000/foo/bar:tag", "localhost:5000", "foo/bar", "tag", NULL, NULL},
    {"127.0.0.1:5000/a_b/c__d/e-f/g--h/i.j", "127.0.0.1:5000", "a_b/c__d/e-f/g--h/i.j", NULL, NULL,
     NULL},
    {"[::1]:5000/foo", "[::1]:5000", "foo", NULL, NULL, NULL},
    {"[fe80::1%eth0]/x", NULL, NULL, NULL, NULL, NULL}, /* zone: invalid, see below */
    {"Foo/bar", "Foo", "bar", NULL, NULL, NULL},	/* upper-case first element is a host */
    {"my-registry.example.com/x@" D64, "my-registry.example.com", "x", NULL, D64, NULL},
    {"python:3.12@" D64, "docker.io", "library/python", "3.12", D64,
     "docker.io/library/python:3.12@" D64},
    {"a:_T.a-g_", "docker.io", "library/a", "_T.a-g_", NULL, NULL},
    {"registry.example.com:443/foo", "registry.example.com:443", "foo", NULL, NULL, NULL},
};

static void test_valid(void **state)
{
	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		const struct ok_case *c = &ok_cases[i];
		struct reg_ref *r = NULL;
		const char *why = NULL;
		int e = reg_ref_parse(c->in, &r, &why);
		if (!c->domain) {
			assert_int_equal(e, -EINVAL);
			continue;
		}
		if (e != 0)
			fail_msg("%s: %s", c->in, why);
		assert_string_equal(r->domain, c->domain);
		assert_string_equal(r->path, c->path);
		if (c->tag)
			assert_string_equal(r->tag, c->tag);
		else
			assert_null(r->tag);
		if (c->digest)
			assert_string_equal(r->digest, c->digest);
		else
			assert_null(r->digest);
		char *s = reg_ref_format(r);
		if (c->canonical)
			assert_string_equal(s, c->canonical);
		/* the canonical form parses back to itself */
		struct reg_ref *r2 = NULL;
		assert_int_equal(reg_ref_parse(s, &r2, NULL), 0);
		char *s2 = reg_ref_format(r2);
		assert_string_equal(s, s2);
		free(s);
		free(s2);
		reg_ref_free(r);
		reg_ref_free(r2);
	}
}

static void test_invalid(void **state)
{
	char longname[300], longtag[200];
	memset(longname, 'a', sizeof(longname));
	memcpy(longname, "example.com/", 12);
	longname[sizeof(longname) - 1] = 0;
	memset(longtag, 'b', sizeof(longtag));
	memcpy(longtag, "x:", 2);
	longtag[2 + 129] = 0; /* 129-char tag */
	const char *bad[] = {
	    "",
	    ":",
	    "/foo",
	    "foo/",
	    "foo//bar",
	    "UPPER",
	    "docker.io/Upper/case",
	    "foo:",
	    "foo:-tag",
	    "foo:.tag",
	    "foo:tag with space",
	    "foo@sha256:abc",
	    "foo@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
	    "foo@",
	    "-foo",
	    "foo-",
	    "foo..bar",
	    "foo.-bar",
	    "foo___bar",
	    "exa_mple.com/foo",
	    "example.com:port/foo",
	    "example.com:123456/foo",
	    "-example.com/foo",
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	    "[::1/foo",
	    "[]:5000/foo",
	    longname,
	    longtag,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct reg_ref *r = NULL;
		const char *why = NULL;
		int e = reg_ref_parse(bad[i], &r, &why);
		if (e != -EINVAL)
			fail_msg("'%s' should be invalid, got %d", bad[i], e);
		assert_non_null(why);
		assert_null(r);
	}
	/* a well-formed digest of another algorithm is not usable */
	struct reg_ref *r = NULL;
	assert_int_equal(reg_ref_parse("foo@sha512:"
				       "0123456789abcdef0123456789abcdef0123456789abcdef",
				       &r, NULL),
			 -ENOTSUP);
	const char *why = NULL;
	assert_int_equal(reg_ref_parse("docker.io/Foo/bar", &r, &why), -EINVAL);
	assert_string_equal(why, "repository name must be lowercase");
}

static void test_limits(void **state)
{
	/* exactly 255 characters of name and 128 of tag are fine */
	char name[256 + 130];
	memcpy(name, "example.com/", 12);
	memset(name + 12, 'a', 255 - 12);
	name[255] = 0;
	struct reg_ref *r = NULL;
	assert_int_equal(reg_ref_parse(name, &r, NULL), 0);
	reg_ref_free(r);
	name[255] = ':';
	memset(name + 256, 't', 128);
	name[256 + 128] = 0;
	assert_int_equal(reg_ref_parse(name, &r, NULL), 0);
	assert_int_equal(strlen(r->tag), 128);
	reg_ref_free(r);
}

static void test_api_host_and_with(void **state)
{
	struct reg_ref *r = NULL, *w = NULL;
	assert_int_equal(reg_ref_parse("python:3.12", &r, NULL), 0);
	assert_string_equal(reg_ref_api_host(r), "registry-1.docker.io");
	assert_int_equal(reg_ref_with(r, D64, &w), 0);
	assert_null(w->tag);
	assert_string_equal(w->digest, D64);
	reg_ref_free(w);
	assert_int_equal(reg_ref_with(r, "v2", &w), 0);
	assert_string_equal(w->tag, "v2");
	reg_ref_free(w);
	assert_int_equal(reg_ref_with(r, "bad tag", &w), -EINVAL);
	reg_ref_free(r);
	assert_int_equal(reg_ref_parse("ghcr.io/a/b", &r, NULL), 0);
	assert_string_equal(reg_ref_api_host(r), "ghcr.io");
	reg_ref_free(r);
}

static void test_policy(void **state)
{
	static const struct {
		const char *ref;
		int want;
	} cases[] = {
	    {"python", -EINVAL},	{"python:latest", -EINVAL}, {"python:lts", -EINVAL},
	    {"python:stable", -EINVAL}, {"python:3.12", 0},	    {"python@" D64, 0},
	    {"python:latest@" D64, 0},	{"python:Latest", 0}, /* tags are case-sensitive */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct reg_ref *r = NULL;
		assert_int_equal(reg_ref_parse(cases[i].ref, &r, NULL), 0);
		if (reg_ref_check_policy(r, false) != cases[i].want)
			fail_msg("policy of %s", cases[i].ref);
		assert_int_equal(reg_ref_check_policy(r, true), 0);
		reg_ref_free(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),  cmocka_unit_test(test_invalid),
	    cmocka_unit_test(test_limits), cmocka_unit_test(test_api_host_and_with),
	    cmocka_unit_test(test_policy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
