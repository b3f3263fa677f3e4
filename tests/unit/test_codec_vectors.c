/*
 * test_codec_vectors: the C side of the cross-check against an independent
 * Avro implementation (tests/python/test_schemas.py drives it with fastavro).
 *
 *   test_codec_vectors canonical FILE     Parsing Canonical Form of a schema file
 *   test_codec_vectors fingerprint FILE   its CRC-64-AVRO, 16 hex digits
 *   test_codec_vectors encode-request     JSON request on stdin, value as hex
 *   test_codec_vectors decode-request     value as hex on stdin, JSON request
 *   test_codec_vectors encode-response    the same for responses
 *   test_codec_vectors decode-response
 *
 * The JSON is the shape of the Avro record itself (field names of the schema,
 * enums as symbol names, unions as null or the value), as fastavro reads and
 * writes it. A value that does not decode prints
 * {"status": ..., "error": ..., "salvage": {...}} and exits 1.
 *
 * Without arguments it runs its own few checks, like every unit test.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* ---- JSON <-> structs ---- */

static const char *get_str(json_t *o, const char *name)
{
	return json_string_value(json_object_get(o, name));
}

/* Fill r from JSON; strings borrowed from j. Arrays malloc'd; free with
 * free_json_request(). */
static int json_to_request(json_t *j, codec_request *r)
{
	json_t *svcs = json_object_get(j, "valServices");
	json_t *sent = json_object_get(j, "sentAt");

	memset(r, 0, sizeof *r);
	r->request_id = (char *)get_str(j, "requestId");
	r->requester_identity = (char *)get_str(j, "requesterIdentity");
	r->endpoint = (char *)get_str(j, "endpoint");
	r->access_token = (char *)get_str(json_object_get(j, "credentials"), "accessToken");
	r->supp_feat = (char *)get_str(j, "suppFeat");
	if (!json_is_integer(sent) || !json_is_array(svcs))
		return -1;
	r->sent_at = json_integer_value(sent);
	r->service_count = json_array_size(svcs);
	if (r->service_count == 0)
		return 0;
	r->services = calloc(r->service_count, sizeof *r->services);
	if (r->services == NULL)
		return -1;
	for (size_t i = 0; i < r->service_count; i++) {
		json_t *s = json_array_get(svcs, i);
		json_t *kf = json_object_get(s, "keyFormat");
		json_t *content = json_object_get(kf, "content");
		codec_val_service *v = &r->services[i];
		const char *key;
		json_t *val;
		size_t k = 0;

		v->val_service_id = (char *)get_str(s, "valServiceId");
		v->format_version = (char *)get_str(kf, "formatVersion");
		if (codec_key_format_type_parse(get_str(kf, "formatType"), &v->format_type) != 0 ||
		    !json_is_object(content))
			return -1;
		v->content_count = json_object_size(content);
		if (v->content_count == 0)
			continue;
		v->content = calloc(v->content_count, sizeof *v->content);
		if (v->content == NULL)
			return -1;
		/* jansson keeps an object's keys in the order read. */
		json_object_foreach(content, key, val)
		{
			v->content[k].key = (char *)key;
			v->content[k].value = (char *)json_string_value(val);
			k++;
		}
	}
	return 0;
}

static void free_json_request(codec_request *r)
{
	for (size_t i = 0; i < r->service_count && r->services != NULL; i++)
		free(r->services[i].content);
	free(r->services);
}

