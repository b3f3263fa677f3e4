/*
 * Small utilities of valctl that touch neither Kafka nor the wire format:
 * clocks, random identifiers, hex and base64, UTF-8 checks, whole-file reads
 * and writes, and one-line JSON output.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util.h"

int64_t valctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t valctl_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int valctl_random(void *buf, size_t len, char *errstr, size_t errstr_size)
{
	unsigned long e;

	if (len > INT_MAX || RAND_bytes(buf, (int)len) != 1) {
		e = ERR_get_error();
		snprintf(errstr, errstr_size, "random generator failed: %s",
		         e != 0 ? ERR_reason_error_string(e) : "request too large");
		return -1;
	}
	return 0;
}

int valctl_uuid_v4(char out[37], char *errstr, size_t errstr_size)
{
	unsigned char b[16];
	char hex[33];

	if (valctl_random(b, sizeof b, errstr, errstr_size) != 0)
		return -1;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	valctl_hex(b, sizeof b, hex);
	memcpy(out, hex, 8);
	out[8] = '-';
	memcpy(out + 9, hex + 8, 4);
	out[13] = '-';
	memcpy(out + 14, hex + 12, 4);
	out[18] = '-';
	memcpy(out + 19, hex + 16, 4);
	out[23] = '-';
	memcpy(out + 24, hex + 20, 12);
	out[36] = '\0';
	return 0;
}

void valctl_hex(const void *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

int valctl_write_file(const char *path, const void *data, size_t len, mode_t mode, char *errstr,
                      size_t errstr_size)
{
	const char *p = data;
	size_t done = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0) {
		snprintf(errstr, errstr_size, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	/* An existing file keeps its mode through O_CREAT: a private key must
	 * not stay world-readable because an older file was. */
	if (fchmod(fd, mode) != 0) {
		snprintf(errstr, errstr_size, "cannot set the mode of %s: %s", path,
		         strerror(errno));
		goto fail;
	}
	while (done < len) {
		n = write(fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(errstr, errstr_size, "cannot write %s: %s", path, strerror(errno));
			goto fail;
		}
		done += (size_t)n;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(errstr, errstr_size, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
fail:
	close(fd);
	return -1;
}

char *valctl_base64_encode(const void *data, size_t len)
{
	char *out;
	size_t out_len;

	/* EVP_EncodeBlock takes an int count. */
	if (len > (size_t)INT_MAX / 4 * 3 - 3)
		return NULL;
	out_len = (len + 2) / 3 * 4;
	out = malloc(out_len + 1);
	if (out == NULL)
		return NULL;
	if (EVP_EncodeBlock((unsigned char *)out, data, (int)len) != (int)out_len) {
		free(out);
		return NULL;
	}
	out[out_len] = '\0';
	return out;
}

unsigned char *valctl_base64_decode(const char *text, size_t *out_len)
{
	size_t len = strlen(text), pad = 0, i;
	unsigned char *out;
	int n;

	/* EVP_DecodeBlock skips leading and trailing blanks and counts the
	 * bytes that padding stands for; insist on the canonical form and take
	 * the padding off by hand. */
	if (len % 4 != 0 || len > INT_MAX)
		return NULL;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		         (c >= '0' && c <= '9') || c == '+' || c == '/';

		if (c == '=' && i + 2 >= len && (i + 1 == len || text[i + 1] == '='))
			ok = 1;
		if (!ok)
			return NULL;
	}
	if (len > 0 && text[len - 1] == '=')
		pad++;
	if (len > 1 && text[len - 2] == '=')
		pad++;
	out = malloc(len / 4 * 3 + 1);
	if (out == NULL)
		return NULL;
	n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
	if (n < 0 || (size_t)n != len / 4 * 3) {
		free(out);
		return NULL;
	}
	*out_len = (size_t)n - pad;
	out[*out_len] = '\0';
	return out;
}

int valctl_print_json(FILE *out, const json_t *value)
{
	/* Six significant digits: microseconds of a run, not binary noise. */
	if (json_dumpf(value, out, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6)) != 0)
		return -1;
	if (fputc('\n', out) == EOF)
		return -1;
	return 0;
}

char *valctl_quote(const char *s)
{
	json_t *j = json_string(s);
	char *out;

	if (j == NULL)
		return NULL;
	out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	return out;
}
