/*
 * The isorun agent protocol: one framed binary protocol between the host side (runner) and
 * the in-sandbox agent, over any reliable byte stream (a unix socket for the namespace
 * backend, a virtio-serial port for a microVM). docs/protocol.md is the normative
 * description; this header is its C form, shared by the agent (static, musl, libc only) and
 * the runner. Nothing here allocates except the decoders that build argv/env arrays.
 *
 * Frame: a 12-byte little-endian header followed by `len` payload bytes.
 *
 *   offset size field
 *   0      4    len     payload length, <= AGENT_FRAME_MAX_PAYLOAD
 *   4      2    type    enum agent_msg_type
 *   6      2    flags   reserved, must be 0 (a receiver rejects anything else)
 *   8      4    stream  0 for connection-level messages, else the exec/file stream id
 *
 * Payload fields are little-endian integers and strings. A string is a u32 byte count
 * (terminating NUL included) followed by the bytes; the last byte must be NUL and no other
 * byte may be NUL, so decoded strings point into the payload without copies.
 *
 * Every function here is thread-safe (no shared state) and returns -errno on failure:
 * -EPROTO malformed input, -EFBIG a field or frame over its cap, -ENOMEM.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTO_VERSION	2 /* the newest version this side speaks */
#define AGENT_PROTO_MIN_VERSION 1 /* the oldest: agents of sandboxes started before an upgrade */
#define AGENT_FRAME_HDR		12
#define AGENT_FRAME_MAX_PAYLOAD (1u << 20)  /* 1 MiB: any larger frame closes the connection */
#define AGENT_DATA_CHUNK	(64u << 10) /* senders split stream data into chunks of this size */
#define AGENT_MAX_ARGS		4096	    /* argv entries, env entries */
#define AGENT_MAX_PATH		4096	    /* path and cwd strings, NUL included */
#define AGENT_MAX_USER		256	    /* user spec string, NUL included */
#define AGENT_MAX_MSG		1024	    /* error messages, NUL included */
#define AGENT_MAX_PING		64	    /* ping payload bytes */

enum agent_msg_type {
	/* connection level (stream 0) */
	AGENT_MSG_HELLO = 1,	   /* c->a: u32 min_version, u32 max_version */
	AGENT_MSG_HELLO_OK = 2,	   /* a->c: u32 version, str agent_ident */
	AGENT_MSG_PING = 3,	   /* c->a: opaque <= AGENT_MAX_PING bytes */
	AGENT_MSG_PONG = 4,	   /* a->c: the ping payload echoed */
	AGENT_MSG_SHUTDOWN = 5,	   /* c->a: u32 grace_ms */
	AGENT_MSG_SHUTDOWN_OK = 6, /* a->c: empty; the agent exits after sending it */
	AGENT_MSG_ERROR = 7,	   /* a->c: i32 errno, str message (stream 0: fatal, conn closes) */

	/* exec streams */
	AGENT_MSG_EXEC = 16,	     /* c->a: struct agent_exec_req */
	AGENT_MSG_EXEC_STARTED = 17, /* a->c: u32 pid (in the sandbox's pid namespace) */
	AGENT_MSG_EXEC_FAILED = 18,  /* a->c: u32 stage, i32 errno, str message; stream ends */
	AGENT_MSG_STDIN = 19,	     /* c->a: bytes; an empty payload closes the command's stdin */
	AGENT_MSG_STDOUT = 20,	     /* a->c: bytes (the pty's output when a pty is used) */
	AGENT_MSG_STDERR = 21,	     /* a->c: bytes */
	AGENT_MSG_SIGNAL = 22,	     /* c->a: u32 signo, u32 flags (AGENT_SIGNAL_GROUP) */
	AGENT_MSG_RESIZE = 23,	     /* c->a: u16 rows, u16 cols */
	AGENT_MSG_EXIT = 24,	     /* a->c: struct agent_exit; stream ends */

