/*
 * validate: the form of a decoded request, checked before anything else
 * (contract: INVALID_REQUEST), and the hash of its content that makes
 * idempotency by requestId possible. Pure: no I/O.
 */
#ifndef KMS_VALIDATE_H
#define KMS_VALIDATE_H

#include <stddef.h>

#include "codec.h"

typedef struct {
	size_t max_services;       /* most VAL services in one request */
	size_t max_identity_bytes; /* requesterIdentity, valServiceId */
	size_t max_endpoint_bytes;
	size_t max_field_bytes; /* formatVersion, content keys and values, suppFeat */
} validate_limits;

void validate_limits_default(validate_limits *l);

/* Is requestId a well-formed UUID (8-4-4-4-12 hexadecimal digits)? */
int validate_uuid(const char *s);

/* Is s an absolute URI (RFC 3986: scheme ":" hier-part, no fragment, no
 * spaces or control characters) with a non-empty hier-part? */
int validate_absolute_uri(const char *s);

/* Check the request's form. Returns 0 when valid; -1 with detail filled with
 * one sentence (never a secret) when not. */
int validate_request(const codec_request *r, const validate_limits *l, char *detail,
                     size_t detail_size) __attribute__((warn_unused_result));

/* SHA-256 over the request's content: requesterIdentity, endpoint, the VAL
 * services in order (ID, format type, format version, content entries sorted
 * by key) and suppFeat. Not the token, which a VAL server may renew between
 * retries, nor sentAt, which a retry may restamp. Every field is
 * length-prefixed, so no two contents share a hash input. Returns 0, or -1
 * when the digest cannot be computed (out of memory, OpenSSL failing): out
 * is then zeroed and must not be used, since idempotency would compare it;
 * the request must be decided again later. */
int validate_content_hash(const codec_request *r, unsigned char out[32])
    __attribute__((warn_unused_result));

#endif
