/*
 * Content-defined chunking: boundaries depend only on content (deterministic, and an edit
 * near the start of a file changes only the chunks around it), every chunk but a file's
 * last respects min/max, and the streaming wrapper cuts exactly where idx_cdc_cut does no
 * matter how the input is split into feeds.
 */
#include "chunker.h"

#include "idx_testlib.h"

#include "common/cleanup.h"
#include "common/digest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DATA_LEN (8u << 20)

static const struct idx_cdc_params P = {IDX_CDC_MIN, IDX_CDC_AVG, IDX_CDC_MAX};

struct cuts {
	size_t n, cap;
	size_t *len;
	uint8_t (*digest)[32];
};

static int collect(void *ud, const uint8_t *chunk, size_t len)
{
	struct cuts *c = ud;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->len = realloc(c->len, c->cap * sizeof(*c->len));
		c->digest = realloc(c->digest, c->cap * sizeof(*c->digest));
		assert_non_null(c->len);
		assert_non_null(c->digest);
	}
	c->len[c->n] = len;
	cm_sha256(chunk, len, c->digest[c->n]);
	c->n++;
	return 0;
}

static void cuts_free(struct cuts *c)
{
	free(c->len);
	free(c->digest);
	memset(c, 0, sizeof(*c));
}

/* Feed `data` in pieces of `step` bytes (0 = one feed) and finish. */
static void chunk_all(const uint8_t *data, size_t len, size_t step, struct cuts *out)
{
	struct idx_cdc cdc;
	assert_int_equal(idx_cdc_init(&cdc, &P, collect, out), 0);
	for (size_t off = 0; off < len;) {
		size_t n = step ? MIN(step, len - off) : len - off;
		assert_int_equal(idx_cdc_feed(&cdc, data + off, n), 0);
		off += n;
	}
	assert_int_equal(idx_cdc_finish(&cdc), 0);
	idx_cdc_fini(&cdc);
}

static uint8_t *random_data(uint64_t seed, size_t len)
{
	uint8_t *d = malloc(len);
	assert_non_null(d);
	tl_random(seed, d, len);
	return d;
}

static void test_min_max_and_coverage(void **state)
{
	_cleanup_free_ uint8_t *d = random_data(1, DATA_LEN);
	struct cuts c = {0};
	chunk_all(d, DATA_LEN, 0, &c);
	size_t total = 0;
	for (size_t i = 0; i < c.n; i++) {
		if (i + 1 < c.n)
			assert_true(c.len[i] >= P.min);
		assert_true(c.len[i] <= P.max);
		assert_true(c.len[i] > 0);
		total += c.len[i];
	}
	assert_int_equal(total, DATA_LEN);
	/* The average lands near the target on random data (normalised chunking keeps it
	 * within a factor of two). */
	size_t avg = DATA_LEN / c.n;
	assert_true(avg > P.avg / 2 && avg < P.avg * 2);
	cuts_free(&c);
}

static void test_max_forced_on_constant_data(void **state)
{
	/* Zeros never match the gear mask: every cut is forced at max. */
	_cleanup_free_ uint8_t *d = calloc(1, 5 * (size_t)P.max + 123);
	struct cuts c = {0};
	chunk_all(d, 5 * (size_t)P.max + 123, 0, &c);
	assert_int_equal(c.n, 6);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(c.len[i], P.max);
	assert_int_equal(c.len[5], 123);
	cuts_free(&c);
}

static void test_small_inputs(void **state)
{
	uint8_t d[100];
	tl_random(3, d, sizeof(d));
	assert_int_equal(idx_cdc_cut(&P, d, 0), 0);
	assert_int_equal(idx_cdc_cut(&P, d, 1), 1);
	assert_int_equal(idx_cdc_cut(&P, d, sizeof(d)), sizeof(d)); /* below min: one chunk */
	struct cuts c = {0};
	chunk_all(d, 0, 0, &c); /* an empty file has no chunk */
	assert_int_equal(c.n, 0);
	chunk_all(d, sizeof(d), 0, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.len[0], sizeof(d));
	cuts_free(&c);
}

static void test_deterministic_and_split_independent(void **state)
{
	_cleanup_free_ uint8_t *d = random_data(2, DATA_LEN);
	struct cuts a = {0}, b = {0}, s = {0};
	chunk_all(d, DATA_LEN, 0, &a);
	chunk_all(d, DATA_LEN, 0, &b);
	chunk_all(d, DATA_LEN, 4093, &s); /* odd feed sizes, straddling every cut */
	assert_int_equal(a.n, b.n);
	assert_int_equal(a.n, s.n);
	for (size_t i = 0; i < a.n; i++) {
		assert_int_equal(a.len[i], b.len[i]);
		assert_int_equal(a.len[i], s.len[i]);
		assert_memory_equal(a.digest[i], s.digest[i], 32);
	}
	/* The streaming cuts are the ones idx_cdc_cut finds on the whole buffer. */
	size_t off = 0;
	for (size_t i = 0; i < a.n; i++) {
		assert_int_equal(idx_cdc_cut(&P, d + off, DATA_LEN - off), a.len[i]);
		off += a.len[i];
	}
	cuts_free(&a);
	cuts_free(&b);
	cuts_free(&s);
}

static size_t shared_chunks(const struct cuts *a, const struct cuts *b)
{
	size_t n = 0;
	for (size_t i = 0; i < b->n; i++)
		for (size_t j = 0; j < a->n; j++)
			if (!memcmp(a->digest[j], b->digest[i], 32)) {
				n++;
				break;
			}
	return n;
}

static void edit_case(size_t at, size_t ins, size_t del)
{
	_cleanup_free_ uint8_t *d = random_data(4, DATA_LEN);
	_cleanup_free_ uint8_t *e = malloc(DATA_LEN + ins);
	uint8_t extra[64];
	tl_random(5, extra, sizeof(extra));
	memcpy(e, d, at);
	memcpy(e + at, extra, ins);
	memcpy(e + at + ins, d + at + del, DATA_LEN - at - del);
	size_t elen = DATA_LEN + ins - del;
	struct cuts a = {0}, b = {0};
	chunk_all(d, DATA_LEN, 0, &a);
	chunk_all(e, elen, 0, &b);
	/* Only the chunk holding the edit (and at most a couple after it, until the cut points
	 * resynchronise) may differ. */
	size_t shared = shared_chunks(&a, &b);
	assert_true(b.n - shared <= 3);
	assert_true(shared * 100 >= b.n * 97);
	/* The chunks after the edit are the same sequence. */
	assert_memory_equal(a.digest[a.n - 1], b.digest[b.n - 1], 32);
	cuts_free(&a);
	cuts_free(&b);
}

static void test_insert_near_start(void **state)
{
	edit_case(1000, 17, 0);
}

static void test_insert_after_first_chunk(void **state)
{
	edit_case(100000, 1, 0);
}

static void test_delete_near_start(void **state)
{
	edit_case(5000, 0, 33);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_min_max_and_coverage),
	    cmocka_unit_test(test_max_forced_on_constant_data),
	    cmocka_unit_test(test_small_inputs),
	    cmocka_unit_test(test_deterministic_and_split_independent),
	    cmocka_unit_test(test_insert_near_start),
	    cmocka_unit_test(test_insert_after_first_chunk),
	    cmocka_unit_test(test_delete_near_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
