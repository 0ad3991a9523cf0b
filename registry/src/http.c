/*
 * The request engine: one curl easy handle per attempt, all attached to the client's share
 * handle so connections, DNS answers and TLS sessions are reused across threads.
 *
 * Locking: c->share_locks[] are taken by curl through share_lock/share_unlock; c->lock
 * guards the token and host caches and is never held during network I/O.
 */
#include "internal.h"
#include "curl_dl.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "json_util.h"

/* ---- errors ---- */

const char *reg_strerror(int err)
{
	switch (err) {
	case -ENOENT:
		return "not found in the registry";
	case -EACCES:
		return "access denied by the registry (isorun login?)";
	case -EAGAIN:
		return "the registry could not be reached";
	case -ETIMEDOUT:
		return "the registry did not answer in time";
	case -EBADMSG:
		return "the registry sent bytes that do not match their digest";
	case -EPROTO:
		return "the registry's answer is malformed";
	case -ENOTSUP:
		return "the registry or the image uses something isorun does not support";
	default:
		return strerror(-err);
	}
}

int reg_err_from_curl(int code)
{
	switch ((CURLcode)code) {
	case CURLE_OK:
		return 0;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT; /* the engine turns stalls before the deadline into -EAGAIN */
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_PARTIAL_FILE:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_AGAIN:
	case CURLE_HTTP3:
		return -EAGAIN;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		return -EACCES;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	case CURLE_BAD_CONTENT_ENCODING:
		return -EPROTO;
	default:
		return -EIO;
	}
}

int reg_err_from_http(long status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 400:
	case 405:
	case 411:
	case 415:
		return -EPROTO;
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 408:
	case 429:
	case 500:
	case 502:
	case 503:
	case 504:
		return -EAGAIN;
	case 413:
		return -EFBIG;
	case 416:
		return -ERANGE;
	default:
		return status >= 500 ? -EIO : -EPROTO;
	}
}

static bool status_retryable(long s)
{
	return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

/* ---- client ---- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
	struct reg_client *c = ud;
	pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	struct reg_client *c = ud;
	pthread_mutex_unlock(&c->share_locks[data]);
}

int reg_client_new(const struct reg_options *o, struct reg_client **ret)
{
	static const struct reg_options defaults = {0};
	struct reg_client *c;
	int r;

	r = reg_curl_load();
	if (r < 0)
		return r;
	if (!o)
		o = &defaults;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->o = *o;
	if (!c->o.max_retries)
		c->o.max_retries = 5;
	if (!c->o.retry_base_ms)
		c->o.retry_base_ms = 250;
	if (!c->o.timeout_s)
		c->o.timeout_s = 600;
	if (!c->o.connect_timeout_s)
		c->o.connect_timeout_s = 15;
	if (!c->o.low_speed_time_s)
		c->o.low_speed_time_s = 30;
	if (!c->o.parallel)
		c->o.parallel = 4;
	pthread_mutex_init(&c->lock, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(c->share_locks); i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	r = -ENOMEM;
	if ((o->creds && !(c->creds = strdup(o->creds))) ||
	    (o->authfile && !(c->authfile = strdup(o->authfile))))
		goto fail;
	c->user_agent = strdup(o->user_agent ? o->user_agent : "isorun/0.1");
	if (!c->user_agent)
		goto fail;
	size_t n = 0;
	while (o->insecure_registries && o->insecure_registries[n])
		n++;
	c->insecure = calloc(n + 1, sizeof(char *));
	if (!c->insecure)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (!(c->insecure[i] = strdup(o->insecure_registries[i])))
			goto fail;
	c->o.creds = c->creds;
	c->o.authfile = c->authfile;
	c->o.user_agent = c->user_agent;
	c->o.insecure_registries = (const char *const *)c->insecure;
	if (o->scheme_cache && !(c->scheme_cache = strdup(o->scheme_cache)))
		goto fail;
	c->o.scheme_cache = c->scheme_cache;
	c->o.platform = NULL;
	r = reg_platform_parse(o->platform, &c->platform);
	if (r < 0) {
		if (r == -EINVAL)
			log_error("platform '%s' is not os/arch[/variant]", o->platform);
		goto fail;
	}
	r = -ENOMEM;
	c->share = curl_share_init();
	if (!c->share)
		goto fail;
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	*ret = c;
	return 0;
fail:
	reg_client_free(c);
	return r;
}

static void token_free(struct reg_token *t)
{
	free(t->host);
	free(t->scope);
	if (t->value) {
		explicit_bzero(t->value, strlen(t->value));
		free(t->value);
	}
	free(t);
}

void reg_client_free(struct reg_client *c)
{
	if (!c)
		return;
	if (c->share)
		curl_share_cleanup(c->share);
	while (c->tokens) {
		struct reg_token *t = c->tokens;
		c->tokens = t->next;
		token_free(t);
	}
	while (c->hosts) {
		struct reg_host *h = c->hosts;
		c->hosts = h->next;
		free(h->host);
		free(h->realm);
		free(h->service);
		free(h->basic_repo);
		reg_creds_fini(&h->basic_creds);
		free(h);
	}
	if (c->creds) {
		explicit_bzero(c->creds, strlen(c->creds));
		free(c->creds);
	}
	free(c->authfile);
	free(c->scheme_cache);
	for (size_t i = 0; c->insecure && c->insecure[i]; i++)
		free(c->insecure[i]);
	free(c->insecure);
	free(c->user_agent);
	reg_platform_fini(&c->platform);
	pthread_mutex_destroy(&c->lock);
	for (size_t i = 0; i < ARRAY_SIZE(c->share_locks); i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	free(c);
}

/* ---- helpers ---- */

char *reg_escape(const char *s)
{
	if (reg_curl_load() < 0) /* only reached through a client, which loaded it */
		return NULL;
	char *e = curl_easy_escape(NULL, s, 0);
	if (!e)
		return NULL;
	char *r = strdup(e);
	curl_free(e);
	return r;
}

char *reg_scope(const struct reg_ref *ref, const char *actions)
{
	return cm_strdupf("repository:%s:%s", ref->path, actions);
}

const char *reg_ref_target(const struct reg_ref *ref)
{
	return ref->digest ? ref->digest : ref->tag ? ref->tag : "latest";
}

char *reg_api_path(const struct reg_ref *ref, const char *kind, const char *what)
{
	return cm_strdupf("/v2/%s/%s/%s", ref->path, kind, what);
}

void reg_url_for_log(const char *url, char *out, size_t outlen)
{
	size_t n = strcspn(url, "?#");
	snprintf(out, outlen, "%.*s%s", (int)MIN(n, outlen), url, url[n] ? "?..." : "");
}

static bool host_is_loopback(const char *host)
{
	/* host[:port], [v6]:port */
	char h[256];
	size_t n;
	if (host[0] == '[') {
		n = strcspn(host + 1, "]");
		snprintf(h, sizeof(h), "%.*s", (int)n, host + 1);
		return !strcmp(h, "::1");
	}
	n = strcspn(host, ":");
	snprintf(h, sizeof(h), "%.*s", (int)n, host);
	if (!strcasecmp(h, "localhost"))
		return true;
	unsigned a, b, cc, d;
	char tail;
	return sscanf(h, "%u.%u.%u.%u%c", &a, &b, &cc, &d, &tail) == 4 && a == 127 && b < 256 &&
	       cc < 256 && d < 256;
}

/* ---- what insecure registries speak, remembered across processes (o.scheme_cache) ---- */

/* The scheme recorded for `host`, or REG_SCHEME_UNKNOWN. */
static enum reg_scheme scheme_cache_get(const struct reg_client *c, const char *host)
{
	enum reg_scheme sc = REG_SCHEME_UNKNOWN;
	if (!c->scheme_cache)
		return sc;
	FILE *f = fopen(c->scheme_cache, "re");
	if (!f)
		return sc;
	char line[512];
	size_t hl = strlen(host);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, host, hl) != 0 || line[hl] != ' ')
			continue;
		if (!strcmp(line + hl + 1, "http\n"))
			sc = REG_SCHEME_HTTP;
		else if (!strcmp(line + hl + 1, "https\n"))
			sc = REG_SCHEME_HTTPS_NOVERIFY;
	}
	fclose(f);
	return sc;
}

