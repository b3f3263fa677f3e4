/*
 * test_trust: the issuers file, on files written to a temporary folder and
 * keys made in-process (no network: JWKS URIs are checked for their
 * settings only; their fetching is tested against a real server by the
 * Python suite). Bindings reach authz; several issuers must each be bound;
 * a JWKS file rotates keys on a reload; every broken file is refused whole,
 * the trust in force untouched.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "authz.h"
#include "check.h"
#include "jwt.h"
#include "testkeys.h"
#include "log.h"
#include "trust.h"

#define ISS_A    "https://as.a.example"
#define ISS_B    "https://as.b.example"
#define ALL_ALGS ((1u << JWT_ALG__COUNT) - 1)

static char dir[200];
static EVP_PKEY *key_a, *key_b, *key_a2;
static char file[512];

static int write_text(const char *name, const char *text)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -1;
}

static int write_pem(const char *name, EVP_PKEY *k)
{
	char *pem = testkeys_pem(k, 0);
	int rc = pem != NULL ? write_text(name, pem) : -1;
	free(pem);
	return rc;
}

/* {"keys":[...]} with the P-256 keys given, each under its kid. */
static int write_jwks(const char *name, EVP_PKEY *k1, const char *kid1, EVP_PKEY *k2,
                      const char *kid2)
{
	char text[2048];
	size_t at = (size_t)snprintf(text, sizeof text, "{\"keys\":[");
	EVP_PKEY *ks[2] = {k1, k2};
	const char *kids[2] = {kid1, kid2};

	for (int i = 0; i < 2 && ks[i] != NULL; i++) {
		unsigned char pt[80];
		size_t len = 0;
		char *x, *y;

		EVP_PKEY_get_octet_string_param(ks[i], OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt,
		                                &len);
		x = jwt_base64url_encode(pt + 1, 32);
		y = jwt_base64url_encode(pt + 33, 32);
		at += (size_t)snprintf(text + at, sizeof text - at,
		                       "%s{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\","
		                       "\"x\":\"%s\",\"y\":\"%s\",\"use\":\"sig\"}",
		                       i > 0 ? "," : "", kids[i], x, y);
		free(x);
		free(y);
	}
	snprintf(text + at, sizeof text - at, "]}");
	return write_text(name, text);
}

static int write_issuers(const char *json)
{
	return write_text("issuers.json", json);
}

static trust *new_trust(void)
{
	trust_settings ts = {.alg_mask = ALL_ALGS, .max_token_bytes = 0};
	return trust_new(&ts, NULL, 0);
}

static char *token(EVP_PKEY *k, const char *iss, const char *kid, const char *vsp)
{
	char payload[512], *pem = testkeys_pem(k, 1), *t;

	snprintf(payload, sizeof payload,
	         "{\"iss\":\"%s\",\"client_id\":\"val-1\",\"scope\":\"ss-kpp\",\"SKeyProv\":true,"
	         "\"vsp_id\":\"%s\",\"exp\":4000000000}",
	         iss, vsp);
	t = pem != NULL ? jwt_sign(pem, JWT_ALG_ES256, kid, payload, NULL, 0) : NULL;
	free(pem);
	return t;
}

/* authz under the trust in force: the decision, with detail. */
static authz_decision decide(const trust *t, const char *tok, char *detail, size_t detail_size)
{
	authz_policy p = {trust_verifier(t), "ss-kpp", 0, NULL, NULL, 0};
	char vsp[128];

	p.issuers = trust_issuers(t, &p.n_issuers);
	return authz_check(&p, tok, "val-1", 1700000000, vsp, sizeof vsp, detail, detail_size);
}

static int allowed(const trust *t, EVP_PKEY *k, const char *iss, const char *kid, const char *vsp)
{
	char *tok = token(k, iss, kid, vsp), detail[256] = "";
	authz_decision d = tok != NULL ? decide(t, tok, detail, sizeof detail) : AUTHZ_ERROR;

	free(tok);
	return d == AUTHZ_ALLOW;
}

/* ---- cases ---- */

static int test_single_issuer_defaults_to_any(void)
{
	trust *t = new_trust();
	const authz_issuer *b;
	size_t n;

	CHECK(t != NULL);
	CHECK(write_pem("a.pem", key_a) == 0);
	CHECK(write_issuers("[{\"iss\":\"" ISS_A
	                    "\",\"kid\":\"a1\",\"public_key_file\":\"a.pem\"}]") == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);
	CHECK_INT(trust_generation(t), 1);
	b = trust_issuers(t, &n);
	CHECK_INT(n, 1);
	CHECK_STR(b[0].iss, ISS_A);
	CHECK(b[0].any);
	CHECK(allowed(t, key_a, ISS_A, "a1", "vsp-anything"));
	CHECK_INT(trust_stale(t, NULL, 0), 0);
	trust_destroy(t);
	return 0;
}

