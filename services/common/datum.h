/*
 * datum: a bounded reader of Avro binary data, for the two places that read
 * a hostile datum byte by byte: the codec's walker, which checks a datum
 * before avro-c sees it, and the resolve module's runner, which rewrites a
 * datum of another schema version. Both read varints, lengths, enum
 * indexes, union branches and block headers through here, so each is
 * bounded the same way and refused with the same sentence; what differs
 * between the two (the limits, whether a string may hold NUL) is given by
 * the caller.
 *
 * A read that fails fills errstr once ("field F, byte N: why", N counted
 * from the start of the value), sets the cursor's status and returns -1.
 */
#ifndef KMS_DATUM_H
#define KMS_DATUM_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#if defined(__GNUC__)
#define DATUM_MUST_CHECK __attribute__((warn_unused_result))
#else
#define DATUM_MUST_CHECK
#endif

/* Where a reader stands in a datum. The caller fills p, len, base, errstr
 * and errstr_size and zeroes the rest; the datum and errstr are borrowed. */
typedef struct {
	const unsigned char *p; /* the datum */
	size_t len;
	size_t pos;
	size_t mark;         /* where the item being read began, for messages */
	size_t base;         /* bytes before the datum in its value, for messages */
	codec_status status; /* why reading stopped */
	char *errstr;        /* may be NULL: no message */
	size_t errstr_size;
} datum_cursor;

/* Refuse at c->mark: sets c->status to st, fills errstr, returns -1. */
int datum_fail(datum_cursor *c, codec_status st, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Begin a value at depth levels of nesting: c->mark is where it begins;
 * deeper than max_depth is CODEC_ERR_LIMIT. */
int datum_enter(datum_cursor *c, const char *field, int depth, int max_depth) DATUM_MUST_CHECK;

/* A zigzag varint: a long of at most 10 bytes, an int of at most 5 whose
 * value fits in 32 bits. */
int datum_read_long(datum_cursor *c, const char *field, int64_t *out) DATUM_MUST_CHECK;
int datum_read_int(datum_cursor *c, const char *field, int64_t *out) DATUM_MUST_CHECK;

/* n bytes as they are (a float, a double, a fixed); *s points into the
 * datum. */
int datum_read_fixed(datum_cursor *c, const char *field, size_t n,
                     const unsigned char **s) DATUM_MUST_CHECK;

typedef enum {
	DATUM_BYTES = 0,  /* any bytes */
	DATUM_UTF8,       /* a string: strict UTF-8, NUL allowed as Avro does */
	DATUM_UTF8_NO_NUL /* a string that will become a C string */
} datum_text;

/* A length-prefixed bytes or string of at most max_bytes bytes (over it:
 * CODEC_ERR_LIMIT). *s and *n say where it lies in the datum; either may be
 * NULL. */
int datum_read_bytes(datum_cursor *c, const char *field, datum_text text, size_t max_bytes,
                     const unsigned char **s, size_t *n) DATUM_MUST_CHECK;

/* An enum index below nsym; a union branch index below nbranch. */
int datum_read_enum(datum_cursor *c, const char *field, size_t nsym, int64_t *v) DATUM_MUST_CHECK;
int datum_read_branch(datum_cursor *c, const char *field, size_t nbranch,
                      int64_t *v) DATUM_MUST_CHECK;

/* One block of an array or a map: a count, and when the count is negative
 * its absolute value and the block's byte size, which must lie within the
 * bytes left. */
typedef struct {
	int64_t count; /* items in the block; 0 ends the array or map */
	int64_t bytes; /* the block's byte size, or -1 when it gave none */
	size_t mark;   /* where the block's header began */
	size_t start;  /* where its items begin */
} datum_block;

/* Read a block's header; c->mark is left at the block's start. */
int datum_block_begin(datum_cursor *c, const char *field, datum_block *b) DATUM_MUST_CHECK;
/* After the block's items: a byte size it announced must be what they
 * took. */
int datum_block_end(datum_cursor *c, const char *field, const datum_block *b) DATUM_MUST_CHECK;

#endif
