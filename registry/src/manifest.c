/*
 * Manifest and index parsing with json-c. Every string taken from a document is copied into
 * the parsed object, so the json-c tree is dropped before returning. Inputs are untrusted:
 * types are checked field by field, sizes are non-negative integers, digests are sha256.
 */
#include "registry/manifest.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "json_util.h"

struct reg_manifest {
	char *media_type;
	struct reg_descriptor config;
	struct reg_descriptor *layers;
	size_t n_layers;
	struct reg_descriptor *subject;
	char *artifact_type;
	struct reg_annotation *annotations;
	size_t n_annotations;
};

struct reg_index {
	char *media_type;
	struct reg_descriptor *entries;
	size_t n_entries;
	struct reg_descriptor *subject;
	char *artifact_type;
	struct reg_annotation *annotations;
	size_t n_annotations;
};

/* Bound on entries of one document, far above any real image (Docker caps layers at 127),
 * so an adversarial 4 MiB body cannot make us allocate per-entry structures without end. */
#define MAX_ENTRIES 65536

enum reg_doc_kind reg_media_type_kind(const char *mt)
{
	if (!mt)
		return REG_DOC_UNKNOWN;
	if (!strcmp(mt, REG_MT_OCI_MANIFEST) || !strcmp(mt, REG_MT_DOCKER_MANIFEST))
		return REG_DOC_MANIFEST;
	if (!strcmp(mt, REG_MT_OCI_INDEX) || !strcmp(mt, REG_MT_DOCKER_LIST))
		return REG_DOC_INDEX;
	if (!strcmp(mt, REG_MT_SCHEMA1) || !strcmp(mt, REG_MT_SCHEMA1_SIGNED))
		return REG_DOC_SCHEMA1;
	return REG_DOC_UNKNOWN;
}

static enum reg_doc_kind kind_of_object(struct json_object *o)
{
	struct json_object *v;
	if (json_object_object_get_ex(o, "mediaType", &v) &&
	    json_object_is_type(v, json_type_string)) {
		enum reg_doc_kind k = reg_media_type_kind(json_object_get_string(v));
		if (k != REG_DOC_UNKNOWN)
			return k;
	}
	if (json_object_object_get_ex(o, "schemaVersion", &v) &&
	    json_object_is_type(v, json_type_int) && json_object_get_int64(v) == 1)
		return REG_DOC_SCHEMA1;
	if (json_object_object_get_ex(o, "manifests", &v))
		return REG_DOC_INDEX;
	if (json_object_object_get_ex(o, "layers", &v) ||
	    json_object_object_get_ex(o, "config", &v))
		return REG_DOC_MANIFEST;
	return REG_DOC_UNKNOWN;
}

enum reg_doc_kind reg_doc_sniff(const char *body, size_t len, const char *media_type)
{
	enum reg_doc_kind k = reg_media_type_kind(media_type);
	if (k != REG_DOC_UNKNOWN)
		return k;
	struct json_object *o = NULL;
	if (reg_json_parse(body, len, REG_MANIFEST_MAX, &o) < 0)
		return REG_DOC_UNKNOWN;
	k = json_object_is_type(o, json_type_object) ? kind_of_object(o) : REG_DOC_UNKNOWN;
	json_object_put(o);
	return k;
}

/* ---- descriptors ---- */

static void annotations_free(struct reg_annotation *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(a[i].key);
		free(a[i].value);
	}
	free(a);
}

void reg_platform_fini(struct reg_platform *p)
{
	if (!p)
		return;
	free(p->os);
	free(p->architecture);
	free(p->variant);
	free(p->os_version);
	memset(p, 0, sizeof(*p));
}

static void descriptor_fini(struct reg_descriptor *d)
{
	free(d->media_type);
	free(d->artifact_type);
	if (d->platform) {
		reg_platform_fini(d->platform);
		free(d->platform);
	}
	annotations_free(d->annotations, d->n_annotations);
	memset(d, 0, sizeof(*d));
}

static void descriptors_free(struct reg_descriptor *d, size_t n)
{
	for (size_t i = 0; d && i < n; i++)
		descriptor_fini(&d[i]);
	free(d);
}

