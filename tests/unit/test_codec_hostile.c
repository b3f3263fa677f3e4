/*
 * test_codec_hostile: the request decoder on hostile values, one case per
 * kind (empty, wrong magic, unknown fingerprint, truncation anywhere,
 * trailing bytes, sizes and counts over the limits, bad lengths, varints,
 * UTF-8, union and enum indexes, salvage of the leading fields): each must
 * be refused with its own status and an error text without payload, without
 * a crash or a leak. The values are built by hand with testcodec.h.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec.h"
#include "testcodec.h"

/* ---- Hostile values ---- */

static int test_empty_value(void)
{
	testcodec_bytes o = {0};
	return testcodec_expect_status(&o, CODEC_ERR_EMPTY);
}

static int test_wrong_magic(void)
{
	testcodec_bytes o = {0};
	int rc;

	testcodec_put_request(&o);
	o.b[0] = 0xC2;
	rc = testcodec_expect_status(&o, CODEC_ERR_MAGIC);
	o.b[0] = 0xC3;
	o.b[1] = 0x02;
	if (rc == 0)
		rc = testcodec_expect_status(&o, CODEC_ERR_MAGIC);
	o.b[1] = 0x01;
	o.b[0] = '{'; /* someone sending JSON */
	if (rc == 0)
		rc = testcodec_expect_status(&o, CODEC_ERR_MAGIC);
	free(o.b);
	return rc;
}

static int test_unknown_fingerprint(void)
{
	testcodec_bytes o = {0};
	codec_request *r = NULL;
	codec_salvage sv;
	char err[256];
	codec *c = testcodec_new(NULL);

	CHECK(c != NULL);
	testcodec_put_request(&o);
	o.b[5] ^= 0x40;
	codec_status st = codec_decode_request(c, o.b, o.n, &r, &sv, err, sizeof err);
	codec_destroy(c);
	free(o.b);
	CHECK(st == CODEC_ERR_FINGERPRINT && r == NULL);
	/* A later request version still begins with the same two fields. */
	int ok = sv.request_id &&
	         strcmp(sv.request_id, "0b6f2f3e-4a7c-4b8e-9d10-2f3a4b5c6d7e") == 0 &&
	         sv.requester_identity && strcmp(sv.requester_identity, "val-server-1") == 0;
	codec_salvage_free(&sv);
	CHECK(ok);
	return 0;
}

static int test_truncated_everywhere(void)
{
	testcodec_bytes o = {0};
	char err[256];
	codec *c = testcodec_new(NULL);
	int bad = 0;

	CHECK(c != NULL);
	testcodec_put_request(&o);
	for (size_t n = 0; n < o.n; n++) {
		codec_request *r = NULL;
		codec_salvage sv;
		codec_status want = n == 0   ? CODEC_ERR_EMPTY
		                    : n < 10 ? CODEC_ERR_MAGIC
		                             : CODEC_ERR_DATUM;
		/* A copy of exactly n bytes, so a read past the end is an
		 * error the sanitizers and valgrind see. */
		unsigned char *cut = malloc(n ? n : 1);
		if (cut == NULL)
			abort();
		memcpy(cut, o.b, n);
		codec_status st = codec_decode_request(c, cut, n, &r, &sv, err, sizeof err);
		free(cut);
		if (st != want || r != NULL) {
			fprintf(stderr, "    length %zu: %s\n", n, codec_status_name(st));
			bad++;
		}
		codec_request_free(r);
		codec_salvage_free(&sv);
	}
	codec_destroy(c);
	free(o.b);
	CHECK(bad == 0);
	return 0;
}

static int test_trailing_bytes(void)
{
	testcodec_bytes o = {0};
	testcodec_put_request(&o);
	testcodec_put_byte(&o, 0);
	int rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	return rc;
}

static int test_over_size_limit(void)
{
	codec_limits l;
	testcodec_bytes o = {0};
	codec_request *r = NULL;
	codec_salvage sv;
	char err[256];

	codec_limits_default(&l);
	l.max_value_bytes = 64;
	codec *c = testcodec_new(&l);
	CHECK(c != NULL);
	testcodec_put_request(&o);
	CHECK(o.n > 64);
	codec_status st = codec_decode_request(c, o.b, o.n, &r, &sv, err, sizeof err);
	codec_status at_limit = codec_decode_request(c, o.b, 64, &r, NULL, err, sizeof err);
	codec_destroy(c);
	free(o.b);
	CHECK(st == CODEC_ERR_TOO_LARGE && r == NULL);
	/* Exactly at the limit is not over it: that one fails as truncated. */
	CHECK(at_limit == CODEC_ERR_DATUM);
	int ok = sv.request_id != NULL && sv.requester_identity != NULL;
	codec_salvage_free(&sv);
	CHECK(ok);
	return 0;
}

