/*
 * Credential lookup in podman/docker auth files and docker credential helpers, and the
 * login/logout edits. Secrets are wiped (explicit_bzero) before their memory is freed.
 */
#include "registry/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "json_util.h"

extern char **environ;

#define AUTHFILE_MAX   (1u << 20)
#define HELPER_OUT_MAX (64u << 10)

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void reg_creds_fini(struct reg_creds *c)
{
	if (!c)
		return;
	free(c->username);
	free_secret(c->password);
	free_secret(c->identity_token);
	free(c->source);
	memset(c, 0, sizeof(*c));
}

static void secret_buf_fini(struct cm_buf *b)
{
	if (b->data)
		explicit_bzero(b->data, b->alloc);
	cm_buf_fini(b);
}

/* Docker Hub is known under several names in auth files. */
static bool is_docker_hub(const char *h, size_t n)
{
	static const char *const names[] = {"docker.io", "index.docker.io", "registry-1.docker.io",
					    "registry.hub.docker.com"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strlen(names[i]) == n && !memcmp(h, names[i], n))
			return true;
	return false;
}

/*
 * Normalise an auths key: strip "http(s)://", and for Docker Hub's historic
 * "https://index.docker.io/v1/" drop the path. Returns the host length and sets *path to the
 * rest (without leading slash), which is a repository namespace in podman's format.
 */
static size_t key_split(const char *key, const char **host, const char **path, size_t *path_len)
{
	if (cm_str_has_prefix(key, "https://"))
		key += 8;
	else if (cm_str_has_prefix(key, "http://"))
		key += 7;
	const char *slash = strchr(key, '/');
	size_t hl = slash ? (size_t)(slash - key) : strlen(key);
	*host = key;
	*path = slash ? slash + 1 : "";
	*path_len = strlen(*path);
	while (*path_len && (*path)[*path_len - 1] == '/')
		(*path_len)--;
	if (*path_len == 2 && !memcmp(*path, "v1", 2))
		*path_len = 0;
	if (*path_len == 2 && !memcmp(*path, "v2", 2))
		*path_len = 0;
	return hl;
}

/* Match quality of `key` for registry/path: -1 no match, else 1 + the length of the matched
 * repository prefix (longest wins, as in podman). */
static int key_match(const char *key, const char *registry, const char *repo)
{
	const char *h, *p;
	size_t pl;
	size_t hl = key_split(key, &h, &p, &pl);
	size_t rl = strlen(registry);
	bool host_ok = (hl == rl && !memcmp(h, registry, hl)) ||
		       (is_docker_hub(h, hl) && is_docker_hub(registry, rl));
	if (!host_ok)
		return -1;
	if (pl == 0)
		return 1;
	if (!repo)
		return -1;
	size_t ql = strlen(repo);
	if (ql < pl || memcmp(repo, p, pl) != 0 || (ql > pl && repo[pl] != '/'))
		return -1;
	return 1 + (int)pl;
}

static int b64_decode(const char *in, struct cm_buf *out)
{
	size_t n = strlen(in);
	if (n % 4 || n > 8192)
		return -EPROTO;
	int r = cm_buf_reserve(out, n / 4 * 3 + 1);
	if (r < 0)
		return r;
	ssize_t m = cm_base64_decode(in, n, out->data);
	if (m < 0)
		return (int)m;
	out->len = (size_t)m;
	out->data[out->len] = 0;
	return 0;
}

static int split_user_pass(const char *s, size_t n, struct reg_creds *ret)
{
	const char *colon = memchr(s, ':', n);
	if (!colon || colon == s)
		return -EPROTO;
	ret->username = strndup(s, (size_t)(colon - s));
	ret->password = strndup(colon + 1, n - (size_t)(colon - s) - 1);
	if (!ret->username || !ret->password)
		return -ENOMEM;
	return 0;
}

