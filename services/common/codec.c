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
 * encoding by the resolve module, with the same defences, and then read like
 * any. An allocation that fails anywhere on that path (the walker, avro-c,
 * the copy, the salvage) is CODEC_ERR_NOMEM and never a verdict on the
 * value: the sender is not at fault, and its value must not go to the DLQ.
 *
 * This file holds the codec itself: the names of the schema's symbols, the
 * limits, and loading the schema files into a codec, each checked to have
 * what the module knows. The other jobs live in the codec_*.c files listed
 * in codec_int.h.
 */
#include "codec.h"

#include <avro.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "embedded.h"
#include "errstr.h"
#include "file.h"
#include "resolve.h"

static const char *const key_format_names[CODEC_KF__COUNT] = {
    "RAW", "OPAQUE",     "PKCS1", "PKCS8", "X509", "EC_PRIVATE_KEY", "TRANSPARENT_SYMMETRIC_KEY",
    "JWK", "MIKEY_SAKKE"};
static const char *const result_names[] = {"SUCCESS", "FAILURE"};
static const char *const cause_names[CODEC_CAUSE__COUNT] = {
    "INVALID_REQUEST",        "UNAUTHORIZED",        "NOT_ALLOWED_BY_SLA",
    "KEY_FORMAT_NOT_ALLOWED", "REQUEST_ID_CONFLICT", "INTERNAL_ERROR"};

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

/* ---- Loading the schemas ---- */

const codec_schema *codec_find_schema(const codec *c, uint64_t fp)
{
	for (size_t i = 0; i < c->schema_count; i++) {
		if (c->schemas[i].fingerprint == fp)
			return &c->schemas[i];
	}
	return NULL;
}

/* The field's schema, links followed; NULL when the record lacks it. */
static avro_schema_t field_schema(avro_schema_t rec, const char *name)
{
	int i = avro_schema_record_field_get_index(rec, name);
	return i < 0 ? NULL : codec_deref(avro_schema_record_field_get_by_index(rec, i));
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
	a = codec_deref(avro_schema_union_branch(f, 0));
	b = codec_deref(avro_schema_union_branch(f, 1));
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
	a = codec_deref(avro_schema_record_field_get_by_index(s, 0));
	b = codec_deref(avro_schema_record_field_get_by_index(s, 1));
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
	    (arr = want_field(s, CODEC_SERVICES_FIELD, AVRO_ARRAY)) == NULL ||
	    want_field(s, "sentAt", AVRO_INT64) == NULL ||
	    !want_optional(s, "suppFeat", AVRO_STRING, strict, &opt))
		return false;
	item = codec_deref(avro_schema_array_items(arr));
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
	       avro_typeof(codec_deref(avro_schema_map_values(map))) == AVRO_STRING;
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
	codec_schema *ks;
	char err[256];

	canonical = codec_canonical_form(f->data, err, sizeof err);
	if (canonical == NULL) {
		errstr_set(errstr, errstr_size, "schema %s: %s", f->name, err);
		return -1;
	}
	fp = codec_crc64_avro(canonical, strlen(canonical));
	free(canonical);
	if (codec_find_schema(c, fp) != NULL)
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
	ks->kind = CODEC_KIND_OTHER;
	ks->rs = resolve_schema_parse(f->data, f->len, NULL, err, sizeof err);
	if (ks->rs == NULL) {
		errstr_set(errstr, errstr_size, "schema %s: %s", f->name, err);
		return -1;
	}
	if (avro_typeof(s) == AVRO_RECORD) {
		const char *name = avro_schema_name(s);
		if (strcmp(name, CODEC_REQUEST_RECORD) == 0)
			ks->kind = CODEC_KIND_REQUEST;
		else if (strcmp(name, CODEC_RESPONSE_RECORD) == 0)
			ks->kind = CODEC_KIND_RESPONSE;
	}
	return 0;
}

/* Point the codec at the current schema of the kind, the one in the file
 * named after its record, check that it has exactly what this module knows,
 * and make every other version of the kind resolvable to it. */
static int pick_current(codec *c, codec_kind kind, const char *record, char *errstr,
                        size_t errstr_size)
{
	char file[128], err[256];
	codec_schema *cur = NULL;

	(void)snprintf(file, sizeof file, "%s.avsc", record);
	for (size_t i = 0; i < c->schema_count; i++) {
		if (c->schemas[i].kind == kind && strcmp(c->schemas[i].file, file) == 0)
			cur = &c->schemas[i];
	}
	if (cur == NULL) {
		errstr_set(errstr, errstr_size, "no schema file %s among the schemas", file);
		return -1;
	}
	if (kind == CODEC_KIND_REQUEST ? !request_shape_ok(cur->schema, true)
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
		codec_schema *ks = &c->schemas[i];
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
	if (kind == CODEC_KIND_REQUEST)
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
	if (pick_current(c, CODEC_KIND_REQUEST, CODEC_REQUEST_RECORD, errstr, errstr_size) != 0 ||
	    pick_current(c, CODEC_KIND_RESPONSE, CODEC_RESPONSE_RECORD, errstr, errstr_size) != 0)
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
