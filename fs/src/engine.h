/*
 * The chunk engine of one mount: maps chunk numbers of an index to decompressed, verified
 * bytes. Layers, fastest first: a bounded in-memory LRU of decompressed chunks; the local
 * store (ROOT/chunks, verified again on load); the registry (HTTP Range on the pack blob,
 * adjacent missing chunks coalesced into one request, every chunk verified before use and
 * published to the store). One fetch per chunk at a time: concurrent readers wait for it.
 *
 * Background: prefetch workers (startup list, then every chunk in pack order; readahead
 * requests of sequential readers first; foreground fetches always first), a bookkeeping
 * flusher (batched sqlite writes, cache cap), and the first-touch trace (docs/trace.md).
 *
 * All functions are thread-safe. Lock order: engine lock, then the store's lock (never the
 * reverse); no lock is held across network or disk I/O.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "fs/mount.h"

struct idx_store;
struct idx_reader;
struct reg_client;
struct reg_ref;
struct fs_engine;

/* A decompressed chunk held by a reader. Immutable while referenced. */
struct fs_chunk_ref {
	const uint8_t *data;
	uint32_t len;
	void *priv;
};

/*
 * Create an engine. It borrows `store` and `reader` (which must outlive it) and takes
 * ownership of `client` and `repo` (both NULL for an index without remote). Scans the
 * store to learn which chunks are local. -ENOMEM.
 */
int fs_engine_new(struct idx_store *store, const struct idx_reader *reader,
		  struct reg_client *client, struct reg_ref *repo, const struct fs_mount_opts *o,
		  struct fs_engine **ret);
/* Stops the threads (flushing bookkeeping and the trace) and frees. NULL is a no-op. */
void fs_engine_free(struct fs_engine *e);

/* Check that the mount can read: every chunk local, or the registry serves the packs with
 * the configured credentials (and how far it is: a far one gets more prefetch workers, also
 * when the engine is already started). -ENOENT (chunks missing and no remote), -EACCES,
 * transport errors. */
int fs_engine_check(struct fs_engine *e);
/* Start prefetch and flusher threads (before the check: the startup list's first fetches
 * then overlap the check's round trip). -errno from pthread_create. */
int fs_engine_start(struct fs_engine *e);
/* Stop the threads, flush (idempotent). */
void fs_engine_stop(struct fs_engine *e);

/*
 * Get chunk `chunk`, extent `ext` of inode `ino`, for a read (recorded in the first-touch
 * trace; a fetch coalesces the file's following chunks). Waits at most the fetch deadline. -EIO
 * when it cannot be served (cause logged and counted), -ETIMEDOUT at the deadline. Release with
 * fs_engine_put.
 */
int fs_engine_get(struct fs_engine *e, uint32_t chunk, uint32_t ino, uint32_t ext,
		  struct fs_chunk_ref *ret);
void fs_engine_put(struct fs_engine *e, struct fs_chunk_ref *ref);

/*
 * Chunk `chunk` for the page-cache pusher (push.h): from memory or the store, waiting at
 * most `wait_ms` while it is not there yet (the prefetch brings it; nothing is fetched
 * here). Not a read: no trace, no read counters; a held startup chunk leaves the hold (its
 * bytes are about to be in the kernel's page cache). -EAGAIN not there yet, -EIO its fetch
 * or load failed while waiting, -ENOENT not local and no remote, -ECANCELED the engine is
 * stopping; with `unread`, -EALREADY (nothing loaded) once a read has asked for it (the
 * read's answer gave the kernel its pages). Release with fs_engine_put.
 */
int fs_engine_peek(struct fs_engine *e, uint32_t chunk, unsigned wait_ms, bool unread,
		   struct fs_chunk_ref *ret);

/* A sequential reader of `ino` reached `off`: queue loads (from the store) or remote
 * fetches of the next chunks of the file (never past its end). */
void fs_engine_readahead(struct fs_engine *e, uint32_t ino, uint64_t off);
/* A read of `ino` will need the chunks of extents after `ext` up to byte `end`: load those
 * that are in the store but not in memory in parallel, in the background. */
void fs_engine_prime(struct fs_engine *e, uint32_t ino, uint32_t ext, uint64_t end);
/* The pusher will want chunk `chunk` soon: if it is in the store, not in memory and not
 * read yet, load it in the background (the loaders that fs_engine_prime feeds). */
void fs_engine_preload(struct fs_engine *e, uint32_t chunk);
/* Whether a program is starting on the mount: the startup list is still being fetched, or
 * reads come less than 250 ms apart. Work that can wait (the daemon's bookkeeping) waits. */
bool fs_engine_starting(struct fs_engine *e);
/* Account one FUSE read (latency, bytes, error). */
void fs_engine_read_done(struct fs_engine *e, uint64_t latency_us, uint64_t bytes, int err);

/* Stats as a JSON object (docs/mounts.md), for the caller to add to and serialize; caller
 * puts it (json_object_put). -ENOMEM. */
struct json_object;
int fs_engine_stats(struct fs_engine *e, struct json_object **ret);
