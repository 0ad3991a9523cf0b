/*
 * The tree stream: directories in and out of a sandbox (agent/tree.h). libc only: this
 * file is built into the static agent and into the host side.
 */
#include "agent/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const uint32_t mode_bits = S_IFMT | 07777u;

bool agent_tree_path_ok(const char *path)
{
	size_t len = strlen(path);
	if (!len || len >= AGENT_MAX_PATH || path[0] == '/')
		return false;
	const char *p = path;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 0 || n > 255 || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

/* A record's type and size agree: contents only for files and symlinks. */
static bool type_ok(uint32_t mode, uint64_t size)
{
	if (mode & ~mode_bits)
		return false;
	switch (mode & S_IFMT) {
	case S_IFREG:
		return true;
	case S_IFLNK:
		return size >= 1 && size < AGENT_MAX_PATH;
	case S_IFDIR:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		return size == 0;
	default:
		return false;
	}
}

int agent_tree_hdr_encode(struct agent_wbuf *b, const struct agent_tree_entry *e)
{
	if (strlen(e->path) + 1 > AGENT_MAX_PATH)
		return -EFBIG;
	if (!agent_tree_path_ok(e->path) || !type_ok(e->mode, e->size))
		return -EPROTO;
	size_t start = b->len;
	int r;
	if ((r = agent_put_u32(b, e->mode)) < 0 || (r = agent_put_u32(b, e->uid)) < 0 ||
	    (r = agent_put_u32(b, e->gid)) < 0 || (r = agent_put_u64(b, e->size)) < 0 ||
	    (r = agent_put_u64(b, e->mtime_ns)) < 0 || (r = agent_put_str(b, e->path)) < 0) {
		b->len = start;
		return r;
	}
	return 0;
}

/* ---- decoder ---- */

void agent_tree_dec_init(struct agent_tree_dec *d)
{
	memset(d, 0, sizeof(*d));
}

static int dec_header(struct agent_tree_dec *d, struct agent_tree_entry *e)
{
	struct agent_rd r;
	agent_rd_init(&r, d->hdr, d->have);
	int err;
	if (agent_get_u32(&r, &e->mode) < 0 || agent_get_u32(&r, &e->uid) < 0 ||
	    agent_get_u32(&r, &e->gid) < 0 || agent_get_u64(&r, &e->size) < 0 ||
	    agent_get_u64(&r, &e->mtime_ns) < 0)
		return -EPROTO;
	if ((err = agent_get_str(&r, AGENT_MAX_PATH, &e->path)) < 0)
		return err;
	if (agent_rd_done(&r) < 0 || !agent_tree_path_ok(e->path) || !type_ok(e->mode, e->size))
		return -EPROTO;
	return 0;
}

/* The path length of a header whose fixed part has arrived. */
static uint32_t path_len(const uint8_t *hdr)
{
	return (uint32_t)hdr[28] | (uint32_t)hdr[29] << 8 | (uint32_t)hdr[30] << 16 |
	       (uint32_t)hdr[31] << 24;
}

int agent_tree_dec_feed(struct agent_tree_dec *d, const uint8_t *p, size_t n,
			const struct agent_tree_sink *sink, void *ud)
{
	int r;
	while (n) {
		if (d->body) {
			size_t take = d->left < n ? (size_t)d->left : n;
			if ((r = sink->data(ud, p, take)) < 0)
				return r;
			p += take;
			n -= take;
			d->left -= take;
		} else {
			/* first the fixed part and the path's length, then the path */
			size_t want = AGENT_TREE_FIXED + 4;
			if (d->have >= want)
				want += path_len(d->hdr);
			size_t take = want - d->have < n ? want - d->have : n;
			memcpy(d->hdr + d->have, p, take);
			d->have += take;
			p += take;
			n -= take;
			/* the length: refused as soon as it arrives */
			if (d->have == AGENT_TREE_FIXED + 4) {
				uint32_t plen = path_len(d->hdr);
				if (plen == 0)
					return -EPROTO;
				if (plen > AGENT_MAX_PATH)
					return -EFBIG;
				continue;
			}
			if (d->have < want)
				continue;
			struct agent_tree_entry e;
			if ((r = dec_header(d, &e)) < 0)
				return r;
			d->records++;
			d->body = true;
			d->left = e.size;
			if ((r = sink->entry(ud, &e)) < 0)
				return r;
		}
		if (d->body && !d->left) {
			d->body = false;
			d->have = 0;
			if ((r = sink->end(ud)) < 0)
				return r;
		}
	}
	return 0;
}

int agent_tree_dec_finish(const struct agent_tree_dec *d)
{
	return d->body || d->have ? -EPROTO : 0;
}

/* ---- reader ---- */

int agent_tree_reader_init(struct agent_tree_reader *r, int dirfd)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	agent_wbuf_init(&r->pend, AGENT_TREE_HDR_MAX + AGENT_MAX_PATH);
	DIR *d = fdopendir(dirfd);
	if (!d) {
		int e = errno;
		close(dirfd);
		r->op = "opendir";
		return -e;
	}
	struct stat st;
	if (fstat(dirfd, &st) < 0) {
		int e = errno;
		closedir(d);
		r->op = "stat";
		return -e;
	}
	r->dev = (uint64_t)st.st_dev;
	r->dirs[0] = d;
	r->depth = 1;
	return 0;
}

