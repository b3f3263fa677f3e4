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
#include "file.h"
#include "fetch.h"
#include "jwks.h"
#include "log.h"

#define MAX_ISSUERS_FILE_BYTES (1024 * 1024)
#define MAX_PEM_FILE_BYTES     (64 * 1024)
#define MAX_NAME_BYTES         255
/* A failed fetch is tried again this soon, or at the refresh interval when
 * that is shorter. */
#define RETRY_MS INT64_C(30000)

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
} config;

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
	config *cfg;
	jwt_verifier *verifier;
	uint64_t generation;
	pthread_t thread;
	int running;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- sources and configurations ---- */

static void uri_free(uri_src *u)
{
	if (u == NULL)
		return;
	free(u->iss);
	free(u->url);
	free(u->ca_file);
	jwks_set_free(&u->keys);
	free(u);
}

static void issuer_clear(issuer *is)
{
	free(is->iss);
	for (size_t k = 0; k < is->n_vsp; k++)
		free(is->vsp_ids[k]);
	free(is->vsp_ids);
	jwks_set_free(&is->keys);
	free(is->url);
	free(is->ca_file);
	if (is->uri_new)
		uri_free(is->uri); /* never committed */
	memset(is, 0, sizeof *is);
}

static void config_free(config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		issuer_clear(&c->v[i]);
	free(c->v);
	free(c->bind);
	free(c);
}

/* path taken from dir (the issuers file's folder) unless absolute. */
static char *resolve(const char *dir, size_t dir_len, const char *path)
{
	size_t n;
	char *full;

	if (path[0] == '/' || dir_len == 0)
		return strdup(path);
	n = dir_len + 1 + strlen(path) + 1;
	full = malloc(n);
	if (full != NULL)
		snprintf(full, n, "%.*s/%s", (int)dir_len, dir, path);
	return full;
}

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
} skip_ctx;

static void note_skip(void *ctx, size_t index, const char *kid, const char *why)
{
	skip_ctx *s = ctx;

	if (s->n == MAX_SKIPS_LOGGED) {
		s->more++;
		return;
	}
	s->v[s->n].index = index;
	s->v[s->n].has_kid = kid != NULL;
	snprintf(s->v[s->n].kid, sizeof s->v[s->n].kid, "%s", kid != NULL ? kid : "");
	snprintf(s->v[s->n].why, sizeof s->v[s->n].why, "%s", why);
	s->n++;
}

static void log_skips(const skip_ctx *s)
{
	for (size_t i = 0; i < s->n; i++)
		log_event(LOG_WARN, "jwk_skipped", "{s:s, s:s, s:I, s:s?, s:s}", "iss", s->iss,
		          "source", s->source, "index", (json_int_t)s->v[i].index, "kid",
		          s->v[i].has_kid ? s->v[i].kid : NULL, "reason", s->v[i].why);
	if (s->more > 0)
		log_event(LOG_WARN, "jwk_skipped", "{s:s, s:s, s:I}", "iss", s->iss, "source",
		          s->source, "more", (json_int_t)s->more);
}

/* ---- the issuers file ---- */

/* The members an entry may have and their JSON types; the JWKS URI's own
 * come last (from URI_MEMBERS on). */
typedef enum { M_STRING, M_NUMBER, M_BINDING } member_type;

static const struct {
	const char *name;
	member_type type;
} members[] = {
    {"iss", M_STRING},
    {"vsp_ids", M_BINDING},
    {"kid", M_STRING},
    {"public_key_file", M_STRING},
    {"jwks_file", M_STRING},
    {"jwks_uri", M_STRING},
    {"jwks_refresh_s", M_NUMBER},
    {"jwks_max_stale_s", M_NUMBER},
    {"jwks_timeout_ms", M_NUMBER},
    {"jwks_refetch_min_s", M_NUMBER},
    {"jwks_ca_file", M_STRING},
};
#define N_MEMBERS   (sizeof members / sizeof members[0])
#define URI_MEMBERS 6

