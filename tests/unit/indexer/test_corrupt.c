/*
 * Corrupt and forged index files. A valid index is built (files over several chunks,
 * directories, a hardlink, symlinks, xattrs, a device), then damaged every way a byte can
 * be damaged: each byte flipped (three patterns), every truncation, section counts, sizes,
 * offsets and entry sizes forged consistently and inconsistently, the header's file size.
 * The reader must reject the blob (-EPROTO, or -ENOTSUP for another major version) or open
 * it and then answer every accessor within the blob: each mutation is copied into a buffer
 * of exactly its length so ASan (the sanitizer build) reports any read past it.
 */
#include "idx_testlib.h"

#include "format.h"

#include "indexer/index.h"
#include "indexer/store.h"

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static uint8_t *blob;
static size_t blob_len;
static char *tmp;
static unsigned accepted, rejected;

static int setup(void **state)
{
	static uint8_t data[600000];
	tl_random(99, data, sizeof(data));
	tmp = tl_mkdtemp("idx-corrupt");
	_cleanup_free_ char *layout = cm_strdupf("%s/layout", tmp);
	_cleanup_free_ char *store = cm_strdupf("%s/store", tmp);
	struct cm_buf tar;
	cm_buf_init(&tar, 0);
	assert_int_equal(tl_tar(
			     (const struct tl_entry[]){
				 {'d', "bin"},
				 {'f', "bin/app", (const char *)data, .len = sizeof(data)},
				 {'f', "bin/cfg", "k=v\n", .xname = "user.x", .xval = "1"},
				 {'h', "bin/app2", "bin/app"},
				 {'l', "bin/sh", "app"},
				 {'c', "dev/null", .mode = 0666, .maj = 1, .min = 3},
				 {'d', "etc/a/b", .xname = "trusted.y", .xval = "2"},
				 {'f', "etc/a/b/c", "c"},
				 {0},
			     },
			     &tar),
			 0);
	struct tl_layer l = {.tar = tar.data, .tar_len = tar.len, .comp = TL_ZSTD};
	struct tl_image_opts o = {.config_body = "\"Entrypoint\":[\"/bin/app\"],\"Env\":[\"A=1\"]"};
	assert_int_equal(tl_layout_write(layout, &l, 1, &o), 0);
	cm_buf_fini(&tar);
	struct idx_reader *r;
	assert_int_equal(tl_build(layout, store, NULL, &r), 0);
	const void *d = idx_reader_data(r, &blob_len);
	blob = malloc(blob_len);
	memcpy(blob, d, blob_len);
	idx_reader_free(r);
	return 0;
}

static int teardown(void **state)
{
	tl_rm_rf(tmp);
	free(tmp);
	free(blob);
	fprintf(stderr, "mutations: %u accepted (walked), %u rejected\n", accepted, rejected);
	return 0;
}

/* Open a copy of exactly `len` bytes; walk it if accepted. Returns the open's result. */
static int try_blob(const uint8_t *data, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	memcpy(copy, data, len);
	struct idx_reader *r;
	int k = idx_reader_open_mem(copy, len, &r);
	if (k == 0) {
		uint64_t a = tl_walk(r), b = tl_walk(r);
		assert_true(a == b);
		idx_reader_free(r);
		accepted++;
	} else {
		assert_true(k == -EPROTO || k == -ENOTSUP);
		rejected++;
	}
	free(copy);
	return k;
}

static void test_valid(void **state)
{
	assert_int_equal(try_blob(blob, blob_len), 0);
}

static void test_byte_flips(void **state)
{
	static const uint8_t patterns[] = {0xff, 0x01, 0x80};
	uint8_t *m = malloc(blob_len);
	for (size_t p = 0; p < ARRAY_SIZE(patterns); p++) {
		for (size_t i = 0; i < blob_len; i++) {
			memcpy(m, blob, blob_len);
			m[i] ^= patterns[p];
			int k = try_blob(m, blob_len);
			/* The magic, the major version, the header size, the file size and the slot
			 * count are checked exactly. */
			if (i < 8 || (i >= 12 && i < 28))
				assert_int_equal(k, -EPROTO);
			if (i == 8 || i == 9)
				assert_int_equal(k, -ENOTSUP);
		}
	}
	free(m);
}

static void test_truncations(void **state)
{
	for (size_t len = 0; len < blob_len; len++) {
		/* The header names the file size: every truncation is caught. */
		assert_int_equal(try_blob(blob, len), -EPROTO);
	}
	/* Same, with the header's size field forged to match the truncation. */
	uint8_t *m = malloc(blob_len);
	for (size_t len = IDXF_HEADER_SIZE; len < blob_len; len += 8) {
		memcpy(m, blob, blob_len);
		cm_put_le64(m + 16, len);
		try_blob(m, len);
	}
	/* And longer than the data: trailing garbage named by the header. */
	uint8_t *big = calloc(1, blob_len + 64);
	memcpy(big, blob, blob_len);
	cm_put_le64(big + 16, blob_len + 64);
	try_blob(big, blob_len + 64);
	free(big);
	free(m);
}

