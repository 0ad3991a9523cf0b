/*
 * Fuzz target: the base64 decoder of the auth file (cm_base64_decode). Any input is decoded
 * into a buffer of exactly len / 4 * 3 bytes (ASan sees a write past it) and must be refused
 * with -EPROTO or decoded; the input's bytes, encoded and decoded again, must come back.
 */
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	uint8_t *out = malloc(size / 4 * 3 + 1);
	char *enc = malloc(CM_BASE64_LEN(size));
	uint8_t *back = malloc(size + 3);
	if (!out || !enc || !back)
		abort();
	ssize_t n = cm_base64_decode((const char *)data, size, out);
	if (n != -EPROTO && (n < 0 || (size_t)n > size / 4 * 3))
		abort();
	cm_base64_encode(data, size, enc);
	if (strlen(enc) != CM_BASE64_LEN(size) - 1 ||
	    cm_base64_decode(enc, strlen(enc), back) != (ssize_t)size ||
	    (size && memcmp(back, data, size) != 0))
		abort();
	free(out);
	free(enc);
	free(back);
	return 0;
}
