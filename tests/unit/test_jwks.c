/*
 * test_jwks: JWK Sets read into trusted keys, on keys made in-process. Each
 * supported key type verifies a token signed with its private half; each
 * key the KM-S does not use is skipped with its reason while the others
 * stay; each broken document is refused whole with a sentence that says
 * why; a document of skipped keys only is refused.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "check.h"
#include "jwks.h"
#include "jwt.h"
#include "testkeys.h"

#define NOW      INT64_C(1700000000)
#define ISS      "https://as.example"
#define ALL_ALGS ((1u << JWT_ALG__COUNT) - 1)

static EVP_PKEY *rsa2048, *rsa1024, *p256, *p384, *p521, *ed25519, *x25519;

/* ---- keys as JWKs ---- */

static char *b64(const unsigned char *d, size_t n)
{
	return jwt_base64url_encode(d, n);
}

static char *bn_b64(const EVP_PKEY *k, const char *name)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	char *out = NULL;
	int n;

	if (EVP_PKEY_get_bn_param(k, name, &bn) != 1)
		return NULL;
	n = BN_bn2bin(bn, buf);
	if (n > 0)
		out = b64(buf, (size_t)n);
	BN_free(bn);
	return out;
}

/* The public JWK of k with kid (NULL: none) and extra members (",\"use\":..."
 * or ""), as JSON text; the caller frees. */
static char *jwk(EVP_PKEY *k, const char *kid, const char *extra)
{
	char *out = malloc(4096), kidm[300] = "";
	char *a = NULL, *b = NULL;

	if (out == NULL)
		return NULL;
	if (kid != NULL)
		snprintf(kidm, sizeof kidm, ",\"kid\":\"%s\"", kid);
	if (EVP_PKEY_is_a(k, "RSA")) {
		a = bn_b64(k, OSSL_PKEY_PARAM_RSA_N);
		b = bn_b64(k, OSSL_PKEY_PARAM_RSA_E);
		snprintf(out, 4096, "{\"kty\":\"RSA\"%s,\"n\":\"%s\",\"e\":\"%s\"%s}", kidm,
		         a ? a : "", b ? b : "", extra);
	} else if (EVP_PKEY_is_a(k, "EC")) {
		unsigned char pt[200];
		size_t len = 0, half;
		char group[64];
		const char *crv;

		EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
		                               NULL);
		crv = strcmp(group, "prime256v1") == 0  ? "P-256"
		      : strcmp(group, "secp384r1") == 0 ? "P-384"
		                                        : "P-521";
		EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &len);
		half = (len - 1) / 2;
		a = b64(pt + 1, half);
		b = b64(pt + 1 + half, half);
		snprintf(out, 4096, "{\"kty\":\"EC\",\"crv\":\"%s\"%s,\"x\":\"%s\",\"y\":\"%s\"%s}",
		         crv, kidm, a ? a : "", b ? b : "", extra);
	} else {
		unsigned char raw[64];
		size_t len = sizeof raw;

		EVP_PKEY_get_raw_public_key(k, raw, &len);
		a = b64(raw, len);
		snprintf(out, 4096, "{\"kty\":\"OKP\",\"crv\":\"%s\"%s,\"x\":\"%s\"%s}",
		         EVP_PKEY_is_a(k, "ED25519") ? "Ed25519" : "X25519", kidm, a ? a : "",
		         extra);
	}
	free(a);
	free(b);
	return out;
}

/* {"keys":[...]} of the given JWK texts (consumed). */
static char *doc(int n, ...)
{
	va_list ap;
	size_t cap = 64, len;
	char *out;

	va_start(ap, n);
	for (int i = 0; i < n; i++)
		cap += strlen(va_arg(ap, char *)) + 1;
	va_end(ap);
	out = malloc(cap);
	if (out == NULL)
		return NULL;
	snprintf(out, cap, "{\"keys\":[");
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		char *k = va_arg(ap, char *);
		len = strlen(out);
		snprintf(out + len, cap - len, "%s%s", i > 0 ? "," : "", k);
		free(k);
	}
	va_end(ap);
	len = strlen(out);
	snprintf(out + len, cap - len, "]}");
	return out;
}

