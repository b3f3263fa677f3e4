/*
 * request: the provisioning request of valctl provision, built from a JSON
 * file with the schema's field names (--file) and from flags, the flags
 * winning. Every string of the request is malloc'd here, so that
 * request_clear() can free it whatever its source, and the access token is
 * wiped before it is freed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "codec.h"
#include "file.h"
#include "request.h"
#include "util.h"

#define TOKEN_FILE_MAX  (1024 * 1024)
#define REQUEST_ID_SIZE 37

static void service_clear(codec_val_service *s)
{
	size_t i;

	free(s->val_service_id);
	free(s->format_version);
	for (i = 0; i < s->content_count; i++) {
		free(s->content[i].key);
		free(s->content[i].value);
	}
	free(s->content);
	memset(s, 0, sizeof *s);
}

void request_clear(codec_request *r)
{
	size_t i;

	free(r->request_id);
	free(r->requester_identity);
	free(r->endpoint);
	if (r->access_token != NULL)
		memset(r->access_token, 0, strlen(r->access_token));
	free(r->access_token);
	for (i = 0; i < r->service_count; i++)
		service_clear(&r->services[i]);
	free(r->services);
	free(r->supp_feat);
	memset(r, 0, sizeof *r);
}

/* Replace *dst with a copy of src (NULL stays NULL); 0 or -1. */
static int set_str(char **dst, const char *src)
{
	char *copy = NULL;

	if (src != NULL) {
		copy = strdup(src);
		if (copy == NULL)
			return -1;
	}
	free(*dst);
	*dst = copy;
	return 0;
}

static codec_val_service *find_service(codec_request *r, const char *id)
{
	size_t i;

	for (i = 0; i < r->service_count; i++) {
		if (strcmp(r->services[i].val_service_id, id) == 0)
			return &r->services[i];
	}
	return NULL;
}

static codec_val_service *add_service(codec_request *r, const char *id,
                                      codec_key_format_type format, const char *version)
{
	codec_val_service *grown, *s;

	grown = realloc(r->services, (r->service_count + 1) * sizeof *grown);
	if (grown == NULL)
		return NULL;
	r->services = grown;
	s = &r->services[r->service_count];
	memset(s, 0, sizeof *s);
	s->format_type = format;
	if (set_str(&s->val_service_id, id) != 0 || set_str(&s->format_version, version) != 0) {
		service_clear(s);
		return NULL;
	}
	r->service_count++;
	return s;
}

/* Set a content entry: a map, so an existing key gets the new value. */
static int set_content(codec_val_service *s, const char *key, const char *value)
{
	codec_kv *grown;
	size_t i;

	for (i = 0; i < s->content_count; i++) {
		if (strcmp(s->content[i].key, key) == 0)
			return set_str(&s->content[i].value, value);
	}
	grown = realloc(s->content, (s->content_count + 1) * sizeof *grown);
	if (grown == NULL)
		return -1;
	s->content = grown;
	s->content[s->content_count].key = NULL;
	s->content[s->content_count].value = NULL;
	if (set_str(&s->content[s->content_count].key, key) != 0 ||
	    set_str(&s->content[s->content_count].value, value) != 0) {
		free(s->content[s->content_count].key);
		return -1;
	}
	s->content_count++;
	return 0;
}

/* out emptied, with a copy of arg in out->buf for the pieces to point
 * into; 0, or -1 with why filled. */
