/*
 * test_resolve: schema resolution (resolve.h) and the codec's Confluent
 * framing, without a registry. Hostile schemas (nesting, size, names, unions,
 * defaults) are refused at parse or plan time; hostile datums get a status;
 * a writer from elsewhere reads as the current schema, or refuses every
 * value with its own status. Run under valgrind by make test: every path
 * must free what it made.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec.h"
#include "resolve.h"

static resolve_schema *parse(const char *json, char *err, size_t err_size)
{
	return resolve_schema_parse(json, strlen(json), NULL, err, err_size);
}

/* 1 when the schema is refused and the message holds want. */
static int refused(const char *json, const char *want)
{
	char err[256] = "";
	resolve_schema *s = parse(json, err, sizeof err);
	resolve_schema_destroy(s);
	if (s != NULL || strstr(err, want) == NULL) {
		fprintf(stderr, "    schema %.60s: \"%s\", expected \"%s\"\n", json, err, want);
		return 0;
	}
	return 1;
}

static int test_hostile_schemas(void)
{
	char deep[4096] = "";
	size_t n = 0;
	for (int i = 0; i < 70; i++)
		n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"type\":\"array\",\"items\":");
	n += (size_t)snprintf(deep + n, sizeof deep - n, "\"int\"");
	for (int i = 0; i < 70; i++)
		n += (size_t)snprintf(deep + n, sizeof deep - n, "}");
	CHECK(refused(deep, "deeper than"));
	CHECK(refused("{\"type\":", "not JSON"));
	CHECK(refused("[\"int\", [\"null\"]]", "a union holds a union"));
	CHECK(refused("[\"int\", \"int\"]", "twice"));
	CHECK(refused("[]", "without branches"));
	CHECK(refused("{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":"
	              "\"int\"},{\"name\":\"a\",\"type\":\"int\"}]}",
	              "the field a twice"));
	CHECK(refused("{\"type\":\"record\",\"name\":\"1R\",\"fields\":[]}", "valid name"));
	CHECK(refused("{\"type\":\"record\",\"name\":\"R\\u0000x\",\"fields\":[]}", "valid name"));
	CHECK(refused("{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"A\"]}", "twice"));
	CHECK(refused("{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\"],\"default\":\"B\"}",
	              "default"));
	CHECK(refused("{\"type\":\"fixed\",\"name\":\"F\",\"size\":-1}", "size"));
	CHECK(refused("\"Nowhere\"", "unknown type name"));
	CHECK(refused("[{\"type\":\"record\",\"name\":\"R\",\"fields\":[]},"
	              "{\"type\":\"record\",\"name\":\"R\",\"fields\":[]}]",
	              "defined twice"));
	CHECK(refused("{\"type\":\"map\"}", "without values"));
	/* a recursive type is fine */
	char err[256];
	resolve_schema *s = parse("{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":"
	                          "\"next\",\"type\":[\"null\",\"L\"]}]}",
	                          err, sizeof err);
	CHECK(s != NULL);
	CHECK_STR(resolve_schema_record_name(s), "L");
	resolve_schema_destroy(s);
	/* too many types */
	size_t big = 32 * 5000 + 64;
	char *many = malloc(big);
	CHECK(many != NULL);
	n = (size_t)snprintf(many, big, "[");
	for (int i = 0; i < 5000; i++)
		n += (size_t)snprintf(many + n, big - n, "%s{\"type\":\"map\",\"values\":\"int\"}",
		                      i ? "," : "");
	n += (size_t)snprintf(many + n, big - n, "]");
	s = resolve_schema_parse(many, n, NULL, err, sizeof err);
	free(many);
	resolve_schema_destroy(s);
	CHECK(s == NULL);
	return 0;
}

static codec_status run(const char *wj, const char *rj, const unsigned char *in, size_t len,
                        unsigned char **out, size_t *out_len, char *err, size_t err_size)
{
	resolve_limits lim = {1024, 4096, 4096};
	resolve_schema *w = parse(wj, err, err_size), *r = parse(rj, err, err_size);
	resolve_plan *p = w && r ? resolve_plan_new(w, r, NULL, err, err_size) : NULL;
	codec_status st = CODEC_ERR_RESOLVE;
	*out = NULL;
	if (p != NULL)
		st = resolve_datum(p, &lim, in, len, 0, out, out_len, err, err_size);
	resolve_plan_destroy(p);
	resolve_schema_destroy(w);
	resolve_schema_destroy(r);
	return st;
}

