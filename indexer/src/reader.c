/*
 * Index reader: mmap + one validation pass at open; afterwards every accessor only does
 * bounds checks against counts already proven consistent. See format.h / docs/format.md.
 *
 * Validation invariants established by validate() (accessors rely on them):
 *  - every section lies inside the blob, 8-aligned, count * stride == size;
 *  - every string reference (names, link targets, xattrs) lies inside STRINGS and is
 *    followed by a NUL;
 *  - inode 1 is a directory; directories form a tree rooted at 1 (each non-root directory is
 *    named by exactly one dirent, in the directory its `parent` names);
 *  - dirent runs are strictly sorted by name (memcmp, then length), names are valid path
 *    components; st_nlink equals the number of names (directories: 2 + subdirectories);
 *  - a regular file's extents tile [0, size) with whole chunks;
 *  - packs tile the chunk table in order, chunks tile their pack from offset 0.
 */
#include "indexer/index.h"

#include "format.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

struct sect {
	const uint8_t *p;
	uint64_t size;
	uint32_t count;
	uint32_t stride;
};

struct idx_reader {
	const uint8_t *data;
	size_t len;
	bool mapped;
	struct sect s[IDXF_SEC_COUNT];
	char digest[CM_DIGEST_STR_SIZE];
	char manifest_digest[CM_DIGEST_STR_SIZE];
	char config_digest[CM_DIGEST_STR_SIZE];
};

static const uint8_t *rec(const struct idx_reader *r, int sec, uint32_t i)
{
	return r->s[sec].p + (size_t)i * r->s[sec].stride;
}

static int bad(const char *what, uint64_t a, uint64_t b)
{
	log_error("index is malformed: %s (%llu, %llu)", what, (unsigned long long)a,
		  (unsigned long long)b);
	return -EPROTO;
}

/* A string of `len` bytes at `off` followed by a NUL. */
static bool str_ok(const struct idx_reader *r, uint32_t off, uint32_t len)
{
	const struct sect *st = &r->s[IDXF_SEC_STRINGS];
	return (uint64_t)off + len < st->size && st->p[(uint64_t)off + len] == 0;
}

static int check_sections(struct idx_reader *r)
{
	static const uint32_t min_stride[IDXF_SEC_COUNT] = {
		[IDXF_SEC_STRINGS] = 1,		       [IDXF_SEC_INODES] = IDXF_INODE_SIZE,
		[IDXF_SEC_DIRENTS] = IDXF_DIRENT_SIZE, [IDXF_SEC_EXTENTS] = IDXF_EXTENT_SIZE,
		[IDXF_SEC_CHUNKS] = IDXF_CHUNK_SIZE,   [IDXF_SEC_PACKS] = IDXF_PACK_SIZE,
		[IDXF_SEC_PREFETCH] = 4,	       [IDXF_SEC_XATTRS] = IDXF_XATTR_SIZE,
		[IDXF_SEC_CONFIG] = 1,
	};
	const uint8_t *h = r->data;
	for (int i = 0; i < IDXF_SEC_COUNT; i++) {
		const uint8_t *e = h + IDXF_SECTAB_OFF + i * IDXF_SECT_SIZE;
		uint64_t off = cm_le64(e), size = cm_le64(e + 8);
		uint32_t count = cm_le32(e + 16), stride = cm_le32(e + 20);
		if (size == 0 && count == 0) {
			r->s[i] = (struct sect){.p = h, .size = 0, .count = 0, .stride = min_stride[i]};
			continue;
		}
		if (off < IDXF_HEADER_SIZE || off > r->len || size > r->len - off || (off & 7))
			return bad("section outside the file", (uint64_t)i, off);
		if (stride < min_stride[i] || stride > 4096)
			return bad("section entry size", (uint64_t)i, stride);
		if ((uint64_t)count * stride != size)
			return bad("section size is not count * entry size", (uint64_t)i, size);
		r->s[i] = (struct sect){.p = h + off, .size = size, .count = count, .stride = stride};
	}
	return 0;
}

