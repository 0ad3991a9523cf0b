/* Manifest and index parsing, schema 1 refusal, platform choice, the documents we write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/manifest.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define DD "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

static const char oci_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" DA
    "\",\"size\":7023},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" DB
    "\",\"size\":32654},"
    "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" DC
    "\",\"size\":16724,"
    "\"annotations\":{\"k\":\"v\"}}],"
    "\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DD
    "\",\"size\":1},"
    "\"annotations\":{\"org.opencontainers.image.created\":\"2024-01-01T00:00:00Z\"}}";

static void test_manifest_oci(void **state)
{
	struct reg_manifest *m = NULL;
	assert_int_equal(reg_manifest_parse(oci_manifest, strlen(oci_manifest), NULL, &m), 0);
	assert_string_equal(reg_manifest_media_type(m), REG_MT_OCI_MANIFEST);
	assert_string_equal(reg_manifest_config(m)->digest, DA);
	assert_int_equal(reg_manifest_config(m)->size, 7023);
	assert_int_equal(reg_manifest_layer_count(m), 2);
	assert_string_equal(reg_manifest_layer(m, 1)->media_type,
			    "application/vnd.oci.image.layer.v1.tar+zstd");
	assert_string_equal(reg_descriptor_annotation(reg_manifest_layer(m, 1), "k"), "v");
	assert_null(reg_manifest_layer(m, 2));
	assert_string_equal(reg_manifest_subject(m)->digest, DD);
	assert_null(reg_manifest_artifact_type(m));
	assert_string_equal(reg_manifest_annotation(m, "org.opencontainers.image.created"),
			    "2024-01-01T00:00:00Z");
	reg_manifest_free(m);
	/* served with the same media type: fine; with a different one: refused */
	assert_int_equal(
	    reg_manifest_parse(oci_manifest, strlen(oci_manifest), REG_MT_OCI_MANIFEST, &m), 0);
	reg_manifest_free(m);
	assert_int_equal(
	    reg_manifest_parse(oci_manifest, strlen(oci_manifest), REG_MT_DOCKER_MANIFEST, &m),
	    -EPROTO);
	/* not NUL-terminated input: parse exactly len bytes */
	char *copy = malloc(sizeof(oci_manifest) - 1);
	memcpy(copy, oci_manifest, sizeof(oci_manifest) - 1);
	assert_int_equal(reg_manifest_parse(copy, sizeof(oci_manifest) - 1, NULL, &m), 0);
	reg_manifest_free(m);
	free(copy);
}

