/*
 * trust: the issuers file, the key sets behind it, and the refresher thread
 * that keeps JWKS URI sets fresh.
 *
 * What is in force is one immutable pair, built whole: a jwt_verifier with
 * every trusted key, and the issuers' bindings to providers. A load, or a key
 * set the refresher brought, builds a new pair beside the old one and swaps
 * it in only when it is complete, so a fault anywhere leaves the old trust
 * standing and nothing is ever half-applied.
 *
 * The refresher and the owner thread share the JWKS URI sources (uri_src):
 * their last good key sets and their fetch bookkeeping, under one mutex. The
 * refresher fetches with copies of what it needs and hands its result back by
 * the source's id, so a source dropped by a reload meanwhile simply misses
 * its result. Only the owner thread builds verifiers, adds or drops sources,
 * and reads the configuration, so those need no lock of their own.
 *
 * This file is the owner's side: loads, the verifier built from the file's
 * keys and the sources' sets, polls and queries. The file's reading is in
 * trust_file.c, the refresher in trust_refresh.c.
 */
#include "trust.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "errstr.h"
#include "fetch.h"
#include "jwks.h"
#include "log.h"
#include "trust_int.h"

/* ---- building the verifier ---- */

static const jwks_set *issuer_keys(const issuer *is)
{
	return is->kind == SRC_JWKS_URI ? &is->uri->keys : &is->keys;
}

/* A verifier with every key of c. Called with t->mu held when c has JWKS
 * URI issuers (their sets are read). */
static jwt_verifier *build(const trust *t, const trust_conf *c, size_t *n_keys, char *errstr,
                           size_t errstr_size)
{
	jwt_verifier *v =
	    jwt_verifier_new(t->set.alg_mask, t->set.max_token_bytes, errstr, errstr_size);
	char why[256];

	*n_keys = 0;
	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < c->n; i++) {
		const issuer *is = &c->v[i];
		const jwks_set *ks = issuer_keys(is);
		for (size_t k = 0; k < ks->n; k++) {
			const jwks_key *key = &ks->keys[k];
			if (jwt_verifier_add_key_algs(v, is->iss, key->kid, key->pem, key->algs,
			                              why, sizeof why) != 0) {
				errstr_set(errstr, errstr_size, "issuer %.200s, key %.64s: %s",
				           is->iss, key->kid != NULL ? key->kid : "without kid",
				           why);
				jwt_verifier_destroy(v);
				return NULL;
			}
			(*n_keys)++;
		}
	}
	return v;
}

static uri_src *find_uri(const trust *t, const char *iss, const char *url)
{
	for (size_t i = 0; i < t->n_uris; i++)
		if (strcmp(t->uris[i]->iss, iss) == 0 && strcmp(t->uris[i]->url, url) == 0)
			return t->uris[i];
	return NULL;
}

static int str_set(char **dst, const char *src)
{
	char *c = NULL;

	if (src != NULL && (c = strdup(src)) == NULL)
		return -1;
	free(*dst);
	*dst = c;
	return 0;
}

/* Give every JWKS URI issuer of c its source: the trust's own for the same
 * iss and URI (its keys carry over), else a new one. Owner thread; t->mu
 * held (the list is read). */
static int attach_sources(trust *t, trust_conf *c, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < c->n; i++) {
		issuer *is = &c->v[i];
		uri_src *u;

		if (is->kind != SRC_JWKS_URI)
			continue;
		u = find_uri(t, is->iss, is->url);
		if (u != NULL) {
			is->uri = u;
			continue;
		}
		u = calloc(1, sizeof *u);
		if (u == NULL || (u->iss = strdup(is->iss)) == NULL ||
		    (u->url = strdup(is->url)) == NULL) {
			trust_uri_free(u);
			errstr_set(errstr, errstr_size, "out of memory");
			return -1;
		}
		u->id = ++t->next_id;
		is->uri = u;
		is->uri_new = 1;
	}
	return 0;
}

