/*
 * FUSE low-level operations (libfuse 3, FUSE_USE_VERSION 35) serving an index read-only.
 * Every op replies exactly once, on every path. Inode numbers are the index's (1 = root =
 * FUSE_ROOT_ID), stable for the life of the image, so forget needs no bookkeeping.
 * Directory offsets: 1 after ".", 2 after "..", k + 3 after entry k (entries in name order),
 * stable across calls.
 */
#include "ops.h"
#include "engine.h"
#include "push.h"

#include "indexer/index.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

/* Pieces of one read served without copying; longer reads are copied (rare: chunks are
 * at least several KiB, reads at most 1 MiB). */
#define IOV_MAX_PIECES 256
#define XATTR_LIST_CAP (64u << 10)

/* Per-thread reply buffer (directory listings, xattr lists, copied reads). */
static __thread uint8_t *tbuf;
static __thread size_t tbuf_cap;
static pthread_key_t tbuf_key;
static pthread_once_t tbuf_once = PTHREAD_ONCE_INIT;

static void tbuf_key_init(void)
{
	pthread_key_create(&tbuf_key, free);
}

static uint8_t *thread_buf(size_t need)
{
	if (need <= tbuf_cap)
		return tbuf;
	pthread_once(&tbuf_once, tbuf_key_init);
	uint8_t *b = realloc(tbuf, need);
	if (!b)
		return NULL;
	tbuf = b;
	tbuf_cap = need;
	pthread_setspecific(tbuf_key, b); /* freed when the thread exits */
	return b;
}

static struct fs_ops_ctx *ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Our inode numbers fit 32 bits; anything else is not ours. */
static int ino32(fuse_ino_t ino, uint32_t *ret)
{
	if (ino == 0 || ino > UINT32_MAX)
		return -ENOENT;
	*ret = (uint32_t)ino;
	return 0;
}

