/*
 * Reading an isorun index (docs/format.md). An index is one immutable, little-endian blob;
 * the reader mmaps it and validates every offset and count once at open, so the lookups
 * below never read out of bounds even on hostile input. After a successful open the reader
 * is immutable: every function here is thread-safe.
 *
 * Inode numbers start at 1 (the root, IDX_ROOT_INO), matching FUSE_ROOT_ID.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IDX_ROOT_INO 1u

struct idx_reader;

struct idx_inode {
	uint32_t ino;
	uint32_t mode; /* st_mode: type and permission bits (setuid/setgid/sticky included) */
	uint32_t uid, gid;
	uint32_t nlink;
	uint64_t size; /* regular: bytes; symlink: target length; others 0 */
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint32_t rdev_major, rdev_minor;
	uint32_t parent; /* directories: parent directory's ino (root: itself); others: 0 */
};

struct idx_dirent {
	const char *name; /* NUL-terminated, points into the mapping */
	uint32_t name_len;
	uint32_t ino;
	uint8_t type; /* DT_* */
};

struct idx_extent {
	uint64_t file_offset; /* where this chunk's bytes start in the file */
	uint32_t chunk;	      /* index into the chunk table */
};

struct idx_chunk {
	uint8_t digest[32]; /* SHA-256 of the uncompressed bytes: the chunk id */
	uint32_t usize;	    /* uncompressed size */
	uint32_t csize;	    /* stored (compressed) size, in the store and in its pack */
	uint32_t pack;	    /* index into the pack table */
	uint32_t flags;	    /* IDX_CHUNK_* */
	uint64_t pack_offset;
};

#define IDX_CHUNK_COMP_MASK 0xffu
#define IDX_CHUNK_COMP_ZSTD 1u /* the stored bytes are one zstd frame */

struct idx_pack {
	uint8_t digest[32]; /* SHA-256 of the whole pack blob */
	uint64_t size;
	uint32_t chunk_first, chunk_count; /* packs hold consecutive chunks */
};

struct idx_xattr {
	const char *name; /* NUL-terminated */
	uint32_t name_len;
	const uint8_t *value;
	uint32_t value_len;
};

struct idx_stats {
	uint32_t inodes, dirs, files, symlinks, others, chunks, packs, prefetch;
	uint32_t xattrs; /* extended attribute records, all inodes together */
	uint64_t file_bytes;	  /* sum of regular file sizes (hardlinks once) */
	uint64_t unique_bytes;	  /* sum of chunk usize */
	uint64_t stored_bytes;	  /* sum of chunk csize */
	uint64_t index_bytes;	  /* the index blob itself */
};

/*
 * Open and validate an index file (mmap, read-only). -ENOENT, -EPROTO for a malformed or
 * hostile file (the log says which field), -ENOTSUP for an unknown major version.
 */
int idx_reader_open(const char *path, struct idx_reader **ret);
/*
 * Validate an index held in memory. The reader borrows `data`, which must outlive it
 * (used by tests and the fuzz target). Same errors as idx_reader_open.
 */
int idx_reader_open_mem(const void *data, size_t len, struct idx_reader **ret);
/*
 * The same for bytes the caller has already checked against `digest` ("sha256:HEX": a
 * registry blob verified as it was downloaded): every structure is validated as above, only
 * the hash of the whole blob (7 ms for an 8 MB index) is not computed again. -EINVAL for a
 * malformed digest.
 */
int idx_reader_open_mem_digest(const void *data, size_t len, const char *digest,
			       struct idx_reader **ret);
/* The same for an index file the caller knows holds `digest` (this very process chain just
 * fetched, verified and stored it): validated, not hashed. */
int idx_reader_open_digest(const char *path, const char *digest, struct idx_reader **ret);
void idx_reader_free(struct idx_reader *r);
static inline void idx_reader_freep(struct idx_reader **p)
{
	idx_reader_free(*p);
}
/*
 * Only the image config of an index file (a NUL-terminated copy, free() it), for the sandbox
 * verbs' per-run lookup of a stored index: the header and the section table are validated,
 * the rest of the file is not read and no digest is computed (the store checked the file's
 * digest when it was written, and the mount's daemon validates the whole index when it
 * mounts it). Errors as idx_reader_open.
 */
