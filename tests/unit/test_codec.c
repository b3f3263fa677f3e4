/*
 * test_codec: the wire format. Known CRC-64-AVRO and canonical-form figures
 * (checked against an independent Avro implementation, fastavro 1.13), older
 * and newer schema versions, round trips and a golden response. The hostile
 * values are test_codec_hostile's; the values both build by hand come from
 * testcodec.h.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec.h"
#include "embedded.h"
#include "file.h"
#include "testcodec.h"

/* The schemas of schemas/, in Parsing Canonical Form, as fastavro prints it. */
static const char request_canonical[] =
    "{\"name\":\"org.threegpp.seal.km.v1.ValServerProvisioningRequest\",\"type\":\"record\","
    "\"fields\":[{\"name\":\"requestId\",\"type\":\"string\"},{\"name\":\"requesterIdentity\","
    "\"type\":\"string\"},{\"name\":\"endpoint\",\"type\":\"string\"},{\"name\":\"credentials\","
    "\"type\":{\"name\":\"org.threegpp.seal.km.v1.SecurityCredentials\",\"type\":\"record\","
    "\"fields\":[{\"name\":\"accessToken\",\"type\":\"string\"}]}},{\"name\":\"valServices\","
    "\"type\":{\"type\":\"array\",\"items\":{\"name\":\"org.threegpp.seal.km.v1.ValServiceInfo\","
    "\"type\":\"record\",\"fields\":[{\"name\":\"valServiceId\",\"type\":\"string\"},{\"name\":"
    "\"keyFormat\",\"type\":{\"name\":\"org.threegpp.seal.km.v1.KeyFormat\",\"type\":\"record\","
    "\"fields\":[{\"name\":\"formatType\",\"type\":{\"name\":\"org.threegpp.seal.km.v1."
    "KeyFormatType\",\"type\":\"enum\",\"symbols\":[\"RAW\",\"OPAQUE\",\"PKCS1\",\"PKCS8\","
    "\"X509\",\"EC_PRIVATE_KEY\",\"TRANSPARENT_SYMMETRIC_KEY\",\"JWK\",\"MIKEY_SAKKE\"]}},"
    "{\"name\":\"formatVersion\",\"type\":[\"null\",\"string\"]},{\"name\":\"content\",\"type\":"
    "{\"type\":\"map\",\"values\":\"string\"}}]}}]}}},{\"name\":\"sentAt\",\"type\":\"long\"},"
    "{\"name\":\"suppFeat\",\"type\":[\"null\",\"string\"]}]}";

static const char response_canonical[] =
    "{\"name\":\"org.threegpp.seal.km.v1.ValServerProvisioningResponse\",\"type\":\"record\","
    "\"fields\":[{\"name\":\"requestId\",\"type\":\"string\"},{\"name\":\"requesterIdentity\","
    "\"type\":\"string\"},{\"name\":\"result\",\"type\":{\"name\":\"org.threegpp.seal.km.v1."
    "Result\",\"type\":\"enum\",\"symbols\":[\"SUCCESS\",\"FAILURE\"]}},{\"name\":\"cause\","
    "\"type\":[\"null\",{\"name\":\"org.threegpp.seal.km.v1.FailureCause\",\"type\":\"enum\","
    "\"symbols\":[\"INVALID_REQUEST\",\"UNAUTHORIZED\",\"NOT_ALLOWED_BY_SLA\","
    "\"KEY_FORMAT_NOT_ALLOWED\",\"REQUEST_ID_CONFLICT\",\"INTERNAL_ERROR\"]}]},{\"name\":"
    "\"detail\",\"type\":[\"null\",\"string\"]},{\"name\":\"kmsId\",\"type\":\"string\"},"
    "{\"name\":\"processedAt\",\"type\":\"long\"}]}";

#define RESPONSE_FP 0x3690a3b85c848d3aULL

/* ---- CRC-64-AVRO and canonical form ---- */

static int test_crc64_vectors(void)
{
	/* The spec gives the empty fingerprint and "null"; the rest were
	 * checked with fastavro.schema.fingerprint(..., "CRC-64-AVRO"). */
	CHECK(codec_crc64_avro("", 0) == 0xc15d213aa4d7a795ULL);
	CHECK(codec_crc64_avro("\"null\"", 6) == 0x63dd24e7cc258f8aULL);
	CHECK(codec_crc64_avro("\"int\"", 5) == 0x7275d51a3f395c8fULL);
	CHECK(codec_crc64_avro("\"long\"", 6) == 0xd054e14493f41db7ULL);
	CHECK(codec_crc64_avro("\"string\"", 8) == 0x8f014872634503c7ULL);
	CHECK(codec_crc64_avro("\"boolean\"", 9) == 0x9f42fc78a4d4f764ULL);
	CHECK(codec_crc64_avro("\"bytes\"", 7) == 0x4fc016dac3201965ULL);
	return 0;
}

