/*
 * test_oom: running out of memory while deciding a request is an error to
 * retry, never a verdict on the request. A failed allocation must come back
 * as CODEC_ERR_NOMEM, JWT_ERR_NOMEM, AUTHZ_ERROR or -1 from the content
 * hash, never as a DLQ-bound decode status, a refused token or a hash that
 * is not the content's.
 *
 * The binary is linked with --wrap for malloc, calloc, realloc, strdup and
 * strndup (see the Makefile), so each allocation the project's own code
 * makes goes through the wrappers below; avro-c's, jansson's and OpenSSL's
 * allocators are swapped for counting ones too. A case fails the 1st, then
 * the 2nd, ... allocation of one call, until the call needs no more than
 * that, and checks what came back each time; under valgrind it also checks
 * that no failure path leaks.
 *
 * Over 800 lines on purpose: the wrappers are linked per binary (the
 * Makefile's --wrap for test_oom), and every case drives the one counter of
 * failing allocations; decoding, the content hash, token verification and
 * the batch decision are its sections.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "authz.h"
#include "check.h"
#include "codec.h"
#include "decide.h"
#include "jwt.h"
#include "testkeys.h"
#include "tokcache.h"
#include "validate.h"

#define NOW INT64_C(1700000000)
#define ISS "https://as.example"
/* Far more allocations than any call here makes: a loop that reaches it
 * has lost its way. */
#define MAX_POINTS 10000

/* ---- failing allocations on demand ---- */

/* Who allocates: the project's code (through --wrap), or a library. */
typedef enum { SRC_OURS = 0, SRC_AVRO, SRC_JSON, SRC_OSSL, SRC__COUNT } alloc_src;

static long countdown[SRC__COUNT]; /* > 0: fail that allocation from now on */
static int injected;               /* whether the armed failure happened */

static int fail_now(alloc_src src)
{
	if (countdown[src] <= 0 || --countdown[src] > 0)
		return 0;
	injected = 1;
	return 1;
}

/* Fail the n-th allocation of src from now (n >= 1). */
static void arm(alloc_src src, long n)
{
	memset(countdown, 0, sizeof countdown);
	countdown[src] = n;
	injected = 0;
}

static void disarm(void)
{
	memset(countdown, 0, sizeof countdown);
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n)
{
	return fail_now(SRC_OURS) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now(SRC_OURS) ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return fail_now(SRC_OURS) ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return fail_now(SRC_OURS) ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	return fail_now(SRC_OURS) ? NULL : __real_strndup(s, n);
}

static void *avro_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	(void)osize;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	return fail_now(SRC_AVRO) ? NULL : __real_realloc(ptr, nsize);
}

static void *json_alloc(size_t n)
{
	return fail_now(SRC_JSON) ? NULL : __real_malloc(n);
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return fail_now(SRC_OSSL) ? NULL : __real_malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return fail_now(SRC_OSSL) ? NULL : __real_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	free(p);
}

/* ---- what the cases work on ---- */

static codec *cod;
static unsigned char *request_value, *response_value;
static size_t request_len, response_len;
static char *priv_pem, *pub_pem;

static codec_kv kv0[2] = {{"alg", "ES256"}, {"kty", "EC"}};
static codec_kv kv1[1] = {{"enc", "A256GCM"}};
static codec_val_service services[2] = {
    {"v2x.platooning", CODEC_KF_JWK, "1", kv0, 2},
    {"v2x.see-through", CODEC_KF_RAW, NULL, kv1, 1},
};
static codec_request request = {
    "0f8fad5b-d9cb-469f-a165-70867728950e",
    "val-truck-001",
    "https://truck-001.example/kms",
    "a.b.c",
    services,
    2,
    1700000000000,
    "0a",
};

