/*
 * The mount daemon (`isorun fsd`): one per index per host. Opens the store and the index,
 * connects to the image's registry when it has one, checks that the mount can read, mounts
 * FUSE, reports readiness, then serves: the libfuse multithreaded loop, the chunk engine's
 * threads, and the control socket thread (ctl.c describes the protocol).
 */
#include "engine.h"
#include "fs/cache.h"
#include "fs/mount.h"
#include "fs_int.h"
#include "ops.h"
#include "push.h"

#include "indexer/index.h"
#include "indexer/store.h"
#include "registry/client.h"
#include "registry/ref.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct daemon {
	const char *root;
	const char *hex;
	char *dir, *mnt;
	struct fuse_session *se;
	struct fs_engine *e;
	struct fs_push *push; /* page-cache pusher, or NULL */
	unsigned keep_warm_s;
	int listen_fd; /* ctl thread only after start */
	int wake[2];   /* main -> ctl thread: stop */
	pthread_t ctl;
	bool ctl_started;
	uint64_t idle_at_ns;  /* ctl thread only: keep-warm deadline, 0 = none */
	uint64_t audit_at_ns; /* ctl thread only: next look for holders that are gone */
	/* The index's chunk references, recorded in the background (refs_main). */
	struct idx_store *store;
	const struct idx_reader *rd;
	pthread_t refs;
	bool refs_started, refs_stop;
	bool index_fresh; /* the caller has just fetched the index: the registry check runs on
			   * the references thread, first */
};

DEFINE_CLEANUP_FUNC(struct fs_engine, fs_engine_free)

/* How often a mount in use looks for holders that went away without releasing
 * (ISORUN_FSD_AUDIT_S overrides: the tests). */
static uint64_t audit_every_ns(void)
{
	const char *v = getenv("ISORUN_FSD_AUDIT_S");
	char *end;
	unsigned long s = v ? strtoul(v, &end, 10) : 0;
	return (v && *v && !*end && s > 0 && s <= 86400 ? s : 60) * 1000000000ull;
}

/* Stop answering (so nobody takes a new reference on a dying daemon) and unmount: the
 * session loop ends when the kernel drops the connection. */
static void shutdown_now(struct daemon *d)
{
	if (d->listen_fd >= 0) {
		_cleanup_free_ char *sock = cm_strdupf("%s/ctl.sock", d->dir);
		if (sock)
			unlink(sock);
		close(d->listen_fd);
		d->listen_fd = -1;
	}
	fuse_session_exit(d->se);
	if (umount2(d->mnt, MNT_DETACH) < 0)
		log_warn("fsd: unmounting %s: %s", d->mnt, strerror(errno));
	log_info("fsd: %s unmounted", d->mnt);
}

/*
 * Under the mount's lock: drop the references of holders that are gone (a sandbox directory
 * removed by hand, a bind unmounted with plain umount) and, when no holder is left, unmount
 * (`expired`: the keep-warm delay has passed) or start the keep-warm delay.
 */
static void audit_holders(struct daemon *d, bool expired)
{
	_cleanup_free_ char *lock = cm_strdupf("%s/lock", d->dir);
	if (!lock)
		return;
	_cleanup_close_ int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0)
		return;
	struct fs_holders h;
	if (fs_holders_load(d->dir, &h) == 0) {
		size_t before = fs_holders_count(&h);
		if (fs_holders_audit(d->hex, &h) > 0 && fs_holders_store(d->dir, &h) < 0)
			log_warn("fsd: cannot rewrite the holders of %s", d->mnt);
		if (fs_holders_count(&h) == 0) {
			if (expired || d->keep_warm_s == 0)
				shutdown_now(d);
			else if (before > 0 || !d->idle_at_ns)
				d->idle_at_ns =
				    cm_now_ns() + (uint64_t)d->keep_warm_s * 1000000000ull;
		}
		fs_holders_free(&h);
	}
	flock(fd, LOCK_UN);
}

/* Add the mount's holders to its stats ("holders": the named ones, and "unnamed_holders"),
 * read without the lock: a snapshot; left out when the file cannot be read. */