/* Put c's sources in force: the new ones join the list, the ones c does not
 * name leave it, the settings of the file apply, and every source is fetched
 * again soon. t->mu held. Returns -1 (nothing changed) when out of memory. */
static int commit_sources(trust *t, trust_conf *c)
{
	size_t n = 0;
	uri_src **list = calloc(c->n + 1, sizeof *list);

	if (list == NULL)
		return -1;
	for (size_t i = 0; i < c->n; i++) {
		issuer *is = &c->v[i];
		if (is->kind != SRC_JWKS_URI)
			continue;
		/* the one step that can fail comes first */
		if (str_set(&is->uri->ca_file, is->ca_file) != 0) {
			free(list);
			return -1;
		}
	}
	for (size_t i = 0; i < c->n; i++) {
		issuer *is = &c->v[i];
		uri_src *u = is->uri;
		if (is->kind != SRC_JWKS_URI)
			continue;
		u->refresh_ms = is->refresh_ms;
		u->max_stale_ms = is->max_stale_ms;
		u->timeout_ms = is->timeout_ms;
		u->refetch_min_ms = is->refetch_min_ms;
		u->adopted = u->version;
		if (!is->uri_new)
			u->force = 1;
		is->uri_new = 0; /* now the trust's */
		list[n++] = u;
	}
	for (size_t i = 0; i < t->n_uris; i++) {
		int kept = 0;
		for (size_t k = 0; k < n && !kept; k++)
			kept = list[k] == t->uris[i];
		if (!kept)
			trust_uri_free(t->uris[i]);
	}
	free(t->uris);
	t->uris = list;
	t->n_uris = n;
	return 0;
}

trust *trust_new(const trust_settings *settings, char *errstr, size_t errstr_size)
{
	trust *t;
	pthread_condattr_t ca;

	if (settings == NULL) {
		errstr_set(errstr, errstr_size, "trust_new: missing settings");
		return NULL;
	}
	t = calloc(1, sizeof *t);
	if (t == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		return NULL;
	}
	t->set = *settings;
	if (pthread_mutex_init(&t->mu, NULL) != 0) {
		free(t);
		errstr_set(errstr, errstr_size, "cannot make a mutex");
		return NULL;
	}
	/* waits are measured on the monotonic clock, like everything else */
	if (pthread_condattr_init(&ca) != 0 ||
	    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&t->cv, &ca) != 0) {
		pthread_mutex_destroy(&t->mu);
		free(t);
		errstr_set(errstr, errstr_size, "cannot make a condition variable");
		return NULL;
	}
	pthread_condattr_destroy(&ca);
	t->sync_made = 1;
	if (fetch_global_init(errstr, errstr_size) != 0) {
		trust_destroy(t);
		return NULL;
	}
	t->curl_made = 1;
	/* Nothing trusted yet: an empty verifier refuses every token. */
	t->verifier =
	    jwt_verifier_new(t->set.alg_mask, t->set.max_token_bytes, errstr, errstr_size);
	if (t->verifier == NULL) {
		trust_destroy(t);
		return NULL;
	}
	return t;
}

void trust_destroy(trust *t)
{
	if (t == NULL)
		return;
	if (t->running) {
		pthread_mutex_lock(&t->mu);
		t->stop = 1;
		atomic_store(&t->cancel, 1);
		pthread_cond_broadcast(&t->cv);
		pthread_mutex_unlock(&t->mu);
		pthread_join(t->thread, NULL);
	}
	trust_conf_free(t->cfg);
	for (size_t i = 0; i < t->n_uris; i++)
		trust_uri_free(t->uris[i]);
	free(t->uris);
	jwt_verifier_destroy(t->verifier);
	if (t->curl_made)
		fetch_global_cleanup();
	if (t->sync_made) {
		pthread_cond_destroy(&t->cv);
		pthread_mutex_destroy(&t->mu);
	}
	free(t);
}

