/*
 * test_metrics: the registry and its formatter without a server: every
 * family rendered from the start, counters by label, histogram buckets, the
 * lag from librdkafka statistics made up here, the two stall rules at chosen
 * times, outages, and NULL safety. The real scrape, checked by promtool, is
 * in tests/python/test_metrics.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "metrics.h"

#define TOPIC "reqs"

/* The rendered registry at now_ms; caller frees. */
static char *render(metrics *m, int64_t now_ms)
{
	size_t len = 0;
	char *text = metrics_render(m, now_ms, &len);
	if (text == NULL)
		return NULL;
	/* the response is exactly len bytes: make it a string for strstr */
	char *s = malloc(len + 1);
	if (s != NULL) {
		memcpy(s, text, len);
		s[len] = '\0';
	}
	free(text);
	return s;
}

/* Does the rendered text hold this exact line? */
static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

/* librdkafka-shaped statistics of one topic's partitions. */
static char *stats(const char *partitions)
{
	static char buf[4096];
	snprintf(buf, sizeof buf,
	         "{\"name\":\"c#consumer-1\",\"type\":\"consumer\",\"topics\":{\"" TOPIC
	         "\":{\"topic\":\"" TOPIC "\",\"partitions\":{%s}}}}",
	         partitions);
	return buf;
}

/* One partition's entry; committed -1001 is librdkafka's "none". */
static char *part(char *buf, size_t size, int p, int desired, long long lo, long long ls,
                  long long committed)
{
	snprintf(buf, size,
	         "\"%d\":{\"partition\":%d,\"desired\":%s,\"lo_offset\":%lld,\"hi_offset\":%lld,"
	         "\"ls_offset\":%lld,\"committed_offset\":%lld}",
	         p, p, desired ? "true" : "false", lo, ls, ls, committed);
	return buf;
}

static int feed(metrics *m, const char *partitions, int64_t now_ms)
{
	const char *json = stats(partitions);
	return metrics_consumer_stats(m, json, strlen(json), now_ms);
}

static int test_every_family_from_the_start(void)
{
	metrics *m = metrics_new(TOPIC, 60000, NULL, 0);
	CHECK(m != NULL);
	char *t = render(m, 0);
	CHECK(t != NULL);
	static const char *const families[] = {"kms_requests_total counter",
	                                       "kms_dlq_records_total counter",
	                                       "kms_results_published_total counter",
	                                       "kms_replies_rerouted_total counter",
	                                       "kms_batch_size histogram",
	                                       "kms_batch_duration_seconds histogram",
	                                       "kms_request_latency_seconds histogram",
	                                       "kms_consumer_lag gauge",
	                                       "kms_token_cache_hits_total counter",
	                                       "kms_token_cache_misses_total counter",
	                                       "kms_database_up gauge",
	                                       "kms_broker_up gauge",
	                                       "kms_outage_seconds_total counter",
	                                       "kms_partitions_paused gauge",
	                                       "kms_build_info gauge"};
	int ok = 1;
	for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
		char line[128];
		snprintf(line, sizeof line, "# TYPE %s", families[i]);
		if (!has_line(t, line)) {
			fprintf(stderr, "    missing: %s\n", line);
			ok = 0;
		}
	}
	ok &= has_line(t, "kms_requests_total{result=\"SUCCESS\",cause=\"none\"} 0");
	ok &= has_line(t, "kms_requests_total{result=\"FAILURE\",cause=\"INTERNAL_ERROR\"} 0");
	ok &= has_line(t, "kms_dlq_records_total{reason=\"fingerprint\"} 0");
	ok &= has_line(t, "kms_replies_rerouted_total{reason=\"topic_unavailable\"} 0");
	ok &= has_line(t, "kms_batch_duration_seconds_count{phase=\"commit\"} 0");
	ok &= has_line(t, "kms_database_up 0");
	ok &= has_line(t, "kms_outage_seconds_total{dependency=\"broker\"} 0.000");
	ok &= strstr(t, "kms_build_info{version=\"") != NULL;
	ok &= strstr(t, "librdkafka=\"2.") != NULL && strstr(t, "avro_c=\"") != NULL;
	ok &= strstr(t, "kms_consumer_lag{") == NULL; /* no partition known yet */
	/* no SUCCESS with a cause, no FAILURE without */
	ok &= strstr(t, "result=\"SUCCESS\",cause=\"INVALID") == NULL;
	ok &= strstr(t, "result=\"FAILURE\",cause=\"none\"") == NULL;
	free(t);
	metrics_destroy(m);
	CHECK(ok);
	return 0;
}