static int test_negative_string_length(void)
{
	testcodec_bytes o = {0};
	testcodec_put_header(&o, TESTCODEC_REQUEST_FP);
	testcodec_put_long(&o, -1);
	testcodec_put_raw(&o, "abcdefgh", 8);
	int rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	return rc;
}

static int test_string_longer_than_value(void)
{
	testcodec_bytes o = {0};
	testcodec_put_head(&o);
	testcodec_put_long(&o, 1);
	testcodec_put_long(&o, 1000000); /* valServiceId length */
	testcodec_put_raw(&o, "svc", 3);
	int rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	return rc;
}

static int test_string_over_limit(void)
{
	codec_limits l;
	testcodec_bytes o = {0};
	char err[256];
	char big[100];

	codec_limits_default(&l);
	l.max_string_bytes = 99;
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	testcodec_put_header(&o, TESTCODEC_REQUEST_FP);
	testcodec_put_str(&o, "id");
	testcodec_put_str(&o, "val");
	testcodec_put_str(&o, big); /* 99 bytes: allowed */
	testcodec_put_str(&o, "t");
	testcodec_put_long(&o, 0);
	testcodec_put_tail(&o);
	codec *c = testcodec_new(&l);
	CHECK(c != NULL);
	codec_status ok = testcodec_decode_status(c, &o, err, sizeof err);
	free(o.b);
	/* An endpoint of 100 bytes: one over. */
	o = (testcodec_bytes){0};
	testcodec_put_header(&o, TESTCODEC_REQUEST_FP);
	testcodec_put_str(&o, "id");
	testcodec_put_str(&o, "val");
	testcodec_put_long(&o, 100);
	testcodec_put_raw(&o, big, 99);
	testcodec_put_raw(&o, "a", 1);
	testcodec_put_str(&o, "t");
	testcodec_put_long(&o, 0);
	testcodec_put_tail(&o);
	codec_status over = testcodec_decode_status(c, &o, err, sizeof err);
	codec_destroy(c);
	free(o.b);
	CHECK(ok == CODEC_OK);
	CHECK(over == CODEC_ERR_LIMIT);
	return 0;
}

static int test_invalid_utf8(void)
{
	static const struct {
		const char *s;
		size_t n;
		codec_status want;
	} cases[] = {
	    {"\xc0\xaf", 2, CODEC_ERR_DATUM},         /* overlong '/' */
	    {"\xe0\x80\xaf", 3, CODEC_ERR_DATUM},     /* overlong, 3 bytes */
	    {"\xf0\x80\x80\xaf", 4, CODEC_ERR_DATUM}, /* overlong, 4 bytes */
	    {"\xed\xa0\x80", 3, CODEC_ERR_DATUM},     /* U+D800, a surrogate */
	    {"\xed\xbf\xbf", 3, CODEC_ERR_DATUM},     /* U+DFFF */
	    {"\xf4\x90\x80\x80", 4, CODEC_ERR_DATUM}, /* U+110000 */
	    {"\xf5\x80\x80\x80", 4, CODEC_ERR_DATUM},
	    {"\x80", 1, CODEC_ERR_DATUM},         /* lone continuation */
	    {"a\xe2\x82", 3, CODEC_ERR_DATUM},    /* cut short */
	    {"\xe2\x28\xa1", 3, CODEC_ERR_DATUM}, /* bad continuation */
	    {"\xff", 1, CODEC_ERR_DATUM},
	    {"\xf0\x9f\x94\x91", 4, CODEC_OK}, /* U+1F511 */
	    {"\xf4\x8f\xbf\xbf", 4, CODEC_OK}, /* U+10FFFF */
	    {"\xed\x9f\xbf", 3, CODEC_OK},     /* U+D7FF */
	    {"\xef\xbf\xbd", 3, CODEC_OK},     /* U+FFFD */
	    {"\xc2\x80", 2, CODEC_OK},         /* U+0080 */
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		testcodec_bytes o = {0};
		/* In a map value, deep in the datum. */
		testcodec_put_head(&o);
		testcodec_put_long(&o, 1);
		testcodec_put_str(&o, "svc");
		testcodec_put_long(&o, 0);
		testcodec_put_long(&o, 0);
		testcodec_put_long(&o, 1);
		testcodec_put_str(&o, "k");
		testcodec_put_bin(&o, cases[i].s, cases[i].n);
		testcodec_put_long(&o, 0);
		testcodec_put_long(&o, 0);
		testcodec_put_tail(&o);
		int rc = testcodec_expect_status(&o, cases[i].want);
		free(o.b);
		if (rc != 0) {
			fprintf(stderr, "    UTF-8 case %zu\n", i);
			return -1;
		}
	}
	return 0;
}