int trust_load(trust *t, const char *path, char *errstr, size_t errstr_size)
{
	trust_conf *c;
	jwt_verifier *v = NULL;
	size_t n_keys = 0;

	if (t == NULL || path == NULL || path[0] == '\0') {
		errstr_set(errstr, errstr_size, "trust_load: no issuers file");
		return -1;
	}
	c = trust_conf_read(path, errstr, errstr_size);
	if (c == NULL)
		return -1;
	pthread_mutex_lock(&t->mu);
	if (attach_sources(t, c, errstr, errstr_size) == 0) {
		char why[512];
		v = build(t, c, &n_keys, why, sizeof why);
		if (v == NULL)
			errstr_set(errstr, errstr_size, "%s: %s", path, why);
		else if (commit_sources(t, c) != 0) {
			errstr_set(errstr, errstr_size, "out of memory");
			jwt_verifier_destroy(v);
			v = NULL;
		}
	}
	if (v != NULL)
		pthread_cond_broadcast(&t->cv); /* new and reloaded sources are due */
	pthread_mutex_unlock(&t->mu);
	if (v == NULL) {
		trust_conf_free(c);
		return -1;
	}
	jwt_verifier_destroy(t->verifier);
	t->verifier = v;
	trust_conf_free(t->cfg);
	t->cfg = c;
	t->generation++;
	log_event(LOG_INFO, "issuers_loaded", "{s:s, s:I, s:I, s:I}", "file", path, "issuers",
	          (json_int_t)c->n, "keys", (json_int_t)n_keys, "jwks_uris", (json_int_t)t->n_uris);
	if (c->n == 0)
		log_event(LOG_WARN, "no_issuers", "{s:s}", "effect", "every token is refused");
	if (c->defaulted)
		log_event(LOG_INFO, "issuer_binding_default", "{s:s, s:s, s:s}", "iss", c->v[0].iss,
		          "vsp_ids", "*", "why",
		          "the only issuer has no vsp_ids: it may speak for every provider");
	return 0;
}

int trust_start(trust *t, int64_t wait_ms, char *errstr, size_t errstr_size)
{
	sigset_t all, old;
	int64_t deadline;
	int rc;

	if (t->running)
		return 0;
	/* The refresher takes no signal: they belong to the service's loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&t->thread, NULL, trust_refresher, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errstr_set(errstr, errstr_size, "cannot start the JWKS refresher thread");
		return -1;
	}
	t->running = 1;

	pthread_mutex_lock(&t->mu);
	if (wait_ms <= 0) {
		wait_ms = 0;
		for (size_t i = 0; i < t->n_uris; i++)
			if (t->uris[i]->timeout_ms + 1000 > wait_ms)
				wait_ms = t->uris[i]->timeout_ms + 1000;
	}
	deadline = mono_ms() + wait_ms;
	for (;;) {
		size_t tried = 0;
		for (size_t i = 0; i < t->n_uris; i++)
			tried += t->uris[i]->attempts > 0;
		if (tried == t->n_uris || mono_ms() >= deadline)
			break;
		trust_wait_until(t, deadline);
	}
	pthread_mutex_unlock(&t->mu);
	(void)trust_poll(t);
	return 0;
}

int trust_poll(trust *t)
{
	int pending = 0;
	jwt_verifier *v = NULL;
	size_t n_keys = 0;
	char err[512];

	if (t == NULL || t->cfg == NULL)
		return 0;
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->cfg->n; i++) {
		const uri_src *u = t->cfg->v[i].uri;
		if (u != NULL && u->version != u->adopted)
			pending = 1;
	}
	if (pending) {
		v = build(t, t->cfg, &n_keys, err, sizeof err);
		if (v != NULL)
			for (size_t i = 0; i < t->cfg->n; i++)
				if (t->cfg->v[i].uri != NULL)
					t->cfg->v[i].uri->adopted = t->cfg->v[i].uri->version;
	}
	pthread_mutex_unlock(&t->mu);
	if (!pending)
		return 0;
	if (v == NULL) {
		/* Only memory can fail here (every set was tried on a verifier
		 * when it came): the next poll tries again. */
		log_event(LOG_ERROR, "trust_build_failed", "{s:s}", "error", err);
		return 0;
	}
	jwt_verifier_destroy(t->verifier);
	t->verifier = v;
	t->generation++;
	return 1;
}

