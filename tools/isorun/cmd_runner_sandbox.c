/*
 * Sandbox verbs: create, exec, run, ps, stop, start, rm, cp. Argument parsing and output
 * only; everything else is runner/ (runner/runner.h).
 *
 * Image references: until the pull/mount path is wired, create/run take --rootfs DIR (a
 * lower directory) and --config FILE (an OCI image config JSON). The wiring point is
 * isorun_resolve_ref() and isorun_image_ops() below: weak symbols another cmd_*.c file may
 * define to turn REF into a lower dir/image key/config and to plug the mount refcount in.
 */
#include "verbs.h"

#include "agent/protocol.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "runner/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/*
 * Resolve an image reference for create/run: fill *ret_image_key (the key passed to
 * run_image_ops), optionally *ret_lower_dir and *ret_config (malloc'd). -errno on failure.
 */
int isorun_resolve_ref(const char *ref, char **ret_image_key, char **ret_lower_dir,
		       struct run_config **ret_config) __attribute__((weak));
/* The image mount refcount hooks (NULL: none). */
const struct run_image_ops *isorun_image_ops(void) __attribute__((weak));

DEFINE_CLEANUP_FUNC(struct run_ctx, run_ctx_free)
DEFINE_CLEANUP_FUNC(struct run_client, run_client_free)

static int open_ctx(struct run_ctx **ret)
{
	int r = run_ctx_new(isorun_root(), ret);
	if (r < 0) {
		fprintf(stderr, "isorun: cannot open state root %s: %s\n", isorun_root(),
			strerror(-r));
		return r;
	}
	if (isorun_image_ops && isorun_image_ops())
		run_ctx_set_image_ops(*ret, isorun_image_ops());
	return 0;
}

static int resolve_id(struct run_ctx *ctx, const char *arg, char **ret)
{
	int r = run_sandbox_resolve(ctx, arg, ret);
	if (r == -ENOENT)
		fprintf(stderr, "isorun: no such sandbox: %s\n", arg);
	else if (r == -EEXIST)
		fprintf(stderr, "isorun: ambiguous sandbox id prefix: %s\n", arg);
	else if (r < 0)
		fprintf(stderr, "isorun: %s: %s\n", arg, strerror(-r));
	return r;
}

/* ---- create options ---- */

struct create_args {
	const char *rootfs, *config_file, *ref, *hostname;
	struct run_create_opts o;
	struct run_config *config;
	char *lower, *key;
	unsigned warm; /* --warm[=N]: pool size to keep ready, 0 = no pool */
	/* the create options as given, for `isorun pool-fill` in the background */
	const char *argv[32];
	int argc;
};

static int parse_cpus(const char *s, uint32_t *ret)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || v <= 0 || v > 4096)
		return -EINVAL;
	*ret = (uint32_t)(v * 1000 + 0.5);
	return 0;
}

