/*
 * Local packs of the store (indexer/store.h): what mounts fetch, appended as raw frames to one
 * file per writer instead of one file per chunk.
 *
 * A writer creates its pack in ROOT/tmp, takes an exclusive flock on it and only then renames
 * it into ROOT/packs/, so garbage collection (which needs that lock) never sees a pack being
 * written. Chunk bytes are written before their local_chunks rows are committed; a reader
 * checks the XXH3-64 of the data it read against the row, so a range punched out by an
 * eviction (zeros) or lost by a crash is absent, not wrong.
 */
#include "indexer/store.h"
#include "store_int.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

DEFINE_CLEANUP_FUNC(sqlite3_stmt, sqlite3_finalize)

static void pack_relpath(uint32_t id, char out[32])
{
	snprintf(out, 32, "packs/%016" PRIx32, id);
}

/* ---- open packs ------------------------------------------------------------------------ */

/* An fd of pack `id`, cached for the store's life: read-write when the process may (to
 * punch out evicted chunks), else read-only. fd_lock held. */
static int pack_fd_locked(struct idx_store *s, uint32_t id, bool *writable)
{
	for (size_t i = 0; i < s->nfds; i++)
		if (s->fds[i].id == id) {
			if (writable)
				*writable = s->fds[i].writable;
			return s->fds[i].fd;
		}
	char p[32];
	pack_relpath(id, p);
	bool w = true;
	int fd = openat(s->root_fd, p, O_RDWR | O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM)) {
		w = false;
		fd = openat(s->root_fd, p, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	if (s->nfds == s->fds_alloc) {
		size_t na = s->fds_alloc ? s->fds_alloc * 2 : 16;
		struct pack_fd *nv = realloc(s->fds, na * sizeof(*nv));
		if (!nv) {
			close(fd);
			return -ENOMEM;
		}
		s->fds = nv;
		s->fds_alloc = na;
	}
	s->fds[s->nfds++] = (struct pack_fd){.id = id, .fd = fd, .writable = w};
	if (writable)
		*writable = w;
	return fd;
}

int idx_store_pack_fd(struct idx_store *s, uint32_t pack)
{
	pthread_mutex_lock(&s->fd_lock);
	int fd = pack_fd_locked(s, pack, NULL);
	pthread_mutex_unlock(&s->fd_lock);
	return fd;
}

/* Forget the cached fd of a pack that was deleted. */
static void pack_fd_drop(struct idx_store *s, uint32_t id)
{
	pthread_mutex_lock(&s->fd_lock);
	for (size_t i = 0; i < s->nfds; i++)
		if (s->fds[i].id == id) {
			close(s->fds[i].fd);
			s->fds[i] = s->fds[--s->nfds];
			break;
		}
	pthread_mutex_unlock(&s->fd_lock);
}

void store_packs_fini(struct idx_store *s)
{
	for (size_t i = 0; i < s->nfds; i++)
		close(s->fds[i].fd);
	free(s->fds);
	s->fds = NULL;
	s->nfds = s->fds_alloc = 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

/* A digest's position in the caller's array, sorted by the digest: its first 8 bytes as a
 * big-endian key decide almost every comparison without touching the array. */
struct locate_key {
	uint64_t key;
	size_t i;
};

static int cmp_locate_key(const void *a, const void *b, void *digests)
{
	const struct locate_key *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	const uint8_t *d = digests;
	return memcmp(d + 32 * x->i, d + 32 * y->i, 32);
}

/* Rows of local_chunks from the first digest >= the bound one, in digest order. */
#define LOCATE_SQL                                                                                 \
	"SELECT digest, pack, off, len, sum FROM local_chunks WHERE digest>=? ORDER BY digest"
/* Rows stepped over before a merge seeks again: a store holding many images has long runs of
 * digests that are not the index's. */
#define LOCATE_SKIP 16

int idx_store_locate(struct idx_store *s, const uint8_t *digests, size_t n,
		     struct idx_store_loc *ret)
{
	memset(ret, 0, n * sizeof(*ret));
	if (n == 0)
		return 0;
	/* A store with no local chunk (every cold start from a fresh one) has nothing to merge:
	 * sorting the browser index's 58,000 digests took 10 ms of the mount's start. */
	idx_store_lock(s);
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *any = NULL;
	int rc0 = sqlite3_prepare_v2(s->db, "SELECT 1 FROM local_chunks LIMIT 1", -1, &any, NULL);
	if (rc0 == SQLITE_OK)
		rc0 = sqlite3_step(any);
	int r0 = rc0 == SQLITE_ROW || rc0 == SQLITE_DONE ? 0 : store_db_fail(s->db, "locate");
	idx_store_unlock(s);
	if (r0 < 0 || rc0 == SQLITE_DONE)
		return r0;
	/*
	 * A merge of the digests, sorted, with the table read in digest order: one pass over the
	 * table's b-tree from its first page to its last (read ahead when store.db is not in the
	 * page cache), seeking only past runs of other images' rows. The browser image's 52,216
	 * point lookups in index order took 149 ms with a cold page cache.
	 */
	_cleanup_free_ struct locate_key *order = malloc(n * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		order[i] = (struct locate_key){.key = cm_be64(digests + 32 * i), .i = i};
	qsort_r(order, n, sizeof(*order), cmp_locate_key, (void *)digests);
	int r = 0;
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	idx_store_lock(s);
	if (sqlite3_prepare_v2(s->db, LOCATE_SQL, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		r = store_db_fail(s->db, "locate");
		goto out;
	}
	bool seek = true;
	int rc = SQLITE_DONE;
	unsigned skipped = 0;
	for (size_t k = 0; k < n;) {
		const uint8_t *want = digests + 32 * order[k].i;
		if (k > 0 && memcmp(want, digests + 32 * order[k - 1].i, 32) == 0) {
			ret[order[k].i] = ret[order[k - 1].i];
			k++;
			continue;
		}
		if (seek) {
			sqlite3_reset(st);
			sqlite3_bind_blob(st, 1, want, 32, SQLITE_STATIC);
			rc = sqlite3_step(st);
			seek = false;
			skipped = 0;
		}
		if (rc == SQLITE_DONE)
			break; /* no row at or past this digest: the rest are absent */
		if (rc != SQLITE_ROW) {
			r = store_db_fail(s->db, "locate");
			break;
		}
		if (sqlite3_column_bytes(st, 0) != 32) {
			rc = sqlite3_step(st); /* not a digest: no index asks for it */
			continue;
		}
		int c = memcmp(sqlite3_column_blob(st, 0), want, 32);
		if (c > 0) {
			k++; /* absent */
		} else if (c < 0) {
			if (++skipped > LOCATE_SKIP)
				seek = true;
			else
				rc = sqlite3_step(st);
		} else {
			ret[order[k++].i] = (struct idx_store_loc){
			    .pack = (uint32_t)sqlite3_column_int64(st, 1),
			    .off = (uint64_t)sqlite3_column_int64(st, 2),
			    .len = (uint32_t)sqlite3_column_int64(st, 3),
			    .sum = (uint64_t)sqlite3_column_int64(st, 4),
			};
			rc = sqlite3_step(st);
			skipped = 0;
		}
	}
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
out:
	idx_store_unlock(s);
	return r;
}

int idx_store_read_loc(struct idx_store *s, const struct idx_store_loc *l, void *ubuf,
		       uint32_t usize)
{
	if (l->pack == 0 || l->len != idx_store_raw_frame_size(usize))
		return -ENOENT;
	int fd = idx_store_pack_fd(s, l->pack);
	if (fd < 0)
		return fd == -ENOENT ? -ENOENT : fd;
	int r = idx_store_pread_raw(fd, l->off, usize, false, ubuf);
	if (r < 0)
		return r;
	if (r == 0 || cm_xxh3(ubuf, usize) != l->sum)
		return -ENOENT;
	return 0;
}

/* ---- writing ----------------------------------------------------------------------------- */

struct pending {
	uint8_t digest[32];
	struct idx_store_loc loc;
};

struct idx_store_writer {
	struct idx_store *s;
	pthread_mutex_t lock;
	int fd;	      /* the pack being appended to, flock'ed; -1 before the first put */
	uint32_t id;  /* its id */
	uint64_t end; /* its size */
	uint64_t max; /* rotate past this size */
	struct pending *pend;
	size_t npend, pend_alloc;
	/* Full packs still locked until the rows of their chunks are committed (gc would
	 * delete a pack it sees unlocked without rows). */
	int sealed[8];
	size_t nsealed;
};

int idx_store_writer_new(struct idx_store *s, struct idx_store_writer **ret)
{
	struct idx_store_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->s = s;
	w->fd = -1;
	w->max = IDX_STORE_PACK_MAX;
	pthread_mutex_init(&w->lock, NULL);
	*ret = w;
	return 0;
}

/* Start a new pack: a local_packs row for its id, the file created and locked in ROOT/tmp,
 * then renamed into ROOT/packs/. Writer lock held. */
static int pack_new(struct idx_store_writer *w)
{
	struct idx_store *s = w->s;
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	idx_store_lock(s);
	int r = 0;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO local_packs(created) VALUES(?)", -1, &st,
			       NULL) != SQLITE_OK) {
		r = store_db_fail(s->db, "new pack");
	} else {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)time(NULL));
		if (sqlite3_step(st) != SQLITE_DONE)
			r = store_db_fail(s->db, "new pack");
	}
	sqlite3_int64 id = r == 0 ? sqlite3_last_insert_rowid(s->db) : 0;
	idx_store_unlock(s);
	if (r < 0)
		return r;
	if (id <= 0 || id > UINT32_MAX)
		return cm_log_ret(-EOVERFLOW, "store: local pack id %lld out of range", (long long)id);
	char tmp[64], p[32];
	snprintf(tmp, sizeof(tmp), "tmp/pack.%ld.%lld", (long)getpid(), (long long)id);
	pack_relpath((uint32_t)id, p);
	int fd = openat(s->root_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return cm_log_ret(-errno, "store: creating a local pack: %s", strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 || renameat(s->root_fd, tmp, s->root_fd, p) < 0) {
		r = -errno;
		unlinkat(s->root_fd, tmp, 0);
		close(fd);
		return cm_log_ret(r, "store: publishing local pack %s: %s", p, strerror(-r));
	}
	if (w->fd >= 0) {
		if (w->nsealed == ARRAY_SIZE(w->sealed)) { /* eight rotations without a commit */
			close(w->sealed[0]);
			memmove(w->sealed, w->sealed + 1, sizeof(w->sealed) - sizeof(int));
			w->nsealed--;
		}
		w->sealed[w->nsealed++] = w->fd;
	}
	w->fd = fd;
	w->id = (uint32_t)id;
	w->end = 0;
	return 0;
}

void idx_store_writer_set_pack_max(struct idx_store_writer *w, uint64_t max)
{
	pthread_mutex_lock(&w->lock);
	w->max = max;
	pthread_mutex_unlock(&w->lock);
}

int idx_store_writer_put(struct idx_store_writer *w, const uint8_t digest[32], const void *udata,
			 uint32_t usize, struct idx_store_loc *ret)
{
	uint8_t hdr[RAW_IOV_HDR];
	struct iovec iov[RAW_IOV_MAX];
	_cleanup_free_ uint8_t *frame = NULL;
	size_t len = idx_store_raw_frame_size(usize);
	int n = store_raw_iov(udata, usize, hdr, iov);
	if (n == 0) { /* more than 8 blocks: build the frame in one buffer */
		frame = malloc(len);
		if (!frame)
			return -ENOMEM;
		idx_store_raw_frame(udata, usize, frame);
		iov[0] = (struct iovec){frame, len};
		n = 1;
	}
	uint64_t sum = cm_xxh3(udata, usize);
	int r = 0;
	pthread_mutex_lock(&w->lock);
	if (w->npend == w->pend_alloc) {
		size_t na = w->pend_alloc ? w->pend_alloc * 2 : 256;
		struct pending *nv = realloc(w->pend, na * sizeof(*nv));
		if (!nv) {
			r = -ENOMEM;
			goto out;
		}
		w->pend = nv;
		w->pend_alloc = na;
	}
	if ((w->fd < 0 || w->end + len > w->max) && (r = pack_new(w)) < 0)
		goto out;
	uint64_t off = w->end;
	r = cm_pwritev_full(w->fd, iov, n, off);
	if (r < 0) {
		/* Whatever was written stays unreferenced; gc punches it out. Later chunks go
		 * after it. */
		w->end = off + len;
		log_error("store: appending to local pack %" PRIu32 ": %s", w->id, strerror(-r));
		goto out;
	}
	w->end = off + len;
	*ret = (struct idx_store_loc){.pack = w->id, .off = off, .len = (uint32_t)len, .sum = sum};
	struct pending *pe = &w->pend[w->npend++];
	memcpy(pe->digest, digest, 32);
	pe->loc = *ret;
out:
	pthread_mutex_unlock(&w->lock);
	return r;
}

static int cmp_pending(const void *a, const void *b)
{
	return memcmp(((const struct pending *)a)->digest, ((const struct pending *)b)->digest, 32);
}

int idx_store_writer_commit(struct idx_store_writer *w)
{
	pthread_mutex_lock(&w->lock);
	struct pending *v = w->pend;
	size_t n = w->npend, nsealed = w->nsealed;
	int sealed[ARRAY_SIZE(w->sealed)];
	memcpy(sealed, w->sealed, sizeof(sealed));
	w->pend = NULL;
	w->npend = w->pend_alloc = 0;
	w->nsealed = 0;
	pthread_mutex_unlock(&w->lock);
	if (n == 0) {
		free(v);
		for (size_t i = 0; i < nsealed; i++)
			close(sealed[i]);
		return 0;
	}
	/* In key order: each B-tree page of local_chunks is written once. */
	qsort(v, n, sizeof(*v), cmp_pending);
	struct idx_store *s = w->s;
	int r = 0;
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	idx_store_lock(s);
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		r = store_db_fail(s->db, "commit local chunks");
		goto out;
	}
	/* OR REPLACE: this copy was just verified; an older row (another process's copy, or
	 * a location a reader found damaged) leaves bytes no row describes, which gc punches
	 * out. */
	if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO local_chunks VALUES(?,?,?,?,?)", -1,
			       &st, NULL) != SQLITE_OK)
		r = store_db_fail(s->db, "commit local chunks");
	for (size_t i = 0; i < n && r == 0; i++) {
		sqlite3_reset(st);
		sqlite3_bind_blob(st, 1, v[i].digest, 32, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, v[i].loc.pack);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)v[i].loc.off);
		sqlite3_bind_int64(st, 4, v[i].loc.len);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)v[i].loc.sum);
		if (sqlite3_step(st) != SQLITE_DONE)
			r = store_db_fail(s->db, "commit local chunks");
	}
	if (r == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		r = store_db_fail(s->db, "commit local chunks");
	if (r < 0)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
	idx_store_unlock(s);
	if (r == 0)
		for (size_t i = 0; i < nsealed; i++)
			close(sealed[i]); /* their rows are in: gc may have them from now on */
	if (r < 0) {
		/* Keep them (and the locks of full packs) for the next commit. */
		pthread_mutex_lock(&w->lock);
		for (size_t i = 0; i < nsealed; i++) {
			if (w->nsealed < ARRAY_SIZE(w->sealed)) {
				memmove(w->sealed + 1, w->sealed, w->nsealed * sizeof(int));
				w->sealed[0] = sealed[i];
				w->nsealed++;
			} else {
				close(sealed[i]);
			}
		}
		struct pending *nv = realloc(v, (n + w->npend) * sizeof(*v));
		if (nv) {
			if (w->npend) /* (w->pend may be NULL) */
				memcpy(nv + n, w->pend, w->npend * sizeof(*v));
			free(w->pend);
			w->pend = nv;
			w->npend = w->pend_alloc = n + w->npend;
			v = NULL;
		}
		pthread_mutex_unlock(&w->lock);
	}
	free(v);
	return r;
}

