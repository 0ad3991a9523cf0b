/*
 * Format round trip through the public API: tar layers generated here -> OCI layout ->
 * idx_build into a temporary store -> idx_reader: every inode, dirent, extent, chunk and
 * xattr read back and compared with what the layers put in. Also: the same image indexed
 * into two stores gives the same bytes; a rebuild adds no chunk; the store holds nothing
 * but what the index names.
 */
#include "idx_testlib.h"

#include "indexer/build.h"
#include "indexer/index.h"
#include "indexer/source.h"
#include "indexer/store.h"
#include "indexer/trace.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <zstd.h>

#define BIG_LEN	   (1u << 20) /* several chunks */
#define MEDIUM_LEN (100000u)  /* between min and max: one or two chunks */

static uint8_t *big, *medium;
static char cap_value[20] = {1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

/* What goes into the image; the same table drives the comparison. */
/* clang-format off */
static struct tl_entry entries[] = {
	{'d', "etc", .mode = 0755},
	{'f', "etc/hostname", "sandbox\n", .mode = 0644, .uid = 0, .gid = 0, .nsec = 123456789},
	{'f', "etc/shadow", "root:*:19000::::::\n", .mode = 0640, .gid = 42},
	{'f', "empty", "", .mode = 0600, .uid = 1000, .gid = 1000},
	{'d', "usr", .mode = 0755},
	{'d', "usr/bin", .mode = 0755},
	{'f', "usr/bin/su", "#!/bin/sh\nexit 0\n", .mode = 04755},
	{'f', "usr/bin/wall", "wall\n", .mode = 02755, .gid = 5},
	{'f', "usr/bin/ping", "ping\n", .mode = 0755, .xname = "security.capability",
	 .xval = cap_value, .xlen = sizeof(cap_value)},
	{'f', "usr/bin/tagged", "t\n", .xname = "user.comment", .xval = "hello world"},
	{'d', "tmp", .mode = 01777},
	{'l', "usr/bin/sh", "dash", .mtime = 1600000000, .nsec = 5},
	{'l', "abs", "/usr/bin/su"},
	{'c', "null", .mode = 0666, .maj = 1, .min = 3},
	{'b', "sda", .mode = 0660, .gid = 6, .maj = 8, .min = 0},
	{'p', "fifo", .mode = 0600},
	{'f', "data/big", NULL, .len = BIG_LEN, .mode = 0644, .mtime = 1, .nsec = 999999999},
	{'f', "data/big-copy", NULL, .len = BIG_LEN, .mode = 0444},
	{'f', "data/medium", NULL, .len = MEDIUM_LEN, .uid = 65534, .gid = 65534},
	{'d', "data/deep/a/b/c", .mode = 0700},
	{'f', "data/deep/a/b/c/leaf", "leaf"},
	{0},
};
/* clang-format on */

struct fixture {
	char *tmp, *layout, *store1, *store2;
	struct idx_store *s1;
	struct idx_reader *r1;
};

static int setup(void **state)
{
	big = malloc(BIG_LEN);
	medium = malloc(MEDIUM_LEN);
	tl_random(10, big, BIG_LEN);
	tl_random(11, medium, MEDIUM_LEN);
	for (struct tl_entry *e = entries; e->type; e++) {
		if (!strcmp(e->path, "data/big") || !strcmp(e->path, "data/big-copy"))
			e->data = (const char *)big;
		else if (!strcmp(e->path, "data/medium"))
			e->data = (const char *)medium;
	}
	struct fixture *f = calloc(1, sizeof(*f));
	f->tmp = tl_mkdtemp("idx-format");
	f->layout = cm_strdupf("%s/layout", f->tmp);
	f->store1 = cm_strdupf("%s/store1", f->tmp);
	f->store2 = cm_strdupf("%s/store2", f->tmp);
	struct cm_buf tar;
	cm_buf_init(&tar, 0);
	assert_int_equal(tl_tar(entries, &tar), 0);
	struct tl_layer l = {.tar = tar.data, .tar_len = tar.len, .comp = TL_GZIP};
	struct tl_image_opts o = {.config_body =
				      "\"Env\":[\"PATH=/usr/bin\"],\"Cmd\":[\"/usr/bin/su\"]"};
	assert_int_equal(tl_layout_write(f->layout, &l, 1, &o), 0);
	cm_buf_fini(&tar);
	assert_int_equal(tl_build(f->layout, f->store1, &f->s1, &f->r1), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	idx_reader_free(f->r1);
	idx_store_free(f->s1);
	tl_rm_rf(f->tmp);
	free(f->tmp);
	free(f->layout);
	free(f->store1);
	free(f->store2);
	free(f);
	free(big);
	free(medium);
	return 0;
}

static size_t entry_len(const struct tl_entry *e)
{
	return e->len ? e->len : e->data ? strlen(e->data) : 0;
}

static uint32_t type_bits(char t)
{
	switch (t) {
	case 'f':
		return S_IFREG;
	case 'd':
		return S_IFDIR;
	case 'l':
		return S_IFLNK;
	case 'c':
		return S_IFCHR;
	case 'b':
		return S_IFBLK;
	default:
		return S_IFIFO;
	}
}

static void test_every_entry_round_trips(void **state)
{
	struct fixture *f = *state;
	const struct idx_reader *r = f->r1;
	size_t nentries = 0;
	_cleanup_free_ uint8_t *buf = malloc(4u << 20);
	for (const struct tl_entry *e = entries; e->type; e++, nentries++) {
		uint32_t ino;
		struct idx_inode in;
		assert_int_equal(idx_reader_lookup_path(r, e->path, &ino), 0);
		assert_int_equal(idx_reader_inode(r, ino, &in), 0);
		uint32_t defmode = e->type == 'd' ? 0755 : e->type == 'l' ? 0777 : 0644;
		assert_int_equal(in.mode, type_bits(e->type) | (e->mode ? e->mode : defmode));
		assert_int_equal(in.uid, e->uid);
		assert_int_equal(in.gid, e->gid);
		assert_int_equal(in.mtime_sec, e->mtime ? e->mtime : TL_MTIME);
		assert_int_equal(in.mtime_nsec, (uint32_t)e->nsec);
		if (e->type == 'c' || e->type == 'b') {
			assert_int_equal(in.rdev_major, e->maj);
			assert_int_equal(in.rdev_minor, e->min);
		}
		if (e->type == 'l') {
			const char *t;
			size_t tl;
			assert_int_equal(idx_reader_readlink(r, ino, &t, &tl), 0);
			assert_int_equal(tl, strlen(e->data));
			assert_memory_equal(t, e->data, tl);
			assert_int_equal(t[tl], 0);
			assert_int_equal(in.size, tl);
		} else {
			assert_int_equal(
			    idx_reader_readlink(r, ino, &(const char *){0}, &(size_t){0}), -EINVAL);
		}
		if (e->type == 'f') {
			size_t len = entry_len(e);
			assert_int_equal(in.size, len);
			assert_int_equal(in.nlink, 1);
			uint32_t n;
			assert_int_equal(idx_reader_extent_count(r, ino, &n), 0);
			uint64_t off = 0;
			for (uint32_t i = 0; i < n; i++) {
				struct idx_extent x;
				struct idx_chunk c;
				uint32_t at;
				assert_int_equal(idx_reader_extent(r, ino, i, &x), 0);
				assert_int_equal(x.file_offset, off);
				assert_int_equal(idx_reader_chunk(r, x.chunk, &c), 0);
				assert_true(c.usize <= 256u << 10);
				assert_int_equal(c.flags, IDX_CHUNK_COMP_ZSTD);
				uint8_t d[32];
				cm_sha256(e->data + off, c.usize, d);
				assert_memory_equal(c.digest, d, 32);
				assert_int_equal(
				    idx_store_read_chunk(f->s1, c.digest, buf, c.usize), 0);
				assert_memory_equal(buf, e->data + off, c.usize);
				assert_int_equal(idx_reader_extent_at(r, ino, off, &at), 0);
				assert_int_equal(at, i);
				assert_int_equal(
				    idx_reader_extent_at(r, ino, off + c.usize - 1, &at), 0);
				assert_int_equal(at, i);
				off += c.usize;
			}
			assert_int_equal(off, len);
			assert_int_equal(idx_reader_extent_at(r, ino, len, &(uint32_t){0}), -ENXIO);
			assert_true(len == 0 ? n == 0 : n >= 1);
			if (len == BIG_LEN)
				assert_true(n >= 4);
		} else {
			assert_int_equal(idx_reader_extent_count(r, ino, &(uint32_t){0}),
					 e->type == 'd' ? -EINVAL : -EINVAL);
		}
		uint32_t nx;
		assert_int_equal(idx_reader_xattr_count(r, ino, &nx), 0);
		assert_int_equal(nx, e->xname ? 1 : 0);
		if (e->xname) {
			struct idx_xattr xa;
			size_t xl = e->xlen ? e->xlen : strlen(e->xval);
			assert_int_equal(idx_reader_xattr(r, ino, 0, &xa), 0);
			assert_string_equal(xa.name, e->xname);
			assert_int_equal(xa.value_len, xl);
			assert_memory_equal(xa.value, e->xval, xl);
			assert_int_equal(idx_reader_xattr(r, ino, 1, &xa), -ENOENT);
		}
	}
	/* Nothing else: the inodes are the entries, the root, and the implicit "data" dirs
	 * (data, data/deep, data/deep/a, data/deep/a/b). */
	assert_int_equal(idx_reader_inode_count(r), nentries + 1 + 4);
	struct idx_stats st;
	idx_reader_stats(r, &st);
	assert_int_equal(st.files, 11);
	assert_int_equal(st.symlinks, 2);
	assert_int_equal(st.others, 3);
	assert_int_equal(st.dirs, 5 + 4 + 1); /* explicit, implicit, root */
}

static void test_directories(void **state)
{
	struct fixture *f = *state;
	const struct idx_reader *r = f->r1;
	/* Root listing in name order, with types, and "." / ".." never listed. */
	static const struct {
		const char *name;
		uint8_t type;
	} root[] = {
	    {"abs", DT_LNK}, {"data", DT_DIR},	{"empty", DT_REG},
	    {"etc", DT_DIR}, {"fifo", DT_FIFO}, {"null", DT_CHR},
	    {"sda", DT_BLK}, {"tmp", DT_DIR},	{"usr", DT_DIR},
	};
	uint32_t n;
	assert_int_equal(idx_reader_dir_count(r, IDX_ROOT_INO, &n), 0);
	assert_int_equal(n, ARRAY_SIZE(root));
	for (uint32_t i = 0; i < n; i++) {
		struct idx_dirent de;
		uint32_t ino;
		assert_int_equal(idx_reader_dirent(r, IDX_ROOT_INO, i, &de), 0);
		assert_string_equal(de.name, root[i].name);
		assert_int_equal(de.name_len, strlen(root[i].name));
		assert_int_equal(de.type, root[i].type);
		assert_int_equal(idx_reader_lookup(r, IDX_ROOT_INO, de.name, de.name_len, &ino), 0);
		assert_int_equal(ino, de.ino);
	}
	assert_int_equal(idx_reader_dirent(r, IDX_ROOT_INO, n, &(struct idx_dirent){0}), -ENOENT);
	assert_int_equal(idx_reader_lookup(r, IDX_ROOT_INO, "zzz", 3, &(uint32_t){0}), -ENOENT);
	assert_int_equal(idx_reader_lookup(r, IDX_ROOT_INO, "ab", 2, &(uint32_t){0}), -ENOENT);

	/* Parents and link counts: a directory has 2 + its subdirectories. */
	uint32_t usr, bin, su, c;
	struct idx_inode in;
	assert_int_equal(idx_reader_lookup_path(r, "/usr", &usr), 0);
	assert_int_equal(idx_reader_lookup_path(r, "usr/bin", &bin), 0);
	assert_int_equal(idx_reader_lookup_path(r, "./usr//bin/su", &su), 0);
	assert_int_equal(idx_reader_inode(r, bin, &in), 0);
	assert_int_equal(in.parent, usr);
	assert_int_equal(in.nlink, 2);
	assert_int_equal(idx_reader_inode(r, usr, &in), 0);
	assert_int_equal(in.parent, IDX_ROOT_INO);
	assert_int_equal(in.nlink, 3);
	assert_int_equal(idx_reader_inode(r, IDX_ROOT_INO, &in), 0);
	assert_int_equal(in.parent, IDX_ROOT_INO);
	assert_int_equal(in.nlink, 2 + 4); /* data etc tmp usr */
	assert_int_equal(idx_reader_lookup_path(r, "usr/bin/..", &c), 0);
	assert_int_equal(c, usr);
	assert_int_equal(idx_reader_lookup_path(r, "/..", &c), 0);
	assert_int_equal(c, IDX_ROOT_INO);
	/* Symlinks are not followed; a file is not a directory. */
	assert_int_equal(idx_reader_lookup_path(r, "abs/x", &c), -ENOTDIR);
	assert_int_equal(idx_reader_lookup_path(r, "usr/bin/su/x", &c), -ENOTDIR);
	assert_int_equal(idx_reader_lookup_path(r, "usr/bin/su/..", &c), -ENOTDIR);
	assert_int_equal(idx_reader_lookup_path(r, "usr/nothing", &c), -ENOENT);
	assert_int_equal(idx_reader_dir_count(r, su, &n), -ENOTDIR);
	assert_int_equal(idx_reader_inode(r, 0, &in), -ENOENT);
	assert_int_equal(idx_reader_inode(r, idx_reader_inode_count(r) + 1, &in), -ENOENT);
	/* Implicit directories: created by deeper paths, mode 0755, owned by root. */
	assert_int_equal(idx_reader_lookup_path(r, "data/deep/a", &c), 0);
	assert_int_equal(idx_reader_inode(r, c, &in), 0);
	assert_int_equal(in.mode, S_IFDIR | 0755);
	assert_int_equal(in.uid, 0);
}

static void test_chunks_packs_config(void **state)
{
	struct fixture *f = *state;
	const struct idx_reader *r = f->r1;
	/* big and big-copy share all chunks: unique data is one copy of each file. */
	struct idx_stats st;
	idx_reader_stats(r, &st);
	uint64_t small = 0;
	for (const struct tl_entry *e = entries; e->type; e++)
		if (e->type == 'f' && strncmp(e->path, "data/", 5))
			small += entry_len(e);
	assert_int_equal(st.file_bytes, 2 * BIG_LEN + MEDIUM_LEN + small + 4);
	assert_int_equal(st.unique_bytes, BIG_LEN + MEDIUM_LEN + small + 4);
	/* Packs tile the chunk table; each chunk sits at its offset in its pack. */
	uint32_t np = idx_reader_pack_count(r), next = 0;
	assert_true(np >= 1);
	for (uint32_t p = 0; p < np; p++) {
		struct idx_pack pk;
		assert_int_equal(idx_reader_pack(r, p, &pk), 0);
		assert_int_equal(pk.chunk_first, next);
		uint64_t off = 0;
		for (uint32_t i = pk.chunk_first; i < pk.chunk_first + pk.chunk_count; i++) {
			struct idx_chunk c;
			assert_int_equal(idx_reader_chunk(r, i, &c), 0);
			assert_int_equal(c.pack, p);
			assert_int_equal(c.pack_offset, off);
			off += c.csize;
		}
		assert_int_equal(off, pk.size);
		next += pk.chunk_count;
	}
	assert_int_equal(next, idx_reader_chunk_count(r));
	/* Every chunk of the index is in the store, once, and nothing else is. */
	_cleanup_free_ char *chunks_dir = cm_strdupf("%s/chunks", f->store1);
	uint32_t files = 0;
	for (int i = 0; i < 256; i++) {
		_cleanup_free_ char *d = cm_strdupf("%s/%02x", chunks_dir, i);
		int k = tl_count_entries(d); /* chunks/XX is made on first use */
		assert_true(k >= 0 || k == -ENOENT);
		files += k > 0 ? (uint32_t)k : 0;
	}
	assert_int_equal(files, idx_reader_chunk_count(r));
	/* The startup list starts with the Cmd program. */
	uint32_t su, c0;
	struct idx_extent x;
	assert_int_equal(idx_reader_lookup_path(r, "usr/bin/su", &su), 0);
	assert_int_equal(idx_reader_extent(r, su, 0, &x), 0);
	assert_true(idx_reader_prefetch_count(r) >= 1);
	assert_int_equal(idx_reader_prefetch(r, 0, &c0), 0);
	assert_int_equal(c0, x.chunk);
	/* Config is stored verbatim and parsed. */
	struct idx_config *cfg;
	assert_int_equal(idx_reader_config(r, &cfg), 0);
	assert_string_equal(cfg->env[0], "PATH=/usr/bin");
	assert_null(cfg->env[1]);
	assert_string_equal(cfg->cmd[0], "/usr/bin/su");
	idx_config_free(cfg);
	size_t len;
	const char *cj = idx_reader_config_json(r, &len);
	uint8_t d[32];
	char ds[72];
	cm_sha256(cj, len, d);
	cm_digest_format(d, ds);
	assert_string_equal(ds, idx_reader_config_digest(r));
	/* The index digest is the SHA-256 of the blob. */
	const void *blob = idx_reader_data(r, &len);
	cm_sha256(blob, len, d);
	cm_digest_format(d, ds);
	assert_string_equal(ds, idx_reader_digest(r));
}

static void test_deterministic_across_stores(void **state)
{
	struct fixture *f = *state;
	struct idx_store *s2;
	struct idx_reader *r2;
	assert_int_equal(tl_build(f->layout, f->store2, &s2, &r2), 0);
	size_t l1, l2;
	const void *b1 = idx_reader_data(f->r1, &l1), *b2 = idx_reader_data(r2, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(b1, b2, l1);
	assert_string_equal(idx_reader_digest(f->r1), idx_reader_digest(r2));
	_cleanup_free_ char *d1 = tl_dump(f->r1, f->s1), *d2 = tl_dump(r2, s2);
	assert_string_equal(d1, d2);
	idx_reader_free(r2);
	idx_store_free(s2);
}

/* The number of workers changes nothing in the index (chunk ids and order do not depend on
 * which worker finishes first). */
static void test_deterministic_across_threads(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *spec = cm_strdupf("oci:%s", f->layout);
	char digests[3][72];
	static const int threads[] = {1, 3, 8};
	for (size_t i = 0; i < ARRAY_SIZE(threads); i++) {
		_cleanup_free_ char *dir = cm_strdupf("%s/threads%d", f->tmp, threads[i]);
		struct idx_store *s;
		struct idx_source *src;
		struct idx_build_result res;
		struct idx_build_opts o = {.threads = threads[i]};
		assert_int_equal(idx_store_open(dir, &s), 0);
		assert_int_equal(idx_source_oci_open(spec, &src), 0);
		assert_int_equal(idx_build(s, src, &o, &res), 0);
		memcpy(digests[i], res.index_digest, 72);
		idx_source_free(src);
		idx_store_free(s);
	}
	assert_string_equal(digests[0], idx_reader_digest(f->r1));
	assert_string_equal(digests[1], digests[0]);
	assert_string_equal(digests[2], digests[0]);
}

/* An image (OCI layout f->tmp/NAME) of one compressible 600 KiB file, data/text, so that
 * zstd levels really differ; returns its "oci:" source spec (caller frees). */
static char *compressible_image(struct fixture *f, const char *name)
{
	size_t len = 600 * 1024;
	_cleanup_free_ char *text = malloc(len);
	assert_non_null(text);
	for (size_t i = 0; i < len; i++)
		text[i] = "startup chunks: compressed harder, read first. "[(i * 7 + i / 4096) % 47];
	struct tl_entry ents[] = {
	    {.type = 'd', .path = "data"},
	    {.type = 'f', .path = "data/text", .data = text, .len = len},
	    {0},
	};
	struct cm_buf tar;
	cm_buf_init(&tar, 0);
	assert_int_equal(tl_tar(ents, &tar), 0);
	struct tl_layer layer = {.tar = tar.data, .tar_len = tar.len, .comp = TL_GZIP};
	_cleanup_free_ char *layout = cm_strdupf("%s/%s", f->tmp, name);
	assert_int_equal(tl_layout_write(layout, &layer, 1, NULL), 0);
	cm_buf_fini(&tar);
	return cm_strdupf("oci:%s", layout);
}

/* A store whose copies of the chunks were compressed differently (another zstd level here;
 * in life another release, or packs fetched from a registry) gives the same index: stored
 * bytes in the index come from this build's compression, never from the store's files. */
static void test_deterministic_whatever_the_store_holds(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *spec = compressible_image(f, "compressible");

	char digest_fresh[72], digest_19[72];
	struct idx_build_result res;
	struct idx_source *src;
	struct idx_store *s;
	_cleanup_free_ char *fresh = cm_strdupf("%s/fresh-default", f->tmp);
	assert_int_equal(idx_store_open(fresh, &s), 0);
	assert_int_equal(idx_source_oci_open(spec, &src), 0);
	assert_int_equal(idx_build(s, src, NULL, &res), 0);
	memcpy(digest_fresh, res.index_digest, 72);
	idx_source_free(src);
	idx_store_free(s);

	_cleanup_free_ char *dir = cm_strdupf("%s/level19", f->tmp);
	struct idx_build_opts o = {.zstd_level = 19};
	assert_int_equal(idx_store_open(dir, &s), 0);
	assert_int_equal(idx_source_oci_open(spec, &src), 0);
	assert_int_equal(idx_build(s, src, &o, &res), 0);
	memcpy(digest_19, res.index_digest, 72);
	idx_source_free(src);
	assert_string_not_equal(digest_19, digest_fresh); /* the levels do differ */
	/* Same store, default level: the store's level-19 files are not the pack bytes. */
	assert_int_equal(idx_source_oci_open(spec, &src), 0);
	assert_int_equal(idx_build(s, src, NULL, &res), 0);
	assert_string_equal(res.index_digest, digest_fresh);
	assert_int_equal(res.new_chunks, 0);
	idx_source_free(src);
	idx_store_free(s);
}

/* idx_source_oci_ref() names a layout as idx_source_oci_open() does, without opening it. */
static void test_oci_ref(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *plain = cm_strdupf("oci:%s", f->layout);
	_cleanup_free_ char *tagged = cm_strdupf("oci:%s:v1", f->layout);
	_cleanup_free_ char *untagged = cm_strdupf("oci:%s:", f->layout);
	const char *specs[] = {plain, tagged, untagged};
	for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
		struct idx_source *src;
		_cleanup_free_ char *ref = NULL;
		assert_int_equal(idx_source_oci_open(specs[i], &src), 0);
		assert_int_equal(idx_source_oci_ref(specs[i], &ref), 0);
		assert_string_equal(ref, src->ref);
		assert_true(cm_str_has_prefix(ref, "oci:/"));
		idx_source_free(src);
	}
	char *ref = NULL;
	_cleanup_free_ char *missing = cm_strdupf("oci:%s/none:v1", f->tmp);
	assert_int_equal(idx_source_oci_ref(missing, &ref), -ENOENT);
	assert_int_equal(idx_source_oci_ref("docker://busybox", &ref), -EINVAL);
	assert_null(ref);
}

static void test_rebuild_adds_nothing(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *before = tl_snapshot(f->store1);
	struct idx_source *src;
	_cleanup_free_ char *spec = cm_strdupf("oci:%s", f->layout);
	struct idx_build_result res;
	assert_int_equal(idx_source_oci_open(spec, &src), 0);
	assert_int_equal(idx_build(f->s1, src, NULL, &res), 0);
	idx_source_free(src);
	assert_int_equal(res.new_chunks, 0);
	assert_int_equal(res.new_bytes, 0);
	assert_int_equal(res.chunks, idx_reader_chunk_count(f->r1));
	assert_string_equal(res.index_digest, idx_reader_digest(f->r1));
	_cleanup_free_ char *after = tl_snapshot(f->store1);
	assert_string_equal(before, after);
	_cleanup_free_ char *tmp = cm_strdupf("%s/tmp", f->store1);
	assert_int_equal(tl_count_entries(tmp), 0);
	/* The reference resolves to the index. */
	char *found;
	assert_int_equal(idx_store_find_index(f->s1, res.manifest_digest, &found), 0);
	assert_string_equal(found, res.index_digest);
	free(found);
}


/* The id of extent `i` of `path` in `r`. */
static void extent_id(const struct idx_reader *r, const char *path, uint32_t i, uint8_t id[32])
{
	uint32_t ino;
	struct idx_extent x;
	struct idx_chunk c;
	assert_int_equal(idx_reader_lookup_path(r, path, &ino), 0);
	assert_int_equal(idx_reader_extent(r, ino, i, &x), 0);
	assert_int_equal(idx_reader_chunk(r, x.chunk, &c), 0);
	memcpy(id, c.digest, 32);
}

/* A startup trace puts its chunks first, in its order, at the head of the prefetch list;
 * ids the image lacks and repeats are skipped; the tree is the same; the result is
 * deterministic. */
static void test_startup_trace_order(void **state)
{
	struct fixture *f = *state;
	uint8_t ids[5][32];
	extent_id(f->r1, "data/medium", 0, ids[0]);
	extent_id(f->r1, "data/deep/a/b/c/leaf", 0, ids[1]);
	memset(ids[2], 0xab, 32); /* not in the image */
	extent_id(f->r1, "data/medium", 0, ids[3]); /* a repeat */
	extent_id(f->r1, "data/big", 3, ids[4]);
	_cleanup_free_ char *spec = cm_strdupf("oci:%s", f->layout);
	char digests[2][72];
	for (int k = 0; k < 2; k++) {
		_cleanup_free_ char *dir = cm_strdupf("%s/traced%d", f->tmp, k);
		struct idx_store *s;
		struct idx_source *src;
		struct idx_build_result res;
		struct idx_build_opts o = {.startup_ids = (const uint8_t(*)[32])ids,
					   .n_startup_ids = 5};
		assert_int_equal(idx_store_open(dir, &s), 0);
		assert_int_equal(idx_source_oci_open(spec, &src), 0);
		assert_int_equal(idx_build(s, src, &o, &res), 0);
		memcpy(digests[k], res.index_digest, 72);
		idx_source_free(src);
		struct idx_reader *r;
		_cleanup_free_ char *path = NULL;
		assert_int_equal(idx_store_index_path(s, res.index_digest, &path), 0);
		assert_int_equal(idx_reader_open(path, &r), 0);
		static const int want[] = {0, 1, 4};
		assert_true(idx_reader_prefetch_count(r) > 3);
		for (uint32_t i = 0; i < 3; i++) {
			uint32_t c;
			struct idx_chunk ch;
			assert_int_equal(idx_reader_prefetch(r, i, &c), 0);
			assert_int_equal(c, i); /* laid out first */
			assert_int_equal(idx_reader_chunk(r, c, &ch), 0);
			assert_memory_equal(ch.digest, ids[want[i]], 32);
		}
		/* Then the config's startup list: the Cmd program. */
		uint32_t c3;
		uint8_t su[32];
		struct idx_chunk ch;
		extent_id(r, "usr/bin/su", 0, su);
		assert_int_equal(idx_reader_prefetch(r, 3, &c3), 0);
		assert_int_equal(idx_reader_chunk(r, c3, &ch), 0);
		assert_memory_equal(ch.digest, su, 32);
		/* Same files, same bytes: only the order of chunks changed. */
		struct idx_stats a, b;
		idx_reader_stats(r, &a);
		idx_reader_stats(f->r1, &b);
		assert_int_equal(a.chunks, b.chunks);
		assert_int_equal(a.file_bytes, b.file_bytes);
		uint8_t x[32], y[32];
		extent_id(r, "data/big", 7, x);
		extent_id(f->r1, "data/big", 7, y);
		assert_memory_equal(x, y, 32);
		idx_reader_free(r);
		idx_store_free(s);
	}
	assert_string_equal(digests[0], digests[1]);
	assert_string_not_equal(digests[0], idx_reader_digest(f->r1));
}

/* The zstd frame of `data` at `level`, with the build's fixed parameters: its size. */
static size_t zsize(const void *data, size_t len, int level)
{
	size_t cap = ZSTD_compressBound(len);
	_cleanup_free_ uint8_t *z = malloc(cap);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	assert_non_null(z);
	assert_non_null(cc);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 0);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_dictIDFlag, 0);
	size_t n = ZSTD_compress2(cc, z, cap, data, len);
	ZSTD_freeCCtx(cc);
	assert_false(ZSTD_isError(n));
	return n;
}

