/* `isorun cache stats|gc|prune`: argument parsing and output over fs/cache.h. */
#include "verbs.h"

#include "fs/cache.h"

#include "indexer/store.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CACHE_USAGE                                                                                \
	"  stats [--json]           size, cap, and each image's resident share\n"                  \
	"  gc [--cache-max SIZE]    evict the least recently used chunks down to the cap (and\n" \
	"                           to what leaves the filesystem cache_min_free free)\n"        \
	"  prune --image REF        remove the chunks only that image uses\n"

static void usage(void)
{
	fprintf(stderr, "usage: isorun cache stats|gc|prune [...]\n" CACHE_USAGE);
}

static int stats(struct idx_store *s, bool json)
{
	struct fs_cache_stats st;
	int r = fs_cache_stats_get(s, &st);
	if (r < 0)
		return r;
	if (json) {
		json_object *j = json_object_new_object(), *a = json_object_new_array();
		json_object_object_add(j, "bytes", json_object_new_uint64(st.bytes));
		json_object_object_add(j, "chunks", json_object_new_uint64(st.chunks));
		json_object_object_add(j, "max_bytes", json_object_new_uint64(st.max_bytes));
		for (size_t i = 0; i < st.n_images; i++) {
			const struct fs_cache_image *im = &st.images[i];
			json_object *o = json_object_new_object();
			json_object_object_add(o, "ref", json_object_new_string(im->ref));
			json_object_object_add(o, "index",
					       json_object_new_string(im->index_digest));
			json_object_object_add(o, "chunks", json_object_new_uint64(im->chunks));
			json_object_object_add(o, "resident_chunks",
					       json_object_new_uint64(im->resident_chunks));
			json_object_object_add(o, "bytes", json_object_new_uint64(im->bytes));
			json_object_object_add(o, "resident_bytes",
					       json_object_new_uint64(im->resident_bytes));
			json_object_object_add(o, "mounted", json_object_new_boolean(im->mounted));
			json_object_array_add(a, o);
		}
		json_object_object_add(j, "images", a);
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY));
		json_object_put(j);
	} else {
		char b[32], m[32];
		cm_format_bytes(st.bytes, b, sizeof(b));
		cm_format_bytes(st.max_bytes, m, sizeof(m));
		printf("store     %s\nsize      %s of %s\nchunks    %llu\n\n", idx_store_root(s), b,
		       m, (unsigned long long)st.chunks);
		printf("%-50s %8s %10s %s\n", "IMAGE", "LOCAL", "ON DISK", "");
		for (size_t i = 0; i < st.n_images; i++) {
			const struct fs_cache_image *im = &st.images[i];
			cm_format_bytes(im->resident_bytes, b, sizeof(b));
			printf("%-50s %7.1f%% %10s %s\n", im->ref,
			       im->chunks ? 100.0 * (double)im->resident_chunks / (double)im->chunks
					  : 100.0,
			       b, im->mounted ? "mounted" : "");
		}
	}
	fs_cache_stats_fini(&st);
	return 0;
}

static int cmd_cache(int argc, char **argv)
{
	/* The arguments first: a usage error leaves no store behind. */
	const char *sub = argc > 1 ? argv[1] : "";
	bool ok = false, json = false, have_max = false;
	uint64_t max = 0;
	if (!strcmp(sub, "stats"))
		ok = argc == 2 || (argc == 3 && (json = !strcmp(argv[2], "--json")));
	else if (!strcmp(sub, "gc"))
		ok = argc == 2 || (argc == 4 && !strcmp(argv[2], "--cache-max") &&
				   (have_max = cm_parse_size(argv[3], &max) == 0));
	else if (!strcmp(sub, "prune"))
		ok = argc == 4 && !strcmp(argv[2], "--image");
	if (!ok) {
		usage();
		return ISORUN_EXIT_USAGE;
	}
	_cleanup_(idx_store_freep) struct idx_store *s = NULL;
	if (idx_store_open(isorun_root(), &s) < 0 || fs_cache_init(s) < 0)
		return ISORUN_EXIT_ERROR;
	int r;
	unsigned said = cm_log_errors();
	struct fs_cache_gc_result res = {0};
	if (!strcmp(sub, "stats")) {
		r = stats(s, json);
	} else if (!strcmp(sub, "gc")) {
		uint64_t min_free = 0, bytes = 0, short_by = 0;
		if (fs_cache_config(idx_store_root(s), have_max ? NULL : &max, &min_free) < 0)
			return ISORUN_EXIT_ERROR;
		/* the cap, lowered while the filesystem has less free than the cache leaves */
		if (fs_cache_size(s, &bytes, NULL) == 0)
			max = fs_cache_evict_cap(idx_store_root(s), bytes, max, min_free, &short_by);
		if (short_by) {
			char sb[32];
			cm_format_bytes(short_by, sb, sizeof(sb));
			printf("the store's filesystem is %s short of the free space the cache "
			       "leaves (cache_min_free)\n",
			       sb);
		}
		r = fs_cache_evict(s, max, true, &res);
		if (r == 0 || r == -ENOSPC)
			printf("evicted %llu chunks (%llu bytes); store now %llu bytes in %llu "
			       "chunks\n",
			       (unsigned long long)res.evicted_chunks,
			       (unsigned long long)res.evicted_bytes, (unsigned long long)res.bytes,
			       (unsigned long long)res.chunks);
	} else {
		r = fs_cache_prune_image(s, argv[3], &res);
		if (r == 0)
			printf("removed %llu chunks (%llu bytes)\n",
			       (unsigned long long)res.evicted_chunks,
			       (unsigned long long)res.evicted_bytes);
	}
	if (r < 0) {
		if (cm_log_errors() == said) /* else the cache said what failed */
			fprintf(stderr, "isorun: cache %s: %s\n", sub, strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	return 0;
}
ISORUN_VERB_OPTS("cache", cmd_cache, "stats|gc|prune [...]",
		 "the shared chunk cache: usage, eviction to the cap, per-image removal",
		 CACHE_USAGE);