	/* file streams */
	AGENT_MSG_FILE_PUT = 32,  /* c->a: u32 mode, u32 uid, u32 gid, str path; then FILE_DATA */
	AGENT_MSG_FILE_GET = 33,  /* c->a: str path */
	AGENT_MSG_FILE_INFO = 34, /* a->c: u32 mode, u32 uid, u32 gid, u64 size; then FILE_DATA */
	AGENT_MSG_FILE_DATA = 35, /* both: bytes; an empty payload ends the file */
	AGENT_MSG_FILE_DONE = 36, /* a->c: empty; the put is complete (fsync'd, renamed) */
	AGENT_MSG_FILE_STAT = 37, /* c->a (version 2): str path; answered by FILE_INFO or ERROR */
};

/* EXEC flags */
#define AGENT_EXEC_PTY	 0x1u /* run on a new pty; stdout carries the merged output */
#define AGENT_EXEC_STDIN 0x2u /* the client will send STDIN frames; else stdin is /dev/null */

/* SIGNAL flags */
#define AGENT_SIGNAL_GROUP 0x1u /* signal the command's whole process group */

/* EXEC_FAILED stages: where the agent's child failed before running the command. */
enum agent_exec_stage {
	AGENT_STAGE_SETUP = 1, /* pty/pipes/fork in the agent */
	AGENT_STAGE_USER = 2,  /* user/group resolution or setuid/setgid/setgroups */
	AGENT_STAGE_CWD = 3,   /* chdir to the working directory */
	AGENT_STAGE_EXEC = 4,  /* execve itself: ENOENT = not found, else cannot execute */
};

struct agent_frame {
	uint16_t type;
	uint16_t flags;
	uint32_t stream;
	uint32_t len;
	const uint8_t *payload; /* points into the caller's buffer */
};

/*
 * Parse one frame header+payload from the start of `buf`.
 * Returns the number of bytes the frame occupies (> 0) and fills *ret; 0 when more bytes
 * are needed; -EFBIG when the header announces a payload over AGENT_FRAME_MAX_PAYLOAD;
 * -EPROTO for nonzero flags or an unknown type. Errors are decided from the header alone,
 * so a receiver can drop a connection before buffering a hostile payload.
 */
int agent_frame_parse(const uint8_t *buf, size_t len, struct agent_frame *ret);

/* True for a type this version of the protocol defines. */
bool agent_msg_type_known(uint16_t type);
/* A short name for logs ("EXEC"); "?" for an unknown type. */
const char *agent_msg_type_name(uint16_t type);

/*
 * Output buffer for encoding frames. Caller's storage (_init/_fini); grows up to `cap`
 * bytes (-EFBIG beyond). Not thread-safe.
 */
struct agent_wbuf {
	uint8_t *data;
	size_t len, alloc, cap;
};
void agent_wbuf_init(struct agent_wbuf *b, size_t cap);
void agent_wbuf_fini(struct agent_wbuf *b);
/* Drop the first n bytes (after they were written out). */
void agent_wbuf_consume(struct agent_wbuf *b, size_t n);
int agent_wbuf_append(struct agent_wbuf *b, const void *data, size_t len);

/*
 * Frame building: agent_frame_begin appends a header with len 0 and returns its offset in
 * *ret_off; the put_* helpers append payload fields; agent_frame_end patches the length
 * (-EFBIG if the payload grew over AGENT_FRAME_MAX_PAYLOAD; the frame is then removed).
 * On any error the caller should call agent_frame_abort to drop the partial frame.
 */
int agent_frame_begin(struct agent_wbuf *b, uint16_t type, uint32_t stream, size_t *ret_off);
int agent_put_u16(struct agent_wbuf *b, uint16_t v);
int agent_put_u32(struct agent_wbuf *b, uint32_t v);
int agent_put_u64(struct agent_wbuf *b, uint64_t v);
int agent_put_str(struct agent_wbuf *b, const char *s);
int agent_put_bytes(struct agent_wbuf *b, const void *p, size_t n);
int agent_frame_end(struct agent_wbuf *b, size_t off);
void agent_frame_abort(struct agent_wbuf *b, size_t off);
/* One whole frame with a raw payload (data, ping, empty messages). */
int agent_frame_put(struct agent_wbuf *b, uint16_t type, uint32_t stream, const void *payload,
		    size_t len);

