/* Manifest and blob reads. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"
#include "internal.h"
#include "registry/wire.h"

#define MANIFEST_ACCEPT                                                                            \
	REG_MT_OCI_INDEX ", " REG_MT_OCI_MANIFEST ", " REG_MT_DOCKER_LIST                          \
			 ", " REG_MT_DOCKER_MANIFEST ", " REG_MT_SCHEMA1_SIGNED                    \
			 ";q=0.1, " REG_MT_SCHEMA1 ";q=0.1"

int reg_client_ping(struct reg_client *c, const char *registry)
{
	struct reg_req q;
	const char *host = strcmp(registry, REG_DOCKER_HUB) == 0 ? REG_DOCKER_HUB_API : registry;
	reg_req_init(&q, "GET", host, NULL);
	q.path = strdup("/v2/");
	int r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	if (r >= 0 && r != 200)
		r = reg_req_fail(&q, "registry check");
	else if (r == 200)
		r = 0;
	reg_req_fini(&q);
	return r;
}

struct mem_sink {
	struct cm_buf *buf;
	size_t base; /* length of buf before the request: retries truncate back to it */
};

static int mem_restart(void *ud, struct reg_req *q, unsigned attempt)
{
	struct mem_sink *m = ud;
	m->buf->len = m->base;
	return 0;
}

static int mem_write(void *ud, const uint8_t *data, size_t n)
{
	struct mem_sink *m = ud;
	return cm_buf_append(m->buf, data, n);
}

static int verify_digest(const uint8_t *data, size_t len, const char *want, const char *what,
			 char out[CM_DIGEST_STR_SIZE])
{
	uint8_t d[CM_SHA256_LEN];
	char got[CM_DIGEST_STR_SIZE];
	cm_sha256(data, len, d);
	cm_digest_format(d, got);
	if (out)
		memcpy(out, got, CM_DIGEST_STR_SIZE);
	if (want && strcmp(want, got) != 0)
		return cm_log_ret(-EBADMSG, "%s: content digest %s does not match %s", what, got,
				  want);
	return 0;
}

int reg_client_get_manifest(struct reg_client *c, const struct reg_ref *ref, struct cm_buf *body,
			    char **ret_media_type, char ret_digest[CM_DIGEST_STR_SIZE])
{
	return reg_get_manifest_ex(c, ref, body, ret_media_type, ret_digest, false);
}

int reg_get_manifest_ex(struct reg_client *c, const struct reg_ref *ref, struct cm_buf *body,
			char **ret_media_type, char ret_digest[CM_DIGEST_STR_SIZE], bool quiet_404)
{
	_cleanup_free_ char *scope = reg_scope(ref, "pull");
	struct mem_sink m = {.buf = body, .base = body->len};
	struct reg_req q;
	int r;

	if (!scope)
		return -ENOMEM;
	size_t saved_cap = body->cap;
	if (!body->cap || body->cap - body->len > REG_MANIFEST_MAX)
		body->cap = body->len + REG_MANIFEST_MAX;
	reg_req_init(&q, "GET", reg_ref_api_host(ref), scope);
	q.path = reg_api_path(ref, "manifests", reg_ref_target(ref));
	q.accept = MANIFEST_ACCEPT;
	q.sink = mem_write;
	q.restart = mem_restart;
	q.ud = &m;
	r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	body->cap = saved_cap;
	if (r == -EFBIG) {
		r = cm_log_ret(-EFBIG, "manifest %s:%s is larger than %u bytes", ref->path,
			       reg_ref_target(ref), REG_MANIFEST_MAX);
		goto out;
	}
	if (r < 0)
		goto out;
	if (r == 404 && quiet_404) {
		r = -ENOENT;
		goto out;
	}
	if (r != 200) {
		r = reg_req_fail(&q, "manifest fetch");
		goto out;
	}
	char what[400];
	snprintf(what, sizeof(what), "manifest %s/%s@%s", ref->domain, ref->path,
		 reg_ref_target(ref));
	char got[CM_DIGEST_STR_SIZE];
	r = verify_digest(body->data + m.base, body->len - m.base, ref->digest, what, got);
	if (r < 0)
		goto out;
	if (q.resp_digest && cm_digest_valid(q.resp_digest) && strcmp(q.resp_digest, got) != 0) {
		r = cm_log_ret(-EBADMSG, "%s: Docker-Content-Digest %s does not match content %s",
			       what, q.resp_digest, got);
		goto out;
	}
	if (reg_media_type_kind(q.resp_content_type) == REG_DOC_SCHEMA1 ||
	    reg_doc_sniff((const char *)body->data + m.base, body->len - m.base,
			  q.resp_content_type) == REG_DOC_SCHEMA1) {
		r = cm_log_ret(
		    -ENOTSUP,
		    "%s is a Docker schema 1 manifest, which isorun does not support (it is "
		    "deprecated); re-push the image with a current client",
		    what);
		goto out;
	}
	if (ret_digest)
		memcpy(ret_digest, got, CM_DIGEST_STR_SIZE);
	if (ret_media_type) {
		/* drop parameters ("; charset=utf-8") */
		const char *ct = q.resp_content_type ? q.resp_content_type : "";
		*ret_media_type = strndup(ct, strcspn(ct, "; "));
		if (!*ret_media_type)
			r = -ENOMEM;
	}
	if (r >= 0)
		r = 0;
out:
	if (r < 0)
		body->len = m.base;
	reg_req_fini(&q);
	return r;
}

