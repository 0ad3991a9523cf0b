/*
 * isorun-index: build and examine isorun indexes.
 *   isorun-index build [options] SOURCE
 *   isorun-index inspect [--json] INDEX
 *   isorun-index ls [-R] INDEX [PATH]
 *   isorun-index extract INDEX DIR
 *   isorun-index verify INDEX
 * INDEX is an index digest (sha256:...), an image source that was indexed (oci:PATH[:TAG]),
 * or the path of an index file.
 */
#include "indexer/artifact.h"
#include "indexer/build.h"
#include "indexer/extract.h"
#include "indexer/index.h"
#include "indexer/source.h"
#include "indexer/source_registry.h"
#include "indexer/store.h"
#include "indexer/trace.h"

#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/ref.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static const char *root_dir;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: isorun-index [--root DIR] [--debug] COMMAND ...\n"
		"  build [--platform OS/ARCH[/VARIANT]] [--oci-out DIR] [--pack-size SIZE]\n"
		"        [--threads N] [--push] [--force] [--allow-floating-tag]\n"
		"        [--creds USER:PASS] [--authfile FILE] [--tls-verify=false]\n"
		"        [--insecure-registry [http://]HOST[:PORT]] [--startup-trace FILE]...\n"
		"        [--startup-level N] SOURCE\n"
		"                                    index an image (SOURCE: oci:PATH[:TAG] or\n"
		"                                    a registry reference); --push uploads the\n"
		"                                    index artifact next to the image;\n"
		"                                    --startup-trace lays out and prefetches first\n"
		"                                    the chunks a recorded run read (isorun mount\n"
		"                                    --record-trace), in the order it read them,\n"
		"                                    compressed at zstd level N (default 9; the\n"
		"                                    other chunks at 1)\n"
		"  inspect [--json] INDEX            summary and image config\n"
		"  ls [-R] INDEX [PATH]              list a directory of the image\n"
		"  extract INDEX DIR                 materialise the image tree into DIR\n"
		"  verify INDEX                      check every chunk is in the store and intact\n"
		"INDEX: sha256:DIGEST, an indexed image source, or an index file path.\n"
		"The store is --root, $ISORUN_ROOT or /var/lib/isorun.\n");
}

static int open_store(struct idx_store **ret)
{
	return idx_store_open(root_dir ? root_dir : cm_root_default(), ret);
}

DEFINE_CLEANUP_FUNC(struct idx_source, idx_source_free)

static struct reg_options reg_opts;
static const char *insecure[16];
static size_t ninsecure;

static int open_source(const char *spec, struct idx_source **ret)
{
	if (cm_str_has_prefix(spec, "oci:"))
		return idx_source_oci_open(spec, ret);
	return idx_source_registry_open(spec, &reg_opts, ret);
}

/* INDEX argument -> opened reader. */
static int open_index(struct idx_store *s, const char *arg, struct idx_reader **ret)
{
	_cleanup_free_ char *digest = NULL, *path = NULL;
	struct stat st;
	if (cm_str_has_prefix(arg, "sha256:")) {
		digest = strdup(arg);
	} else if (stat(arg, &st) == 0 && S_ISREG(st.st_mode)) {
		return idx_reader_open(arg, ret);
	} else {
		int r = idx_store_find_index(s, arg, &digest);
		if (r == -ENOENT) {
			/* Look it up by its canonical form (absolute layout path, normalised
			 * reference); opening a source fetches nothing. */
			_cleanup_(idx_source_freep) struct idx_source *src = NULL;
			if (open_source(arg, &src) == 0)
				r = idx_store_find_index(s, src->ref, &digest);
		}
		if (r == -ENOENT)
			return cm_log_ret(r, "%s has not been indexed (run: isorun-index build %s)", arg, arg);
		if (r < 0)
			return r;
	}
	if (!digest)
		return -ENOMEM;
	int r = idx_store_index_path(s, digest, &path);
	if (r < 0)
		return cm_log_ret(r, "'%s' is not a valid digest", arg);
	r = idx_reader_open(path, ret);
	if (r == -ENOENT)
		return cm_log_ret(r, "index %s is not in the store", digest);
	if (r == 0 && strcmp(idx_reader_digest(*ret), digest) != 0) {
		idx_reader_free(*ret);
		return cm_log_ret(-EBADMSG, "index file for %s is corrupt", digest);
	}
	return r;
}

