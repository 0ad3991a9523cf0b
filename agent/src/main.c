/*
 * isorun-agent: PID 1 of every sandbox. Static (musl), libc only.
 *
 * The runner has already built the sandbox (mounts, pivot_root, namespaces, capability
 * bounding set, no_new_privs, seccomp) before exec'ing this binary from a host fd, so the
 * agent runs with exactly the privileges of the commands it starts; it does no mount or
 * namespace call. It inherits a listening unix socket (fd 3 unless --listen-fd) and serves
 * the protocol of docs/protocol.md on every accepted connection.
 *
 * One thread, one poll loop. Invariants:
 * - Every fd is O_CLOEXEC; the exec'd child gets only its stdio.
 * - Connection input is buffered up to one frame (header + AGENT_FRAME_MAX_PAYLOAD); a frame
 *   header that is malformed or oversized makes the agent answer ERROR and close that
 *   connection, nothing else.
 * - Connection output is queued (cap OUT_CAP); command output is read only while the queue
 *   is under OUT_HIGH, so a slow client slows its commands through pipe backpressure.
 * - A command's stream ends when its main process is reaped: whatever the pipes hold at that
 *   moment is sent, then EXIT, then the pipes are closed. Background processes that inherited
 *   stdout/stderr do not hold the stream open (their later writes get EPIPE).
 * - Processes whose connection went away keep running, with their stdio closed: they see EOF
 *   on stdin and EPIPE/SIGPIPE (SIGHUP with a pty) when they next write, as in a shell
 *   pipeline whose reader exited.
 */
#include "agent.h"
#include "agent/tree.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS    1024 /* beyond, clients wait in the listen backlog */
#define MAX_PROCS    1024
#define MAX_XFERS    64
#define OUT_HIGH     (1u << 20)
#define OUT_CAP	     (8u << 20)
#define IN_CAP	     (AGENT_FRAME_HDR + AGENT_FRAME_MAX_PAYLOAD)
#define STDIN_HIGH   (1u << 20)
#define MAX_POLL     (2 + MAX_CONNS + 3 * MAX_PROCS + MAX_XFERS)
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct conn {
	int fd; /* -1: free slot */
	uint32_t gen;
	bool hello, closing;
	uint32_t version; /* agreed by HELLO */
	struct agent_wbuf in, out;
};

struct proc {
	bool used;
	int conn; /* -1 once the connection is gone */
	uint32_t gen, stream;
	pid_t pid;
	int out_fd, err_fd, in_fd; /* -1 when closed; out_fd is the pty master with a pty */
	bool pty, in_eof, timed_out;
	struct agent_wbuf inq;
	int64_t deadline_ms; /* 0: none */
};

struct xfer {
	bool used, get;
	bool failed; /* a put that failed: its FILE_DATA is dropped up to the empty one */
	int conn;
	uint32_t gen, stream;
	int fd; /* the file; the directory of a tree put */
	uint32_t mode, uid, gid;
	char path[AGENT_MAX_PATH], tmp[AGENT_MAX_PATH + 32];
	/* a directory (version 2): a tree stream out (rd) or in (dec into wr) */
	struct agent_tree_reader *rd;
	struct agent_tree_dec *dec;
	struct agent_tree_writer *wr;
};

static struct conn conns[MAX_CONNS];
static struct proc procs[MAX_PROCS];
static struct xfer xfers[MAX_XFERS];
static int listen_fd = 3, sig_fd = -1;
static int nconns;
static struct rlimit nofile; /* the limit the agent was started with: its commands' */
static uint32_t gen_counter;
static uint8_t iobuf[AGENT_DATA_CHUNK];

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	char b[1024];
	va_list ap;
	int n = snprintf(b, sizeof(b), "isorun-agent: ");
	va_start(ap, fmt);
	vsnprintf(b + n, sizeof(b) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t l = strlen(b);
	b[l++] = '\n';
	(void)!write(2, b, l);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct conn *conn_get(int idx, uint32_t gen)
{
	if (idx < 0 || idx >= MAX_CONNS || conns[idx].fd < 0 || conns[idx].gen != gen ||
	    conns[idx].closing)
		return NULL;
	return &conns[idx];
}

/* Fatal protocol error on a connection: say why, flush, close. */
static void conn_fail(struct conn *c, uint32_t stream, int err, const char *msg)
{
	struct agent_error e = {.err = err, .msg = msg};
	logf_("connection %d: %s", c->fd, msg);
	(void)agent_error_encode(&c->out, AGENT_MSG_ERROR, stream, &e);
	c->closing = true;
}

/* Queue a frame; an overfull output queue means the client stopped reading: drop it. */
static void conn_put(struct conn *c, uint16_t type, uint32_t stream, const void *p, size_t n)
{
	if (!c)
		return;
	int r = agent_frame_put(&c->out, type, stream, p, n);
	if (r < 0) {
		logf_("connection %d: output queue full, closing", c->fd);
		c->closing = true;
	}
}

static void put_u32_frame(struct conn *c, uint16_t type, uint32_t stream, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	conn_put(c, type, stream, b, 4);
}

static void closefd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static void xfer_free(struct xfer *x)
{
	if (x->rd) {
		agent_tree_reader_fini(x->rd);
		free(x->rd);
	}
	if (x->wr) {
		agent_tree_writer_fini(x->wr);
		free(x->wr);
	}
	free(x->dec);
	closefd(&x->fd);
	if (!x->get && x->tmp[0])
		unlink(x->tmp);
	memset(x, 0, sizeof(*x));
	x->fd = -1;
}

static void conn_close(struct conn *c)
{
	int idx = (int)(c - conns);
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i].used && procs[i].conn == idx && procs[i].gen == c->gen) {
			/* like a closed terminal or pipeline: the command sees EOF on stdin and
			 * EPIPE/SIGPIPE (or SIGHUP from its pty) when it next writes */
			procs[i].conn = -1;
			closefd(&procs[i].out_fd);
			closefd(&procs[i].err_fd);
			closefd(&procs[i].in_fd);
			procs[i].inq.len = 0;
		}
	for (int i = 0; i < MAX_XFERS; i++)
		if (xfers[i].used && xfers[i].conn == idx && xfers[i].gen == c->gen)
			xfer_free(&xfers[i]);
	close(c->fd);
	c->fd = -1;
	nconns--;
	agent_wbuf_fini(&c->in);
	agent_wbuf_fini(&c->out);
}

