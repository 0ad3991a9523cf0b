/*
 * The local store under $ISORUN_ROOT: content-addressed chunks and index blobs, and
 * store.db (sqlite, WAL) with what references them. Shared by every indexer, mount and
 * runner on the host, across processes.
 *
 *   ROOT/chunks/<2 hex>/<64 hex>   a chunk: one zstd frame of its uncompressed data, name =
 *                                  SHA-256 of the uncompressed data. Either the bytes it
 *                                  has in its pack (what builds write) or a frame of raw
 *                                  (stored) blocks (what mounts write by default, so local
 *                                  reads are a copy, not a decompression). Readers take
 *                                  both; the file's size says which.
 *   ROOT/packs/<16 hex>            a local pack: raw frames of chunks a mount fetched,
 *                                  appended by one writer process (which holds an exclusive
 *                                  flock on it while it appends); store.db's local_chunks
 *                                  says where each chunk is (pack, offset, length, XXH3-64
 *                                  of its data). One file per ~thousand chunks instead of
 *                                  one each: creating files dominated a cold start.
 *   ROOT/indexes/<64 hex>          an index blob, name = its SHA-256
 *   ROOT/store.db                  images (reference -> manifest -> index), chunk bookkeeping
 *   ROOT/tmp/                      temporary files, renamed into place when complete
 *
 * Publication is atomic (temp file in ROOT/tmp, verify, rename): a chunk file that exists is
 * whole. A chunk in a local pack is visible once its local_chunks row is committed, after its
 * bytes were written; a reader checks the XXH3-64 of what it read, so bytes that an eviction
 * punched out or a crash lost read as absent, never as data. It is verified against its name on entry; readers that want defence in depth verify
 * again after decompression (idx_store_read_chunk does).
 *
 * A struct idx_store may be used from several threads at once unless noted.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idx_store;

/* Open (creating directories and the database as needed). -EACCES, -ENOMEM, -EIO. */
int idx_store_open(const char *root, struct idx_store **ret);
void idx_store_free(struct idx_store *s);
static inline void idx_store_freep(struct idx_store **p)
{
	idx_store_free(*p);
}
const char *idx_store_root(const struct idx_store *s);
/* A directory fd of the root (owned by the store). */
int idx_store_root_fd(const struct idx_store *s);

/* Path of a chunk file relative to the root: "chunks/ab/abcd..." (buffer >= 80 bytes). */
void idx_store_chunk_relpath(const uint8_t digest[32], char out[80]);
/* renameat(fromfd, from) to `relpath` in the store (a chunk path), making its directory
 * (chunks/xx) on first use. -errno. */
int idx_store_rename_into(struct idx_store *s, int fromfd, const char *from, const char *relpath);
/*
 * Which chunks/XX directories hold at least one chunk file: bit XX of `mask` (byte XX / 8,
 * bit XX % 8). Lets a caller with thousands of digests to look up skip the directories that
 * are empty (all of them in a store whose chunks live in local packs). Unreadable
 * directories count as non-empty, so the answer errs on the side of looking. Returns 0.
 */
int idx_store_chunk_dirs(struct idx_store *s, uint8_t mask[32]);
/* In the store as a chunk file or in a local pack. */
bool idx_store_has_chunk(struct idx_store *s, const uint8_t digest[32]);
/*
 * Insert a chunk given its stored (compressed) bytes. When `verify` is true the frame is
 * decompressed and hashed first (-EBADMSG on mismatch, nothing written). Returns 1 if the
 * chunk was new, 0 if it was already there.
 */
int idx_store_put_chunk(struct idx_store *s, const uint8_t digest[32], const void *cdata,
			size_t clen, uint32_t usize, bool verify);
/* Size of the raw-block frame of a chunk of `usize` bytes: 9 header bytes, then a 3-byte
 * header per block of at most 128 KiB (at least one block), then the data. */
size_t idx_store_raw_frame_size(uint32_t usize);
/* Write that frame into `out` (idx_store_raw_frame_size(usize) bytes). */
void idx_store_raw_frame(const void *udata, uint32_t usize, uint8_t *out);
/* Its first 9 bytes: magic, frame header descriptor, content size. */
void idx_store_raw_frame_header(uint32_t usize, uint8_t out[9]);
/*
 * Read a chunk, decompress into `ubuf` (exactly `usize` bytes) and verify its digest.
 * -ENOENT if absent, -EBADMSG if the stored bytes are corrupt (the file is then removed).
 */
int idx_store_read_chunk(struct idx_store *s, const uint8_t digest[32], void *ubuf, uint32_t usize);
/* Open a chunk's stored bytes read-only (caller closes). -ENOENT. */
int idx_store_open_chunk(struct idx_store *s, const uint8_t digest[32]);

/* ---- local packs ---- */

/* Where a chunk is in a local pack (pack 0: not in one). `len` is its raw frame's size. */
struct idx_store_loc {
	uint64_t off, sum; /* sum: XXH3-64 of the chunk's uncompressed data */
	uint32_t pack, len;
};

/* One process's appender: chunks go to its own pack file, rotated every
 * IDX_STORE_PACK_MAX bytes. Thread-safe. */
#define IDX_STORE_PACK_MAX (256ull << 20)
struct idx_store_writer;
int idx_store_writer_new(struct idx_store *s, struct idx_store_writer **ret);
/* Rotate packs past `max` bytes instead (tests). */
void idx_store_writer_set_pack_max(struct idx_store_writer *w, uint64_t max);
/*
 * Append `udata` (verified by the caller against `digest`) as a raw frame; *ret says where.
 * Readers of this process may use the location at once; other processes see the chunk after
 * the next idx_store_writer_commit. -errno.
 */