/* The chunks a startup trace names are compressed at the startup level (default 9, or
 * startup_level), every other chunk at the build's level (1). */
static void test_startup_level(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *spec = compressible_image(f, "startup-level");
	static const int levels[] = {0, 3}; /* 0: the default, 9 */
	for (size_t k = 0; k < ARRAY_SIZE(levels); k++) {
		_cleanup_free_ char *dir = cm_strdupf("%s/startup-level%zu", f->tmp, k);
		struct idx_store *s;
		struct idx_source *src;
		struct idx_build_result res;
		assert_int_equal(idx_store_open(dir, &s), 0);
		/* a first build gives the id of the file's second chunk, the one traced */
		assert_int_equal(idx_source_oci_open(spec, &src), 0);
		assert_int_equal(idx_build(s, src, NULL, &res), 0);
		idx_source_free(src);
		struct idx_reader *r;
		_cleanup_free_ char *path = NULL;
		assert_int_equal(idx_store_index_path(s, res.index_digest, &path), 0);
		assert_int_equal(idx_reader_open(path, &r), 0);
		uint8_t id[1][32];
		extent_id(r, "data/text", 1, id[0]);
		idx_reader_free(r);
		struct idx_build_opts o = {.startup_ids = (const uint8_t(*)[32])id,
					   .n_startup_ids = 1,
					   .startup_level = levels[k]};
		assert_int_equal(idx_source_oci_open(spec, &src), 0);
		assert_int_equal(idx_build(s, src, &o, &res), 0);
		idx_source_free(src);
		free(path);
		path = NULL;
		assert_int_equal(idx_store_index_path(s, res.index_digest, &path), 0);
		assert_int_equal(idx_reader_open(path, &r), 0);
		assert_true(idx_reader_chunk_count(r) > 2);
		int hot = levels[k] ? levels[k] : 9;
		for (uint32_t c = 0; c < idx_reader_chunk_count(r); c++) {
			struct idx_chunk ch;
			assert_int_equal(idx_reader_chunk(r, c, &ch), 0);
			_cleanup_free_ uint8_t *u = malloc(ch.usize);
			assert_int_equal(idx_store_read_chunk(s, ch.digest, u, ch.usize), 0);
			bool traced = memcmp(ch.digest, id[0], 32) == 0;
			assert_int_equal(traced, c == 0); /* laid out first */
			assert_int_equal(ch.csize, zsize(u, ch.usize, traced ? hot : 1));
			if (traced) /* the levels do differ on this data */
				assert_int_not_equal(ch.csize, zsize(u, ch.usize, 1));
		}
		idx_reader_free(r);
		idx_store_free(s);
	}
}

