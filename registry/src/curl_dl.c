/*
 * libcurl through dlopen(): see curl_dl.h for why.
 *
 * The sym_ pointers are written once, inside pthread_once, before reg_curl_load() returns 0
 * to any thread; afterwards they are only read, so they need no lock.
 */
#include "curl_dl.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "registry/client.h"

#define REG_CURL_DEFINE(name) typeof(name) *sym_##name;
REG_CURL_SYMBOLS(REG_CURL_DEFINE)
#undef REG_CURL_DEFINE

static const struct {
	const char *name;
	void **ptr;
} symbols[] = {
#define REG_CURL_ENTRY(name) {#name, (void **)&sym_##name},
    REG_CURL_SYMBOLS(REG_CURL_ENTRY)
#undef REG_CURL_ENTRY
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_result; /* written once under load_once */

static void load(void)
{
	/* RTLD_NOW: a broken dependency fails here, with a message, not mid-transfer. */
	void *dl = dlopen(REG_CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		log_error("%s cannot be loaded: %s", REG_CURL_SONAME, dlerror());
		load_result = -ELIBACC;
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(symbols); i++) {
		*symbols[i].ptr = dlsym(dl, symbols[i].name);
		if (!*symbols[i].ptr) {
			log_error("%s cannot be used: it lacks %s", REG_CURL_SONAME,
				  symbols[i].name);
			for (size_t j = 0; j < ARRAY_SIZE(symbols); j++)
				*symbols[j].ptr = NULL;
			/* The handle stays open: other code may have loaded the library too. */
			load_result = -ELIBBAD;
			return;
		}
	}
	CURLcode cc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (cc != CURLE_OK) {
		log_error("%s: curl_global_init failed: %s", REG_CURL_SONAME,
			  curl_easy_strerror(cc));
		load_result = reg_err_from_curl(cc) < 0 ? reg_err_from_curl(cc) : -EIO;
	}
}

int reg_curl_load(void)
{
	pthread_once(&load_once, load);
	return load_result;
}