static int test_counters_by_label(void)
{
	metrics *m = metrics_new(TOPIC, 60000, NULL, 0);
	CHECK(m != NULL);
	metrics_request(m, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE);
	metrics_request(m, CODEC_RESULT_SUCCESS, CODEC_CAUSE_UNAUTHORIZED); /* cause ignored */
	metrics_request(m, CODEC_RESULT_FAILURE, CODEC_CAUSE_REQUEST_ID_CONFLICT);
	metrics_dlq(m, CODEC_ERR_MAGIC);
	metrics_dlq(m, CODEC_ERR_MAGIC);
	metrics_dlq(m, CODEC_OK); /* not a DLQ reason: "other" */
	metrics_result_published(m, 0);
	metrics_result_published(m, 1);
	metrics_result_published(m, 1);
	metrics_reroute(m, METRICS_REROUTE_TOPIC_NOT_ALLOWED);
	metrics_reroute(m, METRICS_REROUTE_NONE);
	metrics_token_cache(m, 7, 3);
	metrics_partitions_paused(m, 6);
	char *t = render(m, 0);
	CHECK(t != NULL);
	int ok = has_line(t, "kms_requests_total{result=\"SUCCESS\",cause=\"none\"} 2") &&
	         has_line(t, "kms_requests_total{result=\"FAILURE\",cause=\"REQUEST_ID_CONFLICT\"} "
	                     "1") &&
	         has_line(t, "kms_requests_total{result=\"FAILURE\",cause=\"UNAUTHORIZED\"} 0") &&
	         has_line(t, "kms_dlq_records_total{reason=\"magic\"} 2") &&
	         has_line(t, "kms_dlq_records_total{reason=\"other\"} 1") &&
	         has_line(t, "kms_results_published_total{topic_kind=\"default\"} 1") &&
	         has_line(t, "kms_results_published_total{topic_kind=\"reply\"} 2") &&
	         has_line(t, "kms_replies_rerouted_total{reason=\"topic_not_allowed\"} 1") &&
	         has_line(t, "kms_token_cache_hits_total 7") &&
	         has_line(t, "kms_token_cache_misses_total 3") &&
	         has_line(t, "kms_partitions_paused 6");
	free(t);
	metrics_destroy(m);
	CHECK(ok);
	return 0;
}

static int test_histograms_cumulative(void)
{
	metrics *m = metrics_new(TOPIC, 60000, NULL, 0);
	CHECK(m != NULL);
	metrics_request_latency(m, 5);     /* le 0.005 */
	metrics_request_latency(m, 7);     /* le 0.01 */
	metrics_request_latency(m, -3);    /* a clock ahead: 0 */
	metrics_request_latency(m, 10000); /* le 10 */
	metrics_request_latency(m, 999999);
	int64_t phases[METRICS_PHASE__COUNT] = {1000, 2000000, 30000000, 4000000000, 0};
	metrics_batch(m, 500, phases);
	metrics_batch(m, 1, phases);
	char *t = render(m, 0);
	CHECK(t != NULL);
	int ok = has_line(t, "kms_request_latency_seconds_bucket{le=\"0.001\"} 1") &&
	         has_line(t, "kms_request_latency_seconds_bucket{le=\"0.005\"} 2") &&
	         has_line(t, "kms_request_latency_seconds_bucket{le=\"0.01\"} 3") &&
	         has_line(t, "kms_request_latency_seconds_bucket{le=\"10\"} 4") &&
	         has_line(t, "kms_request_latency_seconds_bucket{le=\"300\"} 4") &&
	         has_line(t, "kms_request_latency_seconds_bucket{le=\"+Inf\"} 5") &&
	         has_line(t, "kms_request_latency_seconds_count 5") &&
	         has_line(t, "kms_request_latency_seconds_sum 1010.011") &&
	         has_line(t, "kms_batch_size_bucket{le=\"1\"} 1") &&
	         has_line(t, "kms_batch_size_bucket{le=\"200\"} 1") &&
	         has_line(t, "kms_batch_size_bucket{le=\"500\"} 2") &&
	         has_line(t, "kms_batch_size_sum 501") && has_line(t, "kms_batch_size_count 2") &&
	         has_line(t, "kms_batch_duration_seconds_bucket{phase=\"decode\",le=\"0.0005\"} "
	                     "2") &&
	         has_line(t, "kms_batch_duration_seconds_bucket{phase=\"publish\",le=\"2.5\"} 0") &&
	         has_line(t, "kms_batch_duration_seconds_bucket{phase=\"publish\",le=\"5\"} 2") &&
	         has_line(t, "kms_batch_duration_seconds_sum{phase=\"database\"} 0.06") &&
	         has_line(t, "kms_batch_duration_seconds_count{phase=\"commit\"} 2");
	free(t);
	metrics_destroy(m);
	CHECK(ok);
	return 0;
}

