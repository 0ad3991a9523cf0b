/*
 * Getting an image's index into the local store (`isorun pull`).
 *
 *   oci:PATH[:TAG]     indexed locally (idx_build); every chunk is local.
 *   registry reference resolved with the registry client; the isorun index artifact is
 *                      looked up among the referrers of the manifest digest and trusted
 *                      only when its subject is exactly that digest and the index names
 *                      that digest as its source; only the index blob is fetched: the packs
 *                      stay in the registry and mounts fetch chunks from them on demand.
 *                      Without an artifact the image is indexed locally from its layers,
 *                      streamed from the registry ("first use builds"); all its chunks are
 *                      then local.
 * Registries named in $ISORUN_INSECURE_REGISTRIES (comma-separated host[:port]) are reached
 * without TLS verification or over plain HTTP, like docker's --insecure-registry (probed on
 * first contact, remembered in ROOT/registry-schemes); an entry http://host[:port] or
 * https://host[:port] names the scheme, and nothing is probed.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct idx_store;

struct fs_pull_opts {
	const char *platform; /* "os/arch[/variant]", NULL: linux/amd64 */
	const char *authfile; /* NULL: the standard credential chain */
	unsigned timeout_s;   /* per registry operation, 0: 60 */
	bool progress;	      /* progress on stderr while indexing locally */
	bool refresh;	      /* resolve again even if the reference is known locally */
};

struct fs_pull_result {
	char ref[512]; /* canonical reference recorded in the store */
	char manifest_digest[72];
	char index_digest[72];
	bool remote; /* chunks come from a registry (index artifact) */
	bool built;  /* indexed locally during this call */
	bool cached; /* already in the store, nothing fetched */
};

/*
 * Make sure the store holds an index for `ref` and record it. -EINVAL bad reference,
 * -ENOENT image (or tag) not found, -EACCES refused, -EBADMSG digest mismatch, -EPROTO
 * malformed artifact or index, the errors of idx_build, transport errors of registry/client.h. Logs
 * the cause. Thread-safe for distinct stores.
 */
int fs_image_pull(struct idx_store *s, const char *ref, const struct fs_pull_opts *o,
		  struct fs_pull_result *ret);

/*
 * Find the index of `ref` (a reference as given to pull, a manifest digest or an index
 * digest) in the store without any network access. -ENOENT when unknown.
 */
int fs_image_lookup(struct idx_store *s, const char *ref, char ret_index_digest[72]);
/*
 * fs_image_lookup without opening the store (idx_store_find_index_fast, for the sandbox
 * verbs' warm path): -ENOENT whenever it does not know, the caller then does the full
 * lookup. `oci:` references always go the full way (their canonical form opens the layout).
 */
int fs_image_lookup_fast(const char *root, const char *ref, char ret_index_digest[72]);
