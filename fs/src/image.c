/*
 * `isorun pull`: getting an index into the store, from a local OCI layout (indexed here)
 * or from the isorun index artifact that CI pushed next to the image (fs/image.h).
 */
#include "fs/image.h"
#include "fs/cache.h"
#include "fs_int.h"

#include "indexer/artifact.h"
#include "indexer/build.h"
#include "indexer/index.h"
#include "indexer/source.h"
#include "indexer/source_registry.h"
#include "indexer/store.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/ref.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* An index blob larger than this is refused (the biggest real images index to a few MiB). */
#define FS_INDEX_MAX (256u << 20)

DEFINE_CLEANUP_FUNC(struct idx_source, idx_source_free)
DEFINE_CLEANUP_FUNC(struct reg_ref, reg_ref_free)
DEFINE_CLEANUP_FUNC(struct reg_client, reg_client_free)
DEFINE_CLEANUP_FUNC(struct reg_manifest, reg_manifest_free)
DEFINE_CLEANUP_FUNC(struct reg_index, reg_index_free)
static inline void buf_finip(struct cm_buf *b)
{
	cm_buf_fini(b);
}

/* The index file of `digest` is in the store at `root`. */
static bool index_file_present(const char *root, const char *digest)
{
	_cleanup_free_ char *p = NULL;
	return idx_store_index_path_at(root, digest, &p) == 0 && access(p, R_OK) == 0;
}

static bool index_present(struct idx_store *s, const char *digest)
{
	return index_file_present(idx_store_root(s), digest);
}

/* Index digest `d` (a lookup's answer, or its error `r`) into ret, if its blob is present. */
static int found(struct idx_store *s, int r, const char *d, char ret[72])
{
	if (r < 0)
		return r;
	if (!index_present(s, d))
		return -ENOENT;
	snprintf(ret, 72, "%s", d);
	return 0;
}

/* Index digest recorded for exactly `key`, if its blob is present. */
static int find(struct idx_store *s, const char *key, char ret[72])
{
	_cleanup_free_ char *d = NULL;
	int r = idx_store_find_index(s, key, &d);
	return found(s, r, d, ret);
}

/* REPO@DIGEST whose manifest the store has, recorded under another reference of the same
 * repository (a tag): the same image, found with no registry (offline too). A digest that
 * names a list of platforms is not recorded as such: the registry says which one applies. */
static int find_by_digest(struct idx_store *s, const struct reg_ref *rr, char ret[72])
{
	if (!rr->digest)
		return -ENOENT;
	_cleanup_free_ char *repo = cm_strdupf("%s/%s", rr->domain, rr->path), *d = NULL;
	if (!repo)
		return -ENOMEM;
	int r = idx_store_find_index_in_repo(s, repo, rr->digest, &d);
	return found(s, r, d, ret);
}

/* The canonical form of a user reference: "oci:/abs/path[:tag]" or "domain/path[:tag][@d]". */
static int canonical(const char *ref, char **ret)
{
	if (cm_str_has_prefix(ref, "oci:")) /* quiet: the pull that follows says what is wrong */
		return idx_source_oci_ref(ref, ret);
	_cleanup_(reg_ref_freep) struct reg_ref *rr = NULL;
	int r = reg_ref_parse(ref, &rr, NULL);
	if (r < 0)
		return r;
	*ret = reg_ref_format(rr);
	return *ret ? 0 : -ENOMEM;
}

int fs_image_lookup(struct idx_store *s, const char *ref, char ret[72])
{
	if (cm_digest_valid(ref) && index_present(s, ref)) {
		snprintf(ret, 72, "%s", ref);
		return 0;
	}
	if (find(s, ref, ret) == 0)
		return 0;
	_cleanup_free_ char *canon = NULL;
	if (cm_digest_valid(ref))
		return -ENOENT;
	if (cm_str_has_prefix(ref, "oci:"))
		return canonical(ref, &canon) < 0 ? -ENOENT : find(s, canon, ret);
	_cleanup_(reg_ref_freep) struct reg_ref *rr = NULL; /* parsed once for both lookups */
	if (reg_ref_parse(ref, &rr, NULL) < 0)
		return -ENOENT;
	if (!(canon = reg_ref_format(rr)))
		return -ENOMEM;
	return find(s, canon, ret) == 0 ? 0 : find_by_digest(s, rr, ret);
}