static int test_two_bound_issuers(void)
{
	trust *t = new_trust();
	char *tok, detail[256];

	CHECK(t != NULL);
	CHECK(write_pem("a.pem", key_a) == 0);
	CHECK(write_pem("b.pem", key_b) == 0);
	CHECK(write_issuers("[{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"vsp-a\"],\"kid\":\"a1\","
	                    "\"public_key_file\":\"a.pem\"},"
	                    "{\"iss\":\"" ISS_B "\",\"vsp_ids\":[\"vsp-b\",\"vsp-b2\"],"
	                    "\"public_key_file\":\""
	                    "b.pem\"}]") == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);
	CHECK(allowed(t, key_a, ISS_A, "a1", "vsp-a"));
	CHECK(allowed(t, key_b, ISS_B, NULL, "vsp-b"));
	CHECK(allowed(t, key_b, ISS_B, NULL, "vsp-b2"));
	/* issuer A naming provider B: the tenant check */
	tok = token(key_a, ISS_A, "a1", "vsp-b");
	CHECK(tok != NULL);
	CHECK(decide(t, tok, detail, sizeof detail) == AUTHZ_DENY);
	CHECK(strstr(detail, "not bound to the VAL service provider") != NULL);
	free(tok);
	/* B's key does not sign for A */
	tok = token(key_b, ISS_A, "a1", "vsp-a");
	CHECK(tok != NULL);
	CHECK(decide(t, tok, detail, sizeof detail) == AUTHZ_DENY);
	free(tok);
	trust_destroy(t);
	return 0;
}

/* A file that must be refused, at start and on a reload alike; want is in
 * the error. */
static int refused(trust *t, const char *json, const char *want)
{
	char err[512] = "";
	uint64_t gen = trust_generation(t);
	const jwt_verifier *v = trust_verifier(t);

	CHECK(write_issuers(json) == 0);
	if (trust_load(t, file, err, sizeof err) != -1) {
		fprintf(stderr, "    accepted, expected \"%s\"\n", want);
		return -1;
	}
	if (strstr(err, want) == NULL || strstr(err, "issuers.json") == NULL) {
		fprintf(stderr, "    error \"%s\" lacks \"%s\"\n", err, want);
		return -1;
	}
	CHECK_INT(trust_generation(t), gen);
	CHECK(trust_verifier(t) == v);
	return 0;
}

static int test_several_issuers_must_be_bound(void)
{
	trust *t = new_trust();

	CHECK(t != NULL);
	CHECK(write_pem("a.pem", key_a) == 0);
	CHECK(write_pem("b.pem", key_b) == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A
	              "\",\"vsp_ids\":[\"vsp-a\"],\"public_key_file\":\"a.pem\"},"
	              "{\"iss\":\"" ISS_B "\",\"public_key_file\":\"b.pem\"}]",
	              "issuer " ISS_B " has no vsp_ids") == 0);
	CHECK_INT(trust_generation(t), 0);
	/* "*" said explicitly is a binding */
	CHECK(write_issuers("[{\"iss\":\"" ISS_A
	                    "\",\"vsp_ids\":\"*\",\"public_key_file\":\"a.pem\"},"
	                    "{\"iss\":\"" ISS_B
	                    "\",\"vsp_ids\":[\"b\"],\"public_key_file\":\"b.pem\"}]") == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);
	CHECK(allowed(t, key_a, ISS_A, NULL, "whoever"));
	trust_destroy(t);
	return 0;
}