static void test_forged_sections(void **state)
{
	static const uint32_t counts[] = {0, 1, 2, 3, 7, 0x7fffffff, 0x80000000, 0xffffffff};
	uint8_t *m = malloc(blob_len);
	for (int sec = 0; sec < IDXF_SLOTS; sec++) {
		uint8_t *e0 = blob + IDXF_SECTAB_OFF + sec * IDXF_SECT_SIZE;
		uint32_t count0 = cm_le32(e0 + 16), stride0 = cm_le32(e0 + 20);
		uint64_t off0 = cm_le64(e0);
		for (size_t c = 0; c < ARRAY_SIZE(counts) + 2; c++) {
			uint32_t count = c < ARRAY_SIZE(counts)	   ? counts[c]
					 : c == ARRAY_SIZE(counts) ? count0 + 1
								   : count0 - 1;
			for (int consistent = 0; consistent < 2; consistent++) {
				memcpy(m, blob, blob_len);
				uint8_t *e = m + IDXF_SECTAB_OFF + sec * IDXF_SECT_SIZE;
				cm_put_le32(e + 16, count);
				if (consistent)
					cm_put_le64(e + 8,
						    (uint64_t)count * (stride0 ? stride0 : 1));
				try_blob(m, blob_len);
			}
		}
		/* Entry sizes: smaller than the record, larger (records read with a stride). */
		static const uint32_t strides[] = {0,  1,  4,  8,  15, 16,   17,
						   24, 48, 56, 64, 72, 4096, 4097};
		for (size_t s = 0; s < ARRAY_SIZE(strides); s++) {
			for (int consistent = 0; consistent < 2; consistent++) {
				memcpy(m, blob, blob_len);
				uint8_t *e = m + IDXF_SECTAB_OFF + sec * IDXF_SECT_SIZE;
				cm_put_le32(e + 20, strides[s]);
				if (consistent && strides[s]) {
					uint64_t size = cm_le64(e + 8);
					cm_put_le32(e + 16, (uint32_t)(size / strides[s]));
					cm_put_le64(e + 8, (size / strides[s]) * strides[s]);
				}
				try_blob(m, blob_len);
			}
		}
		/* Offsets: into the header, unaligned, at and past the end, wrapping. */
		static const uint64_t offs[] = {
		    0, 8, 511, 512, 513, 520, UINT64_MAX - 7, UINT64_MAX, 1ull << 63};
		for (size_t o = 0; o < ARRAY_SIZE(offs) + 2; o++) {
			memcpy(m, blob, blob_len);
			uint8_t *e = m + IDXF_SECTAB_OFF + sec * IDXF_SECT_SIZE;
			uint64_t off = o < ARRAY_SIZE(offs)    ? offs[o]
				       : o == ARRAY_SIZE(offs) ? blob_len
							       : off0 + 8;
			cm_put_le64(e, off);
			try_blob(m, blob_len);
			cm_put_le64(e + 8, UINT64_MAX - off + 1); /* off + size wraps to 0 */
			try_blob(m, blob_len);
		}
	}
	free(m);
}

/* Every u32 field of every record set to values that index past tables or wrap. */
static void test_forged_fields(void **state)
{
	static const uint32_t vals[] = {0, 1, 2, 0x7fffffff, 0xfffffffe, 0xffffffff, 0x10000};
	uint8_t *m = malloc(blob_len);
	uint64_t first = IDXF_HEADER_SIZE, end = blob_len;
	for (uint64_t i = first; i + 4 <= end; i += 4) {
		for (size_t v = 0; v < ARRAY_SIZE(vals); v++) {
			memcpy(m, blob, blob_len);
			cm_put_le32(m + i, vals[v]);
			try_blob(m, blob_len);
		}
	}
	free(m);
}

/* A blob whose digest the caller already checked (a verified registry download): the same
 * reader and the same stored file as from the blob alone, the digest not computed again
 * (so a wrong one is believed: it is the caller's word); the structure still validated. */