/* The ROOT/refs/ answer for exactly `key`, if its index file is present. */
static bool find_fast(const char *root, const char *key, char ret[72])
{
	return idx_store_find_index_fast(root, key, ret) == 0 && index_file_present(root, ret);
}

int fs_image_lookup_fast(const char *root, const char *ref, char ret[72])
{
	if (cm_digest_valid(ref) && index_file_present(root, ref)) { /* an index digest */
		snprintf(ret, 72, "%s", ref);
		return 0;
	}
	if (cm_digest_valid(ref)) /* a manifest digest */
		return find_fast(root, ref, ret) ? 0 : -ENOENT;
	if (cm_str_has_prefix(ref, "oci:"))
		return -ENOENT;
	if (find_fast(root, ref, ret))
		return 0;
	_cleanup_free_ char *canon = NULL;
	return canonical(ref, &canon) == 0 && find_fast(root, canon, ret) ? 0 : -ENOENT;
}

static int pull_oci(struct idx_store *s, const char *ref, const struct fs_pull_opts *o,
		    struct fs_pull_result *ret)
{
	_cleanup_(idx_source_freep) struct idx_source *src = NULL;
	int r = idx_source_oci_open(ref, &src);
	if (r == -ENOMEM)
		return cm_log_ret(r, "pull: cannot open %s: %s", ref, strerror(-r));
	if (r < 0) /* (idx_source_oci_open said what) */
		return r;
	snprintf(ret->ref, sizeof(ret->ref), "%s", src->ref);
	if (!o->refresh && find(s, src->ref, ret->index_digest) == 0) {
		ret->cached = true;
	} else {
		struct idx_build_opts bo = {.platform = o->platform, .progress = o->progress};
		struct idx_build_result br;
		if ((r = idx_build(s, src, &bo, &br)) < 0)
			return cm_log_ret(r, "pull: indexing %s failed: %s", ref, strerror(-r));
		snprintf(ret->index_digest, sizeof(ret->index_digest), "%s", br.index_digest);
		ret->built = true;
	}
	_cleanup_free_ char *path = NULL;
	_cleanup_(idx_reader_freep) struct idx_reader *rd = NULL;
	if ((r = idx_store_index_path(s, ret->index_digest, &path)) < 0 ||
	    (r = idx_reader_open(path, &rd)) < 0)
		return cm_log_ret(r, "pull: index %s unreadable", ret->index_digest);
	snprintf(ret->manifest_digest, sizeof(ret->manifest_digest), "%s",
		 idx_reader_manifest_digest(rd));
	return fs_cache_add_index(s, ret->index_digest);
}

/* The artifact manifest of a referrer, checked (idx_artifact_manifest), with an index blob
 * this process accepts to hold. */
static int artifact_manifest(struct reg_client *c, const struct reg_ref *repo, const char *adigest,
			     const char *mdig, struct reg_manifest **ret,
			     const struct reg_descriptor **ret_index_layer)
{
	int r = idx_artifact_manifest(c, repo, adigest, mdig, ret, ret_index_layer);
	if (r == 0 && (*ret_index_layer)->size > FS_INDEX_MAX) {
		r = cm_log_ret(-EFBIG, "pull: index blob of %s is too large (%llu bytes)", adigest,
			       (unsigned long long)(*ret_index_layer)->size);
		reg_manifest_free(*ret);
		*ret = NULL;
	}
	return r;
}

/* Fetch index blob `digest` into `index` (verified by its digest as it arrives). */
static int index_fetch(struct reg_client *c, const struct reg_ref *repo, const char *digest,
		       struct cm_buf *index)
{
	cm_buf_clear(index);
	index->cap = FS_INDEX_MAX;
	return reg_client_get_blob(c, repo, digest, index);
}

/* Decode fetched index layer `layer` (idx_artifact_index_decode) and check it is an index
 * built for `mdig`. ret_digest gets the index's own digest. */
