/*
 * table: kmsctl's human output. Cells are escaped so that whatever a VAL
 * server or an operator put in a name cannot drive the terminal: control
 * characters (C0, DEL and C1), bytes that are not UTF-8, and the backslash
 * itself are shown as \xNN, so the output is unambiguous.
 */
#ifndef KMSCTL_TABLE_H
#define KMSCTL_TABLE_H

#include <stddef.h>
#include <stdio.h>

/* The escaped form of s: a malloc'd string the caller frees, or NULL when out
 * of memory. */
char *table_escape(const char *s);

typedef struct table table;

/* A table of ncols columns with these headers (borrowed, copied). Caller
 * frees with table_destroy(). NULL when out of memory. */
table *table_new(size_t ncols, const char *const *headers);
void table_destroy(table *t); /* NULL is a no-op */

/* Add a row of ncols cells; a NULL cell shows as "-". The cells are escaped
 * and copied. Returns 0, or -1 when out of memory. */
int table_add(table *t, const char *const *cells);

/* Print the headers and rows, columns padded to their widest cell. */
void table_print(const table *t, FILE *f);

#endif