static int test_canonical_primitives(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"\"int\"", "\"int\""},
	    {"{\"type\": \"int\"}", "\"int\""},
	    {"{\"type\": \"long\", \"logicalType\": \"timestamp-millis\"}", "\"long\""},
	    {" [ \"null\" , {\"type\":\"string\",\"logicalType\":\"uuid\"} ] ",
	     "[\"null\",\"string\"]"},
	    {"{\"values\": \"bytes\", \"type\": \"map\", \"doc\": \"x\"}",
	     "{\"type\":\"map\",\"values\":\"bytes\"}"},
	    {"{\"items\": {\"type\": \"double\"}, \"type\": \"array\"}",
	     "{\"type\":\"array\",\"items\":\"double\"}"},
	    {"{\"type\": \"fixed\", \"size\": 16, \"name\": \"md5\", \"namespace\": \"a.b\"}",
	     "{\"name\":\"a.b.md5\",\"type\":\"fixed\",\"size\":16}"},
	};
	char err[256];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = codec_canonical_form(cases[i].in, err, sizeof err);
		if (got == NULL)
			fprintf(stderr, "    %s: %s\n", cases[i].in, err);
		CHECK(got != NULL);
		int same = strcmp(got, cases[i].out) == 0;
		if (!same)
			fprintf(stderr, "    got %s, want %s\n", got, cases[i].out);
		free(got);
		CHECK(same);
	}
	return 0;
}

/* Namespaces: inherited, overridden, dotted names, the null namespace,
 * references; docs, aliases, defaults and logical types stripped. Expected
 * string and fingerprint from fastavro. */
static int test_canonical_namespaces(void)
{
	static const char in[] =
	    "{\"type\": \"record\", \"name\": \"A\", \"namespace\": \"x.y\", \"fields\": ["
	    "{\"name\": \"b\", \"type\": {\"type\": \"record\", \"name\": \"B\", \"aliases\": "
	    "[\"Bee\"], \"fields\": [{\"name\": \"i\", \"type\": {\"type\": \"int\", "
	    "\"logicalType\": \"date\"}}]}}, {\"name\": \"c\", \"type\": {\"type\": \"enum\", "
	    "\"name\": \"z.C\", \"symbols\": [\"P\", \"Q\"], \"doc\": \"d\", \"default\": \"P\"}}, "
	    "{\"name\": \"d\", \"type\": {\"type\": \"fixed\", \"name\": \"D\", \"namespace\": "
	    "\"\", "
	    "\"size\": 16}}, {\"name\": \"e\", \"type\": [\"null\", \"B\", \"z.C\", {\"type\": "
	    "\"array\", \"items\": \"A\"}, {\"type\": \"map\", \"values\": \"long\"}], "
	    "\"default\": "
	    "null}, {\"name\": \"f\", \"type\": {\"type\": \"record\", \"name\": \"F\", "
	    "\"namespace\": \"w\", \"fields\": [{\"name\": \"g\", \"type\": \"z.C\"}]}}]}";
	static const char want[] =
	    "{\"name\":\"x.y.A\",\"type\":\"record\",\"fields\":[{\"name\":\"b\",\"type\":{"
	    "\"name\":"
	    "\"x.y.B\",\"type\":\"record\",\"fields\":[{\"name\":\"i\",\"type\":\"int\"}]}},{"
	    "\"name\":"
	    "\"c\",\"type\":{\"name\":\"z.C\",\"type\":\"enum\",\"symbols\":[\"P\",\"Q\"]}},{"
	    "\"name\":"
	    "\"d\",\"type\":{\"name\":\"D\",\"type\":\"fixed\",\"size\":16}},{\"name\":\"e\","
	    "\"type\":"
	    "[\"null\",\"x.y.B\",\"z.C\",{\"type\":\"array\",\"items\":\"x.y.A\"},{\"type\":"
	    "\"map\","
	    "\"values\":\"long\"}]},{\"name\":\"f\",\"type\":{\"name\":\"w.F\",\"type\":\"record\","
	    "\"fields\":[{\"name\":\"g\",\"type\":\"z.C\"}]}}]}";
	char err[256];
	char *got = codec_canonical_form(in, err, sizeof err);

	CHECK(got != NULL);
	int same = strcmp(got, want) == 0;
	uint64_t fp = codec_crc64_avro(got, strlen(got));
	if (!same)
		fprintf(stderr, "    got %s\n", got);
	free(got);
	CHECK(same);
	CHECK(fp == 0x82b0ddc67452fd3eULL);
	return 0;
}