static void add_holders(struct daemon *d, json_object *j)
{
	struct fs_holders h;
	if (fs_holders_load(d->dir, &h) < 0)
		return;
	json_object *a = json_object_new_array();
	for (size_t k = 0; a && k < h.n; k++)
		json_object_array_add(a, json_object_new_string(h.v[k]));
	if (a) {
		json_object_object_add(j, "holders", a);
		json_object_object_add(j, "unnamed_holders", json_object_new_int64(h.anon));
	}
	fs_holders_free(&h);
}

static void serve_one(struct daemon *d, int fd)
{
	char req[256];
	size_t len = 0;
	/* The client writes one short line and shuts down its side. */
	while (len < sizeof(req) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2000) <= 0)
			return;
		ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	req[len] = 0;
	req[strcspn(req, "\r\n")] = 0;
	if (!strcmp(req, "ping")) {
		cm_write_full(fd, "ok\n", 3);
	} else if (!strcmp(req, "stats")) {
		json_object *j = NULL;
		if (fs_engine_stats(d->e, &j) == 0) {
			fs_push_stats(d->push, j);
			add_holders(d, j);
			const char *out = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
			if (out) {
				cm_write_full(fd, out, strlen(out));
				cm_write_full(fd, "\n", 1);
			}
			json_object_put(j);
		}
	} else if (!strcmp(req, "last") || !strncmp(req, "last ", 5)) {
		/* "last [S]": the last holder went; unmount after S s (the releaser's delay) or
		 * after the mount's own */
		unsigned s = d->keep_warm_s;
		if (req[4] && cm_parse_uint(req + 5, 0, FS_KEEP_WARM_MAX, &s) < 0) {
			cm_write_full(fd, "error bad delay\n", 16);
			return;
		}
		cm_write_full(fd, "ok\n", 3);
		if (s == 0)
			shutdown_now(d);
		else
			d->idle_at_ns = cm_now_ns() + (uint64_t)s * 1000000000ull;
	} else {
		cm_write_full(fd, "error unknown request\n", 22);
	}
}

/* The registry check of a mount reported ready before it (--index-fresh: its caller has just
 * fetched the index from that registry). A failure is the same message a synchronous check
 * gives; the reads that need the registry then fail with EIO after their own retries. */
static void check_in_background(struct daemon *d)
{
	int r = fs_engine_check(d->e);
	if (r < 0)
		log_error("fsd: the registry check of %s failed after the mount was reported ready: "
			  "reads of chunks not in the store will fail",
			  idx_reader_digest(d->rd));
	else
		log_debug("fsd: registry answered (after the mount)");
}

/*
 * Record which chunks the mounted index references (fs_cache_record_index): 50,000 rows for
 * a big image, ~200 ms of CPU that `isorun pull` used to spend before anything could start.
 * Here it runs once the program's start is over (fs_engine_starting; 30 s at most: a cold
 * chromium start spent 56 ms of the two vCPUs it was short of on it), at the prefetch
 * workers' nice 10, in transactions of a thousand rows (the store's lock is free between
 * two). What a daemon stopped early did not record, eviction/prune/stats record before they
 * read it. First, for a mount reported ready before its registry check, that check.
 */
#define REFS_WAIT_MAX_MS 30000
static void *refs_main(void *arg)
{
	struct daemon *d = arg;
	if (d->index_fresh)
		check_in_background(d);
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), 10) < 0)
		log_debug("fsd: cannot lower the references thread's priority: %s",
			  strerror(errno));
	for (int ms = 0; ms < REFS_WAIT_MAX_MS && fs_engine_starting(d->e) &&
			 !__atomic_load_n(&d->refs_stop, __ATOMIC_RELAXED);
	     ms += 50)
		usleep(50 * 1000);
	int r = fs_cache_record_index_ex(d->store, d->rd, &d->refs_stop);
	if (r < 0 && r != -ECANCELED)
		log_warn("fsd: recording the chunk references of %s failed: %s (eviction, prune "
			 "and stats will record them)",
			 idx_reader_digest(d->rd), strerror(-r));
	else if (r == 0)
		log_debug("fsd: chunk references recorded");
	return NULL;
}

