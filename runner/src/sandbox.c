/*
 * Runner context, sandbox state (config.json, state.json) and lifecycle dispatch to the
 * backend. See sandbox.h for the state directory layout.
 */
#include "sandbox.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define CONFIG_JSON_CAP (1u << 20)

struct run_ctx {
	char *root;
	char *agent;
	int sbfd; /* $root/sandboxes */
	struct run_image_ops image_ops;
	bool have_image_ops;
};

DEFINE_CLEANUP_FUNC(json_object, json_object_put)
DEFINE_CLEANUP_FUNC(struct run_sandbox, run_sandbox_free)
DEFINE_CLEANUP_FUNC(struct run_config, run_config_free)

int run_ctx_new(const char *root, struct run_ctx **ret)
{
	struct run_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->sbfd = -1;
	ctx->root = strdup(root ? root : cm_root_default());
	if (!ctx->root) {
		run_ctx_free(ctx);
		return -ENOMEM;
	}
	_cleanup_free_ char *sb = cm_strdupf("%s/sandboxes", ctx->root);
	if (!sb) {
		run_ctx_free(ctx);
		return -ENOMEM;
	}
	int r = cm_mkdir_p(AT_FDCWD, sb, 0700);
	if (r < 0) {
		log_error("cannot create %s: %s", sb, strerror(-r));
		run_ctx_free(ctx);
		return r;
	}
	ctx->sbfd = open(sb, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ctx->sbfd < 0) {
		r = -errno;
		run_ctx_free(ctx);
		return r;
	}
	*ret = ctx;
	return 0;
}

void run_ctx_free(struct run_ctx *ctx)
{
	if (!ctx)
		return;
	if (ctx->sbfd >= 0)
		close(ctx->sbfd);
	free(ctx->root);
	free(ctx->agent);
	free(ctx);
}

int run_ctx_set_agent(struct run_ctx *ctx, const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	free(ctx->agent);
	ctx->agent = p;
	return 0;
}

void run_ctx_set_image_ops(struct run_ctx *ctx, const struct run_image_ops *ops)
{
	ctx->have_image_ops = ops != NULL;
	if (ops)
		ctx->image_ops = *ops;
}

const char *run_ctx_root(struct run_ctx *ctx)
{
	return ctx->root;
}

const char *run_ctx_agent_path(struct run_ctx *ctx)
{
	if (ctx->agent)
		return ctx->agent;
	const char *e = getenv("ISORUN_AGENT");
	if (e && *e)
		return (ctx->agent = strdup(e));
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			const char *cands[] = {"%s/isorun-agent", "%s/../agent/isorun-agent",
					       "%s/../libexec/isorun/isorun-agent"};
			for (size_t i = 0; i < ARRAY_SIZE(cands); i++) {
				_cleanup_free_ char *p = NULL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
				p = cm_strdupf(cands[i], exe);
#pragma GCC diagnostic pop
				if (p && access(p, X_OK) == 0)
					return (ctx->agent = TAKE_PTR(p));
			}
		}
	}
	return (ctx->agent = strdup("/usr/libexec/isorun/isorun-agent"));
}

/* ---- image config ---- */

void run_config_free(struct run_config *c)
{
	if (!c)
		return;
	cm_strv_free(c->env);
	free(c->working_dir);
	free(c->user);
	free(c);
}