static void fill_stat(const struct idx_inode *in, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = in->ino;
	st->st_mode = in->mode;
	st->st_nlink = in->nlink;
	st->st_uid = in->uid;
	st->st_gid = in->gid;
	st->st_rdev = makedev(in->rdev_major, in->rdev_minor);
	st->st_size = (off_t)in->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((in->size + 511) / 512);
	st->st_mtim.tv_sec = in->mtime_sec;
	st->st_mtim.tv_nsec = in->mtime_nsec;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

static int entry_of(struct fs_ops_ctx *c, uint32_t ino, struct fuse_entry_param *e)
{
	struct idx_inode in;
	int r = idx_reader_inode(c->r, ino, &in);
	if (r < 0)
		return r;
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->generation = 1;
	e->attr_timeout = c->timeout;
	e->entry_timeout = c->timeout;
	fill_stat(&in, &e->attr);
	return 0;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Large reads: the kernel sends up to max_pages (derived from max_write by libfuse)
	 * pages per read; readahead as large as the kernel allows. */
	conn->max_write = 1u << 20;
	conn->max_read = 1u << 20; /* must equal the max_read mount option */
	conn->max_readahead = 1u << 20;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* Nothing is ever written: the kernel need not ask before caching. */
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	struct fs_ops_ctx *c = userdata;
	c->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
	c->no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
	c->no_xattrs = idx_reader_xattr_records(c->r) == 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_ops_ctx *c = ctx(req);
	uint32_t dir = 0, ino;
	struct fuse_entry_param e;
	int r = ino32(parent, &dir);
	if (r == 0)
		r = idx_reader_lookup(c->r, dir, name, strlen(name), &ino);
	if (r == 0)
		r = entry_of(c, ino, &e);
	if (r == -ENOENT && dir) {
		/* A negative entry the kernel may cache as long as a positive one: the image
		 * never changes, and programs probe many missing paths (PATH, imports). */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = c->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fuse_reply_entry(req, &e);
	fs_push_known(c->push, ino);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_ops_ctx *c = ctx(req);
	uint32_t i;
	struct idx_inode in;
	int r = ino32(ino, &i);
	if (r == 0)
		r = idx_reader_inode(c->r, i, &in);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	struct stat st;
	fill_stat(&in, &st);
	fuse_reply_attr(req, &st, c->timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	const char *t;
	size_t len;
	uint32_t i;
	int r = ino32(ino, &i);
	if (r == 0)
		r = idx_reader_readlink(ctx(req)->r, i, &t, &len);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_readlink(req, t);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ctx(req)->no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	uint32_t i, n;
	int r = ino32(ino, &i);
	if (r == 0)
		r = idx_reader_dir_count(ctx(req)->r, i, &n);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct fs_ops_ctx *c = ctx(req);
	uint32_t dir, n;
	struct idx_inode din;
	int r = ino32(ino, &dir);
	if (r == 0)
		r = idx_reader_dir_count(c->r, dir, &n);
	if (r == 0)
		r = idx_reader_inode(c->r, dir, &din);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (size > (1u << 20))
		size = 1u << 20;
	uint8_t *buf = thread_buf(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	uint64_t k0 = off < 0 ? 0 : (uint64_t)off, k;
	for (k = k0; k < (uint64_t)n + 2; k++) {
		const char *name;
		char namebuf[256];
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		if (k < 2) {
			name = k == 0 ? "." : "..";
			e.attr.st_ino = k == 0 ? dir : din.parent;
			e.attr.st_mode = S_IFDIR;
		} else {
			struct idx_dirent de;
			if ((r = idx_reader_dirent(c->r, dir, (uint32_t)(k - 2), &de)) < 0)
				break;
			if (plus) {
				if ((r = entry_of(c, de.ino, &e)) < 0)
					break;
			} else {
				e.attr.st_ino = de.ino;
				e.attr.st_mode = (mode_t)DTTOIF(de.type);
			}
			/* Names in the index are NUL-terminated, but cap what we pass on. */
			size_t l =
			    de.name_len < sizeof(namebuf) - 1 ? de.name_len : sizeof(namebuf) - 1;
			memcpy(namebuf, de.name, l);
			namebuf[l] = 0;
			name = namebuf;
		}
		size_t need = plus ? fuse_add_direntry_plus(req, (char *)buf + used, size - used,
							    name, &e, (off_t)(k + 1))
				   : fuse_add_direntry(req, (char *)buf + used, size - used, name,
						       &e.attr, (off_t)(k + 1));
		if (need > size - used)
			break; /* does not fit: the kernel asks again from offset k */
		used += need;
	}
	if (r < 0 && used == 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fuse_reply_buf(req, (const char *)buf, used);
	/* The kernel has the inodes of the entries it was given with their attributes now. */
	for (uint64_t j = MAX(k0, 2); plus && c->push && j < k; j++) {
		struct idx_dirent de;
		if (idx_reader_dirent(c->r, dir, (uint32_t)(j - 2), &de) == 0)
			fs_push_known(c->push, de.ino);
	}
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ctx(req)->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	uint32_t i;
	struct idx_inode in;
	int r = ino32(ino, &i);
	if (r == 0)
		r = idx_reader_inode(ctx(req)->r, i, &in);
	if (r == 0 && (fi->flags & O_ACCMODE) != O_RDONLY)
		r = -EROFS;
	if (r == 0 && (fi->flags & O_TRUNC))
		r = -EROFS;
	if (r == 0 && S_ISDIR(in.mode))
		r = -EISDIR;
	if (r == 0 && !S_ISREG(in.mode))
		r = -EINVAL;
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_ops_ctx *c = ctx(req);
	uint64_t t0 = cm_now_ns();
	uint32_t i;
	struct idx_inode in;
	int r = ino32(ino, &i);
	if (r == 0)
		r = idx_reader_inode(c->r, i, &in);
	if (r < 0 || off < 0) {
		fuse_reply_err(req, r < 0 ? -r : EINVAL);
		return;
	}
	uint64_t pos = (uint64_t)off, end = pos + size;
	if (end > in.size)
		end = in.size;
	if (pos >= end) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	struct iovec iov[IOV_MAX_PIECES];
	struct fs_chunk_ref refs[IOV_MAX_PIECES];
	size_t n = 0, copied = 0;
	uint8_t *copy = NULL; /* switched to when the pieces do not fit iov[] */
	uint32_t x;
	r = idx_reader_extent_at(c->r, i, pos, &x);
	if (r == 0)
		fs_engine_prime(c->e, i, x, end);
	while (r == 0 && pos < end) {
		struct idx_extent ex;
		struct fs_chunk_ref cr;
		if ((r = idx_reader_extent(c->r, i, x, &ex)) < 0 ||
		    (r = fs_engine_get(c->e, ex.chunk, i, x, &cr)) < 0)
			break;
		uint64_t skip = pos - ex.file_offset;
		if (skip >= cr.len) { /* the index promised contiguous extents */
			fs_engine_put(c->e, &cr);
			r = -EIO;
			break;
		}
		size_t len = (size_t)MIN((uint64_t)cr.len - skip, end - pos);
		if (!copy && n == IOV_MAX_PIECES) {
			if (!(copy = thread_buf(end - (uint64_t)off))) {
				fs_engine_put(c->e, &cr);
				r = -ENOMEM;
				break;
			}
			for (size_t k = 0; k < n; k++) {
				memcpy(copy + copied, iov[k].iov_base, iov[k].iov_len);
				copied += iov[k].iov_len;
				fs_engine_put(c->e, &refs[k]);
			}
			n = 0;
		}
		if (copy) {
			memcpy(copy + copied, cr.data + skip, len);
			copied += len;
			fs_engine_put(c->e, &cr);
		} else {
			iov[n].iov_base = (void *)(cr.data + skip);
			iov[n].iov_len = len;
			refs[n++] = cr;
		}
		pos += len;
		x++;
	}
	bool sequential = false;
	if (r == 0) {
		size_t h = i % ARRAY_SIZE(c->seq_ino);
		uint64_t prev = __atomic_exchange_n(&c->seq_next[h], end, __ATOMIC_RELAXED);
		sequential = __atomic_exchange_n(&c->seq_ino[h], i, __ATOMIC_RELAXED) == i &&
			     prev == (uint64_t)off;
	}
	if (r < 0) {
		log_error("read: inode %u offset %lld size %zu failed: %s", i, (long long)off, size,
			  strerror(-r));
		fuse_reply_err(req, EIO);
	} else if (copy) {
		fuse_reply_buf(req, (const char *)copy, copied);
	} else {
		fuse_reply_iov(req, iov, (int)n);
	}
	for (size_t k = 0; k < n; k++)
		fs_engine_put(c->e, &refs[k]);
	fs_engine_read_done(c->e, (cm_now_ns() - t0) / 1000, end - (uint64_t)off, r < 0);
	if (sequential && end < in.size)
		fs_engine_readahead(c->e, i, end);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_ops_ctx *c = ctx(req);
	pthread_mutex_lock(&c->statfs_lock);
	if (!c->statfs_known) {
		struct idx_stats s;
		idx_reader_stats(c->r, &s);
		c->statfs_files = s.inodes;
		c->statfs_blocks = (s.file_bytes + 4095) / 4096;
		c->statfs_known = true;
	}
	struct statvfs v = {
	    .f_bsize = 4096,
	    .f_frsize = 4096,
	    .f_blocks = c->statfs_blocks,
	    .f_files = c->statfs_files,
	    .f_namemax = 255,
	    .f_flag = ST_RDONLY,
	};
	pthread_mutex_unlock(&c->statfs_lock);
	fuse_reply_statfs(req, &v);
}

/* The index inode of `ino` and its xattr count; false after replying with the error. */
static bool xattrs_of(fuse_req_t req, fuse_ino_t ino, uint32_t *i, uint32_t *n)
{
	int r = ino32(ino, i);
	if (r == 0)
		r = idx_reader_xattr_count(ctx(req)->r, *i, n);
	if (r < 0)
		fuse_reply_err(req, -r);
	return r == 0;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs_ops_ctx *c = ctx(req);
	uint32_t i, n;
	if (c->no_xattrs) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (!xattrs_of(req, ino, &i, &n))
		return;
	for (uint32_t k = 0; k < n; k++) {
		struct idx_xattr x;
		if (idx_reader_xattr(c->r, i, k, &x) < 0 || strcmp(x.name, name) != 0)
			continue;
		if (size == 0)
			fuse_reply_xattr(req, x.value_len);
		else if (size < x.value_len)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, (const char *)x.value, x.value_len);
		return;
	}
	fuse_reply_err(req, ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs_ops_ctx *c = ctx(req);
	uint32_t i, n;
	if (!xattrs_of(req, ino, &i, &n))
		return;
	size_t total = 0;
	for (uint32_t k = 0; k < n; k++) {
		struct idx_xattr x;
		if (idx_reader_xattr(c->r, i, k, &x) == 0)
			total += x.name_len + 1;
	}
	if (total > XATTR_LIST_CAP) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	if (size == 0) {
		fuse_reply_xattr(req, total);
		return;
	}
	if (size < total) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	uint8_t *buf = thread_buf(total ? total : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	for (uint32_t k = 0; k < n; k++) {
		struct idx_xattr x;
		if (idx_reader_xattr(c->r, i, k, &x) < 0)
			continue;
		memcpy(buf + used, x.name, x.name_len);
		used += x.name_len;
		buf[used++] = 0;
	}
	fuse_reply_buf(req, (const char *)buf, used);
}

/* Every operation that would change the image. */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}
static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EROFS);
}
static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}
static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}
static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}
static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EROFS);
}
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}
static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, EROFS);
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .write = op_write,
    .create = op_create,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
};