/* Parse one create option at argv[*i]; 1 if consumed, 0 if not a create option, <0 error. */
static int create_opt(struct create_args *a, int argc, char **argv, int *i)
{
	const char *o = argv[*i];
	const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
	uint64_t n;
	if (!strcmp(o, "--warm") || cm_str_has_prefix(o, "--warm=")) {
		char *end;
		unsigned long w = o[6] ? strtoul(o + 7, &end, 10) : 1;
		if ((o[6] && (*end || !o[7])) || w == 0 || w > 64) {
			fprintf(stderr, "isorun: bad %s (--warm[=N], N from 1 to 64)\n", o);
			return -EINVAL;
		}
		a->warm = (unsigned)w;
		return 1;
	}
	if ((size_t)a->argc + 2 >= ARRAY_SIZE(a->argv)) {
		fprintf(stderr, "isorun: too many options\n");
		return -E2BIG;
	}
	if (!strcmp(o, "--userns")) {
		a->o.userns = true;
		a->argv[a->argc++] = o;
		return 1;
	}
	if (strcmp(o, "--rootfs") && strcmp(o, "--config") && strcmp(o, "--net") &&
	    strcmp(o, "--memory") && strcmp(o, "--cpus") && strcmp(o, "--pids") &&
	    strcmp(o, "--hostname") && strcmp(o, "--keep-warm"))
		return 0;
	if (!v) {
		fprintf(stderr, "isorun: %s needs a value\n", o);
		return -EINVAL;
	}
	(*i)++;
	a->argv[a->argc++] = o;
	a->argv[a->argc++] = v;
	if (!strcmp(o, "--rootfs")) {
		a->rootfs = v;
	} else if (!strcmp(o, "--config")) {
		a->config_file = v;
	} else if (!strcmp(o, "--hostname")) {
		a->hostname = v;
	} else if (!strcmp(o, "--net")) {
		if (!strcmp(v, "none"))
			a->o.net = RUN_NET_NONE;
		else if (!strcmp(v, "host"))
			a->o.net = RUN_NET_HOST;
		else {
			fprintf(stderr, "isorun: --net none|host\n");
			return -EINVAL;
		}
	} else if (!strcmp(o, "--memory")) {
		if (cm_parse_size(v, &n) < 0 || n == 0) {
			fprintf(stderr, "isorun: bad --memory %s\n", v);
			return -EINVAL;
		}
		a->o.memory_bytes = n;
	} else if (!strcmp(o, "--cpus")) {
		if (parse_cpus(v, &a->o.cpu_millis) < 0) {
			fprintf(stderr, "isorun: bad --cpus %s\n", v);
			return -EINVAL;
		}
	} else if (!strcmp(o, "--keep-warm")) {
		unsigned s;
		if (cm_parse_uint(v, 0, RUN_KEEP_WARM_MAX, &s) < 0) {
			fprintf(stderr, "isorun: bad --keep-warm %s (seconds, 0 to %u)\n", v,
				RUN_KEEP_WARM_MAX);
			return -EINVAL;
		}
		a->o.keep_warm_set = true;
		a->o.keep_warm_s = s;
	} else if (!strcmp(o, "--pids")) {
		char *end;
		unsigned long p = strtoul(v, &end, 10);
		if (*end || p == 0 || p > 1u << 22) {
			fprintf(stderr, "isorun: bad --pids %s\n", v);
			return -EINVAL;
		}
		a->o.pids_max = (uint32_t)p;
	}
	return 1;
}

static int create_prepare(struct create_args *a)
{
	int r;
	/* ISORUN_KEEP_WARM is --keep-warm's default */
	int kw = isorun_env_keep_warm();
	if (!a->o.keep_warm_set && kw >= 0) {
		a->o.keep_warm_set = true;
		a->o.keep_warm_s = (uint32_t)kw;
	}
	if (a->config_file) {
		struct cm_buf b;
		cm_buf_init(&b, 1 << 20);
		r = cm_read_file(AT_FDCWD, a->config_file, &b);
		if (r < 0) {
			fprintf(stderr, "isorun: %s: %s\n", a->config_file, strerror(-r));
			cm_buf_fini(&b);
			return r;
		}
		r = run_config_parse((const char *)b.data, b.len, &a->config);
		cm_buf_fini(&b);
		if (r < 0) {
			fprintf(stderr, "isorun: %s: not an OCI image config\n", a->config_file);
			return r;
		}
	}
	if (a->rootfs) {
		a->lower = realpath(a->rootfs, NULL);
		if (!a->lower) {
			fprintf(stderr, "isorun: --rootfs %s: %s\n", a->rootfs, strerror(errno));
			return -errno;
		}
	} else if (a->ref) {
		if (!isorun_resolve_ref) {
			fprintf(stderr, "isorun: image references are not wired in this build; "
					"use --rootfs DIR [--config FILE]\n");
			return -ENOTSUP;
		}
		struct run_config *cfg = NULL;
		r = isorun_resolve_ref(a->ref, &a->key, &a->lower, &cfg);
		if (r < 0) {
			/* (what went wrong is logged above: the registry's answer, the policy) */
			fprintf(stderr, "isorun: cannot get the image %s\n", a->ref);
			return r;
		}
		if (!a->config)
			a->config = cfg;
		else
			run_config_free(cfg);
	} else {
		fprintf(stderr, "isorun: an image REF or --rootfs DIR is needed\n");
		return -EINVAL;
	}
	a->o.lower_dir = a->lower;
	a->o.image_key = a->key;
	a->o.image_name = a->ref;
	a->o.config = a->config;
	a->o.hostname = a->hostname;
	return 0;
}

static void create_args_fini(struct create_args *a)
{
	run_config_free(a->config);
	free(a->lower);
	free(a->key);
}

