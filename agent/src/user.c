/*
 * User and group resolution from the image's own /etc/passwd and /etc/group (read inside
 * the sandbox root), without NSS: the agent must not depend on anything in the image but
 * those two text files. Files are read with a cap (AGENT_USERDB_CAP); malformed lines are
 * skipped, as getpwent(3) does.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AGENT_USERDB_CAP (4u << 20)

static char *read_db(const char *path)
{
	/* O_NONBLOCK and a regular-file check: an image whose /etc/passwd is a FIFO or a
	 * device must not hang the exec (the agent waits for its child to exec) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return NULL;
	}
	size_t len = 0, alloc = 0;
	char *data = NULL;
	for (;;) {
		if (alloc - len < 4097) {
			if (alloc >= AGENT_USERDB_CAP)
				break; /* over the cap: use what was read */
			size_t n = alloc ? alloc * 2 : 8192;
			char *d = realloc(data, n + 1);
			if (!d)
				break;
			data = d;
			alloc = n;
		}
		ssize_t n = read(fd, data + len, alloc - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (data)
		data[len] = 0;
	return data;
}

/* Split a colon-separated line into at most `max` fields in place; returns the count. */
static int split(char *line, char **f, int max)
{
	int n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == ':') {
			*p = 0;
			f[n++] = p + 1;
		}
	return n;
}

static bool parse_id(const char *s, uint32_t *ret)
{
	if (!*s)
		return false;
	unsigned long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 0xfffffffeul) /* (uid_t)-1 is not a valid id */
			return false;
	}
	*ret = (uint32_t)v;
	return true;
}

int agent_user_resolve_db(const char *spec, char *pw, char *gr, struct agent_user *ret,
			  const char **errmsg)
{
	static char msg[AGENT_MAX_USER + 64]; /* an error naming the user or group */
	char buf[AGENT_MAX_USER];
	char *upart, *gpart;
	uint32_t uid = 0, gid = 0;
	bool have_uid = false, have_gid = false, name_known = false;
	char name[256] = "";

	memset(ret, 0, sizeof(*ret));
	snprintf(ret->home, sizeof(ret->home), "/");
	if (strlen(spec) >= sizeof(buf)) {
		*errmsg = "user spec too long";
		return -EINVAL;
	}
	strcpy(buf, spec[0] ? spec : "0");
	upart = buf;
	gpart = strchr(buf, ':');
	if (gpart)
		*gpart++ = 0;

	if (parse_id(upart, &uid))
		have_uid = true;
	for (char *line = pw, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		char *f[7];
		uint32_t u, g;
		if (split(line, f, 7) != 7 || !parse_id(f[2], &u) || !parse_id(f[3], &g))
			continue;
		if (have_uid ? u != uid : strcmp(f[0], upart) != 0)
			continue;
		uid = u;
		gid = g;
		have_uid = have_gid = true;
		name_known = true;
		snprintf(name, sizeof(name), "%s", f[0]);
		if (f[5][0])
			snprintf(ret->home, sizeof(ret->home), "%s", f[5]);
		break;
	}
	if (!have_uid) {
		snprintf(msg, sizeof(msg), "no such user '%s' in the image's /etc/passwd", upart);
		*errmsg = msg;
		return -ENOENT;
	}
	if (!have_gid)
		gid = 0;

	bool want_group_name = gpart && !parse_id(gpart, &gid);
	bool found_group = false;
	if (gpart && !want_group_name)
		found_group = true;
	ret->ngroups = 0;
	for (char *line = gr, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		char *f[4];
		uint32_t g;
		if (split(line, f, 4) != 4 || !parse_id(f[2], &g))
			continue;
		if (want_group_name && !found_group && !strcmp(f[0], gpart)) {
			gid = g;
			found_group = true;
		}
		if (!name_known)
			continue;
		/* member list: comma-separated user names */
		for (char *m = f[3], *mn; m && *m; m = mn) {
			mn = strchr(m, ',');
			if (mn)
				*mn++ = 0;
			/* the last slot is the primary group's */
			if (!strcmp(m, name) && ret->ngroups < AGENT_MAX_GROUPS - 1)
				ret->groups[ret->ngroups++] = g;
		}
	}
	if (gpart && !found_group) {
		snprintf(msg, sizeof(msg), "no such group '%s' in the image's /etc/group", gpart);
		*errmsg = msg;
		return -ENOENT;
	}
	ret->uid = uid;
	ret->gid = gid;
	ret->groups[ret->ngroups++] = gid;
	return 0;
}

int agent_user_resolve(const char *spec, struct agent_user *ret, const char **errmsg)
{
	char *pw = read_db("/etc/passwd"), *gr = read_db("/etc/group");
	int r = agent_user_resolve_db(spec, pw, gr, ret, errmsg);
	free(pw);
	free(gr);
	return r;
}
