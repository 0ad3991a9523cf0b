/*
 * The holders file of a shared mount (fs/src/holders.c): parsing (named holders, counts of
 * older releases, padding, junk, many repeated lines), the in-place rewrite, and the audit
 * that drops holders that are gone (bind lines against one read of mountinfo, checked
 * against real isorun-typed mounts in a private mount namespace when the test may make one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "idx_testlib.h"

#include "fs_int.h"

#include "common/util.h"

#include "common/buf.h"
#include "common/cleanup.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Opens of /proc/self/mountinfo. This fopen takes the place of libc's for the code under
 * test (linked into this executable) and hands on to the next one (libc's, or a sanitizer's).
 */
static unsigned mountinfo_opens;

FILE *fopen(const char *path, const char *mode)
{
	static FILE *(*next)(const char *, const char *);
	if (!next)
		next = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen");
	if (!next) {
		errno = ENOSYS;
		return NULL;
	}
	if (path && !strcmp(path, "/proc/self/mountinfo"))
		mountinfo_opens++;
	return next(path, mode);
}

static char *slurp(const char *path)
{
	static char buf[4096];
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	buf[n] = 0;
	close(fd);
	return buf;
}

static void test_parse(void **state)
{
	(void)state;
	struct fs_holders h;
	const char in[] = "2\ndir /a/b\n\n\nbind 4026531841 /mnt/x\ndir /a/b\nfuture kind\n"
			  "99999999999\n  \ndir /c";
	assert_int_equal(fs_holders_parse(in, sizeof(in) - 1, &h), 0);
	assert_int_equal(h.anon, 2);		/* an older release's count */
	assert_int_equal(h.n, 4);		/* the duplicate once, an unknown kind kept */
	assert_int_equal(fs_holders_count(&h), 6);
	assert_string_equal(h.v[0], "dir /a/b");
	assert_string_equal(h.v[2], "future kind");
	assert_string_equal(h.v[3], "dir /c"); /* the last line without its newline */
	assert_true(fs_holders_has(&h, "dir /a/b", 8));
	assert_false(fs_holders_has(&h, "dir /a", 6));
	assert_true(fs_holders_remove(&h, "dir /a/b"));
	assert_false(fs_holders_remove(&h, "dir /a/b"));
	assert_int_equal(fs_holders_add(&h, "dir /c"), 0); /* already there: no second one */
	assert_int_equal(h.n, 3);
	fs_holders_free(&h);

	/* NULs inside a line make it nothing; an empty file is no holder. */
	const char nul[] = "dir /x\0y\n3\n";
	assert_int_equal(fs_holders_parse(nul, sizeof(nul) - 1, &h), 0);
	assert_int_equal(h.n, 0);
	assert_int_equal(h.anon, 3);
	fs_holders_free(&h);
	assert_int_equal(fs_holders_parse("", 0, &h), 0);
	assert_int_equal(fs_holders_count(&h), 0);
	fs_holders_free(&h);
}

/* 2,000 lines naming 500 holders of three kinds, repeated in a scrambled order, with counts
 * and padding among them: each holder once, where it first stands. */
static void test_parse_many(void **state)
{
	(void)state;
	enum { LINES = 2000, HOLDERS = 500 };
	static char want[HOLDERS][48];
	bool seen[HOLDERS] = {0};
	size_t nwant = 0;
	struct cm_buf in, out, expect;
	cm_buf_init(&in, 1 << 20);
	cm_buf_init(&out, 1 << 20);
	cm_buf_init(&expect, 1 << 20);
	unsigned x = 12345, anon = 0;
	for (unsigned i = 0; i < LINES; i++) {
		x = x * 1103515245u + 12345u;
		unsigned id = (x >> 8) % HOLDERS;
		char line[48];
		if (id % 3 == 0)
			snprintf(line, sizeof(line), "dir /sandbox/%u", id);
		else if (id % 3 == 1)
			snprintf(line, sizeof(line), "bind 4026531841 /mnt/%u", id);
		else
			snprintf(line, sizeof(line), "future %u", id);
		if (i % 100 == 0) {
			assert_int_equal(cm_buf_printf(&in, "7\n\n  \n"), 0);
			anon += 7;
		}
		/* trailing blanks are not part of the line: still the same holder */
		assert_int_equal(cm_buf_printf(&in, "%s%s\n", line, i % 7 ? "" : " \r"), 0);
		if (!seen[id]) {
			seen[id] = true;
			memcpy(want[nwant++], line, sizeof(line));
		}
	}
	struct fs_holders h;
	assert_int_equal(fs_holders_parse((const char *)in.data, in.len, &h), 0);
	assert_int_equal(h.anon, anon);
	assert_int_equal(h.n, nwant);
	for (size_t k = 0; k < nwant; k++)
		assert_string_equal(h.v[k], want[k]);
	assert_int_equal(cm_buf_printf(&expect, "%u\n", anon), 0);
	for (size_t k = 0; k < nwant; k++)
		assert_int_equal(cm_buf_printf(&expect, "%s\n", want[k]), 0);
	assert_int_equal(fs_holders_format(&h, &out), 0);
	assert_int_equal(out.len, expect.len);
	assert_memory_equal(out.data, expect.data, out.len);
	/* what is written parses back to the same holders */
	struct fs_holders again;
	assert_int_equal(fs_holders_parse((const char *)out.data, out.len, &again), 0);
	assert_int_equal(again.n, h.n);
	assert_int_equal(fs_holders_add(&again, want[nwant / 2]), 0);
	assert_int_equal(again.n, h.n);
	assert_true(fs_holders_remove(&again, want[0]));
	assert_string_equal(again.v[0], want[1]);
	fs_holders_free(&again);
	fs_holders_free(&h);
	cm_buf_fini(&in);
	cm_buf_fini(&out);
	cm_buf_fini(&expect);
}

