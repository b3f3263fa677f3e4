/*
 * service: the KM-S loop. One thread consumes the requests topic as a member
 * of the consumer group and works in batches:
 *
 *   1. take what is waiting, up to batch_max messages (natural batching:
 *      the next batch accumulates while this one is decided);
 *   2. decide what can be decided without I/O: decode, validate, verify the
 *      token, route the reply;
 *   3. decide the rest in one PostgreSQL transaction, set-based (SLA,
 *      idempotency, storage, audit: store_batch.c and decide.c), retried
 *      whole with bounded backoff while the database is unreachable;
 *   4. publish every Result (and DLQ record) and the batch's offsets in one
 *      Kafka transaction (exactly_once, the default), or, without
 *      transactions, publish with the idempotent producer, wait until each is
 *      acknowledged and only then store the batch's offsets for the next
 *      commit.
 *
 * A crash between 3 and 4 redelivers the batch; the audit trail, keyed by the
 * messages' coordinates, turns every redelivered message into the very Result
 * it got the first time. With transactions, the Results of a batch whose
 * transaction did not commit are aborted, so a read_committed reader sees
 * only the copy that committed with the offsets: exactly one. While any step
 * waits (database or broker away), the assigned partitions are paused and the
 * consumer keeps polling, so the group membership outlives the outage.
 *
 * Between 1 and 2, reload_point() puts in force what a SIGHUP asked for (the
 * issuers file, a new database connection) and the key sets the trust's
 * JWKS refresher thread brought, so each batch is decided under one trust
 * (but for a set fetched for a token's unknown kid, used at once).
 */
#include "service.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "authz.h"
#include "codec.h"
#include "health.h"
#include "isotime.h"
#include "jwt.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "store.h"
#include "tokcache.h"
#include "trust.h"
#include "validate.h"

#define RESULT_CE_TYPE "org.threegpp.seal.km.provisioning.result.v1"
#define DLQ_EXCEPTION  "org.apache.kafka.connect.errors.DataException"

static volatile sig_atomic_t run = 1;
/* SIGHUP: re-read the issuers file (and the TLS files) at the next batch
 * boundary. The one other flag a handler sets. */
static volatile sig_atomic_t reload_asked = 0;

/* The longest a transactional call blocks the loop before it is retried. */
#define TXN_CALL_MS 5000

static void on_signal(int sig)
{
	(void)sig;
	if (!run)
		_exit(SERVICE_EXIT_SIGNAL); /* second signal: stop at once */
	run = 0;
}

static void on_hangup(int sig)
{
	(void)sig;
	reload_asked = 1;
}

typedef enum { SEND_NONE = 0, SEND_PENDING, SEND_DONE, SEND_FAILED } send_state;

/* Where one produced message stands; the delivery callback fills it. */
typedef struct {
	send_state state;
	rd_kafka_resp_err_t err;
} send_track;

/* One consumed message and everything decided about it. */
typedef struct {
	rd_kafka_message_t *msg; /* owned */
	codec_request *req;      /* owned; NULL when undecodable */
	codec_salvage salvage;   /* owned */
	codec_status status;
	char decode_error[256];
	char pre_detail[256];
	char vsp_id[128];
	char reply_topic[256];
	int32_t reply_partition;
	char reply_note[256];
	store_item item;
	send_track result_send, dlq_send;
	int dlq_omit_value; /* the value is too large to copy into the DLQ */
	int pure_done;      /* decide_pure() gave its verdict */
	int revoked;        /* exactly_once: its partition was revoked while the
	                     * batch was in hand; its next owner answers it */
	int reply_default;  /* exactly_once: the reply topic refused the Result */
	/* why the Result does not go where its request asked (for the metrics) */
	metrics_reroute_reason reroute;
	int confluent; /* Confluent-framed: so is its Result */
} slot;

typedef struct {
	const kms_config *cfg;
	rd_kafka_t *consumer;
	rd_kafka_t *producer;
	codec *codec;
	trust *trust;       /* issuers, their keys and bindings */
	uint64_t trust_gen; /* the trust generation policy and tokens are for */
	int64_t stale_check_ms;
	size_t stale_count;
	tokcache *tokens; /* tokens the verifier in force has verified */
	authz_policy policy;
	validate_limits limits;
	store *store;
	health *health;
	metrics *metrics;
	int64_t decode_ns;        /* decoding time of the batch in hand */
	uint64_t batch_id;        /* batches since start, for the batch log line */
	registry *registry;       /* NULL: no registry, single-object only */
	int64_t result_schema_id; /* the registry's id of the Result schema; -1 */
	int64_t registry_fail_ms; /* when the registry last failed (monotonic) */
	regex_t reply_re;
	int has_reply_re;

	slot *slots;
	size_t nslots;
	store_item *items; /* the store's copy of the batch, batch_max long */
	/* messages polled while a batch was in hand, kept in order */
	rd_kafka_message_t **deferred;
	size_t ndeferred, deferred_cap;
	int paused;
	int64_t stop_at_ms; /* graceful stop deadline, 0 while running */
	int64_t last_check_ms;

	/* exactly_once */
	int txn_open;        /* begun, neither committed nor aborted */
	int txn_committing;  /* its offsets are being sent or it is being committed */
	unsigned txn_aborts; /* aborts so far: publish sees one made under it */
	int fatal;           /* fenced, or the producer cannot be replaced: stop,
	                      * exit SERVICE_EXIT_FATAL */
	int producer_broken; /* a fatal error other than fencing: replace it */
	int resets;          /* producers replaced since the last commit */
} svc;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Past the graceful stop's deadline? */
static int out_of_time(svc *s)
{
	if (run)
		return 0;
	if (s->stop_at_ms == 0)
		s->stop_at_ms = mono_ms() + s->cfg->shutdown_timeout_ms;
	return mono_ms() > s->stop_at_ms;
}