static struct proc *proc_by_stream(int cidx, uint32_t gen, uint32_t stream)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i].used && procs[i].conn == cidx && procs[i].gen == gen &&
		    procs[i].stream == stream)
			return &procs[i];
	return NULL;
}

static struct xfer *xfer_by_stream(int cidx, uint32_t gen, uint32_t stream)
{
	for (int i = 0; i < MAX_XFERS; i++)
		if (xfers[i].used && xfers[i].conn == cidx && xfers[i].gen == gen &&
		    xfers[i].stream == stream)
			return &xfers[i];
	return NULL;
}

/* ---- exec ---- */

struct child_err {
	uint32_t stage;
	int32_t err;
	char msg[200];
};

static _Noreturn void child_fail(int errfd, uint32_t stage, int err, const char *msg)
{
	struct child_err ce = {.stage = stage, .err = err};
	snprintf(ce.msg, sizeof(ce.msg), "%s", msg);
	(void)!write(errfd, &ce, sizeof(ce));
	_exit(127);
}

static const char *env_get(char **envp, const char *name)
{
	size_t n = strlen(name);
	for (char **e = envp; *e; e++)
		if (!strncmp(*e, name, n) && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

/* execvp(3) semantics, but PATH comes from the command's environment. */
static int exec_search(const char *file, char *const argv[], char **envp)
{
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		return -errno;
	}
	const char *path = env_get(envp, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	bool eacces = false;
	int last = ENOENT;
	size_t flen = strlen(file);
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);
		char full[PATH_MAX];
		if (dlen + flen + 2 <= sizeof(full)) {
			memcpy(full, p, dlen);
			full[dlen] = '/';
			memcpy(full + dlen + 1, file, flen + 1);
			execve(dlen ? full : file, argv, envp);
			switch (errno) {
			case EACCES:
				eacces = true;
				/* fallthrough */
			case ENOENT:
			case ENOTDIR:
			case ELOOP:
			case ENAMETOOLONG:
				break;
			default:
				return -errno;
			}
			last = errno;
		}
		if (!*end)
			break;
		p = end;
	}
	return eacces ? -EACCES : -last;
}

