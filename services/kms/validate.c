/*
 * validate: what makes a decoded request well-formed beyond its schema, and
 * its content hash. The codec has already refused invalid UTF-8, NUL bytes and
 * oversized values; this file checks the rules of the contract's fields.
 */
#include "validate.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void validate_limits_default(validate_limits *l)
{
	l->max_services = 1000;
	l->max_identity_bytes = 256;
	l->max_endpoint_bytes = 2048;
	l->max_field_bytes = 4096;
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int validate_uuid(const char *s)
{
	static const int groups[] = {8, 4, 4, 4, 12};
	for (size_t g = 0; g < 5; g++) {
		for (int i = 0; i < groups[g]; i++, s++)
			if (!is_hex(*s))
				return 0;
		if (g < 4 && *s++ != '-')
			return 0;
	}
	return *s == '\0';
}

int validate_absolute_uri(const char *s)
{
	if (!is_alpha(s[0]))
		return 0;
	const char *p = s + 1;
	while (is_alpha(*p) || (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.')
		p++;
	if (*p != ':' || p[1] == '\0')
		return 0;
	for (const char *q = p + 1; *q; q++) {
		unsigned char c = (unsigned char)*q;
		if (c <= 0x20 || c == 0x7f || c == '#' || c == '"' || c == '<' || c == '>' ||
		    c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}')
			return 0;
		if (c == '%' && !(is_hex(q[1]) && is_hex(q[2])))
			return 0;
	}
	/* "scheme://" with nothing after the slashes names no resource */
	if (strcmp(p, "://") == 0)
		return 0;
	return 1;
}

static int fail(char *detail, size_t detail_size, const char *sentence)
{
	snprintf(detail, detail_size, "%s", sentence);
	return -1;
}

int validate_request(const codec_request *r, const validate_limits *l, char *detail,
                     size_t detail_size)
{
	if (!validate_uuid(r->request_id))
		return fail(detail, detail_size, "requestId is not a well-formed UUID");
	size_t n = strlen(r->requester_identity);
	if (n == 0 || n > l->max_identity_bytes)
		return fail(detail, detail_size, "requesterIdentity is empty or too long");
	if (strlen(r->endpoint) > l->max_endpoint_bytes || !validate_absolute_uri(r->endpoint))
		return fail(detail, detail_size, "endpoint is not an absolute URI");
	if (r->service_count == 0)
		return fail(detail, detail_size, "valServices is empty");
	if (r->service_count > l->max_services)
		return fail(detail, detail_size, "valServices has more entries than allowed");
	if (r->supp_feat != NULL) {
		if (strlen(r->supp_feat) > l->max_field_bytes)
			return fail(detail, detail_size, "suppFeat is too long");
		for (const char *p = r->supp_feat; *p; p++)
			if (!is_hex(*p))
				return fail(detail, detail_size,
				            "suppFeat is not a hexadecimal string");
	}
	for (size_t i = 0; i < r->service_count; i++) {
		const codec_val_service *s = &r->services[i];
		size_t len = strlen(s->val_service_id);
		if (len == 0 || len > l->max_identity_bytes)
			return fail(detail, detail_size, "a valServiceId is empty or too long");
		if ((unsigned)s->format_type >= CODEC_KF__COUNT)
			return fail(detail, detail_size, "a formatType is unknown");
		if (s->format_version != NULL && strlen(s->format_version) > l->max_field_bytes)
			return fail(detail, detail_size, "a formatVersion is too long");
		for (size_t j = 0; j < i; j++)
			if (strcmp(r->services[j].val_service_id, s->val_service_id) == 0)
				return fail(detail, detail_size,
				            "valServiceId values are not unique");
		for (size_t k = 0; k < s->content_count; k++) {
			if (strlen(s->content[k].key) > l->max_field_bytes ||
			    strlen(s->content[k].value) > l->max_field_bytes)
				return fail(detail, detail_size, "a content entry is too long");
			for (size_t m = 0; m < k; m++)
				if (strcmp(s->content[m].key, s->content[k].key) == 0)
					return fail(detail, detail_size,
					            "a content map repeats a key");
		}
	}
	return 0;
}

/* Hash one field: 0xff for null, else a 1-byte tag, the 8-byte big-endian
 * length and the bytes. Returns 0, or -1 when the digest fails. */
static int put_field(EVP_MD_CTX *ctx, const char *s)
{
	unsigned char head[9];
	uint64_t n;

	if (s == NULL) {
		head[0] = 0xff;
		return EVP_DigestUpdate(ctx, head, 1) == 1 ? 0 : -1;
	}
	n = strlen(s);
	head[0] = 0x01;
	for (int i = 0; i < 8; i++)
		head[1 + i] = (unsigned char)(n >> (56 - 8 * i));
	if (EVP_DigestUpdate(ctx, head, sizeof head) != 1 ||
	    EVP_DigestUpdate(ctx, s, (size_t)n) != 1)
		return -1;
	return 0;
}

static int cmp_kv(const void *a, const void *b)
{
	const codec_kv *x = *(const codec_kv *const *)a, *y = *(const codec_kv *const *)b;
	return strcmp(x->key, y->key);
}

/* One VAL service: ID, format type, version, then the content sorted by key
 * (map order is not content), and an end mark. */
static int put_service(EVP_MD_CTX *ctx, const codec_val_service *s)
{
	const codec_kv **sorted = NULL;
	char type[16];
	int rc = -1;

	snprintf(type, sizeof type, "%d", (int)s->format_type);
	if (put_field(ctx, s->val_service_id) != 0 || put_field(ctx, type) != 0 ||
	    put_field(ctx, s->format_version) != 0)
		goto fail;
	if (s->content_count > 0) {
		/* No unsorted fallback: the same content in another order
		 * would hash differently, and its retry would be a conflict. */
		sorted = malloc(s->content_count * sizeof *sorted);
		if (sorted == NULL)
			goto fail;
		for (size_t k = 0; k < s->content_count; k++)
			sorted[k] = &s->content[k];
		qsort(sorted, s->content_count, sizeof *sorted, cmp_kv);
		for (size_t k = 0; k < s->content_count; k++)
			if (put_field(ctx, sorted[k]->key) != 0 ||
			    put_field(ctx, sorted[k]->value) != 0)
				goto fail;
	}
	if (put_field(ctx, "") != 0)
		goto fail;
	rc = 0;
fail:
	free(sorted);
	return rc;
}

int validate_content_hash(const codec_request *r, unsigned char out[32])
{
	EVP_MD_CTX *ctx = NULL;
	unsigned int len = 0;
	int rc = -1;

	/* Whatever fails, out never holds a value that another request
	 * could share by accident: zeros, and the caller is told. */
	memset(out, 0, 32);
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto fail;
	if (put_field(ctx, r->requester_identity) != 0 || put_field(ctx, r->endpoint) != 0 ||
	    put_field(ctx, r->supp_feat) != 0)
		goto fail;
	for (size_t i = 0; i < r->service_count; i++)
		if (put_service(ctx, &r->services[i]) != 0)
			goto fail;
	if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != 32) {
		memset(out, 0, 32);
		goto fail;
	}
	rc = 0;
fail:
	EVP_MD_CTX_free(ctx);
	return rc;
}
