/*
 * service_txn: step 4 and 5 with exactly_once. Each batch's Results, DLQ
 * records and offsets go in one Kafka transaction: begin, produce, send the
 * offsets, wait for every record, commit. An attempt that fails is aborted
 * and made again with the batch in hand (the same Results: its decisions
 * are committed in PostgreSQL); a producer broken by a fatal error other
 * than fencing is replaced; fencing by a newer instance stops the process.
 * The test build (-DKMS_FAILPOINTS) can die at a named point here.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "service_int.h"

/* The longest a transactional call blocks the loop before it is retried. */
#define TXN_CALL_MS 5000

/* A test build (-DKMS_FAILPOINTS) dies where KMS_FAILPOINT names: the crash
 * tests' precise SIGKILL. A production build has no trace of it. */
#ifdef KMS_FAILPOINTS
static void failpoint(const char *name)
{
	const char *fp = getenv("KMS_FAILPOINT");
	if (fp != NULL && strcmp(fp, name) == 0) {
		log_event(LOG_WARN, "failpoint", "{s:s}", "name", name);
		raise(SIGKILL);
	}
}
#else
#define failpoint(name) ((void)0)
#endif

typedef enum { TXN_DONE, TXN_RETRY, TXN_ABORT, TXN_FATAL } txn_next;

/* What follows an error of a transactional call, as in librdkafka's
 * transactions example: a retriable one is retried, one that requires it
 * aborts the transaction. A fatal one that says a newer instance with this
 * transactional.id has fenced this one stops the process, which exits
 * SERVICE_EXIT_FATAL: two live instances must not take turns fencing each
 * other. Any other fatal error (and an error that is none of these, which
 * says the producer is not in the state the loop believes) breaks only the
 * producer, which reset_producer() replaces. Frees e. */
static txn_next txn_check(svc *s, const char *call, rd_kafka_error_t *e)
{
	if (e == NULL)
		return TXN_DONE;
	rd_kafka_resp_err_t code = rd_kafka_error_code(e);
	txn_next next;
	if (!rd_kafka_error_is_fatal(e) && rd_kafka_error_txn_requires_abort(e))
		next = TXN_ABORT;
	else if (!rd_kafka_error_is_fatal(e) && rd_kafka_error_is_retriable(e))
		next = TXN_RETRY;
	else
		next = TXN_FATAL;
	if (next == TXN_FATAL && svc_is_fenced(code)) {
		log_event(LOG_ERROR, "producer_fenced", "{s:s, s:s, s:s, s:s}", "call", call,
		          "code", rd_kafka_err2name(code), "error", rd_kafka_error_string(e),
		          "effect",
		          "the KM-S stops; what it had in hand is answered by the instance that "
		          "fenced it");
		s->fatal = 1;
		svc_run = 0;
	} else if (next == TXN_FATAL) {
		log_event(LOG_ERROR, "kafka_fatal", "{s:s, s:s, s:s, s:s}", "call", call, "code",
		          rd_kafka_err2name(code), "error", rd_kafka_error_string(e), "effect",
		          "the producer is replaced");
		s->producer_broken = 1;
	} else {
		log_event(LOG_WARN, next == TXN_ABORT ? "txn_abort_needed" : "txn_retry",
		          "{s:s, s:s, s:s}", "call", call, "code", rd_kafka_err2name(code), "error",
		          rd_kafka_error_string(e));
	}
	rd_kafka_error_destroy(e);
	return next;
}

/* Serve the delivery reports of purged messages, so that none of an aborted
 * attempt reaches the next one's send_track. */
static void drain_reports(svc *s)
{
	int64_t until = mono_ms() + 1000;
	while (rd_kafka_outq_len(s->producer) > 0 && mono_ms() < until)
		rd_kafka_poll(s->producer, 10);
}

/* Abort the open transaction, waiting while the coordinator cannot be
 * reached. In the rebalance callback (in_rebalance) the consumer must not be
 * polled, so the wait only sleeps. Returns 0 once aborted; -1 on a fatal
 * error or when the graceful stop ran out of time: the transaction then
 * stays open, is never committed, and the broker aborts it when a successor
 * with this transactional.id starts, or after transaction_timeout_ms. */
