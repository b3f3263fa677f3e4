/*
 * registry: the Confluent-compatible schema registry API over libcurl.
 *
 * One easy handle, reused so the connection is kept alive between calls.
 * Writers are kept by id in a small table with the oldest dropped first:
 * a registry's id never changes its schema, so an answer (a good writer or
 * one that refuses every value) is final; only "no such id" is asked again,
 * since the id may be registered later.
 */
#include "registry.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errstr.h"

#define MAX_BODY      (1024 * 1024) /* a schema of 256 KiB, escaped in JSON */
#define CACHE_ENTRIES 1024
#define CONTENT_TYPE  "application/vnd.schemaregistry.v1+json"

typedef struct {
	uint32_t id;
	codec_writer *w;
} cached;

struct registry {
	CURL *curl;
	struct curl_slist *headers;
	char *base;
	const codec *c;
	long timeout_ms;
	cached cache[CACHE_ENTRIES];
	size_t ncache, next; /* next: the slot to reuse once full */
	int offline;
	char curl_err[CURL_ERROR_SIZE];
};

registry *registry_new(const char *url, const codec *c, long timeout_ms, char *errstr,
                       size_t errstr_size)
{
	registry *r;
	size_t n;

	if (url == NULL || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
		errstr_set(errstr, errstr_size,
		           "the registry URL must begin with http:// or https://");
		return NULL;
	}
	/* curl_global_init() is not thread-safe in libcurl 7.88; it runs here,
	 * at start-up, before any other thread would use libcurl. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		errstr_set(errstr, errstr_size, "libcurl could not start");
		return NULL;
	}
	r = calloc(1, sizeof *r);
	if (r == NULL)
		goto oom;
	r->c = c;
	r->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
	n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		n--;
	r->base = strndup(url, n);
	r->curl = curl_easy_init();
	r->headers = curl_slist_append(NULL, "Content-Type: " CONTENT_TYPE);
	if (r->headers != NULL) {
		struct curl_slist *h =
		    curl_slist_append(r->headers, "Accept: " CONTENT_TYPE ", application/json");
		if (h == NULL) {
			curl_slist_free_all(r->headers);
			r->headers = NULL;
		} else {
			r->headers = h;
		}
	}
	if (r->base == NULL || r->curl == NULL || r->headers == NULL)
		goto oom;
	return r;
oom:
	registry_destroy(r);
	curl_global_cleanup();
	errstr_set(errstr, errstr_size, "out of memory");
	return NULL;
}

void registry_destroy(registry *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->ncache; i++)
		codec_writer_destroy(r->cache[i].w);
	if (r->curl != NULL)
		curl_easy_cleanup(r->curl);
	curl_slist_free_all(r->headers);
	free(r->base);
	free(r);
	curl_global_cleanup();
}

void registry_set_offline(registry *r, int offline)
{
	r->offline = offline;
}

/* ---- HTTP ---- */

typedef struct {
	char *buf;
	size_t len;
	bool too_big, nomem;
} body;

static size_t on_body(char *p, size_t size, size_t n, void *opaque)
{
	body *b = opaque;
	size_t add = size * n;
	if (add > MAX_BODY - b->len) {
		b->too_big = true;
		return 0; /* libcurl stops with CURLE_WRITE_ERROR */
	}
	char *nb = realloc(b->buf, b->len + add + 1);
	if (nb == NULL) {
		b->nomem = true;
		return 0;
	}
	b->buf = nb;
	memcpy(b->buf + b->len, p, add);
	b->len += add;
	b->buf[b->len] = '\0';
	return add;
}

/* The message of an error answer ({"error_code": ..., "message": ...}),
 * bounded, for errstr. */
static void answer_message(const body *b, char *out, size_t size)
{
	json_t *j = b->buf ? json_loadb(b->buf, b->len, 0, NULL) : NULL;
	const char *m = json_string_value(json_object_get(j, "message"));
	(void)snprintf(out, size, "%.200s", m ? m : "no message");
	json_decref(j);
}

/* One exchange: method on base + path, with a JSON body or none. On
 * REGISTRY_OK *answer is the parsed JSON of a 2xx answer (caller decrefs). */
static registry_status http(registry *r, const char *method, const char *path, const char *request,
                            json_t **answer, char *errstr, size_t errstr_size)
{
	char url[1024], msg[256];
	body b = {0};
	long code = 0;
	CURLcode rc;
	registry_status st;
	int n;

	*answer = NULL;
	if (r->offline) {
		errstr_set(errstr, errstr_size, "registry %s: not asked again yet after an outage",
		           r->base);
		return REGISTRY_UNAVAILABLE;
	}
	n = snprintf(url, sizeof url, "%s%s", r->base, path);
	if (n < 0 || (size_t)n >= sizeof url) {
		errstr_set(errstr, errstr_size, "the registry URL is too long");
		return REGISTRY_BAD_ANSWER;
	}
	curl_easy_reset(r->curl);
	r->curl_err[0] = '\0';
	if (curl_easy_setopt(r->curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, r->timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS,
	                     r->timeout_ms < 2000 ? r->timeout_ms : 2000L) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, &b) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_ERRORBUFFER, r->curl_err) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK ||
	    (request != NULL &&
	     curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, request) != CURLE_OK)) {
		errstr_set(errstr, errstr_size, "libcurl refused an option");
		return REGISTRY_NOMEM;
	}
	rc = curl_easy_perform(r->curl);
	if (b.nomem) {
		st = REGISTRY_NOMEM;
		errstr_set(errstr, errstr_size, "out of memory reading the registry's answer");
		goto done;
	}
	if (b.too_big) {
		st = REGISTRY_BAD_ANSWER;
		errstr_set(errstr, errstr_size, "the registry's answer to %s %s is over %d bytes",
		           method, path, MAX_BODY);
		goto done;
	}
	if (rc != CURLE_OK) {
		st = REGISTRY_UNAVAILABLE;
		errstr_set(errstr, errstr_size, "registry %s: %s", r->base,
		           r->curl_err[0] ? r->curl_err : curl_easy_strerror(rc));
		goto done;
	}
	(void)curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 200 && code < 300) {
		json_error_t jerr;
		*answer = b.buf ? json_loadb(b.buf, b.len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
		if (*answer == NULL) {
			st = REGISTRY_BAD_ANSWER;
			errstr_set(errstr, errstr_size,
			           "the registry's answer to %s %s is not JSON", method, path);
			goto done;
		}
		st = REGISTRY_OK;
		goto done;
	}
	answer_message(&b, msg, sizeof msg);
	if (code == 404)
		st = REGISTRY_NOT_FOUND;
	else if (code == 409 || code == 422)
		st = REGISTRY_REFUSED;
	else
		/* 5xx, 429, and the ones a configuration causes (401, 403):
		 * nothing is known of the schema; wait, as for an outage. */
		st = REGISTRY_UNAVAILABLE;
	errstr_set(errstr, errstr_size, "registry answered %ld to %s %s: %s", code, method, path,
	           msg);
done:
	free(b.buf);
	return st;
}

