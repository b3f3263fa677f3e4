/*
 * test_jwt: signing and strict verification of access tokens. Keys are made
 * in-process with OpenSSL (EC P-256 and P-384, RSA 2048, Ed25519, and an
 * untrusted P-256 key an attacker would hold), so every case signs real
 * tokens; the hostile ones (none, HMAC with the public key as secret, key
 * and algorithm mismatch, malformed base64url, duplicate members) are built
 * by hand. Each refusal is checked for its sentence and for not quoting the
 * token.
 *
 * Over 800 lines on purpose: one suite for the jwt module (jwt.h), its
 * sections the round trips and the hostile tokens. The key pairs, RSA
 * among them, are made once per process, which under valgrind costs
 * seconds; a second suite would pay that again.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "check.h"
#include "jwt.h"
#include "testkeys.h"

#define NOW  INT64_C(1700000000)
#define ISS  "https://as.example"
#define ISS1 "https://single.example"
#define ALL  ((1u << JWT_ALG__COUNT) - 1)

static testkeys_pair k_p256, k_p384, k_rsa, k_ed, k_rogue, k_rsa1024;
static int keys_ready;

static int keys_setup(void)
{
	if (keys_ready)
		return 0;
	if (testkeys_pair_fill(&k_p256, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) != 0 ||
	    testkeys_pair_fill(&k_p384, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384")) != 0 ||
	    testkeys_pair_fill(&k_rsa, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)) != 0 ||
	    testkeys_pair_fill(&k_ed, EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) != 0 ||
	    testkeys_pair_fill(&k_rogue, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) != 0 ||
	    testkeys_pair_fill(&k_rsa1024, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024)) != 0)
		return -1;
	keys_ready = 1;
	return 0;
}

/* The verifier most cases use: issuer ISS with one key per algorithm, each
 * under a kid, and issuer ISS1 with a single kid-less P-256 key. */
static jwt_verifier *verifier_with(unsigned mask, size_t max)
{
	char err[256];
	jwt_verifier *v;

	if (keys_setup() != 0)
		return NULL;
	v = jwt_verifier_new(mask, max, err, sizeof err);
	if (v == NULL)
		return NULL;
	if (jwt_verifier_add_key(v, ISS, "es256", k_p256.pub_pem, err, sizeof err) != 0 ||
	    jwt_verifier_add_key(v, ISS, "es384", k_p384.pub_pem, err, sizeof err) != 0 ||
	    jwt_verifier_add_key(v, ISS, "rs", k_rsa.pub_pem, err, sizeof err) != 0 ||
	    jwt_verifier_add_key(v, ISS, "ed", k_ed.pub_pem, err, sizeof err) != 0 ||
	    jwt_verifier_add_key(v, ISS1, NULL, k_p256.pub_pem, err, sizeof err) != 0) {
		fprintf(stderr, "    verifier: %s\n", err);
		jwt_verifier_destroy(v);
		return NULL;
	}
	return v;
}

static jwt_verifier *verifier(void)
{
	return verifier_with(ALL, 0);
}

/* A payload with every claim authorization needs, valid at NOW. */
static char payload_buf[1024];
static const char *good_payload(const char *iss)
{
	(void)snprintf(payload_buf, sizeof payload_buf,
	               "{\"iss\":\"%s\",\"client_id\":\"val-a\",\"scope\":\"openid ss-kpp\","
	               "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\",\"iat\":%lld,\"exp\":%lld}",
	               iss, (long long)(NOW - 10), (long long)(NOW + 300));
	return payload_buf;
}

static char *sign(const testkeys_pair *k, jwt_alg alg, const char *kid, const char *payload)
{
	char err[256];
	char *t = jwt_sign(k->priv_pem, alg, kid, payload, err, sizeof err);
	if (t == NULL)
		fprintf(stderr, "    jwt_sign: %s\n", err);
	return t;
}

static char *b64(const char *s)
{
	return jwt_base64url_encode(s, strlen(s));
}

/* header.payload.sig from text parts, the signature given as base64url. */
static char *assemble(const char *header, const char *payload, const char *sig64)
{
	char *h = b64(header), *p = b64(payload), *out = NULL;
	size_t n;

	if (h != NULL && p != NULL) {
		n = strlen(h) + strlen(p) + strlen(sig64) + 3;
		out = malloc(n);
		if (out != NULL && snprintf(out, n, "%s.%s.%s", h, p, sig64) >= (int)n) {
			free(out);
			out = NULL;
		}
	}
	free(h);
	free(p);
	return out;
}

/* Whether s holds the n bytes at w. */
static int has_window(const char *s, const char *w, size_t n)
{
	for (; strlen(s) >= n; s++)
		if (memcmp(s, w, n) == 0)
			return 1;
	return 0;
}

/* The token must be refused with a sentence holding want, and the sentence
 * must quote no part of the token (checked for parts of 8 characters or
 * more, and for every 8-character window of the signature). */
static int refused(const jwt_verifier *v, const char *token, int64_t leeway, const char *want)
{
	char err[256];
	jwt_claims c;
	const char *last;
	int rc;

	memset(&c, 0xAB, sizeof c);
	rc = jwt_verify(v, token, NOW, leeway, &c, err, sizeof err);
	if (rc != -1) {
		fprintf(stderr, "    accepted, expected \"%s\"\n", want);
		jwt_claims_free(&c);
		return 0;
	}
	if (c.iss != NULL || c.client_id != NULL || c.has_exp != 0) {
		fprintf(stderr, "    claims not zeroed on failure\n");
		return 0;
	}
	if (strstr(err, want) == NULL) {
		fprintf(stderr, "    errstr \"%s\" lacks \"%s\"\n", err, want);
		return 0;
	}
	last = strrchr(token, '.');
	if (last != NULL && strlen(last + 1) >= 8) {
		for (const char *w = last + 1; strlen(w) >= 8; w++) {
			if (has_window(err, w, 8)) {
				fprintf(stderr, "    errstr quotes the signature\n");
				return 0;
			}
		}
	}
	if (strlen(token) >= 8 && has_window(err, token, 8)) {
		fprintf(stderr, "    errstr quotes the header\n");
		return 0;
	}
	return 1;
}

static int accepted(const jwt_verifier *v, const char *token, int64_t leeway, jwt_claims *c)
{
	char err[256];
	if (jwt_verify(v, token, NOW, leeway, c, err, sizeof err) != 0) {
		fprintf(stderr, "    refused: %s\n", err);
		return 0;
	}
	return 1;
}

/* Decoded length of the token's signature part, or -1. */
static long sig_bytes(const char *token)
{
	const char *last = strrchr(token, '.');
	unsigned char *raw = NULL;
	size_t n = 0;

	if (last == NULL || jwt_base64url_decode(last + 1, strlen(last + 1), &raw, &n) != 0)
		return -1;
	free(raw);
	return (long)n;
}

