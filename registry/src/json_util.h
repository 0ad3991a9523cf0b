/* Private json-c helpers shared by the registry sources. */
#pragma once

#include <stddef.h>

struct json_object;

/* json-c nesting limit for untrusted documents: real manifests nest 4 levels deep. */
#define REG_JSON_DEPTH 32

/*
 * Parse exactly `len` bytes (no NUL needed) as one JSON value; trailing non-space bytes
 * are -EPROTO. -EFBIG over `cap`, -ENOMEM. Caller puts *ret.
 */
int reg_json_parse(const char *s, size_t len, size_t cap, struct json_object **ret);

/* Copy the string member `key` of object `o` into *ret (heap) or NULL when absent or null.
 * -EPROTO when present with another type, -ENOMEM. */
int reg_json_opt_string(struct json_object *o, const char *key, char **ret);