static bool helper_name_valid(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

/*
 * Run `docker-credential-NAME get`, host on stdin, JSON on stdout. Returns 1 found, 0 not
 * found (the protocol's "credentials not found" is an exit status 1 with that message),
 * -EPROTO, -errno.
 */
static int run_helper(const char *name, const char *host, struct reg_creds *ret)
{
	_cleanup_free_ char *prog = NULL;
	int in[2] = {-1, -1}, out[2] = {-1, -1};
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int r;

	if (!helper_name_valid(name))
		return cm_log_ret(-EPROTO, "credential helper name '%s' is not valid", name);
	prog = cm_strdupf("docker-credential-%s", name);
	if (!prog)
		return -ENOMEM;
	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) < 0) {
		r = -errno;
		close(in[0]);
		close(in[1]);
		return r;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	char *argv[] = {prog, "get", NULL};
	r = -posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (r < 0) {
		close(in[1]);
		close(out[0]);
		return cm_log_ret(r, "cannot run credential helper %s", prog);
	}
	/* The host is short (< PIPE_BUF): one write cannot block on a full pipe. Ignore
	 * SIGPIPE-free failure if the helper exits without reading. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	(void)!write(in[1], host, strlen(host));
	close(in[1]);
	struct timespec zero = {0};
	while (sigtimedwait(&block, NULL, &zero) > 0)
		;
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	struct cm_buf b;
	cm_buf_init(&b, HELPER_OUT_MAX);
	r = 0;
	for (;;) {
		char chunk[4096];
		ssize_t n = read(out[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (r == 0)
			r = cm_buf_append(&b, chunk, (size_t)n);
		explicit_bzero(chunk, sizeof(chunk));
	}
	close(out[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (r < 0) {
		secret_buf_fini(&b);
		return cm_log_ret(r, "credential helper %s wrote more than %u bytes", prog,
				  HELPER_OUT_MAX);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		/* Its stdout then holds a message, which is not a secret. */
		bool notfound = b.len && memmem(b.data, b.len, "not found", 9);
		secret_buf_fini(&b);
		if (notfound)
			return 0;
		return cm_log_ret(-EPROTO, "credential helper %s failed for %s", prog, host);
	}
	struct json_object *o = NULL;
	r = reg_json_parse((const char *)b.data, b.len, HELPER_OUT_MAX, &o);
	secret_buf_fini(&b);
	if (r < 0 || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return cm_log_ret(-EPROTO, "credential helper %s answered malformed JSON", prog);
	}
	_cleanup_free_ char *user = NULL;
	char *secret = NULL;
	r = reg_json_opt_string(o, "Username", &user);
	if (r >= 0)
		r = reg_json_opt_string(o, "Secret", &secret);
	json_object_put(o);
	if (r < 0 || !secret || !*secret) {
		free_secret(secret);
		return cm_log_ret(-EPROTO, "credential helper %s answered without a Secret", prog);
	}
	if (user && !strcmp(user, "<token>")) {
		ret->identity_token = secret;
	} else {
		ret->username = TAKE_PTR(user);
		ret->password = secret;
	}
	ret->source = cm_strdupf("credential helper %s", prog);
	return ret->source ? 1 : -ENOMEM;
}

/* Look `registry`/`path` up in one auth file. 1 found, 0 not (or no file), -errno. */
static int lookup_file(const char *file, const char *registry, const char *path,
		       struct reg_creds *ret)
{
	struct cm_buf b;
	struct json_object *o = NULL, *v;
	int r;

	cm_buf_init(&b, AUTHFILE_MAX);
	r = cm_read_file(AT_FDCWD, file, &b);
	if (r == -ENOENT || r == -ENOTDIR) {
		secret_buf_fini(&b);
		return 0;
	}
	if (r < 0) {
		secret_buf_fini(&b);
		return cm_log_ret(r, "cannot read auth file %s", file);
	}
	r = reg_json_parse((const char *)b.data, b.len, AUTHFILE_MAX, &o);
	secret_buf_fini(&b);
	if (r < 0 || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return cm_log_ret(-EPROTO, "auth file %s is not a JSON object", file);
	}
	/* credHelpers: per registry, takes precedence over everything else in the file. */
	if (json_object_object_get_ex(o, "credHelpers", &v) &&
	    json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, key, val)
		{
			if (key_match(key, registry, NULL) >= 0 &&
			    json_object_is_type(val, json_type_string)) {
				r = run_helper(json_object_get_string(val), registry, ret);
				json_object_put(o);
				return r;
			}
		}
	}
	struct json_object *best = NULL;
	int best_q = -1;
	if (json_object_object_get_ex(o, "auths", &v) && json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, key, val)
		{
			int q = key_match(key, registry, path);
			if (q > best_q && json_object_is_type(val, json_type_object)) {
				best = val;
				best_q = q;
			}
		}
	}
	if (best) {
		struct json_object *a;
		_cleanup_free_ char *idt = NULL;
		r = reg_json_opt_string(best, "identitytoken", &idt);
		if (r < 0)
			goto malformed;
		if (json_object_object_get_ex(best, "auth", &a) &&
		    json_object_is_type(a, json_type_string) && json_object_get_string_len(a) > 0) {
			struct cm_buf dec;
			cm_buf_init(&dec, 8192);
			r = b64_decode(json_object_get_string(a), &dec);
			if (r == 0)
				r = split_user_pass((const char *)dec.data, dec.len, ret);
			secret_buf_fini(&dec);
			if (r < 0) {
				reg_creds_fini(ret);
				goto malformed;
			}
		}
		if (idt && *idt) {
			ret->identity_token = TAKE_PTR(idt);
		}
		if (ret->password || ret->identity_token) {
			json_object_put(o);
			ret->source = strdup(file);
			return ret->source ? 1 : -ENOMEM;
		}
		reg_creds_fini(ret);
	}
	/* credsStore: the default helper for every registry of the file. */
	if (json_object_object_get_ex(o, "credsStore", &v) &&
	    json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0) {
		r = run_helper(json_object_get_string(v), registry, ret);
		json_object_put(o);
		return r;
	}
	json_object_put(o);
	return 0;
