/*
 * valctl record and valctl replay: a topic's messages to a file and back.
 * record writes one JSON object per line (topic, partition, offset,
 * timestamp, and key, header values and value in base64, null kept apart
 * from empty); replay produces the key, headers and value of each line
 * again, in the file's order, so a captured exchange (or a crafted one) can
 * be sent to the KM-S as often as a test needs.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "valctl.h"

#define READ_BATCH 256

static const char record_help[] =
    "Usage: valctl record --topic T --out FILE [OPTIONS]\n"
    "\n"
    "Write each message of topic T as one JSON line: topic, partition, offset,\n"
    "timestamp (ms), key, headers [{name, value}] and value, the bytes in base64\n"
    "(null stays null). Without --from-beginning only messages produced after\n"
    "the start are written. Stops at --count, after --idle-exit, or on SIGINT.\n"
    "\n"
    "  --topic T             the topic\n"
    "  --out FILE            where the lines go ('-': stdout)\n"
    "  --from-beginning      start at the oldest message instead of the end\n"
    "  --count N             stop after N messages\n"
    "  --idle-exit SECONDS   stop after SECONDS without a message\n"
    "  -h, --help            this help\n"
    "\n";

static const char replay_help[] =
    "Usage: valctl replay --in FILE [--topic T] [OPTIONS]\n"
    "\n"
    "Produce the key, headers and value of each line of a file written by\n"
    "'valctl record' again, in the file's order, and wait for their delivery.\n"
    "\n"
    "  --in FILE             the recording ('-': stdin)\n"
    "  --topic T             produce to T (default: each line's own topic)\n"
    "  --timeout SECONDS     wait for the deliveries at most this long (default 30)\n"
    "  -h, --help            this help\n"
    "\n"
    "Values go out byte for byte, unless --framing is given: then every value that\n"
    "is a request (in either framing) is written again in that framing, the\n"
    "schema id looked up under <topic>-value.\n"
    "\n";

enum {
	OPT_TOPIC = VALCTL_OPT_FIRST_FREE,
	OPT_OUT,
	OPT_IN,
	OPT_FROM_BEGINNING,
	OPT_COUNT,
	OPT_IDLE_EXIT,
	OPT_TIMEOUT
};

/* base64 of bytes as a JSON string, or JSON null for NULL. */
static json_t *bytes_json(const void *data, size_t len)
{
	char *b64;
	json_t *j;

	if (data == NULL)
		return json_null();
	b64 = valctl_base64_encode(data, len);
	if (b64 == NULL)
		return NULL;
	j = json_string(b64);
	free(b64);
	return j;
}

static json_t *message_json(const rd_kafka_message_t *m)
{
	rd_kafka_timestamp_type_t tstype;
	rd_kafka_headers_t *h = NULL;
	const char *name;
	const void *value;
	size_t size, i;
	json_t *o, *headers;
	int64_t ts = rd_kafka_message_timestamp(m, &tstype);

	headers = json_array();
	if (headers == NULL)
		return NULL;
	if (rd_kafka_message_headers((rd_kafka_message_t *)(uintptr_t)m, &h) ==
	        RD_KAFKA_RESP_ERR_NO_ERROR &&
	    h != NULL) {
		for (i = 0; rd_kafka_header_get_all(h, i, &name, &value, &size) ==
		            RD_KAFKA_RESP_ERR_NO_ERROR;
		     i++) {
			if (json_array_append_new(headers,
			                          json_pack("{s:s, s:o}", "name", name, "value",
			                                    bytes_json(value, size))) != 0) {
				json_decref(headers);
				return NULL;
			}
		}
	}
	o = json_pack("{s:s, s:i, s:I, s:I, s:o, s:o, s:o}", "topic", rd_kafka_topic_name(m->rkt),
	              "partition", (int)m->partition, "offset", (json_int_t)m->offset, "timestamp",
	              (json_int_t)ts, "key", bytes_json(m->key, m->key_len), "headers", headers,
	              "value", bytes_json(m->payload, m->len));
	return o;
}

