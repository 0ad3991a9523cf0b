/*
 * `isorun mount`, `umount`, `stats`, and `fsd` (the mount daemon that `mount` starts):
 * argument parsing and output over fs/mount.h.
 */
#include "verbs.h"

#include "fs/image.h"
#include "fs/mount.h"

#include "indexer/store.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	O_PREFETCH = 256,
	O_BWLIMIT,
	O_CACHE_MAX,
	O_TRACE,
	O_FETCH_TIMEOUT,
	O_KEEP_WARM,
	O_PF_THREADS,
	O_REQ_MAX,
	O_MEM_CACHE,
	O_AUTHFILE,
	O_PLATFORM,
	O_FOREGROUND,
	O_INDEX,
	O_MOUNTPOINT,
	O_READY_FD,
	O_FG_SPILL,
	O_VERIFY_LOCAL,
	O_CHUNK_FORMAT,
	O_INDEX_FRESH,
	O_STARTUP_HOLD,
	O_NO_PUSH,
};

static const struct option mount_opts[] = {
    {"prefetch", required_argument, NULL, O_PREFETCH},
    {"bwlimit", required_argument, NULL, O_BWLIMIT},
    {"cache-max", required_argument, NULL, O_CACHE_MAX},
    {"record-trace", required_argument, NULL, O_TRACE},
    {"fetch-timeout", required_argument, NULL, O_FETCH_TIMEOUT},
    {"keep-warm", required_argument, NULL, O_KEEP_WARM},
    {"prefetch-threads", required_argument, NULL, O_PF_THREADS},
    {"request-max", required_argument, NULL, O_REQ_MAX},
    {"mem-cache", required_argument, NULL, O_MEM_CACHE},
    {"startup-hold", required_argument, NULL, O_STARTUP_HOLD},
    {"authfile", required_argument, NULL, O_AUTHFILE},
    {"platform", required_argument, NULL, O_PLATFORM},
    {"foreground", no_argument, NULL, O_FOREGROUND},
    {"index", required_argument, NULL, O_INDEX},
    {"mountpoint", required_argument, NULL, O_MOUNTPOINT},
    {"ready-fd", required_argument, NULL, O_READY_FD},
    {"fg-spill", required_argument, NULL, O_FG_SPILL},
    {"verify-local", no_argument, NULL, O_VERIFY_LOCAL},
    {"chunk-format", required_argument, NULL, O_CHUNK_FORMAT},
    {"index-fresh", no_argument, NULL, O_INDEX_FRESH},
    {"no-page-push", no_argument, NULL, O_NO_PUSH},
    {},
};

struct mount_args {
	struct fs_mount_opts o;
	const char *platform, *index, *mountpoint;
	bool foreground;
	int ready_fd;
	char trace_abs[PATH_MAX];
};

/* Parse the options of mount and fsd (`fsd`: also the daemon's own, which `mount` refuses
 * rather than ignore). Returns optind or -1. */
