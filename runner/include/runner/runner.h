/*
 * The runner: sandboxes on top of a read-only lower directory (an image mounted by fs/),
 * their lifecycle and state under $ISORUN_ROOT/sandboxes/<id>/, and the host side of the
 * agent protocol (exec, files, ping).
 *
 * Conventions: every function returns >= 0 on success and -errno on failure; the messages
 * explaining a failure are logged once (common/log.h) where the cause is known. Objects are
 * opaque; *_free(NULL) is a no-op. A struct run_ctx and the objects made from it are not
 * thread-safe: use one per thread. Lifecycle operations on one sandbox are serialized
 * across processes by a lock file in its state directory, so several `isorun` processes may
 * act on the same root at once.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct run_ctx;
struct run_client;

#define RUN_ID_LEN 16 /* hex characters of a sandbox id */

/* --userns: root of the sandbox is host uid/gid RUN_USERNS_BASE, RUN_USERNS_SIZE ids mapped */
#define RUN_USERNS_BASE 100000u
#define RUN_USERNS_SIZE 65536u

/*
 * A runner context over a state root (NULL: cm_root_default()). The root and its
 * sandboxes/ folder are created on first use (mode 0700).
 * -ENOMEM; -errno from creating the directories.
 */
int run_ctx_new(const char *root, struct run_ctx **ret);
void run_ctx_free(struct run_ctx *ctx);

/*
 * The agent binary to boot sandboxes with (copied string). Without a call, the runner uses
 * $ISORUN_AGENT, then `isorun-agent` next to the running executable, then
 * ../agent/isorun-agent relative to it (the build tree), then /usr/libexec/isorun/isorun-agent.
 */
int run_ctx_set_agent(struct run_ctx *ctx, const char *path);

/*
 * How a sandbox gets its lower directory when it was created from an image key rather than
 * a plain directory. acquire() returns (malloc'd, caller frees) the path of a mounted lower
 * directory and takes a reference for `holder`, the sandbox's state directory (it exists as
 * long as the sandbox does); release() gives back the reference of that holder. The runner
 * holds one reference while the sandbox runs: acquired by create/start, released by stop
 * (and by rm of a running sandbox). release() is also called when removing a sandbox whose
 * creator died during the boot, which may or may not have got its reference: it must then
 * do nothing for a holder that holds none. Both are called with the sandbox's lock held,
 * possibly from a different process than the one that created the sandbox. The struct is
 * copied.
 */
struct run_image_ops {
	int (*acquire)(void *userdata, const char *image_key, const char *holder,
		       char **ret_lower_dir);
	/* keep_warm_s: how long the image's mount is to outlive this reference if it is the
	 * last one (the sandbox's --keep-warm), -1 for the mount's own delay */
	void (*release)(void *userdata, const char *image_key, const char *holder, int keep_warm_s);
	void *userdata;
};
void run_ctx_set_image_ops(struct run_ctx *ctx, const struct run_image_ops *ops);

/* The image config defaults of every exec (OCI image config: Env, WorkingDir, User). */
struct run_config {
	char **env;	   /* "K=V", NULL-terminated, may be NULL */
	char *working_dir; /* NULL or "" if unset */
	char *user;	   /* NULL or "" if unset */
};
/*
 * Parse an OCI image config JSON ({"config": {"Env": [...], "WorkingDir": ..., "User": ...}};
 * a bare {"Env": ...} object is accepted too). -EPROTO if malformed, -EFBIG over 1 MiB.
 */
int run_config_parse(const char *json, size_t len, struct run_config **ret);
void run_config_free(struct run_config *c);

enum run_net {
	RUN_NET_NONE = 0, /* a new network namespace with only lo, up */
	RUN_NET_HOST = 1, /* the host's network namespace */
};

struct run_create_opts {
	const char *lower_dir;		 /* the read-only rootfs; NULL to acquire it by image_key */
	const char *image_key;		 /* optional; stored, passed to run_image_ops */
	const char *image_name;		 /* optional: what the caller named the image (ps) */
	const struct run_config *config; /* optional */
	const char *backend;		 /* NULL or "ns" (the only backend so far) */
	enum run_net net;
	bool userns;	       /* a user namespace: root is host uid RUN_USERNS_BASE */
	uint64_t memory_bytes; /* 0: no limit */
	uint32_t cpu_millis;   /* 1000 = one CPU; 0: no limit */
	uint32_t pids_max;     /* 0: no limit */
	const char *hostname;  /* NULL: the id's first 12 characters */
	bool pooled;	       /* boot it into the warm pool (see run_sandbox_claim) */
	/* how long the image's mount outlives the sandbox when it is the last to release it
	 * (run_image_ops.release), when keep_warm_set; not part of the warm pool's key */
	bool keep_warm_set;
	uint32_t keep_warm_s; /* at most RUN_KEEP_WARM_MAX */
};
#define RUN_KEEP_WARM_MAX (7 * 86400) /* a week */

