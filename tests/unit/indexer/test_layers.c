/*
 * OCI layer semantics, one table row per rule: the layers are tar streams generated here
 * (PAX, by libarchive), wrapped in an OCI layout, indexed with idx_build into a fresh store
 * and compared with the expected tree (tl_dump's canonical form). Every accepting case runs
 * with plain, gzip and zstd layers.
 *
 * Sockets are not in the table: no tar format libarchive 3.6 reads can carry one (ustar has
 * no type for it, GNU tar refuses to archive them, SCHILY.filetype=socket is read as a
 * regular file), so the indexer's socket branch cannot be reached from a layer.
 *
 * The hostile rows must fail with their -errno and leave the store exactly as it was: no
 * index, no chunk (even the chunks of the valid layer before the bad one), empty tmp/.
 */
#include "idx_testlib.h"

#include "indexer/build.h"
#include "indexer/index.h"
#include "indexer/source.h"
#include "indexer/store.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_LAYERS 4

struct lcase {
	const char *name;
	const struct tl_entry *layers[MAX_LAYERS];
	const char *expect; /* dump of the result; NULL for failing cases */
	int err;	    /* expected idx_build error (0 = success) */
	/* Applied to the last layer of failing cases. */
	int (*raw)(struct cm_buf *tar);
	struct tl_layer mut;
	bool schema1;
};

#define E(...) ((const struct tl_entry[]){__VA_ARGS__, {0}})

static const char zeros3m[3000000];

/* --- accepting cases ------------------------------------------------------------------- */

