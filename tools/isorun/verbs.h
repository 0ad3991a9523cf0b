/*
 * Verb registration for the `isorun` command. Each cmd_*.c file registers its verbs with
 * ISORUN_VERB(); main.c finds them through the linker section, so adding a verb means adding
 * a file, not editing a central table. Verbs are listed in `isorun --help` sorted by name.
 */
#pragma once

struct isorun_verb {
	const char *name;
	int (*fn)(int argc, char **argv); /* argv[0] is the verb; returns the exit status */
	const char *args;		  /* "[options] REF -- CMD..." */
	const char *help;		  /* one line */
	const char *options; /* NULL, or its options: one "  -x, --opt V  what" a line */
};

/* `isorun VERB -h|--help` (and `isorun help VERB`) prints "usage: isorun NAME ARGS", the help
 * line and the options: main.c answers it before the verb runs. */
#define ISORUN_VERB_OPTS(vname, vfn, vargs, vhelp, vopts)                                          \
	static const struct isorun_verb verb_##vfn                                                 \
	    __attribute__((used, section("isorun_verbs"), aligned(sizeof(void *)))) = {            \
		.name = vname, .fn = vfn, .args = vargs, .help = vhelp, .options = vopts}
#define ISORUN_VERB(vname, vfn, vargs, vhelp) ISORUN_VERB_OPTS(vname, vfn, vargs, vhelp, NULL)

/* Exit codes shared by the verbs (docker's convention for run/exec). A usage error is 2,
 * except in run and exec, whose status is the command's: there it is isorun's own error (125),
 * so that a script can tell it from the command exiting 2. */
#define ISORUN_EXIT_USAGE  2
#define ISORUN_EXIT_ERROR  125 /* isorun's own failure */
#define ISORUN_EXIT_NOEXEC 126
#define ISORUN_EXIT_NOENT  127

/* The state root chosen by --root / $ISORUN_ROOT / default. */
const char *isorun_root(void);

/* ISORUN_KEEP_WARM in seconds (0 to a week), -1 when unset or bad (warned about once). */
int isorun_env_keep_warm(void);

/* Print "isorun VERB: <message>" and where to find the verb's usage to stderr; returns
 * `status`. */
int isorun_usage_error(const char *verb, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