static int index_check(const struct reg_descriptor *layer, const char *mdig, struct cm_buf *index,
		       struct idx_reader **ret, char ret_digest[72])
{
	int r = idx_artifact_index_decode(index, layer->media_type, layer->digest, FS_INDEX_MAX,
					  ret_digest);
	if (r < 0)
		return r;
	/* get_blob checked the bytes against the digest and decode hashed what it
	 * decompressed: not hashed again. */
	if ((r = idx_reader_open_mem_digest(index->data, index->len, ret_digest, ret)) < 0)
		return cm_log_ret(r, "pull: index blob %s is malformed", layer->digest);
	if (strcmp(idx_reader_manifest_digest(*ret), mdig) != 0)
		return cm_log_ret(-EPROTO, "pull: index %s was built for %s, not %s", layer->digest,
				  idx_reader_manifest_digest(*ret), mdig);
	return 0;
}

struct manifest_job {
	struct reg_client *c;
	const struct reg_ref *repo;
	const char *adigest, *mdig;
	struct reg_manifest *m;
	const struct reg_descriptor *index_layer;
	int r;
};

static void *manifest_thread(void *arg)
{
	struct manifest_job *j = arg;
	j->r = artifact_manifest(j->c, j->repo, j->adigest, j->mdig, &j->m, &j->index_layer);
	return NULL;
}

/*
 * Try one referrer `d` (an entry of the referrers list): the artifact manifest must be an
 * isorun index whose subject is `mdig`; its index blob must validate, name `mdig` as its
 * source, and use only packs that are layers of the artifact. 0 and *ret_index on success.
 *
 * When the list's entry carries the index blob's digest (the artifact's annotations, which
 * the referrers API and the tag fallback copy into the entry), the blob is fetched while the
 * manifest is, on another thread: one round trip less before a cold start can mount (the
 * same checks, the annotation only says which blob to start with).
 */
static int try_artifact(struct reg_client *c, const struct reg_ref *repo,
			const struct reg_descriptor *d, const char *mdig, struct cm_buf *index,
			char ret_digest[72])
{
	struct manifest_job j = {.c = c, .repo = repo, .adigest = d->digest, .mdig = mdig};
	/* the index layer's blob; artifacts from before compressed index layers name only
	 * the index, which was that blob */
	const char *hint = reg_descriptor_annotation(d, "dev.isorun.index.blob");
	if (!hint)
		hint = reg_descriptor_annotation(d, "dev.isorun.index.digest");
	const char *fmt = reg_descriptor_annotation(d, "dev.isorun.index.format");
	bool early = hint && cm_digest_valid(hint) && fmt && !strcmp(fmt, "1");
	pthread_t th;
	if (early && pthread_create(&th, NULL, manifest_thread, &j) != 0)
		early = false;
	int br = early ? index_fetch(c, repo, hint, index) : 0;
	if (early)
		pthread_join(th, NULL);
	else
		manifest_thread(&j);
	_cleanup_(reg_manifest_freep) struct reg_manifest *m = j.m;
	int r = j.r;
	if (r < 0)
		return r;
	if (early && !strcmp(hint, j.index_layer->digest)) {
		if (br < 0)
			return br;
		log_debug("pull: index blob %s, named by the referrers list, fetched beside "
			  "artifact %s", hint, d->digest);
	} else {
		/* no hint, or one the manifest does not confirm: its own index layer */
		if (early)
			log_warn("pull: the referrers list names index blob %s for artifact %s, "
				 "whose manifest names %s: the manifest's is used",
				 hint, d->digest, j.index_layer->digest);
		if ((r = index_fetch(c, repo, j.index_layer->digest, index)) < 0)
			return r;
	}
	_cleanup_(idx_reader_freep) struct idx_reader *rd = NULL;
	char idig[72];
	if ((r = index_check(j.index_layer, mdig, index, &rd, idig)) < 0)
		return r;
	for (uint32_t p = 0; p < idx_reader_pack_count(rd); p++) {
		struct idx_pack pk;
		char pd[CM_DIGEST_STR_SIZE];
		bool found = false;
		if ((r = idx_reader_pack(rd, p, &pk)) < 0)
			return r;
		cm_digest_format(pk.digest, pd);
		for (size_t i = 0; i < reg_manifest_layer_count(m) && !found; i++)
			found = !strcmp(reg_manifest_layer(m, i)->digest, pd);
		if (!found)
			return cm_log_ret(-EPROTO,
					  "pull: pack %s of the index is not in artifact %s", pd,
					  d->digest);
	}
	snprintf(ret_digest, 72, "%s", idig);
	return 0;
}

