/*
 * Encoder and decoder of the agent protocol (see protocol.h and docs/protocol.md).
 * Plain C with libc only: compiled into the static musl agent and into the runner.
 */
#include "agent/protocol.h"

#include <errno.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

static uint32_t le32(const uint8_t *b)
{
	return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
	       ((uint32_t)b[3] << 24);
}

static uint16_t le16(const uint8_t *b)
{
	return (uint16_t)(b[0] | (b[1] << 8));
}

static void put_le32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}

static const struct {
	uint16_t type;
	const char *name;
} msg_names[] = {
    {AGENT_MSG_HELLO, "HELLO"},
    {AGENT_MSG_HELLO_OK, "HELLO_OK"},
    {AGENT_MSG_PING, "PING"},
    {AGENT_MSG_PONG, "PONG"},
    {AGENT_MSG_SHUTDOWN, "SHUTDOWN"},
    {AGENT_MSG_SHUTDOWN_OK, "SHUTDOWN_OK"},
    {AGENT_MSG_ERROR, "ERROR"},
    {AGENT_MSG_EXEC, "EXEC"},
    {AGENT_MSG_EXEC_STARTED, "EXEC_STARTED"},
    {AGENT_MSG_EXEC_FAILED, "EXEC_FAILED"},
    {AGENT_MSG_STDIN, "STDIN"},
    {AGENT_MSG_STDOUT, "STDOUT"},
    {AGENT_MSG_STDERR, "STDERR"},
    {AGENT_MSG_SIGNAL, "SIGNAL"},
    {AGENT_MSG_RESIZE, "RESIZE"},
    {AGENT_MSG_EXIT, "EXIT"},
    {AGENT_MSG_FILE_PUT, "FILE_PUT"},
    {AGENT_MSG_FILE_GET, "FILE_GET"},
    {AGENT_MSG_FILE_INFO, "FILE_INFO"},
    {AGENT_MSG_FILE_DATA, "FILE_DATA"},
    {AGENT_MSG_FILE_DONE, "FILE_DONE"},
    {AGENT_MSG_FILE_STAT, "FILE_STAT"},
};

bool agent_msg_type_known(uint16_t type)
{
	for (size_t i = 0; i < sizeof(msg_names) / sizeof(msg_names[0]); i++)
		if (msg_names[i].type == type)
			return true;
	return false;
}

const char *agent_msg_type_name(uint16_t type)
{
	for (size_t i = 0; i < sizeof(msg_names) / sizeof(msg_names[0]); i++)
		if (msg_names[i].type == type)
			return msg_names[i].name;
	return "?";
}

int agent_frame_parse(const uint8_t *buf, size_t len, struct agent_frame *ret)
{
	if (len < AGENT_FRAME_HDR)
		return 0;
	uint32_t plen = le32(buf);
	uint16_t type = le16(buf + 4);
	uint16_t flags = le16(buf + 6);
	if (plen > AGENT_FRAME_MAX_PAYLOAD)
		return -EFBIG;
	if (flags != 0 || !agent_msg_type_known(type))
		return -EPROTO;
	if (len - AGENT_FRAME_HDR < plen)
		return 0;
	ret->len = plen;
	ret->type = type;
	ret->flags = flags;
	ret->stream = le32(buf + 8);
	ret->payload = buf + AGENT_FRAME_HDR;
	return (int)(AGENT_FRAME_HDR + plen);
}

void agent_wbuf_init(struct agent_wbuf *b, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->cap = cap;
}

