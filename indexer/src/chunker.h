/*
 * Content-defined chunking (FastCDC with normalised chunking). Boundaries depend only on
 * the bytes, so an insertion shifts boundaries only locally and unchanged regions of an
 * edited file produce the same chunks.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Overridable at build time (-DIDX_CDC_AVG=...) only so bench/index_cdc.sh can measure other
 * sizes; every released build uses these values (they are recorded in each index header). */
#ifndef IDX_CDC_MIN
#define IDX_CDC_MIN (16u << 10)
#endif
#ifndef IDX_CDC_AVG
#define IDX_CDC_AVG (64u << 10)
#endif
#ifndef IDX_CDC_MAX
#define IDX_CDC_MAX (256u << 10)
#endif
#define IDX_CDC_MAX_BYTES IDX_CDC_MAX

struct idx_cdc_params {
	uint32_t min, avg, max; /* avg a power of two; min < avg < max */
};

/*
 * Length of the first chunk of `data` (1..len). When len < max and no boundary is found,
 * returns len (the caller decides whether more data may follow).
 */
size_t idx_cdc_cut(const struct idx_cdc_params *p, const uint8_t *data, size_t len);

/*
 * Streaming wrapper: feed bytes, get complete chunks through the callback. The callback may
 * keep no pointer into the buffer after it returns; a negative return aborts and is passed on.
 */
typedef int (*idx_cdc_emit_fn)(void *userdata, const uint8_t *chunk, size_t len);

struct idx_cdc {
	struct idx_cdc_params p;
	uint8_t *buf; /* 4 * max bytes */
	size_t start, end;
	idx_cdc_emit_fn emit;
	void *userdata;
};

int idx_cdc_init(struct idx_cdc *c, const struct idx_cdc_params *p, idx_cdc_emit_fn emit,
		 void *userdata);
void idx_cdc_fini(struct idx_cdc *c);
int idx_cdc_feed(struct idx_cdc *c, const void *data, size_t len);
/* Emit everything left (end of a file); the state is then ready for the next file. */
int idx_cdc_finish(struct idx_cdc *c);
