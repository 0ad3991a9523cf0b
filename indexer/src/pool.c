/*
 * Worker pool for chunk hashing/compression (see pool.h).
 *
 * Locking: `lock` guards the job queue (jobs, qhead, qlen), `slots`, `chunks`, the digest
 * map and `err`. Workers do the expensive part (SHA-256, zstd, write) without the lock.
 * Staging: ROOT/tmp/build.<pid>.<n>/<hex>; commit renames into ROOT/chunks/xx/<hex>.
 */
#include "pool.h"

#include "indexer/store.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define QUEUE_LEN 32
#define MAX_THREADS 16

struct job {
	uint8_t *data;
	uint32_t len;
	uint32_t slot;
};

struct idx_pool {
	struct idx_store *store;
	int level;
	uint8_t (*hot)[32]; /* sorted ids compressed at hot_level (read-only once workers run) */
	uint32_t nhot;
	int hot_level;
	int staging_fd;
	char staging[96]; /* relative to the store root */

	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full, idle;
	struct job queue[QUEUE_LEN]; /* guarded by lock */
	uint32_t qhead, qlen, busy;  /* guarded by lock */
	bool stop;		     /* guarded by lock */
	int err;		     /* first error, guarded by lock */

	uint32_t *slots; /* slot -> unique chunk, guarded by lock */
	uint32_t nslots, slots_cap;
	struct idx_uchunk *chunks; /* guarded by lock (csize/is_new written by owner worker) */
	uint32_t nchunks, chunks_cap;
	uint32_t *map; /* open addressing: chunk index + 1, 0 empty; guarded by lock */
	uint32_t map_size;

	pthread_t threads[MAX_THREADS];
	int nthreads;
};

static uint32_t *map_slot(struct idx_pool *p, const uint8_t d[32])
{
	uint64_t h;
	memcpy(&h, d, sizeof(h));
	uint32_t i = (uint32_t)h & (p->map_size - 1);
	for (;;) {
		uint32_t v = p->map[i];
		if (!v || !memcmp(p->chunks[v - 1].digest, d, 32))
			return &p->map[i];
		i = (i + 1) & (p->map_size - 1);
	}
}

static int map_grow(struct idx_pool *p)
{
	uint32_t n = p->map_size ? p->map_size * 2 : 1u << 16;
	uint32_t *old = p->map, olds = p->map_size;
	p->map = calloc(n, sizeof(uint32_t));
	if (!p->map) {
		p->map = old;
		return -ENOMEM;
	}
	p->map_size = n;
	for (uint32_t i = 0; i < olds; i++)
		if (old[i])
			*map_slot(p, p->chunks[old[i] - 1].digest) = old[i];
	free(old);
	return 0;
}

/* Find or add the unique chunk for `d`. Returns its index; *created tells whether new. */
static int chunk_intern(struct idx_pool *p, const uint8_t d[32], uint32_t usize, bool *created)
{
	if ((p->nchunks + 1) * 2 > p->map_size) {
		int r = map_grow(p);
		if (r < 0)
			return r;
	}
	uint32_t *m = map_slot(p, d);
	*created = false;
	if (*m)
		return (int)(*m - 1);
	if (p->nchunks == p->chunks_cap) {
		uint32_t n = p->chunks_cap ? p->chunks_cap * 2 : 4096;
		struct idx_uchunk *c = realloc(p->chunks, n * sizeof(*c));
		if (!c)
			return -ENOMEM;
		p->chunks = c;
		p->chunks_cap = n;
	}
	struct idx_uchunk *c = &p->chunks[p->nchunks];
	memset(c, 0, sizeof(*c));
	memcpy(c->digest, d, 32);
	c->usize = usize;
	c->order = UINT32_MAX;
	*m = ++p->nchunks;
	*created = true;
	return (int)(p->nchunks - 1);
}

static void staging_name(const uint8_t d[32], char out[72])
{
	cm_hex_format(d, 32, out);
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

int idx_pool_set_hot(struct idx_pool *p, const uint8_t (*ids)[32], uint32_t n, int level)
{
	free(p->hot);
	p->hot = NULL;
	p->nhot = 0;
	if (!n)
		return 0;
	p->hot = malloc((size_t)n * 32);
	if (!p->hot)
		return -ENOMEM;
	memcpy(p->hot, ids, (size_t)n * 32);
	qsort(p->hot, n, 32, cmp_id);
	p->nhot = n;
	p->hot_level = level;
	return 0;
}

static ZSTD_CCtx *new_cctx(int level)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	if (cctx) {
		/* Fixed parameters: the stored bytes (and so pack digests) depend only on the
		 * data, the level and the zstd version. */
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 0);
	}
	return cctx;
}

