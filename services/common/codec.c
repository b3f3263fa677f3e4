/*
 * codec: the Avro wire format of the provisioning topics.
 *
 * Every value is Avro single-object encoded: C3 01, the little-endian
 * CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then
 * the binary datum. avro-c 1.11 computes neither the canonical form nor the
 * fingerprint, so both are computed here from the schema JSON (parsed with
 * jansson); avro-c does the binary encoding and decoding proper.
 *
 * avro-c trusts its input: a length prefix is believed and allocated, a union
 * or enum index is used as given, a string may hold any bytes. Values come
 * from a topic anyone with write access can fill, so before avro-c sees a
 * datum, a walker of our own reads it against the writer schema and refuses
 * anything malformed, over a configured limit, or ambiguous (duplicate map
 * keys). Only a datum the walker accepted is handed to avro-c, and what avro-c
 * builds is then copied into the plain structs of codec.h so that nothing
 * else in the service depends on avro-c. A datum of any other version of the
 * schema (an older or newer file of schemas/, or a registry's schema named by
 * a Confluent-framed value) is first rewritten into the current version's
 * encoding by resolve.c, with the same defences, and then read like any.
 * An allocation that fails anywhere on that path (the walker, avro-c, the
 * copy, the salvage) is CODEC_ERR_NOMEM and never a verdict on the value:
 * the sender is not at fault, and its value must not go to the DLQ.
 */
#include "codec.h"

#include <avro.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "errstr.h"
#include "file.h"
#include "resolve.h"
#include "utf8.h"

#define HEADER_LEN  10 /* C3 01 and the 8-byte fingerprint */
#define CRC64_EMPTY 0xc15d213aa4d7a795ULL
#define MAX_DEPTH   64 /* nesting of schemas and of data; ours nest 5 deep */

#define REQUEST_RECORD  "ValServerProvisioningRequest"
#define RESPONSE_RECORD "ValServerProvisioningResponse"
#define SERVICES_FIELD  "valServices"

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

static const char *const key_format_names[CODEC_KF__COUNT] = {
    "RAW", "OPAQUE",     "PKCS1", "PKCS8", "X509", "EC_PRIVATE_KEY", "TRANSPARENT_SYMMETRIC_KEY",
    "JWK", "MIKEY_SAKKE"};
static const char *const result_names[] = {"SUCCESS", "FAILURE"};
static const char *const cause_names[CODEC_CAUSE__COUNT] = {
    "INVALID_REQUEST",        "UNAUTHORIZED",        "NOT_ALLOWED_BY_SLA",
    "KEY_FORMAT_NOT_ALLOWED", "REQUEST_ID_CONFLICT", "INTERNAL_ERROR"};

typedef enum { KIND_OTHER = 0, KIND_REQUEST, KIND_RESPONSE } schema_kind;

/* One schema file compiled in, known by its fingerprint. */
typedef struct {
	uint64_t fingerprint;
	schema_kind kind;
	const char *file;     /* borrowed from embedded_schemas */
	const char *json;     /* its text, borrowed likewise */
	avro_schema_t schema; /* the writer schema */
	resolve_schema *rs;   /* the same, for resolve.c */
	/* avro-c's generic class of the current version, which every datum
	 * is read with (avro-c 1.11's own resolved writer double-frees when
	 * the writer lacks a reader field that has a default). NULL for the
	 * other versions and kinds. */
	avro_value_iface_t *cls;
	/* Other versions of a kind: how their data read as the current one. */
	resolve_plan *plan;
} known_schema;

struct codec_writer {
	codec_status status; /* CODEC_OK, CODEC_ERR_WRONG_SCHEMA or _RESOLVE */
	char message[200];   /* why, when not CODEC_OK */
	schema_kind kind;
	bool leading_ok; /* begins with requestId and requesterIdentity, strings */
	resolve_schema *rs;
	resolve_plan *plan;
};

struct codec {
	codec_limits limits;
	known_schema *schemas;
	size_t schema_count;
	const known_schema *request;  /* the current versions: what we write and */
	const known_schema *response; /* what every version is read into */
	embedded_file *owned;         /* files read from a folder, kept */
	size_t nowned;
};

/* ---- Symbols ---- */

const char *codec_key_format_type_name(codec_key_format_type t)
{
	if ((int)t < 0 || t >= CODEC_KF__COUNT)
		return NULL;
	return key_format_names[t];
}

const char *codec_result_name(codec_result r)
{
	if (r != CODEC_RESULT_SUCCESS && r != CODEC_RESULT_FAILURE)
		return NULL;
	return result_names[r];
}

const char *codec_cause_name(codec_cause c)
{
	if (c == CODEC_CAUSE_NONE)
		return "";
	if ((int)c < 0 || c >= CODEC_CAUSE__COUNT)
		return NULL;
	return cause_names[c];
}

int codec_key_format_type_parse(const char *name, codec_key_format_type *out)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < CODEC_KF__COUNT; i++) {
		if (strcmp(name, key_format_names[i]) == 0) {
			*out = (codec_key_format_type)i;
			return 0;
		}
	}
	return -1;
}

int codec_cause_parse(const char *name, codec_cause *out)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < CODEC_CAUSE__COUNT; i++) {
		if (strcmp(name, cause_names[i]) == 0) {
			*out = (codec_cause)i;
			return 0;
		}
	}
	return -1;
}

const char *codec_status_name(codec_status s)
{
	switch (s) {
	case CODEC_OK:
		return "ok";
	case CODEC_ERR_EMPTY:
		return "empty";
	case CODEC_ERR_TOO_LARGE:
		return "too_large";
	case CODEC_ERR_MAGIC:
		return "magic";
	case CODEC_ERR_FINGERPRINT:
		return "fingerprint";
	case CODEC_ERR_DATUM:
		return "datum";
	case CODEC_ERR_LIMIT:
		return "limit";
	case CODEC_ERR_WRONG_SCHEMA:
		return "wrong_schema";
	case CODEC_ERR_NOMEM:
		return "out_of_memory";
	case CODEC_ERR_SCHEMA_ID:
		return "schema_id";
	case CODEC_ERR_RESOLVE:
		return "resolve";
	case CODEC_ERR_UNAVAILABLE:
		return "registry_unavailable";
	}
	return "unknown";
}

void codec_limits_default(codec_limits *l)
{
	l->max_value_bytes = 1024 * 1024;
	l->max_services = 1000;
	l->max_string_bytes = 64 * 1024;
	l->max_map_entries = 256;
}

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

