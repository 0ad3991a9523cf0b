/*
 * Building an index from an image source into the local store (and optionally into an
 * OCI artifact layout ready to push). Streams every layer once: blob -> SHA-256 check ->
 * decompression -> diff_id check -> tar entries -> merged tree; regular file data ->
 * content-defined chunks -> zstd -> store. Nothing partial is published on failure.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct idx_store;
struct idx_source;

struct idx_build_opts {
	const char *platform;	  /* "os/arch[/variant]", default "linux/amd64" */
	const char *oci_out;	  /* write the index artifact as an OCI layout here, or NULL */
	bool progress;		  /* progress lines on stderr */
	int zstd_level;		  /* 0 = default (1: see bench/results/index.md) */
	uint64_t pack_target;	  /* target pack size in bytes, 0 = default (32 MiB) */
	int threads;		  /* compression workers, 0 = number of CPUs */
	/* Startup order from first-touch traces (indexer/trace.h): these chunk ids, in this
	 * order, are laid out first and form the startup prefetch list, ahead of the list the
	 * image config gives. Ids the image does not have are skipped; repeats count once. */
	const uint8_t (*startup_ids)[32];
	uint32_t n_startup_ids;
	/* zstd level of the chunks startup_ids names (what a cold start fetches first and waits
	 * for): 0 = default (9: 10 % fewer bytes and faster to decompress than level 1 on
	 * binaries, for ~6x the compression time of those chunks only; bench/results/sandbox.md);
	 * the other chunks keep zstd_level. */
	int startup_level;
};

struct idx_build_result {
	char index_digest[72];
	char manifest_digest[72];
	char config_digest[72];
	uint64_t chunks;	 /* chunks in the index */
	uint64_t new_chunks;	 /* chunks that were not yet in the store */
	uint64_t new_bytes;	 /* stored bytes added to the store */
	uint64_t file_bytes;	 /* bytes of regular files in the merged tree */
	uint64_t layers;
};

/* Artifact and media types (docs/format.md). */
#define IDX_ARTIFACT_TYPE   "application/vnd.isorun.index.v1"
#define IDX_MEDIA_INDEX	    "application/vnd.isorun.index.v1.bin"
/* The same bytes as one zstd frame: what `isorun-index build` writes (a third of the size). */
#define IDX_MEDIA_INDEX_ZSTD "application/vnd.isorun.index.v1.bin+zstd"
#define IDX_MEDIA_PACK	    "application/vnd.isorun.pack.v1.zstd"

/*
 * Build the index of the image `src` names. The index is published in the store and the
 * reference recorded. -EPROTO malformed image (the log names layer and entry), -EBADMSG
 * digest mismatch, -ENOTSUP unsupported media type, -EFBIG over a size cap.
 */
int idx_build(struct idx_store *store, struct idx_source *src, const struct idx_build_opts *opts,
	      struct idx_build_result *ret);
