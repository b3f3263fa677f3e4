/*
 * valctl fleet: many VAL servers at once, for load tests and benchmarks. N
 * servers, each with its own token, send M requests each without waiting;
 * request j of server i carries content entry "seq" = j, and all of a
 * server's requests share its key, so the order in which its Results come
 * back can be checked against the order they were sent.
 *
 * Every requestId is made before the first send and put in a table
 * (fleet_table.c) that no one changes afterwards; the sender thread writes
 * only the send time of an entry, the reader thread only what concerns its
 * Result, so the two need no lock. The reader starts at the reply topic's
 * high watermarks taken before the first send. At the end: a summary
 * (fleet_summary.c) of counts, causes, throughput and latency (send to
 * Result), and the rate between the first and the last Result.
 *
 * With --acked-file, fleet says when the broker holds every request: a
 * benchmark can pre-produce a backlog with no KM-S running, start the KM-S
 * once the file appears, and read how fast the backlog drained from the
 * drain_* figures, which do not count the KM-S's start.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "codec.h"
#include "commands.h"
#include "file.h"
#include "fleet_summary.h"
#include "fleet_table.h"
#include "jwt.h"
#include "kafka.h"
#include "num.h"
#include "token.h"
#include "util.h"
#include "wire.h"

#define MAX_SERVERS  100000
#define MAX_REQUESTS 1000000
#define MAX_TOTAL    2000000
#define MAX_SERVICES 64
#define KEY_FILE_MAX (1024 * 1024)
#define READ_BATCH   256

static const char fleet_help[] =
    "Usage: valctl fleet --servers N --requests M --key PEM --iss ISS --vsp-id VSP [OPTIONS]\n"
    "\n"
    "Run N VAL servers, each with its own token (client_id = PREFIX + index), that\n"
    "send M requests each without waiting (request j carries content seq=j), collect\n"
    "the Results from the reply topic and print a summary: counts per result and\n"
    "cause, missing and duplicate Results, Results out of per-server order,\n"
    "throughput and latency (send to Result), and the drain rate: Results per second\n"
    "between the first and the last Result. Exit 1 if a Result is missing.\n"
    "\n"
    "  --servers N          number of VAL servers\n"
    "  --requests M         requests per server\n"
    "  --key PEM            the token issuer's private key\n"
    "  --iss ISS            issuer\n"
    "  --kid KID            key id in the token header\n"
    "  --alg ALG            token algorithm (default ES256)\n"
    "  --vsp-id VSP         VAL service provider (repeatable: servers are spread over\n"
    "                       them round-robin)\n"
    "  --services A,B,...   VAL services of each request (default v2x.a)\n"
    "  --formats F[,...]    key format of each service, one for all or one per\n"
    "                       service (default JWK)\n"
    "  --prefix P           requester identity prefix (default fleet-)\n"
    "  --rate R             requests per second over all servers (default 0: no limit)\n"
    "  --timeout S          wait for Results at most S seconds after the last send\n"
    "                       (default 30)\n"
    "  --acked-file PATH    once the broker has acknowledged every request, write\n"
    "                       PATH (one line: sent=N), then wait for the Results; if a\n"
    "                       request is not acknowledged within --timeout, exit 4\n"
    "                       without waiting for Results\n"
    "  --json               print the summary as a JSON object\n"
    "  -h, --help           this help\n"
    "\n";

enum {
	OPT_SERVERS = VALCTL_OPT_FIRST_FREE,
	OPT_REQUESTS,
	OPT_KEY,
	OPT_ISS,
	OPT_KID,
	OPT_ALG,
	OPT_VSP_ID,
	OPT_SERVICES,
	OPT_FORMATS,
	OPT_PREFIX,
	OPT_RATE,
	OPT_TIMEOUT,
	OPT_ACKED,
	OPT_JSON
};

typedef struct {
	/* Fixed before the reader starts. */
	fleet_table tab;
	valctl_tail *tail;
	codec *decoder;    /* the reader's own: a codec is not shared by threads */
	valctl_wire dwire; /* the reader's, over decoder */
	size_t servers;
	int64_t *last_seq; /* per server: the highest seq answered so far */
	/* Written by the reader only; read by the sender after the join. */
	size_t duplicates, out_of_order, foreign, undecodable;
	/* Shared. */
	atomic_size_t received; /* distinct Results */
	atomic_int stop;
	/* The sender's. */
	size_t delivery_errors;
} fleet;