int reg_client_resolve(struct reg_client *c, const struct reg_ref *ref,
		       const struct reg_platform *platform, struct reg_manifest **ret,
		       char ret_digest[CM_DIGEST_STR_SIZE])
{
	return reg_resolve_ex(c, ref, platform, ret, ret_digest, NULL, NULL);
}

int reg_resolve_ex(struct reg_client *c, const struct reg_ref *ref,
		   const struct reg_platform *platform, struct reg_manifest **ret,
		   char ret_digest[CM_DIGEST_STR_SIZE], struct cm_buf *ret_body, char **ret_mt)
{
	struct cm_buf body;
	_cleanup_free_ char *mt = NULL;
	char digest[CM_DIGEST_STR_SIZE];
	int r;

	cm_buf_init(&body, REG_MANIFEST_MAX);
	r = reg_client_get_manifest(c, ref, &body, &mt, digest);
	if (r < 0)
		goto out;
	enum reg_doc_kind k = reg_doc_sniff((const char *)body.data, body.len, mt);
	if (k == REG_DOC_INDEX) {
		struct reg_index *ix = NULL;
		const struct reg_descriptor *d;
		r = reg_index_parse((const char *)body.data, body.len, mt, &ix);
		if (r < 0) {
			r = cm_log_ret(r, "image index of %s/%s is malformed", ref->domain,
				       ref->path);
			goto out;
		}
		r = reg_index_select_platform(ix, platform ? platform : &c->platform, &d);
		struct reg_ref *sub = NULL;
		if (r == 0)
			r = reg_ref_with(ref, d->digest, &sub);
		reg_index_free(ix);
		if (r < 0)
			goto out;
		cm_buf_clear(&body);
		free(mt);
		mt = NULL;
		r = reg_client_get_manifest(c, sub, &body, &mt, digest);
		reg_ref_free(sub);
		if (r < 0)
			goto out;
	}
	r = reg_manifest_parse((const char *)body.data, body.len, mt, ret);
	if (r == -EPROTO)
		r = cm_log_ret(r, "manifest of %s/%s is malformed", ref->domain, ref->path);
	if (r == 0 && ret_digest)
		memcpy(ret_digest, digest, CM_DIGEST_STR_SIZE);
	if (r == 0 && ret_body) {
		*ret_body = body; /* hand the storage over */
		cm_buf_init(&body, 0);
	}
	if (r == 0 && ret_mt)
		*ret_mt = TAKE_PTR(mt);
out:
	cm_buf_fini(&body);
	return r;
}

/* ---- blobs ---- */

/*
 * A resumable, verifying download: bytes are hashed in order as they are accepted; after a
 * broken transfer the next attempt asks for "bytes=<have>-" and, should the server answer
 * 200 with the whole blob, drops the first <have> bytes.
 */
struct dl {
	struct cm_sha256 *sha;
	uint64_t have;
	uint64_t skip;
	uint64_t size; /* expected, or UINT64_MAX */
	int (*accept)(void *ud, const uint8_t *data, size_t n);
	void *ud;
	const char *digest;
};

static int dl_restart(void *ud, struct reg_req *q, unsigned attempt)
{
	struct dl *d = ud;
	if (d->have)
		snprintf(q->range, sizeof(q->range), "bytes=%llu-", (unsigned long long)d->have);
	else
		q->range[0] = 0;
	return 0;
}