static _Noreturn void child_main(const struct agent_exec_req *q, int in_fd, int out_fd, int err_fd,
				 int pty_master, int errfd)
{
	sigset_t all;
	sigemptyset(&all);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigprocmask(SIG_SETMASK, &all, NULL);

	if (setsid() < 0)
		child_fail(errfd, AGENT_STAGE_SETUP, errno, "setsid");
	setrlimit(RLIMIT_NOFILE, &nofile); /* not the agent's raised one */
	if (pty_master >= 0) {
		int slave = ioctl(pty_master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
		if (slave < 0)
			child_fail(errfd, AGENT_STAGE_SETUP, errno, "open pty peer");
		if (ioctl(slave, TIOCSCTTY, 0) < 0)
			child_fail(errfd, AGENT_STAGE_SETUP, errno, "set controlling tty");
		if (q->rows && q->cols) {
			struct winsize ws = {.ws_row = q->rows, .ws_col = q->cols};
			ioctl(slave, TIOCSWINSZ, &ws);
		}
		in_fd = out_fd = err_fd = slave;
	}
	if (in_fd < 0) {
		in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (in_fd < 0)
			child_fail(errfd, AGENT_STAGE_SETUP, errno, "open /dev/null");
	}
	if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
		child_fail(errfd, AGENT_STAGE_SETUP, errno, "dup2");

	static struct agent_user u;
	const char *msg = "resolve user";
	int r = agent_user_resolve(q->user, &u, &msg);
	if (r < 0)
		child_fail(errfd, AGENT_STAGE_USER, -r, msg);
	gid_t groups[AGENT_MAX_GROUPS];
	for (int i = 0; i < u.ngroups; i++)
		groups[i] = u.groups[i];
	if (setgroups((size_t)u.ngroups, groups) < 0)
		child_fail(errfd, AGENT_STAGE_USER, errno, "setgroups");
	if (setgid(u.gid) < 0)
		child_fail(errfd, AGENT_STAGE_USER, errno, "setgid");
	if (setuid(u.uid) < 0)
		child_fail(errfd, AGENT_STAGE_USER, errno, "setuid");
	if (chdir(q->cwd[0] ? q->cwd : "/") < 0) {
		static char why[AGENT_MAX_PATH + 32];
		int e = errno;
		snprintf(why, sizeof(why), "working directory %s", q->cwd[0] ? q->cwd : "/");
		child_fail(errfd, AGENT_STAGE_CWD, e, why);
	}

	/* the environment as sent, plus HOME from passwd when absent (docker's rule) */
	char **envp = calloc(q->envc + 2, sizeof(char *));
	if (!envp)
		child_fail(errfd, AGENT_STAGE_SETUP, ENOMEM, "environment");
	uint32_t n = 0;
	for (uint32_t i = 0; i < q->envc; i++)
		envp[n++] = (char *)q->envp[i];
	static char home[AGENT_MAX_PATH + 8];
	if (!env_get(envp, "HOME")) {
		snprintf(home, sizeof(home), "HOME=%s", u.home);
		envp[n++] = home;
	}
	envp[n] = NULL;
	r = exec_search(q->argv[0], (char *const *)q->argv, envp);
	child_fail(errfd, AGENT_STAGE_EXEC, -r, "exec");
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void exec_failed(struct conn *c, uint32_t stream, uint32_t stage, int err, const char *m)
{
	struct agent_error e = {.stage = stage, .err = err, .msg = m};
	if (agent_error_encode(&c->out, AGENT_MSG_EXEC_FAILED, stream, &e) < 0)
		c->closing = true;
}

static void do_exec(struct conn *c, uint32_t stream, const struct agent_frame *f)
{
	int cidx = (int)(c - conns);
	struct agent_exec_req q;
	int r = agent_exec_req_decode(f->payload, f->len, &q);
	if (r < 0) {
		conn_fail(c, stream, -r, "malformed EXEC");
		return;
	}
	if (stream == 0 || proc_by_stream(cidx, c->gen, stream) ||
	    xfer_by_stream(cidx, c->gen, stream)) {
		agent_exec_req_fini(&q);
		conn_fail(c, stream, EPROTO, "EXEC on stream 0 or on a stream in use");
		return;
	}
	struct proc *p = NULL;
	for (int i = 0; i < MAX_PROCS && !p; i++)
		if (!procs[i].used)
			p = &procs[i];
	if (!p) {
		exec_failed(c, stream, AGENT_STAGE_SETUP, EAGAIN, "too many running commands");
		agent_exec_req_fini(&q);
		return;
	}
	int inp[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1}, ep[2] = {-1, -1};
	int master = -1;
	const char *what = "pipe";
	if (pipe2(ep, O_CLOEXEC) < 0)
		goto fail;
	if (q.flags & AGENT_EXEC_PTY) {
		what = "open /dev/ptmx";
		master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || unlockpt(master) < 0)
			goto fail;
	} else {
		if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
			goto fail;
	}
	if ((q.flags & AGENT_EXEC_STDIN) && master < 0 && pipe2(inp, O_CLOEXEC) < 0)
		goto fail;
	what = "fork";
	pid_t pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0) {
		close(ep[0]);
		child_main(&q, inp[0], outp[1], errp[1], master, ep[1]);
	}
	closefd(&ep[1]);
	closefd(&inp[0]);
	closefd(&outp[1]);
	closefd(&errp[1]);
	struct child_err ce;
	ssize_t n;
	do
		n = read(ep[0], &ce, sizeof(ce));
	while (n < 0 && errno == EINTR);
	closefd(&ep[0]);
	if (n == (ssize_t)sizeof(ce)) {
		/* the child exits 127; the reaper collects it as an unknown pid */
		ce.msg[sizeof(ce.msg) - 1] = 0;
		exec_failed(c, stream, ce.stage, ce.err, ce.msg);
		closefd(&inp[1]);
		closefd(&outp[0]);
		closefd(&errp[0]);
		closefd(&master);
		agent_exec_req_fini(&q);
		return;
	}
	memset(p, 0, sizeof(*p));
	p->used = true;
	p->conn = cidx;
	p->gen = c->gen;
	p->stream = stream;
	p->pid = pid;
	p->pty = master >= 0;
	p->out_fd = master >= 0 ? master : outp[0];
	p->err_fd = errp[0];
	p->in_fd = -1;
	if (q.flags & AGENT_EXEC_STDIN)
		p->in_fd = master >= 0 ? dup(master) : inp[1];
	if (master >= 0 && p->in_fd >= 0)
		fcntl(p->in_fd, F_SETFD, FD_CLOEXEC);
	p->in_eof = !(q.flags & AGENT_EXEC_STDIN);
	agent_wbuf_init(&p->inq, STDIN_HIGH + AGENT_FRAME_MAX_PAYLOAD);
	for (int *fd = &p->out_fd; fd <= &p->in_fd; fd++)
		if (*fd >= 0)
			set_nonblock(*fd);
	if (q.timeout_ms)
		p->deadline_ms = now_ms() + q.timeout_ms;
	agent_exec_req_fini(&q);
	put_u32_frame(c, AGENT_MSG_EXEC_STARTED, stream, (uint32_t)pid);
	return;
fail:
	r = errno;
	closefd(&ep[0]);
	closefd(&ep[1]);
	for (int i = 0; i < 2; i++) {
		closefd(&inp[i]);
		closefd(&outp[i]);
		closefd(&errp[i]);
	}
	closefd(&master);
	exec_failed(c, stream, AGENT_STAGE_SETUP, r, what);
	agent_exec_req_fini(&q);
}

