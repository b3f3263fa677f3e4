/*
 * resign: re-signing the access token of a recorded request, for valctl
 * replay --resign.
 */
#ifndef VALCTL_RESIGN_H
#define VALCTL_RESIGN_H

#include <stddef.h>
#include <stdint.h>

typedef struct valctl_resigner valctl_resigner;

/* Re-mint tokens with the private key in key_file under issuer iss and key
 * id kid (NULL: no kid). verify_file (NULL: none) is an issuers file as the
 * KM-S reads it: when given, only tokens whose signature verifies against
 * it are re-minted. NULL with errstr filled. */
valctl_resigner *valctl_resigner_new(const char *key_file, const char *iss, const char *kid,
                                     const char *verify_file, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void valctl_resigner_destroy(valctl_resigner *r); /* NULL is a no-op */

typedef enum {
	VALCTL_RESIGN_DONE = 0,    /* *out holds the value with a new token */
	VALCTL_RESIGN_NOT_REQUEST, /* not a request that decodes: kept as it is */
	VALCTL_RESIGN_TOKEN_KEPT,  /* a request whose token is not re-minted */
	VALCTL_RESIGN_ERROR = -1   /* out of memory or signing failed: errstr */
} valctl_resign_result;

/* The value with its access token re-minted: the same header members but
 * alg and kid, the same claims but iss (= the resigner's) and the time
 * claims iat, nbf and exp moved by shift_s seconds, signed with the key;
 * every other byte of the value as it was (the token is replaced where it
 * lies in the Avro datum, in either framing). On VALCTL_RESIGN_DONE *out
 * is malloc'd (caller frees); otherwise *out is NULL and *why says why the
 * value is kept (a static string). */
valctl_resign_result valctl_resign_value(const valctl_resigner *r, const unsigned char *value,
                                         size_t len, int64_t shift_s, unsigned char **out,
                                         size_t *out_len, const char **why, char *errstr,
                                         size_t errstr_size) __attribute__((warn_unused_result));

#endif
