/* Push: blob uploads (monolithic and chunked), cross-repository mounts, manifests, OCI
 * layouts. Upload Locations may be relative or absolute and carry session state in their
 * query; we append our parameters to them. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "internal.h"

#define LAYOUT_INDEX_MAX REG_MANIFEST_MAX

int reg_client_blob_exists(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			   uint64_t *ret_size)
{
	_cleanup_free_ char *scope = reg_scope(repo, "pull");
	struct reg_req q;
	int r;
	if (!cm_digest_valid(digest))
		return -EINVAL;
	if (!scope)
		return -ENOMEM;
	reg_req_init(&q, "HEAD", reg_ref_api_host(repo), scope);
	q.path = reg_api_path(repo, "blobs", digest);
	r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	if (r == 200) {
		if (ret_size)
			*ret_size =
			    q.resp_content_length >= 0 ? (uint64_t)q.resp_content_length : 0;
		r = 0;
	} else if (r == 404) {
		r = -ENOENT;
	} else if (r >= 0) {
		r = reg_req_fail(&q, "blob check");
	}
	reg_req_fini(&q);
	return r;
}

/* Location + "?"/"&" + extra, as a new heap string. */
static char *url_append(const char *loc, const char *extra)
{
	return cm_strdupf("%s%s%s", loc, strchr(loc, '?') ? "&" : "?", extra);
}

