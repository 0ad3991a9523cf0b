#include "registry/wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "registry/client.h"

static int parse_u64(const char **p, const char *end, uint64_t *ret)
{
	uint64_t v = 0;
	const char *s = *p;
	if (s == end || *s < '0' || *s > '9')
		return -EPROTO;
	while (s < end && *s >= '0' && *s <= '9') {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EPROTO;
		v = v * 10 + d;
		s++;
	}
	*p = s;
	*ret = v;
	return 0;
}

int reg_content_range_parse(const char *s, size_t len, uint64_t *ret_first, uint64_t *ret_last,
			    uint64_t *ret_total)
{
	const char *p = s, *end = s + len;
	uint64_t a, b, t = UINT64_MAX;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if ((size_t)(end - p) < 6 || strncasecmp(p, "bytes", 5) != 0 ||
	    (p[5] != ' ' && p[5] != '='))
		return -EPROTO;
	p += 6;
	while (p < end && *p == ' ')
		p++;
	if (parse_u64(&p, end, &a) < 0 || p == end || *p++ != '-' || parse_u64(&p, end, &b) < 0 ||
	    p == end || *p++ != '/')
		return -EPROTO;
	if (p < end && *p == '*')
		p++;
	else if (parse_u64(&p, end, &t) < 0)
		return -EPROTO;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	if (p != end || b < a || (t != UINT64_MAX && b >= t))
		return -EPROTO;
	*ret_first = a;
	*ret_last = b;
	*ret_total = t;
	return 0;
}

int reg_multipart_boundary(const char *ct, char out[71])
{
	if (!ct || strncasecmp(ct, "multipart/byteranges", 20) != 0)
		return -EPROTO;
	const char *p = strcasestr(ct + 20, "boundary=");
	if (!p)
		return -EPROTO;
	p += 9;
	size_t n = 0;
	if (*p == '"') {
		p++;
		while (p[n] && p[n] != '"')
			n++;
		if (!p[n])
			return -EPROTO;
	} else {
		while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t' && p[n] != '\r' &&
		       p[n] != '\n')
			n++;
	}
	if (n == 0 || n > 70)
		return -EPROTO;
	memcpy(out, p, n);
	out[n] = 0;
	return 0;
}

void reg_ranges_copy(struct reg_range *ranges, size_t n, uint64_t *filled, uint64_t pos,
		     const uint8_t *data, size_t len)
{
	uint64_t end = pos + len;
	for (size_t i = 0; i < n; i++) {
		uint64_t rs = ranges[i].off, re = ranges[i].off + ranges[i].len;
		uint64_t s = pos > rs ? pos : rs, e = end < re ? end : re;
		if (s >= e)
			continue;
		memcpy((uint8_t *)ranges[i].buf + (s - rs), data + (s - pos), (size_t)(e - s));
		filled[i] += e - s;
	}
}

static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *needle, size_t nl)
{
	if ((size_t)(end - p) < nl)
		return NULL;
	return memmem(p, (size_t)(end - p), needle, nl);
}

int reg_multipart_parse(const char *boundary, const uint8_t *body, size_t len,
			struct reg_range *ranges, size_t n, uint64_t *filled)
{
	char delim[80];
	int dl = snprintf(delim, sizeof(delim), "--%s", boundary);
	if (dl < 3 || (size_t)dl >= sizeof(delim))
		return -EPROTO;
	const uint8_t *p = body, *end = body + len;
	/* preamble up to the first delimiter */
	p = find(p, end, delim, (size_t)dl);
	if (!p)
		return -EPROTO;
	for (int parts = 0;; parts++) {
		p += dl;
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			return parts ? 0 : -EPROTO; /* close delimiter */
		/* transport padding, then CRLF */
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
			return -EPROTO;
		p += 2;
		const uint8_t *hend = find(p, end, "\r\n\r\n", 4);
		bool empty_headers = end - p >= 2 && p[0] == '\r' && p[1] == '\n';
		if (!hend && !empty_headers)
			return -EPROTO;
		if (empty_headers)
			return -EPROTO; /* a byteranges part must carry Content-Range */
		uint64_t first = 0, last = 0, total;
		bool have_cr = false;
		for (const uint8_t *line = p; line < hend + 2;) {
			const uint8_t *eol = find(line, hend + 2, "\r\n", 2);
			if (!eol)
				break;
			size_t ll = (size_t)(eol - line);
			if (ll > 14 && !strncasecmp((const char *)line, "content-range:", 14)) {
				if (reg_content_range_parse((const char *)line + 14, ll - 14,
							    &first, &last, &total) < 0)
					return -EPROTO;
				have_cr = true;
			}
			line = eol + 2;
		}
		if (!have_cr)
			return -EPROTO;
		p = hend + 4;
		uint64_t plen = last - first + 1;
		if ((uint64_t)(end - p) < plen)
			return -EPROTO;
		reg_ranges_copy(ranges, n, filled, first, p, (size_t)plen);
		p += plen;
		if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
			return -EPROTO;
		p += 2;
		if ((size_t)(end - p) < (size_t)dl || memcmp(p, delim, (size_t)dl) != 0)
			return -EPROTO;
		if (parts > 4096)
			return -EPROTO;
	}
}

int reg_range_header(const struct reg_range *ranges, size_t n, char *out, size_t outlen)
{
	size_t used = 0;
	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (ranges[i].len == 0 || ranges[i].off + ranges[i].len < ranges[i].off)
			return -EINVAL;
		int m = snprintf(out + used, outlen - used, "%s%llu-%llu",
				 i ? "," : "bytes=", (unsigned long long)ranges[i].off,
				 (unsigned long long)(ranges[i].off + ranges[i].len - 1));
		if (m < 0 || (size_t)m >= outlen - used)
			return -ENOBUFS;
		used += (size_t)m;
	}
	return 0;
}