/* An optional whole-number member within [lo, hi], default def. */
static int int_member(const json_t *e, const char *name, int64_t lo, int64_t hi, int64_t def,
                      int64_t *out, char *why, size_t why_size)
{
	const json_t *j = json_object_get(e, name);

	*out = def;
	if (j == NULL)
		return 0;
	if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi) {
		errstr_set(why, why_size, "%s must be a whole number from %lld to %lld", name,
		           (long long)lo, (long long)hi);
		return -1;
	}
	*out = (int64_t)json_integer_value(j);
	return 0;
}

/* vsp_ids: "*" or a non-empty array of distinct non-empty names. */
static int read_binding(const json_t *j, issuer *is, char *why, size_t why_size)
{
	size_t i, n;
	const json_t *v;

	if (json_is_string(j)) {
		if (strcmp(json_string_value(j), "*") != 0) {
			errstr_set(why, why_size, "vsp_ids must be an array of names or \"*\"");
			return -1;
		}
		is->any = 1;
		return 0;
	}
	if (!json_is_array(j) || json_array_size(j) == 0) {
		errstr_set(
		    why, why_size,
		    "vsp_ids must be a non-empty array of names or \"*\" (an issuer that may "
		    "speak for no provider is left out instead)");
		return -1;
	}
	n = json_array_size(j);
	is->vsp_ids = calloc(n, sizeof *is->vsp_ids);
	if (is->vsp_ids == NULL) {
		errstr_set(why, why_size, "out of memory");
		return -1;
	}
	json_array_foreach(j, i, v)
	{
		const char *s = json_string_value(v);
		if (s == NULL || s[0] == '\0' || strlen(s) > MAX_NAME_BYTES ||
		    strcmp(s, "*") == 0) {
			errstr_set(why, why_size,
			           "vsp_ids holds something that is not a provider's name (\"*\" "
			           "stands alone, not in the array)");
			return -1;
		}
		for (size_t k = 0; k < is->n_vsp; k++)
			if (strcmp(is->vsp_ids[k], s) == 0) {
				errstr_set(why, why_size, "vsp_ids names %.64s twice", s);
				return -1;
			}
		is->vsp_ids[is->n_vsp] = strdup(s);
		if (is->vsp_ids[is->n_vsp] == NULL) {
			errstr_set(why, why_size, "out of memory");
			return -1;
		}
		is->n_vsp++;
	}
	return 0;
}

static int same_binding(const issuer *a, const issuer *b)
{
	if (a->has_binding != b->has_binding || a->any != b->any || a->n_vsp != b->n_vsp)
		return 0;
	for (size_t i = 0; i < a->n_vsp; i++) {
		int found = 0;
		for (size_t k = 0; k < b->n_vsp && !found; k++)
			found = strcmp(a->vsp_ids[i], b->vsp_ids[k]) == 0;
		if (!found)
			return 0;
	}
	return 1;
}

/* One entry into *is (zeroed by the caller; freed by the caller on failure).
 * why receives the fault. */
