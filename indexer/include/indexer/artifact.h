/*
 * The index artifact in a registry (docs/format.md, "The index artifact"): an OCI 1.1 image
 * manifest with artifactType application/vnd.isorun.index.v1 whose first layer is the index
 * blob and whose other layers are its packs, with `subject` = the image manifest.
 * Thread-safe as far as the registry client is (it is).
 */
#pragma once

#include "common/digest.h"

#include <stddef.h>

struct cm_buf;
struct reg_client;
struct reg_descriptor;
struct reg_manifest;
struct reg_ref;

/*
 * Push the artifact that `isorun-index build --oci-out DIR` wrote in `layout_dir` to `repo`
 * (the image's repository): blobs not yet there (HEAD first), then the manifest by digest,
 * registered as a referrer of its subject (referrers API or the sha256-<hex> tag schema,
 * keeping other referrers). ret_digest (may be NULL) gets the artifact manifest digest.
 * -EPROTO (layout is not an index artifact), transport errors of the client.
 */
int idx_artifact_push(struct reg_client *c, const struct reg_ref *repo, const char *layout_dir,
		      char ret_digest[CM_DIGEST_STR_SIZE]);

/*
 * Fetch artifact manifest `artifact_digest` of `repo` and check it is an isorun index of image
 * manifest `manifest_digest` (the referrers list is the registry's word; the artifact itself
 * must agree): exactly that subject, isorun's artifactType, and an index layer (the first of
 * isorun's index media types, IDX_MEDIA_INDEX or IDX_MEDIA_INDEX_ZSTD). *ret (caller frees with
 * reg_manifest_free) and *ret_index_layer, which points into it, on success. -EPROTO (logged) for
 * an artifact that is not one, the client's errors for one that cannot be read.
 */
int idx_artifact_manifest(struct reg_client *c, const struct reg_ref *repo,
			  const char *artifact_digest, const char *manifest_digest,
			  struct reg_manifest **ret, const struct reg_descriptor **ret_index_layer);

/*
 * Find the index artifact of image manifest `manifest_digest` in `repo`. Only an artifact
 * idx_artifact_manifest accepts is. On success ret_index_digest gets the index digest (the
 * artifact's dev.isorun.index.digest annotation when its index layer is compressed) and
 * ret_artifact_digest (may be NULL) the artifact manifest digest; the newest valid one wins
 * (reg_referrers_newest_first). -ENOENT when there is none.
 */
int idx_artifact_find(struct reg_client *c, const struct reg_ref *repo, const char *manifest_digest,
		      char ret_index_digest[CM_DIGEST_STR_SIZE],
		      char ret_artifact_digest[CM_DIGEST_STR_SIZE]);

/*
 * Turn the index layer's blob `b` (already checked against its layer digest) into the index:
 * a zstd frame (IDX_MEDIA_INDEX_ZSTD) is replaced by its content, at most `max` bytes, whose
 * SHA-256 goes to ret_digest (the index's own digest, which names it in the store); a raw
 * index (IDX_MEDIA_INDEX, artifacts of before the layer was compressed) stays and ret_digest
 * gets `layer_digest`. -EBADMSG (logged) for a blob that is not exactly one valid zstd frame
 * declaring its size, -EFBIG over `max`, -EPROTO for a media type this isorun does not know.
 */
int idx_artifact_index_decode(struct cm_buf *b, const char *media_type, const char *layer_digest,
			      size_t max, char ret_digest[CM_DIGEST_STR_SIZE]);
