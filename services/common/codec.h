/*
 * codec: the wire format of the provisioning topics.
 *
 * Values are Avro single-object encoded (C3 01, the 8-byte little-endian
 * CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then
 * the Avro binary datum). The schemas are those kept in schemas/, compiled into
 * the binary; every version there is known by its fingerprint. The file named
 * after its record (ValServerProvisioningRequest.avsc,
 * ValServerProvisioningResponse.avsc) is the current version: what is written,
 * and what every other version of the same record (another .avsc file holding
 * that record) is read into, by Avro schema resolution (the specification's
 * rules: fields and enum symbols matched by name, a field the writer lacks
 * takes the current schema's default, a field the current one lacks is
 * skipped, promotions apply).
 *
 * The Confluent wire format (00, a 4-byte big-endian schema id, the datum) is
 * read too: the writer schema, fetched from a registry by its id, is given as
 * a codec_writer, and read into the current version by the same rules.
 * Every version other than the current one is read through resolve.h: the
 * datum is rewritten into the current schema's encoding, which the decoder
 * of the current schema then reads.
 *
 * Decoding treats every byte as hostile: the datum is walked against the
 * writer schema and checked (lengths within the value, UTF-8, union and enum
 * indexes, no trailing bytes, configured limits) before avro-c builds a value
 * from it.
 *
 * Encoding and decoding do not change a codec.
 */
#ifndef KMS_CODEC_H
#define KMS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "embedded.h"

#if defined(__GNUC__)
#define CODEC_MUST_CHECK __attribute__((warn_unused_result))
#else
#define CODEC_MUST_CHECK
#endif

/* KeyFormatType, in the order of the schema's symbols. */
typedef enum {
	CODEC_KF_RAW = 0,
	CODEC_KF_OPAQUE,
	CODEC_KF_PKCS1,
	CODEC_KF_PKCS8,
	CODEC_KF_X509,
	CODEC_KF_EC_PRIVATE_KEY,
	CODEC_KF_TRANSPARENT_SYMMETRIC_KEY,
	CODEC_KF_JWK,
	CODEC_KF_MIKEY_SAKKE,
	CODEC_KF__COUNT
} codec_key_format_type;

/* Result, in the order of the schema's symbols. */
typedef enum { CODEC_RESULT_SUCCESS = 0, CODEC_RESULT_FAILURE = 1 } codec_result;

/* FailureCause, in the order of the schema's symbols; CODEC_CAUSE_NONE is the
 * null branch of the union. */
typedef enum {
	CODEC_CAUSE_NONE = -1,
	CODEC_CAUSE_INVALID_REQUEST = 0,
	CODEC_CAUSE_UNAUTHORIZED,
	CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	CODEC_CAUSE_KEY_FORMAT_NOT_ALLOWED,
	CODEC_CAUSE_REQUEST_ID_CONFLICT,
	CODEC_CAUSE_INTERNAL_ERROR,
	CODEC_CAUSE__COUNT
} codec_cause;

/* Symbol names; NULL for an out-of-range value. */
const char *codec_key_format_type_name(codec_key_format_type t);
const char *codec_result_name(codec_result r);
const char *codec_cause_name(codec_cause c); /* "" for CODEC_CAUSE_NONE */
/* Parse a symbol name; returns 0 and sets *out, or -1 if unknown. */
int codec_key_format_type_parse(const char *name, codec_key_format_type *out) CODEC_MUST_CHECK;
int codec_cause_parse(const char *name, codec_cause *out) CODEC_MUST_CHECK;

typedef struct {
	char *key;
	char *value;
} codec_kv;

typedef struct {
	char *val_service_id;
	codec_key_format_type format_type;
	char *format_version; /* NULL for the null branch */
	codec_kv *content;    /* map entries, in wire order */
	size_t content_count;
} codec_val_service;

/* A decoded ValServerProvisioningRequest. Every string is NUL-terminated and
 * owned by the request; strings are valid UTF-8 without NUL bytes, and the keys
 * of a content map are distinct (the decoder refuses the value otherwise). The
 * encoder takes the same struct, with borrowed strings, and refuses what the
 * decoder would refuse. */