static void on_result(fleet *f, const rd_kafka_message_t *m, int64_t now_us)
{
	codec_response_owned *r = NULL;
	const void *corr = NULL;
	size_t corr_len = 0;
	char errstr[256];
	fleet_entry *e;

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (valctl_wire_decode_response(&f->dwire, m->payload, m->len, &r, errstr, sizeof errstr) !=
	    CODEC_OK) {
		f->undecodable++;
		return;
	}
	e = fleet_table_find(&f->tab, r->request_id);
	/* Ours only if it also echoes the correlation id we sent with it. */
	if (e != NULL &&
	    (valctl_header_get(m, "kafka_correlationId", &corr, &corr_len) != 0 || corr == NULL ||
	     corr_len != strlen(e->id) || memcmp(corr, e->id, corr_len) != 0))
		e = NULL;
	if (e == NULL) {
		f->foreign++; /* another client's traffic, or not an answer to us */
	} else if (e->recv_us != 0) {
		f->duplicates++;
	} else {
		e->recv_us = now_us;
		e->result = (int)r->result;
		e->cause = (int)r->cause;
		/* Results of one server come back in the order it sent them
		 * unless the KM-S reorders a partition. */
		if ((int64_t)e->seq < f->last_seq[e->server])
			f->out_of_order++;
		else
			f->last_seq[e->server] = e->seq;
		atomic_fetch_add(&f->received, 1);
	}
	codec_response_owned_free(r);
}

static void *reader_main(void *arg)
{
	fleet *f = arg;
	rd_kafka_message_t *msgs[READ_BATCH];
	size_t n, i;
	int64_t now;

	while (!atomic_load(&f->stop)) {
		n = valctl_tail_poll(f->tail, 100, msgs, READ_BATCH);
		now = valctl_mono_us();
		for (i = 0; i < n; i++) {
			on_result(f, msgs[i], now);
			rd_kafka_message_destroy(msgs[i]);
		}
	}
	return NULL;
}

static void on_delivery(const rd_kafka_message_t *m, void *user)
{
	fleet *f = user;
	fleet_entry *e = m->_private;

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && e != NULL && !e->delivery_failed) {
		e->delivery_failed = 1;
		f->delivery_errors++;
	}
}

/* Split a comma-separated list into at most max items pointing into buf
 * (a copy the caller frees); the count, or -1 when an item is empty or there
 * are too many. */
static int split_list(const char *list, char **buf, char **items, int max)
{
	char *p;
	int n = 0;

	*buf = strdup(list);
	if (*buf == NULL)
		return -1;
	p = *buf;
	for (;;) {
		char *comma = strchr(p, ',');

		if (comma != NULL)
			*comma = '\0';
		if (p[0] == '\0' || n == max)
			return -1;
		items[n++] = p;
		if (comma == NULL)
			return n;
		p = comma + 1;
	}
}

typedef struct {
	size_t servers, requests;
	const char *key_file, *iss, *kid, *prefix, *services, *formats;
	const char **vsp_ids;
	size_t vsp_count;
	jwt_alg alg;
	const char *acked_file; /* NULL: none */
	double rate, timeout_s;
	int json;
} fleet_opts;

/* Write "sent=N" to path through a temporary file renamed into place, so
 * that whoever waits for path never reads it half written. */
