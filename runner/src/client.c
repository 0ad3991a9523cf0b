/*
 * The host side of the agent protocol (docs/protocol.md): handshake, ping, exec with live
 * stdio forwarding, file put/get, shutdown. One connection per client; this side uses one
 * exec or file stream at a time per connection (the agent accepts several).
 */
#include "sandbox.h"

#include "agent/protocol.h"
#include "agent/tree.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <termios.h>
#include <unistd.h>

#define IN_CAP		(AGENT_FRAME_HDR + AGENT_FRAME_MAX_PAYLOAD)
#define EXEC_QUEUE_HIGH (256u << 10) /* stop reading stdin above this much unsent */
#define DEFAULT_PATH	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct run_client {
	int fd;
	uint8_t *in;
	size_t in_len, in_off; /* bytes [in_off, in_len) not yet parsed */
	struct agent_wbuf out;
	uint32_t next_stream;
	/* HELLO sent, its answer not read yet: next_frame() checks it before any other frame
	 * (client_open without waiting, so that the first request shares the round trip) */
	bool hello_pending;
	uint32_t version;		     /* agreed by HELLO, once its answer was read */
	char last_error[2 * AGENT_MAX_PATH]; /* what failed: an agent ERROR's message, or ours */
};

DEFINE_CLEANUP_FUNC(struct run_client, run_client_free)

void run_client_free(struct run_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	agent_wbuf_fini(&c->out);
	free(c);
}

static int flush_out(struct run_client *c)
{
	int r = cm_write_full(c->fd, c->out.data, c->out.len);
	c->out.len = 0;
	return r == -EPIPE || r == -ECONNRESET ? -EPIPE : r;
}

static int error_from_frame(struct run_client *c, const struct agent_frame *f);

/* The agent's answer to HELLO: 0 if it speaks our version, else -errno. */
static int hello_check(struct run_client *c, const struct agent_frame *f)
{
	if (f->type == AGENT_MSG_ERROR)
		return error_from_frame(c, f);
	struct agent_rd rd;
	uint32_t ver;
	const char *ident;
	agent_rd_init(&rd, f->payload, f->len);
	if (f->type != AGENT_MSG_HELLO_OK || agent_get_u32(&rd, &ver) < 0 ||
	    agent_get_str(&rd, AGENT_MAX_MSG, &ident) < 0 || ver < AGENT_PROTO_MIN_VERSION ||
	    ver > AGENT_PROTO_VERSION)
		return cm_log_ret(-EPROTO, "agent handshake failed");
	c->version = ver;
	return 0;
}

/* Next complete frame already buffered: 1 and *f, 0 if none, -errno on a bad frame or a
 * refused handshake. */
static int next_frame(struct run_client *c, struct agent_frame *f)
{
	for (;;) {
		int r = agent_frame_parse(c->in + c->in_off, c->in_len - c->in_off, f);
		if (r <= 0)
			return r < 0 ? cm_log_ret(-EPROTO, "agent sent a malformed frame") : 0;
		c->in_off += (size_t)r;
		if (!c->hello_pending)
			return 1;
		c->hello_pending = false;
		if ((r = hello_check(c, f)) < 0)
			return r;
	}
}

/* Read more bytes from the agent (blocking). -EPIPE at EOF. */
static int fill(struct run_client *c)
{
	if (c->in_off) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	for (;;) {
		ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ECONNRESET ? -EPIPE : -errno;
		if (n == 0)
			return -EPIPE;
		c->in_len += (size_t)n;
		return 0;
	}
}

static int recv_frame(struct run_client *c, struct agent_frame *f)
{
	for (;;) {
		int r = next_frame(c, f);
		if (r != 0)
			return r < 0 ? r : 0;
		if ((r = fill(c)) < 0)
			return r;
	}
}

static int error_from_frame(struct run_client *c, const struct agent_frame *f)
{
	struct agent_error e;
	if (agent_error_decode(f->type, f->payload, f->len, &e) < 0)
		return -EPROTO;
	log_debug("agent error: %s (%s)", e.msg, strerror(e.err));
	snprintf(c->last_error, sizeof(c->last_error), "%s", e.msg);
	return e.err > 0 ? -e.err : -EIO;
}

