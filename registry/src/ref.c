#include "registry/ref.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/util.h"

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_word(char c)
{
	return is_alnum(c) || c == '_';
}

/* One path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)* . Sets *upper if an upper-case
 * letter is what made it invalid, for the better message. */
static bool component_valid(const char *s, size_t n, bool *upper)
{
	size_t i = 0;
	for (size_t k = 0; k < n; k++)
		if (s[k] >= 'A' && s[k] <= 'Z')
			*upper = true;
	if (n == 0 || !is_lower_alnum(s[0]))
		return false;
	while (i < n) {
		while (i < n && is_lower_alnum(s[i]))
			i++;
		if (i == n)
			return true;
		size_t sep = i;
		if (s[i] == '.')
			i++;
		else if (s[i] == '_')
			i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
		else if (s[i] == '-')
			while (i < n && s[i] == '-')
				i++;
		else
			return false;
		if (i == sep || i == n || !is_lower_alnum(s[i]))
			return false;
	}
	return true;
}

static bool path_valid(const char *s, size_t n, bool *upper)
{
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '/') {
			if (!component_valid(s + start, i - start, upper))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9] */
static bool dns_name_valid(const char *s, size_t n)
{
	size_t start = 0;
	if (n == 0)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			size_t l = i - start;
			if (l == 0 || !is_alnum(s[start]) || !is_alnum(s[i - 1]))
				return false;
			for (size_t k = start; k < i; k++)
				if (!is_alnum(s[k]) && s[k] != '-')
					return false;
			start = i + 1;
		}
	}
	return true;
}

static bool domain_valid(const char *s, size_t n)
{
	size_t hostlen = n;
	if (n && s[0] == '[') {
		/* [IPv6]: hex digits and colons (and dots for an embedded IPv4), as the
		 * distribution grammar's ipv6address does. */
		const char *close = memchr(s, ']', n);
		if (!close || close == s + 1)
			return false;
		for (const char *p = s + 1; p < close; p++)
			if (!(is_alnum(*p) &&
			      ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
			       (*p >= 'A' && *p <= 'F'))) &&
			    *p != ':' && *p != '.')
				return false;
		hostlen = (size_t)(close - s) + 1;
	} else {
		const char *colon = memchr(s, ':', n);
		if (colon)
			hostlen = (size_t)(colon - s);
		if (!dns_name_valid(s, hostlen))
			return false;
	}
	if (hostlen == n)
		return true;
	if (s[hostlen] != ':' || hostlen + 1 == n)
		return false;
	for (size_t i = hostlen + 1; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n - hostlen - 1 <= 5;
}

