/*
 * fuzz_decode: libFuzzer target for the request decoder, the one place where
 * bytes from anyone with write access to the requests topic meet our code.
 * Every input must come back with a status, no crash, no leak, and on success
 * a request whose strings hold what the decoder promises. An input that
 * begins with 00 is read as the Confluent wire format, its schema id's last
 * byte choosing the writer: none (an unknown id), the current schema, or an
 * evolved one (a field dropped, one added, fields in another order), so the
 * schema resolution of the resolve module is fuzzed too.
 *
 *   make fuzz FUZZ_SECONDS=60   (scripts/fuzz.sh builds it with the
 *                                project's sources and runs it on
 *                                tests/fuzz/corpus/decode)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Built once: libFuzzer calls the target millions of times in one process.
 * Small limits, so that the fuzzer reaches them without megabyte inputs. */
static codec *shared_codec(void)
{
	static codec *c;
	if (c == NULL) {
		codec_limits l;
		char err[256];
		codec_limits_default(&l);
		l.max_value_bytes = 64 * 1024;
		l.max_services = 16;
		l.max_string_bytes = 4096;
		l.max_map_entries = 8;
		c = codec_new(&l, err, sizeof err);
		if (c == NULL)
			abort();
	}
	return c;
}

/* A request schema of another version: suppFeat dropped, a field added, and
 * sentAt before the services, so that resolution reorders and skips. */
static const char evolved[] =
    "{\"type\":\"record\",\"name\":\"ValServerProvisioningRequest\",\"namespace\":"
    "\"org.threegpp.seal.km.v1\",\"fields\":[{\"name\":\"requestId\",\"type\":\"string\"},"
    "{\"name\":\"requesterIdentity\",\"type\":\"string\"},{\"name\":\"endpoint\",\"type\":"
    "\"string\"},{\"name\":\"credentials\",\"type\":{\"type\":\"record\",\"name\":"
    "\"SecurityCredentials\",\"fields\":[{\"name\":\"accessToken\",\"type\":\"string\"}]}},"
    "{\"name\":\"sentAt\",\"type\":\"int\"},{\"name\":\"extra\",\"type\":[\"null\","
    "{\"type\":\"array\",\"items\":\"bytes\"}]},{\"name\":\"valServices\",\"type\":{\"type\":"
    "\"array\",\"items\":{\"type\":\"record\",\"name\":\"ValServiceInfo\",\"fields\":["
    "{\"name\":\"keyFormat\",\"type\":{\"type\":\"record\",\"name\":\"KeyFormat\","
    "\"fields\":[{\"name\":\"formatType\",\"type\":{\"type\":\"enum\",\"name\":"
    "\"KeyFormatType\",\"symbols\":[\"JWK\",\"RAW\",\"GONE\"]}}]}},{\"name\":"
    "\"valServiceId\",\"type\":\"bytes\"}]}}}]}";

static const codec_writer *writer_for(const codec *c, uint8_t which)
{
	static codec_writer *w[2];
	if (w[0] == NULL) {
		char err[256];
		const char *cur = codec_request_schema_json(c);
		if (codec_writer_new(c, cur, strlen(cur), &w[0], err, sizeof err) != CODEC_OK ||
		    codec_writer_new(c, evolved, sizeof evolved - 1, &w[1], err, sizeof err) !=
		        CODEC_OK ||
		    codec_writer_status(w[0]) != CODEC_OK || codec_writer_status(w[1]) != CODEC_OK)
			abort();
	}
	return which % 3 == 0 ? NULL : w[which % 3 - 1];
}

/* What codec.h promises of a decoded string; a broken promise is a crash
 * the fuzzer reports. */
static void check_string(const char *s)
{
	if (s == NULL)
		abort();
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == 0xC0 || *p == 0xC1 || *p >= 0xF5)
			abort();
	}
}

static int same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int same_request(const codec_request *a, const codec_request *b)
{
	if (!same_str(a->request_id, b->request_id) ||
	    !same_str(a->requester_identity, b->requester_identity) ||
	    !same_str(a->endpoint, b->endpoint) || !same_str(a->access_token, b->access_token) ||
	    !same_str(a->supp_feat, b->supp_feat) || a->sent_at != b->sent_at ||
	    a->service_count != b->service_count)
		return 0;
	for (size_t i = 0; i < a->service_count; i++) {
		const codec_val_service *x = &a->services[i], *y = &b->services[i];
		if (!same_str(x->val_service_id, y->val_service_id) ||
		    x->format_type != y->format_type ||
		    !same_str(x->format_version, y->format_version) ||
		    x->content_count != y->content_count)
			return 0;
		for (size_t k = 0; k < x->content_count; k++) {
			if (!same_str(x->content[k].key, y->content[k].key) ||
			    !same_str(x->content[k].value, y->content[k].value))
				return 0;
		}
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	codec *c = shared_codec();
	codec_request *r = NULL;
	codec_salvage sv;
	char err[256];

	int confluent = size >= 1 && data[0] == 0x00;
	codec_status st =
	    confluent ? codec_decode_request_confluent(c, writer_for(c, size >= 5 ? data[4] : 0),
	                                               data, size, &r, &sv, err, sizeof err)
	              : codec_decode_request(c, data, size, &r, &sv, err, sizeof err);
	if (st == CODEC_OK) {
		if (r == NULL || sv.request_id != NULL || sv.requester_identity != NULL)
			abort();
		check_string(r->request_id);
		check_string(r->requester_identity);
		check_string(r->endpoint);
		check_string(r->access_token);
		if (r->service_count > 16)
			abort();
		for (size_t i = 0; i < r->service_count; i++) {
			const codec_val_service *s = &r->services[i];
			check_string(s->val_service_id);
			if (codec_key_format_type_name(s->format_type) == NULL ||
			    s->content_count > 8)
				abort();
			for (size_t k = 0; k < s->content_count; k++) {
				check_string(s->content[k].key);
				check_string(s->content[k].value);
			}
		}
		/* What decodes must encode again, and decode to the same. */
		unsigned char *out = NULL;
		size_t out_len = 0;
		codec_request *again = NULL;
		if (codec_encode_request(c, r, &out, &out_len, err, sizeof err) != 0 ||
		    codec_decode_request(c, out, out_len, &again, NULL, err, sizeof err) !=
		        CODEC_OK ||
		    !same_request(r, again))
			abort();
		codec_request_free(again);
		free(out);
	} else {
		if (r != NULL || err[0] == '\0' || codec_status_name(st) == NULL)
			abort();
	}
	codec_request_free(r);
	codec_salvage_free(&sv);
	return 0;
}
