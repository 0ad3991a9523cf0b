/*
 * Reading one layer: blob stream -> SHA-256 of the stored bytes -> decompression (gzip,
 * zstd, or none) -> SHA-256 of the tar stream (the diff_id) -> libarchive (tar formats only:
 * ustar, PAX, GNU; no filters, we decompress ourselves so the diff_id covers exactly the tar
 * bytes) -> tree entries, file data through the chunker into the pool.
 *
 * gzip is inflated with ISA-L's igzip (about twice zlib's speed here: 3.2 s against 6.6 s of
 * CPU for the 560 MB layer of bench/images.sh's browser image); it checks the CRC and
 * length trailers like zlib does.
 *
 * Two threads per layer: a producer reads the blob, hashes it, decompresses and hashes the
 * tar stream into a ring of RING buffers; the caller's thread parses the tar (libarchive)
 * and chunks file data. Decompression (zlib above all) costs as much as everything else the
 * caller's thread does, so splitting them roughly halves a build's critical path.
 * Ring protocol (guarded by `lock`): slots [head, head + count) are filled, in order; the
 * consumer holds slot `head` between two la_read calls (libarchive keeps using the buffer
 * until then), so the producer only writes slots outside the filled range.
 */
#include "layer.h"

#include "archive_dl.h"
#include "chunker.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <isa-l/igzip_lib.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#define IN_BUF	(256u << 10)
#define OUT_BUF (256u << 10)
#define MAX_FILE_SIZE	(256ull << 30) /* "absurd": larger regular files are rejected */
#define MAX_XATTRS	1024
#define MAX_XATTR_VALUE 65536
#define MAX_ENTRIES	(16u << 20)

#define RING 8

struct lreader {
	/* Producer only (after the thread starts). */
	struct idx_stream *st;
	enum idx_compression comp;
	struct cm_sha256 *sha_c, *sha_u;
	uint64_t csize, usize;
	struct inflate_state *gz; /* IDX_COMP_GZIP */
	bool z_end;		  /* the current gzip member or zstd frame is complete */
	ZSTD_DCtx *zd;
	uint8_t *in;
	size_t in_pos, in_len;
	bool src_eof;
	char errmsg[160]; /* producer's error text; read by the consumer once `done` */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *ring[RING];	  /* OUT_BUF bytes each */
	size_t ring_len[RING];	  /* guarded by lock */
	unsigned head, count;	  /* guarded by lock */
	bool held;		  /* consumer holds slot head; guarded by lock */
	bool done;		  /* producer finished; guarded by lock */
	int perr;		  /* producer's error (0 at a clean end); guarded by lock */
	bool stop;		  /* consumer gives up; guarded by lock */

	int err; /* consumer: the error that stopped libarchive */
};

static int fill_input(struct lreader *l)
{
	if (l->in_pos < l->in_len || l->src_eof)
		return 0;
	ssize_t n = l->st->read(l->st, l->in, IN_BUF);
	if (n < 0)
		return (int)n;
	if (n == 0) {
		l->src_eof = true;
		return 0;
	}
	cm_sha256_update(l->sha_c, l->in, (size_t)n);
	l->csize += (uint64_t)n;
	l->in_pos = 0;
	l->in_len = (size_t)n;
	return 0;
}

/* Run the decompressor on `avail` input bytes (0 = flush what it holds). Returns the bytes
 * produced into `out`, or -EPROTO. */