const char *reg_descriptor_annotation(const struct reg_descriptor *d, const char *key)
{
	for (size_t i = 0; d && i < d->n_annotations; i++)
		if (!strcmp(d->annotations[i].key, key))
			return d->annotations[i].value;
	return NULL;
}

/* Whether referrer `a` was created after `b` (reg_referrers_newest_first). */
static bool created_after(const struct reg_descriptor *a, const struct reg_descriptor *b)
{
	const char *ta = reg_descriptor_annotation(a, "org.opencontainers.image.created");
	const char *tb = reg_descriptor_annotation(b, "org.opencontainers.image.created");
	return ta && (!tb || strcmp(ta, tb) > 0);
}

int reg_referrers_newest_first(const struct reg_index *refs, const struct reg_descriptor ***ret,
			       size_t *ret_n)
{
	size_t n = refs ? reg_index_count(refs) : 0;
	*ret = NULL;
	*ret_n = 0;
	if (!n)
		return 0;
	const struct reg_descriptor **v = calloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = reg_index_entry(refs, n - 1 - i);
	/* insertion sort: stable, so entries created alike keep the later-first order */
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && created_after(v[k], v[k - 1]); k--) {
			const struct reg_descriptor *t = v[k];
			v[k] = v[k - 1];
			v[k - 1] = t;
		}
	*ret = v;
	*ret_n = n;
	return 0;
}

static const char *find_annotation(const struct reg_annotation *a, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(a[i].key, key))
			return a[i].value;
	return NULL;
}

/* "annotations": {string: string}. Absent is fine; any other type is -EPROTO. */
static int parse_annotations(struct json_object *parent, struct reg_annotation **ret, size_t *ret_n)
{
	struct json_object *o;
	*ret = NULL;
	*ret_n = 0;
	if (!json_object_object_get_ex(parent, "annotations", &o) ||
	    json_object_is_type(o, json_type_null))
		return 0;
	if (!json_object_is_type(o, json_type_object))
		return -EPROTO;
	size_t n = (size_t)json_object_object_length(o);
	if (n == 0)
		return 0;
	if (n > MAX_ENTRIES)
		return -EPROTO;
	struct reg_annotation *a = calloc(n, sizeof(*a));
	if (!a)
		return -ENOMEM;
	size_t i = 0;
	json_object_object_foreach(o, key, val)
	{
		if (!json_object_is_type(val, json_type_string)) {
			annotations_free(a, i);
			return -EPROTO;
		}
		a[i].key = strdup(key);
		a[i].value = strdup(json_object_get_string(val));
		i++;
		if (!a[i - 1].key || !a[i - 1].value) {
			annotations_free(a, i);
			return -ENOMEM;
		}
	}
	*ret = a;
	*ret_n = i;
	return 0;
}

static int parse_platform(struct json_object *o, struct reg_platform **ret)
{
	struct json_object *p;
	*ret = NULL;
	if (!json_object_object_get_ex(o, "platform", &p) || json_object_is_type(p, json_type_null))
		return 0;
	if (!json_object_is_type(p, json_type_object))
		return -EPROTO;
	_cleanup_free_ struct reg_platform *pl = calloc(1, sizeof(*pl));
	if (!pl)
		return -ENOMEM;
	int r;
	if ((r = reg_json_opt_string(p, "os", &pl->os)) < 0 ||
	    (r = reg_json_opt_string(p, "architecture", &pl->architecture)) < 0 ||
	    (r = reg_json_opt_string(p, "variant", &pl->variant)) < 0 ||
	    (r = reg_json_opt_string(p, "os.version", &pl->os_version)) < 0) {
		reg_platform_fini(pl);
		return r;
	}
	if (!pl->os || !pl->architecture) {
		reg_platform_fini(pl);
		return -EPROTO;
	}
	*ret = TAKE_PTR(pl);
	return 0;
}

