/*
 * valctl's use of librdkafka: the configuration every handle gets (brokers,
 * then the -X properties, so -X wins), the producer of requests, the headers
 * of a request, and the "tail": a reader of all partitions of a topic that
 * needs no consumer group. The tail reads the high watermarks first and
 * starts there, so a Result produced after it is made cannot be missed, which
 * subscribing at the end offset would not promise. It reads with
 * isolation.level=read_committed: a Result of a KM-S transaction that
 * aborted is never seen.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "kafka.h"
#include "util.h"

struct valctl_tail {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	rd_kafka_queue_t *queue;
	int32_t *partitions;
	int partition_count;
	int started;
	valctl_kctx kctx;
};

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	const valctl_kctx *k = rd_kafka_opaque(rk);

	if (k != NULL && k->verbose)
		fprintf(stderr, "rdkafka %d %s %s: %s\n", level, rd_kafka_name(rk), fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	valctl_kctx *k = opaque;

	(void)rk;
	if (k == NULL)
		return;
	snprintf(k->last_error, sizeof k->last_error, "%s: %s",
	         rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
	if (k->verbose)
		fprintf(stderr, "rdkafka error: %s\n", k->last_error);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	valctl_kctx *k = opaque;

	(void)rk;
	if (k != NULL && k->on_delivery != NULL)
		k->on_delivery(m, k->user);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                    size_t errstr_size)
{
	char why[256];

	if (rd_kafka_conf_set(conf, name, value, why, sizeof why) != RD_KAFKA_CONF_OK) {
		snprintf(errstr, errstr_size, "Kafka property %s: %s", name, why);
		return -1;
	}
	return 0;
}

/* A configuration with our defaults, then the brokers, then -X. */
static rd_kafka_conf_t *make_conf(const valctl_common *c, valctl_kctx *kctx,
                                  const char *const *defaults, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char name[256];
	size_t i;

	if (conf == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	rd_kafka_conf_set_opaque(conf, kctx);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	for (i = 0; defaults != NULL && defaults[i] != NULL; i += 2) {
		if (conf_set(conf, defaults[i], defaults[i + 1], errstr, errstr_size) != 0)
			goto fail;
	}
	/* a VAL server's requests and Results are small: Nagle's delay would
	 * be most of their latency */
	if (conf_set(conf, "bootstrap.servers", c->bootstrap, errstr, errstr_size) != 0 ||
	    conf_set(conf, "socket.nagle.disable", "true", errstr, errstr_size) != 0)
		goto fail;
	for (i = 0; i < c->xprop_count; i++) {
		const char *eq = strchr(c->xprops[i], '=');
		size_t n = (size_t)(eq - c->xprops[i]);

		if (n >= sizeof name) {
			snprintf(errstr, errstr_size, "-X property name too long");
			goto fail;
		}
		memcpy(name, c->xprops[i], n);
		name[n] = '\0';
		if (conf_set(conf, name, eq + 1, errstr, errstr_size) != 0)
			goto fail;
	}
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

rd_kafka_t *valctl_producer_new(const valctl_common *c, valctl_kctx *kctx, int message_timeout_ms,
                                char *errstr, size_t errstr_size)
{
	char timeout[32];
	const char *defaults[] = {"enable.idempotence", "true", "acks", "all", "compression.type",
	                          "lz4", "linger.ms", "0", "message.timeout.ms", timeout,
	                          /* Java's partitioner: a requester's key goes to
	                           * the same partition whichever client sends it. */
	                          "partitioner", "murmur2_random", NULL};
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char why[512];

	snprintf(timeout, sizeof timeout, "%d", message_timeout_ms > 0 ? message_timeout_ms : 1);
	conf = make_conf(c, kctx, defaults, errstr, errstr_size);
	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
	if (rk == NULL) {
		snprintf(errstr, errstr_size, "cannot make a Kafka producer: %s", why);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return rk; /* conf is now owned by rk */
}

int valctl_producer_prepare(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                            size_t errstr_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt;
	rd_kafka_resp_err_t err;

	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rkt == NULL) {
		snprintf(errstr, errstr_size, "cannot use topic %s: %s", topic,
		         rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms > 0 ? timeout_ms : 1);
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		const valctl_kctx *k = rd_kafka_opaque(rk);

		snprintf(errstr, errstr_size, "cannot reach the brokers for %s: %s%s%s", topic,
		         rd_kafka_err2str(err), k != NULL && k->last_error[0] ? "; " : "",
		         k != NULL ? k->last_error : "");
		return -1;
	}
	return 0;
}

int valctl_produce(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                   size_t key_len, const void *value, size_t value_len, rd_kafka_headers_t *headers,
                   void *msg_opaque, int64_t deadline_us, char *errstr, size_t errstr_size)
{
	rd_kafka_resp_err_t err;

	for (;;) {
		/* The const casts: with RD_KAFKA_MSG_F_COPY librdkafka only
		 * reads these. */
		err = rd_kafka_producev(
		    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
		    RD_KAFKA_V_KEY((void *)(uintptr_t)key, key_len),
		    RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value_len),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(msg_opaque),
		    RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		/* The local queue is full: serve delivery reports until there
		 * is room, or give up at the deadline. */
		if (valctl_mono_us() >= deadline_us || !valctl_run)
			break;
		rd_kafka_poll(rk, 10);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "cannot produce to %s: %s", topic,
		         rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

rd_kafka_headers_t *valctl_request_headers(const char *reply_topic, const void *correlation_id,
                                           size_t correlation_len, int32_t reply_partition,
                                           const char *request_id, const char *requester)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);
	char source[512];
	unsigned char part[4];
	int bad = 0;

	if (h == NULL)
		return NULL;
	if (reply_topic != NULL)
		bad |= rd_kafka_header_add(h, "kafka_replyTopic", -1, reply_topic, -1) != 0;
	if (correlation_id != NULL)
		bad |= rd_kafka_header_add(h, "kafka_correlationId", -1, correlation_id,
		                           (ssize_t)correlation_len) != 0;
	if (reply_partition >= 0) {
		uint32_t v = (uint32_t)reply_partition;

		part[0] = (unsigned char)(v >> 24);
		part[1] = (unsigned char)(v >> 16);
		part[2] = (unsigned char)(v >> 8);
		part[3] = (unsigned char)v;
		bad |= rd_kafka_header_add(h, "kafka_replyPartition", -1, part, 4) != 0;
	}
	/* A long requester only shortens the free-form source attribute. */
	snprintf(source, sizeof source, "valctl/%s", requester != NULL ? requester : "");
	bad |= rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1) != 0;
	bad |= rd_kafka_header_add(h, "ce_id", -1, request_id, -1) != 0;
	bad |= rd_kafka_header_add(h, "ce_source", -1, source, -1) != 0;
	bad |= rd_kafka_header_add(h, "ce_type", -1, VALCTL_REQUEST_CE_TYPE, -1) != 0;
	bad |= rd_kafka_header_add(h, "content-type", -1, "application/avro", -1) != 0;
	if (bad) {
		rd_kafka_headers_destroy(h);
		return NULL;
	}
	return h;
}

int valctl_header_get(const rd_kafka_message_t *m, const char *name, const void **value,
                      size_t *len)
{
	rd_kafka_headers_t *h = NULL;

	/* The const cast: rd_kafka_message_headers only reads the message (it
	 * parses the headers once and caches them in it). */
	if (rd_kafka_message_headers((rd_kafka_message_t *)(uintptr_t)m, &h) !=
	        RD_KAFKA_RESP_ERR_NO_ERROR ||
	    h == NULL)
		return -1;
	if (rd_kafka_header_get_last(h, name, value, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Errors a partition shows while its leadership settles. */
static int retriable(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
	case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
	case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
	case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
	case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
	case RD_KAFKA_RESP_ERR__TRANSPORT:
		return 1;
	default:
		return 0;
	}
}

/* The partitions of the topic, retrying while the cluster is still electing
 * leaders or has only just created the topic. */
static int tail_partitions(valctl_tail *t, const char *topic, int64_t deadline_us, char *errstr,
                           size_t errstr_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err, seen = RD_KAFKA_RESP_ERR_NO_ERROR;
	int i, left_ms;

	for (;;) {
		left_ms = (int)((deadline_us - valctl_mono_us()) / 1000);
		if (left_ms < 1)
			left_ms = 1;
		err = rd_kafka_metadata(t->rk, 0, t->rkt, &md, left_ms);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (md->topic_cnt != 1)
				err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
			else if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
				err = md->topics[0].err;
			else if (md->topics[0].partition_cnt <= 0)
				err = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
			else
				break;
		}
		if (md != NULL) {
			rd_kafka_metadata_destroy(md);
			md = NULL;
		}
		/* What the cluster said tells more than the final time-out. */
		if (err != RD_KAFKA_RESP_ERR__TIMED_OUT)
			seen = err;
		if (valctl_mono_us() >= deadline_us || !valctl_run || !retriable(err)) {
			snprintf(errstr, errstr_size, "cannot read the partitions of %s: %s%s%s",
			         topic,
			         rd_kafka_err2str(seen != RD_KAFKA_RESP_ERR_NO_ERROR ? seen : err),
			         t->kctx.last_error[0] ? "; " : "", t->kctx.last_error);
			return -1;
		}
		sleep_ms(200);
	}
	t->partition_count = md->topics[0].partition_cnt;
	t->partitions = calloc((size_t)t->partition_count, sizeof *t->partitions);
	if (t->partitions == NULL) {
		rd_kafka_metadata_destroy(md);
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	for (i = 0; i < t->partition_count; i++)
		t->partitions[i] = md->topics[0].partitions[i].id;
	rd_kafka_metadata_destroy(md);
	return 0;
}

/* The end (high watermark) of every partition into ends[]: one ListOffsets
 * request for all of them (timestamp -1 asks for the latest offset), with a
 * query per partition for any that request did not answer. */
static int tail_ends(valctl_tail *t, const char *topic, int64_t deadline_us, int64_t *ends,
                     char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	int i, left_ms;

	l = rd_kafka_topic_partition_list_new(t->partition_count);
	if (l == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	for (i = 0; i < t->partition_count; i++)
		rd_kafka_topic_partition_list_add(l, topic, t->partitions[i])->offset = -1;
	left_ms = (int)((deadline_us - valctl_mono_us()) / 1000);
	err = rd_kafka_offsets_for_times(t->rk, l, left_ms > 1 ? left_ms : 1);
	for (i = 0; i < t->partition_count; i++) {
		const rd_kafka_topic_partition_t *e = &l->elems[i];
		int64_t lo = 0, hi = 0;

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR && e->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
		    e->offset >= 0) {
			ends[i] = e->offset;
			continue;
		}
		/* Leadership moves (and a new topic settles) in steps the
		 * metadata does not show yet: retry those until the deadline. */
		for (;;) {
			rd_kafka_resp_err_t qerr;

			left_ms = (int)((deadline_us - valctl_mono_us()) / 1000);
			qerr = rd_kafka_query_watermark_offsets(t->rk, topic, t->partitions[i], &lo,
			                                        &hi, left_ms > 1 ? left_ms : 1);
			if (qerr == RD_KAFKA_RESP_ERR_NO_ERROR)
				break;
			if (!retriable(qerr) || valctl_mono_us() >= deadline_us || !valctl_run) {
				snprintf(errstr, errstr_size, "cannot read the end of %s [%d]: %s",
				         topic, (int)t->partitions[i], rd_kafka_err2str(qerr));
				rd_kafka_topic_partition_list_destroy(l);
				return -1;
			}
			sleep_ms(100);
		}
		ends[i] = hi;
	}
	rd_kafka_topic_partition_list_destroy(l);
	return 0;
}

valctl_tail *valctl_tail_new(const valctl_common *c, const char *topic, int from_beginning,
                             int timeout_ms, char *errstr, size_t errstr_size)
{
	/* No group: nothing to commit, nothing stored on the brokers. */
	static const char *const defaults[] = {"enable.auto.commit", "false",
	                                       "enable.auto.offset.store", "false",
	                                       "enable.partition.eof", "false",
	                                       /* A Result of an aborted
	                                        * transaction is no Result: said
	                                        * here, not left to the library's
	                                        * default. */
	                                       "isolation.level", "read_committed",
	                                       /* A partition started while a fetch
	                                        * waits joins the next fetch: keep
	                                        * the wait short. */
	                                       "fetch.wait.max.ms", "100", NULL};
	int64_t deadline_us = valctl_mono_us() + (int64_t)timeout_ms * 1000;
	rd_kafka_conf_t *conf = NULL;
	int64_t *starts = NULL;
	valctl_tail *t;
	char why[512];
	int i;

	t = calloc(1, sizeof *t);
	if (t == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	t->kctx.verbose = c->verbose;
	conf = make_conf(c, &t->kctx, defaults, errstr, errstr_size);
	if (conf == NULL)
		goto fail;
	t->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
	if (t->rk == NULL) {
		snprintf(errstr, errstr_size, "cannot make a Kafka consumer: %s", why);
		rd_kafka_conf_destroy(conf);
		goto fail;
	}
	conf = NULL; /* now owned by t->rk */
	t->rkt = rd_kafka_topic_new(t->rk, topic, NULL);
	t->queue = rd_kafka_queue_new(t->rk);
	if (t->rkt == NULL || t->queue == NULL) {
		snprintf(errstr, errstr_size, "cannot read topic %s: %s", topic,
		         rd_kafka_err2str(rd_kafka_last_error()));
		goto fail;
	}
	if (tail_partitions(t, topic, deadline_us, errstr, errstr_size) != 0)
		goto fail;
	starts = calloc((size_t)t->partition_count, sizeof *starts);
	if (starts == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	if (from_beginning) {
		for (i = 0; i < t->partition_count; i++)
			starts[i] = RD_KAFKA_OFFSET_BEGINNING;
	} else if (tail_ends(t, topic, deadline_us, starts, errstr, errstr_size) != 0) {
		goto fail;
	}
	/* Only now start fetching: a fetch waiting on the broker would delay
	 * every offset query queued behind it on the same connection. */
	for (i = 0; i < t->partition_count; i++) {
		if (rd_kafka_consume_start_queue(t->rkt, t->partitions[i], starts[i], t->queue) !=
		    0) {
			snprintf(errstr, errstr_size, "cannot read %s [%d]: %s", topic,
			         (int)t->partitions[i], rd_kafka_err2str(rd_kafka_last_error()));
			goto fail;
		}
		t->started = i + 1;
	}
	free(starts);
	return t;
fail:
	free(starts);
	valctl_tail_destroy(t);
	return NULL;
}

size_t valctl_tail_poll(valctl_tail *t, int timeout_ms, rd_kafka_message_t **msgs, size_t max)
{
	rd_kafka_message_t *first;
	ssize_t n;

	if (max == 0)
		return 0;
	/* Serve the handle's own queue too, so its errors reach error_cb. */
	rd_kafka_poll(t->rk, 0);
	/* A batch call waits out its whole timeout unless the batch fills:
	 * wait for one message only, then take what else is there. */
	first = rd_kafka_consume_queue(t->queue, timeout_ms);
	if (first == NULL)
		return 0;
	msgs[0] = first;
	n = max > 1 ? rd_kafka_consume_batch_queue(t->queue, 0, msgs + 1, max - 1) : 0;
	return 1 + (n > 0 ? (size_t)n : 0);
}

int valctl_tail_partition_count(const valctl_tail *t)
{
	return t->partition_count;
}

const char *valctl_tail_last_error(const valctl_tail *t)
{
	return t->kctx.last_error;
}

void valctl_tail_destroy(valctl_tail *t)
{
	int i;

	if (t == NULL)
		return;
	for (i = 0; i < t->started; i++)
		rd_kafka_consume_stop(t->rkt, t->partitions[i]);
	if (t->queue != NULL)
		rd_kafka_queue_destroy(t->queue);
	if (t->rkt != NULL)
		rd_kafka_topic_destroy(t->rkt);
	if (t->rk != NULL)
		rd_kafka_destroy(t->rk);
	free(t->partitions);
	free(t);
}
