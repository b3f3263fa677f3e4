/*
 * service_publish: step 4 without transactions, and step 5. Every Result
 * and DLQ record of the batch is produced with the idempotent producer and
 * waited for until the broker has it; a Result its reply topic refuses goes
 * to the default results topic, a DLQ copy too large for the broker keeps
 * its headers and drops the value, anything else is sent again with
 * backoff. Only then are the batch's offsets stored for the next commit.
 * The Results and DLQ records themselves (value, CloudEvents headers, Kafka
 * Connect's error headers) are made here for service_txn.c too.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"
#include "log.h"
#include "service_int.h"

#define RESULT_CE_TYPE "org.threegpp.seal.km.provisioning.result.v1"
#define DLQ_EXCEPTION  "org.apache.kafka.connect.errors.DataException"

/* ce_id: a UUID-shaped digest of the Result's bytes, so that identical
 * Results carry identical ids. */
static void result_id(const unsigned char *value, size_t len, char out[37])
{
	unsigned char md[32];
	unsigned int mdlen = sizeof md;
	memset(md, 0, sizeof md);
	EVP_Digest(value, len, md, &mdlen, EVP_sha256(), NULL);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         md[0], md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10],
	         md[11], md[12], md[13], md[14], md[15]);
}

int svc_produce_result(svc *s, slot *sl, int use_default)
{
	const store_item *it = &sl->item;
	const char *request_id = it->request_id;
	const char *requester = it->requester_identity;
	codec_response resp = {
	    .request_id = request_id,
	    .requester_identity = requester,
	    .result = it->result,
	    .cause = it->cause,
	    .detail = it->detail[0] ? it->detail : NULL,
	    .kms_id = it->kms_id,
	    .processed_at = it->processed_at,
	};
	char errstr[256];
	unsigned char *value = NULL;
	size_t len = 0;
	/* In the request's framing; a Confluent request was only decided once
	 * the Result schema's id was known. */
	codec_frame frame = {CODEC_FRAMING_SINGLE_OBJECT, 0};
	if (sl->confluent) {
		frame.framing = CODEC_FRAMING_CONFLUENT;
		frame.schema_id = (uint32_t)s->result_schema_id;
	}
	if (codec_encode_response_as(s->codec, &frame, &resp, &value, &len, errstr,
	                             sizeof errstr) != 0) {
		log_event(LOG_ERROR, "encode_failed", "{s:s}", "error", errstr);
		return -1;
	}

	rd_kafka_headers_t *h = rd_kafka_headers_new(8);
	const void *corr;
	size_t corr_len;
	if (svc_header(sl->msg, "kafka_correlationId", &corr, &corr_len) == 0 && corr != NULL)
		rd_kafka_header_add(h, "kafka_correlationId", -1, corr, (ssize_t)corr_len);
	else
		rd_kafka_header_add(h, "kafka_correlationId", -1, request_id, -1);
	char ce_id[37], ce_time[ISOTIME_SIZE];
	result_id(value, len, ce_id);
	isotime_format_ms(it->processed_at, ce_time, sizeof ce_time);
	rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
	rd_kafka_header_add(h, "ce_id", -1, ce_id, -1);
	rd_kafka_header_add(h, "ce_source", -1, it->kms_id, -1);
	rd_kafka_header_add(h, "ce_type", -1, RESULT_CE_TYPE, -1);
	rd_kafka_header_add(h, "ce_time", -1, ce_time, -1);
	rd_kafka_header_add(h, "ce_subject", -1, request_id, -1);
	rd_kafka_header_add(h, "content-type", -1, "application/avro", -1);

	const char *topic = use_default ? s->cfg->results_topic : sl->reply_topic;
	int32_t partition = use_default ? RD_KAFKA_PARTITION_UA : sl->reply_partition;
	sl->result_send.state = SEND_PENDING;
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    s->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
	    RD_KAFKA_V_KEY(requester, strlen(requester)), RD_KAFKA_V_VALUE(value, len),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_HEADERS(h),
	    RD_KAFKA_V_OPAQUE(&sl->result_send), RD_KAFKA_V_END);
	if (err) {
		rd_kafka_headers_destroy(h);
		free(value);
		sl->result_send.state = SEND_FAILED;
		sl->result_send.err = err;
		log_event(LOG_WARN, "produce_failed", "{s:s}", "error", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

static void add_header_num(rd_kafka_headers_t *h, const char *name, long long v)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%lld", v);
	rd_kafka_header_add(h, name, -1, buf, -1);
}

int svc_produce_dlq(svc *s, slot *sl)
{
	rd_kafka_message_t *m = sl->msg;
	const rd_kafka_headers_t *orig = svc_headers_of(m);
	rd_kafka_headers_t *h = orig ? rd_kafka_headers_copy(orig) : rd_kafka_headers_new(8);
	char message[384];
	snprintf(message, sizeof message, "%s: %s", codec_status_name(sl->status),
	         sl->decode_error);
	rd_kafka_header_add(h, "__connect.errors.topic", -1, rd_kafka_topic_name(m->rkt), -1);
	add_header_num(h, "__connect.errors.partition", m->partition);
	add_header_num(h, "__connect.errors.offset", (long long)m->offset);
	rd_kafka_header_add(h, "__connect.errors.stage", -1, "VALUE_CONVERTER", -1);
	rd_kafka_header_add(h, "__connect.errors.exception.class.name", -1, DLQ_EXCEPTION, -1);
	rd_kafka_header_add(h, "__connect.errors.exception.message", -1, message, -1);

	if (sl->dlq_omit_value) {
		char size[32];
		snprintf(size, sizeof size, "%zu", m->len);
		rd_kafka_header_add(h, "kms.dlq.value.omitted.bytes", -1, size, -1);
	}
	sl->dlq_send.state = SEND_PENDING;
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    s->producer, RD_KAFKA_V_TOPIC(s->cfg->dlq_topic), RD_KAFKA_V_KEY(m->key, m->key_len),
	    RD_KAFKA_V_VALUE(sl->dlq_omit_value ? NULL : m->payload,
	                     sl->dlq_omit_value ? 0 : m->len),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
	    RD_KAFKA_V_OPAQUE(&sl->dlq_send), RD_KAFKA_V_END);
	if (err) {
		rd_kafka_headers_destroy(h);
		sl->dlq_send.state = SEND_FAILED;
		sl->dlq_send.err = err;
		log_event(LOG_WARN, "produce_failed", "{s:s}", "error", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int svc_too_large(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

void svc_count_sends(const svc *s, size_t *pending, size_t *failed)
{
	*pending = *failed = 0;
	for (size_t i = 0; i < s->nslots; i++) {
		const slot *sl = &s->slots[i];
		*pending +=
		    (sl->result_send.state == SEND_PENDING) + (sl->dlq_send.state == SEND_PENDING);
		*failed +=
		    (sl->result_send.state == SEND_FAILED) + (sl->dlq_send.state == SEND_FAILED);
	}
}

/* Publish what the batch owes and wait until the broker has it all. A
 * Result the reply topic refuses goes to the default results topic; anything
 * else that fails is sent again with backoff. Returns -1 when the graceful
 * stop ran out of time. */
int svc_publish(svc *s)
{
	for (size_t i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		if (sl->item.dlq)
			svc_produce_dlq(s, sl);
		if (sl->item.has_result)
			svc_produce_result(s, sl, 0);
	}
	int attempt = 0;
	int64_t started = mono_ms();
	for (;;) {
		rd_kafka_poll(s->producer, 50);
		size_t pending, failed;
		svc_count_sends(s, &pending, &failed);
		if (pending == 0 && failed == 0)
			break;
		if (pending == 0 && failed > 0) {
			log_event(LOG_WARN, "publish_retry", "{s:i, s:i}", "failed", (int)failed,
			          "attempt", attempt);
			health_set(s->health, HEALTH_NOT_PAUSED, 0);
			if (svc_wait_ms(s, svc_backoff_ms(s, attempt++)) != 0)
				return -1;
			for (size_t i = 0; i < s->nslots; i++) {
				slot *sl = &s->slots[i];
				if (sl->dlq_send.state == SEND_FAILED) {
					/* A copy the broker will never take: keep the
					 * coordinates and headers, drop the value (it
					 * stays in the requests topic). */
					if (svc_too_large(sl->dlq_send.err))
						sl->dlq_omit_value = 1;
					svc_produce_dlq(s, sl);
				}
				if (sl->result_send.state == SEND_FAILED) {
					int custom =
					    strcmp(sl->reply_topic, s->cfg->results_topic) != 0 ||
					    sl->reply_partition != RD_KAFKA_PARTITION_UA;
					if (custom) {
						log_event(LOG_WARN, "reply_fallback", "{s:s}",
						          "request_id",
						          sl->item.request_id ? sl->item.request_id
						                              : "");
						metrics_reroute(s->metrics,
						                METRICS_REROUTE_TOPIC_UNAVAILABLE);
					}
					svc_produce_result(s, sl, custom);
				}
			}
			continue;
		}
		if (mono_ms() - started > 1000)
			svc_keepalive(s);
		if (svc_out_of_time(s))
			return -1;
	}
	health_set(s->health, HEALTH_NOT_PAUSED, 1);
	health_set(s->health, HEALTH_BROKER, 1);
	return 0;
}

/* The batch's offsets: past the last message of each of its partitions,
 * those revoked left out (the transaction commits them; without one they are
 * stored for the next commit). NULL when none is left. */
rd_kafka_topic_partition_list_t *svc_batch_offsets(svc *s)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	for (size_t i = 0; i < s->nslots; i++) {
		if (s->slots[i].revoked)
			continue;
		if (parts == NULL)
			parts = rd_kafka_topic_partition_list_new((int)s->nslots);
		rd_kafka_message_t *m = s->slots[i].msg;
		rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(
		    parts, rd_kafka_topic_name(m->rkt), m->partition);
		if (p == NULL)
			p = rd_kafka_topic_partition_list_add(parts, rd_kafka_topic_name(m->rkt),
			                                      m->partition);
		if (m->offset + 1 > p->offset)
			p->offset = m->offset + 1;
	}
	return parts;
}

/* ---- step 5: offsets ---- */

void svc_store_offsets(svc *s)
{
	rd_kafka_topic_partition_list_t *parts = svc_batch_offsets(s);
	if (parts == NULL)
		return;
	rd_kafka_resp_err_t err = rd_kafka_offsets_store(s->consumer, parts);
	/* a partition revoked meanwhile refuses: its next owner redelivers */
	if (err && err != RD_KAFKA_RESP_ERR__STATE)
		log_event(LOG_WARN, "offsets_store_failed", "{s:s}", "error",
		          rd_kafka_err2str(err));
	int64_t now = metrics_now_ms();
	for (int i = 0; i < parts->cnt; i++)
		if (!parts->elems[i].err)
			metrics_offsets_done(s->metrics, parts->elems[i].partition,
			                     parts->elems[i].offset, now);
	rd_kafka_topic_partition_list_destroy(parts);
}
