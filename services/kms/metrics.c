/*
 * metrics: the registry and its formatter (see metrics.h). Debian has no
 * Prometheus client library for C, and the exposition format is a few lines
 * of text per series, so the project writes it: every family and every label
 * value is known when the registry is made (the partitions of the lag table
 * excepted, which are a fixed-size table), so an update is an atomic add and
 * a scrape is one pass that prints into one buffer, the response.
 *
 * Counters and histogram buckets are relaxed atomics: a scrape may see one
 * series a message ahead of another, never a torn or decreasing value. A
 * histogram's buckets are kept per bucket and summed at render time, so its
 * _count is always its +Inf bucket. The partition table, the statistics'
 * times and the dependency states change at most a few times a second and
 * sit behind one mutex.
 */
#include "metrics.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Set by the Makefile from git and pkg-config; avro-c has no version call. */
#ifndef KMS_VERSION
#define KMS_VERSION "unknown"
#endif
#ifndef KMS_AVRO_C_VERSION
#define KMS_AVRO_C_VERSION "unknown"
#endif

typedef atomic_uint_fast64_t counter;

#define MAX_BOUNDS 16

/* Upper bounds (le) of the histograms' buckets, +Inf not included. */
static const double size_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};
static const double phase_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,   0.5,   1,      2.5,   5,    10,    30};
static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
                                        0.5,   1,      2.5,   5,    10,   30,   60,  300};

#define NBOUNDS(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
	const double *bounds;
	size_t nbounds;
	counter buckets[MAX_BOUNDS + 1]; /* not cumulative; [nbounds] is +Inf */
	counter sum;                     /* in units of 1/sum_scale */
	double sum_scale;                /* 1e9: the sum is kept in nanoseconds */
} histogram;

typedef struct {
	int32_t partition;
	int assigned;        /* in the last statistics */
	int64_t end;         /* last stable offset (read_committed), or the high watermark */
	int64_t committed;   /* the consumer's committed offset, <0 when none */
	int64_t low;         /* the low watermark: where a group without a commit starts */
	int64_t done;        /* metrics_offsets_done(), <0 when none */
	int64_t position;    /* max(committed, done), or low; <0 when unknown */
	int64_t lag;         /* <0 when unknown */
	int64_t moved_at_ms; /* when position last changed (or the partition came) */
} partition;

static const char *const phase_names[METRICS_PHASE__COUNT] = {"decode", "authorize", "database",
                                                              "publish", "commit"};
static const char *const dep_names[METRICS_DEP__COUNT] = {"database", "broker"};
static const char *const reroute_names[METRICS_REROUTE__COUNT] = {
    "", "topic_invalid", "topic_not_allowed", "partition_invalid", "topic_unavailable"};

/* DLQ reasons: every decoding status that is a verdict on the value. */
static const codec_status dlq_reasons[] = {
    CODEC_ERR_EMPTY, CODEC_ERR_TOO_LARGE, CODEC_ERR_MAGIC,       CODEC_ERR_FINGERPRINT,
    CODEC_ERR_DATUM, CODEC_ERR_LIMIT,     CODEC_ERR_WRONG_SCHEMA};
#define NDLQ NBOUNDS(dlq_reasons)

struct metrics {
	char *topic;
	int64_t stall_timeout_ms;

	/* [result][cause + 1]: cause -1 (none) is index 0 */
	counter requests[2][CODEC_CAUSE__COUNT + 1];
	counter dlq[NDLQ + 1]; /* [NDLQ]: any other status */
	counter published[2];  /* default, reply */
	counter rerouted[METRICS_REROUTE__COUNT];
	counter token_hits, token_misses;
	atomic_int paused;
	histogram batch_size;
	histogram phase[METRICS_PHASE__COUNT];
	histogram latency;

	char build_labels[512];

	pthread_mutex_t lock; /* everything below */
	partition *parts;
	size_t nparts;
	int parts_full_logged;
	int64_t stats_interval_ms; /* 0: no statistics are expected */
	int64_t stats_at_ms;       /* when the last came (or the consumer was made) */
	/* -1 not known yet, 0 down, 1 up; atomic so that the many calls that
	 * change nothing (every message says the broker is up) take no lock */
	atomic_int dep_state[METRICS_DEP__COUNT];
	int64_t dep_down_since[METRICS_DEP__COUNT];
	int64_t dep_outage_ms[METRICS_DEP__COUNT]; /* ended outages */
};

