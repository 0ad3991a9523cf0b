/*
 * Digests. SHA-256 through OpenSSL's EVP interface; XXH3 for in-memory hashing.
 * A "digest string" is the OCI form "sha256:<64 lowercase hex>" (71 chars + NUL).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CM_SHA256_LEN	     32
#define CM_DIGEST_STR_LEN    71 /* "sha256:" + 64 hex */
#define CM_DIGEST_STR_SIZE   72

struct cm_sha256; /* opaque streaming context */

/* -ENOMEM. */
int cm_sha256_new(struct cm_sha256 **ret);
void cm_sha256_free(struct cm_sha256 *s);
void cm_sha256_reset(struct cm_sha256 *s);
void cm_sha256_update(struct cm_sha256 *s, const void *data, size_t len);
/* Finishes and resets the context for reuse. */
void cm_sha256_final(struct cm_sha256 *s, uint8_t out[CM_SHA256_LEN]);

/* One-shot SHA-256. Thread-safe. */
void cm_sha256(const void *data, size_t len, uint8_t out[CM_SHA256_LEN]);

/* 32 bytes -> "sha256:hex". `out` must hold CM_DIGEST_STR_SIZE bytes. */
void cm_digest_format(const uint8_t d[CM_SHA256_LEN], char out[CM_DIGEST_STR_SIZE]);
/* 32 bytes -> 64 hex chars + NUL. */
void cm_hex_format(const uint8_t *d, size_t len, char *out);
/* 2*len lowercase hex characters (no terminator needed) -> len bytes. -EPROTO otherwise. */
int cm_hex_parse(const char *hex, size_t len, uint8_t *out);
/*
 * Parse "sha256:<64 hex>" (lowercase only, as the OCI spec requires for sha256).
 * -EPROTO if malformed, -ENOTSUP for another algorithm.
 */
int cm_digest_parse(const char *s, uint8_t out[CM_SHA256_LEN]);
/* True for a well-formed "sha256:<64 lowercase hex>". */
bool cm_digest_valid(const char *s);

uint64_t cm_xxh3(const void *data, size_t len);
/* XXH3 128-bit, big-endian bytes (a stable name for local things; not cryptographic). */
void cm_xxh3_128(const void *data, size_t len, uint8_t out[16]);

static inline void cm_sha256_freep(struct cm_sha256 **p)
{
	cm_sha256_free(*p);
}