/* Payload reader: a cursor over a payload. All getters fail with -EPROTO past the end. */
struct agent_rd {
	const uint8_t *p;
	size_t len, off;
};
void agent_rd_init(struct agent_rd *r, const uint8_t *p, size_t len);
int agent_get_u16(struct agent_rd *r, uint16_t *ret);
int agent_get_u32(struct agent_rd *r, uint32_t *ret);
int agent_get_u64(struct agent_rd *r, uint64_t *ret);
/* A string of at most `cap` bytes (NUL included): -EFBIG over, -EPROTO if malformed. */
int agent_get_str(struct agent_rd *r, size_t cap, const char **ret);
/* -EPROTO unless every byte was consumed (trailing garbage is an error). */
int agent_rd_done(const struct agent_rd *r);

/*
 * EXEC payload: u32 flags, u32 timeout_ms (0 = none), u16 rows, u16 cols, str user
 * ("" = root; "name", "uid", "name:group", "uid:gid"), str cwd ("" = "/"), u32 argc,
 * argc x str, u32 envc, envc x str ("K=V", the complete environment).
 */
struct agent_exec_req {
	uint32_t flags, timeout_ms;
	uint16_t rows, cols;
	const char *user, *cwd;
	uint32_t argc, envc;
	const char **argv; /* argc + 1 entries, NULL-terminated; strings point into payload */
	const char **envp; /* envc + 1 entries, NULL-terminated */
};
/* Decode; on success the caller frees with agent_exec_req_fini. argc must be >= 1. */
int agent_exec_req_decode(const uint8_t *p, size_t len, struct agent_exec_req *ret);
void agent_exec_req_fini(struct agent_exec_req *r);
/* Encode a whole EXEC frame. */
int agent_exec_req_encode(struct agent_wbuf *b, uint32_t stream, const struct agent_exec_req *r);

/* EXIT payload: u32 kind (0 exited, 1 signaled), u32 code_or_signal, u32 flags. */
#define AGENT_EXIT_TIMED_OUT 0x1u
struct agent_exit {
	uint32_t kind; /* 0: exited with code, 1: killed by signal */
	uint32_t code; /* exit code or signal number */
	uint32_t flags;
};
int agent_exit_decode(const uint8_t *p, size_t len, struct agent_exit *ret);
int agent_exit_encode(struct agent_wbuf *b, uint32_t stream, const struct agent_exit *e);

/* ERROR and EXEC_FAILED share a shape: [u32 stage,] i32 errno (positive), str message. */
struct agent_error {
	uint32_t stage; /* EXEC_FAILED only */
	int32_t err;
	const char *msg;
};
int agent_error_decode(uint16_t type, const uint8_t *p, size_t len, struct agent_error *ret);
int agent_error_encode(struct agent_wbuf *b, uint16_t type, uint32_t stream,
		       const struct agent_error *e);

/*
 * FILE_PUT / FILE_INFO (size only in FILE_INFO) / FILE_GET and FILE_STAT (path only).
 * mode: permission bits, and in version 2 the type bits of a directory (FILE_PUT and
 * FILE_INFO: a tree stream follows, agent/tree.h) or of anything FILE_STAT found.
 */
struct agent_file_hdr {
	uint32_t mode, uid, gid;
	uint64_t size;
	const char *path;
};
int agent_file_hdr_decode(uint16_t type, const uint8_t *p, size_t len, struct agent_file_hdr *ret);
int agent_file_hdr_encode(struct agent_wbuf *b, uint16_t type, uint32_t stream,
			  const struct agent_file_hdr *h);

/* Fixed-size payloads. */
int agent_u32_pair_decode(const uint8_t *p, size_t len, uint32_t *a, uint32_t *b);
int agent_resize_decode(const uint8_t *p, size_t len, uint16_t *rows, uint16_t *cols);