malformed:
	json_object_put(o);
	return cm_log_ret(-EPROTO, "auth file %s has a malformed entry for %s", file, registry);
}

int reg_creds_lookup(const char *explicit_creds, const char *authfile, const char *registry,
		     const char *path, struct reg_creds *ret)
{
	int r;
	memset(ret, 0, sizeof(*ret));
	if (explicit_creds) {
		r = split_user_pass(explicit_creds, strlen(explicit_creds), ret);
		if (r < 0) {
			reg_creds_fini(ret);
			return r == -EPROTO ? cm_log_ret(-EINVAL, "--creds must be USER:PASSWORD")
					    : r;
		}
		ret->source = strdup("--creds");
		return ret->source ? 1 : -ENOMEM;
	}
	if (authfile) {
		r = lookup_file(authfile, registry, path, ret);
		if (r <= 0)
			reg_creds_fini(ret);
		return r;
	}
	char *files[5] = {0};
	size_t n = 0;
	const char *e;
	if ((e = getenv("REGISTRY_AUTH_FILE")) && *e)
		files[n++] = strdup(e);
	if ((e = getenv("XDG_RUNTIME_DIR")) && *e)
		files[n++] = cm_strdupf("%s/containers/auth.json", e);
	if ((e = getenv("DOCKER_CONFIG")) && *e)
		files[n++] = cm_strdupf("%s/config.json", e);
	if ((e = getenv("HOME")) && *e)
		files[n++] = cm_strdupf("%s/.docker/config.json", e);
	r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (!files[i]) {
			r = -ENOMEM;
			break;
		}
		r = lookup_file(files[i], registry, path, ret);
	}
	for (size_t i = 0; i < n; i++)
		free(files[i]);
	if (r <= 0)
		reg_creds_fini(ret);
	return r;
}

char *reg_authfile_default(const char *authfile)
{
	const char *e;
	if (authfile)
		return strdup(authfile);
	if ((e = getenv("DOCKER_CONFIG")) && *e)
		return cm_strdupf("%s/config.json", e);
	if ((e = getenv("HOME")) && *e)
		return cm_strdupf("%s/.docker/config.json", e);
	return NULL;
}

/* Load the file's JSON object, or a new empty one when it does not exist. */
static int load_authfile(const char *file, struct json_object **ret)
{
	struct cm_buf b;
	cm_buf_init(&b, AUTHFILE_MAX);
	int r = cm_read_file(AT_FDCWD, file, &b);
	if (r == -ENOENT) {
		secret_buf_fini(&b);
		*ret = json_object_new_object();
		return *ret ? 0 : -ENOMEM;
	}
	if (r < 0) {
		secret_buf_fini(&b);
		return cm_log_ret(r, "cannot read auth file %s", file);
	}
	r = reg_json_parse((const char *)b.data, b.len, AUTHFILE_MAX, ret);
	secret_buf_fini(&b);
	if (r < 0 || !json_object_is_type(*ret, json_type_object)) {
		if (r == 0)
			json_object_put(*ret);
		return cm_log_ret(-EPROTO, "auth file %s is not a JSON object; not touching it",
				  file);
	}
	return 0;
}