void idx_store_writer_free(struct idx_store_writer *w)
{
	if (!w)
		return;
	idx_store_writer_commit(w);
	if (w->fd >= 0)
		close(w->fd);
	for (size_t i = 0; i < w->nsealed; i++)
		close(w->sealed[i]);
	free(w->pend);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

/* ---- removing -------------------------------------------------------------------------- */

/* Punch [off, off+len) out of pack `id` (best effort: without hole punching the bytes stay
 * until the pack is deleted). */
static void punch(struct idx_store *s, uint32_t id, uint64_t off, uint64_t len)
{
	if (len == 0)
		return;
	bool writable = false;
	pthread_mutex_lock(&s->fd_lock);
	int fd = pack_fd_locked(s, id, &writable);
	pthread_mutex_unlock(&s->fd_lock);
	if (fd < 0 || !writable)
		return;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0 &&
	    errno != EOPNOTSUPP)
		log_debug("store: punching %llu bytes out of local pack %" PRIu32 ": %s",
			  (unsigned long long)len, id, strerror(errno));
}

int idx_store_remove_chunk_locked(struct idx_store *s, const uint8_t digest[32])
{
	char p[80];
	idx_store_chunk_relpath(digest, p);
	int r = 0;
	if (unlinkat(s->root_fd, p, 0) < 0 && errno != ENOENT)
		r = -errno;
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db,
			       "DELETE FROM local_chunks WHERE digest=? RETURNING pack, off, len",
			       -1, &st, NULL) != SQLITE_OK)
		return store_db_fail(s->db, "remove chunk");
	sqlite3_bind_blob(st, 1, digest, 32, SQLITE_STATIC);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		punch(s, (uint32_t)sqlite3_column_int64(st, 0),
		      (uint64_t)sqlite3_column_int64(st, 1), (uint64_t)sqlite3_column_int64(st, 2));
	if (rc != SQLITE_DONE)
		return store_db_fail(s->db, "remove chunk");
	return r;
}

