/* Local packs of the store (indexer/store.h) against a real store in a temporary directory:
 * appends visible to other handles only after a commit, reads through the sum check, rotation,
 * removal by hole punching, garbage collection of what no row describes and of empty packs,
 * damaged bytes read as absent, chunks over eight raw blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "indexer/store.h"

#include "common/digest.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N 6

struct fixture {
	char root[64];
	struct idx_store *s, *other; /* two handles: another process's view */
	uint8_t *data[N];
	uint32_t len[N];
	uint8_t d[N][32];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/isorun-packs-unit.XXXXXX");
	if (!mkdtemp(f->root) || idx_store_open(f->root, &f->s) < 0 ||
	    idx_store_open(f->root, &f->other) < 0)
		return -1;
	for (int i = 0; i < N; i++) {
		/* The last one is over eight 128 KiB blocks. */
		f->len[i] = i == N - 1 ? (1u << 20) + 12345 : 3000u * (uint32_t)(i + 1);
		f->data[i] = malloc(f->len[i]);
		if (!f->data[i])
			return -1;
		for (uint32_t k = 0; k < f->len[i]; k++)
			f->data[i][k] = (uint8_t)(k * 131 + (uint32_t)i * 17 + k / 251);
		cm_sha256(f->data[i], f->len[i], f->d[i]);
	}
	*state = f;
	return 0;
}

static int rm_tree(const char *p)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p);
	return system(cmd);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	idx_store_free(f->s);
	idx_store_free(f->other);
	for (int i = 0; i < N; i++)
		free(f->data[i]);
	rm_tree(f->root);
	free(f);
	return 0;
}