static int fixtures_setup(void)
{
	char err[256];
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	codec_response resp = {request.request_id,   request.requester_identity,
	                       CODEC_RESULT_FAILURE, CODEC_CAUSE_UNAUTHORIZED,
	                       "token has expired",  "kms-1",
	                       1700000000123};
	int rc = -1;

	cod = codec_new(NULL, err, sizeof err);
	if (cod == NULL || pkey == NULL)
		goto done;
	if (codec_encode_request(cod, &request, &request_value, &request_len, err, sizeof err) !=
	        0 ||
	    codec_encode_response(cod, &resp, &response_value, &response_len, err, sizeof err) != 0)
		goto done;
	priv_pem = testkeys_pem(pkey, 1);
	pub_pem = testkeys_pem(pkey, 0);
	rc = priv_pem != NULL && pub_pem != NULL ? 0 : -1;
done:
	if (rc != 0)
		fprintf(stderr, "fixtures: %s\n", err);
	EVP_PKEY_free(pkey);
	return rc;
}

static void fixtures_free(void)
{
	codec_destroy(cod);
	free(request_value);
	free(response_value);
	free(priv_pem);
	free(pub_pem);
}

static jwt_verifier *make_verifier(void)
{
	char err[256];
	jwt_verifier *v = jwt_verifier_new(1u << JWT_ALG_ES256, 0, err, sizeof err);
	if (v != NULL && jwt_verifier_add_key(v, ISS, NULL, pub_pem, err, sizeof err) != 0) {
		jwt_verifier_destroy(v);
		v = NULL;
	}
	return v;
}

static char *good_token(void)
{
	char err[256];
	return jwt_sign(priv_pem, JWT_ALG_ES256, NULL,
	                "{\"iss\":\"" ISS "\",\"exp\":1700000300,\"iat\":1699999990,"
	                "\"client_id\":\"val-truck-001\",\"scope\":\"openid ss-kpp\","
	                "\"SKeyProv\":true,\"vsp_id\":\"vsp-1\"}",
	                err, sizeof err);
}

/* Report the allocation a case failed at, since CHECK only names the line. */
#define AT(n, cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "    with allocation %ld failed:\n", (long)(n));           \
			CHECK(cond);                                                               \
		}                                                                                  \
	} while (0)

/* ---- decoding ---- */

static int test_decode_request_every_allocation(void)
{
	long n;

	for (n = 1; n < MAX_POINTS; n++) {
		codec_request *r = NULL;
		codec_salvage sv;
		char err[256] = "";
		codec_status st;

		arm(SRC_OURS, n);
		st =
		    codec_decode_request(cod, request_value, request_len, &r, &sv, err, sizeof err);
		disarm();
		if (!injected) {
			CHECK_INT(st, CODEC_OK);
			CHECK_STR(r->services[1].content[0].value, "A256GCM");
			codec_request_free(r);
			codec_salvage_free(&sv);
			break;
		}
		AT(n, st == CODEC_ERR_NOMEM);
		AT(n, r == NULL && sv.request_id == NULL && sv.requester_identity == NULL);
		AT(n, strstr(err, "out of memory") != NULL);
		codec_salvage_free(&sv);
	}
	/* the walker's map keys, the request, its strings and arrays */
	CHECK(n > 10 && n < MAX_POINTS);
	return 0;
}

static int test_decode_salvage_every_allocation(void)
{
	/* One byte too many: refused as a datum error, its first two fields
	 * salvaged so that the sender still gets a Result. */
	unsigned char *bad = malloc(request_len + 1);
	long n;

	CHECK(bad != NULL);
	memcpy(bad, request_value, request_len);
	bad[request_len] = 0;
	for (n = 1; n < MAX_POINTS; n++) {
		codec_request *r = NULL;
		codec_salvage sv;
		char err[256] = "";
		codec_status st;

		arm(SRC_OURS, n);
		st = codec_decode_request(cod, bad, request_len + 1, &r, &sv, err, sizeof err);
		disarm();
		if (!injected) {
			CHECK_INT(st, CODEC_ERR_DATUM);
			CHECK_STR(sv.request_id, request.request_id);
			CHECK_STR(sv.requester_identity, request.requester_identity);
			codec_salvage_free(&sv);
			break;
		}
		/* Never a datum error with a part of the salvage missing:
		 * that would change whether a Result is sent. */
		AT(n, st == CODEC_ERR_NOMEM);
		AT(n, r == NULL && sv.request_id == NULL && sv.requester_identity == NULL);
		codec_salvage_free(&sv);
	}
	CHECK(n == 5); /* the walker's key lists of the two maps, the two salvaged strings */
	free(bad);
	return 0;
}

