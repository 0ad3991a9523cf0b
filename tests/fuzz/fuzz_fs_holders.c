/*
 * Fuzz target: the holders file of a shared mount (fs_holders_parse, fs/src/holders.c). Any
 * input parses without a crash or a leak; what it parsed, written out and parsed again,
 * gives the same holders (no holder is lost or invented by a rewrite), and the audit of
 * the parsed holders keeps to the parsed ones.
 */
#include "fs_int.h"

#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	struct fs_holders h, again;
	if (fs_holders_parse((const char *)data, size, &h) < 0)
		abort();
	struct cm_buf b;
	cm_buf_init(&b, 1 << 20);
	if (fs_holders_format(&h, &b) < 0 || fs_holders_parse((const char *)b.data, b.len, &again) < 0)
		abort();
	if (again.anon != h.anon || again.n != h.n)
		abort();
	for (size_t k = 0; k < h.n; k++)
		if (strcmp(again.v[k], h.v[k]) != 0 || !h.v[k][0] || strchr(h.v[k], '\n'))
			abort();
	size_t n = h.n;
	size_t dropped = fs_holders_audit("0000000000000000000000000000000000000000000000000000000000000000", &h);
	if (dropped > n || h.n != n - dropped)
		abort();
	cm_buf_fini(&b);
	fs_holders_free(&h);
	fs_holders_free(&again);
	return 0;
}
