/*
 * valctl provision: one VAL server provisioning request, end to end. The
 * request is built from a JSON file with the schema's field names and/or
 * from flags (flags win; see request.c), encoded with the project's codec,
 * and produced keyed by requesterIdentity with the reply headers and the
 * CloudEvents binary-mode headers. Before producing, a reader is placed at the end of
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
#include "request.h"
#include "utf8.h"
#include "util.h"
#include "wire.h"

#define RAW_VALUE_MAX   (64 * 1024 * 1024)
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

typedef struct {
	const char *file, *requester, *endpoint, *token, *token_file, *request_id, *supp_feat;
	const char *correlation_id, *raw_value_file;
	request_spec *services, *contents;
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
		r = request_spec_service(arg, &o->services[o->service_count], why, sizeof why);
		o->service_count++; /* its buf is freed either way */
		if (r != 0)
			return valctl_usage(sub, "%s", why);
		break;
	case OPT_CONTENT:
		r = request_spec_content(arg, &o->contents[o->content_count], why, sizeof why);
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
	request_flags flags;
	codec_limits limits;
	codec *cod = NULL;
	valctl_wire wire = {0};
	unsigned char *value = NULL;
	char *raw = NULL, *token = NULL;
	size_t value_len = 0, raw_len = 0;
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

	if (o.file != NULL && request_load_file(&req, o.file, errstr, sizeof errstr) != 0) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	if (o.token_file != NULL) {
		token = request_read_token(o.token_file, errstr, sizeof errstr);
		if (token == NULL) {
			valctl_err(sub, "%s", errstr);
			goto done;
		}
	}
	flags.requester = o.requester;
	flags.endpoint = o.endpoint;
	flags.token = o.token != NULL ? o.token : token;
	flags.request_id = o.request_id;
	flags.supp_feat = o.supp_feat;
	flags.services = o.services;
	flags.service_count = o.service_count;
	flags.contents = o.contents;
	flags.content_count = o.content_count;
	rc = request_apply(&req, &flags, sub);
	if (rc != 0)
		goto done;
	rc = VALCTL_EXIT_RUNTIME;

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
	request_specs_free(o.services, o.service_count);
	request_specs_free(o.contents, o.content_count);
	valctl_common_free(&common);
	return rc;
}
