/*
 * Fuzz target: the first-touch trace parser (indexer/trace.h). The input is a trace file;
 * the parser either accepts it (and then every id it returns must appear in the input as
 * 64 lowercase hex digits, in order) or refuses it with -EPROTO. The input is copied into a
 * buffer of exactly its size so that ASan sees any read past it.
 */
#include "indexer/trace.h"

#include "common/digest.h"
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
	char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	struct idx_trace t;
	int k = idx_trace_parse("fuzz", copy, size, &t);
	if (k == 0) {
		/* Every id, formatted back, occurs in the input after the previous one. */
		const char *p = copy, *end = copy + size;
		for (uint32_t i = 0; i < t.n; i++) {
			char hex[65];
			cm_hex_format(t.ids[i], 32, hex);
			const char *f = memmem(p, (size_t)(end - p), hex, 64);
			if (!f)
				abort();
			p = f + 64;
		}
		if (!cm_digest_valid(t.index))
			abort();
		idx_trace_fini(&t);
	} else if (k != -EPROTO && k != -ENOMEM) {
		abort();
	}
	if (t.ids || t.n)
		abort(); /* freed on every path */
	free(copy);
	return 0;
}
