#include "verbs.h"

#include <stdio.h>

static int cmd_version(int argc, char **argv)
{
	printf("isorun %s\n", ISORUN_VERSION);
	return 0;
}
ISORUN_VERB("version", cmd_version, "", "print the version");
