/*
 * struct idx_source over a registry (reg_client). Owned by the registry module's engineer;
 * see indexer/include/indexer/source_registry.h.
 *
 * Prefetch: the source remembers the layer order of the last image manifest it served. When
 * open_blob(layer i) is called, layer i+1's stream is opened too and parked in `next`; its
 * download thread fills the 4 MiB ring and then waits, so prefetch costs bounded memory.
 * A parked stream that is never asked for is closed with the source.
 */
#include "indexer/source_registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"
#include "indexer/source.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/ref.h"

struct layer_slot {
	char digest[CM_DIGEST_STR_SIZE];
	uint64_t size;
};

struct reg_source {
	struct idx_source base; /* first: the ops receive &base */
	struct reg_client *client;
	struct reg_ref *ref;
	struct layer_slot *layers; /* of the last manifest served */
	size_t n_layers;
	struct reg_blob_stream *next; /* prefetched stream of next_digest, or NULL */
	char next_digest[CM_DIGEST_STR_SIZE];
};

struct reg_stream {
	struct idx_stream base;
	struct reg_blob_stream *s;
};

static struct reg_source *to_src(struct idx_source *s)
{
	return (struct reg_source *)s;
}

static void remember_layers(struct reg_source *rs, const struct cm_buf *body, const char *mt)
{
	struct reg_manifest *m = NULL;
	if (reg_doc_sniff((const char *)body->data, body->len, mt) != REG_DOC_MANIFEST ||
	    reg_manifest_parse((const char *)body->data, body->len, mt, &m) < 0)
		return;
	size_t n = reg_manifest_layer_count(m);
	struct layer_slot *l = calloc(n ? n : 1, sizeof(*l));
	if (l) {
		for (size_t i = 0; i < n; i++) {
			memcpy(l[i].digest, reg_manifest_layer(m, i)->digest, CM_DIGEST_STR_SIZE);
			l[i].size = reg_manifest_layer(m, i)->size;
		}
		free(rs->layers);
		rs->layers = l;
		rs->n_layers = n;
	}
	reg_manifest_free(m);
}

static int src_get_manifest(struct idx_source *s, const char *ref, struct cm_buf *body,
			    char **ret_media_type, char ret_digest[72])
{
	struct reg_source *rs = to_src(s);
	struct reg_ref *target = NULL;
	_cleanup_free_ char *mt = NULL;
	size_t base = body->len;
	int r;

	if (ref)
		r = reg_ref_with(rs->ref, ref, &target);
	else
		r = reg_ref_dup(rs->ref, &target);
	if (r == -EINVAL)
		return cm_log_ret(-EINVAL, "'%s' is neither a tag nor a sha256 digest", ref);
	if (r < 0)
		return r;
	r = reg_client_get_manifest(rs->client, target, body, &mt, ret_digest);
	reg_ref_free(target);
	if (r < 0)
		return r;
	struct cm_buf view = {.data = body->data + base, .len = body->len - base};
	remember_layers(rs, &view, mt);
	*ret_media_type = TAKE_PTR(mt);
	return 0;
}

static int src_get_blob(struct idx_source *s, const char *digest, uint64_t size,
			struct cm_buf *body)
{
	struct reg_source *rs = to_src(s);
	size_t base = body->len;
	int r = reg_client_get_blob(rs->client, rs->ref, digest, body);
	if (r == 0 && size != UINT64_MAX && body->len - base != size) {
		size_t got = body->len - base;
		body->len = base;
		return cm_log_ret(-EBADMSG, "blob %s has %zu bytes, its descriptor says %llu",
				  digest, got, (unsigned long long)size);
	}
	return r;
}

static ssize_t stream_read(struct idx_stream *st, void *buf, size_t len)
{
	struct reg_stream *s = (struct reg_stream *)st;
	ssize_t n;
	/* the idx_stream contract excludes -EAGAIN: the client already retried */
	n = reg_blob_stream_read(s->s, buf, len);
	return n == -EAGAIN ? -EIO : n;
}

static void stream_close(struct idx_stream *st)
{
	struct reg_stream *s = (struct reg_stream *)st;
	reg_blob_stream_close(s->s);
	free(s);
}

static void prefetch_after(struct reg_source *rs, const char *digest)
{
	for (size_t i = 0; i + 1 < rs->n_layers; i++) {
		if (strcmp(rs->layers[i].digest, digest) != 0)
			continue;
		const struct layer_slot *n = &rs->layers[i + 1];
		if (!strcmp(n->digest, digest))
			return;
		if (reg_client_open_blob(rs->client, rs->ref, n->digest, n->size, &rs->next) == 0)
			memcpy(rs->next_digest, n->digest, CM_DIGEST_STR_SIZE);
		return; /* a failed prefetch is not an error: open_blob will report it */
	}
}

static int src_open_blob(struct idx_source *s, const char *digest, uint64_t size,
			 struct idx_stream **ret)
{
	struct reg_source *rs = to_src(s);
	struct reg_blob_stream *bs = NULL;
	int r = 0;

	if (rs->next && !strcmp(rs->next_digest, digest)) {
		bs = TAKE_PTR(rs->next);
	} else {
		reg_blob_stream_close(TAKE_PTR(rs->next));
		r = reg_client_open_blob(rs->client, rs->ref, digest, size, &bs);
		if (r < 0)
			return r;
	}
	struct reg_stream *st = calloc(1, sizeof(*st));
	if (!st) {
		reg_blob_stream_close(bs);
		return -ENOMEM;
	}
	st->base.read = stream_read;
	st->base.close = stream_close;
	st->s = bs;
	prefetch_after(rs, digest);
	*ret = &st->base;
	return 0;
}

static void src_free(struct idx_source *s)
{
	struct reg_source *rs = to_src(s);
	if (!rs)
		return;
	reg_blob_stream_close(rs->next);
	reg_client_free(rs->client);
	reg_ref_free(rs->ref);
	free(rs->layers);
	free(rs->base.ref);
	free(rs);
}

static const struct idx_source_ops registry_ops = {
    .kind = "registry",
    .get_manifest = src_get_manifest,
    .get_blob = src_get_blob,
    .open_blob = src_open_blob,
    .free = src_free,
};

int idx_source_registry_open(const char *ref, const struct reg_options *o, struct idx_source **ret)
{
	const char *why = NULL;
	struct reg_source *rs = calloc(1, sizeof(*rs));
	int r;

	if (!rs)
		return -ENOMEM;
	rs->base.ops = &registry_ops;
	if (cm_str_has_prefix(ref, "docker://"))
		ref += 9;
	r = reg_ref_parse(ref, &rs->ref, &why);
	if (r < 0) {
		src_free(&rs->base);
		return cm_log_ret(r, "invalid image reference '%s': %s", ref, why ? why : "?");
	}
	_cleanup_free_ char *canon = reg_ref_format(rs->ref);
	/* The canonical form, as `isorun pull` records references in the store. */
	rs->base.ref = canon ? strdup(canon) : NULL;
	if (!rs->base.ref) {
		src_free(&rs->base);
		return -ENOMEM;
	}
	r = reg_client_new(o, &rs->client);
	if (r < 0) {
		src_free(&rs->base);
		return r;
	}
	*ret = &rs->base;
	return 0;
}