/* Join a namespace and a simple name; malloc'd, NULL when out of memory. */
static char *join_name(const char *ns, const char *name)
{
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
		char *full = join_name(ns, name);
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
		full = join_name(n, name);
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
	if (depth > MAX_DEPTH) {
		errstr_set(cx->errstr, cx->errstr_size, "schema nested deeper than %d", MAX_DEPTH);
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

/* ---- The walker: checks a datum against its writer schema ---- */

typedef struct {
	const unsigned char *p; /* the datum */
	size_t len;
	size_t pos;
	size_t mark; /* where the item being read began, for messages */
	size_t base; /* the header's length, for offsets from the value's start */
	const codec_limits *lim;
	codec_status status; /* why the walk stopped */
	char *errstr;
	size_t errstr_size;
} walker;

static int walk_fail(walker *w, codec_status st, const char *field, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

static int walk_fail(walker *w, codec_status st, const char *field, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	w->status = st;
	/* Offsets count from the start of the value, header included, which is
	 * what someone holding the DLQ record sees. */
	errstr_set(w->errstr, w->errstr_size, "field %s, byte %zu: %s", field ? field : "(datum)",
	           w->mark + w->base, msg);
	return -1;
}

/* A zigzag varint of at most max_bytes bytes whose value fits in bits bits. */
static int read_varint(walker *w, const char *field, int max_bytes, int bits, int64_t *out)
{
	uint64_t acc = 0;

	w->mark = w->pos;
	for (int i = 0; i < max_bytes; i++) {
		if (w->pos >= w->len)
			return walk_fail(w, CODEC_ERR_DATUM, field,
			                 "the value ends inside a number");
		unsigned b = w->p[w->pos++];
		if (i == max_bytes - 1 && (b >> (bits - 7 * i)) != 0)
			return walk_fail(w, CODEC_ERR_DATUM, field,
			                 "a number is longer than %d bytes or overflows",
			                 max_bytes);
		acc |= (uint64_t)(b & 0x7F) << (7 * i);
		if ((b & 0x80) == 0)
			break;
	}
	/* Zigzag, without converting an out-of-range unsigned to signed. */
	uint64_t mag = acc >> 1;
	*out = (acc & 1) ? -(int64_t)mag - 1 : (int64_t)mag;
	return 0;
}

static int read_long(walker *w, const char *field, int64_t *out)
{
	return read_varint(w, field, 10, 64, out);
}

static int read_int(walker *w, const char *field, int64_t *out)
{
	return read_varint(w, field, 5, 32, out);
}

/* A length-prefixed string or bytes; *s and *n give where it lies. */
static int walk_bytes(walker *w, const char *field, bool is_string, const unsigned char **s,
                      size_t *n)
{
	int64_t len;
	size_t at, start = w->pos;

	if (read_long(w, field, &len) != 0)
		return -1;
	w->mark = start;
	if (len < 0)
		return walk_fail(w, CODEC_ERR_DATUM, field, "negative length %lld", (long long)len);
	if ((uint64_t)len > w->len - w->pos)
		return walk_fail(w, CODEC_ERR_DATUM, field,
		                 "length %lld is more than the %zu bytes left", (long long)len,
		                 w->len - w->pos);
	if ((uint64_t)len > w->lim->max_string_bytes)
		return walk_fail(w, CODEC_ERR_LIMIT, field,
		                 "length %lld is over the limit of %zu bytes", (long long)len,
		                 w->lim->max_string_bytes);
	if (is_string) {
		utf8_verdict v = utf8_check(w->p + w->pos, (size_t)len, &at);
		if (v == UTF8_NUL)
			return walk_fail(w, CODEC_ERR_DATUM, field,
			                 "a NUL byte at offset %zu of a string", at);
		if (v == UTF8_BAD)
			return walk_fail(w, CODEC_ERR_DATUM, field,
			                 "invalid UTF-8 at offset %zu of a string", at);
	}
	if (s != NULL)
		*s = w->p + w->pos;
	if (n != NULL)
		*n = (size_t)len;
	w->pos += (size_t)len;
	return 0;
}

typedef struct {
	const unsigned char *p;
	size_t n;
} span;

static int span_cmp(const void *a, const void *b)
{
	const span *x = a, *y = b;
	int c = memcmp(x->p, y->p, x->n < y->n ? x->n : y->n);
	if (c != 0)
		return c;
	return (x->n > y->n) - (x->n < y->n);
}

/* The fewest bytes a value of the schema takes: 0 for null, empty records
 * and the like, which makes a block count unbounded by the bytes left. */
static size_t min_size(avro_schema_t s, int depth)
{
	if (depth > MAX_DEPTH)
		return 0;
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		return 0;
	case AVRO_FLOAT:
		return 4;
	case AVRO_DOUBLE:
		return 8;
	case AVRO_FIXED:
		return (size_t)avro_schema_fixed_size(s);
	case AVRO_RECORD: {
		size_t sum = 0;
		for (size_t i = 0; i < avro_schema_record_size(s); i++)
			sum +=
			    min_size(avro_schema_record_field_get_by_index(s, (int)i), depth + 1);
		return sum;
	}
	case AVRO_LINK:
		return min_size(avro_schema_link_target(s), depth + 1);
	default:
		return 1; /* every varint-prefixed form */
	}
}

static int walk_value(walker *w, avro_schema_t s, const char *field, int depth);

/* Arrays and maps: blocks of items, each block a count, and when the count is
 * negative its absolute value and the block's byte size; a zero count ends. */
static int walk_blocks(walker *w, avro_schema_t s, const char *field, int depth)
{
	bool is_map = avro_typeof(s) == AVRO_MAP;
	avro_schema_t item = is_map ? avro_schema_map_values(s) : avro_schema_array_items(s);
	size_t limit = SIZE_MAX;
	const char *limit_name = NULL;
	size_t item_min = (is_map ? 1 : 0) + min_size(item, depth + 1);
	size_t total = 0, map_mark = w->pos;
	span *keys = NULL;
	int rc = -1;

	if (is_map) {
		limit = w->lim->max_map_entries;
		limit_name = "max_map_entries";
	} else if (field != NULL && strcmp(field, SERVICES_FIELD) == 0) {
		limit = w->lim->max_services;
		limit_name = "max_services";
	}
	for (;;) {
		int64_t count, bytes = -1;
		size_t block_start, block_mark = w->pos;

		if (read_long(w, field, &count) != 0)
			goto fail;
		if (count == 0)
			break;
		if (count < 0) {
			if (count == INT64_MIN) {
				walk_fail(w, CODEC_ERR_DATUM, field, "block count out of range");
				goto fail;
			}
			count = -count;
			if (read_long(w, field, &bytes) != 0)
				goto fail;
			if (bytes < 0 || (uint64_t)bytes > w->len - w->pos) {
				walk_fail(w, CODEC_ERR_DATUM, field,
				          "block byte size %lld is not within the %zu bytes left",
				          (long long)bytes, w->len - w->pos);
				goto fail;
			}
		}
		w->mark = block_mark;
		if ((uint64_t)count > limit - total) {
			walk_fail(w, CODEC_ERR_LIMIT, field, "more than %s (%zu) items", limit_name,
			          limit);
			goto fail;
		}
		/* Refused before looping: a count that the bytes left cannot
		 * hold, or, for items that may take no bytes at all, a count
		 * over the value size (a billion nulls fit in one byte). */
		uint64_t room =
		    item_min > 0 ? (w->len - w->pos) / item_min : w->lim->max_value_bytes;
		if ((uint64_t)count > room) {
			walk_fail(w, CODEC_ERR_DATUM, field,
			          "a block of %lld items cannot fit in the %zu bytes left",
			          (long long)count, w->len - w->pos);
			goto fail;
		}
		if (is_map) {
			span *nk = realloc(keys, (total + (size_t)count) * sizeof *nk);
			if (nk == NULL) {
				walk_fail(w, CODEC_ERR_NOMEM, field, "out of memory");
				goto fail;
			}
			keys = nk;
		}
		block_start = w->pos;
		for (int64_t i = 0; i < count; i++) {
			if (is_map && walk_bytes(w, field, true, &keys[total + (size_t)i].p,
			                         &keys[total + (size_t)i].n) != 0)
				goto fail;
			if (walk_value(w, item, field, depth + 1) != 0)
				goto fail;
		}
		if (bytes >= 0 && w->pos - block_start != (uint64_t)bytes) {
			w->mark = block_mark;
			walk_fail(w, CODEC_ERR_DATUM, field,
			          "a block announced %lld bytes but its items take %zu",
			          (long long)bytes, w->pos - block_start);
			goto fail;
		}
		total += (size_t)count;
	}
	w->mark = map_mark;
	if (is_map && total > 1) {
		/* avro-c, like most readers, would keep one of two equal keys
		 * silently; what the sender meant is unknowable, so refuse. */
		qsort(keys, total, sizeof *keys, span_cmp);
		for (size_t i = 1; i < total; i++) {
			if (span_cmp(&keys[i - 1], &keys[i]) == 0) {
				walk_fail(w, CODEC_ERR_DATUM, field, "a map holds a key twice");
				goto fail;
			}
		}
	}
	rc = 0;
fail:
	free(keys);
	return rc;
}

static int walk_value(walker *w, avro_schema_t s, const char *field, int depth)
{
	int64_t v;

	w->mark = w->pos;
	if (depth > MAX_DEPTH)
		return walk_fail(w, CODEC_ERR_LIMIT, field, "data nested deeper than %d",
		                 MAX_DEPTH);
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		return 0;
	case AVRO_BOOLEAN:
		if (w->pos >= w->len)
			return walk_fail(w, CODEC_ERR_DATUM, field,
			                 "the value ends inside a boolean");
		if (w->p[w->pos] > 1)
			return walk_fail(w, CODEC_ERR_DATUM, field, "a boolean is not 0 or 1");
		w->pos++;
		return 0;
	case AVRO_INT32:
		return read_int(w, field, &v);
	case AVRO_INT64:
		return read_long(w, field, &v);
	case AVRO_FLOAT:
	case AVRO_DOUBLE:
	case AVRO_FIXED: {
		size_t n = avro_typeof(s) == AVRO_FLOAT    ? 4
		           : avro_typeof(s) == AVRO_DOUBLE ? 8
		                                           : (size_t)avro_schema_fixed_size(s);
		if (n > w->len - w->pos)
			return walk_fail(w, CODEC_ERR_DATUM, field,
			                 "the value ends inside a %zu-byte item", n);
		w->pos += n;
		return 0;
	}
	case AVRO_STRING:
		return walk_bytes(w, field, true, NULL, NULL);
	case AVRO_BYTES:
		return walk_bytes(w, field, false, NULL, NULL);
	case AVRO_ENUM:
		if (read_int(w, field, &v) != 0)
			return -1;
		if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
			return walk_fail(w, CODEC_ERR_DATUM, field,
			                 "enum index %lld is not one of the %d symbols",
			                 (long long)v, avro_schema_enum_number_of_symbols(s));
		return 0;
	case AVRO_UNION:
		if (read_long(w, field, &v) != 0)
			return -1;
		if (v < 0 || (uint64_t)v >= avro_schema_union_size(s))
			return walk_fail(w, CODEC_ERR_DATUM, field,
			                 "union branch %lld is not one of the %zu branches",
			                 (long long)v, avro_schema_union_size(s));
		return walk_value(w, avro_schema_union_branch(s, (int)v), field, depth + 1);
	case AVRO_RECORD:
		for (size_t i = 0; i < avro_schema_record_size(s); i++) {
			if (walk_value(w, avro_schema_record_field_get_by_index(s, (int)i),
			               avro_schema_record_field_name(s, (int)i), depth + 1) != 0)
				return -1;
		}
		return 0;
	case AVRO_ARRAY:
	case AVRO_MAP:
		return walk_blocks(w, s, field, depth);
	case AVRO_LINK:
		return walk_value(w, avro_schema_link_target(s), field, depth + 1);
	}
	return walk_fail(w, CODEC_ERR_DATUM, field, "unsupported schema type");
}

/* ---- Framing ---- */

static const known_schema *find_schema(const codec *c, uint64_t fp)
{
	for (size_t i = 0; i < c->schema_count; i++) {
		if (c->schemas[i].fingerprint == fp)
			return &c->schemas[i];
	}
	return NULL;
}

/* Check the single-object header. CODEC_OK with *ks set, or
 * CODEC_ERR_FINGERPRINT (header well-formed, schema unknown), or
 * CODEC_ERR_MAGIC. */
static codec_status check_frame(const codec *c, const unsigned char *v, size_t len,
                                const known_schema **ks, uint64_t *fp_out)
{
	uint64_t fp = 0;

	*ks = NULL;
	if (len < 2 || v[0] != 0xC3 || v[1] != 0x01 || len < HEADER_LEN)
		return CODEC_ERR_MAGIC;
	for (int i = 0; i < 8; i++)
		fp |= (uint64_t)v[2 + i] << (8 * i);
	*fp_out = fp;
	*ks = find_schema(c, fp);
	return *ks ? CODEC_OK : CODEC_ERR_FINGERPRINT;
}

static codec_status frame_error(const codec *c, codec_status st, const unsigned char *v, size_t len,
                                uint64_t fp, char *errstr, size_t errstr_size)
{
	switch (st) {
	case CODEC_ERR_EMPTY:
		errstr_set(errstr, errstr_size, "the value is empty");
		break;
	case CODEC_ERR_TOO_LARGE:
		errstr_set(errstr, errstr_size, "the value has %zu bytes, over the limit of %zu",
		           len, c->limits.max_value_bytes);
		break;
	case CODEC_ERR_MAGIC:
		if (len >= 2 && v[0] == 0xC3 && v[1] == 0x01)
			errstr_set(
			    errstr, errstr_size,
			    "the value ends inside the single-object header (%zu of %d bytes)", len,
			    HEADER_LEN);
		else if (v != NULL && len >= 1 && v[0] == 0x00)
			errstr_set(
			    errstr, errstr_size,
			    "the value is in the Confluent wire format, which needs a schema "
			    "registry (registry_url)");
		else
			errstr_set(errstr, errstr_size,
			           "the value is not Avro single-object encoded (no C3 01 marker)");
		break;
	case CODEC_ERR_FINGERPRINT:
		errstr_set(errstr, errstr_size, "unknown schema fingerprint %016llx",
		           (unsigned long long)fp);
		break;
	default:
		break;
	}
	return st;
}

/* ---- Copying out of avro-c values ---- */

/*
 * The datum was read with its own writer schema; these functions resolve it
 * to the current version by name, as Avro schema resolution does: fields by
 * field name, enums by symbol name, a field the writer's version lacks takes
 * the current schema's default (null, or the empty map). load_schemas()
 * checked that every version has the fields without defaults.
 */

static avro_schema_t deref(avro_schema_t s)
{
	while (s != NULL && avro_typeof(s) == AVRO_LINK)
		s = avro_schema_link_target(s);
	return s;
}

/* 0 and *out when rec has the field, 1 when its version lacks it, -1 when
 * avro-c fails. (Not avro_schema_record_field_get(): avro-c 1.11 returns an
 * uninitialized pointer for a name the record lacks.) */
static int get_field(avro_value_t *rec, const char *name, avro_value_t *out)
{
	if (avro_schema_record_field_get_index(deref(avro_value_get_schema(rec)), name) < 0)
		return 1;
	return avro_value_get_by_name(rec, name, out, NULL) == 0 ? 0 : -1;
}

/* Why a copy failed: out of memory, an enum symbol the current version does
 * not have, or else avro-c refusing to give what it built. */
typedef struct {
	bool nomem;
	const char *field;  /* set for an unknown symbol */
	const char *symbol; /* borrowed from the writer schema */
} copy_error;

static int out_of_memory(copy_error *e)
{
	e->nomem = true;
	return -1;
}

static int copy_string(avro_value_t *v, char **out, copy_error *e)
{
	const char *s = NULL;
	size_t n = 0;

	*out = NULL;
	if (avro_value_get_string(v, &s, &n) != 0)
		return -1;
	/* avro-c counts the terminating NUL in n. */
	if (s == NULL || n == 0)
		n = 1;
	*out = malloc(n);
	if (*out == NULL)
		return out_of_memory(e);
	if (n > 1)
		memcpy(*out, s, n - 1);
	(*out)[n - 1] = '\0';
	return 0;
}

static int field_string(avro_value_t *rec, const char *name, char **out, copy_error *e)
{
	avro_value_t f;
	*out = NULL;
	if (get_field(rec, name, &f) != 0)
		return -1;
	return copy_string(&f, out, e);
}

/* A ["null", "string"] union, or a plain string in some version, or a field
 * the version lacks: NULL for null or absent. */
static int field_optional_string(avro_value_t *rec, const char *name, char **out, copy_error *e)
{
	avro_value_t f, b;
	int rc;

	*out = NULL;
	rc = get_field(rec, name, &f);
	if (rc != 0)
		return rc > 0 ? 0 : -1;
	if (avro_value_get_type(&f) == AVRO_UNION) {
		if (avro_value_get_current_branch(&f, &b) != 0)
			return -1;
		f = b;
	}
	if (avro_value_get_type(&f) == AVRO_NULL)
		return 0;
	return copy_string(&f, out, e);
}

/* The symbol name of an enum value, per the writer's own schema. */
static const char *enum_symbol(avro_value_t *v)
{
	int idx;
	if (avro_value_get_type(v) != AVRO_ENUM || avro_value_get_enum(v, &idx) != 0)
		return NULL;
	return avro_schema_enum_get(deref(avro_value_get_schema(v)), idx);
}

static int unknown_symbol(copy_error *e, const char *field, const char *symbol)
{
	e->field = field;
	e->symbol = symbol;
	return -1;
}

static int copy_service(avro_value_t *item, codec_val_service *svc, copy_error *e)
{
	avro_value_t kf, ft, map;
	const char *sym;
	size_t n = 0;
	int rc;

	if (field_string(item, "valServiceId", &svc->val_service_id, e) != 0 ||
	    get_field(item, "keyFormat", &kf) != 0 || get_field(&kf, "formatType", &ft) != 0 ||
	    (sym = enum_symbol(&ft)) == NULL ||
	    field_optional_string(&kf, "formatVersion", &svc->format_version, e) != 0)
		return -1;
	if (codec_key_format_type_parse(sym, &svc->format_type) != 0)
		return unknown_symbol(e, "formatType", sym);
	rc = get_field(&kf, "content", &map);
	if (rc > 0)
		return 0; /* the default: {} */
	if (rc < 0 || avro_value_get_size(&map, &n) != 0)
		return -1;
	if (n == 0)
		return 0;
	svc->content = calloc(n, sizeof *svc->content);
	if (svc->content == NULL)
		return out_of_memory(e);
	for (size_t i = 0; i < n; i++) {
		avro_value_t v;
		const char *key = NULL;
		/* avro-c's generic map keeps entries in insertion order, which
		 * is wire order. */
		if (avro_value_get_by_index(&map, i, &v, &key) != 0 || key == NULL)
			return -1;
		svc->content_count = i + 1;
		svc->content[i].key = strdup(key);
		if (svc->content[i].key == NULL)
			return out_of_memory(e);
		if (copy_string(&v, &svc->content[i].value, e) != 0)
			return -1;
	}
	return 0;
}

static int copy_request(avro_value_t *rec, codec_request *r, copy_error *e)
{
	avro_value_t cred, arr, sent;
	size_t n = 0;

	if (field_string(rec, "requestId", &r->request_id, e) != 0 ||
	    field_string(rec, "requesterIdentity", &r->requester_identity, e) != 0 ||
	    field_string(rec, "endpoint", &r->endpoint, e) != 0 ||
	    get_field(rec, "credentials", &cred) != 0 ||
	    field_string(&cred, "accessToken", &r->access_token, e) != 0 ||
	    get_field(rec, "sentAt", &sent) != 0 || avro_value_get_long(&sent, &r->sent_at) != 0 ||
	    field_optional_string(rec, "suppFeat", &r->supp_feat, e) != 0 ||
	    get_field(rec, SERVICES_FIELD, &arr) != 0 || avro_value_get_size(&arr, &n) != 0)
		return -1;
	if (n == 0)
		return 0;
	r->services = calloc(n, sizeof *r->services);
	if (r->services == NULL)
		return out_of_memory(e);
	for (size_t i = 0; i < n; i++) {
		avro_value_t item;
		r->service_count = i + 1;
		if (avro_value_get_by_index(&arr, i, &item, NULL) != 0 ||
		    copy_service(&item, &r->services[i], e) != 0)
			return -1;
	}
	return 0;
}

static int copy_response(avro_value_t *rec, codec_response_owned *r, copy_error *e)
{
	avro_value_t res, cause, branch, at;
	const char *sym;
	int rc;

	if (field_string(rec, "requestId", &r->request_id, e) != 0 ||
	    field_string(rec, "requesterIdentity", &r->requester_identity, e) != 0 ||
	    get_field(rec, "result", &res) != 0 || (sym = enum_symbol(&res)) == NULL)
		return -1;
	if (strcmp(sym, result_names[CODEC_RESULT_SUCCESS]) == 0)
		r->result = CODEC_RESULT_SUCCESS;
	else if (strcmp(sym, result_names[CODEC_RESULT_FAILURE]) == 0)
		r->result = CODEC_RESULT_FAILURE;
	else
		return unknown_symbol(e, "result", sym);
	r->cause = CODEC_CAUSE_NONE;
	rc = get_field(rec, "cause", &cause);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		if (avro_value_get_type(&cause) == AVRO_UNION) {
			if (avro_value_get_current_branch(&cause, &branch) != 0)
				return -1;
			cause = branch;
		}
		if (avro_value_get_type(&cause) != AVRO_NULL) {
			if ((sym = enum_symbol(&cause)) == NULL)
				return -1;
			if (codec_cause_parse(sym, &r->cause) != 0)
				return unknown_symbol(e, "cause", sym);
		}
	}
	if (field_optional_string(rec, "detail", &r->detail, e) != 0 ||
	    field_string(rec, "kmsId", &r->kms_id, e) != 0 ||
	    get_field(rec, "processedAt", &at) != 0 ||
	    avro_value_get_long(&at, &r->processed_at) != 0)
		return -1;
	return 0;
}