/*
 * Take `fd`, send HELLO. With `wait`, read and check the answer now; without, leave it to
 * the first read of the first request (the agent handles frames in order and closes after
 * refusing a HELLO, so a request sent behind it is never acted upon): one round trip less.
 */
static int client_open(int fd, bool wait, struct run_client **ret)
{
	_cleanup_(run_client_freep) struct run_client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->next_stream = 1;
	agent_wbuf_init(&c->out, IN_CAP);
	c->in = malloc(IN_CAP);
	if (!c->in)
		return -ENOMEM;
	size_t off;
	int r;
	if ((r = agent_frame_begin(&c->out, AGENT_MSG_HELLO, 0, &off)) < 0 ||
	    (r = agent_put_u32(&c->out, AGENT_PROTO_MIN_VERSION)) < 0 ||
	    (r = agent_put_u32(&c->out, AGENT_PROTO_VERSION)) < 0 ||
	    (r = agent_frame_end(&c->out, off)) < 0 || (r = flush_out(c)) < 0)
		return r;
	if (wait) {
		struct agent_frame f;
		if ((r = recv_frame(c, &f)) < 0 || (r = hello_check(c, &f)) < 0)
			return r;
	} else {
		c->hello_pending = true;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

int run_client_open_fd(int fd, struct run_client **ret)
{
	return client_open(fd, true, ret);
}

static int client_connect(struct run_sandbox *sb, bool wait, struct run_client **ret)
{
	int fd = -1;
	const struct run_backend_ops *be = run_backend_find(sb->backend);
	int r = be ? be->connect(sb, &fd) : -EINVAL;
	if (r < 0)
		return r == -ENOENT ? -ECONNREFUSED : r;
	return client_open(fd, wait, ret);
}

int run_client_connect(struct run_ctx *ctx, const char *id, struct run_client **ret)
{
	struct run_sandbox *sb = NULL;
	int r = run_sandbox_load(ctx, id, &sb);
	if (r < 0)
		return r;
	r = client_connect(sb, true, ret);
	run_sandbox_free(sb);
	return r;
}

int run_client_ping(struct run_client *c)
{
	static const char token[] = "isorun-ping";
	int r = agent_frame_put(&c->out, AGENT_MSG_PING, 0, token, sizeof(token));
	if (r < 0 || (r = flush_out(c)) < 0)
		return r;
	struct agent_frame f;
	if ((r = recv_frame(c, &f)) < 0)
		return r;
	if (f.type != AGENT_MSG_PONG || f.len != sizeof(token) || memcmp(f.payload, token, f.len))
		return -EPROTO;
	return 0;
}

int run_client_shutdown(struct run_client *c, uint32_t grace_ms)
{
	uint8_t p[4];
	/* the agent answers after at most the grace period; a hung agent must not hang stop */
	struct timeval tv = {.tv_sec = grace_ms / 1000 + 5, .tv_usec = (grace_ms % 1000) * 1000};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cm_put_le32(p, grace_ms);
	int r = agent_frame_put(&c->out, AGENT_MSG_SHUTDOWN, 0, p, 4);
	if (r < 0 || (r = flush_out(c)) < 0)
		return r;
	struct agent_frame f;
	for (;;) {
		if ((r = recv_frame(c, &f)) < 0)
			return r == -EPIPE ? 0 : r; /* the agent may exit before we read */
		if (f.type == AGENT_MSG_SHUTDOWN_OK)
			return 0;
	}
}

/* ---- exec ---- */

static int send_signal(struct run_client *c, uint32_t stream, int sig)
{
	uint8_t p[8];
	cm_put_le32(p, (uint32_t)sig);
	cm_put_le32(p + 4, 0);
	return agent_frame_put(&c->out, AGENT_MSG_SIGNAL, stream, p, 8);
}

static int send_winsize(struct run_client *c, uint32_t stream, int ttyfd)
{
	struct winsize ws;
	if (ttyfd < 0 || ioctl(ttyfd, TIOCGWINSZ, &ws) < 0)
		return 0;
	uint8_t p[4];
	cm_put_le16(p, ws.ws_row);
	cm_put_le16(p + 2, ws.ws_col);
	return agent_frame_put(&c->out, AGENT_MSG_RESIZE, stream, p, 4);
}

/* Write what the socket takes now; the exec loop never blocks on the agent. */
static int flush_some(struct run_client *c)
{
	while (c->out.len) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return errno == ECONNRESET ? -EPIPE : -errno;
		agent_wbuf_consume(&c->out, (size_t)n);
	}
	return 0;
}

int run_client_exec(struct run_client *c, const struct run_exec_opts *o,
		    struct run_exec_result *ret)
{
	uint32_t stream = c->next_stream++;
	size_t argc = 0, envc = 0;
	int r;
	while (o->argv[argc])
		argc++;
	while (o->env && o->env[envc])
		envc++;
	if (argc == 0)
		return -EINVAL;
	struct agent_exec_req q = {
	    .flags = (o->tty ? AGENT_EXEC_PTY : 0) | (o->stdin_fd >= 0 ? AGENT_EXEC_STDIN : 0),
	    .timeout_ms = o->timeout_ms,
	    .rows = o->rows,
	    .cols = o->cols,
	    .user = o->user ? o->user : "",
	    .cwd = o->cwd ? o->cwd : "/",
	    .argc = (uint32_t)argc,
	    .envc = (uint32_t)envc,
	    .argv = (const char **)o->argv,
	    .envp = (const char **)o->env,
	};
	if ((r = agent_exec_req_encode(&c->out, stream, &q)) < 0)
		return cm_log_ret(r, "exec request too large");
	if ((r = flush_out(c)) < 0)
		return r;

	memset(ret, 0, sizeof(*ret));
	bool stdin_open = o->stdin_fd >= 0;
	/* where the command's output goes; -1 once its reader is gone (EPIPE) */
	int out_fd[2] = {o->stdout_fd, o->stderr_fd};
	uint8_t buf[AGENT_DATA_CHUNK];
	for (;;) {
		struct agent_frame f;
		while ((r = next_frame(c, &f)) > 0) {
			if (f.stream != stream && f.stream != 0)
				continue;
			switch (f.type) {
			case AGENT_MSG_EXEC_STARTED:
				break;
			case AGENT_MSG_STDOUT:
			case AGENT_MSG_STDERR: {
				int *fd = &out_fd[f.type == AGENT_MSG_STDOUT ? 0 : 1];
				int w = *fd >= 0 ? cm_write_full(*fd, f.payload, f.len) : 0;
				if (w == -EPIPE) {
					/* the reader of our output is gone (`isorun run ... | head`):
					 * what a pipe does to a writer, the command gets, SIGPIPE; its
					 * further output is dropped (the caller ignores SIGPIPE, so the
					 * sandbox is still removed) */
					log_debug("exec: output closed by its reader: SIGPIPE to the "
						  "command");
					*fd = -1;
					if ((r = send_signal(c, stream, SIGPIPE)) < 0)
						return r;
				} else if (w < 0) {
					log_debug("exec: output write failed: %s", strerror(-w));
				}
				break;
			}
			case AGENT_MSG_EXIT: {
				struct agent_exit x;
				if (agent_exit_decode(f.payload, f.len, &x) < 0)
					return cm_log_ret(-EPROTO, "malformed EXIT from the agent");
				ret->kind = x.kind ? RUN_EXEC_SIGNALED : RUN_EXEC_EXITED;
				ret->code = (int)x.code;
				ret->timed_out = x.flags & AGENT_EXIT_TIMED_OUT;
				return 0;
			}
			case AGENT_MSG_EXEC_FAILED: {
				struct agent_error e;
				if (agent_error_decode(f.type, f.payload, f.len, &e) < 0)
					return cm_log_ret(-EPROTO, "malformed EXEC_FAILED");
				ret->kind = RUN_EXEC_FAILED;
				ret->code = e.err;
				ret->stage = (int)e.stage;
				snprintf(ret->message, sizeof(ret->message), "%s", e.msg);
				return 0;
			}
			case AGENT_MSG_ERROR:
				return error_from_frame(c, &f);
			default:
				return cm_log_ret(-EPROTO, "unexpected %s from the agent",
						  agent_msg_type_name(f.type));
			}
		}
		if (r < 0)
			return r;

		/*
		 * Frames to the agent are queued and written as the socket accepts them, while
		 * output keeps being read: a command that ignores its stdin while printing must
		 * not deadlock against a client blocked writing that stdin. stdin is read only
		 * while the queue is short.
		 */
		struct pollfd p[3];
		int n = 0, isock, iin = -1, isig = -1;
		p[n] = (struct pollfd){.fd = c->fd, .events = POLLIN | (c->out.len ? POLLOUT : 0)};
		isock = n++;
		if (stdin_open && c->out.len < EXEC_QUEUE_HIGH) {
			p[n] = (struct pollfd){.fd = o->stdin_fd, .events = POLLIN};
			iin = n++;
		}
		if (o->signal_fd >= 0) {
			p[n] = (struct pollfd){.fd = o->signal_fd, .events = POLLIN};
			isig = n++;
		}
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (isig >= 0 && (p[isig].revents & POLLIN)) {
			struct signalfd_siginfo si;
			while (read(o->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGWINCH)
					r = send_winsize(c, stream, o->stdin_fd);
				else
					r = send_signal(c, stream, (int)si.ssi_signo);
				if (r < 0)
					return r;
			}
		}
		if (iin >= 0 && (p[iin].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t k = read(o->stdin_fd, buf, sizeof(buf));
			if (k < 0 && (errno == EINTR || errno == EAGAIN))
				k = -2;
			if (k >= 0 || k == -1) {
				/* EOF or an unreadable stdin: close the command's stdin */
				if (k <= 0)
					stdin_open = false;
				r = agent_frame_put(&c->out, AGENT_MSG_STDIN, stream, buf,
						    k > 0 ? (size_t)k : 0);
				if (r < 0)
					return r;
			}
		}
		if ((r = flush_some(c)) < 0)
			return r == -EPIPE ? cm_log_ret(-EPIPE, "the agent went away") : r;
		if (p[isock].revents & (POLLIN | POLLHUP | POLLERR)) {
			if ((r = fill(c)) < 0)
				return r == -EPIPE ? cm_log_ret(-EPIPE, "the agent went away") : r;
		}
	}
}

int run_exec_status(const struct run_exec_result *r)
{
	if (r->timed_out)
		return 124;
	switch (r->kind) {
	case RUN_EXEC_EXITED:
		return r->code;
	case RUN_EXEC_SIGNALED:
		return 128 + r->code;
	case RUN_EXEC_FAILED:
	default:
		if (r->stage == AGENT_STAGE_EXEC && (r->code == ENOENT || r->code == ENOTDIR))
			return 127;
		return 126;
	}
}

static bool env_has(char **env, size_t n, const char *kv)
{
	size_t k = strcspn(kv, "=");
	for (size_t i = 0; i < n; i++)
		if (!strncmp(env[i], kv, k) && env[i][k] == '=')
			return true;
	return false;
}

int run_sandbox_exec(struct run_ctx *ctx, const char *id, const struct run_exec_opts *o,
		     struct run_exec_result *ret)
{
	struct run_sandbox *sb = NULL;
	int r = run_sandbox_load(ctx, id, &sb);
	if (r < 0)
		return r;
	if (sb->status == RUN_STATUS_STOPPED) {
		run_sandbox_free(sb);
		return -ESRCH;
	}
	const struct run_config *cfg = sb->config;
	/* env: PATH first (the image's, else the default), image Env, then overrides */
	size_t ni = 0, no = 0;
	while (cfg && cfg->env && cfg->env[ni])
		ni++;
	while (o->env && o->env[no])
		no++;
	_cleanup_free_ char **env = calloc(ni + no + 2, sizeof(char *));
	if (!env) {
		run_sandbox_free(sb);
		return -ENOMEM;
	}
	size_t n = 0;
	const char *path = NULL;
	for (size_t i = 0; i < no && !path; i++)
		if (cm_str_has_prefix(o->env[i], "PATH="))
			path = o->env[i];
	for (size_t i = 0; i < ni && !path; i++)
		if (cm_str_has_prefix(cfg->env[i], "PATH="))
			path = cfg->env[i];
	env[n++] = (char *)(path ? path : DEFAULT_PATH);
	for (size_t i = 0; i < no; i++)
		if (!env_has(env, n, o->env[i]))
			env[n++] = (char *)o->env[i];
	for (size_t i = 0; i < ni; i++)
		if (!env_has(env, n, cfg->env[i]))
			env[n++] = cfg->env[i];
	env[n] = NULL;

	struct run_exec_opts eo = *o;
	eo.env = (const char *const *)env;
	if (!eo.cwd)
		eo.cwd = cfg && cfg->working_dir && cfg->working_dir[0] ? cfg->working_dir : "/";
	if (!eo.user)
		eo.user = cfg && cfg->user ? cfg->user : "";

	struct run_client *c = NULL;
	/* the exec request goes out behind HELLO; a refused handshake fails the exec */
	r = client_connect(sb, false, &c);
	if (r >= 0)
		r = run_client_exec(c, &eo, ret);
	run_client_free(c);
	run_sandbox_free(sb);
	return r;
}

/* ---- files ---- */

/* Read the agent's answer to HELLO if it is still to come: c->version is known after. */
static int hello_wait(struct run_client *c)
{
	while (c->hello_pending) {
		struct agent_frame f;
		int r = agent_frame_parse(c->in + c->in_off, c->in_len - c->in_off, &f);
		if (r < 0)
			return cm_log_ret(-EPROTO, "agent sent a malformed frame");
		if (r == 0) {
			if ((r = fill(c)) < 0)
				return r;
			continue;
		}
		c->in_off += (size_t)r;
		c->hello_pending = false;
		return hello_check(c, &f);
	}
	return 0;
}

/* While a put sends its data: an ERROR the agent already sent on `stream` (it then drops
 * the rest of the put), or 0 when none came. Before the put's empty FILE_DATA nothing else
 * can come on its stream. */
static int early_answer(struct run_client *c, uint32_t stream)
{
	for (;;) {
		struct agent_frame f;
		int r = next_frame(c, &f);
		if (r < 0)
			return r;
		if (r == 0) {
			struct pollfd p = {.fd = c->fd, .events = POLLIN};
			if (poll(&p, 1, 0) <= 0)
				return 0;
			if ((r = fill(c)) < 0)
				return r;
			continue;
		}
		if (f.stream != stream)
			continue;
		return f.type == AGENT_MSG_ERROR ? error_from_frame(c, &f) : -EPROTO;
	}
}

/* One FILE_DATA frame of a put. An agent of protocol 1 closes the connection after the
 * ERROR that refused the put: that ERROR, not the broken pipe, is the answer. */
static int send_data(struct run_client *c, uint32_t stream, const void *p, size_t n)
{
	int r = agent_frame_put(&c->out, AGENT_MSG_FILE_DATA, stream, p, n);
	if (r < 0)
		return r;
	if ((r = flush_out(c)) == -EPIPE) {
		struct agent_frame f;
		while (recv_frame(c, &f) == 0)
			if (f.stream == stream && f.type == AGENT_MSG_ERROR)
				return error_from_frame(c, &f);
		return -EPIPE;
	}
	/* after the empty frame the answer is FILE_DONE or ERROR: wait_done's to read */
	return r < 0 || n == 0 ? r : early_answer(c, stream);
}

static int wait_done(struct run_client *c, uint32_t stream)
{
	struct agent_frame f;
	for (;;) {
		int r = recv_frame(c, &f);
		if (r < 0)
			return r;
		if (f.stream != stream && f.stream != 0)
			continue;
		if (f.type == AGENT_MSG_FILE_DONE)
			return 0;
		if (f.type == AGENT_MSG_ERROR)
			return error_from_frame(c, &f);
		return -EPROTO;
	}
}

int run_client_put_file(struct run_client *c, int fd, const char *path, uint32_t mode, uint32_t uid,
			uint32_t gid)
{
	uint32_t stream = c->next_stream++;
	struct agent_file_hdr h = {.mode = mode & 07777, .uid = uid, .gid = gid, .path = path};
	c->last_error[0] = 0;
	int r = agent_file_hdr_encode(&c->out, AGENT_MSG_FILE_PUT, stream, &h);
	if (r < 0)
		return r;
	uint8_t buf[AGENT_DATA_CHUNK];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(c->last_error, sizeof(c->last_error), "read");
			return -errno;
		}
		if ((r = send_data(c, stream, buf, (size_t)n)) < 0)
			return r;
		if (n == 0)
			return wait_done(c, stream);
	}
}

