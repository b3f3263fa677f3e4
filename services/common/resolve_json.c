/*
 * resolve_json: whether a JSON text's syntax is sound, checked without
 * allocating anything.
 *
 * jansson reports an allocation that fails while it parses as a syntax
 * error, or says nothing. Whether the text's syntax is sound, asked of this
 * checker, tells the two apart: out of memory is no verdict on a schema,
 * and a registry's schema refused for it would be refused for good.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "resolve_int.h"

static const char *ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *syn_value(const char *p, const char *end, int depth);

static const char *syn_string(const char *p, const char *end)
{
	if (p >= end || *p != '"')
		return NULL;
	for (p++; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			return p + 1;
		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			if (++p >= end)
				return NULL;
			if (*p == 'u') {
				for (int i = 0; i < 4; i++) {
					if (++p >= end ||
					    !((*p >= '0' && *p <= '9') ||
					      (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
						return NULL;
				}
			} else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0') {
				return NULL;
			}
		}
	}
	return NULL;
}

static const char *syn_digits(const char *p, const char *end)
{
	const char *s = p;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p > s ? p : NULL;
}

static const char *syn_number(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if ((p = syn_digits(p, end)) == NULL)
		return NULL;
	if (p < end && *p == '.' && (p = syn_digits(p + 1, end)) == NULL)
		return NULL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		p = syn_digits(p, end);
	}
	return p;
}

static const char *syn_list(const char *p, const char *end, int depth, bool object)
{
	char close = object ? '}' : ']';
	p = ws(p + 1, end);
	if (p < end && *p == close)
		return p + 1;
	for (;;) {
		if (object) {
			if ((p = syn_string(p, end)) == NULL)
				return NULL;
			p = ws(p, end);
			if (p >= end || *p != ':')
				return NULL;
			p = ws(p + 1, end);
		}
		if ((p = syn_value(p, end, depth + 1)) == NULL)
			return NULL;
		p = ws(p, end);
		if (p < end && *p == close)
			return p + 1;
		if (p >= end || *p != ',')
			return NULL;
		p = ws(p + 1, end);
	}
}

static const char *syn_value(const char *p, const char *end, int depth)
{
	if (depth > 2048 || p >= end) /* jansson's own nesting limit */
		return NULL;
	switch (*p) {
	case '{':
	case '[':
		return syn_list(p, end, depth, *p == '{');
	case '"':
		return syn_string(p, end);
	case 't':
		return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return syn_number(p, end);
	}
}

bool resolve_json_syntax_ok(const char *json, size_t len)
{
	const char *end = json + len, *p = syn_value(ws(json, end), end, 0);
	return p != NULL && ws(p, end) == end;
}
