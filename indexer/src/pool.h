/*
 * Chunk pipeline of a build: the reader thread cuts file data into chunks (CDC) and hands
 * each to a worker pool that hashes it, deduplicates it against the build and the store,
 * compresses new chunks with zstd and writes them to the build's staging directory.
 * Chunks are identified by "slots" (one per occurrence in a file); slots resolve to unique
 * chunks once idx_pool_finish returns.
 */
#pragma once

#include "build_int.h"

struct idx_pool;

int idx_pool_new(struct idx_store *store, int threads, int level, struct idx_pool **ret);
/* Compress the chunks with these ids (a startup trace's) at `level` instead: set before the
 * first submit. The ids are copied. -ENOMEM. */
int idx_pool_set_hot(struct idx_pool *p, const uint8_t (*ids)[32], uint32_t n, int level);
/* Queue a copy of `data` as the next slot; returns the slot id (>= 0) or -errno. Blocks
 * while the queue is full. Called from one thread. */
int idx_pool_submit(struct idx_pool *p, const uint8_t *data, size_t len, uint32_t *ret_slot);
/* Wait for all queued work; returns the first worker error. */
int idx_pool_finish(struct idx_pool *p);
/* After finish: unique chunk of a slot, and the unique table. */
uint32_t idx_pool_slot_chunk(const struct idx_pool *p, uint32_t slot);
struct idx_uchunk *idx_pool_chunks(struct idx_pool *p, uint32_t *ret_n);
/* Move new chunks from staging into the store (after a successful build). */
int idx_pool_commit(struct idx_pool *p, uint64_t *ret_new_chunks, uint64_t *ret_new_bytes);
/* Remove the staging directory (always safe; commit empties it first). */
void idx_pool_free(struct idx_pool *p);
/* Read a unique chunk's uncompressed bytes (from staging or the store). */
int idx_pool_read_chunk(struct idx_pool *p, uint32_t chunk, uint8_t *buf);
/* Open a unique chunk's stored bytes (staging or store). */
int idx_pool_open_chunk(struct idx_pool *p, uint32_t chunk);
