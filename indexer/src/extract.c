/*
 * idx_extract / idx_verify. The extractor walks the directory tree depth-first holding an
 * fd per directory level; names come from a validated index (single path components), and
 * every call is *at() relative to the parent's fd with AT_SYMLINK_NOFOLLOW/O_NOFOLLOW, so a
 * symlink in the image can never redirect a write outside `dir`.
 * Order per inode: create -> chown -> chmod (chown clears setuid) -> xattrs (chown clears
 * security.capability) -> utimensat; directories get their times after their children.
 */
#include "indexer/extract.h"

#include "indexer/index.h"
#include "indexer/store.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

struct xstate {
	const struct idx_reader *r;
	struct idx_store *s;
	int rootfd;
	char **first_path; /* by ino: path (relative to root) of the first name, for hardlinks */
	uint8_t *buf;	   /* one chunk */
	uint32_t bufcap;
	bool is_root;
};

static int set_meta(struct xstate *x, int dfd, const char *name, const struct idx_inode *in)
{
	if (x->is_root && fchownat(dfd, name, in->uid, in->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return cm_log_ret(-errno, "chown %s: %s", name, strerror(errno));
	if (!S_ISLNK(in->mode) && fchmodat(dfd, name, in->mode & 07777, 0) < 0)
		return cm_log_ret(-errno, "chmod %s: %s", name, strerror(errno));
	uint32_t nx = 0;
	idx_reader_xattr_count(x->r, in->ino, &nx);
	if (nx) {
		/* There is no fsetxattrat(): take an O_PATH|O_NOFOLLOW fd and set through its
		 * /proc/self/fd magic link, which lands on that very inode (a symlink included)
		 * without resolving any path of the image. */
		_cleanup_close_ int fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		for (uint32_t i = 0; i < nx; i++) {
			struct idx_xattr xa;
			idx_reader_xattr(x->r, in->ino, i, &xa);
			if (setxattr(p, xa.name, xa.value, xa.value_len, 0) < 0) {
				if (errno == ENOTSUP || (errno == EPERM && !x->is_root)) {
					log_warn("cannot set xattr %s on %s: %s", xa.name, name, strerror(errno));
					continue;
				}
				return cm_log_ret(-errno, "setxattr %s on %s: %s", xa.name, name, strerror(errno));
			}
		}
	}
	struct timespec ts[2] = {{in->mtime_sec, in->mtime_nsec}, {in->mtime_sec, in->mtime_nsec}};
	if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return cm_log_ret(-errno, "utimensat %s: %s", name, strerror(errno));
	return 0;
}

static int write_file(struct xstate *x, int fd, const struct idx_inode *in)
{
	uint32_t n;
	int k = idx_reader_extent_count(x->r, in->ino, &n);
	if (k < 0)
		return k;
	for (uint32_t i = 0; i < n; i++) {
		struct idx_extent e;
		struct idx_chunk c;
		idx_reader_extent(x->r, in->ino, i, &e);
		idx_reader_chunk(x->r, e.chunk, &c);
		if (c.usize > x->bufcap) {
			uint8_t *b = realloc(x->buf, c.usize);
			if (!b)
				return -ENOMEM;
			x->buf = b;
			x->bufcap = c.usize;
		}
		k = idx_store_read_chunk(x->s, c.digest, x->buf, c.usize);
		if (k < 0) {
			char d[72];
			cm_digest_format(c.digest, d);
			return cm_log_ret(k, "chunk %s: %s", d, k == -ENOENT ? "not in the store" : "corrupt");
		}
		k = cm_write_full(fd, x->buf, c.usize);
		if (k < 0)
			return k;
	}
	return 0;
}

static int extract_dir(struct xstate *x, int dfd, uint32_t dir, const char *relpath)
{
	uint32_t n;
	int k = idx_reader_dir_count(x->r, dir, &n);
	if (k < 0)
		return k;
	for (uint32_t i = 0; i < n; i++) {
		struct idx_dirent de;
		struct idx_inode in;
		idx_reader_dirent(x->r, dir, i, &de);
		idx_reader_inode(x->r, de.ino, &in);
		_cleanup_free_ char *path = relpath[0] ? cm_strdupf("%s/%s", relpath, de.name)
						       : strdup(de.name);
		if (!path)
			return -ENOMEM;
		const char *name = de.name;
		if (!S_ISDIR(in.mode) && x->first_path[de.ino]) {
			if (linkat(x->rootfd, x->first_path[de.ino], dfd, name, 0) < 0)
				return cm_log_ret(-errno, "link %s: %s", path, strerror(errno));
			continue;
		}
		switch (in.mode & S_IFMT) {
		case S_IFDIR:
			if (mkdirat(dfd, name, 0700) < 0)
				return cm_log_ret(-errno, "mkdir %s: %s", path, strerror(errno));
			break;
		case S_IFREG: {
			_cleanup_close_ int fd =
				openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (fd < 0)
				return cm_log_ret(-errno, "create %s: %s", path, strerror(errno));
			if ((k = write_file(x, fd, &in)) < 0)
				return k;
			break;
		}
		case S_IFLNK: {
			const char *target;
			size_t len;
			idx_reader_readlink(x->r, de.ino, &target, &len);
			if (symlinkat(target, dfd, name) < 0)
				return cm_log_ret(-errno, "symlink %s: %s", path, strerror(errno));
			break;
		}
		default:
			if (mknodat(dfd, name, in.mode & (S_IFMT | 07777),
				    makedev(in.rdev_major, in.rdev_minor)) < 0)
				return cm_log_ret(-errno, "mknod %s: %s", path, strerror(errno));
			break;
		}
		if (S_ISDIR(in.mode)) {
			_cleanup_close_ int sub =
				openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return -errno;
			if ((k = extract_dir(x, sub, de.ino, path)) < 0)
				return k;
		} else if (in.nlink > 1) {
			x->first_path[de.ino] = TAKE_PTR(path);
		}
		if ((k = set_meta(x, dfd, name, &in)) < 0)
			return k;
	}
	return 0;
}

int idx_extract(const struct idx_reader *r, struct idx_store *s, const char *dir)
{
	int k = cm_mkdir_p(AT_FDCWD, dir, 0755);
	if (k < 0)
		return cm_log_ret(k, "%s: %s", dir, strerror(-k));
	_cleanup_close_ int rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return cm_log_ret(-errno, "%s: %s", dir, strerror(errno));
	DIR *d = fdopendir(dup(rootfd));
	if (!d)
		return -errno;
	struct dirent *e;
	bool empty = true;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = false;
	closedir(d);
	if (!empty)
		return cm_log_ret(-ENOTEMPTY, "%s is not empty", dir);

	uint32_t n = idx_reader_inode_count(r);
	struct xstate x = {.r = r, .s = s, .rootfd = rootfd, .is_root = geteuid() == 0};
	x.first_path = calloc((size_t)n + 1, sizeof(char *));
	if (!x.first_path)
		return -ENOMEM;
	k = extract_dir(&x, rootfd, IDX_ROOT_INO, "");
	if (k == 0) {
		struct idx_inode root;
		idx_reader_inode(r, IDX_ROOT_INO, &root);
		k = set_meta(&x, rootfd, ".", &root);
	}
	for (uint32_t i = 0; i <= n; i++)
		free(x.first_path[i]);
	free(x.first_path);
	free(x.buf);
	return k;
}

int idx_verify(const struct idx_reader *r, struct idx_store *s, struct idx_verify_result *ret)
{
	memset(ret, 0, sizeof(*ret));
	uint32_t n = idx_reader_chunk_count(r);
	_cleanup_free_ uint8_t *buf = malloc(4u << 20);
	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct idx_chunk c;
		idx_reader_chunk(r, i, &c);
		ret->chunks++;
		int k = idx_store_read_chunk(s, c.digest, buf, c.usize);
		if (k == -ENOENT)
			ret->missing++;
		else if (k == -EBADMSG)
			ret->corrupt++;
		else if (k < 0)
			return k;
	}
	if (ret->corrupt)
		return -EBADMSG;
	return ret->missing ? -ENOENT : 0;
}