static int spec_copy(const char *arg, request_spec *out, char *why, size_t why_size)
{
	memset(out, 0, sizeof *out);
	out->buf = strdup(arg);
	if (out->buf == NULL) {
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	return 0;
}

int request_spec_service(const char *arg, request_spec *out, char *why, size_t why_size)
{
	char *colon, *format;

	if (spec_copy(arg, out, why, why_size) != 0)
		return -1;
	colon = strchr(out->buf, ':');
	if (colon == NULL || colon == out->buf || colon[1] == '\0') {
		snprintf(why, why_size, "--service needs ID:FORMAT[:VERSION], got '%s'", arg);
		return -1;
	}
	*colon = '\0';
	out->id = out->buf;
	format = colon + 1;
	colon = strchr(format, ':');
	if (colon != NULL) {
		*colon = '\0';
		out->version = colon + 1;
	}
	if (codec_key_format_type_parse(format, &out->format) != 0) {
		snprintf(why, why_size, "--service %s: unknown key format '%s'", out->id, format);
		return -1;
	}
	return 0;
}

int request_spec_content(const char *arg, request_spec *out, char *why, size_t why_size)
{
	char *colon, *eq;

	if (spec_copy(arg, out, why, why_size) != 0)
		return -1;
	colon = strchr(out->buf, ':');
	eq = colon != NULL ? strchr(colon + 1, '=') : NULL;
	if (colon == NULL || colon == out->buf || eq == NULL || eq == colon + 1) {
		snprintf(why, why_size, "--content needs ID:KEY=VALUE, got '%s'", arg);
		return -1;
	}
	*colon = '\0';
	*eq = '\0';
	out->id = out->buf;
	out->key = colon + 1;
	out->value = eq + 1;
	return 0;
}

/* A string member of a JSON object into *out: NULL when absent or JSON null;
 * -1 when it is something else. */
static int json_str_member(const json_t *obj, const char *name, const char **out)
{
	const json_t *v = json_object_get(obj, name);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 0;
}

static int check_members(const json_t *obj, const char *const *allowed, const char *where,
                         char *errstr, size_t errstr_size)
{
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach((json_t *)(uintptr_t)obj, key, v)
	{
		for (i = 0; allowed[i] != NULL; i++) {
			if (strcmp(key, allowed[i]) == 0)
				break;
		}
		if (allowed[i] == NULL) {
			snprintf(errstr, errstr_size, "unknown field '%s' in %s", key, where);
			return -1;
		}
	}
	return 0;
}

static int load_service(codec_request *r, const json_t *js, size_t index, char *errstr,
                        size_t errstr_size)
{
	static const char *const service_fields[] = {"valServiceId", "keyFormat", NULL};
	static const char *const format_fields[] = {"formatType", "formatVersion", "content", NULL};
	const char *id, *type, *version, *key;
	codec_key_format_type format;
	const json_t *kf, *content;
	codec_val_service *s;
	json_t *v;

	if (!json_is_object(js) ||
	    check_members(js, service_fields, "valServices[]", errstr, errstr_size) != 0)
		goto bad;
	kf = json_object_get(js, "keyFormat");
	if (json_str_member(js, "valServiceId", &id) != 0 || id == NULL || !json_is_object(kf) ||
	    check_members(kf, format_fields, "keyFormat", errstr, errstr_size) != 0 ||
	    json_str_member(kf, "formatType", &type) != 0 || type == NULL ||
	    json_str_member(kf, "formatVersion", &version) != 0)
		goto bad;
	if (codec_key_format_type_parse(type, &format) != 0) {
		snprintf(errstr, errstr_size, "valServices[%zu]: unknown formatType '%s'", index,
		         type);
		return -1;
	}
	s = add_service(r, id, format, version);
	if (s == NULL)
		goto oom;
	content = json_object_get(kf, "content");
	if (content != NULL && !json_is_object(content))
		goto bad;
	json_object_foreach((json_t *)(uintptr_t)content, key, v)
	{
		if (!json_is_string(v))
			goto bad;
		if (set_content(s, key, json_string_value(v)) != 0)
			goto oom;
	}
	return 0;
bad:
	if (errstr[0] == '\0')
		snprintf(errstr, errstr_size,
		         "valServices[%zu] needs valServiceId and keyFormat {formatType, "
		         "formatVersion, content} of strings",
		         index);
	return -1;
oom:
	snprintf(errstr, errstr_size, "out of memory");
	return -1;
}

int request_load_file(codec_request *r, const char *path, char *errstr, size_t errstr_size)
{
	static const char *const fields[] = {
	    "requestId", "requesterIdentity", "endpoint", "credentials", "valServices",
	    "sentAt",    "suppFeat",          NULL};
	static const char *const cred_fields[] = {"accessToken", NULL};
	const char *request_id, *requester, *endpoint, *token = NULL, *supp_feat;
	const json_t *cred, *services, *sent_at;
	char why[400] = "";
	json_error_t jerr;
	json_t *root;
	size_t i;
	int rc = -1;

	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(errstr, errstr_size, "%s: %s (line %d)", path, jerr.text, jerr.line);
		return -1;
	}
	if (!json_is_object(root)) {
		snprintf(why, sizeof why, "not a JSON object");
		goto done;
	}
	if (check_members(root, fields, "the request", why, sizeof why) != 0)
		goto done;
	cred = json_object_get(root, "credentials");
	services = json_object_get(root, "valServices");
	sent_at = json_object_get(root, "sentAt");
	if (json_str_member(root, "requestId", &request_id) != 0 ||
	    json_str_member(root, "requesterIdentity", &requester) != 0 ||
	    json_str_member(root, "endpoint", &endpoint) != 0 ||
	    json_str_member(root, "suppFeat", &supp_feat) != 0) {
		snprintf(why, sizeof why,
		         "requestId, requesterIdentity, endpoint and suppFeat "
		         "must be strings");
		goto done;
	}
	if (cred != NULL &&
	    (!json_is_object(cred) ||
	     check_members(cred, cred_fields, "credentials", why, sizeof why) != 0 ||
	     json_str_member(cred, "accessToken", &token) != 0)) {
		if (why[0] == '\0')
			snprintf(why, sizeof why, "credentials must be {\"accessToken\": string}");
		goto done;
	}
	if (sent_at != NULL && !json_is_integer(sent_at)) {
		snprintf(why, sizeof why, "sentAt must be an integer (ms since the epoch)");
		goto done;
	}
	if (services != NULL && !json_is_array(services)) {
		snprintf(why, sizeof why, "valServices must be an array");
		goto done;
	}
	if (set_str(&r->request_id, request_id) != 0 ||
	    set_str(&r->requester_identity, requester) != 0 ||
	    set_str(&r->endpoint, endpoint) != 0 || set_str(&r->access_token, token) != 0 ||
	    set_str(&r->supp_feat, supp_feat) != 0) {
		snprintf(why, sizeof why, "out of memory");
		goto done;
	}
	if (sent_at != NULL)
		r->sent_at = (int64_t)json_integer_value(sent_at);
	for (i = 0; services != NULL && i < json_array_size(services); i++) {
		if (load_service(r, json_array_get(services, i), i, why, sizeof why) != 0)
			goto done;
	}
	rc = 0;
done:
	if (rc != 0)
		snprintf(errstr, errstr_size, "%s: %s", path, why);
	json_decref(root);
	return rc;
}