static int parse_descriptor(struct json_object *o, struct reg_descriptor *d)
{
	struct json_object *v;
	int r;

	memset(d, 0, sizeof(*d));
	if (!json_object_is_type(o, json_type_object))
		return -EPROTO;
	if (!json_object_object_get_ex(o, "digest", &v) ||
	    !json_object_is_type(v, json_type_string))
		return -EPROTO;
	const char *dg = json_object_get_string(v);
	if (!cm_digest_valid(dg))
		return cm_str_has_prefix(dg, "sha256:") ? -EPROTO : -ENOTSUP;
	memcpy(d->digest, dg, CM_DIGEST_STR_SIZE);
	if (!json_object_object_get_ex(o, "size", &v) || !json_object_is_type(v, json_type_int))
		return -EPROTO;
	int64_t sz = json_object_get_int64(v);
	if (sz < 0)
		return -EPROTO;
	d->size = (uint64_t)sz;
	if ((r = reg_json_opt_string(o, "mediaType", &d->media_type)) < 0 ||
	    (r = reg_json_opt_string(o, "artifactType", &d->artifact_type)) < 0 ||
	    (r = parse_platform(o, &d->platform)) < 0 ||
	    (r = parse_annotations(o, &d->annotations, &d->n_annotations)) < 0) {
		descriptor_fini(d);
		return r;
	}
	/* The media type is required by both specs; without it we cannot tell a layer's
	 * compression or an index entry's kind. */
	if (!d->media_type) {
		descriptor_fini(d);
		return -EPROTO;
	}
	return 0;
}

static int parse_descriptor_array(struct json_object *parent, const char *key, bool required,
				  struct reg_descriptor **ret, size_t *ret_n)
{
	struct json_object *a;
	*ret = NULL;
	*ret_n = 0;
	if (!json_object_object_get_ex(parent, key, &a) || json_object_is_type(a, json_type_null))
		return required ? -EPROTO : 0;
	if (!json_object_is_type(a, json_type_array))
		return -EPROTO;
	size_t n = json_object_array_length(a);
	if (n > MAX_ENTRIES)
		return -EPROTO;
	if (n == 0)
		return 0;
	struct reg_descriptor *d = calloc(n, sizeof(*d));
	if (!d)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int r = parse_descriptor(json_object_array_get_idx(a, i), &d[i]);
		if (r < 0) {
			descriptors_free(d, i);
			return r;
		}
	}
	*ret = d;
	*ret_n = n;
	return 0;
}

static int parse_subject(struct json_object *o, struct reg_descriptor **ret)
{
	struct json_object *s;
	*ret = NULL;
	if (!json_object_object_get_ex(o, "subject", &s) || json_object_is_type(s, json_type_null))
		return 0;
	struct reg_descriptor *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	int r = parse_descriptor(s, d);
	if (r < 0) {
		free(d);
		return r;
	}
	*ret = d;
	return 0;
}

/* Common prologue: size cap, JSON parse, kind check, media type agreement. */
static int parse_doc(const char *body, size_t len, const char *media_type, enum reg_doc_kind want,
		     struct json_object **ret_obj, char **ret_mt)
{
	struct json_object *o = NULL;
	/* declared before the first goto: the cleanup must never see it uninitialised */
	_cleanup_free_ char *body_mt = NULL;
	int r;

