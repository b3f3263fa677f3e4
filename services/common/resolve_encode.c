/*
 * resolve_encode: the reader's binary encoding, written. A bounded output
 * buffer (a resolved datum may grow with defaults and promotions, but never
 * past its limit), and the encoding of a field's default given as JSON,
 * which plans compute once, ahead of any datum. A default that does not fit
 * its type is found here too, when the plan is checked.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resolve_int.h"

/* ---- Output buffer ---- */

int resolve_buf_add(resolve_buf *b, const void *p, size_t n)
{
	if (b->nomem || b->over)
		return -1;
	if (n > b->max - b->len) {
		b->over = true;
		return -1;
	}
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 256;
		while (n > cap - b->len)
			cap = cap > b->max / 2 ? b->max : cap * 2;
		unsigned char *nb = realloc(b->buf, cap);
		if (nb == NULL) {
			b->nomem = true;
			return -1;
		}
		b->buf = nb;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->buf + b->len, p, n);
	b->len += n;
	return 0;
}

int resolve_buf_long(resolve_buf *b, int64_t v)
{
	unsigned char tmp[10];
	size_t n = 0;
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	do {
		unsigned char c = z & 0x7F;
		z >>= 7;
		tmp[n++] = (unsigned char)(c | (z ? 0x80 : 0));
	} while (z);
	return resolve_buf_add(b, tmp, n);
}

int resolve_buf_float(resolve_buf *b, float f)
{
	uint32_t u;
	unsigned char tmp[4];
	memcpy(&u, &f, 4);
	for (int i = 0; i < 4; i++)
		tmp[i] = (unsigned char)(u >> (8 * i));
	return resolve_buf_add(b, tmp, 4);
}

int resolve_buf_double(resolve_buf *b, double d)
{
	uint64_t u;
	unsigned char tmp[8];
	memcpy(&u, &d, 8);
	for (int i = 0; i < 8; i++)
		tmp[i] = (unsigned char)(u >> (8 * i));
	return resolve_buf_add(b, tmp, 8);
}

/* ---- Defaults: JSON to the reader's binary encoding ---- */

/* A bytes or fixed default is a JSON string whose code points 0-255 are the
 * bytes. */
static int default_bytes(resolve_buf *b, const char *s, size_t n, bool prefix, size_t fixed)
{
	size_t count = 0, i = 0;
	unsigned char *raw = malloc(n + 1);
	int rc = -1;
	if (raw == NULL) {
		b->nomem = true;
		return -1;
	}
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			raw[count++] = c;
			i++;
		} else if ((c == 0xC2 || c == 0xC3) && i + 1 < n) {
			raw[count++] = (unsigned char)(((c & 0x1F) << 6) | (s[i + 1] & 0x3F));
			i += 2;
		} else {
			goto done; /* a code point above 255 */
		}
	}
	if (!prefix && count != fixed)
		goto done;
	if ((prefix && resolve_buf_long(b, (int64_t)count) != 0) ||
	    resolve_buf_add(b, raw, count) != 0)
		goto done;
	rc = 0;
done:
	free(raw);
	return rc;
}

int resolve_default_encode(resolve_buf *b, const rnode *n, json_t *v, int depth)
{
	if (depth > RESOLVE_MAX_DEPTH)
		return -1;
	switch (n->t) {
	case T_NULL:
		return json_is_null(v) ? 0 : -1;
	case T_BOOLEAN:
		if (!json_is_boolean(v))
			return -1;
		return resolve_buf_add(b, json_is_true(v) ? "\1" : "\0", 1);
	case T_INT:
		if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN ||
		    json_integer_value(v) > INT32_MAX)
			return -1;
		return resolve_buf_long(b, json_integer_value(v));
	case T_LONG:
		if (!json_is_integer(v))
			return -1;
		return resolve_buf_long(b, json_integer_value(v));
	case T_FLOAT:
		if (!json_is_number(v))
			return -1;
		return resolve_buf_float(b, (float)json_number_value(v));
	case T_DOUBLE:
		if (!json_is_number(v))
			return -1;
		return resolve_buf_double(b, json_number_value(v));
	case T_BYTES:
	case T_FIXED:
		if (!json_is_string(v))
			return -1;
		return default_bytes(b, json_string_value(v), json_string_length(v),
		                     n->t == T_BYTES, n->size);
	case T_STRING:
		if (!json_is_string(v) || resolve_buf_long(b, (int64_t)json_string_length(v)) != 0)
			return -1;
		return resolve_buf_add(b, json_string_value(v), json_string_length(v));
	case T_ENUM: {
		const char *sym = json_string_value(v);
		for (size_t i = 0; sym != NULL && i < n->nsym; i++) {
			if (strcmp(n->symbols[i], sym) == 0)
				return resolve_buf_long(b, (int64_t)i);
		}
		return -1;
	}
	case T_ARRAY: {
		if (!json_is_array(v))
			return -1;
		size_t cnt = json_array_size(v);
		if (cnt > 0 && resolve_buf_long(b, (int64_t)cnt) != 0)
			return -1;
		for (size_t i = 0; i < cnt; i++) {
			if (resolve_default_encode(b, n->items, json_array_get(v, i), depth + 1) !=
			    0)
				return -1;
		}
		return resolve_buf_long(b, 0);
	}
	case T_MAP: {
		const char *key;
		json_t *item;
		if (!json_is_object(v))
			return -1;
		if (json_object_size(v) > 0 &&
		    resolve_buf_long(b, (int64_t)json_object_size(v)) != 0)
			return -1;
		json_object_foreach(v, key, item)
		{
			size_t kl = strlen(key);
			if (resolve_buf_long(b, (int64_t)kl) != 0 ||
			    resolve_buf_add(b, key, kl) != 0 ||
			    resolve_default_encode(b, n->items, item, depth + 1) != 0)
				return -1;
		}
		return resolve_buf_long(b, 0);
	}
	case T_RECORD:
		if (!json_is_object(v))
			return -1;
		for (size_t i = 0; i < n->nfields; i++) {
			json_t *fv = json_object_get(v, n->fields[i].name);
			if (fv == NULL)
				fv = n->fields[i].def;
			if (fv == NULL ||
			    resolve_default_encode(b, n->fields[i].type, fv, depth + 1) != 0)
				return -1;
		}
		return 0;
	case T_UNION:
		/* The specification (1.11) takes the first branch; later ones
		 * allow any: the first branch the value fits. */
		for (size_t i = 0; i < n->nbranch; i++) {
			size_t mark = b->len;
			if (resolve_buf_long(b, (int64_t)i) == 0 &&
			    resolve_default_encode(b, n->branches[i], v, depth + 1) == 0)
				return 0;
			if (b->nomem || b->over)
				return -1;
			b->len = mark;
		}
		return -1;
	}
	return -1;
}