int run_client_put_dir(struct run_client *c, int dirfd, const char *path, uint32_t mode,
		       uint64_t *ret_entries, uint64_t *ret_skipped)
{
	struct agent_tree_reader rd;
	_cleanup_free_ uint8_t *buf = NULL;
	uint32_t stream = c->next_stream++;
	c->last_error[0] = 0;
	int r = hello_wait(c);
	if (r < 0 || c->version < 2) {
		close(dirfd);
		return r < 0 ? r : -EOPNOTSUPP;
	}
	if ((r = agent_tree_reader_init(&rd, dirfd)) < 0)
		return r;
	struct agent_file_hdr h = {.mode = S_IFDIR | (mode & 07777), .path = path};
	if ((r = agent_file_hdr_encode(&c->out, AGENT_MSG_FILE_PUT, stream, &h)) < 0)
		goto out;
	if (!(buf = malloc(AGENT_DATA_CHUNK))) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = agent_tree_reader_read(&rd, buf, AGENT_DATA_CHUNK);
		if (n < 0) { /* a host-side failure: the connection's end aborts the put */
			snprintf(c->last_error, sizeof(c->last_error), "%s%s%s", rd.path,
				 rd.path[0] ? ": " : "", rd.op);
			r = (int)n;
			goto out;
		}
		if ((r = send_data(c, stream, buf, (size_t)n)) < 0)
			goto out;
		if (n == 0)
			break;
	}
	r = wait_done(c, stream);
	if (r >= 0 && ret_entries)
		*ret_entries = rd.entries;
	if (r >= 0 && ret_skipped)
		*ret_skipped = rd.skipped;
