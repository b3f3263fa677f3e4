/*
 * codec_pcf: a schema's identity. The Parsing Canonical Form of a schema
 * given as JSON (the specification's transformations: full names, only the
 * attributes that matter, no white space) and its CRC-64-AVRO fingerprint,
 * which the single-object header carries; avro-c 1.11 computes neither. The
 * Avro name rules live here too, as the canonical form is where names are
 * first checked; the resolve module's parser uses them as well.
 */
#include "codec.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "errstr.h"

#define CRC64_EMPTY 0xc15d213aa4d7a795ULL

/* ---- CRC-64-AVRO ---- */

uint64_t codec_crc64_avro(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t fp = CRC64_EMPTY;

	/* Bit at a time rather than the spec's 256-entry table: it only ever
	 * runs over a few schemas at start-up, and needs no table to build. */
	for (size_t i = 0; i < len; i++) {
		fp ^= p[i];
		for (int k = 0; k < 8; k++)
			fp = (fp >> 1) ^ (CRC64_EMPTY & (0 - (fp & 1)));
	}
	return fp;
}

/* ---- Parsing Canonical Form ---- */

typedef struct {
	char *buf;
	size_t len, cap;
	bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->cap - b->len <= n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len <= n)
			cap *= 2;
		char *nb = realloc(b->buf, cap);
		if (nb == NULL) {
			b->oom = true;
			return;
		}
		b->buf = nb;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_quoted(strbuf *b, const char *s)
{
	/* Only names and primitive type names are ever written, and both are
	 * checked to be [A-Za-z0-9_.], so nothing needs escaping. */
	sb_add(b, "\"", 1);
	sb_str(b, s);
	sb_add(b, "\"", 1);
}

typedef struct {
	strbuf out;
	char **names; /* full names of the named types defined so far */
	size_t name_count, name_cap;
	char *errstr;
	size_t errstr_size;
} canon_ctx;

static const char *const primitive_names[] = {"null",  "boolean", "int",   "long",
                                              "float", "double",  "bytes", "string"};

static bool is_primitive(const char *s)
{
	for (size_t i = 0; i < sizeof primitive_names / sizeof primitive_names[0]; i++) {
		if (strcmp(s, primitive_names[i]) == 0)
			return true;
	}
	return false;
}

bool codec_name_part_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
		if (!alpha && (i == 0 || c < '0' || c > '9'))
			return false;
	}
	return true;
}

bool codec_dotted_name_ok(const char *s, bool allow_empty)
{
	if (*s == '\0')
		return allow_empty;
	for (;;) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);
		if (!codec_name_part_ok(s, n))
			return false;
		if (dot == NULL)
			return true;
		s = dot + 1;
	}
}

static bool canon_defined(const canon_ctx *cx, const char *full)
{
	for (size_t i = 0; i < cx->name_count; i++) {
		if (strcmp(cx->names[i], full) == 0)
			return true;
	}
	return false;
}

static int canon_define(canon_ctx *cx, char *full)
{
	if (canon_defined(cx, full)) {
		errstr_set(cx->errstr, cx->errstr_size, "type %s is defined twice", full);
		return -1;
	}
	if (cx->name_count == cx->name_cap) {
		size_t cap = cx->name_cap ? cx->name_cap * 2 : 16;
		char **nn = realloc(cx->names, cap * sizeof *nn);
		if (nn == NULL) {
			errstr_set(cx->errstr, cx->errstr_size, "out of memory");
			return -1;
		}
		cx->names = nn;
		cx->name_cap = cap;
	}
	cx->names[cx->name_count++] = full;
	return 0;
}

char *codec_full_name(const char *name, const char *ns)
{
	if (strchr(name, '.') != NULL)
		return strdup(name);
	size_t a = ns ? strlen(ns) : 0, b = strlen(name);
	char *s = malloc(a + b + 2);
	if (s == NULL)
		return NULL;
	if (a > 0) {
		memcpy(s, ns, a);
		s[a++] = '.';
	}
	memcpy(s + a, name, b + 1);
	return s;
}

/* Write the full name a type reference stands for: the name in the enclosing
 * namespace if such a type was defined, else the name as written (a dotted
 * name, or a type of the null namespace). */
