/*
 * codec_int: what the codec's files share and nothing else includes: the
 * codec's and a writer's insides, and the calls one file of the module
 * makes into another. Not a public interface; codec.h is.
 *
 * The files of the module, by job:
 *   codec.c         symbol names, limits, loading the schemas into a codec
 *   codec_pcf.c     Parsing Canonical Form, CRC-64-AVRO, Avro names
 *   codec_walk.c    the walker: a datum checked against its writer schema
 *   codec_frame.c   the single-object and Confluent headers
 *   codec_copy.c    avro-c's values copied out into codec.h's structs
 *   codec_decode.c  decoding requests and responses, the salvage
 *   codec_encode.c  encoding requests and responses
 *   codec_writer.c  writer schemas learnt from a registry
 */
#ifndef KMS_CODEC_INT_H
#define KMS_CODEC_INT_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "resolve.h"

#define CODEC_HEADER_LEN 10 /* C3 01 and the 8-byte fingerprint */
#define CODEC_MAX_DEPTH  64 /* nesting of schemas and of data; ours nest 5 deep */

#define CODEC_REQUEST_RECORD  "ValServerProvisioningRequest"
#define CODEC_RESPONSE_RECORD "ValServerProvisioningResponse"
#define CODEC_SERVICES_FIELD  "valServices"

typedef enum { CODEC_KIND_OTHER = 0, CODEC_KIND_REQUEST, CODEC_KIND_RESPONSE } codec_kind;

/* One schema file compiled in, known by its fingerprint. */
typedef struct {
	uint64_t fingerprint;
	codec_kind kind;
	const char *file;     /* borrowed from embedded_schemas */
	const char *json;     /* its text, borrowed likewise */
	avro_schema_t schema; /* the writer schema */
	resolve_schema *rs;   /* the same, for the resolve module */
	/* avro-c's generic class of the current version, which every datum
	 * is read with (avro-c 1.11's own resolved writer double-frees when
	 * the writer lacks a reader field that has a default). NULL for the
	 * other versions and kinds. */
	avro_value_iface_t *cls;
	/* Other versions of a kind: how their data read as the current one. */
	resolve_plan *plan;
} codec_schema;

struct codec_writer {
	codec_status status; /* CODEC_OK, CODEC_ERR_WRONG_SCHEMA or _RESOLVE */
	char message[200];   /* why, when not CODEC_OK */
	codec_kind kind;
	bool leading_ok; /* begins with requestId and requesterIdentity, strings */
	resolve_schema *rs;
	resolve_plan *plan;
};

struct codec {
	codec_limits limits;
	codec_schema *schemas;
	size_t schema_count;
	const codec_schema *request;  /* the current versions: what we write and */
	const codec_schema *response; /* what every version is read into */
	embedded_file *owned;         /* files read from a folder, kept */
	size_t nowned;
};

/* avro-c's named types may be links: the schema they stand for. */
static inline avro_schema_t codec_deref(avro_schema_t s)
{
	while (s != NULL && avro_typeof(s) == AVRO_LINK)
		s = avro_schema_link_target(s);
	return s;
}

/* codec.c: the known schema of fingerprint fp, or NULL. Borrowed from c. */
const codec_schema *codec_find_schema(const codec *c, uint64_t fp);

/* codec_walk.c: walk a whole datum of schema s, checked by the limits, no
 * trailing bytes. CODEC_OK, or a status with errstr naming the field and the
 * byte offset (base: the bytes before the datum in its value). */
codec_status codec_walk_datum(const codec_limits *lim, avro_schema_t s, const unsigned char *datum,
                              size_t len, size_t base, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* codec_frame.c: check a single-object header. CODEC_OK with *ks (borrowed
 * from c), CODEC_ERR_FINGERPRINT (header well-formed, schema unknown; *fp
 * set) or CODEC_ERR_MAGIC. */
codec_status codec_header_check(const codec *c, const unsigned char *v, size_t len,
                                const codec_schema **ks, uint64_t *fp);
/* Fill errstr for a value refused before its datum (CODEC_ERR_EMPTY,
 * _TOO_LARGE, _MAGIC, _FINGERPRINT); returns st. */
codec_status codec_header_error(const codec *c, codec_status st, const unsigned char *v, size_t len,
                                uint64_t fp, char *errstr, size_t errstr_size);
/* The checks every Confluent value passes before its writer matters:
 * CODEC_OK, or a status with errstr filled (*salvage_ok: whether the
 * leading fields may still be read). */
codec_status codec_confluent_check(const codec *c, const codec_writer *w, const void *value,
                                   size_t len, codec_kind want, bool *salvage_ok, char *errstr,
                                   size_t errstr_size);
/* Write the header of a datum of ks framed as f says (NULL: single-object)
 * into hdr (CODEC_HEADER_LEN bytes, the longer header); returns its length. */
size_t codec_header_write(const codec_schema *ks, const codec_frame *f, unsigned char *hdr);

/* codec_copy.c: let avro-c build a value of ks (a current schema) from a
 * datum the walker accepted, and copy it out. CODEC_OK and *out (caller
 * frees with codec_request_free() / codec_response_owned_free()), or
 * CODEC_ERR_NOMEM, or CODEC_ERR_DATUM (avro-c refused, or a symbol the
 * current schema lacks) with errstr filled. */
codec_status codec_copy_request(const codec_schema *ks, const unsigned char *datum, size_t len,
                                codec_request **out, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
codec_status codec_copy_response(const codec_schema *ks, const unsigned char *datum, size_t len,
                                 codec_response_owned **out, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
