/*
 * token: the access tokens valctl mints, shared by valctl token and valctl
 * fleet (token.c, which also holds both subcommands token and keygen).
 */
#ifndef VALCTL_TOKEN_H
#define VALCTL_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "jwt.h"

typedef struct {
	const char *iss;
	const char *client_id;
	const char *vsp_id;
	const char *scope; /* space-separated */
	int64_t ttl_s;
	int skeyprov; /* 1: SKeyProv true; 0: no SKeyProv claim */
} valctl_token_claims;

/* The payload of an access token as a new JSON object (iat, nbf = now,
 * exp = now + ttl, a random jti); NULL with errstr filled. Caller decrefs. */
json_t *valctl_token_payload(const valctl_token_claims *tc, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* Sign payload with key_pem; a malloc'd token or NULL with errstr filled. */
char *valctl_token_sign(const char *key_pem, jwt_alg alg, const char *kid, const json_t *payload,
                        char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

#endif
