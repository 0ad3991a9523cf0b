/*
 * Full pulls into an OCI image layout, `parallel` blobs at a time. Each blob is written to
 * a temporary file in blobs/sha256/, verified while it streams, and renamed into place; a
 * blob already present is re-hashed and kept when it matches.
 *
 * Locking: `mu` guards `next` and `err` of struct pull; workers take one blob at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "internal.h"

struct pull_item {
	char digest[CM_DIGEST_STR_SIZE];
	uint64_t size;
};

struct pull {
	struct reg_client *c;
	const struct reg_ref *ref;
	int blobs_fd; /* blobs/sha256 */
	struct pull_item *items;
	size_t n;
	pthread_mutex_t mu;
	size_t next;	  /* guarded by mu */
	int err;	  /* guarded by mu: first failure */
	atomic_bool stop; /* set with err: cancels the other workers' transfers */
};

static int file_matches(int dfd, const char *name, const char *digest, uint64_t size)
{
	_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size != size)
		return 0;
	struct cm_sha256 *sha;
	if (cm_sha256_new(&sha) < 0)
		return -ENOMEM;
	uint8_t buf[1 << 16], h[CM_SHA256_LEN];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		cm_sha256_update(sha, buf, (size_t)n);
	cm_sha256_final(sha, h);
	cm_sha256_free(sha);
	char got[CM_DIGEST_STR_SIZE];
	cm_digest_format(h, got);
	return n == 0 && !strcmp(got, digest);
}

static int write_fd(void *ud, const uint8_t *data, size_t n)
{
	return cm_write_full(*(int *)ud, data, n);
}

static int pull_one(struct pull *p, const struct pull_item *it)
{
	const char *hex = it->digest + 7;
	int r = file_matches(p->blobs_fd, hex, it->digest, it->size);
	if (r != 0)
		return r < 0 ? r : 0;
	char tmp[128];
	snprintf(tmp, sizeof(tmp), ".tmp-%s-%d", hex, (int)gettid());
	_cleanup_close_ int fd =
	    openat(p->blobs_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return cm_log_ret(-errno, "cannot create a temporary blob file");
	r = reg_blob_download(p->c, p->ref, it->digest, it->size, write_fd, &fd, &p->stop);
	if (r == 0 && renameat(p->blobs_fd, tmp, p->blobs_fd, hex) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(p->blobs_fd, tmp, 0);
	return r;
}

static void *worker(void *ud)
{
	struct pull *p = ud;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (p->err || p->next == p->n) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		struct pull_item *it = &p->items[p->next++];
		pthread_mutex_unlock(&p->mu);
		int r = pull_one(p, it);
		if (r < 0) {
			pthread_mutex_lock(&p->mu);
			if (!p->err && r != -ECANCELED)
				p->err = r;
			atomic_store(&p->stop, true);
			pthread_mutex_unlock(&p->mu);
		}
	}
}

static int write_small_blob(int blobs_fd, const void *data, size_t len, const char *digest)
{
	return cm_write_file_atomic(blobs_fd, digest + 7, data, len, 0644, false);
}

int reg_client_pull_blobs(struct reg_client *c, const struct reg_ref *ref, const char *dir,
			  char ret_digest[CM_DIGEST_STR_SIZE])
{
	struct reg_manifest *m = NULL;
	char mdigest[CM_DIGEST_STR_SIZE];
	struct cm_buf body;
	_cleanup_free_ char *mt = NULL;
	_cleanup_close_ int dfd = -1, bfd = -1;
	struct pull p = {.c = c, .ref = ref, .blobs_fd = -1};
	_cleanup_free_ char *ix = NULL;
	int r;

	cm_buf_init(&body, REG_MANIFEST_MAX);
	pthread_mutex_init(&p.mu, NULL);
	/* the exact manifest bytes come back too: the layout must hold them verbatim */
	r = reg_resolve_ex(c, ref, NULL, &m, mdigest, &body, &mt);
	if (r < 0)
		goto out;
	r = cm_mkdir_p(AT_FDCWD, dir, 0755);
	if (r < 0)
		goto out;
	dfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dfd < 0 || (r = cm_mkdir_p(dfd, "blobs/sha256", 0755)) < 0 ||
	    (bfd = openat(dfd, "blobs/sha256", O_DIRECTORY | O_RDONLY | O_CLOEXEC)) < 0) {
		r = r < 0 ? r : -errno;
		r = cm_log_ret(r, "cannot prepare OCI layout %s", dir);
		goto out;
	}
	p.blobs_fd = bfd;
	r = write_small_blob(bfd, body.data, body.len, mdigest);
	if (r < 0)
		goto out;
	size_t nl = reg_manifest_layer_count(m);
	p.items = calloc(nl + 1, sizeof(*p.items));
	if (!p.items) {
		r = -ENOMEM;
		goto out;
	}
	/* layers first (largest work), config last: it is tiny */
	for (size_t i = 0; i < nl; i++) {
		const struct reg_descriptor *d = reg_manifest_layer(m, i);
		bool dup = false;
		for (size_t k = 0; k < p.n; k++)
			dup |= !strcmp(p.items[k].digest, d->digest);
		if (dup)
			continue;
		memcpy(p.items[p.n].digest, d->digest, CM_DIGEST_STR_SIZE);
		p.items[p.n++].size = d->size;
	}
	memcpy(p.items[p.n].digest, reg_manifest_config(m)->digest, CM_DIGEST_STR_SIZE);
	p.items[p.n++].size = reg_manifest_config(m)->size;

	size_t nt = MIN((size_t)c->o.parallel, p.n);
	pthread_t th[64];
	size_t started = 0;
	nt = MIN(nt, ARRAY_SIZE(th));
	for (; started < nt; started++)
		if (pthread_create(&th[started], NULL, worker, &p) != 0)
			break;
	if (started == 0)
		worker(&p);
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	r = p.err;
	if (r < 0)
		goto out;

	/* oci-layout and index.json last, so a layout with an index.json is complete */
	static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	r = cm_write_file_atomic(dfd, "oci-layout", layout, sizeof(layout) - 1, 0644, false);
	if (r < 0)
		goto out;
	struct reg_descriptor d = {
	    .media_type = mt && *mt ? mt : (char *)reg_manifest_media_type(m), .size = body.len};
	memcpy(d.digest, mdigest, CM_DIGEST_STR_SIZE);
	struct reg_annotation an = {.key = "org.opencontainers.image.ref.name",
				    .value = ref->tag ? ref->tag : (char *)"latest"};
	if (ref->tag || !ref->digest) {
		d.annotations = &an;
		d.n_annotations = 1;
	}
	size_t ixl;
	r = reg_referrers_index_update(NULL, 0, &d, &ix, &ixl);
	if (r == 0)
		r = cm_write_file_atomic(dfd, "index.json", ix, ixl, 0644, false);
	if (r == 0 && ret_digest)
		memcpy(ret_digest, mdigest, CM_DIGEST_STR_SIZE);
out:
	free(p.items);
	pthread_mutex_destroy(&p.mu);
	reg_manifest_free(m);
	cm_buf_fini(&body);
	return r;
}