/* One row per case: kept as written. */
/* clang-format off */
static const struct lcase ok_cases[] = {
	{"whiteout",
	 {E({'d', "a"}, {'f', "a/x", "1"}, {'f', "a/y", "2"}, {'f', "b", "b"}),
	  E({'f', "a/.wh.x", ""}, {'f', ".wh.b", ""}, {'f', "nothere/.wh.z", ""})},
	 "/a d 0755 0:0\n"
	 "/a/y f 0644 0:0 =2\n"},
	{"opaque directory, marker after this layer's entries",
	 {E({'d', "a"}, {'f', "a/x", "1"}, {'d', "a/sub"}, {'f', "a/sub/z", "z"}, {'f', "keep", "k"}),
	  E({'d', "a", .mode = 0700}, {'f', "a/new", "n"}, {'f', "a/sub/w", "w"},
	    {'f', "a/.wh..wh..opq", ""})},
	 "/a d 0700 0:0\n"
	 "/a/new f 0644 0:0 =n\n"
	 "/a/sub d 0755 0:0\n"
	 "/a/sub/w f 0644 0:0 =w\n"
	 "/keep f 0644 0:0 =k\n"},
	{"opaque directory, marker first",
	 {E({'d', "a"}, {'f', "a/x", "1"}, {'d', "a/sub"}, {'f', "a/sub/z", "z"}),
	  E({'d', "a", .mode = 0700}, {'f', "a/.wh..wh..opq", ""}, {'f', "a/new", "n"},
	    {'d', "a/sub", .mode = 0750})},
	 "/a d 0700 0:0\n"
	 "/a/new f 0644 0:0 =n\n"
	 "/a/sub d 0750 0:0\n"},
	{"whiteout and new file of the same name in one layer, both orders",
	 {E({'f', "a", "old"}, {'f', "b", "old"}, {'d', "c"}, {'f', "c/in", "i"}),
	  E({'f', ".wh.a", ""}, {'f', "a", "new"}, {'f', "b", "new"}, {'f', ".wh.b", ""},
	    {'f', ".wh.c", ""}, {'d', "c", .mode = 0700})},
	 "/a f 0644 0:0 =new\n"
	 "/b f 0644 0:0 =new\n"
	 "/c d 0700 0:0\n"},
	{"later layers replace across types",
	 {E({'f', "p", "x"}, {'d', "q"}, {'f', "q/inner", "i"}, {'l', "r", "p"}, {'d', "s"},
	    {'f', "s/deep", "d"}, {'l', "t", "q"}),
	  E({'d', "p", .mode = 0700}, {'f', "p/child", "c"}, {'l', "q", "p"}, {'f', "r", "r"},
	    {'f', "s", "file"}, {'d', "t"})},
	 "/p d 0700 0:0\n"
	 "/p/child f 0644 0:0 =c\n"
	 "/q l 0777 0:0 ->p\n"
	 "/r f 0644 0:0 =r\n"
	 "/s f 0644 0:0 =file\n"
	 "/t d 0755 0:0\n"},
	{"hardlinks across layers, then one side replaced",
	 {E({'f', "a", "A", .mode = 0755}, {'h', "b", "a"}),
	  E({'h', "c", "a"}, {'h', "d/e", "/b"}),
	  E({'f', "b", "B2"})},
	 "/a f 0755 0:0 n=3 =A\n"
	 "/b f 0644 0:0 =B2\n"
	 "/c f 0755 0:0 n=3 hl=/a\n"
	 "/d d 0755 0:0 t=0.000000000\n"
	 "/d/e f 0755 0:0 n=3 hl=/a\n"},
	{"hardlink survives a whiteout of its first name",
	 {E({'f', "a", "A"}, {'h', "b", "a"}, {'h', "c", "a"}),
	  E({'f', ".wh.a", ""})},
	 "/b f 0644 0:0 n=2 =A\n"
	 "/c f 0644 0:0 n=2 hl=/b\n"},
	{"symlinks and files under symlinked parents",
	 {E({'d', "real"}, {'l', "link", "real"}, {'l', "abs", "/real"}, {'l', "dangling", "nowhere"},
	    {'l', "dot", "./real/../real"}),
	  E({'f', "link/file", "x"}, {'f', "abs/file2", "y"}, {'f', "dot/file3", "z"})},
	 "/abs l 0777 0:0 ->/real\n"
	 "/dangling l 0777 0:0 ->nowhere\n"
	 "/dot l 0777 0:0 ->./real/../real\n"
	 "/link l 0777 0:0 ->real\n"
	 "/real d 0755 0:0\n"
	 "/real/file f 0644 0:0 =x\n"
	 "/real/file2 f 0644 0:0 =y\n"
	 "/real/file3 f 0644 0:0 =z\n"},
	{"devices, FIFOs, modes, owners, nanosecond mtimes, xattrs",
	 {E({'c', "dev/null", .mode = 0666, .maj = 1, .min = 3},
	    {'b', "dev/sda", .mode = 0660, .gid = 6, .maj = 8, .min = 0},
	    {'p', "run/fifo", .mode = 0600}, {'f', "bin/su", "su", .mode = 04755},
	    {'f', "bin/wall", "wall", .mode = 02755, .gid = 5}, {'d', "tmp", .mode = 01777},
	    {'f', "owned", "o", .uid = 1000, .gid = 100, .mtime = 1234567890, .nsec = 987654321},
	    {'f', "ping", "p", .xname = "security.capability", .xval = "\x01\x00\x00\x02", .xlen = 4},
	    {'f', "user", "u", .xname = "user.a", .xval = "b"},
	    {'d', "xdir", .xname = "trusted.overlay.x", .xval = "y"})},
	 "/bin d 0755 0:0 t=0.000000000\n"
	 "/bin/su f 4755 0:0 =su\n"
	 "/bin/wall f 2755 0:5 =wall\n"
	 "/dev d 0755 0:0 t=0.000000000\n"
	 "/dev/null c 0666 0:0 dev=1,3\n"
	 "/dev/sda b 0660 0:6 dev=8,0\n"
	 "/owned f 0644 1000:100 t=1234567890.987654321 =o\n"
	 "/ping f 0644 0:0 =p x:security.capability=\\x01\\x00\\x00\\x02\n"
	 "/run d 0755 0:0 t=0.000000000\n"
	 "/run/fifo p 0600 0:0\n"
	 "/tmp d 1777 0:0\n"
	 "/user f 0644 0:0 =u x:user.a=b\n"
	 "/xdir d 0755 0:0 x:trusted.overlay.x=y\n"},
	{"directories implied by deeper paths, described later",
	 {E({'f', "x/y/z", "z"}, {'d', "x", .mode = 0700, .uid = 5})},
	 "/x d 0700 5:0\n"
	 "/x/y d 0755 0:0 t=0.000000000\n"
	 "/x/y/z f 0644 0:0 =z\n"},
	{"duplicate entries in one layer: the last wins",
	 {E({'f', "a", "1"}, {'f', "a", "2"}, {'d', "b", .mode = 0700}, {'d', "b", .mode = 0750},
	    {'f', "c", "file"}, {'d', "c"}, {'f', "c/in", "i"}, {'l', "d", "a"}, {'f', "d", "D"})},
	 "/a f 0644 0:0 =2\n"
	 "/b d 0750 0:0\n"
	 "/c d 0755 0:0\n"
	 "/c/in f 0644 0:0 =i\n"
	 "/d f 0644 0:0 =D\n"},
	/* 3 MB of zeros compresses to a few KiB: the decompressor takes the whole input at once
	 * and still holds most of the output when the input ends, which must be flushed, not
	 * mistaken for truncation. */
	{"highly compressible layer",
	 {E({'f', "zeros", zeros3m, .len = sizeof(zeros3m)}, {'f', "after", "a"})},
	 "/after f 0644 0:0 =a\n"
	 "/zeros f 0644 0:0 sz=3000000 sha=35bce4ea\n"},
	{"absolute and dotted names are normalised",
	 {E({'d', "./", .mode = 0755}, {'f', "/abs/f", "1"}, {'f', "./rel/./g", "2"},
	    {'f', "rel//h", "3"})},
	 "/abs d 0755 0:0 t=0.000000000\n"
	 "/abs/f f 0644 0:0 =1\n"
	 "/rel d 0755 0:0 t=0.000000000\n"
	 "/rel/g f 0644 0:0 =2\n"
	 "/rel/h f 0644 0:0 =3\n"},
};
/* clang-format on */

