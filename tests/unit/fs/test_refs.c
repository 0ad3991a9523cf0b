/* Deferred chunk references: a pull only notes the index (fs_cache_add_index), the mount's
 * daemon records its chunks in the background (fs_cache_record_index_ex, stoppable), and
 * eviction/prune/stats complete whatever is missing first (fs_cache_complete_refs). Against
 * a real index built from a generated image, in a temporary store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "idx_testlib.h"

#include "fs/cache.h"
#include "fs/image.h"

#include "indexer/index.h"
#include "indexer/store.h"

#include "common/cleanup.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
	char *tmp, *layout, *root;
	struct idx_store *s;
	struct idx_reader *rd;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	static char big[300000];
	tl_random(7, (uint8_t *)big, sizeof(big));
	const struct tl_entry ents[] = {
	    {'d', "etc"},
	    {'f', "etc/hostname", "box\n"},
	    {'f', "data/big", big, .len = sizeof(big)},
	    {'f', "data/small", "small file\n"},
	    {0},
	};
	struct cm_buf tar;
	cm_buf_init(&tar, 1u << 24);
	if (!f || !(f->tmp = tl_mkdtemp("isorun-refs")) || tl_tar(ents, &tar) < 0)
		return -1;
	struct tl_layer l = {.tar = tar.data, .tar_len = tar.len, .comp = TL_GZIP};
	f->layout = cm_strdupf("%s/layout", f->tmp);
	f->root = cm_strdupf("%s/store", f->tmp);
	if (tl_layout_write(f->layout, &l, 1, NULL) < 0 ||
	    tl_build(f->layout, f->root, &f->s, &f->rd) < 0 || fs_cache_init(f->s) < 0)
		return -1;
	cm_buf_fini(&tar);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	idx_reader_free(f->rd);
	idx_store_free(f->s);
	tl_rm_rf(f->tmp);
	free(f->tmp);
	free(f->layout);
	free(f->root);
	free(f);
	return 0;
}

static int64_t q(struct idx_store *s, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	idx_store_lock(s);
	if (sqlite3_prepare_v2(idx_store_db(s), sql, -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	idx_store_unlock(s);
	return v;
}

static void test_deferred(void **state)
{
	struct fixture *f = *state;
	const char *idig = idx_reader_digest(f->rd);
	uint32_t n = idx_reader_chunk_count(f->rd);
	assert_true(n >= 2);
	assert_int_equal(fs_cache_add_index(f->s, idig), 0);
	assert_int_equal(fs_cache_add_index(f->s, idig), 0); /* idempotent */
	assert_int_equal(q(f->s, "SELECT COUNT(*) FROM fs_indexes WHERE refs=0"), 1);
	assert_int_equal(q(f->s, "SELECT COUNT(*) FROM fs_refs2"), 0);
	/* A daemon stopped before it recorded anything leaves the index unrecorded. */
	bool stop = true;
	assert_int_equal(fs_cache_record_index_ex(f->s, f->rd, &stop), -ECANCELED);
	assert_int_equal(q(f->s, "SELECT refs FROM fs_indexes"), 0);
	/* Whoever reads the references first completes them, from the index file. */
	assert_int_equal(fs_cache_complete_refs(f->s), 0);
	assert_int_equal(q(f->s, "SELECT refs FROM fs_indexes"), 1);
	int64_t rows = q(f->s, "SELECT COUNT(*) FROM fs_refs2");
	assert_true(rows >= 1 && rows <= n);
	assert_int_equal(q(f->s, "SELECT COUNT(DISTINCT digest) FROM fs_refs_v"), rows);
	/* Recorded: nothing more to do, and a record is a no-op. */
	assert_int_equal(fs_cache_complete_refs(f->s), 0);
	assert_int_equal(fs_cache_record_index(f->s, f->rd), 0);
	assert_int_equal(q(f->s, "SELECT COUNT(*) FROM fs_refs2"), rows);
	/* An index recorded as present whose file is gone is skipped, and stays unrecorded. */
	char other[80];
	snprintf(other, sizeof(other), "sha256:%064d", 0);
	assert_int_equal(fs_cache_add_index(f->s, other), 0); /* no such file: skipped */
	assert_int_equal(fs_cache_complete_refs(f->s), 0);
	assert_int_equal(q(f->s, "SELECT refs FROM fs_indexes WHERE index_digest LIKE "
				 "'sha256:0000%'"),
			 0);
}

/* Stores whose fs_indexes predates the refs column recorded every index whole: the column
 * is added, set for the indexes that have rows. */
