/*
 * First-touch trace parsing (indexer/trace.h, docs/trace.md): what a recorded trace gives
 * back, and the refusals, each naming the line at fault.
 */
#include "indexer/trace.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/util.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define IDX "sha256:4242424242424242424242424242424242424242424242424242424242424242"
#define H1  "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
#define H2  "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"

static int parse(const char *text, struct idx_trace *t)
{
	return idx_trace_parse("test", text, strlen(text), t);
}

static void test_valid(void **state)
{
	(void)state;
	struct idx_trace t;
	assert_int_equal(parse("isorun-trace 1\nindex " IDX "\nchunks 9\n"
			       "0 1834 7 3 " H1 " 40\n"
			       "1 2410 2 74 " H2 " 65536\n",
			       &t),
			 0);
	assert_int_equal(t.n, 2);
	assert_string_equal(t.index, IDX);
	char hex[65];
	cm_hex_format(t.ids[0], 32, hex);
	assert_string_equal(hex, H1);
	cm_hex_format(t.ids[1], 32, hex);
	assert_string_equal(hex, H2);
	idx_trace_fini(&t);
	assert_null(t.ids);
	/* No records, and no final newline, are fine. */
	assert_int_equal(parse("isorun-trace 1\nindex " IDX "\nchunks 0", &t), 0);
	assert_int_equal(t.n, 0);
	idx_trace_fini(&t);
}

static void test_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "isorun-trace 2\nindex " IDX "\nchunks 9\n",
	    "isorun-trace 1\nindex sha256:42\nchunks 9\n",
	    "isorun-trace 1\nindex " IDX "\nchunks -1\n",
	    "isorun-trace 1\nindex " IDX "\nchunks 99999999999\n",
	    "isorun-trace 1\nindex " IDX "\nchunks 9\n1 0 0 0 " H1 " 1\n",	    /* seq */
	    "isorun-trace 1\nindex " IDX "\nchunks 9\n0 0 9 0 " H1 " 1\n",	    /* chunk */
	    "isorun-trace 1\nindex " IDX "\nchunks 1\n0 0 0 0 " H1 " 1\n1 0 0 0 " H2 " 1\n",
	    "isorun-trace 1\nindex " IDX "\nchunks 9\n0 0 0 0 " H1 " 1\n1 0 1 0 " H1 " 1\n",
	    "isorun-trace 1\nindex " IDX "\nchunks 9\n0 0 0 0 " H1 "\n",	    /* fields */
	    "isorun-trace 1\nindex " IDX "\nchunks 9\n0 0 0 0 " H1 " 1 extra\n",
	    "isorun-trace 1\nindex " IDX "\nchunks 9\n0 0 0 0 CA978112ca1bbdcafac231b39a23dc4d"
	    "a786eff8147c4e72b9807785afee48bb 1\n", /* uppercase */
	    "isorun-trace 1\nindex " IDX "\nchunks 9\n0 0 0 0 " H1 " 4294967296\n",
	    "isorun-trace 1\nindex " IDX "\nchunks 9\n0  0 0 0 " H1 " 1\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct idx_trace t;
		if (parse(bad[i], &t) != -EPROTO)
			fail_msg("case %zu accepted", i);
		assert_null(t.ids);
		assert_int_equal(t.n, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),
	    cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
