/*
 * The tree stream (agent/src/tree.c): a directory read into a stream and written back
 * elsewhere, fed in pieces of every size; hostile streams into the writer (symlinks that
 * point out of the root, paths that climb out of it, malformed records), truncated
 * streams, and the writer's cleanup after a failure. Runs as root or not: what lies
 * outside the root is checked either way.
 */
#include "agent/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define TEST_MTIME_SEC	1234567890
#define TEST_MTIME_NSEC 123456789
#define DIR_MTIME_SEC	1000000000

/* Three scratch directories per test: a source tree, the writer's root, and a directory
 * outside that root which hostile streams aim at. */
struct fixture {
	char src[64], dst[64], out[64];
	int srcfd, dstfd, outfd;
};

static int open_dir(const char *path)
{
	return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static int make_tmp(char *buf, size_t cap)
{
	const char *base = getenv("TMPDIR");
	snprintf(buf, cap, "%s/isorun-tree-XXXXXX", base && *base ? base : "/tmp");
	if (strlen(buf) + 1 >= cap || !mkdtemp(buf))
		return -1;
	return open_dir(buf);
}

/* Remove everything under `dfd`, making directories writable first (a 0555 one). */
static void rm_under(int dfd)
{
	int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	if (dup_fd < 0)
		return;
	DIR *d = fdopendir(dup_fd);
	if (!d) {
		close(dup_fd);
		return;
	}
	rewinddir(d); /* the offset is shared with dfd, which may have been read */
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int c = openat(dfd, de->d_name,
				       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (c >= 0) {
				(void)fchmod(c, 0700);
				rm_under(c);
				close(c);
			}
			(void)unlinkat(dfd, de->d_name, AT_REMOVEDIR);
		} else {
			(void)unlinkat(dfd, de->d_name, 0);
		}
	}
	closedir(d);
}

static void rm_tree(const char *path, int fd)
{
	if (fd < 0)
		return;
	(void)fchmod(fd, 0700);
	rm_under(fd);
	close(fd);
	(void)rmdir(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->srcfd = make_tmp(f->src, sizeof(f->src));
	f->dstfd = make_tmp(f->dst, sizeof(f->dst));
	f->outfd = make_tmp(f->out, sizeof(f->out));
	*state = f;
	return f->srcfd < 0 || f->dstfd < 0 || f->outfd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	rm_tree(f->src, f->srcfd);
	rm_tree(f->dst, f->dstfd);
	rm_tree(f->out, f->outfd);
	free(f);
	return 0;
}

/* ---- helpers ---- */

struct names {
	char **v;
	size_t n, a;
};

static void names_walk(int dfd, const char *prefix, struct names *ns)
{
	int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	assert_true(dup_fd >= 0);
	DIR *d = fdopendir(dup_fd);
	assert_non_null(d);
	rewinddir(d); /* the offset is shared with dfd */
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		assert_int_equal(fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW), 0);
		char c = S_ISDIR(st.st_mode)	? 'd'
			 : S_ISREG(st.st_mode)	? 'f'
			 : S_ISLNK(st.st_mode)	? 'l'
			 : S_ISFIFO(st.st_mode) ? 'p'
						: '?';
		char path[AGENT_MAX_PATH];
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
		if (ns->n == ns->a) {
			ns->a = ns->a ? ns->a * 2 : 16;
			ns->v = realloc(ns->v, ns->a * sizeof(*ns->v));
			assert_non_null(ns->v);
		}
		char *line = malloc(strlen(path) + 3);
		assert_non_null(line);
		sprintf(line, "%s %c", path, c);
		ns->v[ns->n++] = line;
		if (c == 'd') {
			int cfd = openat(dfd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			assert_true(cfd >= 0);
			names_walk(cfd, path, ns);
			close(cfd);
		}
	}
	closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Everything under `dfd`, sorted, one "path type\n" line each (type: d f l p ?). The caller
 * frees. */
static char *listing(int dfd)
{
	struct names ns = {0};
	names_walk(dfd, "", &ns);
	if (ns.n)
		qsort(ns.v, ns.n, sizeof(*ns.v), cmp_str);
	size_t len = 1;
	for (size_t i = 0; i < ns.n; i++)
		len += strlen(ns.v[i]) + 1;
	char *s = malloc(len);
	assert_non_null(s);
	s[0] = 0;
	for (size_t i = 0; i < ns.n; i++) {
		strcat(s, ns.v[i]);
		strcat(s, "\n");
		free(ns.v[i]);
	}
	free(ns.v);
	return s;
}

static void assert_listing(int dfd, const char *want)
{
	char *got = listing(dfd);
	assert_string_equal(got, want);
	free(got);
}

static void write_file(int dfd, const char *name, const void *p, size_t n, mode_t mode)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* A regular file's contents (NULL if it is not one); *ret_len its size. */
static uint8_t *read_file(int dfd, const char *name, size_t *ret_len)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	uint8_t *p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t k = read(fd, p + got, (size_t)st.st_size - got);
		assert_true(k > 0);
		got += (size_t)k;
	}
	close(fd);
	*ret_len = got;
	return p;
}

static void assert_file(int dfd, const char *name, const void *want, size_t n)
{
	size_t len;
	uint8_t *p = read_file(dfd, name, &len);
	assert_non_null(p);
	assert_int_equal(len, n);
	if (n)
		assert_memory_equal(p, want, n);
	free(p);
}