void agent_tree_reader_fini(struct agent_tree_reader *r)
{
	while (r->depth > 0)
		closedir(r->dirs[--r->depth]);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	agent_wbuf_fini(&r->pend);
}

static uint64_t mtime_ns(const struct stat *st)
{
	if (st->st_mtim.tv_sec < 0)
		return 0;
	return (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
}

/* The next entry of the innermost directory into r->pend (and r->fd for a file): 1, 0 at
 * the end of the tree, -errno. */
static int reader_next(struct agent_tree_reader *r)
{
	for (;;) {
		if (r->depth == 0)
			return 0;
		DIR *d = r->dirs[r->depth - 1];
		size_t base = r->plens[r->depth - 1];
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno) {
				r->path[base] = 0;
				r->op = "readdir";
				return -errno;
			}
			closedir(d);
			r->depth--;
			continue;
		}
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		size_t nl = strlen(name), plen = base + (base ? 1 : 0) + nl;
		if (plen + 1 > AGENT_MAX_PATH) {
			r->op = "path too long";
			return -ENAMETOOLONG;
		}
		if (base)
			r->path[base] = '/';
		memcpy(r->path + base + (base ? 1 : 0), name, nl + 1);
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT) /* gone since readdir */
				continue;
			r->op = "stat";
			return -errno;
		}
		struct agent_tree_entry e = {.mode = st.st_mode & mode_bits,
					     .uid = (uint32_t)st.st_uid,
					     .gid = (uint32_t)st.st_gid,
					     .mtime_ns = mtime_ns(&st),
					     .path = r->path};
		char target[AGENT_MAX_PATH];
		int child = -1;
		if (S_ISREG(st.st_mode)) {
			int fd =
			    openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
			if (fd < 0 && (errno == ENOENT || errno == ELOOP))
				continue; /* gone, or replaced by a symlink */
			if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
				int err = fd < 0 ? errno : EAGAIN;
				if (fd >= 0)
					close(fd);
				r->op = "open";
				return -err;
			}
			r->fd = fd;
			r->left = e.size = (uint64_t)st.st_size;
		} else if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlinkat(dirfd(d), name, target, sizeof(target));
			if (n < 0 && errno == ENOENT)
				continue;
			if (n <= 0 || (size_t)n >= sizeof(target)) {
				r->op = "readlink";
				return n < 0 ? -errno : -ENAMETOOLONG;
			}
			e.size = (uint64_t)n;
		} else if (!S_ISDIR(st.st_mode)) {
			/* devices, fifos, sockets: a record without contents, which receivers skip
			 */
			r->skipped++;
		} else if ((uint64_t)st.st_dev != r->dev) {
			/* another filesystem mounted here (/proc below a sandbox's root): the
			 * directory, not what is in it */
		} else {
			if (r->depth >= AGENT_TREE_MAX_DEPTH) {
				r->op = "directories nested too deep";
				return -ELOOP;
			}
			child =
			    openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (child < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
				continue;
			if (child < 0) {
				r->op = "open";
				return -errno;
			}
		}
		r->pend.len = 0;
		r->pend_off = 0;
		int err = agent_tree_hdr_encode(&r->pend, &e);
		if (err >= 0 && S_ISLNK(st.st_mode))
			err = agent_wbuf_append(&r->pend, target, (size_t)e.size);
		if (err >= 0 && child >= 0) {
			DIR *cd = fdopendir(child);
			if (!cd) {
				err = -errno;
				close(child);
			} else {
				r->dirs[r->depth] = cd;
				r->plens[r->depth] = plen;
				r->depth++;
			}
		} else if (child >= 0) {
			close(child);
		}
		if (err < 0) {
			r->op = "encode";
			return err;
		}
		r->entries++;
		return 1;
	}
}

