/*
 * libcurl, loaded with dlopen() on first use instead of linked.
 *
 * Why: libcurl's dependencies (gnutls, krb5, ldap, nghttp2, ssh2, psl, idn2, ...) are about
 * 20 shared objects whose loading, relocation and constructors cost milliseconds at every
 * start of every program linking the registry module, while most `isorun` verbs (exec, ps,
 * rm, run --rootfs) never talk to a registry. This is systemd's pattern for optional
 * libraries (src/shared/dlfcn-util.c).
 *
 * Each function the module calls has a pointer `sym_<name>` declared with the type of the
 * real prototype from <curl/curl.h> (typeof), so calls stay type-checked; the macros below
 * send the usual names to those pointers, so call sites keep reading `curl_easy_init()`.
 * curl's GCC setopt type checks (typecheck-gcc.h macros) do not apply through the pointers:
 * the option/argument pairing of the variadic setopt calls is no longer checked at compile
 * time.
 *
 * Include this header after <curl/curl.h> (internal.h), only in files that call libcurl, and
 * call reg_curl_load() before the first call (reg_client_new() does): until then every
 * sym_ pointer is NULL.
 */
#pragma once

#include <curl/curl.h>

/* The libcurl ABI the pointers are resolved from. */
#define REG_CURL_SONAME "libcurl.so.4"

/* Every libcurl function the registry module calls (X-macro: X(name)). */
#define REG_CURL_SYMBOLS(X)                                                                        \
	X(curl_easy_cleanup)                                                                       \
	X(curl_easy_escape)                                                                        \
	X(curl_easy_init)                                                                          \
	X(curl_easy_perform)                                                                       \
	X(curl_easy_setopt)                                                                        \
	X(curl_easy_strerror)                                                                      \
	X(curl_free)                                                                               \
	X(curl_getdate)                                                                            \
	X(curl_global_init)                                                                        \
	X(curl_share_cleanup)                                                                      \
	X(curl_share_init)                                                                         \
	X(curl_share_setopt)                                                                       \
	X(curl_slist_append)                                                                       \
	X(curl_slist_free_all)                                                                     \
	X(curl_url)                                                                                \
	X(curl_url_cleanup)                                                                        \
	X(curl_url_get)                                                                            \
	X(curl_url_set)

#define REG_CURL_DECLARE(name) extern typeof(name) *sym_##name;
REG_CURL_SYMBOLS(REG_CURL_DECLARE)
#undef REG_CURL_DECLARE

/*
 * Load libcurl.so.4, resolve every symbol above and run curl_global_init(), once per process
 * (pthread_once); later calls return the first call's result without logging again.
 *
 * Returns 0 when the sym_ pointers are set; -ELIBACC when the library cannot be loaded
 * (logged: "libcurl.so.4 cannot be loaded: <dlerror>"), -ELIBBAD when it lacks a symbol
 * (logged with the name), or the -errno of a failed curl_global_init() (-ENOMEM, ...).
 * The library stays loaded for the life of the process. Thread-safe.
 */
int reg_curl_load(void);

/* Call sites keep libcurl's names. curl's own macros for these names are replaced. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_share_setopt
#define curl_easy_cleanup(...)	 sym_curl_easy_cleanup(__VA_ARGS__)
#define curl_easy_escape(...)	 sym_curl_easy_escape(__VA_ARGS__)
#define curl_easy_init(...)	 sym_curl_easy_init(__VA_ARGS__)
#define curl_easy_perform(...)	 sym_curl_easy_perform(__VA_ARGS__)
#define curl_easy_setopt(...)	 sym_curl_easy_setopt(__VA_ARGS__)
#define curl_easy_strerror(...)	 sym_curl_easy_strerror(__VA_ARGS__)
#define curl_free(...)		 sym_curl_free(__VA_ARGS__)
#define curl_getdate(...)	 sym_curl_getdate(__VA_ARGS__)
#define curl_global_init(...)	 sym_curl_global_init(__VA_ARGS__)
#define curl_share_cleanup(...)	 sym_curl_share_cleanup(__VA_ARGS__)
#define curl_share_init(...)	 sym_curl_share_init(__VA_ARGS__)
#define curl_share_setopt(...)	 sym_curl_share_setopt(__VA_ARGS__)
#define curl_slist_append(...)	 sym_curl_slist_append(__VA_ARGS__)
#define curl_slist_free_all(...) sym_curl_slist_free_all(__VA_ARGS__)
#define curl_url(...)		 sym_curl_url(__VA_ARGS__)
#define curl_url_cleanup(...)	 sym_curl_url_cleanup(__VA_ARGS__)
#define curl_url_get(...)	 sym_curl_url_get(__VA_ARGS__)
#define curl_url_set(...)	 sym_curl_url_set(__VA_ARGS__)