#define CREATE_OPTIONS                                                                             \
	"  --rootfs DIR       a directory as the root instead of an image REF\n"                   \
	"  --config FILE      with --rootfs: an OCI image config (its Env, WorkingDir, User)\n"    \
	"  --net none|host    loopback only (the default), or the host's network\n"                \
	"  --memory SIZE      memory limit (bytes, or k/m/g): a process past it is killed\n"       \
	"  --cpus N           CPU limit in CPUs, fractions allowed (0.5)\n"                        \
	"  --pids N           limit on the number of processes\n"                                  \
	"  --hostname NAME    the sandbox's host name\n"                                           \
	"  --userns           a user namespace with a mapped id range, where the host allows\n"    \
	"  --keep-warm S      keep the image mounted S s after its last sandbox goes, if this\n"   \
	"                     one is the last (0: unmount at once; default ISORUN_KEEP_WARM\n"     \
	"                     or 60)\n"                                                            \
	"  --warm[=N]         take a sandbox booted ahead with the same options when one is\n"     \
	"                     ready, and refill the warm pool to N (1) in the background\n"

#define EXEC_OPTIONS                                                                               \
	"  -i, --interactive  pass stdin to the command\n"                                         \
	"  -t, --tty          run the command on a pseudo-terminal\n"                              \
	"  -e, --env K=V      set an environment variable (over the image's Env); repeatable\n"    \
	"  -w, --workdir DIR  working directory (default: the image's WorkingDir)\n"               \
	"  -u, --user U       user[:group], by name (the image's /etc/passwd, /etc/group) or id\n" \
	"  --timeout S        kill the command after S seconds (fractions allowed)\n"

#define EXIT_STATUS                                                                                \
	"\nexit status: the command's; 125 isorun's own error (a bad option too), 126 not\n"       \
	"executable, 127 not found, 128+N killed by signal N\n"

/* Resolve the image, open the state root and create the sandbox (shared by create and run):
 * with --warm, a sandbox from the warm pool if one is ready. Errors are printed. */
static int create_sandbox(struct create_args *a, struct run_ctx **ret_ctx, char **ret_id)
{
	int r = create_prepare(a);
	if (r == 0)
		r = open_ctx(ret_ctx);
	if (r == 0 && a->warm && run_sandbox_claim(*ret_ctx, &a->o, ret_id) == 0)
		return 0;
	if (r == 0) {
		unsigned said = cm_log_errors();
		r = run_sandbox_create(*ret_ctx, &a->o, ret_id);
		if (r < 0 && cm_log_errors() == said) /* else the runner said why */
			fprintf(stderr, "isorun: create failed: %s\n", strerror(-r));
		if (r < 0 && geteuid() != 0)
			fprintf(stderr, "isorun: sandboxes need root (namespaces, mounts, "
					"cgroups): run isorun as root\n");
	}
	return r;
}

/*
 * --warm: refill the pool in the background for the next create or run, with
 * `isorun pool-fill` started detached (its own session, no stdio), so this command returns
 * without waiting for a boot.
 */
static void refill_pool(const struct create_args *a)
{
	if (!a->warm)
		return;
	char count[32];
	snprintf(count, sizeof(count), "--count=%u", a->warm);
	const char *argv[ARRAY_SIZE(a->argv) + 8];
	int n = 0;
	argv[n++] = "isorun";
	argv[n++] = "--root";
	argv[n++] = isorun_root();
	argv[n++] = "pool-fill";
	argv[n++] = count;
	for (int i = 0; i < a->argc; i++)
		argv[n++] = a->argv[i];
	if (a->ref)
		argv[n++] = a->ref;
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return;
	if (posix_spawnattr_init(&at) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return;
	}
	for (int fd = 0; fd < 3; fd++)
		posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", O_RDWR, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID);
	pid_t pid;
	extern char **environ;
	int r = posix_spawn(&pid, "/proc/self/exe", &fa, &at, (char *const *)argv, environ);
	if (r != 0)
		log_warn("--warm: cannot start isorun pool-fill: %s", strerror(r));
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
}

/* ---- pool-fill ---- */