static int test_canonical_refuses(void)
{
	static const char *const bad[] = {
	    "",
	    "{",
	    "42",
	    "\"Unknown\"",
	    "{\"type\": \"record\", \"fields\": []}",
	    "{\"type\": \"record\", \"name\": \"1x\", \"fields\": []}",
	    "{\"type\": \"enum\", \"name\": \"E\", \"symbols\": [\"A-B\"]}",
	    "{\"type\": \"fixed\", \"name\": \"F\", \"size\": -1}",
	    "{\"type\": \"record\", \"name\": \"R\", \"fields\": [{\"name\": \"a\", \"type\": "
	    "{\"type\": \"enum\", \"name\": \"R\", \"symbols\": []}}]}",
	    "{\"type\": \"array\"}",
	    "{\"type\": \"int\", \"type\": \"long\"}",
	};
	char err[256];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		char *got = codec_canonical_form(bad[i], err, sizeof err);
		if (got != NULL)
			fprintf(stderr, "    accepted %s as %s\n", bad[i], got);
		free(got);
		CHECK(got == NULL);
		CHECK(err[0] != '\0');
	}
	return 0;
}

static int check_schema_file(const char *path, const char *want, uint64_t want_fp)
{
	char err[256];
	char *json = file_read(path, 1 << 20, NULL, err, sizeof err);
	CHECK(json != NULL);
	char *got = codec_canonical_form(json, err, sizeof err);
	free(json);
	CHECK(got != NULL);
	int same = strcmp(got, want) == 0;
	uint64_t fp = codec_crc64_avro(got, strlen(got));
	if (!same)
		fprintf(stderr, "    got %s\n", got);
	free(got);
	CHECK(same);
	CHECK(fp == want_fp);
	return 0;
}

/* Run from the repository root, as make does. */
static int test_canonical_schema_files(void)
{
	CHECK(check_schema_file("schemas/ValServerProvisioningRequest.avsc", request_canonical,
	                        TESTCODEC_REQUEST_FP) == 0);
	CHECK(check_schema_file("schemas/ValServerProvisioningResponse.avsc", response_canonical,
	                        RESPONSE_FP) == 0);
	return 0;
}

static int test_codec_fingerprints(void)
{
	codec *c = testcodec_new(NULL);
	CHECK(c != NULL);
	uint64_t req = codec_request_fingerprint(c), resp = codec_response_fingerprint(c);
	codec_destroy(c);
	codec_destroy(NULL);
	CHECK(req == TESTCODEC_REQUEST_FP);
	CHECK(resp == RESPONSE_FP);
	return 0;
}