DEFINE_CLEANUP_FUNC(struct reg_client, reg_client_free)
DEFINE_CLEANUP_FUNC(struct reg_ref, reg_ref_free)

/* For a registry SOURCE: the parsed reference, a client, and the resolved manifest digest. */
static int resolve_registry(const char *spec, bool allow_floating, struct reg_ref **ret_ref,
			    struct reg_client **ret_client, char ret_digest[CM_DIGEST_STR_SIZE])
{
	const char *why = NULL;
	_cleanup_(reg_ref_freep) struct reg_ref *ref = NULL;
	_cleanup_(reg_client_freep) struct reg_client *c = NULL;
	int r = reg_ref_parse(spec, &ref, &why);
	if (r < 0)
		return cm_log_ret(r, "'%s' is not an image reference: %s", spec, why ? why : "invalid");
	if ((r = reg_ref_check_policy(ref, allow_floating)) < 0)
		return r;
	if ((r = reg_client_new(&reg_opts, &c)) < 0)
		return r;
	struct reg_manifest *m = NULL;
	if ((r = reg_client_resolve(c, ref, NULL, &m, ret_digest)) < 0)
		return r;
	reg_manifest_free(m);
	*ret_ref = TAKE_PTR(ref);
	*ret_client = TAKE_PTR(c);
	return 0;
}

/* Append the chunk ids of trace FILE to `all` (the build drops repeats). */
static int add_trace(const char *path, struct idx_trace *all)
{
	_cleanup_(idx_trace_fini) struct idx_trace t = {0};
	int r = idx_trace_load(path, &t);
	if (r < 0) {
		fprintf(stderr, "isorun-index: --startup-trace %s: %s\n", path, strerror(-r));
		return r;
	}
	uint8_t(*ids)[32] = realloc(all->ids, ((size_t)all->n + t.n) * 32 + 1);
	if (!ids)
		return -ENOMEM;
	memcpy(ids[all->n], t.ids, (size_t)t.n * 32);
	all->ids = ids;
	all->n += t.n;
	return 0;
}

