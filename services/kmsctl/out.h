/*
 * out: what kmsctl prints on stdout. --json prints values built from the
 * database's text (out_str, out_int, out_bool, out_parse), the tables of
 * table.h otherwise; both printers report their own failure, so a command
 * returns what they return.
 */
#ifndef KMSCTL_OUT_H
#define KMSCTL_OUT_H

#include <jansson.h>

#include "table.h"

/* A new JSON value of the database's text s, or JSON null for NULL (an
 * absent value). NULL only when out of memory; a reference made to be
 * stolen, as by json_pack's "o". */
json_t *out_str(const char *s) __attribute__((warn_unused_result));  /* a string */
json_t *out_int(const char *s) __attribute__((warn_unused_result));  /* an integer */
json_t *out_bool(const char *s) __attribute__((warn_unused_result)); /* "t": true */
/* JSON text (jsonb, to_json), parsed; JSON null if it does not parse. */
json_t *out_parse(const char *s) __attribute__((warn_unused_result));

/* Print j, indented, and drop it (it is stolen; NULL means the building
 * ran out of memory). Returns CLI_EXIT_OK or CLI_EXIT_RUNTIME with the
 * failure printed. */
int out_print_json(json_t *j) __attribute__((warn_unused_result));

/* Print t and destroy it (NULL: the building ran out of memory). Returns
 * CLI_EXIT_OK or CLI_EXIT_RUNTIME with the failure printed. */
int out_print_table(table *t) __attribute__((warn_unused_result));

/* Append item (stolen; NULL when its building ran out of memory) to the
 * JSON array arr. Out of memory, arr is dropped and NULL returned, for
 * out_print_json() to report; arr NULL stays NULL. */
json_t *out_append(json_t *arr, json_t *item) __attribute__((warn_unused_result));

/* Add a row to t; out of memory, t is destroyed and NULL returned, for
 * out_print_table() to report. t NULL stays NULL. */
table *out_row(table *t, const char *const *cells) __attribute__((warn_unused_result));

#endif
