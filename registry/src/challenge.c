/*
 * WWW-Authenticate parsing (RFC 7235 section 4.1, RFC 7230 section 3.2.6):
 *
 *   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param  = token BWS "=" BWS ( token / quoted-string )
 *   token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
 *
 * Challenges and parameters are both comma-separated, so after a comma the next item is a
 * parameter when it is `token BWS "="`, and a new challenge otherwise. Empty list elements
 * (",,") are allowed, as the list rule says.
 */
#include "registry/auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/cleanup.h"

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_t68char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("-._~+/", c));
}

struct cursor {
	const char *p, *end;
};

static void skip_ows(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
}

static size_t token_len(const struct cursor *c)
{
	const char *q = c->p;
	while (q < c->end && is_tchar(*q))
		q++;
	return (size_t)(q - c->p);
}

static char *lower_dup(const char *s, size_t n)
{
	char *r = strndup(s, n);
	for (size_t i = 0; r && i < n; i++)
		if (r[i] >= 'A' && r[i] <= 'Z')
			r[i] = (char)(r[i] - 'A' + 'a');
	return r;
}

/* quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE; c->p at the opening quote. */
static int parse_quoted(struct cursor *c, char **ret)
{
	struct cm_buf b;
	cm_buf_init(&b, REG_CHALLENGE_MAX);
	c->p++;
	while (c->p < c->end && *c->p != '"') {
		char ch = *c->p++;
		if (ch == '\\') {
			if (c->p == c->end)
				break;
			ch = *c->p++;
		}
		/* qdtext excludes CTLs other than HTAB; a NUL would truncate the C string. */
		if ((unsigned char)ch < 0x20 && ch != '\t') {
			cm_buf_fini(&b);
			return -EPROTO;
		}
		int r = cm_buf_append(&b, &ch, 1);
		if (r < 0) {
			cm_buf_fini(&b);
			return r;
		}
	}
	if (c->p == c->end) {
		cm_buf_fini(&b);
		return -EPROTO; /* unterminated */
	}
	c->p++;
	*ret = cm_buf_steal_str(&b);
	if (!*ret) {
		cm_buf_fini(&b);
		return -ENOMEM;
	}
	return 0;
}

static void challenge_fini(struct reg_challenge *ch)
{
	free(ch->scheme);
	free(ch->token68);
	for (size_t i = 0; i < ch->n_params; i++) {
		free(ch->params[i].name);
		free(ch->params[i].value);
	}
	free(ch->params);
	memset(ch, 0, sizeof(*ch));
}

void reg_challenges_init(struct reg_challenges *c)
{
	memset(c, 0, sizeof(*c));
}