static int test_symbol_names(void)
{
	codec_key_format_type t;
	codec_cause cause;

	CHECK_STR(codec_key_format_type_name(CODEC_KF_RAW), "RAW");
	CHECK_STR(codec_key_format_type_name(CODEC_KF_MIKEY_SAKKE), "MIKEY_SAKKE");
	CHECK(codec_key_format_type_name(CODEC_KF__COUNT) == NULL);
	CHECK_STR(codec_result_name(CODEC_RESULT_FAILURE), "FAILURE");
	CHECK_STR(codec_cause_name(CODEC_CAUSE_NONE), "");
	CHECK_STR(codec_cause_name(CODEC_CAUSE_INTERNAL_ERROR), "INTERNAL_ERROR");
	CHECK(codec_cause_name(CODEC_CAUSE__COUNT) == NULL);
	CHECK(codec_key_format_type_parse("JWK", &t) == 0 && t == CODEC_KF_JWK);
	CHECK(codec_key_format_type_parse("jwk", &t) == -1);
	CHECK(codec_cause_parse("NOT_ALLOWED_BY_SLA", &cause) == 0 &&
	      cause == CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK(codec_cause_parse("", &cause) == -1);
	CHECK_STR(codec_status_name(CODEC_ERR_LIMIT), "limit");
	return 0;
}

/* ---- Schema versions ---- */

/* An older request version: no suppFeat, a KeyFormat without formatVersion
 * and content, other enum symbols in another order, and a field the current
 * version dropped. */
static const char old_request[] =
    "{\"type\": \"record\", \"name\": \"ValServerProvisioningRequest\", \"namespace\": "
    "\"org.threegpp.seal.km.v1\", \"fields\": [{\"name\": \"requestId\", \"type\": "
    "\"string\"}, {\"name\": \"requesterIdentity\", \"type\": \"string\"}, {\"name\": "
    "\"endpoint\", \"type\": \"string\"}, {\"name\": \"credentials\", \"type\": {\"type\": "
    "\"record\", \"name\": \"SecurityCredentials\", \"fields\": [{\"name\": \"accessToken\", "
    "\"type\": \"string\"}]}}, {\"name\": \"valServices\", \"type\": {\"type\": \"array\", "
    "\"items\": {\"type\": \"record\", \"name\": \"ValServiceInfo\", \"fields\": [{\"name\": "
    "\"valServiceId\", \"type\": \"string\"}, {\"name\": \"keyFormat\", \"type\": {\"type\": "
    "\"record\", \"name\": \"KeyFormat\", \"fields\": [{\"name\": \"formatType\", \"type\": "
    "{\"type\": \"enum\", \"name\": \"KeyFormatType\", \"symbols\": [\"JWK\", \"RAW\", "
    "\"LEGACY\"]}}]}}]}}}, {\"name\": \"sentAt\", \"type\": \"long\"}, {\"name\": \"legacy\", "
    "\"type\": \"int\"}]}";

/* An older response version without detail, and a cause that was a plain
 * enum with one symbol more. */
static const char old_response[] =
    "{\"type\": \"record\", \"name\": \"ValServerProvisioningResponse\", \"namespace\": "
    "\"org.threegpp.seal.km.v1\", \"fields\": [{\"name\": \"requestId\", \"type\": "
    "\"string\"}, {\"name\": \"requesterIdentity\", \"type\": \"string\"}, {\"name\": "
    "\"result\", \"type\": {\"type\": \"enum\", \"name\": \"Result\", \"symbols\": "
    "[\"FAILURE\", \"SUCCESS\"]}}, {\"name\": \"cause\", \"type\": {\"type\": \"enum\", "
    "\"name\": \"FailureCause\", \"symbols\": [\"GONE\", \"UNAUTHORIZED\"]}}, {\"name\": "
    "\"kmsId\", \"type\": \"string\"}, {\"name\": \"processedAt\", \"type\": \"long\"}]}";

static const char *embedded_data(const char *name)
{
	for (size_t i = 0; i < embedded_schemas_count; i++) {
		if (strcmp(embedded_schemas[i].name, name) == 0)
			return embedded_schemas[i].data;
	}
	return NULL;
}

/* A codec of the current schemas and the given extra files. */
static codec *codec_with(const embedded_file *extra, size_t n, char *err, size_t err_size)
{
	embedded_file files[8];
	size_t k = 0;

	files[k++] = (embedded_file){"ValServerProvisioningRequest.avsc",
	                             embedded_data("ValServerProvisioningRequest.avsc"), 0};
	files[k++] = (embedded_file){"ValServerProvisioningResponse.avsc",
	                             embedded_data("ValServerProvisioningResponse.avsc"), 0};
	for (size_t i = 0; i < n && k < 8; i++)
		files[k++] = extra[i];
	for (size_t i = 0; i < k; i++)
		files[i].len = files[i].data ? strlen(files[i].data) : 0;
	/* The codec borrows the names and texts, all static; not the array. */
	return codec_new_from_files(files, k, NULL, err, err_size);
}

static uint64_t fingerprint_of(const char *json)
{
	char err[256];
	char *canon = codec_canonical_form(json, err, sizeof err);
	uint64_t fp = canon ? codec_crc64_avro(canon, strlen(canon)) : 0;
	free(canon);
	return fp;
}

static int test_older_request_version(void)
{
	embedded_file old = {"ValServerProvisioningRequest.0.avsc", old_request, 0};
	char err[256];
	codec_request *r = NULL;
	codec_salvage sv;
	testcodec_bytes o = {0};
	codec *c = codec_with(&old, 1, err, sizeof err);

	if (c == NULL)
		fprintf(stderr, "    %s\n", err);
	CHECK(c != NULL);
	testcodec_put_header(&o, fingerprint_of(old_request));
	testcodec_put_str(&o, "id-0");
	testcodec_put_str(&o, "val-0");
	testcodec_put_str(&o, "https://e");
	testcodec_put_str(&o, "t");
	testcodec_put_long(&o, 2);
	testcodec_put_str(&o, "a");
	testcodec_put_long(&o, 0); /* JWK in the old order */
	testcodec_put_str(&o, "b");
	testcodec_put_long(&o, 1); /* RAW */
	testcodec_put_long(&o, 0);
	testcodec_put_long(&o, 42);
	testcodec_put_long(&o, 7); /* legacy */
	codec_status st = codec_decode_request(c, o.b, o.n, &r, &sv, err, sizeof err);
	/* The symbol the current version lacks. */
	o.b[o.n - 4] = 4; /* formatType of "b": LEGACY (index 2) */
	codec_request *r2 = NULL;
	char err2[256] = "";
	codec_status st2 = codec_decode_request(c, o.b, o.n, &r2, NULL, err2, sizeof err2);
	codec_destroy(c);
	free(o.b);
	if (st != CODEC_OK)
		fprintf(stderr, "    %s\n", err);
	CHECK(st == CODEC_OK);
	int ok = strcmp(r->request_id, "id-0") == 0 && r->service_count == 2 &&
	         r->services[0].format_type == CODEC_KF_JWK &&
	         r->services[1].format_type == CODEC_KF_RAW &&
	         r->services[0].format_version == NULL && r->services[0].content_count == 0 &&
	         r->supp_feat == NULL && r->sent_at == 42;
	codec_request_free(r);
	CHECK(ok);
	CHECK(st2 == CODEC_ERR_RESOLVE && r2 == NULL);
	CHECK(strstr(err2, "LEGACY") != NULL);
	return 0;
}

static int test_older_response_version(void)
{
	embedded_file old = {"ValServerProvisioningResponse.0.avsc", old_response, 0};
	char err[256];
	codec_response_owned *r = NULL, *r2 = NULL;
	testcodec_bytes o = {0};
	codec *c = codec_with(&old, 1, err, sizeof err);

	CHECK(c != NULL);
	testcodec_put_header(&o, fingerprint_of(old_response));
	testcodec_put_str(&o, "id");
	testcodec_put_str(&o, "val");
	testcodec_put_long(&o, 0); /* FAILURE in the old order */
	testcodec_put_long(&o, 1); /* UNAUTHORIZED */
	testcodec_put_str(&o, "k");
	testcodec_put_long(&o, 5);
	codec_status st = codec_decode_response(c, o.b, o.n, &r, err, sizeof err);
	o.b[o.n - 4] = 0; /* GONE */
	codec_status st2 = codec_decode_response(c, o.b, o.n, &r2, err, sizeof err);
	codec_destroy(c);
	free(o.b);
	CHECK(st == CODEC_OK);
	int ok = r->result == CODEC_RESULT_FAILURE && r->cause == CODEC_CAUSE_UNAUTHORIZED &&
	         r->detail == NULL && strcmp(r->kms_id, "k") == 0 && r->processed_at == 5;
	codec_response_owned_free(r);
	CHECK(ok);
	CHECK(st2 == CODEC_ERR_RESOLVE && r2 == NULL);
	return 0;
}

static int test_versions_refused(void)
{
	static const char no_endpoint[] =
	    "{\"type\": \"record\", \"name\": \"ValServerProvisioningRequest\", \"fields\": "
	    "[{\"name\": \"requestId\", \"type\": \"string\"}, {\"name\": \"requesterIdentity\", "
	    "\"type\": \"string\"}]}";
	static const char identity_first[] =
	    "{\"type\": \"record\", \"name\": \"ValServerProvisioningResponse\", \"fields\": "
	    "[{\"name\": \"requesterIdentity\", \"type\": \"string\"}, {\"name\": \"requestId\", "
	    "\"type\": \"string\"}, {\"name\": \"result\", \"type\": {\"type\": \"enum\", "
	    "\"name\": \"Result\", \"symbols\": [\"SUCCESS\"]}}, {\"name\": \"kmsId\", \"type\": "
	    "\"string\"}, {\"name\": \"processedAt\", \"type\": \"long\"}]}";
	static const char not_json[] = "{\"type\": \"record\"";
	embedded_file bad[] = {
	    {"ValServerProvisioningRequest.0.avsc", no_endpoint, 0},
	    {"ValServerProvisioningResponse.0.avsc", identity_first, 0},
	    {"Broken.avsc", not_json, 0},
	};
	char err[256];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		codec *c = codec_with(&bad[i], 1, err, sizeof err);
		codec_destroy(c);
		CHECK(c == NULL);
		CHECK(strstr(err, bad[i].name) != NULL);
	}
	/* Not a schema file, and another record: ignored, and known. */
	embedded_file fine[] = {
	    {"README.md", "# not a schema", 0},
	    {"Other.avsc", "{\"type\": \"record\", \"name\": \"Other\", \"fields\": []}", 0},
	    {"Copy.avsc", old_response, 0},
	    {"Copy2.avsc", old_response, 0},
	};
	codec *c = codec_with(fine, 4, err, sizeof err);
	CHECK(c != NULL);
	testcodec_bytes o = {0};
	testcodec_put_header(&o, fingerprint_of(fine[1].data));
	codec_request *r = NULL;
	codec_salvage sv;
	codec_status st = codec_decode_request(c, o.b, o.n, &r, &sv, err, sizeof err);
	codec_destroy(c);
	free(o.b);
	CHECK(st == CODEC_ERR_WRONG_SCHEMA);
	CHECK(sv.request_id == NULL);
	return 0;
}

