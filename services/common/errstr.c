/*
 * errstr: see errstr.h.
 */
#include "errstr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

void errstr_set(char *errstr, size_t errstr_size, const char *fmt, ...)
{
	va_list ap;
	if (errstr == NULL || errstr_size == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(errstr, errstr_size, fmt, ap);
	va_end(ap);
}

void errstr_line(char *errstr, size_t errstr_size, const char *what, const char *why)
{
	char line[512];

	if (errstr == NULL || errstr_size == 0)
		return;
	if (snprintf(line, sizeof line, "%s%s%s", what, why != NULL ? ": " : "",
	             why != NULL ? why : "") < 0)
		line[0] = '\0';
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	size_t n = strlen(line);
	while (n > 0 && line[n - 1] == ' ')
		line[--n] = '\0';
	utf8_copy(errstr, errstr_size, line);
}