/* --- failing cases -------------------------------------------------------------------- */

static int raw_absurd_pax_size(struct cm_buf *t)
{
	int r = tl_tar_pax(t, "size", "1000000000000000");
	if (r == 0)
		r = tl_tar_raw_header(t, "huge", '0', 0, NULL);
	return r ? r : tl_tar_end(t);
}

static int raw_absurd_base256_size(struct cm_buf *t)
{
	int r = tl_tar_raw_header(t, "huge", '0', 1ull << 50, NULL);
	return r ? r : tl_tar_end(t);
}

static int raw_truncated_tar(struct cm_buf *t)
{
	static uint8_t data[100000];
	tl_random(77, data, sizeof(data));
	int r = tl_tar(E({'f', "big", (const char *)data, .len = sizeof(data)}), t);
	t->len = 512 + 4096; /* header (PAX header first, then ustar) and part of the data */
	return r;
}

static uint8_t random_blob[200000];

/* One row per case: kept as written. */
/* clang-format off */
static const struct lcase bad_cases[] = {
	{"'..' component", {E({'f', "a/../../etc/passwd", "x"})}, NULL, -EPROTO},
	{"'..' as the whole name", {E({'d', ".."})}, NULL, -EPROTO},
	{"escape through a relative symlink", {E({'l', "a", "../.."}, {'f', "a/x", "x"})}, NULL,
	 -EPROTO},
	{"escape through an absolute symlink", {E({'l', "b", "/.."}, {'f', "b/x", "x"})}, NULL,
	 -EPROTO},
	{"escape through a symlink chain", {E({'d', "d"}, {'l', "d/up", ".."}, {'l', "e", "d/up/.."}),
					     E({'f', "e/x", "x"})}, NULL, -EPROTO},
	{"symlink loop in a parent", {E({'l', "a", "b"}, {'l', "b", "a"}, {'f', "a/x", "x"})}, NULL,
	 -EPROTO},
	{"hardlink to a missing target", {E({'h', "b", "nope"})}, NULL, -EPROTO},
	{"hardlink to a directory", {E({'d', "d"}, {'h', "b", "d"})}, NULL, -EPROTO},
	{"hardlink target escaping through a symlink", {E({'l', "a", "../.."}, {'h', "b", "a/etc/x"})},
	 NULL, -EPROTO},
	{"absurd size (PAX)", {NULL}, NULL, -EFBIG, raw_absurd_pax_size},
	{"absurd size (base-256)", {NULL}, NULL, -EFBIG, raw_absurd_base256_size},
	{"truncated tar", {NULL}, NULL, -EPROTO, raw_truncated_tar},
	{"truncated gzip", {E({'f', "r", (const char *)random_blob, .len = sizeof(random_blob)})},
	 NULL, -EPROTO, NULL, {.comp = TL_GZIP, .truncate_blob = 50000}},
	{"truncated zstd", {E({'f', "r", (const char *)random_blob, .len = sizeof(random_blob)})},
	 NULL, -EPROTO, NULL, {.comp = TL_ZSTD, .truncate_blob = 50000}},
	{"gzip stream cut at a block boundary", {E({'f', "small", "s"})}, NULL, -EPROTO, NULL,
	 {.comp = TL_GZIP, .truncate_blob = 20}},
	{"layer digest mismatch", {E({'f', "x", "x"})}, NULL, -EBADMSG, NULL,
	 {.comp = TL_GZIP, .bad_digest = true}},
	{"diff_id mismatch", {E({'f', "x", "x"})}, NULL, -EBADMSG, NULL,
	 {.comp = TL_ZSTD, .bad_diff_id = true}},
	{"unsupported layer media type", {E({'f', "x", "x"})}, NULL, -ENOTSUP, NULL,
	 {.media_type = "application/vnd.oci.image.layer.v1.tar+bzip2"}},
	{"Docker schema 1 manifest", {NULL}, NULL, -ENOTSUP, .schema1 = true},
};
/* clang-format on */