/* Let avro-c build a value of the writer schema from a datum the walker
 * accepted: CODEC_OK, CODEC_ERR_NOMEM when avro-c ran out of memory (it says
 * so with ENOMEM), or CODEC_ERR_DATUM when it refused the datum; errstr is
 * filled on failure. */
static codec_status avro_decode(const known_schema *ks, const unsigned char *datum, size_t len,
                                avro_value_t *out, char *errstr, size_t errstr_size)
{
	avro_reader_t rd;
	int rc;

	rc = avro_generic_value_new(ks->cls, out);
	if (rc != 0)
		goto fail;
	rd = avro_reader_memory((const char *)datum, (int64_t)len);
	if (rd == NULL) {
		avro_value_decref(out);
		rc = ENOMEM; /* its only failure */
		goto fail;
	}
	rc = avro_value_read(rd, out);
	avro_reader_free(rd);
	if (rc != 0) {
		avro_value_decref(out);
		goto fail;
	}
	return CODEC_OK;
fail:
	if (rc == ENOMEM) {
		errstr_set(errstr, errstr_size, "out of memory while avro-c read the datum");
		return CODEC_ERR_NOMEM;
	}
	errstr_set(errstr, errstr_size, "avro-c could not read the datum: %s", avro_strerror());
	return CODEC_ERR_DATUM;
}

