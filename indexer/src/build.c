/*
 * idx_build: image source -> merged tree + chunks -> index blob (+ OCI artifact layout).
 * Media types accepted (image-spec media-types.md, and Docker's v2 schema 2):
 *   manifests: application/vnd.oci.image.manifest.v1+json,
 *              application/vnd.docker.distribution.manifest.v2+json
 *   indexes:   application/vnd.oci.image.index.v1+json,
 *              application/vnd.docker.distribution.manifest.list.v2+json
 *   layers:    application/vnd.oci.image.layer[.nondistributable].v1.tar[+gzip|+zstd],
 *              application/vnd.docker.image.rootfs[.foreign].diff.tar[.gzip]
 * Anything else (schema 1 included) is rejected by name.
 */
#include "indexer/build.h"

#include "indexer/index.h"
#include "indexer/source.h"
#include "indexer/store.h"

#include "build_int.h"
#include "layer.h"
#include "pool.h"
#include "tree.h"
#include "writer.h"
#include "chunker.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include "registry/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define MANIFEST_CAP (4u << 20)
#define CONFIG_CAP   (8u << 20)
#define MAX_LAYERS   1024


DEFINE_CLEANUP_FUNC(json_object, json_object_put)
DEFINE_CLEANUP_FUNC(struct idx_tree, idx_tree_free)
DEFINE_CLEANUP_FUNC(struct idx_pool, idx_pool_free)
DEFINE_CLEANUP_FUNC(struct idx_config, idx_config_free)
DEFINE_CLEANUP_FUNC(struct reg_manifest, reg_manifest_free)
DEFINE_CLEANUP_FUNC(struct reg_index, reg_index_free)

static void cm_buf_finip(struct cm_buf *b)
{
	cm_buf_fini(b);
}
#define _cleanup_buf_ _cleanup_(cm_buf_finip)

struct layer_desc {
	char digest[72];
	uint64_t size;
	enum idx_compression comp;
};

static json_object *parse_json(const struct cm_buf *b, const char *what)
{
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return NULL;
	json_object *o = json_tokener_parse_ex(tok, (const char *)b->data, (int)b->len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!o || e != json_tokener_success || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		log_error("%s is not a JSON object", what);
		return NULL;
	}
	return o;
}

static int layer_compression(const char *mt, enum idx_compression *ret)
{
	static const struct {
		const char *mt;
		enum idx_compression c;
	} types[] = {
		{"application/vnd.oci.image.layer.v1.tar", IDX_COMP_NONE},
		{"application/vnd.oci.image.layer.v1.tar+gzip", IDX_COMP_GZIP},
		{"application/vnd.oci.image.layer.v1.tar+zstd", IDX_COMP_ZSTD},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar", IDX_COMP_NONE},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", IDX_COMP_GZIP},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", IDX_COMP_ZSTD},
		{"application/vnd.docker.image.rootfs.diff.tar", IDX_COMP_NONE},
		{"application/vnd.docker.image.rootfs.diff.tar.gzip", IDX_COMP_GZIP},
		{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", IDX_COMP_GZIP},
	};
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (!strcmp(mt, types[i].mt)) {
			*ret = types[i].c;
			return 0;
		}
	return cm_log_ret(-ENOTSUP, "unsupported layer media type '%s'", mt);
}

/* Read a regular file of the tree through the pool (prefetch analysis). */
static int read_tree_file(void *ud, const struct idx_tnode_inode *in, size_t max, uint8_t **ret,
			  size_t *ret_len)
{
	struct idx_pool *pool = ud;
	size_t want = in->size < max ? (size_t)in->size : max, got = 0;
	uint8_t *buf = malloc(want + 1);
	if (!buf)
		return -ENOMEM;
	_cleanup_free_ uint8_t *chunk = malloc(IDX_CDC_MAX_BYTES);
	if (!chunk) {
		free(buf);
		return -ENOMEM;
	}
	uint32_t n;
	struct idx_uchunk *uc = idx_pool_chunks(pool, &n);
	for (uint32_t s = 0; s < in->nslots && got < want; s++) {
		uint32_t c = idx_pool_slot_chunk(pool, in->slots[s]);
		int r = idx_pool_read_chunk(pool, c, chunk);
		if (r < 0) {
			free(buf);
			return r;
		}
		size_t take = MIN((size_t)uc[c].usize, want - got);
		memcpy(buf + got, chunk, take);
		got += take;
	}
	buf[got] = 0;
	*ret = buf;
	*ret_len = got;
	return 0;
}

