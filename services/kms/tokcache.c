/*
 * tokcache: verified tokens by the SHA-256 digest of their text, in a hash
 * table of chained entries (buckets a power of two, at least as many as the
 * capacity, indexed by the digest's first bytes, which SHA-256 spreads
 * evenly) and a doubly linked list from the most to the least recently used,
 * so that a lookup, an insert and an eviction each cost O(1).
 *
 * The digest stands for the token: two tokens share an entry only if they
 * share a SHA-256 digest, which nobody can arrange. Entries are only ever
 * added for tokens the caller has verified, so a token the cache does not
 * know is verified again, never trusted.
 */
#include "tokcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "errstr.h"

#define DIGEST_LEN 32
/* Bounds the bucket array (8 bytes a bucket) far below what size_t holds;
 * the configuration allows much less. */
#define MAX_CAPACITY ((size_t)1 << 24)

typedef struct entry entry;
struct entry {
	unsigned char digest[DIGEST_LEN];
	int64_t expires_s;
	jwt_claims claims;    /* owned */
	entry *chain;         /* next entry of the same bucket */
	entry *newer, *older; /* the recency list */
};

struct tokcache {
	size_t capacity;
	entry **buckets; /* NULL when the capacity is 0 */
	size_t mask;     /* number of buckets - 1 */
	entry *newest, *oldest;
	tokcache_stats stats;
};

tokcache *tokcache_new(size_t capacity, char *errstr, size_t errstr_size)
{
	tokcache *c;
	size_t n = 1;

	if (capacity > MAX_CAPACITY) {
		errstr_set(errstr, errstr_size, "token cache capacity is above 16777216 entries");
		return NULL;
	}
	c = calloc(1, sizeof *c);
	if (c == NULL)
		goto oom;
	c->capacity = capacity;
	c->stats.capacity = capacity;
	if (capacity == 0)
		return c;
	while (n < capacity)
		n <<= 1;
	c->buckets = calloc(n, sizeof *c->buckets);
	if (c->buckets == NULL)
		goto oom;
	c->mask = n - 1;
	return c;
oom:
	free(c);
	errstr_set(errstr, errstr_size, "out of memory");
	return NULL;
}

static void entry_free(entry *e)
{
	jwt_claims_free(&e->claims);
	free(e);
}

void tokcache_destroy(tokcache *c)
{
	if (c == NULL)
		return;
	for (entry *e = c->newest, *next; e != NULL; e = next) {
		next = e->older;
		entry_free(e);
	}
	free(c->buckets);
	free(c);
}

void tokcache_clear(tokcache *c)
{
	if (c == NULL)
		return;
	for (entry *e = c->newest, *next; e != NULL; e = next) {
		next = e->older;
		entry_free(e);
	}
	if (c->buckets != NULL)
		memset(c->buckets, 0, (c->mask + 1) * sizeof *c->buckets);
	c->newest = c->oldest = NULL;
	c->stats.cleared += c->stats.entries;
	c->stats.entries = 0;
}

static int digest_of(const char *token, unsigned char out[DIGEST_LEN])
{
	unsigned int len = 0;

	if (EVP_Digest(token, strlen(token), out, &len, EVP_sha256(), NULL) != 1 ||
	    len != DIGEST_LEN)
		return -1;
	return 0;
}

static entry **bucket_of(const tokcache *c, const unsigned char digest[DIGEST_LEN])
{
	size_t h = 0;

	for (size_t i = 0; i < sizeof h; i++)
		h = h << 8 | digest[i];
	return &c->buckets[h & c->mask];
}

static entry *find(const tokcache *c, const unsigned char digest[DIGEST_LEN])
{
	for (entry *e = *bucket_of(c, digest); e != NULL; e = e->chain)
		if (CRYPTO_memcmp(e->digest, digest, DIGEST_LEN) == 0)
			return e;
	return NULL;
}

static void list_unlink(tokcache *c, entry *e)
{
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void list_push_newest(tokcache *c, entry *e)
{
	e->newer = NULL;
	e->older = c->newest;
	if (c->newest != NULL)
		c->newest->newer = e;
	c->newest = e;
	if (c->oldest == NULL)
		c->oldest = e;
}

/* Take e out of its bucket and the list, and free it. */
static void drop(tokcache *c, entry *e)
{
	entry **link = bucket_of(c, e->digest);

	while (*link != e)
		link = &(*link)->chain;
	*link = e->chain;
	list_unlink(c, e);
	entry_free(e);
	c->stats.entries--;
}

const jwt_claims *tokcache_lookup(tokcache *c, const char *token, int64_t now_s)
{
	unsigned char digest[DIGEST_LEN];
	entry *e;

	if (c == NULL)
		return NULL;
	if (c->capacity == 0 || token == NULL || digest_of(token, digest) != 0) {
		c->stats.misses++;
		return NULL;
	}
	e = find(c, digest);
	if (e == NULL) {
		c->stats.misses++;
		return NULL;
	}
	if (now_s > e->expires_s) {
		/* Dropped rather than kept: the token can only be refused
		 * from now on, and verifying it again says so. */
		drop(c, e);
		c->stats.expired++;
		c->stats.misses++;
		return NULL;
	}
	list_unlink(c, e);
	list_push_newest(c, e);
	c->stats.hits++;
	return &e->claims;
}

/* Deep copy; 0, or -1 with dst freed and zeroed. */
static int claims_copy(jwt_claims *dst, const jwt_claims *src)
{
	const char *from[] = {src->iss, src->client_id, src->scope, src->vsp_id};
	char **to[] = {&dst->iss, &dst->client_id, &dst->scope, &dst->vsp_id};

	*dst = *src;
	for (size_t i = 0; i < sizeof to / sizeof to[0]; i++)
		*to[i] = NULL;
	for (size_t i = 0; i < sizeof to / sizeof to[0]; i++) {
		if (from[i] == NULL)
			continue;
		*to[i] = strdup(from[i]);
		if (*to[i] == NULL) {
			jwt_claims_free(dst);
			return -1;
		}
	}
	return 0;
}

int tokcache_insert(tokcache *c, const char *token, const jwt_claims *claims, int64_t expires_s)
{
	entry *e, *old, **bucket;

	if (c == NULL || token == NULL || claims == NULL)
		return -1;
	if (c->capacity == 0)
		return 0;
	/* Everything that can fail comes before the cache is touched. */
	e = calloc(1, sizeof *e);
	if (e == NULL)
		return -1;
	if (digest_of(token, e->digest) != 0 || claims_copy(&e->claims, claims) != 0) {
		free(e);
		return -1;
	}
	e->expires_s = expires_s;
	old = find(c, e->digest);
	if (old != NULL)
		drop(c, old);
	else if (c->stats.entries == c->capacity) {
		drop(c, c->oldest);
		c->stats.evictions++;
	}
	bucket = bucket_of(c, e->digest);
	e->chain = *bucket;
	*bucket = e;
	list_push_newest(c, e);
	c->stats.entries++;
	c->stats.inserts++;
	return 0;
}

void tokcache_stats_get(const tokcache *c, tokcache_stats *out)
{
	if (out == NULL)
		return;
	if (c == NULL) {
		memset(out, 0, sizeof *out);
		return;
	}
	*out = c->stats;
}
