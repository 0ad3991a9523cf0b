/* See idx_testlib.h. */
#include "idx_testlib.h"

#include "indexer/build.h"
#include "indexer/index.h"
#include "indexer/source.h"
#include "indexer/store.h"

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/util.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

/* --- tar ------------------------------------------------------------------------------ */

static la_ssize_t tar_write_cb(struct archive *a, void *ud, const void *buf, size_t len)
{
	return cm_buf_append(ud, buf, len) < 0 ? -1 : (la_ssize_t)len;
}

static size_t ent_len(const struct tl_entry *e)
{
	return e->len ? e->len : (e->data ? strlen(e->data) : 0);
}

int tl_tar(const struct tl_entry *ents, struct cm_buf *out)
{
	struct archive *a = archive_write_new();
	if (!a)
		return -ENOMEM;
	int r = 0;
	archive_write_set_format_pax(a);
	archive_write_set_bytes_per_block(a, 0); /* no padding to 10 KiB records */
	if (archive_write_open(a, out, NULL, tar_write_cb, NULL) != ARCHIVE_OK) {
		archive_write_free(a);
		return -EIO;
	}
	for (const struct tl_entry *e = ents; e->type; e++) {
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, e->path);
		archive_entry_set_uid(ae, e->uid);
		archive_entry_set_gid(ae, e->gid);
		archive_entry_set_mtime(ae, e->mtime ? e->mtime : TL_MTIME, e->nsec);
		uint32_t type = 0, defmode = 0644;
		size_t size = 0;
		switch (e->type) {
		case 'f':
			type = AE_IFREG;
			size = ent_len(e);
			break;
		case 'd':
			type = AE_IFDIR;
			defmode = 0755;
			break;
		case 'l':
			type = AE_IFLNK;
			defmode = 0777;
			archive_entry_set_symlink(ae, e->data);
			break;
		case 'h':
			type = AE_IFREG;
			archive_entry_set_hardlink(ae, e->data);
			break;
		case 'c':
			type = AE_IFCHR;
			break;
		case 'b':
			type = AE_IFBLK;
			break;
		case 'p':
			type = AE_IFIFO;
			break;
		default:
			abort();
		}
		archive_entry_set_filetype(ae, type);
		archive_entry_set_perm(ae, e->mode ? e->mode : defmode);
		archive_entry_set_size(ae, (la_int64_t)size);
		archive_entry_set_rdevmajor(ae, e->maj);
		archive_entry_set_rdevminor(ae, e->min);
		if (e->xname)
			archive_entry_xattr_add_entry(ae, e->xname, e->xval,
						      e->xlen ? e->xlen : strlen(e->xval));
		if (archive_write_header(a, ae) != ARCHIVE_OK ||
		    (size && archive_write_data(a, e->data, size) != (la_ssize_t)size)) {
			fprintf(stderr, "tl_tar: %s: %s\n", e->path, archive_error_string(a));
			r = -EIO;
		}
		archive_entry_free(ae);
		if (r < 0)
			break;
	}
	if (archive_write_close(a) != ARCHIVE_OK && r == 0)
		r = -EIO;
	archive_write_free(a);
	return r;
}

int tl_tar_raw_header(struct cm_buf *out, const char *name, char typeflag, uint64_t size,
		      const char *linkname)
{
	uint8_t h[512] = {0};
	snprintf((char *)h, 100, "%s", name);
	memcpy(h + 100, "0000644", 8);
	memcpy(h + 108, "0000000", 8);
	memcpy(h + 116, "0000000", 8);
	if (size < (1ull << 33)) {
		snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
	} else { /* GNU base-256: high bit set, big-endian */
		h[124] = 0x80;
		for (int i = 0; i < 8; i++)
			h[135 - i] = (uint8_t)(size >> (8 * i));
	}
	memcpy(h + 136, "14520323000", 11);
	h[156] = (uint8_t)typeflag;
	if (linkname)
		snprintf((char *)h + 157, 100, "%s", linkname);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	return cm_buf_append(out, h, sizeof(h));
}

