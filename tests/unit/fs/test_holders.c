/*
 * The holders file of a shared mount (fs/src/holders.c): parsing (named holders, counts of
 * older releases, padding, junk), the in-place rewrite, and the audit that drops holders
 * that are gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "idx_testlib.h"

#include "fs_int.h"

#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static void test_audit(void **state)
{
	(void)state;
	char *dir = tl_mkdtemp("isorun-holders");
	assert_non_null(dir);
	unsigned long long ns;
	assert_int_equal(fs_holder_mntns(&ns), 0);
	char *live = cm_strdupf("dir %s", dir);
	char *gone = cm_strdupf("dir %s/removed", dir);
	char *unmounted = cm_strdupf("bind %llu %s", ns, dir); /* not a mount of the image */
	char *other_ns = cm_strdupf("bind %llu %s/elsewhere", ns + 1, dir);
	struct fs_holders h = {0};
	assert_int_equal(fs_holders_add(&h, live), 0);
	assert_int_equal(fs_holders_add(&h, gone), 0);
	assert_int_equal(fs_holders_add(&h, unmounted), 0);
	assert_int_equal(fs_holders_add(&h, other_ns), 0);
	assert_int_equal(fs_holders_add(&h, "future kind"), 0);
	assert_int_equal(fs_holders_add(&h, "dir relative/path"), 0);
	h.anon = 2;
	const char hex[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_int_equal(fs_holders_audit(hex, &h), 2);
	assert_int_equal(h.n, 4);
	assert_string_equal(h.v[0], live);
	assert_string_equal(h.v[1], other_ns); /* another namespace: not judged */
	assert_string_equal(h.v[2], "future kind");
	assert_string_equal(h.v[3], "dir relative/path"); /* not a path it can judge */
	assert_int_equal(h.anon, 2);			    /* counts are never audited */
	fs_holders_free(&h);
	free(live);
	free(gone);
	free(unmounted);
	free(other_ns);
	tl_rm_rf(dir);
	free(dir);
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
	    cmocka_unit_test(test_store_in_place),
	    cmocka_unit_test(test_audit),
	    cmocka_unit_test(test_mountinfo_unescape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
