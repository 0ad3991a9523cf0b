/*
 * libarchive through dlopen(): see archive_dl.h for why.
 *
 * The sym_ pointers are written once, inside pthread_once, before idx_archive_load() returns
 * 0 to any thread; afterwards they are only read, so they need no lock.
 */
#include "archive_dl.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

#include "common/cleanup.h"
#include "common/log.h"

#define IDX_ARCHIVE_DEFINE(name) typeof(name) *sym_##name;
IDX_ARCHIVE_SYMBOLS(IDX_ARCHIVE_DEFINE)
#undef IDX_ARCHIVE_DEFINE

static const struct {
	const char *name;
	void **ptr;
} symbols[] = {
#define IDX_ARCHIVE_ENTRY(name) {#name, (void **)&sym_##name},
    IDX_ARCHIVE_SYMBOLS(IDX_ARCHIVE_ENTRY)
#undef IDX_ARCHIVE_ENTRY
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_result; /* written once under load_once */

static void load(void)
{
	/* RTLD_NOW: a broken dependency fails here, with a message, not mid-layer. */
	void *dl = dlopen(IDX_ARCHIVE_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		log_error("%s cannot be loaded: %s", IDX_ARCHIVE_SONAME, dlerror());
		load_result = -ELIBACC;
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(symbols); i++) {
		*symbols[i].ptr = dlsym(dl, symbols[i].name);
		if (!*symbols[i].ptr) {
			log_error("%s cannot be used: it lacks %s", IDX_ARCHIVE_SONAME,
				  symbols[i].name);
			for (size_t j = 0; j < ARRAY_SIZE(symbols); j++)
				*symbols[j].ptr = NULL;
			/* The handle stays open: other code may have loaded the library too. */
			load_result = -ELIBBAD;
			return;
		}
	}
}

int idx_archive_load(void)
{
	pthread_once(&load_once, load);
	return load_result;
}
