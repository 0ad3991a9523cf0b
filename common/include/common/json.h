/*
 * json-c helpers shared by the modules that read JSON documents of their own (image
 * configs, sandbox state). Strict where it matters: one object per document, strings where
 * strings are expected. All return 0 or -errno; -EPROTO for malformed input.
 */
#pragma once

#include <json-c/json.h>
#include <stddef.h>

/* Exactly one JSON object in json[0..len) (whitespace may follow it, nothing else). */
int cm_json_parse_object(const char *json, size_t len, json_object **ret);
/*
 * obj[key] as a malloc'd string; *ret = NULL when the key is absent or null. -EPROTO when it
 * is something else (logged as "WHAT: KEY is not a string" when `what` is not NULL).
 */
int cm_json_str(json_object *obj, const char *key, const char *what, char **ret);
/*
 * A JSON array of strings as a NULL-terminated malloc'd vector; *ret = NULL for a NULL or
 * null `arr`. -EPROTO otherwise (logged, naming `what`, when `what` is not NULL).
 */
int cm_json_strv(json_object *arr, const char *what, char ***ret);
/* Free a vector from cm_json_strv (NULL is a no-op). */
void cm_strv_free(char **v);