/* A file as large as one is read (just under 1 MiB: 70,000 holders, then the first 4,000
 * again) parses to its 70,000 holders, first-seen order kept. (No time limit here, the
 * tests assert no timings: it takes tens of milliseconds; the quadratic dedupe this replaced
 * took 22 s.) */
static void test_parse_large(void **state)
{
	(void)state;
	enum { HOLDERS = 70000, AGAIN = 4000 };
	struct cm_buf in;
	cm_buf_init(&in, 1 << 20);
	for (unsigned i = 0; i < HOLDERS + AGAIN; i++)
		assert_int_equal(cm_buf_printf(&in, "dir /s/%06u\n", i % HOLDERS), 0);
	assert_true(in.len < 1u << 20);
	struct fs_holders h;
	assert_int_equal(fs_holders_parse((const char *)in.data, in.len, &h), 0);
	assert_int_equal(h.n, HOLDERS);
	assert_string_equal(h.v[0], "dir /s/000000");
	assert_string_equal(h.v[HOLDERS - 1], "dir /s/069999");
	fs_holders_free(&h);
	cm_buf_fini(&in);
}

static void test_store_in_place(void **state)
{
	(void)state;
	char *dir = tl_mkdtemp("isorun-holders");
	assert_non_null(dir);
	char *refs = cm_strdupf("%s/refs", dir);
	struct fs_holders h;
	assert_int_equal(fs_holders_load(dir, &h), 0); /* no file: none */
	assert_int_equal(fs_holders_count(&h), 0);
	assert_int_equal(fs_holders_add(&h, "dir /some/long/sandbox/directory/0123456789"), 0);
	assert_int_equal(fs_holders_add(&h, "dir /short"), 0);
	h.anon = 1;
	assert_int_equal(fs_holders_store(dir, &h), 0);
	assert_string_equal(slurp(refs),
			    "1\ndir /some/long/sandbox/directory/0123456789\ndir /short\n");
	struct stat st;
	assert_int_equal(stat(refs, &st), 0);
	ino_t ino = st.st_ino;
	/* Shrinking rewrites the same file and cuts it. */
	assert_true(fs_holders_remove(&h, "dir /some/long/sandbox/directory/0123456789"));
	h.anon = 0;
	assert_int_equal(fs_holders_store(dir, &h), 0);
	assert_string_equal(slurp(refs), "dir /short\n");
	assert_int_equal(stat(refs, &st), 0);
	assert_int_equal(st.st_ino, ino);
	fs_holders_free(&h);
	/* What a writer killed between its write and the cut leaves reads back the same. */
	const char torn[] = "dir /short\n\n\n\n\n\n\n\n\n\n";
	int fd = open(refs, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, torn, sizeof(torn) - 1), (ssize_t)sizeof(torn) - 1);
	close(fd);
	assert_int_equal(fs_holders_load(dir, &h), 0);
	assert_int_equal(h.n, 1);
	assert_string_equal(h.v[0], "dir /short");
	fs_holders_free(&h);
	tl_rm_rf(dir);
	free(dir);
	free(refs);
}

