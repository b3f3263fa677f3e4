/*
 * trust: whom the KM-S trusts to sign access tokens, with which keys, and
 * for which VAL service providers. It is read from the issuers file, a JSON
 * array of entries, one per key source of an issuer:
 *
 *   {"iss": "https://as.a.example", "vsp_ids": ["vsp-a"],
 *    "kid": "a1", "public_key_file": "a1.pub.pem"}              a PEM key
 *   {"iss": ..., "vsp_ids": "*", "jwks_file": "keys.json"}      a JWK Set file
 *   {"iss": ..., "vsp_ids": [...], "jwks_uri": "https://...",   a JWK Set URI
 *    "jwks_refresh_s": 300, "jwks_max_stale_s": 3600,
 *    "jwks_timeout_ms": 5000, "jwks_refetch_min_s": 30,
 *    "jwks_ca_file": "ca.pem"}
 *
 * Relative paths are taken from the issuers file's folder. An issuer may
 * have several PEM entries (each with a kid); a JWKS source is its issuer's
 * only entry. "vsp_ids" binds the issuer to the providers its tokens may
 * name (or "*", said explicitly); with more than one issuer every issuer
 * must have it, and entries of one issuer must agree on it. Unknown members
 * are refused, so a misspelt name is an error rather than a default.
 *
 * Loading is whole or nothing: a file with any fault (including a PEM or
 * JWKS file it names) changes nothing. A JWKS URI is fetched by a refresher
 * thread every jwks_refresh_s, and at once (rate-limited) when a token names
 * a kid its issuer's set lacks; a fetch that fails or brings a broken
 * document keeps the last good set. What the refresher brings is adopted by
 * the consumer thread, between batches, through trust_poll().
 *
 * Every function but the refresher's own work runs on the one thread that
 * owns the trust (the KM-S's consumer thread).
 */
#ifndef KMS_TRUST_H
#define KMS_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include "authz.h"
#include "jwt.h"

#if defined(__GNUC__)
#define TRUST_MUST_CHECK __attribute__((warn_unused_result))
#else
#define TRUST_MUST_CHECK
#endif

typedef struct trust trust;

typedef struct {
	unsigned alg_mask;      /* the verifier's allow-list, (1u << jwt_alg) */
	size_t max_token_bytes; /* as for jwt_verifier_new() */
} trust_settings;

/* An empty trust (every token refused). Caller frees with trust_destroy(),
 * which also stops the refresher. NULL with errstr filled on failure. */
trust *trust_new(const trust_settings *settings, char *errstr, size_t errstr_size) TRUST_MUST_CHECK;
void trust_destroy(trust *t); /* NULL is a no-op */

/* Read the issuers file at path and put it in force, whole: PEM and JWKS
 * files are read now; a JWKS URI issuer already known (same iss and URI)
 * keeps its last good keys, a new one has none until its first fetch; every
 * JWKS URI is fetched again soon. On any fault nothing changes and -1 is
 * returned with errstr filled (one line naming the file and the entry). */
int trust_load(trust *t, const char *path, char *errstr, size_t errstr_size) TRUST_MUST_CHECK;

/* Start the refresher thread and wait, at most wait_ms, until every JWKS
 * URI has been tried once; then adopt what came. Returns 0, or -1 with
 * errstr filled when the thread cannot start. */
int trust_start(trust *t, int64_t wait_ms, char *errstr, size_t errstr_size) TRUST_MUST_CHECK;

/* Adopt the key sets the refresher brought since the last call. Returns 1
 * when the verifier changed (the caller then drops what it cached about the
 * old one), else 0. */
int trust_poll(trust *t);

/* After token was refused: when it names its issuer's JWKS URI key that the
 * trust lacks (an unknown kid, or no key yet), fetch that issuer's set now,
 * unless one was fetched for a token less than jwks_refetch_min_s ago, and
 * adopt it. Waits at most the issuer's jwks_timeout_ms. Returns 1 when the
 * verifier changed (the caller checks the token again), else 0. */
int trust_refresh_for_token(trust *t, const char *token);

/* The verifier and the bindings in force: borrowed, valid until the next
 * trust_load(), trust_poll(), trust_refresh_for_token() or trust_destroy(). */
const jwt_verifier *trust_verifier(const trust *t);
const authz_issuer *trust_issuers(const trust *t, size_t *n);

/* Counts the verifier's changes; starts at 0 (nothing loaded). */
uint64_t trust_generation(const trust *t);

/* How many JWKS URI issuers have keys older than their jwks_max_stale_s, or
 * none yet; their iss, comma-separated, in which (cut to fit). */
size_t trust_stale(trust *t, char *which, size_t which_size);

#endif