out:
	agent_tree_reader_fini(&rd);
	return r;
}

int run_client_stat(struct run_client *c, const char *path, uint32_t *ret_mode)
{
	uint32_t stream = c->next_stream++;
	c->last_error[0] = 0;
	int r = hello_wait(c);
	if (r < 0)
		return r;
	if (c->version < 2)
		return -EOPNOTSUPP;
	struct agent_file_hdr h = {.path = path};
	if ((r = agent_file_hdr_encode(&c->out, AGENT_MSG_FILE_STAT, stream, &h)) < 0 ||
	    (r = flush_out(c)) < 0)
		return r;
	struct agent_frame f;
	for (;;) {
		if ((r = recv_frame(c, &f)) < 0)
			return r;
		if (f.stream != stream && f.stream != 0)
			continue;
		if (f.type == AGENT_MSG_ERROR)
			return error_from_frame(c, &f);
		struct agent_file_hdr i;
		if (f.type != AGENT_MSG_FILE_INFO ||
		    agent_file_hdr_decode(f.type, f.payload, f.len, &i) < 0)
			return -EPROTO;
		*ret_mode = i.mode;
		return 0;
	}
}

/* Where a get's bytes go: a regular file's into fd, a directory's stream through a
 * decoder into a writer. */
struct get_sink {
	int fd;			    /* a file's destination, or -1 */
	char *tmp;		    /* else a template (mkostemp) for it, made when a file comes */
	const char *dir;	    /* a directory's destination path, or NULL */
	int dirfd;		    /* it, open, once its FILE_INFO came */
	bool made;		    /* we made it (so it takes the source's mode) */
	uint32_t mode;		    /* FILE_INFO's */
	struct agent_tree_dec *dec; /* directories */
	struct agent_tree_writer wr;
};

