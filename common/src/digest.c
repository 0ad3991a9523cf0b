/*
 * SHA-256 through OpenSSL's EVP interface, with libcrypto loaded by dlopen() on first use
 * instead of linked: loading and relocating libcrypto.so.3 costs ~0.8 ms at every start of
 * every program that links it, and most `isorun` invocations (run/exec/ps/rm of a cached
 * image, the sandbox verbs) never hash anything. The pattern of registry/src/curl_dl.c.
 * libcrypto is a hard dependency of the package: when it cannot be loaded the process stops
 * with a message naming it (cm_sha256* have no error path by design).
 */
#include "common/digest.h"

#include <dlfcn.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/log.h"

#define CM_CRYPTO_SONAME "libcrypto.so.3"

#define CM_CRYPTO_SYMBOLS(X)                                                                       \
	X(EVP_Digest)                                                                              \
	X(EVP_DigestFinal_ex)                                                                      \
	X(EVP_DigestInit_ex)                                                                       \
	X(EVP_DigestUpdate)                                                                        \
	X(EVP_MD_CTX_free)                                                                         \
	X(EVP_MD_CTX_new)                                                                          \
	X(EVP_sha256)

/* Written once inside pthread_once, read-only afterwards. */
#define CM_CRYPTO_DEFINE(name) static typeof(name) *sym_##name;
CM_CRYPTO_SYMBOLS(CM_CRYPTO_DEFINE)
#undef CM_CRYPTO_DEFINE

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static const EVP_MD *sha256_md;

static void crypto_load(void)
{
	void *dl = dlopen(CM_CRYPTO_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		log_error("%s cannot be loaded (SHA-256 needs it): %s", CM_CRYPTO_SONAME,
			  dlerror());
		abort();
	}
#define CM_CRYPTO_RESOLVE(name)                                                                    \
	if (!(sym_##name = (typeof(name) *)dlsym(dl, #name))) {                                    \
		log_error("%s cannot be used: it lacks %s", CM_CRYPTO_SONAME, #name);              \
		abort();                                                                           \
	}
	CM_CRYPTO_SYMBOLS(CM_CRYPTO_RESOLVE)
#undef CM_CRYPTO_RESOLVE
	sha256_md = sym_EVP_sha256();
}

static inline void crypto(void)
{
	pthread_once(&crypto_once, crypto_load);
}

struct cm_sha256 {
	EVP_MD_CTX *ctx;
};

int cm_sha256_new(struct cm_sha256 **ret)
{
	crypto();
	struct cm_sha256 *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = sym_EVP_MD_CTX_new();
	if (!s->ctx || sym_EVP_DigestInit_ex(s->ctx, sha256_md, NULL) != 1) {
		sym_EVP_MD_CTX_free(s->ctx);
		free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

void cm_sha256_free(struct cm_sha256 *s)
{
	if (!s)
		return;
	sym_EVP_MD_CTX_free(s->ctx);
	free(s);
}

void cm_sha256_reset(struct cm_sha256 *s)
{
	sym_EVP_DigestInit_ex(s->ctx, sha256_md, NULL);
}

void cm_sha256_update(struct cm_sha256 *s, const void *data, size_t len)
{
	sym_EVP_DigestUpdate(s->ctx, data, len);
}

void cm_sha256_final(struct cm_sha256 *s, uint8_t out[CM_SHA256_LEN])
{
	unsigned int n = 0;
	sym_EVP_DigestFinal_ex(s->ctx, out, &n);
	sym_EVP_DigestInit_ex(s->ctx, sha256_md, NULL);
}

void cm_sha256(const void *data, size_t len, uint8_t out[CM_SHA256_LEN])
{
	crypto();
	unsigned int n = 0;
	sym_EVP_Digest(data, len, out, &n, sha256_md, NULL);
}

void cm_hex_format(const uint8_t *d, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * len] = 0;
}

void cm_digest_format(const uint8_t d[CM_SHA256_LEN], char out[CM_DIGEST_STR_SIZE])
{
	memcpy(out, "sha256:", 7);
	cm_hex_format(d, CM_SHA256_LEN, out + 7);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int cm_hex_parse(const char *hex, size_t len, uint8_t *out)
{
	for (size_t i = 0; i < len; i++) {
		int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
		if (lo < 0)
			return -EPROTO;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int cm_digest_parse(const char *s, uint8_t out[CM_SHA256_LEN])
{
	if (!s)
		return -EPROTO;
	const char *colon = strchr(s, ':');
	if (!colon)
		return -EPROTO;
	if ((size_t)(colon - s) != 6 || strncmp(s, "sha256", 6) != 0)
		return colon == s ? -EPROTO : -ENOTSUP;
	const char *h = colon + 1;
	if (strlen(h) != 64)
		return -EPROTO;
	return cm_hex_parse(h, CM_SHA256_LEN, out);
}

bool cm_digest_valid(const char *s)
{
	uint8_t d[CM_SHA256_LEN];
	return cm_digest_parse(s, d) == 0;
}

void cm_xxh3_128(const void *data, size_t len, uint8_t out[16])
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
	memcpy(out, c.digest, 16);
}

uint64_t cm_xxh3(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}