	if (len > REG_MANIFEST_MAX)
		return cm_log_ret(-EFBIG, "manifest of %zu bytes is over the %u byte cap", len,
				  REG_MANIFEST_MAX);
	if (reg_media_type_kind(media_type) == REG_DOC_SCHEMA1)
		goto schema1;
	r = reg_json_parse(body, len, REG_MANIFEST_MAX, &o);
	if (r < 0)
		return r;
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return -EPROTO;
	}
	enum reg_doc_kind k = kind_of_object(o);
	if (k == REG_DOC_SCHEMA1) {
		json_object_put(o);
		goto schema1;
	}
	struct json_object *v;
	if (!json_object_object_get_ex(o, "schemaVersion", &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 2) {
		json_object_put(o);
		return -EPROTO;
	}
	r = reg_json_opt_string(o, "mediaType", &body_mt);
	if (r < 0) {
		json_object_put(o);
		return r;
	}
	enum reg_doc_kind hk = reg_media_type_kind(media_type);
	if (body_mt && hk != REG_DOC_UNKNOWN && strcmp(body_mt, media_type) != 0) {
		json_object_put(o);
		log_debug("document says mediaType %s but was served as %s", body_mt, media_type);
		return -EPROTO;
	}
	if (hk != REG_DOC_UNKNOWN)
		k = hk;
	if (k != want) {
		json_object_put(o);
		return -EPROTO;
	}
	const char *mt = body_mt ? body_mt : hk != REG_DOC_UNKNOWN ? media_type : NULL;
	if (!mt)
		mt = want == REG_DOC_INDEX ? REG_MT_OCI_INDEX : REG_MT_OCI_MANIFEST;
	*ret_mt = strdup(mt);
	if (!*ret_mt) {
		json_object_put(o);
		return -ENOMEM;
	}
	*ret_obj = o;
	return 0;

schema1:
	return cm_log_ret(
	    -ENOTSUP,
	    "Docker schema 1 manifests (%s) are not supported: they are deprecated and "
	    "unsigned by content; re-push the image with a current client",
	    REG_MT_SCHEMA1);
}

void reg_manifest_free(struct reg_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	descriptor_fini(&m->config);
	descriptors_free(m->layers, m->n_layers);
	descriptors_free(m->subject, m->subject ? 1 : 0);
	free(m->artifact_type);
	annotations_free(m->annotations, m->n_annotations);
	free(m);
}

int reg_manifest_parse(const char *body, size_t len, const char *media_type,
		       struct reg_manifest **ret)
{
	struct json_object *o = NULL, *c;
	struct reg_manifest *m = calloc(1, sizeof(*m));
	int r;

	if (!m)
		return -ENOMEM;
	r = parse_doc(body, len, media_type, REG_DOC_MANIFEST, &o, &m->media_type);
	if (r < 0)
		goto fail;
	if (!json_object_object_get_ex(o, "config", &c)) {
		r = -EPROTO;
		goto fail;
	}
	if ((r = parse_descriptor(c, &m->config)) < 0 ||
	    (r = parse_descriptor_array(o, "layers", true, &m->layers, &m->n_layers)) < 0 ||
	    (r = parse_subject(o, &m->subject)) < 0 ||
	    (r = reg_json_opt_string(o, "artifactType", &m->artifact_type)) < 0 ||
	    (r = parse_annotations(o, &m->annotations, &m->n_annotations)) < 0)
		goto fail;
	json_object_put(o);
	*ret = m;
	return 0;
fail:
	json_object_put(o);
	reg_manifest_free(m);
	return r;
}

const char *reg_manifest_media_type(const struct reg_manifest *m)
{
	return m->media_type;
}
const struct reg_descriptor *reg_manifest_config(const struct reg_manifest *m)
{
	return &m->config;
}
size_t reg_manifest_layer_count(const struct reg_manifest *m)
{
	return m->n_layers;
}
const struct reg_descriptor *reg_manifest_layer(const struct reg_manifest *m, size_t i)
{
	return i < m->n_layers ? &m->layers[i] : NULL;
}
const struct reg_descriptor *reg_manifest_subject(const struct reg_manifest *m)
{
	return m->subject;
}
const char *reg_manifest_artifact_type(const struct reg_manifest *m)
{
	if (m->artifact_type)
		return m->artifact_type;
	if (m->config.media_type && strcmp(m->config.media_type, REG_MT_OCI_CONFIG) != 0 &&
	    strcmp(m->config.media_type, REG_MT_DOCKER_CONFIG) != 0 &&
	    strcmp(m->config.media_type, REG_MT_OCI_EMPTY) != 0)
		return m->config.media_type;
	return NULL;
}
const char *reg_manifest_annotation(const struct reg_manifest *m, const char *key)
{
	return find_annotation(m->annotations, m->n_annotations, key);
}
const struct reg_annotation *reg_manifest_annotations(const struct reg_manifest *m, size_t *ret_n)
{
	*ret_n = m->n_annotations;
	return m->annotations;
}

