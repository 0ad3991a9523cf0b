/*
 * Wiring of image references into the sandbox verbs (cmd_runner_sandbox.c): `isorun
 * create/run REF` applies the pinning policy, pulls the index when the store lacks it
 * (fs_image_pull: the index artifact from the registry, or a local build), takes the image
 * config from the index, and lets the runner acquire/release the host's shared lazy mount
 * of that index as the sandbox's lower layer (fs_mount_acquire/fs_mount_release).
 * Only glue: the work is in fs/ and runner/.
 */
#include "verbs.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "fs/image.h"
#include "fs/mount.h"
#include "indexer/index.h"
#include "indexer/store.h"
#include "registry/ref.h"
#include "runner/runner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

DEFINE_CLEANUP_FUNC(struct reg_ref, reg_ref_free)

int isorun_resolve_ref(const char *ref, char **ret_image_key, char **ret_lower_dir,
		       struct run_config **ret_config);
const struct run_image_ops *isorun_image_ops(void);

/* Reference policy for create/run: pinned tags or digests only (local layouts are pinned by
 * the caller's own files). */
static int check_policy(const char *ref)
{
	if (cm_str_has_prefix(ref, "oci:") || cm_str_has_prefix(ref, "sha256:"))
		return 0;
	_cleanup_(reg_ref_freep) struct reg_ref *r = NULL;
	const char *why = NULL;
	int k = reg_ref_parse(ref, &r, &why);
	if (k < 0)
		return cm_log_ret(k, "'%s' is not an image reference: %s", ref, why ? why : "invalid");
	return reg_ref_check_policy(r, false);
}

/* The index this process has just fetched from its registry (a pull, not the store's copy):
 * the mount of that image need not wait for its own registry check (fs_mount_opts). */
static char fresh_from_registry[72];

int isorun_resolve_ref(const char *ref, char **ret_image_key, char **ret_lower_dir,
		       struct run_config **ret_config)
{
	int r = check_policy(ref);
	if (r < 0)
		return r;
	_cleanup_(idx_store_freep) struct idx_store *store = NULL;
	char digest[72];
	/* An image the store knows is found without opening store.db (half a millisecond of
	 * every warm run); the database, and a pull, only otherwise. */
	r = fs_image_lookup_fast(isorun_root(), ref, digest);
	if (r < 0 && (r = idx_store_open(isorun_root(), &store)) < 0)
		return r;
	if (store && (r = fs_image_lookup(store, ref, digest)) == 0)
		(void)idx_store_link_index(store, ref, digest); /* the next run takes the fast way */
	if (r == -ENOENT) {
		struct fs_pull_opts po = {.progress = isatty(STDERR_FILENO)};
		struct fs_pull_result pr;
		if ((r = fs_image_pull(store, ref, &po, &pr)) < 0)
			return r;
		snprintf(digest, sizeof(digest), "%s", pr.index_digest);
		if (pr.remote && !pr.cached && !pr.built)
			snprintf(fresh_from_registry, sizeof(fresh_from_registry), "%s", digest);
	} else if (r < 0) {
		return r;
	}
	/* Only the config (no whole-index check or hashing on every run: the store verified the
	 * file, the daemon validates it when it mounts). */
	_cleanup_free_ char *path = NULL, *json = NULL;
	size_t len;
	if ((r = idx_store_index_path_at(isorun_root(), digest, &path)) < 0 ||
	    (r = idx_index_read_config(path, &json, &len)) < 0)
		return r;
	log_debug("%s: index %s", ref, digest);
	if ((r = run_config_parse(json, len, ret_config)) < 0)
		return r;
	*ret_image_key = strdup(digest);
	if (!*ret_image_key) {
		run_config_free(*ret_config);
		*ret_config = NULL;
		return -ENOMEM;
	}
	*ret_lower_dir = NULL; /* acquired through image_ops at start */
	return 0;
}

/* How long an image's mount outlives its last sandbox by default (--keep-warm or
 * ISORUN_KEEP_WARM seconds otherwise, 0 = unmount at once): the next sandbox of the image
 * then finds the daemon and the page cache of the previous one instead of starting a new
 * mount (110 ms) and reading every page again. */
#define KEEP_WARM_DEFAULT_S 60
_Static_assert(RUN_KEEP_WARM_MAX == FS_KEEP_WARM_MAX, "one limit for --keep-warm");

static int image_acquire(void *userdata, const char *image_key, const char *holder,
			 char **ret_lower_dir)
{
	struct fs_mount_opts o = {.keep_warm_s = KEEP_WARM_DEFAULT_S,
				  .debug = cm_log_get_level() >= CM_LOG_DEBUG,
				  .index_fresh = strcmp(image_key, fresh_from_registry) == 0};
	const char *pf = getenv("ISORUN_PREFETCH");
	if (pf && fs_prefetch_parse(pf, &o.prefetch) < 0)
		log_warn("ignoring ISORUN_PREFETCH=%s (none|startup|all)", pf);
	int kw = isorun_env_keep_warm();
	if (kw >= 0)
		o.keep_warm_s = (unsigned)kw;
	return fs_mount_acquire(isorun_root(), image_key, &o, holder, ret_lower_dir);
}

/* The last sandbox of an image to let go of its mount says how long the mount stays: its
 * --keep-warm (or ISORUN_KEEP_WARM when it was created), else the delay the mount was made
 * with. */
static void image_release(void *userdata, const char *image_key, const char *holder,
			  int keep_warm_s)
{
	int r = fs_mount_release(isorun_root(), image_key, holder, keep_warm_s);
	if (r < 0 && r != -ENOENT)
		log_warn("releasing the mount of %s: %s", image_key, strerror(-r));
}

static const struct run_image_ops image_ops = {
	.acquire = image_acquire,
	.release = image_release,
};

const struct run_image_ops *isorun_image_ops(void)
{
	return &image_ops;
}
