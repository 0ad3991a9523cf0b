/*
 * Registry authentication pieces that are useful on their own: WWW-Authenticate parsing,
 * credential lookup (explicit, podman and docker auth files, docker credential helpers),
 * and the login/logout edits of a docker-format auth file.
 *
 * Secrets (passwords, identity tokens, bearer tokens) are never logged and never passed on
 * a command line: credential helpers get the host name on stdin only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* ---- WWW-Authenticate (RFC 7235 challenges) ---- */

struct reg_auth_param {
	char *name;  /* lower-cased */
	char *value; /* unquoted, escapes resolved */
};

struct reg_challenge {
	char *scheme;  /* lower-cased: "bearer", "basic" */
	char *token68; /* the token68 form, or NULL */
	struct reg_auth_param *params;
	size_t n_params;
};

/* A list of challenges gathered from one or more WWW-Authenticate header values.
 * Caller's storage: zero-initialise (or _init), then _fini. Not thread-safe. */
struct reg_challenges {
	struct reg_challenge *v;
	size_t n;
};

/* Cap on one header value we are willing to parse (and on the number of challenges). */
#define REG_CHALLENGE_MAX  8192
#define REG_CHALLENGES_MAX 16

void reg_challenges_init(struct reg_challenges *c);
void reg_challenges_fini(struct reg_challenges *c);

/*
 * Append the challenges of one header value (`len` bytes, no NUL needed): comma-separated
 * challenges, each a scheme then a token68 or comma-separated name=value parameters where
 * values are tokens or quoted strings with backslash escapes. Call once per header line.
 * Returns 0; -EPROTO if malformed (nothing is appended then); -EFBIG if over the caps; -ENOMEM.
 */
int reg_challenges_parse(struct reg_challenges *c, const char *value, size_t len);

/* The first challenge of `scheme` (case-insensitive), or NULL. */
const struct reg_challenge *reg_challenges_find(const struct reg_challenges *c, const char *scheme);
/* The value of parameter `name` (case-insensitive), or NULL. */
const char *reg_challenge_param(const struct reg_challenge *ch, const char *name);

/* ---- credentials ---- */

struct reg_creds {
	char *username; /* NULL for an identity token alone */
	char *password;
	char *identity_token; /* OAuth2 refresh token (docker "identitytoken") or NULL */
	char *source;	      /* where they came from, for messages: a path or "helper NAME" */
};

void reg_creds_fini(struct reg_creds *c); /* wipes the secrets before freeing */

/*
 * Find credentials for `registry` (host[:port] as in a reference, "docker.io" for Docker Hub)
 * and repository `path` (may be NULL), in order:
 *   1. `explicit_creds` "user:password" (never from the environment or a command line of a
 *      child process),
 *   2. `authfile` if given (and then only it),
 *   3. $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
 *      $DOCKER_CONFIG/config.json, ~/.docker/config.json (first file with a match wins).
 * In each file: credHelpers[registry], then auths (longest matching "registry/path" key first,
 * keys may carry a scheme and "/v1/"; Docker Hub's historic keys match docker.io), then
 * credsStore. An "auth" entry is base64("user:password"); "identitytoken" is kept.
 * Helpers run as `docker-credential-NAME get` from $PATH with the host on stdin; Username
 * "<token>" means the secret is an identity token.
 * Returns 1 and fills *ret when found, 0 when nothing matched (anonymous), -EPROTO for a
 * malformed file or helper answer, -EFBIG over the 1 MiB file / 64 KiB helper cap, -ENOMEM.
 * Thread-safe (reads files and the environment; spawns helpers).
 */
int reg_creds_lookup(const char *explicit_creds, const char *authfile, const char *registry,
		     const char *path, struct reg_creds *ret);

/*
 * The auth file `isorun login`/`logout` edit: `authfile` if not NULL, else
 * $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json. Heap string or NULL (-ENOMEM
 * or no $HOME).
 */
char *reg_authfile_default(const char *authfile);

/*
 * Store base64(user:password) as auths[registry].auth in the docker-format file (see
 * reg_authfile_default), keeping every other entry and field; the file is written
 * atomically with mode 0600 (parent directory created 0700). Does not check the credentials
 * against the registry (reg_client_ping does). -EPROTO (existing file malformed), -EINVAL
 * (user contains ':' or is empty), -errno from the file system, -ENOMEM. Not safe against a
 * concurrent login editing the same file (last writer wins, never a torn file).
 */
int reg_login_store(const char *authfile, const char *registry, const char *user,
		    const char *password);

/* Remove the entry of `registry` (and its Docker Hub aliases). -ENOENT when there was none. */
int reg_login_remove(const char *authfile, const char *registry);
