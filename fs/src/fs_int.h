/* Private declarations shared by the fs sources. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/mount.h"

struct idx_store;
struct cm_buf;

/* ROOT/mounts/<hex>/ and its entries. Caller frees. NULL on -ENOMEM. */
char *fs_mount_dir(const char *root, const char *index_hex);

/*
 * Send one request line to the daemon of mounts/<hex>/ctl.sock and read its whole answer
 * (capped at 1 MiB) into *ret (caller frees; may be NULL to discard). -ECONNREFUSED or
 * -ENOENT when no daemon listens, -ETIMEDOUT after `timeout_ms`, -EFBIG.
 */
int fs_ctl_call(const char *root, const char *index_hex, const char *request, int timeout_ms,
		char **ret);

/*
 * The holders of a shared mount (holders.c): ROOT/mounts/<hex>/refs, one line per holder
 * ("dir <path>", "bind <mnt ns inode> <path>", or a count of unnamed references from older
 * releases). Load/store with the mount's lock held.
 */
struct fs_holders {
	char **v;
	size_t n;
	unsigned anon; /* unnamed references */
};
int fs_holders_parse(const char *data, size_t len, struct fs_holders *h);
int fs_holders_load(const char *mount_dir, struct fs_holders *h); /* missing file: none */
int fs_holders_store(const char *mount_dir, const struct fs_holders *h);
/* The file's content for `h` (what fs_holders_store writes), appended to `b`. */
int fs_holders_format(const struct fs_holders *h, struct cm_buf *b);
void fs_holders_free(struct fs_holders *h);
bool fs_holders_has(const struct fs_holders *h, const char *line, size_t len);
int fs_holders_add(struct fs_holders *h, const char *line); /* 0 also when already there */
bool fs_holders_remove(struct fs_holders *h, const char *line);
size_t fs_holders_count(const struct fs_holders *h);
/* Drop the holders that are certainly gone (a "dir" that no longer exists, a "bind" of this
 * mount namespace no longer mounted); returns how many. */
size_t fs_holders_audit(const char *index_hex, struct fs_holders *h);
/* The inode of this process's mount namespace. */
int fs_holder_mntns(unsigned long long *ret);
/* The mounts at `path` (absolute, resolved) in /proc/self/mountinfo, the last `max` of
 * them in mount order: hex[i] is the index hex of an isorun mount, "" for any other.
 * Returns how many, or -errno. */
int fs_mounts_at(const char *path, char (*hex)[65], size_t max);
/* A mountinfo path field with its \ooo escapes decoded (truncated to outlen). */
void fs_mountinfo_unescape(const char *in, char *out, size_t outlen);

/* Index digests ("sha256:...") of images with a live daemon. Caller frees each and the
 * array. */
int fs_mounts_live(const char *root, char ***ret, size_t *ret_n);
void fs_strv_free(char **v, size_t n);
/* Append `s` (taken over; NULL, an allocation that failed, gives -ENOMEM) to v[0..*n). */
int fs_strv_push(char ***v, size_t *n, char *s);

/* Latency histogram (thread-safe, lock-free). Microseconds, log2 buckets split in four. */
#define FS_HIST_BUCKETS 160
struct fs_hist {
	uint64_t b[FS_HIST_BUCKETS]; /* atomic */
	uint64_t count, max_us;	     /* atomic */
};
void fs_hist_add(struct fs_hist *h, uint64_t us);
/* The upper bound of the bucket holding quantile q (0..1), in microseconds. */
uint64_t fs_hist_quantile(const struct fs_hist *h, double q);

/*
 * The engine's background policies (engine.c), as pure functions of the clock for tests.
 * Times in ns of CLOCK_MONOTONIC, 0 for "never". The rest of the image (after the startup
 * list) waits while reads come less than 250 ms apart and none had to wait for a chunk in
 * the last second; the records' flush waits while reads come less than 250 ms apart, at
 * most 10 s after the last flush, and never once the image is complete but not recorded;
 * a startup chunk held for its first read since held_ns is let go 10 s later.
 */
bool fs_rest_deferred(uint64_t now, uint64_t last_read_ns, uint64_t last_need_ns);
bool fs_flush_deferred(uint64_t now, uint64_t last_read_ns, uint64_t last_flush_ns,
		       bool complete_unrecorded);
bool fs_hold_expired(uint64_t now, uint64_t held_ns);

/* Default options filled in. */
void fs_mount_opts_defaults(struct fs_mount_opts *o);
/* The default --startup-hold for a machine with `ram` bytes (0: unknown): 256 MiB, or a
 * sixteenth of the memory where that is less (16 MiB at least). */
uint64_t fs_startup_hold_default(uint64_t ram);

/* Registries reached over plain HTTP or unverified TLS, from $ISORUN_INSECURE_REGISTRIES
 * (comma-separated [http://|https://]host[:port]); NULL when unset. Loopback needs no entry. */
const char *const *fs_insecure_registries(void);
struct idx_store;
/* ROOT/registry-schemes, what insecure registries speak (reg_options.scheme_cache); heap. */
char *fs_scheme_cache(struct idx_store *s);