static char *token_by(EVP_PKEY *k, jwt_alg alg, const char *kid)
{
	char *pem = testkeys_pem(k, 1), *t;
	char payload[256];

	snprintf(payload, sizeof payload,
	         "{\"iss\":\"" ISS "\",\"client_id\":\"val-1\",\"exp\":%lld}", (long long)NOW + 60);
	t = pem != NULL ? jwt_sign(pem, alg, kid, payload, NULL, 0) : NULL;
	free(pem);
	return t;
}

/* The set as a verifier of ISS; NULL when a key is refused. */
static jwt_verifier *verifier_of(const jwks_set *s)
{
	jwt_verifier *v = jwt_verifier_new(ALL_ALGS, 0, NULL, 0);
	char err[256];

	for (size_t i = 0; v != NULL && i < s->n; i++)
		if (jwt_verifier_add_key_algs(v, ISS, s->keys[i].kid, s->keys[i].pem,
		                              s->keys[i].algs, err, sizeof err) != 0) {
			fprintf(stderr, "    key refused: %s\n", err);
			jwt_verifier_destroy(v);
			v = NULL;
		}
	return v;
}

static int verifies(const jwt_verifier *v, EVP_PKEY *k, jwt_alg alg, const char *kid)
{
	char *t = token_by(k, alg, kid), err[256];
	jwt_claims c;
	int rc;

	if (t == NULL)
		return 0;
	rc = jwt_verify(v, t, NOW, 0, &c, err, sizeof err);
	if (rc == 0)
		jwt_claims_free(&c);
	free(t);
	return rc == 0;
}

/* ---- skips seen ---- */

static int n_skipped;
static char last_skip[256];

static void on_skip(void *ctx, size_t index, const char *kid, const char *why)
{
	(void)ctx;
	n_skipped++;
	snprintf(last_skip, sizeof last_skip, "%zu %s: %s", index, kid != NULL ? kid : "-", why);
}

static int parse(const char *d, jwks_set *s, char *err, size_t err_size)
{
	n_skipped = 0;
	last_skip[0] = '\0';
	return jwks_parse(d, strlen(d), s, on_skip, NULL, err, err_size);
}

/* ---- cases ---- */

static int test_every_supported_type_verifies(void)
{
	char *d = doc(4, jwk(rsa2048, "r", ""), jwk(p256, "e2", ""), jwk(p384, "e3", ""),
	              jwk(ed25519, "ed", ",\"use\":\"sig\",\"key_ops\":[\"verify\"]"));
	jwks_set s;
	jwt_verifier *v;
	char err[256];

	CHECK(d != NULL);
	CHECK(parse(d, &s, err, sizeof err) == 0);
	free(d);
	CHECK_INT(s.n, 4);
	CHECK_INT(n_skipped, 0);
	v = verifier_of(&s);
	CHECK(v != NULL);
	CHECK(verifies(v, rsa2048, JWT_ALG_RS256, "r"));
	CHECK(verifies(v, rsa2048, JWT_ALG_PS256, "r"));
	CHECK(verifies(v, p256, JWT_ALG_ES256, "e2"));
	CHECK(verifies(v, p384, JWT_ALG_ES384, "e3"));
	CHECK(verifies(v, ed25519, JWT_ALG_EDDSA, "ed"));
	/* a key under another kid does not verify */
	CHECK(!verifies(v, p256, JWT_ALG_ES256, "e3"));
	jwt_verifier_destroy(v);
	jwks_set_free(&s);
	return 0;
}

