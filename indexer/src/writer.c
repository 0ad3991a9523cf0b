/*
 * Index writer: tree -> format v1 blob (format.h, docs/format.md).
 *
 * Determinism: inode numbers follow a depth-first walk of name-sorted directories; chunk
 * order is (1) chunks of startup-list files in list order, (2) every other file's chunks in
 * inode order, first occurrence wins; strings are interned in first-use order. Nothing
 * depends on time, addresses or hash-table iteration order.
 */
#include "writer.h"

#include "chunker.h"

#include "format.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Interned byte strings; each stored once, followed by a NUL. */
struct strtab {
	struct cm_buf buf;
	struct { uint32_t off, len; } *ents;
	uint32_t nents, ents_cap;
	uint32_t *map; /* entry index + 1; 0 = empty */
	uint32_t size;
};

static uint32_t *strtab_slot(struct strtab *s, const void *data, uint32_t len)
{
	uint32_t i = (uint32_t)cm_xxh3(data, len) & (s->size - 1);
	for (;;) {
		uint32_t v = s->map[i];
		if (!v)
			return &s->map[i];
		if (s->ents[v - 1].len == len && !memcmp(s->buf.data + s->ents[v - 1].off, data, len))
			return &s->map[i];
		i = (i + 1) & (s->size - 1);
	}
}

static int strtab_add(struct strtab *s, const void *data, uint32_t len, uint32_t *ret)
{
	if ((s->nents + 1) * 2 > s->size) {
		uint32_t n = s->size ? s->size * 2 : 1u << 14;
		uint32_t *m = calloc(n, sizeof(uint32_t));
		if (!m)
			return -ENOMEM;
		free(s->map);
		s->map = m;
		s->size = n;
		for (uint32_t e = 0; e < s->nents; e++)
			*strtab_slot(s, s->buf.data + s->ents[e].off, s->ents[e].len) = e + 1;
	}
	uint32_t *slot = strtab_slot(s, data, len);
	if (*slot) {
		*ret = s->ents[*slot - 1].off;
		return 0;
	}
	if (s->nents == s->ents_cap) {
		uint32_t n = s->ents_cap ? s->ents_cap * 2 : 4096;
		void *e = realloc(s->ents, n * sizeof(*s->ents));
		if (!e)
			return -ENOMEM;
		s->ents = e;
		s->ents_cap = n;
	}
	if (s->buf.len + len + 1 > UINT32_MAX)
		return -EFBIG;
	uint32_t off = (uint32_t)s->buf.len;
	int r = cm_buf_append(&s->buf, data, len);
	if (r == 0)
		r = cm_buf_append(&s->buf, "", 1);
	if (r < 0)
		return r;
	s->ents[s->nents].off = off;
	s->ents[s->nents].len = len;
	*slot = ++s->nents;
	*ret = off;
	return 0;
}

static void strtab_fini(struct strtab *s)
{
	cm_buf_fini(&s->buf);
	free(s->ents);
	free(s->map);
}

struct wstate {
	const struct idx_writer_input *in;
	struct idx_tnode_inode **inodes; /* by ino - 1 */
	struct idx_tnode **dirnode;	 /* by ino - 1: the node of a directory */
	uint32_t ninodes, inodes_cap;
};

static int add_inode(struct wstate *w, struct idx_tnode *nd)
{
	if (nd->ino->out_ino)
		return 0;
	if (w->ninodes == w->inodes_cap) {
		uint32_t n = w->inodes_cap ? w->inodes_cap * 2 : 4096;
		struct idx_tnode_inode **a = realloc(w->inodes, n * sizeof(*a));
		if (!a)
			return -ENOMEM;
		w->inodes = a;
		struct idx_tnode **b = realloc(w->dirnode, n * sizeof(*b));
		if (!b)
			return -ENOMEM;
		w->dirnode = b;
		w->inodes_cap = n;
	}
	w->inodes[w->ninodes] = nd->ino;
	w->dirnode[w->ninodes] = S_ISDIR(nd->ino->mode) ? nd : NULL;
	nd->ino->out_ino = ++w->ninodes;
	return 0;
}