static int read_entry(const json_t *e, const char *dir, size_t dir_len, issuer *is, char *why,
                      size_t why_size)
{
	const char *name, *iss, *kid = NULL, *pem_file, *jwks_file, *uri, *ca;
	const json_t *val;
	char *path = NULL, *text = NULL;
	size_t text_len = 0;
	int sources, rc = -1;

	if (!json_is_object(e)) {
		errstr_set(why, why_size, "not a JSON object");
		return -1;
	}
	json_object_foreach((json_t *)e, name, val)
	{
		size_t i = 0;
		while (i < N_MEMBERS && strcmp(name, members[i].name) != 0)
			i++;
		/* A misspelt member must not silently become a default. */
		if (i == N_MEMBERS) {
			errstr_set(why, why_size, "unknown member %.64s", name);
			return -1;
		}
		/* numbers and vsp_ids are read (and checked) below */
		if (members[i].type == M_STRING &&
		    (!json_is_string(val) || json_string_length(val) == 0 ||
		     strlen(json_string_value(val)) != json_string_length(val))) {
			errstr_set(why, why_size, "%s is not a non-empty string", name);
			return -1;
		}
	}
	iss = json_string_value(json_object_get(e, "iss"));
	if (iss == NULL) {
		errstr_set(why, why_size, "iss is required");
		return -1;
	}
	is->iss = strdup(iss);
	if (is->iss == NULL) {
		errstr_set(why, why_size, "out of memory");
		return -1;
	}
	val = json_object_get(e, "vsp_ids");
	if (val != NULL) {
		is->has_binding = 1;
		if (read_binding(val, is, why, why_size) != 0)
			return -1;
	}
	pem_file = json_string_value(json_object_get(e, "public_key_file"));
	jwks_file = json_string_value(json_object_get(e, "jwks_file"));
	uri = json_string_value(json_object_get(e, "jwks_uri"));
	ca = json_string_value(json_object_get(e, "jwks_ca_file"));
	kid = json_string_value(json_object_get(e, "kid"));
	sources = (pem_file != NULL) + (jwks_file != NULL) + (uri != NULL);
	if (sources != 1) {
		errstr_set(why, why_size,
		           "exactly one of public_key_file, jwks_file and jwks_uri is "
		           "needed");
		return -1;
	}
	if (kid != NULL && pem_file == NULL) {
		errstr_set(why, why_size, "kid goes with public_key_file only (a JWK has its own)");
		return -1;
	}
	if (uri == NULL) {
		for (size_t i = URI_MEMBERS; i < N_MEMBERS; i++)
			if (json_object_get(e, members[i].name) != NULL) {
				errstr_set(why, why_size, "%s goes with jwks_uri only",
				           members[i].name);
				return -1;
			}
	}

	if (pem_file != NULL) {
		is->kind = SRC_PEM;
		path = resolve(dir, dir_len, pem_file);
		if (path == NULL) {
			errstr_set(why, why_size, "out of memory");
			goto done;
		}
		if ((text = file_read(path, MAX_PEM_FILE_BYTES, NULL, why, why_size)) == NULL)
			goto done;
		is->keys.keys = calloc(1, sizeof *is->keys.keys);
		if (is->keys.keys == NULL ||
		    (kid != NULL && (is->keys.keys[0].kid = strdup(kid)) == NULL)) {
			errstr_set(why, why_size, "out of memory");
			goto done;
		}
		is->keys.keys[0].pem = text;
		is->keys.n = 1;
		text = NULL;
	} else if (jwks_file != NULL) {
		char perr[256];
		skip_ctx sc = {0};

		is->kind = SRC_JWKS_FILE;
		path = resolve(dir, dir_len, jwks_file);
		if (path == NULL) {
			errstr_set(why, why_size, "out of memory");
			goto done;
		}
		if ((text = file_read(path, JWKS_MAX_BYTES, &text_len, why, why_size)) == NULL)
			goto done;
		sc.iss = iss;
		sc.source = path;
		int r = jwks_parse(text, text_len, &is->keys, note_skip, &sc, perr, sizeof perr);

		log_skips(&sc); /* read at a load or a reload only: always news */
		if (r != 0) {
			errstr_set(why, why_size, "%s: %s", path, perr);
			goto done;
		}
	} else {
		char uerr[160];

		is->kind = SRC_JWKS_URI;
		if (fetch_url_check(uri, uerr, sizeof uerr) != 0) {
			errstr_set(why, why_size, "jwks_uri: %s", uerr);
			goto done;
		}
		if (int_member(e, "jwks_refresh_s", 1, 86400, 300, &is->refresh_ms, why,
		               why_size) != 0 ||
		    int_member(e, "jwks_max_stale_s", 1, 30 * 86400, 3600, &is->max_stale_ms, why,
		               why_size) != 0 ||
		    int_member(e, "jwks_timeout_ms", 100, 60000, 5000, &is->timeout_ms, why,
		               why_size) != 0 ||
		    int_member(e, "jwks_refetch_min_s", 1, 3600, 30, &is->refetch_min_ms, why,
		               why_size) != 0)
			goto done;
		if (is->max_stale_ms < is->refresh_ms) {
			errstr_set(
			    why, why_size,
			    "jwks_max_stale_s must be at least jwks_refresh_s (or the keys are "
			    "stale between two refreshes)");
			goto done;
		}
		is->refresh_ms *= 1000;
		is->max_stale_ms *= 1000;
		is->refetch_min_ms *= 1000;
		is->url = strdup(uri);
		is->ca_file = ca != NULL ? resolve(dir, dir_len, ca) : NULL;
		if (is->url == NULL || (ca != NULL && is->ca_file == NULL)) {
			errstr_set(why, why_size, "out of memory");
			goto done;
		}
	}
	rc = 0;
done:
	free(path);
	free(text);
	return rc;
}

