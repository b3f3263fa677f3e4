/*
 * trust_int: what the files of the trust share and nothing else includes:
 * the trust itself, the parsed issuers file, the JWKS URI sources the
 * refresher thread shares with the owner, and the steps one file calls in
 * another. Not a public interface: trust.h is.
 *
 *   trust.c          the owner's side: loads, the verifier in force, polls
 *   trust_file.c     reading the issuers file into a trust_conf
 *   trust_refresh.c  the refresher thread and the fetch of one key set
 */
#ifndef KMS_TRUST_INT_H
#define KMS_TRUST_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "authz.h"
#include "jwks.h"
#include "jwt.h"
#include "trust.h"

/* A JWKS URI and what is known of it. The fields under "guarded" are read
 * and written under trust.mu; the rest is the owner thread's. */
typedef struct {
	uint64_t id;
	char *iss;
	char *url;
	/* guarded */
	char *ca_file;
	int64_t refresh_ms, max_stale_ms, timeout_ms, refetch_min_ms;
	jwks_set keys; /* the last good set */
	int has_keys;
	int64_t last_ok_ms, last_attempt_ms, last_token_ms; /* monotonic; 0: never */
	int failed;                                         /* the last attempt failed */
	int fetching;                                       /* a fetch is under way */
	int force;                                          /* fetch again at once (a reload) */
	uint64_t attempts;
	uint64_t version; /* bumped whenever keys change */
	uint64_t adopted; /* the version the verifier in force holds */
} uri_src;

typedef enum { SRC_PEM = 0, SRC_JWKS_FILE, SRC_JWKS_URI } src_kind;

typedef struct {
	char *iss;
	src_kind kind;
	int has_binding; /* vsp_ids was given */
	int any;         /* "*" */
	char **vsp_ids;
	size_t n_vsp;
	jwks_set keys; /* PEM and JWKS file keys */
	/* JWKS URI: its settings as the file gives them, and its source (the
	 * trust's, or a new one until the load is committed) */
	char *url, *ca_file;
	int64_t refresh_ms, max_stale_ms, timeout_ms, refetch_min_ms;
	uri_src *uri;
	int uri_new;
} issuer;

typedef struct {
	issuer *v;
	size_t n;
	authz_issuer *bind; /* the bindings as authz reads them */
	int defaulted;      /* a single issuer without vsp_ids: "*" */
} trust_conf;

struct trust {
	trust_settings set;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int sync_made, curl_made;
	/* guarded: the list the refresher walks */
	uri_src **uris;
	size_t n_uris;
	int stop;
	atomic_int cancel; /* set with stop: fetches under way give up */
	/* the owner thread's */
	uint64_t next_id;
	trust_conf *cfg;
	jwt_verifier *verifier;
	uint64_t generation;
	pthread_t thread;
	int running;
};

/* The keys a document's reading skipped, kept to be logged once it is known
 * whether that is news: a JWKS URI that serves an encryption key beside its
 * signing keys would otherwise say so at every refresh. */
#define MAX_SKIPS_LOGGED 16

typedef struct {
	const char *iss;
	const char *source;
	size_t n, more;
	struct {
		size_t index;
		int has_kid;
		char kid[96];
		char why[160];
	} v[MAX_SKIPS_LOGGED];
} trust_skips;

typedef struct {
	uint64_t id;
	char *iss, *url, *ca_file;
	long timeout_ms;
} trust_job;

static inline int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- trust_file.c ---- */

/* Read the issuers file at path, PEM and JWKS files included. The JWKS URI
 * issuers have no source yet (trust.c attaches them). NULL with errstr
 * filled (one line naming the file and the entry). Caller frees with
 * trust_conf_free(). */
trust_conf *trust_conf_read(const char *path, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void trust_conf_free(trust_conf *c); /* NULL is a no-op */
void trust_uri_free(uri_src *u);     /* NULL is a no-op */

/* jwks_parse()'s skip callback, into a trust_skips (ctx); and the log lines
 * of what it noted. */
void trust_note_skip(void *ctx, size_t index, const char *kid, const char *why);
void trust_log_skips(const trust_skips *s);

/* ---- trust_refresh.c ---- */

/* Copy what a fetch of u needs into j and mark u's fetch under way. t->mu
 * held. Returns -1 when out of memory (nothing marked). Caller frees j with
 * trust_job_free(). */
int trust_job_take(uri_src *u, trust_job *j) __attribute__((warn_unused_result));
void trust_job_free(trust_job *j);
/* Fetch and read one set, then hand the outcome to its source (if a reload
 * has not dropped it meanwhile). Called without t->mu. */
void trust_job_run(trust *t, const trust_job *j);
/* Wait on t->cv (t->mu held) until until_ms (monotonic) at the latest. */
void trust_wait_until(trust *t, int64_t until_ms);
/* The refresher thread's body; arg is the trust. */
void *trust_refresher(void *arg);

#endif
