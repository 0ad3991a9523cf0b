/*
 * Growable byte buffer with a hard cap. Every buffer filled from outside (network,
 * files from an image) must have a cap: appends past it fail with -EFBIG.
 * Not thread-safe; the caller owns the storage (_init/_fini).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct cm_buf {
	uint8_t *data;
	size_t len;
	size_t alloc;
	size_t cap; /* maximum len; 0 means SIZE_MAX */
};

void cm_buf_init(struct cm_buf *b, size_t cap);
void cm_buf_fini(struct cm_buf *b);
/* Make room for `extra` more bytes. -ENOMEM, -EFBIG over the cap. */
int cm_buf_reserve(struct cm_buf *b, size_t extra);
int cm_buf_append(struct cm_buf *b, const void *data, size_t len);
int cm_buf_append_str(struct cm_buf *b, const char *s);
int cm_buf_printf(struct cm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append zero bytes until len is a multiple of `align` (a power of two). */
int cm_buf_pad(struct cm_buf *b, size_t align);
/* Append little-endian integers. */
int cm_buf_put_le16(struct cm_buf *b, uint16_t v);
int cm_buf_put_le32(struct cm_buf *b, uint32_t v);
int cm_buf_put_le64(struct cm_buf *b, uint64_t v);
/* NUL-terminate (not counted in len) and hand the storage to the caller. */
char *cm_buf_steal_str(struct cm_buf *b);
void cm_buf_clear(struct cm_buf *b);

/* Little-endian loads and stores on unaligned memory. */
static inline uint16_t cm_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t cm_le32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
	       ((uint32_t)b[3] << 24);
}
static inline uint64_t cm_le64(const void *p)
{
	const uint8_t *b = p;
	return (uint64_t)cm_le32(b) | ((uint64_t)cm_le32(b + 4) << 32);
}
/* Big-endian: the order memcmp() sorts bytes in. */
static inline uint64_t cm_be64(const void *p)
{
	const uint8_t *b = p;
	return __builtin_bswap64(cm_le64(b));
}
static inline void cm_put_le16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}
static inline void cm_put_le32(void *p, uint32_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}
static inline void cm_put_le64(void *p, uint64_t v)
{
	cm_put_le32(p, (uint32_t)v);
	cm_put_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}
