/*
 * The chunk engine (engine.h). Per-chunk state lives in flat arrays indexed by chunk number,
 * all guarded by e->lock:
 *   state[c]  ST_LOCAL / ST_ABSENT (whether the store has it, as far as we know: another
 *             process may evict it, which a load notices), ST_BUSY while one thread loads
 *             or fetches it (the in-flight marker: others wait on e->cond), ST_TOUCHED once
 *             a read used it (trace), ST_USED / ST_ADDED since the last bookkeeping flush.
 *   fails[c]  bumped when a load or fetch of c fails, so waiters learn the outcome.
 *   loc[c]    where c is in a local pack (pack 0: a chunk file, or not local).
 *   mem[c]    the in-memory entry, or NULL. Entries sit on an LRU list; an entry with
 *             refs > 0 is never freed. Startup-list chunks the prefetch fetched ahead of
 *             their first read sit on the hold list instead (FIFO, beside the LRU's cap,
 *             up to o.startup_hold bytes) until a read takes them or they expire.
 */
#include "engine.h"
#include "fs/cache.h"
#include "fs_int.h"

#include "indexer/index.h"
#include "indexer/store.h"
#include "registry/client.h"
#include "registry/ref.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <libgen.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

enum {
	ST_LOCAL = 1u << 0,
	ST_ABSENT = 1u << 1,
	ST_BUSY = 1u << 2,
	ST_TOUCHED = 1u << 3,
	ST_USED = 1u << 4,
	ST_ADDED = 1u << 5,
};

/* Readahead window of a sequential reader, and the queue of chunks it asks for. */
#define RA_WINDOW (4u << 20)
#define RA_QUEUE  1024u
/* Local readahead: chunk files loaded into memory ahead of a reader by LOADERS threads, so
 * the disk reads of one FUSE read (or of a sequential reader's next window) overlap. */
#define LD_QUEUE 1024u
#define LOADERS	 8u
/* Two chunks of one pack separated by less than this are fetched in one range. */
#define GAP_MAX (64u << 10)
/* A registry whose first answer takes this long is far: more prefetch workers. */
#define LATENCY_FAR_MS 10
/* A chunk's stored bytes are at most this (the indexer's max chunk is far below). */
#define CHUNK_MAX (16u << 20)

/* What a fetch does with the chunks it did not fetch for a waiting reader. */
enum keep { KEEP_NONE, KEEP_LRU, KEEP_HOLD };

struct mentry {
	struct mentry *prev, *next; /* LRU (most recent first) or hold list (oldest first) */
	uint64_t held_ns;	    /* when it entered the hold list */
	uint32_t chunk, len, refs;
	bool held;
	uint8_t data[];
};

struct trace_rec {
	uint32_t chunk, ino;
	uint64_t t_us;
};

enum err_cause { E_TIMEOUT, E_UNAVAILABLE, E_AUTH, E_CORRUPT, E_NOTFOUND, E_OTHER, E_N };
static const char *const cause_names[E_N] = {"timeout", "unavailable", "auth",
					     "corrupt", "not_found",   "other"};

struct fs_engine {
	struct idx_store *store;
	const struct idx_reader *r;
	struct reg_client *client; /* NULL: no remote */
	struct reg_ref *repo;
	struct fs_mount_opts o;
	uint32_t n;
	uint64_t t0_ns;

	pthread_mutex_t lock;
	pthread_cond_t cond;		    /* a load/fetch finished; guarded by lock */
	pthread_cond_t fg_cond;		    /* fg_active dropped to 0 */
	pthread_cond_t pf_cond;		    /* work for prefetch workers / stop (workers only) */
	pthread_cond_t fl_cond;		    /* stop, for the flusher: a readahead signal on
					       pf_cond must wake a worker, not it */
	uint8_t *state;			    /* lock */
	uint32_t *fails;		    /* lock */
	struct idx_store_loc *loc;	    /* lock; stable while the reader holds ST_BUSY */
	struct idx_store_writer *writer;    /* appends fetched chunks to this mount's pack */
	struct mentry **mem;		    /* lock */
	struct mentry *lru_head, *lru_tail; /* lock */
	uint64_t mem_bytes;		    /* lock */
	uint32_t resident;		    /* lock: chunks with ST_LOCAL */
	uint64_t resident_bytes;	    /* lock */
	uint32_t fg_active;		    /* lock: foreground fetches in flight */
	uint32_t pf_active;		    /* lock: prefetch fetches in flight */
	uint32_t ra[RA_QUEUE];		    /* lock: readahead ring */
	uint32_t ra_head, ra_n;		    /* lock */
	uint32_t ld[LD_QUEUE];		    /* lock: local loads ring (chunks marked ST_BUSY) */
	uint32_t ld_head, ld_n;		    /* lock */
	pthread_cond_t ld_cond;		    /* ld_n > 0 or stop */
	pthread_t loaders[LOADERS];
	unsigned n_loaders;
	uint64_t bg_pos, bg_total; /* lock: background prefetch cursor */
	uint64_t last_read_ns;	   /* lock: a reader's last fs_engine_get */
	uint64_t last_need_ns;	   /* lock: a reader's last wait for a chunk outside the startup
				    * list that is not local yet (rest_deferred) */
	uint8_t *in_startup;	   /* bitmap: chunk is in the index's startup list (read-only) */
	bool bg_failed;		   /* lock: a background fetch failed in this pass */
	uint64_t complete_us;	   /* lock: when every chunk became local, 0 before */
	bool recorded;		   /* lock: ... and a flush since recorded them in store.db */
	atomic_bool stop;	   /* written under lock; also the registry client's cancel flag
				      of the fetches in flight (get_range) */
	struct trace_rec *trace;   /* lock */
	uint32_t trace_n;	   /* lock */
	bool trace_dirty;	   /* lock */

	pthread_mutex_t bw_lock;
	uint64_t bw_next_ns; /* bw_lock: when the next prefetch request may start */
	bool packed_last;    /* atomic: the last chunk loaded was not a raw frame */
	uint32_t packed_n;   /* atomic: loads since, a raw frame is tried every 64th */

	/* lock: startup chunks held for their first read (hold_insert) */
	struct mentry *hold_head, *hold_tail;
	uint64_t held_bytes, held_peak;
	bool hold_trim; /* entries left the hold list since the heap was last trimmed */

	pthread_t *workers;
	unsigned n_workers, workers_cap; /* written by fs_engine_start, then by the check
					  * (which follows it, on the same thread or on the
					  * daemon's references thread): never at once */
	pthread_t flusher;
	bool flusher_started;
	bool stopped; /* lock */
	bool threads_auto; /* no --prefetch-threads: chosen from the registry's latency */
	/* When the store last refused a fetched chunk (its disk full, say), 0 while it takes
	 * them: the chunks are served from memory meanwhile, and the rest of the image is not
	 * prefetched (STORE_RETRY_NS). Atomic. */
	uint64_t store_refused_ns;
	bool commit_failing; /* the flusher's (and the stop's, after it): the last commit failed */
	bool min_free_said;  /* the flusher's: the filesystem's shortage of free space was said */

	/* Counters: atomics (__atomic builtins). */
	uint64_t fetched_bytes, fetch_requests, fetched_chunks, prefetched_bytes;
	uint64_t mem_hits, store_hits, misses, reads, read_bytes, preloads, unstored;
	uint64_t errors[E_N], read_errors;
	struct fs_hist lat;
	struct fs_hist fetch_lat; /* one range request, microseconds */
};

static void count(uint64_t *c, uint64_t v)
{
	__atomic_add_fetch(c, v, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static enum err_cause cause_of(int r)
{
	switch (r) {
	case -ETIMEDOUT:
		return E_TIMEOUT;
	case -EAGAIN:
	case -ECONNREFUSED:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
		return E_UNAVAILABLE;
	case -EACCES:
	case -EPERM:
		return E_AUTH;
	case -EBADMSG:
	case -EPROTO:
		return E_CORRUPT;
	case -ENOENT:
		return E_NOTFOUND;
	default:
		return E_OTHER;
	}
}

/* ---- per-thread scratch: zstd context and compressed-bytes buffer ---------------------- */

struct tls_scratch {
	ZSTD_DCtx *dctx;
	uint8_t *buf;
	size_t cap;
};
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
	struct tls_scratch *t = p;
	ZSTD_freeDCtx(t->dctx);
	free(t->buf);
	free(t);
}

static void tls_init(void)
{
	pthread_key_create(&tls_key, tls_free);
}

static struct tls_scratch *scratch(size_t need)
{
	pthread_once(&tls_once, tls_init);
	struct tls_scratch *t = pthread_getspecific(tls_key);
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t)
			return NULL;
		t->dctx = ZSTD_createDCtx();
		if (!t->dctx || pthread_setspecific(tls_key, t) != 0) {
			tls_free(t);
			return NULL;
		}
	}
	if (need > t->cap) {
		size_t cap = need < (256u << 10) ? (256u << 10) : need;
		uint8_t *b = realloc(t->buf, cap);
		if (!b)
			return NULL;
		t->buf = b;
		t->cap = cap;
	}
	return t;
}