int valctl_cmd_record(int argc, char **argv)
{
	static const struct option opts[] = {
	    VALCTL_COMMON_LONGOPTS,
	    {"topic", required_argument, NULL, OPT_TOPIC},
	    {"out", required_argument, NULL, OPT_OUT},
	    {"from-beginning", no_argument, NULL, OPT_FROM_BEGINNING},
	    {"count", required_argument, NULL, OPT_COUNT},
	    {"idle-exit", required_argument, NULL, OPT_IDLE_EXIT},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *sub = "record";
	const char *topic = NULL, *out_path = NULL;
	valctl_common common;
	valctl_tail *tail = NULL;
	rd_kafka_message_t *msgs[READ_BATCH];
	FILE *out = NULL;
	int64_t count = -1, written = 0, last_us;
	double idle_s = 0;
	size_t n, i;
	char errstr[512];
	int from_beginning = 0, opt, r, write_failed = 0, rc = VALCTL_EXIT_RUNTIME;

	valctl_common_init(&common);
	while ((opt = getopt_long(argc, argv, ":h" VALCTL_COMMON_SHORTOPTS, opts, NULL)) != -1) {
		switch (opt) {
		case OPT_TOPIC:
			topic = optarg;
			break;
		case OPT_OUT:
			out_path = optarg;
			break;
		case OPT_FROM_BEGINNING:
			from_beginning = 1;
			break;
		case OPT_COUNT:
			if (valctl_parse_int64(optarg, 1, INT64_MAX, &count) != 0) {
				rc = valctl_usage(sub, "--count needs a number >= 1, got '%s'",
				                  optarg);
				goto done;
			}
			break;
		case OPT_IDLE_EXIT:
			if (valctl_parse_double(optarg, 0.001, 1e6, &idle_s) != 0) {
				rc = valctl_usage(sub, "--idle-exit needs seconds > 0, got '%s'",
				                  optarg);
				goto done;
			}
			break;
		default:
			r = valctl_other_option(&common, sub, record_help, opt, optarg, argv);
			if (r >= 0) {
				rc = r;
				goto done;
			}
		}
	}
	if (optind < argc) {
		rc = valctl_usage(sub, "unexpected argument '%s'", argv[optind]);
		goto done;
	}
	if (topic == NULL || out_path == NULL) {
		rc = valctl_usage(sub, "--topic and --out are required");
		goto done;
	}

	out = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "w");
	if (out == NULL) {
		valctl_err(sub, "cannot create %s: %s", out_path, strerror(errno));
		goto done;
	}
	tail = valctl_tail_new(&common, topic, from_beginning, 30000, errstr, sizeof errstr);
	if (tail == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	/* From here on nothing produced to the topic is missed: say so, for
	 * whoever waits to produce until the recording runs. */
	fprintf(stderr, "valctl record: reading %s (%d partitions) from the %s\n", topic,
	        valctl_tail_partition_count(tail), from_beginning ? "beginning" : "end");
	last_us = valctl_mono_us();
	while (valctl_run && (count < 0 || written < count)) {
		n = valctl_tail_poll(tail, 100, msgs, READ_BATCH);
		for (i = 0; i < n; i++) {
			json_t *j;

			if (msgs[i]->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
				valctl_err(sub, "reading %s: %s", topic,
				           rd_kafka_message_errstr(msgs[i]));
			} else if (!write_failed && (count < 0 || written < count)) {
				j = message_json(msgs[i]);
				if (j == NULL || valctl_print_json(out, j) != 0)
					write_failed = 1;
				else
					written++;
				json_decref(j);
				last_us = valctl_mono_us();
			}
			rd_kafka_message_destroy(msgs[i]);
		}
		if (write_failed || (n > 0 && fflush(out) != 0)) {
			valctl_err(sub, "cannot write %s: %s", out_path, strerror(errno));
			goto done;
		}
		if (idle_s > 0 && valctl_mono_us() - last_us >= (int64_t)(idle_s * 1e6))
			break;
	}
	if (fflush(out) != 0) {
		valctl_err(sub, "cannot write %s: %s", out_path, strerror(errno));
		goto done;
	}
	fprintf(stderr, "valctl record: %lld messages of %s written to %s\n", (long long)written,
	        topic, out_path);
	rc = VALCTL_EXIT_SUCCESS;
done:
	valctl_tail_destroy(tail);
	if (out != NULL && out != stdout && fclose(out) != 0 && rc == VALCTL_EXIT_SUCCESS) {
		valctl_err(sub, "cannot write %s: %s", out_path, strerror(errno));
		rc = VALCTL_EXIT_RUNTIME;
	}
	valctl_common_free(&common);
	return rc;
}

/* ---- replay ---- */

typedef struct {
	size_t delivered, failed;
	rd_kafka_resp_err_t first_err;
} replay_state;

static void on_delivery(const rd_kafka_message_t *m, void *user)
{
	replay_state *s = user;

	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		s->delivered++;
	} else {
		if (s->failed++ == 0)
			s->first_err = m->err;
	}
}