/* Record (or with REG_SCHEME_UNKNOWN forget) what `host` speaks: the file is rewritten
 * through a temporary one, so readers see the old or the new version. Best effort. */
static void scheme_cache_put(const struct reg_client *c, const char *host, enum reg_scheme sc)
{
	if (!c->scheme_cache)
		return;
	_cleanup_free_ char *tmp = cm_strdupf("%s.%ld.tmp", c->scheme_cache, (long)getpid());
	if (!tmp)
		return;
	FILE *out = fopen(tmp, "we");
	if (!out)
		return;
	FILE *in = fopen(c->scheme_cache, "re");
	char line[512];
	size_t hl = strlen(host);
	while (in && fgets(line, sizeof(line), in))
		if (strncmp(line, host, hl) != 0 || line[hl] != ' ')
			fputs(line, out);
	if (in)
		fclose(in);
	if (sc == REG_SCHEME_HTTP || sc == REG_SCHEME_HTTPS_NOVERIFY)
		fprintf(out, "%s %s\n", host, sc == REG_SCHEME_HTTP ? "http" : "https");
	if (fclose(out) != 0 || rename(tmp, c->scheme_cache) < 0)
		unlink(tmp);
}

/* Host record, created on first use. Caller holds c->lock. */
static struct reg_host *host_get_locked(struct reg_client *c, const char *host)
{
	for (struct reg_host *h = c->hosts; h; h = h->next)
		if (!strcmp(h->host, host))
			return h;
	struct reg_host *h = calloc(1, sizeof(*h));
	if (!h || !(h->host = strdup(host))) {
		free(h);
		return NULL;
	}
	/* "http://HOST" / "https://HOST": the scheme it speaks, so no probe ever */
	for (size_t i = 0; c->insecure[i]; i++) {
		const char *e = c->insecure[i];
		enum reg_scheme sc = REG_SCHEME_UNKNOWN;
		if (!strncmp(e, "http://", 7)) {
			e += 7;
			sc = REG_SCHEME_HTTP;
		} else if (!strncmp(e, "https://", 8)) {
			e += 8;
			sc = REG_SCHEME_HTTPS_NOVERIFY;
		}
		if (strcmp(e, host) != 0)
			continue;
		h->insecure = true;
		if (sc != REG_SCHEME_UNKNOWN) { /* wins over a plain entry */
			h->scheme = sc;
			h->scheme_fixed = true;
		}
	}
	/* Loopback registries are insecure registries, as in docker: HTTPS without
	 * verification when they speak TLS, else plain HTTP (decided on first contact). */
	if (host_is_loopback(host))
		h->insecure = true;
	if (!h->insecure)
		h->scheme = REG_SCHEME_HTTPS;
	else if (!h->scheme_fixed && (h->scheme = scheme_cache_get(c, host)) != REG_SCHEME_UNKNOWN)
		h->scheme_cached = true;
	h->next = c->hosts;
	c->hosts = h;
	return h;
}