/* ---- Kafka callbacks ---- */

/* Another process with this transactional.id has taken over. */
static int is_fenced(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
	       err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

static int txn_abort(svc *s, int in_rebalance);

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	svc *s = opaque;
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		health_set(s->health, HEALTH_BROKER, 0);
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char fatal[512];
		rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk, fatal, sizeof fatal);
		if (s->cfg->exactly_once && rk == s->producer && !is_fenced(code)) {
			log_event(LOG_ERROR, "kafka_fatal", "{s:s, s:s, s:s, s:s}", "client",
			          rd_kafka_name(rk), "code", rd_kafka_err2name(code), "error",
			          fatal, "effect", "the producer is replaced");
			s->producer_broken = 1;
			return;
		}
		log_event(LOG_ERROR, is_fenced(code) ? "producer_fenced" : "kafka_fatal",
		          "{s:s, s:s, s:s}", "client", rd_kafka_name(rk), "code",
		          rd_kafka_err2name(code), "error", fatal);
		/* With transactions: fenced by a newer instance with this
		 * transactional.id. Stop without finishing the batch, exit
		 * non-zero. */
		if (s->cfg->exactly_once)
			s->fatal = 1;
		run = 0;
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
	    txn_abort(s, 1) != 0)
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

static int make_producer(svc *s, char *errstr, size_t errstr_size);

