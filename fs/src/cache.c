/*
 * Chunk cache bookkeeping in store.db (see fs/cache.h for the tables and the rules).
 * Every function holds the store's lock for its sqlite use; chunks are removed with
 * idx_store_remove_chunk_locked (the chunk file, or the range of a local pack).
 */
#include "fs/cache.h"
#include "fs/image.h"
#include "fs_int.h"

#include "indexer/index.h"
#include "indexer/store.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS fs_chunks("
    " digest BLOB PRIMARY KEY, csize INTEGER NOT NULL, last_use INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS fs_chunks_lru ON fs_chunks(last_use);"
    /* Which index references which chunk. Indexes by a small id: an index of 50,000 chunks
     * then records 40-byte rows instead of 110-byte ones (its digest repeated in both
     * B-trees), which made most of `isorun pull`'s time. fs_refs_v is the readable form. */
    /* refs: 1 once every chunk of the index is in fs_refs2 (fs_cache_record_index). A pull
     * only adds the row; the mount's daemon records the references in the background, and
     * whoever reads them (eviction, prune, stats) completes what is missing first. */
    "CREATE TABLE IF NOT EXISTS fs_indexes(id INTEGER PRIMARY KEY,"
    " index_digest TEXT UNIQUE NOT NULL, refs INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS fs_refs2("
    " idx INTEGER NOT NULL, digest BLOB NOT NULL, csize INTEGER NOT NULL,"
    " PRIMARY KEY(idx, digest)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS fs_refs2_digest ON fs_refs2(digest);"
    "CREATE VIEW IF NOT EXISTS fs_refs_v AS SELECT i.index_digest AS index_digest,"
    " r.digest AS digest, r.csize AS csize FROM fs_refs2 r JOIN fs_indexes i ON i.id=r.idx;"
    "CREATE TABLE IF NOT EXISTS fs_remotes("
    " index_digest TEXT PRIMARY KEY, repository TEXT NOT NULL, manifest_digest TEXT NOT NULL);";

/* Unix time in milliseconds: last_use is compared across processes. */
static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int db_err(sqlite3 *db, const char *what)
{
	log_error("store.db: %s: %s", what, sqlite3_errmsg(db));
	return -EIO;
}

static int exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_error("store.db: %s: %s", sql, msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

DEFINE_CLEANUP_FUNC(sqlite3_stmt, sqlite3_finalize)

/* End the transaction BEGIN started: COMMIT when `r` is 0, else ROLLBACK and keep `r`. */
static int end_txn(sqlite3 *db, int r)
{
	if (r == 0)
		return exec(db, "COMMIT");
	exec(db, "ROLLBACK");
	return r;
}

/* Stores of earlier versions keep refs in fs_refs(index_digest, digest, csize): move them. */
static const char migrate_refs[] =
    "BEGIN IMMEDIATE;"
    "INSERT OR IGNORE INTO fs_indexes(index_digest, refs)"
    " SELECT DISTINCT index_digest, 1 FROM fs_refs;"
    "INSERT OR IGNORE INTO fs_refs2 SELECT i.id, r.digest, r.csize FROM fs_refs r"
    " JOIN fs_indexes i ON i.index_digest=r.index_digest;"
    "DROP TABLE fs_refs;"
    "COMMIT;";

/* Stores whose fs_indexes predates its refs column recorded every index whole, at pull. */
static const char migrate_refs_flag[] =
    "BEGIN IMMEDIATE;"
    "ALTER TABLE fs_indexes ADD COLUMN refs INTEGER NOT NULL DEFAULT 0;"
    "UPDATE fs_indexes SET refs=1 WHERE id IN (SELECT DISTINCT idx FROM fs_refs2);"
    "COMMIT;";

int fs_cache_init(struct idx_store *s)
{
	sqlite3 *db = idx_store_db(s);
	idx_store_lock(s);
	int r = exec(db, schema);
	sqlite3_stmt *st = NULL;
	bool flag = false;
	if (r == 0 && sqlite3_prepare_v2(db, "SELECT refs FROM fs_indexes LIMIT 0", -1, &st,
					 NULL) == SQLITE_OK)
		flag = true;
	sqlite3_finalize(st);
	st = NULL;
	if (r == 0 && !flag && (r = exec(db, migrate_refs_flag)) < 0)
		exec(db, "ROLLBACK");
	bool old = false;
	if (r == 0 &&
	    sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name='fs_refs'",
			       -1, &st, NULL) == SQLITE_OK)
		old = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st); /* before the DROP: a live statement locks the schema */
	if (old && (r = exec(db, migrate_refs)) < 0)
		exec(db, "ROLLBACK");
	idx_store_unlock(s);
	return r;
}

