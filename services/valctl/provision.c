/*
 * valctl provision: one VAL server provisioning request, end to end. The
 * request is built from a JSON file with the schema's field names and/or
 * from flags (flags win), encoded with the project's codec, and produced
 * keyed by requesterIdentity with the reply headers and the CloudEvents
 * binary-mode headers. Before producing, a reader is placed at the end of
 * every partition of the reply topic; the Result whose kafka_correlationId
 * and requestId are ours is printed, and the exit code tells SUCCESS (0),
 * FAILURE (1) or no answer in time (3).
 *
 * --raw-value-file sends arbitrary bytes instead, to test how the KM-S
 * treats undecodable input; it waits only for the delivery.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "codec.h"
#include "commands.h"
#include "file.h"
#include "kafka.h"
#include "num.h"
#include "utf8.h"
#include "util.h"
#include "wire.h"

#define RAW_VALUE_MAX   (64 * 1024 * 1024)
#define TOKEN_FILE_MAX  (1024 * 1024)
#define POLL_BATCH      64
#define REQUEST_ID_SIZE 37

static const char provision_help[] =
    "Usage: valctl provision [OPTIONS]\n"
    "\n"
    "Send one VAL server provisioning request and print its Result.\n"
    "Exit 0 on SUCCESS, 1 on FAILURE, 3 when no Result comes in time.\n"
    "\n"
    "The request (flags override the file):\n"
    "  --file FILE              JSON with the schema's field names: requestId,\n"
    "                           requesterIdentity, endpoint, credentials.accessToken,\n"
    "                           valServices[{valServiceId, keyFormat{formatType,\n"
    "                           formatVersion, content}}], sentAt, suppFeat\n"
    "  --requester ID           requesterIdentity (also the record key)\n"
    "  --endpoint URI           endpoint of the VAL server\n"
    "  --token T                the access token\n"
    "  --token-file F           ... read from a file\n"
    "  --service ID:FORMAT[:VERSION]  a VAL service and its key format (repeatable;\n"
    "                           replaces the file's list)\n"
    "  --content ID:KEY=VALUE   an entry of that service's content map (repeatable)\n"
    "  --request-id UUID        default: a random version 4 UUID\n"
    "  --supp-feat S            suppFeat\n"
    "\n"
    "Sending and waiting:\n"
    "  --correlation-id STR     kafka_correlationId (default: 16 random bytes)\n"
    "  --reply-partition N      add kafka_replyPartition N\n"
    "  --raw-value-file F       send the bytes of F as the value, wait for the\n"
    "                           delivery only, and exit 0\n"
    "  --timeout SECONDS        default 30\n"
    "  --json                   print the Result as a JSON object\n"
    "  -h, --help               this help\n"
    "\n";

enum {
	OPT_FILE = VALCTL_OPT_FIRST_FREE,
	OPT_REQUESTER,
	OPT_ENDPOINT,
	OPT_TOKEN,
	OPT_TOKEN_FILE,
	OPT_SERVICE,
	OPT_CONTENT,
	OPT_REQUEST_ID,
	OPT_SUPP_FEAT,
	OPT_CORRELATION_ID,
	OPT_REPLY_PARTITION,
	OPT_RAW_VALUE_FILE,
	OPT_TIMEOUT,
	OPT_JSON
};

/* A --service or --content flag, split; the pieces point into one malloc'd
 * copy of the argument (buf). */
typedef struct {
	char *buf;
	const char *id;
	codec_key_format_type format; /* --service */
	const char *version;          /* --service; NULL when absent */
	const char *key, *value;      /* --content */
} spec;

typedef struct {
	const char *file, *requester, *endpoint, *token, *token_file, *request_id, *supp_feat;
	const char *correlation_id, *raw_value_file;
	spec *services, *contents;
	size_t service_count, content_count;
	int64_t reply_partition; /* -1: no header */
	double timeout_s;
	int json;
} provision_opts;

/* What the delivery callback saw. */
typedef struct {
	int done;
	rd_kafka_resp_err_t err;
} delivery;

static void on_delivery(const rd_kafka_message_t *m, void *user)
{
	delivery *d = user;

	d->done = 1;
	d->err = m->err;
}

/* ---- building the request ---- */