static int dl_start(void *ud, struct reg_req *q)
{
	struct dl *d = ud;
	d->skip = 0;
	if (q->status == 206 && d->have) {
		uint64_t a, b, t;
		if (!q->resp_content_range ||
		    reg_content_range_parse(q->resp_content_range, strlen(q->resp_content_range),
					    &a, &b, &t) < 0 ||
		    a != d->have)
			return -EPROTO;
	} else if (q->status == 200) {
		d->skip = d->have;
	} else if (q->status != 206) {
		return -EPROTO;
	}
	return 0;
}

static int dl_sink(void *ud, const uint8_t *data, size_t n)
{
	struct dl *d = ud;
	if (d->skip) {
		size_t k = (size_t)MIN((uint64_t)n, d->skip);
		d->skip -= k;
		data += k;
		n -= k;
		if (!n)
			return 0;
	}
	if (d->size != UINT64_MAX && d->have + n > d->size)
		return cm_log_ret(-EBADMSG, "blob %s: registry sent more than its %llu bytes",
				  d->digest, (unsigned long long)d->size);
	cm_sha256_update(d->sha, data, n);
	d->have += n;
	return d->accept(d->ud, data, n);
}

/* Run a verified blob download through `accept`. */
int reg_blob_download(struct reg_client *c, const struct reg_ref *repo, const char *digest,
		      uint64_t size, int (*accept)(void *, const uint8_t *, size_t), void *ud,
		      const atomic_bool *cancel)
{
	_cleanup_free_ char *scope = reg_scope(repo, "pull");
	struct dl d = {.size = size, .accept = accept, .ud = ud, .digest = digest};
	struct reg_req q;
	int r;

	if (!cm_digest_valid(digest))
		return -EINVAL;
	if (!scope)
		return -ENOMEM;
	r = cm_sha256_new(&d.sha);
	if (r < 0)
		return r;
	reg_req_init(&q, "GET", reg_ref_api_host(repo), scope);
	q.path = reg_api_path(repo, "blobs", digest);
	q.sink = dl_sink;
	q.start = dl_start;
	q.restart = dl_restart;
	q.ud = &d;
	q.cancel = cancel;
	r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	if (r >= 0 && r != 200 && r != 206)
		r = reg_req_fail(&q, "blob fetch");
	else if (r >= 0) {
		uint8_t h[CM_SHA256_LEN];
		char got[CM_DIGEST_STR_SIZE];
		cm_sha256_final(d.sha, h);
		cm_digest_format(h, got);
		if (size != UINT64_MAX && d.have != size)
			r = cm_log_ret(-EBADMSG, "blob %s of %s: got %llu bytes, expected %llu",
				       digest, repo->path, (unsigned long long)d.have,
				       (unsigned long long)size);
		else if (strcmp(got, digest) != 0)
			r = cm_log_ret(
			    -EBADMSG, "blob %s of %s: content digest is %s (corrupted in transit?)",
			    digest, repo->path, got);
		else
			r = 0;
	}
	reg_req_fini(&q);
	cm_sha256_free(d.sha);
	return r;
}

static int accept_buf(void *ud, const uint8_t *data, size_t n)
{
	return cm_buf_append(ud, data, n);
}

int reg_client_get_blob(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			struct cm_buf *body)
{
	size_t base = body->len;
	int r = reg_blob_download(c, repo, digest, UINT64_MAX, accept_buf, body, NULL);
	if (r == -EFBIG)
		r = cm_log_ret(-EFBIG, "blob %s of %s is over the %zu byte cap", digest, repo->path,
			       body->cap);
	if (r < 0)
		body->len = base;
	return r;
}

static int accept_fd(void *ud, const uint8_t *data, size_t n)
{
	return cm_write_full(*(int *)ud, data, n);
}

int reg_client_get_blob_fd(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			   uint64_t size, int fd)
{
	return reg_blob_download(c, repo, digest, size, accept_fd, &fd, NULL);
}

/* ---- ranges ---- */

struct rg {
	struct reg_range *ranges;
	size_t n;
	uint64_t filled[REG_RANGES_MAX];
	bool multipart;
	uint64_t pos; /* stream position in the blob for single-part answers */
	struct cm_buf mp;
	char boundary[71];
	bool whole;   /* a 200 answer: the whole blob, not the ranges asked for */
	uint64_t end; /* where the furthest range asked for ends (exclusive) */
	bool complete;
	uint64_t prefix;   /* single range: the filled prefix of this attempt */
	uint64_t reported; /* single range: the largest prefix given to its progress hook */
};