/*
 * Create a sandbox and boot it: state directory, scratch layer, cgroups, namespaces, the
 * agent as PID 1 (detached from the caller: it survives the caller's exit). Returns once
 * the agent answered a ping. *ret_id receives the id (malloc'd).
 * -EINVAL bad options; -ENOENT lower dir or agent missing; -EIO the sandbox failed to boot
 * (reason logged, state removed).
 */
int run_sandbox_create(struct run_ctx *ctx, const struct run_create_opts *o, char **ret_id);

/*
 * The warm pool: sandboxes booted ahead of time, each waiting for a create with the same
 * options under ROOT/pool/<key>/<id>, key = XXH3-128 over the backend, lower dir, image key,
 * network, user namespace, limits, hostname and image config. A pooled sandbox is an
 * ordinary running sandbox that has run nothing yet; `isorun ps` shows it as pooled.
 *
 * Claim one matching `o` (o->pooled is ignored): it leaves the pool, its creation time is
 * reset, *ret_id gets its id (malloc'd). Entries whose agent died, or older than
 * RUN_POOL_TTL_S, are removed on the way. -ENOENT when none is ready.
 */
#define RUN_POOL_TTL_S 3600
int run_sandbox_claim(struct run_ctx *ctx, const struct run_create_opts *o, char **ret_id);
/*
 * Boot pooled sandboxes for `o` until `n` wait in its pool. Returns how many were booted:
 * 0 at once when another process is filling the same pool; -errno from a failed create.
 */
int run_sandbox_pool_fill(struct run_ctx *ctx, const struct run_create_opts *o, unsigned n);

/*
 * Resolve a unique id prefix to the full id (malloc'd). -ENOENT none; -EEXIST ambiguous.
 */
int run_sandbox_resolve(struct run_ctx *ctx, const char *prefix, char **ret_id);

/* Boot a fresh agent on a stopped sandbox (its scratch layer kept). -EBUSY if running. */
int run_sandbox_start(struct run_ctx *ctx, const char *id);

/*
 * Stop: the agent syncs, sends SIGTERM to every process, waits up to grace_ms, sends
 * SIGKILL, exits; the namespaces go away; the scratch layer stays. A stale sandbox (agent
 * gone) is just cleaned up. Stopping a stopped sandbox is a no-op (returns 0).
 */
int run_sandbox_stop(struct run_ctx *ctx, const char *id, uint32_t grace_ms);

/* Remove a sandbox and its state. -EBUSY if running and !force (force stops it first). */
int run_sandbox_remove(struct run_ctx *ctx, const char *id, bool force);

enum run_status {
	RUN_STATUS_CREATED = 0, /* state written, never booted (or boot in progress) */
	RUN_STATUS_RUNNING = 1,
	RUN_STATUS_STOPPED = 2,
	RUN_STATUS_STALE = 3, /* recorded as running but the agent is gone (crash, kill -9) */
};
const char *run_status_name(enum run_status s);

struct run_sandbox_info {
	char id[RUN_ID_LEN + 1];
	enum run_status status;
	pid_t agent_pid;       /* host pid; 0 unless running */
	int64_t created;       /* unix seconds */
	char *lower_dir;       /* as given at create; may be NULL */
	char *image_key;       /* may be NULL */
	char *image_name;      /* as given at create (or at the claim from the pool); may be NULL */
	uint64_t memory_usage; /* cgroup memory usage in bytes, 0 if unknown */
	bool pooled;	       /* running, waiting in the warm pool */
};
/*
 * List every sandbox under the root, status checked against the live agent (pid and its
 * start time, so a reused pid is not mistaken for the agent). Sorted by creation time.
 * Caller frees with run_sandbox_info_free. Does not take sandbox locks.
 */
int run_sandbox_list(struct run_ctx *ctx, struct run_sandbox_info **ret, size_t *ret_n);
void run_sandbox_info_free(struct run_sandbox_info *v, size_t n);

/* ---- the host side of the agent protocol ---- */

/*
 * Connect to a running sandbox's agent and do the HELLO handshake.
 * -ENOENT no such sandbox; -ECONNREFUSED not running; -EPROTO handshake failed.
 */
int run_client_connect(struct run_ctx *ctx, const char *id, struct run_client **ret);
/*
 * Same over an already connected byte stream (any transport); takes ownership of fd.
 */
int run_client_open_fd(int fd, struct run_client **ret);
void run_client_free(struct run_client *c);
/* One PING/PONG round trip. -EPROTO on a wrong answer, -EPIPE if the agent went away. */
int run_client_ping(struct run_client *c);