/* Fill errstr for a failed copy and say what it means. */
static codec_status copy_failed(const copy_error *e, char *errstr, size_t errstr_size)
{
	if (e->nomem) {
		errstr_set(errstr, errstr_size, "out of memory while copying the value");
		return CODEC_ERR_NOMEM;
	}
	if (e->symbol != NULL)
		errstr_set(
		    errstr, errstr_size,
		    "field %s: symbol %.64s of the writer's schema is not in the current one",
		    e->field, e->symbol);
	else
		errstr_set(errstr, errstr_size,
		           "avro-c could not give a field of the value it read");
	return CODEC_ERR_DATUM;
}

/* ---- Decoding ---- */

/* Read the leading string fields by position, as every request version
 * begins with requestId and requesterIdentity. Returns -1 when out of memory,
 * with nothing salvaged: a field that could be read but not kept would change
 * whether the sender gets a Result. */
static int salvage_read(const codec *c, const unsigned char *datum, size_t len, codec_salvage *sv)
{
	walker w = {.p = datum, .len = len, .lim = &c->limits};
	const unsigned char *s;
	size_t n;

	if (walk_bytes(&w, "requestId", true, &s, &n) != 0)
		return 0;
	sv->request_id = strndup((const char *)s, n);
	if (sv->request_id == NULL)
		goto oom;
	if (walk_bytes(&w, "requesterIdentity", true, &s, &n) != 0)
		return 0;
	sv->requester_identity = strndup((const char *)s, n);
	if (sv->requester_identity == NULL)
		goto oom;
	return 0;
oom:
	codec_salvage_free(sv);
	return -1;
}

/* Read a request datum of the current schema (after resolution, when the
 * writer's was another): walk it, let avro-c build it, copy it out. base is
 * where the datum began in its value, for messages. */
static codec_status read_request_datum(const codec *c, const unsigned char *datum, size_t len,
                                       size_t base, codec_request **out, char *errstr,
                                       size_t errstr_size)
{
	const known_schema *ks = c->request;
	codec_request *r = NULL;
	copy_error cerr = {0};
	avro_value_t rec;
	codec_status st;
	walker w = {.p = datum,
	            .len = len,
	            .base = base,
	            .lim = &c->limits,
	            .errstr = errstr,
	            .errstr_size = errstr_size};

	*out = NULL;
	if (walk_value(&w, ks->schema, NULL, 0) != 0)
		return w.status;
	if (w.pos != w.len) {
		errstr_set(errstr, errstr_size, "%zu trailing bytes after the datum",
		           w.len - w.pos);
		return CODEC_ERR_DATUM;
	}
	st = avro_decode(ks, w.p, w.len, &rec, errstr, errstr_size);
	if (st != CODEC_OK)
		return st;
	r = calloc(1, sizeof *r);
	if (r == NULL)
		cerr.nomem = true;
	if (r == NULL || copy_request(&rec, r, &cerr) != 0) {
		avro_value_decref(&rec);
		codec_request_free(r);
		return copy_failed(&cerr, errstr, errstr_size);
	}
	avro_value_decref(&rec);
	*out = r;
	return CODEC_OK;
}

static void resolve_limits_of(const codec *c, resolve_limits *rl)
{
	rl->max_string_bytes = c->limits.max_string_bytes;
	/* Defaults and promotions may make a value grow; bounded all the same. */
	rl->max_out_bytes = c->limits.max_value_bytes * 2;
	rl->max_items = c->limits.max_value_bytes;
}

/* A datum of another version of the request: resolved to the current
 * schema's encoding, then read as that. */
static codec_status read_resolved_request(const codec *c, const resolve_plan *plan,
                                          const unsigned char *datum, size_t len, size_t base,
                                          codec_request **out, char *errstr, size_t errstr_size)
{
	resolve_limits rl;
	unsigned char *cur = NULL;
	size_t cur_len = 0;
	codec_status st;
	char why[200];

	*out = NULL;
	resolve_limits_of(c, &rl);
	st = resolve_datum(plan, &rl, datum, len, base, &cur, &cur_len, errstr, errstr_size);
	if (st != CODEC_OK)
		return st;
	st = read_request_datum(c, cur, cur_len, 0, out, why, sizeof why);
	if (st != CODEC_OK)
		errstr_set(errstr, errstr_size, "the value resolved to the current schema: %s",
		           why);
	free(cur);
	return st;
}

codec_status codec_decode_request(const codec *c, const void *value, size_t len,
                                  codec_request **out, codec_salvage *salvage, char *errstr,
                                  size_t errstr_size)
{
	const unsigned char *v = value;
	const known_schema *ks = NULL;
	codec_status st, frame;
	uint64_t fp = 0;

	*out = NULL;
	if (salvage != NULL)
		memset(salvage, 0, sizeof *salvage);
	if (len == 0 || v == NULL)
		return frame_error(c, CODEC_ERR_EMPTY, v, len, fp, errstr, errstr_size);
	frame = check_frame(c, v, len, &ks, &fp);
	if (len > c->limits.max_value_bytes) {
		st = frame_error(c, CODEC_ERR_TOO_LARGE, v, len, fp, errstr, errstr_size);
		goto fail;
	}
	if (frame != CODEC_OK) {
		st = frame_error(c, frame, v, len, fp, errstr, errstr_size);
		goto fail;
	}
	if (ks->kind != KIND_REQUEST) {
		errstr_set(errstr, errstr_size, "schema %s is not a %s", ks->file, REQUEST_RECORD);
		st = CODEC_ERR_WRONG_SCHEMA;
		goto fail;
	}
	if (ks == c->request)
		st = read_request_datum(c, v + HEADER_LEN, len - HEADER_LEN, HEADER_LEN, out,
		                        errstr, errstr_size);
	else
		st = read_resolved_request(c, ks->plan, v + HEADER_LEN, len - HEADER_LEN,
		                           HEADER_LEN, out, errstr, errstr_size);
	if (st == CODEC_OK)
		return CODEC_OK;
fail:
	/* Salvage only what may be a request: not a value of a known other
	 * schema, nor one without a readable header; and not when memory ran
	 * out, which says nothing of the value. */
	if (salvage != NULL && st != CODEC_ERR_NOMEM &&
	    (frame == CODEC_OK || frame == CODEC_ERR_FINGERPRINT) &&
	    (ks == NULL || ks->kind == KIND_REQUEST) &&
	    salvage_read(c, v + HEADER_LEN, len - HEADER_LEN, salvage) != 0) {
		errstr_set(errstr, errstr_size, "out of memory while salvaging the leading fields");
		st = CODEC_ERR_NOMEM;
	}
	return st;
}

/* ---- The Confluent wire format ---- */

codec_framing codec_framing_of(const void *value, size_t len)
{
	const unsigned char *v = value;
	return v != NULL && len >= 1 && v[0] == 0x00 ? CODEC_FRAMING_CONFLUENT
	                                             : CODEC_FRAMING_SINGLE_OBJECT;
}

int codec_confluent_id(const void *value, size_t len, uint32_t *id)
{
	const unsigned char *v = value;
	if (v == NULL || len < CODEC_CONFLUENT_HEADER_LEN || v[0] != 0x00)
		return -1;
	*id = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | (uint32_t)v[4];
	return 0;
}