static int test_decode_avro_out_of_memory(void)
{
	codec_request *r = NULL;
	codec_salvage sv;
	char err[256] = "";
	codec_status st;

	/* avro-c's first allocation is the value it reads the datum into.
	 * (Later ones are not tried: avro-c 1.11 does not check some of
	 * them, in its hash tables, and would crash.) */
	arm(SRC_AVRO, 1);
	st = codec_decode_request(cod, request_value, request_len, &r, &sv, err, sizeof err);
	disarm();
	CHECK(injected);
	CHECK_INT(st, CODEC_ERR_NOMEM);
	CHECK(r == NULL && sv.request_id == NULL);
	CHECK(strstr(err, "out of memory") != NULL);
	codec_salvage_free(&sv);
	return 0;
}

static int test_decode_response_every_allocation(void)
{
	long n;

	for (n = 1; n < MAX_POINTS; n++) {
		codec_response_owned *r = NULL;
		char err[256] = "";
		codec_status st;

		arm(SRC_OURS, n);
		st = codec_decode_response(cod, response_value, response_len, &r, err, sizeof err);
		disarm();
		if (!injected) {
			CHECK_INT(st, CODEC_OK);
			CHECK_STR(r->detail, "token has expired");
			codec_response_owned_free(r);
			break;
		}
		AT(n, st == CODEC_ERR_NOMEM && r == NULL);
	}
	CHECK(n > 4 && n < MAX_POINTS);
	arm(SRC_AVRO, 1);
	{
		codec_response_owned *r = NULL;
		char err[256] = "";
		codec_status st =
		    codec_decode_response(cod, response_value, response_len, &r, err, sizeof err);
		disarm();
		CHECK_INT(st, CODEC_ERR_NOMEM);
	}
	return 0;
}

/* The request schema with one more field a newer writer has: its data are
 * read through resolve.h. */
static char *newer_schema(void)
{
	const char *cur = codec_request_schema_json(cod);
	const char *end = strrchr(cur, ']');
	const char *extra = ",{\"name\":\"vehicleClass\",\"type\":[\"null\",\"string\"],"
	                    "\"default\":null}";
	size_t head = (size_t)(end - cur), n = strlen(cur) + strlen(extra) + 1;
	char *s = __real_malloc(n);
	if (s != NULL)
		snprintf(s, n, "%.*s%s%s", (int)head, cur, extra, end);
	return s;
}

/* A writer from the registry: out of memory is CODEC_ERR_NOMEM, never a
 * writer that refuses every value (which would be kept for good). */
static int test_writer_every_allocation(void)
{
	char *json = newer_schema();
	long n;
	CHECK(json != NULL);
	for (alloc_src src = SRC_OURS; src <= SRC_JSON; src = src == SRC_OURS ? SRC_JSON : 99) {
		for (n = 1; n < MAX_POINTS; n++) {
			codec_writer *w = NULL;
			char err[256] = "";
			arm(src, n);
			codec_status st =
			    codec_writer_new(cod, json, strlen(json), &w, err, sizeof err);
			disarm();
			if (!injected) {
				CHECK_INT(st, CODEC_OK);
				CHECK_INT(codec_writer_status(w), CODEC_OK);
				codec_writer_destroy(w);
				break;
			}
			AT(n, st == CODEC_ERR_NOMEM && w == NULL);
		}
		CHECK(n > 3 && n < MAX_POINTS);
	}
	free(json);
	return 0;
}

/* A Confluent-framed value of a newer writer, resolved: out of memory
 * anywhere is CODEC_ERR_NOMEM, with nothing salvaged. */
