/*
 * jwt: compact JWS access tokens, signed (for development and tests) and
 * verified (by the KM-S), with OpenSSL and jansson.
 *
 * Verification is strict: the header must name an algorithm from the
 * allow-list and, when several keys are trusted, a kid; "none" and HMAC
 * algorithms are never accepted, whatever the allow-list says; the key's type
 * must match the algorithm (no algorithm confusion); header and payload must be
 * JSON objects without duplicate members; base64url must be canonical and
 * unpadded; the whole token is bounded in size.
 *
 * The code is in one file per job: jwt_b64url.c (base64url), jwt_keys.c
 * (algorithms, key classes, PEM text), jwt_sign.c (signing), jwt_verifier.c
 * (the trusted keys) and jwt_verify.c (verification); jwt_int.h is what they
 * share.
 */
#ifndef KMS_JWT_H
#define KMS_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#if defined(__GNUC__)
#define JWT_MUST_CHECK __attribute__((warn_unused_result))
#else
#define JWT_MUST_CHECK
#endif

/* Supported asymmetric algorithms. */
typedef enum {
	JWT_ALG_ES256 = 0,
	JWT_ALG_ES384,
	JWT_ALG_RS256,
	JWT_ALG_PS256,
	JWT_ALG_EDDSA, /* Ed25519 */
	JWT_ALG__COUNT
} jwt_alg;

const char *jwt_alg_name(jwt_alg a);
/* Returns 0 and *out, or -1 for an unknown or unsupported name. */
int jwt_alg_parse(const char *name, jwt_alg *out) JWT_MUST_CHECK;

/* ---- signing (valctl token, tests) ---- */

/* Sign a token: header {"alg","typ":"JWT","kid"} (kid omitted when NULL) and
 * the given payload, a JSON object as text, used verbatim. key_pem is a PEM
 * private key whose type fits alg. Returns a malloc'd token the caller frees,
 * or NULL with errstr filled. */
char *jwt_sign(const char *key_pem, jwt_alg alg, const char *kid, const char *payload_json,
               char *errstr, size_t errstr_size) JWT_MUST_CHECK;

/* Sign header_json and payload_json exactly as given, neither checked (so
 * that tests can build tokens with odd headers or payloads): the header's
 * "alg" need not match alg, which is what the signature is made with. Returns
 * a malloc'd token the caller frees, or NULL with errstr filled. */
char *jwt_sign_raw(const char *key_pem, jwt_alg alg, const char *header_json,
                   const char *payload_json, char *errstr, size_t errstr_size) JWT_MUST_CHECK;

/* A private key read once and used for many signatures (reading a PEM key
 * costs far more than signing with it). Caller frees with
 * jwt_signer_destroy(). NULL with errstr filled when key_pem is not a PEM
 * private key. */
typedef struct jwt_signer jwt_signer;

jwt_signer *jwt_signer_new(const char *key_pem, char *errstr, size_t errstr_size) JWT_MUST_CHECK;
void jwt_signer_destroy(jwt_signer *s); /* NULL is a no-op */
/* 1 when the key can sign with alg (the same binding verification
 * enforces: P-256 for ES256, P-384 for ES384, RSA of at least 2048 bits for
 * RS256 and PS256, Ed25519 for EdDSA), else 0. */
int jwt_signer_fits(const jwt_signer *s, jwt_alg alg);
/* jwt_sign_raw() with the signer's key. */
char *jwt_signer_sign_raw(const jwt_signer *s, jwt_alg alg, const char *header_json,
                          const char *payload_json, char *errstr,
                          size_t errstr_size) JWT_MUST_CHECK;

/* The largest clock skew leeway, in seconds: TS 33.434 Annex A says it must
 * not exceed 30. Larger leeways given to the functions below are capped. */
#define JWT_MAX_LEEWAY_S 30

/* What jwt_base64url_decode(), jwt_verify() and jwt_verify_signature() return
 * when an allocation failed: the input is not at fault, so the caller may try
 * again later instead of refusing it. */
#define JWT_ERR_NOMEM (-2)

/* base64url without padding (RFC 4648 section 5). encode returns a malloc'd
 * NUL-terminated string the caller frees, or NULL when out of memory. decode
 * is strict (alphabet only, no padding or whitespace, no length 4n+1, unused
 * trailing bits zero): returns 0 with *out malloc'd (caller frees) and
 * *out_len, -1 for malformed input or JWT_ERR_NOMEM, with *out NULL. */
char *jwt_base64url_encode(const void *data, size_t len) JWT_MUST_CHECK;
int jwt_base64url_decode(const char *in, size_t in_len, unsigned char **out,
                         size_t *out_len) JWT_MUST_CHECK;

/* ---- keys as PEM text (jwks, valctl keygen) ---- */

typedef enum {
	JWT_PEM_PUBLIC = 0, /* SubjectPublicKeyInfo */
	JWT_PEM_PRIVATE     /* PKCS#8, not encrypted */
} jwt_pem_part;

/* The PEM text of one part of pkey (borrowed). Returns a malloc'd
 * NUL-terminated string and its length in *len (len may be NULL), or NULL
 * when out of memory or when OpenSSL cannot write the key. The caller frees
 * it, wiping a private key's text first with OPENSSL_cleanse(). */
char *jwt_key_pem(const EVP_PKEY *pkey, jwt_pem_part part, size_t *len) JWT_MUST_CHECK;

