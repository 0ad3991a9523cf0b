/* json-c helpers (common/json.h). */
#include "common/json.h"

#include "common/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int cm_json_parse_object(const char *json, size_t len, json_object **ret)
{
	*ret = NULL;
	if (len > (size_t)INT32_MAX)
		return -EFBIG;
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_object *o = json_tokener_parse_ex(tok, json, (int)len);
	bool ok = o && json_tokener_get_error(tok) == json_tokener_success &&
		  json_object_is_type(o, json_type_object);
	/* json_tokener stops after the first value: only whitespace may follow it */
	for (size_t i = json_tokener_get_parse_end(tok); ok && i < len; i++)
		ok = json[i] && strchr(" \t\r\n", json[i]);
	json_tokener_free(tok);
	if (!ok) {
		json_object_put(o);
		return -EPROTO;
	}
	*ret = o;
	return 0;
}

int cm_json_str(json_object *obj, const char *key, const char *what, char **ret)
{
	json_object *v;
	*ret = NULL;
	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return what ? cm_log_ret(-EPROTO, "%s: %s is not a string", what, key) : -EPROTO;
	*ret = strdup(json_object_get_string(v));
	return *ret ? 0 : -ENOMEM;
}

void cm_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

int cm_json_strv(json_object *arr, const char *what, char ***ret)
{
	*ret = NULL;
	if (!arr || json_object_is_type(arr, json_type_null))
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return what ? cm_log_ret(-EPROTO, "%s is not an array", what) : -EPROTO;
	size_t n = json_object_array_length(arr);
	char **v = calloc(n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(s, json_type_string)) {
			cm_strv_free(v);
			return what ? cm_log_ret(-EPROTO, "%s[%zu] is not a string", what, i)
				    : -EPROTO;
		}
		if (!(v[i] = strdup(json_object_get_string(s)))) {
			cm_strv_free(v);
			return -ENOMEM;
		}
	}
	*ret = v;
	return 0;
}