/* {"schema": text}, as the API takes it. */
static char *schema_body(const char *schema_json)
{
	json_t *j = json_pack("{s:s}", "schema", schema_json);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return s;
}

static int id_of(json_t *answer, uint32_t *id)
{
	json_t *j = json_object_get(answer, "id");
	if (!json_is_integer(j) || json_integer_value(j) < 0 ||
	    json_integer_value(j) > (json_int_t)UINT32_MAX)
		return -1;
	*id = (uint32_t)json_integer_value(j);
	return 0;
}

/* A subject in a path: topic names need no escaping, but a subject is not
 * always a topic name. */
static int subject_path(registry *r, const char *prefix, const char *subject, const char *suffix,
                        char *out, size_t size)
{
	char *esc = curl_easy_escape(r->curl, subject, 0);
	int n;
	if (esc == NULL)
		return -1;
	n = snprintf(out, size, "%s%s%s", prefix, esc, suffix);
	curl_free(esc);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* ---- Schemas by id ---- */

/* The writer of schema id: REGISTRY_OK and *w (borrowed; valid until the
 * next call on r), REGISTRY_NOT_FOUND (*w NULL), or an outage or bad answer
 * with errstr filled. */
static registry_status writer_by_id(registry *r, uint32_t id, const codec_writer **w, char *errstr,
                                    size_t errstr_size)
{
	char path[64];
	json_t *answer = NULL;
	codec_writer *made = NULL;
	registry_status st;
	const char *text;

	*w = NULL;
	for (size_t i = 0; i < r->ncache; i++) {
		if (r->cache[i].id == id) {
			*w = r->cache[i].w;
			return REGISTRY_OK;
		}
	}
	(void)snprintf(path, sizeof path, "/schemas/ids/%lu", (unsigned long)id);
	st = http(r, "GET", path, NULL, &answer, errstr, errstr_size);
	if (st != REGISTRY_OK)
		return st;
	text = json_string_value(json_object_get(answer, "schema"));
	if (text == NULL) {
		json_decref(answer);
		errstr_set(errstr, errstr_size, "the registry's answer for id %lu has no schema",
		           (unsigned long)id);
		return REGISTRY_BAD_ANSWER;
	}
	/* A schema of another type (PROTOBUF, JSON) is no Avro schema: the
	 * writer made of it refuses every value. */
	if (codec_writer_new(r->c, text, strlen(text), &made, errstr, errstr_size) != CODEC_OK) {
		json_decref(answer);
		return REGISTRY_NOMEM;
	}
	json_decref(answer);
	if (r->ncache < CACHE_ENTRIES) {
		r->cache[r->ncache++] = (cached){id, made};
	} else {
		codec_writer_destroy(r->cache[r->next].w);
		r->cache[r->next] = (cached){id, made};
		r->next = (r->next + 1) % CACHE_ENTRIES;
	}
	*w = made;
	return REGISTRY_OK;
}

/* ---- Subjects ---- */

registry_status registry_schema_id(registry *r, const char *subject, const char *schema_json,
                                   int register_missing, uint32_t *id, int *registered,
                                   char *errstr, size_t errstr_size)
{
	char path[512];
	json_t *answer = NULL;
	registry_status st;
	char *req = schema_body(schema_json);

	if (registered != NULL)
		*registered = 0;
	if (req == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		return REGISTRY_NOMEM;
	}
	if (subject_path(r, "/subjects/", subject, "", path, sizeof path) != 0) {
		free(req);
		errstr_set(errstr, errstr_size, "the subject is too long");
		return REGISTRY_BAD_ANSWER;
	}
	st = http(r, "POST", path, req, &answer, errstr, errstr_size);
	if (st == REGISTRY_NOT_FOUND && register_missing) {
		(void)subject_path(r, "/subjects/", subject, "/versions", path, sizeof path);
		st = http(r, "POST", path, req, &answer, errstr, errstr_size);
		if (st == REGISTRY_OK && registered != NULL)
			*registered = 1;
	}
	free(req);
	if (st != REGISTRY_OK)
		return st;
	if (id_of(answer, id) != 0) {
		json_decref(answer);
		errstr_set(errstr, errstr_size, "the registry's answer for %.200s has no id",
		           subject);
		return REGISTRY_BAD_ANSWER;
	}
	json_decref(answer);
	return REGISTRY_OK;
}

registry_status registry_set_compatibility(registry *r, const char *subject, const char *level,
                                           char *errstr, size_t errstr_size)
{
	char path[512];
	json_t *answer = NULL, *j = json_pack("{s:s}", "compatibility", level);
	char *req = j ? json_dumps(j, JSON_COMPACT) : NULL;
	registry_status st;

	json_decref(j);
	if (req == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		return REGISTRY_NOMEM;
	}
	if (subject_path(r, "/config/", subject, "", path, sizeof path) != 0) {
		free(req);
		errstr_set(errstr, errstr_size, "the subject is too long");
		return REGISTRY_BAD_ANSWER;
	}
	st = http(r, "PUT", path, req, &answer, errstr, errstr_size);
	free(req);
	json_decref(answer);
	return st;
}

/* ---- Decoding ---- */

/* The writer a value names: CODEC_OK with *w (NULL for an unknown id or a
 * frame too short to name one), or the status to return. */
static codec_status writer_of(registry *r, const void *value, size_t len, const codec_writer **w,
                              char *errstr, size_t errstr_size)
{
	uint32_t id;
	registry_status st;

	*w = NULL;
	if (codec_confluent_id(value, len, &id) != 0)
		return CODEC_OK; /* the codec refuses the frame itself */
	st = writer_by_id(r, id, w, errstr, errstr_size);
	switch (st) {
	case REGISTRY_OK:
	case REGISTRY_NOT_FOUND:
		return CODEC_OK;
	case REGISTRY_NOMEM:
		return CODEC_ERR_NOMEM;
	default:
		return CODEC_ERR_UNAVAILABLE;
	}
}

codec_status registry_decode_request(registry *r, const void *value, size_t len,
                                     codec_request **out, codec_salvage *salvage, char *errstr,
                                     size_t errstr_size)
{
	const codec_writer *w;
	codec_status st = writer_of(r, value, len, &w, errstr, errstr_size);

	*out = NULL;
	if (st != CODEC_OK) {
		if (salvage != NULL)
			memset(salvage, 0, sizeof *salvage);
		return st;
	}
	return codec_decode_request_confluent(r->c, w, value, len, out, salvage, errstr,
	                                      errstr_size);
}

codec_status registry_decode_response(registry *r, const void *value, size_t len,
                                      codec_response_owned **out, char *errstr, size_t errstr_size)
{
	const codec_writer *w;
	codec_status st = writer_of(r, value, len, &w, errstr, errstr_size);

	*out = NULL;
	if (st != CODEC_OK)
		return st;
	return codec_decode_response_confluent(r->c, w, value, len, out, errstr, errstr_size);
}
