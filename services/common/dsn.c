/*
 * dsn: finds the spans of a connection string that hold a password, then
 * masks them in a copy of the string or scrubs them from a message.
 */
#include "dsn.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

typedef struct {
	size_t start, len;
} span;

#define MAX_SPANS 8

static int is_uri(const char *dsn)
{
	return strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0;
}

static size_t uri_spans(const char *dsn, span *out)
{
	size_t n = 0;
	const char *auth = strstr(dsn, "://") + 3;
	size_t auth_len = strcspn(auth, "/?#");
	const char *at = NULL;
	for (const char *p = auth; p < auth + auth_len; p++)
		if (*p == '@')
			at = p; /* the last '@' ends the user info */
	if (at != NULL) {
		const char *colon = memchr(auth, ':', (size_t)(at - auth));
		if (colon != NULL && colon + 1 < at)
			out[n++] = (span){(size_t)(colon + 1 - dsn), (size_t)(at - colon - 1)};
	}
	const char *q = strchr(dsn, '?');
	while (q != NULL && n < MAX_SPANS) {
		q++;
		if (strncmp(q, "password=", 9) == 0) {
			const char *v = q + 9;
			size_t len = strcspn(v, "&#");
			if (len > 0)
				out[n++] = (span){(size_t)(v - dsn), len};
		}
		q = strchr(q, '&');
	}
	return n;
}

static size_t kv_spans(const char *dsn, span *out)
{
	size_t n = 0;
	const char *p = dsn;
	while (*p && n < MAX_SPANS) {
		while (isspace((unsigned char)*p))
			p++;
		const char *key = p;
		while (*p && *p != '=' && !isspace((unsigned char)*p))
			p++;
		size_t key_len = (size_t)(p - key);
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '=')
			break;
		p++;
		while (isspace((unsigned char)*p))
			p++;
		const char *v = p;
		if (*p == '\'') {
			for (p++; *p && *p != '\''; p++)
				if (*p == '\\' && p[1])
					p++;
			if (*p)
				p++;
		} else {
			while (*p && !isspace((unsigned char)*p))
				p++;
		}
		if (key_len == 8 && strncmp(key, "password", 8) == 0 && p > v)
			out[n++] = (span){(size_t)(v - dsn), (size_t)(p - v)};
	}
	return n;
}

static size_t find_spans(const char *dsn, span *out)
{
	return is_uri(dsn) ? uri_spans(dsn, out) : kv_spans(dsn, out);
}

void dsn_mask(const char *dsn, char *out, size_t out_size)
{
	if (out_size == 0)
		return;
	span spans[MAX_SPANS];
	size_t n = find_spans(dsn, spans), o = 0, i = 0;
	for (size_t s = 0; s < n && o + 1 < out_size; s++) {
		while (i < spans[s].start && o + 1 < out_size)
			out[o++] = dsn[i++];
		for (const char *m = "****"; *m && o + 1 < out_size; m++)
			out[o++] = *m;
		i = spans[s].start + spans[s].len;
	}
	while (dsn[i] && o + 1 < out_size)
		out[o++] = dsn[i++];
	out[o] = '\0';
}

static void replace_all(char *msg, size_t msg_size, const char *needle, size_t len)
{
	if (len == 0)
		return;
	char *p = msg;
	while ((p = strstr(p, needle)) != NULL) {
		size_t rest = strlen(p + len);
		if (len >= 4) {
			memcpy(p, "****", 4);
			memmove(p + 4, p + len, rest + 1);
			p += 4;
		} else {
			/* a short secret: overwrite it in place */
			memset(p, '*', len);
			p += len;
		}
	}
	(void)msg_size;
}

void dsn_scrub(const char *dsn, char *msg, size_t msg_size)
{
	span spans[MAX_SPANS];
	size_t n = find_spans(dsn, spans);
	for (size_t s = 0; s < n; s++) {
		char secret[512];
		size_t len = spans[s].len < sizeof secret - 1 ? spans[s].len : sizeof secret - 1;
		memcpy(secret, dsn + spans[s].start, len);
		secret[len] = '\0';
		replace_all(msg, msg_size, secret, len);
		/* the unquoted value of password='...' */
		if (len >= 2 && secret[0] == '\'') {
			secret[len - 1] = '\0';
			replace_all(msg, msg_size, secret + 1, len - 2);
		}
	}
}