static int test_broken_reload_keeps_trust(void)
{
	trust *t = new_trust();

	CHECK(t != NULL);
	CHECK(write_pem("a.pem", key_a) == 0);
	CHECK(write_pem("b.pem", key_b) == 0);
	CHECK(write_text("bad.pem",
	                 "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n") == 0);
	CHECK(write_issuers("[{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"vsp-a\"],\"kid\":\"a1\","
	                    "\"public_key_file\":\"a.pem\"}]") == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);

	CHECK(refused(t, "[{\"iss\": ", "issuers.json: line") == 0);
	CHECK(refused(t, "{}", "not a JSON array") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A "\",\"vsp_id\":[\"x\"],\"public_key_file\":\"a.pem\"}]",
	              "unknown member vsp_id") == 0);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\",\"public_key_file\":\"missing.pem\"}]",
	              "cannot open") == 0);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\",\"public_key_file\":\"bad.pem\"}]",
	              "cannot read the public key") == 0);
	/* a good entry beside a broken one: nothing of the file is taken */
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"a\"],\"kid\":\"a9\","
	              "\"public_key_file\":\"b.pem\"},"
	              "{\"iss\":\"" ISS_B
	              "\",\"vsp_ids\":[\"b\"],\"public_key_file\":\"nope.pem\"}]",
	              "entry 2") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A
	              "\",\"vsp_ids\":[\"a\"],\"kid\":\"k\",\"public_key_file\":"
	              "\"a.pem\"},{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"a\"],\"kid\":\"k\","
	              "\"public_key_file\":\"b.pem\"}]",
	              "already has a key with kid k") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A
	              "\",\"vsp_ids\":[\"a\"],\"kid\":\"k\",\"public_key_file\":"
	              "\"a.pem\"},{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"b\"],\"kid\":\"k2\","
	              "\"public_key_file\":\"b.pem\"}]",
	              "do not agree on vsp_ids") == 0);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\",\"vsp_ids\":[],\"public_key_file\":\"a.pem\"}]",
	              "non-empty array") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"*\"],\"public_key_file\":\"a.pem\"}]",
	              "stands alone") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A
	              "\",\"vsp_ids\":[\"a\",\"a\"],\"public_key_file\":\"a.pem\"}]",
	              "names a twice") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A "\",\"vsp_ids\":\"all\",\"public_key_file\":\"a.pem\"}]",
	              "array of names or \"*\"") == 0);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\",\"kid\":\"x\",\"jwks_file\":\"a.json\"}]",
	              "kid goes with public_key_file only") == 0);
	CHECK(refused(
	          t, "[{\"iss\":\"" ISS_A "\",\"jwks_refresh_s\":5,\"public_key_file\":\"a.pem\"}]",
	          "jwks_refresh_s goes with jwks_uri only") == 0);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\"}]", "exactly one of") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A "\",\"public_key_file\":\"a.pem\",\"jwks_file\":\"x\"}]",
	              "exactly one of") == 0);
	CHECK(refused(t, "[{\"iss\":\"\",\"public_key_file\":\"a.pem\"}]", "iss is not") == 0);

	/* the first trust stands through all of it */
	CHECK_INT(trust_generation(t), 1);
	CHECK(allowed(t, key_a, ISS_A, "a1", "vsp-a"));
	trust_destroy(t);
	return 0;
}

static int test_jwks_file_rotation(void)
{
	trust *t = new_trust();
	const char *json =
	    "[{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"vsp-a\"],\"jwks_file\":\"a.jwks\"}]";
	char *tok;

	CHECK(t != NULL);
	CHECK(write_jwks("a.jwks", key_a, "k1", NULL, NULL) == 0);
	CHECK(write_issuers(json) == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);
	CHECK(allowed(t, key_a, ISS_A, "k1", "vsp-a"));
	CHECK(!allowed(t, key_a2, ISS_A, "k2", "vsp-a"));
	CHECK(jwt_verifier_has_key(trust_verifier(t), ISS_A, "k1"));
	CHECK(!jwt_verifier_has_key(trust_verifier(t), ISS_A, "k2"));
	/* no trust for a JWKS file issuer's token: nothing to fetch */
	tok = token(key_a2, ISS_A, "k2", "vsp-a");
	CHECK(tok != NULL);
	CHECK(trust_refresh_for_token(t, tok) == 0);
	free(tok);

	/* both keys during the rotation, then the new one alone */
	CHECK(write_jwks("a.jwks", key_a, "k1", key_a2, "k2") == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);
	CHECK(allowed(t, key_a, ISS_A, "k1", "vsp-a"));
	CHECK(allowed(t, key_a2, ISS_A, "k2", "vsp-a"));
	CHECK(write_jwks("a.jwks", key_a2, "k2", NULL, NULL) == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);
	CHECK(!allowed(t, key_a, ISS_A, "k1", "vsp-a"));
	CHECK(allowed(t, key_a2, ISS_A, "k2", "vsp-a"));
	CHECK_INT(trust_generation(t), 3);

	/* a broken JWKS file is a broken issuers file: k2 stays */
	CHECK(write_text("a.jwks", "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}") == 0);
	CHECK(refused(t, json, "no key of the document is usable") == 0);
	CHECK(write_text("a.jwks", "{\"keys\": [") == 0);
	CHECK(refused(t, json, "a.jwks: the document is not valid JSON") == 0);
	CHECK(allowed(t, key_a2, ISS_A, "k2", "vsp-a"));
	trust_destroy(t);
	return 0;
}

