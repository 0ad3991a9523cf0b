/* Fuzz the WWW-Authenticate parser: input is split at newlines into several header values
 * appended to one list, as the client does for several headers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reg_challenges c;
	reg_challenges_init(&c);
	const char *p = (const char *)data, *end = p + size;
	while (p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		size_t before = c.n;
		int r = reg_challenges_parse(&c, p, n);
		if (r < 0 && c.n != before)
			abort(); /* failures append nothing */
		if (!nl)
			break;
		p = nl + 1;
	}
	for (size_t i = 0; i < c.n; i++) {
		if (!c.v[i].scheme || !c.v[i].scheme[0])
			abort();
		for (size_t k = 0; k < c.v[i].n_params; k++)
			(void)reg_challenge_param(&c.v[i], c.v[i].params[k].name);
	}
	(void)reg_challenges_find(&c, "bearer");
	reg_challenges_fini(&c);
	return 0;
}
