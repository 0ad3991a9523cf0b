/*
 * The namespace backend: a sandbox is a set of Linux namespaces whose PID 1 is the agent.
 *
 * Boot (ns_start), in three processes:
 *   caller ── fork ──▶ A: setsid; clone3(NEWNS|NEWPID|NEWUTS|NEWIPC[|NEWNET][|NEWUSER]) ──▶ B
 *   A reports B's pid and exits, so B is detached from the caller (re-parented to the
 *   host's init, which reaps it). With --userns, A first writes B's id maps, puts B in its
 *   cgroups and builds the overlay (lower layer idmapped) in the host's namespaces, then
 *   hands the detached mount to B over a socketpair.
 *   B (pid 1 of the new pid namespace) builds the sandbox and execs the agent:
 *     1. join the sandbox's cgroups (when it has limits), then unshare(CLONE_NEWCGROUP)
 *     2. make every mount private; attach the overlay (lower=<lower dir>, upper/work in
 *        the scratch layer; built with fsopen/fsmount) on rootfs/; everything below is
 *        addressed through the overlay's mount fd
 *     3. /proc (fresh, masked and read-only paths like docker), /sys read-only, /dev tmpfs
 *        with the null zero full random urandom tty nodes, devpts newinstance,
 *        /dev/shm, the /dev/fd links; /tmp tmpfs noexec; /sandbox on the scratch layer;
 *        /etc/hosts, /etc/hostname, /etc/resolv.conf bound read-only from the state dir
 *     4. hostname; lo up (--net none)
 *     5. pivot_root into rootfs/, detach the old root
 *     6. bounding set := docker's default capabilities, inheritable and ambient cleared,
 *        no_new_privs, the default seccomp filter
 *     7. execveat(agent fd) with the listening socket as fd 3, stderr to agent.log
 *   Targets inside the image (proc, dev, etc/hosts, ...) are opened with openat2
 *   RESOLVE_IN_ROOT (directories with RESOLVE_NO_SYMLINKS: a symlink there is replaced by
 *   a real directory in the scratch layer) and mounted through /proc/self/fd/N, so no
 *   symlink from the image can redirect a mount outside the sandbox root.
 *   B reports a failure as text on a close-on-exec pipe; EOF without text means the agent
 *   was exec'd. The caller then connects and pings.
 *
 * The agent never runs a mount or namespace syscall after that (it could not: seccomp).
 * Stop sends SHUTDOWN; when the agent (pid 1) exits the kernel kills everything left in the
 * pid namespace and the mount namespace, with the overlay, disappears with it.
 */
#include "sandbox.h"

#include "agent/protocol.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_CAPS                                                                               \
	((1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_FSETID) |                 \
	 (1ull << CAP_FOWNER) | (1ull << CAP_MKNOD) | (1ull << CAP_NET_RAW) |                      \
	 (1ull << CAP_SETGID) | (1ull << CAP_SETUID) | (1ull << CAP_SETFCAP) |                     \
	 (1ull << CAP_SETPCAP) | (1ull << CAP_NET_BIND_SERVICE) | (1ull << CAP_SYS_CHROOT) |       \
	 (1ull << CAP_KILL) | (1ull << CAP_AUDIT_WRITE))

/* ---- create / destroy ---- */

/* A file of the new sandbox's private directory, read only by its boot: created in place
 * (no temporary file and rename: one inode and one directory operation fewer each). */
static int write_file_at(int dirfd, const char *name, const void *data, size_t len)
{
	_cleanup_close_ int fd =
	    openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	return cm_write_full(fd, data, len);
}

