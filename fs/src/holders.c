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

static int push(struct fs_holders *h, const char *s, size_t len)
{
	return fs_strv_push(&h->v, &h->n, strndup(s, len));
}

int fs_holders_parse(const char *data, size_t len, struct fs_holders *h)
{
	*h = (struct fs_holders){0};
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
		if (fs_holders_has(h, s, n))
			continue;
		int r = push(h, s, n);
		if (r < 0) {
			fs_holders_free(h);
			return r;
		}
	}
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
	return push(h, line, strlen(line));
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

int fs_mounts_at(const char *path, char (*hex)[65], size_t max)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, n = 0;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
		char mp[PATH_MAX], fstype[64], source[128], un[PATH_MAX];
		char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
		    sscanf(sep + 3, "%63s %127s", fstype, source) != 2)
			continue;
		fs_mountinfo_unescape(mp, un, sizeof(un));
		if (strcmp(un, path) != 0 || !max)
			continue;
		if (n == max) { /* keep the last ones: the visible mount is the last */
			memmove(hex, hex + 1, (max - 1) * sizeof(*hex));
			n--;
		}
		hex[n][0] = 0;
		if (!strcmp(fstype, "fuse.isorun") && cm_str_has_prefix(source, "isorun:") &&
		    strlen(source) == 7 + 64)
			memcpy(hex[n], source + 7, 65);
		n++;
	}
	return (int)n;
}

/* Whether `path` (absolute) is an isorun mount of `hex` in this mount namespace. */
static bool bind_is_mounted(const char *hex, const char *path)
{
	char v[16][65];
	int n = fs_mounts_at(path, v, 16);
	if (n < 0)
		return true; /* cannot tell: keep it */
	for (int i = 0; i < n; i++)
		if (!strcmp(v[i], hex))
			return true;
	return false;
}

int fs_holder_mntns(unsigned long long *ret)
{
	struct stat st;
	if (stat("/proc/self/ns/mnt", &st) < 0)
		return -errno;
	*ret = (unsigned long long)st.st_ino;
	return 0;
}

/* Whether the holder `line` is certainly gone. */
static bool holder_gone(const char *hex, const char *line)
{
	struct stat st;
	if (cm_str_has_prefix(line, "dir /"))
		return lstat(line + 4, &st) < 0 && errno == ENOENT;
	if (cm_str_has_prefix(line, "bind ")) {
		char *end;
		unsigned long long ns = strtoull(line + 5, &end, 10), mine = 0;
		if (end == line + 5 || *end != ' ' || end[1] != '/')
			return false;
		if (fs_holder_mntns(&mine) < 0 || mine != ns)
			return false; /* another namespace's mount: not ours to judge */
		return !bind_is_mounted(hex, end + 1);
	}
	return false;
}

size_t fs_holders_audit(const char *hex, struct fs_holders *h)
{
	size_t dropped = 0;
	for (size_t k = 0; k < h->n;) {
		if (holder_gone(hex, h->v[k])) {
			log_warn("mount of sha256:%.12s: dropping the reference of a holder that is "
				 "gone (%s)",
				 hex, h->v[k]);
			free(h->v[k]);
			memmove(h->v + k, h->v + k + 1, (h->n - k - 1) * sizeof(*h->v));
			h->n--;
			dropped++;
		} else {
			k++;
		}
	}
	return dropped;
}
