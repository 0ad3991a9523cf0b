/*
 * Referrers: the OCI 1.1 API when the registry has it, the tag schema otherwise.
 *
 * The tag-schema update is a read-modify-write of one tag with no compare-and-swap in the
 * distribution API (registry 2.8 has no If-Match on manifests). Writers converge instead:
 * see the loop in reg_client_push_referrer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "internal.h"

/* Build an index holding the entries of `src` (may be NULL) with artifact_type (NULL: all). */
static int filter_index(const struct reg_index *src, const char *artifact_type,
			struct reg_index **ret)
{
	int r;
	/* start from an empty index, add matching entries one by one */
	static const char empty[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_INDEX "\",\"manifests\":[]}";
	char *cur = strdup(empty);
	size_t cur_len = sizeof(empty) - 1;
	if (!cur)
		return -ENOMEM;
	for (size_t i = 0; src && i < reg_index_count(src); i++) {
		const struct reg_descriptor *d = reg_index_entry(src, i);
		if (artifact_type &&
		    (!d->artifact_type || strcmp(d->artifact_type, artifact_type) != 0))
			continue;
		char *next;
		size_t nl;
		r = reg_referrers_index_update(cur, cur_len, d, &next, &nl);
		free(cur);
		if (r < 0)
			return r;
		cur = next;
		cur_len = nl;
	}
	r = reg_index_parse(cur, cur_len, REG_MT_OCI_INDEX, ret);
	free(cur);
	return r;
}

/* GET the tag-schema index. 0 with *ret (NULL when the tag does not exist), -errno. */
static int get_tag_index(struct reg_client *c, const struct reg_ref *repo, const char *subject,
			 struct cm_buf *body, struct reg_index **ret,
			 char digest[CM_DIGEST_STR_SIZE])
{
	char tag[CM_DIGEST_STR_SIZE];
	struct reg_ref *tref = NULL;
	_cleanup_free_ char *mt = NULL;
	int r = reg_referrers_tag(subject, tag, sizeof(tag));
	if (r < 0)
		return r;
	r = reg_ref_with(repo, tag, &tref);
	if (r < 0)
		return r;
	*ret = NULL;
	/* a missing tag is the normal "no referrers yet" case: not logged */
	r = reg_get_manifest_ex(c, tref, body, &mt, digest, true);
	reg_ref_free(tref);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	r = reg_index_parse((const char *)body->data, body->len, mt, ret);
	if (r < 0)
		return cm_log_ret(-EPROTO, "referrers tag %s of %s does not hold an image index",
				  tag, repo->path);
	return 0;
}

/* The tag-schema index asked for beside the referrers API (tag_thread). */
struct tag_job {
	struct reg_client *c;
	const struct reg_ref *repo;
	const char *subject;
	struct cm_buf body;
	struct reg_index *ix;
	int r;
};

static void *tag_thread(void *arg)
{
	struct tag_job *j = arg;
	char dg[CM_DIGEST_STR_SIZE];
	/* Only used when the API is missing; a failure is asked again then, and reported. */
	cm_log_demote_thread(true);
	j->r = get_tag_index(j->c, j->repo, j->subject, &j->body, &j->ix, dg);
	return NULL;
}

int reg_client_referrers(struct reg_client *c, const struct reg_ref *repo,
			 const char *subject_digest, const char *artifact_type,
			 struct reg_index **ret, bool *ret_via_api)
{
	_cleanup_free_ char *scope = reg_scope(repo, "pull");
	struct cm_buf body;
	struct reg_req q;
	struct reg_index *ix = NULL;
	int r;

