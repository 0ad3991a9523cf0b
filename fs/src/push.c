/*
 * The page-cache pusher (push.h). One thread walks the startup list's uses in list order:
 * a unit is one extent of one regular file whose chunk is on the list (a chunk shared by
 * several files is several units). For each, as soon as the engine has the chunk, the
 * unit's whole pages go to the kernel in one FUSE_NOTIFY_STORE message, or, when the kernel
 * does not have the file's inode yet, onto that inode's waiting list, sent on its lookup.
 *
 * Pages and chunk boundaries: chunks are content-defined, so most chunk boundaries fall
 * inside a page. A unit sends the pages wholly inside its extent, and a page across its
 * boundary with a neighbouring extent when that neighbour's unit was sent already (the
 * second of the two sends it; the kernel marks only whole pages, or a file's last page,
 * up to date). A page across a boundary with an extent outside the list is left to reads.
 */
#include "push.h"
#include "engine.h"

#include "indexer/index.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <json-c/json.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define NONE UINT32_MAX
/* How long one wait for a chunk lasts before the thread looks at its queue and stop flag. */
#define PEEK_WAIT_MS 100
/* The kernel creates a looked-up inode just after the answer is written: a send that finds
 * no inode right after a lookup is tried again this often, 1 ms apart. */
#define ENOENT_TRIES 3
/* A chunk the prefetch has not brought after this long (its fetch failed before the wait
 * began, and the pass that tries it again is far): its pages are left to reads. */
#define GIVE_UP_NS (30 * 1000000000ull)
/* Units whose chunks are loaded from the store ahead of the one being sent. */
#define LOAD_AHEAD 64

enum { K_KNOWN = 1, K_QUEUED = 2 };

struct unit {
	uint32_t pos; /* the chunk's (first) position in the startup list */
	uint32_t ino;
	uint32_t ext;	/* extent index in the file */
	uint32_t chunk; /* that extent's chunk */
	uint32_t next;	/* the inode's waiting list (lock) */
};

struct fs_push {
	struct fs_engine *e;
	const struct idx_reader *r;
	int fd;
	uint64_t page;
	uint32_t n_ino;
	uint8_t *kst;	 /* [n_ino + 1] K_*: atomics */
	uint32_t *pend;	 /* [n_ino + 1] first waiting unit or NONE; lock */
	uint32_t *ready; /* [n_ino + 1] ring of inodes whose units may go now; lock */
	uint32_t ready_head, ready_n;
	struct unit *u; /* by (pos, ino, ext); thread only */
	uint32_t n_u;
	uint8_t *done;	  /* [n_u] sent (or nothing to send); thread only */
	uint32_t *pos_of; /* [chunk count] first position in the list, or NONE; thread only */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop; /* written under lock, read atomically */
	pthread_t thread;
	bool started;
	/* counters (atomics) */
	uint64_t bytes, sends, waiting, lost, skipped;
};

static void count(uint64_t *c, int64_t v)
{
	__atomic_add_fetch(c, (uint64_t)v, __ATOMIC_RELAXED);
}

static int cmp_unit(const void *a, const void *b)
{
	const struct unit *x = a, *y = b;
	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->ext < y->ext ? -1 : x->ext > y->ext;
}

/* The units: every extent of every regular file whose chunk is on the startup list. */
static int build(struct fs_push *p)
{
	uint32_t nc = idx_reader_chunk_count(p->r), np = idx_reader_prefetch_count(p->r);
	size_t cap = 0;
	if (!(p->pos_of = malloc((size_t)(nc ? nc : 1) * sizeof(*p->pos_of))))
		return -ENOMEM;
	for (uint32_t c = 0; c < nc; c++)
		p->pos_of[c] = NONE;
	for (uint32_t k = 0; k < np; k++) {
		uint32_t c;
		if (idx_reader_prefetch(p->r, k, &c) == 0 && c < nc && p->pos_of[c] == NONE)
			p->pos_of[c] = k;
	}
	for (uint32_t ino = 1; ino <= p->n_ino; ino++) {
		struct idx_inode in;
		uint32_t n;
		if (idx_reader_inode(p->r, ino, &in) < 0 || !S_ISREG(in.mode) ||
		    idx_reader_extent_count(p->r, ino, &n) < 0)
			continue;
		for (uint32_t x = 0; x < n; x++) {
			struct idx_extent ex;
			if (idx_reader_extent(p->r, ino, x, &ex) < 0 || p->pos_of[ex.chunk] == NONE)
				continue;
			if (p->n_u == cap) {
				cap = cap ? cap * 2 : 1024;
				struct unit *nu = realloc(p->u, cap * sizeof(*nu));
				if (!nu)
					return -ENOMEM;
				p->u = nu;
			}
			p->u[p->n_u++] = (struct unit){p->pos_of[ex.chunk], ino, x, ex.chunk, NONE};
		}
	}
	qsort(p->u, p->n_u, sizeof(*p->u), cmp_unit);
	if (!(p->done = calloc(p->n_u ? p->n_u : 1, 1)))
		return -ENOMEM;
	return 0;
}

