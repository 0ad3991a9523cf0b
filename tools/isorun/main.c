/* isorun: the command-line front end. Argument parsing and output only. */
#include "verbs.h"

#include "common/log.h"
#include "common/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct isorun_verb __start_isorun_verbs[];
extern const struct isorun_verb __stop_isorun_verbs[];

static const char *root_opt;

const char *isorun_root(void)
{
	return root_opt ? root_opt : cm_root_default();
}

static int cmp_verb(const void *a, const void *b)
{
	return strcmp((*(const struct isorun_verb *const *)a)->name,
		      (*(const struct isorun_verb *const *)b)->name);
}

static void usage(FILE *f)
{
	size_t n = (size_t)(__stop_isorun_verbs - __start_isorun_verbs);
	const struct isorun_verb *v[256];
	if (n > 256)
		n = 256;
	for (size_t i = 0; i < n; i++)
		v[i] = &__start_isorun_verbs[i];
	qsort(v, n, sizeof(v[0]), cmp_verb);
	fprintf(f, "usage: isorun [--root DIR] [--debug] VERB [ARGS...]\n\nverbs:\n");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "  %-8s %-34s %s\n", v[i]->name, v[i]->args, v[i]->help);
	fprintf(f, "\nState lives under --root, $ISORUN_ROOT or /var/lib/isorun.\n");
}

int main(int argc, char **argv)
{
	cm_log_set_ident("isorun");
	/* A closed stdout or stderr (`isorun run ... | head -1`) must not kill us between
	 * creating a sandbox and removing it: writes fail with EPIPE instead, and `run`/`exec`
	 * pass SIGPIPE on to the command. (Commands in sandboxes get default dispositions from
	 * the agent.) */
	signal(SIGPIPE, SIG_IGN);
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--root") && i + 1 < argc) {
			root_opt = argv[++i];
		} else if (!strncmp(argv[i], "--root=", 7)) {
			root_opt = argv[i] + 7;
		} else if (!strcmp(argv[i], "--debug")) {
			cm_log_set_level(CM_LOG_DEBUG);
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "isorun: unknown option %s\n", argv[i]);
			usage(stderr);
			return ISORUN_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return ISORUN_EXIT_USAGE;
	}
	for (const struct isorun_verb *v = __start_isorun_verbs; v < __stop_isorun_verbs; v++)
		if (!strcmp(v->name, argv[i])) {
			log_debug("%s: start", v->name);
			return v->fn(argc - i, argv + i);
		}
	fprintf(stderr, "isorun: unknown verb '%s' (see isorun --help)\n", argv[i]);
	return ISORUN_EXIT_USAGE;
}