int64_t metrics_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t metrics_now_ms(void)
{
	return metrics_now_ns() / 1000000;
}

static void inc(counter *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(counter *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void hist_init(histogram *h, const double *bounds, size_t n, double sum_scale)
{
	h->bounds = bounds;
	h->nbounds = n;
	h->sum_scale = sum_scale;
	for (size_t i = 0; i <= MAX_BOUNDS; i++)
		atomic_init(&h->buckets[i], 0);
	atomic_init(&h->sum, 0);
}

/* value in the histogram's unit; sum_units = value * sum_scale, rounded */
static void hist_observe(histogram *h, double value, uint64_t sum_units)
{
	size_t i = 0;
	while (i < h->nbounds && value > h->bounds[i])
		i++;
	inc(&h->buckets[i], 1);
	inc(&h->sum, sum_units);
}

/* Append label text with \, " and newline escaped, as the format requires. */
static void escape_into(char *out, size_t size, const char *s)
{
	size_t o = 0;
	for (; *s != '\0' && o + 3 < size; s++) {
		if (*s == '\\' || *s == '"') {
			out[o++] = '\\';
			out[o++] = *s;
		} else if (*s == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

static void build_info(metrics *m)
{
	char ver[64], rk[64], avro[64], ssl[64], pq[64], tmp[64];
	int libpq = PQlibVersion(); /* e.g. 150018 for 15.18 */
	escape_into(ver, sizeof ver, KMS_VERSION);
	escape_into(rk, sizeof rk, rd_kafka_version_str());
	escape_into(avro, sizeof avro, KMS_AVRO_C_VERSION);
	escape_into(ssl, sizeof ssl, OpenSSL_version(OPENSSL_VERSION_STRING));
	snprintf(tmp, sizeof tmp, "%d.%d", libpq / 10000, libpq % 10000);
	escape_into(pq, sizeof pq, tmp);
	snprintf(m->build_labels, sizeof m->build_labels,
	         "version=\"%s\",librdkafka=\"%s\",avro_c=\"%s\",openssl=\"%s\",libpq=\"%s\"", ver,
	         rk, avro, ssl, pq);
}

metrics *metrics_new(const char *requests_topic, int64_t stall_timeout_ms, char *errstr,
                     size_t errstr_size)
{
	metrics *m = calloc(1, sizeof *m);
	if (m == NULL)
		goto nomem;
	m->topic = strdup(requests_topic != NULL ? requests_topic : "");
	m->parts = calloc(METRICS_MAX_PARTITIONS, sizeof *m->parts);
	if (m->topic == NULL || m->parts == NULL)
		goto nomem;
	if (pthread_mutex_init(&m->lock, NULL) != 0)
		goto nomem;
	m->stall_timeout_ms = stall_timeout_ms;
	for (size_t r = 0; r < 2; r++)
		for (size_t c = 0; c <= CODEC_CAUSE__COUNT; c++)
			atomic_init(&m->requests[r][c], 0);
	for (size_t i = 0; i <= NDLQ; i++)
		atomic_init(&m->dlq[i], 0);
	atomic_init(&m->published[0], 0);
	atomic_init(&m->published[1], 0);
	for (size_t i = 0; i < METRICS_REROUTE__COUNT; i++)
		atomic_init(&m->rerouted[i], 0);
	atomic_init(&m->token_hits, 0);
	atomic_init(&m->token_misses, 0);
	atomic_init(&m->paused, 0);
	hist_init(&m->batch_size, size_bounds, NBOUNDS(size_bounds), 1);
	for (size_t i = 0; i < METRICS_PHASE__COUNT; i++)
		hist_init(&m->phase[i], phase_bounds, NBOUNDS(phase_bounds), 1e9);
	hist_init(&m->latency, latency_bounds, NBOUNDS(latency_bounds), 1e3);
	for (size_t i = 0; i < METRICS_DEP__COUNT; i++)
		atomic_init(&m->dep_state[i], -1);
	build_info(m);
	return m;
nomem:
	if (m != NULL) {
		free(m->topic);
		free(m->parts);
		free(m);
	}
	snprintf(errstr, errstr_size, "out of memory");
	return NULL;
}

void metrics_destroy(metrics *m)
{
	if (m == NULL)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->topic);
	free(m->parts);
	free(m);
}

/* ---- updates ---- */

void metrics_request(metrics *m, codec_result result, codec_cause cause)
{
	if (m == NULL)
		return;
	size_t r = result == CODEC_RESULT_SUCCESS ? 0 : 1;
	size_t c = 0;
	if (r == 1 && cause >= 0 && cause < CODEC_CAUSE__COUNT)
		c = (size_t)cause + 1;
	inc(&m->requests[r][c], 1);
}

void metrics_dlq(metrics *m, codec_status reason)
{
	if (m == NULL)
		return;
	size_t i = 0;
	while (i < NDLQ && dlq_reasons[i] != reason)
		i++;
	inc(&m->dlq[i], 1);
}

void metrics_result_published(metrics *m, int reply_topic)
{
	if (m != NULL)
		inc(&m->published[reply_topic ? 1 : 0], 1);
}

void metrics_reroute(metrics *m, metrics_reroute_reason why)
{
	if (m != NULL && why > METRICS_REROUTE_NONE && why < METRICS_REROUTE__COUNT)
		inc(&m->rerouted[why], 1);
}

void metrics_batch(metrics *m, size_t size, const int64_t phase_ns[METRICS_PHASE__COUNT])
{
	if (m == NULL)
		return;
	hist_observe(&m->batch_size, (double)size, size);
	for (size_t i = 0; i < METRICS_PHASE__COUNT; i++) {
		int64_t ns = phase_ns[i] > 0 ? phase_ns[i] : 0;
		hist_observe(&m->phase[i], (double)ns / 1e9, (uint64_t)ns);
	}
}

void metrics_request_latency(metrics *m, int64_t latency_ms)
{
	if (m == NULL)
		return;
	/* a producer's clock ahead of ours is no negative latency */
	int64_t ms = latency_ms > 0 ? latency_ms : 0;
	hist_observe(&m->latency, (double)ms / 1e3, (uint64_t)ms);
}

void metrics_token_cache(metrics *m, uint64_t hits, uint64_t misses)
{
	if (m == NULL)
		return;
	atomic_store_explicit(&m->token_hits, hits, memory_order_relaxed);
	atomic_store_explicit(&m->token_misses, misses, memory_order_relaxed);
}

void metrics_partitions_paused(metrics *m, int count)
{
	if (m != NULL)
		atomic_store_explicit(&m->paused, count > 0 ? count : 0, memory_order_relaxed);
}

void metrics_dependency(metrics *m, metrics_dep dep, int up, int64_t now_ms)
{
	if (m == NULL || dep < 0 || dep >= METRICS_DEP__COUNT)
		return;
	up = up ? 1 : 0;
	if (atomic_load(&m->dep_state[dep]) == up)
		return;
	pthread_mutex_lock(&m->lock);
	int was = atomic_load(&m->dep_state[dep]);
	int64_t lasted_ms = 0;
	if (was != up) {
		atomic_store(&m->dep_state[dep], up);
		if (!up) {
			m->dep_down_since[dep] = now_ms;
		} else if (was == 0) {
			lasted_ms = now_ms - m->dep_down_since[dep];
			m->dep_outage_ms[dep] += lasted_ms;
		}
	}
	pthread_mutex_unlock(&m->lock);
	/* logged outside the lock: a scrape need not wait for stderr */
	if (was != up && !up)
		log_event(LOG_WARN, "outage_started", "{s:s}", "dependency", dep_names[dep]);
	else if (was == 0 && up)
		log_event(LOG_INFO, "outage_ended", "{s:s, s:f}", "dependency", dep_names[dep],
		          "seconds", (double)lasted_ms / 1e3);
}

/* ---- the consumer's statistics ---- */

static int64_t num(json_t *obj, const char *key, int64_t missing)
{
	json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : missing;
}

/* The entry of a partition, made when new. NULL when the table is full. */
static partition *part_of(metrics *m, int32_t p, int64_t now_ms)
{
	for (size_t i = 0; i < m->nparts; i++)
		if (m->parts[i].partition == p)
			return &m->parts[i];
	if (m->nparts == METRICS_MAX_PARTITIONS) {
		if (!m->parts_full_logged)
			log_event(LOG_WARN, "metrics_partitions_full", "{s:i}", "kept",
			          METRICS_MAX_PARTITIONS);
		m->parts_full_logged = 1;
		return NULL;
	}
	partition *e = &m->parts[m->nparts++];
	*e = (partition){.partition = p,
	                 .end = -1,
	                 .committed = -1,
	                 .low = -1,
	                 .done = -1,
	                 .position = -1,
	                 .lag = -1,
	                 .moved_at_ms = now_ms};
	return e;
}

/* Recompute a partition's position and lag; a new position is progress. */
static void part_update(partition *e, int64_t now_ms)
{
	int64_t pos = e->committed > e->done ? e->committed : e->done;
	if (pos < 0)
		pos = e->low; /* no commit yet: the group starts at the beginning */
	if (pos != e->position) {
		e->position = pos;
		e->moved_at_ms = now_ms;
	}
	if (e->end < 0 || pos < 0)
		e->lag = -1;
	else
		e->lag = e->end > pos ? e->end - pos : 0;
}

int metrics_consumer_stats(metrics *m, const char *json, size_t len, int64_t now_ms)
{
	if (m == NULL)
		return 0;
	json_t *root = json_loadb(json, len, 0, NULL);
	json_t *topics = json_object_get(root, "topics");
	json_t *parts = json_object_get(json_object_get(topics, m->topic), "partitions");
	if (!json_is_object(topics)) {
		json_decref(root);
		return -1;
	}
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nparts; i++)
		m->parts[i].assigned = 0;
	const char *key;
	json_t *p;
	json_object_foreach(parts, key, p)
	{
		int64_t id = num(p, "partition", -1);
		/* -1 is librdkafka's internal unassigned partition */
		if (id < 0 || id > INT32_MAX || !json_is_true(json_object_get(p, "desired")))
			continue;
		partition *e = part_of(m, (int32_t)id, now_ms);
		if (e == NULL)
			continue;
		e->assigned = 1;
		int64_t ls = num(p, "ls_offset", -1), hi = num(p, "hi_offset", -1);
		e->end = ls >= 0 ? ls : hi;
		e->committed = num(p, "committed_offset", -1);
		e->low = num(p, "lo_offset", -1);
		part_update(e, now_ms);
	}
	/* Forget what is no longer assigned: another member moves it on, and a
	 * later assignment starts afresh. */
	size_t keep = 0;
	for (size_t i = 0; i < m->nparts; i++)
		if (m->parts[i].assigned)
			m->parts[keep++] = m->parts[i];
	m->nparts = keep;
	m->stats_at_ms = now_ms;
	pthread_mutex_unlock(&m->lock);
	json_decref(root);
	return 0;
}

void metrics_consumer_started(metrics *m, int64_t stats_interval_ms, int64_t now_ms)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m->stats_interval_ms = stats_interval_ms > 0 ? stats_interval_ms : 0;
	m->stats_at_ms = now_ms;
	pthread_mutex_unlock(&m->lock);
}

void metrics_offsets_done(metrics *m, int32_t partition_id, int64_t next_offset, int64_t now_ms)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	/* Kept even before the first statistics name the partition: with
	 * transactions the consumer commits nothing itself, so librdkafka's
	 * committed offset never shows this progress later. */
	partition *e = part_of(m, partition_id, now_ms);
	if (e != NULL && next_offset > e->done) {
		e->done = next_offset;
		part_update(e, now_ms);
	}
	pthread_mutex_unlock(&m->lock);
}

/* ---- the stall check ---- */

int metrics_stalled(metrics *m, int64_t now_ms, char *reason, size_t reason_size)
{
	if (reason_size > 0)
		reason[0] = '\0';
	if (m == NULL || m->stall_timeout_ms <= 0)
		return 0;
	int n = 0;
	size_t o = 0;
#define SAY(...)                                                                                   \
	do {                                                                                       \
		if (o < reason_size) {                                                             \
			int w_ = snprintf(reason + o, reason_size - o, __VA_ARGS__);               \
			o += w_ > 0 ? (size_t)w_ : 0;                                              \
		}                                                                                  \
	} while (0)
	pthread_mutex_lock(&m->lock);
	/* Statistics come from the consumer thread's poll: when they stop, the
	 * thread is blocked (in the database, say) and the lag is not known. */
	int64_t quiet = now_ms - m->stats_at_ms;
	if (m->stats_interval_ms > 0 && quiet > m->stall_timeout_ms + m->stats_interval_ms) {
		SAY("the consumer has not polled for %lld s", (long long)(quiet / 1000));
		n++;
	}
	for (size_t i = 0; i < m->nparts; i++) {
		const partition *e = &m->parts[i];
		int64_t still = now_ms - e->moved_at_ms;
		if (e->lag <= 0 || still < m->stall_timeout_ms)
			continue;
		if (n > 0)
			SAY("; ");
		if (n < 8)
			SAY("partition %d: lag %lld, committed offset %lld unchanged for %lld s",
			    (int)e->partition, (long long)e->lag, (long long)e->position,
			    (long long)(still / 1000));
		else if (n == 8)
			SAY("and more");
		n++;
	}
	pthread_mutex_unlock(&m->lock);
#undef SAY
	return n;
}

/* ---- rendering ---- */

typedef struct {
	char *p;
	size_t len, cap;
	int full;
} out;

static void put(out *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *b, const char *fmt, ...)
{
	if (b->full)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->full = 1;
		return;
	}
	b->len += (size_t)n;
}