/* --- runner --------------------------------------------------------------------------- */

static int make_layers(const struct lcase *c, enum tl_comp comp, struct cm_buf *tars,
		       struct tl_layer *ls, size_t *ret_n)
{
	size_t n = 0;
	for (; n < MAX_LAYERS && (c->layers[n] || (n == 0 && c->raw)); n++) {
		cm_buf_init(&tars[n], 0);
		int r = c->layers[n] ? tl_tar(c->layers[n], &tars[n]) : c->raw(&tars[n]);
		if (r < 0)
			return r;
		ls[n] =
		    (struct tl_layer){.tar = tars[n].data, .tar_len = tars[n].len, .comp = comp};
	}
	*ret_n = n;
	return 0;
}

static char *run_ok(const struct lcase *c, enum tl_comp comp)
{
	_cleanup_free_ char *tmp = tl_mkdtemp("idx-layers");
	_cleanup_free_ char *layout = cm_strdupf("%s/layout", tmp);
	_cleanup_free_ char *store = cm_strdupf("%s/store", tmp);
	struct cm_buf tars[MAX_LAYERS];
	struct tl_layer ls[MAX_LAYERS];
	size_t n;
	assert_int_equal(make_layers(c, comp, tars, ls, &n), 0);
	assert_int_equal(tl_layout_write(layout, ls, n, NULL), 0);
	for (size_t i = 0; i < n; i++)
		cm_buf_fini(&tars[i]);
	struct idx_store *s = NULL;
	struct idx_reader *r = NULL;
	int k = tl_build(layout, store, &s, &r);
	char *dump = k == 0 ? tl_dump(r, s) : cm_strdupf("idx_build failed: %s\n", strerror(-k));
	if (k == 0)
		tl_walk(r);
	idx_reader_free(r);
	idx_store_free(s);
	tl_rm_rf(tmp);
	return dump;
}

static void test_semantics(void **state)
{
	static const enum tl_comp comps[] = {TL_PLAIN, TL_GZIP, TL_ZSTD};
	int failures = 0;
	for (size_t i = 0; i < ARRAY_SIZE(ok_cases); i++) {
		for (size_t j = 0; j < ARRAY_SIZE(comps); j++) {
			_cleanup_free_ char *got = run_ok(&ok_cases[i], comps[j]);
			if (strcmp(got, ok_cases[i].expect) != 0) {
				fprintf(stderr,
					"case '%s' (compression %d):\n--- expected\n%s--- got\n%s",
					ok_cases[i].name, (int)comps[j], ok_cases[i].expect, got);
				failures++;
			}
		}
	}
	assert_int_equal(failures, 0);
}