int svc_txn_abort(svc *s, int in_rebalance)
{
	int attempt = 0;
	while (s->txn_open) {
		health_blocked(s->health, 1);
		rd_kafka_error_t *e = rd_kafka_abort_transaction(s->producer, TXN_CALL_MS);
		health_blocked(s->health, 0);
		txn_next n = txn_check(s, "abort_transaction", e);
		if (n == TXN_DONE) {
			s->txn_open = 0;
			s->txn_committing = 0;
			s->txn_aborts++;
			drain_reports(s);
			log_event(LOG_INFO, "txn_aborted", "{s:i}", "batch", (int)s->nslots);
			return 0;
		}
		if (n == TXN_FATAL)
			return -1;
		health_set(s->health, HEALTH_NOT_PAUSED, 0);
		int64_t until = mono_ms() + svc_backoff_ms(s, attempt++);
		if (!in_rebalance) {
			if (svc_wait_ms(s, until - mono_ms()) != 0)
				return -1;
			continue;
		}
		while (mono_ms() < until) {
			if (svc_out_of_time(s))
				return -1;
			usleep(20000);
		}
	}
	return 0;
}

/* A delivery error that sending the same record to the same place again may
 * mend: the broker away or in a transition, or the transaction's own state
 * (purged by an abort, failed with it). Any other error is the record's:
 * the reply topic refuses it, or it is too large. */
static int transient(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
	case RD_KAFKA_RESP_ERR__TIMED_OUT:
	case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
	case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
	case RD_KAFKA_RESP_ERR__STATE:
	case RD_KAFKA_RESP_ERR__FATAL:
	case RD_KAFKA_RESP_ERR__FENCED:
	case RD_KAFKA_RESP_ERR__TRANSPORT:
	case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
	case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
	case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
	case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
	case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
	case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
	case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
	case RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS:
	case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
	case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
	case RD_KAFKA_RESP_ERR_INVALID_TXN_STATE:
	case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING:
	case RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID:
	case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:
		return 1;
	default:
		return 0;
	}
}

/* After an aborted attempt: what the records' own errors call for, as
 * svc_publish() does without transactions. A Result its reply topic refused
 * goes to the default results topic; a DLQ copy the broker will never take
 * keeps its coordinates and headers and drops the value. */
static void apply_fallbacks(svc *s)
{
	for (size_t i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		if (sl->revoked)
			continue;
		if (sl->dlq_send.state == SEND_FAILED && svc_too_large(sl->dlq_send.err))
			sl->dlq_omit_value = 1;
		if (sl->result_send.state == SEND_FAILED && !transient(sl->result_send.err) &&
		    !sl->reply_default &&
		    (strcmp(sl->reply_topic, s->cfg->results_topic) != 0 ||
		     sl->reply_partition != RD_KAFKA_PARTITION_UA)) {
			log_event(LOG_WARN, "reply_fallback", "{s:s}", "request_id",
			          sl->item.request_id ? sl->item.request_id : "");
			metrics_reroute(s->metrics, METRICS_REROUTE_TOPIC_UNAVAILABLE);
			sl->reply_default = 1;
		}
	}
}

/* Call a transactional step until it is done, retrying a retriable error
 * (the broker away) with backoff. librdkafka 2.0.2 may hold such a call past
 * its timeout, until its request to the broker ends (seen: the whole of a
 * broker outage), and the loop can report nothing meanwhile: /readyz reads
 * the time spent in the call itself (health_blocked()). */
static txn_next txn_call(svc *s, int commit, const rd_kafka_topic_partition_list_t *offsets)
{
	int attempt = 0;
	for (;;) {
		rd_kafka_error_t *e;
		health_blocked(s->health, 1);
		if (commit) {
			e = rd_kafka_commit_transaction(s->producer, TXN_CALL_MS);
		} else {
			rd_kafka_consumer_group_metadata_t *group =
			    rd_kafka_consumer_group_metadata(s->consumer);
			e = rd_kafka_send_offsets_to_transaction(s->producer, offsets, group,
			                                         TXN_CALL_MS);
			rd_kafka_consumer_group_metadata_destroy(group);
		}
		health_blocked(s->health, 0);
		txn_next n =
		    txn_check(s, commit ? "commit_transaction" : "send_offsets_to_transaction", e);
		if (n != TXN_RETRY)
			return n;
		health_set(s->health, HEALTH_NOT_PAUSED, 0);
		int64_t until = mono_ms() + svc_backoff_ms(s, attempt++);
		while (mono_ms() < until) {
			if (svc_out_of_time(s))
				return TXN_FATAL;
			rd_kafka_poll(s->producer, 20);
		}
	}
}

