/*
 * OCI / Docker v2 manifests and image indexes: parsing (json-c), platform choice, and the
 * few documents isorun writes itself (artifact manifests, referrers indexes).
 *
 * Pure functions over memory: no I/O, usable by the registry client, the OCI-layout source
 * of the indexer and the fs module alike. Parsed objects are immutable after parse, so
 * concurrent readers need no lock; each object has one owner that frees it.
 *
 * Schema 1 manifests (application/vnd.docker.distribution.manifest.v1+json and +prettyjws)
 * are rejected by name with -ENOTSUP and a message saying so.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"

#define REG_MT_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define REG_MT_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define REG_MT_OCI_CONFIG      "application/vnd.oci.image.config.v1+json"
#define REG_MT_OCI_EMPTY       "application/vnd.oci.empty.v1+json"
#define REG_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define REG_MT_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"
#define REG_MT_DOCKER_CONFIG   "application/vnd.docker.container.image.v1+json"
#define REG_MT_SCHEMA1	       "application/vnd.docker.distribution.manifest.v1+json"
#define REG_MT_SCHEMA1_SIGNED  "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* Cap on a manifest or index body read into memory (the distribution spec's 4 MiB). */
#define REG_MANIFEST_MAX (4u << 20)

/* The sha256 digest of the 2-byte empty JSON object "{}" (OCI 1.1 empty descriptor). */
#define REG_EMPTY_DIGEST "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

enum reg_doc_kind {
	REG_DOC_UNKNOWN = 0,
	REG_DOC_MANIFEST, /* OCI image manifest or Docker v2 schema 2 manifest */
	REG_DOC_INDEX,	  /* OCI image index or Docker manifest list */
	REG_DOC_SCHEMA1,  /* Docker schema 1: recognised only to be refused */
};

/* What a media type names. NULL or an unknown string gives REG_DOC_UNKNOWN. Thread-safe. */
enum reg_doc_kind reg_media_type_kind(const char *media_type);

/*
 * What a document is, from its media type or, when that is NULL/unknown/generic
 * ("application/json", "application/octet-stream"), from its "mediaType" and
 * "schemaVersion" fields and its shape ("manifests" vs "layers"). REG_DOC_UNKNOWN when it
 * is none of them or not JSON. Thread-safe.
 */
enum reg_doc_kind reg_doc_sniff(const char *body, size_t len, const char *media_type);

/* A platform, as in an index entry or as wanted by the caller. Strings are owned by the
 * containing object; NULL means absent. */
struct reg_platform {
	char *os;
	char *architecture;
	char *variant;
	char *os_version;
};

struct reg_annotation {
	char *key;
	char *value;
};

/*
 * A content descriptor. Public because it is a plain record: every string is owned by the
 * object it came from (a manifest or an index) and lives as long as it.
 */
struct reg_descriptor {
	char *media_type;
	char digest[CM_DIGEST_STR_SIZE]; /* "sha256:<64 hex>", validated */
	uint64_t size;
	char *artifact_type;	       /* NULL if absent */
	struct reg_platform *platform; /* NULL if absent (index entries only) */
	struct reg_annotation *annotations;
	size_t n_annotations;
};

/* Value of annotation `key` in `d`, or NULL. */
const char *reg_descriptor_annotation(const struct reg_descriptor *d, const char *key);

struct reg_manifest;
struct reg_index;

/*
 * Parse an image manifest (OCI or Docker v2 schema 2). `media_type` is the Content-Type the
 * body came with (or the descriptor's mediaType), NULL if unknown; when both it and the
 * body's "mediaType" are set they must agree. Digests must be sha256.
 * Returns 0, -EPROTO (malformed, wrong kind: an index given here), -ENOTSUP (schema 1, or a
 * digest algorithm other than sha256), -EFBIG (len > REG_MANIFEST_MAX), -ENOMEM.
 * The caller owns *ret (reg_manifest_free). `body` need not be NUL-terminated.
 */
int reg_manifest_parse(const char *body, size_t len, const char *media_type,
		       struct reg_manifest **ret);
void reg_manifest_free(struct reg_manifest *m);

/* Accessors; the returned pointers live as long as `m`. */
const char *reg_manifest_media_type(const struct reg_manifest *m); /* never NULL */
const struct reg_descriptor *reg_manifest_config(const struct reg_manifest *m);
size_t reg_manifest_layer_count(const struct reg_manifest *m);
const struct reg_descriptor *reg_manifest_layer(const struct reg_manifest *m, size_t i);
const struct reg_descriptor *reg_manifest_subject(const struct reg_manifest *m); /* or NULL */
/* artifactType, or for OCI 1.1 artifacts without it, config.mediaType when that is not the
 * image config type (the spec's rule for referrers). NULL for a plain image. */
