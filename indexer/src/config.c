/* Image config parsing (the OCI image config's "config" object). */
#include "indexer/index.h"

#include "common/cleanup.h"
#include "common/log.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

void idx_config_free(struct idx_config *c)
{
	if (!c)
		return;
	strv_free(c->env);
	strv_free(c->entrypoint);
	strv_free(c->cmd);
	strv_free(c->labels);
	free(c->working_dir);
	free(c->user);
	free(c->os);
	free(c->architecture);
	free(c);
}

/* A JSON array of strings (or null/absent) -> NULL-terminated vector. */
static int strv_from_json(json_object *a, const char *what, char ***ret)
{
	*ret = NULL;
	if (!a || json_object_is_type(a, json_type_null))
		return 0;
	if (!json_object_is_type(a, json_type_array))
		return cm_log_ret(-EPROTO, "image config: %s is not an array", what);
	size_t n = json_object_array_length(a);
	char **v = calloc(n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(a, i);
		if (!json_object_is_type(s, json_type_string)) {
			strv_free(v);
			return cm_log_ret(-EPROTO, "image config: %s[%zu] is not a string", what, i);
		}
		v[i] = strdup(json_object_get_string(s));
		if (!v[i]) {
			strv_free(v);
			return -ENOMEM;
		}
	}
	*ret = v;
	return 0;
}

static int str_from_json(json_object *o, const char *key, char **ret)
{
	json_object *s;
	*ret = NULL;
	if (!json_object_object_get_ex(o, key, &s) || json_object_is_type(s, json_type_null))
		return 0;
	if (!json_object_is_type(s, json_type_string))
		return cm_log_ret(-EPROTO, "image config: %s is not a string", key);
	const char *v = json_object_get_string(s);
	if (!*v)
		return 0;
	*ret = strdup(v);
	return *ret ? 0 : -ENOMEM;
}

int idx_config_parse(const char *json, size_t len, struct idx_config **ret)
{
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_object *root = json_tokener_parse_ex(tok, json, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!root || jerr != json_tokener_success || !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return cm_log_ret(-EPROTO, "image config is not a JSON object");
	}
	struct idx_config *c = calloc(1, sizeof(*c));
	int r = c ? 0 : -ENOMEM;
	json_object *cfg = NULL, *v;
	if (r == 0)
		r = str_from_json(root, "os", &c->os);
	if (r == 0)
		r = str_from_json(root, "architecture", &c->architecture);
	if (r == 0 && json_object_object_get_ex(root, "config", &cfg) &&
	    !json_object_is_type(cfg, json_type_null)) {
		if (!json_object_is_type(cfg, json_type_object))
			r = cm_log_ret(-EPROTO, "image config: config is not an object");
		if (r == 0)
			r = strv_from_json(json_object_object_get_ex(cfg, "Env", &v) ? v : NULL, "Env", &c->env);
		if (r == 0)
			r = strv_from_json(json_object_object_get_ex(cfg, "Entrypoint", &v) ? v : NULL,
					   "Entrypoint", &c->entrypoint);
		if (r == 0)
			r = strv_from_json(json_object_object_get_ex(cfg, "Cmd", &v) ? v : NULL, "Cmd", &c->cmd);
		if (r == 0)
			r = str_from_json(cfg, "WorkingDir", &c->working_dir);
		if (r == 0)
			r = str_from_json(cfg, "User", &c->user);
		if (r == 0 && json_object_object_get_ex(cfg, "Labels", &v) &&
		    json_object_is_type(v, json_type_object)) {
			size_t n = (size_t)json_object_object_length(v), i = 0;
			c->labels = calloc(n + 1, sizeof(char *));
			if (!c->labels)
				r = -ENOMEM;
			json_object_object_foreach(v, key, val)
			{
				if (r < 0)
					break;
				const char *s = json_object_is_type(val, json_type_string)
							? json_object_get_string(val)
							: "";
				c->labels[i] = malloc(strlen(key) + strlen(s) + 2);
				if (!c->labels[i]) {
					r = -ENOMEM;
					break;
				}
				sprintf(c->labels[i++], "%s=%s", key, s);
			}
		}
	}
	json_object_put(root);
	if (r < 0) {
		idx_config_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

int idx_reader_config(const struct idx_reader *r, struct idx_config **ret)
{
	size_t len;
	const char *json = idx_reader_config_json(r, &len);
	return idx_config_parse(json, len, ret);
}