/* A JWK's "alg" binds the key to that algorithm alone. */
static int test_alg_pins_the_key(void)
{
	char *d = doc(1, jwk(rsa2048, "r", ",\"alg\":\"PS256\""));
	jwks_set s;
	jwt_verifier *v;
	char err[256];

	CHECK(d != NULL);
	CHECK(parse(d, &s, err, sizeof err) == 0);
	free(d);
	CHECK_INT(s.keys[0].algs, 1u << JWT_ALG_PS256);
	v = verifier_of(&s);
	CHECK(v != NULL);
	CHECK(verifies(v, rsa2048, JWT_ALG_PS256, "r"));
	CHECK(!verifies(v, rsa2048, JWT_ALG_RS256, "r"));
	jwt_verifier_destroy(v);
	jwks_set_free(&s);
	return 0;
}

/* One key the KM-S does not use, beside a good one: skipped, said, and the
 * good one kept. */
static int skipped_beside_good(char *bad, const char *want)
{
	char *d = doc(2, jwk(p256, "good", ""), bad);
	jwks_set s;
	jwt_verifier *v;
	char err[256];
	int ok;

	CHECK(d != NULL);
	CHECK(parse(d, &s, err, sizeof err) == 0);
	free(d);
	CHECK_INT(s.n, 1);
	CHECK_INT(n_skipped, 1);
	if (strstr(last_skip, want) == NULL) {
		fprintf(stderr, "    skip \"%s\" lacks \"%s\"\n", last_skip, want);
		jwks_set_free(&s);
		return -1;
	}
	CHECK(strncmp(last_skip, "1 ", 2) == 0);
	v = verifier_of(&s);
	ok = v != NULL && verifies(v, p256, JWT_ALG_ES256, "good");
	jwt_verifier_destroy(v);
	jwks_set_free(&s);
	CHECK(ok);
	return 0;
}

/* The same key alone: the document is refused, so the keys in force stay. */
static int refused_alone(char *bad, const char *want)
{
	char *d = doc(1, bad);
	jwks_set s;
	char err[256];

	CHECK(d != NULL);
	CHECK(parse(d, &s, err, sizeof err) == -1);
	free(d);
	CHECK_INT(s.n, 0);
	CHECK(s.keys == NULL);
	CHECK(strstr(err, "no key of the document is usable") != NULL);
	CHECK(strstr(last_skip, want) != NULL);
	return 0;
}

static int test_symmetric_key_skipped(void)
{
	const char *oct = "{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"c2VjcmV0LXNlY3JldC1zZWNyZXQ\"}";
	char *a = strdup(oct), *b = strdup(oct);
	CHECK(a != NULL && b != NULL);
	CHECK(skipped_beside_good(a, "symmetric") == 0);
	CHECK(refused_alone(b, "symmetric") == 0);
	return 0;
}

static int test_unsupported_curves_skipped(void)
{
	CHECK(skipped_beside_good(jwk(p521, "p5", ""), "EC curve P-521 is not supported") == 0);
	CHECK(refused_alone(jwk(p521, "p5", ""), "P-521") == 0);
	CHECK(skipped_beside_good(jwk(x25519, "x", ""), "OKP curve X25519 is not supported") == 0);
	return 0;
}

static int test_weak_rsa_skipped(void)
{
	CHECK(skipped_beside_good(jwk(rsa1024, "weak", ""), "RSA key of 1024 bits is under 2048") ==
	      0);
	CHECK(refused_alone(jwk(rsa1024, "weak", ""), "under 2048") == 0);
	return 0;
}

static int test_keys_for_other_uses_skipped(void)
{
	CHECK(skipped_beside_good(jwk(rsa2048, "enc", ",\"use\":\"enc\""), "not a signature key") ==
	      0);
	CHECK(skipped_beside_good(jwk(rsa2048, "ops", ",\"key_ops\":[\"sign\"]"),
	                          "does not include verify") == 0);
	CHECK(skipped_beside_good(jwk(rsa2048, "hs", ",\"alg\":\"HS256\""),
	                          "algorithm HS256 is not supported") == 0);
	CHECK(skipped_beside_good(jwk(rsa2048, "oaep", ",\"alg\":\"RSA-OAEP\""), "not supported") ==
	      0);
	CHECK(skipped_beside_good(jwk(rsa2048, "mix", ",\"alg\":\"ES256\""),
	                          "does not fit the key type RSA") == 0);
	CHECK(skipped_beside_good(jwk(p384, "mix2", ",\"alg\":\"ES256\""), "does not fit") == 0);
	CHECK(skipped_beside_good(strdup("{\"kty\":\"XYZ\",\"kid\":\"u\"}"),
	                          "key type XYZ is not supported") == 0);
	return 0;
}