/* FILE_GET `path` into `s`: a file into s->fd (or a temporary file made from s->tmp); a
 * directory, when s->dir is set, into that directory (made if absent). -EISDIR for a
 * directory without s->dir. */
static int get_into(struct run_client *c, const char *path, struct get_sink *s)
{
	uint32_t stream = c->next_stream++;
	struct agent_file_hdr h = {.path = path};
	c->last_error[0] = 0;
	int r = agent_file_hdr_encode(&c->out, AGENT_MSG_FILE_GET, stream, &h);
	if (r < 0 || (r = flush_out(c)) < 0)
		return r;
	struct agent_frame f;
	bool info = false;
	for (;;) {
		if ((r = recv_frame(c, &f)) < 0)
			return r;
		if (f.stream != stream && f.stream != 0)
			continue;
		switch (f.type) {
		case AGENT_MSG_FILE_INFO: {
			struct agent_file_hdr i;
			if (info || agent_file_hdr_decode(f.type, f.payload, f.len, &i) < 0)
				return -EPROTO;
			info = true;
			s->mode = i.mode;
			if (!S_ISDIR(i.mode)) {
				if (i.mode & S_IFMT)
					return -EPROTO;
				if (s->fd < 0 && (s->fd = mkostemp(s->tmp, O_CLOEXEC)) < 0) {
					snprintf(c->last_error, sizeof(c->last_error), "create");
					return -errno;
				}
				break;
			}
			if (!s->dir)
				return -EISDIR;
			if (mkdir(s->dir, 0700) == 0)
				s->made = true;
			else if (errno != EEXIST) {
				snprintf(c->last_error, sizeof(c->last_error), "%s: mkdir", s->dir);
				return -errno;
			}
			/* the destination the user named may be a symlink to a directory;
			 * nothing below it is followed (the writer) */
			s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (s->dirfd < 0) {
				snprintf(c->last_error, sizeof(c->last_error), "%s: %s", s->dir,
					 errno == ENOTDIR ? "exists and is not a directory"
							  : "open");
				return -errno;
			}
			if (!(s->dec = malloc(sizeof(*s->dec))))
				return -ENOMEM;
			agent_tree_dec_init(s->dec);
			/* the sandbox is not trusted: no set-id bits, ownership ours */
			agent_tree_writer_init(&s->wr, s->dirfd, false, 0777);
			break;
		}
		case AGENT_MSG_FILE_DATA:
			if (!info)
				return -EPROTO;
			if (s->dec && f.len) {
				r = agent_tree_dec_feed(s->dec, f.payload, f.len,
							&agent_tree_writer_sink, &s->wr);
			} else if (s->dec) {
				if ((r = agent_tree_dec_finish(s->dec)) >= 0)
					r = agent_tree_writer_finish(&s->wr);
				if (r >= 0 && s->made && fchmod(s->dirfd, s->mode & 0777) < 0)
					r = -errno;
			} else if (f.len) {
				r = cm_write_full(s->fd, f.payload, f.len);
			} else {
				r = 0;
			}
			if (r < 0) {
				if (s->dec && s->wr.op)
					snprintf(c->last_error, sizeof(c->last_error), "%s/%s: %s",
						 s->dir, s->wr.where, s->wr.op);
				else if (s->dec && (r == -EPROTO || r == -EFBIG))
					snprintf(c->last_error, sizeof(c->last_error),
						 "the sandbox sent a malformed directory stream");
				return r;
			}
			if (f.len == 0)
				return 0;
			break;
		case AGENT_MSG_ERROR:
			return error_from_frame(c, &f);
		default:
			return -EPROTO;
		}
	}
}

