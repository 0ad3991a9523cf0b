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
 *   ROOT/indexes/<64 hex>          an index blob, name = its SHA-256
 *   ROOT/store.db                  images (reference -> manifest -> index), chunk bookkeeping
 *   ROOT/tmp/                      temporary files, renamed into place when complete
 *
 * Publication is atomic (temp file in ROOT/tmp, verify, rename): a chunk file that exists is
 * whole. It is verified against its name on entry; readers that want defence in depth verify
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
const char *idx_store_root(const struct idx_store *s);
/* A directory fd of the root (owned by the store). */
int idx_store_root_fd(const struct idx_store *s);

/* Path of a chunk file relative to the root: "chunks/ab/abcd..." (buffer >= 80 bytes). */
void idx_store_chunk_relpath(const uint8_t digest[32], char out[80]);
bool idx_store_has_chunk(struct idx_store *s, const uint8_t digest[32]);
/*
 * Insert a chunk given its stored (compressed) bytes. When `verify` is true the frame is
 * decompressed and hashed first (-EBADMSG on mismatch, nothing written). Returns 1 if the
 * chunk was new, 0 if it was already there.
 */
int idx_store_put_chunk(struct idx_store *s, const uint8_t digest[32], const void *cdata,
			size_t clen, uint32_t usize, bool verify);
/*
 * Insert a chunk given its uncompressed bytes, stored as a zstd frame of raw blocks
 * (idx_store_raw_frame_size bytes). The caller has verified `udata` against `digest`.
 * Returns 1 if the chunk was new, 0 if it was already there (in either form).
 */
int idx_store_put_chunk_raw(struct idx_store *s, const uint8_t digest[32], const void *udata,
			    uint32_t usize);
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

/* Publish an index blob; `ret_digest` receives "sha256:...". Idempotent. */
int idx_store_put_index(struct idx_store *s, const void *data, size_t len,
			char ret_digest[72]);
/* "ROOT/indexes/<hex>" for a digest string; caller frees. -EPROTO for a bad digest. */
int idx_store_index_path(struct idx_store *s, const char *digest, char **ret);

/* Record that `ref` (any string: "oci:/x:tag", "docker.io/library/python:3.12") resolved to
 * `manifest_digest`, indexed as `index_digest`. Replaces an earlier record for `ref`. */
int idx_store_record_image(struct idx_store *s, const char *ref, const char *manifest_digest,
			   const char *index_digest);
/* Find the index digest for a reference or a manifest digest. -ENOENT. Caller frees. */
int idx_store_find_index(struct idx_store *s, const char *ref_or_manifest_digest, char **ret);

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