/*
 * No artifact: "first use builds". Index the image from its layers, streamed from the
 * registry; every chunk ends up local, so the index needs no remote. The build must see
 * the manifest we resolved (a tag may move meanwhile).
 */
static int build_from_registry(struct idx_store *s, const char *refstr,
			       const struct reg_options *ro, const struct fs_pull_opts *o,
			       struct fs_pull_result *ret)
{
	log_info("pull: %s has no isorun index artifact: indexing it locally", ret->ref);
	_cleanup_(reg_ref_freep) struct reg_ref *ref = NULL, *pinned = NULL;
	int r = reg_ref_parse(refstr, &ref, NULL);
	if (r == 0)
		r = reg_ref_with(ref, ret->manifest_digest, &pinned);
	_cleanup_free_ char *pinned_s = r == 0 ? reg_ref_format(pinned) : NULL;
	if (r < 0 || !pinned_s)
		return r < 0 ? r : -ENOMEM;
	_cleanup_(idx_source_freep) struct idx_source *src = NULL;
	if ((r = idx_source_registry_open(pinned_s, ro, &src)) < 0)
		return r;
	struct idx_build_opts bo = {.platform = o->platform, .progress = o->progress};
	struct idx_build_result br;
	if ((r = idx_build(s, src, &bo, &br)) < 0)
		return cm_log_ret(r, "pull: indexing %s failed: %s", ret->ref, strerror(-r));
	if (strcmp(br.manifest_digest, ret->manifest_digest) != 0)
		return cm_log_ret(-EBADMSG, "pull: indexed %s, expected %s", br.manifest_digest,
				  ret->manifest_digest);
	snprintf(ret->index_digest, sizeof(ret->index_digest), "%s", br.index_digest);
	ret->built = true;
	if ((r = fs_cache_add_index(s, ret->index_digest)) < 0)
		return r;
	return idx_store_record_image(s, ret->ref, ret->manifest_digest, ret->index_digest);
}

struct referrers_job {
	struct reg_client *c;
	const struct reg_ref *ref;
	struct reg_index *refs;
	int r;
};

static void *referrers_thread(void *arg)
{
	struct referrers_job *j = arg;
	cm_log_demote_thread(true); /* asked for ahead: pull_registry asks again after a failure */
	j->r =
	    reg_client_referrers(j->c, j->ref, j->ref->digest, IDX_ARTIFACT_TYPE, &j->refs, NULL);
	return NULL;
}

