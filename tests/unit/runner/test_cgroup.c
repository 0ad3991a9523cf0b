/*
 * cgroup v1 and v2 handling against fake hierarchies ($ISORUN_CGROUP_ROOT): detection,
 * which groups exist for which limits, the values written, attach, removal. The machines
 * here run v1 (exercised for real by the integration tests); v2 is covered only here.
 * Each case runs in a child process because the detected mode is cached per process.
 */
#include "sandbox.h"

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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char root[] = "/tmp/isorun-cgroup-test.XXXXXX";

static void put(const char *rel, const char *content)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	FILE *f = fopen(p, "w");
	if (!f) {
		fprintf(stderr, "fopen %s: %s\n", p, strerror(errno));
		_exit(1);
	}
	fputs(content, f);
	fclose(f);
}

static char *get(const char *rel)
{
	static char buf[256];
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	FILE *f = fopen(p, "r");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static bool exists(const char *rel)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return access(p, F_OK) == 0;
}

static void mkd(const char *rel)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	if (mkdir(p, 0755) < 0) {
		fprintf(stderr, "mkdir %s: %s\n", p, strerror(errno));
		_exit(1);
	}
}

/* Run fn in a child; the test fails if the child does. */
static void in_child(void (*fn)(void))
{
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		fn();
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(p, &st, 0), p);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c);                    \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

static void v2_case(void)
{
	/* a fake v2 root */
	put("cgroup.controllers", "cpuset cpu io memory pids\n");
	struct run_cgroup_limits none = {0};
	CHECK(run_cgroup_create("aaaa", &none) == 0);
	CHECK(!exists("isorun/aaaa")); /* no limits: no group */
	CHECK(run_cgroup_join("aaaa", &none) == 0);

	mkd("isorun");
	put("isorun/cgroup.subtree_control", "");
	struct run_cgroup_limits l = {.memory_bytes = 64 << 20, .cpu_millis = 1500, .pids_max = 32};
	/* files the kernel would provide */
	mkd("isorun/bbbb");
	put("isorun/bbbb/memory.max", "max");
	put("isorun/bbbb/memory.swap.max", "max");
	put("isorun/bbbb/pids.max", "max");
	put("isorun/bbbb/cpu.max", "max 100000");
	put("isorun/bbbb/cgroup.procs", "");
	CHECK(run_cgroup_create("bbbb", &l) == 0);
	CHECK(!strcmp(get("isorun/bbbb/memory.max"), "67108864"));
	CHECK(!strcmp(get("isorun/bbbb/memory.swap.max"), "0"));
	CHECK(!strcmp(get("isorun/bbbb/pids.max"), "32"));
	CHECK(!strcmp(get("isorun/bbbb/cpu.max"), "150000 100000"));
	CHECK(!strcmp(get("isorun/cgroup.subtree_control"), "+memory +pids +cpu"));
	CHECK(run_cgroup_attach("bbbb", &l, 4242) == 0);
	CHECK(!strcmp(get("isorun/bbbb/cgroup.procs"), "4242"));
	put("isorun/bbbb/memory.current", "123456\n");
	CHECK(run_cgroup_memory_usage("bbbb") == 123456);
}

static void v1_case(void)
{
	mkd("memory");
	mkd("pids");
	mkd("cpu");
	put("memory/memory.limit_in_bytes", "9223372036854771712");
	struct run_cgroup_limits mem = {.memory_bytes = 32 << 20};
	/* fake the kernel's files: a plain mkdir makes the group, the test pre-creates the
	 * files a cgroupfs would show inside it */
	CHECK(run_cgroup_create("cccc", &mem) < 0); /* no limit file in a plain dir */
	put("memory/isorun/cccc/memory.limit_in_bytes", "");
	put("memory/isorun/cccc/memory.memsw.limit_in_bytes", "");
	put("memory/isorun/cccc/memory.swappiness", "");
	put("memory/isorun/cccc/cgroup.procs", "");
	CHECK(run_cgroup_create("cccc", &mem) == 0);
	CHECK(!strcmp(get("memory/isorun/cccc/memory.limit_in_bytes"), "33554432"));
	CHECK(!strcmp(get("memory/isorun/cccc/memory.memsw.limit_in_bytes"), "33554432"));
	CHECK(!strcmp(get("memory/isorun/cccc/memory.swappiness"), "0"));
	CHECK(!exists("pids/isorun/cccc")); /* only the controllers with a limit */
	CHECK(!exists("cpu/isorun/cccc"));
	CHECK(run_cgroup_attach("cccc", &mem, 77) == 0);
	CHECK(!strcmp(get("memory/isorun/cccc/cgroup.procs"), "77"));
	/* removal of an empty group; absent ones are fine */
	struct run_cgroup_limits none = {0};
	CHECK(run_cgroup_create("dddd", &none) == 0);
	mkd("pids/isorun");
	mkd("pids/isorun/dddd");
	CHECK(run_cgroup_destroy("dddd") == 0);
	CHECK(!exists("pids/isorun/dddd"));
}

static void none_case(void)
{
	struct run_cgroup_limits none = {0}, mem = {.memory_bytes = 1 << 20};
	CHECK(run_cgroup_create("eeee", &none) == 0);
	CHECK(run_cgroup_create("eeee", &mem) == -EOPNOTSUPP);
	CHECK(run_cgroup_memory_usage("eeee") == 0);
}

static int setup(void **state)
{
	if (!mkdtemp(root))
		return -1;
	setenv("ISORUN_CGROUP_ROOT", root, 1);
	setenv("ISORUN_LOG", "error", 1);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void clean(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s/*", root);
	assert_int_equal(system(cmd), 0);
}

static void test_v2(void **state)
{
	clean();
	in_child(v2_case);
}

static void test_v1(void **state)
{
	clean();
	in_child(v1_case);
}

static void test_none(void **state)
{
	clean();
	in_child(none_case);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v2),
	    cmocka_unit_test(test_v1),
	    cmocka_unit_test(test_none),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
