/*
 * Tests of validate: the form rules of a decoded request and its content
 * hash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "validate.h"

static codec_kv content[2] = {{"alg", "A256GCM"}, {"kty", "oct"}};
static codec_val_service services[2];
static codec_request req;

static void reset(void)
{
	memset(services, 0, sizeof services);
	services[0].val_service_id = "v2x.platooning";
	services[0].format_type = CODEC_KF_JWK;
	services[0].content = content;
	services[0].content_count = 2;
	services[1].val_service_id = "v2x.see-through";
	services[1].format_type = CODEC_KF_RAW;
	memset(&req, 0, sizeof req);
	req.request_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
	req.requester_identity = "val-truck-001";
	req.endpoint = "https://truck-001.example/kms";
	req.access_token = "not.checked.here";
	req.services = services;
	req.service_count = 2;
}

static int expect_invalid(const char *fragment)
{
	validate_limits l;
	validate_limits_default(&l);
	char detail[256] = "";
	CHECK_INT(validate_request(&req, &l, detail, sizeof detail), -1);
	CHECK(strstr(detail, fragment) != NULL);
	return 0;
}

static int test_valid_request(void)
{
	reset();
	validate_limits l;
	validate_limits_default(&l);
	char detail[256] = "";
	CHECK_INT(validate_request(&req, &l, detail, sizeof detail), 0);
	return 0;
}

static int test_uuid_forms(void)
{
	CHECK(validate_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
	CHECK(validate_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
	CHECK(!validate_uuid(""));
	CHECK(!validate_uuid("0f8fad5bd9cb469fa16570867728950e"));
	CHECK(!validate_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
	CHECK(!validate_uuid("0f8fad5b-d9cb-469f-a165-70867728950e0"));
	CHECK(!validate_uuid("0f8fad5b-d9cb-469f-a165_70867728950e"));
	CHECK(!validate_uuid("gf8fad5b-d9cb-469f-a165-70867728950e"));
	return 0;
}

static int test_uri_forms(void)
{
	CHECK(validate_absolute_uri("https://truck.example/kms"));
	CHECK(validate_absolute_uri("urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"));
	CHECK(validate_absolute_uri("coap+tcp://[2001:db8::1]:5683/k?x=1"));
	CHECK(!validate_absolute_uri(""));
	CHECK(!validate_absolute_uri("/relative/path"));
	CHECK(!validate_absolute_uri("truck.example/kms"));
	CHECK(!validate_absolute_uri("https:"));
	CHECK(!validate_absolute_uri("https://"));
	CHECK(!validate_absolute_uri("1http://x"));
	CHECK(!validate_absolute_uri("https://a b"));
	CHECK(!validate_absolute_uri("https://x/#frag"));
	CHECK(!validate_absolute_uri("https://x/%zz"));
	CHECK(!validate_absolute_uri("https://x/\x01"));
	return 0;
}

static int test_malformed_request_id(void)
{
	reset();
	req.request_id = "not-a-uuid";
	return expect_invalid("requestId");
}

static int test_empty_services(void)
{
	reset();
	req.service_count = 0;
	return expect_invalid("valServices is empty");
}

static int test_too_many_services(void)
{
	reset();
	validate_limits l;
	validate_limits_default(&l);
	l.max_services = 1;
	char detail[256] = "";
	CHECK_INT(validate_request(&req, &l, detail, sizeof detail), -1);
	CHECK(strstr(detail, "more entries than allowed") != NULL);
	return 0;
}

static int test_duplicate_service_ids(void)
{
	reset();
	services[1].val_service_id = "v2x.platooning";
	return expect_invalid("not unique");
}

static int test_relative_endpoint(void)
{
	reset();
	req.endpoint = "kms/callback";
	return expect_invalid("absolute URI");
}

static int test_empty_endpoint(void)
{
	reset();
	req.endpoint = "";
	return expect_invalid("absolute URI");
}

static int test_empty_identity(void)
{
	reset();
	req.requester_identity = "";
	return expect_invalid("requesterIdentity");
}

static int test_overlong_identity(void)
{
	reset();
	char *id = malloc(300);
	memset(id, 'a', 299);
	id[299] = '\0';
	req.requester_identity = id;
	int rc = expect_invalid("requesterIdentity");
	free(id);
	return rc;
}

static int test_empty_service_id(void)
{
	reset();
	services[0].val_service_id = "";
	return expect_invalid("valServiceId");
}

static int test_repeated_content_key(void)
{
	reset();
	codec_kv twice[2] = {{"alg", "A"}, {"alg", "B"}};
	services[0].content = twice;
	return expect_invalid("repeats a key");
}

static int test_supp_feat(void)
{
	reset();
	req.supp_feat = "0aF1";
	validate_limits l;
	validate_limits_default(&l);
	char detail[256] = "";
	CHECK_INT(validate_request(&req, &l, detail, sizeof detail), 0);
	req.supp_feat = "xyz";
	return expect_invalid("suppFeat");
}

static int test_identity_with_quotes_and_controls_is_valid(void)
{
	reset();
	req.requester_identity = "val \"o'brien\" \\ % \x01\x1f \xf0\x9f\x94\x91";
	services[0].val_service_id = "svc'; DROP TABLE x; --";
	validate_limits l;
	validate_limits_default(&l);
	char detail[256] = "";
	CHECK_INT(validate_request(&req, &l, detail, sizeof detail), 0);
	return 0;
}

static int test_hash_ignores_token_sent_at_and_map_order(void)
{
	reset();
	unsigned char a[32], b[32];
	CHECK(validate_content_hash(&req, a) == 0);
	req.access_token = "another.token.value";
	req.sent_at = 12345;
	codec_kv swapped[2] = {{"kty", "oct"}, {"alg", "A256GCM"}};
	services[0].content = swapped;
	CHECK(validate_content_hash(&req, b) == 0);
	CHECK(memcmp(a, b, 32) == 0);
	return 0;
}

static int test_hash_sees_every_content_field(void)
{
	unsigned char base[32], other[32];
	reset();
	CHECK(validate_content_hash(&req, base) == 0);

	reset();
	services[1].format_type = CODEC_KF_JWK;
	CHECK(validate_content_hash(&req, other) == 0);
	CHECK(memcmp(base, other, 32) != 0);

	reset();
	services[1].format_version = "1";
	CHECK(validate_content_hash(&req, other) == 0);
	CHECK(memcmp(base, other, 32) != 0);

	reset();
	req.endpoint = "https://truck-001.example/kms2";
	CHECK(validate_content_hash(&req, other) == 0);
	CHECK(memcmp(base, other, 32) != 0);

	reset();
	req.service_count = 1;
	CHECK(validate_content_hash(&req, other) == 0);
	CHECK(memcmp(base, other, 32) != 0);

	/* the length prefix keeps "ab"+"c" apart from "a"+"bc" */
	reset();
	codec_kv x[1] = {{"ab", "c"}}, y[1] = {{"a", "bc"}};
	services[0].content = x;
	services[0].content_count = 1;
	CHECK(validate_content_hash(&req, base) == 0);
	services[0].content = y;
	CHECK(validate_content_hash(&req, other) == 0);
	CHECK(memcmp(base, other, 32) != 0);
	return 0;
}