int idx_index_read_config(const char *path, char **ret_json, size_t *ret_len);
/* The same over an index in memory (the fuzz target's entry). */
int idx_index_config_mem(const void *data, size_t len, char **ret_json, size_t *ret_len);

/* Extended attribute records of all inodes together (0: the image has none). */
uint32_t idx_reader_xattr_records(const struct idx_reader *r);
/* The whole blob (for hashing or pushing). */
const void *idx_reader_data(const struct idx_reader *r, size_t *ret_len);
/* SHA-256 of the blob: the index digest ("sha256:..."), computed at open. */
const char *idx_reader_digest(const struct idx_reader *r);
/* Digest of the source image manifest this index was built from ("sha256:..."). */
const char *idx_reader_manifest_digest(const struct idx_reader *r);
const char *idx_reader_config_digest(const struct idx_reader *r);
/* The image config blob, byte for byte (its SHA-256 is the config digest). */
const char *idx_reader_config_json(const struct idx_reader *r, size_t *ret_len);

uint32_t idx_reader_inode_count(const struct idx_reader *r);
uint32_t idx_reader_chunk_count(const struct idx_reader *r);
uint32_t idx_reader_pack_count(const struct idx_reader *r);
uint32_t idx_reader_prefetch_count(const struct idx_reader *r);
void idx_reader_stats(const struct idx_reader *r, struct idx_stats *ret);

/* -ENOENT for an ino outside [1, inode_count]. */
int idx_reader_inode(const struct idx_reader *r, uint32_t ino, struct idx_inode *ret);
/* Lookup `name` (not NUL-terminated, `len` bytes) in directory `dir`: binary search.
 * -ENOTDIR, -ENOENT. */
int idx_reader_lookup(const struct idx_reader *r, uint32_t dir, const char *name, size_t len,
		      uint32_t *ret_ino);
/* Resolve an absolute or root-relative path without following symlinks. */
int idx_reader_lookup_path(const struct idx_reader *r, const char *path, uint32_t *ret_ino);
/* Number of entries of a directory (no "." or ".."), in name order. -ENOTDIR. */
int idx_reader_dir_count(const struct idx_reader *r, uint32_t dir, uint32_t *ret);
int idx_reader_dirent(const struct idx_reader *r, uint32_t dir, uint32_t i, struct idx_dirent *ret);
/* Symlink target (NUL-terminated, in the mapping). -EINVAL if not a symlink. */
int idx_reader_readlink(const struct idx_reader *r, uint32_t ino, const char **ret, size_t *ret_len);

/* A regular file's extents. -EINVAL if not a regular file. */
int idx_reader_extent_count(const struct idx_reader *r, uint32_t ino, uint32_t *ret);
int idx_reader_extent(const struct idx_reader *r, uint32_t ino, uint32_t i, struct idx_extent *ret);
/* Index of the extent holding byte `off` of the file (binary search). -ENXIO past EOF. */
int idx_reader_extent_at(const struct idx_reader *r, uint32_t ino, uint64_t off, uint32_t *ret_i);

int idx_reader_chunk(const struct idx_reader *r, uint32_t i, struct idx_chunk *ret);
int idx_reader_pack(const struct idx_reader *r, uint32_t i, struct idx_pack *ret);
/* The i-th chunk of the startup prefetch list. */
int idx_reader_prefetch(const struct idx_reader *r, uint32_t i, uint32_t *ret_chunk);

int idx_reader_xattr_count(const struct idx_reader *r, uint32_t ino, uint32_t *ret);
int idx_reader_xattr(const struct idx_reader *r, uint32_t ino, uint32_t i, struct idx_xattr *ret);

/* The parts of the image config a runner needs. Arrays are NULL-terminated. */
struct idx_config {
	char **env;	   /* "K=V" */
	char **entrypoint;
	char **cmd;
	char *working_dir; /* NULL if unset */
	char *user;	   /* NULL if unset */
	char **labels;	   /* "K=V" */
	char *os, *architecture;
};
/* Parse the stored config (-EPROTO if malformed). Caller frees with idx_config_free. */
int idx_reader_config(const struct idx_reader *r, struct idx_config **ret);
/* Parse any OCI image config JSON. */
int idx_config_parse(const char *json, size_t len, struct idx_config **ret);
void idx_config_free(struct idx_config *c);
