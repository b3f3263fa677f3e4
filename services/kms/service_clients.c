/*
 * service_clients: the KM-S's two Kafka clients. The consumer (a member of
 * the group, offsets stored or sent by the loop, read_committed) and the
 * producer (idempotent, transactional with exactly_once) are configured
 * here, then the -X properties on top. Their callbacks run on the loop's
 * thread, from its polls, and report into the loop's state: errors, the
 * delivery of each Result and DLQ record, statistics, and rebalances, which
 * take the batch's revoked messages away. Also here: reading a message's
 * headers, and waiting (for the database, the broker, a backoff) while the
 * consumer keeps polling, so the group membership outlives any outage.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "service_int.h"

/* ---- reading a message ---- */

const rd_kafka_headers_t *svc_headers_of(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *h = NULL;
	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return h;
}

int svc_header(const rd_kafka_message_t *m, const char *name, const void **value, size_t *size)
{
	const rd_kafka_headers_t *h = svc_headers_of(m);
	if (h == NULL)
		return -1;
	return rd_kafka_header_get_last(h, name, value, size) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0
	                                                                                    : -1;
}

/* ---- Kafka callbacks ---- */

/* Another process with this transactional.id has taken over. */
int svc_is_fenced(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
	       err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	svc *s = opaque;
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		health_set(s->health, HEALTH_BROKER, 0);
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char fatal[512];
		rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk, fatal, sizeof fatal);
		if (s->cfg->exactly_once && rk == s->producer && !svc_is_fenced(code)) {
			log_event(LOG_ERROR, "kafka_fatal", "{s:s, s:s, s:s, s:s}", "client",
			          rd_kafka_name(rk), "code", rd_kafka_err2name(code), "error",
			          fatal, "effect", "the producer is replaced");
			s->producer_broken = 1;
			return;
		}
		log_event(LOG_ERROR, svc_is_fenced(code) ? "producer_fenced" : "kafka_fatal",
		          "{s:s, s:s, s:s}", "client", rd_kafka_name(rk), "code",
		          rd_kafka_err2name(code), "error", fatal);
		/* With transactions: fenced by a newer instance with this
		 * transactional.id. Stop without finishing the batch, exit
		 * non-zero. */
		if (s->cfg->exactly_once)
			s->fatal = 1;
		svc_run = 0;
		return;
	}
	log_event(LOG_WARN, "kafka_error", "{s:s, s:s, s:s}", "client", rd_kafka_name(rk), "code",
	          rd_kafka_err2name((rd_kafka_resp_err_t)err), "reason", reason);
}

/* librdkafka's own log lines, as event lines like every other. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	log_level l = level <= 3   ? LOG_ERROR
	              : level == 4 ? LOG_WARN
	              : level <= 6 ? LOG_INFO
	                           : LOG_DEBUG;
	log_event(l, "kafka_log", "{s:s, s:s, s:s}", "client", rd_kafka_name(rk), "facility", fac,
	          "message", buf);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	svc *s = opaque;
	/* _private points at the slot's state field for this message */
	send_track *track = m->_private;
	if (track == NULL)
		return;
	if (!m->err) {
		const char *topic = rd_kafka_topic_name(m->rkt);
		if (strcmp(topic, s->cfg->dlq_topic) != 0)
			metrics_result_published(s->metrics,
			                         strcmp(topic, s->cfg->results_topic) != 0);
	}
	track->state = m->err ? SEND_FAILED : SEND_DONE;
	track->err = m->err;
	if (m->err)
		log_event(LOG_WARN, "delivery_failed", "{s:s, s:s}", "topic",
		          rd_kafka_topic_name(m->rkt), "error", rd_kafka_err2str(m->err));
}

/* librdkafka's statistics of the consumer, served by its poll on this
 * thread: the lag and the stall check come from them. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	(void)rk;
	svc *s = opaque;
	metrics_consumer_stats(s->metrics, json, len, metrics_now_ms());
	return 0; /* librdkafka frees json */
}

static int is_revoked(const rd_kafka_topic_partition_list_t *parts, const rd_kafka_message_t *m)
{
	for (int i = 0; i < parts->cnt; i++)
		if (parts->elems[i].partition == m->partition &&
		    strcmp(parts->elems[i].topic, rd_kafka_topic_name(m->rkt)) == 0)
			return 1;
	return 0;
}

