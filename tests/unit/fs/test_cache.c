/* Chunk cache bookkeeping against a real store in a temporary directory: reconcile with
 * the chunk files, LRU eviction order, batched touches, the cap from config.json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/cache.h"

#include "indexer/store.h"

#include "common/digest.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define N 5

struct fixture {
	char root[64];
	struct idx_store *s;
	uint8_t d[N][32];
	uint64_t csize[N];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/isorun-fs-unit.XXXXXX");
	if (!f || !mkdtemp(f->root) || idx_store_open(f->root, &f->s) < 0 ||
	    fs_cache_init(f->s) < 0)
		return -1;
	/* N chunks of distinct content; chunk i last used at (1000 + i) s. */
	for (int i = 0; i < N; i++) {
		static uint8_t data[4096 * N], c[ZSTD_COMPRESSBOUND(4096 * N)];
		size_t len = 4096u * (size_t)(1 + i);
		for (size_t k = 0; k < len; k++)
			data[k] = (uint8_t)(k * 31 + (size_t)i * 7 + k / 97);
		size_t cl = ZSTD_compress(c, sizeof(c), data, len, 3);
		if (ZSTD_isError(cl))
			return -1;
		cm_sha256(data, len, f->d[i]);
		f->csize[i] = cl;
		if (idx_store_put_chunk(f->s, f->d[i], c, cl, (uint32_t)len, true) != 1)
			return -1;
		char p[80];
		idx_store_chunk_relpath(f->d[i], p);
		struct timespec ts[2] = {{.tv_sec = 1000 + i}, {.tv_sec = 1000 + i}};
		if (utimensat(idx_store_root_fd(f->s), p, ts, 0) < 0)
			return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	idx_store_free(f->s);
	cm_rm_rf_at(AT_FDCWD, f->root);
	free(f);
	return 0;
}

static uint64_t sum(struct fixture *f, int from, int to)
{
	uint64_t s = 0;
	for (int i = from; i < to; i++)
		s += f->csize[i];
	return s;
}

static void test_reconcile(void **state)
{
	struct fixture *f = *state;
	uint64_t bytes, chunks;
	assert_int_equal(fs_cache_reconcile(f->s, &bytes, &chunks), 0);
	assert_int_equal(chunks, N);
	assert_int_equal(bytes, sum(f, 0, N));
	/* A chunk file removed behind our back disappears from the bookkeeping. */
	char p[80];
	idx_store_chunk_relpath(f->d[0], p);
	assert_int_equal(unlinkat(idx_store_root_fd(f->s), p, 0), 0);
	assert_int_equal(fs_cache_reconcile(f->s, &bytes, &chunks), 0);
	assert_int_equal(chunks, N - 1);
	assert_int_equal(bytes, sum(f, 1, N));
}

static void test_evict_lru(void **state)
{
	struct fixture *f = *state;
	struct fs_cache_gc_result res;
	/* Room for all but the two oldest. */
	assert_int_equal(fs_cache_evict(f->s, sum(f, 2, N), true, &res), 0);
	assert_int_equal(res.evicted_chunks, 2);
	assert_false(idx_store_has_chunk(f->s, f->d[0]));
	assert_false(idx_store_has_chunk(f->s, f->d[1]));
	assert_true(idx_store_has_chunk(f->s, f->d[2]));
	/* Using chunk 2 makes chunk 3 the least recently used. */
	struct fs_cache_touch t = {.csize = (uint32_t)f->csize[2]};
	memcpy(t.digest, f->d[2], 32);
	assert_int_equal(fs_cache_touch_batch(f->s, &t, 1), 0);
	assert_int_equal(fs_cache_evict(f->s, f->csize[2] + f->csize[4], false, &res), 0);
	assert_int_equal(res.evicted_chunks, 1);
	assert_false(idx_store_has_chunk(f->s, f->d[3]));
	assert_true(idx_store_has_chunk(f->s, f->d[2]));
	assert_true(idx_store_has_chunk(f->s, f->d[4]));
	assert_int_equal(res.bytes, f->csize[2] + f->csize[4]);
	/* A cap of 0 empties the store (nothing is mounted). */
	assert_int_equal(fs_cache_evict(f->s, 0, false, &res), 0);
	assert_int_equal(res.chunks, 0);
}

static void test_config(void **state)
{
	struct fixture *f = *state;
	uint64_t max;
	assert_int_equal(fs_cache_config(f->root, &max, NULL), 0);
	assert_int_equal(max, FS_CACHE_MAX_DEFAULT);
	char p[128];
	snprintf(p, sizeof(p), "%s/config.json", f->root);
	FILE *c = fopen(p, "w");
	fputs("{\"cache_max\": \"10M\"}", c);
	fclose(c);
	assert_int_equal(fs_cache_config(f->root, &max, NULL), 0);
	assert_int_equal(max, 10u << 20);
	c = fopen(p, "w");
	fputs("{\"cache_max\": 12345}", c);
	fclose(c);
	assert_int_equal(fs_cache_config(f->root, &max, NULL), 0);
	assert_int_equal(max, 12345);
	c = fopen(p, "w");
	fputs("{\"cache_max\": \"lots\"}", c);
	fclose(c);
	assert_int_equal(fs_cache_config(f->root, &max, NULL), -EPROTO);
	c = fopen(p, "w");
	fputs("[1, 2", c);
	fclose(c);
	assert_int_equal(fs_cache_config(f->root, &max, NULL), -EPROTO);
}

