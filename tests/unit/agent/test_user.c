/*
 * The agent's user and group resolution (agent/src/user.c) over an image's /etc/passwd and
 * /etc/group: names, numeric ids, "user:group", supplementary groups, and what the image
 * gets wrong (malformed lines, unknown names, missing files, oversized member lists).
 */
#include "agent.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char PASSWD[] = "root:x:0:0:root:/root:/bin/bash\n"
			     "# a comment line is malformed and skipped\n"
			     "broken:x:12\n"
			     "bad:x:abc:1::/bad:/bin/sh\n"
			     "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
			     "app:x:1000:1000::/home/app:/bin/sh\n"
			     "nohome:x:1001:1001:::/bin/sh";
static const char GROUP[] = "root:x:0:\n"
			    "staff:x:50:app,root\n"
			    "bad:x:zz:app\n"
			    "audio:x:29:nobody,app\n"
			    "app:x:1000:\n";

/* Resolve `spec` over copies of the two files (NULL: no such file). */
static int resolve(const char *spec, const char *pw, const char *gr, struct agent_user *u,
		   const char **err)
{
	char *p = pw ? strdup(pw) : NULL, *g = gr ? strdup(gr) : NULL;
	*err = NULL;
	int r = agent_user_resolve_db(spec, p, g, u, err);
	free(p);
	free(g);
	return r;
}

static void test_names_and_ids(void **state)
{
	(void)state;
	struct agent_user u;
	const char *err;

	/* the default user is root, with root's home and root's supplementary groups */
	assert_int_equal(resolve("", PASSWD, GROUP, &u, &err), 0);
	assert_int_equal(u.uid, 0);
	assert_int_equal(u.gid, 0);
	assert_string_equal(u.home, "/root");
	assert_int_equal(u.ngroups, 2); /* staff lists root; group root lists no member */
	assert_int_equal(u.groups[0], 50);
	assert_int_equal(u.groups[1], 0);

	/* a name: its ids, its home, the groups that list it (malformed lines skipped) */
	assert_int_equal(resolve("app", PASSWD, GROUP, &u, &err), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 1000);
	assert_string_equal(u.home, "/home/app");
	assert_int_equal(u.ngroups, 3);
	assert_int_equal(u.groups[0], 50);
	assert_int_equal(u.groups[1], 29);
	assert_int_equal(u.groups[2], 1000);

	/* a known uid is that user */
	assert_int_equal(resolve("1000", PASSWD, GROUP, &u, &err), 0);
	assert_int_equal(u.gid, 1000);
	assert_string_equal(u.home, "/home/app");
	assert_int_equal(u.ngroups, 3);

	/* an unknown uid is allowed: gid 0, HOME=/, no supplementary groups */
	assert_int_equal(resolve("4242", PASSWD, GROUP, &u, &err), 0);
	assert_int_equal(u.uid, 4242);
	assert_int_equal(u.gid, 0);
	assert_string_equal(u.home, "/");
	assert_int_equal(u.ngroups, 1);

	/* an empty home field leaves HOME=/ */
	assert_int_equal(resolve("nohome", PASSWD, GROUP, &u, &err), 0);
	assert_int_equal(u.uid, 1001);
	assert_string_equal(u.home, "/");
}

static void test_groups(void **state)
{
	(void)state;
	struct agent_user u;
	const char *err;

	assert_int_equal(resolve("app:staff", PASSWD, GROUP, &u, &err), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 50);
	assert_int_equal(u.groups[u.ngroups - 1], 50);

	assert_int_equal(resolve("app:77", PASSWD, GROUP, &u, &err), 0);
	assert_int_equal(u.gid, 77);

	assert_int_equal(resolve("4242:4343", PASSWD, GROUP, &u, &err), 0);
	assert_int_equal(u.uid, 4242);
	assert_int_equal(u.gid, 4343);
	assert_int_equal(u.ngroups, 1);

	assert_int_equal(resolve("app:nosuch", PASSWD, GROUP, &u, &err), -ENOENT);
	assert_string_equal(err, "no such group 'nosuch' in the image's /etc/group");
	/* a group line with a malformed gid is skipped, also when named */
	assert_int_equal(resolve("app:bad", PASSWD, GROUP, &u, &err), -ENOENT);
}

static void test_refused(void **state)
{
	(void)state;
	struct agent_user u;
	const char *err;

	assert_int_equal(resolve("ghost", PASSWD, GROUP, &u, &err), -ENOENT);
	assert_string_equal(err, "no such user 'ghost' in the image's /etc/passwd");
	/* a malformed line does not make its name a user */
	assert_int_equal(resolve("bad", PASSWD, GROUP, &u, &err), -ENOENT);
	assert_int_equal(resolve("broken", PASSWD, GROUP, &u, &err), -ENOENT);
	/* (uid_t)-1 is not an id: taken as a name */
	assert_int_equal(resolve("4294967295", PASSWD, GROUP, &u, &err), -ENOENT);
	assert_int_equal(resolve("99999999999999999999", PASSWD, GROUP, &u, &err), -ENOENT);

	char spec[AGENT_MAX_USER + 8];
	memset(spec, 'a', sizeof(spec) - 1);
	spec[sizeof(spec) - 1] = 0;
	assert_int_equal(resolve(spec, PASSWD, GROUP, &u, &err), -EINVAL);
	assert_string_equal(err, "user spec too long");
}

static void test_missing_files(void **state)
{
	(void)state;
	struct agent_user u;
	const char *err;

	/* an image without the files: numeric ids work, names do not */
	assert_int_equal(resolve("", NULL, NULL, &u, &err), 0);
	assert_int_equal(u.uid, 0);
	assert_int_equal(u.ngroups, 1);
	assert_int_equal(resolve("123:456", NULL, NULL, &u, &err), 0);
	assert_int_equal(u.gid, 456);
	assert_int_equal(resolve("app", NULL, GROUP, &u, &err), -ENOENT);
	assert_int_equal(resolve("0:staff", PASSWD, NULL, &u, &err), -ENOENT);
}

/* A user listed in more groups than setgroups takes: the list is cut, the primary group
 * keeps the last slot. */
static void test_many_groups(void **state)
{
	(void)state;
	size_t cap = (AGENT_MAX_GROUPS + 50) * 32;
	char *gr = malloc(cap), *p = gr;
	assert_non_null(gr);
	for (int i = 0; i < AGENT_MAX_GROUPS + 50; i++)
		p += snprintf(p, cap - (size_t)(p - gr), "g%d:x:%d:app\n", i, 2000 + i);
	struct agent_user u;
	const char *err;
	assert_int_equal(resolve("app", PASSWD, gr, &u, &err), 0);
	free(gr);
	assert_int_equal(u.ngroups, AGENT_MAX_GROUPS);
	assert_int_equal(u.groups[0], 2000);
	assert_int_equal(u.groups[AGENT_MAX_GROUPS - 2], 2000 + AGENT_MAX_GROUPS - 2);
	assert_int_equal(u.groups[AGENT_MAX_GROUPS - 1], 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names_and_ids),
	    cmocka_unit_test(test_groups),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_missing_files),
	    cmocka_unit_test(test_many_groups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
