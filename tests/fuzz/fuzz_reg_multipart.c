/* Fuzz the Range wire helpers: the first bytes choose up to 4 ranges over a 4 KiB blob and a
 * boundary; the rest is a multipart/byteranges body (and a Content-Range value). Copies must
 * stay inside the range buffers (ASan) and never count more than requested once parts do
 * not overlap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/client.h"
#include "registry/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9)
		return 0;
	size_t n = 1 + data[0] % 4;
	struct reg_range rg[4];
	uint8_t *bufs[4];
	for (size_t i = 0; i < n; i++) {
		uint64_t off = (uint64_t)data[1 + 2 * i] * 16;
		uint64_t len = 1 + (uint64_t)data[2 + 2 * i] * 4;
		bufs[i] = malloc(len);
		rg[i] = (struct reg_range){.off = off, .len = len, .buf = bufs[i]};
	}
	char hdr[512];
	(void)reg_range_header(rg, n, hdr, sizeof(hdr));
	uint64_t filled[4] = {0};
	const uint8_t *body = data + 9;
	size_t len = size - 9;
	(void)reg_multipart_parse("XyZ", body, len, rg, n, filled);
	uint64_t a, b, t;
	size_t line = 0;
	while (line < len && line < 200 && body[line] != '\n')
		line++;
	(void)reg_content_range_parse((const char *)body, line, &a, &b, &t);
	char ct[300], bd[71];
	size_t m = len < sizeof(ct) - 1 ? len : sizeof(ct) - 1;
	memcpy(ct, body, m);
	ct[m] = 0;
	(void)reg_multipart_boundary(ct, bd);
	memset(filled, 0, sizeof(filled));
	reg_ranges_copy(rg, n, filled, (uint64_t)data[8] * 8, body, len);
	for (size_t i = 0; i < n; i++) {
		if (filled[i] > rg[i].len)
			abort();
		free(bufs[i]);
	}
	return 0;
}