void reg_challenges_fini(struct reg_challenges *c)
{
	for (size_t i = 0; i < c->n; i++)
		challenge_fini(&c->v[i]);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

/* True when the cursor is at `token BWS "="` (an auth-param) rather than a new scheme. */
static bool at_param(const struct cursor *c)
{
	struct cursor k = *c;
	size_t n = token_len(&k);
	if (!n)
		return false;
	k.p += n;
	skip_ows(&k);
	/* "token=" followed by '=' again would be token68 padding ("abc==") */
	return k.p < k.end && *k.p == '=' && !(k.p + 1 < k.end && k.p[1] == '=');
}

static int add_param(struct reg_challenge *ch, char *name, char *value)
{
	if (ch->n_params >= 64) {
		free(name);
		free(value);
		return -EFBIG;
	}
	struct reg_auth_param *p = realloc(ch->params, (ch->n_params + 1) * sizeof(*p));
	if (!p) {
		free(name);
		free(value);
		return -ENOMEM;
	}
	ch->params = p;
	p[ch->n_params++] = (struct reg_auth_param){.name = name, .value = value};
	return 0;
}

/* Parse params of `ch` until a new challenge starts or the input ends. */
static int parse_params(struct cursor *c, struct reg_challenge *ch)
{
	for (;;) {
		skip_ows(c);
		while (c->p < c->end && *c->p == ',') {
			/* look past commas: a param continues this challenge, a scheme ends it */
			struct cursor k = *c;
			while (k.p < k.end && (*k.p == ',' || *k.p == ' ' || *k.p == '\t'))
				k.p++;
			if (k.p == k.end || !at_param(&k)) {
				return 0;
			}
			*c = k;
		}
		if (c->p == c->end || !at_param(c))
			return c->p == c->end ? 0 : -EPROTO;
		size_t n = token_len(c);
		char *name = lower_dup(c->p, n);
		if (!name)
			return -ENOMEM;
		c->p += n;
		skip_ows(c);
		c->p++; /* '=' */
		skip_ows(c);
		char *value = NULL;
		int r;
		if (c->p < c->end && *c->p == '"') {
			r = parse_quoted(c, &value);
		} else {
			size_t vn = token_len(c);
			r = vn ? 0 : -EPROTO;
			if (!r && !(value = strndup(c->p, vn)))
				r = -ENOMEM;
			c->p += vn;
		}
		if (r < 0) {
			free(name);
			return r;
		}
		r = add_param(ch, name, value);
		if (r < 0)
			return r;
		skip_ows(c);
		if (c->p < c->end && *c->p != ',')
			return -EPROTO;
	}
}

int reg_challenges_parse(struct reg_challenges *out, const char *value, size_t len)
{
	struct cursor c = {value, value + len};
	struct reg_challenges add = {0};
	int r = 0;

	if (len > REG_CHALLENGE_MAX)
		return -EFBIG;
	for (;;) {
		while (c.p < c.end && (*c.p == ',' || *c.p == ' ' || *c.p == '\t'))
			c.p++;
		if (c.p == c.end)
			break;
		size_t n = token_len(&c);
		if (!n) {
			r = -EPROTO;
			goto fail;
		}
		if (out->n + add.n >= REG_CHALLENGES_MAX) {
			r = -EFBIG;
			goto fail;
		}
		struct reg_challenge *v = realloc(add.v, (add.n + 1) * sizeof(*v));
		if (!v) {
			r = -ENOMEM;
			goto fail;
		}
		add.v = v;
		struct reg_challenge *ch = &add.v[add.n++];
		memset(ch, 0, sizeof(*ch));
		if (!(ch->scheme = lower_dup(c.p, n))) {
			r = -ENOMEM;
			goto fail;
		}
		c.p += n;
		if (c.p == c.end)
			break;
		if (*c.p == ',')
			continue;
		if (*c.p != ' ' && *c.p != '\t') {
			r = -EPROTO;
			goto fail;
		}
		skip_ows(&c);
		if (c.p == c.end)
			break;
		if (at_param(&c)) {
			r = parse_params(&c, ch);
			if (r < 0)
				goto fail;
			continue;
		}
		/* token68 */
		const char *q = c.p;
		while (q < c.end && is_t68char(*q))
			q++;
		if (q == c.p) {
			if (*c.p == ',')
				continue;
			r = -EPROTO;
			goto fail;
		}
		while (q < c.end && *q == '=')
			q++;
		if (!(ch->token68 = strndup(c.p, (size_t)(q - c.p)))) {
			r = -ENOMEM;
			goto fail;
		}
		c.p = q;
		skip_ows(&c);
		if (c.p < c.end && *c.p != ',') {
			r = -EPROTO;
			goto fail;
		}
	}
	if (add.n) {
		struct reg_challenge *v = realloc(out->v, (out->n + add.n) * sizeof(*v));
		if (!v) {
			r = -ENOMEM;
			goto fail;
		}
		memcpy(v + out->n, add.v, add.n * sizeof(*v));
		out->v = v;
		out->n += add.n;
		free(add.v);
	}
	return 0;
fail:
	reg_challenges_fini(&add);
	return r;
}

const struct reg_challenge *reg_challenges_find(const struct reg_challenges *c, const char *scheme)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcasecmp(c->v[i].scheme, scheme))
			return &c->v[i];
	return NULL;
}

const char *reg_challenge_param(const struct reg_challenge *ch, const char *name)
{
	for (size_t i = 0; i < ch->n_params; i++)
		if (!strcasecmp(ch->params[i].name, name))
			return ch->params[i].value;
	return NULL;
}
