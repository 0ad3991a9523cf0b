/* Reading first-touch traces (indexer/trace.h, docs/trace.md). */
#include "indexer/trace.h"

#include "common/buf.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A trace names at most this many chunks (an index holds far fewer). */
#define TRACE_MAX_CHUNKS (1u << 26)

struct cursor {
	const char *p, *end, *name;
	unsigned line;
};

/* The next line without its '\n' into [*ls, *le); false at the end of the data. */
static bool next_line(struct cursor *c, const char **ls, const char **le)
{
	if (c->p >= c->end)
		return false;
	const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
	*ls = c->p;
	*le = nl ? nl : c->end;
	c->p = nl ? nl + 1 : c->end;
	c->line++;
	return true;
}

/* A decimal field: digits only, no sign, no leading '+', at most UINT64_MAX. */
static bool parse_u64(const char **p, const char *end, uint64_t *ret)
{
	const char *s = *p;
	uint64_t v = 0;
	if (s >= end || *s < '0' || *s > '9')
		return false;
	while (s < end && *s >= '0' && *s <= '9') {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
		s++;
	}
	*p = s;
	*ret = v;
	return true;
}

static bool expect(const char **p, const char *end, char ch)
{
	if (*p >= end || **p != ch)
		return false;
	(*p)++;
	return true;
}

static int bad(const struct cursor *c, const char *what)
{
	return cm_log_ret(-EPROTO, "trace %s, line %u: %s", c->name, c->line, what);
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

int idx_trace_parse(const char *name, const void *data, size_t len, struct idx_trace *ret)
{
	*ret = (struct idx_trace){0};
	struct cursor c = {.p = data, .end = (const char *)data + len, .name = name};
	const char *ls, *le;
	if (!next_line(&c, &ls, &le) || (size_t)(le - ls) < 13 || memcmp(ls, "isorun-trace ", 13))
		return bad(&c, "not an isorun trace (expected \"isorun-trace 1\")");
	if (le - ls != 14 || ls[13] != '1')
		return bad(&c, "unsupported trace version (this isorun reads version 1)");
	if (!next_line(&c, &ls, &le) || le - ls != 6 + 71 || memcmp(ls, "index ", 6))
		return bad(&c, "expected \"index sha256:<64 hex>\"");
	char dig[72];
	memcpy(dig, ls + 6, 71);
	dig[71] = 0;
	uint8_t d[32];
	if (cm_digest_parse(dig, d) < 0)
		return bad(&c, "malformed index digest");
	uint64_t nchunks;
	const char *p;
	if (!next_line(&c, &ls, &le) || le - ls < 8 || memcmp(ls, "chunks ", 7) ||
	    !(p = ls + 7, parse_u64(&p, le, &nchunks)) || p != le || nchunks > TRACE_MAX_CHUNKS)
		return bad(&c, "expected \"chunks <N>\"");
	memcpy(ret->index, dig, sizeof(dig));
	uint32_t cap = 0;
	while (next_line(&c, &ls, &le)) {
		uint64_t seq, t_us, chunk, ino, usize;
		p = ls;
		if (!parse_u64(&p, le, &seq) || !expect(&p, le, ' ') || !parse_u64(&p, le, &t_us) ||
		    !expect(&p, le, ' ') || !parse_u64(&p, le, &chunk) || !expect(&p, le, ' ') ||
		    !parse_u64(&p, le, &ino) || !expect(&p, le, ' ') || le - p < 65 ||
		    cm_hex_parse(p, 32, d) < 0 || (p += 64, !expect(&p, le, ' ')) ||
		    !parse_u64(&p, le, &usize) || p != le) {
			idx_trace_fini(ret);
			return bad(&c, "malformed record (expected \"seq t_us chunk ino sha256 usize\")");
		}
		if (seq != ret->n || chunk >= nchunks || ret->n >= nchunks || usize > UINT32_MAX) {
			const char *what = seq != ret->n ? "sequence number out of order"
				       : usize > UINT32_MAX ? "chunk size out of range"
							     : "more chunks than the header's count";
			idx_trace_fini(ret);
			return bad(&c, what);
		}
		if (ret->n == cap) {
			uint32_t ncap = cap ? cap * 2 : 256;
			uint8_t(*ids)[32] = realloc(ret->ids, (size_t)ncap * 32);
			if (!ids) {
				idx_trace_fini(ret);
				return -ENOMEM;
			}
			ret->ids = ids;
			cap = ncap;
		}
		memcpy(ret->ids[ret->n++], d, 32);
	}
	/* A chunk appears at most once (docs/trace.md): check on a sorted copy. */
	if (ret->n > 1) {
		uint8_t(*s)[32] = malloc((size_t)ret->n * 32);
		if (!s) {
			idx_trace_fini(ret);
			return -ENOMEM;
		}
		memcpy(s, ret->ids, (size_t)ret->n * 32);
		qsort(s, ret->n, 32, cmp_id);
		bool dup = false;
		for (uint32_t i = 1; i < ret->n && !dup; i++)
			dup = memcmp(s[i - 1], s[i], 32) == 0;
		free(s);
		if (dup) {
			idx_trace_fini(ret);
			return cm_log_ret(-EPROTO, "trace %s: a chunk is listed twice", name);
		}
	}
	return 0;
}

int idx_trace_load(const char *path, struct idx_trace *ret)
{
	struct cm_buf b;
	cm_buf_init(&b, 1u << 30);
	int r = cm_read_file(AT_FDCWD, path, &b);
	if (r < 0) {
		cm_buf_fini(&b);
		*ret = (struct idx_trace){0};
		return cm_log_ret(r, "trace %s: %s", path, strerror(-r));
	}
	r = idx_trace_parse(path, b.data, b.len, ret);
	cm_buf_fini(&b);
	return r;
}

void idx_trace_fini(struct idx_trace *t)
{
	free(t->ids);
	*t = (struct idx_trace){0};
}