/* Many contents that differ in one way or another, including the ways a
 * careless hash would confuse (null and "" for suppFeat or formatVersion, a
 * field's bytes moved to its neighbour, services swapped, a key and its
 * value swapped): no two may share a hash, and none may be the zeros a
 * failed hash leaves. */
static int test_hash_of_different_contents_never_equal(void)
{
	enum { MAX = 64 };
	unsigned char h[MAX][32], zero[32] = {0};
	codec_kv kv_a[1] = {{"k", "v"}}, kv_b[1] = {{"v", "k"}}, kv_c[1] = {{"kv", ""}},
	         kv_d[1] = {{"", "kv"}}, kv_e[2] = {{"k", "v"}, {"k2", "v"}};
	codec_val_service swapped[2];
	size_t n = 0;

#define VARIANT(stmt)                                                                              \
	do {                                                                                       \
		reset();                                                                           \
		stmt;                                                                              \
		CHECK(n < MAX);                                                                    \
		CHECK(validate_content_hash(&req, h[n]) == 0);                                     \
		n++;                                                                               \
	} while (0)

	VARIANT((void)0);
	VARIANT(req.supp_feat = "");
	VARIANT(req.supp_feat = "00");
	VARIANT(req.endpoint = "https://truck-001.example/km");
	VARIANT(req.requester_identity = "val-truck-002");
	VARIANT(req.requester_identity = "val-truck-001https://truck-001.example/kms";
	        req.endpoint = "");
	VARIANT(req.service_count = 1);
	VARIANT(services[0].format_version = "");
	VARIANT(services[0].format_version = "1");
	VARIANT(services[1].format_version = "1");
	VARIANT(services[0].format_type = CODEC_KF_RAW);
	VARIANT(services[0].content_count = 0);
	VARIANT(services[0].content_count = 1);
	VARIANT(services[0].content = kv_a; services[0].content_count = 1);
	VARIANT(services[0].content = kv_b; services[0].content_count = 1);
	VARIANT(services[0].content = kv_c; services[0].content_count = 1);
	VARIANT(services[0].content = kv_d; services[0].content_count = 1);
	VARIANT(services[0].content = kv_e; services[0].content_count = 2);
	VARIANT(services[1].content = kv_a; services[1].content_count = 1);
	VARIANT(services[0].val_service_id = "v2x.platooning2");
	VARIANT(swapped[0] = services[1]; swapped[1] = services[0]; req.services = swapped);
	VARIANT(content[0].value = "A256GCM ");
#undef VARIANT
	content[0].value = "A256GCM";

	for (size_t i = 0; i < n; i++) {
		CHECK(memcmp(h[i], zero, 32) != 0);
		for (size_t j = i + 1; j < n; j++)
			if (memcmp(h[i], h[j], 32) == 0) {
				fprintf(stderr, "    variants %zu and %zu share a hash\n", i, j);
				return -1;
			}
	}
	return 0;
}

static const check_case cases[] = {
    {"valid_request", test_valid_request},
    {"uuid_forms", test_uuid_forms},
    {"uri_forms", test_uri_forms},
    {"malformed_request_id", test_malformed_request_id},
    {"empty_services", test_empty_services},
    {"too_many_services", test_too_many_services},
    {"duplicate_service_ids", test_duplicate_service_ids},
    {"relative_endpoint", test_relative_endpoint},
    {"empty_endpoint", test_empty_endpoint},
    {"empty_identity", test_empty_identity},
    {"overlong_identity", test_overlong_identity},
    {"empty_service_id", test_empty_service_id},
    {"repeated_content_key", test_repeated_content_key},
    {"supp_feat", test_supp_feat},
    {"identity_with_quotes_and_controls_is_valid", test_identity_with_quotes_and_controls_is_valid},
    {"hash_ignores_token_sent_at_and_map_order", test_hash_ignores_token_sent_at_and_map_order},
    {"hash_sees_every_content_field", test_hash_sees_every_content_field},
    {"hash_of_different_contents_never_equal", test_hash_of_different_contents_never_equal},
};

CHECK_MAIN("validate", cases)