static void service_clear(codec_val_service *s)
{
	size_t i;

	free(s->val_service_id);
	free(s->format_version);
	for (i = 0; i < s->content_count; i++) {
		free(s->content[i].key);
		free(s->content[i].value);
	}
	free(s->content);
	memset(s, 0, sizeof *s);
}

/* Frees what this file put in r (every member was malloc'd here). */
static void request_clear(codec_request *r)
{
	size_t i;

	free(r->request_id);
	free(r->requester_identity);
	free(r->endpoint);
	if (r->access_token != NULL)
		memset(r->access_token, 0, strlen(r->access_token));
	free(r->access_token);
	for (i = 0; i < r->service_count; i++)
		service_clear(&r->services[i]);
	free(r->services);
	free(r->supp_feat);
	memset(r, 0, sizeof *r);
}

/* Replace *dst with a copy of src (NULL stays NULL); 0 or -1. */
static int set_str(char **dst, const char *src)
{
	char *copy = NULL;

	if (src != NULL) {
		copy = strdup(src);
		if (copy == NULL)
			return -1;
	}
	free(*dst);
	*dst = copy;
	return 0;
}

static codec_val_service *find_service(codec_request *r, const char *id)
{
	size_t i;

	for (i = 0; i < r->service_count; i++) {
		if (strcmp(r->services[i].val_service_id, id) == 0)
			return &r->services[i];
	}
	return NULL;
}

static codec_val_service *add_service(codec_request *r, const char *id,
                                      codec_key_format_type format, const char *version)
{
	codec_val_service *grown, *s;

	grown = realloc(r->services, (r->service_count + 1) * sizeof *grown);
	if (grown == NULL)
		return NULL;
	r->services = grown;
	s = &r->services[r->service_count];
	memset(s, 0, sizeof *s);
	s->format_type = format;
	if (set_str(&s->val_service_id, id) != 0 || set_str(&s->format_version, version) != 0) {
		service_clear(s);
		return NULL;
	}
	r->service_count++;
	return s;
}

/* Set a content entry: a map, so an existing key gets the new value. */
static int set_content(codec_val_service *s, const char *key, const char *value)
{
	codec_kv *grown;
	size_t i;

	for (i = 0; i < s->content_count; i++) {
		if (strcmp(s->content[i].key, key) == 0)
			return set_str(&s->content[i].value, value);
	}
	grown = realloc(s->content, (s->content_count + 1) * sizeof *grown);
	if (grown == NULL)
		return -1;
	s->content = grown;
	s->content[s->content_count].key = NULL;
	s->content[s->content_count].value = NULL;
	if (set_str(&s->content[s->content_count].key, key) != 0 ||
	    set_str(&s->content[s->content_count].value, value) != 0) {
		free(s->content[s->content_count].key);
		return -1;
	}
	s->content_count++;
	return 0;
}