static int test_defaults_and_reorder(void)
{
	const char *w = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"b\",\"type\":"
	                "\"string\"},{\"name\":\"skip\",\"type\":{\"type\":\"map\",\"values\":"
	                "\"long\"}},{\"name\":\"a\",\"type\":\"int\"}]}";
	const char *r = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":"
	                "\"long\"},{\"name\":\"c\",\"type\":[\"null\",\"int\"],\"default\":null},"
	                "{\"name\":\"b\",\"type\":\"bytes\"},{\"name\":\"d\",\"type\":{\"type\":"
	                "\"array\",\"items\":\"int\"},\"default\":[1,-1]}]}";
	/* b="hi", skip={"k":3}, a=-2 */
	const unsigned char in[] = {4, 'h', 'i', 2, 2, 'k', 6, 0, 3};
	/* a=-2, c=null, b="hi", d=[1,-1] */
	const unsigned char want[] = {3, 0, 4, 'h', 'i', 4, 2, 1, 0};
	unsigned char *out;
	size_t out_len = 0;
	char err[256];
	codec_status st = run(w, r, in, sizeof in, &out, &out_len, err, sizeof err);
	int same = st == CODEC_OK && out_len == sizeof want && memcmp(out, want, out_len) == 0;
	free(out);
	if (st != CODEC_OK)
		fprintf(stderr, "    %s\n", err);
	CHECK(same);
	/* trailing bytes, a lying length, a huge count of empty items */
	const unsigned char trailing[] = {4, 'h', 'i', 0, 3, 9};
	CHECK(run(w, r, trailing, sizeof trailing, &out, &out_len, err, sizeof err) ==
	      CODEC_ERR_DATUM);
	const unsigned char lying[] = {100, 'h'};
	CHECK(run(w, r, lying, sizeof lying, &out, &out_len, err, sizeof err) == CODEC_ERR_DATUM);
	CHECK(strstr(err, "field b") != NULL);
	const char *nulls = "{\"type\":\"array\",\"items\":\"null\"}";
	const char *wide = "{\"type\":\"array\",\"items\":{\"type\":\"record\",\"name\":\"E\","
	                   "\"fields\":[{\"name\":\"s\",\"type\":\"string\",\"default\":"
	                   "\"0123456789\"}]}}";
	const char *empty = "{\"type\":\"array\",\"items\":{\"type\":\"record\",\"name\":\"E\","
	                    "\"fields\":[]}}";
	const unsigned char billion[] = {0xfe, 0xff, 0xff, 0xff, 0x0f, 0};
	CHECK(run(nulls, nulls, billion, sizeof billion, &out, &out_len, err, sizeof err) ==
	      CODEC_ERR_DATUM);
	/* 1000 empty records, each given an 11-byte default: over the output
	 * bound of 4096 */
	const unsigned char thousand[] = {0xd0, 0x0f, 0};
	CHECK(run(empty, wide, thousand, sizeof thousand, &out, &out_len, err, sizeof err) ==
	      CODEC_ERR_LIMIT);
	return 0;
}

static int test_unresolvable(void)
{
	char err[256];
	unsigned char *out;
	size_t out_len;
	const char *w = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[]}";
	const char *r = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"x\",\"type\":"
	                "\"int\"}]}";
	CHECK(run(w, r, NULL, 0, &out, &out_len, err, sizeof err) == CODEC_ERR_RESOLVE);
	CHECK(strstr(err, "no default") != NULL);
	/* a symbol without a match, a union branch without one: at read time */
	const char *ew = "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}";
	const char *er = "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\"]}";
	const unsigned char b[] = {2};
	CHECK(run(ew, er, b, 1, &out, &out_len, err, sizeof err) == CODEC_ERR_RESOLVE);
	CHECK(strstr(err, "symbol B") != NULL);
	const unsigned char null_branch[] = {0};
	CHECK(run("[\"null\",\"int\"]", "\"long\"", null_branch, 1, &out, &out_len, err,
	          sizeof err) == CODEC_ERR_RESOLVE);
	const unsigned char int_branch[] = {2, 4};
	CHECK(run("[\"null\",\"int\"]", "\"long\"", int_branch, 2, &out, &out_len, err,
	          sizeof err) == CODEC_OK);
	CHECK(out_len == 1 && out[0] == 4);
	free(out);
	return 0;
}

/* ---- the codec's Confluent framing ---- */

static const char other_record[] = "{\"type\":\"record\",\"name\":\"Telemetry\",\"fields\":[]}";