/* Raw-block frames (what mounts store): valid zstd frames of exactly the data, of the size
 * idx_store_raw_frame_size says, readable through idx_store_read_chunk both from a local
 * pack (what mounts write now) and from a chunk file (what they wrote before local packs). */
static void test_raw_frames(void **state)
{
	struct fixture *f = *state;
	static const uint32_t sizes[] = {0, 1, 4095, 131071, 131072, 131073, 262144, 300000};
	_cleanup_free_ char *dir = cm_strdupf("%s/raw", f->tmp);
	struct idx_store *s, *other;
	struct idx_store_writer *w;
	assert_int_equal(idx_store_open(dir, &s), 0);
	assert_int_equal(idx_store_open(dir, &other), 0);
	assert_int_equal(idx_store_writer_new(s, &w), 0);
	_cleanup_free_ uint8_t *data = malloc(300000), *back = malloc(300000),
			       *frame = malloc(idx_store_raw_frame_size(300000));
	tl_random(12, data, 300000);
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		uint32_t n = sizes[i];
		size_t fl = idx_store_raw_frame_size(n);
		idx_store_raw_frame(data, n, frame);
		assert_int_equal(ZSTD_getFrameContentSize(frame, fl), n);
		assert_int_equal(ZSTD_findFrameCompressedSize(frame, fl), fl);
		size_t got = ZSTD_decompress(back, 300000, frame, fl);
		assert_false(ZSTD_isError(got));
		assert_int_equal(got, n);
		assert_memory_equal(back, data, n);
		uint8_t d[32];
		data[0] ^= (uint8_t)(i + 1); /* a new chunk each round */
		cm_sha256(data, n, d);
		/* In a local pack: the frame's bytes, found by another handle after the commit. */
		struct idx_store_loc l;
		assert_int_equal(idx_store_writer_put(w, d, data, n, &l), 0);
		assert_int_equal(l.len, fl);
		assert_int_equal(idx_store_writer_commit(w), 0);
		memset(back, 0, 300000);
		assert_int_equal(idx_store_read_chunk(other, d, back, n), 0);
		assert_memory_equal(back, data, n);
		/* As a chunk file. */
		uint8_t d2[32];
		data[1] ^= 0x5a;
		cm_sha256(data, n, d2);
		idx_store_raw_frame(data, n, frame);
		char p[80];
		idx_store_chunk_relpath(d2, p);
		char cdir[16]; /* "chunks/XX", made on first use */
		snprintf(cdir, sizeof(cdir), "%.9s", p);
		assert_true(mkdirat(idx_store_root_fd(s), cdir, 0755) == 0 || errno == EEXIST);
		assert_int_equal(cm_write_file_atomic(idx_store_root_fd(s), p, frame, fl, 0644, false), 0);
		memset(back, 0, 300000);
		assert_int_equal(idx_store_read_chunk(other, d2, back, n), 0);
		assert_memory_equal(back, data, n);
	}
	idx_store_writer_free(w);
	idx_store_free(other);
	idx_store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_entry_round_trips),
	    cmocka_unit_test(test_directories),
	    cmocka_unit_test(test_chunks_packs_config),
	    cmocka_unit_test(test_deterministic_across_stores),
	    cmocka_unit_test(test_deterministic_across_threads),
	    cmocka_unit_test(test_deterministic_whatever_the_store_holds),
	    cmocka_unit_test(test_startup_trace_order),
	    cmocka_unit_test(test_startup_level),
	    cmocka_unit_test(test_raw_frames),
	    cmocka_unit_test(test_oci_ref),
	    cmocka_unit_test(test_rebuild_adds_nothing),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