/* After a step failed for good: 2 when a new producer can go on, -1 when the
 * process must stop (fenced, or the graceful stop ran out of time). */
static int stuck(const svc *s)
{
	return s->producer_broken && !s->fatal ? 2 : -1;
}

/* One attempt at the batch's transaction: begin, produce what is owed, send
 * the offsets (while the records are on their way), wait until the broker
 * has every record, commit. Returns 0 once committed (or when every message
 * of the batch was revoked), 1 when the attempt was aborted and is to be
 * made again, 2 when the producer must be replaced first, -1 when the
 * process must stop. */
static int txn_attempt(svc *s)
{
	rd_kafka_error_t *e = rd_kafka_begin_transaction(s->producer);
	if (e != NULL) {
		/* begin fails only on a fatal error or a state the loop did not
		 * expect */
		if (txn_check(s, "begin_transaction", e) != TXN_FATAL)
			s->producer_broken = 1;
		return stuck(s);
	}
	s->txn_open = 1;
	int64_t t0 = mono_us();
	for (size_t i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		sl->dlq_send.state = sl->result_send.state = SEND_NONE;
		if (sl->revoked)
			continue;
		if (sl->item.dlq)
			svc_produce_dlq(s, sl);
		if (sl->item.has_result)
			svc_produce_result(s, sl, sl->reply_default);
	}

	rd_kafka_topic_partition_list_t *offsets = svc_batch_offsets(s);
	if (offsets == NULL) /* nothing owed */
		return svc_txn_abort(s, 0) == 0 ? 0 : stuck(s);
	/* From here a revoke leaves the transaction alone (see revoke_txn()):
	 * its offsets go under the generation that owns the partitions. */
	s->txn_committing = 1;
	int64_t t1 = mono_us();
	txn_next n = txn_call(s, 0, offsets);
	rd_kafka_topic_partition_list_destroy(offsets);
	int64_t t2 = mono_us();

	int64_t started = mono_ms();
	while (n == TXN_DONE) {
		rd_kafka_poll(s->producer, 50);
		if (s->fatal || s->producer_broken || svc_out_of_time(s))
			return stuck(s);
		size_t pending, failed;
		svc_count_sends(s, &pending, &failed);
		if (failed > 0) {
			/* librdkafka makes the transaction abortable at the first
			 * record that fails */
			log_event(LOG_WARN, "publish_retry", "{s:i, s:i}", "failed", (int)failed,
			          "pending", (int)pending);
			n = TXN_ABORT;
			break;
		}
		if (pending == 0)
			break;
		if (mono_ms() - started > 1000)
			svc_keepalive(s);
	}
	int64_t t3 = mono_us();
	if (n == TXN_DONE) {
		/* The database has the batch's decisions and the broker its
		 * records and offsets, uncommitted: a crash now is the case the
		 * crash test makes. */
		failpoint("before_txn_commit");
		n = txn_call(s, 1, NULL);
	}
	if (n == TXN_DONE) {
		s->txn_open = 0;
		s->txn_committing = 0;
		/* the lag and the stall check count from the committed offsets */
		rd_kafka_topic_partition_list_t *done = svc_batch_offsets(s);
		int64_t now = metrics_now_ms();
		for (int i = 0; done != NULL && i < done->cnt; i++)
			metrics_offsets_done(s->metrics, done->elems[i].partition,
			                     done->elems[i].offset, now);
		if (done != NULL)
			rd_kafka_topic_partition_list_destroy(done);
		log_event(LOG_DEBUG, "txn_committed", "{s:i, s:I, s:I, s:I, s:I}", "batch",
		          (int)s->nslots, "produce_us", (json_int_t)(t1 - t0), "offsets_us",
		          (json_int_t)(t2 - t1), "acks_us", (json_int_t)(t3 - t2), "commit_us",
		          (json_int_t)(mono_us() - t3));
		return 0;
	}
	if (n != TXN_ABORT)
		return stuck(s);
	/* Abort (purging what is left), mend what the records' own errors
	 * call for, and try again. */
	if (svc_txn_abort(s, 0) != 0)
		return stuck(s);
	apply_fallbacks(s);
	return 1;
}

