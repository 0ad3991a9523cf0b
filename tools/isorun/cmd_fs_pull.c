/* `isorun pull REF` and `isorun images`: argument parsing and output over fs/image.h. */
#include "verbs.h"

#include "fs/cache.h"
#include "fs/image.h"

#include "indexer/store.h"
#include "registry/client.h"
#include "registry/ref.h"

#include "common/cleanup.h"
#include "common/util.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

DEFINE_CLEANUP_FUNC(struct reg_ref, reg_ref_free)

static int cmd_pull(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"platform", required_argument, NULL, 'p'}, {"authfile", required_argument, NULL, 'a'},
	    {"timeout", required_argument, NULL, 't'},	{"refresh", no_argument, NULL, 'r'},
	    {"quiet", no_argument, NULL, 'q'},		{"allow-floating-tag", no_argument, NULL, 'F'},
	    {},
	};
	bool allow_floating = false;
	struct fs_pull_opts o = {.progress = isatty(STDERR_FILENO)};
	bool quiet = false;
	int c;
	while ((c = getopt_long(argc, argv, "+q", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.platform = optarg;
			break;
		case 'a':
			o.authfile = optarg;
			break;
		case 't':
			if (cm_parse_uint(optarg, 1, 3600, &o.timeout_s) < 0)
				return isorun_usage_error("pull", ISORUN_EXIT_USAGE,
							  "bad --timeout %s (seconds, 1 to 3600)",
							  optarg);
			break;
		case 'r':
			o.refresh = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'F':
			allow_floating = true;
			break;
		default: /* getopt said what */
			fprintf(stderr, "(see isorun pull --help)\n");
			return ISORUN_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc)
		return isorun_usage_error("pull", ISORUN_EXIT_USAGE, "wants one REF");
	/* Pinning policy: floating tags only when asked (local layouts are the caller's). */
	if (!cm_str_has_prefix(argv[optind], "oci:")) {
		_cleanup_(reg_ref_freep) struct reg_ref *ref = NULL;
		const char *why = NULL;
		if (reg_ref_parse(argv[optind], &ref, &why) < 0) {
			fprintf(stderr, "isorun: '%s' is not an image reference: %s\n", argv[optind],
				why ? why : "invalid");
			return ISORUN_EXIT_USAGE;
		}
		if (reg_ref_check_policy(ref, allow_floating) < 0)
			return ISORUN_EXIT_ERROR;
	}
	_cleanup_(idx_store_freep) struct idx_store *s = NULL;
	if (idx_store_open(isorun_root(), &s) < 0)
		return ISORUN_EXIT_ERROR;
	struct fs_pull_result res;
	int r = fs_image_pull(s, argv[optind], &o, &res);
	if (r < 0) {
		fprintf(stderr, "isorun: pull %s failed: %s\n", argv[optind],
			cm_str_has_prefix(argv[optind], "oci:") ? strerror(-r) : reg_strerror(r));
		return ISORUN_EXIT_ERROR;
	}
	if (!quiet)
		printf("%s\nmanifest %s\nindex    %s\nsource   %s\n", res.ref, res.manifest_digest,
		       res.index_digest,
		       res.cached   ? "already in the store"
		       : res.remote ? "index artifact (chunks fetched on demand)"
				    : "indexed locally");
	return 0;
}
ISORUN_VERB_OPTS(
    "pull", cmd_pull, "[options] REF",
    "get an image's index into the store (oci:PATH[:TAG] or a registry reference)",
    "  --platform OS/ARCH      the platform to pick from a multi-platform image\n"
    "  --authfile FILE         registry credentials (docker config format)\n"
    "  --timeout S             deadline of each registry operation (60)\n"
    "  --refresh               look for a newer index even when the store has one\n"
    "  --allow-floating-tag    accept latest, stable, lts or no tag\n"
    "  -q, --quiet             print nothing\n"
    "\nThe index is the artifact pushed next to the image (isorun-index build --push),\n"
    "else it is built here from the image's layers.\n");

static int cmd_images(int argc, char **argv)
{
	bool quiet = argc > 1 && !strcmp(argv[1], "-q");
	if (argc > 1 + quiet)
		return isorun_usage_error("images", ISORUN_EXIT_USAGE, "unexpected %s",
					  argv[1 + quiet]);
	_cleanup_(idx_store_freep) struct idx_store *s = NULL;
	if (idx_store_open(isorun_root(), &s) < 0 || fs_cache_init(s) < 0)
		return ISORUN_EXIT_ERROR;
	struct fs_cache_stats st;
	int r = fs_cache_stats_get(s, &st);
	if (r < 0) {
		fprintf(stderr, "isorun: images: %s\n", strerror(-r));
		return ISORUN_EXIT_ERROR;
	}
	if (!quiet)
		printf("%-50s %-19s %-19s %10s %10s %7s\n", "REFERENCE", "MANIFEST", "INDEX",
		       "PACKED", "ON DISK", "LOCAL");
	for (size_t i = 0; i < st.n_images; i++) {
		const struct fs_cache_image *im = &st.images[i];
		if (quiet) {
			printf("%s\n", im->ref);
			continue;
		}
		char sz[32], rs[32];
		cm_format_bytes(im->bytes, sz, sizeof(sz));
		cm_format_bytes(im->resident_bytes, rs, sizeof(rs));
		printf("%-50s %.19s %.19s %10s %10s %6.1f%%%s\n", im->ref, im->manifest_digest,
		       im->index_digest, sz, rs,
		       im->chunks ? 100.0 * (double)im->resident_chunks / (double)im->chunks
				  : 100.0,
		       im->mounted ? " mounted" : "");
	}
	fs_cache_stats_fini(&st);
	return 0;
}
ISORUN_VERB_OPTS("images", cmd_images, "[-q]", "list the images in the store, with resident bytes",
		 "  -q                 references only\n"
		 "\nPACKED: the image's compressed size in its index (what fetching all of it\n"
		 "downloads); ON DISK: what the store holds of it (chunks fetched by a mount are\n"
		 "kept uncompressed unless --chunk-format=zstd); LOCAL: the share of its chunks\n"
		 "in the store.\n");