static json_t *opt_string(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *request_to_json(const codec_request *r)
{
	json_t *svcs = json_array();
	for (size_t i = 0; i < r->service_count; i++) {
		const codec_val_service *v = &r->services[i];
		json_t *content = json_object();
		for (size_t k = 0; k < v->content_count; k++)
			json_object_set_new(content, v->content[k].key,
			                    json_string(v->content[k].value));
		json_array_append_new(
		    svcs,
		    json_pack("{s:s, s:{s:s, s:o, s:o}}", "valServiceId", v->val_service_id,
		              "keyFormat", "formatType", codec_key_format_type_name(v->format_type),
		              "formatVersion", opt_string(v->format_version), "content", content));
	}
	return json_pack("{s:s, s:s, s:s, s:{s:s}, s:o, s:I, s:o}", "requestId", r->request_id,
	                 "requesterIdentity", r->requester_identity, "endpoint", r->endpoint,
	                 "credentials", "accessToken", r->access_token, "valServices", svcs,
	                 "sentAt", (json_int_t)r->sent_at, "suppFeat", opt_string(r->supp_feat));
}

static int json_to_response(json_t *j, codec_response *r)
{
	json_t *at = json_object_get(j, "processedAt");
	json_t *cause = json_object_get(j, "cause");
	const char *result = get_str(j, "result");

	memset(r, 0, sizeof *r);
	r->request_id = get_str(j, "requestId");
	r->requester_identity = get_str(j, "requesterIdentity");
	r->detail = get_str(j, "detail");
	r->kms_id = get_str(j, "kmsId");
	if (result == NULL || !json_is_integer(at))
		return -1;
	if (strcmp(result, "SUCCESS") == 0)
		r->result = CODEC_RESULT_SUCCESS;
	else if (strcmp(result, "FAILURE") == 0)
		r->result = CODEC_RESULT_FAILURE;
	else
		return -1;
	r->cause = CODEC_CAUSE_NONE;
	if (cause != NULL && !json_is_null(cause) &&
	    codec_cause_parse(json_string_value(cause), &r->cause) != 0)
		return -1;
	r->processed_at = json_integer_value(at);
	return 0;
}

static json_t *response_to_json(const codec_response_owned *r)
{
	return json_pack(
	    "{s:s, s:s, s:s, s:o, s:o, s:s, s:I}", "requestId", r->request_id, "requesterIdentity",
	    r->requester_identity, "result", codec_result_name(r->result), "cause",
	    r->cause == CODEC_CAUSE_NONE ? json_null() : json_string(codec_cause_name(r->cause)),
	    "detail", opt_string(r->detail), "kmsId", r->kms_id, "processedAt",
	    (json_int_t)r->processed_at);
}

/* ---- hex ---- */

static char *hex_encode(const unsigned char *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *s = malloc(2 * n + 1);
	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = digits[b[i] >> 4];
		s[2 * i + 1] = digits[b[i] & 0x0F];
	}
	s[2 * n] = '\0';
	return s;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Hex digits, whitespace ignored; NULL on anything else or an odd count. */
static unsigned char *hex_decode(const char *s, size_t *n)
{
	size_t len = strlen(s), k = 0;
	unsigned char *b = malloc(len / 2 + 1);
	int hi = -1;

	if (b == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')
			continue;
		int d = hex_digit(s[i]);
		if (d < 0)
			goto fail;
		if (hi < 0) {
			hi = d;
		} else {
			b[k++] = (unsigned char)(hi << 4 | d);
			hi = -1;
		}
	}
	if (hi >= 0)
		goto fail;
	*n = k;
	return b;
fail:
	free(b);
	return NULL;
}

static char *read_stream(FILE *f)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);

	while (buf != NULL) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (ferror(f)) {
			free(buf);
			return NULL;
		}
		if (feof(f)) {
			buf[n] = '\0';
			return buf;
		}
		if (cap - n - 1 == 0) {
			char *nb = realloc(buf, cap * 2);
			if (nb == NULL)
				free(buf);
			buf = nb;
			cap *= 2;
		}
	}
	return NULL;
}

static char *read_path(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *s;
	if (f == NULL)
		return NULL;
	s = read_stream(f);
	fclose(f);
	return s;
}

/* ---- The commands ---- */

static int print_json(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (s == NULL)
		return EXIT_FAIL;
	puts(s);
	free(s);
	return EXIT_OK;
}

static int cmd_schema(const char *what, const char *path)
{
	char err[256];
	char *json = read_path(path);
	if (json == NULL) {
		fprintf(stderr, "cannot read %s\n", path);
		return EXIT_FAIL;
	}
	char *canon = codec_canonical_form(json, err, sizeof err);
	free(json);
	if (canon == NULL) {
		fprintf(stderr, "%s: %s\n", path, err);
		return EXIT_FAIL;
	}
	if (strcmp(what, "canonical") == 0)
		puts(canon);
	else
		printf("%016llx\n", (unsigned long long)codec_crc64_avro(canon, strlen(canon)));
	free(canon);
	return EXIT_OK;
}