static int test_decode_confluent_every_allocation(void)
{
	char *json = newer_schema(), err[256];
	codec_writer *w = NULL;
	long n;

	CHECK(json != NULL);
	CHECK(codec_writer_new(cod, json, strlen(json), &w, err, sizeof err) == CODEC_OK);
	free(json);
	/* the current datum, then the newer field's null branch */
	size_t len = 5 + (request_len - 10) + 1;
	unsigned char *v = __real_malloc(len);
	CHECK(v != NULL);
	memcpy(v, "\0\0\0\0\7", 5);
	memcpy(v + 5, request_value + 10, request_len - 10);
	v[len - 1] = 0;
	for (n = 1; n < MAX_POINTS; n++) {
		codec_request *r = NULL;
		codec_salvage sv;
		arm(SRC_OURS, n);
		codec_status st =
		    codec_decode_request_confluent(cod, w, v, len, &r, &sv, err, sizeof err);
		disarm();
		if (!injected) {
			CHECK_INT(st, CODEC_OK);
			CHECK_STR(r->services[1].content[0].value, "A256GCM");
			codec_request_free(r);
			codec_salvage_free(&sv);
			break;
		}
		AT(n, st == CODEC_ERR_NOMEM);
		AT(n, r == NULL && sv.request_id == NULL && sv.requester_identity == NULL);
		codec_salvage_free(&sv);
	}
	CHECK(n > 10 && n < MAX_POINTS);
	free(v);
	codec_writer_destroy(w);
	return 0;
}

static int test_status_name(void)
{
	CHECK_STR(codec_status_name(CODEC_ERR_NOMEM), "out_of_memory");
	return 0;
}

/* ---- the content hash ---- */

static int hash_every_allocation(alloc_src src, long *points)
{
	unsigned char want[32], got[32], zero[32] = {0};
	long n;

	CHECK(validate_content_hash(&request, want) == 0);
	for (n = 1; n < MAX_POINTS; n++) {
		int rc;

		memset(got, 0x5a, sizeof got);
		arm(src, n);
		rc = validate_content_hash(&request, got);
		disarm();
		/* Either the very hash, or a failure said so with zeros:
		 * never a constant or a hash of something else. */
		if (rc == 0)
			AT(n, memcmp(got, want, 32) == 0);
		else
			AT(n, rc == -1 && memcmp(got, zero, 32) == 0);
		if (!injected)
			break;
		if (src == SRC_OURS)
			AT(n, rc == -1);
	}
	CHECK(n < MAX_POINTS);
	*points = n - 1;
	return 0;
}

static int test_content_hash_every_allocation(void)
{
	long ours = 0, ossl = 0;
	unsigned char out[32];

	CHECK(hash_every_allocation(SRC_OURS, &ours) == 0);
	CHECK_INT(ours, 2); /* the sorted copy of each content map */
	CHECK(hash_every_allocation(SRC_OSSL, &ossl) == 0);
	CHECK(ossl >= 1);
	/* OpenSSL's first allocation is the digest context. */
	arm(SRC_OSSL, 1);
	CHECK_INT(validate_content_hash(&request, out), -1);
	disarm();
	return 0;
}

/* ---- token verification ---- */