/* exactly_once: partitions are going while a batch may be in hand. Their
 * messages belong to the next owner, which consumes them again from the last
 * committed offset, finds their audit rows and answers them with the same
 * Results; so they are dropped from the batch: no later attempt produces
 * their Results or sends their offsets.
 *
 * A transaction open now has its offsets sent already: the loop sends them
 * right after producing, without polling the consumer in between, so that
 * they always go under the group generation that owns the partitions
 * (KIP-447). Such a transaction is left to finish, committed or aborted,
 * and either is right: the next owner's offset fetch (require_stable, as
 * librdkafka asks for read_committed consumers) waits until it is done, then
 * starts after what it committed, or where it started if it aborted; a
 * read_committed reader sees its Results only if its offsets committed with
 * them. A transaction met before its offsets went out (the loop never polls
 * there; kept for safety) may hold Results of the revoked partitions
 * without their offsets, and is aborted before the revoke completes, as
 * librdkafka's transactions example does. */
static void revoke_txn(svc *s, const rd_kafka_topic_partition_list_t *parts)
{
	size_t n = 0;
	for (size_t i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		if (!sl->revoked && is_revoked(parts, sl->msg)) {
			sl->revoked = 1;
			n++;
		}
	}
	if (n > 0)
		log_event(LOG_INFO, "batch_revoked", "{s:i, s:i}", "messages", (int)n, "batch",
		          (int)s->nslots);
	if (s->txn_open && !s->txn_committing && !s->fatal && !s->producer_broken &&
	    svc_txn_abort(s, 1) != 0)
		log_event(LOG_WARN, "txn_abort_failed", "{s:s}", "effect",
		          "the transaction is never committed; the broker aborts it");
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	svc *s = opaque;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_event(LOG_INFO, "partitions_assigned", "{s:i}", "count", parts->cnt);
		rd_kafka_assign(rk, parts);
		/* A batch is in hand: new partitions wait until it is done.
		 * Otherwise they must flow, whatever state an earlier
		 * assignment of theirs was left in: librdkafka keeps a
		 * partition's pause across an unassign and a new assign. */
		if (s->paused)
			rd_kafka_pause_partitions(rk, parts);
		else
			rd_kafka_resume_partitions(rk, parts);
		metrics_partitions_paused(s->metrics, s->paused ? parts->cnt : 0);
		health_set(s->health, HEALTH_GROUP_JOINED, 1);
		return;
	}
	log_event(LOG_INFO, "partitions_revoked", "{s:i, s:b}", "count", parts->cnt, "lost",
	          rd_kafka_assignment_lost(rk));
	if (s->cfg->exactly_once) {
		revoke_txn(s, parts);
	} else {
		/* Commit what is done before another member takes over. */
		rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
		if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
			log_event(LOG_WARN, "commit_failed", "{s:s}", "error",
			          rd_kafka_err2str(cerr));
	}
	/* Deferred messages of revoked partitions belong to their next owner. */
	size_t keep = 0;
	for (size_t i = 0; i < s->ndeferred; i++) {
		if (is_revoked(parts, s->deferred[i]))
			rd_kafka_message_destroy(s->deferred[i]);
		else
			s->deferred[keep++] = s->deferred[i];
	}
	s->ndeferred = keep;
	rd_kafka_resume_partitions(rk, parts);
	rd_kafka_assign(rk, NULL);
	metrics_partitions_paused(s->metrics, 0);
	health_set(s->health, HEALTH_GROUP_JOINED, 0);
}

/* ---- client set-up ---- */

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                    size_t errstr_size)
{
	if (rd_kafka_conf_set(conf, k, v, errstr, errstr_size) != RD_KAFKA_CONF_OK)
		return -1;
	return 0;
}

/* The -X properties, applied after the KM-S's own settings so they win. */
static int apply_overrides(rd_kafka_conf_t *conf, const kms_config *cfg, char *errstr,
                           size_t errstr_size)
{
	for (size_t i = 0; i < cfg->rdkafka_count; i++)
		if (conf_set(conf, cfg->rdkafka_keys[i], cfg->rdkafka_values[i], errstr,
		             errstr_size) != 0)
			return -1;
	return 0;
}

/* The client of conf, the -X properties applied last so that they win.
 * Takes conf, whatever the outcome: it is owned by the client, or freed. */
static rd_kafka_t *new_client(const svc *s, rd_kafka_type_t type, rd_kafka_conf_t *conf,
                              char *errstr, size_t errstr_size)
{
	rd_kafka_t *rk = NULL;
	if (apply_overrides(conf, s->cfg, errstr, errstr_size) == 0)
		rk = rd_kafka_new(type, conf, errstr, errstr_size);
	if (rk == NULL)
		rd_kafka_conf_destroy(conf);
	return rk;
}

