/*
 * test_utf8: the one UTF-8 checker (utf8_check, utf8_valid, utf8_char_len)
 * against the forms RFC 3629 refuses, and utf8_copy's cut.
 */
#include "check.h"
#include "utf8.h"

typedef struct {
	const char *bytes;
	size_t len;
	utf8_verdict verdict;
	size_t at; /* first bad byte, when refused */
} vector;

#define V(s, v, a)                                                                                 \
	{                                                                                          \
		s, sizeof s - 1, v, a                                                              \
	}

static const vector vectors[] = {
    V("", UTF8_OK, 0),
    V("plain ascii", UTF8_OK, 0),
    V("caf\xC3\xA9", UTF8_OK, 0),       /* U+00E9 */
    V("\xE2\x82\xAC", UTF8_OK, 0),      /* U+20AC */
    V("\xF0\x9F\x98\x80", UTF8_OK, 0),  /* U+1F600 */
    V("\xF4\x8F\xBF\xBF", UTF8_OK, 0),  /* U+10FFFF, the last */
    V("\xED\x9F\xBF", UTF8_OK, 0),      /* U+D7FF, below the surrogates */
    V("ab\0cd", UTF8_NUL, 2),           /* NUL refused */
    V("a\xC0\xAF", UTF8_BAD, 1),        /* overlong '/' */
    V("\xC1\xBF", UTF8_BAD, 0),         /* overlong */
    V("\xE0\x80\xAF", UTF8_BAD, 0),     /* overlong, 3 bytes */
    V("\xF0\x80\x80\xAF", UTF8_BAD, 0), /* overlong, 4 bytes */
    V("x\xED\xA0\x80", UTF8_BAD, 1),    /* U+D800, a surrogate */
    V("\xED\xBF\xBF", UTF8_BAD, 0),     /* U+DFFF, a surrogate */
    V("\xF4\x90\x80\x80", UTF8_BAD, 0), /* U+110000, past Unicode */
    V("\xF5\x80\x80\x80", UTF8_BAD, 0), /* no such lead byte */
    V("\xFF", UTF8_BAD, 0),             /* no such lead byte */
    V("ok\x80", UTF8_BAD, 2),           /* a lone continuation byte */
    V("\xE2\x82", UTF8_BAD, 0),         /* cut short */
    V("\xF0\x9F\x98", UTF8_BAD, 0),     /* cut short */
    V("\xC3\x28", UTF8_BAD, 0),         /* continuation missing */
    V("\xE2\x28\xA1", UTF8_BAD, 0),     /* continuation missing */
};

static int test_check(void)
{
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const vector *v = &vectors[i];
		size_t at = 999;
		CHECK_INT(utf8_check(v->bytes, v->len, &at), v->verdict);
		if (v->verdict != UTF8_OK)
			CHECK_INT(at, v->at);
		else
			CHECK_INT(at, 999); /* untouched */
		CHECK_INT(utf8_check(v->bytes, v->len, NULL), v->verdict);
	}
	return 0;
}

/* The C-string forms agree with utf8_check on every vector without a NUL. */
static int test_valid_and_char_len_agree(void)
{
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const vector *v = &vectors[i];
		if (v->verdict == UTF8_NUL)
			continue;
		CHECK_INT(utf8_valid(v->bytes), v->verdict == UTF8_OK);
		/* walking by utf8_char_len reaches the end exactly when valid */
		const unsigned char *p = (const unsigned char *)v->bytes;
		int walked = 1;
		while (*p) {
			size_t n = utf8_char_len(p);
			if (n == 0) {
				walked = 0;
				break;
			}
			p += n;
		}
		CHECK_INT(walked, v->verdict == UTF8_OK);
	}
	CHECK_INT(utf8_char_len((const unsigned char *)""), 1);
	CHECK_INT(utf8_char_len((const unsigned char *)"\xF0\x9F\x98\x80!"), 4);
	return 0;
}

static int test_copy(void)
{
	char out[6];
	CHECK_INT(utf8_copy(out, sizeof out, "abc"), 3);
	CHECK_STR(out, "abc");
	/* "ab" + U+1F600 (4 bytes) does not fit in 5: the emoji is dropped */
	CHECK_INT(utf8_copy(out, sizeof out, "ab\xF0\x9F\x98\x80"), 2);
	CHECK_STR(out, "ab");
	CHECK_INT(utf8_copy(out, sizeof out, "a\xF0\x9F\x98\x80"), 5);
	CHECK_STR(out, "a\xF0\x9F\x98\x80");
	CHECK_INT(utf8_copy(out, 1, "abc"), 0);
	CHECK_STR(out, "");
	return 0;
}

static const check_case cases[] = {
    {"check", test_check},
    {"valid_and_char_len_agree", test_valid_and_char_len_agree},
    {"copy", test_copy},
};

CHECK_MAIN("utf8", cases)
