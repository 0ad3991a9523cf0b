/*
 * First-touch traces (docs/trace.md, written by `isorun mount --record-trace`) read back as
 * a startup order: the ids of the chunks a program read, in the order it first read them.
 * `isorun-index build --startup-trace FILE` lays those chunks out first in the packs and
 * makes them the index's startup prefetch list.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct idx_trace {
	uint8_t (*ids)[32]; /* chunk ids (SHA-256 of the uncompressed bytes), first touch first */
	uint32_t n;
	char index[72];	    /* "sha256:..." of the index the trace was recorded against */
};

/*
 * Parse a trace. `name` is used in messages. -EPROTO (logged with the line number) for
 * anything that is not a version-1 trace: bad magic or version, malformed header or record,
 * a sequence number out of order, a chunk number beyond the header's count, a repeated
 * chunk; -ENOMEM. On failure *ret is empty.
 */
int idx_trace_parse(const char *name, const void *data, size_t len, struct idx_trace *ret);
/* Read and parse FILE. -errno of the read (logged), or idx_trace_parse's errors. */
int idx_trace_load(const char *path, struct idx_trace *ret);
void idx_trace_fini(struct idx_trace *t);