static void *ctl_main(void *arg)
{
	struct daemon *d = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = d->wake[0], .events = POLLIN},
				      {.fd = d->listen_fd, .events = POLLIN}};
		uint64_t now = cm_now_ns(), at = d->idle_at_ns ? d->idle_at_ns : d->audit_at_ns;
		int timeout = at > now ? (int)((at - now) / 1000000ull) + 1 : 0;
		int n = poll(p, d->listen_fd >= 0 ? 2 : 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (p[0].revents & POLLIN))
			break;
		if (n == 0 && d->idle_at_ns && cm_now_ns() >= d->idle_at_ns) {
			d->idle_at_ns = 0;
			audit_holders(d, true);
			continue;
		}
		if (n == 0 && !d->idle_at_ns && cm_now_ns() >= d->audit_at_ns) {
			audit_holders(d, false);
			d->audit_at_ns = cm_now_ns() + audit_every_ns();
			continue;
		}
		if (d->listen_fd >= 0 && (p[1].revents & POLLIN)) {
			int c = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0) {
				serve_one(d, c);
				close(c);
			}
		}
	}
	return NULL;
}

static int ctl_listen(struct daemon *d)
{
	_cleanup_close_ int dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	unlinkat(dfd, "ctl.sock", 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/ctl.sock", dfd);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Access control is the directory's: mounts/<hex>/ is 0700, owned by root. */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	d->listen_fd = fd;
	return 0;
}

/*
 * The kernel caps a FUSE mount's readahead at 128 KiB whatever max_readahead says; raise
 * its BDI's read_ahead_kb so sequential readers get 1 MiB requests. The device comes from
 * mountinfo: touching the mount itself here would wait for our own, not yet running, loop.
 * Best effort (needs root and sysfs).
 */
static void raise_readahead(const char *mnt)
{
	char real[PATH_MAX];
	if (!realpath(mnt, real))
		return;
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	char line[4096], dev[32] = "";
	while (fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX], d[32];
		if (sscanf(line, "%*s %*s %31s %*s %4095s", d, mp) == 2 && !strcmp(mp, real))
			snprintf(dev, sizeof(dev), "%s", d); /* the last one is ours */
	}
	if (!dev[0])
		return;
	_cleanup_free_ char *p = cm_strdupf("/sys/class/bdi/%s/read_ahead_kb", dev);
	_cleanup_close_ int fd = p ? open(p, O_WRONLY | O_CLOEXEC) : -1;
	if (fd < 0 || write(fd, "1024", 4) != 4)
		log_debug("fsd: cannot raise readahead of %s (%s)", mnt, p ? p : "?");
}