static int test_jwks_uri_settings(void)
{
	trust *t = new_trust();
	char which[256];

	CHECK(t != NULL);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\",\"jwks_uri\":\"http://as.a.example/jwks\"}]",
	              "plain http is allowed only to a loopback address") == 0);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\",\"jwks_uri\":\"ftp://127.0.0.1/jwks\"}]",
	              "the scheme must be https") == 0);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\",\"jwks_uri\":\"http://127.evil.example/jwks\"}]",
	              "loopback") == 0);
	CHECK(refused(t, "[{\"iss\":\"" ISS_A "\",\"jwks_uri\":\"not a url\"}]",
	              "not an absolute URL") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A "\",\"jwks_uri\":\"https://as.a.example/jwks\","
	              "\"jwks_refresh_s\":600,\"jwks_max_stale_s\":60}]",
	              "jwks_max_stale_s must be at least jwks_refresh_s") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A "\",\"jwks_uri\":\"https://as.a.example/jwks\","
	              "\"jwks_timeout_ms\":\"5\"}]",
	              "jwks_timeout_ms must be a whole number") == 0);
	CHECK(refused(t,
	              "[{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"a\"],\"jwks_uri\":\"https://a/j\"},"
	              "{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"a\"],\"public_key_file\":\"a.pem\"}]",
	              "must be the issuer's only entry") == 0);
	/* a good one: not fetched (no refresher here), so no key and stale */
	CHECK(
	    write_issuers("[{\"iss\":\"" ISS_A "\",\"vsp_ids\":[\"a\"],"
	                  "\"jwks_uri\":\"http://127.0.0.1:9/jwks\",\"jwks_refresh_s\":1,"
	                  "\"jwks_max_stale_s\":2,\"jwks_timeout_ms\":100,\"jwks_refetch_min_s\":1,"
	                  "\"jwks_ca_file\":\"ca.pem\"}]") == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);
	CHECK_INT(trust_stale(t, which, sizeof which), 1);
	CHECK_STR(which, ISS_A);
	CHECK(!allowed(t, key_a, ISS_A, "k1", "a"));
	CHECK_INT(trust_poll(t), 0);
	trust_destroy(t);
	return 0;
}

/* An empty file trusts no one: every token refused. */
static int test_empty_file_trusts_no_one(void)
{
	trust *t = new_trust();
	size_t n = 9;

	CHECK(t != NULL);
	CHECK(write_issuers("[]") == 0);
	CHECK(trust_load(t, file, NULL, 0) == 0);
	(void)trust_issuers(t, &n);
	CHECK_INT(n, 0);
	CHECK(!allowed(t, key_a, ISS_A, NULL, "vsp-a"));
	trust_destroy(t);
	trust_destroy(NULL);
	return 0;
}

static int setup(void)
{
	if (check_tempdir(dir, sizeof dir, "test_trust_") != 0)
		return -1;
	snprintf(file, sizeof file, "%s/issuers.json", dir);
	key_a = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	key_a2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	key_b = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	return key_a && key_a2 && key_b ? 0 : -1;
}

static void teardown(void)
{
	static const char *const names[] = {"issuers.json", "a.pem", "b.pem", "bad.pem", "a.jwks"};
	char path[600];

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
	EVP_PKEY_free(key_a);
	EVP_PKEY_free(key_a2);
	EVP_PKEY_free(key_b);
}

static const check_case cases[] = {
    {"single_issuer_defaults_to_any", test_single_issuer_defaults_to_any},
    {"two_bound_issuers", test_two_bound_issuers},
    {"several_issuers_must_be_bound", test_several_issuers_must_be_bound},
    {"broken_reload_keeps_trust", test_broken_reload_keeps_trust},
    {"jwks_file_rotation", test_jwks_file_rotation},
    {"jwks_uri_settings", test_jwks_uri_settings},
    {"empty_file_trusts_no_one", test_empty_file_trusts_no_one},
};

int main(void)
{
	int rc;

	log_set_level(LOG_ERROR); /* the loads' event lines are not the test's output */
	if (setup() != 0) {
		fprintf(stderr, "cannot set up\n");
		teardown();
		printf("0 passed, 1 failed\n");
		return 1;
	}
	rc = check_run("trust", cases, sizeof cases / sizeof cases[0]);
	teardown();
	return rc;
}
