/*
 * source-check REF: drive indexer/src/source_registry.c (the registry idx_source) the way
 * the indexer does: manifest (through an index for linux/amd64), config, then every layer
 * as a stream, hashing what the stream delivers. Prints "ok LAYERS BYTES". Built here from
 * the source file directly, so the registry module's tests cover it without the indexer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/digest.h"
#include "indexer/source.h"
#include "indexer/source_registry.h"
#include "registry/client.h"
#include "registry/manifest.h"

int main(int argc, char **argv)
{
	struct idx_source *src = NULL;
	struct reg_options o = {.retry_base_ms = 20};
	struct cm_buf body;
	char *mt = NULL, digest[72];
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: source-check REF\n");
		return 2;
	}
	r = idx_source_registry_open(argv[1], &o, &src);
	if (r < 0)
		return -r;
	cm_buf_init(&body, REG_MANIFEST_MAX);
	r = src->ops->get_manifest(src, NULL, &body, &mt, digest);
	if (r == 0 && reg_doc_sniff((char *)body.data, body.len, mt) == REG_DOC_INDEX) {
		struct reg_index *ix = NULL;
		const struct reg_descriptor *d;
		r = reg_index_parse((char *)body.data, body.len, mt, &ix);
		if (r == 0)
			r = reg_index_select_platform(ix, NULL, &d);
		char want[72];
		if (r == 0)
			memcpy(want, d->digest, sizeof(want));
		reg_index_free(ix);
		cm_buf_clear(&body);
		free(mt);
		mt = NULL;
		if (r == 0)
			r = src->ops->get_manifest(src, want, &body, &mt, digest);
	}
	struct reg_manifest *m = NULL;
	if (r == 0)
		r = reg_manifest_parse((char *)body.data, body.len, mt, &m);
	struct cm_buf cfg;
	cm_buf_init(&cfg, 1 << 20);
	if (r == 0)
		r = src->ops->get_blob(src, reg_manifest_config(m)->digest,
				       reg_manifest_config(m)->size, &cfg);
	uint64_t total = 0;
	static uint8_t buf[100000];
	for (size_t i = 0; r == 0 && i < reg_manifest_layer_count(m); i++) {
		const struct reg_descriptor *l = reg_manifest_layer(m, i);
		struct idx_stream *st = NULL;
		r = src->ops->open_blob(src, l->digest, l->size, &st);
		if (r < 0)
			break;
		struct cm_sha256 *h;
		cm_sha256_new(&h);
		ssize_t n;
		while ((n = st->read(st, buf, 1 + (size_t)rand() % sizeof(buf))) > 0) {
			cm_sha256_update(h, buf, (size_t)n);
			total += (uint64_t)n;
		}
		uint8_t d[32];
		char ds[72];
		cm_sha256_final(h, d);
		cm_digest_format(d, ds);
		cm_sha256_free(h);
		st->close(st);
		if (n < 0)
			r = (int)n;
		else if (strcmp(ds, l->digest) != 0)
			r = -EBADMSG;
	}
	if (r == 0)
		printf("ok %zu %llu %s\n", reg_manifest_layer_count(m), (unsigned long long)total,
		       digest);
	else
		fprintf(stderr, "source-check: %s\n", strerror(-r));
	reg_manifest_free(m);
	cm_buf_fini(&cfg);
	cm_buf_fini(&body);
	free(mt);
	src->ops->free(src);
	return r < 0 ? -r : 0;
}