/* A size under `key` of the config object `j`: *ret untouched when the key is missing.
 * -EPROTO for a malformed value (logged, naming the file `p`). `zero_ok`: 0 is a value. */
static int config_size(json_object *j, const char *p, const char *key, bool zero_ok,
		       uint64_t *ret)
{
	json_object *v;
	if (!json_object_object_get_ex(j, key, &v))
		return 0;
	uint64_t x = 0;
	bool ok = false;
	if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0) {
		x = (uint64_t)json_object_get_int64(v);
		ok = true;
	} else if (json_object_is_type(v, json_type_string))
		ok = cm_parse_size(json_object_get_string(v), &x) == 0;
	if (!ok || (!x && !zero_ok))
		return cm_log_ret(-EPROTO, "%s: %s must be a size (\"10G\") or bytes%s", p, key,
				  zero_ok ? "" : ", not 0");
	*ret = x;
	return 0;
}

int fs_cache_config(const char *root, uint64_t *max, uint64_t *min_free)
{
	if (max)
		*max = FS_CACHE_MAX_DEFAULT;
	if (min_free) { /* the default: a share of the store's filesystem */
		struct statvfs sv;
		*min_free = 0; /* no filesystem to measure: nothing kept free */
		if (statvfs(root, &sv) == 0) {
			uint64_t size = (uint64_t)sv.f_blocks * sv.f_frsize;
			*min_free = size / 100 * FS_CACHE_MIN_FREE_PCT;
			if (*min_free > FS_CACHE_MIN_FREE_MAX)
				*min_free = FS_CACHE_MIN_FREE_MAX;
		}
	}
	_cleanup_free_ char *p = cm_strdupf("%s/config.json", root);
	if (!p)
		return -ENOMEM;
	struct cm_buf b;
	cm_buf_init(&b, 1u << 20);
	int r = cm_read_file(AT_FDCWD, p, &b);
	if (r == -ENOENT) {
		cm_buf_fini(&b);
		return 0;
	}
	if (r < 0) {
		cm_buf_fini(&b);
		return cm_log_ret(r, "%s: %s", p, strerror(-r));
	}
	json_object *j = NULL;
	if (cm_buf_append(&b, "", 1) == 0)
		j = json_tokener_parse((const char *)b.data);
	cm_buf_fini(&b);
	if (!j || !json_object_is_type(j, json_type_object)) {
		json_object_put(j);
		return cm_log_ret(-EPROTO, "%s: not a JSON object", p);
	}
	r = max ? config_size(j, p, "cache_max", false, max) : 0;
	if (r == 0 && min_free)
		r = config_size(j, p, "cache_min_free", true, min_free);
	json_object_put(j);
	return r;
}

uint64_t fs_cache_evict_cap(const char *root, uint64_t bytes, uint64_t cache_max,
			    uint64_t min_free, uint64_t *ret_short)
{
	struct statvfs sv;
	uint64_t cap = cache_max ? cache_max : UINT64_MAX;
	*ret_short = 0;
	if (!min_free || statvfs(root, &sv) < 0)
		return cap;
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (avail >= min_free)
		return cap;
	*ret_short = min_free - avail;
	uint64_t room = bytes > *ret_short ? bytes - *ret_short : 0;
	return room < cap ? room : cap;
}