static void get_sink_fini(struct get_sink *s)
{
	if (s->dec)
		agent_tree_writer_fini(&s->wr);
	free(s->dec);
	if (s->dirfd >= 0)
		close(s->dirfd);
}

int run_client_get_file(struct run_client *c, const char *path, int fd, uint32_t *ret_mode)
{
	struct get_sink s = {.fd = fd, .dirfd = -1};
	int r = get_into(c, path, &s);
	if (r >= 0 && ret_mode)
		*ret_mode = s.mode;
	get_sink_fini(&s);
	return r;
}

/* ---- isorun cp ---- */

/* The last component of a path, trailing slashes ignored ("" for "/"). */
static char *base_name(const char *p)
{
	size_t l = strlen(p);
	while (l > 1 && p[l - 1] == '/')
		l--;
	size_t b = l;
	while (b > 0 && p[b - 1] != '/')
		b--;
	return strndup(p + b, l - b);
}

/* The name a copy takes in a destination directory: NULL for the source's contents
 * ("SRC/.", ".", "/"), else its last component. */
static int copy_name(const char *src, char **ret)
{
	size_t l = strlen(src);
	*ret = NULL;
	if (l >= 2 && !strcmp(src + l - 2, "/."))
		return 0;
	char *b = base_name(src);
	if (!b)
		return -ENOMEM;
	if (!b[0] || !strcmp(b, ".") || !strcmp(b, "/")) {
		free(b);
		return 0;
	}
	*ret = b;
	return 0;
}