static int hash_fd(int fd, uint64_t size, char out[CM_DIGEST_STR_SIZE])
{
	struct cm_sha256 *sha;
	uint8_t buf[1 << 16], h[CM_SHA256_LEN];
	uint64_t off = 0;
	int r = cm_sha256_new(&sha);
	if (r < 0)
		return r;
	while (off < size) {
		ssize_t n =
		    pread(fd, buf, (size_t)MIN((uint64_t)sizeof(buf), size - off), (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cm_sha256_free(sha);
			return n < 0 ? -errno : -EIO;
		}
		cm_sha256_update(sha, buf, (size_t)n);
		off += (uint64_t)n;
	}
	cm_sha256_final(sha, h);
	cm_sha256_free(sha);
	cm_digest_format(h, out);
	return 0;
}

/* Start an upload session (or mount). Returns 201 mounted, 202 with *ret_loc, -errno. */
static int upload_start(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			const char *mount_from, const char *scope, char **ret_loc)
{
	struct reg_req q;
	int r;
	reg_req_init(&q, "POST", reg_ref_api_host(repo), scope);
	if (mount_from) {
		_cleanup_free_ char *d = reg_escape(digest), *f = reg_escape(mount_from);
		q.path =
		    d && f ? cm_strdupf("/v2/%s/blobs/uploads/?mount=%s&from=%s", repo->path, d, f)
			   : NULL;
	} else {
		q.path = cm_strdupf("/v2/%s/blobs/uploads/", repo->path);
	}
	q.has_body = true; /* empty POST body, Content-Length: 0 */
	q.body = "";
	q.body_len = 0;
	r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	if (r == 201 && mount_from) {
		r = 201;
	} else if (r == 202 && q.resp_location) {
		*ret_loc = strdup(q.resp_location);
		r = *ret_loc ? 202 : -ENOMEM;
	} else if (r >= 0) {
		r = reg_req_fail(&q, "blob upload start");
	}
	reg_req_fini(&q);
	return r;
}

int reg_client_push_blob_fd(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			    int fd, uint64_t size, uint64_t chunk, const char *mount_from)
{
	char got[CM_DIGEST_STR_SIZE];
	_cleanup_free_ char *loc = NULL;
	_cleanup_free_ char *scope = NULL;
	int r;

	if (!cm_digest_valid(digest))
		return -EINVAL;
	r = hash_fd(fd, size, got);
	if (r < 0)
		return r;
	if (strcmp(got, digest) != 0)
		return cm_log_ret(-EBADMSG, "blob to push has digest %s, not %s", got, digest);
	r = reg_client_blob_exists(c, repo, digest, NULL);
	if (r == 0)
		return 1;
	if (r != -ENOENT)
		return r;
	if (mount_from && strcmp(mount_from, repo->path) != 0)
		scope = cm_strdupf("repository:%s:pull,push repository:%s:pull", repo->path,
				   mount_from);
	else
		scope = reg_scope(repo, "pull,push");
	if (!scope)
		return -ENOMEM;
	r = upload_start(c, repo, digest, mount_from, scope, &loc);
	if (r == 201)
		return 1;
	if (r < 0)
		return r;
	/* 202: not mounted (or no mount asked): upload into the session we got */
	uint64_t off = 0;
	if (chunk) {
		while (off < size) {
			uint64_t n = MIN(chunk, size - off);
			struct reg_req q;
			reg_req_init(&q, "PATCH", reg_ref_api_host(repo), scope);
			q.path = strdup(loc);
			q.content_type = "application/octet-stream";
			snprintf(q.content_range, sizeof(q.content_range), "%llu-%llu",
				 (unsigned long long)off, (unsigned long long)(off + n - 1));
			q.has_body = true;
			q.body_fd = fd;
			q.body_off = off;
			q.body_len = n;
			r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
			if (r == 202 && q.resp_location) {
				free(loc);
				loc = strdup(q.resp_location);
				r = loc ? 0 : -ENOMEM;
			} else if (r >= 0) {
				r = reg_req_fail(&q, "blob chunk upload");
			}
			reg_req_fini(&q);
			if (r < 0)
				return r;
			off += n;
		}
	}
	_cleanup_free_ char *dg = reg_escape(digest);
	_cleanup_free_ char *extra = dg ? cm_strdupf("digest=%s", dg) : NULL;
	struct reg_req q;
	reg_req_init(&q, "PUT", reg_ref_api_host(repo), scope);
	q.path = extra ? url_append(loc, extra) : NULL;
	q.content_type = "application/octet-stream";
	q.has_body = true;
	q.body_fd = fd;
	q.body_off = off;
	q.body_len = size - off;
	r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	if (r == 201 || r == 204) {
		r = 0;
		if (q.resp_digest && strcmp(q.resp_digest, digest) != 0)
			r = cm_log_ret(-EBADMSG, "registry stored blob as %s, expected %s",
				       q.resp_digest, digest);
	} else if (r >= 0) {
		r = reg_req_fail(&q, "blob upload");
	}
	reg_req_fini(&q);
	return r;
}

int reg_client_push_blob(struct reg_client *c, const struct reg_ref *repo, const void *data,
			 size_t len, char ret_digest[CM_DIGEST_STR_SIZE])
{
	uint8_t h[CM_SHA256_LEN];
	char digest[CM_DIGEST_STR_SIZE];
	cm_sha256(data, len, h);
	cm_digest_format(h, digest);
	/* a memfd gives the fd path its pread source without a copy to disk */
	_cleanup_close_ int fd = memfd_create("isorun-blob", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = cm_write_full(fd, data, len);
	if (r < 0)
		return r;
	r = reg_client_push_blob_fd(c, repo, digest, fd, len, 0, NULL);
	if (r >= 0 && ret_digest)
		memcpy(ret_digest, digest, CM_DIGEST_STR_SIZE);
	return r < 0 ? r : 0;
}

int reg_client_put_manifest_ex(struct reg_client *c, const struct reg_ref *ref,
			       const char *media_type, const void *body, size_t len,
			       char ret_digest[CM_DIGEST_STR_SIZE], bool *ret_subject_ack)
{
	_cleanup_free_ char *scope = reg_scope(ref, "pull,push");
	uint8_t h[CM_SHA256_LEN];
	char digest[CM_DIGEST_STR_SIZE];
	struct reg_req q;
	int r;

	if (!media_type || !*media_type)
		return -EPROTO;
	if (len > REG_MANIFEST_MAX)
		return -EFBIG;
	if (!scope)
		return -ENOMEM;
	cm_sha256(body, len, h);
	cm_digest_format(h, digest);
	if (ref->digest && strcmp(ref->digest, digest) != 0)
		return cm_log_ret(-EBADMSG, "manifest body has digest %s, not %s", digest,
				  ref->digest);
	reg_req_init(&q, "PUT", reg_ref_api_host(ref), scope);
	q.path = reg_api_path(ref, "manifests", ref->tag ? ref->tag : digest);
	q.content_type = media_type;
	q.has_body = true;
	q.body = body;
	q.body_len = len;
	r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	if (r == 201 || r == 200 || r == 204) {
		r = 0;
		if (q.resp_digest && cm_digest_valid(q.resp_digest) &&
		    strcmp(q.resp_digest, digest) != 0)
			r = cm_log_ret(-EBADMSG, "registry stored manifest as %s, we sent %s",
				       q.resp_digest, digest);
		if (ret_subject_ack)
			*ret_subject_ack = q.resp_oci_subject != NULL;
	} else if (r >= 0) {
		r = reg_req_fail(&q, "manifest push");
	}
	reg_req_fini(&q);
	if (r == 0 && ret_digest)
		memcpy(ret_digest, digest, CM_DIGEST_STR_SIZE);
	return r;
}

int reg_client_put_manifest(struct reg_client *c, const struct reg_ref *ref, const char *media_type,
			    const void *body, size_t len, char ret_digest[CM_DIGEST_STR_SIZE])
{
	return reg_client_put_manifest_ex(c, ref, media_type, body, len, ret_digest, NULL);
}

/* ---- OCI layout ---- */

static int read_layout_blob(int bfd, const char *digest, size_t cap, struct cm_buf *out)
{
	cm_buf_init(out, cap);
	int r = cm_read_file(bfd, digest + 7, out);
	if (r < 0)
		return cm_log_ret(r, "OCI layout: cannot read blob %s", digest);
	uint8_t h[CM_SHA256_LEN];
	char got[CM_DIGEST_STR_SIZE];
	cm_sha256(out->data, out->len, h);
	cm_digest_format(h, got);
	if (strcmp(got, digest) != 0)
		return cm_log_ret(-EBADMSG, "OCI layout: blob %s has content %s", digest, got);
	return 0;
}

static int push_layout_blob(struct reg_client *c, int bfd, const struct reg_descriptor *d,
			    const struct reg_ref *dest, uint64_t chunk)
{
	_cleanup_close_ int fd = openat(bfd, d->digest + 7, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cm_log_ret(-errno, "OCI layout: missing blob %s", d->digest);
	int r = reg_client_push_blob_fd(c, dest, d->digest, fd, d->size, chunk, NULL);
	return r < 0 ? r : 0;
}

/* Push the manifest/index `d` and everything it references, by digest unless `tagged`. */
static int push_layout_doc(struct reg_client *c, int bfd, const struct reg_descriptor *d,
			   const struct reg_ref *dest, bool tagged, uint64_t chunk, int depth)
{
	struct cm_buf body;
	int r;
	if (depth > 4)
		return cm_log_ret(-EPROTO, "OCI layout: indexes nested too deep");
	r = read_layout_blob(bfd, d->digest, REG_MANIFEST_MAX, &body);
	if (r < 0)
		goto out;
	enum reg_doc_kind k = reg_doc_sniff((const char *)body.data, body.len, d->media_type);
	if (k == REG_DOC_INDEX) {
		struct reg_index *ix = NULL;
		r = reg_index_parse((const char *)body.data, body.len, d->media_type, &ix);
		for (size_t i = 0; r == 0 && i < reg_index_count(ix); i++)
			r = push_layout_doc(c, bfd, reg_index_entry(ix, i), dest, false, chunk,
					    depth + 1);
		reg_index_free(ix);
	} else {
		struct reg_manifest *m = NULL;
		r = reg_manifest_parse((const char *)body.data, body.len, d->media_type, &m);
		if (r == 0)
			r = push_layout_blob(c, bfd, reg_manifest_config(m), dest, chunk);
		for (size_t i = 0; r == 0 && i < reg_manifest_layer_count(m); i++)
			r = push_layout_blob(c, bfd, reg_manifest_layer(m, i), dest, chunk);
		reg_manifest_free(m);
	}
	if (r < 0)
		goto out;
	struct reg_ref *target = NULL;
	if (tagged && dest->tag)
		r = reg_ref_dup(dest, &target);
	else
		r = reg_ref_with(dest, d->digest, &target);
	if (r == 0 && target->digest && target->tag) {
		free(target->digest);
		target->digest = NULL;
	}
	if (r == 0)
		r = reg_client_put_manifest(c, target, d->media_type, body.data, body.len, NULL);
	reg_ref_free(target);
out:
	cm_buf_fini(&body);
	return r;
}

int reg_client_push_layout(struct reg_client *c, const char *layout_dir, const char *tag,
			   const struct reg_ref *dest, uint64_t chunk,
			   char ret_digest[CM_DIGEST_STR_SIZE])
{
	_cleanup_close_ int dfd = open(layout_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int bfd = -1;
	struct cm_buf ib;
	struct reg_index *ix = NULL;
	const struct reg_descriptor *pick = NULL;
	int r;

	if (dfd < 0)
		return cm_log_ret(-errno, "cannot open OCI layout %s", layout_dir);
	bfd = openat(dfd, "blobs/sha256", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (bfd < 0)
		return cm_log_ret(-EPROTO, "%s is not an OCI layout (no blobs/sha256)", layout_dir);
	cm_buf_init(&ib, LAYOUT_INDEX_MAX);
	r = cm_read_file(dfd, "index.json", &ib);
	if (r == 0)
		r = reg_index_parse((const char *)ib.data, ib.len, REG_MT_OCI_INDEX, &ix);
	cm_buf_fini(&ib);
	if (r < 0)
		return cm_log_ret(r == -ENOENT ? -EPROTO : r,
				  "%s/index.json is missing or malformed", layout_dir);
	size_t n = reg_index_count(ix);
	for (size_t i = 0; i < n; i++) {
		const struct reg_descriptor *d = reg_index_entry(ix, i);
		const char *name =
		    reg_descriptor_annotation(d, "org.opencontainers.image.ref.name");
		if (tag ? (name && !strcmp(name, tag)) : n == 1) {
			pick = d;
			break;
		}
	}
	if (!pick) {
		reg_index_free(ix);
		if (tag)
			return cm_log_ret(-ENOENT, "OCI layout %s has no image tagged '%s'",
					  layout_dir, tag);
		return cm_log_ret(-ENOENT, "OCI layout %s holds %zu images: name one with a tag",
				  layout_dir, n);
	}
	r = push_layout_doc(c, bfd, pick, dest, true, chunk, 0);
	if (r == 0 && ret_digest)
		memcpy(ret_digest, pick->digest, CM_DIGEST_STR_SIZE);
	reg_index_free(ix);
	return r;
}
