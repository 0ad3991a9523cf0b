/*
 * Fuzz target: the tree stream's decoder (agent/src/tree.c), which on the host takes a
 * directory's contents from a sandbox. Input: one byte choosing how the rest is split,
 * then the stream. The rest is decoded twice, in pieces and at once; both must make the
 * same calls and end the same way. The sink checks what a writer relies on: every path
 * passes agent_tree_path_ok, a record's type and size agree, its data never exceeds its
 * size, end comes exactly once per entry and only after all of its data, and re-encoding
 * the decoded records gives back the bytes they came from.
 */
#include "agent/tree.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct check {
	bool open;
	uint64_t size, got;
	uint64_t entries, ends;
	uint64_t hash;	      /* FNV-1a over every call and data byte, not over piece boundaries */
	struct agent_wbuf re; /* the decoded records, encoded again */
};

static void mix(struct check *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		c->hash = (c->hash ^ b[i]) * 0x100000001b3ull;
}

static int on_entry(void *ud, const struct agent_tree_entry *e)
{
	struct check *c = ud;
	if (c->open || !agent_tree_path_ok(e->path) || strlen(e->path) >= AGENT_MAX_PATH)
		abort();
	if (e->mode & ~(uint32_t)(S_IFMT | 07777))
		abort();
	switch (e->mode & S_IFMT) {
	case S_IFREG:
		break;
	case S_IFLNK:
		if (e->size == 0 || e->size >= AGENT_MAX_PATH)
			abort();
		break;
	case S_IFDIR:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		if (e->size != 0)
			abort();
		break;
	default:
		abort();
	}
	if (agent_tree_hdr_encode(&c->re, e) < 0)
		abort();
	c->open = true;
	c->size = e->size;
	c->got = 0;
	c->entries++;
	mix(c, "E", 1);
	uint64_t f[] = {e->mode, e->uid, e->gid, e->size, e->mtime_ns};
	mix(c, f, sizeof(f));
	mix(c, e->path, strlen(e->path) + 1);
	return 0;
}

static int on_data(void *ud, const uint8_t *p, size_t n)
{
	struct check *c = ud;
	if (!c->open || n > c->size - c->got)
		abort();
	c->got += n;
	if (agent_wbuf_append(&c->re, p, n) < 0)
		abort();
	mix(c, p, n);
	return 0;
}

static int on_end(void *ud)
{
	struct check *c = ud;
	if (!c->open || c->got != c->size)
		abort();
	c->open = false;
	c->ends++;
	mix(c, "X", 1);
	return 0;
}

static const struct agent_tree_sink sink = {.entry = on_entry, .data = on_data, .end = on_end};

/* Decode `p` in pieces of a and b bytes in turn (0: at once); *ret_fin: finish's result. */
static int decode(const uint8_t *p, size_t n, size_t a, size_t b, struct check *c, int *ret_fin)
{
	struct agent_tree_dec d;
	agent_tree_dec_init(&d);
	memset(c, 0, sizeof(*c));
	c->hash = 0xcbf29ce484222325ull;
	/* never more than the input: it is a prefix of it */
	agent_wbuf_init(&c->re, n + AGENT_TREE_HDR_MAX);
	int r = 0;
	for (size_t i = 0; n && r == 0; i++) {
		size_t k = a == 0 ? n : i % 2 ? b : a;
		if (k > n)
			k = n;
		r = agent_tree_dec_feed(&d, p, k, &sink, c);
		p += k;
		n -= k;
	}
	if (r > 0 || d.records != c->entries)
		abort();
	*ret_fin = agent_tree_dec_finish(&d);
	if (r == 0 && *ret_fin == 0 && (c->open || c->ends != c->entries))
		abort();
	if (r == 0 && *ret_fin != 0 && *ret_fin != -EPROTO)
		abort();
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t a = (size_t)(data[0] & 15) + 1, b = (size_t)(data[0] >> 4) * 61 + 1;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	struct check c1, c2;
	int fin1, fin2;
	int r1 = decode(p, n, a, b, &c1, &fin1);
	int r2 = decode(p, n, 0, 0, &c2, &fin2);
	if (r1 != r2 || fin1 != fin2 || c1.hash != c2.hash || c1.entries != c2.entries ||
	    c1.ends != c2.ends)
		abort();
	if (r1 != 0 && r1 != -EPROTO && r1 != -EFBIG)
		abort();
	/* what was decoded is what was sent: all of it after a clean end */
	if (c1.re.len > n || (c1.re.len && memcmp(c1.re.data, p, c1.re.len)))
		abort();
	if (r1 == 0 && fin1 == 0 && c1.re.len != n)
		abort();
	agent_wbuf_fini(&c1.re);
	agent_wbuf_fini(&c2.re);
	return 0;
}