static ssize_t decompress(struct lreader *l, uint8_t *out, size_t avail)
{
	if (!avail && l->z_end)
		return 0; /* a finished member/frame holds nothing */
	if (l->comp == IDX_COMP_GZIP) {
		if (l->z_end) {
			/* Another gzip member follows (RFC 1952 allows concatenation). */
			isal_inflate_reset(l->gz);
			l->gz->crc_flag = ISAL_GZIP;
			l->z_end = false;
		}
		l->gz->next_in = l->in + l->in_pos;
		l->gz->avail_in = (uint32_t)avail;
		l->gz->next_out = out;
		l->gz->avail_out = OUT_BUF;
		int zr = isal_inflate(l->gz);
		l->in_pos += avail - l->gz->avail_in;
		if (zr < 0) {
			snprintf(l->errmsg, sizeof(l->errmsg), "gzip: %s",
				 zr == ISAL_INCORRECT_CHECKSUM ? "checksum mismatch"
				 : zr == ISAL_INVALID_WRAPPER ? "not a gzip stream"
							       : "corrupt data");
			return -EPROTO;
		}
		if (l->gz->block_state == ISAL_BLOCK_FINISH)
			l->z_end = true;
		return (ssize_t)(OUT_BUF - l->gz->avail_out);
	}
	ZSTD_inBuffer ib = {l->in + l->in_pos, avail, 0};
	ZSTD_outBuffer ob = {out, OUT_BUF, 0};
	size_t zr = ZSTD_decompressStream(l->zd, &ob, &ib);
	l->in_pos += ib.pos;
	if (ZSTD_isError(zr)) {
		snprintf(l->errmsg, sizeof(l->errmsg), "zstd: %s", ZSTD_getErrorName(zr));
		return -EPROTO;
	}
	l->z_end = zr == 0;
	return (ssize_t)ob.pos;
}

/* Produce up to OUT_BUF bytes of the tar stream into `out`. 0 = end. */
static ssize_t next_block(struct lreader *l, uint8_t *out)
{
	for (;;) {
		int r = fill_input(l);
		if (r < 0)
			return r;
		size_t avail = l->in_len - l->in_pos;
		if (l->comp == IDX_COMP_NONE) {
			if (!avail)
				return 0;
			memcpy(out, l->in + l->in_pos, avail);
			l->in_pos = l->in_len;
			return (ssize_t)avail;
		}
		if (!avail && !l->src_eof)
			continue;
		/* At the end of the input the decompressor may still hold output (it stopped
		 * when `out` was full): flush it before deciding the stream is truncated. */
		ssize_t n = decompress(l, out, avail);
		if (n != 0)
			return n;
		if (!avail) {
			if (!l->z_end) {
				snprintf(l->errmsg, sizeof(l->errmsg), "%s stream is truncated",
					 l->comp == IDX_COMP_GZIP ? "gzip" : "zstd");
				return -EPROTO;
			}
			return 0;
		}
	}
}

