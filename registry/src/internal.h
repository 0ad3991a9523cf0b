/*
 * Private core of the registry client: the client struct, the request engine (auth,
 * retries, redirects) and helpers shared by client.c, stream.c, push.c, pull.c.
 */
#pragma once

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "registry/auth.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/ref.h"

#define REG_TOKEN_MAX	  (64u << 10) /* token endpoint answer */
#define REG_ERRBODY_MAX	  (64u << 10) /* error bodies kept for the message */
#define REG_HEADER_MAX	  8192	      /* one response header line */
#define REG_REDIRECTS_MAX 5

struct reg_token {
	char *host;
	char *scope;
	char *value; /* secret */
	uint64_t expires_ns;
	struct reg_token *next;
};

enum reg_scheme {
	REG_SCHEME_UNKNOWN = 0,
	REG_SCHEME_HTTPS,
	REG_SCHEME_HTTPS_NOVERIFY,
	REG_SCHEME_HTTP,
};

struct reg_host {
	char *host;
	enum reg_scheme scheme;
	bool insecure; /* listed in insecure_registries */
	bool scheme_cached;  /* scheme is in o.scheme_cache: probe again if it fails */
	bool scheme_learned; /* a probe fell back to plain HTTP in this process */
	bool scheme_fixed;   /* listed as http://HOST or https://HOST: never probed */
	char *realm;   /* bearer realm and service learned from a challenge */
	char *service;
	bool basic; /* the registry asked for basic auth */
	/* basic credentials looked up for `basic_repo` (auth files can be per repository),
	 * kept so a pull does not re-read files or re-run a credential helper per request */
	bool basic_cached;
	char *basic_repo;
	struct reg_creds basic_creds;
	struct reg_host *next;
};

struct reg_client {
	struct reg_options o; /* strings below are our copies */
	char *creds;
	char *authfile;
	char **insecure;
	char *scheme_cache;
	char *user_agent;
	struct reg_platform platform;

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST]; /* one per curl_lock_data */

	/* `lock` guards `tokens` and `hosts` (the lists and every field of their nodes).
	 * Never held across network I/O: token fetches run unlocked and insert after. */
	pthread_mutex_t lock;
	struct reg_token *tokens;
	struct reg_host *hosts;
};

/* Body sink: called with response bytes of a 2xx answer. Returns 0 to go on, -errno to
 * abort the transfer (the request fails with that code). */
typedef int (*reg_sink_fn)(void *ud, const uint8_t *data, size_t n);
/* Called once per attempt when the 2xx response headers are complete, before any body
 * byte; may inspect req->status/req->content_range etc. -errno aborts. */
struct reg_req;
typedef int (*reg_start_fn)(void *ud, struct reg_req *req);
/* Called before every attempt (including the first): reset sinks, set a resume Range. */
typedef int (*reg_restart_fn)(void *ud, struct reg_req *req, unsigned attempt);

struct reg_req {
	/* in */
	const char *method;
	const char *host;  /* registry host[:port] (auth and scheme) */
	char *path;	   /* "/v2/..." with query, or an absolute URL (upload Location) */
	const char *scope; /* token scope(s), space-separated; NULL for none */
	const char *accept;
	const char *content_type;
	char range[1400];	       /* "bytes=..." or empty */
	char content_range[64];	       /* request Content-Range (chunked upload) or empty */
	bool no_auth;		       /* token endpoint and foreign redirects */
	const struct reg_creds *basic; /* basic credentials for this request (token endpoint) */
	const void *body;	       /* upload from memory, or */
	int body_fd;		       /* from fd with pread (-1: none) */
	uint64_t body_off, body_len;
	bool has_body;
	uint64_t deadline_ns;
	reg_sink_fn sink;
	reg_start_fn start;
	reg_restart_fn restart;
	void *ud;
	struct cm_buf *out;	   /* when no sink: 2xx body appended here (its cap applies) */
	const atomic_bool *cancel; /* set by another thread: stop with -ECANCELED within ~0.1 s */

