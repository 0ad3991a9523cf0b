/*
 * Runner pieces that need no privileges: the OCI image config parser (real configs,
 * malformed ones, the size cap), the exit-status convention, and the state root (empty
 * listing, id prefix resolution, refusing ids that are not ours).
 */
#include "runner/runner.h"

#include "agent/protocol.h"

#include <errno.h>
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

static void test_config_parse(void **state)
{
	static const char docker[] =
	    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
	    "\"Env\":[\"PATH=/usr/local/bin:/usr/bin\",\"LANG=C.UTF-8\"],"
	    "\"Entrypoint\":[\"/docker-entrypoint.sh\"],\"Cmd\":[\"nginx\"],"
	    "\"WorkingDir\":\"/srv\",\"User\":\"101:101\",\"Labels\":{\"a\":\"b\"}},"
	    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
	struct run_config *c = NULL;
	assert_int_equal(run_config_parse(docker, strlen(docker), &c), 0);
	assert_non_null(c->env);
	assert_string_equal(c->env[0], "PATH=/usr/local/bin:/usr/bin");
	assert_string_equal(c->env[1], "LANG=C.UTF-8");
	assert_null(c->env[2]);
	assert_string_equal(c->working_dir, "/srv");
	assert_string_equal(c->user, "101:101");
	run_config_free(c);

	/* a bare config object; absent and null fields */
	static const char bare[] = "{\"Env\":null,\"WorkingDir\":null}";
	assert_int_equal(run_config_parse(bare, strlen(bare), &c), 0);
	assert_null(c->env);
	assert_null(c->working_dir);
	assert_null(c->user);
	run_config_free(c);
	run_config_free(NULL);

	static const char *const bad[] = {
	    "",
	    "[]",
	    "{\"config\":{\"Env\":\"PATH=/bin\"}}",
	    "{\"config\":{\"Env\":[1,2]}}",
	    "{\"config\":{\"User\":7}}",
	    "{\"config\":{\"Env\":[\"A=b\"]",
	    "{\"config\":{}} trailing",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(run_config_parse(bad[i], strlen(bad[i]), &c), -EPROTO);

	size_t n = (1u << 20) + 1;
	char *huge = malloc(n);
	memset(huge, ' ', n);
	assert_int_equal(run_config_parse(huge, n, &c), -EFBIG);
	free(huge);
}

static void test_exit_status(void **state)
{
	struct run_exec_result r = {.kind = RUN_EXEC_EXITED, .code = 3};
	assert_int_equal(run_exec_status(&r), 3);
	r = (struct run_exec_result){.kind = RUN_EXEC_SIGNALED, .code = 9};
	assert_int_equal(run_exec_status(&r), 137);
	r.timed_out = true;
	assert_int_equal(run_exec_status(&r), 124);
	r = (struct run_exec_result){
	    .kind = RUN_EXEC_FAILED, .code = ENOENT, .stage = AGENT_STAGE_EXEC};
	assert_int_equal(run_exec_status(&r), 127);
	r.code = EACCES;
	assert_int_equal(run_exec_status(&r), 126);
	r = (struct run_exec_result){
	    .kind = RUN_EXEC_FAILED, .code = ENOENT, .stage = AGENT_STAGE_CWD};
	assert_int_equal(run_exec_status(&r), 126); /* a missing cwd is not "command not found" */
}

static void test_state_root(void **state)
{
	char root[] = "/tmp/isorun-runner-test.XXXXXX";
	assert_non_null(mkdtemp(root));
	struct run_ctx *ctx = NULL;
	assert_int_equal(run_ctx_new(root, &ctx), 0);
	char sb[128];
	snprintf(sb, sizeof(sb), "%s/sandboxes", root);
	struct stat st;
	assert_int_equal(stat(sb, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	struct run_sandbox_info *v = NULL;
	size_t n = 99;
	assert_int_equal(run_sandbox_list(ctx, &v, &n), 0);
	assert_int_equal(n, 0);
	run_sandbox_info_free(v, n);

	/* directories that are not sandbox ids are ignored, prefixes resolve uniquely */
	char p[256];
	snprintf(p, sizeof(p), "%s/not-an-id", sb);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/0123456789abcdef", sb);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/0123456789abcdee", sb);
	assert_int_equal(mkdir(p, 0700), 0);
	char *id = NULL;
	assert_int_equal(run_sandbox_resolve(ctx, "0123", &id), -EEXIST);
	assert_int_equal(run_sandbox_resolve(ctx, "0123456789abcdef", &id), 0);
	assert_string_equal(id, "0123456789abcdef");
	free(id);
	assert_int_equal(run_sandbox_resolve(ctx, "not", &id), -ENOENT);
	assert_int_equal(run_sandbox_resolve(ctx, "", &id), -ENOENT);
	/* half-created sandboxes (no config.json) are skipped by the listing */
	assert_int_equal(run_sandbox_list(ctx, &v, &n), 0);
	assert_int_equal(n, 0);
	run_sandbox_info_free(v, n);
	/* operations on ids that do not exist or are not ids */
	assert_int_equal(run_sandbox_stop(ctx, "../../etc", 0), -ENOENT);
	assert_int_equal(run_sandbox_remove(ctx, "ffffffffffffffff", true), -ENOENT);
	struct run_client *c = NULL;
	assert_int_equal(run_client_connect(ctx, "0123456789abcdef", &c), -ENOENT);

	/* create validates its options before touching anything */
	struct run_create_opts o = {.lower_dir = "relative/dir"};
	assert_int_equal(run_sandbox_create(ctx, &o, &id), -EINVAL);
	o = (struct run_create_opts){.backend = "kvm", .lower_dir = "/"};
	assert_int_equal(run_sandbox_create(ctx, &o, &id), -EINVAL);
	o = (struct run_create_opts){0};
	assert_int_equal(run_sandbox_create(ctx, &o, &id), -EINVAL);

	run_ctx_free(ctx);
	run_ctx_free(NULL);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_parse),
	    cmocka_unit_test(test_exit_status),
	    cmocka_unit_test(test_state_root),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