static int test_current_schema_required(void)
{
	char err[256];
	embedded_file only_request[] = {
	    {"ValServerProvisioningRequest.avsc",
	     embedded_data("ValServerProvisioningRequest.avsc"), 0},
	};
	only_request[0].len = strlen(only_request[0].data);
	codec *c = codec_new_from_files(only_request, 1, NULL, err, sizeof err);
	CHECK(c == NULL);
	CHECK(strstr(err, "ValServerProvisioningResponse.avsc") != NULL);
	/* An older-looking shape under the current name is refused: the
	 * encoder must be able to fill every field. */
	embedded_file files[] = {
	    {"ValServerProvisioningRequest.avsc", old_request, sizeof old_request - 1},
	    {"ValServerProvisioningResponse.avsc",
	     embedded_data("ValServerProvisioningResponse.avsc"), 0},
	};
	files[1].len = strlen(files[1].data);
	c = codec_new_from_files(files, 2, NULL, err, sizeof err);
	CHECK(c == NULL);
	CHECK(strstr(err, "exactly") != NULL);
	return 0;
}

/* ---- Round trips ---- */

static int test_request_round_trip(void)
{
	/* Not in key order: the decoder keeps wire order. */
	codec_kv content[] = {{"use", "enc"}, {"alg", "A256GCM"}, {"kty", "oct"}};
	codec_val_service svcs[] = {
	    {"svc-\xc3\xa9t\xc3\xa9", CODEC_KF_JWK, "1.0", content, 3},
	    {"svc-\xf0\x9f\x94\x91", CODEC_KF_MIKEY_SAKKE, NULL, NULL, 0},
	};
	codec_request in = {
	    .request_id = "0b6f2f3e-4a7c-4b8e-9d10-2f3a4b5c6d7e",
	    .requester_identity = "val-server-1",
	    .endpoint = "https://val.example.com/seal",
	    .access_token = "eyJhbGciOiJFUzI1NiJ9.e30.sig",
	    .services = svcs,
	    .service_count = 2,
	    .sent_at = -1,
	    .supp_feat = "1f",
	};
	unsigned char *buf = NULL;
	size_t len = 0;
	codec_request *out = NULL;
	codec_salvage sv;
	char err[256];
	codec *c = testcodec_new(NULL);

	CHECK(c != NULL);
	int rc = codec_encode_request(c, &in, &buf, &len, err, sizeof err);
	codec_status st = rc == 0 ? codec_decode_request(c, buf, len, &out, &sv, err, sizeof err)
	                          : CODEC_ERR_DATUM;
	codec_destroy(c);
	if (rc == 0) {
		CHECK(buf[0] == 0xC3 && buf[1] == 0x01 && buf[2] == 0xa6 && buf[9] == 0x9e);
	}
	free(buf);
	if (st != CODEC_OK)
		fprintf(stderr, "    %s\n", err);
	CHECK(rc == 0 && st == CODEC_OK);
	CHECK(sv.request_id == NULL && sv.requester_identity == NULL);
	int ok = strcmp(out->request_id, in.request_id) == 0 &&
	         strcmp(out->requester_identity, in.requester_identity) == 0 &&
	         strcmp(out->endpoint, in.endpoint) == 0 &&
	         strcmp(out->access_token, in.access_token) == 0 && out->sent_at == -1 &&
	         out->supp_feat != NULL && strcmp(out->supp_feat, "1f") == 0 &&
	         out->service_count == 2 &&
	         strcmp(out->services[0].val_service_id, svcs[0].val_service_id) == 0 &&
	         out->services[0].format_type == CODEC_KF_JWK &&
	         strcmp(out->services[0].format_version, "1.0") == 0 &&
	         out->services[0].content_count == 3 &&
	         strcmp(out->services[0].content[0].key, "use") == 0 &&
	         strcmp(out->services[0].content[0].value, "enc") == 0 &&
	         strcmp(out->services[0].content[2].key, "kty") == 0 &&
	         strcmp(out->services[0].content[2].value, "oct") == 0 &&
	         strcmp(out->services[1].val_service_id, svcs[1].val_service_id) == 0 &&
	         out->services[1].format_type == CODEC_KF_MIKEY_SAKKE &&
	         out->services[1].format_version == NULL && out->services[1].content_count == 0;
	codec_request_free(out);
	codec_request_free(NULL);
	CHECK(ok);
	return 0;
}

