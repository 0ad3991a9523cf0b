/* Serialising a finished tree into the index format (private to the indexer). */
#pragma once

#include "build_int.h"
#include "pool.h"

#include "common/buf.h"

struct idx_writer_input {
	struct idx_tree *tree;
	struct idx_pool *pool;
	const uint8_t *manifest_digest; /* 32 bytes */
	const uint8_t *config_digest;	/* 32 bytes */
	const char *config;		/* verbatim config blob */
	size_t config_len;
	uint64_t pack_target;
	/* Chunk ids to place first, in this order, and list first for startup prefetch
	 * (idx_build_opts.startup_ids). */
	const uint8_t (*startup_ids)[32];
	uint32_t n_startup_ids;
	/* Optional: receives every pack's bytes in order (pack_data, any number of pieces),
	 * then pack_done with the pack's digest and size, so the caller can write pack blobs
	 * without a second pass. */
	int (*pack_data)(void *ud, uint32_t pack, const uint8_t *data, size_t len);
	int (*pack_done)(void *ud, uint32_t pack, const uint8_t digest[32], uint64_t size);
	void *pack_ud;
};

/* Produce the index blob into `out`. Assigns chunk order (idx_uchunk.order). */
int idx_writer_write(const struct idx_writer_input *in, struct cm_buf *out);