int idx_store_forget_loc(struct idx_store *s, const uint8_t digest[32],
			 const struct idx_store_loc *l)
{
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	int r = 0;
	idx_store_lock(s);
	if (sqlite3_prepare_v2(s->db,
			       "DELETE FROM local_chunks WHERE digest=? AND pack=? AND off=?", -1,
			       &st, NULL) != SQLITE_OK) {
		r = store_db_fail(s->db, "forget chunk");
	} else {
		sqlite3_bind_blob(st, 1, digest, 32, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, l->pack);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)l->off);
		if (sqlite3_step(st) != SQLITE_DONE)
			r = store_db_fail(s->db, "forget chunk");
		else if (sqlite3_changes(s->db) > 0)
			punch(s, l->pack, l->off, l->len);
	}
	idx_store_unlock(s);
	return r;
}

/* ---- garbage collection ---------------------------------------------------------------- */

struct range {
	uint64_t off, len;
};

/* Collect one unlocked pack: delete it when no row refers to it, else punch out what no row
 * describes. Store lock not held. */
static int gc_pack(struct idx_store *s, uint32_t id, int fd)
{
	_cleanup_free_ struct range *v = NULL;
	size_t n = 0, alloc = 0;
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
	int r = 0;
	idx_store_lock(s);
	if (sqlite3_prepare_v2(s->db, "SELECT off, len FROM local_chunks WHERE pack=? ORDER BY off",
			       -1, &st, NULL) != SQLITE_OK) {
		r = store_db_fail(s->db, "gc packs");
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == alloc) {
			alloc = alloc ? alloc * 2 : 256;
			struct range *nv = realloc(v, alloc * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		v[n++] = (struct range){(uint64_t)sqlite3_column_int64(st, 0),
					(uint64_t)sqlite3_column_int64(st, 1)};
	}
	if (rc != SQLITE_DONE) {
		r = store_db_fail(s->db, "gc packs");
		goto out;
	}
	if (n == 0) {
		/* No row, and no writer (we hold its lock): nothing can refer to it again. */
		char p[32];
		pack_relpath(id, p);
		if (unlinkat(s->root_fd, p, 0) < 0 && errno != ENOENT)
			r = -errno;
		sqlite3_finalize(TAKE_PTR(st));
		if (sqlite3_prepare_v2(s->db, "DELETE FROM local_packs WHERE id=?", -1, &st,
				       NULL) == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, id);
			sqlite3_step(st);
		}
		idx_store_unlock(s);
		pack_fd_drop(s, id);
		return r;
	}
out:
	idx_store_unlock(s);
	if (r < 0)
		return r;
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return -errno;
	uint64_t pos = 0;
	for (size_t i = 0; i <= n; i++) {
		uint64_t next = i < n ? v[i].off : (uint64_t)sb.st_size;
		if (next > pos &&
		    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)pos,
			      (off_t)(next - pos)) < 0 &&
		    errno != EOPNOTSUPP)
			return -errno;
		if (i < n)
			pos = MAX(pos, v[i].off + v[i].len);
	}
	return 0;
}

