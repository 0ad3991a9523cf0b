/* Fuzz the manifest and index parsers, platform choice, and the referrers index update on
 * whatever parses. The first byte picks the media type the body is "served" with. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "registry/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *types[] = {NULL,
				      REG_MT_OCI_MANIFEST,
				      REG_MT_OCI_INDEX,
				      REG_MT_DOCKER_MANIFEST,
				      REG_MT_DOCKER_LIST,
				      REG_MT_SCHEMA1,
				      "application/json"};
	if (size < 1)
		return 0;
	const char *mt = types[data[0] % (sizeof(types) / sizeof(types[0]))];
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	(void)reg_doc_sniff(body, len, mt);
	struct reg_manifest *m = NULL;
	if (reg_manifest_parse(body, len, mt, &m) == 0) {
		for (size_t i = 0; i < reg_manifest_layer_count(m); i++)
			if (!reg_manifest_layer(m, i)->media_type)
				abort();
		(void)reg_manifest_artifact_type(m);
		(void)reg_manifest_subject(m);
		(void)reg_manifest_annotation(m, "org.opencontainers.image.ref.name");
		reg_manifest_free(m);
	}
	struct reg_index *ix = NULL;
	if (reg_index_parse(body, len, mt, &ix) == 0) {
		const struct reg_descriptor *d = NULL;
		static const char *plats[] = {NULL, "linux/arm64", "linux/arm/v7", "windows/amd64"};
		for (size_t k = 0; k < 4; k++) {
			struct reg_platform p;
			if (reg_platform_parse(plats[k], &p) == 0) {
				if (reg_index_select_platform(ix, &p, &d) == 0 && !d->platform)
					abort();
				reg_platform_fini(&p);
			}
		}
		/* read-modify-write keeps every entry and adds one */
		struct reg_descriptor add = {.media_type = REG_MT_OCI_MANIFEST,
					     .digest = REG_EMPTY_DIGEST,
					     .size = 2,
					     .artifact_type = "application/x-fuzz"};
		char *out = NULL;
		size_t olen = 0;
		if (reg_referrers_index_update(body, len, &add, &out, &olen) == 0) {
			struct reg_index *ix2 = NULL;
			if (reg_index_parse(out, olen, NULL, &ix2) != 0)
				abort();
			if (reg_index_count(ix2) < reg_index_count(ix))
				abort();
			reg_index_free(ix2);
			free(out);
		}
		reg_index_free(ix);
	}
	return 0;
}
