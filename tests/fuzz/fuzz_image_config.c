/*
 * Fuzz target: an image config (JSON the registry serves, so untrusted) through both of its
 * parsers: the indexer's (idx_config_parse: Env, Entrypoint, Cmd, WorkingDir, User, Labels,
 * os, architecture; stored in every index) and the runner's (run_config_parse: the defaults
 * of every exec, Env, WorkingDir and User). Any input is parsed or refused without a crash
 * or a leak, and when both take a config whose "config" member is an object they agree on
 * those defaults (an empty string is "unset" for both), so a sandbox runs with what the
 * index says the image wants.
 */
#include "indexer/index.h"
#include "runner/runner.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_str(const char *a, const char *b)
{
	if (a && !*a)
		a = NULL;
	if (b && !*b)
		b = NULL;
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_strv(char **a, char **b)
{
	size_t i = 0;
	for (; a && b && a[i] && b[i]; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return !(a && a[i]) && !(b && b[i]);
}

/* Whether the input is a JSON object whose "config" member is an object: the one shape both
 * parsers read the same way (the runner also takes a bare {"Env": ...} object). */
static bool config_is_object(const uint8_t *data, size_t size)
{
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return false;
	json_object *o = json_tokener_parse_ex(tok, (const char *)data, (int)size), *c;
	bool ok = o && json_object_is_type(o, json_type_object) &&
		  json_object_object_get_ex(o, "config", &c) && json_object_is_type(c, json_type_object);
	json_object_put(o);
	json_tokener_free(tok);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	struct idx_config *ic = NULL;
	struct run_config *rc = NULL;
	int a = idx_config_parse((const char *)data, size, &ic);
	int b = run_config_parse((const char *)data, size, &rc);
	if ((a == 0) != (ic != NULL) || (b == 0) != (rc != NULL))
		abort();
	if (a == 0 && b == 0 && config_is_object(data, size) &&
	    (!same_strv(ic->env, rc->env) || !same_str(ic->working_dir, rc->working_dir) ||
	     !same_str(ic->user, rc->user)))
		abort();
	idx_config_free(ic);
	run_config_free(rc);
	return 0;
}