/* Replace a producer that a fatal error other than fencing has broken (seen
 * with librdkafka 2.0.2 when the broker, back from an outage, is asked to
 * abort a transaction it never registered: INVALID_TXN_STATE). The new one,
 * with the same transactional.id, aborts whatever the old one left open, as
 * a restart of the process would, without leaving the group; the batch in
 * hand is then published again. A fourth replacement without a committed
 * transaction between them stops the process (SERVICE_EXIT_FATAL). */
static int reset_producer(svc *s)
{
	char errstr[512];
	if (++s->resets > 3) {
		snprintf(errstr, sizeof errstr, "the producer broke again after 3 replacements");
		goto fail;
	}
	log_event(LOG_WARN, "producer_reset", "{s:i, s:s}", "attempt", s->resets,
	          "transactional_id", s->cfg->transactional_id);
	rd_kafka_purge(s->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	drain_reports(s);
	rd_kafka_destroy(s->producer);
	s->producer = NULL;
	s->txn_open = 0;
	s->txn_committing = 0;
	s->txn_aborts++;
	s->producer_broken = 0;
	if (svc_make_producer(s, errstr, sizeof errstr) != 0 ||
	    svc_txn_init(s, 1, errstr, sizeof errstr) != 0)
		goto fail;
	return 0;
fail:
	log_event(LOG_ERROR, "kafka_fatal", "{s:s, s:s}", "error", errstr, "effect",
	          "the KM-S stops; the batch in hand is answered after the restart");
	s->fatal = 1;
	svc_run = 0;
	return -1;
}

static size_t owed(const svc *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->nslots; i++)
		n += !s->slots[i].revoked;
	return n;
}

/* Step 4 with exactly_once. An attempt that aborts is made again with the
 * batch in hand: its decisions are committed in PostgreSQL and its slots
 * hold them, so the new transaction carries the very same Results (what
 * deciding them again from the audit rows would give) and the same offsets.
 * No rewind of the consumer is needed: its position never moved past the
 * batch, and what a revoke took away is left to the next owner. Returns 0
 * when committed, -1 on a fatal error or when the graceful stop ran out of
 * time (nothing of the batch is then committed: it is redelivered). */
int svc_publish_txn(svc *s)
{
	int attempt = 0;
	while (owed(s) > 0) {
		int r = s->producer_broken ? 2 : txn_attempt(s);
		if (r == 0) {
			s->resets = 0;
			break;
		}
		if (r < 0)
			return -1;
		if (r == 2) {
			if (reset_producer(s) != 0)
				return -1;
			continue;
		}
		health_set(s->health, HEALTH_NOT_PAUSED, 0);
		if (svc_wait_ms(s, svc_backoff_ms(s, attempt++)) != 0 || s->fatal)
			return -1;
	}
	health_set(s->health, HEALTH_NOT_PAUSED, 1);
	health_set(s->health, HEALTH_BROKER, 1);
	return 0;
}

/* Start the producer's transactions: fences every earlier producer with this
 * transactional.id and aborts a transaction such a one left open, so that a
 * restarted instance never waits for its predecessor's. Waits for the
 * broker as for any outage. */
int svc_txn_init(svc *s, int in_service, char *errstr, size_t errstr_size)
{
	for (int attempt = 0; svc_run || in_service; attempt++) {
		health_blocked(s->health, 1);
		rd_kafka_error_t *e = rd_kafka_init_transactions(s->producer, 30000);
		health_blocked(s->health, 0);
		if (e == NULL) {
			log_event(LOG_INFO, "transactions_ready", "{s:s}", "transactional_id",
			          s->cfg->transactional_id);
			return 0;
		}
		if (rd_kafka_error_is_fatal(e) || !rd_kafka_error_is_retriable(e)) {
			snprintf(errstr, errstr_size,
			         "init_transactions: %s (a broker without transactions needs "
			         "exactly_once = false)",
			         rd_kafka_error_string(e));
			rd_kafka_error_destroy(e);
			return -1;
		}
		log_event(LOG_WARN, "txn_init_retry", "{s:s, s:i}", "error",
		          rd_kafka_error_string(e), "attempt", attempt);
		rd_kafka_error_destroy(e);
		if (!in_service) {
			usleep((useconds_t)svc_backoff_ms(s, attempt) * 1000);
		} else if (svc_wait_ms(s, svc_backoff_ms(s, attempt)) != 0) {
			snprintf(errstr, errstr_size, "the graceful stop ran out of time");
			return -1;
		}
	}
	snprintf(errstr, errstr_size, "stopped before the broker answered");
	return -1;
}