int tl_tar_pax(struct cm_buf *out, const char *key, const char *value)
{
	char rec[512];
	size_t body = strlen(key) + strlen(value) + 3; /* ' ' '=' '\n' */
	size_t n = body + 1;
	while (n != body + (size_t)snprintf(NULL, 0, "%zu", n))
		n = body + (size_t)snprintf(NULL, 0, "%zu", n);
	int len = snprintf(rec, sizeof(rec), "%zu %s=%s\n", n, key, value);
	int r = tl_tar_raw_header(out, "PaxHeader", 'x', (uint64_t)len, NULL);
	if (r == 0)
		r = cm_buf_append(out, rec, (size_t)len);
	if (r == 0)
		r = cm_buf_pad(out, 512);
	return r;
}

int tl_tar_end(struct cm_buf *out)
{
	static const uint8_t z[1024];
	return cm_buf_append(out, z, sizeof(z));
}

/* --- compression and layouts ---------------------------------------------------------- */

static int gzip(const uint8_t *in, size_t len, struct cm_buf *out)
{
	z_stream z = {0};
	if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	int r = cm_buf_reserve(out, deflateBound(&z, len));
	if (r == 0) {
		z.next_in = (uint8_t *)in;
		z.avail_in = (uInt)len;
		z.next_out = out->data + out->len;
		z.avail_out = (uInt)(out->alloc - out->len);
		r = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : -EIO;
		out->len = out->alloc - z.avail_out;
	}
	deflateEnd(&z);
	return r;
}

static int zstd(const uint8_t *in, size_t len, struct cm_buf *out)
{
	int r = cm_buf_reserve(out, ZSTD_compressBound(len));
	if (r < 0)
		return r;
	size_t n = ZSTD_compress(out->data + out->len, out->alloc - out->len, in, len, 3);
	if (ZSTD_isError(n))
		return -EIO;
	out->len += n;
	return 0;
}

static int put_blob(int dirfd, const void *data, size_t len, const uint8_t *name_digest,
		    char ret_digest[72])
{
	uint8_t d[32];
	if (name_digest)
		memcpy(d, name_digest, 32);
	else
		cm_sha256(data, len, d);
	cm_digest_format(d, ret_digest);
	char p[128];
	snprintf(p, sizeof(p), "blobs/sha256/%s", ret_digest + 7);
	return cm_write_file_atomic(dirfd, p, data, len, 0644, false);
}

static const char *media_type(enum tl_comp c)
{
	switch (c) {
	case TL_GZIP:
		return "application/vnd.oci.image.layer.v1.tar+gzip";
	case TL_ZSTD:
		return "application/vnd.oci.image.layer.v1.tar+zstd";
	default:
		return "application/vnd.oci.image.layer.v1.tar";
	}
}