static int test_nul_in_string(void)
{
	testcodec_bytes o = {0};
	testcodec_put_header(&o, TESTCODEC_REQUEST_FP);
	testcodec_put_str(&o, "id");
	testcodec_put_bin(&o, "val\0evil", 8);
	testcodec_put_str(&o, "https://e");
	testcodec_put_str(&o, "t");
	testcodec_put_long(&o, 0);
	testcodec_put_tail(&o);
	int rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	return rc;
}

static int test_union_index_out_of_range(void)
{
	static const int64_t idx[] = {2, -1, 1000000000000LL};
	for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
		testcodec_bytes o = {0};
		testcodec_put_head(&o);
		testcodec_put_long(&o, 0);
		testcodec_put_long(&o, 1700000000000LL);
		testcodec_put_long(&o, idx[i]); /* suppFeat */
		testcodec_put_str(&o, "x");
		int rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
		free(o.b);
		if (rc != 0)
			return -1;
	}
	/* Branch 1 is the string: fine. */
	testcodec_bytes o = {0};
	testcodec_put_head(&o);
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 1700000000000LL);
	testcodec_put_long(&o, 1);
	testcodec_put_str(&o, "x");
	int rc = testcodec_expect_status(&o, CODEC_OK);
	free(o.b);
	return rc;
}

static int test_enum_out_of_range(void)
{
	static const int64_t idx[] = {9, -1, 2147483647LL};
	for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
		testcodec_bytes o = {0};
		testcodec_put_head(&o);
		testcodec_put_long(&o, 1);
		testcodec_put_service(&o, "svc", idx[i]);
		testcodec_put_long(&o, 0);
		testcodec_put_tail(&o);
		int rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
		free(o.b);
		if (rc != 0)
			return -1;
	}
	testcodec_bytes o = {0};
	testcodec_put_head(&o);
	testcodec_put_long(&o, 1);
	testcodec_put_service(&o, "svc", 8); /* MIKEY_SAKKE, the last */
	testcodec_put_long(&o, 0);
	testcodec_put_tail(&o);
	int rc = testcodec_expect_status(&o, CODEC_OK);
	free(o.b);
	return rc;
}

/* 10,000 services, encoded properly: over max_services (1000). */
static int test_ten_thousand_services(void)
{
	enum { N = 10000 };
	codec_val_service *svcs = calloc(N, sizeof *svcs);
	codec_request in = {
	    .request_id = "id",
	    .requester_identity = "val",
	    .endpoint = "https://e",
	    .access_token = "t",
	    .services = svcs,
	    .service_count = N,
	};
	unsigned char *buf = NULL;
	size_t len = 0;
	codec_request *out = NULL;
	codec_salvage sv;
	char err[256];
	codec *c = testcodec_new(NULL);

	CHECK(svcs != NULL && c != NULL);
	for (size_t i = 0; i < N; i++)
		svcs[i] = (codec_val_service){"s", CODEC_KF_RAW, NULL, NULL, 0};
	int rc = codec_encode_request(c, &in, &buf, &len, err, sizeof err);
	codec_status st =
	    rc == 0 ? codec_decode_request(c, buf, len, &out, &sv, err, sizeof err) : CODEC_OK;
	codec_destroy(c);
	free(buf);
	free(svcs);
	CHECK(rc == 0);
	CHECK(st == CODEC_ERR_LIMIT && out == NULL);
	int ok = sv.request_id && strcmp(sv.request_id, "id") == 0;
	codec_salvage_free(&sv);
	CHECK(ok);
	return 0;
}

/* A block count announcing a huge array is refused before any item is read. */
static int test_huge_block_count(void)
{
	testcodec_bytes o = {0};
	int rc;

	testcodec_put_head(&o);
	testcodec_put_long(&o, INT64_MAX);
	testcodec_put_service(&o, "svc", 0);
	rc = testcodec_expect_status(&o, CODEC_ERR_LIMIT);
	free(o.b);
	if (rc != 0)
		return rc;
	/* Under the service limit, but more than the bytes left could hold. */
	o = (testcodec_bytes){0};
	testcodec_put_head(&o);
	testcodec_put_long(&o, 999);
	testcodec_put_service(&o, "svc", 0);
	rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	if (rc != 0)
		return rc;
	o = (testcodec_bytes){0};
	testcodec_put_head(&o);
	testcodec_put_long(&o, INT64_MIN);
	rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	return rc;
}

