/*
 * test_tokcache: the verified-token cache on its own, with claims made up in
 * the test (the tokens are only keys here; authz's tests use real ones):
 * hits and misses, expiry, least-recently-used eviction at capacity, distinct
 * tokens in distinct entries, the copy of the claims, capacity 0, clearing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokcache.h"

#define NOW INT64_C(1700000000)

static jwt_claims claims_for(const char *client_id)
{
	jwt_claims c;

	memset(&c, 0, sizeof c);
	c.iss = (char *)"https://as.example";
	c.client_id = (char *)client_id;
	c.scope = (char *)"ss-kpp";
	c.vsp_id = (char *)"vsp-1";
	c.has_skeyprov = 1;
	c.has_exp = 1;
	c.exp = NOW + 300;
	return c;
}

static int insert(tokcache *c, const char *token, const char *client_id, int64_t expires)
{
	jwt_claims cl = claims_for(client_id);
	return tokcache_insert(c, token, &cl, expires);
}

/* The client_id cached for token at NOW, or NULL on a miss. */
static const char *client_of(tokcache *c, const char *token, int64_t now)
{
	const jwt_claims *got = tokcache_lookup(c, token, now);
	return got != NULL ? got->client_id : NULL;
}

static int test_miss_then_hit(void)
{
	tokcache *c = tokcache_new(4, NULL, 0);
	tokcache_stats st;
	const jwt_claims *got;

	CHECK(c != NULL);
	CHECK(tokcache_lookup(c, "tok-a", NOW) == NULL);
	CHECK(insert(c, "tok-a", "val-a", NOW + 330) == 0);
	got = tokcache_lookup(c, "tok-a", NOW);
	CHECK(got != NULL);
	CHECK_STR(got->client_id, "val-a");
	CHECK_STR(got->vsp_id, "vsp-1");
	CHECK_INT(got->exp, NOW + 300);
	tokcache_stats_get(c, &st);
	CHECK_INT(st.hits, 1);
	CHECK_INT(st.misses, 1);
	CHECK_INT(st.inserts, 1);
	CHECK_INT(st.entries, 1);
	CHECK_INT(st.capacity, 4);
	tokcache_destroy(c);
	return 0;
}

static int test_claims_are_copied(void)
{
	tokcache *c = tokcache_new(4, NULL, 0);
	char client[] = "val-a";
	jwt_claims cl = claims_for(client);
	const jwt_claims *got;

	CHECK(c != NULL);
	CHECK(tokcache_insert(c, "tok-a", &cl, NOW + 10) == 0);
	/* The caller's claims are its own: changing them changes no entry. */
	client[0] = 'X';
	got = tokcache_lookup(c, "tok-a", NOW);
	CHECK(got != NULL);
	CHECK_STR(got->client_id, "val-a");
	CHECK(got->client_id != client);
	tokcache_destroy(c);
	return 0;
}

static int test_expired_entry_is_dropped(void)
{
	tokcache *c = tokcache_new(4, NULL, 0);
	tokcache_stats st;

	CHECK(c != NULL);
	CHECK(insert(c, "tok-a", "val-a", NOW + 30) == 0);
	CHECK(tokcache_lookup(c, "tok-a", NOW + 30) != NULL); /* up to and including */
	CHECK(tokcache_lookup(c, "tok-a", NOW + 31) == NULL);
	tokcache_stats_get(c, &st);
	CHECK_INT(st.expired, 1);
	CHECK_INT(st.entries, 0);
	/* Gone, not hidden: even an earlier clock does not bring it back. */
	CHECK(tokcache_lookup(c, "tok-a", NOW) == NULL);
	tokcache_destroy(c);
	return 0;
}

static int test_lru_eviction_at_capacity(void)
{
	tokcache *c = tokcache_new(2, NULL, 0);
	tokcache_stats st;

	CHECK(c != NULL);
	CHECK(insert(c, "tok-a", "val-a", NOW + 60) == 0);
	CHECK(insert(c, "tok-b", "val-b", NOW + 60) == 0);
	/* a is used again, so b is now the least recently used */
	CHECK(tokcache_lookup(c, "tok-a", NOW) != NULL);
	CHECK(insert(c, "tok-c", "val-c", NOW + 60) == 0);
	tokcache_stats_get(c, &st);
	CHECK_INT(st.entries, 2);
	CHECK_INT(st.evictions, 1);
	CHECK(tokcache_lookup(c, "tok-b", NOW) == NULL);
	CHECK(tokcache_lookup(c, "tok-a", NOW) != NULL);
	CHECK(tokcache_lookup(c, "tok-c", NOW) != NULL);
	/* and again: a was used before c, so a goes */
	CHECK(insert(c, "tok-d", "val-d", NOW + 60) == 0);
	CHECK(tokcache_lookup(c, "tok-a", NOW) == NULL);
	CHECK(tokcache_lookup(c, "tok-c", NOW) != NULL);
	CHECK(tokcache_lookup(c, "tok-d", NOW) != NULL);
	tokcache_destroy(c);
	return 0;
}

