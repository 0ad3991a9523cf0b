/*
 * Image source over an OCI image layout directory (image-spec image-layout.md):
 *   DIR/oci-layout, DIR/index.json, DIR/blobs/<alg>/<hex>.
 * "oci:PATH[:TAG]" selects the manifest whose org.opencontainers.image.ref.name is TAG;
 * without TAG, index.json must list exactly one manifest.
 */
#include "indexer/source.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_CAP (4u << 20)

struct oci_source {
	struct idx_source base;
	int dirfd;
	char *path;
	char *tag;
};

struct oci_stream {
	struct idx_stream base;
	int fd;
};

static ssize_t oci_stream_read(struct idx_stream *st, void *buf, size_t len)
{
	struct oci_stream *s = (struct oci_stream *)st;
	for (;;) {
		ssize_t n = read(s->fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : n;
	}
}

static void oci_stream_close(struct idx_stream *st)
{
	struct oci_stream *s = (struct oci_stream *)st;
	close(s->fd);
	free(s);
}

/* blobs/sha256/<hex> for a digest string, rejecting anything that is not a plain digest. */
static int blob_path(const char *digest, char out[128])
{
	uint8_t d[32];
	int r = cm_digest_parse(digest, d);
	if (r < 0)
		return cm_log_ret(r == -ENOTSUP ? -ENOTSUP : -EPROTO, "invalid blob digest '%s'", digest);
	snprintf(out, 128, "blobs/sha256/%s", digest + 7);
	return 0;
}

static int oci_open_blob(struct idx_source *src, const char *digest, uint64_t size,
			 struct idx_stream **ret)
{
	struct oci_source *s = (struct oci_source *)src;
	char p[128];
	int r = blob_path(digest, p);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = openat(s->dirfd, p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return cm_log_ret(-errno, "%s: blob %s: %s", s->path, digest, strerror(errno));
	struct oci_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	st->base.read = oci_stream_read;
	st->base.close = oci_stream_close;
	st->fd = TAKE_FD(fd);
	*ret = &st->base;
	return 0;
}

static int read_verified(struct oci_source *s, const char *digest, struct cm_buf *body)
{
	char p[128];
	int r = blob_path(digest, p);
	if (r < 0)
		return r;
	size_t start = body->len;
	r = cm_read_file(s->dirfd, p, body);
	if (r == -EFBIG)
		return cm_log_ret(r, "%s: blob %s is larger than %zu bytes", s->path, digest, body->cap);
	if (r < 0)
		return cm_log_ret(r, "%s: blob %s: %s", s->path, digest, strerror(-r));
	uint8_t want[32], got[32];
	cm_digest_parse(digest, want);
	cm_sha256(body->data + start, body->len - start, got);
	if (memcmp(want, got, 32) != 0)
		return cm_log_ret(-EBADMSG, "%s: blob %s does not match its digest", s->path, digest);
	return 0;
}

static int oci_get_blob(struct idx_source *src, const char *digest, uint64_t size,
			struct cm_buf *body)
{
	return read_verified((struct oci_source *)src, digest, body);
}

static int oci_get_manifest(struct idx_source *src, const char *ref, struct cm_buf *body,
			    char **ret_media_type, char ret_digest[72])
{
	struct oci_source *s = (struct oci_source *)src;
	const char *want_digest = NULL;
	_cleanup_free_ char *mt = NULL, *dg = NULL;

	if (ref && cm_str_has_prefix(ref, "sha256:")) {
		want_digest = ref;
	} else {
		const char *tag = ref ? ref : s->tag;
		struct cm_buf ib;
		cm_buf_init(&ib, MANIFEST_CAP);
		int r = cm_read_file(s->dirfd, "index.json", &ib);
		if (r < 0) {
			cm_buf_fini(&ib);
			return cm_log_ret(r == -ENOENT ? -ENOENT : r, "%s: cannot read index.json: %s",
					  s->path, strerror(-r));
		}
		json_object *root = json_tokener_parse((const char *)ib.data);
		cm_buf_fini(&ib);
		json_object *mans;
		if (!root || !json_object_object_get_ex(root, "manifests", &mans) ||
		    !json_object_is_type(mans, json_type_array)) {
			json_object_put(root);
			return cm_log_ret(-EPROTO, "%s: index.json is malformed (no manifests array)",
					  s->path);
		}
		size_t n = json_object_array_length(mans), found = 0;
		for (size_t i = 0; i < n; i++) {
			json_object *m = json_object_array_get_idx(mans, i), *ann, *name, *d, *t;
			const char *mname = NULL;
			if (json_object_object_get_ex(m, "annotations", &ann) &&
			    json_object_object_get_ex(ann, "org.opencontainers.image.ref.name", &name))
				mname = json_object_get_string(name);
			if (tag && (!mname || strcmp(mname, tag) != 0))
				continue;
			if (!json_object_object_get_ex(m, "digest", &d) ||
			    !json_object_is_type(d, json_type_string))
				continue;
			found++;
			free(dg);
			free(mt);
			dg = strdup(json_object_get_string(d));
			mt = json_object_object_get_ex(m, "mediaType", &t)
				     ? strdup(json_object_get_string(t))
				     : NULL;
		}
		json_object_put(root);
		if (found == 0)
			return cm_log_ret(-ENOENT, "%s: no manifest %s%s in index.json", s->path,
					  tag ? "tagged " : "", tag ? tag : "");
		if (found > 1 && !tag)
			return cm_log_ret(-EPROTO, "%s: index.json lists %zu manifests; name one with oci:%s:TAG",
					  s->path, found, s->path);
		if (!dg)
			return -ENOMEM;
		want_digest = dg;
	}
	int r = read_verified(s, want_digest, body);
	if (r < 0)
		return r;
	/* The media type is inside the manifest; the descriptor's copy is only a hint. */
	json_object *m = json_tokener_parse((const char *)body->data);
	json_object *t;
	const char *inner = m && json_object_object_get_ex(m, "mediaType", &t) ? json_object_get_string(t) : NULL;
	char *media = inner ? strdup(inner) : mt ? strdup(mt) : strdup("");
	json_object_put(m);
	if (!media)
		return -ENOMEM;
	*ret_media_type = media;
	snprintf(ret_digest, 72, "%s", want_digest);
	return 0;
}

static void oci_free(struct idx_source *src)
{
	struct oci_source *s = (struct oci_source *)src;
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->path);
	free(s->tag);
	free(s->base.ref);
	free(s);
}

static const struct idx_source_ops oci_ops = {
	.kind = "oci",
	.get_manifest = oci_get_manifest,
	.get_blob = oci_get_blob,
	.open_blob = oci_open_blob,
	.free = oci_free,
};

/* Split "oci:PATH[:TAG]" into PATH and TAG (NULL without one). PATH may itself contain ':';
 * the tag is after the last ':' unless PATH names a directory with it. */
static int oci_split(const char *spec, char **ret_path, char **ret_tag)
{
	if (!cm_str_has_prefix(spec, "oci:"))
		return -EINVAL;
	_cleanup_free_ char *path = strdup(spec + 4);
	if (!path)
		return -ENOMEM;
	char *tag = NULL;
	struct stat st;
	char *colon = strrchr(path, ':');
	if (colon && !(stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
		*colon = 0;
		if (colon[1] && !(tag = strdup(colon + 1)))
			return -ENOMEM;
	}
	*ret_path = TAKE_PTR(path);
	*ret_tag = tag;
	return 0;
}

/* "oci:/absolute/path[:TAG]" (the relative PATH as given if it cannot be resolved). */
static char *oci_ref_format(const char *path, const char *tag)
{
	_cleanup_free_ char *abs = realpath(path, NULL);
	return cm_strdupf("oci:%s%s%s", abs ? abs : path, tag ? ":" : "", tag ? tag : "");
}

int idx_source_oci_ref(const char *spec, char **ret)
{
	_cleanup_free_ char *path = NULL, *tag = NULL;
	int r = oci_split(spec, &path, &tag);
	if (r < 0)
		return r;
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	*ret = oci_ref_format(path, tag);
	return *ret ? 0 : -ENOMEM;
}

int idx_source_oci_open(const char *spec, struct idx_source **ret)
{
	struct oci_source *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->dirfd = -1;
	s->base.ops = &oci_ops;
	int r = oci_split(spec, &s->path, &s->tag);
	if (r < 0) {
		oci_free(&s->base);
		if (r == -EINVAL)
			return cm_log_ret(r, "'%s' is not an oci:PATH[:TAG] reference", spec);
		return r;
	}
	s->dirfd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		r = -errno;
		log_error("oci layout %s: %s", s->path, strerror(errno));
		oci_free(&s->base);
		return r;
	}
	if (faccessat(s->dirfd, "oci-layout", F_OK, 0) < 0) {
		log_error("%s is not an OCI image layout (no oci-layout file)", s->path);
		oci_free(&s->base);
		return -EPROTO;
	}
	s->base.ref = oci_ref_format(s->path, s->tag);
	if (!s->base.ref) {
		oci_free(&s->base);
		return -ENOMEM;
	}
	*ret = &s->base;
	return 0;
}

void idx_source_free(struct idx_source *src)
{
	if (src)
		src->ops->free(src);
}