int trust_refresh_for_token(trust *t, const char *token)
{
	char iss[512], kid[300];
	const issuer *is = NULL;
	uri_src *u;
	trust_job job;
	int64_t now;

	if (t == NULL || t->cfg == NULL || token == NULL)
		return 0;
	if (jwt_peek(token, t->set.max_token_bytes, iss, sizeof iss, kid, sizeof kid) != 0)
		return 0;
	for (size_t i = 0; i < t->cfg->n && is == NULL; i++)
		if (strcmp(t->cfg->v[i].iss, iss) == 0)
			is = &t->cfg->v[i];
	if (is == NULL || is->kind != SRC_JWKS_URI)
		return 0;
	/* Refused for another reason than a missing key: nothing to fetch. */
	if (jwt_verifier_has_key(t->verifier, iss, kid[0] != '\0' ? kid : NULL))
		return 0;
	u = is->uri;
	pthread_mutex_lock(&t->mu);
	now = mono_ms();
	if (u->last_token_ms != 0 && now - u->last_token_ms < u->refetch_min_ms) {
		pthread_mutex_unlock(&t->mu);
		return trust_poll(t); /* a fetch of the refresher may have landed */
	}
	u->last_token_ms = now;
	if (u->fetching) {
		/* The refresher is on it: wait for its result, not a second one. */
		int64_t deadline = now + u->timeout_ms + 1000;
		while (u->fetching && mono_ms() < deadline)
			trust_wait_until(t, deadline);
		pthread_mutex_unlock(&t->mu);
	} else if (trust_job_take(u, &job) == 0) {
		pthread_mutex_unlock(&t->mu);
		log_event(LOG_INFO, "jwks_fetch_for_kid", "{s:s, s:s}", "iss", iss, "kid",
		          kid[0] != '\0' ? kid : "(none)");
		trust_job_run(t, &job);
		trust_job_free(&job);
	} else {
		pthread_mutex_unlock(&t->mu);
	}
	return trust_poll(t);
}

const jwt_verifier *trust_verifier(const trust *t)
{
	return t != NULL ? t->verifier : NULL;
}

const authz_issuer *trust_issuers(const trust *t, size_t *n)
{
	if (t == NULL || t->cfg == NULL) {
		if (n != NULL)
			*n = 0;
		return NULL;
	}
	if (n != NULL)
		*n = t->cfg->n;
	return t->cfg->bind;
}

uint64_t trust_generation(const trust *t)
{
	return t != NULL ? t->generation : 0;
}

size_t trust_stale(trust *t, char *which, size_t which_size)
{
	size_t n = 0, at = 0;
	int64_t now = mono_ms();

	if (which != NULL && which_size > 0)
		which[0] = '\0';
	if (t == NULL || t->cfg == NULL)
		return 0;
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->cfg->n; i++) {
		const uri_src *u = t->cfg->v[i].uri;
		if (u == NULL)
			continue;
		if (u->has_keys && now - u->last_ok_ms <= u->max_stale_ms)
			continue;
		n++;
		if (which != NULL && at < which_size) {
			int w = snprintf(which + at, which_size - at, "%s%s", at > 0 ? ", " : "",
			                 u->iss);
			if (w > 0)
				at += (size_t)w;
		}
	}
	pthread_mutex_unlock(&t->mu);
	return n;
}
