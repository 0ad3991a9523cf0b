/*
 * Helpers shared by the indexer's unit tests and fuzz targets: tar layers written with
 * libarchive (PAX), gzip/zstd compression, OCI image layouts written from those layers,
 * snapshots of a store's files, a canonical text dump of an index, and a walk that calls
 * every reader accessor. Test code: failures abort through the caller's assertions, and
 * every function returns -errno like the code under test.
 */
#pragma once

#include "common/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idx_reader;
struct idx_store;

/* The mtime every entry gets unless it says otherwise; the dump omits it. */
#define TL_MTIME 1700000000

/*
 * One tar entry. type: 'f' file (data = content), 'd' directory, 'l' symlink (data =
 * target), 'h' hardlink (data = target path), 'c'/'b' device (maj/min), 'p' FIFO.
 * mode 0 = default (0644 files, 0755 dirs, 0777 links). mtime 0 = TL_MTIME.
 * len: data length for binary contents (0 = strlen). xname/xval: one xattr (xlen 0 = strlen).
 * An array of entries ends with type 0.
 */
struct tl_entry {
	char type;
	const char *path;
	const char *data;
	uint32_t mode;
	uint32_t uid, gid;
	int64_t mtime;
	int32_t nsec;
	const char *xname, *xval;
	size_t xlen;
	uint32_t maj, min;
	size_t len;
};

/* Append a PAX tar archive of `ents` (ending with the two zero blocks) to `out`. */
int tl_tar(const struct tl_entry *ents, struct cm_buf *out);
/* Raw ustar pieces for inputs libarchive's writer refuses to produce. `size` is written in
 * the 12-byte octal field (values >= 8 GiB in base-256); no data blocks follow. */
int tl_tar_raw_header(struct cm_buf *out, const char *name, char typeflag, uint64_t size,
		      const char *linkname);
/* A PAX extended header ('x') with one "key=value" record, applying to the next entry. */
int tl_tar_pax(struct cm_buf *out, const char *key, const char *value);
/* Two zero blocks. */
int tl_tar_end(struct cm_buf *out);

enum tl_comp { TL_PLAIN, TL_GZIP, TL_ZSTD };

/* One layer of a generated image. The blob is `tar` compressed with `comp`; the mutations
 * produce the hostile images of the tests. */
struct tl_layer {
	const uint8_t *tar;
	size_t tar_len;
	enum tl_comp comp;
	size_t truncate_blob;	/* > 0: keep only this many bytes of the blob */
	bool bad_digest;	/* the descriptor names a digest the blob does not have */
	bool bad_diff_id;	/* the config lists a wrong diff_id */
	const char *media_type; /* override */
};

struct tl_image_opts {
	const char *config_body; /* JSON members added to the config's "config" object */
	bool schema1;		 /* write a Docker schema 1 manifest instead */
	const char *tag;	 /* ref.name annotation, NULL = none */
};

/* Write an OCI image layout (oci-layout, index.json, blobs) into `dir` (created). */
int tl_layout_write(const char *dir, const struct tl_layer *layers, size_t n,
		    const struct tl_image_opts *o);

/* A fresh directory under $TMPDIR or /tmp; caller frees the string, tl_rm_rf removes it. */
char *tl_mkdtemp(const char *prefix);
void tl_rm_rf(const char *dir);

/* Sorted list of "relpath size" lines of every file and directory below `dir`
 * (sqlite's store.db* excluded). Caller frees. */
char *tl_snapshot(const char *dir);
/* Number of entries in `dir` (not recursive), -errno. */
int tl_count_entries(const char *dir);

/*
 * Build `oci:layout` into the store at `store_dir` (opened and closed here). On success
 * *ret_reader (if not NULL) is the reader of the new index and *ret_store the store (caller
 * frees both). Returns idx_build's result.
 */
int tl_build(const char *layout, const char *store_dir, struct idx_store **ret_store,
	     struct idx_reader **ret_reader);

/*
 * Canonical dump of an index's tree, one line per path in depth-first name order (root
 * excluded): "path T PERM uid:gid [t=SEC.NSEC] [n=NLINK] [=CONTENT|sz=N sha=HEX8]
 * [hl=FIRST] [->TARGET] [dev=MAJ,MIN] [x:NAME=VALUE]...". Contents come from the store
 * (verified). Caller frees.
 */
char *tl_dump(const struct idx_reader *r, struct idx_store *s);

/* Call every accessor of the reader over everything the index holds; returns a checksum of
 * what it read so the calls cannot be optimised away. Never fails on a validated reader. */
uint64_t tl_walk(const struct idx_reader *r);

/* Deterministic pseudo-random bytes (splitmix64). */
void tl_random(uint64_t seed, uint8_t *out, size_t len);
