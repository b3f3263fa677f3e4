/*
 * out: kmsctl's output, the JSON of --json and the tables (table.c) of the
 * human form. The database gives text; these turn it into JSON values of
 * the right type, with absent values as null.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "num.h"
#include "out.h"
#include "utf8.h"

/* A JSON string of s, or null for NULL. Text from the database is UTF-8;
 * should a byte not be, it is shown as U+FFFD rather than lost. */
json_t *out_str(const char *s)
{
	if (s == NULL)
		return json_null();
	json_t *j = json_string(s);
	if (j != NULL)
		return j;
	size_t len = strlen(s);
	char *fixed = malloc(len * 3 + 1);
	if (fixed == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		char one[5] = {0};
		size_t n = 1;
		for (; n <= 4 && i + n <= len; n++) {
			memcpy(one, s + i, n);
			one[n] = '\0';
			if (utf8_valid(one))
				break;
		}
		if (n <= 4 && i + n <= len) {
			memcpy(fixed + o, s + i, n);
			o += n;
			i += n;
		} else {
			memcpy(fixed + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
		}
	}
	fixed[o] = '\0';
	j = json_string(fixed);
	free(fixed);
	return j;
}

json_t *out_int(const char *s)
{
	int64_t v;
	if (s == NULL || num_parse_i64(s, INT64_MIN, INT64_MAX, &v) != 0)
		return json_null();
	return json_integer(v);
}

json_t *out_bool(const char *s)
{
	return s == NULL ? json_null() : json_boolean(strcmp(s, "t") == 0);
}

json_t *out_parse(const char *s)
{
	if (s == NULL)
		return json_null();
	json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
	return j != NULL ? j : json_null();
}

int out_print_json(json_t *j)
{
	if (j == NULL)
		return cli_fail(CLI_EXIT_RUNTIME, "out of memory", NULL);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
	json_decref(j);
	if (text == NULL)
		return cli_fail(CLI_EXIT_RUNTIME, "cannot encode JSON", NULL);
	puts(text);
	free(text);
	return CLI_EXIT_OK;
}

int out_print_table(table *t)
{
	if (t == NULL)
		return cli_fail(CLI_EXIT_RUNTIME, "out of memory", NULL);
	table_print(t, stdout);
	table_destroy(t);
	return CLI_EXIT_OK;
}

json_t *out_append(json_t *arr, json_t *item)
{
	if (arr == NULL) {
		json_decref(item);
		return NULL;
	}
	/* json_array_append_new() drops item when it fails */
	if (json_array_append_new(arr, item) != 0) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

table *out_row(table *t, const char *const *cells)
{
	if (t != NULL && table_add(t, cells) != 0) {
		table_destroy(t);
		return NULL;
	}
	return t;
}
