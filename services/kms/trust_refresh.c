/*
 * trust_refresh: the refresher thread, which keeps every JWKS URI's key set
 * fresh: each source is fetched when due (every jwks_refresh_s, sooner
 * after a failure or a reload), without the lock, with copies of what the
 * fetch needs; the outcome is handed back to the source by its id, so a
 * source a reload dropped meanwhile misses it. A set is kept only when a
 * verifier takes every one of its keys; a refused or failed fetch keeps the
 * last good set. The owner thread runs the same fetch for a token's unknown
 * kid (trust_refresh_for_token()).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "fetch.h"
#include "jwks.h"
#include "log.h"
#include "trust_int.h"

/* A failed fetch is tried again this soon, or at the refresh interval when
 * that is shorter. */
#define RETRY_MS INT64_C(30000)

void trust_job_free(trust_job *j)
{
	free(j->iss);
	free(j->url);
	free(j->ca_file);
	memset(j, 0, sizeof *j);
}

/* Copy what a fetch of u needs and mark it under way. t->mu held. */
int trust_job_take(uri_src *u, trust_job *j)
{
	memset(j, 0, sizeof *j);
	j->id = u->id;
	j->timeout_ms = (long)u->timeout_ms;
	j->iss = strdup(u->iss);
	j->url = strdup(u->url);
	j->ca_file = u->ca_file != NULL ? strdup(u->ca_file) : NULL;
	if (j->iss == NULL || j->url == NULL || (u->ca_file != NULL && j->ca_file == NULL)) {
		trust_job_free(j);
		return -1;
	}
	u->fetching = 1;
	u->force = 0;
	return 0;
}

static uri_src *find_id(const trust *t, uint64_t id)
{
	for (size_t i = 0; i < t->n_uris; i++)
		if (t->uris[i]->id == id)
			return t->uris[i];
	return NULL;
}

/* Fetch and read one set, then hand the outcome to its source. Runs without
 * the lock. */
void trust_job_run(trust *t, const trust_job *j)
{
	fetch_request rq = {.url = j->url,
	                    .ca_file = j->ca_file,
	                    .timeout_ms = j->timeout_ms,
	                    .max_bytes = JWKS_MAX_BYTES,
	                    .cancel = &t->cancel};
	char err[512] = "", why[256];
	char *body = NULL;
	size_t len = 0, kept = 0, n_keys = 0;
	jwks_set set = {0};
	trust_skips sc = {.iss = j->iss, .source = j->url};
	int ok = 0, changed = 0, known = 0, had_keys = 0;
	uri_src *u;

	if (fetch_get(&rq, &body, &len, why, sizeof why) != 0) {
		snprintf(err, sizeof err, "fetch: %s", why);
	} else if (jwks_parse(body, len, &set, trust_note_skip, &sc, why, sizeof why) != 0) {
		snprintf(err, sizeof err, "%s", why);
	} else {
		/* The verifier must take every key, or the set is not used:
		 * found here, never while building the verifier in force. */
		jwt_verifier *v =
		    jwt_verifier_new(t->set.alg_mask, t->set.max_token_bytes, why, sizeof why);
		ok = v != NULL;
		for (size_t k = 0; ok && k < set.n; k++)
			if (jwt_verifier_add_key_algs(v, j->iss, set.keys[k].kid, set.keys[k].pem,
			                              set.keys[k].algs, why, sizeof why) != 0) {
				snprintf(err, sizeof err, "key %.64s: %s",
				         set.keys[k].kid != NULL ? set.keys[k].kid : "without kid",
				         why);
				ok = 0;
			}
		if (v == NULL)
			snprintf(err, sizeof err, "%s", why);
		jwt_verifier_destroy(v);
	}
	free(body);

	pthread_mutex_lock(&t->mu);
	u = find_id(t, j->id);
	if (u != NULL) {
		known = 1;
		had_keys = u->has_keys;
		u->fetching = 0;
		u->attempts++;
		u->last_attempt_ms = mono_ms();
		u->failed = !ok;
		if (ok) {
			u->last_ok_ms = u->last_attempt_ms;
			if (!u->has_keys || !jwks_set_equal(&u->keys, &set)) {
				jwks_set old = u->keys;
				u->keys = set;
				memset(&set, 0, sizeof set); /* now the source's */
				jwks_set_free(&old);
				u->version++;
				changed = 1;
			}
			u->has_keys = 1;
		}
		kept = u->keys.n;
		n_keys = u->keys.n;
	}
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	jwks_set_free(&set);

	if (!known)
		return; /* dropped by a reload meanwhile */
	/* what was skipped is said when it matters: with a refusal, or with
	 * a set that is new */
	if (!ok || changed)
		trust_log_skips(&sc);
	if (!ok)
		log_event(LOG_WARN, "jwks_refused", "{s:s, s:s, s:s, s:b, s:I}", "iss", j->iss,
		          "source", j->url, "error", err, "kept_last_good", had_keys, "kept_keys",
		          (json_int_t)kept);
	else if (changed)
		log_event(LOG_INFO, "jwks_fetched", "{s:s, s:s, s:I, s:b}", "iss", j->iss, "source",
		          j->url, "keys", (json_int_t)n_keys, "changed", 1);
	else
		log_event(LOG_DEBUG, "jwks_fetched", "{s:s, s:s, s:I, s:b}", "iss", j->iss,
		          "source", j->url, "keys", (json_int_t)n_keys, "changed", 0);
}

/* When u is next due. t->mu held. */
static int64_t due_ms(const uri_src *u)
{
	int64_t retry = u->refresh_ms < RETRY_MS ? u->refresh_ms : RETRY_MS;

	if (u->force || u->last_attempt_ms == 0)
		return 0;
	return u->last_attempt_ms + (u->failed ? retry : u->refresh_ms);
}

void trust_wait_until(trust *t, int64_t until_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(until_ms / 1000);
	ts.tv_nsec = (long)(until_ms % 1000) * 1000000L;
	(void)pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

void *trust_refresher(void *arg)
{
	trust *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		int64_t now = mono_ms(), next = now + 60000;
		uri_src *pick = NULL;
		trust_job job;

		for (size_t i = 0; i < t->n_uris && pick == NULL; i++) {
			int64_t d;
			if (t->uris[i]->fetching)
				continue;
			d = due_ms(t->uris[i]);
			if (d <= now)
				pick = t->uris[i];
			else if (d < next)
				next = d;
		}
		if (pick == NULL) {
			trust_wait_until(t, next);
			continue;
		}
		if (trust_job_take(pick, &job) != 0) {
			trust_wait_until(t, now + 1000); /* out of memory: later */
			continue;
		}
		pthread_mutex_unlock(&t->mu);
		trust_job_run(t, &job);
		trust_job_free(&job);
		pthread_mutex_lock(&t->mu);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}