/* --- OCI artifact layout output ------------------------------------------------------- */

struct oci_out {
	int dirfd;
	int pack_fd;
	uint32_t npacks;
	struct {
		char digest[72];
		uint64_t size;
	} *packs;
};

static int out_pack_data(void *ud, uint32_t pack, const uint8_t *data, size_t len)
{
	struct oci_out *o = ud;
	if (o->pack_fd < 0) {
		o->pack_fd = openat(o->dirfd, "blobs/sha256/.pack.tmp",
				    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (o->pack_fd < 0)
			return cm_log_ret(-errno, "oci-out: %s", strerror(errno));
	}
	return cm_write_full(o->pack_fd, data, len);
}

static int out_pack_done(void *ud, uint32_t pack, const uint8_t digest[32], uint64_t size)
{
	struct oci_out *o = ud;
	void *np = realloc(o->packs, (o->npacks + 1) * sizeof(*o->packs));
	if (!np)
		return -ENOMEM;
	o->packs = np;
	cm_digest_format(digest, o->packs[o->npacks].digest);
	o->packs[o->npacks].size = size;
	char name[96];
	snprintf(name, sizeof(name), "blobs/sha256/%s", o->packs[o->npacks].digest + 7);
	o->npacks++;
	if (o->pack_fd >= 0) {
		close(o->pack_fd);
		o->pack_fd = -1;
	}
	if (renameat(o->dirfd, "blobs/sha256/.pack.tmp", o->dirfd, name) < 0)
		return cm_log_ret(-errno, "oci-out: %s", strerror(errno));
	return 0;
}

static int write_blob(int dirfd, const void *data, size_t len, char ret_digest[72])
{
	uint8_t d[32];
	cm_sha256(data, len, d);
	cm_digest_format(d, ret_digest);
	char name[96];
	snprintf(name, sizeof(name), "blobs/sha256/%s", ret_digest + 7);
	return cm_write_file_atomic(dirfd, name, data, len, 0644, false);
}

static json_object *descriptor(const char *mt, const char *digest, uint64_t size)
{
	json_object *d = json_object_new_object();
	json_object_object_add(d, "mediaType", json_object_new_string(mt));
	json_object_object_add(d, "digest", json_object_new_string(digest));
	json_object_object_add(d, "size", json_object_new_int64((int64_t)size));
	return d;
}

static int write_artifact(struct oci_out *o, const struct cm_buf *index, const char *index_digest,
			  const char *subject_mt, const char *subject_digest, uint64_t subject_size)
{
	/* The index layer is the index as one zstd frame (IDX_MEDIA_INDEX_ZSTD): a third of its
	 * size, fetched before any cold start can mount. Level 9: 0.4 s for an 8 MB index. */
	size_t zcap = ZSTD_compressBound(index->len);
	_cleanup_free_ uint8_t *z = malloc(zcap);
	if (!z)
		return -ENOMEM;
	size_t zlen = ZSTD_compress(z, zcap, index->data, index->len, 9);
	if (ZSTD_isError(zlen))
		return cm_log_ret(-EIO, "oci-out: compressing the index: %s",
				  ZSTD_getErrorName(zlen));
	char zdigest[72], d[72];
	int r = write_blob(o->dirfd, z, zlen, zdigest);
	if (r < 0)
		return r;
	r = write_blob(o->dirfd, "{}", 2, d); /* the empty config (REG_EMPTY_DIGEST) */
	if (r < 0)
		return r;
	/* Layer 0 is the index, then the packs in pack order. */
	_cleanup_free_ struct reg_descriptor *layers = calloc(o->npacks + 1, sizeof(*layers));
	if (!layers)
		return -ENOMEM;
	layers[0].media_type = (char *)IDX_MEDIA_INDEX_ZSTD;
	snprintf(layers[0].digest, sizeof(layers[0].digest), "%s", zdigest);
	layers[0].size = zlen;
	for (uint32_t i = 0; i < o->npacks; i++) {
		layers[i + 1].media_type = (char *)IDX_MEDIA_PACK;
		snprintf(layers[i + 1].digest, sizeof(layers[i + 1].digest), "%s", o->packs[i].digest);
		layers[i + 1].size = o->packs[i].size;
	}
	struct reg_descriptor subject = {.media_type = (char *)subject_mt, .size = subject_size};
	snprintf(subject.digest, sizeof(subject.digest), "%s", subject_digest);
	/* When it was built: a pull takes the newest of an image's isorun referrers (the
	 * referrers list copies annotations; its order is the registry's). SOURCE_DATE_EPOCH
	 * (reproducible builds) replaces the clock. */
	char created[32];
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	time_t now = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : time(NULL);
	struct tm tm;
	if (!gmtime_r(&now, &tm) || !strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return -EINVAL;
	struct reg_annotation ann[] = {
		{(char *)"dev.isorun.index.digest", (char *)index_digest},
		{(char *)"dev.isorun.index.blob", zdigest}, /* the layer: a pull fetches it early */
		{(char *)"dev.isorun.index.format", (char *)"1"},
		{(char *)"org.opencontainers.image.created", created},
	};
	_cleanup_free_ char *ms = NULL;
	size_t mlen;
	r = reg_artifact_manifest_format(IDX_ARTIFACT_TYPE, NULL, layers, o->npacks + 1, &subject,
					 ann, ARRAY_SIZE(ann), &ms, &mlen);
	if (r < 0)
		return r;
	char mdigest[72];
	r = write_blob(o->dirfd, ms, mlen, mdigest);
	if (r < 0)
		return r;

	_cleanup_(json_object_putp) json_object *ix = json_object_new_object();
	json_object_object_add(ix, "schemaVersion", json_object_new_int(2));
	json_object_object_add(ix, "mediaType", json_object_new_string(REG_MT_OCI_INDEX));
	json_object *mans = json_object_new_array();
	json_object *md = descriptor(REG_MT_OCI_MANIFEST, mdigest, mlen);
	json_object_object_add(md, "artifactType", json_object_new_string(IDX_ARTIFACT_TYPE));
	json_object_array_add(mans, md);
	json_object_object_add(ix, "manifests", mans);
	size_t ilen;
	const char *is = json_object_to_json_string_length(ix, JSON_C_TO_STRING_PLAIN, &ilen);
	r = cm_write_file_atomic(o->dirfd, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", 30,
				 0644, false);
	if (r == 0)
		r = cm_write_file_atomic(o->dirfd, "index.json", is, ilen, 0644, true);
	return r;
}

/* --- the build ------------------------------------------------------------------------ */

/*
 * Progress on a terminal: a stream wrapper counting the layer bytes read from the source,
 * redrawing one line at most 5 times a second: layer, bytes of all layers, rate, ETA.
 * Only the thread reading the stream touches it.
 */
struct progress {
	struct idx_stream base;
	struct idx_stream *inner;
	size_t layer, nlayers;
	uint64_t done, total; /* bytes of all layers */
	uint64_t t0, last;    /* ns */
};

static void progress_draw(struct progress *p, bool final)
{
	char d[32], t[32], rate[32];
	uint64_t now = cm_now_ns();
	double secs = (double)(now - p->t0) / 1e9;
	double bps = secs > 0 ? (double)p->done / secs : 0;
	cm_format_bytes(p->done, d, sizeof(d));
	cm_format_bytes(p->total, t, sizeof(t));
	cm_format_bytes((uint64_t)bps, rate, sizeof(rate));
	long eta = bps > 0 && p->total > p->done ? (long)((double)(p->total - p->done) / bps) : 0;
	fprintf(stderr, "\r\033[Klayer %zu/%zu  %s / %s  %s/s  ETA %ld:%02ld%s", p->layer,
		p->nlayers, d, t, rate, eta / 60, eta % 60, final ? "\n" : "");
	p->last = now;
}

static ssize_t progress_read(struct idx_stream *st, void *buf, size_t len)
{
	struct progress *p = (struct progress *)st;
	ssize_t n = p->inner->read(p->inner, buf, len);
	if (n > 0) {
		p->done += (uint64_t)n;
		if (cm_now_ns() - p->last > 200000000ull)
			progress_draw(p, false);
	}
	return n;
}

static void progress_close(struct idx_stream *st)
{
	(void)st; /* the wrapper is on the caller's stack; the inner stream is closed apart */
}

int idx_build(struct idx_store *store, struct idx_source *src, const struct idx_build_opts *opts,
	      struct idx_build_result *ret)
{
	static const struct idx_build_opts defaults = {0};
	const struct idx_build_opts *o = opts ? opts : &defaults;
	_cleanup_buf_ struct cm_buf mbody = {0}, cbody = {0}, index = {0};
	_cleanup_free_ char *mt = NULL;
	_cleanup_(reg_manifest_freep) struct reg_manifest *manifest = NULL;
	_cleanup_(json_object_putp) json_object *config = NULL;
	_cleanup_(idx_tree_freep) struct idx_tree *tree = NULL;
	_cleanup_(idx_pool_freep) struct idx_pool *pool = NULL;
	_cleanup_(idx_config_freep) struct idx_config *cfg = NULL;
	_cleanup_free_ struct layer_desc *layers = NULL;
	struct oci_out out = {.dirfd = -1, .pack_fd = -1};
	char mdigest[72];
	int r;

	memset(ret, 0, sizeof(*ret));
	cm_buf_init(&mbody, MANIFEST_CAP);
	cm_buf_init(&cbody, CONFIG_CAP);
	cm_buf_init(&index, 0);

	r = src->ops->get_manifest(src, NULL, &mbody, &mt, mdigest);
	if (r < 0)
		return r;
	enum reg_doc_kind kind = reg_doc_sniff((const char *)mbody.data, mbody.len, mt);
	if (kind == REG_DOC_INDEX) {
		_cleanup_(reg_index_freep) struct reg_index *ix = NULL;
		_cleanup_(reg_platform_fini) struct reg_platform want = {0};
		const struct reg_descriptor *d;
		if ((r = reg_index_parse((const char *)mbody.data, mbody.len, mt, &ix)) < 0)
			return cm_log_ret(r, "%s: invalid image index %s", src->ref, mdigest);
		if ((r = reg_platform_parse(o->platform, &want)) < 0)
			return cm_log_ret(r, "platform '%s' is not os/arch[/variant]", o->platform);
		if ((r = reg_index_select_platform(ix, &want, &d)) < 0)
			return r;
		char child[CM_DIGEST_STR_SIZE];
		snprintf(child, sizeof(child), "%s", d->digest);
		cm_buf_clear(&mbody);
		free(TAKE_PTR(mt));
		if ((r = src->ops->get_manifest(src, child, &mbody, &mt, mdigest)) < 0)
			return r;
		kind = reg_doc_sniff((const char *)mbody.data, mbody.len, mt);
	}
	if (kind == REG_DOC_SCHEMA1)
		return cm_log_ret(-ENOTSUP, "%s: Docker schema 1 manifests are not supported; re-push "
					    "the image with a current client", src->ref);
	if (kind != REG_DOC_MANIFEST)
		return cm_log_ret(kind == REG_DOC_INDEX ? -EPROTO : -ENOTSUP,
				  "%s: %s is not an image manifest (media type '%s')", src->ref,
				  mdigest, mt && *mt ? mt : "unknown");
	if ((r = reg_manifest_parse((const char *)mbody.data, mbody.len, mt, &manifest)) < 0)
		return cm_log_ret(r, "%s: invalid manifest %s", src->ref, mdigest);
	_cleanup_free_ char *subject_mt = strdup(reg_manifest_media_type(manifest));
	if (!subject_mt)
		return -ENOMEM;

	/* Config and layers. */
	const struct reg_descriptor *jcfg = reg_manifest_config(manifest);
	const char *cdigest = jcfg->digest;
	uint64_t csize = jcfg->size;
	if (csize > CONFIG_CAP)
		return cm_log_ret(-EFBIG, "image config is %llu bytes (limit %u)",
				  (unsigned long long)csize, CONFIG_CAP);
	if ((r = src->ops->get_blob(src, cdigest, csize, &cbody)) < 0)
		return r;
	if (cbody.len != csize)
		return cm_log_ret(-EBADMSG, "image config size %zu differs from its descriptor (%llu)",
				  cbody.len, (unsigned long long)csize);
	config = parse_json(&cbody, "image config");
	if (!config)
		return -EPROTO;
	json_object *rootfs, *diff_ids;
	if (!json_object_object_get_ex(config, "rootfs", &rootfs) ||
	    !json_object_object_get_ex(rootfs, "diff_ids", &diff_ids) ||
	    !json_object_is_type(diff_ids, json_type_array))
		return cm_log_ret(-EPROTO, "image config has no rootfs.diff_ids");
	size_t nlayers = reg_manifest_layer_count(manifest);
	if (nlayers > MAX_LAYERS)
		return cm_log_ret(-EFBIG, "image has %zu layers (limit %d)", nlayers, MAX_LAYERS);
	if (json_object_array_length(diff_ids) != nlayers)
		return cm_log_ret(-EPROTO, "image config lists %zu diff_ids for %zu layers",
				  json_object_array_length(diff_ids), nlayers);
	layers = calloc(nlayers ? nlayers : 1, sizeof(*layers));
	if (!layers)
		return -ENOMEM;
	for (size_t i = 0; i < nlayers; i++) {
		const struct reg_descriptor *l = reg_manifest_layer(manifest, i);
		if ((r = layer_compression(l->media_type, &layers[i].comp)) < 0)
			return r;
		layers[i].size = l->size;
		snprintf(layers[i].digest, sizeof(layers[i].digest), "%s", l->digest);
	}
	if ((r = idx_config_parse((const char *)cbody.data, cbody.len, &cfg)) < 0)
		return r;

	if ((r = idx_tree_new(&tree)) < 0)
		return r;
	if ((r = idx_pool_new(store, o->threads, o->zstd_level ? o->zstd_level : 1, &pool)) < 0)
		return r;
	if (o->n_startup_ids &&
	    (r = idx_pool_set_hot(pool, o->startup_ids, o->n_startup_ids,
				  o->startup_level ? o->startup_level : 9)) < 0)
		return r;

	struct progress prog = {.base = {.read = progress_read, .close = progress_close},
				.nlayers = nlayers, .t0 = cm_now_ns()};
	for (size_t i = 0; i < nlayers; i++)
		prog.total += layers[i].size;
	for (size_t i = 0; i < nlayers; i++) {
		char name[96];
		snprintf(name, sizeof(name), "%zu (%s)", i + 1, layers[i].digest);
		struct idx_stream *st;
		if ((r = src->ops->open_blob(src, layers[i].digest, layers[i].size, &st)) < 0)
			return r;
		struct idx_layer_result lr = {0};
		idx_tree_begin_layer(tree, (uint32_t)(i + 1));
		prog.inner = st;
		prog.layer = i + 1;
		r = idx_layer_read(tree, pool, o->progress ? &prog.base : st, layers[i].comp, name, &lr);
		if (o->progress)
			progress_draw(&prog, i + 1 == nlayers || r < 0);
		st->close(st);
		if (r < 0)
			return r;
		uint8_t want[32];
		cm_digest_parse(layers[i].digest, want);
		if (lr.size != layers[i].size || memcmp(want, lr.digest, 32) != 0)
			return cm_log_ret(-EBADMSG, "layer %s does not match its descriptor (size %llu, "
						    "expected %llu, or digest differs)",
					  name, (unsigned long long)lr.size,
					  (unsigned long long)layers[i].size);
		const char *diff = json_object_get_string(json_object_array_get_idx(diff_ids, i));
		uint8_t dwant[32];
		if (!diff || cm_digest_parse(diff, dwant) < 0 || memcmp(dwant, lr.diff_id, 32) != 0)
			return cm_log_ret(-EBADMSG, "layer %s: uncompressed content does not match "
						    "diff_id %s", name, diff ? diff : "(invalid)");
		ret->layers++;
	}
	if ((r = idx_pool_finish(pool)) < 0)
		return r;
	if ((r = idx_prefetch_compute(tree, cfg, read_tree_file, pool)) < 0)
		return r;

	if (o->oci_out) {
		if ((r = cm_mkdir_p(AT_FDCWD, o->oci_out, 0755)) < 0)
			return cm_log_ret(r, "oci-out %s: %s", o->oci_out, strerror(-r));
		out.dirfd = open(o->oci_out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (out.dirfd < 0 || (r = cm_mkdir_p(out.dirfd, "blobs/sha256", 0755)) < 0) {
			r = out.dirfd < 0 ? -errno : r;
			goto out;
		}
	}
	uint8_t md[32], cd[32];
	cm_digest_parse(mdigest, md);
	cm_digest_parse(cdigest, cd);
	struct idx_writer_input win = {
		.tree = tree,
		.pool = pool,
		.manifest_digest = md,
		.config_digest = cd,
		.config = (const char *)cbody.data,
		.config_len = cbody.len,
		.pack_target = o->pack_target ? o->pack_target : (32ull << 20),
		.startup_ids = o->startup_ids,
		.n_startup_ids = o->n_startup_ids,
		.pack_data = o->oci_out ? out_pack_data : NULL,
		.pack_done = o->oci_out ? out_pack_done : NULL,
		.pack_ud = &out,
	};
	if ((r = idx_writer_write(&win, &index)) < 0)
		goto out;

	/* Publish: chunks first, then the index that references them, then the record. */
	if ((r = idx_pool_commit(pool, &ret->new_chunks, &ret->new_bytes)) < 0)
		goto out;
	if ((r = idx_store_put_index(store, index.data, index.len, ret->index_digest)) < 0)
		goto out;
	if ((r = idx_store_record_image(store, src->ref, mdigest, ret->index_digest)) < 0)
		goto out;
	if (o->oci_out && (r = write_artifact(&out, &index, ret->index_digest, subject_mt, mdigest,
					      mbody.len)) < 0)
		goto out;
	snprintf(ret->manifest_digest, sizeof(ret->manifest_digest), "%s", mdigest);
	snprintf(ret->config_digest, sizeof(ret->config_digest), "%s", cdigest);
	uint32_t nuniq;
	struct idx_uchunk *uc = idx_pool_chunks(pool, &nuniq);
	for (uint32_t i = 0; i < nuniq; i++)
		if (uc[i].order != UINT32_MAX) {
			ret->chunks++;
			ret->file_bytes += uc[i].usize;
		}
out:
	if (out.pack_fd >= 0)
		close(out.pack_fd);
	if (out.dirfd >= 0)
		close(out.dirfd);
	free(out.packs);
	return r;
}