/* Encode the JSON text as a request (or response); hex into *hex. */
static int encode_json(const codec *c, const char *text, int response, char **hex, char *err,
                       size_t err_size)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc = -1;

	*hex = NULL;
	if (j == NULL) {
		(void)snprintf(err, err_size, "not JSON: %s", jerr.text);
		return -1;
	}
	if (response) {
		codec_response r;
		if (json_to_response(j, &r) != 0)
			(void)snprintf(err, err_size, "not a response");
		else
			rc = codec_encode_response(c, &r, &buf, &len, err, err_size);
	} else {
		codec_request r;
		if (json_to_request(j, &r) != 0)
			(void)snprintf(err, err_size, "not a request");
		else
			rc = codec_encode_request(c, &r, &buf, &len, err, err_size);
		free_json_request(&r);
	}
	json_decref(j);
	if (rc == 0) {
		*hex = hex_encode(buf, len);
		rc = *hex ? 0 : -1;
	}
	free(buf);
	return rc;
}

/* Decode hex into JSON: the record, or the status object. *ok says which. */
static json_t *decode_hex(const codec *c, const char *text, int response, int *ok)
{
	char err[256] = "";
	size_t len = 0;
	unsigned char *buf = hex_decode(text, &len);
	codec_status st;
	json_t *out = NULL;

	*ok = 0;
	if (buf == NULL)
		return json_pack("{s:s, s:s}", "status", "hex", "error", "input is not hex");
	if (response) {
		codec_response_owned *r = NULL;
		st = codec_decode_response(c, buf, len, &r, err, sizeof err);
		if (st == CODEC_OK)
			out = response_to_json(r);
		codec_response_owned_free(r);
	} else {
		codec_request *r = NULL;
		codec_salvage sv;
		st = codec_decode_request(c, buf, len, &r, &sv, err, sizeof err);
		if (st == CODEC_OK)
			out = request_to_json(r);
		else
			out = json_pack("{s:s, s:s, s:{s:o, s:o}}", "status", codec_status_name(st),
			                "error", err, "salvage", "requestId",
			                opt_string(sv.request_id), "requesterIdentity",
			                opt_string(sv.requester_identity));
		codec_request_free(r);
		codec_salvage_free(&sv);
	}
	free(buf);
	if (st == CODEC_OK)
		*ok = 1;
	else if (out == NULL)
		out = json_pack("{s:s, s:s}", "status", codec_status_name(st), "error", err);
	return out;
}

static int cmd_value(const char *cmd)
{
	char err[256];
	int response = strstr(cmd, "response") != NULL;
	int encode = strncmp(cmd, "encode", 6) == 0;
	int rc = EXIT_FAIL, ok = 0;
	char *in = read_stream(stdin);
	codec *c = codec_new(NULL, err, sizeof err);

	if (in == NULL || c == NULL) {
		fprintf(stderr, "%s\n", in ? err : "cannot read stdin");
		goto done;
	}
	if (encode) {
		char *hex = NULL;
		if (encode_json(c, in, response, &hex, err, sizeof err) != 0) {
			fprintf(stderr, "%s\n", err);
			goto done;
		}
		puts(hex);
		free(hex);
		rc = EXIT_OK;
	} else {
		json_t *j = decode_hex(c, in, response, &ok);
		rc = print_json(j);
		json_decref(j);
		if (rc == EXIT_OK && !ok)
			rc = EXIT_FAIL;
	}
done:
	codec_destroy(c);
	free(in);
	return rc;
}

/* ---- Self-checks ---- */

static int round_trip(const char *text, int response)
{
	char err[256], *hex = NULL;
	json_error_t jerr;
	json_t *want = json_loads(text, 0, &jerr), *got = NULL;
	int ok = 0;
	codec *c = codec_new(NULL, err, sizeof err);

	CHECK(want != NULL && c != NULL);
	if (encode_json(c, text, response, &hex, err, sizeof err) == 0)
		got = decode_hex(c, hex, response, &ok);
	codec_destroy(c);
	free(hex);
	int same = ok && json_equal(want, got);
	json_decref(want);
	json_decref(got);
	CHECK(same);
	return 0;
}