/* Decompress `c`'s stored bytes into a new entry; with `verify`, check its SHA-256 too.
 * Without, the frame must still decode to exactly usize bytes. -EBADMSG. */
static int decode(const struct idx_chunk *c, uint32_t idx, const uint8_t *cdata, size_t clen,
		  bool verify, struct mentry **ret)
{
	struct tls_scratch *t = scratch(0);
	if (!t)
		return -ENOMEM;
	struct mentry *m = malloc(sizeof(*m) + (c->usize ? c->usize : 1));
	if (!m)
		return -ENOMEM;
	*m = (struct mentry){.chunk = idx, .len = c->usize};
	size_t got = ZSTD_decompressDCtx(t->dctx, m->data, c->usize, cdata, clen);
	uint8_t d[CM_SHA256_LEN];
	bool bad = ZSTD_isError(got) || got != c->usize;
	if (!bad && verify) {
		cm_sha256(m->data, c->usize, d);
		bad = memcmp(d, c->digest, 32) != 0;
	}
	if (bad) {
		free(m);
		return -EBADMSG;
	}
	*ret = m;
	return 0;
}

/* ---- memory cache (lock held) --------------------------------------------------------- */

static void list_unlink(struct mentry **head, struct mentry **tail, struct mentry *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		*head = m->next;
	if (m->next)
		m->next->prev = m->prev;
	else
		*tail = m->prev;
	m->prev = m->next = NULL;
}

static void lru_unlink(struct fs_engine *e, struct mentry *m)
{
	list_unlink(&e->lru_head, &e->lru_tail, m);
}

static void lru_push(struct fs_engine *e, struct mentry *m)
{
	m->prev = NULL;
	m->next = e->lru_head;
	if (e->lru_head)
		e->lru_head->prev = m;
	e->lru_head = m;
	if (!e->lru_tail)
		e->lru_tail = m;
}

static void list_append(struct mentry **head, struct mentry **tail, struct mentry *m)
{
	m->next = NULL;
	m->prev = *tail;
	if (*tail)
		(*tail)->next = m;
	*tail = m;
	if (!*head)
		*head = m;
}

static void mem_trim(struct fs_engine *e)
{
	struct mentry *m = e->lru_tail;
	while (m && e->mem_bytes > e->o.mem_cache) {
		struct mentry *prev = m->prev;
		if (m->refs == 0) {
			lru_unlink(e, m);
			e->mem[m->chunk] = NULL;
			e->mem_bytes -= m->len;
			free(m);
		}
		m = prev;
	}
}

static void mem_insert(struct fs_engine *e, struct mentry *m)
{
	e->mem[m->chunk] = m;
	lru_push(e, m);
	e->mem_bytes += m->len;
	mem_trim(e);
}

static bool in_startup(const struct fs_engine *e, uint32_t c)
{
	return e->in_startup[c / 8] & (1u << (c % 8));
}

/* A startup chunk fetched ahead of its first read: kept until a read takes it (the LRU's
 * cap would free it first when the prefetch runs far ahead, and the read would load it
 * back from the store), within o.startup_hold bytes. Beyond that, and for the chunks past
 * the list that a run of the startup prefetch brings along, the LRU. */
static void hold_insert(struct fs_engine *e, struct mentry *m)
{
	if (!in_startup(e, m->chunk) || e->held_bytes + m->len > e->o.startup_hold) {
		mem_insert(e, m);
		return;
	}
	e->mem[m->chunk] = m;
	m->held = true;
	m->held_ns = cm_now_ns();
	list_append(&e->hold_head, &e->hold_tail, m);
	e->held_bytes += m->len;
	e->held_peak = MAX(e->held_peak, e->held_bytes);
}

/* Take `m` off the hold list into the memory cache's accounting (not on the LRU). */
static void hold_release(struct fs_engine *e, struct mentry *m)
{
	list_unlink(&e->hold_head, &e->hold_tail, m);
	m->held = false;
	e->held_bytes -= m->len;
	e->mem_bytes += m->len;
	e->hold_trim = true;
}

/* Held entries older than the bound (fs_hold_expired) join the LRU's cold end, then the
 * LRU is trimmed to its cap. */
static void hold_expire(struct fs_engine *e, uint64_t now_ns)
{
	struct mentry *m;
	bool released = false;
	while ((m = e->hold_head) && fs_hold_expired(now_ns, m->held_ns)) {
		hold_release(e, m);
		list_append(&e->lru_head, &e->lru_tail, m); /* the cold end: trimmed first */
		released = true;
	}
	if (released)
		mem_trim(e);
}

/* ---- trace ----------------------------------------------------------------------------- */

static void trace_touch(struct fs_engine *e, uint32_t c, uint32_t ino)
{
	if (e->state[c] & ST_TOUCHED)
		return;
	e->state[c] |= ST_TOUCHED;
	if (!e->trace)
		return;
	e->trace[e->trace_n++] =
	    (struct trace_rec){.chunk = c, .ino = ino, .t_us = (cm_now_ns() - e->t0_ns) / 1000};
	e->trace_dirty = true;
}