static int parse(int argc, char **argv, struct mount_args *a, bool fsd)
{
	*a = (struct mount_args){.ready_fd = -1};
	int c, li = 0;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "+", mount_opts, &li)) != -1) {
		if (!fsd && (c == O_INDEX || c == O_MOUNTPOINT || c == O_READY_FD ||
			     c == O_INDEX_FRESH)) {
			fprintf(stderr,
				"isorun: --%s is an option of the mount daemon (isorun fsd), not "
				"of isorun mount\n",
				mount_opts[li].name);
			return -1;
		}
		switch (c) {
		case O_PREFETCH:
			if (fs_prefetch_parse(optarg, &a->o.prefetch) < 0)
				goto bad;
			break;
		case O_BWLIMIT:
			if (cm_parse_size(optarg, &a->o.bwlimit) < 0)
				goto bad;
			break;
		case O_CACHE_MAX:
			if (cm_parse_size(optarg, &a->o.cache_max) < 0)
				goto bad;
			break;
		case O_TRACE:
			if (optarg[0] == '/') {
				snprintf(a->trace_abs, sizeof(a->trace_abs), "%s", optarg);
			} else {
				char cwd[PATH_MAX];
				if (!getcwd(cwd, sizeof(cwd)) ||
				    strlen(cwd) + strlen(optarg) + 2 > sizeof(a->trace_abs))
					goto bad;
				strcpy(a->trace_abs, cwd);
				strcat(a->trace_abs, "/");
				strcat(a->trace_abs, optarg);
			}
			a->o.trace_path = a->trace_abs;
			break;
		case O_FETCH_TIMEOUT:
			if (cm_parse_uint(optarg, 1, 3600, &a->o.fetch_timeout_s) < 0)
				goto bad;
			break;
		case O_KEEP_WARM:
			if (cm_parse_uint(optarg, 0, FS_KEEP_WARM_MAX, &a->o.keep_warm_s) < 0)
				goto bad;
			break;
		case O_PF_THREADS:
			if (cm_parse_uint(optarg, 1, 64, &a->o.prefetch_threads) < 0)
				goto bad;
			break;
		case O_REQ_MAX:
			if (cm_parse_size(optarg, &a->o.request_max) < 0)
				goto bad;
			break;
		case O_VERIFY_LOCAL:
			a->o.verify_local = true;
			break;
		case O_INDEX_FRESH: /* fsd only: set by create/run after a pull */
			a->o.index_fresh = true;
			break;
		case O_CHUNK_FORMAT:
			if (strcmp(optarg, "raw") != 0 && strcmp(optarg, "zstd") != 0)
				goto bad;
			a->o.chunks_zstd = strcmp(optarg, "zstd") == 0;
			break;
		case O_FG_SPILL:
			if (cm_parse_size(optarg, &a->o.fg_spill) < 0)
				goto bad;
			break;
		case O_MEM_CACHE:
			if (cm_parse_size(optarg, &v) < 0)
				goto bad;
			a->o.mem_cache = v;
			break;
		case O_STARTUP_HOLD:
			if (cm_parse_size(optarg, &a->o.startup_hold) < 0)
				goto bad;
			break;
		case O_NO_PUSH:
			a->o.no_push = true;
			break;
		case O_AUTHFILE:
			a->o.authfile = optarg;
			break;
		case O_PLATFORM:
			a->platform = optarg;
			break;
		case O_FOREGROUND:
			a->foreground = true;
			break;
		case O_INDEX:
			a->index = optarg;
			break;
		case O_MOUNTPOINT:
			a->mountpoint = optarg;
			break;
		case O_READY_FD: {
			unsigned fd;
			if (cm_parse_uint(optarg, 0, INT_MAX, &fd) < 0)
				goto bad;
			a->ready_fd = (int)fd;
			break;
		}
		default:
			return -1;
		}
	}
	a->o.debug = cm_log_get_level() >= CM_LOG_DEBUG;
	return optind;
bad:
	fprintf(stderr, "isorun: invalid value '%s' for --%s\n", optarg,
		mount_opts[li].name);
	return -1;
}

/* The index digest of REF, pulling it first when the store does not have it. */
static int ensure_index(const char *ref, const char *platform, const char *authfile, char idig[72])
{
	_cleanup_(idx_store_freep) struct idx_store *s = NULL;
	int r = idx_store_open(isorun_root(), &s);
	if (r < 0)
		return r;
	if (fs_image_lookup(s, ref, idig) == 0)
		return 0;
	struct fs_pull_opts po = {
	    .platform = platform, .authfile = authfile, .progress = isatty(STDERR_FILENO)};
	struct fs_pull_result res;
	if ((r = fs_image_pull(s, ref, &po, &res)) < 0)
		return r;
	snprintf(idig, 72, "%s", res.index_digest);
	return 0;
}