static int test_lag_from_statistics(void)
{
	metrics *m = metrics_new(TOPIC, 60000, NULL, 0);
	CHECK(m != NULL);
	char a[256], b[256], c[256], all[1024];
	/* p0 committed at 10 of 15; p1 never committed, starts at its low
	 * watermark 2; p2 not assigned; -1 is librdkafka's internal one */
	snprintf(all, sizeof all, "%s,%s,%s,%s", part(a, sizeof a, 0, 1, 0, 15, 10),
	         part(b, sizeof b, 1, 1, 2, 9, -1001), part(c, sizeof c, 2, 0, 0, 99, 0),
	         "\"-1\":{\"partition\":-1,\"desired\":false}");
	CHECK(feed(m, all, 1000) == 0);
	char *t = render(m, 1000);
	CHECK(t != NULL);
	int ok = has_line(t, "kms_consumer_lag{partition=\"0\"} 5") &&
	         has_line(t, "kms_consumer_lag{partition=\"1\"} 7") &&
	         strstr(t, "partition=\"2\"") == NULL && strstr(t, "partition=\"-1\"") == NULL;
	free(t);
	CHECK(ok);
	/* the KM-S's own progress counts before librdkafka's commit shows it */
	metrics_offsets_done(m, 0, 14, 1500);
	metrics_offsets_done(m, 0, 12, 1500); /* never backwards */
	t = render(m, 1500);
	CHECK(t != NULL);
	ok = has_line(t, "kms_consumer_lag{partition=\"0\"} 1");
	free(t);
	CHECK(ok);
	/* p0 revoked: gone from the lag */
	CHECK(feed(m, part(a, sizeof a, 1, 1, 2, 9, 9), 2000) == 0);
	t = render(m, 2000);
	CHECK(t != NULL);
	ok = strstr(t, "partition=\"0\"") == NULL &&
	     has_line(t, "kms_consumer_lag{partition=\"1\"} 0");
	free(t);
	CHECK(ok);
	/* progress before the first statistics of a partition (with
	 * transactions the consumer's committed offset never shows it) */
	metrics_offsets_done(m, 3, 4, 2500);
	CHECK(feed(m, part(a, sizeof a, 3, 1, 0, 4, -1001), 2600) == 0);
	t = render(m, 2600);
	CHECK(t != NULL);
	ok = has_line(t, "kms_consumer_lag{partition=\"3\"} 0");
	free(t);
	CHECK(ok);
	CHECK(metrics_consumer_stats(m, "not json", 8, 3000) == -1);
	CHECK(metrics_consumer_stats(m, "{\"x\":1}", 7, 3000) == -1);
	metrics_destroy(m);
	return 0;
}

static int test_stall_when_lag_does_not_move(void)
{
	char reason[512], a[256], b[256], all[512];
	metrics *m = metrics_new(TOPIC, 60000, NULL, 0);
	CHECK(m != NULL);
	metrics_consumer_started(m, 1000, 0);
	/* p0 behind and stuck; p1 caught up (no lag: never stalled) */
	snprintf(all, sizeof all, "%s,%s", part(a, sizeof a, 0, 1, 0, 50, 20),
	         part(b, sizeof b, 1, 1, 0, 30, 30));
	for (int64_t t = 0; t <= 59000; t += 1000) {
		CHECK(feed(m, all, t) == 0);
		CHECK(metrics_stalled(m, t, reason, sizeof reason) == 0);
	}
	CHECK(feed(m, all, 60000) == 0);
	CHECK(metrics_stalled(m, 60000, reason, sizeof reason) == 1);
	CHECK_STR(reason, "partition 0: lag 30, committed offset 20 unchanged for 60 s");
	/* progress, even short of the end, makes it ready again */
	metrics_offsets_done(m, 0, 21, 60500);
	CHECK(metrics_stalled(m, 61000, reason, sizeof reason) == 0);
	CHECK_STR(reason, "");
	/* and a commit seen in the statistics is progress as well */
	snprintf(all, sizeof all, "%s", part(a, sizeof a, 0, 1, 0, 50, 25));
	CHECK(feed(m, all, 120000) == 0);
	CHECK(metrics_stalled(m, 179000, reason, sizeof reason) == 0);
	/* no statistics since, and no progress either: both reasons */
	CHECK(metrics_stalled(m, 181001, reason, sizeof reason) == 2);
	CHECK_STR(reason, "the consumer has not polled for 61 s; partition 0: lag 25, committed "
	                  "offset 25 unchanged for 61 s");
	CHECK(feed(m, all, 181500) == 0);
	CHECK(metrics_stalled(m, 181500, reason, sizeof reason) == 1);
	CHECK_STR(reason, "partition 0: lag 25, committed offset 25 unchanged for 61 s");
	/* no room for the reason: still the count */
	CHECK(metrics_stalled(m, 181500, NULL, 0) == 1);
	metrics_destroy(m);
	return 0;
}