int tl_layout_write(const char *dir, const struct tl_layer *layers, size_t n,
		    const struct tl_image_opts *o)
{
	static const struct tl_image_opts none = {0};
	if (!o)
		o = &none;
	int r = cm_mkdir_p(AT_FDCWD, dir, 0755);
	if (r < 0)
		return r;
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if ((r = cm_mkdir_p(dfd, "blobs/sha256", 0755)) < 0)
		return r;
	struct cm_buf diffs, descs, cfg, man, idx;
	cm_buf_init(&diffs, 0);
	cm_buf_init(&descs, 0);
	cm_buf_init(&cfg, 0);
	cm_buf_init(&man, 0);
	cm_buf_init(&idx, 0);
	for (size_t i = 0; i < n && r == 0; i++) {
		const struct tl_layer *l = &layers[i];
		struct cm_buf blob;
		cm_buf_init(&blob, 0);
		if (l->comp == TL_GZIP)
			r = gzip(l->tar, l->tar_len, &blob);
		else if (l->comp == TL_ZSTD)
			r = zstd(l->tar, l->tar_len, &blob);
		else
			r = cm_buf_append(&blob, l->tar, l->tar_len);
		if (r == 0 && l->truncate_blob && l->truncate_blob < blob.len)
			blob.len = l->truncate_blob;
		uint8_t diff[32], fake[32];
		cm_sha256(l->tar, l->tar_len, diff);
		if (l->bad_diff_id)
			diff[0] ^= 1;
		cm_sha256(blob.data, blob.len, fake);
		fake[31] ^= 0x80;
		char bd[72], dd[72];
		if (r == 0)
			r = put_blob(dfd, blob.data, blob.len, l->bad_digest ? fake : NULL, bd);
		cm_digest_format(diff, dd);
		if (r == 0)
			r = cm_buf_printf(&diffs, "%s\"%s\"", i ? "," : "", dd);
		if (r == 0)
			r = cm_buf_printf(
			    &descs, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}",
			    i ? "," : "", l->media_type ? l->media_type : media_type(l->comp), bd,
			    blob.len);
		cm_buf_fini(&blob);
	}
	char cd[72], md[72];
	if (r == 0)
		r = cm_buf_printf(&cfg,
				  "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{%s},"
				  "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[%.*s]}}",
				  o->config_body ? o->config_body : "", (int)diffs.len,
				  (const char *)diffs.data);
	if (r == 0)
		r = put_blob(dfd, cfg.data, cfg.len, NULL, cd);
	const char *mt = o->schema1 ? "application/vnd.docker.distribution.manifest.v1+prettyjws"
				    : "application/vnd.oci.image.manifest.v1+json";
	if (r == 0 && o->schema1)
		r = cm_buf_printf(&man,
				  "{\"schemaVersion\":1,\"name\":\"test\",\"tag\":\"v1\","
				  "\"architecture\":\"amd64\",\"fsLayers\":[],\"history\":[]}");
	else if (r == 0)
		r = cm_buf_printf(
		    &man,
		    "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
		    "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
		    "\"size\":%zu},\"layers\":[%.*s]}",
		    mt, cd, cfg.len, (int)descs.len, (const char *)descs.data);
	if (r == 0)
		r = put_blob(dfd, man.data, man.len, NULL, md);
	if (r == 0) {
		char ann[160] = "";
		if (o->tag)
			snprintf(ann, sizeof(ann),
				 ",\"annotations\":{\"org.opencontainers.image.ref.name\":\"%s\"}",
				 o->tag);
		r = cm_buf_printf(&idx,
				  "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\","
				  "\"digest\":\"%s\",\"size\":%zu%s}]}",
				  mt, md, man.len, ann);
	}
	if (r == 0)
		r = cm_write_file_atomic(dfd, "index.json", idx.data, idx.len, 0644, false);
	if (r == 0)
		r = cm_write_file_atomic(dfd, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}",
					 30, 0644, false);
	cm_buf_fini(&diffs);
	cm_buf_fini(&descs);
	cm_buf_fini(&cfg);
	cm_buf_fini(&man);
	cm_buf_fini(&idx);
	return r;
}

/* --- files ---------------------------------------------------------------------------- */