struct ref_row {
	uint8_t digest[32];
	uint32_t csize;
};

static int cmp_ref_row(const void *a, const void *b)
{
	return memcmp(((const struct ref_row *)a)->digest, ((const struct ref_row *)b)->digest, 32);
}

int fs_cache_add_index(struct idx_store *s, const char *index_digest)
{
	sqlite3 *db = idx_store_db(s);
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	int r = 0;
	idx_store_lock(s);
	if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO fs_indexes(index_digest) VALUES(?)", -1,
			       &st, NULL) != SQLITE_OK)
		r = db_err(db, "record index");
	else if (sqlite3_bind_text(st, 1, index_digest, -1, SQLITE_STATIC),
		 sqlite3_step(st) != SQLITE_DONE)
		r = db_err(db, "record index");
	idx_store_unlock(s);
	return r;
}

/* Rows per transaction of fs_cache_record_index: the store's lock is let go between two, so
 * a mount's bookkeeping is never held up for long by its own background recording. */
#define REFS_BATCH 1024

int fs_cache_record_index_ex(struct idx_store *s, const struct idx_reader *rd, const bool *stop)
{
	sqlite3 *db = idx_store_db(s);
	const char *idig = idx_reader_digest(rd);
	uint32_t n = idx_reader_chunk_count(rd);
	int r = fs_cache_add_index(s, idig);
	if (r < 0)
		return r;
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *q = NULL, *st = NULL, *done = NULL;
	sqlite3_int64 iid = 0;
	idx_store_lock(s);
	if (sqlite3_prepare_v2(db, "SELECT id, refs FROM fs_indexes WHERE index_digest=?", -1, &q,
			       NULL) != SQLITE_OK) {
		r = db_err(db, "record index");
		idx_store_unlock(s);
		return r;
	}
	sqlite3_bind_text(q, 1, idig, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_ROW) {
		r = db_err(db, "record index");
		idx_store_unlock(s);
		return r;
	}
	iid = sqlite3_column_int64(q, 0);
	bool recorded = sqlite3_column_int64(q, 1) != 0;
	sqlite3_reset(q); /* ends its read: the connection is shared with the mount's engine */
	idx_store_unlock(s);
	if (recorded)
		return 0; /* an index's chunk set never changes */
	/* Insert in digest order: both B-trees (the key and fs_refs2_digest) then grow at one
	 * end instead of at random pages, which for an index of 30,000 chunks turned most of
	 * `isorun pull` into page-cache spills of store.db. */
	_cleanup_free_ struct ref_row *rows = malloc((n ? n : 1) * sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	uint32_t nr = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct idx_chunk c;
		if (idx_reader_chunk(rd, i, &c) < 0)
			continue;
		memcpy(rows[nr].digest, c.digest, 32);
		rows[nr++].csize = c.csize;
	}
	qsort(rows, nr, sizeof(*rows), cmp_ref_row);
	idx_store_lock(s);
	if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO fs_refs2 VALUES(?,?,?)", -1, &st,
			       NULL) != SQLITE_OK)
		r = db_err(db, "insert refs");
	idx_store_unlock(s);
	for (uint32_t i = 0; i < nr && r == 0;) {
		if (stop && __atomic_load_n(stop, __ATOMIC_RELAXED))
			return -ECANCELED; /* the rest is recorded by whoever needs it */
		idx_store_lock(s);
		if ((r = exec(db, "BEGIN IMMEDIATE")) == 0) {
			uint32_t end = MIN(nr, i + REFS_BATCH);
			for (; i < end && r == 0; i++) {
				sqlite3_reset(st);
				sqlite3_bind_int64(st, 1, iid);
				sqlite3_bind_blob(st, 2, rows[i].digest, 32, SQLITE_STATIC);
				sqlite3_bind_int64(st, 3, rows[i].csize);
				if (sqlite3_step(st) != SQLITE_DONE)
					r = db_err(db, "insert ref");
			}
			if (r == 0 && i == nr) {
				if (sqlite3_prepare_v2(db, "UPDATE fs_indexes SET refs=1 WHERE id=?", -1,
						       &done, NULL) != SQLITE_OK)
					r = db_err(db, "record index");
				else if (sqlite3_bind_int64(done, 1, iid),
					 sqlite3_step(done) != SQLITE_DONE)
					r = db_err(db, "record index");
			}
			r = end_txn(db, r);
		}
		idx_store_unlock(s);
	}
	return r;
}

