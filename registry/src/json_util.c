#include "json_util.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

int reg_json_parse(const char *s, size_t len, size_t cap, struct json_object **ret)
{
	if (len > cap)
		return -EFBIG;
	if (len > INT32_MAX)
		return -EFBIG;
	struct json_tokener *tok = json_tokener_new_ex(REG_JSON_DEPTH);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *o = json_tokener_parse_ex(tok, s, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!o || jerr != json_tokener_success) {
		json_object_put(o);
		return -EPROTO;
	}
	for (; end < len; end++)
		if (!strchr(" \t\r\n", s[end])) {
			json_object_put(o);
			return -EPROTO;
		}
	*ret = o;
	return 0;
}

int reg_json_opt_string(struct json_object *o, const char *key, char **ret)
{
	struct json_object *v;
	*ret = NULL;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EPROTO;
	*ret = strdup(json_object_get_string(v));
	return *ret ? 0 : -ENOMEM;
}
