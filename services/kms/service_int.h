/*
 * service_int: what the files of the KM-S loop share and nothing else
 * includes: the loop's state (svc), one slot per message of the batch in
 * hand, the run flag, and the steps one file calls in another. Not a public
 * interface: service.h is.
 *
 *   service.c          set-up, tear-down, the loop, the trust's reload
 *   service_clients.c  the Kafka clients, their callbacks, a message's
 *                      headers, waiting while keeping the group
 *   service_decide.c   step 2: the decisions made without I/O; the trust's
 *                      adoption
 *   service_batch.c    steps 1 to 5 of one batch, in order
 *   service_publish.c  step 4 without transactions, step 5 (offsets)
 *   service_txn.c      step 4 with exactly_once: one transaction per batch
 */
#ifndef KMS_SERVICE_INT_H
#define KMS_SERVICE_INT_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "authz.h"
#include "codec.h"
#include "config.h"
#include "health.h"
#include "metrics.h"
#include "registry.h"
#include "store.h"
#include "tokcache.h"
#include "trust.h"
#include "validate.h"

/* Cleared by the first SIGTERM or SIGINT, and by a fatal Kafka error: the
 * loop finishes the batch in hand and stops. The one global of the loop
 * besides reload_asked (service.c). */
extern volatile sig_atomic_t svc_run;

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
	const config_derived *derived; /* what config_validate() made of cfg */
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

static inline int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- service_clients.c ---- */

/* The message's headers, or NULL; borrowed from m. */
const rd_kafka_headers_t *svc_headers_of(const rd_kafka_message_t *m);
/* The last header called name: 0 with value and size borrowed from m, or
 * -1 when there is none. */
int svc_header(const rd_kafka_message_t *m, const char *name, const void **value, size_t *size);

/* Another process with this transactional.id has taken over. */
int svc_is_fenced(rd_kafka_resp_err_t err);

/* The consumer and the producer, with the callbacks that report to s.
 * Returns 0, or -1 with errstr filled. */
int svc_make_clients(svc *s, char *errstr, size_t errstr_size) __attribute__((warn_unused_result));
/* The producer alone (a broken one is being replaced). */
int svc_make_producer(svc *s, char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

/* Log a consumer error event (the end of a partition is none); frees m. */
void svc_consumer_error(svc *s, rd_kafka_message_t *m);
/* Pause what is assigned and poll, so the group outlives a wait; messages
 * polled meanwhile are kept in order for the next batch. */
void svc_keepalive(svc *s);
/* Resume what svc_keepalive() paused. */
void svc_resume(svc *s);
/* Sleep for ms while keeping the group. Returns -1 when the graceful stop
 * has run out of time. */
int svc_wait_ms(svc *s, int64_t ms) __attribute__((warn_unused_result));
/* The wait before retry number attempt: doubling from 100 ms, bounded. */
int64_t svc_backoff_ms(const svc *s, int attempt);
/* Past the graceful stop's deadline? (0 while running.) */
int svc_out_of_time(svc *s);

/* ---- service_decide.c ---- */

/* Point the policy at the trust in force (drops the cached tokens when it
 * changed). */
void svc_adopt_trust(svc *s);
/* Step 2 for every slot of the batch, retried until each has its verdict.
 * Returns -1 when the graceful stop ran out of time. */
int svc_decide_pure_all(svc *s) __attribute__((warn_unused_result));

/* ---- service_batch.c ---- */

/* Step 1: fill the batch (deferred messages first). */
void svc_collect(svc *s);
/* Steps 2 to 5 of the batch in hand. Returns -1 when the graceful stop ran
 * out of time (the batch is then redelivered). */
int svc_process_batch(svc *s) __attribute__((warn_unused_result));
/* Release the batch's slots and their messages. */
void svc_free_slots(svc *s);

/* ---- service_publish.c ---- */

/* Produce a slot's Result (to the default results topic when use_default)
 * or its DLQ copy; the delivery callback fills its send_track. Returns -1
 * when the producer refused it at once (the send_track says so too). */
int svc_produce_result(svc *s, slot *sl, int use_default);
int svc_produce_dlq(svc *s, slot *sl);
/* A delivery error that says the record is too large for the broker. */
int svc_too_large(rd_kafka_resp_err_t err);
/* How many of the batch's Results and DLQ records are still on their way,
 * and how many failed. */
void svc_count_sends(const svc *s, size_t *pending, size_t *failed);
/* Step 4 without transactions: publish and wait until the broker has it
 * all. Returns -1 when the graceful stop ran out of time. */
int svc_publish(svc *s) __attribute__((warn_unused_result));
/* The batch's offsets, revoked partitions left out; NULL when none is left.
 * Caller frees with rd_kafka_topic_partition_list_destroy(). */
rd_kafka_topic_partition_list_t *svc_batch_offsets(svc *s);
/* Step 5 without transactions: store the batch's offsets for the next
 * commit. */
void svc_store_offsets(svc *s);

/* ---- service_txn.c ---- */

/* Start the producer's transactions (in_service: the loop is running, so
 * waits keep the group). Returns 0, or -1 with errstr filled. */
int svc_txn_init(svc *s, int in_service, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
/* Abort the open transaction (in_rebalance: from the rebalance callback,
 * where the consumer must not be polled). Returns -1 when it stays open. */
int svc_txn_abort(svc *s, int in_rebalance) __attribute__((warn_unused_result));
/* Step 4 and 5 with exactly_once. Returns -1 on a fatal error or when the
 * graceful stop ran out of time. */
int svc_publish_txn(svc *s) __attribute__((warn_unused_result));

#endif
