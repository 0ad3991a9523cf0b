/* The FUSE low-level operations over an index and its chunk engine. */
#pragma once

#include <pthread.h>

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>

struct idx_reader;
struct fs_engine;
struct fs_push;

/* Userdata of the session: borrowed reader and engine (both thread-safe). */
struct fs_ops_ctx {
	const struct idx_reader *r;
	struct fs_engine *e;
	double timeout; /* entry and attr timeout, seconds: the image never changes */
	struct fs_push *push; /* told of the inodes the kernel learns (NULL: no pusher) */
	/* Set by op_init. Zero-message opens (the kernel stops sending OPEN/RELEASE, and
	 * OPENDIR/RELEASEDIR, after the first is answered ENOSYS; it then caches as with
	 * keep_cache and cache_readdir): nothing here needs per-open state. */
	bool no_open, no_opendir;
	/* The image has no extended attribute at all: getxattr answers ENOSYS once and the
	 * kernel stops asking (overlayfs asks for trusted.overlay.* on every lookup, exec for
	 * security.capability); listxattr still answers an empty list. */
	bool no_xattrs;
	/* Sequential-read detection, per inode (hashed; a collision only costs a readahead):
	 * where the last read of seq_ino[h] ended. Relaxed atomics. */
	uint32_t seq_ino[256];
	uint64_t seq_next[256];
	/* The statfs answer, computed on first use (a walk of every inode and chunk, 0.7 ms for
	 * the browser image; chromium asks 27 times as it starts). Under statfs_lock. */
	pthread_mutex_t statfs_lock;
	bool statfs_known;
	uint64_t statfs_blocks, statfs_files;
};

extern const struct fuse_lowlevel_ops fs_ops;