char *request_read_token(const char *path, char *errstr, size_t errstr_size)
{
	char *t = file_read(path, TOKEN_FILE_MAX, NULL, errstr, errstr_size);
	size_t n;

	if (t == NULL)
		return NULL;
	n = strlen(t);
	while (n > 0 &&
	       (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
		t[--n] = '\0';
	return t;
}

void request_specs_free(request_spec *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(s[i].buf);
	free(s);
}

int request_apply(codec_request *r, const request_flags *f, const char *sub)
{
	char request_id[REQUEST_ID_SIZE], errstr[256];
	size_t i;

	if ((f->requester != NULL && set_str(&r->requester_identity, f->requester) != 0) ||
	    (f->endpoint != NULL && set_str(&r->endpoint, f->endpoint) != 0) ||
	    (f->token != NULL && set_str(&r->access_token, f->token) != 0) ||
	    (f->request_id != NULL && set_str(&r->request_id, f->request_id) != 0) ||
	    (f->supp_feat != NULL && set_str(&r->supp_feat, f->supp_feat) != 0)) {
		valctl_err(sub, "out of memory");
		return VALCTL_EXIT_RUNTIME;
	}
	if (f->service_count > 0) {
		for (i = 0; i < r->service_count; i++)
			service_clear(&r->services[i]);
		r->service_count = 0;
	}
	for (i = 0; i < f->service_count; i++) {
		if (find_service(r, f->services[i].id) != NULL) {
			return valctl_usage(sub, "--service %s given twice", f->services[i].id);
		}
		if (add_service(r, f->services[i].id, f->services[i].format,
		                f->services[i].version) == NULL) {
			valctl_err(sub, "out of memory");
			return VALCTL_EXIT_RUNTIME;
		}
	}
	for (i = 0; i < f->content_count; i++) {
		codec_val_service *s = find_service(r, f->contents[i].id);

		if (s == NULL) {
			return valctl_usage(sub, "--content %s: no --service %s", f->contents[i].id,
			                    f->contents[i].id);
		}
		if (set_content(s, f->contents[i].key, f->contents[i].value) != 0) {
			valctl_err(sub, "out of memory");
			return VALCTL_EXIT_RUNTIME;
		}
	}
	if (r->requester_identity == NULL || r->endpoint == NULL || r->access_token == NULL)
		return valctl_usage(sub, "the request lacks requesterIdentity, endpoint or "
		                         "accessToken (from --file or flags)");
	if (r->request_id == NULL) {
		if (valctl_uuid_v4(request_id, errstr, sizeof errstr) != 0 ||
		    set_str(&r->request_id, request_id) != 0) {
			valctl_err(sub, "cannot make a request id");
			return VALCTL_EXIT_RUNTIME;
		}
	}
	if (r->sent_at == 0)
		r->sent_at = valctl_now_ms();
	return 0;
}
