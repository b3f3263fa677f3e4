/*
 * codec_copy: what avro-c builds, copied out into the plain structs of
 * codec.h, so that nothing else in the service depends on avro-c. avro-c
 * only ever sees a datum the walker accepted.
 *
 * The copy goes by name, as Avro schema resolution does: fields by field
 * name, enums by symbol name, a field the schema lacks takes the current
 * schema's default (null, or the empty map); loading the schemas (codec.c)
 * checked that every version has the fields without defaults. A failed
 * allocation is told apart from everything else, since it is no verdict on
 * the value.
 */
#include "codec.h"

#include <avro.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "errstr.h"

/* 0 and *out when rec has the field, 1 when its version lacks it, -1 when
 * avro-c fails. (Not avro_schema_record_field_get(): avro-c 1.11 returns an
 * uninitialized pointer for a name the record lacks.) */
static int get_field(avro_value_t *rec, const char *name, avro_value_t *out)
{
	if (avro_schema_record_field_get_index(codec_deref(avro_value_get_schema(rec)), name) < 0)
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
	return avro_schema_enum_get(codec_deref(avro_value_get_schema(v)), idx);
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

static int fill_request(avro_value_t *rec, codec_request *r, copy_error *e)
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
	    get_field(rec, CODEC_SERVICES_FIELD, &arr) != 0 || avro_value_get_size(&arr, &n) != 0)
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

static int fill_response(avro_value_t *rec, codec_response_owned *r, copy_error *e)
{
	avro_value_t res, cause, branch, at;
	const char *sym;
	int rc;

	if (field_string(rec, "requestId", &r->request_id, e) != 0 ||
	    field_string(rec, "requesterIdentity", &r->requester_identity, e) != 0 ||
	    get_field(rec, "result", &res) != 0 || (sym = enum_symbol(&res)) == NULL)
		return -1;
	if (strcmp(sym, codec_result_name(CODEC_RESULT_SUCCESS)) == 0)
		r->result = CODEC_RESULT_SUCCESS;
	else if (strcmp(sym, codec_result_name(CODEC_RESULT_FAILURE)) == 0)
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
static codec_status avro_decode(const codec_schema *ks, const unsigned char *datum, size_t len,
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

/* A new request copied out of rec into *(codec_request **)out. */
static int new_request(avro_value_t *rec, void *out, copy_error *e)
{
	codec_request *r = calloc(1, sizeof *r);

	if (r == NULL)
		return out_of_memory(e);
	if (fill_request(rec, r, e) != 0) {
		codec_request_free(r);
		return -1;
	}
	*(codec_request **)out = r;
	return 0;
}

/* A new response copied out of rec into *(codec_response_owned **)out. */
static int new_response(avro_value_t *rec, void *out, copy_error *e)
{
	codec_response_owned *r = calloc(1, sizeof *r);

	if (r == NULL)
		return out_of_memory(e);
	if (fill_response(rec, r, e) != 0) {
		codec_response_owned_free(r);
		return -1;
	}
	*(codec_response_owned **)out = r;
	return 0;
}

/* avro-c's value of the datum, handed to copy (new_request() or
 * new_response()), which fills out. */
static codec_status read_and_copy(const codec_schema *ks, const unsigned char *datum, size_t len,
                                  int (*copy)(avro_value_t *, void *, copy_error *), void *out,
                                  char *errstr, size_t errstr_size)
{
	copy_error cerr = {0};
	avro_value_t rec;
	codec_status st;
	int rc;

	st = avro_decode(ks, datum, len, &rec, errstr, errstr_size);
	if (st != CODEC_OK)
		return st;
	rc = copy(&rec, out, &cerr);
	avro_value_decref(&rec);
	return rc == 0 ? CODEC_OK : copy_failed(&cerr, errstr, errstr_size);
}

codec_status codec_copy_request(const codec_schema *ks, const unsigned char *datum, size_t len,
                                codec_request **out, char *errstr, size_t errstr_size)
{
	*out = NULL;
	return read_and_copy(ks, datum, len, new_request, out, errstr, errstr_size);
}

codec_status codec_copy_response(const codec_schema *ks, const unsigned char *datum, size_t len,
                                 codec_response_owned **out, char *errstr, size_t errstr_size)
{
	*out = NULL;
	return read_and_copy(ks, datum, len, new_response, out, errstr, errstr_size);
}

/* The frees of what the copy-out allocates. */

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