int fs_cache_record_index(struct idx_store *s, const struct idx_reader *rd)
{
	return fs_cache_record_index_ex(s, rd, NULL);
}

int fs_cache_complete_refs(struct idx_store *s)
{
	sqlite3 *db = idx_store_db(s);
	char **v = NULL;
	size_t n = 0;
	int r = 0;
	{
		sqlite3_stmt *st = NULL;
		idx_store_lock(s);
		if (sqlite3_prepare_v2(db, "SELECT index_digest FROM fs_indexes WHERE refs=0", -1,
				       &st, NULL) != SQLITE_OK)
			r = db_err(db, "pending refs");
		while (r == 0 && sqlite3_step(st) == SQLITE_ROW)
			r = fs_strv_push(&v, &n, strdup((const char *)sqlite3_column_text(st, 0)));
		sqlite3_finalize(st); /* under the lock: the connection is shared */
		idx_store_unlock(s);
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		_cleanup_free_ char *path = NULL;
		_cleanup_(idx_reader_freep) struct idx_reader *rd = NULL;
		if (!cm_digest_valid(v[i]) || idx_store_index_path(s, v[i], &path) < 0 ||
		    access(path, R_OK) < 0)
			continue; /* the index is gone: it references nothing any more */
		if ((r = idx_reader_open(path, &rd)) < 0) {
			log_warn("cache: index %s unreadable, its chunks count as unreferenced",
				 v[i]);
			r = 0;
			continue;
		}
		r = fs_cache_record_index(s, rd);
	}
	fs_strv_free(v, n);
	return r;
}

int fs_cache_set_remote(struct idx_store *s, const char *index_digest, const char *repository,
			const char *manifest_digest)
{
	sqlite3 *db = idx_store_db(s);
	idx_store_lock(s);
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	int r = 0;
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO fs_remotes VALUES(?,?,?)", -1, &st,
			       NULL) != SQLITE_OK) {
		r = db_err(db, "remote");
	} else {
		sqlite3_bind_text(st, 1, index_digest, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, repository, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, manifest_digest, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			r = db_err(db, "remote");
	}
	idx_store_unlock(s);
	return r;
}

int fs_cache_get_remote(struct idx_store *s, const char *index_digest, char **ret)
{
	sqlite3 *db = idx_store_db(s);
	idx_store_lock(s);
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	int r = -ENOENT;
	if (sqlite3_prepare_v2(db, "SELECT repository FROM fs_remotes WHERE index_digest=?", -1,
			       &st, NULL) != SQLITE_OK) {
		r = db_err(db, "remote");
	} else {
		sqlite3_bind_text(st, 1, index_digest, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			*ret = strdup((const char *)sqlite3_column_text(st, 0));
			r = *ret ? 0 : -ENOMEM;
		}
	}
	idx_store_unlock(s);
	return r;
}

int fs_cache_touch_batch(struct idx_store *s, const struct fs_cache_touch *v, size_t n)
{
	if (n == 0)
		return 0;
	sqlite3 *db = idx_store_db(s);
	int64_t now = now_ms();
	int r;
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *ins = NULL, *upd = NULL;
	idx_store_lock(s);
	if ((r = exec(db, "BEGIN IMMEDIATE")) < 0)
		goto out;
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO fs_chunks VALUES(?,?,?)", -1, &ins,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE fs_chunks SET last_use=? WHERE digest=?", -1, &upd,
			       NULL) != SQLITE_OK) {
		r = db_err(db, "touch");
		exec(db, "ROLLBACK");
		goto out;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		sqlite3_stmt *st = v[i].added ? ins : upd;
		sqlite3_reset(st);
		if (v[i].added) {
			sqlite3_bind_blob(st, 1, v[i].digest, 32, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, v[i].csize);
			sqlite3_bind_int64(st, 3, now);
		} else {
			sqlite3_bind_int64(st, 1, now);
			sqlite3_bind_blob(st, 2, v[i].digest, 32, SQLITE_STATIC);
		}
		if (sqlite3_step(st) != SQLITE_DONE)
			r = db_err(db, "touch");
	}
	r = end_txn(db, r);