/* A broken document is refused whole, with its fault. */
static int broken(const char *d, const char *want)
{
	jwks_set s;
	char err[256] = "";

	if (parse(d, &s, err, sizeof err) != -1) {
		fprintf(stderr, "    accepted, expected \"%s\"\n", want);
		jwks_set_free(&s);
		return -1;
	}
	if (s.n != 0 || s.keys != NULL || strstr(err, want) == NULL) {
		fprintf(stderr, "    error \"%s\" lacks \"%s\"\n", err, want);
		return -1;
	}
	return 0;
}

static int test_broken_documents_refused(void)
{
	char *good = jwk(p256, "g", ""), *d;
	char big[64];

	CHECK(good != NULL);
	CHECK(broken("not json at all", "not valid JSON") == 0);
	CHECK(broken("", "not valid JSON") == 0);
	CHECK(broken("[]", "no \"keys\" array") == 0);
	CHECK(broken("{\"keys\":{}}", "no \"keys\" array") == 0);
	CHECK(broken("{}", "no \"keys\" array") == 0);
	CHECK(broken("{\"keys\":[1]}", "key 1: not a JSON object") == 0);
	CHECK(broken("{\"keys\":[],\"keys\":[]}", "duplicate member") == 0);
	CHECK(broken("{\"keys\":[{\"kid\":\"a\"}]}", "kty is missing") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":7}]}", "kty is missing or not a string") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"e\":\"AQAB\"}]}",
	             "key 1 (kid r): member n is missing") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":5}]}",
	             "member e is not a string") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB==\",\"e\":\"AQAB\"}]}",
	             "member n is not base64url") == 0);
	CHECK(
	    broken("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQAB\",\"y\":\"AQAB\"}]}",
	           "must be 32 bytes") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"EC\",\"x\":\"AQAB\",\"y\":\"AQAB\"}]}",
	             "member crv is missing") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
	             "\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\","
	             "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
	             "not on the P-256 curve") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AQAB\"}]}",
	             "must be 32 bytes") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
	             "member kid is not a string") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"RSA\",\"kid\":3,\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
	             "member kid is not a string") == 0);
	CHECK(broken("{\"keys\":[{\"kty\":\"RSA\",\"use\":1}]}", "member use is not a string") ==
	      0);
	CHECK(broken("{\"keys\":[{\"kty\":\"RSA\",\"key_ops\":\"verify\"}]}",
	             "key_ops is not an array") == 0);
	/* two keys a token could not tell apart */
	d = doc(2, jwk(p256, "same", ""), jwk(p384, "same", ""));
	CHECK(d != NULL && broken(d, "two usable keys share the kid same") == 0);
	free(d);
	d = doc(2, jwk(p256, NULL, ""), jwk(p384, "k2", ""));
	CHECK(d != NULL && broken(d, "each needs a kid") == 0);
	free(d);
	/* the bounds */
	snprintf(big, sizeof big, "larger than %d bytes", JWKS_MAX_BYTES);
	d = calloc(1, (size_t)JWKS_MAX_BYTES + 16);
	CHECK(d != NULL);
	memset(d, ' ', (size_t)JWKS_MAX_BYTES + 8);
	{
		jwks_set s;
		char err[256];
		CHECK(jwks_parse(d, (size_t)JWKS_MAX_BYTES + 8, &s, NULL, NULL, err, sizeof err) ==
		      -1);
		CHECK(strstr(err, big) != NULL);
	}
	free(d);
	{
		size_t cap = 16 + (JWKS_MAX_KEYS + 1) * (strlen(good) + 1);
		d = malloc(cap);
		CHECK(d != NULL);
		size_t at = (size_t)snprintf(d, cap, "{\"keys\":[");
		for (int i = 0; i <= JWKS_MAX_KEYS; i++)
			at += (size_t)snprintf(d + at, cap - at, "%s%s", good,
			                       i < JWKS_MAX_KEYS ? "," : "]}");
		CHECK(broken(d, "more than 100 keys") == 0);
		free(d);
	}
	free(good);
	return 0;
}