/* The checks every Confluent value passes before its writer matters:
 * CODEC_OK, or a status with errstr filled (*salvage_ok: whether the
 * leading fields may still be read). */
static codec_status confluent_frame(const codec *c, const codec_writer *w, const void *value,
                                    size_t len, schema_kind want, bool *salvage_ok, char *errstr,
                                    size_t errstr_size)
{
	uint32_t id = 0;

	*salvage_ok = false;
	if (value == NULL || len == 0) {
		errstr_set(errstr, errstr_size, "the value is empty");
		return CODEC_ERR_EMPTY;
	}
	if (codec_confluent_id(value, len, &id) != 0) {
		errstr_set(errstr, errstr_size,
		           "the value ends inside the Confluent header (%zu of %d bytes)", len,
		           CODEC_CONFLUENT_HEADER_LEN);
		return CODEC_ERR_MAGIC;
	}
	/* Unknown writer: read by position, as for an unknown fingerprint. */
	*salvage_ok = w == NULL || (w->kind == KIND_REQUEST && w->leading_ok);
	if (len > c->limits.max_value_bytes) {
		errstr_set(errstr, errstr_size, "the value has %zu bytes, over the limit of %zu",
		           len, c->limits.max_value_bytes);
		return CODEC_ERR_TOO_LARGE;
	}
	if (w == NULL) {
		errstr_set(errstr, errstr_size, "the registry has no schema of id %lu",
		           (unsigned long)id);
		return CODEC_ERR_SCHEMA_ID;
	}
	if (w->status != CODEC_OK) {
		errstr_set(errstr, errstr_size, "schema id %lu: %s", (unsigned long)id, w->message);
		return w->status;
	}
	if (w->kind != want) {
		errstr_set(errstr, errstr_size, "schema id %lu is not a %s", (unsigned long)id,
		           want == KIND_REQUEST ? REQUEST_RECORD : RESPONSE_RECORD);
		return CODEC_ERR_WRONG_SCHEMA;
	}
	return CODEC_OK;
}

codec_status codec_decode_request_confluent(const codec *c, const codec_writer *w,
                                            const void *value, size_t len, codec_request **out,
                                            codec_salvage *salvage, char *errstr,
                                            size_t errstr_size)
{
	const unsigned char *v = value;
	bool salvage_ok;
	codec_status st;

	*out = NULL;
	if (salvage != NULL)
		memset(salvage, 0, sizeof *salvage);
	st = confluent_frame(c, w, value, len, KIND_REQUEST, &salvage_ok, errstr, errstr_size);
	if (st == CODEC_OK)
		st = read_resolved_request(c, w->plan, v + CODEC_CONFLUENT_HEADER_LEN,
		                           len - CODEC_CONFLUENT_HEADER_LEN,
		                           CODEC_CONFLUENT_HEADER_LEN, out, errstr, errstr_size);
	if (st == CODEC_OK)
		return CODEC_OK;
	if (salvage != NULL && salvage_ok && st != CODEC_ERR_NOMEM &&
	    salvage_read(c, v + CODEC_CONFLUENT_HEADER_LEN, len - CODEC_CONFLUENT_HEADER_LEN,
	                 salvage) != 0) {
		errstr_set(errstr, errstr_size, "out of memory while salvaging the leading fields");
		st = CODEC_ERR_NOMEM;
	}
	return st;
}

void codec_request_free(codec_request *r)
{
	if (r == NULL)
		return;
	free(r->request_id);
	free(r->requester_identity);
	free(r->endpoint);
	free(r->access_token);
	for (size_t i = 0; i < r->service_count; i++) {
		codec_val_service *s = &r->services[i];
		free(s->val_service_id);
		free(s->format_version);
		for (size_t k = 0; k < s->content_count; k++) {
			free(s->content[k].key);
			free(s->content[k].value);
		}
		free(s->content);
	}
	free(r->services);
	free(r->supp_feat);
	free(r);
}

void codec_salvage_free(codec_salvage *s)
{
	if (s == NULL)
		return;
	free(s->request_id);
	free(s->requester_identity);
	s->request_id = NULL;
	s->requester_identity = NULL;
}

/* Read a response datum of the current schema, resolved first when plan is
 * not NULL. */
static codec_status read_response_datum(const codec *c, const resolve_plan *plan,
                                        const unsigned char *datum, size_t len, size_t base,
                                        codec_response_owned **out, char *errstr,
                                        size_t errstr_size)
{
	const known_schema *ks = c->response;
	codec_response_owned *r = NULL;
	unsigned char *cur = NULL;
	copy_error cerr = {0};
	avro_value_t rec;
	codec_status st;
	walker w;

	*out = NULL;
	if (plan != NULL) {
		resolve_limits rl;
		size_t cur_len = 0;
		resolve_limits_of(c, &rl);
		st =
		    resolve_datum(plan, &rl, datum, len, base, &cur, &cur_len, errstr, errstr_size);
		if (st != CODEC_OK)
			return st;
		datum = cur;
		len = cur_len;
		base = 0;
	}
	w = (walker){.p = datum,
	             .len = len,
	             .base = base,
	             .lim = &c->limits,
	             .errstr = errstr,
	             .errstr_size = errstr_size};
	if (walk_value(&w, ks->schema, NULL, 0) != 0) {
		st = w.status;
		goto done;
	}
	if (w.pos != w.len) {
		errstr_set(errstr, errstr_size, "%zu trailing bytes after the datum",
		           w.len - w.pos);
		st = CODEC_ERR_DATUM;
		goto done;
	}
	st = avro_decode(ks, w.p, w.len, &rec, errstr, errstr_size);
	if (st != CODEC_OK)
		goto done;
	r = calloc(1, sizeof *r);
	if (r == NULL)
		cerr.nomem = true;
	if (r == NULL || copy_response(&rec, r, &cerr) != 0) {
		avro_value_decref(&rec);
		codec_response_owned_free(r);
		st = copy_failed(&cerr, errstr, errstr_size);
		goto done;
	}
	avro_value_decref(&rec);
	*out = r;
	st = CODEC_OK;
done:
	free(cur);
	return st;
}

codec_status codec_decode_response(const codec *c, const void *value, size_t len,
                                   codec_response_owned **out, char *errstr, size_t errstr_size)
{
	const unsigned char *v = value;
	const known_schema *ks = NULL;
	codec_status frame;
	uint64_t fp = 0;

	*out = NULL;
	if (len == 0 || v == NULL)
		return frame_error(c, CODEC_ERR_EMPTY, v, len, fp, errstr, errstr_size);
	if (len > c->limits.max_value_bytes)
		return frame_error(c, CODEC_ERR_TOO_LARGE, v, len, fp, errstr, errstr_size);
	frame = check_frame(c, v, len, &ks, &fp);
	if (frame != CODEC_OK)
		return frame_error(c, frame, v, len, fp, errstr, errstr_size);
	if (ks->kind != KIND_RESPONSE) {
		errstr_set(errstr, errstr_size, "schema %s is not a %s", ks->file, RESPONSE_RECORD);
		return CODEC_ERR_WRONG_SCHEMA;
	}
	return read_response_datum(c, ks == c->response ? NULL : ks->plan, v + HEADER_LEN,
	                           len - HEADER_LEN, HEADER_LEN, out, errstr, errstr_size);
}

codec_status codec_decode_response_confluent(const codec *c, const codec_writer *w,
                                             const void *value, size_t len,
                                             codec_response_owned **out, char *errstr,
                                             size_t errstr_size)
{
	const unsigned char *v = value;
	bool salvage_ok;
	codec_status st;

	*out = NULL;
	st = confluent_frame(c, w, value, len, KIND_RESPONSE, &salvage_ok, errstr, errstr_size);
	if (st != CODEC_OK)
		return st;
	return read_response_datum(c, w->plan, v + CODEC_CONFLUENT_HEADER_LEN,
	                           len - CODEC_CONFLUENT_HEADER_LEN, CODEC_CONFLUENT_HEADER_LEN,
	                           out, errstr, errstr_size);
}

void codec_response_owned_free(codec_response_owned *r)
{
	if (r == NULL)
		return;
	free(r->request_id);
	free(r->requester_identity);
	free(r->detail);
	free(r->kms_id);
	free(r);
}

/* ---- Encoding ---- */

/* What we write must pass our own decoder: valid UTF-8 within the limit. */
static int check_out_string(const codec *c, const char *name, const char *s, char *errstr,
                            size_t errstr_size)
{
	size_t at;
	if (s == NULL) {
		errstr_set(errstr, errstr_size, "%s is missing", name);
		return -1;
	}
	size_t n = strlen(s);
	if (utf8_check((const unsigned char *)s, n, &at) != UTF8_OK) {
		errstr_set(errstr, errstr_size, "%s is not valid UTF-8 (byte %zu)", name, at);
		return -1;
	}
	if (n > c->limits.max_string_bytes) {
		errstr_set(errstr, errstr_size, "%s has %zu bytes, over the limit of %zu", name, n,
		           c->limits.max_string_bytes);
		return -1;
	}
	return 0;
}

static int set_string(avro_value_t *rec, const char *name, const char *s)
{
	avro_value_t f;
	if (avro_value_get_by_name(rec, name, &f, NULL) != 0)
		return -1;
	return avro_value_set_string(&f, s);
}