static int test_jwt_verify_every_allocation(void)
{
	jwt_verifier *v = make_verifier();
	char *t = good_token();
	long n;

	CHECK(v != NULL && t != NULL);
	for (int split = 0; split < 2; split++) {
		for (n = 1; n < MAX_POINTS; n++) {
			jwt_claims c;
			char err[256] = "";
			int rc;

			arm(SRC_OURS, n);
			rc = split ? jwt_verify_signature(v, t, &c, err, sizeof err)
			           : jwt_verify(v, t, NOW, 30, &c, err, sizeof err);
			disarm();
			if (!injected) {
				CHECK_INT(rc, 0);
				CHECK_STR(c.client_id, "val-truck-001");
				jwt_claims_free(&c);
				break;
			}
			/* Never a refusal of a good token. */
			AT(n, rc == JWT_ERR_NOMEM);
			AT(n, c.iss == NULL && c.client_id == NULL && !c.has_exp);
			AT(n, strstr(err, "out of memory") != NULL);
		}
		/* three base64url parts and four claim strings */
		CHECK_INT(n, 8);
	}
	free(t);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_jwt_library_out_of_memory(void)
{
	jwt_verifier *v = make_verifier();
	char *t = good_token();
	char err[256] = "";
	jwt_claims c;

	CHECK(v != NULL && t != NULL);
	/* jansson's first allocation, when it reads the header. (Later ones
	 * are not tried: jansson 2.14's lexer ignores a failed growth of its
	 * token buffer, loses a closing quote and writes past the buffer.) */
	arm(SRC_JSON, 1);
	CHECK_INT(jwt_verify(v, t, NOW, 30, &c, err, sizeof err), JWT_ERR_NOMEM);
	disarm();
	CHECK(injected);
	/* OpenSSL's first, for the ECDSA signature object */
	arm(SRC_OSSL, 1);
	CHECK_INT(jwt_verify(v, t, NOW, 30, &c, err, sizeof err), JWT_ERR_NOMEM);
	disarm();
	CHECK(injected);
	CHECK(strstr(err, "out of memory") != NULL);
	/* and the same token verifies once memory is back */
	CHECK_INT(jwt_verify(v, t, NOW, 30, &c, err, sizeof err), 0);
	jwt_claims_free(&c);
	free(t);
	jwt_verifier_destroy(v);
	return 0;
}

/* OpenSSL's allocations inside the signature check: most failures are
 * told apart (a NULL from an allocator, ERR_R_MALLOC_FAILURE in its error
 * queue), but some come back from OpenSSL as a plain failure to verify, or
 * as an initialization error that could as well be lasting; those are
 * refused, on purpose. What must hold is that a failure never makes a good
 * token's claims wrong, and that most failures are retried. */
static int test_jwt_openssl_every_allocation(void)
{
	jwt_verifier *v = make_verifier();
	char *t = good_token();
	long n, nomem = 0, refused = 0;

	CHECK(v != NULL && t != NULL);
	for (n = 1; n < MAX_POINTS; n++) {
		jwt_claims c;
		char err[256] = "";
		int rc;

		arm(SRC_OSSL, n);
		rc = jwt_verify(v, t, NOW, 30, &c, err, sizeof err);
		disarm();
		AT(n, rc == 0 || rc == -1 || rc == JWT_ERR_NOMEM);
		if (rc == 0) {
			AT(n, strcmp(c.client_id, "val-truck-001") == 0);
			jwt_claims_free(&c);
		}
		if (!injected)
			break;
		nomem += rc == JWT_ERR_NOMEM;
		refused += rc == -1;
	}
	CHECK(n < MAX_POINTS);
	CHECK(nomem > refused);
	free(t);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_authz_every_allocation(void)
{
	jwt_verifier *v = make_verifier();
	char *t = good_token();
	long n, errors = 0, allowed_anyway = 0;

	CHECK(v != NULL && t != NULL);
	for (n = 1; n < MAX_POINTS; n++) {
		tokcache *cache = tokcache_new(8, NULL, 0);
		authz_policy p = {v, "ss-kpp", 30, cache, NULL, 0};
		char vsp[64], detail[256];
		authz_decision d;
		tokcache_stats st;

		CHECK(cache != NULL);
		arm(SRC_OURS, n);
		d = authz_check(&p, t, "val-truck-001", NOW, vsp, sizeof vsp, detail,
		                sizeof detail);
		disarm();
		tokcache_stats_get(cache, &st);
		if (!injected) {
			tokcache_destroy(cache);
			CHECK_INT(d, AUTHZ_ALLOW);
			break;
		}
		/* A good token is never refused for want of memory. */
		AT(n, d == AUTHZ_ERROR || d == AUTHZ_ALLOW);
		if (d == AUTHZ_ERROR) {
			errors++;
			AT(n, vsp[0] == '\0' && st.entries == 0);
		} else {
			/* the failure hit the cache: the token was verified,
			 * only not kept, and the next use verifies it again */
			allowed_anyway++;
			AT(n, strcmp(vsp, "vsp-1") == 0 && st.entries == 0);
			d = authz_check(&p, t, "val-truck-001", NOW, vsp, sizeof vsp, detail,
			                sizeof detail);
			AT(n, d == AUTHZ_ALLOW);
			tokcache_stats_get(cache, &st);
			AT(n, st.entries == 1 && st.hits == 0);
		}
		tokcache_destroy(cache);
	}
	CHECK(n < MAX_POINTS);
	CHECK_INT(errors, 7);
	CHECK_INT(allowed_anyway, 5); /* the entry and its four strings */
	free(t);
	jwt_verifier_destroy(v);
	return 0;
}

static int test_tokcache_insert_every_allocation(void)
{
	jwt_claims c;
	long n;

	memset(&c, 0, sizeof c);
	c.iss = (char *)ISS;
	c.client_id = (char *)"val-a";
	c.scope = (char *)"ss-kpp";
	c.vsp_id = (char *)"vsp-1";
	c.has_exp = 1;
	c.exp = NOW + 60;
	for (n = 1; n < MAX_POINTS; n++) {
		tokcache *cache = tokcache_new(1, NULL, 0);
		tokcache_stats st;
		int rc;

		CHECK(cache != NULL);
		CHECK(tokcache_insert(cache, "old", &c, NOW + 60) == 0);
		arm(SRC_OURS, n);
		rc = tokcache_insert(cache, "new", &c, NOW + 60);
		disarm();
		tokcache_stats_get(cache, &st);
		if (!injected) {
			CHECK_INT(rc, 0);
			CHECK(tokcache_lookup(cache, "new", NOW) != NULL);
			tokcache_destroy(cache);
			break;
		}
		/* A failed insert leaves the cache as it was: the old entry
		 * was not evicted for an entry that never came. */
		AT(n, rc == -1 && st.entries == 1 && st.evictions == 0);
		AT(n, tokcache_lookup(cache, "old", NOW) != NULL);
		AT(n, tokcache_lookup(cache, "new", NOW) == NULL);
		tokcache_destroy(cache);
	}
	CHECK_INT(n, 6);
	return 0;
}

/* ---- the batch decision ---- */

#define NOW_MS (NOW * 1000)
/* The canonical text (compact, keys sorted) of the request's two maps. */
#define CONTENT_0 "{\"alg\":\"ES256\",\"kty\":\"EC\"}"
#define CONTENT_1 "{\"enc\":\"A256GCM\"}"

/* What the store would read for the request: provider vsp-1 with an SLA
 * covering both of its services. */
static decide_state *decide_fixture(void)
{
	static const char *const covered[] = {"v2x.platooning", "v2x.see-through"};
	sla_terms t = {.sla_id = 1,
	               .services = covered,
	               .service_count = 2,
	               .key_formats = (1u << CODEC_KF_JWK) | (1u << CODEC_KF_RAW),
	               .max_val_servers = 10,
	               .valid_from_ms = NOW_MS - 1000,
	               .valid_until_ms = NOW_MS + 1000};
	decide_state *st = decide_state_new();
	if (st != NULL && (decide_state_add_provider(st, "vsp-1", 1, 0) != 0 ||
	                   decide_state_add_sla(st, "vsp-1", &t) != 0)) {
		decide_state_destroy(st);
		st = NULL;
	}
	return st;
}

/* The request, as the items of a batch: it[i] at offset offsets[i]. */
static int decide_items(store_item *it, const int64_t *offsets, size_t n)
{
	memset(it, 0, n * sizeof *it);
	for (size_t i = 0; i < n; i++) {
		it[i].topic = "requests";
		it[i].offset = offsets[i];
		it[i].req = &request;
		it[i].pre_cause = CODEC_CAUSE_NONE;
		it[i].vsp_id = "vsp-1";
		if (validate_content_hash(&request, it[i].content_hash) != 0)
			return -1;
	}
	return 0;
}

/* Are the plan's key-format rows these (service, version, content)? Says
 * what they are when not. */
static int key_formats_are(const decide_plan *p, size_t n, const size_t *service,
                           const int64_t *version, const char *const *content)
{
	int same = p->nkey_formats == n;
	for (size_t k = 0; same && k < n; k++)
		same = p->key_formats[k].service == service[k] &&
		       p->key_formats[k].version == version[k] &&
		       strcmp(p->key_formats[k].content, content[k]) == 0;
	if (!same)
		for (size_t k = 0; k < p->nkey_formats; k++)
			fprintf(stderr, "    key format row: service %zu, version %lld, %s\n",
			        p->key_formats[k].service, (long long)p->key_formats[k].version,
			        p->key_formats[k].content);
	return same;
}

/* Fail each allocation of src in turn while a batch is decided: a new VAL
 * server with two services, the same request again (a replay within the
 * batch) and the first message again (redelivered). Either the batch is
 * decided right, or decide_batch says -1 and no item is decided. */
static int decide_batch_every_allocation(alloc_src src, long *points)
{
	static const int64_t offsets[3] = {1, 2, 1};
	static const size_t service[2] = {0, 1};
	static const int64_t version[2] = {1, 1};
	static const char *const content[2] = {CONTENT_0, CONTENT_1};
	store_item it[3];
	long n;

	CHECK_INT(decide_items(it, offsets, 3), 0);
	for (n = 1; n < MAX_POINTS; n++) {
		decide_state *st = decide_fixture();
		decide_plan plan;
		int rc;

		CHECK(st != NULL);
		arm(src, n);
		rc = decide_batch(st, it, 3, "kms-1", NOW_MS, &plan);
		disarm();
		if (rc == 0) {
			AT(n, it[0].outcome == STORE_OUTCOME_DECIDED &&
			          it[0].result == CODEC_RESULT_SUCCESS);
			AT(n, it[1].outcome == STORE_OUTCOME_REPLAYED);
			AT(n, it[2].outcome == STORE_OUTCOME_REDELIVERED);
			int rows_right = key_formats_are(&plan, 2, service, version, content);
			AT(n, rows_right);
			AT(n, plan.nproviders == 1 && plan.providers[0].added == 1);
		}
		if (!injected) {
			CHECK_INT(rc, 0);
			decide_plan_free(&plan);
			decide_state_destroy(st);
			break;
		}
		/* nothing half-decided: every item reset, to be decided again */
		AT(n, rc == -1);
		for (int i = 0; i < 3; i++) {
			AT(n, it[i].outcome == STORE_OUTCOME_ERROR && it[i].has_result == 0);
			AT(n, it[i].cause == CODEC_CAUSE_NONE && it[i].processed_at == 0);
			AT(n, it[i].detail[0] == '\0' && it[i].kms_id[0] == '\0');
		}
		decide_plan_free(&plan);
		decide_state_destroy(st);
	}
	CHECK(n < MAX_POINTS);
	*points = n - 1;
	return 0;
}

static int test_decide_batch_every_allocation(void)
{
	long points = 0;

	CHECK(decide_batch_every_allocation(SRC_OURS, &points) == 0);
	/* the plan's arrays (6), then the tables and arenas the items fill */
	CHECK(points > 6);
	return 0;
}

/* jansson's: the maps of the request and their canonical text. (jansson
 * 2.14's json_dumps ignores a failed write of an object key and may return
 * a text without it, as if it had succeeded.) */
static int test_decide_batch_every_json_allocation(void)
{
	long points = 0;

	CHECK(decide_batch_every_allocation(SRC_JSON, &points) == 0);
	CHECK(points >= 4);
	return 0;
}

/* A stored key format loaded while jansson runs out of memory: either the
 * load fails, or it holds the stored content, so that a renewal with the
 * same content makes no new version. Only the allocations after parsing
 * are failed (see test_jwt_library_out_of_memory for the parser's). */
static int test_decide_stored_key_format_every_json_allocation(void)
{
	static const char stored_json[] = "{\"kty\": \"EC\", \"alg\": \"ES256\"}";
	static const int64_t offsets[1] = {1};
	static const size_t service[1] = {1};
	static const int64_t version[1] = {1};
	static const char *const content[1] = {CONTENT_1};
	store_item it[1];
	long parse, n;

	arm(SRC_JSON, MAX_POINTS);
	json_t *probe = json_loads(stored_json, 0, NULL);
	parse = MAX_POINTS - countdown[SRC_JSON];
	disarm();
	CHECK(probe != NULL);
	json_decref(probe);
	CHECK_INT(decide_items(it, offsets, 1), 0);
	for (n = parse + 1; n < MAX_POINTS; n++) {
		decide_state *st = decide_fixture();
		decide_plan plan;
		int rc;

		CHECK(st != NULL);
		CHECK_INT(decide_state_add_val_server(st, request.requester_identity, "vsp-1"), 0);
		/* v2x.platooning at version 4, as the request has it */
		arm(SRC_JSON, n);
		rc = decide_state_add_key_format(st, request.requester_identity, "v2x.platooning",
		                                 4, "JWK", "1", stored_json);
		disarm();
		AT(n, rc == 0 || rc == -1);
		if (rc == 0) {
			CHECK_INT(decide_batch(st, it, 1, "kms-1", NOW_MS, &plan), 0);
			AT(n, it[0].result == CODEC_RESULT_SUCCESS);
			/* only v2x.see-through, new, gets a version */
			int rows_right = key_formats_are(&plan, 1, service, version, content);
			AT(n, rows_right);
			decide_plan_free(&plan);
		}
		decide_state_destroy(st);
		if (!injected) {
			CHECK_INT(rc, 0);
			break;
		}
	}
	CHECK(n > parse + 1 && n < MAX_POINTS);
	return 0;
}

static const check_case cases[] = {
    {"decode_request_every_allocation", test_decode_request_every_allocation},
    {"decode_salvage_every_allocation", test_decode_salvage_every_allocation},
    {"decode_avro_out_of_memory", test_decode_avro_out_of_memory},
    {"decode_response_every_allocation", test_decode_response_every_allocation},
    {"writer_every_allocation", test_writer_every_allocation},
    {"decode_confluent_every_allocation", test_decode_confluent_every_allocation},
    {"status_name", test_status_name},
    {"content_hash_every_allocation", test_content_hash_every_allocation},
    {"jwt_verify_every_allocation", test_jwt_verify_every_allocation},
    {"jwt_library_out_of_memory", test_jwt_library_out_of_memory},
    {"jwt_openssl_every_allocation", test_jwt_openssl_every_allocation},
    {"authz_every_allocation", test_authz_every_allocation},
    {"tokcache_insert_every_allocation", test_tokcache_insert_every_allocation},
    {"decide_batch_every_allocation", test_decide_batch_every_allocation},
    {"decide_batch_every_json_allocation", test_decide_batch_every_json_allocation},
    {"decide_stored_key_format_every_json_allocation",
     test_decide_stored_key_format_every_json_allocation},
};

int main(void)
{
	int rc;

	/* Before OpenSSL allocates anything, or it refuses. */
	if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1) {
		fprintf(stderr, "cannot take over OpenSSL's allocator\n");
		return 1;
	}
	avro_set_allocator(avro_alloc, NULL);
	json_set_alloc_funcs(json_alloc, free);
	if (fixtures_setup() != 0) {
		fprintf(stderr, "cannot set up the fixtures\n");
		fixtures_free();
		return 1;
	}
	rc = check_run("oom", cases, sizeof cases / sizeof cases[0]);
	fixtures_free();
	return rc;
}