static void report(int *ready_fd, int r)
{
	if (*ready_fd < 0)
		return;
	int32_t v = r;
	if (write(*ready_fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		log_warn("fsd: cannot report readiness: %s", strerror(errno));
	close(*ready_fd);
	*ready_fd = -1;
}

static int open_remote(struct idx_store *s, const char *idig, const struct fs_mount_opts *o,
		       struct reg_client **ret_c, struct reg_ref **ret_ref)
{
	_cleanup_free_ char *repo = NULL;
	int r = fs_cache_get_remote(s, idig, &repo);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	const char *why = NULL;
	if ((r = reg_ref_parse(repo, ret_ref, &why)) < 0)
		return cm_log_ret(r, "fsd: recorded repository '%s' is invalid: %s", repo,
				  why ? why : "?");
	/* Every registry call must end within the read deadline: a read never hangs. */
	unsigned t = o->fetch_timeout_s;
	_cleanup_free_ char *schemes = fs_scheme_cache(s);
	struct reg_options ro = {
	    .scheme_cache = schemes,
	    .authfile = o->authfile,
	    .timeout_s = t,
	    .connect_timeout_s = t < 15 ? t : 15,
	    .low_speed_time_s = t < 30 ? t : 30,
	    .retry_base_ms = 100,
	    .insecure_registries = fs_insecure_registries(),
	};
	if ((r = reg_client_new(&ro, ret_c)) < 0) {
		reg_ref_free(*ret_ref);
		*ret_ref = NULL;
	}
	return r;
}

int fs_daemon_run(const char *root, const char *idig, const struct fs_mount_opts *opts,
		  const char *mountpoint, int ready_fd)
{
	struct fs_mount_opts o = *opts;
	fs_mount_opts_defaults(&o);
	int cr = fs_cache_config(root, o.cache_max ? NULL : &o.cache_max, &o.cache_min_free);
	if (cr < 0) {
		report(&ready_fd, cr);
		return cr;
	}
	struct daemon d = {.root = root,
			   .listen_fd = -1,
			   .wake = {-1, -1},
			   .keep_warm_s = o.keep_warm_s,
			   .audit_at_ns = cm_now_ns() + audit_every_ns()};
	_cleanup_(idx_store_freep) struct idx_store *s = NULL;
	_cleanup_(idx_reader_freep) struct idx_reader *rd = NULL;
	_cleanup_(fs_engine_freep) struct fs_engine *e = NULL;
	_cleanup_free_ char *ipath = NULL, *mopts = NULL;
	struct fs_ops_ctx octx;
	struct reg_client *client = NULL;
	struct reg_ref *repo = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config cfg;
	bool mounted = false, handlers = false;
	int r;

	if (!cm_digest_valid(idig)) {
		r = cm_log_ret(-EINVAL, "fsd: '%s' is not an index digest", idig);
		goto out;
	}
	d.hex = idig + 7;
	d.dir = fs_mount_dir(root, d.hex);
	d.mnt = strdup(mountpoint);
	if (!d.dir || !d.mnt) {
		r = -ENOMEM;
		goto out;
	}
	log_debug("fsd: start");
	if ((r = idx_store_open(root, &s)) < 0 || (r = fs_cache_init(s)) < 0 ||
	    (r = idx_store_index_path(s, idig, &ipath)) < 0)
		goto out;
	log_debug("fsd: store open");
	/* An index this mount's caller has just fetched (index_fresh) was verified against its
	 * digest as it was decoded, then stored: validated here, not hashed again (7 ms). */
	r = o.index_fresh ? idx_reader_open_digest(ipath, idig, &rd) : idx_reader_open(ipath, &rd);
	if (r < 0) {
		log_error("fsd: cannot open index %s: %s", idig, strerror(-r));
		goto out;
	}
	if (strcmp(idx_reader_digest(rd), idig) != 0) {
		r = cm_log_ret(-EBADMSG, "fsd: index file %s does not match its name", ipath);
		goto out;
	}
	log_debug("fsd: index validated");
	if ((r = fs_cache_add_index(s, idig)) < 0)
		goto out;
	if ((r = open_remote(s, idig, &o, &client, &repo)) < 0)
		goto out;
	log_debug("fsd: registry client ready");
	if ((r = fs_engine_new(s, rd, client, repo, &o, &e)) < 0)
		goto out;
	log_debug("fsd: engine ready");
	/* Prefetch first: on a distant registry the check's round trip (a connection and a HEAD,
	 * 40-60 ms on the bench's 20 ms WAN) then overlaps the first ranges of the startup
	 * list. A failed check stops the engine (out:). */
	d.index_fresh = o.index_fresh;
	if ((r = fs_engine_start(e)) < 0 || (!d.index_fresh && (r = fs_engine_check(e)) < 0))
		goto out;
	if (!d.index_fresh)
		log_debug("fsd: registry answered");
	d.e = e;

	octx = (struct fs_ops_ctx){
	    .r = rd, .e = e, .timeout = 86400.0 * 365, .statfs_lock = PTHREAD_MUTEX_INITIALIZER};
	mopts = cm_strdupf(
	    "ro,allow_other,default_permissions,fsname=isorun:%s,subtype=isorun,max_read=%u", d.hex,
	    1u << 20);
	if (!mopts || fuse_opt_add_arg(&args, "isorun-fsd") < 0 ||
	    fuse_opt_add_arg(&args, "-o") < 0 || fuse_opt_add_arg(&args, mopts) < 0) {
		r = -ENOMEM;
		goto out;
	}
	d.se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &octx);
	if (!d.se) {
		r = cm_log_ret(-EINVAL, "fsd: cannot create the FUSE session");
		goto out;
	}
	if (fuse_set_signal_handlers(d.se) < 0) {
		r = -EIO;
		goto out;
	}
	handlers = true;
	if ((r = ctl_listen(&d)) < 0) {
		log_error("fsd: control socket in %s: %s", d.dir, strerror(-r));
		goto out;
	}
	if (fuse_session_mount(d.se, d.mnt) != 0) {
		r = cm_log_ret(-EIO, "fsd: cannot mount FUSE on %s", d.mnt);
		goto out;
	}
	mounted = true;
	raise_readahead(d.mnt);
	/* Pages for the kernel's cache as the startup list arrives; not while recording a
	 * trace (it learns from the reads) nor without background prefetch. */
	if (!o.trace_path && o.prefetch != FS_PREFETCH_NONE && !o.no_push) {
		int pr = fs_push_start(e, rd, fuse_session_fd(d.se), &d.push);
		if (pr < 0)
			log_warn("fsd: no page pusher: %s", strerror(-pr));
	}
	octx.push = d.push;
	if (pipe2(d.wake, O_CLOEXEC) < 0 || pthread_create(&d.ctl, NULL, ctl_main, &d) != 0) {
		r = -errno;
		goto out;
	}
	d.ctl_started = true;
	{
		char pid[32];
		int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
		_cleanup_close_ int dfd = open(d.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || cm_write_file_atomic(dfd, "pid", pid, (size_t)n, 0644, false) < 0)
			log_warn("fsd: cannot write %s/pid", d.dir);
	}
	log_info("fsd: %s mounted on %s", idig, d.mnt);
	report(&ready_fd, 0);
	d.store = s;
	d.rd = rd;
	if (pthread_create(&d.refs, NULL, refs_main, &d) == 0) {
		d.refs_started = true;
	} else {
		log_warn("fsd: cannot start the references thread: chunk references of %s are "
			 "recorded by the next eviction, prune or stats",
			 idig);
		if (d.index_fresh)
			check_in_background(&d);
	}

	/*
	 * FUSE_USE_VERSION 35 maps fuse_session_loop_mt() to the 3.2 entry point, which takes
	 * this public two-field struct; the opaque fuse_loop_cfg_create() object of API 3.12
	 * must not be passed to it (3.14 then reads its version field as clone_fd and its
	 * clone_fd as max_idle_threads = 1, so every request ended one worker and started the
	 * next: a thread, a /dev/fuse clone and a teardown per read). Workers are kept, at most
	 * libfuse's default of 10 for this entry point.
	 */
	cfg = (struct fuse_loop_config){.clone_fd = 1, .max_idle_threads = 16};
	r = fuse_session_loop_mt(d.se, &cfg);
	if (r > 0)
		r = 0; /* ended by a signal */
	else if (r < 0)
		log_error("fsd: session loop: %s", strerror(-r));
out:
	report(&ready_fd, r < 0 ? r : -EIO);
	if (d.refs_started) {
		__atomic_store_n(&d.refs_stop, true, __ATOMIC_RELAXED);
		pthread_join(d.refs, NULL);
	}
	if (d.ctl_started) {
		if (write(d.wake[1], "x", 1) < 0)
			log_warn("fsd: waking the control thread: %s", strerror(errno));
		pthread_join(d.ctl, NULL);
	}
	if (d.listen_fd >= 0) {
		_cleanup_free_ char *sock = cm_strdupf("%s/ctl.sock", d.dir);
		if (sock)
			unlink(sock);
		close(d.listen_fd);
	}
	if (d.wake[0] >= 0) {
		close(d.wake[0]);
		close(d.wake[1]);
	}
	fs_push_free(d.push);
	if (e)
		fs_engine_stop(e);
	if (mounted)
		fuse_session_unmount(d.se);
	if (handlers)
		fuse_remove_signal_handlers(d.se);
	if (d.se)
		fuse_session_destroy(d.se);
	fuse_opt_free_args(&args);
	free(d.dir);
	free(d.mnt);
	return r;
}
