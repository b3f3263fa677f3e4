/*
 * Tests of validate: the form rules of a decoded request and its content
 * hash.
 */
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
	validate_content_hash(&req, a);
	req.access_token = "another.token.value";
	req.sent_at = 12345;
	codec_kv swapped[2] = {{"kty", "oct"}, {"alg", "A256GCM"}};
	services[0].content = swapped;
	validate_content_hash(&req, b);
	CHECK(memcmp(a, b, 32) == 0);
	return 0;
}

static int test_hash_sees_every_content_field(void)
{
	unsigned char base[32], other[32];
	reset();
	validate_content_hash(&req, base);

	reset();
	services[1].format_type = CODEC_KF_JWK;
	validate_content_hash(&req, other);
	CHECK(memcmp(base, other, 32) != 0);

	reset();
	services[1].format_version = "1";
	validate_content_hash(&req, other);
	CHECK(memcmp(base, other, 32) != 0);

	reset();
	req.endpoint = "https://truck-001.example/kms2";
	validate_content_hash(&req, other);
	CHECK(memcmp(base, other, 32) != 0);

	reset();
	req.service_count = 1;
	validate_content_hash(&req, other);
	CHECK(memcmp(base, other, 32) != 0);

	/* the length prefix keeps "ab"+"c" apart from "a"+"bc" */
	reset();
	codec_kv x[1] = {{"ab", "c"}}, y[1] = {{"a", "bc"}};
	services[0].content = x;
	services[0].content_count = 1;
	validate_content_hash(&req, base);
	services[0].content = y;
	validate_content_hash(&req, other);
	CHECK(memcmp(base, other, 32) != 0);
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
};

CHECK_MAIN("validate", cases)
