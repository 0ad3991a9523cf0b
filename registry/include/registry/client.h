/*
 * OCI distribution client on libcurl.
 *
 * One struct reg_client per process (or per configuration) is meant to be shared: it owns a
 * curl share handle (connection cache, DNS cache, TLS sessions), the bearer-token cache and
 * the credential cache. All reg_client_* functions are thread-safe; see client.c for the
 * locks. Every call is bounded by a per-operation deadline (reg_options.timeout_s).
 *
 * Transport: HTTPS with the system CAs. Registries listed in `insecure_registries`, and
 * loopback ones (localhost, 127.0.0.0/8, ::1) as in docker, get HTTPS without verification
 * when they speak TLS and plain HTTP otherwise (decided on first contact, remembered). An
 * entry written "http://HOST[:PORT]" or "https://HOST[:PORT]" says which: no probe (on a
 * fresh store, the probe is one failed TLS handshake before the first request).
 *
 * Auth: anonymous bearer tokens, basic, and bearer tokens obtained with the credentials of
 * reg_creds_lookup (or an identity token, through the OAuth2 refresh-token grant). Tokens are
 * cached per (registry, scope) until shortly before `expires_in`, and refreshed once when the
 * registry answers 401 or 403 to a cached token; a second refusal is -EACCES.
 *
 * Retries: connection errors, stalls (no progress for low_speed_time_s), 429 (Retry-After
 * honoured), 500/502/503/504 are retried with exponential backoff and jitter, up to
 * max_retries and within the deadline. Interrupted blob downloads resume with a Range
 * request and keep hashing, so the digest check covers the whole blob; an attempt that
 * made progress before breaking does not use up the retry budget (the deadline bounds it).
 *
 * Errors (all logged once, with the URL without credentials, the HTTP status and the
 * registry's error code): -ENOENT 404, -EACCES 401/403 after refresh, -EAGAIN retries
 * exhausted, -EBADMSG digest mismatch, -EPROTO malformed answer, -EFBIG over a cap,
 * -ETIMEDOUT deadline, -ENOTSUP schema 1 or a feature the registry lacks, -ENOMEM.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/digest.h"

struct cm_buf;
struct reg_ref;
struct reg_manifest;
struct reg_index;
struct reg_platform;

/* Options. A zero-initialised struct gives the defaults noted per field. Strings are
 * copied by reg_client_new. */
struct reg_options {
	const char *creds;    /* "user:password" for every registry, or NULL */
	const char *authfile; /* use only this auth file, or NULL for the standard chain */
	const char *platform; /* "os/arch[/variant]"; NULL: linux/amd64 */
	const char *const *insecure_registries; /* [http[s]://]host[:port]..., NULL-ended */
	bool tls_no_verify;			/* skip certificate checks for every registry */
	bool allow_floating;			/* for callers applying reg_ref_check_policy */
	unsigned max_retries;			/* 0: 5 */
	unsigned
	    retry_base_ms;  /* first backoff step; 0: 250 ms (doubling, +-50% jitter, cap 8 s) */
	unsigned timeout_s; /* per-operation deadline; 0: 600 s */
	unsigned connect_timeout_s; /* 0: 15 s */
	unsigned low_speed_time_s;  /* no byte moved for this long = stalled (time a stream
				     * consumer holds the download back does not count); 0: 30 */
	unsigned parallel;	    /* concurrent blob downloads of reg_client_pull_blobs; 0: 4 */
	const char *user_agent;	    /* NULL: "isorun/<version>" */
	/* A file remembering what each insecure registry speaks (plain HTTP or TLS without
	 * verification), so later processes skip the TLS probe (a round trip) of the first
	 * contact; NULL: probe in every process. Lines "HOST http|https"; rewritten whole. */
	const char *scheme_cache;
};

struct reg_client;

/* -ENOMEM, -EINVAL (bad platform string), -ELIBACC (libcurl.so.4 cannot be loaded: it is
 * loaded on first use, not linked), -ELIBBAD (it lacks a function). Caller owns *ret. */
int reg_client_new(const struct reg_options *o, struct reg_client **ret);
/* Frees the client. No call may be in flight. NULL is a no-op. */
void reg_client_free(struct reg_client *c);

/* The CURLcode / HTTP status translation points (CURLcode passed as int so this header
 * does not pull in curl.h). Pure functions. */
int reg_err_from_curl(int curl_code);
int reg_err_from_http(long status);