out:
	idx_store_unlock(s);
	return r;
}

struct present {
	uint8_t d[32];
	uint64_t size;
	int64_t mtime_ms;
};

/* Every well-named chunk file under ROOT/chunks/. */
static int scan_chunks(struct idx_store *s, struct present **ret, size_t *ret_n)
{
	_cleanup_free_ struct present *v = NULL;
	size_t n = 0, alloc = 0;
	DIR *top = cm_opendirat(idx_store_root_fd(s), "chunks", 0);
	if (!top) {
		*ret = NULL;
		*ret_n = 0;
		return errno == ENOENT ? 0 : -errno;
	}
	struct dirent *de;
	while ((de = readdir(top))) {
		uint8_t dir_byte;
		if (strlen(de->d_name) != 2 || cm_hex_parse(de->d_name, 1, &dir_byte) < 0)
			continue;
		DIR *sub = cm_opendirat(dirfd(top), de->d_name, 0);
		if (!sub)
			continue;
		struct dirent *fe;
		while ((fe = readdir(sub))) {
			if (strlen(fe->d_name) != 64)
				continue;
			struct present p;
			bool ok = cm_hex_parse(fe->d_name, 32, p.d) == 0;
			struct stat st;
			if (!ok || fstatat(dirfd(sub), fe->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			p.size = (uint64_t)st.st_size;
			p.mtime_ms =
			    (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
			if (n == alloc) {
				alloc = alloc ? alloc * 2 : 1024;
				struct present *nv = realloc(v, alloc * sizeof(*v));
				if (!nv) {
					closedir(sub);
					closedir(top);
					return -ENOMEM;
				}
				v = nv;
			}
			v[n++] = p;
		}
		closedir(sub);
	}
	closedir(top);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

static int size_locked(sqlite3 *db, uint64_t *ret_bytes, uint64_t *ret_chunks)
{
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT COALESCE(SUM(csize),0), COUNT(*) FROM fs_chunks", -1,
			       &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		return db_err(db, "size");
	if (ret_bytes)
		*ret_bytes = (uint64_t)sqlite3_column_int64(st, 0);
	if (ret_chunks)
		*ret_chunks = (uint64_t)sqlite3_column_int64(st, 1);
	return 0;
}

int fs_cache_size(struct idx_store *s, uint64_t *ret_bytes, uint64_t *ret_chunks)
{
	idx_store_lock(s);
	int r = size_locked(idx_store_db(s), ret_bytes, ret_chunks);
	idx_store_unlock(s);
	return r;
}

int fs_cache_reconcile(struct idx_store *s, uint64_t *ret_bytes, uint64_t *ret_chunks)
{
	int64_t t0 = now_ms();
	_cleanup_free_ struct present *v = NULL;
	size_t n = 0;
	int r = idx_store_packs_gc(s);
	if (r < 0)
		log_error("cache: collecting local packs: %s", strerror(-r));
	r = scan_chunks(s, &v, &n);
	if (r < 0)
		return cm_log_ret(r, "cache: scanning chunks: %s", strerror(-r));
	sqlite3 *db = idx_store_db(s);
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	idx_store_lock(s);
	if ((r = exec(db, "CREATE TEMP TABLE IF NOT EXISTS fs_present(digest BLOB PRIMARY KEY, "
			  "csize INTEGER, mtime INTEGER) WITHOUT ROWID;"
			  "DELETE FROM fs_present; BEGIN IMMEDIATE")) < 0)
		goto out;
	if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO fs_present VALUES(?,?,?)", -1, &st,
			       NULL) != SQLITE_OK) {
		r = db_err(db, "reconcile");
		exec(db, "ROLLBACK");
		goto out;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		sqlite3_reset(st);
		sqlite3_bind_blob(st, 1, v[i].d, 32, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)v[i].size);
		sqlite3_bind_int64(st, 3, v[i].mtime_ms);
		if (sqlite3_step(st) != SQLITE_DONE)
			r = db_err(db, "reconcile");
	}
	if (r == 0) {
		/* Rows newer than the scan may describe files created after it: keep them. */
		char sql[512];
		snprintf(
		    sql, sizeof(sql),
		    "INSERT OR IGNORE INTO fs_present SELECT digest, len, 0 FROM local_chunks;"
		    "INSERT OR IGNORE INTO fs_chunks SELECT digest, csize, mtime FROM fs_present;"
		    "DELETE FROM fs_chunks WHERE last_use < %lld AND digest NOT IN "
		    "(SELECT digest FROM fs_present);"
		    "COMMIT; DELETE FROM fs_present;",
		    (long long)t0);
		r = exec(db, sql);
	}
	if (r < 0)
		exec(db, "ROLLBACK");
	if (r == 0)
		r = size_locked(db, ret_bytes, ret_chunks);
out:
	idx_store_unlock(s);
	return r;
}

void fs_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int fs_strv_push(char ***v, size_t *n, char *s)
{
	char **nv = s ? realloc(*v, (*n + 1) * sizeof(**v)) : NULL;
	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	*v = nv;
	nv[(*n)++] = s;
	return 0;
}

/* Fill the temp table fs_mounted with the live mounts, and fs_pinned with the live mounts
 * that have no remote. Store lock held. */
static int mark_mounted(struct idx_store *s)
{
	sqlite3 *db = idx_store_db(s);
	char **live = NULL;
	size_t nlive = 0;
	int r = exec(db, "CREATE TEMP TABLE IF NOT EXISTS fs_mounted(d TEXT PRIMARY KEY);"
			 "CREATE TEMP TABLE IF NOT EXISTS fs_pinned(d TEXT PRIMARY KEY);"
			 "DELETE FROM fs_mounted; DELETE FROM fs_pinned;");
	if (r < 0)
		return r;
	idx_store_unlock(s); /* talking to daemons must not hold the lock they may need */
	r = fs_mounts_live(idx_store_root(s), &live, &nlive);
	idx_store_lock(s);
	if (r < 0)
		return r;
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO fs_mounted VALUES(?)", -1, &st, NULL) !=
	    SQLITE_OK) {
		fs_strv_free(live, nlive);
		return db_err(db, "mounted");
	}
	for (size_t i = 0; i < nlive; i++) {
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, live[i], -1, SQLITE_STATIC);
		sqlite3_step(st);
	}
	fs_strv_free(live, nlive);
	return exec(db, "INSERT OR IGNORE INTO fs_pinned SELECT d FROM fs_mounted WHERE d NOT IN "
			"(SELECT index_digest FROM fs_remotes)");
}