static void test_known_digest(void **state)
{
	uint8_t d[CM_SHA256_LEN];
	char dig[CM_DIGEST_STR_SIZE];
	cm_sha256(blob, blob_len, d);
	cm_digest_format(d, dig);
	struct idx_reader *r;
	assert_int_equal(idx_reader_open_mem_digest(blob, blob_len, dig, &r), 0);
	assert_string_equal(idx_reader_digest(r), dig);
	idx_reader_free(r);
	assert_int_equal(idx_reader_open_mem_digest(blob, blob_len, "sha256:abc", &r), -EINVAL);
	assert_int_equal(idx_reader_open_mem_digest(blob, blob_len, NULL, &r), -EINVAL);
	char other[CM_DIGEST_STR_SIZE];
	snprintf(other, sizeof(other), "sha256:%064d", 7);
	assert_int_equal(idx_reader_open_mem_digest(blob, blob_len, other, &r), 0);
	assert_string_equal(idx_reader_digest(r), other);
	idx_reader_free(r);
	assert_int_equal(idx_reader_open_mem_digest(blob, blob_len / 2, dig, &r), -EPROTO);

	_cleanup_free_ char *root = cm_strdupf("%s/known", tmp);
	struct idx_store *s;
	assert_int_equal(idx_store_open(root, &s), 0);
	assert_int_equal(idx_store_put_index_digest(s, blob, blob_len, "sha256:xyz"), -EINVAL);
	assert_int_equal(idx_store_put_index_digest(s, blob, blob_len, dig), 0);
	_cleanup_free_ char *path = NULL;
	assert_int_equal(idx_store_index_path(s, dig, &path), 0);
	assert_int_equal(idx_reader_open(path, &r), 0); /* from disk: hashed, and it matches */
	assert_string_equal(idx_reader_digest(r), dig);
	idx_reader_free(r);
	/* The file with the digest its writer vouches for: not hashed (another digest is
	 * believed too), still validated, a malformed digest refused. */
	assert_int_equal(idx_reader_open_digest(path, other, &r), 0);
	assert_string_equal(idx_reader_digest(r), other);
	idx_reader_free(r);
	assert_int_equal(idx_reader_open_digest(path, "sha256:abc", &r), -EINVAL);
	assert_int_equal(idx_reader_open_digest(path, NULL, &r), -EINVAL);
	_cleanup_free_ char *half = cm_strdupf("%s/half.idx", tmp);
	FILE *hf = fopen(half, "wb");
	assert_non_null(hf);
	assert_int_equal(fwrite(blob, 1, blob_len / 2, hf), blob_len / 2);
	fclose(hf);
	assert_int_equal(idx_reader_open_digest(half, dig, &r), -EPROTO);
	char again[72];
	assert_int_equal(idx_store_put_index(s, blob, blob_len, again), 0); /* idempotent */
	assert_string_equal(again, dig);
	idx_store_free(s);
}

static void test_open_files(void **state)
{
	_cleanup_free_ char *p = cm_strdupf("%s/idx", tmp);
	struct idx_reader *r;
	assert_int_equal(idx_reader_open(p, &r), -ENOENT);
	assert_int_equal(idx_reader_open(tmp, &r), -EPROTO); /* a directory */
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(cm_write_full(fd, blob, blob_len / 2), 0);
	close(fd);
	assert_int_equal(idx_reader_open(p, &r), -EPROTO);
	fd = open(p, O_WRONLY | O_TRUNC);
	close(fd);
	assert_int_equal(idx_reader_open(p, &r), -EPROTO); /* empty */
	fd = open(p, O_WRONLY | O_TRUNC);
	assert_int_equal(cm_write_full(fd, blob, blob_len), 0);
	close(fd);
	assert_int_equal(idx_reader_open(p, &r), 0);
	size_t len;
	assert_memory_equal(idx_reader_data(r, &len), blob, blob_len);
	/* The config alone (the sandbox verbs' per-run read): the same bytes. */
	size_t clen;
	const char *cfg = idx_reader_config_json(r, &clen);
	char *json = NULL;
	size_t jlen = 0;
	assert_int_equal(idx_index_read_config(p, &json, &jlen), 0);
	assert_int_equal(jlen, clen);
	assert_memory_equal(json, cfg, clen);
	assert_int_equal(json[jlen], 0);
	free(json);
	idx_reader_free(r);
	idx_reader_free(NULL);
	assert_int_equal(idx_index_read_config(tmp, &json, &jlen), -EPROTO); /* a directory */
	_cleanup_free_ char *none = cm_strdupf("%s/none", tmp);
	assert_int_equal(idx_index_read_config(none, &json, &jlen), -ENOENT);
}

/* idx_index_read_config checks the header and the section table only: every flipped byte of
 * the header gives the config or a clean refusal, and never a read outside the file. */
static void test_read_config_header_flips(void **state)
{
	_cleanup_free_ char *p = cm_strdupf("%s/hdr", tmp);
	uint8_t *m = malloc(blob_len);
	size_t n = MIN(blob_len, (size_t)IDXF_HEADER_SIZE), ok = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(m, blob, blob_len);
		m[i] ^= 0xff;
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(cm_write_full(fd, m, blob_len), 0);
		close(fd);
		char *json = NULL;
		size_t len = 0;
		int k = idx_index_read_config(p, &json, &len);
		assert_true(k == 0 || k == -EPROTO || k == -ENOTSUP);
		if (k == 0) {
			assert_true(len <= IDXF_MAX_CONFIG && json[len] == 0);
			ok++;
		}
		free(json);
	}
	assert_true(ok < n); /* the magic, at least, is checked */
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),	  cmocka_unit_test(test_byte_flips),
	    cmocka_unit_test(test_truncations),	  cmocka_unit_test(test_forged_sections),
	    cmocka_unit_test(test_forged_fields), cmocka_unit_test(test_open_files),
	    cmocka_unit_test(test_known_digest),
	    cmocka_unit_test(test_read_config_header_flips),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