static int test_many_tokens_each_its_own_entry(void)
{
	enum { N = 2000, CAP = 1000 };
	tokcache *c = tokcache_new(CAP, NULL, 0);
	char tok[32], id[32];
	tokcache_stats st;

	CHECK(c != NULL);
	for (int i = 0; i < N; i++) {
		snprintf(tok, sizeof tok, "tok-%d", i);
		snprintf(id, sizeof id, "val-%d", i);
		CHECK(insert(c, tok, id, NOW + 60) == 0);
	}
	tokcache_stats_get(c, &st);
	CHECK_INT(st.entries, CAP);
	CHECK_INT(st.evictions, N - CAP);
	/* The older half went; each of the newer half finds its own claims. */
	for (int i = 0; i < N; i++) {
		const jwt_claims *got;
		snprintf(tok, sizeof tok, "tok-%d", i);
		snprintf(id, sizeof id, "val-%d", i);
		got = tokcache_lookup(c, tok, NOW);
		if (i < N - CAP) {
			CHECK(got == NULL);
		} else {
			CHECK(got != NULL);
			CHECK_STR(got->client_id, id);
		}
	}
	tokcache_destroy(c);
	return 0;
}

static int test_near_tokens_never_share(void)
{
	tokcache *c = tokcache_new(8, NULL, 0);
	tokcache_stats st;

	CHECK(c != NULL);
	CHECK(insert(c, "aaa.bbb.ccc", "val-a", NOW + 60) == 0);
	/* one character more, less or different: another token */
	CHECK(tokcache_lookup(c, "aaa.bbb.cc", NOW) == NULL);
	CHECK(tokcache_lookup(c, "aaa.bbb.cccc", NOW) == NULL);
	CHECK(tokcache_lookup(c, "aaa.bbb.ccd", NOW) == NULL);
	CHECK(tokcache_lookup(c, "", NOW) == NULL);
	CHECK(insert(c, "aaa.bbb.ccd", "val-b", NOW + 60) == 0);
	CHECK_STR(client_of(c, "aaa.bbb.ccc", NOW), "val-a");
	CHECK_STR(client_of(c, "aaa.bbb.ccd", NOW), "val-b");
	tokcache_stats_get(c, &st);
	CHECK_INT(st.entries, 2);
	tokcache_destroy(c);
	return 0;
}

static int test_insert_again_replaces(void)
{
	tokcache *c = tokcache_new(2, NULL, 0);
	tokcache_stats st;

	CHECK(c != NULL);
	CHECK(insert(c, "tok-a", "val-a", NOW + 10) == 0);
	CHECK(insert(c, "tok-a", "val-a2", NOW + 60) == 0);
	tokcache_stats_get(c, &st);
	CHECK_INT(st.entries, 1);
	CHECK_INT(st.evictions, 0);
	CHECK_STR(client_of(c, "tok-a", NOW + 20), "val-a2");
	tokcache_destroy(c);
	return 0;
}

static int test_capacity_zero_keeps_nothing(void)
{
	tokcache *c = tokcache_new(0, NULL, 0);
	tokcache_stats st;

	CHECK(c != NULL);
	CHECK(insert(c, "tok-a", "val-a", NOW + 60) == 0);
	CHECK(tokcache_lookup(c, "tok-a", NOW) == NULL);
	tokcache_stats_get(c, &st);
	CHECK_INT(st.entries, 0);
	CHECK_INT(st.inserts, 0);
	CHECK_INT(st.hits, 0);
	CHECK_INT(st.misses, 1);
	tokcache_destroy(c);
	return 0;
}

static int test_null_and_limits(void)
{
	char err[128] = "";
	tokcache_stats st;

	tokcache_destroy(NULL);
	CHECK(tokcache_lookup(NULL, "tok-a", NOW) == NULL);
	CHECK(tokcache_new((size_t)1 << 25, err, sizeof err) == NULL);
	CHECK(strstr(err, "capacity") != NULL);
	tokcache_stats_get(NULL, &st);
	CHECK_INT(st.entries, 0);
	return 0;
}

/* A change of keys empties the cache: every token is verified again (and
 * one whose key is gone is refused); the cache works on as before. */
static int test_clear_drops_every_entry(void)
{
	tokcache *c = tokcache_new(4, NULL, 0);
	tokcache_stats st;

	CHECK(c != NULL);
	CHECK(insert(c, "tok-a", "val-a", NOW + 10) == 0);
	CHECK(insert(c, "tok-b", "val-b", NOW + 10) == 0);
	tokcache_clear(c);
	CHECK(client_of(c, "tok-a", NOW) == NULL);
	CHECK(client_of(c, "tok-b", NOW) == NULL);
	tokcache_stats_get(c, &st);
	CHECK_INT(st.entries, 0);
	CHECK_INT(st.cleared, 2);
	CHECK(insert(c, "tok-a", "val-a2", NOW + 10) == 0);
	CHECK_STR(client_of(c, "tok-a", NOW), "val-a2");
	tokcache_clear(NULL);
	tokcache_destroy(c);
	c = tokcache_new(0, NULL, 0);
	CHECK(c != NULL);
	tokcache_clear(c); /* a cache that keeps nothing */
	tokcache_destroy(c);
	return 0;
}

static const check_case cases[] = {
    {"clear_drops_every_entry", test_clear_drops_every_entry},
    {"miss_then_hit", test_miss_then_hit},
    {"claims_are_copied", test_claims_are_copied},
    {"expired_entry_is_dropped", test_expired_entry_is_dropped},
    {"lru_eviction_at_capacity", test_lru_eviction_at_capacity},
    {"many_tokens_each_its_own_entry", test_many_tokens_each_its_own_entry},
    {"near_tokens_never_share", test_near_tokens_never_share},
    {"insert_again_replaces", test_insert_again_replaces},
    {"capacity_zero_keeps_nothing", test_capacity_zero_keeps_nothing},
    {"null_and_limits", test_null_and_limits},
};

CHECK_MAIN("tokcache", cases)