/* Read what a command's pipe holds now. Returns false at EOF/error (fd closed). */
static bool pump_output(struct proc *p, int *fd, uint16_t type, bool drain)
{
	for (;;) {
		ssize_t n = read(*fd, iobuf, sizeof(iobuf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0) { /* EOF, or EIO from a pty master whose slaves all closed */
			closefd(fd);
			return false;
		}
		struct conn *c = p->conn >= 0 ? conn_get(p->conn, p->gen) : NULL;
		if (c)
			conn_put(c, type, p->stream, iobuf, (size_t)n);
		if (!drain)
			return true;
	}
}

static void proc_finish(struct proc *p, int status)
{
	if (p->out_fd >= 0)
		pump_output(p, &p->out_fd, AGENT_MSG_STDOUT, true);
	if (p->err_fd >= 0)
		pump_output(p, &p->err_fd, AGENT_MSG_STDERR, true);
	struct conn *c = p->conn >= 0 ? conn_get(p->conn, p->gen) : NULL;
	if (c) {
		struct agent_exit x = {0};
		if (WIFSIGNALED(status)) {
			x.kind = 1;
			x.code = (uint32_t)WTERMSIG(status);
		} else {
			x.code = (uint32_t)WEXITSTATUS(status);
		}
		if (p->timed_out)
			x.flags |= AGENT_EXIT_TIMED_OUT;
		if (agent_exit_encode(&c->out, p->stream, &x) < 0)
			c->closing = true;
	}
	closefd(&p->out_fd);
	closefd(&p->err_fd);
	closefd(&p->in_fd);
	agent_wbuf_fini(&p->inq);
	p->used = false;
}

static void reap(void)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			return;
		for (int i = 0; i < MAX_PROCS; i++)
			if (procs[i].used && procs[i].pid == pid) {
				proc_finish(&procs[i], status);
				break;
			}
	}
}

static void flush_stdin(struct proc *p)
{
	while (p->in_fd >= 0 && p->inq.len) {
		ssize_t n = write(p->in_fd, p->inq.data, p->inq.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* EPIPE: the command closed its stdin */
			closefd(&p->in_fd);
			p->inq.len = 0;
			return;
		}
		agent_wbuf_consume(&p->inq, (size_t)n);
	}
	if (p->in_eof && !p->inq.len && p->in_fd >= 0) {
		if (p->pty) {
			/* a pty has no half-close: send the terminal's EOF character */
			(void)!write(p->in_fd, "\x04", 1);
		}
		closefd(&p->in_fd);
	}
}

/* ---- files ---- */

/* A put that failed, its ERROR sent: the client sends its data before it reads our answer,
 * so the stream stays to drop that data, up to the empty FILE_DATA. */
static void xfer_failed(struct xfer *x)
{
	int conn = x->conn;
	uint32_t gen = x->gen, stream = x->stream;
	xfer_free(x);
	x->used = x->failed = true;
	x->conn = conn;
	x->gen = gen;
	x->stream = stream;
}

/* An ERROR on a file stream; with `what`, its message is "what: op". */
static void file_error(struct conn *c, uint32_t stream, int err, const char *what, const char *op)
{
	char msg[AGENT_MAX_MSG];
	snprintf(msg, sizeof(msg), "%s%s%s", what ? what : "", what ? ": " : "", op);
	struct agent_error e = {.err = err, .msg = msg};
	if (agent_error_encode(&c->out, AGENT_MSG_ERROR, stream, &e) < 0)
		c->closing = true;
}

static void do_file_stat(struct conn *c, uint32_t stream, const struct agent_frame *f)
{
	struct agent_file_hdr h;
	struct stat st;
	if (stream == 0 || agent_file_hdr_decode(f->type, f->payload, f->len, &h) < 0) {
		conn_fail(c, stream, EPROTO, "malformed FILE_STAT");
		return;
	}
	if (stat(h.path, &st) < 0) {
		file_error(c, stream, errno, NULL, "stat");
		return;
	}
	struct agent_file_hdr info = {.mode = st.st_mode & (S_IFMT | 07777),
				      .uid = st.st_uid,
				      .gid = st.st_gid,
				      .size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0};
	if (agent_file_hdr_encode(&c->out, AGENT_MSG_FILE_INFO, stream, &info) < 0)
		c->closing = true;
}

