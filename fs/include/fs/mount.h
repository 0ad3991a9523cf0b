/*
 * Mounting an image: one FUSE daemon per index per host, shared by every user of that image.
 *
 * State of a shared mount lives in ROOT/mounts/<index hex>/ (fs/README.md):
 *   mnt/        the daemon's mount point (read-only, allow_other, default_permissions)
 *   ctl.sock    the daemon's control socket (stats, idle shutdown); a daemon whose socket
 *               does not answer is dead and its mount is cleaned up lazily
 *   refs        the number of holders (text), updated under flock(lock)
 *   lock        flock() serialising acquire/release across processes
 *   daemon.log  the daemon's stderr (every failed read is logged with its cause)
 *   pid         the daemon's process id (diagnostics; liveness is the socket's answer)
 *
 * The daemon is a separate program image (`isorun fsd`, exec'd twice-forked from the
 * caller), so callers may be multithreaded; the call returns once the FUSE mount is live.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum fs_prefetch {
	FS_PREFETCH_ALL = 0, /* startup list, then every chunk in pack order (default) */
	FS_PREFETCH_STARTUP, /* the startup list only */
	FS_PREFETCH_NONE,    /* only what is read (and readahead within read files) */
};

/* The longest keep-warm delay (s) a mount or a release may ask for: a week. */
#define FS_KEEP_WARM_MAX (7 * 86400)

struct fs_mount_opts {
	enum fs_prefetch prefetch;
	uint64_t bwlimit;	   /* prefetch bytes/s, 0 = unlimited */
	uint64_t cache_max;	   /* store cap in bytes, 0 = ROOT/config.json or default */
	uint64_t cache_min_free;   /* free space kept on the store's filesystem (the daemon
				      sets it from ROOT/config.json or the default) */
	const char *trace_path;	   /* --record-trace FILE (docs/trace.md), or NULL */
	unsigned fetch_timeout_s;  /* a read that cannot be served fails with EIO after this;
				      0 = 30 s */
	unsigned keep_warm_s;	   /* delay between the last release and the unmount, at most
				      FS_KEEP_WARM_MAX */
	unsigned prefetch_threads; /* concurrent prefetch requests; 0: 2, or 4 when the
				    * registry's first answer takes 10 ms or more */
	uint64_t request_max;	   /* bytes per coalesced range request, 0 = 4 MiB */
	uint64_t fg_spill;	   /* a read's fetch may extend this far past the file into
				      the pack (laid out in access order); 0 = 512 KiB,
				      none with FS_PREFETCH_NONE */
	uint64_t mem_cache;	   /* decompressed chunks kept in memory, 0 = 32 MiB */
	uint64_t startup_hold;	   /* beside them, startup-list chunks the prefetch brought
				      ahead of their first read, kept until read (at most
				      10 s); 0 = 256 MiB, or 1/16 of the
				      memory where that is less */
	const char *authfile;	   /* registry credentials file, NULL = standard chain */
	const char *exe;	   /* the isorun binary that runs `fsd`; NULL = /proc/self/exe */
	bool verify_local;	   /* hash chunks again when loading them from the store
				      (they were verified before they were published) */
	bool chunks_zstd;	   /* --chunk-format=zstd: store fetched chunks as fetched
				      (zstd-compressed) instead of as raw frames, for a
				      smaller store at the cost of decompressing every local
				      read (indexer/store.h) */
	bool no_push;		   /* --no-page-push: leave the startup list's pages to
				      reads instead of writing them into the kernel's page
				      cache as they arrive (fs/src/push.h) */
	bool debug;		   /* daemon logs at debug level */
	bool index_fresh;	   /* the caller has just fetched this image's index from its
				      registry: report the mount ready without waiting for the
				      registry check (one round trip on a distant registry),
				      which still runs and logs a failure; and do not hash the
				      index file again (the pull verified it) */
};

/* Parse "none|startup|all". -EINVAL. */
int fs_prefetch_parse(const char *s, enum fs_prefetch *ret);

/*
 * Acquire the shared mount of `ref_or_digest` (anything fs_image_lookup accepts; it must
 * already be in the store: pull first) for `holder_dir`, a directory whose existence keeps
 * the reference (a sandbox's state directory): the mount's holders file names it, so the
 * reference is given back by whoever releases for that directory, and dropped by the daemon
 * once the directory is gone (docs: fs/README.md "Shared mounts"). One reference per holder:
 * acquiring again for the same directory takes no second one. Starts the daemon when none
 * runs (options then apply; otherwise they are ignored). *ret_mountpoint (caller frees) is
 * ROOT/mounts/<hex>/mnt. -ENOENT unknown image, -EINVAL unusable holder, -EACCES or the
 * transport errors when the registry cannot serve the image's packs, -EIO when the daemon
 * failed (its log says why). Thread- and process-safe.
 */
int fs_mount_acquire(const char *store_root, const char *ref_or_digest,
		     const struct fs_mount_opts *o, const char *holder_dir, char **ret_mountpoint);
/*
 * Give back the reference `holder_dir` took on the mount (`mountpoint` as returned, or an
 * index digest). The last one unmounts, after `keep_warm_s` seconds (0: at once), or when
 * that is negative after the mount's own delay (fs_mount_opts.keep_warm_s when it was
 * made). -ENOENT when not mounted or when that holder held none (safe to call when unsure).
 * Thread- and process-safe.
 */
int fs_mount_release(const char *store_root, const char *mountpoint, const char *holder_dir,
		     int keep_warm_s);

/* `isorun mount`: acquire and bind-mount the shared mount onto `dir` (read-only). */
int fs_mount_bind(const char *store_root, const char *ref_or_digest, const struct fs_mount_opts *o,
		  const char *dir);
/* `isorun umount`: unmount `dir` (a bind made by fs_mount_bind, or a shared mount point)
 * and release it. `lazy` detaches a busy mount. -EINVAL not an isorun mount, -EBUSY. */
int fs_mount_unbind(const char *store_root, const char *dir, bool lazy);

/*
 * Query the daemon serving `dir` (a bind or shared mount point, or an index digest) over
 * its control socket: the stats as a JSON object (fs/README.md; caller frees).
 * -EINVAL not an isorun mount, -ECONNREFUSED daemon gone.
 */
int fs_mount_stats(const char *store_root, const char *dir, char **ret_json);

/* Stats of every live mount: {"mounts": [stats objects]}. Caller frees. -ENOMEM. */
int fs_mount_stats_all(const char *store_root, char **ret_json);

/*
 * Run the daemon for index `index_digest` mounted on `mountpoint` until it is unmounted
 * or told to stop. `ready_fd` (>= 0) receives a 4-byte int (0 or -errno) once the mount
 * is live or failed, then is closed. Used by `isorun fsd`; returns 0 or -errno.
 */
int fs_daemon_run(const char *store_root, const char *index_digest, const struct fs_mount_opts *o,
		  const char *mountpoint, int ready_fd);
