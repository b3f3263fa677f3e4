/*
 * test_authz: the token half of authorization (contract rules 1 to 3) on
 * real tokens signed with a P-256 key made in-process. Each denial is checked
 * for its sentence, for an empty vsp_id output and for not quoting the
 * token. With a token cache, every rule must still hold on a hit, and a
 * token that failed must never be served from it.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "authz.h"
#include "check.h"
#include "jwt.h"
#include "testkeys.h"
#include "tokcache.h"

#define NOW INT64_C(1700000000)
#define ISS "https://as.example"

static testkeys_pair key;

static int key_setup(void)
{
	return testkeys_pair_fill(&key, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
}

static jwt_verifier *make_verifier(void)
{
	char err[256];
	jwt_verifier *v = jwt_verifier_new(1u << JWT_ALG_ES256, 0, err, sizeof err);
	if (v == NULL)
		return NULL;
	if (jwt_verifier_add_key(v, ISS, NULL, key.pub_pem, err, sizeof err) != 0) {
		fprintf(stderr, "    add_key: %s\n", err);
		jwt_verifier_destroy(v);
		return NULL;
	}
	return v;
}

/* A token whose payload is printed from fmt. */
static char *token(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *token(const char *fmt, ...)
{
	char p[1024], err[256];
	va_list ap;
	char *t;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(p, sizeof p, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof p)
		return NULL;
	t = jwt_sign(key.priv_pem, JWT_ALG_ES256, NULL, p, err, sizeof err);
	if (t == NULL)
		fprintf(stderr, "    jwt_sign: %s\n", err);
	return t;
}

/* Claims before and after SKeyProv, so cases can vary one claim. */
#define HEAD "{\"iss\":\"" ISS "\",\"exp\":1700000300,\"iat\":1699999990,"

static char *good_token(void)
{
	return token(HEAD "\"client_id\":\"val-a\",\"scope\":\"openid ss-kpp\","
	                  "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}");
}

/* Run authz_check and compare with the expected decision; on a denial the
 * detail must hold want, vsp_id must be empty and the detail must not
 * quote the token's signature. */
static int expect(const authz_policy *p, const char *tok, const char *requester,
                  authz_decision want_d, const char *want)
{
	char vsp[64], detail[256];
	authz_decision d;

	memset(vsp, 'Z', sizeof vsp);
	memset(detail, 'Z', sizeof detail);
	d = authz_check(p, tok, requester, NOW, vsp, sizeof vsp, detail, sizeof detail);
	if (d != want_d) {
		fprintf(stderr, "    decision %d, expected %d (detail \"%s\")\n", (int)d,
		        (int)want_d, detail);
		return 0;
	}
	if (want_d == AUTHZ_ALLOW) {
		if (strcmp(vsp, want) != 0 || detail[0] != '\0') {
			fprintf(stderr, "    vsp_id \"%s\", detail \"%s\"\n", vsp, detail);
			return 0;
		}
		return 1;
	}
	if (strstr(detail, want) == NULL) {
		fprintf(stderr, "    detail \"%s\" lacks \"%s\"\n", detail, want);
		return 0;
	}
	if (vsp[0] != '\0') {
		fprintf(stderr, "    vsp_id not emptied on deny\n");
		return 0;
	}
	if (tok != NULL && strrchr(tok, '.') != NULL) {
		const char *sig = strrchr(tok, '.') + 1;
		for (; strlen(sig) >= 8; sig++) {
			for (const char *s = detail; strlen(s) >= 8; s++) {
				if (memcmp(s, sig, 8) == 0) {
					fprintf(stderr, "    detail quotes the token\n");
					return 0;
				}
			}
		}
	}
	return 1;
}

static int run_case(const char *tok, const char *requester, authz_decision want_d, const char *want)
{
	jwt_verifier *v = make_verifier();
	authz_policy p = {v, "ss-kpp", 30, NULL, NULL, 0};
	int ok;

	CHECK(v != NULL);
	CHECK(tok != NULL);
	ok = expect(&p, tok, requester, want_d, want);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int owned_case(char *tok, const char *requester, authz_decision want_d, const char *want)
{
	int rc = run_case(tok, requester, want_d, want);
	free(tok);
	return rc;
}

static int test_allow(void)
{
	return owned_case(good_token(), "val-a", AUTHZ_ALLOW, "vsp-1");
}

static int test_token_of_a_used_by_b(void)
{
	return owned_case(good_token(), "val-b", AUTHZ_DENY,
	                  "client_id does not match requesterIdentity");
}

static int test_requester_prefix_is_not_a_match(void)
{
	CHECK(owned_case(good_token(), "val-", AUTHZ_DENY,
	                 "client_id does not match requesterIdentity") == 0);
	CHECK(owned_case(good_token(), "val-aa", AUTHZ_DENY,
	                 "client_id does not match requesterIdentity") == 0);
	CHECK(owned_case(good_token(), NULL, AUTHZ_DENY,
	                 "client_id does not match requesterIdentity") == 0);
	return 0;
}

static int test_no_client_id(void)
{
	return owned_case(token(HEAD "\"scope\":\"ss-kpp\",\"SKeyProv\":true,\"vsp_id\":\"v\"}"),
	                  "val-a", AUTHZ_DENY, "token has no client_id");
}

static int test_no_skeyprov(void)
{
	return owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\","
	                             "\"vsp_id\":\"vsp-1\"}"),
	                  "val-a", AUTHZ_DENY, "token has no SKeyProv claim");
}

