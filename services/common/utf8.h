/*
 * utf8: the one UTF-8 checker of the project. Every string a program takes
 * from outside (an Avro string, a command's argument, a row read back for a
 * table) is checked here, and every clipped copy is cut here, so that the
 * rules (RFC 3629, strict) are written once.
 */
#ifndef KMS_UTF8_H
#define KMS_UTF8_H

#include <stddef.h>

typedef enum { UTF8_OK = 0, UTF8_NUL, UTF8_BAD } utf8_verdict;

/* Strict UTF-8 over n bytes at s: no overlong forms, no surrogates, nothing
 * past U+10FFFF. NUL is valid UTF-8 but refused (UTF8_NUL): every string
 * ends up as a C string and in PostgreSQL text, which cannot hold it. On a
 * refusal the offset of the first bad byte goes to *at (at may be NULL). */
utf8_verdict utf8_check(const void *s, size_t n, size_t *at);

/* 1 if the C string s is valid UTF-8 by the rules of utf8_check(). */
int utf8_valid(const char *s);

/* Length of the UTF-8 character that starts the NUL-terminated s (1 to 4),
 * or 0 when s does not start a valid one. A NUL byte is a character of 1. */
size_t utf8_char_len(const unsigned char *s);

/* Copy src to dst (size bytes) and return the bytes copied; a cut falls
 * before the character it would split, so a valid src gives a valid dst.
 * size 0 writes nothing. */
size_t utf8_copy(char *dst, size_t size, const char *src);

#endif