typedef struct {
	char *request_id;
	char *requester_identity;
	char *endpoint;
	char *access_token;
	codec_val_service *services;
	size_t service_count;
	int64_t sent_at; /* timestamp-millis */
	char *supp_feat; /* NULL for the null branch */
} codec_request;

/* A ValServerProvisioningResponse to encode. Borrowed strings. */
typedef struct {
	const char *request_id;
	const char *requester_identity;
	codec_result result;
	codec_cause cause;  /* CODEC_CAUSE_NONE on success */
	const char *detail; /* NULL for the null branch */
	const char *kms_id;
	int64_t processed_at; /* timestamp-millis */
} codec_response;

/* A decoded response (used by the VAL-server command and the tests). Owned
 * strings; free with codec_response_owned_free(). */
typedef struct {
	char *request_id;
	char *requester_identity;
	codec_result result;
	codec_cause cause;
	char *detail; /* NULL for the null branch */
	char *kms_id;
	int64_t processed_at;
} codec_response_owned;

/* Limits applied while decoding, before anything is allocated. A zero field
 * given to codec_new() keeps its default. Encoding applies max_string_bytes. */
typedef struct {
	size_t max_value_bytes;  /* default 1 MiB */
	size_t max_services;     /* default 1000; above: CODEC_ERR_LIMIT */
	size_t max_string_bytes; /* default 64 KiB per string */
	size_t max_map_entries;  /* default 256 per content map */
} codec_limits;

void codec_limits_default(codec_limits *l);

/* Why a value could not be decoded. The stage names are used in the DLQ's
 * __connect.errors.stage header. Every status but CODEC_ERR_NOMEM is a verdict
 * on the value; CODEC_ERR_NOMEM is not, and the value must be decoded again
 * later, never sent to the DLQ nor answered. */
typedef enum {
	CODEC_OK = 0,
	CODEC_ERR_EMPTY,        /* zero-length value */
	CODEC_ERR_TOO_LARGE,    /* over max_value_bytes */
	CODEC_ERR_MAGIC,        /* not C3 01, or shorter than the 10-byte header */
	CODEC_ERR_FINGERPRINT,  /* unknown schema fingerprint */
	CODEC_ERR_DATUM,        /* datum breaks the schema (truncated, trailing bytes,
	                           bad length or varint, bad UTF-8, NUL in a string,
	                           bad union or enum index, a map key twice, a block
	                           byte size that lies) */
	CODEC_ERR_LIMIT,        /* a configured limit other than the value size */
	CODEC_ERR_WRONG_SCHEMA, /* a known schema, but not a request; or a
	                           registry's schema that is not a record of
	                           either kind */
	CODEC_ERR_NOMEM,        /* out of memory while decoding: the value may be
	                           good */
	CODEC_ERR_SCHEMA_ID,    /* Confluent framing: the registry has no schema
	                           of that id */
	CODEC_ERR_RESOLVE,      /* the writer's schema cannot be read as the
	                           current one (a field without default missing,
	                           types that do not match, a symbol or union
	                           branch the current schema lacks) */
	CODEC_ERR_UNAVAILABLE   /* the writer's schema could not be fetched (the
	                           registry is away): no verdict, decode again
	                           later, as for CODEC_ERR_NOMEM */
} codec_status;

const char *codec_status_name(codec_status s);

/* What could still be read of an undecodable request: its first two fields,
 * each when it is a well-formed string (valid UTF-8, no NUL, within
 * max_string_bytes), read by position since every request version begins
 * with them. Tried when the header is readable and names a request schema or
 * an unknown one (so also for CODEC_ERR_TOO_LARGE and CODEC_ERR_FINGERPRINT);
 * never for a value of another known schema (CODEC_ERR_WRONG_SCHEMA) or
 * without the header. Owned; free with codec_salvage_free(). */
typedef struct {
	char *request_id;         /* NULL if not readable */
	char *requester_identity; /* NULL if not readable */
} codec_salvage;

typedef struct codec codec;