static int test_skeyprov_false(void)
{
	static const char *const falsy[] = {"false", "0", "\"false\"", "null", "\"\""};
	for (size_t i = 0; i < sizeof falsy / sizeof falsy[0]; i++) {
		CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\","
		                            "\"SKeyProv\":%s,\"vsp_id\":\"vsp-1\"}",
		                       falsy[i]),
		                 "val-a", AUTHZ_DENY, "token SKeyProv is false") == 0);
	}
	return 0;
}

static int test_scope_without_ss_kpp(void)
{
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"openid ss-kppx\","
	                            "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_DENY, "token scope does not include ss-kpp") == 0);
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"xss-kpp ss-kp\","
	                            "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_DENY, "token scope does not include ss-kpp") == 0);
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"SS-KPP\","
	                            "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_DENY, "token scope does not include ss-kpp") == 0);
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"\","
	                            "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_DENY, "token scope does not include ss-kpp") == 0);
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\","
	                            "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_DENY, "token has no scope") == 0);
	return 0;
}

static int test_scope_forms_accepted(void)
{
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\","
	                            "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_ALLOW, "vsp-1") == 0);
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"  a  ss-kpp  b \","
	                            "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_ALLOW, "vsp-1") == 0);
	return 0;
}

static int test_custom_and_default_scope(void)
{
	jwt_verifier *v = make_verifier();
	authz_policy custom = {v, "kpp.write", 0, NULL, NULL, 0};
	authz_policy dflt = {v, NULL, 0, NULL, NULL, 0};
	authz_policy bad = {v, "a b", 0, NULL, NULL, 0};
	char *t = token(HEAD "\"client_id\":\"val-a\",\"scope\":\"kpp.write\","
	                     "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}");
	int ok;

	CHECK(v != NULL && t != NULL);
	ok = expect(&custom, t, "val-a", AUTHZ_ALLOW, "vsp-1") &&
	     expect(&dflt, t, "val-a", AUTHZ_DENY, "does not include ss-kpp") &&
	     expect(&bad, t, "val-a", AUTHZ_DENY, "not a single word");
	free(t);
	jwt_verifier_destroy(v);
	CHECK(ok);
	return 0;
}