void reg_index_free(struct reg_index *ix)
{
	if (!ix)
		return;
	free(ix->media_type);
	descriptors_free(ix->entries, ix->n_entries);
	descriptors_free(ix->subject, ix->subject ? 1 : 0);
	free(ix->artifact_type);
	annotations_free(ix->annotations, ix->n_annotations);
	free(ix);
}

int reg_index_parse(const char *body, size_t len, const char *media_type, struct reg_index **ret)
{
	struct json_object *o = NULL;
	struct reg_index *ix = calloc(1, sizeof(*ix));
	int r;

	if (!ix)
		return -ENOMEM;
	r = parse_doc(body, len, media_type, REG_DOC_INDEX, &o, &ix->media_type);
	if (r < 0)
		goto fail;
	if ((r = parse_descriptor_array(o, "manifests", true, &ix->entries, &ix->n_entries)) < 0 ||
	    (r = parse_subject(o, &ix->subject)) < 0 ||
	    (r = reg_json_opt_string(o, "artifactType", &ix->artifact_type)) < 0 ||
	    (r = parse_annotations(o, &ix->annotations, &ix->n_annotations)) < 0)
		goto fail;
	json_object_put(o);
	*ret = ix;
	return 0;
fail:
	json_object_put(o);
	reg_index_free(ix);
	return r;
}

const char *reg_index_media_type(const struct reg_index *ix)
{
	return ix->media_type;
}
size_t reg_index_count(const struct reg_index *ix)
{
	return ix->n_entries;
}
const struct reg_descriptor *reg_index_entry(const struct reg_index *ix, size_t i)
{
	return i < ix->n_entries ? &ix->entries[i] : NULL;
}
const struct reg_descriptor *reg_index_subject(const struct reg_index *ix)
{
	return ix->subject;
}
const char *reg_index_artifact_type(const struct reg_index *ix)
{
	return ix->artifact_type;
}
const char *reg_index_annotation(const struct reg_index *ix, const char *key)
{
	return find_annotation(ix->annotations, ix->n_annotations, key);
}

/* ---- platforms ---- */

static bool platform_component_valid(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

int reg_platform_parse(const char *s, struct reg_platform *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (!s || !*s)
		s = "linux/amd64";
	const char *parts[3] = {0};
	size_t lens[3] = {0};
	size_t n = 0;
	const char *p = s;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t l = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 3 || !platform_component_valid(p, l))
			return -EINVAL;
		parts[n] = p;
		lens[n++] = l;
		if (!slash)
			break;
		p = slash + 1;
	}
	if (n < 2)
		return -EINVAL;
	ret->os = strndup(parts[0], lens[0]);
	ret->architecture = strndup(parts[1], lens[1]);
	ret->variant = n == 3 ? strndup(parts[2], lens[2]) : NULL;
	if (!ret->os || !ret->architecture || (n == 3 && !ret->variant)) {
		reg_platform_fini(ret);
		return -ENOMEM;
	}
	return 0;
}

void reg_platform_format(const struct reg_platform *p, char *out, size_t outlen)
{
	if (!outlen)
		return;
	snprintf(out, outlen, "%s/%s%s%s", p->os ? p->os : "?",
		 p->architecture ? p->architecture : "?", p->variant ? "/" : "",
		 p->variant ? p->variant : "");
}

static const char *norm_variant(const char *arch, const char *variant)
{
	if (variant)
		return variant;
	if (!strcmp(arch, "arm64"))
		return "v8";
	return NULL;
}