/* base64 text or null of a member: 0 with *out (NULL for null or absent),
 * -1 when it is neither a string nor null or not valid base64. */
static int member_bytes(const json_t *obj, const char *name, unsigned char **out, size_t *len)
{
	const json_t *v = json_object_get(obj, name);

	*out = NULL;
	*len = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = valctl_base64_decode(json_string_value(v), len);
	return *out != NULL ? 0 : -1;
}

/* Produce one recorded line; 0, or -1 with errstr filled. */
static int replay_line(rd_kafka_t *rk, valctl_wire *wire, const char *line,
                       const char *topic_override, int64_t deadline_us, char *errstr,
                       size_t errstr_size)
{
	unsigned char *key = NULL, *value = NULL, *hv = NULL;
	size_t key_len, value_len, hv_len, i;
	rd_kafka_headers_t *headers = NULL;
	const json_t *jh, *item;
	const char *topic;
	json_error_t jerr;
	json_t *o;
	int rc = -1;

	o = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL || !json_is_object(o)) {
		snprintf(errstr, errstr_size, "not a JSON object (%s)",
		         o == NULL ? jerr.text : "another JSON value");
		goto done;
	}
	topic = topic_override;
	if (topic == NULL)
		topic = json_string_value(json_object_get(o, "topic"));
	if (topic == NULL || topic[0] == '\0') {
		snprintf(errstr, errstr_size, "no topic (give --topic)");
		goto done;
	}
	if (member_bytes(o, "key", &key, &key_len) != 0 ||
	    member_bytes(o, "value", &value, &value_len) != 0) {
		snprintf(errstr, errstr_size, "key and value must be base64 strings or null");
		goto done;
	}
	if (wire != NULL && value != NULL) {
		unsigned char *framed = NULL;
		size_t framed_len = 0;
		if (valctl_wire_reframe(wire, value, value_len, &framed, &framed_len, errstr,
		                        errstr_size) != 0)
			goto done;
		free(value);
		value = framed;
		value_len = framed_len;
	}
	jh = json_object_get(o, "headers");
	if (jh != NULL && !json_is_array(jh) && !json_is_null(jh)) {
		snprintf(errstr, errstr_size, "headers must be an array");
		goto done;
	}
	if (json_array_size(jh) > 0) {
		headers = rd_kafka_headers_new(json_array_size(jh));
		if (headers == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			goto done;
		}
	}
	json_array_foreach((json_t *)(uintptr_t)jh, i, item)
	{
		const char *name = json_string_value(json_object_get(item, "name"));

		if (name == NULL || member_bytes(item, "value", &hv, &hv_len) != 0) {
			snprintf(errstr, errstr_size,
			         "headers[%zu] needs a name and a base64 or null value", i);
			goto done;
		}
		if (rd_kafka_header_add(headers, name, -1, hv, hv != NULL ? (ssize_t)hv_len : 0) !=
		    RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errstr, errstr_size, "cannot add header %s", name);
			goto done;
		}
		free(hv);
		hv = NULL;
	}
	if (valctl_produce(rk, topic, RD_KAFKA_PARTITION_UA, key, key_len, value, value_len,
	                   headers, NULL, deadline_us, errstr, errstr_size) != 0)
		goto done;
	headers = NULL; /* now owned by the message */
	rc = 0;
done:
	if (headers != NULL)
		rd_kafka_headers_destroy(headers);
	free(hv);
	free(key);
	free(value);
	json_decref(o);
	return rc;
}