const char *reg_manifest_artifact_type(const struct reg_manifest *m);
const char *reg_manifest_annotation(const struct reg_manifest *m, const char *key);
const struct reg_annotation *reg_manifest_annotations(const struct reg_manifest *m, size_t *ret_n);

/*
 * Parse an image index (OCI) or manifest list (Docker). Same rules and returns as
 * reg_manifest_parse (-EPROTO for a manifest given here). Caller owns *ret.
 */
int reg_index_parse(const char *body, size_t len, const char *media_type, struct reg_index **ret);
void reg_index_free(struct reg_index *ix);

const char *reg_index_media_type(const struct reg_index *ix);
size_t reg_index_count(const struct reg_index *ix);
const struct reg_descriptor *reg_index_entry(const struct reg_index *ix, size_t i);
/*
 * The entries of a referrers list (may be NULL), newest first: by their
 * org.opencontainers.image.created annotation (RFC 3339 UTC, which compares as text; an entry
 * without it is older than any with it), then later in the list first (the tag schema
 * appends). *ret (caller frees; NULL when the list is empty) holds *ret_n pointers into
 * `refs`. -ENOMEM.
 */
int reg_referrers_newest_first(const struct reg_index *refs, const struct reg_descriptor ***ret,
			       size_t *ret_n);
const struct reg_descriptor *reg_index_subject(const struct reg_index *ix); /* or NULL */
const char *reg_index_artifact_type(const struct reg_index *ix);
const char *reg_index_annotation(const struct reg_index *ix, const char *key);

/*
 * Parse "os/arch[/variant]" ("linux/arm64/v8"). NULL or "" gives the default linux/amd64.
 * Fills *ret with heap strings; release with reg_platform_fini. -EINVAL if malformed,
 * -ENOMEM.
 */
int reg_platform_parse(const char *s, struct reg_platform *ret);
void reg_platform_fini(struct reg_platform *p);
/* "os/arch[/variant]" into out (at least 64 bytes suggested); truncates safely. */
void reg_platform_format(const struct reg_platform *p, char *out, size_t outlen);

/*
 * Choose the entry of `ix` for platform `want` (NULL: linux/amd64). Matching follows
 * containerd: os and architecture must be equal; when `want` names a variant it must be
 * equal, with arm64 treating an absent variant as "v8"; without a wanted variant, the entry
 * without variant is preferred, then the highest. Entries that are attestations
 * (vnd.docker.reference.type annotations, platform unknown/unknown) never match. Only
 * manifest entries are considered (nested indexes are not followed).
 * Returns 0 with *ret pointing into `ix`; -ENOENT (logged, listing the platforms present).
 */
int reg_index_select_platform(const struct reg_index *ix, const struct reg_platform *want,
			      const struct reg_descriptor **ret);

/*
 * Write an OCI 1.1 image manifest (artifact form) as compact JSON: `artifact_type` (may be
 * NULL), `config` (NULL: the empty descriptor REG_MT_OCI_EMPTY/REG_EMPTY_DIGEST), `layers`
 * (n may be 0: one empty descriptor is written, as the spec recommends), `subject` (may be
 * NULL), `annotations` (may be NULL). Caller frees *ret (NUL-terminated, length *ret_len).
 * -ENOMEM, -EINVAL (a descriptor with an invalid digest or no media type).
 */
int reg_artifact_manifest_format(const char *artifact_type, const struct reg_descriptor *config,
				 const struct reg_descriptor *layers, size_t n_layers,
				 const struct reg_descriptor *subject,
				 const struct reg_annotation *annotations, size_t n_annotations,
				 char **ret, size_t *ret_len);

/*
 * Referrers tag schema (OCI distribution 1.1, "sha256-<hex>" tag): add `add` to the image
 * index `old` (NULL/0 when the tag does not exist yet) and write the result to *ret. Every
 * other entry of `old` (and its annotations) is kept; an entry with the same digest is
 * replaced, so the update is idempotent. Caller frees *ret.
 * -EPROTO (old is not an index), -EINVAL (add has no artifactType... it is taken from the
 * descriptor as given), -ENOMEM.
 */
int reg_referrers_index_update(const char *old, size_t old_len, const struct reg_descriptor *add,
			       char **ret, size_t *ret_len);

/* The tag holding the referrers of `digest` under the tag schema: "sha256-<hex>".
 * `out` holds at least 72 bytes. -EINVAL if `digest` is not a sha256 digest string. */
int reg_referrers_tag(const char *digest, char *out, size_t outlen);