static void family(out *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A double as the format wants it: integers without a fraction. */
static void put_le(out *b, double v)
{
	if (v == (double)(long long)v)
		put(b, "%lld", (long long)v);
	else
		put(b, "%g", v);
}

/* One histogram's series; labels is "" or `name="value",`. */
static void put_hist(out *b, const char *name, const char *labels, histogram *h)
{
	uint64_t cum = 0;
	for (size_t i = 0; i <= h->nbounds; i++) {
		cum += get(&h->buckets[i]);
		put(b, "%s_bucket{%sle=\"", name, labels);
		if (i < h->nbounds)
			put_le(b, h->bounds[i]);
		else
			put(b, "+Inf");
		put(b, "\"} %llu\n", (unsigned long long)cum);
	}
	const char *sep = labels[0] ? "{" : "";
	char lab[128] = "";
	if (labels[0]) {
		/* drop the trailing comma for the _sum and _count series */
		snprintf(lab, sizeof lab, "%.*s}", (int)strlen(labels) - 1, labels);
	}
	put(b, "%s_sum%s%s %.9g\n", name, sep, lab, (double)get(&h->sum) / h->sum_scale);
	put(b, "%s_count%s%s %llu\n", name, sep, lab, (unsigned long long)cum);
}

static void render(metrics *m, int64_t now_ms, out *b)
{
	family(b, "kms_requests_total", "counter",
	       "Requests decided, by the result and cause of their decision (redeliveries after "
	       "a restart not counted again).");
	for (size_t r = 0; r < 2; r++)
		for (size_t c = 0; c <= CODEC_CAUSE__COUNT; c++) {
			if ((r == 0) != (c == 0))
				continue; /* SUCCESS has no cause, FAILURE always one */
			const char *cause =
			    c == 0 ? "none" : codec_cause_name((codec_cause)(c - 1));
			if (cause == NULL)
				continue;
			put(b, "kms_requests_total{result=\"%s\",cause=\"%s\"} %llu\n",
			    codec_result_name((codec_result)r), cause,
			    (unsigned long long)get(&m->requests[r][c]));
		}

	family(
	    b, "kms_dlq_records_total", "counter",
	    "Records published to the dead-letter topic, by why the value could not be decoded.");
	for (size_t i = 0; i <= NDLQ; i++)
		put(b, "kms_dlq_records_total{reason=\"%s\"} %llu\n",
		    i < NDLQ ? codec_status_name(dlq_reasons[i]) : "other",
		    (unsigned long long)get(&m->dlq[i]));

	family(
	    b, "kms_results_published_total", "counter",
	    "Results acknowledged by the broker, on the default results topic or a reply topic.");
	put(b, "kms_results_published_total{topic_kind=\"default\"} %llu\n",
	    (unsigned long long)get(&m->published[0]));
	put(b, "kms_results_published_total{topic_kind=\"reply\"} %llu\n",
	    (unsigned long long)get(&m->published[1]));

	family(b, "kms_replies_rerouted_total", "counter",
	       "Results not sent where the request asked (kafka_replyTopic, kafka_replyPartition), "
	       "by why.");
	for (size_t i = 1; i < METRICS_REROUTE__COUNT; i++)
		put(b, "kms_replies_rerouted_total{reason=\"%s\"} %llu\n", reroute_names[i],
		    (unsigned long long)get(&m->rerouted[i]));

	family(b, "kms_batch_size", "histogram", "Messages per batch.");
	put_hist(b, "kms_batch_size", "", &m->batch_size);

	family(b, "kms_batch_duration_seconds", "histogram", "Time of each phase of a batch.");
	for (size_t i = 0; i < METRICS_PHASE__COUNT; i++) {
		char lab[64];
		snprintf(lab, sizeof lab, "phase=\"%s\",", phase_names[i]);
		put_hist(b, "kms_batch_duration_seconds", lab, &m->phase[i]);
	}

	family(b, "kms_request_latency_seconds", "histogram",
	       "From a request's Kafka timestamp to the broker's acknowledgement of its Result.");
	put_hist(b, "kms_request_latency_seconds", "", &m->latency);

	family(b, "kms_token_cache_hits_total", "counter",
	       "Token lookups answered by the verified-token cache.");
	put(b, "kms_token_cache_hits_total %llu\n", (unsigned long long)get(&m->token_hits));
	family(b, "kms_token_cache_misses_total", "counter",
	       "Token lookups the cache could not answer (the signature was verified).");
	put(b, "kms_token_cache_misses_total %llu\n", (unsigned long long)get(&m->token_misses));

	family(b, "kms_partitions_paused", "gauge",
	       "Assigned partitions the KM-S holds paused while a batch waits.");
	put(b, "kms_partitions_paused %d\n",
	    atomic_load_explicit(&m->paused, memory_order_relaxed));

	pthread_mutex_lock(&m->lock);
	family(b, "kms_consumer_lag", "gauge",
	       "Messages of an assigned partition after its committed offset (from librdkafka's "
	       "statistics).");
	for (size_t i = 0; i < m->nparts; i++)
		if (m->parts[i].lag >= 0)
			put(b, "kms_consumer_lag{partition=\"%d\"} %lld\n",
			    (int)m->parts[i].partition, (long long)m->parts[i].lag);
	family(b, "kms_database_up", "gauge", "1 when the last database operation succeeded.");
	put(b, "kms_database_up %d\n", atomic_load(&m->dep_state[METRICS_DEP_DATABASE]) == 1);
	family(b, "kms_broker_up", "gauge", "1 when the Kafka broker answered lately.");
	put(b, "kms_broker_up %d\n", atomic_load(&m->dep_state[METRICS_DEP_BROKER]) == 1);
	family(b, "kms_outage_seconds_total", "counter",
	       "Time a dependency was down, the outage in progress included.");
	for (size_t i = 0; i < METRICS_DEP__COUNT; i++) {
		int64_t ms = m->dep_outage_ms[i];
		if (atomic_load(&m->dep_state[i]) == 0)
			ms += now_ms - m->dep_down_since[i];
		put(b, "kms_outage_seconds_total{dependency=\"%s\"} %.3f\n", dep_names[i],
		    (double)ms / 1e3);
	}
	pthread_mutex_unlock(&m->lock);

	family(b, "kms_build_info", "gauge", "The KM-S's version and its libraries', as labels.");
	put(b, "kms_build_info{%s} 1\n", m->build_labels);
}

char *metrics_render(metrics *m, int64_t now_ms, size_t *len)
{
	*len = 0;
	if (m == NULL)
		return NULL;
	/* About 20 kB plus a line per partition; grows in the rare case the
	 * guess is short. */
	out b = {.cap = 32768 + 64 * METRICS_MAX_PARTITIONS};
	for (int attempt = 0; attempt < 4; attempt++, b.cap *= 2) {
		b.p = malloc(b.cap);
		if (b.p == NULL)
			return NULL;
		b.len = 0;
		b.full = 0;
		render(m, now_ms, &b);
		if (!b.full) {
			*len = b.len;
			return b.p;
		}
		free(b.p);
	}
	return NULL;
}