/* An empty set is what its publisher says: no key is trusted. */
static int test_empty_set_is_taken(void)
{
	jwks_set s;
	char err[256];

	CHECK(parse("{\"keys\":[]}", &s, err, sizeof err) == 0);
	CHECK_INT(s.n, 0);
	jwks_set_free(&s);
	/* members beside "keys" are no concern of ours */
	CHECK(parse("{\"keys\":[],\"issuer\":\"x\"}", &s, err, sizeof err) == 0);
	jwks_set_free(&s);
	return 0;
}

/* The error never quotes the document (but for kids). */
static int test_error_does_not_quote_document(void)
{
	jwks_set s;
	char err[256];

	CHECK(parse("{\"keys\":[\"SECRET-MATERIAL-0123\"]}", &s, err, sizeof err) == -1);
	CHECK(strstr(err, "SECRET") == NULL);
	CHECK(parse("{\"keys\": SECRET-MATERIAL}", &s, err, sizeof err) == -1);
	CHECK(strstr(err, "SECRET") == NULL);
	return 0;
}

static int test_copy_and_equal(void)
{
	char *d1 = doc(2, jwk(p256, "a", ""), jwk(rsa2048, "b", ",\"alg\":\"RS256\""));
	char *d2 = doc(2, jwk(rsa2048, "b", ",\"alg\":\"RS256\""), jwk(p256, "a", ""));
	char *d3 = doc(2, jwk(rsa2048, "b", ""), jwk(p256, "a", ""));
	jwks_set a, b, c, cp;
	char err[256];

	CHECK(d1 != NULL && d2 != NULL && d3 != NULL);
	CHECK(parse(d1, &a, err, sizeof err) == 0);
	CHECK(parse(d2, &b, err, sizeof err) == 0);
	CHECK(parse(d3, &c, err, sizeof err) == 0);
	free(d1);
	free(d2);
	free(d3);
	CHECK(jwks_set_equal(&a, &b));  /* order does not matter */
	CHECK(!jwks_set_equal(&a, &c)); /* the alg does */
	CHECK(jwks_set_copy(&cp, &a) == 0);
	CHECK(jwks_set_equal(&cp, &a));
	jwks_set_free(&cp);
	jwks_set_free(&a);
	jwks_set_free(&b);
	jwks_set_free(&c);
	jwks_set_free(NULL);
	return 0;
}

static int setup(void)
{
	rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
	ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	x25519 = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	return rsa2048 && rsa1024 && p256 && p384 && p521 && ed25519 && x25519 ? 0 : -1;
}

static void teardown(void)
{
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(p521);
	EVP_PKEY_free(ed25519);
	EVP_PKEY_free(x25519);
}

static const check_case cases[] = {
    {"every_supported_type_verifies", test_every_supported_type_verifies},
    {"alg_pins_the_key", test_alg_pins_the_key},
    {"symmetric_key_skipped", test_symmetric_key_skipped},
    {"unsupported_curves_skipped", test_unsupported_curves_skipped},
    {"weak_rsa_skipped", test_weak_rsa_skipped},
    {"keys_for_other_uses_skipped", test_keys_for_other_uses_skipped},
    {"broken_documents_refused", test_broken_documents_refused},
    {"empty_set_is_taken", test_empty_set_is_taken},
    {"error_does_not_quote_document", test_error_does_not_quote_document},
    {"copy_and_equal", test_copy_and_equal},
};

int main(void)
{
	int rc;

	if (setup() != 0) {
		fprintf(stderr, "cannot make the test keys\n");
		teardown();
		printf("0 passed, 1 failed\n");
		return 1;
	}
	rc = check_run("jwks", cases, sizeof cases / sizeof cases[0]);
	teardown();
	return rc;
}