static int canon_reference(canon_ctx *cx, const char *name, const char *ns)
{
	if (!codec_dotted_name_ok(name, false)) {
		errstr_set(cx->errstr, cx->errstr_size, "invalid type name \"%.64s\"", name);
		return -1;
	}
	if (strchr(name, '.') == NULL && ns != NULL && *ns != '\0') {
		char *full = codec_full_name(name, ns);
		if (full == NULL) {
			errstr_set(cx->errstr, cx->errstr_size, "out of memory");
			return -1;
		}
		if (canon_defined(cx, full)) {
			sb_quoted(&cx->out, full);
			free(full);
			return 0;
		}
		free(full);
	}
	if (!canon_defined(cx, name)) {
		errstr_set(cx->errstr, cx->errstr_size, "unknown type name \"%.64s\"", name);
		return -1;
	}
	sb_quoted(&cx->out, name);
	return 0;
}

static int canon_schema(canon_ctx *cx, json_t *s, const char *ns, int depth);

/* record, enum or fixed: {"name":full,"type":...} and the rest. */
static int canon_named(canon_ctx *cx, json_t *s, const char *type, const char *ns, int depth)
{
	const char *name = json_string_value(json_object_get(s, "name"));
	json_t *jns = json_object_get(s, "namespace");
	char *full = NULL, *own_ns = NULL;
	int rc = -1;

	if (name == NULL || !codec_dotted_name_ok(name, false)) {
		errstr_set(cx->errstr, cx->errstr_size, "%s without a valid name", type);
		return -1;
	}
	if (strchr(name, '.') != NULL) {
		/* A dotted name is a full name; its namespace is what precedes
		 * the last dot, and a namespace attribute is ignored. */
		full = strdup(name);
		own_ns = full ? strndup(name, (size_t)(strrchr(name, '.') - name)) : NULL;
	} else {
		const char *n = ns;
		if (jns != NULL) {
			n = json_string_value(jns);
			if (n == NULL || !codec_dotted_name_ok(n, true)) {
				errstr_set(cx->errstr, cx->errstr_size,
				           "%s %s has an invalid namespace", type, name);
				return -1;
			}
		}
		full = codec_full_name(name, n);
		own_ns = strdup(n ? n : "");
	}
	if (full == NULL || own_ns == NULL) {
		errstr_set(cx->errstr, cx->errstr_size, "out of memory");
		goto fail;
	}
	/* Defined before its fields are read, so that a record may refer to
	 * itself. */
	if (canon_define(cx, full) != 0)
		goto fail;
	const char *fullname = full;
	full = NULL; /* now owned by cx->names */

	sb_str(&cx->out, "{\"name\":");
	sb_quoted(&cx->out, fullname);
	sb_str(&cx->out, ",\"type\":");
	sb_quoted(&cx->out, type);

	if (strcmp(type, "record") == 0) {
		json_t *fields = json_object_get(s, "fields");
		if (!json_is_array(fields)) {
			errstr_set(cx->errstr, cx->errstr_size, "record %s without fields",
			           fullname);
			goto fail;
		}
		sb_str(&cx->out, ",\"fields\":[");
		for (size_t i = 0; i < json_array_size(fields); i++) {
			json_t *f = json_array_get(fields, i);
			const char *fname = json_string_value(json_object_get(f, "name"));
			json_t *ftype = json_object_get(f, "type");
			if (fname == NULL || !codec_name_part_ok(fname, strlen(fname)) ||
			    ftype == NULL) {
				errstr_set(cx->errstr, cx->errstr_size,
				           "record %s has a field without a valid name and type",
				           fullname);
				goto fail;
			}
			if (i > 0)
				sb_add(&cx->out, ",", 1);
			sb_str(&cx->out, "{\"name\":");
			sb_quoted(&cx->out, fname);
			sb_str(&cx->out, ",\"type\":");
			if (canon_schema(cx, ftype, own_ns, depth + 1) != 0)
				goto fail;
			sb_add(&cx->out, "}", 1);
		}
		sb_add(&cx->out, "]", 1);
	} else if (strcmp(type, "enum") == 0) {
		json_t *symbols = json_object_get(s, "symbols");
		if (!json_is_array(symbols)) {
			errstr_set(cx->errstr, cx->errstr_size, "enum %s without symbols",
			           fullname);
			goto fail;
		}
		sb_str(&cx->out, ",\"symbols\":[");
		for (size_t i = 0; i < json_array_size(symbols); i++) {
			const char *sym = json_string_value(json_array_get(symbols, i));
			if (sym == NULL || !codec_name_part_ok(sym, strlen(sym))) {
				errstr_set(cx->errstr, cx->errstr_size,
				           "enum %s has an invalid symbol", fullname);
				goto fail;
			}
			if (i > 0)
				sb_add(&cx->out, ",", 1);
			sb_quoted(&cx->out, sym);
		}
		sb_add(&cx->out, "]", 1);
	} else {
		json_t *size = json_object_get(s, "size");
		char num[32];
		if (!json_is_integer(size) || json_integer_value(size) < 0) {
			errstr_set(cx->errstr, cx->errstr_size, "fixed %s without a valid size",
			           fullname);
			goto fail;
		}
		/* [INTEGERS]: no leading zeros, which the decimal form has none. */
		(void)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(size));
		sb_str(&cx->out, ",\"size\":");
		sb_str(&cx->out, num);
	}
	sb_add(&cx->out, "}", 1);
	rc = 0;
