/*
 * The index artifact's index layer: `idx_build --oci-out` writes the index as one zstd frame
 * (IDX_MEDIA_INDEX_ZSTD) that idx_artifact_index_decode turns back into the very index the
 * store holds; raw layers (artifacts of before) pass through; hostile blobs are refused with
 * the reason, sizes checked before anything is allocated.
 */
#include "idx_testlib.h"

#include "indexer/artifact.h"
#include "indexer/build.h"
#include "indexer/source.h"
#include "indexer/store.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zstd.h>

#define ZD "sha256:1111111111111111111111111111111111111111111111111111111111111111"

static void buf_set(struct cm_buf *b, const void *data, size_t len)
{
	cm_buf_init(b, 0);
	assert_int_equal(cm_buf_append(b, data, len), 0);
}

/* The frame of `data`, with or without its content size in the header. */
static size_t frame(const void *data, size_t len, bool with_size, uint8_t *out, size_t cap)
{
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	assert_non_null(cc);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, with_size);
	size_t n;
	if (with_size) {
		n = ZSTD_compress2(cc, out, cap, data, len);
	} else {
		/* streaming with no pledged size: the header cannot carry it */
		ZSTD_inBuffer in = {data, len, 0};
		ZSTD_outBuffer o = {out, cap, 0};
		n = ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end);
		assert_int_equal(n, 0);
		n = o.pos;
	}
	ZSTD_freeCCtx(cc);
	assert_false(ZSTD_isError(n));
	return n;
}

/* The artifact written next to a build: layer 0 is the store's index, compressed; the
 * annotations name the index and the layer. */
static void test_oci_out_layer_is_the_index(void **state)
{
	(void)state;
	_cleanup_free_ char *tmp = tl_mkdtemp("idx-artifact");
	_cleanup_free_ char *layout = cm_strdupf("%s/layout", tmp);
	_cleanup_free_ char *out = cm_strdupf("%s/out", tmp);
	_cleanup_free_ char *store = cm_strdupf("%s/store", tmp);
	static const struct tl_entry ents[] = {
	    {'d', "etc"}, {'f', "etc/hostname", "artifact\n"}, {'f', "etc/motd", "hello\n"}, {0}};
	struct cm_buf tar;
	cm_buf_init(&tar, 0);
	assert_int_equal(tl_tar(ents, &tar), 0);
	struct tl_layer l = {.tar = tar.data, .tar_len = tar.len, .comp = TL_GZIP};
	assert_int_equal(tl_layout_write(layout, &l, 1, NULL), 0);
	cm_buf_fini(&tar);

	struct idx_store *s;
	struct idx_source *src;
	struct idx_build_result res;
	_cleanup_free_ char *spec = cm_strdupf("oci:%s", layout);
	struct idx_build_opts o = {.oci_out = out};
	assert_int_equal(idx_store_open(store, &s), 0);
	assert_int_equal(idx_source_oci_open(spec, &src), 0);
	assert_int_equal(idx_build(s, src, &o, &res), 0);
	idx_source_free(src);

	int dfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	struct cm_buf ix, man, blob, want;
	cm_buf_init(&ix, 0);
	cm_buf_init(&man, 0);
	cm_buf_init(&blob, 0);
	cm_buf_init(&want, 0);
	assert_int_equal(cm_read_file(dfd, "index.json", &ix), 0);
	json_object *j = json_tokener_parse((const char *)ix.data), *mans, *d;
	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "manifests", &mans));
	assert_true(json_object_object_get_ex(json_object_array_get_idx(mans, 0), "digest", &d));
	_cleanup_free_ char *mpath = cm_strdupf("blobs/sha256/%s", json_object_get_string(d) + 7);
	json_object_put(j);
	assert_int_equal(cm_read_file(dfd, mpath, &man), 0);
	j = json_tokener_parse((const char *)man.data);
	assert_non_null(j);
	json_object *layers, *l0, *mt, *ld, *ann, *a_index, *a_blob;
	assert_true(json_object_object_get_ex(j, "layers", &layers));
	l0 = json_object_array_get_idx(layers, 0);
	assert_true(json_object_object_get_ex(l0, "mediaType", &mt));
	assert_string_equal(json_object_get_string(mt), IDX_MEDIA_INDEX_ZSTD);
	assert_true(json_object_object_get_ex(l0, "digest", &ld));
	assert_true(json_object_object_get_ex(j, "annotations", &ann));
	assert_true(json_object_object_get_ex(ann, "dev.isorun.index.digest", &a_index));
	assert_true(json_object_object_get_ex(ann, "dev.isorun.index.blob", &a_blob));
	assert_string_equal(json_object_get_string(a_index), res.index_digest);
	assert_string_equal(json_object_get_string(a_blob), json_object_get_string(ld));

	_cleanup_free_ char *bpath = cm_strdupf("blobs/sha256/%s", json_object_get_string(ld) + 7);
	assert_int_equal(cm_read_file(dfd, bpath, &blob), 0);
	size_t zlen = blob.len;
	char got[CM_DIGEST_STR_SIZE];
	assert_int_equal(idx_artifact_index_decode(&blob, IDX_MEDIA_INDEX_ZSTD,
						   json_object_get_string(ld), 64u << 20, got),
			 0);
	assert_string_equal(got, res.index_digest);
	_cleanup_free_ char *ipath = NULL;
	assert_int_equal(idx_store_index_path(s, res.index_digest, &ipath), 0);
	assert_int_equal(cm_read_file(AT_FDCWD, ipath, &want), 0);
	assert_int_equal(blob.len, want.len);
	assert_memory_equal(blob.data, want.data, want.len);
	assert_true(zlen < want.len);
	/* the index's own size is the limit, not the layer's */
	cm_buf_clear(&blob);
	assert_int_equal(cm_read_file(dfd, bpath, &blob), 0);
	assert_int_equal(
	    idx_artifact_index_decode(&blob, IDX_MEDIA_INDEX_ZSTD, ZD, want.len - 1, got), -EFBIG);
	json_object_put(j);
	close(dfd);
	cm_buf_fini(&ix);
	cm_buf_fini(&man);
	cm_buf_fini(&blob);
	cm_buf_fini(&want);
	idx_store_free(s);
	tl_rm_rf(tmp);
}