static char *join(const char *dir, const char *name)
{
	size_t l = strlen(dir);
	return cm_strdupf("%s%s%s", dir, l && dir[l - 1] == '/' ? "" : "/", name);
}

/* "cannot copy SRC to DST: [detail: ]error", once. */
__attribute__((format(printf, 3, 4))) static int copy_fail(struct run_client *c, int r,
							   const char *fmt, ...)
{
	char what[2 * AGENT_MAX_PATH + 64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (r == -EOPNOTSUPP)
		log_error("%s: the sandbox's agent predates directory copies (protocol %u); "
			  "isorun stop and isorun start give it the current one",
			  what, c->version);
	else if (c->last_error[0])
		log_error("%s: %s: %s", what, c->last_error, strerror(-r));
	else
		log_error("%s: %s", what, strerror(-r));
	return r;
}

int run_client_copy_in(struct run_client *c, const char *src, const char *dst, const char *label,
		       struct run_copy_stats *st)
{
	struct stat s;
	memset(st, 0, sizeof(*st));
	c->last_error[0] = 0;
	if (stat(src, &s) < 0)
		return copy_fail(c, -errno, "cannot copy %s", src);
	bool dir = S_ISDIR(s.st_mode);
	if (!dir && !S_ISREG(s.st_mode))
		return copy_fail(c, -EINVAL, "cannot copy %s: not a regular file or directory",
				 src);
	_cleanup_free_ char *name = NULL, *target = NULL;
	int r = copy_name(src, &name);
	if (r < 0)
		return r;
	if (!dir && !name) /* "file/." */
		return copy_fail(c, -ENOTDIR, "cannot copy %s", src);
	uint32_t dmode = 0;
	size_t dl = strlen(dst);
	r = run_client_stat(c, dst, &dmode); /* reads the agent's version too */
	if (r == -EOPNOTSUPP && !dir) { /* protocol 1: a trailing / names a directory */
		r = dl && dst[dl - 1] == '/' ? 0 : -ENOENT;
		dmode = S_IFDIR;
	}
	if (r == 0 && S_ISDIR(dmode))
		target = name ? join(dst, name) : strdup(dst);
	else if (r == 0 && dir)
		return copy_fail(c, -ENOTDIR, "cannot copy %s to %s:%s", src, label, dst);
	else if (r == 0 || (r == -ENOENT && !(dl && dst[dl - 1] == '/')))
		target = strdup(dst);
	else
		return copy_fail(c, r, "cannot copy %s to %s:%s", src, label, dst);
	if (!target)
		return -ENOMEM;
	if (dir) {
		int fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		r = fd < 0
			? -errno
			: run_client_put_dir(c, fd, target, s.st_mode, &st->entries, &st->skipped);
	} else {
		_cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC);
		r = fd < 0 ? -errno : run_client_put_file(c, fd, target, s.st_mode & 07777, 0, 0);
		st->entries = 1;
	}
	if (r < 0)
		return copy_fail(c, r, "cannot copy %s to %s:%s", src, label, target);
	return 0;
}

