/*
 * util: valctl's small helpers that touch neither Kafka nor the wire
 * format: clocks, random identifiers, hex and base64, file writes and
 * one-line JSON output.
 */
#ifndef VALCTL_UTIL_H
#define VALCTL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

int64_t valctl_now_ms(void);  /* wall clock, ms since the epoch */
int64_t valctl_mono_us(void); /* monotonic clock, microseconds */
/* Fill buf from OpenSSL's generator; 0, or -1 with errstr filled. */
int valctl_random(void *buf, size_t len, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
/* A random (version 4) UUID in lower-case text; 0, or -1 with errstr filled. */
int valctl_uuid_v4(char out[37], char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
/* Lower-case hex of data into out (2 * len + 1 bytes). */
void valctl_hex(const void *data, size_t len, char *out);

/* Create or truncate path with the given mode and write data; 0, or -1 with
 * errstr filled. */
int valctl_write_file(const char *path, const void *data, size_t len, mode_t mode, char *errstr,
                      size_t errstr_size) __attribute__((warn_unused_result));

/* Standard base64 with padding. encode returns a malloc'd string; decode a
 * malloc'd buffer (NUL-terminated beyond *out_len) and *out_len. Both return
 * NULL on bad input or no memory. Caller frees. */
char *valctl_base64_encode(const void *data, size_t len) __attribute__((warn_unused_result));
unsigned char *valctl_base64_decode(const char *text, size_t *out_len)
    __attribute__((warn_unused_result));

/* Print a JSON value on one line to out, followed by a newline; 0 or -1. */
int valctl_print_json(FILE *out, const json_t *value) __attribute__((warn_unused_result));
/* s as a quoted, escaped JSON string (malloc'd; caller frees) or NULL. */
char *valctl_quote(const char *s) __attribute__((warn_unused_result));

#endif
