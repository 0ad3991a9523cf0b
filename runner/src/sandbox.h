/*
 * Runner internals: the sandbox object handed to backends, the backend interface, cgroups
 * and seccomp helpers.
 *
 * State directory layout ($ISORUN_ROOT/sandboxes/<id>/, mode 0700, root only):
 *   lock          flock(2) serializing lifecycle operations on this sandbox
 *   config.json   what the sandbox was created with (immutable after create)
 *   state.json    status, agent host pid and its start time, warm pool key (rewritten
 *                 atomically)
 *   agent.sock    the agent's listening socket (made by the runner, inherited by the agent)
 *   agent.log     the agent's stderr
 *   hosts, hostname, resolv.conf   bind-mounted read-only into the sandbox's /etc
 *   rootfs/       mount point of the overlay (only inside the sandbox's mount namespace)
 *   scratch/upper, scratch/work   the overlay's writable layer
 *
 * The warm pool: $ISORUN_ROOT/pool/<key>/<id> (empty files), one per pooled sandbox; whoever
 * unlinks an entry owns that sandbox. pool/<key>/.fill is flock(2)ed by the process booting
 * sandboxes into that pool.
 */
#pragma once

#include "runner/runner.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct run_sandbox {
	struct run_ctx *ctx;
	char id[RUN_ID_LEN + 1];
	int dirfd; /* the state directory, O_PATH|O_DIRECTORY */
	char *dir; /* its path */
	/* from config.json */
	char *lower_dir, *image_key, *image_name, *backend, *hostname;
	struct run_config *config;
	enum run_net net;
	bool userns;
	uint64_t memory_bytes;
	uint32_t cpu_millis, pids_max;
	int64_t created;
	int keep_warm_s; /* -1: none given */
	/* from state.json */
	char pool_key[33]; /* "" unless waiting in the warm pool */
	enum run_status status;
	pid_t pid;
	uint64_t pid_start; /* /proc/<pid>/stat field 22 */
};

/*
 * A sandbox backend. The namespace backend is the first; a microVM backend implements the
 * same operations with a virtio-serial stream as the agent transport. Every operation is
 * called with the sandbox's lock held and returns -errno.
 */
struct run_backend_ops {
	const char *name;
	/* Prepare backend state in the new sandbox directory (scratch layer, files). */
	int (*create)(struct run_sandbox *sb);
	/* Boot the agent on lower_dir; return when it answered a ping; fill sb->pid/pid_start. */
	int (*start)(struct run_sandbox *sb, const char *lower_dir);
	/* Orderly stop (SHUTDOWN, grace, kill), then release the runtime resources. */
	int (*stop)(struct run_sandbox *sb, uint32_t grace_ms);
	/* Remove what create made (called on a stopped sandbox, before its dir is removed). */
	int (*destroy)(struct run_sandbox *sb);
	/* A connected byte stream to the agent (caller owns the fd). */
	int (*connect)(struct run_sandbox *sb, int *ret_fd);
};

extern const struct run_backend_ops run_backend_ns;
/* The backend named `name` (NULL: "ns"); NULL if unknown. */
const struct run_backend_ops *run_backend_find(const char *name);

/* The agent binary's path (see run_ctx_set_agent); NULL only on -ENOMEM. */
const char *run_ctx_agent_path(struct run_ctx *ctx);
const char *run_ctx_root(struct run_ctx *ctx);

/* Load the sandbox's config and state (-ENOENT if no such sandbox). */
int run_sandbox_load(struct run_ctx *ctx, const char *id, struct run_sandbox **ret);
void run_sandbox_free(struct run_sandbox *sb);
int run_sandbox_save_state(struct run_sandbox *sb);
/* True if sb->pid is alive and is the agent recorded (same start time). */
bool run_sandbox_agent_alive(const struct run_sandbox *sb);
/* /proc/<pid>/stat start time; -ESRCH if gone. */
int run_proc_start_time(pid_t pid, uint64_t *ret);
/* The agent's pid and start time as an xattr of the sandbox's directory, as soon as the boot
 * knows them (before the state says "running"): a sandbox whose creator died in between can
 * still have its agent stopped (stop_locked). Best effort. */
void run_mark_agent(struct run_sandbox *sb, pid_t pid, uint64_t start);
/* A pidfd of `pid` if it is still the process that started at `start` (checked again after
 * the open: the pid may have been reused in between); -ESRCH otherwise, or -errno. */
int run_pidfd_exact(pid_t pid, uint64_t start);
/* Wait up to timeout_ms (-1: for ever) for the process of `pidfd` to end. */
void run_pidfd_wait(int pidfd, int timeout_ms);
/* SIGKILL that exact process and wait up to timeout_ms for it to end. */
void run_kill_exact(pid_t pid, uint64_t start, int timeout_ms);

/* cgroups (v1 or v2, detected once). */
struct run_cgroup_limits {
	uint64_t memory_bytes;
	uint32_t cpu_millis, pids_max;
};
/* Create the sandbox's cgroups and set limits (nothing without limits). */
int run_cgroup_create(const char *id, const struct run_cgroup_limits *l);
/* Move the calling process into the sandbox's cgroups made for the same limits (a forked
 * child may call it: open/write/close only). */
int run_cgroup_join(const char *id, const struct run_cgroup_limits *l);
/* The same for another process (0: the caller). */
int run_cgroup_attach(const char *id, const struct run_cgroup_limits *l, pid_t pid);
/* Remove the sandbox's cgroups (retries while the kernel finishes with exiting tasks). */
int run_cgroup_destroy(const char *id);
/* Current memory usage in bytes (0 if unknown). */
uint64_t run_cgroup_memory_usage(const char *id);

/*
 * Compile the default seccomp profile (or read it from the cache under `root`); keeps it in
 * memory for run_seccomp_install. Call before forking the sandbox's init. Not thread-safe.
 */
int run_seccomp_prepare(const char *root);
/* Install the prepared profile in the calling process (sets no_new_privs first). */
int run_seccomp_install(void);

/* Connect to a unix socket at dirfd/name (works for paths longer than sun_path). */
int run_unix_connect_at(int dirfd, const char *name, int *ret_fd);
