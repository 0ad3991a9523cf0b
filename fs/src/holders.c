/*
 * The holders of a shared mount, ROOT/mounts/<hex>/refs: one line per holder, so a
 * reference names who took it. A count could only be trusted as far as every holder gave its
 * reference back; a holder that died between taking a reference and recording that it had
 * one kept the image mounted for good. A named reference is given back by the holder's
 * cleanup whatever the holder got to record (releasing one that is not there is a no-op),
 * and one whose holder is gone is found by looking (fs_holders_audit).
 *
 * Lines (docs: fs/README.md "Shared mounts"):
 *   dir <absolute path>               held while that directory exists (a sandbox)
 *   bind <mnt ns inode> <abs path>    held while <path> is a mount of this image, as seen
 *                                     from that mount namespace (`isorun mount`)
 *   <decimal>                         that many unnamed references (files written before
 *                                     holders were named); never audited
 * Any other line is kept and counted as one holder (a newer release's kind), never audited.
 */
#include "fs_int.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOLDERS_MAX_BYTES (1u << 20)

void fs_holders_free(struct fs_holders *h)
{
	fs_strv_free(h->v, h->n);
	h->v = NULL;
	h->n = 0;
	h->anon = 0;
}

/* A named line of the file being parsed. */
struct span {
	const char *s;
	size_t n;
	size_t pos; /* its rank among the named lines, in file order */
};

/* By content, then by position: the first of equal lines sorts first. */
static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	int c = memcmp(x->s, y->s, MIN(x->n, y->n));
	if (c)
		return c;
	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static bool span_eq(const struct span *x, const struct span *y)
{
	return x->n == y->n && memcmp(x->s, y->s, x->n) == 0;
}

/*
 * Repeated lines count once, the first kept where it stands: the named lines are sorted
 * (content, position), each first of its run is copied into its own position of h->v, and
 * the holes left by the repeats are closed up. O(n log n) in the lines, as against a search
 * of the kept lines for each line; a file can hold up to half a million lines.
 */
int fs_holders_parse(const char *data, size_t len, struct fs_holders *h)
{
	*h = (struct fs_holders){0};
	_cleanup_free_ struct span *sp = NULL;
	size_t m = 0, cap = 0;
	size_t i = 0;
	while (i < len) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - data) : len;
		const char *s = data + i;
		size_t n = e - i;
		i = e + 1;
		/* Blank lines (the padding of an in-place rewrite), NULs: nothing. */
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
			n--;
		if (!n || memchr(s, 0, n))
			continue;
		size_t d = 0;
		while (d < n && isdigit((unsigned char)s[d]))
			d++;
		if (d == n) {
			char num[16];
			unsigned long v = 0;
			if (d <= 9) {
				memcpy(num, s, d);
				num[d] = 0;
				v = strtoul(num, NULL, 10);
			}
			if (d > 9 || v > 1000000) {
				log_warn("mount holders: ignoring the count '%.*s' (too large)",
					 (int)(n > 20 ? 20 : n), s);
				continue;
			}
			/* (at most a million in all: a sum that cannot wrap) */
			h->anon = h->anon + v > 1000000 ? 1000000 : h->anon + (unsigned)v;
			continue;
		}
		if (m == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			struct span *nsp = realloc(sp, ncap * sizeof(*sp));
			if (!nsp) {
				h->anon = 0;
				return -ENOMEM;
			}
			sp = nsp;
			cap = ncap;
		}
		sp[m] = (struct span){s, n, m};
		m++;
	}
	if (!m)
		return 0;
	qsort(sp, m, sizeof(*sp), span_cmp);
	char **v = calloc(m, sizeof(*v));
	if (!v) {
		h->anon = 0;
		return -ENOMEM;
	}
	for (size_t k = 0; k < m; k++) {
		if (k && span_eq(&sp[k - 1], &sp[k]))
			continue;
		if (!(v[sp[k].pos] = strndup(sp[k].s, sp[k].n))) {
			fs_strv_free(v, m);
			h->anon = 0;
			return -ENOMEM;
		}
	}
	for (size_t k = 0; k < m; k++)
		if (v[k])
			v[h->n++] = v[k];
	h->v = v;
	return 0;
}

bool fs_holders_has(const struct fs_holders *h, const char *line, size_t len)
{
	for (size_t k = 0; k < h->n; k++)
		if (strlen(h->v[k]) == len && memcmp(h->v[k], line, len) == 0)
			return true;
	return false;
}

int fs_holders_add(struct fs_holders *h, const char *line)
{
	if (fs_holders_has(h, line, strlen(line)))
		return 0;
	return fs_strv_push(&h->v, &h->n, strdup(line));
}

bool fs_holders_remove(struct fs_holders *h, const char *line)
{
	for (size_t k = 0; k < h->n; k++)
		if (!strcmp(h->v[k], line)) {
			free(h->v[k]);
			memmove(h->v + k, h->v + k + 1, (h->n - k - 1) * sizeof(*h->v));
			h->n--;
			return true;
		}
	return false;
}

