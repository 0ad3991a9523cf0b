/*
 * The local content-addressed store (see indexer/store.h for the layout).
 *
 * Concurrency: chunk and index files are published with rename(2) from ROOT/tmp, so several
 * processes may insert the same chunk at once; the last rename wins with identical bytes.
 * The sqlite handle is guarded by `lock`; sqlite itself serialises across processes (WAL,
 * busy timeout).
 */
#include "indexer/store.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "store_int.h"

/* PRAGMA user_version of a store.db that has every table below: an open that finds it (or a
 * newer one) skips the schema's statements, half of the open's time (0.2-0.3 ms of every
 * process that opens the store). Bump it whenever the schema changes. */
#define STORE_SCHEMA_VERSION 1
#define STORE_STR_(x)	     #x
#define STORE_STR(x)	     STORE_STR_(x)

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"CREATE TABLE IF NOT EXISTS images("
	" ref TEXT PRIMARY KEY,"
	" manifest_digest TEXT NOT NULL,"
	" index_digest TEXT NOT NULL,"
	" created INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS images_manifest ON images(manifest_digest);"
	STORE_PACKS_SCHEMA;

int store_db_err(sqlite3 *db, int rc, const char *what)
{
	log_error("store.db: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	switch (rc) {
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EAGAIN;
	case SQLITE_PERM:
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN: return -EACCES;
	case SQLITE_FULL:
		return -ENOSPC;
	default: return -EIO;
	}
}

/* No block left on the store's filesystem (as an unprivileged writer sees it). */
static bool store_disk_full(const char *root)
{
	struct statvfs st;
	return statvfs(root, &st) == 0 && st.f_bavail == 0;
}