static int cmd_pool_fill(int argc, char **argv)
{
	struct create_args a = {0};
	unsigned count = 1;
	int i = 1, r;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (cm_str_has_prefix(argv[i], "--count=")) {
			char *end;
			unsigned long c = strtoul(argv[i] + 8, &end, 10);
			if (*end || c == 0 || c > 64) {
				fprintf(stderr, "isorun pool-fill: --count from 1 to 64\n");
				return ISORUN_EXIT_USAGE;
			}
			count = (unsigned)c;
			continue;
		}
		r = create_opt(&a, argc, argv, &i);
		if (r <= 0)
			return r == 0 ? isorun_usage_error("pool-fill", ISORUN_EXIT_USAGE,
							   "unknown option %s", argv[i])
				      : ISORUN_EXIT_USAGE;
	}
	if (i < argc)
		a.ref = argv[i++];
	if (i != argc)
		return isorun_usage_error("pool-fill", ISORUN_EXIT_USAGE, "unexpected %s", argv[i]);
	_cleanup_(run_ctx_freep) struct run_ctx *ctx = NULL;
	r = create_prepare(&a);
	if (r == 0)
		r = open_ctx(&ctx);
	if (r == 0)
		r = run_sandbox_pool_fill(ctx, &a.o, count);
	create_args_fini(&a);
	if (r < 0) {
		fprintf(stderr, "isorun pool-fill: %s\n", strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	return 0;
}
ISORUN_VERB_OPTS(
    "pool-fill", cmd_pool_fill, "[--count=N] [options] REF",
    "boot sandboxes into the warm pool (what --warm does in the background)",
    "  --count=N          how many to have ready (1 to 64; default 1)\n" CREATE_OPTIONS);

static int cmd_create(int argc, char **argv)
{
	struct create_args a = {0};
	int i = 1, r;
	for (; i < argc && argv[i][0] == '-'; i++) {
		r = create_opt(&a, argc, argv, &i);
		if (r < 0)
			return ISORUN_EXIT_USAGE;
		if (r == 0)
			return isorun_usage_error("create", ISORUN_EXIT_USAGE, "unknown option %s",
						  argv[i]);
	}
	if (i < argc)
		a.ref = argv[i++];
	if (i != argc)
		return isorun_usage_error("create", ISORUN_EXIT_USAGE, "unexpected %s", argv[i]);
	_cleanup_(run_ctx_freep) struct run_ctx *ctx = NULL;
	_cleanup_free_ char *id = NULL;
	r = create_sandbox(&a, &ctx, &id);
	if (r == 0) {
		printf("%s\n", id);
		fflush(stdout);
		refill_pool(&a);
	}
	create_args_fini(&a);
	return r < 0 ? ISORUN_EXIT_ERROR : 0;
}
ISORUN_VERB_OPTS("create", cmd_create, "[options] REF|--rootfs DIR",
		 "create and boot a sandbox, print its id", CREATE_OPTIONS);

/* ---- exec ---- */

#define MAX_ENV 1024

struct exec_args {
	bool interactive, tty;
	const char *env[MAX_ENV + 1];
	size_t nenv;
	const char *workdir, *user;
	uint32_t timeout_ms;
};

static int exec_opt(struct exec_args *e, int argc, char **argv, int *i)
{
	const char *o = argv[*i];
	if (!strcmp(o, "-i") || !strcmp(o, "--interactive")) {
		e->interactive = true;
		return 1;
	}
	if (!strcmp(o, "-t") || !strcmp(o, "--tty")) {
		e->tty = true;
		return 1;
	}
	if (!strcmp(o, "-it") || !strcmp(o, "-ti")) {
		e->interactive = e->tty = true;
		return 1;
	}
	if (strcmp(o, "--env") && strcmp(o, "-e") && strcmp(o, "--workdir") && strcmp(o, "-w") &&
	    strcmp(o, "--user") && strcmp(o, "-u") && strcmp(o, "--timeout"))
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "isorun: %s needs a value\n", o);
		return -EINVAL;
	}
	const char *v = argv[++(*i)];
	if (!strcmp(o, "--env") || !strcmp(o, "-e")) {
		if (!strchr(v, '=') || v[0] == '=' || e->nenv >= MAX_ENV) {
			fprintf(stderr, "isorun: --env wants K=V\n");
			return -EINVAL;
		}
		e->env[e->nenv++] = v;
	} else if (!strcmp(o, "--workdir") || !strcmp(o, "-w")) {
		e->workdir = v;
	} else if (!strcmp(o, "--user") || !strcmp(o, "-u")) {
		e->user = v;
	} else {
		char *end;
		double s = strtod(v, &end);
		if (*end || s <= 0 || s > 4e6) {
			fprintf(stderr, "isorun: bad --timeout %s\n", v);
			return -EINVAL;
		}
		e->timeout_ms = (uint32_t)(s * 1000);
	}
	return 1;
}

static struct termios saved_tio;
static bool tio_saved;

