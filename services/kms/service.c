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
 *
 * This file holds the loop itself, its set-up and tear-down, the signals and
 * the trust's reload; the steps live beside it (service_int.h lists them).
 */
#include "service.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "service_int.h"

volatile sig_atomic_t svc_run = 1;
/* SIGHUP: re-read the issuers file (and the TLS files) at the next batch
 * boundary. The one other flag a handler sets. */
static volatile sig_atomic_t reload_asked = 0;

static void on_signal(int sig)
{
	(void)sig;
	if (!svc_run)
		_exit(SERVICE_EXIT_SIGNAL); /* second signal: stop at once */
	svc_run = 0;
}

static void on_hangup(int sig)
{
	(void)sig;
	reload_asked = 1;
}

/* ---- trust: reload ---- */

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
	svc_adopt_trust(s);
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
		svc_adopt_trust(s);
	check_keys_fresh(s, 0);
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

	trust_settings ts = {.alg_mask = s->derived->alg_mask,
	                     .max_token_bytes = (size_t)cfg->max_token_bytes};
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
	/* Cleared whenever the trust changes (svc_adopt_trust()): an entry is only
	 * valid for the keys that verified it. */
	s->tokens = tokcache_new((size_t)cfg->token_cache_entries, errstr, errstr_size);
	if (s->tokens == NULL)
		return -1;
	svc_adopt_trust(s);
	s->policy.scope = cfg->scope;
	s->policy.leeway_s = cfg->leeway_s;
	s->policy.cache = s->tokens;
	validate_limits_default(&s->limits);
	s->limits.max_services = (size_t)cfg->max_services;

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
	for (int attempt = 0; svc_run; attempt++) {
		s->store = store_new(cfg->dsn, errstr, errstr_size);
		if (s->store != NULL)
			break;
		log_event(LOG_WARN, "database_unreachable", "{s:s}", "error", errstr);
		usleep((useconds_t)svc_backoff_ms(s, attempt) * 1000);
	}
	if (s->store == NULL) {
		snprintf(errstr, errstr_size, "stopped before the database answered");
		return -1;
	}
	health_set(s->health, HEALTH_DATABASE, 1);

	if (svc_make_clients(s, errstr, errstr_size) != 0)
		return -1;
	/* before joining the group, so that a predecessor's open transaction is
	 * aborted before this instance reads the offsets it may have held */
	if (cfg->exactly_once && svc_txn_init(s, 0, errstr, errstr_size) != 0)
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
	svc_free_slots(s);
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
}

int service_run(const kms_config *cfg, const config_derived *derived)
{
	svc s;
	memset(&s, 0, sizeof s);
	s.cfg = cfg;
	s.derived = derived;
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

	while (svc_run) {
		svc_collect(&s);
		/* Before the batch in hand is decided: it is the first under
		 * what a reload or a refresh brought. */
		reload_point(&s);
		if (s.nslots == 0) {
			idle_checks(&s);
			continue;
		}
		if (svc_process_batch(&s) != 0) {
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