static void assert_link(int dfd, const char *name, const char *target)
{
	char buf[AGENT_MAX_PATH];
	ssize_t n = readlinkat(dfd, name, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = 0;
	assert_string_equal(buf, target);
}

static struct stat lstat_at(int dfd, const char *name)
{
	struct stat st;
	assert_int_equal(fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
	return st;
}

/* Feed `n` bytes in pieces whose sizes cycle through sizes[]. */
static int feed_pieces(struct agent_tree_dec *d, const uint8_t *p, size_t n, const size_t *sizes,
		       size_t nsizes, const struct agent_tree_sink *sink, void *ud)
{
	for (size_t i = 0; n; i++) {
		size_t k = sizes[i % nsizes] < n ? sizes[i % nsizes] : n;
		int r = agent_tree_dec_feed(d, p, k, sink, ud);
		if (r < 0)
			return r;
		p += k;
		n -= k;
	}
	return 0;
}

/* One well-formed record (header by the encoder, then its bytes). */
static void put_rec(struct agent_wbuf *b, uint32_t mode, const char *path, const void *data,
		    size_t size)
{
	struct agent_tree_entry e = {.mode = mode, .size = size, .mtime_ns = 0, .path = path};
	assert_int_equal(agent_tree_hdr_encode(b, &e), 0);
	assert_int_equal(agent_wbuf_append(b, data, size), 0);
}

/* A record header by hand, for what the encoder refuses: `plen` is the announced path
 * length, `path`/`pathn` the bytes that follow it. */
static void put_raw(struct agent_wbuf *b, uint32_t mode, uint64_t size, uint32_t plen,
		    const void *path, size_t pathn)
{
	assert_int_equal(agent_put_u32(b, mode), 0);
	assert_int_equal(agent_put_u32(b, 0), 0);
	assert_int_equal(agent_put_u32(b, 0), 0);
	assert_int_equal(agent_put_u64(b, size), 0);
	assert_int_equal(agent_put_u64(b, 0), 0);
	assert_int_equal(agent_put_u32(b, plen), 0);
	assert_int_equal(agent_wbuf_append(b, path, pathn), 0);
}

/* A stream through a fresh writer on `root` (chown off, set-id bits masked, as the host
 * does); finish only after a clean stream. The caller inspects, then calls
 * agent_tree_writer_fini. */
static int run_writer(struct agent_tree_writer *w, int root, const struct agent_wbuf *b)
{
	struct agent_tree_dec d;
	agent_tree_writer_init(w, root, false, 0777);
	agent_tree_dec_init(&d);
	int r = agent_tree_dec_feed(&d, b->data, b->len, &agent_tree_writer_sink, w);
	if (r >= 0)
		r = agent_tree_dec_finish(&d);
	if (r >= 0)
		r = agent_tree_writer_finish(w);
	return r;
}

/* A sink that logs what it is called with ("E mode path size;" "D bytes;" "X;", data
 * joined across pieces) and checks the call order. */
struct logsink {
	char log[3 * AGENT_MAX_PATH];
	size_t len;
	unsigned entries, datas, ends;
	bool open, in_data;
	uint64_t size, got;
};

static void log_add(struct logsink *s, const char *p, size_t n)
{
	assert_true(s->len + n < sizeof(s->log));
	memcpy(s->log + s->len, p, n);
	s->len += n;
	s->log[s->len] = 0;
}

static int log_entry(void *ud, const struct agent_tree_entry *e)
{
	struct logsink *s = ud;
	char buf[AGENT_MAX_PATH + 64];
	assert_false(s->open);
	int n = snprintf(buf, sizeof(buf), "E %o %s %llu;", e->mode, e->path,
			 (unsigned long long)e->size);
	log_add(s, buf, (size_t)n);
	s->entries++;
	s->open = true;
	s->size = e->size;
	s->got = 0;
	return 0;
}

static int log_data(void *ud, const uint8_t *p, size_t n)
{
	struct logsink *s = ud;
	assert_true(s->open);
	if (!s->in_data)
		log_add(s, "D ", 2);
	s->in_data = true;
	log_add(s, (const char *)p, n);
	s->datas++;
	s->got += n;
	assert_true(s->got <= s->size);
	return 0;
}

static int log_end(void *ud)
{
	struct logsink *s = ud;
	assert_true(s->open);
	assert_int_equal(s->got, s->size);
	if (s->in_data)
		log_add(s, ";", 1);
	log_add(s, "X;", 2);
	s->in_data = false;
	s->open = false;
	s->ends++;
	return 0;
}

static const struct agent_tree_sink log_sink = {
    .entry = log_entry, .data = log_data, .end = log_end};

/* A header the decoder must refuse with `want`, without calling the sink. */
static void assert_refused(const struct agent_wbuf *b, int want)
{
	struct agent_tree_dec d;
	struct logsink s = {0};
	agent_tree_dec_init(&d);
	assert_int_equal(agent_tree_dec_feed(&d, b->data, b->len, &log_sink, &s), want);
	assert_int_equal(s.entries, 0);
	/* and byte by byte, the same */
	agent_tree_dec_init(&d);
	int r = 0;
	for (size_t i = 0; i < b->len && r == 0; i++)
		r = agent_tree_dec_feed(&d, b->data + i, 1, &log_sink, &s);
	assert_int_equal(r, want);
	assert_int_equal(s.entries, 0);
}

/* A header the decoder accepts (entry called once). */
static void assert_accepted(const struct agent_wbuf *b)
{
	struct agent_tree_dec d;
	struct logsink s = {0};
	agent_tree_dec_init(&d);
	assert_int_equal(agent_tree_dec_feed(&d, b->data, b->len, &log_sink, &s), 0);
	assert_int_equal(s.entries, 1);
}

static size_t count_tmp(int dfd)
{
	char *l = listing(dfd);
	size_t n = 0;
	for (const char *p = l; (p = strstr(p, ".isorun-cp-")); p++)
		n++;
	free(l);
	return n;
}

/* ---- round trip ---- */

static const char SRC_LISTING[] = "abs l\n"
				  "big.bin f\n"
				  "d1 d\n"
				  "d1/d2 d\n"
				  "d1/d2/deep.txt f\n"
				  "empty f\n"
				  "fifo p\n"
				  "rel l\n"
				  "ro d\n"
				  "ro/inside.txt f\n"
				  "suid f\n";
static const char DST_LISTING[] = "abs l\n"
				  "big.bin f\n"
				  "d1 d\n"
				  "d1/d2 d\n"
				  "d1/d2/deep.txt f\n"
				  "empty f\n"
				  "rel l\n"
				  "ro d\n"
				  "ro/inside.txt f\n"
				  "suid f\n";
#define BIG_SIZE (200 * 1024 + 17)

static void make_src_tree(int fd, uint8_t *big)
{
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < BIG_SIZE; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		big[i] = (uint8_t)x;
	}
	assert_int_equal(mkdirat(fd, "d1", 0700), 0);
	assert_int_equal(mkdirat(fd, "d1/d2", 0700), 0);
	write_file(fd, "d1/d2/deep.txt", "deep", 4, 0644);
	write_file(fd, "big.bin", big, BIG_SIZE, 0640);
	write_file(fd, "empty", "", 0, 0600);
	assert_int_equal(symlinkat("d1/d2/deep.txt", fd, "rel"), 0);
	assert_int_equal(symlinkat("/nonexistent-isorun-target/abs", fd, "abs"), 0);
	assert_int_equal(mkfifoat(fd, "fifo", 0644), 0);
	write_file(fd, "suid", "#!/bin/sh\n", 10, 04755);
	struct timespec ts[2] = {{TEST_MTIME_SEC, TEST_MTIME_NSEC},
				 {TEST_MTIME_SEC, TEST_MTIME_NSEC}};
	assert_int_equal(utimensat(fd, "suid", ts, 0), 0);
	assert_int_equal(mkdirat(fd, "ro", 0700), 0);
	write_file(fd, "ro/inside.txt", "inside", 6, 0644);
	assert_int_equal(fchmodat(fd, "ro", 0555, 0), 0);
	assert_int_equal(fchmodat(fd, "d1", 0750, 0), 0);
	/* directory times last: making their entries moved them */
	struct timespec dts[2] = {{DIR_MTIME_SEC, 0}, {DIR_MTIME_SEC, 0}};
	assert_int_equal(utimensat(fd, "ro", dts, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(utimensat(fd, "d1", dts, AT_SYMLINK_NOFOLLOW), 0);
	assert_listing(fd, SRC_LISTING);
	struct stat st = lstat_at(fd, "suid");
	assert_int_equal(st.st_mode & 07777, 04755);
}

/* The whole source tree as one stream, read `cap` bytes at a time. */
static uint8_t *read_stream(const char *src, size_t cap, size_t *ret_len,
			    struct agent_tree_reader *r)
{
	int fd = open_dir(src);
	assert_true(fd >= 0);
	assert_int_equal(agent_tree_reader_init(r, fd), 0);
	uint8_t *buf = malloc(cap);
	assert_non_null(buf);
	size_t len = 0, alloc = 1 << 16;
	uint8_t *out = malloc(alloc);
	assert_non_null(out);
	for (;;) {
		ssize_t n = agent_tree_reader_read(r, buf, cap);
		assert_true(n >= 0);
		if (n == 0)
			break;
		assert_true((size_t)n <= cap);
		while (len + (size_t)n > alloc) {
			alloc *= 2;
			out = realloc(out, alloc);
			assert_non_null(out);
		}
		memcpy(out + len, buf, (size_t)n);
		len += (size_t)n;
	}
	/* and it stays at its end */
	assert_int_equal(agent_tree_reader_read(r, buf, cap), 0);
	free(buf);
	*ret_len = len;
	return out;
}

static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	uint8_t *big = malloc(BIG_SIZE);
	assert_non_null(big);
	make_src_tree(f->srcfd, big);
	struct stat src_suid = lstat_at(f->srcfd, "suid");
	struct stat src_ro = lstat_at(f->srcfd, "ro");
	assert_int_equal(src_suid.st_mtim.tv_sec, TEST_MTIME_SEC);
	assert_int_equal(src_ro.st_mtim.tv_sec, DIR_MTIME_SEC);

	const size_t caps[] = {1, 7, 4096, 65536};
	const size_t pieces[][4] = {
	    {1, 2, 3, 5}, {7, 100, 1, 4096}, {65536, 13, 70000, 3}, {1 << 20}};
	const size_t npieces[] = {4, 4, 4, 1};
	uint8_t *first = NULL;
	size_t first_len = 0;
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		struct agent_tree_reader rd;
		size_t len;
		uint8_t *stream = read_stream(f->src, caps[i], &len, &rd);
		/* the fifo is sent as a record without contents, which the writer skips */
		assert_int_equal(rd.entries, 11);
		assert_int_equal(rd.skipped, 1);
		agent_tree_reader_fini(&rd);
		assert_true(len > BIG_SIZE);
		/* the same tree reads to the same bytes, whatever the buffer */
		if (!first) {
			first = stream;
			first_len = len;
		} else {
			assert_int_equal(len, first_len);
			assert_memory_equal(stream, first, len);
		}

		char dst[64];
		int dfd = make_tmp(dst, sizeof(dst));
		assert_true(dfd >= 0);
		struct agent_tree_writer w;
		struct agent_tree_dec d;
		agent_tree_writer_init(&w, dfd, false, 0777);
		agent_tree_dec_init(&d);
		assert_int_equal(feed_pieces(&d, stream, len, pieces[i], npieces[i],
					     &agent_tree_writer_sink, &w),
				 0);
		assert_int_equal(d.records, 11);
		assert_int_equal(agent_tree_dec_finish(&d), 0);
		assert_int_equal(agent_tree_writer_finish(&w), 0);
		assert_null(w.op);
		assert_int_equal(w.written, 10);
		assert_int_equal(w.skipped, 1);
		agent_tree_writer_fini(&w);

		assert_listing(dfd, DST_LISTING);
		assert_file(dfd, "big.bin", big, BIG_SIZE);
		assert_file(dfd, "empty", "", 0);
		assert_file(dfd, "d1/d2/deep.txt", "deep", 4);
		assert_file(dfd, "ro/inside.txt", "inside", 6);
		assert_file(dfd, "suid", "#!/bin/sh\n", 10);
		assert_link(dfd, "rel", "d1/d2/deep.txt");
		assert_link(dfd, "abs", "/nonexistent-isorun-target/abs");
		struct stat st;
		assert_int_equal(fstatat(dfd, "fifo", &st, AT_SYMLINK_NOFOLLOW), -1);
		assert_int_equal(errno, ENOENT);

		st = lstat_at(dfd, "suid");
		assert_int_equal(st.st_mode & 07777, 0755); /* set-uid dropped by the mask */
		assert_int_equal(st.st_mtim.tv_sec, src_suid.st_mtim.tv_sec);
		assert_int_equal(st.st_mtim.tv_nsec, src_suid.st_mtim.tv_nsec);
		assert_int_equal(lstat_at(dfd, "big.bin").st_mode & 07777, 0640);
		assert_int_equal(lstat_at(dfd, "empty").st_mode & 07777, 0600);
		assert_int_equal(lstat_at(dfd, "d1").st_mode & 07777, 0750);
		st = lstat_at(dfd, "ro");
		assert_int_equal(st.st_mode & 07777, 0555);
		assert_int_equal(st.st_mtim.tv_sec, DIR_MTIME_SEC);
		assert_int_equal(lstat_at(dfd, "d1").st_mtim.tv_sec, DIR_MTIME_SEC);
		rm_tree(dst, dfd);
		if (stream != first)
			free(stream);
	}
	free(first);
	free(big);
}

/* ---- hostile streams ---- */

/* A symlink the stream made, or one already in the root, is never walked through. */
static void test_symlink_escape(void **state)
{
	struct fixture *f = *state;
	struct agent_wbuf b;
	struct agent_tree_writer w;

	/* a symlink to the outside directory, then a file below it */
	agent_wbuf_init(&b, 1 << 20);
	put_rec(&b, S_IFLNK | 0777, "a", f->out, strlen(f->out));
	put_rec(&b, S_IFREG | 0644, "a/x", "pwned", 5);
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_non_null(w.op);
	assert_string_equal(w.where, "a/x");
	agent_tree_writer_fini(&w);
	assert_listing(f->outfd, "");
	assert_listing(f->dstfd, "a l\n");
	assert_link(f->dstfd, "a", f->out);

	/* the symlink is there already: a directory, and a deeper file, below it */
	const char *below[] = {"a/sub", "a/sub/x"};
	const uint32_t modes[] = {S_IFDIR | 0777, S_IFREG | 0644};
	for (size_t i = 0; i < 2; i++) {
		b.len = 0;
		put_rec(&b, modes[i], below[i], "pwned", S_ISDIR(modes[i]) ? 0 : 5);
		assert_true(run_writer(&w, f->dstfd, &b) < 0);
		assert_non_null(w.op);
		agent_tree_writer_fini(&w);
		assert_listing(f->outfd, "");
	}

	/* relative: a symlink climbing to the outside directory */
	char rel[128];
	snprintf(rel, sizeof(rel), "../%s", strrchr(f->out, '/') + 1);
	b.len = 0;
	put_rec(&b, S_IFDIR | 0755, "d", NULL, 0);
	put_rec(&b, S_IFLNK | 0777, "d/up", rel, strlen(rel));
	put_rec(&b, S_IFREG | 0644, "d/up/x", "pwned", 5);
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_non_null(w.op);
	assert_string_equal(w.where, "d/up/x");
	agent_tree_writer_fini(&w);
	assert_listing(f->outfd, "");
	assert_listing(f->dstfd, "a l\nd d\nd/up l\n");

	/* the writer keeps the directory it last walked to open: a name that starts like it
	 * ("e" then "ef") is not below it, and a symlink next to it is still not followed */
	b.len = 0;
	put_rec(&b, S_IFDIR | 0755, "e", NULL, 0);
	put_rec(&b, S_IFDIR | 0755, "e/g", NULL, 0);
	put_rec(&b, S_IFREG | 0644, "e/g/x", "ok", 2);
	put_rec(&b, S_IFLNK | 0777, "ef", f->out, strlen(f->out));
	put_rec(&b, S_IFREG | 0644, "ef/g", "pwned", 5);
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_string_equal(w.where, "ef/g");
	agent_tree_writer_fini(&w);
	assert_listing(f->outfd, "");
	b.len = 0;
	put_rec(&b, S_IFLNK | 0777, "e/gXh", f->out, strlen(f->out));
	put_rec(&b, S_IFDIR | 0755, "e/g/h", NULL, 0);
	put_rec(&b, S_IFREG | 0644, "e/gXh/x", "pwned", 5); /* not e/g + "h/x" */
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_string_equal(w.where, "e/gXh/x");
	agent_tree_writer_fini(&w);
	assert_listing(f->outfd, "");
	agent_wbuf_fini(&b);
}

/* Paths the stream may not carry: refused by the decoder before the sink sees them. */
static void test_bad_paths(void **state)
{
	static const char *const bad[] = {
	    "../x", "/abs", "a//b", "a/./b", "", "..", ".", "a/..", "a/", "/", "x/../../y",
	};
	struct agent_wbuf b;
	agent_wbuf_init(&b, 1 << 16);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b.len = 0;
		put_raw(&b, S_IFREG | 0644, 0, (uint32_t)strlen(bad[i]) + 1, bad[i],
			strlen(bad[i]) + 1);
		assert_refused(&b, -EPROTO);
		/* the encoder refuses them too */
		struct agent_tree_entry e = {.mode = S_IFREG | 0644, .path = bad[i]};
		assert_int_equal(agent_tree_hdr_encode(&b, &e), -EPROTO);
		assert_false(agent_tree_path_ok(bad[i]));
	}
	/* a path length of 0 (one byte of whatever follows it); no NUL at the end; a NUL
	 * inside */
	b.len = 0;
	put_raw(&b, S_IFREG | 0644, 0, 0, "x", 1);
	assert_refused(&b, -EPROTO);
	b.len = 0;
	put_raw(&b, S_IFREG | 0644, 0, 3, "abc", 3);
	assert_refused(&b, -EPROTO);
	b.len = 0;
	put_raw(&b, S_IFREG | 0644, 0, 4, "a\0b", 4);
	assert_refused(&b, -EPROTO);
	/* a component over 255 bytes */
	char longc[300];
	memset(longc, 'c', 256);
	longc[256] = 0;
	b.len = 0;
	put_raw(&b, S_IFREG | 0644, 0, 257, longc, 257);
	assert_refused(&b, -EPROTO);
	longc[255] = 0; /* 255 is fine */
	b.len = 0;
	put_raw(&b, S_IFREG | 0644, 0, 256, longc, 256);
	assert_accepted(&b);

	/* through a writer, "../x" creates nothing beside the root */
	struct fixture *f = *state;
	char rel[128];
	snprintf(rel, sizeof(rel), "../%s/x", strrchr(f->out, '/') + 1);
	b.len = 0;
	put_raw(&b, S_IFREG | 0644, 1, (uint32_t)strlen(rel) + 1, rel, strlen(rel) + 1);
	assert_int_equal(agent_wbuf_append(&b, "x", 1), 0);
	struct agent_tree_writer w;
	assert_int_equal(run_writer(&w, f->dstfd, &b), -EPROTO);
	agent_tree_writer_fini(&w);
	assert_listing(f->outfd, "");
	assert_listing(f->dstfd, "");
	agent_wbuf_fini(&b);
}

