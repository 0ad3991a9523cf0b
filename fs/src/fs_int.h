/* Private declarations shared by the fs sources. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/mount.h"

struct idx_store;

/* ROOT/mounts/<hex>/ and its entries. Caller frees. NULL on -ENOMEM. */
char *fs_mount_dir(const char *root, const char *index_hex);

/*
 * Send one request line to the daemon of mounts/<hex>/ctl.sock and read its whole answer
 * (capped at 1 MiB) into *ret (caller frees; may be NULL to discard). -ECONNREFUSED or
 * -ENOENT when no daemon listens, -ETIMEDOUT after `timeout_ms`, -EFBIG.
 */
int fs_ctl_call(const char *root, const char *index_hex, const char *request, int timeout_ms,
		char **ret);

/* Index digests ("sha256:...") of images with a live daemon. Caller frees each and the
 * array. */
int fs_mounts_live(const char *root, char ***ret, size_t *ret_n);
void fs_strv_free(char **v, size_t n);

/* Latency histogram (thread-safe, lock-free). Microseconds, log2 buckets split in four. */
#define FS_HIST_BUCKETS 160
struct fs_hist {
	uint64_t b[FS_HIST_BUCKETS]; /* atomic */
	uint64_t count, max_us;	     /* atomic */
};
void fs_hist_add(struct fs_hist *h, uint64_t us);
/* The upper bound of the bucket holding quantile q (0..1), in microseconds. */
uint64_t fs_hist_quantile(const struct fs_hist *h, double q);

/* Default options filled in. */
void fs_mount_opts_defaults(struct fs_mount_opts *o);

/* Registries reached over plain HTTP or unverified TLS, from $ISORUN_INSECURE_REGISTRIES
 * (comma-separated host[:port]); NULL when unset. Loopback needs no entry. */
const char *const *fs_insecure_registries(void);
struct idx_store;
/* ROOT/registry-schemes, what insecure registries speak (reg_options.scheme_cache); heap. */
char *fs_scheme_cache(struct idx_store *s);
