/*
 * The tree stream (protocol version 2): a directory's contents as one byte stream, carried
 * by the FILE_DATA frames of a FILE_PUT or FILE_GET of a directory (docs/protocol.md
 * "Directories"). Shared by the agent (static, musl, libc only) and the host side, which
 * both read a directory into a stream and write a stream into a directory.
 *
 * Record: u32 mode (st_mode: type and permission bits), u32 uid, u32 gid, u64 size,
 * u64 mtime_ns, str path (relative, '/'-separated, no empty, "." or ".." component), then
 * `size` bytes: a regular file's contents, a symlink's target; directories and other types
 * have size 0. Records come in pre-order: a directory before its entries. The stream ends
 * with its stream's empty FILE_DATA, between records.
 *
 * The writer is the half that takes input from the other side: on the host, from a
 * sandbox, which is not trusted. It creates every entry relative to a directory it holds
 * open, walks each path one component at a time with O_NOFOLLOW (a symlink the stream
 * created, or one already there, is never followed), writes files beside their name and
 * renames them over it, and masks permission bits with the caller's mask (the host drops
 * set-id bits).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/protocol.h"

#define AGENT_TREE_FIXED     28 /* a record's bytes before its path string */
#define AGENT_TREE_HDR_MAX   (AGENT_TREE_FIXED + 4 + AGENT_MAX_PATH)
#define AGENT_TREE_MAX_DEPTH 128 /* directory levels a reader descends (open fds) */

struct agent_tree_entry {
	uint32_t mode; /* S_IFREG, S_IFDIR, S_IFLNK, ... | permission bits */
	uint32_t uid, gid;
	uint64_t size;	   /* bytes that follow the record */
	uint64_t mtime_ns; /* since the epoch; 0 for earlier times */
	const char *path;
};

/* True for a relative path the stream may carry (see above). */
bool agent_tree_path_ok(const char *path);

/*
 * Append one record header to `b` (the caller then appends e->size bytes). -EPROTO for a
 * path agent_tree_path_ok refuses or a size its type cannot have, -EFBIG for a long path.
 */
int agent_tree_hdr_encode(struct agent_wbuf *b, const struct agent_tree_entry *e);

/* What a decoder calls: entry (the header), data (its bytes, in pieces), end (after the
 * last byte; right after entry for size 0). A negative return stops the decoder with it. */
struct agent_tree_sink {
	int (*entry)(void *ud, const struct agent_tree_entry *e);
	int (*data)(void *ud, const uint8_t *p, size_t n);
	int (*end)(void *ud);
};

/* Incremental decoder: feed it the stream in pieces of any size. */
struct agent_tree_dec {
	uint8_t hdr[AGENT_TREE_HDR_MAX];
	size_t have;   /* header bytes buffered */
	bool body;     /* inside a record's contents */
	uint64_t left; /* contents bytes still to come */
	uint64_t records;
};
void agent_tree_dec_init(struct agent_tree_dec *d);
/* -EPROTO for a malformed record (bad type, size for its type, path), -EFBIG for a path
 * over AGENT_MAX_PATH, or the sink's error. After an error the decoder is unusable. */
int agent_tree_dec_feed(struct agent_tree_dec *d, const uint8_t *p, size_t n,
			const struct agent_tree_sink *sink, void *ud);
/* At the end of the stream: -EPROTO if it stopped inside a record. */
int agent_tree_dec_finish(const struct agent_tree_dec *d);

/*
 * Reader: a directory's contents as a stream, on its filesystem only: a directory where
 * another one is mounted (/proc below a sandbox's root) is sent empty. Devices, fifos and
 * sockets are sent as records without contents (receivers skip them) and counted in
 * `skipped`. Takes `dirfd` (an open directory); reads nothing until
 * agent_tree_reader_read. A file that shrinks while it is read is padded
 * with zeros to the size its record announced, one that grows is cut at it.
 */
struct agent_tree_reader {
	void *dirs[AGENT_TREE_MAX_DEPTH]; /* DIR *, innermost last */
	size_t plens[AGENT_TREE_MAX_DEPTH];
	int depth;
	char path[AGENT_MAX_PATH]; /* the current entry's relative path */
	struct agent_wbuf pend;	   /* a header (and a link target) not yet handed out */
	size_t pend_off;
	int fd;			   /* the regular file being read, -1 if none */
	uint64_t left;		   /* its bytes still to hand out */
	const char *op;		   /* on failure: what failed, for the message; path names where */
	uint64_t entries, skipped; /* records made; of them, devices, fifos and sockets */
	uint64_t dev;		   /* the filesystem of the directory read */
};
int agent_tree_reader_init(struct agent_tree_reader *r, int dirfd);
/* Up to `cap` (>= 1) bytes of the stream into buf: > 0 bytes, 0 at its end, -errno (with
 * r->op and r->path) on failure. */
ssize_t agent_tree_reader_read(struct agent_tree_reader *r, uint8_t *buf, size_t cap);
void agent_tree_reader_fini(struct agent_tree_reader *r);

/*
 * Writer: a stream into the directory `root` (borrowed). Use agent_tree_writer_sink with a
 * decoder; agent_tree_writer_finish at the stream's end gives directories their modes and
 * times (last, so a read-only directory still receives its entries).
 */
struct agent_tree_dirmeta;
struct agent_tree_writer {
	int root;
	bool chown;	    /* give entries the records' uid/gid; else they are ours */
	uint32_t perm_mask; /* applied to every mode */
	/* the current entry */
	struct agent_tree_entry e;
	int pfd, fd; /* its directory (borrowed), its temporary file */
	int cfd;     /* the directory last walked to, kept open; its path: */
	char cpath[AGENT_MAX_PATH];
	long pid;    /* in temporary names */
	char name[256], tmp[64];
	char link[AGENT_MAX_PATH];
	size_t link_len;
	bool skip;
	struct agent_tree_dirmeta *dirs;
	size_t ndirs, adirs;
	uint64_t written, skipped; /* entries made; entries of other types left out */
	unsigned id, tmp_seq; /* in temporary names */
	char where[AGENT_MAX_PATH]; /* on failure: the entry, and what failed */
	const char *op;
};
void agent_tree_writer_init(struct agent_tree_writer *w, int root, bool chown, uint32_t perm_mask);
extern const struct agent_tree_sink agent_tree_writer_sink;
int agent_tree_writer_finish(struct agent_tree_writer *w);
/* Removes a temporary file left by a failure; frees. */
void agent_tree_writer_fini(struct agent_tree_writer *w);
