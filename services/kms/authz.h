/*
 * authz: the token half of the contract's authorization rules (1 to 3). Pure:
 * no I/O, so it is tested without Kafka or PostgreSQL. The SLA half (rules 4
 * and 5) needs the database and lives in the store.
 */
#ifndef KMS_AUTHZ_H
#define KMS_AUTHZ_H

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"
#include "tokcache.h"

/* AUTHZ_ERROR is not a decision: the token could not be checked (out of
 * memory), and says nothing about the request. The caller must decide the
 * request again later, never answer it. */
typedef enum { AUTHZ_ALLOW = 0, AUTHZ_DENY = 1, AUTHZ_ERROR = 2 } authz_decision;

/* An issuer and the VAL service providers whose vsp_id its tokens may name. */
typedef struct {
	const char *iss;
	int any;                    /* "*": every provider */
	const char *const *vsp_ids; /* n_vsp_ids names when any is 0 */
	size_t n_vsp_ids;
} authz_issuer;

typedef struct {
	const jwt_verifier *verifier; /* borrowed */
	const char *scope;            /* required scope, "ss-kpp" by default */
	int64_t leeway_s;             /* at most 30 */
	/* Borrowed, optional (NULL: every token is verified at every use):
	 * tokens this verifier has verified, so that a reused token is not
	 * verified again. Must only ever be used with this verifier. */
	tokcache *cache;
	/* Borrowed, optional: the issuers' bindings to providers. NULL (and
	 * n_issuers 0): a token's vsp_id is not held against its issuer. Else
	 * a token whose issuer is not listed here, or whose vsp_id is not among
	 * its issuer's, is denied. */
	const authz_issuer *issuers;
	size_t n_issuers;
} authz_policy;

/* Decide whether the token authorizes requester_identity. On AUTHZ_ALLOW,
 * vsp_id (size vsp_id_size) receives the token's vsp_id claim. On AUTHZ_DENY,
 * detail receives one sentence for the Result (never the token). On
 * AUTHZ_ERROR, detail says what failed, for the log only. Every check that
 * depends on the time or the request runs at every call, whether the
 * token's signature was verified now or found in the cache. */
authz_decision authz_check(const authz_policy *p, const char *token, const char *requester_identity,
                           int64_t now_s, char *vsp_id, size_t vsp_id_size, char *detail,
                           size_t detail_size) __attribute__((warn_unused_result));

#endif