static void test_manifest_docker_and_artifact(void **state)
{
	const char docker[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/"
	    "vnd.docker.distribution.manifest.v2+json\","
	    "\"config\":{\"mediaType\":\"application/"
	    "vnd.docker.container.image.v1+json\",\"digest\":\"" DA "\",\"size\":1},"
	    "\"layers\":[{\"mediaType\":\"application/"
	    "vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" DB "\",\"size\":2}]}";
	struct reg_manifest *m = NULL;
	assert_int_equal(reg_manifest_parse(docker, strlen(docker), REG_MT_DOCKER_MANIFEST, &m), 0);
	assert_string_equal(reg_manifest_media_type(m), REG_MT_DOCKER_MANIFEST);
	reg_manifest_free(m);
	/* OCI 1.1 artifact: artifactType, or config.mediaType when absent */
	const char art[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"application/vnd.example.sig\",\"digest\":\"" DA
	    "\",\"size\":2},"
	    "\"layers\":[]}";
	assert_int_equal(reg_manifest_parse(art, strlen(art), NULL, &m), 0);
	assert_string_equal(reg_manifest_artifact_type(m), "application/vnd.example.sig");
	assert_int_equal(reg_manifest_layer_count(m), 0);
	reg_manifest_free(m);
}

static void test_schema1(void **state)
{
	const char s1[] = "{\"schemaVersion\":1,\"name\":\"x\",\"tag\":\"y\",\"fsLayers\":[]}";
	struct reg_manifest *m = NULL;
	struct reg_index *ix = NULL;
	assert_int_equal(reg_manifest_parse(s1, strlen(s1), NULL, &m), -ENOTSUP);
	assert_int_equal(reg_manifest_parse(s1, strlen(s1), REG_MT_SCHEMA1_SIGNED, &m), -ENOTSUP);
	assert_int_equal(reg_manifest_parse("{}", 2, REG_MT_SCHEMA1, &m), -ENOTSUP);
	assert_int_equal(reg_index_parse(s1, strlen(s1), NULL, &ix), -ENOTSUP);
	assert_int_equal(reg_doc_sniff(s1, strlen(s1), "application/json"), REG_DOC_SCHEMA1);
	assert_int_equal(reg_media_type_kind(REG_MT_SCHEMA1_SIGNED), REG_DOC_SCHEMA1);
}

static void test_malformed(void **state)
{
	static const char *bad[] = {
	    "",
	    "null",
	    "[]",
	    "{\"schemaVersion\":2}",
	    "{\"schemaVersion\":3,\"config\":{},\"layers\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA
	    "\",\"size\":-1},\"layers\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA
	    "\",\"size\":\"1\"},\"layers\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:abc\","
	    "\"size\":1},\"layers\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1},\"layers\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA
	    "\",\"size\":1},\"layers\":{}}",
	    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA
	    "\",\"size\":1},\"layers\":[],"
	    "\"annotations\":{\"k\":1}}",
	    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA
	    "\",\"size\":1},\"layers\":[]} trailing",
	    "{\"schemaVersion\":2,\"mediaType\":\"application/"
	    "vnd.oci.image.index.v1+json\",\"manifests\":[]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct reg_manifest *m = NULL;
		int e = reg_manifest_parse(bad[i], strlen(bad[i]), NULL, &m);
		if (e != -EPROTO)
			fail_msg("case %zu should be -EPROTO, got %d", i, e);
	}
	const char s512[] =
	    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha512:"
	    "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
	    "000000000000000000000000000000000000000000000000\",\"size\":1},\"layers\":[]}";
	struct reg_manifest *m = NULL;
	assert_int_equal(reg_manifest_parse(s512, strlen(s512), NULL, &m), -ENOTSUP);
	/* deep nesting is refused by the tokenizer, not by the stack */
	char deep[4096];
	size_t n = 0;
	n += (size_t)sprintf(deep, "{\"schemaVersion\":2,\"x\":");
	for (int i = 0; i < 1000; i++)
		deep[n++] = '[';
	assert_int_equal(reg_manifest_parse(deep, n, NULL, &m), -EPROTO);
	assert_int_equal(reg_manifest_parse(deep, REG_MANIFEST_MAX + 1, NULL, &m), -EFBIG);
}

static const char index_doc[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DA
    "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v6\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DB
    "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DC
    "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DD
    "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"},"
    "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DD
    "\",\"size\":1,"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},"
    "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DA
    "\",\"size\":5,"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"windows\",\"os.version\":\"10.0.17763\"}}]}";

static const char *pick(const struct reg_index *ix, const char *plat)
{
	struct reg_platform p;
	const struct reg_descriptor *d = NULL;
	assert_int_equal(reg_platform_parse(plat, &p), 0);
	int e = reg_index_select_platform(ix, &p, &d);
	reg_platform_fini(&p);
	return e == 0 ? d->digest : NULL;
}

static void test_index_platforms(void **state)
{
	struct reg_index *ix = NULL;
	assert_int_equal(reg_index_parse(index_doc, strlen(index_doc), NULL, &ix), 0);
	assert_int_equal(reg_index_count(ix), 6);
	assert_string_equal(reg_index_entry(ix, 5)->platform->os_version, "10.0.17763");
	assert_string_equal(pick(ix, "linux/arm/v7"), DB);
	assert_string_equal(pick(ix, "linux/arm/v6"), DA);
	assert_string_equal(pick(ix, "linux/arm"), DB); /* highest variant */
	assert_string_equal(pick(ix, "linux/arm64"), DC);
	assert_string_equal(pick(ix, "linux/arm64/v8"), DC); /* absent variant means v8 */
	assert_null(pick(ix, "linux/amd64"));		     /* only an attestation: never */
	assert_string_equal(pick(ix, "windows/amd64"), DA);
	assert_null(pick(ix, "linux/arm/v5"));
	const struct reg_descriptor *d;
	assert_int_equal(reg_index_select_platform(ix, NULL, &d),
			 -ENOENT); /* linux/amd64 default */
	reg_index_free(ix);

	struct reg_platform p;
	assert_int_equal(reg_platform_parse(NULL, &p), 0);
	assert_string_equal(p.os, "linux");
	assert_string_equal(p.architecture, "amd64");
	assert_null(p.variant);
	char s[64];
	reg_platform_format(&p, s, sizeof(s));
	assert_string_equal(s, "linux/amd64");
	reg_platform_fini(&p);
	assert_int_equal(reg_platform_parse("linux", &p), -EINVAL);
	assert_int_equal(reg_platform_parse("linux/arm/v7/x", &p), -EINVAL);
	assert_int_equal(reg_platform_parse("linux//v7", &p), -EINVAL);
	assert_int_equal(reg_platform_parse("linux/a b", &p), -EINVAL);
}

static void test_index_kinds(void **state)
{
	struct reg_index *ix = NULL;
	/* a manifest is not an index and vice versa; Docker manifest list accepted */
	assert_int_equal(reg_index_parse(oci_manifest, strlen(oci_manifest), NULL, &ix), -EPROTO);
	const char list[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/"
	    "vnd.docker.distribution.manifest.list.v2+json\","
	    "\"manifests\":[{\"mediaType\":\"application/"
	    "vnd.docker.distribution.manifest.v2+json\","
	    "\"digest\":\"" DA
	    "\",\"size\":1,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}";
	assert_int_equal(reg_index_parse(list, strlen(list), NULL, &ix), 0);
	assert_string_equal(reg_index_media_type(ix), REG_MT_DOCKER_LIST);
	const struct reg_descriptor *d;
	assert_int_equal(reg_index_select_platform(ix, NULL, &d), 0);
	assert_string_equal(d->digest, DA);
	reg_index_free(ix);
	assert_int_equal(reg_doc_sniff(list, strlen(list), NULL), REG_DOC_INDEX);
	assert_int_equal(
	    reg_doc_sniff(oci_manifest, strlen(oci_manifest), "application/octet-stream"),
	    REG_DOC_MANIFEST);
	assert_int_equal(reg_doc_sniff("nope", 4, NULL), REG_DOC_UNKNOWN);
}

static void test_referrers_update(void **state)
{
	struct reg_annotation an = {.key = "org.example.k", .value = "v1"};
	struct reg_descriptor a = {.media_type = REG_MT_OCI_MANIFEST,
				   .digest = DA,
				   .size = 10,
				   .artifact_type = "application/vnd.isorun.index.v1",
				   .annotations = &an,
				   .n_annotations = 1};
	struct reg_descriptor b = {.media_type = REG_MT_OCI_MANIFEST,
				   .digest = DB,
				   .size = 20,
				   .artifact_type = "application/vnd.example.sbom"};
	char *j1 = NULL, *j2 = NULL, *j3 = NULL;
	size_t l1, l2, l3;
	assert_int_equal(reg_referrers_index_update(NULL, 0, &a, &j1, &l1), 0);
	assert_int_equal(reg_referrers_index_update(j1, l1, &b, &j2, &l2), 0);
	/* same digest again: replaced, not duplicated */
	assert_int_equal(reg_referrers_index_update(j2, l2, &a, &j3, &l3), 0);
	struct reg_index *ix = NULL;
	assert_int_equal(reg_index_parse(j3, l3, NULL, &ix), 0);
	assert_string_equal(reg_index_media_type(ix), REG_MT_OCI_INDEX);
	assert_int_equal(reg_index_count(ix), 2);
	assert_string_equal(reg_index_entry(ix, 0)->digest, DA);
	assert_string_equal(reg_index_entry(ix, 0)->artifact_type,
			    "application/vnd.isorun.index.v1");
	assert_string_equal(reg_descriptor_annotation(reg_index_entry(ix, 0), "org.example.k"),
			    "v1");
	assert_string_equal(reg_index_entry(ix, 1)->digest, DB);
	reg_index_free(ix);
	/* fields we do not model survive a read-modify-write */
	const char foreign[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
	    "\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" DC
	    "\",\"size\":1,\"future\":{\"k\":1}}],"
	    "\"annotations\":{\"keep\":\"me\"}}";
	char *j4 = NULL;
	size_t l4;
	assert_int_equal(reg_referrers_index_update(foreign, strlen(foreign), &b, &j4, &l4), 0);
	assert_non_null(strstr(j4, "\"future\""));
	assert_non_null(strstr(j4, "\"keep\":\"me\""));
	assert_int_equal(
	    reg_referrers_index_update(oci_manifest, strlen(oci_manifest), &b, &j4, &l4) == 0 ? 0
											      : -1,
	    -1);
	free(j1);
	free(j2);
	free(j3);
	free(j4);
	char tag[80];
	assert_int_equal(reg_referrers_tag(DA, tag, sizeof(tag)), 0);
	assert_string_equal(
	    tag, "sha256-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(reg_referrers_tag("sha256:x", tag, sizeof(tag)), -EINVAL);
}

static void test_artifact_manifest(void **state)
{
	struct reg_descriptor layer = {
	    .media_type = "application/vnd.isorun.pack.v1", .digest = DB, .size = 99};
	struct reg_descriptor subj = {.media_type = REG_MT_OCI_MANIFEST, .digest = DC, .size = 5};
	struct reg_annotation an = {.key = "k", .value = "v"};
	char *j = NULL;
	size_t l;
	assert_int_equal(reg_artifact_manifest_format("application/vnd.isorun.index.v1", NULL,
						      &layer, 1, &subj, &an, 1, &j, &l),
			 0);
	struct reg_manifest *m = NULL;
	assert_int_equal(reg_manifest_parse(j, l, REG_MT_OCI_MANIFEST, &m), 0);
	assert_string_equal(reg_manifest_artifact_type(m), "application/vnd.isorun.index.v1");
	assert_string_equal(reg_manifest_config(m)->digest, REG_EMPTY_DIGEST);
	assert_string_equal(reg_manifest_config(m)->media_type, REG_MT_OCI_EMPTY);
	assert_int_equal(reg_manifest_layer_count(m), 1);
	assert_string_equal(reg_manifest_subject(m)->digest, DC);
	assert_string_equal(reg_manifest_annotation(m, "k"), "v");
	reg_manifest_free(m);
	free(j);
	/* no layers: one empty descriptor, as the spec recommends */
	assert_int_equal(reg_artifact_manifest_format("a/b", NULL, NULL, 0, NULL, NULL, 0, &j, &l),
			 0);
	assert_int_equal(reg_manifest_parse(j, l, NULL, &m), 0);
	assert_int_equal(reg_manifest_layer_count(m), 1);
	assert_string_equal(reg_manifest_layer(m, 0)->digest, REG_EMPTY_DIGEST);
	reg_manifest_free(m);
	free(j);
	struct reg_descriptor bad = {.media_type = "x", .digest = "sha256:nope", .size = 1};
	assert_int_equal(reg_artifact_manifest_format("a/b", NULL, &bad, 1, NULL, NULL, 0, &j, &l),
			 -EINVAL);
}

/* Referrers newest first: by org.opencontainers.image.created, then later in the list;
 * an entry without the annotation is older than any with it. */
static void test_referrers_newest_first(void **state)
{
	(void)state;
	static const char doc[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"" REG_MT_OCI_INDEX "\",\"manifests\":["
#define E(hexd, ann)                                                                               \
	"{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:" hexd \
	"\",\"size\":1" ann "}"
#define H(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define T(t) ",\"annotations\":{\"org.opencontainers.image.created\":\"" t "\"}"
	    E(H("a"), "") "," E(H("b"), T("2020-01-01T00:00:00Z")) "," E(H("c"), "") ","
	    E(H("d"), T("2020-01-01T00:00:00Z")) "," E(H("e"), T("2030-06-01T00:00:00Z")) "]}";
#undef E
#undef T
	struct reg_index *ix = NULL;
	assert_int_equal(reg_index_parse(doc, strlen(doc), NULL, &ix), 0);
	const struct reg_descriptor **v = NULL;
	size_t n = 0;
	assert_int_equal(reg_referrers_newest_first(ix, &v, &n), 0);
	assert_int_equal(n, 5);
	static const char want[] = "edbca";
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i]->digest[7], want[i]);
	free(v);
	reg_index_free(ix);
	assert_int_equal(reg_referrers_newest_first(NULL, &v, &n), 0);
	assert_null(v);
	assert_int_equal(n, 0);
}
#undef H

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manifest_oci),
	    cmocka_unit_test(test_manifest_docker_and_artifact),
	    cmocka_unit_test(test_schema1),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_index_platforms),
	    cmocka_unit_test(test_index_kinds),
	    cmocka_unit_test(test_referrers_update),
	    cmocka_unit_test(test_referrers_newest_first),
	    cmocka_unit_test(test_artifact_manifest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