	if (!cm_digest_valid(subject_digest))
		return -EINVAL;
	if (!scope)
		return -ENOMEM;
	cm_buf_init(&body, REG_MANIFEST_MAX);
	/* Registries without the API (distribution 2.8, GHCR) answer it 404 and the tag schema
	 * is asked next: ask both at once, one round trip less there, one small request more
	 * (usually a 404) where the API answers. */
	struct tag_job tj = {.c = c, .repo = repo, .subject = subject_digest};
	cm_buf_init(&tj.body, REG_MANIFEST_MAX);
	pthread_t tth;
	bool beside = pthread_create(&tth, NULL, tag_thread, &tj) == 0;
	reg_req_init(&q, "GET", reg_ref_api_host(repo), scope);
	q.accept = REG_MT_OCI_INDEX;
	q.out = &body;
	if (artifact_type) {
		_cleanup_free_ char *at = reg_escape(artifact_type);
		q.path = at ? cm_strdupf("/v2/%s/referrers/%s?artifactType=%s", repo->path,
					 subject_digest, at)
			    : NULL;
	} else {
		q.path = reg_api_path(repo, "referrers", subject_digest);
	}
	r = q.path ? reg_req_perform(c, &q) : -ENOMEM;
	if (beside)
		pthread_join(tth, NULL);
	if (r == 200) {
		r = reg_index_parse((const char *)body.data, body.len, REG_MT_OCI_INDEX, &ix);
		if (r < 0)
			r = cm_log_ret(-EPROTO, "referrers API of %s answered a malformed index",
				       repo->domain);
		if (ret_via_api)
			*ret_via_api = true;
	} else if (r == 404) {
		/* no referrers API (distribution 2.8 answers 404): the tag schema */
		if (beside && tj.r == 0) {
			ix = TAKE_PTR(tj.ix);
			r = 0;
		} else {
			cm_buf_clear(&body);
			char dg[CM_DIGEST_STR_SIZE];
			r = get_tag_index(c, repo, subject_digest, &body, &ix, dg);
		}
		if (ret_via_api)
			*ret_via_api = false;
	} else if (r >= 0) {
		r = reg_req_fail(&q, "referrers query");
	}
	reg_req_fini(&q);
	cm_buf_fini(&body);
	reg_index_free(tj.ix);
	cm_buf_fini(&tj.body);
	if (r == 0)
		r = filter_index(ix, artifact_type, ret);
	reg_index_free(ix);
	return r;
}

static bool index_has(const struct reg_index *ix, const char *digest)
{
	for (size_t i = 0; ix && i < reg_index_count(ix); i++)
		if (!strcmp(reg_index_entry(ix, i)->digest, digest))
			return true;
	return false;
}

int reg_client_push_referrer(struct reg_client *c, const struct reg_ref *repo, const void *body,
			     size_t len, char ret_digest[CM_DIGEST_STR_SIZE])
{
	struct reg_manifest *m = NULL;
	struct reg_ref *byd = NULL;
	char digest[CM_DIGEST_STR_SIZE];
	bool acked = false;
	int r;

	r = reg_manifest_parse(body, len, REG_MT_OCI_MANIFEST, &m);
	if (r < 0)
		return cm_log_ret(r, "referrer to push is not an OCI image manifest");
	const struct reg_descriptor *subj = reg_manifest_subject(m);
	if (!subj) {
		reg_manifest_free(m);
		return cm_log_ret(-EINVAL, "referrer to push has no subject");
	}
	/* Registries check that referenced blobs exist: the OCI 1.1 empty descriptor ("{}")
	 * that artifacts use as config is ours to upload. */
	bool uses_empty = !strcmp(reg_manifest_config(m)->digest, REG_EMPTY_DIGEST);
	for (size_t i = 0; i < reg_manifest_layer_count(m); i++)
		uses_empty |= !strcmp(reg_manifest_layer(m, i)->digest, REG_EMPTY_DIGEST);
	if (uses_empty && (r = reg_client_push_blob(c, repo, "{}", 2, NULL)) < 0)
		goto out;
	uint8_t h[CM_SHA256_LEN];
	cm_sha256(body, len, h);
	cm_digest_format(h, digest);
	r = reg_ref_with(repo, digest, &byd);
	if (r == 0)
		r = reg_client_put_manifest_ex(c, byd, REG_MT_OCI_MANIFEST, body, len, NULL,
					       &acked);
	reg_ref_free(byd);
	if (r < 0 || acked)
		goto out;

	/* Tag schema: the index entry describes the artifact manifest, with its artifactType
	 * and annotations, as the spec's referrers response does. */
	size_t na;
	const struct reg_annotation *an = reg_manifest_annotations(m, &na);
	struct reg_descriptor add = {.media_type = REG_MT_OCI_MANIFEST,
				     .size = len,
				     .artifact_type = (char *)reg_manifest_artifact_type(m),
				     .annotations = (struct reg_annotation *)an,
				     .n_annotations = na};
	memcpy(add.digest, digest, CM_DIGEST_STR_SIZE);
	char tag[CM_DIGEST_STR_SIZE];
	r = reg_referrers_tag(subj->digest, tag, sizeof(tag));
	struct reg_ref *tref = NULL;
	if (r == 0)
		r = reg_ref_with(repo, tag, &tref);
	/*
	 * Converge instead of compare-and-swap (the registry has none): keep re-reading, and
	 * whenever our entry or any entry we have written before is missing, merge it back
	 * and write again; finish after two consecutive reads, spaced by a random 50-250 ms,
	 * that already hold everything. A writer whose entry was dropped by another's stale
	 * read-modify-write within that window puts it back. Entries are never removed here.
	 */
	struct reg_index *seen = NULL; /* the last index we wrote */
	int stable = 0;
	for (int round = 0; r == 0 && round < 12 && stable < 2; round++) {
		if (round > 0) {
			struct timespec ts = {
			    .tv_sec = 0,
			    .tv_nsec =
				(50 + (long)(((unsigned)rand() ^ (unsigned)cm_now_ns()) % 200u)) *
				1000000L};
			nanosleep(&ts, NULL);
		}
		struct cm_buf cur;
		struct reg_index *now = NULL;
		char dg[CM_DIGEST_STR_SIZE];
		cm_buf_init(&cur, REG_MANIFEST_MAX);
		r = get_tag_index(c, repo, subj->digest, &cur, &now, dg);
		char *doc = NULL;
		size_t dl = 0;
		bool changed = false;
		if (r == 0 && now && !(doc = strndup((const char *)cur.data, cur.len)))
			r = -ENOMEM;
		dl = doc ? cur.len : 0;
		cm_buf_fini(&cur);
		size_t nseen = seen ? reg_index_count(seen) : 0;
		for (size_t k = 0; r == 0 && k <= nseen; k++) {
			const struct reg_descriptor *e =
			    k < nseen ? reg_index_entry(seen, k) : &add;
			if (index_has(now, e->digest))
				continue;
			char *next = NULL;
			size_t nl = 0;
			r = reg_referrers_index_update(doc, dl, e, &next, &nl);
			free(doc);
			doc = next;
			dl = nl;
			changed = true;
		}
		reg_index_free(now);
		if (r == 0 && !changed) {
			stable++;
		} else if (r == 0) {
			stable = 0;
			r = reg_client_put_manifest(c, tref, REG_MT_OCI_INDEX, doc, dl, NULL);
			if (r == 0) {
				reg_index_free(seen);
				seen = NULL;
				r = reg_index_parse(doc, dl, REG_MT_OCI_INDEX, &seen);
			}
		}
		free(doc);
	}
	reg_index_free(seen);
	if (r == 0 && stable < 2)
		r = cm_log_ret(-EAGAIN,
			       "referrers tag %s of %s kept changing under concurrent writers; "
			       "push the referrer again",
			       tag, repo->path);
	reg_ref_free(tref);
out:
	if (r == 0 && ret_digest)
		memcpy(ret_digest, digest, CM_DIGEST_STR_SIZE);
	reg_manifest_free(m);
	return r;
}