/* A directory record whose name is a symlink in the root: refused, never followed. */
static void test_dir_over_symlink(void **state)
{
	struct fixture *f = *state;
	struct stat before, after;
	assert_int_equal(fstat(f->outfd, &before), 0);
	assert_int_equal(symlinkat(f->out, f->dstfd, "d"), 0);
	struct agent_wbuf b;
	agent_wbuf_init(&b, 1 << 16);
	put_rec(&b, S_IFDIR | 0777, "d", NULL, 0);
	put_rec(&b, S_IFREG | 0644, "d/x", "pwned", 5);
	struct agent_tree_writer w;
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_non_null(w.op);
	assert_string_equal(w.where, "d");
	agent_tree_writer_fini(&w);
	assert_listing(f->outfd, "");
	assert_link(f->dstfd, "d", f->out);
	assert_int_equal(fstat(f->outfd, &after), 0);
	assert_int_equal(after.st_mode, before.st_mode);

	/* nor a file where a directory is wanted */
	write_file(f->dstfd, "file", "keep", 4, 0644);
	b.len = 0;
	put_rec(&b, S_IFDIR | 0777, "file", NULL, 0);
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_non_null(w.op);
	agent_tree_writer_fini(&w);
	assert_file(f->dstfd, "file", "keep", 4);
	agent_wbuf_fini(&b);
}