static int cmd_build(int argc, char **argv)
{
	enum {
		OPT_PUSH = 256,
		OPT_FORCE,
		OPT_FLOAT,
		OPT_CREDS,
		OPT_AUTHFILE,
		OPT_TLS,
		OPT_INSECURE,
		OPT_TRACE,
		OPT_STARTUP_LEVEL,
	};
	static const struct option opts[] = {
		{"platform", required_argument, NULL, 'p'},
		{"oci-out", required_argument, NULL, 'o'},
		{"pack-size", required_argument, NULL, 's'},
		{"threads", required_argument, NULL, 't'},
		{"push", no_argument, NULL, OPT_PUSH},
		{"force", no_argument, NULL, OPT_FORCE},
		{"allow-floating-tag", no_argument, NULL, OPT_FLOAT},
		{"creds", required_argument, NULL, OPT_CREDS},
		{"authfile", required_argument, NULL, OPT_AUTHFILE},
		{"tls-verify", required_argument, NULL, OPT_TLS},
		{"insecure-registry", required_argument, NULL, OPT_INSECURE},
		{"startup-trace", required_argument, NULL, OPT_TRACE},
		{"startup-level", required_argument, NULL, OPT_STARTUP_LEVEL},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	struct idx_build_opts o = {.progress = isatty(STDERR_FILENO)};
	_cleanup_(idx_trace_fini) struct idx_trace startup = {0};
	bool push = false, force = false, allow_floating = false;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': o.platform = optarg; break;
		case 'o': o.oci_out = optarg; break;
		case 's':
			if (cm_parse_size(optarg, &o.pack_target) < 0 || o.pack_target < (1u << 20)) {
				fprintf(stderr, "isorun-index: --pack-size must be at least 1M\n");
				return 2;
			}
			break;
		case 't': {
			unsigned t;
			if (cm_parse_uint(optarg, 1, 256, &t) < 0) {
				fprintf(stderr,
					"isorun-index: --threads: from 1 to 256, not '%s'\n",
					optarg);
				return 2;
			}
			o.threads = (int)t;
			break;
		}
		case OPT_PUSH: push = true; break;
		case OPT_FORCE: force = true; break;
		case OPT_FLOAT: allow_floating = true; break;
		case OPT_CREDS: reg_opts.creds = optarg; break;
		case OPT_AUTHFILE: reg_opts.authfile = optarg; break;
		case OPT_TLS: reg_opts.tls_no_verify = !strcmp(optarg, "false"); break;
		case OPT_INSECURE:
			if (ninsecure + 1 < ARRAY_SIZE(insecure))
				insecure[ninsecure++] = optarg;
			break;
		case OPT_STARTUP_LEVEL: {
			unsigned l;
			if (cm_parse_uint(optarg, 1, 19, &l) < 0) {
				fprintf(stderr, "isorun-index: --startup-level: a zstd level from 1 "
						"to 19, not '%s'\n", optarg);
				return 2;
			}
			o.startup_level = (int)l;
			break;
		}
		case OPT_TRACE:
			if (add_trace(optarg, &startup) < 0)
				return 1;
			break;
		case 'h': usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	o.startup_ids = (const uint8_t (*)[32])startup.ids;
	o.n_startup_ids = startup.n;
	reg_opts.platform = o.platform;
	reg_opts.insecure_registries = ninsecure ? insecure : NULL;
	const char *spec = argv[optind];
	bool remote = !cm_str_has_prefix(spec, "oci:");
	if (push && !remote) {
		fprintf(stderr, "isorun-index: --push needs a registry reference (the artifact goes "
				"next to the image)\n");
		return 2;
	}
	_cleanup_(idx_store_freep) struct idx_store *store = NULL;
	_cleanup_(idx_source_freep) struct idx_source *src = NULL;
	_cleanup_(reg_ref_freep) struct reg_ref *ref = NULL;
	_cleanup_(reg_client_freep) struct reg_client *client = NULL;
	_cleanup_free_ char *tmp_out = NULL;
	char mdigest[CM_DIGEST_STR_SIZE];
	if (open_store(&store) < 0)
		return 1;
	if (remote) {
		if (resolve_registry(spec, allow_floating, &ref, &client, mdigest) < 0)
			return 1;
		char idigest[CM_DIGEST_STR_SIZE], adigest[CM_DIGEST_STR_SIZE];
		int k = idx_artifact_find(client, ref, mdigest, idigest, adigest);
		if (k == 0 && !force) {
			printf("image      %s\nmanifest   %s\nartifact   %s (already in the registry; "
			       "--force rebuilds)\n%s\n",
			       spec, mdigest, adigest, idigest);
			return 0;
		}
		if (k < 0 && k != -ENOENT)
			return 1;
	}
	if (open_source(spec, &src) < 0)
		return 1;
	if (push && !o.oci_out) {
		tmp_out = cm_strdupf("%s/tmp/artifact.%ld", idx_store_root(store), (long)getpid());
		if (!tmp_out)
			return 1;
		o.oci_out = tmp_out;
	}
	struct idx_build_result res;
	uint64_t t0 = cm_now_ns();
	int r = idx_build(store, src, &o, &res);
	if (r < 0) {
		fprintf(stderr, "isorun-index: indexing %s failed: %s\n", spec, strerror(-r));
		goto out;
	}
	if (remote && strcmp(res.manifest_digest, mdigest) != 0) {
		/* The tag moved between resolving and reading: refuse to push a mismatch. */
		fprintf(stderr, "isorun-index: %s changed while indexing (%s, then %s)\n", spec, mdigest,
			res.manifest_digest);
		r = -EAGAIN;
		goto out;
	}
	char nb[32], fb[32];
	cm_format_bytes(res.new_bytes, nb, sizeof(nb));
	cm_format_bytes(res.file_bytes, fb, sizeof(fb));
	printf("image      %s\nmanifest   %s\nlayers     %llu\nchunks     %llu (%s unique data)\n"
	       "added      %llu new chunks, %s\ntime       %.2f s\n",
	       src->ref, res.manifest_digest, (unsigned long long)res.layers,
	       (unsigned long long)res.chunks, fb, (unsigned long long)res.new_chunks, nb,
	       (double)(cm_now_ns() - t0) / 1e9);
	if (push) {
		char adigest[CM_DIGEST_STR_SIZE];
		if ((r = idx_artifact_push(client, ref, o.oci_out, adigest)) < 0) {
			fprintf(stderr, "isorun-index: pushing the index artifact failed: %s\n",
				strerror(-r));
			goto out;
		}
		printf("pushed     %s (referrer of %s)\n", adigest, mdigest);
	} else if (o.oci_out) {
		printf("artifact   %s\n", o.oci_out);
	}
	printf("%s\n", res.index_digest);
out:
	if (tmp_out)
		cm_rm_rf_at(AT_FDCWD, tmp_out);
	return r < 0 ? 1 : 0;
}

static void json_strv(json_object *o, const char *key, char **v)
{
	if (!v)
		return;
	json_object *a = json_object_new_array();
	for (; *v; v++)
		json_object_array_add(a, json_object_new_string(*v));
	json_object_object_add(o, key, a);
}

static void print_strv(const char *label, char **v)
{
	if (!v)
		return;
	printf("%-12s", label);
	for (; *v; v++)
		printf(" %s", *v);
	printf("\n");
}

static int cmd_inspect(int argc, char **argv)
{
	bool json = false;
	int i = 1;
	if (i < argc && !strcmp(argv[i], "--json")) {
		json = true;
		i++;
	}
	if (i + 1 != argc) {
		usage(stderr);
		return 2;
	}
	_cleanup_(idx_store_freep) struct idx_store *store = NULL;
	_cleanup_(idx_reader_freep) struct idx_reader *r = NULL;
	if (open_store(&store) < 0 || open_index(store, argv[i], &r) < 0)
		return 1;
	struct idx_stats s;
	idx_reader_stats(r, &s);
	struct idx_config *cfg = NULL;
	if (idx_reader_config(r, &cfg) < 0)
		return 1;
	double ratio = s.stored_bytes ? (double)s.unique_bytes / (double)s.stored_bytes : 0;
	if (json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "index", json_object_new_string(idx_reader_digest(r)));
		json_object_object_add(o, "manifest", json_object_new_string(idx_reader_manifest_digest(r)));
		json_object_object_add(o, "config", json_object_new_string(idx_reader_config_digest(r)));
		json_object_object_add(o, "inodes", json_object_new_int64(s.inodes));
		json_object_object_add(o, "files", json_object_new_int64(s.files));
		json_object_object_add(o, "dirs", json_object_new_int64(s.dirs));
		json_object_object_add(o, "symlinks", json_object_new_int64(s.symlinks));
		json_object_object_add(o, "other", json_object_new_int64(s.others));
		json_object_object_add(o, "file_bytes", json_object_new_int64((int64_t)s.file_bytes));
		json_object_object_add(o, "chunks", json_object_new_int64(s.chunks));
		json_object_object_add(o, "unique_bytes", json_object_new_int64((int64_t)s.unique_bytes));
		json_object_object_add(o, "stored_bytes", json_object_new_int64((int64_t)s.stored_bytes));
		json_object_object_add(o, "compression_ratio", json_object_new_double(ratio));
		json_object_object_add(o, "packs", json_object_new_int64(s.packs));
		json_object_object_add(o, "prefetch_chunks", json_object_new_int64(s.prefetch));
		json_object_object_add(o, "index_bytes", json_object_new_int64((int64_t)s.index_bytes));
		json_object *c = json_object_new_object();
		json_strv(c, "Env", cfg->env);
		json_strv(c, "Entrypoint", cfg->entrypoint);
		json_strv(c, "Cmd", cfg->cmd);
		if (cfg->working_dir)
			json_object_object_add(c, "WorkingDir", json_object_new_string(cfg->working_dir));
		if (cfg->user)
			json_object_object_add(c, "User", json_object_new_string(cfg->user));
		json_strv(c, "Labels", cfg->labels);
		json_object_object_add(o, "image_config", c);
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								     JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		char fb[32], ub[32], sb[32], ib[32];
		cm_format_bytes(s.file_bytes, fb, sizeof(fb));
		cm_format_bytes(s.unique_bytes, ub, sizeof(ub));
		cm_format_bytes(s.stored_bytes, sb, sizeof(sb));
		cm_format_bytes(s.index_bytes, ib, sizeof(ib));
		printf("index        %s (%s)\nmanifest     %s\nconfig       %s\n",
		       idx_reader_digest(r), ib, idx_reader_manifest_digest(r),
		       idx_reader_config_digest(r));
		printf("files        %u (%s)\ndirectories  %u\nsymlinks     %u\nother        %u\n",
		       s.files, fb, s.dirs, s.symlinks, s.others);
		printf("chunks       %u, %s unique, %s stored (%.2fx)\npacks        %u\n"
		       "prefetch     %u chunks\n",
		       s.chunks, ub, sb, ratio, s.packs, s.prefetch);
		print_strv("entrypoint", cfg->entrypoint);
		print_strv("cmd", cfg->cmd);
		print_strv("env", cfg->env);
		if (cfg->working_dir)
			printf("%-12s %s\n", "workdir", cfg->working_dir);
		if (cfg->user)
			printf("%-12s %s\n", "user", cfg->user);
		print_strv("labels", cfg->labels);
	}
	idx_config_free(cfg);
	return 0;
}

