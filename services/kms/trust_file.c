/*
 * trust_file: the issuers file read into a trust_conf, whole or not at all.
 * Every entry is checked against the one table of members (a misspelt name
 * is an error, not a default), PEM and JWKS files are read relative to the
 * file's folder, entries of one issuer are folded together, and the
 * bindings are made the way authz reads them. Nothing here touches the
 * trust in force: trust_load() (trust.c) swaps the result in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "errstr.h"
#include "fetch.h"
#include "file.h"
#include "jsonfile.h"
#include "jwks.h"
#include "log.h"
#include "trust_int.h"

#define MAX_ISSUERS_FILE_BYTES (1024 * 1024)
#define MAX_PEM_FILE_BYTES     (64 * 1024)
#define MAX_NAME_BYTES         255

/* ---- sources and configurations ---- */

void trust_uri_free(uri_src *u)
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
		trust_uri_free(is->uri); /* never committed */
	memset(is, 0, sizeof *is);
}

void trust_conf_free(trust_conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		issuer_clear(&c->v[i]);
	free(c->v);
	free(c->bind);
	free(c);
}

void trust_note_skip(void *ctx, size_t index, const char *kid, const char *why)
{
	trust_skips *s = ctx;

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

void trust_log_skips(const trust_skips *s)
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
static int read_entry(const json_t *e, const char *list_path, issuer *is, char *why,
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
		path = jsonfile_resolve(list_path, pem_file);
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
		trust_skips sc = {0};

		is->kind = SRC_JWKS_FILE;
		path = jsonfile_resolve(list_path, jwks_file);
		if (path == NULL) {
			errstr_set(why, why_size, "out of memory");
			goto done;
		}
		if ((text = file_read(path, JWKS_MAX_BYTES, &text_len, why, why_size)) == NULL)
			goto done;
		sc.iss = iss;
		sc.source = path;
		int r =
		    jwks_parse(text, text_len, &is->keys, trust_note_skip, &sc, perr, sizeof perr);

		trust_log_skips(&sc); /* read at a load or a reload only: always news */
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
		is->ca_file = ca != NULL ? jsonfile_resolve(list_path, ca) : NULL;
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

trust_conf *trust_conf_read(const char *path, char *errstr, size_t errstr_size)
{
	trust_conf *c = NULL;
	size_t i;
	json_t *root;
	const json_t *e;
	char why[512];

	if ((root = jsonfile_read_array(path, MAX_ISSUERS_FILE_BYTES, errstr, errstr_size)) == NULL)
		return NULL;
	c = calloc(1, sizeof *c);
	if (c == NULL || (c->v = calloc(json_array_size(root) + 1, sizeof *c->v)) == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	json_array_foreach(root, i, e)
	{
		issuer is;
		size_t k;

		memset(&is, 0, sizeof is);
		if (read_entry(e, path, &is, why, sizeof why) != 0) {
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
	return c;
fail:
	trust_conf_free(c);
	json_decref(root);
	return NULL;
}