/* The hand-built value decodes: the builder itself is right. */
static int test_hand_built_request(void)
{
	testcodec_bytes o = {0};
	testcodec_put_request(&o);
	int rc = testcodec_expect_status(&o, CODEC_OK);
	free(o.b);
	return rc;
}

/* A response fastavro wrote (schemaless_writer, then the header). */
static const unsigned char golden_response[] = {
    0xc3, 0x01, 0x3a, 0x8d, 0x84, 0x5c, 0xb8, 0xa3, 0x90, 0x36, 0x48, 0x36, 0x66, 0x31,
    0x63, 0x33, 0x62, 0x39, 0x65, 0x2d, 0x31, 0x64, 0x32, 0x61, 0x2d, 0x34, 0x63, 0x35,
    0x62, 0x2d, 0x38, 0x65, 0x37, 0x66, 0x2d, 0x30, 0x61, 0x31, 0x62, 0x32, 0x63, 0x33,
    0x64, 0x34, 0x65, 0x35, 0x66, 0x0a, 0x76, 0x61, 0x6c, 0x2d, 0x31, 0x02, 0x02, 0x02,
    0x02, 0x1a, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x20, 0x65, 0x78, 0x70, 0x69, 0x72, 0x65,
    0x64, 0x0a, 0x6b, 0x6d, 0x73, 0x2d, 0x61, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62};