/* Remove chunk files named by the rows of `sel` until `*bytes <= max`. Lock held. */
static int evict_rows(struct idx_store *s, const char *sel, uint64_t max, uint64_t *bytes,
		      struct fs_cache_gc_result *res)
{
	sqlite3 *db = idx_store_db(s);
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL, *del = NULL;
	if (sqlite3_prepare_v2(db, sel, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "DELETE FROM fs_chunks WHERE digest=?", -1, &del, NULL) !=
		SQLITE_OK)
		return db_err(db, "evict");
	/* Collect first: deleting rows while stepping a SELECT over the same table is
	 * undefined in sqlite. */
	struct victim {
		uint8_t d[32];
		uint64_t size;
	};
	_cleanup_free_ struct victim *v = NULL;
	size_t n = 0, alloc = 0;
	uint64_t planned = *bytes;
	while (planned > max && sqlite3_step(st) == SQLITE_ROW) {
		if (sqlite3_column_bytes(st, 0) != 32)
			continue;
		if (n == alloc) {
			alloc = alloc ? alloc * 2 : 256;
			struct victim *nv = realloc(v, alloc * sizeof(*v));
			if (!nv)
				return -ENOMEM;
			v = nv;
		}
		memcpy(v[n].d, sqlite3_column_blob(st, 0), 32);
		v[n].size = (uint64_t)sqlite3_column_int64(st, 1);
		planned -= MIN(planned, v[n].size);
		n++;
	}
	sqlite3_reset(st);
	if (n == 0)
		return 0;
	int r = exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (idx_store_remove_chunk_locked(s, v[i].d) < 0)
			continue;
		sqlite3_reset(del);
		sqlite3_bind_blob(del, 1, v[i].d, 32, SQLITE_STATIC);
		sqlite3_step(del);
		*bytes -= MIN(*bytes, v[i].size);
		res->evicted_chunks++;
		res->evicted_bytes += v[i].size;
	}
	return exec(db, "COMMIT");
}

