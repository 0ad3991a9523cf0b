/*
 * Fuzz target: the agent protocol's frame parser and every payload decoder, as the agent
 * and the runner apply them to bytes from the other side. Input: a byte stream of frames.
 * Decoded strings must lie inside the payload and be NUL-terminated there.
 */
#include "agent/protocol.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const struct agent_frame *f, const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	if (p < f->payload || p >= f->payload + f->len)
		abort();
	size_t n = strlen(s);
	if (p + n >= f->payload + f->len + 1)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	while (off < size) {
		struct agent_frame f;
		int r = agent_frame_parse(data + off, size - off, &f);
		if (r <= 0)
			break;
		off += (size_t)r;
		switch (f.type) {
		case AGENT_MSG_EXEC: {
			struct agent_exec_req q;
			if (agent_exec_req_decode(f.payload, f.len, &q) == 0) {
				check_str(&f, q.user);
				check_str(&f, q.cwd);
				for (uint32_t i = 0; i < q.argc; i++)
					check_str(&f, q.argv[i]);
				for (uint32_t i = 0; i < q.envc; i++)
					check_str(&f, q.envp[i]);
				if (q.argv[q.argc] || q.envp[q.envc])
					abort();
				/* re-encoding what was decoded gives the same payload */
				struct agent_wbuf b;
				agent_wbuf_init(&b, AGENT_FRAME_HDR + AGENT_FRAME_MAX_PAYLOAD);
				if (agent_exec_req_encode(&b, f.stream, &q) == 0 &&
				    (b.len != AGENT_FRAME_HDR + f.len ||
				     memcmp(b.data + AGENT_FRAME_HDR, f.payload, f.len)))
					abort();
				agent_wbuf_fini(&b);
				agent_exec_req_fini(&q);
			}
			break;
		}
		case AGENT_MSG_EXIT: {
			struct agent_exit x;
			(void)agent_exit_decode(f.payload, f.len, &x);
			break;
		}
		case AGENT_MSG_ERROR:
		case AGENT_MSG_EXEC_FAILED: {
			struct agent_error e;
			if (agent_error_decode(f.type, f.payload, f.len, &e) == 0)
				check_str(&f, e.msg);
			break;
		}
		case AGENT_MSG_FILE_PUT:
		case AGENT_MSG_FILE_GET:
		case AGENT_MSG_FILE_INFO:
		case AGENT_MSG_FILE_STAT: {
			struct agent_file_hdr h;
			if (agent_file_hdr_decode(f.type, f.payload, f.len, &h) == 0) {
				if (h.path)
					check_str(&f, h.path);
				/* only type and permission bits; in a put, only a directory's type
				 */
				if ((h.mode & ~(S_IFMT | 07777u)) ||
				    (f.type == AGENT_MSG_FILE_PUT && (h.mode & S_IFMT) &&
				     !S_ISDIR(h.mode)))
					abort();
			}
			break;
		}
		case AGENT_MSG_HELLO:
		case AGENT_MSG_SIGNAL: {
			uint32_t a, b;
			(void)agent_u32_pair_decode(f.payload, f.len, &a, &b);
			break;
		}
		case AGENT_MSG_RESIZE: {
			uint16_t rows, cols;
			(void)agent_resize_decode(f.payload, f.len, &rows, &cols);
			break;
		}
		default:
			break;
		}
	}
	return 0;
}