static void tty_raw(void)
{
	struct termios t;
	if (tcgetattr(0, &saved_tio) < 0)
		return;
	tio_saved = true;
	t = saved_tio;
	cfmakeraw(&t);
	tcsetattr(0, TCSANOW, &t);
}

static void tty_restore(void)
{
	if (tio_saved)
		tcsetattr(0, TCSANOW, &saved_tio);
	tio_saved = false;
}

/* Run argv in sandbox id with signal forwarding; returns the docker-style exit status. */
static int do_exec(struct run_ctx *ctx, const char *id, struct exec_args *e, char **argv)
{
	sigset_t mask, old;
	sigemptyset(&mask);
	int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		sigaddset(&mask, sigs[i]);
	sigprocmask(SIG_BLOCK, &mask, &old);
	_cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	struct run_exec_opts o = {
	    .argv = (const char *const *)argv,
	    .env = e->env,
	    .cwd = e->workdir,
	    .user = e->user,
	    .timeout_ms = e->timeout_ms,
	    .tty = e->tty,
	    .stdin_fd = e->interactive ? 0 : -1,
	    .stdout_fd = 1,
	    .stderr_fd = 2,
	    .signal_fd = sfd,
	};
	struct winsize ws;
	if (e->tty && ioctl(0, TIOCGWINSZ, &ws) == 0) {
		o.rows = ws.ws_row;
		o.cols = ws.ws_col;
	}
	if (e->tty && e->interactive && isatty(0))
		tty_raw();
	struct run_exec_result res;
	unsigned said = cm_log_errors();
	int r = run_sandbox_exec(ctx, id, &o, &res);
	tty_restore();
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (r == -ESRCH)
		fprintf(stderr, "isorun: sandbox %s is stopped (isorun start %s boots it again)\n",
			id, id);
	else if (r == -ECONNREFUSED)
		fprintf(stderr,
			"isorun: sandbox %s does not answer: its agent is gone (isorun ps "
			"shows it stale; isorun rm removes it)\n",
			id);
	else if (r < 0 && cm_log_errors() == said) /* else the runner said what failed */
		fprintf(stderr, "isorun: exec failed: %s\n", strerror(-r));
	if (r < 0)
		return ISORUN_EXIT_ERROR;
	if (res.kind == RUN_EXEC_FAILED && res.stage == AGENT_STAGE_EXEC)
		fprintf(stderr, "isorun: %s: %s: %s\n", argv[0], res.message, strerror(res.code));
	else if (res.kind == RUN_EXEC_FAILED && res.stage == AGENT_STAGE_USER &&
		 res.code == ENOENT) /* the message says which user or group */
		fprintf(stderr, "isorun: cannot run %s: %s\n", argv[0], res.message);
	else if (res.kind == RUN_EXEC_FAILED)
		fprintf(stderr, "isorun: cannot run %s: %s: %s\n", argv[0], res.message,
			strerror(res.code));
	else if (res.timed_out)
		fprintf(stderr, "isorun: %s: timed out after %.3f s, killed\n", argv[0],
			e->timeout_ms / 1000.0);
	return run_exec_status(&res);
}

static int cmd_exec(int argc, char **argv)
{
	struct exec_args e = {0};
	int i = 1, r;
	for (; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
		r = exec_opt(&e, argc, argv, &i);
		if (r == 0)
			return isorun_usage_error("exec", ISORUN_EXIT_ERROR, "unknown option %s",
						  argv[i]);
		if (r < 0)
			return ISORUN_EXIT_ERROR;
	}
	if (i >= argc)
		return isorun_usage_error("exec", ISORUN_EXIT_ERROR, "no sandbox ID");
	const char *idarg = argv[i++];
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	if (i >= argc)
		return isorun_usage_error("exec", ISORUN_EXIT_ERROR, "no command");
	_cleanup_(run_ctx_freep) struct run_ctx *ctx = NULL;
	_cleanup_free_ char *id = NULL;
	if (open_ctx(&ctx) < 0 || resolve_id(ctx, idarg, &id) < 0)
		return ISORUN_EXIT_ERROR;
	return do_exec(ctx, id, &e, argv + i);
}
ISORUN_VERB_OPTS("exec", cmd_exec, "[options] ID -- CMD...", "run a command in a sandbox",
		 EXEC_OPTIONS EXIT_STATUS);

/* ---- run ---- */

