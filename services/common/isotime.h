/*
 * isotime: ISO 8601 times to and from milliseconds since the epoch, in UTC;
 * the one place the programs read or write a time as text (a log line's
 * "ts", a Result's ce_time header, kmsctl's --valid-from).
 */
#ifndef KMS_ISOTIME_H
#define KMS_ISOTIME_H

#include <stddef.h>
#include <stdint.h>

/* Room for any time isotime_format_ms() writes, NUL included. */
#define ISOTIME_SIZE 32

/* ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (size bytes, ISOTIME_SIZE
 * is enough; a smaller out gets a cut string). ms must not be negative. */
void isotime_format_ms(int64_t ms, char *out, size_t size);

/* YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS[.fff]] with an optional Z or +HH:MM /
 * -HH:MM (UTC when absent); years from 1900, days checked against their month
 * and leap years, digits beyond milliseconds dropped. Returns 0 with the
 * milliseconds since the epoch in *out, or -1 with *out untouched. */
int isotime_parse_ms(const char *s, int64_t *out) __attribute__((warn_unused_result));

#endif