static int check_packs_chunks(struct idx_reader *r)
{
	uint32_t nchunks = r->s[IDXF_SEC_CHUNKS].count, npacks = r->s[IDXF_SEC_PACKS].count;
	uint32_t next = 0;
	for (uint32_t p = 0; p < npacks; p++) {
		const uint8_t *pk = rec(r, IDXF_SEC_PACKS, p);
		uint32_t first = cm_le32(pk + IDXF_PK_CHUNK_FIRST), cnt = cm_le32(pk + IDXF_PK_CHUNK_COUNT);
		uint64_t size = cm_le64(pk + IDXF_PK_SIZE), off = 0;
		if (first != next || cnt == 0 || cnt > nchunks - first)
			return bad("pack does not continue the chunk table", p, first);
		for (uint32_t c = first; c < first + cnt; c++) {
			const uint8_t *ch = rec(r, IDXF_SEC_CHUNKS, c);
			uint32_t us = cm_le32(ch + IDXF_CH_USIZE), cs = cm_le32(ch + IDXF_CH_CSIZE);
			uint32_t flags = cm_le32(ch + IDXF_CH_FLAGS);
			if (us == 0 || us > IDXF_MAX_CHUNK)
				return bad("chunk size", c, us);
			if (cs == 0 || cs > ZSTD_compressBound(us))
				return bad("chunk stored size", c, cs);
			if ((flags & IDX_CHUNK_COMP_MASK) != IDX_CHUNK_COMP_ZSTD || (flags & ~IDX_CHUNK_COMP_MASK))
				return bad("chunk flags", c, flags);
			if (cm_le32(ch + IDXF_CH_PACK) != p || cm_le64(ch + IDXF_CH_PACK_OFFSET) != off)
				return bad("chunk is not where its pack says", c, off);
			off += cs;
		}
		if (off != size)
			return bad("pack size", p, size);
		next = first + cnt;
	}
	if (next != nchunks)
		return bad("chunks outside any pack", next, nchunks);
	for (uint32_t i = 0; i < r->s[IDXF_SEC_PREFETCH].count; i++)
		if (cm_le32(rec(r, IDXF_SEC_PREFETCH, i)) >= nchunks)
			return bad("prefetch entry", i, nchunks);
	return 0;
}