/*
 * run's sandbox must not outlive a run killed with SIGKILL (a CI job's timeout, the OOM
 * killer), which cleans nothing up: its processes would keep running and its scratch and
 * image mount stay held. A child in its own session (so a signal to run's process group
 * spares it) waits on a pipe: run writes the sandbox's id once it exists and "." once it
 * has removed it itself; if the pipe closes in between, the child becomes
 * `isorun rm -f ID`. Forked before run opens anything (the child holds no lock or
 * connection of run's) and doing only async-signal-safe calls until its exec. -1 if it
 * cannot be started (then run goes on without it).
 */
static int reaper_start(pid_t *ret_pid)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	static char id[64];
	char *argv[] = {"isorun", "--root", (char *)isorun_root(), "rm", "-f", id, NULL};
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		close(p[0]);
		*ret_pid = pid;
		return p[1];
	}
	close(p[1]);
	setsid();
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int fd = 0; fd < 3 && null >= 0; fd++)
		dup2(null, fd);
	size_t n = 0;
	for (;;) {
		ssize_t k = read(p[0], id + n, sizeof(id) - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		if (n >= sizeof(id) - 1 || memchr(id, '.', n))
			_exit(0); /* run removed it itself, or is keeping it */
	}
	char *nl = memchr(id, '\n', n);
	if (!nl || nl == id)
		_exit(0); /* no sandbox yet */
	*nl = 0;
	execv("/proc/self/exe", argv);
	_exit(127);
}

/* Tell the reaper (reaper_start) the sandbox's id, or that it has nothing to do (id NULL:
 * then wait for it to exit, so that no zombie is left to a PID 1 that may not reap). */
static void reaper_tell(int fd, pid_t pid, const char *id)
{
	if (fd < 0)
		return;
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "%s\n", id ? id : ".");
	if (n > 0 && write(fd, buf, (size_t)n) < 0)
		log_debug("run: telling the reaper: %s", strerror(errno));
	if (!id)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

static int cmd_run(int argc, char **argv)
{
	struct create_args a = {0};
	struct exec_args e = {0};
	bool keep = false;
	int i = 1, r;
	for (; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--keep")) {
			keep = true;
			continue;
		}
		if ((r = create_opt(&a, argc, argv, &i)) != 0 ||
		    (r = exec_opt(&e, argc, argv, &i)) != 0) {
			if (r < 0)
				return ISORUN_EXIT_ERROR;
			continue;
		}
		return isorun_usage_error("run", ISORUN_EXIT_ERROR, "unknown option %s", argv[i]);
	}
	if (i < argc && strcmp(argv[i], "--"))
		a.ref = argv[i++];
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	if (i >= argc)
		return isorun_usage_error("run", ISORUN_EXIT_ERROR, "no command");
	pid_t reaper_pid = 0;
	_cleanup_close_ int reaper = keep ? -1 : reaper_start(&reaper_pid);
	_cleanup_(run_ctx_freep) struct run_ctx *ctx = NULL;
	_cleanup_free_ char *id = NULL;
	if (create_sandbox(&a, &ctx, &id) < 0) {
		reaper_tell(reaper, reaper_pid, NULL);
		create_args_fini(&a);
		return ISORUN_EXIT_ERROR;
	}
	reaper_tell(reaper, reaper_pid, id);
	int status = do_exec(ctx, id, &e, argv + i);
	log_debug("run: the command exited (status %d)", status);
	if (keep) {
		fprintf(stderr, "%s\n", id);
	} else if ((r = run_sandbox_remove(ctx, id, true)) < 0) {
		fprintf(stderr, "isorun: remove %s failed: %s\n", id, strerror(-r));
		if (status == 0)
			status = ISORUN_EXIT_ERROR;
	}
	reaper_tell(reaper, reaper_pid, NULL);
	refill_pool(&a);
	create_args_fini(&a);
	return status;
}
ISORUN_VERB_OPTS("run", cmd_run, "[options] [--keep] REF -- CMD...",
		 "create a sandbox, run a command in it, remove it",
		 "  --keep             keep the sandbox (its id goes to stderr)\n" CREATE_OPTIONS
		     EXEC_OPTIONS EXIT_STATUS);

/* ---- ps ---- */