int idx_store_packs_gc(struct idx_store *s)
{
	DIR *d = cm_opendirat(s->root_fd, "packs", 0);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		uint8_t b[4];
		if (strlen(de->d_name) != 16 || memcmp(de->d_name, "00000000", 8) != 0 ||
		    cm_hex_parse(de->d_name + 8, 4, b) < 0)
			continue;
		uint32_t id = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
		_cleanup_close_ int fd = openat(dirfd(d), de->d_name, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0)
			continue; /* a writer appends to it */
		int k = gc_pack(s, id, fd);
		if (k < 0 && r == 0)
			r = k;
	}
	closedir(d);
	/* Rows of packs that are gone (a pack file exists before any row refers to it). */
	_cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL, *del = NULL;
	idx_store_lock(s);
	if (sqlite3_prepare_v2(s->db, "SELECT DISTINCT pack FROM local_chunks", -1, &st, NULL) !=
		SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "DELETE FROM local_chunks WHERE pack=?", -1, &del, NULL) !=
		SQLITE_OK) {
		idx_store_unlock(s);
		return store_db_fail(s->db, "gc packs");
	}
	uint32_t gone[64];
	size_t ngone = 0;
	while (ngone < ARRAY_SIZE(gone) && sqlite3_step(st) == SQLITE_ROW) {
		char p[32];
		uint32_t id = (uint32_t)sqlite3_column_int64(st, 0);
		pack_relpath(id, p);
		if (faccessat(s->root_fd, p, F_OK, 0) < 0 && errno == ENOENT)
			gone[ngone++] = id;
	}
	sqlite3_reset(st);
	for (size_t i = 0; i < ngone; i++) {
		log_info("store: local pack %" PRIu32 " is missing: forgetting its chunks", gone[i]);
		sqlite3_reset(del);
		sqlite3_bind_int64(del, 1, gone[i]);
		sqlite3_step(del);
	}
	idx_store_unlock(s);
	return r;
}
