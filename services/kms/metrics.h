/*
 * metrics: the KM-S's Prometheus metrics. One fixed registry of counters,
 * gauges and histograms, made once at start; the consumer thread updates it
 * (lock-free atomics on the per-message paths, a mutex for the partition
 * table and the dependency states), and the health server's thread renders it
 * in the Prometheus text exposition format 0.0.4. A scrape allocates only its
 * response.
 *
 * The consumer lag comes from librdkafka's statistics (statistics.interval.ms
 * and the stats callback, served on the consumer thread), which also tell
 * whether the consumer is stuck: an assigned partition with lag whose
 * committed position has not moved for the stall timeout, or statistics that
 * stopped arriving because the consumer thread itself is blocked.
 *
 * Times are passed in, in milliseconds of CLOCK_MONOTONIC (metrics_now_ms()),
 * so that the rules are tested without waiting.
 */
#ifndef KMS_METRICS_H
#define KMS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

typedef struct metrics metrics;

/* The phases of a batch, each a series of kms_batch_duration_seconds. */
typedef enum {
	METRICS_PHASE_DECODE = 0, /* decoding the values */
	METRICS_PHASE_AUTHORIZE,  /* validation, the token, reply routing */
	METRICS_PHASE_DATABASE,   /* the batch's transaction, retries included */
	METRICS_PHASE_PUBLISH,    /* Results and DLQ records until acknowledged */
	METRICS_PHASE_COMMIT,     /* the offsets */
	METRICS_PHASE__COUNT
} metrics_phase;

/* The dependencies whose outages are counted. */
typedef enum { METRICS_DEP_DATABASE = 0, METRICS_DEP_BROKER, METRICS_DEP__COUNT } metrics_dep;

/* Why a Result did not go where its request asked (kafka_replyTopic,
 * kafka_replyPartition). */
typedef enum {
	METRICS_REROUTE_NONE = 0,
	METRICS_REROUTE_TOPIC_INVALID,     /* not a legal topic name */
	METRICS_REROUTE_TOPIC_NOT_ALLOWED, /* does not match reply_topic_pattern */
	METRICS_REROUTE_PARTITION_INVALID, /* not a 4-byte non-negative integer */
	METRICS_REROUTE_TOPIC_UNAVAILABLE, /* the reply topic refused the Result */
	METRICS_REROUTE__COUNT
} metrics_reroute_reason;

/* Most partitions of the requests topic the lag is kept for; more are left
 * out of kms_consumer_lag and the stall check (logged once). */
#define METRICS_MAX_PARTITIONS 1024

/* A registry for the consumer of requests_topic (the topic whose partitions
 * the statistics are read for). stall_timeout_ms 0 turns the stall check off.
 * Caller frees with metrics_destroy(). NULL with errstr filled when out of
 * memory. */
metrics *metrics_new(const char *requests_topic, int64_t stall_timeout_ms, char *errstr,
                     size_t errstr_size) __attribute__((warn_unused_result));
void metrics_destroy(metrics *m); /* NULL is a no-op */

/* Milliseconds of CLOCK_MONOTONIC, and nanoseconds for phase timings. */
int64_t metrics_now_ms(void);
int64_t metrics_now_ns(void);

/* Every update below is thread-safe, and a no-op when m is NULL. */

/* One request decided (kms_requests_total); cause is ignored on SUCCESS. */
void metrics_request(metrics *m, codec_result result, codec_cause cause);
/* One DLQ record published, the value's decoding status its reason. */
void metrics_dlq(metrics *m, codec_status reason);
/* One Result acknowledged by the broker, on the default results topic or on
 * a reply topic the request named. */
void metrics_result_published(metrics *m, int reply_topic);
/* One Result sent elsewhere than its request asked. */
void metrics_reroute(metrics *m, metrics_reroute_reason why);
/* One batch of size messages done, with the time of each phase. */
void metrics_batch(metrics *m, size_t size, const int64_t phase_ns[METRICS_PHASE__COUNT]);
/* One Result delivered latency_ms after its request's Kafka timestamp. */
void metrics_request_latency(metrics *m, int64_t latency_ms);
/* The token cache's counters since start (tokcache_stats_get()). */
void metrics_token_cache(metrics *m, uint64_t hits, uint64_t misses);
/* How many assigned partitions the KM-S holds paused now. */
void metrics_partitions_paused(metrics *m, int count);
/* A dependency is up or down (now_ms: monotonic). A change from up (or not
 * yet known) to down starts an outage, a change back ends it; each is logged
 * once, and the outage's time adds to kms_outage_seconds_total. */
void metrics_dependency(metrics *m, metrics_dep dep, int up, int64_t now_ms);

/* The consumer exists, and emits statistics every stats_interval_ms (its
 * statistics.interval.ms; 0: never, which turns off the check that they keep
 * coming). */
void metrics_consumer_started(metrics *m, int64_t stats_interval_ms, int64_t now_ms);
/* librdkafka's statistics of the consumer (the stats callback's JSON):
 * which partitions of the requests topic are assigned, their end and
 * committed offsets. Returns 0, or -1 when the text is not the statistics
 * JSON (nothing is changed then). */
int metrics_consumer_stats(metrics *m, const char *json, size_t len, int64_t now_ms);
/* Every message of partition before next_offset is done (its offset stored
 * for the next commit, or committed in a transaction): the lag and the stall
 * check count from here too, since librdkafka's statistics see only the
 * consumer's own commits. */
void metrics_offsets_done(metrics *m, int32_t partition, int64_t next_offset, int64_t now_ms);

/* Is the consumer stuck at now_ms? Returns 0 when not (or m is NULL), else
 * the number of reasons, with reason filled with them as one line. */
int metrics_stalled(metrics *m, int64_t now_ms, char *reason, size_t reason_size);

/* The registry in the text exposition format 0.0.4, as a new string of *len
 * bytes (caller frees with free()). NULL when out of memory. */
char *metrics_render(metrics *m, int64_t now_ms, size_t *len) __attribute__((warn_unused_result));

#endif