static int cmd_mount(int argc, char **argv)
{
	struct mount_args a;
	int i = parse(argc, argv, &a, false);
	if (i < 0) { /* getopt or parse said what */
		fprintf(stderr, "(see isorun mount --help)\n");
		return ISORUN_EXIT_USAGE;
	}
	if (i + 2 != argc)
		return isorun_usage_error("mount", ISORUN_EXIT_USAGE, "wants REF DIR");
	char idig[72];
	int r = ensure_index(argv[i], a.platform, a.o.authfile, idig);
	if (r < 0) {
		fprintf(stderr, "isorun: mount: cannot get %s: %s\n", argv[i], strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	unsigned said = cm_log_errors();
	if (a.foreground) {
		/* Debugging: this process is the daemon, mounted directly on DIR, not shared. */
		cm_log_set_level(cm_log_get_level() < CM_LOG_INFO ? CM_LOG_INFO
								  : cm_log_get_level());
		r = fs_daemon_run(isorun_root(), idig, &a.o, argv[i + 1], -1);
	} else {
		r = fs_mount_bind(isorun_root(), idig, &a.o, argv[i + 1]);
	}
	if (r < 0) {
		if (cm_log_errors() == said) /* else the mount said what failed */
			fprintf(stderr, "isorun: mount %s on %s failed: %s\n", argv[i], argv[i + 1],
				strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	return 0;
}
ISORUN_VERB_OPTS(
    "mount", cmd_mount, "[options] REF DIR",
    "mount an image read-only on DIR, fetching its data lazily (shared per image)",
    "  --prefetch MODE         all (default): the startup list, then the whole image in the\n"
    "                          background; startup: the list only; none: what is read only\n"
    "  --bwlimit SIZE          pace the background prefetch to SIZE bytes a second\n"
    "  --cache-max SIZE        cap of the host's chunk cache (else ROOT/config.json)\n"
    "  --record-trace FILE     write the order chunks are first read in (docs/trace.md)\n"
    "  --fetch-timeout S       a read the registry cannot serve fails (EIO) after S s (30)\n"
    "  --keep-warm S           stay mounted S s after the last user goes\n"
    "  --chunk-format FORMAT   raw (default) or zstd: how fetched chunks are stored\n"
    "  --platform OS/ARCH      the platform to pick from a multi-platform image\n"
    "  --authfile FILE         registry credentials (docker config format)\n"
    "  --prefetch-threads N    concurrent prefetch requests, 1-64 (2, or 4 for a distant\n"
    "                          registry)\n"
    "  --request-max SIZE      bytes per range request (4M)\n"
    "  --mem-cache SIZE        decompressed chunks kept in memory (32M)\n"
    "  --startup-hold SIZE     startup chunks held until first read (256M)\n"
    "  --fg-spill SIZE         a read's fetch may run this far past its file (512K)\n"
    "  --verify-local          check the SHA-256 of chunks read back from the local store\n"
    "  --no-page-push          do not write the startup pages into the page cache ahead\n"
    "  --foreground            be the daemon, in this process (debugging; not shared)\n"
    "\nSIZE: bytes, or with K, M, G (binary). One daemon serves all mounts of an image.\n");

static int cmd_umount(int argc, char **argv)
{
	bool lazy = false;
	int i = 1;
	if (i < argc && (!strcmp(argv[i], "--lazy") || !strcmp(argv[i], "-l"))) {
		lazy = true;
		i++;
	}
	if (i + 1 != argc)
		return isorun_usage_error("umount", ISORUN_EXIT_USAGE, "wants one DIR");
	unsigned said = cm_log_errors();
	int r = fs_mount_unbind(isorun_root(), argv[i], lazy);
	if (r < 0) {
		if (cm_log_errors() == said)
			fprintf(stderr, "isorun: umount %s failed: %s\n", argv[i], strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	return 0;
}
ISORUN_VERB_OPTS("umount", cmd_umount, "[--lazy] DIR", "unmount an image mounted with isorun mount",
		 "  -l, --lazy         detach now, even if files on it are open\n");

static void print_stats(const char *js)
{
	json_object *j = json_tokener_parse(js), *v, *w;
#define U(o, k)                                                                                    \
	(json_object_object_get_ex((o), (k), &v) ? (unsigned long long)json_object_get_uint64(v)   \
						 : 0ull)
	if (!j) {
		printf("%s\n", js);
		return;
	}
	char b1[32], b2[32], b3[32];
	cm_format_bytes(U(j, "fetched_bytes"), b1, sizeof(b1));
	cm_format_bytes(U(j, "resident_bytes"), b2, sizeof(b2));
	cm_format_bytes(U(j, "stored_bytes"), b3, sizeof(b3));
	double pct =
	    json_object_object_get_ex(j, "resident_pct", &v) ? json_object_get_double(v) : 0;
	printf("index        %s\n",
	       json_object_object_get_ex(j, "index", &v) ? json_object_get_string(v) : "?");
	printf("fetched      %s in %llu requests (%llu chunks)\n", b1, U(j, "fetch_requests"),
	       U(j, "fetched_chunks"));
	printf("resident     %s of %s (%.1f%%, %llu of %llu chunks)\n", b2, b3, pct,
	       U(j, "resident_chunks"), U(j, "chunks"));
	printf("chunk hits   memory %llu, store %llu, misses %llu\n", U(j, "mem_hits"),
	       U(j, "store_hits"), U(j, "misses"));
	printf("reads        %llu (%llu errors)\n", U(j, "reads"), U(j, "read_errors"));
	if (json_object_object_get_ex(j, "prefetch", &w)) {
		json_object *m;
		bool done =
		    json_object_object_get_ex(w, "complete", &m) && json_object_get_boolean(m);
		printf("prefetch     %s: %llu/%llu%s\n",
		       json_object_object_get_ex(w, "mode", &m) ? json_object_get_string(m) : "?",
		       U(w, "position"), U(w, "total"), done ? ", image fully local" : "");
	}
	if (json_object_object_get_ex(j, "read_latency_us", &w))
		printf("latency (us) p50 %llu, p90 %llu, p99 %llu, max %llu\n", U(w, "p50"),
		       U(w, "p90"), U(w, "p99"), U(w, "max"));
	if (json_object_object_get_ex(j, "holders", &w) && json_object_is_type(w, json_type_array)) {
		size_t n = json_object_array_length(w);
		printf("holders      %zu", n + (size_t)U(j, "unnamed_holders"));
		if (U(j, "unnamed_holders"))
			printf(" (%llu unnamed)", U(j, "unnamed_holders"));
		printf("\n");
		for (size_t k = 0; k < n; k++)
			printf("             %s\n", json_object_get_string(json_object_array_get_idx(w, k)));
	}
	if (json_object_object_get_ex(j, "errors", &w)) {
		printf("errors      ");
		json_object_object_foreach(w, k, val)
		    printf(" %s %llu", k, (unsigned long long)json_object_get_uint64(val));
		printf("\n");
	}
#undef U
	json_object_put(j);
}

static int cmd_stats(int argc, char **argv)
{
	bool json = false;
	int i = 1;
	if (i < argc && !strcmp(argv[i], "--json")) {
		json = true;
		i++;
	}
	if (i + 1 < argc)
		return isorun_usage_error("stats", ISORUN_EXIT_USAGE, "wants at most one DIR");
	_cleanup_free_ char *js = NULL;
	int r;
	if (i == argc) {
		/* Every live mount. */
		if ((r = fs_mount_stats_all(isorun_root(), &js)) < 0) {
			fprintf(stderr, "isorun: stats: %s\n", strerror(-r));
			return ISORUN_EXIT_ERROR;
		}
		json_object *j = json_tokener_parse(js), *a;
		if (json || !j || !json_object_object_get_ex(j, "mounts", &a)) {
			printf("%s\n", js);
		} else {
			for (size_t k = 0; k < json_object_array_length(a); k++) {
				if (k)
					printf("\n");
				print_stats(
				    json_object_to_json_string(json_object_array_get_idx(a, k)));
			}
		}
		json_object_put(j);
		return 0;
	}
	r = fs_mount_stats(isorun_root(), argv[i], &js);
	if (r < 0) {
		fprintf(stderr, "isorun: stats %s: %s\n", argv[i], strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	if (json)
		printf("%s\n", js);
	else
		print_stats(js);
	return 0;
}
ISORUN_VERB_OPTS("stats", cmd_stats, "[--json] [DIR]",
		 "fetch, cache and latency numbers of a mount (of every mount without DIR)",
		 "  --json             the daemon's numbers as JSON\n");

static int cmd_fsd(int argc, char **argv)
{
	struct mount_args a;
	int i = parse(argc, argv, &a, true);
	if (i < 0 || i != argc || !a.index || !a.mountpoint) {
		fprintf(stderr, "usage: isorun fsd --index DIGEST --mountpoint DIR [options]\n");
		return ISORUN_EXIT_USAGE;
	}
	cm_log_set_ident("isorun-fsd");
	if (cm_log_get_level() < CM_LOG_INFO)
		cm_log_set_level(CM_LOG_INFO);
	int r = fs_daemon_run(isorun_root(), a.index, &a.o, a.mountpoint, a.ready_fd);
	return r < 0 ? ISORUN_EXIT_ERROR : 0;
}
ISORUN_VERB_OPTS("fsd", cmd_fsd, "--index D --mountpoint DIR", "(internal) the daemon behind mount",
		 "  --ready-fd FD      report the mount's result (an int32) on FD\n"
		 "  --index-fresh      the caller has just fetched the index from its registry\n");
