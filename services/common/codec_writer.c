/*
 * codec_writer: a writer schema learnt from elsewhere (a schema registry's
 * answer to a Confluent-framed value's id), and how its data read as the
 * current schema of the record it holds. A schema that cannot be used still
 * makes a writer, one that refuses every value with its reason, so that the
 * registry client can keep the answer like any other; only running out of
 * memory makes none.
 */
#include "codec.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "errstr.h"
#include "resolve.h"

/* A writer that refuses every value with st and the message. */
static codec_status writer_refuses(codec_writer *w, codec_status st, const char *why)
{
	w->status = st;
	(void)snprintf(w->message, sizeof w->message, "%s", why);
	return CODEC_OK;
}

codec_status codec_writer_new(const codec *c, const char *json, size_t len, codec_writer **out,
                              char *errstr, size_t errstr_size)
{
	codec_writer *w = calloc(1, sizeof *w);
	const codec_schema *cur;
	const char *name;
	char err[200];
	int nomem = 0;

	*out = NULL;
	if (w == NULL)
		goto oom;
	w->rs = resolve_schema_parse(json, len, &nomem, err, sizeof err);
	if (w->rs == NULL) {
		if (nomem)
			goto oom;
		writer_refuses(w, CODEC_ERR_WRONG_SCHEMA, "not a valid Avro schema");
		goto done;
	}
	name = resolve_schema_record_name(w->rs);
	if (name == NULL) {
		writer_refuses(w, CODEC_ERR_WRONG_SCHEMA, "the schema is not a record");
		goto done;
	}
	/* The record's kind by its unqualified name, as resolution matches
	 * records. */
	const char *simple = strrchr(name, '.') ? strrchr(name, '.') + 1 : name;
	if (strcmp(simple, CODEC_REQUEST_RECORD) == 0) {
		w->kind = CODEC_KIND_REQUEST;
		cur = c->request;
		/* what a salvage reads by position */
		w->leading_ok =
		    resolve_schema_leading_strings(w->rs, "requestId", "requesterIdentity") == 1;
	} else if (strcmp(simple, CODEC_RESPONSE_RECORD) == 0) {
		w->kind = CODEC_KIND_RESPONSE;
		cur = c->response;
	} else {
		char why[160];
		(void)snprintf(why, sizeof why, "the schema is the record %.100s, of neither kind",
		               name);
		writer_refuses(w, CODEC_ERR_WRONG_SCHEMA, why);
		goto done;
	}
	w->plan = resolve_plan_new(w->rs, cur->rs, &nomem, err, sizeof err);
	if (w->plan == NULL) {
		if (nomem)
			goto oom;
		char why[200];
		(void)snprintf(why, sizeof why, "cannot be read as %s: %.150s", cur->file, err);
		writer_refuses(w, CODEC_ERR_RESOLVE, why);
	}
done:
	*out = w;
	return CODEC_OK;
oom:
	codec_writer_destroy(w);
	errstr_set(errstr, errstr_size, "out of memory");
	return CODEC_ERR_NOMEM;
}

void codec_writer_destroy(codec_writer *w)
{
	if (w == NULL)
		return;
	resolve_plan_destroy(w->plan);
	resolve_schema_destroy(w->rs);
	free(w);
}

codec_status codec_writer_status(const codec_writer *w)
{
	return w->status;
}