static int test_request_json_round_trip(void)
{
	return round_trip(
	    "{\"requestId\": \"0b6f2f3e-4a7c-4b8e-9d10-2f3a4b5c6d7e\", \"requesterIdentity\": "
	    "\"val-\\u00e9\", \"endpoint\": \"https://val.example.com\", \"credentials\": "
	    "{\"accessToken\": \"a.b.c\"}, \"valServices\": [{\"valServiceId\": "
	    "\"s\\ud83d\\udd11\", "
	    "\"keyFormat\": {\"formatType\": \"TRANSPARENT_SYMMETRIC_KEY\", \"formatVersion\": "
	    "null, "
	    "\"content\": {\"kty\": \"oct\", \"alg\": \"A256GCM\"}}}], \"sentAt\": 1700000000000, "
	    "\"suppFeat\": null}",
	    0);
}

static int test_response_json_round_trip(void)
{
	return round_trip(
	    "{\"requestId\": \"x\", \"requesterIdentity\": \"v\", \"result\": \"FAILURE\", "
	    "\"cause\": \"KEY_FORMAT_NOT_ALLOWED\", \"detail\": \"no\", \"kmsId\": \"k\", "
	    "\"processedAt\": -5}",
	    1);
}

static int test_hex(void)
{
	size_t n = 0;
	unsigned char *b = hex_decode("c3 01\nFF", &n);
	CHECK(b != NULL && n == 3 && b[0] == 0xC3 && b[1] == 0x01 && b[2] == 0xFF);
	free(b);
	CHECK(hex_decode("c30", &n) == NULL);
	CHECK(hex_decode("zz", &n) == NULL);
	char *s = hex_encode((const unsigned char *)"\xc3\x01", 2);
	CHECK(s != NULL);
	int same = strcmp(s, "c301") == 0;
	free(s);
	CHECK(same);
	return 0;
}

static int test_decode_failure_reports_salvage(void)
{
	int ok = 1;
	char err[256];
	codec *c = codec_new(NULL, err, sizeof err);
	CHECK(c != NULL);
	/* Header, then "id" and "v", then nothing. */
	json_t *j = decode_hex(c, "c301a6619eed904f929e04696402 76", 0, &ok);
	codec_destroy(c);
	CHECK(j != NULL);
	int good = !ok && strcmp(get_str(j, "status"), "datum") == 0 &&
	           get_str(json_object_get(j, "salvage"), "requestId") != NULL &&
	           strcmp(get_str(json_object_get(j, "salvage"), "requestId"), "id") == 0 &&
	           strcmp(get_str(json_object_get(j, "salvage"), "requesterIdentity"), "v") == 0;
	json_decref(j);
	CHECK(good);
	return 0;
}

static const check_case cases[] = {
    {"request_json_round_trip", test_request_json_round_trip},
    {"response_json_round_trip", test_response_json_round_trip},
    {"hex", test_hex},
    {"decode_failure_reports_salvage", test_decode_failure_reports_salvage},
};

int main(int argc, char **argv)
{
	if (argc == 1)
		return check_run("codec_vectors", cases, sizeof cases / sizeof cases[0]);
	if (argc == 3 && (strcmp(argv[1], "canonical") == 0 || strcmp(argv[1], "fingerprint") == 0))
		return cmd_schema(argv[1], argv[2]);
	if (argc == 2 &&
	    (strcmp(argv[1], "encode-request") == 0 || strcmp(argv[1], "decode-request") == 0 ||
	     strcmp(argv[1], "encode-response") == 0 || strcmp(argv[1], "decode-response") == 0))
		return cmd_value(argv[1]);
	fprintf(stderr,
	        "usage: %s [canonical FILE | fingerprint FILE | encode-request | "
	        "decode-request | encode-response | decode-response]\n",
	        argv[0]);
	return EXIT_USAGE;
}
