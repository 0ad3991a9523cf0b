/*
 * The lower-dir reference hook (struct run_image_ops) through the runner library, on real
 * sandboxes: a reference is held exactly while a sandbox runs (create/start acquire, stop
 * and rm of a running sandbox release), the key given at create comes back, a failing
 * acquire fails the boot cleanly, and the ids of the sandbox follow the reference.
 *
 * usage: runner-image-ops ROOTFS   (root; exits 77 otherwise)
 */
#include "runner/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *rootfs;
static int refs, acquires, releases, last_keep_warm = -2;
static bool fail_next;

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);               \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static int acquire(void *ud, const char *key, const char *holder, char **ret)
{
	CHECK(!strcmp(key, "registry.example/busybox@sha256:1234"));
	CHECK(holder && holder[0] && access(holder, F_OK) == 0); /* the sandbox's directory */
	CHECK(ud == &refs);
	if (fail_next) {
		fail_next = false;
		return -EHOSTUNREACH;
	}
	acquires++;
	refs++;
	*ret = strdup(rootfs);
	return *ret ? 0 : -ENOMEM;
}

static void release(void *ud, const char *key, const char *holder, int keep_warm_s)
{
	last_keep_warm = keep_warm_s;
	CHECK(!strcmp(key, "registry.example/busybox@sha256:1234"));
	CHECK(holder && access(holder, F_OK) == 0);
	releases++;
	refs--;
	CHECK(refs >= 0);
}

static int run_true(struct run_ctx *ctx, const char *id)
{
	const char *argv[] = {"/bin/true", NULL};
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	struct run_exec_opts o = {
	    .argv = argv, .stdin_fd = -1, .stdout_fd = null, .stderr_fd = null, .signal_fd = -1};
	struct run_exec_result r;
	int e = run_sandbox_exec(ctx, id, &o, &r);
	close(null);
	return e < 0 ? e : run_exec_status(&r);
}

int main(int argc, char **argv)
{
	if (geteuid() != 0) {
		printf("SKIP: needs root\n");
		return 77;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: runner-image-ops ROOTFS\n");
		return 2;
	}
	rootfs = argv[1];
	struct run_ctx *ctx;
	CHECK(run_ctx_new(NULL, &ctx) == 0);
	struct run_image_ops ops = {.acquire = acquire, .release = release, .userdata = &refs};
	run_ctx_set_image_ops(ctx, &ops);
	struct run_create_opts o = {.image_key = "registry.example/busybox@sha256:1234",
				    .keep_warm_set = true,
				    .keep_warm_s = 7};
	char *id = NULL;

	CHECK(run_sandbox_create(ctx, &o, &id) == 0);
	CHECK(refs == 1 && acquires == 1);
	CHECK(run_true(ctx, id) == 0);

	struct run_sandbox_info *v;
	size_t n;
	CHECK(run_sandbox_list(ctx, &v, &n) == 0);
	CHECK(n == 1 && v[0].image_key && !strcmp(v[0].image_key, o.image_key));
	CHECK(v[0].lower_dir == NULL && v[0].status == RUN_STATUS_RUNNING);
	run_sandbox_info_free(v, n);

	CHECK(run_sandbox_stop(ctx, id, 1000) == 0);
	CHECK(refs == 0 && releases == 1);
	CHECK(last_keep_warm == 7); /* the sandbox's keep-warm delay, from its config */
	CHECK(run_sandbox_stop(ctx, id, 1000) == 0); /* idempotent, no double release */
	CHECK(refs == 0 && releases == 1);

	fail_next = true; /* the image cannot be mounted: start fails, nothing held */
	CHECK(run_sandbox_start(ctx, id) == -EHOSTUNREACH);
	CHECK(refs == 0);

	CHECK(run_sandbox_start(ctx, id) == 0);
	CHECK(refs == 1 && acquires == 2);
	CHECK(run_true(ctx, id) == 0);
	CHECK(run_sandbox_start(ctx, id) == -EBUSY);
	CHECK(refs == 1);

	CHECK(run_sandbox_remove(ctx, id, false) == -EBUSY);
	CHECK(run_sandbox_remove(ctx, id, true) == 0);
	CHECK(refs == 0 && releases == 2);
	free(id);
	/* without one: the mount's own (-1) */
	struct run_create_opts plain = {.image_key = o.image_key};
	CHECK(run_sandbox_create(ctx, &plain, &id) == 0);
	CHECK(run_sandbox_remove(ctx, id, true) == 0);
	CHECK(refs == 0 && releases == 3 && last_keep_warm == -1);
	free(id);

	/* a failing acquire at create leaves no sandbox behind */
	fail_next = true;
	CHECK(run_sandbox_create(ctx, &o, &id) == -EHOSTUNREACH);
	CHECK(run_sandbox_list(ctx, &v, &n) == 0);
	CHECK(n == 0);
	run_sandbox_info_free(v, n);

	/* an image key without image ops cannot be booted */
	run_ctx_set_image_ops(ctx, NULL);
	CHECK(run_sandbox_create(ctx, &o, &id) == -EINVAL);
	run_ctx_free(ctx);
	printf("image ops: %d acquires, %d releases, all checks passed\n", acquires, releases);
	return 0;
}