static void mode_string(uint32_t mode, char out[11])
{
	static const char types[] = "?pc?d?b?-?l?s???";
	out[0] = types[(mode >> 12) & 15];
	const char *rwx = "rwxrwxrwx";
	for (int i = 0; i < 9; i++)
		out[1 + i] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
	if (mode & S_ISUID)
		out[3] = (mode & S_IXUSR) ? 's' : 'S';
	if (mode & S_ISGID)
		out[6] = (mode & S_IXGRP) ? 's' : 'S';
	if (mode & S_ISVTX)
		out[9] = (mode & S_IXOTH) ? 't' : 'T';
	out[10] = 0;
}

static int ls_dir(struct idx_reader *r, uint32_t dir, const char *prefix, bool recursive)
{
	uint32_t n;
	int k = idx_reader_dir_count(r, dir, &n);
	if (k < 0)
		return k;
	for (uint32_t i = 0; i < n; i++) {
		struct idx_dirent de;
		struct idx_inode in;
		idx_reader_dirent(r, dir, i, &de);
		idx_reader_inode(r, de.ino, &in);
		char m[11], t[32];
		mode_string(in.mode, m);
		time_t mt = (time_t)in.mtime_sec;
		struct tm tm;
		gmtime_r(&mt, &tm);
		strftime(t, sizeof(t), "%Y-%m-%d %H:%M", &tm);
		if (S_ISCHR(in.mode) || S_ISBLK(in.mode))
			printf("%s %3u %5u %5u %5u,%4u %s %s%s", m, in.nlink, in.uid, in.gid,
			       in.rdev_major, in.rdev_minor, t, prefix, de.name);
		else
			printf("%s %3u %5u %5u %10llu %s %s%s", m, in.nlink, in.uid, in.gid,
			       (unsigned long long)in.size, t, prefix, de.name);
		if (S_ISLNK(in.mode)) {
			const char *target;
			size_t len;
			idx_reader_readlink(r, de.ino, &target, &len);
			printf(" -> %s", target);
		}
		printf("\n");
		if (recursive && S_ISDIR(in.mode)) {
			_cleanup_free_ char *sub = cm_strdupf("%s%s/", prefix, de.name);
			if (!sub)
				return -ENOMEM;
			ls_dir(r, de.ino, sub, true);
		}
	}
	return 0;
}