/* The two framings of a value, told apart by its first byte. */
typedef enum {
	CODEC_FRAMING_SINGLE_OBJECT = 0, /* C3 01, the 8-byte fingerprint, the datum */
	CODEC_FRAMING_CONFLUENT          /* 00, the 4-byte big-endian schema id of a
	                                    registry, the datum */
} codec_framing;

#define CODEC_CONFLUENT_HEADER_LEN 5

/* CODEC_FRAMING_CONFLUENT when the value begins with 00, else
 * CODEC_FRAMING_SINGLE_OBJECT (whose decoder refuses what is neither). */
codec_framing codec_framing_of(const void *value, size_t len);

/* The schema id of a Confluent-framed value: 0 and *id, or -1 when the value
 * does not begin with 00 or ends inside the 5-byte header. */
int codec_confluent_id(const void *value, size_t len, uint32_t *id) CODEC_MUST_CHECK;

/* How an encoded value is framed: schema_id is the registry's id of the
 * current schema, used with CODEC_FRAMING_CONFLUENT only. */
typedef struct {
	codec_framing framing;
	uint32_t schema_id;
} codec_frame;

/* Load every schema compiled in from schemas/ (limits NULL: the defaults).
 * Fails when a current schema is missing, lacks the fields and symbols this
 * module knows, or an older version cannot be resolved to it. Caller frees
 * with codec_destroy(). NULL on failure with errstr filled. */
codec *codec_new(const codec_limits *limits, char *errstr, size_t errstr_size) CODEC_MUST_CHECK;
/* The same from the given schema files (base name and JSON text, as in
 * embedded.h) instead of the compiled-in ones: for tests of schema versions.
 * Files whose name does not end in .avsc are skipped. The files are borrowed
 * and must outlive the codec. */
codec *codec_new_from_files(const embedded_file *files, size_t count, const codec_limits *limits,
                            char *errstr, size_t errstr_size) CODEC_MUST_CHECK;
/* codec_new() plus every .avsc file of the folder dir (more versions of the
 * request and response schemas, known by fingerprint; a file of the same
 * name as a compiled-in one is refused). dir NULL or "" is codec_new(). The
 * codec keeps the files' texts. */
codec *codec_new_with_dir(const codec_limits *limits, const char *dir, char *errstr,
                          size_t errstr_size) CODEC_MUST_CHECK;
void codec_destroy(codec *c); /* NULL is a no-op */

/* The JSON text of the current request and response schemas (what a
 * registry is given). Borrowed; valid while c lives. */
const char *codec_request_schema_json(const codec *c);
const char *codec_response_schema_json(const codec *c);

/* A writer schema learnt from elsewhere (a schema registry's answer), and
 * how it reads as the current schema of the record it holds. */
typedef struct codec_writer codec_writer;

/* Make a writer from schema JSON text. Returns CODEC_OK and *out, or
 * CODEC_ERR_NOMEM (nothing is known; try again later). Every other outcome
 * is a writer too, one that refuses every value with its status and
 * message: CODEC_ERR_WRONG_SCHEMA (not JSON, not an Avro schema, not a
 * record, or a record of neither kind), CODEC_ERR_RESOLVE (cannot be read as
 * the current schema). Caller frees with codec_writer_destroy(). */
codec_status codec_writer_new(const codec *c, const char *json, size_t len, codec_writer **out,
                              char *errstr, size_t errstr_size) CODEC_MUST_CHECK;
void codec_writer_destroy(codec_writer *w); /* NULL is a no-op */
/* CODEC_OK for a usable writer, else the status every value gets. */
codec_status codec_writer_status(const codec_writer *w);

/* Fingerprint (CRC-64-AVRO of the Parsing Canonical Form) of the current
 * request and response schemas. */
uint64_t codec_request_fingerprint(const codec *c);
uint64_t codec_response_fingerprint(const codec *c);

/* Parsing Canonical Form of a schema given as JSON text. Returns a malloc'd
 * string the caller frees, or NULL with errstr filled. */
char *codec_canonical_form(const char *schema_json, char *errstr,
                           size_t errstr_size) CODEC_MUST_CHECK;

/* Avro names (the specification's rules, shared by the schema readers): a
 * simple name [A-Za-z_][A-Za-z0-9_]* of n bytes; a dotted name, simple names
 * joined by dots ("" only when allow_empty). */