int idx_store_open(const char *root, struct idx_store **ret)
{
	int r = cm_mkdir_p(AT_FDCWD, root, 0755);
	if (r < 0)
		return cm_log_ret(r, "cannot create store root %s: %s", root, strerror(-r));
	_cleanup_free_ char *dbpath = NULL; /* before any goto fail: cleanup runs there */
	struct idx_store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->fd_lock, NULL);
	s->root_fd = -1;
	s->root = strdup(root);
	if (!s->root) {
		r = -ENOMEM;
		goto fail;
	}
	s->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->root_fd < 0) {
		r = -errno;
		goto fail;
	}
	static const char *dirs[] = {"chunks",	  "indexes", "tmp", "mounts",
				     "sandboxes", "packs",   "refs"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
		if (mkdirat(s->root_fd, dirs[i], 0755) < 0 && errno != EEXIST) {
			r = -errno;
			goto fail;
		}
	/* chunks/00 .. chunks/ff are made when a chunk file first goes there
	 * (idx_store_rename_into): a store whose chunks come in packs never needs them, and
	 * 256 directories were 256 inode allocations at the start of every cold `isorun run`. */
	dbpath = cm_strdupf("%s/store.db", root);
	if (!dbpath) {
		r = -ENOMEM;
		goto fail;
	}
	int rc = sqlite3_open_v2(dbpath, &s->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = store_db_err(s->db, rc, "open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 10000);
	int version = 0;
	{
		sqlite3_stmt *uv = NULL;
		rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &uv, NULL);
		if (rc == SQLITE_OK && (rc = sqlite3_step(uv)) == SQLITE_ROW) {
			version = sqlite3_column_int(uv, 0);
			rc = SQLITE_OK;
		}
		sqlite3_finalize(uv);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	if (rc == SQLITE_OK && version < STORE_SCHEMA_VERSION) {
		rc = sqlite3_exec(s->db, schema, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(s->db,
					  "PRAGMA user_version=" STORE_STR(STORE_SCHEMA_VERSION),
					  NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		r = store_db_err(s->db, rc, "schema");
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	if (r != -ENOMEM && store_disk_full(root)) {
		/* SQLite says "disk I/O error" when it cannot make its shared-memory file */
		r = -ENOSPC;
		log_error("cannot open store %s: its filesystem is full", root);
	} else if (r != -ENOMEM) {
		log_error("cannot open store %s: %s", root, strerror(-r));
	}
	idx_store_free(s);
	return r;
}

void idx_store_free(struct idx_store *s)
{
	if (!s)
		return;
	if (s->db)
		sqlite3_close(s->db);
	if (s->root_fd >= 0)
		close(s->root_fd);
	store_packs_fini(s);
	pthread_mutex_destroy(&s->fd_lock);
	pthread_mutex_destroy(&s->lock);
	free(s->root);
	free(s);
}

const char *idx_store_root(const struct idx_store *s)
{
	return s->root;
}

int idx_store_root_fd(const struct idx_store *s)
{
	return s->root_fd;
}

void idx_store_chunk_relpath(const uint8_t digest[32], char out[80])
{
	char hex[65];
	cm_hex_format(digest, 32, hex);
	snprintf(out, 80, "chunks/%.2s/%s", hex, hex);
}

int idx_store_chunk_dirs(struct idx_store *s, uint8_t mask[32])
{
	/* chunks/XX exist only once a chunk file went there (idx_store_rename_into): one read
	 * of chunks/ finds them, and only those are looked into */
	memset(mask, 0, 32);
	DIR *top = cm_opendirat(s->root_fd, "chunks", 0);
	if (!top) {
		if (errno != ENOENT)
			memset(mask, 0xff, 32); /* cannot tell: look everywhere */
		return 0;
	}
	struct dirent *de;
	while ((de = readdir(top))) {
		uint8_t i;
		if (strlen(de->d_name) != 2 || cm_hex_parse(de->d_name, 1, &i) < 0)
			continue;
		DIR *dir = cm_opendirat(dirfd(top), de->d_name, 0);
		bool any = !dir; /* unreadable: counts as holding some */
		struct dirent *fe;
		while (dir && !any && (fe = readdir(dir)))
			any = strcmp(fe->d_name, ".") != 0 && strcmp(fe->d_name, "..") != 0;
		if (dir)
			closedir(dir);
		if (any)
			mask[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	closedir(top);
	return 0;
}

bool idx_store_has_chunk(struct idx_store *s, const uint8_t digest[32])
{
	char p[80];
	idx_store_chunk_relpath(digest, p);
	if (faccessat(s->root_fd, p, F_OK, AT_EACCESS) == 0)
		return true;
	struct idx_store_loc l;
	return idx_store_locate(s, digest, 1, &l) == 0 && l.pack != 0;
}

/* Decompress one zstd frame of exactly `usize` bytes and compare its SHA-256. */
static int verify_frame(const uint8_t digest[32], const void *cdata, size_t clen, void *ubuf,
			uint32_t usize)
{
	unsigned long long fsz = ZSTD_getFrameContentSize(cdata, clen);
	if (fsz != usize)
		return -EBADMSG;
	size_t n = ZSTD_decompress(ubuf, usize, cdata, clen);
	if (ZSTD_isError(n) || n != usize)
		return -EBADMSG;
	uint8_t d[32];
	cm_sha256(ubuf, usize, d);
	return memcmp(d, digest, 32) == 0 ? 0 : -EBADMSG;
}

int idx_store_rename_into(struct idx_store *s, int fromfd, const char *from, const char *relpath)
{
	if (renameat(fromfd, from, s->root_fd, relpath) == 0)
		return 0;
	const char *slash = strrchr(relpath, '/');
	if (errno != ENOENT || !slash)
		return -errno;
	char dir[96];
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - relpath), relpath);
	/* (EEXIST: another writer made it meanwhile) */
	if (mkdirat(s->root_fd, dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return renameat(fromfd, from, s->root_fd, relpath) < 0 ? -errno : 0;
}

/* Write `data` to a fresh file in ROOT/tmp and rename it to `relpath`. */
static int publish(struct idx_store *s, const char *relpath, const void *data, size_t len,
		   bool durable)
{
	static unsigned long counter;
	char tmp[96];
	snprintf(tmp, sizeof(tmp), "tmp/%ld.%lu.%lx", (long)getpid(),
		 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED), (unsigned long)pthread_self());
	_cleanup_close_ int fd = openat(s->root_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int r = cm_write_full(fd, data, len);
	if (r == 0 && durable && fsync(fd) < 0)
		r = -errno;
	if (r == 0)
		r = idx_store_rename_into(s, s->root_fd, tmp, relpath);
	if (r < 0) {
		unlinkat(s->root_fd, tmp, 0);
		log_error("store: cannot publish %s: %s", relpath, strerror(-r));
	}
	return r;
}

int idx_store_put_chunk(struct idx_store *s, const uint8_t digest[32], const void *cdata,
			size_t clen, uint32_t usize, bool verify)
{
	char p[80];
	idx_store_chunk_relpath(digest, p);
	if (faccessat(s->root_fd, p, F_OK, AT_EACCESS) == 0)
		return 0;
	if (verify) {
		_cleanup_free_ void *u = malloc(usize ? usize : 1);
		if (!u)
			return -ENOMEM;
		int r = verify_frame(digest, cdata, clen, u, usize);
		if (r < 0)
			return r;
	}
	int r = publish(s, p, cdata, clen, false);
	return r < 0 ? r : 1;
}

/* RFC 8878: the largest block, and a frame header of magic + descriptor (single segment,
 * 4-byte content size, no checksum, no dictionary) + content size. */
#define RAW_BLOCK_MAX (128u << 10)
#define RAW_FHD	      0xA0u

size_t idx_store_raw_frame_size(uint32_t usize)
{
	size_t blocks = usize ? (usize + RAW_BLOCK_MAX - 1) / RAW_BLOCK_MAX : 1;
	return 9 + 3 * blocks + usize;
}

void idx_store_raw_frame_header(uint32_t usize, uint8_t out[9])
{
	cm_put_le32(out, ZSTD_MAGICNUMBER);
	out[4] = RAW_FHD;
	cm_put_le32(out + 5, usize);
}

void idx_store_raw_frame(const void *udata, uint32_t usize, uint8_t *out)
{
	const uint8_t *in = udata;
	idx_store_raw_frame_header(usize, out);
	out += 9;
	uint32_t left = usize;
	do {
		uint32_t n = left < RAW_BLOCK_MAX ? left : RAW_BLOCK_MAX;
		/* Block header: bit 0 last block, bits 1-2 type (0 = raw), bits 3-23 size. */
		uint32_t h = (n << 3) | (left == n ? 1u : 0u);
		out[0] = (uint8_t)h;
		out[1] = (uint8_t)(h >> 8);
		out[2] = (uint8_t)(h >> 16);
		memcpy(out + 3, in, n);
		out += 3 + n;
		in += n;
		left -= n;
	} while (left);
}

/* The iovecs of a raw frame of at most RAW_IOV_MAXB blocks: headers in `hdr`, data at
 * `data` (written from or read into, no copy). Returns the count, or 0 for a longer frame. */
int store_raw_iov(const void *data, uint32_t usize, uint8_t hdr[RAW_IOV_HDR],
		  struct iovec iov[RAW_IOV_MAX])
{
	uint32_t nb = usize ? (usize + RAW_BLOCK_MAX - 1) / RAW_BLOCK_MAX : 1;
	if (nb > RAW_IOV_MAXB)
		return 0;
	int n = 0;
	idx_store_raw_frame_header(usize, hdr);
	iov[n++] = (struct iovec){.iov_base = hdr, .iov_len = 9};
	uint8_t *in = (uint8_t *)data;
	uint32_t left = usize;
	for (uint32_t b = 0; b < nb; b++) {
		uint32_t len = left < RAW_BLOCK_MAX ? left : RAW_BLOCK_MAX;
		uint32_t h = (len << 3) | (left == len ? 1u : 0u);
		uint8_t *bh = hdr + 9 + 3 * b;
		bh[0] = (uint8_t)h;
		bh[1] = (uint8_t)(h >> 8);
		bh[2] = (uint8_t)(h >> 16);
		iov[n++] = (struct iovec){.iov_base = bh, .iov_len = 3};
		if (len)
			iov[n++] = (struct iovec){.iov_base = in, .iov_len = len};
		in += len;
		left -= len;
	}
	return n;
}

int idx_store_pread_raw(int fd, uint64_t off, uint32_t usize, bool whole_file, void *ubuf)
{
	uint8_t hdr[RAW_IOV_HDR], want[RAW_IOV_HDR], extra;
	struct iovec iov[RAW_IOV_MAX + 1];
	int n = store_raw_iov(ubuf, usize, hdr, iov);
	size_t size = idx_store_raw_frame_size(usize), hlen = size - usize;
	if (n == 0) {
		/* More than 8 blocks (chunks over 1 MiB): through a buffer. */
		_cleanup_free_ uint8_t *f = malloc(size + 1);
		if (!f)
			return -ENOMEM;
		ssize_t got = pread(fd, f, whole_file ? size + 1 : size, (off_t)off);
		if (got < 0)
			return -errno;
		if ((size_t)got != size)
			return 0;
		idx_store_raw_frame_header(usize, want);
		if (memcmp(f, want, 9) != 0)
			return 0;
		uint8_t *out = ubuf;
		size_t pos = 9;
		for (uint32_t left = usize; left;) {
			uint32_t len = left < RAW_BLOCK_MAX ? left : RAW_BLOCK_MAX;
			uint32_t h = (len << 3) | (left == len ? 1u : 0u);
			if (f[pos] != (uint8_t)h || f[pos + 1] != (uint8_t)(h >> 8) ||
			    f[pos + 2] != (uint8_t)(h >> 16))
				return 0;
			memcpy(out, f + pos + 3, len);
			out += len;
			pos += 3 + len;
			left -= len;
		}
		return 1;
	}
	memcpy(want, hdr, hlen); /* what the headers must be; preadv overwrites `hdr` */
	if (whole_file)
		iov[n++] = (struct iovec){&extra, 1}; /* a longer file is not this frame */
	ssize_t got = preadv(fd, iov, n, (off_t)off);
	if (got < 0)
		return -errno;
	return (size_t)got == size && memcmp(hdr, want, hlen) == 0 ? 1 : 0;
}

int idx_store_open_chunk(struct idx_store *s, const uint8_t digest[32])
{
	char p[80];
	idx_store_chunk_relpath(digest, p);
	int fd = openat(s->root_fd, p, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int idx_store_read_chunk(struct idx_store *s, const uint8_t digest[32], void *ubuf, uint32_t usize)
{
	_cleanup_free_ void *c = NULL; /* before `goto corrupt`, which jumps over the malloc */
	_cleanup_close_ int fd = idx_store_open_chunk(s, digest);
	if (fd == -ENOENT) { /* in a local pack? */
		struct idx_store_loc l;
		int r = idx_store_locate(s, digest, 1, &l);
		if (r < 0)
			return r;
		if ((r = idx_store_read_loc(s, &l, ubuf, usize)) < 0)
			return r;
		uint8_t d[32];
		cm_sha256(ubuf, usize, d);
		return memcmp(d, digest, 32) == 0 ? 0 : -EBADMSG;
	}
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size <= 0 || (uint64_t)st.st_size > ZSTD_compressBound(usize))
		goto corrupt;
	c = malloc((size_t)st.st_size);
	if (!c)
		return -ENOMEM;
	int r = cm_pread_full(fd, c, (size_t)st.st_size, 0);
	if (r < 0)
		return r;
	if (verify_frame(digest, c, (size_t)st.st_size, ubuf, usize) == 0)
		return 0;
corrupt:;
	char p[80], hex[72];
	idx_store_chunk_relpath(digest, p);
	cm_digest_format(digest, hex);
	log_error("store: chunk %s is corrupt; removed", hex);
	unlinkat(s->root_fd, p, 0);
	return -EBADMSG;
}

static int put_index(struct idx_store *s, const void *data, size_t len, const uint8_t d[32])
{
	char hex[65], p[96];
	cm_hex_format(d, 32, hex);
	snprintf(p, sizeof(p), "indexes/%s", hex);
	if (faccessat(s->root_fd, p, F_OK, AT_EACCESS) == 0)
		return 0;
	return publish(s, p, data, len, true);
}

int idx_store_put_index(struct idx_store *s, const void *data, size_t len, char ret_digest[72])
{
	uint8_t d[32];
	cm_sha256(data, len, d);
	cm_digest_format(d, ret_digest);
	return put_index(s, data, len, d);
}

int idx_store_put_index_digest(struct idx_store *s, const void *data, size_t len,
			       const char *digest)
{
	uint8_t d[32];
	if (!digest || cm_digest_parse(digest, d) < 0)
		return -EINVAL;
	return put_index(s, data, len, d);
}

int idx_store_index_path_at(const char *root, const char *digest, char **ret)
{
	uint8_t d[32];
	if (cm_digest_parse(digest, d) < 0)
		return -EPROTO;
	*ret = cm_strdupf("%s/indexes/%s", root, digest + 7);
	return *ret ? 0 : -ENOMEM;
}

int idx_store_index_path(struct idx_store *s, const char *digest, char **ret)
{
	return idx_store_index_path_at(s->root, digest, ret);
}

static void ref_link_name(const char *key, char out[40])
{
	uint8_t h[16];
	cm_xxh3_128(key, strlen(key), h);
	memcpy(out, "refs/", 5);
	cm_hex_format(h, 16, out + 5);
}

/* ROOT/refs/<XXH3-128 of key> -> "<index digest> <key>", replaced atomically. */
static int ref_link_write(struct idx_store *s, const char *key, const char *index_digest)
{
	char name[40], tmp[64];
	ref_link_name(key, name);
	static unsigned long counter; /* the callers hold the store's lock */
	snprintf(tmp, sizeof(tmp), "tmp/ref.%ld.%lu", (long)getpid(), ++counter);
	_cleanup_free_ char *target = cm_strdupf("%s %s", index_digest, key);
	if (!target)
		return -ENOMEM;
	if (strlen(target) >= PATH_MAX)
		return -ENAMETOOLONG;
	if (symlinkat(target, s->root_fd, tmp) < 0)
		return -errno;
	if (renameat(s->root_fd, tmp, s->root_fd, name) < 0) {
		int r = -errno;
		unlinkat(s->root_fd, tmp, 0);
		return r;
	}
	return 0;
}

int idx_store_record_image(struct idx_store *s, const char *ref, const char *manifest_digest,
			   const char *index_digest)
{
	sqlite3_stmt *st = NULL;
	int r = 0;
	idx_store_lock(s);
	int rc = sqlite3_prepare_v2(s->db,
				    "INSERT OR REPLACE INTO images(ref, manifest_digest, index_digest, created)"
				    " VALUES(?, ?, ?, ?)",
				    -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, manifest_digest, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, index_digest, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		r = store_db_err(s->db, rc, "record image");
	sqlite3_finalize(st);
	/* The no-database answer of idx_store_find_index_fast (under the lock: the row and the
	 * links of two concurrent records end up from the same one). A cache: a failure only
	 * costs the next lookup a database open. */
	int lr = 0;
	if (r == 0 && ((lr = ref_link_write(s, ref, index_digest)) < 0 ||
		       (lr = ref_link_write(s, manifest_digest, index_digest)) < 0))
		log_debug("store: cannot link %s in refs/: %s", ref, strerror(-lr));
	idx_store_unlock(s);
	return r;
}

int idx_store_link_index(struct idx_store *s, const char *key, const char *index_digest)
{
	idx_store_lock(s);
	int r = ref_link_write(s, key, index_digest);
	idx_store_unlock(s);
	return r;
}

int idx_store_find_index_fast(const char *root, const char *key, char ret[72])
{
	char name[40];
	ref_link_name(key, name);
	_cleanup_free_ char *p = cm_strdupf("%s/%s", root, name);
	if (!p)
		return -ENOMEM;
	char target[PATH_MAX];
	ssize_t n = readlink(p, target, sizeof(target) - 1);
	if (n < 0)
		return -ENOENT;
	target[n] = 0;
	char *sp = strchr(target, ' ');
	if (!sp || (size_t)(sp - target) != CM_DIGEST_STR_LEN || strcmp(sp + 1, key) != 0)
		return -ENOENT;
	*sp = 0;
	if (!cm_digest_valid(target))
		return -ENOENT;
	memcpy(ret, target, CM_DIGEST_STR_SIZE);
	return 0;
}

/* The index digest of the newest image row `sql` selects, with ?1 and ?2 (if not NULL)
 * bound to `a` and `b`. -ENOENT. Caller frees. */
static int find_index_where(struct idx_store *s, const char *sql, const char *a, const char *b,
			    char **ret)
{
	sqlite3_stmt *st = NULL;
	int r = -ENOENT;
	idx_store_lock(s);
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
		if (b)
			sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*ret = strdup((const char *)sqlite3_column_text(st, 0));
			r = *ret ? 0 : -ENOMEM;
		} else if (rc != SQLITE_DONE) {
			r = store_db_err(s->db, rc, "find image");
		}
	} else {
		r = store_db_err(s->db, rc, "find image");
	}
	sqlite3_finalize(st);
	idx_store_unlock(s);
	return r;
}

int idx_store_find_index(struct idx_store *s, const char *key, char **ret)
{
	return find_index_where(s,
				"SELECT index_digest FROM images WHERE ref = ?1 OR manifest_digest = ?1"
				" OR index_digest = ?1 ORDER BY created DESC LIMIT 1",
				key, NULL, ret);
}

int idx_store_find_index_in_repo(struct idx_store *s, const char *repo,
				 const char *manifest_digest, char **ret)
{
	return find_index_where(s,
				"SELECT index_digest FROM images WHERE manifest_digest = ?2 AND"
				" substr(ref, 1, length(?1) + 1) IN (?1 || ':', ?1 || '@')"
				" ORDER BY created DESC LIMIT 1",
				repo, manifest_digest, ret);
}

int idx_store_list_images(struct idx_store *s, struct idx_store_image **ret, size_t *ret_n)
{
	sqlite3_stmt *st = NULL;
	struct idx_store_image *v = NULL;
	size_t n = 0;
	int r = 0;
	idx_store_lock(s);
	int rc = sqlite3_prepare_v2(s->db,
				    "SELECT ref, manifest_digest, index_digest, created FROM images"
				    " ORDER BY created DESC, ref",
				    -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct idx_store_image *nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			r = -ENOMEM;
			break;
		}
		v = nv;
		v[n].ref = strdup((const char *)sqlite3_column_text(st, 0));
		v[n].manifest_digest = strdup((const char *)sqlite3_column_text(st, 1));
		v[n].index_digest = strdup((const char *)sqlite3_column_text(st, 2));
		v[n].created = sqlite3_column_int64(st, 3);
		n++;
		if (!v[n - 1].ref || !v[n - 1].manifest_digest || !v[n - 1].index_digest) {
			r = -ENOMEM;
			break;
		}
		rc = SQLITE_OK;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = store_db_err(s->db, rc, "list images");
	sqlite3_finalize(st);
	idx_store_unlock(s);
	if (r < 0) {
		idx_store_images_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

void idx_store_images_free(struct idx_store_image *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].ref);
		free(v[i].manifest_digest);
		free(v[i].index_digest);
	}
	free(v);
}

struct sqlite3 *idx_store_db(struct idx_store *s)
{
	return s->db;
}

void idx_store_lock(struct idx_store *s)
{
	pthread_mutex_lock(&s->lock);
}

void idx_store_unlock(struct idx_store *s)
{
	pthread_mutex_unlock(&s->lock);
}