static int cmd_ls(int argc, char **argv)
{
	bool recursive = false;
	int i = 1;
	if (i < argc && !strcmp(argv[i], "-R")) {
		recursive = true;
		i++;
	}
	if (i >= argc || argc - i > 2) {
		usage(stderr);
		return 2;
	}
	_cleanup_(idx_store_freep) struct idx_store *store = NULL;
	_cleanup_(idx_reader_freep) struct idx_reader *r = NULL;
	if (open_store(&store) < 0 || open_index(store, argv[i], &r) < 0)
		return 1;
	const char *path = i + 1 < argc ? argv[i + 1] : "/";
	uint32_t ino;
	int k = idx_reader_lookup_path(r, path, &ino);
	if (k < 0) {
		fprintf(stderr, "isorun-index: %s: %s\n", path, strerror(-k));
		return 1;
	}
	k = ls_dir(r, ino, "", recursive);
	if (k == -ENOTDIR) {
		fprintf(stderr, "isorun-index: %s: not a directory\n", path);
		return 1;
	}
	return k < 0 ? 1 : 0;
}

static int cmd_extract(int argc, char **argv)
{
	if (argc != 3) {
		usage(stderr);
		return 2;
	}
	_cleanup_(idx_store_freep) struct idx_store *store = NULL;
	_cleanup_(idx_reader_freep) struct idx_reader *r = NULL;
	if (open_store(&store) < 0 || open_index(store, argv[1], &r) < 0)
		return 1;
	int k = idx_extract(r, store, argv[2]);
	if (k < 0) {
		fprintf(stderr, "isorun-index: extract failed: %s\n", strerror(-k));
		return 1;
	}
	return 0;
}