struct run_exec_opts {
	const char *const *argv;  /* NULL-terminated, argv[0] required */
	const char *const *env;	  /* "K=V" overrides of the image Env, NULL-terminated, or NULL */
	const char *cwd;	  /* NULL: the image WorkingDir, else "/" */
	const char *user;	  /* NULL: the image User, else root */
	uint32_t timeout_ms;	  /* 0: none; on expiry the process group is killed */
	bool tty;		  /* run on a pty (stdout carries everything) */
	uint16_t rows, cols;	  /* initial pty size, 0 = unset */
	int stdin_fd;		  /* forwarded to the command; -1: /dev/null */
	int stdout_fd, stderr_fd; /* where the command's output goes, live */
	/*
	 * Optional signalfd (-1: none) the caller made for the signals to forward. Each signal
	 * read from it is sent to the command (SIGWINCH: the tty size of stdin_fd is sent).
	 */
	int signal_fd;
};

enum run_exec_kind {
	RUN_EXEC_EXITED = 0,
	RUN_EXEC_SIGNALED = 1,
	RUN_EXEC_FAILED = 2, /* could not start: stage and err say why */
};
struct run_exec_result {
	enum run_exec_kind kind;
	int code;  /* exit code, signal number, or for FAILED the agent's errno */
	int stage; /* enum agent_exec_stage for FAILED */
	bool timed_out;
	char message[256]; /* FAILED: the agent's explanation */
};

/*
 * Run a command through an open client and wait for it, streaming stdin/stdout/stderr.
 * opts->env/cwd/user are sent as given (no image defaults: see run_sandbox_exec).
 * Returns 0 when the command ran or failed to start (see *ret), -errno when the exchange
 * with the agent failed.
 */
int run_client_exec(struct run_client *c, const struct run_exec_opts *opts,
		    struct run_exec_result *ret);

/*
 * run_client_exec on a sandbox with the image config's defaults applied: Env (PATH first,
 * a default PATH if the image has none), then opts->env overrides; WorkingDir; User.
 * -ESRCH when the sandbox is stopped; -ECONNREFUSED when its agent does not answer.
 */
int run_sandbox_exec(struct run_ctx *ctx, const char *id, const struct run_exec_opts *opts,
		     struct run_exec_result *ret);

/*
 * docker's exit status convention for a result: the exit code; 128+N for signal N; 124 on
 * timeout; 127 not found, 126 cannot execute (or any other start failure).
 */
int run_exec_status(const struct run_exec_result *r);

/*
 * Copy a file into the sandbox: the bytes read from fd until EOF are written to `path`
 * (absolute, resolved inside the sandbox) through a temporary file beside it, renamed at the
 * end, with mode/uid/gid (ids as seen inside the sandbox). The caller keeps fd.
 * -errno from the agent (-ENOENT, -EACCES, ...; it stops the put at once) or from reading fd.
 */
int run_client_put_file(struct run_client *c, int fd, const char *path, uint32_t mode, uint32_t uid,
			uint32_t gid);
/*
 * Copy a directory's contents (files, directories, symlinks, with their modes and times;
 * owned by root in the sandbox) into the sandbox directory `path`, made if it is absent,
 * merged if it is there; devices, fifos and sockets are left out (*ret_skipped), and
 * filesystems mounted below it (their mount points arrive empty). Takes
 * dirfd. -EOPNOTSUPP from an agent of protocol 1.
 */
int run_client_put_dir(struct run_client *c, int dirfd, const char *path, uint32_t mode,
		       uint64_t *ret_entries, uint64_t *ret_skipped);
/*
 * Copy a regular file out of the sandbox into fd. *ret_mode (optional) gets its mode bits.
 * -ENOENT, -EISDIR, -EINVAL (not a regular file), -EPROTO.
 */
int run_client_get_file(struct run_client *c, const char *path, int fd, uint32_t *ret_mode);
/* What `path` is in the sandbox (symlinks followed): *ret_mode gets its st_mode.
 * -EOPNOTSUPP from an agent of protocol 1. */
int run_client_stat(struct run_client *c, const char *path, uint32_t *ret_mode);

/*
 * isorun cp, like docker cp: a file or a directory (recursively), in (src a host path, dst
 * a sandbox path) or out (src a sandbox path, dst a host path). A destination that is a
 * directory receives the source under its own name, or its contents for "SRC/."; else the
 * copy takes the destination's name. Files keep their permission bits and times; owned by
 * root in the sandbox, by the caller on the host, without set-id bits (a sandbox is not
 * trusted); directories out of a sandbox are written without following any symlink.
 * Errors are logged in one line naming the source, the destination and the entry;
 * `label` names the sandbox in them (its id).
 */
struct run_copy_stats {
	uint64_t entries; /* files, directories and symlinks copied */
	uint64_t skipped; /* devices, fifos and sockets left out */
};
int run_client_copy_in(struct run_client *c, const char *src, const char *dst, const char *label,
		       struct run_copy_stats *st);
int run_client_copy_out(struct run_client *c, const char *src, const char *dst, const char *label,
			struct run_copy_stats *st);

/*
 * Send SHUTDOWN and wait for the answer (or EOF) at most grace_ms + 5 s (used by stop).
 * -EAGAIN on that timeout.
 */
int run_client_shutdown(struct run_client *c, uint32_t grace_ms);