/* Select the branch of type t of a union value; *branch is that branch. */
static int set_branch_of_type(avro_value_t *u, avro_type_t t, avro_value_t *branch)
{
	avro_schema_t us = avro_value_get_schema(u);
	for (size_t i = 0; i < avro_schema_union_size(us); i++) {
		avro_schema_t b = avro_schema_union_branch(us, (int)i);
		if (avro_typeof(b) == t)
			return avro_value_set_branch(u, (int)i, branch);
	}
	return -1;
}

static int set_optional_string(avro_value_t *rec, const char *name, const char *s)
{
	avro_value_t u, b;
	if (avro_value_get_by_name(rec, name, &u, NULL) != 0)
		return -1;
	if (s == NULL)
		return set_branch_of_type(&u, AVRO_NULL, &b) != 0 || avro_value_set_null(&b) != 0
		           ? -1
		           : 0;
	return set_branch_of_type(&u, AVRO_STRING, &b) != 0 || avro_value_set_string(&b, s) != 0
	           ? -1
	           : 0;
}

static int set_long(avro_value_t *rec, const char *name, int64_t n)
{
	avro_value_t f;
	if (avro_value_get_by_name(rec, name, &f, NULL) != 0)
		return -1;
	return avro_value_set_long(&f, n);
}

/* Header and datum into one malloc'd buffer, framed as f says (NULL:
 * single-object). */
static int serialize(const known_schema *ks, const codec_frame *f, avro_value_t *v,
                     unsigned char **out, size_t *out_len, char *errstr, size_t errstr_size)
{
	size_t size = 0, hlen = HEADER_LEN;
	unsigned char *buf = NULL;
	avro_writer_t wr = NULL;
	bool confluent = f != NULL && f->framing == CODEC_FRAMING_CONFLUENT;

	if (avro_value_sizeof(v, &size) != 0) {
		errstr_set(errstr, errstr_size, "avro-c could not size the value: %s",
		           avro_strerror());
		return -1;
	}
	if (confluent)
		hlen = CODEC_CONFLUENT_HEADER_LEN;
	buf = malloc(hlen + size + 1); /* +1: never malloc(0)-like edge */
	if (buf == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		return -1;
	}
	if (confluent) {
		buf[0] = 0x00;
		for (int i = 0; i < 4; i++)
			buf[1 + i] = (unsigned char)(f->schema_id >> (8 * (3 - i)));
	} else {
		buf[0] = 0xC3;
		buf[1] = 0x01;
		for (int i = 0; i < 8; i++)
			buf[2 + i] = (unsigned char)(ks->fingerprint >> (8 * i));
	}
	wr = avro_writer_memory((const char *)buf + hlen, (int64_t)size);
	if (wr == NULL || avro_value_write(wr, v) != 0 || avro_writer_tell(wr) != (int64_t)size) {
		errstr_set(errstr, errstr_size, "avro-c could not write the value: %s",
		           avro_strerror());
		if (wr != NULL)
			avro_writer_free(wr);
		free(buf);
		return -1;
	}
	avro_writer_free(wr);
	*out = buf;
	*out_len = hlen + size;
	return 0;
}

static int fill_service(const codec *c, avro_value_t *item, const codec_val_service *s,
                        size_t index, char *errstr, size_t errstr_size)
{
	avro_value_t kf, ft, map;
	char name[64];

	(void)snprintf(name, sizeof name, "valServices[%zu].valServiceId", index);
	if (check_out_string(c, name, s->val_service_id, errstr, errstr_size) != 0)
		return -1;
	if ((int)s->format_type < 0 || s->format_type >= CODEC_KF__COUNT) {
		errstr_set(errstr, errstr_size, "valServices[%zu] has no valid formatType", index);
		return -1;
	}
	if (s->format_version != NULL) {
		(void)snprintf(name, sizeof name, "valServices[%zu].formatVersion", index);
		if (check_out_string(c, name, s->format_version, errstr, errstr_size) != 0)
			return -1;
	}
	if (set_string(item, "valServiceId", s->val_service_id) != 0 ||
	    avro_value_get_by_name(item, "keyFormat", &kf, NULL) != 0 ||
	    avro_value_get_by_name(&kf, "formatType", &ft, NULL) != 0 ||
	    avro_value_set_enum(&ft, (int)s->format_type) != 0 ||
	    set_optional_string(&kf, "formatVersion", s->format_version) != 0 ||
	    avro_value_get_by_name(&kf, "content", &map, NULL) != 0)
		goto avro_fail;
	if (s->content_count > 0 && s->content == NULL) {
		errstr_set(errstr, errstr_size, "valServices[%zu] has no content entries", index);
		return -1;
	}
	for (size_t k = 0; k < s->content_count; k++) {
		avro_value_t e;
		int is_new = 0;
		(void)snprintf(name, sizeof name, "valServices[%zu].content key", index);
		if (check_out_string(c, name, s->content[k].key, errstr, errstr_size) != 0)
			return -1;
		(void)snprintf(name, sizeof name, "valServices[%zu].content value", index);
		if (check_out_string(c, name, s->content[k].value, errstr, errstr_size) != 0)
			return -1;
		if (avro_value_add(&map, s->content[k].key, &e, NULL, &is_new) != 0)
			goto avro_fail;
		if (!is_new) {
			errstr_set(errstr, errstr_size,
			           "valServices[%zu].content holds a key twice", index);
			return -1;
		}
		if (avro_value_set_string(&e, s->content[k].value) != 0)
			goto avro_fail;
	}
	return 0;
avro_fail:
	errstr_set(errstr, errstr_size, "avro-c: %s", avro_strerror());
	return -1;
}

int codec_encode_request(const codec *c, const codec_request *r, unsigned char **out,
                         size_t *out_len, char *errstr, size_t errstr_size)
{
	return codec_encode_request_as(c, NULL, r, out, out_len, errstr, errstr_size);
}

int codec_encode_request_as(const codec *c, const codec_frame *f, const codec_request *r,
                            unsigned char **out, size_t *out_len, char *errstr, size_t errstr_size)
{
	avro_value_t rec, cred, arr;
	int rc = -1;

	*out = NULL;
	*out_len = 0;
	if (check_out_string(c, "requestId", r->request_id, errstr, errstr_size) != 0 ||
	    check_out_string(c, "requesterIdentity", r->requester_identity, errstr, errstr_size) !=
	        0 ||
	    check_out_string(c, "endpoint", r->endpoint, errstr, errstr_size) != 0 ||
	    check_out_string(c, "accessToken", r->access_token, errstr, errstr_size) != 0 ||
	    (r->supp_feat != NULL &&
	     check_out_string(c, "suppFeat", r->supp_feat, errstr, errstr_size) != 0))
		return -1;
	if (r->service_count > 0 && r->services == NULL) {
		errstr_set(errstr, errstr_size, "valServices is missing");
		return -1;
	}
	if (avro_generic_value_new(c->request->cls, &rec) != 0) {
		errstr_set(errstr, errstr_size, "avro-c: %s", avro_strerror());
		return -1;
	}
	if (set_string(&rec, "requestId", r->request_id) != 0 ||
	    set_string(&rec, "requesterIdentity", r->requester_identity) != 0 ||
	    set_string(&rec, "endpoint", r->endpoint) != 0 ||
	    avro_value_get_by_name(&rec, "credentials", &cred, NULL) != 0 ||
	    set_string(&cred, "accessToken", r->access_token) != 0 ||
	    set_long(&rec, "sentAt", r->sent_at) != 0 ||
	    set_optional_string(&rec, "suppFeat", r->supp_feat) != 0 ||
	    avro_value_get_by_name(&rec, SERVICES_FIELD, &arr, NULL) != 0) {
		errstr_set(errstr, errstr_size, "avro-c: %s", avro_strerror());
		goto fail;
	}
	for (size_t i = 0; i < r->service_count; i++) {
		avro_value_t item;
		if (avro_value_append(&arr, &item, NULL) != 0) {
			errstr_set(errstr, errstr_size, "avro-c: %s", avro_strerror());
			goto fail;
		}
		if (fill_service(c, &item, &r->services[i], i, errstr, errstr_size) != 0)
			goto fail;
	}
	rc = serialize(c->request, f, &rec, out, out_len, errstr, errstr_size);
fail:
	avro_value_decref(&rec);
	return rc;
}

int codec_encode_response(const codec *c, const codec_response *r, unsigned char **out,
                          size_t *out_len, char *errstr, size_t errstr_size)
{
	return codec_encode_response_as(c, NULL, r, out, out_len, errstr, errstr_size);
}

