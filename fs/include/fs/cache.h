/*
 * The shared chunk cache: bookkeeping and bounds for the content-addressed chunk store of
 * indexer/store.h (ROOT/chunks/), shared by every mount, indexer and process on the host.
 *
 * Tables kept in ROOT/store.db next to the indexer's `images` (fs/README.md):
 *   fs_chunks(digest PK, csize, last_use)      one row per chunk file believed present
 *   fs_refs(index_digest, digest)              which index references which chunk
 *   fs_remotes(index_digest PK, repository, manifest_digest)
 *                                              where the packs of a pulled index live
 * Rows are written in batches (one transaction per batch, never one per read). The chunk
 * files are the truth: fs_cache_reconcile() repairs rows after crashes or writes by other
 * tools (the indexer does not write fs_chunks).
 *
 * Eviction removes least-recently-used chunk files until the store is under the cap, and
 * under what leaves the filesystem its minimum of free space (fs_cache_config).
 * Chunks referenced by a mounted image that has no remote (it could not fetch them again)
 * are never evicted; chunks of unmounted images go before chunks of mounted ones. A mount
 * that reads a chunk holds its decompressed bytes in memory (or an open fd), so unlinking
 * a chunk file never changes bytes under a reader; a later read fetches it again.
 *
 * All functions take the store's lock (idx_store_lock) around sqlite use and are
 * thread-safe and process-safe (sqlite WAL, busy timeout).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idx_store;
struct idx_reader;

/* Default cap when neither --cache-max nor ROOT/config.json says otherwise. */
#define FS_CACHE_MAX_DEFAULT (20ull << 30)

/* Create the fs tables if missing. -EIO (logged) on a database failure. */
int fs_cache_init(struct idx_store *s);

/*
 * The cache's bounds, from one read of ROOT/config.json (either pointer may be NULL):
 * *max, the cap: {"cache_max": "10G"} (a size string or bytes), else FS_CACHE_MAX_DEFAULT;
 * *min_free, the free space the cache leaves on its filesystem, which it shares with
 * sandboxes' scratch layers and everything else on the host: {"cache_min_free": "4G"} (0
 * turns it off), else FS_CACHE_MIN_FREE_PCT of the filesystem, at most
 * FS_CACHE_MIN_FREE_MAX. -EPROTO for a malformed file or value (logged); a missing file is
 * not an error.
 */
#define FS_CACHE_MIN_FREE_PCT 5
#define FS_CACHE_MIN_FREE_MAX (2ull << 30)
int fs_cache_config(const char *root, uint64_t *max, uint64_t *min_free);
/*
 * The size eviction must bring a store of `bytes` down to: `cache_max` (0: none), lower
 * when the filesystem of `root` has less than `min_free` available, by what it is short
 * (*ret_short, 0 when it is not).
 */
uint64_t fs_cache_evict_cap(const char *root, uint64_t bytes, uint64_t cache_max,
			    uint64_t min_free, uint64_t *ret_short);

/*
 * Chunk references. fs_cache_add_index notes an index as present (what a pull does: cheap);
 * fs_cache_record_index records which chunks it references (50,000 rows for a big image,
 * ~200 ms), idempotent, in transactions of a few thousand rows (the store's lock is let go
 * between two), and marks the index recorded at the end; the mount's daemon runs it in the
 * background. fs_cache_complete_refs records every index still unrecorded: eviction, prune
 * and stats call it before they read the references. The _ex form returns -ECANCELED as
 * soon as *stop is set (what it recorded stays; the rest is completed later). -EIO, -ENOMEM.
 */
int fs_cache_add_index(struct idx_store *s, const char *index_digest);
int fs_cache_record_index(struct idx_store *s, const struct idx_reader *r);
int fs_cache_record_index_ex(struct idx_store *s, const struct idx_reader *r, const bool *stop);
int fs_cache_complete_refs(struct idx_store *s);

/* Record where the packs of `index_digest` can be fetched: `repository` is a canonical
 * "domain/path" reference without tag. Replaces an earlier record. -EIO. */
int fs_cache_set_remote(struct idx_store *s, const char *index_digest, const char *repository,
			const char *manifest_digest);
/* The repository recorded for `index_digest` (caller frees). -ENOENT if it has none
 * (an index built locally). */
int fs_cache_get_remote(struct idx_store *s, const char *index_digest, char **ret_repository);

/* One batch of bookkeeping from a mount: chunks added to the store and chunks used. */
struct fs_cache_touch {
	uint8_t digest[32];
	uint32_t csize;
	bool added;
};
/* Apply a batch in one transaction (last_use = now). -EIO. */
int fs_cache_touch_batch(struct idx_store *s, const struct fs_cache_touch *v, size_t n);

/* Scan ROOT/chunks and make fs_chunks match it (rows for new files with their size and
 * mtime as last use; rows of vanished files removed). ret_bytes and ret_chunks (may be
 * NULL) get the totals. -EIO. */
int fs_cache_reconcile(struct idx_store *s, uint64_t *ret_bytes, uint64_t *ret_chunks);

/* Total stored bytes according to fs_chunks (cheap: one SUM). */
int fs_cache_size(struct idx_store *s, uint64_t *ret_bytes, uint64_t *ret_chunks);

struct fs_cache_gc_result {
	uint64_t evicted_chunks, evicted_bytes;
	uint64_t bytes, chunks; /* after */
};
/*
 * Evict least-recently-used chunks until the store holds at most `max_bytes` (rules in the
 * header comment). When `reconcile` is set the directory is scanned first. -EIO;
 * -ENOSPC when even after evicting every evictable chunk the store is over the cap (the
 * result is still filled).
 */
int fs_cache_evict(struct idx_store *s, uint64_t max_bytes, bool reconcile,
		   struct fs_cache_gc_result *ret);

/*
 * Remove the chunks of image `ref_or_digest` (reference, manifest or index digest) that no
 * other recorded image references. The index and the image record stay: an image with a
 * remote fetches them again lazily. -ENOENT unknown image, -EBUSY when it is mounted.
 */
int fs_cache_prune_image(struct idx_store *s, const char *ref_or_digest,
			 struct fs_cache_gc_result *ret);

struct fs_cache_image {
	char *ref;
	char index_digest[72];
	char manifest_digest[72];
	char *repository; /* NULL for a locally built index */
	uint64_t chunks, resident_chunks;
	uint64_t bytes;		 /* the index's compressed size of its chunks (packs) */
	uint64_t resident_bytes; /* what the store holds of them (raw chunks: uncompressed) */
	bool mounted;
};
struct fs_cache_stats {
	uint64_t bytes, chunks, max_bytes;
	struct fs_cache_image *images;
	size_t n_images;
};
/* Totals (after a reconcile) and per image residency. Free with fs_cache_stats_fini. */
int fs_cache_stats_get(struct idx_store *s, struct fs_cache_stats *ret);
void fs_cache_stats_fini(struct fs_cache_stats *st);