/* Cached token for (host, scope) valid now, copied to *ret (heap; caller wipes). */
static int token_get(struct reg_client *c, const char *host, const char *scope, char **ret)
{
	uint64_t now = cm_now_ns();
	*ret = NULL;
	pthread_mutex_lock(&c->lock);
	for (struct reg_token *t = c->tokens; t; t = t->next)
		if (!strcmp(t->host, host) && !strcmp(t->scope, scope ? scope : "") &&
		    t->expires_ns > now) {
			*ret = strdup(t->value);
			break;
		}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void token_drop(struct reg_client *c, const char *host, const char *scope)
{
	pthread_mutex_lock(&c->lock);
	for (struct reg_token **pp = &c->tokens; *pp;) {
		struct reg_token *t = *pp;
		if (!strcmp(t->host, host) && !strcmp(t->scope, scope ? scope : "")) {
			*pp = t->next;
			token_free(t);
		} else {
			pp = &t->next;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

static int token_put(struct reg_client *c, const char *host, const char *scope, const char *value,
		     long expires_in)
{
	struct reg_token *t = calloc(1, sizeof(*t));
	if (!t || !(t->host = strdup(host)) || !(t->scope = strdup(scope ? scope : "")) ||
	    !(t->value = strdup(value))) {
		if (t)
			token_free(t);
		return -ENOMEM;
	}
	/* Refresh before expiry: a fifth of the lifetime early (at most 30 s), so a token is
	 * never sent in its last seconds and a long transfer starting then does not fail. */
	uint64_t life = (uint64_t)expires_in * 1000000000ull;
	uint64_t margin = MIN(life / 5, 30ull * 1000000000ull);
	t->expires_ns = cm_now_ns() + life - margin;
	token_drop(c, host, scope);
	pthread_mutex_lock(&c->lock);
	t->next = c->tokens;
	c->tokens = t;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* ---- one attempt ---- */

/*
 * Stall detection: curl's LOW_SPEED_LIMIT would count the time a blob stream's consumer
 * keeps the write callback blocked (back-pressure) as a stall, so we measure ourselves:
 * `last_ns` moves whenever bytes arrive or leave, or a blocked sink returns; the progress
 * callback aborts when it has not moved for low_speed_time_s.
 */
struct attempt {
	struct reg_req *r;
	uint64_t last_ns;
	uint64_t stall_ns;
	curl_off_t last_dl, last_ul;
	bool stalled;
	bool cancelled;
};

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct attempt *a = ud;
	uint64_t now = cm_now_ns();
	if (dlnow != a->last_dl || ulnow != a->last_ul) {
		a->last_dl = dlnow;
		a->last_ul = ulnow;
		a->last_ns = now;
		return 0;
	}
	if (a->r->cancel && atomic_load(a->r->cancel)) {
		a->cancelled = true;
		return 1;
	}
	if (now - a->last_ns > a->stall_ns) {
		a->stalled = true;
		return 1; /* CURLE_ABORTED_BY_CALLBACK */
	}
	return 0;
}

static char *header_value_dup(const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return strndup(v, n);
}

static void resp_reset(struct reg_req *r)
{
	free(r->resp_content_type);
	free(r->resp_digest);
	free(r->resp_location);
	free(r->resp_content_range);
	free(r->resp_oci_subject);
	free(r->resp_filters);
	r->resp_content_type = r->resp_digest = r->resp_location = r->resp_content_range = NULL;
	r->resp_oci_subject = r->resp_filters = NULL;
	r->resp_content_length = -1;
	r->retry_after_s = -1;
	r->status = 0;
	reg_challenges_fini(&r->challenges);
	cm_buf_clear(&r->errbody);
	r->started = false;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct attempt *a = ud;
	struct reg_req *r = a->r;
	size_t n = size * nmemb;
	if (n > REG_HEADER_MAX)
		return n; /* ignore absurd lines rather than fail: nothing we need is that long */
	if (n >= 5 && !memcmp(data, "HTTP/", 5)) {
		/* a new response (after 100 Continue or a proxy's 200) resets what we saw */
		resp_reset(r);
		const char *sp = memchr(data, ' ', n);
		if (sp)
			r->status = strtol(sp + 1, NULL, 10);
		return n;
	}
	const char *colon = memchr(data, ':', n);
	if (!colon)
		return n;
	size_t kl = (size_t)(colon - data);
	const char *v = colon + 1;
	size_t vl = n - kl - 1;
#define IS(name) (kl == sizeof(name) - 1 && !strncasecmp(data, name, kl))
	char **slot = NULL;
	if (IS("content-type"))
		slot = &r->resp_content_type;
	else if (IS("docker-content-digest"))
		slot = &r->resp_digest;
	else if (IS("location"))
		slot = &r->resp_location;
	else if (IS("content-range"))
		slot = &r->resp_content_range;
	else if (IS("oci-subject"))
		slot = &r->resp_oci_subject;
	else if (IS("oci-filters-applied"))
		slot = &r->resp_filters;
	if (slot) {
		free(*slot);
		*slot = header_value_dup(v, vl);
	} else if (IS("content-length")) {
		r->resp_content_length = strtoll(v, NULL, 10);
	} else if (IS("retry-after")) {
		_cleanup_free_ char *s = header_value_dup(v, vl);
		if (s && isdigit((unsigned char)s[0])) {
			r->retry_after_s = strtol(s, NULL, 10);
		} else if (s) {
			time_t t = curl_getdate(s, NULL);
			if (t > 0)
				r->retry_after_s = MAX(0, (long)(t - time(NULL)));
		}
	} else if (IS("www-authenticate")) {
		/* malformed challenges are ignored; a 401 without a usable one fails later */
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
			vl--;
		(void)reg_challenges_parse(&r->challenges, v, vl);
	}
#undef IS
	return n;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct attempt *a = ud;
	struct reg_req *r = a->r;
	size_t n = size * nmemb;
	bool ok2xx = r->status >= 200 && r->status < 300;
	if (!ok2xx) {
		/* error bodies (and redirect bodies) only feed the log message */
		size_t room = r->errbody.cap - r->errbody.len;
		(void)cm_buf_append(&r->errbody, data, MIN(n, room));
		return n;
	}
	if (!r->started) {
		r->started = true;
		if (r->start) {
			int e = r->start(r->ud, r);
			if (e < 0) {
				r->sink_err = e;
				return CURL_WRITEFUNC_ERROR;
			}
		}
	}
	int e = 0;
	if (r->sink)
		e = r->sink(r->ud, (const uint8_t *)data, n);
	else if (r->out)
		e = cm_buf_append(r->out, data, n);
	a->last_ns = cm_now_ns(); /* time blocked in the sink is not a stall */
	r->progressed = true;
	if (e < 0) {
		r->sink_err = e;
		return CURL_WRITEFUNC_ERROR;
	}
	return n;
}

struct upload {
	struct reg_req *r;
	uint64_t pos;
};

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *ud)
{
	struct upload *u = ud;
	struct reg_req *r = u->r;
	size_t want = size * nmemb;
	uint64_t left = r->body_len - u->pos;
	if (want > left)
		want = (size_t)left;
	if (!want)
		return 0;
	if (r->body) {
		memcpy(buf, (const uint8_t *)r->body + u->pos, want);
	} else {
		ssize_t n = pread(r->body_fd, buf, want, (off_t)(r->body_off + u->pos));
		if (n <= 0)
			return CURL_READFUNC_ABORT;
		want = (size_t)n;
	}
	u->pos += want;
	return want;
}

static const char *scheme_prefix(enum reg_scheme s)
{
	return s == REG_SCHEME_HTTP ? "http://" : "https://";
}

/* Perform one HTTP exchange on `url`. Returns a CURLcode translated to -errno, or 0 with
 * r->status set. */
static int attempt_once(struct reg_client *c, struct reg_req *r, const char *url,
			enum reg_scheme scheme, const char *bearer, const struct reg_creds *basic)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	_cleanup_free_ char *authz = NULL;
	struct attempt a = {.r = r};
	struct upload up = {.r = r};
	int err = 0;

	if (!h)
		return -ENOMEM;
	resp_reset(r);
	r->sink_err = 0;
	uint64_t now = cm_now_ns();
	if (now >= r->deadline_ns) {
		curl_easy_cleanup(h);
		return -ETIMEDOUT;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_SHARE, c->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)MAX(1, (r->deadline_ns - now) / 1000000));
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)c->o.connect_timeout_s);
	a.last_ns = cm_now_ns();
	a.stall_ns = (uint64_t)c->o.low_speed_time_s * 1000000000ull;
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &a);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &a);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	if (scheme == REG_SCHEME_HTTPS_NOVERIFY || c->o.tls_no_verify) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (!strcmp(r->method, "HEAD"))
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	else if (strcmp(r->method, "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	if (r->has_body) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, &up);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
		hdrs = curl_slist_append(hdrs, "Expect:");
	}
	if (r->accept) {
		_cleanup_free_ char *v = cm_strdupf("Accept: %s", r->accept);
		hdrs = v ? curl_slist_append(hdrs, v) : hdrs;
	}
	if (r->content_type) {
		_cleanup_free_ char *v = cm_strdupf("Content-Type: %s", r->content_type);
		hdrs = v ? curl_slist_append(hdrs, v) : hdrs;
	}
	if (r->range[0]) {
		_cleanup_free_ char *v = cm_strdupf("Range: %s", r->range);
		hdrs = v ? curl_slist_append(hdrs, v) : hdrs;
	}
	if (r->content_range[0]) {
		_cleanup_free_ char *v = cm_strdupf("Content-Range: %s", r->content_range);
		hdrs = v ? curl_slist_append(hdrs, v) : hdrs;
	}
	if (bearer) {
		authz = cm_strdupf("Authorization: Bearer %s", bearer);
		if (!authz) {
			err = -ENOMEM;
			goto out;
		}
		hdrs = curl_slist_append(hdrs, authz);
	} else if (basic && basic->username && basic->password) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERNAME, basic->username);
		curl_easy_setopt(h, CURLOPT_PASSWORD, basic->password);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	CURLcode cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		if (r->sink_err)
			err = r->sink_err;
		else if (cc == CURLE_ABORTED_BY_CALLBACK && a.cancelled)
			err = -ECANCELED;
		else if (cc == CURLE_ABORTED_BY_CALLBACK && a.stalled)
			err = -EAGAIN; /* stalled, not the deadline */
		else
			err = reg_err_from_curl(cc);
		if (r->sink_err)
			r->why = "the receiver refused the data";
		else if (cc == CURLE_ABORTED_BY_CALLBACK && a.stalled)
			r->why = "no data for the stall limit";
		else
			r->why = curl_easy_strerror(cc);
		char u[512];
		reg_url_for_log(url, u, sizeof(u));
		log_debug("%s %s: %s", r->method, u, r->why);
	}