/* A file or symlink record whose name is a symlink replaces the symlink itself. */
static void test_file_over_symlink(void **state)
{
	struct fixture *f = *state;
	char target[128], missing[128];
	write_file(f->outfd, "target", "orig", 4, 0644);
	snprintf(target, sizeof(target), "%s/target", f->out);
	snprintf(missing, sizeof(missing), "%s/created", f->out);
	assert_int_equal(symlinkat(target, f->dstfd, "f"), 0);
	assert_int_equal(symlinkat(missing, f->dstfd, "dangling"), 0);
	assert_int_equal(symlinkat(target, f->dstfd, "l"), 0);

	struct agent_wbuf b;
	agent_wbuf_init(&b, 1 << 16);
	put_rec(&b, S_IFREG | 0600, "f", "new", 3);
	put_rec(&b, S_IFREG | 0600, "dangling", "new", 3);
	put_rec(&b, S_IFLNK | 0777, "l", "elsewhere", 9);
	/* made by the stream, then written over by it */
	put_rec(&b, S_IFLNK | 0777, "s", missing, strlen(missing));
	put_rec(&b, S_IFREG | 0600, "s", "new", 3);
	struct agent_tree_writer w;
	assert_int_equal(run_writer(&w, f->dstfd, &b), 0);
	assert_null(w.op);
	agent_tree_writer_fini(&w);

	assert_listing(f->outfd, "target f\n");
	assert_file(f->outfd, "target", "orig", 4);
	assert_int_equal(lstat_at(f->outfd, "target").st_mode & 07777, 0644);
	assert_listing(f->dstfd, "dangling f\nf f\nl l\ns f\n");
	assert_file(f->dstfd, "f", "new", 3);
	assert_file(f->dstfd, "dangling", "new", 3);
	assert_file(f->dstfd, "s", "new", 3);
	assert_link(f->dstfd, "l", "elsewhere");
	agent_wbuf_fini(&b);
}

