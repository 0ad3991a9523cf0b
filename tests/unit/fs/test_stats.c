/* The read-latency histogram, option parsing and background policies of the fs module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs_int.h"

#include <errno.h>
#include <string.h>

#define MS 1000000ull

/* While a program reads what the startup list brought, the rest of the image waits; it
 * goes on when the reads pause, or when a reader had to wait for a chunk. */
static void test_rest_deferred(void **state)
{
	(void)state;
	uint64_t t = 1000000 * MS;
	assert_false(fs_rest_deferred(t, 0, 0));	  /* nothing read yet */
	assert_true(fs_rest_deferred(t, t - 10 * MS, 0)); /* reading, all present */
	assert_true(fs_rest_deferred(t, t - 249 * MS, 0));
	assert_false(fs_rest_deferred(t, t - 250 * MS, 0));	    /* the reads paused */
	assert_false(fs_rest_deferred(t, t - 10 * MS, t - 5 * MS)); /* a reader waited */
	assert_false(fs_rest_deferred(t, t - 10 * MS, t - 999 * MS));
	assert_true(fs_rest_deferred(t, t - 10 * MS, t - 1000 * MS)); /* a while ago */
}

/* The records' flush waits while reads come close together, but not past 10 s after the
 * last flush, and not when the image has just become complete. */
static void test_flush_deferred(void **state)
{
	(void)state;
	uint64_t t = 1000000 * MS;
	assert_false(fs_flush_deferred(t, 0, t - MS, false));
	assert_true(fs_flush_deferred(t, t - 100 * MS, t - 2000 * MS, false));
	assert_false(fs_flush_deferred(t, t - 300 * MS, t - 2000 * MS, false)); /* a pause */
	assert_true(fs_flush_deferred(t, t - 100 * MS, t - 9999 * MS, false));
	assert_false(fs_flush_deferred(t, t - 100 * MS, t - 10000 * MS, false)); /* 10 s */
	assert_false(fs_flush_deferred(t, t - 100 * MS, t - 2000 * MS, true));	 /* complete */
}

/* A startup chunk held for its first read gives its memory back 10 s after it came. */
static void test_hold_expired(void **state)
{
	(void)state;
	uint64_t t = 1000000 * MS;
	assert_false(fs_hold_expired(t, t));
	assert_false(fs_hold_expired(t, t - 9999 * MS));
	assert_true(fs_hold_expired(t, t - 10000 * MS));
	assert_true(fs_hold_expired(t, t - 60000 * MS));
}

static void test_hist_quantiles(void **state)
{
	static struct fs_hist h;
	memset(&h, 0, sizeof(h));
	assert_int_equal(fs_hist_quantile(&h, 0.5), 0);
	for (uint64_t v = 1; v <= 10000; v++)
		fs_hist_add(&h, v);
	uint64_t p50 = fs_hist_quantile(&h, 0.5), p99 = fs_hist_quantile(&h, 0.99);
	/* Buckets are a quarter of a power of two wide: the bound is within 25 %. */
	assert_true(p50 >= 5000 && p50 <= 6250);
	assert_true(p99 >= 9900 && p99 <= 10000);
	assert_int_equal(h.max_us, 10000);
	assert_int_equal(h.count, 10000);
	assert_true(fs_hist_quantile(&h, 1.0) <= 10000);
}

static void test_hist_extremes(void **state)
{
	static struct fs_hist h;
	memset(&h, 0, sizeof(h));
	fs_hist_add(&h, 0);
	fs_hist_add(&h, UINT64_MAX / 2);
	assert_int_equal(fs_hist_quantile(&h, 0.0), 0);
	assert_int_equal(fs_hist_quantile(&h, 1.0), UINT64_MAX / 2);
}

static void test_prefetch_parse(void **state)
{
	enum fs_prefetch p;
	assert_int_equal(fs_prefetch_parse("none", &p), 0);
	assert_int_equal(p, FS_PREFETCH_NONE);
	assert_int_equal(fs_prefetch_parse("startup", &p), 0);
	assert_int_equal(p, FS_PREFETCH_STARTUP);
	assert_int_equal(fs_prefetch_parse("all", &p), 0);
	assert_int_equal(p, FS_PREFETCH_ALL);
	assert_int_equal(fs_prefetch_parse("most", &p), -EINVAL);
	struct fs_mount_opts o = {.fetch_timeout_s = 7};
	fs_mount_opts_defaults(&o);
	assert_int_equal(o.fetch_timeout_s, 7);
	assert_int_equal(o.request_max, 4u << 20);
	assert_int_equal(o.prefetch_threads, 0); /* the engine chooses from the latency */
	assert_true(o.mem_cache > 0);
	assert_true(o.startup_hold >= 16u << 20 && o.startup_hold <= 256u << 20);
	/* the hold: 256 MiB, less on a small machine */
	assert_int_equal(fs_startup_hold_default(0), 256ull << 20);
	assert_int_equal(fs_startup_hold_default(24ull << 30), 256ull << 20);
	assert_int_equal(fs_startup_hold_default(4ull << 30), 256ull << 20);
	assert_int_equal(fs_startup_hold_default(2ull << 30), 128ull << 20);
	assert_int_equal(fs_startup_hold_default(128ull << 20), 16ull << 20);
}

int main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rest_deferred),
	    cmocka_unit_test(test_flush_deferred),
	    cmocka_unit_test(test_hold_expired),
	    cmocka_unit_test(test_hist_quantiles),
	    cmocka_unit_test(test_hist_extremes),
	    cmocka_unit_test(test_prefetch_parse),
	};
	/* clang-format on */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