/* A raw index layer passes through, named by its layer digest. */
static void test_raw_layer(void **state)
{
	(void)state;
	struct cm_buf b;
	buf_set(&b, "ISRNIDX1 and the rest", 21);
	char got[CM_DIGEST_STR_SIZE];
	assert_int_equal(idx_artifact_index_decode(&b, IDX_MEDIA_INDEX, ZD, 100, got), 0);
	assert_string_equal(got, ZD);
	assert_int_equal(b.len, 21);
	assert_memory_equal(b.data, "ISRNIDX1", 8);
	assert_int_equal(idx_artifact_index_decode(&b, IDX_MEDIA_INDEX, ZD, 20, got), -EFBIG);
	cm_buf_fini(&b);
}

static void test_hostile_blobs(void **state)
{
	(void)state;
	static uint8_t data[200000];
	tl_random(3, data, sizeof(data) / 2); /* half random, half zeros */
	size_t cap = ZSTD_compressBound(sizeof(data)) * 2 + 16;
	_cleanup_free_ uint8_t *z = malloc(cap);
	assert_non_null(z);
	char got[CM_DIGEST_STR_SIZE];
	struct cm_buf b;

	/* unknown or missing media type */
	buf_set(&b, "x", 1);
	assert_int_equal(idx_artifact_index_decode(&b, "application/octet-stream", ZD, 10, got),
			 -EPROTO);
	assert_int_equal(idx_artifact_index_decode(&b, NULL, ZD, 10, got), -EPROTO);
	cm_buf_fini(&b);

	/* not zstd at all */
	buf_set(&b, "ISRNIDX1 raw bytes under a +zstd type", 37);
	assert_int_equal(idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, ZD, 1000, got),
			 -EBADMSG);
	cm_buf_fini(&b);

	size_t n = frame(data, sizeof(data), true, z, cap);
	/* a good frame decodes, to the SHA-256 of its content */
	buf_set(&b, z, n);
	assert_int_equal(idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, ZD, sizeof(data), got),
			 0);
	uint8_t d[32];
	char want[CM_DIGEST_STR_SIZE];
	cm_sha256(data, sizeof(data), d);
	cm_digest_format(d, want);
	assert_string_equal(got, want);
	assert_int_equal(b.len, sizeof(data));
	assert_memory_equal(b.data, data, sizeof(data));
	cm_buf_fini(&b);

	/* truncated */
	buf_set(&b, z, n - 7);
	assert_int_equal(idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, ZD, sizeof(data), got),
			 -EBADMSG);
	cm_buf_fini(&b);

	/* two frames back to back, or trailing bytes */
	memcpy(z + n, z, n);
	buf_set(&b, z, 2 * n);
	assert_int_equal(
	    idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, ZD, sizeof(data) * 2, got),
	    -EBADMSG);
	cm_buf_fini(&b);
	buf_set(&b, z, n + 1);
	assert_int_equal(
	    idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, ZD, sizeof(data) * 2, got),
	    -EBADMSG);
	cm_buf_fini(&b);

	/* a skippable frame after it (which ZSTD_decompress would step over): not one frame */
	static const uint8_t skip[12] = {0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 'x', 'x', 'x', 'x'};
	memcpy(z + n, skip, sizeof(skip));
	buf_set(&b, z, n + sizeof(skip));
	assert_int_equal(idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, ZD, sizeof(data), got),
			 -EBADMSG);
	cm_buf_fini(&b);

	/* declares more than the limit: refused from the header */
	buf_set(&b, z, n);
	assert_int_equal(
	    idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, ZD, sizeof(data) - 1, got), -EFBIG);
	assert_int_equal(b.len, n); /* untouched */
	cm_buf_fini(&b);

	/* no content size in the header */
	n = frame(data, sizeof(data), false, z, cap);
	assert_int_equal(ZSTD_getFrameContentSize(z, n), ZSTD_CONTENTSIZE_UNKNOWN);
	buf_set(&b, z, n);
	assert_int_equal(idx_artifact_index_decode(&b, IDX_MEDIA_INDEX_ZSTD, ZD, sizeof(data), got),
			 -EBADMSG);
	cm_buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_oci_out_layer_is_the_index),
	    cmocka_unit_test(test_raw_layer),
	    cmocka_unit_test(test_hostile_blobs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
