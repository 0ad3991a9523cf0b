/*
 * Fuzz target: the layer reader. The first byte selects the layer's compression (0 plain,
 * 1 gzip, 2 zstd, modulo 3); the rest is the layer blob, applied twice (as layer 1
 * and layer 2, so replacement, whiteouts and hardlinks across layers are exercised) to a
 * merged tree through the indexer's private idx_layer_read, with file data going through
 * the real chunker and worker pool into a scratch store. When both layers are accepted the
 * tree is serialised with the real writer, and the oracle is that the reader accepts that
 * index and can walk all of it: a tar the indexer takes must never give an index the reader
 * refuses.
 */
#include "layer.h"
#include "pool.h"
#include "tree.h"
#include "writer.h"

#include "idx_testlib.h"

#include "indexer/index.h"
#include "indexer/source.h"
#include "indexer/store.h"

#include "common/buf.h"
#include "common/digest.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct mem_stream {
	struct idx_stream base;
	const uint8_t *p;
	size_t len, pos;
};

/* Hands out the input in uneven pieces, as a network stream would. */
static ssize_t mem_read(struct idx_stream *st, void *buf, size_t len)
{
	struct mem_stream *m = (struct mem_stream *)st;
	size_t n = m->len - m->pos;
	size_t piece = 1 + (m->pos * 7919) % 65536;
	n = n < len ? n : len;
	n = n < piece ? n : piece;
	memcpy(buf, m->p + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

static void mem_close(struct idx_stream *st)
{
}

static struct idx_store *store;
static char *store_dir;

static void cleanup(void)
{
	idx_store_free(store);
	tl_rm_rf(store_dir);
	free(store_dir);
}

static void init(void)
{
	if (store)
		return;
	store_dir = tl_mkdtemp("fuzz-idx-layer");
	if (!store_dir || idx_store_open(store_dir, &store) < 0)
		abort();
	atexit(cleanup); /* the store's tmp/ is emptied after every input; the rest goes here */
	cm_log_set_level(getenv("FUZZ_VERBOSE") ? CM_LOG_DEBUG : CM_LOG_ERROR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	if (size < 1)
		return 0;
	static const enum idx_compression comps[] = {IDX_COMP_NONE, IDX_COMP_GZIP, IDX_COMP_ZSTD};
	enum idx_compression comp = comps[data[0] % 3];
	data++;
	size--;
	struct idx_tree *tree = NULL;
	struct idx_pool *pool = NULL;
	int r = idx_tree_new(&tree);
	if (r == 0)
		r = idx_pool_new(store, 1, 1, &pool);
	for (uint32_t layer = 1; r == 0 && layer <= 2; layer++) {
		struct mem_stream st = {{mem_read, mem_close}, data, size, 0};
		struct idx_layer_result lr = {0};
		idx_tree_begin_layer(tree, layer);
		r = idx_layer_read(tree, pool, &st.base, comp, "fuzz", &lr);
		if (r == 0) {
			/* The blob digest covers the whole input; uncompressed, so does the
			 * diff_id. */
			uint8_t d[32];
			cm_sha256(data, size, d);
			if (lr.size != size || memcmp(d, lr.digest, 32) ||
			    (comp == IDX_COMP_NONE && memcmp(d, lr.diff_id, 32)))
				abort();
		} else if (r != -EPROTO && r != -EFBIG && r != -ENOMEM) {
			fprintf(stderr, "unexpected error %d\n", r);
			abort();
		}
	}
	int fr = pool ? idx_pool_finish(pool) : 0;
	if (r == 0 && fr < 0)
		abort();
	if (r == 0) {
		static const uint8_t zero[32];
		struct cm_buf out;
		cm_buf_init(&out, 0);
		struct idx_writer_input win = {
		    .tree = tree,
		    .pool = pool,
		    .manifest_digest = zero,
		    .config_digest = (const uint8_t *)"\x44\x13\x6f\xa3\x55\xb3\x67\x8a\x11\x46\xad"
						      "\x16\xf7\xe8\x64\x9e\x94\xfb\x4f\xc2\x1f\xe7"
						      "\x7e\x83\x10\xc0\x60\xf6\x1c\xaa\xff\x8a",
		    .config = "{}",
		    .config_len = 2,
		    .pack_target = 1u << 20,
		};
		if (idx_writer_write(&win, &out) < 0)
			abort();
		struct idx_reader *rd;
		if (idx_reader_open_mem(out.data, out.len, &rd) < 0) {
			fprintf(stderr, "the writer produced an index the reader rejects\n");
			abort();
		}
		tl_walk(rd);
		idx_reader_free(rd);
		cm_buf_fini(&out);
	}
	idx_pool_free(pool);
	idx_tree_free(tree);
	return 0;
}