size_t fs_holders_count(const struct fs_holders *h)
{
	return h->n + h->anon;
}

int fs_holders_load(const char *mount_dir, struct fs_holders *h)
{
	*h = (struct fs_holders){0};
	_cleanup_free_ char *p = cm_strdupf("%s/refs", mount_dir);
	if (!p)
		return -ENOMEM;
	_cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size >= HOLDERS_MAX_BYTES)
		return cm_log_ret(-EFBIG, "mount holders: %s is over %u bytes", p,
				  HOLDERS_MAX_BYTES);
	size_t cap = (size_t)st.st_size + 1; /* (the lock keeps writers out) */
	_cleanup_free_ char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	size_t len = 0;
	while (len < cap) {
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	return fs_holders_parse(buf, len, h);
}

int fs_holders_format(const struct fs_holders *h, struct cm_buf *b)
{
	int r = h->anon ? cm_buf_printf(b, "%u\n", h->anon) : 0;
	for (size_t k = 0; r == 0 && k < h->n; k++)
		r = cm_buf_printf(b, "%s\n", h->v[k]);
	return r;
}

/*
 * Rewritten in place, not through a temporary file and a rename (ext4 pushes a renamed-over
 * file's data out: 0.3-0.5 ms at each acquire and release of a warm `isorun run`); the
 * caller holds the mount's lock. The new content is padded with newlines to the old size
 * before the file is cut, so a writer killed between the two leaves blank lines, never the
 * tail of a line.
 */
int fs_holders_store(const char *mount_dir, const struct fs_holders *h)
{
	_cleanup_free_ char *p = cm_strdupf("%s/refs", mount_dir);
	if (!p)
		return -ENOMEM;
	struct cm_buf b;
	cm_buf_init(&b, HOLDERS_MAX_BYTES);
	int r = fs_holders_format(h, &b);
	_cleanup_close_ int fd = -1;
	struct stat st;
	if (r == 0 && ((fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0 ||
		       fstat(fd, &st) < 0))
		r = -errno;
	size_t len = b.len;
	while (r == 0 && b.len < (size_t)st.st_size && b.len < HOLDERS_MAX_BYTES)
		r = cm_buf_append(&b, "\n", 1);
	if (r == 0 && b.len && pwrite(fd, b.data, b.len, 0) != (ssize_t)b.len)
		r = errno ? -errno : -EIO;
	if (r == 0 && ftruncate(fd, (off_t)len) < 0)
		r = -errno;
	cm_buf_fini(&b);
	return r;
}

void fs_mountinfo_unescape(const char *in, char *out, size_t outlen)
{
	size_t k = 0;
	for (size_t i = 0; in[i] && k + 1 < outlen; i++) {
		if (in[i] == '\\' && in[i + 1] >= '0' && in[i + 1] <= '3' && in[i + 2] >= '0' &&
		    in[i + 2] <= '7' && in[i + 3] >= '0' && in[i + 3] <= '7') {
			out[k++] = (char)((in[i + 1] - '0') * 64 + (in[i + 2] - '0') * 8 +
					  (in[i + 3] - '0'));
			i += 3;
		} else {
			out[k++] = in[i];
		}
	}
	if (outlen)
		out[k] = 0;
}

/*
 * One line of mountinfo: its mount point, unescaped, into mp[PATH_MAX], and into hex the
 * index hex when it is an isorun mount (type fuse.isorun, source isorun:<hex>), "" when it
 * is any other. False for a line without those fields.
 */
static bool mountinfo_line(const char *line, char *mp, char hex[65])
{
	/* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
	char raw[PATH_MAX], fstype[64], source[128];
	const char *sep = strstr(line, " - ");
	if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", raw) != 1 ||
	    sscanf(sep + 3, "%63s %127s", fstype, source) != 2)
		return false;
	fs_mountinfo_unescape(raw, mp, PATH_MAX);
	hex[0] = 0;
	if (!strcmp(fstype, "fuse.isorun") && cm_str_has_prefix(source, "isorun:") &&
	    strlen(source) == 7 + 64)
		memcpy(hex, source + 7, 65);
	return true;
}

int fs_mounts_at(const char *path, char (*hex)[65], size_t max)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, n = 0;
	while (getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX], h[65];
		if (!mountinfo_line(line, mp, h) || strcmp(mp, path) != 0 || !max)
			continue;
		if (n == max) { /* keep the last ones: the visible mount is the last */
			memmove(hex, hex + 1, (max - 1) * sizeof(*hex));
			n--;
		}
		memcpy(hex[n], h, sizeof(h));
		n++;
	}
	return (int)n;
}

int fs_holder_mntns(unsigned long long *ret)
{
	struct stat st;
	if (stat("/proc/self/ns/mnt", &st) < 0)
		return -errno;
	*ret = (unsigned long long)st.st_ino;
	return 0;
}

/*
 * A bind holder is held while its image is among the last BIND_MOUNTS_SEEN mounts at its
 * path in mount order (a mount stacked on the image's keeps it held; one buried under that
 * many later mounts does not).
 */
