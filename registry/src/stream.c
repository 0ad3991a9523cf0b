/*
 * Blob streams: a download thread runs reg_blob_download and feeds a ring buffer; the
 * consumer's read() drains it. The producer blocks while the ring is full (back-pressure
 * through TCP), so memory stays bounded by RING_SIZE whatever the blob size.
 *
 * Locking: `mu` guards ring/head/len/done/err/cancel; `cv` signals both directions.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "internal.h"

#define RING_SIZE (4u << 20)

struct reg_blob_stream {
	struct reg_client *c;
	struct reg_ref *repo;
	char digest[CM_DIGEST_STR_SIZE];
	uint64_t size;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *ring;	  /* RING_SIZE bytes */
	size_t head;	  /* guarded by mu: index of the first unread byte */
	size_t len;	  /* guarded by mu: unread bytes */
	bool done;	  /* guarded by mu: producer finished (err says how) */
	int err;	  /* guarded by mu */
	bool cancel;	  /* guarded by mu: consumer closed */
	atomic_bool stop; /* the same, read lock-free by the transfer's progress callback */
};

static int produce(void *ud, const uint8_t *data, size_t n)
{
	struct reg_blob_stream *s = ud;
	pthread_mutex_lock(&s->mu);
	while (n) {
		while (s->len == RING_SIZE && !s->cancel)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->cancel) {
			pthread_mutex_unlock(&s->mu);
			return -ECANCELED;
		}
		size_t tail = (s->head + s->len) % RING_SIZE;
		size_t room = RING_SIZE - s->len;
		size_t k = MIN(n, MIN(room, RING_SIZE - tail));
		memcpy(s->ring + tail, data, k);
		s->len += k;
		data += k;
		n -= k;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static void *producer_main(void *ud)
{
	struct reg_blob_stream *s = ud;
	int r = reg_blob_download(s->c, s->repo, s->digest, s->size, produce, s, &s->stop);
	pthread_mutex_lock(&s->mu);
	s->done = true;
	s->err = r;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int reg_client_open_blob(struct reg_client *c, const struct reg_ref *repo, const char *digest,
			 uint64_t size, struct reg_blob_stream **ret)
{
	if (!cm_digest_valid(digest))
		return -EINVAL;
	struct reg_blob_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->c = c;
	s->size = size;
	memcpy(s->digest, digest, CM_DIGEST_STR_SIZE);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	int r = reg_ref_dup(repo, &s->repo);
	if (r == 0 && !(s->ring = malloc(RING_SIZE)))
		r = -ENOMEM;
	if (r == 0) {
		r = -pthread_create(&s->thread, NULL, producer_main, s);
		s->thread_started = r == 0;
	}
	if (r < 0) {
		reg_blob_stream_close(s);
		return r;
	}
	*ret = s;
	return 0;
}

ssize_t reg_blob_stream_read(struct reg_blob_stream *s, void *buf, size_t len)
{
	pthread_mutex_lock(&s->mu);
	while (s->len == 0 && !s->done)
		pthread_cond_wait(&s->cv, &s->mu);
	if (s->len == 0) {
		/* every byte was delivered: report how the download ended (0, -EBADMSG, ...) */
		int err = s->err;
		pthread_mutex_unlock(&s->mu);
		return err;
	}
	size_t k = MIN(len, MIN(s->len, RING_SIZE - s->head));
	memcpy(buf, s->ring + s->head, k);
	s->head = (s->head + k) % RING_SIZE;
	s->len -= k;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return (ssize_t)k;
}

void reg_blob_stream_close(struct reg_blob_stream *s)
{
	if (!s)
		return;
	if (s->thread_started) {
		pthread_mutex_lock(&s->mu);
		s->cancel = true;
		atomic_store(&s->stop, true);
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->thread, NULL);
	}
	reg_ref_free(s->repo);
	free(s->ring);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
