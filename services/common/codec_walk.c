/*
 * codec_walk: the security boundary of the decoder. avro-c trusts its input
 * (a length prefix is believed and allocated, a union or enum index used as
 * given, a string may hold any bytes), so every datum is first walked here
 * against its writer schema, byte by byte, and refused when it is malformed
 * (truncated, trailing bytes, a bad varint, length, UTF-8, NUL, union or
 * enum index, a block byte size that lies), over a configured limit, or
 * ambiguous (a map key twice). Only a datum this walk accepted is handed to
 * avro-c. The reads themselves go through datum.h, shared with the resolve
 * module's runner.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "datum.h"
#include "errstr.h"

typedef struct {
	datum_cursor in;
	const codec_limits *lim;
} walker;

typedef struct {
	const unsigned char *p;
	size_t n;
} span;

static int span_cmp(const void *a, const void *b)
{
	const span *x = a, *y = b;
	int c = memcmp(x->p, y->p, x->n < y->n ? x->n : y->n);
	if (c != 0)
		return c;
	return (x->n > y->n) - (x->n < y->n);
}

/* The fewest bytes a value of the schema takes: 0 for null, empty records
 * and the like, which makes a block count unbounded by the bytes left. */
static size_t min_size(avro_schema_t s, int depth)
{
	if (depth > CODEC_MAX_DEPTH)
		return 0;
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		return 0;
	case AVRO_FLOAT:
		return 4;
	case AVRO_DOUBLE:
		return 8;
	case AVRO_FIXED:
		return (size_t)avro_schema_fixed_size(s);
	case AVRO_RECORD: {
		size_t sum = 0;
		for (size_t i = 0; i < avro_schema_record_size(s); i++)
			sum +=
			    min_size(avro_schema_record_field_get_by_index(s, (int)i), depth + 1);
		return sum;
	}
	case AVRO_LINK:
		return min_size(avro_schema_link_target(s), depth + 1);
	default:
		return 1; /* every varint-prefixed form */
	}
}

static int walk_value(walker *w, avro_schema_t s, const char *field, int depth);

/* Arrays and maps: blocks of items, each block a count, and when the count is
 * negative its absolute value and the block's byte size; a zero count ends. */
static int walk_blocks(walker *w, avro_schema_t s, const char *field, int depth)
{
	datum_cursor *in = &w->in;
	bool is_map = avro_typeof(s) == AVRO_MAP;
	avro_schema_t item = is_map ? avro_schema_map_values(s) : avro_schema_array_items(s);
	size_t limit = SIZE_MAX;
	const char *limit_name = NULL;
	size_t item_min = (is_map ? 1 : 0) + min_size(item, depth + 1);
	size_t total = 0, map_mark = in->pos;
	span *keys = NULL;
	int rc = -1;

	if (is_map) {
		limit = w->lim->max_map_entries;
		limit_name = "max_map_entries";
	} else if (field != NULL && strcmp(field, CODEC_SERVICES_FIELD) == 0) {
		limit = w->lim->max_services;
		limit_name = "max_services";
	}
	for (;;) {
		datum_block b;

		if (datum_block_begin(in, field, &b) != 0)
			goto fail;
		if (b.count == 0)
			break;
		if ((uint64_t)b.count > limit - total) {
			datum_fail(in, CODEC_ERR_LIMIT, field, "more than %s (%zu) items",
			           limit_name, limit);
			goto fail;
		}
		/* Refused before looping: a count that the bytes left cannot
		 * hold, or, for items that may take no bytes at all, a count
		 * over the value size (a billion nulls fit in one byte). */
		uint64_t room =
		    item_min > 0 ? (in->len - in->pos) / item_min : w->lim->max_value_bytes;
		if ((uint64_t)b.count > room) {
			datum_fail(in, CODEC_ERR_DATUM, field,
			           "a block of %lld items cannot fit in the %zu bytes left",
			           (long long)b.count, in->len - in->pos);
			goto fail;
		}
		if (is_map) {
			span *nk = realloc(keys, (total + (size_t)b.count) * sizeof *nk);
			if (nk == NULL) {
				datum_fail(in, CODEC_ERR_NOMEM, field, "out of memory");
				goto fail;
			}
			keys = nk;
		}
		for (int64_t i = 0; i < b.count; i++) {
			if (is_map) {
				span *k = &keys[total + (size_t)i];
				if (datum_read_bytes(in, field, DATUM_UTF8_NO_NUL,
				                     w->lim->max_string_bytes, &k->p, &k->n) != 0)
					goto fail;
			}
			if (walk_value(w, item, field, depth + 1) != 0)
				goto fail;
		}
		if (datum_block_end(in, field, &b) != 0)
			goto fail;
		total += (size_t)b.count;
	}
	in->mark = map_mark;
	if (is_map && total > 1) {
		/* avro-c, like most readers, would keep one of two equal keys
		 * silently; what the sender meant is unknowable, so refuse. */
		qsort(keys, total, sizeof *keys, span_cmp);
		for (size_t i = 1; i < total; i++) {
			if (span_cmp(&keys[i - 1], &keys[i]) == 0) {
				datum_fail(in, CODEC_ERR_DATUM, field, "a map holds a key twice");
				goto fail;
			}
		}
	}
	rc = 0;
fail:
	free(keys);
	return rc;
}

