/*
 * testcodec: the codec tests' hand-built request values and their status
 * check, shared by test_codec and test_codec_hostile so that both build
 * values the same way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "testcodec.h"

codec *testcodec_new(const codec_limits *l)
{
	char err[256];
	codec *c = codec_new(l, err, sizeof err);
	if (c == NULL)
		fprintf(stderr, "    codec_new: %s\n", err);
	return c;
}

void testcodec_put_raw(testcodec_bytes *o, const void *p, size_t n)
{
	if (o->cap - o->n < n) {
		size_t cap = o->cap ? o->cap : 256;
		while (cap - o->n < n)
			cap *= 2;
		unsigned char *nb = realloc(o->b, cap);
		if (nb == NULL)
			abort();
		o->b = nb;
		o->cap = cap;
	}
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

void testcodec_put_byte(testcodec_bytes *o, unsigned v)
{
	unsigned char b = (unsigned char)v;
	testcodec_put_raw(o, &b, 1);
}

void testcodec_put_long(testcodec_bytes *o, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	while (z >= 0x80) {
		testcodec_put_byte(o, (unsigned)(z & 0x7F) | 0x80);
		z >>= 7;
	}
	testcodec_put_byte(o, (unsigned)z);
}

void testcodec_put_bin(testcodec_bytes *o, const void *p, size_t n)
{
	testcodec_put_long(o, (int64_t)n);
	testcodec_put_raw(o, p, n);
}

void testcodec_put_str(testcodec_bytes *o, const char *s)
{
	testcodec_put_bin(o, s, strlen(s));
}

void testcodec_put_header(testcodec_bytes *o, uint64_t fp)
{
	testcodec_put_byte(o, 0xC3);
	testcodec_put_byte(o, 0x01);
	for (int i = 0; i < 8; i++)
		testcodec_put_byte(o, (unsigned)(fp >> (8 * i)) & 0xFF);
}

/* One ValServiceInfo: id, formatType index, null version, one-entry map. */
void testcodec_put_service(testcodec_bytes *o, const char *id, int64_t format)
{
	testcodec_put_str(o, id);
	testcodec_put_long(o, format);
	testcodec_put_long(o, 0); /* formatVersion: null */
	testcodec_put_long(o, 1);
	testcodec_put_str(o, "kty");
	testcodec_put_str(o, "oct");
	testcodec_put_long(o, 0);
}

/* The four leading strings of a request, after the header. */
void testcodec_put_head(testcodec_bytes *o)
{
	testcodec_put_header(o, TESTCODEC_REQUEST_FP);
	testcodec_put_str(o, "0b6f2f3e-4a7c-4b8e-9d10-2f3a4b5c6d7e");
	testcodec_put_str(o, "val-server-1");
	testcodec_put_str(o, "https://val.example.com/seal");
	testcodec_put_str(o, "eyJhbGciOiJFUzI1NiJ9.e30.sig");
}

/* sentAt and a null suppFeat. */
void testcodec_put_tail(testcodec_bytes *o)
{
	testcodec_put_long(o, 1700000000000LL);
	testcodec_put_long(o, 0);
}

/* A whole valid request with one service. */
void testcodec_put_request(testcodec_bytes *o)
{
	testcodec_put_head(o);
	testcodec_put_long(o, 1);
	testcodec_put_service(o, "svc-a", 7);
	testcodec_put_long(o, 0);
	testcodec_put_tail(o);
}

/* Decode and return the status; frees everything. */
codec_status testcodec_decode_status(const codec *c, const testcodec_bytes *o, char *err,
                                     size_t err_size)
{
	codec_request *r = NULL;
	codec_salvage sv;
	codec_status st = codec_decode_request(c, o->b, o->n, &r, &sv, err, err_size);
	codec_request_free(r);
	codec_salvage_free(&sv);
	return st;
}

/* Run one hand-built value through decode and check its status. */
int testcodec_expect_status(const testcodec_bytes *o, codec_status want)
{
	char err[256] = "";
	codec *c = testcodec_new(NULL);
	CHECK(c != NULL);
	codec_status st = testcodec_decode_status(c, o, err, sizeof err);
	codec_destroy(c);
	if (st != want || getenv("TEST_VERBOSE") != NULL)
		fprintf(stderr, "    got %s (%s), want %s\n", codec_status_name(st), err,
		        codec_status_name(want));
	CHECK(st == want);
	if (want != CODEC_OK)
		CHECK(err[0] != '\0');
	return 0;
}
