/*
 * health: /livez, /readyz and /metrics over HTTP on the configured address,
 * served by libmicrohttpd in its own thread. The service sets the readiness
 * facts and notes; the server only reads them, and the metrics registry's
 * stall check.
 * The database and broker facts are also the dependencies' up/down states of
 * the metrics (outages counted and logged there).
 */
#ifndef KMS_HEALTH_H
#define KMS_HEALTH_H

#include <stddef.h>

#include "metrics.h"

typedef struct health health;

/* Facts readiness is made of; each is 1 when good. */
typedef enum {
	HEALTH_GROUP_JOINED = 0, /* the consumer has an assignment from its group */
	HEALTH_DATABASE,         /* the last database operation succeeded */
	HEALTH_BROKER,           /* the broker answered lately */
	HEALTH_NOT_PAUSED,       /* no partition is paused for errors */
	HEALTH_TRUST_RELOADED,   /* the last reload of the issuers file was applied */
	HEALTH_KEYS_FRESH,       /* no JWKS URI issuer's keys are stale */
	HEALTH_REGISTRY,         /* the schema registry answered lately (always
	                            good without one) */
	HEALTH__COUNT
} health_fact;

/* Texts readiness shows beside the facts (why a fact is not good). */
typedef enum {
	HEALTH_NOTE_RELOAD = 0, /* what the last reload refused */
	HEALTH_NOTE_STALE,      /* the issuers whose keys are stale */
	HEALTH_NOTE__COUNT
} health_note;

/* Start serving on address:port (an IPv4 or IPv6 literal); port 0 serves
 * nothing, the facts are still kept. m (borrowed, may be NULL) must outlive
 * the health: it is served on /metrics and its stall check is part of
 * readiness. Caller frees with health_destroy(). NULL with errstr filled when
 * the address is not a literal or cannot be bound. */
health *health_new(const char *address, unsigned port, metrics *m, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void health_destroy(health *h); /* NULL is a no-op */

/* Set one fact (thread-safe). h may be NULL. */
void health_set(health *h, health_fact fact, int good);

/* How long the service may be inside one call before /readyz says it is
 * blocked (fact "not_blocked" false). */
#define HEALTH_BLOCKED_MS 1000

/* The service enters (1) or leaves (0) a call that may block for as long as
 * a part is away: a transactional Kafka call waits for its request to the
 * broker whatever its timeout. The server judges the time itself, since the
 * service cannot while it waits (thread-safe). h may be NULL. */
void health_blocked(health *h, int blocked);
/* Set (text) or clear (NULL) one note, shown by /readyz as a JSON string
 * (thread-safe; the text is copied, cut at 400 bytes). h may be NULL. */
void health_set_note(health *h, health_note note, const char *text);
/* All facts good, the consumer not stuck and not blocked in a call too
 * long? (thread-safe) */
int health_ready(const health *h);

#endif