/* Fold the PEM entry *is into issuer *into of the same iss. */
static int merge_entry(issuer *into, issuer *is, char *why, size_t why_size)
{
	jwks_key *k;

	if (into->kind != SRC_PEM || is->kind != SRC_PEM) {
		errstr_set(why, why_size,
		           "issuer %.200s has a JWKS source, which must be the issuer's only entry",
		           is->iss);
		return -1;
	}
	if (!same_binding(into, is)) {
		errstr_set(why, why_size, "entries of issuer %.200s do not agree on vsp_ids",
		           is->iss);
		return -1;
	}
	k = realloc(into->keys.keys, (into->keys.n + 1) * sizeof *k);
	if (k == NULL) {
		errstr_set(why, why_size, "out of memory");
		return -1;
	}
	into->keys.keys = k;
	k[into->keys.n++] = is->keys.keys[0];
	is->keys.n = 0; /* moved */
	return 0;
}

static config *read_config(const char *path, char *errstr, size_t errstr_size)
{
	config *c = NULL;
	char *buf = NULL;
	size_t len = 0, i, dir_len = 0;
	json_t *root = NULL;
	const json_t *e;
	json_error_t jerr;
	const char *slash;
	char why[512];

	if ((buf = file_read(path, MAX_ISSUERS_FILE_BYTES, &len, errstr, errstr_size)) == NULL)
		return NULL;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		errstr_set(errstr, errstr_size, "%s: line %d: %s", path, jerr.line, jerr.text);
		goto fail;
	}
	if (!json_is_array(root)) {
		errstr_set(errstr, errstr_size, "%s: not a JSON array", path);
		goto fail;
	}
	c = calloc(1, sizeof *c);
	if (c == NULL || (c->v = calloc(json_array_size(root) + 1, sizeof *c->v)) == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	slash = strrchr(path, '/');
	if (slash != NULL)
		dir_len = slash == path ? 1 : (size_t)(slash - path);
	json_array_foreach(root, i, e)
	{
		issuer is;
		size_t k;

		memset(&is, 0, sizeof is);
		if (read_entry(e, path, dir_len, &is, why, sizeof why) != 0) {
			issuer_clear(&is);
			errstr_set(errstr, errstr_size, "%s: entry %zu: %s", path, i + 1, why);
			goto fail;
		}
		for (k = 0; k < c->n && strcmp(c->v[k].iss, is.iss) != 0; k++)
			;
		if (k < c->n) {
			int r = merge_entry(&c->v[k], &is, why, sizeof why);
			issuer_clear(&is);
			if (r != 0) {
				errstr_set(errstr, errstr_size, "%s: entry %zu: %s", path, i + 1,
				           why);
				goto fail;
			}
			continue;
		}
		c->v[c->n++] = is;
	}
	for (i = 0; i < c->n; i++) {
		if (c->v[i].has_binding)
			continue;
		if (c->n > 1) {
			errstr_set(
			    errstr, errstr_size,
			    "%s: issuer %.200s has no vsp_ids: with several issuers, each must "
			    "list the VAL service providers it may speak for (or \"*\")",
			    path, c->v[i].iss);
			goto fail;
		}
		c->v[i].any = 1;
		c->defaulted = 1;
	}
	c->bind = calloc(c->n + 1, sizeof *c->bind);
	if (c->bind == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	for (i = 0; i < c->n; i++) {
		c->bind[i].iss = c->v[i].iss;
		c->bind[i].any = c->v[i].any;
		c->bind[i].vsp_ids = (const char *const *)c->v[i].vsp_ids;
		c->bind[i].n_vsp_ids = c->v[i].n_vsp;
	}
	json_decref(root);
	free(buf);
	return c;
fail:
	config_free(c);
	json_decref(root);
	free(buf);
	return NULL;
}

/* ---- building the verifier ---- */

static const jwks_set *issuer_keys(const issuer *is)
{
	return is->kind == SRC_JWKS_URI ? &is->uri->keys : &is->keys;
}

/* A verifier with every key of c. Called with t->mu held when c has JWKS
 * URI issuers (their sets are read). */
static jwt_verifier *build(const trust *t, const config *c, size_t *n_keys, char *errstr,
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
static int attach_sources(trust *t, config *c, char *errstr, size_t errstr_size)
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
			uri_free(u);
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
static int commit_sources(trust *t, config *c)
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
			uri_free(t->uris[i]);
	}
	free(t->uris);
	t->uris = list;
	t->n_uris = n;
	return 0;
}

