/*
 * decide: the decision of a whole batch, as a pure function of the rows the
 * store read for it. No libpq, no librdkafka, no clock: the store loads what
 * the batch needs in one round trip into a decide_state, decide_batch() fills
 * every item's outcome and a plan of the rows to write, and the store writes
 * the plan in a few multi-row statements. So every case of the pipeline
 * (redelivery, replay, conflict, validation, authorization, SLA, capacity,
 * key-format history) is tested here without a database.
 *
 * Each message is decided over the loaded state and over the effects of the
 * messages before it in the same batch: the same requestId twice, the same
 * VAL server updated twice, a provider's capacity filling up inside the
 * batch, the same Kafka coordinates twice.
 */
#ifndef KMS_DECIDE_H
#define KMS_DECIDE_H

#include <stddef.h>
#include <stdint.h>

#include "sla.h"
#include "store.h"

/* An outcome as stored in an audit or decision row. Borrowed strings. */
typedef struct {
	int has_result; /* audit rows only */
	codec_result result;
	codec_cause cause;  /* CODEC_CAUSE_NONE when the row has none */
	const char *detail; /* "" when the row has none */
	const char *kms_id;
	int64_t processed_at;
} decide_outcome;

/* What the store read for a batch. Every string and array given to the
 * decide_state_add_ functions is copied, so the caller may free its rows
 * right after. decide_batch() adds the batch's own effects, pointing into
 * its items: a state must not outlive the items it decided, and after a
 * failed decide_batch() it must not be used again. */
typedef struct decide_state decide_state;

/* An empty state. Caller frees with decide_state_destroy(). NULL when out of
 * memory. */
decide_state *decide_state_new(void) __attribute__((warn_unused_result));
void decide_state_destroy(decide_state *st); /* NULL is a no-op */

/* Each returns 0, or -1 when out of memory. */
int decide_state_add_audit(decide_state *st, const char *topic, int32_t partition, int64_t offset,
                           const decide_outcome *o) __attribute__((warn_unused_result));
/* content_hash is NULL when the row has none (an undecodable request's). */
int decide_state_add_decision(decide_state *st, const char *request_id,
                              const char *requester_identity, const unsigned char content_hash[32],
                              const decide_outcome *o) __attribute__((warn_unused_result));
int decide_state_add_val_server(decide_state *st, const char *requester_identity,
                                const char *vsp_id) __attribute__((warn_unused_result));
/* The current (highest) version of one VAL service's key format; content is
 * the stored map as JSON text (any key order, any spacing). */
int decide_state_add_key_format(decide_state *st, const char *requester_identity,
                                const char *val_service_id, int64_t version,
                                const char *format_type, const char *format_version,
                                const char *content_json) __attribute__((warn_unused_result));
int decide_state_add_provider(decide_state *st, const char *vsp_id, int enabled,
                              int64_t val_server_count) __attribute__((warn_unused_result));
/* An SLA of a provider added before, active at the batch's decision time. */
int decide_state_add_sla(decide_state *st, const char *vsp_id, const sla_terms *terms)
    __attribute__((warn_unused_result));

/* The rows a decided batch writes. Item indexes point into the batch. */
typedef struct {
	size_t item;         /* the request that makes this version */
	size_t service;      /* its index in the request's services */
	int64_t version;     /* the new version number */
	const char *content; /* the map as compact JSON text, keys sorted; owned by
	                        the state, valid until decide_state_destroy() */
} decide_key_format_row;

typedef struct {
	const char *vsp_id; /* borrowed from the items */
	int64_t added;      /* VAL servers this batch admits */
} decide_provider_row;

typedef struct {
	size_t *audits; /* items that get an audit row (all but the redelivered) */
	size_t naudits;
	size_t *decisions; /* items that record a decision for their requestId */
	size_t ndecisions;
	size_t *val_servers; /* per VAL server provisioned, its last request */
	size_t nval_servers;
	decide_key_format_row *key_formats;
	size_t nkey_formats;
	decide_provider_row *providers; /* admissions per provider */
	size_t nproviders;
	void *mem_; /* private */
} decide_plan;

/* Decide items[0..n) in order over st, as kms_id at now_ms (the decision
 * time of new decisions and the time SLAs are held against), filling each
 * item's outputs and *plan (caller frees with decide_plan_free(), also after
 * a failure). Returns 0, or -1 when out of memory: then no item is decided
 * and the caller retries the batch later. st is changed (the batch's own
 * effects are added to it). */
int decide_batch(decide_state *st, store_item *items, size_t n, const char *kms_id, int64_t now_ms,
                 decide_plan *plan) __attribute__((warn_unused_result));
void decide_plan_free(decide_plan *plan); /* zeroes it; NULL is a no-op */

/* Reset an item's outputs (no outcome, no Result). */
void decide_item_reset(store_item *it);

/* An item that could not be written (its data broke a constraint of the
 * database): its outputs become an INTERNAL_ERROR decided as kms_id at now_ms,
 * with a Result when it can be named. */
void decide_internal_error(store_item *it, const char *kms_id, int64_t now_ms);

/* The request and identity an item is known by: the decoded request's, or
 * what was salvaged of an undecodable one (either may be NULL). */
const char *decide_request_id(const store_item *it);
const char *decide_identity(const store_item *it);
/* Does the item record a decision row (its requestId is a UUID)? */
int decide_has_decision_key(const store_item *it);
/* Does the item need its provider and VAL server read (it passed the pure
 * checks)? */
int decide_needs_provider(const store_item *it);

/* The name stored in audit.outcome. */
const char *decide_outcome_name(store_outcome o);

#endif