char *tl_mkdtemp(const char *prefix)
{
	const char *t = getenv("TMPDIR");
	char *p = cm_strdupf("%s/%s.XXXXXX", t && *t ? t : "/tmp", prefix);
	if (p && !mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

void tl_rm_rf(const char *dir)
{
	if (dir && getenv("TL_KEEP")) /* debugging: keep the layouts and stores */
		fprintf(stderr, "kept %s\n", dir);
	else if (dir)
		cm_rm_rf_at(AT_FDCWD, dir);
}

static struct cm_buf *snap_buf;
static size_t snap_prefix;

static int snap_cb(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	const char *rel = path + snap_prefix;
	if (!*rel || !strncmp(rel, "/store.db", 9))
		return 0;
	return cm_buf_printf(snap_buf, "%s %lld\n", rel,
			     S_ISDIR(st->st_mode) ? 0LL : (long long)st->st_size) < 0;
}

static int cmp_line(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *tl_snapshot(const char *dir)
{
	struct cm_buf b;
	cm_buf_init(&b, 0);
	snap_buf = &b;
	snap_prefix = strlen(dir);
	if (nftw(dir, snap_cb, 16, FTW_PHYS) != 0) {
		cm_buf_fini(&b);
		return NULL;
	}
	/* nftw's order is readdir order: sort the lines. */
	size_t n = 0;
	for (size_t i = 0; i < b.len; i++)
		n += b.data[i] == '\n';
	char *s = cm_buf_steal_str(&b);
	if (!s)
		return strdup("");
	char **lines = calloc(n + 1, sizeof(char *));
	size_t k = 0;
	for (char *save = NULL, *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		lines[k++] = l;
	qsort(lines, k, sizeof(char *), cmp_line);
	struct cm_buf o;
	cm_buf_init(&o, 0);
	for (size_t i = 0; i < k; i++)
		cm_buf_printf(&o, "%s\n", lines[i]);
	free(lines);
	free(s);
	char *res = cm_buf_steal_str(&o);
	return res ? res : strdup("");
}

int tl_count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

int tl_build(const char *layout, const char *store_dir, struct idx_store **ret_store,
	     struct idx_reader **ret_reader)
{
	struct idx_store *s = NULL;
	struct idx_source *src = NULL;
	struct idx_build_result res;
	struct idx_build_opts o = {.threads = 2};
	_cleanup_free_ char *spec = cm_strdupf("oci:%s", layout);
	int r = idx_store_open(store_dir, &s);
	if (r < 0)
		return r;
	r = idx_source_oci_open(spec, &src);
	if (r == 0)
		r = idx_build(s, src, &o, &res);
	idx_source_free(src);
	if (r == 0 && ret_reader) {
		_cleanup_free_ char *p = NULL;
		r = idx_store_index_path(s, res.index_digest, &p);
		if (r == 0)
			r = idx_reader_open(p, ret_reader);
	}
	if (r == 0 && ret_store)
		*ret_store = s;
	else
		idx_store_free(s);
	return r;
}

/* --- dump ----------------------------------------------------------------------------- */

static void escaped(struct cm_buf *b, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] >= 0x21 && p[i] < 0x7f && p[i] != '\\')
			cm_buf_append(b, &p[i], 1);
		else
			cm_buf_printf(b, "\\x%02x", p[i]);
	}
}

static char type_char(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return 'f';
	case S_IFDIR:
		return 'd';
	case S_IFLNK:
		return 'l';
	case S_IFCHR:
		return 'c';
	case S_IFBLK:
		return 'b';
	case S_IFIFO:
		return 'p';
	default:
		return '?';
	}
}

static int file_content(const struct idx_reader *r, struct idx_store *s, uint32_t ino,
			struct cm_buf *out)
{
	uint32_t n;
	int k = idx_reader_extent_count(r, ino, &n);
	for (uint32_t i = 0; k == 0 && i < n; i++) {
		struct idx_extent e;
		struct idx_chunk c;
		if ((k = idx_reader_extent(r, ino, i, &e)) < 0 ||
		    (k = idx_reader_chunk(r, e.chunk, &c)) < 0 ||
		    (k = cm_buf_reserve(out, c.usize)) < 0)
			break;
		if (out->len != e.file_offset)
			return -EPROTO;
		k = idx_store_read_chunk(s, c.digest, out->data + out->len, c.usize);
		if (k == 0)
			out->len += c.usize;
	}
	return k;
}

