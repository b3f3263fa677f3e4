/*
 * isotime: see isotime.h. Formatting goes through gmtime_r and strftime;
 * parsing is written out because strptime takes neither the milliseconds nor
 * the offset, and mktime works in local time.
 */
#include "isotime.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void isotime_format_ms(int64_t ms, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char secs[ISOTIME_SIZE];

	if (gmtime_r(&t, &tm) == NULL || strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		secs[0] = '\0';
	snprintf(out, size, "%.24s.%03dZ", secs, (int)(ms % 1000));
}

/* n digits at s into *out; returns 0 or -1. */
static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Days from 1970-01-01 to the given proleptic Gregorian date. */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int isotime_parse_ms(const char *s, int64_t *out)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, off = 0;
	if (strlen(s) < 10 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d))
		return -1;
	if (y < 1900 || mo < 1 || mo > 12 || d < 1)
		return -1;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[mo - 1] + (mo == 2 && leap))
		return -1;
	const char *p = s + 10;
	if (*p == 'T' || *p == 't') {
		if (digits(p + 1, 2, &h) || p[3] != ':' || digits(p + 4, 2, &mi))
			return -1;
		p += 6;
		if (*p == ':') {
			if (digits(p + 1, 2, &sec))
				return -1;
			p += 3;
			if (*p == '.') {
				int nd = 0;
				p++;
				while (*p >= '0' && *p <= '9') {
					if (nd < 3)
						ms = ms * 10 + (*p - '0');
					nd++;
					p++;
				}
				if (nd == 0)
					return -1;
				for (; nd < 3; nd++)
					ms *= 10;
			}
		}
		if (h > 23 || mi > 59 || sec > 59)
			return -1;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int oh, om;
			if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) ||
			    oh > 23 || om > 59)
				return -1;
			off = (oh * 60 + om) * (*p == '-' ? -1 : 1);
			p += 6;
		}
	}
	if (*p != '\0')
		return -1;
	int64_t days = days_from_civil(y, mo, d);
	*out = ((days * 24 + h) * 60 + mi - off) * 60000 + (int64_t)sec * 1000 + ms;
	return 0;
}
