/*
 * store: the KM-S's PostgreSQL side. One batch of consumed requests is
 * decided in one transaction (split only to isolate a message whose data the
 * database refuses): the SLA half of authorization (contract rules 4
 * and 5), idempotency by requestId, the stored VAL servers and their
 * versioned key formats, and the audit trail with each message's Kafka
 * coordinates and the outcome sent for it.
 *
 * The audit row of a message is keyed by its (topic, partition, offset): a
 * message consumed again after a crash finds its row and gets exactly the
 * outcome recorded the first time, so a repeated Result is identical.
 */
#ifndef KMS_STORE_H
#define KMS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

typedef struct store store;

/* Connect with a libpq connection string. Caller frees with store_destroy().
 * NULL with errstr filled on failure. */
store *store_new(const char *dsn, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void store_destroy(store *s); /* NULL is a no-op */

/* Is the connection usable? Reconnects when it is not. Returns 0 when usable,
 * -1 with errstr filled otherwise. */
int store_ping(store *s, char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

/* Open a new connection with the same connection string (so that libpq
 * reads its TLS files, sslrootcert, sslcert, sslkey and sslcrl, again) and,
 * once it is up, close the old one; between batches only. Returns 0, or -1
 * with errstr filled and the old connection kept as it was. */
int store_reconnect(store *s, char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

/* Create or upgrade the schema from the versioned SQL migrations compiled
 * into the binary (services/kms/migrations/NNN_name.sql), each in its own
 * transaction, recorded in schema_migrations. Safe to run twice; safe to run
 * from two processes at once (advisory lock). Returns the number applied, or
 * -1 with errstr filled. */
int store_migrate(store *s, char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

/* What happened to one message. */
typedef enum {
	STORE_OUTCOME_DECIDED = 0, /* a new decision was recorded */
	STORE_OUTCOME_REPLAYED,    /* same requestId and content seen before:
	                              the stored Result is sent again */
	STORE_OUTCOME_CONFLICT,    /* same requestId, other content */
	STORE_OUTCOME_REDELIVERED, /* this very message was handled before (crash
	                              recovery): its recorded outcome is reused */
	STORE_OUTCOME_DLQ,         /* undecodable: recorded, sent to the DLQ */
	STORE_OUTCOME_ERROR        /* this item failed in the database; audited as
	                              INTERNAL_ERROR */
} store_outcome;

/* One consumed message of a batch. The caller fills the inputs; the store
 * fills the outputs. */
typedef struct {
	/* in: where the message came from */
	const char *topic;
	int32_t partition;
	int64_t offset;
	/* in: what could be read of it. req is NULL when the value could not be
	 * decoded; request_id / requester_identity are then what could be salvaged
	 * (either may be NULL). */
	const codec_request *req;
	const char *request_id;
	const char *requester_identity;
	/* in: the verdict of the pure checks: CODEC_CAUSE_NONE when the request is
	 * well-formed and its token authorizes it, else INVALID_REQUEST or
	 * UNAUTHORIZED with pre_detail. dlq is 1 for an undecodable value. */
	codec_cause pre_cause;
	const char *pre_detail;
	int dlq;
	/* in: the verified token's vsp_id (when pre_cause is NONE) */
	const char *vsp_id;
	/* in: SHA-256 of the request's content (everything but the token and
	 * sentAt); meaningful when req is not NULL */
	unsigned char content_hash[32];
	/* in: why the reply topic was not honoured, or NULL (audited) */
	const char *reply_note;

	/* out */
	store_outcome outcome;
	int has_result; /* 0: no Result is sent (DLQ without a salvaged id) */
	codec_result result;
	codec_cause cause;
	char detail[256];     /* "" for the null branch */
	char kms_id[128];     /* the KM-S that decided */
	int64_t processed_at; /* ms since the epoch, as stored */
} store_item;

/* Decide a batch, in order (requests of one VAL server are applied in the
 * order given): everything it needs read in one round trip, decided by
 * decide_batch(), written set-based and committed in a second (store_batch.c).
 * now_ms is the decision time for new decisions, kms_id the deciding KM-S.
 * Returns 0 when committed (every item's outputs are filled), or -1 when the
 * batch could not be finished (connection lost, serialization failure,
 * deadlock, out of memory): errstr says why and the caller retries the whole
 * batch later; messages of it that were committed get their recorded outcome
 * then. A database error caused by one message's data does not fail the
 * batch: the batch is split until that message is alone, and it is audited
 * with outcome STORE_OUTCOME_ERROR, cause INTERNAL_ERROR. */
int store_decide_batch(store *s, store_item *items, size_t n, const char *kms_id, int64_t now_ms,
                       char *errstr, size_t errstr_size) __attribute__((warn_unused_result));

#endif