/* Depth-first, children in name order; iterative to bound stack use on deep trees. */
static int number_inodes(struct wstate *w, struct idx_tnode *root)
{
	/* Depth-first keeps a directory's files next to each other, so "inode order" for
	 * chunks is path order. */
	int r = add_inode(w, root);
	struct idx_tnode **stack = NULL;
	size_t n = 0, cap = 0;
	if (r < 0)
		return r;
	/* push children in reverse so the first name is visited first */
#define PUSH(x)                                                                                    \
	do {                                                                                       \
		if (n == cap) {                                                                    \
			cap = cap ? cap * 2 : 1024;                                                \
			void *s_ = realloc(stack, cap * sizeof(*stack));                           \
			if (!s_) {                                                                 \
				free(stack);                                                       \
				return -ENOMEM;                                                    \
			}                                                                          \
			stack = s_;                                                                \
		}                                                                                  \
		stack[n++] = (x);                                                                  \
	} while (0)
	for (uint32_t i = root->nchildren; i > 0; i--)
		PUSH(root->children[i - 1]);
	while (n > 0) {
		struct idx_tnode *nd = stack[--n];
		r = add_inode(w, nd);
		if (r < 0)
			break;
		for (uint32_t i = nd->nchildren; i > 0; i--)
			PUSH(nd->children[i - 1]);
	}
#undef PUSH
	free(stack);
	return r;
}

static uint8_t dt_of(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return DT_REG;
	case S_IFDIR: return DT_DIR;
	case S_IFLNK: return DT_LNK;
	case S_IFCHR: return DT_CHR;
	case S_IFBLK: return DT_BLK;
	case S_IFIFO: return DT_FIFO;
	default: return DT_UNKNOWN;
	}
}

static int cmp_xattr(const void *a, const void *b)
{
	return strcmp(((const struct idx_xattr_kv *)a)->name, ((const struct idx_xattr_kv *)b)->name);
}

static int cmp_rank(const void *a, const void *b)
{
	const struct idx_tnode_inode *x = *(const struct idx_tnode_inode *const *)a;
	const struct idx_tnode_inode *y = *(const struct idx_tnode_inode *const *)b;
	return x->prefetch_rank < y->prefetch_rank ? -1 : x->prefetch_rank > y->prefetch_rank;
}

/* A pack being written: consecutive chunks [first, first + count) of the final order. */
struct wpack {
	uint32_t first, count;
	uint64_t size;
	uint8_t digest[32];
};

/* Hash one pack's stored bytes, handing them to the sink if there is one. */
static int hash_pack(const struct idx_writer_input *in, const struct idx_uchunk *uc,
		     const uint32_t *order, uint32_t pack, struct wpack *pk, uint8_t **buf,
		     size_t *cap)
{
	_cleanup_(cm_sha256_freep) struct cm_sha256 *sha = NULL;
	int r = cm_sha256_new(&sha);
	if (r < 0)
		return r;
	for (uint32_t i = pk->first; i < pk->first + pk->count; i++) {
		const struct idx_uchunk *c = &uc[order[i]];
		if (c->csize > *cap) {
			uint8_t *nb = realloc(*buf, c->csize);
			if (!nb)
				return -ENOMEM;
			*buf = nb;
			*cap = c->csize;
		}
		int fd = idx_pool_open_chunk(in->pool, order[i]);
		if (fd < 0)
			return cm_log_ret(fd, "chunk vanished from the store while indexing");
		r = cm_pread_full(fd, *buf, c->csize, 0);
		close(fd);
		if (r < 0)
			return r;
		cm_sha256_update(sha, *buf, c->csize);
		if (in->pack_data && (r = in->pack_data(in->pack_ud, pack, *buf, c->csize)) < 0)
			return r;
	}
	cm_sha256_final(sha, pk->digest);
	if (in->pack_done)
		return in->pack_done(in->pack_ud, pack, pk->digest, pk->size);
	return 0;
}

#define HASH_THREADS 4

struct hash_job {
	const struct idx_writer_input *in;
	const struct idx_uchunk *uc;
	const uint32_t *order;
	struct wpack *pk;
	uint32_t npk;
	uint32_t next; /* next pack to hash, atomic */
	int err;       /* first error, atomic */
};