static int test_stall_when_statistics_stop(void)
{
	char reason[256];
	metrics *m = metrics_new(TOPIC, 60000, NULL, 0);
	CHECK(m != NULL);
	/* before the consumer exists nothing is expected */
	CHECK(metrics_stalled(m, 999999, reason, sizeof reason) == 0);
	metrics_consumer_started(m, 1000, 100000);
	/* the first statistics never came: the consumer thread is blocked */
	CHECK(metrics_stalled(m, 161000, reason, sizeof reason) == 0);
	CHECK(metrics_stalled(m, 161001, reason, sizeof reason) == 1);
	CHECK_STR(reason, "the consumer has not polled for 61 s");
	CHECK(feed(m, "", 161500) == 0);
	CHECK(metrics_stalled(m, 161500, reason, sizeof reason) == 0);
	/* statistics turned off (statistics.interval.ms=0): no such check */
	metrics_consumer_started(m, 0, 0);
	CHECK(metrics_stalled(m, 10000000, reason, sizeof reason) == 0);
	metrics_destroy(m);
	/* stall_timeout_ms 0: never stalled */
	m = metrics_new(TOPIC, 0, NULL, 0);
	CHECK(m != NULL);
	metrics_consumer_started(m, 1000, 0);
	CHECK(metrics_stalled(m, 10000000, reason, sizeof reason) == 0);
	metrics_destroy(m);
	return 0;
}

static int test_outages(void)
{
	log_set_level(LOG_ERROR); /* the outage lines are the service tests' to read */
	metrics *m = metrics_new(TOPIC, 60000, NULL, 0);
	CHECK(m != NULL);
	metrics_dependency(m, METRICS_DEP_DATABASE, 1, 0);
	metrics_dependency(m, METRICS_DEP_DATABASE, 0, 1000);
	metrics_dependency(m, METRICS_DEP_DATABASE, 0, 2000); /* still the same outage */
	metrics_dependency(m, METRICS_DEP_DATABASE, 1, 4000);
	metrics_dependency(m, METRICS_DEP_BROKER, 0, 5000); /* down before ever up */
	metrics_dependency(m, METRICS_DEP__COUNT, 0, 5000); /* ignored */
	char *t = render(m, 6500);
	CHECK(t != NULL);
	int ok = has_line(t, "kms_outage_seconds_total{dependency=\"database\"} 3.000") &&
	         has_line(t, "kms_outage_seconds_total{dependency=\"broker\"} 1.500") &&
	         has_line(t, "kms_database_up 1") && has_line(t, "kms_broker_up 0");
	free(t);
	CHECK(ok);
	metrics_dependency(m, METRICS_DEP_BROKER, 1, 7000);
	t = render(m, 9000);
	CHECK(t != NULL);
	ok = has_line(t, "kms_outage_seconds_total{dependency=\"broker\"} 2.000") &&
	     has_line(t, "kms_broker_up 1");
	free(t);
	metrics_destroy(m);
	CHECK(ok);
	return 0;
}

static int test_null_is_a_no_op(void)
{
	int64_t phases[METRICS_PHASE__COUNT] = {0};
	size_t len = 1;
	char reason[8] = "x";
	metrics_destroy(NULL);
	metrics_request(NULL, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE);
	metrics_dlq(NULL, CODEC_ERR_MAGIC);
	metrics_result_published(NULL, 1);
	metrics_reroute(NULL, METRICS_REROUTE_TOPIC_INVALID);
	metrics_batch(NULL, 1, phases);
	metrics_request_latency(NULL, 1);
	metrics_token_cache(NULL, 1, 1);
	metrics_partitions_paused(NULL, 1);
	metrics_dependency(NULL, METRICS_DEP_BROKER, 0, 0);
	metrics_consumer_started(NULL, 1000, 0);
	metrics_offsets_done(NULL, 0, 1, 0);
	CHECK(metrics_consumer_stats(NULL, "{}", 2, 0) == 0);
	CHECK(metrics_stalled(NULL, 0, reason, sizeof reason) == 0);
	CHECK_STR(reason, "");
	CHECK(metrics_render(NULL, 0, &len) == NULL);
	CHECK(len == 0);
	return 0;
}

static const check_case cases[] = {
    {"every_family_from_the_start", test_every_family_from_the_start},
    {"counters_by_label", test_counters_by_label},
    {"histograms_cumulative", test_histograms_cumulative},
    {"lag_from_statistics", test_lag_from_statistics},
    {"stall_when_lag_does_not_move", test_stall_when_lag_does_not_move},
    {"stall_when_statistics_stop", test_stall_when_statistics_stop},
    {"outages", test_outages},
    {"null_is_a_no_op", test_null_is_a_no_op},
};

CHECK_MAIN("metrics", cases)