static int test_response_golden_and_deterministic(void)
{
	codec_response in = {
	    .request_id = "6f1c3b9e-1d2a-4c5b-8e7f-0a1b2c3d4e5f",
	    .requester_identity = "val-1",
	    .result = CODEC_RESULT_FAILURE,
	    .cause = CODEC_CAUSE_UNAUTHORIZED,
	    .detail = "token expired",
	    .kms_id = "kms-a",
	    .processed_at = 1700000000000LL,
	};
	unsigned char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	codec_response_owned *out = NULL;
	char err[256];
	codec *c = testcodec_new(NULL);

	CHECK(c != NULL);
	int rc1 = codec_encode_response(c, &in, &a, &alen, err, sizeof err);
	int rc2 = codec_encode_response(c, &in, &b, &blen, err, sizeof err);
	codec_status st = codec_decode_response(c, golden_response, sizeof golden_response, &out,
	                                        err, sizeof err);
	codec_destroy(c);
	int same = rc1 == 0 && rc2 == 0 && alen == blen && memcmp(a, b, alen) == 0 &&
	           alen == sizeof golden_response && memcmp(a, golden_response, alen) == 0;
	free(a);
	free(b);
	CHECK(same);
	CHECK(st == CODEC_OK);
	int ok = strcmp(out->request_id, in.request_id) == 0 &&
	         strcmp(out->requester_identity, "val-1") == 0 &&
	         out->result == CODEC_RESULT_FAILURE && out->cause == CODEC_CAUSE_UNAUTHORIZED &&
	         strcmp(out->detail, "token expired") == 0 && strcmp(out->kms_id, "kms-a") == 0 &&
	         out->processed_at == 1700000000000LL;
	codec_response_owned_free(out);
	codec_response_owned_free(NULL);
	CHECK(ok);
	return 0;
}

