/*
 * health: /livez and /readyz over HTTP on 127.0.0.1, served by libmicrohttpd
 * in its own thread. The service sets the readiness facts; the server only
 * reads them.
 */
#ifndef KMS_HEALTH_H
#define KMS_HEALTH_H

#include <stddef.h>

typedef struct health health;

/* Facts readiness is made of; each is 1 when good. */
typedef enum {
	HEALTH_GROUP_JOINED = 0, /* the consumer has an assignment from its group */
	HEALTH_DATABASE,         /* the last database operation succeeded */
	HEALTH_BROKER,           /* the broker answered lately */
	HEALTH_NOT_PAUSED,       /* no partition is paused for errors */
	HEALTH__COUNT
} health_fact;

/* Start serving on 127.0.0.1:port. Caller frees with health_destroy(). NULL
 * with errstr filled when the port cannot be bound. */
health *health_new(unsigned port, char *errstr, size_t errstr_size);
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
/* All facts good, and not blocked too long? (thread-safe) */
int health_ready(const health *h);

#endif
