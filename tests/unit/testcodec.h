/*
 * testcodec: request values built by hand, byte by byte, for the codec's
 * tests (test_codec's older schema versions, test_codec_hostile's hostile
 * values), and the check that decodes one and compares its status. Test
 * code only.
 */
#ifndef KMS_TESTCODEC_H
#define KMS_TESTCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define TESTCODEC_MUST_CHECK __attribute__((warn_unused_result))

/* The CRC-64-AVRO fingerprint of the current request schema. */
#define TESTCODEC_REQUEST_FP 0x9e924f90ed9e61a6ULL

/* A growing byte buffer; start from {0}. b is malloc'd: the caller frees it
 * with free(). The put functions abort when memory runs out: a test cannot
 * go on without its value. */
typedef struct {
	unsigned char *b;
	size_t n, cap;
} testcodec_bytes;

void testcodec_put_raw(testcodec_bytes *o, const void *p, size_t n);
void testcodec_put_byte(testcodec_bytes *o, unsigned v);
/* Avro's zig-zag varint. */
void testcodec_put_long(testcodec_bytes *o, int64_t v);
/* Avro bytes (and string): a length, then the bytes. */
void testcodec_put_bin(testcodec_bytes *o, const void *p, size_t n);
void testcodec_put_str(testcodec_bytes *o, const char *s);
/* The single-object header: C3 01 and the fingerprint, little-endian. */
void testcodec_put_header(testcodec_bytes *o, uint64_t fp);
/* One ValServiceInfo: id, formatType index, null version, one-entry map. */
void testcodec_put_service(testcodec_bytes *o, const char *id, int64_t format);
/* The header and the four leading strings of a current request. */
void testcodec_put_head(testcodec_bytes *o);
/* sentAt and a null suppFeat. */
void testcodec_put_tail(testcodec_bytes *o);
/* A whole valid current request with one service. */
void testcodec_put_request(testcodec_bytes *o);

/* A codec with limits l (NULL: the defaults), or NULL with the reason on
 * stderr. Caller frees with codec_destroy(). */
codec *testcodec_new(const codec_limits *l) TESTCODEC_MUST_CHECK;

/* Decode o's value with c and return the status; err gets the reason. What
 * the decoder made is freed. */
codec_status testcodec_decode_status(const codec *c, const testcodec_bytes *o, char *err,
                                     size_t err_size) TESTCODEC_MUST_CHECK;

/* A test case's check: o's value decodes, with a default codec, to status
 * want, and a refusal has a reason. 0 pass, -1 fail (with the reason on
 * stderr; TEST_VERBOSE=1 prints every status). */
int testcodec_expect_status(const testcodec_bytes *o, codec_status want) TESTCODEC_MUST_CHECK;

#endif