static void *producer(void *arg)
{
	struct lreader *l = arg;
	pthread_mutex_lock(&l->lock);
	for (;;) {
		while (l->count == RING && !l->stop)
			pthread_cond_wait(&l->cond, &l->lock);
		if (l->stop)
			break;
		unsigned slot = (l->head + l->count) % RING;
		pthread_mutex_unlock(&l->lock);
		ssize_t n = next_block(l, l->ring[slot]);
		if (n > 0) {
			cm_sha256_update(l->sha_u, l->ring[slot], (size_t)n);
			l->usize += (uint64_t)n;
		}
		pthread_mutex_lock(&l->lock);
		if (n <= 0) {
			l->perr = (int)n;
			break;
		}
		l->ring_len[slot] = (size_t)n;
		l->count++;
		pthread_cond_broadcast(&l->cond);
	}
	l->done = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/* Next block of the tar stream (valid until the next call): > 0 bytes, 0 at the end. */
static ssize_t ring_take(struct lreader *l, const void **buf)
{
	pthread_mutex_lock(&l->lock);
	if (l->held) {
		l->head = (l->head + 1) % RING;
		l->count--;
		l->held = false;
		pthread_cond_broadcast(&l->cond);
	}
	while (!l->count && !l->done)
		pthread_cond_wait(&l->cond, &l->lock);
	ssize_t n;
	if (l->count) {
		*buf = l->ring[l->head];
		n = (ssize_t)l->ring_len[l->head];
		l->held = true;
	} else {
		n = l->perr;
	}
	pthread_mutex_unlock(&l->lock);
	return n;
}

static la_ssize_t la_read(struct archive *a, void *ud, const void **buf)
{
	struct lreader *l = ud;
	ssize_t n = ring_take(l, buf);
	if (n < 0) {
		l->err = (int)n;
		archive_set_error(a, EIO, "%s", l->errmsg[0] ? l->errmsg : "read error");
		return -1;
	}
	return n;
}

struct file_ctx {
	struct idx_pool *pool;
	struct idx_tnode_inode *in;
};

static int emit_chunk(void *ud, const uint8_t *chunk, size_t len)
{
	struct file_ctx *f = ud;
	struct idx_tnode_inode *in = f->in;
	if (in->nslots == in->slots_cap) {
		uint32_t n = in->slots_cap ? in->slots_cap * 2 : 4;
		uint32_t *s = realloc(in->slots, n * sizeof(*s));
		if (!s)
			return -ENOMEM;
		in->slots = s;
		in->slots_cap = n;
	}
	uint32_t slot;
	int r = idx_pool_submit(f->pool, chunk, len, &slot);
	if (r < 0)
		return r;
	in->slots[in->nslots++] = slot;
	return 0;
}

static const uint8_t zeros[65536];

/* Stream a regular file's data (holes of sparse files as zeros) through the chunker. */
static int read_file_data(struct archive *a, struct idx_cdc *cdc, int64_t size, uint64_t *ret_len)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	uint64_t pos = 0;
	int r;
	for (;;) {
		r = archive_read_data_block(a, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return -EPROTO;
		if (off < 0 || (uint64_t)off < pos || (uint64_t)off + len > (uint64_t)size)
			return -EPROTO;
		while (pos < (uint64_t)off) {
			size_t z = (size_t)MIN((uint64_t)sizeof(zeros), (uint64_t)off - pos);
			if ((r = idx_cdc_feed(cdc, zeros, z)) < 0)
				return r;
			pos += z;
		}
		if ((r = idx_cdc_feed(cdc, buf, len)) < 0)
			return r;
		pos += len;
	}
	while (pos < (uint64_t)size) { /* trailing hole */
		size_t z = (size_t)MIN((uint64_t)sizeof(zeros), (uint64_t)size - pos);
		if ((r = idx_cdc_feed(cdc, zeros, z)) < 0)
			return r;
		pos += z;
	}
	if ((r = idx_cdc_finish(cdc)) < 0)
		return r;
	*ret_len = pos;
	return 0;
}

static int entry_attr(struct archive_entry *e, struct idx_entry_attr *a,
		      struct idx_xattr_kv *xbuf, const char **why)
{
	int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
	if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX) {
		*why = "uid or gid out of range";
		return -EPROTO;
	}
	memset(a, 0, sizeof(*a));
	a->uid = (uint32_t)uid;
	a->gid = (uint32_t)gid;
	a->mtime_sec = archive_entry_mtime(e);
	long ns = archive_entry_mtime_nsec(e);
	a->mtime_nsec = ns >= 0 && ns < 1000000000 ? (uint32_t)ns : 0;
	a->rdev_major = archive_entry_rdevmajor(e);
	a->rdev_minor = archive_entry_rdevminor(e);
	const char *name;
	const void *value;
	size_t size;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		if (!name || !*name || strlen(name) > 255 || size > MAX_XATTR_VALUE) {
			*why = "invalid extended attribute";
			return -EPROTO;
		}
		/* libarchive reports an xattr once per PAX spelling (LIBARCHIVE.xattr.* and
		 * SCHILY.xattr.*, both written by bsdtar): one name, the last value wins. */
		uint32_t i = 0;
		while (i < a->nxattrs && strcmp(xbuf[i].name, name) != 0)
			i++;
		if (i == a->nxattrs && a->nxattrs == MAX_XATTRS) {
			*why = "too many extended attributes";
			return -EPROTO;
		}
		xbuf[i] = (struct idx_xattr_kv){(char *)name, (uint8_t *)value, (uint32_t)size};
		if (i == a->nxattrs)
			a->nxattrs++;
	}
	a->xattrs = xbuf;
	return 0;
}