static int dump_dir(const struct idx_reader *r, struct idx_store *s, uint32_t dir,
		    const char *prefix, char **first, struct cm_buf *b)
{
	uint32_t n;
	int k = idx_reader_dir_count(r, dir, &n);
	for (uint32_t i = 0; k == 0 && i < n; i++) {
		struct idx_dirent de;
		struct idx_inode in;
		if ((k = idx_reader_dirent(r, dir, i, &de)) < 0 ||
		    (k = idx_reader_inode(r, de.ino, &in)) < 0)
			break;
		_cleanup_free_ char *path = cm_strdupf("%s/%s", prefix, de.name);
		cm_buf_printf(b, "%s %c %04o %u:%u", path, type_char(in.mode), in.mode & 07777,
			      in.uid, in.gid);
		if (in.mtime_sec != TL_MTIME || in.mtime_nsec)
			cm_buf_printf(b, " t=%lld.%09u", (long long)in.mtime_sec, in.mtime_nsec);
		if (!S_ISDIR(in.mode) && in.nlink > 1)
			cm_buf_printf(b, " n=%u", in.nlink);
		if (!S_ISDIR(in.mode) && first[de.ino]) {
			cm_buf_printf(b, " hl=%s\n", first[de.ino]);
			continue;
		}
		if (!S_ISDIR(in.mode) && in.nlink > 1)
			first[de.ino] = strdup(path);
		if (S_ISREG(in.mode)) {
			struct cm_buf c;
			cm_buf_init(&c, 0);
			if ((k = file_content(r, s, de.ino, &c)) == 0) {
				if (c.len != in.size) {
					k = -EPROTO;
				} else if (c.len <= 48) {
					cm_buf_append_str(b, " =");
					escaped(b, c.data, c.len);
				} else {
					uint8_t d[32];
					cm_sha256(c.data, c.len, d);
					cm_buf_printf(b, " sz=%zu sha=%02x%02x%02x%02x", c.len,
						      d[0], d[1], d[2], d[3]);
				}
			}
			cm_buf_fini(&c);
		} else if (S_ISLNK(in.mode)) {
			const char *t;
			size_t tl;
			if ((k = idx_reader_readlink(r, de.ino, &t, &tl)) == 0)
				cm_buf_printf(b, " ->%.*s", (int)tl, t);
		} else if (S_ISCHR(in.mode) || S_ISBLK(in.mode)) {
			cm_buf_printf(b, " dev=%u,%u", in.rdev_major, in.rdev_minor);
		}
		uint32_t nx = 0;
		idx_reader_xattr_count(r, de.ino, &nx);
		for (uint32_t x = 0; x < nx; x++) {
			struct idx_xattr xa;
			idx_reader_xattr(r, de.ino, x, &xa);
			cm_buf_printf(b, " x:%s=", xa.name);
			escaped(b, xa.value, xa.value_len);
		}
		cm_buf_append_str(b, "\n");
		if (k == 0 && S_ISDIR(in.mode))
			k = dump_dir(r, s, de.ino, path, first, b);
	}
	return k;
}

char *tl_dump(const struct idx_reader *r, struct idx_store *s)
{
	uint32_t n = idx_reader_inode_count(r);
	char **first = calloc((size_t)n + 1, sizeof(char *));
	struct cm_buf b;
	cm_buf_init(&b, 0);
	int k = first ? dump_dir(r, s, IDX_ROOT_INO, "", first, &b) : -ENOMEM;
	for (uint32_t i = 0; first && i <= n; i++)
		free(first[i]);
	free(first);
	if (k < 0)
		cm_buf_printf(&b, "DUMP FAILED: %s\n", strerror(-k));
	char *res = cm_buf_steal_str(&b);
	return res ? res : strdup("");
}

