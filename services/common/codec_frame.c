/*
 * codec_frame: the two framings of a value, told apart by the first byte.
 * Single-object (C3 01, then the writer schema's fingerprint, 8 bytes little
 * endian) names a schema compiled in or read from a folder; Confluent (00,
 * then a registry's schema id, 4 bytes big endian) names a registry's
 * schema, fetched by the caller and given as a codec_writer. Here the
 * headers are read and checked, the refusals that come before the datum are
 * worded, and the headers of encoded values are written.
 */
#include "codec.h"

#include <stdbool.h>
#include <stdint.h>

#include "codec_int.h"
#include "errstr.h"

/* ---- Single-object ---- */

codec_status codec_header_check(const codec *c, const unsigned char *v, size_t len,
                                const codec_schema **ks, uint64_t *fp_out)
{
	uint64_t fp = 0;

	*ks = NULL;
	if (len < 2 || v[0] != 0xC3 || v[1] != 0x01 || len < CODEC_HEADER_LEN)
		return CODEC_ERR_MAGIC;
	for (int i = 0; i < 8; i++)
		fp |= (uint64_t)v[2 + i] << (8 * i);
	*fp_out = fp;
	*ks = codec_find_schema(c, fp);
	return *ks ? CODEC_OK : CODEC_ERR_FINGERPRINT;
}

codec_status codec_header_error(const codec *c, codec_status st, const unsigned char *v, size_t len,
                                uint64_t fp, char *errstr, size_t errstr_size)
{
	switch (st) {
	case CODEC_ERR_EMPTY:
		errstr_set(errstr, errstr_size, "the value is empty");
		break;
	case CODEC_ERR_TOO_LARGE:
		errstr_set(errstr, errstr_size, "the value has %zu bytes, over the limit of %zu",
		           len, c->limits.max_value_bytes);
		break;
	case CODEC_ERR_MAGIC:
		if (len >= 2 && v[0] == 0xC3 && v[1] == 0x01)
			errstr_set(
			    errstr, errstr_size,
			    "the value ends inside the single-object header (%zu of %d bytes)", len,
			    CODEC_HEADER_LEN);
		else if (v != NULL && len >= 1 && v[0] == 0x00)
			errstr_set(
			    errstr, errstr_size,
			    "the value is in the Confluent wire format, which needs a schema "
			    "registry (registry_url)");
		else
			errstr_set(errstr, errstr_size,
			           "the value is not Avro single-object encoded (no C3 01 marker)");
		break;
	case CODEC_ERR_FINGERPRINT:
		errstr_set(errstr, errstr_size, "unknown schema fingerprint %016llx",
		           (unsigned long long)fp);
		break;
	default:
		break;
	}
	return st;
}

/* ---- Confluent ---- */

codec_framing codec_framing_of(const void *value, size_t len)
{
	const unsigned char *v = value;
	return v != NULL && len >= 1 && v[0] == 0x00 ? CODEC_FRAMING_CONFLUENT
	                                             : CODEC_FRAMING_SINGLE_OBJECT;
}

int codec_confluent_id(const void *value, size_t len, uint32_t *id)
{
	const unsigned char *v = value;
	if (v == NULL || len < CODEC_CONFLUENT_HEADER_LEN || v[0] != 0x00)
		return -1;
	*id = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | (uint32_t)v[4];
	return 0;
}

codec_status codec_confluent_check(const codec *c, const codec_writer *w, const void *value,
                                   size_t len, codec_kind want, bool *salvage_ok, char *errstr,
                                   size_t errstr_size)
{
	uint32_t id = 0;

	*salvage_ok = false;
	if (value == NULL || len == 0) {
		errstr_set(errstr, errstr_size, "the value is empty");
		return CODEC_ERR_EMPTY;
	}
	if (codec_confluent_id(value, len, &id) != 0) {
		errstr_set(errstr, errstr_size,
		           "the value ends inside the Confluent header (%zu of %d bytes)", len,
		           CODEC_CONFLUENT_HEADER_LEN);
		return CODEC_ERR_MAGIC;
	}
	/* Unknown writer: read by position, as for an unknown fingerprint. */
	*salvage_ok = w == NULL || (w->kind == CODEC_KIND_REQUEST && w->leading_ok);
	if (len > c->limits.max_value_bytes) {
		errstr_set(errstr, errstr_size, "the value has %zu bytes, over the limit of %zu",
		           len, c->limits.max_value_bytes);
		return CODEC_ERR_TOO_LARGE;
	}
	if (w == NULL) {
		errstr_set(errstr, errstr_size, "the registry has no schema of id %lu",
		           (unsigned long)id);
		return CODEC_ERR_SCHEMA_ID;
	}
	if (w->status != CODEC_OK) {
		errstr_set(errstr, errstr_size, "schema id %lu: %s", (unsigned long)id, w->message);
		return w->status;
	}
	if (w->kind != want) {
		errstr_set(errstr, errstr_size, "schema id %lu is not a %s", (unsigned long)id,
		           want == CODEC_KIND_REQUEST ? CODEC_REQUEST_RECORD
		                                      : CODEC_RESPONSE_RECORD);
		return CODEC_ERR_WRONG_SCHEMA;
	}
	return CODEC_OK;
}

/* ---- Writing a header ---- */

size_t codec_header_write(const codec_schema *ks, const codec_frame *f, unsigned char *hdr)
{
	if (f != NULL && f->framing == CODEC_FRAMING_CONFLUENT) {
		hdr[0] = 0x00;
		for (int i = 0; i < 4; i++)
			hdr[1 + i] = (unsigned char)(f->schema_id >> (8 * (3 - i)));
		return CODEC_CONFLUENT_HEADER_LEN;
	}
	hdr[0] = 0xC3;
	hdr[1] = 0x01;
	for (int i = 0; i < 8; i++)
		hdr[2 + i] = (unsigned char)(ks->fingerprint >> (8 * i));
	return CODEC_HEADER_LEN;
}
