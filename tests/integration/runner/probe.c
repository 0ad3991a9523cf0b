/*
 * sandbox-probe: a static helper the runner's isolation tests copy into their busybox rootfs
 * to make syscalls busybox has no applet for. Prints one result line per check.
 *
 *   probe seccomp        the seccomp-denied calls: "<name> <errno name>" each
 *   probe alloc MIB      allocate and touch MIB MiB (a memory limit kills it)
 *   probe fork N         fork N children that sleep; prints how many forks succeeded
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ename(int e)
{
	switch (e) {
	case 0:
		return "OK";
	case EPERM:
		return "EPERM";
	case ENOSYS:
		return "ENOSYS";
	case EACCES:
		return "EACCES";
	case EINVAL:
		return "EINVAL";
	case EAGAIN:
		return "EAGAIN";
	default:
		return strerror(e);
	}
}

static void report(const char *name, long r)
{
	printf("%s %s\n", name, ename(r < 0 ? errno : 0));
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "seccomp")) {
		/* each of these succeeds for an unprivileged process without the filter */
		report("add_key", syscall(SYS_add_key, "user", "isorun", "x", 1, -2 /* session */));
		report("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0));
		report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
		report("userfaultfd", syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */));
		report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
		report("clone3", syscall(SYS_clone3, NULL, 0));
		/* allowed: a plain fork still works */
		pid_t p = fork();
		if (p == 0)
			_exit(0);
		report("fork", p);
		if (p > 0)
			waitpid(p, NULL, 0);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "alloc")) {
		long mib = atol(argv[2]);
		for (long i = 0; i < mib; i++) {
			char *p = malloc(1 << 20);
			if (!p) {
				printf("malloc failed at %ld MiB\n", i);
				return 1;
			}
			memset(p, 0x5a, 1 << 20);
		}
		printf("allocated %ld MiB\n", mib);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "fork")) {
		int n = atoi(argv[2]), ok = 0, err = 0;
		pid_t pids[4096];
		for (int i = 0; i < n && i < 4096; i++) {
			pid_t p = fork();
			if (p == 0) {
				pause();
				_exit(0);
			}
			if (p < 0) {
				err = errno;
				break;
			}
			pids[ok++] = p;
		}
		printf("forked %d %s\n", ok, ename(err));
		for (int i = 0; i < ok; i++) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
		return 0;
	}
	fprintf(stderr, "usage: probe seccomp | alloc MIB | fork N\n");
	return 2;
}