static void test_flag_migration(void **state)
{
	struct fixture *f = *state;
	char *root = cm_strdupf("%s/old", f->tmp);
	struct idx_store *s;
	assert_int_equal(idx_store_open(root, &s), 0);
	idx_store_lock(s);
	assert_int_equal(
	    sqlite3_exec(idx_store_db(s),
			 "CREATE TABLE fs_indexes(id INTEGER PRIMARY KEY,"
			 " index_digest TEXT UNIQUE NOT NULL);"
			 "CREATE TABLE fs_refs2(idx INTEGER NOT NULL, digest BLOB NOT NULL,"
			 " csize INTEGER NOT NULL, PRIMARY KEY(idx, digest)) WITHOUT ROWID;"
			 "INSERT INTO fs_indexes VALUES(1, 'sha256:aa'), (2, 'sha256:bb');"
			 "INSERT INTO fs_refs2 VALUES(1, x'01', 10);",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	idx_store_unlock(s);
	assert_int_equal(fs_cache_init(s), 0);
	assert_int_equal(q(s, "SELECT refs FROM fs_indexes WHERE id=1"), 1);
	assert_int_equal(q(s, "SELECT refs FROM fs_indexes WHERE id=2"), 0);
	assert_int_equal(fs_cache_init(s), 0); /* idempotent */
	idx_store_free(s);
	free(root);
}

/* The no-database lookup of the sandbox verbs (ROOT/refs/ links written with each record). */
static void test_lookup_fast(void **state)
{
	struct fixture *f = *state;
	const char *idig = idx_reader_digest(f->rd);
	char mdig[80], got[72];
	snprintf(mdig, sizeof(mdig), "sha256:%s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(fs_image_lookup_fast(f->root, "example.com/app:v1", got), -ENOENT);
	assert_int_equal(idx_store_record_image(f->s, "example.com/app:v1", mdig, idig), 0);
	assert_int_equal(fs_image_lookup_fast(f->root, "example.com/app:v1", got), 0);
	assert_string_equal(got, idig);
	assert_int_equal(fs_image_lookup_fast(f->root, mdig, got), 0); /* by manifest digest */
	assert_string_equal(got, idig);
	assert_int_equal(fs_image_lookup_fast(f->root, idig, got), 0); /* an index digest */
	assert_string_equal(got, idig);
	assert_int_equal(fs_image_lookup_fast(f->root, "oci:/nowhere:x", got), -ENOENT);
	/* A link whose key is another reference (what a hash collision would look like) is
	 * not an answer. */
	char target[256];
	assert_int_equal(idx_store_record_image(f->s, "example.com/other:v1", mdig, idig), 0);
	_cleanup_free_ char *dir = cm_strdupf("%s/refs", f->root);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	int forged = 0;
	while ((de = readdir(d))) {
		_cleanup_free_ char *p = cm_strdupf("%s/%s", dir, de->d_name);
		ssize_t n = readlink(p, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = 0;
		if (strstr(target, " example.com/app:v1")) {
			snprintf(target, sizeof(target), "%s example.com/other:v1", idig);
			assert_int_equal(unlink(p), 0);
			assert_int_equal(symlink(target, p), 0);
			forged++;
		}
	}
	closedir(d);
	assert_int_equal(forged, 1);
	assert_int_equal(fs_image_lookup_fast(f->root, "example.com/app:v1", got), -ENOENT);
	/* The database still knows; a lookup through it puts the link back. */
	assert_int_equal(fs_image_lookup(f->s, "example.com/app:v1", got), 0);
	assert_int_equal(idx_store_link_index(f->s, "example.com/app:v1", got), 0);
	assert_int_equal(fs_image_lookup_fast(f->root, "example.com/app:v1", got), 0);
	/* An index whose file is gone is not found either way. */
	char gone[80];
	snprintf(gone, sizeof(gone), "sha256:%s", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	assert_int_equal(idx_store_record_image(f->s, "example.com/gone:v1", mdig, gone), 0);
	assert_int_equal(fs_image_lookup_fast(f->root, "example.com/gone:v1", got), -ENOENT);
}

/* REPO@DIGEST is found under another reference of the same repository, and only that one:
 * not a repository whose name merely starts the same, not another digest. */
static void test_lookup_by_digest(void **state)
{
	struct fixture *f = *state;
	const char *idig = idx_reader_digest(f->rd);
	char mdig[80], other[80], ref[160], got[72];
	snprintf(mdig, sizeof(mdig), "sha256:%064d", 1);
	snprintf(other, sizeof(other), "sha256:%064d", 2);
	assert_int_equal(idx_store_record_image(f->s, "example.com/app:v1", mdig, idig), 0);
	snprintf(ref, sizeof(ref), "example.com/app@%s", mdig);
	assert_int_equal(fs_image_lookup(f->s, ref, got), 0);
	assert_string_equal(got, idig);
	snprintf(ref, sizeof(ref), "example.com/app:v2@%s", mdig); /* the tag is not checked */
	assert_int_equal(fs_image_lookup(f->s, ref, got), 0);
	snprintf(ref, sizeof(ref), "example.com/ap@%s", mdig);
	assert_int_equal(fs_image_lookup(f->s, ref, got), -ENOENT);
	snprintf(ref, sizeof(ref), "example.com/app/sub@%s", mdig);
	assert_int_equal(fs_image_lookup(f->s, ref, got), -ENOENT);
	snprintf(ref, sizeof(ref), "example.com/app@%s", other);
	assert_int_equal(fs_image_lookup(f->s, ref, got), -ENOENT);
	assert_int_equal(fs_image_lookup(f->s, "example.com/app:v2", got), -ENOENT);
	_cleanup_free_ char *d = NULL;
	assert_int_equal(idx_store_find_index_in_repo(f->s, "example.com/ap", mdig, &d), -ENOENT);
	assert_int_equal(idx_store_find_index_in_repo(f->s, "example.com/app", mdig, &d), 0);
	assert_string_equal(d, idig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_deferred, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flag_migration, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lookup_fast, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lookup_by_digest, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
