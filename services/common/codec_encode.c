/*
 * codec_encode: requests (valctl and the tests) and responses (the KM-S's
 * Results) written in the current schema, single-object or Confluent
 * framed. What is written must pass our own decoder, so the encoder refuses
 * what the decoder would (bad UTF-8, a string over the limit, a map key
 * twice). Every field is set explicitly: the same struct gives the same
 * bytes.
 */
#include "codec.h"

#include <avro.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "errstr.h"
#include "utf8.h"

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
static int serialize(const codec_schema *ks, const codec_frame *f, avro_value_t *v,
                     unsigned char **out, size_t *out_len, char *errstr, size_t errstr_size)
{
	unsigned char hdr[CODEC_HEADER_LEN];
	size_t size = 0, hlen;
	unsigned char *buf = NULL;
	avro_writer_t wr = NULL;

	if (avro_value_sizeof(v, &size) != 0) {
		errstr_set(errstr, errstr_size, "avro-c could not size the value: %s",
		           avro_strerror());
		return -1;
	}
	hlen = codec_header_write(ks, f, hdr);
	buf = malloc(hlen + size + 1); /* +1: never malloc(0)-like edge */
	if (buf == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		return -1;
	}
	memcpy(buf, hdr, hlen);
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
	    avro_value_get_by_name(&rec, CODEC_SERVICES_FIELD, &arr, NULL) != 0) {
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