static void do_file_put(struct conn *c, uint32_t stream, const struct agent_frame *f)
{
	int cidx = (int)(c - conns);
	struct agent_file_hdr h;
	int r = agent_file_hdr_decode(f->type, f->payload, f->len, &h);
	bool dir = r >= 0 && f->type == AGENT_MSG_FILE_PUT && S_ISDIR(h.mode);
	if (r < 0 || stream == 0 || xfer_by_stream(cidx, c->gen, stream) ||
	    proc_by_stream(cidx, c->gen, stream) || (dir && c->version < 2)) {
		conn_fail(c, stream, EPROTO, "malformed FILE_PUT/FILE_GET");
		return;
	}
	struct xfer *x = NULL;
	for (int i = 0; i < MAX_XFERS && !x; i++)
		if (!xfers[i].used)
			x = &xfers[i];
	int err = EAGAIN;
	const char *op = "too many transfers";
	if (!x) {
		file_error(c, stream, err, NULL, op);
		return;
	}
	memset(x, 0, sizeof(*x));
	x->fd = -1;
	x->used = true;
	x->conn = cidx;
	x->gen = c->gen;
	x->stream = stream;
	snprintf(x->path, sizeof(x->path), "%s", h.path);
	if (f->type == AGENT_MSG_FILE_GET) {
		struct stat st = {0};
		x->get = true;
		x->fd = open(h.path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		err = errno;
		op = "open";
		if (x->fd < 0)
			goto err;
		bool tree = false;
		if (fstat(x->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
			op = "not a regular file";
			if (!S_ISDIR(st.st_mode) || c->version < 2)
				goto err;
			/* version 2: a directory's contents as a tree stream */
			x->rd = malloc(sizeof(*x->rd));
			err = ENOMEM;
			op = "out of memory";
			if (!x->rd)
				goto err;
			int dfd = x->fd;
			x->fd = -1;
			if ((r = agent_tree_reader_init(x->rd, dfd)) < 0) {
				free(x->rd);
				x->rd = NULL;
				err = -r;
				op = "opendir";
				goto err;
			}
			tree = true;
		}
		struct agent_file_hdr info = {.mode = st.st_mode & (tree ? S_IFMT | 07777 : 07777),
					      .uid = st.st_uid,
					      .gid = st.st_gid,
					      .size = tree ? 0 : (uint64_t)st.st_size};
		if (agent_file_hdr_encode(&c->out, AGENT_MSG_FILE_INFO, stream, &info) < 0) {
			xfer_free(x);
			c->closing = true;
		}
		return;
	}
	x->mode = h.mode & 07777;
	x->uid = h.uid;
	x->gid = h.gid;
	if (dir) {
		/* version 2: a tree stream into the directory, made if it is not there */
		if (mkdir(h.path, 0700) < 0 && errno != EEXIST) {
			err = errno;
			op = "mkdir";
			goto err;
		}
		x->fd = open(h.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		err = errno;
		op = errno == ENOTDIR ? "exists and is not a directory" : "open";
		if (x->fd < 0)
			goto err;
		x->dec = malloc(sizeof(*x->dec));
		x->wr = malloc(sizeof(*x->wr));
		err = ENOMEM;
		op = "out of memory";
		if (!x->dec || !x->wr)
			goto err;
		agent_tree_dec_init(x->dec);
		/* owned by the agent (root), like a file put; set-id bits kept */
		agent_tree_writer_init(x->wr, x->fd, false, 07777);
		return;
	}
	/* write a temporary file beside the target, rename on the final FILE_DATA */
	snprintf(x->tmp, sizeof(x->tmp), "%s.isorun-%u", h.path, stream);
	x->fd = open(x->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	err = errno;
	op = "create";
	if (x->fd < 0) {
		x->tmp[0] = 0;
		goto err;
	}
	return;
err:
	file_error(c, stream, err, NULL, op);
	if (x->get)
		xfer_free(x);
	else
		xfer_failed(x);
}

/* A tree put's data: the stream into the directory; at its end, the directory's own
 * owner, mode and the modes of the directories it made. 0, or -errno after an ERROR. */
static int tree_put_data(struct conn *c, struct xfer *x, const struct agent_frame *f)
{
	struct agent_tree_writer *w = x->wr;
	int r;
	if (f->len) {
		r = agent_tree_dec_feed(x->dec, f->payload, f->len, &agent_tree_writer_sink, w);
		if (r < 0) {
			if (r == -EPROTO || r == -EFBIG)
				file_error(c, x->stream, -r, NULL, "malformed directory stream");
			else
				file_error(c, x->stream, -r, w->where, w->op);
		}
		return r;
	}
	if ((r = agent_tree_dec_finish(x->dec)) < 0) {
		file_error(c, x->stream, -r, NULL, "directory stream ends inside a record");
		return r;
	}
	if ((r = agent_tree_writer_finish(w)) < 0) {
		file_error(c, x->stream, -r, w->where, w->op);
		return r;
	}
	const char *op = NULL;
	if (fchown(x->fd, x->uid, x->gid) < 0)
		op = "chown";
	else if (fchmod(x->fd, x->mode) < 0)
		op = "chmod";
	if (op) {
		file_error(c, x->stream, errno, NULL, op);
		return -EIO;
	}
	return 0;
}

static void do_file_data(struct conn *c, uint32_t stream, const struct agent_frame *f)
{
	struct xfer *x = xfer_by_stream((int)(c - conns), c->gen, stream);
	if (!x || x->get) {
		conn_fail(c, stream, EPROTO, "FILE_DATA without FILE_PUT");
		return;
	}
	if (x->failed) { /* answered already */
		if (!f->len)
			xfer_free(x);
		return;
	}
	if (x->wr) {
		if (tree_put_data(c, x, f) < 0)
			goto failed;
		if (!f->len) {
			conn_put(c, AGENT_MSG_FILE_DONE, stream, NULL, 0);
			xfer_free(x);
		}
		return;
	}
	int err = 0;
	const char *op = NULL;
	if (f->len) {
		size_t off = 0;
		while (off < f->len) {
			ssize_t n = write(x->fd, f->payload + off, f->len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				err = n < 0 ? errno : EIO;
				op = "write";
				goto err;
			}
			off += (size_t)n;
		}
		return;
	}
	if (fchown(x->fd, x->uid, x->gid) < 0) {
		err = errno;
		op = "chown";
		goto err;
	}
	/* after chown, which clears set-id bits */
	if (fchmod(x->fd, x->mode) < 0) {
		err = errno;
		op = "chmod";
		goto err;
	}
	if (rename(x->tmp, x->path) < 0) {
		err = errno;
		op = "rename";
		goto err;
	}
	x->tmp[0] = 0;
	conn_put(c, AGENT_MSG_FILE_DONE, stream, NULL, 0);
	xfer_free(x);
	return;
err:
	file_error(c, stream, err, NULL, op);
failed:
	if (f->len)
		xfer_failed(x);
	else
		xfer_free(x);
}

static void pump_get(struct xfer *x)
{
	struct conn *c = conn_get(x->conn, x->gen);
	if (!c) {
		xfer_free(x);
		return;
	}
	while (c->out.len < OUT_HIGH) {
		ssize_t n;
		if (x->rd) {
			n = agent_tree_reader_read(x->rd, iobuf, sizeof(iobuf));
			if (n < 0) {
				file_error(c, x->stream, (int)-n,
					   x->rd->path[0] ? x->rd->path : NULL, x->rd->op);
				xfer_free(x);
				return;
			}
		} else {
			n = read(x->fd, iobuf, sizeof(iobuf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				file_error(c, x->stream, errno, NULL, "read");
				xfer_free(x);
				return;
			}
		}
		conn_put(c, AGENT_MSG_FILE_DATA, x->stream, iobuf, (size_t)n);
		if (n == 0) {
			xfer_free(x);
			return;
		}
	}
}

/* ---- shutdown ---- */

/*
 * Signal everything the agent is responsible for: as PID 1 of a pid namespace, kill(-1)
 * reaches every process of the sandbox and nothing else. Run outside one (tests), that
 * would be every process of the user on the host, so only the commands' process groups.
 */
static void signal_all(int sig)
{
	if (getpid() == 1) {
		kill(-1, sig);
		return;
	}
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i].used)
			kill(-procs[i].pid, sig);
}

static _Noreturn void shutdown_all(struct conn *c, uint32_t grace_ms)
{
	sync();
	signal_all(SIGTERM);
	int64_t deadline = now_ms() + grace_ms;
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid > 0)
			continue;
		if (pid < 0 && errno == ECHILD)
			break;
		int64_t left = deadline - now_ms();
		if (left <= 0)
			break;
		struct pollfd pfd = {.fd = sig_fd, .events = POLLIN};
		if (poll(&pfd, 1, (int)left) > 0) {
			struct signalfd_siginfo si;
			(void)!read(sig_fd, &si, sizeof(si));
		}
	}
	signal_all(SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	sync();
	if (c) {
		conn_put(c, AGENT_MSG_SHUTDOWN_OK, 0, NULL, 0);
		int fl = fcntl(c->fd, F_GETFL);
		fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
		size_t off = 0;
		while (off < c->out.len) {
			ssize_t n = write(c->fd, c->out.data + off, c->out.len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			off += (size_t)n;
		}
	}
	_exit(0);
}

/* ---- connection input ---- */

static void handle_frame(struct conn *c, const struct agent_frame *f)
{
	int cidx = (int)(c - conns);
	uint32_t a, b;

	if (!c->hello && f->type != AGENT_MSG_HELLO) {
		conn_fail(c, 0, EPROTO, "first frame must be HELLO");
		return;
	}
	switch (f->type) {
	case AGENT_MSG_HELLO: {
		if (c->hello || agent_u32_pair_decode(f->payload, f->len, &a, &b) < 0) {
			conn_fail(c, 0, EPROTO, "malformed or repeated HELLO");
			return;
		}
		if (a > AGENT_PROTO_VERSION || b < AGENT_PROTO_MIN_VERSION || a > b) {
			conn_fail(c, 0, EPROTONOSUPPORT, "no common protocol version");
			return;
		}
		c->version = b < AGENT_PROTO_VERSION ? b : AGENT_PROTO_VERSION;
		size_t off;
		if (agent_frame_begin(&c->out, AGENT_MSG_HELLO_OK, 0, &off) < 0 ||
		    agent_put_u32(&c->out, c->version) < 0 ||
		    agent_put_str(&c->out, "isorun-agent/" AGENT_VERSION_STR) < 0 ||
		    agent_frame_end(&c->out, off) < 0) {
			c->closing = true;
			return;
		}
		c->hello = true;
		return;
	}
	case AGENT_MSG_PING:
		if (f->len > AGENT_MAX_PING) {
			conn_fail(c, 0, EFBIG, "PING payload over its cap");
			return;
		}
		conn_put(c, AGENT_MSG_PONG, f->stream, f->payload, f->len);
		return;
	case AGENT_MSG_SHUTDOWN: {
		struct agent_rd r;
		uint32_t grace;
		agent_rd_init(&r, f->payload, f->len);
		if (agent_get_u32(&r, &grace) < 0 || agent_rd_done(&r) < 0) {
			conn_fail(c, 0, EPROTO, "malformed SHUTDOWN");
			return;
		}
		shutdown_all(c, grace > 600000 ? 600000 : grace);
	}
	case AGENT_MSG_EXEC:
		do_exec(c, f->stream, f);
		return;
	case AGENT_MSG_STDIN: {
		struct proc *p = proc_by_stream(cidx, c->gen, f->stream);
		if (!p || p->in_eof)
			return; /* the command may have exited meanwhile: not an error */
		if (f->len == 0)
			p->in_eof = true;
		else if (agent_wbuf_append(&p->inq, f->payload, f->len) < 0) {
			conn_fail(c, f->stream, EFBIG, "stdin queue over its cap");
			return;
		}
		flush_stdin(p);
		return;
	}
	case AGENT_MSG_SIGNAL: {
		if (agent_u32_pair_decode(f->payload, f->len, &a, &b) < 0 || a == 0 || a >= NSIG ||
		    (b & ~AGENT_SIGNAL_GROUP)) {
			conn_fail(c, f->stream, EPROTO, "malformed SIGNAL");
			return;
		}
		struct proc *p = proc_by_stream(cidx, c->gen, f->stream);
		if (p)
			kill((b & AGENT_SIGNAL_GROUP) ? -p->pid : p->pid, (int)a);
		return;
	}
	case AGENT_MSG_RESIZE: {
		uint16_t rows, cols;
		if (agent_resize_decode(f->payload, f->len, &rows, &cols) < 0) {
			conn_fail(c, f->stream, EPROTO, "malformed RESIZE");
			return;
		}
		struct proc *p = proc_by_stream(cidx, c->gen, f->stream);
		if (p && p->pty && p->out_fd >= 0) {
			struct winsize ws = {.ws_row = rows, .ws_col = cols};
			ioctl(p->out_fd, TIOCSWINSZ, &ws);
		}
		return;
	}
	case AGENT_MSG_FILE_STAT:
		if (c->version < 2) {
			conn_fail(c, f->stream, EPROTO, "FILE_STAT needs protocol version 2");
			return;
		}
		do_file_stat(c, f->stream, f);
		return;
	case AGENT_MSG_FILE_PUT:
	case AGENT_MSG_FILE_GET:
		do_file_put(c, f->stream, f);
		return;
	case AGENT_MSG_FILE_DATA:
		do_file_data(c, f->stream, f);
		return;
	default:
		conn_fail(c, f->stream, EPROTO, "message type not accepted by the agent");
		return;
	}
}

static bool conn_stdin_blocked(int cidx, uint32_t gen)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i].used && procs[i].conn == cidx && procs[i].gen == gen &&
		    procs[i].inq.len >= STDIN_HIGH)
			return true;
	return false;
}