int reg_index_select_platform(const struct reg_index *ix, const struct reg_platform *want,
			      const struct reg_descriptor **ret)
{
	static const struct reg_platform def = {.os = "linux", .architecture = "amd64"};
	const struct reg_descriptor *best = NULL;
	int best_score = -1;

	if (!want)
		want = &def;
	for (size_t i = 0; i < ix->n_entries; i++) {
		const struct reg_descriptor *d = &ix->entries[i];
		const struct reg_platform *p = d->platform;
		if (!p || reg_media_type_kind(d->media_type) != REG_DOC_MANIFEST)
			continue;
		if (reg_descriptor_annotation(d, "vnd.docker.reference.type"))
			continue;
		if (strcmp(p->os, want->os) != 0 ||
		    strcmp(p->architecture, want->architecture) != 0)
			continue;
		const char *pv = norm_variant(p->architecture, p->variant);
		int score;
		if (want->variant) {
			const char *wv = norm_variant(want->architecture, want->variant);
			if (!pv || strcmp(pv, wv) != 0)
				continue;
			score = 1;
		} else {
			/* No variant asked: prefer the plain entry, then the highest variant
			 * ("v8" > "v7"), which is what a current machine of that arch runs. */
			score = !p->variant
				    ? 1000
				    : (int)(strtol(p->variant + (p->variant[0] == 'v'), NULL, 10) %
					    1000);
		}
		if (score > best_score) {
			best = d;
			best_score = score;
		}
	}
	if (best) {
		*ret = best;
		return 0;
	}
	char wanted[160], list[1024] = "";
	size_t used = 0;
	reg_platform_format(want, wanted, sizeof(wanted));
	for (size_t i = 0; i < ix->n_entries && used < sizeof(list) - 80; i++) {
		const struct reg_platform *p = ix->entries[i].platform;
		if (!p)
			continue;
		char one[160];
		reg_platform_format(p, one, sizeof(one));
		int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", one);
		if (n < 0 || (size_t)n >= sizeof(list) - used)
			break;
		used += (size_t)n;
	}
	return cm_log_ret(-ENOENT, "image index has no manifest for platform %s (it has: %s)",
			  wanted, used ? list : "none");
}

/* ---- writing ---- */

static int add_str(struct json_object *o, const char *k, const char *v)
{
	struct json_object *s = json_object_new_string(v);
	if (!s)
		return -ENOMEM;
	if (json_object_object_add(o, k, s) < 0) {
		json_object_put(s);
		return -ENOMEM;
	}
	return 0;
}

