#include "common/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cm_buf_init(struct cm_buf *b, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->cap = cap ? cap : SIZE_MAX;
}

void cm_buf_fini(struct cm_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->alloc = 0;
}

void cm_buf_clear(struct cm_buf *b)
{
	b->len = 0;
}

int cm_buf_reserve(struct cm_buf *b, size_t extra)
{
	if (b->cap == 0)
		b->cap = SIZE_MAX;
	if (extra > b->cap || b->len > b->cap - extra)
		return -EFBIG;
	size_t need = b->len + extra + 1; /* room for a terminating NUL */
	if (need <= b->alloc)
		return 0;
	size_t n = b->alloc ? b->alloc : 256;
	while (n < need)
		n = n > SIZE_MAX / 2 ? need : n * 2;
	uint8_t *p = realloc(b->data, n);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->alloc = n;
	return 0;
}

int cm_buf_append(struct cm_buf *b, const void *data, size_t len)
{
	int r = cm_buf_reserve(b, len);
	if (r < 0)
		return r;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = 0;
	return 0;
}

int cm_buf_append_str(struct cm_buf *b, const char *s)
{
	return cm_buf_append(b, s, strlen(s));
}

int cm_buf_printf(struct cm_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	int r = cm_buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int cm_buf_pad(struct cm_buf *b, size_t align)
{
	static const uint8_t zero[64];
	while (b->len & (align - 1)) {
		size_t n = align - (b->len & (align - 1));
		int r = cm_buf_append(b, zero, n > sizeof(zero) ? sizeof(zero) : n);
		if (r < 0)
			return r;
	}
	return 0;
}

int cm_buf_put_le16(struct cm_buf *b, uint16_t v)
{
	uint8_t t[2];
	cm_put_le16(t, v);
	return cm_buf_append(b, t, sizeof(t));
}

int cm_buf_put_le32(struct cm_buf *b, uint32_t v)
{
	uint8_t t[4];
	cm_put_le32(t, v);
	return cm_buf_append(b, t, sizeof(t));
}

int cm_buf_put_le64(struct cm_buf *b, uint64_t v)
{
	uint8_t t[8];
	cm_put_le64(t, v);
	return cm_buf_append(b, t, sizeof(t));
}

char *cm_buf_steal_str(struct cm_buf *b)
{
	if (cm_buf_reserve(b, 0) < 0)
		return NULL;
	b->data[b->len] = 0;
	char *s = (char *)b->data;
	b->data = NULL;
	b->len = b->alloc = 0;
	return s;
}