static int cmd_verify(int argc, char **argv)
{
	if (argc != 2) {
		usage(stderr);
		return 2;
	}
	_cleanup_(idx_store_freep) struct idx_store *store = NULL;
	_cleanup_(idx_reader_freep) struct idx_reader *r = NULL;
	if (open_store(&store) < 0 || open_index(store, argv[1], &r) < 0)
		return 1;
	struct idx_verify_result v;
	int k = idx_verify(r, store, &v);
	if (k < 0 && k != -EBADMSG && k != -ENOENT)
		return 1;
	printf("chunks %u, missing %u, corrupt %u\n", v.chunks, v.missing, v.corrupt);
	if (v.missing || v.corrupt) {
		printf("FAILED\n");
		return 1;
	}
	printf("OK %s\n", idx_reader_digest(r));
	return 0;
}

int main(int argc, char **argv)
{
	cm_log_set_ident("isorun-index");
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--root") && i + 1 < argc)
			root_dir = argv[++i];
		else if (!strncmp(argv[i], "--root=", 7))
			root_dir = argv[i] + 7;
		else if (!strcmp(argv[i], "--debug"))
			cm_log_set_level(CM_LOG_DEBUG);
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
			printf("isorun-index %s\n", ISORUN_VERSION);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {{"build", cmd_build},     {"inspect", cmd_inspect}, {"ls", cmd_ls},
		    {"extract", cmd_extract}, {"verify", cmd_verify}};
	for (size_t k = 0; k < ARRAY_SIZE(cmds); k++)
		if (!strcmp(argv[i], cmds[k].name)) {
			/* COMMAND -h|--help, whatever the command takes next */
			if (i + 1 < argc &&
			    (!strcmp(argv[i + 1], "-h") || !strcmp(argv[i + 1], "--help"))) {
				usage(stdout);
				return 0;
			}
			optind = 1;
			return cmds[k].fn(argc - i, argv + i);
		}
	fprintf(stderr, "isorun-index: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return 2;
}