/* What a registry call's -errno (above) means, in words for a user: "not found in the
 * registry", "the registry could not be reached", ...; strerror's text for the others. */
const char *reg_strerror(int err);

/*
 * GET /v2/ on `registry` (host[:port]) with the configured credentials: 0 when the registry
 * accepts them (or needs none), -EACCES when refused. For `isorun login`.
 */
int reg_client_ping(struct reg_client *c, const char *registry);

/*
 * Fetch the manifest or index named by `ref` (its digest if it has one, else its tag, else
 * "latest"). Appends the body to `body` (its cap applies, and REG_MANIFEST_MAX at most).
 * *ret_media_type (may be NULL) gets the Content-Type (caller frees); ret_digest gets the
 * digest of the bytes, which are verified against the reference's digest, and against
 * Docker-Content-Digest when the registry sends it. -ENOENT, -EACCES, -EBADMSG, -EFBIG.
 */
int reg_client_get_manifest(struct reg_client *c, const struct reg_ref *ref, struct cm_buf *body,
			    char **ret_media_type, char ret_digest[CM_DIGEST_STR_SIZE]);

/*
 * Resolve `ref` to an image manifest: fetch it, and when it is an index choose the entry for
 * `platform` (NULL: the client's platform option) and fetch that. *ret is the parsed
 * manifest (caller frees), ret_digest its digest. -ENOENT (also: no such platform),
 * -ENOTSUP (schema 1), and the errors of reg_client_get_manifest.
 */
int reg_client_resolve(struct reg_client *c, const struct reg_ref *ref,
		       const struct reg_platform *platform, struct reg_manifest **ret,
		       char ret_digest[CM_DIGEST_STR_SIZE]);

/* Fetch a small blob (a config) into `body` (cap applies), verified. -EBADMSG, -EFBIG. */
int reg_client_get_blob(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			struct cm_buf *body);

/* Stream a blob to `fd` (at its current position), verifying its digest and, when
 * `size` is not UINT64_MAX, its size. On -EBADMSG the bytes written must be discarded. */
int reg_client_get_blob_fd(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			   uint64_t size, int fd);

/* One byte range of a blob and where to put it. */
struct reg_range {
	uint64_t off;
	uint64_t len;
	void *buf; /* len bytes, filled completely on success */
	/* Optional, for a request of this one range: called on the fetching thread as the
	 * answer arrives, with the length of buf's prefix now filled (growing; each call a
	 * larger one), so the caller can use the first bytes while the rest is in flight.
	 * A retried attempt writes the same bytes again over that prefix. */
	void (*progress)(void *arg, uint64_t filled);
	void *arg;
};

/* Upper bound on ranges per request (the header stays far below servers' limits). */
#define REG_RANGES_MAX 64

/*
 * Read byte ranges of a blob: one request with a Range header listing them all; the answer
 * may be one 206 part, a multipart/byteranges body (parts may be merged or reordered), or a
 * 200 with the whole blob (ranges are cut out of the stream). Ranges must be non-empty and
 * at most REG_RANGES_MAX. Range data cannot be verified by the blob digest: the caller
 * verifies its own (chunk) digests. -EPROTO (answer does not cover a range), -EINVAL,
 * and the transport errors. `cancel` (may be NULL) set by another thread ends a transfer
 * that has gone silent and any retry wait at once: -ECANCELED.
 */
int reg_client_get_blob_ranges(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			       struct reg_range *ranges, size_t n, const atomic_bool *cancel);

/*
 * A blob as a forward-only stream: a download thread fills a bounded ring buffer (4 MiB)
 * while the caller reads, so nothing is written to disk. read() returns > 0 bytes, 0 at the
 * end after the digest (and size, unless UINT64_MAX) checked out, or -errno (-EBADMSG when
 * the bytes delivered do not match: the consumer must drop what it derived from them).
 * A stream is used by one thread; streams are independent. _close stops the download.
 */
struct reg_blob_stream;
int reg_client_open_blob(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			 uint64_t size, struct reg_blob_stream **ret);
ssize_t reg_blob_stream_read(struct reg_blob_stream *s, void *buf, size_t len);
/* Stops the download thread and frees the stream (NULL is a no-op). The transfer is
 * cancelled from its progress callback and retry backoffs are cut short, so this returns
 * within about a second even when the registry has gone silent. */
void reg_blob_stream_close(struct reg_blob_stream *s);