static void conn_read(struct conn *c)
{
	if (c->in.alloc < IN_CAP) {
		uint8_t *d = realloc(c->in.data, IN_CAP);
		if (!d) {
			conn_fail(c, 0, ENOMEM, "out of memory");
			return;
		}
		c->in.data = d;
		c->in.alloc = IN_CAP;
	}
	ssize_t n = read(c->fd, c->in.data + c->in.len, IN_CAP - c->in.len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->in.len += (size_t)n;
	size_t off = 0;
	int cidx = (int)(c - conns);
	uint32_t gen = c->gen;
	while (!c->closing) {
		struct agent_frame f;
		int r = agent_frame_parse(c->in.data + off, c->in.len - off, &f);
		if (r == 0)
			break;
		if (r < 0) {
			conn_fail(c, 0, -r,
				  r == -EFBIG ? "frame over the size cap"
					      : "malformed frame header");
			break;
		}
		handle_frame(c, &f);
		if (conns[cidx].fd < 0 || conns[cidx].gen != gen)
			return;
		off += (size_t)r;
	}
	agent_wbuf_consume(&c->in, off);
}

static void conn_write(struct conn *c)
{
	while (c->out.len) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		agent_wbuf_consume(&c->out, (size_t)n);
	}
	if (c->closing)
		conn_close(c);
}