#define BIND_MOUNTS_SEEN 16

/* A "bind" line of this mount namespace, checked against one read of mountinfo. */
struct bind_check {
	const char *path; /* in the line */
	size_t line;	  /* its index in h->v */
	size_t mounts;	  /* mounts at path seen so far, in mount order */
	size_t last;	  /* the rank (from 1) of the last of them of the image; 0: none */
	bool held;
};

static int check_cmp_path(const void *a, const void *b)
{
	return strcmp(((const struct bind_check *)a)->path, ((const struct bind_check *)b)->path);
}

static int check_cmp_path_line(const void *a, const void *b)
{
	const struct bind_check *x = a, *y = b;
	int c = strcmp(x->path, y->path);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int check_cmp_line(const void *a, const void *b)
{
	const struct bind_check *x = a, *y = b;
	return (x->line > y->line) - (x->line < y->line);
}

/*
 * The bind lines of `h` that this process can judge, in line order: well formed ("bind
 * <ns> /<path>") and of this mount namespace. Another namespace's mounts are not ours to
 * judge; neither is any line when this namespace cannot be told, or when there is no memory
 * to hold the checks (none is returned: every bind line is kept).
 */
static struct bind_check *binds_to_check(const struct fs_holders *h, size_t *ret_n)
{
	struct bind_check *b = NULL;
	size_t n = 0, cap = 0;
	unsigned long long mine = 0;
	int ns_r = 1; /* 1: not looked up yet */
	*ret_n = 0;
	for (size_t k = 0; k < h->n; k++) {
		const char *line = h->v[k];
		if (!cm_str_has_prefix(line, "bind "))
			continue;
		char *end;
		unsigned long long ns = strtoull(line + 5, &end, 10);
		if (end == line + 5 || *end != ' ' || end[1] != '/')
			continue;
		if (ns_r == 1)
			ns_r = fs_holder_mntns(&mine);
		if (ns_r < 0) {
			free(b);
			return NULL;
		}
		if (ns != mine)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 8;
			struct bind_check *nb = realloc(b, cap * sizeof(*b));
			if (!nb) {
				free(b);
				return NULL;
			}
			b = nb;
		}
		b[n++] = (struct bind_check){.path = end + 1, .line = k};
	}
	*ret_n = n;
	return b;
}

/*
 * Sets b[].held from one read of /proc/self/mountinfo: each mount is looked up among the
 * paths (sorted), and counted for every check of its path. When mountinfo cannot be read
 * through, whether a bind is mounted cannot be told: all are held.
 */
static void binds_look(const char *hex, struct bind_check *b, size_t n)
{
	qsort(b, n, sizeof(*b), check_cmp_path_line);
	bool known = false;
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (f) {
		_cleanup_free_ char *line = NULL;
		size_t cap = 0;
		while (getline(&line, &cap, f) > 0) {
			char mp[PATH_MAX], mhex[65];
			if (!mountinfo_line(line, mp, mhex))
				continue;
			struct bind_check key = {.path = mp};
			struct bind_check *c = bsearch(&key, b, n, sizeof(*b), check_cmp_path);
			if (!c)
				continue;
			while (c > b && !strcmp(c[-1].path, mp))
				c--;
			bool image = !strcmp(mhex, hex);
			for (; c < b + n && !strcmp(c->path, mp); c++) {
				c->mounts++;
				if (image)
					c->last = c->mounts;
			}
		}
		known = feof(f) && !ferror(f);
	}
	for (size_t k = 0; k < n; k++)
		b[k].held = !known || (b[k].last && b[k].mounts - b[k].last < BIND_MOUNTS_SEEN);
	qsort(b, n, sizeof(*b), check_cmp_line);
}

/* Whether the "dir" holder `line` is certainly gone. */
static bool dir_gone(const char *line)
{
	struct stat st;
	if (cm_str_has_prefix(line, "dir /"))
		return lstat(line + 4, &st) < 0 && errno == ENOENT;
	return false;
}

/*
 * "dir" lines are looked up one by one; the "bind" lines of this namespace are checked
 * together against one read of mountinfo (none when there is no such line); any other line
 * is kept.
 */
size_t fs_holders_audit(const char *hex, struct fs_holders *h)
{
	size_t nb = 0;
	_cleanup_free_ struct bind_check *b = binds_to_check(h, &nb);
	if (nb)
		binds_look(hex, b, nb);
	size_t dropped = 0, kept = 0, c = 0;
	for (size_t k = 0; k < h->n; k++) {
		bool gone;
		if (c < nb && b[c].line == k)
			gone = !b[c++].held;
		else
			gone = dir_gone(h->v[k]);
		if (!gone) {
			h->v[kept++] = h->v[k];
			continue;
		}
		log_warn("mount of sha256:%.12s: dropping the reference of a holder that is "
			 "gone (%s)",
			 hex, h->v[k]);
		free(h->v[k]);
		dropped++;
	}
	h->n = kept;
	return dropped;
}
