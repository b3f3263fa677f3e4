/*
 * fleet_summary: what valctl fleet prints at the end of a run.
 */
#ifndef VALCTL_FLEET_SUMMARY_H
#define VALCTL_FLEET_SUMMARY_H

#include <stddef.h>
#include <stdint.h>

#include "fleet_table.h"

/* The counts of a run besides its table. Times are monotonic. */
typedef struct {
	size_t servers, requests, sent;
	int64_t first_send_us, last_send_us;
	int as_json;
	size_t received; /* distinct Results */
	size_t duplicates, out_of_order, foreign, undecodable, delivery_errors;
} fleet_summary;

/* Print the summary of the run (t: its requests, each with its send and
 * Result times) on stdout, as text lines or one JSON object; 0, or -1 when
 * out of memory or stdout fails. */
int fleet_summary_print(const fleet_table *t, const fleet_summary *ri)
    __attribute__((warn_unused_result));

#endif
