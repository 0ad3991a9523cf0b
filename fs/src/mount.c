/*
 * Shared mounts: acquire/release with a reference count under flock, daemon start-up
 * (fork, setsid, fork, exec `isorun fsd`: the daemon never inherits the caller's threads
 * or locks), bind mounts for `isorun mount`, and finding the mount behind a directory
 * through /proc/self/mountinfo (source "isorun:<index hex>", type fuse.isorun).
 */
#include "fs/cache.h"
#include "fs/image.h"
#include "fs/mount.h"
#include "fs_int.h"

#include "indexer/store.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct locked {
	int fd;
	char *dir;
};

static int lock_mount(const char *root, const char *hex, struct locked *l)
{
	l->fd = -1;
	l->dir = fs_mount_dir(root, hex);
	if (!l->dir)
		return -ENOMEM;
	int r = cm_mkdir_p(AT_FDCWD, l->dir, 0700);
	_cleanup_free_ char *mnt = cm_strdupf("%s/mnt", l->dir);
	_cleanup_free_ char *lock = cm_strdupf("%s/lock", l->dir);
	if (r == 0 && (!mnt || !lock))
		r = -ENOMEM;
	if (r == 0 && mkdir(mnt, 0755) < 0 && errno != EEXIST)
		r = -errno;
	if (r == 0 && (l->fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		r = -errno;
	while (r == 0 && flock(l->fd, LOCK_EX) < 0)
		if (errno != EINTR)
			r = -errno;
	if (r < 0) {
		if (l->fd >= 0)
			close(l->fd);
		free(l->dir);
		l->dir = NULL;
		l->fd = -1;
	}
	return r;
}

static void unlock_mount(struct locked *l)
{
	if (l->fd >= 0)
		close(l->fd); /* releases the flock */
	free(l->dir);
	l->fd = -1;
	l->dir = NULL;
}

/* "dir <absolute path>": the holder line of a directory (realpath when it exists). */
static char *holder_line_dir(const char *dir)
{
	char real[PATH_MAX];
	if (!dir || !*dir)
		return NULL;
	if (realpath(dir, real))
		return strchr(real, '\n') ? NULL : cm_strdupf("dir %s", real);
	if (dir[0] != '/' || strchr(dir, '\n'))
		return NULL;
	return cm_strdupf("dir %s", dir);
}

/* "bind <mnt ns inode> <absolute path>" for `isorun mount` onto `dir` (which exists). */
static char *holder_line_bind(const char *dir)
{
	char real[PATH_MAX];
	unsigned long long ns;
	if (!realpath(dir, real) || strchr(real, '\n') || fs_holder_mntns(&ns) < 0)
		return NULL;
	return cm_strdupf("bind %llu %s", ns, real);
}

/* argv for `EXE --root ROOT fsd ...`. Heap strings in a NULL-terminated vector. */
static char **daemon_argv(const char *exe, const char *root, const char *idig, const char *mnt,
			  const struct fs_mount_opts *o)
{
	static const char *const modes[] = {"all", "startup", "none"};
	char **v = calloc(40, sizeof(*v));
	if (!v)
		return NULL;
	size_t n = 0;
	bool ok = true;
#define ARG(...)                                                                                   \
	do {                                                                                       \
		if (!(v[n++] = cm_strdupf(__VA_ARGS__)))                                           \
			ok = false;                                                                \
	} while (0)
	ARG("%s", exe);
	ARG("--root=%s", root);
	if (o->debug)
		ARG("--debug");
	ARG("fsd");
	ARG("--index=%s", idig);
	ARG("--mountpoint=%s", mnt);
	ARG("--ready-fd=3");
	ARG("--prefetch=%s", modes[o->prefetch]);
	if (o->bwlimit)
		ARG("--bwlimit=%llu", (unsigned long long)o->bwlimit);
	if (o->cache_max)
		ARG("--cache-max=%llu", (unsigned long long)o->cache_max);
	if (o->trace_path)
		ARG("--record-trace=%s", o->trace_path);
	if (o->fetch_timeout_s)
		ARG("--fetch-timeout=%u", o->fetch_timeout_s);
	if (o->keep_warm_s)
		ARG("--keep-warm=%u", o->keep_warm_s);
	if (o->prefetch_threads)
		ARG("--prefetch-threads=%u", o->prefetch_threads);
	if (o->request_max)
		ARG("--request-max=%llu", (unsigned long long)o->request_max);
	if (o->fg_spill)
		ARG("--fg-spill=%llu", (unsigned long long)o->fg_spill);
	if (o->mem_cache)
		ARG("--mem-cache=%llu", (unsigned long long)o->mem_cache);
	if (o->startup_hold)
		ARG("--startup-hold=%llu", (unsigned long long)o->startup_hold);
	if (o->authfile)
		ARG("--authfile=%s", o->authfile);
	if (o->verify_local)
		ARG("--verify-local");
	if (o->chunks_zstd)
		ARG("--chunk-format=zstd");
	if (o->no_push)
		ARG("--no-page-push");
	if (o->index_fresh)
		ARG("--index-fresh");
#undef ARG
	if (!ok) {
		fs_strv_free(v, n);
		return NULL;
	}
	return v;
}

/* Start the daemon and wait until it reports (0: mounted). */
static int spawn_daemon(const char *root, const char *idig, const char *dir, const char *mnt,
			const struct fs_mount_opts *o)
{
	char exe[PATH_MAX];
	if (o->exe) {
		snprintf(exe, sizeof(exe), "%s", o->exe);
	} else {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n < 0)
			return -errno;
		exe[n] = 0;
	}
	_cleanup_free_ char *log = cm_strdupf("%s/daemon.log", dir);
	char **argv = daemon_argv(exe, root, idig, mnt, o);
	if (!log || !argv) {
		fs_strv_free(argv, argv ? 40 : 0);
		return -ENOMEM;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		fs_strv_free(argv, 40);
		return -errno;
	}
	pid_t pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls until exec: the caller may be multithreaded. */
		setsid();
		if (fork() != 0)
			_exit(0);
		int w = p[1];
		if (w == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(w, 3) < 0)
			_exit(127);
		int nul = open("/dev/null", O_RDONLY);
		int lf = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (nul < 0 || lf < 0 || dup2(nul, 0) < 0 || dup2(lf, 1) < 0 || dup2(lf, 2) < 0)
			_exit(127);
		if (chdir("/") < 0)
			_exit(127);
		/* Nothing else of the caller's: a pipe held open here would keep a caller that
		 * waits for its EOF (a shell's $(...)) waiting as long as the daemon lives. */
		close_range(4, ~0u, 0);
		execv(exe, argv);
		_exit(127);
	}
	close(p[1]);
	fs_strv_free(argv, 40);
	if (pid < 0) {
		close(p[0]);
		return -errno;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	/* The daemon checks the registry before mounting: allow for its deadline. */
	unsigned t = (o->fetch_timeout_s ? o->fetch_timeout_s : 30) + 60;
	int32_t res = -EIO;
	struct pollfd pf = {.fd = p[0], .events = POLLIN};
	int pr;
	while ((pr = poll(&pf, 1, (int)t * 1000)) < 0 && errno == EINTR)
		;
	if (pr == 1 && read(p[0], &res, sizeof(res)) != (ssize_t)sizeof(res))
		res = -EIO;
	else if (pr == 0)
		res = -ETIMEDOUT;
	close(p[0]);
	if (res < 0)
		log_error("mount: the daemon for %s failed (%s); see %s", idig, strerror(-res),
			  log);
	return res;
}

static int lookup_index(const char *root, const char *ref, char idig[72])
{
	/* Without opening the database when the store knows (the sandbox verbs pass an index
	 * digest: half a millisecond of every `isorun run`). */
	if (fs_image_lookup_fast(root, ref, idig) == 0)
		return 0;
	_cleanup_(idx_store_freep) struct idx_store *s = NULL;
	int r = idx_store_open(root, &s);
	if (r < 0)
		return r;
	r = fs_image_lookup(s, ref, idig);
	if (r == -ENOENT)
		log_error("mount: %s is not in the store (isorun pull it first)", ref);
	return r;
}

/* Take the reference of holder `line` (one per holder: taking it again is a no-op). */
static int acquire_as(const char *root, const char *ref, const struct fs_mount_opts *opts,
		      const char *line, char **ret_mountpoint)
{
	static const struct fs_mount_opts defaults;
	const struct fs_mount_opts *o = opts ? opts : &defaults;
	char idig[72];
	int r = lookup_index(root, ref, idig);
	if (r < 0)
		return r;
	const char *hex = idig + 7;
	struct locked l;
	if ((r = lock_mount(root, hex, &l)) < 0)
		return cm_log_ret(r, "mount: cannot lock the mount of %s: %s", idig, strerror(-r));
	_cleanup_free_ char *mnt = cm_strdupf("%s/mnt", l.dir);
	if (!mnt) {
		unlock_mount(&l);
		return -ENOMEM;
	}
	struct fs_holders h = {0};
	if (fs_ctl_call(root, hex, "ping", 5000, NULL) == 0) {
		r = fs_holders_load(l.dir, &h);
	} else {
		/* No live daemon: clear what a dead one left (a disconnected mount); the holders
		 * of that one are not holders of the new one. */
		if (umount2(mnt, MNT_DETACH) == 0)
			log_warn("mount: cleaned up the dead mount of %s", idig);
		r = spawn_daemon(root, idig, l.dir, mnt, o);
	}
	if (r == 0)
		r = fs_holders_add(&h, line);
	if (r == 0)
		r = fs_holders_store(l.dir, &h);
	fs_holders_free(&h);
	unlock_mount(&l);
	if (r < 0)
		return r;
	*ret_mountpoint = TAKE_PTR(mnt);
	return 0;
}

int fs_mount_acquire(const char *root, const char *ref, const struct fs_mount_opts *opts,
		     const char *holder_dir, char **ret_mountpoint)
{
	_cleanup_free_ char *line = holder_line_dir(holder_dir);
	if (!line)
		return cm_log_ret(-EINVAL, "mount: the holder '%s' is not an existing directory or an "
					   "absolute path without a newline",
				  holder_dir ? holder_dir : "(null)");
	return acquire_as(root, ref, opts, line, ret_mountpoint);
}

/* Index hex of the isorun mount at `path` (a mount point), from mountinfo. */
static int mount_hex_of(const char *path, char hex[65], char *ret_real, size_t real_len)
{
	char real[PATH_MAX];
	if (!realpath(path, real))
		return -errno;
	if (ret_real)
		snprintf(ret_real, real_len, "%s", real);
	char v[16][65];
	int n = fs_mounts_at(real, v, 16);
	if (n < 0)
		return n;
	if (n == 0 || !v[n - 1][0]) /* the last one is the visible mount */
		return -EINVAL;
	memcpy(hex, v[n - 1], 65);
	return 0;
}

static int hex_of(const char *arg, char hex[65])
{
	if (cm_digest_valid(arg)) {
		snprintf(hex, 65, "%s", arg + 7);
		return 0;
	}
	return mount_hex_of(arg, hex, NULL, 0);
}

/*
 * Give back holder `line`'s reference and drop those of holders that are gone; when none is
 * left, tell the daemon (it unmounts now or after its keep-warm delay). -ENOENT when `line`
 * held none.
 */
static int release_as(const char *root, const char *hex, const char *line, int keep_warm_s)
{
	struct locked l;
	int r = lock_mount(root, hex, &l);
	if (r < 0)
		return r;
	struct fs_holders h;
	r = fs_holders_load(l.dir, &h);
	size_t before = fs_holders_count(&h);
	bool had = r == 0 && fs_holders_remove(&h, line);
	if (r == 0 && !had && h.anon > 0) {
		h.anon--; /* a reference an older release took, unnamed */
		had = true;
	}
	if (r == 0 && before > 0)
		fs_holders_audit(hex, &h);
	if (r == 0 && fs_holders_count(&h) != before)
		r = fs_holders_store(l.dir, &h);
	if (r == 0 && before > 0 && fs_holders_count(&h) == 0) {
		char req[32] = "last";
		if (keep_warm_s >= 0)
			snprintf(req, sizeof(req), "last %d", keep_warm_s);
		int cr = fs_ctl_call(root, hex, req, 10000, NULL);
		if (cr < 0 && cr != -ENOENT && cr != -ECONNREFUSED)
			log_warn("mount: daemon of sha256:%s did not answer (%s)", hex,
				 strerror(-cr));
	}
	fs_holders_free(&h);
	unlock_mount(&l);
	return r < 0 ? r : had ? 0 : -ENOENT;
}

int fs_mount_release(const char *root, const char *mountpoint, const char *holder_dir,
		     int keep_warm_s)
{
	char hex[65];
	int r = hex_of(mountpoint, hex);
	if (r < 0)
		return cm_log_ret(-ENOENT, "release: %s is not an isorun mount", mountpoint);
	_cleanup_free_ char *line = holder_line_dir(holder_dir);
	if (!line)
		return cm_log_ret(-EINVAL, "release: the holder '%s' is not an absolute path",
				  holder_dir ? holder_dir : "(null)");
	return release_as(root, hex, line, keep_warm_s);
}

int fs_mount_bind(const char *root, const char *ref, const struct fs_mount_opts *o, const char *dir)
{
	char hex[65];
	if (mount_hex_of(dir, hex, NULL, 0) == 0)
		return cm_log_ret(-EBUSY, "mount: %s is already an isorun mount (sha256:%.12s)", dir,
				  hex);
	_cleanup_free_ char *line = holder_line_bind(dir);
	if (!line)
		return cm_log_ret(-EINVAL, "mount: %s: no such directory, or a newline in its path",
				  dir);
	_cleanup_free_ char *mnt = NULL;
	int r = acquire_as(root, ref, o, line, &mnt);
	if (r < 0)
		return r;
	if (mount(mnt, dir, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
		r = -errno;
		log_error("mount: cannot bind %s on %s: %s", mnt, dir, strerror(-r));
		umount2(dir, MNT_DETACH);
		if (hex_of(mnt, hex) == 0)
			release_as(root, hex, line, -1);
		return r;
	}
	return 0;
}

int fs_mount_unbind(const char *root, const char *dir, bool lazy)
{
	char hex[65], real[PATH_MAX];
	int r = mount_hex_of(dir, hex, real, sizeof(real));
	if (r < 0)
		return cm_log_ret(-EINVAL, "umount: %s is not an isorun mount", dir);
	_cleanup_free_ char *mdir = fs_mount_dir(root, hex);
	_cleanup_free_ char *mnt = mdir ? cm_strdupf("%s/mnt", mdir) : NULL;
	if (!mnt)
		return -ENOMEM;
	char rmnt[PATH_MAX];
	if (realpath(mnt, rmnt) && !strcmp(rmnt, real))
		return cm_log_ret(-EINVAL,
				  "umount: %s is the shared mount itself; holders "
				  "release it",
				  dir);
	/* (named while the path resolves, as when the bind was made) */
	_cleanup_free_ char *line = holder_line_bind(real);
	if (!line)
		return cm_log_ret(-EINVAL, "umount: %s: cannot name its holder", dir);
	if (umount2(real, lazy ? MNT_DETACH : 0) < 0) {
		r = -errno;
		return cm_log_ret(r, "umount: %s: %s%s", dir, strerror(-r),
				  r == -EBUSY ? " (use --lazy to detach it)" : "");
	}
	r = release_as(root, hex, line, -1);
	if (r == -ENOENT)
		log_warn("umount: %s held no reference on the image (mounted by another namespace, "
			 "or by an older release)",
			 dir);
	return r == -ENOENT ? 0 : r;
}

int fs_mount_stats(const char *root, const char *dir, char **ret_json)
{
	char hex[65];
	if (hex_of(dir, hex) < 0)
		return cm_log_ret(-EINVAL, "stats: %s is not an isorun mount", dir);
	char *ans = NULL;
	int r = fs_ctl_call(root, hex, "stats", 10000, &ans);
	if (r < 0)
		return cm_log_ret(r == -ENOENT ? -ECONNREFUSED : r,
				  "stats: the daemon of %s does not answer: %s", dir, strerror(-r));
	ans[strcspn(ans, "\n")] = 0;
	*ret_json = ans;
	return 0;
}

int fs_mount_stats_all(const char *root, char **ret_json)
{
	char **live = NULL;
	size_t n = 0;
	int r = fs_mounts_live(root, &live, &n);
	if (r < 0)
		return r;
	struct cm_buf b;
	cm_buf_init(&b, 0);
	r = cm_buf_append_str(&b, "{\"mounts\":[");
	size_t shown = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		char *ans = NULL;
		if (fs_ctl_call(root, live[i] + 7, "stats", 10000, &ans) < 0)
			continue; /* went away meanwhile */
		ans[strcspn(ans, "\n")] = 0;
		if (shown++)
			r = cm_buf_append_str(&b, ",");
		if (r == 0)
			r = cm_buf_append_str(&b, ans);
		free(ans);
	}
	if (r == 0)
		r = cm_buf_append_str(&b, "]}");
	fs_strv_free(live, n);
	if (r == 0 && !(*ret_json = cm_buf_steal_str(&b)))
		r = -ENOMEM;
	cm_buf_fini(&b);
	return r;
}
