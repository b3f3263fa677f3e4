/*
 * The file format of valctl record, read back: one JSON object per line
 * (topic, partition, offset, timestamp, key, headers [{name, value}], value;
 * bytes in base64, null kept apart from empty). replay and diff read
 * recordings through this file, so that both refuse the same broken lines
 * with the same words, and both treat a last line without its newline (a
 * recorder killed mid-write) the same way.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "recording.h"
#include "util.h"

struct valctl_lines {
	FILE *f;
	int own; /* 0 for stdin */
	int seekable;
	char *buf;
	size_t cap;
	size_t line_no;
};

valctl_lines *valctl_lines_open(const char *path, char *errstr, size_t errstr_size)
{
	valctl_lines *r = calloc(1, sizeof *r);
	long pos;

	if (r == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	if (strcmp(path, "-") == 0) {
		r->f = stdin;
	} else {
		r->f = fopen(path, "r");
		r->own = 1;
	}
	if (r->f == NULL) {
		snprintf(errstr, errstr_size, "cannot open %s: %s", path, strerror(errno));
		free(r);
		return NULL;
	}
	/* A pipe cannot be read twice: its lines are taken as they come. */
	pos = ftell(r->f);
	r->seekable = r->own && pos >= 0 && fseek(r->f, 0, SEEK_SET) == 0;
	return r;
}

int valctl_lines_next(valctl_lines *r, char **line, size_t *len, size_t *line_no, int *complete)
{
	ssize_t n;

	errno = 0;
	n = getline(&r->buf, &r->cap, r->f);
	if (n < 0)
		return ferror(r->f) ? -1 : 0;
	r->line_no++;
	*complete = n > 0 && r->buf[n - 1] == '\n';
	while (n > 0 && (r->buf[n - 1] == '\n' || r->buf[n - 1] == '\r'))
		r->buf[--n] = '\0';
	*line = r->buf;
	*len = (size_t)n;
	*line_no = r->line_no;
	return 1;
}

int valctl_lines_seekable(const valctl_lines *r)
{
	return r->seekable;
}

int valctl_lines_rewind(valctl_lines *r)
{
	if (!r->seekable || fseek(r->f, 0, SEEK_SET) != 0)
		return -1;
	clearerr(r->f);
	r->line_no = 0;
	return 0;
}

void valctl_lines_close(valctl_lines *r)
{
	if (r == NULL)
		return;
	if (r->own)
		fclose(r->f);
	free(r->buf);
	free(r);
}

void valctl_recline_clear(valctl_recline *l)
{
	size_t i;

	if (l == NULL)
		return;
	free(l->topic);
	free(l->key);
	free(l->value);
	for (i = 0; i < l->header_count; i++) {
		free(l->headers[i].name);
		free(l->headers[i].value);
	}
	free(l->headers);
	memset(l, 0, sizeof *l);
}

/* A member that holds bytes: base64 text or null. 0 with *out (NULL and
 * *is_null for null), -1 with errstr naming the member. */
static int bytes_member(const json_t *obj, const char *name, const char *what, unsigned char **out,
                        size_t *len, int *is_null, char *errstr, size_t errstr_size)
{
	const json_t *v = json_object_get(obj, name);

	*out = NULL;
	*len = 0;
	*is_null = 0;
	if (v == NULL) {
		snprintf(errstr, errstr_size, "lacks \"%s\"", what);
		return -1;
	}
	if (json_is_null(v)) {
		*is_null = 1;
		return 0;
	}
	if (!json_is_string(v)) {
		snprintf(errstr, errstr_size, "\"%s\" is neither a base64 string nor null", what);
		return -1;
	}
	/* A NUL inside the text would end it early: not base64 either. */
	if (strlen(json_string_value(v)) != json_string_length(v) ||
	    (*out = valctl_base64_decode(json_string_value(v), len)) == NULL) {
		snprintf(errstr, errstr_size, "\"%s\" is not valid base64", what);
		return -1;
	}
	return 0;
}

static int int_member(const json_t *obj, const char *name, int64_t min, int64_t max, int need,
                      int64_t *out, char *errstr, size_t errstr_size)
{
	const json_t *v = json_object_get(obj, name);

	*out = -1;
	if (v == NULL) {
		if (need)
			snprintf(errstr, errstr_size, "lacks \"%s\"", name);
		return need ? -1 : 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(errstr, errstr_size, "\"%s\" is not an integer from %lld to %lld", name,
		         (long long)min, (long long)max);
		return -1;
	}
	*out = (int64_t)json_integer_value(v);
	return 0;
}

int valctl_recline_parse(const char *text, size_t len, unsigned need, valctl_recline *out,
                         char *errstr, size_t errstr_size)
{
	const json_t *jt, *jh, *item;
	json_error_t jerr;
	json_t *o;
	int64_t n;
	size_t i;
	char what[64];

	memset(out, 0, sizeof *out);
	out->partition = -1;
	out->offset = -1;
	out->timestamp = -1;
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL || !json_is_object(o)) {
		snprintf(errstr, errstr_size, "not a JSON object (%s)",
		         o == NULL ? jerr.text : "another JSON value");
		goto fail;
	}
	jt = json_object_get(o, "topic");
	if (jt != NULL && !json_is_null(jt)) {
		if (!json_is_string(jt) || json_string_length(jt) == 0 ||
		    strlen(json_string_value(jt)) != json_string_length(jt)) {
			snprintf(errstr, errstr_size, "\"topic\" is not a topic name");
			goto fail;
		}
		out->topic = strdup(json_string_value(jt));
		if (out->topic == NULL)
			goto oom;
	} else if (need & VALCTL_RECLINE_TOPIC) {
		snprintf(errstr, errstr_size, "lacks \"topic\" (or give --topic)");
		goto fail;
	}
	if (int_member(o, "partition", 0, INT32_MAX, (need & VALCTL_RECLINE_PARTITION) != 0, &n,
	               errstr, errstr_size) != 0)
		goto fail;
	out->partition = (int32_t)n;
	if (int_member(o, "offset", 0, INT64_MAX, 0, &out->offset, errstr, errstr_size) != 0 ||
	    int_member(o, "timestamp", 0, INT64_MAX, (need & VALCTL_RECLINE_TIMESTAMP) != 0,
	               &out->timestamp, errstr, errstr_size) != 0)
		goto fail;
	if (bytes_member(o, "key", "key", &out->key, &out->key_len, &out->key_null, errstr,
	                 errstr_size) != 0 ||
	    bytes_member(o, "value", "value", &out->value, &out->value_len, &out->value_null,
	                 errstr, errstr_size) != 0)
		goto fail;
	jh = json_object_get(o, "headers");
	if (jh == NULL) {
		snprintf(errstr, errstr_size, "lacks \"headers\"");
		goto fail;
	}
	if (!json_is_array(jh)) {
		snprintf(errstr, errstr_size, "\"headers\" is not an array");
		goto fail;
	}
	if (json_array_size(jh) > 0) {
		out->headers = calloc(json_array_size(jh), sizeof *out->headers);
		if (out->headers == NULL)
			goto oom;
	}
	json_array_foreach(jh, i, item)
	{
		const json_t *jn = json_object_get(item, "name");
		valctl_recheader *h = &out->headers[i];

		if (!json_is_object(item) || !json_is_string(jn) ||
		    strlen(json_string_value(jn)) != json_string_length(jn)) {
			snprintf(errstr, errstr_size, "headers[%zu] lacks a \"name\" string", i);
			goto fail;
		}
		snprintf(what, sizeof what, "headers[%zu].value", i);
		if (bytes_member(item, "value", what, &h->value, &h->len, &h->is_null, errstr,
		                 errstr_size) != 0)
			goto fail;
		h->name = strdup(json_string_value(jn));
		if (h->name == NULL) {
			free(h->value);
			goto oom;
		}
		out->header_count = i + 1;
	}
	json_decref(o);
	return 0;
oom:
	snprintf(errstr, errstr_size, "out of memory");
fail:
	json_decref(o);
	valctl_recline_clear(out);
	return -1;
}
