/*
 * Tests of health: readiness is every fact good, and not blocked in one call
 * for longer than HEALTH_BLOCKED_MS, judged by the server at the time it is
 * asked (the service cannot report while a Kafka call holds it).
 */
#include <stdio.h>
#include <time.h>

#include "check.h"
#include "health.h"

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int test_facts(void)
{
	char err[256];
	health *h = health_new("127.0.0.1", 0, NULL, err, sizeof err);
	CHECK(h != NULL);
	CHECK_INT(health_ready(h), 0); /* nothing known yet */
	for (int i = 0; i < HEALTH__COUNT; i++)
		health_set(h, (health_fact)i, 1);
	CHECK_INT(health_ready(h), 1);
	health_set(h, HEALTH_BROKER, 0);
	CHECK_INT(health_ready(h), 0);
	health_destroy(h);
	health_destroy(NULL);
	CHECK_INT(health_ready(NULL), 0);
	return 0;
}

static int test_blocked_too_long(void)
{
	char err[256];
	health *h = health_new("127.0.0.1", 0, NULL, err, sizeof err);
	CHECK(h != NULL);
	for (int i = 0; i < HEALTH__COUNT; i++)
		health_set(h, (health_fact)i, 1);
	health_blocked(h, 1);
	CHECK_INT(health_ready(h), 1); /* a call that returns at once is no outage */
	sleep_ms(HEALTH_BLOCKED_MS + 200);
	CHECK_INT(health_ready(h), 0);
	health_blocked(h, 0);
	CHECK_INT(health_ready(h), 1);
	health_blocked(NULL, 1);
	health_destroy(h);
	return 0;
}

static const check_case cases[] = {
    {"facts", test_facts},
    {"blocked_too_long", test_blocked_too_long},
};

CHECK_MAIN("health", cases)