int valctl_cmd_replay(int argc, char **argv)
{
	static const struct option opts[] = {VALCTL_COMMON_LONGOPTS,
	                                     {"in", required_argument, NULL, OPT_IN},
	                                     {"topic", required_argument, NULL, OPT_TOPIC},
	                                     {"timeout", required_argument, NULL, OPT_TIMEOUT},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *sub = "replay";
	const char *topic = NULL, *in_path = NULL;
	valctl_common common;
	valctl_kctx kctx;
	replay_state st;
	valctl_wire wire = {0};
	codec *cod = NULL;
	rd_kafka_t *producer = NULL;
	FILE *in = NULL;
	char *line = NULL;
	size_t line_cap = 0, line_no = 0, produced = 0;
	ssize_t len;
	double timeout_s = 30;
	int64_t deadline_us;
	char errstr[512];
	int opt, r, rc = VALCTL_EXIT_RUNTIME;

	valctl_common_init(&common);
	memset(&st, 0, sizeof st);
	while ((opt = getopt_long(argc, argv, ":h" VALCTL_COMMON_SHORTOPTS, opts, NULL)) != -1) {
		switch (opt) {
		case OPT_IN:
			in_path = optarg;
			break;
		case OPT_TOPIC:
			if (optarg[0] == '\0') {
				rc = valctl_usage(sub, "--topic must not be empty");
				goto done;
			}
			topic = optarg;
			break;
		case OPT_TIMEOUT:
			if (valctl_parse_double(optarg, 0.001, 1e6, &timeout_s) != 0) {
				rc = valctl_usage(sub, "--timeout needs seconds > 0, got '%s'",
				                  optarg);
				goto done;
			}
			break;
		default:
			r = valctl_other_option(&common, sub, replay_help, opt, optarg, argv);
			if (r >= 0) {
				rc = r;
				goto done;
			}
		}
	}
	if (optind < argc) {
		rc = valctl_usage(sub, "unexpected argument '%s'", argv[optind]);
		goto done;
	}
	if (in_path == NULL) {
		rc = valctl_usage(sub, "--in is required");
		goto done;
	}

	in = strcmp(in_path, "-") == 0 ? stdin : fopen(in_path, "r");
	if (in == NULL) {
		valctl_err(sub, "cannot open %s: %s", in_path, strerror(errno));
		goto done;
	}
	if (common.framing_set) {
		codec_limits limits;
		codec_limits_default(&limits);
		cod = codec_new(&limits, errstr, sizeof errstr);
		if (cod == NULL) {
			valctl_err(sub, "cannot load the schemas: %s", errstr);
			goto done;
		}
		if (topic != NULL)
			common.requests_topic = topic;
		int wrc = valctl_wire_open(&wire, &common, cod, sub);
		if (wrc != 0) {
			rc = wrc;
			goto done;
		}
	}
	memset(&kctx, 0, sizeof kctx);
	kctx.verbose = common.verbose;
	kctx.on_delivery = on_delivery;
	kctx.user = &st;
	producer =
	    valctl_producer_new(&common, &kctx, (int)(timeout_s * 1000.0), errstr, sizeof errstr);
	if (producer == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	deadline_us = valctl_mono_us() + (int64_t)(timeout_s * 1e6);
	while (valctl_run && (len = getline(&line, &line_cap, in)) >= 0) {
		line_no++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (replay_line(producer, common.framing_set ? &wire : NULL, line, topic,
		                deadline_us, errstr, sizeof errstr) != 0) {
			valctl_err(sub, "%s:%zu: %s", in_path, line_no, errstr);
			goto done;
		}
		produced++;
		rd_kafka_poll(producer, 0);
	}
	if (ferror(in)) {
		valctl_err(sub, "cannot read %s: %s", in_path, strerror(errno));
		goto done;
	}
	if (!valctl_run) {
		valctl_err(sub, "interrupted after %zu messages", produced);
		goto done;
	}
	while (valctl_run && st.delivered + st.failed < produced && valctl_mono_us() < deadline_us)
		rd_kafka_poll(producer, 50);
	if (st.failed > 0) {
		valctl_err(sub, "%zu of %zu messages were not delivered: %s", st.failed, produced,
		           rd_kafka_err2str(st.first_err));
		goto done;
	}
	if (st.delivered < produced) {
		valctl_err(sub, "%zu of %zu messages not delivered within %g s",
		           produced - st.delivered, produced, timeout_s);
		rc = VALCTL_EXIT_TIMEOUT;
		goto done;
	}
	fprintf(stderr, "valctl replay: %zu messages produced\n", produced);
	rc = VALCTL_EXIT_SUCCESS;
done:
	if (producer != NULL) {
		rd_kafka_flush(producer, 1000);
		rd_kafka_destroy(producer);
	}
	free(line);
	valctl_wire_close(&wire);
	codec_destroy(cod);
	if (in != NULL && in != stdin)
		fclose(in);
	valctl_common_free(&common);
	return rc;
}