static int make_clients(svc *s, char *errstr, size_t errstr_size)
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
	if (apply_overrides(conf, cfg, errstr, errstr_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	rd_kafka_conf_set_stats_cb(conf, on_stats);
	char stats_ms[32] = "0";
	size_t stats_ms_size = sizeof stats_ms;
	rd_kafka_conf_get(conf, "statistics.interval.ms", stats_ms, &stats_ms_size);
	s->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (s->consumer == NULL) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	conf = NULL; /* now owned by the consumer */
	rd_kafka_poll_set_consumer(s->consumer);
	/* librdkafka has checked the value: a whole number */
	metrics_consumer_started(s->metrics, strtoll(stats_ms, NULL, 10), metrics_now_ms());
	return make_producer(s, errstr, errstr_size);
}

static int make_producer(svc *s, char *errstr, size_t errstr_size)
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
	if (apply_overrides(conf, cfg, errstr, errstr_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	s->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (s->producer == NULL) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	return 0;
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

static void handle_consumer_error(svc *s, rd_kafka_message_t *m)
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
static void keepalive(svc *s)
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
			handle_consumer_error(s, m);
		else
			defer_message(s, m);
	}
}

static void resume(svc *s)
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
static int wait_ms(svc *s, int64_t ms)
{
	int64_t until = mono_ms() + ms;
	for (;;) {
		keepalive(s);
		rd_kafka_poll(s->producer, 0);
		if (out_of_time(s))
			return -1;
		int64_t left = until - mono_ms();
		if (left <= 0)
			return 0;
		usleep((useconds_t)(left < 100 ? left : 100) * 1000);
	}
}

static int64_t backoff_ms(const svc *s, int attempt)
{
	int64_t ms = 100;
	for (int i = 0; i < attempt && ms < s->cfg->retry_backoff_max_ms; i++)
		ms *= 2;
	return ms < s->cfg->retry_backoff_max_ms ? ms : s->cfg->retry_backoff_max_ms;
}

/* ---- trust: adoption and reload ---- */

/* Point the policy at the trust in force; when it changed, drop the cached
 * tokens, which only the keys that verified them vouch for. */
static void adopt_trust(svc *s)
{
	uint64_t gen = trust_generation(s->trust);

	s->policy.verifier = trust_verifier(s->trust);
	s->policy.issuers = trust_issuers(s->trust, &s->policy.n_issuers);
	if (gen == s->trust_gen)
		return;
	tokcache_clear(s->tokens);
	if (s->trust_gen != 0)
		log_event(LOG_INFO, "trust_changed", "{s:I}", "generation", (json_int_t)gen);
	s->trust_gen = gen;
}

/* Readiness says when a JWKS URI issuer's keys are stale (at most once a
 * second, or now when force is set). */
static void check_keys_fresh(svc *s, int force)
{
	char which[400];
	int64_t now = mono_ms();

	if (!force && now - s->stale_check_ms < 1000)
		return;
	s->stale_check_ms = now;
	size_t n = trust_stale(s->trust, which, sizeof which);
	health_set(s->health, HEALTH_KEYS_FRESH, n == 0);
	health_set_note(s->health, HEALTH_NOTE_STALE, n > 0 ? which : NULL);
	if (n > 0 && s->stale_count == 0)
		log_event(LOG_WARN, "jwks_stale", "{s:s}", "issuers", which);
	else if (n == 0 && s->stale_count > 0)
		log_event(LOG_INFO, "jwks_fresh", NULL);
	s->stale_count = n;
}

/* SIGHUP: the issuers file and the TLS files the KM-S reads per connection
 * (libpq's) are read again. Each is taken whole or refused whole, the old
 * one staying in force. The Kafka clients keep their TLS files: librdkafka
 * 2.0 reads them once, into each client, and making new clients would leave
 * the consumer group. */
static void reload(svc *s)
{
	const kms_config *cfg = s->cfg;
	char errstr[512], note[512] = "";
	int ok = 1;

	log_event(LOG_INFO, "reload", "{s:s}", "issuers_file", cfg->issuers_file);
	if (cfg->issuers_file[0] != '\0' &&
	    trust_load(s->trust, cfg->issuers_file, errstr, sizeof errstr) != 0) {
		log_event(LOG_ERROR, "reload_refused", "{s:s, s:s, s:s}", "what", "issuers_file",
		          "error", errstr, "effect", "the issuers in force stay");
		snprintf(note, sizeof note, "issuers file refused: %.400s", errstr);
		ok = 0;
	}
	health_set(s->health, HEALTH_TRUST_RELOADED, ok);
	if (store_reconnect(s->store, errstr, sizeof errstr) != 0) {
		log_event(LOG_WARN, "reload_refused", "{s:s, s:s, s:s}", "what",
		          "database_connection", "error", errstr, "effect",
		          "the database connection in force stays");
		if (note[0] == '\0')
			snprintf(note, sizeof note, "new database connection refused: %.400s",
			         errstr);
	}
	health_set_note(s->health, HEALTH_NOTE_RELOAD, note[0] != '\0' ? note : NULL);
	adopt_trust(s);
	check_keys_fresh(s, 1);
	log_event(LOG_INFO, "reload_done", "{s:b, s:I}", "issuers_applied", ok, "generation",
	          (json_int_t)trust_generation(s->trust));
}

/* Between batches (after a batch is taken, before it is decided): a reload
 * asked for by SIGHUP, the key sets the JWKS refresher brought, readiness of
 * the keys. What changes here is in force for every message of the batches
 * that follow. */
static void reload_point(svc *s)
{
	if (reload_asked) {
		reload_asked = 0;
		reload(s);
	}
	if (trust_poll(s->trust))
		adopt_trust(s);
	check_keys_fresh(s, 0);
}

/* ---- step 2: the pure decisions ---- */

static const rd_kafka_headers_t *headers_of(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *h = NULL;
	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return h;
}

static int header(const rd_kafka_message_t *m, const char *name, const void **value, size_t *size)
{
	const rd_kafka_headers_t *h = headers_of(m);
	if (h == NULL)
		return -1;
	return rd_kafka_header_get_last(h, name, value, size) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0
	                                                                                    : -1;
}

static int topic_name_ok(const char *t, size_t n)
{
	if (n == 0 || n > 249)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = t[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return !(n == 1 && t[0] == '.') && !(n == 2 && t[0] == '.' && t[1] == '.');
}

/* Where the Result goes: kafka_replyTopic and kafka_replyPartition when they
 * are allowed, the default results topic otherwise (with a note). */
static void route_reply(svc *s, slot *sl)
{
	const kms_config *cfg = s->cfg;
	snprintf(sl->reply_topic, sizeof sl->reply_topic, "%s", cfg->results_topic);
	sl->reply_partition = RD_KAFKA_PARTITION_UA;
	sl->reply_note[0] = '\0';
	sl->reroute = METRICS_REROUTE_NONE;

	const void *v;
	size_t n;
	if (header(sl->msg, "kafka_replyTopic", &v, &n) != 0 || v == NULL)
		return;
	const char *t = v;
	char name[256];
	if (!topic_name_ok(t, n)) {
		snprintf(sl->reply_note, sizeof sl->reply_note,
		         "kafka_replyTopic refused: not a valid topic name");
		sl->reroute = METRICS_REROUTE_TOPIC_INVALID;
		return;
	}
	memcpy(name, t, n);
	name[n] = '\0';
	int allowed;
	if (s->has_reply_re)
		allowed = regexec(&s->reply_re, name, 0, NULL, 0) == 0;
	else
		allowed = strcmp(name, cfg->requests_topic) != 0 &&
		          strcmp(name, cfg->dlq_topic) != 0 && strncmp(name, "__", 2) != 0;
	if (!allowed) {
		snprintf(sl->reply_note, sizeof sl->reply_note,
		         "kafka_replyTopic refused: %.180s does not match the reply-topic pattern",
		         name);
		sl->reroute = METRICS_REROUTE_TOPIC_NOT_ALLOWED;
		return;
	}
	snprintf(sl->reply_topic, sizeof sl->reply_topic, "%s", name);

	if (header(sl->msg, "kafka_replyPartition", &v, &n) != 0 || v == NULL)
		return;
	const unsigned char *b = v;
	int32_t p = n == 4 ? (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	                               (uint32_t)b[2] << 8 | (uint32_t)b[3])
	                   : -1;
	if (p < 0) {
		snprintf(sl->reply_note, sizeof sl->reply_note,
		         "kafka_replyPartition ignored: not a 4-byte non-negative integer");
		sl->reroute = METRICS_REROUTE_PARTITION_INVALID;
		return;
	}
	sl->reply_partition = p;
}

/* The id of the Result schema in the registry, asked once: looked up under
 * the results topic's subject, registered there when missing (as a
 * registry-aware serializer would). */
static int result_schema_id(svc *s, char *errstr, size_t errstr_size)
{
	char subject[300];
	uint32_t id;
	if (s->result_schema_id >= 0)
		return 0;
	snprintf(subject, sizeof subject, "%s-value", s->cfg->results_topic);
	registry_status st =
	    registry_schema_id(s->registry, subject, codec_response_schema_json(s->codec), 1, &id,
	                       NULL, errstr, errstr_size);
	if (st != REGISTRY_OK)
		return -1;
	s->result_schema_id = id;
	return 0;
}

/* Decode a request in either framing, the first byte telling them apart.
 * A Confluent-framed value needs its writer schema from the registry and,
 * for its Result, the Result schema's id: CODEC_ERR_UNAVAILABLE when the
 * registry could not give them. Kept from asking again for a moment after
 * an outage, so a batch of such values costs one time-out, not one each. */
static codec_status decode(svc *s, slot *sl)
{
	rd_kafka_message_t *m = sl->msg;
	size_t len = m->payload ? m->len : 0;

	sl->confluent =
	    s->registry != NULL && codec_framing_of(m->payload, len) == CODEC_FRAMING_CONFLUENT;
	if (!sl->confluent)
		return codec_decode_request(s->codec, m->payload, len, &sl->req, &sl->salvage,
		                            sl->decode_error, sizeof sl->decode_error);
	registry_set_offline(s->registry,
	                     s->registry_fail_ms != 0 && mono_ms() - s->registry_fail_ms < 100);
	if (result_schema_id(s, sl->decode_error, sizeof sl->decode_error) != 0)
		return CODEC_ERR_UNAVAILABLE;
	codec_status st =
	    registry_decode_request(s->registry, m->payload, len, &sl->req, &sl->salvage,
	                            sl->decode_error, sizeof sl->decode_error);
	if (st != CODEC_ERR_UNAVAILABLE) {
		s->registry_fail_ms = 0;
		health_set(s->health, HEALTH_REGISTRY, 1);
	}
	return st;
}

static void registry_unavailable(svc *s, slot *sl)
{
	if (s->registry_fail_ms == 0 || mono_ms() - s->registry_fail_ms >= 100)
		log_event(LOG_WARN, "registry_unavailable", "{s:s, s:s, s:i, s:I}", "error",
		          sl->decode_error, "topic", rd_kafka_topic_name(sl->msg->rkt), "partition",
		          (int)sl->msg->partition, "offset", (json_int_t)sl->msg->offset);
	s->registry_fail_ms = mono_ms();
	health_set(s->health, HEALTH_REGISTRY, 0);
	codec_request_free(sl->req);
	sl->req = NULL;
	codec_salvage_free(&sl->salvage);
	sl->item.dlq = 0;
	sl->item.pre_cause = CODEC_CAUSE_NONE;
}

/* Decide what can be decided without I/O: decode, validate, hash the
 * content, verify the token, route the reply. Returns 0 with sl->item
 * filled for the store, or -1 on an internal error (out of memory while
 * decoding, hashing or verifying the token), which says nothing about the
 * message: it must not be answered, sent to the DLQ, decided by the store,
 * nor its offset stored: decide_pure_all() calls it again on the same slot
 * after a backoff and hands the batch to the store only once every slot
 * returned 0. Calling it again is safe: it releases what an earlier call
 * left in the slot. */
static int decide_pure(svc *s, slot *sl, int64_t now_s) __attribute__((warn_unused_result));

static int decide_pure(svc *s, slot *sl, int64_t now_s)
{
	rd_kafka_message_t *m = sl->msg;
	store_item *it = &sl->item;
	const char *why = NULL;

	codec_request_free(sl->req);
	sl->req = NULL;
	codec_salvage_free(&sl->salvage);
	memset(it, 0, sizeof *it);
	it->topic = rd_kafka_topic_name(m->rkt);
	it->partition = m->partition;
	it->offset = m->offset;
	it->pre_cause = CODEC_CAUSE_NONE;
	route_reply(s, sl);
	it->reply_note = sl->reply_note[0] ? sl->reply_note : NULL;

	int64_t decode_start = metrics_now_ns();
	sl->status = decode(s, sl);
	s->decode_ns += metrics_now_ns() - decode_start;
	if (sl->status == CODEC_ERR_UNAVAILABLE) {
		/* No verdict: the registry is away, the batch waits for it. */
		registry_unavailable(s, sl);
		return -1;
	}
	if (sl->status == CODEC_ERR_NOMEM) {
		why = sl->decode_error;
		goto internal;
	}
	if (sl->status != CODEC_OK) {
		it->dlq = 1;
		it->pre_cause = CODEC_CAUSE_INVALID_REQUEST;
		snprintf(sl->pre_detail, sizeof sl->pre_detail,
		         "value could not be decoded: %.200s", sl->decode_error);
		it->pre_detail = sl->pre_detail;
		/* a Result only when the request can still be named */
		if (sl->salvage.request_id != NULL && validate_uuid(sl->salvage.request_id) &&
		    sl->salvage.requester_identity != NULL) {
			it->request_id = sl->salvage.request_id;
			it->requester_identity = sl->salvage.requester_identity;
		}
		return 0;
	}

	codec_request *r = sl->req;
	it->req = r;
	it->request_id = r->request_id;
	it->requester_identity = r->requester_identity;
	if (validate_content_hash(r, it->content_hash) != 0) {
		/* A hash that is not the content's would match another
		 * request's, or miss this one's retry. */
		why = "the content hash could not be computed";
		goto internal;
	}

	if (validate_request(r, &s->limits, sl->pre_detail, sizeof sl->pre_detail) != 0) {
		it->pre_cause = CODEC_CAUSE_INVALID_REQUEST;
	} else if (m->key == NULL || m->key_len != strlen(r->requester_identity) ||
	           memcmp(m->key, r->requester_identity, m->key_len) != 0) {
		it->pre_cause = CODEC_CAUSE_INVALID_REQUEST;
		snprintf(sl->pre_detail, sizeof sl->pre_detail,
		         "the message key must be the requesterIdentity");
	} else {
		authz_decision d = authz_check(&s->policy, r->access_token, r->requester_identity,
		                               now_s, sl->vsp_id, sizeof sl->vsp_id, sl->pre_detail,
		                               sizeof sl->pre_detail);
		/* A kid its JWKS URI issuer's set lacks may be a rotation the
		 * issuer has just published: fetch the set (rate-limited), and
		 * when it changed, check the token again under it at once. */
		if (d == AUTHZ_DENY && trust_refresh_for_token(s->trust, r->access_token)) {
			adopt_trust(s);
			d = authz_check(&s->policy, r->access_token, r->requester_identity, now_s,
			                sl->vsp_id, sizeof sl->vsp_id, sl->pre_detail,
			                sizeof sl->pre_detail);
		}
		if (d == AUTHZ_ERROR) {
			why = sl->pre_detail;
			goto internal;
		}
		if (d != AUTHZ_ALLOW)
			it->pre_cause = CODEC_CAUSE_UNAUTHORIZED;
		else
			it->vsp_id = sl->vsp_id;
	}
	if (it->pre_cause != CODEC_CAUSE_NONE)
		it->pre_detail = sl->pre_detail;
	return 0;

internal:
	log_event(LOG_ERROR, "decide_failed", "{s:s, s:s, s:i, s:I}", "error", why, "topic",
	          it->topic, "partition", (int)it->partition, "offset", (json_int_t)it->offset);
	it->dlq = 0;
	it->vsp_id = NULL;
	it->pre_cause = CODEC_CAUSE_INTERNAL_ERROR;
	snprintf(sl->pre_detail, sizeof sl->pre_detail, "the KM-S could not decide the request");
	it->pre_detail = sl->pre_detail;
	return -1;
}

/* ---- step 4: publishing ---- */

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

static int produce_result(svc *s, slot *sl, int use_default)
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
	if (header(sl->msg, "kafka_correlationId", &corr, &corr_len) == 0 && corr != NULL)
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

static int produce_dlq(svc *s, slot *sl)
{
	rd_kafka_message_t *m = sl->msg;
	const rd_kafka_headers_t *orig = headers_of(m);
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

static int too_large(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

/* Publish what the batch owes and wait until the broker has it all. A
 * Result the reply topic refuses goes to the default results topic; anything
 * else that fails is sent again with backoff. Returns -1 when the graceful
 * stop ran out of time. */
static int publish(svc *s)
{
	for (size_t i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		if (sl->item.dlq)
			produce_dlq(s, sl);
		if (sl->item.has_result)
			produce_result(s, sl, 0);
	}
	int attempt = 0;
	int64_t started = mono_ms();
	for (;;) {
		rd_kafka_poll(s->producer, 50);
		size_t pending = 0, failed = 0;
		for (size_t i = 0; i < s->nslots; i++) {
			slot *sl = &s->slots[i];
			pending += (sl->result_send.state == SEND_PENDING) +
			           (sl->dlq_send.state == SEND_PENDING);
			failed += (sl->result_send.state == SEND_FAILED) +
			          (sl->dlq_send.state == SEND_FAILED);
		}
		if (pending == 0 && failed == 0)
			break;
		if (pending == 0 && failed > 0) {
			log_event(LOG_WARN, "publish_retry", "{s:i, s:i}", "failed", (int)failed,
			          "attempt", attempt);
			health_set(s->health, HEALTH_NOT_PAUSED, 0);
			if (wait_ms(s, backoff_ms(s, attempt++)) != 0)
				return -1;
			for (size_t i = 0; i < s->nslots; i++) {
				slot *sl = &s->slots[i];
				if (sl->dlq_send.state == SEND_FAILED) {
					/* A copy the broker will never take: keep the
					 * coordinates and headers, drop the value (it
					 * stays in the requests topic). */
					if (too_large(sl->dlq_send.err))
						sl->dlq_omit_value = 1;
					produce_dlq(s, sl);
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
					produce_result(s, sl, custom);
				}
			}
			continue;
		}
		if (mono_ms() - started > 1000)
			keepalive(s);
		if (out_of_time(s))
			return -1;
	}
	health_set(s->health, HEALTH_NOT_PAUSED, 1);
	health_set(s->health, HEALTH_BROKER, 1);
	return 0;
}

/* ---- step 4 with exactly_once: one transaction per batch ---- */

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
	if (next == TXN_FATAL && is_fenced(code)) {
		log_event(LOG_ERROR, "producer_fenced", "{s:s, s:s, s:s, s:s}", "call", call,
		          "code", rd_kafka_err2name(code), "error", rd_kafka_error_string(e),
		          "effect",
		          "the KM-S stops; what it had in hand is answered by the instance that "
		          "fenced it");
		s->fatal = 1;
		run = 0;
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
static int txn_abort(svc *s, int in_rebalance)
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
		int64_t until = mono_ms() + backoff_ms(s, attempt++);
		if (!in_rebalance) {
			if (wait_ms(s, until - mono_ms()) != 0)
				return -1;
			continue;
		}
		while (mono_ms() < until) {
			if (out_of_time(s))
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
 * publish() does without transactions. A Result its reply topic refused
 * goes to the default results topic; a DLQ copy the broker will never take
 * keeps its coordinates and headers and drops the value. */
static void apply_fallbacks(svc *s)
{
	for (size_t i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		if (sl->revoked)
			continue;
		if (sl->dlq_send.state == SEND_FAILED && too_large(sl->dlq_send.err))
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

/* The batch's offsets: past the last message of each of its partitions,
 * those revoked left out (the transaction commits them; without one they are
 * stored for the next commit). NULL when none is left. */
static rd_kafka_topic_partition_list_t *batch_offsets(svc *s)
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
		int64_t until = mono_ms() + backoff_ms(s, attempt++);
		while (mono_ms() < until) {
			if (out_of_time(s))
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
			produce_dlq(s, sl);
		if (sl->item.has_result)
			produce_result(s, sl, sl->reply_default);
	}

	rd_kafka_topic_partition_list_t *offsets = batch_offsets(s);
	if (offsets == NULL) /* nothing owed */
		return txn_abort(s, 0) == 0 ? 0 : stuck(s);
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
		if (s->fatal || s->producer_broken || out_of_time(s))
			return stuck(s);
		size_t pending = 0, failed = 0;
		for (size_t i = 0; i < s->nslots; i++) {
			slot *sl = &s->slots[i];
			pending += (sl->result_send.state == SEND_PENDING) +
			           (sl->dlq_send.state == SEND_PENDING);
			failed += (sl->result_send.state == SEND_FAILED) +
			          (sl->dlq_send.state == SEND_FAILED);
		}
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
			keepalive(s);
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
		rd_kafka_topic_partition_list_t *done = batch_offsets(s);
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
	if (txn_abort(s, 0) != 0)
		return stuck(s);
	apply_fallbacks(s);
	return 1;
}

static int reset_producer(svc *s);

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
static int publish_txn(svc *s)
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
		if (wait_ms(s, backoff_ms(s, attempt++)) != 0 || s->fatal)
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
static int init_transactions(svc *s, int in_service, char *errstr, size_t errstr_size)
{
	for (int attempt = 0; run || in_service; attempt++) {
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
			usleep((useconds_t)backoff_ms(s, attempt) * 1000);
		} else if (wait_ms(s, backoff_ms(s, attempt)) != 0) {
			snprintf(errstr, errstr_size, "the graceful stop ran out of time");
			return -1;
		}
	}
	snprintf(errstr, errstr_size, "stopped before the broker answered");
	return -1;
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
	if (make_producer(s, errstr, sizeof errstr) != 0 ||
	    init_transactions(s, 1, errstr, sizeof errstr) != 0)
		goto fail;
	return 0;
fail:
	log_event(LOG_ERROR, "kafka_fatal", "{s:s, s:s}", "error", errstr, "effect",
	          "the KM-S stops; the batch in hand is answered after the restart");
	s->fatal = 1;
	run = 0;
	return -1;
}

/* ---- step 5: offsets ---- */

static void store_offsets(svc *s)
{
	rd_kafka_topic_partition_list_t *parts = batch_offsets(s);
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

/* ---- the batch ---- */

static void free_slots(svc *s)
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
static void collect(svc *s)
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
	while (s->nslots < max && run) {
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
			handle_consumer_error(s, m);
			continue;
		}
		health_set(s->health, HEALTH_BROKER, 1);
		add_to_batch(s, m);
	}
}

/* Step 2 for every slot of the batch. An internal error (out of memory) is
 * no verdict on the message: the slots it hit are decided again after a
 * backoff, while the group is kept, until each has its verdict. Returns -1
 * when the graceful stop ran out of time. */
static int decide_pure_all(svc *s)
{
	int attempt = 0;
	for (;;) {
		size_t failed = 0;
		int64_t now_s = now_ms() / 1000;
		for (size_t i = 0; i < s->nslots; i++) {
			slot *sl = &s->slots[i];
			if (sl->pure_done)
				continue;
			if (decide_pure(s, sl, now_s) == 0)
				sl->pure_done = 1;
			else
				failed++;
		}
		if (failed == 0)
			return 0;
		log_event(LOG_WARN, "decide_pure_retry", "{s:i, s:i}", "failed", (int)failed,
		          "attempt", attempt);
		if (wait_ms(s, backoff_ms(s, attempt++)) != 0)
			return -1;
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

static int process_batch(svc *s)
{
	int64_t phase[METRICS_PHASE__COUNT] = {0};
	int64_t t = metrics_now_ns(), started = t;
	store_item *items = s->items;
	s->decode_ns = 0;
	if (decide_pure_all(s) != 0)
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
		if (wait_ms(s, backoff_ms(s, attempt++)) != 0)
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
		if (publish_txn(s) != 0)
			return -1;
		phase[METRICS_PHASE_PUBLISH] = lap(&t);
	} else {
		if (publish(s) != 0)
			return -1;
		phase[METRICS_PHASE_PUBLISH] = lap(&t);
		store_offsets(s);
	}
	resume(s);
	phase[METRICS_PHASE_COMMIT] = lap(&t);
	account_batch(s, phase, t - started);
	free_slots(s);
	return 0;
}

/* When idle: is the database there, is the broker there? */
static void idle_checks(svc *s)
{
	int64_t now = mono_ms();
	if (now - s->last_check_ms < 2000)
		return;
	s->last_check_ms = now;
	char errstr[256];
	int db = store_ping(s->store, errstr, sizeof errstr) == 0;
	health_set(s->health, HEALTH_DATABASE, db);
	const struct rd_kafka_metadata *md = NULL;
	int broker =
	    rd_kafka_metadata(s->consumer, 0, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR;
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	health_set(s->health, HEALTH_BROKER, broker);
}

/* ---- set-up and tear-down ---- */

static int setup(svc *s, char *errstr, size_t errstr_size)
{
	const kms_config *cfg = s->cfg;
	codec_limits cl;
	codec_limits_default(&cl);
	cl.max_value_bytes = (size_t)cfg->max_value_bytes;
	cl.max_services = (size_t)cfg->max_services;
	s->codec = codec_new_with_dir(&cl, cfg->schemas_dir, errstr, errstr_size);
	if (s->codec == NULL)
		return -1;
	s->result_schema_id = -1;
	if (cfg->registry_url[0] != '\0') {
		s->registry = registry_new(cfg->registry_url, s->codec,
		                           (long)cfg->registry_timeout_ms, errstr, errstr_size);
		if (s->registry == NULL)
			return -1;
	}

	unsigned mask;
	if (config_alg_mask(cfg, &mask, errstr, errstr_size) != 0)
		return -1;
	trust_settings ts = {.alg_mask = mask, .max_token_bytes = (size_t)cfg->max_token_bytes};
	s->trust = trust_new(&ts, errstr, errstr_size);
	if (s->trust == NULL)
		return -1;
	if (cfg->issuers_file[0] != '\0') {
		if (trust_load(s->trust, cfg->issuers_file, errstr, errstr_size) != 0)
			return -1;
	} else {
		log_event(LOG_WARN, "no_issuers", "{s:s}", "effect", "every token is refused");
	}
	/* The first fetch of every JWKS URI, bounded by its timeout: the
	 * first batch then has the keys, unless the issuer is away. */
	if (trust_start(s->trust, 0, errstr, errstr_size) != 0)
		return -1;
	/* Cleared whenever the trust changes (adopt_trust()): an entry is only
	 * valid for the keys that verified it. */
	s->tokens = tokcache_new((size_t)cfg->token_cache_entries, errstr, errstr_size);
	if (s->tokens == NULL)
		return -1;
	adopt_trust(s);
	s->policy.scope = cfg->scope;
	s->policy.leeway_s = cfg->leeway_s;
	s->policy.cache = s->tokens;
	validate_limits_default(&s->limits);
	s->limits.max_services = (size_t)cfg->max_services;

	if (cfg->reply_topic_pattern[0] != '\0') {
		if (regcomp(&s->reply_re, cfg->reply_topic_pattern, REG_EXTENDED | REG_NOSUB) !=
		    0) {
			snprintf(errstr, errstr_size, "reply_topic_pattern is not a valid regex");
			return -1;
		}
		s->has_reply_re = 1;
	}

	s->slots = calloc((size_t)cfg->batch_max, sizeof *s->slots);
	s->items = calloc((size_t)cfg->batch_max, sizeof *s->items);
	if (s->slots == NULL || s->items == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}

	s->metrics = metrics_new(cfg->requests_topic, cfg->stall_timeout_ms, errstr, errstr_size);
	if (s->metrics == NULL)
		return -1;
	/* Made without a port too: it keeps the dependencies' states, whose
	 * outages are logged. */
	s->health = health_new(cfg->health_address, (unsigned)cfg->health_port, s->metrics, errstr,
	                       errstr_size);
	if (s->health == NULL)
		return -1;
	health_set(s->health, HEALTH_NOT_PAUSED, 1);
	health_set(s->health, HEALTH_TRUST_RELOADED, 1);
	check_keys_fresh(s, 1);
	health_set(s->health, HEALTH_REGISTRY, 1);

	/* The database may not be up yet: wait for it, as for any outage. */
	for (int attempt = 0; run; attempt++) {
		s->store = store_new(cfg->dsn, errstr, errstr_size);
		if (s->store != NULL)
			break;
		log_event(LOG_WARN, "database_unreachable", "{s:s}", "error", errstr);
		usleep((useconds_t)backoff_ms(s, attempt) * 1000);
	}
	if (s->store == NULL) {
		snprintf(errstr, errstr_size, "stopped before the database answered");
		return -1;
	}
	health_set(s->health, HEALTH_DATABASE, 1);

	if (make_clients(s, errstr, errstr_size) != 0)
		return -1;
	/* before joining the group, so that a predecessor's open transaction is
	 * aborted before this instance reads the offsets it may have held */
	if (cfg->exactly_once && init_transactions(s, 0, errstr, errstr_size) != 0)
		return -1;
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, cfg->requests_topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(s->consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err) {
		snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

static void teardown(svc *s)
{
	free_slots(s);
	for (size_t i = 0; i < s->ndeferred; i++)
		rd_kafka_message_destroy(s->deferred[i]);
	free(s->deferred);
	free(s->slots);
	free(s->items);
	if (s->consumer != NULL)
		rd_kafka_destroy(s->consumer);
	if (s->producer != NULL)
		rd_kafka_destroy(s->producer);
	store_destroy(s->store);
	health_destroy(s->health);
	metrics_destroy(s->metrics); /* after the health server that reads it */
	tokcache_destroy(s->tokens);
	trust_destroy(s->trust);
	registry_destroy(s->registry);
	codec_destroy(s->codec);
	if (s->has_reply_re)
		regfree(&s->reply_re);
}

int service_run(const kms_config *cfg)
{
	svc s;
	memset(&s, 0, sizeof s);
	s.cfg = cfg;
	char errstr[512];
	int rc = SERVICE_EXIT_OK;

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hangup;
	sigaction(SIGHUP, &sa, NULL);

	if (setup(&s, errstr, sizeof errstr) != 0) {
		log_event(LOG_ERROR, "start_failed", "{s:s}", "error", errstr);
		teardown(&s);
		return SERVICE_EXIT_FAILED;
	}
	log_event(LOG_INFO, "started", "{s:s, s:s, s:s}", "kms_id", cfg->kms_id, "group",
	          cfg->group_id, "topic", cfg->requests_topic);

	while (run) {
		collect(&s);
		/* Before the batch in hand is decided: it is the first under
		 * what a reload or a refresh brought. */
		reload_point(&s);
		if (s.nslots == 0) {
			idle_checks(&s);
			continue;
		}
		if (process_batch(&s) != 0) {
			rc = SERVICE_EXIT_TIMEOUT;
			break;
		}
	}
	if (s.fatal)
		rc = SERVICE_EXIT_FATAL;

	if (rc == SERVICE_EXIT_OK) {
		/* Graceful: commit what is done, leave the group, deliver the rest
		 * (with transactions, every batch done is committed already). */
		if (!cfg->exactly_once) {
			rd_kafka_resp_err_t err = rd_kafka_commit(s.consumer, NULL, 0);
			if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
				log_event(LOG_WARN, "commit_failed", "{s:s}", "error",
				          rd_kafka_err2str(err));
		}
		rd_kafka_consumer_close(s.consumer);
		rd_kafka_flush(s.producer, (int)cfg->shutdown_timeout_ms);
		log_event(LOG_INFO, "stopped", "{s:s}", "kms_id", cfg->kms_id);
	} else if (rc == SERVICE_EXIT_FATAL) {
		/* Nothing more can be committed: leave the group at once, so the
		 * partitions go to a member that can answer them. */
		rd_kafka_consumer_close(s.consumer);
		log_event(LOG_ERROR, "stopped_on_fatal_error", "{s:s, s:i}", "kms_id", cfg->kms_id,
		          "exit", SERVICE_EXIT_FATAL);
	} else {
		log_event(LOG_ERROR, "stop_timed_out", "{s:I}", "timeout_ms",
		          (json_int_t)cfg->shutdown_timeout_ms);
		/* leave without committing: the batch in hand is redelivered */
		if (s.txn_open) {
			/* so that read_committed readers need not wait for the
			 * broker to time it out */
			rd_kafka_error_t *e = rd_kafka_abort_transaction(s.producer, 2000);
			if (e == NULL)
				s.txn_open = 0;
			rd_kafka_error_destroy(e);
		}
		rd_kafka_consumer_close(s.consumer);
	}
	teardown(&s);
	return rc;
}