/* "ID:FORMAT[:VERSION]"; 0, or -1 with why filled. */
static int parse_service(const char *arg, spec *out, char *why, size_t why_size)
{
	char *colon, *format;

	memset(out, 0, sizeof *out);
	out->buf = strdup(arg);
	if (out->buf == NULL) {
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	colon = strchr(out->buf, ':');
	if (colon == NULL || colon == out->buf || colon[1] == '\0') {
		snprintf(why, why_size, "--service needs ID:FORMAT[:VERSION], got '%s'", arg);
		return -1;
	}
	*colon = '\0';
	out->id = out->buf;
	format = colon + 1;
	colon = strchr(format, ':');
	if (colon != NULL) {
		*colon = '\0';
		out->version = colon + 1;
	}
	if (codec_key_format_type_parse(format, &out->format) != 0) {
		snprintf(why, why_size, "--service %s: unknown key format '%s'", out->id, format);
		return -1;
	}
	return 0;
}

/* "ID:KEY=VALUE"; 0, or -1 with why filled. */
static int parse_content(const char *arg, spec *out, char *why, size_t why_size)
{
	char *colon, *eq;

	memset(out, 0, sizeof *out);
	out->buf = strdup(arg);
	if (out->buf == NULL) {
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	colon = strchr(out->buf, ':');
	eq = colon != NULL ? strchr(colon + 1, '=') : NULL;
	if (colon == NULL || colon == out->buf || eq == NULL || eq == colon + 1) {
		snprintf(why, why_size, "--content needs ID:KEY=VALUE, got '%s'", arg);
		return -1;
	}
	*colon = '\0';
	*eq = '\0';
	out->id = out->buf;
	out->key = colon + 1;
	out->value = eq + 1;
	return 0;
}

/* A string member of a JSON object into *out: NULL when absent or JSON null;
 * -1 when it is something else. */
static int json_str_member(const json_t *obj, const char *name, const char **out)
{
	const json_t *v = json_object_get(obj, name);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 0;
}

static int check_members(const json_t *obj, const char *const *allowed, const char *where,
                         char *errstr, size_t errstr_size)
{
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach((json_t *)(uintptr_t)obj, key, v)
	{
		for (i = 0; allowed[i] != NULL; i++) {
			if (strcmp(key, allowed[i]) == 0)
				break;
		}
		if (allowed[i] == NULL) {
			snprintf(errstr, errstr_size, "unknown field '%s' in %s", key, where);
			return -1;
		}
	}
	return 0;
}

static int load_service(codec_request *r, const json_t *js, size_t index, char *errstr,
                        size_t errstr_size)
{
	static const char *const service_fields[] = {"valServiceId", "keyFormat", NULL};
	static const char *const format_fields[] = {"formatType", "formatVersion", "content", NULL};
	const char *id, *type, *version, *key;
	codec_key_format_type format;
	const json_t *kf, *content;
	codec_val_service *s;
	json_t *v;

	if (!json_is_object(js) ||
	    check_members(js, service_fields, "valServices[]", errstr, errstr_size) != 0)
		goto bad;
	kf = json_object_get(js, "keyFormat");
	if (json_str_member(js, "valServiceId", &id) != 0 || id == NULL || !json_is_object(kf) ||
	    check_members(kf, format_fields, "keyFormat", errstr, errstr_size) != 0 ||
	    json_str_member(kf, "formatType", &type) != 0 || type == NULL ||
	    json_str_member(kf, "formatVersion", &version) != 0)
		goto bad;
	if (codec_key_format_type_parse(type, &format) != 0) {
		snprintf(errstr, errstr_size, "valServices[%zu]: unknown formatType '%s'", index,
		         type);
		return -1;
	}
	s = add_service(r, id, format, version);
	if (s == NULL)
		goto oom;
	content = json_object_get(kf, "content");
	if (content != NULL && !json_is_object(content))
		goto bad;
	json_object_foreach((json_t *)(uintptr_t)content, key, v)
	{
		if (!json_is_string(v))
			goto bad;
		if (set_content(s, key, json_string_value(v)) != 0)
			goto oom;
	}
	return 0;
bad:
	if (errstr[0] == '\0')
		snprintf(errstr, errstr_size,
		         "valServices[%zu] needs valServiceId and keyFormat {formatType, "
		         "formatVersion, content} of strings",
		         index);
	return -1;
oom:
	snprintf(errstr, errstr_size, "out of memory");
	return -1;
}

/* Fill r from the JSON file; 0, or -1 with errstr filled. */
static int load_file(codec_request *r, const char *path, char *errstr, size_t errstr_size)
{
	static const char *const fields[] = {
	    "requestId", "requesterIdentity", "endpoint", "credentials", "valServices",
	    "sentAt",    "suppFeat",          NULL};
	static const char *const cred_fields[] = {"accessToken", NULL};
	const char *request_id, *requester, *endpoint, *token = NULL, *supp_feat;
	const json_t *cred, *services, *sent_at;
	char why[400] = "";
	json_error_t jerr;
	json_t *root;
	size_t i;
	int rc = -1;

	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(errstr, errstr_size, "%s: %s (line %d)", path, jerr.text, jerr.line);
		return -1;
	}
	if (!json_is_object(root)) {
		snprintf(why, sizeof why, "not a JSON object");
		goto done;
	}
	if (check_members(root, fields, "the request", why, sizeof why) != 0)
		goto done;
	cred = json_object_get(root, "credentials");
	services = json_object_get(root, "valServices");
	sent_at = json_object_get(root, "sentAt");
	if (json_str_member(root, "requestId", &request_id) != 0 ||
	    json_str_member(root, "requesterIdentity", &requester) != 0 ||
	    json_str_member(root, "endpoint", &endpoint) != 0 ||
	    json_str_member(root, "suppFeat", &supp_feat) != 0) {
		snprintf(why, sizeof why,
		         "requestId, requesterIdentity, endpoint and suppFeat "
		         "must be strings");
		goto done;
	}
	if (cred != NULL &&
	    (!json_is_object(cred) ||
	     check_members(cred, cred_fields, "credentials", why, sizeof why) != 0 ||
	     json_str_member(cred, "accessToken", &token) != 0)) {
		if (why[0] == '\0')
			snprintf(why, sizeof why, "credentials must be {\"accessToken\": string}");
		goto done;
	}
	if (sent_at != NULL && !json_is_integer(sent_at)) {
		snprintf(why, sizeof why, "sentAt must be an integer (ms since the epoch)");
		goto done;
	}
	if (services != NULL && !json_is_array(services)) {
		snprintf(why, sizeof why, "valServices must be an array");
		goto done;
	}
	if (set_str(&r->request_id, request_id) != 0 ||
	    set_str(&r->requester_identity, requester) != 0 ||
	    set_str(&r->endpoint, endpoint) != 0 || set_str(&r->access_token, token) != 0 ||
	    set_str(&r->supp_feat, supp_feat) != 0) {
		snprintf(why, sizeof why, "out of memory");
		goto done;
	}
	if (sent_at != NULL)
		r->sent_at = (int64_t)json_integer_value(sent_at);
	for (i = 0; services != NULL && i < json_array_size(services); i++) {
		if (load_service(r, json_array_get(services, i), i, why, sizeof why) != 0)
			goto done;
	}
	rc = 0;
done:
	if (rc != 0)
		snprintf(errstr, errstr_size, "%s: %s", path, why);
	json_decref(root);
	return rc;
}

/* The token of --token-file: the file without its trailing white space. */
static char *read_token_file(const char *path, char *errstr, size_t errstr_size)
{
	char *t = file_read(path, TOKEN_FILE_MAX, NULL, errstr, errstr_size);
	size_t n;

	if (t == NULL)
		return NULL;
	n = strlen(t);
	while (n > 0 &&
	       (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
		t[--n] = '\0';
	return t;
}

/* ---- printing the Result ---- */

static json_t *headers_json(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *h = NULL;
	json_t *out = json_object();
	const char *name;
	const void *value;
	size_t size, i;

	if (out == NULL)
		return NULL;
	if (rd_kafka_message_headers((rd_kafka_message_t *)(uintptr_t)m, &h) !=
	        RD_KAFKA_RESP_ERR_NO_ERROR ||
	    h == NULL)
		return out;
	for (i = 0;
	     rd_kafka_header_get_all(h, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
	     i++) {
		json_t *v;

		if (value == NULL) {
			v = json_null();
		} else if (strcmp(name, "kafka_correlationId") != 0 &&
		           utf8_check(value, size, NULL) == UTF8_OK) {
			v = json_stringn(value, size);
		} else {
			/* Opaque bytes (the correlation id, or anything not
			 * text) are shown as hex. */
			char *hex = malloc(2 * size + 1);

			if (hex == NULL) {
				json_decref(out);
				return NULL;
			}
			valctl_hex(value, size, hex);
			v = json_string(hex);
			free(hex);
		}
		if (json_object_set_new(out, name, v) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

static int print_result(const codec_response_owned *r, const rd_kafka_message_t *m, int as_json)
{
	const char *cause = codec_cause_name(r->cause);
	json_t *o;
	char *detail;
	int rc;

	if (!as_json) {
		if (r->result == CODEC_RESULT_SUCCESS)
			return printf("SUCCESS requestId=%s kmsId=%s\n", r->request_id, r->kms_id) <
			               0
			           ? -1
			           : 0;
		detail = valctl_quote(r->detail != NULL ? r->detail : "");
		if (detail == NULL)
			return -1;
		rc = printf("FAILURE cause=%s detail=%s requestId=%s\n",
		            cause != NULL && cause[0] != '\0' ? cause : "NONE", detail,
		            r->request_id) < 0
		         ? -1
		         : 0;
		free(detail);
		return rc;
	}
	o = json_pack(
	    "{s:s, s:s, s:s, s:o, s:o, s:s, s:I, s:o*}", "requestId", r->request_id,
	    "requesterIdentity", r->requester_identity, "result", codec_result_name(r->result),
	    "cause", cause != NULL && cause[0] != '\0' ? json_string(cause) : json_null(), "detail",
	    r->detail != NULL ? json_string(r->detail) : json_null(), "kmsId", r->kms_id,
	    "processedAt", (json_int_t)r->processed_at, "headers", headers_json(m));
	if (o == NULL)
		return -1;
	rc = valctl_print_json(stdout, o);
	json_decref(o);
	return rc;
}

/* ---- sending and waiting ---- */

/* Is m the Result we wait for? 1 yes (and *out set), 0 no. */
static int match_result(valctl_wire *w, const rd_kafka_message_t *m, const void *corr,
                        size_t corr_len, const char *request_id, int verbose,
                        codec_response_owned **out)
{
	const void *h;
	size_t h_len;
	char errstr[256];
	codec_response_owned *r = NULL;
	codec_status st;

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (verbose)
			fprintf(stderr, "valctl provision: reading results: %s\n",
			        rd_kafka_message_errstr(m));
		return 0;
	}
	if (valctl_header_get(m, "kafka_correlationId", &h, &h_len) != 0 || h == NULL ||
	    h_len != corr_len || memcmp(h, corr, corr_len) != 0)
		return 0;
	st = valctl_wire_decode_response(w, m->payload, m->len, &r, errstr, sizeof errstr);
	if (st != CODEC_OK) {
		fprintf(stderr,
		        "valctl provision: a message with our correlation id is not a Result "
		        "(%s: %s); still waiting\n",
		        codec_status_name(st), errstr);
		return 0;
	}
	if (strcmp(r->request_id, request_id) != 0) {
		if (verbose)
			fprintf(stderr, "valctl provision: a Result with our correlation id "
			                "answers another requestId\n");
		codec_response_owned_free(r);
		return 0;
	}
	*out = r;
	return 1;
}

static int run(const valctl_common *c, const provision_opts *o, const char *request_id,
               const char *requester, const unsigned char *value, size_t value_len, valctl_wire *w)
{
	const char *sub = "provision";
	int64_t start_us = valctl_mono_us();
	int64_t deadline_us = start_us + (int64_t)(o->timeout_s * 1e6);
	valctl_kctx kctx;
	delivery dl = {0, RD_KAFKA_RESP_ERR_NO_ERROR};
	rd_kafka_t *producer = NULL;
	rd_kafka_headers_t *headers = NULL;
	valctl_tail *tail = NULL;
	rd_kafka_message_t *msgs[POLL_BATCH];
	codec_response_owned *result = NULL;
	unsigned char corr_random[16];
	const void *corr;
	size_t corr_len, n, i;
	char errstr[512];
	int timeout_ms = (int)(o->timeout_s * 1000.0);
	int rc = VALCTL_EXIT_RUNTIME;

	if (o->correlation_id != NULL) {
		corr = o->correlation_id;
		corr_len = strlen(o->correlation_id);
	} else {
		if (valctl_random(corr_random, sizeof corr_random, errstr, sizeof errstr) != 0) {
			valctl_err(sub, "%s", errstr);
			return VALCTL_EXIT_RUNTIME;
		}
		corr = corr_random;
		corr_len = sizeof corr_random;
	}

	memset(&kctx, 0, sizeof kctx);
	kctx.verbose = c->verbose;
	kctx.on_delivery = on_delivery;
	kctx.user = &dl;
	producer = valctl_producer_new(c, &kctx, timeout_ms, errstr, sizeof errstr);
	if (producer == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	if (valctl_producer_prepare(producer, c->requests_topic, timeout_ms, errstr,
	                            sizeof errstr) != 0) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	if (o->raw_value_file == NULL) {
		/* Placed before producing: the Result can only come after. */
		tail = valctl_tail_new(c, c->reply_topic, 0, timeout_ms, errstr, sizeof errstr);
		if (tail == NULL) {
			valctl_err(sub, "%s", errstr);
			goto done;
		}
	}
	headers = valctl_request_headers(c->reply_topic, corr, corr_len,
	                                 (int32_t)o->reply_partition, request_id, requester);
	if (headers == NULL) {
		valctl_err(sub, "cannot build the headers");
		goto done;
	}
	if (valctl_produce(producer, c->requests_topic, RD_KAFKA_PARTITION_UA, requester,
	                   requester != NULL ? strlen(requester) : 0, value, value_len, headers,
	                   NULL, deadline_us, errstr, sizeof errstr) != 0) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	headers = NULL; /* now owned by the message */

	while (result == NULL) {
		rd_kafka_poll(producer, 0);
		if (dl.done && dl.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			valctl_err(sub, "the request was not delivered to %s: %s",
			           c->requests_topic, rd_kafka_err2str(dl.err));
			goto done;
		}
		if (tail == NULL) {
			if (dl.done) {
				rc = VALCTL_EXIT_SUCCESS;
				goto done;
			}
			rd_kafka_poll(producer, 100);
		} else {
			int print_failed = 0;

			n = valctl_tail_poll(tail, 100, msgs, POLL_BATCH);
			for (i = 0; i < n; i++) {
				/* Printed while the message (and its headers) lives. */
				if (result == NULL &&
				    match_result(w, msgs[i], corr, corr_len, request_id, c->verbose,
				                 &result) == 1 &&
				    print_result(result, msgs[i], o->json) != 0)
					print_failed = 1;
				rd_kafka_message_destroy(msgs[i]);
			}
			if (print_failed) {
				valctl_err(sub, "cannot print the Result");
				goto done;
			}
			if (result != NULL)
				break;
		}
		if (!valctl_run) {
			valctl_err(sub, "interrupted before the Result came");
			goto done;
		}
		if (valctl_mono_us() >= deadline_us) {
			if (tail == NULL)
				valctl_err(sub, "the request was not delivered within %g s%s%s",
				           o->timeout_s, kctx.last_error[0] ? ": " : "",
				           kctx.last_error);
			else
				valctl_err(sub,
				           "no Result for requestId=%s on %s within %g s%s%s%s",
				           request_id, c->reply_topic, o->timeout_s,
				           dl.done ? "" : " (the request was not delivered either)",
				           valctl_tail_last_error(tail)[0] ? "; last error: " : "",
				           valctl_tail_last_error(tail));
			rc = VALCTL_EXIT_TIMEOUT;
			goto done;
		}
	}
	if (fflush(stdout) != 0) {
		valctl_err(sub, "cannot write the Result to stdout");
		goto done;
	}
	rc = result->result == CODEC_RESULT_SUCCESS ? VALCTL_EXIT_SUCCESS : VALCTL_EXIT_FAILURE;
done:
	if (producer != NULL) {
		/* The request is on its way or answered: a short flush lets
		 * the delivery report in before the handle goes. */
		rd_kafka_flush(producer, 1000);
		rd_kafka_destroy(producer);
	}
	if (headers != NULL)
		rd_kafka_headers_destroy(headers);
	valctl_tail_destroy(tail);
	codec_response_owned_free(result);
	return rc;
}

static void specs_free(spec *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(s[i].buf);
	free(s);
}

static int provision_option(void *ctx, const char *sub, int opt, const char *arg)
{
	provision_opts *o = ctx;
	char why[512];
	int r;

	switch (opt) {
	case OPT_FILE:
		o->file = arg;
		break;
	case OPT_REQUESTER:
		o->requester = arg;
		break;
	case OPT_ENDPOINT:
		o->endpoint = arg;
		break;
	case OPT_TOKEN:
		o->token = arg;
		break;
	case OPT_TOKEN_FILE:
		o->token_file = arg;
		break;
	case OPT_SERVICE:
		r = parse_service(arg, &o->services[o->service_count], why, sizeof why);
		o->service_count++; /* its buf is freed either way */
		if (r != 0)
			return valctl_usage(sub, "%s", why);
		break;
	case OPT_CONTENT:
		r = parse_content(arg, &o->contents[o->content_count], why, sizeof why);
		o->content_count++;
		if (r != 0)
			return valctl_usage(sub, "%s", why);
		break;
	case OPT_REQUEST_ID:
		o->request_id = arg;
		break;
	case OPT_SUPP_FEAT:
		o->supp_feat = arg;
		break;
	case OPT_CORRELATION_ID:
		if (arg[0] == '\0')
			return valctl_usage(sub, "--correlation-id must not be empty");
		o->correlation_id = arg;
		break;
	case OPT_REPLY_PARTITION:
		if (num_parse_i64(arg, 0, INT32_MAX, &o->reply_partition) != 0)
			return valctl_usage(sub,
			                    "--reply-partition needs a partition number "
			                    "0..2147483647, got '%s'",
			                    arg);
		break;
	case OPT_RAW_VALUE_FILE:
		o->raw_value_file = arg;
		break;
	case OPT_TIMEOUT:
		return valctl_parse_seconds(sub, "--timeout", arg, &o->timeout_s);
	case OPT_JSON:
		o->json = 1;
		break;
	default:
		return VALCTL_NOT_MINE;
	}
	return VALCTL_GO_ON;
}

int valctl_cmd_provision(int argc, char **argv)
{
	static const struct option opts[] = {
	    VALCTL_COMMON_LONGOPTS,
	    {"file", required_argument, NULL, OPT_FILE},
	    {"requester", required_argument, NULL, OPT_REQUESTER},
	    {"endpoint", required_argument, NULL, OPT_ENDPOINT},
	    {"token", required_argument, NULL, OPT_TOKEN},
	    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
	    {"service", required_argument, NULL, OPT_SERVICE},
	    {"content", required_argument, NULL, OPT_CONTENT},
	    {"request-id", required_argument, NULL, OPT_REQUEST_ID},
	    {"supp-feat", required_argument, NULL, OPT_SUPP_FEAT},
	    {"correlation-id", required_argument, NULL, OPT_CORRELATION_ID},
	    {"reply-partition", required_argument, NULL, OPT_REPLY_PARTITION},
	    {"raw-value-file", required_argument, NULL, OPT_RAW_VALUE_FILE},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *sub = "provision";
	valctl_common common;
	provision_opts o;
	codec_request req;
	codec_limits limits;
	codec *cod = NULL;
	valctl_wire wire = {0};
	unsigned char *value = NULL;
	char *raw = NULL, *token = NULL;
	size_t value_len = 0, raw_len = 0, i;
	char request_id[REQUEST_ID_SIZE];
	char errstr[512];
	const char *rid;
	int r, rc = VALCTL_EXIT_RUNTIME;

	valctl_common_init(&common);
	memset(&o, 0, sizeof o);
	memset(&req, 0, sizeof req);
	o.reply_partition = -1;
	o.timeout_s = 30;
	/* Every --service and --content fits in argc slots. */
	o.services = calloc((size_t)argc + 1, sizeof *o.services);
	o.contents = calloc((size_t)argc + 1, sizeof *o.contents);
	if (o.services == NULL || o.contents == NULL) {
		valctl_err(sub, "out of memory");
		goto done;
	}
	r = valctl_parse(&common, sub, provision_help, opts, provision_option, &o, 0, argc, argv);
	if (r != VALCTL_GO_ON) {
		rc = r;
		goto done;
	}
	if (o.token != NULL && o.token_file != NULL) {
		rc = valctl_usage(sub, "give --token or --token-file, not both");
		goto done;
	}
	if (o.raw_value_file != NULL &&
	    (o.file != NULL || o.service_count > 0 || o.content_count > 0 || o.token != NULL ||
	     o.token_file != NULL || o.endpoint != NULL)) {
		rc = valctl_usage(sub, "--raw-value-file sends its bytes as they are; it takes "
		                       "no request fields but --requester and --request-id");
		goto done;
	}
	if (o.raw_value_file == NULL && o.file == NULL &&
	    (o.requester == NULL || o.endpoint == NULL ||
	     (o.token == NULL && o.token_file == NULL) || o.service_count == 0)) {
		rc = valctl_usage(sub, "--requester, --endpoint, --token (or --token-file) and "
		                       "at least one --service are required (or --file)");
		goto done;
	}

	if (o.raw_value_file != NULL) {
		raw = file_read(o.raw_value_file, RAW_VALUE_MAX, &raw_len, errstr, sizeof errstr);
		if (raw == NULL) {
			valctl_err(sub, "%s", errstr);
			goto done;
		}
		rid = o.request_id;
		if (rid == NULL) {
			if (valctl_uuid_v4(request_id, errstr, sizeof errstr) != 0) {
				valctl_err(sub, "%s", errstr);
				goto done;
			}
			rid = request_id;
		}
		rc = run(&common, &o, rid, o.requester, (const unsigned char *)raw, raw_len, NULL);
		goto done;
	}

	if (o.file != NULL && load_file(&req, o.file, errstr, sizeof errstr) != 0) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	if (o.token_file != NULL) {
		token = read_token_file(o.token_file, errstr, sizeof errstr);
		if (token == NULL) {
			valctl_err(sub, "%s", errstr);
			goto done;
		}
	}
	if ((o.requester != NULL && set_str(&req.requester_identity, o.requester) != 0) ||
	    (o.endpoint != NULL && set_str(&req.endpoint, o.endpoint) != 0) ||
	    (o.token != NULL && set_str(&req.access_token, o.token) != 0) ||
	    (token != NULL && set_str(&req.access_token, token) != 0) ||
	    (o.request_id != NULL && set_str(&req.request_id, o.request_id) != 0) ||
	    (o.supp_feat != NULL && set_str(&req.supp_feat, o.supp_feat) != 0)) {
		valctl_err(sub, "out of memory");
		goto done;
	}
	if (o.service_count > 0) {
		for (i = 0; i < req.service_count; i++)
			service_clear(&req.services[i]);
		req.service_count = 0;
	}
	for (i = 0; i < o.service_count; i++) {
		if (find_service(&req, o.services[i].id) != NULL) {
			rc = valctl_usage(sub, "--service %s given twice", o.services[i].id);
			goto done;
		}
		if (add_service(&req, o.services[i].id, o.services[i].format,
		                o.services[i].version) == NULL) {
			valctl_err(sub, "out of memory");
			goto done;
		}
	}
	for (i = 0; i < o.content_count; i++) {
		codec_val_service *s = find_service(&req, o.contents[i].id);

		if (s == NULL) {
			rc = valctl_usage(sub, "--content %s: no --service %s", o.contents[i].id,
			                  o.contents[i].id);
			goto done;
		}
		if (set_content(s, o.contents[i].key, o.contents[i].value) != 0) {
			valctl_err(sub, "out of memory");
			goto done;
		}
	}
	if (req.requester_identity == NULL || req.endpoint == NULL || req.access_token == NULL) {
		rc = valctl_usage(sub, "the request lacks requesterIdentity, endpoint or "
		                       "accessToken (from --file or flags)");
		goto done;
	}
	if (req.request_id == NULL) {
		if (valctl_uuid_v4(request_id, errstr, sizeof errstr) != 0 ||
		    set_str(&req.request_id, request_id) != 0) {
			valctl_err(sub, "cannot make a request id");
			goto done;
		}
	}
	if (req.sent_at == 0)
		req.sent_at = valctl_now_ms();

	codec_limits_default(&limits);
	cod = codec_new(&limits, errstr, sizeof errstr);
	if (cod == NULL) {
		valctl_err(sub, "cannot load the schemas: %s", errstr);
		goto done;
	}
	rc = valctl_wire_open(&wire, &common, cod, sub);
	if (rc != 0)
		goto done;
	rc = VALCTL_EXIT_RUNTIME;
	if (valctl_wire_encode(&wire, &req, &value, &value_len, errstr, sizeof errstr) != 0) {
		valctl_err(sub, "cannot encode the request: %s", errstr);
		goto done;
	}
	rc = run(&common, &o, req.request_id, req.requester_identity, value, value_len, &wire);
done:
	valctl_wire_close(&wire);
	free(value);
	codec_destroy(cod);
	if (token != NULL) {
		memset(token, 0, strlen(token));
		free(token);
	}
	free(raw);
	request_clear(&req);
	specs_free(o.services, o.service_count);
	specs_free(o.contents, o.content_count);
	valctl_common_free(&common);
	return rc;
}
