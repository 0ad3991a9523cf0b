/* Private declarations of the isorun agent (the in-sandbox PID 1). */
#pragma once

#include "agent/protocol.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_MAX_GROUPS 256

struct agent_user {
	uint32_t uid, gid;
	uint32_t groups[AGENT_MAX_GROUPS]; /* supplementary groups, primary gid included */
	int ngroups;
	char home[AGENT_MAX_PATH];
};

/*
 * Resolve a user spec ("", "name", "uid", "name:group", "uid:gid") through the sandbox's
 * /etc/passwd and /etc/group. An unknown numeric uid is allowed (gid 0, no supplementary
 * groups, HOME=/); an unknown name is -ENOENT. *errmsg is a static string on failure.
 * Not thread-safe (the agent is single-threaded; called in the forked child).
 */
int agent_user_resolve(const char *spec, struct agent_user *ret, const char **errmsg);
/* The same from the two files' contents (NUL-terminated, either may be NULL: no such file),
 * which are split in place. For tests and the fuzz target. */
int agent_user_resolve_db(const char *spec, char *passwd, char *group, struct agent_user *ret,
			  const char **errmsg);