/* Records the decoder refuses from their header: sizes, types and mode bits. */
static void test_bad_records(void **state)
{
	struct agent_wbuf b;
	agent_wbuf_init(&b, 1 << 16);

	/* a path longer than AGENT_MAX_PATH: refused from its length, by the feed that brings
	 * the length's last byte, not after AGENT_MAX_PATH bytes of path */
	const uint32_t big[] = {AGENT_MAX_PATH + 1, UINT32_MAX};
	for (size_t i = 0; i < 2; i++) {
		b.len = 0;
		put_raw(&b, S_IFREG | 0644, 0, big[i], "p", 1);
		assert_int_equal(b.len, AGENT_TREE_FIXED + 4 + 1);
		assert_refused(&b, -EFBIG);
		struct agent_tree_dec d;
		struct logsink s = {0};
		agent_tree_dec_init(&d);
		assert_int_equal(
		    agent_tree_dec_feed(&d, b.data, AGENT_TREE_FIXED + 4, &log_sink, &s), -EFBIG);
	}
	/* AGENT_MAX_PATH itself (NUL included) is allowed: 16 components of 255 */
	char path[AGENT_MAX_PATH + 1];
	for (size_t i = 0; i < AGENT_MAX_PATH - 1; i++)
		path[i] = i % 256 == 255 ? '/' : 'p';
	path[AGENT_MAX_PATH - 1] = 0;
	assert_true(agent_tree_path_ok(path));
	b.len = 0;
	put_rec(&b, S_IFDIR | 0755, path, NULL, 0);
	assert_int_equal(b.len, AGENT_TREE_HDR_MAX);
	assert_accepted(&b);
	path[AGENT_MAX_PATH - 1] = 'p';
	path[AGENT_MAX_PATH] = 0;
	struct agent_tree_entry e = {.mode = S_IFDIR | 0755, .path = path};
	assert_int_equal(agent_tree_hdr_encode(&b, &e), -EFBIG);

	/* a symlink's size: 1 to AGENT_MAX_PATH - 1 */
	const uint64_t bad_link[] = {0, AGENT_MAX_PATH, AGENT_MAX_PATH + 1, UINT64_MAX};
	for (size_t i = 0; i < sizeof(bad_link) / sizeof(bad_link[0]); i++) {
		b.len = 0;
		put_raw(&b, S_IFLNK | 0777, bad_link[i], 2, "l", 2);
		assert_refused(&b, -EPROTO);
		struct agent_tree_entry le = {
		    .mode = S_IFLNK | 0777, .size = bad_link[i], .path = "l"};
		assert_int_equal(agent_tree_hdr_encode(&b, &le), -EPROTO);
	}
	b.len = 0;
	put_raw(&b, S_IFLNK | 0777, AGENT_MAX_PATH - 1, 2, "l", 2);
	assert_accepted(&b);
	b.len = 0;
	put_raw(&b, S_IFLNK | 0777, 1, 2, "l", 2);
	assert_accepted(&b);

	/* directories and the other types carry nothing */
	const uint32_t empty_types[] = {S_IFDIR, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK};
	for (size_t i = 0; i < sizeof(empty_types) / sizeof(empty_types[0]); i++) {
		b.len = 0;
		put_raw(&b, empty_types[i] | 0755, 1, 2, "d", 2);
		assert_refused(&b, -EPROTO);
		b.len = 0;
		put_raw(&b, empty_types[i] | 0755, 0, 2, "d", 2);
		assert_accepted(&b);
	}
	b.len = 0;
	put_raw(&b, S_IFDIR | 0755, UINT64_MAX, 2, "d", 2);
	assert_refused(&b, -EPROTO);

	/* type bits no file has */
	const uint32_t bad_types[] = {0,       0030000, 0050000, 0070000, 0110000,
				      0130000, 0150000, 0160000, 0170000};
	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		b.len = 0;
		put_raw(&b, bad_types[i] | 0644, 0, 2, "f", 2);
		assert_refused(&b, -EPROTO);
	}
	/* bits outside S_IFMT | 07777 */
	const uint32_t bad_bits[] = {0200000, 0400000, 0x80000000u, 0x00010000u << 4};
	for (size_t i = 0; i < sizeof(bad_bits) / sizeof(bad_bits[0]); i++) {
		b.len = 0;
		put_raw(&b, S_IFREG | 0644 | bad_bits[i], 0, 2, "f", 2);
		assert_refused(&b, -EPROTO);
	}
	b.len = 0;
	put_raw(&b, S_IFREG | 07777, 0, 2, "f", 2);
	assert_accepted(&b);

	/* after a refused record the decoder goes no further, even with a good one behind */
	b.len = 0;
	put_raw(&b, S_IFDIR | 0755, 1, 2, "d", 2);
	put_rec(&b, S_IFDIR | 0755, "e", NULL, 0);
	assert_refused(&b, -EPROTO);
	agent_wbuf_fini(&b);
}