/* The free space the cache leaves: config.json, else 5 % of the filesystem (at most
 * 2 GiB); and the cap eviction aims for when the filesystem has less. */
static void test_min_free(void **state)
{
	struct fixture *f = *state;
	struct statvfs sv;
	assert_int_equal(statvfs(f->root, &sv), 0);
	uint64_t fs = (uint64_t)sv.f_blocks * sv.f_frsize;
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	uint64_t v;
	assert_int_equal(fs_cache_config(f->root, NULL, &v), 0);
	uint64_t want = fs / 100 * FS_CACHE_MIN_FREE_PCT;
	assert_int_equal(v, want < FS_CACHE_MIN_FREE_MAX ? want : FS_CACHE_MIN_FREE_MAX);
	char p[128];
	snprintf(p, sizeof(p), "%s/config.json", f->root);
	const struct {
		const char *json;
		int r;
		uint64_t v;
	} cases[] = {
	    {"{\"cache_min_free\": \"3M\"}", 0, 3u << 20},
	    {"{\"cache_min_free\": 0}", 0, 0}, /* off */
	    {"{\"cache_min_free\": \"0\"}", 0, 0},
	    {"{\"cache_min_free\": -1}", -EPROTO, 0},
	    {"{\"cache_min_free\": \"much\"}", -EPROTO, 0},
	    {"{\"cache_max\": \"1G\"}", 0, v}, /* absent: the default */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		FILE *c = fopen(p, "w");
		fputs(cases[i].json, c);
		fclose(c);
		uint64_t got = 12345;
		assert_int_equal(fs_cache_config(f->root, NULL, &got), cases[i].r);
		if (cases[i].r == 0)
			assert_int_equal(got, cases[i].v);
	}
	/* a cap of 0 stays refused */
	FILE *c = fopen(p, "w");
	fputs("{\"cache_max\": 0}", c);
	fclose(c);
	uint64_t max;
	assert_int_equal(fs_cache_config(f->root, &max, NULL), -EPROTO);

	uint64_t short_by;
	/* room to spare: the cap, or none */
	assert_int_equal(fs_cache_evict_cap(f->root, 1000, 500, 0, &short_by), 500);
	assert_int_equal(short_by, 0);
	assert_int_equal(fs_cache_evict_cap(f->root, 1000, 0, 0, &short_by), UINT64_MAX);
	assert_int_equal(fs_cache_evict_cap(f->root, 1000, 500, 1, &short_by), 500);
	assert_int_equal(short_by, 0);
	/* asking for 1 GiB more free than there is (other writers move it a little): the
	 * store must shrink by what is missing */
	const uint64_t G = 1ull << 30;
	uint64_t ask = avail + G;
	uint64_t cap = fs_cache_evict_cap(f->root, 10 * G, 0, ask, &short_by);
	assert_true(short_by > G / 2 && short_by < G + G / 2);
	assert_int_equal(cap, 10 * G - short_by);
	assert_int_equal(fs_cache_evict_cap(f->root, 10 * G, 4u << 20, ask, &short_by),
			 4u << 20); /* the lower of the two */
	assert_int_equal(fs_cache_evict_cap(f->root, 1u << 20, 0, ask, &short_by), 0);
}

static void test_remote(void **state)
{
	struct fixture *f = *state;
	const char *idig =
	    "sha256:0000000000000000000000000000000000000000000000000000000000000001";
	char *repo = NULL;
	assert_int_equal(fs_cache_get_remote(f->s, idig, &repo), -ENOENT);
	assert_int_equal(fs_cache_set_remote(f->s, idig, "127.0.0.1:5000/x/y", idig), 0);
	assert_int_equal(fs_cache_get_remote(f->s, idig, &repo), 0);
	assert_string_equal(repo, "127.0.0.1:5000/x/y");
	free(repo);
}

static int64_t count_of(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t n = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* A store of an earlier version kept refs in fs_refs(index_digest, digest, csize):
 * fs_cache_init moves them to fs_indexes + fs_refs2, readable through fs_refs_v. */
static void test_refs_migration(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = idx_store_db(f->s);
	idx_store_lock(f->s);
	assert_int_equal(
	    sqlite3_exec(db,
			 "CREATE TABLE fs_refs(index_digest TEXT NOT NULL, digest BLOB NOT NULL,"
			 " csize INTEGER NOT NULL, PRIMARY KEY(index_digest, digest)) WITHOUT ROWID;"
			 "INSERT INTO fs_refs VALUES('sha256:aa', x'01', 10), ('sha256:aa', x'02', 20),"
			 " ('sha256:bb', x'01', 10);",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	idx_store_unlock(f->s);
	assert_int_equal(fs_cache_init(f->s), 0);
	idx_store_lock(f->s);
	assert_int_equal(
	    count_of(db, "SELECT COUNT(*) FROM sqlite_master WHERE name='fs_refs'"), 0);
	assert_int_equal(count_of(db, "SELECT COUNT(*) FROM fs_indexes"), 2);
	assert_int_equal(count_of(db, "SELECT COUNT(*) FROM fs_refs_v WHERE "
				      "index_digest='sha256:aa' AND csize IN (10, 20)"),
			 2);
	assert_int_equal(count_of(db, "SELECT COUNT(*) FROM fs_refs_v WHERE digest=x'01'"), 2);
	idx_store_unlock(f->s);
	/* Idempotent: a second init finds nothing to move. */
	assert_int_equal(fs_cache_init(f->s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_evict_lru, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_min_free, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remote, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refs_migration, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