int codec_encode_response_as(const codec *c, const codec_frame *f, const codec_response *r,
                             unsigned char **out, size_t *out_len, char *errstr, size_t errstr_size)
{
	avro_value_t rec, res, cause, branch;
	int rc = -1;

	*out = NULL;
	*out_len = 0;
	if (check_out_string(c, "requestId", r->request_id, errstr, errstr_size) != 0 ||
	    check_out_string(c, "requesterIdentity", r->requester_identity, errstr, errstr_size) !=
	        0 ||
	    check_out_string(c, "kmsId", r->kms_id, errstr, errstr_size) != 0 ||
	    (r->detail != NULL &&
	     check_out_string(c, "detail", r->detail, errstr, errstr_size) != 0))
		return -1;
	if (codec_result_name(r->result) == NULL || codec_cause_name(r->cause) == NULL) {
		errstr_set(errstr, errstr_size, "result or cause out of range");
		return -1;
	}
	if (avro_generic_value_new(c->response->cls, &rec) != 0) {
		errstr_set(errstr, errstr_size, "avro-c: %s", avro_strerror());
		return -1;
	}
	/* Every field is set explicitly, so the bytes depend on r alone. */
	if (set_string(&rec, "requestId", r->request_id) != 0 ||
	    set_string(&rec, "requesterIdentity", r->requester_identity) != 0 ||
	    avro_value_get_by_name(&rec, "result", &res, NULL) != 0 ||
	    avro_value_set_enum(&res, (int)r->result) != 0 ||
	    avro_value_get_by_name(&rec, "cause", &cause, NULL) != 0 ||
	    set_optional_string(&rec, "detail", r->detail) != 0 ||
	    set_string(&rec, "kmsId", r->kms_id) != 0 ||
	    set_long(&rec, "processedAt", r->processed_at) != 0)
		goto avro_fail;
	if (r->cause == CODEC_CAUSE_NONE) {
		if (set_branch_of_type(&cause, AVRO_NULL, &branch) != 0 ||
		    avro_value_set_null(&branch) != 0)
			goto avro_fail;
	} else if (set_branch_of_type(&cause, AVRO_ENUM, &branch) != 0 ||
	           avro_value_set_enum(&branch, (int)r->cause) != 0) {
		goto avro_fail;
	}
	rc = serialize(c->response, f, &rec, out, out_len, errstr, errstr_size);
	goto done;
avro_fail:
	errstr_set(errstr, errstr_size, "avro-c: %s", avro_strerror());
done:
	avro_value_decref(&rec);
	return rc;
}

/* ---- Loading the schemas ---- */

/* The field's schema, links followed; NULL when the record lacks it. */
static avro_schema_t field_schema(avro_schema_t rec, const char *name)
{
	int i = avro_schema_record_field_get_index(rec, name);
	return i < 0 ? NULL : deref(avro_schema_record_field_get_by_index(rec, i));
}

/* The field's schema if the record has it with type t, else NULL. */
static avro_schema_t want_field(avro_schema_t rec, const char *name, avro_type_t t)
{
	avro_schema_t f = field_schema(rec, name);
	return f != NULL && avro_typeof(f) == t ? f : NULL;
}

/* A field the copy code reads as optional: a two-branch union of null and t
 * in either order. An older version may also lack it (its default applies)
 * or hold a plain t; only when !strict. *branch is the t schema, or NULL. */
static bool want_optional(avro_schema_t rec, const char *name, avro_type_t t, bool strict,
                          avro_schema_t *branch)
{
	avro_schema_t f = field_schema(rec, name), a, b;

	*branch = NULL;
	if (f == NULL)
		return !strict;
	if (avro_typeof(f) == t) {
		*branch = f;
		return !strict;
	}
	if (avro_typeof(f) != AVRO_UNION || avro_schema_union_size(f) != 2)
		return false;
	a = deref(avro_schema_union_branch(f, 0));
	b = deref(avro_schema_union_branch(f, 1));
	if (avro_typeof(a) == AVRO_NULL && avro_typeof(b) == t)
		*branch = b;
	else if (avro_typeof(b) == AVRO_NULL && avro_typeof(a) == t)
		*branch = a;
	else
		return false;
	return true;
}

/* The current version must list exactly the symbols of codec.h, in order:
 * the encoder writes codec.h's numbers as indexes. An older version may have
 * others; a value holding one this version lacks fails to decode. */
static bool want_symbols(avro_schema_t e, const char *const *names, int count, bool strict)
{
	if (e == NULL || avro_typeof(e) != AVRO_ENUM)
		return false;
	if (!strict)
		return true;
	if (avro_schema_enum_number_of_symbols(e) != count)
		return false;
	for (int i = 0; i < count; i++) {
		const char *s = avro_schema_enum_get(e, i);
		if (s == NULL || strcmp(s, names[i]) != 0)
			return false;
	}
	return true;
}

/* Every version begins with the two fields that a salvage reads and that
 * key the topics. */
static bool leading_fields_ok(avro_schema_t s)
{
	avro_schema_t a, b;
	if (avro_schema_record_size(s) < 2)
		return false;
	a = deref(avro_schema_record_field_get_by_index(s, 0));
	b = deref(avro_schema_record_field_get_by_index(s, 1));
	return strcmp(avro_schema_record_field_name(s, 0), "requestId") == 0 &&
	       strcmp(avro_schema_record_field_name(s, 1), "requesterIdentity") == 0 &&
	       avro_typeof(a) == AVRO_STRING && avro_typeof(b) == AVRO_STRING;
}

/* Does the request schema have what the copy code reads? strict for the
 * current version: exactly the fields and symbols the code knows, since the
 * encoder fills every field. Older versions may lack optional fields and
 * carry fields the current one dropped. */
static bool request_shape_ok(avro_schema_t s, bool strict)
{
	avro_schema_t cred, arr, item, kf, map, opt;

	if ((strict && avro_schema_record_size(s) != 7) || !leading_fields_ok(s) ||
	    want_field(s, "endpoint", AVRO_STRING) == NULL ||
	    (cred = want_field(s, "credentials", AVRO_RECORD)) == NULL ||
	    (strict && avro_schema_record_size(cred) != 1) ||
	    want_field(cred, "accessToken", AVRO_STRING) == NULL ||
	    (arr = want_field(s, SERVICES_FIELD, AVRO_ARRAY)) == NULL ||
	    want_field(s, "sentAt", AVRO_INT64) == NULL ||
	    !want_optional(s, "suppFeat", AVRO_STRING, strict, &opt))
		return false;
	item = deref(avro_schema_array_items(arr));
	if (avro_typeof(item) != AVRO_RECORD || (strict && avro_schema_record_size(item) != 2) ||
	    want_field(item, "valServiceId", AVRO_STRING) == NULL ||
	    (kf = want_field(item, "keyFormat", AVRO_RECORD)) == NULL ||
	    (strict && avro_schema_record_size(kf) != 3) ||
	    !want_symbols(want_field(kf, "formatType", AVRO_ENUM), key_format_names,
	                  CODEC_KF__COUNT, strict) ||
	    !want_optional(kf, "formatVersion", AVRO_STRING, strict, &opt))
		return false;
	map = field_schema(kf, "content");
	if (map == NULL)
		return !strict;
	return avro_typeof(map) == AVRO_MAP &&
	       avro_typeof(deref(avro_schema_map_values(map))) == AVRO_STRING;
}

