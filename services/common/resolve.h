/*
 * resolve: Avro schema resolution, by the specification's rules, for data
 * whose writer schema differs from the reader's.
 *
 * A datum written with the writer schema is read and checked byte by byte,
 * and rewritten as the binary encoding of the same value under the reader
 * schema: record fields matched by name (or a reader field's aliases),
 * fields the reader lacks skipped, fields the writer lacks given the
 * reader's default, the promotions int to long, float or double, long to
 * float or double, float to double, string to bytes and bytes to string,
 * enum symbols matched by name (the reader enum's default for a symbol it
 * lacks), a writer union resolved by its branch at hand, a reader union by
 * the first branch that matches the writer's type. The rewritten datum is
 * then read by the usual decoder of the reader schema, which checks it once
 * more.
 *
 * avro-c 1.11 cannot do this: its resolver refuses a reader field that the
 * writer lacks, the commonest schema change.
 *
 * Everything here treats its input as hostile: a schema from a registry
 * (bounded size, nesting and node count, names checked) as much as a datum
 * (lengths within the value, varints bounded, UTF-8 checked, block counts
 * bounded by the bytes left, nesting bounded, the output bounded).
 */
#ifndef KMS_RESOLVE_H
#define KMS_RESOLVE_H

#include <stddef.h>

#include "codec.h"

#if defined(__GNUC__)
#define RESOLVE_MUST_CHECK __attribute__((warn_unused_result))
#else
#define RESOLVE_MUST_CHECK
#endif

/* Limits on a schema given as JSON. */
#define RESOLVE_MAX_SCHEMA_BYTES (256 * 1024)
#define RESOLVE_MAX_NODES        4096
#define RESOLVE_MAX_DEPTH        64

typedef struct resolve_schema resolve_schema;

/* Parse and check a schema given as JSON text (len bytes, not necessarily
 * NUL-terminated). Caller frees with resolve_schema_destroy(). NULL with
 * errstr filled when the text is not a valid Avro schema or is over a
 * limit, or when out of memory (then *nomem is set, when nomem is not
 * NULL: no verdict on the schema). */
resolve_schema *resolve_schema_parse(const char *json, size_t len, int *nomem, char *errstr,
                                     size_t errstr_size) RESOLVE_MUST_CHECK;
void resolve_schema_destroy(resolve_schema *s); /* NULL is a no-op */

/* The full name of the schema's top-level record; NULL when the schema is
 * not a record. Borrowed; valid while s lives. */
const char *resolve_schema_record_name(const resolve_schema *s);

/* 1 when the schema is a record whose first two fields are named first and
 * second and are strings, else 0. */
int resolve_schema_leading_strings(const resolve_schema *s, const char *first, const char *second);

typedef struct resolve_plan resolve_plan;

/* How to read data of writer as reader. Both are borrowed and must outlive
 * the plan. NULL with errstr filled when the schemas cannot be resolved (a
 * reader field without default that the writer lacks, types that do not
 * match, a default that does not fit its type) or when out of memory
 * (*nomem set, when nomem is not NULL). Caller frees with
 * resolve_plan_destroy(). */
resolve_plan *resolve_plan_new(const resolve_schema *writer, const resolve_schema *reader,
                               int *nomem, char *errstr, size_t errstr_size) RESOLVE_MUST_CHECK;
void resolve_plan_destroy(resolve_plan *p); /* NULL is a no-op */

typedef struct {
	size_t max_string_bytes; /* per string, bytes or fixed read */
	size_t max_out_bytes;    /* the rewritten datum */
	size_t max_items;        /* items of one array or map without a size */
} resolve_limits;

/* Rewrite a datum of the plan's writer schema as one of its reader schema.
 * On CODEC_OK *out is malloc'd (caller frees) and *out_len set. Otherwise
 * *out is NULL and errstr names the field and byte offset (counted from
 * base_offset, the bytes before the datum in its value): CODEC_ERR_DATUM
 * (the datum breaks its schema, trailing bytes too), CODEC_ERR_LIMIT,
 * CODEC_ERR_RESOLVE (an enum symbol or a union branch of the writer that the
 * reader cannot take), CODEC_ERR_NOMEM (no verdict on the datum). */
codec_status resolve_datum(const resolve_plan *p, const resolve_limits *lim, const void *datum,
                           size_t len, size_t base_offset, unsigned char **out, size_t *out_len,
                           char *errstr, size_t errstr_size) RESOLVE_MUST_CHECK;

#endif