static bool tag_valid(const char *s, size_t n)
{
	if (n == 0 || n > REG_TAG_MAX || !is_word(s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!is_word(s[i]) && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

/* algorithm ":" encoded, with the grammar's character classes; *sha256 tells whether it is
 * a valid sha256 digest (the only one we can verify). */
static bool digest_grammar_valid(const char *s, bool *sha256)
{
	const char *colon = strchr(s, ':');
	*sha256 = false;
	if (!colon || colon == s)
		return false;
	for (const char *p = s; p < colon; p++)
		if (!is_lower_alnum(*p) && !strchr("+._-", *p))
			return false;
	if (!is_lower_alnum(s[0]) || !is_lower_alnum(colon[-1]))
		return false;
	size_t n = strlen(colon + 1);
	if (n < 32)
		return false;
	for (const char *p = colon + 1; *p; p++)
		if (!is_alnum(*p) && !strchr("=_-", *p))
			return false;
	*sha256 = cm_digest_valid(s);
	return true;
}

static bool is_64_hex(const char *s, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

void reg_ref_free(struct reg_ref *r)
{
	if (!r)
		return;
	free(r->domain);
	free(r->path);
	free(r->tag);
	free(r->digest);
	free(r);
}

DEFINE_CLEANUP_FUNC(struct reg_ref, reg_ref_free)

#define FAIL(why)                                                                                  \
	do {                                                                                       \
		if (ret_why)                                                                       \
			*ret_why = (why);                                                          \
		return -EINVAL;                                                                    \
	} while (0)

int reg_ref_parse(const char *s, struct reg_ref **ret, const char **ret_why)
{
	if (!s || !*s)
		FAIL("empty reference");
	size_t len = strlen(s);
	if (len > REG_NAME_MAX + 1 + REG_TAG_MAX + 1 + 7 + 128)
		FAIL("reference too long");

	/* Split off "@digest", then ":tag" (a colon after the last slash). */
	const char *at = strchr(s, '@');
	size_t name_tag_len = at ? (size_t)(at - s) : len;
	const char *last_slash = NULL;
	for (size_t i = 0; i < name_tag_len; i++)
		if (s[i] == '/')
			last_slash = s + i;
	const char *colon = memchr(last_slash ? last_slash : s, ':',
				   name_tag_len - (size_t)((last_slash ? last_slash : s) - s));
	size_t name_len = colon ? (size_t)(colon - s) : name_tag_len;

	if (at) {
		bool sha = false;
		if (!digest_grammar_valid(at + 1, &sha))
			FAIL("invalid digest format");
		if (!sha && cm_str_has_prefix(at + 1, "sha256:"))
			FAIL("invalid sha256 digest: 64 lowercase hex digits expected");
		if (!sha) {
			if (ret_why)
				*ret_why = "unsupported digest algorithm (only sha256)";
			return -ENOTSUP;
		}
	}
	if (colon && !tag_valid(colon + 1, name_tag_len - name_len - 1))
		FAIL("invalid tag: 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'");
	if (name_len == 0)
		FAIL("empty repository name");

	/* Domain detection, as distribution's splitDockerDomain. */
	const char *slash = memchr(s, '/', name_len);
	_cleanup_free_ char *domain = NULL, *path = NULL;
	if (slash) {
		size_t dl = (size_t)(slash - s);
		bool has_upper = false;
		for (size_t i = 0; i < dl; i++)
			if (s[i] >= 'A' && s[i] <= 'Z')
				has_upper = true;
		/* Exactly distribution's rule: an upper-case first element is a host too
		 * (repository components are lowercase-only, so it cannot be a path). */
		bool is_domain = has_upper || memchr(s, '.', dl) || memchr(s, ':', dl) ||
				 (dl == 9 && !memcmp(s, "localhost", 9));
		if (is_domain) {
			if (!domain_valid(s, dl))
				FAIL("invalid registry host");
			domain = strndup(s, dl);
			path = strndup(slash + 1, name_len - dl - 1);
		}
	}
	if (!domain) {
		domain = strdup(REG_DOCKER_HUB);
		path = strndup(s, name_len);
	}
	if (!domain || !path)
		return -ENOMEM;
	if (!strcmp(domain, "index.docker.io")) {
		free(domain);
		domain = strdup(REG_DOCKER_HUB);
		if (!domain)
			return -ENOMEM;
	}
	if (!strcmp(domain, REG_DOCKER_HUB) && !strchr(path, '/')) {
		char *p = cm_strdupf("library/%s", path);
		if (!p)
			return -ENOMEM;
		free(path);
		path = p;
	}
	bool upper = false;
	if (!path_valid(path, strlen(path), &upper))
		FAIL(upper ? "repository name must be lowercase" : "invalid repository name");
	if (is_64_hex(s, name_len))
		FAIL("repository name cannot be a 64-character hexadecimal string (an image id?)");
	if (strlen(domain) + 1 + strlen(path) > REG_NAME_MAX)
		FAIL("repository name longer than 255 characters");

	_cleanup_(reg_ref_freep) struct reg_ref *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->domain = TAKE_PTR(domain);
	r->path = TAKE_PTR(path);
	if (colon && !(r->tag = strndup(colon + 1, name_tag_len - name_len - 1)))
		return -ENOMEM;
	if (at && !(r->digest = strdup(at + 1)))
		return -ENOMEM;
	*ret = TAKE_PTR(r);
	return 0;
}

int reg_ref_dup(const struct reg_ref *r, struct reg_ref **ret)
{
	_cleanup_(reg_ref_freep) struct reg_ref *n = calloc(1, sizeof(*n));
	if (!n || !(n->domain = strdup(r->domain)) || !(n->path = strdup(r->path)) ||
	    (r->tag && !(n->tag = strdup(r->tag))) ||
	    (r->digest && !(n->digest = strdup(r->digest))))
		return -ENOMEM;
	*ret = TAKE_PTR(n);
	return 0;
}

int reg_ref_with(const struct reg_ref *r, const char *tag_or_digest, struct reg_ref **ret)
{
	bool sha;
	bool is_digest = strchr(tag_or_digest, ':') != NULL;
	if (is_digest ? !digest_grammar_valid(tag_or_digest, &sha) || !sha
		      : !tag_valid(tag_or_digest, strlen(tag_or_digest)))
		return -EINVAL;
	_cleanup_(reg_ref_freep) struct reg_ref *n = calloc(1, sizeof(*n));
	if (!n || !(n->domain = strdup(r->domain)) || !(n->path = strdup(r->path)))
		return -ENOMEM;
	if (!(*(is_digest ? &n->digest : &n->tag) = strdup(tag_or_digest)))
		return -ENOMEM;
	*ret = TAKE_PTR(n);
	return 0;
}

char *reg_ref_format(const struct reg_ref *r)
{
	return cm_strdupf("%s/%s%s%s%s%s", r->domain, r->path, r->tag ? ":" : "",
			  r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "");
}

const char *reg_ref_api_host(const struct reg_ref *r)
{
	return strcmp(r->domain, REG_DOCKER_HUB) == 0 ? REG_DOCKER_HUB_API : r->domain;
}

int reg_ref_check_policy(const struct reg_ref *r, bool allow_floating)
{
	static const char *const floating[] = {"latest", "lts", "stable"};
	if (allow_floating || r->digest)
		return 0;
	_cleanup_free_ char *s = reg_ref_format(r);
	if (!r->tag)
		return cm_log_ret(
		    -EINVAL,
		    "%s names no tag and no digest, so it would silently mean ':latest', "
		    "which changes over time; pin it with a version tag (%s:1.2.3) or a "
		    "digest (%s@sha256:...); isorun-index and pull take it with --allow-floating-tag",
		    s ? s : r->path, s ? s : r->path, s ? s : r->path);
	for (size_t i = 0; i < ARRAY_SIZE(floating); i++)
		if (!strcmp(r->tag, floating[i]))
			return cm_log_ret(
			    -EINVAL,
			    "tag '%s' of %s is floating (it is moved to new images), so "
			    "runs would not be reproducible; pin a version tag or a digest "
			    "(%s/%s@sha256:...); isorun-index and pull take it with --allow-floating-tag",
			    r->tag, s ? s : r->path, r->domain, r->path);
	return 0;
}