static int ns_create(struct run_sandbox *sb)
{
	int r;
	_cleanup_close_ int dfd = openat(sb->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if ((r = cm_mkdir_p(dfd, "scratch/upper", 0755)) < 0 ||
	    (r = cm_mkdir_p(dfd, "scratch/work", 0700)) < 0 ||
	    (r = cm_mkdir_p(dfd, "rootfs", 0755)) < 0)
		return cm_log_ret(r, "sandbox %s: cannot create the scratch layer: %s", sb->id,
				  strerror(-r));
	_cleanup_free_ char *hosts = cm_strdupf("127.0.0.1\tlocalhost\n"
						"::1\tlocalhost ip6-localhost ip6-loopback\n"
						"127.0.1.1\t%s\n",
						sb->hostname);
	_cleanup_free_ char *hostname = cm_strdupf("%s\n", sb->hostname);
	if (!hosts || !hostname)
		return -ENOMEM;
	if ((r = write_file_at(dfd, "hosts", hosts, strlen(hosts))) < 0 ||
	    (r = write_file_at(dfd, "hostname", hostname, strlen(hostname))) < 0)
		return r;
	/* the host's resolvers with --net host; none reachable without a network */
	static const char none[] = "# no network (isorun --net none)\n";
	struct cm_buf b;
	cm_buf_init(&b, 64 << 10);
	if (sb->net == RUN_NET_HOST && cm_read_file(AT_FDCWD, "/etc/resolv.conf", &b) >= 0)
		r = write_file_at(dfd, "resolv.conf", b.data, b.len);
	else
		r = write_file_at(dfd, "resolv.conf", none, sizeof(none) - 1);
	cm_buf_fini(&b);
	return r;
}

static int ns_destroy(struct run_sandbox *sb)
{
	unlinkat(sb->dirfd, "agent.sock", 0);
	return run_cgroup_destroy(sb->id);
}

/* ---- the sandbox's init (process B), before the agent ---- */

struct boot {
	struct run_sandbox *sb;
	const char *lower;
	const char *lowers; /* the overlay's lowerdir: lower, or "TARGETS:lower" (targets_layer) */
	int listen_fd, agent_fd, null_fd, log_fd, err_fd;
	/* userns: the scratch layer, opened by the caller for A's overlay mount */
	int upper_fd, work_fd;
	/* opened by B in its own mount namespace before it changes uid (with a user namespace
	 * it cannot walk the root-only state directory afterwards) */
	int rootfs_fd, etc_fd[3];
	int sync_fd; /* userns: B receives the overlay mount from A on this socket */
	/* the sandbox root while it is being built: "/proc/self/fd/<overlay root fd>" */
	char root[64];
};

static _Noreturn void boot_fail(const struct boot *b, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static _Noreturn void boot_fail(const struct boot *b, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (err)
		n += snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(err));
	(void)!write(b->err_fd, msg, strlen(msg));
	_exit(1);
}

static int openat2_(int dirfd, const char *path, int flags, uint64_t resolve)
{
	struct open_how how = {.flags = (uint64_t)flags, .resolve = resolve};
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/*
 * Open (creating if missing) `rel` under the root fd as a directory or an empty file;
 * returns an O_PATH fd. See the header comment for the symlink rules.
 */
static int ensure_in_root(int rootfd, const char *rel, bool dir)
{
	uint64_t res = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (dir ? RESOLVE_NO_SYMLINKS : 0);
	int fd = openat2_(rootfd, rel, O_PATH | O_CLOEXEC, res);
	if (fd >= 0) {
		struct stat st;
		if (fstat(fd, &st) == 0 && (dir ? S_ISDIR(st.st_mode) : !S_ISDIR(st.st_mode)))
			return fd;
		close(fd);
		return -ENOTDIR;
	}
	if (errno != ENOENT && errno != ELOOP)
		return -errno;
	/* create it: parent first (always a directory) */
	char parent[4096];
	snprintf(parent, sizeof(parent), "%s", rel);
	char *slash = strrchr(parent, '/');
	const char *base = rel;
	_cleanup_close_ int pfd = -1;
	if (slash) {
		*slash = 0;
		base = slash + 1;
		pfd = ensure_in_root(rootfd, parent, true);
		if (pfd < 0)
			return pfd;
	} else {
		pfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	}
	_cleanup_close_ int pdir = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pdir < 0)
		return -errno;
	struct stat st;
	if (fstatat(pdir, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		unlinkat(pdir, base, 0); /* a dangling or forbidden symlink: replace it */
	if (dir) {
		if (mkdirat(pdir, base, 0755) < 0 && errno != EEXIST)
			return -errno;
	} else {
		int f = openat(pdir, base, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (f < 0)
			return -errno;
		close(f);
	}
	fd = openat(pdir, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void mount_in_root(const struct boot *b, int rootfd, const char *rel, bool dir,
			  const char *src, const char *fstype, unsigned long flags,
			  const char *data)
{
	int fd = ensure_in_root(rootfd, rel, dir);
	if (fd < 0)
		boot_fail(b, -fd, "cannot prepare /%s in the sandbox", rel);
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	if (mount(src, p, fstype, flags, data) < 0)
		boot_fail(b, errno, "mount %s on /%s", fstype ? fstype : src, rel);
	close(fd);
}

/* Bind a path onto itself read-only (inside our own fresh mounts only). */
static void bind_ro(const struct boot *b, const char *path)
{
	if (access(path, F_OK) < 0)
		return;
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0 ||
	    mount(NULL, path, NULL,
		  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		boot_fail(b, errno, "read-only %s", path);
}

static void mask(const struct boot *b, const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	int r = S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs",
					    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
				    : mount("/dev/null", path, NULL, MS_BIND, NULL);
	if (r < 0)
		boot_fail(b, errno, "mask %s", path);
}

static void setup_proc(const struct boot *b, int rootfd)
{
	char p[4200];
	mount_in_root(b, rootfd, "proc", true, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		      NULL);
	static const char *const masked[] = {
	    "acpi",	  "asound",	 "kcore",	"keys", "latency_stats",
	    "timer_list", "timer_stats", "sched_debug", "scsi", "sysrq-trigger"};
	static const char *const ro[] = {"bus", "fs", "irq", "sys"};
	for (size_t i = 0; i < ARRAY_SIZE(ro); i++) {
		snprintf(p, sizeof(p), "%s/proc/%s", b->root, ro[i]);
		bind_ro(b, p);
	}
	for (size_t i = 0; i < ARRAY_SIZE(masked); i++) {
		snprintf(p, sizeof(p), "%s/proc/%s", b->root, masked[i]);
		mask(b, p);
	}
}

static void setup_dev(const struct boot *b, int rootfd)
{
	char d[128], p[256];
	mount_in_root(b, rootfd, "dev", true, "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC,
		      "mode=755,size=65536k");
	snprintf(d, sizeof(d), "%s/dev", b->root);
	/* device nodes rather than bind mounts of the host's: fewer mounts to build and tear
	 * down (this is on the path of every `isorun run`) */
	static const struct {
		const char *name;
		unsigned maj, min;
	} nodes[] = {{"null", 1, 3},   {"zero", 1, 5},	  {"full", 1, 7},
		     {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
	for (size_t i = 0; i < ARRAY_SIZE(nodes); i++) {
		snprintf(p, sizeof(p), "%s/%s", d, nodes[i].name);
		if (mknod(p, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) == 0)
			continue;
		/* in a user namespace: no mknod, bind the host's node instead */
		char src[64];
		snprintf(src, sizeof(src), "/dev/%s", nodes[i].name);
		int fd =
		    errno == EPERM ? open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666) : -1;
		if (fd < 0 || close(fd) < 0 || mount(src, p, NULL, MS_BIND, NULL) < 0)
			boot_fail(b, errno, "/dev/%s", nodes[i].name);
	}
	snprintf(p, sizeof(p), "%s/pts", d);
	if (mkdir(p, 0755) < 0 || mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC,
					"newinstance,ptmxmode=0666,mode=0620") < 0)
		boot_fail(b, errno, "devpts");
	snprintf(p, sizeof(p), "%s/shm", d);
	if (mkdir(p, 01777) < 0 ||
	    mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") < 0)
		boot_fail(b, errno, "/dev/shm");
	static const char *const links[][2] = {{"ptmx", "pts/ptmx"},
					       {"fd", "/proc/self/fd"},
					       {"stdin", "/proc/self/fd/0"},
					       {"stdout", "/proc/self/fd/1"},
					       {"stderr", "/proc/self/fd/2"}};
	for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
		snprintf(p, sizeof(p), "%s/%s", d, links[i][0]);
		if (symlink(links[i][1], p) < 0)
			boot_fail(b, errno, "symlink /dev/%s", links[i][0]);
	}
}

static void lo_up(const struct boot *b)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		boot_fail(b, errno, "lo flags");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		boot_fail(b, errno, "lo up");
}

static void drop_caps(const struct boot *b)
{
	for (int cap = 0; cap <= 63; cap++) {
		if (DEFAULT_CAPS & (1ull << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			boot_fail(b, errno, "drop capability %d from the bounding set", cap);
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		boot_fail(b, errno, "clear ambient capabilities");
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		boot_fail(b, errno, "capget");
	d[0].inheritable = d[1].inheritable = 0;
	if (syscall(SYS_capset, &h, d) < 0)
		boot_fail(b, errno, "capset");
}

/* Send one fd (or, with fd < 0, the error -fd) over a unix socket. */
static int send_fd(int sock, int fd)
{
	int32_t err = fd < 0 ? -fd : 0;
	struct iovec iov = {.iov_base = &err, .iov_len = sizeof(err)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u = {0};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		m.msg_control = u.buf;
		m.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* Receive what send_fd sent: an fd (O_CLOEXEC), or -errno. */
static int recv_fd(int sock)
{
	int32_t err = 0;
	struct iovec iov = {.iov_base = &err, .iov_len = sizeof(err)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(err))
		return n < 0 ? -errno : -EPIPE;
	if (err)
		return -err;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
		return -EPROTO;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/*
 * A detached overlay mount (new mount API): returns its mount fd, -errno. Layers must be
 * in the caller's mount namespace.
 *
 * "volatile" (Linux 5.10; ignored where unknown): no sync of the upper filesystem, neither on
 * fsync nor at unmount. Without it the overlay's unmount, which happens inside the dying
 * agent's exit and so inside every `rm`/`run`, syncs the whole filesystem holding
 * $ISORUN_ROOT (every dirty inode of the host's disk, then a flush): 2-3 ms on an idle disk,
 * 10-150 ms on a busy one. A removed sandbox's scratch is deleted anyway; a stopped one's is
 * synced explicitly (run_sandbox_stop); a host crash loses writes that were not written back,
 * as for any unsynced file. The overlay leaves work/work/incompat/volatile behind and refuses
 * the next mount while it exists: clear_volatile_mark() removes it before every boot.
 */
static int overlay_fsmount(const char *lower, const char *up, const char *wk, bool userxattr)
{
	_cleanup_close_ int fs = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -errno;
	if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir", lower, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", up, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "workdir", wk, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "index", "off", 0) < 0 ||
	    (userxattr && fsconfig(fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0))
		return -errno;
	if (fsconfig(fs, FSCONFIG_SET_FLAG, "volatile", NULL, 0) < 0 && errno != EINVAL)
		return -errno;
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return -errno;
	int m = fsmount(fs, FSMOUNT_CLOEXEC, 0);
	return m < 0 ? -errno : m;
}

static int write_proc(pid_t pid, const char *file, const char *val)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/%s", (int)pid, file);
	_cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		return -errno;
	return 0;
}

/*
 * Without an idmapped lower layer, the sandbox's root cannot create anything in image
 * directories (their owners are unmapped). Create the mount targets the sandbox's init
 * needs directly in the upper layer, owned by the namespace's root, so they shadow (or
 * merge with) the image's. Symlinks in the upper layer (made by an earlier run) are never
 * followed.
 */
static int userns_seed_upper(int upper_fd)
{
	static const char *const dirs[] = {"etc", "proc", "sys", "dev", "tmp", "sandbox"};
	static const char *const files[] = {"hosts", "hostname", "resolv.conf"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if (mkdirat(upper_fd, dirs[i], 0755) < 0 && errno != EEXIST)
			return -errno;
		if (fchownat(upper_fd, dirs[i], RUN_USERNS_BASE, RUN_USERNS_BASE,
			     AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	_cleanup_close_ int etc = openat2_(upper_fd, "etc", O_PATH | O_DIRECTORY | O_CLOEXEC,
					   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	if (etc < 0)
		return -errno;
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		int fd = openat(etc, files[i], O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		int r = fchown(fd, RUN_USERNS_BASE, RUN_USERNS_BASE) < 0 ? -errno : 0;
		close(fd);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * A's half of a user-namespaced boot, while B waits on the socket: map root to
 * RUN_USERNS_BASE.., put B into its cgroups, mount the overlay with the lower layer
 * idmapped to B's user namespace (so image files owned by host uid N appear as N inside and
 * copy-up keeps their owners), hand the mount to B. Returns -errno (logged).
 */
static int userns_prepare(struct boot *b, pid_t pid, int sock)
{
	struct run_sandbox *sb = b->sb;
	char map[64];
	int r;
	snprintf(map, sizeof(map), "0 %u %u\n", RUN_USERNS_BASE, RUN_USERNS_SIZE);
	if ((r = write_proc(pid, "uid_map", map)) < 0 || (r = write_proc(pid, "gid_map", map)) < 0)
		return cm_log_ret(r, "user namespace maps: %s", strerror(-r));
	struct run_cgroup_limits lim = {.memory_bytes = sb->memory_bytes,
					.cpu_millis = sb->cpu_millis,
					.pids_max = sb->pids_max};
	if ((r = run_cgroup_attach(sb->id, &lim, pid)) < 0)
		return cm_log_ret(r, "cgroups: %s", strerror(-r));

	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/ns/user", (int)pid);
	_cleanup_close_ int userns = open(p, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int tree =
	    open_tree(AT_FDCWD, b->lower, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (userns < 0 || tree < 0)
		return cm_log_ret(-errno, "lower dir %s: %s", b->lower, strerror(errno));
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns};
	const char *lower = b->lower;
	char tp[64];
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) == 0) {
		snprintf(tp, sizeof(tp), "/proc/self/fd/%d", tree);
		lower = tp;
	} else {
		log_warn("sandbox %s: the lower dir's filesystem cannot be idmapped (%s): image "
			 "files appear as owned by nobody and cannot be modified",
			 sb->id, strerror(errno));
		if ((r = userns_seed_upper(b->upper_fd)) < 0)
			return cm_log_ret(r, "sandbox %s: cannot prepare the scratch layer: %s",
					  sb->id, strerror(-r));
	}
	char up[64], wk[64];
	snprintf(up, sizeof(up), "/proc/self/fd/%d", b->upper_fd);
	snprintf(wk, sizeof(wk), "/proc/self/fd/%d", b->work_fd);
	int m = overlay_fsmount(lower, up, wk, false);
	if (m < 0)
		return cm_log_ret(m, "overlay for the user namespace: %s", strerror(-m));
	r = send_fd(sock, m);
	close(m);
	return r;
}

__attribute__((noinline)) static _Noreturn void boot_child(struct boot *b)
{
	struct run_sandbox *sb = b->sb;
	int r;

	umask(0); /* modes below are exact; the agent gets 022 */
	static const char *const etc[] = {"hosts", "hostname", "resolv.conf"};
	char path[4200];
	snprintf(path, sizeof(path), "%s/rootfs", sb->dir);
	b->rootfs_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (b->rootfs_fd < 0)
		boot_fail(b, errno, "open %s", path);
	for (size_t i = 0; i < ARRAY_SIZE(etc); i++) {
		snprintf(path, sizeof(path), "%s/%s", sb->dir, etc[i]);
		b->etc_fd[i] = open(path, O_PATH | O_CLOEXEC);
		if (b->etc_fd[i] < 0)
			boot_fail(b, errno, "open %s", path);
	}
	int rootfd = -1;
	if (sb->userns) {
		/* A wrote our id maps and cgroups and mounted the overlay (it needs the host's
		 * privileges for the idmapped lower layer); take the mount, become root of the
		 * namespace */
		rootfd = recv_fd(b->sync_fd);
		if (rootfd < 0)
			boot_fail(b, -rootfd, "receive the overlay mount");
		if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
			boot_fail(b, errno, "become root of the user namespace");
	} else {
		struct run_cgroup_limits lim = {.memory_bytes = sb->memory_bytes,
						.cpu_millis = sb->cpu_millis,
						.pids_max = sb->pids_max};
		if ((r = run_cgroup_join(sb->id, &lim)) < 0)
			boot_fail(b, -r, "join the sandbox's cgroups");
	}
	if (unshare(CLONE_NEWCGROUP) < 0)
		boot_fail(b, errno, "cgroup namespace");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		boot_fail(b, errno, "make mounts private");
	if (!sb->userns) {
		char up[4200], wk[4200];
		snprintf(up, sizeof(up), "%s/scratch/upper", sb->dir);
		snprintf(wk, sizeof(wk), "%s/scratch/work", sb->dir);
		rootfd = overlay_fsmount(b->lowers, up, wk, false);
		if (rootfd < 0)
			boot_fail(b, -rootfd, "overlay (lower %s)", b->lower);
	}
	if (move_mount(rootfd, "", b->rootfs_fd, "",
		       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		boot_fail(b, errno, "attach the overlay");
	snprintf(b->root, sizeof(b->root), "/proc/self/fd/%d", rootfd);
	log_debug("sandbox %s: boot: overlay attached", sb->id);

	setup_proc(b, rootfd);
	{
		/* sysfs belongs to the network namespace: with --net host in a user namespace it
		 * cannot be mounted, bind the host's read-only instead */
		int fd = ensure_in_root(rootfd, "sys", true);
		char p[256];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		if (fd < 0)
			boot_fail(b, -fd, "prepare /sys");
		if (mount("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
		    0) {
			if (errno != EPERM || mount("/sys", p, NULL, MS_BIND | MS_REC, NULL) < 0)
				boot_fail(b, errno, "mount /sys");
			close(fd);
			snprintf(p, sizeof(p), "%s/sys", b->root);
			if (mount(NULL, p, NULL,
				  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV |
				      MS_NOEXEC,
				  NULL) < 0)
				boot_fail(b, errno, "read-only /sys");
		} else {
			close(fd);
		}

		snprintf(p, sizeof(p), "%s/sys/firmware", b->root);
		mask(b, p);
	}
	setup_dev(b, rootfd);
	mount_in_root(b, rootfd, "tmp", true, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		      "mode=1777");
	{
		int fd = ensure_in_root(rootfd, "sandbox", true);
		if (fd < 0)
			boot_fail(b, -fd, "create /sandbox");
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		/* (the targets layer has it so already: no copy-up then) */
		struct stat st;
		if ((fstat(fd, &st) < 0 || (st.st_mode & 07777) != 01777) && chmod(p, 01777) < 0)
			boot_fail(b, errno, "chmod /sandbox");
		close(fd);
	}
	for (size_t i = 0; i < ARRAY_SIZE(etc); i++) {
		char src[64], rel[64];
		snprintf(src, sizeof(src), "/proc/self/fd/%d", b->etc_fd[i]);
		snprintf(rel, sizeof(rel), "etc/%s", etc[i]);
		mount_in_root(b, rootfd, rel, false, src, NULL, MS_BIND, NULL);
		int fd = ensure_in_root(rootfd, rel, false);
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		if (fd < 0 ||
		    mount(NULL, p, NULL,
			  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  NULL) < 0)
			boot_fail(b, errno, "read-only /etc/%s", etc[i]);
		close(fd);
	}

	if (sethostname(sb->hostname, strlen(sb->hostname)) < 0)
		boot_fail(b, errno, "sethostname");
	if (sb->net == RUN_NET_NONE)
		lo_up(b);

	if (fchdir(rootfd) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
		boot_fail(b, errno, "pivot_root");
	log_debug("sandbox %s: boot: mounts done, root pivoted", sb->id);
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		boot_fail(b, errno, "detach the old root");
	close(rootfd);
	log_debug("sandbox %s: boot: old root detached", sb->id);

	drop_caps(b);
	if ((r = run_seccomp_install()) < 0)
		boot_fail(b, -r, "seccomp");
	log_debug("sandbox %s: boot: capabilities and seccomp set, exec the agent", sb->id);

	/* fds: 0,1 /dev/null, 2 agent.log, 3 the listening socket; everything else closes.
	 * Move every fd still needed above 3 first, so the dup2s cannot clobber one. */
	int hi_listen = fcntl(b->listen_fd, F_DUPFD_CLOEXEC, 10);
	int hi_null = fcntl(b->null_fd, F_DUPFD_CLOEXEC, 10);
	int hi_log = fcntl(b->log_fd, F_DUPFD_CLOEXEC, 10);
	int hi_agent = fcntl(b->agent_fd, F_DUPFD_CLOEXEC, 10);
	int hi_err = fcntl(b->err_fd, F_DUPFD_CLOEXEC, 10);
	if (hi_listen < 0 || hi_null < 0 || hi_log < 0 || hi_agent < 0 || hi_err < 0)
		boot_fail(b, errno, "agent fds");
	b->err_fd = hi_err;
	if (dup2(hi_null, 0) < 0 || dup2(hi_null, 1) < 0 || dup2(hi_log, 2) < 0 ||
	    dup2(hi_listen, 3) < 0)
		boot_fail(b, errno, "agent fds");
	close_range(4, ~0u, CLOSE_RANGE_CLOEXEC);
	umask(022);
	char *const argv[] = {"isorun-agent", "--listen-fd", "3", NULL};
	char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			      NULL};
	syscall(SYS_execveat, hi_agent, "", argv, envp, AT_EMPTY_PATH);
	boot_fail(b, errno, "exec the agent");
}

__attribute__((noinline)) static pid_t clone_sandbox(struct boot *b)
{
	struct clone_args ca = {
	    .flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
		     (b->sb->net == RUN_NET_NONE ? CLONE_NEWNET : 0) |
		     (b->sb->userns ? CLONE_NEWUSER : 0),
	    .exit_signal = SIGCHLD,
	};
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0)
		boot_child(b);
	return pid;
}

/*
 * Process A of the boot (see the caller): detach from the caller's session, start B,
 * report its pid on `pidw` or an error on `errw`, vanish. A runs on vfork's borrowed
 * memory: system calls only, no allocation. Kept out of line so the caller's locals are
 * not live across vfork (-Wclobbered).
 */
__attribute__((noinline)) static _Noreturn void middle_child(struct boot *b, bool userns, int errw,
								int pidw, int sp0)
{
	setsid();
	pid_t c = clone_sandbox(b);
	int e = c < 0 ? errno : 0;
	if (c < 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "clone3: %s", strerror(e));
		(void)!write(errw, msg, strlen(msg));
		_exit(1);
	}
	if (userns && (e = userns_prepare(b, c, sp0)) < 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "user namespace setup: %s", strerror(-e));
		(void)!write(errw, msg, strlen(msg));
		send_fd(sp0, e);
		kill(c, SIGKILL);
		_exit(1);
	}
	(void)!write(pidw, &c, sizeof(c));
	_exit(0);
}

/* vfork + middle_child; returns A's pid or -errno. */
__attribute__((noinline)) static pid_t spawn_middle(struct boot *b, bool userns, int errw,
						     int pidw, int sp0)
{
	pid_t a = vfork();
	if (a == 0)
		middle_child(b, userns, errw, pidw, sp0);
	return a < 0 ? -errno : a;
}

/* ---- start ---- */

static int listen_at(int dirfd, int *ret)
{
	unlinkat(dirfd, "agent.sock", 0);
	_cleanup_close_ int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	/* through the directory fd: state paths may be longer than sun_path */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/agent.sock", dirfd);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	if (fchmodat(dirfd, "agent.sock", 0600, 0) < 0)
		return -errno;
	/* clients beyond the agent's connections wait here (connect blocks when it is full) */
	if (listen(s, SOMAXCONN) < 0)
		return -errno;
	*ret = TAKE_FD(s);
	return 0;
}

int run_unix_connect_at(int dirfd, const char *name, int *ret_fd)
{
	_cleanup_close_ int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd, name);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	*ret_fd = TAKE_FD(s);
	return 0;
}

static bool path_ok_for_overlay(const char *p)
{
	return !strpbrk(p, ",:\\\n");
}

static const char *const target_dirs[] = {"etc", "sandbox", "proc", "sys", "dev", "tmp"};

/*
 * The mount targets every sandbox needs and many images lack (/etc/hosts, /etc/hostname,
 * /etc/resolv.conf, /sandbox, /proc, /sys, /dev, /tmp), as a read-only layer shared by all
 * sandboxes, stacked above the image: ROOT/targets, made once. Without it, each boot created
 * them in the overlay: a copy-up of /etc and five new entries in the scratch layer, 0.8 ms
 * of every `isorun run` of the minimal image. Returns its path (caller frees), NULL when it
 * cannot be made (the boot then creates the targets as before).
 */
static char *targets_layer(struct run_ctx *ctx)
{
	const char *root = run_ctx_root(ctx);
	char *path = cm_strdupf("%s/targets", root);
	_cleanup_free_ char *tmp = cm_strdupf("%s/targets.tmp.%ld", root, (long)getpid());
	if (!path || !tmp) {
		free(path);
		return NULL;
	}
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return path;
	(void)cm_rm_rf_at(AT_FDCWD, tmp);
	int r = mkdir(tmp, 0755) < 0 ? -errno : 0;
	_cleanup_close_ int dfd = r == 0 ? open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	static const char *const files[] = {"etc/hosts", "etc/hostname", "etc/resolv.conf"};
	if (r == 0 && dfd < 0)
		r = -errno;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(target_dirs); i++)
		if (mkdirat(dfd, target_dirs[i], 0755) < 0)
			r = -errno;
	if (r == 0 && fchmodat(dfd, "sandbox", 01777, 0) < 0)
		r = -errno;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(files); i++) {
		int fd = openat(dfd, files[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			r = -errno;
		else
			close(fd);
	}
	/* published whole: another process may have won the race, then its layer is used */
	if (r == 0 && rename(tmp, path) < 0 && errno != EEXIST && errno != ENOTEMPTY)
		r = -errno;
	if (r < 0 || stat(path, &st) < 0) {
		log_warn("cannot make the mount targets layer %s: %s", path,
			 strerror(r < 0 ? -r : errno));
		(void)cm_rm_rf_at(AT_FDCWD, tmp);
		free(path);
		return NULL;
	}
	(void)cm_rm_rf_at(AT_FDCWD, tmp);
	return path;
}

/* The targets layer would hide an image's /etc (or another of its directories) that is
 * not a directory (a symlink to /usr/etc, say): such images boot without it. */
static bool takes_targets(const char *lower)
{
	_cleanup_close_ int dfd = open(lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(target_dirs); i++) {
		struct stat st;
		if (fstatat(dfd, target_dirs[i], &st, AT_SYMLINK_NOFOLLOW) < 0
			? errno != ENOENT
			: !S_ISDIR(st.st_mode))
			return false;
	}
	return true;
}

/* The mark a volatile overlay leaves in its work dir (overlay_fsmount): the overlay is not
 * mounted when a sandbox boots, so its work area can go. */
static int clear_volatile_mark(struct run_sandbox *sb)
{
	struct stat st;
	if (fstatat(sb->dirfd, "scratch/work/work/incompat", &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	_cleanup_close_ int wfd =
	    openat(sb->dirfd, "scratch/work", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (wfd < 0)
		return -errno;
	return cm_rm_rf_at(wfd, "work");
}

static int ns_start(struct run_sandbox *sb, const char *lower)
{
	struct boot b = {.sb = sb,
			 .lower = lower,
			 .listen_fd = -1,
			 .agent_fd = -1,
			 .null_fd = -1,
			 .log_fd = -1,
			 .err_fd = -1,
			 .sync_fd = -1,
			 .upper_fd = -1,
			 .work_fd = -1};
	_cleanup_close_ int listen_fd = -1, agent_fd = -1, null_fd = -1, log_fd = -1;
	int errp[2] = {-1, -1}, pidp[2] = {-1, -1};
	pid_t pid = -1;
	uint64_t pid_start = 0;
	int r;

	if (!path_ok_for_overlay(lower) || !path_ok_for_overlay(sb->dir))
		return cm_log_ret(-EINVAL, "paths with ',', ':' or '\\' cannot be overlay layers");
	struct stat st;
	if (stat(lower, &st) < 0 || !S_ISDIR(st.st_mode))
		return cm_log_ret(-ENOENT, "lower dir %s is not a directory", lower);
	const char *agent = run_ctx_agent_path(sb->ctx);
	if (!agent)
		return -ENOMEM;
	agent_fd = open(agent, O_RDONLY | O_CLOEXEC);
	if (agent_fd < 0)
		return cm_log_ret(-errno, "agent binary %s: %s", agent, strerror(errno));
	if ((r = clear_volatile_mark(sb)) < 0)
		return cm_log_ret(r, "sandbox %s: cannot clear scratch/work/work: %s", sb->id,
				  strerror(-r));
	/* (a user namespace's root could not write into a root-owned /sandbox there: it seeds
	 * its scratch layer instead, userns_seed_upper) */
	_cleanup_free_ char *targets = sb->userns ? NULL : targets_layer(sb->ctx);
	_cleanup_free_ char *lowers = NULL;
	if (targets && path_ok_for_overlay(targets) && takes_targets(lower) &&
	    !(lowers = cm_strdupf("%s:%s", targets, lower)))
		return -ENOMEM;
	b.lowers = lowers ? lowers : lower;
	int fds[2] = {-1, -1}; /* userns: scratch upper, work */
	int sp[2] = {-1, -1};
	if (sb->userns) {
		static const char *const paths[] = {"scratch/upper", "scratch/work"};
		for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
			fds[i] = openat(sb->dirfd, paths[i], O_PATH | O_CLOEXEC | O_NOFOLLOW);
			if (fds[i] < 0) {
				r = cm_log_ret(-errno, "sandbox %s: %s: %s", sb->id, paths[i],
					       strerror(errno));
				goto fail;
			}
		}
		b.upper_fd = fds[0];
		b.work_fd = fds[1];
		/* the scratch root becomes the sandbox's "/": owned by its root */
		if (fchownat(sb->dirfd, "scratch/upper", RUN_USERNS_BASE, RUN_USERNS_BASE,
			     AT_SYMLINK_NOFOLLOW) < 0 ||
		    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
			r = -errno;
			goto fail;
		}
		b.sync_fd = sp[1];
	}

	if ((r = run_seccomp_prepare(run_ctx_root(sb->ctx))) < 0)
		goto fail;
	struct run_cgroup_limits lim = {.memory_bytes = sb->memory_bytes,
					.cpu_millis = sb->cpu_millis,
					.pids_max = sb->pids_max};
	if ((r = run_cgroup_create(sb->id, &lim)) < 0)
		goto fail;
	if ((r = listen_at(sb->dirfd, &listen_fd)) < 0) {
		log_error("sandbox %s: agent socket: %s", sb->id, strerror(-r));
		goto fail;
	}
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	log_fd = openat(sb->dirfd, "agent.log",
			O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (null_fd < 0 || log_fd < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(pidp, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	b.listen_fd = listen_fd;
	b.agent_fd = agent_fd;
	b.null_fd = null_fd;
	b.log_fd = log_fd;
	b.err_fd = errp[1];

	/* vfork: A borrows the caller's memory while the caller waits, and only makes system
	 * calls (no allocation) before _exit; a full fork would copy the page tables of a caller
	 * that maps dozens of libraries (the isorun CLI: ~0.5-2 ms). B is a full copy. */
	log_debug("sandbox %s: spawning its init", sb->id);
	pid_t a = spawn_middle(&b, sb->userns, errp[1], pidp[1], sp[0]);
	if (a < 0) {
		r = a;
		goto fail;
	}
	close(errp[1]);
	errp[1] = -1;
	close(pidp[1]);
	pidp[1] = -1;
	/* the agent must hold the only listening fd: if it dies, our connection sees EOF
	 * instead of waiting in the backlog forever */
	cm_closep(&listen_fd);
	cm_closep(&sp[0]);
	cm_closep(&sp[1]);
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		cm_closep(&fds[i]);
	while (waitpid(a, NULL, 0) < 0 && errno == EINTR)
		;
	if (read(pidp[0], &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
		pid = -1;
	if (pid > 0 && run_proc_start_time(pid, &pid_start) < 0)
		pid_start = 0;
	if (pid > 0 && pid_start)
		run_mark_agent(sb, pid, pid_start);

	char msg[1024];
	size_t mlen = 0;
	for (;;) {
		ssize_t n = read(errp[0], msg + mlen, sizeof(msg) - 1 - mlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		mlen += (size_t)n;
		if (mlen == sizeof(msg) - 1)
			break;
	}
	msg[mlen] = 0;
	if (mlen || pid <= 0) {
		log_error("sandbox %s: boot failed: %s", sb->id, mlen ? msg : "no agent pid");
		r = -EIO;
		goto fail;
	}
	sb->pid = pid;
	sb->pid_start = pid_start;
	log_debug("sandbox %s: agent started (pid %d)", sb->id, (int)pid);

	/* ready when the agent answers (the socket already queues our connection) */
	struct run_client *c = NULL;
	r = run_client_connect(sb->ctx, sb->id, &c);
	if (r >= 0)
		r = run_client_ping(c);
	run_client_free(c);
	log_debug("sandbox %s: agent answered", sb->id);
	if (r < 0) {
		/* the state directory may be removed next: quote the agent's last words */
		struct cm_buf lb;
		cm_buf_init(&lb, 64 << 10);
		(void)cm_read_file(sb->dirfd, "agent.log", &lb);
		const char *tail = lb.len ? (const char *)lb.data : "";
		if (lb.len > 512)
			tail = (const char *)lb.data + lb.len - 512;
		log_error("sandbox %s: the agent did not answer: %s%s%s", sb->id, strerror(-r),
			  *tail ? "; agent.log: " : "", tail);
		cm_buf_fini(&lb);
		goto fail;
	}
	cm_closep(&errp[0]);
	cm_closep(&pidp[0]);
	return 0;
fail:
	cm_closep(&errp[0]);
	cm_closep(&errp[1]);
	cm_closep(&pidp[0]);
	cm_closep(&pidp[1]);
	cm_closep(&sp[0]);
	cm_closep(&sp[1]);
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		cm_closep(&fds[i]);
	if (pid > 0) {
		run_kill_exact(pid, pid_start, 5000);
		waitpid(pid, NULL, WNOHANG);
	}
	sb->pid = 0;
	ns_destroy(sb);
	return r;
}

/* ---- stop ---- */

static int ns_stop(struct run_sandbox *sb, uint32_t grace_ms)
{
	_cleanup_close_ int pfd = run_pidfd_exact(sb->pid, sb->pid_start);
	if (pfd >= 0) {
		struct run_client *c = NULL;
		if (grace_ms && run_client_connect(sb->ctx, sb->id, &c) >= 0)
			(void)run_client_shutdown(c, grace_ms);
		run_client_free(c);
		struct pollfd p = {.fd = pfd, .events = POLLIN};
		if (poll(&p, 1, grace_ms ? 2000 : 0) <= 0) {
			syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
			log_debug("sandbox %s: agent killed", sb->id);
			run_pidfd_wait(pfd, -1);
			log_debug("sandbox %s: agent gone", sb->id);
		}
	}
	/* our child if this process booted it (a failed boot); otherwise ECHILD */
	if (sb->pid > 0)
		waitpid(sb->pid, NULL, WNOHANG);
	return ns_destroy(sb);
}

static int ns_connect(struct run_sandbox *sb, int *ret_fd)
{
	return run_unix_connect_at(sb->dirfd, "agent.sock", ret_fd);
}

const struct run_backend_ops run_backend_ns = {
    .name = "ns",
    .create = ns_create,
    .start = ns_start,
    .stop = ns_stop,
    .destroy = ns_destroy,
    .connect = ns_connect,
};
