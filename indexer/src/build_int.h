/* Internal interfaces between the indexer's build steps. */
#pragma once

#include "tree.h"

#include "indexer/index.h"

#include <stddef.h>
#include <stdint.h>

struct idx_store;

/* A unique chunk of the build. */
struct idx_uchunk {
	uint8_t digest[32];
	uint32_t usize;
	uint32_t csize; /* set once compressed or found in the store */
	uint32_t order; /* final index in the chunk table, UINT32_MAX until placed */
	bool is_new;	/* not in the store before this build (published at commit) */
};

/* Read a regular file of the tree (its chunks must be in the store) into a malloc'd buffer,
 * at most `max` bytes. */
typedef int (*idx_read_file_fn)(void *ud, const struct idx_tnode_inode *in, size_t max,
				uint8_t **ret, size_t *ret_len);

/*
 * Startup prefetch list from the image config: the entrypoint/cmd program resolved through
 * the image PATH, interpreters (#! and ELF PT_INTERP), DT_NEEDED libraries transitively, and
 * files every process opens. Sets `prefetch_rank` (1-based) on the inodes, in first-access
 * order. Best effort: unreadable or foreign files are skipped.
 */
int idx_prefetch_compute(struct idx_tree *t, const struct idx_config *cfg, idx_read_file_fn rd,
			 void *ud);
