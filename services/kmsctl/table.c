/*
 * table: kmsctl's human output, padded columns of escaped cells (see
 * table.h for what is escaped and why).
 */
#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

struct table {
	size_t ncols;
	char **headers;
	char **cells; /* rows * ncols */
	size_t rows, cap;
};

char *table_escape(const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s);
	/* at worst every byte becomes four */
	char *out = malloc(len * 4 + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	while (*p) {
		size_t n = utf8_char_len(p);
		/* C1 controls are U+0080..U+009F: C2 80..C2 9F */
		int escape = n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7F || *p == '\\')) ||
		             (n == 2 && p[0] == 0xC2 && p[1] < 0xA0);
		if (n == 0)
			n = 1;
		for (size_t i = 0; i < n; i++) {
			if (escape) {
				out[o++] = '\\';
				out[o++] = 'x';
				out[o++] = hex[p[i] >> 4];
				out[o++] = hex[p[i] & 0x0F];
			} else {
				out[o++] = (char)p[i];
			}
		}
		p += n;
	}
	out[o] = '\0';
	return out;
}

/* Characters shown, for padding (escaped cells are valid UTF-8). */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

table *table_new(size_t ncols, const char *const *headers)
{
	table *t = calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	t->ncols = ncols;
	t->headers = calloc(ncols, sizeof *t->headers);
	if (t->headers == NULL)
		goto fail;
	for (size_t i = 0; i < ncols; i++) {
		t->headers[i] = table_escape(headers[i]);
		if (t->headers[i] == NULL)
			goto fail;
	}
	return t;
fail:
	table_destroy(t);
	return NULL;
}

void table_destroy(table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; t->headers != NULL && i < t->ncols; i++)
		free(t->headers[i]);
	for (size_t i = 0; i < t->rows * t->ncols; i++)
		free(t->cells[i]);
	free(t->headers);
	free(t->cells);
	free(t);
}

int table_add(table *t, const char *const *cells)
{
	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **grown = realloc(t->cells, cap * t->ncols * sizeof *grown);
		if (grown == NULL)
			return -1;
		t->cells = grown;
		t->cap = cap;
	}
	char **row = t->cells + t->rows * t->ncols;
	for (size_t i = 0; i < t->ncols; i++) {
		row[i] = table_escape(cells[i] != NULL ? cells[i] : "-");
		if (row[i] == NULL) {
			while (i > 0)
				free(row[--i]);
			return -1;
		}
	}
	t->rows++;
	return 0;
}

static void print_row(char *const *cells, const size_t *w, size_t ncols, FILE *f)
{
	for (size_t i = 0; i < ncols; i++) {
		fputs(cells[i], f);
		if (i + 1 < ncols)
			for (size_t k = width(cells[i]); k < w[i] + 2; k++)
				fputc(' ', f);
	}
	fputc('\n', f);
}

void table_print(const table *t, FILE *f)
{
	size_t *w = calloc(t->ncols, sizeof *w);
	if (w == NULL)
		return;
	for (size_t i = 0; i < t->ncols; i++)
		w[i] = width(t->headers[i]);
	for (size_t r = 0; r < t->rows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			size_t cw = width(t->cells[r * t->ncols + i]);
			if (cw > w[i])
				w[i] = cw;
		}
	print_row(t->headers, w, t->ncols, f);
	for (size_t r = 0; r < t->rows; r++)
		print_row(t->cells + r * t->ncols, w, t->ncols, f);
	free(w);
}