static void *hash_worker(void *arg)
{
	struct hash_job *j = arg;
	uint8_t *buf = NULL;
	size_t cap = 0;
	for (;;) {
		uint32_t p = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (p >= j->npk || __atomic_load_n(&j->err, __ATOMIC_RELAXED))
			break;
		int r = hash_pack(j->in, j->uc, j->order, p, &j->pk[p], &buf, &cap);
		if (r < 0) {
			int zero = 0;
			__atomic_compare_exchange_n(&j->err, &zero, r, false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
		}
	}
	free(buf);
	return NULL;
}

static int hash_packs(const struct idx_writer_input *in, const struct idx_uchunk *uc,
		      const uint32_t *order, struct wpack *pk, uint32_t npk)
{
	struct hash_job j = {in, uc, order, pk, npk, 0, 0};
	pthread_t t[HASH_THREADS];
	int nt = 0;
	if (!in->pack_data && !in->pack_done && npk > 1)
		for (; nt < HASH_THREADS && (uint32_t)nt < npk - 1; nt++)
			if (pthread_create(&t[nt], NULL, hash_worker, &j) != 0)
				break;
	hash_worker(&j); /* this thread too; alone (in order) when there is a sink */
	for (int i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	return j.err;
}

static void put_section(uint8_t *hdr, int sec, uint64_t off, uint64_t size, uint32_t count,
			uint32_t stride)
{
	uint8_t *e = hdr + IDXF_SECTAB_OFF + sec * IDXF_SECT_SIZE;
	cm_put_le64(e, off);
	cm_put_le64(e + 8, size);
	cm_put_le32(e + 16, count);
	cm_put_le32(e + 20, stride);
}

static int cmp_uc_digest(const void *a, const void *b, void *ud)
{
	const struct idx_uchunk *uc = ud;
	return memcmp(uc[*(const uint32_t *)a].digest, uc[*(const uint32_t *)b].digest, 32);
}

/* Place the chunks the startup trace names (those the image has, each once) first and list
 * them for startup prefetch. */
static int place_traced(const struct idx_writer_input *in, struct idx_uchunk *uc, uint32_t nuniq,
			uint32_t *order, uint32_t *nplaced, struct cm_buf *prefetch)
{
	if (!in->n_startup_ids || !nuniq)
		return 0;
	_cleanup_free_ uint32_t *by = malloc((size_t)nuniq * sizeof(*by));
	if (!by)
		return -ENOMEM;
	for (uint32_t i = 0; i < nuniq; i++)
		by[i] = i;
	qsort_r(by, nuniq, sizeof(*by), cmp_uc_digest, uc);
	for (uint32_t t = 0; t < in->n_startup_ids; t++) {
		uint32_t lo = 0, hi = nuniq;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (memcmp(uc[by[mid]].digest, in->startup_ids[t], 32) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == nuniq || memcmp(uc[by[lo]].digest, in->startup_ids[t], 32) != 0)
			continue;
		uint32_t c = by[lo];
		if (uc[c].order != UINT32_MAX)
			continue;
		uc[c].order = *nplaced;
		order[(*nplaced)++] = c;
		int r = cm_buf_put_le32(prefetch, uc[c].order);
		if (r < 0)
			return r;
	}
	return 0;
}

int idx_writer_write(const struct idx_writer_input *in, struct cm_buf *out)
{
	struct wstate w = {.in = in};
	struct strtab st = {0};
	struct cm_buf inodes, dirents, extents, chunks, packs, prefetch, xattrs;
	cm_buf_init(&st.buf, UINT32_MAX);
	struct cm_buf *bufs[] = {&inodes, &dirents, &extents, &chunks, &packs, &prefetch, &xattrs};
	for (size_t i = 0; i < ARRAY_SIZE(bufs); i++)
		cm_buf_init(bufs[i], 0);
	_cleanup_free_ struct idx_tnode_inode **ranked = NULL;
	_cleanup_free_ uint32_t *order = NULL; /* final chunk index -> unique chunk */
	uint32_t nuniq, nplaced = 0;
	struct idx_uchunk *uc = idx_pool_chunks(in->pool, &nuniq);
	int r;

	idx_tree_sort(in->tree);
	r = number_inodes(&w, idx_tree_root(in->tree));
	if (r < 0)
		goto out;

	/* Chunk order: traced chunks first (in trace order), then startup files (by rank),
	 * then all files in inode order. */
	order = malloc((nuniq ? nuniq : 1) * sizeof(uint32_t));
	ranked = malloc((w.ninodes ? w.ninodes : 1) * sizeof(*ranked));
	if (!order || !ranked) {
		r = -ENOMEM;
		goto out;
	}
	uint32_t nranked = 0;
	for (uint32_t i = 0; i < w.ninodes; i++)
		if (w.inodes[i]->prefetch_rank && S_ISREG(w.inodes[i]->mode))
			ranked[nranked++] = w.inodes[i];
	qsort(ranked, nranked, sizeof(*ranked), cmp_rank);
	if ((r = place_traced(in, uc, nuniq, order, &nplaced, &prefetch)) < 0)
		goto out;
	for (uint32_t pass = 0; pass < 2; pass++) {
		uint32_t n = pass == 0 ? nranked : w.ninodes;
		for (uint32_t i = 0; i < n; i++) {
			struct idx_tnode_inode *ino = pass == 0 ? ranked[i] : w.inodes[i];
			if (!S_ISREG(ino->mode))
				continue;
			for (uint32_t s = 0; s < ino->nslots; s++) {
				uint32_t c = idx_pool_slot_chunk(in->pool, ino->slots[s]);
				if (uc[c].order == UINT32_MAX) {
					uc[c].order = nplaced;
					order[nplaced++] = c;
					if (pass == 0 &&
					    (r = cm_buf_put_le32(&prefetch, uc[c].order)) < 0)
						goto out;
				}
			}
		}
	}

	/* Inodes, dirents, extents, xattrs. */
	for (uint32_t i = 0; i < w.ninodes; i++) {
		struct idx_tnode_inode *ino = w.inodes[i];
		uint8_t rec[IDXF_INODE_SIZE] = {0};
		uint32_t first = 0, count = 0, parent = 0, nlink = ino->refs;
		if (S_ISDIR(ino->mode)) {
			struct idx_tnode *d = w.dirnode[i];
			first = (uint32_t)(dirents.len / IDXF_DIRENT_SIZE);
			count = d->nchildren;
			parent = d->parent ? d->parent->ino->out_ino : 1;
			nlink = 2;
			for (uint32_t c = 0; c < d->nchildren; c++) {
				struct idx_tnode *ch = d->children[c];
				uint8_t de[IDXF_DIRENT_SIZE] = {0};
				uint32_t off;
				if ((r = strtab_add(&st, ch->name, ch->name_len, &off)) < 0)
					goto out;
				cm_put_le32(de + IDXF_DE_NAME_OFF, off);
				cm_put_le16(de + IDXF_DE_NAME_LEN, (uint16_t)ch->name_len);
				de[IDXF_DE_TYPE] = dt_of(ch->ino->mode);
				cm_put_le32(de + IDXF_DE_INO, ch->ino->out_ino);
				if (S_ISDIR(ch->ino->mode))
					nlink++;
				if ((r = cm_buf_append(&dirents, de, sizeof(de))) < 0)
					goto out;
			}
		} else if (S_ISREG(ino->mode)) {
			first = (uint32_t)(extents.len / IDXF_EXTENT_SIZE);
			count = ino->nslots;
			uint64_t off = 0;
			for (uint32_t s = 0; s < ino->nslots; s++) {
				uint32_t c = idx_pool_slot_chunk(in->pool, ino->slots[s]);
				uint8_t ex[IDXF_EXTENT_SIZE] = {0};
				cm_put_le64(ex + IDXF_EXT_OFFSET, off);
				cm_put_le32(ex + IDXF_EXT_CHUNK, uc[c].order);
				off += uc[c].usize;
				if ((r = cm_buf_append(&extents, ex, sizeof(ex))) < 0)
					goto out;
			}
		} else if (S_ISLNK(ino->mode)) {
			count = (uint32_t)strlen(ino->link);
			if ((r = strtab_add(&st, ino->link, count, &first)) < 0)
				goto out;
		}
		uint32_t xfirst = (uint32_t)(xattrs.len / IDXF_XATTR_SIZE);
		if (ino->nxattrs > 1) /* qsort(NULL, 0) is undefined */
			qsort(ino->xattrs, ino->nxattrs, sizeof(*ino->xattrs), cmp_xattr);
		for (uint32_t x = 0; x < ino->nxattrs; x++) {
			uint8_t xa[IDXF_XATTR_SIZE];
			uint32_t no, vo;
			uint32_t nl = (uint32_t)strlen(ino->xattrs[x].name);
			if ((r = strtab_add(&st, ino->xattrs[x].name, nl, &no)) < 0 ||
			    (r = strtab_add(&st, ino->xattrs[x].value, ino->xattrs[x].len, &vo)) < 0)
				goto out;
			cm_put_le32(xa + IDXF_XA_NAME_OFF, no);
			cm_put_le32(xa + IDXF_XA_NAME_LEN, nl);
			cm_put_le32(xa + IDXF_XA_VALUE_OFF, vo);
			cm_put_le32(xa + IDXF_XA_VALUE_LEN, ino->xattrs[x].len);
			if ((r = cm_buf_append(&xattrs, xa, sizeof(xa))) < 0)
				goto out;
		}
		cm_put_le32(rec + IDXF_INO_MODE, ino->mode);
		cm_put_le32(rec + IDXF_INO_UID, ino->uid);
		cm_put_le32(rec + IDXF_INO_GID, ino->gid);
		cm_put_le32(rec + IDXF_INO_NLINK, nlink);
		cm_put_le64(rec + IDXF_INO_SIZE, S_ISREG(ino->mode) || S_ISLNK(ino->mode) ? ino->size : 0);
		cm_put_le64(rec + IDXF_INO_MTIME_SEC, (uint64_t)ino->mtime_sec);
		cm_put_le32(rec + IDXF_INO_MTIME_NSEC, ino->mtime_nsec);
		cm_put_le32(rec + IDXF_INO_RDEV_MAJOR, ino->rdev_major);
		cm_put_le32(rec + IDXF_INO_RDEV_MINOR, ino->rdev_minor);
		cm_put_le32(rec + IDXF_INO_PARENT, parent);
		cm_put_le32(rec + IDXF_INO_DATA_FIRST, first);
		cm_put_le32(rec + IDXF_INO_DATA_COUNT, count);
		cm_put_le32(rec + IDXF_INO_XATTR_FIRST, xfirst);
		cm_put_le32(rec + IDXF_INO_XATTR_COUNT, ino->nxattrs);
		if ((r = cm_buf_append(&inodes, rec, sizeof(rec))) < 0)
			goto out;
	}

	/* Chunks and packs. Packs are cut at pack_target bytes of stored data, which needs only
	 * the sizes; each pack's digest then needs its chunks' stored bytes, read back from
	 * staging or the store. With a pack sink the packs are read in order on this thread
	 * (the sink wants the bytes in order); without one, a few threads hash packs in
	 * parallel: this read-back is disk-bound when the chunks are no longer cached. */
	{
		struct wpack *pk = NULL;
		uint32_t npk = 0, pk_cap = 0;
		uint64_t pack_off = 0;
		for (uint32_t i = 0; i < nplaced; i++) {
			struct idx_uchunk *c = &uc[order[i]];
			if (npk == 0 || (pack_off > 0 && pack_off + c->csize > in->pack_target)) {
				if (npk == pk_cap) {
					pk_cap = pk_cap ? pk_cap * 2 : 64;
					struct wpack *np = realloc(pk, pk_cap * sizeof(*pk));
					if (!np) {
						free(pk);
						r = -ENOMEM;
						goto out;
					}
					pk = np;
				}
				pk[npk++] = (struct wpack){.first = i};
				pack_off = 0;
			}
			pk[npk - 1].count++;
			pk[npk - 1].size += c->csize;
			uint8_t ch[IDXF_CHUNK_SIZE] = {0};
			memcpy(ch + IDXF_CH_DIGEST, c->digest, 32);
			cm_put_le32(ch + IDXF_CH_USIZE, c->usize);
			cm_put_le32(ch + IDXF_CH_CSIZE, c->csize);
			cm_put_le32(ch + IDXF_CH_PACK, npk - 1);
			cm_put_le32(ch + IDXF_CH_FLAGS, IDX_CHUNK_COMP_ZSTD);
			cm_put_le64(ch + IDXF_CH_PACK_OFFSET, pack_off);
			if ((r = cm_buf_append(&chunks, ch, sizeof(ch))) < 0) {
				free(pk);
				goto out;
			}
			pack_off += c->csize;
		}
		r = hash_packs(in, uc, order, pk, npk);
		for (uint32_t p = 0; r == 0 && p < npk; p++) {
			uint8_t rec[IDXF_PACK_SIZE] = {0};
			memcpy(rec + IDXF_PK_DIGEST, pk[p].digest, 32);
			cm_put_le64(rec + IDXF_PK_SIZE, pk[p].size);
			cm_put_le32(rec + IDXF_PK_CHUNK_FIRST, pk[p].first);
			cm_put_le32(rec + IDXF_PK_CHUNK_COUNT, pk[p].count);
			r = cm_buf_append(&packs, rec, sizeof(rec));
		}
		free(pk);
		if (r < 0)
			goto out;
	}

	/* Assemble: header, then sections in a fixed order, each 8-aligned. */
	{
		uint8_t hdr[IDXF_HEADER_SIZE] = {0};
		struct {
			int sec;
			const void *data;
			size_t len;
			uint32_t stride;
		} secs[] = {
			{IDXF_SEC_STRINGS, st.buf.data, st.buf.len, 1},
			{IDXF_SEC_INODES, inodes.data, inodes.len, IDXF_INODE_SIZE},
			{IDXF_SEC_DIRENTS, dirents.data, dirents.len, IDXF_DIRENT_SIZE},
			{IDXF_SEC_EXTENTS, extents.data, extents.len, IDXF_EXTENT_SIZE},
			{IDXF_SEC_CHUNKS, chunks.data, chunks.len, IDXF_CHUNK_SIZE},
			{IDXF_SEC_PACKS, packs.data, packs.len, IDXF_PACK_SIZE},
			{IDXF_SEC_PREFETCH, prefetch.data, prefetch.len, 4},
			{IDXF_SEC_XATTRS, xattrs.data, xattrs.len, IDXF_XATTR_SIZE},
			{IDXF_SEC_CONFIG, in->config, in->config_len, 1},
		};
		uint64_t off = IDXF_HEADER_SIZE;
		for (size_t i = 0; i < ARRAY_SIZE(secs); i++) {
			if (secs[i].len == 0) {
				put_section(hdr, secs[i].sec, 0, 0, 0, 0);
				continue;
			}
			if (secs[i].len / secs[i].stride > UINT32_MAX) {
				r = cm_log_ret(-EFBIG, "index section %d is too large", secs[i].sec);
				goto out;
			}
			put_section(hdr, secs[i].sec, off, secs[i].len,
				    (uint32_t)(secs[i].len / secs[i].stride), secs[i].stride);
			off += (secs[i].len + 7) & ~(uint64_t)7;
		}
		memcpy(hdr, IDXF_MAGIC, 8);
		cm_put_le16(hdr + 8, IDXF_MAJOR);
		cm_put_le16(hdr + 10, IDXF_MINOR);
		cm_put_le32(hdr + 12, IDXF_HEADER_SIZE);
		cm_put_le64(hdr + 16, off);
		cm_put_le32(hdr + 24, IDXF_SLOTS);
		memcpy(hdr + 32, in->manifest_digest, 32);
		memcpy(hdr + 64, in->config_digest, 32);
		cm_put_le32(hdr + 96, IDX_CDC_MIN);
		cm_put_le32(hdr + 100, IDX_CDC_AVG);
		cm_put_le32(hdr + 104, IDX_CDC_MAX);
		if ((r = cm_buf_append(out, hdr, sizeof(hdr))) < 0)
			goto out;
		for (size_t i = 0; i < ARRAY_SIZE(secs); i++) {
			if (!secs[i].len)
				continue;
			if ((r = cm_buf_append(out, secs[i].data, secs[i].len)) < 0 ||
			    (r = cm_buf_pad(out, 8)) < 0)
				goto out;
		}
	}
out:
	strtab_fini(&st);
	for (size_t i = 0; i < ARRAY_SIZE(bufs); i++)
		cm_buf_fini(bufs[i]);
	free(w.inodes);
	free(w.dirnode);
	return r;
}
