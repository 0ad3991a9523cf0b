/*
 * reg-tool: a small command-line front end over the registry library, for the integration
 * tests and the pull benchmark. Exit status: 0 on success, else the errno of the failure
 * (ENOENT 2, EACCES 13, EAGAIN 11, EPROTO 71, EBADMSG 74, ENOTSUP 95, ETIMEDOUT 110), so
 * tests can assert which error a situation produces.
 *
 * Secrets are read from stdin (--creds-stdin, login --password-stdin), never from argv.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "registry/auth.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/ref.h"

static int fail(int r, const char *what)
{
	if (r >= 0)
		return 0;
	fprintf(stderr, "reg-tool: %s: %s\n", what, strerror(-r));
	return -r;
}

static struct reg_ref *parse_ref(const char *s)
{
	struct reg_ref *r = NULL;
	const char *why = NULL;
	if (reg_ref_parse(s, &r, &why) < 0) {
		fprintf(stderr, "reg-tool: invalid reference '%s': %s\n", s, why ? why : "?");
		exit(EINVAL);
	}
	return r;
}

static char *read_stdin_line(void)
{
	char buf[4096];
	if (!fgets(buf, sizeof(buf), stdin))
		return NULL;
	buf[strcspn(buf, "\r\n")] = 0;
	char *s = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return s;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: reg-tool [--creds-stdin] [--authfile F] [--timeout S] [--retries N]\n"
		"                [--retry-base-ms N] [--low-speed-time S] [--platform P] "
		"[--parallel N]\n"
		"                [--insecure HOST] [--repeat N [--pause-ms MS]] COMMAND ARGS\n"
		"commands:\n"
		"  parse REF                 normalised reference, or the reason it is invalid\n"
		"  policy REF [--allow-floating]\n"
		"  ping HOST\n"
		"  manifest REF              print digest and media type; body to stdout with -o\n"
		"  resolve REF               manifest digest, config and layers for the platform\n"
		"  blob REF DIGEST OUT       verified download to a file\n"
		"  stream REF DIGEST SIZE [STOP] read through reg_blob_stream (closing after STOP "
		"bytes)\n"
		"  ranges REF DIGEST OFF:LEN... sha256 of each range (one range: its progress\n"
		"                            hook is checked, `progress: CALLS` on stderr)\n"
		"  exists REF DIGEST\n"
		"  pull REF DIR              OCI layout\n"
		"  push-layout DIR[:TAG] REF [CHUNK]\n"
		"  push-blob REF FILE [MOUNT_FROM_REPO]\n"
		"  push-referrer REF SUBJECT_DIGEST ARTIFACT_TYPE [KEY=VALUE]\n"
		"  referrers REF SUBJECT_DIGEST [ARTIFACT_TYPE]\n"
		"  login HOST USER [--authfile F]   password on stdin\n"
		"  logout HOST\n");
	exit(2);
}

static void print_hash(const void *data, size_t len)
{
	uint8_t d[CM_SHA256_LEN];
	char s[CM_DIGEST_STR_SIZE];
	cm_sha256(data, len, d);
	cm_digest_format(d, s);
	printf("%s\n", s);
}

/* The progress hook of a one-range request: the prefix it reports only grows, and what it
 * reported as filled is what the buffer finally holds (a retried attempt rewrites it alike). */
struct progress_check {
	const uint8_t *buf;
	uint8_t *seen;
	uint64_t last, len;
	unsigned calls;
	bool bad;
};

