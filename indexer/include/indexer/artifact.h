/*
 * The index artifact in a registry (docs/format.md, "The index artifact"): an OCI 1.1 image
 * manifest with artifactType application/vnd.isorun.index.v1 whose first layer is the index
 * blob and whose other layers are its packs, with `subject` = the image manifest.
 * Thread-safe as far as the registry client is (it is).
 */
#pragma once

#include "common/digest.h"

struct reg_client;
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
 * Find the index artifact of image manifest `manifest_digest` in `repo`. Only an artifact
 * whose subject is exactly `manifest_digest`, whose artifactType and first layer's media
 * type are isorun's, is accepted. On success ret_index_digest gets the index blob digest and
 * ret_artifact_digest (may be NULL) the artifact manifest digest; the newest valid one wins
 * (last in the referrers list). -ENOENT when there is none.
 */
int idx_artifact_find(struct reg_client *c, const struct reg_ref *repo, const char *manifest_digest,
		      char ret_index_digest[CM_DIGEST_STR_SIZE],
		      char ret_artifact_digest[CM_DIGEST_STR_SIZE]);