static void do_accept(void)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].fd < 0) {
			conns[i].fd = fd;
			conns[i].gen = ++gen_counter;
			nconns++;
			conns[i].hello = conns[i].closing = false;
			conns[i].version = 0;
			agent_wbuf_init(&conns[i].in, IN_CAP);
			agent_wbuf_init(&conns[i].out, OUT_CAP);
			return;
		}
	logf_("too many connections, refusing one");
	close(fd);
}

enum { P_LISTEN, P_SIG, P_CONN, P_OUT, P_ERR, P_IN, P_XFER };

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen-fd") && i + 1 < argc) {
			listen_fd = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--version")) {
			printf("isorun-agent %s (protocol %d)\n", AGENT_VERSION_STR,
			       AGENT_PROTO_VERSION);
			return 0;
		} else {
			fprintf(stderr, "usage: isorun-agent [--listen-fd FD] [--version]\n");
			return 2;
		}
	}
	if (fcntl(listen_fd, F_SETFD, FD_CLOEXEC) < 0) {
		logf_("no listening socket on fd %d", listen_fd);
		return 1;
	}
	set_nonblock(listen_fd);
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	/* a connection and three pipes per command: room for MAX_CONNS and MAX_PROCS */
	getrlimit(RLIMIT_NOFILE, &nofile);
	struct rlimit raised = nofile;
	raised.rlim_cur = raised.rlim_max < 16384 ? raised.rlim_max : 16384;
	if (raised.rlim_cur > nofile.rlim_cur)
		setrlimit(RLIMIT_NOFILE, &raised);
	for (int i = 0; i < MAX_XFERS; i++)
		xfers[i].fd = -1;

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sig_fd < 0) {
		logf_("signalfd: %s", strerror(errno));
		return 1;
	}

	static struct pollfd pfd[MAX_POLL];
	static struct {
		uint8_t kind;
		uint16_t idx;
	} map[MAX_POLL];

	for (;;) {
		int n = 0;
		int64_t now = now_ms(), next_deadline = -1;
		/* all slots taken: new clients wait in the backlog until one is free */
		pfd[n] = (struct pollfd){.fd = listen_fd, .events = nconns < MAX_CONNS ? POLLIN : 0};
		map[n++].kind = P_LISTEN;
		pfd[n] = (struct pollfd){.fd = sig_fd, .events = POLLIN};
		map[n++].kind = P_SIG;
		for (int i = 0; i < MAX_CONNS; i++) {
			struct conn *c = &conns[i];
			if (c->fd < 0)
				continue;
			short ev = 0;
			if (!c->closing && !conn_stdin_blocked(i, c->gen))
				ev |= POLLIN;
			if (c->out.len || c->closing)
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
			map[n].kind = P_CONN;
			map[n++].idx = (uint16_t)i;
		}
		for (int i = 0; i < MAX_PROCS; i++) {
			struct proc *p = &procs[i];
			if (!p->used)
				continue;
			if (p->deadline_ms && !p->timed_out) {
				if (p->deadline_ms <= now) {
					p->timed_out = true;
					kill(-p->pid, SIGKILL);
					kill(p->pid, SIGKILL);
				} else if (next_deadline < 0 || p->deadline_ms < next_deadline) {
					next_deadline = p->deadline_ms;
				}
			}
			struct conn *c = p->conn >= 0 ? conn_get(p->conn, p->gen) : NULL;
			bool room = !c || c->out.len < OUT_HIGH;
			if (p->out_fd >= 0 && room) {
				pfd[n] = (struct pollfd){.fd = p->out_fd, .events = POLLIN};
				map[n].kind = P_OUT;
				map[n++].idx = (uint16_t)i;
			}
			if (p->err_fd >= 0 && room) {
				pfd[n] = (struct pollfd){.fd = p->err_fd, .events = POLLIN};
				map[n].kind = P_ERR;
				map[n++].idx = (uint16_t)i;
			}
			if (p->in_fd >= 0 && p->inq.len) {
				pfd[n] = (struct pollfd){.fd = p->in_fd, .events = POLLOUT};
				map[n].kind = P_IN;
				map[n++].idx = (uint16_t)i;
			}
		}
		bool pending_get = false;
		for (int i = 0; i < MAX_XFERS; i++) {
			struct xfer *x = &xfers[i];
			if (!x->used || !x->get)
				continue;
			struct conn *c = conn_get(x->conn, x->gen);
			if (!c) {
				xfer_free(x);
				continue;
			}
			if (c->out.len < OUT_HIGH)
				pending_get = true;
		}
		int timeout = -1;
		if (pending_get)
			timeout = 0;
		else if (next_deadline >= 0)
			timeout = (int)(next_deadline - now + 1);
		int r = poll(pfd, (nfds_t)n, timeout);
		if (r < 0 && errno != EINTR) {
			logf_("poll: %s", strerror(errno));
			return 1;
		}
		for (int i = 0; r > 0 && i < n; i++) {
			if (!pfd[i].revents)
				continue;
			int idx = map[i].idx;
			struct proc *p = &procs[idx];
			switch (map[i].kind) {
			case P_LISTEN:
				do_accept();
				break;
			case P_SIG: {
				struct signalfd_siginfo si;
				while (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					if (si.ssi_signo != SIGCHLD)
						shutdown_all(NULL, 5000);
				reap();
				break;
			}
			case P_CONN:
				if (conns[idx].fd < 0)
					break;
				if (pfd[i].revents & POLLOUT)
					conn_write(&conns[idx]);
				if (conns[idx].fd >= 0 &&
				    (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
				    !conns[idx].closing)
					conn_read(&conns[idx]);
				break;
			case P_OUT:
				if (p->used && p->out_fd == pfd[i].fd)
					pump_output(p, &p->out_fd, AGENT_MSG_STDOUT, false);
				break;
			case P_ERR:
				if (p->used && p->err_fd == pfd[i].fd)
					pump_output(p, &p->err_fd, AGENT_MSG_STDERR, false);
				break;
			case P_IN:
				if (p->used && p->in_fd == pfd[i].fd)
					flush_stdin(p);
				break;
			}
		}
		for (int i = 0; i < MAX_XFERS; i++)
			if (xfers[i].used && xfers[i].get)
				pump_get(&xfers[i]);
	}
}