/* The unit of extent `x` of `ino` (*ex: the extent), or NONE when that extent's chunk is not
 * on the list. */
static uint32_t unit_of(const struct fs_push *p, uint32_t ino, uint32_t x, struct idx_extent *ex)
{
	if (idx_reader_extent(p->r, ino, x, ex) < 0 || p->pos_of[ex->chunk] == NONE)
		return NONE;
	uint32_t pos = p->pos_of[ex->chunk], lo = 0, hi = p->n_u;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (p->u[mid].pos < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t k = lo; k < p->n_u && p->u[k].pos == pos; k++)
		if (p->u[k].ino == ino && p->u[k].ext == x)
			return k;
	return NONE;
}

/* Bytes [a, b) of the file, which extent `x` at `off` holds in `ref`: one iovec. */
static void piece(struct iovec *v, const struct fs_chunk_ref *ref, uint64_t off, uint64_t a,
		  uint64_t b)
{
	v->iov_base = (void *)(ref->data + (a - off));
	v->iov_len = (size_t)(b - a);
}

/* Send [start, end) of `ino` from up to three pieces. 0, -ENOENT (the kernel has no such
 * inode), or another -errno (the mount is gone). */
static int store(struct fs_push *p, uint32_t ino, uint64_t start, const struct iovec *pieces, int n)
{
	size_t size = 0;
	for (int i = 0; i < n; i++)
		size += pieces[i].iov_len;
	struct fuse_notify_store_out so = {.nodeid = ino, .offset = start, .size = (uint32_t)size};
	struct fuse_out_header oh = {.len = (uint32_t)(sizeof(oh) + sizeof(so) + size),
				     .error = FUSE_NOTIFY_STORE};
	struct iovec iov[5] = {{&oh, sizeof(oh)}, {&so, sizeof(so)}};
	memcpy(iov + 2, pieces, (size_t)n * sizeof(*pieces));
	for (int t = 0;; t++) {
		ssize_t w = writev(p->fd, iov, n + 2);
		if (w == (ssize_t)oh.len)
			return 0;
		int err = w < 0 ? errno : EIO;
		if (err != ENOENT || t + 1 == ENOENT_TRIES)
			return -err;
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
	}
}

/* Put unit k on its inode's waiting list. Lock held. */
static void wait_lookup(struct fs_push *p, uint32_t k)
{
	uint32_t ino = p->u[k].ino;
	p->u[k].next = p->pend[ino];
	p->pend[ino] = k;
	count(&p->waiting, 1);
}

/* Whether extent x of `ino` is a unit already sent; *ret = the extent. */
static bool sent(const struct fs_push *p, uint32_t ino, uint32_t x, struct idx_extent *ret)
{
	uint32_t k = unit_of(p, ino, x, ret);
	return k != NONE && p->done[k];
}

/*
 * Send unit k's pages from `ref` (its chunk), or queue it for its inode's lookup. Returns
 * 0, or -errno when the mount takes no pages any more.
 */
