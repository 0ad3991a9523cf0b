/*
 * Image sources: where the indexer reads an image from. An OCI image layout directory
 * ("oci:PATH[:TAG]") and a registry reference are the two implementations; anything that
 * can hand out manifests and blobs by digest fits.
 *
 * A source is used by one thread at a time. Streams are independent of each other.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cm_buf;
struct idx_source;

/* A forward-only byte stream of a blob's stored (possibly compressed) bytes. The consumer
 * verifies the digest; a source may verify too. */
struct idx_stream {
	/* > 0 bytes read, 0 at end, -errno on failure (-EAGAIN is never returned). */
	ssize_t (*read)(struct idx_stream *st, void *buf, size_t len);
	void (*close)(struct idx_stream *st);
};

struct idx_source_ops {
	const char *kind; /* "oci", "registry" */
	/*
	 * Fetch the manifest or image index named by `ref` (a tag or "sha256:..."; NULL for the
	 * source's own reference). Appends the body to `body` (which carries the size cap),
	 * returns its media type (caller frees) and its digest string. -ENOENT, -EPROTO.
	 */
	int (*get_manifest)(struct idx_source *src, const char *ref, struct cm_buf *body,
			    char **ret_media_type, char ret_digest[72]);
	/* Fetch a small blob (config) into `body`, verified against `digest`. -EBADMSG. */
	int (*get_blob)(struct idx_source *src, const char *digest, uint64_t size,
			struct cm_buf *body);
	/* Open a blob as a stream. */
	int (*open_blob)(struct idx_source *src, const char *digest, uint64_t size,
			 struct idx_stream **ret);
	void (*free)(struct idx_source *src);
};

struct idx_source {
	const struct idx_source_ops *ops;
	char *ref; /* canonical reference, e.g. "oci:/srv/img:v1" */
};

/*
 * Open "oci:PATH[:TAG]" (TAG matched against org.opencontainers.image.ref.name in
 * index.json; without TAG the layout must name exactly one manifest). -ENOENT, -EPROTO.
 */
int idx_source_oci_open(const char *spec, struct idx_source **ret);
/* The canonical reference idx_source_oci_open() would give SPEC ("oci:/abs/path[:TAG]"),
 * without opening the layout or logging: -ENOENT if PATH does not exist, -EINVAL if SPEC is
 * not "oci:...". */
int idx_source_oci_ref(const char *spec, char **ret);
void idx_source_free(struct idx_source *src);
