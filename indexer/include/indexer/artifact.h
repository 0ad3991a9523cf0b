/*
 * The index artifact in a registry (docs/format.md, "The index artifact"): an OCI 1.1 image
 * manifest with artifactType application/vnd.isorun.index.v1 whose first layer is the index
 * blob and whose other layers are its packs, with `subject` = the image manifest.
 * Thread-safe as far as the registry client is (it is).
 */
#pragma once

#include "common/digest.h"

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
 * isorun's index media type). *ret (caller frees with reg_manifest_free) and
 * *ret_index_layer, which points into it, on success. -EPROTO (logged) for an artifact that
 * is not one, the client's errors for one that cannot be read.
 */
int idx_artifact_manifest(struct reg_client *c, const struct reg_ref *repo,
			  const char *artifact_digest, const char *manifest_digest,
			  struct reg_manifest **ret, const struct reg_descriptor **ret_index_layer);

/*
 * Find the index artifact of image manifest `manifest_digest` in `repo`. Only an artifact
 * idx_artifact_manifest accepts is. On success ret_index_digest gets the index blob digest and
 * ret_artifact_digest (may be NULL) the artifact manifest digest; the newest valid one wins
 * (reg_referrers_newest_first). -ENOENT when there is none.
 */
int idx_artifact_find(struct reg_client *c, const struct reg_ref *repo, const char *manifest_digest,
		      char ret_index_digest[CM_DIGEST_STR_SIZE],
		      char ret_artifact_digest[CM_DIGEST_STR_SIZE]);