static int send_unit(struct fs_push *p, uint32_t k, const struct fs_chunk_ref *ref)
{
	const struct unit *u = &p->u[k];
	struct idx_inode in;
	struct idx_extent ex, nx, px;
	uint32_t n;
	if (idx_reader_inode(p->r, u->ino, &in) < 0 ||
	    idx_reader_extent_count(p->r, u->ino, &n) < 0 ||
	    idx_reader_extent(p->r, u->ino, u->ext, &ex) < 0) {
		p->done[k] = 1;
		return 0;
	}
	uint64_t pg = p->page, off = ex.file_offset, end = off + ref->len;
	bool last = u->ext + 1 == n;
	if (end > in.size || (last && end != in.size) ||
	    (!last &&
	     (idx_reader_extent(p->r, u->ino, u->ext + 1, &nx) < 0 || nx.file_offset != end))) {
		p->done[k] = 1; /* not this extent's bytes: the index promised contiguous extents */
		return 0;
	}
	pthread_mutex_lock(&p->lock);
	bool known = __atomic_load_n(&p->kst[u->ino], __ATOMIC_ACQUIRE) & K_KNOWN;
	if (!known)
		wait_lookup(p, k);
	pthread_mutex_unlock(&p->lock);
	if (!known)
		return 0;

	/* Whole pages of the extent; a file's last page up to its end. */
	uint64_t a = (off + pg - 1) / pg * pg, b = last ? end : end / pg * pg;
	struct fs_chunk_ref lead = {0}, trail = {0};
	if (off % pg && u->ext > 0 && sent(p, u->ino, u->ext - 1, &px) &&
	    px.file_offset <= off / pg * pg &&
	    fs_engine_peek(p->e, px.chunk, 0, false, &lead) == 0) {
		if (px.file_offset + lead.len == off)
			a = off / pg * pg;
		else
			fs_engine_put(p->e, &lead);
	}
	if (end % pg && !last && sent(p, u->ino, u->ext + 1, &nx) &&
	    fs_engine_peek(p->e, nx.chunk, 0, false, &trail) == 0) {
		uint64_t tb = MIN(end / pg * pg + pg, in.size);
		if (tb <= end + trail.len)
			b = tb;
		else
			fs_engine_put(p->e, &trail);
	}
	struct iovec v[3];
	int nv = 0, r = 0;
	if (a < off)
		piece(&v[nv++], &lead, px.file_offset, a, off);
	if (MAX(a, off) < MIN(b, end))
		piece(&v[nv++], ref, off, MAX(a, off), MIN(b, end));
	if (b > end)
		piece(&v[nv++], &trail, end, end, b);
	if (a < b)
		r = store(p, u->ino, a, v, nv);
	fs_engine_put(p->e, &lead);
	fs_engine_put(p->e, &trail);
	if (r == -ENOENT) {
		/* The kernel let the inode go (or has not made it yet): its next lookup. */
		pthread_mutex_lock(&p->lock);
		__atomic_and_fetch(&p->kst[u->ino], (uint8_t)~K_KNOWN, __ATOMIC_ACQ_REL);
		wait_lookup(p, k);
		pthread_mutex_unlock(&p->lock);
		count(&p->lost, 1);
		return 0;
	}
	if (r < 0)
		return r;
	if (a < b) {
		count(&p->bytes, (int64_t)(b - a));
		count(&p->sends, 1);
	}
	p->done[k] = 1;
	return 0;
}

/* Send the waiting units of the inodes looked up since the last call, in list order.
 * -errno when the mount takes no pages any more. */
static int drain(struct fs_push *p)
{
	for (;;) {
		pthread_mutex_lock(&p->lock);
		if (!p->ready_n || p->stop) {
			pthread_mutex_unlock(&p->lock);
			return 0;
		}
		uint32_t ino = p->ready[p->ready_head];
		p->ready_head = (p->ready_head + 1) % (p->n_ino + 1);
		p->ready_n--;
		__atomic_and_fetch(&p->kst[ino], (uint8_t)~K_QUEUED, __ATOMIC_ACQ_REL);
		/* the list is newest first: reverse it */
		uint32_t k = p->pend[ino], rev = NONE;
		p->pend[ino] = NONE;
		while (k != NONE) {
			uint32_t nk = p->u[k].next;
			p->u[k].next = rev;
			rev = k;
			k = nk;
			count(&p->waiting, -1);
		}
		pthread_mutex_unlock(&p->lock);
		for (k = rev; k != NONE;) {
			uint32_t nk = p->u[k].next;
			struct fs_chunk_ref ref;
			if (fs_engine_peek(p->e, p->u[k].chunk, 0, false, &ref) == 0) {
				int r = send_unit(p, k, &ref);
				fs_engine_put(p->e, &ref);
				if (r < 0)
					return r;
			}
			k = nk;
		}
	}
}