/* The spec's negative block count with a byte size: accepted when the size
 * is right, refused when it lies. */
static int test_sized_blocks(void)
{
	testcodec_bytes svc = {0}, o = {0};
	int rc;

	testcodec_put_service(&svc, "svc", 3);
	for (int lie = 0; lie <= 1; lie++) {
		o = (testcodec_bytes){0};
		testcodec_put_head(&o);
		testcodec_put_long(&o, -1);
		testcodec_put_long(&o, (int64_t)svc.n + lie);
		testcodec_put_raw(&o, svc.b, svc.n);
		testcodec_put_long(&o, 0);
		testcodec_put_tail(&o);
		rc = testcodec_expect_status(&o, lie ? CODEC_ERR_DATUM : CODEC_OK);
		free(o.b);
		if (rc != 0)
			break;
	}
	free(svc.b);
	return rc;
}

static int test_map_limits(void)
{
	testcodec_bytes o = {0};
	int rc;
	char key[16];

	/* 257 entries: over max_map_entries (256). */
	testcodec_put_head(&o);
	testcodec_put_long(&o, 1);
	testcodec_put_str(&o, "svc");
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 257);
	for (int i = 0; i < 257; i++) {
		(void)snprintf(key, sizeof key, "k%d", i);
		testcodec_put_str(&o, key);
		testcodec_put_str(&o, "v");
	}
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 0);
	testcodec_put_tail(&o);
	rc = testcodec_expect_status(&o, CODEC_ERR_LIMIT);
	free(o.b);
	if (rc != 0)
		return rc;
	/* The same key twice, in two blocks. */
	o = (testcodec_bytes){0};
	testcodec_put_head(&o);
	testcodec_put_long(&o, 1);
	testcodec_put_str(&o, "svc");
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 2);
	testcodec_put_str(&o, "alg");
	testcodec_put_str(&o, "A128GCM");
	testcodec_put_str(&o, "kty");
	testcodec_put_str(&o, "oct");
	testcodec_put_long(&o, 1);
	testcodec_put_str(&o, "alg");
	testcodec_put_str(&o, "A256GCM");
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 0);
	testcodec_put_tail(&o);
	rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	return rc;
}

static int test_bad_varints(void)
{
	testcodec_bytes o = {0};
	int rc;

	/* sentAt as 11 bytes. */
	testcodec_put_head(&o);
	testcodec_put_long(&o, 0);
	for (int i = 0; i < 10; i++)
		testcodec_put_byte(&o, 0x80);
	testcodec_put_byte(&o, 0x00);
	testcodec_put_long(&o, 0);
	rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	if (rc != 0)
		return rc;
	/* Ten bytes, but bits past the 64th set. */
	o = (testcodec_bytes){0};
	testcodec_put_head(&o);
	testcodec_put_long(&o, 0);
	for (int i = 0; i < 9; i++)
		testcodec_put_byte(&o, 0xFF);
	testcodec_put_byte(&o, 0x02);
	testcodec_put_long(&o, 0);
	rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	if (rc != 0)
		return rc;
	/* The largest and smallest longs are fine. */
	for (int k = 0; k < 2; k++) {
		codec_request *r = NULL;
		codec_salvage sv;
		char err[256];
		o = (testcodec_bytes){0};
		testcodec_put_head(&o);
		testcodec_put_long(&o, 0);
		testcodec_put_long(&o, k ? INT64_MIN : INT64_MAX);
		testcodec_put_long(&o, 0);
		codec *c = testcodec_new(NULL);
		CHECK(c != NULL);
		codec_status st = codec_decode_request(c, o.b, o.n, &r, &sv, err, sizeof err);
		codec_destroy(c);
		free(o.b);
		CHECK(st == CODEC_OK);
		int ok = r->sent_at == (k ? INT64_MIN : INT64_MAX) && r->service_count == 0;
		codec_request_free(r);
		CHECK(ok);
	}
	/* An enum index as a 6-byte varint: an int takes at most 5. */
	o = (testcodec_bytes){0};
	testcodec_put_head(&o);
	testcodec_put_long(&o, 1);
	testcodec_put_str(&o, "svc");
	testcodec_put_raw(&o, "\x80\x80\x80\x80\x80\x00", 6);
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 0);
	testcodec_put_tail(&o);
	rc = testcodec_expect_status(&o, CODEC_ERR_DATUM);
	free(o.b);
	return rc;
}

/* Truncated right after the second field: both salvaged. Cut inside the
 * second: only the first. */