static int config_from_json(json_object *o, struct run_config **ret)
{
	_cleanup_(run_config_freep) struct run_config *c = calloc(1, sizeof(*c));
	json_object *v = NULL;
	int r;
	if (!c)
		return -ENOMEM;
	if (!json_object_is_type(o, json_type_object))
		return -EPROTO;
	json_object_object_get_ex(o, "Env", &v);
	if ((r = cm_json_strv(v, NULL, &c->env)) < 0)
		return r;
	if ((r = cm_json_str(o, "WorkingDir", NULL, &c->working_dir)) < 0 ||
	    (r = cm_json_str(o, "User", NULL, &c->user)) < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

int run_config_parse(const char *json, size_t len, struct run_config **ret)
{
	if (len > CONFIG_JSON_CAP)
		return -EFBIG;
	_cleanup_(json_object_putp) json_object *o = NULL;
	int r = cm_json_parse_object(json, len, &o);
	if (r < 0)
		return r == -ENOMEM ? r : cm_log_ret(-EPROTO, "image config: not a JSON object");
	json_object *cfg;
	if (json_object_object_get_ex(o, "config", &cfg) &&
	    json_object_is_type(cfg, json_type_object))
		return config_from_json(cfg, ret);
	return config_from_json(o, ret);
}

/* ---- state ---- */

void run_sandbox_free(struct run_sandbox *sb)
{
	if (!sb)
		return;
	if (sb->dirfd >= 0)
		close(sb->dirfd);
	free(sb->dir);
	free(sb->lower_dir);
	free(sb->image_key);
	free(sb->image_name);
	free(sb->backend);
	free(sb->hostname);
	run_config_free(sb->config);
	free(sb);
}

static bool id_valid(const char *id)
{
	if (strlen(id) != RUN_ID_LEN)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static int read_json(int dirfd, const char *name, json_object **ret)
{
	struct cm_buf b;
	cm_buf_init(&b, CONFIG_JSON_CAP);
	int r = cm_read_file(dirfd, name, &b);
	if (r < 0) {
		cm_buf_fini(&b);
		return r;
	}
	r = cm_json_parse_object((const char *)b.data, b.len, ret);
	cm_buf_fini(&b);
	return r;
}

static int64_t json_int(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

/*
 * Publish `o` as dirfd/name atomically (readers see the old or the new file, never a part),
 * not durably (no fsync: the state describes processes, which a host crash ends anyway).
 *
 * A file that exists is replaced with RENAME_EXCHANGE and the old one unlinked, not renamed
 * over: renaming over an existing file makes ext4 (auto_da_alloc) start the new file's
 * writeback inside rename(), which took 0.1-14 ms per state change on a busy disk; the
 * exchange path does not.
 */
static int write_json(int dirfd, const char *name, json_object *o)
{
	static unsigned long counter;
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	char tmp[NAME_MAX + 1];
	if (!s)
		return -ENOMEM;
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%lu", name, (long)getpid(),
			 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	_cleanup_close_ int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = cm_write_full(fd, s, strlen(s));
	if (r == 0 && renameat2(dirfd, tmp, dirfd, name, RENAME_EXCHANGE) < 0) {
		/* ENOENT: nothing to exchange with yet; EINVAL: a filesystem without exchange */
		if ((errno != ENOENT && errno != EINVAL) || renameat(dirfd, tmp, dirfd, name) < 0)
			r = -errno;
	}
	/* tmp now names the old contents (exchanged), nothing (renamed), or the failed write */
	unlinkat(dirfd, tmp, 0);
	return r;
}

static const char *status_names[] = {"created", "running", "stopped", "stale"};

const char *run_status_name(enum run_status s)
{
	return (unsigned)s < ARRAY_SIZE(status_names) ? status_names[s] : "unknown";
}

int run_sandbox_save_state(struct run_sandbox *sb)
{
	_cleanup_(json_object_putp) json_object *o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "status", json_object_new_string(run_status_name(sb->status)));
	json_object_object_add(o, "pid", json_object_new_int64(sb->pid));
	json_object_object_add(o, "pid_start", json_object_new_int64((int64_t)sb->pid_start));
	if (sb->pool_key[0])
		json_object_object_add(o, "pool", json_object_new_string(sb->pool_key));
	return write_json(sb->dirfd, "state.json", o);
}

static int save_config(struct run_sandbox *sb)
{
	_cleanup_(json_object_putp) json_object *o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "id", json_object_new_string(sb->id));
	json_object_object_add(o, "backend", json_object_new_string(sb->backend));
	if (sb->lower_dir)
		json_object_object_add(o, "lower_dir", json_object_new_string(sb->lower_dir));
	if (sb->image_key)
		json_object_object_add(o, "image_key", json_object_new_string(sb->image_key));
	if (sb->image_name)
		json_object_object_add(o, "image_name", json_object_new_string(sb->image_name));
	json_object_object_add(o, "hostname", json_object_new_string(sb->hostname));
	json_object_object_add(o, "net",
			       json_object_new_string(sb->net == RUN_NET_HOST ? "host" : "none"));
	json_object_object_add(o, "userns", json_object_new_boolean(sb->userns));
	json_object_object_add(o, "memory", json_object_new_int64((int64_t)sb->memory_bytes));
	json_object_object_add(o, "cpu_millis", json_object_new_int64(sb->cpu_millis));
	json_object_object_add(o, "pids", json_object_new_int64(sb->pids_max));
	json_object_object_add(o, "created", json_object_new_int64(sb->created));
	if (sb->keep_warm_s >= 0)
		json_object_object_add(o, "keep_warm_s", json_object_new_int64(sb->keep_warm_s));
	json_object *cfg = json_object_new_object();
	json_object_object_add(o, "config", cfg);
	if (sb->config) {
		json_object *env = json_object_new_array();
		json_object_object_add(cfg, "Env", env);
		if (sb->config->env)
			for (char **e = sb->config->env; *e; e++)
				json_object_array_add(env, json_object_new_string(*e));
		if (sb->config->working_dir)
			json_object_object_add(cfg, "WorkingDir",
					       json_object_new_string(sb->config->working_dir));
		if (sb->config->user)
			json_object_object_add(cfg, "User",
					       json_object_new_string(sb->config->user));
	}
	return write_json(sb->dirfd, "config.json", o);
}

int run_sandbox_load(struct run_ctx *ctx, const char *id, struct run_sandbox **ret)
{
	if (!id_valid(id))
		return -ENOENT;
	_cleanup_(run_sandbox_freep) struct run_sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	sb->ctx = ctx;
	snprintf(sb->id, sizeof(sb->id), "%s", id);
	sb->dirfd = openat(ctx->sbfd, id, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (sb->dirfd < 0)
		return -errno;
	sb->dir = cm_strdupf("%s/sandboxes/%s", ctx->root, id);
	if (!sb->dir)
		return -ENOMEM;
	_cleanup_(json_object_putp) json_object *c = NULL;
	int r = read_json(sb->dirfd, "config.json", &c);
	if (r < 0)
		return r == -ENOENT ? -ENOENT : cm_log_ret(r, "sandbox %s: bad config.json", id);
	json_object *v;
	if ((r = cm_json_str(c, "lower_dir", NULL, &sb->lower_dir)) < 0 ||
	    (r = cm_json_str(c, "image_key", NULL, &sb->image_key)) < 0 ||
	    (r = cm_json_str(c, "image_name", NULL, &sb->image_name)) < 0 ||
	    (r = cm_json_str(c, "backend", NULL, &sb->backend)) < 0 ||
	    (r = cm_json_str(c, "hostname", NULL, &sb->hostname)) < 0)
		return r;
	if (!sb->backend || !sb->hostname)
		return -EPROTO;
	sb->net =
	    json_object_object_get_ex(c, "net", &v) && !strcmp(json_object_get_string(v), "host")
		? RUN_NET_HOST
		: RUN_NET_NONE;
	sb->userns = json_object_object_get_ex(c, "userns", &v) && json_object_get_boolean(v);
	sb->memory_bytes = (uint64_t)json_int(c, "memory");
	sb->cpu_millis = (uint32_t)json_int(c, "cpu_millis");
	sb->pids_max = (uint32_t)json_int(c, "pids");
	sb->created = json_int(c, "created");
	sb->keep_warm_s = json_object_object_get_ex(c, "keep_warm_s", &v)
			      ? (int)MIN(json_object_get_int64(v), INT32_MAX)
			      : -1;
	if (json_object_object_get_ex(c, "config", &v) &&
	    (r = config_from_json(v, &sb->config)) < 0)
		return r;

	_cleanup_(json_object_putp) json_object *s = NULL;
	sb->status = RUN_STATUS_CREATED;
	if (read_json(sb->dirfd, "state.json", &s) == 0) {
		_cleanup_free_ char *st = NULL;
		(void)cm_json_str(s, "status", NULL, &st);
		for (size_t i = 0; st && i < ARRAY_SIZE(status_names); i++)
			if (!strcmp(st, status_names[i]))
				sb->status = (enum run_status)i;
		sb->pid = (pid_t)json_int(s, "pid");
		sb->pid_start = (uint64_t)json_int(s, "pid_start");
		json_object *pk;
		if (json_object_object_get_ex(s, "pool", &pk) &&
		    strlen(json_object_get_string(pk)) == 32)
			snprintf(sb->pool_key, sizeof(sb->pool_key), "%s", json_object_get_string(pk));
	}
	*ret = TAKE_PTR(sb);
	return 0;
}

int run_proc_start_time(pid_t pid, uint64_t *ret)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -ESRCH;
	buf[n] = 0;
	/* comm may hold spaces and parentheses: fields resume after the last ')' */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EPROTO;
	p += 2; /* field 3 */
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EPROTO;
		p++;
	}
	/* a zombie is gone for our purposes */
	char state = *(strrchr(buf, ')') + 2);
	if (state == 'Z' || state == 'X')
		return -ESRCH;
	*ret = strtoull(p, NULL, 10);
	return 0;
}

static bool is_process(pid_t pid, uint64_t start)
{
	uint64_t st;
	return pid > 0 && run_proc_start_time(pid, &st) == 0 && st == start;
}

bool run_sandbox_agent_alive(const struct run_sandbox *sb)
{
	return is_process(sb->pid, sb->pid_start);
}

int run_pidfd_exact(pid_t pid, uint64_t start)
{
	if (!is_process(pid, start))
		return -ESRCH;
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno;
	/* the pid could have been reused between the check and the open */
	if (!is_process(pid, start)) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

void run_pidfd_wait(int pidfd, int timeout_ms)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
		;
}

void run_kill_exact(pid_t pid, uint64_t start, int timeout_ms)
{
	_cleanup_close_ int pfd = run_pidfd_exact(pid, start);
	if (pfd < 0)
		return;
	syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
	run_pidfd_wait(pfd, timeout_ms);
}

const struct run_backend_ops *run_backend_find(const char *name)
{
	if (!name || !strcmp(name, "ns"))
		return &run_backend_ns;
	return NULL;
}

static int lock_sandbox(struct run_sandbox *sb)
{
	_cleanup_close_ int dfd = openat(sb->ctx->sbfd, sb->id, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int lfd = openat(dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lfd < 0)
		return -errno;
	while (flock(lfd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int r = -errno;
			close(lfd);
			return r;
		}
	}
	return lfd;
}

static void unlockp(int *fd)
{
	cm_closep(fd);
}

/*
 * Load sandbox `id` and take its lock, then load it again: the state as of holding the lock
 * is what counts (another process may have changed it while we waited). Returns the lock fd
 * (release with unlockp/close) with *ret_sb set, or -errno.
 */
static int load_locked(struct run_ctx *ctx, const char *id, struct run_sandbox **ret_sb)
{
	_cleanup_(run_sandbox_freep) struct run_sandbox *sb = NULL;
	int r = run_sandbox_load(ctx, id, &sb);
	if (r < 0)
		return r;
	_cleanup_(unlockp) int lock = lock_sandbox(sb);
	if (lock < 0)
		return lock;
	run_sandbox_free(TAKE_PTR(sb));
	if ((r = run_sandbox_load(ctx, id, &sb)) < 0)
		return r;
	*ret_sb = TAKE_PTR(sb);
	return TAKE_FD(lock);
}

#define AGENT_XATTR "user.isorun.agent"

void run_mark_agent(struct run_sandbox *sb, pid_t pid, uint64_t start)
{
	char v[48];
	int n = snprintf(v, sizeof(v), "%d %llu", (int)pid, (unsigned long long)start);
	if (lsetxattr(sb->dir, AGENT_XATTR, v, (size_t)n, 0) < 0)
		log_debug("sandbox %s: agent mark: %s", sb->id, strerror(errno));
}

/* A sandbox still "created" whose boot got as far as starting its agent (the creator died
 * before saving "running"): kill that agent, if it is still the same process. */
static void kill_marked_agent(struct run_sandbox *sb)
{
	char v[48];
	ssize_t n = lgetxattr(sb->dir, AGENT_XATTR, v, sizeof(v) - 1);
	if (n <= 0)
		return;
	v[n] = 0;
	int pid;
	unsigned long long start;
	if (sscanf(v, "%d %llu", &pid, &start) != 2 || !is_process(pid, start))
		return;
	log_warn("sandbox %s: stopping the agent (pid %d) its dead creator left", sb->id, pid);
	run_kill_exact(pid, start, 5000);
}

static int acquire_lower(struct run_sandbox *sb, char **ret)
{
	struct run_ctx *ctx = sb->ctx;
	if (sb->image_key && ctx->have_image_ops && ctx->image_ops.acquire) {
		int r = ctx->image_ops.acquire(ctx->image_ops.userdata, sb->image_key, sb->dir, ret);
		if (r < 0)
			return cm_log_ret(r, "sandbox %s: cannot acquire image %s: %s", sb->id,
					  sb->image_key, strerror(-r));
		log_debug("sandbox %s: image mount acquired", sb->id);
		return 1; /* a reference to release */
	}
	if (!sb->lower_dir)
		return cm_log_ret(-EINVAL, "sandbox %s: no lower dir and no image ops", sb->id);
	*ret = strdup(sb->lower_dir);
	return *ret ? 0 : -ENOMEM;
}

/* The create option as the sandbox keeps it: -1 when none was given. */
static int keep_warm_of(const struct run_create_opts *o)
{
	return o->keep_warm_set ? (int)MIN(o->keep_warm_s, INT32_MAX) : -1;
}

static void release_lower(struct run_sandbox *sb)
{
	struct run_ctx *ctx = sb->ctx;
	if (sb->image_key && ctx->have_image_ops && ctx->image_ops.release) {
		ctx->image_ops.release(ctx->image_ops.userdata, sb->image_key, sb->dir,
				       sb->keep_warm_s);
		log_debug("sandbox %s: image mount released", sb->id);
	}
}

static int boot_locked(struct run_sandbox *sb)
{
	const struct run_backend_ops *be = run_backend_find(sb->backend);
	_cleanup_free_ char *lower = NULL;
	int held = acquire_lower(sb, &lower);
	if (held < 0)
		return held;
	int r = be->start(sb, lower);
	if (r < 0) {
		if (held)
			release_lower(sb);
		return r;
	}
	sb->status = RUN_STATUS_RUNNING;
	r = run_sandbox_save_state(sb);
	if (r < 0)
		log_error("sandbox %s: cannot save state: %s", sb->id, strerror(-r));
	return r;
}

/* `save`: write the stopped state (false when the state directory is removed next). */
static int stop_locked(struct run_sandbox *sb, uint32_t grace_ms, bool save)
{
	const struct run_backend_ops *be = run_backend_find(sb->backend);
	if (sb->status != RUN_STATUS_RUNNING) {
		/* its creator died during the boot: whatever it got to, the agent it may have
		 * started is stopped and the image reference it may have taken (named after this
		 * sandbox's directory) given back */
		if (sb->status == RUN_STATUS_CREATED) {
			kill_marked_agent(sb);
			release_lower(sb);
		}
		return 0;
	}
	int r = be->stop(sb, grace_ms);
	if (r < 0)
		return r;
	if (save) {
		/* the overlay is volatile (no sync at unmount, ns.c): a stopped sandbox's scratch
		 * is kept, so make it durable here, once its writers are gone */
		_cleanup_close_ int fd =
		    openat(sb->dirfd, "scratch", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || syncfs(fd) < 0)
			log_warn("sandbox %s: cannot sync its scratch layer: %s", sb->id,
				 strerror(errno));
	}
	release_lower(sb);
	sb->status = RUN_STATUS_STOPPED;
	sb->pid = 0;
	sb->pid_start = 0;
	return save ? run_sandbox_save_state(sb) : 0;
}

static int gen_id(char out[RUN_ID_LEN + 1])
{
	uint8_t rnd[RUN_ID_LEN / 2];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -errno;
	cm_hex_format(rnd, sizeof(rnd), out);
	return 0;
}

static int copy_config(const struct run_config *in, struct run_config **ret)
{
	_cleanup_(run_config_freep) struct run_config *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (in) {
		size_t n = 0;
		while (in->env && in->env[n])
			n++;
		c->env = calloc(n + 1, sizeof(char *));
		if (!c->env)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			if (!(c->env[i] = strdup(in->env[i])))
				return -ENOMEM;
		if (in->working_dir && !(c->working_dir = strdup(in->working_dir)))
			return -ENOMEM;
		if (in->user && !(c->user = strdup(in->user)))
			return -ENOMEM;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

/* ---- the warm pool ---- */

static void key_field(struct cm_buf *b, const char *name, const char *v)
{
	/* length-prefixed: no value can forge another field */
	(void)cm_buf_printf(b, "%s=%zu:%s\n", name, v ? strlen(v) : (size_t)0, v ? v : "");
}

/* The pool a create with `o` draws from: hex XXH3-128 of everything that makes two
 * sandboxes differ before their first exec (not SHA-256: OpenSSL's first use loads its
 * configuration, a millisecond a warm start has no use for). */
static void pool_key(const struct run_create_opts *o, char out[33])
{
	struct cm_buf b;
	char num[64];
	cm_buf_init(&b, 0);
	key_field(&b, "v", "1");
	key_field(&b, "backend", o->backend ? o->backend : "ns");
	key_field(&b, "lower", o->lower_dir);
	key_field(&b, "image", o->image_key);
	key_field(&b, "net", o->net == RUN_NET_HOST ? "host" : "none");
	key_field(&b, "userns", o->userns ? "1" : "0");
	snprintf(num, sizeof(num), "%llu/%u/%u", (unsigned long long)o->memory_bytes,
		 o->cpu_millis, o->pids_max);
	key_field(&b, "limits", num);
	key_field(&b, "hostname", o->hostname);
	if (o->config) {
		for (char **e = o->config->env; e && *e; e++)
			key_field(&b, "env", *e);
		key_field(&b, "workdir", o->config->working_dir);
		key_field(&b, "user", o->config->user);
	}
	uint8_t d[16];
	cm_xxh3_128(b.data, b.len, d);
	cm_hex_format(d, sizeof(d), out);
	cm_buf_fini(&b);
}

/* ROOT/pool/<key>, created when `create`; an O_DIRECTORY fd or -errno. */
static int pool_dir(struct run_ctx *ctx, const char *key, bool create)
{
	_cleanup_free_ char *p = cm_strdupf("%s/pool/%s", ctx->root, key);
	if (!p)
		return -ENOMEM;
	if (create) {
		int r = cm_mkdir_p(AT_FDCWD, p, 0700);
		if (r < 0)
			return r;
	}
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Offer a booted sandbox (lock held): its entry appears last, once it can be used. */
static int pool_publish(struct run_sandbox *sb)
{
	_cleanup_close_ int dfd = pool_dir(sb->ctx, sb->pool_key, true);
	if (dfd < 0)
		return cm_log_ret(dfd, "warm pool: %s", strerror(-dfd));
	int fd = openat(dfd, sb->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return cm_log_ret(-errno, "warm pool: cannot publish %s: %s", sb->id,
				  strerror(errno));
	close(fd);
	return 0;
}

static void pool_unpublish(struct run_sandbox *sb)
{
	_cleanup_close_ int dfd = pool_dir(sb->ctx, sb->pool_key, false);
	if (dfd >= 0)
		unlinkat(dfd, sb->id, 0);
}

int run_sandbox_claim(struct run_ctx *ctx, const struct run_create_opts *o, char **ret_id)
{
	char key[33];
	pool_key(o, key);
	_cleanup_close_ int dfd = pool_dir(ctx, key, false);
	DIR *d = dfd >= 0 ? cm_opendirat(dfd, ".", 0) : NULL;
	if (!d)
		return -ENOENT;
	int r = -ENOENT;
	struct dirent *de;
	while (r == -ENOENT && (de = readdir(d))) {
		if (!id_valid(de->d_name))
			continue;
		/* whoever unlinks the entry owns the sandbox */
		if (unlinkat(dirfd(d), de->d_name, 0) < 0)
			continue;
		_cleanup_(run_sandbox_freep) struct run_sandbox *sb = NULL;
		bool usable;
		{
			_cleanup_(unlockp) int lock = load_locked(ctx, de->d_name, &sb);
			if (lock < 0)
				continue;
			usable = strcmp(sb->pool_key, key) == 0 &&
				 sb->status == RUN_STATUS_RUNNING && run_sandbox_agent_alive(sb) &&
				 time(NULL) - sb->created <= RUN_POOL_TTL_S;
			if (usable) {
				sb->pool_key[0] = 0;
				sb->created = (int64_t)time(NULL);
				/* the name and the keep-warm delay are not part of the key:
				 * this create's */
				free(sb->image_name);
				sb->image_name = o->image_name ? strdup(o->image_name) : NULL;
				sb->keep_warm_s = keep_warm_of(o);
				int k =
				    o->image_name && !sb->image_name ? -ENOMEM : save_config(sb);
				if (k == 0)
					k = run_sandbox_save_state(sb);
				if (k < 0) {
					log_warn("warm pool: sandbox %s: %s", sb->id, strerror(-k));
					usable = false;
				}
			}
		}
		if (!usable) {
			log_debug("warm pool: dropping sandbox %s (dead, expired or changed)",
				  de->d_name);
			(void)run_sandbox_remove(ctx, de->d_name, true);
			continue;
		}
		log_debug("warm pool: claimed sandbox %s", sb->id);
		*ret_id = strdup(sb->id);
		r = *ret_id ? 0 : -ENOMEM;
	}
	closedir(d);
	return r;
}

int run_sandbox_pool_fill(struct run_ctx *ctx, const struct run_create_opts *o, unsigned n)
{
	char key[33];
	pool_key(o, key);
	_cleanup_close_ int dfd = pool_dir(ctx, key, true);
	if (dfd < 0)
		return cm_log_ret(dfd, "warm pool: %s", strerror(-dfd));
	_cleanup_close_ int lock = openat(dfd, ".fill", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0)
		return -errno;
	if (flock(lock, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? 0 : -errno;
	unsigned have = 0;
	{
		DIR *d = cm_opendirat(dfd, ".", 0);
		if (!d)
			return -errno;
		struct dirent *de;
		while ((de = readdir(d)))
			have += id_valid(de->d_name);
		closedir(d);
	}
	struct run_create_opts po = *o;
	po.pooled = true;
	int booted = 0;
	for (; have < n; have++) {
		_cleanup_free_ char *id = NULL;
		int r = run_sandbox_create(ctx, &po, &id);
		if (r < 0)
			return r;
		booted++;
	}
	return booted;
}

int run_sandbox_create(struct run_ctx *ctx, const struct run_create_opts *o, char **ret_id)
{
	const struct run_backend_ops *be = run_backend_find(o->backend);
	int r;
	if (!be)
		return cm_log_ret(-EINVAL, "unknown backend '%s'", o->backend);
	if (!o->lower_dir && !(o->image_key && ctx->have_image_ops))
		return cm_log_ret(-EINVAL, "a lower dir or an image key with image ops is needed");
	if (o->lower_dir && o->lower_dir[0] != '/')
		return cm_log_ret(-EINVAL, "the lower dir must be an absolute path");

	_cleanup_(run_sandbox_freep) struct run_sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	sb->ctx = ctx;
	sb->dirfd = -1;
	for (int tries = 0;; tries++) {
		if ((r = gen_id(sb->id)) < 0)
			return r;
		if (mkdirat(ctx->sbfd, sb->id, 0700) == 0)
			break;
		if (errno != EEXIST || tries > 8)
			return cm_log_ret(-errno, "cannot create the sandbox directory");
	}
	sb->dirfd = openat(ctx->sbfd, sb->id, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	sb->dir = cm_strdupf("%s/sandboxes/%s", ctx->root, sb->id);
	sb->backend = strdup(be->name);
	sb->hostname = o->hostname ? strdup(o->hostname) : strndup(sb->id, 12);
	if (sb->dirfd < 0 || !sb->dir || !sb->backend || !sb->hostname) {
		r = sb->dirfd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	if ((o->lower_dir && !(sb->lower_dir = strdup(o->lower_dir))) ||
	    (o->image_key && !(sb->image_key = strdup(o->image_key))) ||
	    (o->image_name && !(sb->image_name = strdup(o->image_name)))) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = copy_config(o->config, &sb->config)) < 0)
		goto fail;
	sb->net = o->net;
	sb->userns = o->userns;
	sb->memory_bytes = o->memory_bytes;
	sb->cpu_millis = o->cpu_millis;
	sb->pids_max = o->pids_max;
	sb->keep_warm_s = keep_warm_of(o);
	sb->created = (int64_t)time(NULL);
	sb->status = RUN_STATUS_CREATED;
	/* until the agent's pid replaces it: the creator's, so that `ps` can tell a sandbox
	 * being created from one whose creator died before it booted (stale) */
	sb->pid = getpid();
	if (run_proc_start_time(sb->pid, &sb->pid_start) < 0)
		sb->pid = 0;
	if (o->pooled)
		pool_key(o, sb->pool_key);
	if ((r = save_config(sb)) < 0 || (r = run_sandbox_save_state(sb)) < 0 ||
	    (r = be->create(sb)) < 0)
		goto fail;
	log_debug("sandbox %s: state written, booting", sb->id);
	{
		_cleanup_(unlockp) int lock = lock_sandbox(sb);
		if (lock < 0) {
			r = lock;
			goto fail;
		}
		if ((r = boot_locked(sb)) < 0)
			goto fail;
		if (o->pooled && (r = pool_publish(sb)) < 0) {
			stop_locked(sb, 0, false);
			goto fail;
		}
	}
	log_debug("sandbox %s: created%s", sb->id, o->pooled ? " into the warm pool" : "");
	*ret_id = strdup(sb->id);
	return *ret_id ? 0 : -ENOMEM;
fail:
	be->destroy(sb);
	cm_rm_rf_at(ctx->sbfd, sb->id);
	return r;
}

int run_sandbox_resolve(struct run_ctx *ctx, const char *prefix, char **ret_id)
{
	DIR *d = cm_opendirat(ctx->sbfd, ".", 0);
	if (!d)
		return -errno;
	size_t plen = strlen(prefix);
	char *found = NULL;
	int r = -ENOENT;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!id_valid(de->d_name) || strncmp(de->d_name, prefix, plen) != 0 || plen == 0)
			continue;
		if (found) {
			r = -EEXIST;
			break;
		}
		found = strdup(de->d_name);
		r = found ? 0 : -ENOMEM;
	}
	closedir(d);
	if (r < 0) {
		free(found);
		return r;
	}
	*ret_id = found;
	return 0;
}

int run_sandbox_start(struct run_ctx *ctx, const char *id)
{
	_cleanup_(run_sandbox_freep) struct run_sandbox *sb = NULL;
	_cleanup_(unlockp) int lock = load_locked(ctx, id, &sb);
	if (lock < 0)
		return lock;
	if (sb->status == RUN_STATUS_RUNNING) {
		if (run_sandbox_agent_alive(sb))
			return cm_log_ret(-EBUSY, "sandbox %s is running", id);
		/* stale: clean up what the dead agent left, then boot */
		int r = stop_locked(sb, 0, true);
		if (r < 0)
			return r;
	}
	return boot_locked(sb);
}

int run_sandbox_stop(struct run_ctx *ctx, const char *id, uint32_t grace_ms)
{
	_cleanup_(run_sandbox_freep) struct run_sandbox *sb = NULL;
	_cleanup_(unlockp) int lock = load_locked(ctx, id, &sb);
	if (lock < 0)
		return lock;
	return stop_locked(sb, grace_ms, true);
}

/* Delete every ".trash-<id>" tree; true when one went (a tree that cannot be deleted does
 * not count, so that the deleter's loop ends). */
static bool purge_once(struct run_ctx *ctx)
{
	DIR *d = cm_opendirat(ctx->sbfd, ".", 0);
	if (!d)
		return false;
	bool any = false;
	struct dirent *de;
	while ((de = readdir(d)))
		if (cm_str_has_prefix(de->d_name, ".trash-") &&
		    cm_rm_rf_at(dirfd(d), de->d_name) == 0)
			any = true;
	closedir(d);
	return any;
}

/*
 * Delete removed sandboxes' trees (".trash-<id>") in a detached process: unlinking a
 * scratch layer costs tens of milliseconds on a journaled disk and nobody needs to wait for
 * it. The id is free as soon as the directory was renamed. A trash entry left behind (the
 * deleter was killed) is collected by the next removal.
 *
 * One deleter at a time (a flock on sandboxes/.purge): a removal that finds one at work
 * leaves its trash to it instead of forking another (a third of a millisecond of every
 * back-to-back `isorun run`). The deleter scans until a scan finds nothing, lets go of the
 * lock, and scans once more: a removal that failed to take the lock renamed its trash
 * before, so that last scan sees it (and takes the lock back to delete it, unless another
 * deleter has it).
 */
static void purge_trash(struct run_ctx *ctx)
{
	int lk = openat(ctx->sbfd, ".purge", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lk >= 0 && flock(lk, LOCK_EX | LOCK_NB) < 0) {
		close(lk); /* a deleter is at work (or the lock is unusable: the next one will do) */
		return;
	}
	/* the middle process only detaches and forks: vfork spares copying the caller */
	pid_t p = vfork();
	if (p < 0) {
		log_warn("cannot fork the state deleter: %s", strerror(errno));
		if (lk >= 0)
			close(lk);
		return;
	}
	if (p > 0) {
		while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
			;
		if (lk >= 0)
			close(lk); /* the deleter holds the lock through its own copy */
		return;
	}
	/* child: detach, fork the deleter, exit so the caller is not kept waiting */
	setsid();
	if (fork() != 0)
		_exit(0);
	/* let go of the caller's stdio (a shell's $(...) would wait for our EOF) */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	for (;;) {
		while (purge_once(ctx))
			;
		if (lk < 0)
			break;
		flock(lk, LOCK_UN);
		if (!purge_once(ctx) || flock(lk, LOCK_EX | LOCK_NB) < 0)
			break;
	}
	_exit(0);
}

int run_sandbox_remove(struct run_ctx *ctx, const char *id, bool force)
{
	_cleanup_(run_sandbox_freep) struct run_sandbox *sb = NULL;
	int r;
	{
		_cleanup_(unlockp) int lock = load_locked(ctx, id, &sb);
		if (lock < 0)
			return lock;
		const struct run_backend_ops *be = run_backend_find(sb->backend);
		if (sb->status == RUN_STATUS_RUNNING && run_sandbox_agent_alive(sb) && !force)
			return cm_log_ret(-EBUSY, "sandbox %s is running (use -f)", id);
		bool was_running = sb->status == RUN_STATUS_RUNNING;
		if (sb->pool_key[0])
			pool_unpublish(sb);
		/* no stopped state: the directory is renamed to trash below; if that fails, the
		 * sandbox reads as stale (dead agent), which rm cleans up */
		if ((r = stop_locked(sb, force ? 0 : 10000, false)) < 0)
			return r;
		log_debug("sandbox %s: stopped", sb->id);
		/* stop already released the runtime resources */
		if (!was_running && (r = be->destroy(sb)) < 0)
			return r;
		/* under the lock: a concurrent operation waiting for it finds no sandbox */
		char trash[RUN_ID_LEN + 16];
		snprintf(trash, sizeof(trash), ".trash-%s", sb->id);
		if (renameat(ctx->sbfd, sb->id, ctx->sbfd, trash) < 0)
			return cm_log_ret(-errno, "sandbox %s: cannot remove its state: %s", id,
					  strerror(errno));
	}
	purge_trash(ctx);
	log_debug("sandbox %s: removed", id);
	return 0;
}

static int cmp_info(const void *a, const void *b)
{
	const struct run_sandbox_info *x = a, *y = b;
	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->id, y->id);
}

void run_sandbox_info_free(struct run_sandbox_info *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].lower_dir);
		free(v[i].image_key);
		free(v[i].image_name);
	}
	free(v);
}

int run_sandbox_list(struct run_ctx *ctx, struct run_sandbox_info **ret, size_t *ret_n)
{
	DIR *d = cm_opendirat(ctx->sbfd, ".", 0);
	if (!d)
		return -errno;
	struct run_sandbox_info *v = NULL;
	size_t n = 0, alloc = 0;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!id_valid(de->d_name))
			continue;
		_cleanup_(run_sandbox_freep) struct run_sandbox *sb = NULL;
		if (run_sandbox_load(ctx, de->d_name, &sb) < 0)
			continue; /* being created or removed right now */
		if (n == alloc) {
			alloc = alloc ? 2 * alloc : 16;
			struct run_sandbox_info *nv = realloc(v, alloc * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		struct run_sandbox_info *i = &v[n++];
		memset(i, 0, sizeof(*i));
		snprintf(i->id, sizeof(i->id), "%s", sb->id);
		i->status = sb->status;
		if (sb->status == RUN_STATUS_RUNNING) {
			if (run_sandbox_agent_alive(sb))
				i->agent_pid = sb->pid;
			else
				i->status = RUN_STATUS_STALE;
		} else if (sb->status == RUN_STATUS_CREATED && !run_sandbox_agent_alive(sb)) {
			i->status = RUN_STATUS_STALE; /* its creator died before the boot */
		}
		i->created = sb->created;
		i->pooled = i->status == RUN_STATUS_RUNNING && sb->pool_key[0];
		i->lower_dir = TAKE_PTR(sb->lower_dir);
		i->image_key = TAKE_PTR(sb->image_key);
		i->image_name = TAKE_PTR(sb->image_name);
		if (i->status == RUN_STATUS_RUNNING)
			i->memory_usage = run_cgroup_memory_usage(sb->id);
	}
	closedir(d);
	if (r < 0) {
		run_sandbox_info_free(v, n);
		return r;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_info);
	*ret = v;
	*ret_n = n;
	return 0;
}