static int write_acked_file(const char *path, size_t sent, char *errstr, size_t errstr_size)
{
	char tmp[4096], line[32];
	int len = snprintf(line, sizeof line, "sent=%zu\n", sent);

	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
		snprintf(errstr, errstr_size, "the path %s is too long", path);
		return -1;
	}
	if (valctl_write_file(tmp, line, (size_t)len, 0644, errstr, errstr_size) != 0)
		return -1;
	if (rename(tmp, path) != 0) {
		snprintf(errstr, errstr_size, "cannot put %s in place: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Sleep until target_us (monotonic), serving the producer's events. */
static void pace(rd_kafka_t *rk, int64_t target_us)
{
	int64_t now, wait;

	while (valctl_run && (now = valctl_mono_us()) < target_us) {
		wait = target_us - now;
		if (wait >= 1000) {
			rd_kafka_poll(rk, (int)(wait / 1000));
		} else {
			struct timespec ts = {0, (long)wait * 1000L};

			rd_kafka_poll(rk, 0);
			nanosleep(&ts, NULL);
		}
	}
}

static int run(const valctl_common *c, const fleet_opts *o)
{
	const char *sub = "fleet";
	fleet f;
	fleet_summary ri;
	valctl_kctx kctx;
	codec_limits limits;
	codec *encoder = NULL;
	valctl_wire ewire = {0};
	rd_kafka_t *producer = NULL;
	char **tokens = NULL, *key_pem = NULL, *svc_buf = NULL, *fmt_buf = NULL;
	char *svc_items[MAX_SERVICES], *fmt_items[MAX_SERVICES];
	codec_val_service services[MAX_SERVICES];
	codec_kv seq_kv[MAX_SERVICES];
	char seq_text[24], requester[256], endpoint[300];
	size_t total = o->servers * o->requests, i, j, k;
	int nsvc, nfmt, reader_started = 0, acked_failed = 0, rc = VALCTL_EXIT_RUNTIME;
	pthread_t reader;
	int64_t deadline_us;
	char errstr[512];

	memset(&f, 0, sizeof f);
	memset(&ri, 0, sizeof ri);
	atomic_init(&f.received, 0);
	atomic_init(&f.stop, 0);
	ri.servers = o->servers;
	ri.requests = o->requests;
	ri.as_json = o->json;

	nsvc = split_list(o->services, &svc_buf, svc_items, MAX_SERVICES);
	nfmt = split_list(o->formats, &fmt_buf, fmt_items, MAX_SERVICES);
	if (nsvc < 0 || nfmt < 0 || (nfmt != 1 && nfmt != nsvc)) {
		rc = valctl_usage(sub, "--services needs A,B,... and --formats one format or "
		                       "one per service");
		goto done;
	}
	memset(services, 0, sizeof services);
	for (k = 0; k < (size_t)nsvc; k++) {
		const char *fmt = fmt_items[nfmt == 1 ? 0 : k];

		if (codec_key_format_type_parse(fmt, &services[k].format_type) != 0) {
			rc = valctl_usage(sub, "unknown key format '%s'", fmt);
			goto done;
		}
		services[k].val_service_id = svc_items[k];
		seq_kv[k].key = (char *)(uintptr_t) "seq";
		seq_kv[k].value = seq_text;
		services[k].content = &seq_kv[k];
		services[k].content_count = 1;
	}
	if (snprintf(requester, sizeof requester, "%s%zu", o->prefix, o->servers) >=
	    (int)sizeof requester) {
		rc = valctl_usage(sub, "--prefix is too long");
		goto done;
	}

	/* Everything that can fail before a request is sent, first. */
	key_pem = file_read(o->key_file, KEY_FILE_MAX, NULL, errstr, sizeof errstr);
	if (key_pem == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	tokens = calloc(o->servers, sizeof *tokens);
	f.last_seq = malloc(o->servers * sizeof *f.last_seq);
	if (tokens == NULL || f.last_seq == NULL || fleet_table_init(&f.tab, total) != 0) {
		valctl_err(sub, "out of memory for %zu requests", total);
		goto done;
	}
	f.servers = o->servers;
	for (i = 0; i < o->servers; i++) {
		valctl_token_claims tc = {o->iss,   requester, o->vsp_ids[i % o->vsp_count],
		                          "ss-kpp", 3600,      1};
		json_t *payload;

		f.last_seq[i] = -1;
		snprintf(requester, sizeof requester, "%s%zu", o->prefix, i);
		payload = valctl_token_payload(&tc, errstr, sizeof errstr);
		if (payload != NULL) {
			tokens[i] = valctl_token_sign(key_pem, o->alg, o->kid, payload, errstr,
			                              sizeof errstr);
			json_decref(payload);
		}
		if (payload == NULL || tokens[i] == NULL) {
			valctl_err(sub, "cannot make the token of %s: %s", requester, errstr);
			goto done;
		}
	}
	/* Request j of server i is entry j * servers + i: the send order. */
	for (j = 0; j < o->requests; j++) {
		for (i = 0; i < o->servers; i++) {
			fleet_entry *e = &f.tab.entries[j * o->servers + i];

			e->server = (uint32_t)i;
			e->seq = (uint32_t)j;
			e->result = -1;
			e->cause = -1;
			if (valctl_uuid_v4(e->id, errstr, sizeof errstr) != 0) {
				valctl_err(sub, "%s", errstr);
				goto done;
			}
			if (fleet_table_insert(&f.tab, j * o->servers + i) != 0) {
				valctl_err(sub, "two random request ids are equal");
				goto done;
			}
		}
	}
	codec_limits_default(&limits);
	encoder = codec_new(&limits, errstr, sizeof errstr);
	f.decoder = codec_new(&limits, errstr, sizeof errstr);
	if (encoder == NULL || f.decoder == NULL) {
		valctl_err(sub, "cannot load the schemas: %s", errstr);
		goto done;
	}
	{
		valctl_common reading = *c;
		/* The reader only reads: it registers nothing. */
		reading.framing = CODEC_FRAMING_SINGLE_OBJECT;
		int wrc = valctl_wire_open(&ewire, c, encoder, sub);
		if (wrc == 0)
			wrc = valctl_wire_open(&f.dwire, &reading, f.decoder, sub);
		if (wrc != 0) {
			rc = wrc;
			goto done;
		}
	}
	memset(&kctx, 0, sizeof kctx);
	kctx.verbose = c->verbose;
	kctx.on_delivery = on_delivery;
	kctx.user = &f;
	producer = valctl_producer_new(c, &kctx, (int)(o->timeout_s * 1000.0) + 30000, errstr,
	                               sizeof errstr);
	if (producer == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	if (valctl_producer_prepare(producer, c->requests_topic, 30000, errstr, sizeof errstr) !=
	    0) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	f.tail = valctl_tail_new(c, c->reply_topic, 0, 30000, errstr, sizeof errstr);
	if (f.tail == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	if (pthread_create(&reader, NULL, reader_main, &f) != 0) {
		valctl_err(sub, "cannot start the reader thread");
		goto done;
	}
	reader_started = 1;

	ri.first_send_us = valctl_mono_us();
	for (k = 0; k < total && valctl_run; k++) {
		fleet_entry *e = &f.tab.entries[k];
		codec_request req;
		rd_kafka_headers_t *h;
		unsigned char *value = NULL;
		size_t value_len = 0;
		int r;

		if (o->rate > 0)
			pace(producer, ri.first_send_us + (int64_t)((double)k * 1e6 / o->rate));
		snprintf(requester, sizeof requester, "%s%zu", o->prefix, (size_t)e->server);
		snprintf(endpoint, sizeof endpoint, "https://%s.val.example/kpp", requester);
		snprintf(seq_text, sizeof seq_text, "%u", e->seq);
		memset(&req, 0, sizeof req);
		req.request_id = e->id;
		req.requester_identity = requester;
		req.endpoint = endpoint;
		req.access_token = tokens[e->server];
		req.services = services;
		req.service_count = (size_t)nsvc;
		req.sent_at = valctl_now_ms();
		if (valctl_wire_encode(&ewire, &req, &value, &value_len, errstr, sizeof errstr) !=
		    0) {
			valctl_err(sub, "cannot encode a request: %s", errstr);
			break;
		}
		/* The requestId doubles as the correlation id. */
		h = valctl_request_headers(c->reply_topic, e->id, strlen(e->id), -1, e->id,
		                           requester);
		if (h == NULL) {
			free(value);
			valctl_err(sub, "cannot build the headers");
			break;
		}
		e->sent_us = valctl_mono_us();
		r = valctl_produce(producer, c->requests_topic, RD_KAFKA_PARTITION_UA, requester,
		                   strlen(requester), value, value_len, h, e,
		                   e->sent_us + (int64_t)(o->timeout_s * 1e6), errstr,
		                   sizeof errstr);
		free(value);
		if (r != 0) {
			e->sent_us = 0;
			rd_kafka_headers_destroy(h);
			valctl_err(sub, "%s", errstr);
			break;
		}
		ri.sent++;
		ri.last_send_us = e->sent_us;
		rd_kafka_poll(producer, 0);
	}

	/* Tell the caller the backlog is in the broker. Results that come
	 * meanwhile are collected by the reader all the same. Whoever waits for
	 * the file waits in vain if it is not written, so do not wait for
	 * Results then either. */
	if (o->acked_file != NULL && valctl_run) {
		acked_failed = 1;
		if (ri.sent < total) {
			/* The send loop said why. */
		} else if (rd_kafka_flush(producer, (int)(o->timeout_s * 1000.0)) !=
		           RD_KAFKA_RESP_ERR_NO_ERROR) {
			valctl_err(sub, "%d requests not acknowledged after %.0f s",
			           rd_kafka_outq_len(producer), o->timeout_s);
		} else if (f.delivery_errors > 0) {
			valctl_err(sub, "%zu of %zu requests were not delivered", f.delivery_errors,
			           total);
		} else if (write_acked_file(o->acked_file, ri.sent, errstr, sizeof errstr) != 0) {
			valctl_err(sub, "%s", errstr);
		} else {
			acked_failed = 0;
		}
	}

	/* Wait for the Results of everything delivered. */
	deadline_us = valctl_mono_us() + (int64_t)(o->timeout_s * 1e6);
	while (valctl_run && !acked_failed && valctl_mono_us() < deadline_us &&
	       atomic_load(&f.received) + f.delivery_errors < ri.sent)
		rd_kafka_poll(producer, 20);
	rd_kafka_flush(producer, 5000);
	atomic_store(&f.stop, 1);
	pthread_join(reader, NULL);
	reader_started = 0;

	if (!valctl_run)
		valctl_err(sub, "interrupted");
	ri.received = atomic_load(&f.received);
	ri.duplicates = f.duplicates;
	ri.out_of_order = f.out_of_order;
	ri.foreign = f.foreign;
	ri.undecodable = f.undecodable;
	ri.delivery_errors = f.delivery_errors;
	if (fleet_summary_print(&f.tab, &ri) != 0 || fflush(stdout) != 0) {
		valctl_err(sub, "cannot write the summary to stdout");
		goto done;
	}
	if (acked_failed) {
		rc = VALCTL_EXIT_RUNTIME;
	} else if (ri.sent < total || f.delivery_errors > 0) {
		if (valctl_run)
			valctl_err(sub, "%zu of %zu requests were not delivered",
			           total - ri.sent + f.delivery_errors, total);
		rc = VALCTL_EXIT_RUNTIME;
	} else {
		rc = atomic_load(&f.received) < ri.sent ? VALCTL_EXIT_FAILURE : VALCTL_EXIT_SUCCESS;
	}
done:
	if (reader_started) {
		atomic_store(&f.stop, 1);
		pthread_join(reader, NULL);
	}
	if (producer != NULL) {
		rd_kafka_flush(producer, 1000);
		rd_kafka_destroy(producer);
	}
	valctl_tail_destroy(f.tail);
	valctl_wire_close(&ewire);
	valctl_wire_close(&f.dwire);
	codec_destroy(encoder);
	codec_destroy(f.decoder);
	for (i = 0; tokens != NULL && i < o->servers; i++)
		free(tokens[i]);
	free(tokens);
	if (key_pem != NULL) {
		memset(key_pem, 0, strlen(key_pem));
		free(key_pem);
	}
	free(f.last_seq);
	fleet_table_free(&f.tab);
	free(svc_buf);
	free(fmt_buf);
	return rc;
}

static int fleet_option(void *ctx, const char *sub, int opt, const char *arg)
{
	fleet_opts *o = ctx;
	int64_t v;

	switch (opt) {
	case OPT_SERVERS:
		if (num_parse_i64(arg, 1, MAX_SERVERS, &v) != 0)
			return valctl_usage(sub, "--servers needs 1..%d, got '%s'", MAX_SERVERS,
			                    arg);
		o->servers = (size_t)v;
		break;
	case OPT_REQUESTS:
		if (num_parse_i64(arg, 1, MAX_REQUESTS, &v) != 0)
			return valctl_usage(sub, "--requests needs 1..%d, got '%s'", MAX_REQUESTS,
			                    arg);
		o->requests = (size_t)v;
		break;
	case OPT_KEY:
		o->key_file = arg;
		break;
	case OPT_ISS:
		o->iss = arg;
		break;
	case OPT_KID:
		o->kid = arg;
		break;
	case OPT_ALG:
		if (jwt_alg_parse(arg, &o->alg) != 0)
			return valctl_usage(sub, "unknown --alg '%s'", arg);
		break;
	case OPT_VSP_ID:
		o->vsp_ids[o->vsp_count++] = arg;
		break;
	case OPT_SERVICES:
		o->services = arg;
		break;
	case OPT_FORMATS:
		o->formats = arg;
		break;
	case OPT_PREFIX:
		o->prefix = arg;
		break;
	case OPT_RATE:
		if (num_parse_double(arg, 0, 1e7, &o->rate) != 0)
			return valctl_usage(sub,
			                    "--rate needs requests per second >= 0, "
			                    "got '%s'",
			                    arg);
		break;
	case OPT_TIMEOUT:
		return valctl_parse_seconds(sub, "--timeout", arg, &o->timeout_s);
	case OPT_ACKED:
		o->acked_file = arg;
		break;
	case OPT_JSON:
		o->json = 1;
		break;
	default:
		return VALCTL_NOT_MINE;
	}
	return VALCTL_GO_ON;
}

int valctl_cmd_fleet(int argc, char **argv)
{
	static const struct option opts[] = {VALCTL_COMMON_LONGOPTS,
	                                     {"servers", required_argument, NULL, OPT_SERVERS},
	                                     {"requests", required_argument, NULL, OPT_REQUESTS},
	                                     {"key", required_argument, NULL, OPT_KEY},
	                                     {"iss", required_argument, NULL, OPT_ISS},
	                                     {"kid", required_argument, NULL, OPT_KID},
	                                     {"alg", required_argument, NULL, OPT_ALG},
	                                     {"vsp-id", required_argument, NULL, OPT_VSP_ID},
	                                     {"services", required_argument, NULL, OPT_SERVICES},
	                                     {"formats", required_argument, NULL, OPT_FORMATS},
	                                     {"prefix", required_argument, NULL, OPT_PREFIX},
	                                     {"rate", required_argument, NULL, OPT_RATE},
	                                     {"timeout", required_argument, NULL, OPT_TIMEOUT},
	                                     {"acked-file", required_argument, NULL, OPT_ACKED},
	                                     {"json", no_argument, NULL, OPT_JSON},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *sub = "fleet";
	valctl_common common;
	fleet_opts o;
	int r, rc;

	valctl_common_init(&common);
	memset(&o, 0, sizeof o);
	o.alg = JWT_ALG_ES256;
	o.prefix = "fleet-";
	o.services = "v2x.a";
	o.formats = "JWK";
	o.timeout_s = 30;
	o.vsp_ids = calloc((size_t)argc + 1, sizeof *o.vsp_ids);
	if (o.vsp_ids == NULL) {
		valctl_err(sub, "out of memory");
		return VALCTL_EXIT_RUNTIME;
	}
	r = valctl_parse(&common, sub, fleet_help, opts, fleet_option, &o, 0, argc, argv);
	if (r != VALCTL_GO_ON) {
		rc = r;
		goto done;
	}
	if (o.servers == 0 || o.requests == 0 || o.key_file == NULL || o.iss == NULL ||
	    o.vsp_count == 0) {
		rc = valctl_usage(sub, "--servers, --requests, --key, --iss and --vsp-id are "
		                       "required");
		goto done;
	}
	if (o.servers * o.requests > MAX_TOTAL) {
		rc = valctl_usage(sub, "--servers times --requests must be at most %d", MAX_TOTAL);
		goto done;
	}
	rc = run(&common, &o);
done:
	free(o.vsp_ids);
	valctl_common_free(&common);
	return rc;
}
