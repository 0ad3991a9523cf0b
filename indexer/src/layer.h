/* Reading one layer blob into the merged tree (private to the indexer). */
#pragma once

#include "pool.h"
#include "tree.h"

#include "indexer/source.h"

enum idx_compression {
	IDX_COMP_NONE,
	IDX_COMP_GZIP,
	IDX_COMP_ZSTD,
};

struct idx_layer_result {
	uint8_t digest[32];  /* SHA-256 of the blob as stored */
	uint8_t diff_id[32]; /* SHA-256 of the tar stream */
	uint64_t size, usize;
	uint64_t entries, file_bytes;
};

/*
 * Apply the tar stream in `st` to `tree`; file data goes to `pool`. The caller compares the
 * digests in *ret with the descriptor and the config. `layer_name` is used in messages.
 * -EPROTO malformed or hostile entry (logged with the entry name), -EFBIG over a cap,
 * -ELIBACC/-ELIBBAD when libarchive.so.13 cannot be loaded (it is loaded on first use).
 */
int idx_layer_read(struct idx_tree *tree, struct idx_pool *pool, struct idx_stream *st,
		   enum idx_compression comp, const char *layer_name,
		   struct idx_layer_result *ret);
