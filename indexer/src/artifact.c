/* Pushing and finding the index artifact (see indexer/artifact.h). */
#include "indexer/artifact.h"

#include "indexer/build.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/ref.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

DEFINE_CLEANUP_FUNC(struct reg_manifest, reg_manifest_free)
DEFINE_CLEANUP_FUNC(struct reg_index, reg_index_free)
DEFINE_CLEANUP_FUNC(struct reg_ref, reg_ref_free)
DEFINE_CLEANUP_FUNC(json_object, json_object_put)

static int push_blob_file(struct reg_client *c, const struct reg_ref *repo, int dirfd,
			  const char *digest, uint64_t size)
{
	char path[96];
	snprintf(path, sizeof(path), "blobs/sha256/%s", digest + 7);
	_cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return cm_log_ret(-errno, "artifact blob %s: %s", digest, strerror(errno));
	int r = reg_client_push_blob_fd(c, repo, digest, fd, size, 0, NULL);
	return r < 0 ? r : 0;
}

int idx_artifact_push(struct reg_client *c, const struct reg_ref *repo, const char *layout_dir,
		      char ret_digest[CM_DIGEST_STR_SIZE])
{
	_cleanup_close_ int dirfd = open(layout_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return cm_log_ret(-errno, "%s: %s", layout_dir, strerror(errno));
	_cleanup_(reg_manifest_freep) struct reg_manifest *m = NULL; /* before any goto out */
	struct cm_buf ib, mb;
	cm_buf_init(&ib, REG_MANIFEST_MAX);
	cm_buf_init(&mb, REG_MANIFEST_MAX);
	int r = cm_read_file(dirfd, "index.json", &ib);
	_cleanup_(json_object_putp) json_object *ix = r == 0 ? json_tokener_parse((char *)ib.data) : NULL;
	json_object *mans, *m0, *d;
	const char *mdigest = NULL;
	if (ix && json_object_object_get_ex(ix, "manifests", &mans) &&
	    json_object_array_length(mans) == 1 && (m0 = json_object_array_get_idx(mans, 0)) &&
	    json_object_object_get_ex(m0, "digest", &d))
		mdigest = json_object_get_string(d);
	if (!mdigest || !cm_digest_valid(mdigest)) {
		r = cm_log_ret(-EPROTO, "%s is not an isorun index artifact layout", layout_dir);
		goto out;
	}
	char mpath[96];
	snprintf(mpath, sizeof(mpath), "blobs/sha256/%s", mdigest + 7);
	if ((r = cm_read_file(dirfd, mpath, &mb)) < 0)
		goto out;
	if ((r = reg_manifest_parse((char *)mb.data, mb.len, REG_MT_OCI_MANIFEST, &m)) < 0)
		goto out;
	const char *at = reg_manifest_artifact_type(m);
	if (!at || strcmp(at, IDX_ARTIFACT_TYPE) || !reg_manifest_subject(m)) {
		r = cm_log_ret(-EPROTO, "%s: manifest is not an isorun index artifact", layout_dir);
		goto out;
	}
	const struct reg_descriptor *cfg = reg_manifest_config(m);
	if ((r = push_blob_file(c, repo, dirfd, cfg->digest, cfg->size)) < 0)
		goto out;
	for (size_t i = 0; i < reg_manifest_layer_count(m); i++) {
		const struct reg_descriptor *l = reg_manifest_layer(m, i);
		if ((r = push_blob_file(c, repo, dirfd, l->digest, l->size)) < 0)
			goto out;
	}
	r = reg_client_push_referrer(c, repo, mb.data, mb.len, ret_digest);
out:
	cm_buf_fini(&ib);
	cm_buf_fini(&mb);
	return r;
}

int idx_artifact_manifest(struct reg_client *c, const struct reg_ref *repo,
			  const char *artifact_digest, const char *manifest_digest,
			  struct reg_manifest **ret, const struct reg_descriptor **ret_index_layer)
{
	_cleanup_(reg_ref_freep) struct reg_ref *aref = NULL;
	int r = reg_ref_with(repo, artifact_digest, &aref);
	if (r < 0)
		return r;
	struct cm_buf body;
	cm_buf_init(&body, REG_MANIFEST_MAX);
	_cleanup_free_ char *mt = NULL;
	char got[CM_DIGEST_STR_SIZE];
	r = reg_client_get_manifest(c, aref, &body, &mt, got);
	_cleanup_(reg_manifest_freep) struct reg_manifest *m = NULL;
	if (r == 0)
		r = reg_manifest_parse((char *)body.data, body.len, mt, &m);
	cm_buf_fini(&body);
	if (r < 0)
		return r;
	const struct reg_descriptor *subj = reg_manifest_subject(m);
	const char *at = reg_manifest_artifact_type(m);
	const struct reg_descriptor *il = NULL;
	for (size_t i = 0; i < reg_manifest_layer_count(m) && !il; i++) {
		const struct reg_descriptor *l = reg_manifest_layer(m, i);
		if (l->media_type && (!strcmp(l->media_type, IDX_MEDIA_INDEX) ||
				      !strcmp(l->media_type, IDX_MEDIA_INDEX_ZSTD)))
			il = l;
	}
	if (!subj || strcmp(subj->digest, manifest_digest) || !at ||
	    strcmp(at, IDX_ARTIFACT_TYPE) || !il) {
		log_warn("ignoring referrer %s: not an isorun index of %s", artifact_digest,
			 manifest_digest);
		return -EPROTO;
	}
	*ret_index_layer = il;
	*ret = TAKE_PTR(m);
	return 0;
}

int idx_artifact_find(struct reg_client *c, const struct reg_ref *repo, const char *manifest_digest,
		      char ret_index_digest[CM_DIGEST_STR_SIZE],
		      char ret_artifact_digest[CM_DIGEST_STR_SIZE])
{
	_cleanup_(reg_index_freep) struct reg_index *refs = NULL;
	int r = reg_client_referrers(c, repo, manifest_digest, IDX_ARTIFACT_TYPE, &refs, NULL);
	if (r < 0)
		return r;
	size_t n;
	_cleanup_free_ const struct reg_descriptor **order = NULL;
	if ((r = reg_referrers_newest_first(refs, &order, &n)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		const struct reg_descriptor *e = order[i];
		if (!e->artifact_type || strcmp(e->artifact_type, IDX_ARTIFACT_TYPE))
			continue;
		_cleanup_(reg_manifest_freep) struct reg_manifest *m = NULL;
		const struct reg_descriptor *il;
		r = idx_artifact_manifest(c, repo, e->digest, manifest_digest, &m, &il);
		if (r == -ENOMEM)
			return r;
		if (r < 0) {
			if (r != -EPROTO)
				log_warn("skipping referrer %s of %s: unreadable", e->digest,
					 manifest_digest);
			continue;
		}
		/* A compressed index layer: the index's own digest is the artifact's word
		 * (a pull computes it from the bytes). */
		const char *own = reg_manifest_annotation(m, "dev.isorun.index.digest");
		bool z = !strcmp(il->media_type, IDX_MEDIA_INDEX_ZSTD);
		if (z && (!own || !cm_digest_valid(own))) {
			log_warn("skipping referrer %s of %s: no index digest", e->digest,
				 manifest_digest);
			continue;
		}
		snprintf(ret_index_digest, CM_DIGEST_STR_SIZE, "%s", z ? own : il->digest);
		if (ret_artifact_digest)
			snprintf(ret_artifact_digest, CM_DIGEST_STR_SIZE, "%s", e->digest);
		return 0;
	}
	return -ENOENT;
}

int idx_artifact_index_decode(struct cm_buf *b, const char *media_type, const char *layer_digest,
			      size_t max, char ret_digest[CM_DIGEST_STR_SIZE])
{
	bool z = media_type && !strcmp(media_type, IDX_MEDIA_INDEX_ZSTD);
	if (!z && (!media_type || strcmp(media_type, IDX_MEDIA_INDEX)))
		return cm_log_ret(-EPROTO, "index blob %s: unknown media type %s", layer_digest,
				  media_type ? media_type : "(none)");
	if (!z) {
		if (b->len > max)
			return cm_log_ret(-EFBIG, "index blob %s: %zu bytes, more than %zu",
					  layer_digest, b->len, max);
		snprintf(ret_digest, CM_DIGEST_STR_SIZE, "%s", layer_digest);
		return 0;
	}
	/* One frame that declares its size and is the whole blob: the size is checked against
	 * `max` before anything is allocated. */
	unsigned long long usize = ZSTD_getFrameContentSize(b->data, b->len);
	size_t flen = ZSTD_findFrameCompressedSize(b->data, b->len);
	if (usize == ZSTD_CONTENTSIZE_ERROR || ZSTD_isError(flen) || flen != b->len)
		return cm_log_ret(-EBADMSG, "index blob %s: not one zstd frame", layer_digest);
	if (usize == ZSTD_CONTENTSIZE_UNKNOWN)
		return cm_log_ret(-EBADMSG, "index blob %s: zstd frame without its content size",
				  layer_digest);
	if (usize > max)
		return cm_log_ret(-EFBIG,
				  "index blob %s: decompresses to %llu bytes, more than %zu",
				  layer_digest, usize, max);
	uint8_t *out = malloc(usize ? usize : 1);
	if (!out)
		return -ENOMEM;
	size_t n = ZSTD_decompress(out, usize, b->data, b->len);
	if (ZSTD_isError(n) || n != usize) {
		free(out);
		return cm_log_ret(-EBADMSG, "index blob %s: zstd frame does not decompress: %s",
				  layer_digest, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short");
	}
	uint8_t d[32];
	cm_sha256(out, usize, d);
	cm_digest_format(d, ret_digest);
	free(b->data);
	b->data = out;
	b->len = b->alloc = usize;
	return 0;
}