static int cmd_ps(int argc, char **argv)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--format") && i + 1 < argc && !strcmp(argv[i + 1], "json")) {
			json = true;
			i++;
		} else if (!strcmp(argv[i], "--format=json")) {
			json = true;
		} else {
			fprintf(stderr, "usage: isorun ps [--format json]\n");
			return ISORUN_EXIT_USAGE;
		}
	}
	_cleanup_(run_ctx_freep) struct run_ctx *ctx = NULL;
	if (open_ctx(&ctx) < 0)
		return ISORUN_EXIT_ERROR;
	struct run_sandbox_info *v = NULL;
	size_t n = 0;
	int r = run_sandbox_list(ctx, &v, &n);
	if (r < 0) {
		fprintf(stderr, "isorun: ps: %s\n", strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	if (json) {
		json_object *a = json_object_new_array();
		for (size_t i = 0; i < n; i++) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "id", json_object_new_string(v[i].id));
			json_object_object_add(
			    o, "status",
			    json_object_new_string(v[i].pooled ? "pooled"
								: run_status_name(v[i].status)));
			json_object_object_add(o, "pid", json_object_new_int64(v[i].agent_pid));
			json_object_object_add(o, "created", json_object_new_int64(v[i].created));
			json_object_object_add(o, "memory",
					       json_object_new_int64((int64_t)v[i].memory_usage));
			if (v[i].lower_dir)
				json_object_object_add(o, "lower_dir",
						       json_object_new_string(v[i].lower_dir));
			if (v[i].image_key)
				json_object_object_add(o, "image",
						       json_object_new_string(v[i].image_key));
			if (v[i].image_name)
				json_object_object_add(o, "image_name",
						       json_object_new_string(v[i].image_name));
			json_object_array_add(a, o);
		}
		printf("%s\n", json_object_to_json_string_ext(
				   a, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(a);
	} else {
		printf("%-16s  %-8s  %-8s  %-19s  %-10s  %s\n", "ID", "STATUS", "PID", "CREATED",
		       "MEMORY", "IMAGE");
		for (size_t i = 0; i < n; i++) {
			char when[32], mem[32] = "-";
			time_t t = (time_t)v[i].created;
			struct tm tm;
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
			if (v[i].memory_usage)
				cm_format_bytes(v[i].memory_usage, mem, sizeof(mem));
			printf("%-16s  %-8s  %-8d  %-19s  %-10s  %s\n", v[i].id,
			       v[i].pooled ? "pooled" : run_status_name(v[i].status),
			       (int)v[i].agent_pid, when, mem,
			       v[i].image_name	? v[i].image_name
			       : v[i].image_key ? v[i].image_key
			       : v[i].lower_dir ? v[i].lower_dir
						: "-");
		}
	}
	run_sandbox_info_free(v, n);
	return 0;
}
ISORUN_VERB_OPTS("ps", cmd_ps, "[--format json]", "list sandboxes",
		 "  --format json      one JSON array instead of the table\n");

/* ---- stop / start / rm ---- */

static int for_each_id(int argc, char **argv, int first,
		       int (*fn)(struct run_ctx *, const char *, void *), void *ud)
{
	_cleanup_(run_ctx_freep) struct run_ctx *ctx = NULL;
	if (open_ctx(&ctx) < 0)
		return ISORUN_EXIT_ERROR;
	int status = 0;
	for (int i = first; i < argc; i++) {
		_cleanup_free_ char *id = NULL;
		if (resolve_id(ctx, argv[i], &id) < 0) {
			status = ISORUN_EXIT_ERROR;
			continue;
		}
		unsigned said = cm_log_errors();
		int r = fn(ctx, id, ud);
		if (r < 0 && cm_log_errors() == said) /* else the runner said why */
			fprintf(stderr, "isorun: %s %s: %s\n", argv[0], id, strerror(-r));
		if (r < 0)
			status = ISORUN_EXIT_ERROR;
	}
	return status;
}

static int do_stop(struct run_ctx *ctx, const char *id, void *ud)
{
	return run_sandbox_stop(ctx, id, *(uint32_t *)ud);
}

static int cmd_stop(int argc, char **argv)
{
	uint32_t grace = 10000;
	int i = 1;
	if (i + 1 < argc && (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--time"))) {
		char *end;
		double t = strtod(argv[i + 1], &end);
		if (end == argv[i + 1] || *end || !(t >= 0 && t <= 3600))
			return isorun_usage_error("stop", ISORUN_EXIT_USAGE,
						  "bad -t %s (seconds, 0 to 3600)", argv[i + 1]);
		grace = (uint32_t)(t * 1000);
		i += 2;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: isorun stop [-t SECONDS] ID...\n");
		return ISORUN_EXIT_USAGE;
	}
	return for_each_id(argc, argv, i, do_stop, &grace);
}
ISORUN_VERB_OPTS("stop", cmd_stop, "[-t SECONDS] ID...",
		 "stop a sandbox's processes, keep its scratch",
		 "  -t, --time S       seconds between SIGTERM and SIGKILL (default 10)\n");

static int do_start(struct run_ctx *ctx, const char *id, void *ud)
{
	return run_sandbox_start(ctx, id);
}

static int cmd_start(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: isorun start ID...\n");
		return ISORUN_EXIT_USAGE;
	}
	return for_each_id(argc, argv, 1, do_start, NULL);
}
ISORUN_VERB("start", cmd_start, "ID...", "boot a fresh agent on a stopped sandbox");

static int do_rm(struct run_ctx *ctx, const char *id, void *ud)
{
	return run_sandbox_remove(ctx, id, *(bool *)ud);
}

static int cmd_rm(int argc, char **argv)
{
	bool force = false;
	int i = 1;
	if (i < argc && (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--force"))) {
		force = true;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: isorun rm [-f] ID...\n");
		return ISORUN_EXIT_USAGE;
	}
	return for_each_id(argc, argv, i, do_rm, &force);
}
ISORUN_VERB_OPTS("rm", cmd_rm, "[-f] ID...", "remove a sandbox and its scratch",
		 "  -f, --force        remove it even if it is running\n");

/* ---- cp ---- */

/* "ID:/path" -> id prefix and path; false for a host path. */
static bool split_remote(char *s, char **id, char **path)
{
	char *colon = strchr(s, ':'), *slash = strchr(s, '/');
	if (!colon || colon == s || (slash && slash < colon))
		return false;
	*colon = 0;
	*id = s;
	*path = colon + 1;
	return true;
}

static int cmd_cp(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: isorun cp SRC DST (one of them ID:/path)\n");
		return ISORUN_EXIT_USAGE;
	}
	char *sid = NULL, *spath = NULL, *did = NULL, *dpath = NULL;
	bool sremote = split_remote(argv[1], &sid, &spath);
	bool dremote = split_remote(argv[2], &did, &dpath);
	if (sremote == dremote) {
		fprintf(stderr, "isorun cp: exactly one of SRC and DST must be ID:/path\n");
		return ISORUN_EXIT_USAGE;
	}
	const char *rpath = sremote ? spath : dpath;
	if (rpath[0] != '/') {
		fprintf(stderr, "isorun cp: the sandbox path must be absolute\n");
		return ISORUN_EXIT_USAGE;
	}
	_cleanup_(run_ctx_freep) struct run_ctx *ctx = NULL;
	_cleanup_free_ char *id = NULL;
	if (open_ctx(&ctx) < 0 || resolve_id(ctx, sremote ? sid : did, &id) < 0)
		return ISORUN_EXIT_ERROR;
	_cleanup_(run_client_freep) struct run_client *c = NULL;
	int r = run_client_connect(ctx, id, &c);
	if (r == -ECONNREFUSED) {
		fprintf(stderr,
			"isorun cp: sandbox %s is not running (stopped, or its agent is gone: "
			"see isorun ps)\n",
			id);
		return ISORUN_EXIT_ERROR;
	}
	if (r < 0) {
		fprintf(stderr, "isorun cp: cannot reach sandbox %s: %s\n", id, strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	struct run_copy_stats st;
	unsigned said = cm_log_errors();
	r = dremote ? run_client_copy_in(c, argv[1], dpath, id, &st)
		    : run_client_copy_out(c, spath, argv[2], id, &st);
	if (r < 0) {
		if (cm_log_errors() == said) /* else the runner said what failed */
			fprintf(stderr, "isorun cp: %s\n", strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	if (st.skipped)
		fprintf(stderr,
			"isorun cp: left out %llu device(s), fifo(s) or socket(s): only files, "
			"directories and symlinks are copied\n",
			(unsigned long long)st.skipped);
	return 0;
}
ISORUN_VERB_OPTS(
    "cp", cmd_cp, "SRC DST", "copy a file or a directory into (DST=ID:/path) or out of a sandbox",
    "  SRC or DST is ID:/path (an absolute path in the sandbox, ID or a unique prefix\n"
    "  of it), the other a host path. A directory is copied with everything in it\n"
    "  (files, directories, symlinks; modes and times kept). A destination that is a\n"
    "  directory receives the source under its own name (SRC/. : its contents);\n"
    "  else the copy takes the destination's name. Copies in are owned by root;\n"
    "  copies out by you, without set-id bits, and never through a symlink.\n");