/* Devices, fifos and sockets from the stream: skipped, never made (a device node on the
 * host, when the writer runs as root). */
static void test_special_skipped(void **state)
{
	struct fixture *f = *state;
	struct agent_wbuf b;
	agent_wbuf_init(&b, 1 << 16);
	put_rec(&b, S_IFCHR | 0666, "null", NULL, 0);
	put_rec(&b, S_IFBLK | 0666, "sda", NULL, 0);
	put_rec(&b, S_IFIFO | 0644, "fifo", NULL, 0);
	put_rec(&b, S_IFSOCK | 0755, "sock", NULL, 0);
	put_rec(&b, S_IFREG | 0644, "after", "ok", 2);
	struct agent_tree_writer w;
	assert_int_equal(run_writer(&w, f->dstfd, &b), 0);
	assert_int_equal(w.skipped, 4);
	assert_int_equal(w.written, 1);
	agent_tree_writer_fini(&w);
	assert_listing(f->dstfd, "after f\n");
	assert_file(f->dstfd, "after", "ok", 2);
	agent_wbuf_fini(&b);
}

/* ---- truncation, and pieces of any size ---- */

static const char EXPECT_LOG[] = "E 40755 d 0;X;"
				 "E 100644 d/f 5;D hello;X;"
				 "E 120777 l 3;D d/f;X;"
				 "E 100600 e 0;X;"
				 "E 100644 d/g 3;D xyz;X;";