/*
 * Pull `ref` (resolved for the client's platform) into an OCI image layout at `dir`
 * (created; existing verified blobs are reused): oci-layout, index.json naming the manifest
 * with the reference's tag, and blobs/sha256/<hex> for the manifest, config and every layer,
 * downloaded `parallel` at a time, each verified and published by rename.
 * ret_digest (may be NULL) gets the manifest digest. Errors of the calls above.
 */
int reg_client_pull_blobs(struct reg_client *c, const struct reg_ref *ref, const char *dir,
			  char ret_digest[CM_DIGEST_STR_SIZE]);

/* ---- push ---- */

/* HEAD the blob: 0 and *ret_size (may be NULL) when present, -ENOENT when not. */
int reg_client_blob_exists(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			   uint64_t *ret_size);

/*
 * Upload `size` bytes read from `fd` (from offset 0, with pread) as blob `digest` of `repo`.
 * chunk == 0: one POST then one PUT with the whole body (monolithic); chunk > 0: PATCH
 * requests of `chunk` bytes each, then PUT. `mount_from` (a repository path on the same
 * registry, or NULL) tries a cross-repository mount first. The digest is checked locally
 * before anything is sent. Returns 0 uploaded, 1 already present or mounted (nothing
 * sent), -EBADMSG (fd content does not match digest), transport errors.
 */
int reg_client_push_blob_fd(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			    int fd, uint64_t size, uint64_t chunk, const char *mount_from);
/* Same from memory. */
int reg_client_push_blob(struct reg_client *c, const struct reg_ref *repo, const void *data,
			 size_t len, char ret_digest[CM_DIGEST_STR_SIZE]);

/*
 * PUT a manifest or index under `ref`'s tag (or its digest when it has no tag; a digest
 * reference must match the body). ret_digest (may be NULL) gets the body's digest, checked
 * against the registry's Docker-Content-Digest. -EPROTO (media type missing), -EBADMSG.
 */
int reg_client_put_manifest(struct reg_client *c, const struct reg_ref *ref, const char *media_type,
			    const void *body, size_t len, char ret_digest[CM_DIGEST_STR_SIZE]);

/*
 * Push the image of an OCI layout directory: the manifest of index.json whose
 * org.opencontainers.image.ref.name is `tag` (NULL: the only one), its config and layers
 * (blobs already present are skipped; `chunk` as in reg_client_push_blob_fd), then the
 * manifest under `dest`'s tag (or by digest). Nested indexes in the layout are pushed with
 * all their manifests. ret_digest (may be NULL) gets the pushed manifest's digest.
 * -ENOENT (no such tag), -EPROTO (layout malformed), -EBADMSG (a blob does not match).
 */
int reg_client_push_layout(struct reg_client *c, const char *layout_dir, const char *tag,
			   const struct reg_ref *dest, uint64_t chunk,
			   char ret_digest[CM_DIGEST_STR_SIZE]);

/* ---- referrers ---- */

/*
 * The referrers of manifest `subject_digest` in `repo`, filtered by `artifact_type` (NULL:
 * all): the referrers API (GET /v2/<name>/referrers/<digest>) when the registry has it, else
 * the OCI 1.1 tag schema ("sha256-<hex>" tag). *ret is an image index (caller frees); empty
 * when there are none. *ret_via_api (may be NULL) tells which was used.
 */
int reg_client_referrers(struct reg_client *c, const struct reg_ref *repo,
			 const char *subject_digest, const char *artifact_type,
			 struct reg_index **ret, bool *ret_via_api);

/*
 * Push a manifest that has a `subject` (an artifact) by digest, and make it findable: when
 * the registry does not answer with the OCI-Subject header (no referrers API), add it to the
 * subject's tag-schema index by read-modify-write, keeping every other referrer. Without
 * compare-and-swap in the API, concurrent writers converge: each re-reads until two reads,
 * 50-250 ms apart, hold its entry and every entry it wrote before (putting back what a
 * stale writer dropped), so a push takes a few hundred milliseconds; -EAGAIN if the tag
 * never settles (12 rounds). Entries are never removed. ret_digest (may be NULL) gets the
 * artifact manifest digest.
 * The 2-byte empty blob "{}" is uploaded first when the manifest refers to it.
 * -EINVAL (body has no subject), and the errors of reg_client_put_manifest.
 */
int reg_client_push_referrer(struct reg_client *c, const struct reg_ref *repo, const void *body,
			     size_t len, char ret_digest[CM_DIGEST_STR_SIZE]);