static int test_response_success_round_trip(void)
{
	codec_response in = {
	    .request_id = "6f1c3b9e-1d2a-4c5b-8e7f-0a1b2c3d4e5f",
	    .requester_identity = "val-1",
	    .result = CODEC_RESULT_SUCCESS,
	    .cause = CODEC_CAUSE_NONE,
	    .detail = NULL,
	    .kms_id = "kms-a",
	    .processed_at = 0,
	};
	unsigned char *a = NULL;
	size_t alen = 0;
	codec_response_owned *out = NULL;
	codec_request *req = NULL;
	codec_salvage sv;
	char err[256];
	codec *c = testcodec_new(NULL);

	CHECK(c != NULL);
	int rc = codec_encode_response(c, &in, &a, &alen, err, sizeof err);
	codec_status st =
	    rc == 0 ? codec_decode_response(c, a, alen, &out, err, sizeof err) : CODEC_ERR_DATUM;
	/* A response is not a request, and gets no salvage. */
	codec_status st2 =
	    rc == 0 ? codec_decode_request(c, a, alen, &req, &sv, err, sizeof err) : CODEC_OK;
	codec_destroy(c);
	free(a);
	CHECK(rc == 0 && st == CODEC_OK);
	int ok = out->result == CODEC_RESULT_SUCCESS && out->cause == CODEC_CAUSE_NONE &&
	         out->detail == NULL && out->processed_at == 0;
	codec_response_owned_free(out);
	CHECK(ok);
	CHECK(st2 == CODEC_ERR_WRONG_SCHEMA && req == NULL);
	CHECK(sv.request_id == NULL && sv.requester_identity == NULL);
	return 0;
}

static int test_encode_refuses(void)
{
	codec_kv dup[] = {{"k", "1"}, {"k", "2"}};
	codec_val_service svc = {"svc", CODEC_KF_RAW, NULL, dup, 2};
	codec_request r = {
	    .request_id = "id",
	    .requester_identity = "val",
	    .endpoint = "https://e",
	    .access_token = "t",
	    .services = &svc,
	    .service_count = 1,
	};
	codec_response resp = {.request_id = "id",
	                       .requester_identity = "val\xff",
	                       .result = CODEC_RESULT_SUCCESS,
	                       .cause = CODEC_CAUSE_NONE,
	                       .kms_id = "k"};
	unsigned char *buf = NULL;
	size_t len = 0;
	char err[256];
	codec *c = testcodec_new(NULL);
	int rc_dup, rc_utf8, rc_kf, rc_null, rc_resp, rc_cause;

	CHECK(c != NULL);
	rc_dup = codec_encode_request(c, &r, &buf, &len, err, sizeof err);
	svc.content_count = 1;
	r.endpoint = "\xc0\xaf";
	rc_utf8 = codec_encode_request(c, &r, &buf, &len, err, sizeof err);
	r.endpoint = "https://e";
	svc.format_type = CODEC_KF__COUNT;
	rc_kf = codec_encode_request(c, &r, &buf, &len, err, sizeof err);
	svc.format_type = CODEC_KF_RAW;
	r.access_token = NULL;
	rc_null = codec_encode_request(c, &r, &buf, &len, err, sizeof err);
	rc_resp = codec_encode_response(c, &resp, &buf, &len, err, sizeof err);
	resp.requester_identity = "val";
	resp.cause = CODEC_CAUSE__COUNT;
	rc_cause = codec_encode_response(c, &resp, &buf, &len, err, sizeof err);
	codec_destroy(c);
	CHECK(buf == NULL && len == 0);
	CHECK(rc_dup == -1 && rc_utf8 == -1 && rc_kf == -1 && rc_null == -1);
	CHECK(rc_resp == -1 && rc_cause == -1);
	return 0;
}

static const check_case cases[] = {
    {"crc64_vectors", test_crc64_vectors},
    {"canonical_primitives", test_canonical_primitives},
    {"canonical_namespaces", test_canonical_namespaces},
    {"canonical_refuses", test_canonical_refuses},
    {"canonical_schema_files", test_canonical_schema_files},
    {"codec_fingerprints", test_codec_fingerprints},
    {"symbol_names", test_symbol_names},
    {"older_request_version", test_older_request_version},
    {"older_response_version", test_older_response_version},
    {"versions_refused", test_versions_refused},
    {"current_schema_required", test_current_schema_required},
    {"request_round_trip", test_request_round_trip},
    {"hand_built_request", test_hand_built_request},
    {"response_golden_and_deterministic", test_response_golden_and_deterministic},
    {"response_success_round_trip", test_response_success_round_trip},
    {"encode_refuses", test_encode_refuses},
};

CHECK_MAIN("codec", cases)