/* ---- the refresher ---- */

typedef struct {
	uint64_t id;
	char *iss, *url, *ca_file;
	long timeout_ms;
} fetch_job;

static void job_free(fetch_job *j)
{
	free(j->iss);
	free(j->url);
	free(j->ca_file);
	memset(j, 0, sizeof *j);
}

/* Copy what a fetch of u needs and mark it under way. t->mu held. */
static int job_take(uri_src *u, fetch_job *j)
{
	memset(j, 0, sizeof *j);
	j->id = u->id;
	j->timeout_ms = (long)u->timeout_ms;
	j->iss = strdup(u->iss);
	j->url = strdup(u->url);
	j->ca_file = u->ca_file != NULL ? strdup(u->ca_file) : NULL;
	if (j->iss == NULL || j->url == NULL || (u->ca_file != NULL && j->ca_file == NULL)) {
		job_free(j);
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
static void run_job(trust *t, const fetch_job *j)
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
	skip_ctx sc = {.iss = j->iss, .source = j->url};
	int ok = 0, changed = 0, known = 0, had_keys = 0;
	uri_src *u;

	if (fetch_get(&rq, &body, &len, why, sizeof why) != 0) {
		snprintf(err, sizeof err, "fetch: %s", why);
	} else if (jwks_parse(body, len, &set, note_skip, &sc, why, sizeof why) != 0) {
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
		log_skips(&sc);
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

static void wait_until(trust *t, int64_t until_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(until_ms / 1000);
	ts.tv_nsec = (long)(until_ms % 1000) * 1000000L;
	(void)pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

static void *refresher(void *arg)
{
	trust *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		int64_t now = mono_ms(), next = now + 60000;
		uri_src *pick = NULL;
		fetch_job job;

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
			wait_until(t, next);
			continue;
		}
		if (job_take(pick, &job) != 0) {
			wait_until(t, now + 1000); /* out of memory: later */
			continue;
		}
		pthread_mutex_unlock(&t->mu);
		run_job(t, &job);
		job_free(&job);
		pthread_mutex_lock(&t->mu);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* ---- the owner's side ---- */

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
	config_free(t->cfg);
	for (size_t i = 0; i < t->n_uris; i++)
		uri_free(t->uris[i]);
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
	config *c;
	jwt_verifier *v = NULL;
	size_t n_keys = 0;

	if (t == NULL || path == NULL || path[0] == '\0') {
		errstr_set(errstr, errstr_size, "trust_load: no issuers file");
		return -1;
	}
	c = read_config(path, errstr, errstr_size);
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
		config_free(c);
		return -1;
	}
	jwt_verifier_destroy(t->verifier);
	t->verifier = v;
	config_free(t->cfg);
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
	rc = pthread_create(&t->thread, NULL, refresher, t);
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
		wait_until(t, deadline);
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
	fetch_job job;
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
			wait_until(t, deadline);
		pthread_mutex_unlock(&t->mu);
	} else if (job_take(u, &job) == 0) {
		pthread_mutex_unlock(&t->mu);
		log_event(LOG_INFO, "jwks_fetch_for_kid", "{s:s, s:s}", "iss", iss, "kid",
		          kid[0] != '\0' ? kid : "(none)");
		run_job(t, &job);
		job_free(&job);
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