/* --- walk ----------------------------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ull;
}

uint64_t tl_walk(const struct idx_reader *r)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint32_t n = idx_reader_inode_count(r);
	struct idx_stats st;
	idx_reader_stats(r, &st);
	h = mix(h, st.file_bytes + st.unique_bytes + st.stored_bytes + st.dirs + st.files);
	size_t len;
	const uint8_t *data = idx_reader_data(r, &len);
	h = mix(h, len ? data[len - 1] : 0);
	h = mix(h, (uint8_t)idx_reader_digest(r)[7] + (uint8_t)idx_reader_manifest_digest(r)[8] +
		       (uint8_t)idx_reader_config_digest(r)[9]);
	const char *cj = idx_reader_config_json(r, &len);
	for (size_t i = 0; i < len; i++)
		h = mix(h, (uint8_t)cj[i]);
	struct idx_config *cfg = NULL;
	if (idx_reader_config(r, &cfg) == 0) {
		for (char **e = cfg->env; e && *e; e++)
			h = mix(h, strlen(*e));
		idx_config_free(cfg);
	}
	for (uint32_t ino = 0; ino <= n + 1; ino++) { /* 0 and n+1 are out of range */
		struct idx_inode in;
		if (idx_reader_inode(r, ino, &in) < 0)
			continue;
		h = mix(h, in.mode ^ in.size ^ in.nlink ^ in.parent);
		uint32_t cnt;
		if (idx_reader_dir_count(r, ino, &cnt) == 0) {
			for (uint32_t i = 0; i <= cnt; i++) {
				struct idx_dirent de;
				if (idx_reader_dirent(r, ino, i, &de) < 0)
					continue;
				uint32_t found = 0;
				if (idx_reader_lookup(r, ino, de.name, de.name_len, &found) == 0)
					h = mix(h, found ^ de.ino);
				h = mix(h,
					(uint8_t)de.name[de.name_len]); /* the NUL after the name */
			}
			idx_reader_lookup(r, ino, "zz-not-there", 12, &cnt);
		}
		if (idx_reader_extent_count(r, ino, &cnt) == 0) {
			for (uint32_t i = 0; i <= cnt; i++) {
				struct idx_extent e;
				struct idx_chunk c;
				uint32_t at;
				if (idx_reader_extent(r, ino, i, &e) < 0)
					continue;
				if (idx_reader_chunk(r, e.chunk, &c) == 0)
					h = mix(h, c.usize + c.digest[31]);
				if (idx_reader_extent_at(r, ino, e.file_offset, &at) == 0)
					h = mix(h, at);
			}
			uint32_t at;
			if (idx_reader_extent_at(r, ino, in.size ? in.size - 1 : 0, &at) == 0)
				h = mix(h, at);
			idx_reader_extent_at(r, ino, in.size, &at);
		}
		const char *t;
		size_t tl;
		if (idx_reader_readlink(r, ino, &t, &tl) == 0)
			h = mix(h, (uint8_t)t[tl] + tl + (tl ? (uint8_t)t[0] : 0));
		if (idx_reader_xattr_count(r, ino, &cnt) == 0) {
			for (uint32_t i = 0; i <= cnt; i++) {
				struct idx_xattr xa;
				if (idx_reader_xattr(r, ino, i, &xa) < 0)
					continue;
				h = mix(h, (uint8_t)xa.name[xa.name_len] + xa.value_len);
				for (uint32_t v = 0; v < xa.value_len; v++)
					h = mix(h, xa.value[v]);
			}
		}
	}
	for (uint32_t i = 0; i <= idx_reader_chunk_count(r); i++) {
		struct idx_chunk c;
		if (idx_reader_chunk(r, i, &c) == 0)
			h = mix(h, c.pack_offset + c.csize);
	}
	for (uint32_t i = 0; i <= idx_reader_pack_count(r); i++) {
		struct idx_pack p;
		if (idx_reader_pack(r, i, &p) == 0)
			h = mix(h, p.size + p.chunk_first);
	}
	for (uint32_t i = 0; i <= idx_reader_prefetch_count(r); i++) {
		uint32_t c;
		if (idx_reader_prefetch(r, i, &c) == 0)
			h = mix(h, c);
	}
	static const char *paths[] = {"/",	"",	   "..",	 "/../..",
				      "a/../b", "./x/./y", "usr/bin/sh", "/etc/passwd/.."};
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		uint32_t ino;
		if (idx_reader_lookup_path(r, paths[i], &ino) == 0)
			h = mix(h, ino);
	}
	return h;
}

void tl_random(uint64_t seed, uint8_t *out, size_t len)
{
	uint64_t x = seed;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		memcpy(out + i, &z, MIN((size_t)8, len - i));
	}
}
