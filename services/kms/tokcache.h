/*
 * tokcache: access tokens whose form and signature have been verified, kept
 * with their claims so that a VAL server reusing its token for many requests
 * costs one signature verification, not one per request.
 *
 * An entry is keyed by the SHA-256 digest of the token: the token itself is
 * never stored. An entry lives until its expiry (the token's exp plus the
 * leeway, given by the caller), at most capacity entries are kept, and the
 * least recently used goes first when a new one needs room.
 *
 * What is cached is only what depends on the token alone (jwt_verify_signature).
 * Everything that depends on the time or on the request (exp, nbf and iat
 * against now, client_id, scope, SKeyProv, vsp_id) is still the caller's to
 * check at every use. Entries are only valid for the verifier (the trusted
 * keys and algorithms) that verified them: a cache must not outlive a change
 * of keys.
 *
 * Not thread-safe: one cache belongs to one thread (the KM-S has one
 * consumer thread). A lookup changes the cache (recency, counters).
 */
#ifndef KMS_TOKCACHE_H
#define KMS_TOKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"

#if defined(__GNUC__)
#define TOKCACHE_MUST_CHECK __attribute__((warn_unused_result))
#else
#define TOKCACHE_MUST_CHECK
#endif

typedef struct tokcache tokcache;

/* Counters since tokcache_new(), for metrics. */
typedef struct {
	uint64_t hits;      /* lookups answered from the cache */
	uint64_t misses;    /* lookups not answered (including expired entries) */
	uint64_t expired;   /* entries dropped at lookup because they had expired */
	uint64_t evictions; /* entries dropped to make room (least recently used) */
	uint64_t inserts;   /* entries added */
	uint64_t cleared;   /* entries dropped by tokcache_clear() */
	size_t entries;     /* entries held now */
	size_t capacity;
} tokcache_stats;

/* A cache of at most capacity entries; 0 gives a cache that keeps nothing
 * (every lookup misses), so a caller needs no special case to turn it off.
 * Caller frees with tokcache_destroy(). NULL with errstr filled when out of
 * memory or capacity is above 2^24 (16,777,216). */
tokcache *tokcache_new(size_t capacity, char *errstr, size_t errstr_size) TOKCACHE_MUST_CHECK;
void tokcache_destroy(tokcache *c); /* NULL is a no-op */

/* The claims cached for token, or NULL (a miss) when there are none, they
 * expired before now_s (the entry is then dropped), the cache is off, or the
 * digest cannot be computed. A hit makes the entry the most recently used.
 * The claims are borrowed: valid until the next call on this cache other
 * than tokcache_stats_get(). */
const jwt_claims *tokcache_lookup(tokcache *c, const char *token, int64_t now_s);

/* Keep a copy of claims for token until expires_s (seconds since the epoch;
 * the entry is dropped by the first lookup after it). The caller must have
 * verified the token's form and signature with the verifier whose results
 * this cache holds; a token that failed must never be inserted. An entry
 * already held for the token is replaced. When the cache is full, the least
 * recently used entry makes room. Returns 0 (also when the cache is off), or
 * -1 when out of memory or the digest cannot be computed, the cache then
 * unchanged: nothing is lost but the saving, so a caller may go on. */
int tokcache_insert(tokcache *c, const char *token, const jwt_claims *claims,
                    int64_t expires_s) TOKCACHE_MUST_CHECK;

/* Drop every entry (the counters stay): what a change of the trusted keys
 * calls for, since an entry vouches only for the keys that verified it. A
 * token whose key was removed is then verified again, and refused. NULL is a
 * no-op. */
void tokcache_clear(tokcache *c);

void tokcache_stats_get(const tokcache *c, tokcache_stats *out);

#endif
