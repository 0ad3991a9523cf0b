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

#include "common/cleanup.h"
#include "common/log.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <sys/prctl.h>

static const char *const denied[] = {
	/* mounts and the filesystem namespace */
	"mount", "umount", "umount2", "pivot_root",
	"move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	/* namespaces */
	"unshare", "setns",
	/* kernel modules, kexec, reboot */
	"init_module", "finit_module", "delete_module", "create_module", "kexec_load",
	"kexec_file_load", "reboot",
	/* kernel-global knobs and tracing */
	"bpf", "perf_event_open", "swapon", "swapoff", "settimeofday", "clock_settime",
	"clock_adjtime", "adjtimex", "stime", "acct", "syslog", "quotactl", "quotactl_fd",
	"lookup_dcookie", "nfsservctl", "vhangup", "iopl", "ioperm", "uselib", "ustat", "sysfs",
	"_sysctl", "get_kernel_syms", "query_module", "pciconfig_read", "pciconfig_write",
	"pciconfig_iobase",
	/* keyrings (not namespaced) */
	"keyctl", "add_key", "request_key",
	/* file handles escape mount namespaces; userfaultfd and io_uring are attack surface */
	"open_by_handle_at", "name_to_handle_at", "userfaultfd", "io_uring_setup",
	"io_uring_enter", "io_uring_register",
	/* moving other processes' pages between NUMA nodes */
	"move_pages", "migrate_pages",
};

static const unsigned long ns_flags[] = {CLONE_NEWNS,	CLONE_NEWUTS, CLONE_NEWIPC,
					 CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
					 CLONE_NEWCGROUP, 0x00000080UL /* CLONE_NEWTIME */};

static void ctx_releasep(scmp_filter_ctx *c)
{
	if (*c)
		seccomp_release(*c);
}

int run_seccomp_load_default(void)
{
	int r;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	_cleanup_(ctx_releasep) scmp_filter_ctx c = seccomp_init(SCMP_ACT_ALLOW);
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(denied); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture (or a marker entry) */
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
	r = seccomp_load(c);
	if (r < 0)
		return cm_log_ret(r, "seccomp: load: %s", strerror(-r));
	return 0;
}