/* Hash, dedupe, compress (a hot chunk with `hot`, made on first use) and stage one chunk. */
static int process(struct idx_pool *p, ZSTD_CCtx *cctx, ZSTD_CCtx **hot, uint8_t **cbuf,
		   size_t *ccap, const struct job *j)
{
	uint8_t d[32];
	cm_sha256(j->data, j->len, d);
	bool created;
	pthread_mutex_lock(&p->lock);
	int ci = chunk_intern(p, d, j->len, &created);
	if (ci >= 0)
		p->slots[j->slot] = (uint32_t)ci;
	pthread_mutex_unlock(&p->lock);
	if (ci < 0)
		return ci;
	if (!created)
		return 0;

	/* Every chunk is compressed and staged, also when the store has it already: the
	 * stored bytes in the index and its packs must depend on the data alone, not on how
	 * an earlier build (another zstd level or release, or a pack fetched from a registry)
	 * compressed the store's copy. Only chunks the store lacks are published. */
	char rel[80];
	idx_store_chunk_relpath(d, rel);
	struct stat st;
	bool is_new = !(fstatat(idx_store_root_fd(p->store), rel, &st, 0) == 0 && st.st_size > 0);
	size_t bound = ZSTD_compressBound(j->len);
	if (bound > *ccap) {
		uint8_t *nb = realloc(*cbuf, bound);
		if (!nb)
			return -ENOMEM;
		*cbuf = nb;
		*ccap = bound;
	}
	if (p->nhot && bsearch(d, p->hot, p->nhot, 32, cmp_id)) {
		if (!*hot && !(*hot = new_cctx(p->hot_level)))
			return -ENOMEM;
		cctx = *hot;
	}
	size_t n = ZSTD_compress2(cctx, *cbuf, *ccap, j->data, j->len);
	if (ZSTD_isError(n))
		return cm_log_ret(-EIO, "zstd: %s", ZSTD_getErrorName(n));
	char name[72];
	staging_name(d, name);
	_cleanup_close_ int fd =
		openat(p->staging_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return cm_log_ret(-errno, "staging chunk: %s", strerror(errno));
	int r = cm_write_full(fd, *cbuf, n);
	if (r < 0)
		return cm_log_ret(r, "staging chunk: %s", strerror(-r));
	uint32_t csize = (uint32_t)n;
	pthread_mutex_lock(&p->lock);
	p->chunks[ci].csize = csize;
	p->chunks[ci].is_new = is_new;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void *worker(void *arg)
{
	struct idx_pool *p = arg;
	ZSTD_CCtx *cctx = new_cctx(p->level), *hot = NULL;
	uint8_t *cbuf = NULL;
	size_t ccap = 0;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->qlen && !p->stop)
			pthread_cond_wait(&p->not_empty, &p->lock);
		if (!p->qlen && p->stop)
			break;
		struct job j = p->queue[p->qhead];
		p->qhead = (p->qhead + 1) % QUEUE_LEN;
		p->qlen--;
		p->busy++;
		pthread_cond_signal(&p->not_full);
		pthread_mutex_unlock(&p->lock);

		int r = cctx ? process(p, cctx, &hot, &cbuf, &ccap, &j) : -ENOMEM;
		free(j.data);

		pthread_mutex_lock(&p->lock);
		if (r < 0 && !p->err)
			p->err = r;
		p->busy--;
		if (!p->qlen && !p->busy)
			pthread_cond_broadcast(&p->idle);
	}
	pthread_mutex_unlock(&p->lock);
	free(cbuf);
	ZSTD_freeCCtx(cctx);
	ZSTD_freeCCtx(hot);
	return NULL;
}