int idx_layer_read(struct idx_tree *tree, struct idx_pool *pool, struct idx_stream *st,
		   enum idx_compression comp, const char *layer_name,
		   struct idx_layer_result *ret)
{
	struct lreader l = {.st = st, .comp = comp};
	struct archive *a = NULL;
	struct idx_cdc cdc = {0};
	struct idx_cdc_params params = {IDX_CDC_MIN, IDX_CDC_AVG, IDX_CDC_MAX};
	_cleanup_free_ struct idx_xattr_kv *xbuf = calloc(MAX_XATTRS, sizeof(*xbuf));
	int r = 0;
	uint64_t entries = 0;
	/* Name of the last entry read, for messages. A copy: libarchive reuses the entry's
	 * storage on the next archive_read_next_header. */
	char cur[256] = "";

	r = idx_archive_load();
	if (r < 0)
		return r;
	pthread_t thread;
	bool started = false;
	pthread_mutex_init(&l.lock, NULL);
	pthread_cond_init(&l.cond, NULL);
	l.in = malloc(IN_BUF);
	bool ring_ok = true;
	for (int i = 0; i < RING; i++)
		ring_ok = (l.ring[i] = malloc(OUT_BUF)) && ring_ok;
	if (!l.in || !ring_ok || !xbuf || cm_sha256_new(&l.sha_c) < 0 || cm_sha256_new(&l.sha_u) < 0) {
		r = -ENOMEM;
		goto out;
	}
	if (comp == IDX_COMP_GZIP) {
		l.gz = malloc(sizeof(*l.gz)); /* ~ 20 KiB of tables: not on the stack */
		if (!l.gz) {
			r = -ENOMEM;
			goto out;
		}
		isal_inflate_init(l.gz);
		l.gz->crc_flag = ISAL_GZIP;
	} else if (comp == IDX_COMP_ZSTD) {
		l.zd = ZSTD_createDCtx();
		if (!l.zd) {
			r = -ENOMEM;
			goto out;
		}
	}
	struct file_ctx fctx = {.pool = pool};
	r = idx_cdc_init(&cdc, &params, emit_chunk, &fctx);
	if (r < 0)
		goto out;