static int test_codec_writers(void)
{
	char err[256];
	codec *c = codec_new(NULL, err, sizeof err);
	codec_writer *w = NULL;
	CHECK(c != NULL);
	const char *cur = codec_request_schema_json(c);
	CHECK(codec_writer_new(c, cur, strlen(cur), &w, err, sizeof err) == CODEC_OK);
	CHECK(codec_writer_status(w) == CODEC_OK);

	codec_val_service svc = {.val_service_id = "v2x.a", .format_type = CODEC_KF_JWK};
	codec_request req = {.request_id = "0f8fad5b-d9cb-469f-a165-70867728950e",
	                     .requester_identity = "val-1",
	                     .endpoint = "https://e",
	                     .access_token = "t",
	                     .services = &svc,
	                     .service_count = 1,
	                     .sent_at = 5};
	codec_frame f = {CODEC_FRAMING_CONFLUENT, 0x01020304};
	unsigned char *v = NULL;
	size_t n = 0;
	CHECK(codec_encode_request_as(c, &f, &req, &v, &n, err, sizeof err) == 0);
	CHECK(v[0] == 0 && v[1] == 1 && v[4] == 4);
	CHECK(codec_framing_of(v, n) == CODEC_FRAMING_CONFLUENT);
	uint32_t id = 0;
	CHECK(codec_confluent_id(v, n, &id) == 0 && id == 0x01020304);

	codec_request *r = NULL;
	codec_salvage sv;
	codec_status st = codec_decode_request_confluent(c, w, v, n, &r, &sv, err, sizeof err);
	int ok = st == CODEC_OK && strcmp(r->requester_identity, "val-1") == 0 &&
	         r->service_count == 1 && r->supp_feat == NULL;
	codec_request_free(r);
	codec_salvage_free(&sv);
	CHECK(ok);
	/* unknown id: refused, and the request named */
	st = codec_decode_request_confluent(c, NULL, v, n, &r, &sv, err, sizeof err);
	ok = st == CODEC_ERR_SCHEMA_ID && r == NULL && sv.requester_identity != NULL &&
	     strcmp(sv.requester_identity, "val-1") == 0;
	codec_salvage_free(&sv);
	CHECK(ok);
	/* a frame too short to hold an id */
	st = codec_decode_request_confluent(c, NULL, v, 3, &r, &sv, err, sizeof err);
	CHECK(st == CODEC_ERR_MAGIC && sv.request_id == NULL && strstr(err, "3 of 5") != NULL);
	/* the single-object decoder names the framing it cannot read */
	st = codec_decode_request(c, v, n, &r, &sv, err, sizeof err);
	codec_salvage_free(&sv);
	CHECK(st == CODEC_ERR_MAGIC && strstr(err, "registry") != NULL);
	codec_writer_destroy(w);

	/* writers that refuse every value, each with its status */
	struct {
		const char *json;
		codec_status st;
	} bad[] = {{other_record, CODEC_ERR_WRONG_SCHEMA},
	           {"\"string\"", CODEC_ERR_WRONG_SCHEMA},
	           {"syntax = \"proto3\";", CODEC_ERR_WRONG_SCHEMA},
	           {"{\"type\":\"record\",\"name\":\"ValServerProvisioningRequest\",\"fields\":"
	            "[{\"name\":\"requestId\",\"type\":\"string\"},{\"name\":"
	            "\"requesterIdentity\",\"type\":\"string\"}]}",
	            CODEC_ERR_RESOLVE}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK(codec_writer_new(c, bad[i].json, strlen(bad[i].json), &w, err, sizeof err) ==
		      CODEC_OK);
		CHECK(codec_writer_status(w) == bad[i].st);
		st = codec_decode_request_confluent(c, w, v, n, &r, &sv, err, sizeof err);
		int named = sv.request_id != NULL;
		codec_salvage_free(&sv);
		codec_writer_destroy(w);
		CHECK(st == bad[i].st && r == NULL);
		/* only a request schema that begins with the two fields names it */
		CHECK(named == (bad[i].st == CODEC_ERR_RESOLVE));
	}
	/* a Confluent-framed Result, read back through the response schema */
	const char *rj = codec_response_schema_json(c);
	CHECK(codec_writer_new(c, rj, strlen(rj), &w, err, sizeof err) == CODEC_OK);
	codec_response resp = {.request_id = req.request_id,
	                       .requester_identity = "val-1",
	                       .result = CODEC_RESULT_FAILURE,
	                       .cause = CODEC_CAUSE_UNAUTHORIZED,
	                       .kms_id = "k",
	                       .processed_at = 9};
	unsigned char *rv = NULL;
	size_t rn = 0;
	codec_response_owned *ro = NULL;
	CHECK(codec_encode_response_as(c, &f, &resp, &rv, &rn, err, sizeof err) == 0);
	st = codec_decode_response_confluent(c, w, rv, rn, &ro, err, sizeof err);
	ok = st == CODEC_OK && ro->cause == CODEC_CAUSE_UNAUTHORIZED && ro->processed_at == 9;
	codec_response_owned_free(ro);
	/* a response writer for a request value is the wrong schema */
	st = codec_decode_request_confluent(c, w, v, n, &r, &sv, err, sizeof err);
	codec_salvage_free(&sv);
	codec_writer_destroy(w);
	free(rv);
	free(v);
	codec_destroy(c);
	CHECK(ok);
	CHECK(st == CODEC_ERR_WRONG_SCHEMA);
	return 0;
}

int main(void)
{
	static const check_case cases[] = {
	    {"hostile_schemas", test_hostile_schemas},
	    {"defaults_and_reorder", test_defaults_and_reorder},
	    {"unresolvable", test_unresolvable},
	    {"codec_writers", test_codec_writers},
	};
	return check_run("resolve", cases, sizeof cases / sizeof cases[0]);
}