static rd_kafka_conf_t *base_conf(svc *s, char *errstr, size_t errstr_size)
{
	const kms_config *cfg = s->cfg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (conf_set(conf, "bootstrap.servers", cfg->bootstrap, errstr, errstr_size) != 0 ||
	    conf_set(conf, "client.id", cfg->kms_id, errstr, errstr_size) != 0 ||
	    /* small requests and Results: Nagle's delay would be most of a
	     * Result's latency */
	    conf_set(conf, "socket.nagle.disable", "true", errstr, errstr_size) != 0)
		goto fail;
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_opaque(conf, s);
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

int svc_make_clients(svc *s, char *errstr, size_t errstr_size)
{
	const kms_config *cfg = s->cfg;
	char interval[32];
	snprintf(interval, sizeof interval, "%lld", (long long)cfg->max_poll_interval_ms);

	rd_kafka_conf_t *conf = base_conf(s, errstr, errstr_size);
	if (conf == NULL)
		return -1;
	if (conf_set(conf, "group.id", cfg->group_id, errstr, errstr_size) != 0 ||
	    conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) != 0 ||
	    /* with transactions the offsets are committed in them */
	    conf_set(conf, "enable.auto.commit", cfg->exactly_once ? "false" : "true", errstr,
	             errstr_size) != 0 ||
	    conf_set(conf, "auto.commit.interval.ms", "1000", errstr, errstr_size) != 0 ||
	    conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) != 0 ||
	    conf_set(conf, "max.poll.interval.ms", interval, errstr, errstr_size) != 0 ||
	    conf_set(conf, "isolation.level", "read_committed", errstr, errstr_size) != 0 ||
	    /* Bound the prefetch, so memory stays flat whatever the backlog.
	     * Not lower: librdkafka 2.0 stops fetching for a whole second
	     * once the queue is over either bound (a later release makes
	     * that fetch.queue.backoff.ms), so the queue must hold about a
	     * second of draining or the loop starves; measured by make bench
	     * (2 MiB: a third of the throughput). */
	    conf_set(conf, "queued.min.messages", "12000", errstr, errstr_size) != 0 ||
	    conf_set(conf, "queued.max.messages.kbytes", "12288", errstr, errstr_size) != 0 ||
	    conf_set(conf, "fetch.max.bytes", "1048576", errstr, errstr_size) != 0 ||
	    conf_set(conf, "max.partition.fetch.bytes", "262144", errstr, errstr_size) != 0 ||
	    /* the lag of kms_consumer_lag and the stall check (on_stats) */
	    conf_set(conf, "statistics.interval.ms", "1000", errstr, errstr_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	rd_kafka_conf_set_stats_cb(conf, on_stats);
	s->consumer = new_client(s, RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	conf = NULL; /* now owned by the consumer, or freed */
	if (s->consumer == NULL)
		return -1;
	rd_kafka_poll_set_consumer(s->consumer);
	/* the interval in force, -X included */
	char stats_ms[32] = "0";
	size_t stats_ms_size = sizeof stats_ms;
	rd_kafka_conf_get(rd_kafka_conf(s->consumer), "statistics.interval.ms", stats_ms,
	                  &stats_ms_size);
	/* librdkafka has checked the value: a whole number */
	metrics_consumer_started(s->metrics, strtoll(stats_ms, NULL, 10), metrics_now_ms());
	return svc_make_producer(s, errstr, errstr_size);
}

int svc_make_producer(svc *s, char *errstr, size_t errstr_size)
{
	const kms_config *cfg = s->cfg;
	rd_kafka_conf_t *conf = base_conf(s, errstr, errstr_size);
	if (conf == NULL)
		return -1;
	char txn_timeout[32];
	snprintf(txn_timeout, sizeof txn_timeout, "%lld", (long long)cfg->transaction_timeout_ms);
	if (cfg->exactly_once) {
		/* message.timeout.ms stays librdkafka's transactional default,
		 * transaction.timeout.ms: a Result the broker has not taken by
		 * then fails, and its transaction is aborted and tried again
		 * (the broker would abort it then anyway). */
		if (conf_set(conf, "transactional.id", cfg->transactional_id, errstr,
		             errstr_size) != 0 ||
		    conf_set(conf, "transaction.timeout.ms", txn_timeout, errstr, errstr_size) !=
		        0 ||
		    /* A transaction's first requests often meet the broker
		     * still writing the markers of the one before
		     * (CONCURRENT_TRANSACTIONS); librdkafka 2.0.2 retries
		     * AddOffsetsToTxn after retry.backoff.ms, 100 ms by default,
		     * which was most of the p95 latency (make bench: 110 ms at
		     * 100 ms, 17 ms at 20 ms, the backoff librdkafka itself uses
		     * for AddPartitionsToTxn). */
		    conf_set(conf, "retry.backoff.ms", "20", errstr, errstr_size) != 0) {
			rd_kafka_conf_destroy(conf);
			return -1;
		}
	} else if (conf_set(conf, "message.timeout.ms", "0", errstr, errstr_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	if (conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) != 0 ||
	    /* a batch's Results are produced together and waited for at once:
	     * lingering would only add to every Result's latency */
	    conf_set(conf, "linger.ms", "0", errstr, errstr_size) != 0 ||
	    conf_set(conf, "compression.codec", "lz4", errstr, errstr_size) != 0 ||
	    /* room for a DLQ copy of the largest request value and its headers;
	     * the broker's own limit still applies */
	    conf_set(conf, "message.max.bytes", "16777216", errstr, errstr_size) != 0 ||
	    /* the partitioner of the Java client, so keys land where they would */
	    conf_set(conf, "partitioner", "murmur2_random", errstr, errstr_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	s->producer = new_client(s, RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	return s->producer != NULL ? 0 : -1;
}

/* ---- waiting without losing the group ---- */

static void defer_message(svc *s, rd_kafka_message_t *m)
{
	if (s->ndeferred == s->deferred_cap) {
		size_t cap = s->deferred_cap ? s->deferred_cap * 2 : 64;
		rd_kafka_message_t **d = realloc(s->deferred, cap * sizeof *d);
		if (d == NULL) {
			/* Cannot keep it: rewind the partition so it comes again. */
			rd_kafka_topic_partition_list_t *p = rd_kafka_topic_partition_list_new(1);
			rd_kafka_topic_partition_list_add(p, rd_kafka_topic_name(m->rkt),
			                                  m->partition)
			    ->offset = m->offset;
			rd_kafka_error_t *e = rd_kafka_seek_partitions(s->consumer, p, 1000);
			rd_kafka_error_destroy(e);
			rd_kafka_topic_partition_list_destroy(p);
			rd_kafka_message_destroy(m);
			return;
		}
		s->deferred = d;
		s->deferred_cap = cap;
	}
	s->deferred[s->ndeferred++] = m;
}

void svc_consumer_error(svc *s, rd_kafka_message_t *m)
{
	if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		log_event(LOG_WARN, "consume_error", "{s:s, s:s}", "code",
		          rd_kafka_err2name(m->err), "reason", rd_kafka_message_errstr(m));
		if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT ||
		    m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
			health_set(s->health, HEALTH_BROKER, 0);
	}
	rd_kafka_message_destroy(m);
}

/* Keep the group membership alive while a batch waits: pause what is
 * assigned, and poll. */
void svc_keepalive(svc *s)
{
	if (!s->paused) {
		rd_kafka_topic_partition_list_t *parts = NULL;
		if (rd_kafka_assignment(s->consumer, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			rd_kafka_pause_partitions(s->consumer, parts);
			metrics_partitions_paused(s->metrics, parts->cnt);
			rd_kafka_topic_partition_list_destroy(parts);
		}
		s->paused = 1;
	}
	rd_kafka_message_t *m;
	while ((m = rd_kafka_consumer_poll(s->consumer, 0)) != NULL) {
		if (m->err)
			svc_consumer_error(s, m);
		else
			defer_message(s, m);
	}
}

void svc_resume(svc *s)
{
	if (!s->paused)
		return;
	rd_kafka_topic_partition_list_t *parts = NULL;
	if (rd_kafka_assignment(s->consumer, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_resume_partitions(s->consumer, parts);
		rd_kafka_topic_partition_list_destroy(parts);
	}
	s->paused = 0;
	metrics_partitions_paused(s->metrics, 0);
}

/* Sleep for ms while keeping the group. Returns -1 when the graceful stop
 * has run out of time. */
int svc_wait_ms(svc *s, int64_t ms)
{
	int64_t until = mono_ms() + ms;
	for (;;) {
		svc_keepalive(s);
		rd_kafka_poll(s->producer, 0);
		if (svc_out_of_time(s))
			return -1;
		int64_t left = until - mono_ms();
		if (left <= 0)
			return 0;
		usleep((useconds_t)(left < 100 ? left : 100) * 1000);
	}
}

int64_t svc_backoff_ms(const svc *s, int attempt)
{
	int64_t ms = 100;
	for (int i = 0; i < attempt && ms < s->cfg->retry_backoff_max_ms; i++)
		ms *= 2;
	return ms < s->cfg->retry_backoff_max_ms ? ms : s->cfg->retry_backoff_max_ms;
}

/* Past the graceful stop's deadline? */
int svc_out_of_time(svc *s)
{
	if (svc_run)
		return 0;
	if (s->stop_at_ms == 0)
		s->stop_at_ms = mono_ms() + s->cfg->shutdown_timeout_ms;
	return mono_ms() > s->stop_at_ms;
}