ssize_t agent_tree_reader_read(struct agent_tree_reader *r, uint8_t *buf, size_t cap)
{
	size_t got = 0;
	while (got < cap) {
		if (r->pend_off < r->pend.len) {
			size_t n = r->pend.len - r->pend_off;
			if (n > cap - got)
				n = cap - got;
			memcpy(buf + got, r->pend.data + r->pend_off, n);
			r->pend_off += n;
			got += n;
			continue;
		}
		if (r->fd >= 0) {
			if (!r->left) {
				close(r->fd);
				r->fd = -1;
				continue;
			}
			size_t want = cap - got;
			if (want > r->left)
				want = (size_t)r->left;
			ssize_t n = read(r->fd, buf + got, want);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				r->op = "read";
				return -errno;
			}
			if (n == 0) { /* shrank under us: its record promised r->left more bytes */
				memset(buf + got, 0, want);
				n = (ssize_t)want;
			}
			got += (size_t)n;
			r->left -= (uint64_t)n;
			continue;
		}
		int e = reader_next(r);
		if (e < 0)
			return e;
		if (e == 0)
			break;
	}
	return (ssize_t)got;
}

/* ---- writer ---- */

struct agent_tree_dirmeta {
	char *path;
	uint32_t mode, uid, gid;
	uint64_t mtime_ns;
};

static unsigned writer_ids; /* temporary names of writers at work at once differ */

