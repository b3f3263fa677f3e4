/*
 * utf8: see utf8.h. The checker is the hostile-input walker's (a lead byte
 * names the range of its first continuation byte, which rules out overlong
 * forms, surrogates and code points past U+10FFFF without decoding them).
 */
#include "utf8.h"

#include <string.h>

/* Continuation bytes a lead byte needs, and the range of the first one;
 * -1 when c cannot lead a character. */
static int lead(unsigned c, unsigned *lo, unsigned *hi)
{
	*lo = 0x80;
	*hi = 0xBF;
	if (c < 0x80)
		return 0;
	if (c >= 0xC2 && c <= 0xDF)
		return 1;
	if (c == 0xE0) {
		*lo = 0xA0; /* below is overlong */
		return 2;
	}
	if (c == 0xED) {
		*hi = 0x9F; /* above are the surrogates */
		return 2;
	}
	if (c >= 0xE1 && c <= 0xEF)
		return 2;
	if (c == 0xF0) {
		*lo = 0x90; /* below is overlong */
		return 3;
	}
	if (c >= 0xF1 && c <= 0xF3)
		return 3;
	if (c == 0xF4) {
		*hi = 0x8F; /* above is past U+10FFFF */
		return 3;
	}
	return -1;
}

/* Bytes of the valid character at s (avail bytes there), or 0. */
static size_t char_len(const unsigned char *s, size_t avail)
{
	unsigned lo, hi;
	int need = lead(s[0], &lo, &hi);

	if (need < 0 || avail - 1 < (size_t)need)
		return 0;
	if (need > 0 && (s[1] < lo || s[1] > hi))
		return 0;
	for (int k = 2; k <= need; k++) {
		if ((s[k] & 0xC0) != 0x80)
			return 0;
	}
	return (size_t)need + 1;
}

utf8_verdict utf8_check(const void *data, size_t n, size_t *at)
{
	const unsigned char *s = data;
	size_t i = 0;

	while (i < n) {
		size_t len;

		if (s[i] == 0) {
			if (at != NULL)
				*at = i;
			return UTF8_NUL;
		}
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		len = char_len(s + i, n - i);
		if (len == 0) {
			if (at != NULL)
				*at = i;
			return UTF8_BAD;
		}
		i += len;
	}
	return UTF8_OK;
}

int utf8_valid(const char *s)
{
	return utf8_check(s, strlen(s), NULL) == UTF8_OK;
}

size_t utf8_char_len(const unsigned char *s)
{
	if (s[0] == 0)
		return 1;
	/* A continuation byte missing at the end meets the NUL, which is not
	 * one, so reading up to 4 bytes stays inside the string. */
	return char_len(s, 4);
}

size_t utf8_copy(char *dst, size_t size, const char *src)
{
	if (size == 0)
		return 0;
	size_t n = strlen(src);
	if (n >= size) {
		n = size - 1;
		/* back off over continuation bytes to the start of the cut
		 * character, and drop that character too */
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
	return n;
}