int fs_cache_evict(struct idx_store *s, uint64_t max, bool reconcile,
		   struct fs_cache_gc_result *ret)
{
	struct fs_cache_gc_result res = {0};
	int r;
	if ((r = fs_cache_complete_refs(s)) < 0)
		return r;
	if (reconcile && (r = fs_cache_reconcile(s, NULL, NULL)) < 0)
		return r;
	uint64_t bytes = 0, chunks = 0;
	idx_store_lock(s);
	if ((r = size_locked(idx_store_db(s), &bytes, &chunks)) < 0)
		goto out;
	if (bytes > max && (r = mark_mounted(s)) == 0) {
		/* Unmounted images first, then mounted ones that can fetch again. */
		r = evict_rows(s,
			       "SELECT digest, csize FROM fs_chunks WHERE digest NOT IN (SELECT "
			       "r.digest FROM fs_refs_v r JOIN fs_mounted m ON r.index_digest=m.d) "
			       "ORDER BY last_use",
			       max, &bytes, &res);
		if (r == 0 && bytes > max)
			r = evict_rows(s,
				       "SELECT digest, csize FROM fs_chunks WHERE digest NOT IN "
				       "(SELECT r.digest FROM fs_refs_v r JOIN fs_pinned p ON "
				       "r.index_digest=p.d) ORDER BY last_use",
				       max, &bytes, &res);
	}
	if (r == 0)
		r = size_locked(idx_store_db(s), &res.bytes, &res.chunks);
	if (r == 0 && res.bytes > max)
		r = -ENOSPC;
out:
	idx_store_unlock(s);
	/* Local packs left without chunks go now, not at the next gc. */
	if (res.evicted_chunks && idx_store_packs_gc(s) < 0)
		log_warn("cache: collecting local packs after the eviction failed");
	if (res.evicted_chunks)
		log_info("cache: evicted %llu chunks (%llu bytes)",
			 (unsigned long long)res.evicted_chunks,
			 (unsigned long long)res.evicted_bytes);
	if (ret)
		*ret = res;
	return r;
}

