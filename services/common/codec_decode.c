/*
 * codec_decode: a value in, a request or a response out. The header names
 * the writer schema; a datum of the current schema is walked, built by
 * avro-c and copied out; a datum of any other version is first rewritten
 * into the current one's encoding by the resolve module, then read the
 * same way. When a request cannot be decoded, its leading fields are
 * salvaged by position where that is safe, so that the sender may still be
 * answered.
 */
#include "codec.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "datum.h"
#include "errstr.h"
#include "resolve.h"

/* Read the leading string fields by position, as every request version
 * begins with requestId and requesterIdentity. Returns -1 when out of memory,
 * with nothing salvaged: a field that could be read but not kept would change
 * whether the sender gets a Result. */
static int salvage_read(const codec *c, const unsigned char *datum, size_t len, codec_salvage *sv)
{
	datum_cursor in = {.p = datum, .len = len};
	size_t max = c->limits.max_string_bytes;
	const unsigned char *s;
	size_t n;

	if (datum_read_bytes(&in, "requestId", DATUM_UTF8_NO_NUL, max, &s, &n) != 0)
		return 0;
	sv->request_id = strndup((const char *)s, n);
	if (sv->request_id == NULL)
		goto oom;
	if (datum_read_bytes(&in, "requesterIdentity", DATUM_UTF8_NO_NUL, max, &s, &n) != 0)
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
	codec_status st;

	*out = NULL;
	st =
	    codec_walk_datum(&c->limits, c->request->schema, datum, len, base, errstr, errstr_size);
	if (st != CODEC_OK)
		return st;
	return codec_copy_request(c->request, datum, len, out, errstr, errstr_size);
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
	const codec_schema *ks = NULL;
	codec_status st, frame;
	uint64_t fp = 0;

	*out = NULL;
	if (salvage != NULL)
		memset(salvage, 0, sizeof *salvage);
	if (len == 0 || v == NULL)
		return codec_header_error(c, CODEC_ERR_EMPTY, v, len, fp, errstr, errstr_size);
	frame = codec_header_check(c, v, len, &ks, &fp);
	if (len > c->limits.max_value_bytes) {
		st = codec_header_error(c, CODEC_ERR_TOO_LARGE, v, len, fp, errstr, errstr_size);
		goto fail;
	}
	if (frame != CODEC_OK) {
		st = codec_header_error(c, frame, v, len, fp, errstr, errstr_size);
		goto fail;
	}
	if (ks->kind != CODEC_KIND_REQUEST) {
		errstr_set(errstr, errstr_size, "schema %s is not a %s", ks->file,
		           CODEC_REQUEST_RECORD);
		st = CODEC_ERR_WRONG_SCHEMA;
		goto fail;
	}
	if (ks == c->request)
		st = read_request_datum(c, v + CODEC_HEADER_LEN, len - CODEC_HEADER_LEN,
		                        CODEC_HEADER_LEN, out, errstr, errstr_size);
	else
		st =
		    read_resolved_request(c, ks->plan, v + CODEC_HEADER_LEN, len - CODEC_HEADER_LEN,
		                          CODEC_HEADER_LEN, out, errstr, errstr_size);
	if (st == CODEC_OK)
		return CODEC_OK;
fail:
	/* Salvage only what may be a request: not a value of a known other
	 * schema, nor one without a readable header; and not when memory ran
	 * out, which says nothing of the value. */
	if (salvage != NULL && st != CODEC_ERR_NOMEM &&
	    (frame == CODEC_OK || frame == CODEC_ERR_FINGERPRINT) &&
	    (ks == NULL || ks->kind == CODEC_KIND_REQUEST) &&
	    salvage_read(c, v + CODEC_HEADER_LEN, len - CODEC_HEADER_LEN, salvage) != 0) {
		errstr_set(errstr, errstr_size, "out of memory while salvaging the leading fields");
		st = CODEC_ERR_NOMEM;
	}
	return st;
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
	st = codec_confluent_check(c, w, value, len, CODEC_KIND_REQUEST, &salvage_ok, errstr,
	                           errstr_size);
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
	unsigned char *cur = NULL;
	codec_status st;

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
	st = codec_walk_datum(&c->limits, c->response->schema, datum, len, base, errstr,
	                      errstr_size);
	if (st == CODEC_OK)
		st = codec_copy_response(c->response, datum, len, out, errstr, errstr_size);
	free(cur);
	return st;
}

codec_status codec_decode_response(const codec *c, const void *value, size_t len,
                                   codec_response_owned **out, char *errstr, size_t errstr_size)
{
	const unsigned char *v = value;
	const codec_schema *ks = NULL;
	codec_status frame;
	uint64_t fp = 0;

	*out = NULL;
	if (len == 0 || v == NULL)
		return codec_header_error(c, CODEC_ERR_EMPTY, v, len, fp, errstr, errstr_size);
	if (len > c->limits.max_value_bytes)
		return codec_header_error(c, CODEC_ERR_TOO_LARGE, v, len, fp, errstr, errstr_size);
	frame = codec_header_check(c, v, len, &ks, &fp);
	if (frame != CODEC_OK)
		return codec_header_error(c, frame, v, len, fp, errstr, errstr_size);
	if (ks->kind != CODEC_KIND_RESPONSE) {
		errstr_set(errstr, errstr_size, "schema %s is not a %s", ks->file,
		           CODEC_RESPONSE_RECORD);
		return CODEC_ERR_WRONG_SCHEMA;
	}
	return read_response_datum(c, ks == c->response ? NULL : ks->plan, v + CODEC_HEADER_LEN,
	                           len - CODEC_HEADER_LEN, CODEC_HEADER_LEN, out, errstr,
	                           errstr_size);
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
	st = codec_confluent_check(c, w, value, len, CODEC_KIND_RESPONSE, &salvage_ok, errstr,
	                           errstr_size);
	if (st != CODEC_OK)
		return st;
	return read_response_datum(c, w->plan, v + CODEC_CONFLUENT_HEADER_LEN,
	                           len - CODEC_CONFLUENT_HEADER_LEN, CODEC_CONFLUENT_HEADER_LEN,
	                           out, errstr, errstr_size);
}