static void progress_hook(void *arg, uint64_t filled)
{
	struct progress_check *p = arg;
	if (filled <= p->last || filled > p->len) {
		p->bad = true;
		return;
	}
	memcpy(p->seen + p->last, p->buf + p->last, (size_t)(filled - p->last));
	p->last = filled;
	p->calls++;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"creds-stdin", no_argument, NULL, 'c'},
					     {"authfile", required_argument, NULL, 'a'},
					     {"timeout", required_argument, NULL, 't'},
					     {"retries", required_argument, NULL, 'r'},
					     {"retry-base-ms", required_argument, NULL, 'b'},
					     {"low-speed-time", required_argument, NULL, 'l'},
					     {"platform", required_argument, NULL, 'p'},
					     {"parallel", required_argument, NULL, 'j'},
					     {"insecure", required_argument, NULL, 'i'},
					     {"allow-floating", no_argument, NULL, 'f'},
					     {"output", required_argument, NULL, 'o'},
					     {"repeat", required_argument, NULL, 'R'},
					     {"pause-ms", required_argument, NULL, 'P'},
					     {NULL, 0, NULL, 0}};
	struct reg_options o = {0};
	const char *insecure[8] = {0};
	size_t ninsecure = 0;
	_cleanup_free_ char *creds = NULL;
	const char *output = NULL;
	bool allow_floating = false;
	int c, repeat = 1, pause_ms = 0;

	cm_log_set_ident("reg-tool");
	while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			creds = read_stdin_line();
			o.creds = creds;
			break;
		case 'a':
			o.authfile = optarg;
			break;
		case 't':
			o.timeout_s = (unsigned)atoi(optarg);
			break;
		case 'r':
			o.max_retries = (unsigned)atoi(optarg);
			break;
		case 'b':
			o.retry_base_ms = (unsigned)atoi(optarg);
			break;
		case 'l':
			o.low_speed_time_s = (unsigned)atoi(optarg);
			break;
		case 'p':
			o.platform = optarg;
			break;
		case 'j':
			o.parallel = (unsigned)atoi(optarg);
			break;
		case 'i':
			if (ninsecure < ARRAY_SIZE(insecure) - 1)
				insecure[ninsecure++] = optarg;
			break;
		case 'f':
			allow_floating = true;
			break;
		case 'o':
			output = optarg;
			break;
		case 'R':
			repeat = atoi(optarg);
			break;
		case 'P':
			pause_ms = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	o.insecure_registries = insecure;
	if (optind >= argc)
		usage();
	const char *cmd = argv[optind];
	char **a = argv + optind + 1;
	int na = argc - optind - 1;

	if (!strcmp(cmd, "parse") && na == 1) {
		struct reg_ref *r = NULL;
		const char *why = NULL;
		int e = reg_ref_parse(a[0], &r, &why);
		if (e < 0) {
			printf("invalid: %s\n", why);
			return -e;
		}
		_cleanup_free_ char *s = reg_ref_format(r);
		printf("%s\n", s);
		reg_ref_free(r);
		return 0;
	}
	if (!strcmp(cmd, "policy") && na >= 1) {
		struct reg_ref *r = parse_ref(a[0]);
		int e = reg_ref_check_policy(r, allow_floating ||
						    (na > 1 && !strcmp(a[1], "--allow-floating")));
		reg_ref_free(r);
		return -e;
	}
	if (!strcmp(cmd, "login") && na == 2) {
		_cleanup_free_ char *pass = read_stdin_line();
		if (!pass)
			return fail(-EINVAL, "password expected on stdin");
		int e = reg_login_store(o.authfile, a[0], a[1], pass);
		explicit_bzero(pass, strlen(pass));
		return fail(e, "login");
	}
	if (!strcmp(cmd, "logout") && na == 1)
		return fail(reg_login_remove(o.authfile, a[0]), "logout");

	struct reg_client *cl = NULL;
	int e = reg_client_new(&o, &cl);
	if (e < 0)
		return fail(e, "client");
	if (creds)
		explicit_bzero(creds, strlen(creds));
	int rc = 0;
	struct reg_ref *ref = NULL;
	/* --repeat runs the command several times on one client (token cache tests) */
	for (int it = 0; it < repeat && rc == 0; it++) {
		if (it && pause_ms)
			usleep((useconds_t)pause_ms * 1000);
		reg_ref_free(ref);
		ref = NULL;
		if (!strcmp(cmd, "ping") && na == 1) {
			rc = fail(reg_client_ping(cl, a[0]), "ping");
		} else if (!strcmp(cmd, "manifest") && na == 1) {
			ref = parse_ref(a[0]);
			struct cm_buf b;
			cm_buf_init(&b, REG_MANIFEST_MAX);
			char *mt = NULL, d[CM_DIGEST_STR_SIZE];
			e = reg_client_get_manifest(cl, ref, &b, &mt, d);
			if (e == 0) {
				printf("%s %s\n", d, mt);
				if (output) {
					FILE *f = fopen(output, "wb");
					if (f) {
						fwrite(b.data, 1, b.len, f);
						fclose(f);
					}
				}
			}
			free(mt);
			cm_buf_fini(&b);
			rc = fail(e, "manifest");
		} else if (!strcmp(cmd, "resolve") && na == 1) {
			ref = parse_ref(a[0]);
			struct reg_manifest *m = NULL;
			char d[CM_DIGEST_STR_SIZE];
			e = reg_client_resolve(cl, ref, NULL, &m, d);
			if (e == 0) {
				printf("manifest %s\nconfig %s %llu\n", d,
				       reg_manifest_config(m)->digest,
				       (unsigned long long)reg_manifest_config(m)->size);
				for (size_t i = 0; i < reg_manifest_layer_count(m); i++)
					printf("layer %s %llu %s\n",
					       reg_manifest_layer(m, i)->digest,
					       (unsigned long long)reg_manifest_layer(m, i)->size,
					       reg_manifest_layer(m, i)->media_type);
			}
			reg_manifest_free(m);
			rc = fail(e, "resolve");
		} else if (!strcmp(cmd, "blob") && na == 3) {
			ref = parse_ref(a[0]);
			_cleanup_close_ int fd =
			    open(a[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			e = fd < 0 ? -errno : reg_client_get_blob_fd(cl, ref, a[1], UINT64_MAX, fd);
			rc = fail(e, "blob");
		} else if (!strcmp(cmd, "stream") && (na == 3 || na == 4)) {
			/* optional 4th argument: stop after that many bytes and close early */
			uint64_t stop_at = na == 4 ? strtoull(a[3], NULL, 10) : UINT64_MAX;
			ref = parse_ref(a[0]);
			struct reg_blob_stream *s = NULL;
			e = reg_client_open_blob(cl, ref, a[1], strtoull(a[2], NULL, 10), &s);
			if (e == 0) {
				struct cm_sha256 *h;
				cm_sha256_new(&h);
				uint8_t buf[65536];
				uint64_t total = 0;
				ssize_t n = 0;
				while (total < stop_at && (n = reg_blob_stream_read(
							       s, buf,
							       (size_t)MIN((uint64_t)sizeof(buf),
									   stop_at - total))) > 0) {
					cm_sha256_update(h, buf, (size_t)n);
					total += (uint64_t)n;
				}
				if (total >= stop_at)
					n = 0;
				uint8_t d[CM_SHA256_LEN];
				char ds[CM_DIGEST_STR_SIZE];
				cm_sha256_final(h, d);
				cm_digest_format(d, ds);
				cm_sha256_free(h);
				printf("%s %llu\n", ds, (unsigned long long)total);
				e = (int)n;
				reg_blob_stream_close(s);
			}
			rc = fail(e, "stream");
		} else if (!strcmp(cmd, "ranges") && na >= 3) {
			ref = parse_ref(a[0]);
			size_t n = (size_t)na - 2;
			struct reg_range rg[REG_RANGES_MAX];
			if (n > REG_RANGES_MAX)
				usage();
			for (size_t i = 0; i < n; i++) {
				unsigned long long off, len;
				if (sscanf(a[2 + i], "%llu:%llu", &off, &len) != 2)
					usage();
				rg[i] = (struct reg_range){
				    .off = off, .len = len, .buf = malloc(len ? len : 1)};
			}
			struct progress_check pc = {.buf = rg[0].buf, .len = rg[0].len};
			if (n == 1) {
				pc.seen = calloc(1, rg[0].len ? rg[0].len : 1);
				rg[0].progress = progress_hook;
				rg[0].arg = &pc;
			}
			e = reg_client_get_blob_ranges(cl, ref, a[1], rg, n, NULL);
			if (e == 0 && n == 1) {
				if (pc.bad || pc.last != rg[0].len ||
				    memcmp(pc.seen, rg[0].buf, (size_t)rg[0].len) != 0) {
					fprintf(stderr, "reg-tool: progress hook: a shrinking, short "
							"or rewritten prefix\n");
					e = -EPROTO;
				}
				fprintf(stderr, "progress: %u\n", pc.calls);
			}
			free(pc.seen);
			for (size_t i = 0; i < n; i++) {
				if (e == 0)
					print_hash(rg[i].buf, (size_t)rg[i].len);
				free(rg[i].buf);
			}
			rc = fail(e, "ranges");
		} else if (!strcmp(cmd, "exists") && na == 2) {
			ref = parse_ref(a[0]);
			uint64_t size = 0;
			e = reg_client_blob_exists(cl, ref, a[1], &size);
			if (e == 0)
				printf("%llu\n", (unsigned long long)size);
			rc = fail(e, "exists");
		} else if (!strcmp(cmd, "push-blob") && na >= 2) {
			ref = parse_ref(a[0]);
			_cleanup_close_ int fd = open(a[1], O_RDONLY | O_CLOEXEC);
			struct stat st;
			e = fd < 0 || fstat(fd, &st) < 0 ? -errno : 0;
			char d[CM_DIGEST_STR_SIZE];
			if (e == 0) {
				/* the digest of the file, as the caller of the library computes it
				 */
				_cleanup_free_ uint8_t *data = malloc((size_t)st.st_size + 1);
				e = data ? (int)read(fd, data, (size_t)st.st_size) : -ENOMEM;
				if (e >= 0) {
					uint8_t h[CM_SHA256_LEN];
					cm_sha256(data, (size_t)st.st_size, h);
					cm_digest_format(h, d);
					e = reg_client_push_blob_fd(cl, ref, d, fd,
								    (uint64_t)st.st_size, 0,
								    na > 2 ? a[2] : NULL);
				}
			}
			if (e >= 0)
				printf("%s %s\n", d, e == 1 ? "present-or-mounted" : "uploaded");
			rc = fail(e, "push-blob");
		} else if (!strcmp(cmd, "pull") && na == 2) {
			ref = parse_ref(a[0]);
			char d[CM_DIGEST_STR_SIZE];
			e = reg_client_pull_blobs(cl, ref, a[1], d);
			if (e == 0)
				printf("%s\n", d);
			rc = fail(e, "pull");
		} else if (!strcmp(cmd, "push-layout") && na >= 2) {
			ref = parse_ref(a[1]);
			_cleanup_free_ char *dir = strdup(a[0]);
			char *colon = strrchr(dir, ':');
			const char *tag = NULL;
			if (colon && !strchr(colon, '/')) {
				*colon = 0;
				tag = colon + 1;
			}
			char d[CM_DIGEST_STR_SIZE];
			e = reg_client_push_layout(cl, dir, tag, ref,
						   na > 2 ? strtoull(a[2], NULL, 10) : 0, d);
			if (e == 0)
				printf("%s\n", d);
			rc = fail(e, "push-layout");
		} else if (!strcmp(cmd, "push-referrer") && na >= 3) {
			ref = parse_ref(a[0]);
			/* an artifact with one small layer naming the artifact type, for tests */
			_cleanup_free_ char *payload = NULL;
			payload = malloc(strlen(a[2]) + 64);
			sprintf(payload, "payload of %s for %.12s", a[2], a[1] + 7);
			char ld[CM_DIGEST_STR_SIZE];
			e = reg_client_push_blob(cl, ref, payload, strlen(payload), ld);
			struct reg_ref *sref = NULL;
			struct cm_buf sb;
			cm_buf_init(&sb, REG_MANIFEST_MAX);
			char *smt = NULL;
			if (e == 0)
				e = reg_ref_with(ref, a[1], &sref);
			if (e == 0)
				e = reg_client_get_manifest(cl, sref, &sb, &smt, NULL);
			if (e == 0) {
				struct reg_descriptor layer = {.media_type =
								   "application/octet-stream",
							       .size = strlen(payload)};
				memcpy(layer.digest, ld, sizeof(ld));
				struct reg_descriptor subj = {.media_type = smt, .size = sb.len};
				memcpy(subj.digest, a[1], CM_DIGEST_STR_SIZE);
				struct reg_annotation an = {0};
				size_t nan = 0;
				_cleanup_free_ char *kv = na > 3 ? strdup(a[3]) : NULL;
				if (kv && strchr(kv, '=')) {
					*strchr(kv, '=') = 0;
					an.key = kv;
					an.value = kv + strlen(kv) + 1;
					nan = 1;
				}
				char *body = NULL;
				size_t blen = 0;
				e = reg_artifact_manifest_format(a[2], NULL, &layer, 1, &subj, &an,
								 nan, &body, &blen);
				char d[CM_DIGEST_STR_SIZE];
				if (e == 0)
					e = reg_client_push_referrer(cl, ref, body, blen, d);
				if (e == 0)
					printf("%s\n", d);
				free(body);
			}
			free(smt);
			cm_buf_fini(&sb);
			reg_ref_free(sref);
			rc = fail(e, "push-referrer");
		} else if (!strcmp(cmd, "referrers") && na >= 2) {
			ref = parse_ref(a[0]);
			struct reg_index *ix = NULL;
			bool api = false;
			e = reg_client_referrers(cl, ref, a[1], na > 2 ? a[2] : NULL, &ix, &api);
			if (e == 0) {
				printf("via %s\n", api ? "api" : "tag-schema");
				for (size_t i = 0; i < reg_index_count(ix); i++) {
					const struct reg_descriptor *d = reg_index_entry(ix, i);
					printf("%s %s\n", d->digest,
					       d->artifact_type ? d->artifact_type : "-");
				}
			}
			reg_index_free(ix);
			rc = fail(e, "referrers");
		} else {
			usage();
		}
	}
	reg_ref_free(ref);
	reg_client_free(cl);
	return rc;
}