/* ---- verification (kms) ---- */

typedef struct jwt_verifier jwt_verifier;

/* An empty verifier: allow_mask is a bit set of (1u << jwt_alg);
 * max_token_bytes bounds the whole token (default 8192 when 0, at most 1 MiB). Caller frees
 * with jwt_verifier_destroy(). */
jwt_verifier *jwt_verifier_new(unsigned allow_mask, size_t max_token_bytes, char *errstr,
                               size_t errstr_size) JWT_MUST_CHECK;
void jwt_verifier_destroy(jwt_verifier *v); /* NULL is a no-op */

/* Trust a public key (PEM, SubjectPublicKeyInfo) for issuer iss, under key id
 * kid (NULL: the issuer's only key, matched when the token has no kid).
 * The key must be EC P-256 or P-384 (named curve), RSA of at least 2048 bits
 * or Ed25519. An issuer with several keys needs a kid on each; a token
 * without kid is matched to its issuer's key only when there is one. The
 * strings and the PEM are copied. Returns 0, or -1 with errstr filled. */
int jwt_verifier_add_key(jwt_verifier *v, const char *iss, const char *kid,
                         const char *public_key_pem, char *errstr,
                         size_t errstr_size) JWT_MUST_CHECK;

/* jwt_verifier_add_key() for a key meant for some algorithms only (the "alg"
 * of a JWK, RFC 7517 section 4.4): algs is a bit set of (1u << jwt_alg), 0
 * for every algorithm that fits the key. A token signed with another
 * algorithm is refused, whatever the allow-list says. An algs that no
 * algorithm of the key's type is in is refused. */
int jwt_verifier_add_key_algs(jwt_verifier *v, const char *iss, const char *kid,
                              const char *public_key_pem, unsigned algs, char *errstr,
                              size_t errstr_size) JWT_MUST_CHECK;

/* Whether a token of issuer iss naming kid (NULL: no kid) would find its
 * key in v, by the rules of jwt_verify(). */
int jwt_verifier_has_key(const jwt_verifier *v, const char *iss, const char *kid);

/* Read, WITHOUT verifying anything, the "iss" claim and the "kid" header of
 * a token no longer than max_token_bytes, with the parsing rules of
 * jwt_verify(). For choosing what to do about a token that was refused (such
 * as fetching its issuer's keys), never for trusting it. Returns 0 with iss
 * (and kid, "" when the header has none) filled, or -1 when the token is
 * malformed or either string does not fit. */
int jwt_peek(const char *token, size_t max_token_bytes, char *iss, size_t iss_size, char *kid,
             size_t kid_size) JWT_MUST_CHECK;

/* Load trusted keys from a JSON file: an array of objects
 * {"iss": "...", "kid": "..." (optional), "public_key_file": "path"}; a
 * relative path is taken from the file's folder; other members are refused.
 * Returns the number of keys added, or -1 with errstr filled and no key of
 * the file added. */
int jwt_verifier_load_file(jwt_verifier *v, const char *path, char *errstr,
                           size_t errstr_size) JWT_MUST_CHECK;

/* The verified claims that authorization needs. Strings are owned; free with
 * jwt_claims_free(). A claim absent from the token is NULL / has_x == 0. */
typedef struct {
	char *iss;
	char *client_id;
	char *scope;
	char *vsp_id;
	int has_skeyprov;   /* SKeyProv present */
	int skeyprov_false; /* SKeyProv is false, 0, "false" (any case), "0", "" or null */
	int has_exp, has_nbf, has_iat;
	int64_t exp, nbf, iat; /* seconds since the epoch */
} jwt_claims;

void jwt_claims_free(jwt_claims *c); /* frees the members; NULL ok */

/* Verify the token's form and signature and the time claims at now_s with
 * leeway_s seconds, capped at 30 (exp required, numeric; nbf and iat numeric
 * when present). iss, client_id, scope and vsp_id must be strings when
 * present. Returns 0 and fills *claims (caller frees with jwt_claims_free()),
 * or -1 (the token is refused) or JWT_ERR_NOMEM (an allocation failed: the
 * token may be good) with *claims zeroed and errstr filled with one sentence
 * that never contains the token or a part of it. Safe to call from several
 * threads on one verifier. */
int jwt_verify(const jwt_verifier *v, const char *token, int64_t now_s, int64_t leeway_s,
               jwt_claims *claims, char *errstr, size_t errstr_size) JWT_MUST_CHECK;

/* jwt_verify() without the time checks: form, signature and the claims'
 * types (exp required and numeric, nbf and iat numeric when present), which
 * depend on the token alone and so hold for as long as the keys are the
 * same. Its success is not an authorization: the caller must still call
 * jwt_check_times() on the claims, at every use. Same results as
 * jwt_verify(). */
int jwt_verify_signature(const jwt_verifier *v, const char *token, jwt_claims *claims, char *errstr,
                         size_t errstr_size) JWT_MUST_CHECK;

/* The time checks of jwt_verify() on verified claims, in its order: exp
 * (required), nbf and iat against now_s with leeway_s seconds (capped at
 * 30). Returns 0, or -1 with errstr filled with one sentence. */
int jwt_check_times(const jwt_claims *claims, int64_t now_s, int64_t leeway_s, char *errstr,
                    size_t errstr_size) JWT_MUST_CHECK;

#endif
