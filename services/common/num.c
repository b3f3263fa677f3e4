/*
 * num: see num.h. strtoll and strtod do the arithmetic; what is written here
 * is what they let through and a setting must not: leading spaces and signs,
 * trailing bytes, and out-of-range values clamped with only errno to say so.
 */
#include "num.h"

#include <errno.h>
#include <stdlib.h>

int num_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	const char *digit = s;
	char *end = NULL;
	long long v;

	if (s == NULL)
		return -1;
	if (*digit == '-')
		digit++;
	if (*digit < '0' || *digit > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int64_t)v;
	return 0;
}

int num_parse_double(const char *s, double min, double max, double *out)
{
	char *end = NULL;
	double v;

	if (s == NULL || s[0] == '\0')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	/* v != v rejects NaN; the range check rejects the infinities. */
	if (errno != 0 || end == s || *end != '\0' || v != v || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}
