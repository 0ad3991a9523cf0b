/* isorun: the command-line front end. Argument parsing and output only. */
#include "verbs.h"

#include "common/log.h"
#include "common/util.h"
#include "runner/runner.h"

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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
		fprintf(f, "  %-9s %-34s %s\n", v[i]->name, v[i]->args, v[i]->help);
	fprintf(f, "\nState lives under --root, $ISORUN_ROOT or /var/lib/isorun.\n"
		   "isorun VERB --help (or isorun help VERB) shows a verb's options.\n");
}

static const struct isorun_verb *find_verb(const char *name)
{
	for (const struct isorun_verb *v = __start_isorun_verbs; v < __stop_isorun_verbs; v++)
		if (!strcmp(v->name, name))
			return v;
	return NULL;
}

static void verb_usage(FILE *f, const struct isorun_verb *v)
{
	fprintf(f, "usage: isorun %s%s%s\n\n%s\n", v->name, *v->args ? " " : "", v->args, v->help);
	if (v->options)
		fprintf(f, "\noptions:\n%s", v->options);
}

static bool is_help(const char *a)
{
	return !strcmp(a, "-h") || !strcmp(a, "--help");
}

int isorun_env_keep_warm(void)
{
	static int value = -2; /* not read yet */
	if (value != -2)
		return value;
	const char *kw = getenv("ISORUN_KEEP_WARM");
	unsigned s;
	value = -1;
	if (kw && cm_parse_uint(kw, 0, RUN_KEEP_WARM_MAX, &s) == 0)
		value = (int)s;
	else if (kw)
		log_warn("ignoring ISORUN_KEEP_WARM=%s (seconds, 0 to %u)", kw, RUN_KEEP_WARM_MAX);
	return value;
}

int isorun_usage_error(const char *verb, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "isorun %s: ", verb);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see isorun %s --help)\n", verb);
	return status;
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
		} else if (is_help(argv[i])) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
			char *vargv[] = {(char *)"version", NULL};
			return find_verb("version")->fn(1, vargv);
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
	/* `isorun help [VERB]`, `isorun VERB -h|--help`: only as the verb's first argument, so
	 * that `isorun run IMG -- CMD --help` passes it on to CMD. */
	const char *name = argv[i];
	bool help = i + 1 < argc && is_help(argv[i + 1]);
	if (!strcmp(name, "help")) {
		if (i + 1 >= argc || is_help(argv[i + 1])) {
			usage(stdout);
			return 0;
		}
		name = argv[i + 1];
		help = true;
	}
	const struct isorun_verb *v = find_verb(name);
	if (!v) {
		fprintf(stderr, "isorun: unknown verb '%s' (see isorun --help)\n", name);
		return ISORUN_EXIT_USAGE;
	}
	if (help) {
		verb_usage(stdout, v);
		return 0;
	}
	log_debug("%s: start", v->name);
	return v->fn(argc - i, argv + i);
}