/* ---- round trips ---- */

static int round_trip(const testkeys_pair *k, jwt_alg alg, const char *kid, long want_sig)
{
	jwt_verifier *v = verifier();
	char *t;
	jwt_claims c;
	int ok;

	CHECK(v != NULL);
	t = sign(k, alg, kid, good_payload(ISS));
	CHECK(t != NULL);
	ok = accepted(v, t, 0, &c);
	if (ok) {
		ok = c.iss != NULL && strcmp(c.iss, ISS) == 0 && c.client_id != NULL &&
		     strcmp(c.client_id, "val-a") == 0 && c.scope != NULL &&
		     strcmp(c.scope, "openid ss-kpp") == 0 && c.vsp_id != NULL &&
		     strcmp(c.vsp_id, "vsp-1") == 0 && c.has_skeyprov == 1 &&
		     c.skeyprov_false == 0 && c.has_exp == 1 && c.exp == NOW + 300 &&
		     c.has_iat == 1 && c.iat == NOW - 10 && c.has_nbf == 0;
		jwt_claims_free(&c);
	}
	if (ok && want_sig >= 0 && sig_bytes(t) != want_sig) {
		fprintf(stderr, "    signature is %ld bytes, expected %ld\n", sig_bytes(t),
		        want_sig);
		ok = 0;
	}
	free(t);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_round_trip_es256(void)
{
	return round_trip(&k_p256, JWT_ALG_ES256, "es256", 64);
}

static int test_round_trip_es384(void)
{
	return round_trip(&k_p384, JWT_ALG_ES384, "es384", 96);
}

static int test_round_trip_rs256(void)
{
	return round_trip(&k_rsa, JWT_ALG_RS256, "rs", 256);
}

static int test_round_trip_ps256(void)
{
	return round_trip(&k_rsa, JWT_ALG_PS256, "rs", 256);
}

static int test_round_trip_eddsa(void)
{
	return round_trip(&k_ed, JWT_ALG_EDDSA, "ed", 64);
}

/* One signer, several tokens and algorithms: each verifies; the key's
 * binding to its algorithms is the verifier's; a key that is not one is
 * refused when it is read. */
static int test_signer_reused(void)
{
	static const struct {
		testkeys_pair *k;
		jwt_alg alg;
		const char *kid;
	} cases[] = {{&k_p256, JWT_ALG_ES256, "es256"},
	             {&k_p384, JWT_ALG_ES384, "es384"},
	             {&k_rsa, JWT_ALG_RS256, "rs"},
	             {&k_rsa, JWT_ALG_PS256, "rs"},
	             {&k_ed, JWT_ALG_EDDSA, "ed"}};
	jwt_verifier *v = verifier();
	jwt_signer *sg;
	jwt_claims c;
	char err[256], header[128];
	char *t;
	size_t i;
	int n, a, ok = 1;

	CHECK(v != NULL);
	for (i = 0; i < sizeof cases / sizeof cases[0] && ok; i++) {
		sg = jwt_signer_new(cases[i].k->priv_pem, err, sizeof err);
		CHECK(sg != NULL);
		for (a = 0; a < JWT_ALG__COUNT; a++) {
			int fits =
			    a == (int)cases[i].alg ||
			    (cases[i].k == &k_rsa && (a == JWT_ALG_RS256 || a == JWT_ALG_PS256));
			ok &= jwt_signer_fits(sg, (jwt_alg)a) == fits;
		}
		(void)snprintf(header, sizeof header, "{\"alg\":\"%s\",\"kid\":\"%s\"}",
		               jwt_alg_name(cases[i].alg), cases[i].kid);
		for (n = 0; n < 3 && ok; n++) {
			t = jwt_signer_sign_raw(sg, cases[i].alg, header, good_payload(ISS), err,
			                        sizeof err);
			ok = t != NULL && accepted(v, t, 0, &c);
			if (t != NULL && ok)
				jwt_claims_free(&c);
			free(t);
		}
		/* an algorithm the key does not fit: refused, no token */
		t = jwt_signer_sign_raw(sg, cases[i].k == &k_ed ? JWT_ALG_ES256 : JWT_ALG_EDDSA,
		                        header, good_payload(ISS), err, sizeof err);
		ok &= t == NULL && strstr(err, "does not fit") != NULL;
		free(t);
		jwt_signer_destroy(sg);
	}
	jwt_verifier_destroy(v);
	CHECK(ok);
	CHECK(jwt_signer_new(k_p256.pub_pem, err, sizeof err) == NULL);
	CHECK(jwt_signer_new("not a key", err, sizeof err) == NULL);
	jwt_signer_destroy(NULL);
	return 0;
}

static int test_header_form(void)
{
	char *t, *dot, *hdr_raw = NULL;
	unsigned char *raw = NULL;
	size_t n = 0;

	CHECK(keys_setup() == 0);
	t = sign(&k_p256, JWT_ALG_ES256, "es256", good_payload(ISS));
	CHECK(t != NULL);
	dot = strchr(t, '.');
	CHECK(dot != NULL);
	CHECK(jwt_base64url_decode(t, (size_t)(dot - t), &raw, &n) == 0);
	free(t);
	hdr_raw = malloc(n + 1);
	CHECK(hdr_raw != NULL);
	memcpy(hdr_raw, raw, n);
	hdr_raw[n] = '\0';
	free(raw);
	CHECK_STR(hdr_raw, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"es256\"}");
	free(hdr_raw);
	return 0;
}

static int test_no_kid_single_key(void)
{
	jwt_verifier *v = verifier();
	jwt_claims c;
	char *t = sign(&k_p256, JWT_ALG_ES256, NULL, good_payload(ISS1));
	int ok;

	CHECK(v != NULL && t != NULL);
	ok = accepted(v, t, 0, &c);
	jwt_claims_free(&c);
	free(t);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_no_kid_several_keys(void)
{
	jwt_verifier *v = verifier();
	char *t = sign(&k_p256, JWT_ALG_ES256, NULL, good_payload(ISS));
	int ok;

	CHECK(v != NULL && t != NULL);
	ok = refused(v, t, 0, "no kid and its issuer has several keys");
	free(t);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_alg_names(void)
{
	jwt_alg a;
	for (unsigned i = 0; i < JWT_ALG__COUNT; i++) {
		CHECK(jwt_alg_parse(jwt_alg_name((jwt_alg)i), &a) == 0);
		CHECK_INT(a, i);
	}
	CHECK_STR(jwt_alg_name(JWT_ALG_EDDSA), "EdDSA");
	CHECK(jwt_alg_parse("es256", &a) == -1);
	CHECK(jwt_alg_parse("HS256", &a) == -1);
	CHECK(jwt_alg_parse("none", &a) == -1);
	return 0;
}

/* ---- hostile tokens ---- */

static int test_alg_none(void)
{
	jwt_verifier *v = verifier();
	char *empty_sig, *with_sig, *upper;
	int ok;

	CHECK(v != NULL);
	empty_sig = assemble("{\"alg\":\"none\",\"typ\":\"JWT\"}", good_payload(ISS), "");
	with_sig = assemble("{\"alg\":\"none\",\"typ\":\"JWT\"}", good_payload(ISS),
	                    "c2lnbmF0dXJlLWJ5dGVz");
	upper = assemble("{\"alg\":\"NONE\"}", good_payload(ISS), "c2lnbmF0dXJlLWJ5dGVz");
	CHECK(empty_sig != NULL && with_sig != NULL && upper != NULL);
	CHECK(strncmp(empty_sig, "eyJ", 3) == 0);
	CHECK(empty_sig[strlen(empty_sig) - 1] == '.');
	ok = refused(v, empty_sig, 0, "empty part") &&
	     refused(v, with_sig, 0, "algorithm none is not allowed") &&
	     refused(v, upper, 0, "algorithm none is not allowed");
	free(empty_sig);
	free(with_sig);
	free(upper);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

/* Algorithm confusion: an HS256 token whose HMAC secret is the issuer's
 * public key PEM, which a naive verifier would accept. */
static int test_hs256_with_public_key_as_secret(void)
{
	jwt_verifier *v = verifier();
	char *h = NULL, *p = NULL, *input = NULL, *mac64 = NULL, *token = NULL;
	unsigned char mac[64];
	size_t mac_len = 0, n;
	int ok = 0;

	CHECK(v != NULL);
	h = b64("{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
	p = b64(good_payload(ISS1));
	CHECK(h != NULL && p != NULL);
	n = strlen(h) + strlen(p) + 2;
	input = malloc(n);
	CHECK(input != NULL);
	CHECK(snprintf(input, n, "%s.%s", h, p) < (int)n);
	CHECK(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k_p256.pub_pem, strlen(k_p256.pub_pem),
	                (const unsigned char *)input, strlen(input), mac, sizeof mac,
	                &mac_len) != NULL);
	CHECK_INT(mac_len, 32);
	mac64 = jwt_base64url_encode(mac, mac_len);
	CHECK(mac64 != NULL);
	n = strlen(input) + strlen(mac64) + 2;
	token = malloc(n);
	CHECK(token != NULL);
	CHECK(snprintf(token, n, "%s.%s", input, mac64) < (int)n);
	ok = refused(v, token, 0, "HMAC algorithms are not allowed");
	free(h);
	free(p);
	free(input);
	free(mac64);
	free(token);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_unknown_kid(void)
{
	jwt_verifier *v = verifier();
	char *t = sign(&k_p256, JWT_ALG_ES256, "rotated-away", good_payload(ISS));
	char *t1 = sign(&k_p256, JWT_ALG_ES256, "es256", good_payload(ISS1));
	int ok;

	CHECK(v != NULL && t != NULL && t1 != NULL);
	/* A kid on a token for the kid-less single key is unknown too. */
	ok = refused(v, t, 0, "kid names no key trusted for its issuer") &&
	     refused(v, t1, 0, "kid names no key trusted for its issuer");
	free(t);
	free(t1);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_untrusted_key_claims_trusted_issuer(void)
{
	jwt_verifier *v = verifier();
	char *t = sign(&k_rogue, JWT_ALG_ES256, "es256", good_payload(ISS));
	char *t1 = sign(&k_rogue, JWT_ALG_ES256, NULL, good_payload(ISS1));
	int ok;

	CHECK(v != NULL && t != NULL && t1 != NULL);
	ok = refused(v, t, 0, "signature does not verify") &&
	     refused(v, t1, 0, "signature does not verify");
	free(t);
	free(t1);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_untrusted_issuer(void)
{
	jwt_verifier *v = verifier();
	char *t = sign(&k_p256, JWT_ALG_ES256, "es256", good_payload("https://evil.example"));
	char *t2 =
	    sign(&k_p256, JWT_ALG_ES256, "es256", "{\"client_id\":\"val-a\",\"exp\":1700000300}");
	int ok;

	CHECK(v != NULL && t != NULL && t2 != NULL);
	ok = refused(v, t, 0, "issuer is not trusted") && refused(v, t2, 0, "no iss claim");
	free(t);
	free(t2);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

/* Replace the character at index i of the given part (0 header, 1 payload,
 * 2 signature) with c, or append c when i is -1. */
static char *mutate(const char *token, int part, long i, char c)
{
	size_t n = strlen(token);
	const char *start = token;
	char *out = malloc(n + 2);
	size_t at;

	if (out == NULL)
		return NULL;
	for (int k = 0; k < part; k++)
		start = strchr(start, '.') + 1;
	if (i >= 0) {
		memcpy(out, token, n + 1);
		out[(size_t)(start - token) + (size_t)i] = c;
		return out;
	}
	/* append at the end of the part */
	{
		const char *end = strchr(start, '.');
		at = end != NULL ? (size_t)(end - token) : n;
	}
	memcpy(out, token, at);
	out[at] = c;
	memcpy(out + at + 1, token + at, n - at + 1);
	return out;
}

static int test_bad_base64url_each_part(void)
{
	jwt_verifier *v = verifier();
	char *t = sign(&k_p256, JWT_ALG_ES256, "es256", good_payload(ISS));
	char *h_plus, *p_eq, *s_len, *s_slash, *s_bits, *h_space;

	size_t slen;
	int ok;

	CHECK(v != NULL && t != NULL);
	slen = strlen(strrchr(t, '.') + 1);
	CHECK_INT(slen, 86); /* 64 bytes: 4n+2 characters */
	h_plus = mutate(t, 0, 3, '+');
	h_space = mutate(t, 0, 5, ' ');
	p_eq = mutate(t, 1, -1, '=');
	s_slash = mutate(t, 2, 10, '/');
	/* The last of 86 characters carries 4 bits that must be zero: 'B' is
	 * 000001, so its low bits are not. */
	s_bits = mutate(t, 2, 85, 'B');
	CHECK(h_plus && h_space && p_eq && s_slash && s_bits);
	ok = refused(v, h_plus, 0, "header is not valid base64url") &&
	     refused(v, h_space, 0, "header is not valid base64url") &&
	     refused(v, p_eq, 0, "payload is not valid base64url") &&
	     refused(v, s_slash, 0, "signature is not valid base64url") &&
	     refused(v, s_bits, 0, "signature is not valid base64url");
	/* 85 characters (4n+1) is never valid base64url. */
	s_len = strdup(t);
	CHECK(s_len != NULL);
	s_len[strlen(s_len) - 1] = '\0';
	ok = ok && refused(v, s_len, 0, "signature is not valid base64url");
	free(t);
	free(h_plus);
	free(h_space);
	free(p_eq);
	free(s_len);
	free(s_slash);
	free(s_bits);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_base64url_strict(void)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	static const char *const bad[] = {"Zg==",  "Zh",   "Zm9",  "Zm9v\n", " Zm9v", "Z",
	                                  "Zm9vY", "Zm+v", "Zm/v", "Zm9=",   "Zm\0v"};
	unsigned char *out = NULL;
	size_t n = 0;
	unsigned char all[256];
	char *e;

	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
		e = jwt_base64url_encode(plain[i], strlen(plain[i]));
		CHECK(e != NULL);
		CHECK_STR(e, enc[i]);
		free(e);
		CHECK(jwt_base64url_decode(enc[i], strlen(enc[i]), &out, &n) == 0);
		CHECK_INT(n, strlen(plain[i]));
		CHECK(memcmp(out, plain[i], n) == 0);
		free(out);
	}
	/* "Zm9" decodes "fo" only with the trailing 2 bits zero: '9' is 61. */
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t len = i == sizeof bad / sizeof bad[0] - 1 ? 4 : strlen(bad[i]);
		if (jwt_base64url_decode(bad[i], len, &out, &n) != -1) {
			fprintf(stderr, "    accepted bad input %zu\n", i);
			free(out);
			return -1;
		}
		CHECK(out == NULL);
	}
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	e = jwt_base64url_encode(all, sizeof all);
	CHECK(e != NULL);
	CHECK(strspn(e, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
	      strlen(e));
	CHECK(jwt_base64url_decode(e, strlen(e), &out, &n) == 0);
	free(e);
	CHECK_INT(n, 256);
	CHECK(memcmp(out, all, 256) == 0);
	free(out);
	return 0;
}

static int test_token_over_size_limit(void)
{
	jwt_verifier *v = verifier();
	jwt_verifier *small = verifier_with(ALL, 300);
	char big[9000];
	char *t, *t2;
	jwt_claims c;
	int ok;

	CHECK(v != NULL && small != NULL);
	/* A payload padded so that the token is just over 8192 bytes. */
	CHECK(snprintf(big, sizeof big, "{\"iss\":\"%s\",\"exp\":%lld,\"pad\":\"", ISS,
	               (long long)(NOW + 300)) > 0);
	memset(big + strlen(big), 'x', 6100 - strlen(big));
	big[6100] = '\0';
	CHECK(strlen(big) + 2 < sizeof big);
	memcpy(big + strlen(big), "\"}", 3);
	t = sign(&k_p256, JWT_ALG_ES256, "es256", big);
	CHECK(t != NULL);
	CHECK(strlen(t) > 8192);
	ok = refused(v, t, 0, "longer than 8192 bytes");
	free(t);
	/* Under the default limit it passes; a smaller limit refuses it. */
	t2 = sign(&k_p256, JWT_ALG_ES256, "es256", good_payload(ISS));
	CHECK(t2 != NULL && strlen(t2) < 8192);
	CHECK(strlen(t2) > 300);
	ok = ok && accepted(v, t2, 0, &c);
	jwt_claims_free(&c);
	ok = ok && refused(small, t2, 0, "longer than 300 bytes");
	free(t2);
	jwt_verifier_destroy(v);
	jwt_verifier_destroy(small);
	CHECK(ok);
	return 0;
}

static int test_not_three_parts(void)
{
	jwt_verifier *v = verifier();
	int ok;

	CHECK(v != NULL);
	ok = refused(v, "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0", 0, "three dot-separated parts") &&
	     refused(v, "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln.c2ln", 0,
	             "three dot-separated parts") &&
	     refused(v, "eyJhbGciOiJFUzI1NiJ9..c2lnbmF0dXJl", 0, "empty part") &&
	     refused(v, ".eyJpc3MiOiJ4In0.c2lnbmF0dXJl", 0, "empty part") &&
	     refused(v, "", 0, "no token");
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int with_raw(const char *header, const char *payload, const char *want)
{
	jwt_verifier *v = verifier();
	char err[256];
	char *t;
	int ok;

	CHECK(v != NULL);
	t = jwt_sign_raw(k_p256.priv_pem, JWT_ALG_ES256, header, payload, err, sizeof err);
	CHECK(t != NULL);
	ok = refused(v, t, 0, want);
	free(t);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_header_is_array(void)
{
	return with_raw("[\"ES256\",\"es256\"]", good_payload(ISS), "header is not a JSON object");
}

static int test_header_not_json(void)
{
	return with_raw("{\"alg\":\"ES256\",", good_payload(ISS), "header is not valid JSON");
}

static int test_header_duplicate_alg(void)
{
	return with_raw("{\"alg\":\"ES256\",\"kid\":\"es256\",\"alg\":\"ES384\"}",
	                good_payload(ISS), "header has a duplicate member");
}

static int test_header_alg_not_string(void)
{
	return with_raw("{\"alg\":256,\"kid\":\"es256\"}", good_payload(ISS),
	                "header has no alg string");
}

static int test_header_kid_not_string(void)
{
	return with_raw("{\"alg\":\"ES256\",\"kid\":1}", good_payload(ISS),
	                "header kid is not a string");
}

static int test_header_crit(void)
{
	return with_raw("{\"alg\":\"ES256\",\"kid\":\"es256\",\"crit\":[\"b64\"],\"b64\":false}",
	                good_payload(ISS), "critical extensions");
}

static int test_unsupported_alg(void)
{
	return with_raw("{\"alg\":\"ES512\",\"kid\":\"es256\"}", good_payload(ISS),
	                "algorithm is not supported");
}

static int test_payload_is_string(void)
{
	return with_raw("{\"alg\":\"ES256\",\"kid\":\"es256\"}", "\"hello\"",
	                "payload is not a JSON object");
}

static int test_payload_trailing_garbage(void)
{
	return with_raw("{\"alg\":\"ES256\",\"kid\":\"es256\"}", "{\"iss\":\"x\"} {}",
	                "payload is not valid JSON");
}

static int test_duplicate_claim(void)
{
	char p[512];
	(void)snprintf(p, sizeof p,
	               "{\"iss\":\"%s\",\"client_id\":\"val-b\",\"client_id\":\"val-a\","
	               "\"exp\":%lld}",
	               ISS, (long long)(NOW + 300));
	return with_raw("{\"alg\":\"ES256\",\"kid\":\"es256\"}", p,
	                "payload has a duplicate member");
}

/* jansson compares member names after unescaping, so an escaped spelling
 * of client_id is the same member. */
static int test_duplicate_claim_escaped(void)
{
	char p[512];
	(void)snprintf(p, sizeof p,
	               "{\"iss\":\"%s\",\"client_id\":\"val-b\",\"client\\u005fid\":\"val-a\","
	               "\"exp\":%lld}",
	               ISS, (long long)(NOW + 300));
	return with_raw("{\"alg\":\"ES256\",\"kid\":\"es256\"}", p,
	                "payload has a duplicate member");
}

static int test_duplicate_nested_member(void)
{
	char p[512];
	(void)snprintf(p, sizeof p, "{\"iss\":\"%s\",\"exp\":%lld,\"x\":{\"a\":1,\"a\":2}}", ISS,
	               (long long)(NOW + 300));
	return with_raw("{\"alg\":\"ES256\",\"kid\":\"es256\"}", p,
	                "payload has a duplicate member");
}

/* Sign the payload printed from fmt and verify it at NOW with leeway:
 * refused with want, or accepted when want is NULL. */
static int claim_case(int64_t leeway, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int claim_case(int64_t leeway, const char *want, const char *fmt, ...)
{
	jwt_verifier *v = verifier();
	char p[512];
	char *tok;
	jwt_claims c;
	va_list ap;
	int n, ok;

	CHECK(v != NULL);
	va_start(ap, fmt);
	n = vsnprintf(p, sizeof p, fmt, ap);
	va_end(ap);
	CHECK(n > 0 && n < (int)sizeof p);
	tok = sign(&k_p256, JWT_ALG_ES256, "es256", p);
	CHECK(tok != NULL);
	if (want != NULL) {
		ok = refused(v, tok, leeway, want);
	} else {
		ok = accepted(v, tok, leeway, &c);
		jwt_claims_free(&c);
	}
	free(tok);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

#define P_ISS "{\"iss\":\"https://as.example\","

static int test_exp_as_string(void)
{
	return claim_case(0, "exp is not a number", P_ISS "\"exp\":\"%lld\"}",
	                  (long long)(NOW + 300));
}

static int test_exp_missing(void)
{
	return claim_case(0, "no exp claim", P_ISS "\"nbf\":%lld}", (long long)(NOW - 5));
}

static int test_exp_leeway(void)
{
	CHECK(claim_case(30, "has expired", P_ISS "\"exp\":%lld}", (long long)(NOW - 31)) == 0);
	CHECK(claim_case(30, NULL, P_ISS "\"exp\":%lld}", (long long)(NOW - 30)) == 0);
	CHECK(claim_case(0, NULL, P_ISS "\"exp\":%lld}", (long long)(NOW)) == 0);
	CHECK(claim_case(0, "has expired", P_ISS "\"exp\":%lld}", (long long)(NOW - 1)) == 0);
	/* A larger leeway than 30 s is capped at 30 s. */
	CHECK(claim_case(3600, "has expired", P_ISS "\"exp\":%lld}", (long long)(NOW - 31)) == 0);
	/* A negative leeway counts as none. */
	CHECK(claim_case(-100, NULL, P_ISS "\"exp\":%lld}", (long long)(NOW)) == 0);
	return 0;
}

static int test_exp_real_and_extremes(void)
{
	jwt_verifier *v = verifier();
	char *t;
	jwt_claims c;
	int ok;

	CHECK(v != NULL);
	t = sign(&k_p256, JWT_ALG_ES256, "es256", P_ISS "\"exp\":1700000100.75}");
	CHECK(t != NULL);
	ok = accepted(v, t, 0, &c) && c.has_exp && c.exp == NOW + 100;
	jwt_claims_free(&c);
	free(t);
	CHECK(ok);
	/* A fraction past exp is not "at exp": 1699999999.5 is expired at NOW. */
	CHECK(claim_case(0, "has expired", P_ISS "\"exp\":%lld.5}", (long long)(NOW - 1)) == 0);
	/* The largest integer exp does not overflow with the leeway. */
	CHECK(claim_case(30, NULL, P_ISS "\"exp\":%lld}", (long long)INT64_MAX) == 0);
	CHECK(claim_case(30, "has expired", P_ISS "\"exp\":%lld}", (long long)INT64_MIN) == 0);
	CHECK(claim_case(30, "not valid yet", P_ISS "\"exp\":%lld, \"nbf\":1e300}",
	                 (long long)(NOW + 300)) == 0);
	CHECK(claim_case(30, NULL, P_ISS "\"exp\":%lld, \"nbf\":-1e300}", (long long)(NOW + 300)) ==
	      0);
	CHECK(claim_case(0, "nbf is not a number",
	                 P_ISS "\"exp\":%lld, \"exp2\":true, \"nbf\":null}",
	                 (long long)(NOW + 300)) == 0);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_nbf_leeway(void)
{
	CHECK(claim_case(30, "not valid yet", P_ISS "\"exp\":1700000300,\"nbf\":%lld}",
	                 (long long)(NOW + 31)) == 0);
	CHECK(claim_case(30, NULL, P_ISS "\"exp\":1700000300,\"nbf\":%lld}",
	                 (long long)(NOW + 30)) == 0);
	CHECK(claim_case(0, "not valid yet", P_ISS "\"exp\":1700000300,\"nbf\":%lld}",
	                 (long long)(NOW + 1)) == 0);
	CHECK(claim_case(0, "nbf is not a number", P_ISS "\"exp\":1700000300,\"nbf\":\"%lld\"}",
	                 (long long)(NOW)) == 0);
	/* nbf 0.5 s in the future rounds up, so it is not yet valid. */
	CHECK(claim_case(0, "not valid yet", P_ISS "\"exp\":1700000300,\"nbf\":%lld.5}",
	                 (long long)(NOW)) == 0);
	return 0;
}

static int test_iat_in_future(void)
{
	CHECK(claim_case(30, "issued in the future", P_ISS "\"exp\":1700000300,\"iat\":%lld}",
	                 (long long)(NOW + 31)) == 0);
	CHECK(claim_case(30, NULL, P_ISS "\"exp\":1700000300,\"iat\":%lld}",
	                 (long long)(NOW + 30)) == 0);
	CHECK(claim_case(30, "iat is not a number", P_ISS "\"exp\":1700000300,\"iat\":[%lld]}",
	                 (long long)(NOW)) == 0);
	return 0;
}

static int test_wrong_type_claims(void)
{
	CHECK(claim_case(0, "client_id is not a string", P_ISS "\"exp\":%lld,\"client_id\":42}",
	                 (long long)(NOW + 300)) == 0);
	CHECK(claim_case(0, "scope is not a string", P_ISS "\"exp\":%lld,\"scope\":[\"ss-kpp\"]}",
	                 (long long)(NOW + 300)) == 0);
	CHECK(claim_case(0, "vsp_id is not a string", P_ISS "\"exp\":%lld,\"vsp_id\":7}",
	                 (long long)(NOW + 300)) == 0);
	CHECK(claim_case(0, "iss is not a string", "{\"iss\":{\"a\":1},\"exp\":%lld}",
	                 (long long)(NOW + 300)) == 0);
	return 0;
}

static int skeyprov_case(const char *value, int want_has, int want_false)
{
	jwt_verifier *v = verifier();
	char p[512];
	char *t;
	jwt_claims c;
	int ok;

	CHECK(v != NULL);
	if (value != NULL)
		CHECK(snprintf(p, sizeof p, P_ISS "\"exp\":%lld,\"SKeyProv\":%s}",
		               (long long)(NOW + 300), value) < (int)sizeof p);
	else
		CHECK(snprintf(p, sizeof p, P_ISS "\"exp\":%lld}", (long long)(NOW + 300)) <
		      (int)sizeof p);
	t = sign(&k_p256, JWT_ALG_ES256, "es256", p);
	CHECK(t != NULL);
	ok = accepted(v, t, 0, &c);
	if (ok && (c.has_skeyprov != want_has || c.skeyprov_false != want_false)) {
		fprintf(stderr, "    SKeyProv %s: has %d false %d\n", value ? value : "absent",
		        c.has_skeyprov, c.skeyprov_false);
		ok = 0;
	}
	jwt_claims_free(&c);
	free(t);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_skeyprov_values(void)
{
	CHECK(skeyprov_case(NULL, 0, 0) == 0);
	CHECK(skeyprov_case("true", 1, 0) == 0);
	CHECK(skeyprov_case("1", 1, 0) == 0);
	CHECK(skeyprov_case("\"true\"", 1, 0) == 0);
	CHECK(skeyprov_case("{\"kms\":\"k1\"}", 1, 0) == 0);
	CHECK(skeyprov_case("false", 1, 1) == 0);
	CHECK(skeyprov_case("0", 1, 1) == 0);
	CHECK(skeyprov_case("0.0", 1, 1) == 0);
	CHECK(skeyprov_case("\"false\"", 1, 1) == 0);
	CHECK(skeyprov_case("\"FALSE\"", 1, 1) == 0);
	CHECK(skeyprov_case("\"\"", 1, 1) == 0);
	CHECK(skeyprov_case("null", 1, 1) == 0);
	return 0;
}

static int test_alg_not_in_allow_mask(void)
{
	jwt_verifier *v = verifier_with(1u << JWT_ALG_ES256, 0);
	char *t = sign(&k_p384, JWT_ALG_ES384, "es384", good_payload(ISS));
	char *ok_t = sign(&k_p256, JWT_ALG_ES256, "es256", good_payload(ISS));
	jwt_claims c;
	int ok;

	CHECK(v != NULL && t != NULL && ok_t != NULL);
	ok = refused(v, t, 0, "not in the allow-list") && accepted(v, ok_t, 0, &c);
	jwt_claims_free(&c);
	free(t);
	free(ok_t);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

/* Re-encode the signature of token as its decoded bytes changed by f. */
static char *resign(const char *token, size_t keep, size_t add)
{
	const char *last = strrchr(token, '.');
	unsigned char *raw = NULL, *nraw;
	size_t n = 0, head = (size_t)(last - token) + 1;
	char *s64, *out;

	if (jwt_base64url_decode(last + 1, strlen(last + 1), &raw, &n) != 0 || keep > n)
		return NULL;
	nraw = calloc(1, keep + add + 1);
	if (nraw == NULL) {
		free(raw);
		return NULL;
	}
	memcpy(nraw, raw, keep);
	free(raw);
	s64 = jwt_base64url_encode(nraw, keep + add);
	free(nraw);
	if (s64 == NULL)
		return NULL;
	out = malloc(head + strlen(s64) + 1);
	if (out != NULL) {
		memcpy(out, token, head);
		memcpy(out + head, s64, strlen(s64) + 1);
	}
	free(s64);
	return out;
}

static int test_es256_signature_wrong_length(void)
{
	jwt_verifier *v = verifier();
	char *t = sign(&k_p256, JWT_ALG_ES256, "es256", good_payload(ISS));
	char *longer, *shorter, *der_like, *same;
	jwt_claims c;
	int ok;

	CHECK(v != NULL && t != NULL);
	longer = resign(t, 64, 1);
	shorter = resign(t, 63, 0);
	der_like = resign(t, 64, 8); /* 72 bytes, as long as a DER signature */
	same = resign(t, 64, 0);
	CHECK(longer && shorter && der_like && same);
	ok = refused(v, longer, 0, "wrong length") && refused(v, shorter, 0, "wrong length") &&
	     refused(v, der_like, 0, "wrong length") && accepted(v, same, 0, &c);
	jwt_claims_free(&c);
	free(t);
	free(longer);
	free(shorter);
	free(der_like);
	free(same);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_other_signature_wrong_length(void)
{
	jwt_verifier *v = verifier();
	char *rs = sign(&k_rsa, JWT_ALG_RS256, "rs", good_payload(ISS));
	char *ed = sign(&k_ed, JWT_ALG_EDDSA, "ed", good_payload(ISS));
	char *rs_short, *ed_long;
	int ok;

	CHECK(v != NULL && rs != NULL && ed != NULL);
	rs_short = resign(rs, 255, 0);
	ed_long = resign(ed, 64, 1);
	CHECK(rs_short && ed_long);
	ok = refused(v, rs_short, 0, "wrong length") && refused(v, ed_long, 0, "wrong length");
	free(rs);
	free(ed);
	free(rs_short);
	free(ed_long);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_tampered_payload(void)
{
	jwt_verifier *v = verifier();
	char *t = sign(&k_p256, JWT_ALG_ES256, "es256", good_payload(ISS));
	char *h, *p, *forged;
	size_t n;
	int ok;

	CHECK(v != NULL && t != NULL);
	/* Same header and signature, payload naming another client. */
	h = strndup(t, (size_t)(strchr(t, '.') - t));
	p = b64("{\"iss\":\"https://as.example\",\"client_id\":\"val-b\",\"scope\":\"ss-kpp\","
	        "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\",\"exp\":1700000300}");
	CHECK(h != NULL && p != NULL);
	n = strlen(t) + strlen(p) + 4;
	forged = malloc(n);
	CHECK(forged != NULL);
	CHECK(snprintf(forged, n, "%s.%s%s", h, p, strrchr(t, '.')) < (int)n);
	ok = refused(v, forged, 0, "signature does not verify");
	free(h);
	free(p);
	free(forged);
	free(t);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

/* An RSA key trusted under kid "rs"; the token says ES256 and names it. */
static int test_rsa_key_with_es256_header(void)
{
	jwt_verifier *v = verifier();
	char err[256];
	char *t, *t2;
	int ok;

	CHECK(v != NULL);
	t = jwt_sign_raw(k_rsa.priv_pem, JWT_ALG_RS256, "{\"alg\":\"ES256\",\"kid\":\"rs\"}",
	                 good_payload(ISS), err, sizeof err);
	/* And the reverse: an EC key named by an RS256 header. */
	t2 = jwt_sign_raw(k_p256.priv_pem, JWT_ALG_ES256, "{\"alg\":\"RS256\",\"kid\":\"es256\"}",
	                  good_payload(ISS), err, sizeof err);
	CHECK(t != NULL && t2 != NULL);
	ok = refused(v, t, 0, "key's type does not fit the algorithm") &&
	     refused(v, t2, 0, "key's type does not fit the algorithm");
	free(t);
	free(t2);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_sign_refuses_wrong_key(void)
{
	char err[256];
	CHECK(keys_setup() == 0);
	CHECK(jwt_sign(k_rsa.priv_pem, JWT_ALG_ES256, NULL, "{}", err, sizeof err) == NULL);
	CHECK(strstr(err, "does not fit ES256") != NULL);
	CHECK(jwt_sign(k_p256.pub_pem, JWT_ALG_ES256, NULL, "{}", err, sizeof err) == NULL);
	CHECK(strstr(err, "cannot read the private key") != NULL);
	return 0;
}

static int test_add_key_rules(void)
{
	char err[256];
	jwt_verifier *v;

	CHECK(keys_setup() == 0);
	CHECK(jwt_verifier_new(0, 0, err, sizeof err) == NULL);
	CHECK(strstr(err, "allow-list is empty") != NULL);
	CHECK(jwt_verifier_new(1u << JWT_ALG__COUNT, 0, err, sizeof err) == NULL);
	CHECK(jwt_verifier_new(ALL, (size_t)-1, err, sizeof err) == NULL);
	CHECK(strstr(err, "size limit") != NULL);
	v = jwt_verifier_new(ALL, 0, err, sizeof err);
	CHECK(v != NULL);
	CHECK(jwt_verifier_add_key(v, ISS, "a", k_rsa1024.pub_pem, err, sizeof err) == -1);
	CHECK(strstr(err, "at least 2048 bits") != NULL);
	CHECK(jwt_verifier_add_key(v, ISS, "a", k_p256.priv_pem, err, sizeof err) == -1);
	CHECK(strstr(err, "cannot read the public key") != NULL);
	CHECK(jwt_verifier_add_key(v, ISS, "a", "not a key", err, sizeof err) == -1);
	CHECK(jwt_verifier_add_key(v, ISS, "a", k_p256.pub_pem, err, sizeof err) == 0);
	CHECK(jwt_verifier_add_key(v, ISS, "a", k_p384.pub_pem, err, sizeof err) == -1);
	CHECK(strstr(err, "already has a key with kid a") != NULL);
	CHECK(jwt_verifier_add_key(v, ISS, NULL, k_p384.pub_pem, err, sizeof err) == -1);
	CHECK(strstr(err, "each needs a kid") != NULL);
	CHECK(jwt_verifier_add_key(v, ISS, "", k_p384.pub_pem, err, sizeof err) == -1);
	CHECK(jwt_verifier_add_key(v, "", "b", k_p384.pub_pem, err, sizeof err) == -1);
	CHECK(jwt_verifier_add_key(v, ISS1, NULL, k_p384.pub_pem, err, sizeof err) == 0);
	CHECK(jwt_verifier_add_key(v, ISS1, "b", k_p256.pub_pem, err, sizeof err) == -1);
	CHECK(strstr(err, "each needs a kid") != NULL);
	jwt_verifier_destroy(v);
	jwt_verifier_destroy(NULL);
	jwt_claims_free(NULL);
	return 0;
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	if (fputs(text, f) < 0) {
		fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

static int test_load_file(void)
{
	char dir[200];
	char path[256], pem1[256], pem2[256], bad[256], err[512];
	jwt_verifier *v;
	jwt_claims c;
	char *t;
	int n, ok;

	CHECK(keys_setup() == 0);
	CHECK(check_tempdir(dir, sizeof dir, "test_jwt_") == 0);
	CHECK(snprintf(path, sizeof path, "%s/keys.json", dir) < (int)sizeof path);
	CHECK(snprintf(pem1, sizeof pem1, "%s/p256.pem", dir) < (int)sizeof pem1);
	CHECK(snprintf(pem2, sizeof pem2, "%s/ed.pem", dir) < (int)sizeof pem2);
	CHECK(snprintf(bad, sizeof bad, "%s/bad.json", dir) < (int)sizeof bad);
	CHECK(write_text(pem1, k_p256.pub_pem) == 0);
	CHECK(write_text(pem2, k_ed.pub_pem) == 0);
	CHECK(write_text(path, "[{\"iss\":\"" ISS "\",\"kid\":\"es256\","
	                       "\"public_key_file\":\"p256.pem\"},"
	                       "{\"iss\":\"" ISS
	                       "\",\"kid\":\"ed\",\"public_key_file\":\"ed.pem\"}]") == 0);
	/* The second entry misspells kid: the whole file is refused. */
	CHECK(write_text(bad, "[{\"iss\":\"" ISS1 "\",\"public_key_file\":\"p256.pem\"},"
	                      "{\"iss\":\"" ISS1
	                      "\",\"kdi\":\"x\",\"public_key_file\":\"ed.pem\"}]") == 0);
	v = jwt_verifier_new(ALL, 0, err, sizeof err);
	CHECK(v != NULL);
	n = jwt_verifier_load_file(v, path, err, sizeof err);
	if (n != 2)
		fprintf(stderr, "    load: %s\n", err);
	CHECK_INT(n, 2);
	CHECK_INT(jwt_verifier_load_file(v, bad, err, sizeof err), -1);
	CHECK(strstr(err, "entry 2: unknown member kdi") != NULL);
	/* The failed file added nothing: ISS1 still has no key. */
	t = sign(&k_p256, JWT_ALG_ES256, NULL, good_payload(ISS1));
	CHECK(t != NULL);
	ok = refused(v, t, 0, "issuer is not trusted");
	free(t);
	t = sign(&k_ed, JWT_ALG_EDDSA, "ed", good_payload(ISS));
	CHECK(t != NULL);
	ok = ok && accepted(v, t, 0, &c);
	jwt_claims_free(&c);
	free(t);
	CHECK_INT(jwt_verifier_load_file(v, "/nonexistent/keys.json", err, sizeof err), -1);
	CHECK(strstr(err, "cannot open") != NULL);
	jwt_verifier_destroy(v);
	unlink(path);
	unlink(pem1);
	unlink(pem2);
	unlink(bad);
	rmdir(dir);
	CHECK(ok);
	return 0;
}

/* A key added for some algorithms verifies those only; algorithms that do
 * not fit the key are refused when it is added. */
static int test_key_for_some_algorithms(void)
{
	jwt_verifier *v;
	char err[256], *t;

	CHECK(keys_setup() == 0);
	v = jwt_verifier_new(ALL, 0, err, sizeof err);
	CHECK(v != NULL);
	CHECK(jwt_verifier_add_key_algs(v, ISS, "rs", k_rsa.pub_pem, 1u << JWT_ALG_PS256, err,
	                                sizeof err) == 0);
	CHECK(jwt_verifier_add_key_algs(v, ISS, "ec", k_p256.pub_pem, 1u << JWT_ALG_RS256, err,
	                                sizeof err) == -1);
	CHECK(strstr(err, "does not fit the key's type") != NULL);
	CHECK(jwt_verifier_add_key_algs(v, ISS, "ec", k_p256.pub_pem, 1u << 30, err, sizeof err) ==
	      -1);
	t = sign(&k_rsa, JWT_ALG_PS256, "rs", good_payload(ISS));
	CHECK(t != NULL);
	{
		jwt_claims c;
		CHECK(accepted(v, t, 0, &c));
		jwt_claims_free(&c);
	}
	free(t);
	t = sign(&k_rsa, JWT_ALG_RS256, "rs", good_payload(ISS));
	CHECK(t != NULL);
	CHECK(refused(v, t, 0, "the trusted key is not for the token's algorithm"));
	free(t);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_has_key(void)
{
	jwt_verifier *v = verifier();

	CHECK(v != NULL);
	CHECK(jwt_verifier_has_key(v, ISS, "es256"));
	CHECK(!jwt_verifier_has_key(v, ISS, "es999"));
	CHECK(!jwt_verifier_has_key(v, ISS, NULL)); /* several keys: a kid is needed */
	CHECK(jwt_verifier_has_key(v, ISS1, NULL)); /* the issuer's only key */
	CHECK(!jwt_verifier_has_key(v, ISS1, "any"));
	CHECK(!jwt_verifier_has_key(v, "https://nobody.example", NULL));
	CHECK(!jwt_verifier_has_key(NULL, ISS, "es256"));
	jwt_verifier_destroy(v);
	return 0;
}

/* jwt_peek reads iss and kid of any well-formed token, signed or not, and
 * refuses what verification would refuse as malformed. */
static int test_peek(void)
{
	char iss[64], kid[16], small[4], *t;

	CHECK(keys_setup() == 0);
	t = sign(&k_rogue, JWT_ALG_ES256, "k-999", good_payload(ISS));
	CHECK(t != NULL);
	CHECK(jwt_peek(t, 8192, iss, sizeof iss, kid, sizeof kid) == 0);
	CHECK_STR(iss, ISS);
	CHECK_STR(kid, "k-999");
	CHECK(jwt_peek(t, 8192, iss, sizeof iss, small, sizeof small) == -1);
	CHECK(jwt_peek(t, 10, iss, sizeof iss, kid, sizeof kid) == -1);
	free(t);
	t = sign(&k_rogue, JWT_ALG_ES256, NULL, good_payload(ISS1));
	CHECK(t != NULL);
	CHECK(jwt_peek(t, 8192, iss, sizeof iss, kid, sizeof kid) == 0);
	CHECK_STR(iss, ISS1);
	CHECK_STR(kid, "");
	free(t);
	t = assemble("{\"alg\":\"ES256\",\"kid\":7}", good_payload(ISS), "AAAA");
	CHECK(t != NULL);
	CHECK(jwt_peek(t, 8192, iss, sizeof iss, kid, sizeof kid) == -1);
	free(t);
	t = assemble("{\"alg\":\"ES256\"}", "{\"iss\":1}", "AAAA");
	CHECK(t != NULL);
	CHECK(jwt_peek(t, 8192, iss, sizeof iss, kid, sizeof kid) == -1);
	free(t);
	CHECK(jwt_peek("not.a-token", 8192, iss, sizeof iss, kid, sizeof kid) == -1);
	CHECK(jwt_peek(NULL, 8192, iss, sizeof iss, kid, sizeof kid) == -1);
	return 0;
}

static const check_case cases[] = {
    {"key_for_some_algorithms", test_key_for_some_algorithms},
    {"has_key", test_has_key},
    {"peek", test_peek},
    {"round_trip_es256", test_round_trip_es256},
    {"round_trip_es384", test_round_trip_es384},
    {"round_trip_rs256", test_round_trip_rs256},
    {"round_trip_ps256", test_round_trip_ps256},
    {"round_trip_eddsa", test_round_trip_eddsa},
    {"signer_reused", test_signer_reused},
    {"header_form", test_header_form},
    {"no_kid_single_key", test_no_kid_single_key},
    {"no_kid_several_keys", test_no_kid_several_keys},
    {"alg_names", test_alg_names},
    {"alg_none", test_alg_none},
    {"hs256_with_public_key_as_secret", test_hs256_with_public_key_as_secret},
    {"unknown_kid", test_unknown_kid},
    {"untrusted_key_claims_trusted_issuer", test_untrusted_key_claims_trusted_issuer},
    {"untrusted_issuer", test_untrusted_issuer},
    {"bad_base64url_each_part", test_bad_base64url_each_part},
    {"base64url_strict", test_base64url_strict},
    {"token_over_size_limit", test_token_over_size_limit},
    {"not_three_parts", test_not_three_parts},
    {"header_is_array", test_header_is_array},
    {"header_not_json", test_header_not_json},
    {"header_duplicate_alg", test_header_duplicate_alg},
    {"header_alg_not_string", test_header_alg_not_string},
    {"header_kid_not_string", test_header_kid_not_string},
    {"header_crit", test_header_crit},
    {"unsupported_alg", test_unsupported_alg},
    {"payload_is_string", test_payload_is_string},
    {"payload_trailing_garbage", test_payload_trailing_garbage},
    {"duplicate_claim", test_duplicate_claim},
    {"duplicate_claim_escaped", test_duplicate_claim_escaped},
    {"duplicate_nested_member", test_duplicate_nested_member},
    {"exp_as_string", test_exp_as_string},
    {"exp_missing", test_exp_missing},
    {"exp_leeway", test_exp_leeway},
    {"exp_real_and_extremes", test_exp_real_and_extremes},
    {"nbf_leeway", test_nbf_leeway},
    {"iat_in_future", test_iat_in_future},
    {"wrong_type_claims", test_wrong_type_claims},
    {"skeyprov_values", test_skeyprov_values},
    {"alg_not_in_allow_mask", test_alg_not_in_allow_mask},
    {"es256_signature_wrong_length", test_es256_signature_wrong_length},
    {"other_signature_wrong_length", test_other_signature_wrong_length},
    {"tampered_payload", test_tampered_payload},
    {"rsa_key_with_es256_header", test_rsa_key_with_es256_header},
    {"sign_refuses_wrong_key", test_sign_refuses_wrong_key},
    {"add_key_rules", test_add_key_rules},
    {"load_file", test_load_file},
};

int main(void)
{
	int rc;

	if (keys_setup() != 0) {
		fprintf(stderr, "cannot generate test keys\n");
		return 1;
	}
	rc = check_run("jwt", cases, sizeof cases / sizeof cases[0]);
	testkeys_pair_free(&k_p256);
	testkeys_pair_free(&k_p384);
	testkeys_pair_free(&k_rsa);
	testkeys_pair_free(&k_ed);
	testkeys_pair_free(&k_rogue);
	testkeys_pair_free(&k_rsa1024);
	return rc;
}
