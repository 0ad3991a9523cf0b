/*
 * Control socket client and the mounts directory (ROOT/mounts/<index hex>/, fs/mount.h).
 * Protocol: the client sends one request line and shuts its side down; the daemon answers
 * and closes. Requests: "ping" -> "ok"; "stats" -> a JSON object; "last" -> the last holder
 * is gone (the daemon unmounts now, or after its keep-warm delay) -> "ok".
 */
#include "fs_int.h"

#include "indexer/store.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_ANSWER_MAX (1u << 20)

char *fs_mount_dir(const char *root, const char *hex)
{
	return cm_strdupf("%s/mounts/%s", root, hex);
}

void fs_mount_opts_defaults(struct fs_mount_opts *o)
{
	if (!o->fetch_timeout_s)
		o->fetch_timeout_s = 30;
	if (!o->request_max)
		o->request_max = 4u << 20;
	/* With prefetch off the user wants only what is read; otherwise everything comes
	 * anyway, and fetching the pack's next bytes early saves round trips. */
	if (!o->fg_spill && o->prefetch != FS_PREFETCH_NONE)
		o->fg_spill = 512u << 10;
	if (!o->mem_cache)
		o->mem_cache = 32u << 20;
	if (!o->startup_hold) {
		long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
		o->startup_hold =
		    fs_startup_hold_default(pages > 0 && psize > 0 ? (uint64_t)pages * psize : 0);
	}
}

uint64_t fs_startup_hold_default(uint64_t ram)
{
	/* Many mounts may start at once: a sixteenth of the memory each at most. */
	uint64_t cap = 256ull << 20;
	return ram && ram / 16 < cap ? MAX(ram / 16, 16ull << 20) : cap;
}

int fs_prefetch_parse(const char *s, enum fs_prefetch *ret)
{
	if (!strcmp(s, "all"))
		*ret = FS_PREFETCH_ALL;
	else if (!strcmp(s, "startup"))
		*ret = FS_PREFETCH_STARTUP;
	else if (!strcmp(s, "none"))
		*ret = FS_PREFETCH_NONE;
	else
		return -EINVAL;
	return 0;
}

int fs_ctl_call(const char *root, const char *hex, const char *request, int timeout_ms, char **ret)
{
	_cleanup_free_ char *dir = fs_mount_dir(root, hex);
	if (!dir)
		return -ENOMEM;
	/* Connect through /proc/self/fd so long state roots fit sun_path. */
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/ctl.sock", dfd);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return errno == ENOENT ? -ECONNREFUSED : -errno;
	size_t len = strlen(request);
	char line[256];
	if (len + 2 > sizeof(line))
		return -EINVAL;
	memcpy(line, request, len);
	line[len++] = '\n';
	int r = cm_write_full(fd, line, len);
	if (r < 0)
		return r;
	shutdown(fd, SHUT_WR);
	struct cm_buf b;
	cm_buf_init(&b, CTL_ANSWER_MAX);
	uint64_t deadline = cm_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		uint64_t now = cm_now_ns();
		if (now >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int pr = poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			r = pr < 0 ? -errno : -ETIMEDOUT;
			break;
		}
		if ((r = cm_buf_reserve(&b, 4096)) < 0)
			break;
		ssize_t n = read(fd, b.data + b.len, b.alloc - b.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0) {
			r = b.len ? 0 : -ECONNRESET;
			break;
		}
		b.len += (size_t)n;
	}
	if (r == 0 && ret) {
		*ret = cm_buf_steal_str(&b);
		if (!*ret)
			r = -ENOMEM;
	}
	cm_buf_fini(&b);
	return r;
}

static bool is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

int fs_mounts_live(const char *root, char ***ret, size_t *ret_n)
{
	*ret = NULL;
	*ret_n = 0;
	_cleanup_free_ char *p = cm_strdupf("%s/mounts", root);
	if (!p)
		return -ENOMEM;
	DIR *d = opendir(p);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	char **v = NULL;
	size_t n = 0;
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d))) {
		if (!is_hex64(de->d_name) || fs_ctl_call(root, de->d_name, "ping", 2000, NULL) < 0)
			continue;
		if ((r = fs_strv_push(&v, &n, cm_strdupf("sha256:%s", de->d_name))) < 0)
			break;
	}
	closedir(d);
	if (r < 0) {
		fs_strv_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* $ISORUN_INSECURE_REGISTRIES (host[:port] separated by commas or spaces), parsed once.
 * The strings live for the process. */
static char *insecure_buf;
static const char *insecure_v[17];
static pthread_once_t insecure_once = PTHREAD_ONCE_INIT;

static void insecure_parse(void)
{
	const char *e = getenv("ISORUN_INSECURE_REGISTRIES");
	if (!e || !(insecure_buf = strdup(e)))
		return;
	size_t n = 0;
	char *save = NULL;
	for (char *t = strtok_r(insecure_buf, ", ", &save); t && n < ARRAY_SIZE(insecure_v) - 1;
	     t = strtok_r(NULL, ", ", &save))
		insecure_v[n++] = t;
}

const char *const *fs_insecure_registries(void)
{
	pthread_once(&insecure_once, insecure_parse);
	return insecure_v[0] ? insecure_v : NULL;
}

char *fs_scheme_cache(struct idx_store *s)
{
	return cm_strdupf("%s/registry-schemes", idx_store_root(s));
}