static void *push_main(void *arg)
{
	struct fs_push *p = arg;
	uint64_t t0 = cm_now_ns();
	int r = build(p);
	if (r < 0) {
		log_warn("push: cannot list the startup pages: %s", strerror(-r));
		return NULL;
	}
	log_debug("push: %u units listed in %llu us", p->n_u,
		  (unsigned long long)((cm_now_ns() - t0) / 1000));
	uint64_t since = cm_now_ns();
	bool logged = false;
	for (uint32_t i = 0, ahead = 0;;) {
		if ((r = drain(p)) < 0)
			break;
		/* (waiting for a chunk that does not come would keep it here GIVE_UP_NS a unit) */
		if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
			break;
		if (i < p->n_u) {
			struct fs_chunk_ref ref;
			/* chunks in the store load in parallel ahead of the sends (a warm start) */
			for (; ahead < p->n_u && ahead < i + LOAD_AHEAD; ahead++)
				fs_engine_preload(p->e, p->u[ahead].chunk);
			/* (its failures skip the unit: only a send's end the thread) */
			int pr = fs_engine_peek(p->e, p->u[i].chunk, PEEK_WAIT_MS, true, &ref);
			if (pr == -EAGAIN && cm_now_ns() - since < GIVE_UP_NS)
				continue;
			if (pr == -ECANCELED)
				break;
			if (pr == -EALREADY) {
				p->done[i] = 1;
				count(&p->skipped, 1);
			} else if (pr == 0) {
				r = send_unit(p, i, &ref);
				fs_engine_put(p->e, &ref);
				if (r < 0)
					break;
			}
			i++;
			since = cm_now_ns();
			continue;
		}
		if (!logged) {
			log_debug(
			    "push: startup list gone through in %llu ms: %llu bytes in %llu "
			    "sends, %llu units waiting for a lookup",
			    (unsigned long long)((cm_now_ns() - t0) / 1000000),
			    (unsigned long long)__atomic_load_n(&p->bytes, __ATOMIC_RELAXED),
			    (unsigned long long)__atomic_load_n(&p->sends, __ATOMIC_RELAXED),
			    (unsigned long long)__atomic_load_n(&p->waiting, __ATOMIC_RELAXED));
			logged = true;
		}
		pthread_mutex_lock(&p->lock);
		while (!p->stop && !p->ready_n)
			pthread_cond_wait(&p->cond, &p->lock);
		bool stop = p->stop;
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
	}
	/* (a mount that is going away answers ENODEV or ENOTCONN) */
	if (r == -ENODEV || r == -ENOTCONN)
		log_debug("push: stopped: %s", strerror(-r));
	else if (r < 0 && r != -ECANCELED)
		log_warn("push: the kernel refused pages (%s): the rest is left to reads",
			 strerror(-r));
	return NULL;
}

int fs_push_start(struct fs_engine *e, const struct idx_reader *r, int fd, struct fs_push **ret)
{
	*ret = NULL;
	if (idx_reader_prefetch_count(r) == 0)
		return 0;
	struct fs_push *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->e = e;
	p->r = r;
	p->fd = fd;
	long pg = sysconf(_SC_PAGESIZE);
	p->page = pg > 0 ? (uint64_t)pg : 4096;
	p->n_ino = idx_reader_inode_count(r);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->kst = calloc((size_t)p->n_ino + 1, 1);
	p->pend = malloc(((size_t)p->n_ino + 1) * sizeof(*p->pend));
	p->ready = malloc(((size_t)p->n_ino + 1) * sizeof(*p->ready));
	if (!p->kst || !p->pend || !p->ready) {
		fs_push_free(p);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i <= p->n_ino; i++)
		p->pend[i] = NONE;
	p->kst[IDX_ROOT_INO] = K_KNOWN;
	int err = pthread_create(&p->thread, NULL, push_main, p);
	if (err) {
		fs_push_free(p);
		return -err;
	}
	p->started = true;
	*ret = p;
	return 0;
}

void fs_push_free(struct fs_push *p)
{
	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->lock);
		__atomic_store_n(&p->stop, true, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p->kst);
	free(p->pend);
	free(p->ready);
	free(p->u);
	free(p->done);
	free(p->pos_of);
	free(p);
}

void fs_push_known(struct fs_push *p, uint32_t ino)
{
	if (!p || ino == 0 || ino > p->n_ino ||
	    (__atomic_fetch_or(&p->kst[ino], K_KNOWN, __ATOMIC_ACQ_REL) & K_KNOWN))
		return;
	pthread_mutex_lock(&p->lock);
	if (p->pend[ino] != NONE && !(__atomic_load_n(&p->kst[ino], __ATOMIC_ACQUIRE) & K_QUEUED)) {
		__atomic_or_fetch(&p->kst[ino], K_QUEUED, __ATOMIC_ACQ_REL);
		p->ready[(p->ready_head + p->ready_n) % (p->n_ino + 1)] = ino;
		p->ready_n++;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

void fs_push_stats(struct fs_push *p, struct json_object *j)
{
	static const char *const names[] = {"pushed_bytes", "push_sends", "push_waiting",
					    "push_lost", "push_skipped"};
	uint64_t v[] = {0, 0, 0, 0, 0};
	if (p) {
		v[0] = __atomic_load_n(&p->bytes, __ATOMIC_RELAXED);
		v[1] = __atomic_load_n(&p->sends, __ATOMIC_RELAXED);
		v[2] = __atomic_load_n(&p->waiting, __ATOMIC_RELAXED);
		v[3] = __atomic_load_n(&p->lost, __ATOMIC_RELAXED);
		v[4] = __atomic_load_n(&p->skipped, __ATOMIC_RELAXED);
	}
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		json_object_object_add(j, names[i], json_object_new_int64((int64_t)v[i]));
}