fail:
	free(full);
	free(own_ns);
	return rc;
}

static int canon_schema(canon_ctx *cx, json_t *s, const char *ns, int depth)
{
	if (depth > CODEC_MAX_DEPTH) {
		errstr_set(cx->errstr, cx->errstr_size, "schema nested deeper than %d",
		           CODEC_MAX_DEPTH);
		return -1;
	}
	if (json_is_string(s)) {
		const char *name = json_string_value(s);
		if (is_primitive(name)) {
			sb_quoted(&cx->out, name);
			return 0;
		}
		return canon_reference(cx, name, ns);
	}
	if (json_is_array(s)) {
		sb_add(&cx->out, "[", 1);
		for (size_t i = 0; i < json_array_size(s); i++) {
			if (i > 0)
				sb_add(&cx->out, ",", 1);
			if (canon_schema(cx, json_array_get(s, i), ns, depth + 1) != 0)
				return -1;
		}
		sb_add(&cx->out, "]", 1);
		return 0;
	}
	if (!json_is_object(s)) {
		errstr_set(cx->errstr, cx->errstr_size,
		           "a schema is a string, an array or an object");
		return -1;
	}
	const char *type = json_string_value(json_object_get(s, "type"));
	if (type == NULL) {
		errstr_set(cx->errstr, cx->errstr_size, "schema object without a type name");
		return -1;
	}
	if (is_primitive(type)) {
		/* [PRIMITIVES]: {"type":"int", ...} becomes "int"; logicalType
		 * and every other attribute go. */
		sb_quoted(&cx->out, type);
		return 0;
	}
	if (strcmp(type, "record") == 0 || strcmp(type, "enum") == 0 || strcmp(type, "fixed") == 0)
		return canon_named(cx, s, type, ns, depth);
	if (strcmp(type, "array") == 0 || strcmp(type, "map") == 0) {
		bool array = type[0] == 'a';
		json_t *inner = json_object_get(s, array ? "items" : "values");
		if (inner == NULL) {
			errstr_set(cx->errstr, cx->errstr_size, "%s without %s", type,
			           array ? "items" : "values");
			return -1;
		}
		sb_str(&cx->out,
		       array ? "{\"type\":\"array\",\"items\":" : "{\"type\":\"map\",\"values\":");
		if (canon_schema(cx, inner, ns, depth + 1) != 0)
			return -1;
		sb_add(&cx->out, "}", 1);
		return 0;
	}
	/* {"type": "SomeRecord"}: a reference written as an object. */
	return canon_reference(cx, type, ns);
}

char *codec_canonical_form(const char *schema_json, char *errstr, size_t errstr_size)
{
	canon_ctx cx = {.errstr = errstr, .errstr_size = errstr_size};
	json_error_t jerr;
	json_t *root = NULL;
	char *result = NULL;

	if (schema_json == NULL) {
		errstr_set(errstr, errstr_size, "no schema");
		return NULL;
	}
	root = json_loads(schema_json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		errstr_set(errstr, errstr_size, "schema is not JSON: %s (line %d)", jerr.text,
		           jerr.line);
		goto fail;
	}
	if (canon_schema(&cx, root, NULL, 0) != 0)
		goto fail;
	if (cx.out.oom || cx.out.buf == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	result = cx.out.buf;
	cx.out.buf = NULL;
fail:
	free(cx.out.buf);
	for (size_t i = 0; i < cx.name_count; i++)
		free(cx.names[i]);
	free(cx.names);
	json_decref(root);
	return result;
}
