/*
 * Sandbox cgroups, v1 or v2, detected once per process:
 *   v2: /sys/fs/cgroup/cgroup.controllers lists "memory" -> one group
 *       /sys/fs/cgroup/isorun/<id> (memory.max, memory.swap.max, pids.max, cpu.max).
 *   v1: a hierarchy per controller, /sys/fs/cgroup/{memory,pids,cpu}/isorun/<id>
 *       (memory.limit_in_bytes + memory.memsw.limit_in_bytes when swap accounting exists,
 *       pids.max, cpu.cfs_quota_us/cpu.cfs_period_us).
 * A controller's group exists only when its limit is asked for: moving a task between v1
 * cgroups waits for an RCU grace period per hierarchy (cgroup_threadgroup_rwsem), which was
 * the largest single cost of booting a sandbox (~5-10 ms each under load). Without limits
 * the sandbox stays in its creator's cgroups and ps reports no cgroup memory for it.
 * $ISORUN_CGROUP_ROOT overrides /sys/fs/cgroup (tests).
 */
#include "sandbox.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum cg_mode { CG_UNKNOWN, CG_NONE, CG_V1, CG_V2 };
static enum cg_mode cg_mode_cached = CG_UNKNOWN;

static const char *cg_root(void)
{
	const char *e = getenv("ISORUN_CGROUP_ROOT");
	return e && *e ? e : "/sys/fs/cgroup";
}

static enum cg_mode cg_detect(void)
{
	if (cg_mode_cached != CG_UNKNOWN)
		return cg_mode_cached;
	char p[512], buf[512] = "";
	snprintf(p, sizeof(p), "%s/cgroup.controllers", cg_root());
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0) {
			buf[n] = 0;
			if (strstr(buf, "memory") && strstr(buf, "pids"))
				return (cg_mode_cached = CG_V2);
		}
	}
	snprintf(p, sizeof(p), "%s/memory/memory.limit_in_bytes", cg_root());
	if (access(p, F_OK) == 0)
		return (cg_mode_cached = CG_V1);
	log_warn("no usable cgroup hierarchy: resource limits are not applied");
	return (cg_mode_cached = CG_NONE);
}

static int write_str(const char *path, const char *val)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, val, strlen(val));
	if (n < 0)
		return -errno;
	return 0;
}

static int write_at(const char *dir, const char *file, const char *val)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	int r = write_str(p, val);
	if (r < 0)
		log_error("cgroup: cannot write '%s' to %s: %s", val, p, strerror(-r));
	return r;
}

static const char *v1_ctrls[] = {"memory", "pids", "cpu"};

static void group_path(char *out, size_t n, const char *ctrl, const char *id)
{
	if (ctrl)
		snprintf(out, n, "%s/%s/isorun/%s", cg_root(), ctrl, id);
	else
		snprintf(out, n, "%s/isorun/%s", cg_root(), id);
}

static bool wanted(const struct run_cgroup_limits *l, const char *ctrl)
{
	if (!strcmp(ctrl, "memory"))
		return l->memory_bytes != 0;
	if (!strcmp(ctrl, "pids"))
		return l->pids_max != 0;
	return l->cpu_millis != 0;
}

static bool any_limit(const struct run_cgroup_limits *l)
{
	return l->memory_bytes || l->pids_max || l->cpu_millis;
}