static int walk_value(walker *w, avro_schema_t s, const char *field, int depth)
{
	datum_cursor *in = &w->in;
	const unsigned char *bytes;
	int64_t v;

	if (datum_enter(in, field, depth, CODEC_MAX_DEPTH) != 0)
		return -1;
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		return 0;
	case AVRO_BOOLEAN:
		if (in->pos >= in->len)
			return datum_fail(in, CODEC_ERR_DATUM, field,
			                  "the value ends inside a boolean");
		if (in->p[in->pos] > 1)
			return datum_fail(in, CODEC_ERR_DATUM, field, "a boolean is not 0 or 1");
		in->pos++;
		return 0;
	case AVRO_INT32:
		return datum_read_int(in, field, &v);
	case AVRO_INT64:
		return datum_read_long(in, field, &v);
	case AVRO_FLOAT:
		return datum_read_fixed(in, field, 4, &bytes);
	case AVRO_DOUBLE:
		return datum_read_fixed(in, field, 8, &bytes);
	case AVRO_FIXED:
		return datum_read_fixed(in, field, (size_t)avro_schema_fixed_size(s), &bytes);
	case AVRO_STRING:
		return datum_read_bytes(in, field, DATUM_UTF8_NO_NUL, w->lim->max_string_bytes,
		                        NULL, NULL);
	case AVRO_BYTES:
		return datum_read_bytes(in, field, DATUM_BYTES, w->lim->max_string_bytes, NULL,
		                        NULL);
	case AVRO_ENUM:
		return datum_read_enum(in, field, (size_t)avro_schema_enum_number_of_symbols(s),
		                       &v);
	case AVRO_UNION:
		if (datum_read_branch(in, field, avro_schema_union_size(s), &v) != 0)
			return -1;
		return walk_value(w, avro_schema_union_branch(s, (int)v), field, depth + 1);
	case AVRO_RECORD:
		for (size_t i = 0; i < avro_schema_record_size(s); i++) {
			if (walk_value(w, avro_schema_record_field_get_by_index(s, (int)i),
			               avro_schema_record_field_name(s, (int)i), depth + 1) != 0)
				return -1;
		}
		return 0;
	case AVRO_ARRAY:
	case AVRO_MAP:
		return walk_blocks(w, s, field, depth);
	case AVRO_LINK:
		return walk_value(w, avro_schema_link_target(s), field, depth + 1);
	}
	return datum_fail(in, CODEC_ERR_DATUM, field, "unsupported schema type");
}

codec_status codec_walk_datum(const codec_limits *lim, avro_schema_t s, const unsigned char *datum,
                              size_t len, size_t base, char *errstr, size_t errstr_size)
{
	walker w = {.in = {.p = datum,
	                   .len = len,
	                   .base = base,
	                   .errstr = errstr,
	                   .errstr_size = errstr_size},
	            .lim = lim};

	if (walk_value(&w, s, NULL, 0) != 0)
		return w.in.status;
	if (w.in.pos != w.in.len) {
		errstr_set(errstr, errstr_size, "%zu trailing bytes after the datum",
		           w.in.len - w.in.pos);
		return CODEC_ERR_DATUM;
	}
	return CODEC_OK;
}
