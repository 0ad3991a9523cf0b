/* Image config parsing (the OCI image config's "config" object). */
#include "indexer/index.h"

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void idx_config_free(struct idx_config *c)
{
	if (!c)
		return;
	cm_strv_free(c->env);
	cm_strv_free(c->entrypoint);
	cm_strv_free(c->cmd);
	cm_strv_free(c->labels);
	free(c->working_dir);
	free(c->user);
	free(c->os);
	free(c->architecture);
	free(c);
}

/* config[key] as a string; "" counts as unset (NULL). */
static int str_from_json(json_object *o, const char *key, char **ret)
{
	int r = cm_json_str(o, key, "image config", ret);
	if (r == 0 && *ret && !**ret) {
		free(*ret);
		*ret = NULL;
	}
	return r;
}

static int strv_from_json(json_object *cfg, const char *key, char ***ret)
{
	char what[64];
	json_object *v;
	snprintf(what, sizeof(what), "image config: %s", key);
	return cm_json_strv(json_object_object_get_ex(cfg, key, &v) ? v : NULL, what, ret);
}

int idx_config_parse(const char *json, size_t len, struct idx_config **ret)
{
	json_object *root;
	int k = cm_json_parse_object(json, len, &root);
	if (k < 0)
		return k == -ENOMEM ? k : cm_log_ret(-EPROTO, "image config is not a JSON object");
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
			r = strv_from_json(cfg, "Env", &c->env);
		if (r == 0)
			r = strv_from_json(cfg, "Entrypoint", &c->entrypoint);
		if (r == 0)
			r = strv_from_json(cfg, "Cmd", &c->cmd);
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