bool codec_name_part_ok(const char *s, size_t n);
bool codec_dotted_name_ok(const char *s, bool allow_empty);
/* The full name name stands for in namespace ns (NULL or "": the null
 * namespace): a dotted name is full already. Returns a malloc'd string the
 * caller frees, or NULL when out of memory. */
char *codec_full_name(const char *name, const char *ns) CODEC_MUST_CHECK;
/* CRC-64-AVRO (Rabin) fingerprint of bytes. */
uint64_t codec_crc64_avro(const void *data, size_t len);

/* Decode a request value. On CODEC_OK *out is a new request the caller frees
 * with codec_request_free(). On any other status *out is NULL, errstr says
 * what is wrong (one sentence naming the field and byte offset, no payload
 * bytes). When salvage is not NULL it is always reset first, and on failure
 * filled with what could still be read; call codec_salvage_free() either way.
 * On CODEC_ERR_NOMEM (an allocation failed anywhere: our copies, avro-c, or
 * the salvage itself) the salvage stays empty and nothing is known of the
 * value: decode it again later. */
codec_status codec_decode_request(const codec *c, const void *value, size_t len,
                                  codec_request **out, codec_salvage *salvage, char *errstr,
                                  size_t errstr_size) CODEC_MUST_CHECK;
void codec_request_free(codec_request *r); /* NULL is a no-op */

/* Decode a Confluent-framed request whose schema id named the writer w
 * (NULL when the registry has no schema of that id: CODEC_ERR_SCHEMA_ID).
 * As codec_decode_request() otherwise; the salvage is read by position when
 * the writer is unknown, or is a request schema that begins with
 * requestId and requesterIdentity. */
codec_status codec_decode_request_confluent(const codec *c, const codec_writer *w,
                                            const void *value, size_t len, codec_request **out,
                                            codec_salvage *salvage, char *errstr,
                                            size_t errstr_size) CODEC_MUST_CHECK;
void codec_salvage_free(codec_salvage *s); /* frees the members; NULL ok */

/* Encode a request (valctl and tests). Returns 0 and a malloc'd buffer in
 * *out / *out_len, or -1 with errstr filled. */
int codec_encode_request(const codec *c, const codec_request *r, unsigned char **out,
                         size_t *out_len, char *errstr, size_t errstr_size) CODEC_MUST_CHECK;

/* Encode a response. Deterministic: the same fields give the same bytes.
 * Returns 0 and a malloc'd buffer, or -1 with errstr filled. */
int codec_encode_response(const codec *c, const codec_response *r, unsigned char **out,
                          size_t *out_len, char *errstr, size_t errstr_size) CODEC_MUST_CHECK;

/* Decode a response value. Returns CODEC_OK and *out (free with
 * codec_response_owned_free()), or another status with errstr filled
 * (CODEC_ERR_NOMEM when an allocation failed). */
codec_status codec_decode_response(const codec *c, const void *value, size_t len,
                                   codec_response_owned **out, char *errstr,
                                   size_t errstr_size) CODEC_MUST_CHECK;
void codec_response_owned_free(codec_response_owned *r); /* NULL ok */

/* Decode a Confluent-framed response whose schema id named w (NULL:
 * CODEC_ERR_SCHEMA_ID). */
codec_status codec_decode_response_confluent(const codec *c, const codec_writer *w,
                                             const void *value, size_t len,
                                             codec_response_owned **out, char *errstr,
                                             size_t errstr_size) CODEC_MUST_CHECK;

/* codec_encode_request() and codec_encode_response() in the given framing
 * (NULL: single-object). */
int codec_encode_request_as(const codec *c, const codec_frame *f, const codec_request *r,
                            unsigned char **out, size_t *out_len, char *errstr,
                            size_t errstr_size) CODEC_MUST_CHECK;
int codec_encode_response_as(const codec *c, const codec_frame *f, const codec_response *r,
                             unsigned char **out, size_t *out_len, char *errstr,
                             size_t errstr_size) CODEC_MUST_CHECK;

#endif
