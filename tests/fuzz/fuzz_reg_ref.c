/* Fuzz the reference parser: parse, and for accepted input check that the canonical form
 * parses back to itself, and that the policy check and limits hold. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	struct reg_ref *r = NULL;
	const char *why = NULL;
	if (reg_ref_parse(s, &r, &why) == 0) {
		char *f = reg_ref_format(r);
		struct reg_ref *r2 = NULL;
		if (!f || reg_ref_parse(f, &r2, NULL) != 0)
			abort();
		char *f2 = reg_ref_format(r2);
		if (!f2 || strcmp(f, f2) != 0)
			abort();
		if (strlen(r->domain) + 1 + strlen(r->path) > REG_NAME_MAX)
			abort();
		if (r->tag && strlen(r->tag) > REG_TAG_MAX)
			abort();
		(void)reg_ref_api_host(r);
		free(f);
		free(f2);
		reg_ref_free(r2);
		reg_ref_free(r);
	} else if (r != NULL) {
		abort();
	}
	free(s);
	return 0;
}
