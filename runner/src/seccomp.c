/*
 * The default seccomp profile, in the spirit of docker's: every syscall is allowed except
 * those that reach kernel-global state or escape the namespaces, which fail with EPERM
 * (a clean error for programs that probe, rather than a kill). docker's profile is an
 * allow-list; this one is a deny-list of the same dangerous set, which keeps new harmless
 * syscalls working on new kernels. ptrace is allowed (as docker does on kernels >= 4.8,
 * where seccomp cannot be bypassed through it).
 *
 * Installed by the runner in the sandbox's init process just before it execs the agent,
 * with no_new_privs set: the agent makes none of these calls after start, so it and every
 * command it runs carry the same filter.
 */
#include "sandbox.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const denied[] = {
    /* mounts and the filesystem namespace */
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    /* namespaces */
    "unshare",
    "setns",
    /* kernel modules, kexec, reboot */
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    /* kernel-global knobs and tracing */
    "bpf",
    "perf_event_open",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "stime",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "nfsservctl",
    "vhangup",
    "iopl",
    "ioperm",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "get_kernel_syms",
    "query_module",
    "pciconfig_read",
    "pciconfig_write",
    "pciconfig_iobase",
    /* keyrings (not namespaced) */
    "keyctl",
    "add_key",
    "request_key",
    /* file handles escape mount namespaces; userfaultfd and io_uring are attack surface */
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    /* moving other processes' pages between NUMA nodes */
    "move_pages",
    "migrate_pages",
};

static const unsigned long ns_flags[] = {CLONE_NEWNS,	  CLONE_NEWUTS, CLONE_NEWIPC,
					 CLONE_NEWUSER,	  CLONE_NEWPID, CLONE_NEWNET,
					 CLONE_NEWCGROUP, 0x00000080UL /* CLONE_NEWTIME */};

static void ctx_releasep(scmp_filter_ctx *c)
{
	if (*c)
		seccomp_release(*c);
}

/* Build the profile with libseccomp. */
static int build(scmp_filter_ctx *ret)
{
	int r;
	_cleanup_(ctx_releasep) scmp_filter_ctx c = seccomp_init(SCMP_ACT_ALLOW);
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(denied); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		r = seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), nr, 0);
		if (r < 0 && r != -EDOM)
			return cm_log_ret(r, "seccomp: rule for %s: %s", denied[i], strerror(-r));
	}
	/* clone with a namespace flag: EPERM; fork-like clones pass */
	for (size_t i = 0; i < ARRAY_SIZE(ns_flags); i++) {
		r = seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
		if (r < 0)
			return cm_log_ret(r, "seccomp: clone rule: %s", strerror(-r));
	}
	/* clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libcs fall back
	 * to clone, which is filtered above (docker does the same) */
	r = seccomp_rule_add(c, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r < 0)
		return cm_log_ret(r, "seccomp: clone3 rule: %s", strerror(-r));
	*ret = TAKE_PTR(c);
	return 0;
}

/*
 * The compiled program, cached: in memory for the life of the process, and on disk as
 * <root>/seccomp-<key>.bpf, where the key hashes the rule list, the libseccomp version and
 * the architecture (compiling costs ~0.5 ms, reading the cache ~20 us; this is on the path
 * of every boot). The file is published atomically; a cache file of the wrong shape is
 * ignored and rebuilt.
 */
static struct sock_filter *prog_insns;
static size_t prog_len;

#define MAX_INSNS 4096 /* BPF_MAXINSNS */

static uint64_t profile_key(void)
{
	char buf[4096];
	size_t n = 0;
	const struct scmp_version *v = seccomp_version();
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "v1 %u.%u.%u %u;", v->major, v->minor,
			      v->micro, seccomp_arch_native());
	for (size_t i = 0; i < ARRAY_SIZE(denied) && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s,", denied[i]);
	for (size_t i = 0; i < ARRAY_SIZE(ns_flags) && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%lx,", ns_flags[i]);
	return cm_xxh3(buf, MIN(n, sizeof(buf)));
}

int run_seccomp_prepare(const char *root)
{
	if (prog_insns)
		return 0;
	char name[64];
	snprintf(name, sizeof(name), "seccomp-%016llx.bpf", (unsigned long long)profile_key());
	_cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct cm_buf b;
	cm_buf_init(&b, MAX_INSNS * sizeof(struct sock_filter));
	if (rootfd >= 0 && cm_read_file(rootfd, name, &b) == 0 && b.len &&
	    b.len % sizeof(struct sock_filter) == 0) {
		prog_len = b.len / sizeof(struct sock_filter);
		prog_insns = (struct sock_filter *)(void *)TAKE_PTR(b.data);
		cm_buf_fini(&b);
		return 0;
	}
	cm_buf_clear(&b);

	_cleanup_(ctx_releasep) scmp_filter_ctx c = NULL;
	int r = build(&c);
	if (r < 0) {
		cm_buf_fini(&b);
		return r;
	}
	_cleanup_close_ int mfd = memfd_create("isorun-seccomp", MFD_CLOEXEC);
	struct stat st;
	if (mfd < 0 || (r = seccomp_export_bpf(c, mfd)) < 0 || fstat(mfd, &st) < 0 ||
	    (r = cm_buf_reserve(&b, (size_t)st.st_size)) < 0 ||
	    (r = cm_pread_full(mfd, b.data, (size_t)st.st_size, 0)) < 0) {
		r = r < 0 ? r : -errno;
		cm_buf_fini(&b);
		return cm_log_ret(r, "seccomp: export: %s", strerror(-r));
	}
	b.len = (size_t)st.st_size;
	if (!b.len || b.len % sizeof(struct sock_filter)) {
		cm_buf_fini(&b);
		return cm_log_ret(-EPROTO, "seccomp: odd program size %zu", b.len);
	}
	if (rootfd >= 0)
		(void)cm_write_file_atomic(rootfd, name, b.data, b.len, 0644, false);
	prog_len = b.len / sizeof(struct sock_filter);
	prog_insns = (struct sock_filter *)(void *)TAKE_PTR(b.data);
	cm_buf_fini(&b);
	return 0;
}

int run_seccomp_install(void)
{
	if (!prog_insns)
		return -EINVAL;
	struct sock_fprog fp = {.len = (unsigned short)prog_len, .filter = prog_insns};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) < 0)
		return -errno;
	return 0;
}