static void test_truncation(void **state)
{
	struct agent_wbuf b;
	agent_wbuf_init(&b, 1 << 16);
	size_t bounds[8], nb = 0;
	bounds[nb++] = 0;
	put_rec(&b, S_IFDIR | 0755, "d", NULL, 0);
	bounds[nb++] = b.len;
	put_rec(&b, S_IFREG | 0644, "d/f", "hello", 5);
	bounds[nb++] = b.len;
	put_rec(&b, S_IFLNK | 0777, "l", "d/f", 3);
	bounds[nb++] = b.len;
	put_rec(&b, S_IFREG | 0600, "e", NULL, 0);
	bounds[nb++] = b.len;
	put_rec(&b, S_IFREG | 0644, "d/g", "xyz", 3);
	bounds[nb++] = b.len;

	/* every prefix: no error, and finish says whether it stopped between records */
	for (size_t k = 0; k <= b.len; k++) {
		struct agent_tree_dec d;
		struct logsink s = {0};
		agent_tree_dec_init(&d);
		assert_int_equal(agent_tree_dec_feed(&d, b.data, k, &log_sink, &s), 0);
		bool between = false;
		for (size_t i = 0; i < nb; i++)
			between |= bounds[i] == k;
		assert_int_equal(agent_tree_dec_finish(&d), between ? 0 : -EPROTO);
		if (between)
			assert_int_equal(s.entries, s.ends);
	}
	/* named cases of the above, in d/f's record (header 32 + 4 bytes, then "hello"): one
	 * byte into its header, right after its path length, one byte short of its path,
	 * right after its header, one byte short of its contents */
	const size_t inside[] = {bounds[1] + 1, bounds[1] + AGENT_TREE_FIXED + 4, bounds[2] - 6,
				 bounds[2] - 5, bounds[2] - 1};
	for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
		struct agent_tree_dec d;
		struct logsink s = {0};
		agent_tree_dec_init(&d);
		assert_int_equal(agent_tree_dec_feed(&d, b.data, inside[i], &log_sink, &s), 0);
		assert_int_equal(agent_tree_dec_finish(&d), -EPROTO);
	}

	/* at once, byte by byte, and in odd pieces: the same calls, the same data */
	const size_t one = 1, odd[] = {3, 1, 40, 2, 7};
	struct {
		const size_t *sizes;
		size_t n;
	} ways[] = {{&b.len, 1}, {&one, 1}, {odd, 5}};
	unsigned datas[3];
	for (size_t i = 0; i < 3; i++) {
		struct agent_tree_dec d;
		struct logsink s = {0};
		agent_tree_dec_init(&d);
		assert_int_equal(
		    feed_pieces(&d, b.data, b.len, ways[i].sizes, ways[i].n, &log_sink, &s), 0);
		assert_int_equal(agent_tree_dec_finish(&d), 0);
		assert_string_equal(s.log, EXPECT_LOG);
		assert_int_equal(s.entries, 5);
		assert_int_equal(s.ends, 5);
		assert_int_equal(d.records, 5);
		datas[i] = s.datas;
	}
	assert_int_equal(datas[0], 3);	       /* one call per record with contents */
	assert_int_equal(datas[1], 5 + 3 + 3); /* one per byte */
	agent_wbuf_fini(&b);
}

