/* The FUSE low-level operations over an index and its chunk engine. */
#pragma once

#include <fuse_lowlevel.h>

struct idx_reader;
struct fs_engine;

/* Userdata of the session: borrowed reader and engine (both thread-safe). */
struct fs_ops_ctx {
	const struct idx_reader *r;
	struct fs_engine *e;
	double timeout; /* entry and attr timeout, seconds: the image never changes */
};

extern const struct fuse_lowlevel_ops fs_ops;
