/*
 * service_batch: one batch, from the consumer's queue to its offsets. It is
 * filled from what is waiting (step 1), decided without I/O (step 2,
 * service_decide.c), decided in PostgreSQL in one transaction retried whole
 * while the database is away (step 3), published with its offsets (steps 4
 * and 5: service_txn.c or service_publish.c), then counted in the metrics
 * and one log line.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "service_int.h"

void svc_free_slots(svc *s)
{
	for (size_t i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		codec_request_free(sl->req);
		codec_salvage_free(&sl->salvage);
		rd_kafka_message_destroy(sl->msg);
		memset(sl, 0, sizeof *sl);
	}
	s->nslots = 0;
}

static void add_to_batch(svc *s, rd_kafka_message_t *m)
{
	slot *sl = &s->slots[s->nslots++];
	memset(sl, 0, sizeof *sl);
	sl->msg = m;
}

/* Fill the batch: deferred messages first, then what is already waiting
 * (natural batching: while a batch is in PostgreSQL and on the broker, the
 * next one accumulates in the consumer's queue, so low load gets small
 * batches and low latency, high load big ones). batch_wait_ms > 0 waits that
 * long for more once the first message is in hand. */
void svc_collect(svc *s)
{
	size_t max = (size_t)s->cfg->batch_max;
	size_t take = s->ndeferred < max ? s->ndeferred : max;
	if (take > 0) {
		for (size_t i = 0; i < take; i++)
			add_to_batch(s, s->deferred[i]);
		memmove(s->deferred, s->deferred + take,
		        (s->ndeferred - take) * sizeof *s->deferred);
		s->ndeferred -= take;
	}

	int64_t deadline = 0;
	while (s->nslots < max && svc_run) {
		int timeout = 100;
		if (s->nslots > 0) {
			if (deadline == 0)
				deadline = mono_ms() + s->cfg->batch_wait_ms;
			int64_t left = deadline - mono_ms();
			timeout = left > 0 ? (int)left : 0;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(s->consumer, timeout);
		if (m == NULL) {
			if (s->nslots == 0)
				return; /* idle: let the caller do its checks */
			if (timeout == 0)
				break; /* nothing more is waiting */
			continue;
		}
		if (m->err) {
			svc_consumer_error(s, m);
			continue;
		}
		health_set(s->health, HEALTH_BROKER, 1);
		add_to_batch(s, m);
	}
}

/* Nanoseconds since *t, which moves to now. */
static int64_t lap(int64_t *t)
{
	int64_t now = metrics_now_ns(), d = now - *t;
	*t = now;
	return d;
}

/* A finished batch in the metrics and in one log line: its decisions, DLQ
 * records, reroutes, latencies and phases. */
static void account_batch(svc *s, const int64_t phase[METRICS_PHASE__COUNT], int64_t took_ns)
{
	int outcomes[STORE_OUTCOME_ERROR + 1] = {0}, results[2] = {0};
	int64_t now = now_ms();
	for (size_t i = 0; i < s->nslots; i++) {
		const slot *sl = &s->slots[i];
		const store_item *it = &sl->item;
		if (it->outcome >= 0 && it->outcome <= STORE_OUTCOME_ERROR)
			outcomes[it->outcome]++;
		/* a redelivery repeats a decision counted when it was made */
		if (it->outcome != STORE_OUTCOME_REDELIVERED) {
			metrics_request(s->metrics, it->result, it->cause);
			results[it->result == CODEC_RESULT_SUCCESS ? 0 : 1]++;
		}
		if (it->dlq)
			metrics_dlq(s->metrics, sl->status);
		if (!it->has_result)
			continue;
		metrics_reroute(s->metrics, sl->reroute);
		rd_kafka_timestamp_type_t type;
		int64_t ts = rd_kafka_message_timestamp(sl->msg, &type);
		if (ts > 0)
			metrics_request_latency(s->metrics, now - ts);
	}
	tokcache_stats ts;
	tokcache_stats_get(s->tokens, &ts);
	metrics_token_cache(s->metrics, ts.hits, ts.misses);
	metrics_batch(s->metrics, s->nslots, phase);
	log_event(LOG_INFO, "batch_done", "{s:I, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f}",
	          "batch", (json_int_t)++s->batch_id, "messages", (int)s->nslots, "success",
	          results[0], "failure", results[1], "decided", outcomes[STORE_OUTCOME_DECIDED],
	          "replayed", outcomes[STORE_OUTCOME_REPLAYED], "conflict",
	          outcomes[STORE_OUTCOME_CONFLICT], "redelivered",
	          outcomes[STORE_OUTCOME_REDELIVERED], "dlq", outcomes[STORE_OUTCOME_DLQ], "error",
	          outcomes[STORE_OUTCOME_ERROR], "ms", (double)took_ns / 1e6);
}

int svc_process_batch(svc *s)
{
	int64_t phase[METRICS_PHASE__COUNT] = {0};
	int64_t t = metrics_now_ns(), started = t;
	store_item *items = s->items;
	s->decode_ns = 0;
	if (svc_decide_pure_all(s) != 0)
		return -1;
	phase[METRICS_PHASE_DECODE] = s->decode_ns;
	phase[METRICS_PHASE_AUTHORIZE] = lap(&t) - s->decode_ns;

	char errstr[512];
	int attempt = 0;
	for (;;) {
		for (size_t i = 0; i < s->nslots; i++)
			items[i] = s->slots[i].item;
		if (store_decide_batch(s->store, items, s->nslots, s->cfg->kms_id, now_ms(), errstr,
		                       sizeof errstr) == 0)
			break;
		health_set(s->health, HEALTH_DATABASE, 0);
		log_event(LOG_WARN, "decide_retry", "{s:s, s:i, s:i}", "error", errstr, "attempt",
		          attempt, "batch", (int)s->nslots);
		if (svc_wait_ms(s, svc_backoff_ms(s, attempt++)) != 0)
			return -1;
		if (store_ping(s->store, errstr, sizeof errstr) != 0)
			continue;
	}
	health_set(s->health, HEALTH_DATABASE, 1);
	for (size_t i = 0; i < s->nslots; i++)
		s->slots[i].item = items[i];
	phase[METRICS_PHASE_DATABASE] = lap(&t);

	if (s->cfg->exactly_once) {
		/* the offsets are committed in the transaction */
		if (svc_publish_txn(s) != 0)
			return -1;
		phase[METRICS_PHASE_PUBLISH] = lap(&t);
	} else {
		if (svc_publish(s) != 0)
			return -1;
		phase[METRICS_PHASE_PUBLISH] = lap(&t);
		svc_store_offsets(s);
	}
	svc_resume(s);
	phase[METRICS_PHASE_COMMIT] = lap(&t);
	account_batch(s, phase, t - started);
	svc_free_slots(s);
	return 0;
}
