/*
 * file: see file.h.
 */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errstr.h"

char *file_read(const char *path, size_t max_bytes, size_t *len, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = max_bytes < 4096 ? max_bytes : 4096, used = 0, n;

	if (f == NULL) {
		errstr_set(errstr, errstr_size, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(cap + 1);
	if (buf == NULL)
		goto oom;
	for (;;) {
		if (used == cap) {
			/* one byte more than the bound tells a file over it */
			char probe;
			if (cap >= max_bytes) {
				if (fread(&probe, 1, 1, f) == 1) {
					errstr_set(errstr, errstr_size,
					           "%s is larger than %zu bytes", path, max_bytes);
					goto fail;
				}
				break;
			}
			cap = cap > max_bytes / 2 ? max_bytes : cap * 2;
			char *grown = realloc(buf, cap + 1);
			if (grown == NULL)
				goto oom;
			buf = grown;
		}
		n = fread(buf + used, 1, cap - used, f);
		used += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		errstr_set(errstr, errstr_size, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	fclose(f);
	buf[used] = '\0';
	if (len != NULL)
		*len = used;
	return buf;
oom:
	errstr_set(errstr, errstr_size, "out of memory reading %s", path);
fail:
	fclose(f);
	free(buf);
	return NULL;
}