out:
	curl_slist_free_all(hdrs);
	if (authz)
		explicit_bzero(authz, strlen(authz));
	curl_easy_cleanup(h);
	return err;
}

/* Resolve `loc` against `base` into a new heap URL. */
static char *url_resolve(const char *base, const char *loc)
{
	CURLU *u = curl_url();
	char *out = NULL, *res = NULL;
	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, loc, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
		res = strdup(out);
		curl_free(out);
	}
	curl_url_cleanup(u);
	return res;
}

/* host[:port] part of a URL, lower-cased, into out. */
static void url_host(const char *url, char *out, size_t outlen)
{
	CURLU *u = curl_url();
	char *h = NULL, *p = NULL;
	out[0] = 0;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_PORT, &p, 0);
		snprintf(out, outlen, "%s%s%s", h, p ? ":" : "", p ? p : "");
		for (char *q = out; *q; q++)
			*q = (char)tolower((unsigned char)*q);
	}
	curl_free(h);
	curl_free(p);
	curl_url_cleanup(u);
}

static void backoff_sleep(struct reg_client *c, struct reg_req *r, unsigned attempt)
{
	uint64_t ms;
	if (r->retry_after_s >= 0) {
		ms = (uint64_t)MIN(r->retry_after_s, 3600L) * 1000;
	} else {
		uint64_t base = (uint64_t)c->o.retry_base_ms << MIN(attempt, 16u);
		base = MIN(base, 8000ull);
		/* +-50% jitter so that many clients retrying do not synchronise */
		uint64_t j = (uint64_t)(((unsigned)rand() ^ (unsigned)cm_now_ns()) % 1000u);
		ms = base / 2 + base * j / 1000;
	}
	uint64_t now = cm_now_ns();
	if (now + ms * 1000000ull > r->deadline_ns)
		ms = r->deadline_ns > now ? (r->deadline_ns - now) / 1000000ull : 0;
	/* in slices, so a cancelled transfer does not sit out a long Retry-After */
	uint64_t end = now + ms * 1000000ull;
	while ((now = cm_now_ns()) < end && !(r->cancel && atomic_load(r->cancel))) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)MIN(end - now, 100000000ull)};
		nanosleep(&ts, NULL);
	}
}