static const char image_hex[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* Add the holder line the format gives; returns it (the caller frees). */
__attribute__((format(printf, 2, 3))) static char *add_f(struct fs_holders *h, const char *fmt, ...)
{
	va_list ap;
	char *line = NULL;
	va_start(ap, fmt);
	assert_true(vasprintf(&line, fmt, ap) >= 0);
	va_end(ap);
	assert_int_equal(fs_holders_add(h, line), 0);
	return line;
}

/* A directory to name in holder lines, and this process's mount namespace. */
static char *audit_dir(unsigned long long *ns)
{
	char *dir = tl_mkdtemp("isorun-holders");
	assert_non_null(dir);
	assert_int_equal(fs_holder_mntns(ns), 0);
	return dir;
}

static void test_audit(void **state)
{
	(void)state;
	unsigned long long ns;
	char *dir = audit_dir(&ns);
	struct fs_holders h = {0};
	char *live = add_f(&h, "dir %s", dir);
	char *gone = add_f(&h, "dir %s/removed", dir);
	char *unmounted = add_f(&h, "bind %llu %s", ns, dir); /* not a mount of the image */
	char *other_ns = add_f(&h, "bind %llu %s/elsewhere", ns + 1, dir);
	assert_int_equal(fs_holders_add(&h, "future kind"), 0);
	assert_int_equal(fs_holders_add(&h, "dir relative/path"), 0);
	h.anon = 2;
	assert_int_equal(fs_holders_audit(image_hex, &h), 2);
	assert_int_equal(h.n, 4);
	assert_string_equal(h.v[0], live);
	assert_string_equal(h.v[1], other_ns); /* another namespace: not judged */
	assert_string_equal(h.v[2], "future kind");
	assert_string_equal(h.v[3], "dir relative/path"); /* not a path it can judge */
	assert_int_equal(h.anon, 2);			  /* counts are never audited */
	fs_holders_free(&h);
	free(live);
	free(gone);
	free(unmounted);
	free(other_ns);
	tl_rm_rf(dir);
	free(dir);
}

/* Several bind lines of this namespace, none a mount of the image, are judged from one read
 * of mountinfo; other namespaces' and malformed ones are kept, and an audit with no bind
 * line of this namespace reads no mountinfo. */
static void test_audit_binds_once(void **state)
{
	(void)state;
	unsigned long long ns;
	char *dir = audit_dir(&ns);
	struct fs_holders h = {0};
	for (int i = 0; i < 8; i++) /* never mounts: gone */
		free(add_f(&h, "bind %llu %s/gone-%d", ns, dir, i));
	free(add_f(&h, "bind %llu /", ns)); /* a mount, not of the image */
	char *live = add_f(&h, "dir %s", dir);
	char *gone = add_f(&h, "dir %s/removed", dir);
	char *other_ns = add_f(&h, "bind %llu %s/gone-0", ns + 1, dir);
	assert_int_equal(fs_holders_add(&h, "bind x /mnt"), 0);
	assert_int_equal(fs_holders_add(&h, "bind 1 relative"), 0);
	mountinfo_opens = 0;
	assert_int_equal(fs_holders_audit(image_hex, &h), 10);
	assert_int_equal(mountinfo_opens, 1);
	assert_int_equal(h.n, 4);
	assert_string_equal(h.v[0], live);
	assert_string_equal(h.v[1], other_ns);
	assert_string_equal(h.v[2], "bind x /mnt");
	assert_string_equal(h.v[3], "bind 1 relative");
	mountinfo_opens = 0;
	assert_int_equal(fs_holders_audit(image_hex, &h), 0);
	assert_int_equal(mountinfo_opens, 0);
	fs_holders_free(&h);
	free(live);
	free(gone);
	free(other_ns);
	tl_rm_rf(dir);
	free(dir);
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* A private mount namespace (and a user namespace when not root, mapping this user to 0). */
static int private_mount_ns(void)
{
	if (unshare(CLONE_NEWNS) < 0) {
		uid_t uid = getuid();
		gid_t gid = getgid();
		char map[64];
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
			return -1;
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
		if (write_file("/proc/self/uid_map", map) < 0 ||
		    write_file("/proc/self/setgroups", "deny") < 0)
			return -1;
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
		if (write_file("/proc/self/gid_map", map) < 0)
			return -1;
	}
	return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/* A mount at `path` as mountinfo shows an isorun mount of `hex`. Its /dev/fuse is closed at
 * once: the connection is cut, so nothing waits for a daemon that is not there. */
static int isorun_mount(const char *path, const char *hex)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char src[80], opts[96];
	snprintf(src, sizeof(src), "isorun:%s", hex);
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=%u,group_id=%u", fd,
		 (unsigned)getuid(), (unsigned)getgid());
	int r = mount(src, path, "fuse.isorun", MS_RDONLY | MS_NOSUID | MS_NODEV, opts);
	close(fd);
	return r;
}

/*
 * In a child in its own mount namespace: exit 0 when the audit judged every line as
 * expected, 77 when the namespace or the mounts cannot be made, else the failed step.
 */
static int audit_mounted_child(const char *dir)
{
	static const char other_hex[] =
	    "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	enum { HELD, OTHER, STACKED, BURIED, OVER_TMPFS, NONE, N };
	static const char *const names[N] = {"held",   "other",	     "stacked",
					     "buried", "over-tmpfs", "none"};
	if (private_mount_ns() < 0)
		return 77;
	char *p[N];
	for (size_t i = 0; i < N; i++)
		if (!(p[i] = cm_strdupf("%s/%s", dir, names[i])) || mkdir(p[i], 0700) < 0)
			return 2;
	int r = isorun_mount(p[HELD], image_hex);
	r |= isorun_mount(p[OTHER], other_hex);
	r |= isorun_mount(p[STACKED], image_hex);
	r |= mount("tmpfs", p[STACKED], "tmpfs", 0, "size=4k");
	r |= isorun_mount(p[BURIED], image_hex);
	for (int i = 0; i < 16; i++)
		r |= mount("tmpfs", p[BURIED], "tmpfs", 0, "size=4k");
	r |= mount("tmpfs", p[OVER_TMPFS], "tmpfs", 0, "size=4k");
	r |= isorun_mount(p[OVER_TMPFS], image_hex);
	if (r)
		return 77;
	unsigned long long ns;
	if (fs_holder_mntns(&ns) < 0)
		return 3;
	struct fs_holders h = {0};
	char *line[N + 2];
	for (size_t i = 0; i < N; i++)
		line[i] = cm_strdupf("bind %llu %s", ns, p[i]);
	/* the same path with its namespace written another way; another namespace's line */
	line[N] = cm_strdupf("bind 0%llu %s", ns, p[HELD]);
	line[N + 1] = cm_strdupf("bind %llu %s", ns + 1, p[NONE]);
	for (size_t i = 0; i < N + 2; i++)
		if (!line[i] || fs_holders_add(&h, line[i]) < 0)
			return 4;
	mountinfo_opens = 0;
	if (fs_holders_audit(image_hex, &h) != 3) /* other, buried, none */
		return 5;
	if (mountinfo_opens != 1)
		return 6;
	const char *want[] = {line[HELD], line[STACKED], line[OVER_TMPFS], line[N], line[N + 1]};
	if (h.n != ARRAY_SIZE(want))
		return 7;
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (strcmp(h.v[i], want[i]) != 0)
			return 8;
	fs_holders_free(&h);
	for (size_t i = 0; i < N; i++)
		free(p[i]);
	for (size_t i = 0; i < N + 2; i++)
		free(line[i]);
	return 0;
}

/* Bind lines at isorun mounts of the image (alone, under a later mount, over an earlier
 * one) are held; at another image's mount, under 16 later mounts, at no mount, gone. */
static void test_audit_binds_mounted(void **state)
{
	(void)state;
	char *dir = tl_mkdtemp("isorun-holders");
	assert_non_null(dir);
	char real[PATH_MAX];
	assert_non_null(realpath(dir, real));
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(audit_mounted_child(real));
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	tl_rm_rf(dir);
	free(dir);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_mountinfo_unescape(void **state)
{
	(void)state;
	char out[64];
	fs_mountinfo_unescape("/a\\040b\\011c\\134d\\012", out, sizeof(out));
	assert_string_equal(out, "/a b\tc\\d\n");
	fs_mountinfo_unescape("/bad\\9xx\\04", out, sizeof(out));
	assert_string_equal(out, "/bad\\9xx\\04");
	fs_mountinfo_unescape("/truncated/path", out, 5);
	assert_string_equal(out, "/tru");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_parse_many),
	    cmocka_unit_test(test_parse_large),
	    cmocka_unit_test(test_store_in_place),
	    cmocka_unit_test(test_audit),
	    cmocka_unit_test(test_audit_binds_once),
	    cmocka_unit_test(test_audit_binds_mounted),
	    cmocka_unit_test(test_mountinfo_unescape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
