/*
 * Fuzz target: the agent's user and group resolution (agent/src/user.c) over an image's
 * /etc/passwd and /etc/group, which the image controls. Input: SPEC NUL PASSWD NUL GROUP
 * (missing parts: empty spec, no file). A success names at least the primary group and at
 * most AGENT_MAX_GROUPS; HOME is a terminated string.
 */
#include "agent.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A malloc'd, NUL-terminated copy of the next NUL-separated part (NULL at the end). */
static char *part(const uint8_t *data, size_t size, size_t *off)
{
	if (*off > size)
		return NULL;
	const uint8_t *p = data + *off, *nul = memchr(p, 0, size - *off);
	size_t n = nul ? (size_t)(nul - p) : size - *off;
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = 0;
	*off += n + 1;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	char *spec = part(data, size, &off), *pw = part(data, size, &off),
	     *gr = part(data, size, &off);
	struct agent_user u;
	const char *err = NULL;
	int r = agent_user_resolve_db(spec ? spec : "", pw, gr, &u, &err);
	if (r == 0) {
		if (u.ngroups < 1 || u.ngroups > AGENT_MAX_GROUPS ||
		    u.groups[u.ngroups - 1] != u.gid || !memchr(u.home, 0, sizeof(u.home)))
			abort();
	} else if (!err || !*err) {
		abort();
	}
	free(spec);
	free(pw);
	free(gr);
	return 0;
}