static int dirent_cmp(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
	int c = memcmp(a, b, MIN(alen, blen));
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static uint8_t mode_dt(uint32_t mode)
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

static int check_inodes(struct idx_reader *r)
{
	uint32_t n = r->s[IDXF_SEC_INODES].count;
	uint32_t ndirents = r->s[IDXF_SEC_DIRENTS].count;
	if (n == 0)
		return bad("no inodes", 0, 0);
	_cleanup_free_ uint32_t *names = calloc(n + 1, sizeof(uint32_t));	 /* dirents naming ino */
	_cleanup_free_ uint32_t *subdirs = calloc(n + 1, sizeof(uint32_t)); /* per directory */
	_cleanup_free_ uint32_t *queue = malloc((n + 1) * sizeof(uint32_t));
	if (!names || !subdirs || !queue)
		return -ENOMEM;

	for (uint32_t ino = 1; ino <= n; ino++) {
		const uint8_t *in = rec(r, IDXF_SEC_INODES, ino - 1);
		uint32_t mode = cm_le32(in + IDXF_INO_MODE);
		uint32_t first = cm_le32(in + IDXF_INO_DATA_FIRST), cnt = cm_le32(in + IDXF_INO_DATA_COUNT);
		uint64_t size = cm_le64(in + IDXF_INO_SIZE);
		uint32_t xf = cm_le32(in + IDXF_INO_XATTR_FIRST), xc = cm_le32(in + IDXF_INO_XATTR_COUNT);
		if (cm_le32(in + IDXF_INO_MTIME_NSEC) >= 1000000000u)
			return bad("mtime nanoseconds", ino, cm_le32(in + IDXF_INO_MTIME_NSEC));
		if (xf > r->s[IDXF_SEC_XATTRS].count || xc > r->s[IDXF_SEC_XATTRS].count - xf)
			return bad("xattr range", ino, xf);
		for (uint32_t x = xf; x < xf + xc; x++) {
			const uint8_t *xa = rec(r, IDXF_SEC_XATTRS, x);
			uint32_t no = cm_le32(xa + IDXF_XA_NAME_OFF), nl = cm_le32(xa + IDXF_XA_NAME_LEN);
			uint32_t vo = cm_le32(xa + IDXF_XA_VALUE_OFF), vl = cm_le32(xa + IDXF_XA_VALUE_LEN);
			if (nl == 0 || nl > IDXF_MAX_NAME || !str_ok(r, no, nl) ||
			    memchr(r->s[IDXF_SEC_STRINGS].p + no, 0, nl))
				return bad("xattr name", ino, x);
			if (vl > IDXF_MAX_XATTR_VALUE || !str_ok(r, vo, vl))
				return bad("xattr value", ino, x);
			if (x > xf) { /* each run strictly sorted by name: no duplicates */
				const uint8_t *pa = rec(r, IDXF_SEC_XATTRS, x - 1);
				const char *s = (const char *)r->s[IDXF_SEC_STRINGS].p;
				if (dirent_cmp(s + cm_le32(pa + IDXF_XA_NAME_OFF), cm_le32(pa + IDXF_XA_NAME_LEN),
					       s + no, nl) >= 0)
					return bad("xattrs not sorted or duplicated", ino, x);
			}
		}
		switch (mode & S_IFMT) {
		case S_IFDIR: {
			uint32_t parent = cm_le32(in + IDXF_INO_PARENT);
			if (parent == 0 || parent > n)
				return bad("directory parent", ino, parent);
			if (first > ndirents || cnt > ndirents - first)
				return bad("dirent range", ino, first);
			const char *prev = NULL;
			uint32_t prevlen = 0;
			for (uint32_t d = first; d < first + cnt; d++) {
				const uint8_t *de = rec(r, IDXF_SEC_DIRENTS, d);
				uint32_t no = cm_le32(de + IDXF_DE_NAME_OFF), nl = cm_le16(de + IDXF_DE_NAME_LEN);
				uint32_t child = cm_le32(de + IDXF_DE_INO);
				if (nl == 0 || nl > IDXF_MAX_NAME || !str_ok(r, no, nl))
					return bad("dirent name", ino, d);
				const char *name = (const char *)r->s[IDXF_SEC_STRINGS].p + no;
				if (memchr(name, '/', nl) || memchr(name, 0, nl) ||
				    (nl == 1 && name[0] == '.') || (nl == 2 && !memcmp(name, "..", 2)))
					return bad("dirent name is not a path component", ino, d);
				if (prev && dirent_cmp(prev, prevlen, name, nl) >= 0)
					return bad("dirents not sorted or duplicated", ino, d);
				prev = name;
				prevlen = nl;
				if (child < 2 || child > n)
					return bad("dirent inode", ino, child);
				uint32_t cmode = cm_le32(rec(r, IDXF_SEC_INODES, child - 1) + IDXF_INO_MODE);
				if (de[IDXF_DE_TYPE] != mode_dt(cmode))
					return bad("dirent type does not match inode", ino, d);
				if (S_ISDIR(cmode)) {
					if (cm_le32(rec(r, IDXF_SEC_INODES, child - 1) + IDXF_INO_PARENT) != ino)
						return bad("directory named outside its parent", ino, child);
					subdirs[ino]++;
				}
				if (names[child] == UINT32_MAX)
					return bad("too many names", child, 0);
				names[child]++;
			}
			break;
		}
		case S_IFREG: {
			uint32_t next = r->s[IDXF_SEC_EXTENTS].count;
			if (first > next || cnt > next - first)
				return bad("extent range", ino, first);
			uint64_t off = 0;
			for (uint32_t e = first; e < first + cnt; e++) {
				const uint8_t *ex = rec(r, IDXF_SEC_EXTENTS, e);
				uint32_t c = cm_le32(ex + IDXF_EXT_CHUNK);
				if (cm_le64(ex + IDXF_EXT_OFFSET) != off || c >= r->s[IDXF_SEC_CHUNKS].count)
					return bad("extent", ino, e);
				off += cm_le32(rec(r, IDXF_SEC_CHUNKS, c) + IDXF_CH_USIZE);
			}
			if (off != size)
				return bad("extents do not cover the file", ino, size);
			break;
		}
		case S_IFLNK:
			if (cnt == 0 || cnt > IDXF_MAX_SYMLINK || size != cnt || !str_ok(r, first, cnt))
				return bad("symlink target", ino, cnt);
			break;
		case S_IFCHR:
		case S_IFBLK:
		case S_IFIFO:
			if (size != 0)
				return bad("special file size", ino, size);
			break;
		default:
			return bad("inode type", ino, mode);
		}
	}

	/* The directory tree: every directory reached from the root exactly once. */
	const uint8_t *root = rec(r, IDXF_SEC_INODES, 0);
	if (!S_ISDIR(cm_le32(root + IDXF_INO_MODE)) || cm_le32(root + IDXF_INO_PARENT) != 1)
		return bad("root is not a directory", 1, 0);
	if (names[1] != 0)
		return bad("root has a name", 1, names[1]);
	uint32_t head = 0, tail = 0, reached = 0, ndirs = 0;
	queue[tail++] = 1;
	while (head < tail) {
		uint32_t d = queue[head++];
		reached++;
		const uint8_t *in = rec(r, IDXF_SEC_INODES, d - 1);
		uint32_t first = cm_le32(in + IDXF_INO_DATA_FIRST), cnt = cm_le32(in + IDXF_INO_DATA_COUNT);
		for (uint32_t e = first; e < first + cnt; e++) {
			const uint8_t *de = rec(r, IDXF_SEC_DIRENTS, e);
			if (de[IDXF_DE_TYPE] != DT_DIR)
				continue;
			uint32_t c = cm_le32(de + IDXF_DE_INO);
			if (names[c] != 1 || tail > n)
				return bad("directory named more than once", c, names[c]);
			queue[tail++] = c;
		}
	}
	for (uint32_t ino = 1; ino <= n; ino++) {
		const uint8_t *in = rec(r, IDXF_SEC_INODES, ino - 1);
		uint32_t mode = cm_le32(in + IDXF_INO_MODE), nlink = cm_le32(in + IDXF_INO_NLINK);
		if (S_ISDIR(mode)) {
			ndirs++;
			if (nlink != 2 + subdirs[ino])
				return bad("directory link count", ino, nlink);
		} else if (names[ino] == 0 || nlink != names[ino]) {
			return bad("link count", ino, nlink);
		}
	}
	if (reached != ndirs)
		return bad("directories unreachable from the root", ndirs, reached);
	return 0;
}

/* What can be checked without reading past the header: magic, version, the section table's
 * bounds, the config's size. */
static int validate_header(struct idx_reader *r)
{
	const uint8_t *h = r->data;
	if (r->len < IDXF_HEADER_SIZE || memcmp(h, IDXF_MAGIC, 8) != 0) {
		log_error("not an isorun index (bad magic)");
		return -EPROTO;
	}
	if (cm_le16(h + 8) != IDXF_MAJOR) {
		log_error("index format version %u is not supported (this isorun reads %u)",
			  cm_le16(h + 8), IDXF_MAJOR);
		return -ENOTSUP;
	}
	if (cm_le32(h + 12) != IDXF_HEADER_SIZE || cm_le64(h + 16) != r->len ||
	    cm_le32(h + 24) != IDXF_SLOTS)
		return bad("header", cm_le32(h + 12), cm_le64(h + 16));
	int k = check_sections(r);
	if (k < 0)
		return k;
	if (r->s[IDXF_SEC_CONFIG].size > IDXF_MAX_CONFIG)
		return bad("config size", r->s[IDXF_SEC_CONFIG].size, IDXF_MAX_CONFIG);
	return 0;
}

/* `known`: the blob's digest, already checked by the caller (32 bytes), or NULL. */
static int validate(struct idx_reader *r, const uint8_t *known)
{
	const uint8_t *h = r->data;
	int k = validate_header(r);
	if (k < 0)
		return k;
	uint8_t d[CM_SHA256_LEN];
	cm_sha256(r->s[IDXF_SEC_CONFIG].p, r->s[IDXF_SEC_CONFIG].size, d);
	if (memcmp(d, h + 64, CM_SHA256_LEN) != 0)
		return bad("config does not match its digest", 0, 0);
	k = check_packs_chunks(r);
	if (k < 0)
		return k;
	k = check_inodes(r);
	if (k < 0)
		return k;
	if (known)
		memcpy(d, known, CM_SHA256_LEN);
	else
		cm_sha256(r->data, r->len, d);
	cm_digest_format(d, r->digest);
	cm_digest_format(h + 32, r->manifest_digest);
	cm_digest_format(h + 64, r->config_digest);
	return 0;
}

static int open_mem(const void *data, size_t len, const uint8_t *known,
		    struct idx_reader **ret)
{
	struct idx_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->data = data;
	r->len = len;
	int k = validate(r, known);
	if (k < 0) {
		free(r);
		return k;
	}
	*ret = r;
	return 0;
}

int idx_reader_open_mem(const void *data, size_t len, struct idx_reader **ret)
{
	return open_mem(data, len, NULL, ret);
}

int idx_reader_open_mem_digest(const void *data, size_t len, const char *digest,
			       struct idx_reader **ret)
{
	uint8_t d[CM_SHA256_LEN];
	if (!digest || cm_digest_parse(digest, d) < 0)
		return -EINVAL;
	return open_mem(data, len, d, ret);
}

static int map_file(const char *path, void **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_size < IDXF_HEADER_SIZE) {
		log_error("%s: not an isorun index (too small)", path);
		return -EPROTO;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	*ret = p;
	*ret_len = (size_t)st.st_size;
	return 0;
}

int idx_index_config_mem(const void *data, size_t len, char **ret_json, size_t *ret_len)
{
	struct idx_reader r = {.data = data, .len = len};
	int k = validate_header(&r);
	if (k < 0)
		return k;
	size_t n = r.s[IDXF_SEC_CONFIG].size;
	char *json = malloc(n + 1);
	if (!json)
		return -ENOMEM;
	memcpy(json, r.s[IDXF_SEC_CONFIG].p, n);
	json[n] = 0;
	*ret_json = json;
	*ret_len = n;
	return 0;
}

int idx_index_read_config(const char *path, char **ret_json, size_t *ret_len)
{
	void *p = NULL;
	size_t len = 0;
	int k = map_file(path, &p, &len);
	if (k < 0)
		return k;
	k = idx_index_config_mem(p, len, ret_json, ret_len);
	munmap(p, len);
	return k;
}

static int open_file(const char *path, const char *digest, struct idx_reader **ret)
{
	void *p = NULL;
	size_t len = 0;
	int k = map_file(path, &p, &len);
	if (k < 0)
		return k;
	struct idx_reader *r;
	k = digest ? idx_reader_open_mem_digest(p, len, digest, &r)
		   : idx_reader_open_mem(p, len, &r);
	if (k < 0) {
		munmap(p, len);
		return k;
	}
	r->mapped = true;
	*ret = r;
	return 0;
}

int idx_reader_open(const char *path, struct idx_reader **ret)
{
	return open_file(path, NULL, ret);
}

int idx_reader_open_digest(const char *path, const char *digest, struct idx_reader **ret)
{
	return digest ? open_file(path, digest, ret) : -EINVAL;
}

void idx_reader_free(struct idx_reader *r)
{
	if (!r)
		return;
	if (r->mapped)
		munmap((void *)r->data, r->len);
	free(r);
}

const void *idx_reader_data(const struct idx_reader *r, size_t *ret_len)
{
	*ret_len = r->len;
	return r->data;
}

const char *idx_reader_digest(const struct idx_reader *r)
{
	return r->digest;
}

const char *idx_reader_manifest_digest(const struct idx_reader *r)
{
	return r->manifest_digest;
}

const char *idx_reader_config_digest(const struct idx_reader *r)
{
	return r->config_digest;
}

const char *idx_reader_config_json(const struct idx_reader *r, size_t *ret_len)
{
	*ret_len = r->s[IDXF_SEC_CONFIG].size;
	return (const char *)r->s[IDXF_SEC_CONFIG].p;
}

uint32_t idx_reader_inode_count(const struct idx_reader *r)
{
	return r->s[IDXF_SEC_INODES].count;
}

uint32_t idx_reader_chunk_count(const struct idx_reader *r)
{
	return r->s[IDXF_SEC_CHUNKS].count;
}

uint32_t idx_reader_pack_count(const struct idx_reader *r)
{
	return r->s[IDXF_SEC_PACKS].count;
}

uint32_t idx_reader_prefetch_count(const struct idx_reader *r)
{
	return r->s[IDXF_SEC_PREFETCH].count;
}

static const uint8_t *inode_rec(const struct idx_reader *r, uint32_t ino)
{
	if (ino == 0 || ino > r->s[IDXF_SEC_INODES].count)
		return NULL;
	return rec(r, IDXF_SEC_INODES, ino - 1);
}

int idx_reader_inode(const struct idx_reader *r, uint32_t ino, struct idx_inode *ret)
{
	const uint8_t *in = inode_rec(r, ino);
	if (!in)
		return -ENOENT;
	*ret = (struct idx_inode){
		.ino = ino,
		.mode = cm_le32(in + IDXF_INO_MODE),
		.uid = cm_le32(in + IDXF_INO_UID),
		.gid = cm_le32(in + IDXF_INO_GID),
		.nlink = cm_le32(in + IDXF_INO_NLINK),
		.size = cm_le64(in + IDXF_INO_SIZE),
		.mtime_sec = (int64_t)cm_le64(in + IDXF_INO_MTIME_SEC),
		.mtime_nsec = cm_le32(in + IDXF_INO_MTIME_NSEC),
		.rdev_major = cm_le32(in + IDXF_INO_RDEV_MAJOR),
		.rdev_minor = cm_le32(in + IDXF_INO_RDEV_MINOR),
		.parent = cm_le32(in + IDXF_INO_PARENT),
	};
	if (!S_ISDIR(ret->mode))
		ret->parent = 0;
	return 0;
}

uint32_t idx_reader_xattr_records(const struct idx_reader *r)
{
	return r->s[IDXF_SEC_XATTRS].count;
}

void idx_reader_stats(const struct idx_reader *r, struct idx_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->inodes = r->s[IDXF_SEC_INODES].count;
	ret->chunks = r->s[IDXF_SEC_CHUNKS].count;
	ret->packs = r->s[IDXF_SEC_PACKS].count;
	ret->prefetch = r->s[IDXF_SEC_PREFETCH].count;
	ret->xattrs = idx_reader_xattr_records(r);
	ret->index_bytes = r->len;
	for (uint32_t i = 0; i < ret->inodes; i++) {
		const uint8_t *in = rec(r, IDXF_SEC_INODES, i);
		uint32_t mode = cm_le32(in + IDXF_INO_MODE);
		if (S_ISDIR(mode)) {
			ret->dirs++;
		} else if (S_ISREG(mode)) {
			ret->files++;
			ret->file_bytes += cm_le64(in + IDXF_INO_SIZE);
		} else if (S_ISLNK(mode)) {
			ret->symlinks++;
		} else {
			ret->others++;
		}
	}
	for (uint32_t i = 0; i < ret->chunks; i++) {
		const uint8_t *ch = rec(r, IDXF_SEC_CHUNKS, i);
		ret->unique_bytes += cm_le32(ch + IDXF_CH_USIZE);
		ret->stored_bytes += cm_le32(ch + IDXF_CH_CSIZE);
	}
}

static void dirent_at(const struct idx_reader *r, uint32_t d, struct idx_dirent *ret)
{
	const uint8_t *de = rec(r, IDXF_SEC_DIRENTS, d);
	ret->name = (const char *)r->s[IDXF_SEC_STRINGS].p + cm_le32(de + IDXF_DE_NAME_OFF);
	ret->name_len = cm_le16(de + IDXF_DE_NAME_LEN);
	ret->ino = cm_le32(de + IDXF_DE_INO);
	ret->type = de[IDXF_DE_TYPE];
}

int idx_reader_dir_count(const struct idx_reader *r, uint32_t dir, uint32_t *ret)
{
	const uint8_t *in = inode_rec(r, dir);
	if (!in)
		return -ENOENT;
	if (!S_ISDIR(cm_le32(in + IDXF_INO_MODE)))
		return -ENOTDIR;
	*ret = cm_le32(in + IDXF_INO_DATA_COUNT);
	return 0;
}

int idx_reader_dirent(const struct idx_reader *r, uint32_t dir, uint32_t i, struct idx_dirent *ret)
{
	uint32_t cnt;
	int k = idx_reader_dir_count(r, dir, &cnt);
	if (k < 0)
		return k;
	if (i >= cnt)
		return -ENOENT;
	dirent_at(r, cm_le32(inode_rec(r, dir) + IDXF_INO_DATA_FIRST) + i, ret);
	return 0;
}

int idx_reader_lookup(const struct idx_reader *r, uint32_t dir, const char *name, size_t len,
		      uint32_t *ret_ino)
{
	uint32_t cnt;
	int k = idx_reader_dir_count(r, dir, &cnt);
	if (k < 0)
		return k;
	uint32_t first = cm_le32(inode_rec(r, dir) + IDXF_INO_DATA_FIRST);
	uint32_t lo = 0, hi = cnt;
	if (len > IDXF_MAX_NAME)
		return -ENOENT;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct idx_dirent de;
		dirent_at(r, first + mid, &de);
		int c = dirent_cmp(de.name, de.name_len, name, (uint32_t)len);
		if (c == 0) {
			*ret_ino = de.ino;
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

int idx_reader_lookup_path(const struct idx_reader *r, const char *path, uint32_t *ret_ino)
{
	uint32_t ino = IDX_ROOT_INO;
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (len == 1 && p[0] == '.') {
			/* stay */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			struct idx_inode in;
			idx_reader_inode(r, ino, &in);
			if (!S_ISDIR(in.mode))
				return -ENOTDIR; /* "file/.." (parent is 0 for non-directories) */
			ino = in.parent;
		} else {
			int k = idx_reader_lookup(r, ino, p, len, &ino);
			if (k < 0)
				return k;
		}
		p = e;
	}
	*ret_ino = ino;
	return 0;
}

int idx_reader_readlink(const struct idx_reader *r, uint32_t ino, const char **ret, size_t *ret_len)
{
	const uint8_t *in = inode_rec(r, ino);
	if (!in)
		return -ENOENT;
	if (!S_ISLNK(cm_le32(in + IDXF_INO_MODE)))
		return -EINVAL;
	*ret = (const char *)r->s[IDXF_SEC_STRINGS].p + cm_le32(in + IDXF_INO_DATA_FIRST);
	*ret_len = cm_le32(in + IDXF_INO_DATA_COUNT);
	return 0;
}

int idx_reader_extent_count(const struct idx_reader *r, uint32_t ino, uint32_t *ret)
{
	const uint8_t *in = inode_rec(r, ino);
	if (!in)
		return -ENOENT;
	if (!S_ISREG(cm_le32(in + IDXF_INO_MODE)))
		return -EINVAL;
	*ret = cm_le32(in + IDXF_INO_DATA_COUNT);
	return 0;
}

int idx_reader_extent(const struct idx_reader *r, uint32_t ino, uint32_t i, struct idx_extent *ret)
{
	uint32_t cnt;
	int k = idx_reader_extent_count(r, ino, &cnt);
	if (k < 0)
		return k;
	if (i >= cnt)
		return -ENOENT;
	const uint8_t *ex = rec(r, IDXF_SEC_EXTENTS, cm_le32(inode_rec(r, ino) + IDXF_INO_DATA_FIRST) + i);
	ret->file_offset = cm_le64(ex + IDXF_EXT_OFFSET);
	ret->chunk = cm_le32(ex + IDXF_EXT_CHUNK);
	return 0;
}

int idx_reader_extent_at(const struct idx_reader *r, uint32_t ino, uint64_t off, uint32_t *ret_i)
{
	uint32_t cnt;
	int k = idx_reader_extent_count(r, ino, &cnt);
	if (k < 0)
		return k;
	const uint8_t *in = inode_rec(r, ino);
	if (off >= cm_le64(in + IDXF_INO_SIZE))
		return -ENXIO;
	uint32_t first = cm_le32(in + IDXF_INO_DATA_FIRST);
	/* Last extent whose offset <= off. */
	uint32_t lo = 0, hi = cnt;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (cm_le64(rec(r, IDXF_SEC_EXTENTS, first + mid) + IDXF_EXT_OFFSET) <= off)
			lo = mid;
		else
			hi = mid;
	}
	*ret_i = lo;
	return 0;
}

int idx_reader_chunk(const struct idx_reader *r, uint32_t i, struct idx_chunk *ret)
{
	if (i >= r->s[IDXF_SEC_CHUNKS].count)
		return -ENOENT;
	const uint8_t *ch = rec(r, IDXF_SEC_CHUNKS, i);
	memcpy(ret->digest, ch + IDXF_CH_DIGEST, 32);
	ret->usize = cm_le32(ch + IDXF_CH_USIZE);
	ret->csize = cm_le32(ch + IDXF_CH_CSIZE);
	ret->pack = cm_le32(ch + IDXF_CH_PACK);
	ret->flags = cm_le32(ch + IDXF_CH_FLAGS);
	ret->pack_offset = cm_le64(ch + IDXF_CH_PACK_OFFSET);
	return 0;
}

int idx_reader_pack(const struct idx_reader *r, uint32_t i, struct idx_pack *ret)
{
	if (i >= r->s[IDXF_SEC_PACKS].count)
		return -ENOENT;
	const uint8_t *pk = rec(r, IDXF_SEC_PACKS, i);
	memcpy(ret->digest, pk + IDXF_PK_DIGEST, 32);
	ret->size = cm_le64(pk + IDXF_PK_SIZE);
	ret->chunk_first = cm_le32(pk + IDXF_PK_CHUNK_FIRST);
	ret->chunk_count = cm_le32(pk + IDXF_PK_CHUNK_COUNT);
	return 0;
}

int idx_reader_prefetch(const struct idx_reader *r, uint32_t i, uint32_t *ret_chunk)
{
	if (i >= r->s[IDXF_SEC_PREFETCH].count)
		return -ENOENT;
	*ret_chunk = cm_le32(rec(r, IDXF_SEC_PREFETCH, i));
	return 0;
}

int idx_reader_xattr_count(const struct idx_reader *r, uint32_t ino, uint32_t *ret)
{
	const uint8_t *in = inode_rec(r, ino);
	if (!in)
		return -ENOENT;
	*ret = cm_le32(in + IDXF_INO_XATTR_COUNT);
	return 0;
}

int idx_reader_xattr(const struct idx_reader *r, uint32_t ino, uint32_t i, struct idx_xattr *ret)
{
	const uint8_t *in = inode_rec(r, ino);
	if (!in)
		return -ENOENT;
	if (i >= cm_le32(in + IDXF_INO_XATTR_COUNT))
		return -ENOENT;
	const uint8_t *xa = rec(r, IDXF_SEC_XATTRS, cm_le32(in + IDXF_INO_XATTR_FIRST) + i);
	const uint8_t *s = r->s[IDXF_SEC_STRINGS].p;
	ret->name = (const char *)s + cm_le32(xa + IDXF_XA_NAME_OFF);
	ret->name_len = cm_le32(xa + IDXF_XA_NAME_LEN);
	ret->value = s + cm_le32(xa + IDXF_XA_VALUE_OFF);
	ret->value_len = cm_le32(xa + IDXF_XA_VALUE_LEN);
	return 0;
}
