/*
 * wire: the framing of what valctl writes and reads. Single-object by
 * default; with --framing confluent, requests carry the registry's id of the
 * request schema, looked up (or registered, as a registry-aware serializer
 * does) under the TopicNameStrategy subject <requests topic>-value. Results
 * are read in whichever framing they come, a Confluent one through the
 * registry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
#include "registry.h"
#include "wire.h"

int valctl_wire_open(valctl_wire *w, const valctl_common *c, const codec *cod, const char *sub)
{
	char errstr[512], subject[300];
	uint32_t id;

	memset(w, 0, sizeof *w);
	w->cod = cod;
	w->frame.framing = c->framing;
	if (c->framing == CODEC_FRAMING_CONFLUENT && c->registry_url == NULL)
		return valctl_usage(sub, "--framing confluent needs --registry URL");
	if (c->registry_url == NULL)
		return 0;
	w->reg = registry_new(c->registry_url, cod, 10000, errstr, sizeof errstr);
	if (w->reg == NULL) {
		valctl_err(sub, "%s", errstr);
		return VALCTL_EXIT_RUNTIME;
	}
	if (c->framing != CODEC_FRAMING_CONFLUENT)
		return 0;
	snprintf(subject, sizeof subject, "%s-value", c->requests_topic);
	registry_status st = registry_schema_id(w->reg, subject, codec_request_schema_json(cod), 1,
	                                        &id, NULL, errstr, sizeof errstr);
	if (st != REGISTRY_OK) {
		valctl_err(sub, "the request schema's id under %s: %s", subject, errstr);
		valctl_wire_close(w);
		return VALCTL_EXIT_RUNTIME;
	}
	w->frame.schema_id = id;
	return 0;
}

void valctl_wire_close(valctl_wire *w)
{
	registry_destroy(w->reg);
	w->reg = NULL;
}

int valctl_wire_encode(valctl_wire *w, const codec_request *r, unsigned char **out, size_t *out_len,
                       char *errstr, size_t errstr_size)
{
	return codec_encode_request_as(w->cod, &w->frame, r, out, out_len, errstr, errstr_size);
}

codec_status valctl_wire_decode_response(valctl_wire *w, const void *value, size_t len,
                                         codec_response_owned **out, char *errstr,
                                         size_t errstr_size)
{
	if (w->reg != NULL && codec_framing_of(value, len) == CODEC_FRAMING_CONFLUENT)
		return registry_decode_response(w->reg, value, len, out, errstr, errstr_size);
	return codec_decode_response(w->cod, value, len, out, errstr, errstr_size);
}

int valctl_wire_reframe(valctl_wire *w, const void *value, size_t len, unsigned char **out,
                        size_t *out_len, char *errstr, size_t errstr_size)
{
	codec_request *r = NULL;
	codec_status st;

	if (w->reg != NULL && codec_framing_of(value, len) == CODEC_FRAMING_CONFLUENT)
		st = registry_decode_request(w->reg, value, len, &r, NULL, errstr, errstr_size);
	else
		st = codec_decode_request(w->cod, value, len, &r, NULL, errstr, errstr_size);
	if (st == CODEC_ERR_NOMEM || st == CODEC_ERR_UNAVAILABLE)
		return -1;
	if (st != CODEC_OK) {
		/* Not a request (or a broken one): replayed byte for byte. */
		*out = malloc(len + 1);
		if (*out == NULL)
			return -1;
		if (len > 0)
			memcpy(*out, value, len);
		*out_len = len;
		return 0;
	}
	int rc = valctl_wire_encode(w, r, out, out_len, errstr, errstr_size);
	codec_request_free(r);
	return rc;
}
