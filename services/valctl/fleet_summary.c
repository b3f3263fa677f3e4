/*
 * fleet_summary: the figures of a fleet run: counts by result and cause,
 * throughput, latency percentiles (send to Result, nearest rank) and the
 * drain figures, the rate between the first and the last Result, which do
 * not count a KM-S's start on a backlog.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"
#include "fleet_summary.h"
#include "util.h"

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values, in ms. */
static double percentile_ms(const int64_t *sorted, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)sorted[rank - 1] / 1000.0;
}

int fleet_summary_print(const fleet_table *t, const fleet_summary *ri)
{
	size_t by_result[2] = {0, 0}, by_cause[CODEC_CAUSE__COUNT];
	size_t results = ri->received, n = 0, i;
	int64_t *lat = NULL, first_recv = 0, last_recv = 0;
	double elapsed_s = 0, send_s = 0, rps = 0, p50, p95, p99, max_ms;
	double first_s = 0, last_s = 0, drain_s = 0, drain_rps = 0;
	json_t *o = NULL, *jr, *jc;
	int rc = -1;

	memset(by_cause, 0, sizeof by_cause);
	lat = malloc((results > 0 ? results : 1) * sizeof *lat);
	if (lat == NULL)
		return -1;
	for (i = 0; i < t->count; i++) {
		const fleet_entry *e = &t->entries[i];

		if (e->recv_us == 0 || e->sent_us == 0)
			continue;
		if (n < results)
			lat[n++] = e->recv_us - e->sent_us;
		if (e->result >= 0 && e->result < 2)
			by_result[e->result]++;
		if (e->cause >= 0 && e->cause < CODEC_CAUSE__COUNT)
			by_cause[e->cause]++;
		if (first_recv == 0 || e->recv_us < first_recv)
			first_recv = e->recv_us;
		if (e->recv_us > last_recv)
			last_recv = e->recv_us;
	}
	qsort(lat, n, sizeof *lat, cmp_i64);
	p50 = percentile_ms(lat, n, 50);
	p95 = percentile_ms(lat, n, 95);
	p99 = percentile_ms(lat, n, 99);
	max_ms = n > 0 ? (double)lat[n - 1] / 1000.0 : 0;
	if (ri->sent > 0)
		send_s = (double)(ri->last_send_us - ri->first_send_us) / 1e6;
	if (n > 0 && last_recv > ri->first_send_us) {
		elapsed_s = (double)(last_recv - ri->first_send_us) / 1e6;
		rps = (double)n / elapsed_s;
	}
	/* n Results over the time between the first and the last one are n - 1
	 * intervals; a KM-S started on a backlog is measured without its start. */
	if (n > 0) {
		first_s = (double)(first_recv - ri->first_send_us) / 1e6;
		last_s = (double)(last_recv - ri->first_send_us) / 1e6;
		drain_s = (double)(last_recv - first_recv) / 1e6;
	}
	if (n > 1 && drain_s > 0)
		drain_rps = (double)(n - 1) / drain_s;

	if (!ri->as_json) {
		rc = printf("sent=%zu results=%zu missing=%zu duplicates=%zu out_of_order=%zu "
		            "delivery_errors=%zu\n",
		            ri->sent, n, ri->sent - n, ri->duplicates, ri->out_of_order,
		            ri->delivery_errors) < 0;
		rc |= printf("result SUCCESS=%zu FAILURE=%zu\n", by_result[0], by_result[1]) < 0;
		rc |= printf("cause") < 0;
		for (i = 0; i < CODEC_CAUSE__COUNT; i++) {
			if (by_cause[i] > 0)
				rc |= printf(" %s=%zu", codec_cause_name((codec_cause)i),
				             by_cause[i]) < 0;
		}
		if (by_result[1] == 0)
			rc |= printf(" none") < 0;
		rc |= printf("\nservers=%zu requests_per_server=%zu send_s=%.3f elapsed_s=%.3f "
		             "requests_per_second=%.1f\n",
		             ri->servers, ri->requests, send_s, elapsed_s, rps) < 0;
		rc |= printf("latency_ms p50=%.2f p95=%.2f p99=%.2f max=%.2f\n", p50, p95, p99,
		             max_ms) < 0;
		rc |= printf("drain first_result_s=%.3f last_result_s=%.3f drain_s=%.3f "
		             "drain_requests_per_second=%.1f\n",
		             first_s, last_s, drain_s, drain_rps) < 0;
		rc = rc ? -1 : 0;
		goto done;
	}
	jr = json_pack("{s:I, s:I}", "SUCCESS", (json_int_t)by_result[0], "FAILURE",
	               (json_int_t)by_result[1]);
	jc = json_object();
	for (i = 0; jc != NULL && i < CODEC_CAUSE__COUNT; i++) {
		if (by_cause[i] > 0)
			json_object_set_new(jc, codec_cause_name((codec_cause)i),
			                    json_integer((json_int_t)by_cause[i]));
	}
	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:f, s:f, "
	              "s:f, s:{s:f, s:f, s:f, s:f}, s:f, s:f, s:f, s:f}",
	              "servers", (json_int_t)ri->servers, "requests_per_server",
	              (json_int_t)ri->requests, "sent", (json_int_t)ri->sent, "results",
	              (json_int_t)n, "missing", (json_int_t)(ri->sent - n), "duplicates",
	              (json_int_t)ri->duplicates, "out_of_order", (json_int_t)ri->out_of_order,
	              "delivery_errors", (json_int_t)ri->delivery_errors, "undecodable",
	              (json_int_t)ri->undecodable, "foreign", (json_int_t)ri->foreign, "by_result",
	              jr, "by_cause", jc, "send_s", send_s, "elapsed_s", elapsed_s,
	              "requests_per_second", rps, "latency_ms", "p50", p50, "p95", p95, "p99", p99,
	              "max", max_ms, "first_result_s", first_s, "last_result_s", last_s, "drain_s",
	              drain_s, "drain_requests_per_second", drain_rps);
	if (o == NULL)
		goto done;
	rc = valctl_print_json(stdout, o);
done:
	json_decref(o);
	free(lat);
	return rc;
}