static int test_salvage(void)
{
	testcodec_bytes o = {0};
	codec_request *r = NULL;
	codec_salvage sv, sv2, sv3;
	char err[256];
	codec *c = testcodec_new(NULL);

	CHECK(c != NULL);
	testcodec_put_header(&o, TESTCODEC_REQUEST_FP);
	testcodec_put_str(&o, "0b6f2f3e-4a7c-4b8e-9d10-2f3a4b5c6d7e");
	testcodec_put_str(&o, "val-server-1");
	codec_status st = codec_decode_request(c, o.b, o.n, &r, &sv, err, sizeof err);
	codec_status st2 = codec_decode_request(c, o.b, o.n - 3, &r, &sv2, err, sizeof err);
	o.b[0] = 0; /* no framing: nothing can be said */
	codec_status st3 = codec_decode_request(c, o.b, o.n, &r, &sv3, err, sizeof err);
	codec_destroy(c);
	free(o.b);
	int ok = st == CODEC_ERR_DATUM && sv.request_id &&
	         strcmp(sv.request_id, "0b6f2f3e-4a7c-4b8e-9d10-2f3a4b5c6d7e") == 0 &&
	         sv.requester_identity && strcmp(sv.requester_identity, "val-server-1") == 0 &&
	         st2 == CODEC_ERR_DATUM && sv2.request_id != NULL &&
	         sv2.requester_identity == NULL && st3 == CODEC_ERR_MAGIC &&
	         sv3.request_id == NULL && sv3.requester_identity == NULL;
	codec_salvage_free(&sv);
	codec_salvage_free(&sv2);
	codec_salvage_free(&sv3);
	codec_salvage_free(NULL);
	CHECK(r == NULL);
	CHECK(ok);
	return 0;
}

/* A request whose second field is not well-formed: the first alone. */
static int test_salvage_bad_identity(void)
{
	testcodec_bytes o = {0};
	codec_request *r = NULL;
	codec_salvage sv;
	char err[256];
	codec *c = testcodec_new(NULL);

	CHECK(c != NULL);
	testcodec_put_header(&o, TESTCODEC_REQUEST_FP);
	testcodec_put_str(&o, "id-1");
	testcodec_put_bin(&o, "v\xc0\xaf", 3);
	testcodec_put_str(&o, "https://e");
	codec_status st = codec_decode_request(c, o.b, o.n, &r, &sv, err, sizeof err);
	codec_destroy(c);
	free(o.b);
	int ok = st == CODEC_ERR_DATUM && sv.request_id && strcmp(sv.request_id, "id-1") == 0 &&
	         sv.requester_identity == NULL;
	codec_salvage_free(&sv);
	CHECK(ok);
	return 0;
}

/* Each status has its name, and the error text holds no payload bytes. */
static int test_error_text_has_no_payload(void)
{
	testcodec_bytes o = {0};
	char err[256];
	codec *c = testcodec_new(NULL);

	CHECK(c != NULL);
	testcodec_put_header(&o, TESTCODEC_REQUEST_FP);
	testcodec_put_str(&o, "id");
	testcodec_put_str(&o, "val");
	testcodec_put_str(&o, "https://e");
	testcodec_put_bin(&o, "SECRET\xff", 7);
	codec_status st = testcodec_decode_status(c, &o, err, sizeof err);
	codec_destroy(c);
	free(o.b);
	CHECK(st == CODEC_ERR_DATUM);
	CHECK(strstr(err, "SECRET") == NULL);
	CHECK(strstr(err, "accessToken") != NULL);
	return 0;
}

static const check_case cases[] = {
    {"empty_value", test_empty_value},
    {"wrong_magic", test_wrong_magic},
    {"unknown_fingerprint", test_unknown_fingerprint},
    {"truncated_everywhere", test_truncated_everywhere},
    {"trailing_bytes", test_trailing_bytes},
    {"over_size_limit", test_over_size_limit},
    {"negative_string_length", test_negative_string_length},
    {"string_longer_than_value", test_string_longer_than_value},
    {"string_over_limit", test_string_over_limit},
    {"invalid_utf8", test_invalid_utf8},
    {"nul_in_string", test_nul_in_string},
    {"union_index_out_of_range", test_union_index_out_of_range},
    {"enum_out_of_range", test_enum_out_of_range},
    {"ten_thousand_services", test_ten_thousand_services},
    {"huge_block_count", test_huge_block_count},
    {"sized_blocks", test_sized_blocks},
    {"map_limits", test_map_limits},
    {"bad_varints", test_bad_varints},
    {"salvage", test_salvage},
    {"salvage_bad_identity", test_salvage_bad_identity},
    {"error_text_has_no_payload", test_error_text_has_no_payload},
};

CHECK_MAIN("codec", cases)