static int pull_registry(struct idx_store *s, const char *refstr, const struct fs_pull_opts *o,
			 struct fs_pull_result *ret)
{
	_cleanup_(reg_ref_freep) struct reg_ref *ref = NULL;
	const char *why = NULL;
	int r = reg_ref_parse(refstr, &ref, &why);
	if (r < 0)
		return cm_log_ret(r, "pull: invalid reference '%s': %s", refstr,
				  why ? why : strerror(-r));
	_cleanup_free_ char *schemes = fs_scheme_cache(s);
	struct reg_options ro = {.scheme_cache = schemes,
				 .platform = o->platform,
				 .authfile = o->authfile,
				 .timeout_s = o->timeout_s ? o->timeout_s : 60,
				 .insecure_registries = fs_insecure_registries()};
	_cleanup_(reg_client_freep) struct reg_client *c = NULL;
	if ((r = reg_client_new(&ro, &c)) < 0)
		return r;
	_cleanup_free_ char *canon = reg_ref_format(ref);
	_cleanup_free_ char *repo = cm_strdupf("%s/%s", ref->domain, ref->path);
	if (!canon || !repo)
		return -ENOMEM;
	snprintf(ret->ref, sizeof(ret->ref), "%s", canon);
	/* A reference by digest names the manifest whose referrers a cold pull needs (unless it
	 * is an index of platforms, or the index is already here): they are asked for while the
	 * manifest is fetched, one round trip less before the mount (two on a registry without
	 * the referrers API, which falls back to a tag). An answer for another digest, or a
	 * failure (logged at debug level only), is dropped and the referrers asked for again. */
	struct referrers_job rj = {.c = c, .ref = ref};
	pthread_t rth;
	char known[72];
	bool early = ref->digest && find(s, ref->digest, known) != 0 &&
		     pthread_create(&rth, NULL, referrers_thread, &rj) == 0;
	_cleanup_(reg_manifest_freep) struct reg_manifest *m = NULL;
	r = reg_client_resolve(c, ref, NULL, &m, ret->manifest_digest);
	if (early)
		pthread_join(rth, NULL);
	_cleanup_(reg_index_freep) struct reg_index *refs = rj.refs;
	if (r < 0)
		return cm_log_ret(r, "pull: cannot resolve %s: %s", canon, reg_strerror(r));
	if (find(s, ret->manifest_digest, ret->index_digest) == 0) {
		ret->cached = true;
		_cleanup_free_ char *old = NULL;
		ret->remote = fs_cache_get_remote(s, ret->index_digest, &old) == 0;
		return idx_store_record_image(s, canon, ret->manifest_digest, ret->index_digest);
	}
	if (early && !strcmp(ref->digest, ret->manifest_digest) && (rj.r == 0 || rj.r == -ENOENT)) {
		r = rj.r;
		log_debug("pull: referrers of %s asked for beside the manifest", ref->digest);
	} else {
		reg_index_free(TAKE_PTR(refs));
		r = reg_client_referrers(c, ref, ret->manifest_digest, IDX_ARTIFACT_TYPE, &refs,
					 NULL);
	}
	if (r < 0 && r != -ENOENT)
		return cm_log_ret(r, "pull: cannot list referrers of %s: %s", canon, strerror(-r));
	_cleanup_(buf_finip) struct cm_buf index;
	cm_buf_init(&index, FS_INDEX_MAX);
	bool ok = false;
	size_t n;
	_cleanup_free_ const struct reg_descriptor **order = NULL;
	if ((r = reg_referrers_newest_first(refs, &order, &n)) < 0)
		return r;
	for (size_t i = 0; i < n && !ok; i++) {
		const struct reg_descriptor *d = order[i];
		if (d->artifact_type && strcmp(d->artifact_type, IDX_ARTIFACT_TYPE) != 0)
			continue;
		ok = try_artifact(c, ref, d, ret->manifest_digest, &index, ret->index_digest) ==
		     0;
	}
	if (!ok)
		return build_from_registry(s, refstr, &ro, o, ret);
	if ((r = idx_store_put_index_digest(s, index.data, index.len, ret->index_digest)) < 0)
		return cm_log_ret(r, "pull: cannot store the index: %s", strerror(-r));
	/* try_artifact validated the blob; its chunk references are recorded later (by the
	 * mount's daemon, in the background). */
	if ((r = fs_cache_set_remote(s, ret->index_digest, repo, ret->manifest_digest)) < 0 ||
	    (r = fs_cache_add_index(s, ret->index_digest)) < 0 ||
	    (r = idx_store_record_image(s, canon, ret->manifest_digest, ret->index_digest)) < 0)
		return r;
	ret->remote = true;
	return 0;
}

int fs_image_pull(struct idx_store *s, const char *ref, const struct fs_pull_opts *o,
		  struct fs_pull_result *ret)
{
	static const struct fs_pull_opts defaults;
	memset(ret, 0, sizeof(*ret));
	if (!o)
		o = &defaults;
	int r = fs_cache_init(s);
	if (r < 0)
		return r;
	if (cm_str_has_prefix(ref, "oci:"))
		return pull_oci(s, ref, o, ret);
	return pull_registry(s, ref, o, ret);
}