struct hostile_fixture {
	char *tmp, *store, *base_layout;
};

static int hostile_setup(void **state)
{
	struct hostile_fixture *f = calloc(1, sizeof(*f));
	f->tmp = tl_mkdtemp("idx-hostile");
	f->store = cm_strdupf("%s/store", f->tmp);
	f->base_layout = cm_strdupf("%s/base", f->tmp);
	tl_random(1234, random_blob, sizeof(random_blob));
	/* The store already holds an image, so "unchanged" is checked on a non-empty store. */
	struct cm_buf tar;
	cm_buf_init(&tar, 0);
	assert_int_equal(tl_tar(E({'f', "base", (const char *)random_blob, .len = 70000},
				  {'f', "hello", "hello"}),
				&tar),
			 0);
	struct tl_layer l = {.tar = tar.data, .tar_len = tar.len, .comp = TL_GZIP};
	assert_int_equal(tl_layout_write(f->base_layout, &l, 1, NULL), 0);
	cm_buf_fini(&tar);
	assert_int_equal(tl_build(f->base_layout, f->store, NULL, NULL), 0);
	*state = f;
	return 0;
}

static int hostile_teardown(void **state)
{
	struct hostile_fixture *f = *state;
	tl_rm_rf(f->tmp);
	free(f->tmp);
	free(f->store);
	free(f->base_layout);
	free(f);
	return 0;
}

static void test_hostile(void **state)
{
	struct hostile_fixture *f = *state;
	_cleanup_free_ char *tmpdir = cm_strdupf("%s/tmp", f->store);
	int failures = 0;
	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		const struct lcase *c = &bad_cases[i];
		_cleanup_free_ char *layout = cm_strdupf("%s/case%zu", f->tmp, i);
		/* A valid first layer with content of its own: its chunks must not survive. */
		uint8_t own[70000];
		tl_random(5000 + i, own, sizeof(own));
		struct cm_buf tars[MAX_LAYERS + 1];
		struct tl_layer ls[MAX_LAYERS + 1];
		size_t n = 0;
		cm_buf_init(&tars[0], 0);
		assert_int_equal(
		    tl_tar(E({'f', "own", (const char *)own, .len = sizeof(own)}), &tars[0]), 0);
		ls[0] =
		    (struct tl_layer){.tar = tars[0].data, .tar_len = tars[0].len, .comp = TL_GZIP};
		if (!c->schema1) {
			assert_int_equal(make_layers(c, TL_PLAIN, tars + 1, ls + 1, &n), 0);
			struct tl_layer *last = &ls[n];
			last->comp = c->mut.comp;
			last->truncate_blob = c->mut.truncate_blob;
			last->bad_digest = c->mut.bad_digest;
			last->bad_diff_id = c->mut.bad_diff_id;
			last->media_type = c->mut.media_type;
		}
		struct tl_image_opts o = {.schema1 = c->schema1};
		assert_int_equal(tl_layout_write(layout, ls, n + 1, &o), 0);
		for (size_t j = 0; j <= n; j++)
			cm_buf_fini(&tars[j]);

		_cleanup_free_ char *before = tl_snapshot(f->store);
		int k = tl_build(layout, f->store, NULL, NULL);
		_cleanup_free_ char *after = tl_snapshot(f->store);
		int left = tl_count_entries(tmpdir);
		if (k != c->err || strcmp(before, after) != 0 || left != 0) {
			fprintf(stderr,
				"hostile case '%s': got %d (%s), expected %d (%s); store %s; "
				"tmp/ has %d entries\n",
				c->name, k, strerror(-k), c->err, strerror(-c->err),
				strcmp(before, after) ? "CHANGED" : "unchanged", left);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
	/* The store still serves the base image. */
	assert_int_equal(tl_build(f->base_layout, f->store, NULL, NULL), 0);
}

int main(void)
{
	cm_log_set_level(getenv("TL_VERBOSE") ? CM_LOG_DEBUG : CM_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_semantics),
	    cmocka_unit_test_setup_teardown(test_hostile, hostile_setup, hostile_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
