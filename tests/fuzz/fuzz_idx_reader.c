/*
 * Fuzz target: the index reader. The input is an index blob; idx_reader_open_mem validates
 * it and, when it accepts, every accessor is called over everything the index claims to
 * hold (tl_walk). The input is copied into a buffer of exactly its size so that ASan sees
 * any read past the blob.
 */
#include "idx_testlib.h"

#include "indexer/index.h"

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
	struct idx_reader *r;
	int k = idx_reader_open_mem(copy, size, &r);
	if (k == 0) {
		uint64_t a = tl_walk(r), b = tl_walk(r);
		if (a != b)
			abort(); /* an immutable reader answers the same twice */
		idx_reader_free(r);
	} else if (k != -EPROTO && k != -ENOTSUP && k != -ENOMEM) {
		abort();
	}
	free(copy);
	return 0;
}
