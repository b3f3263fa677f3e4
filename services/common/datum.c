/*
 * datum: the reads of an Avro binary datum that the codec's walker and the
 * resolve module's runner share. Every length and count is checked against
 * the bytes left before it is believed, so a datum can make neither reader
 * allocate, loop or index beyond what its own size allows. See datum.h.
 */
#include "datum.h"

#include <stdarg.h>
#include <stdio.h>

#include "errstr.h"
#include "utf8.h"

int datum_fail(datum_cursor *c, codec_status st, const char *field, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	c->status = st;
	/* Offsets count from the start of the value, header included, which is
	 * what someone holding the DLQ record sees. */
	errstr_set(c->errstr, c->errstr_size, "field %s, byte %zu: %s", field ? field : "(datum)",
	           c->mark + c->base, msg);
	return -1;
}

int datum_enter(datum_cursor *c, const char *field, int depth, int max_depth)
{
	c->mark = c->pos;
	if (depth > max_depth)
		return datum_fail(c, CODEC_ERR_LIMIT, field, "data nested deeper than %d",
		                  max_depth);
	return 0;
}

/* A zigzag varint of at most max_bytes bytes whose value fits in bits bits. */
static int read_varint(datum_cursor *c, const char *field, int max_bytes, int bits, int64_t *out)
{
	uint64_t acc = 0;

	c->mark = c->pos;
	for (int i = 0; i < max_bytes; i++) {
		if (c->pos >= c->len)
			return datum_fail(c, CODEC_ERR_DATUM, field,
			                  "the value ends inside a number");
		unsigned b = c->p[c->pos++];
		if (i == max_bytes - 1 && (b >> (bits - 7 * i)) != 0)
			return datum_fail(c, CODEC_ERR_DATUM, field,
			                  "a number is longer than %d bytes or overflows",
			                  max_bytes);
		acc |= (uint64_t)(b & 0x7F) << (7 * i);
		if ((b & 0x80) == 0)
			break;
	}
	/* Zigzag, without converting an out-of-range unsigned to signed. */
	uint64_t mag = acc >> 1;
	*out = (acc & 1) ? -(int64_t)mag - 1 : (int64_t)mag;
	return 0;
}

int datum_read_long(datum_cursor *c, const char *field, int64_t *out)
{
	return read_varint(c, field, 10, 64, out);
}

int datum_read_int(datum_cursor *c, const char *field, int64_t *out)
{
	return read_varint(c, field, 5, 32, out);
}

int datum_read_fixed(datum_cursor *c, const char *field, size_t n, const unsigned char **s)
{
	c->mark = c->pos;
	if (n > c->len - c->pos)
		return datum_fail(c, CODEC_ERR_DATUM, field,
		                  "the value ends inside a %zu-byte item", n);
	*s = c->p + c->pos;
	c->pos += n;
	return 0;
}

int datum_read_bytes(datum_cursor *c, const char *field, datum_text text, size_t max_bytes,
                     const unsigned char **s, size_t *n)
{
	int64_t len;
	size_t start = c->pos, at;

	if (datum_read_long(c, field, &len) != 0)
		return -1;
	c->mark = start;
	if (len < 0)
		return datum_fail(c, CODEC_ERR_DATUM, field, "negative length %lld",
		                  (long long)len);
	if ((uint64_t)len > c->len - c->pos)
		return datum_fail(c, CODEC_ERR_DATUM, field,
		                  "length %lld is more than the %zu bytes left", (long long)len,
		                  c->len - c->pos);
	if ((uint64_t)len > max_bytes)
		return datum_fail(c, CODEC_ERR_LIMIT, field,
		                  "length %lld is over the limit of %zu bytes", (long long)len,
		                  max_bytes);
	/* utf8_check() stops at a NUL; where NUL is allowed, check on past
	 * it. */
	for (size_t from = 0; text != DATUM_BYTES && from < (size_t)len; from += at + 1) {
		utf8_verdict v = utf8_check(c->p + c->pos + from, (size_t)len - from, &at);
		if (v == UTF8_OK)
			break;
		if (v == UTF8_NUL && text == DATUM_UTF8_NO_NUL)
			return datum_fail(c, CODEC_ERR_DATUM, field,
			                  "a NUL byte at offset %zu of a string", from + at);
		if (v == UTF8_BAD)
			return datum_fail(c, CODEC_ERR_DATUM, field,
			                  "invalid UTF-8 at offset %zu of a string", from + at);
	}
	if (s != NULL)
		*s = c->p + c->pos;
	if (n != NULL)
		*n = (size_t)len;
	c->pos += (size_t)len;
	return 0;
}

int datum_read_enum(datum_cursor *c, const char *field, size_t nsym, int64_t *v)
{
	if (datum_read_int(c, field, v) != 0)
		return -1;
	if (*v < 0 || (uint64_t)*v >= nsym)
		return datum_fail(c, CODEC_ERR_DATUM, field,
		                  "enum index %lld is not one of the %zu symbols", (long long)*v,
		                  nsym);
	return 0;
}

int datum_read_branch(datum_cursor *c, const char *field, size_t nbranch, int64_t *v)
{
	if (datum_read_long(c, field, v) != 0)
		return -1;
	if (*v < 0 || (uint64_t)*v >= nbranch)
		return datum_fail(c, CODEC_ERR_DATUM, field,
		                  "union branch %lld is not one of the %zu branches", (long long)*v,
		                  nbranch);
	return 0;
}

int datum_block_begin(datum_cursor *c, const char *field, datum_block *b)
{
	b->mark = c->pos;
	b->bytes = -1;
	if (datum_read_long(c, field, &b->count) != 0)
		return -1;
	if (b->count < 0) {
		if (b->count == INT64_MIN)
			return datum_fail(c, CODEC_ERR_DATUM, field, "block count out of range");
		b->count = -b->count;
		if (datum_read_long(c, field, &b->bytes) != 0)
			return -1;
		if (b->bytes < 0 || (uint64_t)b->bytes > c->len - c->pos)
			return datum_fail(c, CODEC_ERR_DATUM, field,
			                  "block byte size %lld is not within the %zu bytes left",
			                  (long long)b->bytes, c->len - c->pos);
	}
	c->mark = b->mark;
	b->start = c->pos;
	return 0;
}

int datum_block_end(datum_cursor *c, const char *field, const datum_block *b)
{
	if (b->bytes >= 0 && c->pos - b->start != (uint64_t)b->bytes) {
		c->mark = b->mark;
		return datum_fail(c, CODEC_ERR_DATUM, field,
		                  "a block announced %lld bytes but its items take %zu",
		                  (long long)b->bytes, c->pos - b->start);
	}
	return 0;
}