int run_client_copy_out(struct run_client *c, const char *src, const char *dst, const char *label,
			struct run_copy_stats *st)
{
	memset(st, 0, sizeof(*st));
	c->last_error[0] = 0;
	_cleanup_free_ char *name = NULL, *target = NULL;
	int r = copy_name(src, &name);
	if (r < 0)
		return r;
	struct stat s;
	if (stat(dst, &s) == 0 && S_ISDIR(s.st_mode))
		target = name ? join(dst, name) : strdup(dst);
	else
		target = strdup(dst);
	if (!target)
		return -ENOMEM;
	/* a file goes through a temporary file beside its name, renamed at the end */
	_cleanup_free_ char *tmp = cm_strdupf("%s.isorun-cp.XXXXXX", target);
	if (!tmp)
		return -ENOMEM;
	struct get_sink g = {.fd = -1, .tmp = tmp, .dirfd = -1, .dir = target};
	r = get_into(c, src, &g);
	if (r == -EISDIR) /* a directory, from an agent of protocol 1 */
		r = -EOPNOTSUPP;
	if (g.fd >= 0) {
		/* no set-id bits from a sandbox */
		if (r >= 0 && (fchmod(g.fd, g.mode & 0777) < 0 || rename(tmp, target) < 0))
			r = -errno;
		close(g.fd);
		if (r < 0)
			unlink(tmp);
	}
	if (r >= 0) {
		st->entries = S_ISDIR(g.mode) ? g.wr.written : 1;
		st->skipped = S_ISDIR(g.mode) ? g.wr.skipped : 0;
	}
	get_sink_fini(&g);
	if (r < 0)
		return copy_fail(c, r, "cannot copy %s:%s to %s", label, src, target);
	return 0;
}