int idx_pool_new(struct idx_store *store, int threads, int level, struct idx_pool **ret)
{
	static unsigned long counter;
	struct idx_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->store = store;
	p->level = level;
	p->staging_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->not_empty, NULL);
	pthread_cond_init(&p->not_full, NULL);
	pthread_cond_init(&p->idle, NULL);
	snprintf(p->staging, sizeof(p->staging), "tmp/build.%ld.%lu", (long)getpid(),
		 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
	int rootfd = idx_store_root_fd(store);
	if (mkdirat(rootfd, p->staging, 0700) < 0 ||
	    (p->staging_fd = openat(rootfd, p->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		int r = -errno;
		log_error("cannot create staging directory: %s", strerror(errno));
		idx_pool_free(p);
		return r;
	}
	if (threads <= 0)
		threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (threads < 1)
		threads = 1;
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	for (int i = 0; i < threads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
			break;
		p->nthreads++;
	}
	if (!p->nthreads) {
		idx_pool_free(p);
		return -EAGAIN;
	}
	*ret = p;
	return 0;
}

int idx_pool_submit(struct idx_pool *p, const uint8_t *data, size_t len, uint32_t *ret_slot)
{
	uint8_t *copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	pthread_mutex_lock(&p->lock);
	if (p->nslots == p->slots_cap) {
		uint32_t n = p->slots_cap ? p->slots_cap * 2 : 16384;
		uint32_t *s = realloc(p->slots, n * sizeof(*s));
		if (!s) {
			pthread_mutex_unlock(&p->lock);
			free(copy);
			return -ENOMEM;
		}
		p->slots = s;
		p->slots_cap = n;
	}
	while (p->qlen == QUEUE_LEN && !p->err)
		pthread_cond_wait(&p->not_full, &p->lock);
	int err = p->err;
	if (err) {
		pthread_mutex_unlock(&p->lock);
		free(copy);
		return err;
	}
	uint32_t slot = p->nslots++;
	p->slots[slot] = UINT32_MAX;
	p->queue[(p->qhead + p->qlen) % QUEUE_LEN] = (struct job){copy, (uint32_t)len, slot};
	p->qlen++;
	pthread_cond_signal(&p->not_empty);
	pthread_mutex_unlock(&p->lock);
	*ret_slot = slot;
	return 0;
}

int idx_pool_finish(struct idx_pool *p)
{
	pthread_mutex_lock(&p->lock);
	while (p->qlen || p->busy)
		pthread_cond_wait(&p->idle, &p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->not_empty);
	int err = p->err;
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	p->nthreads = 0;
	return err;
}

uint32_t idx_pool_slot_chunk(const struct idx_pool *p, uint32_t slot)
{
	return p->slots[slot];
}

struct idx_uchunk *idx_pool_chunks(struct idx_pool *p, uint32_t *ret_n)
{
	*ret_n = p->nchunks;
	return p->chunks;
}

int idx_pool_open_chunk(struct idx_pool *p, uint32_t chunk)
{
	struct idx_uchunk *c = &p->chunks[chunk];
	char name[80];
	int fd;
	staging_name(c->digest, name);
	fd = openat(p->staging_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd < 0 ? -errno : fd;
	/* Already committed (moved into the store). */
	return idx_store_open_chunk(p->store, c->digest);
}

int idx_pool_read_chunk(struct idx_pool *p, uint32_t chunk, uint8_t *buf)
{
	struct idx_uchunk *c = &p->chunks[chunk];
	_cleanup_close_ int fd = idx_pool_open_chunk(p, chunk);
	if (fd < 0)
		return fd;
	_cleanup_free_ uint8_t *cb = malloc(c->csize);
	if (!cb)
		return -ENOMEM;
	int r = cm_pread_full(fd, cb, c->csize, 0);
	if (r < 0)
		return r;
	size_t n = ZSTD_decompress(buf, c->usize, cb, c->csize);
	return ZSTD_isError(n) || n != c->usize ? -EBADMSG : 0;
}

int idx_pool_commit(struct idx_pool *p, uint64_t *ret_new_chunks, uint64_t *ret_new_bytes)
{
	uint64_t n = 0, bytes = 0;
	for (uint32_t i = 0; i < p->nchunks; i++) {
		struct idx_uchunk *c = &p->chunks[i];
		if (!c->is_new || c->order == UINT32_MAX)
			continue; /* only chunks the index references are published */
		char name[72], rel[80];
		staging_name(c->digest, name);
		idx_store_chunk_relpath(c->digest, rel);
		int r = idx_store_rename_into(p->store, p->staging_fd, name, rel);
		if (r < 0)
			return cm_log_ret(r, "publishing chunk %s: %s", name, strerror(-r));
		n++;
		bytes += c->csize;
	}
	*ret_new_chunks = n;
	*ret_new_bytes = bytes;
	return 0;
}

void idx_pool_free(struct idx_pool *p)
{
	if (!p)
		return;
	if (p->nthreads)
		idx_pool_finish(p);
	for (uint32_t i = 0; i < p->qlen; i++)
		free(p->queue[(p->qhead + i) % QUEUE_LEN].data);
	if (p->staging_fd >= 0) {
		close(p->staging_fd);
		cm_rm_rf_at(idx_store_root_fd(p->store), p->staging);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->not_empty);
	pthread_cond_destroy(&p->not_full);
	pthread_cond_destroy(&p->idle);
	free(p->slots);
	free(p->chunks);
	free(p->map);
	free(p->hot);
	free(p);
}