static int count_packs(struct fixture *f)
{
	char p[96];
	snprintf(p, sizeof(p), "%s/packs", f->root);
	DIR *d = opendir(p);
	int n = 0;
	for (struct dirent *de; d && (de = readdir(d));)
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void put(struct fixture *f, struct idx_store_writer *w, int i, struct idx_store_loc *l)
{
	assert_int_equal(idx_store_writer_put(w, f->d[i], f->data[i], f->len[i], l), 0);
	assert_int_not_equal(l->pack, 0);
	assert_int_equal(l->len, idx_store_raw_frame_size(f->len[i]));
}

/* Read chunk i through the other handle: its location, then its bytes. */
static int read_other(struct fixture *f, int i)
{
	struct idx_store_loc l;
	assert_int_equal(idx_store_locate(f->other, f->d[i], 1, &l), 0);
	if (!l.pack)
		return -ENOENT;
	uint8_t *buf = malloc(f->len[i]);
	assert_non_null(buf);
	int r = idx_store_read_loc(f->other, &l, buf, f->len[i]);
	if (r == 0)
		assert_memory_equal(buf, f->data[i], f->len[i]);
	free(buf);
	return r;
}

static void test_put_commit_read(void **state)
{
	struct fixture *f = *state;
	struct idx_store_writer *w;
	assert_int_equal(idx_store_writer_new(f->s, &w), 0);
	struct idx_store_loc l[N];
	for (int i = 0; i < N; i++)
		put(f, w, i, &l[i]);
	/* Written, readable by the writer's process through the location it got... */
	uint8_t *buf = malloc(f->len[N - 1]);
	assert_non_null(buf);
	for (int i = 0; i < N; i++) {
		assert_int_equal(idx_store_read_loc(f->s, &l[i], buf, f->len[i]), 0);
		assert_memory_equal(buf, f->data[i], f->len[i]);
	}
	/* ...but not recorded for others until the commit. */
	assert_int_equal(read_other(f, 0), -ENOENT);
	assert_false(idx_store_has_chunk(f->other, f->d[0]));
	assert_int_equal(idx_store_writer_commit(w), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(read_other(f, i), 0);
		assert_true(idx_store_has_chunk(f->other, f->d[i]));
		/* The generic reader decompresses the raw frame and checks the SHA-256. */
		assert_int_equal(idx_store_read_chunk(f->other, f->d[i], buf, f->len[i]), 0);
		assert_memory_equal(buf, f->data[i], f->len[i]);
	}
	/* One pack for all of them, a frame after the other. */
	assert_int_equal(count_packs(f), 1);
	for (int i = 1; i < N; i++) {
		assert_int_equal(l[i].pack, l[0].pack);
		assert_int_equal(l[i].off, l[i - 1].off + l[i - 1].len);
	}
	/* A locked pack is not collected. */
	assert_int_equal(idx_store_packs_gc(f->other), 0);
	assert_int_equal(read_other(f, 2), 0);
	idx_store_writer_free(w);
	free(buf);
}

static void test_rotation(void **state)
{
	struct fixture *f = *state;
	struct idx_store_writer *w;
	assert_int_equal(idx_store_writer_new(f->s, &w), 0);
	idx_store_writer_set_pack_max(w, 8000);
	struct idx_store_loc l[3];
	for (int i = 0; i < 3; i++)
		put(f, w, i, &l[i]);
	/* 3000 + 6000 > 8000: the second chunk starts a new pack; 6000 + 9000 too. */
	assert_int_not_equal(l[1].pack, l[0].pack);
	assert_int_not_equal(l[2].pack, l[1].pack);
	assert_int_equal(l[1].off, 0);
	assert_int_equal(count_packs(f), 3);
	/* Full packs stay locked until their rows are in: gc leaves them alone. */
	assert_int_equal(idx_store_packs_gc(f->other), 0);
	assert_int_equal(count_packs(f), 3);
	assert_int_equal(idx_store_writer_commit(w), 0);
	idx_store_writer_free(w);
	for (int i = 0; i < 3; i++)
		assert_int_equal(read_other(f, i), 0);
}

static bool all_zero(const char *path, uint64_t off, uint64_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	uint8_t *b = malloc(len);
	assert_non_null(b);
	assert_int_equal(pread(fd, b, len, (off_t)off), (ssize_t)len);
	close(fd);
	bool z = true;
	for (uint64_t i = 0; i < len && z; i++)
		z = b[i] == 0;
	free(b);
	return z;
}

static void test_remove_and_gc(void **state)
{
	struct fixture *f = *state;
	struct idx_store_writer *w;
	assert_int_equal(idx_store_writer_new(f->s, &w), 0);
	struct idx_store_loc l[3];
	for (int i = 0; i < 3; i++)
		put(f, w, i, &l[i]);
	assert_int_equal(idx_store_writer_commit(w), 0);
	/* A writer killed before its commit: chunk 3's bytes are in the pack, no row. */
	struct idx_store_loc orphan;
	put(f, w, 3, &orphan);
	idx_store_writer_set_pack_max(w, 1); /* the next put rotates */
	struct idx_store_loc next;
	put(f, w, 4, &next);
	assert_int_not_equal(next.pack, l[0].pack);
	/* Drop the pending row of chunk 3 as a crash would, by committing and deleting it. */
	assert_int_equal(idx_store_writer_commit(w), 0);
	sqlite3 *db = idx_store_db(f->other);
	idx_store_lock(f->other);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "DELETE FROM local_chunks WHERE digest=?", -1, &st,
					    NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, f->d[3], 32, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	idx_store_unlock(f->other);

	/* Removing chunk 1 punches its frame out: zeros, and absent for readers. */
	idx_store_lock(f->other);
	assert_int_equal(idx_store_remove_chunk_locked(f->other, f->d[1]), 0);
	idx_store_unlock(f->other);
	char pack[128];
	snprintf(pack, sizeof(pack), "%s/packs/%016x", f->root, l[0].pack);
	assert_true(all_zero(pack, l[1].off, l[1].len));
	assert_int_equal(read_other(f, 1), -ENOENT);
	uint8_t *buf = malloc(f->len[1]);
	assert_non_null(buf);
	assert_int_equal(idx_store_read_loc(f->s, &l[1], buf, f->len[1]), -ENOENT);
	free(buf);
	assert_false(idx_store_has_chunk(f->other, f->d[1]));

	/* The first pack is sealed (its writer moved on and committed): gc punches out the
	 * orphan, keeps chunks 0 and 2. */
	assert_false(all_zero(pack, orphan.off, orphan.len));
	assert_int_equal(idx_store_packs_gc(f->other), 0);
	assert_true(all_zero(pack, orphan.off, orphan.len));
	assert_int_equal(read_other(f, 0), 0);
	assert_int_equal(read_other(f, 2), 0);
	assert_int_equal(read_other(f, 4), 0);

	/* Without chunks, the pack goes. */
	idx_store_lock(f->other);
	assert_int_equal(idx_store_remove_chunk_locked(f->other, f->d[0]), 0);
	assert_int_equal(idx_store_remove_chunk_locked(f->other, f->d[2]), 0);
	idx_store_unlock(f->other);
	assert_int_equal(count_packs(f), 2);
	assert_int_equal(idx_store_packs_gc(f->other), 0);
	assert_int_equal(count_packs(f), 1);
	assert_true(access(pack, F_OK) < 0 && errno == ENOENT);
	assert_int_equal(read_other(f, 4), 0);
	idx_store_writer_free(w);
	/* A pack file that disappeared: its rows are forgotten. */
	snprintf(pack, sizeof(pack), "%s/packs/%016x", f->root, next.pack);
	assert_int_equal(unlink(pack), 0);
	assert_true(idx_store_has_chunk(f->other, f->d[4]));
	assert_int_equal(idx_store_packs_gc(f->other), 0);
	assert_false(idx_store_has_chunk(f->other, f->d[4]));
}

static void test_damage(void **state)
{
	struct fixture *f = *state;
	struct idx_store_writer *w;
	assert_int_equal(idx_store_writer_new(f->s, &w), 0);
	struct idx_store_loc l[2];
	put(f, w, 0, &l[0]);
	put(f, w, 1, &l[1]);
	idx_store_writer_free(w); /* commits */
	char pack[128];
	snprintf(pack, sizeof(pack), "%s/packs/%016x", f->root, l[0].pack);
	int fd = open(pack, O_RDWR);
	assert_true(fd >= 0);
	/* A flipped data byte: the frame's shape holds, its sum does not. */
	uint8_t x = 0x5a;
	assert_int_equal(pwrite(fd, &x, 1, (off_t)(l[0].off + l[0].len - 1)), 1);
	/* The next frame cut short (a crash lost its tail). */
	assert_int_equal(ftruncate(fd, (off_t)(l[1].off + l[1].len - 1)), 0);
	close(fd);
	uint8_t *buf = malloc(f->len[1]);
	assert_non_null(buf);
	assert_int_equal(idx_store_read_loc(f->other, &l[0], buf, f->len[0]), -ENOENT);
	assert_int_equal(idx_store_read_loc(f->other, &l[1], buf, f->len[1]), -ENOENT);
	assert_int_not_equal(idx_store_read_chunk(f->other, f->d[0], buf, f->len[0]), 0);
	/* Forgetting the damaged location drops its row, only while it still says that. */
	struct idx_store_loc stale = l[1];
	stale.off += 1;
	assert_int_equal(idx_store_forget_loc(f->other, f->d[1], &stale), 0);
	assert_true(idx_store_has_chunk(f->other, f->d[1]));
	assert_int_equal(idx_store_forget_loc(f->other, f->d[1], &l[1]), 0);
	assert_false(idx_store_has_chunk(f->other, f->d[1]));
	free(buf);
}

/* chunks/XX are made on first use; idx_store_chunk_dirs names the ones holding a file. */
static void test_chunk_dirs(void **state)
{
	struct fixture *f = *state;
	uint8_t mask[32], zero[32] = {0};
	assert_int_equal(idx_store_chunk_dirs(f->s, mask), 0);
	assert_memory_equal(mask, zero, 32); /* a new store: no chunks/XX at all */
	char rel[80];
	idx_store_chunk_relpath(f->d[0], rel);
	int fd = openat(idx_store_root_fd(f->s), "tmp/chunk", O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(idx_store_rename_into(f->s, idx_store_root_fd(f->s), "tmp/chunk", rel), 0);
	/* an empty chunks/XX beside it does not count */
	uint8_t other = (uint8_t)(f->d[0][0] ^ 1);
	char empty[16];
	snprintf(empty, sizeof(empty), "chunks/%02x", other);
	assert_int_equal(mkdirat(idx_store_root_fd(f->s), empty, 0755), 0);
	assert_int_equal(idx_store_chunk_dirs(f->other, mask), 0);
	for (int i = 0; i < 256; i++)
		assert_int_equal(!!(mask[i / 8] & (1u << (i % 8))), i == f->d[0][0]);
	struct stat st;
	assert_int_equal(fstatat(idx_store_root_fd(f->s), rel, &st, 0), 0);
}

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* Many digests at once (the mount's start): stored and absent ones, in no order, repeated,
 * neighbours in the table and ones far apart (the merge steps over short runs of rows and
 * seeks past long ones), all answered as one lookup each would be. */
static void test_locate_many(void **state)
{
	struct fixture *f = *state;
	enum { STORED = 300, ABSENT = 40 };
	struct idx_store_writer *w;
	assert_int_equal(idx_store_writer_new(f->s, &w), 0);
	static uint8_t dig[STORED + ABSENT][32], sorted[STORED][32];
	for (uint32_t i = 0; i < STORED + ABSENT; i++) {
		uint8_t data[16] = {0};
		memcpy(data, &i, sizeof(i));
		cm_sha256(data, sizeof(data), dig[i]);
		struct idx_store_loc l;
		if (i < STORED)
			assert_int_equal(idx_store_writer_put(w, dig[i], data, sizeof(data), &l),
					 0);
	}
	assert_int_equal(idx_store_writer_commit(w), 0);
	idx_store_writer_free(w);
	memcpy(sorted, dig, sizeof(sorted));
	qsort(sorted, STORED, 32, cmp_digest);
	/* Table ranks 0-2 (adjacent), 10 (9 rows over), 60 and 61 (a run past the merge's
	 * steps), the last; the absent ones; ranks 10 and 60 again. Asked in reverse. */
	static const int ranks[] = {0, 1, 2, 10, 60, 61, STORED - 1, -1, 10, 60};
	enum { ASKED = sizeof(ranks) / sizeof(ranks[0]) - 1 + ABSENT };
	uint8_t ask[ASKED][32];
	bool stored[ASKED];
	size_t k = 0;
	for (size_t j = 0; j < sizeof(ranks) / sizeof(ranks[0]); j++) {
		if (ranks[j] < 0) {
			for (int a = 0; a < ABSENT; a++, k++) {
				memcpy(ask[ASKED - 1 - k], dig[STORED + a], 32);
				stored[ASKED - 1 - k] = false;
			}
			continue;
		}
		memcpy(ask[ASKED - 1 - k], sorted[ranks[j]], 32);
		stored[ASKED - 1 - k] = true;
		k++;
	}
	assert_int_equal(k, ASKED);
	struct idx_store_loc got[ASKED];
	assert_int_equal(idx_store_locate(f->other, &ask[0][0], ASKED, got), 0);
	for (k = 0; k < ASKED; k++) {
		struct idx_store_loc one;
		assert_int_equal(idx_store_locate(f->other, ask[k], 1, &one), 0);
		assert_int_equal(got[k].pack != 0, stored[k]);
		assert_int_equal(one.pack != 0, stored[k]);
		assert_int_equal(got[k].pack, one.pack);
		assert_int_equal(got[k].off, one.off);
		assert_int_equal(got[k].len, one.len);
		assert_true(got[k].sum == one.sum);
	}
	/* A store with no packs at all: everything absent. */
	struct idx_store *empty;
	char root2[96];
	snprintf(root2, sizeof(root2), "%s/empty", f->root);
	assert_int_equal(idx_store_open(root2, &empty), 0);
	memset(got, 0xff, sizeof(got));
	assert_int_equal(idx_store_locate(empty, &ask[0][0], ASKED, got), 0);
	for (k = 0; k < ASKED; k++)
		assert_int_equal(got[k].pack, 0);
	idx_store_free(empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_chunk_dirs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_put_commit_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remove_and_gc, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_locate_many, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