static int save_authfile(const char *file, struct json_object *o)
{
	_cleanup_free_ char *dir = strdup(file);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	const char *base = file;
	if (slash) {
		*slash = 0;
		base = slash + 1;
		if (*dir) {
			int r = cm_mkdir_p(AT_FDCWD, dir, 0700);
			if (r < 0)
				return cm_log_ret(r, "cannot create %s", dir);
		}
	}
	_cleanup_close_ int dfd =
	    open(slash ? (*dir ? dir : "/") : ".", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	size_t len;
	const char *s = json_object_to_json_string_length(
	    o,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_PRETTY_TAB | JSON_C_TO_STRING_NOSLASHESCAPE,
	    &len);
	if (!s)
		return -ENOMEM;
	_cleanup_free_ char *text = cm_strdupf("%s\n", s);
	if (!text)
		return -ENOMEM;
	int r = cm_write_file_atomic(dfd, base, text, len + 1, 0600, true);
	explicit_bzero(text, len + 1);
	if (r < 0)
		return cm_log_ret(r, "cannot write %s", file);
	return 0;
}

int reg_login_store(const char *authfile, const char *registry, const char *user,
		    const char *password)
{
	if (!user || !*user || strchr(user, ':') || !password || !registry || !*registry)
		return -EINVAL;
	_cleanup_free_ char *file = reg_authfile_default(authfile);
	if (!file)
		return -ENOMEM;
	struct json_object *o = NULL, *auths;
	int r = load_authfile(file, &o);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(o, "auths", &auths) ||
	    !json_object_is_type(auths, json_type_object)) {
		auths = json_object_new_object();
		if (!auths || json_object_object_add(o, "auths", auths) < 0) {
			json_object_put(auths);
			json_object_put(o);
			return -ENOMEM;
		}
	}
	size_t ul = strlen(user), pl = strlen(password);
	size_t raw_len = ul + 1 + pl;
	char *raw = malloc(raw_len + 1);
	char *enc = malloc(CM_BASE64_LEN(raw_len));
	struct json_object *entry = json_object_new_object();
	r = -ENOMEM;
	if (raw && enc && entry) {
		memcpy(raw, user, ul);
		raw[ul] = ':';
		memcpy(raw + ul + 1, password, pl);
		cm_base64_encode(raw, raw_len, enc);
		struct json_object *s = json_object_new_string(enc);
		if (s && json_object_object_add(entry, "auth", s) == 0) {
			/* Drop aliases of the same registry so the new entry is the one used. */
			const char *hub =
			    is_docker_hub(registry, strlen(registry)) ? "docker.io" : registry;
			json_object_object_del(auths, registry);
			r = json_object_object_add(auths, hub, entry) == 0 ? 0 : -ENOMEM;
			if (r == 0)
				entry = NULL;
		} else {
			json_object_put(s);
		}
	}
	if (raw) {
		explicit_bzero(raw, raw_len);
		free(raw);
	}
	if (enc) {
		explicit_bzero(enc, strlen(enc));
		free(enc);
	}
	json_object_put(entry);
	if (r == 0)
		r = save_authfile(file, o);
	json_object_put(o);
	return r;
}

int reg_login_remove(const char *authfile, const char *registry)
{
	_cleanup_free_ char *file = reg_authfile_default(authfile);
	if (!file)
		return -ENOMEM;
	struct json_object *o = NULL, *auths;
	int r = load_authfile(file, &o);
	if (r < 0)
		return r;
	r = -ENOENT;
	if (json_object_object_get_ex(o, "auths", &auths) &&
	    json_object_is_type(auths, json_type_object)) {
		/* Collect first: deleting while iterating json-c's object is undefined. */
		char *keys[64];
		size_t n = 0;
		json_object_object_foreach(auths, key, val)
		{
			(void)val;
			if (n < ARRAY_SIZE(keys) && key_match(key, registry, NULL) == 1)
				keys[n++] = key;
		}
		for (size_t i = 0; i < n; i++) {
			_cleanup_free_ char *k = strdup(keys[i]);
			if (!k) {
				json_object_put(o);
				return -ENOMEM;
			}
			json_object_object_del(auths, k);
		}
		if (n)
			r = save_authfile(file, o);
	}
	json_object_put(o);
	return r;
}