void agent_wbuf_fini(struct agent_wbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void agent_wbuf_consume(struct agent_wbuf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

int agent_wbuf_append(struct agent_wbuf *b, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	if (len > b->cap || b->len > b->cap - len)
		return -EFBIG;
	if (b->len + len > b->alloc) {
		size_t n = b->alloc ? b->alloc : 4096;
		while (n < b->len + len)
			n *= 2;
		if (n > b->cap)
			n = b->cap;
		uint8_t *d = realloc(b->data, n);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->alloc = n;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int agent_frame_begin(struct agent_wbuf *b, uint16_t type, uint32_t stream, size_t *ret_off)
{
	uint8_t h[AGENT_FRAME_HDR] = {0};
	h[4] = (uint8_t)type;
	h[5] = (uint8_t)(type >> 8);
	put_le32(h + 8, stream);
	*ret_off = b->len;
	return agent_wbuf_append(b, h, sizeof(h));
}

int agent_put_u16(struct agent_wbuf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	return agent_wbuf_append(b, x, 2);
}

int agent_put_u32(struct agent_wbuf *b, uint32_t v)
{
	uint8_t x[4];
	put_le32(x, v);
	return agent_wbuf_append(b, x, 4);
}

int agent_put_u64(struct agent_wbuf *b, uint64_t v)
{
	int r = agent_put_u32(b, (uint32_t)v);
	return r < 0 ? r : agent_put_u32(b, (uint32_t)(v >> 32));
}

int agent_put_str(struct agent_wbuf *b, const char *s)
{
	size_t n = strlen(s) + 1;
	if (n > AGENT_FRAME_MAX_PAYLOAD)
		return -EFBIG;
	int r = agent_put_u32(b, (uint32_t)n);
	return r < 0 ? r : agent_wbuf_append(b, s, n);
}

int agent_put_bytes(struct agent_wbuf *b, const void *p, size_t n)
{
	return agent_wbuf_append(b, p, n);
}

int agent_frame_end(struct agent_wbuf *b, size_t off)
{
	size_t plen = b->len - off - AGENT_FRAME_HDR;
	if (plen > AGENT_FRAME_MAX_PAYLOAD) {
		agent_frame_abort(b, off);
		return -EFBIG;
	}
	put_le32(b->data + off, (uint32_t)plen);
	return 0;
}

void agent_frame_abort(struct agent_wbuf *b, size_t off)
{
	if (off <= b->len)
		b->len = off;
}

int agent_frame_put(struct agent_wbuf *b, uint16_t type, uint32_t stream, const void *payload,
		    size_t len)
{
	size_t off;
	int r;
	if (len > AGENT_FRAME_MAX_PAYLOAD)
		return -EFBIG;
	r = agent_frame_begin(b, type, stream, &off);
	if (r < 0)
		return r;
	r = agent_put_bytes(b, payload, len);
	if (r < 0) {
		agent_frame_abort(b, off);
		return r;
	}
	return agent_frame_end(b, off);
}

void agent_rd_init(struct agent_rd *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
}

static int need(const struct agent_rd *r, size_t n)
{
	return r->len - r->off >= n ? 0 : -EPROTO;
}

int agent_get_u16(struct agent_rd *r, uint16_t *ret)
{
	if (need(r, 2) < 0)
		return -EPROTO;
	*ret = le16(r->p + r->off);
	r->off += 2;
	return 0;
}

int agent_get_u32(struct agent_rd *r, uint32_t *ret)
{
	if (need(r, 4) < 0)
		return -EPROTO;
	*ret = le32(r->p + r->off);
	r->off += 4;
	return 0;
}

int agent_get_u64(struct agent_rd *r, uint64_t *ret)
{
	uint32_t lo, hi;
	if (agent_get_u32(r, &lo) < 0 || agent_get_u32(r, &hi) < 0)
		return -EPROTO;
	*ret = (uint64_t)lo | ((uint64_t)hi << 32);
	return 0;
}

int agent_get_str(struct agent_rd *r, size_t cap, const char **ret)
{
	uint32_t n;
	if (agent_get_u32(r, &n) < 0)
		return -EPROTO;
	if (n == 0)
		return -EPROTO;
	if (n > cap)
		return -EFBIG;
	if (need(r, n) < 0)
		return -EPROTO;
	const uint8_t *s = r->p + r->off;
	/* exactly one NUL, at the end */
	if (s[n - 1] != 0 || memchr(s, 0, n - 1))
		return -EPROTO;
	*ret = (const char *)s;
	r->off += n;
	return 0;
}

int agent_rd_done(const struct agent_rd *r)
{
	return r->off == r->len ? 0 : -EPROTO;
}

void agent_exec_req_fini(struct agent_exec_req *r)
{
	free(r->argv);
	free(r->envp);
	r->argv = r->envp = NULL;
}

static int get_strv(struct agent_rd *r, uint32_t n, const char ***ret)
{
	/* every entry needs at least 5 payload bytes: reject counts the payload cannot hold
	 * before allocating */
	if ((r->len - r->off) / 5 < n)
		return -EPROTO;
	const char **v = calloc((size_t)n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		int e = agent_get_str(r, AGENT_FRAME_MAX_PAYLOAD, &v[i]);
		if (e < 0) {
			free(v);
			return e;
		}
	}
	*ret = v;
	return 0;
}

int agent_exec_req_decode(const uint8_t *p, size_t len, struct agent_exec_req *ret)
{
	struct agent_rd r;
	struct agent_exec_req q = {0};
	int e;

	agent_rd_init(&r, p, len);
	if ((e = agent_get_u32(&r, &q.flags)) < 0 || (e = agent_get_u32(&r, &q.timeout_ms)) < 0 ||
	    (e = agent_get_u16(&r, &q.rows)) < 0 || (e = agent_get_u16(&r, &q.cols)) < 0 ||
	    (e = agent_get_str(&r, AGENT_MAX_USER, &q.user)) < 0 ||
	    (e = agent_get_str(&r, AGENT_MAX_PATH, &q.cwd)) < 0 ||
	    (e = agent_get_u32(&r, &q.argc)) < 0)
		return e;
	if (q.flags & ~(AGENT_EXEC_PTY | AGENT_EXEC_STDIN))
		return -EPROTO;
	if (q.argc == 0)
		return -EPROTO;
	if (q.argc > AGENT_MAX_ARGS)
		return -EFBIG;
	if ((e = get_strv(&r, q.argc, &q.argv)) < 0)
		return e;
	if ((e = agent_get_u32(&r, &q.envc)) < 0)
		goto fail;
	if (q.envc > AGENT_MAX_ARGS) {
		e = -EFBIG;
		goto fail;
	}
	if ((e = get_strv(&r, q.envc, &q.envp)) < 0)
		goto fail;
	if ((e = agent_rd_done(&r)) < 0)
		goto fail;
	*ret = q;
	return 0;
fail:
	agent_exec_req_fini(&q);
	return e;
}

int agent_exec_req_encode(struct agent_wbuf *b, uint32_t stream, const struct agent_exec_req *q)
{
	size_t off;
	int e;
	if (q->argc == 0 || q->argc > AGENT_MAX_ARGS || q->envc > AGENT_MAX_ARGS)
		return -EINVAL;
	if (strlen(q->user) + 1 > AGENT_MAX_USER || strlen(q->cwd) + 1 > AGENT_MAX_PATH)
		return -EFBIG;
	if ((e = agent_frame_begin(b, AGENT_MSG_EXEC, stream, &off)) < 0)
		return e;
	if ((e = agent_put_u32(b, q->flags)) < 0 || (e = agent_put_u32(b, q->timeout_ms)) < 0 ||
	    (e = agent_put_u16(b, q->rows)) < 0 || (e = agent_put_u16(b, q->cols)) < 0 ||
	    (e = agent_put_str(b, q->user)) < 0 || (e = agent_put_str(b, q->cwd)) < 0 ||
	    (e = agent_put_u32(b, q->argc)) < 0)
		goto fail;
	for (uint32_t i = 0; i < q->argc; i++)
		if ((e = agent_put_str(b, q->argv[i])) < 0)
			goto fail;
	if ((e = agent_put_u32(b, q->envc)) < 0)
		goto fail;
	for (uint32_t i = 0; i < q->envc; i++)
		if ((e = agent_put_str(b, q->envp[i])) < 0)
			goto fail;
	return agent_frame_end(b, off);
fail:
	agent_frame_abort(b, off);
	return e;
}

int agent_exit_decode(const uint8_t *p, size_t len, struct agent_exit *ret)
{
	struct agent_rd r;
	struct agent_exit x;
	agent_rd_init(&r, p, len);
	if (agent_get_u32(&r, &x.kind) < 0 || agent_get_u32(&r, &x.code) < 0 ||
	    agent_get_u32(&r, &x.flags) < 0 || agent_rd_done(&r) < 0)
		return -EPROTO;
	if (x.kind > 1 || (x.kind == 0 && x.code > 255) || (x.kind == 1 && x.code > 64))
		return -EPROTO;
	*ret = x;
	return 0;
}

int agent_exit_encode(struct agent_wbuf *b, uint32_t stream, const struct agent_exit *x)
{
	uint8_t p[12];
	put_le32(p, x->kind);
	put_le32(p + 4, x->code);
	put_le32(p + 8, x->flags);
	return agent_frame_put(b, AGENT_MSG_EXIT, stream, p, sizeof(p));
}

int agent_error_decode(uint16_t type, const uint8_t *p, size_t len, struct agent_error *ret)
{
	struct agent_rd r;
	struct agent_error x = {0};
	uint32_t err;
	agent_rd_init(&r, p, len);
	if (type == AGENT_MSG_EXEC_FAILED && agent_get_u32(&r, &x.stage) < 0)
		return -EPROTO;
	if (agent_get_u32(&r, &err) < 0)
		return -EPROTO;
	int e = agent_get_str(&r, AGENT_MAX_MSG, &x.msg);
	if (e < 0)
		return e;
	if (agent_rd_done(&r) < 0 || err == 0 || err > 4095)
		return -EPROTO;
	x.err = (int32_t)err;
	*ret = x;
	return 0;
}

int agent_error_encode(struct agent_wbuf *b, uint16_t type, uint32_t stream,
		       const struct agent_error *x)
{
	char msg[AGENT_MAX_MSG];
	size_t off;
	int e;
	/* truncate rather than fail: an error report must always go out */
	strncpy(msg, x->msg ? x->msg : "", sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = 0;
	if ((e = agent_frame_begin(b, type, stream, &off)) < 0)
		return e;
	if ((type == AGENT_MSG_EXEC_FAILED && (e = agent_put_u32(b, x->stage)) < 0) ||
	    (e = agent_put_u32(b, (uint32_t)(x->err > 0 ? x->err : EIO))) < 0 ||
	    (e = agent_put_str(b, msg)) < 0) {
		agent_frame_abort(b, off);
		return e;
	}
	return agent_frame_end(b, off);
}

int agent_file_hdr_decode(uint16_t type, const uint8_t *p, size_t len, struct agent_file_hdr *ret)
{
	struct agent_rd r;
	struct agent_file_hdr h = {0};
	int e;
	agent_rd_init(&r, p, len);
	bool path_only = type == AGENT_MSG_FILE_GET || type == AGENT_MSG_FILE_STAT;
	if (!path_only) {
		if (agent_get_u32(&r, &h.mode) < 0 || agent_get_u32(&r, &h.uid) < 0 ||
		    agent_get_u32(&r, &h.gid) < 0)
			return -EPROTO;
		/* version 2: FILE_PUT of a directory, FILE_INFO of anything (STAT) */
		uint32_t t = h.mode & S_IFMT;
		if ((h.mode & ~(S_IFMT | 07777u)) ||
		    (type == AGENT_MSG_FILE_PUT && t != 0 && t != S_IFDIR))
			return -EPROTO;
	}
	if (type == AGENT_MSG_FILE_INFO) {
		if (agent_get_u64(&r, &h.size) < 0)
			return -EPROTO;
	} else {
		if ((e = agent_get_str(&r, AGENT_MAX_PATH, &h.path)) < 0)
			return e;
		if (h.path[0] != '/')
			return -EPROTO;
	}
	if (agent_rd_done(&r) < 0)
		return -EPROTO;
	*ret = h;
	return 0;
}

int agent_file_hdr_encode(struct agent_wbuf *b, uint16_t type, uint32_t stream,
			  const struct agent_file_hdr *h)
{
	size_t off;
	int e;
	if (type != AGENT_MSG_FILE_INFO && strlen(h->path) + 1 > AGENT_MAX_PATH)
		return -EFBIG;
	if ((e = agent_frame_begin(b, type, stream, &off)) < 0)
		return e;
	if (type != AGENT_MSG_FILE_GET && type != AGENT_MSG_FILE_STAT &&
	    ((e = agent_put_u32(b, h->mode & (S_IFMT | 07777u))) < 0 ||
	     (e = agent_put_u32(b, h->uid)) < 0 || (e = agent_put_u32(b, h->gid)) < 0))
		goto fail;
	if (type == AGENT_MSG_FILE_INFO)
		e = agent_put_u64(b, h->size);
	else
		e = agent_put_str(b, h->path);
	if (e < 0)
		goto fail;
	return agent_frame_end(b, off);
fail:
	agent_frame_abort(b, off);
	return e;
}

int agent_u32_pair_decode(const uint8_t *p, size_t len, uint32_t *a, uint32_t *b)
{
	struct agent_rd r;
	agent_rd_init(&r, p, len);
	if (agent_get_u32(&r, a) < 0 || agent_get_u32(&r, b) < 0 || agent_rd_done(&r) < 0)
		return -EPROTO;
	return 0;
}

int agent_resize_decode(const uint8_t *p, size_t len, uint16_t *rows, uint16_t *cols)
{
	struct agent_rd r;
	agent_rd_init(&r, p, len);
	if (agent_get_u16(&r, rows) < 0 || agent_get_u16(&r, cols) < 0 || agent_rd_done(&r) < 0)
		return -EPROTO;
	return 0;
}
