/*
 * jwt_b64url: the base64url of JWS (RFC 7515 section 2, RFC 4648 section 5),
 * without padding. The decoder is strict (alphabet only, no padding or
 * whitespace, unused trailing bits zero) so that each byte string has
 * exactly one accepted encoding; the JWK Set reader decodes its key members
 * with it too.
 */
#include "jwt.h"

#include <stdint.h>
#include <stdlib.h>

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

char *jwt_base64url_encode(const void *data, size_t len)
{
	const unsigned char *in = data;
	size_t out_len, o = 0, i = 0;
	char *out;

	if (data == NULL && len != 0)
		return NULL;
	if (len > (SIZE_MAX / 4 - 1) * 3)
		return NULL;
	out_len = len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
	out = malloc(out_len + 1);
	if (out == NULL)
		return NULL;
	for (; i + 3 <= len; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64url_alphabet[w >> 18 & 63];
		out[o++] = b64url_alphabet[w >> 12 & 63];
		out[o++] = b64url_alphabet[w >> 6 & 63];
		out[o++] = b64url_alphabet[w & 63];
	}
	if (len - i == 1) {
		uint32_t w = (uint32_t)in[i] << 16;
		out[o++] = b64url_alphabet[w >> 18 & 63];
		out[o++] = b64url_alphabet[w >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64url_alphabet[w >> 18 & 63];
		out[o++] = b64url_alphabet[w >> 12 & 63];
		out[o++] = b64url_alphabet[w >> 6 & 63];
	}
	out[o] = '\0';
	return out;
}

int jwt_base64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
	unsigned char *buf;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n, o = 0;

	if (out == NULL || out_len == NULL)
		return -1;
	*out = NULL;
	*out_len = 0;
	if (in == NULL && in_len != 0)
		return -1;
	/* 4n+1 characters would leave 6 bits, not a whole byte. */
	if (in_len % 4 == 1)
		return -1;
	n = in_len / 4 * 3 + (in_len % 4 == 0 ? 0 : in_len % 4 - 1);
	buf = malloc(n == 0 ? 1 : n);
	if (buf == NULL)
		return JWT_ERR_NOMEM;
	for (size_t i = 0; i < in_len; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0)
			goto fail;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Canonical form: the bits left over after the last whole byte are
	 * zero, so that each byte string has exactly one encoding. */
	if (acc != 0)
		goto fail;
	*out = buf;
	*out_len = o;
	return 0;
fail:
	free(buf);
	return -1;
}