/*
 * Get a bearer token for (host, scope) from the challenge's realm, with credentials if we
 * have some (basic to the realm, or the OAuth2 refresh-token grant for identity tokens).
 */
static int token_fetch(struct reg_client *c, const char *host, const char *repo_path,
		       const char *realm, const char *service, const char *scope, uint64_t deadline,
		       char **ret)
{
	struct reg_creds creds = {0};
	struct cm_buf body, form;
	_cleanup_free_ char *esc_service = service ? reg_escape(service) : NULL;
	int r;

	cm_buf_init(&body, REG_TOKEN_MAX);
	cm_buf_init(&form, 16384);
	const char *reg_name = strcmp(host, REG_DOCKER_HUB_API) == 0 ? REG_DOCKER_HUB : host;
	r = reg_creds_lookup(c->creds, c->authfile, reg_name, repo_path, &creds);
	if (r < 0)
		goto out;
	bool have_creds = r > 0;

	struct reg_req q;
	reg_req_init(&q, "GET", host, NULL);
	q.no_auth = true;
	q.deadline_ns = deadline;
	q.out = &body;
	/* realm?service=...&scope=a&scope=b */
	r = cm_buf_append_str(&form, "");
	if (service && esc_service)
		r = cm_buf_printf(&form, "service=%s", esc_service);
	const char *s = scope;
	while (r >= 0 && s && *s) {
		size_t n = strcspn(s, " ");
		_cleanup_free_ char *one = strndup(s, n);
		_cleanup_free_ char *esc = one ? reg_escape(one) : NULL;
		if (!esc) {
			r = -ENOMEM;
			break;
		}
		r = cm_buf_printf(&form, "%sscope=%s", form.len ? "&" : "", esc);
		s += n;
		while (*s == ' ')
			s++;
	}
	if (r >= 0 && have_creds && creds.identity_token) {
		_cleanup_free_ char *esc = reg_escape(creds.identity_token);
		r = esc ? cm_buf_printf(
			      &form, "%sgrant_type=refresh_token&client_id=isorun&refresh_token=%s",
			      form.len ? "&" : "", esc)
			: -ENOMEM;
		if (esc)
			explicit_bzero(esc, strlen(esc));
		q.method = "POST";
		q.content_type = "application/x-www-form-urlencoded";
		q.body = form.data;
		q.body_len = form.len;
		q.has_body = true;
		q.path = strdup(realm);
	} else if (r >= 0) {
		q.path = cm_strdupf("%s%s%.*s", realm, strchr(realm, '?') ? "&" : "?",
				    (int)form.len, form.data ? (const char *)form.data : "");
		if (have_creds)
			q.basic = &creds;
	}
	if (r >= 0 && !q.path)
		r = -ENOMEM;
	if (r >= 0)
		r = reg_req_perform(c, &q);
	if (r >= 0 && r != 200) {
		char u[512];
		reg_url_for_log(realm, u, sizeof(u));
		if (r == 401 || r == 403)
			r = cm_log_ret(-EACCES, "token server %s refused %s for %s (HTTP %d)", u,
				       have_creds ? "the credentials" : "anonymous access", host,
				       r);
		else
			r = reg_req_fail(&q, "token request");
	}
	if (r >= 0) {
		struct json_object *o = NULL, *v;
		r = reg_json_parse((const char *)body.data, body.len, REG_TOKEN_MAX, &o);
		if (r == 0 && json_object_is_type(o, json_type_object)) {
			const char *tok = NULL;
			if (json_object_object_get_ex(o, "token", &v) &&
			    json_object_is_type(v, json_type_string) &&
			    json_object_get_string_len(v) > 0)
				tok = json_object_get_string(v);
			else if (json_object_object_get_ex(o, "access_token", &v) &&
				 json_object_is_type(v, json_type_string) &&
				 json_object_get_string_len(v) > 0)
				tok = json_object_get_string(v);
			long expires = 60; /* the token spec's default */
			if (json_object_object_get_ex(o, "expires_in", &v) &&
			    json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
				expires = (long)MIN(json_object_get_int64(v), 86400);
			if (!tok || strchr(tok, '\r') || strchr(tok, '\n')) {
				r = cm_log_ret(
				    -EPROTO, "token server for %s answered without a token", host);
			} else {
				r = token_put(c, host, scope, tok, expires);
				if (r == 0)
					*ret = strdup(tok);
				if (r == 0 && !*ret)
					r = -ENOMEM;
			}
		} else {
			r = cm_log_ret(-EPROTO, "token server for %s answered malformed JSON",
				       host);
		}
		json_object_put(o);
	}
	reg_req_fini(&q);
out:
	if (body.data)
		explicit_bzero(body.data, body.alloc);
	if (form.data)
		explicit_bzero(form.data, form.alloc);
	cm_buf_fini(&body);
	cm_buf_fini(&form);
	reg_creds_fini(&creds);
	return r;
}

/* Repository path of a scope "repository:<path>:<actions>" (first one), for podman's
 * per-repository credentials. */
static char *scope_repo(const char *scope)
{
	if (!scope || !cm_str_has_prefix(scope, "repository:"))
		return NULL;
	const char *p = scope + 11;
	const char *end = p + strcspn(p, " ");
	const char *colon = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == ':')
			colon = q;
	return colon ? strndup(p, (size_t)(colon - p)) : NULL;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static bool str_eq_null(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static int creds_copy(const struct reg_creds *from, struct reg_creds *to)
{
	memset(to, 0, sizeof(*to));
	if ((from->username && !(to->username = strdup(from->username))) ||
	    (from->password && !(to->password = strdup(from->password))) ||
	    (from->identity_token && !(to->identity_token = strdup(from->identity_token)))) {
		reg_creds_fini(to);
		return -ENOMEM;
	}
	return 0;
}

/* Basic credentials for (host, repo), from the host's cache or a lookup (done unlocked:
 * it may run a credential helper). */
static int basic_creds_get(struct reg_client *c, const char *host, const char *repo,
			   struct reg_creds *ret)
{
	int r = 0;
	pthread_mutex_lock(&c->lock);
	struct reg_host *h = host_get_locked(c, host);
	if (h && h->basic_cached && str_eq_null(h->basic_repo, repo)) {
		r = creds_copy(&h->basic_creds, ret);
		pthread_mutex_unlock(&c->lock);
		return r;
	}
	pthread_mutex_unlock(&c->lock);
	const char *rn = strcmp(host, REG_DOCKER_HUB_API) == 0 ? REG_DOCKER_HUB : host;
	r = reg_creds_lookup(c->creds, c->authfile, rn, repo, ret);
	if (r < 0)
		return r;
	struct reg_creds keep;
	if (creds_copy(ret, &keep) < 0)
		return 0; /* not cached, still usable */
	char *rp = repo ? strdup(repo) : NULL;
	pthread_mutex_lock(&c->lock);
	h = host_get_locked(c, host);
	if (h && (!repo || rp)) {
		reg_creds_fini(&h->basic_creds);
		free(h->basic_repo);
		h->basic_creds = keep;
		h->basic_repo = TAKE_PTR(rp);
		h->basic_cached = true;
	} else {
		reg_creds_fini(&keep);
	}
	pthread_mutex_unlock(&c->lock);
	free(rp);
	return 0;
}

void reg_req_init(struct reg_req *r, const char *method, const char *host, const char *scope)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->host = host;
	r->scope = scope;
	r->body_fd = -1;
	r->resp_content_length = -1;
	r->retry_after_s = -1;
	cm_buf_init(&r->errbody, REG_ERRBODY_MAX);
}

void reg_req_fini(struct reg_req *r)
{
	resp_reset(r);
	cm_buf_fini(&r->errbody);
	free(r->path);
	free(r->url);
	r->path = r->url = NULL;
}

int reg_req_perform(struct reg_client *c, struct reg_req *r)
{
	unsigned retries = 0, redirects = 0;
	bool refreshed = false, challenged = false;
	_cleanup_free_ char *redirect_url = NULL;
	_cleanup_free_ char *repo = scope_repo(r->scope);
	/* without a restart hook, an in-memory body is reset to this length per attempt, so
	 * a retried transfer never appends to a half-received one */
	size_t out_base = r->out ? r->out->len : 0;
	int err = 0;

	if (!r->deadline_ns)
		r->deadline_ns = cm_now_ns() + (uint64_t)c->o.timeout_s * 1000000000ull;
	for (unsigned attempt = 0;; attempt++) {
		enum reg_scheme scheme;
		char *bearer = NULL;
		struct reg_creds basic = {0};
		bool use_auth = !r->no_auth && !redirect_url;

		pthread_mutex_lock(&c->lock);
		struct reg_host *h = host_get_locked(c, r->host);
		if (!h) {
			pthread_mutex_unlock(&c->lock);
			return -ENOMEM;
		}
		scheme = h->scheme == REG_SCHEME_UNKNOWN ? REG_SCHEME_HTTPS_NOVERIFY : h->scheme;
		bool want_basic = h->basic;
		_cleanup_free_ char *realm = h->realm ? strdup(h->realm) : NULL;
		_cleanup_free_ char *service = h->service ? strdup(h->service) : NULL;
		pthread_mutex_unlock(&c->lock);

		if (use_auth && want_basic) {
			err = basic_creds_get(c, r->host, repo, &basic);
			if (err < 0)
				return err;
		} else if (use_auth) {
			token_get(c, r->host, r->scope, &bearer);
			if (!bearer && realm) {
				/* We know this registry wants bearer tokens: get one up front
				 * instead of paying a 401 round trip per new scope. */
				err = token_fetch(c, r->host, repo, realm, service, r->scope,
						  r->deadline_ns, &bearer);
				if (err < 0)
					return err;
			}
		}
		if (r->no_auth && r->basic)
			basic = (struct reg_creds){.username = r->basic->username,
						   .password = r->basic->password};

		const char *url = redirect_url;
		_cleanup_free_ char *built = NULL;
		if (!url) {
			if (strstr(r->path, "://"))
				url = r->path;
			else
				url = built =
				    cm_strdupf("%s%s%s", scheme_prefix(scheme), r->host, r->path);
			if (!url) {
				free_secret(bearer);
				return -ENOMEM;
			}
		}
		free(r->url);
		r->url = strdup(url);
		if (r->restart) {
			err = r->restart(r->ud, r, attempt);
			if (err < 0) {
				free_secret(bearer);
				if (!r->no_auth || !r->basic)
					reg_creds_fini(&basic);
				return err;
			}
		}
		if (r->cancel && atomic_load(r->cancel)) {
			free_secret(bearer);
			if (!(r->no_auth && r->basic))
				reg_creds_fini(&basic);
			return -ECANCELED;
		}
		if (r->out && !r->restart)
			r->out->len = out_base;
		/* a foreign redirect target (blob store) is verified even when the registry
		 * itself is an insecure one */
		if (redirect_url && !c->o.tls_no_verify)
			scheme = REG_SCHEME_HTTPS;
		r->progressed = false;
		bool sent_bearer = bearer != NULL;
		bool sent_auth = sent_bearer || (basic.password && !r->no_auth);
		const char *why_before = r->why; /* the earlier attempt's transfer error, if any */
		err = attempt_once(c, r, url, scheme, bearer, basic.password ? &basic : NULL);
		if (!err)
			r->why = NULL; /* answered: a failure now is the answer's (its status) */
		free_secret(bearer);
		if (!(r->no_auth && r->basic))
			reg_creds_fini(&basic);

		/* insecure registry: https (unverified) failed to connect, fall back to http */
		if (err == -EAGAIN && !r->status && !redirect_url && !strstr(r->path, "://")) {
			pthread_mutex_lock(&c->lock);
			h = host_get_locked(c, r->host);
			/* A remembered scheme that no longer connects: probe again. */
			bool reprobe = h && h->scheme_cached;
			if (reprobe) {
				h->scheme_cached = false;
				h->scheme = REG_SCHEME_UNKNOWN;
				scheme_cache_put(c, h->host, REG_SCHEME_UNKNOWN);
			}
			bool fallback = !reprobe && h && h->insecure && h->scheme == REG_SCHEME_UNKNOWN;
			if (fallback) {
				h->scheme = REG_SCHEME_HTTP;
				h->scheme_learned = true;
			}
			/* Another request probing at the same time learned the scheme first: this
			 * one failed for the same reason, so it goes again at once, with it (not
			 * after a retry's backoff). */
			bool learned = !reprobe && !fallback && h && h->insecure &&
				       h->scheme != REG_SCHEME_UNKNOWN && h->scheme != scheme;
			pthread_mutex_unlock(&c->lock);
			if (fallback || reprobe || learned)
				continue;
		} else if (!err && r->status) {
			pthread_mutex_lock(&c->lock);
			h = host_get_locked(c, r->host);
			if (h && h->scheme == REG_SCHEME_UNKNOWN)
				h->scheme = REG_SCHEME_HTTPS_NOVERIFY;
			/* The first answer in the scheme a probe chose: remember it. */
			if (h && h->insecure && !h->scheme_cached && !h->scheme_fixed &&
			    (h->scheme_learned || scheme == REG_SCHEME_HTTPS_NOVERIFY)) {
				scheme_cache_put(c, h->host, h->scheme);
				h->scheme_cached = true;
			}
			pthread_mutex_unlock(&c->lock);
		}
		char u[512];
		reg_url_for_log(url, u, sizeof(u));
		if (err == -EAGAIN || (!err && status_retryable(r->status))) {
			if (retries >= c->o.max_retries || cm_now_ns() >= r->deadline_ns) {
				if (cm_now_ns() >= r->deadline_ns && err)
					return cm_log_ret(
					    -ETIMEDOUT,
					    "%s %s: deadline of %us reached after %u retries (%s)",
					    r->method, u, c->o.timeout_s, retries,
					    r->why ? r->why : "transfer error");
				if (cm_now_ns() >= r->deadline_ns)
					return cm_log_ret(-ETIMEDOUT,
							  "%s %s: deadline of %us reached after %u "
							  "retries (HTTP %ld)",
							  r->method, u, c->o.timeout_s, retries,
							  r->status);
				if (err)
					return cm_log_ret(
					    -EAGAIN,
					    "%s %s: transfer failed %u times (%s), giving up",
					    r->method, u, retries + 1,
					    r->why ? r->why : "transfer error");
				return reg_req_fail(r, "request (retries exhausted)");
			}
			if (r->status)
				log_info("%s %s: HTTP %ld, retrying (%u/%u)", r->method, u,
					 r->status, retries + 1, c->o.max_retries);
			else
				log_info("%s %s: %s, retrying (%u/%u)", r->method, u,
					 r->why ? r->why : "transfer error", retries + 1,
					 c->o.max_retries);
			backoff_sleep(c, r, retries);
			/* An attempt that delivered body bytes before breaking resumes where it
			 * stopped, so it does not use up the retry budget: a long download over a
			 * flaky link completes as long as it keeps progressing (the deadline still
			 * bounds it). */
			retries = r->progressed && r->restart ? 0 : retries + 1;
			continue;
		}
		if (err == -ETIMEDOUT && retries && why_before)
			return cm_log_ret(-ETIMEDOUT,
					  "%s %s: deadline of %us reached after %u retries (%s)",
					  r->method, u, c->o.timeout_s, retries, why_before);
		if (err == -ETIMEDOUT)
			return cm_log_ret(-ETIMEDOUT, "%s %s: deadline of %us reached", r->method,
					  u, c->o.timeout_s);
		if (err)
			return err;

		if ((r->status == 401 || r->status == 403) && use_auth) {
			/* The first challenge to a request sent without credentials is the normal
			 * start of authentication; a refusal of credentials we sent is answered by
			 * exactly one refresh. Either happens once per call: no loops. */
			bool *once = sent_auth ? &refreshed : &challenged;
			if (*once) {
				const char *scope = r->scope ? r->scope : "registry access";
				return cm_log_ret(
				    -EACCES,
				    "%s %s: HTTP %ld after authenticating (%s): check the "
				    "credentials and that the repository exists",
				    r->method, u, r->status, scope);
			}
			*once = true;
			token_drop(c, r->host, r->scope);
			const struct reg_challenge *bch =
			    reg_challenges_find(&r->challenges, "bearer");
			const struct reg_challenge *basic_ch =
			    reg_challenges_find(&r->challenges, "basic");
			const char *rl = bch ? reg_challenge_param(bch, "realm") : NULL;
			const char *sv = bch ? reg_challenge_param(bch, "service") : NULL;
			if (!rl && sent_bearer && realm) {
				/* a 403 (or a bare 401) to a token we sent: refresh at the realm we
				 * already know */
				rl = realm;
				sv = service;
			}
			if (rl) {
				if (!cm_str_has_prefix(rl, "https://") &&
				    !cm_str_has_prefix(rl, "http://"))
					return cm_log_ret(
					    -EPROTO, "%s: bearer realm is not an http(s) URL", u);
				if (rl != realm) {
					pthread_mutex_lock(&c->lock);
					h = host_get_locked(c, r->host);
					if (h) {
						free(h->realm);
						free(h->service);
						h->realm = strdup(rl);
						h->service = sv ? strdup(sv) : NULL;
						h->basic = false;
					}
					pthread_mutex_unlock(&c->lock);
				}
				const char *sc = r->scope ? r->scope
						 : bch	  ? reg_challenge_param(bch, "scope")
							  : NULL;
				char *tok = NULL;
				err =
				    token_fetch(c, r->host, repo, rl, sv, sc, r->deadline_ns, &tok);
				free_secret(tok);
				if (err < 0)
					return err;
				continue;
			}
			if ((basic_ch || r->status == 401) && sent_auth && !sent_bearer)
				/* basic credentials do not change by asking again */
				return cm_log_ret(-EACCES,
						  "%s %s: HTTP %ld: the registry refused the "
						  "credentials",
						  r->method, u, r->status);
			if (basic_ch || r->status == 401) {
				pthread_mutex_lock(&c->lock);
				h = host_get_locked(c, r->host);
				if (h)
					h->basic = true;
				pthread_mutex_unlock(&c->lock);
				if (!basic_ch && r->status == 401)
					return cm_log_ret(
					    -EACCES, "%s %s: HTTP 401 without a usable challenge",
					    r->method, u);
				continue;
			}
			/* 403 without a challenge to a request we did not authenticate: refused */
			return reg_req_fail(r, "request");
		}

		if (r->status == 301 || r->status == 302 || r->status == 303 || r->status == 307 ||
		    r->status == 308) {
			if (!r->resp_location || ++redirects > REG_REDIRECTS_MAX)
				return cm_log_ret(-EPROTO, "%s %s: bad or too many redirects",
						  r->method, u);
			char *next = url_resolve(url, r->resp_location);
			if (!next)
				return cm_log_ret(-EPROTO, "%s %s: unusable redirect", r->method,
						  u);
			char h1[300], h2[300];
			url_host(next, h2, sizeof(h2));
			snprintf(h1, sizeof(h1), "%s", r->host);
			for (char *q = h1; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			if (!strcmp(h1, h2) && !r->no_auth) {
				/* same registry host: keep authenticating, follow as a path */
				free(redirect_url);
				redirect_url = NULL;
				free(r->path);
				r->path = next;
			} else {
				/* storage backend (S3, CDN): the URL carries its own signature, and
				 * our Authorization must not leak to it */
				free(redirect_url);
				redirect_url = next;
			}
			if (r->status == 303)
				r->method = "GET";
			continue;
		}
		return (int)r->status;
	}
}

int reg_req_fail(struct reg_req *r, const char *what)
{
	char u[512], code[128] = "", msg[256] = "";
	reg_url_for_log(r->url ? r->url : r->path ? r->path : "", u, sizeof(u));
	if (r->errbody.len) {
		struct json_object *o = NULL, *errs, *e, *v;
		if (reg_json_parse((const char *)r->errbody.data, r->errbody.len, REG_ERRBODY_MAX,
				   &o) == 0 &&
		    json_object_object_get_ex(o, "errors", &errs) &&
		    json_object_is_type(errs, json_type_array) &&
		    (e = json_object_array_get_idx(errs, 0))) {
			if (json_object_object_get_ex(e, "code", &v) &&
			    json_object_is_type(v, json_type_string))
				snprintf(code, sizeof(code), " %s", json_object_get_string(v));
			if (json_object_object_get_ex(e, "message", &v) &&
			    json_object_is_type(v, json_type_string))
				snprintf(msg, sizeof(msg), ": %s", json_object_get_string(v));
		}
		json_object_put(o);
	}
	int err = reg_err_from_http(r->status);
	if (err == 0)
		err = -EPROTO;
	return cm_log_ret(err, "%s failed: %s %s: HTTP %ld%s%s", what, r->method, u, r->status,
			  code, msg);
}