	/* out (valid after reg_req_perform; reset per attempt) */
	long status;
	char *resp_content_type;
	char *resp_digest;
	char *resp_location;
	char *resp_content_range;
	char *resp_oci_subject;
	char *resp_filters;
	int64_t resp_content_length; /* -1 unknown */
	long retry_after_s;	     /* -1 none */
	struct reg_challenges challenges;
	struct cm_buf errbody;
	/* private */
	bool started;
	bool progressed; /* this attempt delivered 2xx body bytes */
	const char *why; /* the last failed attempt's transfer error (a static string) */
	int sink_err;
	char *url; /* last URL used */
};

void reg_req_init(struct reg_req *r, const char *method, const char *host, const char *scope);
void reg_req_fini(struct reg_req *r);
/*
 * Run the request to completion: auth (token/basic, one refresh on 401/403), manual
 * redirects (Authorization never sent to another host), retries with backoff for
 * transient failures, the deadline. Returns the final HTTP status (>= 200) for any answer
 * the caller must interpret (2xx, 404, ...), or -errno: -EACCES (401/403 after refresh),
 * -EAGAIN (retries exhausted), -ETIMEDOUT, a sink's error, -ENOMEM. Non-2xx answers are
 * NOT logged here except auth and retry exhaustion; callers use reg_req_fail.
 */
int reg_req_perform(struct reg_client *c, struct reg_req *r);
/* Log a failed answer once with context and return its -errno (reg_err_from_http). */
int reg_req_fail(struct reg_req *r, const char *what);

/* "repository:<path>:<actions>" */
char *reg_scope(const struct reg_ref *ref, const char *actions);
/* URL-escape `s` (curl_easy_escape) into a heap string. */
char *reg_escape(const char *s);
/* "/v2/<path>/<kind>/<ref>" */
char *reg_api_path(const struct reg_ref *ref, const char *kind, const char *what);
/* The reference's tag, digest, or "latest". */
const char *reg_ref_target(const struct reg_ref *ref);
/* A URL with the query string removed (storage URLs carry signatures), for logs. */
void reg_url_for_log(const char *url, char *out, size_t outlen);

/*
 * Verified, resumable blob GET: bytes go to `accept` in order (each byte once, even across
 * resumed attempts); the digest (and `size` unless UINT64_MAX) is checked at the end:
 * -EBADMSG on mismatch (the accepted bytes must then be discarded). `accept` returning
 * -errno aborts with that code.
 */
int reg_blob_download(struct reg_client *c, const struct reg_ref *repo, const char *digest,
		      uint64_t size, int (*accept)(void *ud, const uint8_t *data, size_t n),
		      void *ud, const atomic_bool *cancel);

/* reg_client_put_manifest, also telling whether the registry answered OCI-Subject (it has
 * the referrers API and indexed the subject itself). */
int reg_client_put_manifest_ex(struct reg_client *c, const struct reg_ref *ref,
			       const char *media_type, const void *body, size_t len,
			       char ret_digest[CM_DIGEST_STR_SIZE], bool *ret_subject_ack);

/* reg_client_get_manifest; with quiet_404 a 404 is -ENOENT without a log line. */
int reg_get_manifest_ex(struct reg_client *c, const struct reg_ref *ref, struct cm_buf *body,
			char **ret_media_type, char ret_digest[CM_DIGEST_STR_SIZE], bool quiet_404);

/* reg_client_resolve that also hands over the manifest's exact bytes and media type
 * (ret_body: an uninitialised cm_buf the caller then _fini's; ret_mt: caller frees). */
int reg_resolve_ex(struct reg_client *c, const struct reg_ref *ref,
		   const struct reg_platform *platform, struct reg_manifest **ret,
		   char ret_digest[CM_DIGEST_STR_SIZE], struct cm_buf *ret_body, char **ret_mt);