/* ---- writer failures leave no temporary file ---- */

static void test_writer_cleanup(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(mkdirat(f->dstfd, "x", 0755), 0);
	write_file(f->dstfd, "x/keep", "keep", 4, 0644);
	const char *before = "x d\nx/keep f\n";
	struct agent_wbuf b;
	agent_wbuf_init(&b, 1 << 16);
	struct agent_tree_writer w;

	/* a file over a non-empty directory: its rename fails at the end of its record */
	put_rec(&b, S_IFREG | 0644, "x", "abc", 3);
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_non_null(w.op);
	assert_string_equal(w.where, "x");
	/* the temporary file is the writer's until fini (agent/tree.h) */
	assert_int_equal(count_tmp(f->dstfd), 1);
	agent_tree_writer_fini(&w);
	assert_int_equal(count_tmp(f->dstfd), 0);
	assert_listing(f->dstfd, before);
	assert_file(f->dstfd, "x/keep", "keep", 4);

	/* a symlink over it */
	b.len = 0;
	put_rec(&b, S_IFLNK | 0777, "x", "t", 1);
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_non_null(w.op);
	agent_tree_writer_fini(&w);
	assert_listing(f->dstfd, before);

	/* a stream that stops inside a file's contents */
	b.len = 0;
	put_rec(&b, S_IFREG | 0644, "x/part", "0123456789", 10);
	b.len -= 4;
	assert_int_equal(run_writer(&w, f->dstfd, &b), -EPROTO);
	assert_int_equal(count_tmp(f->dstfd), 1);
	agent_tree_writer_fini(&w);
	assert_listing(f->dstfd, before);

	/* a failure at a later record's start: what came before stays, nothing else */
	b.len = 0;
	put_rec(&b, S_IFREG | 0644, "x/ok", "fine", 4);
	put_rec(&b, S_IFREG | 0644, "x/keep/y", "abc", 3);
	assert_true(run_writer(&w, f->dstfd, &b) < 0);
	assert_string_equal(w.where, "x/keep/y");
	agent_tree_writer_fini(&w);
	assert_int_equal(count_tmp(f->dstfd), 0);
	assert_listing(f->dstfd, "x d\nx/keep f\nx/ok f\n");
	assert_file(f->dstfd, "x/ok", "fine", 4);
	agent_wbuf_fini(&b);
}

/* Two writers at work in one directory at once (two `isorun cp` into one sandbox: one
 * agent process) do not collide on their temporary names, nor on a stale one. */
static void test_writers_at_once(void **state)
{
	struct fixture *f = *state;
	struct agent_wbuf b1, b2;
	agent_wbuf_init(&b1, 1 << 16);
	agent_wbuf_init(&b2, 1 << 16);
	put_rec(&b1, S_IFREG | 0644, "one", "1111", 4);
	put_rec(&b1, S_IFLNK | 0777, "l1", "one", 3);
	put_rec(&b2, S_IFREG | 0644, "two", "2222", 4);
	put_rec(&b2, S_IFLNK | 0777, "l2", "two", 3);
	struct agent_tree_writer w1, w2;
	struct agent_tree_dec d1, d2;
	agent_tree_writer_init(&w1, f->dstfd, false, 0777);
	agent_tree_writer_init(&w2, f->dstfd, false, 0777);
	/* a temporary name of each writer's first entry, left behind by a crash */
	char stale[64];
	snprintf(stale, sizeof(stale), ".isorun-cp-%ld-%u-0", (long)getpid(), w2.id);
	write_file(f->dstfd, stale, "old", 3, 0600);
	agent_tree_dec_init(&d1);
	agent_tree_dec_init(&d2);
	/* both files open at once: each header and half of its body, then the rest */
	size_t h = AGENT_TREE_FIXED + 4 + 4 + 2;
	assert_int_equal(agent_tree_dec_feed(&d1, b1.data, h, &agent_tree_writer_sink, &w1), 0);
	assert_int_equal(agent_tree_dec_feed(&d2, b2.data, h, &agent_tree_writer_sink, &w2), 0);
	assert_int_equal(
	    agent_tree_dec_feed(&d1, b1.data + h, b1.len - h, &agent_tree_writer_sink, &w1), 0);
	assert_int_equal(
	    agent_tree_dec_feed(&d2, b2.data + h, b2.len - h, &agent_tree_writer_sink, &w2), 0);
	assert_int_equal(agent_tree_dec_finish(&d1), 0);
	assert_int_equal(agent_tree_dec_finish(&d2), 0);
	assert_int_equal(agent_tree_writer_finish(&w1), 0);
	assert_int_equal(agent_tree_writer_finish(&w2), 0);
	agent_tree_writer_fini(&w1);
	agent_tree_writer_fini(&w2);
	assert_file(f->dstfd, "one", "1111", 4);
	assert_file(f->dstfd, "two", "2222", 4);
	assert_link(f->dstfd, "l1", "one");
	assert_link(f->dstfd, "l2", "two");
	assert_file(f->dstfd, stale, "old", 3);
	agent_wbuf_fini(&b1);
	agent_wbuf_fini(&b2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_symlink_escape, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dir_over_symlink, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_over_symlink, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_special_skipped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writer_cleanup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writers_at_once, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