int run_cgroup_create(const char *id, const struct run_cgroup_limits *l)
{
	char p[512], v[64];
	int r;
	if (!any_limit(l))
		return 0;
	switch (cg_detect()) {
	case CG_NONE:
		if (l->memory_bytes || l->cpu_millis || l->pids_max)
			return cm_log_ret(-EOPNOTSUPP, "resource limits need cgroups");
		return 0;
	case CG_V2: {
		char parent[512];
		snprintf(parent, sizeof(parent), "%s/isorun", cg_root());
		if (mkdir(parent, 0755) < 0 && errno != EEXIST)
			return cm_log_ret(-errno, "cgroup: cannot create %s", parent);
		(void)write_at(parent, "cgroup.subtree_control", "+memory +pids +cpu");
		group_path(p, sizeof(p), NULL, id);
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return cm_log_ret(-errno, "cgroup: cannot create %s", p);
		if (l->memory_bytes) {
			snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_bytes);
			if ((r = write_at(p, "memory.max", v)) < 0)
				return r;
			(void)write_at(p, "memory.swap.max", "0");
		}
		if (l->pids_max) {
			snprintf(v, sizeof(v), "%u", l->pids_max);
			if ((r = write_at(p, "pids.max", v)) < 0)
				return r;
		}
		if (l->cpu_millis) {
			snprintf(v, sizeof(v), "%u 100000", l->cpu_millis * 100);
			if ((r = write_at(p, "cpu.max", v)) < 0)
				return r;
		}
		return 0;
	}
	case CG_V1:
	default:
		for (size_t i = 0; i < ARRAY_SIZE(v1_ctrls); i++) {
			if (!wanted(l, v1_ctrls[i]))
				continue;
			group_path(p, sizeof(p), v1_ctrls[i], id);
			if ((r = cm_mkdir_p(AT_FDCWD, p, 0755)) < 0)
				return cm_log_ret(r, "cgroup: cannot create %s: %s", p,
						  strerror(-r));
		}
		if (l->memory_bytes) {
			group_path(p, sizeof(p), "memory", id);
			snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_bytes);
			if ((r = write_at(p, "memory.limit_in_bytes", v)) < 0)
				return r;
			char sw[600];
			snprintf(sw, sizeof(sw), "%s/memory.memsw.limit_in_bytes", p);
			if (access(sw, F_OK) == 0)
				(void)write_at(p, "memory.memsw.limit_in_bytes", v);
			(void)write_at(p, "memory.swappiness", "0");
		}
		if (l->pids_max) {
			group_path(p, sizeof(p), "pids", id);
			snprintf(v, sizeof(v), "%u", l->pids_max);
			if ((r = write_at(p, "pids.max", v)) < 0)
				return r;
		}
		if (l->cpu_millis) {
			group_path(p, sizeof(p), "cpu", id);
			if ((r = write_at(p, "cpu.cfs_period_us", "100000")) < 0)
				return r;
			snprintf(v, sizeof(v), "%u", l->cpu_millis * 100);
			if ((r = write_at(p, "cpu.cfs_quota_us", v)) < 0)
				return r;
		}
		return 0;
	}
}

int run_cgroup_join(const char *id, const struct run_cgroup_limits *l)
{
	return run_cgroup_attach(id, l, 0);
}

int run_cgroup_attach(const char *id, const struct run_cgroup_limits *l, pid_t pid)
{
	char p[600], v[32];
	int r;
	if (!any_limit(l))
		return 0;
	snprintf(v, sizeof(v), "%d", (int)pid);
	switch (cg_detect()) {
	case CG_V2:
		group_path(p, sizeof(p) - 16, NULL, id);
		strcat(p, "/cgroup.procs");
		return write_str(p, v);
	case CG_V1:
		for (size_t i = 0; i < ARRAY_SIZE(v1_ctrls); i++) {
			if (!wanted(l, v1_ctrls[i]))
				continue;
			group_path(p, sizeof(p) - 16, v1_ctrls[i], id);
			strcat(p, "/cgroup.procs");
			if ((r = write_str(p, v)) < 0)
				return r;
		}
		return 0;
	default:
		return 0;
	}
}

static int rmdir_retry(const char *p)
{
	/* a v1 group can stay busy for a moment after its last task was reaped */
	for (int i = 0; i < 2000; i++) {
		if (rmdir(p) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	return -EBUSY;
}

int run_cgroup_destroy(const char *id)
{
	char p[512];
	int r = 0, e;
	switch (cg_detect()) {
	case CG_V2:
		group_path(p, sizeof(p), NULL, id);
		if ((r = rmdir_retry(p)) < 0)
			log_error("cgroup: cannot remove %s: %s", p, strerror(-r));
		return r;
	case CG_V1:
		for (size_t i = 0; i < ARRAY_SIZE(v1_ctrls); i++) {
			group_path(p, sizeof(p), v1_ctrls[i], id);
			if ((e = rmdir_retry(p)) < 0) {
				log_error("cgroup: cannot remove %s: %s", p, strerror(-e));
				r = e;
			}
		}
		return r;
	default:
		return 0;
	}
}

uint64_t run_cgroup_memory_usage(const char *id)
{
	char p[600], buf[64];
	switch (cg_detect()) {
	case CG_V2:
		group_path(p, sizeof(p) - 16, NULL, id);
		strcat(p, "/memory.current");
		break;
	case CG_V1:
		group_path(p, sizeof(p) - 32, "memory", id);
		strcat(p, "/memory.usage_in_bytes");
		break;
	default:
		return 0;
	}
	_cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strtoull(buf, NULL, 10);
}
