/*
 * Fuzz target: the index reader. The input is an index blob; idx_reader_open_mem validates
 * it and, when it accepts, every accessor is called over everything the index claims to
 * hold (tl_walk); idx_index_config_mem (header and section table only) must refuse cleanly
 * or return the config, the same one when the full validation accepts. The input is copied into a
 * buffer of exactly its size so that ASan sees any read past the blob. An input that starts as a
 * zstd frame is first the index layer of an artifact (IDX_MEDIA_INDEX_ZSTD) through
 * idx_artifact_index_decode, whose index it is when it decodes.
 */
#include "idx_testlib.h"

#include "indexer/artifact.h"
#include "indexer/build.h"
#include "indexer/index.h"

#include "common/buf.h"

#include "common/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int once;
	if (!once++)
		cm_log_set_level(getenv("FUZZ_VERBOSE") ? CM_LOG_DEBUG : CM_LOG_ERROR);
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	static const uint8_t zmagic[4] = {0x28, 0xb5, 0x2f, 0xfd};
	if (size >= 4 && !memcmp(data, zmagic, 4)) {
		struct cm_buf b = {.data = copy, .len = size, .alloc = size};
		char d[CM_DIGEST_STR_SIZE];
		int z = idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, "sha256:fuzz",
						  16u << 20, d);
		if (z != 0 && z != -EBADMSG && z != -EFBIG && z != -ENOMEM)
			abort();
		if (z != 0) {
			free(b.data);
			return 0;
		}
		copy = b.data;
		size = b.len;
	}
	/* The header-only read of the sandbox verbs: a clean refusal or the config. */
	char *cfg = NULL;
	size_t cfg_len = 0;
	int c = idx_index_config_mem(copy, size, &cfg, &cfg_len);
	if (c != 0 && c != -EPROTO && c != -ENOTSUP && c != -ENOMEM)
		abort();
	struct idx_reader *r;
	int k = idx_reader_open_mem(copy, size, &r);
	if (k == 0) {
		uint64_t a = tl_walk(r), b = tl_walk(r);
		if (a != b)
			abort(); /* an immutable reader answers the same twice */
		size_t n;
		const char *json = idx_reader_config_json(r, &n);
		/* what the full validation accepts, the header-only read accepts alike */
		if (c != 0 || n != cfg_len || memcmp(json, cfg, n) != 0)
			abort();
		idx_reader_free(r);
	} else if (k != -EPROTO && k != -ENOTSUP && k != -ENOMEM) {
		abort();
	}
	free(cfg);
	free(copy);
	return 0;
}
