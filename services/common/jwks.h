/*
 * jwks: a JSON Web Key Set (RFC 7517) read into the public keys a
 * jwt_verifier can trust. Pure: text in, keys out, no I/O, so every hostile
 * document is tested in-process.
 *
 * Two kinds of trouble are told apart. A document that is broken (not JSON,
 * no "keys" array, a key without a member its type needs or with a member
 * that is not what RFC 7517/7518 say, two keys that a token could not tell
 * apart, too large, too many keys) is refused whole: a set read from it
 * would be a guess. A well-formed key that the KM-S does not use (a
 * symmetric key, an unsupported type or curve, an RSA key under 2048 bits,
 * a key for encryption, an algorithm outside the supported ones) is skipped
 * and reported through a callback, so that one such key among good ones
 * does not cost the good ones; a document whose every key was skipped is
 * refused, since trusting nothing instead of what was trusted before is
 * never what its publisher meant. A document with an empty "keys" array is
 * taken as it is: its issuer trusts no key now.
 */
#ifndef KMS_JWKS_H
#define KMS_JWKS_H

#include <stddef.h>

#if defined(__GNUC__)
#define JWKS_MUST_CHECK __attribute__((warn_unused_result))
#else
#define JWKS_MUST_CHECK
#endif

/* The largest document read (a key set is a few kilobytes), and the most
 * keys in one. */
#define JWKS_MAX_BYTES (1024 * 1024)
#define JWKS_MAX_KEYS  100

typedef struct {
	char *kid;     /* NULL when the key has no "kid" */
	char *pem;     /* the public key as PEM SubjectPublicKeyInfo */
	unsigned algs; /* (1u << jwt_alg) of the key's "alg", 0 when it has none */
} jwks_key;

typedef struct {
	jwks_key *keys;
	size_t n;
} jwks_set;

/* Told once per key left out: its position in "keys" (from 0), its kid (NULL
 * when it has none) and why, one short sentence. Borrowed strings, valid
 * during the call. */
typedef void (*jwks_skip_fn)(void *ctx, size_t index, const char *kid, const char *why);

/* Read the document doc (len bytes, need not be NUL-terminated). Returns 0
 * with *out filled (caller frees with jwks_set_free()), or -1 with *out
 * empty and errstr filled with one sentence that quotes nothing of the
 * document but kids. skip may be NULL. */
int jwks_parse(const char *doc, size_t len, jwks_set *out, jwks_skip_fn skip, void *ctx,
               char *errstr, size_t errstr_size) JWKS_MUST_CHECK;

/* Frees the keys and empties the set; NULL ok. */
void jwks_set_free(jwks_set *s);

/* A deep copy of src into *dst. Returns 0, or -1 when out of memory (*dst
 * then empty). */
int jwks_set_copy(jwks_set *dst, const jwks_set *src) JWKS_MUST_CHECK;

/* Whether both sets hold the same keys (kid, key and algorithms), in any
 * order. */
int jwks_set_equal(const jwks_set *a, const jwks_set *b);

#endif