	if (pthread_create(&thread, NULL, producer, &l) != 0) {
		r = -EAGAIN;
		goto out;
	}
	started = true;
	a = archive_read_new();
	if (!a) {
		r = -ENOMEM;
		goto out;
	}
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	if (archive_read_open(a, &l, NULL, la_read, NULL) != ARCHIVE_OK) {
		r = -EPROTO;
		goto out;
	}
	for (;;) {
		struct archive_entry *e;
		int ar = archive_read_next_header(a, &e);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN) {
			r = l.err ? l.err : -EPROTO;
			log_error("layer %s: %s%s%s", layer_name, archive_error_string(a),
				  cur[0] ? " after entry " : "", cur);
			if (r == -EPROTO || r == -EIO)
				r = -EPROTO;
			goto out;
		}
		if (++entries > MAX_ENTRIES) {
			r = cm_log_ret(-EFBIG, "layer %s: more than %u entries", layer_name, MAX_ENTRIES);
			goto out;
		}
		const char *path = archive_entry_pathname(e);
		if (!path) {
			r = cm_log_ret(-EPROTO, "layer %s: entry without a name", layer_name);
			goto out;
		}
		snprintf(cur, sizeof(cur), "%s", path);
		struct idx_entry_attr attr;
		const char *why = NULL;
		if (entry_attr(e, &attr, xbuf, &why) < 0) {
			r = cm_log_ret(-EPROTO, "layer %s: entry '%s': %s", layer_name, path, why);
			goto out;
		}
		const char *hardlink = archive_entry_hardlink(e);
		if (hardlink) {
			r = idx_tree_link(tree, path, hardlink);
			if (r < 0) {
				log_error("layer %s: hardlink entry rejected", layer_name);
				goto out;
			}
			continue;
		}
		mode_t type = archive_entry_filetype(e);
		uint32_t perm = archive_entry_perm(e) & 07777;
		switch (type) {
		case AE_IFREG: case AE_IFDIR: case AE_IFLNK: case AE_IFCHR: case AE_IFBLK: case AE_IFIFO:
			break;
		case AE_IFSOCK:
			log_debug("layer %s: skipping socket '%s'", layer_name, path);
			continue;
		default:
			r = cm_log_ret(-EPROTO, "layer %s: entry '%s' has an unsupported type", layer_name, path);
			goto out;
		}
		attr.mode = (uint32_t)type | perm;
		if (type == AE_IFLNK) {
			attr.link = archive_entry_symlink(e);
			if (!attr.link || !*attr.link || strlen(attr.link) > 4095) {
				r = cm_log_ret(-EPROTO, "layer %s: symlink '%s' has an invalid target",
					       layer_name, path);
				goto out;
			}
		}
		int64_t size = type == AE_IFREG ? archive_entry_size(e) : 0;
		if (size < 0 || (uint64_t)size > MAX_FILE_SIZE) {
			r = cm_log_ret(-EFBIG, "layer %s: entry '%s' claims %lld bytes (limit %llu)",
				       layer_name, path, (long long)size, MAX_FILE_SIZE);
			goto out;
		}
		struct idx_tnode_inode *in;
		r = idx_tree_apply(tree, path, &attr, &in);
		if (r < 0) {
			log_error("layer %s: entry rejected", layer_name);
			goto out;
		}
		if (in) {
			fctx.in = in;
			uint64_t got = 0;
			r = read_file_data(a, &cdc, size, &got);
			if (r < 0) {
				if (r == -EPROTO)
					log_error("layer %s: entry '%s': %s", layer_name, path,
						  l.err && l.errmsg[0] ? l.errmsg
							      : archive_error_string(a) ? archive_error_string(a)
											: "bad data");
				if (l.err)
					r = l.err;
				goto out;
			}
			in->size = got;
			ret->file_bytes += got;
		}
		ret->entries++;
	}
	/* Drain what follows the end-of-archive marker so both digests cover the whole blob. */
	for (;;) {
		const void *unused;
		ssize_t n = ring_take(&l, &unused);
		if (n < 0) {
			r = cm_log_ret((int)n, "layer %s: %s", layer_name, l.errmsg);
			goto out;
		}
		if (n == 0)
			break;
	}
	pthread_join(thread, NULL); /* done: the producer's fields are ours now */
	started = false;
	if (comp != IDX_COMP_NONE && !l.z_end) {
		r = cm_log_ret(-EPROTO, "layer %s: compressed stream is truncated", layer_name);
		goto out;
	}
	cm_sha256_final(l.sha_c, ret->digest);
	cm_sha256_final(l.sha_u, ret->diff_id);
	ret->size = l.csize;
	ret->usize = l.usize;
out:
	if (started) {
		pthread_mutex_lock(&l.lock);
		l.stop = true;
		pthread_cond_broadcast(&l.cond);
		pthread_mutex_unlock(&l.lock);
		pthread_join(thread, NULL);
	}
	if (a)
		archive_read_free(a);
	idx_cdc_fini(&cdc);
	free(l.gz);
	ZSTD_freeDCtx(l.zd);
	cm_sha256_free(l.sha_c);
	cm_sha256_free(l.sha_u);
	free(l.in);
	for (int i = 0; i < RING; i++)
		free(l.ring[i]);
	pthread_cond_destroy(&l.cond);
	pthread_mutex_destroy(&l.lock);
	return r;
}