int fs_cache_prune_image(struct idx_store *s, const char *ref, struct fs_cache_gc_result *ret)
{
	char idig[72];
	int r = fs_image_lookup(s, ref, idig);
	if (r < 0)
		return cm_log_ret(r, "cache prune: %s is not in the store", ref);
	char **live = NULL;
	size_t nlive = 0;
	if ((r = fs_mounts_live(idx_store_root(s), &live, &nlive)) < 0)
		return r;
	bool busy = false;
	for (size_t i = 0; i < nlive; i++)
		busy |= strcmp(live[i], idig) == 0;
	fs_strv_free(live, nlive);
	if (busy)
		return cm_log_ret(-EBUSY, "cache prune: %s is mounted", ref);
	if ((r = fs_cache_complete_refs(s)) < 0 || (r = fs_cache_reconcile(s, NULL, NULL)) < 0)
		return r;
	struct fs_cache_gc_result res = {0};
	uint64_t bytes = UINT64_MAX;
	idx_store_lock(s);
	sqlite3 *db = idx_store_db(s);
	/* idig is a validated "sha256:<hex>": nothing to quote. */
	char sel[512];
	snprintf(sel, sizeof(sel),
		 "SELECT c.digest, c.csize FROM fs_refs_v r JOIN fs_chunks c ON c.digest=r.digest "
		 "WHERE r.index_digest='%s' AND NOT EXISTS (SELECT 1 FROM fs_refs_v o WHERE "
		 "o.digest=r.digest AND o.index_digest<>'%s')",
		 idig, idig);
	r = evict_rows(s, sel, 0, &bytes, &res);
	if (r == 0)
		r = size_locked(db, &res.bytes, &res.chunks);
	idx_store_unlock(s);
	if (r == 0 && res.evicted_chunks)
		r = idx_store_packs_gc(s);
	if (ret)
		*ret = res;
	return r;
}

int fs_cache_stats_get(struct idx_store *s, struct fs_cache_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	int r = fs_cache_complete_refs(s);
	if (r < 0 || (r = fs_cache_reconcile(s, &ret->bytes, &ret->chunks)) < 0)
		return r;
	if ((r = fs_cache_config(idx_store_root(s), &ret->max_bytes, NULL)) < 0)
		return r;
	struct idx_store_image *imgs = NULL;
	size_t n = 0;
	if ((r = idx_store_list_images(s, &imgs, &n)) < 0)
		return r;
	char **live = NULL;
	size_t nlive = 0;
	if ((r = fs_mounts_live(idx_store_root(s), &live, &nlive)) < 0) {
		idx_store_images_free(imgs, n);
		return r;
	}
	sqlite3 *db = idx_store_db(s);
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	ret->images = calloc(n ? n : 1, sizeof(*ret->images));
	if (!ret->images) {
		r = -ENOMEM;
		goto out;
	}
	idx_store_lock(s);
	if (sqlite3_prepare_v2(db,
			       "SELECT COUNT(*), COALESCE(SUM(r.csize),0), COUNT(c.digest), "
			       "COALESCE(SUM(c.csize),0) FROM fs_refs_v r LEFT JOIN fs_chunks c ON "
			       "c.digest=r.digest WHERE r.index_digest=?",
			       -1, &st, NULL) != SQLITE_OK) {
		r = db_err(db, "stats");
		idx_store_unlock(s);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct fs_cache_image *im = &ret->images[ret->n_images++];
		im->ref = TAKE_PTR(imgs[i].ref);
		snprintf(im->index_digest, sizeof(im->index_digest), "%s", imgs[i].index_digest);
		snprintf(im->manifest_digest, sizeof(im->manifest_digest), "%s",
			 imgs[i].manifest_digest);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, im->index_digest, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			im->chunks = (uint64_t)sqlite3_column_int64(st, 0);
			im->bytes = (uint64_t)sqlite3_column_int64(st, 1);
			im->resident_chunks = (uint64_t)sqlite3_column_int64(st, 2);
			im->resident_bytes = (uint64_t)sqlite3_column_int64(st, 3);
		}
		for (size_t j = 0; j < nlive; j++)
			im->mounted |= strcmp(live[j], im->index_digest) == 0;
	}
	idx_store_unlock(s);
	for (size_t i = 0; i < ret->n_images; i++) {
		char *repo = NULL;
		if (fs_cache_get_remote(s, ret->images[i].index_digest, &repo) == 0)
			ret->images[i].repository = repo;
	}
out:
	fs_strv_free(live, nlive);
	idx_store_images_free(imgs, n);
	if (r < 0)
		fs_cache_stats_fini(ret);
	return r;
}

void fs_cache_stats_fini(struct fs_cache_stats *st)
{
	for (size_t i = 0; i < st->n_images; i++) {
		free(st->images[i].ref);
		free(st->images[i].repository);
	}
	free(st->images);
	memset(st, 0, sizeof(*st));
}