static int rg_restart(void *ud, struct reg_req *q, unsigned attempt)
{
	struct rg *g = ud;
	memset(g->filled, 0, sizeof(g->filled));
	cm_buf_clear(&g->mp);
	g->multipart = false;
	g->pos = 0;
	g->whole = false;
	g->complete = false;
	g->prefix = 0;
	return 0;
}

static int rg_start(void *ud, struct reg_req *q)
{
	struct rg *g = ud;
	if (q->status == 200) {
		g->pos = 0;
		g->whole = true;
		return 0;
	}
	if (q->status != 206)
		return -EPROTO;
	if (q->resp_content_type &&
	    reg_multipart_boundary(q->resp_content_type, g->boundary) == 0) {
		g->multipart = true;
		return 0;
	}
	uint64_t a, b, t;
	if (!q->resp_content_range ||
	    reg_content_range_parse(q->resp_content_range, strlen(q->resp_content_range), &a, &b,
				    &t) < 0)
		return -EPROTO;
	g->pos = a;
	return 0;
}

static bool rg_done(const struct rg *g)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->filled[i] < g->ranges[i].len)
			return false;
	return true;
}

static int rg_sink(void *ud, const uint8_t *data, size_t n)
{
	struct rg *g = ud;
	if (g->multipart)
		return cm_buf_append(&g->mp, data, n);
	reg_ranges_copy(g->ranges, g->n, g->filled, g->pos, data, n);
	struct reg_range *r0 = &g->ranges[0];
	if (g->n == 1 && r0->progress && g->pos <= r0->off + g->prefix &&
	    g->pos + n > r0->off + g->prefix) {
		g->prefix = MIN(g->pos + n - r0->off, r0->len);
		if (g->prefix > g->reported) {
			g->reported = g->prefix;
			r0->progress(r0->arg, g->prefix);
		}
	}
	g->pos += n;
	if ((g->whole || g->pos > g->end) && rg_done(g)) {
		/* A 200 answer with the whole blob, or a 206 running past what we asked for:
		 * stop once we have it (the connection is then closed). A 206 answer of the
		 * range asked ends by itself: aborting at its last byte would close a connection
		 * the next request could reuse, a handshake per request on a distant registry. */
		g->complete = true;
		return -ECANCELED;
	}
	return 0;
}

int reg_client_get_blob_ranges(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			       struct reg_range *ranges, size_t n, const atomic_bool *cancel)
{
	_cleanup_free_ char *scope = reg_scope(repo, "pull");
	struct rg *g;
	struct reg_req q;
	int r;

	if (n == 0 || n > REG_RANGES_MAX || !cm_digest_valid(digest))
		return -EINVAL;
	if (!scope)
		return -ENOMEM;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->ranges = ranges;
	g->n = n;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		total += ranges[i].len;
		g->end = MAX(g->end, ranges[i].off + ranges[i].len);
	}
	/* parts headers are ~100 bytes each; allow generously, the data itself is bounded */
	cm_buf_init(&g->mp, (size_t)MIN(total + 1024 * n + 4096, (uint64_t)SIZE_MAX / 2));
	reg_req_init(&q, "GET", reg_ref_api_host(repo), scope);
	r = reg_range_header(ranges, n, q.range, sizeof(q.range));
	if (r < 0)
		goto out;
	q.path = reg_api_path(repo, "blobs", digest);
	q.sink = rg_sink;
	q.start = rg_start;
	q.restart = rg_restart;
	q.ud = g;
	q.cancel = cancel;
	/* the restart hook clears q.range on resume in dl_*, not here: keep our header */
	r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	if (r == -ECANCELED && g->complete)
		r = 0;
	else if (r >= 0 && r != 200 && r != 206)
		r = reg_req_fail(&q, "blob range fetch");
	else if (r >= 0 && g->multipart) {
		r = reg_multipart_parse(g->boundary, g->mp.data, g->mp.len, ranges, n, g->filled);
		if (r < 0)
			r = cm_log_ret(-EPROTO, "blob %s: malformed multipart/byteranges answer",
				       digest);
	} else if (r > 0) {
		r = 0;
	}
	if (r == 0 && !rg_done(g))
		r = cm_log_ret(-EPROTO,
			       "blob %s of %s: the answer does not cover the requested ranges",
			       digest, repo->path);
out:
	reg_req_fini(&q);
	cm_buf_fini(&g->mp);
	free(g);
	return r;
}