void agent_tree_writer_init(struct agent_tree_writer *w, int root, bool chown, uint32_t perm_mask)
{
	memset(w, 0, sizeof(*w));
	w->root = root;
	w->chown = chown;
	w->perm_mask = perm_mask;
	w->pfd = w->fd = w->cfd = -1;
	w->pid = (long)getpid();
	w->id = __atomic_fetch_add(&writer_ids, 1, __ATOMIC_RELAXED);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void entry_reset(struct agent_tree_writer *w)
{
	if (w->fd >= 0 && w->tmp[0])
		unlinkat(w->pfd, w->tmp, 0);
	close_fd(&w->fd);
	w->pfd = -1; /* borrowed: the root or the cached directory */
	w->tmp[0] = 0;
	w->link_len = 0;
	w->skip = false;
}

void agent_tree_writer_fini(struct agent_tree_writer *w)
{
	entry_reset(w);
	close_fd(&w->cfd);
	for (size_t i = 0; i < w->ndirs; i++)
		free(w->dirs[i].path);
	free(w->dirs);
	w->dirs = NULL;
	w->ndirs = w->adirs = 0;
}

static int fail(struct agent_tree_writer *w, const char *op, int err)
{
	w->op = op;
	return -err;
}

/*
 * Open the directory that holds `path` (relative to root) without following any symlink,
 * into w->pfd (borrowed), and put its last component in w->name. The last directory opened
 * stays open (w->cfd, its path w->cpath): entries come in pre-order, so most share it, or
 * are in a directory below it, and each component walked costs a lookup (~100 us on the
 * overlay of a sandbox's scratch).
 */
static int open_parent(struct agent_tree_writer *w, const char *path)
{
	const char *last = strrchr(path, '/');
	size_t plen = last ? (size_t)(last - path) : 0;
	snprintf(w->name, sizeof(w->name), "%s", last ? last + 1 : path);
	if (!plen) {
		w->pfd = w->root;
		return 0;
	}
	size_t clen = w->cfd >= 0 ? strlen(w->cpath) : 0;
	int fd = -1;
	const char *p = path;
	if (clen && clen <= plen && !memcmp(w->cpath, path, clen) &&
	    (clen == plen || path[clen] == '/')) {
		if (clen == plen) {
			w->pfd = w->cfd;
			return 0;
		}
		p = path + clen + 1; /* below the cached directory */
		fd = w->cfd;
		w->cfd = -1;
	}
	for (;;) {
		const char *slash = strchr(p, '/');
		if (!slash)
			break;
		char comp[256];
		size_t n = (size_t)(slash - p);
		memcpy(comp, p, n); /* agent_tree_path_ok: n <= 255 */
		comp[n] = 0;
		int nfd = openat(fd >= 0 ? fd : w->root, comp,
				 O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close_fd(&fd);
		if (nfd < 0) /* ENOTDIR, ELOOP: a symlink or a file where a directory should be */
			return fail(w, e == ENOENT ? "its directory is not in the stream" : "open",
				    e == ELOOP ? ENOTDIR : e);
		fd = nfd;
		p = slash + 1;
	}
	close_fd(&w->cfd);
	w->cfd = fd;
	memcpy(w->cpath, path, plen);
	w->cpath[plen] = 0;
	w->pfd = fd;
	return 0;
}

static struct timespec ts_of(uint64_t ns)
{
	struct timespec t = {.tv_sec = (time_t)(ns / 1000000000u),
			     .tv_nsec = (long)(ns % 1000000000u)};
	return t;
}

/* A temporary name beside the entry's: this process, this writer, a sequence number. */
static void tmp_name(struct agent_tree_writer *w)
{
	snprintf(w->tmp, sizeof(w->tmp), ".isorun-cp-%ld-%u-%u", w->pid, w->id, w->tmp_seq++);
}

static int writer_entry(void *ud, const struct agent_tree_entry *e)
{
	struct agent_tree_writer *w = ud;
	entry_reset(w);
	snprintf(w->where, sizeof(w->where), "%s", e->path);
	w->e = *e;
	w->e.path = w->where;
	uint32_t type = e->mode & S_IFMT;
	if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK) {
		w->skipped++;
		w->skip = true;
		return 0;
	}
	int r = open_parent(w, e->path);
	if (r < 0)
		return r;
	if (type == S_IFDIR) {
		if (mkdirat(w->pfd, w->name, 0700) < 0) {
			struct stat st;
			if (errno != EEXIST)
				return fail(w, "mkdir", errno);
			if (fstatat(w->pfd, w->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				return fail(w, "stat", errno);
			if (!S_ISDIR(st.st_mode))
				return fail(w, "exists and is not a directory", EEXIST);
		}
		if (w->ndirs == w->adirs) {
			size_t na = w->adirs ? w->adirs * 2 : 64;
			struct agent_tree_dirmeta *nd = realloc(w->dirs, na * sizeof(*nd));
			if (!nd)
				return fail(w, "out of memory", ENOMEM);
			w->dirs = nd;
			w->adirs = na;
		}
		char *copy = strdup(e->path);
		if (!copy)
			return fail(w, "out of memory", ENOMEM);
		w->dirs[w->ndirs++] = (struct agent_tree_dirmeta){.path = copy,
								  .mode = e->mode,
								  .uid = e->uid,
								  .gid = e->gid,
								  .mtime_ns = e->mtime_ns};
		w->written++;
		return 0;
	}
	if (type == S_IFREG) {
		for (int i = 0;; i++) { /* a name left by a writer that crashed: the next one */
			tmp_name(w);
			w->fd = openat(w->pfd, w->tmp,
				       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (w->fd >= 0 || errno != EEXIST || i == 8)
				break;
		}
		if (w->fd < 0) {
			w->tmp[0] = 0;
			return fail(w, "create", errno);
		}
	}
	return 0;
}

static int writer_data(void *ud, const uint8_t *p, size_t n)
{
	struct agent_tree_writer *w = ud;
	if (w->skip)
		return 0;
	if ((w->e.mode & S_IFMT) == S_IFLNK) { /* the decoder capped it below the buffer */
		memcpy(w->link + w->link_len, p, n);
		w->link_len += n;
		return 0;
	}
	while (n) {
		ssize_t k = write(w->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return fail(w, "write", k < 0 ? errno : EIO);
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int writer_end(void *ud)
{
	struct agent_tree_writer *w = ud;
	uint32_t type = w->e.mode & S_IFMT;
	if (w->skip || type == S_IFDIR) {
		entry_reset(w);
		return 0;
	}
	struct timespec ts[2] = {ts_of(w->e.mtime_ns), ts_of(w->e.mtime_ns)};
	if (type == S_IFREG) {
		if (w->chown && fchown(w->fd, w->e.uid, w->e.gid) < 0)
			return fail(w, "chown", errno);
		/* after chown, which clears set-id bits */
		if (fchmod(w->fd, w->e.mode & 07777 & w->perm_mask) < 0)
			return fail(w, "chmod", errno);
		if (futimens(w->fd, ts) < 0)
			return fail(w, "utimens", errno);
	} else {
		w->link[w->link_len] = 0;
		if (memchr(w->link, 0, w->link_len))
			return fail(w, "symlink target holds a NUL byte", EINVAL);
		int r;
		for (int i = 0;; i++) {
			tmp_name(w);
			r = symlinkat(w->link, w->pfd, w->tmp);
			if (r == 0 || errno != EEXIST || i == 8)
				break;
		}
		if (r < 0) {
			w->tmp[0] = 0;
			return fail(w, "symlink", errno);
		}
		if (w->chown &&
		    fchownat(w->pfd, w->tmp, w->e.uid, w->e.gid, AT_SYMLINK_NOFOLLOW) < 0) {
			unlinkat(w->pfd, w->tmp, 0);
			return fail(w, "chown", errno);
		}
		/* times of a symlink: best effort (not every filesystem keeps them) */
		(void)utimensat(w->pfd, w->tmp, ts, AT_SYMLINK_NOFOLLOW);
	}
	if (renameat(w->pfd, w->tmp, w->pfd, w->name) < 0) {
		int e = errno;
		if (type == S_IFLNK)
			unlinkat(w->pfd, w->tmp, 0);
		return fail(w, "rename", e);
	}
	w->tmp[0] = 0;
	w->written++;
	entry_reset(w);
	return 0;
}

const struct agent_tree_sink agent_tree_writer_sink = {
    .entry = writer_entry, .data = writer_data, .end = writer_end};

int agent_tree_writer_finish(struct agent_tree_writer *w)
{
	entry_reset(w);
	/* innermost first: a directory's time changes while its entries are made */
	for (size_t i = w->ndirs; i-- > 0;) {
		struct agent_tree_dirmeta *m = &w->dirs[i];
		snprintf(w->where, sizeof(w->where), "%s", m->path);
		int r = open_parent(w, m->path);
		if (r < 0)
			return r;
		int fd = openat(w->pfd, w->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return fail(w, "open", errno);
		struct timespec ts[2] = {ts_of(m->mtime_ns), ts_of(m->mtime_ns)};
		const char *op = NULL;
		if (w->chown && fchown(fd, m->uid, m->gid) < 0)
			op = "chown";
		else if (fchmod(fd, m->mode & 07777 & w->perm_mask) < 0)
			op = "chmod";
		else if (futimens(fd, ts) < 0)
			op = "utimens";
		int e = errno;
		close(fd);
		if (op)
			return fail(w, op, e);
	}
	return 0;
}