static bool response_shape_ok(avro_schema_t s, bool strict)
{
	avro_schema_t cause = NULL, opt;

	if ((strict && avro_schema_record_size(s) != 7) || !leading_fields_ok(s) ||
	    !want_symbols(want_field(s, "result", AVRO_ENUM), result_names, 2, strict) ||
	    !want_optional(s, "cause", AVRO_ENUM, strict, &cause) ||
	    (cause != NULL && !want_symbols(cause, cause_names, CODEC_CAUSE__COUNT, strict)) ||
	    !want_optional(s, "detail", AVRO_STRING, strict, &opt) ||
	    want_field(s, "kmsId", AVRO_STRING) == NULL ||
	    want_field(s, "processedAt", AVRO_INT64) == NULL)
		return false;
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Parse one schema file into c->schemas[c->schema_count]. */
static int load_schema(codec *c, const embedded_file *f, char *errstr, size_t errstr_size)
{
	char *canonical = NULL;
	avro_schema_t s = NULL;
	uint64_t fp;
	known_schema *ks;
	char err[256];

	canonical = codec_canonical_form(f->data, err, sizeof err);
	if (canonical == NULL) {
		errstr_set(errstr, errstr_size, "schema %s: %s", f->name, err);
		return -1;
	}
	fp = codec_crc64_avro(canonical, strlen(canonical));
	free(canonical);
	if (find_schema(c, fp) != NULL)
		return 0; /* the same schema twice: one entry is enough */
	if (avro_schema_from_json_length(f->data, f->len, &s) != 0) {
		errstr_set(errstr, errstr_size, "schema %s: avro-c: %s", f->name, avro_strerror());
		return -1;
	}
	ks = &c->schemas[c->schema_count++];
	ks->fingerprint = fp;
	ks->file = f->name;
	ks->json = f->data;
	ks->schema = s;
	ks->kind = KIND_OTHER;
	ks->rs = resolve_schema_parse(f->data, f->len, NULL, err, sizeof err);
	if (ks->rs == NULL) {
		errstr_set(errstr, errstr_size, "schema %s: %s", f->name, err);
		return -1;
	}
	if (avro_typeof(s) == AVRO_RECORD) {
		const char *name = avro_schema_name(s);
		if (strcmp(name, REQUEST_RECORD) == 0)
			ks->kind = KIND_REQUEST;
		else if (strcmp(name, RESPONSE_RECORD) == 0)
			ks->kind = KIND_RESPONSE;
	}
	return 0;
}

/* Point the codec at the current schema of the kind, the one in the file
 * named after its record, check that it has exactly what this module knows,
 * and make every other version of the kind resolvable to it. */
static int pick_current(codec *c, schema_kind kind, const char *record, char *errstr,
                        size_t errstr_size)
{
	char file[128], err[256];
	known_schema *cur = NULL;

	(void)snprintf(file, sizeof file, "%s.avsc", record);
	for (size_t i = 0; i < c->schema_count; i++) {
		if (c->schemas[i].kind == kind && strcmp(c->schemas[i].file, file) == 0)
			cur = &c->schemas[i];
	}
	if (cur == NULL) {
		errstr_set(errstr, errstr_size, "no schema file %s among the schemas", file);
		return -1;
	}
	if (kind == KIND_REQUEST ? !request_shape_ok(cur->schema, true)
	                         : !response_shape_ok(cur->schema, true)) {
		errstr_set(errstr, errstr_size,
		           "schema %s does not have exactly the fields and symbols the codec knows",
		           cur->file);
		return -1;
	}
	cur->cls = avro_generic_class_from_schema(cur->schema);
	if (cur->cls == NULL) {
		errstr_set(errstr, errstr_size, "schema %s: avro-c: %s", cur->file,
		           avro_strerror());
		return -1;
	}
	for (size_t i = 0; i < c->schema_count; i++) {
		known_schema *ks = &c->schemas[i];
		if (ks->kind != kind || ks == cur)
			continue;
		/* A salvage reads the leading fields by position, whatever the
		 * version. */
		if (!leading_fields_ok(ks->schema)) {
			errstr_set(errstr, errstr_size,
			           "schema %s does not begin with the string fields requestId and "
			           "requesterIdentity",
			           ks->file);
			return -1;
		}
		ks->plan = resolve_plan_new(ks->rs, cur->rs, NULL, err, sizeof err);
		if (ks->plan == NULL) {
			errstr_set(errstr, errstr_size, "schema %s cannot be read as %s: %s",
			           ks->file, cur->file, err);
			return -1;
		}
	}
	if (kind == KIND_REQUEST)
		c->request = cur;
	else
		c->response = cur;
	return 0;
}

codec *codec_new_from_files(const embedded_file *files, size_t count, const codec_limits *limits,
                            char *errstr, size_t errstr_size)
{
	codec *c = calloc(1, sizeof *c);

	if (c == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		return NULL;
	}
	codec_limits_default(&c->limits);
	if (limits != NULL) {
		/* A zero limit keeps its default: no value could pass a zero. */
		if (limits->max_value_bytes)
			c->limits.max_value_bytes = limits->max_value_bytes;
		if (limits->max_services)
			c->limits.max_services = limits->max_services;
		if (limits->max_string_bytes)
			c->limits.max_string_bytes = limits->max_string_bytes;
		if (limits->max_map_entries)
			c->limits.max_map_entries = limits->max_map_entries;
	}
	c->schemas = calloc(count + 1, sizeof *c->schemas);
	if (c->schemas == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < count; i++) {
		if (files[i].name == NULL || files[i].data == NULL ||
		    !ends_with(files[i].name, ".avsc"))
			continue;
		if (load_schema(c, &files[i], errstr, errstr_size) != 0)
			goto fail;
	}
	if (pick_current(c, KIND_REQUEST, REQUEST_RECORD, errstr, errstr_size) != 0 ||
	    pick_current(c, KIND_RESPONSE, RESPONSE_RECORD, errstr, errstr_size) != 0)
		goto fail;
	return c;
fail:
	codec_destroy(c);
	return NULL;
}

codec *codec_new(const codec_limits *limits, char *errstr, size_t errstr_size)
{
	return codec_new_from_files(embedded_schemas, embedded_schemas_count, limits, errstr,
	                            errstr_size);
}

static void free_files(embedded_file *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)(uintptr_t)files[i].name);
		free((char *)(uintptr_t)files[i].data);
	}
	free(files);
}

static int avsc_filter(const struct dirent *d)
{
	return d->d_name[0] != '.' && ends_with(d->d_name, ".avsc");
}

codec *codec_new_with_dir(const codec_limits *limits, const char *dir, char *errstr,
                          size_t errstr_size)
{
	struct dirent **names = NULL;
	embedded_file *files = NULL, *extra = NULL;
	size_t total = embedded_schemas_count, nextra = 0;
	codec *c = NULL;
	int n;

	if (dir == NULL || *dir == '\0')
		return codec_new(limits, errstr, errstr_size);
	n = scandir(dir, &names, avsc_filter, alphasort);
	if (n < 0) {
		errstr_set(errstr, errstr_size, "cannot read the folder %s: %s", dir,
		           strerror(errno));
		return NULL;
	}
	extra = calloc((size_t)n + 1, sizeof *extra);
	files = calloc(total + (size_t)n + 1, sizeof *files);
	if (extra == NULL || files == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < embedded_schemas_count; i++)
		files[i] = embedded_schemas[i];
	for (int i = 0; i < n; i++) {
		char path[4096];
		size_t len = 0;
		for (size_t k = 0; k < embedded_schemas_count; k++) {
			if (strcmp(embedded_schemas[k].name, names[i]->d_name) == 0) {
				errstr_set(errstr, errstr_size,
				           "%s/%s has the name of a schema compiled in", dir,
				           names[i]->d_name);
				goto done;
			}
		}
		if (snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name) >=
		    (int)sizeof path) {
			errstr_set(errstr, errstr_size, "a path in %s is too long", dir);
			goto done;
		}
		char *data = file_read(path, RESOLVE_MAX_SCHEMA_BYTES, &len, errstr, errstr_size);
		if (data == NULL)
			goto done;
		extra[nextra].data = data;
		extra[nextra].len = len;
		extra[nextra].name = strdup(names[i]->d_name);
		nextra++;
		if (extra[nextra - 1].name == NULL) {
			errstr_set(errstr, errstr_size, "out of memory");
			goto done;
		}
		files[total++] = extra[nextra - 1];
	}
	c = codec_new_from_files(files, total, limits, errstr, errstr_size);
	if (c != NULL) {
		c->owned = extra;
		c->nowned = nextra;
		extra = NULL;
	}
done:
	if (extra != NULL)
		free_files(extra, nextra);
	free(files);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return c;
}

void codec_destroy(codec *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->schema_count; i++) {
		if (c->schemas[i].cls != NULL)
			avro_value_iface_decref(c->schemas[i].cls);
		resolve_plan_destroy(c->schemas[i].plan);
		resolve_schema_destroy(c->schemas[i].rs);
		avro_schema_decref(c->schemas[i].schema);
	}
	free(c->schemas);
	free_files(c->owned, c->nowned);
	free(c);
}

uint64_t codec_request_fingerprint(const codec *c)
{
	return c->request->fingerprint;
}

uint64_t codec_response_fingerprint(const codec *c)
{
	return c->response->fingerprint;
}

const char *codec_request_schema_json(const codec *c)
{
	return c->request->json;
}

const char *codec_response_schema_json(const codec *c)
{
	return c->response->json;
}

/* ---- Writers from elsewhere ---- */

/* A writer that refuses every value with st and the message. */
static codec_status writer_refuses(codec_writer *w, codec_status st, const char *why)
{
	w->status = st;
	(void)snprintf(w->message, sizeof w->message, "%s", why);
	return CODEC_OK;
}

codec_status codec_writer_new(const codec *c, const char *json, size_t len, codec_writer **out,
                              char *errstr, size_t errstr_size)
{
	codec_writer *w = calloc(1, sizeof *w);
	const known_schema *cur;
	const char *name;
	char err[200];
	int nomem = 0;

	*out = NULL;
	if (w == NULL)
		goto oom;
	w->rs = resolve_schema_parse(json, len, &nomem, err, sizeof err);
	if (w->rs == NULL) {
		if (nomem)
			goto oom;
		writer_refuses(w, CODEC_ERR_WRONG_SCHEMA, "not a valid Avro schema");
		goto done;
	}
	name = resolve_schema_record_name(w->rs);
	if (name == NULL) {
		writer_refuses(w, CODEC_ERR_WRONG_SCHEMA, "the schema is not a record");
		goto done;
	}
	/* The record's kind by its unqualified name, as resolution matches
	 * records. */
	const char *simple = strrchr(name, '.') ? strrchr(name, '.') + 1 : name;
	if (strcmp(simple, REQUEST_RECORD) == 0) {
		w->kind = KIND_REQUEST;
		cur = c->request;
		/* what a salvage reads by position */
		w->leading_ok =
		    resolve_schema_leading_strings(w->rs, "requestId", "requesterIdentity") == 1;
	} else if (strcmp(simple, RESPONSE_RECORD) == 0) {
		w->kind = KIND_RESPONSE;
		cur = c->response;
	} else {
		char why[160];
		(void)snprintf(why, sizeof why, "the schema is the record %.100s, of neither kind",
		               name);
		writer_refuses(w, CODEC_ERR_WRONG_SCHEMA, why);
		goto done;
	}
	w->plan = resolve_plan_new(w->rs, cur->rs, &nomem, err, sizeof err);
	if (w->plan == NULL) {
		if (nomem)
			goto oom;
		char why[200];
		(void)snprintf(why, sizeof why, "cannot be read as %s: %.150s", cur->file, err);
		writer_refuses(w, CODEC_ERR_RESOLVE, why);
	}
done:
	*out = w;
	return CODEC_OK;
oom:
	codec_writer_destroy(w);
	errstr_set(errstr, errstr_size, "out of memory");
	return CODEC_ERR_NOMEM;
}

void codec_writer_destroy(codec_writer *w)
{
	if (w == NULL)
		return;
	resolve_plan_destroy(w->plan);
	resolve_schema_destroy(w->rs);
	free(w);
}

codec_status codec_writer_status(const codec_writer *w)
{
	return w->status;
}