static int test_no_vsp_id(void)
{
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\","
	                            "\"SKeyProv\":true}"),
	                 "val-a", AUTHZ_DENY, "token has no vsp_id") == 0);
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\","
	                            "\"SKeyProv\":true,\"vsp_id\":\"\"}"),
	                 "val-a", AUTHZ_DENY, "token has no vsp_id") == 0);
	return 0;
}

static int test_wrong_type_claim(void)
{
	CHECK(owned_case(token(HEAD "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\","
	                            "\"SKeyProv\":true,\"vsp_id\":17}"),
	                 "val-a", AUTHZ_DENY, "vsp_id is not a string") == 0);
	CHECK(owned_case(token(HEAD "\"client_id\":[\"val-a\"],\"scope\":\"ss-kpp\","
	                            "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_DENY, "client_id is not a string") == 0);
	return 0;
}

static int test_vsp_id_too_long_fails_closed(void)
{
	jwt_verifier *v = make_verifier();
	authz_policy p = {v, "ss-kpp", 0, NULL, NULL, 0};
	char *t = good_token();
	char small[5], detail[128];
	authz_decision d;

	CHECK(v != NULL && t != NULL);
	/* "vsp-1" needs 6 bytes with its NUL. */
	d = authz_check(&p, t, "val-a", NOW, small, sizeof small, detail, sizeof detail);
	CHECK_INT(d, AUTHZ_DENY);
	CHECK(strstr(detail, "vsp_id is too long") != NULL);
	CHECK_STR(small, "");
	d = authz_check(&p, t, "val-a", NOW, NULL, 0, detail, sizeof detail);
	CHECK_INT(d, AUTHZ_DENY);
	/* No detail buffer is allowed too; the decision still comes back. */
	d = authz_check(&p, t, "val-a", NOW, small, sizeof small, NULL, 0);
	CHECK_INT(d, AUTHZ_DENY);
	free(t);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_invalid_token_is_denied(void)
{
	CHECK(owned_case(token("{\"iss\":\"" ISS "\",\"exp\":1699999969,\"client_id\":\"val-a\","
	                       "\"scope\":\"ss-kpp\",\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_DENY, "token has expired") == 0);
	/* Within the policy's 30 s leeway. */
	CHECK(owned_case(token("{\"iss\":\"" ISS "\",\"exp\":1699999970,\"client_id\":\"val-a\","
	                       "\"scope\":\"ss-kpp\",\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}"),
	                 "val-a", AUTHZ_ALLOW, "vsp-1") == 0);
	CHECK(run_case("eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUifQ.c2lnbmF0dXJl",
	               "val-a", AUTHZ_DENY, "algorithm none is not allowed") == 0);
	CHECK(run_case("", "val-a", AUTHZ_DENY, "request has no access token") == 0);
	CHECK(run_case("not-a-token", "val-a", AUTHZ_DENY, "three dot-separated parts") == 0);
	return 0;
}

static int test_no_policy(void)
{
	char *t = good_token();
	authz_policy none = {NULL, "ss-kpp", 0, NULL, NULL, 0};
	int ok;

	CHECK(t != NULL);
	ok = expect(NULL, t, "val-a", AUTHZ_DENY, "not configured") &&
	     expect(&none, t, "val-a", AUTHZ_DENY, "not configured");
	free(t);
	CHECK(ok);
	return 0;
}

/* ---- with the token cache ---- */

static authz_decision check_at(const authz_policy *p, const char *tok, const char *requester,
                               int64_t now, char *detail, size_t detail_size)
{
	char vsp[64];
	return authz_check(p, tok, requester, now, vsp, sizeof vsp, detail, detail_size);
}

static tokcache_stats stats_of(const tokcache *c)
{
	tokcache_stats st;
	tokcache_stats_get(c, &st);
	return st;
}

static int test_cache_hit_after_first_verify(void)
{
	jwt_verifier *v = make_verifier();
	tokcache *cache = tokcache_new(16, NULL, 0);
	authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
	char *t = good_token();
	char detail[256];

	CHECK(v != NULL && cache != NULL && t != NULL);
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	CHECK_INT(stats_of(cache).misses, 1);
	CHECK_INT(stats_of(cache).entries, 1);
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	CHECK_INT(check_at(&p, t, "val-a", NOW + 1, detail, sizeof detail), AUTHZ_ALLOW);
	CHECK_INT(stats_of(cache).hits, 2);
	CHECK_INT(stats_of(cache).misses, 1);
	free(t);
	tokcache_destroy(cache);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_cache_expiry_still_checked_on_hit(void)
{
	jwt_verifier *v = make_verifier();
	tokcache *cache = tokcache_new(16, NULL, 0);
	authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
	char *t = good_token(); /* exp NOW + 300 */
	char detail[256];

	CHECK(v != NULL && cache != NULL && t != NULL);
	CHECK_INT(check_at(&p, t, "val-a", NOW, detail, sizeof detail), AUTHZ_ALLOW);
	/* The last second of the leeway is a hit and allowed... */
	CHECK_INT(check_at(&p, t, "val-a", NOW + 330, detail, sizeof detail), AUTHZ_ALLOW);
	CHECK_INT(stats_of(cache).hits, 1);
	/* ...the next is refused, and the entry is gone. */
	CHECK_INT(check_at(&p, t, "val-a", NOW + 331, detail, sizeof detail), AUTHZ_DENY);
	CHECK(strstr(detail, "token has expired") != NULL);
	CHECK_INT(stats_of(cache).expired, 1);
	CHECK_INT(stats_of(cache).entries, 0);
	/* A policy with less leeway refuses sooner, on a hit too. */
	p.leeway_s = 0;
	CHECK_INT(check_at(&p, t, "val-a", NOW, detail, sizeof detail), AUTHZ_ALLOW);
	CHECK_INT(check_at(&p, t, "val-a", NOW + 301, detail, sizeof detail), AUTHZ_DENY);
	CHECK(strstr(detail, "token has expired") != NULL);
	free(t);
	tokcache_destroy(cache);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_cache_stale_entry_still_refused(void)
{
	jwt_verifier *v = make_verifier();
	tokcache *cache = tokcache_new(16, NULL, 0);
	authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
	char *t = good_token();
	char detail[256];
	jwt_claims c;

	CHECK(v != NULL && cache != NULL && t != NULL);
	CHECK(jwt_verify_signature(v, t, &c, detail, sizeof detail) == 0);
	/* An entry kept far past its exp (as a cache bug would): the time
	 * checks at use still refuse the token, whatever the cache says. */
	CHECK(tokcache_insert(cache, t, &c, INT64_MAX) == 0);
	jwt_claims_free(&c);
	CHECK_INT(check_at(&p, t, "val-a", NOW + 331, detail, sizeof detail), AUTHZ_DENY);
	CHECK(strstr(detail, "token has expired") != NULL);
	CHECK_INT(stats_of(cache).hits, 1);
	free(t);
	tokcache_destroy(cache);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_cache_nbf_and_iat_checked_on_hit(void)
{
	jwt_verifier *v = make_verifier();
	tokcache *cache = tokcache_new(16, NULL, 0);
	authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
	char *t = token("{\"iss\":\"" ISS "\",\"exp\":1700000600,\"nbf\":1700000100,"
	                "\"iat\":1700000100,\"client_id\":\"val-a\",\"scope\":\"ss-kpp\","
	                "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}");
	char detail[256];

	CHECK(v != NULL && cache != NULL && t != NULL);
	/* Not valid yet: refused, but its signature is good, so it is kept. */
	CHECK_INT(check_at(&p, t, "val-a", NOW, detail, sizeof detail), AUTHZ_DENY);
	CHECK(strstr(detail, "not valid yet") != NULL);
	CHECK_INT(stats_of(cache).entries, 1);
	/* A hit is refused the same way, until nbf (with the leeway). */
	CHECK_INT(check_at(&p, t, "val-a", NOW, detail, sizeof detail), AUTHZ_DENY);
	CHECK(strstr(detail, "not valid yet") != NULL);
	CHECK_INT(check_at(&p, t, "val-a", NOW + 69, detail, sizeof detail), AUTHZ_DENY);
	CHECK_INT(check_at(&p, t, "val-a", NOW + 70, detail, sizeof detail), AUTHZ_ALLOW);
	CHECK_INT(stats_of(cache).hits, 3);
	/* A clock stepped back after the token was cached: nbf comes first. */
	CHECK_INT(check_at(&p, t, "val-a", NOW - 1000, detail, sizeof detail), AUTHZ_DENY);
	CHECK(strstr(detail, "not valid yet") != NULL);
	free(t);
	/* iat in the future, on a hit */
	t = token("{\"iss\":\"" ISS "\",\"exp\":1700000600,\"iat\":1700000100,"
	          "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\",\"SKeyProv\":true,"
	          "\"vsp_id\":\"vsp-1\"}");
	CHECK(t != NULL);
	CHECK_INT(check_at(&p, t, "val-a", NOW + 70, detail, sizeof detail), AUTHZ_ALLOW);
	CHECK_INT(check_at(&p, t, "val-a", NOW, detail, sizeof detail), AUTHZ_DENY);
	CHECK(strstr(detail, "issued in the future") != NULL);
	free(t);
	tokcache_destroy(cache);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_cache_request_rules_on_hit(void)
{
	jwt_verifier *v = make_verifier();
	tokcache *cache = tokcache_new(16, NULL, 0);
	authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
	authz_policy other_scope = {v, "kpp.write", 30, cache, NULL, 0};
	char *t = good_token();
	char *no_skp = token(HEAD "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\","
	                          "\"SKeyProv\":false,\"vsp_id\":\"vsp-1\"}");

	CHECK(v != NULL && cache != NULL && t != NULL && no_skp != NULL);
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	/* val-a's token, cached, used by val-b */
	CHECK(expect(&p, t, "val-b", AUTHZ_DENY, "client_id does not match requesterIdentity"));
	CHECK(expect(&p, t, NULL, AUTHZ_DENY, "client_id does not match requesterIdentity"));
	CHECK(expect(&other_scope, t, "val-a", AUTHZ_DENY, "does not include kpp.write"));
	CHECK(expect(&p, no_skp, "val-a", AUTHZ_DENY, "SKeyProv is false"));
	CHECK(expect(&p, no_skp, "val-a", AUTHZ_DENY, "SKeyProv is false"));
	CHECK_INT(stats_of(cache).hits, 4);
	CHECK_INT(stats_of(cache).misses, 2);
	/* and the owner is still served */
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	free(t);
	free(no_skp);
	tokcache_destroy(cache);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_cache_never_serves_failed_tokens(void)
{
	jwt_verifier *v = make_verifier();
	tokcache *cache = tokcache_new(16, NULL, 0);
	authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
	char *t = good_token();
	char *b = token(HEAD "\"client_id\":\"val-b\",\"scope\":\"ss-kpp\","
	                     "\"SKeyProv\":true,\"vsp_id\":\"vsp-2\"}");
	char *expired = token("{\"iss\":\"" ISS "\",\"exp\":1699999000,\"client_id\":\"val-a\","
	                      "\"scope\":\"ss-kpp\",\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}");
	char tampered[2048], spliced[2048];
	const char *sig_a, *sig_b;
	size_t n;

	CHECK(v != NULL && cache != NULL && t != NULL && b != NULL && expired != NULL);
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	/* The cached token with one signature character changed. */
	n = strlen(t);
	CHECK(n < sizeof tampered);
	memcpy(tampered, t, n + 1);
	tampered[n - 10] = tampered[n - 10] == 'A' ? 'B' : 'A';
	/* val-b's header and payload under val-a's (cached) signature. */
	sig_a = strrchr(t, '.');
	sig_b = strrchr(b, '.');
	CHECK(sig_a != NULL && sig_b != NULL);
	CHECK((size_t)(sig_b - b) + strlen(sig_a) < sizeof spliced);
	memcpy(spliced, b, (size_t)(sig_b - b));
	memcpy(spliced + (sig_b - b), sig_a, strlen(sig_a) + 1);
	for (int round = 0; round < 2; round++) {
		CHECK(expect(&p, tampered, "val-a", AUTHZ_DENY, "signature does not verify"));
		CHECK(expect(&p, spliced, "val-b", AUTHZ_DENY, "signature does not verify"));
		CHECK(expect(&p, expired, "val-a", AUTHZ_DENY, "token has expired"));
		CHECK(expect(&p, "a.b", "val-a", AUTHZ_DENY, "three dot-separated parts"));
	}
	/* Only the good token was ever kept, and it is still served. */
	CHECK_INT(stats_of(cache).entries, 1);
	CHECK_INT(stats_of(cache).inserts, 1);
	CHECK_INT(stats_of(cache).hits, 0);
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	CHECK_INT(stats_of(cache).hits, 1);
	free(t);
	free(b);
	free(expired);
	tokcache_destroy(cache);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_cache_two_tokens_two_entries(void)
{
	jwt_verifier *v = make_verifier();
	tokcache *cache = tokcache_new(16, NULL, 0);
	authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
	char *a = good_token();
	char *b = token(HEAD "\"client_id\":\"val-b\",\"scope\":\"ss-kpp\","
	                     "\"SKeyProv\":true,\"vsp_id\":\"vsp-2\"}");

	CHECK(v != NULL && cache != NULL && a != NULL && b != NULL);
	for (int round = 0; round < 2; round++) {
		CHECK(expect(&p, a, "val-a", AUTHZ_ALLOW, "vsp-1"));
		CHECK(expect(&p, b, "val-b", AUTHZ_ALLOW, "vsp-2"));
		CHECK(expect(&p, a, "val-b", AUTHZ_DENY, "client_id does not match"));
		CHECK(expect(&p, b, "val-a", AUTHZ_DENY, "client_id does not match"));
	}
	CHECK_INT(stats_of(cache).entries, 2);
	CHECK_INT(stats_of(cache).misses, 2);
	CHECK_INT(stats_of(cache).hits, 6);
	free(a);
	free(b);
	tokcache_destroy(cache);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_cache_capacity_zero_verifies_every_time(void)
{
	jwt_verifier *v = make_verifier();
	tokcache *cache = tokcache_new(0, NULL, 0);
	authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
	char *t = good_token();

	CHECK(v != NULL && cache != NULL && t != NULL);
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	CHECK(expect(&p, t, "val-b", AUTHZ_DENY, "client_id does not match"));
	CHECK_INT(stats_of(cache).hits, 0);
	CHECK_INT(stats_of(cache).misses, 3);
	CHECK_INT(stats_of(cache).entries, 0);
	free(t);
	tokcache_destroy(cache);
	jwt_verifier_destroy(v);
	return 0;
}

/* The issuers' bindings: a token's vsp_id must be one its issuer may name;
 * without bindings (NULL) it is not checked. The tenant check comes after
 * every rule of the token itself. */
static int test_issuer_bound_to_providers(void)
{
	jwt_verifier *v = make_verifier();
	static const char *const only_other[] = {"vsp-2", "vsp-3"};
	static const char *const with_ours[] = {"vsp-3", "vsp-1"};
	authz_issuer other = {ISS, 0, only_other, 2}, ours = {ISS, 0, with_ours, 2};
	authz_issuer any = {ISS, 1, NULL, 0}, elsewhere = {"https://other.example", 1, NULL, 0};
	authz_issuer prefix = {ISS, 0, (const char *const[]){"vsp-"}, 1};
	authz_policy p = {v, "ss-kpp", 30, NULL, &other, 1};
	char *t = good_token(), *no_vsp;
	const char *bound = "token issuer is not bound to the VAL service provider";

	CHECK(v != NULL && t != NULL);
	CHECK(expect(&p, t, "val-a", AUTHZ_DENY, bound));
	p.issuers = &ours;
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	p.issuers = &any;
	CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	/* an issuer the bindings do not list may name no provider */
	p.issuers = &elsewhere;
	CHECK(expect(&p, t, "val-a", AUTHZ_DENY, bound));
	/* whole names only */
	p.issuers = &prefix;
	CHECK(expect(&p, t, "val-a", AUTHZ_DENY, bound));
	/* the token's own faults are told first */
	p.issuers = &other;
	CHECK(expect(&p, t, "val-b", AUTHZ_DENY, "client_id does not match"));
	no_vsp = token(HEAD "\"client_id\":\"val-a\",\"scope\":\"ss-kpp\",\"SKeyProv\":true}");
	CHECK(no_vsp != NULL);
	CHECK(expect(&p, no_vsp, "val-a", AUTHZ_DENY, "token has no vsp_id"));
	/* several issuers: each token is held to its own */
	{
		authz_issuer two[2] = {{"https://other.example", 1, NULL, 0},
		                       {ISS, 0, only_other, 2}};
		p.issuers = two;
		p.n_issuers = 2;
		CHECK(expect(&p, t, "val-a", AUTHZ_DENY, bound));
		two[1].vsp_ids = with_ours;
		CHECK(expect(&p, t, "val-a", AUTHZ_ALLOW, "vsp-1"));
	}
	free(no_vsp);
	free(t);
	jwt_verifier_destroy(v);
	return 0;
}

static const check_case cases[] = {
    {"issuer_bound_to_providers", test_issuer_bound_to_providers},
    {"allow", test_allow},
    {"token_of_a_used_by_b", test_token_of_a_used_by_b},
    {"requester_prefix_is_not_a_match", test_requester_prefix_is_not_a_match},
    {"no_client_id", test_no_client_id},
    {"no_skeyprov", test_no_skeyprov},
    {"skeyprov_false", test_skeyprov_false},
    {"scope_without_ss_kpp", test_scope_without_ss_kpp},
    {"scope_forms_accepted", test_scope_forms_accepted},
    {"custom_and_default_scope", test_custom_and_default_scope},
    {"no_vsp_id", test_no_vsp_id},
    {"wrong_type_claim", test_wrong_type_claim},
    {"vsp_id_too_long_fails_closed", test_vsp_id_too_long_fails_closed},
    {"invalid_token_is_denied", test_invalid_token_is_denied},
    {"no_policy", test_no_policy},
    {"cache_hit_after_first_verify", test_cache_hit_after_first_verify},
    {"cache_expiry_still_checked_on_hit", test_cache_expiry_still_checked_on_hit},
    {"cache_stale_entry_still_refused", test_cache_stale_entry_still_refused},
    {"cache_nbf_and_iat_checked_on_hit", test_cache_nbf_and_iat_checked_on_hit},
    {"cache_request_rules_on_hit", test_cache_request_rules_on_hit},
    {"cache_never_serves_failed_tokens", test_cache_never_serves_failed_tokens},
    {"cache_two_tokens_two_entries", test_cache_two_tokens_two_entries},
    {"cache_capacity_zero_verifies_every_time", test_cache_capacity_zero_verifies_every_time},
};

int main(void)
{
	int rc;

	if (key_setup() != 0) {
		fprintf(stderr, "cannot generate the test key\n");
		return 1;
	}
	rc = check_run("authz", cases, sizeof cases / sizeof cases[0]);
	testkeys_pair_free(&key);
	return rc;
}