int idx_store_writer_put(struct idx_store_writer *w, const uint8_t digest[32], const void *udata,
			 uint32_t usize, struct idx_store_loc *ret);
/* Record every chunk appended since the last commit in store.db, in one transaction. */
int idx_store_writer_commit(struct idx_store_writer *w);
/* Commit, then close (releasing the pack to garbage collection). */
void idx_store_writer_free(struct idx_store_writer *w);

/* The location of each of `n` chunks (digests: n * 32 bytes); pack 0 for chunks that are not
 * in a local pack. One read transaction. */
int idx_store_locate(struct idx_store *s, const uint8_t *digests, size_t n,
		     struct idx_store_loc *ret);
/* A read-only fd of local pack `pack`, owned by the store (do not close). -ENOENT. */
int idx_store_pack_fd(struct idx_store *s, uint32_t pack);
/* Read the raw frame of a `usize`-byte chunk at `off` of `fd`, its data straight into `ubuf`
 * (one preadv): 1; 0 when the bytes there are not that frame (its headers differ, it is cut
 * short, or with `whole_file` the file goes on after it) or it has more than 8 blocks (the
 * caller decodes it instead); -errno. */
int idx_store_pread_raw(int fd, uint64_t off, uint32_t usize, bool whole_file, void *ubuf);
/* Read the chunk at `l` into `ubuf` (usize bytes) through its raw frame and check its sum:
 * 0, -ENOENT when the bytes are not (or no longer) that chunk. */
int idx_store_read_loc(struct idx_store *s, const struct idx_store_loc *l, void *ubuf,
		       uint32_t usize);
/* Remove a chunk in both forms: its file, and its pack copy (the range is punched out of the
 * pack, its row deleted). With the store lock held, inside the caller's transaction or not. */
int idx_store_remove_chunk_locked(struct idx_store *s, const uint8_t digest[32]);
/* Drop the row of a chunk if it still says `l` (a reader found the bytes there gone or
 * damaged) and punch the range out. */
int idx_store_forget_loc(struct idx_store *s, const uint8_t digest[32],
			 const struct idx_store_loc *l);
/* Garbage-collect local packs no writer holds: delete those without chunks, punch out ranges
 * no row describes (a writer killed before its commit), drop rows of missing packs. */
int idx_store_packs_gc(struct idx_store *s);

/* Publish an index blob; `ret_digest` receives "sha256:...". Idempotent. */
int idx_store_put_index(struct idx_store *s, const void *data, size_t len,
			char ret_digest[72]);
/* The same for a blob the caller has already checked against `digest` (not hashed again).
 * -EINVAL for a malformed digest. */
int idx_store_put_index_digest(struct idx_store *s, const void *data, size_t len,
			       const char *digest);
/* "ROOT/indexes/<hex>" for a digest string; caller frees. -EPROTO for a bad digest. The _at
 * form takes the store's root, for callers that do not open the store (the warm path). */
int idx_store_index_path(struct idx_store *s, const char *digest, char **ret);
int idx_store_index_path_at(const char *root, const char *digest, char **ret);

/* Record that `ref` (any string: "oci:/x:tag", "docker.io/library/python:3.12") resolved to
 * `manifest_digest`, indexed as `index_digest`. Replaces an earlier record for `ref`. */
int idx_store_record_image(struct idx_store *s, const char *ref, const char *manifest_digest,
			   const char *index_digest);
/* Find the index digest for a reference or a manifest digest. -ENOENT. Caller frees. */
int idx_store_find_index(struct idx_store *s, const char *ref_or_manifest_digest, char **ret);
/* The index digest of manifest `manifest_digest` as recorded for any reference of repository
 * `repo` ("domain/path": "domain/path:tag" or "domain/path@digest"). -ENOENT. Caller frees. */
int idx_store_find_index_in_repo(struct idx_store *s, const char *repo, const char *manifest_digest,
				 char **ret);
/*
 * The same answer without opening store.db, from ROOT/refs/: idx_store_record_image also
 * leaves there, for the reference and for the manifest digest, a symlink named by the XXH3-128
 * of the key whose target is "<index digest> <key>" (the key is compared, so a hash collision
 * cannot answer for another reference). A cache: -ENOENT whenever it does not know (then ask
 * idx_store_find_index); ret holds a valid "sha256:..." index digest otherwise (whose file
 * the caller checks).
 */
int idx_store_find_index_fast(const char *root, const char *key, char ret[72]);
/* Add that link for `key` (a lookup that had to ask the database, in a store recorded before
 * the links existed). 0 or -errno; a cache, so callers may ignore a failure. */
int idx_store_link_index(struct idx_store *s, const char *key, const char *index_digest);

struct idx_store_image {
	char *ref, *manifest_digest, *index_digest;
	int64_t created; /* unix seconds */
};
/* All recorded images, newest first. Free with idx_store_images_free. */
int idx_store_list_images(struct idx_store *s, struct idx_store_image **ret, size_t *ret_n);
void idx_store_images_free(struct idx_store_image *v, size_t n);

/* The sqlite handle, for modules that keep further bookkeeping in store.db (fs cache).
 * Guarded by the store's mutex: call idx_store_lock/unlock around any use. */
struct sqlite3 *idx_store_db(struct idx_store *s);
void idx_store_lock(struct idx_store *s);
void idx_store_unlock(struct idx_store *s);