/* Write the trace file (docs/trace.md) atomically. Called without the lock. */
static int trace_write(struct fs_engine *e)
{
	if (!e->o.trace_path)
		return 0;
	pthread_mutex_lock(&e->lock);
	uint32_t n = e->trace_n;
	bool dirty = e->trace_dirty;
	e->trace_dirty = false;
	struct trace_rec *copy = n ? malloc(n * sizeof(*copy)) : NULL;
	if (copy)
		memcpy(copy, e->trace, n * sizeof(*copy));
	pthread_mutex_unlock(&e->lock);
	if (!dirty && n > 0) {
		free(copy);
		return 0;
	}
	if (n && !copy)
		return -ENOMEM;
	struct cm_buf b;
	cm_buf_init(&b, 0);
	int r = cm_buf_printf(&b, "isorun-trace 1\nindex %s\nchunks %u\n", idx_reader_digest(e->r),
			      idx_reader_chunk_count(e->r));
	for (uint32_t i = 0; i < n && r == 0; i++) {
		struct idx_chunk c;
		char hex[65];
		idx_reader_chunk(e->r, copy[i].chunk, &c);
		cm_hex_format(c.digest, 32, hex);
		r = cm_buf_printf(&b, "%u %llu %u %u %s %u\n", i, (unsigned long long)copy[i].t_us,
				  copy[i].chunk, copy[i].ino, hex, c.usize);
	}
	free(copy);
	if (r == 0) {
		_cleanup_free_ char *d1 = strdup(e->o.trace_path), *d2 = strdup(e->o.trace_path);
		if (!d1 || !d2) {
			r = -ENOMEM;
		} else {
			_cleanup_close_ int dfd =
			    open(dirname(d1), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			r = dfd < 0 ? -errno
				    : cm_write_file_atomic(dfd, basename(d2), b.data, b.len, 0644,
							   false);
		}
	}
	cm_buf_fini(&b);
	if (r < 0)
		log_error("trace: cannot write %s: %s", e->o.trace_path, strerror(-r));
	return r;
}

/* ---- loading and fetching -------------------------------------------------------------- */

static void remove_chunk(struct fs_engine *e, const uint8_t digest[32])
{
	idx_store_lock(e->store);
	idx_store_remove_chunk_locked(e->store, digest);
	idx_store_unlock(e->store);
}

/*
 * Read chunk `c` as a raw frame at `off` of `fd` (indexer/store.h), its data straight into a
 * new entry: one preadv, no copy. 1 and *ret on success; 0 when the bytes there are not that
 * frame (the caller decodes them instead); -errno, -ENOMEM.
 */
static int load_raw(int fd, uint64_t off, bool whole_file, const struct idx_chunk *c,
		    uint32_t idx, struct mentry **ret)
{
	struct mentry *m = malloc(sizeof(*m) + (c->usize ? c->usize : 1));
	if (!m)
		return -ENOMEM;
	*m = (struct mentry){.chunk = idx, .len = c->usize};
	int r = idx_store_pread_raw(fd, off, c->usize, whole_file, m->data);
	if (r <= 0) {
		free(m);
		return r;
	}
	*ret = m;
	return 1;
}

/* Load chunk `idx` from its local pack: 0; -ENOENT when its frame is no longer there (an
 * eviction punched it out: zeros; or a crash lost it); -EBADMSG when the frame is there but
 * its data is not the chunk's (removed, counted); -errno. Either way it is fetched again. */
static int load_packed(struct fs_engine *e, const struct idx_chunk *c, uint32_t idx,
		       struct mentry **ret)
{
	const struct idx_store_loc *l = &e->loc[idx];
	int fd = idx_store_pack_fd(e->store, l->pack);
	if (fd < 0)
		return fd;
	int r = load_raw(fd, l->off, false, c, idx, ret);
	if (r < 0)
		return r;
	if (r == 0) {
		log_info("store: chunk %u is no longer in local pack %u: fetched again", idx,
			 l->pack);
		idx_store_forget_loc(e->store, c->digest, l);
		return -ENOENT;
	}
	bool ok = cm_xxh3((*ret)->data, c->usize) == l->sum;
	if (ok && e->o.verify_local) {
		uint8_t d[CM_SHA256_LEN];
		cm_sha256((*ret)->data, c->usize, d);
		ok = memcmp(d, c->digest, 32) == 0;
	}
	if (ok)
		return 0;
	free(*ret);
	*ret = NULL;
	char hex[CM_DIGEST_STR_SIZE];
	cm_digest_format(c->digest, hex);
	log_error("store: chunk %s in local pack %u at offset %llu is corrupt: removed", hex,
		  l->pack, (unsigned long long)l->off);
	idx_store_forget_loc(e->store, c->digest, l);
	count(&e->errors[E_CORRUPT], 1);
	return -EBADMSG;
}

/* Load chunk `idx` from the store. -ENOENT absent, -EBADMSG corrupt (file removed). */
static int load(struct fs_engine *e, uint32_t idx, struct mentry **ret)
{
	struct idx_chunk c;
	int r = idx_reader_chunk(e->r, idx, &c);
	if (r < 0)
		return r;
	if (e->loc[idx].pack)
		return load_packed(e, &c, idx, ret);
	_cleanup_close_ int fd = idx_store_open_chunk(e->store, c.digest);
	if (fd < 0)
		return fd;
	/* A chunk file holds a raw frame (mounts wrote those before local packs) or the pack's
	 * zstd frame (isorun-index, --chunk-format=zstd): try raw first, unless the last chunk
	 * was in the packs' form (then only every 64th load looks again). */
	if (!__atomic_load_n(&e->packed_last, __ATOMIC_RELAXED) ||
	    (__atomic_add_fetch(&e->packed_n, 1, __ATOMIC_RELAXED) & 63) == 0) {
		r = load_raw(fd, 0, true, &c, idx, ret);
		if (r < 0)
			return r;
		__atomic_store_n(&e->packed_last, r == 0, __ATOMIC_RELAXED);
		if (r == 1) {
			if (!e->o.verify_local)
				return 0;
			uint8_t d[CM_SHA256_LEN];
			cm_sha256((*ret)->data, c.usize, d);
			if (memcmp(d, c.digest, 32) == 0)
				return 0;
			free(*ret); /* decoded again below: counted and removed as corrupt */
			*ret = NULL;
		}
	}
	/* The file is the pack's frame (csize bytes) or a raw frame (indexer/store.h): read
	 * up to the larger of the two plus one byte, so a longer file shows as corrupt. */
	size_t raw = idx_store_raw_frame_size(c.usize), want = MAX((size_t)c.csize, raw) + 1;
	struct tls_scratch *t = scratch(want);
	if (!t)
		return -ENOMEM;
	ssize_t got = pread(fd, t->buf, want, 0);
	if (got < 0)
		return -errno;
	if ((got != (ssize_t)c.csize && got != (ssize_t)raw) ||
	    (r = decode(&c, idx, t->buf, (size_t)got, e->o.verify_local, ret)) == -EBADMSG) {
		char hex[CM_DIGEST_STR_SIZE];
		cm_digest_format(c.digest, hex);
		log_error("store: chunk %s is corrupt (size %zd, expected %u or %zu): removed",
			  hex, got, c.csize, raw);
		remove_chunk(e, c.digest);
		count(&e->errors[E_CORRUPT], 1);
		return -EBADMSG;
	}
	return r;
}

/*
 * Mark the run of chunks to fetch with `first`: following chunks of the same pack that are
 * absent and not in flight, while the request stays under `max` bytes. For a foreground
 * read (`ino` != 0) the run follows the file being read (its next extents) and then spills
 * at most o.fg_spill bytes past it, so a lazy mount fetches about what is read. Lock held.
 * Returns the end (exclusive).
 */
static uint32_t plan_run(struct fs_engine *e, uint32_t first, uint64_t max, uint32_t ino,
			 uint32_t ext)
{
	struct idx_chunk a, prev;
	idx_reader_chunk(e->r, first, &a);
	prev = a;
	e->state[first] |= ST_BUSY;
	uint32_t end = first + 1;
	uint64_t limit = max;
	while (end < e->n) {
		struct idx_chunk c;
		if (idx_reader_chunk(e->r, end, &c) < 0 || c.pack != a.pack ||
		    c.pack_offset < prev.pack_offset + prev.csize ||
		    c.pack_offset - (prev.pack_offset + prev.csize) > GAP_MAX ||
		    c.pack_offset + c.csize - a.pack_offset > limit ||
		    (e->state[end] & (ST_ABSENT | ST_BUSY)) != ST_ABSENT)
			break;
		if (ino) {
			struct idx_extent x;
			if (idx_reader_extent(e->r, ino, ext + (end - first), &x) < 0 ||
			    x.chunk != end) {
				/* Past the file: packs are laid out in expected access order
				 * (startup list, then path), so a little of what follows is
				 * probably read next; spill at most FG_SPILL into it. */
				ino = 0;
				limit = MIN(max, prev.pack_offset + prev.csize - a.pack_offset +
						     e->o.fg_spill);
				if (c.pack_offset + c.csize - a.pack_offset > limit)
					break;
			}
		}
		e->state[end] |= ST_BUSY;
		prev = c;
		end++;
	}
	return end;
}

/* One Range request for [off, off+len) of pack `pack` into `buf`; `progress` (may be NULL)
 * sees the filled prefix grow (struct reg_range). */
static int get_range(struct fs_engine *e, uint32_t pack, uint64_t off, uint64_t len, void *buf,
		     void (*progress)(void *, uint64_t), void *arg)
{
	struct idx_pack pk;
	int r = idx_reader_pack(e->r, pack, &pk);
	if (r < 0)
		return r;
	char pd[CM_DIGEST_STR_SIZE];
	cm_digest_format(pk.digest, pd);
	if (off + len > pk.size)
		return cm_log_ret(-EPROTO, "fetch: range beyond pack %s", pd);
	struct reg_range rg = {
	    .off = off, .len = len, .buf = buf, .progress = progress, .arg = arg};
	count(&e->fetch_requests, 1);
	uint64_t t0 = cm_now_ns();
	r = reg_client_get_blob_ranges(e->client, e->repo, pd, &rg, 1, &e->stop);
	uint64_t us = (cm_now_ns() - t0) / 1000;
	fs_hist_add(&e->fetch_lat, us);
	log_debug("fetch: pack %u offset %llu, %llu bytes: %s in %llu us", pack,
		  (unsigned long long)off, (unsigned long long)len, r < 0 ? strerror(-r) : "ok",
		  (unsigned long long)us);
	if (r == 0)
		count(&e->fetched_bytes, len);
	return r;
}

/* settle()'s outcome for a chunk that was fetched and verified but that the store refused
 * (publish failed): served from memory, still absent from the store. */
#define SETTLE_UNSTORED 1

/*
 * Settle chunk c after its fetch: clear ST_BUSY, record the outcome (0: in the store,
 * SETTLE_UNSTORED, or -errno) and wake its waiters, chunk by chunk, so a reader waiting for
 * the first chunks of a long run does not wait for the whole run to be verified and stored.
 * `m` (may be NULL) is consumed.
 */
static void settle(struct fs_engine *e, uint32_t c, int res, struct mentry *m, enum keep keep,
		   struct mentry **want, const struct idx_store_loc *loc)
{
	pthread_mutex_lock(&e->lock);
	e->state[c] &= (uint8_t)~ST_BUSY;
	if (res < 0) {
		e->fails[c]++;
		free(m);
	} else if (res == SETTLE_UNSTORED) {
		/* Only memory has it, whatever `keep` says (it cannot be loaded back): held if
		 * it is a startup chunk, else in the LRU, where whoever waits for it finds it.
		 * Once it leaves, it is fetched again. */
		if (want) {
			m->refs = 1;
			mem_insert(e, m);
			*want = m;
		} else if (e->mem[c]) {
			free(m);
		} else if (keep == KEEP_HOLD) {
			hold_insert(e, m);
		} else {
			mem_insert(e, m);
		}
	} else {
		struct idx_chunk ch;
		idx_reader_chunk(e->r, c, &ch);
		e->state[c] = (uint8_t)((e->state[c] & ~ST_ABSENT) | ST_LOCAL | ST_ADDED);
		e->loc[c] = loc ? *loc : (struct idx_store_loc){0};
		e->resident++;
		e->resident_bytes += ch.csize;
		count(&e->fetched_chunks, 1);
		if (want) {
			m->refs = 1;
			mem_insert(e, m);
			*want = m;
		} else if (keep == KEEP_HOLD && !e->mem[c]) {
			hold_insert(e, m);
		} else if (keep == KEEP_LRU && !e->mem[c]) {
			mem_insert(e, m);
		} else {
			free(m);
		}
		if (e->resident == e->n && !e->complete_us) {
			e->complete_us = (cm_now_ns() - e->t0_ns) / 1000;
			pthread_cond_broadcast(&e->fl_cond); /* record them now */
			log_info("prefetch: image %s is fully local", idx_reader_digest(e->r));
		}
	}
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

#define STORE_PROBE_NS (1000 * 1000000ull)

/* Put a fetched, verified chunk into the store: as a raw frame of its decompressed bytes
 * `m` appended to this mount's local pack (*loc says where; local reads then copy instead of
 * decompressing), or with --chunk-format=zstd as the fetched frame `cdata` in a chunk file.
 * 1 new, 0 already there, -errno. */
static int publish(struct fs_engine *e, const struct idx_chunk *c, const uint8_t *cdata,
		   const struct mentry *m, struct idx_store_loc *loc)
{
	/* A store that refused a chunk is tried again once per STORE_PROBE_NS, quietly (its
	 * errors at debug level): the daemon says once that it refuses and once that it takes
	 * chunks again, not for every chunk. */
	uint64_t refused = __atomic_load_n(&e->store_refused_ns, __ATOMIC_RELAXED);
	if (refused && cm_now_ns() - refused < STORE_PROBE_NS) {
		count(&e->unstored, 1);
		return -EAGAIN;
	}
	bool was = refused ? cm_log_demote_thread(true) : false;
	int r = e->o.chunks_zstd
		    ? idx_store_put_chunk(e->store, c->digest, cdata, c->csize, c->usize, false)
		    : idx_store_writer_put(e->writer, c->digest, m->data, c->usize, loc);
	if (refused)
		cm_log_demote_thread(was);
	if (r < 0) {
		count(&e->unstored, 1);
		if (__atomic_exchange_n(&e->store_refused_ns, cm_now_ns(), __ATOMIC_RELAXED) == 0)
			log_warn("store: cannot keep fetched chunks (%s): serving them from memory "
				 "only, and not prefetching the rest of the image until it can%s",
				 strerror(-r),
				 r == -ENOSPC ? " (isorun cache gc --cache-max SIZE makes room)"
					      : "");
		return r;
	}
	if (refused && __atomic_exchange_n(&e->store_refused_ns, 0, __ATOMIC_RELAXED))
		log_info("store: keeping fetched chunks again");
	return e->o.chunks_zstd ? r : 1;
}

/* A run's chunks as its answer arrives: [next, b) are still to be verified and settled. */
struct run_feed {
	struct fs_engine *e;
	uint32_t a, b, next;
	uint64_t off; /* the pack offset where buf starts */
	const uint8_t *buf;
	enum keep keep;
	bool stopped;
	struct mentry **want;
	int first; /* the outcome for chunk a, once settled */
};

/* Verify, publish and settle chunk `i` of the run from `cd`. 0, or -EBADMSG (nothing done:
 * the caller fetches it again on its own). */
static int feed_one(struct run_feed *f, uint32_t i, const uint8_t *cd)
{
	struct fs_engine *e = f->e;
	struct idx_chunk c;
	struct mentry *m = NULL;
	struct idx_store_loc loc = {0};
	idx_reader_chunk(e->r, i, &c);
	int res = decode(&c, i, cd, c.csize, true, &m);
	if (res == -EBADMSG)
		return res;
	if (res == 0)
		res = publish(e, &c, cd, m, &loc) < 0 ? SETTLE_UNSTORED : 0;
	if (i == f->a)
		f->first = res;
	/* loc.pack is 0 unless the chunk went to the local pack */
	settle(e, i, res, m, f->keep, i == f->a ? f->want : NULL, &loc);
	return 0;
}

/* The answer's first `filled` bytes are in: settle every chunk they hold, in order, so a
 * reader waiting for the first chunks of a run does not wait for the whole request. Stops
 * at a chunk that fails to verify (fetch_run fetches it again once the request is over). */
static void feed_progress(void *arg, uint64_t filled)
{
	struct run_feed *f = arg;
	while (!f->stopped && f->next < f->b) {
		struct idx_chunk c;
		idx_reader_chunk(f->e->r, f->next, &c);
		uint64_t rel = c.pack_offset - f->off;
		if (rel + c.csize > filled)
			return;
		if (feed_one(f, f->next, f->buf + rel) < 0) {
			f->stopped = true;
			return;
		}
		f->next++;
	}
}

/*
 * Fetch chunks [a, b) (marked ST_BUSY by plan_run) in one request, verify each, publish it
 * to the store and settle it as soon as its bytes are in. With `want` the entry of `a` is
 * returned referenced; `keep` says whether the other chunks enter the memory cache too (a
 * reader will probably want them next) and how. Returns the outcome for chunk a (settle's:
 * 0, SETTLE_UNSTORED or -errno).
 */
static int fetch_run(struct fs_engine *e, uint32_t a, uint32_t b, enum keep keep,
		     struct mentry **want)
{
	struct idx_chunk ca, cl;
	idx_reader_chunk(e->r, a, &ca);
	idx_reader_chunk(e->r, b - 1, &cl);
	uint64_t off = ca.pack_offset, len = cl.pack_offset + cl.csize - off;
	int r = 0;
	_cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
	struct run_feed f = {
	    .e = e, .a = a, .b = b, .next = a, .off = off, .buf = buf, .keep = keep, .want = want};
	if (!buf)
		r = -ENOMEM;
	if (r == 0)
		r = get_range(e, ca.pack, off, len, buf, feed_progress, &f);
	if (r < 0) {
		bool stopping = r == -ECANCELED && e->stop; /* the unmount cancelled it */
		if (!stopping)
			count(&e->errors[cause_of(r)], 1);
		cm_log(stopping ? CM_LOG_DEBUG : CM_LOG_ERROR,
		       "fetch: %u chunk(s) of pack %u at offset %llu (%llu bytes) failed: %s",
		       b - f.next, ca.pack, (unsigned long long)off, (unsigned long long)len,
		       strerror(-r));
		for (uint32_t c = f.next; c < b; c++)
			settle(e, c, r, NULL, KEEP_NONE, NULL, NULL);
		/* chunk a may have been settled (and handed to `want`) before the failure */
		return want && f.next > a ? f.first : r;
	}
	/* What the progress hook did not settle: the tail of a multipart answer, or the chunks
	 * from one that did not verify on. */
	for (uint32_t i = f.next; i < b; i++) {
		struct idx_chunk c;
		idx_reader_chunk(e->r, i, &c);
		/* (the chunk that stopped the progress hook has failed to verify already) */
		if (!(f.stopped && i == f.next) && feed_one(&f, i, buf + (c.pack_offset - off)) == 0)
			continue;
		/* Once more on its own: a proxy or a flaky link may have damaged it. */
		_cleanup_free_ uint8_t *one = malloc(c.csize ? c.csize : 1);
		count(&e->errors[E_CORRUPT], 1);
		int res = one ? get_range(e, c.pack, c.pack_offset, c.csize, one, NULL, NULL)
			      : -ENOMEM;
		if (res == 0 && feed_one(&f, i, one) == 0)
			continue;
		if (res == 0 || res == -EBADMSG) {
			char hex[CM_DIGEST_STR_SIZE];
			cm_digest_format(c.digest, hex);
			log_error("fetch: chunk %s from pack %u offset %llu is corrupt after "
				  "a refetch: not served",
				  hex, c.pack, (unsigned long long)c.pack_offset);
			res = -EBADMSG;
		}
		if (i == a)
			f.first = res;
		settle(e, i, res, NULL, KEEP_NONE, i == a ? want : NULL, NULL);
	}
	return f.first;
}

/* A reader takes entry m (in memory): referenced, and the most recently used; a held startup
 * chunk leaves the hold for the LRU. Lock held. */
static void take(struct fs_engine *e, struct mentry *m)
{
	m->refs++;
	if (m->held)
		hold_release(e, m);
	else
		lru_unlink(e, m);
	lru_push(e, m);
}

/* Mark a chunk the store turned out not to have (evicted by another process, or corrupt and
 * removed) absent, so it is fetched again. Lock held. */
static void mark_gone(struct fs_engine *e, uint32_t c)
{
	struct idx_chunk ch;
	idx_reader_chunk(e->r, c, &ch);
	e->state[c] = (uint8_t)((e->state[c] & ~ST_LOCAL) | ST_ABSENT);
	e->loc[c] = (struct idx_store_loc){0};
	e->resident--;
	e->resident_bytes -= ch.csize;
	e->complete_us = 0;
	e->recorded = false;
}

/* Load local chunk c (ST_LOCAL, not busy) from the store into memory, referenced, for the
 * caller: 0 (*ret set), -EAGAIN when the store no longer has it (now ST_ABSENT: fetch it),
 * or the load's error (counted in fails[c]). Lock held; dropped during the load. */
static int load_locked(struct fs_engine *e, uint32_t c, struct mentry **ret)
{
	struct mentry *m = NULL;
	e->state[c] |= ST_BUSY;
	pthread_mutex_unlock(&e->lock);
	int r = load(e, c, &m);
	pthread_mutex_lock(&e->lock);
	e->state[c] &= (uint8_t)~ST_BUSY;
	pthread_cond_broadcast(&e->cond);
	if (r == 0) {
		m->refs = 1;
		mem_insert(e, m);
		*ret = m;
		return 0;
	}
	if (r != -ENOENT && r != -EBADMSG) {
		e->fails[c]++;
		return r;
	}
	mark_gone(e, c);
	return -EAGAIN;
}

/* Wait on e->cond until `deadline` (CLOCK_MONOTONIC ns). Lock held. */
static void wait_until(struct fs_engine *e, uint64_t deadline)
{
	uint64_t now = cm_now_ns();
	if (now >= deadline)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t wait = deadline - now;
	ts.tv_sec += (time_t)(wait / 1000000000ull);
	ts.tv_nsec += (long)(wait % 1000000000ull);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&e->cond, &e->lock, &ts);
}

int fs_engine_get(struct fs_engine *e, uint32_t c, uint32_t ino, uint32_t ext,
		  struct fs_chunk_ref *ret)
{
	if (c >= e->n)
		return -EIO;
	uint64_t deadline = cm_now_ns() + (uint64_t)e->o.fetch_timeout_s * 1000000000ull;
	struct mentry *m = NULL;
	int r = 0;
	pthread_mutex_lock(&e->lock);
	e->state[c] |= ST_USED;
	e->last_read_ns = cm_now_ns();
	if (!(e->state[c] & ST_LOCAL) && !e->mem[c] && !in_startup(e, c))
		e->last_need_ns = e->last_read_ns;
	if (ino)
		trace_touch(e, c, ino);
	for (;;) {
		if ((m = e->mem[c])) {
			take(e, m);
			count(&e->mem_hits, 1);
			break;
		}
		if (e->state[c] & ST_BUSY) {
			uint32_t f = e->fails[c];
			if (cm_now_ns() >= deadline) {
				r = -ETIMEDOUT;
				break;
			}
			wait_until(e, deadline);
			if (e->fails[c] != f && !e->mem[c] && !(e->state[c] & ST_LOCAL)) {
				r = -EIO;
				break;
			}
			continue;
		}
		if (e->state[c] & ST_LOCAL) {
			r = load_locked(e, c, &m);
			if (r == 0)
				count(&e->store_hits, 1);
			if (r == -EAGAIN) {
				r = 0;
				continue;
			}
			break;
		}
		if (!e->client) {
			char hex[CM_DIGEST_STR_SIZE];
			struct idx_chunk ch;
			idx_reader_chunk(e->r, c, &ch);
			cm_digest_format(ch.digest, hex);
			log_error("read: chunk %s is not in the store and the image has no remote",
				  hex);
			count(&e->errors[E_NOTFOUND], 1);
			r = -EIO;
			break;
		}
		count(&e->misses, 1);
		uint32_t end = plan_run(e, c, e->o.request_max, ino, ext);
		e->fg_active++;
		pthread_mutex_unlock(&e->lock);
		r = fetch_run(e, c, end, KEEP_LRU, &m);
		pthread_mutex_lock(&e->lock);
		if (--e->fg_active == 0)
			pthread_cond_broadcast(&e->fg_cond);
		break;
	}
	pthread_mutex_unlock(&e->lock);
	if (r < 0)
		return r == -ETIMEDOUT ? r : -EIO;
	ret->data = m->data;
	ret->len = m->len;
	ret->priv = m;
	return 0;
}

void fs_engine_put(struct fs_engine *e, struct fs_chunk_ref *ref)
{
	struct mentry *m = ref->priv;
	if (!m)
		return;
	pthread_mutex_lock(&e->lock);
	m->refs--;
	if (m->refs == 0 && e->mem_bytes > e->o.mem_cache)
		mem_trim(e);
	pthread_mutex_unlock(&e->lock);
	ref->priv = NULL;
}

int fs_engine_peek(struct fs_engine *e, uint32_t c, unsigned wait_ms, bool unread,
		   struct fs_chunk_ref *ret)
{
	if (c >= e->n)
		return -EIO;
	uint64_t deadline = cm_now_ns() + (uint64_t)wait_ms * 1000000ull;
	struct mentry *m = NULL;
	int r;
	pthread_mutex_lock(&e->lock);
	uint32_t f = e->fails[c];
	for (;;) {
		if (unread && (e->state[c] & ST_TOUCHED)) {
			r = -EALREADY;
			break;
		}
		if ((m = e->mem[c])) {
			take(e, m);
			r = 0;
			break;
		}
		if (e->stop) {
			r = -ECANCELED;
			break;
		}
		if (e->fails[c] != f) {
			r = -EIO;
			break;
		}
		if ((e->state[c] & (ST_LOCAL | ST_BUSY)) == ST_LOCAL) {
			if ((r = load_locked(e, c, &m)) != -EAGAIN)
				break;
			continue;
		}
		if (!e->client && !(e->state[c] & ST_BUSY)) {
			r = -ENOENT; /* nothing will bring it */
			break;
		}
		if (cm_now_ns() >= deadline) {
			r = -EAGAIN;
			break;
		}
		wait_until(e, deadline);
	}
	if (r == 0)
		e->state[c] |= ST_USED;
	pthread_mutex_unlock(&e->lock);
	if (r < 0)
		return r;
	ret->data = m->data;
	ret->len = m->len;
	ret->priv = m;
	return 0;
}

/* Queue a local load of chunk c if it is in the store but not in memory. Lock held. */
static bool queue_load(struct fs_engine *e, uint32_t c)
{
	if ((e->state[c] & (ST_LOCAL | ST_BUSY)) != ST_LOCAL || e->mem[c] || e->ld_n >= LD_QUEUE)
		return false;
	e->state[c] |= ST_BUSY;
	e->ld[(e->ld_head + e->ld_n) % LD_QUEUE] = c;
	e->ld_n++;
	return true;
}

void fs_engine_prime(struct fs_engine *e, uint32_t ino, uint32_t ext, uint64_t end)
{
	uint32_t n;
	if (idx_reader_extent_count(e->r, ino, &n) < 0)
		return;
	bool queued = false;
	pthread_mutex_lock(&e->lock);
	for (uint32_t i = ext + 1; i < n; i++) {
		struct idx_extent x;
		if (idx_reader_extent(e->r, ino, i, &x) < 0 || x.file_offset >= end)
			break;
		queued |= queue_load(e, x.chunk);
	}
	if (queued)
		pthread_cond_broadcast(&e->ld_cond);
	pthread_mutex_unlock(&e->lock);
}

void fs_engine_preload(struct fs_engine *e, uint32_t c)
{
	if (c >= e->n)
		return;
	pthread_mutex_lock(&e->lock);
	if (!(e->state[c] & ST_TOUCHED) && queue_load(e, c))
		pthread_cond_signal(&e->ld_cond);
	pthread_mutex_unlock(&e->lock);
}

static void *loader_main(void *arg)
{
	struct fs_engine *e = arg;
	pthread_mutex_lock(&e->lock);
	while (!e->stop) {
		if (!e->ld_n) {
			pthread_cond_wait(&e->ld_cond, &e->lock);
			continue;
		}
		uint32_t c = e->ld[e->ld_head];
		e->ld_head = (e->ld_head + 1) % LD_QUEUE;
		e->ld_n--;
		pthread_mutex_unlock(&e->lock);
		struct mentry *m = NULL;
		int r = load(e, c, &m);
		pthread_mutex_lock(&e->lock);
		e->state[c] &= (uint8_t)~ST_BUSY;
		if (r == 0 && !e->mem[c]) {
			m->refs = 0;
			mem_insert(e, m);
			count(&e->preloads, 1);
		} else if (r == 0) {
			free(m);
		} else if (r == -ENOENT || r == -EBADMSG) {
			mark_gone(e, c); /* a reader will fetch it */
		}
		pthread_cond_broadcast(&e->cond);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

void fs_engine_readahead(struct fs_engine *e, uint32_t ino, uint64_t off)
{
	uint32_t i, n;
	if (idx_reader_extent_at(e->r, ino, off, &i) < 0 ||
	    idx_reader_extent_count(e->r, ino, &n) < 0)
		return;
	uint64_t bytes = 0;
	bool queued = false, loads = false;
	pthread_mutex_lock(&e->lock);
	for (; i < n && bytes < RA_WINDOW && e->ra_n < RA_QUEUE; i++) {
		struct idx_extent x;
		struct idx_chunk c;
		if (idx_reader_extent(e->r, ino, i, &x) < 0 ||
		    idx_reader_chunk(e->r, x.chunk, &c) < 0)
			break;
		bytes += c.usize;
		if (queue_load(e, x.chunk)) {
			loads = true;
			continue;
		}
		if (!e->client || (e->state[x.chunk] & (ST_ABSENT | ST_BUSY)) != ST_ABSENT)
			continue;
		e->ra[(e->ra_head + e->ra_n) % RA_QUEUE] = x.chunk;
		e->ra_n++;
		queued = true;
	}
	if (queued)
		pthread_cond_broadcast(&e->pf_cond);
	if (loads)
		pthread_cond_broadcast(&e->ld_cond);
	pthread_mutex_unlock(&e->lock);
}

void fs_engine_read_done(struct fs_engine *e, uint64_t latency_us, uint64_t bytes, int err)
{
	count(&e->reads, 1);
	if (err) {
		count(&e->read_errors, 1);
		return;
	}
	count(&e->read_bytes, bytes);
	fs_hist_add(&e->lat, latency_us);
}

/* ---- prefetch -------------------------------------------------------------------------- */

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Pace prefetch requests to o.bwlimit bytes per second. */
static void bw_pace(struct fs_engine *e, uint64_t len)
{
	if (!e->o.bwlimit)
		return;
	pthread_mutex_lock(&e->bw_lock);
	uint64_t now = cm_now_ns(), start = e->bw_next_ns > now ? e->bw_next_ns : now;
	e->bw_next_ns = start + len * 1000000000ull / e->o.bwlimit;
	pthread_mutex_unlock(&e->bw_lock);
	if (start > now)
		sleep_ns(start - now);
}

/* Wait on `cond` for at most `ms`. Lock held. */
static void cond_wait_ms(struct fs_engine *e, pthread_cond_t *cond, unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cond, &e->lock, &ts);
}

static void pf_wait(struct fs_engine *e, unsigned ms)
{
	cond_wait_ms(e, &e->pf_cond, ms);
}

static uint32_t bg_item(struct fs_engine *e, uint64_t i)
{
	uint32_t p = idx_reader_prefetch_count(e->r), c = UINT32_MAX;
	if (i < p)
		idx_reader_prefetch(e->r, (uint32_t)i, &c);
	else
		c = (uint32_t)(i - p);
	return c;
}

#define REST_QUIET_NS (250 * 1000000ull)
#define REST_NEED_NS  (1000 * 1000000ull)

/* A program is reading: its last read came less than REST_QUIET_NS ago. What waits for the
 * start to be over (the rest of the image, the records' flush, the chunk references) asks
 * this. */
static bool reading(uint64_t now, uint64_t last_read_ns)
{
	return last_read_ns && now - last_read_ns < REST_QUIET_NS;
}

/*
 * The rest of the image (after the startup list) waits while a program reads and finds what
 * it reads already here: then the startup list is doing its job, and fetching, hashing and
 * decompressing the rest would only take CPU from the start (a cold chromium start through
 * a trace-ordered index took 3.09 s with it, 2.76 s without, 5 runs each). It goes on when
 * the reads pause (REST_QUIET_NS) or when readers have to wait for chunks (REST_NEED_NS):
 * with an index whose startup list does not know the program, the rest, in path order, is
 * what brings its files ahead of its reads. Lock held.
 */
bool fs_rest_deferred(uint64_t now, uint64_t last_read_ns, uint64_t last_need_ns)
{
	return reading(now, last_read_ns) && (!last_need_ns || now - last_need_ns >= REST_NEED_NS);
}

static bool rest_deferred(const struct fs_engine *e)
{
	return fs_rest_deferred(cm_now_ns(), e->last_read_ns, e->last_need_ns);
}

/* After the store refused a chunk, the rest of the image waits this long before one more
 * request tries it again: fetching what cannot be kept would only spend the link. */
#define STORE_RETRY_NS (30 * 1000000000ull)

static bool store_refusing(struct fs_engine *e)
{
	uint64_t t = __atomic_load_n(&e->store_refused_ns, __ATOMIC_RELAXED);
	return t && cm_now_ns() - t < STORE_RETRY_NS;
}

static void *prefetch_main(void *arg)
{
	struct fs_engine *e = arg;
	unsigned backoff_ms = 500;
	/* Foreground first for the CPU too: decompressing, hashing and storing the whole
	 * image must not slow down the program whose reads are waiting. Not SCHED_IDLE: a
	 * worker holds the engine's lock and the pack writer's at times, and a reader may wait
	 * for the chunk it is fetching; at idle priority on a busy host those waits would last
	 * as long as the host stays busy. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), 10) < 0)
		log_debug("prefetch: cannot lower the worker's priority: %s", strerror(errno));
	pthread_mutex_lock(&e->lock);
	while (!e->stop) {
		uint32_t c = UINT32_MAX;
		bool from_ra = false, startup = false;
		if (e->ra_n) {
			c = e->ra[e->ra_head];
			e->ra_head = (e->ra_head + 1) % RA_QUEUE;
			e->ra_n--;
			from_ra = true;
		} else if (e->bg_pos < e->bg_total) {
			startup = e->bg_pos < idx_reader_prefetch_count(e->r);
			if (!startup && (rest_deferred(e) || store_refusing(e))) {
				pf_wait(e, 50);
				continue;
			}
			c = bg_item(e, e->bg_pos++);
		} else if (e->bg_failed && e->resident < e->n) {
			/* Some fetches failed (registry away?): start a new pass later. */
			pf_wait(e, backoff_ms);
			backoff_ms = backoff_ms < 8000 ? backoff_ms * 2 : 8000;
			e->bg_failed = false;
			e->bg_pos = 0;
			continue;
		} else {
			pf_wait(e, 1000);
			continue;
		}
		if (c >= e->n || (e->state[c] & (ST_ABSENT | ST_BUSY)) != ST_ABSENT)
			continue;
		/* Foreground fetches first: while any is in flight, at most one prefetch
		 * request runs beside it (so a busy reader does not starve the prefetch that
		 * would serve it next, yet gets most of the link). */
		while (e->fg_active && e->pf_active && !e->stop)
			pthread_cond_wait(&e->fg_cond, &e->lock);
		if (e->stop || (e->state[c] & (ST_ABSENT | ST_BUSY)) != ST_ABSENT)
			continue;
		uint32_t end = plan_run(e, c, e->o.request_max, 0, 0);
		struct idx_chunk a, l;
		idx_reader_chunk(e->r, c, &a);
		idx_reader_chunk(e->r, end - 1, &l);
		e->pf_active++;
		pthread_mutex_unlock(&e->lock);
		uint64_t len = l.pack_offset + l.csize - a.pack_offset;
		if (!from_ra)
			bw_pace(e, len);
		/* Readahead and the startup list are about to be read: keep them in memory, so
		 * the reader does not load them back from the store. */
		enum keep keep = from_ra ? KEEP_LRU : KEEP_NONE;
		if (startup)
			keep = KEEP_HOLD;
		int r = fetch_run(e, c, end, keep, NULL);
		if (r == 0 && !from_ra)
			count(&e->prefetched_bytes, len);
		pthread_mutex_lock(&e->lock);
		e->pf_active--;
		pthread_cond_broadcast(&e->fg_cond);
		if (r < 0) {
			e->bg_failed = true;
			pf_wait(e, backoff_ms);
			backoff_ms = backoff_ms < 8000 ? backoff_ms * 2 : 8000;
		} else {
			backoff_ms = 500;
		}
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/* ---- bookkeeping ----------------------------------------------------------------------- */

static int cmp_touch(const void *a, const void *b)
{
	return memcmp(((const struct fs_cache_touch *)a)->digest,
		      ((const struct fs_cache_touch *)b)->digest, 32);
}

/*
 * Write the bookkeeping of chunks used or added since the last flush in one transaction,
 * then enforce the cache cap when chunks were added. Called without the lock.
 */
static int flush(struct fs_engine *e)
{
	_cleanup_free_ struct fs_cache_touch *v = NULL;
	size_t n = 0, alloc = 0;
	bool added = false;
	int r = 0;
	pthread_mutex_lock(&e->lock);
	bool was_complete = e->complete_us != 0;
	for (uint32_t c = 0; c < e->n; c++) {
		uint8_t st = e->state[c];
		if (!(st & (ST_USED | ST_ADDED)))
			continue;
		if (!(st & ST_LOCAL)) {
			e->state[c] &= (uint8_t) ~(ST_USED | ST_ADDED);
			continue;
		}
		if (n == alloc) {
			size_t na = alloc ? alloc * 2 : 256;
			struct fs_cache_touch *nv = realloc(v, na * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break; /* the rest stays marked for the next flush */
			}
			v = nv;
			alloc = na;
		}
		struct idx_chunk ch;
		idx_reader_chunk(e->r, c, &ch);
		/* What this engine added is a raw frame in its pack (or, with
		 * --chunk-format=zstd, the fetched frame in a chunk file). */
		v[n].csize = e->loc[c].pack ? e->loc[c].len : ch.csize;
		v[n].added = (st & ST_ADDED) != 0;
		memcpy(v[n].digest, ch.digest, 32);
		n++;
		added |= (st & ST_ADDED) != 0;
		e->state[c] &= (uint8_t) ~(ST_USED | ST_ADDED);
	}
	pthread_mutex_unlock(&e->lock);
	/* The chunks' locations first: a row in fs_chunks says the chunk is in the store. A
	 * commit that fails is tried again at the next flush (every 2 s): said the first time
	 * and when it works again, not every time (a full disk may last). */
	bool quiet = e->commit_failing ? cm_log_demote_thread(true) : false;
	int cr = e->writer ? idx_store_writer_commit(e->writer) : 0;
	if (e->commit_failing)
		cm_log_demote_thread(quiet);
	if (cr < 0 && !e->commit_failing)
		log_error("cache: recording chunks of the local pack failed: %s (trying again)",
			  strerror(-cr));
	else if (cr == 0 && e->commit_failing)
		log_info("cache: chunks of the local pack recorded again");
	e->commit_failing = cr < 0;
	/* In key order: the B-tree pages of fs_chunks are then touched once each. */
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_touch);
	if (n && (r = fs_cache_touch_batch(e->store, v, n)) < 0)
		return r;
	if (was_complete && cr == 0) {
		pthread_mutex_lock(&e->lock);
		e->recorded = e->complete_us != 0;
		pthread_mutex_unlock(&e->lock);
	}
	/* The cap, and the free space the host keeps: checked when chunks were added, and
	 * while the store refuses them (a disk filled by something else: the cache yields) */
	uint64_t bytes = 0, short_by = 0;
	if ((added || store_refusing(e)) && (e->o.cache_max || e->o.cache_min_free) &&
	    fs_cache_size(e->store, &bytes, NULL) == 0) {
		uint64_t cap = fs_cache_evict_cap(idx_store_root(e->store), bytes, e->o.cache_max,
						  e->o.cache_min_free, &short_by);
		if (short_by && !e->min_free_said) {
			char f[32], m[32];
			cm_format_bytes(e->o.cache_min_free - short_by, f, sizeof(f));
			cm_format_bytes(e->o.cache_min_free, m, sizeof(m));
			log_info("cache: the store's filesystem has %s free, under the %s the cache "
				 "leaves free: evicting what the store holds beyond that",
				 f, m);
		}
		e->min_free_said = short_by != 0;
		if (bytes > cap) {
			struct fs_cache_gc_result res = {0};
			int er = fs_cache_evict(e->store, cap, false, &res);
			if (er < 0 && er != -ENOSPC)
				r = er;
			else if (res.evicted_chunks)
				log_debug("cache: evicted %llu chunks (%llu bytes)",
					  (unsigned long long)res.evicted_chunks,
					  (unsigned long long)res.evicted_bytes);
		}
	}
	return r;
}

/*
 * Records (the local pack's rows, the chunks' last use) wait while a program is reading, up
 * to FLUSH_DEFER_NS: their SQLite work (~0.25 s of CPU for a chromium start's 5,700 chunks)
 * would otherwise run beside the start it serves, on the same CPUs. A crash in that window
 * loses at most those rows: their chunks are fetched again by the next mount. The image
 * becoming complete, and the engine stopping, are recorded at once. Lock held.
 */
#define FLUSH_DEFER_NS (10 * 1000000000ull)
bool fs_flush_deferred(uint64_t now, uint64_t last_read_ns, uint64_t last_flush_ns,
		       bool complete_unrecorded)
{
	return reading(now, last_read_ns) && now - last_flush_ns < FLUSH_DEFER_NS &&
	       !complete_unrecorded;
}

bool fs_engine_starting(struct fs_engine *e)
{
	pthread_mutex_lock(&e->lock);
	bool listing = e->client && e->o.prefetch != FS_PREFETCH_NONE && !e->stopped &&
		       e->bg_pos < idx_reader_prefetch_count(e->r);
	bool r = listing || reading(cm_now_ns(), e->last_read_ns);
	pthread_mutex_unlock(&e->lock);
	return r;
}

/* A startup chunk held this long without a read (the program did not need it, or not yet)
 * gives its memory back. */
#define HOLD_MAX_NS (10 * 1000000000ull)
bool fs_hold_expired(uint64_t now, uint64_t held_ns)
{
	return now - held_ns >= HOLD_MAX_NS;
}

static bool flush_deferred(const struct fs_engine *e, uint64_t last_flush_ns)
{
	return fs_flush_deferred(cm_now_ns(), e->last_read_ns, last_flush_ns,
				 e->complete_us && !e->recorded);
}

static void *flusher_main(void *arg)
{
	struct fs_engine *e = arg;
	uint64_t last_flush_ns = cm_now_ns(), last_trace_ns = last_flush_ns;
	bool deferred = false;
	pthread_mutex_lock(&e->lock);
	while (!e->stop) {
		/* a deferred flush looks again soon: the reads' pause is what it waits for */
		cond_wait_ms(e, &e->fl_cond, deferred ? 250 : 2000);
		if (e->stop)
			break; /* fs_engine_stop flushes last */
		deferred = flush_deferred(e, last_flush_ns);
		/* docs/trace.md: the trace file is rewritten every 2 s all the same */
		bool trace_due = !deferred || cm_now_ns() - last_trace_ns >= 2000000000ull;
		hold_expire(e, cm_now_ns());
		/* The start is over (nothing held): give the heap the held entries left back. */
		bool trim = e->hold_trim && !e->held_bytes;
		if (trim)
			e->hold_trim = false;
		pthread_mutex_unlock(&e->lock);
		if (trim)
			malloc_trim(0);
		if (!deferred) {
			flush(e);
			last_flush_ns = cm_now_ns();
		}
		if (trace_due) {
			trace_write(e);
			last_trace_ns = cm_now_ns();
		}
		pthread_mutex_lock(&e->lock);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

int fs_engine_new(struct idx_store *store, const struct idx_reader *reader,
		  struct reg_client *client, struct reg_ref *repo, const struct fs_mount_opts *o,
		  struct fs_engine **ret)
{
	struct fs_engine *e = calloc(1, sizeof(*e));
	if (!e) {
		reg_client_free(client);
		reg_ref_free(repo);
		return -ENOMEM;
	}
	e->store = store;
	e->r = reader;
	e->client = client;
	e->repo = repo;
	e->o = *o;
	fs_mount_opts_defaults(&e->o);
	/* 0: chosen by fs_engine_check from the registry's latency, 2 until then. */
	e->threads_auto = e->o.prefetch_threads == 0;
	if (e->threads_auto)
		e->o.prefetch_threads = 2;
	e->n = idx_reader_chunk_count(reader);
	e->t0_ns = cm_now_ns();
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->bw_lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	pthread_cond_init(&e->fg_cond, NULL);
	pthread_cond_init(&e->pf_cond, NULL);
	pthread_cond_init(&e->fl_cond, NULL);
	pthread_cond_init(&e->ld_cond, NULL);
	size_t n = e->n ? e->n : 1;
	e->state = calloc(n, 1);
	e->fails = calloc(n, sizeof(*e->fails));
	e->mem = calloc(n, sizeof(*e->mem));
	e->loc = calloc(n, sizeof(*e->loc));
	e->in_startup = calloc(n / 8 + 1, 1);
	_cleanup_free_ uint8_t *digests = malloc(n * 32);
	if (o->trace_path)
		e->trace = calloc(n, sizeof(*e->trace));
	if (!e->state || !e->fails || !e->mem || !e->loc || !e->in_startup || !digests ||
	    (o->trace_path && !e->trace)) {
		fs_engine_free(e);
		return -ENOMEM;
	}
	for (uint32_t i = 0, np = idx_reader_prefetch_count(reader); i < np; i++) {
		uint32_t c;
		if (idx_reader_prefetch(reader, i, &c) == 0 && c < e->n)
			e->in_startup[c / 8] |= (uint8_t)(1u << (c % 8));
	}
	int r = idx_store_writer_new(store, &e->writer);
	for (uint32_t c = 0; c < e->n; c++) {
		struct idx_chunk ch;
		idx_reader_chunk(reader, c, &ch);
		memcpy(digests + 32 * (size_t)c, ch.digest, 32);
	}
	if (r == 0)
		r = idx_store_locate(store, digests, e->n, e->loc);
	if (r < 0) {
		fs_engine_free(e);
		return r;
	}
	/* Chunk files (an index built here, --chunk-format=zstd) only where a chunks/XX
	 * directory has any: on a cold store, 50,000 faccessat() calls cost 140 ms of the
	 * mount's start. */
	uint8_t dirs[32];
	if (r == 0)
		r = idx_store_chunk_dirs(store, dirs);
	if (r < 0) {
		fs_engine_free(e);
		return r;
	}
	for (uint32_t c = 0; c < e->n; c++) {
		const uint8_t *dg = digests + 32 * (size_t)c;
		bool local = e->loc[c].pack != 0;
		if (!local && (dirs[dg[0] / 8] & (1u << (dg[0] % 8)))) {
			char rel[80]; /* formatted only where a chunk file can be */
			idx_store_chunk_relpath(dg, rel);
			local = faccessat(idx_store_root_fd(store), rel, F_OK, AT_EACCESS) == 0;
		}
		if (local) {
			struct idx_chunk ch; /* (its record read again only when it is local) */
			idx_reader_chunk(reader, c, &ch);
			e->state[c] = ST_LOCAL;
			e->resident++;
			e->resident_bytes += ch.csize;
		} else {
			e->state[c] = ST_ABSENT;
		}
	}
	if (e->resident == e->n) {
		e->complete_us = 1;
		e->recorded = true;
	}
	uint64_t p = idx_reader_prefetch_count(reader);
	e->bg_total = e->o.prefetch == FS_PREFETCH_ALL	     ? p + e->n
		      : e->o.prefetch == FS_PREFETCH_STARTUP ? p
							     : 0;
	*ret = e;
	return 0;
}

/* Up to o.prefetch_threads prefetch workers, once the engine is started; a check that
 * finds the registry far after the start asks for more. Workers serve readahead even
 * without background prefetch. Called by fs_engine_start and by the check after it. */
static int start_workers(struct fs_engine *e)
{
	if (!e->client || !e->workers)
		return 0;
	while (e->n_workers < MIN(e->o.prefetch_threads, e->workers_cap)) {
		int r = pthread_create(&e->workers[e->n_workers], NULL, prefetch_main, e);
		if (r)
			return -r;
		e->n_workers++;
	}
	return 0;
}

int fs_engine_check(struct fs_engine *e)
{
	if (e->resident == e->n)
		return 0;
	if (!e->client)
		return cm_log_ret(-ENOENT,
				  "mount: %u of %u chunks of %s are not in the store and the image "
				  "has no remote: index or pull it again",
				  e->n - e->resident, e->n, idx_reader_digest(e->r));
	/* A pack that holds a missing chunk must be readable with our credentials. */
	for (uint32_t c = 0; c < e->n; c++) {
		if (!(e->state[c] & ST_ABSENT))
			continue;
		struct idx_chunk ch;
		struct idx_pack pk;
		char pd[CM_DIGEST_STR_SIZE];
		idx_reader_chunk(e->r, c, &ch);
		idx_reader_pack(e->r, ch.pack, &pk);
		cm_digest_format(pk.digest, pd);
		uint64_t size = 0, t0 = cm_now_ns();
		int r = reg_client_blob_exists(e->client, e->repo, pd, &size);
		uint64_t ms = (cm_now_ns() - t0) / 1000000;
		/* A distant registry (this first request took LATENCY_FAR or more: a connection
		 * and a round trip or two): more requests in flight keep its link busy; near
		 * one, the CPU is the limit and two are enough. */
		if (e->threads_auto && ms >= LATENCY_FAR_MS && e->o.prefetch_threads < 4) {
			log_debug("mount: registry answered in %llu ms: 4 prefetch workers",
				  (unsigned long long)ms);
			e->o.prefetch_threads = 4;
			int wr = start_workers(e); /* (when already started) */
			if (wr < 0)
				return wr;
		}
		if (r < 0)
			return cm_log_ret(r, "mount: the registry does not serve pack %s: %s", pd,
					  strerror(-r));
		if (size != pk.size)
			return cm_log_ret(-EPROTO,
					  "mount: pack %s has %llu bytes in the registry, "
					  "the index says %llu",
					  pd, (unsigned long long)size,
					  (unsigned long long)pk.size);
		return 0;
	}
	return 0;
}

int fs_engine_start(struct fs_engine *e)
{
	e->workers_cap = MAX(e->o.prefetch_threads, 4u);
	e->workers = calloc(e->workers_cap, sizeof(*e->workers));
	if (!e->workers)
		return -ENOMEM;
	int r = start_workers(e);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < LOADERS; i++) {
		r = pthread_create(&e->loaders[i], NULL, loader_main, e);
		if (r)
			return -r;
		e->n_loaders++;
	}
	r = pthread_create(&e->flusher, NULL, flusher_main, e);
	if (r)
		return -r;
	e->flusher_started = true;
	return 0;
}

void fs_engine_stop(struct fs_engine *e)
{
	pthread_mutex_lock(&e->lock);
	bool done = e->stopped;
	/* (a fetch the registry has stopped answering ends now, not at its deadline) */
	e->stop = e->stopped = true;
	pthread_cond_broadcast(&e->pf_cond);
	pthread_cond_broadcast(&e->fl_cond);
	pthread_cond_broadcast(&e->fg_cond);
	pthread_cond_broadcast(&e->ld_cond);
	pthread_mutex_unlock(&e->lock);
	if (done)
		return;
	for (unsigned i = 0; i < e->n_loaders; i++)
		pthread_join(e->loaders[i], NULL);
	e->n_loaders = 0;
	for (unsigned i = 0; i < e->n_workers; i++)
		pthread_join(e->workers[i], NULL);
	e->n_workers = 0;
	if (e->flusher_started)
		pthread_join(e->flusher, NULL);
	e->flusher_started = false;
	flush(e);
	trace_write(e);
}

void fs_engine_free(struct fs_engine *e)
{
	if (!e)
		return;
	fs_engine_stop(e);
	for (struct mentry *m = e->lru_head, *next; m; m = next) {
		next = m->next;
		free(m);
	}
	for (struct mentry *m = e->hold_head, *next; m; m = next) {
		next = m->next;
		free(m);
	}
	free(e->workers);
	free(e->state);
	idx_store_writer_free(e->writer);
	free(e->fails);
	free(e->loc);
	free(e->in_startup);
	free(e->mem);
	free(e->trace);
	reg_client_free(e->client);
	reg_ref_free(e->repo);
	pthread_mutex_destroy(&e->lock);
	pthread_mutex_destroy(&e->bw_lock);
	pthread_cond_destroy(&e->cond);
	pthread_cond_destroy(&e->fg_cond);
	pthread_cond_destroy(&e->pf_cond);
	pthread_cond_destroy(&e->fl_cond);
	pthread_cond_destroy(&e->ld_cond);
	free(e);
}

/* ---- stats ----------------------------------------------------------------------------- */

static void add_u64(json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_uint64(v));
}

/* {count, p50, p90, p99, max} of a latency histogram, microseconds. */
static json_object *hist_json(struct fs_hist *h)
{
	json_object *o = json_object_new_object();
	add_u64(o, "count", get(&h->count));
	add_u64(o, "p50", fs_hist_quantile(h, 0.50));
	add_u64(o, "p90", fs_hist_quantile(h, 0.90));
	add_u64(o, "p99", fs_hist_quantile(h, 0.99));
	add_u64(o, "max", get(&h->max_us));
	return o;
}

int fs_engine_stats(struct fs_engine *e, struct json_object **ret)
{
	static const char *const modes[] = {"all", "startup", "none"};
	json_object *j = json_object_new_object();
	if (!j)
		return -ENOMEM;
	struct idx_stats is;
	idx_reader_stats(e->r, &is);
	pthread_mutex_lock(&e->lock);
	uint32_t resident = e->resident;
	uint64_t rbytes = e->resident_bytes, mem = e->mem_bytes, complete = e->complete_us;
	uint64_t held = e->held_bytes, held_peak = e->held_peak;
	bool recorded = e->recorded;
	uint64_t bg_pos = e->bg_pos, bg_total = e->bg_total;
	uint32_t touched = e->trace_n;
	pthread_mutex_unlock(&e->lock);
	json_object_object_add(j, "index", json_object_new_string(idx_reader_digest(e->r)));
	json_object_object_add(j, "remote", json_object_new_boolean(e->client != NULL));
	add_u64(j, "uptime_ms", (cm_now_ns() - e->t0_ns) / 1000000);
	add_u64(j, "fetched_bytes", get(&e->fetched_bytes));
	add_u64(j, "fetch_requests", get(&e->fetch_requests));
	add_u64(j, "fetched_chunks", get(&e->fetched_chunks));
	add_u64(j, "prefetched_bytes", get(&e->prefetched_bytes));
	add_u64(j, "reads", get(&e->reads));
	add_u64(j, "read_bytes", get(&e->read_bytes));
	add_u64(j, "read_errors", get(&e->read_errors));
	add_u64(j, "mem_hits", get(&e->mem_hits));
	add_u64(j, "store_hits", get(&e->store_hits));
	add_u64(j, "preloads", get(&e->preloads));
	add_u64(j, "misses", get(&e->misses));
	add_u64(j, "unstored_chunks", get(&e->unstored));
	add_u64(j, "mem_cache_bytes", mem);
	add_u64(j, "held_bytes", held);
	add_u64(j, "held_peak_bytes", held_peak);
	add_u64(j, "chunks", e->n);
	add_u64(j, "resident_chunks", resident);
	add_u64(j, "stored_bytes", is.stored_bytes);
	add_u64(j, "resident_bytes", rbytes);
	json_object_object_add(j, "resident_pct",
			       json_object_new_double(e->n ? 100.0 * resident / e->n : 100.0));
	if (e->o.trace_path)
		add_u64(j, "touched_chunks", touched);
	json_object *pf = json_object_new_object();
	json_object_object_add(pf, "mode", json_object_new_string(modes[e->o.prefetch]));
	add_u64(pf, "workers", e->n_workers);
	add_u64(pf, "position", bg_pos < bg_total ? bg_pos : bg_total);
	add_u64(pf, "total", bg_total);
	/* Complete once every chunk is in the store for every process to see. */
	json_object_object_add(pf, "complete", json_object_new_boolean(complete != 0 && recorded));
	if (complete > 1)
		add_u64(pf, "complete_ms", complete / 1000);
	json_object_object_add(j, "prefetch", pf);
	json_object_object_add(j, "read_latency_us", hist_json(&e->lat));
	json_object_object_add(j, "fetch_latency_us", hist_json(&e->fetch_lat));
	json_object *errs = json_object_new_object();
	for (int i = 0; i < E_N; i++)
		add_u64(errs, cause_names[i], get(&e->errors[i]));
	json_object_object_add(j, "errors", errs);
	*ret = j;
	return 0;
}
