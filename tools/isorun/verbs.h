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
};

#define ISORUN_VERB(vname, vfn, vargs, vhelp)                                                      \
	static const struct isorun_verb verb_##vfn                                                 \
		__attribute__((used, section("isorun_verbs"), aligned(sizeof(void *)))) = {         \
			.name = vname, .fn = vfn, .args = vargs, .help = vhelp}

/* Exit codes shared by the verbs (docker's convention for run/exec). */
#define ISORUN_EXIT_USAGE  2
#define ISORUN_EXIT_ERROR  125 /* isorun's own failure */
#define ISORUN_EXIT_NOEXEC 126
#define ISORUN_EXIT_NOENT  127

/* The state root chosen by --root / $ISORUN_ROOT / default. */
const char *isorun_root(void);
