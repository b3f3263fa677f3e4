/*
 * registry: a client of a schema registry's Confluent-compatible API
 * (Apicurio Registry's /apis/ccompat/v7, or Confluent's own), over HTTP with
 * libcurl.
 *
 * It fetches a writer schema by the id a Confluent-framed value carries and
 * keeps it, made into a codec_writer (ids are immutable, so an answer is
 * kept for good, bounded in count); it looks up, and registers, a schema
 * under a subject; it sets a subject's compatibility. The decoding helpers
 * put the two together: a Confluent-framed value in, a request or response
 * out, or CODEC_ERR_UNAVAILABLE when the registry could not be asked (no
 * verdict on the value: decode it again later).
 *
 * Every answer is hostile input: bodies are bounded, JSON parsed with
 * jansson, schemas checked by the resolve module. A handle is used by one
 * thread.
 */
#ifndef KMS_REGISTRY_H
#define KMS_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#if defined(__GNUC__)
#define REGISTRY_MUST_CHECK __attribute__((warn_unused_result))
#else
#define REGISTRY_MUST_CHECK
#endif

typedef enum {
	REGISTRY_OK = 0,
	REGISTRY_NOT_FOUND,   /* 404: no such id, subject or schema */
	REGISTRY_REFUSED,     /* 409 or 422: incompatible or invalid schema */
	REGISTRY_UNAVAILABLE, /* no connection, a time-out, 5xx, 429 */
	REGISTRY_BAD_ANSWER,  /* an answer that is not what the API promises */
	REGISTRY_NOMEM
} registry_status;

typedef struct registry registry;

/* A client of the registry at url (its Confluent-compatible API's base, e.g.
 * http://127.0.0.1:8080/apis/ccompat/v7); schemas are made into writers of
 * codec c, which is borrowed and must outlive the client. timeout_ms bounds
 * each HTTP exchange. Caller frees with registry_destroy(). NULL with errstr
 * filled when the URL is not http(s) or libcurl cannot start. */
registry *registry_new(const char *url, const codec *c, long timeout_ms, char *errstr,
                       size_t errstr_size) REGISTRY_MUST_CHECK;
void registry_destroy(registry *r); /* NULL is a no-op */

/* While offline, calls that would ask the registry answer
 * REGISTRY_UNAVAILABLE at once (what is kept is still given): a caller that
 * just saw an outage need not wait out a time-out per value. */
void registry_set_offline(registry *r, int offline);

/* The id of schema_json under subject: looked up, and registered first when
 * absent and register_missing is set (REGISTRY_NOT_FOUND otherwise).
 * REGISTRY_REFUSED when the registry will not take it (its compatibility
 * rule). *registered says whether this call registered it (may be NULL). */
registry_status registry_schema_id(registry *r, const char *subject, const char *schema_json,
                                   int register_missing, uint32_t *id, int *registered,
                                   char *errstr, size_t errstr_size) REGISTRY_MUST_CHECK;

/* Set the subject's compatibility level (e.g. "BACKWARD"). */
registry_status registry_set_compatibility(registry *r, const char *subject, const char *level,
                                           char *errstr, size_t errstr_size) REGISTRY_MUST_CHECK;

/* Decode a Confluent-framed value, its writer fetched as needed. As
 * codec_decode_request_confluent(), plus CODEC_ERR_UNAVAILABLE when the
 * registry could not be asked (errstr says why; nothing salvaged). */
codec_status registry_decode_request(registry *r, const void *value, size_t len,
                                     codec_request **out, codec_salvage *salvage, char *errstr,
                                     size_t errstr_size) REGISTRY_MUST_CHECK;
codec_status registry_decode_response(registry *r, const void *value, size_t len,
                                      codec_response_owned **out, char *errstr,
                                      size_t errstr_size) REGISTRY_MUST_CHECK;

#endif