static int add_obj(struct json_object *o, const char *k, struct json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(o, k, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static struct json_object *annotations_to_json(const struct reg_annotation *a, size_t n)
{
	struct json_object *o = json_object_new_object();
	for (size_t i = 0; o && i < n; i++)
		if (add_str(o, a[i].key, a[i].value) < 0) {
			json_object_put(o);
			return NULL;
		}
	return o;
}

/* Descriptor as JSON in the spec's field order. NULL on -ENOMEM or an invalid descriptor. */
static struct json_object *descriptor_to_json(const struct reg_descriptor *d)
{
	if (!d->media_type || !cm_digest_valid(d->digest))
		return NULL;
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	if (add_str(o, "mediaType", d->media_type) < 0 || add_str(o, "digest", d->digest) < 0 ||
	    add_obj(o, "size", json_object_new_int64((int64_t)d->size)) < 0 ||
	    (d->artifact_type && add_str(o, "artifactType", d->artifact_type) < 0))
		goto fail;
	if (d->platform) {
		struct json_object *p = json_object_new_object();
		if (add_obj(o, "platform", p) < 0 ||
		    add_str(p, "architecture", d->platform->architecture) < 0 ||
		    add_str(p, "os", d->platform->os) < 0 ||
		    (d->platform->os_version &&
		     add_str(p, "os.version", d->platform->os_version) < 0) ||
		    (d->platform->variant && add_str(p, "variant", d->platform->variant) < 0))
			goto fail;
	}
	if (d->n_annotations &&
	    add_obj(o, "annotations", annotations_to_json(d->annotations, d->n_annotations)) < 0)
		goto fail;
	return o;
fail:
	json_object_put(o);
	return NULL;
}

static int to_string(struct json_object *o, char **ret, size_t *ret_len)
{
	size_t len;
	const char *s = json_object_to_json_string_length(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (!s)
		return -ENOMEM;
	char *c = strndup(s, len);
	if (!c)
		return -ENOMEM;
	*ret = c;
	*ret_len = len;
	return 0;
}

int reg_artifact_manifest_format(const char *artifact_type, const struct reg_descriptor *config,
				 const struct reg_descriptor *layers, size_t n_layers,
				 const struct reg_descriptor *subject,
				 const struct reg_annotation *annotations, size_t n_annotations,
				 char **ret, size_t *ret_len)
{
	static const struct reg_descriptor empty = {
	    .media_type = REG_MT_OCI_EMPTY, .digest = REG_EMPTY_DIGEST, .size = 2};
	struct json_object *o = json_object_new_object(), *arr;
	int r = -ENOMEM;

	if (!o)
		return -ENOMEM;
	if (add_obj(o, "schemaVersion", json_object_new_int(2)) < 0 ||
	    add_str(o, "mediaType", REG_MT_OCI_MANIFEST) < 0 ||
	    (artifact_type && add_str(o, "artifactType", artifact_type) < 0))
		goto out;
	r = -EINVAL;
	struct json_object *c = descriptor_to_json(config ? config : &empty);
	if (!c || add_obj(o, "config", c) < 0)
		goto out;
	arr = json_object_new_array();
	if (add_obj(o, "layers", arr) < 0)
		goto out;
	for (size_t i = 0; i < (n_layers ? n_layers : 1); i++) {
		struct json_object *l = descriptor_to_json(n_layers ? &layers[i] : &empty);
		if (!l || json_object_array_add(arr, l) < 0) {
			json_object_put(l);
			goto out;
		}
	}
	if (subject) {
		struct json_object *s = descriptor_to_json(subject);
		if (!s || add_obj(o, "subject", s) < 0)
			goto out;
	}
	r = -ENOMEM;
	if (n_annotations &&
	    add_obj(o, "annotations", annotations_to_json(annotations, n_annotations)) < 0)
		goto out;
	r = to_string(o, ret, ret_len);
out:
	json_object_put(o);
	return r;
}

int reg_referrers_index_update(const char *old, size_t old_len, const struct reg_descriptor *add,
			       char **ret, size_t *ret_len)
{
	struct json_object *o = NULL, *arr = NULL;
	int r;

	if (old && old_len) {
		/* Parse once as a typed index to validate, then edit the json-c tree so fields
		 * we do not model (annotations of the index, unknown extensions) survive. */
		struct reg_index *check = NULL;
		r = reg_index_parse(old, old_len, NULL, &check);
		reg_index_free(check);
		if (r < 0)
			return r == -ENOTSUP ? r : -EPROTO;
		r = reg_json_parse(old, old_len, REG_MANIFEST_MAX, &o);
		if (r < 0)
			return r;
		if (!json_object_object_get_ex(o, "manifests", &arr) ||
		    !json_object_is_type(arr, json_type_array)) {
			/* "manifests": null is accepted by reg_index_parse as empty */
			arr = json_object_new_array();
			if (add_obj(o, "manifests", arr) < 0) {
				json_object_put(o);
				return -ENOMEM;
			}
		}
	} else {
		o = json_object_new_object();
		if (!o)
			return -ENOMEM;
		arr = json_object_new_array();
		if (add_obj(o, "schemaVersion", json_object_new_int(2)) < 0 ||
		    add_str(o, "mediaType", REG_MT_OCI_INDEX) < 0 ||
		    add_obj(o, "manifests", arr) < 0) {
			json_object_put(o);
			return -ENOMEM;
		}
	}
	struct json_object *d = descriptor_to_json(add);
	if (!d) {
		json_object_put(o);
		return -EINVAL;
	}
	size_t n = json_object_array_length(arr);
	bool replaced = false;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i), *dg;
		if (json_object_object_get_ex(e, "digest", &dg) &&
		    !strcmp(json_object_get_string(dg), add->digest)) {
			json_object_array_put_idx(arr, i, d); /* drops the old entry */
			replaced = true;
			break;
		}
	}
	if (!replaced && json_object_array_add(arr, d) < 0) {
		json_object_put(d);
		json_object_put(o);
		return -ENOMEM;
	}
	r = to_string(o, ret, ret_len);
	json_object_put(o);
	return r;
}

int reg_referrers_tag(const char *digest, char *out, size_t outlen)
{
	if (!digest || !cm_digest_valid(digest) || outlen < CM_DIGEST_STR_SIZE)
		return -EINVAL;
	snprintf(out, outlen, "sha256-%s", digest + 7);
	return 0;
}
