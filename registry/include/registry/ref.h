/*
 * Image references, with the grammar and normalisation of docker/distribution's
 * `reference` package (ParseNormalizedNamed):
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] path            (at most 255 characters in all)
 *   domain     := host [ ":" port ]              host: DNS name, IPv4, or [IPv6]
 *   path       := component ( "/" component )*
 *   component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest     := algorithm ":" hex              (only sha256 is accepted for use)
 *
 * The first path element is a domain only if it contains "." or ":" or is "localhost" (and
 * has no upper case); otherwise the domain is docker.io, and single-element docker.io paths
 * get "library/". "index.docker.io" is normalised to "docker.io"; the API endpoint of
 * docker.io is registry-1.docker.io.
 *
 * All functions are thread-safe; a parsed reference is immutable.
 */
#pragma once

#include <stdbool.h>

#define REG_NAME_MAX	   255
#define REG_TAG_MAX	   128
#define REG_DOCKER_HUB	   "docker.io"
#define REG_DOCKER_HUB_API "registry-1.docker.io"

/* A parsed, normalised reference. A plain record: read the fields, do not modify them;
 * reg_ref_free releases every string. */
struct reg_ref {
	char *domain; /* "docker.io", "ghcr.io", "127.0.0.1:5000", "[::1]:5000" */
	char *path;   /* "library/python" */
	char *tag;    /* NULL if absent */
	char *digest; /* "sha256:<hex>", NULL if absent */
};

/*
 * Parse and normalise `s`. On failure returns -EINVAL and, if `ret_why` is not NULL, points
 * it at a static English reason ("repository name must be lowercase"). Nothing is logged
 * (the parser runs on user input in loops and under fuzzing); callers log with context.
 * -ENOTSUP for a well-formed digest of another algorithm than sha256. -ENOMEM.
 * The caller owns *ret (reg_ref_free).
 */
int reg_ref_parse(const char *s, struct reg_ref **ret, const char **ret_why);
void reg_ref_free(struct reg_ref *r);

/* Deep copy; -ENOMEM. */
int reg_ref_dup(const struct reg_ref *r, struct reg_ref **ret);

/* Copy of `r` naming `tag_or_digest` instead of its tag and digest ("sha256:..." is taken as
 * a digest, anything else as a tag, validated). -EINVAL, -ENOMEM. */
int reg_ref_with(const struct reg_ref *r, const char *tag_or_digest, struct reg_ref **ret);

/* Canonical string "domain/path[:tag][@digest]" (heap, caller frees) or NULL on -ENOMEM. */
char *reg_ref_format(const struct reg_ref *r);

/* The host[:port] to talk to: registry-1.docker.io for docker.io, else the domain. */
const char *reg_ref_api_host(const struct reg_ref *r);

/*
 * Pinning policy for create/run/pull: a reference without tag and digest, or whose tag is
 * "latest", "lts" or "stable" (floating by convention), is refused with -EINVAL and a logged
 * message saying why and how to pin (a version tag or "@sha256:..."), unless
 * `allow_floating`. References with a digest always pass.
 */
int reg_ref_check_policy(const struct reg_ref *r, bool allow_floating);
